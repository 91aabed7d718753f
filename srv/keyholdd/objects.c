/* The object rows (docs/protocol.md §8): PUT streamed to DIR/server/tmp and
 * stored whole (the HTTP layer checks its SHA-256 first), GET with ranges
 * streamed from the store, DELETE, and listings, each checked against the
 * §8.1 table of lib/proto.  Usage is accounted in the metadata store: a PUT
 * reserves its Content-Length against the quota before its body is read and
 * gives it back if the object is not stored. */
#include "keyholdd.h"

#include <stdlib.h>
#include <string.h>

#define ACCOUNT_SEG 2  /* /v1/accounts/<a>/... */
#define STORE_NAME_MAX (16 + KH_META_ID_HEX + 256)

/* The account of the path and the caller's right to op on name (or list
 * prefix), else rs filled: 403 wrong_account, 400 for a name not in the
 * grammar, 403 missing_capability / forbidden. */
static bool allowed(const kd_request *rq, kh_obj_op op, const char *name, char *account,
                    kh_obj_kind *kind, kd_response *rs)
{
  if (!kd_path_segment(rq->path, ACCOUNT_SEG, account, KH_META_ID_HEX + 1) ||
      !kd_require(rq, account, 0, rs)) {
    if (!rs->content_type)
      kd_error(rs, 403, "wrong_account", "the path names another account than the session's");
    return false;
  }
  *kind = op == KH_OP_LIST ? kh_proto_list_kind(name) : kh_proto_obj_kind(name, NULL);
  if (*kind == KH_OBJ_INVALID) {
    kd_error(rs, 400, "bad_request", "not an object name (§8.1)");
    return false;
  }
  unsigned lack = kh_proto_obj_allowed(op, name, rq->caller->device, rq->caller->caps);
  if (lack == KH_PROTO_CAP_NEVER) {
    kd_error(rs, 403, "forbidden", "no device may do this to this object");
    return false;
  }
  if (lack) {
    char msg[96];
    snprintf(msg, sizeof msg, "this device lacks the '%s' capability", kh_proto_cap_name(lack));
    kd_error(rs, 403, "missing_capability", msg);
    return false;
  }
  return true;
}

static bool store_name(char *out, size_t cap, const char *account, const char *name)
{
  int n = snprintf(out, cap, "accounts/%s/%s", account, name);
  return n > 0 && (size_t)n < cap;
}

static void store_failed(kd_response *rs, kh_err e)
{
  if (e == KH_ERR_NOSPACE)
    kd_error(rs, 507, "quota", "the server's storage is full");
  else
    kd_error(rs, 500, "internal", "the object store failed");
}

/* ---- PUT ------------------------------------------------------------------ */

typedef struct put_state {
  char account[KH_META_ID_HEX + 1];
  char name[STORE_NAME_MAX];
  uint64_t reserved;       /* bytes counted against the quota, until stored */
  bool excl, stored;
} put_state;

static bool put_prepare(kd_server *s, kd_request *rq, uint64_t *limit, kd_response *rs)
{
  char account[KH_META_ID_HEX + 1];
  kh_obj_kind kind;
  uint64_t size = 0;
  if (!allowed(rq, KH_OP_PUT, rq->rest, account, &kind, rs))
    return false;
  const char *inm = kd_header(rq, "If-None-Match"), *cl = kd_header(rq, "Content-Length");
  if (inm && strcmp(inm, "*") != 0) {
    kd_error(rs, 400, "bad_request", "If-None-Match takes only '*'");
    return false;
  }
  if (!cl) {
    kd_error(rs, 400, "bad_request", "an object PUT needs a Content-Length");
    return false;
  }
  uint64_t len = strtoull(cl, NULL, 10); /* checked by the HTTP layer */
  if (len > kh_proto_obj_max(kind)) {
    kd_error(rs, 413, "body_too_large", "the body exceeds the limit of this object kind");
    return false;
  }
  put_state *st = calloc(1, sizeof *st);
  if (!st) {
    kd_error(rs, 500, "internal", "out of memory");
    return false;
  }
  memcpy(st->account, account, sizeof st->account);
  /* objects are immutable; only protection may be replaced (§8.1) */
  st->excl = kind != KH_OBJ_PROTECTION || inm;
  if (!store_name(st->name, sizeof st->name, account, rq->rest)) {
    free(st);
    kd_error(rs, 400, "bad_request", "not an object name (§8.1)");
    return false;
  }
  kh_err e = kh_store_size(s->store, st->name, &size);
  if (e == KH_OK && st->excl) {
    free(st);
    kd_error(rs, 409, "exists", "the object exists");
    return false;
  }
  if (e && e != KH_ERR_NOTFOUND) {
    free(st);
    store_failed(rs, e);
    return false;
  }
  if ((e = kh_meta_usage_add(s->meta, account, (int64_t)len, true))) {
    free(st);
    if (e == KH_ERR_NOSPACE)
      kd_error(rs, 507, "quota", "the account's quota would be exceeded");
    else
      kd_error(rs, 500, "internal", "the metadata store failed");
    return false;
  }
  st->reserved = len;
  rq->state = st;
  *limit = len;
  return true;
}

