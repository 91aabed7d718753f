/* Internal: a small HTTP(S) GET client on libcurl for the library's
 * readers of remote state (the log over HTTP, docs/protocol.md).  One
 * client keeps one connection open and reuses it; not thread-safe (one
 * client per thread). */
#ifndef KH_HTTP_HTTP_H
#define KH_HTTP_HTTP_H
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"
#include "keyhold/log.h" /* kh_http_opts */

typedef struct kh_http_client kh_http_client;

kh_err kh_http_client_new(const kh_http_opts *o, kh_http_client **out);
void kh_http_client_free(kh_http_client *c);
/* GET url.  200: *out (malloc'd, *len bytes plus a NUL) is the body, at
 * most max bytes (KH_ERR_TOOBIG beyond, checked against Content-Length
 * and while receiving).  404: KH_ERR_NOTFOUND.  Any other status,
 * redirect or transport failure: KH_ERR_IO with a detail. */
kh_err kh_http_get(kh_http_client *c, const char *url, size_t max, uint8_t **out,
                   size_t *len);

/* ---- the region-server client's internals (remote.c) ------------------ */
#include <stdbool.h>
#include <sys/uio.h>
#include "common/buf.h"
#include "keyhold/remote.h"
#include "provider/provider.h"

/* KH_OK if url is scheme://host[:port][/] (no path, user or query) and
 * plain http goes to a loopback host only; else KH_ERR_INVAL saying why. */
kh_err kh_http_url_check(const char *url);

typedef struct kh_http_req {
  const char *method, *target;
  const struct iovec *iov;   /* the body, gathered */
  size_t niov;
  const char *content_type;
  bool sign;
  const char *if_none_match, *range;
  const char *const *headers;
  size_t max;                /* largest accepted response body */
} kh_http_req;
typedef struct kh_http_meta {
  long status;
  char code[48];
  int64_t length;            /* the response's Content-Length, -1 if none */
} kh_http_meta;
/* One request with kh_remote_call's retries and status mapping; a 2xx
 * body is appended to out (nothing of a failed attempt stays in it). */
kh_err kh_http_request(kh_remote *r, const kh_http_req *rq, kh_buf *out, kh_http_meta *meta);
/* The URL the client was made for (no trailing '/'). */
const char *kh_remote_url(const kh_remote *r);

/* A provider (provider.h) over a region server's objects (docs/protocol.md
 * §8.2) for account names "accounts/<account>/..." and the region marker
 * "keyhold-region".  r is borrowed (it must outlive the provider). */
kh_err kh_provider_http_new(kh_remote *r, kh_provider **out);
/* Parse a list response (§8.2: "<size> <name>\n" lines) of kind prefix
 * (e.g. "data"), calling fn with names relative to the kind ("ab/ab12...")
 * as provider.h's list does.  KH_ERR_FORMAT on any malformed line or a
 * name of another kind; bounded (a line is at most 1024 bytes).  Fuzzed
 * (fuzz/fuzz_http_list.c). */
kh_err kh_http_list_parse(const char *text, size_t n, const char *kind,
                          kh_provider_list_fn fn, void *ctx);

#endif
