/* keyhold device: list, add (enrol by approval code), approve, refuse and
 * revoke the devices of an account on a region server (docs/protocol.md §9,
 * docs/cli.md "device"). */
#include "cli.h"
#include "keyhold/enrol.h"
#include "keyhold/json.h"
#include "keyhold/proto.h"
#include "keyhold/remote.h"

#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cmd_device(int argc, char **argv);

const char cmd_device_help[] =
"NAME\n"
"    keyhold device - list, add, approve and revoke the account's devices\n"
"\n"
"SYNOPSIS\n"
"    keyhold device list [--json]\n"
"    keyhold device add [--name NAME] [--timeout SECONDS] [--json]\n"
"    keyhold device approve CODE [--can CAPS] [--json]\n"
"    keyhold device refuse CODE\n"
"    keyhold device revoke ID\n"
"\n"
"DESCRIPTION\n"
"    Devices of an account on a region server (--region URL or\n"
"    KEYHOLD_REGION=https://HOST:PORT).  Each device has its own keys in\n"
"    KEYHOLD_DEVICE_DIR and its own capabilities, which the server enforces:\n"
"    backup (add data and snapshots; cannot list, read or delete), read\n"
"    (list, restore, check), prune (forget and delete), admin (approve and\n"
"    revoke devices).\n"
"\n"
"    list prints one line per device: its id, capabilities, the time it was\n"
"    enrolled, the time it was revoked (\"-\" if not), its name, and\n"
"    \"(this device)\" for the one in use.  With --json one object\n"
"    {\"devices\": [{\"id\", \"name\", \"caps\", \"enrolled\", \"revoked\",\n"
"    \"this\"}]} (times in seconds since 1970, revoked null if not).\n"
"\n"
"    add runs on the NEW device.  It makes the device's keys and an\n"
"    approval code, registers a pending enrolment with the server (which\n"
"    never learns the code), prints exactly one line \"code XXXX-XXXX\" to\n"
"    standard output and waits.  Type the code on a device of the account\n"
"    that has the admin capability: keyhold device approve XXXX-XXXX.\n"
"    Once approved, the new device checks that the account key it was\n"
"    given comes from the device that knew the code (wrap_tag), saves its\n"
"    state in KEYHOLD_DEVICE_DIR and exits 0.  Refused, expired (after 10\n"
"    minutes) or timed out (--timeout, default 600 seconds): exit 1.  The\n"
"    name defaults to the host name.\n"
"\n"
"    approve runs on an enrolled device with the admin capability.  It finds\n"
"    the pending enrolment whose keys the code authenticates (a server that\n"
"    swapped the new device's keys is caught here: no enrolment matches),\n"
"    wraps the account key to the new device, signs the enrol statement\n"
"    that the server writes to the region's log before the device counts,\n"
"    and gives the new device the capabilities of --can (comma-separated;\n"
"    default backup,read).  refuse turns the enrolment of CODE down.\n"
"\n"
"    revoke ID (a unique prefix of a device id, as list shows it) signs a\n"
"    revoke statement; the server logs it, refuses the device at once (its\n"
"    sessions end) and deletes its copy of the account key.  The account's\n"
"    last admin device cannot be revoked.  See docs/threat-model.md for what\n"
"    a revoked device still knows.\n"
"\n"
"OPTIONS\n"
"    --name NAME       add: the new device's name (1..64 printable bytes)\n"
"    --timeout SECONDS add: give up waiting after SECONDS (default 600)\n"
"    --can CAPS        approve: backup,read,prune,admin (default backup,read)\n"
"    --json            list, add, approve: JSON output\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_DEVICE_DIR, KEYHOLD_CA_FILE\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 1 on failure (refused by the server, e.g. a missing\n"
"    capability or a revoked device, with the server's message; a code that\n"
"    matches no pending enrolment; an enrolment refused, expired or timed\n"
"    out); 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    new$ keyhold --region https://backup.example:8443 device add --name phone\n"
"    code 7KQ4-M2XD\n"
"    old$ keyhold device approve 7kq4-m2xd --can backup,read\n"
"    old$ keyhold device list\n"
"    old$ keyhold device revoke 3f2a\n";

