/* Unit tests for lib/crypto: AEAD (both ciphers), boxes, object sealing
 * with its binding to region/account/type/id, KDF and MAC known answers,
 * secure memory and kh_secret. */
#include "crypto/crypto.h"
#include "crypto/objseal.h"
#include "common/err.h"
#include "keyhold/secret.h"
#include "kh_test.h"

#include <sodium.h>
#include <stdlib.h>
#include <unistd.h>

static const uint8_t key1[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static int all_zero(const uint8_t *p, size_t n)
{
  uint8_t a = 0;
  for (size_t i = 0; i < n; i++)
    a |= p[i];
  return a == 0;
}

static void aead_cipher(int cipher)
{
  kh_aead *a = NULL;
  CHECK_OK(kh_aead_new(&a, cipher, key1));
  if (!a)
    return;
  CHECK_EQ(kh_aead_cipher(a), cipher);
  size_t nb = kh_aead_nonce_bytes(cipher);
  CHECK_EQ(nb, cipher == KH_CIPHER_AES256GCM ? 12 : 24);
  uint8_t nonce[24], m[100], c[100 + KH_AEAD_TAG], d[100];
  static const uint8_t ad[] = "associated data";
  randombytes_buf(nonce, sizeof nonce);
  randombytes_buf(m, sizeof m);
  CHECK_OK(kh_aead_seal(a, c, m, sizeof m, ad, sizeof ad, nonce));

  /* matches libsodium directly (the wrapper adds nothing to the format) */
  uint8_t ref[sizeof c];
  unsigned long long rl;
  if (cipher == KH_CIPHER_AES256GCM)
    crypto_aead_aes256gcm_encrypt(ref, &rl, m, sizeof m, ad, sizeof ad, NULL, nonce, key1);
  else
    crypto_aead_xchacha20poly1305_ietf_encrypt(ref, &rl, m, sizeof m, ad, sizeof ad, NULL, nonce,
                                               key1);
  CHECK_EQ(rl, sizeof c);
  CHECK_MEM(c, ref, sizeof c);

  CHECK_OK(kh_aead_open(a, d, c, sizeof c, ad, sizeof ad, nonce));
  CHECK_MEM(d, m, sizeof m);

  /* every single bit flip in ciphertext, nonce or AD fails with zeroed output */
  int notauth = 0, notzero = 0;
  for (size_t i = 0; i < sizeof c * 8; i++) {
    c[i / 8] ^= (uint8_t)(1u << (i % 8));
    memset(d, 0xaa, sizeof d);
    if (kh_aead_open(a, d, c, sizeof c, ad, sizeof ad, nonce) != KH_ERR_AUTH)
      notauth++;
    if (!all_zero(d, sizeof d))
      notzero++;
    c[i / 8] ^= (uint8_t)(1u << (i % 8));
  }
  for (size_t i = 0; i < nb * 8; i++) {
    nonce[i / 8] ^= (uint8_t)(1u << (i % 8));
    memset(d, 0xaa, sizeof d);
    if (kh_aead_open(a, d, c, sizeof c, ad, sizeof ad, nonce) != KH_ERR_AUTH)
      notauth++;
    if (!all_zero(d, sizeof d))
      notzero++;
    nonce[i / 8] ^= (uint8_t)(1u << (i % 8));
  }
  uint8_t ad2[sizeof ad];
  memcpy(ad2, ad, sizeof ad);
  for (size_t i = 0; i < sizeof ad * 8; i++) {
    ad2[i / 8] ^= (uint8_t)(1u << (i % 8));
    memset(d, 0xaa, sizeof d);
    if (kh_aead_open(a, d, c, sizeof c, ad2, sizeof ad2, nonce) != KH_ERR_AUTH)
      notauth++;
    if (!all_zero(d, sizeof d))
      notzero++;
    ad2[i / 8] ^= (uint8_t)(1u << (i % 8));
  }
  CHECK_EQ(notauth, 0);
  CHECK_EQ(notzero, 0);
  /* truncated ciphertext, shorter AD, too-short input */
  memset(d, 0xaa, sizeof d);
  CHECK_EQ(kh_aead_open(a, d, c, sizeof c - 1, ad, sizeof ad, nonce), KH_ERR_AUTH);
  CHECK(all_zero(d, sizeof c - 1 - KH_AEAD_TAG));
  CHECK_EQ(kh_aead_open(a, d, c, sizeof c, ad, sizeof ad - 1, nonce), KH_ERR_AUTH);
  CHECK_EQ(kh_aead_open(a, d, c, KH_AEAD_TAG - 1, ad, sizeof ad, nonce), KH_ERR_AUTH);
  CHECK_EQ(kh_aead_open(a, d, c, 0, NULL, 0, nonce), KH_ERR_AUTH);
  /* wrong key */
  kh_aead *b = NULL;
  uint8_t key2[32];
  memcpy(key2, key1, 32);
  key2[31] ^= 1;
  CHECK_OK(kh_aead_new(&b, cipher, key2));
  CHECK_EQ(kh_aead_open(b, d, c, sizeof c, ad, sizeof ad, nonce), KH_ERR_AUTH);
  kh_aead_free(b);

  /* in place */
  uint8_t ip[40 + KH_AEAD_TAG];
  memcpy(ip, m, 40);
  CHECK_OK(kh_aead_seal(a, ip, ip, 40, NULL, 0, nonce));
  CHECK_OK(kh_aead_open(a, ip, ip, sizeof ip, NULL, 0, nonce));
  CHECK_MEM(ip, m, 40);
  /* empty message */
  uint8_t tag[KH_AEAD_TAG];
  CHECK_OK(kh_aead_seal(a, tag, NULL, 0, ad, sizeof ad, nonce));
  CHECK_OK(kh_aead_open(a, d, tag, sizeof tag, ad, sizeof ad, nonce));

  /* boxes: random nonce up front */
  kh_buf box, out;
  kh_buf_init(&box, 4096);
  kh_buf_init(&out, 4096);
  CHECK_OK(kh_buf_append(&box, "pre", 3)); /* seal_box appends */
  CHECK_OK(kh_aead_seal_box(a, &box, m, sizeof m, ad, sizeof ad));
  CHECK_EQ(box.len, 3 + sizeof m + kh_aead_box_overhead(a));
  CHECK_EQ(kh_aead_box_overhead(a), nb + KH_AEAD_TAG);
  CHECK_OK(kh_aead_open_box(a, &out, box.data + 3, box.len - 3, ad, sizeof ad));
  CHECK_EQ(out.len, sizeof m);
  CHECK_MEM(out.data, m, sizeof m);
  /* two boxes of the same message differ (fresh nonce) */
  kh_buf box2;
  kh_buf_init(&box2, 4096);
  CHECK_OK(kh_aead_seal_box(a, &box2, m, sizeof m, ad, sizeof ad));
  CHECK(memcmp(box.data + 3, box2.data, box2.len) != 0);
  int boxbad = 0;
  for (size_t i = 3; i < box.len; i++) {
    box.data[i] ^= 0x40;
    kh_buf_reset(&out);
    if (kh_aead_open_box(a, &out, box.data + 3, box.len - 3, ad, sizeof ad) != KH_ERR_AUTH ||
        out.len != 0)
      boxbad++;
    box.data[i] ^= 0x40;
  }
  CHECK_EQ(boxbad, 0);
  CHECK_EQ(kh_aead_open_box(a, &out, box.data + 3, nb + KH_AEAD_TAG - 1, ad, sizeof ad),
           KH_ERR_AUTH);
  /* output cap respected */
  kh_buf small;
  kh_buf_init(&small, 10);
  CHECK_EQ(kh_aead_open_box(a, &small, box.data + 3, box.len - 3, ad, sizeof ad), KH_ERR_TOOBIG);
  kh_buf_release(&small);
  kh_buf_release(&box);
  kh_buf_release(&box2);
  kh_buf_release(&out);
  kh_aead_free(a);
}

static void test_aead(void)
{
  aead_cipher(KH_CIPHER_XCHACHA20POLY1305);
  if (crypto_aead_aes256gcm_is_available()) {
    aead_cipher(KH_CIPHER_AES256GCM);
    CHECK_EQ(kh_aead_default_cipher(), KH_CIPHER_AES256GCM);
  } else {
    fprintf(stderr, "   AES-256-GCM not available on this CPU: AES cases skipped\n");
    kh_aead *a = NULL;
    CHECK_EQ(kh_aead_new(&a, KH_CIPHER_AES256GCM, key1), KH_ERR_UNSUPPORTED);
    CHECK(a == NULL);
    CHECK_EQ(kh_aead_default_cipher(), KH_CIPHER_XCHACHA20POLY1305);
  }
  kh_aead *a = (kh_aead *)1;
  CHECK_EQ(kh_aead_new(&a, 3, key1), KH_ERR_UNSUPPORTED);
  CHECK(a == NULL);
  CHECK_EQ(kh_aead_new(&a, 0, key1), KH_ERR_UNSUPPORTED);
  CHECK_EQ(kh_aead_nonce_bytes(0), 0);
  CHECK_EQ(kh_aead_nonce_bytes(99), 0);
  kh_aead_free(NULL);
}

static void test_kdf_mac(void)
{
  /* the wrapper is crypto_kdf_derive_from_key with the caller's context */
  for (uint64_t id = 0; id < 5; id++) {
    uint8_t got[64], want[64];
    kh_kdf(got, 32, key1, "khvault1", id);
    crypto_kdf_derive_from_key(want, 32, id, "khvault1", key1);
    CHECK_MEM(got, want, 32);
    kh_kdf(got, 64, key1, "khchunkr", id);
    crypto_kdf_derive_from_key(want, 64, id, "khchunkr", key1);
    CHECK_MEM(got, want, 64);
  }
  /* contexts and ids separate keys */
  uint8_t a[32], b[32], c[32];
  kh_kdf(a, 32, key1, "khvault1", 1);
  kh_kdf(b, 32, key1, "khvault1", 2);
  kh_kdf(c, 32, key1, "khvault2", 1);
  CHECK(memcmp(a, b, 32) != 0);
  CHECK(memcmp(a, c, 32) != 0);
  /* fixed known answer (libsodium 1.0.18+: BLAKE2b(key, salt=id, personal=ctx));
   * recomputed with crypto_generichash_blake2b_salt_personal as documented */
  uint8_t salt[16] = {0}, pers[16] = {0};
  uint64_t id = 7;
  for (int i = 0; i < 8; i++)
    salt[i] = (uint8_t)(id >> (8 * i));
  memcpy(pers, "khvault1", 8);
  uint8_t want[32];
  crypto_generichash_blake2b_salt_personal(want, 32, NULL, 0, key1, 32, salt, pers);
  kh_kdf(a, 32, key1, "khvault1", 7);
  CHECK_MEM(a, want, 32);

  /* MAC is keyed BLAKE2b-256 */
  uint8_t mac[32], ref[32];
  kh_mac(mac, key1, "abc", 3);
  crypto_generichash(ref, 32, (const uint8_t *)"abc", 3, key1, 32);
  CHECK_MEM(mac, ref, 32);
  uint8_t k2[32];
  memcpy(k2, key1, 32);
  k2[0] ^= 1;
  kh_mac(ref, k2, "abc", 3);
  CHECK(memcmp(mac, ref, 32) != 0);
}

/* AD layout (docs/format.md §3): "keyhold/1" 0 region 0 account 0 type 0 id */
static void test_ad_build(void)
{
  kh_buf ad;
  kh_buf_init(&ad, 256);
  static const uint8_t id[3] = {0xaa, 0x00, 0xbb};
  CHECK_OK(kh_ad_build(&ad, "reg", "acct", "tree", id, 3));
  static const char want[] = "keyhold/1\0reg\0acct\0tree\0\xaa\0\xbb";
  CHECK_EQ(ad.len, sizeof want - 1);
  CHECK_MEM(ad.data, want, sizeof want - 1);
  /* rebuilding resets first */
  CHECK_OK(kh_ad_build(&ad, "r", "a", "t", NULL, 0));
  CHECK_EQ(ad.len, 16);
  kh_buf_release(&ad);
}

static void test_objseal(int cipher)
{
  uint8_t master[32];
  randombytes_buf(master, sizeof master);
  kh_keys k, other;
  CHECK_OK(kh_keys_init(&k, master, cipher, "region-a", "0123456789abcdef0123456789abcdef"));
  CHECK(strcmp(k.region, "region-a") == 0);
  /* subkeys are the documented derivations of the master key */
  uint8_t sub[32];
  kh_kdf(sub, 32, master, "khvault1", 3);
  CHECK_MEM(k.idkey, sub, 32);
  uint8_t bid[32], ref[32];
  kh_blob_id(&k, bid, "content", 7);
  kh_mac(ref, sub, "content", 7);
  CHECK_MEM(bid, ref, 32);

  uint8_t id[32];
  randombytes_buf(id, sizeof id);
  static const char pt[] = "an index or a snapshot";
  kh_buf ct, out;
  kh_buf_init(&ct, 4096);
  kh_buf_init(&out, 4096);
  CHECK_OK(kh_obj_seal(&k, "snapshot", id, 32, pt, sizeof pt, &ct));
  CHECK_EQ(ct.len, sizeof pt + kh_aead_box_overhead(k.meta));
  CHECK_OK(kh_obj_open(&k, "snapshot", id, 32, ct.data, ct.len, &out));
  CHECK_EQ(out.len, sizeof pt);
  CHECK_MEM(out.data, pt, sizeof pt);

  /* the meta key is kdf(master, "khvault1", 2) and the AD is the documented one */
  {
    kh_aead *m = NULL;
    kh_kdf(sub, 32, master, "khvault1", 2);
    CHECK_OK(kh_aead_new(&m, cipher, sub));
    kh_buf ad;
    kh_buf_init(&ad, 512);
    CHECK_OK(kh_ad_build(&ad, "region-a", "0123456789abcdef0123456789abcdef", "snapshot", id,
                         32));
    kh_buf_reset(&out);
    CHECK_OK(kh_aead_open_box(m, &out, ct.data, ct.len, ad.data, ad.len));
    CHECK_MEM(out.data, pt, sizeof pt);
    kh_buf_release(&ad);
    kh_aead_free(m);
  }

  /* other type, other id (any byte, or shorter), other account, other region */
  kh_buf_reset(&out);
  CHECK_EQ(kh_obj_open(&k, "index", id, 32, ct.data, ct.len, &out), KH_ERR_AUTH);
  CHECK_EQ(kh_obj_open(&k, "snapshot", id, 31, ct.data, ct.len, &out), KH_ERR_AUTH);
  int bad = 0;
  for (int i = 0; i < 32; i++) {
    id[i] ^= 1;
    kh_buf_reset(&out);
    bad += kh_obj_open(&k, "snapshot", id, 32, ct.data, ct.len, &out) != KH_ERR_AUTH;
    id[i] ^= 1;
  }
  CHECK_EQ(bad, 0);
  CHECK_OK(kh_keys_init(&other, master, cipher, "region-a", "0123456789abcdef0123456789abcdee"));
  CHECK_EQ(kh_obj_open(&other, "snapshot", id, 32, ct.data, ct.len, &out), KH_ERR_AUTH);
  kh_keys_release(&other);
  CHECK_OK(kh_keys_init(&other, master, cipher, "region-b", "0123456789abcdef0123456789abcdef"));
  CHECK_EQ(kh_obj_open(&other, "snapshot", id, 32, ct.data, ct.len, &out), KH_ERR_AUTH);
  kh_keys_release(&other);
  /* a type/region boundary shift must not collide: ("ab","c") vs ("a","bc") */
  CHECK_OK(kh_keys_init(&other, master, cipher, "region-a",
                        "0123456789abcdef0123456789abcdef" "s"));
  CHECK_EQ(kh_obj_open(&other, "napshot", id, 32, ct.data, ct.len, &out), KH_ERR_AUTH);
  kh_keys_release(&other);
  /* another master key */
  master[0] ^= 1;
  CHECK_OK(kh_keys_init(&other, master, cipher, "region-a", "0123456789abcdef0123456789abcdef"));
  CHECK_EQ(kh_obj_open(&other, "snapshot", id, 32, ct.data, ct.len, &out), KH_ERR_AUTH);
  kh_keys_release(&other);
  master[0] ^= 1;
  /* the same keys still open it */
  kh_buf_reset(&out);
  CHECK_OK(kh_obj_open(&k, "snapshot", id, 32, ct.data, ct.len, &out));
  /* data and meta keys differ: a blob-key box does not open as meta */
  kh_buf dbox;
  kh_buf_init(&dbox, 4096);
  kh_buf ad;
  kh_buf_init(&ad, 512);
  CHECK_OK(kh_ad_build(&ad, k.region, k.account, "snapshot", id, 32));
  CHECK_OK(kh_aead_seal_box(k.data, &dbox, (const uint8_t *)pt, sizeof pt, ad.data, ad.len));
  kh_buf_reset(&out);
  CHECK_EQ(kh_obj_open(&k, "snapshot", id, 32, dbox.data, dbox.len, &out), KH_ERR_AUTH);
  kh_buf_release(&ad);
  kh_buf_release(&dbox);
  kh_buf_release(&ct);
  kh_buf_release(&out);
  kh_keys_release(&k);
  CHECK(k.data == NULL && k.meta == NULL && k.idkey == NULL);
  /* unknown cipher fails cleanly */
  CHECK_EQ(kh_keys_init(&k, master, 9, "r", "a"), KH_ERR_UNSUPPORTED);
  CHECK(k.data == NULL && k.idkey == NULL);
}

static void test_objseal_all(void)
{
  test_objseal(KH_CIPHER_XCHACHA20POLY1305);
  if (crypto_aead_aes256gcm_is_available())
    test_objseal(KH_CIPHER_AES256GCM);
}

static void test_secure_memory(void)
{
  uint8_t *p = kh_secure_alloc(100);
  CHECK(p != NULL);
  if (p) {
    CHECK(all_zero(p, 100));
    memset(p, 0x5a, 100);
  }
  kh_secure_free(p);
  kh_secure_free(NULL);

  kh_secret *a = kh_secret_new("passcode", 8), *b = kh_secret_new("passcode", 8),
            *c = kh_secret_new("passcodf", 8), *d = kh_secret_new("pass", 4),
            *e = kh_secret_new(NULL, 0);
  CHECK(a && b && c && d && e);
  CHECK_EQ(a->len, 8);
  CHECK_EQ(a->bytes[8], 0);
  CHECK(kh_secret_equal(a, b));
  CHECK(!kh_secret_equal(a, c));
  CHECK(!kh_secret_equal(a, d));
  CHECK_EQ(e->len, 0);
  CHECK_EQ(e->bytes[0], 0);
  kh_secret_free(a);
  kh_secret_free(b);
  kh_secret_free(c);
  kh_secret_free(d);
  kh_secret_free(e);
  kh_secret_free(NULL);

  /* from a file: first line, CRLF stripped; empty is KH_ERR_INVAL */
  char path[] = "/tmp/kh-test-secret-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd < 0)
    return;
  CHECK(write(fd, "s3cret\r\nsecond line\n", 20) == 20);
  close(fd);
  kh_secret *s = NULL;
  CHECK_OK(kh_secret_from_file(path, &s));
  CHECK(s && s->len == 6 && memcmp(s->bytes, "s3cret", 6) == 0);
  kh_secret_free(s);
  FILE *f = fopen(path, "w");
  fputs("\n", f);
  fclose(f);
  CHECK_EQ(kh_secret_from_file(path, &s), KH_ERR_INVAL);
  CHECK(s == NULL);
  f = fopen(path, "w");
  for (int i = 0; i < 5000; i++)
    fputc('x', f);
  fclose(f);
  CHECK_EQ(kh_secret_from_file(path, &s), KH_ERR_TOOBIG);
  unlink(path);
  CHECK_EQ(kh_secret_from_file(path, &s), KH_ERR_NOTFOUND);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  fprintf(stderr, "AES-256-GCM available: %s\n", crypto_aead_aes256gcm_is_available() ? "yes" : "no");
  RUN(test_aead);
  RUN(test_kdf_mac);
  RUN(test_ad_build);
  RUN(test_objseal_all);
  RUN(test_secure_memory);
  return kh_test_done("test_crypto");
}
