/* Checkpoint body parser: whatever parses must format back to the same
 * bytes (the format is canonical). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_checkpoint c;
  if (kh_checkpoint_parse(data, size, &c) != KH_OK)
    return 0;
  char *out = NULL;
  size_t len = 0;
  if (kh_checkpoint_format(&c, &out, &len) != KH_OK)
    abort();
  if (len != size || memcmp(out, data, size) != 0)
    abort();
  free(out);
  return 0;
}
