#include "common/json.h"

#include <string.h>

/* length of a valid UTF-8 sequence at p (1..4), or 0 if invalid */
static size_t utf8_len(const uint8_t *p, size_t n)
{
  uint8_t c = p[0];
  size_t l;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if ((c & 0xe0) == 0xc0) { l = 2; cp = c & 0x1f; }
  else if ((c & 0xf0) == 0xe0) { l = 3; cp = c & 0x0f; }
  else if ((c & 0xf8) == 0xf0) { l = 4; cp = c & 0x07; }
  else return 0;
  if (l > n)
    return 0;
  for (size_t i = 1; i < l; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (p[i] & 0x3f);
  }
  if ((l == 2 && cp < 0x80) || (l == 3 && cp < 0x800) || (l == 4 && cp < 0x10000) ||
      cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return l;
}

kh_err kh_json_str(kh_buf *b, const void *s, size_t n)
{
  const uint8_t *p = s;
  kh_err e = kh_buf_put_u8(b, '"');
  for (size_t i = 0; !e && i < n;) {
    uint8_t c = p[i];
    size_t l = utf8_len(p + i, n - i);
    if (l == 0) {
      e = kh_buf_printf(b, "\\u%04x", c);
      i++;
      continue;
    }
    if (l > 1) {
      e = kh_buf_append(b, p + i, l);
      i += l;
      continue;
    }
    switch (c) {
    case '"': e = kh_buf_append(b, "\\\"", 2); break;
    case '\\': e = kh_buf_append(b, "\\\\", 2); break;
    case '\n': e = kh_buf_append(b, "\\n", 2); break;
    case '\t': e = kh_buf_append(b, "\\t", 2); break;
    case '\r': e = kh_buf_append(b, "\\r", 2); break;
    default:
      e = c < 0x20 || c == 0x7f ? kh_buf_printf(b, "\\u%04x", c) : kh_buf_put_u8(b, c);
    }
    i++;
  }
  return e ? e : kh_buf_put_u8(b, '"');
}

kh_err kh_json_cstr(kh_buf *b, const char *s) { return kh_json_str(b, s, strlen(s)); }
