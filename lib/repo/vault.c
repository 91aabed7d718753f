/* Creating and opening accounts: the region marker, key wraps (passcode
 * under Argon2id), this device's keys (docs/format.md §1, §4). */
#include "repo/vault_internal.h"
#include "keyhold/region.h"
#include "cache/cache.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/hex.h"
#include "common/wire.h"
#include "keyhold/kms.h"
#include "keyhold/remote.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_MAGIC "KHKEY1"
#define KEY_KIND_PASSCODE 1
#define DEVICE_MAGIC "KHDEV1"
#define DEFAULT_KDF_OPS 3
#define DEFAULT_KDF_MIB 64

double kh_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* KH_TEST_NOW (tests only, docs/cli.md): the wall clock as Unix seconds,
 * or "+N" / "-N" seconds from the real one, to play a device whose clock
 * is wrong.  Read here only: everything that records wall time uses this. */
int64_t kh_wall_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  const char *t = getenv("KH_TEST_NOW");
  if (t && *t) {
    char *end;
    long long s = strtoll(t, &end, 10);
    if (!*end && s > -(1LL << 32) && s < (1LL << 32))
      now = (*t == '+' || *t == '-') ? now + s * 1000000000 : s * 1000000000;
  }
  return now;
}

char *kh_default_dir(const char *env, const char *xdg, const char *fallback)
{
  const char *e = getenv(env);
  if (e && *e)
    return strdup(e);
  const char *x = getenv(xdg);
  if (x && *x)
    return kh_path_join(x, "keyhold");
  const char *home = getenv("HOME");
  if (!home || !*home)
    home = "/tmp";
  char *base = kh_path_join(home, fallback);
  char *r = base ? kh_path_join(base, "keyhold") : NULL;
  free(base);
  return r;
}

void kh_vault_objname(const kh_vault *v, char *out, size_t n, const char *kind,
                      const uint8_t *id, size_t idlen)
{
  char hex[129];
  kh_hex_encode(hex, id, idlen);
  if (!strcmp(kind, "data"))
    snprintf(out, n, "%s/data/%.2s/%s", v->prefix, hex, hex);
  else
    snprintf(out, n, "%s/%s/%s", v->prefix, kind, hex);
}

/* ---- key wraps ---------------------------------------------------------- */

static kh_err passcode_key(uint8_t out[32], const kh_secret *pass, const uint8_t salt[16],
                           uint32_t ops, uint32_t mib)
{
  if (crypto_pwhash(out, 32, (const char *)pass->bytes, pass->len, salt, ops,
                    (size_t)mib << 20, crypto_pwhash_ALG_ARGON2ID13) != 0)
    return kh_seterr(KH_ERR_NOMEM, "Argon2id needs %u MiB of memory", mib);
  return KH_OK;
}

static kh_err key_ad(kh_buf *ad, const char *region, const char *account, const uint8_t wid[16],
                     const uint8_t *hdr, size_t hlen)
{
  kh_err e = kh_ad_build(ad, region, account, "key", wid, 16);
  return e ? e : kh_buf_append(ad, hdr, hlen);
}

/* Build a passcode wrap object for master. */
static kh_err make_passcode_wrap(const char *region, const char *account, const uint8_t *master,
                                 int cipher, const kh_secret *pass, uint32_t ops, uint32_t mib,
                                 uint8_t wid[16], kh_buf *out)
{
  kh_err e = KH_OK;
  uint8_t salt[16], *k = kh_secure_alloc(32), *pt = kh_secure_alloc(33);
  kh_aead *a = NULL;
  kh_buf ad;
  kh_buf_init(&ad, 1024);
  kh_buf_reset(out);
  if (!k || !pt) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  if (ops < 1 || ops > 64 || mib < 8 || mib > 4096) {
    e = kh_seterr(KH_ERR_INVAL, "KDF parameters out of range (ops 1..64, memory 8..4096 MiB)");
    goto out;
  }
  randombytes_buf(wid, 16);
  randombytes_buf(salt, sizeof salt);
  if ((e = passcode_key(k, pass, salt, ops, mib)))
    goto out;
  if ((e = kh_buf_append(out, KEY_MAGIC, 6)) || (e = kh_buf_put_u8(out, KEY_KIND_PASSCODE)) ||
      (e = kh_buf_put_u32(out, ops)) || (e = kh_buf_put_u32(out, mib)) ||
      (e = kh_buf_append(out, salt, 16)))
    goto out;
  memcpy(pt, master, 32);
  pt[32] = (uint8_t)cipher;
  if ((e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, k)) ||
      (e = key_ad(&ad, region, account, wid, out->data, out->len)))
    goto out;
  e = kh_aead_seal_box(a, out, pt, 33, ad.data, ad.len);
