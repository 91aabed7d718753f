/* keyhold prune: remove stored data that no snapshot uses. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

const char cmd_prune_help[] =
"NAME\n"
"    keyhold prune - remove data that no snapshot uses\n"
"\n"
"SYNOPSIS\n"
"    keyhold prune\n"
"\n"
"DESCRIPTION\n"
"    Finds the blobs no remaining snapshot references (after keyhold forget),\n"
"    deletes packs that hold only such blobs and repacks packs that hold a\n"
"    mix, then rewrites the index.  It takes the region's exclusive lock,\n"
"    so it fails while a backup, restore or check runs.  A lock is stale\n"
"    (and removed) only when its process is provably gone (same machine\n"
"    boot and PID namespace) or when this machine has seen it unchanged\n"
"    for 30 minutes; clocks and host names never decide.\n"
"\n"
"    Prints the packs deleted and repacked, the blobs removed and the bytes\n"
"    freed.  With --json, stdout is one JSON object: {\"packs_deleted\",\n"
"    \"packs_repacked\", \"packs_kept\", \"blobs_removed\", \"bytes_freed\",\n"
"    \"seconds\"}.\n"
"\n"
"OPTIONS\n"
"    Only the global options.\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success, 1 on failure (for example the region is locked by another\n"
"    operation), 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold forget --keep-last 10 && keyhold prune\n";

int cmd_prune(int argc, char **argv) {
  static const struct option longopts[] = {{NULL, 0, NULL, 0}};
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) return cli_usage("prune");
  if (optind != argc) {
    cli_msgf("prune: unexpected argument '%s'", argv[optind]);
    return cli_usage("prune");
  }
  kh_vault *v = NULL;
  if (cli_open_vault(&v)) return CLI_EXIT_FAIL;
  kh_prune_result r;
  memset(&r, 0, sizeof r);
  double t0 = cli_now();
  kh_err e = kh_prune(v, cli_progress_enabled() ? cli_progress : NULL, NULL, &r);
  double secs = cli_now() - t0;
  cli_progress_end();
  if (e) {
    cli_fail(e, "prune");
    kh_vault_free(v);
    return CLI_EXIT_FAIL;
  }
  kh_vault_free(v);
  if (g_opts.json) {
    printf("{\"packs_deleted\":%llu,\"packs_repacked\":%llu,\"packs_kept\":%llu,"
           "\"blobs_removed\":%llu,\"bytes_freed\":%llu,\"seconds\":%.3f}\n",
           (unsigned long long)r.packs_deleted, (unsigned long long)r.packs_repacked,
           (unsigned long long)r.packs_kept, (unsigned long long)r.blobs_removed,
           (unsigned long long)r.bytes_freed, secs);
  } else {
    char b[CLI_BYTES_BUF];
    cli_fmt_bytes(b, sizeof b, r.bytes_freed);
    printf("packs deleted:  %llu\n", (unsigned long long)r.packs_deleted);
    printf("packs repacked: %llu\n", (unsigned long long)r.packs_repacked);
    printf("packs kept:     %llu\n", (unsigned long long)r.packs_kept);
    printf("blobs removed:  %llu\n", (unsigned long long)r.blobs_removed);
    printf("freed:          %s (%llu bytes)\n", b, (unsigned long long)r.bytes_freed);
  }
  return CLI_EXIT_OK;
}
