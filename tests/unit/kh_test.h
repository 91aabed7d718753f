/* Tiny unit-test harness: CHECK records a failure and goes on; the test
 * binary exits 1 if anything failed.  Each check that fails prints where. */
#ifndef KH_TEST_H
#define KH_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int kh_test_failures, kh_test_checks;

#define CHECK(cond) do { kh_test_checks++; if (!(cond)) { kh_test_failures++; \
  fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); kh_test_checks++; \
  if (_a != _b) { kh_test_failures++; fprintf(stderr, "%s:%d: CHECK_EQ failed: %s = %lld, %s = %lld\n", \
  __FILE__, __LINE__, #a, _a, #b, _b); } } while (0)
#define CHECK_MEM(a, b, n) do { kh_test_checks++; if (memcmp((a), (b), (n)) != 0) { kh_test_failures++; \
  fprintf(stderr, "%s:%d: CHECK_MEM failed: %s != %s\n", __FILE__, __LINE__, #a, #b); } } while (0)
#define CHECK_OK(expr) do { int _e = (expr); kh_test_checks++; if (_e != 0) { kh_test_failures++; \
  fprintf(stderr, "%s:%d: %s returned %d (%s)\n", __FILE__, __LINE__, #expr, _e, kh_errdetail()); } } while (0)

/* CHECK_ERR: expr fails with exactly the code a contract promises. */
#define CHECK_ERR(expr, want) do { int _e = (expr), _w = (want); kh_test_checks++; if (_e != _w) { \
  kh_test_failures++; fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n", __FILE__, \
  __LINE__, #expr, _e, kh_strerror((kh_err)_e), _w, kh_strerror((kh_err)_w)); } } while (0)

#define RUN(fn) do { fprintf(stderr, "-- %s\n", #fn); fn(); } while (0)

static inline int kh_test_done(const char *name)
{
  fprintf(stderr, "%s: %d checks, %d failed\n", name, kh_test_checks, kh_test_failures);
  return kh_test_failures ? 1 : 0;
}
#endif