#define RESP_MAX (1u << 20)
#define POLL_MS 500

static kh_err sign_dev(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
  const kh_device_state *d = ctx;
  crypto_sign_detached(sig, NULL, msg, len, d->sign_sk);
  return KH_OK;
}

static const char *server_url(const char *verb)
{
  const char *url = g_opts.region;
  if (!url || !cli_is_url(url)) {
    cli_errorf("device %s: needs a region server: --region https://HOST:PORT or "
               "KEYHOLD_REGION", verb);
    return NULL;
  }
  return url;
}

/* The device state for the server and a client signing as it. */
static int open_device(const char *verb, kh_device_state **d, kh_remote **r)
{
  char what[64];
  snprintf(what, sizeof what, "device %s", verb);
  const char *url = server_url(verb);
  kh_err e;
  if (!url)
    return CLI_EXIT_USAGE;
  if ((e = kh_device_state_find(NULL, url, d)))
    return cli_fail(e, what);
  if ((e = kh_remote_new(url, NULL, r))) {
    kh_device_state_free(*d);
    *d = NULL;
    return cli_fail(e, what);
  }
  kh_remote_set_device(*r, *d);
  return CLI_EXIT_OK;
}

static kh_err call(kh_remote *r, const char *method, const char *target, const char *body,
                   size_t len, bool sign, kh_remote_resp *resp)
{
  kh_remote_req rq = {.method = method, .target = target, .body = body, .len = len,
                      .sign = sign, .max = RESP_MAX};
  memset(resp, 0, sizeof *resp);
  return kh_remote_call(r, &rq, resp);
}

static void fmt_time(char out[32], int64_t t)
{
  struct tm tm;
  time_t tt = (time_t)t;
  if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(out, 32, "%lld", (long long)t);
}

static kh_err get_devices(kh_remote *r, const kh_device_state *d, kh_enrol_device **v,
                          size_t *n)
{
  char target[128];
  kh_remote_resp resp;
  snprintf(target, sizeof target, "/v1/accounts/%s/devices", d->account);
  kh_err e = call(r, "GET", target, NULL, 0, true, &resp);
  if (!e)
    e = kh_enrol_devices_parse((const char *)resp.body, resp.len, v, n);
  kh_remote_resp_release(&resp);
  return e;
}

/* ---- list ---- */

static int device_list(int argc, char **argv)
{
  if (argc != 1) {
    cli_msgf("device list: unexpected argument '%s'", argv[1]);
    return cli_usage("device");
  }
  kh_device_state *d = NULL;
  kh_remote *r = NULL;
  kh_enrol_device *v = NULL;
  size_t n = 0;
  int rc = open_device("list", &d, &r);
  if (rc)
    return rc;
  kh_err e = get_devices(r, d, &v, &n);
  if (e) {
    rc = cli_fail(e, "device list");
    goto out;
  }
  char caps[64], en[32], rv[32];
  if (g_opts.json)
    fputs("{\"devices\":[", stdout);
  for (size_t i = 0; i < n; i++) {
    bool self = !strcmp(v[i].id, d->device);
    kh_proto_caps_format(v[i].caps, caps, sizeof caps);
    if (g_opts.json) {
      printf("%s{\"id\":\"%s\",\"name\":", i ? "," : "", v[i].id);
      cli_json_cstr(stdout, v[i].name);
      fputs(",\"caps\":[", stdout);
      for (char *p = caps, *c; *p; p = c ? c + 1 : p + strlen(p)) {
        c = strchr(p, ',');
        printf("%s\"%.*s\"", p == caps ? "" : ",", (int)(c ? (size_t)(c - p) : strlen(p)), p);
      }
      printf("],\"enrolled\":%lld,\"revoked\":", (long long)v[i].enrolled);
      if (v[i].revoked)
        printf("%lld", (long long)v[i].revoked);
      else
        fputs("null", stdout);
      printf(",\"this\":%s}", self ? "true" : "false");
    } else {
      fmt_time(en, v[i].enrolled);
      if (v[i].revoked)
        fmt_time(rv, v[i].revoked);
      else
        snprintf(rv, sizeof rv, "-");
      printf("%s  %-23s  %s  %-20s  ", v[i].id, caps, en, rv);
      cli_print_path(stdout, v[i].name, strlen(v[i].name));
      fputs(self ? "  (this device)\n" : "\n", stdout);
    }
  }
  if (g_opts.json)
    fputs("]}\n", stdout);
  rc = CLI_EXIT_OK;
out:
  free(v);
  kh_remote_free(r);
  kh_device_state_free(d);
  return rc;
}

