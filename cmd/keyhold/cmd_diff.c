/* keyhold diff: what changed between two snapshots. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

const char cmd_diff_help[] =
"NAME\n"
"    keyhold diff - show the differences between two snapshots\n"
"\n"
"SYNOPSIS\n"
"    keyhold diff [--json] SNAPSHOT1 SNAPSHOT2\n"
"\n"
"DESCRIPTION\n"
"    Compares the trees of two snapshots (\"latest\", full ids or unique\n"
"    prefixes) and prints one line per path that differs, in path order:\n"
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
"OPTIONS\n"
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
  static const struct option longopts[] = {{NULL, 0, NULL, 0}};
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) return cli_usage("diff");
  if (argc - optind != 2) {
    cli_msgf("diff: need exactly two snapshots");
    return cli_usage("diff");
  }
  kh_vault *v = NULL;
  struct diff_ctx ctx = {0, 0, 0, 0, 0};
  if (cli_open_vault(&v)) return CLI_EXIT_FAIL;
  kh_err e = kh_diff(v, argv[optind], argv[optind + 1], diff_one, &ctx);
  if (e) {
    char what[300];
    snprintf(what, sizeof what, "diff %s %s", argv[optind], argv[optind + 1]);
    cli_fail(e, what);
    kh_vault_free(v);
    return CLI_EXIT_FAIL;
  }
  kh_vault_free(v);
  if (!g_opts.json) {
    char ba[CLI_BYTES_BUF], br[CLI_BYTES_BUF];
    cli_fmt_bytes(ba, sizeof ba, ctx.bytes_added);
    cli_fmt_bytes(br, sizeof br, ctx.bytes_removed);
    printf("added %llu, removed %llu, changed %llu; %s added, %s removed\n", ctx.added,
           ctx.removed, ctx.changed, ba, br);
  }
  return CLI_EXIT_OK;
}
