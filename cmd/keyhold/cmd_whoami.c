/* keyhold whoami: the account, region, device and protection in use. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cmd_whoami(int argc, char **argv);

const char cmd_whoami_help[] =
"NAME\n"
"    keyhold whoami - show the account, device and region in use\n"
"\n"
"SYNOPSIS\n"
"    keyhold whoami [--json]\n"
"\n"
"DESCRIPTION\n"
"    Opens the account (passcode as usual) and prints its id, its home\n"
"    region's id, this device's id and the account's protection mode:\n"
"    \"standard\" (the region's key service also holds a wrap of the account\n"
"    key; every use of it is logged, see keyhold watch) or \"e2e\" (end-to-end:\n"
"    only the account's devices and its recovery key can unlock it).\n"
"\n"
"    The protection mode comes from a record sealed with the account key, so\n"
"    the provider can neither forge it nor silently remove it; a device that\n"
"    once saw \"e2e\" refuses a later \"standard\" (a rollback).\n"
"\n"
"    Text output is one \"key value\" line each; with --json one object with\n"
"    the keys \"account\", \"region\", \"device\" and \"protection\".\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT, KEYHOLD_DEVICE_DIR\n"
"\n"
"EXIT STATUS\n"
"    0 on success, 1 on failure, 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold whoami\n"
"    keyhold whoami --json\n";

int cmd_whoami(int argc, char **argv)
{
  if (argc != 1) {
    cli_msgf("whoami: unexpected argument '%s'", argv[1]);
    return cli_usage("whoami");
  }
  kh_vault *v = NULL;
  if (cli_open_vault(&v))
    return CLI_EXIT_FAIL;
  kh_protection p;
  kh_err e = kh_vault_protection(v, &p);
  if (e) {
    kh_vault_free(v);
    return cli_fail(e, "whoami: protection");
  }
  const char *ps = p == KH_PROTECTION_E2E ? "e2e" : "standard";
  if (g_opts.json) {
    fputs("{\"account\":", stdout);
    cli_json_cstr(stdout, kh_vault_account_id(v));
    fputs(",\"region\":", stdout);
    cli_json_cstr(stdout, kh_vault_region_id(v));
    fputs(",\"device\":", stdout);
    cli_json_cstr(stdout, kh_vault_device_id(v));
    fputs(",\"protection\":", stdout);
    cli_json_cstr(stdout, ps);
    fputs("}\n", stdout);
  } else {
    printf("account %s\nregion %s\ndevice %s\nprotection %s\n", kh_vault_account_id(v),
           kh_vault_region_id(v), kh_vault_device_id(v), ps);
  }
  kh_vault_free(v);
  return CLI_EXIT_OK;
}
