/* Filesystem helpers with crash-safe writes. */
#ifndef KH_COMMON_FSUTIL_H
#define KH_COMMON_FSUTIL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"

/* mkdir -p with mode; existing directories are fine. */
kh_err kh_mkdirs(const char *path, unsigned mode);
/* Write data to path atomically: temp file in the same directory, fsync,
 * rename, fsync the directory.  With excl, fails KH_ERR_EXISTS if path exists
 * (link(2) instead of rename, so a concurrent writer cannot be overwritten). */
kh_err kh_write_file_atomic(const char *path, const void *data, size_t len,
                            unsigned mode, bool excl);
/* The same, from a gather list of n pieces. */
struct iovec;
kh_err kh_write_filev_atomic(const char *path, const struct iovec *iov, size_t n, unsigned mode,
                             bool excl);
/* Read a whole file of at most max bytes (larger: KH_ERR_TOOBIG before any
 * allocation); caller frees *out with free().  Anything but a regular file
 * (a FIFO, device, socket) is KH_ERR_FORMAT, without blocking on it. */
kh_err kh_read_file(const char *path, size_t max, uint8_t **out, size_t *len);
/* fsync a directory */
kh_err kh_fsync_dir(const char *dir);
/* rm -rf (for tests and tools; refuses "" and "/") */
kh_err kh_remove_tree(const char *path);
/* Join a and b with one '/' into a new string (free()); NULL on OOM. */
char *kh_path_join(const char *a, const char *b);

#endif
