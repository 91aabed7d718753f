/* A device using the key service behind a region server (keyhold/keysvc.h,
 * docs/protocol.md §10): status, prepare / check / sign / commit, escrow
 * with a passcode derivative, and recovery by a fresh device. */
#include "keyhold/keysvc.h"
#include "repo/vault_internal.h"
#include "keyhold/json.h"
#include "keyhold/proto.h"
#include "keyhold/remote.h"
#include "http/http.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/hex.h"
#include "crypto/crypto.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEVICE_SIG_CTX "keyhold-device-request v1\n"
#define RESP_MAX 65536

static bool hex32(const char *s)
{
  if (!s || strlen(s) != 32)
    return false;
  for (; *s; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
      return false;
  return true;
}

kh_err kh_keysvc_escrow_secret(const char *instance, const char *account,
                               const kh_secret *passcode, uint32_t ops, uint32_t memkib,
                               kh_secret **out)
{
  *out = NULL;
  if (!hex32(instance) || !hex32(account) || !passcode || !passcode->len)
    return kh_seterr(KH_ERR_INVAL, "escrow secret: bad instance, account or empty passcode");
  uint8_t salt[16];
  char ctx[128];
  int n = snprintf(ctx, sizeof ctx, "keyhold-escrow v1\n%s\n%s\n", instance, account);
  crypto_generichash(salt, sizeof salt, (const uint8_t *)ctx, (size_t)n, NULL, 0);
  uint8_t *k = kh_secure_alloc(32);
  kh_err e = KH_OK;
  if (!k)
    return kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  if (crypto_pwhash(k, 32, (const char *)passcode->bytes, passcode->len, salt,
                    ops ? ops : KH_KEYSVC_ESCROW_OPS,
                    (size_t)(memkib ? memkib : KH_KEYSVC_ESCROW_MEMKIB) << 10,
                    crypto_pwhash_ALG_ARGON2ID13) != 0) {
    e = kh_seterr(KH_ERR_NOMEM, "Argon2id needs %u KiB of memory",
                  memkib ? memkib : KH_KEYSVC_ESCROW_MEMKIB);
    goto out;
  }
  if (!(*out = kh_secret_new(k, 32)))
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
out:
  kh_secure_free(k);
  return e;
}

kh_err kh_keysvc_entry_check(const char *entry, size_t len, const char *region,
                             const char *account, kh_log_op op, const char *device,
                             const char *reason, int64_t now)
{
  kh_log_entry *en = malloc(sizeof *en);
  char want[64];
  kh_err e = KH_OK;
  if (!en)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (kh_log_entry_parse(entry, len, en)) {
    e = kh_seterr(KH_ERR_AUTH, "the key service prepared a malformed entry");
    goto out;
  }
  snprintf(want, sizeof want, "device:%s", device);
  int64_t dt = now - en->time;
  const char *bad = en->op != op ? "op"
                    : strcmp(en->region, region) ? "region"
                    : strcmp(en->account, account) ? "account"
                    : strcmp(en->requester, want) ? "requester"
                    : strcmp(en->reason, reason) ? "reason"
                    : en->device[0] ? "device"
                    : en->has_attempt || en->result ? "attempt or result"
                    : (dt > KH_KMS_PRESIGNED_WINDOW || dt < -KH_KMS_PRESIGNED_WINDOW) ? "time"
                    : NULL;
  if (bad)
    e = kh_seterr(KH_ERR_AUTH, "the key service prepared an entry with another %s than this "
                  "device asked for: not signed", bad);
out:
  free(en);
  return e;
}

kh_err kh_keysvc_recover_statement(const char *instance, const char *challenge,
                                   const char *account, const char *sign_pk,
                                   const char *box_pk, const char *name, char **out,
                                   size_t *len)
{
  const char *f[] = {instance, challenge, account, sign_pk, box_pk, name};
  kh_buf b;
  kh_buf_init(&b, 4096);
  kh_err e = kh_buf_append(&b, "keyhold-escrow-recover v1\n", 26);
  *out = NULL;
  *len = 0;
  for (size_t i = 0; !e && i < sizeof f / sizeof f[0]; i++) {
    if (!f[i] || strchr(f[i], '\n'))
      e = kh_seterr(KH_ERR_INVAL, "escrow recovery statement: a field holds a newline");
    else if (!(e = kh_buf_append(&b, f[i], strlen(f[i]))))
      e = kh_buf_append(&b, "\n", 1);
  }
  if (!e && !(e = kh_buf_append(&b, "", 1))) {
    *len = b.len - 1;
    *out = (char *)kh_buf_detach(&b, NULL);
  }
  kh_buf_release(&b);
  return e;
}

/* A signed JSON request of a vault opened with a URL; *j the answer. */
static kh_err call_json(kh_vault *v, const char *method, const char *op, const char *body,
                        kh_json **j, kh_remote_resp *resp)
{
  kh_remote *r = kh_vault_remote(v);
  char target[160];
  *j = NULL;
  if (!r)
    return kh_seterr(KH_ERR_STATE, "this account is not on a region server");
  snprintf(target, sizeof target, "/v1/accounts/%s/kms%s%s", kh_vault_account_id(v),
           *op ? "/" : "", op);
  kh_remote_req rq = {.method = method, .target = target, .body = body,
                      .len = body ? strlen(body) : 0, .sign = true, .max = RESP_MAX};
  kh_err e = kh_remote_call(r, &rq, resp);
  if (e && !strcmp(resp->code, "end_to_end"))
    e = kh_seterr(KH_ERR_STATE, "account %s is end-to-end protected: the key service holds "
                  "nothing for it", kh_vault_account_id(v));
  if (!e && (kh_json_parse((const char *)resp->body, resp->len, j) ||
             kh_json_type_of(*j) != KH_JSON_OBJ))
    e = kh_seterr(KH_ERR_FORMAT, "%s %s: the server's answer is not a JSON object", method,
                  target);
  return e;
}

kh_err kh_keysvc_status_get(kh_vault *v, kh_keysvc_status *out)
{
  kh_json *j = NULL;
  kh_remote_resp resp;
  memset(out, 0, sizeof *out);
  memset(&resp, 0, sizeof resp);
  kh_err e = call_json(v, "GET", "", NULL, &j, &resp);
  const kh_json *es = e ? NULL : kh_json_get(j, "escrow");
  int64_t failed = 0, attempts = 0;
  if (!e && (!kh_json_bool(kh_json_get(j, "wrap"), &out->wrap) ||
             !kh_json_bool(kh_json_get(j, "destroyed"), &out->destroyed) || !es ||
             !kh_json_bool(kh_json_get(es, "present"), &out->escrow.present) ||
             !kh_json_bool(kh_json_get(es, "destroyed"), &out->escrow.destroyed) ||
             !kh_json_get_int(es, "failed", &failed) || failed < 0 || failed > 1000 ||
             !kh_json_get_int(es, "attempts", &attempts) || attempts < 0))
    e = kh_seterr(KH_ERR_FORMAT, "malformed key-service status");
  out->escrow.failed = (uint32_t)failed;
  out->escrow.attempts = (uint64_t)attempts;
  kh_json_free(j);
  kh_remote_resp_release(&resp);
  return e;
}

/* prepare / check / sign / commit of op, with more JSON members for the
 * commit (",\"key\":...", or ""). */
static kh_err signed_op(kh_vault *v, kh_log_op op, const char *reason, const char *more)
{
  const kh_device_state *d = kh_vault_device_state(v);
  kh_json *j = NULL;
  kh_remote_resp resp;
  char *body = NULL, pid[33] = "", sigb[100];
  kh_buf b;
  kh_buf_init(&b, 8192);
  memset(&resp, 0, sizeof resp);
  kh_err e;
  if (!d)
    return kh_seterr(KH_ERR_STATE, "this account is not on a region server");
  if (strchr(reason, '"') || strchr(reason, '\\'))
    return kh_seterr(KH_ERR_INVAL, "reason: no quotes or backslashes");
  char req[700];
  snprintf(req, sizeof req, "{\"op\":\"%s\",\"reason\":\"%s\"}", kh_log_op_name(op), reason);
  if ((e = call_json(v, "POST", "prepare", req, &j, &resp)))
    goto out;
  const char *entry = kh_json_get_str(j, "entry"), *p = kh_json_get_str(j, "prepare");
  if (!entry || !hex32(p)) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed answer to prepare");
    goto out;
  }
  snprintf(pid, sizeof pid, "%s", p);
  size_t elen = kh_json_string_len(kh_json_get(j, "entry"));
  /* the device signs only what it asked for */
  if ((e = kh_keysvc_entry_check(entry, elen, d->region, d->account, op, d->device, reason,
                                 (int64_t)time(NULL))))
    goto out;
  uint8_t sig[64];
  if ((e = kh_buf_append(&b, DEVICE_SIG_CTX, strlen(DEVICE_SIG_CTX))) ||
      (e = kh_buf_append(&b, entry, elen)) ||
      (e = kh_vault_device_sign(v, b.data, b.len, sig)))
    goto out;
  kh_b64_encode(sigb, sig, 64);
  kh_json_free(j);
  j = NULL;
  kh_remote_resp_release(&resp);
  size_t bl = 200 + strlen(more);
  if (!(body = (char *)kh_secure_alloc(bl))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  snprintf(body, bl, "{\"prepare\":\"%s\",\"sig\":\"%s\"%s}", pid, sigb, more);
  e = call_json(v, "POST", "commit", body, &j, &resp);
out:
  if (body)
    kh_secure_free(body);
  kh_buf_release(&b);
  kh_json_free(j);
  kh_remote_resp_release(&resp);
  return e;
}

kh_err kh_keysvc_destroy(kh_vault *v, const char *reason)
{
  return signed_op(v, KH_LOG_OP_DESTROY, reason, "");
}

kh_err kh_keysvc_escrow_enable(kh_vault *v, const kh_secret *passcode, uint32_t ops,
                               uint32_t memkib)
{
  const kh_device_state *d = kh_vault_device_state(v);
  kh_secret *sec = NULL;
  uint8_t *key = kh_secure_alloc(32);
  char *more = (char *)kh_secure_alloc(256);
  int cipher = 0;
  kh_err e;
  if (!key || !more) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  if (!d) {
    e = kh_seterr(KH_ERR_STATE, "this account is not on a region server");
    goto out;
  }
  if ((e = kh_keysvc_escrow_secret(d->instance, d->account, passcode, ops, memkib, &sec)) ||
      (e = kh_vault_master_key(v, key, &cipher)))
    goto out;
  char kb[64], sb[64];
  kh_b64_encode(kb, key, 32);
  kh_b64_encode(sb, sec->bytes, 32);
  snprintf(more, 256, ",\"key\":\"%s\",\"cipher\":%d,\"secret\":\"%s\"", kb, cipher, sb);
  sodium_memzero(kb, sizeof kb);
  sodium_memzero(sb, sizeof sb);
  e = signed_op(v, KH_LOG_OP_ESCROW_ENABLE, "escrow enabled by the account holder", more);
out:
  kh_secret_free(sec);
  kh_secure_free(key);
  kh_secure_free(more);
  return e;
}

kh_err kh_keysvc_escrow_recover(const kh_keysvc_recovery *rq, const kh_secret *passcode,
                                kh_keysvc_recovered *out)
{
  kh_remote *r = NULL;
  kh_device_state *d = NULL, *have = NULL;
  kh_secret *sec = NULL;
  kh_json *j = NULL;
  kh_remote_resp resp;
  kh_region_info ri;
  kh_vault *v = NULL;
  char ch[64], spk[64], bpk[64], sigb[100], target[160], *stmt = NULL, *body = NULL;
  size_t sl = 0;
  uint8_t *key = kh_secure_alloc(32), wrap[KH_DEVICE_WRAP_LEN];
  int cipher = 0;
  kh_err e;
  memset(out, 0, sizeof *out);
  memset(&resp, 0, sizeof resp);
  if (!key) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  if (!hex32(rq->account) || !rq->name || !*rq->name || strlen(rq->name) > KH_REMOTE_NAME_MAX ||
      strchr(rq->name, '"') || strchr(rq->name, '\\')) {
    e = kh_seterr(KH_ERR_INVAL, "escrow recover: an account id (32 hex digits) and a device "
                  "name (1..64 bytes, no quotes) are needed");
    goto out;
  }
  kh_remote_opts ro = {.ca_file = rq->ca_file};
  if ((e = kh_remote_new(rq->url, &ro, &r)) || (e = kh_remote_region(r, &ri)))
    goto out;
  if (kh_device_state_load(rq->device_dir, ri.instance, &have) == KH_OK) {
    e = kh_seterr(KH_ERR_EXISTS, "this device already belongs to account %s on %s (device %s): "
                  "use another KEYHOLD_DEVICE_DIR", have->account, rq->url, have->device);
    goto out;
  }
  if ((e = kh_keysvc_escrow_secret(ri.instance, rq->account, passcode, rq->ops, rq->memkib,
                                   &sec)) ||
      (e = kh_device_state_new(&d)))
    goto out;
  snprintf(d->url, sizeof d->url, "%s", kh_remote_url(r));
  snprintf(d->region, sizeof d->region, "%s", ri.region);
  snprintf(d->instance, sizeof d->instance, "%s", ri.instance);
  snprintf(d->name, sizeof d->name, "%s", rq->name);
  kh_b64_encode(spk, d->sign_pk, 32);
  kh_b64_encode(bpk, d->box_pk, 32);
  if ((e = kh_remote_challenge(r, ch)) ||
      (e = kh_keysvc_recover_statement(ri.instance, ch, rq->account, spk, bpk, rq->name, &stmt,
                                       &sl)))
    goto out;
  uint8_t sig[64];
  crypto_sign_detached(sig, NULL, (const uint8_t *)stmt, sl, d->sign_sk);
  kh_b64_encode(sigb, sig, 64);
  size_t bl = 1024;
  if (!(body = (char *)kh_secure_alloc(bl))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  char sb[64];
  kh_b64_encode(sb, sec->bytes, 32);
  snprintf(body, bl, "{\"name\":\"%s\",\"sign_pk\":\"%s\",\"box_pk\":\"%s\",\"challenge\":"
           "\"%s\",\"sig\":\"%s\",\"secret\":\"%s\"}", rq->name, spk, bpk, ch, sigb, sb);
  sodium_memzero(sb, sizeof sb);
  snprintf(target, sizeof target, "/v1/accounts/%s/kms/escrow/recover", rq->account);
  kh_remote_req hr = {.method = "POST", .target = target, .body = body, .len = strlen(body),
                      .max = RESP_MAX};
  e = kh_remote_call(r, &hr, &resp);
  if (e) {
    if (!strcmp(resp.code, "denied"))
      e = kh_seterr(KH_ERR_DENIED, "the escrow record of %s was destroyed after %d wrong "
                    "attempts", rq->account, KH_KMS_ESCROW_LIMIT);
    else if (!strcmp(resp.code, "not_found"))
      e = kh_seterr(KH_ERR_NOTFOUND, "%s has no escrow record for account %s", rq->url,
                    rq->account);
    else if (!strcmp(resp.code, "end_to_end"))
      e = kh_seterr(KH_ERR_STATE, "account %s is end-to-end protected: the key service holds "
                    "no escrow for it", rq->account);
    goto out;
  }
  const char *dev, *w;
  int64_t idx = 0, left = 0;
  bool ok = false;
  if (kh_json_parse((const char *)resp.body, resp.len, &j) ||
      !kh_json_bool(kh_json_get(j, "recovered"), &ok) ||
      (ok && (!kh_json_get_int(j, "index", &idx) || idx < 0))) {
    e = kh_seterr(KH_ERR_FORMAT, "%s: malformed answer to the escrow recovery", rq->url);
    goto out;
  }
  out->index = (uint64_t)idx;
  if (!ok) {
    if (!kh_json_get_int(j, "left", &left) || left < 0 || left >= KH_KMS_ESCROW_LIMIT) {
      e = kh_seterr(KH_ERR_FORMAT, "%s: malformed answer to the escrow recovery", rq->url);
      goto out;
    }
    out->left = (uint32_t)left;
    e = left ? kh_seterr(KH_ERR_PASSCODE, "wrong recovery passcode (%u attempts left)",
                         out->left)
             : kh_seterr(KH_ERR_PASSCODE, "wrong recovery passcode: %d wrong attempts, the "
                         "escrow record is destroyed", KH_KMS_ESCROW_LIMIT);
    goto out;
  }
  if (!hex32(dev = kh_json_get_str(j, "device")) || !(w = kh_json_get_str(j, "wrap")) ||
      kh_proto_unb64(w, wrap, sizeof wrap)) {
    e = kh_seterr(KH_ERR_FORMAT, "%s: malformed answer to the escrow recovery", rq->url);
    goto out;
  }
  out->index = (uint64_t)idx;
  if ((e = kh_device_wrap_open(d, wrap, sizeof wrap, key, &cipher)))
    goto out;
  snprintf(d->account, sizeof d->account, "%s", rq->account);
  snprintf(d->device, sizeof d->device, "%s", dev);
  kh_device_keycheck(key, d->keycheck);
  if ((e = kh_device_state_save(d, rq->device_dir, false)))
    goto out;
  snprintf(out->device, sizeof out->device, "%s", dev);
  /* the device's own record (sealed with the account key, docs/format.md),
   * so that the account's devices (watch) know its key */
  kh_open_opts oo = {.region_path = rq->url, .ca_file = rq->ca_file, .account = rq->account,
                     .device_dir = rq->device_dir, .no_cache = true};
  kh_buf rec;
  kh_buf_init(&rec, 4096);
  uint8_t did[16];
  if ((e = kh_vault_open(&oo, &v)) || (e = kh_hex_decode(did, 16, dev, 32)) ||
      (e = kh_vault_device_record(&rec, d->sign_pk, d->name)) ||
      (e = kh_vault_put_obj(v, "devices", "device", did, 16, rec.data, rec.len, true)))
    e = kh_adderr(e, "recovered, but the device record could not be written");
  kh_buf_release(&rec);
  out->left = KH_KMS_ESCROW_LIMIT;
out:
  kh_secure_free(key);
  if (body)
    kh_secure_free(body);
  free(stmt);
  kh_json_free(j);
  kh_remote_resp_release(&resp);
  kh_secret_free(sec);
  kh_device_state_free(d);
  kh_device_state_free(have);
  kh_vault_free(v);
  kh_remote_free(r);
  return e;
}
