/* An account's protection mode (standard / end-to-end), its recovery key
 * wrap (kind 3), and what the key service needs from the device side:
 * device signatures on requests, the list of the account's devices, and
 * setting a passcode from a released key (docs/threat-model.md §3). */
#include "repo/vault_internal.h"
#include "keyhold/keysvc.h"
#include "keyhold/kms.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/hex.h"
#include "common/wire.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROT_NAME "protection"
#define KEY_MAGIC "KHKEY1"
#define KEY_KIND_RECOVERY 3
#define RECOVERY_CTX "keyhold recovery-key wrap v1"

/* ---- the protection object: accounts/<acct>/protection, meta-sealed ------- */

static kh_err prot_put(kh_provider *p, const kh_keys *keys, const char *account,
                       kh_protection mode)
{
  uint8_t id[16];
  char name[128], text[128];
  if (kh_hex_decode(id, 16, account, strlen(account)))
    return kh_seterr(KH_ERR_INVAL, "bad account id");
  int n = snprintf(text, sizeof text, "keyhold-protection v1\nmode %s\nsince %lld\n",
                   mode == KH_PROTECTION_E2E ? "e2e" : "standard", (long long)time(NULL));
  kh_buf ct;
  kh_buf_init(&ct, 4096);
  kh_err e = kh_obj_seal(keys, "protection", id, 16, text, (size_t)n, &ct);
  snprintf(name, sizeof name, "accounts/%s/%s", account, PROT_NAME);
  if (!e)
    e = kh_provider_put(p, name, ct.data, ct.len, false);
  kh_buf_release(&ct);
  return e;
}

static kh_err prot_get(kh_provider *p, const kh_keys *keys, const char *account,
                       kh_protection *mode)
{
  uint8_t id[16];
  char name[128];
  if (kh_hex_decode(id, 16, account, strlen(account)))
    return kh_seterr(KH_ERR_INVAL, "bad account id");
  snprintf(name, sizeof name, "accounts/%s/%s", account, PROT_NAME);
  kh_buf ct, pt;
  kh_buf_init(&ct, 4096);
  kh_buf_init(&pt, 4096);
  /* every failure keeps its own code: a read error is not "does not
   * authenticate", and no failure leaves a mode behind */
  *mode = (kh_protection)-1;
  kh_err e = kh_provider_read(p, name, KH_OBJMAX_PROTECTION, &ct);
  if (e == KH_ERR_NOTFOUND)
    e = kh_seterr(KH_ERR_CORRUPT, "the account's protection record is missing (removed by "
                  "the provider?)");
  else if (e)
    e = kh_adderr(e, "reading the account's protection record");
  if (!e && (e = kh_obj_open(keys, "protection", id, 16, ct.data, ct.len, &pt)))
    e = e == KH_ERR_AUTH
            ? kh_seterr(KH_ERR_AUTH, "the account's protection record does not authenticate")
            : kh_adderr(e, "opening the account's protection record");
  if (!e) {
    char text[128] = {0};
    memcpy(text, pt.data, pt.len < sizeof text - 1 ? pt.len : sizeof text - 1);
    if (!strncmp(text, "keyhold-protection v1\nmode standard\n", 36))
      *mode = KH_PROTECTION_STANDARD;
    else if (!strncmp(text, "keyhold-protection v1\nmode e2e\n", 31))
      *mode = KH_PROTECTION_E2E;
    else
      e = kh_seterr(KH_ERR_FORMAT, "malformed protection record");
  }
  kh_buf_release(&ct);
  kh_buf_release(&pt);
  return e;
}

kh_err kh_vault_protect_new_account(kh_provider *p, const char *region_path,
                                    const char *region, const char *account,
                                    const uint8_t *master, int cipher)
{
  kh_keys keys;
  memset(&keys, 0, sizeof keys);
  kh_kms *k = NULL;
  kh_err e = kh_keys_init(&keys, master, cipher, region, account);
  if (e)
    return e;
  kh_kms_request rq = {"init", "standard protection at account creation", NULL, NULL, NULL};
  if ((e = kh_kms_open(region_path, &k)) || (e = kh_kms_wrap(k, account, master, cipher, &rq)))
    goto out;
  e = prot_put(p, &keys, account, KH_PROTECTION_STANDARD);
out:
  kh_kms_free(k);
  kh_keys_release(&keys);
  return e;
}

