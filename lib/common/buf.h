/* Growable byte buffer with a hard cap (curl dynbuf style).
 * kh_buf_init sets the cap; any append past it fails with KH_ERR_TOOBIG and
 * leaves the buffer unchanged.  Memory is ordinary heap memory: never put a
 * secret in a kh_buf unless you call kh_buf_wipe before release. */
#ifndef KH_COMMON_BUF_H
#define KH_COMMON_BUF_H
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"

typedef struct kh_buf {
  uint8_t *data;
  size_t len, cap, max;
} kh_buf;

void kh_buf_init(kh_buf *b, size_t max);
void kh_buf_release(kh_buf *b);             /* frees; buffer usable again after init */
void kh_buf_wipe(kh_buf *b);                /* zero contents (before release) */
void kh_buf_reset(kh_buf *b);               /* len = 0, keeps memory */
kh_err kh_buf_reserve(kh_buf *b, size_t extra);
kh_err kh_buf_append(kh_buf *b, const void *p, size_t n);
kh_err kh_buf_put_u8(kh_buf *b, uint8_t v);
kh_err kh_buf_put_u16(kh_buf *b, uint16_t v); /* little endian */
kh_err kh_buf_put_u32(kh_buf *b, uint32_t v);
kh_err kh_buf_put_u64(kh_buf *b, uint64_t v);
kh_err kh_buf_put_uvar(kh_buf *b, uint64_t v);  /* LEB128 */
/* uvar length followed by the bytes */
kh_err kh_buf_put_lbytes(kh_buf *b, const void *p, size_t n);
kh_err kh_buf_put_str(kh_buf *b, const char *s); /* = put_lbytes(strlen) */
kh_err kh_buf_printf(kh_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hand the data to the caller (who frees it with free()); buffer is reset. */
uint8_t *kh_buf_detach(kh_buf *b, size_t *len);

/* Little-endian helpers on raw memory. */
static inline void kh_le32_put(uint8_t *p, uint32_t v)
{ p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
static inline uint32_t kh_le32_get(const uint8_t *p)
{ return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static inline void kh_le64_put(uint8_t *p, uint64_t v)
{ kh_le32_put(p, (uint32_t)v); kh_le32_put(p + 4, (uint32_t)(v >> 32)); }
static inline uint64_t kh_le64_get(const uint8_t *p)
{ return (uint64_t)kh_le32_get(p) | (uint64_t)kh_le32_get(p + 4) << 32; }
static inline void kh_be64_put(uint8_t *p, uint64_t v)
{ for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; } }
static inline uint64_t kh_be64_get(const uint8_t *p)
{ uint64_t v = 0; for (int i = 0; i < 8; i++) v = v << 8 | p[i]; return v; }

#endif
