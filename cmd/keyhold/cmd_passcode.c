/* keyhold passcode change: re-wrap the account key under a new passcode. */
#include "cli.h"
#include "keyhold/keysvc.h"
#include "keyhold/remote.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

const char cmd_passcode_help[] =
"NAME\n"
"    keyhold passcode - change the account passcode\n"
"\n"
"SYNOPSIS\n"
"    keyhold passcode change [--new-passcode-file FILE] [--kdf-memory MIB]\n"
"                            [--kdf-ops N]\n"
"\n"
"DESCRIPTION\n"
"    Opens the account with the current passcode (read as usual: from\n"
"    --passcode-file, KEYHOLD_PASSCODE_FILE or a terminal prompt), then wraps\n"
"    the account's master key under the new passcode.  The old wrap is\n"
"    removed only after the new one is safely stored, so an interruption\n"
"    never leaves the account without a working passcode.  Data is not\n"
"    re-encrypted.\n"
"\n"
"    The new passcode comes from --new-passcode-file, else\n"
"    KEYHOLD_NEW_PASSCODE_FILE, else a terminal prompt (asked twice).\n"
"    Prints \"passcode changed\" (with --json: {\"passcode_changed\": true,\n"
"    \"account\": ID}).  No passcode is ever printed.\n"
"\n"
"    On a region server (--region URL) the device opens the account with\n"
"    its own key, and the passcode is the account's escrow passcode: the\n"
"    server never stores anything a passcode could be guessed against\n"
"    offline.  passcode change then gives the key service a new escrow\n"
"    record under the new passcode (as keyhold escrow enable does; an\n"
"    admin device only), replacing the old one and its attempt count.\n"
"\n"
"OPTIONS\n"
"    --new-passcode-file FILE\n"
"        Read the new passcode from the first line of FILE.\n"
"    --kdf-memory MIB, --kdf-ops N\n"
"        Argon2id cost for the new wrap (defaults as for keyhold init).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_PASSCODE_FILE      the current passcode\n"
"    KEYHOLD_NEW_PASSCODE_FILE  the new passcode\n"
"    KEYHOLD_REGION, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 1 on failure (\"keyhold: open account: wrong passcode\" if\n"
"    the current passcode is wrong); 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold passcode change\n"
"    keyhold --passcode-file old.txt passcode change --new-passcode-file new.txt\n";

int cmd_passcode(int argc, char **argv) {
  static const struct option longopts[] = {
    {"new-passcode-file", required_argument, NULL, 'f'},
    {"kdf-memory", required_argument, NULL, 'm'},
    {"kdf-ops", required_argument, NULL, 'o'},
    {NULL, 0, NULL, 0},
  };
  const char *newfile = NULL;
  uint32_t mem = 0, ops = 0;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'f':
      if (!*optarg) { cli_msgf("passcode: --new-passcode-file: empty name"); return cli_usage("passcode"); }
      newfile = optarg;
      break;
    case 'm':
      if (!cli_parse_u32(optarg, 1, 1u << 22, &mem)) {
        cli_msgf("passcode: --kdf-memory: not a number of MiB: %s", optarg);
        return cli_usage("passcode");
      }
      break;
    case 'o':
      if (!cli_parse_u32(optarg, 1, 1u << 20, &ops)) {
        cli_msgf("passcode: --kdf-ops: not a count: %s", optarg);
        return cli_usage("passcode");
      }
      break;
    default: return cli_usage("passcode");
    }
  }
  if (argc - optind != 1 || strcmp(argv[optind], "change") != 0) {
    if (argc - optind < 1) cli_msgf("passcode: missing subcommand 'change'");
    else cli_msgf("passcode: unknown subcommand '%s'", argv[optind]);
    return cli_usage("passcode");
  }
  kh_vault *v = NULL;
  kh_secret *np = NULL;
  int rc = CLI_EXIT_FAIL;
  /* A new passcode from a file is read first, so that a missing file fails
   * before the (slow) unlock; a prompted one comes after the current one. */
  const char *envnew = getenv("KEYHOLD_NEW_PASSCODE_FILE");
  bool from_file = newfile || (envnew && *envnew);
  if (from_file &&
      cli_read_passcode(newfile, "KEYHOLD_NEW_PASSCODE_FILE", "New passcode", true, &np))
    goto out;
  if (cli_open_vault(&v)) goto out;
  if (!from_file &&
      cli_read_passcode(NULL, "KEYHOLD_NEW_PASSCODE_FILE", "New passcode", true, &np))
    goto out;
  /* server mode: the passcode only guards the key service's escrow (a
   * server never stores a passcode wrap), so changing it re-enables the
   * escrow under the new one */
  bool server = kh_vault_remote(v) != NULL;
  kh_err e = server ? kh_keysvc_escrow_enable(v, np, 0, 0)
                    : kh_vault_passcode_change(v, np, ops, mem);
  if (e) { rc = cli_fail(e, "change passcode"); goto out; }
  if (g_opts.json) {
    fputs("{\"passcode_changed\":true,\"account\":", stdout);
    cli_json_cstr(stdout, kh_vault_account_id(v));
    fputs("}\n", stdout);
  } else {
    puts(server ? "passcode changed (the escrow record now opens with it)" : "passcode changed");
  }
  rc = CLI_EXIT_OK;
out:
  kh_secret_free(np);
  kh_vault_free(v);
  return rc;
}
