/* Unit tests for lib/repo locks and index freshness (docs/format.md §7,
 * §10): a handle that lives across another process's prune, an old index
 * served again, when a lock is stale (never by wall clock, host name or a
 * read error), the refresher, a lost lock stopping a backup, and the
 * shared locks of restore and check. */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/hex.h"
#include "keyhold/secret.h"
#include "kh_test.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000ll

static char root[4096];
static char region[4200];
static char account[KH_ACCOUNT_ID_HEX + 1];
static kh_secret *pass;
static char adir[4300]; /* the account's directory in the region */

static void fatal(const char *what)
{
  fprintf(stderr, "setup failed: %s: %s\n", what, kh_errdetail());
  exit(1);
}

static char *pathf(const char *fmt, const char *a, const char *b)
{
  static char bufs[8][4600];
  static int k;
  char *p = bufs[k++ % 8];
  assert(a < p || a >= p + sizeof bufs[0]); /* never a buffer of its own */
  snprintf(p, sizeof bufs[0], fmt, a, b);
  return p;
}

static void setup(void)
{
  const char *tmp = getenv("TMPDIR");
  snprintf(root, sizeof root, "%s/kh-test-repo-lock-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(root))
    fatal("mkdtemp");
  snprintf(region, sizeof region, "%s/region", root);
  pass = kh_secret_new("lock test", 9);
  kh_init_opts io = {.region_path = region, .passcode = pass, .kdf_ops = 1, .kdf_mem_mib = 8};
  if (kh_vault_init(&io, account))
    fatal("init");
  snprintf(adir, sizeof adir, "%s/accounts/%s", region, account);
}

/* A handle as another process (or device) would have: its own device dir. */
static kh_vault *open_as(const char *who)
{
  kh_open_opts oo = {.region_path = region, .passcode = pass,
                     .device_dir = pathf("%s/dev-%s", root, who), .no_cache = true};
  kh_vault *v = NULL;
  if (kh_vault_open(&oo, &v))
    fatal("open");
  return v;
}

static void write_file(const char *path, uint32_t seed, size_t n, uint8_t **content)
{
  uint8_t *p = malloc(n), key[randombytes_SEEDBYTES] = {0};
  memcpy(key, &seed, sizeof seed);
  randombytes_buf_deterministic(p, n, key);
  if (kh_write_file_atomic(path, p, n, 0600, false))
    fatal("write file");
  if (content)
    *content = p;
  else
    free(p);
}

static kh_err backup(kh_vault *v, const char *path, kh_backup_result *r)
{
  const char *paths[] = {path};
  kh_backup_opts o = {.paths = paths, .npaths = 1, .threads = 2};
  return kh_backup(v, &o, r);
}

/* Restore snap and compare the file at path (absolute) with want. */
static bool restores(kh_vault *v, const char *snap, const char *path, const uint8_t *want,
                     size_t n)
{
  static int k;
  char target[4400], idx[16];
  snprintf(idx, sizeof idx, "%d", k++);
  snprintf(target, sizeof target, "%s/rt%s", root, idx);
  kh_restore_opts o = {.target = target, .threads = 2};
  kh_restore_result r;
  kh_err e = kh_restore(v, snap, &o, &r);
  if (e) {
    fprintf(stderr, "  restore %.8s: %s\n", snap, kh_errdetail());
    return false;
  }
  uint8_t *got = NULL;
  size_t len = 0;
  bool ok = kh_read_file(pathf("%s%s", target, path), n + 1, &got, &len) == KH_OK &&
            len == n && !memcmp(got, want, n);
  free(got);
  return ok;
}

/* Objects of a kind (packs: in data/xx/ subdirectories). */
static int count_dir(const char *kind)
{
  char p[4600];
  snprintf(p, sizeof p, "%s/accounts/%s/%s", region, account, kind);
  bool packs = !strcmp(kind, "data");
  DIR *d = opendir(p);
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (packs && l == 2) {
      char sub[4900];
      snprintf(sub, sizeof sub, "%s/%s", p, de->d_name);
      DIR *s = opendir(sub);
      struct dirent *se;
      while (s && (se = readdir(s)))
        n += strlen(se->d_name) == 64;
      if (s)
        closedir(s);
    } else if (!packs && (l == 64 || l == 32)) {
      n++;
    }
  }
  if (d)
    closedir(d);
  return n;
}

