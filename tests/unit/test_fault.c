/* Fault injection (common/fault.h), as SQLite and curl do it: for backup,
 * prune and passcode change, fail the Nth allocation / provider write /
 * local file write for N = 1, 2, ... until the operation runs through
 * without reaching N.  After every injected failure the account must stay
 * usable: it opens with the right passcode, check finds no error (leftover
 * unreferenced data is only a note), and every snapshot made before
 * restores byte-identical. */
#include "repo_fixture.h"
#include "common/fault.h"
#include "crypto/crypto.h"

#include <time.h>

#define FAULT_CAP 5000

/* Every allocation the library makes (not only kh_buf and secure memory)
 * is a fault point "alloc.libc" (tests/meson.build links with --wrap). */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n) { return kh_fault_point("alloc.libc") ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m)
{
  return kh_fault_point("alloc.libc") ? NULL : __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n)
{
  return kh_fault_point("alloc.libc") ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s) { return kh_fault_point("alloc.libc") ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n)
{
  return kh_fault_point("alloc.libc") ? NULL : __real_strndup(s, n);
}

static const char *classes[] = {"alloc.", "provider.", "file."};

static fx F;
static char src1[400], src2[400];
static kh_secret *newpass;

typedef struct snapref {
  char id[KH_SNAPSHOT_ID_HEX + 1];
  const char *src;
} snapref;

/* The account opens with pass, check is clean, and every snapshot in
 * want[0..n) restores to its source. */
static bool usable(const kh_secret *pass, const snapref *want, size_t n, const char *what,
                   unsigned long nth)
{
  kh_vault *v = NULL;
  kh_err e = fx_open_with(&F, pass, &v);
  bool ok = e == KH_OK;
  if (!ok)
    fprintf(stderr, "%s, fault %lu: open: %s (%s)\n", what, nth, kh_strerror(e), kh_errdetail());
  ok = ok && fx_check_clean(v);
  for (size_t i = 0; ok && i < n; i++)
    ok = fx_restores(&F, v, want[i].id, want[i].src, want[i].src);
  kh_vault_free(v);
  if (!ok)
    fprintf(stderr, "%s: account not usable after fault %lu\n", what, nth);
  return ok;
}

typedef kh_err (*op_fn)(kh_vault *v, void *ctx);

static kh_err op_backup(kh_vault *v, void *ctx)
{
  kh_backup_result *r = ctx;
  return fx_backup(v, src2, r);
}
static kh_err op_prune(kh_vault *v, void *ctx)
{
  kh_prune_result *r = ctx;
  return kh_prune(v, NULL, NULL, r);
}
static kh_err op_passcode(kh_vault *v, void *ctx)
{
  (void)ctx;
  return kh_vault_passcode_change(v, newpass, 1, 8);
}

/* Runs op from the saved state `golden` once per N and class; returns how
 * many faults were injected in all. */
static unsigned long torture(const char *what, const char *golden, op_fn op, void *ctx,
                             const snapref *before, size_t nbefore, bool passcode)
{
  unsigned long total = 0;
  for (size_t c = 0; c < sizeof classes / sizeof classes[0]; c++) {
    unsigned long nth;
    bool done = false;
    for (nth = 1; nth <= FAULT_CAP && !done; nth++) {
      if (!fx_restore_state(&F, golden)) {
        CHECK(!"restore the saved state");
        return total;
      }
      kh_vault *v = NULL;
      kh_err e = fx_open(&F, &v);
      if (e) {
        CHECK_OK(e);
        return total;
      }
      kh_fault_arm(classes[c], nth);
      e = op(v, ctx);
      bool fired = kh_fault_fired();
      kh_fault_arm(NULL, 0);
      kh_vault_free(v);
      if (!fired) {
        CHECK_OK(e);
        done = true;
        fprintf(stderr, "  %s: %lu %s faults, then success\n", what, nth - 1, classes[c]);
      }
      total += fired;
      /* a fault may be absorbed (a cache write), but then the result must
       * be complete: the checks below cover what the operation produced */
      bool changed = passcode && e == KH_OK;
      if (!usable(changed ? newpass : F.pass, before, nbefore, what, nth)) {
        CHECK(!"account usable after an injected fault");
        fprintf(stderr, "  (%s, class %s, fault %lu: the operation returned %s: %s)\n", what,
                classes[c], nth, kh_strerror(e), kh_errdetail());
        return total;
      }
      if (changed) {
        /* a completed change: the old passcode no longer opens */
        kh_vault *o = NULL;
        CHECK_ERR(fx_open_with(&F, F.pass, &o), KH_ERR_PASSCODE);
        kh_vault_free(o);
      }
    }
    CHECK(done);
  }
  return total;
}

/* Opening the account (and enrolling this device on first use) under
 * every allocation failure and every failing write: the failure is
 * reported as what it is (KH_ERR_NOMEM / KH_ERR_IO), never as "no such
 * account" or "wrong passcode", and a fault that was absorbed leaves a
 * working handle. */
