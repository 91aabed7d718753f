/* keyholdd: the region server's command line (docs/operations.md).
 *
 *   keyholdd init  --dir DIR [--region-id ID]
 *   keyholdd serve [--config FILE] --dir DIR --listen HOST:PORT [--tls-cert F --tls-key F]
 *                  [--access-log FILE] [--signup open|invite] [--session-ttl S]
 *                  [--quota BYTES] [--device-rate N] [--address-rate N]
 *   keyholdd admin --dir DIR invite|accounts|quota ...   (admin.c)
 *
 * Exit status: 0 success, 1 failure, 2 usage error (docs/cli.md). */
#include "keyholdd.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static const char usage_text[] =
"NAME\n"
"    keyholdd - the keyhold region server\n"
"\n"
"SYNOPSIS\n"
"    keyholdd init --dir DIR [--region-id ID]\n"
"    keyholdd serve [--config FILE] --dir DIR --listen HOST:PORT\n"
"                   [--tls-cert FILE --tls-key FILE]\n"
"                   [--access-log FILE] [--idle-timeout SECONDS]\n"
"                   [--signup open|invite] [--session-ttl SECONDS] [--quota BYTES]\n"
"                   [--device-rate N] [--address-rate N]\n"
"    keyholdd admin --dir DIR invite [--expires SECONDS]\n"
"    keyholdd admin --dir DIR accounts [--json]\n"
"    keyholdd admin --dir DIR quota --account ID --bytes N|none\n"
"    keyholdd admin unwrap --dir DIR --account ID --reason TEXT\n"
"                   [--requester NAME] [--key-out FILE] [--json]\n"
"\n"
"DESCRIPTION\n"
"    init creates a region in DIR (which must be missing or empty): its\n"
"    key service, its transparency log and the region marker, the same\n"
"    layout `keyhold init` makes.  It prints \"region ID\" and \"log-key VKEY\"\n"
"    (the log's verifier key: give it to auditors through a channel you\n"
"    trust, not through the server).\n"
"\n"
"    serve answers HTTP on HOST:PORT (numeric address; port 0 picks a free\n"
"    one) and prints \"listening on http://HOST:PORT\" to stderr when ready.\n"
"    Plain HTTP only on a loopback address; any other address needs\n"
"    --tls-cert and --tls-key (PEM).  Endpoints: docs/protocol.md.  Server\n"
"    state lives in DIR/server/: meta.db (accounts, devices, invitations,\n"
"    enrolments; SQLite), tmp/ (uploads being received; emptied at start),\n"
"    session.key.  serve opens the region's key service (the operator\n"
"    secret as for keyhold) and holds it until it stops.\n"
"\n"
"    admin works on DIR/server/meta.db, also while a server runs:\n"
"      invite     make a single-use sign-up invitation and print its token\n"
"                 (only a hash of it is stored)\n"
"      accounts   list accounts: id, created, devices, used bytes, quota\n"
"      quota      set an account's quota in bytes (none: no quota)\n"
"\n"
"    admin unwrap is the operator's logged release of a standard-protection\n"
"    account's key, with the output of `keyhold admin unwrap` (docs/cli.md):\n"
"    the log index, the checkpoint (size, root), the leaf hash and the\n"
"    inclusion proof; with --json {\"account\", \"index\", \"size\", \"root\",\n"
"    \"leaf_hash\", \"proof\", \"checkpoint\", \"cosignatures\", \"key_file\"}; the key\n"
"    only with --key-out (hex, mode 0600).  While serve runs it holds the\n"
"    key service, so admin unwrap asks it over DIR/server/admin.sock (mode\n"
"    0600, the server's user only); when no server runs it opens DIR's key\n"
"    service itself (operator secret from the environment, as for serve).\n"
"    The release is written to the log before the key leaves the service;\n"
"    the account's devices see it with keyhold watch.  --requester (default\n"
"    \"operator\") and --reason (1-512 printable bytes) are logged.\n"
"\n"
"OPTIONS\n"
"    --config FILE      (serve) settings, one `name = value` per line, name a\n"
"                       long option below without its dashes, # comments;\n"
"                       the command line wins over the file (sample:\n"
"                       contrib/keyholdd.conf)\n"
"    --dir DIR          the region directory\n"
"    --region-id ID     1-63 of [a-z0-9-] (default: local)\n"
"    --listen HOST:PORT address to listen on, e.g. 127.0.0.1:8443, [::1]:0\n"
"    --tls-cert FILE    PEM certificate chain (enables HTTPS)\n"
"    --tls-key FILE     PEM private key\n"
"    --access-log FILE  JSON lines access log (default: stderr); reopened on SIGHUP\n"
"    --idle-timeout S   close a connection idle (or stalled mid-request) for S\n"
"                       seconds, 1-3600 (default 30)\n"
"    --signup MODE      invite (default): sign-up needs a token from\n"
"                       'keyholdd admin invite'; open: anyone may sign up\n"
"    --session-ttl S    session lifetime, 1-86400 seconds (default 3600)\n"
"    --quota BYTES      quota of new accounts (default: none)\n"
"    --device-rate N    signed requests per second per device, burst 2N\n"
"                       (default 20000: a restore reads every small file\n"
"                       with its own ranged GET)\n"
"    --address-rate N   sign-up and session requests per minute per address,\n"
"                       burst N (default 20)\n"
"    --expires S        (admin invite) the invitation expires after S seconds\n"
"                       (default: never)\n"
"    --json             (admin accounts) one JSON object per line; (admin\n"
"                       unwrap) one JSON object\n"
"    --account ID       (admin quota, unwrap) the account (full id)\n"
"    --reason TEXT      (admin unwrap) why (logged)\n"
"    --requester NAME   (admin unwrap) who asks (logged; default operator)\n"
"    --key-out FILE     (admin unwrap) write the key there (hex, mode 0600)\n"
"    --bytes N|none     (admin quota) the quota in bytes, or none\n"
"\n"
"SIGNALS\n"
"    SIGTERM, SIGINT  stop accepting, finish requests in flight (up to 10 s;\n"
"                     an upload cut off leaves nothing), exit 0\n"
"    SIGHUP           reopen the access log file\n"
"\n"
"EXIT STATUS\n"
"    0 success, 1 failure, 2 usage error\n";