/* The single object name (hex) of a kind with exactly one object. */
static bool only_name(const char *kind, char out[65])
{
  char p[4600];
  snprintf(p, sizeof p, "%s/accounts/%s/%s", region, account, kind);
  DIR *d = opendir(p);
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d)))
    if (strlen(de->d_name) == 64) {
      memcpy(out, de->d_name, 65);
      n++;
    }
  if (d)
    closedir(d);
  return n == 1;
}

/* The name (hex) of an object of a kind other than not. */
static bool other_name(const char *kind, const char *not, char out[65])
{
  char p[4600];
  snprintf(p, sizeof p, "%s/%s", adir, kind);
  DIR *d = opendir(p);
  bool found = false;
  struct dirent *de;
  while (d && (de = readdir(d)))
    if (strlen(de->d_name) == 64 && strcmp(de->d_name, not)) {
      memcpy(out, de->d_name, 65);
      found = true;
    }
  if (d)
    closedir(d);
  return found;
}

static kh_err check_ok(kh_vault *v, kh_check_result *r)
{
  return kh_check(v, true, NULL, NULL, r);
}

/* ---- a handle that lives across another process's forget and prune ---- */

static void test_handle_across_prune(void)
{
  char dir[4400], file[4500];
  snprintf(dir, sizeof dir, "%s/data1", root);
  snprintf(file, sizeof file, "%s/f", dir);
  kh_mkdirs(dir, 0700);
  uint8_t *want;
  write_file(file, 1, 3u << 20, &want);
  kh_vault *a = open_as("a"), *b = open_as("b");
  kh_backup_result r1, r2;
  CHECK_OK(backup(a, dir, &r1));
  /* B forgets everything and prunes: the packs A's handle knows are gone */
  const char *snaps[] = {r1.snapshot_id};
  CHECK_OK(kh_forget(b, snaps, 1));
  kh_prune_result pr;
  CHECK_OK(kh_prune(b, NULL, NULL, &pr));
  CHECK(pr.packs_deleted >= 1);
  CHECK_EQ(count_dir("data"), 0);
  /* A backs up the same data: its lock revalidates the index, so it stores
   * the blobs again instead of pointing at deleted packs */
  CHECK_OK(backup(a, dir, &r2));
  CHECK(r2.blobs_new >= 3); /* every data chunk, not only the trees */
  CHECK(r2.bytes_new_plain >= 3u << 20);
  kh_vault *c = open_as("c");
  CHECK(restores(c, r2.snapshot_id, file, want, 3u << 20));
  kh_check_result cr;
  CHECK_OK(check_ok(c, &cr));
  CHECK_EQ(cr.errors, 0);
  /* and A's own handle, still open, restores it too */
  CHECK(restores(a, r2.snapshot_id, file, want, 3u << 20));
  CHECK_OK(kh_forget(b, (const char *[]){r2.snapshot_id}, 1));
  CHECK_OK(kh_prune(b, NULL, NULL, &pr));
  kh_vault_free(a);
  kh_vault_free(b);
  kh_vault_free(c);
  free(want);
}

/* ---- an old index served again after prunes ---------------------------- */

