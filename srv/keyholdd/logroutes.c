/* The log, health and metrics rows (docs/protocol.md §3-§5). */
#include "keyholdd.h"

#include <stdlib.h>
#include <string.h>

#define IMMUTABLE "public, max-age=31536000, immutable"

static void get_checkpoint(kd_server *s, const kd_request *rq, kd_response *rs)
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

/* Shared by /log/tile/<L>/... and /log/tile/entries/...: the tile path is
 * what follows "/log/". */
static void get_tile(kd_server *s, const kd_request *rq, kd_response *rs)
{
  const char *rest = rq->path + strlen("/log/");
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

static void get_health(kd_server *s, const kd_request *rq, kd_response *rs)
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

static void get_metrics(kd_server *s, const kd_request *rq, kd_response *rs)
{
  size_t len = 0;
  char *text = kd_metrics_render(&s->metrics, &len);
  if (!text) {
    kd_error(rs, 500, "internal", "out of memory");
    return;
  }
  kd_ok(rs, "text/plain; version=0.0.4; charset=utf-8", "no-store", (uint8_t *)text, len);
}

const kd_row kd_routes_log[] = {
  {"/log/checkpoint", false, KD_GET | KD_HEAD, KD_ROUTE_CHECKPOINT, 0, get_checkpoint, NULL, NULL},
  {"/log/tile/entries/", true, KD_GET | KD_HEAD, KD_ROUTE_ENTRIES, 0, get_tile, NULL, NULL},
  {"/log/tile/", true, KD_GET | KD_HEAD, KD_ROUTE_TILE, 0, get_tile, NULL, NULL},
  {"/v1/health", false, KD_GET | KD_HEAD, KD_ROUTE_HEALTH, 0, get_health, NULL, NULL},
  {"/metrics", false, KD_GET | KD_HEAD, KD_ROUTE_METRICS, 0, get_metrics, NULL, NULL},
};
const size_t kd_routes_log_n = sizeof kd_routes_log / sizeof kd_routes_log[0];
