/* The provider over a region server (docs/protocol.md §8.2): the vault's
 * object names "accounts/<account>/<name>" become
 * /v1/accounts/<account>/objects/<name>, a list of "accounts/<a>/<kind>"
 * becomes /v1/accounts/<a>/list/<kind>, and the region marker is
 * /v1/region/marker.  Everything read is authenticated by the vault above,
 * so the server is trusted for nothing but availability. */
#include "http/http.h"
#include "keyhold/proto.h"
#include "common/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_MAX ((size_t)256 << 20)
#define LINE_MAX_LEN 1024

typedef struct http_provider {
  kh_provider base;
  kh_remote *r;
} http_provider;

/* "accounts/<32 hex>/<rest>" -> target "/v1/accounts/<a>/<what>/<rest>". */
static kh_err target_of(const char *name, const char *what, char *out, size_t n,
                        const char **rest)
{
  const char *a = name + 9;
  if (strncmp(name, "accounts/", 9) || strlen(a) < 34 || a[32] != '/')
    return kh_seterr(KH_ERR_INVAL, "'%s' is not an account object name", name);
  for (int i = 0; i < 32; i++)
    if (!((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f')))
      return kh_seterr(KH_ERR_INVAL, "'%s' is not an account object name", name);
  int k = snprintf(out, n, "/v1/accounts/%.32s/%s/%s", a, what, a + 33);
  if (k < 0 || (size_t)k >= n)
    return kh_seterr(KH_ERR_INVAL, "object name too long: %s", name);
  if (rest)
    *rest = a + 33;
  return KH_OK;
}

/* the names §8.1 defines are immutable and named by their content's hash:
 * a second PUT of one (e.g. a retry after a lost answer) found it stored */
static bool content_named(const char *rest)
{
  kh_obj_kind k = kh_proto_obj_kind(rest, NULL);
  return k == KH_OBJ_PACK || k == KH_OBJ_INDEX || k == KH_OBJ_SNAPSHOT || k == KH_OBJ_DAMAGE;
}

static kh_err hp_put(kh_provider *p, const char *name, const struct iovec *iov, size_t niov,
                     bool excl)
{
  http_provider *h = (http_provider *)p;
  char target[1200];
  const char *rest;
  kh_err e = target_of(name, "objects", target, sizeof target, &rest);
  if (e)
    return e;
  kh_buf none;
  kh_buf_init(&none, 4096);
  kh_http_req rq = {.method = "PUT", .target = target, .iov = iov, .niov = niov,
                    .content_type = "application/octet-stream", .sign = true,
                    .if_none_match = excl ? "*" : NULL, .max = 4096};
  e = kh_http_request(h->r, &rq, &none, NULL);
  if (e == KH_ERR_EXISTS && (!excl || content_named(rest)))
    e = KH_OK; /* same name, same content (the server checks hashed names) */
  else if (e)
    e = kh_adderr(e, "object %s", name);
  kh_buf_release(&none);
  return e;
}

static kh_err do_get(http_provider *h, const char *name, const char *range, uint64_t max,
                     kh_buf *out, kh_http_meta *m)
{
  char target[1200];
  const char *rest = NULL;
  kh_err e;
  if (!strcmp(name, "keyhold-region")) {
    snprintf(target, sizeof target, "/v1/region/marker");
    if (max > KH_OBJMAX_REGION_MARKER)
      max = KH_OBJMAX_REGION_MARKER;
  } else if ((e = target_of(name, "objects", target, sizeof target, &rest))) {
    return e;
  } else {
    /* never more than the protocol lets an object of its kind be (§8.1) */
    kh_obj_kind k = kh_proto_obj_kind(rest, NULL);
    if (k == KH_OBJ_INVALID)
      return kh_seterr(KH_ERR_INVAL, "'%s' is not an object name of the protocol", name);
    if (max > kh_proto_obj_max(k))
      max = kh_proto_obj_max(k);
  }
  kh_http_req rq = {.method = "GET", .target = target, .sign = strcmp(name, "keyhold-region"),
                    .range = range, .max = max > SIZE_MAX - 1 ? SIZE_MAX - 1 : (size_t)max};
  e = kh_http_request(h->r, &rq, out, m);
  if (e == KH_ERR_TOOBIG)
    e = kh_seterr(KH_ERR_TOOBIG, "object %s: larger than %llu bytes", name,
                  (unsigned long long)max);
  else if (e && e != KH_ERR_NOTFOUND)
    e = kh_adderr(e, "object %s", name);
  else if (e)
    e = kh_seterr(KH_ERR_NOTFOUND, "object %s: not found", name);
  return e;
}

static kh_err hp_get(kh_provider *p, const char *name, uint64_t off, size_t len, kh_buf *out)
{
  http_provider *h = (http_provider *)p;
  char range[64];
  kh_http_meta m = {0};
  if (len == 0)
    return KH_OK;
  snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)off,
           (unsigned long long)(off + len - 1));
  size_t start = out->len;
  kh_err e = do_get(h, name, range, len, out, &m);
  if (e == KH_ERR_FORMAT)
    return kh_seterr(KH_ERR_FORMAT, "object %s: truncated (read past its end)", name);
  if (e)
    return e;
  /* 206 with exactly the range; a server that ignores Range is refused */
  if (m.status != 206 || out->len - start != len) {
    size_t got = out->len - start;
    out->len = start;
    return kh_seterr(KH_ERR_FORMAT, "object %s: the server answered %zu bytes (HTTP %ld) for "
                     "a range of %zu (truncated?)", name, got, m.status, len);
  }
  return KH_OK;
}

static kh_err hp_read(kh_provider *p, const char *name, uint64_t max, kh_buf *out)
{
  http_provider *h = (http_provider *)p;
  kh_http_meta m = {0};
  size_t start = out->len;
  kh_err e = do_get(h, name, NULL, max, out, &m);
  if (!e && m.status != 200) {
    out->len = start;
    e = kh_seterr(KH_ERR_FORMAT, "object %s: unexpected HTTP status %ld", name, m.status);
  }
  return e;
}

static kh_err hp_size(kh_provider *p, const char *name, uint64_t *size)
{
  http_provider *h = (http_provider *)p;
  char target[1200];
  kh_err e = target_of(name, "objects", target, sizeof target, NULL);
  if (e)
    return e;
  kh_buf none;
  kh_buf_init(&none, 4096);
  kh_http_meta m = {0};
  kh_http_req rq = {.method = "HEAD", .target = target, .sign = true, .max = 4096};
  e = kh_http_request(h->r, &rq, &none, &m);
  kh_buf_release(&none);
  if (e == KH_ERR_NOTFOUND)
    return kh_seterr(KH_ERR_NOTFOUND, "object %s: not found", name);
  if (e)
    return kh_adderr(e, "object %s", name);
  if (m.length < 0)
    return kh_seterr(KH_ERR_FORMAT, "object %s: the server gave no size", name);
  *size = (uint64_t)m.length;
  return KH_OK;
}

kh_err kh_http_list_parse(const char *text, size_t n, const char *kind,
                          kh_provider_list_fn fn, void *ctx)
{
  size_t kl = strlen(kind), i = 0;
  char name[LINE_MAX_LEN + 1];
  while (i < n) {
    const char *line = text + i;
    const char *nl = memchr(line, '\n', n - i);
    if (!nl)
      return kh_seterr(KH_ERR_FORMAT, "list of %s: unterminated line", kind);
    size_t ll = (size_t)(nl - line);
    i += ll + 1;
    if (ll > LINE_MAX_LEN)
      return kh_seterr(KH_ERR_FORMAT, "list of %s: line too long", kind);
    /* <size> SP <name> */
    size_t j = 0;
    uint64_t size = 0;
    while (j < ll && line[j] >= '0' && line[j] <= '9') {
      if (j >= 19) /* more than 19 digits may not fit */
        return kh_seterr(KH_ERR_FORMAT, "list of %s: size out of range", kind);
      size = size * 10 + (uint64_t)(line[j] - '0');
      j++;
    }
    if (j == 0 || (j > 1 && line[0] == '0') || j >= ll || line[j] != ' ')
      return kh_seterr(KH_ERR_FORMAT, "list of %s: malformed line", kind);
    j++;
    size_t nlen = ll - j;
    memcpy(name, line + j, nlen);
    name[nlen] = '\0';
    kh_obj_kind k = kh_proto_obj_kind(name, NULL);
    const char *kp = k == KH_OBJ_INVALID ? NULL : kh_proto_kind_prefix(k);
    if (!kp || strcmp(kp, kind) || nlen <= kl + 1 || memcmp(name, kind, kl) || name[kl] != '/')
      return kh_seterr(KH_ERR_FORMAT, "list of %s: a name of another kind", kind);
    if (fn(name + kl + 1, size, ctx))
      break;
  }
  return KH_OK;
}

static kh_err hp_list(kh_provider *p, const char *prefix, kh_provider_list_fn fn, void *ctx)
{
  http_provider *h = (http_provider *)p;
  char target[1200];
  const char *kind;
  kh_err e = target_of(prefix, "list", target, sizeof target, &kind);
  if (e)
    return e;
  if (!strchr("kdils", kind[0]) || strchr(kind, '/'))
    return kh_seterr(KH_ERR_INVAL, "cannot list %s on a region server", prefix);
  kh_buf b;
  kh_buf_init(&b, LIST_MAX + 1);
  kh_http_req rq = {.method = "GET", .target = target, .sign = true, .max = LIST_MAX};
  e = kh_http_request(h->r, &rq, &b, NULL);
  if (e == KH_ERR_NOTFOUND)
    e = KH_OK; /* a missing prefix lists nothing */
  else if (e)
    e = kh_adderr(e, "listing %s", prefix);
  else
    e = kh_http_list_parse((const char *)b.data, b.len, kind, fn, ctx);
  kh_buf_release(&b);
  return e;
}

static kh_err hp_del(kh_provider *p, const char *name)
{
  http_provider *h = (http_provider *)p;
  char target[1200];
  kh_err e = target_of(name, "objects", target, sizeof target, NULL);
  if (e)
    return e;
  kh_buf none;
  kh_buf_init(&none, 4096);
  kh_http_req rq = {.method = "DELETE", .target = target, .sign = true, .max = 4096};
  e = kh_http_request(h->r, &rq, &none, NULL);
  kh_buf_release(&none);
  if (e == KH_ERR_NOTFOUND)
    e = KH_OK;
  return e ? kh_adderr(e, "object %s", name) : KH_OK;
}

static void hp_destroy(kh_provider *p)
{
  free(p);
}

static const kh_provider_ops http_ops = {hp_put, hp_get, hp_read, hp_size,
                                         hp_list, hp_del, hp_destroy};

kh_err kh_provider_http_new(kh_remote *r, kh_provider **out)
{
  http_provider *h = calloc(1, sizeof *h);
  *out = NULL;
  if (!h)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  h->base.ops = &http_ops;
  h->r = r;
  *out = &h->base;
  return KH_OK;
}
