/* The HTTP layer on libmicrohttpd (keyholdd.h): one request context per
 * request, bounded path, headers and body, JSON errors, access log and
 * metrics when the request completes.  Order for a request: route, limits
 * the headers show, per-address rate, the signed-request check (§7.4), the
 * row's prepare; only then is the body read (buffered up to 1 MiB for JSON
 * rows, streamed to DIR/server/tmp while hashed for uploads); then its
 * SHA-256 is checked against KH-Body-SHA256 and the handler runs. */
#include "keyholdd.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <sodium.h>
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
  char target[KD_PATH_MAX + 1];
  char remote[64];
  bool path_too_long;
  uint8_t *body;
  size_t body_len;
  bool queued;
  unsigned status;
  size_t bytes;
  kd_route route;
  const kd_row *row;
  kd_caller caller;
  bool authed;
  void *state;             /* the row's, from prepare; cleanup frees it */
  /* KD_UPLOAD: the body goes to upload_fd (upload_path) while hashed */
  int upload_fd;
  char *upload_path;
  uint64_t limit, received;
  crypto_hash_sha256_state sha;
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
  if (r->stream_free && r->stream_ctx)
    r->stream_free(r->stream_ctx);
  r->stream = NULL;
  r->stream_ctx = NULL;
  r->stream_free = NULL;
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

void kd_json(kd_response *r, unsigned status, const char *text, size_t n)
{
  uint8_t *b = malloc(n ? n : 1);
  if (!b) {
    kd_error(r, 500, "internal", "out of memory");
    return;
  }
  memcpy(b, text, n);
  kd_ok(r, "application/json", "no-store", b, n);
  r->status = status;
}

void kd_header_add(kd_response *r, const char *name, const char *value)
{
  for (int i = 0; i < KD_EXTRA_HEADERS; i++)
    if (!r->hname[i]) {
      r->hname[i] = name;
      snprintf(r->hval[i], sizeof r->hval[i], "%s", value);
      return;
    }
}

const char *kd_header(const kd_request *rq, const char *name)
{
  return rq->conn ? MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name) : NULL;
}

const char *kd_query(const kd_request *rq, const char *key)
{
  return rq->conn ? MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key) : NULL;
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

static void allow_header(kd_response *rs, unsigned methods)
{
  static const struct { unsigned m; const char *s; } t[] = {
    {KD_GET, "GET"}, {KD_HEAD, "HEAD"}, {KD_POST, "POST"}, {KD_PUT, "PUT"},
    {KD_DELETE, "DELETE"}};
  char v[64] = "";
  size_t o = 0;
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (methods & t[i].m)
      o += (size_t)snprintf(v + o, sizeof v - o, "%s%s", o ? ", " : "", t[i].s);
  kd_header_add(rs, MHD_HTTP_HEADER_ALLOW, v);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
  kd_response *rs = cls;
  if (pos >= rs->stream_len)
    return MHD_CONTENT_READER_END_OF_STREAM;
  if (max > rs->stream_len - pos)
    max = (size_t)(rs->stream_len - pos);
  long n = rs->stream(rs->stream_ctx, pos, buf, max);
  return n > 0 ? (ssize_t)n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_done(void *cls)
{
  kd_response *rs = cls;
  if (rs->stream_free)
    rs->stream_free(rs->stream_ctx);
  free(rs);
}

static enum MHD_Result queue(struct MHD_Connection *c, kd_conn_req *cr, kd_response *rs)
{
  struct MHD_Response *r = NULL;
  kd_response *keep = NULL;
  if (rs->stream) {
    /* the response object lives until MHD has sent the last byte */
    if ((keep = malloc(sizeof *keep))) {
      *keep = *rs;
      r = MHD_create_response_from_callback(rs->stream_len, 256 * 1024, stream_read, keep,
                                            stream_done);
      if (!r)
        free(keep);
    }
    if (!r && rs->stream_free)
      rs->stream_free(rs->stream_ctx);
    rs->stream_ctx = NULL;
    rs->stream = NULL;
  } else {
    r = MHD_create_response_from_buffer(rs->len, rs->body, MHD_RESPMEM_MUST_FREE);
    if (!r)
      free(rs->body);
  }
  rs->body = NULL; /* MHD owns it now */
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rs->content_type);
  if (rs->cache_control)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, rs->cache_control);
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  for (int i = 0; i < KD_EXTRA_HEADERS; i++)
    if (rs->hname[i])
      MHD_add_response_header(r, rs->hname[i], rs->hval[i]);
  enum MHD_Result ret = MHD_queue_response(c, rs->status, r);
  MHD_destroy_response(r);
  cr->queued = true;
  cr->status = rs->status;
  cr->bytes = rs->stream_len ? (size_t)rs->stream_len : rs->len;
  return ret;
}

