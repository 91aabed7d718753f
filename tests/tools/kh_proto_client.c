/* Test client of the account protocol (docs/protocol.md §7-§8), for the
 * CLI scenarios that drive a real keyholdd without the keyhold client.
 * libcurl and the public headers only; it can sign up, open sessions, send
 * signed requests and deliberately send bad ones.
 *
 *   kh_proto_client URL STATE CMD ARGS...
 *
 * STATE is a directory holding one file per device NAME: NAME.key (Ed25519
 * secret 64 bytes, X25519 public 32 bytes), NAME.id ("account device"),
 * NAME.sess ("token seq").
 *
 *   keygen NAME                         new keys for NAME
 *   signup NAME [INVITE]                challenge + POST /v1/signup (INVITE "-": none)
 *   session NAME [ACCOUNT DEVICE]       challenge + POST /v1/session (as ACCOUNT DEVICE)
 *   adddev DIR NAME ACCOUNT CAPS        add NAME's keys as a device of ACCOUNT with
 *                                       CAPS ("backup,read") straight into DIR/server/meta.db
 *   revoke DIR NAME                     mark NAME's device revoked in DIR/server/meta.db
 *   req NAME METHOD TARGET [options]    one signed request
 *       --body FILE   the body          --inm V     If-None-Match
 *       --range V     Range             --seq N     this sequence number (else the next)
 *       --out FILE    response body     --tamper body|path|method|sig|sha
 *                                          (altered after signing)
 *       --session T   this token        --nosign    no KH-* headers at all
 *       --slow BPS    upload at most BPS bytes per second
 *
 * Prints "STATUS CODE" (CODE: the JSON error code or "-"), and
 * "retry-after N" when the server sent one.  Exit 0 when a response came,
 * 1 on a transport error, 2 on usage. */
#include <curl/curl.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "keyhold/json.h"
#include "keyhold/meta.h"
#include "keyhold/proto.h"

static const char *g_url, *g_state;

typedef struct dev {
  uint8_t sk[64], pk[32], box_pk[32];
  char account[64], device[64];
  char token[64];
  unsigned long long seq;
} dev;

static char *state_path(const char *name, const char *ext)
{
  static char p[4096];
  snprintf(p, sizeof p, "%s/%s.%s", g_state, name, ext);
  return p;
}

static int load(const char *name, dev *d)
{
  memset(d, 0, sizeof *d);
  FILE *f = fopen(state_path(name, "key"), "rb");
  if (!f || fread(d->sk, 1, 64, f) != 64 || fread(d->box_pk, 1, 32, f) != 32) {
    fprintf(stderr, "kh_proto_client: no keys for %s\n", name);
    if (f)
      fclose(f);
    return -1;
  }
  fclose(f);
  crypto_sign_ed25519_sk_to_pk(d->pk, d->sk);
  if ((f = fopen(state_path(name, "id"), "r"))) {
    if (fscanf(f, "%63s %63s", d->account, d->device) != 2)
      d->account[0] = d->device[0] = '\0';
    fclose(f);
  }
  if ((f = fopen(state_path(name, "sess"), "r"))) {
    if (fscanf(f, "%63s %llu", d->token, &d->seq) != 2)
      d->token[0] = '\0';
    fclose(f);
  }
  return 0;
}

static void save_sess(const char *name, const dev *d)
{
  FILE *f = fopen(state_path(name, "sess"), "w");
  if (f) {
    fprintf(f, "%s %llu\n", d->token, d->seq);
    fclose(f);
  }
}

/* ---- HTTP ---------------------------------------------------------------- */

typedef struct resp {
  char *b;
  size_t len;
  FILE *out;
  long status;
  char retry[32];
} resp;

