/* Region locks (docs/format.md §10): backup, restore and check take a
 * shared lock, prune an exclusive one.  A lock is an immutable object
 * locks/<id>; its holder refreshes it by writing a new object and deleting
 * the old one, so a lock whose name stays the same is not being refreshed.
 *
 * Staleness never trusts a wall clock and never guesses from a host name:
 * a lock is stale when (a) it is authenticated and this process watched
 * the same object for the expiry period on its own monotonic clock
 * (observations persist per boot in the device directory, so successive
 * commands add up), or (b) it is authenticated and its owner is provably
 * dead: same kernel boot, same PID namespace, and no process with its pid
 * and start time, or this very process, which no longer holds it (a
 * leftover of a failed delete).  A lock that cannot be read is held. */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/fault.h"
#include "common/fsutil.h"
#include "common/hex.h"
#include "common/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000ll
#define DEFAULT_EXPIRY_NS (30ll * 60 * NS)
#define DEFAULT_REFRESH_NS (5ll * 60 * NS)
#define DEFAULT_BACKOFF_NS (200ll * 1000000)
#define ATTEMPTS 5
#define OWNER_BYTES (16 + 8 + 8 + 8)
#define SEEN_FILE "locks-seen"
#define SEEN_MAX (64u << 20)

static _Atomic int64_t expiry_ns = DEFAULT_EXPIRY_NS, refresh_ns = DEFAULT_REFRESH_NS,
                       backoff_ns = DEFAULT_BACKOFF_NS;

void kh_lock_set_timing(int64_t expiry, int64_t refresh, int64_t backoff)
{
  atomic_store(&expiry_ns, expiry > 0 ? expiry : DEFAULT_EXPIRY_NS);
  atomic_store(&refresh_ns, refresh > 0 ? refresh : DEFAULT_REFRESH_NS);
  atomic_store(&backoff_ns, backoff > 0 ? backoff : DEFAULT_BACKOFF_NS);
}

static int64_t mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* stops while the machine sleeps */
  return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

/* The held lock: its object, and the thread that refreshes it. */
struct kh_lock_keeper {
  pthread_mutex_t mu;   /* one refresh at a time; guards the fields below */
  kh_lock_info mine;
  uint8_t id[16];       /* current object */
  kh_err failed;        /* first refresh failure, KH_OK if none */
  char why[512];
  _Atomic int lost;     /* failed != KH_OK, readable without mu */
  pthread_mutex_t cvmu; /* guards stop */
  pthread_cond_t cv;
  bool stop, running;
  pthread_t tid;
};

/* ---- the owner's identity ----------------------------------------------- */

static bool read_boot_id(uint8_t out[16])
{
  char t[64] = {0}, hex[33];
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  ssize_t n = read(fd, t, sizeof t - 1);
  close(fd);
  size_t k = 0;
  for (ssize_t i = 0; i < n && k < 32; i++)
    if (t[i] != '-' && t[i] != '\n')
      hex[k++] = t[i];
  hex[k] = 0;
  return k == 32 && kh_hex_decode(out, 16, hex, 32) == KH_OK && !sodium_is_zero(out, 16);
}

/* Start time (field 22 of /proc/<pid>/stat): 0 found, 1 no such process,
 * -1 unknown. */
