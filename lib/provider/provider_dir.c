/* Directory provider: object "a/b/c" is the file DIR/a/b/c.  Writes go to a
 * temporary file that is fsynced and renamed (kh_write_file_atomic), so a
 * crash leaves either the whole object or none plus a *.tmp leftover that
 * list() skips.  Directories it creates are fsynced in their parent.
 *
 * The directory is the provider's, so it is hostile: every path is resolved
 * from the root one component at a time without following symlinks, and an
 * object must be a regular file.  A symlink, FIFO, device or socket where an
 * object should be is refused (KH_ERR_FORMAT) without being followed or
 * waited on: opens use O_NOFOLLOW | O_NONBLOCK and are checked with fstat. */
#include "provider/provider.h"
#include "common/err.h"
#include "common/fsutil.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>

/* Open read descriptors kept for ranged reads (restore reads one pack many
 * times); pread on a shared descriptor is thread-safe. */
#define FD_CACHE 32

typedef struct cached_fd {
  char *name;
  int fd, refs;
  uint64_t used;
  bool stale;      /* deleted or replaced: close when the last reader is done */
} cached_fd;

typedef struct dir_provider {
  kh_provider base;
  char *root;
  int rootfd;      /* the region directory, held open: every path starts here */
  pthread_mutex_t mu;
  cached_fd fds[FD_CACHE];
  uint64_t clock;
} dir_provider;

/* Set the detail for a failed resolution of name (errno from the walk). */
static kh_err walk_error(const char *name, int err)
{
  if (err == ELOOP || err == ENOTDIR || err == EMLINK)
    return kh_seterr(KH_ERR_FORMAT, "object %s: a symlink or non-directory is in its place "
                     "(refused, not followed)", name);
  return kh_seterr(kh_errno_code(err), "object %s: %s", name, strerror(err));
}

/* Open the directory holding name (its last component is *base), walking
 * from the root without following symlinks.  create: make missing
 * directories, each fsynced in its parent so the new entry survives a crash.
 * Returns a descriptor or -1 with errno set. */
static int open_parent(dir_provider *d, const char *name, bool create, const char **base)
{
  int cur = d->rootfd;
  const char *p = name;
  for (;;) {
    const char *slash = strchr(p, '/');
    if (!slash)
      break;
    char comp[256];
    size_t cl = (size_t)(slash - p);
    if (cl == 0 || cl >= sizeof comp) {
      errno = EINVAL;
      goto fail;
    }
    memcpy(comp, p, cl);
    comp[cl] = '\0';
    int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int next = openat(cur, comp, flags);
    if (next < 0 && errno == ENOENT && create) {
      if (mkdirat(cur, comp, 0700) != 0 && errno != EEXIST)
        goto fail;
      if (fsync(cur) != 0)
        goto fail;
      next = openat(cur, comp, flags);
    }
    if (next < 0)
      goto fail;
    if (cur != d->rootfd)
      close(cur);
    cur = next;
    p = slash + 1;
  }
  *base = p;
  return cur == d->rootfd ? dup(cur) : cur;
fail:;
  int err = errno;
  if (cur != d->rootfd)
    close(cur);
  errno = err;
  return -1;
}

/* Open object name for reading: a regular file reached without symlinks.
 * Never blocks on a FIFO and never follows a link.  On failure returns -1
 * with the detail set and *e the code. */
static int open_object(dir_provider *d, const char *name, kh_err *e)
{
  const char *base;
  int dfd = open_parent(d, name, false, &base);
  if (dfd < 0) {
    *e = walk_error(name, errno);
    return -1;
  }
  /* look before opening: opening a device node can have effects */
  struct stat st;
  int fd = -1;
  if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    *e = walk_error(name, errno);
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    *e = kh_seterr(KH_ERR_FORMAT, "object %s is not a regular file (refused)", name);
    goto out;
  }
  fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *e = walk_error(name, errno);
    goto out;
  }
  /* it may have been swapped between the look and the open */
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *e = kh_seterr(KH_ERR_FORMAT, "object %s is not a regular file (refused)", name);
    close(fd);
    fd = -1;
    goto out;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0)
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
out:
  close(dfd);
  return fd;
}

/* A descriptor for name (cached when possible); release with fd_release.
 * -1 with *e set on failure. */
