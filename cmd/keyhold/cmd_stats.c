/* keyhold stats: how much a restore writes, or how much data is stored. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

const char cmd_stats_help[] =
"NAME\n"
"    keyhold stats - sizes: what a restore writes, or the data stored\n"
"\n"
"SYNOPSIS\n"
"    keyhold stats [--mode restore-size|raw-data] [--json] [SNAPSHOT...]\n"
"\n"
"DESCRIPTION\n"
"    Counts over the SNAPSHOTs named (\"latest\", full ids or unique\n"
"    prefixes; a snapshot named twice counts once) or, with none, over\n"
"    every snapshot of the account, as restic does.  Only trees are read,\n"
"    never file contents.\n"
"\n"
"    --mode restore-size (the default) adds up, over the snapshots, what\n"
"    restoring each of them would create: files (every file name, hard\n"
"    links included, as find -type f counts them), the bytes of file\n"
"    content written (a group of hard-linked files is written once, as\n"
"    restore does), directories, and other entries (symlinks, devices,\n"
"    FIFOs, sockets).\n"
"\n"
"    --mode raw-data counts the distinct blobs the snapshots reference\n"
"    (file chunks and directory trees, each once however many files or\n"
"    snapshots share it), their plaintext bytes and their stored bytes\n"
"    (compressed and encrypted, as in the packs), and the ratios:\n"
"    compression = plaintext / stored, dedup = the plaintext of every\n"
"    chunk reference (hard links once) / the plaintext of the distinct\n"
"    data chunks.  Over every snapshot, blobs equals the blobs keyhold\n"
"    check counts once prune has removed what nothing uses.\n"
"\n"
"    The output is one \"Name: value\" line per figure, sizes in bytes\n"
"    followed by a human size.  With --json, stdout is one JSON object:\n"
"    {\"mode\", \"snapshots\", and for restore-size \"files\", \"bytes\",\n"
"    \"dirs\", \"others\"; for raw-data \"blobs\", \"data_blobs\",\n"
"    \"tree_blobs\", \"plain_bytes\", \"stored_bytes\", \"data_plain_bytes\" (the\n"
"    plaintext of the distinct data chunks), \"referenced_bytes\",\n"
"    \"missing_blobs\", \"compression_ratio\", \"dedup_ratio\"} (ratios are\n"
"    numbers, 0 when undefined).\n"
"\n"
"    stats holds the account's shared lock while it runs.\n"
"\n"
"OPTIONS\n"
"    --mode MODE\n"
"        restore-size (default) or raw-data.\n"
"    --json\n"
"        Machine-readable output (a global option).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 1 if a snapshot does not exist, a tree cannot be read,\n"
"    or (raw-data) referenced blobs are missing from the index (counted in\n"
"    missing_blobs; the figures are still printed); 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold stats latest\n"
"    keyhold stats --mode raw-data\n"
"    keyhold stats --json --mode raw-data | jq .dedup_ratio\n";

static double ratio(uint64_t a, uint64_t b) {
  return b ? (double)a / (double)b : 0.0;
}

static void line(const char *name, uint64_t bytes) {
  char h[CLI_BYTES_BUF];
  cli_fmt_bytes(h, sizeof h, bytes);
  printf("%-18s %llu (%s)\n", name, (unsigned long long)bytes, h);
}

int cmd_stats(int argc, char **argv) {
  static const struct option longopts[] = {
    {"mode", required_argument, NULL, 'm'},
    {NULL, 0, NULL, 0},
  };
  bool raw = false;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'm':
      if (!strcmp(optarg, "restore-size")) raw = false;
      else if (!strcmp(optarg, "raw-data")) raw = true;
      else {
        cli_msgf("stats: unknown mode '%s' (restore-size or raw-data)", optarg);
        return cli_usage("stats");
      }
      break;
    default: return cli_usage("stats");
    }
  }
  kh_vault *v = NULL;
  if (cli_open_vault(&v)) return CLI_EXIT_FAIL;
  kh_stats_result r;
  kh_err e = kh_stats(v, (const char *const *)(argv + optind), (size_t)(argc - optind), &r);
  kh_vault_free(v);
  if (e) return cli_fail(e, "stats");
  double comp = ratio(r.plain_bytes, r.stored_bytes);
  if (g_opts.json) {
    printf("{\"mode\":\"%s\",\"snapshots\":%llu", raw ? "raw-data" : "restore-size",
           (unsigned long long)r.snapshots);
    if (!raw)
      printf(",\"files\":%llu,\"bytes\":%llu,\"dirs\":%llu,\"others\":%llu}\n",
             (unsigned long long)r.files, (unsigned long long)r.bytes,
             (unsigned long long)r.dirs, (unsigned long long)r.others);
    else
      printf(",\"blobs\":%llu,\"data_blobs\":%llu,\"tree_blobs\":%llu,\"plain_bytes\":%llu,"
             "\"stored_bytes\":%llu,\"data_plain_bytes\":%llu,\"referenced_bytes\":%llu,\"missing_blobs\":%llu,"
             "\"compression_ratio\":%.4f,\"dedup_ratio\":%.4f}\n",
             (unsigned long long)r.blobs, (unsigned long long)r.data_blobs,
             (unsigned long long)r.tree_blobs, (unsigned long long)r.plain_bytes,
             (unsigned long long)r.stored_bytes, (unsigned long long)r.data_plain_bytes,
             (unsigned long long)r.referenced_bytes,
             (unsigned long long)r.missing_blobs, comp,
             ratio(r.referenced_bytes, r.data_plain_bytes));
  } else {
    printf("Stats in %s mode:\n", raw ? "raw-data" : "restore-size");
    printf("%-18s %llu\n", "Snapshots:", (unsigned long long)r.snapshots);
    if (!raw) {
      printf("%-18s %llu\n", "Files:", (unsigned long long)r.files);
      line("Total size:", r.bytes);
      printf("%-18s %llu\n", "Directories:", (unsigned long long)r.dirs);
      printf("%-18s %llu\n", "Other entries:", (unsigned long long)r.others);
    } else {
      printf("%-18s %llu (%llu data, %llu trees)\n", "Blobs:", (unsigned long long)r.blobs,
             (unsigned long long)r.data_blobs, (unsigned long long)r.tree_blobs);
      line("Plaintext size:", r.plain_bytes);
      line("Stored size:", r.stored_bytes);
      line("Referenced size:", r.referenced_bytes);
      printf("%-18s %.2fx\n", "Compression ratio:", comp);
      printf("%-18s %.2fx\n", "Dedup ratio:", ratio(r.referenced_bytes, r.data_plain_bytes));
      if (r.missing_blobs)
        printf("%-18s %llu\n", "Missing blobs:", (unsigned long long)r.missing_blobs);
    }
  }
  if (raw && r.missing_blobs) {
    cli_errorf("%llu referenced blob(s) are not in the index; run keyhold check",
               (unsigned long long)r.missing_blobs);
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}
