/* Test-only fault injection, in the manner of SQLite's and curl's torture
 * tests: chosen call sites ask kh_fault_point() whether to fail, and a test
 * arms "fail the Nth matching call" around an operation, for N = 1, 2, ...
 * until the operation completes without reaching N.
 *
 * Points are named "<class>.<where>": "alloc.buf" (kh_buf growth),
 * "alloc.secure" (kh_secure_alloc), "provider.put", "provider.del" (every
 * backend, before it is called), and in the atomic file write (fsutil.c)
 * "file.write" (before anything), "file.fsync", "file.rename" /
 * "file.link" and "file.dirsync" (after the rename: the new content is
 * visible but reported as failed).  A point that fires behaves exactly like
 * the failure it stands for (NULL / KH_ERR_NOMEM, or EIO / KH_ERR_IO).
 *
 * "lock.held" (lock.c, right after a lock is taken) and "restore.verify"
 * (restore.c, after the files are written, before --verify re-reads them)
 * are event points: they never fail, they are there for the actions below.
 *
 * Disarmed (the default), a point costs one relaxed atomic load.  The
 * environment variable KH_FAULT="PREFIX:N" arms the same countdown for a
 * whole process (for CLI tests); "PREFIX:N:stop" makes the Nth call stop
 * the process (SIGSTOP, then it goes on normally when continued) and
 * "PREFIX:N:kill" kill it (SIGKILL), so a CLI test can hold or crash a
 * command at one exact point without a tracer; and KH_FAULT_LOG=FILE makes a fired point
 * append "NAME N" to FILE (the only output of this module, test-only).
 * Safe to call from any thread. */
#ifndef KH_COMMON_FAULT_H
#define KH_COMMON_FAULT_H
#include <stdbool.h>

/* True if this call of the point `name` must fail (then the countdown is
 * spent: each arming fails one call). */
bool kh_fault_point(const char *name);

/* Fail the nth (1-based) call of a point whose name starts with prefix
 * (not copied: a string literal); nth 0 disarms.  Resets the counters. */
void kh_fault_arm(const char *prefix, unsigned long nth);
/* Calls of matching points since kh_fault_arm, and whether the armed one
 * fired. */
unsigned long kh_fault_calls(void);
bool kh_fault_fired(void);

#endif
