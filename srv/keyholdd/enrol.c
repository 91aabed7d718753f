/* Devices and their enrolment by approval code (docs/protocol.md §9):
 * the device list, revocation, and the enrolment endpoints.  Every change
 * to an account's devices is a device statement (docs/log.md §5.2) that the
 * key service appends to the region's log before the change is recorded. */
#include "keyholdd.h"
#include "keyhold/enrol.h"
#include "keyhold/json.h"
#include "keyhold/meta.h"
#include "keyhold/proto.h"
#include "keyhold/store.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void ok_json(kd_response *rs, unsigned status, char *body, size_t len)
{
  kd_ok(rs, "application/json", "no-store", (uint8_t *)body, len);
  rs->status = status;
}

static void ok_text(kd_response *rs, unsigned status, const char *text)
{
  kd_json(rs, status, text, strlen(text));
}

/* The path's segment i as a 32-hex id, else 404 (no such thing). */
static bool id_segment(const kd_request *rq, unsigned i, char out[33], kd_response *rs)
{
  if (!kd_path_segment(rq->path, i, out, 33) || !kh_enrol_id_valid(out)) {
    kd_error(rs, 404, "not_found", "no such device or enrolment");
    return false;
  }
  return true;
}

/* /v1/accounts/<a>/...: the path's account must be the caller's, with cap. */
static bool account_ok(const kd_request *rq, unsigned cap, char account[33], kd_response *rs)
{
  if (!kd_path_segment(rq->path, 2, account, 33) || !kh_enrol_id_valid(account)) {
    kd_error(rs, 400, "bad_request", "not an account id");
    return false;
  }
  return kd_require(rq, account, cap, rs);
}

static void meta_error(kd_response *rs, kh_err e, const char *what)
{
  char msg[256];
  snprintf(msg, sizeof msg, "%s", what);
  if (e == KH_ERR_NOTFOUND)
    kd_error(rs, 404, "not_found", msg);
  else if (e == KH_ERR_EXISTS)
    kd_error(rs, 409, "exists", msg);
  else
    kd_error(rs, 500, "internal", "the metadata store failed");
}

/* A device statement checked against what the request says it is
 * (docs/protocol.md §9): 0 if it matches, else rs is filled. */
static int check_statement(kd_server *s, const char *entry, size_t len, kh_log_op op,
                           const char *account, const char *subject, const char *signer,
                           const char *reason, kd_response *rs)
{
  kh_log_entry *en = malloc(sizeof *en);
  char *again = NULL, req[48], msg[160] = "";
  size_t alen = 0;
  int64_t now = (int64_t)time(NULL);
  if (!en) {
    kd_error(rs, 500, "internal", "out of memory");
    return -1;
  }
  snprintf(req, sizeof req, "device:%s", signer);
  if (kh_log_entry_parse(entry, len, en))
    snprintf(msg, sizeof msg, "the statement is not a log entry: %s", kh_errdetail());
  else if (kh_log_entry_format(en, &again, &alen) || alen != len || memcmp(again, entry, len))
    snprintf(msg, sizeof msg, "the statement is not in canonical form");
  else if (en->op != op)
    snprintf(msg, sizeof msg, "the statement's op must be %s", kh_log_op_name(op));
  else if (strcmp(en->region, s->region_id))
    snprintf(msg, sizeof msg, "the statement names another region");
  else if (strcmp(en->account, account))
    snprintf(msg, sizeof msg, "the statement names another account");
  else if (strcmp(en->key, subject))
    snprintf(msg, sizeof msg, "the statement names another device");
  else if (strcmp(en->requester, req) || strncmp(en->device, signer, 32) || en->device[32] != ':')
    snprintf(msg, sizeof msg, "the statement is not by the device that sends it");
  else if (en->time < now - KH_ENROL_SKEW || en->time > now + KH_ENROL_SKEW)
    snprintf(msg, sizeof msg, "the statement's time is more than 5 minutes off");
  else if (strcmp(en->reason, reason))
    snprintf(msg, sizeof msg, "the statement's reason does not describe this change");
  free(again);
  free(en);
  if (msg[0]) {
    kd_error(rs, 400, "bad_request", msg);
    return -1;
  }
  return 0;
}

