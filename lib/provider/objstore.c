/* The region server's object store (include/keyhold/store.h): a thin,
 * public face of the provider (provider/provider.h), so that the daemon
 * does not reach into lib/. */
#include "keyhold/store.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "provider/provider.h"

struct kh_store {
  kh_provider *p;
};

kh_err kh_store_open_dir(const char *dir, kh_store **out)
{
  kh_store *s = calloc(1, sizeof *s);
  kh_err e;
  *out = NULL;
  if (!s)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if ((e = kh_provider_dir_new(dir, &s->p))) {
    free(s);
    return e;
  }
  *out = s;
  return KH_OK;
}

void kh_store_free(kh_store *s)
{
  if (!s)
    return;
  kh_provider_free(s->p);
  free(s);
}

kh_err kh_store_put(kh_store *s, const char *name, const void *data, size_t len, bool excl)
{
  return kh_provider_put(s->p, name, data, len, excl);
}

kh_err kh_store_put_file(kh_store *s, const char *name, const char *path, bool excl)
{
  if (kh_fault_point("provider.put"))
    return kh_seterr(KH_ERR_IO, "object %s: write failed (injected fault)", name);
  return kh_provider_dir_put_file(s->p, name, path, excl);
}

kh_err kh_store_get(kh_store *s, const char *name, uint64_t off, size_t len, void *out)
{
  kh_buf b;
  kh_buf_init(&b, len ? len : 1);
  kh_err e = kh_provider_get(s->p, name, off, len, &b);
  if (!e && b.len == len && len)
    memcpy(out, b.data, len);
  else if (!e && b.len != len)
    e = kh_seterr(KH_ERR_FORMAT, "object %s: short read", name);
  kh_buf_release(&b);
  return e;
}

kh_err kh_store_read(kh_store *s, const char *name, uint64_t max, uint8_t **out, size_t *len)
{
  kh_buf b;
  *out = NULL;
  *len = 0;
  kh_buf_init(&b, max > SIZE_MAX ? SIZE_MAX : (size_t)max);
  kh_err e = kh_provider_read(s->p, name, max, &b);
  if (!e) {
    *out = kh_buf_detach(&b, len);
  }
  kh_buf_release(&b);
  return e;
}

kh_err kh_store_size(kh_store *s, const char *name, uint64_t *size)
{
  return kh_provider_size(s->p, name, size);
}

kh_err kh_store_list(kh_store *s, const char *prefix, kh_store_list_fn fn, void *ctx)
{
  return kh_provider_list(s->p, prefix, fn, ctx);
}

kh_err kh_store_delete(kh_store *s, const char *name)
{
  return kh_provider_del(s->p, name);
}
