/* keyhold check: verify the vault's structure and, optionally, every byte. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

const char cmd_check_help[] =
"NAME\n"
"    keyhold check - verify the vault's structure and (optionally) every byte\n"
"\n"
"SYNOPSIS\n"
"    keyhold check [--read-data] [--json]\n"
"\n"
"DESCRIPTION\n"
"    Verifies every snapshot (decryption and device signature), every tree\n"
"    they reference, and that every blob they need is present in the index\n"
"    and in a pack of the right size.  With --read-data it also downloads and\n"
"    authenticates every pack, so any change the provider made to stored\n"
"    bytes is found.\n"
"\n"
"    Each finding is printed as it is found, as\n"
"        error: snapshot 1a2b3c4d: /path: message\n"
"        note: message\n"
"    (the snapshot and path parts only when known), followed by a summary.\n"
"    Errors mean damage: data that is missing or fails authentication.\n"
"    Notes are harmless (e.g. unused data that prune would remove).\n"
"\n"
"    Missing or truncated packs and damaged blobs are recorded in the\n"
"    account, so that no later backup reuses them; keyhold repair brings\n"
"    such an account back to one where check passes.\n"
"\n"
"    With --json, stdout is one JSON object: {\"findings\": [{\"level\":\n"
"    \"error\"|\"note\", \"snapshot\": full id or null, \"path\": string or\n"
"    null, \"message\": string}...], \"errors\", \"notes\", \"snapshots\",\n"
"    \"trees\", \"blobs\", \"packs\", \"packs_read\", \"read_data\" (boolean)}.\n"
"\n"
"OPTIONS\n"
"    --read-data\n"
"        Read and authenticate all stored data, not only the structure.\n"
"    --json\n"
"        Machine-readable output (a global option).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 if no errors were found (notes are fine); 1 if damage was found or\n"
"    the check could not run; 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold check\n"
"    keyhold check --read-data --json | jq '.errors'\n";

struct check_ctx {
  unsigned long long n; /* findings printed */
};

static void check_finding(kh_check_level lvl, const char *snapshot, const char *path,
                          const char *msg, void *vctx) {
  struct check_ctx *c = vctx;
  const char *level = lvl == KH_CHECK_ERROR ? "error" : "note";
  if (!msg) msg = "";
  flockfile(stdout); /* findings may come from several library threads */
  if (g_opts.json) {
    printf("%s{\"level\":\"%s\",\"snapshot\":", c->n ? "," : "", level);
    if (snapshot && *snapshot) cli_json_cstr(stdout, snapshot);
    else fputs("null", stdout);
    fputs(",\"path\":", stdout);
    if (path && *path) cli_json_cstr(stdout, path);
    else fputs("null", stdout);
    fputs(",\"message\":", stdout);
    cli_json_cstr(stdout, msg);
    fputs("}", stdout);
  } else {
    printf("%s: ", level);
    if (snapshot && *snapshot) printf("snapshot %.8s: ", snapshot);
    if (path && *path) {
      cli_print_path(stdout, path, strlen(path));
      fputs(": ", stdout);
    }
    cli_print_path(stdout, msg, strlen(msg));
    putchar('\n');
    fflush(stdout);
  }
  c->n++;
  funlockfile(stdout);
}

int cmd_check(int argc, char **argv) {
  static const struct option longopts[] = {
    {"read-data", no_argument, NULL, 'r'},
    {NULL, 0, NULL, 0},
  };
  bool read_data = false;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'r': read_data = true; break;
    default: return cli_usage("check");
    }
  }
  if (optind != argc) {
    cli_msgf("check: unexpected argument '%s'", argv[optind]);
    return cli_usage("check");
  }
  kh_vault *v = NULL;
  if (cli_open_vault(&v)) return CLI_EXIT_FAIL;
  struct check_ctx ctx = {0};
  kh_check_result r;
  memset(&r, 0, sizeof r);
  if (g_opts.json) fputs("{\"findings\":[", stdout);
  kh_err e = kh_check(v, read_data, check_finding, &ctx, &r);
  int rc;
  if (e && e != KH_ERR_CORRUPT) {
    /* The check itself could not run to the end: still close the JSON. */
    if (g_opts.json) fputs("],\"complete\":false}\n", stdout);
    rc = cli_fail(e, "check");
    kh_vault_free(v);
    return rc;
  }
  if (g_opts.json) {
    printf("],\"errors\":%llu,\"notes\":%llu,\"snapshots\":%llu,\"trees\":%llu,\"blobs\":%llu,"
           "\"packs\":%llu,\"packs_read\":%llu,\"read_data\":%s,\"complete\":true}\n",
           (unsigned long long)r.errors, (unsigned long long)r.notes,
           (unsigned long long)r.snapshots, (unsigned long long)r.trees,
           (unsigned long long)r.blobs, (unsigned long long)r.packs,
           (unsigned long long)r.packs_read, read_data ? "true" : "false");
  } else {
    printf("checked %llu snapshot%s, %llu trees, %llu blobs, %llu packs",
           (unsigned long long)r.snapshots, r.snapshots == 1 ? "" : "s",
           (unsigned long long)r.trees, (unsigned long long)r.blobs,
           (unsigned long long)r.packs);
    if (read_data) printf(" (%llu read)", (unsigned long long)r.packs_read);
    printf(": %llu error%s, %llu note%s\n", (unsigned long long)r.errors,
           r.errors == 1 ? "" : "s", (unsigned long long)r.notes, r.notes == 1 ? "" : "s");
    if (r.errors || e) printf("damage found: see the errors above\n");
    else printf("no errors were found\n");
  }
  rc = (r.errors || e == KH_ERR_CORRUPT) ? CLI_EXIT_FAIL : CLI_EXIT_OK;
  kh_vault_free(v);
  return rc;
}