static int proc_start(uint32_t pid, uint64_t *start)
{
  char path[64], t[1024];
  snprintf(path, sizeof path, "/proc/%u/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT || errno == ESRCH ? 1 : -1;
  ssize_t n = read(fd, t, sizeof t - 1);
  int err = errno;
  close(fd);
  if (n < 0)
    return err == ESRCH ? 1 : -1;
  t[n] = 0;
  char *p = strrchr(t, ')'); /* the command name may hold anything */
  if (!p)
    return -1;
  p++;
  for (int field = 3; field <= 22; field++) {
    while (*p == ' ')
      p++;
    if (!*p)
      return -1;
    if (field == 22) {
      char *end;
      errno = 0;
      unsigned long long v = strtoull(p, &end, 10);
      if (errno || end == p)
        return -1;
      *start = v;
      return 0;
    }
    while (*p && *p != ' ')
      p++;
  }
  return -1;
}

/* This process as a lock owner; has_owner false if it cannot say for sure
 * (no /proc, or a /proc of another PID namespace). */
static void self_owner(kh_lock_info *l)
{
  struct stat st;
  char self[32], want[32];
  ssize_t n = readlink("/proc/self", self, sizeof self - 1);
  l->pid = (uint32_t)getpid();
  l->has_owner = false;
  if (n <= 0)
    return;
  self[n] = 0;
  snprintf(want, sizeof want, "%u", l->pid);
  if (strcmp(self, want) || stat("/proc/self/ns/pid", &st) != 0 ||
      proc_start(l->pid, &l->start) != 0 || !read_boot_id(l->boot_id))
    return;
  l->pidns_dev = (uint64_t)st.st_dev;
  l->pidns_ino = (uint64_t)st.st_ino;
  l->has_owner = true;
}

/* The locks this process holds (or is about to write), by id.  A lock whose
 * owner is this very process but which is not in this set was left behind
 * by it (an unlock or a refresh whose delete failed) and is provably dead;
 * without the set such a lock would block the process itself for the whole
 * expiry period.  An id enters the set before its object is written and
 * leaves it after the delete was tried, so another thread of this process
 * never takes a live lock of ours for a leftover. */
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t (*held_ids)[16];
static size_t held_n, held_cap;

static kh_err held_add(const uint8_t id[16])
{
  kh_err e = KH_OK;
  pthread_mutex_lock(&held_mu);
  if (held_n == held_cap) {
    size_t nc = held_cap ? 2 * held_cap : 8;
    uint8_t(*ni)[16] = realloc(held_ids, nc * sizeof *ni);
    if (!ni) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    held_ids = ni;
    held_cap = nc;
  }
  memcpy(held_ids[held_n++], id, 16);
out:
  pthread_mutex_unlock(&held_mu);
  return e;
}

static void held_remove(const uint8_t id[16])
{
  pthread_mutex_lock(&held_mu);
  for (size_t i = 0; i < held_n; i++)
    if (!memcmp(held_ids[i], id, 16)) {
      memmove(held_ids[i], held_ids[i + 1], (held_n - i - 1) * sizeof *held_ids);
      held_n--;
      break;
    }
  pthread_mutex_unlock(&held_mu);
}

static bool held_has(const uint8_t id[16])
{
  bool r = false;
  pthread_mutex_lock(&held_mu);
  for (size_t i = 0; i < held_n && !r; i++)
    r = !memcmp(held_ids[i], id, 16);
  pthread_mutex_unlock(&held_mu);
  return r;
}

/* Provably gone: same boot and PID namespace, and no such process; or this
 * very process, which no longer holds lock id. */
static bool owner_dead(const kh_lock_info *l, const uint8_t id[16], const kh_lock_info *self)
{
  if (!l->has_owner || !self->has_owner || memcmp(l->boot_id, self->boot_id, 16) ||
      l->pidns_dev != self->pidns_dev || l->pidns_ino != self->pidns_ino)
    return false;
  if (l->pid == self->pid && l->start == self->start)
    return !held_has(id);
  uint64_t start;
  int r = proc_start(l->pid, &start);
  return r == 1 || (r == 0 && start != l->start);
}

/* ---- the object --------------------------------------------------------- */

static kh_err encode_lock(const kh_lock_info *l, kh_buf *b)
{
  static const uint8_t zero[16];
  kh_err e = kh_buf_put_u8(b, l->exclusive);
  if (!e) e = kh_buf_put_u64(b, (uint64_t)l->time_ns);
  if (!e) e = kh_buf_put_u32(b, l->pid);
  if (!e) e = kh_buf_put_str(b, l->host);
  if (!e) e = kh_buf_append(b, l->has_owner ? l->boot_id : zero, 16);
  if (!e) e = kh_buf_put_u64(b, l->has_owner ? l->pidns_dev : 0);
  if (!e) e = kh_buf_put_u64(b, l->has_owner ? l->pidns_ino : 0);
  if (!e) e = kh_buf_put_u64(b, l->has_owner ? l->start : 0);
  return e;
}

bool kh_lock_decode(const uint8_t *p, size_t n, kh_lock_info *l)
{
  kh_rd r;
  kh_rd_init(&r, p, n);
  memset(l, 0, sizeof *l);
  l->exclusive = kh_rd_u8(&r);
  l->time_ns = (int64_t)kh_rd_u64(&r);
  l->pid = kh_rd_u32(&r);
  size_t hl;
  const uint8_t *h = kh_rd_lbytes(&r, sizeof l->host - 1, &hl);
  if (!kh_rd_ok(&r) || memchr(h, 0, hl))
    return false;
  memcpy(l->host, h, hl);
  l->host[hl] = 0;
  if (kh_rd_left(&r) == 0)
    return true; /* a lock of format 1: no owner identity */
  kh_rd_copy(&r, l->boot_id, 16);
  l->pidns_dev = kh_rd_u64(&r);
  l->pidns_ino = kh_rd_u64(&r);
  l->start = kh_rd_u64(&r);
  if (!kh_rd_done(&r))
    return false;
  l->has_owner = !sodium_is_zero(l->boot_id, 16);
  return true;
}

static kh_err write_lock(kh_vault *v, const uint8_t id[16], kh_lock_info *l)
{
  l->time_ns = kh_wall_ns(); /* for people reading `ls -l`; never for staleness */
  kh_buf b;
  kh_buf_init(&b, 1024);
  kh_err e = encode_lock(l, &b);
  if (!e)
    e = kh_vault_put_obj(v, "locks", "lock", id, 16, b.data, b.len, true);
  kh_buf_release(&b);
  return e;
}

/* ---- observations: how long has each lock stayed the same? -------------- */

typedef struct seen {
  char name[33];
  int64_t since; /* monotonic ns of the first sight of this object */
} seen;

typedef struct seen_set {
  seen *s;
  size_t n, cap;
  bool have_boot;
  uint8_t boot[16];
} seen_set;

static kh_err seen_add(seen_set *o, const char *name, int64_t since)
{
  if (o->n == o->cap) {
    size_t nc = o->cap ? o->cap * 2 : 16;
    seen *ns = realloc(o->s, nc * sizeof *ns);
    if (!ns)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    o->s = ns;
    o->cap = nc;
  }
  snprintf(o->s[o->n].name, sizeof o->s[0].name, "%s", name);
  o->s[o->n++].since = since;
  return KH_OK;
}

static const seen *seen_find(const seen_set *o, const char *name)
{
  for (size_t i = 0; i < o->n; i++)
    if (!strcmp(o->s[i].name, name))
      return &o->s[i];
  return NULL;
}

/* Observations of earlier commands of this boot (monotonic clocks of two
 * boots do not compare).  Anything unreadable is simply not an observation:
 * that can only make a lock look younger. */
static void seen_load(const kh_vault *v, seen_set *o)
{
  memset(o, 0, sizeof *o);
  o->have_boot = read_boot_id(o->boot);
  if (!o->have_boot)
    return;
  char *path = kh_path_join(v->device_dir, SEEN_FILE);
  uint8_t *data = NULL;
  size_t len = 0;
  if (!path || kh_read_file(path, SEEN_MAX, &data, &len) != KH_OK)
    goto out;
  char boot[33];
  kh_hex_encode(boot, o->boot, 16);
  const char *p = (const char *)data, *end = p + len;
  const char *nl = memchr(p, '\n', len);
  char want[64];
  int wl = snprintf(want, sizeof want, "keyhold-locks-seen v1 %s", boot);
  if (!nl || nl - p != wl || memcmp(p, want, (size_t)wl))
    goto out;
  for (p = nl + 1; p < end; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
      break;
    char line[80];
    size_t ll = (size_t)(nl - p);
    if (ll >= sizeof line)
      continue;
    memcpy(line, p, ll);
    line[ll] = 0;
    char name[33];
    long long since;
    if (sscanf(line, "%32[0-9a-f] %lld", name, &since) == 2 && strlen(name) == 32 && since >= 0)
      if (seen_add(o, name, since))
        break;
  }
out:
  free(data);
  free(path);
}

static void seen_save(const kh_vault *v, const seen_set *o)
{
  if (!o->have_boot)
    return;
  kh_buf b;
  kh_buf_init(&b, SEEN_MAX);
  char boot[33], line[80];
  kh_hex_encode(boot, o->boot, 16);
  int l = snprintf(line, sizeof line, "keyhold-locks-seen v1 %s\n", boot);
  kh_err e = kh_buf_append(&b, line, (size_t)l);
  for (size_t i = 0; i < o->n && !e; i++) {
    l = snprintf(line, sizeof line, "%s %lld\n", o->s[i].name, (long long)o->s[i].since);
    e = kh_buf_append(&b, line, (size_t)l);
  }
  char *path = kh_path_join(v->device_dir, SEEN_FILE);
  if (!e && path && kh_mkdirs(v->device_dir, 0700) == KH_OK)
    kh_write_file_atomic(path, b.data, b.len, 0600, false); /* best effort: see seen_load */
  free(path);
  kh_buf_release(&b);
}

static void seen_release(seen_set *o)
{
  free(o->s);
  memset(o, 0, sizeof *o);
}

/* ---- scanning the other locks ------------------------------------------- */

typedef struct name_list {
  char (*names)[33];
  size_t n, cap;
  kh_err e;
} name_list;

static int collect_lock(const char *name, uint64_t size, void *ctx)
{
  (void)size;
  name_list *s = ctx;
  if (strlen(name) != 32)
    return 0;
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 16;
    char(*nn)[33] = realloc(s->names, nc * sizeof *nn);
    if (!nn) {
      s->e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      return 1;
    }
    s->names = nn;
    s->cap = nc;
  }
  snprintf(s->names[s->n++], sizeof s->names[0], "%s", name);
  return 0;
}

