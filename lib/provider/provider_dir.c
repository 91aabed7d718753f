/* Directory provider: object "a/b/c" is the file DIR/a/b/c.  Writes go to a
 * temporary file that is fsynced and renamed (kh_write_file_atomic), so a
 * crash leaves either the whole object or none plus a *.tmp leftover that
 * list() skips. */
#include "provider/provider.h"
#include "common/err.h"
#include "common/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct dir_provider {
  kh_provider base;
  char *root;
} dir_provider;

static kh_err check_name(const char *name)
{
  /* names come from keyhold itself, but refuse anything that could escape */
  if (!name[0] || name[0] == '/' || strstr(name, "..") || strlen(name) > 1024)
    return kh_seterr(KH_ERR_INVAL, "bad object name '%s'", name);
  return KH_OK;
}

static char *full_path(dir_provider *d, const char *name) { return kh_path_join(d->root, name); }

static kh_err dir_put(kh_provider *p, const char *name, const void *data, size_t len, bool excl)
{
  dir_provider *d = (dir_provider *)p;
  kh_err e = check_name(name);
  if (e)
    return e;
  char *path = full_path(d, name);
  if (!path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  e = kh_write_file_atomic(path, data, len, 0600, excl);
  if (e == KH_ERR_NOTFOUND) { /* parent directory missing */
    char *slash = strrchr(path, '/');
    *slash = '\0';
    e = kh_mkdirs(path, 0700);
    *slash = '/';
    if (!e)
      e = kh_write_file_atomic(path, data, len, 0600, excl);
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
  int fd = open(path, O_RDONLY | O_CLOEXEC);
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
    close(fd);
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
  if (unlink(path) != 0 && errno != ENOENT)
    e = kh_seterr(KH_ERR_IO, "delete %s: %s", name, strerror(errno));
  free(path);
  return e;
}

static void dir_destroy(kh_provider *p)
{
  dir_provider *d = (dir_provider *)p;
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
  *out = &d->base;
  return KH_OK;
}

void kh_provider_free(kh_provider *p)
{
  if (p)
    p->ops->destroy(p);
}
