#include "common/hex.h"
#include "common/err.h"

#include <sodium.h>

void kh_hex_encode(char *out, const uint8_t *in, size_t n)
{
  sodium_bin2hex(out, 2 * n + 1, in, n);
}

kh_err kh_hex_decode(uint8_t *out, size_t n, const char *hex, size_t hexlen)
{
  size_t got = 0;
  const char *end = NULL;
  if (hexlen != 2 * n)
    return kh_seterr(KH_ERR_FORMAT, "expected %zu hex digits, got %zu", 2 * n, hexlen);
  if (sodium_hex2bin(out, n, hex, hexlen, NULL, &got, &end) != 0 || got != n ||
      end != hex + hexlen)
    return kh_seterr(KH_ERR_FORMAT, "not a hex string");
  return KH_OK;
}

size_t kh_b64_len(size_t n)
{
  return sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
}

void kh_b64_encode(char *out, const uint8_t *in, size_t n)
{
  sodium_bin2base64(out, kh_b64_len(n), in, n, sodium_base64_VARIANT_ORIGINAL);
}

kh_err kh_b64_decode(uint8_t *out, size_t max, size_t *outlen, const char *in, size_t inlen)
{
  const char *end = NULL;
  if (sodium_base642bin(out, max, in, inlen, NULL, outlen, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 || end != in + inlen)
    return kh_seterr(KH_ERR_FORMAT, "not valid base64");
  return KH_OK;
}
