/* Region locks (docs/format.md §10): backups take a shared lock, prune an
 * exclusive one.  A lock is an object locks/<id>; it is stale when its
 * process is gone (same host) or it was not refreshed for 30 minutes. */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/hex.h"
#include "common/wire.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STALE_NS (30ll * 60 * 1000000000)

typedef kh_lock_info lock_info;

static kh_err encode_lock(const lock_info *l, kh_buf *b)
{
  kh_err e = kh_buf_put_u8(b, l->exclusive);
  if (!e) e = kh_buf_put_u64(b, (uint64_t)l->time_ns);
  if (!e) e = kh_buf_put_u32(b, l->pid);
  if (!e) e = kh_buf_put_str(b, l->host);
  return e;
}

bool kh_lock_decode(const uint8_t *p, size_t n, kh_lock_info *l)
{
  kh_rd r;
  kh_rd_init(&r, p, n);
  l->exclusive = kh_rd_u8(&r);
  l->time_ns = (int64_t)kh_rd_u64(&r);
  l->pid = kh_rd_u32(&r);
  size_t hl;
  const uint8_t *h = kh_rd_lbytes(&r, sizeof l->host - 1, &hl);
  if (!kh_rd_done(&r))
    return false;
  memcpy(l->host, h, hl);
  l->host[hl] = 0;
  return true;
}

static kh_err write_lock(kh_vault *v, const uint8_t id[16], bool exclusive, bool excl)
{
  lock_info l = {.exclusive = exclusive, .time_ns = kh_wall_ns(), .pid = (uint32_t)getpid()};
  gethostname(l.host, sizeof l.host - 1);
  kh_buf b;
  kh_buf_init(&b, 1024);
  kh_err e = encode_lock(&l, &b);
  if (!e)
    e = kh_vault_put_obj(v, "locks", "lock", id, 16, b.data, b.len, excl);
  kh_buf_release(&b);
  return e;
}

typedef struct lock_scan {
  char names[64][40];
  int n;
} lock_scan;

static int collect_lock(const char *name, uint64_t size, void *ctx)
{
  lock_scan *s = ctx;
  if (strlen(name) == 32 && s->n < 64)
    snprintf(s->names[s->n++], sizeof s->names[0], "%s", name);
  return 0;
}

/* Is another live lock in the way?  Removes stale ones it meets. */
static kh_err conflicts(kh_vault *v, const uint8_t mine[16], bool exclusive, bool *conflict,
                        char *why, size_t whylen)
{
  *conflict = false;
  lock_scan s = {0};
  char pre[200], myhex[33], host[256] = {0};
  snprintf(pre, sizeof pre, "%s/locks", v->prefix);
  kh_hex_encode(myhex, mine, 16);
  gethostname(host, sizeof host - 1);
  kh_err e = kh_provider_list(v->prov, pre, collect_lock, &s);
  kh_buf b;
  kh_buf_init(&b, 4096);
  for (int i = 0; !e && i < s.n; i++) {
    if (!strcmp(s.names[i], myhex))
      continue;
    uint8_t id[16];
    lock_info l;
    if (kh_hex_decode(id, 16, s.names[i], 32))
      continue;
    kh_err ge = kh_vault_get_obj(v, "locks", "lock", id, 16, &b);
    if (ge == KH_ERR_NOTFOUND)
      continue; /* released meanwhile */
    bool stale;
    if (ge || !kh_lock_decode(b.data, b.len, &l)) {
      stale = true; /* unreadable lock: nobody can hold it */
    } else {
      stale = kh_wall_ns() - l.time_ns > STALE_NS ||
              (!strcmp(l.host, host) && kill((pid_t)l.pid, 0) != 0 && errno == ESRCH);
    }
    if (stale) {
      char name[256];
      kh_vault_objname(v, name, sizeof name, "locks", id, 16);
      kh_provider_del(v->prov, name);
      continue;
    }
    if (exclusive || l.exclusive) {
      *conflict = true;
      snprintf(why, whylen, "%s lock held by pid %u on %s", l.exclusive ? "an exclusive" : "a",
               l.pid, l.host);
      break;
    }
  }
  kh_buf_release(&b);
  return e;
}

kh_err kh_vault_lock(kh_vault *v, bool exclusive)
{
  uint8_t id[16];
  randombytes_buf(id, sizeof id);
  /* a few tries: two lockers that see each other both back off */
  for (int attempt = 0; attempt < 5; attempt++) {
    kh_err e = write_lock(v, id, exclusive, true);
    if (e)
      return kh_adderr(e, "create lock");
    kh_vault_objname(v, v->lock_name, sizeof v->lock_name, "locks", id, 16);
    bool conflict;
    char why[400] = "";
    e = conflicts(v, id, exclusive, &conflict, why, sizeof why);
    if (!e && !conflict)
      return KH_OK;
    kh_vault_unlock(v);
    if (e)
      return e;
    if (attempt == 4)
      return kh_seterr(KH_ERR_LOCKED, "region is locked: %s", why);
    usleep((useconds_t)(200000 + randombytes_uniform(400000)));
  }
  return KH_ERR_LOCKED;
}

kh_err kh_vault_lock_refresh(kh_vault *v)
{
  if (!v->lock_name[0])
    return KH_OK;
  const char *hex = strrchr(v->lock_name, '/') + 1;
  uint8_t id[16];
  if (kh_hex_decode(id, 16, hex, strlen(hex)))
    return KH_OK;
  /* the exclusive flag is re-read from the name's owner: we only refresh ours */
  kh_buf b;
  kh_buf_init(&b, 4096);
  lock_info l;
  kh_err e = kh_vault_get_obj(v, "locks", "lock", id, 16, &b);
  if (!e && kh_lock_decode(b.data, b.len, &l))
    e = write_lock(v, id, l.exclusive, false);
  kh_buf_release(&b);
  return e;
}

void kh_vault_unlock(kh_vault *v)
{
  if (!v->lock_name[0])
    return;
  kh_provider_del(v->prov, v->lock_name);
  v->lock_name[0] = 0;
}