/* Is another live lock in the way of mine (named myhex)?  Removes the
 * stale ones it meets; obs is updated to the locks present now. */
static kh_err conflicts(kh_vault *v, const char *myhex, const kh_lock_info *self, bool exclusive,
                        seen_set *obs, bool *conflict, char *why, size_t whylen)
{
  *conflict = false;
  name_list s = {0};
  seen_set now = {.have_boot = obs->have_boot};
  memcpy(now.boot, obs->boot, 16);
  char pre[200], name[256];
  snprintf(pre, sizeof pre, "%s/locks", v->prefix);
  kh_err e = kh_provider_list(v->prov, pre, collect_lock, &s);
  if (!e)
    e = s.e;
  kh_buf b;
  kh_buf_init(&b, 4096);
  int64_t t = mono_ns(), expiry = atomic_load(&expiry_ns);
  for (size_t i = 0; !e && i < s.n; i++) {
    if (!strcmp(s.names[i], myhex))
      continue;
    uint8_t id[16];
    kh_lock_info l;
    if (kh_hex_decode(id, 16, s.names[i], 32))
      continue; /* not a lock name */
    kh_err ge = kh_vault_get_obj(v, "locks", "lock", id, 16, &b);
    if (ge == KH_ERR_NOTFOUND)
      continue; /* released (or refreshed) meanwhile */
    if (ge || !kh_lock_decode(b.data, b.len, &l)) {
      /* never stale: it may be a live operation's lock we failed to read */
      if (!*conflict)
        snprintf(why, whylen,
                 "lock %s cannot be read (%s); if no keyhold command is running, remove "
                 "%s/locks/%s",
                 s.names[i], ge ? kh_strerror(ge) : "malformed", v->prefix, s.names[i]);
      *conflict = true;
      continue;
    }
    const seen *old = seen_find(obs, s.names[i]);
    int64_t since = old && old->since <= t ? old->since : t;
    bool stale = owner_dead(&l, id, self) || t - since >= expiry;
    if (stale) {
      kh_vault_objname(v, name, sizeof name, "locks", id, 16);
      if ((e = kh_provider_del(v->prov, name)))
        break;
      continue;
    }
    if ((e = seen_add(&now, s.names[i], since)))
      break;
    if ((exclusive || l.exclusive) && !*conflict) {
      *conflict = true;
      snprintf(why, whylen,
               "%s lock held by pid %u on %s (unchanged for %llds of the %llds after which "
               "it counts as stale)",
               l.exclusive ? "an exclusive" : "a", l.pid, l.host, (long long)((t - since) / NS),
               (long long)(expiry / NS));
    }
  }
  kh_buf_release(&b);
  free(s.names);
  if (!e) {
    seen_release(obs);
    *obs = now;
  } else {
    seen_release(&now);
  }
  return e;
}

