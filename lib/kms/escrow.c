/* Escrow: the account key behind a recovery passcode, with an attempt
 * counter the key service enforces (docs/threat-model.md §5).
 *
 * The record's key is K = BLAKE2b-256(key = derive(root, "escrow" 0 account),
 * Argon2id(passcode, salt)), so guessing needs the root key (or the HSM).
 * The counter is written durably and the attempt logged before the
 * passcode is judged: a crash never gives a free guess. */
#include "kms/kms_internal.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/hex.h"
#include "common/wire.h"
#include "crypto/crypto.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ESCROW_OPS 2
#define ESCROW_MEMKIB (64u * 1024)

kh_err kh_escrow_rec_parse(const uint8_t *p, size_t n, kh_escrow_rec *r)
{
  kh_rd rd;
  kh_rd_init(&rd, p, n);
  const uint8_t *magic = kh_rd_bytes(&rd, 6);
  uint8_t fmt = kh_rd_u8(&rd);
  r->ops = kh_rd_u32(&rd);
  r->memkib = kh_rd_u32(&rd);
  r->salt = kh_rd_bytes(&rd, 16);
  r->rid = kh_rd_bytes(&rd, 16);
  r->box = kh_rd_bytes(&rd, 24 + 33 + 16);
  if (!kh_rd_done(&rd) || memcmp(magic, KH_ESCROW_MAGIC, 6) || fmt != 1)
    return kh_seterr(KH_ERR_FORMAT, "malformed escrow record");
  if (r->ops < 1 || r->ops > 16 || r->memkib < 8192 || r->memkib > 1048576)
    return kh_seterr(KH_ERR_FORMAT, "escrow record asks for unreasonable KDF costs");
  return KH_OK;
}

kh_err kh_escrow_ctr_parse(const uint8_t *p, size_t n, kh_escrow_ctr *c)
{
  kh_rd rd;
  kh_rd_init(&rd, p, n);
  const uint8_t *magic = kh_rd_bytes(&rd, 8);
  kh_rd_copy(&rd, c->rid, 16);
  c->failed = kh_rd_u32(&rd);
  c->attempts = kh_rd_u64(&rd);
  uint8_t d = kh_rd_u8(&rd);
  kh_rd_bytes(&rd, 32);
  if (!kh_rd_done(&rd) || memcmp(magic, KH_ESCROW_CTR_MAGIC, 8) || d > 1 ||
      c->failed > KH_KMS_ESCROW_LIMIT)
    return kh_seterr(KH_ERR_FORMAT, "malformed escrow counter");
  c->destroyed = d;
  return KH_OK;
}

static kh_err derived(kh_kms *k, const char *what, const char *account, uint8_t out[32])
{
  uint8_t ctx[200];
  size_t wl = strlen(what), al = strlen(account);
  memcpy(ctx, what, wl);
  ctx[wl] = 0;
  memcpy(ctx + wl + 1, account, al);
  return kh_rootkey_derive(k->rk, ctx, wl + 1 + al, out);
}

static kh_err ctr_mac(kh_kms *k, const char *account, const uint8_t *p, size_t n,
                      uint8_t mac[32])
{
  uint8_t *mk = kh_kms_secure_alloc(k, 32);
  if (!mk)
    return kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  kh_err e = derived(k, "escrow-counter", account, mk);
  if (!e)
    kh_mac(mac, mk, p, n);
  kh_secure_free(mk);
  return e;
}

static kh_err ctr_write(kh_kms *k, const char *account, const kh_escrow_ctr *c)
{
  uint8_t b[KH_ESCROW_CTR_BYTES];
  memcpy(b, KH_ESCROW_CTR_MAGIC, 8);
  memcpy(b + 8, c->rid, 16);
  kh_le32_put(b + 24, c->failed);
  kh_le64_put(b + 28, c->attempts);
  b[36] = c->destroyed ? 1 : 0;
  kh_err e = ctr_mac(k, account, b, 37, b + 37);
  char *p = kh_kms_path(k, "escrow", account, "ctr");
  if (!e)
    e = p ? kh_kms_write_file(k, p, b, sizeof b) : kh_seterr(KH_ERR_NOMEM, "out of memory");
  free(p);
  return e;
}

/* KH_ERR_NOTFOUND if there is no counter. */
static kh_err ctr_read(kh_kms *k, const char *account, kh_escrow_ctr *c)
{
  char *p = kh_kms_path(k, "escrow", account, "ctr");
  uint8_t *data = NULL, mac[32];
  size_t len = 0;
  kh_err e = p ? kh_read_file(p, 4096, &data, &len) : kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (!e)
    e = kh_escrow_ctr_parse(data, len, c);
  if (!e && (e = ctr_mac(k, account, data, 37, mac)) == KH_OK &&
      sodium_memcmp(mac, data + 37, 32) != 0)
    e = kh_seterr(KH_ERR_AUTH, "escrow counter of %s does not authenticate", account);
  free(data);
  free(p);
  return e;
}

