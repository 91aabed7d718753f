/* The region-server client (include/keyhold/remote.h, docs/protocol.md
 * §6-§8): a pool of libcurl easy handles (one per concurrent caller, each
 * keeping its connection), signed requests (§7.4) in a session opened on
 * first use, bounded retries of transient failures. */
#include "keyhold/remote.h"
#include "keyhold/json.h"
#include "keyhold/proto.h"
#include "http/http.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/hex.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define POOL_MAX 64
#define ERRBODY_MAX (64u << 10)
#define SESSION_MAX 128

struct kh_remote {
  char url[KH_REMOTE_URL_MAX];
  char *ca_file;
  long connect_ms, timeout_ms, max_retry_ms;
  int max_retries;
  const kh_device_state *dev;
  pthread_mutex_t lock;          /* pool and session */
  CURL *pool[POOL_MAX];          /* idle handles, each with its connection */
  size_t npool;
  CURLSH *share;                 /* DNS and TLS session cache */
  pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
  char session[SESSION_MAX];     /* "" until opened */
  uint64_t session_gen;          /* bumped by every (re)open */
  unsigned caps;                 /* the device's capabilities (session answer) */
  _Atomic uint64_t seq;
  _Atomic uint64_t connects;
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc = CURLE_FAILED_INIT;
static void global_init(void) { g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *u)
{
  (void)h;
  (void)a;
  kh_remote *r = u;
  pthread_mutex_lock(&r->share_lock[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *u)
{
  (void)h;
  kh_remote *r = u;
  pthread_mutex_unlock(&r->share_lock[d]);
}

static kh_err session_open(kh_remote *r, uint64_t gen);

/* ---- URL rules -------------------------------------------------------------- */

static bool loopback_host(const char *h, size_t n)
{
  if ((n == 9 && !memcmp(h, "localhost", 9)) || (n == 5 && !memcmp(h, "[::1]", 5)))
    return true;
  /* 127.a.b.c, digits and dots only */
  if (n < 9 || memcmp(h, "127.", 4))
    return false;
  int dots = 0;
  for (size_t i = 0; i < n; i++) {
    if (h[i] == '.')
      dots++;
    else if (h[i] < '0' || h[i] > '9')
      return false;
  }
  return dots == 3;
}

/* scheme://host[:port][/] with host a name, IPv4 or [IPv6]; nothing else. */
kh_err kh_http_url_check(const char *url)
{
  bool tls = !strncmp(url, "https://", 8);
  if (!tls && strncmp(url, "http://", 7))
    return kh_seterr(KH_ERR_INVAL, "'%s' is not an http:// or https:// URL", url);
  const char *h = url + (tls ? 8 : 7);
  size_t n = strlen(h);
  if (n && h[n - 1] == '/')
    n--;
  if (n == 0 || strlen(url) >= KH_REMOTE_URL_MAX)
    return kh_seterr(KH_ERR_INVAL, "'%s': no host", url);
  size_t hl = n;
  if (h[0] == '[') {
    const char *rb = memchr(h, ']', n);
    if (!rb)
      return kh_seterr(KH_ERR_INVAL, "'%s': bad IPv6 address", url);
    hl = (size_t)(rb - h) + 1;
  } else {
    const char *c = memchr(h, ':', n);
    if (c)
      hl = (size_t)(c - h);
  }
  for (size_t i = 0; i < n; i++) {
    char c = h[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || (i < hl && (c == '[' || c == ']'));
    if (!ok)
      return kh_seterr(KH_ERR_INVAL, "'%s': a region URL is scheme://host:port, without a "
                       "path, user or query", url);
  }
  if (hl < n) {
    if (h[hl] != ':' || hl + 1 == n || n - hl - 1 > 5)
      return kh_seterr(KH_ERR_INVAL, "'%s': bad port", url);
    for (size_t i = hl + 1; i < n; i++)
      if (h[i] < '0' || h[i] > '9')
        return kh_seterr(KH_ERR_INVAL, "'%s': bad port", url);
  }
  if (!tls && !loopback_host(h, hl))
    return kh_seterr(KH_ERR_INVAL, "'%s': plain http is only allowed to a loopback address; "
                     "use https://", url);
  return KH_OK;
}

kh_err kh_remote_new(const char *url, const kh_remote_opts *o, kh_remote **out)
{
  kh_err e = KH_OK;
  kh_remote *r = NULL;
  *out = NULL;
  if ((e = kh_http_url_check(url)))
    return e;
  pthread_once(&g_once, global_init);
  if (g_init_rc != CURLE_OK)
    return kh_seterr(KH_ERR_IO, "libcurl: %s", curl_easy_strerror(g_init_rc));
  if (sodium_init() < 0)
    return kh_seterr(KH_ERR_CRYPTO, "libsodium failed to initialise");
  if (!(r = calloc(1, sizeof *r)))
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&r->lock, NULL);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_init(&r->share_lock[i], NULL);
  snprintf(r->url, sizeof r->url, "%s", url);
  size_t ul = strlen(r->url);
  if (ul && r->url[ul - 1] == '/')
    r->url[ul - 1] = '\0';
  const char *ca = o && o->ca_file ? o->ca_file : getenv("KEYHOLD_CA_FILE");
  if (ca && *ca && !(r->ca_file = strdup(ca))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  r->connect_ms = o && o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
  r->timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : 600000;
  r->max_retries = o && o->max_retries > 0 ? o->max_retries : 4;
  r->max_retry_ms = o && o->max_retry_ms > 0 ? o->max_retry_ms : 30000;
  if (!(r->share = curl_share_init()) ||
      curl_share_setopt(r->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
      curl_share_setopt(r->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
      curl_share_setopt(r->share, CURLSHOPT_USERDATA, r) != CURLSHE_OK ||
      curl_share_setopt(r->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
      curl_share_setopt(r->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
    e = kh_seterr(KH_ERR_NOMEM, "libcurl: cannot set up a shared cache");
    goto out;
  }
  *out = r;
  r = NULL;
out:
  kh_remote_free(r);
  return e;
}

void kh_remote_free(kh_remote *r)
{
  if (!r)
    return;
  for (size_t i = 0; i < r->npool; i++)
    curl_easy_cleanup(r->pool[i]);
  if (r->share)
    curl_share_cleanup(r->share);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_destroy(&r->share_lock[i]);
  pthread_mutex_destroy(&r->lock);
  sodium_memzero(r->session, sizeof r->session);
  free(r->ca_file);
  free(r);
}

void kh_remote_set_device(kh_remote *r, const kh_device_state *d)
{
  pthread_mutex_lock(&r->lock);
  r->dev = d;
  r->session[0] = '\0';
  r->session_gen++;
  pthread_mutex_unlock(&r->lock);
}

kh_err kh_remote_caps(kh_remote *r, unsigned *caps)
{
  pthread_mutex_lock(&r->lock);
  bool open = r->session[0] != '\0';
  uint64_t gen = r->session_gen;
  pthread_mutex_unlock(&r->lock);
  kh_err e = open ? KH_OK : session_open(r, gen);
  pthread_mutex_lock(&r->lock);
  *caps = r->caps;
  pthread_mutex_unlock(&r->lock);
  return e;
}

uint64_t kh_remote_connections(const kh_remote *r)
{
  return atomic_load(&((kh_remote *)r)->connects);
}

const char *kh_remote_url(const kh_remote *r)
{
  return r->url;
}

/* ---- the handle pool ---------------------------------------------------------- */

static CURL *pool_take(kh_remote *r)
{
  CURL *h = NULL;
  pthread_mutex_lock(&r->lock);
  if (r->npool)
    h = r->pool[--r->npool];
  pthread_mutex_unlock(&r->lock);
  return h ? h : curl_easy_init();
}

static void pool_give(kh_remote *r, CURL *h)
{
  pthread_mutex_lock(&r->lock);
  if (r->npool < POOL_MAX) {
    r->pool[r->npool++] = h;
    h = NULL;
  }
  pthread_mutex_unlock(&r->lock);
  if (h)
    curl_easy_cleanup(h);
}

/* ---- one transfer -------------------------------------------------------------- */

typedef struct upload {
  const struct iovec *iov;
  size_t niov, i, off;
} upload;

static size_t on_read(char *p, size_t size, size_t n, void *ctx)
{
  upload *u = ctx;
  size_t want = size * n, got = 0;
  while (got < want && u->i < u->niov) {
    const struct iovec *v = &u->iov[u->i];
    size_t take = v->iov_len - u->off;
    if (take > want - got)
      take = want - got;
    memcpy(p + got, (const uint8_t *)v->iov_base + u->off, take);
    got += take;
    u->off += take;
    if (u->off == v->iov_len) {
      u->i++;
      u->off = 0;
    }
  }
  return got;
}

typedef struct sink {
  kh_buf *out;               /* success bodies are appended here */
  size_t start;              /* out->len before the transfer */
  size_t max;                /* at most this many body bytes */
  kh_buf err;                /* error bodies (status >= 300), capped */
  CURL *h;
  long status;               /* known once the first byte arrives */
  bool toobig;
  long retry_after;          /* seconds, -1 if none */
} sink;

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
  sink *s = ctx;
  size_t len = size * n;
  if (!s->status)
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
  if (s->status >= 300) {
    if (kh_buf_append(&s->err, p, len))
      return len; /* an over-long error body is cut, not an error */
    return len;
  }
  if (s->out->len - s->start + len > s->max || kh_buf_append(s->out, p, len)) {
    s->toobig = true;
    return 0;
  }
  return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx)
{
  sink *s = ctx;
  size_t len = size * n;
  if (len > 12 && !strncasecmp(p, "Retry-After:", 12)) {
    long v = 0;
    size_t i = 12;
    while (i < len && p[i] == ' ')
      i++;
    for (; i < len && p[i] >= '0' && p[i] <= '9' && v < 100000; i++)
      v = v * 10 + (p[i] - '0');
    s->retry_after = v;
  }
  return len;
}

/* Response of an error status: code and message from the JSON body. */
static void error_fields(const kh_buf *b, char code[48], char *msg, size_t msgn)
{
  kh_json *j = NULL;
  code[0] = '\0';
  msg[0] = '\0';
  if (b->len && kh_json_parse((const char *)b->data, b->len, &j) == KH_OK) {
    const char *c = kh_json_get_str(j, "code"), *m = kh_json_get_str(j, "error");
    if (c)
      snprintf(code, 48, "%s", c);
    if (m) {
      /* printable ASCII only: it ends up on a terminal */
      size_t k = 0;
      for (const char *q = m; *q && k + 1 < msgn; q++)
        msg[k++] = (*q >= 0x20 && *q < 0x7f) ? *q : '?';
      msg[k] = '\0';
    }
  }
  kh_json_free(j);
}

typedef struct xfer_result {
  long status;
  char code[48];
  char msg[256];
  long retry_after;
  int64_t length;            /* Content-Length, -1 if none */
  CURLcode rc;
  bool toobig;
} xfer_result;

static kh_err sha256_hex(const struct iovec *iov, size_t niov, char out[65])
{
  crypto_hash_sha256_state st;
  uint8_t h[32];
  crypto_hash_sha256_init(&st);
  for (size_t i = 0; i < niov; i++)
    crypto_hash_sha256_update(&st, iov[i].iov_base, iov[i].iov_len);
  crypto_hash_sha256_final(&st, h);
  kh_hex_encode(out, h, 32);
  return KH_OK;
}

/* Perform one attempt.  session is "" for an unsigned request. */
static kh_err attempt(kh_remote *r, const kh_http_req *rq, const char *session,
                      const char body_hex[65], kh_buf *out, xfer_result *res)
{
  kh_err e = KH_OK;
  CURL *h = pool_take(r);
  struct curl_slist *hd = NULL;
  char *canon = NULL, url[KH_REMOTE_URL_MAX + 1100], line[512];
  size_t clen = 0;
  uint64_t total = 0;
  upload up = {rq->iov, rq->niov, 0, 0};
  sink s = {.out = out, .start = out->len, .max = rq->max, .h = h, .retry_after = -1};
  kh_buf_init(&s.err, ERRBODY_MAX);
  memset(res, 0, sizeof *res);
  res->retry_after = -1;
  if (!h) {
    e = kh_seterr(KH_ERR_NOMEM, "libcurl: out of memory");
    goto out;
  }
  for (size_t i = 0; i < rq->niov; i++)
    total += rq->iov[i].iov_len;
  snprintf(url, sizeof url, "%s%s", r->url, rq->target);
  curl_easy_reset(h);
  bool ok = curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_SHARE, r->share) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->connect_ms) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms) == CURLE_OK &&
            /* a stalled server: under 1 byte/s for 30 s */
            curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_USERAGENT, "keyhold/0.1") == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_WRITEDATA, &s) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_HEADERDATA, &s) == CURLE_OK &&
            (!r->ca_file || curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file) == CURLE_OK);
  if (!strcmp(rq->method, "HEAD"))
    ok = ok && curl_easy_setopt(h, CURLOPT_NOBODY, 1L) == CURLE_OK;
  else if (!strcmp(rq->method, "GET"))
    ok = ok && curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) == CURLE_OK;
  else if (rq->niov || !strcmp(rq->method, "POST") || !strcmp(rq->method, "PUT"))
    ok = ok && curl_easy_setopt(h, CURLOPT_POST, 1L) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)total) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_READDATA, &up) == CURLE_OK &&
         curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method) == CURLE_OK;
  else
    ok = ok && curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method) == CURLE_OK;
  if (!ok) {
    e = kh_seterr(KH_ERR_IO, "libcurl does not support a required option");
    goto out;
  }
  /* headers: "Expect:" off (no 100-continue round trip), our content type */
  hd = curl_slist_append(hd, "Expect:");
  if (total || !strcmp(rq->method, "POST") || !strcmp(rq->method, "PUT")) {
    snprintf(line, sizeof line, "Content-Type: %s",
             rq->content_type ? rq->content_type : "application/json");
    hd = curl_slist_append(hd, line);
  }
  if (rq->if_none_match) {
    snprintf(line, sizeof line, "If-None-Match: %s", rq->if_none_match);
    hd = curl_slist_append(hd, line);
  }
  if (rq->range) {
    snprintf(line, sizeof line, "Range: %s", rq->range);
    hd = curl_slist_append(hd, line);
  }
  for (size_t i = 0; rq->headers && rq->headers[i]; i++)
    hd = curl_slist_append(hd, rq->headers[i]);
  if (*session) {
    uint64_t seq = atomic_fetch_add(&r->seq, 1) + 1;
    uint8_t sig[64];
    char sigb[100];
    if ((e = kh_proto_canonical_request(rq->method, rq->target, session, seq, body_hex,
                                        rq->if_none_match, rq->range, &canon, &clen)))
      goto out;
    crypto_sign_detached(sig, NULL, (const uint8_t *)canon, clen, r->dev->sign_sk);
    kh_b64_encode(sigb, sig, 64);
    snprintf(line, sizeof line, "KH-Session: %s", session);
    hd = curl_slist_append(hd, line);
    snprintf(line, sizeof line, "KH-Seq: %llu", (unsigned long long)seq);
    hd = curl_slist_append(hd, line);
    snprintf(line, sizeof line, "KH-Body-SHA256: %s", body_hex);
    hd = curl_slist_append(hd, line);
    snprintf(line, sizeof line, "KH-Signature: %s", sigb);
    hd = curl_slist_append(hd, line);
  }
  if (!hd || curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd) != CURLE_OK) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  /* a HEAD's Content-Length is the object's size, not a body to refuse */
  if (rq->max != SIZE_MAX && strcmp(rq->method, "HEAD"))
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)rq->max);
  res->rc = curl_easy_perform(h);
  long nconn = 0;
  curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nconn);
  if (nconn > 0)
    atomic_fetch_add(&r->connects, (uint64_t)nconn);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
  curl_off_t cl = -1;
  curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  res->length = cl;
  res->retry_after = s.retry_after;
  res->toobig = s.toobig || (res->rc == CURLE_FILESIZE_EXCEEDED && res->status < 300);
  /* MAXFILESIZE bounds the body we asked for; an error answer (429 with a
   * JSON body longer than a small range, say) is judged by its status, not
   * taken for an object that is too large */
  if (res->rc == CURLE_FILESIZE_EXCEEDED && res->status >= 300)
    res->rc = CURLE_OK;
  if (res->status >= 300)
    error_fields(&s.err, res->code, res->msg, sizeof res->msg);
  if (res->rc != CURLE_OK || res->status >= 300)
    out->len = s.start; /* nothing of a failed attempt stays */
