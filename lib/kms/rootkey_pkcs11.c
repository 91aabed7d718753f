/* PKCS#11 backend (docs/kms-rootkey.md §4).
 *
 * The root keys are AES-256 secret-key objects generated inside the token
 * (CKA_SENSITIVE, not CKA_EXTRACTABLE); version 1 is labelled <label>, version
 * N <label>.v<N>.  A blob's data key is imported as a session object and
 * wrapped with AES key wrap with padding (RFC 5649); unwrap goes the other way
 * and reads the session object's value.  derive is HMAC-SHA256 by a separate
 * non-extractable generic-secret key <label>.mac.  One session per handle,
 * serialised by a mutex. */
#include "kms/rootkey.h"
#include "kms/pkcs11/kh_pkcs11.h"
#include "common/err.h"
#include "crypto/crypto.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KWP_BYTES 40       /* RFC 5649 output for a 32-byte key */
#define MAX_SLOTS 256
#define MAX_OBJECTS 65536  /* secret keys a token may hold for us to scan it */
#define MAX_MODULES 8

typedef struct p11_state {
  void *dl;
  CK_FUNCTION_LIST_PTR f;
  bool module_held;
  CK_SESSION_HANDLE s;
  bool have_session;
  pthread_mutex_t mu;
  CK_MECHANISM_TYPE wrap_mech;
  char label[65];
  CK_OBJECT_HANDLE mac;
  CK_OBJECT_HANDLE keys[KH_ROOTKEY_VERSIONS_MAX + 1]; /* CK_INVALID_HANDLE: not held */
} p11_state;

/* ---- errors ------------------------------------------------------------ */

static const char *rv_name(CK_RV rv)
{
  switch (rv) {
  case CKR_OK: return "CKR_OK";
  case CKR_HOST_MEMORY: return "CKR_HOST_MEMORY";
  case CKR_SLOT_ID_INVALID: return "CKR_SLOT_ID_INVALID";
  case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
  case CKR_FUNCTION_FAILED: return "CKR_FUNCTION_FAILED";
  case CKR_ARGUMENTS_BAD: return "CKR_ARGUMENTS_BAD";
  case CKR_ATTRIBUTE_SENSITIVE: return "CKR_ATTRIBUTE_SENSITIVE";
  case CKR_ATTRIBUTE_TYPE_INVALID: return "CKR_ATTRIBUTE_TYPE_INVALID";
  case CKR_ATTRIBUTE_VALUE_INVALID: return "CKR_ATTRIBUTE_VALUE_INVALID";
  case CKR_DEVICE_ERROR: return "CKR_DEVICE_ERROR";
  case CKR_DEVICE_MEMORY: return "CKR_DEVICE_MEMORY";
  case CKR_DEVICE_REMOVED: return "CKR_DEVICE_REMOVED";
  case CKR_ENCRYPTED_DATA_INVALID: return "CKR_ENCRYPTED_DATA_INVALID";
  case CKR_ENCRYPTED_DATA_LEN_RANGE: return "CKR_ENCRYPTED_DATA_LEN_RANGE";
  case CKR_KEY_HANDLE_INVALID: return "CKR_KEY_HANDLE_INVALID";
  case CKR_KEY_FUNCTION_NOT_PERMITTED: return "CKR_KEY_FUNCTION_NOT_PERMITTED";
  case CKR_KEY_UNEXTRACTABLE: return "CKR_KEY_UNEXTRACTABLE";
  case CKR_MECHANISM_INVALID: return "CKR_MECHANISM_INVALID";
  case CKR_OBJECT_HANDLE_INVALID: return "CKR_OBJECT_HANDLE_INVALID";
  case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
  case CKR_PIN_LEN_RANGE: return "CKR_PIN_LEN_RANGE";
  case CKR_PIN_LOCKED: return "CKR_PIN_LOCKED";
  case CKR_SESSION_CLOSED: return "CKR_SESSION_CLOSED";
  case CKR_SESSION_HANDLE_INVALID: return "CKR_SESSION_HANDLE_INVALID";
  case CKR_TEMPLATE_INCOMPLETE: return "CKR_TEMPLATE_INCOMPLETE";
  case CKR_TEMPLATE_INCONSISTENT: return "CKR_TEMPLATE_INCONSISTENT";
  case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
  case CKR_TOKEN_NOT_RECOGNIZED: return "CKR_TOKEN_NOT_RECOGNIZED";
  case CKR_TOKEN_WRITE_PROTECTED: return "CKR_TOKEN_WRITE_PROTECTED";
  case CKR_USER_ALREADY_LOGGED_IN: return "CKR_USER_ALREADY_LOGGED_IN";
  case CKR_USER_NOT_LOGGED_IN: return "CKR_USER_NOT_LOGGED_IN";
  case CKR_USER_PIN_NOT_INITIALIZED: return "CKR_USER_PIN_NOT_INITIALIZED";
  case CKR_WRAPPED_KEY_INVALID: return "CKR_WRAPPED_KEY_INVALID";
  case CKR_WRAPPED_KEY_LEN_RANGE: return "CKR_WRAPPED_KEY_LEN_RANGE";
  case CKR_UNWRAPPING_KEY_HANDLE_INVALID: return "CKR_UNWRAPPING_KEY_HANDLE_INVALID";
  case CKR_BUFFER_TOO_SMALL: return "CKR_BUFFER_TOO_SMALL";
  case CKR_CRYPTOKI_NOT_INITIALIZED: return "CKR_CRYPTOKI_NOT_INITIALIZED";
  case CKR_CRYPTOKI_ALREADY_INITIALIZED: return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
  default: return "CKR_?";
  }
}