static kh_err record_key(kh_kms *k, const char *account, const kh_secret *pass,
                         const uint8_t salt[16], uint32_t ops, uint32_t memkib, uint8_t out[32])
{
  uint8_t *pw = kh_kms_secure_alloc(k, 32), *dk = kh_kms_secure_alloc(k, 32);
  kh_err e = KH_OK;
  if (!pw || !dk) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  if (crypto_pwhash(pw, 32, (const char *)pass->bytes, pass->len, salt, ops,
                    (size_t)memkib << 10, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    e = kh_seterr(KH_ERR_NOMEM, "Argon2id needs %u KiB of memory", memkib);
    goto out;
  }
  if ((e = derived(k, "escrow", account, dk)))
    goto out;
  crypto_generichash(out, 32, pw, 32, dk, 32);
out:
  kh_secure_free(pw);
  kh_secure_free(dk);
  return e;
}

static kh_err rec_ad(kh_buf *ad, kh_kms *k, const char *account, const uint8_t *rid,
                     const uint8_t *hdr)
{
  kh_err e = kh_ad_build(ad, k->cfg.region, account, "escrow", rid, 16);
  return e ? e : kh_buf_append(ad, hdr, KH_ESCROW_HEADER);
}

static void escrow_kid(char *out, size_t n, const uint8_t rid[16])
{
  char hex[33];
  kh_hex_encode(hex, rid, 16);
  snprintf(out, n, "escrow/%s", hex);
}

/* The record id of a new escrow record: random, or for a device's signed
 * request the one kh_kms_prepare chose (the entry's key, escrow/<32 hex>),
 * so that the entry the device signed names the record it enables. */
static kh_err enable_rid(kh_kms *k, const kh_kms_presigned *ps, uint8_t rid[16])
{
  if (!ps) {
    randombytes_buf(rid, 16);
    return KH_OK;
  }
  kh_log_entry *en = kh_kms_malloc(k, sizeof *en);
  kh_err e = KH_OK;
  if (!en)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (kh_log_entry_parse(ps->entry, ps->len, en) ||
      strncmp(en->key, "escrow/", 7) != 0 || strlen(en->key) != 7 + 32 ||
      kh_hex_decode(rid, 16, en->key + 7, 32))
    e = kh_seterr(KH_ERR_DENIED, "the signed entry does not name an escrow record");
  free(en);
  return e;
}

static kh_err escrow_enable(kh_kms *k, const char *account, const uint8_t key[32], int cipher,
                            const kh_secret *passcode, const kh_kms_request *rq,
                            const kh_kms_presigned *ps)
{
  if (!kh_kms_account_ok(account))
    return kh_seterr(KH_ERR_INVAL, "bad account id");
  if (!passcode || !passcode->len)
    return kh_seterr(KH_ERR_INVAL, "empty recovery passcode");
  if (cipher != 1 && cipher != 2)
    return kh_seterr(KH_ERR_INVAL, "unknown cipher %d", cipher);
  /* the account's escrow lock only: Argon2id stalls no other account */
  pthread_mutex_t *el = kh_kms_escrow_lock(k, account);
  pthread_mutex_lock(el);
  kh_buf rec, ad;
  kh_buf_init(&rec, 4096);
  kh_buf_init(&ad, 1024);
  uint8_t *rk = kh_kms_secure_alloc(k, 32), *pt = kh_kms_secure_alloc(k, 33), salt[16], rid[16];
  char *dir = kh_kms_path(k, "escrow", NULL, NULL);
  char *rp = kh_kms_path(k, "escrow", account, "rec");
  char kid[KH_LOG_KEY_MAX + 1];
  kh_aead *a = NULL;
  kh_escrow_ctr c, old;
  kh_err e;
  if (!rk || !pt || !dir || !rp) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (kh_kms_destroyed(k, account)) {
    e = kh_seterr(KH_ERR_STATE, "account %s is end-to-end protected: no escrow", account);
    goto out;
  }
  randombytes_buf(salt, 16);
  if ((e = enable_rid(k, ps, rid)))
    goto out;
  if ((e = kh_buf_append(&rec, KH_ESCROW_MAGIC, 6)) || (e = kh_buf_put_u8(&rec, 1)) ||
      (e = kh_buf_put_u32(&rec, ESCROW_OPS)) || (e = kh_buf_put_u32(&rec, ESCROW_MEMKIB)) ||
      (e = kh_buf_append(&rec, salt, 16)) || (e = kh_buf_append(&rec, rid, 16)))
    goto out;
  if ((e = record_key(k, account, passcode, salt, ESCROW_OPS, ESCROW_MEMKIB, rk)) ||
      (e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, rk)) ||
      (e = rec_ad(&ad, k, account, rid, rec.data)))
    goto out;
  memcpy(pt, key, 32);
  pt[32] = (uint8_t)cipher;
  if ((e = kh_aead_seal_box(a, &rec, pt, 33, ad.data, ad.len)))
    goto out;
  escrow_kid(kid, sizeof kid, rid);
  if ((e = kh_kms_log_either(k, KH_LOG_OP_ESCROW_ENABLE, account, kid, rq, ps, NULL)))
    goto out;
  memset(&c, 0, sizeof c);
  memcpy(c.rid, rid, 16);
  /* "every attempt ever" stays monotonic: a counter that cannot be read
   * (other than missing) stops the enable rather than restart it at 0 */
  kh_err re = ctr_read(k, account, &old);
  if (re == KH_OK)
    c.attempts = old.attempts;
  else if (re != KH_ERR_NOTFOUND && (e = re))
    goto out;
  /* counter before record: a record never exists without its counter */
  if ((e = kh_mkdirs(dir, 0700)) || (e = ctr_write(k, account, &c)))
    goto out;
  e = kh_kms_write_file(k, rp, rec.data, rec.len);
out:
  kh_aead_free(a);
  kh_secure_free(rk);
  kh_secure_free(pt);
  kh_buf_release(&rec);
  kh_buf_release(&ad);
  free(dir);
  free(rp);
  pthread_mutex_unlock(el);
  return e;
}

