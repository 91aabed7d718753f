/* Log entry parser: whatever parses must format back to an entry that
 * parses to the same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_log_entry e, g;
  if (kh_log_entry_parse(data, size, &e) != KH_OK)
    return 0;
  char *t = NULL;
  size_t tl = 0;
  if (kh_log_entry_format(&e, &t, &tl) != KH_OK)
    abort();
  if (kh_log_entry_parse(t, tl, &g) != KH_OK || memcmp(&e, &g, sizeof e) != 0)
    abort();
  free(t);
  return 0;
}
