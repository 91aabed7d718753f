/* The HTTP layer on libmicrohttpd (keyholdd.h): one request context per
 * request, bounded path, headers and body, JSON errors, access log and
 * metrics when the request completes. */
#include "keyholdd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct kd_conn_req {
  struct timespec start;
  kd_method method;
  const char *method_name; /* static */
  char path[KD_PATH_MAX + 1];
  bool path_too_long;
  uint8_t *body;
  size_t body_len;
  bool body_too_big;
  bool queued;
  unsigned status;
  size_t bytes;
  kd_route route;
} kd_conn_req;

void kd_error(kd_response *r, unsigned status, const char *code, const char *msg)
{
  char buf[512];
  size_t o = 0;
  o = (size_t)snprintf(buf, sizeof buf, "{\"error\":");
  o = kd_json_str(buf, sizeof buf, o, msg);
  if (o < sizeof buf)
    o += (size_t)snprintf(buf + o, sizeof buf - o, ",\"code\":");
  o = kd_json_str(buf, sizeof buf, o, code);
  if (o < sizeof buf - 2)
    o += (size_t)snprintf(buf + o, sizeof buf - o, "}\n");
  free(r->body);
  r->status = status;
  r->content_type = "application/json";
  r->cache_control = "no-store";
  r->body = NULL;
  r->len = 0;
  if (o < sizeof buf && (r->body = malloc(o))) {
    memcpy(r->body, buf, o);
    r->len = o;
  }
}

void kd_ok(kd_response *r, const char *type, const char *cache, uint8_t *body, size_t len)
{
  free(r->body);
  r->status = 200;
  r->content_type = type;
  r->cache_control = cache;
  r->body = body;
  r->len = len;
}

static kd_method method_of(const char *m, const char **name)
{
  static const struct { const char *s; kd_method m; } t[] = {
    {"GET", KD_GET}, {"HEAD", KD_HEAD}, {"POST", KD_POST}, {"PUT", KD_PUT},
    {"DELETE", KD_DELETE}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (strcmp(m, t[i].s) == 0) {
      *name = t[i].s;
      return t[i].m;
    }
  *name = "OTHER"; /* the access log never echoes an unknown method */
  return KD_OTHER;
}

static enum MHD_Result queue(struct MHD_Connection *c, kd_conn_req *cr, kd_response *rs)
{
  struct MHD_Response *r =
      MHD_create_response_from_buffer(rs->len, rs->body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(rs->body);
    rs->body = NULL;
    return MHD_NO;
  }
  rs->body = NULL; /* MHD owns it now */
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rs->content_type);
  if (rs->cache_control)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, rs->cache_control);
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  if (rs->status == 405)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result ret = MHD_queue_response(c, rs->status, r);
  MHD_destroy_response(r);
  cr->queued = true;
  cr->status = rs->status;
  cr->bytes = rs->len;
  return ret;
}

