#include "chunk/chunker.h"
#include "common/err.h"
#include "crypto/crypto.h"

#include <sodium.h>
#include <string.h>

static unsigned log2u(uint32_t v)
{
  unsigned r = 0;
  while (v >>= 1)
    r++;
  return r;
}

/* A mask with `bits` one-bits spread over the upper 48 bits (FastCDC puts
 * the bits high because the gear hash mixes upward). */
static uint64_t spread_mask(unsigned bits)
{
  uint64_t m = 0;
  unsigned step = 48 / bits, pos = 63;
  for (unsigned i = 0; i < bits; i++, pos -= step)
    m |= 1ull << pos;
  return m;
}

kh_err kh_chunker_init(kh_chunker *c, const uint8_t secret[32], uint32_t min, uint32_t avg,
                       uint32_t max)
{
  if (!(min < avg && avg < max) || (avg & (avg - 1)) || min < 64)
    return kh_seterr(KH_ERR_INVAL, "bad chunker sizes %u/%u/%u", min, avg, max);
  /* gear table: ChaCha20 keystream under a subkey of the chunker secret */
  uint8_t key[crypto_stream_chacha20_KEYBYTES];
  static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
  kh_kdf(key, sizeof key, secret, "khchunkr", 1);
  crypto_stream_chacha20((uint8_t *)c->gear, sizeof c->gear, nonce, key);
  sodium_memzero(key, sizeof key);
  unsigned bits = log2u(avg);
  c->mask_s = spread_mask(bits + 2);
  c->mask_l = spread_mask(bits - 2);
  c->min = min;
  c->avg = avg;
  c->max = max;
  return KH_OK;
}

void kh_chunker_release(kh_chunker *c) { sodium_memzero(c, sizeof *c); }

size_t kh_chunker_next(const kh_chunker *c, const uint8_t *data, size_t len, bool eof)
{
  if (len <= c->min)
    return eof ? len : 0;
  size_t n = len < c->max ? len : c->max;
  size_t normal = n < c->avg ? n : c->avg;
  uint64_t h = 0;
  size_t i = c->min;
  /* before the average size a stricter mask makes cuts rarer; after it a
   * looser one makes them likelier: sizes cluster around avg */
  for (; i < normal; i++) {
    h = (h << 1) + c->gear[data[i]];
    if (!(h & c->mask_s))
      return i + 1;
  }
  for (; i < n; i++) {
    h = (h << 1) + c->gear[data[i]];
    if (!(h & c->mask_l))
      return i + 1;
  }
  if (n == c->max)
    return n;
  return eof ? len : 0;
}
