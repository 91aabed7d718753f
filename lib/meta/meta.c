/* The kh_meta_* functions (include/keyhold/meta.h): argument checks, then
 * the backend's op.  Checks live here so that every backend gets the same
 * contract. */
#include "keyhold/meta.h"

#include <string.h>

#include "common/err.h"

static bool id_ok(const char *s)
{
  if (!s || strnlen(s, KH_META_ID_HEX + 1) != KH_META_ID_HEX)
    return false;
  for (size_t i = 0; i < KH_META_ID_HEX; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

static kh_err bad_id(void)
{
  return kh_seterr(KH_ERR_INVAL, "metadata: id is not %d lowercase hex digits", KH_META_ID_HEX);
}

static bool name_ok(const char *n)
{
  size_t l = n ? strnlen(n, KH_META_NAME_MAX + 1) : 0;
  if (l == 0 || l > KH_META_NAME_MAX)
    return false;
  for (size_t i = 0; i < l; i++)
    if ((unsigned char)n[i] < 0x20 || n[i] == 0x7f)
      return false;
  return true;
}

static kh_err device_ok(const kh_meta_device *d)
{
  if (!id_ok(d->id) || !id_ok(d->account))
    return bad_id();
  if (!name_ok(d->name))
    return kh_seterr(KH_ERR_INVAL, "metadata: device name must be 1-%d printable bytes",
                     KH_META_NAME_MAX);
  if (d->caps > 15)
    return kh_seterr(KH_ERR_INVAL, "metadata: unknown capability bits");
  return KH_OK;
}

void kh_meta_free(kh_meta *m)
{
  if (m)
    m->ops->close(m);
}

kh_err kh_meta_signup(kh_meta *m, const kh_meta_device *first, const uint8_t *invite_hash,
                      int64_t now, uint64_t quota)
{
  kh_err e = device_ok(first);
  return e ? e : m->ops->signup(m, first, invite_hash, now, quota);
}

kh_err kh_meta_account_get(kh_meta *m, const char *id, kh_meta_account *out)
{
  memset(out, 0, sizeof *out);
  return id_ok(id) ? m->ops->account_get(m, id, out) : bad_id();
}

kh_err kh_meta_account_list(kh_meta *m, kh_meta_account_fn fn, void *ctx)
{
  return m->ops->account_list(m, fn, ctx);
}

kh_err kh_meta_quota_set(kh_meta *m, const char *account, uint64_t bytes)
{
  return id_ok(account) ? m->ops->quota_set(m, account, bytes) : bad_id();
}

kh_err kh_meta_usage_add(kh_meta *m, const char *account, int64_t delta, bool check)
{
  return id_ok(account) ? m->ops->usage_add(m, account, delta, check) : bad_id();
}

kh_err kh_meta_usage_set(kh_meta *m, const char *account, uint64_t bytes)
{
  if (bytes > INT64_MAX)
    return kh_seterr(KH_ERR_INVAL, "metadata: usage out of range");
  return id_ok(account) ? m->ops->usage_set(m, account, bytes) : bad_id();
}

kh_err kh_meta_device_add(kh_meta *m, const kh_meta_device *d)
{
  kh_err e = device_ok(d);
  return e ? e : m->ops->device_add(m, d);
}

kh_err kh_meta_device_get(kh_meta *m, const char *id, kh_meta_device *out)
{
  memset(out, 0, sizeof *out);
  return id_ok(id) ? m->ops->device_get(m, id, out) : bad_id();
}

kh_err kh_meta_device_list(kh_meta *m, const char *account, kh_meta_device_fn fn, void *ctx)
{
  return id_ok(account) ? m->ops->device_list(m, account, fn, ctx) : bad_id();
}

kh_err kh_meta_device_revoke(kh_meta *m, const char *account, const char *id, int64_t now)
{
  return id_ok(account) && id_ok(id) ? m->ops->device_revoke(m, account, id, now) : bad_id();
}

kh_err kh_meta_invite_add(kh_meta *m, const uint8_t hash[32], int64_t now, int64_t expires)
{
  return m->ops->invite_add(m, hash, now, expires);
}

kh_err kh_meta_enrol_add(kh_meta *m, const kh_meta_enrolment *e, int64_t now)
{
  if (!id_ok(e->id))
    return bad_id();
  if (!name_ok(e->name))
    return kh_seterr(KH_ERR_INVAL, "metadata: device name must be 1-%d printable bytes",
                     KH_META_NAME_MAX);
  if (strnlen(e->bucket, 3) != 2)
    return kh_seterr(KH_ERR_INVAL, "metadata: bucket is 2 characters");
  return m->ops->enrol_add(m, e, now);
}

kh_err kh_meta_enrol_get(kh_meta *m, const char *id, int64_t now, kh_meta_enrolment *out)
{
  memset(out, 0, sizeof *out);
  return id_ok(id) ? m->ops->enrol_get(m, id, now, out) : bad_id();
}

kh_err kh_meta_enrol_list(kh_meta *m, const char *bucket, int64_t now, kh_meta_enrol_fn fn,
                          void *ctx)
{
  if (!bucket || strnlen(bucket, 3) != 2)
    return kh_seterr(KH_ERR_INVAL, "metadata: bucket is 2 characters");
  return m->ops->enrol_list(m, bucket, now, fn, ctx);
}

kh_err kh_meta_enrol_approve(kh_meta *m, const char *id, const kh_meta_enrolment *a,
                             int64_t now)
{
  if (!id_ok(id) || !id_ok(a->account) || !id_ok(a->device) || !id_ok(a->approver))
    return bad_id();
  if (a->wrap_len == 0 || a->wrap_len > KH_META_WRAP_MAX || a->caps == 0 || a->caps > 15)
    return kh_seterr(KH_ERR_INVAL, "metadata: approval malformed");
  return m->ops->enrol_approve(m, id, a, now);
}

kh_err kh_meta_enrol_refuse(kh_meta *m, const char *id, int64_t now)
{
  return id_ok(id) ? m->ops->enrol_refuse(m, id, now) : bad_id();
}

kh_err kh_meta_enrol_purge(kh_meta *m, int64_t before)
{
  return m->ops->enrol_purge(m, before);
}
