#include "common/fsutil.h"
#include "common/err.h"
#include "common/fault.h"
#include "keyhold/file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <sodium.h>

/* A system call that fault injection (fault.h) can fail with EIO. */
#define FAULTABLE(name, call) (kh_fault_point(name) ? (errno = EIO, -1) : (call))

char *kh_path_join(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  while (la > 1 && a[la - 1] == '/')
    la--;
  char *p = malloc(la + lb + 2);
  if (!p)
    return NULL;
  memcpy(p, a, la);
  size_t o = la;
  if (!(la == 1 && a[0] == '/'))
    p[o++] = '/';
  memcpy(p + o, b, lb + 1);
  return p;
}

kh_err kh_mkdirs(const char *path, unsigned mode)
{
  char *p = strdup(path);
  if (!p)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  kh_err e = KH_OK;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, mode) != 0 && errno != EEXIST) {
        e = kh_seterr(kh_errno_code(errno), "mkdir %s: %s", p, strerror(errno));
        break;
      }
      *s = c;
      if (!c)
        break;
    }
  }
  free(p);
  return e;
}

kh_err kh_fsync_dir(const char *dir)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return kh_seterr(kh_errno_code(errno), "open %s: %s", dir, strerror(errno));
  int r = FAULTABLE("file.dirsync", fsync(fd));
  int err = errno;
  close(fd);
  if (r != 0)
    return kh_seterr(kh_errno_code(err), "fsync %s: %s", dir, strerror(err));
  return KH_OK;
}

/* writev in batches, resuming after short writes */
static kh_err write_allv(int fd, const struct iovec *iov, size_t n, const char *path)
{
  size_t i = 0, skip = 0; /* bytes of iov[i] already written */
  while (i < n) {
    struct iovec batch[256];
    size_t k = 0;
    for (size_t j = i; j < n && k < 256; j++, k++) {
      batch[k] = iov[j];
      if (j == i) {
        batch[k].iov_base = (char *)batch[k].iov_base + skip;
        batch[k].iov_len -= skip;
      }
    }
    ssize_t w = writev(fd, batch, (int)k);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return kh_seterr(kh_errno_code(errno), "write %s: %s", path, strerror(errno));
    }
    size_t left = (size_t)w;
    while (i < n && left >= iov[i].iov_len - skip) {
      left -= iov[i].iov_len - skip;
      skip = 0;
      i++;
    }
    skip += left;
  }
  return KH_OK;
}

kh_err kh_write_file_atomic(const char *path, const void *data, size_t len,
                            unsigned mode, bool excl)
{
  struct iovec one = {(void *)data, len};
  return kh_write_filev_atomic(path, &one, 1, mode, excl);
}

kh_err kh_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
  return kh_write_file_atomic(path, data, len, mode, false);
}

kh_err kh_write_filev_atomic(const char *path, const struct iovec *iov, size_t niov,
                             unsigned mode, bool excl)
{
  kh_err e = KH_OK;
  size_t pl = strlen(path);
  char *tmp = malloc(pl + 40), *dir = strdup(path);
  int fd = -1;
  if (!tmp || !dir) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (kh_fault_point("file.write")) {
    e = kh_seterr(KH_ERR_IO, "write %s: injected fault", path);
    goto out;
  }
  uint8_t rnd[8];
  randombytes_buf(rnd, sizeof rnd);
  snprintf(tmp, pl + 40, "%s.%02x%02x%02x%02x%02x%02x.tmp", path, rnd[0], rnd[1],
           rnd[2], rnd[3], rnd[4], rnd[5]);
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    e = kh_seterr(kh_errno_code(errno), "create %s: %s", tmp, strerror(errno));
    goto out;
  }
  if ((e = write_allv(fd, iov, niov, tmp)))
    goto fail;
  if (FAULTABLE("file.fsync", fsync(fd)) != 0) {
    e = kh_seterr(kh_errno_code(errno), "fsync %s: %s", tmp, strerror(errno));
    goto fail;
  }
  if (close(fd) != 0) { /* NFS and quotas report write errors here */
    fd = -1;
    e = kh_seterr(kh_errno_code(errno), "close %s: %s", tmp, strerror(errno));
    goto fail;
  }
  fd = -1;
  if (excl) {
    if (FAULTABLE("file.link", link(tmp, path)) != 0) {
      e = kh_seterr(kh_errno_code(errno), "link %s: %s", path, strerror(errno));
      goto fail;
    }
    unlink(tmp);
  } else if (FAULTABLE("file.rename", rename(tmp, path)) != 0) {
    e = kh_seterr(kh_errno_code(errno), "rename %s: %s", path, strerror(errno));
    goto fail;
  }
  char *slash = strrchr(dir, '/');
  if (slash) {
    *(slash == dir ? slash + 1 : slash) = '\0';
    e = kh_fsync_dir(dir);
  } else {
    e = kh_fsync_dir(".");
  }
  goto out;
