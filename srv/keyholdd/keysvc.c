/* The key service behind the server (docs/protocol.md §10): the endpoints
 * under /v1/accounts/<account>/kms/.  The server holds one kh_kms handle
 * (kd_server.kms, opened at serve); every operation is logged by the key
 * service before it takes effect, exactly as for the embedded region. */
#include "keyholdd.h"
#include "keyhold/json.h"
#include "keyhold/proto.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define KMS_PREFIX "/v1/accounts/"

/* Who sent a signed request (docs/protocol.md §7.4). */
typedef struct kd_caller {
  char account[33];
  char device[33];
  unsigned caps;
} kd_caller;

/* The signed-request check (§7.4) for a request on account that needs cap:
 * true and *who filled, or false with rs filled (401/403). */
static bool authenticate(kd_server *s, const kd_request *rq, const char *account, unsigned cap,
                         kd_caller *who, kd_response *rs)
{
  (void)s;
  (void)rq;
  (void)account;
  (void)cap;
  memset(who, 0, sizeof *who);
  kd_error(rs, 401, "no_session", "no session");
  return false;
}

/* The key service's error as an HTTP answer. */
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
  case KH_ERR_PASSCODE: kd_error(rs, 403, "wrong_passcode", msg); break;
  case KH_ERR_LOG:
  case KH_ERR_ROLLBACK: kd_error(rs, 503, "unavailable", "the key service cannot write its log"); break;
  default: kd_error(rs, 500, "internal", "the key service failed"); break;
  }
}

static void json_answer(kd_response *rs, unsigned status, const char *text, size_t len)
{
  uint8_t *b = malloc(len ? len : 1);
  if (!b) {
    kd_error(rs, 500, "internal", "out of memory");
    return;
  }
  memcpy(b, text, len);
  kd_ok(rs, "application/json", "no-store", b, len);
  rs->status = status;
}

/* A JSON body's member name as exactly n bytes of base64 (§6). */
static bool b64_member(const kh_json *j, const char *name, uint8_t *out, size_t n)
{
  const char *v = kh_json_get_str(j, name);
  return v && kh_proto_unb64(v, out, n) == KH_OK;
}

/* POST /v1/accounts/<a>/kms/wrap (admin): standard protection at account
 * creation, what kh_vault_protect_new_account does for the embedded region.
 * Body {"key":"<base64 32 bytes>","cipher":1|2}. */
static void post_wrap(kd_server *s, const kd_request *rq, const char *account, kd_response *rs)
{
  kd_caller who;
  kh_json *j = NULL;
  uint8_t *key = sodium_malloc(32);
  int64_t cipher = 0;
  char out[160];
  if (!key) {
    kd_error(rs, 500, "internal", "out of memory");
    goto out;
  }
  if (!authenticate(s, rq, account, KH_CAP_ADMIN, &who, rs))
    goto out;
  if (kh_json_parse((const char *)rq->body, rq->body_len, &j) != KH_OK ||
      kh_json_type_of(j) != KH_JSON_OBJ || kh_json_len(j) != 2 ||
      !b64_member(j, "key", key, 32) || !kh_json_get_int(j, "cipher", &cipher) ||
      (cipher != 1 && cipher != 2)) {
    kd_error(rs, 400, "bad_request", "body must be {\"key\":<base64 32 bytes>,\"cipher\":1|2}");
    goto out;
  }
  /* requester "init" as for the embedded region (docs/log.md §5.1); the
   * device that asked is named in the reason */
  char reason[128];
  snprintf(reason, sizeof reason, "standard protection at account creation (device %s)",
           who.device);
  kh_kms_request krq = {"init", reason, NULL, NULL, NULL};
  kh_err e = kh_kms_wrap(s->kms, account, key, (int)cipher, &krq);
  if (e) {
    kms_error(rs, e);
    goto out;
  }
  int n = snprintf(out, sizeof out, "{\"account\":\"%s\",\"protection\":\"standard\"}\n",
                   account);
  json_answer(rs, 201, out, (size_t)n);
out:
  sodium_free(key);
  kh_json_free(j);
}

typedef void (*kms_handler)(kd_server *s, const kd_request *rq, const char *account,
                            kd_response *rs);
static const struct {
  const char *op;
  unsigned methods;
  kms_handler fn;
} g_kms_routes[] = {
  {"wrap", KD_POST, post_wrap},
};

/* "/v1/accounts/<32 hex>/kms/<op>": true and the pieces, or false. */
static bool kms_path(const char *path, char account[33], const char **op)
{
  if (strncmp(path, KMS_PREFIX, strlen(KMS_PREFIX)) != 0)
    return false;
  const char *a = path + strlen(KMS_PREFIX);
  for (int i = 0; i < 32; i++)
    if (!((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f')))
      return false;
  if (strncmp(a + 32, "/kms/", 5) != 0)
    return false;
  memcpy(account, a, 32);
  account[32] = '\0';
  *op = a + 37;
  return true;
}

bool kd_keysvc_dispatch(kd_server *s, const kd_request *rq, kd_route *route, kd_response *rs)
{
  char account[33];
  const char *op;
  if (!kms_path(rq->path, account, &op))
    return false;
  for (size_t i = 0; i < sizeof g_kms_routes / sizeof g_kms_routes[0]; i++) {
    if (strcmp(op, g_kms_routes[i].op) != 0)
      continue;
    *route = KD_ROUTE_KMS;
    if (!(g_kms_routes[i].methods & rq->method)) {
      kd_error(rs, 405, "method_not_allowed", "method not allowed");
      return true;
    }
    if (!s->kms) {
      kd_error(rs, 503, "unavailable", "the key service is unavailable");
      return true;
    }
    g_kms_routes[i].fn(s, rq, account, rs);
    return true;
  }
  return false;
}