kh_err kh_vault_protect_new_account_remote(kh_vault *v)
{
  /* the key service's wrap is made behind the server (docs/protocol.md
   * §10), logged there before it exists */
  kh_err e = kh_vault_kms_wrap_remote(v);
  return e ? e : prot_put(v->prov, &v->keys, v->account, KH_PROTECTION_STANDARD);
}

static char *pin_path(const kh_vault *v)
{
  return kh_path_join(v->device_dir, "protection-e2e");
}

kh_err kh_vault_protection(kh_vault *v, kh_protection *out)
{
  kh_err e = prot_get(v->prov, &v->keys, v->account, out);
  if (e)
    return e;
  char *pp = pin_path(v);
  struct stat st;
  if (!pp)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  bool pinned = stat(pp, &st) == 0;
  if (*out == KH_PROTECTION_STANDARD && pinned) {
    /* this device saw e2e: going back is not possible, so a "standard"
     * record is a rollback by the provider */
    e = kh_seterr(KH_ERR_CORRUPT, "this device saw the account in end-to-end protection, "
                  "but the region now says standard: the protection record was rolled back");
    goto out;
  }
  if (*out == KH_PROTECTION_STANDARD) {
    /* the key service is the authority on whether the operator can still
     * recover the account: a switch to e2e killed after the service's
     * destroy but before this record was written is completed here (on a
     * server: the key service behind it, docs/protocol.md §10.2) */
    bool gone = false;
    kh_keysvc_status ks;
    if (v->remote) {
      if ((e = kh_keysvc_status_get(v, &ks))) {
        e = kh_adderr(e, "asking the key service about account %s", v->account);
        goto out;
      }
      gone = ks.destroyed;
    } else if ((e = kh_kms_account_destroyed(v->region_path, v->account, &gone))) {
      e = kh_adderr(e, "asking the key service about account %s", v->account);
      goto out;
    }
    if (gone) {
      if ((e = kh_vault_protection_set(v, KH_PROTECTION_E2E))) {
        e = kh_adderr(e, "completing the interrupted switch to end-to-end protection");
        goto out;
      }
      *out = KH_PROTECTION_E2E;
      pinned = true;
    }
  }
  if (*out == KH_PROTECTION_E2E && !pinned)
    kh_write_file_atomic(pp, "e2e\n", 4, 0600, false); /* remember it on the device */
out:
  free(pp);
  return e;
}

kh_err kh_vault_protection_set(kh_vault *v, kh_protection mode)
{
  kh_err e = prot_put(v->prov, &v->keys, v->account, mode);
  if (!e && mode == KH_PROTECTION_E2E) {
    char *pp = pin_path(v);
    if (pp)
      kh_write_file_atomic(pp, "e2e\n", 4, 0600, false);
    free(pp);
  }
  return e;
}

/* ---- device side of key-service requests ------------------------------------ */

kh_err kh_vault_device_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
  kh_vault *v = ctx;
  crypto_sign_detached(sig, NULL, msg, len, v->device_sk);
  return KH_OK;
}

const char *kh_vault_device_dir(const kh_vault *v) { return v->device_dir; }

typedef struct dev_scan {
  kh_device_info *d;
  size_t n, cap;
  bool oom;
} dev_scan;

static int collect_dev(const char *name, uint64_t size, void *ctx)
{
  dev_scan *s = ctx;
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  if (strlen(base) != 32)
    return 0;
  if (s->n == s->cap) {
    size_t nc = s->cap ? 2 * s->cap : 8;
    void *p = realloc(s->d, nc * sizeof *s->d);
    if (!p) {
      s->oom = true;
      return 1;
    }
    s->d = p;
    s->cap = nc;
  }
  snprintf(s->d[s->n].id, sizeof s->d[s->n].id, "%s", base);
  s->n++;
  return 0;
}