out:
  kh_aead_free(a);
  kh_secure_free(k);
  kh_secure_free(pt);
  kh_buf_release(&ad);
  return e;
}

/* Try a passcode wrap: KH_ERR_PASSCODE if it does not open. */
kh_err kh_keywrap_passcode_header(const uint8_t *obj, size_t n, uint32_t *ops, uint32_t *mib,
                                  uint8_t salt[16], size_t *hlen)
{
  kh_rd r;
  kh_rd_init(&r, obj, n);
  const uint8_t *magic = kh_rd_bytes(&r, 6);
  uint8_t kind = kh_rd_u8(&r);
  *ops = kh_rd_u32(&r);
  *mib = kh_rd_u32(&r);
  kh_rd_copy(&r, salt, 16);
  if (!kh_rd_ok(&r) || memcmp(magic, KEY_MAGIC, 6))
    return kh_seterr(KH_ERR_FORMAT, "malformed key object");
  if (kind != KEY_KIND_PASSCODE)
    return kh_seterr(KH_ERR_NOTFOUND, "not a passcode wrap");
  /* bound the work an attacker-supplied header can ask of us */
  if (*ops < 1 || *ops > 64 || *mib < 8 || *mib > 4096)
    return kh_seterr(KH_ERR_FORMAT, "key object asks for unreasonable KDF parameters");
  /* the box after the header holds master(32) || cipher(1) */
  if (n - r.off < 33 + KH_AEAD_TAG + 24)
    return kh_seterr(KH_ERR_FORMAT, "key object too short");
  *hlen = r.off;
  return KH_OK;
}

static kh_err open_passcode_wrap(const char *region, const char *account, const uint8_t wid[16],
                                 const uint8_t *obj, size_t n, const kh_secret *pass,
                                 uint8_t *master, int *cipher)
{
  uint32_t ops, mib;
  uint8_t salt[16];
  size_t hlen;
  kh_err e = kh_keywrap_passcode_header(obj, n, &ops, &mib, salt, &hlen);
  if (e)
    return e;
  uint8_t *k = kh_secure_alloc(32);
  kh_aead *a = NULL;
  kh_buf ad, pt;
  kh_buf_init(&ad, 1024);
  kh_buf_init(&pt, 64);
  if (!k) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  if ((e = passcode_key(k, pass, salt, ops, mib)) ||
      (e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, k)) ||
      (e = key_ad(&ad, region, account, wid, obj, hlen)))
    goto out;
  e = kh_aead_open_box(a, &pt, obj + hlen, n - hlen, ad.data, ad.len);
  if (e == KH_ERR_AUTH || (!e && pt.len != 33)) {
    e = kh_seterr(KH_ERR_PASSCODE, "the passcode does not open this account");
    goto out;
  }
  if (e) /* out of memory is not a wrong passcode */
    goto out;
  memcpy(master, pt.data, 32);
  *cipher = pt.data[32];
out:
  kh_buf_wipe(&pt);
  kh_buf_release(&pt);
  kh_buf_release(&ad);
  kh_aead_free(a);
  kh_secure_free(k);
  return e;
}

/* ---- region and account --------------------------------------------------- */

static int count_entries(const char *dir)
{
  int n = 0;
  DIR *d = opendir(dir);
  if (!d)
    return 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      n++;
  closedir(d);
  return n;
}

