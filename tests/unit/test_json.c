/* Unit tests for lib/common/json: string escaping, UTF-8 kept, invalid
 * bytes (including encoded surrogates and overlong forms) as \u00XX. */
#include "common/json.h"
#include "common/err.h"
#include "kh_test.h"

#include <string.h>

static int json_is(const void *in, size_t n, const char *want)
{
  kh_buf b;
  kh_buf_init(&b, 4096);
  kh_err e = kh_json_str(&b, in, n);
  int ok = e == KH_OK && b.len == strlen(want) && memcmp(b.data, want, b.len) == 0;
  if (!ok)
    fprintf(stderr, "  json of %zu bytes: got '%.*s', want '%s'\n", n, (int)b.len,
            b.data ? (const char *)b.data : "", want);
  kh_buf_release(&b);
  return ok;
}
#define JSON_IS(lit, want) CHECK(json_is(lit, sizeof lit - 1, want))

static void test_ascii_and_escapes(void)
{
  JSON_IS("", "\"\"");
  JSON_IS("plain text/path", "\"plain text/path\"");
  JSON_IS("a\"b", "\"a\\\"b\"");
  JSON_IS("a\\b", "\"a\\\\b\"");
  JSON_IS("\n\t\r", "\"\\n\\t\\r\"");
  JSON_IS("\b\f", "\"\\u0008\\u000c\"");
  JSON_IS("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
  JSON_IS("a\0b", "\"a\\u0000b\"");
  kh_buf b;
  kh_buf_init(&b, 64);
  CHECK_OK(kh_json_cstr(&b, "x\"y"));
  CHECK_EQ(b.len, 6);
  CHECK_MEM(b.data, "\"x\\\"y\"", 6);
  kh_buf_release(&b);
}

static void test_utf8_kept(void)
{
  JSON_IS("\xc3\xa9t\xc3\xa9", "\"\xc3\xa9t\xc3\xa9\"");          /* é */
  JSON_IS("\xe2\x82\xac", "\"\xe2\x82\xac\"");                     /* € */
  JSON_IS("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"");             /* U+1F600 */
  JSON_IS("\xc2\x80", "\"\xc2\x80\"");                             /* U+0080 */
  JSON_IS("\xef\xbf\xbf", "\"\xef\xbf\xbf\"");                     /* U+FFFF */
  JSON_IS("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");             /* U+10FFFF */
  JSON_IS("\xed\x9f\xbf", "\"\xed\x9f\xbf\"");                     /* U+D7FF */
  JSON_IS("\xee\x80\x80", "\"\xee\x80\x80\"");                     /* U+E000 */
}

static void test_invalid_bytes(void)
{
  JSON_IS("\xff", "\"\\u00ff\"");
  JSON_IS("a\x80z", "\"a\\u0080z\"");                 /* lone continuation */
  JSON_IS("\xc3", "\"\\u00c3\"");                     /* truncated at end */
  JSON_IS("\xe2\x82" "A", "\"\\u00e2\\u0082A\"");     /* truncated mid-string */
  JSON_IS("\xc0\x80", "\"\\u00c0\\u0080\"");          /* overlong NUL */
  JSON_IS("\xc1\xbf", "\"\\u00c1\\u00bf\"");          /* overlong */
  JSON_IS("\xe0\x80\xaf", "\"\\u00e0\\u0080\\u00af\""); /* overlong 3-byte */
  JSON_IS("\xf0\x80\x80\xaf", "\"\\u00f0\\u0080\\u0080\\u00af\"");
  /* UTF-16 surrogates encoded in UTF-8 are not valid UTF-8 */
  JSON_IS("\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\"");   /* U+D800 */
  JSON_IS("\xed\xbf\xbf", "\"\\u00ed\\u00bf\\u00bf\"");   /* U+DFFF */
  JSON_IS("\xed\xa0\xbd\xed\xb8\x80",
          "\"\\u00ed\\u00a0\\u00bd\\u00ed\\u00b8\\u0080\""); /* CESU pair */
  /* above U+10FFFF and bytes never valid */
  JSON_IS("\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\"");
  JSON_IS("\xf8\x88\x80\x80\x80", "\"\\u00f8\\u0088\\u0080\\u0080\\u0080\"");
  JSON_IS("\xfe\xff", "\"\\u00fe\\u00ff\"");
}

static void test_cap(void)
{
  kh_buf b;
  kh_buf_init(&b, 8);
  CHECK_EQ(kh_json_str(&b, "\x01\x02", 2), KH_ERR_TOOBIG); /* needs 14 bytes */
  kh_buf_release(&b);
  /* output never contains a raw control character or invalid UTF-8 */
  uint8_t all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (uint8_t)i;
  kh_buf_init(&b, 8192);
  CHECK_OK(kh_json_str(&b, all, sizeof all));
  int raw = 0;
  for (size_t i = 0; i < b.len; i++)
    raw += b.data[i] < 0x20 || b.data[i] >= 0x7f;
  CHECK_EQ(raw, 0); /* every non-ASCII byte alone is invalid UTF-8 */
  kh_buf_release(&b);
}

int main(void)
{
  RUN(test_ascii_and_escapes);
  RUN(test_utf8_kept);
  RUN(test_invalid_bytes);
  RUN(test_cap);
  return kh_test_done("test_json");
}
