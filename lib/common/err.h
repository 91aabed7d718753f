/* Internal: setting the thread-local error detail. */
#ifndef KH_COMMON_ERR_H
#define KH_COMMON_ERR_H
#include "keyhold/error.h"

/* Record a detail for code e and return e, so callers can
 * `return kh_seterr(KH_ERR_IO, "open %s: %s", p, strerror(errno));` */
kh_err kh_seterr(kh_err e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefix the existing detail with more context ("snapshot 1a2b: ..."). */
kh_err kh_adderr(kh_err e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void kh_clearerr(void);
/* Map an errno from a failed syscall to a kh_err (ENOSPC -> KH_ERR_NOSPACE...). */
kh_err kh_errno_code(int err);

#endif