/* ---- taking, keeping and releasing -------------------------------------- */

static void record_failure(struct kh_lock_keeper *k, kh_err e)
{
  if (k->failed)
    return;
  k->failed = e;
  snprintf(k->why, sizeof k->why, "%s", kh_errdetail());
  atomic_store(&k->lost, 1);
}

/* Under k->mu: replace the lock object with a new one (a holder that
 * stays silent for the expiry period loses its lock, so it must speak);
 * fail if ours was removed, or, exclusive, if another live lock appeared. */
static kh_err refresh_locked(kh_vault *v, struct kh_lock_keeper *k)
{
  if (k->failed)
    return kh_seterr(k->failed, "%s", k->why);
  char oldname[160], myhex[33];
  uint8_t nid[16];
  uint64_t sz;
  snprintf(oldname, sizeof oldname, "%s", v->lock_name);
  kh_err e = kh_provider_size(v->prov, oldname, &sz);
  if (e == KH_ERR_NOTFOUND)
    e = kh_seterr(KH_ERR_LOCKED,
                  "this operation's lock was removed by another process that took it for "
                  "stale; stopping without committing");
  if (e)
    goto out;
  randombytes_buf(nid, sizeof nid);
  if ((e = held_add(nid)))
    goto out;
  if ((e = write_lock(v, nid, &k->mine))) {
    held_remove(nid);
    goto out;
  }
  uint8_t oldid[16];
  memcpy(oldid, k->id, 16);
  memcpy(k->id, nid, 16);
  kh_vault_objname(v, v->lock_name, sizeof v->lock_name, "locks", nid, 16);
  /* a left-over is no longer held: anyone who meets it removes it */
  kh_provider_del(v->prov, oldname);
  held_remove(oldid);
  if (k->mine.exclusive) {
    bool conflict = false;
    char why[400] = "";
    seen_set obs;
    seen_load(v, &obs);
    kh_hex_encode(myhex, nid, 16);
    e = conflicts(v, myhex, &k->mine, true, &obs, &conflict, why, sizeof why);
    if (!e)
      seen_save(v, &obs);
    seen_release(&obs);
    if (!e && conflict)
      e = kh_seterr(KH_ERR_LOCKED, "the exclusive lock is no longer exclusive: %s", why);
  }
out:
  if (e)
    record_failure(k, e);
  return e;
}

