/* Enrolment by code and device statements (lib/enrol/enrol.c,
 * docs/protocol.md §9, docs/log.md §5.2): the exact signed and tagged byte
 * strings, strict bodies, and statements that verify. */
#include "keyhold/enrol.h"
#include "keyhold/proto.h"
#include "crypto/crypto.h"
#include "kh_test.h"

#include <sodium.h>

static const char *inst = "0123456789abcdef0123456789abcdef";

static kh_err sign_with(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
  crypto_sign_detached(sig, NULL, msg, len, ctx);
  return KH_OK;
}

static void test_request(void)
{
  kh_enrol_request r, g;
  memset(&r, 0, sizeof r);
  snprintf(r.name, sizeof r.name, "laptop \"2\"");
  memset(r.sign_pk, 1, 32);
  memset(r.box_pk, 2, 32);
  memset(r.salt, 3, 16);
  memset(r.tag, 4, 32);
  memset(r.sig, 6, 64);
  memcpy(r.bucket, "AB", 3);
  snprintf(r.challenge, sizeof r.challenge, "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=");
  char *t = NULL, *st = NULL;
  size_t tl = 0, sl = 0;
  CHECK_OK(kh_enrol_request_json(&r, &t, &tl));
  CHECK_OK(kh_enrol_request_parse(t, tl, &g));
  CHECK(!memcmp(&r, &g, sizeof r));
  CHECK_OK(kh_enrol_request_statement(inst, &r, &st, &sl));
  const char *want = "keyhold-enrol-request v1\n0123456789abcdef0123456789abcdef\n"
                     "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=\n"
                     "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
                     "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n"
                     "laptop \"2\"\nAwMDAwMDAwMDAwMDAwMDAw==\n"
                     "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=\nAB\n";
  CHECK(st && !strcmp(st, want) && sl == strlen(want));
  free(st);
  /* one changed field at a time is refused */
  const char *swaps[][2] = {
    {"\"bucket\":\"AB\"", "\"bucket\":\"AI\""},    /* I is not a code character */
    {"\"bucket\":\"AB\"", "\"bucket\":\"ab\""},
    {"\"name\":\"laptop", "\"name\":\" laptop"},
    {"AwMDAwMDAwMDAwMDAwMDAw==", "AwMDAwMDAwMDAwMDAwMDAx=="}, /* non-canonical padding bits */
    {"AwMDAwMDAwMDAwMDAwMDAw==", "AwMDAwMDAwMDAwMDAwMD"},
  };
  for (size_t i = 0; i < sizeof swaps / sizeof swaps[0]; i++) {
    char buf[2048];
    const char *p = strstr(t, swaps[i][0]);
    CHECK(p != NULL);
    if (!p)
      continue;
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - t), t, swaps[i][1],
             p + strlen(swaps[i][0]));
    CHECK_ERR(kh_enrol_request_parse(buf, strlen(buf), &g), KH_ERR_FORMAT);
  }
  free(t);
}

