/* The passcode key-wrap header (docs/format.md §4), parsed before any
 * Argon2id runs: bounds and KDF cost limits must hold for any input. */
#include <stdint.h>
#include <stdlib.h>
#include "repo/vault_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint32_t ops = 0, mib = 0;
  uint8_t salt[16];
  size_t hlen = 0;
  if (kh_keywrap_passcode_header(data, size, &ops, &mib, salt, &hlen) == KH_OK) {
    /* accepted: the costs are bounded and the header lies inside the input,
     * with room for the box that follows */
    if (ops < 1 || ops > 64 || mib < 8 || mib > 4096 || hlen != 31 || size < hlen + 73)
      abort();
  }
  return 0;
}