out:
  /* a handle is kept with its connection, unless the transfer broke */
  if (h) {
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_SHARE, NULL);
    pool_give(r, h);
  }
  curl_slist_free_all(hd);
  if (canon) {
    sodium_memzero(canon, clen);
    free(canon);
  }
  kh_buf_release(&s.err);
  return e;
}

/* ---- sessions (§7.3) ---------------------------------------------------------- */

static kh_err json_request(kh_remote *r, const char *method, const char *target,
                           const char *body, kh_json **out, xfer_result *res);

kh_err kh_remote_challenge(kh_remote *r, char out[64])
{
  kh_json *j = NULL;
  xfer_result res;
  kh_err e = json_request(r, "GET", "/v1/challenge", NULL, &j, &res);
  if (e)
    return e;
  const char *c = kh_json_get_str(j, "challenge");
  if (!c || strlen(c) >= 64 || strlen(c) < 4) {
    e = kh_seterr(KH_ERR_FORMAT, "%s: malformed challenge", r->url);
  } else {
    for (const char *p = c; *p; p++)
      if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '+' || *p == '/' || *p == '='))
        e = kh_seterr(KH_ERR_FORMAT, "%s: malformed challenge", r->url);
    if (!e)
      snprintf(out, 64, "%s", c);
  }
  kh_json_free(j);
  return e;
}