static void test_tags(void)
{
  uint8_t k[32], k2[32], spk[32], bpk[32], t1[32], t2[32];
  randombytes_buf(k, 32);
  randombytes_buf(k2, 32);
  randombytes_buf(spk, 32);
  randombytes_buf(bpk, 32);
  kh_enrol_tag(k, inst, spk, bpk, "phone", t1);
  kh_enrol_tag(k, inst, spk, bpk, "phone", t2);
  CHECK(!memcmp(t1, t2, 32));
  /* the tag is the HMAC of the documented statement */
  {
    char sp[45], bp[45], msg[512];
    sodium_bin2base64(sp, sizeof sp, spk, 32, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(bp, sizeof bp, bpk, 32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(msg, sizeof msg, "keyhold-enrol v1\n%s\n%s\n%s\nphone\n", inst, sp, bp);
    CHECK(crypto_auth_hmacsha512256_verify(t1, (const uint8_t *)msg, strlen(msg), k) == 0);
  }
  kh_enrol_tag(k2, inst, spk, bpk, "phone", t2);
  CHECK(memcmp(t1, t2, 32) != 0);
  bpk[0] ^= 1;
  kh_enrol_tag(k, inst, spk, bpk, "phone", t2);
  CHECK(memcmp(t1, t2, 32) != 0);
  /* wrap tag binds account, device, caps and the wrap */
  uint8_t wrap[81], w1[32], w2[32];
  randombytes_buf(wrap, sizeof wrap);
  kh_enrol_wrap_tag(k, inst, inst, inst, KH_CAP_READ, wrap, sizeof wrap, w1);
  kh_enrol_wrap_tag(k, inst, inst, inst, KH_CAP_READ | KH_CAP_BACKUP, wrap, sizeof wrap, w2);
  CHECK(memcmp(w1, w2, 32) != 0);
  wrap[5] ^= 1;
  kh_enrol_wrap_tag(k, inst, inst, inst, KH_CAP_READ, wrap, sizeof wrap, w2);
  CHECK(memcmp(w1, w2, 32) != 0);
}

static void test_statement(void)
{
  uint8_t pk[32], sk[64], spk[32], bpk[32];
  crypto_sign_keypair(pk, sk);
  memset(spk, 7, 32);
  memset(bpk, 8, 32);
  char reason[512], *text = NULL;
  size_t len = 0;
  const char *acct = "00112233445566778899aabbccddeeff", *sub = "ffeeddccbbaa99887766554433221100";
  CHECK_OK(kh_enrol_reason(KH_CAP_READ | KH_CAP_ADMIN, spk, bpk, "my phone", reason,
                           sizeof reason));
  CHECK(!strcmp(reason, "caps read,admin sign_pk BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc= "
                        "box_pk CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg= name my phone"));
  CHECK_ERR(kh_enrol_reason(0, spk, bpk, "x", reason, sizeof reason), KH_ERR_INVAL);
  CHECK_OK(kh_enrol_statement(KH_LOG_OP_ENROL, 1795460400, "local", acct, sub, inst, reason,
                              sign_with, sk, &text, &len));
  kh_log_entry en;
  CHECK_OK(kh_log_entry_parse(text, len, &en));
  CHECK_EQ(en.op, KH_LOG_OP_ENROL);
  CHECK(!strcmp(en.key, sub) && !strcmp(en.requester, "device:0123456789abcdef0123456789abcdef"));
  CHECK(!strcmp(en.reason, reason));
  CHECK_OK(kh_kms_verify_device_entry(&en, inst, pk));
  en.time++;
  CHECK_ERR(kh_kms_verify_device_entry(&en, inst, pk), KH_ERR_AUTH);
  free(text);
  CHECK_ERR(kh_enrol_statement(KH_LOG_OP_UNWRAP, 1795460400, "local", acct, sub, inst, reason,
                               sign_with, sk, &text, &len),
            KH_ERR_INVAL);
}

static void test_bodies(void)
{
  kh_enrol_approval a, g;
  memset(&a, 0, sizeof a);
  memcpy(a.device, "00112233445566778899aabbccddeeff", 33);
  a.caps = KH_CAP_BACKUP | KH_CAP_READ;
  uint8_t wrap[81];
  memset(wrap, 9, sizeof wrap);
  a.wrap = wrap;
  a.wrap_len = sizeof wrap;
  memset(a.wrap_tag, 1, 32);
  a.entry = "line\n\"quoted\"\n";
  a.entry_len = strlen(a.entry);
  char *t = NULL;
  size_t tl = 0;
  CHECK_OK(kh_enrol_approval_json(&a, &t, &tl));
  CHECK(t && strstr(t, "\"caps\":[\"backup\",\"read\"]"));
  CHECK_OK(kh_enrol_approval_parse(t, tl, &g));
  CHECK(!strcmp(g.device, a.device) && g.caps == a.caps && g.wrap_len == 81 &&
        !memcmp(g.wrap, wrap, 81) && g.entry_len == a.entry_len &&
        !memcmp(g.entry, a.entry, a.entry_len));
  kh_enrol_approval_release(&g);
  free(t);
  char cj[64];
  kh_enrol_caps_json(KH_CAP_ALL, cj, sizeof cj);
  CHECK(!strcmp(cj, "[\"backup\",\"read\",\"prune\",\"admin\"]"));
  kh_enrol_caps_json(KH_CAP_PRUNE, cj, sizeof cj);
  CHECK(!strcmp(cj, "[\"prune\"]"));
  /* result */
  kh_enrol_result r, rg;
  memset(&r, 0, sizeof r);
  r.state = KH_POLL_APPROVED;
  memcpy(r.account, inst, 33);
  memcpy(r.device, a.device, 33);
  r.caps = KH_CAP_READ;
  r.wrap = wrap;
  r.wrap_len = 81;
  CHECK_OK(kh_enrol_result_json(&r, &t, &tl));
  CHECK_OK(kh_enrol_result_parse(t, tl, &rg));
  CHECK(rg.state == KH_POLL_APPROVED && rg.caps == KH_CAP_READ && rg.wrap_len == 81 &&
        !strcmp(rg.account, inst));
  kh_enrol_result_release(&rg);
  free(t);
  CHECK_OK(kh_enrol_result_parse("{\"state\":\"refused\"}", 19, &rg));
  CHECK_EQ(rg.state, KH_POLL_REFUSED);
  CHECK_ERR(kh_enrol_result_parse("{\"state\":\"approved\"}", 20, &rg), KH_ERR_FORMAT);
  CHECK_ERR(kh_enrol_result_parse("{\"state\":\"maybe\"}", 17, &rg), KH_ERR_FORMAT);
  /* devices */
  kh_enrol_device d[2], *got = NULL;
  size_t n = 0;
  memset(d, 0, sizeof d);
  memcpy(d[0].id, inst, 33);
  snprintf(d[0].name, sizeof d[0].name, "laptop");
  d[0].caps = KH_CAP_ALL;
  d[0].enrolled = 100;
  memcpy(d[1].id, a.device, 33);
  snprintf(d[1].name, sizeof d[1].name, "phone");
  d[1].caps = KH_CAP_READ;
  d[1].enrolled = 200;
  d[1].revoked = 300;
  CHECK_OK(kh_enrol_devices_json(d, 2, &t, &tl));
  CHECK(t && strstr(t, "\"revoked\":null") && strstr(t, "\"revoked\":300"));
  CHECK_OK(kh_enrol_devices_parse(t, tl, &got, &n));
  CHECK(n == 2 && got && !memcmp(got, d, sizeof d));
  free(got);
  free(t);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  RUN(test_request);
  RUN(test_tags);
  RUN(test_statement);
  RUN(test_bodies);
  return kh_test_done("test_enrol");
}
