/* Unit tests for lib/common/wire: bounded reader, uvar decoding (round trip,
 * boundaries, overlong and truncated encodings), lbytes bounds, sticky errors. */
#include "common/buf.h"
#include "common/wire.h"
#include "common/err.h"
#include "kh_test.h"

#include <sodium.h>

static uint64_t decode1(const uint8_t *p, size_t n, bool *ok, size_t *used)
{
  kh_rd r;
  kh_rd_init(&r, p, n);
  uint64_t v = kh_rd_uvar(&r);
  *ok = kh_rd_ok(&r);
  *used = r.off;
  return v;
}

static void test_uvar_roundtrip(void)
{
  uint64_t vals[] = {0, 1, 127, 128, 255, 256, 16383, 16384, 0xffffffffull, 0x100000000ull,
                     (1ull << 56) - 1, 1ull << 56, (1ull << 63) - 1, 1ull << 63,
                     UINT64_MAX - 1, UINT64_MAX};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    kh_buf b;
    kh_buf_init(&b, 16);
    CHECK_OK(kh_buf_put_uvar(&b, vals[i]));
    bool ok;
    size_t used;
    uint64_t v = decode1(b.data, b.len, &ok, &used);
    CHECK(ok);
    CHECK(v == vals[i]);
    CHECK_EQ(used, b.len);
    /* every strict prefix is truncated */
    for (size_t k = 0; k < b.len; k++) {
      v = decode1(b.data, k, &ok, &used);
      CHECK(!ok);
      CHECK_EQ(v, 0);
    }
    kh_buf_release(&b);
  }
  /* random values */
  int bad = 0;
  for (int i = 0; i < 10000; i++) {
    uint64_t x;
    randombytes_buf(&x, sizeof x);
    x >>= randombytes_uniform(64);
    uint8_t t[10];
    kh_buf b = {t, 0, sizeof t, sizeof t};
    if (kh_buf_put_uvar(&b, x)) { bad++; continue; }
    bool ok;
    size_t used;
    if (decode1(t, b.len, &ok, &used) != x || !ok || used != b.len)
      bad++;
  }
  CHECK_EQ(bad, 0);
}