/* Open a session unless another thread did since gen. */
static kh_err session_open(kh_remote *r, uint64_t gen)
{
  kh_err e = KH_OK;
  char ch[64], body[1024], sigb[100], *stmt = NULL;
  size_t sl = 0;
  kh_json *j = NULL;
  xfer_result res;
  const kh_device_state *d;
  pthread_mutex_lock(&r->lock);
  bool done = r->session_gen != gen && r->session[0];
  d = r->dev;
  pthread_mutex_unlock(&r->lock);
  if (done)
    goto out;
  if (!d || !*d->account || !*d->device) {
    e = kh_seterr(KH_ERR_STATE, "no device identity to open a session with");
    goto out;
  }
  if ((e = kh_remote_challenge(r, ch)))
    goto out;
  if ((e = kh_proto_session_statement(d->instance, ch, d->account, d->device, &stmt, &sl)))
    goto out;
  uint8_t sig[64];
  crypto_sign_detached(sig, NULL, (const uint8_t *)stmt, sl, d->sign_sk);
  kh_b64_encode(sigb, sig, 64);
  snprintf(body, sizeof body,
           "{\"account\":\"%s\",\"device\":\"%s\",\"challenge\":\"%s\",\"sig\":\"%s\"}",
           d->account, d->device, ch, sigb);
  if ((e = json_request(r, "POST", "/v1/session", body, &j, &res))) {
    e = kh_adderr(e, "opening a session on %s", r->url);
    goto out;
  }
  const char *s = kh_json_get_str(j, "session");
  if (!s || strlen(s) < 16 || strlen(s) >= SESSION_MAX) {
    e = kh_seterr(KH_ERR_FORMAT, "%s: malformed session", r->url);
    goto out;
  }
  for (const char *p = s; *p; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
          *p == '-' || *p == '_')) {
      e = kh_seterr(KH_ERR_FORMAT, "%s: malformed session", r->url);
      goto out;
    }
  unsigned caps = 0;
  const kh_json *cl = kh_json_get(j, "caps");
  for (size_t i = 0; i < kh_json_len(cl); i++) {
    unsigned one = 0;
    const char *c = kh_json_string(kh_json_at(cl, i));
    if (c && kh_proto_caps_parse(c, &one) == KH_OK)
      caps |= one;
  }
  pthread_mutex_lock(&r->lock);
  snprintf(r->session, sizeof r->session, "%s", s);
  r->session_gen++;
  r->caps = caps;
  pthread_mutex_unlock(&r->lock);
