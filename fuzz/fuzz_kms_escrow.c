/* Fuzz the escrow record and counter parsers (docs/threat-model.md §4.2,
 * §4.3).  Properties: no out-of-bounds read; only exact-length records with
 * bounded Argon2 costs, and counters with failed <= 10, are accepted; the
 * parsed fields point back into the input at their documented offsets. */
#include "kms/kms_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_escrow_rec r;
  if (kh_escrow_rec_parse(data, size, &r) == KH_OK) {
    if (size != KH_ESCROW_BYTES || r.ops < 1 || r.ops > 16 || r.memkib < 8192 ||
        r.memkib > 1048576 || r.salt != data + 15 || r.rid != data + 31 || r.box != data + 47 ||
        kh_le32_get(data + 7) != r.ops)
      abort();
  }
  kh_escrow_ctr c;
  if (kh_escrow_ctr_parse(data, size, &c) == KH_OK) {
    if (size != KH_ESCROW_CTR_BYTES || c.failed > KH_KMS_ESCROW_LIMIT ||
        memcmp(c.rid, data + 8, 16) || kh_le64_get(data + 28) != c.attempts)
      abort();
  }
  return 0;
}
