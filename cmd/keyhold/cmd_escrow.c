/* keyhold escrow: the account key held by the key service behind a
 * recovery passcode with an attempt limit. */
#include "cli.h"
#include "keyhold/keysvc.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cmd_escrow(int argc, char **argv);

const char cmd_escrow_help[] =
"NAME\n"
"    keyhold escrow - manage the recovery escrow of the account key\n"
"\n"
"SYNOPSIS\n"
"    keyhold escrow enable\n"
"    keyhold escrow recover [--name NAME]\n"
"    keyhold escrow status\n"
"\n"
"DESCRIPTION\n"
"    enable\n"
"        Opens the account (passcode as usual) and gives the region's key\n"
"        service the account key sealed under a recovery passcode.  The\n"
"        record can only be tried through the key service, which counts\n"
"        wrong attempts: after 10 wrong attempts in a row the record is\n"
"        destroyed for good; a right one resets the count.  There is no\n"
"        waiting between attempts.  Enabling again replaces the record.\n"
"        Not available for end-to-end accounts.\n"
"    recover\n"
"        For a forgotten passcode: reads the recovery passcode and a NEW\n"
"        account passcode, asks the key service to open the record (the\n"
"        attempt is counted and logged before it is judged), and stores the\n"
"        new passcode.  Prints how many attempts are left on a wrong one.\n"
"    status\n"
"        Whether a record exists and how many wrong attempts it has seen\n"
"        (needs the account passcode).\n"
"\n"
"    On a region server (--region URL) the passcode never leaves the device:\n"
"    it sends only an Argon2id derivative of it (docs/protocol.md 10.4), and\n"
"    the server never stores anything a passcode could be guessed against\n"
"    offline.  enable needs an admin device; the request is signed by the\n"
"    device over the exact log entry.  recover runs on a FRESH device (a\n"
"    KEYHOLD_DEVICE_DIR without an identity on that server) with\n"
"    --region URL --account ID and only the escrow passcode: the attempt\n"
"    is counted and logged before it is judged, and on the right passcode\n"
"    the account key comes back sealed to this device's new X25519 key and\n"
"    the device becomes an enrolled device of the account (every\n"
"    capability; --name, default the host name).  No new passcode is asked\n"
"    for: on a server the passcode is the escrow's (keyhold passcode change\n"
"    sets a new one).\n"
"\n"
"    The recovery passcode comes from KEYHOLD_RECOVERY_PASSCODE_FILE or a\n"
"    prompt; the new passcode of recover from --passcode-file,\n"
"    KEYHOLD_PASSCODE_FILE or a prompt.  Every operation is logged in the\n"
"    region's log (keyhold watch shows the attempts).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_RECOVERY_PASSCODE_FILE, KEYHOLD_PASSCODE_FILE, KEYHOLD_REGION,\n"
"    KEYHOLD_ACCOUNT, KEYHOLD_OPERATOR_SECRET_FILE (the embedded key service)\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 1 on failure (wrong recovery passcode, record destroyed,\n"
"    no record); 2 on a usage error.  With --json, recover prints\n"
"    {\"account\", \"recovered\": false, \"attempts_left\"} on a wrong passcode,\n"
"    {\"account\", \"recovered\": true, \"log_index\"} (and \"device\" on a\n"
"    server) on the right one.\n"
"\n"
"EXAMPLES\n"
"    KEYHOLD_RECOVERY_PASSCODE_FILE=rp.txt keyhold escrow enable\n"
"    KEYHOLD_RECOVERY_PASSCODE_FILE=rp.txt KEYHOLD_PASSCODE_FILE=new.txt \\\n"
"        keyhold escrow recover\n"
"    KEYHOLD_DEVICE_DIR=~/.config/keyhold-new KEYHOLD_RECOVERY_PASSCODE_FILE=rp.txt \\\n"
"        keyhold --region https://eu.example:8443 --account 0123... escrow recover\n";

/* Server mode (docs/protocol.md §10): the device sends the escrow secret
 * (an Argon2id derivative of the passcode), never the passcode. */
static int escrow_enable_remote(void)
{
  kh_vault *v = NULL;
  kh_secret *rp = NULL;
  int rc = CLI_EXIT_FAIL;
  if (cli_open_vault(&v))
    return CLI_EXIT_FAIL;
  if (cli_read_passcode(NULL, "KEYHOLD_RECOVERY_PASSCODE_FILE", "Recovery passcode", true, &rp))
    goto out;
  kh_err e = kh_keysvc_escrow_enable(v, rp, 0, 0);
  if (e) {
    rc = cli_fail(e, "escrow enable");
    goto out;
  }
  if (g_opts.json)
    printf("{\"account\":\"%s\",\"escrow\":\"enabled\",\"attempt_limit\":%d}\n",
           kh_vault_account_id(v), KH_KMS_ESCROW_LIMIT);
  else
    printf("escrow enabled for account %s (%d wrong attempts destroy it)\n",
           kh_vault_account_id(v), KH_KMS_ESCROW_LIMIT);
  rc = CLI_EXIT_OK;
out:
  kh_secret_free(rp);
  kh_vault_free(v);
  return rc;
}

