/* keyhold init: create a region (if new) and an account in it. */
#include "cli.h"

#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char cmd_init_help[] =
"NAME\n"
"    keyhold init - create a region (if new) and an account in it\n"
"\n"
"SYNOPSIS\n"
"    keyhold init [--region-id ID] [--kdf-memory MIB] [--kdf-ops N] [--new-account]\n"
"                 [--force-weak-passcode]\n"
"    keyhold --region URL init [--invite TOKEN] [--name NAME] [--region-id ID]\n"
"\n"
"DESCRIPTION\n"
"    Creates the region directory given by --region (or KEYHOLD_REGION) if it\n"
"    is missing or empty, then a new account in it whose master key is\n"
"    wrapped under the passcode with Argon2id.  On a terminal the passcode is\n"
"    asked twice.  The account id is printed; keep it if the region will hold\n"
"    more than one account (pass it, or a unique prefix, with --account).\n"
"\n"
"    A region that already has an account is refused unless --new-account\n"
"    is given: a second init in the same directory is more often a mistake\n"
"    than a wish for a second account.\n"
"\n"
"    On a terminal, init first says what losing the passcode means, then asks\n"
"    for it twice and refuses an obviously weak one (shorter than 8\n"
"    characters, one character repeated, or only digits and shorter than 12)\n"
"    unless --force-weak-passcode is given.  A passcode from a file, a\n"
"    command or the environment is taken as it is.\n"
"\n"
"    Prints \"created account ID in region REGION-ID at DIR\".  With --json:\n"
"    {\"account\": ID, \"region\": REGION-ID, \"path\": DIR}.\n"
"\n"
"    With a region server's URL (--region http(s)://HOST:PORT), init signs up\n"
"    for a new account there (with --invite when the server asks for one):\n"
"    this device makes its own key pairs, becomes the account's first device\n"
"    (every capability), and keeps its identity in KEYHOLD_DEVICE_DIR\n"
"    (server-INSTANCE/).  The account key is wrapped to this device's own key\n"
"    and, for standard protection, by the region's key service (logged); no\n"
"    passcode is asked or needed to open the account on this device.  Prints\n"
"    \"created account ID in region REGION-ID at URL\" and \"device ID\"; with\n"
"    --json {\"account\", \"region\", \"url\", \"device\"}.  A device dir that\n"
"    already has an identity on that server is refused.\n"
"\n"
"OPTIONS\n"
"    --region-id ID\n"
"        The region's id, [a-z0-9-]{1,63}; default \"local\".  Only used when\n"
"        the region is created.\n"
"    --kdf-memory MIB\n"
"        Argon2id memory in MiB, 8 to 4096 (default 64).\n"
"    --kdf-ops N\n"
"        Argon2id passes, 1 to 64 (default 3).\n"
"    --new-account\n"
"        Add another account to a region that already has one.\n"
"    --force-weak-passcode\n"
"        Accept a passcode typed on the terminal that looks weak.\n"
"    --invite TOKEN\n"
"        Server mode: the sign-up invitation from the operator (keyholdd admin\n"
"        invite).\n"
"    --name NAME\n"
"        Server mode: this device's name, 1-64 printable characters (default:\n"
"        the host name).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION         the region directory or URL, if --region is not given\n"
"    KEYHOLD_CA_FILE        CA certificates for an https:// region (or --ca-file)\n"
"    KEYHOLD_DEVICE_DIR     where this device keeps its identity\n"
"    KEYHOLD_PASSCODE_FILE  file whose first line is the new passcode\n"
"    KEYHOLD_PASSCODE_COMMAND, KEYHOLD_PASSCODE  other passcode sources, in\n"
"                           the order given in keyhold(1)\n"
"\n"
"EXIT STATUS\n"
"    0 on success, 1 on failure, 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold --region ~/vault init\n"
"    keyhold --region /srv/eu --passcode-file pass.txt init --region-id eu-west\n"
"    keyhold --region https://backup.example:8443 init --invite 4f2a... --name laptop\n";

/* Why a passcode typed at the prompt is obviously weak, or NULL. */
static const char *weak_reason(const kh_secret *p) {
  const unsigned char *s = p->bytes;
  size_t n = p->len;
  bool same = true, digits = true;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != s[0]) same = false;
    if (s[i] < '0' || s[i] > '9') digits = false;
  }
  if (n < 8) return "it is shorter than 8 characters";
  if (same) return "it is one character repeated";
  if (digits && n < 12) return "it is only digits and shorter than 12";
  return NULL;
}

