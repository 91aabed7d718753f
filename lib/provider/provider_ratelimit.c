/* A provider that passes every operation to another one and holds the bytes
 * written (put) and read (get, read) to a rate: one token bucket per
 * direction, shared by every thread that uses the provider.  Each transfer
 * reserves its bytes on the bucket's timeline under a lock, then sleeps
 * until its reservation is due, outside the lock. */
#include "provider/provider.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

/* Bytes that may go at once after an idle spell: a tenth of a second's
 * worth, so that a limit holds over any stretch longer than that. */
#define BURST_SECONDS 0.1

typedef struct bucket {
  pthread_mutex_t lock;
  double rate;  /* bytes per second; 0: unlimited */
  double next;  /* monotonic time at which every reserved byte has gone */
} bucket;

typedef struct rl_provider {
  kh_provider base;
  kh_provider *inner;
  bucket up, down;
} rl_provider;

static double mono_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double kh_ratelimit_reserve(double *next, double rate, double now, uint64_t bytes)
{
  if (rate <= 0)
    return now;
  /* an idle bucket is full: its timeline restarts now, not in the past */
  if (*next < now)
    *next = now;
  *next += (double)bytes / rate;
  return *next - BURST_SECONDS > now ? *next - BURST_SECONDS : now;
}

static void bucket_take(bucket *b, uint64_t bytes)
{
  if (b->rate <= 0 || bytes == 0)
    return;
  pthread_mutex_lock(&b->lock);
  double due = kh_ratelimit_reserve(&b->next, b->rate, mono_now(), bytes);
  pthread_mutex_unlock(&b->lock);
  struct timespec ts;
  ts.tv_sec = (time_t)due;
  ts.tv_nsec = (long)((due - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L)
    ts.tv_nsec = 999999999L;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
    ;
}

static kh_err rl_put(kh_provider *p, const char *name, const struct iovec *iov, size_t niov,
                     bool excl)
{
  rl_provider *r = (rl_provider *)p;
  uint64_t n = 0;
  for (size_t i = 0; i < niov; i++)
    n += iov[i].iov_len;
  bucket_take(&r->up, n);
  return r->inner->ops->put(r->inner, name, iov, niov, excl);
}

static kh_err rl_get(kh_provider *p, const char *name, uint64_t off, size_t len, kh_buf *out)
{
  rl_provider *r = (rl_provider *)p;
  kh_err e = r->inner->ops->get(r->inner, name, off, len, out);
  if (!e)
    bucket_take(&r->down, len);
  return e;
}

static kh_err rl_read(kh_provider *p, const char *name, uint64_t max, kh_buf *out)
{
  rl_provider *r = (rl_provider *)p;
  size_t before = out->len;
  kh_err e = r->inner->ops->read(r->inner, name, max, out);
  if (!e && out->len > before)
    bucket_take(&r->down, out->len - before);
  return e;
}

static kh_err rl_size(kh_provider *p, const char *name, uint64_t *size)
{
  rl_provider *r = (rl_provider *)p;
  return r->inner->ops->size(r->inner, name, size);
}

static kh_err rl_list(kh_provider *p, const char *prefix, kh_provider_list_fn fn, void *ctx)
{
  rl_provider *r = (rl_provider *)p;
  return r->inner->ops->list(r->inner, prefix, fn, ctx);
}

static kh_err rl_del(kh_provider *p, const char *name)
{
  rl_provider *r = (rl_provider *)p;
  return r->inner->ops->del(r->inner, name);
}

static void rl_destroy(kh_provider *p)
{
  rl_provider *r = (rl_provider *)p;
  kh_provider_free(r->inner);
  pthread_mutex_destroy(&r->up.lock);
  pthread_mutex_destroy(&r->down.lock);
  free(r);
}

static const kh_provider_ops rl_ops = {
  rl_put, rl_get, rl_read, rl_size, rl_list, rl_del, rl_destroy,
};

kh_err kh_provider_ratelimit_new(kh_provider *inner, uint64_t up_bps, uint64_t down_bps,
                                 kh_provider **out)
{
  *out = NULL;
  rl_provider *r = calloc(1, sizeof *r);
  if (!r)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  r->base.ops = &rl_ops;
  r->inner = inner;
  r->up.rate = (double)up_bps;
  r->down.rate = (double)down_bps;
  pthread_mutex_init(&r->up.lock, NULL);
  pthread_mutex_init(&r->down.lock, NULL);
  *out = &r->base;
  return KH_OK;
}