static enum MHD_Result sum_header(void *ctx, enum MHD_ValueKind kind, const char *k,
                                  const char *v)
{
  size_t *n = ctx;
  *n += strlen(k) + (v ? strlen(v) : 0) + 4;
  return MHD_YES;
}

/* Rebuild "?query" from MHD's arguments (left unescaped, in order). */
typedef struct qbuf {
  char *b;
  size_t o, cap;
  bool over;
} qbuf;

static enum MHD_Result add_arg(void *ctx, enum MHD_ValueKind kind, const char *k, const char *v)
{
  qbuf *q = ctx;
  /* the buffer starts with the path: the first argument follows a '?' */
  bool first = !memchr(q->b, '?', q->o);
  int w = snprintf(q->b + q->o, q->cap - q->o, "%s%s%s%s", first ? "?" : "&", k, v ? "=" : "",
                   v ? v : "");
  if (w < 0 || (size_t)w >= q->cap - q->o)
    q->over = true;
  else
    q->o += (size_t)w;
  return q->over ? MHD_NO : MHD_YES;
}

/* MHD leaves paths and arguments as sent (no_unescape); rows of the log
 * and health are matched after percent-decoding (§2.1). */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
  return strlen(s);
}

static int hexval(char c)
{
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void percent_decode(char *s)
{
  char *o = s;
  for (char *p = s; *p; p++) {
    int h, l;
    if (*p == '%' && (h = hexval(p[1])) >= 0 && (l = hexval(p[2])) >= 0) {
      *o++ = (char)(h * 16 + l);
      p += 2;
    } else {
      *o++ = *p;
    }
  }
  *o = '\0';
}

static void remote_of(struct MHD_Connection *c, char *out, size_t n)
{
  snprintf(out, n, "-");
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (ci && ci->client_addr) {
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
      inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                (socklen_t)n);
  }
}

static void request_of(kd_conn_req *cr, struct MHD_Connection *c, kd_request *rq)
{
  memset(rq, 0, sizeof *rq);
  rq->method = cr->method;
  rq->method_name = cr->method_name;
  rq->path = cr->path;
  rq->target = cr->target;
  rq->rest = cr->row ? cr->path + kd_path_rest(cr->row, cr->path) : "";
  rq->body = cr->body;
  rq->body_len = cr->body_len;
  rq->caller = cr->authed ? &cr->caller : NULL;
  rq->remote = cr->remote;
  rq->conn = c;
  rq->state = cr->state;
}

