/* An account on a region server (docs/protocol.md §6-§8): creating one
 * (sign-up, then the account's objects through the HTTP provider) and
 * opening it with the device's own key (the kind-4 wrap, docs/format.md §4;
 * no passcode).  Everything after opening is the same vault code as in a
 * directory: the HTTP provider stands in for the directory provider. */
#include "repo/vault_internal.h"
#include "keyhold/remote.h"
#include "http/http.h"
#include "keyhold/proto.h"
#include "common/err.h"
#include "common/hex.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool kh_vault_is_url(const char *region)
{
  return region && (!strncmp(region, "http://", 7) || !strncmp(region, "https://", 8));
}

static kh_err connect_remote(const char *url, const char *ca_file, kh_remote **r)
{
  kh_remote_opts ro = {.ca_file = ca_file};
  return kh_remote_new(url, &ro, r);
}

/* The server's region and instance, checked against what the device pinned. */
static kh_err check_pinned(kh_remote *r, const kh_device_state *d)
{
  kh_region_info ri;
  kh_err e = kh_remote_region(r, &ri);
  if (e)
    return e;
  if (strcmp(ri.instance, d->instance))
    return kh_seterr(KH_ERR_AUTH, "%s is region instance %s, but this device joined instance "
                     "%s there: refusing a server that is not the one this device knows",
                     d->url, ri.instance, d->instance);
  if (strcmp(ri.region, d->region))
    return kh_seterr(KH_ERR_AUTH, "%s says it is region '%s', this device knows it as '%s'",
                     d->url, ri.region, d->region);
  return KH_OK;
}