kh_err kh_vault_read_marker(kh_provider *p, char id[64])
{
  kh_buf b;
  kh_buf_init(&b, 4096);
  kh_err e = kh_provider_read(p, KH_REGION_MARKER, KH_OBJMAX_REGION_MARKER, &b);
  if (e) {
    kh_buf_release(&b);
    return e == KH_ERR_NOTFOUND ? kh_seterr(KH_ERR_NOTFOUND, "not a keyhold region (no %s)",
                                            KH_REGION_MARKER)
                                : e;
  }
  char text[256] = {0};
  if (b.len) /* an empty marker reads as no data at all (b.data NULL) */
    memcpy(text, b.data, b.len < sizeof text - 1 ? b.len : sizeof text - 1);
  kh_buf_release(&b);
  char rid[64] = {0};
  if (sscanf(text, "keyhold-region v1\nid %63s\n", rid) != 1 || !kh_region_id_valid(rid))
    return kh_seterr(KH_ERR_FORMAT, "malformed %s", KH_REGION_MARKER);
  memcpy(id, rid, 64);
  return KH_OK;
}

kh_err kh_region_id(const char *region_path, char out[64])
{
  kh_provider *p = NULL;
  kh_err e = kh_provider_dir_new(region_path, &p);
  if (!e)
    e = kh_vault_read_marker(p, out);
  kh_provider_free(p);
  return e;
}

kh_err kh_vault_init(const kh_init_opts *o, char account_out[KH_ACCOUNT_ID_HEX + 1])
{
  kh_err e = kh_crypto_init();
  if (e)
    return e;
  if (kh_vault_is_url(o->region_path))
    return kh_vault_init_remote(o, account_out);
  const char *rid = o->region_id ? o->region_id : "local";
  if (!kh_region_id_valid(rid))
    return kh_seterr(KH_ERR_INVAL, "region id '%s' must be 1-63 of [a-z0-9-]", rid);
  if (!o->passcode || o->passcode->len == 0)
    return kh_seterr(KH_ERR_INVAL, "empty passcode");
  if ((e = kh_mkdirs(o->region_path, 0700)))
    return e;
  kh_provider *p = NULL;
  uint8_t *master = kh_secure_alloc(32);
  kh_buf obj;
  kh_buf_init(&obj, 1 << 20);
  if (!master) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  if ((e = kh_provider_dir_new(o->region_path, &p)))
    goto out;
  char have[64];
  e = kh_vault_read_marker(p, have);
  if (e == KH_ERR_NOTFOUND) {
    /* a new region: only in an empty directory, never over someone's files */
    int entries = count_entries(o->region_path);
    if (entries) {
      e = kh_seterr(KH_ERR_EXISTS, "%s is not empty and not a keyhold region",
                    o->region_path);
      goto out;
    }
    /* the region's key service and log first, then its marker, with a
     * random instance id (docs/format.md §1): the one writer of regions;
     * on failure it leaves the directory empty, so init can be rerun */
    if ((e = kh_region_create(o->region_path, rid, NULL)))
      goto out;
  } else if (e) {
    goto out;
  } else if (o->region_id && strcmp(have, rid)) {
    e = kh_seterr(KH_ERR_INVAL, "%s is region '%s', not '%s'", o->region_path, have, rid);
    goto out;
  } else {
    rid = NULL; /* use the existing id below */
    /* a region made before the key service existed gets one now */
    if (!kh_kms_exists(o->region_path) && (e = kh_kms_create(o->region_path, have)))
      goto out;
  }
  char region[64];
  snprintf(region, sizeof region, "%s", rid ? rid : have);
  uint8_t acct[16], wid[16];
  randombytes_buf(acct, sizeof acct);
  char acct_hex[33], wid_hex[33], name[256];
  kh_hex_encode(acct_hex, acct, 16);
  randombytes_buf(master, 32);
  int cipher = o->cipher ? o->cipher : kh_aead_default_cipher();
  if (kh_aead_nonce_bytes(cipher) == 0) {
    e = kh_seterr(KH_ERR_UNSUPPORTED, "unknown cipher %d", cipher);
    goto out;
  }
  if ((e = make_passcode_wrap(region, acct_hex, master, cipher, o->passcode,
                              o->kdf_ops ? o->kdf_ops : DEFAULT_KDF_OPS,
                              o->kdf_mem_mib ? o->kdf_mem_mib : DEFAULT_KDF_MIB, wid, &obj)))
    goto out;
  kh_hex_encode(wid_hex, wid, 16);
  snprintf(name, sizeof name, "accounts/%s/keys/%s", acct_hex, wid_hex);
  if ((e = kh_provider_put(p, name, obj.data, obj.len, true)))
    goto out;
  /* standard protection: the key service wraps the key too (logged) */
  if ((e = kh_vault_protect_new_account(p, o->region_path, region, acct_hex, master, cipher)))
    goto out;
  /* the account marker comes last: an account without it is incomplete */
  char marker[64];
  int ml = snprintf(marker, sizeof marker, "keyhold-account v1\n");
  snprintf(name, sizeof name, "accounts/%s/account", acct_hex);
  if ((e = kh_provider_put(p, name, marker, (size_t)ml, true)))
    goto out;
  memcpy(account_out, acct_hex, 33);
out:
  kh_secure_free(master);
  kh_buf_release(&obj);
  kh_provider_free(p);
  return e;
}