static int escrow_enable(void)
{
  const char *region;
  kh_vault *v = NULL;
  kh_kms *k = NULL;
  kh_secret *rp = NULL;
  uint8_t key[32];
  int cipher = 0, rc = CLI_EXIT_FAIL;
  char reqr[64];
  if (cli_region_path(&region) || cli_open_vault(&v))
    return CLI_EXIT_FAIL;
  if (cli_read_passcode(NULL, "KEYHOLD_RECOVERY_PASSCODE_FILE", "Recovery passcode", true, &rp))
    goto out;
  kh_err e = kh_kms_open(region, &k);
  if (e) {
    rc = cli_fail(e, "escrow enable: open the key service");
    goto out;
  }
  kh_vault_master_key(v, key, &cipher);
  snprintf(reqr, sizeof reqr, "device:%s", kh_vault_device_id(v));
  kh_kms_request rq = {reqr, "escrow enabled by the account holder", kh_vault_device_id(v),
                       kh_vault_device_sign, v};
  if ((e = kh_kms_escrow_enable(k, kh_vault_account_id(v), key, cipher, rp, &rq))) {
    rc = cli_fail(e, "escrow enable");
    goto out;
  }
  if (g_opts.json)
    printf("{\"account\":\"%s\",\"escrow\":true,\"attempts_allowed\":%d}\n",
           kh_vault_account_id(v), KH_KMS_ESCROW_LIMIT);
  else
    printf("escrow enabled for account %s (%d wrong attempts destroy it)\n",
           kh_vault_account_id(v), KH_KMS_ESCROW_LIMIT);
  rc = CLI_EXIT_OK;
out:
  memset(key, 0, sizeof key);
  kh_secret_free(rp);
  kh_kms_free(k);
  kh_vault_free(v);
  return rc;
}

/* Server mode: a fresh device with only the escrow passcode becomes an
 * enrolled device of the account. */
static int escrow_recover_remote(const char *url, const char *name)
{
  kh_secret *rp = NULL;
  kh_keysvc_recovered out;
  char host[65] = "";
  int rc = CLI_EXIT_FAIL;
  if (!g_opts.account) {
    cli_msgf("escrow recover: --account ID is required with a server (--region URL)");
    return cli_usage("escrow");
  }
  if (!name) {
    if (gethostname(host, sizeof host - 1) != 0 || !*host)
      snprintf(host, sizeof host, "recovered device");
    name = host;
  }
  if (cli_read_passcode(NULL, "KEYHOLD_RECOVERY_PASSCODE_FILE", "Recovery passcode", false, &rp))
    return CLI_EXIT_FAIL;
  kh_keysvc_recovery rq = {.url = url, .ca_file = g_opts.ca_file,
                           .device_dir = getenv("KEYHOLD_DEVICE_DIR"),
                           .account = g_opts.account, .name = name};
  kh_err e = kh_keysvc_escrow_recover(&rq, rp, &out);
  if (e == KH_ERR_PASSCODE) {
    cli_msgf("escrow recover: %s", kh_errdetail());
    if (g_opts.json)
      printf("{\"account\":\"%s\",\"recovered\":false,\"attempts_left\":%u}\n",
             g_opts.account, out.left);
    goto out;
  }
  if (e) {
    rc = cli_fail(e, "escrow recover");
    goto out;
  }
  if (g_opts.json)
    printf("{\"account\":\"%s\",\"recovered\":true,\"device\":\"%s\",\"log_index\":%llu}\n",
           g_opts.account, out.device, (unsigned long long)out.index);
  else
    printf("recovered account %s: this device is device %s (escrow attempt logged at index "
           "%llu)\n", g_opts.account, out.device, (unsigned long long)out.index);
  rc = CLI_EXIT_OK;
out:
  kh_secret_free(rp);
  return rc;
}

static int escrow_status_remote(void)
{
  kh_vault *v = NULL;
  kh_keysvc_status st;
  int rc = CLI_EXIT_FAIL;
  if (cli_open_vault(&v))
    return CLI_EXIT_FAIL;
  kh_err e = kh_keysvc_status_get(v, &st);
  if (e) {
    rc = cli_fail(e, "escrow status");
  } else {
    const char *s = st.escrow.destroyed ? "destroyed" : st.escrow.present ? "enabled" : "none";
    if (g_opts.json)
      printf("{\"account\":\"%s\",\"escrow\":\"%s\",\"failed\":%u,\"attempts\":%llu}\n",
             kh_vault_account_id(v), s, st.escrow.failed,
             (unsigned long long)st.escrow.attempts);
    else
      printf("escrow %s\nwrong attempts in a row %u of %d\n", s, st.escrow.failed,
             KH_KMS_ESCROW_LIMIT);
    rc = CLI_EXIT_OK;
  }
  kh_vault_free(v);
  return rc;
}

