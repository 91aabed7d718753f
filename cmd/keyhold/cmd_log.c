/* keyhold log: inspect and verify a transparency log (docs/log.md). */
#include "cli.h"
#include "keyhold/log.h"

#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cmd_log(int argc, char **argv);

const char cmd_log_help[] =
"NAME\n"
"    keyhold log - inspect and verify the region's transparency log\n"
"\n"
"SYNOPSIS\n"
"    keyhold log key\n"
"    keyhold log checkpoint\n"
"    keyhold log verify [--log DIR|URL] [--key VKEY] [--ca-file F]\n"
"    keyhold log note-verify --key VKEY [--key VKEY...] FILE\n"
"    keyhold log inclusion --leaf-hash HEX --index N --size N --root HEX --proof HEX,...\n"
"    keyhold log consistency --size1 N --size2 N --root1 HEX --root2 HEX --proof HEX,...\n"
"\n"
"DESCRIPTION\n"
"    Every release of a key held by the region's key service is first\n"
"    written to the region's append-only Merkle log (RFC 6962 hashing,\n"
"    C2SP tlog-tiles layout, C2SP signed-note checkpoints).  These commands\n"
"    let anyone check that log without being given any key.  The formats and\n"
"    the verification procedure are in docs/log.md.\n"
"\n"
"    key\n"
"        Print the log's verifier key (one line, name+hash+base64), read from\n"
"        <region>/log/verifier.  Pin it: an auditor should get it through a\n"
"        channel the operator does not control.\n"
"    checkpoint\n"
"        Verify and print the latest signed checkpoint of the region's log.\n"
"        With --json: {\"origin\", \"size\", \"root\" (hex), \"note\"}.\n"
"    verify\n"
"        Check a whole log: the checkpoint signature, that every entry bundle\n"
"        and every tile rehashes to the checkpoint's root, that every entry is\n"
"        a well-formed keyhold log entry, and that the log is consistent with\n"
"        the checkpoint this command verified last time for the same origin\n"
"        (kept in $KEYHOLD_CACHE_DIR/log-verify/ or\n"
"        ~/.cache/keyhold/log-verify/, named by the hex SHA-256 of the\n"
"        origin).  The log is <region>/log unless --log is given; the key is\n"
"        --key, else the log directory's 'verifier' file.  Prints the size and\n"
"        root, or with --json {\"origin\", \"size\", \"root\", \"entries\",\n"
"        \"previous_size\" (null if none), \"ok\": true}.\n"
"        --log may also be the URL of a log served over HTTP(S) as C2SP\n"
"        tlog-tiles (a region server's http://HOST:PORT/log, or any static\n"
"        mirror): the checkpoint and tiles are fetched from it and checked\n"
"        the same way.  A URL needs --key: a server is never trusted for the\n"
"        key of the log it serves.  Against a region server (--region URL)\n"
"        without --log, the log is the server's URL/log.\n"
"    note-verify\n"
"        Verify any C2SP signed note: valid if at least one signature by a\n"
"        given key verifies (signatures by other keys are ignored; a bad\n"
"        signature by a given key makes the note invalid).  Cosigner keys\n"
"        (algorithm 0x04) verify tlog-cosignature/v1 cosignatures.\n"
"    inclusion, consistency\n"
"        Verify a Merkle inclusion proof (RFC 9162 2.1.3.2) or consistency\n"
"        proof (2.1.4.2).  Hashes are 64 hex digits; the proof is a\n"
"        comma-separated list (--proof \"\" for an empty proof).\n"
"\n"
"OPTIONS\n"
"    --log DIR|URL  a log directory (checkpoint, tile/...) or its http(s):// URL\n"
"    --ca-file F    CA certificates for an https:// log (default: the system's)\n"
"    --key VKEY     a verifier key: name+hash8hex+base64(alg||pubkey)\n"
"    --json         machine-readable output (a global option)\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION     the region directory (or the global --region)\n"
"    KEYHOLD_CACHE_DIR  where 'verify' remembers verified checkpoints\n"
"    KEYHOLD_CA_FILE    default for --ca-file\n"
"\n"
"EXIT STATUS\n"
"    0 valid / done; 1 invalid, inconsistent or damaged (one line says why);\n"
"    2 usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold log verify --log /srv/region/log --key \"$(cat pinned.vkey)\"\n"
"    keyhold log verify --log https://region.example/log --key \"$(cat pinned.vkey)\"\n"
"    keyhold log note-verify --key \"$VKEY\" checkpoint\n"
"    keyhold log consistency --size1 6 --size2 8 --root1 76e6... --root2 5dc9... \\\n"
"        --proof 0ebc...,ca85...,d37e...\n";

