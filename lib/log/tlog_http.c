/* A log read over HTTP(S): a kh_log_reader that GETs <prefix>/<rel>
 * (docs/protocol.md §3).  The server is not trusted: kh_tlog verifies
 * everything it reads against the checkpoint signed by the caller's key. */
#include "log/log_internal.h"
#include "common/err.h"
#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct http_reader {
  kh_http_client *client;
  char *prefix; /* without a trailing '/' */
} http_reader;

static void http_reader_free(void *ctx)
{
  http_reader *r = ctx;
  if (!r)
    return;
  kh_http_client_free(r->client);
  free(r->prefix);
  free(r);
}

static kh_err http_reader_read(void *ctx, const char *rel, size_t max, uint8_t **out,
                               size_t *len)
{
  http_reader *r = ctx;
  size_t n = strlen(r->prefix) + 1 + strlen(rel) + 1;
  char *url = malloc(n);
  if (!url)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  snprintf(url, n, "%s/%s", r->prefix, rel);
  kh_err e = kh_http_get(r->client, url, max, out, len);
  free(url);
  return e;
}

kh_err kh_tlog_open_url(const char *url, const kh_http_opts *o, const char *origin,
                        const char *vkey, kh_tlog **out)
{
  kh_err e;
  http_reader *r = NULL;
  *out = NULL;
  if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
    return kh_seterr(KH_ERR_INVAL, "log URL must start with http:// or https://");
  if (strlen(url) > 2048)
    return kh_seterr(KH_ERR_INVAL, "log URL too long");
  if (!(r = calloc(1, sizeof *r)) || !(r->prefix = strdup(url))) {
    http_reader_free(r);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  size_t pl = strlen(r->prefix);
  while (pl > 0 && r->prefix[pl - 1] == '/')
    r->prefix[--pl] = '\0';
  if ((e = kh_http_client_new(o, &r->client))) {
    http_reader_free(r);
    return e;
  }
  kh_log_reader rd = {http_reader_read, http_reader_free, r};
  return kh_tlog_open_reader(&rd, url, origin, vkey, out);
}
