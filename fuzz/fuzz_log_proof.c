/* Merkle proof verification with arbitrary sizes, indexes, roots and
 * proofs: must never crash, and a proof accepted for (index, size) must
 * not also be accepted after a bit flip in the root. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/log.h"

static uint64_t get64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 + 16 + 64)
    return 0;
  int mode = data[0] & 1;
  uint64_t a = get64(data + 1), b = get64(data + 9);
  if (data[0] & 2) { /* small sizes reach the interesting paths more often */
    a %= 1024;
    b %= 1024;
  }
  kh_log_hash r1, r2;
  memcpy(r1, data + 17, 32);
  memcpy(r2, data + 49, 32);
  const uint8_t *p = data + 81;
  size_t plen = (size - 81) / 32;
  if (plen > KH_LOG_PROOF_MAX + 2)
    plen = KH_LOG_PROOF_MAX + 2;
  kh_log_hash *proof = malloc((plen ? plen : 1) * sizeof *proof);
  memcpy(proof, p, plen * 32);
  if (mode == 0) {
    if (kh_log_verify_inclusion(r1, a, b, (const kh_log_hash *)proof, plen, r2) == KH_OK) {
      r2[0] ^= 1;
      if (kh_log_verify_inclusion(r1, a, b, (const kh_log_hash *)proof, plen, r2) == KH_OK)
        abort();
    }
  } else {
    if (kh_log_verify_consistency(a, b, (const kh_log_hash *)proof, plen, r1, r2) == KH_OK &&
        a > 0) {
      r2[0] ^= 1;
      if (kh_log_verify_consistency(a, b, (const kh_log_hash *)proof, plen, r1, r2) == KH_OK)
        abort();
    }
  }
  free(proof);
  return 0;
}
