/* keyhold watch: verify the region's log and report every key operation on
 * this account that none of its own devices asked for. */
#include "cli.h"
#include "keyhold/remote.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

int cmd_watch(int argc, char **argv);

const char cmd_watch_help[] =
"NAME\n"
"    keyhold watch - watch the log for uses of this account's keys\n"
"\n"
"SYNOPSIS\n"
"    keyhold watch [--json] [--log URL [--ca-file F]]\n"
"\n"
"DESCRIPTION\n"
"    Reads the region's transparency log (<region>/log) and verifies it: the\n"
"    checkpoint's signature with the log key this device pinned the first\n"
"    time it watched (trust on first use; kept in the device directory), every\n"
"    entry against the Merkle tree, and the consistency of the tree with the\n"
"    last checkpoint this device saw.  Then it lists every entry about this\n"
"    account that none of the account's own devices asked for: an operator's\n"
"    unwrap, escrow attempts, a destruction or wrap it did not request.\n"
"\n"
"    A device's own requests carry the device's Ed25519 signature over the\n"
"    entry (docs/log.md 5.1); only entries signed by a device enrolled in\n"
"    this account count as its own.  The account's first entry (the wrap\n"
"    made when the account was created) is its own too.  Every other entry\n"
"    is listed with its time, operation, requester and reason.\n"
"\n"
"    With --log URL the log is fetched from a server or mirror that serves\n"
"    it as C2SP tlog-tiles (e.g. a region server's http://HOST:PORT/log)\n"
"    instead of <region>/log, and verified the same way with the pinned\n"
"    key: the server is never asked for the key.  A device that has not\n"
"    pinned a key yet pins the region's <region>/log/verifier.\n"
"\n"
"    On a region server (--region URL) the log is the server's URL/log, the\n"
"    device's own requests are signed by it (docs/protocol.md 10.3) and\n"
"    the account's devices are its sealed device records; the log key is\n"
"    pinned on first use from the server's /v1/region (give --log and\n"
"    compare keyhold log verify --key with a key you got elsewhere to\n"
"    check it) and refused if it ever changes.  The operator's unwrap\n"
"    (keyholdd admin unwrap) and escrow attempts are listed.\n"
"\n"
"    The account's device statements (docs/log.md 5.2) are listed after\n"
"    that, one line each: \"device enrolled|revoked: TIME ID by\n"
"    device:SIGNER, signature valid\"; one whose signature does not verify\n"
"    with a device of the account says INVALID, one signed by a device\n"
"    that an earlier statement revoked says REVOKED; both also count as an\n"
"    operation by somebody else (as does any request such a device signs).\n"
"\n"
"    With --json one object: {\"account\", \"log_size\", \"count\",\n"
"    \"entries\": [{\"index\", \"time\", \"op\", \"key\", \"requester\",\n"
"    \"reason\", \"attempt\"}], \"device_changes\": [{\"index\", \"time\",\n"
"    \"op\", \"device\", \"by\", \"signature\": \"valid\"|\"invalid\"|\n"
"    \"revoked-signer\"}]}.\n"
"\n"
"OPTIONS\n"
"    --log URL      fetch the log over HTTP(S) from URL\n"
"    --ca-file F    CA certificates for an https:// URL (default: the system's)\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT, KEYHOLD_DEVICE_DIR,\n"
"    KEYHOLD_CA_FILE (default for --ca-file)\n"
"\n"
"EXIT STATUS\n"
"    0 no operation by anybody else; 1 there is at least one (listed);\n"
"    2 an error (unreadable log, usage); 3 the log FAILED verification: bad\n"
"    signature, a changed log key, or a log inconsistent with what this\n"
"    device saw before (history was rewritten).\n"
"\n"
"EXAMPLES\n"
"    keyhold watch || echo 'somebody used my key'\n";

enum { WATCH_ERROR = 2, WATCH_BAD_LOG = 3 };

#define NOTE_MAX (1u << 20)

