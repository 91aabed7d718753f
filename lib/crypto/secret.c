/* kh_secret: public container for passcodes and recovery keys. */
#include "keyhold/secret.h"
#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#define SECRET_FILE_MAX 4096

kh_secret *kh_secret_new(const void *p, size_t n)
{
  if (sodium_init() < 0)
    return NULL;
  kh_secret *s = sodium_malloc(sizeof *s);
  if (!s)
    return NULL;
  s->len = n;
  s->bytes = sodium_malloc(n + 1);
  if (!s->bytes) {
    sodium_free(s);
    return NULL;
  }
  if (n)
    memcpy(s->bytes, p, n);
  s->bytes[n] = 0;
  return s;
}

void kh_secret_free(kh_secret *s)
{
  if (!s)
    return;
  sodium_free(s->bytes); /* sodium_free wipes */
  sodium_free(s);
}

kh_err kh_secret_from_file(const char *path, kh_secret **out)
{
  *out = NULL;
  if (sodium_init() < 0)
    return kh_seterr(KH_ERR_CRYPTO, "libsodium failed to initialise");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return kh_seterr(kh_errno_code(errno), "cannot read passcode file %s: %s", path,
                     strerror(errno));
  kh_err e = KH_OK;
  uint8_t *buf = sodium_malloc(SECRET_FILE_MAX + 1);
  size_t n = 0;
  if (!buf) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  for (;;) {
    ssize_t r = read(fd, buf + n, SECRET_FILE_MAX + 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      e = kh_seterr(KH_ERR_IO, "read %s: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0)
      break;
    n += (size_t)r;
    if (n > SECRET_FILE_MAX) {
      e = kh_seterr(KH_ERR_TOOBIG, "secret file %s is larger than %d bytes", path,
                    SECRET_FILE_MAX);
      goto out;
    }
  }
  size_t len = 0;
  while (len < n && buf[len] != '\n')
    len++;
  if (len > 0 && buf[len - 1] == '\r')
    len--;
  if (len == 0) {
    e = kh_seterr(KH_ERR_INVAL, "secret file %s is empty", path);
    goto out;
  }
  *out = kh_secret_new(buf, len);
  if (!*out)
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
out:
  if (buf)
    sodium_free(buf);
  close(fd);
  return e;
}

int kh_secret_equal(const kh_secret *a, const kh_secret *b)
{
  return a->len == b->len && sodium_memcmp(a->bytes, b->bytes, a->len) == 0;
}
