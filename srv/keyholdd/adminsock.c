/* The operator socket (adminsock.h): the server's side (a thread answering
 * DIR/server/admin.sock with the server's key service) and the command
 * `keyholdd admin unwrap`, which asks a running server through it, or opens
 * DIR's key service itself when no server runs. */
#include "keyholdd.h"
#include "adminsock.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct kd_adminsock {
  int fd;                    /* listening socket */
  int stop[2];               /* a byte on stop[1] ends the thread */
  pthread_t th;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static int sock_path(const char *dir, char *out, size_t cap)
{
  int n = snprintf(out, cap, "%s/server/admin.sock", dir);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Fill resp from a release of the key service. */
static void resp_from_release(kd_admin_resp *resp, const kh_kms_release *r)
{
  resp->ok = true;
  resp->index = r->index;
  resp->size = r->size;
  memcpy(resp->root, r->root, 32);
  memcpy(resp->leaf, r->leaf, 32);
  resp->plen = r->plen <= KD_ADMIN_PROOF_MAX ? r->plen : KD_ADMIN_PROOF_MAX;
  memcpy(resp->proof, r->proof, resp->plen * 32);
  resp->cosignatures = r->cosignatures;
  resp->cipher = r->cipher;
  resp->checkpoint_len =
      r->checkpoint_len <= KD_ADMIN_CHECKPOINT_MAX ? r->checkpoint_len : 0;
  memcpy(resp->checkpoint, r->checkpoint, resp->checkpoint_len);
  resp->checkpoint[resp->checkpoint_len] = '\0';
}

static void resp_error(kd_admin_resp *resp, kh_err e)
{
  const char *d = kh_errdetail();
  resp->ok = false;
  snprintf(resp->error, sizeof resp->error, "%s%s%s", kh_strerror(e), d && *d ? ": " : "",
           d && *d ? d : "");
  /* one line, printable */
  for (char *c = resp->error; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f)
      *c = ' ';
}

/* The operation of a request, on an open key service. */
static void admin_do(kh_kms *k, const kd_admin_req *rq, kd_admin_resp *resp)
{
  kh_kms_release rel;
  memset(&rel, 0, sizeof rel);
  kh_kms_request krq = {rq->requester, rq->reason, NULL, NULL, NULL};
  kh_err e = kh_kms_unwrap(k, rq->account, &krq, &rel);
  if (e) {
    resp_error(resp, e);
    return;
  }
  resp_from_release(resp, &rel);
  if (rq->want_key && (resp->key = sodium_malloc(32)))
    memcpy(resp->key, rel.key, 32);
  kh_kms_release_clear(&rel);
}

static int write_all(int fd, const char *p, size_t n)
{
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Read until EOF, at most max bytes (-1 beyond, or on error / timeout). */
static ssize_t read_all(int fd, char *buf, size_t max)
{
  size_t n = 0;
  for (;;) {
    ssize_t r = recv(fd, buf + n, max + 1 - n, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -1;
    if (r == 0)
      return (ssize_t)n;
    n += (size_t)r;
    if (n > max)
      return -1;
  }
}

static void serve_one(kd_server *s, int c)
{
  struct timeval tv = {KD_ADMIN_TIMEOUT_S, 0};
  struct ucred cr;
  socklen_t cl = sizeof cr;
  char *buf = malloc(KD_ADMIN_REQ_MAX + 1), *out = NULL;
  size_t olen = 0;
  kd_admin_req rq;
  kd_admin_resp resp;
  kd_admin_resp_init(&resp);
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  /* the socket's mode already keeps others out; this is the second lock */
  if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 ||
      (cr.uid != geteuid() && cr.uid != 0))
    goto out;
  ssize_t n = buf ? read_all(c, buf, KD_ADMIN_REQ_MAX) : -1;
  if (n < 0 || kd_admin_req_parse(buf, (size_t)n, &rq) != 0) {
    snprintf(resp.error, sizeof resp.error, "malformed request");
  } else {
    admin_do(s->kms, &rq, &resp);
    fprintf(stderr, "keyholdd: admin %s of account %s by %s: %s\n", rq.op, rq.account,
            rq.requester, resp.ok ? "done" : resp.error);
  }
  if (kd_admin_resp_format(&resp, n >= 0 && rq.want_key, &out, &olen) == 0)
    write_all(c, out, olen);
out:
  if (out) {
    sodium_memzero(out, olen);
    free(out);
  }
  kd_admin_resp_release(&resp);
  free(buf);
  close(c);
}

static void *admin_thread(void *arg)
{
  kd_server *s = arg;
  struct pollfd p[2] = {{s->adminsock->fd, POLLIN, 0}, {s->adminsock->stop[0], POLLIN, 0}};
  for (;;) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (p[1].revents)
      break;
    if (p[0].revents & POLLIN) {
      int c = accept4(s->adminsock->fd, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0)
        serve_one(s, c);
    }
  }
  return NULL;
}

int kd_adminsock_start(kd_server *s)
{
  struct kd_adminsock *a = calloc(1, sizeof *a);
  char sdir[4096];
  struct sockaddr_un sa;
  if (!a)
    return -1;
  a->fd = a->stop[0] = a->stop[1] = -1;
  if (sock_path(s->dir, a->path, sizeof a->path) != 0 ||
      snprintf(sdir, sizeof sdir, "%s/server", s->dir) >= (int)sizeof sdir) {
    errno = ENAMETOOLONG;
    goto fail;
  }
  if (mkdir(sdir, 0700) != 0 && errno != EEXIST)
    goto fail;
  if (chmod(sdir, 0700) != 0)
    goto fail;
  /* this process holds the key service's lock: a socket left here was a
   * dead server's */
  unlink(a->path);
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, a->path, strlen(a->path) + 1);
  if ((a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
      bind(a->fd, (struct sockaddr *)&sa, sizeof sa) != 0 || chmod(a->path, 0600) != 0 ||
      listen(a->fd, 16) != 0 || pipe2(a->stop, O_CLOEXEC) != 0)
    goto fail;
  s->adminsock = a;
  if (pthread_create(&a->th, NULL, admin_thread, s) != 0) {
    s->adminsock = NULL;
    goto fail;
  }
  return 0;
fail:;
  int err = errno;
  if (a->fd >= 0) {
    close(a->fd);
    unlink(a->path);
  }
  if (a->stop[0] >= 0) {
    close(a->stop[0]);
    close(a->stop[1]);
  }
  free(a);
  errno = err;
  return -1;
}

void kd_adminsock_stop(kd_server *s)
{
  struct kd_adminsock *a = s->adminsock;
  if (!a)
    return;
  if (write(a->stop[1], "x", 1) == 1)
    pthread_join(a->th, NULL);
  close(a->fd);
  unlink(a->path);
  close(a->stop[0]);
  close(a->stop[1]);
  free(a);
  s->adminsock = NULL;
}

/* ---- keyholdd admin unwrap ---------------------------------------------- */

/* Ask the server at dir: 0 and *resp, 1 if no server listens there (no
 * socket, or nobody behind it), -1 on failure (message printed). */
static int ask_server(const char *dir, const kd_admin_req *rq, kd_admin_resp *resp)
{
  struct sockaddr_un sa;
  char req[KD_ADMIN_REQ_MAX + 1], *buf = NULL;
  int fd = -1, rc = -1;
  size_t rl = kd_admin_req_format(rq, req, sizeof req);
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (!rl) {
    fprintf(stderr, "keyholdd: admin unwrap: the request does not fit\n");
    return -1;
  }
  if (sock_path(dir, sa.sun_path, sizeof sa.sun_path) != 0) {
    fprintf(stderr, "keyholdd: admin unwrap: %s: path too long for a socket\n", dir);
    return -1;
  }
  if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
    goto out;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) {
      rc = 1;
      goto out;
    }
    fprintf(stderr, "keyholdd: admin unwrap: %s: %s\n", sa.sun_path, strerror(errno));
    goto out;
  }
  struct timeval tv = {KD_ADMIN_TIMEOUT_S, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (write_all(fd, req, rl) != 0 || shutdown(fd, SHUT_WR) != 0) {
    fprintf(stderr, "keyholdd: admin unwrap: cannot send to the server: %s\n",
            strerror(errno));
    goto out;
  }
  if (!(buf = sodium_malloc(KD_ADMIN_RESP_MAX + 1)))
    goto out;
  ssize_t n = read_all(fd, buf, KD_ADMIN_RESP_MAX);
  if (n <= 0 || kd_admin_resp_parse(buf, (size_t)n, resp) != 0) {
    fprintf(stderr, "keyholdd: admin unwrap: no valid answer from the server (it stopped?); "
                    "whether the key was released shows in the log\n");
    goto out;
  }
  rc = 0;
out:
  if (buf)
    sodium_free(buf);
  if (fd >= 0)
    close(fd);
  return rc;
}

