/* keyholdd admin: operator commands on the server's metadata store
 * (DIR/server/meta.db).  SQLite in WAL mode with a busy timeout, so they
 * work while a server runs; none of them needs the key service.
 *
 *   keyholdd admin --dir DIR invite [--expires SECONDS]
 *   keyholdd admin --dir DIR accounts [--json]
 *   keyholdd admin --dir DIR quota --account ID --bytes N|none
 *
 * Exit status: 0 success, 1 failure, 2 usage error (docs/cli.md). */
#include "keyholdd.h"

#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { A_OK = 0, A_FAIL = 1, A_USAGE = 2 };

static int admin_usage(const char *msg)
{
  if (msg)
    fprintf(stderr, "keyholdd: admin: %s\n", msg);
  fputs("usage: keyholdd admin --dir DIR invite [--expires SECONDS]\n"
        "       keyholdd admin --dir DIR accounts [--json]\n"
        "       keyholdd admin --dir DIR quota --account ID --bytes N|none\n",
        stderr);
  return A_USAGE;
}

static int admin_fail(kh_err e, const char *what)
{
  const char *d = kh_errdetail();
  fprintf(stderr, "keyholdd: admin: %s: %s%s%s\n", what, kh_strerror(e), d && *d ? ": " : "",
          d && *d ? d : "");
  return A_FAIL;
}

/* Open DIR/server/meta.db of an existing region (never creates a region). */
static int open_meta(const char *dir, kh_meta **m)
{
  char rid[64];
  kh_err e = kh_region_id(dir, rid);
  if (e)
    return admin_fail(e, "not a region");
  size_t n = strlen(dir) + 32;
  char *p = malloc(n);
  if (!p)
    return admin_fail(KH_ERR_NOMEM, "out of memory");
  snprintf(p, n, "%s/server", dir);
  if (mkdir(p, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "keyholdd: admin: cannot make %s: %s\n", p, strerror(errno));
    free(p);
    return A_FAIL;
  }
  snprintf(p, n, "%s/server/meta.db", dir);
  e = kh_meta_open_sqlite(p, m);
  free(p);
  return e ? admin_fail(e, "the metadata store") : A_OK;
}

static int cmd_invite(kh_meta *m, int argc, char **argv)
{
  static const struct option lo[] = {{"expires", required_argument, NULL, 'e'},
                                     {NULL, 0, NULL, 0}};
  int c;
  unsigned long long ttl = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    char *end;
    if (c != 'e')
      return admin_usage(NULL);
    errno = 0;
    ttl = strtoull(optarg, &end, 10);
    if (errno || *end || optarg[0] < '0' || optarg[0] > '9' || ttl < 1 || ttl > 31536000ull * 10)
      return admin_usage("invite: --expires takes 1 to 315360000 seconds");
  }
  if (optind != argc)
    return admin_usage("invite: unexpected argument");
  /* the token: 32 random bytes, base64url; only its SHA-256 is stored */
  uint8_t r[32], h[32];
  char tok[48];
  randombytes_buf(r, sizeof r);
  sodium_bin2base64(tok, sizeof tok, r, sizeof r, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  crypto_hash_sha256(h, (const uint8_t *)tok, strlen(tok));
  int64_t now = (int64_t)time(NULL);
  kh_err e = kh_meta_invite_add(m, h, now, ttl ? now + (int64_t)ttl : 0);
  sodium_memzero(r, sizeof r);
  if (e)
    return admin_fail(e, "invite");
  printf("%s\n", tok);
  sodium_memzero(tok, sizeof tok);
  return fflush(stdout) == 0 ? A_OK : A_FAIL;
}

static int print_account(const kh_meta_account *a, void *ctx)
{
  bool json = *(bool *)ctx;
  char q[32];
  if (a->quota_bytes == KH_META_UNLIMITED)
    snprintf(q, sizeof q, json ? "null" : "none");
  else
    snprintf(q, sizeof q, "%llu", (unsigned long long)a->quota_bytes);
  if (json)
    printf("{\"account\":\"%s\",\"created\":%lld,\"devices\":%u,\"used_bytes\":%llu,"
           "\"quota_bytes\":%s}\n",
           a->id, (long long)a->created, a->devices, (unsigned long long)a->used_bytes, q);
  else
    printf("%s  %lld  %u  %llu  %s\n", a->id, (long long)a->created, a->devices,
           (unsigned long long)a->used_bytes, q);
  return 0;
}

static int cmd_accounts(kh_meta *m, int argc, char **argv)
{
  static const struct option lo[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
  int c;
  bool json = false;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    if (c != 'j')
      return admin_usage(NULL);
    json = true;
  }
  if (optind != argc)
    return admin_usage("accounts: unexpected argument");
  if (!json)
    printf("account  created  devices  used_bytes  quota_bytes\n");
  kh_err e = kh_meta_account_list(m, print_account, &json);
  if (e)
    return admin_fail(e, "accounts");
  return fflush(stdout) == 0 ? A_OK : A_FAIL;
}

static int cmd_quota(kh_meta *m, int argc, char **argv)
{
  static const struct option lo[] = {{"account", required_argument, NULL, 'a'},
                                     {"bytes", required_argument, NULL, 'b'},
                                     {NULL, 0, NULL, 0}};
  int c;
  const char *acc = NULL, *bytes = NULL;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    if (c == 'a')
      acc = optarg;
    else if (c == 'b')
      bytes = optarg;
    else
      return admin_usage(NULL);
  }
  if (optind != argc || !acc || !bytes)
    return admin_usage("quota: --account and --bytes are required");
  uint64_t q = KH_META_UNLIMITED;
  if (strcmp(bytes, "none") != 0) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(bytes, &end, 10);
    if (errno || *end || bytes[0] < '0' || bytes[0] > '9' || v >= (unsigned long long)INT64_MAX)
      return admin_usage("quota: --bytes takes a number of bytes or none");
    q = v;
  }
  kh_err e = kh_meta_quota_set(m, acc, q);
  if (e == KH_ERR_INVAL)
    return admin_usage("quota: --account takes a full account id (32 hex digits)");
  if (e)
    return admin_fail(e, "quota");
  return A_OK;
}

int kd_admin_main(int argc, char **argv)
{
  static const struct option lo[] = {{"dir", required_argument, NULL, 'd'},
                                     {NULL, 0, NULL, 0}};
  const char *dir = NULL;
  int c, rc;
  kh_meta *m = NULL;
  optind = 0;
  /* "+": options up to the verb belong to admin itself */
  while ((c = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
    if (c != 'd')
      return admin_usage(NULL);
    dir = optarg;
  }
  if (!dir)
    return admin_usage("--dir is required");
  if (optind >= argc)
    return admin_usage("which command? invite, accounts or quota");
  const char *verb = argv[optind];
  if (strcmp(verb, "invite") && strcmp(verb, "accounts") && strcmp(verb, "quota"))
    return admin_usage("unknown command");
  if (sodium_init() < 0)
    return admin_fail(KH_ERR_CRYPTO, "libsodium");
  if ((rc = open_meta(dir, &m)) != A_OK)
    return rc;
  int sub_argc = argc - optind;
  char **sub_argv = argv + optind;
  if (!strcmp(verb, "invite"))
    rc = cmd_invite(m, sub_argc, sub_argv);
  else if (!strcmp(verb, "accounts"))
    rc = cmd_accounts(m, sub_argc, sub_argv);
  else
    rc = cmd_quota(m, sub_argc, sub_argv);
  kh_meta_free(m);
  return rc;
}