kh_err kh_kms_escrow_enable(kh_kms *k, const char *account, const uint8_t key[32], int cipher,
                            const kh_secret *passcode, const kh_kms_request *rq)
{
  return escrow_enable(k, account, key, cipher, passcode, rq, NULL);
}

kh_err kh_kms_escrow_enable_signed(kh_kms *k, const char *account, const uint8_t key[32],
                                   int cipher, const kh_secret *passcode,
                                   const kh_kms_presigned *ps)
{
  return escrow_enable(k, account, key, cipher, passcode, NULL, ps);
}

kh_err kh_kms_escrow_status(kh_kms *k, const char *account, kh_kms_escrow_info *info)
{
  memset(info, 0, sizeof *info);
  if (!kh_kms_account_ok(account))
    return kh_seterr(KH_ERR_INVAL, "bad account id");
  pthread_mutex_t *el = kh_kms_escrow_lock(k, account);
  pthread_mutex_lock(el);
  kh_escrow_ctr c;
  kh_err e = ctr_read(k, account, &c);
  if (e == KH_ERR_NOTFOUND) {
    e = KH_OK;
  } else if (!e) {
    info->destroyed = c.destroyed;
    info->failed = c.failed;
    info->attempts = c.attempts;
    char *rp = kh_kms_path(k, "escrow", account, "rec");
    info->present = rp && access(rp, F_OK) == 0;
    free(rp);
  }
  pthread_mutex_unlock(el);
  return e;
}

/* The limit is reached (c->failed == KH_KMS_ESCROW_LIMIT): make the
 * destruction durable (counter first, then the record), then log it.  Also
 * the roll-forward of a destruction a crash interrupted. */
static kh_err destroy_record(kh_kms *k, const char *account, kh_escrow_ctr *c, const char *rp)
{
  char kid[KH_LOG_KEY_MAX + 1];
  c->destroyed = true;
  kh_err e = ctr_write(k, account, c);
  if (e)
    return e;
  kh_kms_point(k, "escrow-destroy-counted");
  if ((e = kh_kms_unlink(k, rp)))
    return e;
  kh_kms_point(k, "escrow-destroyed");
  escrow_kid(kid, sizeof kid, c->rid);
  kh_kms_request drq = {"key service", "escrow record destroyed after 10 wrong attempts",
                        NULL, NULL, NULL};
  /* the record is gone for good whether or not this entry makes it; the
   * attempts that led here are logged */
  kh_kms_log(k, KH_LOG_OP_DESTROY, account, kid, &drq, false, 0, NULL);
  return KH_OK;
}