static void test_index_served_again(void)
{
  char dx[4400], dy[4400], fx[4500], fy[4500];
  snprintf(dx, sizeof dx, "%s/datax", root);
  snprintf(dy, sizeof dy, "%s/datay", root);
  snprintf(fx, sizeof fx, "%s/x", dx);
  snprintf(fy, sizeof fy, "%s/y", dy);
  kh_mkdirs(dx, 0700);
  kh_mkdirs(dy, 0700);
  uint8_t *wx, *wy;
  write_file(fx, 2, 2u << 20, &wx);
  write_file(fy, 3, 2u << 20, &wy);
  kh_vault *v = open_as("old-index");
  kh_backup_result rx, ry, rx2;
  kh_prune_result pr;
  CHECK_OK(kh_prune(v, NULL, NULL, &pr)); /* leaves one (empty) index */
  char before[65], old[65] = "";
  CHECK(only_name("index", before));
  CHECK_OK(backup(v, dx, &rx));
  /* keep the index object naming X's pack */
  CHECK_EQ(count_dir("index"), 2);
  CHECK(other_name("index", before, old));
  char *oldpath = strdup(pathf("%s/index/%s", adir, old));
  uint8_t *oldobj = NULL;
  size_t oldlen = 0;
  CHECK_OK(kh_read_file(oldpath, 1 << 24, &oldobj, &oldlen));
  CHECK_OK(backup(v, dy, &ry));
  CHECK_OK(kh_forget(v, (const char *[]){rx.snapshot_id}, 1));
  CHECK_OK(kh_prune(v, NULL, NULL, &pr)); /* X's pack deleted; new index names the old */
  CHECK(pr.packs_deleted >= 1);
  CHECK_OK(kh_prune(v, NULL, NULL, &pr)); /* the index naming the old one is gone too */
  /* the provider serves the old index again */
  CHECK_OK(kh_write_file_atomic(oldpath, oldobj, oldlen, 0600, true));
  CHECK_EQ(count_dir("index"), 2);
  /* a new handle must not believe X's blobs are stored */
  kh_vault_free(v);
  v = open_as("old-index2");
  CHECK_OK(backup(v, dx, &rx2));
  CHECK(rx2.bytes_new_plain >= 2u << 20);
  CHECK_OK(kh_prune(v, NULL, NULL, &pr));
  kh_check_result cr;
  CHECK_OK(check_ok(v, &cr));
  CHECK_EQ(cr.errors, 0);
  CHECK(restores(v, rx2.snapshot_id, fx, wx, 2u << 20));
  CHECK(restores(v, ry.snapshot_id, fy, wy, 2u << 20));
  CHECK_OK(kh_forget(v, (const char *[]){rx2.snapshot_id, ry.snapshot_id}, 2));
  CHECK_OK(kh_prune(v, NULL, NULL, &pr));
  kh_vault_free(v);
  free(oldpath);
  free(oldobj);
  free(wx);
  free(wy);
}

/* ---- staleness ---------------------------------------------------------- */

static bool my_boot(uint8_t out[16])
{
  char t[64] = {0}, hex[33];
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY);
  if (fd < 0)
    return false;
  ssize_t n = read(fd, t, sizeof t - 1);
  close(fd);
  size_t k = 0;
  for (ssize_t i = 0; i < n && k < 32; i++)
    if (t[i] != '-' && t[i] != '\n')
      hex[k++] = t[i];
  return k == 32 && kh_hex_decode(out, 16, hex, 32) == KH_OK;
}

/* A pid that was ours a moment ago and now runs nothing. */
static uint32_t dead_pid(void)
{
  pid_t p = fork();
  if (p == 0)
    _exit(0);
  waitpid(p, NULL, 0);
  return (uint32_t)p;
}

/* Write a foreign lock: format 1 (no owner) or format 2 with the given
 * owner fields. */
static void put_lock(kh_vault *v, const uint8_t id[16], bool exclusive, int64_t time_ns,
                     uint32_t pid, const char *host, const uint8_t *boot, uint64_t nsdev,
                     uint64_t nsino)
{
  kh_buf b;
  kh_buf_init(&b, 4096);
  kh_buf_put_u8(&b, exclusive);
  kh_buf_put_u64(&b, (uint64_t)time_ns);
  kh_buf_put_u32(&b, pid);
  kh_buf_put_str(&b, host);
  if (boot) {
    kh_buf_append(&b, boot, 16);
    kh_buf_put_u64(&b, nsdev);
    kh_buf_put_u64(&b, nsino);
    kh_buf_put_u64(&b, 12345);
  }
  if (kh_vault_put_obj(v, "locks", "lock", id, 16, b.data, b.len, true))
    fatal("put lock");
  kh_buf_release(&b);
}

static bool lock_present(const uint8_t id[16])
{
  char hex[33];
  struct stat st;
  kh_hex_encode(hex, id, 16);
  return stat(pathf("%s/locks/%s", adir, hex), &st) == 0;
}

static void drop_lock(kh_vault *v, const uint8_t id[16])
{
  char name[256];
  kh_vault_objname(v, name, sizeof name, "locks", id, 16);
  kh_provider_del(v->prov, name);
}

