/* The key service with its root key in a PKCS#11 token (SoftHSM2, a token
 * initialised in a temporary directory): create, wrap, logged unwrap,
 * rotate, escrow, destroy.  SoftHSM2 missing is a FAILURE, never a skip. */
#include "keyhold/kms.h"
#include "kms/kms_internal.h"
#include "common/fsutil.h"
#include "crypto/crypto.h"
#include "kh_test.h"
#include "softhsm_fixture.h"

#include <sodium.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


static char tmpdir[256], region[300];
static const char *account_id = "00aa11bb22cc33dd44ee55ff66778899";

/* the key service finds the token through these variables */
static bool setup_token(void)
{
  char pinf[300];
  snprintf(pinf, sizeof pinf, "%s/pin", tmpdir);
  if (!kh_softhsm_token(tmpdir, "kh-kms") ||
      kh_write_file_atomic(pinf, "1234\n", 5, 0600, false) != KH_OK)
    return false;
  setenv("KEYHOLD_PKCS11_TOKEN", "kh-kms", 1);
  setenv("KEYHOLD_PKCS11_PIN_FILE", pinf, 1);
  return true;
}

static void test_kms_pkcs11(void)
{
  uint8_t key[32];
  randombytes_buf(key, 32);
  CHECK_OK(kh_kms_create(region, "hsm-region"));
  /* no sealed key file, no operator secret: the root key is in the token */
  char p[400];
  struct stat st;
  snprintf(p, sizeof p, "%s/kms/root", region);
  CHECK(stat(p, &st) != 0);
  uint8_t *cfg = NULL;
  size_t len = 0;
  snprintf(p, sizeof p, "%s/kms/config", region);
  CHECK_OK(kh_read_file(p, 4096, &cfg, &len));
  /* the key label is keyed by the region's instance id */
  char want[200], rkid[200];
  const uint8_t *ins = cfg ? memmem(cfg, len, "\ninstance ", 10) : NULL;
  CHECK(ins && ins + 10 + 32 <= cfg + len);
  if (!ins)
    return;
  snprintf(want, sizeof want, "backend pkcs11\npkcs11-label keyhold-hsm-region-%.32s\n",
           (const char *)ins + 10);
  snprintf(rkid, sizeof rkid, "pkcs11:keyhold-hsm-region-%.32s:v1", (const char *)ins + 10);
  CHECK(memmem(cfg, len, want, strlen(want)) != NULL);
  free(cfg);
  kh_kms *k = NULL;
  CHECK_OK(kh_kms_open(region, &k));
  if (!k)
    return;
  CHECK(!strcmp(kh_kms_rootkey_id(k), rkid));
  kh_kms_request rq = {"operator", "hsm test", NULL, NULL, NULL};
  CHECK_OK(kh_kms_wrap(k, account_id, key, 2, &rq));
  kh_kms_release r;
  CHECK_OK(kh_kms_unwrap(k, account_id, &rq, &r));
  CHECK(r.key && !memcmp(r.key, key, 32) && r.cipher == 2 && r.index == 1);
  CHECK_OK(kh_log_verify_inclusion(r.leaf, r.index, r.size, r.proof, r.plen, r.root));
  kh_kms_release_clear(&r);
  /* fail closed here too */
  kh_kms_test_fail_appends(k, 1);
  CHECK_EQ(kh_kms_unwrap(k, account_id, &rq, &r), KH_ERR_LOG);
  CHECK(r.key == NULL);
  /* escrow: derive runs in the token (HMAC) */
  kh_secret *good = kh_secret_new("hsm words", 9), *bad = kh_secret_new("x", 1);
  uint32_t left;
  CHECK_OK(kh_kms_escrow_enable(k, account_id, key, 2, good, &rq));
  CHECK_EQ(kh_kms_escrow_recover(k, account_id, bad, &rq, &r, &left), KH_ERR_PASSCODE);
  CHECK_OK(kh_kms_escrow_recover(k, account_id, good, &rq, &r, &left));
  CHECK(r.key && !memcmp(r.key, key, 32));
  kh_kms_release_clear(&r);
  kh_secret_free(good);
  kh_secret_free(bad);
  kh_kms_free(k);
  /* reopen: the log key is wrapped by the token key */
  k = NULL;
  char mk[400];
  snprintf(mk, sizeof mk, "%s/accounts/%s", region, account_id);
  kh_mkdirs(mk, 0700);
  snprintf(mk, sizeof mk, "%s/accounts/%s/account", region, account_id);
  kh_write_file_atomic(mk, "keyhold-account v1\n", 19, 0600, false);
  CHECK_OK(kh_kms_open(region, &k));
  if (!k)
    return;
  size_t n = 0;
  CHECK_OK(kh_kms_rotate(k, &rq, &n));
  CHECK_EQ(n, 1);
  CHECK(strstr(kh_kms_rootkey_id(k), ":v2") != NULL);
  CHECK_OK(kh_kms_unwrap(k, account_id, &rq, &r));
  CHECK(r.key && !memcmp(r.key, key, 32));
  kh_kms_release_clear(&r);
  CHECK_OK(kh_kms_destroy(k, account_id, &rq));
  CHECK_EQ(kh_kms_unwrap(k, account_id, &rq, &r), KH_ERR_STATE);
  CHECK_OK(kh_tlog_verify(k->log, NULL, NULL));
  kh_kms_free(k);
  /* a wrong PIN opens nothing */
  char pinf[300];
  snprintf(pinf, sizeof pinf, "%s/badpin", tmpdir);
  kh_write_file_atomic(pinf, "0000\n", 5, 0600, false);
  const char *good_pin = getenv("KEYHOLD_PKCS11_PIN_FILE");
  char save[300];
  snprintf(save, sizeof save, "%s", good_pin);
  setenv("KEYHOLD_PKCS11_PIN_FILE", pinf, 1);
  CHECK_ERR(kh_kms_open(region, &k), KH_ERR_AUTH);
  setenv("KEYHOLD_PKCS11_PIN_FILE", save, 1);
}