fail:
  if (fd >= 0)
    close(fd);
  unlink(tmp);
out:
  free(tmp);
  free(dir);
  return e;
}

kh_err kh_read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
  *out = NULL;
  *len = 0;
  /* O_NONBLOCK: a FIFO planted where a file should be (the log and key
   * service keep files in the region) must not hang the reader */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return kh_seterr(kh_errno_code(errno), "open %s: %s", path, strerror(errno));
  kh_err e = KH_OK;
  struct stat st;
  uint8_t *buf = NULL;
  if (fstat(fd, &st) != 0) {
    e = kh_seterr(KH_ERR_IO, "stat %s: %s", path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    e = kh_seterr(KH_ERR_FORMAT, "%s is not a regular file", path);
    goto out;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0)
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  if ((uint64_t)st.st_size > max) {
    e = kh_seterr(KH_ERR_TOOBIG, "%s is larger than %zu bytes", path, max);
    goto out;
  }
  size_t cap = (size_t)st.st_size + 1, n = 0;
  buf = malloc(cap);
  if (!buf) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory reading %s", path);
    goto out;
  }
  for (;;) {
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      e = kh_seterr(KH_ERR_IO, "read %s: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0)
      break;
    n += (size_t)r;
    if (n == cap) { /* file grew: stop at max */
      if (cap > max) {
        e = kh_seterr(KH_ERR_TOOBIG, "%s is larger than %zu bytes", path, max);
        goto out;
      }
      size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
      uint8_t *nb = realloc(buf, ncap);
      if (!nb) {
        e = kh_seterr(KH_ERR_NOMEM, "out of memory reading %s", path);
        goto out;
      }
      buf = nb;
      cap = ncap;
    }
  }
  *out = buf;
  *len = n;
  buf = NULL;
out:
  free(buf);
  close(fd);
  return e;
}

static kh_err remove_at(int dfd, const char *name)
{
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? KH_OK : kh_seterr(KH_ERR_IO, "stat %s: %s", name, strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      return kh_seterr(KH_ERR_IO, "open %s: %s", name, strerror(errno));
    DIR *d = fdopendir(fd);
    if (!d) {
      close(fd);
      return kh_seterr(KH_ERR_IO, "opendir %s", name);
    }
    struct dirent *de;
    kh_err e = KH_OK;
    while (!e && (de = readdir(d))) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
        continue;
      e = remove_at(dirfd(d), de->d_name);
    }
    closedir(d);
    if (e)
      return e;
    if (unlinkat(dfd, name, AT_REMOVEDIR) != 0)
      return kh_seterr(KH_ERR_IO, "rmdir %s: %s", name, strerror(errno));
    return KH_OK;
  }
  if (unlinkat(dfd, name, 0) != 0)
    return kh_seterr(KH_ERR_IO, "unlink %s: %s", name, strerror(errno));
  return KH_OK;
}

kh_err kh_remove_tree(const char *path)
{
  if (!path[0] || !strcmp(path, "/"))
    return kh_seterr(KH_ERR_INVAL, "refusing to remove '%s'", path);
  return remove_at(AT_FDCWD, path);
}
