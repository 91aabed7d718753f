/* Directory provider: object "a/b/c" is the file DIR/a/b/c.  Writes go to a
 * temporary file that is fsynced and renamed (kh_write_file_atomic), so a
 * crash leaves either the whole object or none plus a *.tmp leftover that
 * list() skips. */
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
  pthread_mutex_t mu;
  cached_fd fds[FD_CACHE];
  uint64_t clock;
} dir_provider;

/* A descriptor for name (cached when possible); release with fd_release. */
static int fd_acquire(dir_provider *d, const char *name, const char *path, int *slot)
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
  int fd = open(path, O_RDONLY | O_CLOEXEC);
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
  e = kh_write_filev_atomic(path, iov, niov, 0600, excl);
  if (e == KH_ERR_NOTFOUND) { /* parent directory missing */
    char *slash = strrchr(path, '/');
    *slash = '\0';
    e = kh_mkdirs(path, 0700);
    *slash = '/';
    if (!e)
      e = kh_write_filev_atomic(path, iov, niov, 0600, excl);
  }
  free(path);
  return e;
}

static kh_err dir_get(kh_provider *p, const char *name, uint64_t off, size_t len, kh_buf *out)
{
  dir_provider *d = (dir_provider *)p;
  kh_err e = check_name(name);
  if (e)
    return e;
  char *path = full_path(d, name);
  if (!path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  int slot;
  int fd = fd_acquire(d, name, path, &slot);
  if (fd < 0) {
    e = kh_seterr(kh_errno_code(errno), "object %s: %s", name, strerror(errno));
    goto out;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    e = kh_seterr(KH_ERR_IO, "stat %s: %s", name, strerror(errno));
    goto out;
  }
  uint64_t size = (uint64_t)st.st_size;
  if (off > size || (len != KH_GET_ALL && len > size - off)) {
    e = kh_seterr(KH_ERR_FORMAT, "object %s is truncated (%llu bytes, wanted %llu+%zu)", name,
                  (unsigned long long)size, (unsigned long long)off, len);
    goto out;
  }
  if (len == KH_GET_ALL)
    len = (size_t)(size - off);
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
  if (fd >= 0)
    fd_release(d, fd, slot);
  free(path);
  return e;
}

static kh_err dir_size(kh_provider *p, const char *name, uint64_t *size)
{
  dir_provider *d = (dir_provider *)p;
  kh_err e = check_name(name);
  if (e)
    return e;
  char *path = full_path(d, name);
  if (!path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  struct stat st;
  if (stat(path, &st) != 0)
    e = kh_seterr(kh_errno_code(errno), "object %s: %s", name, strerror(errno));
  else
    *size = (uint64_t)st.st_size;
  free(path);
  return e;
}

static bool is_tmp(const char *n)
{
  size_t l = strlen(n);
  return l > 4 && !strcmp(n + l - 4, ".tmp");
}

/* rel: name relative to the listed prefix */
static kh_err list_rec(const char *abs, const char *rel, kh_provider_list_fn fn, void *ctx,
                       int depth, int *stop)
{
  if (depth > 8)
    return KH_OK;
  DIR *dir = opendir(abs);
  if (!dir)
    return errno == ENOENT || errno == ENOTDIR
               ? KH_OK
               : kh_seterr(KH_ERR_IO, "list %s: %s", abs, strerror(errno));
  kh_err e = KH_OK;
  struct dirent *de;
  while (!e && !*stop && (de = readdir(dir))) {
    if (de->d_name[0] == '.' || is_tmp(de->d_name))
      continue;
    char *cabs = kh_path_join(abs, de->d_name);
    char *crel = rel[0] ? kh_path_join(rel, de->d_name) : strdup(de->d_name);
    struct stat st;
    if (!cabs || !crel)
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    else if (lstat(cabs, &st) != 0)
      ; /* vanished (concurrent delete) */
    else if (S_ISDIR(st.st_mode))
      e = list_rec(cabs, crel, fn, ctx, depth + 1, stop);
    else if (S_ISREG(st.st_mode))
      *stop = fn(crel, (uint64_t)st.st_size, ctx);
    free(cabs);
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
  char *abs = full_path(d, prefix);
  if (!abs)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  int stop = 0;
  e = list_rec(abs, "", fn, ctx, 0, &stop);
  free(abs);
  return e;
}

static kh_err dir_del(kh_provider *p, const char *name)
{
  dir_provider *d = (dir_provider *)p;
  kh_err e = check_name(name);
  if (e)
    return e;
  char *path = full_path(d, name);
  if (!path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  fd_forget(d, name);
  if (unlink(path) != 0 && errno != ENOENT)
    e = kh_seterr(KH_ERR_IO, "delete %s: %s", name, strerror(errno));
  free(path);
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
  free(d->root);
  free(d);
}

static const kh_provider_ops dir_ops = {dir_put, dir_get, dir_size, dir_list, dir_del,
                                        dir_destroy};

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