/* ---- add ---- */

static void default_name(char out[KH_ENROL_NAME_MAX + 1])
{
  char host[256] = "";
  size_t o = 0;
  if (gethostname(host, sizeof host - 1) != 0)
    host[0] = 0;
  for (size_t i = 0; host[i] && o < KH_ENROL_NAME_MAX; i++)
    if (host[i] > ' ' && host[i] < 0x7f)
      out[o++] = host[i];
  out[o] = 0;
  if (!o)
    snprintf(out, KH_ENROL_NAME_MAX + 1, "device");
}

/* Open and check the approved wrap; fill d's account, device and keycheck. */
static kh_err accept_approval(kh_device_state *d, const uint8_t *k, const kh_enrol_result *res)
{
  uint8_t tag[32];
  uint8_t *key = sodium_malloc(32);
  int cipher = 0;
  kh_err e = KH_OK;
  if (!key)
    return KH_ERR_NOMEM;
  kh_enrol_wrap_tag(k, d->instance, res->account, res->device, res->caps, res->wrap,
                    res->wrap_len, tag);
  if (sodium_memcmp(tag, res->wrap_tag, 32) != 0) {
    cli_errorf("device add: the approval does not carry this code's tag: the key it "
               "offers does not come from the device that was given the code; refused");
    e = KH_ERR_AUTH;
    goto out;
  }
  if ((e = kh_device_wrap_open(d, res->wrap, res->wrap_len, key, &cipher))) {
    cli_fail(e, "device add: the approved key does not open");
    goto out;
  }
  kh_device_keycheck(key, d->keycheck);
  memcpy(d->account, res->account, sizeof d->account);
  memcpy(d->device, res->device, sizeof d->device);
out:
  sodium_free(key);
  return e;
}

