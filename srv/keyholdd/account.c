/* Region, challenge, sign-up and session rows (docs/protocol.md §7). */
#include "keyholdd.h"
#include "keyhold/json.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void get_region(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char buf[2048];
  size_t o = (size_t)snprintf(buf, sizeof buf, "{\"protocol\":1,\"region\":");
  o = kd_json_str(buf, sizeof buf, o, s->region_id);
  if (o < sizeof buf)
    o += (size_t)snprintf(buf + o, sizeof buf - o, ",\"instance\":\"%s\",\"origin\":", s->instance);
  o = kd_json_str(buf, sizeof buf, o, s->origin);
  if (o < sizeof buf)
    o += (size_t)snprintf(buf + o, sizeof buf - o, ",\"vkey\":");
  o = kd_json_str(buf, sizeof buf, o, s->vkey);
  if (o < sizeof buf)
    o += (size_t)snprintf(buf + o, sizeof buf - o, ",\"signup\":\"%s\"}\n",
                          s->signup_open ? "open" : "invite");
  if (o >= sizeof buf) {
    kd_error(rs, 500, "internal", "region description too long");
    return;
  }
  kd_json(rs, 200, buf, o);
}

static void get_marker(kd_server *s, const kd_request *rq, kd_response *rs)
{
  uint8_t *b = malloc(s->marker_len ? s->marker_len : 1);
  if (!b) {
    kd_error(rs, 500, "internal", "out of memory");
    return;
  }
  memcpy(b, s->marker, s->marker_len);
  kd_ok(rs, "application/octet-stream", "no-store", b, s->marker_len);
}

static void get_challenge(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char c[45], buf[128];
  int64_t exp = 0;
  kd_challenge_new(s, c, &exp);
  int n = snprintf(buf, sizeof buf, "{\"challenge\":\"%s\",\"expires\":%lld}\n", c, (long long)exp);
  kd_json(rs, 200, buf, (size_t)n);
}

/* The JSON object of a request body, or NULL with rs filled (400). */
static kh_json *body_object(const kd_request *rq, kd_response *rs)
{
  kh_json *j = NULL;
  if (!rq->body_len || kh_json_parse((const char *)rq->body, rq->body_len, &j) != KH_OK ||
      kh_json_type_of(j) != KH_JSON_OBJ) {
    kh_json_free(j);
    kd_error(rs, 400, "bad_request", "the body is not a JSON object");
    return NULL;
  }
  return j;
}

/* A device name: 1..64 bytes, no control characters (§7.2). */
static bool name_ok(const char *n)
{
  size_t l = n ? strlen(n) : 0;
  if (l < 1 || l > KH_META_NAME_MAX)
    return false;
  for (size_t i = 0; i < l; i++)
    if ((unsigned char)n[i] < 0x20 || n[i] == 0x7f)
      return false;
  return true;
}

