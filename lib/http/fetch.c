/* HTTP(S) GET on libcurl (http.h). */
#include "http/http.h"
#include "common/buf.h"
#include "common/err.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct kh_http_client {
  CURL *h;
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc = CURLE_FAILED_INIT;
static void global_init(void) { g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct sink {
  kh_buf b;
  bool toobig;
} sink;

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
  sink *s = ctx;
  size_t len = size * n;
  if (kh_buf_append(&s->b, p, len) != KH_OK) {
    s->toobig = true;
    return 0; /* aborts the transfer */
  }
  return len;
}

kh_err kh_http_client_new(const kh_http_opts *o, kh_http_client **out)
{
  kh_err e = KH_OK;
  kh_http_client *c = NULL;
  long ct = o && o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
  long tt = o && o->timeout_ms > 0 ? o->timeout_ms : 60000;
  *out = NULL;
  pthread_once(&g_once, global_init);
  if (g_init_rc != CURLE_OK)
    return kh_seterr(KH_ERR_IO, "libcurl: %s", curl_easy_strerror(g_init_rc));
  if (!(c = calloc(1, sizeof *c)) || !(c->h = curl_easy_init())) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  CURL *h = c->h;
  if (curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ct) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, tt) != CURLE_OK ||
      /* a stalled server: under 1 byte/s for 30 s */
      curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L) != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_USERAGENT, "keyhold/0.1") != CURLE_OK ||
      curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
      (o && o->ca_file && curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file) != CURLE_OK)) {
    e = kh_seterr(KH_ERR_IO, "libcurl does not support a required option");
    goto out;
  }
  *out = c;
  c = NULL;
out:
  kh_http_client_free(c);
  return e;
}

void kh_http_client_free(kh_http_client *c)
{
  if (!c)
    return;
  if (c->h)
    curl_easy_cleanup(c->h);
  free(c);
}

kh_err kh_http_get(kh_http_client *c, const char *url, size_t max, uint8_t **out,
                   size_t *len)
{
  kh_err e = KH_OK;
  sink s = {.toobig = false};
  long status = 0;
  *out = NULL;
  *len = 0;
  kh_buf_init(&s.b, max);
  /* max + 1: a body of exactly max bytes still leaves room for the NUL */
  if (max == SIZE_MAX) {
    e = kh_seterr(KH_ERR_INVAL, "unbounded HTTP response");
    goto out;
  }
  curl_easy_setopt(c->h, CURLOPT_URL, url);
  curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(c->h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
  CURLcode rc = curl_easy_perform(c->h);
  curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
  if (s.toobig || rc == CURLE_FILESIZE_EXCEEDED) {
    e = kh_seterr(KH_ERR_TOOBIG, "GET %s: response larger than %zu bytes", url, max);
    goto out;
  }
  if (rc != CURLE_OK) {
    e = kh_seterr(KH_ERR_IO, "GET %s: %s", url, curl_easy_strerror(rc));
    goto out;
  }
  if (status == 404) {
    e = kh_seterr(KH_ERR_NOTFOUND, "GET %s: 404 not found", url);
    goto out;
  }
  if (status != 200) {
    e = kh_seterr(KH_ERR_IO, "GET %s: HTTP status %ld", url, status);
    goto out;
  }
  /* the caller gets room for a terminating NUL */
  s.b.max = max + 1;
  if ((e = kh_buf_append(&s.b, "", 1)))
    goto out;
  *len = s.b.len - 1;
  *out = s.b.data;
  s.b.data = NULL;
out:
  kh_buf_release(&s.b);
  return e;
}
