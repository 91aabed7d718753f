/* Unit tests for lib/common/hex: hex and base64 vectors (RFC 4648) and
 * strict rejection of malformed text. */
#include "common/hex.h"
#include "common/err.h"
#include "kh_test.h"

#include <sodium.h>
#include <string.h>

static void test_hex(void)
{
  static const uint8_t bin[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff};
  char hex[2 * sizeof bin + 1];
  memset(hex, 'Z', sizeof hex);
  kh_hex_encode(hex, bin, sizeof bin);
  CHECK(strcmp(hex, "00017f80abcdefff") == 0);
  kh_hex_encode(hex, bin, 0);
  CHECK_EQ(hex[0], 0);

  uint8_t out[8];
  CHECK_OK(kh_hex_decode(out, 8, "00017f80abcdefff", 16));
  CHECK_MEM(out, bin, 8);
  CHECK_OK(kh_hex_decode(out, 8, "00017F80ABCDEFFF", 16)); /* either case */
  CHECK_MEM(out, bin, 8);
  CHECK_OK(kh_hex_decode(out, 0, "", 0));
  /* wrong length, odd length, bad digit, spaces, embedded NUL */
  CHECK_EQ(kh_hex_decode(out, 8, "00017f80abcdef", 14), KH_ERR_FORMAT);
  CHECK_EQ(kh_hex_decode(out, 8, "00017f80abcdefff00", 18), KH_ERR_FORMAT);
  CHECK_EQ(kh_hex_decode(out, 4, "0001g7f8", 8), KH_ERR_FORMAT);
  CHECK_EQ(kh_hex_decode(out, 4, "00 17f80", 8), KH_ERR_FORMAT);
  CHECK_EQ(kh_hex_decode(out, 4, "00:1:7f8", 8), KH_ERR_FORMAT);
  CHECK_EQ(kh_hex_decode(out, 4, "0001\0" "7f8", 8), KH_ERR_FORMAT);
  CHECK_EQ(kh_hex_decode(out, 1, "0x", 2), KH_ERR_FORMAT);
}

static void test_b64_vectors(void)
{
  static const struct { const char *in, *out; } v[] = {
    {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    size_t n = strlen(v[i].in);
    char enc[32];
    CHECK_EQ(kh_b64_len(n), strlen(v[i].out) + 1);
    kh_b64_encode(enc, (const uint8_t *)v[i].in, n);
    CHECK(strcmp(enc, v[i].out) == 0);
    uint8_t dec[16];
    size_t dl = 99;
    CHECK_OK(kh_b64_decode(dec, sizeof dec, &dl, v[i].out, strlen(v[i].out)));
    CHECK_EQ(dl, n);
    CHECK_MEM(dec, v[i].in, n);
  }
  /* binary with the characters that differ between variants */
  static const uint8_t b[] = {0xfb, 0xff, 0xbf};
  char enc[8];
  kh_b64_encode(enc, b, 3);
  CHECK(strcmp(enc, "+/+/") == 0);
}

static void test_b64_rejects(void)
{
  uint8_t dec[16];
  size_t dl;
  CHECK_EQ(kh_b64_decode(dec, sizeof dec, &dl, "Zg", 2), KH_ERR_FORMAT);      /* no padding */
  CHECK_EQ(kh_b64_decode(dec, sizeof dec, &dl, "Zg=", 3), KH_ERR_FORMAT);     /* short pad */
  CHECK_EQ(kh_b64_decode(dec, sizeof dec, &dl, "Zm9v!", 5), KH_ERR_FORMAT);   /* bad char */
  CHECK_EQ(kh_b64_decode(dec, sizeof dec, &dl, "-_-_", 4), KH_ERR_FORMAT);    /* url variant */
  CHECK_EQ(kh_b64_decode(dec, sizeof dec, &dl, "Zm9v Zm9v", 9), KH_ERR_FORMAT);
  CHECK_EQ(kh_b64_decode(dec, sizeof dec, &dl, "Zg==Zg==", 8), KH_ERR_FORMAT); /* after pad */
  /* output bound */
  CHECK_EQ(kh_b64_decode(dec, 5, &dl, "Zm9vYmFy", 8), KH_ERR_FORMAT);
  CHECK_OK(kh_b64_decode(dec, 6, &dl, "Zm9vYmFy", 8));
  CHECK_EQ(dl, 6);
}

static void test_b64_random_roundtrip(void)
{
  int bad = 0;
  for (int i = 0; i < 500; i++) {
    uint8_t in[100], out[100];
    size_t n = randombytes_uniform(sizeof in + 1), dl = 0;
    randombytes_buf(in, n);
    char enc[140];
    kh_b64_encode(enc, in, n);
    if (strlen(enc) + 1 != kh_b64_len(n) ||
        kh_b64_decode(out, sizeof out, &dl, enc, strlen(enc)) || dl != n || memcmp(in, out, n))
      bad++;
  }
  CHECK_EQ(bad, 0);
}

int main(void)
{
  if (sodium_init() < 0)
    return 1;
  RUN(test_hex);
  RUN(test_b64_vectors);
  RUN(test_b64_rejects);
  RUN(test_b64_random_roundtrip);
  return kh_test_done("test_hex");
}