#define FILE_MAX (1u << 20)

static char *read_small(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0;
  if (!f)
    return NULL;
  buf = malloc(FILE_MAX + 1);
  if (buf)
    n = fread(buf, 1, FILE_MAX + 1, f);
  if (!buf || ferror(f) || n > FILE_MAX) {
    free(buf);
    fclose(f);
    errno = EFBIG;
    return NULL;
  }
  fclose(f);
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

static char *read_line_file(const char *path)
{
  size_t n;
  char *s = read_small(path, &n);
  if (!s)
    return NULL;
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
    s[--n] = '\0';
  return s;
}

static char *join(const char *a, const char *b)
{
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s/%s", a, b);
  return p;
}

static bool parse_hash(const char *s, size_t len, kh_log_hash out)
{
  if (len != 64)
    return false;
  for (size_t i = 0; i < 32; i++) {
    int v = 0;
    for (int k = 0; k < 2; k++) {
      char c = s[2 * i + (size_t)k];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0)
        return false;
      v = v << 4 | d;
    }
    out[i] = (uint8_t)v;
  }
  return true;
}

static bool parse_proof(const char *s, kh_log_hash *proof, size_t *n)
{
  *n = 0;
  while (*s) {
    const char *c = strchr(s, ',');
    size_t l = c ? (size_t)(c - s) : strlen(s);
    if (*n >= KH_LOG_PROOF_MAX || !parse_hash(s, l, proof[*n]))
      return false;
    (*n)++;
    if (!c)
      break;
    s = c + 1;
    if (!*s)
      return false; /* trailing comma */
  }
  return true;
}

static void hex(char out[65], const kh_log_hash h)
{
  static const char d[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = d[h[i] >> 4];
    out[2 * i + 1] = d[h[i] & 15];
  }
  out[64] = '\0';
}

static void b64(char out[45], const kh_log_hash h)
{
  sodium_bin2base64(out, 45, h, 32, sodium_base64_VARIANT_ORIGINAL);
}

static int mkdirs(const char *path)
{
  char *p = strdup(path);
  if (!p)
    return -1;
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = '\0';
      if (mkdir(p, 0700) != 0 && errno != EEXIST) {
        free(p);
        return -1;
      }
      *s = '/';
    }
  int r = mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
  free(p);
  return r;
}

static char *region_log_dir(void)
{
  const char *region;
  if (cli_region_path(&region))
    return NULL;
  return join(region, "log");
}

/* ---- subcommands ---- */

static int log_key(int argc, char **argv)
{
  if (argc != 2)
    return cli_usage("log");
  char *dir = region_log_dir(), *p = dir ? join(dir, "verifier") : NULL, *k = NULL;
  int rc = CLI_EXIT_FAIL;
  if (!p)
    goto out;
  if (!(k = read_line_file(p))) {
    cli_errorf("log key: cannot read %s: %s", p, strerror(errno));
    goto out;
  }
  kh_note_verifier *v = NULL;
  kh_err e = kh_note_verifier_new(k, &v);
  kh_note_verifier_free(v);
  if (e) {
    rc = cli_fail(e, "log key");
    goto out;
  }
  if (g_opts.json) {
    fputs("{\"key\":", stdout);
    cli_json_cstr(stdout, k);
    fputs("}\n", stdout);
  } else {
    printf("%s\n", k);
  }
  rc = CLI_EXIT_OK;
out:
  free(dir);
  free(p);
  free(k);
  return rc;
}

