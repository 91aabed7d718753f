/* The key service behind the server (docs/protocol.md §10): the rows under
 * /v1/accounts/<account>/kms.  The server holds one kh_kms handle
 * (kd_server.kms, opened at serve); every operation is logged by the key
 * service before it takes effect, exactly as for the embedded region.
 *
 * Requests that change what the key service holds for an account are
 * device-signed over the exact log entry (prepare / sign / commit): prepare
 * answers the entry and remembers it under a one-use id for
 * KH_KMS_PRESIGNED_WINDOW seconds; commit hands the remembered entry, the
 * device's signature and the device's key from the metadata store to the
 * key service, which checks them all before it appends (kh_kms_*_signed). */
#include "keyholdd.h"
#include "keyhold/json.h"
#include "keyhold/keysvc.h"
#include "keyhold/proto.h"
#include "keyhold/remote.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACCOUNT_SEG 2              /* /v1/accounts/<a>/kms... */
#define PREPARED_MAX 1024          /* prepared requests in the server */
#define PREPARED_PER_ACCOUNT 8     /* ... per account */
#define REASON_MAX 512             /* docs/log.md §5 */

/* ---- prepared requests (memory only: a restart forgets them, the device
 * prepares again) --------------------------------------------------------- */

typedef struct prepared {
  char id[33];
  char account[33], device[33];
  kh_log_op op;
  char *entry;                     /* malloc'd, NULL: free slot */
  size_t len;
  int64_t expires;
} prepared;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static prepared g_prep[PREPARED_MAX];

/* Remember entry (taken over) for account/device/op: 0 and id, or the
 * HTTP status to refuse with (429: too many for the account, 503: full). */
static unsigned prep_put(const char *account, const char *device, kh_log_op op, char *entry,
                         size_t len, char id[33])
{
  int64_t now = (int64_t)time(NULL);
  unsigned status = 503, mine = 0;
  prepared *slot = NULL;
  pthread_mutex_lock(&g_mu);
  for (size_t i = 0; i < PREPARED_MAX; i++) {
    prepared *p = &g_prep[i];
    if (p->entry && p->expires < now) {
      free(p->entry);
      p->entry = NULL;
    }
    if (!p->entry && !slot)
      slot = p;
    else if (p->entry && !strcmp(p->account, account))
      mine++;
  }
  if (mine >= PREPARED_PER_ACCOUNT) {
    status = 429;
  } else if (slot) {
    uint8_t r[16];
    randombytes_buf(r, sizeof r);
    sodium_bin2hex(slot->id, sizeof slot->id, r, sizeof r);
    snprintf(slot->account, sizeof slot->account, "%s", account);
    snprintf(slot->device, sizeof slot->device, "%s", device);
    slot->op = op;
    slot->entry = entry;
    slot->len = len;
    slot->expires = now + KH_KMS_PRESIGNED_WINDOW;
    memcpy(id, slot->id, 33);
    entry = NULL;
    status = 0;
  }
  pthread_mutex_unlock(&g_mu);
  free(entry);
  return status;
}

/* Take (and forget) the prepared request id of account/device: its op and
 * entry (malloc'd, the caller frees), or NULL if unknown, expired or
 * another's. */
static char *prep_take(const char *id, const char *account, const char *device, kh_log_op *op,
                       size_t *len)
{
  char *entry = NULL;
  int64_t now = (int64_t)time(NULL);
  pthread_mutex_lock(&g_mu);
  for (size_t i = 0; i < PREPARED_MAX; i++) {
    prepared *p = &g_prep[i];
    if (!p->entry || strcmp(p->id, id))
      continue;
    if (p->expires >= now && !strcmp(p->account, account) && !strcmp(p->device, device)) {
      entry = p->entry;
      *op = p->op;
      *len = p->len;
    } else {
      free(p->entry);
    }
    p->entry = NULL;
    break;
  }
  pthread_mutex_unlock(&g_mu);
  return entry;
}

