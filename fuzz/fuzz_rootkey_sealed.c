/* Fuzz the sealed key file parser (docs/kms-rootkey.md §2).  Properties: no
 * out-of-bounds read, only canonical 111-byte files with bounded Argon2 costs
 * are accepted, and the parsed fields re-serialise to the input. */
#include "kms/rootkey.h"
#include "common/buf.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_rootkey_sealed s;
  if (kh_rootkey_sealed_parse(data, size, &s) != KH_OK)
    return 0;
  if (size != KH_ROOTKEY_SEALED_BYTES || s.opslimit == 0 || s.opslimit > 16 ||
      s.memkib < 8192 || s.memkib > 1048576 || s.version == 0 ||
      s.version > KH_ROOTKEY_VERSIONS_MAX)
    abort();
  uint8_t re[KH_ROOTKEY_SEALED_BYTES];
  memcpy(re, KH_ROOTKEY_SEALED_MAGIC, 8);
  re[8] = 1;
  re[9] = s.kind;
  re[10] = 1;
  kh_le32_put(re + 11, s.opslimit);
  kh_le32_put(re + 15, s.memkib);
  memcpy(re + 19, s.salt, 16);
  kh_le32_put(re + 35, s.version);
  memcpy(re + 39, s.nonce, 24);
  memcpy(re + 63, s.ct, 48);
  if (memcmp(re, data, size) != 0)
    abort();
  return 0;
}