static int device_add(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"name", required_argument, NULL, 'n'},
    {"timeout", required_argument, NULL, 't'},
    {NULL, 0, NULL, 0},
  };
  char name[KH_ENROL_NAME_MAX + 1];
  uint32_t timeout = 600;
  int c;
  default_name(name);
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'n':
      if (!kh_enrol_name_valid(optarg)) {
        cli_msgf("device add: --name: 1..%d printable bytes, no space at either end",
                 KH_ENROL_NAME_MAX);
        return cli_usage("device");
      }
      snprintf(name, sizeof name, "%s", optarg);
      break;
    case 't':
      if (!cli_parse_u32(optarg, 1, 86400, &timeout)) {
        cli_msgf("device add: --timeout: seconds, 1..86400");
        return cli_usage("device");
      }
      break;
    default: return cli_usage("device");
    }
  }
  if (optind != argc) {
    cli_msgf("device add: unexpected argument '%s'", argv[optind]);
    return cli_usage("device");
  }
  const char *url = server_url("add");
  if (!url)
    return CLI_EXIT_USAGE;
  int rc = CLI_EXIT_FAIL;
  kh_remote *r = NULL;
  kh_device_state *d = NULL, *old = NULL;
  uint8_t *k = sodium_malloc(32);
  char code[KH_PROTO_CODE_LEN + 1], *body = NULL, *st = NULL, enrolment[33] = "";
  size_t blen = 0, slen = 0;
  kh_remote_resp resp;
  kh_enrol_result res;
  kh_json *j = NULL;
  kh_region_info info;
  kh_enrol_request rq;
  kh_err e;
  memset(&resp, 0, sizeof resp);
  memset(&res, 0, sizeof res);
  if (!k) {
    cli_errorf("device add: out of memory");
    goto out;
  }
  if ((e = kh_remote_new(url, NULL, &r)) || (e = kh_remote_region(r, &info))) {
    cli_fail(e, "device add");
    goto out;
  }
  if (kh_device_state_load(NULL, info.instance, &old) == KH_OK) {
    cli_errorf("device add: this device directory already is device %s of account %s on "
               "this server", old->device, old->account);
    goto out;
  }
  if ((e = kh_device_state_new(&d))) {
    cli_fail(e, "device add");
    goto out;
  }
  snprintf(d->url, sizeof d->url, "%s", url);
  snprintf(d->region, sizeof d->region, "%s", info.region);
  snprintf(d->instance, sizeof d->instance, "%s", info.instance);
  snprintf(d->name, sizeof d->name, "%s", name);
  /* the code and its key: the server sees only the bucket, salt and tag */
  memset(&rq, 0, sizeof rq);
  kh_proto_code_new(code);
  randombytes_buf(rq.salt, sizeof rq.salt);
  if ((e = kh_proto_code_key(code, rq.salt, k))) {
    cli_fail(e, "device add: code key");
    goto out;
  }
  snprintf(rq.name, sizeof rq.name, "%s", name);
  memcpy(rq.sign_pk, d->sign_pk, 32);
  memcpy(rq.box_pk, d->box_pk, 32);
  kh_enrol_tag(k, d->instance, rq.sign_pk, rq.box_pk, rq.name, rq.tag);
  memcpy(rq.bucket, code, 2);
  char ch[64];
  if ((e = kh_remote_challenge(r, ch))) {
    cli_fail(e, "device add: challenge");
    goto out;
  }
  if (strlen(ch) >= sizeof rq.challenge) {
    cli_errorf("device add: the server's challenge is malformed");
    goto out;
  }
  memcpy(rq.challenge, ch, strlen(ch) + 1);
  if ((e = kh_enrol_request_statement(d->instance, &rq, &st, &slen))) {
    cli_fail(e, "device add");
    goto out;
  }
  crypto_sign_detached(rq.sig, NULL, (const uint8_t *)st, slen, d->sign_sk);
  if ((e = kh_enrol_request_json(&rq, &body, &blen)) ||
      (e = call(r, "POST", "/v1/enrolments", body, blen, false, &resp))) {
    cli_fail(e, "device add: enrolment");
    goto out;
  }
  const char *eid = NULL;
  if (kh_json_parse((const char *)resp.body, resp.len, &j) ||
      !(eid = kh_json_get_str(j, "enrolment")) || !kh_enrol_id_valid(eid)) {
    cli_errorf("device add: the server's answer to the enrolment is malformed");
    goto out;
  }
  snprintf(enrolment, sizeof enrolment, "%s", eid);
  kh_remote_resp_release(&resp);
  printf("code %.4s-%.4s\n", code, code + 4);
  fflush(stdout);
  if (!g_opts.quiet)
    cli_msgf("device add: waiting for approval: on a device of the account, run "
             "'keyhold device approve %.4s-%.4s'", code, code + 4);
  /* poll, signed by the pending key */
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  char target[96];
  snprintf(target, sizeof target, "/v1/enrolments/%s", enrolment);
  bool warned = false;
  for (;;) {
    int64_t t = (int64_t)time(NULL);
    char *ps = NULL, hsig[128], htime[64], sigb[100];
    size_t pl = 0;
    uint8_t sig[64];
    if ((e = kh_enrol_poll_statement(enrolment, t, &ps, &pl))) {
      cli_fail(e, "device add");
      goto out;
    }
    crypto_sign_detached(sig, NULL, (const uint8_t *)ps, pl, d->sign_sk);
    free(ps);
    kh_proto_b64(sig, 64, sigb);
    snprintf(hsig, sizeof hsig, "KH-Enrolment-Signature: %s", sigb);
    snprintf(htime, sizeof htime, "KH-Time: %lld", (long long)t);
    const char *hdrs[] = {hsig, htime, NULL};
    kh_remote_req prq = {.method = "GET", .target = target, .headers = hdrs, .max = RESP_MAX};
    e = kh_remote_call(r, &prq, &resp);
    if (e == KH_OK) {
      e = kh_enrol_result_parse((const char *)resp.body, resp.len, &res);
      kh_remote_resp_release(&resp);
      if (e) {
        cli_fail(e, "device add: the server's answer is malformed");
        goto out;
      }
      if (res.state == KH_POLL_APPROVED)
        break;
      if (res.state == KH_POLL_REFUSED) {
        cli_errorf("device add: the enrolment was refused by a device of the account");
        goto out;
      }
      if (res.state == KH_POLL_EXPIRED) {
        cli_errorf("device add: the enrolment expired before it was approved");
        goto out;
      }
      kh_enrol_result_release(&res);
    } else if (e == KH_ERR_IO) {
      /* the server may be restarting: keep waiting until the timeout */
      if (!warned)
        cli_warnf("device add: the server does not answer (%s); still waiting", kh_errdetail());
      warned = true;
      kh_remote_resp_release(&resp);
    } else {
      cli_fail(e, "device add: waiting for approval");
      kh_remote_resp_release(&resp);
      goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
    if (el >= timeout) {
      cli_errorf("device add: timed out after %u s waiting for approval", (unsigned)timeout);
      goto out;
    }
    usleep(POLL_MS * 1000);
  }
  if (accept_approval(d, k, &res))
    goto out;
  if ((e = kh_device_state_save(d, NULL, false))) {
    cli_fail(e, "device add: saving the device's state");
    goto out;
  }
  char caps[64];
  kh_proto_caps_format(res.caps, caps, sizeof caps);
  if (g_opts.json)
    printf("{\"account\":\"%s\",\"device\":\"%s\",\"caps\":\"%s\"}\n", d->account, d->device,
           caps);
  else if (!g_opts.quiet)
    cli_msgf("device add: approved: device %s of account %s, capabilities %s", d->device,
             d->account, caps);
  rc = CLI_EXIT_OK;
out:
  kh_enrol_result_release(&res);
  kh_remote_resp_release(&resp);
  kh_json_free(j);
  free(body);
  free(st);
  sodium_free(k);
  sodium_memzero(code, sizeof code);
  kh_device_state_free(old);
  kh_device_state_free(d);
  kh_remote_free(r);
  return rc;
}

