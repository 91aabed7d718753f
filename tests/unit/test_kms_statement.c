/* Device statements through the key service (lib/kms/statement.c,
 * docs/log.md §5.2): appended byte for byte when signed by the named
 * device, refused when anything about them is off. */
#include "keyhold/kms.h"
#include "kms/kms_internal.h"
#include "common/fsutil.h"
#include "common/hex.h"
#include "crypto/crypto.h"
#include "kh_test.h"

#include <sodium.h>
#include <time.h>
#include <unistd.h>

static char tmp[256], region[300];
static const char *account_hex = "0123456789abcdef0123456789abcdef";
static const char *signer = "fedcba9876543210fedcba9876543210";
static const char *subject = "00112233445566778899aabbccddeeff";

/* entry text with a device field signed by sk (docs/log.md §5.1) */
static char *statement(kh_log_entry *en, const uint8_t sk[64], size_t *len)
{
  char *t = NULL, *s = NULL;
  size_t tl = 0;
  en->device[0] = 0;
  if (kh_log_entry_format(en, &t, &tl))
    return NULL;
  static const char ctx[] = "keyhold-device-request v1\n";
  uint8_t *msg = malloc(sizeof ctx - 1 + tl), sig[64];
  memcpy(msg, ctx, sizeof ctx - 1);
  memcpy(msg + sizeof ctx - 1, t, tl);
  crypto_sign_detached(sig, NULL, msg, sizeof ctx - 1 + tl, sk);
  char b64[100];
  kh_b64_encode(b64, sig, 64);
  snprintf(en->device, sizeof en->device, "%.32s:%.88s", signer, b64);
  if (kh_log_entry_format(en, &s, len))
    s = NULL;
  free(msg);
  free(t);
  return s;
}

static void base_entry(kh_log_entry *en, kh_log_op op)
{
  memset(en, 0, sizeof *en);
  en->time = (int64_t)time(NULL);
  snprintf(en->region, sizeof en->region, "test-region");
  snprintf(en->account, sizeof en->account, "%s", account_hex);
  en->op = op;
  snprintf(en->key, sizeof en->key, "%s", subject);
  snprintf(en->requester, sizeof en->requester, "device:%s", signer);
  snprintf(en->reason, sizeof en->reason, "sign_pk AAAA");
}

static void test_statements(void)
{
  kh_kms *k = NULL;
  CHECK_OK(kh_kms_create(region, "test-region"));
  CHECK_OK(kh_kms_open(region, &k));
  if (!k)
    return;
  uint8_t pk[32], sk[64], pk2[32], sk2[64];
  crypto_sign_keypair(pk, sk);
  crypto_sign_keypair(pk2, sk2);
  kh_log_entry en;
  size_t len = 0;
  uint64_t idx = 99, size0 = kh_tlog_size(k->log);

  /* a good enrol and a good revoke: logged exactly as given */
  kh_log_op ops[] = {KH_LOG_OP_ENROL, KH_LOG_OP_REVOKE};
  for (int i = 0; i < 2; i++) {
    base_entry(&en, ops[i]);
    char *s = statement(&en, sk, &len);
    CHECK(s != NULL);
    CHECK_OK(kh_kms_append_statement(k, s, len, pk, &idx));
    CHECK_EQ(idx, size0 + (uint64_t)i);
    uint8_t *got = NULL;
    size_t gl = 0;
    CHECK_OK(kh_tlog_entry(k->log, idx, &got, &gl));
    CHECK(got && gl == len && !memcmp(got, s, len));
    free(got);
    free(s);
  }
  uint64_t size1 = kh_tlog_size(k->log);
  CHECK_EQ(size1, size0 + 2);

  /* refused, and nothing logged: */
  char *s;
  base_entry(&en, KH_LOG_OP_ENROL);
  s = statement(&en, sk2, &len);                       /* another device's key */
  CHECK_ERR(kh_kms_append_statement(k, s, len, pk, NULL), KH_ERR_AUTH);
  free(s);
  base_entry(&en, KH_LOG_OP_UNWRAP);                   /* not a device statement */
  s = statement(&en, sk, &len);
  CHECK_ERR(kh_kms_append_statement(k, s, len, pk, NULL), KH_ERR_FORMAT);
  free(s);
  base_entry(&en, KH_LOG_OP_ENROL);                    /* another region */
  snprintf(en.region, sizeof en.region, "elsewhere");
  s = statement(&en, sk, &len);
  CHECK_ERR(kh_kms_append_statement(k, s, len, pk, NULL), KH_ERR_FORMAT);
  free(s);
  base_entry(&en, KH_LOG_OP_REVOKE);                   /* requester is not the signer */
  snprintf(en.requester, sizeof en.requester, "device:%s", subject);
  s = statement(&en, sk, &len);
  CHECK_ERR(kh_kms_append_statement(k, s, len, pk, NULL), KH_ERR_FORMAT);
  free(s);
  base_entry(&en, KH_LOG_OP_REVOKE);                   /* no signature at all */
  char *plain = NULL;
  CHECK_OK(kh_log_entry_format(&en, &plain, &len));
  CHECK_ERR(kh_kms_append_statement(k, plain, len, pk, NULL), KH_ERR_FORMAT);
  free(plain);
  base_entry(&en, KH_LOG_OP_ENROL);                    /* altered after signing */
  s = statement(&en, sk, &len);
  char *r = strstr(s, "reason sign_pk AAAA");
  r[16] = 'B';
  CHECK_ERR(kh_kms_append_statement(k, s, len, pk, NULL), KH_ERR_AUTH);
  free(s);
  base_entry(&en, KH_LOG_OP_ENROL);                    /* fields out of canonical order */
  s = statement(&en, sk, &len);
  char *dev = strstr(s, "device ");
  size_t dl = strlen(dev);
  char *reord = malloc(len + 1);
  size_t head = (size_t)(strstr(s, "time ") - s);
  memcpy(reord, s, head);
  memcpy(reord + head, dev, dl);
  memcpy(reord + head + dl, s + head, len - head - dl);
  reord[len] = 0;
  CHECK_ERR(kh_kms_append_statement(k, reord, len, pk, NULL), KH_ERR_FORMAT);
  free(reord);
  free(s);
  CHECK_EQ(kh_tlog_size(k->log), size1);
  kh_kms_free(k);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  const char *base = getenv("TMPDIR");
  snprintf(tmp, sizeof tmp, "%s/kh-kmsst-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmp))
    return 1;
  snprintf(region, sizeof region, "%s/region", tmp);
  char op[300];
  snprintf(op, sizeof op, "%s/operator", tmp);
  setenv("KEYHOLD_OPERATOR_DIR", op, 1);
  unsetenv("KEYHOLD_OPERATOR_SECRET_FILE");
  unsetenv("KEYHOLD_PKCS11_MODULE");
  kh_mkdirs(region, 0700);
  RUN(test_statements);
  int rc = kh_test_done("test_kms_statement");
  kh_remove_tree(tmp);
  return rc;
}
