/* Root-key custody, sealed-file backend (lib/kms/rootkey_file.c) and the
 * blob format shared by both backends (docs/kms-rootkey.md).  The format
 * checks re-implement the documented layout with libsodium directly. */
#include "kms/rootkey.h"
#include "common/fsutil.h"
#include "crypto/crypto.h"
#include "kh_test.h"

#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <unistd.h>

static char tmpdir[256];
static kh_secret *secret, *wrong_secret;
static const uint8_t account_key[32] = "0123456789abcdef0123456789abcde";
static const uint8_t ad1[] = "keyhold/1\0local\0alice\0account-key";
static const uint8_t ad2[] = "keyhold/1\0local\0bob\0account-key";

static char *dir_of(const char *name)
{
  char *p = kh_path_join(tmpdir, name);
  if (!p)
    abort();
  return p;
}

static bool all_zero(const uint8_t *p, size_t n)
{
  uint8_t acc = 0;
  for (size_t i = 0; i < n; i++)
    acc |= p[i];
  return acc == 0;
}

static uint8_t *read_all(const char *dir, const char *name, size_t *len)
{
  char *path = kh_path_join(dir, name);
  uint8_t *data = NULL;
  if (kh_read_file(path, 1 << 20, &data, len) != KH_OK)
    data = NULL;
  free(path);
  return data;
}

/* Independent implementation of docs/kms-rootkey.md §2: open a sealed file
 * with the passphrase. */
static bool open_sealed_by_hand(const char *dir, const char *name, const char *region,
                                const char *kind, const kh_secret *s, uint8_t key[32])
{
  size_t len = 0;
  uint8_t *f = read_all(dir, name, &len);
  bool ok = false;
  uint8_t kek[32];
  kh_buf ad;
  kh_buf_init(&ad, 512);
  if (!f || len != 111 || memcmp(f, "KHRKSEAL", 8) != 0 || f[8] != 1 || f[10] != 1)
    goto out;
  uint32_t ops = kh_le32_get(f + 11), memkib = kh_le32_get(f + 15);
  if (crypto_pwhash(kek, 32, (const char *)s->bytes, s->len, f + 19, ops,
                    (size_t)memkib * 1024, crypto_pwhash_ALG_ARGON2ID13) != 0)
    goto out;
  if (kh_ad_build(&ad, region, "", kind, f, 39) != KH_OK)
    goto out;
  unsigned long long mlen;
  ok = crypto_aead_xchacha20poly1305_ietf_decrypt(key, &mlen, NULL, f + 63, 48, ad.data,
                                                  ad.len, f + 39, kek) == 0 && mlen == 32;
out:
  sodium_memzero(kek, sizeof kek);
  kh_buf_release(&ad);
  free(f);
  return ok;
}

/* Independent implementation of §3 for the file backend. */
static bool unwrap_by_hand(const uint8_t root[32], const char *region, const uint8_t *b,
                           size_t n, const uint8_t *ad, size_t adlen, uint8_t key[32])
{
  uint8_t dk[32];
  unsigned long long mlen;
  bool ok = false;
  kh_buf a;
  kh_buf_init(&a, 1 << 17);
  if (n != 157 || memcmp(b, "KHRW", 4) != 0 || b[4] != 1 || b[5] != 1 || b[10] != 1 ||
      b[11] != 72 || b[12] != 0)
    goto out;
  if (kh_ad_build(&a, region, "", "rootkey-dk", b, 11) != KH_OK)
    goto out;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(dk, &mlen, NULL, b + 13 + 24, 48, a.data,
                                                 a.len, b + 13, root) != 0)
    goto out;
  kh_buf_reset(&a);
  if (kh_buf_append(&a, b, 85) || kh_buf_append(&a, ad, adlen))
    goto out;
  ok = crypto_aead_xchacha20poly1305_ietf_decrypt(key, &mlen, NULL, b + 85 + 24, 48, a.data,
                                                  a.len, b + 85, dk) == 0;
