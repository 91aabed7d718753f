/* Tile paths and the parsers for hash tiles and entry bundles
 * (c2sp.org/tlog-tiles; docs/log.md §1). */
#include "log/log_internal.h"
#include "common/err.h"

#include <stdio.h>
#include <string.h>

kh_err kh_tile_path(char *buf, size_t cap, int level, uint64_t n, unsigned w)
{
  char idx[64];
  size_t o = 0;
  /* N as zero-padded 3-digit groups, all but the last prefixed by 'x' */
  char groups[8][4];
  int ng = 0;
  do {
    snprintf(groups[ng++], sizeof groups[0], "%03u", (unsigned)(n % 1000));
    n /= 1000;
  } while (n > 0);
  for (int i = ng - 1; i >= 0; i--)
    o += (size_t)snprintf(idx + o, sizeof idx - o, "%s%s%s", i == ng - 1 ? "" : "/",
                          i > 0 ? "x" : "", groups[i]);
  int r;
  if (level < 0)
    r = snprintf(buf, cap, "tile/entries/%s", idx);
  else
    r = snprintf(buf, cap, "tile/%d/%s", level, idx);
  if (r < 0 || (size_t)r >= cap)
    return kh_seterr(KH_ERR_TOOBIG, "tile path too long");
  if (w) {
    int r2 = snprintf(buf + r, cap - (size_t)r, ".p/%u", w);
    if (r2 < 0 || (size_t)r2 >= cap - (size_t)r || w >= KH_TILE_WIDTH)
      return kh_seterr(KH_ERR_INVAL, "bad partial tile width %u", w);
  }
  return KH_OK;
}

kh_err kh_tile_check(const uint8_t *data, size_t len, unsigned w)
{
  (void)data;
  if (w == 0 || w > KH_TILE_WIDTH || len != (size_t)w * KH_LOG_HASH)
    return kh_seterr(KH_ERR_CORRUPT, "tile has %zu bytes, expected %u hashes", len, w);
  return KH_OK;
}

kh_err kh_bundle_parse(const uint8_t *data, size_t len, unsigned count, size_t *off,
                       size_t *elen)
{
  size_t p = 0;
  for (unsigned i = 0; i < count; i++) {
    if (len - p < 2)
      return kh_seterr(KH_ERR_CORRUPT, "entry bundle truncated at entry %u", i);
    size_t n = (size_t)data[p] << 8 | data[p + 1];
    p += 2;
    if (len - p < n)
      return kh_seterr(KH_ERR_CORRUPT, "entry bundle truncated in entry %u", i);
    if (off)
      off[i] = p;
    if (elen)
      elen[i] = n;
    p += n;
  }
  if (p != len)
    return kh_seterr(KH_ERR_CORRUPT, "entry bundle has %zu trailing bytes", len - p);
  return KH_OK;
}
