/* The vault through its public API (include/keyhold/vault.h): backup and
 * restore round trip, incremental dedup, forget + prune, lock conflicts,
 * protection state.  Lock internals are changing; only the contract is
 * tested here. */
#include "repo_fixture.h"
#include "crypto/crypto.h"

#include <ftw.h>
#include <sodium.h>

static fx F;
static char src1[400], src2[400];

static uint64_t data_bytes;
static int add_size(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)ftw;
  if (flag == FTW_F && strstr(p, "/data/"))
    data_bytes += (uint64_t)st->st_size;
  return 0;
}
/* bytes stored in the region's packs (accounts/ * /data) */
static uint64_t stored_bytes(void)
{
  char d[400];
  snprintf(d, sizeof d, "%s/accounts", F.region);
  data_bytes = 0;
  nftw(d, add_size, 16, FTW_PHYS);
  return data_bytes;
}

/* Forget every snapshot and prune: each test starts from an empty account. */
static void empty_account(kh_vault *v)
{
  kh_snapshot_info *s = NULL;
  size_t n = 0;
  CHECK_OK(kh_snapshots_list(v, &s, &n));
  for (size_t i = 0; i < n; i++) {
    const char *one[] = {s[i].id};
    CHECK_OK(kh_forget(v, one, 1));
  }
  kh_snapshots_free(s, n);
  kh_prune_result pr;
  CHECK_OK(kh_prune(v, NULL, NULL, &pr));
}

static void test_roundtrip(void)
{
  kh_vault *v = NULL;
  kh_backup_result r;
  CHECK_OK(fx_open(&F, &v));
  if (!v)
    return;
  CHECK_OK(fx_backup(v, src1, &r));
  CHECK_EQ(strlen(r.snapshot_id), KH_SNAPSHOT_ID_HEX);
  CHECK_EQ(r.files, 4);  /* empty, text.txt, seed, random.bin */
  CHECK_EQ(r.bytes, 6000 + 7 + 96 * 1024);
  CHECK_EQ(r.warnings, 0);
  CHECK(fx_restores(&F, v, r.snapshot_id, src1, src1));
  char id[KH_SNAPSHOT_ID_HEX + 1];
  CHECK_OK(kh_snapshot_resolve(v, "latest", NULL, id));
  CHECK(strcmp(id, r.snapshot_id) == 0);
  char pre[5];
  snprintf(pre, sizeof pre, "%.4s", r.snapshot_id);
  CHECK_OK(kh_snapshot_resolve(v, pre, NULL, id));
  CHECK(strcmp(id, r.snapshot_id) == 0);
  CHECK_ERR(kh_snapshot_resolve(v, "ffffffffffff", NULL, id), KH_ERR_NOTFOUND);
  kh_snapshot_info *s = NULL;
  size_t n = 0;
  CHECK_OK(kh_snapshots_list(v, &s, &n));
  CHECK_EQ(n, 1);
  if (n == 1) {
    CHECK(strcmp(s[0].id, r.snapshot_id) == 0);
    CHECK_EQ(s[0].npaths, 1);
    CHECK(s[0].npaths == 1 && strcmp(s[0].paths[0], src1) == 0);
    CHECK(strcmp(s[0].host, "fixture") == 0);
    CHECK_EQ(s[0].files, 4);
  }
  kh_snapshots_free(s, n);
  /* a second handle (another process's view) restores it too */
  kh_vault *v2 = NULL;
  CHECK_OK(fx_open(&F, &v2));
  if (v2)
    CHECK(fx_restores(&F, v2, r.snapshot_id, src1, src1));
  kh_vault_free(v2);
  /* a wrong passcode is KH_ERR_PASSCODE and no handle */
  kh_secret *bad = kh_secret_new("not it", 6);
  kh_vault *v3 = (kh_vault *)1;
  CHECK_ERR(fx_open_with(&F, bad, &v3), KH_ERR_PASSCODE);
  CHECK(v3 == NULL);
  kh_secret_free(bad);
  kh_vault_free(v);
}

static void test_incremental_dedup(void)
{
  kh_vault *v = NULL;
  kh_backup_result r1, r2, r3;
  CHECK_OK(fx_open(&F, &v));
  if (!v)
    return;
  CHECK_OK(fx_backup(v, src1, &r1));
  uint64_t before = stored_bytes();
  /* unchanged: no file content is stored again; only directory listings
   * whose metadata changed (the scratch directory's ancestors) may be new */
  CHECK_OK(fx_backup(v, src1, &r2));
  CHECK_EQ(r2.bytes, r1.bytes);
  CHECK(r2.bytes_new_plain < 4096);
  CHECK(stored_bytes() - before < 16384);
  /* 32 KiB of new random data in a new file: exactly that much file
   * content is new, and src2 (same text as src1) dedups the text */
  char p[512];
  snprintf(p, sizeof p, "%s/sub/new.bin", src1);
  uint8_t buf[32768];
  randombytes_buf(buf, sizeof buf);
  CHECK(fx_write(p, buf, sizeof buf));
  before = stored_bytes();
  CHECK_OK(fx_backup(v, src1, &r3));
  CHECK_EQ(r3.files, 5);
  CHECK(r3.bytes_new_plain >= sizeof buf && r3.bytes_new_plain < sizeof buf + 4096);
  uint64_t grown = stored_bytes() - before;
  CHECK(grown >= sizeof buf && grown < sizeof buf + 16384);
  CHECK(fx_restores(&F, v, r3.snapshot_id, src1, src1));
  unlink(p);
  kh_vault_free(v);
}