/* Open the staging file of an upload in DIR/server/tmp. */
static bool upload_open(kd_server *s, kd_conn_req *cr, kd_response *rs)
{
  uint8_t r[12];
  char name[2 * sizeof r + 8];
  randombytes_buf(r, sizeof r);
  for (size_t i = 0; i < sizeof r; i++)
    snprintf(name + 2 * i, 3, "%02x", r[i]);
  memcpy(name + 2 * sizeof r, ".up", 4);
  size_t n = strlen(s->tmpdir) + sizeof name + 2;
  if (!(cr->upload_path = malloc(n))) {
    kd_error(rs, 500, "internal", "out of memory");
    return false;
  }
  snprintf(cr->upload_path, n, "%s/%s", s->tmpdir, name);
  cr->upload_fd = open(cr->upload_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (cr->upload_fd < 0) {
    free(cr->upload_path);
    cr->upload_path = NULL;
    kd_error(rs, 500, "internal", "cannot stage the upload");
    return false;
  }
  crypto_hash_sha256_init(&cr->sha);
  return true;
}

static void upload_drop(kd_conn_req *cr)
{
  if (cr->upload_fd >= 0)
    close(cr->upload_fd);
  cr->upload_fd = -1;
  if (cr->upload_path)
    unlink(cr->upload_path); /* ENOENT when the handler stored it */
  free(cr->upload_path);
  cr->upload_path = NULL;
}

/* Headers are in: find the row, check what the headers allow, run the
 * signed-request check and the row's prepare (before any body byte). */
static bool on_headers(kd_server *s, struct MHD_Connection *c, kd_conn_req *cr, const char *url,
                       kd_response *rs)
{
  size_t hbytes = 0;
  MHD_get_connection_values(c, MHD_HEADER_KIND, sum_header, &hbytes);
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_LENGTH);
  bool has_cl = false;
  unsigned long long clv = 0;
  if (cr->path_too_long) {
    kd_error(rs, 414, "uri_too_long", "request target too long");
    return false;
  }
  if (hbytes > KD_HEADERS_MAX) {
    kd_error(rs, 431, "headers_too_large", "request headers too large");
    return false;
  }
  if (cl) {
    char *end;
    errno = 0;
    clv = strtoull(cl, &end, 10);
    if (errno || end == cl || *end || cl[0] == '-') {
      kd_error(rs, 400, "bad_request", "Content-Length malformed");
      return false;
    }
    has_cl = true;
  }
  if (atomic_load(&s->stopping)) {
    kd_error(rs, 503, "unavailable", "the server is stopping");
    return false;
  }
  /* the target as sent: path and arguments */
  qbuf q = {cr->target, 0, sizeof cr->target, false};
  size_t pl = strlen(cr->path);
  memcpy(cr->target, cr->path, pl + 1);
  q.o = pl;
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, &q);
  if (q.over) {
    kd_error(rs, 414, "uri_too_long", "request target too long");
    return false;
  }
  bool method_ok = false;
  unsigned allow = 0;
  cr->row = kd_route_find(cr->path, cr->method, &method_ok, &allow);
  if ((!cr->row || !(cr->row->flags & KD_PROTO)) && strchr(cr->path, '%')) {
    percent_decode(cr->path);
    cr->row = kd_route_find(cr->path, cr->method, &method_ok, &allow);
    if (cr->row && (cr->row->flags & KD_PROTO))
      cr->row = NULL; /* the account protocol takes no percent-encoding */
  }
  /* the 1 MiB limit holds everywhere but for uploads (their kind's limit) */
  if (has_cl && clv > KD_BODY_MAX && !(cr->row && method_ok && (cr->row->flags & KD_UPLOAD))) {
    kd_error(rs, 413, "body_too_large", "request body too large");
    return false;
  }
  /* under /v1/ (but for health, §2.1) a path not spelled per §6.1 is 400 */
  if (!cr->row && !strncmp(cr->target, "/v1/", 4) && strncmp(cr->target, "/v1/health", 10) &&
      !kh_proto_target_valid(cr->target)) {
    kd_error(rs, 400, "bad_request", "request target not spelled per the protocol (§6.1)");
    return false;
  }
  if (!cr->row) {
    kd_error(rs, 404, "not_found", "no such endpoint");
    return false;
  }
  cr->route = cr->row->route;
  if (!method_ok) {
    kd_error(rs, 405, "method_not_allowed", "method not allowed");
    allow_header(rs, allow);
    return false;
  }
  unsigned fl = cr->row->flags;
  if ((fl & KD_PROTO) && !kh_proto_target_valid(cr->target)) {
    kd_error(rs, 400, "bad_request", "request target not spelled per the protocol (§6.1)");
    return false;
  }
  if (has_cl && clv > 0 && !(fl & (KD_JSON | KD_UPLOAD))) {
    kd_error(rs, 400, "bad_request", "this request takes no body");
    return false;
  }
  if ((fl & KD_RATE_ADDR) && !kd_rate_addr(s, cr->remote, rs))
    return false;
  kd_request rq;
  request_of(cr, c, &rq);
  if (fl & KD_AUTH) {
    if (!kd_auth_check(s, &rq, &cr->caller, rs))
      return false;
    cr->authed = true;
    rq.caller = &cr->caller;
  }
  if (fl & KD_UPLOAD) {
    bool ok = cr->row->prepare(s, &rq, &cr->limit, rs);
    cr->state = rq.state;
    if (!ok)
      return false;
    if (has_cl && clv > cr->limit) {
      kd_error(rs, 413, "body_too_large", "the body exceeds the limit of this object kind");
      return false;
    }
    if (!upload_open(s, cr, rs))
      return false;
  }
  return true;
}

/* The body is in: check its hash against the signed KH-Body-SHA256 (§7.4),
 * then run the handler. */
