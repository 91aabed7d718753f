/* The device's server-mode state (docs/format.md §12), the kind-4 key
 * object (§4), and the client's URL rules (include/keyhold/remote.h). */
#include "kh_test.h"
#include "keyhold/remote.h"
#include "http/http.h"
#include "keyhold/proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];

static void fill(kh_device_state *d, const char *inst)
{
  snprintf(d->url, sizeof d->url, "http://127.0.0.1:8443");
  snprintf(d->region, sizeof d->region, "eu-west");
  snprintf(d->instance, sizeof d->instance, "%s", inst);
  snprintf(d->name, sizeof d->name, "laptop one");
}

static void test_save_load(void)
{
  const char *inst = "0123456789abcdef0123456789abcdef";
  kh_device_state *d = NULL, *l = NULL, *f = NULL;
  CHECK_OK(kh_device_state_new(&d));
  fill(d, inst);
  /* ids empty before sign-up: still a valid state (enrolment saves it so) */
  CHECK_OK(kh_device_state_save(d, g_dir, false));
  CHECK_OK(kh_device_state_load(g_dir, inst, &l));
  CHECK(l && !strcmp(l->url, d->url) && !strcmp(l->name, "laptop one") && !*l->account);
  CHECK(l && !memcmp(l->sign_pk, d->sign_pk, 32) && !memcmp(l->box_pk, d->box_pk, 32));
  CHECK(l && !sodium_memcmp(l->sign_sk, d->sign_sk, 64) && !sodium_memcmp(l->box_sk, d->box_sk, 32));
  kh_device_state_free(l);
  l = NULL;
  /* a second identity on the same instance is refused, overwrite allowed */
  CHECK_ERR(kh_device_state_save(d, g_dir, false), KH_ERR_EXISTS);
  snprintf(d->account, sizeof d->account, "00112233445566778899aabbccddeeff");
  snprintf(d->device, sizeof d->device, "ffeeddccbbaa99887766554433221100");
  CHECK_OK(kh_device_state_save(d, g_dir, true));
  CHECK_OK(kh_device_state_find(g_dir, "http://127.0.0.1:8443/", &f));
  CHECK(f && !strcmp(f->account, d->account) && !strcmp(f->device, d->device));
  CHECK_ERR(kh_device_state_find(g_dir, "http://127.0.0.1:9999", &l), KH_ERR_NOTFOUND);
  CHECK(strstr(kh_errdetail(), "keyhold init") != NULL);
  /* the key file is private */
  char p[512];
  struct stat st;
  snprintf(p, sizeof p, "%s/server-%s/device.key", g_dir, inst);
  CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 96);
  /* a key file of another device is refused, not used */
  kh_device_state *o = NULL;
  CHECK_OK(kh_device_state_new(&o));
  FILE *fp = fopen(p, "wb");
  fwrite(o->sign_sk, 1, 64, fp);
  fwrite(o->box_sk, 1, 32, fp);
  fclose(fp);
  CHECK_ERR(kh_device_state_load(g_dir, inst, &l), KH_ERR_AUTH);
  CHECK(l == NULL);
  /* bad fields are refused on save */
  snprintf(o->url, sizeof o->url, "ftp://x");
  snprintf(o->region, sizeof o->region, "eu");
  snprintf(o->instance, sizeof o->instance, "%s", inst);
  snprintf(o->name, sizeof o->name, "n");
  CHECK_ERR(kh_device_state_save(o, g_dir, true), KH_ERR_INVAL);
  kh_device_state_free(o);
  kh_device_state_free(f);
  kh_device_state_free(d);
}

static void test_parse(void)
{
  kh_device_state d;
  char text[1024], zero[65], aa[65];
  memset(zero, '0', 64);
  zero[64] = 0;
  memset(aa, 'a', 64);
  aa[64] = 0;
  int n = snprintf(text, sizeof text,
                   "keyhold-device v1\nurl https://h:1\nregion r\ninstance %s\naccount -\n"
                   "device -\nname n\nsign_pk %s\nbox_pk %s\nkeycheck -\n",
                   "0123456789abcdef0123456789abcdef", zero, aa);
  CHECK_OK(kh_device_state_parse(text, (size_t)n, &d));
  CHECK(!strcmp(d.url, "https://h:1") && !*d.account && d.box_pk[0] == 0xaa);
  /* every prefix is refused (truncation), and a trailing line too */
  for (int i = 0; i < n; i++)
    CHECK_ERR(kh_device_state_parse(text, (size_t)i, &d), KH_ERR_FORMAT);
  text[n] = 'x';
  CHECK_ERR(kh_device_state_parse(text, (size_t)n + 1, &d), KH_ERR_FORMAT);
  /* an upper-case id is not an id */
  char *acc = strstr(text, "account -");
  memcpy(acc + 8, "X", 1);
  CHECK_ERR(kh_device_state_parse(text, (size_t)n, &d), KH_ERR_FORMAT);
}