/* Have the key service append a checked statement signed by signer_pk. */
static int log_statement(kd_server *s, const char *entry, size_t len, const uint8_t pk[32],
                         kd_response *rs)
{
  kh_err e = kh_kms_append_statement(s->kms, entry, len, pk, NULL);
  if (e == KH_ERR_AUTH)
    kd_error(rs, 401, "bad_signature", "the statement's signature does not verify");
  else if (e == KH_ERR_FORMAT)
    kd_error(rs, 400, "bad_request", "the statement is malformed");
  else if (e)
    kd_error(rs, 503, "unavailable", "the region's log cannot be written");
  return e ? -1 : 0;
}

/* ---- GET /v1/accounts/<a>/devices ---- */

typedef struct dev_list {
  kh_enrol_device *v;
  size_t n, cap;
  bool nomem;
} dev_list;

static int collect_device(const kh_meta_device *d, void *ctx)
{
  dev_list *l = ctx;
  if (l->n == l->cap) {
    size_t nc = l->cap ? 2 * l->cap : 8;
    kh_enrol_device *p = nc <= KH_ENROL_DEVICES_MAX ? realloc(l->v, nc * sizeof *p) : NULL;
    if (!p) {
      l->nomem = true;
      return 1;
    }
    l->v = p;
    l->cap = nc;
  }
  kh_enrol_device *o = &l->v[l->n++];
  memset(o, 0, sizeof *o);
  memcpy(o->id, d->id, sizeof o->id);
  memcpy(o->name, d->name, sizeof o->name);
  o->caps = d->caps;
  o->enrolled = d->enrolled;
  o->revoked = d->revoked;
  memcpy(o->sign_pk, d->sign_pk, 32);
  memcpy(o->box_pk, d->box_pk, 32);
  return 0;
}

static void get_devices(kd_server *s, const kd_request *rq, kd_response *rs)
{
  dev_list l = {0};
  char *body = NULL, account[33];
  size_t len = 0;
  if (!account_ok(rq, 0, account, rs))
    return;
  kh_err e = kh_meta_device_list(s->meta, account, collect_device, &l);
  if (e || l.nomem)
    kd_error(rs, 500, "internal", "the device list cannot be read");
  else if (kh_enrol_devices_json(l.v, l.n, &body, &len))
    kd_error(rs, 500, "internal", "out of memory");
  else
    ok_json(rs, 200, body, len);
  free(l.v);
}

/* ---- POST /v1/accounts/<a>/devices/<id>/revoke ---- */

typedef struct admins {
  const char *except;
  unsigned n;
} admins;

static int count_admin(const kh_meta_device *d, void *ctx)
{
  admins *a = ctx;
  if (!d->revoked && (d->caps & KH_CAP_ADMIN) && strcmp(d->id, a->except))
    a->n++;
  return 0;
}

