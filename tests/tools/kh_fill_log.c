/* Test fixture: append N operator unwraps of ACCOUNT to the log of REGION
 * in one process (what N `keyhold admin unwrap` runs would do, without N
 * process starts and key-service opens).  Public API only.
 *   kh_fill_log REGION ACCOUNT N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/keyhold.h"

int main(int argc, char **argv)
{
  kh_kms *k = NULL;
  kh_err e;
  if (argc != 4) {
    fprintf(stderr, "usage: kh_fill_log REGION ACCOUNT N\n");
    return 2;
  }
  long n = strtol(argv[3], NULL, 10);
  if ((e = kh_kms_open(argv[1], &k))) {
    fprintf(stderr, "kh_fill_log: open: %s: %s\n", kh_strerror(e), kh_errdetail());
    return 1;
  }
  for (long i = 0; i < n; i++) {
    char reason[32];
    snprintf(reason, sizeof reason, "fill %ld", i);
    kh_kms_request rq = {"operator", reason, NULL, NULL, NULL};
    kh_kms_release r;
    memset(&r, 0, sizeof r);
    if ((e = kh_kms_unwrap(k, argv[2], &rq, &r))) {
      fprintf(stderr, "kh_fill_log: unwrap %ld: %s: %s\n", i, kh_strerror(e), kh_errdetail());
      kh_kms_free(k);
      return 1;
    }
    kh_kms_release_clear(&r);
  }
  kh_kms_free(k);
  return 0;
}