static void put_object(kd_server *s, const kd_request *rq, kd_response *rs)
{
  put_state *st = rq->state;
  uint64_t old = 0;
  bool replaced = !st->excl && kh_store_size(s->store, st->name, &old) == KH_OK;
  kh_err e = kh_store_put_file(s->store, st->name, rq->upload_path, st->excl);
  if (e == KH_ERR_EXISTS) {
    kd_error(rs, 409, "exists", "the object exists");
    return;
  }
  if (e) {
    store_failed(rs, e);
    return;
  }
  st->stored = true;
  if (replaced && old)
    kh_meta_usage_add(s->meta, st->account, -(int64_t)old, false);
  char buf[64];
  int n = snprintf(buf, sizeof buf, "{\"size\":%llu}\n", (unsigned long long)rq->upload_len);
  kd_json(rs, 201, buf, (size_t)n);
}

static void put_cleanup(kd_server *s, void *state)
{
  put_state *st = state;
  if (!st->stored && st->reserved)
    kh_meta_usage_add(s->meta, st->account, -(int64_t)st->reserved, false);
  free(st);
}

/* ---- GET / HEAD ----------------------------------------------------------- */

typedef struct get_stream {
  kh_store *store;
  uint64_t base;
  char name[STORE_NAME_MAX];
} get_stream;

static long get_read(void *ctx, uint64_t pos, char *buf, size_t max)
{
  get_stream *g = ctx;
  return kh_store_get(g->store, g->name, g->base + pos, max, buf) == KH_OK ? (long)max : -1;
}

static void get_object(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char account[KH_META_ID_HEX + 1];
  kh_obj_kind kind;
  uint64_t size = 0, a = 0, b = 0;
  if (!allowed(rq, KH_OP_GET, rq->rest, account, &kind, rs))
    return;
  get_stream *g = calloc(1, sizeof *g);
  if (!g) {
    kd_error(rs, 500, "internal", "out of memory");
    return;
  }
  g->store = s->store;
  store_name(g->name, sizeof g->name, account, rq->rest);
  kh_err e = kh_store_size(s->store, g->name, &size);
  const char *range = kd_header(rq, "Range");
  if (e) {
    free(g);
    if (e == KH_ERR_NOTFOUND)
      kd_error(rs, 404, "not_found", "no such object");
    else
      store_failed(rs, e);
    return;
  }
  if (range && kh_proto_range_parse(range, &a, &b) != KH_OK) {
    free(g);
    kd_error(rs, 400, "bad_request", "Range must be bytes=A-B");
    return;
  }
  if (range && b >= size) {
    char cr[64];
    free(g);
    kd_error(rs, 416, "bad_range", "the range is outside the object");
    snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
    kd_header_add(rs, "Content-Range", cr);
    return;
  }
  free(rs->body);
  rs->body = NULL;
  rs->len = 0;
  rs->content_type = "application/octet-stream";
  rs->cache_control = "no-store";
  rs->stream = get_read;
  rs->stream_ctx = g;
  rs->stream_free = free;
  if (range) {
    char cr[96];
    g->base = a;
    rs->stream_len = b - a + 1;
    rs->status = 206;
    snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)a, (unsigned long long)b,
             (unsigned long long)size);
    kd_header_add(rs, "Content-Range", cr);
  } else {
    rs->stream_len = size;
    rs->status = 200;
  }
  if (rs->stream_len == 0) { /* nothing to stream */
    rs->stream = NULL;
    rs->stream_free = NULL;
    rs->stream_ctx = NULL;
    free(g);
    if (!(rs->body = malloc(1)))
      kd_error(rs, 500, "internal", "out of memory");
  }
}

/* ---- DELETE ------------------------------------------------------------------ */

static pthread_mutex_t g_delete_lock = PTHREAD_MUTEX_INITIALIZER;

static void delete_object(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char account[KH_META_ID_HEX + 1], name[STORE_NAME_MAX];
  kh_obj_kind kind;
  uint64_t size = 0;
  if (!allowed(rq, KH_OP_DELETE, rq->rest, account, &kind, rs))
    return;
  store_name(name, sizeof name, account, rq->rest);
  /* size, delete and the usage change as one step: two DELETEs of one
   * object at once give its size back once */
  pthread_mutex_lock(&g_delete_lock);
  kh_err e = kh_store_size(s->store, name, &size);
  if (e == KH_OK)
    e = kh_store_delete(s->store, name);
  if (e == KH_OK && size)
    kh_meta_usage_add(s->meta, account, -(int64_t)size, false);
  pthread_mutex_unlock(&g_delete_lock);
  if (e && e != KH_ERR_NOTFOUND) {
    store_failed(rs, e);
    return;
  }
  kd_json(rs, 204, "", 0);
}