static void on_body_done(kd_server *s, struct MHD_Connection *c, kd_conn_req *cr,
                         kd_response *rs)
{
  kd_request rq;
  request_of(cr, c, &rq);
  uint8_t h[32];
  if (cr->row->flags & KD_UPLOAD) {
    crypto_hash_sha256_final(&cr->sha, h);
    if (close(cr->upload_fd) != 0) {
      cr->upload_fd = -1;
      kd_error(rs, 500, "internal", "cannot stage the upload");
      return;
    }
    cr->upload_fd = -1;
    rq.upload_path = cr->upload_path;
    rq.upload_len = cr->received;
  } else {
    crypto_hash_sha256(h, cr->body ? cr->body : (const uint8_t *)"", cr->body_len);
  }
  if (cr->authed) {
    char hex[65];
    const char *want = kd_header(&rq, "KH-Body-SHA256");
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
      hex[2 * i] = hx[h[i] >> 4];
      hex[2 * i + 1] = hx[h[i] & 15];
    }
    hex[64] = '\0';
    if (!want || strlen(want) != 64 || sodium_memcmp(hex, want, 64) != 0) {
      kd_error(rs, 400, "bad_request", "the body does not match KH-Body-SHA256");
      return;
    }
  }
  cr->row->fn(s, &rq, rs);
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
    cr->upload_fd = -1;
    cr->route = KD_ROUTE_OTHER;
    cr->method = method_of(method, &cr->method_name);
    size_t ul = strlen(url);
    cr->path_too_long = ul > KD_PATH_MAX;
    memcpy(cr->path, url, cr->path_too_long ? KD_PATH_MAX : ul);
    remote_of(c, cr->remote, sizeof cr->remote);
    *req_cls = cr;
    atomic_fetch_add(&s->metrics.in_flight, 1);
    if (!on_headers(s, c, cr, url, &rs))
      return queue(c, cr, &rs);
    return MHD_YES;
  }
  if (*upload_size) {
    size_t n = *upload_size;
    *upload_size = 0;
    /* a response already queued (an error): discard what still arrives */
    if (cr->queued)
      return MHD_YES;
    unsigned fl = cr->row->flags;
    if (fl & KD_UPLOAD) {
      if (n > cr->limit - cr->received) {
        upload_drop(cr);
        kd_error(&rs, 413, "body_too_large", "the body exceeds the limit of this object kind");
        return queue(c, cr, &rs);
      }
      crypto_hash_sha256_update(&cr->sha, (const uint8_t *)upload, n);
      for (size_t o = 0; o < n;) {
        ssize_t w = write(cr->upload_fd, upload + o, n - o);
        if (w < 0 && errno == EINTR)
          continue;
        if (w < 0) {
          bool full = errno == ENOSPC || errno == EDQUOT;
          upload_drop(cr);
          kd_error(&rs, full ? 507 : 500, full ? "quota" : "internal",
                   full ? "the server's storage is full" : "cannot stage the upload");
          return queue(c, cr, &rs);
        }
        o += (size_t)w;
      }
      cr->received += n;
      return MHD_YES;
    }
    if (!(fl & KD_JSON)) {
      kd_error(&rs, 400, "bad_request", "this request takes no body");
      return queue(c, cr, &rs);
    }
    if (n > KD_BODY_MAX - cr->body_len) {
      free(cr->body);
      cr->body = NULL;
      cr->body_len = 0;
      kd_error(&rs, 413, "body_too_large", "request body too large");
      return queue(c, cr, &rs);
    }
    uint8_t *nb = realloc(cr->body, cr->body_len + n);
    if (!nb)
      return MHD_NO;
    memcpy(nb + cr->body_len, upload, n);
    cr->body = nb;
    cr->body_len += n;
    return MHD_YES;
  }
  if (cr->queued)
    return MHD_YES;
  on_body_done(s, c, cr, &rs);
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
  /* an upload cut off (or refused) leaves nothing: the staging file goes */
  upload_drop(cr);
  if (cr->row && cr->row->cleanup && cr->state)
    cr->row->cleanup(s, cr->state);
  /* a request cut off before an answer counts as status 0 ("other") */
  unsigned status = cr->queued ? cr->status : 0;
  kd_metrics_count(&s->metrics, cr->route, status);
  kd_access_log(s, cr->method_name, cr->path, status,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? cr->bytes : 0, ms, cr->remote);
  atomic_fetch_sub(&s->metrics.in_flight, 1);
  free(cr->body);
  free(cr);
}

void kd_tmp_clean(kd_server *s)
{
  DIR *d = opendir(s->tmpdir);
  struct dirent *de;
  if (!d)
    return;
  while ((de = readdir(d)))
    if (de->d_name[0] != '.')
      unlinkat(dirfd(d), de->d_name, 0);
  closedir(d);
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
      MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
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