static kh_err hsm_err(const char *call, CK_RV rv)
{
  return kh_seterr(KH_ERR_HSM, "PKCS#11 %s: %s (0x%lx)", call, rv_name(rv),
                   (unsigned long)rv);
}

/* Failures that say the token or session is unwell, as opposed to "this
 * wrapped key does not unwrap". */
static bool rv_is_infrastructure(CK_RV rv)
{
  switch (rv) {
  case CKR_HOST_MEMORY: case CKR_DEVICE_ERROR: case CKR_DEVICE_MEMORY:
  case CKR_DEVICE_REMOVED: case CKR_SESSION_CLOSED: case CKR_SESSION_HANDLE_INVALID:
  case CKR_TOKEN_NOT_PRESENT: case CKR_USER_NOT_LOGGED_IN:
  case CKR_CRYPTOKI_NOT_INITIALIZED: case CKR_UNWRAPPING_KEY_HANDLE_INVALID:
  case CKR_KEY_HANDLE_INVALID: case CKR_MECHANISM_INVALID: case CKR_FUNCTION_CANCELED:
  case CKR_OPERATION_ACTIVE: case CKR_SESSION_READ_ONLY:
    return true;
  default:
    return false;
  }
}

/* ---- module registry: C_Initialize / C_Finalize once per process ------- */

static pthread_mutex_t modules_mu = PTHREAD_MUTEX_INITIALIZER;
static struct module_use {
  void *dl;
  unsigned users;
  bool finalize; /* we initialised it, so the last user finalises it */
} modules[MAX_MODULES];

static kh_err module_acquire(void *dl, CK_FUNCTION_LIST_PTR f)
{
  kh_err e = KH_OK;
  struct module_use *free_slot = NULL;
  pthread_mutex_lock(&modules_mu);
  for (int i = 0; i < MAX_MODULES; i++) {
    if (modules[i].dl == dl) {
      modules[i].users++;
      goto out;
    }
    if (!modules[i].dl && !free_slot)
      free_slot = &modules[i];
  }
  if (!free_slot) {
    e = kh_seterr(KH_ERR_TOOBIG, "more than %d PKCS#11 modules loaded", MAX_MODULES);
    goto out;
  }
  CK_C_INITIALIZE_ARGS args;
  memset(&args, 0, sizeof args);
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = f->C_Initialize(&args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    e = hsm_err("C_Initialize", rv);
    goto out;
  }
  free_slot->dl = dl;
  free_slot->users = 1;
  /* already initialised by someone else in this process: theirs to end */
  free_slot->finalize = rv == CKR_OK;
out:
  pthread_mutex_unlock(&modules_mu);
  return e;
}

