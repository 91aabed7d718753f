/* The route table and its handlers (docs/protocol.md).  A row names a
 * path (exact, or a prefix whose rest the handler parses), the methods it
 * answers and its metrics label.  Unknown paths are 404; a known path with
 * another method is 405. */
#include "keyholdd.h"

#include <stdlib.h>
#include <string.h>

#define IMMUTABLE "public, max-age=31536000, immutable"

typedef void (*kd_handler)(kd_server *s, const kd_request *rq, const char *rest,
                           kd_response *rs);

typedef struct kd_row {
  const char *path;
  bool prefix;
  unsigned methods;
  kd_route route;
  kd_handler fn;
} kd_row;

static void get_checkpoint(kd_server *s, const kd_request *rq, const char *rest,
                           kd_response *rs)
{
  uint8_t *body = NULL;
  size_t len = 0;
  pthread_rwlock_wrlock(&s->log_lock);
  kh_err e = kh_tlog_refresh(s->log, NULL);
  const char *cp = kh_tlog_checkpoint(s->log, &len);
  if ((body = malloc(len ? len : 1)))
    memcpy(body, cp, len);
  pthread_rwlock_unlock(&s->log_lock);
  /* A checkpoint on disk that does not verify (e) is not served: the last
   * verified one is, and clients see the log stop growing. */
  (void)e;
  if (!body) {
    kd_error(rs, 500, "internal", "out of memory");
    return;
  }
  kd_ok(rs, "text/plain; charset=utf-8", "no-cache", body, len);
}

/* Shared by /log/tile/<L>/... and /log/tile/entries/...: rest is the path
 * after "/log/". */
static void get_tile(kd_server *s, const kd_request *rq, const char *rest, kd_response *rs)
{
  kh_tile_ref t;
  uint8_t *data = NULL;
  size_t len = 0;
  if (kh_tile_ref_parse(rest, strlen(rest), &t) != KH_OK) {
    kd_error(rs, 404, "not_found", "not a tile path (c2sp.org/tlog-tiles)");
    return;
  }
  pthread_rwlock_rdlock(&s->log_lock);
  kh_err e = kh_tlog_tile(s->log, &t, &data, &len);
  pthread_rwlock_unlock(&s->log_lock);
  if (e == KH_ERR_NOTFOUND) {
    /* maybe the log grew since we last looked */
    bool changed = false;
    pthread_rwlock_wrlock(&s->log_lock);
    if (kh_tlog_refresh(s->log, &changed) == KH_OK && changed)
      e = kh_tlog_tile(s->log, &t, &data, &len);
    pthread_rwlock_unlock(&s->log_lock);
  }
  if (e == KH_ERR_NOTFOUND) {
    kd_error(rs, 404, "not_found", "no such tile in the log");
    return;
  }
  if (e) {
    kd_error(rs, 500, "internal", "the tile cannot be read");
    return;
  }
  /* full tiles never change; a partial tile is replaced as the log grows */
  kd_ok(rs, "application/octet-stream", t.w ? "no-cache" : IMMUTABLE, data, len);
}

static void get_health(kd_server *s, const kd_request *rq, const char *rest, kd_response *rs)
{
  char buf[256];
  size_t o = (size_t)snprintf(buf, sizeof buf, "{\"status\":\"ok\",\"region\":");
  o = kd_json_str(buf, sizeof buf, o, s->region_id);
  pthread_rwlock_rdlock(&s->log_lock);
  uint64_t size = kh_tlog_size(s->log);
  pthread_rwlock_unlock(&s->log_lock);
  if (o < sizeof buf)
    o += (size_t)snprintf(buf + o, sizeof buf - o, ",\"log_size\":%llu}\n",
                          (unsigned long long)size);
  uint8_t *body = o < sizeof buf ? malloc(o) : NULL;
  if (!body) {
    kd_error(rs, 500, "internal", "out of memory");
    return;
  }
  memcpy(body, buf, o);
  kd_ok(rs, "application/json", "no-store", body, o);
}

static void get_metrics(kd_server *s, const kd_request *rq, const char *rest,
                        kd_response *rs)
{
  size_t len = 0;
  char *text = kd_metrics_render(&s->metrics, &len);
  if (!text) {
    kd_error(rs, 500, "internal", "out of memory");
    return;
  }
  kd_ok(rs, "text/plain; version=0.0.4; charset=utf-8", "no-store", (uint8_t *)text, len);
}

static const kd_row g_routes[] = {
  {"/log/checkpoint", false, KD_GET | KD_HEAD, KD_ROUTE_CHECKPOINT, get_checkpoint},
  {"/log/tile/entries/", true, KD_GET | KD_HEAD, KD_ROUTE_ENTRIES, get_tile},
  {"/log/tile/", true, KD_GET | KD_HEAD, KD_ROUTE_TILE, get_tile},
  {"/v1/health", false, KD_GET | KD_HEAD, KD_ROUTE_HEALTH, get_health},
  {"/metrics", false, KD_GET | KD_HEAD, KD_ROUTE_METRICS, get_metrics},
};

const char *kd_route_name(kd_route r)
{
  static const char *n[KD_ROUTE__COUNT] = {"log_checkpoint", "log_tile", "log_entries",
                                           "health", "metrics", "kms", "other"};
  return (unsigned)r < KD_ROUTE__COUNT ? n[r] : "other";
}

void kd_dispatch(kd_server *s, const kd_request *rq, kd_route *route, kd_response *rs)
{
  *route = KD_ROUTE_OTHER;
  if (kd_keysvc_dispatch(s, rq, route, rs))
    return;
  for (size_t i = 0; i < sizeof g_routes / sizeof g_routes[0]; i++) {
    const kd_row *r = &g_routes[i];
    size_t pl = strlen(r->path);
    if (r->prefix ? strncmp(rq->path, r->path, pl) != 0 : strcmp(rq->path, r->path) != 0)
      continue;
    *route = r->route;
    if (!(r->methods & rq->method)) {
      kd_error(rs, 405, "method_not_allowed", "method not allowed");
      return;
    }
    /* the handlers of this table read no body */
    if (rq->body_len) {
      kd_error(rs, 400, "bad_request", "this request takes no body");
      return;
    }
    /* tile handlers get the path after "/log/" */
    r->fn(s, rq, rq->path + (r->prefix ? strlen("/log/") : pl), rs);
    return;
  }
  kd_error(rs, 404, "not_found", "no such endpoint");
}
