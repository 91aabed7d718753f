/* The region key service: state in <region>/kms/, the log in <region>/log/,
 * group-committed log appends, and the key-service wrap (standard
 * protection): wrap, unwrap, destroy, rotate (docs/threat-model.md). */
#include "kms/kms_internal.h"
#include "common/err.h"
#include "common/fault.h"
#include "common/fsutil.h"
#include "common/hex.h"
#include "common/wire.h"
#include "crypto/crypto.h"
#include "log/log_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEVICE_SIG_CTX "keyhold-device-request v1\n"

/* ---- small helpers --------------------------------------------------------- */

bool kh_kms_account_ok(const char *a)
{
  size_t n = a ? strlen(a) : 0;
  if (n == 0 || n > KH_LOG_ACCOUNT_MAX)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f')))
      return false;
  return true;
}

static bool region_ok(const char *s)
{
  size_t n = strlen(s);
  if (n == 0 || n > 63)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
      return false;
  return true;
}

char *kh_kms_path(const kh_kms *k, const char *sub, const char *account, const char *ext)
{
  char name[512];
  if (account)
    snprintf(name, sizeof name, "%s/%s%s%s", sub, account, ext ? "." : "", ext ? ext : "");
  else
    snprintf(name, sizeof name, "%s", sub);
  return kh_path_join(k->kms_dir, name);
}