static void module_release(void *dl, CK_FUNCTION_LIST_PTR f)
{
  pthread_mutex_lock(&modules_mu);
  for (int i = 0; i < MAX_MODULES; i++) {
    if (modules[i].dl != dl)
      continue;
    if (--modules[i].users == 0) {
      if (modules[i].finalize)
        f->C_Finalize(NULL);
      memset(&modules[i], 0, sizeof modules[i]);
    }
    break;
  }
  pthread_mutex_unlock(&modules_mu);
}

/* ---- helpers ----------------------------------------------------------- */

static void state_free(void *p)
{
  p11_state *st = p;
  if (!st)
    return;
  if (st->have_session)
    st->f->C_CloseSession(st->s);
  if (st->module_held)
    module_release(st->dl, st->f);
  if (st->dl)
    dlclose(st->dl);
  pthread_mutex_destroy(&st->mu);
  free(st);
}

static kh_err find_slot(p11_state *st, const char *token_label, CK_SLOT_ID *slot)
{
  kh_err e = KH_OK;
  CK_SLOT_ID *slots = NULL;
  CK_ULONG n = 0;
  char want[32];
  size_t tl = strlen(token_label);
  memset(want, ' ', sizeof want);
  memcpy(want, token_label, tl);

  CK_RV rv = st->f->C_GetSlotList(CK_TRUE, NULL, &n);
  if (rv != CKR_OK) {
    e = hsm_err("C_GetSlotList", rv);
    goto out;
  }
  if (n > MAX_SLOTS)
    n = MAX_SLOTS;
  slots = calloc(n ? n : 1, sizeof *slots);
  if (!slots) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  rv = st->f->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL) {
    e = hsm_err("C_GetSlotList", rv);
    goto out;
  }
  for (CK_ULONG i = 0; i < n && i < MAX_SLOTS; i++) {
    CK_TOKEN_INFO ti;
    if (st->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
      continue;
    if (memcmp(ti.label, want, sizeof want) == 0) {
      *slot = slots[i];
      goto out;
    }
  }
  e = kh_seterr(KH_ERR_NOTFOUND, "no PKCS#11 token labelled \"%s\"", token_label);
out:
  free(slots);
  return e;
}

static kh_err pick_mechanisms(p11_state *st, CK_SLOT_ID slot, bool create)
{
  kh_err e = KH_OK;
  CK_MECHANISM_TYPE *m = NULL;
  CK_ULONG n = 0;
  bool kwp = false, pad = false, hmac = false, aesgen = false, gsgen = false;
  CK_RV rv = st->f->C_GetMechanismList(slot, NULL, &n);
  if (rv != CKR_OK) {
    e = hsm_err("C_GetMechanismList", rv);
    goto out;
  }
  if (n > 4096)
    n = 4096;
  m = calloc(n ? n : 1, sizeof *m);
  if (!m) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  rv = st->f->C_GetMechanismList(slot, m, &n);
  if (rv != CKR_OK) {
    e = hsm_err("C_GetMechanismList", rv);
    goto out;
  }
  for (CK_ULONG i = 0; i < n; i++) {
    kwp |= m[i] == CKM_AES_KEY_WRAP_KWP;
    pad |= m[i] == CKM_AES_KEY_WRAP_PAD;
    hmac |= m[i] == CKM_SHA256_HMAC;
    aesgen |= m[i] == CKM_AES_KEY_GEN;
    gsgen |= m[i] == CKM_GENERIC_SECRET_KEY_GEN;
  }
  /* Both are RFC 5649 (SP 800-38F KWP); KWP is the v2.40 name. */
  if (kwp)
    st->wrap_mech = CKM_AES_KEY_WRAP_KWP;
  else if (pad)
    st->wrap_mech = CKM_AES_KEY_WRAP_PAD;
  else {
    e = kh_seterr(KH_ERR_UNSUPPORTED, "token offers neither CKM_AES_KEY_WRAP_KWP (0x210B) "
                                      "nor CKM_AES_KEY_WRAP_PAD (0x210A)");
    goto out;
  }
  if (!hmac) {
    e = kh_seterr(KH_ERR_UNSUPPORTED, "token does not offer CKM_SHA256_HMAC");
    goto out;
  }
  if (create && (!aesgen || !gsgen)) {
    e = kh_seterr(KH_ERR_UNSUPPORTED,
                  "token cannot generate AES / generic secret keys (CKM_AES_KEY_GEN, "
                  "CKM_GENERIC_SECRET_KEY_GEN)");
    goto out;
  }
out:
  free(m);
  return e;
}

