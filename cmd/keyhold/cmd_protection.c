/* keyhold protection: show or change the account's protection mode, and
 * unlock an end-to-end account with its recovery key. */
#include "cli.h"
#include "keyhold/keysvc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cmd_protection(int argc, char **argv);

const char cmd_protection_help[] =
"NAME\n"
"    keyhold protection - show or change the account's protection mode\n"
"\n"
"SYNOPSIS\n"
"    keyhold protection [show]\n"
"    keyhold protection e2e [--recovery-key-file FILE]\n"
"    keyhold protection recover [--recovery-key-file FILE]\n"
"\n"
"DESCRIPTION\n"
"    standard (the default): the region's key service also holds a wrap of\n"
"    the account key, so the operator can help recover the account; every\n"
"    such use is written to the region's log first (see keyhold watch).\n"
"\n"
"    e2e (end-to-end): only the account's passcode, its devices and its\n"
"    recovery key can unlock it.  Switching:\n"
"      1. creates a recovery key (32 random bytes) and stores a wrap of the\n"
"         account key under it;\n"
"      2. shows the recovery key ONCE, as 13 groups of 4 base32 characters\n"
"         (or writes it to --recovery-key-file, mode 0600);\n"
"      3. asks the key service to destroy its wrap and any escrow record;\n"
"         the destruction is logged, and the key service refuses any\n"
"         later release for the account;\n"
"      4. records the new mode in the account's sealed protection record.\n"
"    There is no way back to standard in this version.\n""    On a region server (--region URL) step 3 is a request the device signs\n"
"    over the exact log entry (docs/protocol.md 10.3).\n"
"\n"
"    recover: sets a new passcode (from --passcode-file, KEYHOLD_PASSCODE_FILE\n"
"    or a prompt) with the recovery key (from --recovery-key-file,\n"
"    KEYHOLD_RECOVERY_KEY_FILE or a prompt).  Needs no current passcode.\n"
"\n"
"OPTIONS\n"
"    --recovery-key-file FILE  write (e2e) or read (recover) the recovery key\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT\n"
"    KEYHOLD_RECOVERY_KEY_FILE     the recovery key for recover\n"
"    KEYHOLD_OPERATOR_SECRET_FILE  the embedded key service's secret (e2e)\n"
"\n"
"EXIT STATUS\n"
"    0 on success, 1 on failure, 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold protection e2e --recovery-key-file ~/keyhold-recovery.txt\n"
"    keyhold protection recover --recovery-key-file ~/keyhold-recovery.txt\n";

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* 32 bytes -> 52 base32 characters in groups of 4 joined by '-' (64 chars) */
static void rk_format(const uint8_t k[32], char out[72])
{
  char raw[53];
  unsigned acc = 0, bits = 0;
  size_t n = 0;
  for (size_t i = 0; i < 32; i++) {
    acc = (acc << 8) | k[i];
    bits += 8;
    while (bits >= 5) {
      raw[n++] = B32[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  raw[n++] = B32[(acc << (5 - bits)) & 31];
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (i && i % 4 == 0)
      out[o++] = '-';
    out[o++] = raw[i];
  }
  out[o] = '\0';
}

static bool rk_parse(const char *s, size_t len, uint8_t k[32])
{
  unsigned acc = 0, bits = 0;
  size_t n = 0, chars = 0;
  for (size_t i = 0; i < len; i++) {
    char c = (char)toupper((unsigned char)s[i]);
    if (c == '-' || c == ' ')
      continue;
    const char *p = c ? strchr(B32, c) : NULL;
    if (!p)
      return false;
    chars++;
    acc = (acc << 5) | (unsigned)(p - B32);
    bits += 5;
    if (bits >= 8) {
      if (n == 32)
        return false;
      k[n++] = (uint8_t)(acc >> (bits - 8));
      bits -= 8;
    }
  }
  return n == 32 && chars == 52 && (acc & ((1u << bits) - 1)) == 0;
}

static int prot_show(void)
{
  kh_vault *v = NULL;
  if (cli_open_vault(&v))
    return CLI_EXIT_FAIL;
  kh_protection p;
  kh_err e = kh_vault_protection(v, &p);
  int rc = CLI_EXIT_OK;
  if (e)
    rc = cli_fail(e, "protection");
  else if (g_opts.json)
    printf("{\"account\":\"%s\",\"protection\":\"%s\"}\n", kh_vault_account_id(v),
           p == KH_PROTECTION_E2E ? "e2e" : "standard");
  else
    printf("%s\n", p == KH_PROTECTION_E2E ? "e2e" : "standard");
  kh_vault_free(v);
  return rc;
}

static int prot_e2e(const char *keyfile)
{
  kh_vault *v = NULL;
  kh_kms *k = NULL;
  uint8_t rk[32];
  char text[72], reqr[64];
  int rc = CLI_EXIT_FAIL;
  const char *region;
  if (cli_region_path(&region) || cli_open_vault(&v))
    return CLI_EXIT_FAIL;
  kh_protection p;
  kh_err e = kh_vault_protection(v, &p);
  if (e) {
    rc = cli_fail(e, "protection e2e");
    goto out;
  }
  if (p == KH_PROTECTION_E2E) {
    printf("account %s is already end-to-end protected\n", kh_vault_account_id(v));
    rc = CLI_EXIT_OK;
    goto out;
  }
  /* the key service must be reachable before anything changes (on a
   * server: it still holds this account's wrap) */
  bool server = cli_is_url(region);
  kh_keysvc_status st;
  if (server && (e = kh_keysvc_status_get(v, &st))) {
    rc = cli_fail(e, "protection e2e: ask the key service");
    goto out;
  }
  if (!server && (e = kh_kms_open(region, &k))) {
    rc = cli_fail(e, "protection e2e: open the key service");
    goto out;
  }
  if (keyfile) {
    int fd = open(keyfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      cli_errorf("protection e2e: cannot create %s: %s", keyfile, strerror(errno));
      goto out;
    }
    close(fd);
  }
  if ((e = kh_vault_recovery_key_create(v, rk))) {
    rc = cli_fail(e, "protection e2e: recovery key");
    goto out;
  }
  rk_format(rk, text);
  if (keyfile) {
    size_t tl = strlen(text);
    text[tl] = '\n'; /* text has room: rk_format's buffer is bigger than a key */
    e = kh_file_write_atomic(keyfile, text, tl + 1, 0600);
    text[tl] = '\0';
    if (e) {
      cli_errorf("protection e2e: cannot write %s: %s; nothing destroyed", keyfile,
                 kh_errdetail());
      goto out;
    }
  } else {
    fprintf(stderr, "Your recovery key (shown only now; write it down and keep it safe):\n");
    printf("recovery key %s\n", text);
    fflush(stdout);
  }
  snprintf(reqr, sizeof reqr, "device:%s", kh_vault_device_id(v));
  kh_kms_request rq = {reqr, "switch to end-to-end protection", kh_vault_device_id(v),
                       kh_vault_device_sign, v};
  if ((e = server ? kh_keysvc_destroy(v, "switch to end-to-end protection")
                  : kh_kms_destroy(k, kh_vault_account_id(v), &rq))) {
    rc = cli_fail(e, "protection e2e: destroy the key-service wrap");
    goto out;
  }
  if ((e = kh_vault_protection_set(v, KH_PROTECTION_E2E))) {
    rc = cli_fail(e, "protection e2e: record the mode");
    goto out;
  }
  if (g_opts.json)
    printf("{\"account\":\"%s\",\"protection\":\"e2e\",\"recovery_key_file\":%s%s%s}\n",
           kh_vault_account_id(v), keyfile ? "\"" : "", keyfile ? keyfile : "null",
           keyfile ? "\"" : "");
  else
    printf("account %s is now end-to-end protected; the key service's wrap is destroyed "
           "(logged)\n", kh_vault_account_id(v));
  rc = CLI_EXIT_OK;
out:
  memset(rk, 0, sizeof rk);
  memset(text, 0, sizeof text);
  kh_kms_free(k);
  kh_vault_free(v);
  return rc;
}

static int prot_recover(const char *keyfile)
{
  const char *region;
  char account[KH_ACCOUNT_ID_HEX + 1];
  kh_secret *rks = NULL, *np = NULL;
  uint8_t rk[32];
  int rc = CLI_EXIT_FAIL;
  if (cli_region_path(&region))
    return CLI_EXIT_FAIL;
  if (cli_is_url(region)) {
    /* a server account has no passcode wrap to set: a fresh device gets in
     * through the key service's escrow (keyhold escrow recover) */
    cli_errorf("protection recover: not available against a region server in this version; "
               "a fresh device recovers a standard account with keyhold escrow recover, and "
               "an enrolled device approves a new one (keyhold device approve)");
    return CLI_EXIT_FAIL;
  }
  if (!cli_pick_account(region, account))
    return CLI_EXIT_FAIL;
  if (cli_read_passcode(keyfile, "KEYHOLD_RECOVERY_KEY_FILE", "Recovery key", false, &rks))
    goto out;
  if (!rk_parse((const char *)rks->bytes, rks->len, rk)) {
    cli_errorf("protection recover: that is not a recovery key (13 groups of 4 characters "
               "A-Z, 2-7)");
    goto out;
  }
  if (cli_read_passcode(g_opts.passcode_file, "KEYHOLD_PASSCODE_FILE", "New passcode", true,
                        &np))
    goto out;
  kh_err e = kh_account_passcode_from_recovery(region, account, rk, np, 0, 0);
  if (e) {
    rc = cli_fail(e, "protection recover");
    goto out;
  }
  if (g_opts.json)
    printf("{\"account\":\"%s\",\"passcode_changed\":true}\n", account);
  else
    printf("passcode of account %s set with the recovery key\n", account);
  rc = CLI_EXIT_OK;
out:
  memset(rk, 0, sizeof rk);
  kh_secret_free(rks);
  kh_secret_free(np);
  return rc;
}

int cmd_protection(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"recovery-key-file", required_argument, NULL, 'f'},
    {NULL, 0, NULL, 0},
  };
  const char *keyfile = NULL;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (c != 'f' || !*optarg)
      return cli_usage("protection");
    keyfile = optarg;
  }
  const char *sub = optind < argc ? argv[optind] : "show";
  if (argc - optind > 1)
    return cli_usage("protection");
  if (!strcmp(sub, "show") && !keyfile)
    return prot_show();
  if (!strcmp(sub, "e2e"))
    return prot_e2e(keyfile);
  if (!strcmp(sub, "recover"))
    return prot_recover(keyfile);
  cli_msgf("protection: unknown subcommand '%s'", sub);
  return cli_usage("protection");
}
