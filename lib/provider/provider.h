/* The provider: an untrusted store of opaque, immutable objects named by
 * '/'-separated relative paths (docs/format.md §1).  The directory backend
 * is first; an S3 backend or the HTTP region server implement the same ops.
 * Every object keyhold writes is encrypted and authenticated before it gets
 * here, and everything read back is authenticated before it is parsed. */
#ifndef KH_PROVIDER_H
#define KH_PROVIDER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"
#include <sys/uio.h>
#include "common/buf.h"
#include "common/err.h"
#include "common/fault.h"

/* Largest object of each kind a reader accepts (docs/format.md §1.1).  An
 * object's size is the provider's claim: a whole-object read refuses a larger
 * one with KH_ERR_TOOBIG before anything is allocated or read.  Each bound is
 * what the format lets a writer produce, with headroom; the pack bound is
 * checked against the pack limits in lib/pack/pack.c. */
#define KH_OBJMAX_REGION_MARKER 4096u       /* keyhold-region */
#define KH_OBJMAX_KEY 4096u                 /* keys/<wid>: any wrap kind */
#define KH_OBJMAX_DEVICE 4096u              /* devices/<did> */
#define KH_OBJMAX_PROTECTION 4096u          /* protection record */
#define KH_OBJMAX_LOCK 4096u                /* locks/<id> */
#define KH_OBJMAX_SNAPSHOT ((16u << 20) + 4096u)   /* 16 MiB body + signature + box */
#define KH_OBJMAX_INDEX ((1u << 30) + (8u << 20))  /* zstd bound of 1 GiB + box */
#define KH_OBJMAX_DAMAGE ((96u << 20) + 4096u) /* damage/<id>: 2^20 packs + 2^20 blobs + box */
#define KH_OBJMAX_PACK (96u << 20)          /* 8 MiB + one 64 MiB blob + header + PADME */
#define KH_OBJMAX_PACK_HEADER (10u << 20)   /* sealed header of 200,000 blobs */

typedef struct kh_provider kh_provider;
/* name relative to the prefix given to list(); size in bytes. Non-zero stops. */
typedef int (*kh_provider_list_fn)(const char *name, uint64_t size, void *ctx);

typedef struct kh_provider_ops {
  /* Store an object durably and atomically (readers see all or nothing).
   * excl: fail KH_ERR_EXISTS if it exists. */
  kh_err (*put)(kh_provider *p, const char *name, const struct iovec *iov, size_t niov,
                bool excl);
  /* Append len bytes at off to out.  Reading past the end is KH_ERR_FORMAT
   * (truncated); missing is KH_ERR_NOTFOUND; anything but a regular object
   * (a symlink, FIFO or device planted in a directory) is KH_ERR_FORMAT. */
  kh_err (*get)(kh_provider *p, const char *name, uint64_t off, size_t len, kh_buf *out);
  /* Append the whole object to out.  One larger than max (a KH_OBJMAX_*) is
   * KH_ERR_TOOBIG before anything is allocated or read; errors as get. */
  kh_err (*read)(kh_provider *p, const char *name, uint64_t max, kh_buf *out);
  /* Size of a regular object (a claim: never allocate by it unchecked). */
  kh_err (*size)(kh_provider *p, const char *name, uint64_t *size);
  /* Every object whose name starts with prefix + "/", recursively; order
   * unspecified. A missing prefix lists nothing. */
  kh_err (*list)(kh_provider *p, const char *prefix, kh_provider_list_fn fn, void *ctx);
  /* Remove; a missing object is KH_OK (idempotent). */
  kh_err (*del)(kh_provider *p, const char *name);
  void (*destroy)(kh_provider *p);
} kh_provider_ops;

struct kh_provider {
  const kh_provider_ops *ops;
};

/* Directory backend rooted at dir (must exist).  Paths below dir are never
 * resolved through symlinks; new directories are fsynced in their parent. */
kh_err kh_provider_dir_new(const char *dir, kh_provider **out);
/* Store the whole regular file at path (complete, written by the caller;
 * never a symlink) as object name of the directory provider p, as put does
 * but without holding it in memory: linked (excl) or renamed into place when
 * on the same filesystem, else copied next to it first.  On success path is
 * gone; on failure the caller still owns (and removes) it. */
kh_err kh_provider_dir_put_file(kh_provider *p, const char *name, const char *path, bool excl);
void kh_provider_free(kh_provider *p);

/* A provider over inner (owned by it on success, freed with it; left to
 * the caller on failure) that holds
 * put to up_bps and get/read to down_bps bytes per second (0: unlimited),
 * across every thread using it; a tenth of a second's worth may burst. */
kh_err kh_provider_ratelimit_new(kh_provider *inner, uint64_t up_bps, uint64_t down_bps,
                                 kh_provider **out);
/* The limiter's bookkeeping, for tests: reserve bytes at rate on the
 * timeline *next at time now; returns when the transfer may proceed. */
double kh_ratelimit_reserve(double *next, double rate, double now, uint64_t bytes);

/* Store the concatenation of iov[0..niov) as one object.  Every write and
 * delete passes a fault point (common/fault.h) that fails it before the
 * backend sees it. */
static inline kh_err kh_provider_putv(kh_provider *p, const char *n, const struct iovec *iov,
                                      size_t niov, bool x)
{
  if (kh_fault_point("provider.put"))
    return kh_seterr(KH_ERR_IO, "object %s: write failed (injected fault)", n);
  return p->ops->put(p, n, iov, niov, x);
}
static inline kh_err kh_provider_put(kh_provider *p, const char *n, const void *d, size_t l, bool x)
{ struct iovec one = {(void *)d, l}; return kh_provider_putv(p, n, &one, 1, x); }
static inline kh_err kh_provider_get(kh_provider *p, const char *n, uint64_t off, size_t len, kh_buf *o)
{ return p->ops->get(p, n, off, len, o); }
/* The whole object, refused (KH_ERR_TOOBIG) when larger than max. */
static inline kh_err kh_provider_read(kh_provider *p, const char *n, uint64_t max, kh_buf *o)
{ return p->ops->read(p, n, max, o); }
static inline kh_err kh_provider_size(kh_provider *p, const char *n, uint64_t *s)
{ return p->ops->size(p, n, s); }
static inline kh_err kh_provider_list(kh_provider *p, const char *pre, kh_provider_list_fn f, void *c)
{ return p->ops->list(p, pre, f, c); }
static inline kh_err kh_provider_del(kh_provider *p, const char *n)
{
  if (kh_fault_point("provider.del"))
    return kh_seterr(KH_ERR_IO, "object %s: delete failed (injected fault)", n);
  return p->ops->del(p, n);
}

#endif
