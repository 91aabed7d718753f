/* Internal interfaces shared by the files of lib/log (not installed). */
#ifndef KH_LOG_INTERNAL_H
#define KH_LOG_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/log.h"
#include "common/buf.h"

/* ---- merkle.c: proofs over any source of complete-subtree hashes ---- */

/* A source of Merkle hashes: subtree(ctx, k, j, out) stores the hash of the
 * complete subtree over leaves [j * 2^k, (j + 1) * 2^k). */
typedef struct kh_mt_src {
  kh_err (*subtree)(void *ctx, unsigned k, uint64_t j, kh_log_hash out);
  void *ctx;
} kh_mt_src;

/* MTH(D[a:b]) for a node range of the tree (a aligned to a power of two >=
 * b - a, or a = 0). */
kh_err kh_mt_range(const kh_mt_src *s, uint64_t a, uint64_t b, kh_log_hash out);
kh_err kh_mt_inclusion(const kh_mt_src *s, uint64_t index, uint64_t size,
                       kh_log_hash proof[KH_LOG_PROOF_MAX], size_t *plen);
kh_err kh_mt_consistency(const kh_mt_src *s, uint64_t size1, uint64_t size2,
                         kh_log_hash proof[KH_LOG_PROOF_MAX], size_t *plen);
/* A source over n leaf hashes in memory (merkle.c).  The subtree function
 * is KH_ERR_INVAL for any (k, j) not wholly inside the n leaves. */
typedef struct kh_mt_mem {
  const kh_log_hash *leaves;
  uint64_t n;
} kh_mt_mem;
kh_err kh_mt_mem_subtree(void *ctx, unsigned k, uint64_t j, kh_log_hash out);
/* MTH of n hashes already in memory (n <= 256 in practice). */
void kh_mt_hash_list(kh_log_hash out, const kh_log_hash *h, uint64_t n);

/* ---- note.c ---- */

struct kh_note_verifier {
  char *name;
  uint32_t hash;
  int alg;
  uint8_t pk[32];
};
/* SHA-256(name || "\n" || alg || key)[:4] as big-endian uint32 */
uint32_t kh_note_key_hash(const char *name, size_t nlen, int alg, const uint8_t *key,
                          size_t klen);
/* Valid key name: non-empty UTF-8, no whitespace, no '+', no control below
 * U+0020 (it must fit in a note), <= 255 bytes. */
bool kh_note_name_ok(const char *name, size_t len);
/* Valid note text: non-empty, ends in '\n', UTF-8 without controls but '\n'. */
bool kh_note_text_ok(const uint8_t *p, size_t len);
/* UTF-8 as a signed note allows it: no control below U+0020 except '\n'
 * (with allow_nl).  U+007F is allowed. */
bool kh_utf8_ok(const uint8_t *p, size_t len, bool allow_nl);
/* Stricter, for log entry values (docs/log.md §5): no '\n' and no 0x7f. */
bool kh_utf8_printable(const uint8_t *p, size_t len);

/* ---- tile.c: paths and tile / entry-bundle parsing ---- */

#define KH_TILE_WIDTH 256
#define KH_TILE_HEIGHT 8
/* Path of a tile relative to the log directory: level -1 is the entry
 * bundle ("tile/entries/..."); w = 0 for a full tile, else ".p/<w>". */
kh_err kh_tile_path(char *buf, size_t cap, int level, uint64_t n, unsigned w);
/* Check that a hash tile holds exactly w hashes. */
kh_err kh_tile_check(const uint8_t *data, size_t len, unsigned w);
/* Parse an entry bundle of exactly count entries; off[i], elen[i] (arrays of
 * count, may be NULL) receive each entry's position. */
kh_err kh_bundle_parse(const uint8_t *data, size_t len, unsigned count, size_t *off,
                       size_t *elen);

/* ---- tlog.c test hooks ---- */

/* Crash simulation for tests: the next append stops after stage
 * 1 = tiles written (no checkpoint), 2 = tiles synced and checkpoint temp
 * written but not renamed; it returns KH_ERR_IO and leaves the in-memory
 * log unusable (free it and reopen, as after a crash). */
void kh_tlog__crash_after(kh_tlog *log, int stage);

/* ---- time (entry.c) ---- */
/* "YYYY-MM-DDTHH:MM:SSZ" (20 chars + NUL) */
kh_err kh_log_time_format(int64_t t, char out[21]);
kh_err kh_log_time_parse(const char *s, size_t len, int64_t *t);

#endif