/* ---- approve / refuse ---- */

/* The one pending enrolment the code authenticates; *k its code key. */
static int find_enrolment(const char *verb, kh_remote *r, const kh_device_state *d,
                          const char *typed, kh_enrol_pending *out, uint8_t *k)
{
  char code[KH_PROTO_CODE_LEN + 1], target[64], what[64];
  kh_enrol_pending *v = NULL;
  size_t n = 0, matches = 0;
  kh_remote_resp resp;
  uint8_t *kk = sodium_malloc(32), tag[32];
  int rc = CLI_EXIT_FAIL;
  kh_err e;
  snprintf(what, sizeof what, "device %s", verb);
  memset(&resp, 0, sizeof resp);
  if (!kk) {
    cli_errorf("%s: out of memory", what);
    goto out;
  }
  if (kh_proto_code_parse(typed, code)) {
    cli_msgf("%s: '%s' is not a code (8 characters like 7KQ4-M2XD)", what, typed);
    rc = cli_usage("device");
    goto out;
  }
  snprintf(target, sizeof target, "/v1/enrolments?bucket=%.2s", code);
  if ((e = call(r, "GET", target, NULL, 0, true, &resp)) ||
      (e = kh_enrol_list_parse((const char *)resp.body, resp.len, &v, &n))) {
    cli_fail(e, what);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if ((e = kh_proto_code_key(code, v[i].salt, kk))) {
      cli_fail(e, what);
      goto out;
    }
    kh_enrol_tag(kk, d->instance, v[i].sign_pk, v[i].box_pk, v[i].name, tag);
    if (sodium_memcmp(tag, v[i].tag, 32) == 0) {
      matches++;
      *out = v[i];
      memcpy(k, kk, 32);
    }
  }
  if (matches == 0) {
    cli_errorf("%s: no pending enrolment matches this code (a wrong or expired code, or the "
               "new device's keys were changed on the way)", what);
    goto out;
  }
  if (matches > 1) {
    cli_errorf("%s: %zu pending enrolments match this code; refusing to choose", what,
               matches);
    goto out;
  }
  rc = CLI_EXIT_OK;
out:
  sodium_memzero(code, sizeof code);
  sodium_free(kk);
  free(v);
  kh_remote_resp_release(&resp);
  return rc;
}

