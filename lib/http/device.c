/* The device's server-mode state (docs/format.md §12) and the kind-4 key
 * object (docs/format.md §4): include/keyhold/remote.h. */
#include "keyhold/remote.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/hex.h"

#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_MAGIC "keyhold-device v1"
#define STATE_MAX 4096
#define KEYFILE_LEN (64 + 32)

kh_err kh_device_state_new(kh_device_state **out)
{
  kh_err e = KH_OK;
  kh_device_state *d = NULL;
  *out = NULL;
  if (sodium_init() < 0)
    return kh_seterr(KH_ERR_CRYPTO, "libsodium failed to initialise");
  if (!(d = calloc(1, sizeof *d)) || !(d->sign_sk = sodium_malloc(64)) ||
      !(d->box_sk = sodium_malloc(32))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  crypto_sign_keypair(d->sign_pk, d->sign_sk);
  crypto_box_keypair(d->box_pk, d->box_sk);
  *out = d;
  d = NULL;
out:
  kh_device_state_free(d);
  return e;
}

void kh_device_state_free(kh_device_state *d)
{
  if (!d)
    return;
  if (d->sign_sk)
    sodium_free(d->sign_sk);
  if (d->box_sk)
    sodium_free(d->box_sk);
  sodium_memzero(d, sizeof *d);
  free(d);
}

/* ---- field checks ------------------------------------------------------- */

static bool is_hex(const char *s, size_t n)
{
  if (strlen(s) != n)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

static bool id_or_empty(const char *s)
{
  return !*s || is_hex(s, KH_REMOTE_ID_HEX);
}

static bool valid_name(const char *s)
{
  size_t n = strlen(s);
  if (n < 1 || n > KH_REMOTE_NAME_MAX)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
      return false;
  return true;
}

static bool valid_url(const char *s)
{
  size_t n = strlen(s);
  if (n < 8 || n >= KH_REMOTE_URL_MAX)
    return false;
  if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8))
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] > 0x7e)
      return false;
  return true;
}

static bool valid_region(const char *s)
{
  size_t n = strlen(s);
  if (n < 1 || n > 63)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
      return false;
  return true;
}

static kh_err check_fields(const kh_device_state *d)
{
  if (!valid_url(d->url))
    return kh_seterr(KH_ERR_INVAL, "device state: bad url '%s'", d->url);
  if (!valid_region(d->region))
    return kh_seterr(KH_ERR_INVAL, "device state: bad region id");
  if (!is_hex(d->instance, KH_REMOTE_ID_HEX))
    return kh_seterr(KH_ERR_INVAL, "device state: bad instance id");
  if (!id_or_empty(d->account) || !id_or_empty(d->device))
    return kh_seterr(KH_ERR_INVAL, "device state: bad account or device id");
  if (!valid_name(d->name))
    return kh_seterr(KH_ERR_INVAL, "device state: the name must be 1-%d printable bytes",
                     KH_REMOTE_NAME_MAX);
  if (*d->keycheck && !is_hex(d->keycheck, 64))
    return kh_seterr(KH_ERR_INVAL, "device state: bad key check value");
  return KH_OK;
}

/* ---- directories ---------------------------------------------------------- */

static char *default_device_dir(void)
{
  const char *e = getenv("KEYHOLD_DEVICE_DIR");
  if (e && *e)
    return strdup(e);
  const char *x = getenv("XDG_CONFIG_HOME");
  if (x && *x)
    return kh_path_join(x, "keyhold");
  const char *home = getenv("HOME");
  char *base = kh_path_join(home && *home ? home : "/tmp", ".config");
  char *r = base ? kh_path_join(base, "keyhold") : NULL;
  free(base);
  return r;
}

/* <device_dir>/server-<instance> (malloc'd) */
static char *state_dir(const char *device_dir, const char *instance)
{
  char sub[64];
  char *base = device_dir ? strdup(device_dir) : default_device_dir();
  snprintf(sub, sizeof sub, "server-%s", instance);
  char *r = base ? kh_path_join(base, sub) : NULL;
  free(base);
  return r;
}

/* ---- save ------------------------------------------------------------------ */