static size_t on_body(char *p, size_t sz, size_t n, void *ctx)
{
  resp *r = ctx;
  size_t k = sz * n;
  if (r->out)
    return fwrite(p, 1, k, r->out);
  if (r->len + k > (64u << 20))
    return 0;
  char *nb = realloc(r->b, r->len + k + 1);
  if (!nb)
    return 0;
  memcpy(nb + r->len, p, k);
  r->b = nb;
  r->len += k;
  r->b[r->len] = '\0';
  return k;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ctx)
{
  resp *r = ctx;
  size_t k = sz * n;
  if (k > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
    size_t i = 12;
    while (i < k && p[i] == ' ')
      i++;
    size_t l = 0;
    while (i + l < k && p[i + l] >= '0' && p[i + l] <= '9' && l < sizeof r->retry - 1)
      l++;
    memcpy(r->retry, p + i, l);
    r->retry[l] = '\0';
  }
  return k;
}

/* One request: method, target, headers (NULL-terminated), body (file or
 * buffer).  Fills r. */
static int http(const char *method, const char *target, const char *const *hdrs,
                const char *body_file, const char *body, size_t body_len, long slow, resp *r)
{
  CURL *c = curl_easy_init();
  struct curl_slist *h = NULL;
  FILE *in = NULL;
  char url[4096];
  int rc = 1;
  if (!c)
    return 1;
  snprintf(url, sizeof url, "%s%s", g_url, target);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
  for (const char *const *p = hdrs; p && *p; p++)
    h = curl_slist_append(h, *p);
  if (body_file) {
    struct stat st;
    if (!(in = fopen(body_file, "rb")) || fstat(fileno(in), &st) != 0)
      goto out;
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READDATA, in);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
    if (slow)
      curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)slow);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  } else if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  } else if (!strcmp(method, "HEAD")) {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  CURLcode ce = curl_easy_perform(c);
  if (ce != CURLE_OK) {
    fprintf(stderr, "kh_proto_client: %s %s: %s\n", method, target, curl_easy_strerror(ce));
    goto out;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  rc = 0;
out:
  if (in)
    fclose(in);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return rc;
}

static void report(const resp *r, const char *errbody)
{
  const char *code = "-";
  kh_json *j = NULL;
  if (errbody && kh_json_parse(errbody, strlen(errbody), &j) == KH_OK && kh_json_get_str(j, "code"))
    code = kh_json_get_str(j, "code");
  printf("%ld %s\n", r->status, code);
  if (r->retry[0])
    printf("retry-after %s\n", r->retry);
  kh_json_free(j);
}

static int challenge(char out[64])
{
  resp r = {0};
  kh_json *j = NULL;
  int rc = 1;
  if (http("GET", "/v1/challenge", NULL, NULL, NULL, 0, 0, &r) || r.status != 200 || !r.b ||
      kh_json_parse(r.b, r.len, &j) != KH_OK || !kh_json_get_str(j, "challenge"))
    fprintf(stderr, "kh_proto_client: no challenge\n");
  else {
    snprintf(out, 64, "%s", kh_json_get_str(j, "challenge"));
    rc = 0;
  }
  kh_json_free(j);
  free(r.b);
  return rc;
}

static int region_instance(char out[64])
{
  resp r = {0};
  kh_json *j = NULL;
  int rc = 1;
  if (!http("GET", "/v1/region", NULL, NULL, NULL, 0, 0, &r) && r.status == 200 && r.b &&
      kh_json_parse(r.b, r.len, &j) == KH_OK && kh_json_get_str(j, "instance")) {
    snprintf(out, 64, "%s", kh_json_get_str(j, "instance"));
    rc = 0;
  }
  kh_json_free(j);
  free(r.b);
  return rc;
}

/* ---- commands ---------------------------------------------------------------- */

static int cmd_keygen(const char *name)
{
  uint8_t pk[32], sk[64], bpk[32], bsk[32];
  crypto_sign_keypair(pk, sk);
  crypto_box_keypair(bpk, bsk);
  FILE *f = fopen(state_path(name, "key"), "wb");
  if (!f)
    return 1;
  fwrite(sk, 1, 64, f);
  fwrite(bpk, 1, 32, f);
  return fclose(f) == 0 ? 0 : 1;
}

static int cmd_signup(const char *name, const char *invite)
{
  dev d;
  char ch[64], inst[64], spk[48], bpk[48], sigb[96], *st = NULL, body[1024];
  size_t stlen = 0;
  uint8_t sig[64];
  resp r = {0};
  kh_json *j = NULL;
  if (load(name, &d) || challenge(ch) || region_instance(inst))
    return 1;
  kh_proto_b64(d.pk, 32, spk);
  kh_proto_b64(d.box_pk, 32, bpk);
  if (invite && !strcmp(invite, "-"))
    invite = NULL;
  if (kh_proto_signup_statement(inst, ch, spk, bpk, name, invite, &st, &stlen))
    return 1;
  crypto_sign_detached(sig, NULL, (const uint8_t *)st, stlen, d.sk);
  free(st);
  kh_proto_b64(sig, 64, sigb);
  int n = snprintf(body, sizeof body,
                   "{\"name\":\"%s\",\"sign_pk\":\"%s\",\"box_pk\":\"%s\",%s%s%s\"challenge\":\"%s\","
                   "\"sig\":\"%s\"}",
                   name, spk, bpk, invite ? "\"invite\":\"" : "", invite ? invite : "",
                   invite ? "\"," : "", ch, sigb);
  const char *h[] = {"Content-Type: application/json", NULL};
  if (http("POST", "/v1/signup", h, NULL, body, (size_t)n, 0, &r))
    return 1;
  report(&r, r.b);
  if (r.status == 201 && kh_json_parse(r.b, r.len, &j) == KH_OK) {
    FILE *f = fopen(state_path(name, "id"), "w");
    if (f) {
      fprintf(f, "%s %s\n", kh_json_get_str(j, "account"), kh_json_get_str(j, "device"));
      fclose(f);
    }
  }
  kh_json_free(j);
  free(r.b);
  return 0;
}

static int cmd_session(const char *name, const char *acc, const char *devid)
{
  dev d;
  char ch[64], inst[64], sigb[96], *st = NULL, body[1024];
  size_t stlen = 0;
  uint8_t sig[64];
  resp r = {0};
  kh_json *j = NULL;
  if (load(name, &d) || challenge(ch) || region_instance(inst))
    return 1;
  if (!acc) {
    acc = d.account;
    devid = d.device;
  }
  if (kh_proto_session_statement(inst, ch, acc, devid, &st, &stlen))
    return 1;
  crypto_sign_detached(sig, NULL, (const uint8_t *)st, stlen, d.sk);
  free(st);
  kh_proto_b64(sig, 64, sigb);
  int n = snprintf(body, sizeof body,
                   "{\"account\":\"%s\",\"device\":\"%s\",\"challenge\":\"%s\",\"sig\":\"%s\"}",
                   acc, devid, ch, sigb);
  if (http("POST", "/v1/session", NULL, NULL, body, (size_t)n, 0, &r))
    return 1;
  report(&r, r.b);
  if (r.status == 201 && kh_json_parse(r.b, r.len, &j) == KH_OK && kh_json_get_str(j, "session")) {
    snprintf(d.token, sizeof d.token, "%s", kh_json_get_str(j, "session"));
    d.seq = 0;
    save_sess(name, &d);
  }
  kh_json_free(j);
  free(r.b);
  return 0;
}

static int cmd_adddev(const char *dir, const char *name, const char *acc, const char *caps)
{
  dev d;
  kh_meta *m = NULL;
  kh_meta_device md;
  char p[4096];
  uint8_t r[16];
  if (load(name, &d))
    return 1;
  memset(&md, 0, sizeof md);
  randombytes_buf(r, sizeof r);
  sodium_bin2hex(md.id, sizeof md.id, r, sizeof r);
  snprintf(md.account, sizeof md.account, "%s", acc);
  snprintf(md.name, sizeof md.name, "%s", name);
  memcpy(md.sign_pk, d.pk, 32);
  memcpy(md.box_pk, d.box_pk, 32);
  if (strcmp(caps, "none") && kh_proto_caps_parse(caps, &md.caps))
    return 2;
  md.enrolled = (int64_t)time(NULL);
  snprintf(p, sizeof p, "%s/server/meta.db", dir);
  kh_err e = kh_meta_open_sqlite(p, &m);
  if (!e)
    e = kh_meta_device_add(m, &md);
  kh_meta_free(m);
  if (e) {
    fprintf(stderr, "kh_proto_client: adddev: %s: %s\n", kh_strerror(e), kh_errdetail());
    return 1;
  }
  FILE *f = fopen(state_path(name, "id"), "w");
  if (!f)
    return 1;
  fprintf(f, "%s %s\n", acc, md.id);
  fclose(f);
  printf("%s\n", md.id);
  return 0;
}

static int cmd_revoke(const char *dir, const char *name)
{
  dev d;
  kh_meta *m = NULL;
  char p[4096];
  if (load(name, &d))
    return 1;
  snprintf(p, sizeof p, "%s/server/meta.db", dir);
  kh_err e = kh_meta_open_sqlite(p, &m);
  if (!e)
    e = kh_meta_device_revoke(m, d.account, d.device, (int64_t)time(NULL));
  kh_meta_free(m);
  if (e) {
    fprintf(stderr, "kh_proto_client: revoke: %s: %s\n", kh_strerror(e), kh_errdetail());
    return 1;
  }
  return 0;
}

static int cmd_req(const char *name, int argc, char **argv)
{
  const char *method = argv[0], *target = argv[1], *body = NULL, *inm = NULL, *range = NULL,
             *outf = NULL, *tamper = NULL, *tok = NULL;
  unsigned long long seq = 0;
  long slow = 0;
  bool nosign = false;
  dev d;
  if (load(name, &d))
    return 1;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--nosign")) {
      nosign = true;
      continue;
    }
    if (!v)
      return 2;
    i++;
    if (!strcmp(a, "--body")) body = v;
    else if (!strcmp(a, "--inm")) inm = v;
    else if (!strcmp(a, "--range")) range = v;
    else if (!strcmp(a, "--out")) outf = v;
    else if (!strcmp(a, "--tamper")) tamper = v;
    else if (!strcmp(a, "--session")) tok = v;
    else if (!strcmp(a, "--seq")) seq = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--slow")) slow = strtol(v, NULL, 10);
    else return 2;
  }
  if (!tok)
    tok = d.token;
  if (!seq)
    seq = ++d.seq;
  else if (seq > d.seq)
    d.seq = seq;
  save_sess(name, &d);
  /* the body's hash */
  char sha[65];
  crypto_hash_sha256_state hs;
  uint8_t h[32];
  crypto_hash_sha256_init(&hs);
  if (body) {
    FILE *f = fopen(body, "rb");
    char buf[65536];
    size_t n;
    if (!f)
      return 1;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
      crypto_hash_sha256_update(&hs, (const uint8_t *)buf, n);
    fclose(f);
  }
  crypto_hash_sha256_final(&hs, h);
  sodium_bin2hex(sha, sizeof sha, h, 32);
  char *canon = NULL, sigb[96];
  size_t clen = 0;
  uint8_t sig[64];
  if (kh_proto_canonical_request(method, target, tok, seq, sha, inm, range, &canon, &clen)) {
    fprintf(stderr, "kh_proto_client: cannot sign %s %s\n", method, target);
    memset(sig, 0, sizeof sig);
  } else {
    crypto_sign_detached(sig, NULL, (const uint8_t *)canon, clen, d.sk);
  }
  free(canon);
  /* altered after signing */
  char tpath[4096];
  snprintf(tpath, sizeof tpath, "%s", target);
  const char *m = method;
  if (tamper && !strcmp(tamper, "sig"))
    sig[0] ^= 1;
  if (tamper && !strcmp(tamper, "sha"))
    sha[0] = sha[0] == '0' ? '1' : '0';
  if (tamper && !strcmp(tamper, "path"))
    tpath[strlen(tpath) - 1] = tpath[strlen(tpath) - 1] == '0' ? '1' : '0';
  if (tamper && !strcmp(tamper, "method"))
    m = !strcmp(method, "GET") ? "HEAD" : "GET";
  char tmpbody[4096];
  if (tamper && !strcmp(tamper, "body") && body) {
    /* the same length, one byte changed: a copy of the file */
    snprintf(tmpbody, sizeof tmpbody, "%s/tampered.body", g_state);
    FILE *f = fopen(body, "rb"), *o = fopen(tmpbody, "wb");
    int c, first = 1;
    if (!f || !o)
      return 1;
    while ((c = fgetc(f)) != EOF) {
      fputc(first ? c ^ 1 : c, o);
      first = 0;
    }
    fclose(f);
    fclose(o);
    body = tmpbody;
  }
  kh_proto_b64(sig, 64, sigb);
  char hs1[128], hs2[64], hs3[128], hs4[160], hs5[300], hs6[300];
  const char *hdrs[8];
  int k = 0;
  snprintf(hs1, sizeof hs1, "KH-Session: %s", tok);
  snprintf(hs2, sizeof hs2, "KH-Seq: %llu", seq);
  snprintf(hs3, sizeof hs3, "KH-Body-SHA256: %s", sha);
  snprintf(hs4, sizeof hs4, "KH-Signature: %s", sigb);
  if (!nosign) {
    if (*tok)
      hdrs[k++] = hs1;
    hdrs[k++] = hs2;
    hdrs[k++] = hs3;
    hdrs[k++] = hs4;
  }
  if (inm) {
    snprintf(hs5, sizeof hs5, "If-None-Match: %s", inm);
    hdrs[k++] = hs5;
  }
  if (range) {
    snprintf(hs6, sizeof hs6, "Range: %s", range);
    hdrs[k++] = hs6;
  }
  hdrs[k] = NULL;
  resp r = {0};
  FILE *of = outf ? fopen(outf, "wb") : NULL;
  r.out = of;
  int rc = http(m, tpath, hdrs, body, NULL, 0, slow, &r);
  if (of)
    fclose(of);
  if (rc)
    return 1;
  char *eb = NULL;
  if (outf && r.status >= 400) {
    FILE *f = fopen(outf, "rb");
    if (f) {
      eb = calloc(1, 4097);
      if (eb && fread(eb, 1, 4096, f) == 0)
        eb[0] = '\0';
      fclose(f);
    }
  }
  report(&r, eb ? eb : r.b);
  free(eb);
  free(r.b);
  return 0;
}