static int log_checkpoint(int argc, char **argv)
{
  if (argc != 2)
    return cli_usage("log");
  char *dir = region_log_dir(), *kp = NULL, *cp = NULL, *k = NULL, *note = NULL;
  kh_note_verifier *v = NULL;
  int rc = CLI_EXIT_FAIL;
  size_t nlen = 0;
  kh_err e;
  if (!dir)
    goto out;
  kp = join(dir, "verifier");
  cp = join(dir, "checkpoint");
  if (!kp || !cp)
    goto out;
  if (!(k = read_line_file(kp))) {
    cli_errorf("log checkpoint: cannot read %s: %s", kp, strerror(errno));
    goto out;
  }
  if (!(note = read_small(cp, &nlen))) {
    cli_errorf("log checkpoint: cannot read %s: %s", cp, strerror(errno));
    goto out;
  }
  kh_checkpoint c;
  if ((e = kh_note_verifier_new(k, &v)) || (e = kh_checkpoint_open(note, nlen, v, &c, NULL))) {
    rc = cli_fail(e, "log checkpoint");
    goto out;
  }
  if (g_opts.json) {
    char h[65];
    hex(h, c.root);
    fputs("{\"origin\":", stdout);
    cli_json_cstr(stdout, c.origin);
    printf(",\"size\":%llu,\"root\":\"%s\",\"note\":", (unsigned long long)c.size, h);
    cli_json_str(stdout, note, nlen);
    fputs("}\n", stdout);
  } else {
    fwrite(note, 1, nlen, stdout);
  }
  rc = CLI_EXIT_OK;
out:
  kh_note_verifier_free(v);
  free(dir);
  free(kp);
  free(cp);
  free(k);
  free(note);
  return rc;
}

typedef struct verify_ctx {
  uint64_t bad;
  uint64_t first_bad;
  char detail[256];
} verify_ctx;

static kh_err check_entry(void *vctx, uint64_t index, const uint8_t *e, size_t len)
{
  verify_ctx *c = vctx;
  kh_log_entry ent;
  if (kh_log_entry_parse(e, len, &ent) != KH_OK) {
    if (!c->bad++) {
      c->first_bad = index;
      snprintf(c->detail, sizeof c->detail, "%s", kh_errdetail());
    }
  }
  return KH_OK;
}

static char *cache_path(const char *origin)
{
  const char *base = getenv("KEYHOLD_CACHE_DIR");
  char *b = NULL, *d = NULL, *p = NULL;
  uint8_t h[32];
  char name[65];
  if (base && *base) {
    b = strdup(base);
  } else {
    const char *home = getenv("HOME");
    if (!home || !*home)
      return NULL;
    b = join(home, ".cache/keyhold");
  }
  if (!b)
    return NULL;
  d = join(b, "log-verify");
  crypto_hash_sha256(h, (const uint8_t *)origin, strlen(origin));
  hex(name, h);
  if (d && mkdirs(d) == 0)
    p = join(d, name);
  free(b);
  free(d);
  return p;
}

