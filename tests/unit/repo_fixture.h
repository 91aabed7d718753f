/* Shared fixture for the vault tests (test_repo.c, test_fault.c): a scratch
 * directory with a region, a cache and a device directory, small source
 * trees, and "restores byte-identical" / "the account is usable" checks,
 * all through the public API (include/keyhold/). */
#ifndef KH_REPO_FIXTURE_H
#define KH_REPO_FIXTURE_H
#include "kh_test.h"
#include "keyhold/keyhold.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool fx_rm(const char *p);

typedef struct fx {
  char root[256];   /* scratch directory */
  char state[300];  /* root/state: region, cache and device directories */
  char region[320], cache[320], device[320];
  kh_secret *pass;
} fx;

static void fx_paths(fx *f, const char *state)
{
  snprintf(f->state, sizeof f->state, "%s", state);
  snprintf(f->region, sizeof f->region, "%s/region", state);
  snprintf(f->cache, sizeof f->cache, "%s/cache", state);
  snprintf(f->device, sizeof f->device, "%s/device", state);
}

/* A scratch directory (under $TMPDIR or /dev/shm or /tmp) with an account
 * whose passcode is pass (fast KDF). */
static bool fx_init(fx *f, const char *name, const char *pass)
{
  memset(f, 0, sizeof *f);
  const char *t = getenv("TMPDIR");
  if (!t || !*t)
    t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(f->root, sizeof f->root, "%s/kh-%s.XXXXXX", t, name);
  if (!mkdtemp(f->root))
    return false;
  char st[300], op[300];
  snprintf(st, sizeof st, "%s/state", f->root);
  /* the key service's operator secret stays in the scratch directory */
  snprintf(op, sizeof op, "%s/state/operator", f->root);
  setenv("KEYHOLD_OPERATOR_DIR", op, 1);
  fx_paths(f, st);
  f->pass = kh_secret_new(pass, strlen(pass));
  kh_init_opts io = {.region_path = f->region, .passcode = f->pass, .kdf_ops = 1,
                     .kdf_mem_mib = 8};
  char acct[KH_ACCOUNT_ID_HEX + 1];
  return f->pass && mkdir(st, 0700) == 0 && kh_vault_init(&io, acct) == KH_OK;
}

static void fx_done(fx *f)
{
  if (f->root[0] && !getenv("KH_KEEP"))
    fx_rm(f->root);
  kh_secret_free(f->pass);
}

static kh_err fx_open_with(const fx *f, const kh_secret *pass, kh_vault **v)
{
  kh_open_opts o = {.region_path = f->region, .passcode = pass, .cache_dir = f->cache,
                    .device_dir = f->device};
  return kh_vault_open(&o, v);
}
static kh_err fx_open(const fx *f, kh_vault **v) { return fx_open_with(f, f->pass, v); }

static bool fx_write(const char *path, const void *p, size_t n)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  bool ok = fd >= 0 && write(fd, p, n) == (ssize_t)n;
  if (fd >= 0)
    close(fd);
  return ok;
}

/* A small tree under dir: nested directories, a symlink, an empty file, a
 * few KiB of text and size KiB of pseudo-random bytes (seeded), so that
 * two trees with different seeds share the text but not the random file. */
static bool fx_tree(const char *dir, unsigned seed, size_t size)
{
  char p[512];
  bool ok = mkdir(dir, 0755) == 0;
  snprintf(p, sizeof p, "%s/sub", dir);
  ok = ok && mkdir(p, 0700) == 0;
  snprintf(p, sizeof p, "%s/sub/deeper", dir);
  ok = ok && mkdir(p, 0755) == 0;
  snprintf(p, sizeof p, "%s/empty", dir);
  ok = ok && fx_write(p, "", 0);
  char text[6000];
  for (size_t i = 0; i < sizeof text; i++)
    text[i] = (char)('a' + (i * 7 + i / 26) % 26);
  snprintf(p, sizeof p, "%s/sub/text.txt", dir);
  ok = ok && fx_write(p, text, sizeof text);
  snprintf(p, sizeof p, "%s/sub/deeper/seed", dir);
  char s[32];
  int sl = snprintf(s, sizeof s, "seed %u\n", seed);
  ok = ok && fx_write(p, s, (size_t)sl);
  uint8_t *r = malloc(size * 1024 + 1);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; r && i < size * 1024; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    r[i] = (uint8_t)x;
  }
  snprintf(p, sizeof p, "%s/random.bin", dir);
  ok = ok && r && fx_write(p, r, size * 1024);
  free(r);
  snprintf(p, sizeof p, "%s/link", dir);
  ok = ok && symlink("sub/text.txt", p) == 0;
  return ok;
}