static void post_revoke(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char *entry = NULL, reason[128], out[160], account[33], id[33];
  size_t len = 0;
  kh_meta_device target, signer;
  const kd_caller *c = rq->caller;
  kh_err e;
  if (!account_ok(rq, KH_CAP_ADMIN, account, rs) || !id_segment(rq, 4, id, rs))
    goto out;
  if (kh_enrol_revoke_parse((const char *)rq->body, rq->body_len, &entry, &len)) {
    kd_error(rs, 400, "bad_request", kh_errdetail());
    goto out;
  }
  if ((e = kh_meta_device_get(s->meta, id, &target)) || strcmp(target.account, c->account)) {
    meta_error(rs, e ? e : KH_ERR_NOTFOUND, "the account has no such device");
    goto out;
  }
  if (target.revoked) {
    kd_error(rs, 409, "exists", "the device is already revoked");
    goto out;
  }
  if (target.caps & KH_CAP_ADMIN) {
    admins a = {id, 0};
    if (kh_meta_device_list(s->meta, c->account, count_admin, &a)) {
      kd_error(rs, 500, "internal", "the device list cannot be read");
      goto out;
    }
    if (a.n == 0) {
      kd_error(rs, 403, "missing_capability",
               "the account's last admin device cannot be revoked");
      goto out;
    }
  }
  if ((e = kh_meta_device_get(s->meta, c->device, &signer))) {
    meta_error(rs, e, "the signing device is unknown");
    goto out;
  }
  if (kh_revoke_reason(target.sign_pk, reason, sizeof reason) ||
      check_statement(s, entry, len, KH_LOG_OP_REVOKE, c->account, id, c->device, reason, rs) ||
      log_statement(s, entry, len, signer.sign_pk, rs))
    goto out;
  /* logged: now it takes effect */
  int64_t now = (int64_t)time(NULL);
  e = kh_meta_device_revoke(s->meta, c->account, id, now);
  if (e && e != KH_ERR_STATE) {
    meta_error(rs, e, "the device cannot be revoked");
    goto out;
  }
  kd_sessions_end_device(s, id);
  char name[160];
  snprintf(name, sizeof name, "accounts/%s/keys/%s", c->account, id);
  /* a failure here leaves a wrap the server no longer serves to anyone but
   * an admin; the revocation itself stands */
  (void)kh_store_delete(s->store, name);
  snprintf(out, sizeof out, "{\"device\":\"%s\",\"revoked\":%lld}\n", id, (long long)now);
  ok_text(rs, 200, out);
out:
  free(entry);
}

/* ---- POST /v1/enrolments (no session) ---- */

static void post_enrolment(kd_server *s, const kd_request *rq, kd_response *rs)
{
  kh_enrol_request r;
  kh_meta_enrolment *en = NULL;
  char *st = NULL, out[128];
  size_t sl = 0;
  if (kh_enrol_request_parse((const char *)rq->body, rq->body_len, &r)) {
    kd_error(rs, 400, "bad_request", kh_errdetail());
    goto out;
  }
  if (!kd_challenge_spend(s, r.challenge)) {
    kd_error(rs, 401, "bad_challenge", "challenge malformed, forged, used or expired");
    goto out;
  }
  if (kh_enrol_request_statement(s->instance, &r, &st, &sl)) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  if (crypto_sign_verify_detached(r.sig, (const uint8_t *)st, sl, r.sign_pk) != 0) {
    kd_error(rs, 401, "bad_signature", "the enrolment request's signature does not verify");
    goto out;
  }
  if (!(en = calloc(1, sizeof *en))) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  uint8_t idb[16];
  randombytes_buf(idb, sizeof idb);
  for (size_t i = 0; i < 16; i++)
    snprintf(en->id + 2 * i, 3, "%02x", idb[i]);
  memcpy(en->bucket, r.bucket, 3);
  memcpy(en->name, r.name, sizeof en->name);
  memcpy(en->sign_pk, r.sign_pk, 32);
  memcpy(en->box_pk, r.box_pk, 32);
  memcpy(en->salt, r.salt, 16);
  memcpy(en->tag, r.tag, 32);
  int64_t now = (int64_t)time(NULL);
  /* decided and expired enrolments are kept an hour for their pollers */
  (void)kh_meta_enrol_purge(s->meta, now - 3600);
  en->created = now;
  en->expires = now + KH_ENROL_TTL;
  kh_err e = kh_meta_enrol_add(s->meta, en, now);
  if (e == KH_ERR_NOSPACE) {
    kd_error(rs, 429, "rate_limited", "too many pending enrolments; try again later");
    goto out;
  }
  if (e) {
    meta_error(rs, e, "the enrolment cannot be recorded");
    goto out;
  }
  snprintf(out, sizeof out, "{\"enrolment\":\"%s\",\"expires\":%lld}\n", en->id,
           (long long)en->expires);
  ok_text(rs, 201, out);
out:
  free(st);
  free(en);
}