kh_err kh_device_state_save(const kh_device_state *d, const char *device_dir, bool overwrite)
{
  kh_err e = check_fields(d);
  char *dir = NULL, *kpath = NULL, *tpath = NULL;
  uint8_t *key = NULL;
  char text[STATE_MAX], spk[65], bpk[65];
  if (e)
    return e;
  if (!(dir = state_dir(device_dir, d->instance)) || !(kpath = kh_path_join(dir, "device.key")) ||
      !(tpath = kh_path_join(dir, "device")) || !(key = sodium_malloc(KEYFILE_LEN))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  kh_hex_encode(spk, d->sign_pk, 32);
  kh_hex_encode(bpk, d->box_pk, 32);
  int n = snprintf(text, sizeof text,
                   STATE_MAGIC "\nurl %s\nregion %s\ninstance %s\naccount %s\ndevice %s\n"
                   "name %s\nsign_pk %s\nbox_pk %s\nkeycheck %s\n",
                   d->url, d->region, d->instance, *d->account ? d->account : "-",
                   *d->device ? d->device : "-", d->name, spk, bpk,
                   *d->keycheck ? d->keycheck : "-");
  if (n < 0 || (size_t)n >= sizeof text) {
    e = kh_seterr(KH_ERR_TOOBIG, "device state too long");
    goto out;
  }
  if ((e = kh_mkdirs(dir, 0700)))
    goto out;
  memcpy(key, d->sign_sk, 64);
  memcpy(key + 64, d->box_sk, 32);
  /* the key first: a text file always has the secret that goes with it */
  if ((e = kh_write_file_atomic(kpath, key, KEYFILE_LEN, 0600, !overwrite))) {
    if (e == KH_ERR_EXISTS)
      e = kh_seterr(KH_ERR_EXISTS, "this device already has an identity on region instance "
                    "%s (%s): use another KEYHOLD_DEVICE_DIR for another device", d->instance,
                    dir);
    goto out;
  }
  e = kh_write_file_atomic(tpath, text, (size_t)n, 0600, false);
out:
  if (key)
    sodium_free(key);
  free(dir);
  free(kpath);
  free(tpath);
  return e;
}

/* ---- load ------------------------------------------------------------------ */

/* Take the line "<key> <value>\n" at *p (end at end) into out (cap bytes
 * with the NUL); false if the line is not that or too long. */
static bool take_line(const char **p, const char *end, const char *key, char *out, size_t cap)
{
  size_t kl = strlen(key);
  const char *s = *p;
  if ((size_t)(end - s) < kl + 1 || memcmp(s, key, kl) || s[kl] != ' ')
    return false;
  s += kl + 1;
  const char *nl = memchr(s, '\n', (size_t)(end - s));
  if (!nl || (size_t)(nl - s) >= cap || memchr(s, '\0', (size_t)(nl - s)))
    return false;
  memcpy(out, s, (size_t)(nl - s));
  out[nl - s] = '\0';
  *p = nl + 1;
  return true;
}

kh_err kh_device_state_parse(const char *text, size_t n, kh_device_state *d)
{
  const char *p = text, *end = text + n;
  char spk[66], bpk[66];
  size_t ml = strlen(STATE_MAGIC);
  if (n > STATE_MAX || n < ml + 1 || memcmp(p, STATE_MAGIC "\n", ml + 1))
    return kh_seterr(KH_ERR_FORMAT, "not a keyhold device state file");
  p += ml + 1;
  if (!take_line(&p, end, "url", d->url, sizeof d->url) ||
      !take_line(&p, end, "region", d->region, sizeof d->region) ||
      !take_line(&p, end, "instance", d->instance, sizeof d->instance) ||
      !take_line(&p, end, "account", d->account, sizeof d->account) ||
      !take_line(&p, end, "device", d->device, sizeof d->device) ||
      !take_line(&p, end, "name", d->name, sizeof d->name) ||
      !take_line(&p, end, "sign_pk", spk, sizeof spk) ||
      !take_line(&p, end, "box_pk", bpk, sizeof bpk) ||
      !take_line(&p, end, "keycheck", d->keycheck, sizeof d->keycheck) || p != end)
    return kh_seterr(KH_ERR_FORMAT, "malformed device state file");
  if (!strcmp(d->account, "-"))
    d->account[0] = '\0';
  if (!strcmp(d->device, "-"))
    d->device[0] = '\0';
  if (!strcmp(d->keycheck, "-"))
    d->keycheck[0] = '\0';
  if (!is_hex(spk, 64) || !is_hex(bpk, 64) || kh_hex_decode(d->sign_pk, 32, spk, 64) ||
      kh_hex_decode(d->box_pk, 32, bpk, 64) || check_fields(d))
    return kh_seterr(KH_ERR_FORMAT, "malformed device state file");
  return KH_OK;
}

kh_err kh_device_state_load(const char *device_dir, const char *instance,
                            kh_device_state **out)
{
  kh_err e = KH_OK;
  kh_device_state *d = NULL;
  char *dir = NULL, *kpath = NULL, *tpath = NULL;
  uint8_t *text = NULL, *key = NULL;
  size_t tl = 0, kl = 0;
  *out = NULL;
  if (!is_hex(instance, KH_REMOTE_ID_HEX))
    return kh_seterr(KH_ERR_INVAL, "bad instance id");
  if ((e = kh_device_state_new(&d)))
    goto out;
  if (!(dir = state_dir(device_dir, instance)) || !(kpath = kh_path_join(dir, "device.key")) ||
      !(tpath = kh_path_join(dir, "device"))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((e = kh_read_file(tpath, STATE_MAX, &text, &tl))) {
    if (e == KH_ERR_NOTFOUND)
      e = kh_seterr(KH_ERR_NOTFOUND, "no device identity for region instance %s in %s",
                    instance, dir);
    goto out;
  }
  if ((e = kh_device_state_parse((const char *)text, tl, d)))
    goto out;
  if (strcmp(d->instance, instance)) {
    e = kh_seterr(KH_ERR_FORMAT, "%s names another instance than its directory", tpath);
    goto out;
  }
  if ((e = kh_read_file(kpath, KEYFILE_LEN, &key, &kl)))
    goto out;
  if (kl != KEYFILE_LEN) {
    e = kh_seterr(KH_ERR_FORMAT, "%s is not a device key file", kpath);
    goto out;
  }
  /* the secrets must be the halves of the recorded public keys */
  uint8_t spk[32], bpk[32];
  memcpy(d->sign_sk, key, 64);
  memcpy(d->box_sk, key + 64, 32);
  crypto_sign_ed25519_sk_to_pk(spk, d->sign_sk);
  crypto_scalarmult_base(bpk, d->box_sk);
  if (sodium_memcmp(spk, d->sign_pk, 32) || sodium_memcmp(bpk, d->box_pk, 32)) {
    e = kh_seterr(KH_ERR_AUTH, "%s does not hold this device's keys", kpath);
    goto out;
  }
  *out = d;
  d = NULL;
out:
  if (key) {
    sodium_memzero(key, kl);
    free(key);
  }
  free(text);
  free(dir);
  free(kpath);
  free(tpath);
  kh_device_state_free(d);
  return e;
}

/* url without one trailing '/' */
static size_t url_len(const char *u)
{
  size_t n = strlen(u);
  return n && u[n - 1] == '/' ? n - 1 : n;
}

kh_err kh_device_state_find(const char *device_dir, const char *url, kh_device_state **out)
{
  kh_err e = KH_OK;
  char *base = device_dir ? strdup(device_dir) : default_device_dir();
  DIR *dh = NULL;
  kh_device_state *found = NULL;
  int hits = 0;
  *out = NULL;
  if (!base)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (!(dh = opendir(base)))
    goto none;
  struct dirent *de;
  size_t ul = url_len(url);
  while ((de = readdir(dh))) {
    if (strncmp(de->d_name, "server-", 7) || !is_hex(de->d_name + 7, KH_REMOTE_ID_HEX))
      continue;
    kh_device_state *d = NULL;
    if (kh_device_state_load(base, de->d_name + 7, &d))
      continue; /* unreadable states are not this server's */
    if (url_len(d->url) == ul && !strncmp(d->url, url, ul)) {
      hits++;
      kh_device_state_free(found);
      found = d;
    } else {
      kh_device_state_free(d);
    }
  }
none:
  if (hits == 0)
    e = kh_seterr(KH_ERR_NOTFOUND, "this device has no identity on %s (in %s): run keyhold "
                  "init to create an account there, or keyhold device add to join one", url,
                  base);
  else if (hits > 1)
    e = kh_seterr(KH_ERR_AMBIGUOUS, "%d device identities in %s name %s", hits, base, url);
  else {
    *out = found;
    found = NULL;
  }
  if (dh)
    closedir(dh);
  kh_device_state_free(found);
  free(base);
  return e;
}

/* ---- kind-4 key objects (docs/format.md §4) ----------------------------- */

kh_err kh_device_wrap_seal(const uint8_t box_pk[32], const uint8_t key[32], int cipher,
                           uint8_t out[KH_DEVICE_WRAP_LEN])
{
  uint8_t *pt = sodium_malloc(33);
  if (!pt)
    return kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  memcpy(pt, key, 32);
  pt[32] = (uint8_t)cipher;
  int rc = crypto_box_seal(out, pt, 33, box_pk);
  sodium_free(pt);
  return rc ? kh_seterr(KH_ERR_CRYPTO, "crypto_box_seal failed") : KH_OK;
}

kh_err kh_device_wrap_open(const kh_device_state *d, const uint8_t *wrap, size_t n,
                           uint8_t key[32], int *cipher)
{
  kh_err e = KH_OK;
  uint8_t *pt = sodium_malloc(33);
  sodium_memzero(key, 32);
  if (!pt)
    return kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  if (n != KH_DEVICE_WRAP_LEN) {
    e = kh_seterr(KH_ERR_FORMAT, "the device's key object has %zu bytes, not %d", n,
                  KH_DEVICE_WRAP_LEN);
    goto out;
  }
  if (crypto_box_seal_open(pt, wrap, n, d->box_pk, d->box_sk)) {
    e = kh_seterr(KH_ERR_AUTH, "the device's key object does not open with this device's key");
    goto out;
  }
  memcpy(key, pt, 32);
  *cipher = pt[32];
out:
  sodium_free(pt);
  return e;
}

void kh_device_keycheck(const uint8_t key[32], char out[65])
{
  static const uint8_t ctx[] = "keyhold device keycheck v1";
  uint8_t h[32];
  crypto_generichash(h, sizeof h, ctx, sizeof ctx - 1, key, 32);
  kh_hex_encode(out, h, 32);
}