out:
  kh_json_free(j);
  free(stmt);
  return e;
}

/* ---- requests with retries ---------------------------------------------------- */

static bool transient_curl(CURLcode rc)
{
  return rc == CURLE_COULDNT_CONNECT || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
         rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE;
}

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static kh_err map_status(kh_remote *r, const kh_http_req *rq, const xfer_result *x)
{
  const char *m = x->msg[0] ? x->msg : "";
  const char *sep = x->msg[0] ? ": " : "";
  switch (x->status) {
  case 404:
    return kh_seterr(KH_ERR_NOTFOUND, "%s %s: not found%s%s", rq->method, rq->target, sep, m);
  case 409:
    return kh_seterr(KH_ERR_EXISTS, "%s %s: exists%s%s", rq->method, rq->target, sep, m);
  case 403:
    if (!strcmp(x->code, "missing_capability"))
      return kh_seterr(KH_ERR_DENIED, "refused by the server: %s",
                       x->msg[0] ? m : "this device lacks a capability");
    if (!strcmp(x->code, "revoked"))
      return kh_seterr(KH_ERR_DENIED, "refused by the server: this device was revoked");
    return kh_seterr(KH_ERR_DENIED, "refused by the server (%s)%s%s",
                     x->code[0] ? x->code : "forbidden", sep, m);
  case 401: /* refused, not "does not authenticate": nothing here is damage */
    return kh_seterr(KH_ERR_DENIED, "%s: the server did not accept this device (%s)%s%s", r->url,
                     x->code[0] ? x->code : "unauthorized", sep, m);
  case 413:
    return kh_seterr(KH_ERR_TOOBIG, "%s %s: too large for the server%s%s", rq->method,
                     rq->target, sep, m);
  case 416:
    return kh_seterr(KH_ERR_FORMAT, "%s %s: range outside the object (truncated?)", rq->method,
                     rq->target);
  case 507:
    return kh_seterr(KH_ERR_NOSPACE, "account quota exceeded%s%s", sep, m);
  case 400:
    return kh_seterr(KH_ERR_INVAL, "%s %s: the server refused the request (%s)%s%s", rq->method,
                     rq->target, x->code[0] ? x->code : "bad_request", sep, m);
  default:
    return kh_seterr(KH_ERR_IO, "%s %s: server error, HTTP status %ld%s%s", rq->method,
                     rq->target, x->status, sep, m);
  }
}