kh_err kh_vault_devices(kh_vault *v, kh_device_info **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  char pre[160];
  snprintf(pre, sizeof pre, "%s/devices", v->prefix);
  dev_scan s;
  memset(&s, 0, sizeof s);
  kh_buf rec;
  kh_buf_init(&rec, 1 << 16);
  kh_err e = kh_provider_list(v->prov, pre, collect_dev, &s);
  if (!e && s.oom)
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
  size_t good = 0;
  for (size_t i = 0; !e && i < s.n; i++) {
    uint8_t id[16];
    if (kh_hex_decode(id, 16, s.d[i].id, 32))
      continue;
    /* only records sealed by the account count: the provider cannot add one */
    if (kh_vault_get_obj(v, "devices", "device", id, 16, &rec) != KH_OK || rec.len < 38 ||
        memcmp(rec.data, "KHDEV1", 6))
      continue;
    s.d[good] = s.d[i];
    memcpy(s.d[good].pk, rec.data + 6, 32);
    good++;
  }
  kh_buf_release(&rec);
  if (e) {
    free(s.d);
    return e;
  }
  *out = s.d;
  *n = good;
  return KH_OK;
}

kh_err kh_vault_device_record_add(kh_vault *v, const char *device_hex, const uint8_t pk[32],
                                  const char *name)
{
  uint8_t id[16];
  kh_buf rec;
  kh_buf_init(&rec, 4096);
  kh_err e = kh_hex_decode(id, 16, device_hex, strlen(device_hex));
  if (!e)
    e = kh_vault_device_record(&rec, pk, name);
  if (!e)
    e = kh_vault_put_obj(v, "devices", "device", id, 16, rec.data, rec.len, true);
  if (e == KH_ERR_EXISTS)
    e = KH_OK;
  kh_buf_release(&rec);
  return e;
}

kh_err kh_vault_master_key(kh_vault *v, uint8_t key[32], int *cipher)
{
  memcpy(key, v->master, 32);
  *cipher = v->cipher;
  return KH_OK;
}

/* ---- recovery key wrap (kind 3) ---------------------------------------------- */

static kh_err recovery_aead(const uint8_t rk[32], kh_aead **a)
{
  uint8_t *k = kh_secure_alloc(32);
  if (!k)
    return kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  crypto_generichash(k, 32, (const uint8_t *)RECOVERY_CTX, strlen(RECOVERY_CTX), rk, 32);
  kh_err e = kh_aead_new(a, KH_CIPHER_XCHACHA20POLY1305, k);
  kh_secure_free(k);
  return e;
}

static kh_err recovery_ad(kh_buf *ad, const char *region, const char *account,
                          const uint8_t wid[16], const uint8_t *hdr)
{
  kh_err e = kh_ad_build(ad, region, account, "key", wid, 16);
  return e ? e : kh_buf_append(ad, hdr, 7);
}

kh_err kh_vault_recovery_key_create(kh_vault *v, uint8_t rk[32])
{
  uint8_t wid[16], hdr[7], *pt = kh_secure_alloc(33);
  char hex[33], name[256];
  kh_aead *a = NULL;
  kh_buf obj, ad;
  kh_buf_init(&obj, 4096);
  kh_buf_init(&ad, 1024);
  kh_err e = KH_OK;
  if (!pt)
    return kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  randombytes_buf(rk, 32);
  randombytes_buf(wid, 16);
  memcpy(hdr, KEY_MAGIC, 6);
  hdr[6] = KEY_KIND_RECOVERY;
  memcpy(pt, v->master, 32);
  pt[32] = (uint8_t)v->cipher;
  if ((e = recovery_aead(rk, &a)) ||
      (e = recovery_ad(&ad, v->region_id, v->account, wid, hdr)) ||
      (e = kh_buf_append(&obj, hdr, 7)) ||
      (e = kh_aead_seal_box(a, &obj, pt, 33, ad.data, ad.len)))
    goto out;
  kh_hex_encode(hex, wid, 16);
  snprintf(name, sizeof name, "%s/keys/%s", v->prefix, hex);
  e = kh_provider_put(v->prov, name, obj.data, obj.len, true);
out:
  if (e)
    sodium_memzero(rk, 32);
  kh_aead_free(a);
  kh_secure_free(pt);
  kh_buf_release(&obj);
  kh_buf_release(&ad);
  return e;
}

/* Check that key opens the account's protection record (so a wrong key
 * never replaces the passcode), then store a passcode wrap for it and
 * remove the older passcode wraps. */
