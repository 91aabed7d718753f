/* keyhold admin: operator tasks on the embedded region's key service. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cmd_admin(int argc, char **argv);

const char cmd_admin_help[] =
"NAME\n"
"    keyhold admin - operator tasks on a region's key service\n"
"\n"
"SYNOPSIS\n"
"    keyhold admin unwrap --account ID --reason TEXT [--requester NAME]\n"
"                         [--key-out FILE]\n"
"    keyhold admin rotate [--reason TEXT]\n"
"    keyhold admin escrow-status --account ID\n"
"    keyhold admin witnesses --require N [DIR...]\n"
"\n"
"DESCRIPTION\n"
"    These commands act as the region's operator: they need the key\n"
"    service's credentials (the operator secret, or the PKCS#11 token), not\n"
"    any account passcode.  Every key operation is first written to the\n"
"    region's transparency log; the account's devices see it with\n"
"    keyhold watch.\n"
"\n"
"    unwrap\n"
"        Release the account key of a standard-protection account (account\n"
"        recovery, operator processing, a legal request: say which in\n"
"        --reason).  The release is appended to the log and made durable\n"
"        under a signed checkpoint BEFORE the key is handed out; if the log\n"
"        cannot be written, nothing is released.  Prints the entry's log\n"
"        index, the checkpoint (size, root) and the inclusion proof of the\n"
"        entry (check it with keyhold log inclusion).  The key itself is\n"
"        written only with --key-out (hex, mode 0600).  Fails on an\n"
"        end-to-end account: the key service holds nothing for it.\n"
"        With --json: {\"account\", \"index\", \"size\", \"root\", \"leaf_hash\",\n"
"        \"proof\": [hex...], \"checkpoint\", \"cosignatures\", \"key_file\"}.\n"
"    rotate\n"
"        New root-key version; every key-service wrap is rewrapped under it\n"
"        (logged: one \"rotate\", one \"rewrap\" per account).\n"
"    escrow-status\n"
"        Whether the account has an escrow record and its attempt counters.\n"
"    witnesses\n"
"        Require N cosignatures from the local witness state directories\n"
"        DIR... (created with keyhold witness init) before any release.\n"
"\n"
"OPTIONS\n"
"    --account ID     the account, or a unique prefix of its id (a global\n"
"                     option; also KEYHOLD_ACCOUNT)\n"
"    --reason TEXT    why (printable text, at most 512 bytes), logged\n"
"    --requester NAME who asks (default \"operator\"), logged\n"
"    --key-out FILE   write the released key there (hex, mode 0600)\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION                 the region directory\n"
"    KEYHOLD_OPERATOR_SECRET_FILE   the operator secret (default\n"
"        $KEYHOLD_OPERATOR_DIR/<region>-<instance>.secret or\n"
"        ~/.config/keyhold/operator/<region>-<instance>.secret, where\n"
"        <instance> is the region's instance id; <region>.secret for a\n"
"        region made before instance ids)\n"
"    KEYHOLD_PKCS11_MODULE, KEYHOLD_PKCS11_TOKEN, KEYHOLD_PKCS11_PIN_FILE\n"
"        the token of a PKCS#11 region\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 1 on failure (e2e account, log not writable, wrong\n"
"    credentials...); 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold admin unwrap --account 0123... --reason \"legal request #12\"\n"
"    keyhold --json admin unwrap --account 0123... --reason recovery --key-out k.hex\n";

static void hex(FILE *f, const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%02x", p[i]);
}

static int open_kms(kh_kms **k)
{
  const char *region;
  if (cli_region_path(&region))
    return CLI_EXIT_FAIL;
  kh_err e = kh_kms_open(region, k);
  return e ? cli_fail(e, "admin: open the key service") : CLI_EXIT_OK;
}

/* --account may be a unique prefix, resolved against the region's accounts
 * as for every other verb (cli_pick_account reports a wrong one). */