kh_err kh_kms_escrow_recover(kh_kms *k, const char *account, const kh_secret *passcode,
                             const kh_kms_request *rq, kh_kms_release *out, uint32_t *left)
{
  memset(out, 0, sizeof *out);
  if (left)
    *left = 0;
  if (!kh_kms_account_ok(account))
    return kh_seterr(KH_ERR_INVAL, "bad account id");
  if (!passcode || !passcode->len)
    return kh_seterr(KH_ERR_INVAL, "empty recovery passcode");
  /* the account's escrow lock, not a global one: Argon2id below stalls only
   * attempts on this account (which must queue: each is counted first) */
  pthread_mutex_t *el = kh_kms_escrow_lock(k, account);
  pthread_mutex_lock(el);
  char *rp = kh_kms_path(k, "escrow", account, "rec");
  uint8_t *data = NULL, *rk = kh_kms_secure_alloc(k, 32);
  size_t len = 0;
  char kid[KH_LOG_KEY_MAX + 1];
  kh_aead *a = NULL;
  kh_buf ad, pt;
  kh_buf_init(&ad, 1024);
  kh_buf_init(&pt, 64);
  kh_escrow_ctr c;
  kh_escrow_rec r;
  kh_err e;
  if (!rp || !rk) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (kh_kms_destroyed(k, account)) {
    e = kh_seterr(KH_ERR_STATE, "account %s is end-to-end protected: no escrow", account);
    goto out;
  }
  e = ctr_read(k, account, &c);
  if (e == KH_ERR_NOTFOUND) {
    e = kh_seterr(KH_ERR_NOTFOUND, "account %s has no escrow record", account);
    goto out;
  }
  if (e)
    goto out;
  if (!c.destroyed && c.failed >= KH_KMS_ESCROW_LIMIT) {
    /* the last allowed attempt was counted but the process died before its
     * answer: that attempt is spent, finish the destruction */
    if ((e = destroy_record(k, account, &c, rp)))
      goto out;
  }
  if (c.destroyed) {
    /* a destruction killed between its counter and the record's removal */
    if ((e = kh_kms_unlink(k, rp)))
      goto out;
    e = kh_seterr(KH_ERR_DENIED, "the escrow record of %s was destroyed after %d wrong "
                  "attempts", account, KH_KMS_ESCROW_LIMIT);
    goto out;
  }
  e = kh_read_file(rp, 4096, &data, &len);
  if (e == KH_ERR_NOTFOUND)
    e = kh_seterr(KH_ERR_NOTFOUND, "account %s has no escrow record", account);
  if (e || (e = kh_escrow_rec_parse(data, len, &r)))
    goto out;
  if (sodium_memcmp(r.rid, c.rid, 16) != 0) {
    e = kh_seterr(KH_ERR_AUTH, "escrow record and counter of %s do not match", account);
    goto out;
  }
  /* 1. count the attempt durably, 2. log it, 3. only then judge it */
  kh_kms_point(k, "escrow-before-counter");
  c.failed++;
  c.attempts++;
  if ((e = ctr_write(k, account, &c)))
    goto out;
  kh_kms_point(k, "escrow-counter-written");
  escrow_kid(kid, sizeof kid, r.rid);
  if ((e = kh_kms_log(k, KH_LOG_OP_ESCROW_ATTEMPT, account, kid, rq, true, c.failed, out)))
    goto out;
  kh_kms_point(k, "escrow-attempt-logged");
  bool right = false;
  if ((e = record_key(k, account, passcode, r.salt, r.ops, r.memkib, rk)) ||
      (e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, rk)) ||
      (e = rec_ad(&ad, k, account, r.rid, data)))
    goto out;
  right = kh_aead_open_box(a, &pt, r.box, 24 + 33 + 16, ad.data, ad.len) == KH_OK &&
          pt.len == 33;
  kh_kms_point(k, "escrow-judged");
  if (right) {
    /* the key leaves only after the reset is durable */
    c.failed = 0;
    if ((e = ctr_write(k, account, &c)))
      goto out;
    if (!(out->key = kh_kms_secure_alloc(k, 32))) {
      e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
      goto out;
    }
    memcpy(out->key, pt.data, 32);
    out->cipher = pt.data[32];
    if (left)
      *left = KH_KMS_ESCROW_LIMIT;
    goto out;
  }
  if (c.failed < KH_KMS_ESCROW_LIMIT) {
    if (left)
      *left = KH_KMS_ESCROW_LIMIT - c.failed;
    e = kh_seterr(KH_ERR_PASSCODE, "wrong recovery passcode (%u attempts left)",
                  KH_KMS_ESCROW_LIMIT - c.failed);
    goto out;
  }
  /* the limit: destroy for good (durably) before answering */
  if ((e = destroy_record(k, account, &c, rp)))
    goto out;
  e = kh_seterr(KH_ERR_PASSCODE, "wrong recovery passcode: %d wrong attempts, the escrow "
                "record is destroyed", KH_KMS_ESCROW_LIMIT);
out:
  if (e)
    kh_kms_release_clear(out);
  kh_aead_free(a);
  kh_secure_free(rk);
  kh_buf_wipe(&pt);
  kh_buf_release(&pt);
  kh_buf_release(&ad);
  free(data);
  free(rp);
  pthread_mutex_unlock(el);
  return e;
}