static kh_err reset_passcode(kh_provider *p, const char *region, const char *account,
                             const uint8_t *key, int cipher, const kh_secret *pass,
                             uint32_t ops, uint32_t mib)
{
  kh_keys keys;
  memset(&keys, 0, sizeof keys);
  kh_protection mode;
  kh_buf obj;
  kh_buf_init(&obj, 1 << 20);
  uint8_t wid[16];
  char prefix[128];
  kh_err e = kh_keys_init(&keys, key, cipher, region, account);
  if (e)
    goto out;
  if ((e = prot_get(p, &keys, account, &mode))) {
    /* only a record that does not authenticate means "wrong key" */
    if (e == KH_ERR_AUTH)
      e = kh_seterr(KH_ERR_AUTH, "the key does not open account %s", account);
    goto out;
  }
  snprintf(prefix, sizeof prefix, "accounts/%s", account);
  if ((e = kh_vault_make_passcode_wrap(region, account, key, cipher, pass, ops, mib, wid, &obj)))
    goto out;
  e = kh_vault_passcode_replace(p, prefix, wid, &obj);
out:
  kh_keys_release(&keys);
  kh_buf_release(&obj);
  return e;
}

static kh_err open_region(const char *region_path, const char *account, kh_provider **p,
                          char region[64])
{
  size_t al = account ? strlen(account) : 0;
  if (al != KH_ACCOUNT_ID_HEX)
    return kh_seterr(KH_ERR_INVAL, "an account id (32 hex digits) is required");
  for (size_t i = 0; i < al; i++)
    if (!((account[i] >= '0' && account[i] <= '9') || (account[i] >= 'a' && account[i] <= 'f')))
      return kh_seterr(KH_ERR_INVAL, "'%s' is not an account id", account);
  kh_err e = kh_region_id(region_path, region);
  if (!e)
    e = kh_provider_dir_new(region_path, p);
  return e;
}

kh_err kh_account_passcode_from_key(const char *region_path, const char *account,
                                    const uint8_t key[32], int cipher, const kh_secret *pass,
                                    uint32_t ops, uint32_t mib)
{
  if (!pass || !pass->len)
    return kh_seterr(KH_ERR_INVAL, "empty passcode");
  kh_provider *p = NULL;
  char region[64];
  kh_err e = open_region(region_path, account, &p, region);
  if (!e)
    e = reset_passcode(p, region, account, key, cipher, pass, ops, mib);
  kh_provider_free(p);
  return e;
}

kh_err kh_account_passcode_from_recovery(const char *region_path, const char *account,
                                         const uint8_t rk[32], const kh_secret *pass,
                                         uint32_t ops, uint32_t mib)
{
  if (!pass || !pass->len)
    return kh_seterr(KH_ERR_INVAL, "empty passcode");
  kh_provider *p = NULL;
  char region[64], name[256], prefix[128];
  char (*names)[33] = NULL;
  size_t nn = 0;
  kh_aead *a = NULL;
  kh_buf obj, ad, pt;
  kh_buf_init(&obj, 4096);
  kh_buf_init(&ad, 1024);
  kh_buf_init(&pt, 64);
  kh_err e = open_region(region_path, account, &p, region);
  if (e)
    goto out;
  snprintf(prefix, sizeof prefix, "accounts/%s", account);
  if ((e = kh_vault_key_names(p, prefix, &names, &nn)) || (e = recovery_aead(rk, &a)))
    goto out;
  e = kh_seterr(KH_ERR_AUTH, "the recovery key does not open account %s", account);
  for (size_t i = 0; i < nn; i++) {
    uint8_t wid[16];
    kh_buf_reset(&obj);
    kh_buf_reset(&ad);
    snprintf(name, sizeof name, "accounts/%s/keys/%s", account, names[i]);
    if (kh_hex_decode(wid, 16, names[i], 32) ||
        kh_provider_read(p, name, KH_OBJMAX_KEY, &obj) || obj.len < 7 ||
        memcmp(obj.data, KEY_MAGIC, 6) || obj.data[6] != KEY_KIND_RECOVERY)
      continue;
    if (recovery_ad(&ad, region, account, wid, obj.data) ||
        kh_aead_open_box(a, &pt, obj.data + 7, obj.len - 7, ad.data, ad.len) || pt.len != 33)
      continue;
    e = reset_passcode(p, region, account, pt.data, pt.data[32], pass, ops, mib);
    break;
  }
out:
  free(names);
  kh_buf_wipe(&pt);
  kh_buf_release(&pt);
  kh_buf_release(&obj);
  kh_buf_release(&ad);
  kh_aead_free(a);
  kh_provider_free(p);
  return e;
}
