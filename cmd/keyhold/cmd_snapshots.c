/* keyhold snapshots: list the account's snapshots. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

const char cmd_snapshots_help[] =
"NAME\n"
"    keyhold snapshots - list the snapshots\n"
"\n"
"SYNOPSIS\n"
"    keyhold snapshots [--host H]... [--path P]... [--tag T[,T...]]... [--json]\n"
"\n"
"DESCRIPTION\n"
"    Lists the snapshots of the account, oldest first: every one, or those\n"
"    --host, --path and --tag select.  Each one is decrypted and its device\n"
"    signature verified before it is shown.\n"
"\n"
"    \"Oldest first\" is the snapshot order that latest, forget's keep\n"
"    rules and restore use too: snapshots of one device are in the order\n"
"    of its signed counter whatever their times say, a snapshot comes after\n"
"    its parent, and a snapshot whose time lies after that of a snapshot\n"
"    its device made later is placed at that later one's time.  So a\n"
"    device whose clock ran ahead for a while cannot hold \"latest\".\n"
"\n"
"    The table has the columns ID (the first 8 hex digits; any unique prefix\n"
"    of 4 or more digits names a snapshot), TIME (local time), HOST and PATHS\n"
"    (comma-separated), followed by a line \"N snapshots\".\n"
"\n"
"    With --json, stdout is one JSON array of objects with the fields\n"
"    \"id\" (64 hex digits), \"short_id\" (8), \"time\" (RFC 3339, UTC, with\n"
"    nanoseconds), \"host\", \"paths\" (array), \"parent\" (id or null), \"tree\",\n"
"    \"device\", \"counter\" (the device's monotonic counter), \"files\",\n"
"    \"bytes\" (totals at backup time) and \"original\" (for a snapshot\n"
"    rewritten by keyhold repair snapshots, the id it replaces; else null)\n"
"    and \"copy_of\" (for a snapshot made by keyhold copy, the id of the\n"
"    source snapshot in the other account; else null).\n"
"\n"
"OPTIONS\n"
"    --host H\n"
"        Only snapshots made on host H (repeatable: any of them).\n"
"    --path P\n"
"        Only snapshots whose backed-up paths are exactly the --path\n"
"        options given (repeat --path for a snapshot of several paths).\n"
"    --tag T[,T...]\n"
"        Only snapshots carrying every tag of the list; repeatable: a\n"
"        snapshot matching any of the --tag options is shown.  --tag ''\n"
"        selects snapshots without tags.\n"
"    --json\n"
"        Machine-readable output (a global option).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success, 1 on failure (for example a snapshot that fails\n"
"    verification), 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold snapshots\n"
"    keyhold snapshots --host laptop --path /home/ana\n"
"    keyhold snapshots --json | jq -r '.[-1].id'\n";

static void print_json(const kh_snapshot_info *s, size_t n) {
  char t[CLI_TIME_BUF];
  fputs("[", stdout);
  for (size_t i = 0; i < n; i++) {
    cli_fmt_time_rfc3339(t, sizeof t, s[i].time_ns);
    printf("%s{\"id\":\"%s\",\"short_id\":\"%.8s\",\"time\":\"%s\",\"host\":", i ? "," : "",
           s[i].id, s[i].id, t);
    cli_json_cstr(stdout, s[i].host ? s[i].host : "");
    fputs(",\"paths\":[", stdout);
    for (size_t j = 0; j < s[i].npaths; j++) {
      if (j) fputc(',', stdout);
      cli_json_cstr(stdout, s[i].paths[j] ? s[i].paths[j] : "");
    }
    fputs("],\"tags\":[", stdout);
    for (size_t j = 0; j < s[i].ntags; j++) {
      if (j) fputc(',', stdout);
      cli_json_cstr(stdout, s[i].tags[j]);
    }
    fputs("],\"parent\":", stdout);
    if (s[i].parent[0]) printf("\"%s\"", s[i].parent);
    else fputs("null", stdout);
    printf(",\"tree\":\"%s\",\"device\":\"%s\",\"counter\":%llu,\"files\":%llu,\"bytes\":%llu",
           s[i].tree, s[i].device, (unsigned long long)s[i].counter,
           (unsigned long long)s[i].files, (unsigned long long)s[i].bytes);
    fputs(",\"original\":", stdout);
    if (s[i].original[0]) printf("\"%s\"", s[i].original);
    else fputs("null", stdout);
    if (s[i].copy_of[0]) printf(",\"copy_of\":\"%s\"}", s[i].copy_of);
    else fputs(",\"copy_of\":null}", stdout);
  }
  fputs("]\n", stdout);
}

static void print_table(const kh_snapshot_info *s, size_t n) {
  char t[CLI_TIME_BUF];
  int hostw = 4, tagw = 0;
  for (size_t i = 0; i < n; i++) {
    int l = s[i].host ? (int)strlen(s[i].host) : 0;
    if (l > hostw) hostw = l < 32 ? l : 32;
    int tl = 0;
    for (size_t j = 0; j < s[i].ntags; j++) tl += (j ? 1 : 0) + (int)strlen(s[i].tags[j]);
    if (tl > tagw) tagw = tl < 32 ? tl : 32;
  }
  if (tagw && tagw < 4) tagw = 4;
  printf("%-8s  %-19s  %-*s  ", "ID", "TIME", hostw, "HOST");
  if (tagw) printf("%-*s  ", tagw, "TAGS"); /* only when some snapshot has tags */
  printf("%s\n", "PATHS");
  for (size_t i = 0; i < n; i++) {
    cli_fmt_time_local(t, sizeof t, s[i].time_ns);
    const char *h = s[i].host ? s[i].host : "";
    printf("%.8s  %-19s  ", s[i].id, t);
    cli_print_path(stdout, h, strlen(h));
    for (int pad = hostw - (int)strlen(h); pad > 0; pad--) putchar(' ');
    fputs("  ", stdout);
    if (tagw) {
      int tl = 0;
      for (size_t j = 0; j < s[i].ntags; j++) {
        if (j) fputc(',', stdout);
        cli_print_path(stdout, s[i].tags[j], strlen(s[i].tags[j]));
        tl += (j ? 1 : 0) + (int)strlen(s[i].tags[j]);
      }
      for (int pad = tagw - tl; pad > 0; pad--) putchar(' ');
      fputs("  ", stdout);
    }
    for (size_t j = 0; j < s[i].npaths; j++) {
      if (j) fputc(',', stdout);
      if (s[i].paths[j]) cli_print_path(stdout, s[i].paths[j], strlen(s[i].paths[j]));
    }
    putchar('\n');
  }
  printf("%zu snapshot%s\n", n, n == 1 ? "" : "s");
}

