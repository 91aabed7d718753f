/* Entry-bundle and tile parsers (lib/log/tile.c).  Input: one byte of entry
 * count, then the bundle.  Whatever parses must rebuild the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "log/log_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  unsigned count = data[0] + 1u; /* 1..256 */
  const uint8_t *b = data + 1;
  size_t len = size - 1;
  size_t off[256], el[256];
  kh_tile_check(b, len, count);
  if (kh_bundle_parse(b, len, count, off, el) != KH_OK)
    return 0;
  size_t total = 0;
  for (unsigned i = 0; i < count; i++) {
    if (off[i] < 2 || off[i] + el[i] > len || ((size_t)b[off[i] - 2] << 8 | b[off[i] - 1]) != el[i])
      abort();
    total += 2 + el[i];
  }
  if (total != len)
    abort();
  char p[128];
  uint64_t n = 0;
  for (size_t i = 0; i < 8 && i < len; i++)
    n = n << 8 | b[i];
  if (kh_tile_path(p, sizeof p, (int)(count % 10) - 1, n, count % 256) != KH_OK)
    abort();
  return 0;
}