static bool instance_ok(const char *s)
{
  size_t n = s ? strlen(s) : 0;
  if (n != KH_REGION_INSTANCE_HEX)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

static char *env_dup(const char *name)
{
  const char *v = getenv(name);
  return v && *v ? strdup(v) : NULL;
}

/* ---- kms/config ------------------------------------------------------------ */

kh_err kh_kms_config_parse(const uint8_t *p, size_t n, kh_kms_config *c)
{
  memset(c, 0, sizeof *c);
  if (n > KH_KMS_CONFIG_MAX)
    return kh_seterr(KH_ERR_FORMAT, "kms config larger than %d bytes", KH_KMS_CONFIG_MAX);
  if (n == 0 || p[n - 1] != '\n')
    return kh_seterr(KH_ERR_FORMAT, "kms config must end in a newline");
  bool first = true, have_region = false, have_backend = false, have_origin = false;
  bool have_req = false;
  size_t off = 0;
  while (off < n) {
    const uint8_t *nl = memchr(p + off, '\n', n - off);
    size_t len = (size_t)(nl - (p + off));
    char line[KH_KMS_PATH_MAX + 32];
    if (len >= sizeof line)
      return kh_seterr(KH_ERR_FORMAT, "kms config: line too long");
    memcpy(line, p + off, len);
    line[len] = '\0';
    off += len + 1;
    for (size_t i = 0; i < len; i++)
      if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
        return kh_seterr(KH_ERR_FORMAT, "kms config: control character");
    if (first) {
      if (strcmp(line, "keyhold-kms v1"))
        return kh_seterr(KH_ERR_FORMAT, "kms config: first line is not 'keyhold-kms v1'");
      first = false;
      continue;
    }
    char *sp = strchr(line, ' ');
    if (!sp || sp == line || !sp[1])
      return kh_seterr(KH_ERR_FORMAT, "kms config: expected 'key value'");
    *sp = '\0';
    const char *key = line, *val = sp + 1;
    if (!strcmp(key, "region") && !have_region) {
      if (!region_ok(val))
        return kh_seterr(KH_ERR_FORMAT, "kms config: bad region id");
      snprintf(c->region, sizeof c->region, "%s", val);
      have_region = true;
    } else if (!strcmp(key, "instance") && !c->instance[0]) {
      if (!instance_ok(val))
        return kh_seterr(KH_ERR_FORMAT, "kms config: bad region instance id");
      snprintf(c->instance, sizeof c->instance, "%s", val);
    } else if (!strcmp(key, "backend") && !have_backend) {
      if (!strcmp(val, "file"))
        c->backend = KH_ROOTKEY_BACKEND_FILE;
      else if (!strcmp(val, "pkcs11"))
        c->backend = KH_ROOTKEY_BACKEND_PKCS11;
      else
        return kh_seterr(KH_ERR_FORMAT, "kms config: unknown backend");
      have_backend = true;
    } else if (!strcmp(key, "pkcs11-label") && !c->pkcs11_label[0]) {
      if (!kh_rootkey_name_ok(val))
        return kh_seterr(KH_ERR_FORMAT, "kms config: bad pkcs11 key label");
      snprintf(c->pkcs11_label, sizeof c->pkcs11_label, "%s", val);
    } else if (!strcmp(key, "origin") && !have_origin) {
      if (strlen(val) > KH_CHECKPOINT_ORIGIN_MAX || !kh_note_name_ok(val, strlen(val)))
        return kh_seterr(KH_ERR_FORMAT, "kms config: bad log origin");
      snprintf(c->origin, sizeof c->origin, "%s", val);
      have_origin = true;
    } else if (!strcmp(key, "witnesses-required") && !have_req) {
      char *end;
      errno = 0;
      unsigned long v = strtoul(val, &end, 10);
      if (*end || errno || v > KH_KMS_WITNESS_MAX || val[0] < '0' || val[0] > '9' ||
          (val[0] == '0' && val[1]))
        return kh_seterr(KH_ERR_FORMAT, "kms config: bad witnesses-required");
      c->witnesses_required = (unsigned)v;
      have_req = true;
    } else if (!strcmp(key, "witness")) {
      if (c->nwitnesses == KH_KMS_WITNESS_MAX || val[0] != '/' ||
          strlen(val) >= KH_KMS_PATH_MAX)
        return kh_seterr(KH_ERR_FORMAT, "kms config: bad or too many witness directories");
      snprintf(c->witness[c->nwitnesses++], KH_KMS_PATH_MAX, "%s", val);
    } else {
      return kh_seterr(KH_ERR_FORMAT, "kms config: unknown or repeated key '%s'", key);
    }
  }
  if (first || !have_region || !have_backend || !have_origin)
    return kh_seterr(KH_ERR_FORMAT, "kms config: region, backend and origin are required");
  if (c->backend == KH_ROOTKEY_BACKEND_PKCS11 && !c->pkcs11_label[0])
    return kh_seterr(KH_ERR_FORMAT, "kms config: pkcs11 backend without pkcs11-label");
  if (c->backend == KH_ROOTKEY_BACKEND_FILE && c->pkcs11_label[0])
    return kh_seterr(KH_ERR_FORMAT, "kms config: pkcs11-label with the file backend");
  if (c->witnesses_required > c->nwitnesses)
    return kh_seterr(KH_ERR_FORMAT, "kms config: more witnesses required than configured");
  return KH_OK;
}

kh_err kh_kms_config_format(const kh_kms_config *c, kh_buf *out)
{
  kh_err e = kh_buf_printf(out, "keyhold-kms v1\nregion %s\n", c->region);
  if (!e && c->instance[0])
    e = kh_buf_printf(out, "instance %s\n", c->instance);
  if (!e)
    e = kh_buf_printf(out, "backend %s\n",
                      c->backend == KH_ROOTKEY_BACKEND_PKCS11 ? "pkcs11" : "file");
  if (!e && c->backend == KH_ROOTKEY_BACKEND_PKCS11)
    e = kh_buf_printf(out, "pkcs11-label %s\n", c->pkcs11_label);
  if (!e)
    e = kh_buf_printf(out, "origin %s\nwitnesses-required %u\n", c->origin,
                      c->witnesses_required);
  for (size_t i = 0; !e && i < c->nwitnesses; i++)
    e = kh_buf_printf(out, "witness %s\n", c->witness[i]);
  return e;
}

/* ---- the operator secret --------------------------------------------------- */

static char *operator_secret_path(const char *region_id, const char *instance)
{
  char *p = env_dup("KEYHOLD_OPERATOR_SECRET_FILE");
  if (p)
    return p;
  char name[64 + 1 + KH_REGION_INSTANCE_HEX + 8];
  /* keyed by the region's instance id: two regions with one short id on
   * one machine never share a secret (regions made before the instance id
   * keep <region>.secret) */
  if (instance && *instance)
    snprintf(name, sizeof name, "%s-%s.secret", region_id, instance);
  else
    snprintf(name, sizeof name, "%s.secret", region_id);
  char *dir = env_dup("KEYHOLD_OPERATOR_DIR");
  if (!dir) {
    const char *home = getenv("HOME");
    char *base = kh_path_join(home && *home ? home : "/tmp", ".config/keyhold/operator");
    dir = base;
  }
  p = dir ? kh_path_join(dir, name) : NULL;
  free(dir);
  return p;
}

kh_err kh_kms_operator_secret(const char *region_id, const char *instance, bool create,
                              kh_secret **out)
{
  *out = NULL;
  kh_err e = kh_crypto_init();
  if (e)
    return e;
  char *path = operator_secret_path(region_id, instance);
  if (!path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  struct stat st;
  if (create && stat(path, &st) != 0 && errno == ENOENT) {
    uint8_t raw[32];
    char b64[64];
    randombytes_buf(raw, sizeof raw);
    kh_b64_encode(b64, raw, sizeof raw);
    size_t l = strlen(b64);
    b64[l++] = '\n';
    char *slash = strrchr(path, '/');
    if (slash && slash != path) {
      *slash = '\0';
      e = kh_mkdirs(path, 0700);
      *slash = '/';
    }
    if (!e)
      e = kh_write_file_atomic(path, b64, l, 0600, true);
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(b64, sizeof b64);
    if (e && e != KH_ERR_EXISTS) {
      e = kh_adderr(e, "creating the operator secret %s", path);
      goto out;
    }
  }
  e = kh_secret_from_file(path, out);
  if (e)
    e = kh_adderr(e, "the key service's operator secret (KEYHOLD_OPERATOR_SECRET_FILE)");
out:
  free(path);
  return e;
}

/* ---- root key backends ------------------------------------------------------- */

static kh_err open_rootkey(const kh_kms_config *c, const char *kms_dir, bool create,
                           kh_rootkey **out)
{
  kh_err e;
  kh_secret *s = NULL;
  char *dir = NULL, *module = NULL, *token = NULL, *pinf = NULL;
  if (c->backend == KH_ROOTKEY_BACKEND_FILE) {
    if ((e = kh_kms_operator_secret(c->region, c->instance, create, &s)))
      goto out;
    if (!(dir = kh_path_join(kms_dir, "root"))) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    e = create ? kh_rootkey_file_create(dir, c->region, s, out)
               : kh_rootkey_file_open(dir, c->region, s, out);
  } else {
    module = env_dup("KEYHOLD_PKCS11_MODULE");
    token = env_dup("KEYHOLD_PKCS11_TOKEN");
    pinf = env_dup("KEYHOLD_PKCS11_PIN_FILE");
    if (!module || !token || !pinf) {
      e = kh_seterr(KH_ERR_INVAL, "the PKCS#11 backend needs KEYHOLD_PKCS11_MODULE, "
                                  "KEYHOLD_PKCS11_TOKEN and KEYHOLD_PKCS11_PIN_FILE");
      goto out;
    }
    if ((e = kh_secret_from_file(pinf, &s)))
      goto out;
    e = kh_rootkey_pkcs11_open(module, token, s, c->pkcs11_label, create, out);
  }
out:
  kh_secret_free(s);
  free(dir);
  free(module);
  free(token);
  free(pinf);
  return e;
}

/* ---- the log key --------------------------------------------------------------- */

kh_err kh_logkey_parse(const uint8_t *p, size_t n, kh_logkey_file *f)
{
  kh_rd r;
  kh_rd_init(&r, p, n);
  const uint8_t *magic = kh_rd_bytes(&r, 8);
  uint16_t nl = kh_rd_u16(&r);
  const uint8_t *name = kh_rd_bytes(&r, nl);
  uint16_t bl = kh_rd_u16(&r);
  const uint8_t *blob = kh_rd_bytes(&r, bl);
  if (!kh_rd_done(&r) || memcmp(magic, KH_LOGKEY_MAGIC, 8) || nl == 0 ||
      nl > KH_CHECKPOINT_ORIGIN_MAX || bl == 0 || bl > KH_ROOTKEY_BLOB_MAX ||
      !kh_note_name_ok((const char *)name, nl))
    return kh_seterr(KH_ERR_FORMAT, "malformed log key file");
  f->name = (const char *)name;
  f->namelen = nl;
  f->blob = blob;
  f->bloblen = bl;
  return KH_OK;
}

static kh_err logkey_ad(kh_buf *ad, const char *region, const char *name)
{
  return kh_ad_build(ad, region, "", "log-key", (const uint8_t *)name, strlen(name));
}

/* "PRIVATE+KEY+name+hash+base64(0x01||seed)" in sodium memory. */
static kh_err signer_string(const char *name, const uint8_t *seed, char **out)
{
  uint8_t pk[32], *sk = kh_secure_alloc(64), *raw = kh_secure_alloc(33);
  size_t cap = strlen(name) + 128;
  char *s = (char *)kh_secure_alloc(cap), *b64 = (char *)kh_secure_alloc(64);
  kh_err e = KH_OK;
  if (!sk || !raw || !s || !b64) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  crypto_sign_seed_keypair(pk, sk, seed);
  uint32_t h = kh_note_key_hash(name, strlen(name), KH_NOTE_ALG_ED25519, pk, 32);
  raw[0] = KH_NOTE_ALG_ED25519;
  memcpy(raw + 1, seed, 32);
  kh_b64_encode(b64, raw, 33);
  snprintf(s, cap, "PRIVATE+KEY+%s+%08x+%s", name, (unsigned)h, b64);
  *out = s;
  s = NULL;
out:
  kh_secure_free(sk);
  kh_secure_free(raw);
  kh_secure_free(s);
  kh_secure_free(b64);
  return e;
}

static kh_err write_logkey(const char *path, const char *region, const char *name,
                           kh_rootkey *rk, const uint8_t *seed)
{
  kh_buf f, ad;
  kh_buf_init(&f, 4096);
  kh_buf_init(&ad, 1024);
  size_t nl = strlen(name);
  kh_err e = logkey_ad(&ad, region, name);
  if (!e) e = kh_buf_append(&f, KH_LOGKEY_MAGIC, 8);
  if (!e) e = kh_buf_put_u16(&f, (uint16_t)nl);
  if (!e) e = kh_buf_append(&f, name, nl);
  size_t at = f.len;
  if (!e) e = kh_buf_put_u16(&f, 0);
  if (!e) e = kh_rootkey_wrap(rk, seed, ad.data, ad.len, &f);
  if (!e) {
    size_t bl = f.len - at - 2;
    f.data[at] = (uint8_t)bl;
    f.data[at + 1] = (uint8_t)(bl >> 8);
    e = kh_write_file_atomic(path, f.data, f.len, 0600, false);
  }
  kh_buf_release(&f);
  kh_buf_release(&ad);
  return e;
}

/* Unwrap the log key: *skey is the signer string in sodium memory. */
static kh_err read_logkey(const char *path, const char *region, kh_rootkey *rk, char **skey,
                          char *name, size_t namecap)
{
  uint8_t *data = NULL, *seed = kh_secure_alloc(32);
  size_t len = 0;
  kh_buf ad;
  kh_buf_init(&ad, 1024);
  kh_logkey_file f;
  kh_err e = seed ? kh_read_file(path, 4096, &data, &len)
                  : kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  if (!e)
    e = kh_logkey_parse(data, len, &f);
  if (!e && f.namelen >= namecap)
    e = kh_seterr(KH_ERR_FORMAT, "log key name too long");
  if (!e) {
    memcpy(name, f.name, f.namelen);
    name[f.namelen] = '\0';
    e = logkey_ad(&ad, region, name);
  }
  if (!e && (e = kh_rootkey_unwrap(rk, f.blob, f.bloblen, ad.data, ad.len, seed)))
    e = kh_adderr(e, "the log key %s does not open under the root key", path);
  if (!e)
    e = signer_string(name, seed, skey);
  kh_secure_free(seed);
  kh_buf_release(&ad);
  free(data);
  return e;
}

/* ---- the key service's own record of its log (kms/log-state) ----------------------- */

static kh_err logstate_mac(kh_kms *k, const uint8_t *p, size_t n, uint8_t mac[32])
{
  static const uint8_t ctx[] = "kms-log-state";
  uint8_t *mk = kh_kms_secure_alloc(k, 32);
  if (!mk)
    return kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  kh_err e = kh_rootkey_derive(k->rk, ctx, sizeof ctx - 1, mk);
  if (!e)
    kh_mac(mac, mk, p, n);
  kh_secure_free(mk);
  return e;
}

static kh_err logstate_create(kh_kms *k, const char *p, const uint8_t b[KH_LOGSTATE_BYTES])
{
  char *tmp = kh_kms_path(k, "log-state.tmp", NULL, NULL);
  kh_err e = KH_OK;
  int fd = -1;
  if (!tmp)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || pwrite(fd, b, KH_LOGSTATE_BYTES, 0) != KH_LOGSTATE_BYTES || fsync(fd) != 0 ||
      rename(tmp, p) != 0) {
    e = kh_seterr(kh_errno_code(errno), "write %s: %s", p, strerror(errno));
    if (fd >= 0)
      close(fd);
    unlink(tmp);
    goto out;
  }
  if ((e = kh_fsync_dir(k->kms_dir))) {
    close(fd);
    goto out;
  }
  k->lsfd = fd; /* the same inode, now named log-state */
out:
  free(tmp);
  return e;
}

/* Remember (size, root) as the last checkpoint this service signed.  The
 * first write creates the file atomically (fsync'd, directory too); later
 * ones overwrite its 80 bytes in place and fdatasync (one small data write
 * per batch, no metadata; a record one batch behind after a crash is fine:
 * the log then proves consistent with it). */
static kh_err logstate_write(kh_kms *k, uint64_t size, const kh_log_hash root)
{
  uint8_t b[KH_LOGSTATE_BYTES];
  memcpy(b, KH_LOGSTATE_MAGIC, 8);
  kh_le64_put(b + 8, size);
  memcpy(b + 16, root, 32);
  char *p = kh_kms_path(k, "log-state", NULL, NULL);
  kh_err e = p ? logstate_mac(k, b, 48, b + 48) : kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (e)
    goto out;
  if (kh_fault_kms_hit(k, KH_FAULT_WRITE)) {
    e = kh_seterr(KH_ERR_IO, "write %s: input/output error (injected)", p);
    goto out;
  }
  if (k->lsfd < 0) {
    /* created under a fixed temporary name (the kms lock is held): no
     * random name, so opening a region draws nothing from the RNG */
    e = logstate_create(k, p, b);
    goto out;
  }
  if (pwrite(k->lsfd, b, sizeof b, 0) != (ssize_t)sizeof b || fdatasync(k->lsfd) != 0)
    e = kh_seterr(kh_errno_code(errno), "write %s: %s", p, strerror(errno));
out:
  free(p);
  return e;
}

static kh_err rollback(kh_kms *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kh_err rollback(kh_kms *k, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(k->rollback_detail, sizeof k->rollback_detail, fmt, ap);
  va_end(ap);
  k->rolled_back = true;
  return kh_seterr(KH_ERR_ROLLBACK, "%s", k->rollback_detail);
}

/* Does the log (its checkpoint: size, root) extend what the service signed
 * last?  Called on open; KH_ERR_ROLLBACK (sticky) if not. */
static kh_err logstate_check(kh_kms *k)
{
  char *p = kh_kms_path(k, "log-state", NULL, NULL);
  uint8_t *data = NULL, mac[32];
  size_t len = 0;
  uint64_t size = kh_tlog_size(k->log);
  kh_log_hash root, proof[KH_LOG_PROOF_MAX];
  size_t plen = 0;
  kh_tlog_root(k->log, root);
  kh_err e = p ? kh_read_file(p, 4096, &data, &len) : kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (e == KH_ERR_NOTFOUND) {
    /* a region made before kms/log-state existed: trust the log on first use */
    e = logstate_write(k, size, root);
    goto out;
  }
  if (e)
    goto out;
  if (len != KH_LOGSTATE_BYTES || memcmp(data, KH_LOGSTATE_MAGIC, 8)) {
    e = kh_seterr(KH_ERR_FORMAT, "%s is malformed", p);
    goto out;
  }
  if ((k->lsfd = open(p, O_RDWR | O_CLOEXEC)) < 0) {
    e = kh_seterr(kh_errno_code(errno), "open %s: %s", p, strerror(errno));
    goto out;
  }
  if ((e = logstate_mac(k, data, 48, mac)))
    goto out;
  if (sodium_memcmp(mac, data + 48, 32) != 0) {
    e = kh_seterr(KH_ERR_AUTH, "%s does not authenticate under the root key", p);
    goto out;
  }
  uint64_t was = kh_le64_get(data + 8);
  const uint8_t *wroot = data + 16;
  if (size < was) {
    e = rollback(k, "the log has %llu entries but this key service signed a checkpoint of "
                 "%llu: the log was rolled back", (unsigned long long)size,
                 (unsigned long long)was);
  } else if (size == was && sodium_memcmp(root, wroot, 32) != 0) {
    e = rollback(k, "the log's checkpoint of size %llu has another root than the one this "
                 "key service signed: the log was replaced", (unsigned long long)size);
  } else if (size > was && (kh_tlog_consistency_proof(k->log, was, size, proof, &plen) ||
                            kh_log_verify_consistency(was, size, proof, plen, wroot, root))) {
    e = rollback(k, "the log of size %llu does not extend the checkpoint of size %llu this key "
                 "service signed: the log was forked", (unsigned long long)size,
                 (unsigned long long)was);
  } else if (size > was) {
    e = logstate_write(k, size, root); /* a crash after an append, before its record */
  }
  if (e == KH_ERR_ROLLBACK)
    e = KH_OK; /* the handle opens (status, audit) but logs and releases nothing */
out:
  free(data);
  free(p);
  return e;
}

/* Note which file holds the checkpoint we just checked or wrote. */
static void cp_remember(kh_kms *k)
{
  char *p = kh_path_join(k->log_dir, "checkpoint");
  struct stat st;
  k->cp_stat.ino = 0;
  if (p && stat(p, &st) == 0) {
    k->cp_stat.dev = (unsigned long long)st.st_dev;
    k->cp_stat.ino = (unsigned long long)st.st_ino;
    k->cp_stat.size = (unsigned long long)st.st_size;
    k->cp_stat.mtime_s = (long long)st.st_mtim.tv_sec;
    k->cp_stat.mtime_ns = (long long)st.st_mtim.tv_nsec;
  }
  free(p);
}

/* Before an append: was the log's checkpoint replaced underneath us since
 * our last append?  Cheap when the file is the one we wrote. */
static kh_err log_fresh(kh_kms *k)
{
  if (k->rolled_back)
    return kh_seterr(KH_ERR_ROLLBACK, "%s; nothing is logged or released until an operator "
                     "resolves it (docs/kms-rootkey.md)", k->rollback_detail);
  char *p = kh_path_join(k->log_dir, "checkpoint");
  uint8_t *data = NULL;
  size_t len = 0;
  struct stat st;
  kh_checkpoint c;
  kh_log_hash root;
  kh_err e = KH_OK;
  if (!p)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (stat(p, &st) == 0 && k->cp_stat.ino && (unsigned long long)st.st_dev == k->cp_stat.dev &&
      (unsigned long long)st.st_ino == k->cp_stat.ino &&
      (unsigned long long)st.st_size == k->cp_stat.size &&
      (long long)st.st_mtim.tv_sec == k->cp_stat.mtime_s &&
      (long long)st.st_mtim.tv_nsec == k->cp_stat.mtime_ns)
    goto out;
  if ((e = kh_read_file(p, KH_NOTE_MAX, &data, &len)) ||
      (e = kh_checkpoint_open(data, len, k->verifier, &c, NULL))) {
    /* fail closed for this batch; only a readable, signed, older or other
     * checkpoint is a rollback (a read error may pass) */
    e = kh_adderr(KH_ERR_LOG, "the log's checkpoint cannot be read back (%s), nothing "
                  "released", kh_strerror(e));
    goto out;
  }
  kh_tlog_root(k->log, root);
  if (c.size != kh_tlog_size(k->log) || sodium_memcmp(c.root, root, 32) != 0) {
    e = rollback(k, "the log's checkpoint was replaced underneath the key service (size %llu, "
                 "the service signed %llu)", (unsigned long long)c.size,
                 (unsigned long long)kh_tlog_size(k->log));
    e = kh_seterr(e, "%s; nothing is logged or released until an operator resolves it "
                  "(docs/kms-rootkey.md)", k->rollback_detail);
    goto out;
  }
  cp_remember(k);
out:
  free(data);
  free(p);
  return e;
}

/* ---- create / open ---------------------------------------------------------------- */

bool kh_kms_exists(const char *region_path)
{
  char *p = kh_path_join(region_path, "kms/config");
  struct stat st;
  bool r = p && stat(p, &st) == 0;
  free(p);
  return r;
}

kh_err kh_kms_create(const char *region_path, const char *region_id)
{
  uint8_t raw[KH_REGION_INSTANCE_HEX / 2];
  char instance[KH_REGION_INSTANCE_HEX + 1];
  kh_err e = kh_crypto_init();
  if (e)
    return e;
  randombytes_buf(raw, sizeof raw);
  kh_hex_encode(instance, raw, sizeof raw);
  return kh_kms_create_instance(region_path, region_id, instance);
}

kh_err kh_kms_create_instance(const char *region_path, const char *region_id,
                              const char *instance)
{
  kh_err e = kh_crypto_init();
  if (e)
    return e;
  if (!region_ok(region_id))
    return kh_seterr(KH_ERR_INVAL, "bad region id '%s'", region_id);
  if (!instance_ok(instance))
    return kh_seterr(KH_ERR_INVAL, "bad region instance id");
  kh_kms_config c;
  memset(&c, 0, sizeof c);
  snprintf(c.region, sizeof c.region, "%s", region_id);
  snprintf(c.instance, sizeof c.instance, "%s", instance);
  /* the origin names this region instance, not only its short id: two
   * regions called "local" have two logs (docs/log.md §3.2) */
  snprintf(c.origin, sizeof c.origin, "keyhold.local/%s/%s/log", region_id, instance);
  char *kms = kh_path_join(region_path, "kms"), *log = kh_path_join(region_path, "log");
  char *cfgp = kh_path_join(region_path, "kms/config");
  char *lkp = kh_path_join(region_path, "kms/log.key");
  char *vkp = kh_path_join(region_path, "log/verifier");
  char *module = env_dup("KEYHOLD_PKCS11_MODULE"), *vkey = NULL, *skey = NULL;
  kh_secret *ks = NULL;
  kh_rootkey *rk = NULL;
  uint8_t *seed = kh_secure_alloc(32);
  kh_buf cfg;
  kh_buf_init(&cfg, KH_KMS_CONFIG_MAX);
  bool made = false;
  struct stat st;
  if (!kms || !log || !cfgp || !lkp || !vkp || !seed) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (stat(cfgp, &st) == 0) {
    e = kh_seterr(KH_ERR_EXISTS, "%s exists: the region already has a key service", cfgp);
    goto out;
  }
  if (stat(kms, &st) == 0 || stat(log, &st) == 0) {
    e = kh_seterr(KH_ERR_EXISTS, "%s or %s exists without a key service config", kms, log);
    goto out;
  }
  made = true;
  if ((e = kh_mkdirs(kms, 0700)) || (e = kh_mkdirs(log, 0755)))
    goto out;
  if (module) {
    c.backend = KH_ROOTKEY_BACKEND_PKCS11;
    /* the default label is keyed by the instance like the log origin and
     * the operator secret: two regions with one short id on one token
     * must not share a root key (8 + 23 + 1 + 32 = 64, the label limit) */
    char *label = env_dup("KEYHOLD_PKCS11_KEY_LABEL");
    if (label)
      snprintf(c.pkcs11_label, sizeof c.pkcs11_label, "%s", label);
    else if (c.instance[0])
      snprintf(c.pkcs11_label, sizeof c.pkcs11_label, "keyhold-%.23s-%.32s", region_id,
               c.instance);
    else
      snprintf(c.pkcs11_label, sizeof c.pkcs11_label, "keyhold-%.56s", region_id);
    free(label);
  } else {
    c.backend = KH_ROOTKEY_BACKEND_FILE;
  }
  if ((e = open_rootkey(&c, kms, true, &rk)))
    goto out;
  /* the log key: a fresh Ed25519 seed, kept only wrapped by the root key */
  randombytes_buf(seed, 32);
  if ((e = signer_string(c.origin, seed, &skey)) ||
      (e = write_logkey(lkp, c.region, c.origin, rk, seed)))
    goto out;
  {
    kh_note_signer *s = NULL;
    if ((e = kh_note_signer_new(skey, &s)) || (e = kh_note_signer_vkey(s, &vkey))) {
      kh_note_signer_free(s);
      goto out;
    }
    kh_note_signer_free(s);
  }
  if ((e = kh_tlog_create(log, c.origin, skey)))
    goto out;
  {
    size_t vl = strlen(vkey);
    char *line = malloc(vl + 2);
    if (!line) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    memcpy(line, vkey, vl);
    line[vl] = '\n';
    e = kh_write_file_atomic(vkp, line, vl + 1, 0644, false);
    free(line);
    if (e)
      goto out;
  }
  /* the config comes last: its presence says the key service is complete */
  if ((e = kh_kms_config_format(&c, &cfg)) ||
      (e = kh_write_file_atomic(cfgp, cfg.data, cfg.len, 0600, true)))
    goto out;
  made = false;
out:
  if (made && e) {
    kh_err keep = e;
    kh_remove_tree(kms);
    kh_remove_tree(log);
    e = keep;
  }
  kh_rootkey_free(rk);
  kh_secret_free(ks);
  kh_secure_free(seed);
  kh_secure_free(skey);
  kh_buf_release(&cfg);
  free(kms);
  free(log);
  free(cfgp);
  free(lkp);
  free(vkp);
  free(module);
  free(vkey);
  return e;
}

kh_err kh_kms_open(const char *region_path, kh_kms **out)
{
  *out = NULL;
  kh_err e = kh_crypto_init();
  if (e)
    return e;
  kh_kms *k = calloc(1, sizeof *k);
  uint8_t *data = NULL;
  size_t len = 0;
  char *cfgp = NULL, *lockp = NULL, *lkp = NULL, *skey = NULL;
  char name[KH_CHECKPOINT_ORIGIN_MAX + 1];
  if (!k)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  k->lockfd = -1;
  k->lsfd = -1;
  pthread_mutex_init(&k->mu, NULL);
  pthread_cond_init(&k->cv, NULL);
  pthread_mutex_init(&k->opmu, NULL);
  pthread_mutex_init(&k->cmu, NULL);
  pthread_mutex_init(&k->smu, NULL);
  pthread_mutex_init(&k->tmu, NULL);
  for (size_t i = 0; i < KH_KMS_ACCT_LOCKS; i++) {
    pthread_rwlock_init(&k->acct[i], NULL);
    pthread_mutex_init(&k->esc[i], NULL);
  }
  if ((k->slab = kh_secure_alloc((size_t)KH_KMS_SLOTS * 32)) &&
      (k->free_slots = malloc(KH_KMS_SLOTS * sizeof *k->free_slots)))
    for (uint32_t i = 0; i < KH_KMS_SLOTS; i++)
      k->free_slots[k->nfree++] = KH_KMS_SLOTS - 1 - i;
  if (!(k->region_path = strdup(region_path)) ||
      !(k->kms_dir = kh_path_join(region_path, "kms")) ||
      !(k->log_dir = kh_path_join(region_path, "log")) ||
      !(cfgp = kh_path_join(k->kms_dir, "config")) ||
      !(lockp = kh_path_join(k->kms_dir, "lock")) ||
      !(lkp = kh_path_join(k->kms_dir, "log.key"))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  e = kh_read_file(cfgp, KH_KMS_CONFIG_MAX, &data, &len);
  if (e == KH_ERR_NOTFOUND)
    e = kh_seterr(KH_ERR_NOTFOUND, "region %s has no key service (no kms/config)",
                  region_path);
  if (e || (e = kh_kms_config_parse(data, len, &k->cfg)))
    goto out;
  k->lockfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (k->lockfd < 0) {
    e = kh_seterr(kh_errno_code(errno), "open %s: %s", lockp, strerror(errno));
    goto out;
  }
  if (flock(k->lockfd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
    /* a region server (keyholdd) holds its key service for as long as it
     * runs: waiting would be forever; its operator socket is the way in */
    char *sock = kh_path_join(region_path, "server/admin.sock");
    struct stat sst;
    bool served = sock && stat(sock, &sst) == 0 && S_ISSOCK(sst.st_mode);
    free(sock);
    if (served) {
      e = kh_seterr(KH_ERR_LOCKED, "a region server (keyholdd) holds the key service of %s "
                    "while it runs: use keyholdd admin --dir %s", region_path, region_path);
      goto out;
    }
  }
  while (flock(k->lockfd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      e = kh_seterr(KH_ERR_IO, "lock %s: %s", lockp, strerror(errno));
      goto out;
    }
  }
  if ((e = open_rootkey(&k->cfg, k->kms_dir, false, &k->rk)) ||
      (e = read_logkey(lkp, k->cfg.region, k->rk, &skey, name, sizeof name)))
    goto out;
  if (strcmp(name, k->cfg.origin)) {
    e = kh_seterr(KH_ERR_FORMAT, "log key name '%s' is not the log origin '%s'", name,
                  k->cfg.origin);
    goto out;
  }
  {
    kh_note_signer *s = NULL;
    e = kh_note_signer_new(skey, &s);
    if (!e)
      e = kh_note_signer_vkey(s, &k->vkey);
    kh_note_signer_free(s);
    if (e)
      goto out;
  }
  if ((e = kh_tlog_open(k->log_dir, k->cfg.origin, skey, NULL, &k->log)))
    goto out;
  if ((e = kh_note_verifier_new(k->vkey, &k->verifier)) || (e = logstate_check(k)))
    goto out;
  if ((e = kh_provider_dir_new(region_path, &k->prov)))
    goto out;
  *out = k;
  k = NULL;
out:
  kh_secure_free(skey);
  free(data);
  free(cfgp);
  free(lockp);
  free(lkp);
  kh_kms_free(k);
  return e;
}

static void cache_clear(kh_kms *k, const char *account);
static void mtree_free(kh_kms_mtree *m);

void kh_kms_free(kh_kms *k)
{
  if (!k)
    return;
  cache_clear(k, NULL);
  mtree_free(&k->mt);
  pthread_mutex_destroy(&k->cmu);
  kh_secure_free(k->slab);
  free(k->free_slots);
  pthread_mutex_destroy(&k->smu);
  kh_tlog_free(k->log);
  kh_rootkey_free(k->rk);
  kh_provider_free(k->prov);
  for (size_t i = 0; i < KH_KMS_WITNESS_MAX; i++)
    kh_witness_free(k->witness[i]);
  if (k->lsfd >= 0)
    close(k->lsfd);
  if (k->lockfd >= 0)
    close(k->lockfd);
  pthread_mutex_destroy(&k->mu);
  pthread_cond_destroy(&k->cv);
  pthread_mutex_destroy(&k->opmu);
  pthread_mutex_destroy(&k->tmu);
  for (size_t i = 0; i < KH_KMS_ACCT_LOCKS; i++) {
    pthread_rwlock_destroy(&k->acct[i]);
    pthread_mutex_destroy(&k->esc[i]);
  }
  kh_note_verifier_free(k->verifier);
  free(k->vkey);
  free(k->region_path);
  free(k->kms_dir);
  free(k->log_dir);
  free(k);
}

const char *kh_kms_region_id(const kh_kms *k) { return k->cfg.region; }
const char *kh_kms_log_origin(const kh_kms *k) { return k->cfg.origin; }
const char *kh_kms_log_vkey(const kh_kms *k) { return k->vkey; }
const char *kh_kms_rootkey_id(const kh_kms *k) { return kh_rootkey_id(k->rk); }

void kh_kms_test_fail_appends(kh_kms *k, unsigned n)
{
  pthread_mutex_lock(&k->mu);
  k->fail_appends = n;
  pthread_mutex_unlock(&k->mu);
}

void kh_kms_stats(const kh_kms *k, uint64_t *batches, uint64_t *entries)
{
  kh_kms *m = (kh_kms *)k;
  pthread_mutex_lock(&m->mu);
  *batches = k->batches;
  *entries = k->entries;
  pthread_mutex_unlock(&m->mu);
}

/* ---- test hooks: crash points and fault injection -------------------------------- */

void kh_kms_test_fault(kh_kms *k, int kind, unsigned n)
{
  if (kind != KH_FAULT_ALLOC && kind != KH_FAULT_WRITE)
    return;
  pthread_mutex_lock(&k->tmu);
  k->fault_n[kind] = n;
  pthread_mutex_unlock(&k->tmu);
}

bool kh_fault_kms_hit(kh_kms *k, kh_fault_kind kind)
{
  bool hit = false;
  pthread_mutex_lock(&k->tmu);
  if (k->fault_n[kind] && --k->fault_n[kind] == 0)
    hit = true;
  pthread_mutex_unlock(&k->tmu);
  return hit;
}

void kh_kms_test_hook(kh_kms *k, void (*fn)(void *ctx, const char *point), void *ctx)
{
  pthread_mutex_lock(&k->tmu);
  k->hook = fn;
  k->hook_ctx = ctx;
  pthread_mutex_unlock(&k->tmu);
}

void kh_kms_point(kh_kms *k, const char *point)
{
  pthread_mutex_lock(&k->tmu);
  void (*fn)(void *, const char *) = k->hook;
  void *ctx = k->hook_ctx;
  pthread_mutex_unlock(&k->tmu);
  if (fn)
    fn(ctx, point);
  /* the same points for whole-process tests (KH_FAULT="kms.<point>:1:kill",
   * lib/common/fault.h): an event, never a failure */
  char name[96];
  snprintf(name, sizeof name, "kms.%s", point);
  (void)kh_fault_point(name);
}

void *kh_kms_malloc(kh_kms *k, size_t n)
{
  return kh_fault_kms_hit(k, KH_FAULT_ALLOC) ? NULL : malloc(n);
}

void *kh_kms_secure_alloc(kh_kms *k, size_t n)
{
  return kh_fault_kms_hit(k, KH_FAULT_ALLOC) ? NULL : kh_secure_alloc(n);
}

kh_err kh_kms_write_file(kh_kms *k, const char *path, const void *data, size_t len)
{
  if (kh_fault_kms_hit(k, KH_FAULT_WRITE))
    return kh_seterr(KH_ERR_IO, "write %s: input/output error (injected)", path);
  return kh_write_file_atomic(path, data, len, 0600, false);
}

kh_err kh_kms_unlink(kh_kms *k, const char *path)
{
  if (kh_fault_kms_hit(k, KH_FAULT_WRITE))
    return kh_seterr(KH_ERR_IO, "unlink %s: input/output error (injected)", path);
  if (unlink(path) != 0) {
    if (errno == ENOENT)
      return KH_OK;
    return kh_seterr(kh_errno_code(errno), "unlink %s: %s", path, strerror(errno));
  }
  char *slash = strrchr(path, '/');
  kh_err e = KH_OK;
  if (slash) {
    *slash = '\0';
    e = kh_fsync_dir(path);
    *slash = '/';
  }
  return e;
}

static kh_err prov_put(kh_kms *k, const char *name, const kh_buf *obj, bool excl)
{
  if (kh_fault_kms_hit(k, KH_FAULT_WRITE))
    return kh_seterr(KH_ERR_IO, "put %s: input/output error (injected)", name);
  return kh_provider_put(k->prov, name, obj->data, obj->len, excl);
}

static kh_err prov_del(kh_kms *k, const char *name)
{
  if (kh_fault_kms_hit(k, KH_FAULT_WRITE))
    return kh_seterr(KH_ERR_IO, "delete %s: input/output error (injected)", name);
  return kh_provider_del(k->prov, name);
}

static size_t acct_stripe(const char *account)
{
  uint64_t h = 1469598103934665603ull;
  for (const char *p = account; *p; p++)
    h = (h ^ (uint8_t)*p) * 1099511628211ull;
  return (size_t)(h % KH_KMS_ACCT_LOCKS);
}

pthread_rwlock_t *kh_kms_acct_lock(kh_kms *k, const char *account)
{
  return &k->acct[acct_stripe(account)];
}

pthread_mutex_t *kh_kms_escrow_lock(kh_kms *k, const char *account)
{
  return &k->esc[acct_stripe(account)];
}

static void rk_id(kh_kms *k, char *out, size_t n)
{
  kh_rootkey_id_copy(k->rk, out, n);
}

/* A 32-byte secret for a release: a slab slot, else kh_secure_alloc. */
static uint8_t *key_alloc(kh_kms *k, kh_kms_release *r)
{
  pthread_mutex_lock(&k->smu);
  if (k->nfree) {
    r->slot_ = k->free_slots[--k->nfree];
    r->pool_ = k;
  }
  pthread_mutex_unlock(&k->smu);
  if (kh_fault_kms_hit(k, KH_FAULT_ALLOC)) {
    if (r->pool_) {
      pthread_mutex_lock(&k->smu);
      k->free_slots[k->nfree++] = r->slot_;
      pthread_mutex_unlock(&k->smu);
    }
    r->pool_ = NULL;
    return NULL;
  }
  return r->pool_ ? k->slab + (size_t)r->slot_ * 32 : kh_secure_alloc(32);
}

void kh_kms_release_clear(kh_kms_release *r)
{
  if (!r)
    return;
  if (r->pool_) {
    kh_kms *k = r->pool_;
    sodium_memzero(r->key, 32);
    pthread_mutex_lock(&k->smu);
    k->free_slots[k->nfree++] = r->slot_;
    pthread_mutex_unlock(&k->smu);
  } else {
    kh_secure_free(r->key);
  }
  free(r->checkpoint);
  free(r->entry);
  memset(r, 0, sizeof *r);
}

/* ---- group commit ------------------------------------------------------------------ */

struct kh_kms_pending {
  const char *entry;
  size_t len;
  kh_kms_release *rel;   /* NULL: no proof wanted */
  bool done;
  kh_err err;
  char detail[256];
  uint64_t index;
  kh_kms_pending *next;
};

/* ---- in-memory Merkle nodes for fast proofs --------------------------------------- */

static void mtree_free(kh_kms_mtree *m)
{
  for (int l = 0; l < 64; l++)
    free(m->lv[l]);
  memset(m, 0, sizeof *m);
}

static bool mtree_add(kh_kms_mtree *m, const kh_log_hash leaf)
{
  const uint8_t *h = leaf;
  kh_log_hash up;
  for (int l = 0; l < 64; l++) {
    if (m->n[l] == m->cap[l]) {
      uint64_t nc = m->cap[l] ? 2 * m->cap[l] : 256;
      void *p = realloc(m->lv[l], nc * sizeof(kh_log_hash));
      if (!p)
        return false;
      m->lv[l] = p;
      m->cap[l] = nc;
    }
    memcpy(m->lv[l][m->n[l]++], h, KH_LOG_HASH);
    if (m->n[l] % 2)
      break;
    kh_log_node_hash(up, m->lv[l][m->n[l] - 2], m->lv[l][m->n[l] - 1]);
    h = up;
  }
  return true;
}

static kh_err mtree_subtree(void *ctx, unsigned k, uint64_t j, kh_log_hash out)
{
  kh_kms_mtree *m = ctx;
  if (k >= 64 || j >= m->n[k])
    return kh_seterr(KH_ERR_INVAL, "subtree beyond the log");
  memcpy(out, m->lv[k][j], KH_LOG_HASH);
  return KH_OK;
}

static kh_err mtree_each(void *ctx, uint64_t index, const uint8_t *e, size_t len)
{
  kh_log_hash h;
  kh_log_leaf_hash(h, e, len);
  return mtree_add(ctx, h) ? KH_OK : kh_seterr(KH_ERR_NOMEM, "out of memory");
}

/* Called by the committing thread before an append. */
static void mtree_build(kh_kms *k)
{
  kh_kms_mtree *m = &k->mt;
  if (m->built || m->disabled)
    return;
  if (kh_tlog_size(k->log) > KH_KMS_MTREE_MAX ||
      kh_tlog_verify(k->log, mtree_each, m) != KH_OK || m->n[0] != kh_tlog_size(k->log)) {
    mtree_free(m);
    m->disabled = true;
    return;
  }
  m->built = true;
}

static kh_err inclusion_proof(kh_kms *k, uint64_t index, uint64_t size,
                              kh_log_hash proof[KH_LOG_PROOF_MAX], size_t *plen)
{
  if (k->mt.built && k->mt.n[0] == kh_tlog_size(k->log)) {
    kh_mt_src s = {mtree_subtree, &k->mt};
    return kh_mt_inclusion(&s, index, size, proof, plen);
  }
  return kh_tlog_inclusion_proof(k->log, index, size, proof, plen);
}

static kh_err witness_cosign(kh_kms *k, char **note, size_t *nlen, unsigned *got)
{
  *got = 0;
  size_t cl;
  const char *cp = kh_tlog_checkpoint(k->log, &cl);
  kh_buf b;
  kh_buf_init(&b, KH_NOTE_MAX);
  kh_err e = kh_buf_append(&b, cp, cl);
  for (size_t i = 0; !e && i < k->cfg.nwitnesses; i++) {
    char *out = NULL;
    size_t ol = 0;
    if (!k->witness[i] && kh_witness_open(k->cfg.witness[i], &k->witness[i]))
      continue; /* an unreachable witness just does not count */
    if (kh_witness_cosign_dir(k->witness[i], k->log_dir, (uint64_t)time(NULL), &out, &ol)) {
      kh_witness_free(k->witness[i]);
      k->witness[i] = NULL;
      continue;
    }
    if (ol > cl && !memcmp(out, cp, cl)) {
      e = kh_buf_append(&b, out + cl, ol - cl);
      (*got)++;
    }
    free(out);
  }
  if (!e) e = kh_buf_put_u8(&b, 0);
  if (!e) {
    *nlen = b.len - 1;
    *note = (char *)kh_buf_detach(&b, NULL);
  }
  kh_buf_release(&b);
  return e;
}

/* The leader's work: append the batch, get cosignatures, fill in proofs.
 * Only one thread runs this at a time (k->committing). */
static void commit_batch(kh_kms *k, kh_kms_pending *batch, bool fail)
{
  size_t n = 0;
  for (kh_kms_pending *p = batch; p; p = p->next)
    n++;
  const void **ents = kh_kms_malloc(k, n * sizeof *ents);
  size_t *lens = kh_kms_malloc(k, n * sizeof *lens), i = 0;
  uint64_t first = 0;
  kh_err e = KH_OK;
  char *note = NULL;
  size_t nlen = 0;
  unsigned cosigs = 0;
  if (!ents || !lens) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (kh_kms_pending *p = batch; p; p = p->next, i++) {
    ents[i] = p->entry;
    lens[i] = p->len;
  }
  if (fail || kh_fault_kms_hit(k, KH_FAULT_WRITE)) {
    e = kh_seterr(KH_ERR_LOG, "log append failed (injected)");
    goto out;
  }
  if ((e = log_fresh(k)))
    goto out;
  mtree_build(k);
  if ((e = kh_tlog_append(k->log, ents, lens, n, &first))) {
    e = kh_seterr(KH_ERR_LOG, "the log could not be written, nothing released: %s: %s",
                  kh_strerror(e), kh_errdetail());
    goto out;
  }
  {
    /* our own record of what we signed, and of the file we wrote it to */
    kh_log_hash nroot;
    kh_tlog_root(k->log, nroot);
    k->cp_stat.ino = 0;
    if ((e = logstate_write(k, kh_tlog_size(k->log), nroot))) {
      e = kh_seterr(KH_ERR_LOG, "the key service could not record its checkpoint, nothing "
                    "released: %s", kh_errdetail());
      goto out;
    }
    cp_remember(k);
  }
  if (k->mt.built) {
    for (i = 0; i < n; i++) {
      kh_log_hash h;
      kh_log_leaf_hash(h, ents[i], lens[i]);
      if (!mtree_add(&k->mt, h)) {
        mtree_free(&k->mt);
        k->mt.disabled = true;
        break;
      }
    }
  }
  if ((e = witness_cosign(k, &note, &nlen, &cosigs)))
    goto out;
  if (cosigs < k->cfg.witnesses_required) {
    e = kh_seterr(KH_ERR_DENIED, "only %u of %u required witness cosignatures", cosigs,
                  k->cfg.witnesses_required);
    goto out;
  }
  uint64_t size = kh_tlog_size(k->log);
  kh_log_hash root;
  kh_tlog_root(k->log, root);
  i = 0;
  for (kh_kms_pending *p = batch; p; p = p->next, i++) {
    p->index = first + i;
    p->err = KH_OK;
    if (!p->rel)
      continue;
    kh_kms_release *r = p->rel;
    r->index = p->index;
    r->size = size;
    memcpy(r->root, root, KH_LOG_HASH);
    kh_log_leaf_hash(r->leaf, p->entry, p->len);
    r->cosignatures = cosigs;
    kh_err pe = inclusion_proof(k, p->index, size, r->proof, &r->plen);
    if (!pe && (r->checkpoint = malloc(nlen + 1))) {
      memcpy(r->checkpoint, note, nlen + 1);
      r->checkpoint_len = nlen;
    } else if (!pe) {
      pe = kh_seterr(KH_ERR_NOMEM, "out of memory");
    }
    if (pe) {
      p->err = pe;
      snprintf(p->detail, sizeof p->detail, "%s", kh_errdetail());
    }
  }
  k->batches++;
  k->entries += n;
out:
  if (e) {
    for (kh_kms_pending *p = batch; p; p = p->next) {
      p->err = e;
      snprintf(p->detail, sizeof p->detail, "%s", kh_errdetail());
    }
  }
  free(note);
  free(ents);
  free(lens);
}

static kh_err log_submit(kh_kms *k, const char *entry, size_t len, kh_kms_release *rel,
                         uint64_t *index)
{
  kh_kms_pending me;
  memset(&me, 0, sizeof me);
  me.entry = entry;
  me.len = len;
  me.rel = rel;
  pthread_mutex_lock(&k->mu);
  if (k->qtail)
    k->qtail->next = &me;
  else
    k->qhead = &me;
  k->qtail = &me;
  while (!me.done) {
    if (!k->committing) {
      /* become the leader: take everything queued so far */
      kh_kms_pending *batch = k->qhead;
      k->qhead = k->qtail = NULL;
      k->committing = true;
      bool fail = false;
      if (k->fail_appends) {
        k->fail_appends--;
        fail = true;
      }
      pthread_mutex_unlock(&k->mu);
      commit_batch(k, batch, fail);
      pthread_mutex_lock(&k->mu);
      for (kh_kms_pending *p = batch, *nx; p; p = nx) {
        nx = p->next;
        p->done = true;
      }
      k->committing = false;
      pthread_cond_broadcast(&k->cv);
    } else {
      pthread_cond_wait(&k->cv, &k->mu);
    }
  }
  pthread_mutex_unlock(&k->mu);
  if (index)
    *index = me.index;
  if (me.err)
    return kh_seterr(me.err, "%s", me.detail);
  return KH_OK;
}

kh_err kh_kms_log_text(kh_kms *k, const char *entry, size_t len, uint64_t *index)
{
  return log_submit(k, entry, len, NULL, index);
}

/* The entry of a network device's request (kh_kms_presigned): checked to
 * describe exactly this operation and to carry the device's signature, then
 * given its device line.  *out is the text to append (malloc'd). */
static kh_err presigned_entry(kh_kms *k, kh_log_op op, const char *account, const char *key,
                              bool has_attempt, const kh_kms_presigned *ps, char **out,
                              size_t *olen)
{
  kh_log_entry *en = kh_kms_malloc(k, sizeof *en);
  char *canon = NULL, want[KH_LOG_TEXT_MAX + 1], b64[100];
  size_t clen = 0;
  kh_buf msg;
  kh_buf_init(&msg, KH_LOG_ENTRY_MAX + 64);
  kh_err e;
  *out = NULL;
  if (!en) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (!ps->entry || !ps->sig || !ps->pk || !ps->device_id || strlen(ps->device_id) != 32 ||
      !kh_kms_account_ok(ps->device_id) || ps->len > KH_LOG_ENTRY_MAX) {
    e = kh_seterr(KH_ERR_INVAL, "a signed request needs its entry, device id, signature "
                  "and key");
    goto out;
  }
  /* the text must be exactly what the service would write: canonical */
  if ((e = kh_log_entry_parse(ps->entry, ps->len, en)) ||
      (e = kh_log_entry_format(en, &canon, &clen))) {
    e = kh_adderr(KH_ERR_DENIED, "the signed entry");
    goto out;
  }
  if (clen != ps->len || memcmp(canon, ps->entry, clen) != 0) {
    e = kh_seterr(KH_ERR_DENIED, "the signed entry is not in canonical form");
    goto out;
  }
  snprintf(want, sizeof want, "device:%s", ps->device_id);
  int64_t now = (int64_t)time(NULL), dt = now - en->time;
  const char *bad = en->op != op ? "op"
                    : strcmp(en->region, k->cfg.region) ? "region"
                    : strcmp(en->account, account) ? "account"
                    : strcmp(en->key, key) ? "key"
                    : strcmp(en->requester, want) ? "requester"
                    : en->device[0] ? "device"
                    : en->has_attempt != has_attempt || en->result ? "attempt or result"
                    : (dt > KH_KMS_PRESIGNED_WINDOW || dt < -KH_KMS_PRESIGNED_WINDOW) ? "time"
                    : NULL;
  if (bad) {
    e = kh_seterr(KH_ERR_DENIED, "the signed entry's %s does not match the operation "
                  "(prepare it again)", bad);
    goto out;
  }
  if ((e = kh_buf_append(&msg, DEVICE_SIG_CTX, strlen(DEVICE_SIG_CTX))) ||
      (e = kh_buf_append(&msg, ps->entry, ps->len)))
    goto out;
  if (crypto_sign_verify_detached(ps->sig, msg.data, msg.len, ps->pk) != 0) {
    e = kh_seterr(KH_ERR_AUTH, "the device's signature over the entry does not verify");
    goto out;
  }
  kh_b64_encode(b64, ps->sig, 64);
  snprintf(en->device, sizeof en->device, "%s:%s", ps->device_id, b64);
  e = kh_log_entry_format(en, out, olen);
out:
  kh_buf_release(&msg);
  free(canon);
  free(en);
  return e;
}

kh_err kh_kms_log_presigned(kh_kms *k, kh_log_op op, const char *account, const char *key,
                            const kh_kms_presigned *ps, kh_kms_release *rel)
{
  char *text = NULL;
  size_t len = 0;
  kh_err e = presigned_entry(k, op, account, key, false, ps, &text, &len);
  if (!e)
    e = log_submit(k, text, len, rel, NULL);
  if (!e && rel) {
    rel->entry = text;
    rel->entry_len = len;
    text = NULL;
  }
  free(text);
  return e;
}

kh_err kh_kms_log_either(kh_kms *k, kh_log_op op, const char *account, const char *key,
                         const kh_kms_request *rq, const kh_kms_presigned *ps,
                         kh_kms_release *rel)
{
  return ps ? kh_kms_log_presigned(k, op, account, key, ps, rel)
            : kh_kms_log(k, op, account, key, rq, false, 0, rel);
}

kh_err kh_kms_log(kh_kms *k, kh_log_op op, const char *account, const char *key,
                  const kh_kms_request *rq, bool has_attempt, uint32_t attempt,
                  kh_kms_release *rel)
{

  kh_log_entry *en = kh_kms_malloc(k, sizeof *en);
  char *text = NULL, *signed_text = NULL;
  size_t len = 0, slen = 0;
  kh_buf msg;
  kh_buf_init(&msg, KH_LOG_ENTRY_MAX + 64);
  kh_err e = KH_OK;
  if (!en) {
    kh_buf_release(&msg);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  memset(en, 0, sizeof *en);
  if (!rq || !rq->requester || !rq->reason) {
    e = kh_seterr(KH_ERR_INVAL, "a key service request needs a requester and a reason");
    goto out;
  }
  en->time = (int64_t)time(NULL);
  snprintf(en->region, sizeof en->region, "%s", k->cfg.region);
  snprintf(en->account, sizeof en->account, "%s", account);
  en->op = op;
  snprintf(en->key, sizeof en->key, "%s", key);
  if (strlen(rq->requester) > KH_LOG_TEXT_MAX || strlen(rq->reason) > KH_LOG_TEXT_MAX) {
    e = kh_seterr(KH_ERR_INVAL, "requester or reason longer than %d bytes", KH_LOG_TEXT_MAX);
    goto out;
  }
  snprintf(en->requester, sizeof en->requester, "%s", rq->requester);
  snprintf(en->reason, sizeof en->reason, "%s", rq->reason);
  en->has_attempt = has_attempt;
  en->attempt = attempt;
  if ((e = kh_log_entry_format(en, &text, &len)))
    goto out;
  if (rq->device_id) {
    /* the device signs the entry as it will read (without the device field) */
    uint8_t sig[64];
    char b64[100];
    if (!rq->sign || strlen(rq->device_id) != 32 || !kh_kms_account_ok(rq->device_id)) {
      e = kh_seterr(KH_ERR_INVAL, "a device request needs a 32-hex device id and a signer");
      goto out;
    }
    if ((e = kh_buf_append(&msg, DEVICE_SIG_CTX, strlen(DEVICE_SIG_CTX))) ||
        (e = kh_buf_append(&msg, text, len)) ||
        (e = rq->sign(rq->sign_ctx, msg.data, msg.len, sig)))
      goto out;
    kh_b64_encode(b64, sig, 64);
    snprintf(en->device, sizeof en->device, "%s:%s", rq->device_id, b64);
    if ((e = kh_log_entry_format(en, &signed_text, &slen)))
      goto out;
    free(text);
    text = signed_text;
    len = slen;
    signed_text = NULL;
  }
  uint64_t idx;
  e = log_submit(k, text, len, rel, &idx);
  if (!e && rel) {
    rel->entry = text;
    rel->entry_len = len;
    text = NULL;
  }
out:
  kh_buf_release(&msg);
  free(text);
  free(signed_text);
  free(en);
  return e;
}

kh_err kh_kms_verify_device_entry(const kh_log_entry *e, const char *device_id,
                                  const uint8_t pk[32])
{
  const char *colon = strchr(e->device, ':');
  if (!colon || (size_t)(colon - e->device) != 32 || strncmp(e->device, device_id, 32))
    return kh_seterr(KH_ERR_AUTH, "not signed by device %s", device_id);
  uint8_t sig[64];
  size_t sl = 0;
  if (kh_b64_decode(sig, sizeof sig, &sl, colon + 1, strlen(colon + 1)) || sl != 64)
    return kh_seterr(KH_ERR_AUTH, "malformed device signature");
  kh_log_entry copy = *e;
  copy.device[0] = '\0';
  char *text = NULL;
  size_t len = 0;
  kh_buf msg;
  kh_buf_init(&msg, KH_LOG_ENTRY_MAX + 64);
  kh_err r = kh_log_entry_format(&copy, &text, &len);
  if (!r && !(r = kh_buf_append(&msg, DEVICE_SIG_CTX, strlen(DEVICE_SIG_CTX))))
    r = kh_buf_append(&msg, text, len);
  if (!r && crypto_sign_verify_detached(sig, msg.data, msg.len, pk) != 0)
    r = kh_seterr(KH_ERR_AUTH, "device signature does not verify");
  free(text);
  kh_buf_release(&msg);
  return r;
}

/* ---- the key-service wrap (kind 2) ---------------------------------------------------- */

kh_err kh_kms_wrapobj_parse(const uint8_t *p, size_t n, kh_kms_wrapobj *w)
{
  kh_rd r;
  kh_rd_init(&r, p, n);
  const uint8_t *magic = kh_rd_bytes(&r, 6);
  uint8_t kind = kh_rd_u8(&r), cipher = kh_rd_u8(&r);
  uint16_t bl = kh_rd_u16(&r);
  const uint8_t *blob = kh_rd_bytes(&r, bl);
  if (!kh_rd_done(&r) || memcmp(magic, KH_KMS_WRAP_MAGIC, 6) || kind != KH_KMS_WRAP_KIND ||
      bl == 0 || bl > KH_ROOTKEY_BLOB_MAX || (cipher != 1 && cipher != 2))
    return kh_seterr(KH_ERR_FORMAT, "malformed key-service wrap");
  w->cipher = cipher;
  w->blob = blob;
  w->bloblen = bl;
  return KH_OK;
}

static kh_err wrap_ad(kh_buf *ad, const char *region, const char *account,
                      const uint8_t wid[16], const uint8_t *hdr)
{
  kh_err e = kh_ad_build(ad, region, account, "kms-wrap", wid, 16);
  return e ? e : kh_buf_append(ad, hdr, 8);
}

/* Every key object of an account (no cap: an account may hold any number of
 * passcode wraps, and the kind-2 one must never hide behind them). */
typedef struct wrap_find {
  char (*names)[33];
  size_t n, cap;
  bool oom;
  kh_kms *k;
} wrap_find;

static int collect_keys(const char *name, uint64_t size, void *ctx)
{
  wrap_find *w = ctx;
  if (strlen(name) != 32)
    return 0;
  if (w->n == w->cap) {
    size_t nc = w->cap ? 2 * w->cap : 16;
    void *p = kh_kms_malloc(w->k, nc * sizeof *w->names);
    if (!p) {
      w->oom = true;
      return 1;
    }
    if (w->n)
      memcpy(p, w->names, w->n * sizeof *w->names);
    free(w->names);
    w->names = p;
    w->cap = nc;
  }
  snprintf(w->names[w->n++], sizeof w->names[0], "%s", name);
  (void)size;
  return 0;
}

/* Find the account's kind-2 object: *obj receives it, wid its id.
 * KH_ERR_NOTFOUND if there is none; any other failure to list or read an
 * object is returned (never taken for "no wrap"). */
static kh_err find_wrap(kh_kms *k, const char *account, kh_buf *obj, uint8_t wid[16])
{
  char prefix[200], name[300];
  wrap_find wf;
  memset(&wf, 0, sizeof wf);
  wf.k = k;
  snprintf(prefix, sizeof prefix, "accounts/%s/keys", account);
  kh_err e = kh_provider_list(k->prov, prefix, collect_keys, &wf);
  if (!e && wf.oom)
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (e)
    goto out;
  e = kh_seterr(KH_ERR_NOTFOUND, "account %s has no key-service wrap", account);
  for (size_t i = 0; i < wf.n; i++) {
    uint8_t id[16];
    if (kh_hex_decode(id, 16, wf.names[i], 32))
      continue;
    snprintf(name, sizeof name, "%s/%s", prefix, wf.names[i]);
    kh_buf_reset(obj);
    kh_err ge = kh_provider_get(k->prov, name, 0, 7, obj);
    if (ge == KH_ERR_NOTFOUND || ge == KH_ERR_FORMAT)
      continue; /* removed while we listed, or too short to be a key object */
    if (ge) {
      e = ge;
      goto out;
    }
    if (obj->len < 7 || memcmp(obj->data, KH_KMS_WRAP_MAGIC, 6) ||
        obj->data[6] != KH_KMS_WRAP_KIND)
      continue;
    kh_buf_reset(obj);
    if ((e = kh_provider_read(k->prov, name, KH_OBJMAX_KEY, obj)))
      goto out;
    memcpy(wid, id, 16);
    e = KH_OK;
    break;
  }
out:
  free(wf.names);
  return e;
}


static void key_id(char *out, size_t n, const char *kind, const uint8_t id[16], const char *rk)
{
  char hex[33];
  kh_hex_encode(hex, id, 16);
  if (snprintf(out, n, "%s/%s@%s", kind, hex, rk) >= (int)n)
    out[n - 1] = '\0'; /* root-key ids are short; a long one is cut, not overrun */
}

static kh_err build_wrapobj(kh_kms *k, const char *account, const uint8_t wid[16],
                            const uint8_t key[32], int cipher, kh_buf *obj)
{
  uint8_t hdr[8];
  memcpy(hdr, KH_KMS_WRAP_MAGIC, 6);
  hdr[6] = KH_KMS_WRAP_KIND;
  hdr[7] = (uint8_t)cipher;
  kh_buf ad;
  kh_buf_init(&ad, 1024);
  kh_buf_reset(obj);
  kh_err e = wrap_ad(&ad, k->cfg.region, account, wid, hdr);
  if (!e) e = kh_buf_append(obj, hdr, 8);
  if (!e) e = kh_buf_put_u16(obj, 0);
  if (!e) e = kh_rootkey_wrap(k->rk, key, ad.data, ad.len, obj);
  if (!e) {
    size_t bl = obj->len - KH_KMS_WRAP_HEADER;
    obj->data[8] = (uint8_t)bl;
    obj->data[9] = (uint8_t)(bl >> 8);
  }
  kh_buf_release(&ad);
  return e;
}

kh_err kh_kms_wrap(kh_kms *k, const char *account, const uint8_t key[32], int cipher,
                   const kh_kms_request *rq)
{
  if (!kh_kms_account_ok(account))
    return kh_seterr(KH_ERR_INVAL, "bad account id");
  if (cipher != 1 && cipher != 2)
    return kh_seterr(KH_ERR_INVAL, "unknown cipher %d", cipher);
  pthread_mutex_lock(&k->opmu);
  pthread_rwlock_t *al = kh_kms_acct_lock(k, account);
  pthread_rwlock_wrlock(al);
  kh_buf obj;
  kh_buf_init(&obj, 4096);
  uint8_t wid[16];
  char kid[KH_LOG_KEY_MAX + 1], name[300], hex[33], rid[96];
  kh_err e;
  if (kh_kms_destroyed(k, account)) {
    e = kh_seterr(KH_ERR_STATE, "account %s is end-to-end protected: the key service may "
                  "not hold its key", account);
    goto out;
  }
  e = find_wrap(k, account, &obj, wid);
  if (e == KH_OK) {
    e = kh_seterr(KH_ERR_EXISTS, "account %s already has a key-service wrap", account);
    goto out;
  }
  if (e != KH_ERR_NOTFOUND)
    goto out;
  randombytes_buf(wid, 16);
  if ((e = build_wrapobj(k, account, wid, key, cipher, &obj)))
    goto out;
  rk_id(k, rid, sizeof rid);
  key_id(kid, sizeof kid, "kms-wrap", wid, rid);
  /* log first: a wrap the log does not show must not exist */
  if ((e = kh_kms_log(k, KH_LOG_OP_WRAP, account, kid, rq, false, 0, NULL)))
    goto out;
  kh_hex_encode(hex, wid, 16);
  snprintf(name, sizeof name, "accounts/%s/keys/%s", account, hex);
  e = prov_put(k, name, &obj, true);
out:
  kh_buf_release(&obj);
  pthread_rwlock_unlock(al);
  pthread_mutex_unlock(&k->opmu);
  return e;
}

kh_err kh_kms_prepare(kh_kms *k, kh_log_op op, const char *account, const char *device_id,
                      const char *reason, char **entry, size_t *len)
{
  *entry = NULL;
  *len = 0;
  if (!kh_kms_account_ok(account) || !device_id || strlen(device_id) != 32 ||
      !kh_kms_account_ok(device_id) || !reason)
    return kh_seterr(KH_ERR_INVAL, "bad account, device id or reason");
  if (op != KH_LOG_OP_UNWRAP && op != KH_LOG_OP_DESTROY && op != KH_LOG_OP_ESCROW_ENABLE)
    return kh_seterr(KH_ERR_INVAL, "operation %d is not taken from a device", (int)op);
  kh_log_entry *en = kh_kms_malloc(k, sizeof *en);
  kh_buf obj;
  kh_buf_init(&obj, 4096);
  uint8_t wid[16];
  char rid[96];
  kh_err e = KH_OK;
  if (!en)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  memset(en, 0, sizeof *en);
  pthread_rwlock_t *al = kh_kms_acct_lock(k, account);
  pthread_rwlock_rdlock(al);
  if (kh_kms_destroyed(k, account)) {
    e = kh_seterr(KH_ERR_STATE, "account %s is end-to-end protected", account);
    goto out;
  }
  if (op == KH_LOG_OP_ESCROW_ENABLE) {
    uint8_t r[16];
    char hex[33];
    randombytes_buf(r, 16);
    kh_hex_encode(hex, r, 16);
    snprintf(en->key, sizeof en->key, "escrow/%s", hex);
  } else {
    /* the key id the operation will log (unwrap / destroy) */
    kh_err fe = find_wrap(k, account, &obj, wid);
    rk_id(k, rid, sizeof rid);
    if (fe == KH_OK) {
      key_id(en->key, sizeof en->key, "kms-wrap", wid, rid);
    } else if (fe == KH_ERR_NOTFOUND && op == KH_LOG_OP_DESTROY) {
      snprintf(en->key, sizeof en->key, "kms-wrap/none@%s", rid);
    } else if (fe == KH_ERR_NOTFOUND) {
      e = kh_seterr(KH_ERR_STATE, "account %s has no key-service wrap", account);
      goto out;
    } else {
      e = fe;
      goto out;
    }
  }
  if (strlen(reason) > KH_LOG_TEXT_MAX) {
    e = kh_seterr(KH_ERR_INVAL, "reason longer than %d bytes", KH_LOG_TEXT_MAX);
    goto out;
  }
  en->time = (int64_t)time(NULL);
  snprintf(en->region, sizeof en->region, "%s", k->cfg.region);
  snprintf(en->account, sizeof en->account, "%s", account);
  en->op = op;
  snprintf(en->requester, sizeof en->requester, "device:%s", device_id);
  snprintf(en->reason, sizeof en->reason, "%s", reason);
  e = kh_log_entry_format(en, entry, len);
out:
  pthread_rwlock_unlock(al);
  kh_buf_release(&obj);
  free(en);
  return e;
}

kh_err kh_kms_has_wrap(kh_kms *k, const char *account, bool *has)
{
  *has = false;
  if (!kh_kms_account_ok(account))
    return kh_seterr(KH_ERR_INVAL, "bad account id");
  pthread_rwlock_t *al = kh_kms_acct_lock(k, account);
  pthread_rwlock_rdlock(al);
  kh_buf obj;
  kh_buf_init(&obj, 4096);
  uint8_t wid[16];
  kh_err e = kh_kms_destroyed(k, account) ? KH_ERR_NOTFOUND : find_wrap(k, account, &obj, wid);
  kh_buf_release(&obj);
  pthread_rwlock_unlock(al);
  if (e == KH_ERR_NOTFOUND)
    return KH_OK;
  *has = !e;
  return e;
}

/* ---- the unwrapped key cache ---------------------------------------------------------- */

static size_t cache_bucket(const char *account)
{
  uint64_t h = 1469598103934665603ull;
  for (const char *p = account; *p; p++)
    h = (h ^ (uint8_t)*p) * 1099511628211ull;
  return (size_t)(h % KH_KMS_CACHE_BUCKETS);
}

/* Drop account's entry, or every entry when account is NULL. */
static void cache_clear(kh_kms *k, const char *account)
{
  pthread_mutex_lock(&k->cmu);
  for (size_t b = 0; b < KH_KMS_CACHE_BUCKETS; b++) {
    if (account && b != cache_bucket(account))
      continue;
    for (kh_kms_cached **pp = &k->cache[b]; *pp;) {
      kh_kms_cached *c = *pp;
      if (account && strcmp(c->account, account)) {
        pp = &c->next;
        continue;
      }
      *pp = c->next;
      kh_secure_free(c->key);
      free(c);
      k->ncached--;
    }
  }
  pthread_mutex_unlock(&k->cmu);
}

/* Copy the cached key of account into key; false if not cached. */
static bool cache_get(kh_kms *k, const char *account, uint8_t *key, int *cipher, char *kid)
{
  bool hit = false;
  pthread_mutex_lock(&k->cmu);
  for (kh_kms_cached *c = k->cache[cache_bucket(account)]; c; c = c->next)
    if (!strcmp(c->account, account)) {
      memcpy(key, c->key, 32);
      *cipher = c->cipher;
      memcpy(kid, c->kid, sizeof c->kid);
      hit = true;
      break;
    }
  pthread_mutex_unlock(&k->cmu);
  return hit;
}

static void cache_put(kh_kms *k, const char *account, const uint8_t *key, int cipher,
                      const char *kid)
{
  kh_kms_cached *c = calloc(1, sizeof *c);
  if (!c || !(c->key = kh_secure_alloc(32))) {
    free(c);
    return; /* the cache is only an optimisation */
  }
  snprintf(c->account, sizeof c->account, "%s", account);
  snprintf(c->kid, sizeof c->kid, "%s", kid);
  c->cipher = cipher;
  memcpy(c->key, key, 32);
  size_t b = cache_bucket(account);
  pthread_mutex_lock(&k->cmu);
  bool dup = false;
  for (kh_kms_cached *x = k->cache[b]; x; x = x->next)
    dup = dup || !strcmp(x->account, account);
  if (!dup && k->ncached < KH_KMS_CACHE_MAX) {
    c->next = k->cache[b];
    k->cache[b] = c;
    k->ncached++;
    c = NULL;
  }
  pthread_mutex_unlock(&k->cmu);
  if (c) {
    kh_secure_free(c->key);
    free(c);
  }
}

static kh_err unwrap(kh_kms *k, const char *account, const kh_kms_request *rq,
                     const kh_kms_presigned *ps, kh_kms_release *out)
{
  memset(out, 0, sizeof *out);
  if (!kh_kms_account_ok(account))
    return kh_seterr(KH_ERR_INVAL, "bad account id");
  kh_buf obj, ad;
  kh_buf_init(&obj, 4096);
  kh_buf_init(&ad, 1024);
  /* shared with other releases of the account, exclusive with its destroy:
   * the destroyed check, the log entry and the release form one step */
  pthread_rwlock_t *al = kh_kms_acct_lock(k, account);
  pthread_rwlock_rdlock(al);
  uint8_t wid[16], *key = key_alloc(k, out);
  char kid[KH_LOG_KEY_MAX + 1], rid[96];
  kh_kms_wrapobj w;
  kh_err e;
  if (!key) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  if (kh_kms_destroyed(k, account)) {
    e = kh_seterr(KH_ERR_STATE, "account %s is end-to-end protected: the key service "
                  "holds no key for it", account);
    goto out;
  }
  int cipher = 0;
  if (!cache_get(k, account, key, &cipher, kid)) {
    e = find_wrap(k, account, &obj, wid);
    if (e == KH_ERR_NOTFOUND)
      e = kh_seterr(KH_ERR_STATE, "account %s has no key-service wrap (end-to-end "
                    "protection, or no such account)", account);
    if (e)
      goto out;
    if ((e = kh_kms_wrapobj_parse(obj.data, obj.len, &w)) ||
        (e = wrap_ad(&ad, k->cfg.region, account, wid, obj.data)) ||
        (e = kh_rootkey_unwrap(k->rk, w.blob, w.bloblen, ad.data, ad.len, key))) {
      e = kh_adderr(e == KH_ERR_FORMAT ? KH_ERR_AUTH : e, "key-service wrap of %s", account);
      goto out;
    }
    cipher = w.cipher;
    rk_id(k, rid, sizeof rid);
    key_id(kid, sizeof kid, "kms-wrap", wid, rid);
    cache_put(k, account, key, cipher, kid);
  }
  kh_kms_point(k, "unwrap-before-log");
  /* fail closed: the key leaves only after the entry is durable and signed */
  if ((e = kh_kms_log_either(k, KH_LOG_OP_UNWRAP, account, kid, rq, ps, out)))
    goto out;
  kh_kms_point(k, "unwrap-logged");
  out->key = key;
  out->cipher = cipher;
  key = NULL;
out:
  if (key) {
    out->key = key; /* so that clear gives it back */
    key = NULL;
  }
  if (e)
    kh_kms_release_clear(out);
  pthread_rwlock_unlock(al);
  kh_buf_release(&obj);
  kh_buf_release(&ad);
  return e;
}

kh_err kh_kms_unwrap(kh_kms *k, const char *account, const kh_kms_request *rq,
                     kh_kms_release *out)
{
  return unwrap(k, account, rq, NULL, out);
}

kh_err kh_kms_unwrap_signed(kh_kms *k, const char *account, const kh_kms_presigned *ps,
                            kh_kms_release *out)
{
  return unwrap(k, account, NULL, ps, out);
}

static kh_err destroy(kh_kms *k, const char *account, const kh_kms_request *rq,
                      const kh_kms_presigned *ps)
{
  if (!kh_kms_account_ok(account))
    return kh_seterr(KH_ERR_INVAL, "bad account id");
  /* exclusive with every release of the account: an unwrap either logged
   * its entry before this destroy's, or sees the tombstone and fails */
  pthread_rwlock_t *al = kh_kms_acct_lock(k, account);
  pthread_mutex_t *el = kh_kms_escrow_lock(k, account);
  pthread_rwlock_wrlock(al);
  pthread_mutex_lock(el);
  kh_buf obj;
  kh_buf_init(&obj, 4096);
  uint8_t wid[16];
  char kid[KH_LOG_KEY_MAX + 1], name[300], hex[33], rid[96];
  char *dd = kh_kms_path(k, "destroyed", NULL, NULL);
  char *tomb = kh_kms_path(k, "destroyed", account, NULL);
  char *rec = kh_kms_path(k, "escrow", account, "rec");
  kh_err e = KH_OK;
  if (!dd || !tomb || !rec || kh_fault_kms_hit(k, KH_FAULT_ALLOC)) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  kh_err fe = find_wrap(k, account, &obj, wid);
  if (fe && fe != KH_ERR_NOTFOUND) {
    e = fe;
    goto out;
  }
  rk_id(k, rid, sizeof rid);
  if (fe == KH_OK)
    key_id(kid, sizeof kid, "kms-wrap", wid, rid);
  else
    snprintf(kid, sizeof kid, "kms-wrap/none@%s", rid);
  cache_clear(k, account);
  if ((e = kh_kms_log_either(k, KH_LOG_OP_DESTROY, account, kid, rq, ps, NULL)))
    goto out;
  kh_kms_point(k, "destroy-logged");
  /* the tombstone first: from now on nothing is released for this account,
   * even if the provider brings an old wrap back */
  char text[64];
  int tl = snprintf(text, sizeof text, "destroyed %lld\n", (long long)time(NULL));
  if ((e = kh_mkdirs(dd, 0700)) || (e = kh_kms_write_file(k, tomb, text, (size_t)tl)))
    goto out;
  kh_kms_point(k, "destroy-tombstoned");
  if (fe == KH_OK) {
    kh_hex_encode(hex, wid, 16);
    snprintf(name, sizeof name, "accounts/%s/keys/%s", account, hex);
    if ((e = prov_del(k, name)))
      goto out;
  }
  if ((e = kh_kms_unlink(k, rec)))
    goto out;
  kh_kms_point(k, "destroy-done");
out:
  free(dd);
  free(tomb);
  free(rec);
  kh_buf_release(&obj);
  pthread_mutex_unlock(el);
  pthread_rwlock_unlock(al);
  return e;
}

kh_err kh_kms_destroy(kh_kms *k, const char *account, const kh_kms_request *rq)
{
  return destroy(k, account, rq, NULL);
}

kh_err kh_kms_destroy_signed(kh_kms *k, const char *account, const kh_kms_presigned *ps)
{
  return destroy(k, account, NULL, ps);
}

bool kh_kms_destroyed(kh_kms *k, const char *account)
{
  bool d = true; /* fail closed */
  if (kh_kms_account_destroyed(k->region_path, account, &d))
    d = true;
  return d;
}

kh_err kh_kms_account_destroyed(const char *region_path, const char *account, bool *destroyed)
{
  *destroyed = false;
  if (!kh_kms_account_ok(account))
    return kh_seterr(KH_ERR_INVAL, "bad account id");
  char name[128];
  snprintf(name, sizeof name, "kms/destroyed/%s", account);
  char *p = kh_path_join(region_path, name);
  struct stat st;
  kh_err e = KH_OK;
  if (!p)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (stat(p, &st) == 0)
    *destroyed = true;
  else if (errno != ENOENT)
    e = kh_seterr(kh_errno_code(errno), "stat %s: %s", p, strerror(errno));
  free(p);
  return e;
}

/* ---- rotation ------------------------------------------------------------------------ */

typedef struct acct_list {
  char (*ids)[KH_LOG_ACCOUNT_MAX + 1];
  size_t n, cap;
} acct_list;

static int collect_account(const char *name, uint64_t size, void *ctx)
{
  acct_list *l = ctx;
  const char *slash = strchr(name, '/');
  if (!slash || strcmp(slash, "/account") || (size_t)(slash - name) > KH_LOG_ACCOUNT_MAX)
    return 0;
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 16;
    void *p = realloc(l->ids, nc * sizeof *l->ids);
    if (!p)
      return 1;
    l->ids = p;
    l->cap = nc;
  }
  snprintf(l->ids[l->n], sizeof l->ids[0], "%.*s", (int)(slash - name), name);
  if (kh_kms_account_ok(l->ids[l->n]))
    l->n++;
  return 0;
}

kh_err kh_kms_rotate(kh_kms *k, const kh_kms_request *rq, size_t *nout)
{
  pthread_mutex_lock(&k->opmu);
  acct_list al;
  memset(&al, 0, sizeof al);
  kh_buf obj, ad, nobj;
  kh_buf_init(&obj, 4096);
  kh_buf_init(&nobj, 4096);
  kh_buf_init(&ad, 1024);
  char kid[KH_LOG_KEY_MAX + 1], name[300], hex[33], rid[96];
  char *lkp = kh_kms_path(k, "log.key", NULL, NULL), *skey = NULL;
  char lname[KH_CHECKPOINT_ORIGIN_MAX + 1];
  uint8_t *seed = kh_kms_secure_alloc(k, 32), *key = kh_kms_secure_alloc(k, 32);
  pthread_rwlock_t *held = NULL;
  size_t n = 0;
  kh_err e;
  if (!lkp || !seed || !key) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((e = kh_rootkey_rotate(k->rk)))
    goto out;
  cache_clear(k, NULL);
  rk_id(k, kid, sizeof kid);
  if ((e = kh_kms_log(k, KH_LOG_OP_ROTATE, "0", kid, rq, false, 0, NULL)))
    goto out;
  /* the log key moves to the new version too */
  {
    uint8_t *data = NULL;
    size_t len = 0;
    kh_logkey_file f;
    if ((e = kh_read_file(lkp, 4096, &data, &len)) || (e = kh_logkey_parse(data, len, &f))) {
      free(data);
      goto out;
    }
    snprintf(lname, sizeof lname, "%.*s", (int)f.namelen, f.name);
    kh_buf_reset(&ad);
    e = logkey_ad(&ad, k->cfg.region, lname);
    if (!e)
      e = kh_rootkey_unwrap(k->rk, f.blob, f.bloblen, ad.data, ad.len, seed);
    free(data);
    if (!e && kh_fault_kms_hit(k, KH_FAULT_WRITE))
      e = kh_seterr(KH_ERR_IO, "write %s: input/output error (injected)", lkp);
    if (e || (e = write_logkey(lkp, k->cfg.region, lname, k->rk, seed)))
      goto out;
  }
  if ((e = kh_provider_list(k->prov, "accounts", collect_account, &al)))
    goto out;
  for (size_t i = 0; i < al.n; i++) {
    const char *acct = al.ids[i];
    uint8_t wid[16];
    kh_kms_wrapobj w;
    /* the account's lock: no destroy or release of it sees half a rewrap */
    held = kh_kms_acct_lock(k, acct);
    pthread_rwlock_wrlock(held);
    kh_err fe = kh_kms_destroyed(k, acct) ? KH_ERR_NOTFOUND : find_wrap(k, acct, &obj, wid);
    if (fe == KH_ERR_NOTFOUND) {
      pthread_rwlock_unlock(held);
      held = NULL;
      continue;
    }
    if ((e = fe) || (e = kh_kms_wrapobj_parse(obj.data, obj.len, &w)))
      goto out;
    kh_buf_reset(&ad);
    if ((e = wrap_ad(&ad, k->cfg.region, acct, wid, obj.data)) ||
        (e = kh_rootkey_unwrap(k->rk, w.blob, w.bloblen, ad.data, ad.len, key)) ||
        (e = build_wrapobj(k, acct, wid, key, w.cipher, &nobj)))
      goto out;
    rk_id(k, rid, sizeof rid);
    key_id(kid, sizeof kid, "kms-wrap", wid, rid);
    if ((e = kh_kms_log(k, KH_LOG_OP_REWRAP, acct, kid, rq, false, 0, NULL)))
      goto out;
    kh_hex_encode(hex, wid, 16);
    snprintf(name, sizeof name, "accounts/%s/keys/%s", acct, hex);
    if ((e = prov_put(k, name, &nobj, false)))
      goto out;
    pthread_rwlock_unlock(held);
    held = NULL;
    n++;
  }
  if (nout)
    *nout = n;
out:
  if (held)
    pthread_rwlock_unlock(held);
  free(al.ids);
  free(lkp);
  kh_secure_free(skey);
  kh_secure_free(seed);
  kh_secure_free(key);
  kh_buf_release(&obj);
  kh_buf_release(&nobj);
  kh_buf_release(&ad);
  pthread_mutex_unlock(&k->opmu);
  return e;
}

/* ---- witnesses -------------------------------------------------------------------------- */

kh_err kh_kms_set_witnesses(kh_kms *k, unsigned required, const char *const *dirs, size_t n)
{
  if (n > KH_KMS_WITNESS_MAX || required > n)
    return kh_seterr(KH_ERR_INVAL, "need required <= witnesses <= %d", KH_KMS_WITNESS_MAX);
  kh_kms_config c = k->cfg;
  kh_err e = KH_OK;
  c.witnesses_required = required;
  c.nwitnesses = n;
  for (size_t i = 0; i < n; i++) {
    if (dirs[i][0] != '/' || strlen(dirs[i]) >= KH_KMS_PATH_MAX)
      return kh_seterr(KH_ERR_INVAL, "witness directories must be absolute paths");
    snprintf(c.witness[i], KH_KMS_PATH_MAX, "%s", dirs[i]);
    kh_witness *w = NULL;
    if ((e = kh_witness_open(dirs[i], &w)))
      return kh_adderr(e, "witness %s", dirs[i]);
    e = kh_witness_add_log(w, c.origin, k->vkey);
    kh_witness_free(w);
    if (e)
      return kh_adderr(e, "witness %s", dirs[i]);
  }
  kh_buf b;
  kh_buf_init(&b, KH_KMS_CONFIG_MAX);
  char *p = kh_kms_path(k, "config", NULL, NULL);
  e = p ? kh_kms_config_format(&c, &b) : kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (!e)
    e = kh_write_file_atomic(p, b.data, b.len, 0600, false);
  free(p);
  kh_buf_release(&b);
  if (!e) {
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < KH_KMS_WITNESS_MAX; i++) {
      kh_witness_free(k->witness[i]);
      k->witness[i] = NULL;
    }
    k->cfg = c;
    pthread_mutex_unlock(&k->mu);
  }
  return e;
}