out:
  sodium_memzero(dk, sizeof dk);
  kh_buf_release(&a);
  return ok;
}

static void expect_auth(kh_rootkey *k, const uint8_t *b, size_t n, const uint8_t *ad,
                        size_t adlen, int *bad)
{
  uint8_t out[32];
  memset(out, 0xAA, sizeof out);
  kh_err e = kh_rootkey_unwrap(k, b, n, ad, adlen, out);
  if (e != KH_ERR_AUTH || !all_zero(out, 32))
    (*bad)++;
}

static void test_roundtrip_and_tamper(void)
{
  char *dir = dir_of("r1");
  kh_rootkey *k = NULL;
  kh_buf blob;
  kh_buf_init(&blob, 4096);
  uint8_t out[32];

  CHECK_OK(kh_rootkey_file_create(dir, "local", secret, &k));
  if (!k)
    goto out;
  CHECK(strcmp(kh_rootkey_id(k), "file:local:v1") == 0);
  CHECK_EQ(kh_rootkey_version(k), 1);
  CHECK_OK(kh_rootkey_wrap(k, account_key, ad1, sizeof ad1, &blob));
  CHECK_EQ(blob.len, 157);
  CHECK_MEM(blob.data, "KHRW\x01\x01\x01\x00\x00\x00\x01\x48\x00", 13);
  CHECK(memmem(blob.data, blob.len, account_key, 32) == NULL);
  CHECK_OK(kh_rootkey_unwrap(k, blob.data, blob.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);

  /* two wraps of the same key differ (fresh data key and nonces) */
  kh_buf b2;
  kh_buf_init(&b2, 4096);
  CHECK_OK(kh_rootkey_wrap(k, account_key, ad1, sizeof ad1, &b2));
  CHECK(b2.len == blob.len && memcmp(b2.data, blob.data, blob.len) != 0);
  kh_buf_release(&b2);

  int bad = 0;
  expect_auth(k, blob.data, blob.len, ad2, sizeof ad2, &bad);          /* wrong ad */
  expect_auth(k, blob.data, blob.len, ad1, sizeof ad1 - 1, &bad);      /* shorter ad */
  expect_auth(k, blob.data, blob.len, NULL, 0, &bad);                  /* no ad */
  CHECK_EQ(bad, 0);
  bad = 0;
  for (size_t i = 0; i < blob.len; i++)
    for (int bit = 0; bit < 8; bit++) {
      blob.data[i] ^= (uint8_t)(1u << bit);
      expect_auth(k, blob.data, blob.len, ad1, sizeof ad1, &bad);
      blob.data[i] ^= (uint8_t)(1u << bit);
    }
  CHECK_EQ(bad, 0);
  bad = 0;
  for (size_t n = 0; n < blob.len; n++)
    expect_auth(k, blob.data, n, ad1, sizeof ad1, &bad);
  CHECK_EQ(bad, 0);
  uint8_t longer[200];
  memcpy(longer, blob.data, blob.len);
  longer[blob.len] = 0;
  bad = 0;
  expect_auth(k, longer, blob.len + 1, ad1, sizeof ad1, &bad);
  expect_auth(k, NULL, 0, ad1, sizeof ad1, &bad);
  CHECK_EQ(bad, 0);
  /* the untouched blob still opens after all that */
  CHECK_OK(kh_rootkey_unwrap(k, blob.data, blob.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);

  /* argument checks */
  kh_buf big;
  kh_buf_init(&big, 16);
  CHECK_EQ(kh_rootkey_wrap(k, account_key, ad1, sizeof ad1, &big), KH_ERR_TOOBIG);
  CHECK_EQ(big.len, 0);
  kh_buf_release(&big);
  CHECK_EQ(kh_rootkey_wrap(k, account_key, NULL, 5, &blob), KH_ERR_INVAL);
out:
  kh_rootkey_free(k);
  kh_buf_release(&blob);
  free(dir);
}

static void test_secret_and_region(void)
{
  char *dir = dir_of("r2");
  kh_rootkey *k = NULL, *k2 = NULL;
  kh_buf blob;
  kh_buf_init(&blob, 4096);
  uint8_t out[32], d1[32], d2[32];
  kh_secret *shorts = kh_secret_new("short", 5);

  CHECK_OK(kh_rootkey_file_create(dir, "local", secret, &k));
  if (!k)
    goto out;
  CHECK_EQ(kh_rootkey_file_create(dir, "local", secret, &k2), KH_ERR_EXISTS);
  CHECK(k2 == NULL);
  CHECK_OK(kh_rootkey_wrap(k, account_key, ad1, sizeof ad1, &blob));
  CHECK_OK(kh_rootkey_derive(k, (const uint8_t *)"escrow:alice", 12, d1));

  CHECK_EQ(kh_rootkey_file_open(dir, "local", wrong_secret, &k2), KH_ERR_AUTH);
  CHECK(k2 == NULL);
  CHECK_EQ(kh_rootkey_file_open(dir, "local", shorts, &k2), KH_ERR_INVAL);
  /* the same files under another region id do not open */
  CHECK_EQ(kh_rootkey_file_open(dir, "eu-west", secret, &k2), KH_ERR_AUTH);
  CHECK_EQ(kh_rootkey_file_open(dir, "bad region", secret, &k2), KH_ERR_INVAL);
  char *missing = dir_of("nope");
  CHECK_EQ(kh_rootkey_file_open(missing, "local", secret, &k2), KH_ERR_NOTFOUND);
  free(missing);

  CHECK_OK(kh_rootkey_file_open(dir, "local", secret, &k2));
  if (k2) {
    CHECK_OK(kh_rootkey_unwrap(k2, blob.data, blob.len, ad1, sizeof ad1, out));
    CHECK_MEM(out, account_key, 32);
    CHECK_OK(kh_rootkey_derive(k2, (const uint8_t *)"escrow:alice", 12, d2));
    CHECK_MEM(d1, d2, 32);
    CHECK_OK(kh_rootkey_derive(k2, (const uint8_t *)"escrow:bob", 10, d2));
    CHECK(memcmp(d1, d2, 32) != 0);
    CHECK_OK(kh_rootkey_derive(k2, NULL, 0, d2));
    CHECK(memcmp(d1, d2, 32) != 0);
    uint8_t big[KH_ROOTKEY_CONTEXT_MAX + 1] = {0};
    CHECK_EQ(kh_rootkey_derive(k2, big, sizeof big, d2), KH_ERR_INVAL);
    CHECK(all_zero(d2, 32));
  }
  kh_rootkey_free(k2);
  k2 = NULL;

  /* another region with the same operator secret cannot unwrap */
  char *dir2 = dir_of("r2-eu");
  CHECK_OK(kh_rootkey_file_create(dir2, "eu-west", secret, &k2));
  if (k2) {
    CHECK(strcmp(kh_rootkey_id(k2), "file:eu-west:v1") == 0);
    memset(out, 0xAA, sizeof out);
    CHECK_EQ(kh_rootkey_unwrap(k2, blob.data, blob.len, ad1, sizeof ad1, out), KH_ERR_AUTH);
    CHECK(all_zero(out, 32));
    CHECK_OK(kh_rootkey_derive(k2, (const uint8_t *)"escrow:alice", 12, d2));
    CHECK(memcmp(d1, d2, 32) != 0);
  }
  free(dir2);

  /* the sealed files hold neither key in clear; by hand, with the documented
   * format and the secret, they do open, and the root key opens the blob. */
  uint8_t root[32], dkey[32];
  CHECK(open_sealed_by_hand(dir, "root-1.sealed", "local", "rootkey", secret, root));
  CHECK(open_sealed_by_hand(dir, "derive.sealed", "local", "rootkey-derive", secret, dkey));
  CHECK(!open_sealed_by_hand(dir, "root-1.sealed", "local", "rootkey", wrong_secret, out));
  CHECK(!open_sealed_by_hand(dir, "root-1.sealed", "eu-west", "rootkey", secret, out));
  const char *names[] = {"root-1.sealed", "derive.sealed"};
  for (int i = 0; i < 2; i++) {
    size_t len = 0;
    uint8_t *f = read_all(dir, names[i], &len);
    CHECK(f != NULL && len == KH_ROOTKEY_SEALED_BYTES);
    if (f) {
      CHECK(memmem(f, len, root, 32) == NULL);
      CHECK(memmem(f, len, dkey, 32) == NULL);
      CHECK(memmem(f, len, secret->bytes, secret->len) == NULL);
    }
    free(f);
  }
  CHECK(!all_zero(root, 32));
  CHECK(unwrap_by_hand(root, "local", blob.data, blob.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);
  /* and derive is documented as BLAKE2b-256 keyed by the derivation key */
  uint8_t msg[64] = "keyhold/rootkey/derive/1";
  memcpy(msg + 25, "escrow:alice", 12);
  crypto_generichash(out, 32, msg, 37, dkey, 32);
  CHECK_MEM(out, d1, 32);
  sodium_memzero(root, 32);
  sodium_memzero(dkey, 32);
out:
  kh_secret_free(shorts);
  kh_rootkey_free(k);
  kh_rootkey_free(k2);
  kh_buf_release(&blob);
  free(dir);
}

static void test_rotation(void)
{
  char *dir = dir_of("r3");
  kh_rootkey *k = NULL, *k2 = NULL;
  kh_buf b1, b2, b3;
  kh_buf_init(&b1, 4096);
  kh_buf_init(&b2, 4096);
  kh_buf_init(&b3, 4096);
  uint8_t out[32], d1[32], d2[32];

  CHECK_OK(kh_rootkey_file_create(dir, "local", secret, &k));
  if (!k)
    goto out;
  CHECK_OK(kh_rootkey_wrap(k, account_key, ad1, sizeof ad1, &b1));
  CHECK_OK(kh_rootkey_derive(k, (const uint8_t *)"ctx", 3, d1));
  CHECK_OK(kh_rootkey_rotate(k));
  CHECK_EQ(kh_rootkey_version(k), 2);
  CHECK(strcmp(kh_rootkey_id(k), "file:local:v2") == 0);
  CHECK_OK(kh_rootkey_derive(k, (const uint8_t *)"ctx", 3, d2));
  CHECK_MEM(d1, d2, 32); /* derive is not rotated */
  CHECK_OK(kh_rootkey_unwrap(k, b1.data, b1.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);
  CHECK_OK(kh_rootkey_rewrap(k, b1.data, b1.len, ad1, sizeof ad1, &b2));
  CHECK_EQ(kh_le32_get(b1.data + 6), 1);
  CHECK_EQ(kh_le32_get(b2.data + 6), 2);
  CHECK_OK(kh_rootkey_unwrap(k, b2.data, b2.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);
  CHECK_EQ(kh_rootkey_rewrap(k, b1.data, b1.len, ad2, sizeof ad2, &b3), KH_ERR_AUTH);
  CHECK_EQ(b3.len, 0);
  /* a v1 blob relabelled as v2 does not open */
  b1.data[6] = 2;
  memset(out, 0xAA, 32);
  CHECK_EQ(kh_rootkey_unwrap(k, b1.data, b1.len, ad1, sizeof ad1, out), KH_ERR_AUTH);
  CHECK(all_zero(out, 32));
  b1.data[6] = 1;
  kh_rootkey_free(k);
  k = NULL;

  /* reopen: current is v2, both versions unwrap */
  CHECK_OK(kh_rootkey_file_open(dir, "local", secret, &k));
  if (!k)
    goto out;
  CHECK_EQ(kh_rootkey_version(k), 2);
  CHECK_OK(kh_rootkey_unwrap(k, b1.data, b1.len, ad1, sizeof ad1, out));
  CHECK_OK(kh_rootkey_unwrap(k, b2.data, b2.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);
  CHECK_OK(kh_rootkey_derive(k, (const uint8_t *)"ctx", 3, d2));
  CHECK_MEM(d1, d2, 32);
  /* a second holder rotating at the same time loses cleanly */
  CHECK_OK(kh_rootkey_file_open(dir, "local", secret, &k2));
  CHECK_OK(kh_rootkey_rotate(k));
  if (k2) {
    CHECK_EQ(kh_rootkey_rotate(k2), KH_ERR_EXISTS);
    CHECK_EQ(kh_rootkey_version(k2), 2);
  }
  kh_rootkey_free(k);
  k = NULL;

  /* retire v1: its blobs stop opening, v2 blobs still do */
  char *p1 = kh_path_join(dir, "root-1.sealed");
  CHECK_EQ(unlink(p1), 0);
  free(p1);
  CHECK_OK(kh_rootkey_file_open(dir, "local", secret, &k));
  if (k) {
    CHECK_EQ(kh_rootkey_version(k), 3);
    CHECK_EQ(kh_rootkey_unwrap(k, b1.data, b1.len, ad1, sizeof ad1, out), KH_ERR_AUTH);
    CHECK_OK(kh_rootkey_unwrap(k, b2.data, b2.len, ad1, sizeof ad1, out));
    CHECK_MEM(out, account_key, 32);
  }
  kh_rootkey_free(k);
  k = NULL;

  /* a sealed file renamed to another version is refused, fail closed */
  size_t len = 0;
  uint8_t *f = read_all(dir, "root-2.sealed", &len);
  char *p9 = kh_path_join(dir, "root-9.sealed");
  CHECK(f != NULL);
  if (f)
    CHECK_OK(kh_write_file_atomic(p9, f, len, 0600, true));
  CHECK_EQ(kh_rootkey_file_open(dir, "local", secret, &k), KH_ERR_AUTH);
  CHECK(k == NULL);
  unlink(p9);
  /* a damaged sealed file is refused */
  if (f) {
    f[70] ^= 1;
    CHECK_OK(kh_write_file_atomic(p9, f, len, 0600, false));
    f[70] ^= 1;
    CHECK_EQ(kh_rootkey_file_open(dir, "local", secret, &k), KH_ERR_AUTH);
    f[9 + 0] = 2; /* claims to be a derive key */
    CHECK_OK(kh_write_file_atomic(p9, f, len, 0600, false));
    CHECK_ERR(kh_rootkey_file_open(dir, "local", secret, &k), KH_ERR_FORMAT);
    CHECK_OK(kh_write_file_atomic(p9, "junk", 4, 0600, false));
    CHECK_EQ(kh_rootkey_file_open(dir, "local", secret, &k), KH_ERR_FORMAT);
    CHECK(k == NULL);
  }
  unlink(p9);
  free(p9);
  free(f);
out:
  kh_rootkey_free(k);
  kh_rootkey_free(k2);
  kh_buf_release(&b1);
  kh_buf_release(&b2);
  kh_buf_release(&b3);
  free(dir);
}

static void test_parsers(void)
{
  kh_rootkey_blob b;
  kh_rootkey_sealed s;
  uint8_t blob[157] = "KHRW\x01\x01\x01\x00\x00\x00\x01\x48\x00";
  CHECK_OK(kh_rootkey_blob_parse(blob, sizeof blob, &b));
  CHECK_EQ(b.version, 1);
  CHECK_EQ(b.header_len, 85);
  CHECK(b.nonce == blob + 85 && b.ct == blob + 109);
  blob[6] = 0; /* version 0 */
  CHECK_EQ(kh_rootkey_blob_parse(blob, sizeof blob, &b), KH_ERR_FORMAT);
  blob[6] = 1;
  blob[5] = 2; /* pkcs11 backend with a file-sized wrapped key */
  CHECK_EQ(kh_rootkey_blob_parse(blob, sizeof blob, &b), KH_ERR_FORMAT);
  uint8_t p11[125] = "KHRW\x01\x02\x07\x00\x00\x00\x02\x28\x00";
  CHECK_OK(kh_rootkey_blob_parse(p11, sizeof p11, &b));
  CHECK_EQ(b.version, 7);
  CHECK_EQ(b.backend, KH_ROOTKEY_BACKEND_PKCS11);
  p11[11] = 0xff;
  p11[12] = 0xff;
  CHECK_EQ(kh_rootkey_blob_parse(p11, sizeof p11, &b), KH_ERR_FORMAT);
  CHECK_EQ(kh_rootkey_blob_parse(NULL, 0, &b), KH_ERR_FORMAT);

  uint8_t f[111] = "KHRKSEAL\x01\x01\x01\x03\x00\x00\x00\x00\x00\x04\x00";
  f[35] = 1;
  CHECK_OK(kh_rootkey_sealed_parse(f, sizeof f, &s));
  CHECK_EQ(s.memkib, 262144);
  CHECK_EQ(s.opslimit, 3);
  f[18] = 0x40; /* 1 TiB of memory: refused */
  CHECK_EQ(kh_rootkey_sealed_parse(f, sizeof f, &s), KH_ERR_FORMAT);
  f[18] = 0x04;
  f[11] = 0; /* zero passes */
  CHECK_EQ(kh_rootkey_sealed_parse(f, sizeof f, &s), KH_ERR_FORMAT);
  f[11] = 3;
  CHECK_EQ(kh_rootkey_sealed_parse(f, sizeof f - 1, &s), KH_ERR_FORMAT);
}

/* Several threads wrap and unwrap while the main thread rotates. */
struct worker { kh_rootkey *k; int failures; };

static void *worker_run(void *arg)
{
  struct worker *w = arg;
  for (int i = 0; i < 40; i++) {
    kh_buf b;
    uint8_t out[32];
    kh_buf_init(&b, 4096);
    if (kh_rootkey_wrap(w->k, account_key, ad1, sizeof ad1, &b) != KH_OK ||
        kh_rootkey_unwrap(w->k, b.data, b.len, ad1, sizeof ad1, out) != KH_OK ||
        memcmp(out, account_key, 32) != 0)
      w->failures++;
    kh_buf_release(&b);
  }
  return NULL;
}

static void test_threads(void)
{
  char *dir = dir_of("r4");
  kh_rootkey *k = NULL;
  pthread_t t[4];
  struct worker w[4];
  CHECK_OK(kh_rootkey_file_create(dir, "local", secret, &k));
  if (!k)
    goto out;
  for (int i = 0; i < 4; i++) {
    w[i].k = k;
    w[i].failures = 0;
    pthread_create(&t[i], NULL, worker_run, &w[i]);
  }
  CHECK_OK(kh_rootkey_rotate(k));
  CHECK_OK(kh_rootkey_rotate(k));
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    CHECK_EQ(w[i].failures, 0);
  }
  CHECK_EQ(kh_rootkey_version(k), 3);
out:
  kh_rootkey_free(k);
  free(dir);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/kh-rootkey-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  secret = kh_secret_new("correct horse battery staple", 28);
  wrong_secret = kh_secret_new("correct horse battery stapler", 29);
  RUN(test_parsers);
  RUN(test_roundtrip_and_tamper);
  RUN(test_secret_and_region);
  RUN(test_rotation);
  RUN(test_threads);
  kh_secret_free(secret);
  kh_secret_free(wrong_secret);
  kh_remove_tree(tmpdir);
  return kh_test_done("test_rootkey");
}