/* label -> 1 for "<base>", N for "<base>.v<N>" (canonical), -1 for
 * "<base>.mac", 0 otherwise. */
static long classify_label(const char *base, const uint8_t *l, size_t n)
{
  size_t bl = strlen(base);
  if (n < bl || memcmp(l, base, bl) != 0)
    return 0;
  l += bl;
  n -= bl;
  if (n == 0)
    return 1;
  if (n == 4 && memcmp(l, ".mac", 4) == 0)
    return -1;
  if (n < 3 || l[0] != '.' || l[1] != 'v' || l[2] < '1' || l[2] > '9')
    return 0;
  long v = 0;
  for (size_t i = 2; i < n; i++) {
    if (l[i] < '0' || l[i] > '9')
      return 0;
    v = v * 10 + (l[i] - '0');
    if (v > KH_ROOTKEY_VERSIONS_MAX)
      return 0;
  }
  return v >= 2 ? v : 0;
}

/* Find this label's root keys and mac key among the token's secret keys.
 * All handles are collected first: the search is finished before any
 * attribute is read. */
static kh_err scan_keys(p11_state *st)
{
  kh_err e = KH_OK;
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}};
  CK_OBJECT_HANDLE *h = NULL;
  CK_ULONG n = 0, got = 0;
  bool active = false;

  h = calloc(MAX_OBJECTS, sizeof *h);
  if (!h) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  CK_RV rv = st->f->C_FindObjectsInit(st->s, tmpl, 1);
  if (rv != CKR_OK) {
    e = hsm_err("C_FindObjectsInit", rv);
    goto out;
  }
  active = true;
  do {
    rv = st->f->C_FindObjects(st->s, h + n, MAX_OBJECTS - n, &got);
    if (rv != CKR_OK) {
      e = hsm_err("C_FindObjects", rv);
      goto out;
    }
    if (got > MAX_OBJECTS - n) {
      e = kh_seterr(KH_ERR_HSM, "C_FindObjects returned more handles than asked for");
      goto out;
    }
    n += got;
  } while (got > 0 && n < MAX_OBJECTS);
  if (n == MAX_OBJECTS) {
    e = kh_seterr(KH_ERR_TOOBIG, "token holds more than %d secret keys", MAX_OBJECTS);
    goto out;
  }
  st->f->C_FindObjectsFinal(st->s);
  active = false;
  for (CK_ULONG i = 0; i < n; i++) {
    uint8_t label[128];
    CK_BBOOL token = CK_FALSE;
    CK_ATTRIBUTE a[] = {{CKA_LABEL, label, sizeof label}, {CKA_TOKEN, &token, sizeof token}};
    if (st->f->C_GetAttributeValue(st->s, h[i], a, 2) != CKR_OK || !token ||
        a[0].ulValueLen > sizeof label)
      continue;
    long v = classify_label(st->label, label, a[0].ulValueLen);
    if (v == 0)
      continue;
    CK_OBJECT_HANDLE *slot = v < 0 ? &st->mac : &st->keys[v];
    if (*slot != CK_INVALID_HANDLE) {
      e = kh_seterr(KH_ERR_HSM, "token holds two keys labelled \"%.*s\"",
                    (int)a[0].ulValueLen, (const char *)label);
      goto out;
    }
    *slot = h[i];
  }