static void test_wrap(void)
{
  kh_device_state *a = NULL, *b = NULL;
  uint8_t key[32], out[32], w[KH_DEVICE_WRAP_LEN];
  int cipher = 0;
  CHECK_OK(kh_device_state_new(&a));
  CHECK_OK(kh_device_state_new(&b));
  randombytes_buf(key, 32);
  CHECK_OK(kh_device_wrap_seal(a->box_pk, key, 2, w));
  CHECK_OK(kh_device_wrap_open(a, w, sizeof w, out, &cipher));
  CHECK(!memcmp(out, key, 32) && cipher == 2);
  CHECK_ERR(kh_device_wrap_open(b, w, sizeof w, out, &cipher), KH_ERR_AUTH);
  CHECK_ERR(kh_device_wrap_open(a, w, sizeof w - 1, out, &cipher), KH_ERR_FORMAT);
  w[40] ^= 1;
  CHECK_ERR(kh_device_wrap_open(a, w, sizeof w, out, &cipher), KH_ERR_AUTH);
  char c1[65], c2[65];
  kh_device_keycheck(key, c1);
  key[0] ^= 1;
  kh_device_keycheck(key, c2);
  CHECK(strlen(c1) == 64 && strcmp(c1, c2));
  kh_device_state_free(a);
  kh_device_state_free(b);
}

static void test_urls(void)
{
  kh_remote *r = NULL;
  CHECK_OK(kh_remote_new("http://127.0.0.1:1", NULL, &r));
  kh_remote_free(r);
  r = NULL;
  CHECK_OK(kh_remote_new("http://localhost:1", NULL, &r));
  kh_remote_free(r);
  r = NULL;
  CHECK_OK(kh_remote_new("http://[::1]:1", NULL, &r));
  kh_remote_free(r);
  r = NULL;
  CHECK_OK(kh_remote_new("https://backup.example:443", NULL, &r));
  kh_remote_free(r);
  r = NULL;
  /* plain http only to loopback; no path, no user info */
  CHECK_ERR(kh_remote_new("http://10.0.0.1:80", NULL, &r), KH_ERR_INVAL);
  CHECK_ERR(kh_remote_new("http://127.0.0.1.example.com:80", NULL, &r), KH_ERR_INVAL);
  CHECK_ERR(kh_remote_new("https://h/path", NULL, &r), KH_ERR_INVAL);
  CHECK_ERR(kh_remote_new("https://u@h", NULL, &r), KH_ERR_INVAL);
  CHECK_ERR(kh_remote_new("ftp://h", NULL, &r), KH_ERR_INVAL);
  CHECK(r == NULL);
}

typedef struct seen { int n; uint64_t total; char last[200]; } seen;
static int on_name(const char *name, uint64_t size, void *ctx)
{
  seen *s = ctx;
  s->n++;
  s->total += size;
  snprintf(s->last, sizeof s->last, "%s", name);
  return 0;
}

static void test_list_parse(void)
{
  char h1[65], h2[65], text[600];
  memset(h1, 'a', 64);
  h1[64] = 0;
  memset(h2, 'b', 64);
  h2[64] = 0;
  int n = snprintf(text, sizeof text, "12 data/aa/%s\n7 data/bb/%s\n", h1, h2);
  seen s = {0};
  CHECK_OK(kh_http_list_parse(text, (size_t)n, "data", on_name, &s));
  CHECK(s.n == 2 && s.total == 19 && !strncmp(s.last, "bb/bbbb", 7));
  /* names are relative to the kind, and only of that kind */
  memset(&s, 0, sizeof s);
  CHECK_ERR(kh_http_list_parse(text, (size_t)n, "index", on_name, &s), KH_ERR_FORMAT);
  /* a truncated response (no final newline), a leading zero, a huge size */
  CHECK_ERR(kh_http_list_parse(text, (size_t)n - 1, "data", on_name, &s), KH_ERR_FORMAT);
  n = snprintf(text, sizeof text, "012 data/aa/%s\n", h1);
  CHECK_ERR(kh_http_list_parse(text, (size_t)n, "data", on_name, &s), KH_ERR_FORMAT);
  n = snprintf(text, sizeof text, "99999999999999999999 data/aa/%s\n", h1);
  CHECK_ERR(kh_http_list_parse(text, (size_t)n, "data", on_name, &s), KH_ERR_FORMAT);
  /* a pack under the wrong fan-out directory is not a pack name */
  n = snprintf(text, sizeof text, "1 data/ab/%s\n", h1);
  CHECK_ERR(kh_http_list_parse(text, (size_t)n, "data", on_name, &s), KH_ERR_FORMAT);
  CHECK_OK(kh_http_list_parse("", 0, "keys", on_name, &s));
}

