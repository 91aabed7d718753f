#include "common/wire.h"
#include "common/buf.h"

#include <string.h>

const uint8_t *kh_rd_bytes(kh_rd *r, size_t n)
{
  if (r->bad || n > r->len - r->off) {
    r->bad = true;
    return NULL;
  }
  const uint8_t *p = r->p + r->off;
  r->off += n;
  return p;
}

void kh_rd_copy(kh_rd *r, void *out, size_t n)
{
  const uint8_t *p = kh_rd_bytes(r, n);
  if (p)
    memcpy(out, p, n);
  else
    memset(out, 0, n);
}

uint8_t kh_rd_u8(kh_rd *r)
{
  const uint8_t *p = kh_rd_bytes(r, 1);
  return p ? p[0] : 0;
}

uint16_t kh_rd_u16(kh_rd *r)
{
  const uint8_t *p = kh_rd_bytes(r, 2);
  return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

uint32_t kh_rd_u32(kh_rd *r)
{
  const uint8_t *p = kh_rd_bytes(r, 4);
  return p ? kh_le32_get(p) : 0;
}

uint64_t kh_rd_u64(kh_rd *r)
{
  const uint8_t *p = kh_rd_bytes(r, 8);
  return p ? kh_le64_get(p) : 0;
}

uint64_t kh_rd_uvar(kh_rd *r)
{
  uint64_t v = 0;
  for (int i = 0; i < 10; i++) {
    const uint8_t *p = kh_rd_bytes(r, 1);
    if (!p)
      return 0;
    if (i == 9 && *p > 1)
      break;
    v |= (uint64_t)(*p & 0x7f) << (7 * i);
    if (!(*p & 0x80)) {
      if (i > 0 && *p == 0)
        break; /* overlong */
      return v;
    }
  }
  r->bad = true;
  return 0;
}

const uint8_t *kh_rd_lbytes(kh_rd *r, size_t max, size_t *n)
{
  uint64_t l = kh_rd_uvar(r);
  if (r->bad || l > max) {
    r->bad = true;
    *n = 0;
    return NULL;
  }
  *n = (size_t)l;
  return kh_rd_bytes(r, (size_t)l);
}
