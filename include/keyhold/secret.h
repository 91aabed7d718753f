/* A secret byte string (passcode, recovery key) in libsodium guarded memory.
 * kh_secret_free wipes it; NULL is a no-op. */
#ifndef KEYHOLD_SECRET_H
#define KEYHOLD_SECRET_H
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"

typedef struct kh_secret {
  size_t len;
  uint8_t *bytes; /* len bytes (+1 NUL) in sodium_malloc memory */
} kh_secret;

/* New secret holding a copy of p[0..n); NULL on allocation failure. */
kh_secret *kh_secret_new(const void *p, size_t n);
void kh_secret_free(kh_secret *s);
/* Read a secret from the first line of a file (trailing \n / \r\n removed);
 * KH_ERR_INVAL if empty.  The file's bytes are wiped after copying. */
kh_err kh_secret_from_file(const char *path, kh_secret **out);
/* Constant-time equality. */
int kh_secret_equal(const kh_secret *a, const kh_secret *b);

#endif