static char *read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = malloc(NOTE_MAX + 1);
  size_t n = buf ? fread(buf, 1, NOTE_MAX + 1, f) : 0;
  bool bad = !buf || ferror(f) || n > NOTE_MAX;
  fclose(f);
  if (bad) {
    free(buf);
    errno = EFBIG;
    return NULL;
  }
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

static void chomp(char *s)
{
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
    s[--n] = '\0';
}

typedef struct seen_sig {
  char sig[KH_LOG_DEVICE_MAX + 1];
} seen_sig;

typedef struct watch_ctx {
  const char *account;
  kh_device_info *devs;
  size_t ndevs;
  bool first_seen;        /* the account's first entry was met */
  seen_sig *sigs;
  size_t nsigs, capsigs;
  kh_log_entry *found;
  uint64_t *found_idx;
  size_t nfound, capfound;
  uint64_t bad;           /* entries that do not parse */
  kh_log_entry *changes;  /* enrol / revoke statements of the account */
  uint64_t *change_idx;
  int *change_sig;        /* SIG_* below */
  size_t nchanges, capchanges;
  char (*revoked)[33];    /* devices the log shows revoked so far */
  size_t nrevoked, caprevoked;
} watch_ctx;

/* What a device statement's signature says (docs/log.md §5.2). */
enum { SIG_VALID, SIG_INVALID, SIG_REVOKED };
static const char *const SIG_JSON[] = {"valid", "invalid", "revoked-signer"};
static const char *const SIG_TEXT[] = {"valid", "INVALID (not by a device of this account)",
                                       "by a device REVOKED before it"};

/* Was the signer of e (its device field) revoked earlier in the log? */
static bool signer_revoked(const watch_ctx *w, const kh_log_entry *e)
{
  for (size_t i = 0; i < w->nrevoked; i++)
    if (!strncmp(e->device, w->revoked[i], 32) && e->device[32] == ':')
      return true;
  return false;
}

static kh_err note_revoked(watch_ctx *w, const char *id)
{
  if (w->nrevoked == w->caprevoked) {
    size_t nc = w->caprevoked ? 2 * w->caprevoked : 8;
    char (*p)[33] = realloc(w->revoked, nc * sizeof *p);
    if (!p)
      return KH_ERR_NOMEM;
    w->revoked = p;
    w->caprevoked = nc;
  }
  snprintf(w->revoked[w->nrevoked++], 33, "%.32s", id);
  return KH_OK;
}

/* Remember an enrol or revoke statement (docs/log.md §5.2) for the report. */
static kh_err note_change(watch_ctx *w, const kh_log_entry *e, uint64_t index, int sig)
{
  if (w->nchanges == w->capchanges) {
    size_t nc = w->capchanges ? 2 * w->capchanges : 8;
    kh_log_entry *p = realloc(w->changes, nc * sizeof *p);
    if (p)
      w->changes = p;
    uint64_t *q = p ? realloc(w->change_idx, nc * sizeof *q) : NULL;
    if (q)
      w->change_idx = q;
    int *b = q ? realloc(w->change_sig, nc * sizeof *b) : NULL;
    if (!b)
      return KH_ERR_NOMEM;
    w->change_sig = b;
    w->capchanges = nc;
  }
  w->changes[w->nchanges] = *e;
  w->change_idx[w->nchanges] = index;
  w->change_sig[w->nchanges++] = sig;
  return KH_OK;
}

static bool own_entry(watch_ctx *w, const kh_log_entry *e)
{
  if (!w->first_seen) {
    w->first_seen = true;
    if (e->op == KH_LOG_OP_WRAP && !strcmp(e->requester, "init"))
      return true;
  }
  if (!e->device[0])
    return false;
  for (size_t i = 0; i < w->nsigs; i++)
    if (!strcmp(w->sigs[i].sig, e->device))
      return false; /* a replayed request is not the device's */
  for (size_t i = 0; i < w->ndevs; i++) {
    if (kh_kms_verify_device_entry(e, w->devs[i].id, w->devs[i].pk) != KH_OK)
      continue;
    if (w->nsigs == w->capsigs) {
      size_t nc = w->capsigs ? 2 * w->capsigs : 16;
      seen_sig *p = realloc(w->sigs, nc * sizeof *p);
      if (!p)
        return false;
      w->sigs = p;
      w->capsigs = nc;
    }
    snprintf(w->sigs[w->nsigs++].sig, sizeof w->sigs[0].sig, "%s", e->device);
    return true;
  }
  return false;
}