kh_err kh_vault_lock_refresh(kh_vault *v)
{
  struct kh_lock_keeper *k = v->lock_keeper;
  if (!v->lock_name[0] || !k)
    return KH_OK;
  pthread_mutex_lock(&k->mu);
  kh_err e = refresh_locked(v, k);
  pthread_mutex_unlock(&k->mu);
  return e;
}

kh_err kh_vault_lock_check(kh_vault *v)
{
  struct kh_lock_keeper *k = v->lock_keeper;
  if (!k || !atomic_load(&k->lost))
    return KH_OK;
  pthread_mutex_lock(&k->mu);
  kh_err e = kh_seterr(k->failed, "%s", k->why);
  pthread_mutex_unlock(&k->mu);
  return e;
}

static void *keeper_main(void *arg)
{
  kh_vault *v = arg;
  struct kh_lock_keeper *k = v->lock_keeper;
  pthread_mutex_lock(&k->cvmu);
  while (!k->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t at = (int64_t)ts.tv_sec * NS + ts.tv_nsec + atomic_load(&refresh_ns);
    ts.tv_sec = (time_t)(at / NS);
    ts.tv_nsec = (long)(at % NS);
    int r = 0;
    while (!k->stop && r != ETIMEDOUT)
      r = pthread_cond_timedwait(&k->cv, &k->cvmu, &ts);
    if (k->stop)
      break;
    pthread_mutex_unlock(&k->cvmu);
    kh_err e = kh_vault_lock_refresh(v);
    pthread_mutex_lock(&k->cvmu);
    if (e)
      break; /* recorded: the operation stops at its next check */
  }
  pthread_mutex_unlock(&k->cvmu);
  return NULL;
}

