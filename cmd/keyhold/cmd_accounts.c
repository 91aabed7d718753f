/* keyhold accounts: list the accounts of a region (no passcode needed). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

const char cmd_accounts_help[] =
"NAME\n"
"    keyhold accounts - list the accounts of a region\n"
"\n"
"SYNOPSIS\n"
"    keyhold accounts [--json]\n"
"\n"
"DESCRIPTION\n"
"    Lists the ids of the accounts in the region given by --region (or\n"
"    KEYHOLD_REGION), one per line, sorted.  No passcode is needed: an\n"
"    account's creation time and protection mode are sealed under its key,\n"
"    so only the ids are shown.  --account (and KEYHOLD_ACCOUNT) accept any\n"
"    unique prefix of an id.\n"
"\n"
"    With --json: {\"accounts\": [{\"id\": ID}, ...]}.\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION  the region directory, if --region is not given\n"
"\n"
"EXIT STATUS\n"
"    0 on success (also when the region has no account), 1 if the region\n"
"    cannot be read, 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold --region ~/vault accounts\n"
"    keyhold --region ~/vault --account 3f2a snapshots\n";

int cmd_accounts(int argc, char **argv) {
  (void)argv;
  if (argc != 1) {
    cli_msgf("accounts: unexpected argument '%s'", argv[1]);
    return cli_usage("accounts");
  }
  const char *region;
  if (cli_region_path(&region)) return CLI_EXIT_FAIL;
  if (cli_is_url(region)) {
    /* a server's accounts are its operator's business; a device knows its own */
    cli_msgf("accounts: a region server's accounts are listed by its operator (keyholdd admin "
             "accounts); this device's account is shown by keyhold whoami");
    return CLI_EXIT_FAIL;
  }
  char (*ids)[KH_ACCOUNT_ID_HEX + 1] = NULL;
  size_t n = 0;
  kh_err e = kh_region_accounts(region, &ids, &n);
  if (e) return cli_fail(e, "accounts");
  if (g_opts.json) {
    fputs("{\"accounts\":[", stdout);
    for (size_t i = 0; i < n; i++) {
      fputs(i ? ",{\"id\":" : "{\"id\":", stdout);
      cli_json_cstr(stdout, ids[i]);
      fputc('}', stdout);
    }
    fputs("]}\n", stdout);
  } else {
    for (size_t i = 0; i < n; i++) printf("%s\n", ids[i]);
  }
  free(ids);
  return CLI_EXIT_OK;
}
