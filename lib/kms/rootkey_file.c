/* Sealed-key-file backend (docs/kms-rootkey.md §2).
 *
 * dir/root-<v>.sealed holds root-key version v and dir/derive.sealed the
 * derivation key, each XChaCha20-Poly1305-sealed under a key-encryption key
 * (KEK) = Argon2id(operator secret, salt, costs in the file).  The AD binds
 * the region id, the kind ("rootkey" / "rootkey-derive") and the file header,
 * which holds the version: a file renamed to another version, copied to
 * another region or given another secret does not open. */
#include "kms/rootkey.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/wire.h"
#include "crypto/crypto.h"

#include <dirent.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEALED_FORMAT 1
#define KDF_ARGON2ID13 1
#define SALT_BYTES 16
#define NONCE_BYTES 24
/* Argon2id costs for new files: libsodium's MODERATE (3 passes, 256 MiB). */
#define NEW_OPSLIMIT 3u
#define NEW_MEMKIB (256u * 1024u)
/* Costs accepted when opening: enough to be real, small enough that a
 * damaged file cannot exhaust the machine. */
#define MIN_OPSLIMIT 1u
#define MAX_OPSLIMIT 16u
#define MIN_MEMKIB (8u * 1024u)
#define MAX_MEMKIB (1024u * 1024u)
#define DERIVE_FILE "derive.sealed"

typedef struct file_state {
  char *dir;
  char region[65];
  uint8_t *kek;        /* secure: Argon2id output for salt/opslimit/memkib */
  uint8_t salt[SALT_BYTES];
  uint32_t opslimit, memkib;
  uint8_t *derive;     /* secure: derivation key */
  uint8_t *keys[KH_ROOTKEY_VERSIONS_MAX + 1]; /* secure; [v] or NULL if not held */
} file_state;

kh_err kh_rootkey_sealed_parse(const uint8_t *p, size_t n, kh_rootkey_sealed *s)
{
  kh_rd r;
  memset(s, 0, sizeof *s);
  kh_rd_init(&r, p, n);
  const uint8_t *magic = kh_rd_bytes(&r, 8);
  uint8_t format = kh_rd_u8(&r);
  s->kind = kh_rd_u8(&r);
  uint8_t kdf = kh_rd_u8(&r);
  s->opslimit = kh_rd_u32(&r);
  s->memkib = kh_rd_u32(&r);
  s->salt = kh_rd_bytes(&r, SALT_BYTES);
  s->version = kh_rd_u32(&r);
  s->nonce = kh_rd_bytes(&r, NONCE_BYTES);
  s->ct = kh_rd_bytes(&r, 32 + KH_AEAD_TAG);
  if (!kh_rd_done(&r) || memcmp(magic, KH_ROOTKEY_SEALED_MAGIC, 8) != 0 ||
      format != SEALED_FORMAT || kdf != KDF_ARGON2ID13)
    goto bad;
  if (s->kind != KH_ROOTKEY_SEALED_ROOT && s->kind != KH_ROOTKEY_SEALED_DERIVE)
    goto bad;
  if (s->opslimit < MIN_OPSLIMIT || s->opslimit > MAX_OPSLIMIT || s->memkib < MIN_MEMKIB ||
      s->memkib > MAX_MEMKIB)
    goto bad;
  if (s->version == 0 || s->version > KH_ROOTKEY_VERSIONS_MAX ||
      (s->kind == KH_ROOTKEY_SEALED_DERIVE && s->version != 1))
    goto bad;
  return KH_OK;
bad:
  memset(s, 0, sizeof *s);
  return kh_seterr(KH_ERR_FORMAT, "malformed sealed key file");
}

static void state_free(void *p)
{
  file_state *st = p;
  if (!st)
    return;
  for (size_t v = 0; v <= KH_ROOTKEY_VERSIONS_MAX; v++)
    kh_secure_free(st->keys[v]);
  kh_secure_free(st->kek);
  kh_secure_free(st->derive);
  free(st->dir);
  free(st);
}