static int log_verify(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"log", required_argument, NULL, 'l'},
    {"key", required_argument, NULL, 'k'},
    {"ca-file", required_argument, NULL, 'c'},
    {NULL, 0, NULL, 0},
  };
  const char *dir_opt = NULL, *key_opt = NULL, *ca_opt = getenv("KEYHOLD_CA_FILE");
  int c;
  optind = 0; /* parse argv[2..]: the subcommand is argv[1] */
  while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'l': dir_opt = optarg; break;
    case 'k': key_opt = optarg; break;
    case 'c': ca_opt = optarg; break;
    default: return cli_usage("log");
    }
  }
  if (optind != argc - 1)
    return cli_usage("log");
  /* a region server (--region URL) serves its log under /log */
  char srvlog[600];
  if (!dir_opt && g_opts.region && cli_is_url(g_opts.region)) {
    size_t rl = strlen(g_opts.region);
    while (rl && g_opts.region[rl - 1] == '/')
      rl--;
    snprintf(srvlog, sizeof srvlog, "%.*s/log", (int)(rl < 500 ? rl : 500), g_opts.region);
    dir_opt = srvlog;
  }
  if (!ca_opt && g_opts.ca_file)
    ca_opt = g_opts.ca_file;
  bool url = dir_opt && cli_is_url(dir_opt);
  if (url && !key_opt) {
    cli_msgf("log verify: a log URL needs --key (the server is not trusted for its key)");
    return cli_usage("log");
  }
  int rc = CLI_EXIT_FAIL;
  char *dir = NULL, *k = NULL, *cpath = NULL, *prev = NULL;
  kh_tlog *log = NULL;
  kh_note_verifier *v = NULL;
  kh_err e;
  dir = dir_opt ? strdup(dir_opt) : region_log_dir();
  if (!dir)
    goto out;
  if (key_opt) {
    k = strdup(key_opt);
  } else {
    char *kp = join(dir, "verifier");
    k = kp ? read_line_file(kp) : NULL;
    if (!k)
      cli_errorf("log verify: no --key given and cannot read %s: %s", kp ? kp : dir,
                 strerror(errno));
    free(kp);
    if (!k)
      goto out;
  }
  kh_http_opts ho = {.ca_file = ca_opt && *ca_opt ? ca_opt : NULL};
  if ((e = kh_note_verifier_new(k, &v)) ||
      (e = url ? kh_tlog_open_url(dir, &ho, NULL, k, &log)
               : kh_tlog_open(dir, NULL, NULL, k, &log))) {
    rc = cli_fail(e, "log verify");
    goto out;
  }
  verify_ctx vc;
  memset(&vc, 0, sizeof vc);
  if ((e = kh_tlog_verify(log, check_entry, &vc))) {
    rc = cli_fail(e, "log verify");
    goto out;
  }
  if (vc.bad) {
    cli_errorf("log verify: %llu entries are not valid keyhold log entries (first: entry "
               "%llu: %s)", (unsigned long long)vc.bad, (unsigned long long)vc.first_bad,
               vc.detail);
    goto out;
  }
  /* consistency with what we verified last time */
  uint64_t size = kh_tlog_size(log), prev_size = 0;
  bool have_prev = false;
  kh_log_hash root;
  kh_tlog_root(log, root);
  cpath = cache_path(kh_tlog_origin(log));
  size_t plen = 0;
  if (cpath && (prev = read_small(cpath, &plen))) {
    kh_checkpoint pc;
    kh_log_hash proof[KH_LOG_PROOF_MAX];
    size_t n = 0;
    if ((e = kh_checkpoint_open(prev, plen, v, &pc, NULL))) {
      rc = cli_fail(e, "log verify: remembered checkpoint");
      goto out;
    }
    if (pc.size > size) {
      cli_errorf("log verify: the log shrank from %llu (verified before) to %llu entries: "
                 "ROLLBACK", (unsigned long long)pc.size, (unsigned long long)size);
      goto out;
    }
    if ((e = kh_tlog_consistency_proof(log, pc.size, size, proof, &n)) ||
        (e = kh_log_verify_consistency(pc.size, size, proof, n, pc.root, root))) {
      rc = cli_fail(e, "log verify: NOT CONSISTENT with the checkpoint verified before");
      goto out;
    }
    have_prev = true;
    prev_size = pc.size;
  }
  size_t cl;
  const char *cp = kh_tlog_checkpoint(log, &cl);
  if (cpath && kh_file_write_atomic(cpath, cp, cl, 0600) != KH_OK)
    cli_warnf("log verify: cannot remember the checkpoint in %s: %s", cpath, kh_errdetail());
  if (!cpath)
    cli_warnf("log verify: no cache directory ($KEYHOLD_CACHE_DIR or $HOME): "
              "consistency over time is not being checked");
  char h[65], b[45];
  hex(h, root);
  b64(b, root);
  if (g_opts.json) {
    fputs("{\"origin\":", stdout);
    cli_json_cstr(stdout, kh_tlog_origin(log));
    printf(",\"size\":%llu,\"root\":\"%s\",\"entries\":%llu,\"previous_size\":",
           (unsigned long long)size, h, (unsigned long long)size);
    if (have_prev)
      printf("%llu", (unsigned long long)prev_size);
    else
      fputs("null", stdout);
    fputs(",\"ok\":true}\n", stdout);
  } else {
    printf("log %s\nsize %llu\nroot %s\n", kh_tlog_origin(log), (unsigned long long)size, b);
    if (have_prev)
      printf("ok: all %llu entries verified; consistent with size %llu verified before\n",
             (unsigned long long)size, (unsigned long long)prev_size);
    else
      printf("ok: all %llu entries verified (first verification of this log here)\n",
             (unsigned long long)size);
  }
  rc = CLI_EXIT_OK;