static void test_stale_rules(void)
{
  kh_lock_set_timing(0, 0, 1 * MS);
  kh_vault *v = open_as("stale");
  kh_prune_result pr;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  uint8_t id[16], boot[16];
  struct stat ns;
  bool have_ns = my_boot(boot) && stat("/proc/self/ns/pid", &ns) == 0;

  /* same host name, a pid not running here, no owner identity (format 1):
   * another container or host; only expiry may make it stale */
  randombytes_buf(id, 16);
  put_lock(v, id, false, kh_wall_ns(), dead_pid(), host, NULL, 0, 0);
  CHECK_EQ(kh_prune(v, NULL, NULL, &pr), KH_ERR_LOCKED);
  CHECK(lock_present(id));
  drop_lock(v, id);

  if (have_ns) {
    /* same host name and boot, a dead pid, but another PID namespace */
    randombytes_buf(id, 16);
    put_lock(v, id, false, kh_wall_ns(), dead_pid(), host, boot, (uint64_t)ns.st_dev,
             (uint64_t)ns.st_ino + 1);
    CHECK_EQ(kh_prune(v, NULL, NULL, &pr), KH_ERR_LOCKED);
    CHECK(lock_present(id));
    drop_lock(v, id);
    /* another boot of a machine with our name */
    uint8_t other[16];
    memcpy(other, boot, 16);
    other[0] ^= 1;
    randombytes_buf(id, 16);
    put_lock(v, id, false, kh_wall_ns(), dead_pid(), host, other, (uint64_t)ns.st_dev,
             (uint64_t)ns.st_ino);
    CHECK_EQ(kh_prune(v, NULL, NULL, &pr), KH_ERR_LOCKED);
    CHECK(lock_present(id));
    drop_lock(v, id);
    /* this boot and namespace, and the process is gone: provably stale */
    randombytes_buf(id, 16);
    put_lock(v, id, false, kh_wall_ns(), dead_pid(), "another-name", boot,
             (uint64_t)ns.st_dev, (uint64_t)ns.st_ino);
    CHECK_OK(kh_prune(v, NULL, NULL, &pr));
    CHECK(!lock_present(id));
    /* this boot and namespace, pid alive (ours) but started at another
     * time: the pid was reused, the owner is gone */
    randombytes_buf(id, 16);
    put_lock(v, id, false, kh_wall_ns(), (uint32_t)getpid(), host, boot,
             (uint64_t)ns.st_dev, (uint64_t)ns.st_ino);
    CHECK_OK(kh_prune(v, NULL, NULL, &pr));
    CHECK(!lock_present(id));
  } else {
    fprintf(stderr, "  (no /proc boot id or PID namespace: dead-owner cases not run)\n");
  }

  /* the pruning device's clock runs two hours ahead of the lock's */
  randombytes_buf(id, 16);
  put_lock(v, id, false, kh_wall_ns() - 2 * 3600 * 1000 * MS, 4242, "elsewhere", NULL, 0, 0);
  CHECK_EQ(kh_prune(v, NULL, NULL, &pr), KH_ERR_LOCKED);
  CHECK(lock_present(id));
  drop_lock(v, id);

  /* a lock that does not authenticate is held, never stale */
  randombytes_buf(id, 16);
  char hex[33];
  kh_hex_encode(hex, id, 16);
  const char *bad = pathf("%s/locks/%s", adir, hex);
  CHECK_OK(kh_write_file_atomic(bad, "forged or damaged lock bytes, long enough......", 48,
                                0600, true));
  CHECK_EQ(kh_prune(v, NULL, NULL, &pr), KH_ERR_LOCKED);
  CHECK(strstr(kh_errdetail(), "cannot be read") != NULL);
  CHECK(lock_present(id));
  unlink(bad);

  /* expiry: a lock observed unchanged for the expiry period on this
   * machine's monotonic clock, across separate calls; a refresh (a new
   * object) starts the observation again */
  kh_lock_set_timing(1500 * MS, 0, 1 * MS);
  randombytes_buf(id, 16);
  put_lock(v, id, false, kh_wall_ns(), 4242, "elsewhere", NULL, 0, 0);
  CHECK_EQ(kh_prune(v, NULL, NULL, &pr), KH_ERR_LOCKED);
  struct timespec ts = {1, 700 * MS};
  nanosleep(&ts, NULL);
  drop_lock(v, id); /* its owner refreshed it: a new object */
  randombytes_buf(id, 16);
  put_lock(v, id, false, kh_wall_ns(), 4242, "elsewhere", NULL, 0, 0);
  CHECK_EQ(kh_prune(v, NULL, NULL, &pr), KH_ERR_LOCKED);
  CHECK(lock_present(id));
  ts = (struct timespec){1, 700 * MS};
  nanosleep(&ts, NULL);
  kh_vault *w = open_as("stale"); /* another command of the same device */
  CHECK_OK(kh_prune(w, NULL, NULL, &pr));
  CHECK(!lock_present(id));
  kh_vault_free(w);
  kh_vault_free(v);
  kh_lock_set_timing(0, 0, 0);
}