/* ---- GET /v1/enrolments?bucket=XX (admin) ---- */

#define PEND_BUF (KH_ENROL_LIST_MAX * 640 + 64)

typedef struct pend_list {
  char *buf;
  size_t o;
  unsigned n;
} pend_list;

static int add_pending(const kh_meta_enrolment *e, void *ctx)
{
  pend_list *l = ctx;
  char sp[KH_ENROL_B64_32], bp[KH_ENROL_B64_32], salt[25], tag[KH_ENROL_B64_32];
  if (l->n >= KH_ENROL_LIST_MAX)
    return 1;
  kh_proto_b64(e->sign_pk, 32, sp);
  kh_proto_b64(e->box_pk, 32, bp);
  kh_proto_b64(e->salt, 16, salt);
  kh_proto_b64(e->tag, 32, tag);
  l->o += (size_t)snprintf(l->buf + l->o, PEND_BUF - l->o, "%s{\"enrolment\":\"%s\",\"name\":",
                           l->n ? "," : "", e->id);
  l->o = kd_json_str(l->buf, PEND_BUF, l->o, e->name);
  if (l->o < PEND_BUF)
    l->o += (size_t)snprintf(l->buf + l->o, PEND_BUF - l->o,
                             ",\"sign_pk\":\"%s\",\"box_pk\":\"%s\",\"salt\":\"%s\",\"tag\":\"%s\","
                             "\"created\":%lld}",
                             sp, bp, salt, tag, (long long)e->created);
  l->n++;
  return l->o >= PEND_BUF;
}