static kh_err state_new(const char *dir, const char *region, file_state **out)
{
  *out = NULL;
  file_state *st = calloc(1, sizeof *st);
  if (!st)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  st->dir = strdup(dir);
  st->kek = kh_secure_alloc(32);
  st->derive = kh_secure_alloc(32);
  if (!st->dir || !st->kek || !st->derive) {
    state_free(st);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  memcpy(st->region, region, strlen(region) + 1);
  *out = st;
  return KH_OK;
}

static kh_err check_args(const char *dir, const char *region, const kh_secret *secret)
{
  if (!dir || !*dir)
    return kh_seterr(KH_ERR_INVAL, "no root-key directory");
  if (!kh_rootkey_name_ok(region))
    return kh_seterr(KH_ERR_INVAL, "bad region id (1..64 of [A-Za-z0-9._-])");
  if (!secret || !secret->bytes || secret->len < KH_ROOTKEY_SECRET_MIN)
    return kh_seterr(KH_ERR_INVAL, "operator secret shorter than %d bytes",
                     KH_ROOTKEY_SECRET_MIN);
  return KH_OK;
}

static kh_err argon2id(uint8_t kek[32], const kh_secret *secret, const uint8_t *salt,
                       uint32_t opslimit, uint32_t memkib)
{
  if (crypto_pwhash(kek, 32, (const char *)secret->bytes, secret->len, salt, opslimit,
                    (size_t)memkib * 1024u, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    sodium_memzero(kek, 32);
    return kh_seterr(KH_ERR_NOMEM, "Argon2id: out of memory (%u KiB)", (unsigned)memkib);
  }
  return KH_OK;
}

static const char *kind_name(uint8_t kind)
{
  return kind == KH_ROOTKEY_SEALED_ROOT ? "rootkey" : "rootkey-derive";
}

/* Seal key as a sealed file of the given kind/version under st's KEK. */
static kh_err seal_file(const file_state *st, uint8_t kind, uint32_t version,
                        const uint8_t key[32], uint8_t file[KH_ROOTKEY_SEALED_BYTES])
{
  kh_err e = KH_OK;
  kh_aead *a = NULL;
  kh_buf ad;
  kh_buf_init(&ad, 256);
  uint8_t *p = file;
  memcpy(p, KH_ROOTKEY_SEALED_MAGIC, 8);
  p[8] = SEALED_FORMAT;
  p[9] = kind;
  p[10] = KDF_ARGON2ID13;
  kh_le32_put(p + 11, st->opslimit);
  kh_le32_put(p + 15, st->memkib);
  memcpy(p + 19, st->salt, SALT_BYTES);
  kh_le32_put(p + 35, version);
  randombytes_buf(p + KH_ROOTKEY_SEALED_HEADER, NONCE_BYTES);
  e = kh_ad_build(&ad, st->region, "", kind_name(kind), p, KH_ROOTKEY_SEALED_HEADER);
  if (!e) e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, st->kek);
  if (!e)
    e = kh_aead_seal(a, p + KH_ROOTKEY_SEALED_HEADER + NONCE_BYTES, key, 32, ad.data, ad.len,
                     p + KH_ROOTKEY_SEALED_HEADER);
  kh_aead_free(a);
  kh_buf_release(&ad);
  return e;
}

/* Read and open path (a sealed file of the given kind/version) into key.
 * Derives the KEK from secret if st has none yet or the file's salt/costs
 * differ from it. */
static kh_err open_file(file_state *st, const char *name, uint8_t kind, uint32_t version,
                        const kh_secret *secret, bool *have_kek, uint8_t key[32])
{
  kh_err e = KH_OK;
  char *path = NULL;
  uint8_t *data = NULL, *kek = NULL;
  size_t len = 0;
  kh_aead *a = NULL;
  kh_rootkey_sealed s;
  kh_buf ad;
  kh_buf_init(&ad, 256);

  path = kh_path_join(st->dir, name);
  if (!path) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  e = kh_read_file(path, 4096, &data, &len);
  if (e)
    goto out;
  e = kh_rootkey_sealed_parse(data, len, &s);
  if (e) {
    e = kh_seterr(KH_ERR_FORMAT, "%s: not a keyhold sealed key file", path);
    goto out;
  }
  if (s.kind != kind || s.version != version) {
    e = kh_seterr(KH_ERR_AUTH, "%s: holds %s version %u, not what its name says", path,
                  kind_name(s.kind), (unsigned)s.version);
    goto out;
  }
  if (*have_kek && s.opslimit == st->opslimit && s.memkib == st->memkib &&
      sodium_memcmp(s.salt, st->salt, SALT_BYTES) == 0) {
    kek = NULL; /* use st->kek */
  } else if (!*have_kek) {
    e = argon2id(st->kek, secret, s.salt, s.opslimit, s.memkib);
    if (e)
      goto out;
    memcpy(st->salt, s.salt, SALT_BYTES);
    st->opslimit = s.opslimit;
    st->memkib = s.memkib;
    *have_kek = true;
  } else {
    kek = kh_secure_alloc(32);
    if (!kek) {
      e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
      goto out;
    }
    e = argon2id(kek, secret, s.salt, s.opslimit, s.memkib);
    if (e)
      goto out;
  }
  e = kh_ad_build(&ad, st->region, "", kind_name(kind), data, KH_ROOTKEY_SEALED_HEADER);
  if (!e) e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, kek ? kek : st->kek);
  if (!e) e = kh_aead_open(a, key, s.ct, 32 + KH_AEAD_TAG, ad.data, ad.len, s.nonce);
  if (e == KH_ERR_AUTH)
    kh_seterr(KH_ERR_AUTH, "%s: wrong operator secret, wrong region id or damaged file",
              path);
out:
  if (e)
    sodium_memzero(key, 32);
  kh_aead_free(a);
  kh_secure_free(kek);
  kh_buf_release(&ad);
  free(data);
  free(path);
  return e;
}

