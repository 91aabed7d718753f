/* Sealing keyhold objects: every object is AEAD-encrypted with associated
 * data binding region id, account id, object type and object id
 * (docs/format.md §3), so an object moved to another account, region, role
 * or name fails to authenticate. */
#ifndef KH_OBJSEAL_H
#define KH_OBJSEAL_H
#include "crypto/crypto.h"

typedef struct kh_keys {
  char region[64];
  char account[40];
  kh_aead *data;      /* blob contents */
  kh_aead *meta;      /* index, snapshots, trees' packs headers, devices, locks */
  uint8_t *idkey;     /* 32 bytes, secure: blob ids = keyed BLAKE2b */
} kh_keys;

/* Derive all subkeys from a 32-byte master key. */
kh_err kh_keys_init(kh_keys *k, const uint8_t *master, int cipher, const char *region,
                    const char *account);
void kh_keys_release(kh_keys *k);

/* Blob id of plaintext content. */
static inline void kh_blob_id(const kh_keys *k, uint8_t id[32], const void *p, size_t n)
{ kh_mac(id, k->idkey, p, n); }

/* Meta object: out gets nonce||ct||tag. */
kh_err kh_obj_seal(const kh_keys *k, const char *type, const uint8_t *id, size_t idlen,
                   const void *pt, size_t n, kh_buf *out);
/* KH_ERR_AUTH if it does not authenticate for (type,id) in this account. */
kh_err kh_obj_open(const kh_keys *k, const char *type, const uint8_t *id, size_t idlen,
                   const uint8_t *ct, size_t n, kh_buf *out);

#endif