static int usage(const char *msg)
{
  if (msg)
    fprintf(stderr, "keyholdd: %s\n", msg);
  fputs("usage: keyholdd init --dir DIR [--region-id ID]\n"
        "       keyholdd serve --dir DIR --listen HOST:PORT [--tls-cert F --tls-key F]"
        " [--access-log F] [--idle-timeout S]\n"
        "                      [--signup open|invite] [--session-ttl S] [--quota BYTES]"
        " [--device-rate N] [--address-rate N]\n"
        "       keyholdd admin --dir DIR invite|accounts|quota ...\n"
        "       keyholdd admin unwrap --dir DIR --account ID --reason TEXT [--requester R]"
        " [--key-out F] [--json]\n"
        "       keyholdd help\n",
        stderr);
  return EXIT_USAGE;
}

static int fail(kh_err e, const char *what)
{
  const char *d = kh_errdetail();
  fprintf(stderr, "keyholdd: %s: %s%s%s\n", what, kh_strerror(e), d && *d ? ": " : "",
          d && *d ? d : "");
  return EXIT_FAIL;
}

/* A small text file (verifier key, PEM) into a NUL-terminated string. */
static char *slurp(const char *path, size_t max)
{
  FILE *f = fopen(path, "rbe");
  char *b = NULL;
  if (!f)
    return NULL;
  if ((b = malloc(max + 1))) {
    size_t n = fread(b, 1, max + 1, f);
    if (n > max || ferror(f)) {
      free(b);
      b = NULL;
    } else {
      b[n] = '\0';
    }
  }
  fclose(f);
  return b;
}