static bool admin_account(char out[KH_ACCOUNT_ID_HEX + 1])
{
  const char *region;
  return cli_region_path(&region) == KH_OK && cli_pick_account(region, out);
}

static kh_err write_key(const char *path, const uint8_t *key)
{
  char text[66];
  static const char d[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    text[2 * i] = d[key[i] >> 4];
    text[2 * i + 1] = d[key[i] & 15];
  }
  text[64] = '\n';
  kh_err e = kh_file_write_atomic(path, text, 65, 0600);
  sodium_memzero(text, sizeof text);
  return e;
}

static int admin_unwrap(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"reason", required_argument, NULL, 'r'},
    {"requester", required_argument, NULL, 'q'},
    {"key-out", required_argument, NULL, 'k'},
    {NULL, 0, NULL, 0},
  };
  const char *reason = NULL, *requester = "operator", *keyout = NULL;
  int c;
  optind = 0;
  while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'r': reason = optarg; break;
    case 'q': requester = optarg; break;
    case 'k': keyout = optarg; break;
    default: return cli_usage("admin");
    }
  }
  if (optind != argc - 1 || !reason || !g_opts.account) {
    cli_msgf("admin unwrap: --account and --reason are required");
    return cli_usage("admin");
  }
  char account[KH_ACCOUNT_ID_HEX + 1];
  if (!admin_account(account))
    return 1;
  kh_kms *k = NULL;
  kh_kms_release r;
  memset(&r, 0, sizeof r);
  int rc = open_kms(&k);
  if (rc)
    return rc;
  kh_kms_request rq = {requester, reason, NULL, NULL, NULL};
  kh_err e = kh_kms_unwrap(k, account, &rq, &r);
  if (e) {
    rc = cli_fail(e, "admin unwrap");
    goto out;
  }
  if (keyout && (e = write_key(keyout, r.key))) {
    cli_errorf("admin unwrap: cannot write %s: %s (the release is logged at index %llu)",
               keyout, kh_errdetail(), (unsigned long long)r.index);
    rc = CLI_EXIT_FAIL;
    goto out;
  }
  if (g_opts.json) {
    fputs("{\"account\":", stdout);
    cli_json_cstr(stdout, account);
    printf(",\"index\":%llu,\"size\":%llu,\"root\":\"", (unsigned long long)r.index,
           (unsigned long long)r.size);
    hex(stdout, r.root, 32);
    fputs("\",\"leaf_hash\":\"", stdout);
    hex(stdout, r.leaf, 32);
    fputs("\",\"proof\":[", stdout);
    for (size_t i = 0; i < r.plen; i++) {
      fputs(i ? ",\"" : "\"", stdout);
      hex(stdout, r.proof[i], 32);
      fputc('"', stdout);
    }
    fputs("],\"checkpoint\":", stdout);
    cli_json_str(stdout, r.checkpoint, r.checkpoint_len);
    printf(",\"cosignatures\":%u,\"key_file\":", r.cosignatures);
    cli_json_cstr(stdout, keyout);
    fputs("}\n", stdout);
  } else {
    printf("released the key of account %s\n", account);
    printf("log index %llu\n", (unsigned long long)r.index);
    printf("checkpoint size %llu\ncheckpoint root ", (unsigned long long)r.size);
    hex(stdout, r.root, 32);
    fputs("\nleaf hash ", stdout);
    hex(stdout, r.leaf, 32);
    fputs("\ninclusion proof ", stdout);
    for (size_t i = 0; i < r.plen; i++) {
      if (i)
        fputc(',', stdout);
      hex(stdout, r.proof[i], 32);
    }
    fputc('\n', stdout);
    if (r.cosignatures)
      printf("witness cosignatures %u\n", r.cosignatures);
    if (keyout)
      printf("key written to %s\n", keyout);
  }
  rc = CLI_EXIT_OK;
out:
  kh_kms_release_clear(&r);
  kh_kms_free(k);
  return rc;
}