out:
  kh_tlog_free(log);
  kh_note_verifier_free(v);
  free(dir);
  free(k);
  free(cpath);
  free(prev);
  return rc;
}

static int log_note_verify(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"key", required_argument, NULL, 'k'},
    {NULL, 0, NULL, 0},
  };
  kh_note_verifier *keys[64];
  size_t nkeys = 0;
  int c, rc = CLI_EXIT_USAGE;
  char *note = NULL;
  optind = 0; /* parse argv[2..]: the subcommand is argv[1] */
  while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
    if (c != 'k' || nkeys == 64)
      goto usage;
    kh_err e = kh_note_verifier_new(optarg, &keys[nkeys]);
    if (e) {
      cli_fail(e, "log note-verify: --key");
      goto out;
    }
    nkeys++;
  }
  if (optind != argc - 2 || nkeys == 0)
    goto usage;
  size_t len = 0;
  if (!(note = read_small(argv[optind + 1], &len))) {
    cli_errorf("log note-verify: cannot read %s: %s", argv[optind + 1], strerror(errno));
    rc = CLI_EXIT_FAIL;
    goto out;
  }
  kh_note_info info;
  bool ok[64];
  uint64_t times[64];
  kh_err e = kh_note_open(note, len, keys, nkeys, &info, ok, times);
  if (e) {
    rc = cli_fail(e, "log note-verify: INVALID");
    goto out;
  }
  for (size_t i = 0; i < nkeys; i++) {
    if (!ok[i])
      continue;
    if (kh_note_verifier_alg(keys[i]) == KH_NOTE_ALG_COSIG_V1)
      printf("valid cosignature by %s at %llu\n", kh_note_verifier_name(keys[i]),
             (unsigned long long)times[i]);
    else
      printf("valid signature by %s\n", kh_note_verifier_name(keys[i]));
  }
  rc = CLI_EXIT_OK;
  goto out;
usage:
  rc = cli_usage("log");
out:
  for (size_t i = 0; i < nkeys; i++)
    kh_note_verifier_free(keys[i]);
  free(note);
  return rc;
}

