#include "common/buf.h"
#include "common/err.h"
#include "common/fault.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kh_buf_init(kh_buf *b, size_t max)
{
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = max;
}

void kh_buf_release(kh_buf *b)
{
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void kh_buf_wipe(kh_buf *b)
{
  if (b->data)
    sodium_memzero(b->data, b->cap);
}

void kh_buf_reset(kh_buf *b) { b->len = 0; }

kh_err kh_buf_reserve(kh_buf *b, size_t extra)
{
  if (extra > b->max || b->len > b->max - extra)
    return kh_seterr(KH_ERR_TOOBIG, "buffer would exceed %zu bytes", b->max);
  size_t need = b->len + extra;
  if (need <= b->cap)
    return KH_OK;
  size_t ncap = b->cap ? b->cap : 64;
  while (ncap < need)
    ncap = ncap > b->max / 2 ? b->max : ncap * 2;
  uint8_t *p = kh_fault_point("alloc.buf") ? NULL : realloc(b->data, ncap);
  if (!p)
    return kh_seterr(KH_ERR_NOMEM, "out of memory growing buffer to %zu", ncap);
  b->data = p;
  b->cap = ncap;
  return KH_OK;
}

kh_err kh_buf_append(kh_buf *b, const void *p, size_t n)
{
  kh_err e = kh_buf_reserve(b, n);
  if (e)
    return e;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  return KH_OK;
}

kh_err kh_buf_put_u8(kh_buf *b, uint8_t v) { return kh_buf_append(b, &v, 1); }

kh_err kh_buf_put_u16(kh_buf *b, uint16_t v)
{
  uint8_t t[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
  return kh_buf_append(b, t, 2);
}

kh_err kh_buf_put_u32(kh_buf *b, uint32_t v)
{
  uint8_t t[4];
  kh_le32_put(t, v);
  return kh_buf_append(b, t, 4);
}

kh_err kh_buf_put_u64(kh_buf *b, uint64_t v)
{
  uint8_t t[8];
  kh_le64_put(t, v);
  return kh_buf_append(b, t, 8);
}

kh_err kh_buf_put_uvar(kh_buf *b, uint64_t v)
{
  uint8_t t[10];
  size_t n = 0;
  do {
    uint8_t c = v & 0x7f;
    v >>= 7;
    t[n++] = c | (v ? 0x80 : 0);
  } while (v);
  return kh_buf_append(b, t, n);
}

kh_err kh_buf_put_lbytes(kh_buf *b, const void *p, size_t n)
{
  kh_err e = kh_buf_put_uvar(b, n);
  return e ? e : kh_buf_append(b, p, n);
}

kh_err kh_buf_put_str(kh_buf *b, const char *s) { return kh_buf_put_lbytes(b, s, strlen(s)); }

kh_err kh_buf_printf(kh_buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return kh_seterr(KH_ERR_INVAL, "bad format");
  kh_err e = kh_buf_reserve(b, (size_t)n + 1);
  if (e)
    return e;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return KH_OK;
}

uint8_t *kh_buf_detach(kh_buf *b, size_t *len)
{
  uint8_t *p = b->data;
  if (len)
    *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}