static void test_uvar_rejects(void)
{
  bool ok;
  size_t used;
  /* overlong: a trailing zero continuation byte */
  static const uint8_t over1[] = {0x80, 0x00};
  decode1(over1, sizeof over1, &ok, &used);
  CHECK(!ok);
  static const uint8_t over2[] = {0xff, 0x80, 0x00};
  decode1(over2, sizeof over2, &ok, &used);
  CHECK(!ok);
  /* 10th byte may only be 0 or 1 */
  static const uint8_t big[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
  decode1(big, sizeof big, &ok, &used);
  CHECK(!ok);
  static const uint8_t big2[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f};
  decode1(big2, sizeof big2, &ok, &used);
  CHECK(!ok);
  /* 11 bytes */
  static const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81,
                                   0x00};
  decode1(eleven, sizeof eleven, &ok, &used);
  CHECK(!ok);
  /* 10th byte with a continuation bit */
  static const uint8_t cont10[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81,
                                   0x01};
  decode1(cont10, sizeof cont10, &ok, &used);
  CHECK(!ok);
  /* UINT64_MAX with an overlong 0x01 10th byte is the canonical form: accepted */
  static const uint8_t max[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  CHECK(decode1(max, sizeof max, &ok, &used) == UINT64_MAX);
  CHECK(ok);
  /* plain truncation */
  static const uint8_t trunc[] = {0x80};
  decode1(trunc, 1, &ok, &used);
  CHECK(!ok);
  decode1(NULL, 0, &ok, &used);
  CHECK(!ok);
  /* a single zero byte is the canonical 0 */
  static const uint8_t zero[] = {0x00};
  CHECK_EQ(decode1(zero, 1, &ok, &used), 0);
  CHECK(ok);
}

static void test_fixed_and_sticky(void)
{
  static const uint8_t d[] = {0x01, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12,
                              8, 7, 6, 5, 4, 3, 2, 1, 0xaa};
  kh_rd r;
  kh_rd_init(&r, d, sizeof d);
  CHECK_EQ(kh_rd_u8(&r), 1);
  CHECK_EQ(kh_rd_u16(&r), 0x1234);
  CHECK_EQ(kh_rd_u32(&r), 0x12345678);
  CHECK(kh_rd_u64(&r) == 0x0102030405060708ull);
  CHECK_EQ(kh_rd_left(&r), 1);
  CHECK(!kh_rd_done(&r));
  /* u16 with one byte left: fails, sticky */
  CHECK_EQ(kh_rd_u16(&r), 0);
  CHECK(!kh_rd_ok(&r));
  CHECK_EQ(kh_rd_left(&r), 0);
  CHECK(!kh_rd_done(&r));
  /* after the failure even a 1-byte read that would fit fails */
  CHECK_EQ(kh_rd_u8(&r), 0);
  CHECK(kh_rd_bytes(&r, 0) == NULL);
  uint8_t out[4] = {9, 9, 9, 9};
  kh_rd_copy(&r, out, 4);
  static const uint8_t z4[4];
  CHECK_MEM(out, z4, 4);
  CHECK(!kh_rd_ok(&r));

  /* kh_rd_fail marks a semantic error */
  kh_rd_init(&r, d, sizeof d);
  kh_rd_fail(&r);
  CHECK_EQ(kh_rd_u8(&r), 0);
  CHECK(!kh_rd_done(&r));

  /* exact consumption */
  kh_rd_init(&r, d, 3);
  CHECK(kh_rd_bytes(&r, 3) == d);
  CHECK(kh_rd_done(&r));
  CHECK(kh_rd_bytes(&r, 0) != NULL); /* zero bytes at the end is fine */
  CHECK(kh_rd_done(&r));
  /* n larger than the input (and huge n) never wraps */
  kh_rd_init(&r, d, sizeof d);
  kh_rd_u8(&r);
  CHECK(kh_rd_bytes(&r, SIZE_MAX) == NULL);
  CHECK(!kh_rd_ok(&r));
}

static void test_lbytes(void)
{
  kh_buf b;
  kh_buf_init(&b, 1024);
  CHECK_OK(kh_buf_put_lbytes(&b, "abcdef", 6));
  kh_rd r;
  size_t n = 99;
  kh_rd_init(&r, b.data, b.len);
  const uint8_t *p = kh_rd_lbytes(&r, 6, &n);
  CHECK(p != NULL);
  CHECK_EQ(n, 6);
  CHECK_MEM(p, "abcdef", 6);
  CHECK(kh_rd_done(&r));
  /* length above max */
  kh_rd_init(&r, b.data, b.len);
  n = 99;
  CHECK(kh_rd_lbytes(&r, 5, &n) == NULL);
  CHECK_EQ(n, 0);
  CHECK(!kh_rd_ok(&r));
  /* length beyond the input */
  kh_rd_init(&r, b.data, b.len - 1);
  CHECK(kh_rd_lbytes(&r, 100, &n) == NULL);
  CHECK(!kh_rd_ok(&r));
  /* length field of UINT64_MAX must not wrap */
  static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'x'};
  kh_rd_init(&r, huge, sizeof huge);
  CHECK(kh_rd_lbytes(&r, SIZE_MAX, &n) == NULL);
  CHECK(!kh_rd_ok(&r));
  /* empty */
  static const uint8_t empty[] = {0};
  kh_rd_init(&r, empty, 1);
  CHECK(kh_rd_lbytes(&r, 0, &n) != NULL);
  CHECK_EQ(n, 0);
  CHECK(kh_rd_done(&r));
  kh_buf_release(&b);
}

int main(void)
{
  if (sodium_init() < 0)
    return 1;
  RUN(test_uvar_roundtrip);
  RUN(test_uvar_rejects);
  RUN(test_fixed_and_sticky);
  RUN(test_lbytes);
  return kh_test_done("test_wire");
}