static int fd_acquire(dir_provider *d, const char *name, int *slot, kh_err *e)
{
  *slot = -1;
  pthread_mutex_lock(&d->mu);
  for (int i = 0; i < FD_CACHE; i++)
    if (d->fds[i].name && !d->fds[i].stale && !strcmp(d->fds[i].name, name)) {
      d->fds[i].refs++;
      d->fds[i].used = ++d->clock;
      *slot = i;
      int fd = d->fds[i].fd;
      pthread_mutex_unlock(&d->mu);
      return fd;
    }
  pthread_mutex_unlock(&d->mu);
  int fd = open_object(d, name, e);
  if (fd < 0)
    return -1;
  pthread_mutex_lock(&d->mu);
  int victim = -1;
  for (int i = 0; i < FD_CACHE; i++) {
    if (!d->fds[i].name) {
      victim = i;
      break;
    }
    if (d->fds[i].refs == 0 && (victim < 0 || d->fds[i].used < d->fds[victim].used))
      victim = i;
  }
  char *copy = victim >= 0 ? strdup(name) : NULL;
  if (copy) {
    cached_fd *c = &d->fds[victim];
    if (c->name) {
      close(c->fd);
      free(c->name);
    }
    *c = (cached_fd){copy, fd, 1, ++d->clock, false};
    *slot = victim;
  }
  pthread_mutex_unlock(&d->mu);
  return fd;
}

static void fd_release(dir_provider *d, int fd, int slot)
{
  if (slot < 0) {
    close(fd);
    return;
  }
  pthread_mutex_lock(&d->mu);
  cached_fd *c = &d->fds[slot];
  if (--c->refs == 0 && c->stale) {
    close(c->fd);
    free(c->name);
    memset(c, 0, sizeof *c);
  }
  pthread_mutex_unlock(&d->mu);
}

/* name was deleted or replaced: never serve the old descriptor again */
static void fd_forget(dir_provider *d, const char *name)
{
  pthread_mutex_lock(&d->mu);
  for (int i = 0; i < FD_CACHE; i++) {
    cached_fd *c = &d->fds[i];
    if (!c->name || strcmp(c->name, name))
      continue;
    if (c->refs == 0) {
      close(c->fd);
      free(c->name);
      memset(c, 0, sizeof *c);
    } else {
      c->stale = true;
    }
  }
  pthread_mutex_unlock(&d->mu);
}

static kh_err check_name(const char *name)
{
  /* names come from keyhold itself, but refuse anything that could escape */
  if (!name[0] || name[0] == '/' || strstr(name, "..") || strlen(name) > 1024)
    return kh_seterr(KH_ERR_INVAL, "bad object name '%s'", name);
  return KH_OK;
}

static char *full_path(dir_provider *d, const char *name) { return kh_path_join(d->root, name); }

static kh_err dir_put(kh_provider *p, const char *name, const struct iovec *iov, size_t niov,
                      bool excl)
{
  dir_provider *d = (dir_provider *)p;
  kh_err e = check_name(name);
  if (e)
    return e;
  char *path = full_path(d, name);
  if (!path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  fd_forget(d, name);
  /* the parents must be real directories (never a planted symlink out of
   * the region); missing ones are created and made durable */
  const char *base;
  int dfd = open_parent(d, name, true, &base);
  if (dfd < 0)
    e = walk_error(name, errno);
  else
    close(dfd);
  if (!e)
    e = kh_write_filev_atomic(path, iov, niov, 0600, excl);
  free(path);
  return e;
}

/* Append len bytes at off (whole: the rest, at most max bytes) to out. */
static kh_err read_range(dir_provider *d, const char *name, uint64_t off, size_t len,
                         bool whole, uint64_t max, kh_buf *out)
{
  kh_err e = check_name(name);
  if (e)
    return e;
  int slot = -1;
  int fd = fd_acquire(d, name, &slot, &e);
  if (fd < 0)
    return e;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    e = kh_seterr(KH_ERR_IO, "stat %s: %s", name, strerror(errno));
    goto out;
  }
  uint64_t size = (uint64_t)st.st_size;
  if (whole) {
    /* the size is the provider's claim: refuse it before allocating */
    if (size > max) {
      e = kh_seterr(KH_ERR_TOOBIG, "object %s is %llu bytes, more than the %llu its kind "
                    "may have", name, (unsigned long long)size, (unsigned long long)max);
      goto out;
    }
    off = 0;
    len = (size_t)size;
  }
  if (off > size || len > size - off) {
    e = kh_seterr(KH_ERR_FORMAT, "object %s is truncated (%llu bytes, wanted %llu+%zu)", name,
                  (unsigned long long)size, (unsigned long long)off, len);
    goto out;
  }
  if ((e = kh_buf_reserve(out, len)))
    goto out;
  size_t got = 0;
  while (got < len) {
    ssize_t r = pread(fd, out->data + out->len + got, len - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      e = r < 0 ? kh_seterr(KH_ERR_IO, "read %s: %s", name, strerror(errno))
                : kh_seterr(KH_ERR_FORMAT, "object %s is truncated", name);
      goto out;
    }
    got += (size_t)r;
  }
  out->len += len;
out:
  fd_release(d, fd, slot);
  return e;
}

