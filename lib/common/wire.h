/* Bounded reader for keyhold's binary formats (docs/format.md §2).
 * Errors are sticky: after the first out-of-bounds or malformed read every
 * further read returns zero/NULL and kh_rd_ok() is false, so a parser can
 * read a whole record and check once at the end.  Never reads past len. */
#ifndef KH_COMMON_WIRE_H
#define KH_COMMON_WIRE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kh_rd {
  const uint8_t *p;
  size_t len, off;
  bool bad;
} kh_rd;

static inline void kh_rd_init(kh_rd *r, const void *p, size_t len)
{ r->p = p; r->len = len; r->off = 0; r->bad = false; }
static inline bool kh_rd_ok(const kh_rd *r) { return !r->bad; }
static inline size_t kh_rd_left(const kh_rd *r) { return r->bad ? 0 : r->len - r->off; }
/* true when every byte was consumed and nothing failed */
static inline bool kh_rd_done(const kh_rd *r) { return !r->bad && r->off == r->len; }

uint8_t kh_rd_u8(kh_rd *r);
uint16_t kh_rd_u16(kh_rd *r);
uint32_t kh_rd_u32(kh_rd *r);
uint64_t kh_rd_u64(kh_rd *r);
/* LEB128, at most 10 bytes, rejects non-minimal overlong encodings > 64 bit */
uint64_t kh_rd_uvar(kh_rd *r);
/* n raw bytes (pointer into the input) or NULL */
const uint8_t *kh_rd_bytes(kh_rd *r, size_t n);
/* copy n bytes into out (zero-filled on failure) */
void kh_rd_copy(kh_rd *r, void *out, size_t n);
/* uvar length (<= max) followed by bytes; *n receives the length */
const uint8_t *kh_rd_lbytes(kh_rd *r, size_t max, size_t *n);
/* mark the reader bad (semantic error found by the caller) */
static inline void kh_rd_fail(kh_rd *r) { r->bad = true; }

#endif
