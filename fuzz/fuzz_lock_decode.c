/* Lock object plaintext (docs/format.md §10): any bytes, never a crash;
 * the host name is always NUL-terminated inside its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "repo/vault_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_lock_info l;
  memset(&l, 0xa5, sizeof l);
  if (kh_lock_decode(data, size, &l)) {
    if (memchr(l.host, 0, sizeof l.host) == NULL)
      abort();
    /* exclusive is one byte on disk; round trip of the fixed part */
    if (size < 1 + 8 + 4 + 1)
      abort();
  }
  return 0;
}