static void test_open_reports_the_real_error(void)
{
  static const struct { const char *cls; kh_err want; } k[] = {
    {"alloc.", KH_ERR_NOMEM}, {"provider.", KH_ERR_IO}, {"file.", KH_ERR_IO}};
  for (size_t c = 0; c < sizeof k / sizeof k[0]; c++) {
    bool done = false;
    unsigned long nth, wrong = 0;
    for (nth = 1; nth <= FAULT_CAP && !done; nth++) {
      char dev[400];
      snprintf(dev, sizeof dev, "%s/newdevice", F.root); /* first use: enrolls */
      fx_rm(dev);
      if (!fx_restore_state(&F, "fresh")) {
        CHECK(!"restore the saved state");
        return;
      }
      kh_open_opts o = {.region_path = F.region, .passcode = F.pass, .cache_dir = F.cache,
                        .device_dir = dev};
      kh_vault *v = NULL;
      kh_fault_arm(k[c].cls, nth);
      kh_err e = kh_vault_open(&o, &v);
      done = !kh_fault_fired();
      kh_fault_arm(NULL, 0);
      if (e != KH_OK && e != k[c].want && wrong++ < 5)
        fprintf(stderr, "open, %s fault %lu: %s (%s), expected %s\n", k[c].cls, nth,
                kh_strerror(e), kh_errdetail(), kh_strerror(k[c].want));
      CHECK(e == KH_OK || e == k[c].want);
      CHECK((e == KH_OK) == (v != NULL));
      kh_vault_free(v);
    }
    CHECK(done);
    CHECK(nth > 2); /* at least one fault was injected */
  }
}

/* One phase per run (tests/meson.build registers each as its own test, so
 * that they run in parallel and each stays well under a minute): "open",
 * "backup", "prune", "passcode"; no argument runs them all. */
int main(int argc, char **argv)
{
  const char *phase = argc > 1 ? argv[1] : "all";
  bool all = !strcmp(phase, "all");
  if (kh_crypto_init() != KH_OK)
    return 1;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (!fx_init(&F, "fault", "old passcode")) {
    fprintf(stderr, "fixture setup failed: %s\n", kh_errdetail());
    return 1;
  }
  newpass = kh_secret_new("new passcode", 12);
  snprintf(src1, sizeof src1, "%s/src1", F.root);
  snprintf(src2, sizeof src2, "%s/src2", F.root);
  CHECK(fx_tree(src1, 1, 96));
  CHECK(fx_tree(src2, 2, 64));

  /* the fault mechanism itself */
  kh_fault_arm("x.", 2);
  CHECK(!kh_fault_point("y.one"));
  CHECK(!kh_fault_point("x.one"));
  CHECK(kh_fault_point("x.two"));
  CHECK(!kh_fault_point("x.three"));
  CHECK(kh_fault_fired());
  CHECK_EQ(kh_fault_calls(), 3);
  kh_fault_arm(NULL, 0);
  CHECK(!kh_fault_point("x.one"));
  CHECK(!kh_fault_fired());

  CHECK(fx_save(&F, "fresh"));
  if (all || !strcmp(phase, "open"))
    RUN(test_open_reports_the_real_error);

  /* snapshot 1 exists before every operation under test */
  snapref snaps[2] = {{"", src1}, {"", src2}};
  kh_vault *v = NULL;
  kh_backup_result br;
  CHECK_OK(fx_open(&F, &v));
  CHECK_OK(fx_backup(v, src1, &br));
  snprintf(snaps[0].id, sizeof snaps[0].id, "%s", br.snapshot_id);
  kh_vault_free(v);
  CHECK(fx_save(&F, "one-snapshot"));
  unsigned long n;

  /* backup of src2 (shares the text with src1) */
  if (all || !strcmp(phase, "backup")) {
    n = torture("backup", "one-snapshot", op_backup, &br, snaps, 1, false);
    CHECK(n > 10);
  }

  /* prune after forgetting snapshot 1 while snapshot 2 is kept */
  if (all || !strcmp(phase, "prune")) {
    CHECK(fx_restore_state(&F, "one-snapshot"));
    CHECK_OK(fx_open(&F, &v));
    CHECK_OK(fx_backup(v, src2, &br));
    snprintf(snaps[1].id, sizeof snaps[1].id, "%s", br.snapshot_id);
    const char *forget[] = {snaps[0].id};
    CHECK_OK(kh_forget(v, forget, 1));
    kh_vault_free(v);
    CHECK(fx_save(&F, "forgotten"));
    kh_prune_result pr;
    n = torture("prune", "forgotten", op_prune, &pr, snaps + 1, 1, false);
    CHECK(n > 5);
  }

  /* passcode change */
  if (all || !strcmp(phase, "passcode")) {
    n = torture("passcode change", "one-snapshot", op_passcode, NULL, snaps, 1, true);
    CHECK(n > 3);
  }

  clock_gettime(CLOCK_MONOTONIC, &t1);
  fprintf(stderr, "test_fault %s: %.1f s\n", phase,
          (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  kh_secret_free(newpass);
  fx_done(&F);
  return kh_test_done("test_fault");
}
