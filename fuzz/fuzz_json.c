/* The bounded JSON reader (include/keyhold/json.h): any bytes parse or fail
 * with KH_ERR_FORMAT; a parsed tree is walked completely and checked
 * against the reader's promises (strings are NUL-free C strings of their
 * length, integers only for integer numbers, objects without repeated
 * keys), then written out again and re-parsed to the same shape. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/json.h"

typedef struct out { char *p; size_t n, cap; } out;
static void put(out *o, const char *s, size_t n)
{
  if (o->n + n + 1 > o->cap) {
    size_t c = (o->n + n + 1) * 2;
    char *np = realloc(o->p, c);
    if (!np)
      abort();
    o->p = np;
    o->cap = c;
  }
  memcpy(o->p + o->n, s, n);
  o->n += n;
}
static void put_str(out *o, const char *s, size_t n)
{
  put(o, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      put(o, esc, 2);
    } else if (c < 0x20) {
      static const char hx[] = "0123456789abcdef";
      memcpy(esc, "\\u00", 4);
      esc[4] = hx[c >> 4];
      esc[5] = hx[c & 15];
      put(o, esc, 6);
    } else {
      put(o, (const char *)&c, 1);
    }
  }
  put(o, "\"", 1);
}

static void walk(const kh_json *j, out *o, int depth)
{
  if (depth > KH_JSON_MAX_DEPTH)
    abort();
  int64_t v;
  bool b;
  switch (kh_json_type_of(j)) {
  case KH_JSON_NULL: put(o, "null", 4); break;
  case KH_JSON_BOOL:
    if (!kh_json_bool(j, &b))
      abort();
    put(o, b ? "true" : "false", b ? 4 : 5);
    break;
  case KH_JSON_NUM:
    if (kh_json_int(j, &v)) {
      char d[32];
      int n = snprintf(d, sizeof d, "%lld", (long long)v);
      put(o, d, (size_t)n);
    } else {
      put(o, "0.5", 3);
    }
    break;
  case KH_JSON_STR: {
    const char *s = kh_json_string(j);
    if (!s || strlen(s) != kh_json_string_len(j))
      abort();
    put_str(o, s, kh_json_string_len(j));
    break;
  }
  case KH_JSON_ARR:
  case KH_JSON_OBJ: {
    bool obj = kh_json_type_of(j) == KH_JSON_OBJ;
    put(o, obj ? "{" : "[", 1);
    for (size_t i = 0; i < kh_json_len(j); i++) {
      if (i)
        put(o, ",", 1);
      if (obj) {
        const char *k = kh_json_key_at(j, i);
        if (!k || kh_json_get(j, k) != kh_json_at(j, i)) /* first match is this one */
          abort();
        put_str(o, k, strlen(k));
        put(o, ":", 1);
      }
      walk(kh_json_at(j, i), o, depth + 1);
    }
    put(o, obj ? "}" : "]", 1);
    break;
  }
  default: abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_json *j = NULL;
  kh_err e = kh_json_parse((const char *)data, size, &j);
  if (e) {
    if (e != KH_ERR_FORMAT && e != KH_ERR_NOMEM)
      abort();
    if (j)
      abort();
    return 0;
  }
  out a = {0}, b = {0};
  walk(j, &a, 0);
  kh_json *j2 = NULL;
  if (kh_json_parse(a.p, a.n, &j2))
    abort();
  walk(j2, &b, 0);
  if (a.n != b.n || memcmp(a.p, b.p, a.n))
    abort();
  kh_json_free(j);
  kh_json_free(j2);
  free(a.p);
  free(b.p);
  return 0;
}