int main(int argc, char **argv)
{
  if (argc < 4 || sodium_init() < 0) {
    fprintf(stderr, "usage: kh_proto_client URL STATE CMD ARGS...\n");
    return 2;
  }
  g_url = argv[1];
  g_state = argv[2];
  mkdir(g_state, 0700);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const char *cmd = argv[3];
  int rc = 2;
  if (!strcmp(cmd, "keygen") && argc == 5)
    rc = cmd_keygen(argv[4]);
  else if (!strcmp(cmd, "signup") && (argc == 5 || argc == 6))
    rc = cmd_signup(argv[4], argc == 6 ? argv[5] : NULL);
  else if (!strcmp(cmd, "session") && (argc == 5 || argc == 7))
    rc = cmd_session(argv[4], argc == 7 ? argv[5] : NULL, argc == 7 ? argv[6] : NULL);
  else if (!strcmp(cmd, "adddev") && argc == 8)
    rc = cmd_adddev(argv[4], argv[5], argv[6], argv[7]);
  else if (!strcmp(cmd, "revoke") && argc == 6)
    rc = cmd_revoke(argv[4], argv[5]);
  else if (!strcmp(cmd, "req") && argc >= 7)
    rc = cmd_req(argv[4], argc - 5, argv + 5);
  else
    fprintf(stderr, "kh_proto_client: bad command\n");
  curl_global_cleanup();
  return rc;
}