static int device_approve(int argc, char **argv, bool refuse)
{
  static const struct option longopts[] = {
    {"can", required_argument, NULL, 'c'},
    {NULL, 0, NULL, 0},
  };
  const char *verb = refuse ? "refuse" : "approve";
  unsigned caps = KH_CAP_BACKUP | KH_CAP_READ;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'c':
      if (refuse || kh_proto_caps_parse(optarg, &caps) || !caps) {
        cli_msgf("device %s: --can takes backup,read,prune,admin", verb);
        return cli_usage("device");
      }
      break;
    default: return cli_usage("device");
    }
  }
  if (optind + 1 != argc) {
    cli_msgf("device %s: needs exactly one CODE", verb);
    return cli_usage("device");
  }
  const kh_device_state *d = NULL;
  kh_remote *r = NULL;
  kh_vault *v = NULL;
  uint8_t *k = sodium_malloc(32), *key = sodium_malloc(32);
  char *entry = NULL, *body = NULL, target[128], what[32], reason[512];
  size_t elen = 0, blen = 0;
  kh_enrol_pending p;
  kh_remote_resp resp;
  int cipher = 0, rc = CLI_EXIT_FAIL;
  kh_err e;
  memset(&resp, 0, sizeof resp);
  snprintf(what, sizeof what, "device %s", verb);
  if (!server_url(verb)) {
    rc = CLI_EXIT_USAGE;
    goto out;
  }
  if (!k || !key)
    goto out;
  /* the vault: this device's identity, its client and the account key
   * (checked against the value this device pinned) */
  if (cli_open_vault(&v))
    goto out;
  d = kh_vault_device_state(v);
  r = kh_vault_remote(v);
  if (!d || !r) {
    cli_errorf("%s: needs a region server", what);
    goto out;
  }
  if ((rc = find_enrolment(verb, r, d, argv[optind], &p, k)))
    goto out;
  rc = CLI_EXIT_FAIL;
  if (refuse) {
    snprintf(target, sizeof target, "/v1/enrolments/%s/refuse", p.enrolment);
    if ((e = call(r, "POST", target, NULL, 0, true, &resp))) {
      cli_fail(e, what);
      goto out;
    }
    printf("refused the enrolment of \"%s\"\n", p.name);
    rc = CLI_EXIT_OK;
    goto out;
  }
  if ((e = kh_vault_master_key(v, key, &cipher))) {
    cli_fail(e, what);
    goto out;
  }
  kh_enrol_approval a;
  uint8_t wrap[KH_DEVICE_WRAP_LEN];
  memset(&a, 0, sizeof a);
  memcpy(a.device, p.enrolment, sizeof a.device); /* a retry names the same device */
  a.caps = caps;
  if ((e = kh_device_wrap_seal(p.box_pk, key, cipher, wrap))) {
    cli_fail(e, what);
    goto out;
  }
  a.wrap = wrap;
  a.wrap_len = sizeof wrap;
  kh_enrol_wrap_tag(k, d->instance, d->account, a.device, caps, wrap, sizeof wrap, a.wrap_tag);
  if ((e = kh_enrol_reason(caps, p.sign_pk, p.box_pk, p.name, reason, sizeof reason)) ||
      (e = kh_enrol_statement(KH_LOG_OP_ENROL, (int64_t)time(NULL), d->region, d->account,
                              a.device, d->device, reason, sign_dev, (void *)d, &entry,
                              &elen))) {
    cli_fail(e, what);
    goto out;
  }
  a.entry = entry;
  a.entry_len = elen;
  snprintf(target, sizeof target, "/v1/enrolments/%s/approve", p.enrolment);
  if ((e = kh_enrol_approval_json(&a, &body, &blen)) ||
      (e = call(r, "POST", target, body, blen, true, &resp))) {
    cli_fail(e, what);
    goto out;
  }
  /* the account's own record of the device (sealed with the account key),
   * which `watch` uses to recognise the new device's signatures */
  if ((e = kh_vault_device_record_add(v, a.device, p.sign_pk, p.name)))
    cli_warnf("device approve: the device record of %s was not written: %s", a.device,
              kh_errdetail());
  char cs[64];
  kh_proto_caps_format(caps, cs, sizeof cs);
  if (g_opts.json) {
    printf("{\"device\":\"%s\",\"name\":", a.device);
    cli_json_cstr(stdout, p.name);
    printf(",\"caps\":\"%s\"}\n", cs);
  } else {
    printf("approved device %s \"%s\" with capabilities %s\n", a.device, p.name, cs);
  }
  rc = CLI_EXIT_OK;