/* "root-<v>.sealed" with v in 1..KH_ROOTKEY_VERSIONS_MAX written canonically
 * (no sign, no leading zero) -> v, else 0. */
static uint32_t root_file_version(const char *name)
{
  const char *p = name;
  uint32_t v = 0;
  if (strncmp(p, "root-", 5) != 0)
    return 0;
  p += 5;
  if (*p < '1' || *p > '9')
    return 0;
  while (*p >= '0' && *p <= '9') {
    v = v * 10 + (uint32_t)(*p - '0');
    if (v > KH_ROOTKEY_VERSIONS_MAX)
      return 0;
    p++;
  }
  return strcmp(p, ".sealed") == 0 ? v : 0;
}

/* Which versions have a file in dir: present[v] = true.  *max = highest. */
static kh_err scan_dir(const char *dir, bool *present, uint32_t *max)
{
  *max = 0;
  DIR *d = opendir(dir);
  if (!d) {
    int err = errno;
    return kh_seterr(err == ENOENT ? KH_ERR_NOTFOUND : kh_errno_code(err), "open %s: %s",
                     dir, strerror(err));
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    uint32_t v = root_file_version(de->d_name);
    if (v) {
      present[v] = true;
      if (v > *max)
        *max = v;
    }
  }
  closedir(d);
  return KH_OK;
}

static char *root_file_name(uint32_t v)
{
  char name[32];
  snprintf(name, sizeof name, "root-%u.sealed", (unsigned)v);
  return strdup(name);
}

static kh_err write_sealed(const file_state *st, const char *name, uint8_t kind, uint32_t v,
                           const uint8_t key[32])
{
  uint8_t file[KH_ROOTKEY_SEALED_BYTES];
  char *path = kh_path_join(st->dir, name);
  if (!path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  kh_err e = seal_file(st, kind, v, key, file);
  if (!e)
    e = kh_write_file_atomic(path, file, sizeof file, 0600, true);
  if (e == KH_ERR_EXISTS)
    e = kh_seterr(KH_ERR_EXISTS, "%s already exists (another rotation or create?)", path);
  free(path);
  return e;
}

/* ---- backend operations ------------------------------------------------ */

static kh_err dk_ad(const file_state *st, const uint8_t *hdr, kh_buf *ad)
{
  return kh_ad_build(ad, st->region, "", "rootkey-dk", hdr, KH_ROOTKEY_BLOB_FIXED);
}

static kh_err f_wrap_dk(void *p, uint32_t v, const uint8_t dk[32], const uint8_t *hdr,
                        kh_buf *out)
{
  file_state *st = p;
  kh_aead *a = NULL;
  kh_buf ad;
  kh_buf_init(&ad, 256);
  kh_err e = dk_ad(st, hdr, &ad);
  if (!e) e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, st->keys[v]);
  if (!e) e = kh_aead_seal_box(a, out, dk, 32, ad.data, ad.len);
  kh_aead_free(a);
  kh_buf_release(&ad);
  return e;
}

static kh_err f_unwrap_dk(void *p, uint32_t v, const uint8_t *w, size_t wlen,
                          const uint8_t *hdr, uint8_t dk[32])
{
  file_state *st = p;
  kh_aead *a = NULL;
  kh_buf ad;
  kh_buf_init(&ad, 256);
  kh_err e = KH_OK;
  if (wlen != NONCE_BYTES + 32 + KH_AEAD_TAG) {
    e = KH_ERR_AUTH;
    goto out;
  }
  e = dk_ad(st, hdr, &ad);
  if (!e) e = kh_aead_new(&a, KH_CIPHER_XCHACHA20POLY1305, st->keys[v]);
  if (!e) e = kh_aead_open(a, dk, w + NONCE_BYTES, wlen - NONCE_BYTES, ad.data, ad.len, w);
out:
  if (e)
    sodium_memzero(dk, 32);
  kh_aead_free(a);
  kh_buf_release(&ad);
  return e;
}

static bool f_has_version(void *p, uint32_t v)
{
  file_state *st = p;
  return v >= 1 && v <= KH_ROOTKEY_VERSIONS_MAX && st->keys[v] != NULL;
}

static kh_err f_rotate(void *p, uint32_t newv)
{
  file_state *st = p;
  kh_err e = KH_OK;
  char *name = NULL;
  uint8_t *key = kh_secure_alloc(32);
  if (!key) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  name = root_file_name(newv);
  if (!name) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  randombytes_buf(key, 32);
  e = write_sealed(st, name, KH_ROOTKEY_SEALED_ROOT, newv, key);
  if (e)
    goto out;
  st->keys[newv] = key;
  key = NULL;
out:
  kh_secure_free(key);
  free(name);
  return e;
}