/* Snapshot A = src1, snapshot B = src2 (shares the text file with A).
 * Forget A, prune: A's own data goes, B's (including what it shares with
 * A, stored in A's pack) stays. */
static void test_forget_prune(void)
{
  kh_vault *v = NULL;
  kh_backup_result ra, rb;
  CHECK_OK(fx_open(&F, &v));
  if (!v)
    return;
  empty_account(v);
  CHECK_OK(fx_backup(v, src1, &ra));
  CHECK_OK(fx_backup(v, src2, &rb));
  const char *fa[] = {ra.snapshot_id};
  CHECK_OK(kh_forget(v, fa, 1));
  char id[KH_SNAPSHOT_ID_HEX + 1];
  CHECK_ERR(kh_snapshot_resolve(v, ra.snapshot_id, NULL, id), KH_ERR_NOTFOUND);
  kh_snapshot_info *s = NULL;
  size_t n = 0;
  CHECK_OK(kh_snapshots_list(v, &s, &n));
  CHECK_EQ(n, 1);
  kh_snapshots_free(s, n);
  uint64_t before = stored_bytes();
  kh_prune_result pr;
  memset(&pr, 0, sizeof pr);
  CHECK_OK(kh_prune(v, NULL, NULL, &pr));
  CHECK(pr.blobs_removed >= 1);
  CHECK(pr.packs_deleted + pr.packs_repacked >= 1);
  CHECK(pr.bytes_freed >= 96 * 1024);
  uint64_t after = stored_bytes();
  CHECK(after < before && before - after >= 90 * 1024);
  CHECK(fx_check_clean(v));
  CHECK(fx_restores(&F, v, rb.snapshot_id, src2, src2));
  /* nothing more to do */
  memset(&pr, 0, sizeof pr);
  CHECK_OK(kh_prune(v, NULL, NULL, &pr));
  CHECK_EQ(pr.blobs_removed, 0);
  CHECK_EQ(pr.packs_deleted + pr.packs_repacked, 0);
  CHECK_EQ(stored_bytes(), after);
  /* a fresh handle sees the same */
  kh_vault *v2 = NULL;
  CHECK_OK(fx_open(&F, &v2));
  if (v2) {
    CHECK(fx_check_clean(v2));
    CHECK(fx_restores(&F, v2, rb.snapshot_id, src2, src2));
  }
  kh_vault_free(v2);
  const char *fb[] = {rb.snapshot_id};
  CHECK_OK(kh_forget(v, fb, 1));
  kh_vault_free(v);
}

/* Locks: while a backup runs (shared lock) another backup may run but a
 * prune is refused; while a prune runs (exclusive) both are refused, with
 * KH_ERR_LOCKED.  The callbacks run while the operation holds its lock. */
typedef struct lock_probe {
  kh_vault *other;
  int calls;
  kh_err prune, backup;
} lock_probe;

static void during_backup(kh_err e, const char *path, const char *msg, void *ctx)
{
  lock_probe *lp = ctx;
  (void)e, (void)path, (void)msg;
  if (lp->calls++)
    return;
  kh_prune_result pr;
  lp->prune = kh_prune(lp->other, NULL, NULL, &pr);
  kh_backup_result r;
  lp->backup = fx_backup(lp->other, src2, &r);
}

static void during_prune(const kh_progress *p, void *ctx)
{
  lock_probe *lp = ctx;
  (void)p;
  if (lp->calls++)
    return;
  kh_prune_result pr;
  lp->prune = kh_prune(lp->other, NULL, NULL, &pr);
  kh_backup_result r;
  lp->backup = fx_backup(lp->other, src2, &r);
}

