/* The device's local file cache (SQLite, under the user's cache directory,
 * never in the region): path + stat fingerprint -> chunk list, so unchanged
 * files are not read again.  Losing or corrupting it loses nothing: a file
 * whose entry is missing or whose chunks are no longer in the index is
 * simply read again. */
#ifndef KH_CACHE_H
#define KH_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "snapshot/tree.h"

typedef struct kh_cache kh_cache;

typedef struct kh_cache_key {
  uint64_t size, ino, dev;
  int64_t mtime_ns, ctime_ns;
} kh_cache_key;

/* Open or create the cache database at path (parent directories created).
 * A damaged database is deleted and recreated. */
kh_err kh_cache_open(const char *path, kh_cache **out);
void kh_cache_free(kh_cache *c);
/* KH_ERR_INVAL when the cache database at path would be inside the region
 * directory (the provider would hold plaintext file names).  Both paths are
 * compared in canonical form: relative paths and symlinks are resolved, and
 * path need not exist yet (nothing is created). */
kh_err kh_cache_check_outside(const char *path, const char *region);
/* *refs is malloc'd (free()) when *found.  *known (if not NULL) says
 * whether the cache has a row for path at all, matching k or not (backup
 * tells a changed file from a new one by it). */
kh_err kh_cache_lookup(kh_cache *c, const uint8_t *path, size_t plen, const kh_cache_key *k,
                       kh_chunkref **refs, size_t *n, bool *found, bool *known);
/* The extended attributes recorded with the row the last kh_cache_lookup
 * found (docs/format.md §8 encoding, not checked here; *len 0: none);
 * false if that row does not know them.  Valid until the next call on c. */
bool kh_cache_xattrs(kh_cache *c, const uint8_t **p, size_t *len);
kh_err kh_cache_begin(kh_cache *c);
/* xattrs NULL: not known (stored as NULL). */
kh_err kh_cache_put(kh_cache *c, const uint8_t *path, size_t plen, const kh_cache_key *k,
                    const kh_chunkref *refs, size_t n, const uint8_t *xattrs, size_t xattrlen);
kh_err kh_cache_commit(kh_cache *c);

#endif
