/* Root-key handle: the envelope format shared by both backends and the
 * dispatch to a backend (docs/kms-rootkey.md §3).  A backend only protects
 * 32-byte data keys; everything about the blob lives here. */
#include "kms/rootkey.h"
#include "common/err.h"
#include "common/wire.h"
#include "crypto/crypto.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOB_FORMAT 1
#define NONCE_BYTES 24 /* XChaCha20-Poly1305 */
#define CT_BYTES (32 + KH_AEAD_TAG)
#define DERIVE_DOMAIN "keyhold/rootkey/derive/1" /* followed by its NUL */

struct kh_rootkey {
  const kh_rootkey_ops *ops;
  void *st;
  pthread_rwlock_t lock; /* read: wrap/unwrap/derive; write: rotate */
  _Atomic uint32_t current;
  char name[65];
  char id[96];
};

bool kh_rootkey_name_ok(const char *s)
{
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 64)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

static void set_id(kh_rootkey *k)
{
  snprintf(k->id, sizeof k->id, "%s:%s:v%u", k->ops->kind, k->name,
           (unsigned)atomic_load(&k->current));
}

kh_err kh_rootkey_backend_new(const kh_rootkey_ops *ops, void *st, const char *name,
                              uint32_t current, kh_rootkey **out)
{
  kh_err e = KH_OK;
  kh_rootkey *k = NULL;
  *out = NULL;
  if (!kh_rootkey_name_ok(name) || current == 0 || current > KH_ROOTKEY_VERSIONS_MAX) {
    e = kh_seterr(KH_ERR_INVAL, "bad root-key name or version");
    goto out;
  }
  k = calloc(1, sizeof *k);
  if (!k) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (pthread_rwlock_init(&k->lock, NULL) != 0) {
    free(k);
    k = NULL;
    e = kh_seterr(KH_ERR_NOMEM, "cannot create lock");
    goto out;
  }
  k->ops = ops;
  k->st = st;
  st = NULL;
  atomic_store(&k->current, current);
  memcpy(k->name, name, strlen(name) + 1);
  set_id(k);
  *out = k;
  k = NULL;
out:
  if (st)
    ops->free(st);
  kh_rootkey_free(k);
  return e;
}

void kh_rootkey_free(kh_rootkey *k)
{
  if (!k)
    return;
  k->ops->free(k->st);
  pthread_rwlock_destroy(&k->lock);
  free(k);
}

const char *kh_rootkey_id(const kh_rootkey *k) { return k->id; }

void kh_rootkey_id_copy(kh_rootkey *k, char *out, size_t n)
{
  pthread_rwlock_rdlock(&k->lock);
  snprintf(out, n, "%s", k->id);
  pthread_rwlock_unlock(&k->lock);
}

uint32_t kh_rootkey_version(const kh_rootkey *k)
{
  return atomic_load(&((kh_rootkey *)k)->current);
}

kh_err kh_rootkey_blob_parse(const uint8_t *p, size_t n, kh_rootkey_blob *b)
{
  kh_rd r;
  memset(b, 0, sizeof *b);
  if (n > KH_ROOTKEY_BLOB_MAX)
    return kh_seterr(KH_ERR_FORMAT, "root-key blob too long");
  kh_rd_init(&r, p, n);
  const uint8_t *magic = kh_rd_bytes(&r, 4);
  uint8_t format = kh_rd_u8(&r);
  b->backend = kh_rd_u8(&r);
  b->version = kh_rd_u32(&r);
  b->alg = kh_rd_u8(&r);
  b->wrapped_len = kh_rd_u16(&r);
  b->wrapped = kh_rd_bytes(&r, b->wrapped_len);
  b->header_len = r.off;
  b->nonce = kh_rd_bytes(&r, NONCE_BYTES);
  b->ct = kh_rd_bytes(&r, CT_BYTES);
  if (!kh_rd_done(&r) || memcmp(magic, KH_ROOTKEY_BLOB_MAGIC, 4) != 0)
    goto bad;
  if (format != BLOB_FORMAT)
    goto bad;
  if (b->version == 0 || b->version > KH_ROOTKEY_VERSIONS_MAX)
    goto bad;
  if (!(b->backend == KH_ROOTKEY_BACKEND_FILE && b->alg == KH_ROOTKEY_ALG_XCHACHA &&
        b->wrapped_len == NONCE_BYTES + 32 + KH_AEAD_TAG) &&
      !(b->backend == KH_ROOTKEY_BACKEND_PKCS11 && b->alg == KH_ROOTKEY_ALG_AESKWP &&
        b->wrapped_len == 40))
    goto bad;
  return KH_OK;
bad:
  memset(b, 0, sizeof *b);
  return kh_seterr(KH_ERR_FORMAT, "malformed root-key blob");
}