out:
  if (active)
    st->f->C_FindObjectsFinal(st->s);
  free(h);
  return e;
}

/* Refuse keys a previous run (or someone else) made exportable. */
static kh_err check_key(p11_state *st, CK_OBJECT_HANDLE h, bool root, const char *what)
{
  CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, use = CK_FALSE, use2 = CK_FALSE;
  CK_KEY_TYPE kt = 0;
  CK_ULONG vlen = 0;
  CK_ATTRIBUTE a[] = {
    {CKA_SENSITIVE, &sens, sizeof sens},
    {CKA_EXTRACTABLE, &extr, sizeof extr},
    {CKA_KEY_TYPE, &kt, sizeof kt},
    {CKA_VALUE_LEN, &vlen, sizeof vlen},
    {root ? CKA_WRAP : CKA_SIGN, &use, sizeof use},
    {CKA_UNWRAP, &use2, sizeof use2}, /* root keys only */
  };
  CK_RV rv = st->f->C_GetAttributeValue(st->s, h, a, root ? 6 : 5);
  if (rv != CKR_OK)
    return hsm_err("C_GetAttributeValue", rv);
  if (!sens || extr)
    return kh_seterr(KH_ERR_HSM, "refusing %s key: it is extractable or not sensitive", what);
  if (kt != (root ? CKK_AES : CKK_GENERIC_SECRET) || vlen != 32 || !use || (root && !use2))
    return kh_seterr(KH_ERR_HSM, "refusing %s key: wrong type, length or usage", what);
  return KH_OK;
}

static kh_err check_keys(p11_state *st, uint32_t current)
{
  kh_err e = KH_OK;
  for (uint32_t v = 1; v <= current && !e; v++)
    if (st->keys[v] != CK_INVALID_HANDLE)
      e = check_key(st, st->keys[v], true, "root");
  if (!e && st->mac != CK_INVALID_HANDLE)
    e = check_key(st, st->mac, false, "mac");
  return e;
}

/* Generate a token key inside the token: version v root key (AES-256, wrap /
 * unwrap only) or, for v == 0, the mac key (generic secret, sign only). */