static kh_err each_entry(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
  watch_ctx *w = ctx;
  kh_log_entry e;
  if (kh_log_entry_parse(data, len, &e) != KH_OK) {
    w->bad++;
    return KH_OK;
  }
  if (strcmp(e.account, w->account))
    return KH_OK;
  bool own = own_entry(w, &e);
  /* a device the log shows revoked speaks for the account no more */
  int sig = !own ? SIG_INVALID : signer_revoked(w, &e) ? SIG_REVOKED : SIG_VALID;
  own = sig == SIG_VALID;
  if ((e.op == KH_LOG_OP_ENROL || e.op == KH_LOG_OP_REVOKE) && note_change(w, &e, index, sig))
    return KH_ERR_NOMEM;
  if (e.op == KH_LOG_OP_REVOKE && own && note_revoked(w, e.key))
    return KH_ERR_NOMEM;
  if (own)
    return KH_OK;
  if (w->nfound == w->capfound) {
    size_t nc = w->capfound ? 2 * w->capfound : 16;
    kh_log_entry *p = realloc(w->found, nc * sizeof *p);
    uint64_t *q = p ? realloc(w->found_idx, nc * sizeof *q) : NULL;
    if (p)
      w->found = p;
    if (!p || !q)
      return KH_ERR_NOMEM;
    w->found_idx = q;
    w->capfound = nc;
  }
  w->found[w->nfound] = e;
  w->found_idx[w->nfound++] = index;
  return KH_OK;
}

