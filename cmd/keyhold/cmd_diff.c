/* keyhold diff: what changed between two snapshots. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

const char cmd_diff_help[] =
"NAME\n"
"    keyhold diff - show the differences between two snapshots\n"
"\n"
"SYNOPSIS\n"
"    keyhold diff [--json] [--host H]... [--path P]... [--tag T]...\n"
"                 SNAPSHOT1 SNAPSHOT2\n"
"\n"
"DESCRIPTION\n"
"    Compares the trees of two snapshots and prints one line per path that\n"
"    differs, in path order:\n"
"\n"
"        +    /path    added in SNAPSHOT2\n"
"        -    /path    removed in SNAPSHOT2\n"
"        M    /path    content changed\n"
"        U    /path    metadata only (mode, owner, times)\n"
"        T    /path    type changed (e.g. file became a symlink)\n"
"\n"
"    then \"added N, removed N, changed N; B added, B removed\" (changed\n"
"    counts M, U and T).  The bytes are file content only in SNAPSHOT2\n"
"    (added) or only in SNAPSHOT1 (removed): whole files for + and -, and\n"
"    for M the chunks that differ (a small edit in a big file is a few KiB\n"
"    each way).  Paths are escaped as in keyhold ls.\n"
"\n"
"    With --json, one JSON object per line (NDJSON):\n"
"    {\"change\": \"+\", \"path\": \"/path\", \"bytes_added\": N,\n"
"    \"bytes_removed\": N}; no summary line.\n"
"\n"
CLI_HELP_SNAPSHOT_NAMES
"\n"
"OPTIONS\n"
CLI_HELP_FILTER_OPTIONS
"    --json\n"
"        NDJSON output (a global option).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success (whether or not there are differences), 1 on failure, 2 on\n"
"    a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold diff 1a2b3c4d latest\n"
"    keyhold diff --path /home/ana latest~1 latest\n"
"    keyhold diff --json 1a2b 5e6f | jq -r 'select(.change==\"+\") | .path'\n";

struct diff_ctx {
  unsigned long long added, removed, changed;
  uint64_t bytes_added, bytes_removed;
};

static void diff_one(char change, const uint8_t *path, size_t pathlen, uint64_t badd,
                     uint64_t brem, void *vctx) {
  struct diff_ctx *c = vctx;
  c->bytes_added += badd;
  c->bytes_removed += brem;
  if (change == '+') c->added++;
  else if (change == '-') c->removed++;
  else c->changed++;
  if (g_opts.json) {
    fputs("{\"change\":", stdout);
    cli_json_str(stdout, &change, 1);
    fputs(",\"path\":", stdout);
    cli_json_str(stdout, path, pathlen);
    printf(",\"bytes_added\":%llu,\"bytes_removed\":%llu}\n", (unsigned long long)badd,
           (unsigned long long)brem);
  } else {
    printf("%c    ", change);
    cli_print_path(stdout, path, pathlen);
    putchar('\n');
  }
}

int cmd_diff(int argc, char **argv) {
  static const struct option longopts[] = {CLI_FILTER_OPTIONS, {NULL, 0, NULL, 0}};
  cli_filter cf;
  kh_vault *v = NULL;
  struct diff_ctx ctx = {0, 0, 0, 0, 0};
  char ids[2][KH_SNAPSHOT_ID_HEX + 1], what[300];
  int c, rc = CLI_EXIT_FAIL;
  if (!cli_filter_init(&cf, argc)) return CLI_EXIT_FAIL;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (!cli_filter_add(&cf, c, optarg, "diff")) {
      rc = cli_usage("diff");
      goto out;
    }
  }
  if (argc - optind != 2) {
    cli_msgf("diff: need exactly two snapshots");
    rc = cli_usage("diff");
    goto out;
  }
  if (cli_open_vault(&v)) goto out;
  for (int i = 0; i < 2; i++) {
    snprintf(what, sizeof what, "diff: snapshot %s", argv[optind + i]);
    if ((rc = cli_resolve_snapshot(v, argv[optind + i], &cf, what, ids[i]))) goto out;
    rc = CLI_EXIT_FAIL;
  }
  kh_err e = kh_diff(v, ids[0], ids[1], diff_one, &ctx);
  if (e) {
    snprintf(what, sizeof what, "diff %s %s", argv[optind], argv[optind + 1]);
    cli_fail(e, what);
    goto out;
  }
  if (!g_opts.json) {
    char ba[CLI_BYTES_BUF], br[CLI_BYTES_BUF];
    cli_fmt_bytes(ba, sizeof ba, ctx.bytes_added);
    cli_fmt_bytes(br, sizeof br, ctx.bytes_removed);
    printf("added %llu, removed %llu, changed %llu; %s added, %s removed\n", ctx.added,
           ctx.removed, ctx.changed, ba, br);
  }
  rc = CLI_EXIT_OK;
out:
  kh_vault_free(v);
  cli_filter_release(&cf);
  return rc;
}