/* ---- a scripted HTTP server on loopback ---------------------------------- */

/* The answer to one request: status (0: reset the connection without an
 * answer), extra headers, body. */
typedef struct answer { int status; const char *headers; const char *body; } answer;
typedef answer (*script_fn)(const char *method, const char *path, const char *hdrs, int n);

static struct mock {
  int lfd, port;
  script_fn script;
  _Atomic int nreq;
  _Atomic int nsession;
  char last_hdrs[4096];
  pthread_t tid;
  bool stop;
} g_mock;

static void *mock_conn(void *arg)
{
  int fd = (int)(intptr_t)arg;
  char buf[65536];
  for (;;) {
    size_t got = 0;
    char *end = NULL;
    while (!(end = strstr(buf, "\r\n\r\n"))) {
      ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
      if (r <= 0)
        goto done;
      got += (size_t)r;
      buf[got] = 0;
    }
    size_t hlen = (size_t)(end - buf) + 4;
    long clen = 0;
    char *cl = strcasestr(buf, "\r\nContent-Length:");
    if (cl && cl < end)
      clen = strtol(cl + 17, NULL, 10);
    while ((long)(got - hlen) < clen) {
      ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
      if (r <= 0)
        goto done;
      got += (size_t)r;
    }
    buf[hlen - 2] = 0;
    char method[16] = "", path[1024] = "";
    sscanf(buf, "%15s %1023s", method, path);
    int n = atomic_fetch_add(&g_mock.nreq, 1) + 1;
    snprintf(g_mock.last_hdrs, sizeof g_mock.last_hdrs, "%.4000s", buf);
    answer a;
    if (!strcmp(path, "/v1/challenge"))
      a = (answer){200, "", "{\"challenge\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\",\"expires\":9}"};
    else if (!strcmp(path, "/v1/session")) {
      int k = atomic_fetch_add(&g_mock.nsession, 1) + 1;
      static char sb[128];
      snprintf(sb, sizeof sb, "{\"session\":\"sess%040d\",\"expires\":9,\"caps\":[\"backup\",\"read\"]}", k);
      a = (answer){201, "", sb};
    } else
      a = g_mock.script(method, path, buf, n);
    if (a.status == 0) {
      struct linger lg = {1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      goto done;
    }
    char out[70000];
    int k = snprintf(out, sizeof out, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n%s", a.status,
                     strlen(a.body), a.headers, !strcmp(method, "HEAD") ? "" : a.body);
    if (send(fd, out, (size_t)k, MSG_NOSIGNAL) != k)
      goto done;
    memmove(buf, buf + hlen + clen, got - hlen - (size_t)clen);
    buf[got - hlen - (size_t)clen] = 0;
    if (got - hlen - (size_t)clen)
      continue; /* pipelined: not used by the client */
    buf[0] = 0;
  }
done:
  close(fd);
  return NULL;
}

static void *mock_main(void *arg)
{
  (void)arg;
  for (;;) {
    int fd = accept(g_mock.lfd, NULL, NULL);
    if (fd < 0 || g_mock.stop)
      break;
    pthread_t t;
    pthread_create(&t, NULL, mock_conn, (void *)(intptr_t)fd);
    pthread_detach(t);
  }
  return NULL;
}

static void mock_start(script_fn fn)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  g_mock.script = fn;
  g_mock.nreq = 0;
  g_mock.nsession = 0;
  g_mock.lfd = socket(AF_INET, SOCK_STREAM, 0);
  bind(g_mock.lfd, (struct sockaddr *)&a, sizeof a);
  listen(g_mock.lfd, 16);
  getsockname(g_mock.lfd, (struct sockaddr *)&a, &l);
  g_mock.port = ntohs(a.sin_port);
  pthread_create(&g_mock.tid, NULL, mock_main, NULL);
}