static void get_enrolments(kd_server *s, const kd_request *rq, kd_response *rs)
{
  static const char alpha[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  pend_list l = {malloc(PEND_BUF), 0, 0};
  const char *bucket = kd_query(rq, "bucket");
  if (!kd_require(rq, rq->caller->account, KH_CAP_ADMIN, rs))
    goto out;
  if (!bucket || strlen(bucket) != 2 || !strchr(alpha, bucket[0]) || !strchr(alpha, bucket[1])) {
    kd_error(rs, 400, "bad_request", "bucket: the code's first two characters");
    goto out;
  }
  if (!l.buf) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  l.o = (size_t)snprintf(l.buf, PEND_BUF, "{\"enrolments\":[");
  if (kh_meta_enrol_list(s->meta, bucket, (int64_t)time(NULL), add_pending, &l) ||
      l.o >= PEND_BUF - 4) {
    kd_error(rs, 500, "internal", "the enrolments cannot be read");
    goto out;
  }
  l.o += (size_t)snprintf(l.buf + l.o, PEND_BUF - l.o, "]}\n");
  ok_json(rs, 200, l.buf, l.o);
  l.buf = NULL;
out:
  free(l.buf);
}

/* ---- GET /v1/enrolments/<id> (the new device polls) ---- */

static void get_enrolment(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char id[33];
  kh_meta_enrolment *en = calloc(1, sizeof *en);
  const char *ts = kd_header(rq, "KH-Time"), *sig64 = kd_header(rq, "KH-Enrolment-Signature");
  char *st = NULL, *body = NULL;
  size_t sl = 0, bl = 0;
  uint8_t sig[64];
  int64_t now = (int64_t)time(NULL), t = 0;
  kh_err e;
  if (!en) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  if (!id_segment(rq, 2, id, rs))
    goto out;
  char *end = NULL;
  if (!ts || !sig64 || !*ts || strlen(ts) > 12 || strspn(ts, "0123456789") != strlen(ts) ||
      (ts[0] == '0' && ts[1]) || kh_proto_unb64(sig64, sig, 64)) {
    kd_error(rs, 401, "bad_signature", "KH-Time and KH-Enrolment-Signature are required");
    goto out;
  }
  t = (int64_t)strtoll(ts, &end, 10);
  if (t < now - KH_ENROL_SKEW || t > now + KH_ENROL_SKEW) {
    kd_error(rs, 401, "bad_signature", "KH-Time is more than 5 minutes off");
    goto out;
  }
  if ((e = kh_meta_enrol_get(s->meta, id, now, en))) {
    meta_error(rs, e, "no such enrolment");
    goto out;
  }
  if (kh_enrol_poll_statement(id, t, &st, &sl)) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  if (crypto_sign_verify_detached(sig, (const uint8_t *)st, sl, en->sign_pk) != 0) {
    kd_error(rs, 401, "bad_signature", "the poll is not signed by the enrolling device");
    goto out;
  }
  kh_enrol_result r;
  memset(&r, 0, sizeof r);
  switch (en->state) {
  case KH_ENROL_APPROVED:
    r.state = KH_POLL_APPROVED;
    memcpy(r.account, en->account, sizeof r.account);
    memcpy(r.device, en->device, sizeof r.device);
    r.caps = en->caps;
    r.wrap = en->wrap;
    r.wrap_len = en->wrap_len;
    memcpy(r.wrap_tag, en->wrap_tag, 32);
    break;
  case KH_ENROL_REFUSED: r.state = KH_POLL_REFUSED; break;
  case KH_ENROL_EXPIRED: r.state = KH_POLL_EXPIRED; break;
  default: r.state = KH_POLL_PENDING;
  }
  if (kh_enrol_result_json(&r, &body, &bl)) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  ok_json(rs, 200, body, bl);
  body = NULL;
out:
  free(st);
  free(body);
  free(en);
}

/* ---- POST /v1/enrolments/<id>/approve and /refuse (admin) ---- */

static int decided(kd_response *rs, const kh_meta_enrolment *en)
{
  if (en->state == KH_ENROL_EXPIRED) {
    kd_error(rs, 404, "not_found", "the enrolment expired");
    return -1;
  }
  if (en->state != KH_ENROL_PENDING) {
    kd_error(rs, 409, "exists", "the enrolment was already decided");
    return -1;
  }
  return 0;
}

static void post_refuse(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char id[33];
  if (!kd_require(rq, rq->caller->account, KH_CAP_ADMIN, rs) || !id_segment(rq, 2, id, rs))
    return;
  kh_err e = kh_meta_enrol_refuse(s->meta, id, (int64_t)time(NULL));
  if (e == KH_ERR_STATE)
    kd_error(rs, 404, "not_found", "the enrolment expired");
  else if (e == KH_ERR_EXISTS)
    kd_error(rs, 409, "exists", "the enrolment was already decided");
  else if (e)
    meta_error(rs, e, "no such enrolment");
  else
    ok_text(rs, 200, "{\"state\":\"refused\"}\n");
}

static void post_approve(kd_server *s, const kd_request *rq, kd_response *rs)
{
  const kd_caller *c = rq->caller;
  char id[33];
  kh_enrol_approval a;
  kh_meta_enrolment *en = calloc(1, sizeof *en);
  kh_meta_device signer, other;
  char reason[512], name[160], out[160], caps[64];
  int64_t now = (int64_t)time(NULL);
  kh_err e;
  memset(&a, 0, sizeof a);
  if (!en) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  if (!kd_require(rq, c->account, KH_CAP_ADMIN, rs) || !id_segment(rq, 2, id, rs))
    goto out;
  if (kh_enrol_approval_parse((const char *)rq->body, rq->body_len, &a)) {
    kd_error(rs, 400, "bad_request", kh_errdetail());
    goto out;
  }
  if (a.wrap_len > KH_META_WRAP_MAX) {
    kd_error(rs, 400, "bad_request", "the wrap is too large");
    goto out;
  }
  if (!kh_enrol_id_valid(id) || (e = kh_meta_enrol_get(s->meta, id, now, en))) {
    kd_error(rs, 404, "not_found", "no such enrolment");
    goto out;
  }
  if (decided(rs, en))
    goto out;
  if ((e = kh_meta_device_get(s->meta, a.device, &other)) != KH_ERR_NOTFOUND) {
    if (e)
      meta_error(rs, e, "the device id cannot be checked");
    else
      kd_error(rs, 409, "exists", "a device with this id exists");
    goto out;
  }
  if ((e = kh_meta_device_get(s->meta, c->device, &signer))) {
    meta_error(rs, e, "the approving device is unknown");
    goto out;
  }
  if (kh_enrol_reason(a.caps, en->sign_pk, en->box_pk, en->name, reason, sizeof reason)) {
    kd_error(rs, 400, "bad_request", "the enrolment cannot be described");
    goto out;
  }
  if (check_statement(s, a.entry, a.entry_len, KH_LOG_OP_ENROL, c->account, a.device,
                      c->device, reason, rs) ||
      log_statement(s, a.entry, a.entry_len, signer.sign_pk, rs))
    goto out;
  /* logged: now the device gets its key and its record */
  snprintf(name, sizeof name, "accounts/%s/keys/%s", c->account, a.device);
  if ((e = kh_store_put(s->store, name, a.wrap, a.wrap_len, false))) {
    kd_error(rs, 503, "unavailable", "the key object cannot be stored");
    goto out;
  }
  memcpy(en->account, c->account, sizeof en->account);
  memcpy(en->device, a.device, sizeof en->device);
  en->caps = a.caps;
  memcpy(en->wrap, a.wrap, a.wrap_len);
  en->wrap_len = a.wrap_len;
  memcpy(en->wrap_tag, a.wrap_tag, 32);
  memcpy(en->approver, c->device, sizeof en->approver);
  if ((e = kh_meta_enrol_approve(s->meta, id, en, now))) {
    if (e == KH_ERR_STATE)
      kd_error(rs, 404, "not_found", "the enrolment expired");
    else
      meta_error(rs, e, "the enrolment cannot be approved");
    goto out;
  }
  kh_enrol_caps_json(a.caps, caps, sizeof caps);
  snprintf(out, sizeof out, "{\"device\":\"%s\",\"caps\":%s}\n", a.device, caps);
  ok_text(rs, 200, out);
out:
  kh_enrol_approval_release(&a);
  free(en);
}

const kd_row kd_routes_enrol[] = {
  {"/v1/accounts/*/devices", false, KD_GET | KD_HEAD, KD_ROUTE_DEVICES, KD_PROTO | KD_AUTH,
   get_devices, NULL, NULL},
  {"/v1/accounts/*/devices/*/revoke", false, KD_POST, KD_ROUTE_DEVICES,
   KD_PROTO | KD_AUTH | KD_JSON, post_revoke, NULL, NULL},
  {"/v1/enrolments", false, KD_POST, KD_ROUTE_ENROL, KD_PROTO | KD_JSON | KD_RATE_ADDR,
   post_enrolment, NULL, NULL},
  {"/v1/enrolments", false, KD_GET | KD_HEAD, KD_ROUTE_ENROL, KD_PROTO | KD_AUTH, get_enrolments,
   NULL, NULL},
  {"/v1/enrolments/*", false, KD_GET | KD_HEAD, KD_ROUTE_ENROL, KD_PROTO, get_enrolment, NULL,
   NULL},
  {"/v1/enrolments/*/approve", false, KD_POST, KD_ROUTE_ENROL, KD_PROTO | KD_AUTH | KD_JSON,
   post_approve, NULL, NULL},
  {"/v1/enrolments/*/refuse", false, KD_POST, KD_ROUTE_ENROL, KD_PROTO | KD_AUTH, post_refuse,
   NULL, NULL},
};
const size_t kd_routes_enrol_n = sizeof kd_routes_enrol / sizeof kd_routes_enrol[0];
