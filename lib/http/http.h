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

#endif