/* ---- opening ------------------------------------------------------------ */

typedef struct acct_scan {
  char found[4][KH_ACCOUNT_ID_HEX + 1];
  int n;
} acct_scan;

static int scan_account(const char *name, uint64_t size, void *ctx)
{
  acct_scan *s = ctx;
  const char *slash = strchr(name, '/');
  if (!slash || strcmp(slash, "/account") || slash - name != KH_ACCOUNT_ID_HEX)
    return 0;
  if (s->n < 4)
    snprintf(s->found[s->n], sizeof s->found[0], "%.*s", KH_ACCOUNT_ID_HEX, name);
  s->n++;
  return 0;
}

/* The region's only account, or an error saying why there is none. */
static kh_err only_account(kh_provider *p, const char *region_path,
                           char out[KH_ACCOUNT_ID_HEX + 1])
{
  acct_scan s = {0};
  kh_err e = kh_provider_list(p, "accounts", scan_account, &s);
  if (e)
    return e;
  if (s.n == 0)
    return kh_seterr(KH_ERR_NOTFOUND, "region %s has no account (run keyhold init)",
                     region_path);
  if (s.n > 1)
    return kh_seterr(KH_ERR_AMBIGUOUS, "region has %d accounts: name one with --account", s.n);
  memcpy(out, s.found[0], KH_ACCOUNT_ID_HEX + 1);
  return KH_OK;
}

kh_err kh_region_account(const char *region_path, char out[KH_ACCOUNT_ID_HEX + 1])
{
  kh_provider *p = NULL;
  char rid[64];
  kh_err e = kh_provider_dir_new(region_path, &p);
  if (!e)
    e = kh_vault_read_marker(p, rid);
  if (!e)
    e = only_account(p, region_path, out);
  kh_provider_free(p);
  return e;
}

typedef struct acct_all {
  char (*ids)[KH_ACCOUNT_ID_HEX + 1];
  size_t n, cap;
  bool oom;
} acct_all;

static int collect_account(const char *name, uint64_t size, void *ctx)
{
  acct_all *a = ctx;
  (void)size;
  const char *slash = strchr(name, '/');
  if (!slash || strcmp(slash, "/account") || slash - name != KH_ACCOUNT_ID_HEX)
    return 0;
  if (a->n == a->cap) {
    size_t nc = a->cap ? 2 * a->cap : 8;
    void *np = nc > (1u << 20) ? NULL : realloc(a->ids, nc * sizeof *a->ids);
    if (!np) {
      a->oom = true;
      return 1;
    }
    a->ids = np;
    a->cap = nc;
  }
  snprintf(a->ids[a->n++], KH_ACCOUNT_ID_HEX + 1, "%.*s", KH_ACCOUNT_ID_HEX, name);
  return 0;
}

static int cmp_account(const void *x, const void *y)
{
  return strcmp(x, y);
}

kh_err kh_region_accounts(const char *region_path, char (**ids)[KH_ACCOUNT_ID_HEX + 1],
                          size_t *n)
{
  kh_provider *p = NULL;
  char rid[64];
  acct_all a = {0};
  *ids = NULL;
  *n = 0;
  kh_err e = kh_provider_dir_new(region_path, &p);
  if (!e)
    e = kh_vault_read_marker(p, rid);
  if (!e)
    e = kh_provider_list(p, "accounts", collect_account, &a);
  if (!e && a.oom)
    e = kh_seterr(KH_ERR_NOMEM, "out of memory listing accounts");
  if (e) {
    free(a.ids);
    goto out;
  }
  if (a.n)
    qsort(a.ids, a.n, sizeof *a.ids, cmp_account);
  *ids = a.ids;
  *n = a.n;
out:
  kh_provider_free(p);
  return e;
}