static void put_hex(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    printf("%02x", p[i]);
}

static void put_json_str(const char *s, size_t n)
{
  putchar('"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c == '\n')
      fputs("\\n", stdout);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

/* The output of `keyhold admin unwrap` (docs/cli.md), byte for byte. */
static void print_release(const char *account, const kd_admin_resp *r, const char *keyout,
                          bool json)
{
  if (json) {
    fputs("{\"account\":", stdout);
    put_json_str(account, strlen(account));
    printf(",\"index\":%llu,\"size\":%llu,\"root\":\"", (unsigned long long)r->index,
           (unsigned long long)r->size);
    put_hex(r->root, 32);
    fputs("\",\"leaf_hash\":\"", stdout);
    put_hex(r->leaf, 32);
    fputs("\",\"proof\":[", stdout);
    for (size_t i = 0; i < r->plen; i++) {
      fputs(i ? ",\"" : "\"", stdout);
      put_hex(r->proof[i], 32);
      putchar('"');
    }
    fputs("],\"checkpoint\":", stdout);
    put_json_str(r->checkpoint, r->checkpoint_len);
    printf(",\"cosignatures\":%u,\"key_file\":", r->cosignatures);
    if (keyout)
      put_json_str(keyout, strlen(keyout));
    else
      fputs("null", stdout);
    fputs("}\n", stdout);
    return;
  }
  printf("released the key of account %s\n", account);
  printf("log index %llu\n", (unsigned long long)r->index);
  printf("checkpoint size %llu\ncheckpoint root ", (unsigned long long)r->size);
  put_hex(r->root, 32);
  fputs("\nleaf hash ", stdout);
  put_hex(r->leaf, 32);
  fputs("\ninclusion proof ", stdout);
  for (size_t i = 0; i < r->plen; i++) {
    if (i)
      putchar(',');
    put_hex(r->proof[i], 32);
  }
  putchar('\n');
  if (r->cosignatures)
    printf("witness cosignatures %u\n", r->cosignatures);
  if (keyout)
    printf("key written to %s\n", keyout);
}

static kh_err write_key(const char *path, const uint8_t *key)
{
  char text[66];
  sodium_bin2hex(text, sizeof text, key, 32);
  text[64] = '\n';
  kh_err e = kh_file_write_atomic(path, text, 65, 0600);
  sodium_memzero(text, sizeof text);
  return e;
}

static bool printable(const char *s)
{
  size_t n = strlen(s);
  if (!n || n > KD_ADMIN_TEXT_MAX || s[0] == ' ' || s[n - 1] == ' ')
    return false;
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return false;
  return true;
}

int kd_cmd_admin_unwrap(int argc, char **argv)
{
  static const struct option lo[] = {{"dir", required_argument, NULL, 'd'},
                                     {"account", required_argument, NULL, 'a'},
                                     {"reason", required_argument, NULL, 'r'},
                                     {"requester", required_argument, NULL, 'q'},
                                     {"key-out", required_argument, NULL, 'k'},
                                     {"json", no_argument, NULL, 'j'},
                                     {NULL, 0, NULL, 0}};
  const char *dir = NULL, *account = NULL, *reason = NULL, *requester = "operator",
             *keyout = NULL;
  bool json = false;
  int c, rc = 1;
  kd_admin_req rq;
  kd_admin_resp resp;
  kh_kms *k = NULL;
  kd_admin_resp_init(&resp);
  memset(&rq, 0, sizeof rq);
  if (sodium_init() < 0) {
    fprintf(stderr, "keyholdd: admin unwrap: libsodium cannot be initialised\n");
    return 1;
  }
  optind = 0;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'd': dir = optarg; break;
    case 'a': account = optarg; break;
    case 'r': reason = optarg; break;
    case 'q': requester = optarg; break;
    case 'k': keyout = optarg; break;
    case 'j': json = true; break;
    default: return 2;
    }
  }
  if (optind != argc || !dir || !account || !reason) {
    fprintf(stderr, "keyholdd: admin unwrap: --dir, --account and --reason are required\n");
    return 2;
  }
  if (strlen(account) != 32 || strspn(account, "0123456789abcdef") != 32) {
    fprintf(stderr, "keyholdd: admin unwrap: --account takes a 32-digit lowercase hex id\n");
    return 2;
  }
  if (!printable(reason) || !printable(requester)) {
    fprintf(stderr, "keyholdd: admin unwrap: --reason and --requester take 1..%d printable "
                    "bytes without leading or trailing space\n", KD_ADMIN_TEXT_MAX);
    return 2;
  }
  snprintf(rq.op, sizeof rq.op, "unwrap");
  snprintf(rq.account, sizeof rq.account, "%s", account);
  snprintf(rq.requester, sizeof rq.requester, "%s", requester);
  snprintf(rq.reason, sizeof rq.reason, "%s", reason);
  rq.want_key = keyout != NULL;
  int asked = ask_server(dir, &rq, &resp);
  if (asked < 0)
    goto out;
  if (asked == 1) {
    /* no server runs: the key service is this process's to open */
    kh_err e = kh_kms_open(dir, &k);
    if (e) {
      const char *d = kh_errdetail();
      fprintf(stderr, "keyholdd: admin unwrap: open the key service: %s%s%s\n",
              kh_strerror(e), d && *d ? ": " : "", d && *d ? d : "");
      goto out;
    }
    admin_do(k, &rq, &resp);
  }
  if (!resp.ok) {
    fprintf(stderr, "keyholdd: admin unwrap: %s\n", resp.error);
    goto out;
  }
  if (keyout) {
    kh_err e = resp.key ? write_key(keyout, resp.key) : KH_ERR_NOMEM;
    if (e) {
      fprintf(stderr, "keyholdd: admin unwrap: cannot write %s: %s (the release is logged at "
                      "index %llu)\n", keyout, kh_errdetail(), (unsigned long long)resp.index);
      goto out;
    }
  }
  print_release(account, &resp, keyout, json);
  rc = fflush(stdout) == 0 ? 0 : 1;
out:
  kd_admin_resp_release(&resp);
  kh_kms_free(k);
  return rc;
}