/* No cap on the number of locks read: an exclusive lock behind a hundred
 * shared ones still stops a backup. */
static void test_many_locks(void)
{
  kh_lock_set_timing(0, 0, 1 * MS);
  kh_vault *v = open_as("many");
  uint8_t ids[101][16];
  randombytes_buf(ids[0], 16);
  put_lock(v, ids[0], true, kh_wall_ns(), 4242, "elsewhere", NULL, 0, 0);
  for (int i = 1; i < 101; i++) {
    randombytes_buf(ids[i], 16);
    put_lock(v, ids[i], false, kh_wall_ns(), 4242, "elsewhere", NULL, 0, 0);
  }
  char dir[4400];
  snprintf(dir, sizeof dir, "%s/data-many", root);
  kh_mkdirs(dir, 0700);
  write_file(pathf("%s/%s", dir, "f"), 9, 1000, NULL);
  kh_backup_result r;
  CHECK_EQ(backup(v, dir, &r), KH_ERR_LOCKED);
  CHECK(strstr(kh_errdetail(), "exclusive") != NULL);
  for (int i = 0; i < 101; i++) {
    CHECK(lock_present(ids[i]));
    drop_lock(v, ids[i]);
  }
  kh_vault_free(v);
  kh_lock_set_timing(0, 0, 0);
}

/* ---- keeping a lock ----------------------------------------------------- */

static void test_refresher(void)
{
  kh_lock_set_timing(0, 50 * MS, 1 * MS);
  kh_vault *v = open_as("keeper");
  CHECK_OK(kh_vault_lock(v, false));
  CHECK_EQ(kh_vault_lock(v, false), KH_ERR_STATE);
  char first[160];
  snprintf(first, sizeof first, "%s", v->lock_name);
  struct timespec ts = {0, 300 * MS};
  nanosleep(&ts, NULL);
  CHECK_OK(kh_vault_lock_check(v));
  CHECK_OK(kh_vault_lock_refresh(v)); /* waits for the thread's refresh */
  CHECK(strcmp(first, v->lock_name) != 0); /* refreshed: a new object */
  CHECK_EQ(count_dir("locks"), 1);         /* and the old one gone */
  /* another process takes it for stale and removes it (whatever its name
   * is at the moment: the refresher renames it every 50 ms) */
  for (int i = 0; i < 60; i++) {
    char p[4400];
    snprintf(p, sizeof p, "%s/locks", adir);
    DIR *d = opendir(p);
    struct dirent *de;
    while (d && (de = readdir(d)))
      if (strlen(de->d_name) == 32)
        unlinkat(dirfd(d), de->d_name, 0);
    if (d)
      closedir(d);
    struct timespec t5 = {0, 5 * MS};
    nanosleep(&t5, NULL);
  }
  CHECK_EQ(kh_vault_lock_check(v), KH_ERR_LOCKED);
  CHECK_EQ(kh_vault_lock_refresh(v), KH_ERR_LOCKED);
  kh_vault_unlock(v);
  CHECK_EQ(count_dir("locks"), 0);
  kh_vault_free(v);
  kh_lock_set_timing(0, 0, 0);
}

/* A backup whose lock is removed under it stops and commits nothing. */
static void drop_own_lock(const kh_progress *p, void *ctx)
{
  kh_vault *v = ctx;
  (void)p;
  if (v->lock_name[0])
    kh_provider_del(v->prov, v->lock_name);
}

static void test_lost_lock_stops_backup(void)
{
  kh_vault *v = open_as("lost");
  char dir[4400];
  snprintf(dir, sizeof dir, "%s/data-lost", root);
  kh_mkdirs(dir, 0700);
  write_file(pathf("%s/%s", dir, "f"), 10, 1u << 20, NULL);
  int snaps = count_dir("snapshots"), idx = count_dir("index");
  const char *paths[] = {dir};
  kh_backup_opts o = {.paths = paths, .npaths = 1, .threads = 2, .progress = drop_own_lock,
                      .ctx = v};
  kh_backup_result r;
  CHECK_EQ(kh_backup(v, &o, &r), KH_ERR_LOCKED);
  CHECK_EQ(count_dir("snapshots"), snaps);
  CHECK_EQ(count_dir("index"), idx);
  CHECK_EQ(count_dir("locks"), 0);
  /* the packs it wrote are only unreferenced: prune removes them */
  kh_prune_result pr;
  CHECK_OK(kh_prune(v, NULL, NULL, &pr));
  kh_check_result cr;
  CHECK_OK(check_ok(v, &cr));
  CHECK_EQ(cr.notes, 0);
  kh_vault_free(v);
}