/* ad_out = blob header || caller ad */
static kh_err build_ad(kh_buf *adb, const uint8_t *hdr, size_t hlen, const uint8_t *ad,
                       size_t adlen)
{
  kh_err e = kh_buf_append(adb, hdr, hlen);
  if (!e && adlen)
    e = kh_buf_append(adb, ad, adlen);
  return e;
}

/* Wrap under the current version; caller holds the read (or write) lock. */
static kh_err wrap_locked(kh_rootkey *k, const uint8_t key[32], const uint8_t *ad,
                          size_t adlen, kh_buf *out)
{
  kh_err e = KH_OK;
  uint8_t *dk = NULL;
  kh_aead *a = NULL;
  kh_buf blob, adb;
  kh_buf_init(&blob, KH_ROOTKEY_BLOB_MAX);
  kh_buf_init(&adb, KH_ROOTKEY_BLOB_MAX + KH_ROOTKEY_AD_MAX);
  const kh_rootkey_ops *ops = k->ops;
  uint32_t v = atomic_load(&k->current);

  dk = kh_secure_alloc(32);
  if (!dk) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  randombytes_buf(dk, 32);
  e = kh_buf_append(&blob, KH_ROOTKEY_BLOB_MAGIC, 4);
  if (!e) e = kh_buf_put_u8(&blob, BLOB_FORMAT);
  if (!e) e = kh_buf_put_u8(&blob, ops->backend);
  if (!e) e = kh_buf_put_u32(&blob, v);
  if (!e) e = kh_buf_put_u8(&blob, ops->alg);
  if (!e) e = kh_buf_put_u16(&blob, (uint16_t)ops->wrapped_len);
  if (e)
    goto out;
  /* a copy: wrap_dk appends to blob, which may move blob.data */
  uint8_t hdr[KH_ROOTKEY_BLOB_FIXED];
  memcpy(hdr, blob.data, sizeof hdr);
  e = ops->wrap_dk(k->st, v, dk, hdr, &blob);
  if (e)
    goto out;
  if (blob.len != KH_ROOTKEY_BLOB_FIXED + 2 + ops->wrapped_len) {
    e = kh_seterr(KH_ERR_HSM, "backend returned a wrapped key of unexpected length");
    goto out;
  }
  e = build_ad(&adb, blob.data, blob.len, ad, adlen);
  if (!e) e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, dk);
  if (!e) e = kh_aead_seal_box(a, &blob, key, 32, adb.data, adb.len);
  if (!e) e = kh_buf_append(out, blob.data, blob.len);
out:
  kh_aead_free(a);
  kh_secure_free(dk);
  kh_buf_release(&blob);
  kh_buf_release(&adb);
  return e;
}

static kh_err unwrap_locked(kh_rootkey *k, const uint8_t *p, size_t n, const uint8_t *ad,
                            size_t adlen, uint8_t *key)
{
  kh_err e = KH_OK;
  uint8_t *dk = NULL;
  kh_aead *a = NULL;
  kh_rootkey_blob b;
  kh_buf adb;
  kh_buf_init(&adb, KH_ROOTKEY_BLOB_MAX + KH_ROOTKEY_AD_MAX);
  const kh_rootkey_ops *ops = k->ops;

  sodium_memzero(key, 32);
  /* Everything wrong with a blob is the same opaque failure. */
  if (kh_rootkey_blob_parse(p, n, &b) != KH_OK || b.backend != ops->backend ||
      b.alg != ops->alg || b.wrapped_len != ops->wrapped_len ||
      !ops->has_version(k->st, b.version)) {
    e = KH_ERR_AUTH;
    goto out;
  }
  dk = kh_secure_alloc(32);
  if (!dk) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  e = ops->unwrap_dk(k->st, b.version, b.wrapped, b.wrapped_len, p, dk);
  if (e)
    goto out;
  e = build_ad(&adb, p, b.header_len, ad, adlen);
  if (!e) e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, dk);
  if (!e) e = kh_aead_open(a, key, b.ct, CT_BYTES, adb.data, adb.len, b.nonce);