kh_err kh_http_request(kh_remote *r, const kh_http_req *rq, kh_buf *out, kh_http_meta *meta)
{
  kh_err e = KH_OK;
  char body_hex[65];
  xfer_result x;
  bool reopened = false;
  long waited = 0;
  memset(&x, 0, sizeof x);
  if (!kh_proto_target_valid(rq->target))
    return kh_seterr(KH_ERR_INVAL, "'%s' is not a valid request target", rq->target);
  sha256_hex(rq->iov, rq->niov, body_hex);
  for (int tries = 0;; tries++) {
    char session[SESSION_MAX] = "";
    uint64_t gen = 0;
    if (rq->sign) {
      pthread_mutex_lock(&r->lock);
      snprintf(session, sizeof session, "%s", r->session);
      gen = r->session_gen;
      pthread_mutex_unlock(&r->lock);
      if (!*session) {
        if ((e = session_open(r, gen)))
          goto out;
        tries--; /* opening is not a retry */
        continue;
      }
    }
    if ((e = attempt(r, rq, session, body_hex, out, &x)))
      goto out;
    long wait = -1;
    if (x.rc != CURLE_OK) {
      if (x.toobig) {
        e = kh_seterr(KH_ERR_TOOBIG, "%s %s: response larger than %zu bytes", rq->method,
                      rq->target, rq->max);
        goto out;
      }
      if (transient_curl(x.rc))
        wait = 100L << (tries < 8 ? tries : 8);
      else {
        e = kh_seterr(KH_ERR_IO, "%s: %s", r->url, curl_easy_strerror(x.rc));
        goto out;
      }
    } else if (x.status == 429 || x.status == 503) {
      wait = x.retry_after >= 0 ? x.retry_after * 1000 : 100L << (tries < 8 ? tries : 8);
    } else if (x.status == 401 && rq->sign && !reopened &&
               (!strcmp(x.code, "session_expired") || !strcmp(x.code, "no_session"))) {
      reopened = true;
      if ((e = session_open(r, gen)))
        goto out;
      tries--;
      continue;
    } else {
      break;
    }
    /* transient: wait a little (with jitter), within the bounds */
    wait += (long)randombytes_uniform(100);
    if (tries + 1 > r->max_retries || waited + wait > r->max_retry_ms) {
      if (x.rc != CURLE_OK)
        e = kh_seterr(KH_ERR_IO, "%s: %s (gave up after %d tries)", r->url,
                      curl_easy_strerror(x.rc), tries + 1);
      else
        e = kh_seterr(KH_ERR_IO, "%s %s: the server is busy or unavailable (HTTP %ld, gave "
                      "up after %d tries)", rq->method, rq->target, x.status, tries + 1);
      goto out;
    }
    sleep_ms(wait);
    waited += wait;
  }
  if (x.status < 200 || x.status >= 300)
    e = map_status(r, rq, &x);
out:
  if (meta) {
    meta->status = x.status;
    meta->length = x.length;
    snprintf(meta->code, sizeof meta->code, "%s", x.code);
  }
  return e;
}

