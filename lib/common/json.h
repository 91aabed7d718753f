/* Minimal JSON writer into a kh_buf (output only; keyhold never parses JSON). */
#ifndef KH_COMMON_JSON_H
#define KH_COMMON_JSON_H
#include <stddef.h>
#include <stdint.h>
#include "common/buf.h"

/* Append s (n bytes, any bytes) as a JSON string literal.  Valid UTF-8 is
 * kept; each byte of invalid UTF-8 is written as \u00XX of that byte
 * (documented lossy escape for non-UTF-8 file names). */
kh_err kh_json_str(kh_buf *b, const void *s, size_t n);
kh_err kh_json_cstr(kh_buf *b, const char *s);

#endif