static kh_err dir_get(kh_provider *p, const char *name, uint64_t off, size_t len, kh_buf *out)
{
  return read_range((dir_provider *)p, name, off, len, false, 0, out);
}

static kh_err dir_read(kh_provider *p, const char *name, uint64_t max, kh_buf *out)
{
  return read_range((dir_provider *)p, name, 0, 0, true, max, out);
}

static kh_err dir_size(kh_provider *p, const char *name, uint64_t *size)
{
  dir_provider *d = (dir_provider *)p;
  kh_err e = check_name(name);
  if (e)
    return e;
  const char *base;
  int dfd = open_parent(d, name, false, &base);
  if (dfd < 0)
    return walk_error(name, errno);
  struct stat st;
  if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0)
    e = walk_error(name, errno);
  else if (!S_ISREG(st.st_mode))
    e = kh_seterr(KH_ERR_FORMAT, "object %s is not a regular file (refused)", name);
  else
    *size = (uint64_t)st.st_size;
  close(dfd);
  return e;
}

static bool is_tmp(const char *n)
{
  size_t l = strlen(n);
  return l > 4 && !strcmp(n + l - 4, ".tmp");
}

/* dfd: an open directory (consumed); rel: its name relative to the listed
 * prefix.  Only regular files are listed and only real directories entered:
 * symlinks, FIFOs, devices and sockets planted in the region are skipped. */
static kh_err list_rec(int dfd, const char *rel, kh_provider_list_fn fn, void *ctx, int depth,
                       int *stop)
{
  DIR *dir = fdopendir(dfd);
  if (!dir) {
    close(dfd);
    return kh_seterr(KH_ERR_IO, "list %s: %s", rel, strerror(errno));
  }
  kh_err e = KH_OK;
  struct dirent *de;
  while (!e && !*stop && (de = readdir(dir))) {
    if (de->d_name[0] == '.' || is_tmp(de->d_name))
      continue;
    char *crel = rel[0] ? kh_path_join(rel, de->d_name) : strdup(de->d_name);
    struct stat st;
    if (!crel)
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    else if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      ; /* vanished (concurrent delete) */
    else if (S_ISDIR(st.st_mode) && depth < 8) {
      int cfd = openat(dirfd(dir), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (cfd >= 0)
        e = list_rec(cfd, crel, fn, ctx, depth + 1, stop);
    } else if (S_ISREG(st.st_mode)) {
      *stop = fn(crel, (uint64_t)st.st_size, ctx);
    }
    free(crel);
  }
  closedir(dir);
  return e;
}

static kh_err dir_list(kh_provider *p, const char *prefix, kh_provider_list_fn fn, void *ctx)
{
  dir_provider *d = (dir_provider *)p;
  kh_err e = check_name(prefix);
  if (e)
    return e;
  char *dirname = kh_path_join(prefix, "x"); /* open_parent opens all but the last */
  if (!dirname)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  const char *base;
  int dfd = open_parent(d, dirname, false, &base);
  if (dfd < 0)
    e = errno == ENOENT ? KH_OK : walk_error(prefix, errno);
  else
    e = list_rec(dfd, "", fn, ctx, 0, &(int){0});
  free(dirname);
  return e;
}

static kh_err dir_del(kh_provider *p, const char *name)
{
  dir_provider *d = (dir_provider *)p;
  kh_err e = check_name(name);
  if (e)
    return e;
  fd_forget(d, name);
  const char *base;
  int dfd = open_parent(d, name, false, &base);
  if (dfd < 0) {
    if (errno != ENOENT)
      e = walk_error(name, errno);
  } else {
    if (unlinkat(dfd, base, 0) != 0 && errno != ENOENT)
      e = kh_seterr(KH_ERR_IO, "delete %s: %s", name, strerror(errno));
    close(dfd);
  }
  return e;
}

static void dir_destroy(kh_provider *p)
{
  dir_provider *d = (dir_provider *)p;
  for (int i = 0; i < FD_CACHE; i++)
    if (d->fds[i].name) {
      close(d->fds[i].fd);
      free(d->fds[i].name);
    }
  pthread_mutex_destroy(&d->mu);
  close(d->rootfd);
  free(d->root);
  free(d);
}

#define FAULTABLE(name, call) (kh_fault_point(name) ? (errno = EIO, -1) : (call))

/* Copy the file at src into a new temporary file in dfd (for a src on
 * another filesystem); *tmp gets its name in dfd. */
static kh_err copy_into(int dfd, const char *base, const char *src, char *tmp, size_t tmpcap)
{
  kh_err e = KH_OK;
  uint8_t rnd[6], *buf = malloc(1 << 20);
  int in = -1, out = -1;
  randombytes_buf(rnd, sizeof rnd);
  snprintf(tmp, tmpcap, "%s.%02x%02x%02x%02x%02x%02x.tmp", base, rnd[0], rnd[1], rnd[2], rnd[3],
           rnd[4], rnd[5]);
  if (!buf) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
      (out = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
    e = kh_seterr(kh_errno_code(errno), "copy %s: %s", src, strerror(errno));
    goto out;
  }
  for (;;) {
    ssize_t r = read(in, buf, 1 << 20);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      e = kh_seterr(KH_ERR_IO, "read %s: %s", src, strerror(errno));
      break;
    }
    if (r == 0)
      break;
    for (ssize_t o = 0; o < r;) {
      ssize_t w = write(out, buf + o, (size_t)(r - o));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0) {
        e = kh_seterr(kh_errno_code(errno), "write %s: %s", tmp, strerror(errno));
        break;
      }
      o += w;
    }
    if (e)
      break;
  }
  if (!e && fsync(out) != 0)
    e = kh_seterr(kh_errno_code(errno), "fsync %s: %s", tmp, strerror(errno));
