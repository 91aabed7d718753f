#include "crypto/objseal.h"
#include "common/err.h"

#include <stdio.h>
#include <string.h>

kh_err kh_keys_init(kh_keys *k, const uint8_t *master, int cipher, const char *region,
                    const char *account)
{
  memset(k, 0, sizeof *k);
  uint8_t *sub = kh_secure_alloc(32);
  kh_err e = KH_OK;
  if (!sub || !(k->idkey = kh_secure_alloc(32))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  snprintf(k->region, sizeof k->region, "%s", region);
  snprintf(k->account, sizeof k->account, "%s", account);
  kh_kdf(sub, 32, master, "khvault1", 1);
  if ((e = kh_aead_new(&k->data, cipher, sub)))
    goto out;
  kh_kdf(sub, 32, master, "khvault1", 2);
  if ((e = kh_aead_new(&k->meta, cipher, sub)))
    goto out;
  kh_kdf(k->idkey, 32, master, "khvault1", 3);
out:
  kh_secure_free(sub);
  if (e)
    kh_keys_release(k);
  return e;
}

void kh_keys_release(kh_keys *k)
{
  kh_aead_free(k->data);
  kh_aead_free(k->meta);
  kh_secure_free(k->idkey);
  memset(k, 0, sizeof *k);
}

kh_err kh_obj_seal(const kh_keys *k, const char *type, const uint8_t *id, size_t idlen,
                   const void *pt, size_t n, kh_buf *out)
{
  kh_buf ad;
  kh_buf_init(&ad, 4096);
  kh_err e = kh_ad_build(&ad, k->region, k->account, type, id, idlen);
  if (!e)
    e = kh_aead_seal_box(k->meta, out, pt, n, ad.data, ad.len);
  kh_buf_release(&ad);
  return e;
}

kh_err kh_obj_open(const kh_keys *k, const char *type, const uint8_t *id, size_t idlen,
                   const uint8_t *ct, size_t n, kh_buf *out)
{
  kh_buf ad;
  kh_buf_init(&ad, 4096);
  kh_err e = kh_ad_build(&ad, k->region, k->account, type, id, idlen);
  if (!e)
    e = kh_aead_open_box(k->meta, out, ct, n, ad.data, ad.len);
  kh_buf_release(&ad);
  return e;
}