static bool valid_account(const char *a)
{
  if (strlen(a) != KH_ACCOUNT_ID_HEX)
    return false;
  for (const char *p = a; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return false;
  return true;
}

typedef struct wrap_list {
  char (*names)[33];
  size_t n, cap;
  bool oom;
} wrap_list;

static int collect_wrap(const char *name, uint64_t size, void *ctx)
{
  wrap_list *w = ctx;
  if (strlen(name) != 32)
    return 0;
  if (w->n == w->cap) {
    size_t nc = w->cap ? 2 * w->cap : 16;
    void *p = realloc(w->names, nc * sizeof *w->names);
    if (!p) {
      w->oom = true;
      return 1;
    }
    w->names = p;
    w->cap = nc;
  }
  snprintf(w->names[w->n++], sizeof w->names[0], "%s", name);
  return 0;
}

kh_err kh_vault_key_names(kh_provider *p, const char *prefix, char (**names)[33], size_t *n)
{
  char name[256];
  wrap_list wl = {0};
  snprintf(name, sizeof name, "%s/keys", prefix);
  kh_err e = kh_provider_list(p, name, collect_wrap, &wl);
  if (!e && wl.oom)
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (e) {
    free(wl.names);
    wl.names = NULL;
    wl.n = 0;
  }
  *names = wl.names;
  *n = wl.n;
  return e;
}

kh_err kh_vault_passcode_replace(kh_provider *p, const char *prefix, const uint8_t wid[16],
                                 const kh_buf *obj)
{
  char name[256], hex[33];
  char (*names)[33] = NULL;
  size_t n = 0;
  kh_buf head;
  kh_buf_init(&head, 64);
  kh_hex_encode(hex, wid, 16);
  snprintf(name, sizeof name, "%s/keys/%s", prefix, hex);
  kh_err e = kh_provider_put(p, name, obj->data, obj->len, true);
  /* the new wrap is durable: list AFTER it, so every older passcode wrap,
   * also those an interrupted change left, is retired */
  if (!e)
    e = kh_vault_key_names(p, prefix, &names, &n);
  for (size_t i = 0; !e && i < n; i++) {
    if (!strcmp(names[i], hex))
      continue;
    snprintf(name, sizeof name, "%s/keys/%s", prefix, names[i]);
    kh_buf_reset(&head);
    kh_err ge = kh_provider_get(p, name, 0, 7, &head);
    if (ge == KH_ERR_NOTFOUND || ge == KH_ERR_FORMAT)
      continue; /* gone already, or too short to be a key object */
    if (ge)
      e = kh_adderr(ge, "retiring old passcode wraps");
    else if (!memcmp(head.data, KEY_MAGIC, 6) && head.data[6] == KEY_KIND_PASSCODE)
      e = kh_provider_del(p, name);
  }
  free(names);
  kh_buf_release(&head);
  return e;
}

/* Device keys live on the device (device_dir), sealed under a key derived
 * from the master key; the region holds only the public half. */
static kh_err device_file_key(const kh_vault *v, uint8_t out[32])
{
  kh_kdf(out, 32, v->master, "khdevice", 1);
  return KH_OK;
}

kh_err kh_vault_device_record(kh_buf *rec, const uint8_t pk[32], const char *name)
{
  kh_err e;
  if ((e = kh_buf_append(rec, DEVICE_MAGIC, 6)) || (e = kh_buf_append(rec, pk, 32)) ||
      (e = kh_buf_put_str(rec, name)) || (e = kh_buf_put_u64(rec, (uint64_t)kh_wall_ns())))
    return e;
  return KH_OK;
}

static kh_err enroll_device(kh_vault *v, const char *path)
{
  kh_err e = KH_OK;
  uint8_t *k = kh_secure_alloc(32), *pt = kh_secure_alloc(16 + 64);
  kh_aead *a = NULL;
  kh_buf box, rec, ad;
  kh_buf_init(&box, 4096);
  kh_buf_init(&rec, 4096);
  kh_buf_init(&ad, 1024);
  if (!k || !pt) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  randombytes_buf(v->device_id, KH_DEVICE_ID_BYTES);
  crypto_sign_keypair(v->device_pk, v->device_sk);
  char host[256] = "unknown";
  gethostname(host, sizeof host - 1);
  /* public record first: a device the region does not know signs nothing */
  if ((e = kh_vault_device_record(&rec, v->device_pk, host)))
    goto out;
  if ((e = kh_vault_put_obj(v, "devices", "device", v->device_id, KH_DEVICE_ID_BYTES, rec.data,
                            rec.len, true)))
    goto out;
  memcpy(pt, v->device_id, 16);
  memcpy(pt + 16, v->device_sk, 64);
  device_file_key(v, k);
  if ((e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, k)) ||
      (e = kh_ad_build(&ad, v->region_id, v->account, "device-secret", NULL, 0)) ||
      (e = kh_buf_append(&box, DEVICE_MAGIC, 6)) ||
      (e = kh_aead_seal_box(a, &box, pt, 80, ad.data, ad.len)))
    goto out;
  if ((e = kh_mkdirs(v->device_dir, 0700)))
    goto out;
  e = kh_write_file_atomic(path, box.data, box.len, 0600, true);
  if (e == KH_ERR_EXISTS) {
    /* another process enrolled this device first: withdraw our record and
     * use its key (the caller reloads) */
    char name[256];
    kh_vault_objname(v, name, sizeof name, "devices", v->device_id, KH_DEVICE_ID_BYTES);
    kh_provider_del(v->prov, name);
  }
out:
  kh_aead_free(a);
  kh_secure_free(k);
  kh_secure_free(pt);
  kh_buf_release(&box);
  kh_buf_release(&rec);
  kh_buf_release(&ad);
  return e;
}

