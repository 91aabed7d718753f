/* The tile-path parser a log server runs on every request path
 * (kh_tile_ref_parse, lib/log/tile.c).  Input: the path bytes.  Whatever
 * parses must format back to exactly the same bytes (one spelling per
 * tile), and nothing may be read past the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* a private copy, so that a read past size is a heap overflow ASan sees */
  char *p = malloc(size ? size : 1);
  if (!p)
    return 0;
  if (size)
    memcpy(p, data, size);
  kh_tile_ref t;
  if (kh_tile_ref_parse(p, size, &t) == KH_OK) {
    char buf[KH_TILE_PATH_MAX + 1];
    if (t.level < -1 || t.level > 63 || t.w > 255)
      abort();
    if (kh_tile_ref_format(&t, buf, sizeof buf) != KH_OK)
      abort();
    if (strlen(buf) != size || memcmp(buf, p, size) != 0)
      abort();
  }
  free(p);
  return 0;
}
