/* Fuzz the root-key blob parser (docs/kms-rootkey.md §3) and the whole
 * unwrap path of the sealed-file backend.  Properties: the parser never
 * reads out of bounds, accepts only canonical blobs (re-serialising the
 * parsed fields gives back the input), and no input unwraps under a root key
 * made fresh for this process: unwrap is KH_ERR_AUTH with a zeroed key. */
#include "kms/rootkey.h"
#include "common/fsutil.h"
#include "crypto/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static kh_rootkey *rootkey;

static void init_once(void)
{
  if (rootkey)
    return;
  char dir[256];
  const char *base = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/kh-fuzz-rootkey-XXXXXX", base && *base ? base : "/tmp");
  kh_secret *s = kh_secret_new("fuzzing operator secret", 23);
  if (!s || !mkdtemp(dir) || kh_rootkey_file_create(dir, "local", s, &rootkey) != KH_OK)
    abort();
  kh_remove_tree(dir); /* the keys stay in memory */
  kh_secret_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  init_once();
  kh_rootkey_blob b;
  if (kh_rootkey_blob_parse(data, size, &b) == KH_OK) {
    uint8_t re[KH_ROOTKEY_BLOB_MAX];
    size_t n = 0;
    memcpy(re, KH_ROOTKEY_BLOB_MAGIC, 4);
    re[4] = 1;
    re[5] = b.backend;
    kh_le32_put(re + 6, b.version);
    re[10] = b.alg;
    re[11] = (uint8_t)b.wrapped_len;
    re[12] = (uint8_t)(b.wrapped_len >> 8);
    n = 13;
    if (b.wrapped_len > sizeof re - n - 72)
      abort();
    memcpy(re + n, b.wrapped, b.wrapped_len);
    n += b.wrapped_len;
    if (b.header_len != n)
      abort();
    memcpy(re + n, b.nonce, 24);
    memcpy(re + n + 24, b.ct, 48);
    n += 72;
    if (n != size || memcmp(re, data, size) != 0)
      abort();
  }
  /* split the input: a short prefix is the ad, the rest the blob */
  size_t adlen = size ? data[0] % 8 : 0;
  if (adlen > size - (size ? 1 : 0))
    adlen = 0;
  const uint8_t *ad = size ? data + 1 : NULL;
  const uint8_t *blob = size ? data + 1 + adlen : data;
  size_t bn = size ? size - 1 - adlen : 0;
  uint8_t key[32];
  memset(key, 0xAA, sizeof key);
  if (kh_rootkey_unwrap(rootkey, blob, bn, adlen ? ad : NULL, adlen, key) != KH_ERR_AUTH)
    abort();
  for (int i = 0; i < 32; i++)
    if (key[i])
      abort();
  /* the whole input as a blob too */
  if (kh_rootkey_unwrap(rootkey, data, size, NULL, 0, key) != KH_ERR_AUTH)
    abort();
  return 0;
}
