/* Observability: Prometheus metrics and the JSON-lines access log. */
#include "keyholdd.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void kd_metrics_count(kd_metrics *m, kd_route route, unsigned status)
{
  unsigned cls = status >= 100 && status < 600 ? status / 100 : 0;
  atomic_fetch_add(&m->count[route < KD_ROUTE__COUNT ? route : KD_ROUTE_OTHER][cls], 1);
}

char *kd_metrics_render(kd_metrics *m, size_t *len)
{
  static const char *cls[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
  size_t cap = 8192, o = 0;
  char *b = malloc(cap);
  if (!b)
    return NULL;
  o += (size_t)snprintf(b + o, cap - o,
                        "# HELP keyholdd_http_requests_total HTTP requests answered, by route "
                        "and status class.\n"
                        "# TYPE keyholdd_http_requests_total counter\n");
  for (int r = 0; r < KD_ROUTE__COUNT; r++)
    for (int c = 0; c < 6; c++) {
      uint64_t v = atomic_load(&m->count[r][c]);
      if (v || (c == 2 || c == 4))
        o += (size_t)snprintf(b + o, cap - o,
                              "keyholdd_http_requests_total{route=\"%s\",code=\"%s\"} %llu\n",
                              kd_route_name((kd_route)r), cls[c], (unsigned long long)v);
    }
  o += (size_t)snprintf(b + o, cap - o,
                        "# HELP keyholdd_http_requests_in_flight HTTP requests being served.\n"
                        "# TYPE keyholdd_http_requests_in_flight gauge\n"
                        "keyholdd_http_requests_in_flight %lld\n",
                        (long long)atomic_load(&m->in_flight));
  if (o >= cap) {
    free(b);
    return NULL;
  }
  *len = o;
  return b;
}

size_t kd_json_str(char *buf, size_t cap, size_t o, const char *s)
{
  static const char hex[] = "0123456789abcdef";
  if (o + 1 >= cap)
    return cap;
  buf[o++] = '"';
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (o + 7 >= cap)
      return cap;
    if (*p == '"' || *p == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)*p;
    } else if (*p < 0x20 || *p >= 0x7f) {
      /* bytes, not characters: a non-ASCII path is escaped byte by byte */
      memcpy(buf + o, "\\u00", 4);
      buf[o + 4] = hex[*p >> 4];
      buf[o + 5] = hex[*p & 15];
      o += 6;
    } else {
      buf[o++] = (char)*p;
    }
  }
  if (o + 1 >= cap)
    return cap;
  buf[o++] = '"';
  buf[o] = '\0';
  return o;
}

int kd_access_reopen(kd_server *s)
{
  if (!s->access_path)
    return 0;
  FILE *f = fopen(s->access_path, "ae");
  if (!f)
    return -1;
  setvbuf(f, NULL, _IOLBF, 0);
  pthread_mutex_lock(&s->access_lock);
  FILE *old = s->access;
  s->access = f;
  pthread_mutex_unlock(&s->access_lock);
  if (old)
    fclose(old);
  return 0;
}

void kd_access_log(kd_server *s, const char *method, const char *path, unsigned status,
                   size_t bytes, double ms, const char *remote)
{
  char line[KD_PATH_MAX * 6 + 512];
  struct timespec now;
  struct tm tm;
  char ts[32];
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  size_t o = (size_t)snprintf(line, sizeof line, "{\"time\":\"%s.%03ldZ\",\"method\":", ts,
                              now.tv_nsec / 1000000);
  o = kd_json_str(line, sizeof line, o, method);
  if (o < sizeof line)
    o += (size_t)snprintf(line + o, sizeof line - o, ",\"path\":");
  /* the path only: a query string is not logged (MHD strips it from url) */
  o = kd_json_str(line, sizeof line, o, path);
  if (o < sizeof line)
    o += (size_t)snprintf(line + o, sizeof line - o,
                          ",\"status\":%u,\"bytes\":%zu,\"duration_ms\":%.3f,\"remote\":",
                          status, bytes, ms);
  o = kd_json_str(line, sizeof line, o, remote);
  if (o + 2 >= sizeof line)
    return;
  line[o++] = '}';
  line[o++] = '\n';
  pthread_mutex_lock(&s->access_lock);
  FILE *f = s->access ? s->access : stderr;
  fwrite(line, 1, o, f);
  fflush(f);
  pthread_mutex_unlock(&s->access_lock);
}