out:
  kh_remote_resp_release(&resp);
  free(entry);
  free(body);
  sodium_free(k);
  sodium_free(key);
  kh_vault_free(v);
  return rc;
}

/* ---- revoke ---- */

static int device_revoke(int argc, char **argv)
{
  if (argc != 2) {
    cli_msgf("device revoke: needs exactly one device ID (or a unique prefix)");
    return cli_usage("device");
  }
  const char *prefix = argv[1];
  size_t pl = strlen(prefix);
  if (pl == 0 || pl > 32 || strspn(prefix, "0123456789abcdef") != pl) {
    cli_msgf("device revoke: '%s' is not a device id (lowercase hex)", prefix);
    return cli_usage("device");
  }
  kh_device_state *d = NULL;
  kh_remote *r = NULL;
  kh_enrol_device *v = NULL, *hit = NULL;
  size_t n = 0, nhit = 0, elen = 0, blen = 0;
  char *entry = NULL, *body = NULL, reason[128], target[160];
  kh_remote_resp resp;
  kh_err e;
  memset(&resp, 0, sizeof resp);
  int rc = open_device("revoke", &d, &r);
  if (rc)
    return rc;
  rc = CLI_EXIT_FAIL;
  if ((e = get_devices(r, d, &v, &n))) {
    cli_fail(e, "device revoke");
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    if (!strncmp(v[i].id, prefix, pl)) {
      hit = &v[i];
      nhit++;
    }
  if (nhit != 1) {
    cli_errorf("device revoke: %s", nhit ? "the prefix matches several devices"
                                         : "the account has no such device");
    goto out;
  }
  if (hit->revoked) {
    cli_errorf("device revoke: device %s is already revoked", hit->id);
    goto out;
  }
  if ((e = kh_revoke_reason(hit->sign_pk, reason, sizeof reason)) ||
      (e = kh_enrol_statement(KH_LOG_OP_REVOKE, (int64_t)time(NULL), d->region, d->account,
                              hit->id, d->device, reason, sign_dev, d, &entry, &elen)) ||
      (e = kh_enrol_revoke_json(entry, elen, &body, &blen))) {
    cli_fail(e, "device revoke");
    goto out;
  }
  snprintf(target, sizeof target, "/v1/accounts/%s/devices/%s/revoke", d->account, hit->id);
  if ((e = call(r, "POST", target, body, blen, true, &resp))) {
    cli_fail(e, "device revoke");
    goto out;
  }
  printf("revoked device %s \"%s\"\n", hit->id, hit->name);
  rc = CLI_EXIT_OK;
out:
  kh_remote_resp_release(&resp);
  free(entry);
  free(body);
  free(v);
  kh_remote_free(r);
  kh_device_state_free(d);
  return rc;
}

int cmd_device(int argc, char **argv)
{
  if (argc < 2) {
    cli_msgf("device: needs a subcommand: list, add, approve, refuse or revoke");
    return cli_usage("device");
  }
  if (sodium_init() < 0) {
    cli_errorf("device: libsodium cannot be initialised");
    return CLI_EXIT_FAIL;
  }
  const char *sub = argv[1];
  if (!strcmp(sub, "list"))
    return device_list(argc - 1, argv + 1);
  if (!strcmp(sub, "add"))
    return device_add(argc - 1, argv + 1);
  if (!strcmp(sub, "approve"))
    return device_approve(argc - 1, argv + 1, false);
  if (!strcmp(sub, "refuse"))
    return device_approve(argc - 1, argv + 1, true);
  if (!strcmp(sub, "revoke"))
    return device_revoke(argc - 1, argv + 1);
  cli_msgf("device: unknown subcommand '%s' (list, add, approve, refuse, revoke)", sub);
  return cli_usage("device");
}