kh_err kh_remote_call(kh_remote *r, const kh_remote_req *rq, kh_remote_resp *resp)
{
  struct iovec one = {(void *)rq->body, rq->len};
  kh_http_req h = {.method = rq->method, .target = rq->target, .iov = &one,
                   .niov = rq->body || rq->len ? 1 : 0, .content_type = rq->content_type,
                   .sign = rq->sign, .if_none_match = rq->if_none_match, .range = rq->range,
                   .headers = rq->headers, .max = rq->max};
  kh_buf b;
  kh_http_meta m = {0};
  kh_buf_init(&b, rq->max == SIZE_MAX ? SIZE_MAX : rq->max + 1);
  kh_err e = kh_http_request(r, &h, &b, &m);
  if (resp) {
    memset(resp, 0, sizeof *resp);
    resp->status = m.status;
    snprintf(resp->code, sizeof resp->code, "%s", m.code);
    if (!e && kh_buf_append(&b, "", 1) == KH_OK) {
      resp->len = b.len - 1;
      resp->body = kh_buf_detach(&b, NULL);
    }
  }
  kh_buf_release(&b);
  return e;
}

void kh_remote_resp_release(kh_remote_resp *resp)
{
  if (!resp)
    return;
  free(resp->body);
  memset(resp, 0, sizeof *resp);
}

