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

/* ---- tile paths as URLs name them (c2sp.org/tlog-tiles) ---- */

kh_err kh_tile_ref_format(const kh_tile_ref *t, char *buf, size_t cap)
{
  if (t->level < -1 || t->level > 63 || t->w > 255)
    return kh_seterr(KH_ERR_INVAL, "bad tile reference");
  return kh_tile_path(buf, cap, t->level, t->n, t->w);
}

/* A decimal number of 1..3 digits without leading zeros, <= max. */
static bool dec_small(const char *p, size_t len, unsigned max, unsigned *out)
{
  unsigned v = 0;
  if (len == 0 || len > 3 || (p[0] == '0' && len > 1))
    return false;
  for (size_t i = 0; i < len; i++) {
    if (p[i] < '0' || p[i] > '9')
      return false;
    v = v * 10 + (unsigned)(p[i] - '0');
  }
  if (v > max)
    return false;
  *out = v;
  return true;
}

kh_err kh_tile_ref_parse(const char *path, size_t len, kh_tile_ref *t)
{
  size_t p = 0, ng = 0;
  uint64_t n = 0;
  unsigned v;
  memset(t, 0, sizeof *t);
  if (len > KH_TILE_PATH_MAX)
    return kh_seterr(KH_ERR_FORMAT, "tile path too long");
  if (len < 5 || memcmp(path, "tile/", 5) != 0)
    return kh_seterr(KH_ERR_FORMAT, "tile path must start with tile/");
  p = 5;
  if (len - p >= 8 && memcmp(path + p, "entries/", 8) == 0) {
    t->level = -1;
    p += 8;
  } else {
    size_t q = p;
    while (q < len && path[q] != '/')
      q++;
    if (q == len || !dec_small(path + p, q - p, 63, &v))
      return kh_seterr(KH_ERR_FORMAT, "bad tile level");
    t->level = (int)v;
    p = q + 1;
  }
  /* N: groups "xDDD/" ... then a final "DDD" */
  for (;;) {
    bool x = p < len && path[p] == 'x';
    size_t d = p + (x ? 1 : 0);
    if (len - d < 3)
      return kh_seterr(KH_ERR_FORMAT, "bad tile index");
    unsigned g = 0;
    for (size_t i = 0; i < 3; i++) {
      char c = path[d + i];
      if (c < '0' || c > '9')
        return kh_seterr(KH_ERR_FORMAT, "bad tile index");
      g = g * 10 + (unsigned)(c - '0');
    }
    if (ng == 0 && x && g == 0)
      return kh_seterr(KH_ERR_FORMAT, "tile index has a leading zero group");
    if (++ng > 7 || n > (UINT64_MAX - g) / 1000)
      return kh_seterr(KH_ERR_FORMAT, "tile index out of range");
    n = n * 1000 + g;
    p = d + 3;
    if (x) {
      if (p >= len || path[p] != '/')
        return kh_seterr(KH_ERR_FORMAT, "bad tile index");
      p++;
      continue;
    }
    break;
  }
  t->n = n;
  if (p == len)
    return KH_OK;
  if (len - p < 4 || memcmp(path + p, ".p/", 3) != 0 ||
      !dec_small(path + p + 3, len - p - 3, 255, &v) || v == 0) {
    memset(t, 0, sizeof *t);
    return kh_seterr(KH_ERR_FORMAT, "bad partial tile suffix");
  }
  t->w = v;
  return KH_OK;
}