static void keeper_stop(struct kh_lock_keeper *k)
{
  if (!k->running)
    return;
  pthread_mutex_lock(&k->cvmu);
  k->stop = true;
  pthread_cond_signal(&k->cv);
  pthread_mutex_unlock(&k->cvmu);
  pthread_join(k->tid, NULL);
  k->running = false;
}

static void keeper_free(struct kh_lock_keeper *k)
{
  if (!k)
    return;
  keeper_stop(k);
  pthread_mutex_destroy(&k->mu);
  pthread_mutex_destroy(&k->cvmu);
  pthread_cond_destroy(&k->cv);
  free(k);
}

static struct kh_lock_keeper *keeper_new(void)
{
  struct kh_lock_keeper *k = calloc(1, sizeof *k);
  pthread_condattr_t ca;
  if (!k || pthread_condattr_init(&ca) != 0) {
    free(k);
    return NULL;
  }
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&k->mu, NULL);
  pthread_mutex_init(&k->cvmu, NULL);
  pthread_cond_init(&k->cv, &ca);
  pthread_condattr_destroy(&ca);
  return k;
}

kh_err kh_vault_lock(kh_vault *v, bool exclusive)
{
  if (v->lock_name[0])
    return kh_seterr(KH_ERR_STATE, "this handle already holds a lock");
  struct kh_lock_keeper *k = keeper_new();
  if (!k)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  seen_set obs;
  seen_load(v, &obs);
  bool had_obs = obs.n > 0;
  self_owner(&k->mine);
  k->mine.exclusive = exclusive;
  gethostname(k->mine.host, sizeof k->mine.host - 1);
  kh_err e = KH_OK;
  bool got = false;
  /* a few tries: two lockers that see each other both back off */
  for (int attempt = 0; attempt < ATTEMPTS && !got; attempt++) {
    char myhex[33], why[400] = "";
    bool conflict = false;
    randombytes_buf(k->id, sizeof k->id);
    if ((e = held_add(k->id)))
      break;
    if ((e = write_lock(v, k->id, &k->mine))) {
      held_remove(k->id);
      kh_adderr(e, "create lock");
      break;
    }
    kh_vault_objname(v, v->lock_name, sizeof v->lock_name, "locks", k->id, 16);
    kh_hex_encode(myhex, k->id, 16);
    e = conflicts(v, myhex, &k->mine, exclusive, &obs, &conflict, why, sizeof why);
    if (!e && !conflict) {
      got = true;
      break;
    }
    kh_provider_del(v->prov, v->lock_name);
    held_remove(k->id);
    v->lock_name[0] = 0;
    if (e)
      break;
    if (attempt == ATTEMPTS - 1) {
      e = kh_seterr(KH_ERR_LOCKED, "region is locked: %s", why);
      break;
    }
    int64_t b = atomic_load(&backoff_ns);
    int64_t d = b + (int64_t)randombytes_uniform((uint32_t)(2 * b / 1000 + 1)) * 1000;
    struct timespec ts = {(time_t)(d / NS), (long)(d % NS)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
      ;
  }
  if (had_obs || obs.n)
    seen_save(v, &obs);
  seen_release(&obs);
  if (!got) {
    keeper_free(k);
    return e;
  }
  v->lock_keeper = k;
  if (pthread_create(&k->tid, NULL, keeper_main, v) != 0) {
    kh_vault_unlock(v);
    return kh_seterr(KH_ERR_NOMEM, "cannot start the lock refresher");
  }
  k->running = true;
  (void)kh_fault_point("lock.held"); /* test-only event point (fault.h) */
  /* what another process did before we held the lock must be seen now */
  if ((e = kh_vault_index_revalidate(v)))
    kh_vault_unlock(v);
  return e;
}

void kh_vault_unlock(kh_vault *v)
{
  struct kh_lock_keeper *k = v->lock_keeper;
  uint8_t id[16];
  bool have = k != NULL;
  if (k) {
    keeper_stop(k); /* the refresher is stopped: lock_name and k->id are ours again */
    memcpy(id, k->id, 16);
  }
  v->lock_keeper = NULL;
  if (v->lock_name[0])
    kh_provider_del(v->prov, v->lock_name);
  v->lock_name[0] = 0;
  /* even if the delete failed: the lock is no longer held (see held_ids) */
  if (have)
    held_remove(id);
  keeper_free(k);
}
