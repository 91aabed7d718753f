#include "crypto/crypto.h"
#include "common/err.h"
#include "common/fault.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct kh_aead {
  int cipher;
  uint8_t *key;                         /* secure memory */
  crypto_aead_aes256gcm_state *aes;     /* secure memory, AES only */
};

kh_err kh_crypto_init(void)
{
  if (sodium_init() < 0)
    return kh_seterr(KH_ERR_CRYPTO, "libsodium failed to initialise");
  return KH_OK;
}

uint8_t *kh_secure_alloc(size_t n)
{
  uint8_t *p = kh_fault_point("alloc.secure") ? NULL : sodium_malloc(n);
  if (p)
    sodium_memzero(p, n);
  return p;
}

void kh_secure_free(void *p)
{
  if (p)
    sodium_free(p);
}

int kh_aead_default_cipher(void)
{
  return crypto_aead_aes256gcm_is_available() ? KH_CIPHER_AES256GCM
                                              : KH_CIPHER_XCHACHA20POLY1305;
}

size_t kh_aead_nonce_bytes(int cipher)
{
  switch (cipher) {
  case KH_CIPHER_XCHACHA20POLY1305: return crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  case KH_CIPHER_AES256GCM: return crypto_aead_aes256gcm_NPUBBYTES;
  default: return 0;
  }
}

kh_err kh_aead_new(kh_aead **out, int cipher, const uint8_t *key)
{
  *out = NULL;
  if (cipher != KH_CIPHER_XCHACHA20POLY1305 && cipher != KH_CIPHER_AES256GCM)
    return kh_seterr(KH_ERR_UNSUPPORTED, "unknown cipher %d", cipher);
  if (cipher == KH_CIPHER_AES256GCM && !crypto_aead_aes256gcm_is_available())
    return kh_seterr(KH_ERR_UNSUPPORTED,
                     "this account uses AES-256-GCM but this CPU has no AES-NI");
  kh_aead *a = calloc(1, sizeof *a);
  if (!a)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  a->cipher = cipher;
  a->key = kh_secure_alloc(KH_KEY_BYTES);
  if (!a->key)
    goto nomem;
  memcpy(a->key, key, KH_KEY_BYTES);
  if (cipher == KH_CIPHER_AES256GCM) {
    a->aes = sodium_malloc(sizeof *a->aes);
    if (!a->aes)
      goto nomem;
    crypto_aead_aes256gcm_beforenm(a->aes, a->key);
  }
  *out = a;
  return KH_OK;
nomem:
  kh_aead_free(a);
  return kh_seterr(KH_ERR_NOMEM, "out of secure memory");
}

void kh_aead_free(kh_aead *a)
{
  if (!a)
    return;
  kh_secure_free(a->key);
  if (a->aes)
    sodium_free(a->aes);
  free(a);
}

int kh_aead_cipher(const kh_aead *a) { return a->cipher; }

kh_err kh_aead_seal(const kh_aead *a, uint8_t *c, const uint8_t *m, size_t mlen,
                    const uint8_t *ad, size_t adlen, const uint8_t *nonce)
{
  unsigned long long clen;
  int r;
  if (a->cipher == KH_CIPHER_AES256GCM)
    r = crypto_aead_aes256gcm_encrypt_afternm(c, &clen, m, mlen, ad, adlen, NULL, nonce, a->aes);
  else
    r = crypto_aead_xchacha20poly1305_ietf_encrypt(c, &clen, m, mlen, ad, adlen, NULL, nonce,
                                                   a->key);
  return r == 0 ? KH_OK : kh_seterr(KH_ERR_TOOBIG, "message too large to encrypt");
}

kh_err kh_aead_open(const kh_aead *a, uint8_t *m, const uint8_t *c, size_t clen,
                    const uint8_t *ad, size_t adlen, const uint8_t *nonce)
{
  unsigned long long mlen;
  int r = -1;
  if (clen >= KH_AEAD_TAG) {
    if (a->cipher == KH_CIPHER_AES256GCM)
      r = crypto_aead_aes256gcm_decrypt_afternm(m, &mlen, NULL, c, clen, ad, adlen, nonce,
                                                a->aes);
    else
      r = crypto_aead_xchacha20poly1305_ietf_decrypt(m, &mlen, NULL, c, clen, ad, adlen, nonce,
                                                     a->key);
  }
  if (r != 0) {
    if (clen > KH_AEAD_TAG)
      sodium_memzero(m, clen - KH_AEAD_TAG);
    return kh_seterr(KH_ERR_AUTH, "authentication failed");
  }
  return KH_OK;
}

size_t kh_aead_box_overhead(const kh_aead *a)
{
  return kh_aead_nonce_bytes(a->cipher) + KH_AEAD_TAG;
}

kh_err kh_aead_seal_box(const kh_aead *a, kh_buf *out, const uint8_t *m, size_t mlen,
                        const uint8_t *ad, size_t adlen)
{
  size_t nb = kh_aead_nonce_bytes(a->cipher);
  kh_err e = kh_buf_reserve(out, nb + mlen + KH_AEAD_TAG);
  if (e)
    return e;
  uint8_t *p = out->data + out->len;
  randombytes_buf(p, nb);
  e = kh_aead_seal(a, p + nb, m, mlen, ad, adlen, p);
  if (!e)
    out->len += nb + mlen + KH_AEAD_TAG;
  return e;
}

kh_err kh_aead_open_box(const kh_aead *a, kh_buf *out, const uint8_t *c, size_t clen,
                        const uint8_t *ad, size_t adlen)
{
  size_t nb = kh_aead_nonce_bytes(a->cipher);
  if (clen < nb + KH_AEAD_TAG)
    return kh_seterr(KH_ERR_AUTH, "authentication failed");
  size_t mlen = clen - nb - KH_AEAD_TAG;
  kh_err e = kh_buf_reserve(out, mlen ? mlen : 1); /* never a NULL destination */
  if (e)
    return e;
  e = kh_aead_open(a, out->data + out->len, c + nb, clen - nb, ad, adlen, c);
  if (!e)
    out->len += mlen;
  return e;
}

void kh_kdf(uint8_t *out, size_t outlen, const uint8_t *master, const char ctx[8], uint64_t id)
{
  crypto_kdf_derive_from_key(out, outlen, id, ctx, master);
}

void kh_mac(uint8_t out[32], const uint8_t key[32], const void *data, size_t len)
{
  crypto_generichash(out, 32, data, len, key, 32);
}

kh_err kh_ad_build(kh_buf *ad, const char *region, const char *account,
                   const char *type, const uint8_t *id, size_t idlen)
{
  kh_buf_reset(ad);
  kh_err e = kh_buf_append(ad, "keyhold/1", 10); /* includes NUL */
  if (!e) e = kh_buf_append(ad, region, strlen(region) + 1);
  if (!e) e = kh_buf_append(ad, account, strlen(account) + 1);
  if (!e) e = kh_buf_append(ad, type, strlen(type) + 1);
  if (!e) e = kh_buf_append(ad, id, idlen);
  return e;
}