static kh_err json_request(kh_remote *r, const char *method, const char *target,
                           const char *body, kh_json **out, xfer_result *res)
{
  struct iovec one = {(void *)body, body ? strlen(body) : 0};
  kh_http_req h = {.method = method, .target = target, .iov = &one, .niov = body ? 1 : 0,
                   .max = 1u << 20};
  kh_buf b;
  kh_http_meta m = {0};
  kh_buf_init(&b, (1u << 20) + 1);
  *out = NULL;
  memset(res, 0, sizeof *res);
  kh_err e = kh_http_request(r, &h, &b, &m);
  res->status = m.status;
  snprintf(res->code, sizeof res->code, "%s", m.code);
  if (!e && (e = kh_json_parse((const char *)b.data, b.len, out)))
    e = kh_adderr(e, "%s %s: malformed response", method, target);
  if (!e && kh_json_type_of(*out) != KH_JSON_OBJ) {
    kh_json_free(*out);
    *out = NULL;
    e = kh_seterr(KH_ERR_FORMAT, "%s %s: response is not a JSON object", method, target);
  }
  kh_buf_release(&b);
  return e;
}

/* ---- region and sign-up (§7.1, §7.2) ------------------------------------------- */

kh_err kh_remote_region(kh_remote *r, kh_region_info *out)
{
  kh_json *j = NULL;
  xfer_result res;
  int64_t proto = 0;
  memset(out, 0, sizeof *out);
  kh_err e = json_request(r, "GET", "/v1/region", NULL, &j, &res);
  if (e)
    return kh_adderr(e, "asking %s for its region", r->url);
  const char *reg = kh_json_get_str(j, "region"), *inst = kh_json_get_str(j, "instance");
  const char *origin = kh_json_get_str(j, "origin"), *vkey = kh_json_get_str(j, "vkey");
  const char *signup = kh_json_get_str(j, "signup");
  if (!kh_json_get_int(j, "protocol", &proto) || proto != 1) {
    e = kh_seterr(KH_ERR_UNSUPPORTED, "%s speaks another protocol version", r->url);
    goto out;
  }
  size_t rl = reg ? strlen(reg) : 0;
  bool rok = rl >= 1 && rl <= 63;
  for (size_t i = 0; rok && i < rl; i++)
    rok = (reg[i] >= 'a' && reg[i] <= 'z') || (reg[i] >= '0' && reg[i] <= '9') || reg[i] == '-';
  bool iok = inst && strlen(inst) == 32;
  for (size_t i = 0; iok && i < 32; i++)
    iok = (inst[i] >= '0' && inst[i] <= '9') || (inst[i] >= 'a' && inst[i] <= 'f');
  if (!rok || !iok) {
    e = kh_seterr(KH_ERR_FORMAT, "%s: malformed region description", r->url);
    goto out;
  }
  out->protocol = (int)proto;
  snprintf(out->region, sizeof out->region, "%s", reg);
  snprintf(out->instance, sizeof out->instance, "%s", inst);
  snprintf(out->origin, sizeof out->origin, "%s", origin ? origin : "");
  snprintf(out->vkey, sizeof out->vkey, "%s", vkey ? vkey : "");
  snprintf(out->signup, sizeof out->signup, "%s", signup ? signup : "");
out:
  kh_json_free(j);
  return e;
}