/* ---- list ---------------------------------------------------------------------- */

#define LIST_MAX (512u << 20) /* bytes of one listing */

typedef struct list_ctx {
  const char *prefix;
  kh_obj_kind kind;
  char *b;
  size_t len, cap;
  bool over;
} list_ctx;

static int list_one(const char *name, uint64_t size, void *ctx)
{
  list_ctx *l = ctx;
  char full[STORE_NAME_MAX], line[STORE_NAME_MAX + 32];
  int n = snprintf(full, sizeof full, "%s/%s", l->prefix, name);
  /* only names of the kind: whatever else a directory holds is not listed */
  if (n <= 0 || (size_t)n >= sizeof full || kh_proto_obj_kind(full, NULL) != l->kind)
    return 0;
  n = snprintf(line, sizeof line, "%llu %s\n", (unsigned long long)size, full);
  if (l->len + (size_t)n > l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 65536;
    char *nb = nc <= LIST_MAX ? realloc(l->b, nc) : NULL;
    if (!nb) {
      l->over = true;
      return 1;
    }
    l->b = nb;
    l->cap = nc;
  }
  memcpy(l->b + l->len, line, (size_t)n);
  l->len += (size_t)n;
  return 0;
}

static void list_objects(kd_server *s, const kd_request *rq, kd_response *rs)
{
  char account[KH_META_ID_HEX + 1], prefix[STORE_NAME_MAX];
  list_ctx l = {rq->rest, KH_OBJ_INVALID, NULL, 0, 0, false};
  if (!allowed(rq, KH_OP_LIST, rq->rest, account, &l.kind, rs))
    return;
  store_name(prefix, sizeof prefix, account, rq->rest);
  kh_err e = kh_store_list(s->store, prefix, list_one, &l);
  if (e || l.over) {
    free(l.b);
    if (l.over)
      kd_error(rs, 500, "internal", "the listing is too large");
    else
      store_failed(rs, e);
    return;
  }
  if (!l.b && !(l.b = malloc(1))) {
    kd_error(rs, 500, "internal", "out of memory");
    return;
  }
  kd_ok(rs, "text/plain; charset=utf-8", "no-store", (uint8_t *)l.b, l.len);
}

/* ---- usage recount at start ------------------------------------------------------ */

static int add_size(const char *name, uint64_t size, void *ctx)
{
  *(uint64_t *)ctx += size;
  return 0;
}

typedef struct id_list {
  kh_meta_account *a;
  size_t n, cap;
  bool nomem;
} id_list;

static int collect(const kh_meta_account *a, void *ctx)
{
  id_list *l = ctx;
  if (l->n == l->cap) {
    size_t nc = l->cap ? 2 * l->cap : 64;
    kh_meta_account *na = realloc(l->a, nc * sizeof *na);
    if (!na) {
      l->nomem = true;
      return 1;
    }
    l->a = na;
    l->cap = nc;
  }
  l->a[l->n++] = *a;
  return 0;
}

kh_err kd_usage_recount(kd_server *s)
{
  id_list l = {NULL, 0, 0, false};
  /* collected first: the store's callbacks must not run inside the listing */
  kh_err e = kh_meta_account_list(s->meta, collect, &l);
  if (!e && l.nomem)
    e = KH_ERR_NOMEM;
  for (size_t i = 0; !e && i < l.n; i++) {
    char prefix[16 + KH_META_ID_HEX];
    uint64_t used = 0;
    snprintf(prefix, sizeof prefix, "accounts/%s", l.a[i].id);
    if (!(e = kh_store_list(s->store, prefix, add_size, &used)) && used != l.a[i].used_bytes)
      e = kh_meta_usage_set(s->meta, l.a[i].id, used);
  }
  free(l.a);
  return e;
}

static void get_or_delete(kd_server *s, const kd_request *rq, kd_response *rs)
{
  if (rq->method == KD_DELETE)
    delete_object(s, rq, rs);
  else
    get_object(s, rq, rs);
}

const kd_row kd_routes_objects[] = {
  {"/v1/accounts/*/objects/", true, KD_PUT, KD_ROUTE_OBJECT, KD_PROTO | KD_AUTH | KD_UPLOAD,
   put_object, put_prepare, put_cleanup},
  {"/v1/accounts/*/objects/", true, KD_GET | KD_HEAD | KD_DELETE, KD_ROUTE_OBJECT,
   KD_PROTO | KD_AUTH, get_or_delete, NULL, NULL},
  {"/v1/accounts/*/list/", true, KD_GET | KD_HEAD, KD_ROUTE_LIST, KD_PROTO | KD_AUTH,
   list_objects, NULL, NULL},
};
const size_t kd_routes_objects_n = sizeof kd_routes_objects / sizeof kd_routes_objects[0];
