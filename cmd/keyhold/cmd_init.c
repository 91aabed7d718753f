/* keyhold init: create a region (if new) and an account in it. */
#include "cli.h"

#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

const char cmd_init_help[] =
"NAME\n"
"    keyhold init - create a region (if new) and an account in it\n"
"\n"
"SYNOPSIS\n"
"    keyhold init [--region-id ID] [--kdf-memory MIB] [--kdf-ops N]\n"
"\n"
"DESCRIPTION\n"
"    Creates the region directory given by --region (or KEYHOLD_REGION) if it\n"
"    is missing or empty, then a new account in it whose master key is\n"
"    wrapped under the passcode with Argon2id.  On a terminal the passcode is\n"
"    asked twice.  The account id is printed; keep it if the region will hold\n"
"    more than one account (pass it with --account).\n"
"\n"
"    Prints \"created account ID in region REGION-ID at DIR\".  With --json:\n"
"    {\"account\": ID, \"region\": REGION-ID, \"path\": DIR}.\n"
"\n"
"OPTIONS\n"
"    --region-id ID\n"
"        The region's id, [a-z0-9-]{1,63}; default \"local\".  Only used when\n"
"        the region is created.\n"
"    --kdf-memory MIB\n"
"        Argon2id memory in MiB, 8 to 4096 (default 64).\n"
"    --kdf-ops N\n"
"        Argon2id passes, 1 to 64 (default 3).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION         the region directory, if --region is not given\n"
"    KEYHOLD_PASSCODE_FILE  file whose first line is the new passcode\n"
"\n"
"EXIT STATUS\n"
"    0 on success, 1 on failure, 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold --region ~/vault init\n"
"    keyhold --region /srv/eu --passcode-file pass.txt init --region-id eu-west\n";

/* true if path is a directory with at least one entry */

int cmd_init(int argc, char **argv) {
  static const struct option longopts[] = {
    {"region-id", required_argument, NULL, 'r'},
    {"kdf-memory", required_argument, NULL, 'm'},
    {"kdf-ops", required_argument, NULL, 'o'},
    {NULL, 0, NULL, 0},
  };
  kh_init_opts o;
  memset(&o, 0, sizeof o);
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'r': o.region_id = optarg; break;
    case 'm':
      if (!cli_parse_u32(optarg, 8, 4096, &o.kdf_mem_mib)) {
        cli_msgf("init: --kdf-memory: not a number of MiB from 8 to 4096: %s", optarg);
        return cli_usage("init");
      }
      break;
    case 'o':
      if (!cli_parse_u32(optarg, 1, 64, &o.kdf_ops)) {
        cli_msgf("init: --kdf-ops: not a count from 1 to 64: %s", optarg);
        return cli_usage("init");
      }
      break;
    default: return cli_usage("init");
    }
  }
  if (optind != argc) {
    cli_msgf("init: unexpected argument '%s'", argv[optind]);
    return cli_usage("init");
  }
  const char *region;
  if (cli_region_path(&region)) return CLI_EXIT_FAIL;
  kh_secret *pass = NULL;
  if (cli_read_passcode(g_opts.passcode_file, "KEYHOLD_PASSCODE_FILE", "New passcode", true,
                        &pass))
    return CLI_EXIT_FAIL;
  o.region_path = region;
  o.passcode = pass;
  char account[KH_ACCOUNT_ID_HEX + 1] = "";
  char rid[128];
  kh_err e = kh_vault_init(&o, account);
  if (e) {
    kh_secret_free(pass);
    /* The passcode was checked above, so a bad argument can only be one of
     * the options (region id, KDF range, a region id the region contradicts). */
    if (e == KH_ERR_INVAL) {
      cli_msgf("init: %s", kh_errdetail());
      return cli_usage("init");
    }
    return cli_fail(e, "init");
  }
  char have[64];
  snprintf(rid, sizeof rid, "%s", kh_region_id(region, have) == KH_OK ? have : "local");
  kh_secret_free(pass);

  char abs[PATH_MAX];
  const char *path = realpath(region, abs) ? abs : region;
  if (g_opts.json) {
    fputs("{\"account\":", stdout);
    cli_json_cstr(stdout, account);
    fputs(",\"region\":", stdout);
    cli_json_cstr(stdout, rid);
    fputs(",\"path\":", stdout);
    cli_json_cstr(stdout, path);
    fputs("}\n", stdout);
  } else {
    printf("created account %s in region %s at ", account, rid);
    cli_print_path(stdout, path, strlen(path));
    putchar('\n');
  }
  return CLI_EXIT_OK;
}
