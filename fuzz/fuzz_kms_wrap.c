/* Fuzz the key-service wrap object and log key file parsers
 * (docs/threat-model.md §3, §4.4).  Properties: no out-of-bounds read; the
 * parsed blob lies inside the input and the lengths add up exactly. */
#include "kms/kms_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_kms_wrapobj w;
  if (kh_kms_wrapobj_parse(data, size, &w) == KH_OK) {
    if (w.blob != data + KH_KMS_WRAP_HEADER || KH_KMS_WRAP_HEADER + w.bloblen != size ||
        (w.cipher != 1 && w.cipher != 2) || data[6] != KH_KMS_WRAP_KIND)
      abort();
  }
  kh_logkey_file f;
  if (kh_logkey_parse(data, size, &f) == KH_OK) {
    if ((const uint8_t *)f.name != data + 10 || 8 + 2 + f.namelen + 2 + f.bloblen != size ||
        f.blob != data + 12 + f.namelen || f.namelen == 0 || f.bloblen == 0)
      abort();
  }
  return 0;
}