static kh_err f_derive(void *p, const uint8_t *msg, size_t mlen, uint8_t out[32])
{
  file_state *st = p;
  kh_mac(out, st->derive, msg, mlen);
  return KH_OK;
}

static const kh_rootkey_ops file_ops = {
  .backend = KH_ROOTKEY_BACKEND_FILE,
  .alg = KH_ROOTKEY_ALG_XCHACHA,
  .wrapped_len = NONCE_BYTES + 32 + KH_AEAD_TAG,
  .kind = "file",
  .wrap_dk = f_wrap_dk,
  .unwrap_dk = f_unwrap_dk,
  .has_version = f_has_version,
  .rotate = f_rotate,
  .derive = f_derive,
  .free = state_free,
};

/* ---- public entry points ----------------------------------------------- */

kh_err kh_rootkey_file_create(const char *dir, const char *region_id,
                              const kh_secret *operator_secret, kh_rootkey **out)
{
  kh_err e = KH_OK;
  file_state *st = NULL;
  uint8_t *key = NULL;
  bool *present = NULL;
  uint32_t max = 0;
  *out = NULL;

  e = check_args(dir, region_id, operator_secret);
  if (!e) e = kh_crypto_init();
  if (!e) e = kh_mkdirs(dir, 0700);
  if (e)
    goto out;
  present = calloc(KH_ROOTKEY_VERSIONS_MAX + 1, sizeof *present);
  if (!present) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  e = scan_dir(dir, present, &max);
  if (e)
    goto out;
  if (max) {
    e = kh_seterr(KH_ERR_EXISTS, "%s already holds root-%u.sealed", dir, (unsigned)max);
    goto out;
  }
  e = state_new(dir, region_id, &st);
  if (e)
    goto out;
  randombytes_buf(st->salt, SALT_BYTES);
  st->opslimit = NEW_OPSLIMIT;
  st->memkib = NEW_MEMKIB;
  e = argon2id(st->kek, operator_secret, st->salt, st->opslimit, st->memkib);
  if (e)
    goto out;
  randombytes_buf(st->derive, 32);
  key = kh_secure_alloc(32);
  if (!key) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  randombytes_buf(key, 32);
  /* derive.sealed first: root-1.sealed is what marks a complete region. */
  e = write_sealed(st, DERIVE_FILE, KH_ROOTKEY_SEALED_DERIVE, 1, st->derive);
  if (!e) e = write_sealed(st, "root-1.sealed", KH_ROOTKEY_SEALED_ROOT, 1, key);
  if (e)
    goto out;
  st->keys[1] = key;
  key = NULL;
  e = kh_rootkey_backend_new(&file_ops, st, region_id, 1, out);
  st = NULL; /* owned (or freed) by backend_new */
out:
  state_free(st);
  kh_secure_free(key);
  free(present);
  return e;
}

kh_err kh_rootkey_file_open(const char *dir, const char *region_id,
                            const kh_secret *operator_secret, kh_rootkey **out)
{
  kh_err e = KH_OK;
  file_state *st = NULL;
  bool *present = NULL, have_kek = false;
  char *name = NULL;
  uint32_t max = 0;
  *out = NULL;

  e = check_args(dir, region_id, operator_secret);
  if (!e) e = kh_crypto_init();
  if (e)
    goto out;
  present = calloc(KH_ROOTKEY_VERSIONS_MAX + 1, sizeof *present);
  if (!present) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  e = scan_dir(dir, present, &max);
  if (e)
    goto out;
  if (!max) {
    e = kh_seterr(KH_ERR_NOTFOUND, "%s holds no root-<v>.sealed", dir);
    goto out;
  }
  e = state_new(dir, region_id, &st);
  if (e)
    goto out;
  e = open_file(st, DERIVE_FILE, KH_ROOTKEY_SEALED_DERIVE, 1, operator_secret, &have_kek,
                st->derive);
  if (e)
    goto out;
  /* Fail closed: one bad file and nothing opens, so a damaged or planted
   * newest version cannot silently become "current". */
  for (uint32_t v = 1; v <= max; v++) {
    if (!present[v])
      continue;
    st->keys[v] = kh_secure_alloc(32);
    name = root_file_name(v);
    if (!st->keys[v] || !name) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    e = open_file(st, name, KH_ROOTKEY_SEALED_ROOT, v, operator_secret, &have_kek,
                  st->keys[v]);
    if (e)
      goto out;
    free(name);
    name = NULL;
  }
  e = kh_rootkey_backend_new(&file_ops, st, region_id, max, out);
  st = NULL;
out:
  state_free(st);
  free(present);
  free(name);
  return e;
}