static kh_err load_device(kh_vault *v)
{
  char *path = kh_path_join(v->device_dir, "device.key");
  if (!path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  uint8_t *data = NULL, *k = kh_secure_alloc(32);
  size_t len = 0;
  kh_aead *a = NULL;
  kh_buf pt, ad;
  kh_buf_init(&pt, 256);
  kh_buf_init(&ad, 1024);
  kh_err e = k ? kh_read_file(path, 4096, &data, &len)
               : kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  if (e == KH_ERR_NOTFOUND) {
    e = enroll_device(v, path);
    if (e != KH_ERR_EXISTS)
      goto out;
    e = kh_read_file(path, 4096, &data, &len); /* lost the race: load the winner's */
  }
  if (e)
    goto out;
  device_file_key(v, k);
  if (len < 6 || memcmp(data, DEVICE_MAGIC, 6)) {
    e = kh_seterr(KH_ERR_FORMAT, "%s is not a keyhold device key", path);
    goto out;
  }
  if ((e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, k)) ||
      (e = kh_ad_build(&ad, v->region_id, v->account, "device-secret", NULL, 0)))
    goto out;
  e = kh_aead_open_box(a, &pt, data + 6, len - 6, ad.data, ad.len);
  if (e && e != KH_ERR_AUTH) /* out of memory is not a foreign device key */
    goto out;
  if (e || pt.len != 80) {
    e = kh_seterr(KH_ERR_AUTH, "device key %s does not belong to this account", path);
    goto out;
  }
  memcpy(v->device_id, pt.data, 16);
  memcpy(v->device_sk, pt.data + 16, 64);
  crypto_sign_ed25519_sk_to_pk(v->device_pk, v->device_sk);
out:
  kh_buf_wipe(&pt);
  kh_buf_release(&pt);
  kh_buf_release(&ad);
  kh_aead_free(a);
  kh_secure_free(k);
  free(data);
  free(path);
  if (!e)
    kh_hex_encode(v->device_hex, v->device_id, KH_DEVICE_ID_BYTES);
  return e;
}