/* ---- helpers ---------------------------------------------------------------- */

static bool hex32(const char *s)
{
  if (!s || strlen(s) != 32)
    return false;
  for (size_t i = 0; i < 32; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

/* The key service's refusal as an HTTP answer (docs/protocol.md §10). */
static void kms_error(kd_response *rs, kh_err e)
{
  const char *d = kh_errdetail();
  char msg[300];
  snprintf(msg, sizeof msg, "%s%s%s", kh_strerror(e), d && *d ? ": " : "", d && *d ? d : "");
  switch (e) {
  case KH_ERR_EXISTS: kd_error(rs, 409, "exists", msg); break;
  case KH_ERR_STATE: kd_error(rs, 409, "end_to_end", msg); break;
  case KH_ERR_INVAL: kd_error(rs, 400, "bad_request", msg); break;
  case KH_ERR_NOTFOUND: kd_error(rs, 404, "not_found", msg); break;
  case KH_ERR_AUTH: kd_error(rs, 401, "bad_signature", msg); break;
  case KH_ERR_DENIED: kd_error(rs, 403, "denied", msg); break;
  case KH_ERR_LOG:
  case KH_ERR_ROLLBACK:
    kd_error(rs, 503, "unavailable", "the key service cannot write its log: nothing done");
    break;
  default: kd_error(rs, 500, "internal", "the key service failed"); break;
  }
}

/* The account of the path, which must be the caller's, with cap. */
static bool account_of(const kd_request *rq, unsigned cap, char account[33], kd_response *rs)
{
  if (!kd_path_segment(rq->path, ACCOUNT_SEG, account, 33) || !hex32(account)) {
    kd_error(rs, 400, "bad_request", "not an account id");
    return false;
  }
  return kd_require(rq, account, cap, rs);
}

/* The body as a JSON object with exactly the members named (and no
 * others), else 400. */
static kh_json *body_object(const kd_request *rq, size_t members, kd_response *rs)
{
  kh_json *j = NULL;
  if (!rq->body || kh_json_parse((const char *)rq->body, rq->body_len, &j) != KH_OK ||
      kh_json_type_of(j) != KH_JSON_OBJ || kh_json_len(j) != members) {
    kh_json_free(j);
    kd_error(rs, 400, "bad_request", "malformed body (docs/protocol.md §10)");
    return NULL;
  }
  return j;
}

static bool b64_member(const kh_json *j, const char *name, uint8_t *out, size_t n)
{
  const char *v = kh_json_get_str(j, name);
  return v && kh_proto_unb64(v, out, n) == KH_OK;
}

static bool reason_ok(const char *r)
{
  size_t l = r ? strlen(r) : 0;
  if (l < 1 || l > REASON_MAX || r[0] == ' ' || r[l - 1] == ' ')
    return false;
  for (size_t i = 0; i < l; i++)
    if ((unsigned char)r[i] < 0x20 || r[i] == 0x7f)
      return false;
  return true;
}

/* ---- GET /v1/accounts/<a>/kms ------------------------------------------------ */

static void get_status(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char account[33], buf[320];
  bool has = false, gone = false;
  kh_kms_escrow_info ei;
  if (!account_of(rq, 0, account, rs))
    return;
  kh_err e = kh_kms_has_wrap(s->kms, account, &has);
  if (!e)
    e = kh_kms_account_destroyed(s->dir, account, &gone);
  if (!e)
    e = kh_kms_escrow_status(s->kms, account, &ei);
  if (e) {
    kms_error(rs, e);
    return;
  }
  int n = snprintf(buf, sizeof buf,
                   "{\"account\":\"%s\",\"wrap\":%s,\"destroyed\":%s,\"escrow\":{\"present\":%s,"
                   "\"destroyed\":%s,\"failed\":%u,\"attempts\":%llu}}\n",
                   account, has ? "true" : "false", gone ? "true" : "false",
                   ei.present ? "true" : "false", ei.destroyed ? "true" : "false", ei.failed,
                   (unsigned long long)ei.attempts);
  kd_json(rs, 200, buf, (size_t)n);
}

/* ---- POST /v1/accounts/<a>/kms/wrap (admin) ------------------------------------ */

static void post_wrap(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char account[33], reason[128], out[160];
  kh_json *j = NULL;
  uint8_t *key = sodium_malloc(32);
  int64_t cipher = 0;
  if (!key) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  if (!account_of(rq, KH_CAP_ADMIN, account, rs) || !(j = body_object(rq, 2, rs)))
    goto out;
  if (!b64_member(j, "key", key, 32) || !kh_json_get_int(j, "cipher", &cipher) ||
      (cipher != 1 && cipher != 2)) {
    kd_error(rs, 400, "bad_request", "body must be {\"key\":<base64 32 bytes>,\"cipher\":1|2}");
    goto out;
  }
  /* requester "init" as for the embedded region (docs/log.md §5.1); the
   * device that asked is named in the reason */
  snprintf(reason, sizeof reason, "standard protection at account creation (device %s)",
           rq->caller->device);
  kh_kms_request krq = {"init", reason, NULL, NULL, NULL};
  kh_err e = kh_kms_wrap(s->kms, account, key, (int)cipher, &krq);
  if (e) {
    kms_error(rs, e);
    goto out;
  }
  int n = snprintf(out, sizeof out, "{\"account\":\"%s\",\"protection\":\"standard\"}\n",
                   account);
  kd_json(rs, 201, out, (size_t)n);
out:
  sodium_free(key);
  kh_json_free(j);
}

/* ---- POST /v1/accounts/<a>/kms/prepare (admin) --------------------------------- */

static bool op_parse(const char *s, kh_log_op *op)
{
  if (!s)
    return false;
  if (!strcmp(s, "destroy"))
    *op = KH_LOG_OP_DESTROY;
  else if (!strcmp(s, "escrow-enable"))
    *op = KH_LOG_OP_ESCROW_ENABLE;
  else if (!strcmp(s, "unwrap"))
    *op = KH_LOG_OP_UNWRAP;
  else
    return false;
  return true;
}

static void post_prepare(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char account[33], id[33];
  kh_json *j = NULL;
  char *entry = NULL, *buf = NULL;
  size_t len = 0;
  kh_log_op op;
  if (!account_of(rq, KH_CAP_ADMIN, account, rs) || !(j = body_object(rq, 2, rs)))
    goto out;
  const char *reason = kh_json_get_str(j, "reason");
  if (!op_parse(kh_json_get_str(j, "op"), &op) || !reason_ok(reason)) {
    kd_error(rs, 400, "bad_request", "body must be {\"op\":\"destroy\"|\"escrow-enable\"|"
             "\"unwrap\",\"reason\":<1..512 printable bytes>}");
    goto out;
  }
  kh_err e = kh_kms_prepare(s->kms, op, account, rq->caller->device, reason, &entry, &len);
  if (e) {
    kms_error(rs, e);
    goto out;
  }
  size_t cap = 2 * len + 256;
  if (!(buf = malloc(cap))) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  size_t o = (size_t)snprintf(buf, cap, "{\"entry\":");
  o = kd_json_str(buf, cap, o, entry);
  unsigned st = prep_put(account, rq->caller->device, op, entry, len, id);
  entry = NULL;
  if (st == 429) {
    kd_error(rs, 429, "rate_limited", "too many prepared key-service requests for this account");
    kd_header_add(rs, "Retry-After", "60");
    goto out;
  }
  if (st) {
    kd_error(rs, 503, "unavailable", "too many prepared key-service requests");
    kd_header_add(rs, "Retry-After", "10");
    goto out;
  }
  if (o < cap)
    o += (size_t)snprintf(buf + o, cap - o, ",\"prepare\":\"%s\",\"expires\":%lld}\n", id,
                          (long long)time(NULL) + KH_KMS_PRESIGNED_WINDOW);
  if (o >= cap) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  kd_json(rs, 201, buf, o);
out:
  free(entry);
  free(buf);
  kh_json_free(j);
}

/* ---- POST /v1/accounts/<a>/kms/commit (admin) ----------------------------------- */

static void post_commit(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char account[33];
  kh_json *j = NULL;
  char *entry = NULL;
  size_t len = 0;
  kh_log_op op = KH_LOG_OP_WRAP;
  uint8_t sig[64], *key = sodium_malloc(32), sealed[KH_DEVICE_WRAP_LEN];
  kh_secret *secret = NULL;
  kh_kms_release rel;
  kh_meta_device d;
  memset(&rel, 0, sizeof rel);
  if (!key) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  if (!account_of(rq, KH_CAP_ADMIN, account, rs))
    goto out;
  if (!rq->body || kh_json_parse((const char *)rq->body, rq->body_len, &j) != KH_OK ||
      kh_json_type_of(j) != KH_JSON_OBJ) {
    kd_error(rs, 400, "bad_request", "malformed body (docs/protocol.md §10.2)");
    goto out;
  }
  const char *pid = kh_json_get_str(j, "prepare");
  if (!hex32(pid) || !b64_member(j, "sig", sig, sizeof sig)) {
    kd_error(rs, 400, "bad_request", "body must name a prepared request and its signature");
    goto out;
  }
  if (!(entry = prep_take(pid, account, rq->caller->device, &op, &len))) {
    kd_error(rs, 404, "not_found", "no such prepared request (expired, used, or another "
             "device's): prepare again");
    goto out;
  }
  /* the device's key as the server knows it: the key service checks the
   * signature with it (a revoked device never gets here) */
  kh_err e = kh_meta_device_get(s->meta, rq->caller->device, &d);
  if (e) {
    kd_error(rs, 500, "internal", "the metadata store failed");
    goto out;
  }
  kh_kms_presigned ps = {entry, len, rq->caller->device, sig, d.sign_pk};
  char buf[512];
  int n = 0;
  if (op == KH_LOG_OP_DESTROY) {
    if (kh_json_len(j) != 2) {
      kd_error(rs, 400, "bad_request", "a destroy commit takes only prepare and sig");
      goto out;
    }
    if ((e = kh_kms_destroy_signed(s->kms, account, &ps))) {
      kms_error(rs, e);
      goto out;
    }
    n = snprintf(buf, sizeof buf, "{\"op\":\"destroy\",\"account\":\"%s\"}\n", account);
  } else if (op == KH_LOG_OP_ESCROW_ENABLE) {
    int64_t cipher = 0;
    uint8_t sb[32];
    if (kh_json_len(j) != 5 || !b64_member(j, "key", key, 32) ||
        !kh_json_get_int(j, "cipher", &cipher) || (cipher != 1 && cipher != 2) ||
        !b64_member(j, "secret", sb, sizeof sb)) {
      kd_error(rs, 400, "bad_request", "an escrow-enable commit takes prepare, sig, key, "
               "cipher and secret");
      goto out;
    }
    secret = kh_secret_new(sb, sizeof sb);
    sodium_memzero(sb, sizeof sb);
    if (!secret) {
      kd_error(rs, 500, "internal", "out of memory");
      goto out;
    }
    if ((e = kh_kms_escrow_enable_signed(s->kms, account, key, (int)cipher, secret, &ps))) {
      kms_error(rs, e);
      goto out;
    }
    n = snprintf(buf, sizeof buf, "{\"op\":\"escrow-enable\",\"account\":\"%s\"}\n", account);
  } else {
    if (kh_json_len(j) != 2) {
      kd_error(rs, 400, "bad_request", "an unwrap commit takes only prepare and sig");
      goto out;
    }
    if ((e = kh_kms_unwrap_signed(s->kms, account, &ps, &rel))) {
      kms_error(rs, e);
      goto out;
    }
    /* the key leaves sealed to the asking device's own X25519 key */
    if ((e = kh_device_wrap_seal(d.box_pk, rel.key, rel.cipher, sealed))) {
      kms_error(rs, e);
      goto out;
    }
    char w[4 * ((KH_DEVICE_WRAP_LEN + 2) / 3) + 1];
    kh_proto_b64(sealed, sizeof sealed, w);
    n = snprintf(buf, sizeof buf, "{\"op\":\"unwrap\",\"account\":\"%s\",\"wrap\":\"%s\","
                 "\"index\":%llu}\n", account, w, (unsigned long long)rel.index);
  }
  kd_json(rs, 200, buf, (size_t)n);
out:
  kh_kms_release_clear(&rel);
  kh_secret_free(secret);
  sodium_free(key);
  if (entry)
    free(entry);
  kh_json_free(j);
}

/* ---- POST /v1/accounts/<a>/kms/escrow/recover (no session) -------------------- */

/* A fresh device with only the escrow passcode's derivative.  The attempt
 * is counted and logged by the key service before it is judged
 * (kh_kms_escrow_recover); on the right one the device is added to the
 * account (all capabilities) and its kind-4 wrap stored. */
static void post_recover(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char account[33], *st = NULL, name[KH_META_NAME_MAX + 1];
  size_t stlen = 0;
  kh_json *j = NULL;
  kh_secret *secret = NULL;
  kh_kms_release rel;
  kh_meta_device d;
  uint8_t sig[64], sb[32], wrap[KH_DEVICE_WRAP_LEN];
  uint32_t left = 0;
  memset(&rel, 0, sizeof rel);
  memset(&d, 0, sizeof d);
  if (!kd_path_segment(rq->path, ACCOUNT_SEG, account, sizeof account) || !hex32(account)) {
    kd_error(rs, 400, "bad_request", "not an account id");
    goto out;
  }
  if (!(j = body_object(rq, 6, rs)))
    goto out;
  const char *nm = kh_json_get_str(j, "name"), *spk = kh_json_get_str(j, "sign_pk"),
             *bpk = kh_json_get_str(j, "box_pk"), *ch = kh_json_get_str(j, "challenge");
  size_t nl = nm ? strlen(nm) : 0;
  bool name_ok = nl >= 1 && nl <= KH_META_NAME_MAX;
  for (size_t i = 0; name_ok && i < nl; i++)
    name_ok = (unsigned char)nm[i] >= 0x20 && nm[i] != 0x7f;
  if (!name_ok || !spk || kh_proto_unb64(spk, d.sign_pk, 32) || !bpk ||
      kh_proto_unb64(bpk, d.box_pk, 32) || !ch || !b64_member(j, "sig", sig, sizeof sig) ||
      !b64_member(j, "secret", sb, sizeof sb)) {
    kd_error(rs, 400, "bad_request", "escrow recovery body malformed (§10.4)");
    goto out;
  }
  snprintf(name, sizeof name, "%s", nm);
  if (!kd_challenge_spend(s, ch)) {
    kd_error(rs, 401, "bad_challenge", "challenge malformed, forged, expired or used");
    goto out;
  }
  if (kh_keysvc_recover_statement(s->instance, ch, account, spk, bpk, name, &st, &stlen) ||
      crypto_sign_verify_detached(sig, (const uint8_t *)st, stlen, d.sign_pk) != 0) {
    kd_error(rs, 401, "bad_signature", "the recovery request's signature does not verify");
    goto out;
  }
  kh_meta_account acc;
  kh_err e = kh_meta_account_get(s->meta, account, &acc);
  if (e == KH_ERR_NOTFOUND) {
    kd_error(rs, 404, "not_found", "no such account");
    goto out;
  }
  if (e) {
    kd_error(rs, 500, "internal", "the metadata store failed");
    goto out;
  }
  if (!(secret = kh_secret_new(sb, sizeof sb))) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  char reason[160];
  snprintf(reason, sizeof reason, "escrow recovery for a new device (%.64s)", name);
  for (char *c = reason; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f)
      *c = '?';
  kh_kms_request krq = {"account holder (escrow recover)", reason, NULL, NULL, NULL};
  e = kh_kms_escrow_recover(s->kms, account, secret, &krq, &rel, &left);
  if (e == KH_ERR_PASSCODE) {
    /* an attempt made (counted and logged) and judged: an answer, not a
     * refusal of the request */
    char buf[200];
    int n = snprintf(buf, sizeof buf, "{\"account\":\"%s\",\"recovered\":false,\"left\":%u}\n",
                     account, left);
    kd_json(rs, 200, buf, (size_t)n);
    goto out;
  }
  if (e == KH_ERR_STATE) {
    kd_error(rs, 409, "end_to_end", "the account is end-to-end protected: no escrow");
    goto out;
  }
  if (e) {
    kms_error(rs, e);
    goto out;
  }
  /* the new device: its wrap first, then its record (a device the server
   * lists always has its key) */
  uint8_t r[16];
  char obj[128];
  randombytes_buf(r, sizeof r);
  sodium_bin2hex(d.id, sizeof d.id, r, sizeof r);
  snprintf(d.account, sizeof d.account, "%s", account);
  snprintf(d.name, sizeof d.name, "%s", name);
  d.caps = KH_CAP_ALL;
  d.enrolled = (int64_t)time(NULL);
  snprintf(obj, sizeof obj, "accounts/%s/keys/%s", account, d.id);
  if ((e = kh_device_wrap_seal(d.box_pk, rel.key, rel.cipher, wrap)) ||
      (e = kh_store_put(s->store, obj, wrap, sizeof wrap, true)) ||
      (e = kh_meta_device_add(s->meta, &d))) {
    kd_error(rs, 500, "internal", "the new device could not be recorded");
    goto out;
  }
  kh_meta_usage_add(s->meta, account, (int64_t)sizeof wrap, false);
  char w[4 * ((KH_DEVICE_WRAP_LEN + 2) / 3) + 1], buf[512];
  kh_proto_b64(wrap, sizeof wrap, w);
  int n = snprintf(buf, sizeof buf, "{\"account\":\"%s\",\"recovered\":true,\"device\":\"%s\","
                   "\"caps\":[\"backup\",\"read\",\"prune\",\"admin\"],\"wrap\":\"%s\","
                   "\"index\":%llu}\n", account,
                   d.id, w, (unsigned long long)rel.index);
  kd_json(rs, 200, buf, (size_t)n);
out:
  sodium_memzero(sb, sizeof sb);
  kh_kms_release_clear(&rel);
  kh_secret_free(secret);
  free(st);
  kh_json_free(j);
}

const kd_row kd_routes_keysvc[] = {
  {"/v1/accounts/*/kms", false, KD_GET | KD_HEAD, KD_ROUTE_KMS, KD_PROTO | KD_AUTH, get_status,
   NULL, NULL},
  {"/v1/accounts/*/kms/wrap", false, KD_POST, KD_ROUTE_KMS, KD_PROTO | KD_AUTH | KD_JSON,
   post_wrap, NULL, NULL},
  {"/v1/accounts/*/kms/prepare", false, KD_POST, KD_ROUTE_KMS, KD_PROTO | KD_AUTH | KD_JSON,
   post_prepare, NULL, NULL},
  {"/v1/accounts/*/kms/commit", false, KD_POST, KD_ROUTE_KMS, KD_PROTO | KD_AUTH | KD_JSON,
   post_commit, NULL, NULL},
  {"/v1/accounts/*/kms/escrow/recover", false, KD_POST, KD_ROUTE_KMS,
   KD_PROTO | KD_JSON | KD_RATE_ADDR, post_recover, NULL, NULL},
};
const size_t kd_routes_keysvc_n = sizeof kd_routes_keysvc / sizeof kd_routes_keysvc[0];
