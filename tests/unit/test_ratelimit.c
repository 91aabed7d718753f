/* Unit tests for the rate-limiting provider (lib/provider/provider_ratelimit.c):
 * the token-bucket timeline, and that puts and reads from several threads
 * together take as long as their bytes at the limit, and pass through
 * content and errors unchanged. */
#include "provider/provider.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "kh_test.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static char dir[] = "/tmp/kh-test-rl-XXXXXX";

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_timeline(void)
{
  double next = 0;
  /* idle: a burst of a tenth of a second goes at once */
  CHECK(kh_ratelimit_reserve(&next, 1000, 100.0, 100) == 100.0);
  /* the next 1000 bytes at 1000 B/s are due a second later, minus the burst */
  double due = kh_ratelimit_reserve(&next, 1000, 100.0, 1000);
  CHECK(due > 100.99 && due < 101.01);
  /* back-to-back reservations queue up */
  due = kh_ratelimit_reserve(&next, 1000, 100.0, 500);
  CHECK(due > 101.49 && due < 101.51);
  /* after a long idle spell the timeline restarts at now - burst: no credit hoarding */
  due = kh_ratelimit_reserve(&next, 1000, 200.0, 1000);
  CHECK(due > 200.89 && due < 200.91);
  /* rate 0: unlimited */
  next = 0;
  CHECK(kh_ratelimit_reserve(&next, 0, 5.0, 1u << 30) == 5.0);
}

typedef struct worker {
  kh_provider *p;
  int id;
  kh_err e;
} worker;

#define CHUNK (32 * 1024)
static unsigned char data[CHUNK];

static void *put_worker(void *arg)
{
  worker *w = arg;
  char name[64];
  for (int i = 0; i < 4 && !w->e; i++) {
    snprintf(name, sizeof name, "t/%d-%d", w->id, i);
    w->e = kh_provider_put(w->p, name, data, sizeof data, true);
  }
  return NULL;
}

static void *read_worker(void *arg)
{
  worker *w = arg;
  char name[64];
  kh_buf b;
  kh_buf_init(&b, 1 << 20);
  for (int i = 0; i < 4 && !w->e; i++) {
    snprintf(name, sizeof name, "t/%d-%d", w->id, i);
    kh_buf_reset(&b);
    w->e = kh_provider_read(w->p, name, 1 << 20, &b);
    if (!w->e && (b.len != sizeof data || memcmp(b.data, data, sizeof data)))
      w->e = KH_ERR_FORMAT;
  }
  kh_buf_release(&b);
  return NULL;
}

/* 4 threads x 4 objects x 32 KiB = 512 KiB at 256 KiB/s: >= 1.9 s together */
static double run_threads(kh_provider *p, void *(*fn)(void *))
{
  pthread_t t[4];
  worker w[4];
  double t0 = now();
  for (int i = 0; i < 4; i++) {
    w[i] = (worker){p, i, KH_OK};
    pthread_create(&t[i], NULL, fn, &w[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    CHECK_OK(w[i].e);
  }
  return now() - t0;
}

static void test_threads(void)
{
  kh_provider *inner = NULL, *p = NULL;
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (unsigned char)(i * 7 + 3);
  CHECK(mkdtemp(dir) != NULL);
  CHECK_OK(kh_provider_dir_new(dir, &inner));
  CHECK_OK(kh_provider_ratelimit_new(inner, 256 * 1024, 256 * 1024, &p));
  double up = run_threads(p, put_worker);
  fprintf(stderr, "512 KiB put at 256 KiB/s by 4 threads: %.2f s\n", up);
  CHECK(up >= 1.5);
  CHECK(up < 20);
  double down = run_threads(p, read_worker);
  fprintf(stderr, "512 KiB read at 256 KiB/s by 4 threads: %.2f s\n", down);
  CHECK(down >= 1.5);
  CHECK(down < 20);
  /* errors pass through unchanged, and cost nothing */
  kh_buf b;
  kh_buf_init(&b, 1 << 20);
  CHECK_ERR(kh_provider_read(p, "t/missing", 1 << 20, &b), KH_ERR_NOTFOUND);
  CHECK_ERR(kh_provider_put(p, "t/0-0", data, 1, true), KH_ERR_EXISTS);
  uint64_t sz = 0;
  CHECK_OK(kh_provider_size(p, "t/1-1", &sz));
  CHECK_EQ(sz, sizeof data);
  kh_buf_release(&b);
  kh_provider_free(p); /* frees inner too */
  kh_remove_tree(dir);
}

int main(void)
{
  RUN(test_timeline);
  RUN(test_threads);
  return kh_test_done("test_ratelimit");
}