static void mock_stop(void)
{
  g_mock.stop = true;
  shutdown(g_mock.lfd, SHUT_RDWR);
  close(g_mock.lfd);
  pthread_join(g_mock.tid, NULL);
  g_mock.stop = false;
}

static kh_remote *mock_client(kh_device_state **d)
{
  char url[64];
  kh_remote *r = NULL;
  kh_remote_opts o = {.max_retries = 3, .max_retry_ms = 5000};
  snprintf(url, sizeof url, "http://127.0.0.1:%d", g_mock.port);
  CHECK_OK(kh_remote_new(url, &o, &r));
  CHECK_OK(kh_device_state_new(d));
  snprintf((*d)->account, 33, "00112233445566778899aabbccddeeff");
  snprintf((*d)->device, 33, "ffeeddccbbaa99887766554433221100");
  snprintf((*d)->instance, 33, "0123456789abcdef0123456789abcdef");
  kh_remote_set_device(r, *d);
  return r;
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 503, reset, 429 (Retry-After: 1), then 200 */
static answer sc_transient(const char *m, const char *p, const char *h, int n)
{
  (void)m; (void)p; (void)h;
  static _Atomic int k;
  if (n == 1)
    k = 0;
  int i = atomic_fetch_add(&k, 1);
  if (i == 0)
    return (answer){503, "", "{\"error\":\"stopping\",\"code\":\"unavailable\"}"};
  if (i == 1)
    return (answer){0, "", ""};
  if (i == 2)
    return (answer){429, "Retry-After: 1\r\n", "{\"error\":\"slow down\",\"code\":\"rate_limited\"}"};
  return (answer){200, "", "hello"};
}

static answer sc_always503(const char *m, const char *p, const char *h, int n)
{
  (void)m; (void)p; (void)h; (void)n;
  return (answer){503, "", "{\"error\":\"stopping\",\"code\":\"unavailable\"}"};
}

/* the first signed request finds its session expired, the next works */
static answer sc_expired(const char *m, const char *p, const char *h, int n)
{
  (void)m; (void)p;
  if (strstr(h, "KH-Session: sess") && atomic_load(&g_mock.nsession) == 1)
    return (answer){401, "", "{\"error\":\"expired\",\"code\":\"session_expired\"}"};
  (void)n;
  return (answer){200, "", "ok"};
}

static answer sc_alwaysexpired(const char *m, const char *p, const char *h, int n)
{
  (void)m; (void)p; (void)h; (void)n;
  return (answer){401, "", "{\"error\":\"expired\",\"code\":\"session_expired\"}"};
}

static answer sc_statuses(const char *m, const char *p, const char *h, int n)
{
  (void)m; (void)h; (void)n;
  if (strstr(p, "/prune"))
    return (answer){403, "", "{\"error\":\"this device lacks the 'prune' capability\",\"code\":\"missing_capability\"}"};
  if (strstr(p, "/quota"))
    return (answer){507, "", "{\"error\":\"over quota\",\"code\":\"quota\"}"};
  if (strstr(p, "/exists"))
    return (answer){409, "", "{\"error\":\"exists\",\"code\":\"exists\"}"};
  if (strstr(p, "/big"))
    return (answer){200, "", "0123456789"};
  return (answer){404, "", "{\"error\":\"no such object\",\"code\":\"not_found\"}"};
}

static void test_client_retries(void)
{
  kh_device_state *d = NULL;
  kh_remote_resp resp;
  mock_start(sc_transient);
  kh_remote *r = mock_client(&d);
  kh_remote_req rq = {.method = "GET", .target = "/v1/x", .sign = true, .max = 100};
  double t0 = now_s();
  CHECK_OK(kh_remote_call(r, &rq, &resp));
  CHECK(resp.body && !strcmp((char *)resp.body, "hello"));
  CHECK(now_s() - t0 >= 1.0); /* Retry-After honoured */
  /* the signed request carried the session and a sequence number */
  CHECK(strstr(g_mock.last_hdrs, "KH-Session: sess") && strstr(g_mock.last_hdrs, "KH-Seq: "));
  CHECK(strstr(g_mock.last_hdrs, "KH-Signature: ") != NULL);
  kh_remote_resp_release(&resp);
  kh_remote_free(r);
  kh_device_state_free(d);
  mock_stop();

  /* the same with a response bound smaller than the 503 and 429 answers'
   * JSON bodies (a small ranged read): they are judged by their status and
   * retried, never taken for an object that is too large */
  mock_start(sc_transient);
  r = mock_client(&d);
  kh_remote_req small = {.method = "GET", .target = "/v1/x", .sign = true, .max = 5};
  CHECK_OK(kh_remote_call(r, &small, &resp));
  CHECK(resp.body && resp.len == 5 && !memcmp(resp.body, "hello", 5));
  kh_remote_resp_release(&resp);
  kh_remote_free(r);
  kh_device_state_free(d);
  mock_stop();

  /* a server that stays unavailable: bounded tries, then KH_ERR_IO */
  mock_start(sc_always503);
  r = mock_client(&d);
  CHECK_ERR(kh_remote_call(r, &rq, NULL), KH_ERR_IO);
  CHECK(strstr(kh_errdetail(), "gave up after 4 tries") != NULL);
  CHECK_EQ(atomic_load(&g_mock.nreq), 2 + 4); /* challenge, session, 4 tries */
  kh_remote_free(r);
  kh_device_state_free(d);
  mock_stop();

  /* nobody listening: refused connections are retried, then reported */
  r = mock_client(&d);
  CHECK_ERR(kh_remote_call(r, &rq, NULL), KH_ERR_IO);
  CHECK(strstr(kh_errdetail(), "onnect") != NULL);
  kh_remote_free(r);
  kh_device_state_free(d);
}

static void test_client_session(void)
{
  kh_device_state *d = NULL;
  mock_start(sc_expired);
  kh_remote *r = mock_client(&d);
  kh_remote_req rq = {.method = "GET", .target = "/v1/x", .sign = true, .max = 100};
  CHECK_OK(kh_remote_call(r, &rq, NULL));
  CHECK_EQ(atomic_load(&g_mock.nsession), 2); /* reopened once */
  CHECK_OK(kh_remote_call(r, &rq, NULL));
  CHECK_EQ(atomic_load(&g_mock.nsession), 2); /* and kept */
  unsigned caps = 0;
  CHECK_OK(kh_remote_caps(r, &caps));
  CHECK_EQ(caps, KH_CAP_BACKUP | KH_CAP_READ);
  kh_remote_free(r);
  kh_device_state_free(d);
  mock_stop();
  /* reopened once per request only */
  mock_start(sc_alwaysexpired);
  r = mock_client(&d);
  CHECK_ERR(kh_remote_call(r, &rq, NULL), KH_ERR_DENIED);
  CHECK_EQ(atomic_load(&g_mock.nsession), 2);
  kh_remote_free(r);
  kh_device_state_free(d);
  mock_stop();
}

static void test_client_statuses(void)
{
  kh_device_state *d = NULL;
  mock_start(sc_statuses);
  kh_remote *r = mock_client(&d);
  kh_remote_req rq = {.method = "DELETE", .target = "/v1/prune", .sign = true, .max = 100};
  CHECK_ERR(kh_remote_call(r, &rq, NULL), KH_ERR_DENIED);
  CHECK(strstr(kh_errdetail(), "this device lacks the 'prune' capability") != NULL);
  rq.target = "/v1/quota";
  CHECK_ERR(kh_remote_call(r, &rq, NULL), KH_ERR_NOSPACE);
  CHECK(strstr(kh_errdetail(), "account quota exceeded") != NULL);
  rq.target = "/v1/exists";
  CHECK_ERR(kh_remote_call(r, &rq, NULL), KH_ERR_EXISTS);
  rq.target = "/v1/nothing";
  CHECK_ERR(kh_remote_call(r, &rq, NULL), KH_ERR_NOTFOUND);
  /* a response over the caller's bound */
  rq.method = "GET";
  rq.target = "/v1/big";
  rq.max = 5;
  CHECK_ERR(kh_remote_call(r, &rq, NULL), KH_ERR_TOOBIG);
  rq.max = 10;
  CHECK_OK(kh_remote_call(r, &rq, NULL));
  /* a target outside §6.1 is never sent */
  rq.target = "/v1/a b";
  CHECK_ERR(kh_remote_call(r, &rq, NULL), KH_ERR_INVAL);
  kh_remote_free(r);
  kh_device_state_free(d);
  mock_stop();
}

int main(void)
{
  snprintf(g_dir, sizeof g_dir, "/tmp/kh-test-remote-%d", (int)getpid());
  RUN(test_save_load);
  RUN(test_parse);
  RUN(test_wrap);
  RUN(test_urls);
  RUN(test_list_parse);
  RUN(test_client_retries);
  RUN(test_client_session);
  RUN(test_client_statuses);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", g_dir);
  return kh_test_done("test_remote");
}