/* Two regions with the same short id on one token: each gets its own root
 * key (its label is keyed by the region's instance id), so a rotation of
 * one leaves the other's key alone and neither unwraps the other's wrap. */
static void test_two_regions_one_token(void)
{
  char r1[400], r2[400];
  snprintf(r1, sizeof r1, "%s/twin1", tmpdir);
  snprintf(r2, sizeof r2, "%s/twin2", tmpdir);
  kh_mkdirs(r1, 0700);
  kh_mkdirs(r2, 0700);
  CHECK_OK(kh_kms_create(r1, "twin"));
  CHECK_OK(kh_kms_create(r2, "twin"));
  kh_kms *k1 = NULL, *k2 = NULL;
  CHECK_OK(kh_kms_open(r1, &k1));
  CHECK_OK(kh_kms_open(r2, &k2));
  if (!k1 || !k2)
    goto out;
  char id1[200];
  snprintf(id1, sizeof id1, "%s", kh_kms_rootkey_id(k1));
  CHECK(strncmp(id1, "pkcs11:keyhold-twin-", 20) == 0);
  CHECK(strcmp(id1, kh_kms_rootkey_id(k2)) != 0);
  /* a wrap made in region 1, copied into region 2, does not unwrap there */
  uint8_t key[32];
  randombytes_buf(key, 32);
  kh_kms_request rq = {"operator", "twin test", NULL, NULL, NULL};
  CHECK_OK(kh_kms_wrap(k1, account_id, key, 2, &rq));
  char src[500], dst[500];
  snprintf(src, sizeof src, "%s/accounts/%s/keys", r1, account_id);
  snprintf(dst, sizeof dst, "%s/accounts/%s", r2, account_id);
  kh_mkdirs(dst, 0700);
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cp -r '%s' '%s/'", src, dst);
  CHECK(system(cmd) == 0);
  kh_kms_release r;
  kh_err e = kh_kms_unwrap(k2, account_id, &rq, &r);
  CHECK(e != KH_OK && r.key == NULL);
  if (!e)
    kh_kms_release_clear(&r);
  /* rotating region 2 leaves region 1's root key version alone */
  size_t n = 0;
  CHECK_OK(kh_kms_rotate(k2, &rq, &n));
  CHECK(strstr(kh_kms_rootkey_id(k2), ":v2") != NULL);
  CHECK_OK(kh_kms_unwrap(k1, account_id, &rq, &r));
  CHECK(r.key && !memcmp(r.key, key, 32));
  kh_kms_release_clear(&r);
out:
  kh_kms_free(k1);
  kh_kms_free(k2);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  const char *module = kh_softhsm_module();
  if (!module) {
    fprintf(stderr, "FAIL: SoftHSM2 is not installed (Debian package softhsm2)\n");
    return 1;
  }
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/kh-kms-p11-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmpdir))
    return 1;
  snprintf(region, sizeof region, "%s/region", tmpdir);
  kh_mkdirs(region, 0700);
  setenv("KEYHOLD_PKCS11_MODULE", module, 1);
  unsetenv("KEYHOLD_PKCS11_KEY_LABEL");
  int rc = 1;
  if (!setup_token()) {
    fprintf(stderr, "FAIL: cannot initialise a SoftHSM2 token\n");
    goto out;
  }
  RUN(test_kms_pkcs11);
  RUN(test_two_regions_one_token);
  rc = kh_test_done("test_kms_pkcs11");
out:
  kh_remove_tree(tmpdir);
  return rc;
}
