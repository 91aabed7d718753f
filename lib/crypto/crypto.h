/* libsodium wrappers: secure memory, AEAD, key derivation, keyed hashing.
 * Every cryptographic operation in keyhold goes through libsodium. */
#ifndef KH_CRYPTO_H
#define KH_CRYPTO_H
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"
#include "common/buf.h"

#define KH_KEY_BYTES 32
#define KH_ID_BYTES 32
#define KH_AEAD_TAG 16
#define KH_NONCE_MAX 24

/* Initialise libsodium once (thread-safe, idempotent). */
kh_err kh_crypto_init(void);

/* Secret memory: sodium_malloc'd (guard pages, mlock'd, not dumped).
 * kh_secure_free wipes and frees; NULL is a no-op. */
uint8_t *kh_secure_alloc(size_t n);
void kh_secure_free(void *p);

/* AEAD ciphers; the id is stored in formats (docs/format.md §3). */
enum kh_cipher { KH_CIPHER_XCHACHA20POLY1305 = 1, KH_CIPHER_AES256GCM = 2 };

typedef struct kh_aead kh_aead;
/* The default cipher for a new account: AES-256-GCM where the CPU has AES-NI
 * (libsodium says it is available), else XChaCha20-Poly1305. */
int kh_aead_default_cipher(void);
/* Copies key (32 bytes) into secure memory. */
kh_err kh_aead_new(kh_aead **out, int cipher, const uint8_t *key);
void kh_aead_free(kh_aead *a);
int kh_aead_cipher(const kh_aead *a);
size_t kh_aead_nonce_bytes(int cipher);   /* 24 or 12; 0 for unknown */
/* c must hold mlen + KH_AEAD_TAG bytes.  m and c may not overlap except
 * c == m (in place). */
kh_err kh_aead_seal(const kh_aead *a, uint8_t *c, const uint8_t *m, size_t mlen,
                    const uint8_t *ad, size_t adlen, const uint8_t *nonce);
/* m must hold clen - KH_AEAD_TAG bytes; on any failure m is zeroed and the
 * result is KH_ERR_AUTH (one opaque error). */
kh_err kh_aead_open(const kh_aead *a, uint8_t *m, const uint8_t *c, size_t clen,
                    const uint8_t *ad, size_t adlen, const uint8_t *nonce);
/* "box" form: out gets random nonce || ciphertext || tag appended. */
kh_err kh_aead_seal_box(const kh_aead *a, kh_buf *out, const uint8_t *m, size_t mlen,
                        const uint8_t *ad, size_t adlen);
/* Opens a box made by seal_box; appends plaintext to out (bounded by out->max). */
kh_err kh_aead_open_box(const kh_aead *a, kh_buf *out, const uint8_t *c, size_t clen,
                        const uint8_t *ad, size_t adlen);
size_t kh_aead_box_overhead(const kh_aead *a);

/* Derive a subkey (16..64 bytes) from a 32-byte master key; ctx is exactly
 * 8 characters (libsodium crypto_kdf). */
void kh_kdf(uint8_t *out, size_t outlen, const uint8_t *master, const char ctx[8], uint64_t id);

/* Keyed BLAKE2b-256 of data. */
void kh_mac(uint8_t out[32], const uint8_t key[32], const void *data, size_t len);

/* Associated data that binds an object to its place (docs/format.md §3):
 * "keyhold/1" 0 region 0 account 0 type 0 id-bytes. */
kh_err kh_ad_build(kh_buf *ad, const char *region, const char *account,
                   const char *type, const uint8_t *id, size_t idlen);

#endif