/* ---- restore and check hold shared locks -------------------------------- */

typedef struct during {
  kh_vault *other;
  const char *dir;
  int ran;
  kh_err prune_rc, backup_rc;
} during;

static void run_others(during *d)
{
  if (d->ran++)
    return;
  kh_prune_result pr;
  d->prune_rc = kh_prune(d->other, NULL, NULL, &pr);
  if (d->dir) {
    kh_backup_result r;
    d->backup_rc = backup(d->other, d->dir, &r);
  }
}

static void during_restore(const kh_progress *p, void *ctx) { run_others(ctx); }

static void during_check(kh_check_level l, const char *s, const char *path, const char *msg,
                         void *ctx)
{
  run_others(ctx);
}

static void test_shared_locks(void)
{
  kh_lock_set_timing(0, 0, 1 * MS);
  kh_vault *a = open_as("reader"), *b = open_as("writer");
  char dir[4400], file[4500], dir2[4400];
  snprintf(dir, sizeof dir, "%s/data-shared", root);
  snprintf(dir2, sizeof dir2, "%s/data-shared2", root);
  snprintf(file, sizeof file, "%s/f", dir);
  kh_mkdirs(dir, 0700);
  kh_mkdirs(dir2, 0700);
  uint8_t *want;
  write_file(file, 11, 1u << 20, &want);
  write_file(pathf("%s/%s", dir2, "g"), 12, 1u << 20, NULL);
  kh_backup_result r;
  CHECK_OK(backup(b, dir, &r));
  /* prune while a restore runs: refused */
  during d = {.other = b, .prune_rc = -1};
  char target[4400];
  snprintf(target, sizeof target, "%s/rt-shared", root);
  kh_restore_opts ro = {.target = target, .threads = 2, .progress = during_restore, .ctx = &d};
  kh_restore_result rr;
  CHECK_OK(kh_restore(a, r.snapshot_id, &ro, &rr));
  CHECK(d.ran >= 1); /* the first call ran the others */
  CHECK_EQ(d.prune_rc, KH_ERR_LOCKED);
  /* while check runs (a left-over pack gives it a note to report early),
   * prune is refused and a backup may complete; check must not count that
   * backup's snapshot or packs as damage */
  char junk[4600];
  uint8_t jid[32];
  char jhex[65];
  randombytes_buf(jid, 32);
  kh_hex_encode(jhex, jid, 32);
  snprintf(junk, sizeof junk, "%s/accounts/%s/data/%.2s", region, account, jhex);
  kh_mkdirs(junk, 0700);
  snprintf(junk + strlen(junk), sizeof junk - strlen(junk), "/%s", jhex);
  CHECK_OK(kh_write_file_atomic(junk, "left over", 9, 0600, true));
  d = (during){.other = b, .dir = dir2, .prune_rc = -1, .backup_rc = -1};
  kh_check_result cr;
  CHECK_OK(kh_check(a, false, during_check, &d, &cr));
  CHECK(d.ran >= 1); /* the first call ran the others */
  CHECK_EQ(d.prune_rc, KH_ERR_LOCKED);
  CHECK_OK(d.backup_rc);
  CHECK_EQ(cr.errors, 0);
  /* nothing was lost: prune now runs, and everything checks */
  kh_prune_result pr;
  CHECK_OK(kh_prune(b, NULL, NULL, &pr));
  CHECK_OK(check_ok(a, &cr));
  CHECK_EQ(cr.errors, 0);
  CHECK_EQ(cr.snapshots, 2);
  CHECK(restores(a, r.snapshot_id, file, want, 1u << 20));
  kh_vault_free(a);
  kh_vault_free(b);
  free(want);
  kh_lock_set_timing(0, 0, 0);
}

int main(void)
{
  if (kh_crypto_init())
    return 1;
  setup();
  RUN(test_handle_across_prune);
  RUN(test_index_served_again);
  RUN(test_stale_rules);
  RUN(test_many_locks);
  RUN(test_refresher);
  RUN(test_lost_lock_stops_backup);
  RUN(test_shared_locks);
  kh_secret_free(pass);
  if (!kh_test_failures)
    kh_remove_tree(root);
  return kh_test_done("test_repo_lock");
}