kh_err kh_vault_init_remote(const kh_init_opts *o, char account_out[KH_ACCOUNT_ID_HEX + 1])
{
  kh_err e = KH_OK;
  kh_remote *r = NULL;
  kh_device_state *d = NULL, *have = NULL;
  kh_vault *v = calloc(1, sizeof *v);
  kh_region_info ri;
  kh_buf rec;
  uint8_t wrap[KH_DEVICE_WRAP_LEN];
  kh_buf_init(&rec, 4096);
  if (!v || !(v->master = kh_secure_alloc(32))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  kh_index_init(&v->index);
  if ((e = connect_remote(o->region_path, o->ca_file, &r)) || (e = kh_remote_region(r, &ri)))
    goto out;
  if (o->region_id && strcmp(o->region_id, ri.region)) {
    e = kh_seterr(KH_ERR_INVAL, "%s is region '%s', not '%s'", o->region_path, ri.region,
                  o->region_id);
    goto out;
  }
  /* one identity per device dir and server: a second init is a mistake */
  if (kh_device_state_load(o->device_dir, ri.instance, &have) == KH_OK) {
    e = kh_seterr(KH_ERR_EXISTS, "this device already belongs to account %s on %s (device "
                  "%s): use another KEYHOLD_DEVICE_DIR for another account", have->account,
                  o->region_path, have->device);
    goto out;
  }
  if ((e = kh_device_state_new(&d)))
    goto out;
  snprintf(d->url, sizeof d->url, "%s", kh_remote_url(r));
  snprintf(d->region, sizeof d->region, "%s", ri.region);
  snprintf(d->instance, sizeof d->instance, "%s", ri.instance);
  if (o->device_name) {
    snprintf(d->name, sizeof d->name, "%s", o->device_name);
    if (strlen(o->device_name) > KH_REMOTE_NAME_MAX) {
      e = kh_seterr(KH_ERR_INVAL, "a device name is at most %d bytes", KH_REMOTE_NAME_MAX);
      goto out;
    }
  } else {
    char host[256] = "device";
    gethostname(host, sizeof host - 1);
    snprintf(d->name, sizeof d->name, "%.64s", host);
  }
  if ((e = kh_remote_signup(r, d, o->invite, NULL)))
    goto out;
  /* the account key, pinned on the device before anything is stored */
  randombytes_buf(v->master, 32);
  v->cipher = o->cipher ? o->cipher : kh_aead_default_cipher();
  if (kh_aead_nonce_bytes(v->cipher) == 0) {
    e = kh_seterr(KH_ERR_UNSUPPORTED, "unknown cipher %d", v->cipher);
    goto out;
  }
  kh_device_keycheck(v->master, d->keycheck);
  /* the identity is saved as soon as the server knows it: without it the
   * account could never be opened again */
  if ((e = kh_device_state_save(d, o->device_dir, false)))
    goto out;
  kh_remote_set_device(r, d);
  v->remote = r; /* borrowed: r is freed below, not with v */
  if ((e = kh_provider_http_new(r, &v->prov)))
    goto out;
  snprintf(v->region_id, sizeof v->region_id, "%s", ri.region);
  snprintf(v->account, sizeof v->account, "%s", d->account);
  snprintf(v->prefix, sizeof v->prefix, "accounts/%s", d->account);
  if ((e = kh_keys_init(&v->keys, v->master, v->cipher, v->region_id, v->account)))
    goto out;
  /* the device record, then the device's key, then protection, then the
   * account marker last (docs/format.md §11): an account without its
   * marker is incomplete */
  uint8_t did[16];
  char name[256];
  if ((e = kh_hex_decode(did, 16, d->device, 32)) ||
      (e = kh_vault_device_record(&rec, d->sign_pk, d->name)) ||
      (e = kh_vault_put_obj(v, "devices", "device", did, 16, rec.data, rec.len, true)))
    goto out;
  if ((e = kh_device_wrap_seal(d->box_pk, v->master, v->cipher, wrap)))
    goto out;
  snprintf(name, sizeof name, "%s/keys/%s", v->prefix, d->device);
  if ((e = kh_provider_put(v->prov, name, wrap, sizeof wrap, true)))
    goto out;
  if ((e = kh_vault_protect_new_account_remote(v)))
    goto out;
  static const char marker[] = "keyhold-account v1\n";
  snprintf(name, sizeof name, "%s/account", v->prefix);
  if ((e = kh_provider_put(v->prov, name, marker, sizeof marker - 1, true)))
    goto out;
  memcpy(account_out, d->account, KH_ACCOUNT_ID_HEX + 1);
out:
  sodium_memzero(wrap, sizeof wrap);
  kh_buf_release(&rec);
  if (v) {
    kh_keys_release(&v->keys);
    kh_secure_free(v->master);
    kh_provider_free(v->prov);
    kh_index_release(&v->index);
    free(v);
  }
  kh_remote_free(r);
  kh_device_state_free(have);
  kh_device_state_free(d);
  return e;
}

kh_err kh_vault_open_remote(const kh_open_opts *o, kh_vault *v)
{
  kh_err e = KH_OK;
  kh_buf obj;
  char name[256];
  kh_buf_init(&obj, KH_OBJMAX_KEY);
  if ((e = connect_remote(o->region_path, o->ca_file, &v->remote)) ||
      (e = kh_device_state_find(o->device_dir, o->region_path, &v->dev)))
    goto out;
  if (!*v->dev->account || !*v->dev->device) {
    e = kh_seterr(KH_ERR_STATE, "this device has not been approved into an account on %s yet",
                  o->region_path);
    goto out;
  }
  if (o->account && strncmp(v->dev->account, o->account, strlen(o->account))) {
    e = kh_seterr(KH_ERR_NOTFOUND, "this device belongs to account %s on %s, not %s",
                  v->dev->account, o->region_path, o->account);
    goto out;
  }
  if ((e = check_pinned(v->remote, v->dev)))
    goto out;
  kh_remote_set_device(v->remote, v->dev);
  if ((e = kh_provider_http_new(v->remote, &v->prov)))
    goto out;
  if (o->limit_upload || o->limit_download) {
    kh_provider *rl = NULL;
    if ((e = kh_provider_ratelimit_new(v->prov, o->limit_upload, o->limit_download, &rl)))
      goto out;
    v->prov = rl;
  }
  if ((e = kh_vault_read_marker(v->prov, v->region_id)))
    goto out;
  if (strcmp(v->region_id, v->dev->region)) {
    e = kh_seterr(KH_ERR_AUTH, "the region marker of %s says '%s', this device knows '%s'",
                  o->region_path, v->region_id, v->dev->region);
    goto out;
  }
  snprintf(v->account, sizeof v->account, "%s", v->dev->account);
  snprintf(v->prefix, sizeof v->prefix, "accounts/%s", v->account);
  snprintf(name, sizeof name, "%s/keys/%s", v->prefix, v->dev->device);
  if ((e = kh_provider_read(v->prov, name, KH_OBJMAX_KEY, &obj))) {
    e = e == KH_ERR_NOTFOUND ? kh_seterr(KH_ERR_NOTFOUND, "the server has no key for this "
                                         "device (%s) in account %s", v->dev->device,
                                         v->account)
                             : kh_adderr(e, "reading this device's key");
    goto out;
  }
  if ((e = kh_device_wrap_open(v->dev, obj.data, obj.len, v->master, &v->cipher)))
    goto out;
  /* a server could store a wrap of a key of its own: the device pinned the
   * account key's check value when it got it */
  char check[65];
  kh_device_keycheck(v->master, check);
  if (*v->dev->keycheck && sodium_memcmp(check, v->dev->keycheck, 64)) {
    e = kh_seterr(KH_ERR_AUTH, "the server gave this device another account key than the one "
                  "it has (refused)");
    goto out;
  }
  if (!*v->dev->keycheck) {
    memcpy(v->dev->keycheck, check, 65);
    if ((e = kh_device_state_save(v->dev, o->device_dir, true)))
      goto out;
  }
  if ((e = kh_hex_decode(v->device_id, KH_DEVICE_ID_BYTES, v->dev->device, 32)))
    goto out;
  memcpy(v->device_sk, v->dev->sign_sk, 64);
  memcpy(v->device_pk, v->dev->sign_pk, 32);
  memcpy(v->device_hex, v->dev->device, 33);
out:
  kh_buf_release(&obj);
  return e;
}

/* POST /v1/accounts/<a>/kms/wrap (docs/protocol.md §10.1): the key service
 * behind the server logs, then stores its wrap (kind 2) of the account key. */
kh_err kh_vault_kms_wrap_remote(kh_vault *v)
{
  char target[128], kb[64];
  uint8_t *body = kh_secure_alloc(256);
  kh_err e = KH_OK;
  if (!body)
    return kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  kh_b64_encode(kb, v->master, 32);
  int n = snprintf((char *)body, 256, "{\"key\":\"%s\",\"cipher\":%d}", kb, v->cipher);
  sodium_memzero(kb, sizeof kb);
  snprintf(target, sizeof target, "/v1/accounts/%s/kms/wrap", v->account);
  kh_remote_req rq = {.method = "POST", .target = target, .body = body, .len = (size_t)n,
                      .sign = true, .max = 4096};
  e = kh_remote_call(v->remote, &rq, NULL);
  if (e == KH_ERR_EXISTS)
    e = KH_OK; /* a retry after a lost answer: the wrap is there */
  else if (e)
    e = kh_adderr(e, "standard protection (the key service's wrap)");
  kh_secure_free(body);
  return e;
}

kh_remote *kh_vault_remote(kh_vault *v)
{
  return v->remote;
}

const kh_device_state *kh_vault_device_state(const kh_vault *v)
{
  return v->dev;
}

kh_err kh_vault_require(kh_vault *v, unsigned need)
{
  unsigned caps = 0;
  if (!v->remote)
    return KH_OK;
  kh_err e = kh_remote_caps(v->remote, &caps);
  if (e)
    return e;
  unsigned missing = need & ~caps;
  if (!missing)
    return KH_OK;
  /* name the one the operation is about first: prune before read */
  unsigned cap = (missing & KH_CAP_PRUNE) ? KH_CAP_PRUNE : missing;
  return kh_seterr(KH_ERR_DENIED, "refused by the server: this device lacks the '%s' capability",
                   kh_proto_cap_name(cap));
}