out:
  if (e) {
    sodium_memzero(key, 32);
    if (e == KH_ERR_AUTH)
      kh_seterr(KH_ERR_AUTH, "root-key blob did not authenticate");
  }
  kh_aead_free(a);
  kh_secure_free(dk);
  kh_buf_release(&adb);
  return e;
}

static kh_err check_ad(const uint8_t *ad, size_t adlen)
{
  if ((!ad && adlen) || adlen > KH_ROOTKEY_AD_MAX)
    return kh_seterr(KH_ERR_INVAL, "bad associated data (at most %d bytes)",
                     KH_ROOTKEY_AD_MAX);
  return KH_OK;
}

kh_err kh_rootkey_wrap(kh_rootkey *k, const uint8_t key[32], const uint8_t *ad,
                       size_t adlen, kh_buf *out)
{
  kh_err e = check_ad(ad, adlen);
  if (e)
    return e;
  pthread_rwlock_rdlock(&k->lock);
  e = wrap_locked(k, key, ad, adlen, out);
  pthread_rwlock_unlock(&k->lock);
  return e;
}

kh_err kh_rootkey_unwrap(kh_rootkey *k, const uint8_t *blob, size_t n, const uint8_t *ad,
                         size_t adlen, uint8_t key[32])
{
  kh_err e = check_ad(ad, adlen);
  if (e) {
    sodium_memzero(key, 32);
    return e;
  }
  pthread_rwlock_rdlock(&k->lock);
  e = unwrap_locked(k, blob, n, ad, adlen, key);
  pthread_rwlock_unlock(&k->lock);
  return e;
}

kh_err kh_rootkey_rewrap(kh_rootkey *k, const uint8_t *blob, size_t n, const uint8_t *ad,
                         size_t adlen, kh_buf *out)
{
  kh_err e = check_ad(ad, adlen);
  uint8_t *key = NULL;
  bool locked = false;
  if (e)
    goto out;
  key = kh_secure_alloc(32);
  if (!key) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  /* One read lock over both steps so a rotate cannot slip in between. */
  pthread_rwlock_rdlock(&k->lock);
  locked = true;
  e = unwrap_locked(k, blob, n, ad, adlen, key);
  if (!e)
    e = wrap_locked(k, key, ad, adlen, out);
out:
  if (locked)
    pthread_rwlock_unlock(&k->lock);
  kh_secure_free(key);
  return e;
}

kh_err kh_rootkey_rotate(kh_rootkey *k)
{
  kh_err e = KH_OK;
  pthread_rwlock_wrlock(&k->lock);
  uint32_t v = atomic_load(&k->current);
  if (v >= KH_ROOTKEY_VERSIONS_MAX) {
    e = kh_seterr(KH_ERR_TOOBIG, "at most %d root-key versions", KH_ROOTKEY_VERSIONS_MAX);
    goto out;
  }
  e = k->ops->rotate(k->st, v + 1);
  if (e)
    goto out;
  atomic_store(&k->current, v + 1);
  set_id(k);
out:
  pthread_rwlock_unlock(&k->lock);
  return e;
}

kh_err kh_rootkey_derive(kh_rootkey *k, const uint8_t *context, size_t clen, uint8_t out[32])
{
  kh_err e = KH_OK;
  kh_buf msg;
  kh_buf_init(&msg, sizeof DERIVE_DOMAIN + KH_ROOTKEY_CONTEXT_MAX);
  sodium_memzero(out, 32);
  if ((!context && clen) || clen > KH_ROOTKEY_CONTEXT_MAX) {
    e = kh_seterr(KH_ERR_INVAL, "derive context longer than %d bytes",
                  KH_ROOTKEY_CONTEXT_MAX);
    goto out;
  }
  e = kh_buf_append(&msg, DERIVE_DOMAIN, sizeof DERIVE_DOMAIN);
  if (!e && clen)
    e = kh_buf_append(&msg, context, clen);
  if (e)
    goto out;
  pthread_rwlock_rdlock(&k->lock);
  e = k->ops->derive(k->st, msg.data, msg.len, out);
  pthread_rwlock_unlock(&k->lock);
  if (e)
    sodium_memzero(out, 32);
out:
  kh_buf_release(&msg);
  return e;
}
