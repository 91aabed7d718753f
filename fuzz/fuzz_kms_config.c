/* Fuzz the key service config parser (docs/threat-model.md §4.1).
 * Properties: no out-of-bounds read; whatever parses formats back to text
 * that parses to the same config (a fixed point). */
#include "kms/kms_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static kh_kms_config c, c2;
  if (kh_kms_config_parse(data, size, &c) != KH_OK)
    return 0;
  if (c.witnesses_required > c.nwitnesses || c.nwitnesses > KH_KMS_WITNESS_MAX ||
      (c.backend != KH_ROOTKEY_BACKEND_FILE && c.backend != KH_ROOTKEY_BACKEND_PKCS11))
    abort();
  kh_buf b;
  kh_buf_init(&b, KH_KMS_CONFIG_MAX);
  if (kh_kms_config_format(&c, &b) != KH_OK || kh_kms_config_parse(b.data, b.len, &c2) != KH_OK ||
      memcmp(&c, &c2, sizeof c) != 0)
    abort();
  kh_buf_release(&b);
  return 0;
}
