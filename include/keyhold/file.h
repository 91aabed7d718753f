/* keyhold — durable file writes for programs built on libkeyhold. */
#ifndef KEYHOLD_FILE_H
#define KEYHOLD_FILE_H
#include <stddef.h>
#include "keyhold/error.h"

/* Replace path with len bytes of data, atomically and durably: a uniquely
 * named temporary file in the same directory is written, fsynced, renamed
 * over path, and the directory is fsynced.  After a crash path holds the old
 * content or the new one, never a mix.  mode applies to a new file (before
 * the umask).  On failure path is unchanged and the temporary is removed;
 * KH_ERR_NOSPACE on a full disk, KH_ERR_IO otherwise (detail names the path). */
kh_err kh_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode);

#endif
