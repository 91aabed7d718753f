/* Damage record plaintext (docs/format.md §7.1): any bytes, never a crash,
 * and a record that decodes re-encodes to the same bytes (canonical). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "repo/vault_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const uint8_t *packs, *blobs;
  size_t np, nb;
  if (kh_damage_decode(data, size, &packs, &np, &blobs, &nb) != KH_OK)
    return 0;
  if ((np && (packs < data || packs + np * 32 > data + size)) ||
      (nb && (blobs < data || blobs + nb * 64 > data + size)))
    abort();
  kh_buf b;
  kh_buf_init(&b, size + 64);
  if (kh_damage_encode((const uint8_t(*)[32])packs, np, (const uint8_t(*)[64])blobs, nb, &b) !=
          KH_OK ||
      b.len != size || memcmp(b.data, data, size))
    abort();
  kh_buf_release(&b);
  return 0;
}
