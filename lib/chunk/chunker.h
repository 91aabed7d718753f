/* Content-defined chunking (FastCDC, normalized) with a keyed gear table.
 * The 256-entry gear table is derived from an account secret, so chunk
 * boundaries depend on the key and do not let a provider confirm a known
 * file by its chunk sizes (docs/format.md §5). */
#ifndef KH_CHUNKER_H
#define KH_CHUNKER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"

#define KH_CHUNK_MIN (256u * 1024)
#define KH_CHUNK_AVG (1024u * 1024)
#define KH_CHUNK_MAX (4u * 1024 * 1024)

typedef struct kh_chunker {
  uint64_t gear[256];
  uint64_t mask_s, mask_l; /* normalized: stricter before avg, looser after */
  uint32_t min, avg, max;
} kh_chunker;

/* avg must be a power of two, min < avg < max. */
kh_err kh_chunker_init(kh_chunker *c, const uint8_t secret[32], uint32_t min, uint32_t avg,
                       uint32_t max);
void kh_chunker_release(kh_chunker *c); /* wipes the gear table */

/* Length of the next chunk at the start of data[0..len).  If no cut point
 * is found and len < max and !eof, returns 0: supply more data.  At eof the
 * remainder (len <= max) is one chunk. */
size_t kh_chunker_next(const kh_chunker *c, const uint8_t *data, size_t len, bool eof);

#endif
