/* The blob index: blob id -> (pack, offset, lengths), an open-addressing
 * hash table in memory, and its encrypted on-disk form, index objects
 * (docs/format.md §7).  Not thread-safe: callers lock. */
#ifndef KH_INDEX_H
#define KH_INDEX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pack/pack.h"

typedef struct kh_index_entry {
  uint8_t id[32];
  uint32_t pack;      /* number in kh_index.packs */
  uint32_t offset, clen, ulen;
  uint8_t type;
  uint8_t used;       /* slot in use */
  uint8_t mark;       /* scratch for check/prune */
} kh_index_entry;

typedef struct kh_index_pack {
  uint8_t id[32];
  uint64_t size;
  uint32_t nblobs;
  uint8_t mark;       /* scratch */
} kh_index_pack;

typedef struct kh_index {
  uint64_t gen;       /* generation (docs/format.md §7): the highest decoded */
  kh_index_entry *slots;
  size_t cap, n;      /* cap is a power of two */
  kh_index_pack *packs;
  size_t npacks, packcap;
} kh_index;

void kh_index_init(kh_index *x);
void kh_index_release(kh_index *x);
/* Append a pack; *no receives its number. */
kh_err kh_index_add_pack(kh_index *x, const uint8_t id[32], uint64_t size, uint32_t *no);
/* Insert a blob of pack `pack`; an id already present keeps its first place
 * (returns KH_OK, *added false). */
kh_err kh_index_add(kh_index *x, const kh_pack_blob *b, uint32_t pack, bool *added);
kh_index_entry *kh_index_find(const kh_index *x, const uint8_t id[32]);
/* Fill a kh_pack_blob view of an entry. */
void kh_index_blob(const kh_index_entry *e, kh_pack_blob *b);

/* Group the entries of packs [first_pack, npacks) by pack in one pass:
 * pack p's entries are (*order)[(*start)[p - first_pack] ..
 * (*start)[p - first_pack + 1]).  Both arrays are malloc'd (free()); the
 * pointers stay valid until x is changed. */
kh_err kh_index_group(const kh_index *x, uint32_t first_pack, uint32_t **start,
                      kh_index_entry ***order);

/* Serialise the packs in [first, npacks) and their blobs (found by pack
 * number) as an index object plaintext of generation x->gen, listing the
 * ids it supersedes. */
kh_err kh_index_encode(const kh_index *x, uint32_t first_pack, const uint8_t (*supersedes)[32],
                       size_t nsup, kh_buf *out);
/* Parse index plaintext (after decryption and decompression) into x; the
 * superseded ids are returned in *sup (malloc'd, free()); x->gen becomes
 * the higher of itself and the object's generation (0 for KHIX1).
 * Bounded, fuzzed. */
kh_err kh_index_decode(kh_index *x, const uint8_t *p, size_t n, uint8_t (**sup)[32],
                       size_t *nsup);

/* zstd helpers shared by index/snapshot codecs: compress p into out (reset);
 * decompress with a hard cap. */
kh_err kh_zstd_pack(const uint8_t *p, size_t n, int level, kh_buf *out);
kh_err kh_zstd_unpack(const uint8_t *p, size_t n, size_t max, kh_buf *out);

#endif