static int admin_rotate(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"reason", required_argument, NULL, 'r'},
    {NULL, 0, NULL, 0},
  };
  const char *reason = "scheduled root-key rotation";
  int c;
  optind = 0;
  while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
    if (c != 'r')
      return cli_usage("admin");
    reason = optarg;
  }
  if (optind != argc - 1)
    return cli_usage("admin");
  kh_kms *k = NULL;
  int rc = open_kms(&k);
  if (rc)
    return rc;
  kh_kms_request rq = {"operator", reason, NULL, NULL, NULL};
  size_t n = 0;
  kh_err e = kh_kms_rotate(k, &rq, &n);
  if (e) {
    rc = cli_fail(e, "admin rotate");
  } else {
    if (g_opts.json) {
      fputs("{\"root_key\":", stdout);
      cli_json_cstr(stdout, kh_kms_rootkey_id(k));
      printf(",\"rewrapped\":%zu}\n", n);
    } else {
      printf("root key is now %s; %zu account wraps rewrapped\n", kh_kms_rootkey_id(k), n);
    }
  }
  kh_kms_free(k);
  return rc;
}

static int admin_escrow_status(int argc, char **argv)
{
  if (argc != 2 || !g_opts.account) {
    cli_msgf("admin escrow-status: --account is required");
    return cli_usage("admin");
  }
  char account[KH_ACCOUNT_ID_HEX + 1];
  if (!admin_account(account))
    return 1;
  kh_kms *k = NULL;
  int rc = open_kms(&k);
  if (rc)
    return rc;
  kh_kms_escrow_info in;
  kh_err e = kh_kms_escrow_status(k, account, &in);
  if (e) {
    rc = cli_fail(e, "admin escrow-status");
  } else if (g_opts.json) {
    printf("{\"present\":%s,\"destroyed\":%s,\"failed\":%u,\"attempts\":%llu}\n",
           in.present ? "true" : "false", in.destroyed ? "true" : "false", in.failed,
           (unsigned long long)in.attempts);
  } else {
    printf("escrow %s\nwrong attempts in a row %u of %d\nattempts ever %llu\n",
           in.destroyed ? "destroyed" : in.present ? "present" : "none", in.failed,
           KH_KMS_ESCROW_LIMIT, (unsigned long long)in.attempts);
  }
  kh_kms_free(k);
  return rc;
}

static int admin_witnesses(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"require", required_argument, NULL, 'n'},
    {NULL, 0, NULL, 0},
  };
  uint32_t n = 0;
  bool have = false;
  int c;
  optind = 0;
  while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
    if (c != 'n' || !cli_parse_u32(optarg, 0, 16, &n))
      return cli_usage("admin");
    have = true;
  }
  if (!have)
    return cli_usage("admin");
  kh_kms *k = NULL;
  int rc = open_kms(&k);
  if (rc)
    return rc;
  const char *const *dirs = (const char *const *)argv + 1 + optind;
  size_t nd = (size_t)(argc - 1 - optind);
  kh_err e = kh_kms_set_witnesses(k, n, dirs, nd);
  if (e)
    rc = cli_fail(e, "admin witnesses");
  else
    printf("releases now require %u of %zu witness cosignatures\n", n, nd);
  kh_kms_free(k);
  return rc;
}

int cmd_admin(int argc, char **argv)
{
  if (argc < 2) {
    cli_msgf("admin: which subcommand?");
    return cli_usage("admin");
  }
  if (!strcmp(argv[1], "unwrap"))
    return admin_unwrap(argc, argv);
  if (!strcmp(argv[1], "rotate"))
    return admin_rotate(argc, argv);
  if (!strcmp(argv[1], "escrow-status"))
    return admin_escrow_status(argc, argv);
  if (!strcmp(argv[1], "witnesses"))
    return admin_witnesses(argc, argv);
  cli_msgf("admin: unknown subcommand '%s'", argv[1]);
  return cli_usage("admin");
}