static const char loss_notice[] =
"keyhold: this passcode unlocks the account on new devices and protects its\n"
"  key.  Nobody can reset it: lose it and a device that is not enrolled cannot\n"
"  open the backups.  Two ways back: the recovery key (keyhold protection\n"
"  recovery-key) and a recovery escrow with the region (keyhold escrow\n"
"  enable).  Write the passcode down somewhere safe.\n";

/* init against a region server: sign up, no passcode (docs/protocol.md §7.2) */
static int init_server(kh_init_opts *o, const char *url) {
  char account[KH_ACCOUNT_ID_HEX + 1] = "";
  kh_device_state *d = NULL;
  if (o->kdf_ops || o->kdf_mem_mib) {
    cli_msgf("init: --kdf-memory and --kdf-ops are for a region directory: no passcode wrap "
             "is stored on a region server");
    return cli_usage("init");
  }
  if (o->device_name && (!*o->device_name || strlen(o->device_name) > KH_REMOTE_NAME_MAX)) {
    cli_msgf("init: --name: 1 to %d printable characters", KH_REMOTE_NAME_MAX);
    return cli_usage("init");
  }
  o->region_path = url;
  o->ca_file = g_opts.ca_file;
  kh_err e = kh_vault_init(o, account);
  if (e) return cli_fail(e, "init");
  /* the identity init saved names the device and the region */
  if ((e = kh_device_state_find(NULL, url, &d))) return cli_fail(e, "init");
  if (g_opts.json) {
    fputs("{\"account\":", stdout);
    cli_json_cstr(stdout, account);
    fputs(",\"region\":", stdout);
    cli_json_cstr(stdout, d->region);
    fputs(",\"url\":", stdout);
    cli_json_cstr(stdout, d->url);
    fputs(",\"device\":", stdout);
    cli_json_cstr(stdout, d->device);
    fputs("}\n", stdout);
  } else {
    printf("created account %s in region %s at %s\ndevice %s\n", account, d->region, d->url,
           d->device);
  }
  kh_device_state_free(d);
  return CLI_EXIT_OK;
}

int cmd_init(int argc, char **argv) {
  static const struct option longopts[] = {
    {"region-id", required_argument, NULL, 'r'},
    {"kdf-memory", required_argument, NULL, 'm'},
    {"kdf-ops", required_argument, NULL, 'o'},
    {"new-account", no_argument, NULL, 'n'},
    {"force-weak-passcode", no_argument, NULL, 'w'},
    {"invite", required_argument, NULL, 'i'},
    {"name", required_argument, NULL, 'N'},
    {NULL, 0, NULL, 0},
  };
  kh_init_opts o;
  memset(&o, 0, sizeof o);
  bool new_account = false, force_weak = false;
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
    case 'n': new_account = true; break;
    case 'w': force_weak = true; break;
    case 'i': o.invite = optarg; break;
    case 'N': o.device_name = optarg; break;
    default: return cli_usage("init");
    }
  }
  if (optind != argc) {
    cli_msgf("init: unexpected argument '%s'", argv[optind]);
    return cli_usage("init");
  }
  const char *region;
  if (cli_region_path(&region)) return CLI_EXIT_FAIL;
  if (cli_is_url(region)) return init_server(&o, region);
  if (o.invite || o.device_name) {
    cli_msgf("init: --invite and --name are for a region server (--region URL)");
    return cli_usage("init");
  }
  if (!new_account) {
    char (*ids)[KH_ACCOUNT_ID_HEX + 1] = NULL;
    size_t n = 0;
    /* a directory that is no region yet simply has no account */
    if (kh_region_accounts(region, &ids, &n) == KH_OK && n > 0) {
      cli_msgf("init: the region already has %zu account%s (%s%s): use it with --account, "
               "or pass --new-account to add another", n, n == 1 ? "" : "s", ids[0],
               n > 1 ? ", ..." : "");
      free(ids);
      return CLI_EXIT_FAIL;
    }
    free(ids);
  }
  kh_secret *pass = NULL;
  bool tty = isatty(STDIN_FILENO) &&
             cli_passcode_will_prompt(g_opts.passcode_file, "KEYHOLD_PASSCODE_FILE");
  if (tty) fputs(loss_notice, stderr);
  if (cli_read_passcode(g_opts.passcode_file, "KEYHOLD_PASSCODE_FILE", "New passcode", true,
                        &pass))
    return CLI_EXIT_FAIL;
  const char *weak = cli_passcode_was_prompted() ? weak_reason(pass) : NULL;
  if (weak && !force_weak) {
    cli_msgf("init: passcode refused: %s; choose a longer one (or pass --force-weak-passcode)",
             weak);
    kh_secret_free(pass);
    return CLI_EXIT_FAIL;
  }
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
