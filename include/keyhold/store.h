/* libkeyhold: a region's object store for the region server (keyholdd):
 * the opaque objects of every account (docs/format.md §1), over the
 * region's storage provider (the directory provider today; an S3-compatible
 * one later implements the same provider interface underneath).  The
 * server never interprets what it stores: objects are encrypted and
 * authenticated by the devices.
 *
 * Names are '/'-separated relative paths ("accounts/<id>/data/ab/<id>").
 * Writes are atomic and durable (all or nothing, then fsynced).  A handle
 * may be used from many threads.  Every function returns a kh_err and
 * leaves a detail for kh_errdetail(); nothing prints. */
#ifndef KEYHOLD_STORE_H
#define KEYHOLD_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"

typedef struct kh_store kh_store;

/* The store of the region in directory dir (the directory provider). */
kh_err kh_store_open_dir(const char *dir, kh_store **out);
/* NULL is a no-op. */
void kh_store_free(kh_store *s);

/* Store len bytes as name.  excl: KH_ERR_EXISTS if name exists (and
 * nothing changes); otherwise an existing object is replaced atomically. */
kh_err kh_store_put(kh_store *s, const char *name, const void *data, size_t len, bool excl);
/* Store the whole regular file at path as name without reading it into
 * memory (a file written on the same filesystem as the region is linked or
 * renamed into place).  On success path is gone; on failure it is left for
 * the caller to remove.  excl as kh_store_put. */
kh_err kh_store_put_file(kh_store *s, const char *name, const char *path, bool excl);
/* Read exactly len bytes at off into out.  KH_ERR_NOTFOUND if missing,
 * KH_ERR_FORMAT if the object is shorter than off + len. */
kh_err kh_store_get(kh_store *s, const char *name, uint64_t off, size_t len, void *out);
/* The whole object into *out (malloc'd, caller frees; NULL when empty).
 * KH_ERR_TOOBIG before reading if it is larger than max. */
kh_err kh_store_read(kh_store *s, const char *name, uint64_t max, uint8_t **out, size_t *len);
/* The object's size; KH_ERR_NOTFOUND if missing. */
kh_err kh_store_size(kh_store *s, const char *name, uint64_t *size);
/* Called once per object below prefix + "/" (recursively) with its name
 * relative to prefix; a non-zero return stops the listing. */
typedef int (*kh_store_list_fn)(const char *name, uint64_t size, void *ctx);
/* A missing prefix lists nothing.  Order unspecified. */
kh_err kh_store_list(kh_store *s, const char *prefix, kh_store_list_fn fn, void *ctx);
/* Remove; a missing object is KH_OK. */
kh_err kh_store_delete(kh_store *s, const char *name);

#endif