/* a and b hold the same names, types, symlink targets and file bytes. */
static bool fx_same_tree(const char *a, const char *b)
{
  struct stat sa, sb;
  if (lstat(a, &sa) != 0 || lstat(b, &sb) != 0 || (sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT))
    return false;
  if (S_ISLNK(sa.st_mode)) {
    char la[512], lb[512];
    ssize_t na = readlink(a, la, sizeof la), nb = readlink(b, lb, sizeof lb);
    return na >= 0 && na == nb && memcmp(la, lb, (size_t)na) == 0;
  }
  if (S_ISREG(sa.st_mode)) {
    if (sa.st_size != sb.st_size)
      return false;
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    char ba[8192], bb[8192];
    size_t n;
    while (same && (n = fread(ba, 1, sizeof ba, fa)) > 0)
      same = fread(bb, 1, n, fb) == n && memcmp(ba, bb, n) == 0;
    if (fa)
      fclose(fa);
    if (fb)
      fclose(fb);
    return same;
  }
  if (!S_ISDIR(sa.st_mode))
    return true;
  size_t na = 0, nb = 0;
  bool same = true;
  DIR *d = opendir(a);
  struct dirent *de;
  while (same && d && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/%s", a, de->d_name);
    snprintf(pb, sizeof pb, "%s/%s", b, de->d_name);
    same = fx_same_tree(pa, pb);
    na++;
  }
  if (d)
    closedir(d);
  d = opendir(b);
  while (d && (de = readdir(d)))
    nb += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
  if (d)
    closedir(d);
  return same && d && na == nb;
}

/* Restore snapshot snap into a fresh target; the copy of src there equals
 * expected (src as it was at backup time). */
static bool fx_restores(fx *f, kh_vault *v, const char *snap, const char *src,
                        const char *expected)
{
  static unsigned serial;
  char tgt[400], copy[1000];
  snprintf(tgt, sizeof tgt, "%s/rt%u", f->root, ++serial);
  kh_restore_opts ro = {.target = tgt, .threads = 1};
  kh_restore_result rr;
  kh_err e = kh_restore(v, snap, &ro, &rr);
  snprintf(copy, sizeof copy, "%s%s", tgt, src);
  bool ok = e == KH_OK && rr.failed == 0 && fx_same_tree(expected, copy);
  if (!ok)
    fprintf(stderr, "restore of %.12s: %s (%s), %llu failed\n", snap, kh_strerror(e),
            kh_errdetail(), (unsigned long long)rr.failed);
  fx_rm(tgt);
  return ok;
}

static kh_err fx_backup(kh_vault *v, const char *path, kh_backup_result *r)
{
  const char *paths[] = {path};
  kh_backup_opts bo = {.paths = paths, .npaths = 1, .host = "fixture", .threads = 1};
  memset(r, 0, sizeof *r);
  return kh_backup(v, &bo, r);
}

static void fx_count_check(kh_check_level lvl, const char *snapshot, const char *path,
                           const char *msg, void *ctx)
{
  if (lvl == KH_CHECK_ERROR)
    fprintf(stderr, "  check: %s %s: %s\n", snapshot, path, msg);
  (void)ctx;
}

/* kh_check with read_data finds no error (notes about unreferenced
 * leftovers are fine). */
static bool fx_check_clean(kh_vault *v)
{
  kh_check_result cr;
  memset(&cr, 0, sizeof cr);
  kh_err e = kh_check(v, true, fx_count_check, NULL, &cr);
  if (e || cr.errors)
    fprintf(stderr, "check: %s (%s), %llu errors\n", kh_strerror(e), kh_errdetail(),
            (unsigned long long)cr.errors);
  return e == KH_OK && cr.errors == 0;
}

static int fx_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st, (void)flag, (void)ftw;
  return remove(p) != 0 && errno != ENOENT;
}
/* rm -rf, in process (the loops in test_fault.c do it thousands of times) */
static bool fx_rm(const char *p)
{
  struct stat st;
  if (lstat(p, &st) != 0)
    return errno == ENOENT;
  return nftw(p, fx_rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

/* cp -a of directories, regular files and symlinks (modes kept) */
static bool fx_copy(const char *from, const char *to)
{
  struct stat st;
  if (lstat(from, &st) != 0)
    return false;
  if (S_ISLNK(st.st_mode)) {
    char l[1024];
    ssize_t n = readlink(from, l, sizeof l - 1);
    if (n < 0)
      return false;
    l[n] = '\0';
    return symlink(l, to) == 0;
  }
  if (S_ISREG(st.st_mode)) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_EXCL, st.st_mode & 07777);
    bool ok = in >= 0 && out >= 0;
    char b[65536];
    ssize_t n;
    while (ok && (n = read(in, b, sizeof b)) > 0)
      ok = write(out, b, (size_t)n) == n;
    if (in >= 0)
      close(in);
    if (out >= 0)
      close(out);
    return ok;
  }
  if (!S_ISDIR(st.st_mode) || mkdir(to, st.st_mode & 07777) != 0)
    return false;
  DIR *d = opendir(from);
  struct dirent *de;
  bool ok = d != NULL;
  while (ok && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/%s", from, de->d_name);
    snprintf(b, sizeof b, "%s/%s", to, de->d_name);
    ok = fx_copy(a, b);
  }
  if (d)
    closedir(d);
  return ok;
}

/* Save and put back the whole state (region, cache, device). */
static inline bool fx_save(const fx *f, const char *name)
{
  char to[400];
  snprintf(to, sizeof to, "%s/%s", f->root, name);
  return fx_rm(to) && fx_copy(f->state, to);
}
static inline bool fx_restore_state(const fx *f, const char *name)
{
  char from[400];
  snprintf(from, sizeof from, "%s/%s", f->root, name);
  return fx_rm(f->state) && fx_copy(from, f->state);
}
#endif