/* s as a JSON string body (printable ASCII only: names and tokens) */
static kh_err json_str(kh_buf *b, const char *s)
{
  kh_err e = kh_buf_append(b, "\"", 1);
  for (; !e && *s; s++) {
    if (*s == '"' || *s == '\\')
      e = kh_buf_append(b, "\\", 1);
    if (!e && ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e))
      return kh_seterr(KH_ERR_INVAL, "only printable ASCII is allowed here");
    if (!e)
      e = kh_buf_append(b, s, 1);
  }
  return e ? e : kh_buf_append(b, "\"", 1);
}

kh_err kh_remote_signup(kh_remote *r, kh_device_state *d, const char *invite, unsigned *caps)
{
  kh_err e = KH_OK;
  char ch[64], spk[64], bpk[64], sigb[100], *stmt = NULL;
  size_t sl = 0;
  kh_buf body;
  kh_json *j = NULL;
  xfer_result res;
  kh_buf_init(&body, 8192);
  if (invite) {
    for (const char *p = invite; *p; p++)
      if (*p <= 0x20 || *p > 0x7e) {
        e = kh_seterr(KH_ERR_INVAL, "an invitation token is printable ASCII");
        goto out;
      }
    if (!*invite || strlen(invite) > 256) {
      e = kh_seterr(KH_ERR_INVAL, "bad invitation token");
      goto out;
    }
  }
  if ((e = kh_remote_challenge(r, ch)))
    goto out;
  kh_b64_encode(spk, d->sign_pk, 32);
  kh_b64_encode(bpk, d->box_pk, 32);
  if ((e = kh_proto_signup_statement(d->instance, ch, spk, bpk, d->name, invite, &stmt, &sl)))
    goto out;
  uint8_t sig[64];
  crypto_sign_detached(sig, NULL, (const uint8_t *)stmt, sl, d->sign_sk);
  kh_b64_encode(sigb, sig, 64);
  if ((e = kh_buf_append(&body, "{\"name\":", 8)) || (e = json_str(&body, d->name)) ||
      (e = kh_buf_printf(&body, ",\"sign_pk\":\"%s\",\"box_pk\":\"%s\"", spk, bpk)))
    goto out;
  if (invite && ((e = kh_buf_append(&body, ",\"invite\":", 10)) || (e = json_str(&body, invite))))
    goto out;
  if ((e = kh_buf_printf(&body, ",\"challenge\":\"%s\",\"sig\":\"%s\"}", ch, sigb)) ||
      (e = kh_buf_append(&body, "", 1)))
    goto out;
  if ((e = json_request(r, "POST", "/v1/signup", (const char *)body.data, &j, &res))) {
    e = kh_adderr(e, "signing up on %s", r->url);
    goto out;
  }
  const char *a = kh_json_get_str(j, "account"), *dv = kh_json_get_str(j, "device");
  bool ok = a && dv && strlen(a) == 32 && strlen(dv) == 32;
  for (size_t i = 0; ok && i < 32; i++)
    ok = ((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f')) &&
         ((dv[i] >= '0' && dv[i] <= '9') || (dv[i] >= 'a' && dv[i] <= 'f'));
  if (!ok) {
    e = kh_seterr(KH_ERR_FORMAT, "%s: malformed sign-up answer", r->url);
    goto out;
  }
  unsigned c = 0;
  const kh_json *cl = kh_json_get(j, "caps");
  for (size_t i = 0; i < kh_json_len(cl); i++) {
    unsigned one = 0;
    const char *s = kh_json_string(kh_json_at(cl, i));
    if (s && kh_proto_caps_parse(s, &one) == KH_OK)
      c |= one;
  }
  snprintf(d->account, sizeof d->account, "%s", a);
  snprintf(d->device, sizeof d->device, "%s", dv);
  if (caps)
    *caps = c;
out:
  kh_json_free(j);
  free(stmt);
  kh_buf_release(&body);
  return e;
}
