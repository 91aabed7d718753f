/* Unit tests for lib/common/err: a detail belongs to the code it was
 * recorded for (kh_adderr never prefixes another code's detail), and an
 * error that crosses threads carries its detail (kh_err_save/restore). */
#include "common/err.h"
#include "kh_test.h"

#include <pthread.h>
#include <string.h>

static void test_detail_belongs_to_its_code(void)
{
  kh_clearerr();
  CHECK_EQ(kh_seterr(KH_ERR_IO, "write /x: disk on fire"), KH_ERR_IO);
  CHECK(!strcmp(kh_errdetail(), "write /x: disk on fire"));
  /* more context for the same error */
  CHECK_EQ(kh_adderr(KH_ERR_IO, "pack %s", "ab"), KH_ERR_IO);
  CHECK(!strcmp(kh_errdetail(), "pack ab: write /x: disk on fire"));
  /* a handled error left a detail behind; a later error of another code
   * that sets none must not be described by it */
  kh_seterr(KH_ERR_NOTFOUND, "not a passcode wrap");
  CHECK_EQ(kh_adderr(KH_ERR_NOSPACE, "backup %s", "/home"), KH_ERR_NOSPACE);
  CHECK(!strcmp(kh_errdetail(), "backup /home"));
  kh_clearerr();
  CHECK(!strcmp(kh_errdetail(), ""));
}

typedef struct worker_err {
  kh_errsave save;
  kh_err e;
} worker_err;

static void *worker(void *arg)
{
  worker_err *w = arg;
  w->e = kh_seterr(KH_ERR_NOSPACE, "write /region/data/ab/x.tmp: No space left on device");
  kh_err_save(&w->save, w->e);
  return NULL;
}

static void test_detail_crosses_threads(void)
{
  /* the joining thread has its own, unrelated detail */
  kh_seterr(KH_ERR_NOTFOUND, "not a passcode wrap");
  worker_err w;
  memset(&w, 0, sizeof w);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, worker, &w) == 0);
  pthread_join(t, NULL);
  CHECK(!strcmp(kh_errdetail(), "not a passcode wrap")); /* thread-local */
  CHECK_EQ(kh_err_restore(&w.save), KH_ERR_NOSPACE);
  CHECK(!strcmp(kh_errdetail(), "write /region/data/ab/x.tmp: No space left on device"));
  /* and it is the detail of that code from then on */
  kh_adderr(KH_ERR_NOSPACE, "backup");
  CHECK(!strcmp(kh_errdetail(), "backup: write /region/data/ab/x.tmp: No space left on device"));
  /* saving for a code whose detail was not recorded saves no detail */
  kh_seterr(KH_ERR_IO, "something else");
  kh_errsave s;
  kh_err_save(&s, KH_ERR_AUTH);
  CHECK_EQ(kh_err_restore(&s), KH_ERR_AUTH);
  CHECK(!strcmp(kh_errdetail(), ""));
}

int main(void)
{
  RUN(test_detail_belongs_to_its_code);
  RUN(test_detail_crosses_threads);
  return kh_test_done("test_err");
}