static void test_locks(void)
{
  kh_vault *v = NULL, *w = NULL;
  CHECK_OK(fx_open(&F, &v));
  CHECK_OK(fx_open(&F, &w));
  if (!v || !w)
    goto out;
  /* a backup with a missing path warns while it holds its shared lock */
  char missing[500];
  snprintf(missing, sizeof missing, "%s/does-not-exist", F.root);
  const char *paths[] = {src1, missing};
  lock_probe lp = {.other = w, .prune = -1, .backup = -1};
  kh_backup_opts bo = {.paths = paths, .npaths = 2, .host = "fixture", .threads = 1,
                       .warn = during_backup, .ctx = &lp};
  kh_backup_result r;
  CHECK_OK(kh_backup(v, &bo, &r));
  CHECK_EQ(r.warnings, 1);
  CHECK_EQ(lp.calls, 1);
  CHECK_ERR(lp.prune, KH_ERR_LOCKED);
  CHECK_OK(lp.backup);
  /* after the backup, prune runs */
  kh_prune_result pr;
  CHECK_OK(kh_prune(w, NULL, NULL, &pr));
  empty_account(w);
  /* a handle that lived across another handle's prune may trust a stale
   * index (issue 7, another item): start the next part with a fresh one */
  kh_vault_free(v);
  v = NULL;
  CHECK_OK(fx_open(&F, &v));
  if (!v)
    goto out;
  /* a pack with live and dead blobs makes prune repack (and report
   * progress, holding its exclusive lock): one backup of src1 and src2
   * together, a second of src2 alone, forget the first */
  const char *both[] = {src1, src2};
  kh_backup_opts b2 = {.paths = both, .npaths = 2, .host = "fixture", .threads = 1};
  kh_backup_result r1, r2;
  CHECK_OK(kh_backup(v, &b2, &r1));
  CHECK_OK(fx_backup(v, src2, &r2));
  const char *f1[] = {r1.snapshot_id};
  CHECK_OK(kh_forget(v, f1, 1));
  lp = (lock_probe){.other = w, .prune = -1, .backup = -1};
  memset(&pr, 0, sizeof pr);
  CHECK_OK(kh_prune(v, during_prune, &lp, &pr));
  CHECK(pr.packs_repacked >= 1);
  CHECK(lp.calls >= 1);
  CHECK_ERR(lp.prune, KH_ERR_LOCKED);
  CHECK_ERR(lp.backup, KH_ERR_LOCKED);
  /* and once it is done, both work again */
  CHECK_OK(fx_backup(w, src2, &r));
  CHECK_OK(kh_prune(w, NULL, NULL, &pr));
  CHECK(fx_check_clean(w));
  CHECK(fx_restores(&F, w, r2.snapshot_id, src2, src2));
out:
  kh_vault_free(v);
  kh_vault_free(w);
}

/* Protection: a new account is standard; switching to e2e sticks; a
 * device that saw e2e reports a record rolled back to standard as
 * KH_ERR_CORRUPT; a missing record is KH_ERR_CORRUPT. */
static void test_protection(void)
{
  fx G;
  if (!fx_init(&G, "prot", "prot passcode")) {
    CHECK(!"fixture");
    return;
  }
  char rec[600], save[600];
  kh_vault *v = NULL;
  kh_protection p = 0;
  CHECK_OK(fx_open(&G, &v));
  if (!v)
    goto out;
  snprintf(rec, sizeof rec, "%s/accounts/%s/protection", G.region, kh_vault_account_id(v));
  snprintf(save, sizeof save, "%s/protection.standard", G.root);
  CHECK_OK(kh_vault_protection(v, &p));
  CHECK_EQ(p, KH_PROTECTION_STANDARD);
  CHECK(fx_copy(rec, save));
  CHECK_OK(kh_vault_protection_set(v, KH_PROTECTION_E2E));
  CHECK_OK(kh_vault_protection(v, &p));
  CHECK_EQ(p, KH_PROTECTION_E2E);
  kh_vault_free(v);
  v = NULL;
  /* another handle reads e2e from the region */
  CHECK_OK(fx_open(&G, &v));
  if (!v)
    goto out;
  p = 0;
  CHECK_OK(kh_vault_protection(v, &p));
  CHECK_EQ(p, KH_PROTECTION_E2E);
  kh_vault_free(v);
  v = NULL;
  /* the provider serves the old "standard" record again (seen by a new
   * handle: the directory provider keeps objects it read open) */
  CHECK(fx_rm(rec) && fx_copy(save, rec));
  CHECK_OK(fx_open(&G, &v));
  if (!v)
    goto out;
  CHECK_ERR(kh_vault_protection(v, &p), KH_ERR_CORRUPT);
  kh_vault_free(v);
  v = NULL;
  /* ... or drops it */
  CHECK(fx_rm(rec));
  CHECK_OK(fx_open(&G, &v));
  if (v)
    CHECK_ERR(kh_vault_protection(v, &p), KH_ERR_CORRUPT);
out:
  kh_vault_free(v);
  fx_done(&G);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  if (!fx_init(&F, "repo", "repo passcode")) {
    fprintf(stderr, "fixture setup failed: %s\n", kh_errdetail());
    return 1;
  }
  snprintf(src1, sizeof src1, "%s/src1", F.root);
  snprintf(src2, sizeof src2, "%s/src2", F.root);
  CHECK(fx_tree(src1, 1, 96));
  CHECK(fx_tree(src2, 2, 64));
  RUN(test_roundtrip);
  RUN(test_incremental_dedup);
  RUN(test_forget_prune);
  RUN(test_locks);
  RUN(test_protection);
  fx_done(&F);
  return kh_test_done("test_repo");
}