static enum MHD_Result sum_header(void *ctx, enum MHD_ValueKind kind, const char *k,
                                  const char *v)
{
  size_t *n = ctx;
  *n += strlen(k) + (v ? strlen(v) : 0) + 4;
  return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **req_cls)
{
  kd_server *s = cls;
  kd_conn_req *cr = *req_cls;
  kd_response rs = {0};
  if (!cr) {
    /* first call: headers only */
    if (!(cr = calloc(1, sizeof *cr)))
      return MHD_NO;
    clock_gettime(CLOCK_MONOTONIC, &cr->start);
    cr->route = KD_ROUTE_OTHER;
    cr->method = method_of(method, &cr->method_name);
    size_t ul = strlen(url);
    cr->path_too_long = ul > KD_PATH_MAX;
    memcpy(cr->path, url, cr->path_too_long ? KD_PATH_MAX : ul);
    *req_cls = cr;
    atomic_fetch_add(&s->metrics.in_flight, 1);
    size_t hbytes = 0;
    MHD_get_connection_values(c, MHD_HEADER_KIND, sum_header, &hbytes);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cr->path_too_long) {
      kd_error(&rs, 414, "uri_too_long", "request target too long");
      return queue(c, cr, &rs);
    }
    if (hbytes > KD_HEADERS_MAX) {
      kd_error(&rs, 431, "headers_too_large", "request headers too large");
      return queue(c, cr, &rs);
    }
    if (cl) {
      char *end;
      errno = 0;
      unsigned long long v = strtoull(cl, &end, 10);
      if (errno || end == cl || *end || v > KD_BODY_MAX) {
        kd_error(&rs, 413, "body_too_large", "request body too large");
        return queue(c, cr, &rs);
      }
    }
    return MHD_YES;
  }
  if (*upload_size) {
    /* a response already queued (an error): discard what still arrives */
    if (!cr->queued) {
      if (*upload_size > KD_BODY_MAX - cr->body_len) {
        free(cr->body);
        cr->body = NULL;
        cr->body_len = 0;
        kd_error(&rs, 413, "body_too_large", "request body too large");
        *upload_size = 0;
        return queue(c, cr, &rs);
      }
      uint8_t *nb = realloc(cr->body, cr->body_len + *upload_size);
      if (!nb)
        return MHD_NO;
      memcpy(nb + cr->body_len, upload, *upload_size);
      cr->body = nb;
      cr->body_len += *upload_size;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (cr->queued)
    return MHD_YES;
  kd_request rq = {cr->method, cr->path, cr->body, cr->body_len};
  kd_dispatch(s, &rq, &cr->route, &rs);
  if (!rs.content_type)
    kd_error(&rs, 500, "internal", "internal error");
  return queue(c, cr, &rs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
  kd_server *s = cls;
  kd_conn_req *cr = *req_cls;
  if (!cr)
    return;
  *req_cls = NULL;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double ms = (double)(now.tv_sec - cr->start.tv_sec) * 1e3 +
              (double)(now.tv_nsec - cr->start.tv_nsec) / 1e6;
  char remote[INET6_ADDRSTRLEN] = "-";
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (ci && ci->client_addr) {
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
      inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, remote,
                sizeof remote);
    else if (sa->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, remote,
                sizeof remote);
  }
  /* a request cut off before an answer counts as status 0 ("other") */
  unsigned status = cr->queued ? cr->status : 0;
  kd_metrics_count(&s->metrics, cr->route, status);
  kd_access_log(s, cr->method_name, cr->path, status,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? cr->bytes : 0, ms, remote);
  atomic_fetch_sub(&s->metrics.in_flight, 1);
  free(cr->body);
  free(cr);
}

int kd_parse_listen(const char *arg, kd_listen *out)
{
  memset(out, 0, sizeof *out);
  const char *colon = strrchr(arg, ':');
  if (!colon || colon == arg)
    return -1;
  const char *h = arg;
  size_t hl = (size_t)(colon - arg);
  if (h[0] == '[') {
    if (hl < 3 || h[hl - 1] != ']')
      return -1;
    h++;
    hl -= 2;
  }
  if (hl >= sizeof out->host)
    return -1;
  memcpy(out->host, h, hl);
  out->host[hl] = '\0';
  const char *p = colon + 1;
  if (!*p || strlen(p) > 5)
    return -1;
  unsigned port = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    port = port * 10 + (unsigned)(*p - '0');
  }
  if (port > 65535)
    return -1;
  out->port = port;
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, out->host, &a4) == 1)
    out->loopback = (ntohl(a4.s_addr) >> 24) == 127;
  else if (inet_pton(AF_INET6, out->host, &a6) == 1)
    out->loopback = IN6_IS_ADDR_LOOPBACK(&a6);
  else
    return -1; /* numeric addresses only: no resolver at startup */
  return 0;
}

int kd_http_start(kd_server *s, const kd_listen *l, const char *cert, const char *key,
                  unsigned *port)
{
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  const struct sockaddr *sa;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG;
  memset(&a4, 0, sizeof a4);
  memset(&a6, 0, sizeof a6);
  if (inet_pton(AF_INET, l->host, &a4.sin_addr) == 1) {
    a4.sin_family = AF_INET;
    a4.sin_port = htons((uint16_t)l->port);
    sa = (const struct sockaddr *)&a4;
  } else {
    inet_pton(AF_INET6, l->host, &a6.sin6_addr);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)l->port);
    sa = (const struct sockaddr *)&a6;
    flags |= MHD_USE_IPv6;
  }
  if (cert)
    flags |= MHD_USE_TLS;
  s->mhd = MHD_start_daemon(
      flags, (uint16_t)l->port, NULL, NULL, on_request, s,
      MHD_OPTION_SOCK_ADDR, sa,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)KD_THREADS,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)KD_CONN_LIMIT,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)KD_CONN_PER_IP,
      MHD_OPTION_CONNECTION_TIMEOUT, s->idle_timeout ? s->idle_timeout : (unsigned)KD_CONN_TIMEOUT,
      /* request line and headers must fit: MHD answers 414 / 431 itself beyond */
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(KD_HEADERS_MAX + KD_PATH_MAX + 8192),
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
      /* without TLS the option list ends here */
      cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert,
      MHD_OPTION_HTTPS_MEM_KEY, key,
      MHD_OPTION_END);
  if (!s->mhd)
    return -1;
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
  *port = di ? di->port : l->port;
  return 0;
}

void kd_http_stop(kd_server *s, unsigned grace_ms)
{
  if (!s->mhd)
    return;
  MHD_socket fd = MHD_quiesce_daemon(s->mhd);
  if (fd != MHD_INVALID_SOCKET)
    close(fd);
  for (unsigned waited = 0; waited < grace_ms && atomic_load(&s->metrics.in_flight) > 0;
       waited += 10) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  MHD_stop_daemon(s->mhd);
  s->mhd = NULL;
}