/* A decimal number in [lo, hi]: 0, else -1. */
static int number(const char *a, uint64_t lo, uint64_t hi, uint64_t *out)
{
  char *end;
  errno = 0;
  if (!a || *a < '0' || *a > '9')
    return -1;
  unsigned long long v = strtoull(a, &end, 10);
  if (errno || *end || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

/* The server's own state: DIR/server/ (meta.db, tmp/), the region marker
 * and log key, the store and the metadata. */
static int serve_setup(kd_server *s, const char *dir, const char *vk)
{
  kh_err e;
  size_t n = strlen(dir) + 32;
  char *p = malloc(n);
  int rc = EXIT_FAIL;
  if (!p || !(s->tmpdir = malloc(n)) || !(s->vkey = strdup(vk)))
    goto out;
  snprintf(p, n, "%s/server", dir);
  snprintf(s->tmpdir, n, "%s/server/tmp", dir);
  if ((mkdir(p, 0700) != 0 && errno != EEXIST) ||
      (mkdir(s->tmpdir, 0700) != 0 && errno != EEXIST)) {
    fprintf(stderr, "keyholdd: serve: cannot make %s: %s\n", s->tmpdir, strerror(errno));
    goto out;
  }
  /* uploads a killed server left half-received are never objects */
  kd_tmp_clean(s);
  /* the origin is the verifier key's name (docs/log.md) */
  size_t ol = strcspn(vk, "+");
  snprintf(s->origin, sizeof s->origin, "%.*s", (int)(ol < sizeof s->origin ? ol : 0), vk);
  if ((e = kh_store_open_dir(dir, &s->store)) ||
      (e = kh_store_read(s->store, "keyhold-region", 4096, &s->marker, &s->marker_len))) {
    rc = fail(e, "serve: the region marker");
    goto out;
  }
  /* "instance <hex>" line of the marker (docs/format.md §1) */
  for (size_t i = 0; i + 9 + KH_REGION_INSTANCE_HEX <= s->marker_len; i++)
    if ((i == 0 || s->marker[i - 1] == '\n') && !memcmp(s->marker + i, "instance ", 9)) {
      memcpy(s->instance, s->marker + i + 9, KH_REGION_INSTANCE_HEX);
      s->instance[KH_REGION_INSTANCE_HEX] = '\0';
      break;
    }
  if (strlen(s->instance) != KH_REGION_INSTANCE_HEX) {
    fprintf(stderr, "keyholdd: serve: the region has no instance id (made by an old version)\n");
    goto out;
  }
  snprintf(p, n, "%s/server/meta.db", dir);
  if ((e = kh_meta_open_sqlite(p, &s->meta))) {
    rc = fail(e, "serve: the metadata store");
    goto out;
  }
  if ((e = kd_usage_recount(s))) {
    rc = fail(e, "serve: counting the accounts' objects");
    goto out;
  }
  if ((e = kd_auth_init(s))) {
    rc = fail(e, "serve: sessions");
    goto out;
  }
  /* the key service: this process holds its lock until it stops; operator
   * commands reach it through DIR/server/admin.sock meanwhile (adminsock.c) */
  if ((e = kh_kms_open(dir, &s->kms))) {
    rc = fail(e, "serve: the region's key service");
    goto out;
  }
  rc = EXIT_OK;
out:
  free(p);
  return rc;
}

static int cmd_init(int argc, char **argv)
{
  static const struct option lo[] = {{"dir", required_argument, NULL, 'd'},
                                     {"region-id", required_argument, NULL, 'r'},
                                     {NULL, 0, NULL, 0}};
  const char *dir = NULL, *rid = NULL;
  int c, rc = EXIT_FAIL;
  char inst[KH_REGION_INSTANCE_HEX + 1], *vkp = NULL, *vk = NULL;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    if (c == 'd')
      dir = optarg;
    else if (c == 'r')
      rid = optarg;
    else
      return usage(NULL);
  }
  if (optind != argc)
    return usage("init: unexpected argument");
  if (!dir)
    return usage("init: --dir is required");
  kh_err e = kh_region_create(dir, rid, inst);
  if (e)
    return fail(e, "init");
  size_t n = strlen(dir) + 16;
  if (!(vkp = malloc(n)))
    goto out;
  snprintf(vkp, n, "%s/log/verifier", dir);
  if (!(vk = slurp(vkp, 4096))) {
    fprintf(stderr, "keyholdd: init: cannot read %s\n", vkp);
    goto out;
  }
  vk[strcspn(vk, "\n")] = '\0';
  printf("region %s\ninstance %s\nlog-key %s\n", rid ? rid : "local", inst, vk);
  rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
out:
  free(vkp);
  free(vk);
  return rc;
}

static int cmd_serve(int argc, char **argv)
{
  static const struct option lo[] = {{"dir", required_argument, NULL, 'd'},
                                     {"listen", required_argument, NULL, 'l'},
                                     {"tls-cert", required_argument, NULL, 'c'},
                                     {"tls-key", required_argument, NULL, 'k'},
                                     {"access-log", required_argument, NULL, 'a'},
                                     {"idle-timeout", required_argument, NULL, 't'},
                                     {"signup", required_argument, NULL, 'S'},
                                     {"session-ttl", required_argument, NULL, 'T'},
                                     {"quota", required_argument, NULL, 'Q'},
                                     {"device-rate", required_argument, NULL, 'D'},
                                     {"address-rate", required_argument, NULL, 'A'},
                                     {NULL, 0, NULL, 0}};
  const char *dir = NULL, *listen = NULL, *certf = NULL, *keyf = NULL, *access = NULL;
  int c, rc = EXIT_FAIL;
  kd_server s;
  kd_listen l;
  char *vkp = NULL, *vk = NULL, *logdir = NULL, *cert = NULL, *key = NULL;
  unsigned port = 0;
  uint64_t u64 = 0;
  bool locks = false;
  memset(&s, 0, sizeof s);
  s.quota = KH_META_UNLIMITED;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'd': dir = optarg; break;
    case 'l': listen = optarg; break;
    case 'c': certf = optarg; break;
    case 'k': keyf = optarg; break;
    case 'a': access = optarg; break;
    case 't': {
      char *end;
      errno = 0;
      unsigned long v = strtoul(optarg, &end, 10);
      if (errno || end == optarg || *end || v < 1 || v > 3600)
        return usage("serve: --idle-timeout takes 1-3600 seconds");
      s.idle_timeout = (unsigned)v;
      break;
    }
    case 'S':
      if (strcmp(optarg, "open") && strcmp(optarg, "invite"))
        return usage("serve: --signup takes open or invite");
      s.signup_open = !strcmp(optarg, "open");
      break;
    case 'T':
      if (number(optarg, 1, 86400, &u64))
        return usage("serve: --session-ttl takes 1-86400 seconds");
      s.session_ttl = (unsigned)u64;
      break;
    case 'Q':
      if (number(optarg, 0, UINT64_MAX - 1, &u64))
        return usage("serve: --quota takes a number of bytes");
      s.quota = u64;
      break;
    case 'D':
      if (number(optarg, 1, 1000000, &u64))
        return usage("serve: --device-rate takes 1-1000000");
      s.device_rate = (unsigned)u64;
      break;
    case 'A':
      if (number(optarg, 1, 1000000, &u64))
        return usage("serve: --address-rate takes 1-1000000");
      s.addr_rate = (unsigned)u64;
      break;
    default: return usage(NULL);
    }
  }
  if (optind != argc)
    return usage("serve: unexpected argument");
  if (!dir || !listen)
    return usage("serve: --dir and --listen are required");
  if (kd_parse_listen(listen, &l) != 0)
    return usage("serve: --listen must be a numeric HOST:PORT (e.g. 127.0.0.1:8443, [::1]:0)");
  if (!certf != !keyf)
    return usage("serve: --tls-cert and --tls-key go together");
  if (!l.loopback && !certf) {
    fprintf(stderr, "keyholdd: serve: %s is not a loopback address: plain HTTP is only "
                    "served on loopback; give --tls-cert and --tls-key\n", l.host);
    return EXIT_USAGE;
  }
  if (certf && (!(cert = slurp(certf, 1 << 20)) || !(key = slurp(keyf, 1 << 20)))) {
    fprintf(stderr, "keyholdd: serve: cannot read %s: %s\n", cert ? keyf : certf,
            strerror(errno));
    goto out;
  }
  s.dir = (char *)dir;
  s.access_path = (char *)access;
  pthread_rwlock_init(&s.log_lock, NULL);
  pthread_mutex_init(&s.access_lock, NULL);
  locks = true;
  if (access && kd_access_reopen(&s) != 0) {
    fprintf(stderr, "keyholdd: serve: cannot open %s: %s\n", access, strerror(errno));
    goto out;
  }
  kh_err e = kh_region_id(dir, s.region_id);
  if (e) {
    rc = fail(e, "serve: not a region");
    goto out;
  }
  size_t n = strlen(dir) + 16;
  if (!(vkp = malloc(n)) || !(logdir = malloc(n)))
    goto out;
  snprintf(vkp, n, "%s/log/verifier", dir);
  snprintf(logdir, n, "%s/log", dir);
  if (!(vk = slurp(vkp, 4096))) {
    fprintf(stderr, "keyholdd: serve: cannot read %s\n", vkp);
    goto out;
  }
  vk[strcspn(vk, "\n")] = '\0';
  if ((rc = serve_setup(&s, dir, vk)) != EXIT_OK)
    goto out;
  rc = EXIT_FAIL;
  if ((e = kh_tlog_open(logdir, NULL, NULL, vk, &s.log))) {
    rc = fail(e, "serve: the region's log");
    goto out;
  }
  /* signals are taken by sigwait below; MHD's threads inherit the mask */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (kd_http_start(&s, &l, cert, key, &port) != 0) {
    fprintf(stderr, "keyholdd: serve: cannot listen on %s\n", listen);
    goto out;
  }
  if (kd_adminsock_start(&s) != 0) {
    fprintf(stderr, "keyholdd: serve: cannot make %s/server/admin.sock: %s\n", dir,
            strerror(errno));
    goto out;
  }
  bool v6 = strchr(l.host, ':') != NULL;
  fprintf(stderr, "listening on %s://%s%s%s:%u\n", cert ? "https" : "http", v6 ? "[" : "",
          l.host, v6 ? "]" : "", port);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0)
      continue;
    if (sig == SIGHUP) {
      if (kd_access_reopen(&s) != 0)
        fprintf(stderr, "keyholdd: cannot reopen %s: %s (still writing the old file)\n",
                access, strerror(errno));
      continue;
    }
    break;
  }
  atomic_store(&s.stopping, true);
  kd_http_stop(&s, 10000);
  kd_adminsock_stop(&s);
  fprintf(stderr, "keyholdd: stopped\n");
  rc = EXIT_OK;