out:
  if (out >= 0 && close(out) != 0 && !e)
    e = kh_seterr(kh_errno_code(errno), "close %s: %s", tmp, strerror(errno));
  if (e && out >= 0)
    unlinkat(dfd, tmp, 0);
  if (in >= 0)
    close(in);
  free(buf);
  return e;
}

static const kh_provider_ops dir_ops;

kh_err kh_provider_dir_put_file(kh_provider *p, const char *name, const char *path, bool excl)
{
  dir_provider *d = (dir_provider *)p;
  kh_err e = check_name(name);
  char tmp[300];
  const char *src = path, *base;
  int srcdir = AT_FDCWD, dfd = -1, fd = -1;
  bool copied = false;
  if (p->ops != &dir_ops)
    return kh_seterr(KH_ERR_UNSUPPORTED, "not a directory provider");
  if (e)
    return e;
  fd_forget(d, name);
  if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
      FAULTABLE("file.fsync", fsync(fd)) != 0) {
    e = kh_seterr(kh_errno_code(errno), "%s: %s", path, strerror(errno));
    goto out;
  }
  if ((dfd = open_parent(d, name, true, &base)) < 0) {
    e = walk_error(name, errno);
    goto out;
  }
  for (int pass = 0; pass < 2; pass++) {
    int r = excl ? FAULTABLE("file.link", linkat(srcdir, src, dfd, base, 0))
                 : FAULTABLE("file.rename", renameat(srcdir, src, dfd, base));
    if (r == 0)
      break;
    if (errno == EXDEV && pass == 0) {
      /* another filesystem: copy next to the object, then the same */
      if ((e = copy_into(dfd, base, path, tmp, sizeof tmp)))
        goto out;
      copied = true;
      srcdir = dfd;
      src = tmp;
      continue;
    }
    e = errno == EEXIST ? kh_seterr(KH_ERR_EXISTS, "object %s exists", name)
                        : kh_seterr(kh_errno_code(errno), "store %s: %s", name, strerror(errno));
    goto out;
  }
  /* the new name is durable before the source goes */
  if (fsync(dfd) != 0) {
    e = kh_seterr(kh_errno_code(errno), "fsync %s: %s", name, strerror(errno));
    goto out;
  }
  if (excl)
    unlinkat(srcdir, src, 0); /* linked: drop the source name (tmp or path) */
  if (copied)
    unlink(path);
  copied = false; /* tmp is the object (renamed) or gone (linked) */
out:
  if (e && copied)
    unlinkat(dfd, tmp, 0);
  if (fd >= 0)
    close(fd);
  if (dfd >= 0)
    close(dfd);
  return e;
}

static const kh_provider_ops dir_ops = {dir_put, dir_get, dir_read, dir_size, dir_list,
                                        dir_del, dir_destroy};

kh_err kh_provider_dir_new(const char *dir, kh_provider **out)
{
  *out = NULL;
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return kh_seterr(KH_ERR_NOTFOUND, "region directory %s does not exist", dir);
  dir_provider *d = calloc(1, sizeof *d);
  if (!d || !(d->root = strdup(dir))) {
    free(d);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  d->rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d->rootfd < 0) {
    kh_err e = kh_seterr(kh_errno_code(errno), "open region %s: %s", dir, strerror(errno));
    free(d->root);
    free(d);
    return e;
  }
  d->base.ops = &dir_ops;
  pthread_mutex_init(&d->mu, NULL);
  *out = &d->base;
  return KH_OK;
}

void kh_provider_free(kh_provider *p)
{
  if (p)
    p->ops->destroy(p);
}