static int escrow_recover(void)
{
  const char *region;
  char account[KH_ACCOUNT_ID_HEX + 1];
  kh_kms *k = NULL;
  kh_secret *rp = NULL, *np = NULL;
  kh_kms_release r;
  memset(&r, 0, sizeof r);
  int rc = CLI_EXIT_FAIL;
  if (cli_region_path(&region) || !cli_pick_account(region, account))
    return CLI_EXIT_FAIL;
  /* both secrets first: a failure to read the new one must not cost an attempt */
  if (cli_read_passcode(NULL, "KEYHOLD_RECOVERY_PASSCODE_FILE", "Recovery passcode", false,
                        &rp) ||
      cli_read_passcode(g_opts.passcode_file, "KEYHOLD_PASSCODE_FILE", "New passcode", true,
                        &np))
    goto out;
  kh_err e = kh_kms_open(region, &k);
  if (e) {
    rc = cli_fail(e, "escrow recover: open the key service");
    goto out;
  }
  uint32_t left = 0;
  kh_kms_request rq = {"account holder (escrow recover)", "recovery with the escrow passcode",
                       NULL, NULL, NULL};
  e = kh_kms_escrow_recover(k, account, rp, &rq, &r, &left);
  if (e == KH_ERR_PASSCODE) {
    cli_msgf("escrow recover: %s", kh_errdetail());
    if (g_opts.json)
      printf("{\"account\":\"%s\",\"recovered\":false,\"attempts_left\":%u}\n", account, left);
    goto out;
  }
  if (e) {
    rc = cli_fail(e, "escrow recover");
    goto out;
  }
  if ((e = kh_account_passcode_from_key(region, account, r.key, r.cipher, np, 0, 0))) {
    rc = cli_fail(e, "escrow recover: set the new passcode");
    goto out;
  }
  if (g_opts.json)
    printf("{\"account\":\"%s\",\"recovered\":true,\"log_index\":%llu}\n", account,
           (unsigned long long)r.index);
  else
    printf("new passcode set for account %s (escrow attempt logged at index %llu)\n", account,
           (unsigned long long)r.index);
  rc = CLI_EXIT_OK;
out:
  kh_kms_release_clear(&r);
  kh_secret_free(rp);
  kh_secret_free(np);
  kh_kms_free(k);
  return rc;
}

static int escrow_status(void)
{
  const char *region;
  kh_vault *v = NULL;
  kh_kms *k = NULL;
  int rc = CLI_EXIT_FAIL;
  if (cli_region_path(&region) || cli_open_vault(&v))
    return CLI_EXIT_FAIL;
  kh_kms_escrow_info in;
  kh_err e = kh_kms_open(region, &k);
  if (!e)
    e = kh_kms_escrow_status(k, kh_vault_account_id(v), &in);
  if (e) {
    rc = cli_fail(e, "escrow status");
  } else {
    const char *s = in.destroyed ? "destroyed" : in.present ? "enabled" : "none";
    if (g_opts.json)
      printf("{\"account\":\"%s\",\"escrow\":\"%s\",\"failed\":%u,\"attempts\":%llu}\n",
             kh_vault_account_id(v), s, in.failed, (unsigned long long)in.attempts);
    else
      printf("escrow %s\nwrong attempts in a row %u of %d\n", s, in.failed,
             KH_KMS_ESCROW_LIMIT);
    rc = CLI_EXIT_OK;
  }
  kh_kms_free(k);
  kh_vault_free(v);
  return rc;
}

int cmd_escrow(int argc, char **argv)
{
  const char *region = g_opts.region, *name = NULL;
  bool server = region && cli_is_url(region);
  /* recover --name N (server mode: the new device's name) */
  if (argc == 4 && !strcmp(argv[1], "recover") && !strcmp(argv[2], "--name")) {
    name = argv[3];
    argc = 2;
  }
  if (argc != 2) {
    cli_msgf("escrow: which subcommand (enable, recover, status)?");
    return cli_usage("escrow");
  }
  if (!strcmp(argv[1], "enable"))
    return server ? escrow_enable_remote() : escrow_enable();
  if (!strcmp(argv[1], "recover")) {
    if (name && !server) {
      cli_msgf("escrow recover: --name is for a region server (--region URL)");
      return cli_usage("escrow");
    }
    return server ? escrow_recover_remote(region, name) : escrow_recover();
  }
  if (!strcmp(argv[1], "status"))
    return server ? escrow_status_remote() : escrow_status();
  cli_msgf("escrow: unknown subcommand '%s'", argv[1]);
  return cli_usage("escrow");
}