out:
  if (s.mhd)
    kd_http_stop(&s, 0);
  kd_adminsock_stop(&s);
  kh_tlog_free(s.log);
  kd_auth_free(&s);
  kh_kms_free(s.kms);
  kh_meta_free(s.meta);
  kh_store_free(s.store);
  free(s.marker);
  free(s.tmpdir);
  free(s.vkey);
  if (s.access)
    fclose(s.access);
  if (locks) {
    pthread_rwlock_destroy(&s.log_lock);
    pthread_mutex_destroy(&s.access_lock);
  }
  free(vkp);
  free(vk);
  free(logdir);
  free(cert);
  if (key) {
    memset(key, 0, strlen(key)); /* private key text */
    free(key);
  }
  return rc;
}

/* keyholdd admin [--dir DIR] unwrap ... is the key service's (adminsock.c);
 * the other admin commands are admin.c's. */
static int cmd_admin(int argc, char **argv)
{
  int sub = 0;
  for (int i = 1; i < argc && !sub; i++) {
    if (!strcmp(argv[i], "--dir"))
      i++;
    else if (argv[i][0] != '-')
      sub = i;
  }
  if (!sub || strcmp(argv[sub], "unwrap"))
    return kd_admin_main(argc, argv);
  /* argv without the subcommand, the subcommand's name as argv[0] */
  char *name = argv[sub];
  for (int i = sub; i > 0; i--)
    argv[i] = argv[i - 1];
  argv[1] = name;
  return kd_cmd_admin_unwrap(argc - 1, argv + 1);
}

int main(int argc, char **argv)
{
  if (argc < 2)
    return usage(NULL);
  if (!strcmp(argv[1], "init"))
    return cmd_init(argc - 1, argv + 1);
  if (!strcmp(argv[1], "serve")) {
    /* --config FILE: its settings go before the command line's (config.c) */
    int n = 0;
    char **v = NULL;
    kd_config *conf = NULL;
    int rc = kd_config_expand(argc - 1, argv + 1, &n, &v, &conf);
    if (rc)
      return rc;
    rc = cmd_serve(n, v);
    kd_config_free(conf);
    return rc;
  }
  if (!strcmp(argv[1], "admin"))
    return cmd_admin(argc - 1, argv + 1);
  if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) {
    fputs(usage_text, stdout);
    return EXIT_OK;
  }
  return usage("unknown command");
}
