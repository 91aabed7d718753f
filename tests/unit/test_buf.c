/* Unit tests for lib/common/buf: caps, little-endian writers, uvar encoder,
 * detach/reset/wipe. */
#include "common/buf.h"
#include "common/err.h"
#include "kh_test.h"

#include <stdint.h>

static void test_cap_enforced(void)
{
  kh_buf b;
  kh_buf_init(&b, 10);
  CHECK_OK(kh_buf_append(&b, "0123456789", 10));
  CHECK_EQ(b.len, 10);
  /* one byte past the cap fails and leaves the buffer as it was */
  CHECK_EQ(kh_buf_append(&b, "x", 1), KH_ERR_TOOBIG);
  CHECK_EQ(b.len, 10);
  CHECK_MEM(b.data, "0123456789", 10);
  CHECK_EQ(kh_buf_put_u8(&b, 1), KH_ERR_TOOBIG);
  CHECK_EQ(kh_buf_put_u64(&b, 1), KH_ERR_TOOBIG);
  CHECK_EQ(kh_buf_put_uvar(&b, 0), KH_ERR_TOOBIG);
  CHECK_EQ(kh_buf_printf(&b, "%d", 1), KH_ERR_TOOBIG);
  CHECK_EQ(b.len, 10);
  /* empty append at the cap is fine */
  CHECK_OK(kh_buf_append(&b, NULL, 0));
  kh_buf_reset(&b);
  CHECK_EQ(b.len, 0);
  /* a multi-byte write that straddles the cap is all or nothing */
  CHECK_OK(kh_buf_append(&b, "abcdefg", 7));
  CHECK_EQ(kh_buf_put_u32(&b, 0x11223344), KH_ERR_TOOBIG);
  CHECK_EQ(b.len, 7);
  CHECK_MEM(b.data, "abcdefg", 7);
  /* huge reservation requests do not overflow */
  CHECK_EQ(kh_buf_reserve(&b, SIZE_MAX), KH_ERR_TOOBIG);
  CHECK_EQ(kh_buf_reserve(&b, SIZE_MAX - 3), KH_ERR_TOOBIG);
  CHECK_EQ(b.len, 7);
  kh_buf_release(&b);
  CHECK(b.data == NULL);

  /* printf: the trailing NUL needs room too, but is not counted in len */
  kh_buf_init(&b, 6);
  CHECK_OK(kh_buf_printf(&b, "%s", "abcde"));
  CHECK_EQ(b.len, 5);
  CHECK_MEM(b.data, "abcde", 6);
  kh_buf_release(&b);

  /* growth to a large cap keeps every byte */
  kh_buf_init(&b, 100000);
  int bad = 0;
  for (int i = 0; i < 100000; i++)
    bad += kh_buf_put_u8(&b, (uint8_t)(i * 7)) != KH_OK;
  CHECK_EQ(bad, 0);
  CHECK_EQ(b.len, 100000);
  for (int i = 0; i < 100000; i++)
    bad += b.data[i] != (uint8_t)(i * 7);
  CHECK_EQ(bad, 0);
  CHECK_EQ(kh_buf_put_u8(&b, 0), KH_ERR_TOOBIG);
  CHECK(b.cap <= 100000);
  kh_buf_release(&b);
}

static void test_le_writers(void)
{
  kh_buf b;
  kh_buf_init(&b, 64);
  CHECK_OK(kh_buf_put_u16(&b, 0x1234));
  CHECK_OK(kh_buf_put_u32(&b, 0xdeadbeef));
  CHECK_OK(kh_buf_put_u64(&b, 0x0102030405060708ull));
  static const uint8_t want[] = {0x34, 0x12, 0xef, 0xbe, 0xad, 0xde, 8, 7, 6, 5, 4, 3, 2, 1};
  CHECK_EQ(b.len, sizeof want);
  CHECK_MEM(b.data, want, sizeof want);
  uint8_t t[8];
  kh_le64_put(t, 0xa1b2c3d4e5f60718ull);
  CHECK(kh_le64_get(t) == 0xa1b2c3d4e5f60718ull);
  CHECK_EQ(t[0], 0x18);
  kh_be64_put(t, 0xa1b2c3d4e5f60718ull);
  CHECK_EQ(t[0], 0xa1);
  CHECK(kh_be64_get(t) == 0xa1b2c3d4e5f60718ull);
  kh_buf_release(&b);
}

static void test_uvar_known(void)
{
  struct { uint64_t v; uint8_t enc[10]; size_t n; } vec[] = {
    {0, {0x00}, 1},
    {1, {0x01}, 1},
    {127, {0x7f}, 1},
    {128, {0x80, 0x01}, 2},
    {300, {0xac, 0x02}, 2},
    {16383, {0xff, 0x7f}, 2},
    {16384, {0x80, 0x80, 0x01}, 3},
    {1ull << 63, {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 10},
    {UINT64_MAX, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10},
  };
  for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
    kh_buf b;
    kh_buf_init(&b, 16);
    CHECK_OK(kh_buf_put_uvar(&b, vec[i].v));
    CHECK_EQ(b.len, vec[i].n);
    CHECK_MEM(b.data, vec[i].enc, vec[i].n);
    kh_buf_release(&b);
  }
}

static void test_lbytes_str_detach(void)
{
  kh_buf b;
  kh_buf_init(&b, 1024);
  CHECK_OK(kh_buf_put_str(&b, "hello"));
  CHECK_OK(kh_buf_put_lbytes(&b, "", 0));
  CHECK_EQ(b.len, 7);
  CHECK_MEM(b.data, "\x05hello\x00", 7);
  size_t n = 0;
  uint8_t *p = kh_buf_detach(&b, &n);
  CHECK_EQ(n, 7);
  CHECK(p != NULL);
  CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
  CHECK_EQ(b.max, 1024); /* still usable after detach */
  CHECK_OK(kh_buf_put_u8(&b, 9));
  CHECK_EQ(b.len, 1);
  free(p);
  /* lbytes whose body would pass the cap: error */
  kh_buf_release(&b);
  kh_buf_init(&b, 4);
  CHECK_EQ(kh_buf_put_lbytes(&b, "abcd", 4), KH_ERR_TOOBIG);
  kh_buf_release(&b);
}

static void test_wipe(void)
{
  kh_buf b;
  kh_buf_init(&b, 128);
  CHECK_OK(kh_buf_append(&b, "secretsecretsecret", 18));
  kh_buf_wipe(&b);
  static const uint8_t z[18];
  CHECK_MEM(b.data, z, 18);
  kh_buf_release(&b);
  kh_buf_wipe(&b); /* no data: no-op */
  CHECK(b.data == NULL);
}

int main(void)
{
  RUN(test_cap_enforced);
  RUN(test_le_writers);
  RUN(test_uvar_known);
  RUN(test_lbytes_str_detach);
  RUN(test_wipe);
  return kh_test_done("test_buf");
}