kh_err kh_vault_open(const kh_open_opts *o, kh_vault **out)
{
  *out = NULL;
  kh_err e = kh_crypto_init();
  if (e)
    return e;
  bool remote = kh_vault_is_url(o->region_path);
  if (!o->passcode && !remote)
    return kh_seterr(KH_ERR_INVAL, "no passcode");
  kh_vault *v = calloc(1, sizeof *v);
  kh_buf obj;
  kh_buf_init(&obj, 1 << 20);
  char *dir = NULL;
  char (*wnames)[33] = NULL;
  size_t nw = 0;
  if (!v || !(v->master = kh_secure_alloc(32)) || !(v->device_sk = kh_secure_alloc(64)) ||
      !(v->region_path = strdup(o->region_path))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  kh_index_init(&v->index);
  if (remote) {
    /* the device's own key opens the account: no passcode, no wraps to try */
    if ((e = kh_vault_open_remote(o, v)))
      goto out;
    goto keys;
  }
  if ((e = kh_provider_dir_new(o->region_path, &v->prov)))
    goto out;
  if (o->limit_upload || o->limit_download) {
    kh_provider *rl = NULL;
    if ((e = kh_provider_ratelimit_new(v->prov, o->limit_upload, o->limit_download, &rl)))
      goto out;
    v->prov = rl;
  }
  if ((e = kh_vault_read_marker(v->prov, v->region_id)))
    goto out;
  if (o->account) {
    if (!valid_account(o->account)) {
      e = kh_seterr(KH_ERR_INVAL, "'%s' is not an account id", o->account);
      goto out;
    }
    snprintf(v->account, sizeof v->account, "%s", o->account);
  } else {
    if ((e = only_account(v->prov, o->region_path, v->account)))
      goto out;
  }
  snprintf(v->prefix, sizeof v->prefix, "accounts/%s", v->account);
  char name[256];
  snprintf(name, sizeof name, "%s/account", v->prefix);
  uint64_t sz;
  if ((e = kh_provider_size(v->prov, name, &sz))) {
    /* only a missing object means "no such account"; anything else (out of
     * memory, I/O error) is reported as itself */
    if (e == KH_ERR_NOTFOUND)
      e = kh_seterr(KH_ERR_NOTFOUND, "no account %s in this region", v->account);
    else
      e = kh_adderr(e, "account %s", v->account);
    goto out;
  }
  /* every wrap present: an interrupted passcode change may have left several */
  if ((e = kh_vault_key_names(v->prov, v->prefix, &wnames, &nw)))
    goto out;
  /* Objects that are not a wrap for this passcode are skipped; a wrap that
   * could not be tried (out of memory, I/O error) is remembered, so that
   * such a failure is not reported as a wrong passcode. */
  kh_err untried = KH_OK;
  e = kh_seterr(KH_ERR_PASSCODE, "no passcode wrap for this account");
  for (size_t i = 0; i < nw && e; i++) {
    uint8_t wid[16];
    if (kh_hex_decode(wid, 16, wnames[i], 32))
      continue;
    snprintf(name, sizeof name, "%s/keys/%s", v->prefix, wnames[i]);
    kh_buf_reset(&obj);
    kh_err e2 = kh_provider_read(v->prov, name, KH_OBJMAX_KEY, &obj);
    if (!e2)
      e2 = open_passcode_wrap(v->region_id, v->account, wid, obj.data, obj.len, o->passcode,
                              v->master, &v->cipher);
    if (e2 == KH_OK || e2 == KH_ERR_PASSCODE)
      e = e2;
    else if (!untried && (e2 == KH_ERR_NOMEM || e2 == KH_ERR_IO || e2 == KH_ERR_NOSPACE ||
                          e2 == KH_ERR_CRYPTO))
      untried = e2;
  }
  if (e == KH_ERR_PASSCODE && untried) {
    e = kh_seterr(untried, "a passcode wrap of account %s could not be tried: %s", v->account,
                  kh_strerror(untried));
    goto out;
  }
  if (e == KH_ERR_PASSCODE) {
    e = kh_seterr(KH_ERR_PASSCODE, "the passcode does not open account %s", v->account);
    goto out;
  }
keys:
  if ((e = kh_keys_init(&v->keys, v->master, v->cipher, v->region_id, v->account)))
    goto out;
  {
    uint8_t cs[32];
    kh_kdf(cs, 32, v->master, "khvault1", 4);
    e = kh_chunker_init(&v->chunker, cs, KH_CHUNK_MIN, KH_CHUNK_AVG, KH_CHUNK_MAX);
    sodium_memzero(cs, sizeof cs);
    if (e)
      goto out;
  }
  char sub[160];
  snprintf(sub, sizeof sub, "%s-%s", v->region_id, v->account);
  dir = o->device_dir ? strdup(o->device_dir)
                      : kh_default_dir("KEYHOLD_DEVICE_DIR", "XDG_CONFIG_HOME", ".config");
  if (!dir || !(v->device_dir = kh_path_join(dir, sub))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  free(dir);
  dir = NULL;
  if (!o->no_cache) {
    dir = o->cache_dir ? strdup(o->cache_dir)
                       : kh_default_dir("KEYHOLD_CACHE_DIR", "XDG_CACHE_HOME", ".cache");
    char *acc = dir ? kh_path_join(dir, sub) : NULL;
    v->cache_path = acc ? kh_path_join(acc, "files.db") : NULL;
    free(acc);
    if (!v->cache_path) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    /* the cache must never sit inside the region the provider holds */
    if (!remote && (e = kh_cache_check_outside(v->cache_path, o->region_path)))
      goto out;
  }
  /* server mode: the device's keys came with its identity; its per-account
   * state (counter, locks seen) still lives in device_dir */
  if ((e = remote ? kh_mkdirs(v->device_dir, 0700) : load_device(v)))
    goto out;
  *out = v;
  v = NULL;
out:
  free(dir);
  free(wnames);
  kh_buf_release(&obj);
  kh_vault_free(v);
  return e;
}

void kh_vault_free(kh_vault *v)
{
  if (!v)
    return;
  kh_vault_unlock(v);
  kh_keys_release(&v->keys);
  kh_chunker_release(&v->chunker);
  kh_secure_free(v->master);
  kh_secure_free(v->device_sk);
  kh_index_release(&v->index);
  free(v->index_ids);
  free(v->superseded);
  kh_vault_clear_damage(v);
  free(v->devices);
  kh_provider_free(v->prov);
  kh_remote_free(v->remote);
  kh_device_state_free(v->dev);
  free(v->region_path);
  free(v->device_dir);
  free(v->cache_path);
  free(v);
}

const char *kh_vault_account_id(const kh_vault *v) { return v->account; }
const char *kh_vault_region_id(const kh_vault *v) { return v->region_id; }
const char *kh_vault_device_id(const kh_vault *v) { return v->device_hex; }

kh_err kh_vault_passcode_change(kh_vault *v, const kh_secret *newpass, uint32_t ops,
                                uint32_t mib)
{
  if (!newpass || newpass->len == 0)
    return kh_seterr(KH_ERR_INVAL, "empty passcode");
  /* a passcode wrap on a server could be guessed offline by whoever holds
   * it: in server mode the passcode is the escrow's (keyhold/keysvc.h) */
  if (v->remote)
    return kh_seterr(KH_ERR_STATE, "a region server never stores a passcode wrap: the "
                     "passcode of a server account is its escrow passcode "
                     "(kh_keysvc_escrow_enable)");
  kh_buf obj;
  kh_buf_init(&obj, 1 << 20);
  uint8_t wid[16];
  kh_err e = make_passcode_wrap(v->region_id, v->account, v->master, v->cipher, newpass,
                                ops ? ops : DEFAULT_KDF_OPS, mib ? mib : DEFAULT_KDF_MIB, wid,
                                &obj);
  if (!e)
    e = kh_vault_passcode_replace(v->prov, v->prefix, wid, &obj);
  kh_buf_release(&obj);
  return e;
}

/* For protection.c: a passcode wrap of a key released by the key service or
 * a recovery key (docs/threat-model.md §3). */
kh_err kh_vault_make_passcode_wrap(const char *region, const char *account,
                                   const uint8_t *master, int cipher, const kh_secret *pass,
                                   uint32_t ops, uint32_t mib, uint8_t wid[16], kh_buf *out)
{
  return make_passcode_wrap(region, account, master, cipher, pass,
                            ops ? ops : DEFAULT_KDF_OPS, mib ? mib : DEFAULT_KDF_MIB, wid, out);
}
