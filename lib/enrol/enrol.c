/* Enrolment by approval code and device statements (keyhold/enrol.h,
 * docs/protocol.md §9, docs/log.md §5.2): the exact byte strings that are
 * signed or tagged, and the JSON bodies, built and parsed strictly. */
#include "keyhold/enrol.h"
#include "keyhold/json.h"
#include "keyhold/proto.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/hex.h"
#include "common/json.h"
#include "log/log_internal.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX (1u << 20)

bool kh_enrol_name_valid(const char *name)
{
  size_t n = name ? strlen(name) : 0;
  return n >= 1 && n <= KH_ENROL_NAME_MAX &&
         kh_utf8_printable((const uint8_t *)name, n) && name[0] != ' ' && name[n - 1] != ' ';
}

bool kh_enrol_id_valid(const char *id)
{
  if (!id || strlen(id) != 32)
    return false;
  for (size_t i = 0; i < 32; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return false;
  return true;
}

static bool bucket_valid(const char *b)
{
  static const char alpha[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  return b && strlen(b) == 2 && strchr(alpha, b[0]) && strchr(alpha, b[1]);
}

/* ---- JSON field helpers ---- */

/* exactly n bytes of canonical standard base64 */
static kh_err get_b64(const kh_json *o, const char *key, uint8_t *out, size_t n)
{
  const char *s = kh_json_get_str(o, key);
  size_t got = 0;
  char back[KH_ENROL_WRAP_MAX * 2];
  if (!s || strlen(s) != 4 * ((n + 2) / 3) || kh_b64_decode(out, n, &got, s, strlen(s)) ||
      got != n)
    return kh_seterr(KH_ERR_FORMAT, "\"%s\": not base64 of %zu bytes", key, n);
  kh_b64_encode(back, out, n);
  if (strcmp(back, s) != 0)
    return kh_seterr(KH_ERR_FORMAT, "\"%s\": base64 not in canonical form", key);
  return KH_OK;
}

/* 1..max bytes of canonical base64, malloc'd */
static kh_err get_b64_var(const kh_json *o, const char *key, size_t max, uint8_t **out,
                          size_t *n)
{
  const char *s = kh_json_get_str(o, key);
  size_t sl = s ? strlen(s) : 0, got = 0;
  uint8_t *b = NULL;
  kh_err e = KH_OK;
  if (!s || sl == 0 || sl > 4 * ((max + 2) / 3) || sl % 4) {
    e = kh_seterr(KH_ERR_FORMAT, "\"%s\": not base64 of 1..%zu bytes", key, max);
    goto out;
  }
  if (!(b = malloc(sl / 4 * 3))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (kh_b64_decode(b, sl / 4 * 3, &got, s, sl) || got == 0 || got > max) {
    e = kh_seterr(KH_ERR_FORMAT, "\"%s\": not base64 of 1..%zu bytes", key, max);
    goto out;
  }
  char *back = malloc(kh_b64_len(got));
  if (!back) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  kh_b64_encode(back, b, got);
  bool same = strcmp(back, s) == 0;
  free(back);
  if (!same) {
    e = kh_seterr(KH_ERR_FORMAT, "\"%s\": base64 not in canonical form", key);
    goto out;
  }
  *out = b;
  *n = got;
  b = NULL;
out:
  free(b);
  return e;
}

static kh_err get_id(const kh_json *o, const char *key, char out[33])
{
  const char *s = kh_json_get_str(o, key);
  if (!kh_enrol_id_valid(s))
    return kh_seterr(KH_ERR_FORMAT, "\"%s\": not 32 lowercase hex digits", key);
  memcpy(out, s, 33);
  return KH_OK;
}

static kh_err get_name(const kh_json *o, char out[KH_ENROL_NAME_MAX + 1])
{
  const char *s = kh_json_get_str(o, "name");
  if (!kh_enrol_name_valid(s))
    return kh_seterr(KH_ERR_FORMAT, "\"name\": 1..%d printable bytes, no space at either end",
                     KH_ENROL_NAME_MAX);
  memcpy(out, s, strlen(s) + 1);
  return KH_OK;
}

/* ["backup","read",...]: known names, no repeats, at least one */
static kh_err get_caps(const kh_json *o, unsigned *caps)
{
  const kh_json *a = kh_json_get(o, "caps");
  unsigned c = 0;
  if (!a || kh_json_type_of(a) != KH_JSON_ARR || kh_json_len(a) == 0 || kh_json_len(a) > 4)
    return kh_seterr(KH_ERR_FORMAT, "\"caps\": an array of 1..4 capability names");
  for (size_t i = 0; i < kh_json_len(a); i++) {
    const char *s = kh_json_string(kh_json_at(a, i));
    unsigned one = 0;
    if (!s || strchr(s, ',') || kh_proto_caps_parse(s, &one) || (c & one))
      return kh_seterr(KH_ERR_FORMAT, "\"caps\": unknown or repeated capability");
    c |= one;
  }
  *caps = c;
  return KH_OK;
}

static kh_err put_caps(kh_buf *b, unsigned caps)
{
  static const unsigned bits[] = {KH_CAP_BACKUP, KH_CAP_READ, KH_CAP_PRUNE, KH_CAP_ADMIN};
  kh_err e = kh_buf_append(b, "[", 1);
  bool first = true;
  for (size_t i = 0; !e && i < 4; i++)
    if (caps & bits[i]) {
      if (!first)
        e = kh_buf_append(b, ",", 1);
      if (!e)
        e = kh_json_cstr(b, kh_proto_cap_name(bits[i]));
      first = false;
    }
  return e ? e : kh_buf_append(b, "]", 1);
}

void kh_enrol_caps_json(unsigned caps, char *out, size_t n)
{
  kh_buf b;
  kh_buf_init(&b, n);
  if (n && (put_caps(&b, caps) || kh_buf_append(&b, "\0", 1)))
    out[0] = 0;
  else if (n)
    memcpy(out, b.data, b.len);
  kh_buf_release(&b);
}

static kh_err put_b64(kh_buf *b, const char *key, const uint8_t *p, size_t n, bool comma)
{
  char *s = malloc(kh_b64_len(n));
  if (!s)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  kh_b64_encode(s, p, n);
  kh_err e = kh_buf_printf(b, "%s\"%s\":\"%s\"", comma ? "," : "", key, s);
  free(s);
  return e;
}

static kh_err finish(kh_buf *b, kh_err e, char **out, size_t *len)
{
  if (!e)
    e = kh_buf_append(b, "\0", 1);
  if (e) {
    kh_buf_release(b);
    return e;
  }
  *out = (char *)kh_buf_detach(b, len);
  (*len)--;
  return KH_OK;
}

static kh_err parse_obj(const char *body, size_t n, kh_json **root)
{
  kh_err e = kh_json_parse(body, n, root);
  if (e)
    return e;
  if (kh_json_type_of(*root) != KH_JSON_OBJ) {
    kh_json_free(*root);
    *root = NULL;
    return kh_seterr(KH_ERR_FORMAT, "the body is not a JSON object");
  }
  return KH_OK;
}

/* ---- the enrolment request ---- */

void kh_enrol_tag(const uint8_t k[32], const char *instance, const uint8_t sign_pk[32],
                  const uint8_t box_pk[32], const char *name, uint8_t tag[32])
{
  char sp[KH_ENROL_B64_32], bp[KH_ENROL_B64_32];
  kh_b64_encode(sp, sign_pk, 32);
  kh_b64_encode(bp, box_pk, 32);
  crypto_auth_hmacsha512256_state st;
  crypto_auth_hmacsha512256_init(&st, k, 32);
  const char *parts[] = {"keyhold-enrol v1\n", instance, "\n", sp, "\n", bp, "\n", name, "\n"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    crypto_auth_hmacsha512256_update(&st, (const uint8_t *)parts[i], strlen(parts[i]));
  crypto_auth_hmacsha512256_final(&st, tag);
  sodium_memzero(&st, sizeof st);
}

kh_err kh_enrol_request_statement(const char *instance, const kh_enrol_request *r,
                                  char **out, size_t *len)
{
  char sp[KH_ENROL_B64_32], bp[KH_ENROL_B64_32], salt[25], tag[KH_ENROL_B64_32];
  kh_b64_encode(sp, r->sign_pk, 32);
  kh_b64_encode(bp, r->box_pk, 32);
  kh_b64_encode(salt, r->salt, 16);
  kh_b64_encode(tag, r->tag, 32);
  kh_buf b;
  kh_buf_init(&b, 4096);
  kh_err e = kh_buf_printf(&b, "keyhold-enrol-request v1\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n",
                           instance, r->challenge, sp, bp, r->name, salt, tag, r->bucket);
  return finish(&b, e, out, len);
}

kh_err kh_enrol_request_json(const kh_enrol_request *r, char **out, size_t *len)
{
  kh_buf b;
  kh_buf_init(&b, 8192);
  kh_err e = kh_buf_append(&b, "{\"name\":", 8);
  if (!e)
    e = kh_json_cstr(&b, r->name);
  if (!e)
    e = put_b64(&b, "sign_pk", r->sign_pk, 32, true);
  if (!e)
    e = put_b64(&b, "box_pk", r->box_pk, 32, true);
  if (!e)
    e = put_b64(&b, "salt", r->salt, 16, true);
  if (!e)
    e = put_b64(&b, "tag", r->tag, 32, true);
  if (!e)
    e = kh_buf_printf(&b, ",\"bucket\":\"%.2s\",\"challenge\":\"%s\"", r->bucket, r->challenge);
  if (!e)
    e = put_b64(&b, "sig", r->sig, 64, true);
  if (!e)
    e = kh_buf_append(&b, "}", 1);
  return finish(&b, e, out, len);
}

kh_err kh_enrol_request_parse(const char *body, size_t n, kh_enrol_request *out)
{
  kh_json *root = NULL;
  kh_err e;
  uint8_t ch[32];
  memset(out, 0, sizeof *out);
  if ((e = parse_obj(body, n, &root)))
    goto out;
  if (kh_json_len(root) != 8) {
    e = kh_seterr(KH_ERR_FORMAT, "an enrolment request has exactly 8 fields");
    goto out;
  }
  const char *bucket = kh_json_get_str(root, "bucket");
  if ((e = get_name(root, out->name)) || (e = get_b64(root, "sign_pk", out->sign_pk, 32)) ||
      (e = get_b64(root, "box_pk", out->box_pk, 32)) ||
      (e = get_b64(root, "salt", out->salt, 16)) || (e = get_b64(root, "tag", out->tag, 32)) ||
      (e = get_b64(root, "challenge", ch, 32)) || (e = get_b64(root, "sig", out->sig, 64)))
    goto out;
  if (!bucket_valid(bucket)) {
    e = kh_seterr(KH_ERR_FORMAT, "\"bucket\": two code characters");
    goto out;
  }
  memcpy(out->bucket, bucket, 3);
  memcpy(out->challenge, kh_json_get_str(root, "challenge"), KH_ENROL_B64_32);
out:
  kh_json_free(root);
  return e;
}

/* ---- the pending list ---- */

kh_err kh_enrol_list_parse(const char *body, size_t n, kh_enrol_pending **out, size_t *count)
{
  kh_json *root = NULL;
  kh_enrol_pending *v = NULL;
  kh_err e;
  *out = NULL;
  *count = 0;
  if ((e = parse_obj(body, n, &root)))
    goto out;
  const kh_json *a = kh_json_get(root, "enrolments");
  if (!a || kh_json_type_of(a) != KH_JSON_ARR || kh_json_len(a) > KH_ENROL_LIST_MAX) {
    e = kh_seterr(KH_ERR_FORMAT, "\"enrolments\": an array of at most %d",
                  KH_ENROL_LIST_MAX);
    goto out;
  }
  size_t m = kh_json_len(a);
  if (!(v = calloc(m ? m : 1, sizeof *v))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < m; i++) {
    const kh_json *o = kh_json_at(a, i);
    if (kh_json_type_of(o) != KH_JSON_OBJ || !kh_json_get_int(o, "created", &v[i].created)) {
      e = kh_seterr(KH_ERR_FORMAT, "an enrolment is not an object with \"created\"");
      goto out;
    }
    if ((e = get_id(o, "enrolment", v[i].enrolment)) || (e = get_name(o, v[i].name)) ||
        (e = get_b64(o, "sign_pk", v[i].sign_pk, 32)) ||
        (e = get_b64(o, "box_pk", v[i].box_pk, 32)) ||
        (e = get_b64(o, "salt", v[i].salt, 16)) || (e = get_b64(o, "tag", v[i].tag, 32)))
      goto out;
  }
  *out = v;
  *count = m;
  v = NULL;
out:
  free(v);
  kh_json_free(root);
  return e;
}

/* ---- approval ---- */

void kh_enrol_wrap_tag(const uint8_t k[32], const char *instance, const char *account,
                       const char *device, unsigned caps, const uint8_t *wrap,
                       size_t wrap_len, uint8_t tag[32])
{
  uint8_t h[32];
  char hx[65], cs[64];
  crypto_hash_sha256(h, wrap, wrap_len);
  kh_hex_encode(hx, h, 32);
  kh_proto_caps_format(caps, cs, sizeof cs);
  crypto_auth_hmacsha512256_state st;
  crypto_auth_hmacsha512256_init(&st, k, 32);
  const char *parts[] = {"keyhold-approve v1\n", instance, "\n", account, "\n", device,
                         "\n", cs, "\n", hx, "\n"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    crypto_auth_hmacsha512256_update(&st, (const uint8_t *)parts[i], strlen(parts[i]));
  crypto_auth_hmacsha512256_final(&st, tag);
  sodium_memzero(&st, sizeof st);
}

kh_err kh_enrol_approval_json(const kh_enrol_approval *a, char **out, size_t *len)
{
  kh_buf b;
  kh_buf_init(&b, BODY_MAX);
  kh_err e = kh_buf_printf(&b, "{\"device\":\"%s\",\"caps\":", a->device);
  if (!e)
    e = put_caps(&b, a->caps);
  if (!e)
    e = put_b64(&b, "wrap", a->wrap, a->wrap_len, true);
  if (!e)
    e = put_b64(&b, "wrap_tag", a->wrap_tag, 32, true);
  if (!e)
    e = kh_buf_append(&b, ",\"entry\":", 9);
  if (!e)
    e = kh_json_str(&b, a->entry, a->entry_len);
  if (!e)
    e = kh_buf_append(&b, "}", 1);
  return finish(&b, e, out, len);
}

void kh_enrol_approval_release(kh_enrol_approval *a)
{
  if (!a)
    return;
  free(a->wrap);
  free(a->entry);
  memset(a, 0, sizeof *a);
}

kh_err kh_enrol_approval_parse(const char *body, size_t n, kh_enrol_approval *out)
{
  kh_json *root = NULL;
  kh_err e;
  memset(out, 0, sizeof *out);
  if ((e = parse_obj(body, n, &root)))
    goto out;
  if (kh_json_len(root) != 5) {
    e = kh_seterr(KH_ERR_FORMAT, "an approval has exactly 5 fields");
    goto out;
  }
  if ((e = get_id(root, "device", out->device)) || (e = get_caps(root, &out->caps)) ||
      (e = get_b64_var(root, "wrap", KH_ENROL_WRAP_MAX, &out->wrap, &out->wrap_len)) ||
      (e = get_b64(root, "wrap_tag", out->wrap_tag, 32)))
    goto out;
  const kh_json *en = kh_json_get(root, "entry");
  const char *s = kh_json_string(en);
  size_t sl = kh_json_string_len(en);
  if (!s || sl == 0 || sl > KH_LOG_ENTRY_MAX) {
    e = kh_seterr(KH_ERR_FORMAT, "\"entry\": a log entry of 1..%d bytes", KH_LOG_ENTRY_MAX);
    goto out;
  }
  if (!(out->entry = malloc(sl + 1))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  memcpy(out->entry, s, sl + 1);
  out->entry_len = sl;
out:
  if (e)
    kh_enrol_approval_release(out);
  kh_json_free(root);
  return e;
}

/* ---- polling ---- */

static const char *const STATES[] = {NULL, "pending", "approved", "refused", "expired"};

const char *kh_enrol_state_name(kh_enrol_poll_state s)
{
  return s >= KH_POLL_PENDING && s <= KH_POLL_EXPIRED ? STATES[s] : NULL;
}

kh_err kh_enrol_poll_statement(const char *enrolment, int64_t t, char **out, size_t *len)
{
  kh_buf b;
  kh_buf_init(&b, 256);
  kh_err e = kh_buf_printf(&b, "keyhold-enrol-poll v1\n%s\n%" PRId64 "\n", enrolment, t);
  return finish(&b, e, out, len);
}

kh_err kh_enrol_result_json(const kh_enrol_result *r, char **out, size_t *len)
{
  kh_buf b;
  kh_buf_init(&b, BODY_MAX);
  kh_err e = kh_buf_printf(&b, "{\"state\":\"%s\"", kh_enrol_state_name(r->state));
  if (!e && r->state == KH_POLL_APPROVED) {
    e = kh_buf_printf(&b, ",\"account\":\"%s\",\"device\":\"%s\",\"caps\":", r->account,
                      r->device);
    if (!e)
      e = put_caps(&b, r->caps);
    if (!e)
      e = put_b64(&b, "wrap", r->wrap, r->wrap_len, true);
    if (!e)
      e = put_b64(&b, "wrap_tag", r->wrap_tag, 32, true);
  }
  if (!e)
    e = kh_buf_append(&b, "}", 1);
  return finish(&b, e, out, len);
}

void kh_enrol_result_release(kh_enrol_result *r)
{
  if (!r)
    return;
  free(r->wrap);
  memset(r, 0, sizeof *r);
}

kh_err kh_enrol_result_parse(const char *body, size_t n, kh_enrol_result *out)
{
  kh_json *root = NULL;
  kh_err e;
  memset(out, 0, sizeof *out);
  if ((e = parse_obj(body, n, &root)))
    goto out;
  const char *st = kh_json_get_str(root, "state");
  for (int i = KH_POLL_PENDING; st && i <= KH_POLL_EXPIRED; i++)
    if (!strcmp(st, STATES[i]))
      out->state = (kh_enrol_poll_state)i;
  if (!out->state) {
    e = kh_seterr(KH_ERR_FORMAT, "\"state\": pending, approved, refused or expired");
    goto out;
  }
  if (out->state != KH_POLL_APPROVED)
    goto out;
  if ((e = get_id(root, "account", out->account)) || (e = get_id(root, "device", out->device)) ||
      (e = get_caps(root, &out->caps)) ||
      (e = get_b64_var(root, "wrap", KH_ENROL_WRAP_MAX, &out->wrap, &out->wrap_len)) ||
      (e = get_b64(root, "wrap_tag", out->wrap_tag, 32)))
    goto out;
out:
  if (e)
    kh_enrol_result_release(out);
  kh_json_free(root);
  return e;
}

/* ---- device list ---- */

kh_err kh_enrol_devices_json(const kh_enrol_device *v, size_t n, char **out, size_t *len)
{
  kh_buf b;
  kh_buf_init(&b, 64u << 20);
  kh_err e = kh_buf_append(&b, "{\"devices\":[", 12);
  for (size_t i = 0; !e && i < n; i++) {
    const kh_enrol_device *d = &v[i];
    e = kh_buf_printf(&b, "%s{\"id\":\"%s\",\"name\":", i ? "," : "", d->id);
    if (!e)
      e = kh_json_cstr(&b, d->name);
    if (!e)
      e = kh_buf_append(&b, ",\"caps\":", 8);
    if (!e)
      e = put_caps(&b, d->caps);
    if (!e)
      e = kh_buf_printf(&b, ",\"enrolled\":%" PRId64, d->enrolled);
    if (!e)
      e = d->revoked ? kh_buf_printf(&b, ",\"revoked\":%" PRId64, d->revoked)
                     : kh_buf_printf(&b, ",\"revoked\":null");
    if (!e)
      e = put_b64(&b, "sign_pk", d->sign_pk, 32, true);
    if (!e)
      e = put_b64(&b, "box_pk", d->box_pk, 32, true);
    if (!e)
      e = kh_buf_append(&b, "}", 1);
  }
  if (!e)
    e = kh_buf_append(&b, "]}\n", 3);
  return finish(&b, e, out, len);
}

kh_err kh_enrol_devices_parse(const char *body, size_t n, kh_enrol_device **out, size_t *count)
{
  kh_json *root = NULL;
  kh_enrol_device *v = NULL;
  kh_err e;
  *out = NULL;
  *count = 0;
  if ((e = parse_obj(body, n, &root)))
    goto out;
  const kh_json *a = kh_json_get(root, "devices");
  if (!a || kh_json_type_of(a) != KH_JSON_ARR || kh_json_len(a) > KH_ENROL_DEVICES_MAX) {
    e = kh_seterr(KH_ERR_FORMAT, "\"devices\": an array of at most %d", KH_ENROL_DEVICES_MAX);
    goto out;
  }
  size_t m = kh_json_len(a);
  if (!(v = calloc(m ? m : 1, sizeof *v))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < m; i++) {
    const kh_json *o = kh_json_at(a, i), *rv = kh_json_get(o, "revoked");
    const char *nm = kh_json_get_str(o, "name");
    if (kh_json_type_of(o) != KH_JSON_OBJ || !kh_json_get_int(o, "enrolled", &v[i].enrolled) ||
        !rv || (kh_json_type_of(rv) != KH_JSON_NULL && !kh_json_int(rv, &v[i].revoked)) ||
        !nm || strlen(nm) == 0 || strlen(nm) > KH_ENROL_NAME_MAX ||
        !kh_utf8_printable((const uint8_t *)nm, strlen(nm))) {
      e = kh_seterr(KH_ERR_FORMAT, "a device is not an object with name, enrolled, revoked");
      goto out;
    }
    memcpy(v[i].name, nm, strlen(nm) + 1);
    if ((e = get_id(o, "id", v[i].id)) || (e = get_caps(o, &v[i].caps)) ||
        (e = get_b64(o, "sign_pk", v[i].sign_pk, 32)) ||
        (e = get_b64(o, "box_pk", v[i].box_pk, 32)))
      goto out;
  }
  *out = v;
  *count = m;
  v = NULL;
out:
  free(v);
  kh_json_free(root);
  return e;
}

/* ---- revoke ---- */

kh_err kh_enrol_revoke_json(const char *entry, size_t len, char **out, size_t *outlen)
{
  kh_buf b;
  kh_buf_init(&b, BODY_MAX);
  kh_err e = kh_buf_append(&b, "{\"entry\":", 9);
  if (!e)
    e = kh_json_str(&b, entry, len);
  if (!e)
    e = kh_buf_append(&b, "}", 1);
  return finish(&b, e, out, outlen);
}

kh_err kh_enrol_revoke_parse(const char *body, size_t n, char **entry, size_t *len)
{
  kh_json *root = NULL;
  kh_err e;
  *entry = NULL;
  *len = 0;
  if ((e = parse_obj(body, n, &root)))
    goto out;
  const kh_json *en = kh_json_get(root, "entry");
  const char *s = kh_json_string(en);
  size_t sl = kh_json_string_len(en);
  if (kh_json_len(root) != 1 || !s || sl == 0 || sl > KH_LOG_ENTRY_MAX) {
    e = kh_seterr(KH_ERR_FORMAT, "a revocation is {\"entry\": a log entry of 1..%d bytes}",
                  KH_LOG_ENTRY_MAX);
    goto out;
  }
  if (!(*entry = malloc(sl + 1))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  memcpy(*entry, s, sl + 1);
  *len = sl;
out:
  kh_json_free(root);
  return e;
}

/* ---- log statements ---- */

kh_err kh_enrol_reason(unsigned caps, const uint8_t sign_pk[32], const uint8_t box_pk[32],
                       const char *name, char *out, size_t n)
{
  char sp[KH_ENROL_B64_32], bp[KH_ENROL_B64_32], cs[64];
  kh_b64_encode(sp, sign_pk, 32);
  kh_b64_encode(bp, box_pk, 32);
  kh_proto_caps_format(caps, cs, sizeof cs);
  if (!caps || !kh_enrol_name_valid(name))
    return kh_seterr(KH_ERR_INVAL, "an enrolment needs capabilities and a valid name");
  int l = snprintf(out, n, "caps %s sign_pk %s box_pk %s name %s", cs, sp, bp, name);
  if (l < 0 || (size_t)l >= n)
    return kh_seterr(KH_ERR_INVAL, "reason too long");
  return KH_OK;
}

kh_err kh_revoke_reason(const uint8_t sign_pk[32], char *out, size_t n)
{
  char sp[KH_ENROL_B64_32];
  kh_b64_encode(sp, sign_pk, 32);
  int l = snprintf(out, n, "sign_pk %s", sp);
  if (l < 0 || (size_t)l >= n)
    return kh_seterr(KH_ERR_INVAL, "reason too long");
  return KH_OK;
}

kh_err kh_enrol_statement(kh_log_op op, int64_t t, const char *region, const char *account,
                          const char *subject, const char *signer, const char *reason,
                          kh_kms_sign_fn sign, void *ctx, char **out, size_t *len)
{
  static const char ctxs[] = "keyhold-device-request v1\n";
  kh_log_entry *en = calloc(1, sizeof *en);
  char *text = NULL;
  size_t tl = 0;
  uint8_t sig[64];
  char b64[KH_LOG_DEVICE_MAX];
  kh_buf msg;
  kh_buf_init(&msg, KH_LOG_ENTRY_MAX + sizeof ctxs);
  kh_err e = KH_OK;
  if (!en) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((op != KH_LOG_OP_ENROL && op != KH_LOG_OP_REVOKE) || !kh_enrol_id_valid(subject) ||
      !kh_enrol_id_valid(signer) || strlen(region) > KH_LOG_REGION_MAX ||
      strlen(account) > KH_LOG_ACCOUNT_MAX || strlen(reason) > KH_LOG_TEXT_MAX) {
    e = kh_seterr(KH_ERR_INVAL, "not a device statement");
    goto out;
  }
  en->time = t;
  memcpy(en->region, region, strlen(region) + 1);
  memcpy(en->account, account, strlen(account) + 1);
  en->op = op;
  memcpy(en->key, subject, 33);
  snprintf(en->requester, sizeof en->requester, "device:%s", signer);
  memcpy(en->reason, reason, strlen(reason) + 1);
  if ((e = kh_log_entry_format(en, &text, &tl)) ||
      (e = kh_buf_append(&msg, ctxs, sizeof ctxs - 1)) || (e = kh_buf_append(&msg, text, tl)) ||
      (e = sign(ctx, msg.data, msg.len, sig)))
    goto out;
  kh_b64_encode(b64, sig, 64);
  snprintf(en->device, sizeof en->device, "%s:%s", signer, b64);
  free(text);
  text = NULL;
  e = kh_log_entry_format(en, out, len);
out:
  kh_buf_release(&msg);
  free(text);
  free(en);
  return e;
}