static void fmt_time(char out[32], int64_t t)
{
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int cmd_watch(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"log", required_argument, NULL, 'l'},
    {"ca-file", required_argument, NULL, 'c'},
    {NULL, 0, NULL, 0},
  };
  const char *url = NULL, *ca = getenv("KEYHOLD_CA_FILE");
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'l': url = optarg; break;
    case 'c': ca = optarg; break;
    default: return cli_usage("watch");
    }
  }
  if (optind != argc) {
    cli_msgf("watch: unexpected argument '%s'", argv[optind]);
    return cli_usage("watch");
  }
  if (url && !cli_is_url(url)) {
    cli_msgf("watch: --log takes an http:// or https:// URL");
    return cli_usage("watch");
  }
  const char *region;
  kh_vault *v = NULL;
  kh_tlog *log = NULL;
  kh_note_verifier *nv = NULL;
  char *logdir = NULL, *pinp = NULL, *cpp = NULL, *pinned = NULL, *current = NULL;
  char *prev = NULL;
  int rc = WATCH_ERROR;
  watch_ctx w;
  memset(&w, 0, sizeof w);
  kh_err e;
  if (cli_region_path(&region) || cli_open_vault(&v))
    return WATCH_ERROR;
  if (!ca && g_opts.ca_file)
    ca = g_opts.ca_file;
  /* on a region server: its log (docs/protocol.md §3); what this device
   * pinned about it lives in its directory for that region instance */
  const kh_device_state *ds = kh_vault_device_state(v);
  char surl[600];
  const char *dd = kh_vault_device_dir(v);
  if (ds) {
    if (!url) {
      snprintf(surl, sizeof surl, "%s/log", ds->url);
      url = surl;
    }
  }
  size_t n1 = strlen(region) + 8, n2 = strlen(dd) + 32;
  logdir = malloc(n1 + 16);
  pinp = malloc(n2);
  cpp = malloc(n2);
  char *vp = malloc(n1 + 16);
  if (!logdir || !pinp || !cpp || !vp) {
    free(vp);
    cli_errorf("watch: out of memory");
    goto out;
  }
  snprintf(logdir, n1 + 16, "%s/log", region);
  snprintf(vp, n1 + 16, "%s/log/verifier", region);
  snprintf(pinp, n2, "%s/log.vkey", dd);
  snprintf(cpp, n2, "%s/log.checkpoint", dd);
  if (ds) {
    /* the server's word for its log key: only a first-use pin, checked
     * against what this device pinned ever after */
    kh_region_info ri;
    if ((e = kh_remote_region(kh_vault_remote(v), &ri)) == KH_OK)
      current = strdup(ri.vkey);
  } else {
    current = read_file(vp, NULL);
  }
  free(vp);
  if (current)
    chomp(current);
  pinned = read_file(pinp, NULL);
  if (pinned) {
    chomp(pinned);
    if (current && strcmp(current, pinned)) {
      cli_errorf("watch: the region's log key CHANGED since this device pinned it "
                 "(pinned %s, now %s)", pinned, current);
      rc = WATCH_BAD_LOG;
      goto out;
    }
  } else {
    if (!current) {
      cli_errorf("watch: cannot read the region's log key %s/log/verifier: %s", region,
                 strerror(errno));
      goto out;
    }
    mkdir(dd, 0700);
    size_t l = strlen(current);
    current[l] = '\n';
    kh_err wr = kh_file_write_atomic(pinp, current, l + 1, 0600);
    current[l] = '\0';
    if (wr != KH_OK) {
      cli_errorf("watch: cannot pin the log key in %s: %s", pinp, kh_errdetail());
      goto out;
    }
    pinned = strdup(current);
    if (!pinned)
      goto out;
  }
  if ((e = kh_note_verifier_new(pinned, &nv))) {
    cli_fail(e, "watch: pinned log key");
    rc = WATCH_BAD_LOG;
    goto out;
  }
  kh_http_opts ho = {.ca_file = ca && *ca ? ca : NULL};
  if ((e = url ? kh_tlog_open_url(url, &ho, NULL, pinned, &log)
               : kh_tlog_open(logdir, NULL, NULL, pinned, &log))) {
    cli_fail(e, "watch: the region's log FAILED verification");
    rc = e == KH_ERR_NOTFOUND || e == KH_ERR_IO ? WATCH_ERROR : WATCH_BAD_LOG;
    goto out;
  }
  uint64_t size = kh_tlog_size(log);
  kh_log_hash root;
  kh_tlog_root(log, root);
  size_t plen = 0;
  if ((prev = read_file(cpp, &plen))) {
    kh_checkpoint pc;
    kh_log_hash proof[KH_LOG_PROOF_MAX];
    size_t n = 0;
    if ((e = kh_checkpoint_open(prev, plen, nv, &pc, NULL))) {
      cli_fail(e, "watch: the checkpoint this device remembered does not verify");
      rc = WATCH_BAD_LOG;
      goto out;
    }
    if (pc.size > size) {
      cli_errorf("watch: the log SHRANK from %llu entries (seen before) to %llu: history was "
                 "rewritten", (unsigned long long)pc.size, (unsigned long long)size);
      rc = WATCH_BAD_LOG;
      goto out;
    }
    if ((e = kh_tlog_consistency_proof(log, pc.size, size, proof, &n)) ||
        (e = kh_log_verify_consistency(pc.size, size, proof, n, pc.root, root))) {
      cli_fail(e, "watch: the log is NOT CONSISTENT with the checkpoint this device saw "
                  "before: history was rewritten");
      rc = WATCH_BAD_LOG;
      goto out;
    }
  }
  if ((e = kh_vault_devices(v, &w.devs, &w.ndevs))) {
    cli_fail(e, "watch: the account's devices");
    goto out;
  }
  w.account = kh_vault_account_id(v);
  if ((e = kh_tlog_verify(log, each_entry, &w))) {
    cli_fail(e, "watch: the region's log FAILED verification");
    rc = e == KH_ERR_NOMEM ? WATCH_ERROR : WATCH_BAD_LOG;
    goto out;
  }
  if (w.bad) {
    cli_errorf("watch: %llu log entries are malformed", (unsigned long long)w.bad);
    rc = WATCH_BAD_LOG;
    goto out;
  }
  size_t cl;
  const char *cp = kh_tlog_checkpoint(log, &cl);
  if (kh_file_write_atomic(cpp, cp, cl, 0600) != KH_OK)
    cli_warnf("watch: cannot remember the checkpoint in %s: %s", cpp, kh_errdetail());
  char ts[32];
  if (g_opts.json) {
    fputs("{\"account\":", stdout);
    cli_json_cstr(stdout, w.account);
    printf(",\"log_size\":%llu,\"count\":%zu,\"entries\":[", (unsigned long long)size,
           w.nfound);
    for (size_t i = 0; i < w.nfound; i++) {
      const kh_log_entry *en = &w.found[i];
      fmt_time(ts, en->time);
      printf("%s{\"index\":%llu,\"time\":\"%s\",\"op\":", i ? "," : "",
             (unsigned long long)w.found_idx[i], ts);
      cli_json_cstr(stdout, kh_log_op_name(en->op));
      fputs(",\"key\":", stdout);
      cli_json_cstr(stdout, en->key);
      fputs(",\"requester\":", stdout);
      cli_json_cstr(stdout, en->requester);
      fputs(",\"reason\":", stdout);
      cli_json_cstr(stdout, en->reason);
      fputs(",\"attempt\":", stdout);
      if (en->has_attempt)
        printf("%u", (unsigned)en->attempt);
      else
        fputs("null", stdout);
      fputc('}', stdout);
    }
    fputs("],\"device_changes\":[", stdout);
    for (size_t i = 0; i < w.nchanges; i++) {
      const kh_log_entry *en = &w.changes[i];
      fmt_time(ts, en->time);
      printf("%s{\"index\":%llu,\"time\":\"%s\",\"op\":\"%s\",\"device\":", i ? "," : "",
             (unsigned long long)w.change_idx[i], ts, kh_log_op_name(en->op));
      cli_json_cstr(stdout, en->key);
      fputs(",\"by\":", stdout);
      cli_json_cstr(stdout, en->requester);
      printf(",\"signature\":\"%s\"}", SIG_JSON[w.change_sig[i]]);
    }
    fputs("]}\n", stdout);
  } else if (w.nfound == 0) {
    printf("no key operations on account %s by anyone else (log verified, %llu entries)\n",
           w.account, (unsigned long long)size);
  } else {
    printf("%zu key operation%s on account %s not made by its devices:\n", w.nfound,
           w.nfound == 1 ? "" : "s", w.account);
    for (size_t i = 0; i < w.nfound; i++) {
      const kh_log_entry *en = &w.found[i];
      fmt_time(ts, en->time);
      printf("%s  %-14s requester=\"%s\" reason=\"%s\"", ts, kh_log_op_name(en->op),
             en->requester, en->reason);
      if (en->has_attempt)
        printf(" attempt=%u", (unsigned)en->attempt);
      printf("  (log index %llu)\n", (unsigned long long)w.found_idx[i]);
    }
  }
  if (!g_opts.json)
    for (size_t i = 0; i < w.nchanges; i++) {
      const kh_log_entry *en = &w.changes[i];
      fmt_time(ts, en->time);
      printf("device %s: %s %s by %s, signature %s  (log index %llu)\n",
             en->op == KH_LOG_OP_ENROL ? "enrolled" : "revoked", ts, en->key, en->requester,
             SIG_TEXT[w.change_sig[i]],
             (unsigned long long)w.change_idx[i]);
    }
  rc = w.nfound ? CLI_EXIT_FAIL : CLI_EXIT_OK;
out:
  free(w.changes);
  free(w.change_idx);
  free(w.change_sig);
  free(w.revoked);
  free(w.devs);
  free(w.sigs);
  free(w.found);
  free(w.found_idx);
  kh_tlog_free(log);
  kh_note_verifier_free(nv);
  kh_vault_free(v);
  free(logdir);
  free(pinp);
  free(cpp);
  free(pinned);
  free(current);
  free(prev);
  return rc;
}