static kh_err generate(p11_state *st, uint32_t v, CK_OBJECT_HANDLE *out)
{
  char label[96];
  bool root = v != 0;
  if (!root)
    snprintf(label, sizeof label, "%s.mac", st->label);
  else if (v == 1)
    snprintf(label, sizeof label, "%s", st->label);
  else
    snprintf(label, sizeof label, "%s.v%u", st->label, (unsigned)v);
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = root ? CKK_AES : CKK_GENERIC_SECRET;
  CK_ULONG vlen = 32;
  CK_BBOOL t = CK_TRUE, f = CK_FALSE;
  CK_BBOOL r = root ? CK_TRUE : CK_FALSE, m = root ? CK_FALSE : CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {
    {CKA_CLASS, &cls, sizeof cls},
    {CKA_KEY_TYPE, &kt, sizeof kt},
    {CKA_VALUE_LEN, &vlen, sizeof vlen},
    {CKA_LABEL, label, strlen(label)},
    {CKA_TOKEN, &t, sizeof t},
    {CKA_PRIVATE, &t, sizeof t},
    {CKA_SENSITIVE, &t, sizeof t},
    {CKA_EXTRACTABLE, &f, sizeof f},
    {CKA_WRAP, &r, sizeof r},
    {CKA_UNWRAP, &r, sizeof r},
    {CKA_SIGN, &m, sizeof m},
    {CKA_VERIFY, &f, sizeof f},
    {CKA_ENCRYPT, &f, sizeof f},
    {CKA_DECRYPT, &f, sizeof f},
    {CKA_DERIVE, &f, sizeof f},
  };
  CK_MECHANISM mech = {root ? CKM_AES_KEY_GEN : CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
  CK_RV rv = st->f->C_GenerateKey(st->s, &mech, tmpl, sizeof tmpl / sizeof tmpl[0], out);
  if (rv != CKR_OK)
    return kh_adderr(hsm_err("C_GenerateKey", rv), "generating %s", label);
  return KH_OK;
}

/* ---- backend operations ------------------------------------------------ */

static kh_err p_wrap_dk(void *p, uint32_t v, const uint8_t dk[32], const uint8_t *hdr,
                        kh_buf *out)
{
  p11_state *st = p;
  kh_err e = KH_OK;
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  uint8_t w[64];
  CK_ULONG wlen = sizeof w;
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_BBOOL t = CK_TRUE, f = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {
    {CKA_CLASS, &cls, sizeof cls},
    {CKA_KEY_TYPE, &kt, sizeof kt},
    {CKA_TOKEN, &f, sizeof f},
    {CKA_PRIVATE, &t, sizeof t},
    {CKA_SENSITIVE, &f, sizeof f},
    {CKA_EXTRACTABLE, &t, sizeof t},
    {CKA_VALUE, (void *)dk, 32},
  };
  CK_MECHANISM mech = {st->wrap_mech, NULL, 0};

  pthread_mutex_lock(&st->mu);
  CK_RV rv = st->f->C_CreateObject(st->s, tmpl, sizeof tmpl / sizeof tmpl[0], &h);
  if (rv != CKR_OK) {
    e = hsm_err("C_CreateObject (data key)", rv);
    goto out;
  }
  rv = st->f->C_WrapKey(st->s, &mech, st->keys[v], h, w, &wlen);
  if (rv != CKR_OK) {
    e = hsm_err("C_WrapKey", rv);
    goto out;
  }
  if (wlen != KWP_BYTES) {
    e = kh_seterr(KH_ERR_HSM, "C_WrapKey returned %lu bytes, not %d", (unsigned long)wlen,
                  KWP_BYTES);
    goto out;
  }
  e = kh_buf_append(out, w, KWP_BYTES);
out:
  if (h != CK_INVALID_HANDLE)
    st->f->C_DestroyObject(st->s, h);
  pthread_mutex_unlock(&st->mu);
  return e;
}

static kh_err p_unwrap_dk(void *p, uint32_t v, const uint8_t *w, size_t wlen,
                          const uint8_t *hdr, uint8_t dk[32])
{
  p11_state *st = p;
  kh_err e = KH_OK;
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_BBOOL t = CK_TRUE, f = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {
    {CKA_CLASS, &cls, sizeof cls},
    {CKA_KEY_TYPE, &kt, sizeof kt},
    {CKA_TOKEN, &f, sizeof f},
    {CKA_PRIVATE, &t, sizeof t},
    {CKA_SENSITIVE, &f, sizeof f},
    {CKA_EXTRACTABLE, &t, sizeof t},
  };
  CK_MECHANISM mech = {st->wrap_mech, NULL, 0};
  CK_ATTRIBUTE val = {CKA_VALUE, dk, 32};

  sodium_memzero(dk, 32);
  if (wlen != KWP_BYTES)
    return KH_ERR_AUTH;
  pthread_mutex_lock(&st->mu);
  CK_RV rv = st->f->C_UnwrapKey(st->s, &mech, st->keys[v], (CK_BYTE_PTR)w, wlen, tmpl,
                                sizeof tmpl / sizeof tmpl[0], &h);
  if (rv != CKR_OK) {
    e = rv_is_infrastructure(rv) ? hsm_err("C_UnwrapKey", rv) : KH_ERR_AUTH;
    goto out;
  }
  rv = st->f->C_GetAttributeValue(st->s, h, &val, 1);
  if (rv != CKR_OK || val.ulValueLen != 32) {
    e = rv == CKR_OK ? KH_ERR_AUTH : hsm_err("C_GetAttributeValue (data key)", rv);
    goto out;
  }
out:
  if (h != CK_INVALID_HANDLE)
    st->f->C_DestroyObject(st->s, h);
  pthread_mutex_unlock(&st->mu);
  if (e)
    sodium_memzero(dk, 32);
  return e;
}

static bool p_has_version(void *p, uint32_t v)
{
  p11_state *st = p;
  return v >= 1 && v <= KH_ROOTKEY_VERSIONS_MAX && st->keys[v] != CK_INVALID_HANDLE;
}

static kh_err p_rotate(void *p, uint32_t newv)
{
  p11_state *st = p;
  kh_err e = KH_OK;
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  pthread_mutex_lock(&st->mu);
  /* Another holder of the token may have rotated since we opened. */
  CK_OBJECT_HANDLE saved[KH_ROOTKEY_VERSIONS_MAX + 1];
  CK_OBJECT_HANDLE saved_mac = st->mac;
  memcpy(saved, st->keys, sizeof saved);
  memset(st->keys, 0, sizeof st->keys);
  st->mac = CK_INVALID_HANDLE;
  e = scan_keys(st);
  bool taken = !e && st->keys[newv] != CK_INVALID_HANDLE;
  memcpy(st->keys, saved, sizeof saved);
  st->mac = saved_mac;
  if (e)
    goto out;
  if (taken) {
    e = kh_seterr(KH_ERR_EXISTS, "token already holds %s.v%u (rotated elsewhere; reopen)",
                  st->label, (unsigned)newv);
    goto out;
  }
  e = generate(st, newv, &h);
  if (e)
    goto out;
  st->keys[newv] = h;
out:
  pthread_mutex_unlock(&st->mu);
  return e;
}

static kh_err p_derive(void *p, const uint8_t *msg, size_t mlen, uint8_t out[32])
{
  p11_state *st = p;
  kh_err e = KH_OK;
  CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
  uint8_t mac[64];
  CK_ULONG maclen = sizeof mac;
  pthread_mutex_lock(&st->mu);
  CK_RV rv = st->f->C_SignInit(st->s, &mech, st->mac);
  if (rv != CKR_OK) {
    e = hsm_err("C_SignInit", rv);
    goto out;
  }
  rv = st->f->C_Sign(st->s, (CK_BYTE_PTR)msg, mlen, mac, &maclen);
  if (rv != CKR_OK) {
    e = hsm_err("C_Sign", rv);
    goto out;
  }
  if (maclen != 32) {
    e = kh_seterr(KH_ERR_HSM, "HMAC-SHA256 returned %lu bytes", (unsigned long)maclen);
    goto out;
  }
  memcpy(out, mac, 32);
out:
  pthread_mutex_unlock(&st->mu);
  sodium_memzero(mac, sizeof mac);
  return e;
}

static const kh_rootkey_ops pkcs11_ops = {
  .backend = KH_ROOTKEY_BACKEND_PKCS11,
  .alg = KH_ROOTKEY_ALG_AESKWP,
  .wrapped_len = KWP_BYTES,
  .kind = "pkcs11",
  .wrap_dk = p_wrap_dk,
  .unwrap_dk = p_unwrap_dk,
  .has_version = p_has_version,
  .rotate = p_rotate,
  .derive = p_derive,
  .free = state_free,
};

kh_err kh_rootkey_pkcs11_open(const char *module, const char *token_label,
                              const kh_secret *pin, const char *key_label, bool create,
                              kh_rootkey **out)
{
  kh_err e = KH_OK;
  p11_state *st = NULL;
  CK_SLOT_ID slot = 0;
  CK_RV rv;
  uint32_t current = 0;
  *out = NULL;

  if (!module || !*module || !token_label || !*token_label || strlen(token_label) > 32) {
    e = kh_seterr(KH_ERR_INVAL, "need a PKCS#11 module path and a token label (<= 32 bytes)");
    goto out;
  }
  if (!kh_rootkey_name_ok(key_label)) {
    e = kh_seterr(KH_ERR_INVAL, "bad key label (1..64 of [A-Za-z0-9._-])");
    goto out;
  }
  if (!pin || !pin->bytes || pin->len == 0) {
    e = kh_seterr(KH_ERR_INVAL, "no PKCS#11 user PIN");
    goto out;
  }
  e = kh_crypto_init();
  if (e)
    goto out;
  st = calloc(1, sizeof *st);
  if (!st) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (pthread_mutex_init(&st->mu, NULL) != 0) {
    free(st);
    st = NULL;
    e = kh_seterr(KH_ERR_NOMEM, "cannot create mutex");
    goto out;
  }
  memcpy(st->label, key_label, strlen(key_label) + 1);
  st->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
  if (!st->dl) {
    const char *why = dlerror();
    e = kh_seterr(KH_ERR_NOTFOUND, "cannot load PKCS#11 module %s: %s", module,
                  why ? why : "?");
    goto out;
  }
  CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(st->dl, "C_GetFunctionList");
  if (!gfl) {
    e = kh_seterr(KH_ERR_HSM, "%s is not a PKCS#11 module (no C_GetFunctionList)", module);
    goto out;
  }
  rv = gfl(&st->f);
  if (rv != CKR_OK || !st->f) {
    e = hsm_err("C_GetFunctionList", rv);
    goto out;
  }
  e = module_acquire(st->dl, st->f);
  if (e)
    goto out;
  st->module_held = true;
  e = find_slot(st, token_label, &slot);
  if (!e) e = pick_mechanisms(st, slot, create);
  if (e)
    goto out;
  rv = st->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &st->s);
  if (rv != CKR_OK) {
    e = hsm_err("C_OpenSession", rv);
    goto out;
  }
  st->have_session = true;
  rv = st->f->C_Login(st->s, CKU_USER, pin->bytes, pin->len);
  if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
    e = kh_seterr(KH_ERR_AUTH, "PKCS#11 login to \"%s\": wrong PIN (%s)", token_label,
                  rv_name(rv));
    goto out;
  }
  if (rv == CKR_PIN_LOCKED) {
    e = kh_seterr(KH_ERR_DENIED, "PKCS#11 token \"%s\": PIN locked", token_label);
    goto out;
  }
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    e = hsm_err("C_Login", rv);
    goto out;
  }
  e = scan_keys(st);
  if (e)
    goto out;
  for (uint32_t v = 1; v <= KH_ROOTKEY_VERSIONS_MAX; v++)
    if (st->keys[v] != CK_INVALID_HANDLE)
      current = v;
  /* check what exists before adding anything next to it */
  e = check_keys(st, current);
  if (e)
    goto out;
  if (!current || st->mac == CK_INVALID_HANDLE) {
    if (!create) {
      e = kh_seterr(KH_ERR_NOTFOUND, "token \"%s\" holds no root key \"%s\"%s", token_label,
                    key_label, current ? " mac key" : "");
      goto out;
    }
    /* Only a token without any version gets a new version 1: a retired v1
     * next to a live v2 is not recreated. */
    if (!current) {
      e = generate(st, 1, &st->keys[1]);
      if (e)
        goto out;
      current = 1;
    }
    if (st->mac == CK_INVALID_HANDLE) {
      e = generate(st, 0, &st->mac);
      if (e)
        goto out;
    }
  }
  e = check_keys(st, current);
  if (e)
    goto out;
  e = kh_rootkey_backend_new(&pkcs11_ops, st, key_label, current, out);
  st = NULL;
out:
  state_free(st);
  return e;
}