int cmd_snapshots(int argc, char **argv) {
  static const struct option longopts[] = {CLI_FILTER_OPTIONS, {NULL, 0, NULL, 0}};
  cli_filter cf;
  kh_vault *v = NULL;
  kh_snapshot_info *s = NULL;
  size_t n = 0;
  int c, rc = CLI_EXIT_FAIL;
  if (!cli_filter_init(&cf, argc)) return CLI_EXIT_FAIL;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (!cli_filter_add(&cf, c, optarg, "snapshots")) {
      rc = cli_usage("snapshots");
      goto out;
    }
  }
  if (optind != argc) {
    cli_msgf("snapshots: unexpected argument '%s'", argv[optind]);
    rc = cli_usage("snapshots");
    goto out;
  }
  if (cli_open_vault(&v)) goto out;
  kh_err e = kh_snapshots_select(v, &cf.f, &s, &n);
  if (e) {
    cli_fail(e, "list snapshots");
    goto out;
  }
  if (g_opts.json) print_json(s, n);
  else print_table(s, n);
  uint64_t bad = kh_snapshots_skipped();
  if (bad) {
    /* never list a partial view silently: the provider may be hiding them */
    cli_warnf("%llu snapshot(s) failed authentication and are not listed; run keyhold check",
              (unsigned long long)bad);
    goto out;
  }
  rc = CLI_EXIT_OK;
out:
  kh_snapshots_free(s, n);
  kh_vault_free(v);
  cli_filter_release(&cf);
  return rc;
}