static int log_inclusion(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"leaf-hash", required_argument, NULL, 'l'}, {"index", required_argument, NULL, 'i'},
    {"size", required_argument, NULL, 's'},      {"root", required_argument, NULL, 'r'},
    {"proof", required_argument, NULL, 'p'},     {NULL, 0, NULL, 0},
  };
  kh_log_hash leaf, root, proof[KH_LOG_PROOF_MAX];
  uint64_t index = 0, size = 0;
  size_t plen = 0;
  unsigned have = 0;
  int c;
  optind = 0; /* parse argv[2..]: the subcommand is argv[1] */
  while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
    bool ok;
    switch (c) {
    case 'l': ok = parse_hash(optarg, strlen(optarg), leaf); have |= 1; break;
    case 'i': ok = cli_parse_u64(optarg, 0, UINT64_MAX, &index); have |= 2; break;
    case 's': ok = cli_parse_u64(optarg, 0, UINT64_MAX, &size); have |= 4; break;
    case 'r': ok = parse_hash(optarg, strlen(optarg), root); have |= 8; break;
    case 'p': ok = parse_proof(optarg, proof, &plen); have |= 16; break;
    default: return cli_usage("log");
    }
    if (!ok) {
      cli_errorf("log inclusion: bad value for --%s", longopts[c == 'l' ? 0 : c == 'i' ? 1 :
                 c == 's' ? 2 : c == 'r' ? 3 : 4].name);
      return CLI_EXIT_USAGE;
    }
  }
  if (optind != argc - 1 || have != 31) {
    cli_errorf("log inclusion: --leaf-hash, --index, --size, --root and --proof are required");
    return cli_usage("log");
  }
  kh_err e = kh_log_verify_inclusion(leaf, index, size, proof, plen, root);
  if (e) {
    printf("invalid: %s\n", kh_errdetail());
    return CLI_EXIT_FAIL;
  }
  printf("valid: leaf %llu is in the tree of size %llu\n", (unsigned long long)index,
         (unsigned long long)size);
  return CLI_EXIT_OK;
}

static int log_consistency(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"size1", required_argument, NULL, 'a'}, {"size2", required_argument, NULL, 'b'},
    {"root1", required_argument, NULL, 'c'}, {"root2", required_argument, NULL, 'd'},
    {"proof", required_argument, NULL, 'p'}, {NULL, 0, NULL, 0},
  };
  kh_log_hash r1, r2, proof[KH_LOG_PROOF_MAX];
  uint64_t s1 = 0, s2 = 0;
  size_t plen = 0;
  unsigned have = 0;
  int c;
  optind = 0; /* parse argv[2..]: the subcommand is argv[1] */
  while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
    bool ok;
    switch (c) {
    case 'a': ok = cli_parse_u64(optarg, 0, UINT64_MAX, &s1); have |= 1; break;
    case 'b': ok = cli_parse_u64(optarg, 0, UINT64_MAX, &s2); have |= 2; break;
    case 'c': ok = parse_hash(optarg, strlen(optarg), r1); have |= 4; break;
    case 'd': ok = parse_hash(optarg, strlen(optarg), r2); have |= 8; break;
    case 'p': ok = parse_proof(optarg, proof, &plen); have |= 16; break;
    default: return cli_usage("log");
    }
    if (!ok) {
      cli_errorf("log consistency: bad value for --%s", longopts[c == 'p' ? 4 : c - 'a'].name);
      return CLI_EXIT_USAGE;
    }
  }
  if (optind != argc - 1 || have != 31) {
    cli_errorf("log consistency: --size1, --size2, --root1, --root2 and --proof are required");
    return cli_usage("log");
  }
  kh_err e = kh_log_verify_consistency(s1, s2, proof, plen, r1, r2);
  if (e) {
    printf("invalid: %s\n", kh_errdetail());
    return CLI_EXIT_FAIL;
  }
  printf("valid: the tree of size %llu extends the tree of size %llu\n",
         (unsigned long long)s2, (unsigned long long)s1);
  return CLI_EXIT_OK;
}

int cmd_log(int argc, char **argv)
{
  if (argc < 2) {
    cli_errorf("log: which subcommand?");
    return cli_usage("log");
  }
  const char *sub = argv[1];
  if (!strcmp(sub, "key"))
    return log_key(argc, argv);
  if (!strcmp(sub, "checkpoint"))
    return log_checkpoint(argc, argv);
  if (!strcmp(sub, "verify"))
    return log_verify(argc, argv);
  if (!strcmp(sub, "note-verify"))
    return log_note_verify(argc, argv);
  if (!strcmp(sub, "inclusion"))
    return log_inclusion(argc, argv);
  if (!strcmp(sub, "consistency"))
    return log_consistency(argc, argv);
  cli_errorf("log: unknown subcommand '%s'", sub);
  return cli_usage("log");
}
