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

/* The detail lives in thread-local storage.  An error that crosses threads
 * (a worker's failure returned by the thread that joins it) carries its
 * detail along: the failing thread saves it, the returning thread restores
 * it, so the message names the real cause instead of whatever the returning
 * thread recorded last. */
#define KH_ERRDETAIL_MAX 1024
typedef struct kh_errsave {
  kh_err code;
  char detail[KH_ERRDETAIL_MAX];
} kh_errsave;
/* Capture this thread's detail for e (empty if it was recorded for another code). */
void kh_err_save(kh_errsave *s, kh_err e);
/* Make s this thread's current error; returns its code. */
kh_err kh_err_restore(const kh_errsave *s);
/* Map an errno from a failed syscall to a kh_err (ENOSPC -> KH_ERR_NOSPACE...). */
kh_err kh_errno_code(int err);

#endif