static bool hex32(const char *s)
{
  if (!s || strlen(s) != KH_META_ID_HEX)
    return false;
  for (size_t i = 0; i < KH_META_ID_HEX; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

static void new_id(char out[KH_META_ID_HEX + 1])
{
  uint8_t r[16];
  randombytes_buf(r, sizeof r);
  sodium_bin2hex(out, KH_META_ID_HEX + 1, r, sizeof r);
}

/* ["backup",...] for caps into buf at o. */
static size_t caps_json(char *buf, size_t cap, size_t o, unsigned caps)
{
  static const char *n[4] = {"backup", "read", "prune", "admin"};
  bool first = true;
  if (o < cap)
    o += (size_t)snprintf(buf + o, cap - o, "[");
  for (unsigned i = 0; i < 4 && o < cap; i++)
    if (caps & (1u << i)) {
      o += (size_t)snprintf(buf + o, cap - o, "%s\"%s\"", first ? "" : ",", n[i]);
      first = false;
    }
  if (o < cap)
    o += (size_t)snprintf(buf + o, cap - o, "]");
  return o;
}

static void post_signup(kd_server *s, const kd_request *rq, kd_response *rs)
{
  kh_json *j = body_object(rq, rs);
  char *st = NULL;
  size_t stlen = 0;
  kh_meta_device d;
  uint8_t sig[64], ih[32];
  if (!j)
    return;
  memset(&d, 0, sizeof d);
  const char *name = kh_json_get_str(j, "name"), *spk = kh_json_get_str(j, "sign_pk"),
             *bpk = kh_json_get_str(j, "box_pk"), *ch = kh_json_get_str(j, "challenge"),
             *sg = kh_json_get_str(j, "sig"), *inv = kh_json_get_str(j, "invite");
  const kh_json *invj = kh_json_get(j, "invite");
  if (!name_ok(name) || !spk || kh_proto_unb64(spk, d.sign_pk, 32) != KH_OK || !bpk ||
      kh_proto_unb64(bpk, d.box_pk, 32) != KH_OK || !ch || !sg ||
      kh_proto_unb64(sg, sig, sizeof sig) != KH_OK || (invj && (!inv || !*inv)) ||
      (inv && strlen(inv) > 256)) {
    kd_error(rs, 400, "bad_request", "sign-up body malformed (§7.2)");
    goto out;
  }
  if (!s->signup_open && !inv) {
    kd_error(rs, 403, "invite_required", "this region signs up by invitation only");
    goto out;
  }
  if (!kd_challenge_spend(s, ch)) {
    kd_error(rs, 401, "bad_challenge", "challenge malformed, forged, expired or used");
    goto out;
  }
  if (kh_proto_signup_statement(s->instance, ch, spk, bpk, name, inv, &st, &stlen) != KH_OK) {
    kd_error(rs, 400, "bad_request", "sign-up body malformed (§7.2)");
    goto out;
  }
  if (crypto_sign_verify_detached(sig, (const uint8_t *)st, stlen, d.sign_pk) != 0) {
    kd_error(rs, 401, "bad_signature", "the sign-up signature does not verify");
    goto out;
  }
  new_id(d.account);
  new_id(d.id);
  snprintf(d.name, sizeof d.name, "%s", name);
  d.caps = KH_CAP_ALL;
  d.enrolled = (int64_t)time(NULL);
  if (inv && !s->signup_open)
    crypto_hash_sha256(ih, (const uint8_t *)inv, strlen(inv));
  kh_err e = kh_meta_signup(s->meta, &d, inv && !s->signup_open ? ih : NULL, d.enrolled,
                            s->quota);
  if (e == KH_ERR_DENIED) {
    kd_error(rs, 403, "bad_invite", "the invitation is unknown, spent or expired");
    goto out;
  }
  if (e) {
    kd_error(rs, 500, "internal", "the metadata store failed");
    goto out;
  }
  char buf[256];
  size_t o = (size_t)snprintf(buf, sizeof buf, "{\"account\":\"%s\",\"device\":\"%s\",\"caps\":",
                              d.account, d.id);
  o = caps_json(buf, sizeof buf, o, d.caps);
  o += (size_t)snprintf(buf + o, sizeof buf - o, "}\n");
  kd_json(rs, 201, buf, o);
out:
  free(st);
  kh_json_free(j);
}

static void post_session(kd_server *s, const kd_request *rq, kd_response *rs)
{
  kh_json *j = body_object(rq, rs);
  char *st = NULL, tok[44];
  size_t stlen = 0;
  kh_meta_device d;
  uint8_t sig[64];
  int64_t exp = 0;
  if (!j)
    return;
  const char *acc = kh_json_get_str(j, "account"), *dev = kh_json_get_str(j, "device"),
             *ch = kh_json_get_str(j, "challenge"), *sg = kh_json_get_str(j, "sig");
  if (!hex32(acc) || !hex32(dev) || !ch || !sg || kh_proto_unb64(sg, sig, sizeof sig) != KH_OK) {
    kd_error(rs, 400, "bad_request", "session body malformed (§7.3)");
    goto out;
  }
  if (!kd_challenge_spend(s, ch)) {
    kd_error(rs, 401, "bad_challenge", "challenge malformed, forged, expired or used");
    goto out;
  }
  kh_err e = kh_meta_device_get(s->meta, dev, &d);
  if (e && e != KH_ERR_NOTFOUND) {
    kd_error(rs, 500, "internal", "the metadata store failed");
    goto out;
  }
  /* an unknown device, or another account's, fails like a bad signature */
  if (e || strcmp(d.account, acc) != 0 ||
      kh_proto_session_statement(s->instance, ch, acc, dev, &st, &stlen) != KH_OK ||
      crypto_sign_verify_detached(sig, (const uint8_t *)st, stlen, d.sign_pk) != 0) {
    kd_error(rs, 401, "bad_signature", "the session signature does not verify");
    goto out;
  }
  if (d.revoked) {
    kd_error(rs, 403, "revoked", "this device was revoked");
    goto out;
  }
  if (kd_session_open(s, &d, tok, &exp) != KH_OK) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  char buf[384];
  size_t o = (size_t)snprintf(buf, sizeof buf, "{\"session\":\"%s\",\"expires\":%lld,\"caps\":",
                              tok, (long long)exp);
  o = caps_json(buf, sizeof buf, o, d.caps);
  o += (size_t)snprintf(buf + o, sizeof buf - o, ",\"device\":\"%s\",\"account\":\"%s\"}\n", d.id,
                        d.account);
  kd_json(rs, 201, buf, o);
  sodium_memzero(tok, sizeof tok);
out:
  free(st);
  kh_json_free(j);
}

const kd_row kd_routes_account[] = {
  {"/v1/region", false, KD_GET | KD_HEAD, KD_ROUTE_REGION, KD_PROTO, get_region, NULL, NULL},
  {"/v1/region/marker", false, KD_GET | KD_HEAD, KD_ROUTE_REGION, KD_PROTO, get_marker, NULL, NULL},
  {"/v1/challenge", false, KD_GET | KD_HEAD, KD_ROUTE_CHALLENGE, KD_PROTO, get_challenge, NULL,
   NULL},
  {"/v1/signup", false, KD_POST, KD_ROUTE_SIGNUP, KD_PROTO | KD_JSON | KD_RATE_ADDR, post_signup,
   NULL, NULL},
  {"/v1/session", false, KD_POST, KD_ROUTE_SESSION, KD_PROTO | KD_JSON | KD_RATE_ADDR,
   post_session, NULL, NULL},
};
const size_t kd_routes_account_n = sizeof kd_routes_account / sizeof kd_routes_account[0];
