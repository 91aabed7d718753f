/* Unit tests for the bounded JSON reader (include/keyhold/json.h). */
#include "keyhold/json.h"
#include "keyhold/error.h"
#include "kh_test.h"

#include <stdint.h>
#include <string.h>

static kh_err parse(const char *s, kh_json **j) { return kh_json_parse(s, strlen(s), j); }

static void test_values(void)
{
  kh_json *j = NULL;
  CHECK_OK(parse(" {\"a\":\"x\\u00e9\\n\",\"n\":-42,\"big\":9223372036854775807,"
                 "\"min\":-9223372036854775808,\"f\":1.5,\"e\":1e3,\"t\":true,\"z\":null,"
                 "\"arr\":[1,\"two\",[],{}]} ", &j));
  CHECK_EQ(kh_json_type_of(j), KH_JSON_OBJ);
  CHECK_EQ(kh_json_len(j), 9);
  CHECK(!strcmp(kh_json_get_str(j, "a"), "x\xc3\xa9\n"));
  CHECK_EQ(kh_json_string_len(kh_json_get(j, "a")), 4);
  int64_t v = 0;
  CHECK(kh_json_get_int(j, "n", &v) && v == -42);
  CHECK(kh_json_get_int(j, "big", &v) && v == INT64_MAX);
  CHECK(kh_json_get_int(j, "min", &v) && v == INT64_MIN);
  CHECK(!kh_json_get_int(j, "f", &v));
  CHECK_EQ(kh_json_type_of(kh_json_get(j, "f")), KH_JSON_NUM);
  CHECK(!kh_json_get_int(j, "e", &v));
  bool b = false;
  CHECK(kh_json_bool(kh_json_get(j, "t"), &b) && b);
  CHECK_EQ(kh_json_type_of(kh_json_get(j, "z")), KH_JSON_NULL);
  CHECK(kh_json_get(j, "missing") == NULL);
  CHECK(kh_json_get_str(j, "n") == NULL);
  const kh_json *arr = kh_json_get(j, "arr");
  CHECK_EQ(kh_json_len(arr), 4);
  CHECK(!strcmp(kh_json_string(kh_json_at(arr, 1)), "two"));
  CHECK_EQ(kh_json_type_of(kh_json_at(arr, 3)), KH_JSON_OBJ);
  CHECK(kh_json_at(arr, 4) == NULL);
  CHECK(!strcmp(kh_json_key_at(j, 0), "a"));
  kh_json_free(j);
  /* integers just beyond int64 stay numbers, not integers */
  CHECK_OK(parse("[9223372036854775808,-9223372036854775809]", &j));
  CHECK(!kh_json_int(kh_json_at(j, 0), &v));
  CHECK(!kh_json_int(kh_json_at(j, 1), &v));
  kh_json_free(j);
  /* surrogate pair */
  CHECK_OK(parse("\"\\ud83d\\ude00\"", &j));
  CHECK(!strcmp(kh_json_string(j), "\xf0\x9f\x98\x80"));
  kh_json_free(j);
}

static void test_rejects(void)
{
  static const char *bad[] = {
      "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "-", "1.", "1e",
      ".5", "+1", "tru", "nul", "[1 2]", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"",
      "\"\\udc00\"", "\"\\u0000\"", "\"a\x01\"", "\"\xc3\x28\"", "\"\xed\xa0\x80\"",
      "\"\xc0\xaf\"", "\"\xf4\x90\x80\x80\"", "{\"a\":1,\"a\":2}", "1 2", "[1]x", "\"\\",
      "NaN", "Infinity",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    kh_json *j = (kh_json *)1;
    kh_err e = parse(bad[i], &j);
    if (e != KH_ERR_FORMAT)
      fprintf(stderr, "  accepted or wrong error for case %zu: '%s'\n", i, bad[i]);
    CHECK_ERR(e, KH_ERR_FORMAT);
    CHECK(j == NULL);
  }
  /* embedded NUL byte inside the text (not an escape) */
  kh_json *j = NULL;
  CHECK_ERR(kh_json_parse("\"a\0b\"", 5, &j), KH_ERR_FORMAT);
}

static void test_bounds(void)
{
  char deep[64];
  memset(deep, '[', 16);
  memset(deep + 16, ']', 16);
  kh_json *j = NULL;
  CHECK_OK(kh_json_parse(deep, 32, &j)); /* depth 16: the bound */
  kh_json_free(j);
  memset(deep, '[', 17);
  memset(deep + 17, ']', 17);
  CHECK_ERR(kh_json_parse(deep, 34, &j), KH_ERR_FORMAT);
  /* too many values */
  size_t n = (KH_JSON_MAX_NODES + 1) * 2 + 2;
  char *many = malloc(n);
  many[0] = '[';
  size_t o = 1;
  for (size_t i = 0; i < KH_JSON_MAX_NODES; i++) {
    many[o++] = '0';
    many[o++] = ',';
  }
  many[o - 1] = ']';
  CHECK_ERR(kh_json_parse(many, o, &j), KH_ERR_FORMAT); /* the array itself is one more */
  many[2] = '[';
  CHECK_OK(kh_json_parse(many + 2, o - 2, &j)); /* MAX_NODES - 1 values + array */
  CHECK_EQ(kh_json_len(j), KH_JSON_MAX_NODES - 1);
  kh_json_free(j);
  free(many);
  /* many keys: duplicates found without quadratic work */
  size_t nk = 50000;
  char *obj = malloc(nk * 16 + 16);
  o = 0;
  obj[o++] = '{';
  for (size_t i = 0; i < nk; i++)
    o += (size_t)snprintf(obj + o, nk * 16 + 16 - o, "\"k%zu\":0,", i % (nk - 1));
  obj[o - 1] = '}';
  CHECK_ERR(kh_json_parse(obj, o, &j), KH_ERR_FORMAT);
  free(obj);
}

int main(void)
{
  RUN(test_values);
  RUN(test_rejects);
  RUN(test_bounds);
  return kh_test_done("test_json_read");
}
