/* lib/log tile store and witness: batches of varying sizes across tile
 * boundaries, reopen, proofs from disk against in-memory ones, simulated
 * crashes, tampering, and the witness's consistency checks. */
#include "kh_test.h"
#include "keyhold/log.h"
#include "common/fsutil.h"
#include "crypto/crypto.h"
#include "log/log_internal.h"

#include <pthread.h>
#include <sodium.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];
static char *skey, *vkey;

static char *sub(const char *name)
{
  static char buf[4][512];
  static int i;
  i = (i + 1) % 4;
  snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
  return buf[i];
}

/* entry i: varying lengths, including empty and a large one */
static size_t make_entry(uint64_t i, uint8_t *buf)
{
  size_t n = (i % 97 == 5) ? 3000 : (size_t)(i % 13);
  for (size_t k = 0; k < n; k++)
    buf[k] = (uint8_t)(i * 31 + k);
  return n;
}

static void all_leaves(kh_log_hash *leaves, uint64_t n)
{
  uint8_t buf[4096];
  for (uint64_t i = 0; i < n; i++)
    kh_log_leaf_hash(leaves[i], buf, make_entry(i, buf));
}

static kh_err append_range(kh_tlog *log, uint64_t from, size_t n)
{
  uint8_t *bufs = malloc(n * 4096);
  const void **ptrs = malloc(n * sizeof *ptrs);
  size_t *lens = malloc(n * sizeof *lens);
  for (size_t k = 0; k < n; k++) {
    lens[k] = make_entry(from + k, bufs + k * 4096);
    ptrs[k] = bufs + k * 4096;
  }
  uint64_t first = 12345;
  kh_err e = kh_tlog_append(log, ptrs, lens, n, &first);
  if (!e && first != from)
    e = KH_ERR_CORRUPT;
  free(bufs);
  free(ptrs);
  free(lens);
  return e;
}

static void check_against_memory(kh_tlog *log, const kh_log_hash *leaves, int samples)
{
  uint64_t size = kh_tlog_size(log);
  kh_log_hash root, want, p[KH_LOG_PROOF_MAX], q[KH_LOG_PROOF_MAX];
  size_t pl, ql;
  int bad = 0;
  kh_tlog_root(log, root);
  kh_log_root(want, leaves, size);
  CHECK_MEM(root, want, 32);
  for (int t = 0; t < samples && size > 0; t++) {
    uint64_t s2 = 1 + (uint64_t)rand() % size, s1 = (uint64_t)rand() % (s2 + 1);
    uint64_t idx = (uint64_t)rand() % s2;
    if (t == 0)
      s2 = size, idx = size - 1;
    bad += kh_tlog_inclusion_proof(log, idx, s2, p, &pl) != KH_OK;
    bad += kh_log_inclusion_proof(leaves, size, idx, s2, q, &ql) != KH_OK;
    bad += pl != ql || memcmp(p, q, pl * 32) != 0;
    bad += kh_tlog_consistency_proof(log, s1, s2, p, &pl) != KH_OK;
    bad += kh_log_consistency_proof(leaves, size, s1, s2, q, &ql) != KH_OK;
    bad += pl != ql || memcmp(p, q, pl * 32) != 0;
    kh_log_hash r;
    bad += kh_tlog_root_at(log, s2, r) != KH_OK;
    kh_log_root(want, leaves, s2);
    bad += memcmp(r, want, 32) != 0;
    uint8_t *e = NULL, buf[4096];
    size_t el = 0;
    bad += kh_tlog_entry(log, idx, &e, &el) != KH_OK;
    bad += el != make_entry(idx, buf) || (el && memcmp(e, buf, el) != 0);
    free(e);
  }
  CHECK_EQ(bad, 0);
}

static void test_store_batches(void)
{
  enum { N = 1400 };
  kh_log_hash *leaves = malloc(N * sizeof *leaves);
  all_leaves(leaves, N);
  kh_tlog *log = NULL;
  char dir[512];
  snprintf(dir, sizeof dir, "%s", sub("log1"));
  CHECK_OK(kh_tlog_create(dir, "example.org/log1", skey));
  CHECK(kh_tlog_create(dir, "example.org/log1", skey) == KH_ERR_EXISTS);
  CHECK_OK(kh_tlog_open(dir, "example.org/log1", skey, NULL, &log));
  if (!log)
    return;
  CHECK_EQ(kh_tlog_size(log), 0);
  /* a second writer is locked out */
  kh_tlog *other = NULL;
  CHECK(kh_tlog_open(dir, NULL, skey, NULL, &other) == KH_ERR_LOCKED);
  CHECK(kh_tlog_open(dir, "other.origin", NULL, vkey, &other) == KH_ERR_AUTH);
  static const size_t batches[] = {1, 2, 3, 250, 1, 255, 256, 1, 300, 64, 7, 1, 200, 59};
  uint64_t size = 0;
  for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
    CHECK_OK(append_range(log, size, batches[b]));
    size += batches[b];
    CHECK_EQ(kh_tlog_size(log), size);
    check_against_memory(log, leaves, 20);
    if (b % 4 == 3) { /* reopen from disk now and then */
      kh_tlog_free(log);
      log = NULL;
      CHECK_OK(kh_tlog_open(dir, "example.org/log1", skey, NULL, &log));
      if (!log)
        return;
      CHECK_EQ(kh_tlog_size(log), size);
    }
  }
  CHECK_EQ(size, N);
  /* read-only view: same proofs, no appends */
  kh_tlog *ro = NULL;
  CHECK_OK(kh_tlog_open(dir, NULL, NULL, vkey, &ro));
  if (ro) {
    check_against_memory(ro, leaves, 200);
    CHECK(append_range(ro, size, 1) == KH_ERR_STATE);
    CHECK_OK(kh_tlog_verify(ro, NULL, NULL));
    /* the checkpoint verifies with the public key */
    kh_note_verifier *v = NULL;
    kh_checkpoint c;
    size_t cl;
    const char *cp = kh_tlog_checkpoint(ro, &cl);
    CHECK_OK(kh_note_verifier_new(vkey, &v));
    CHECK_OK(kh_checkpoint_open(cp, cl, v, &c, NULL));
    CHECK_EQ(c.size, N);
    kh_note_verifier_free(v);
    kh_tlog_free(ro);
  }
  /* too big entries are refused, nothing changes */
  uint8_t *big = calloc(1, 65536);
  const void *bp[1] = {big};
  size_t bl[1] = {65536};
  CHECK(kh_tlog_append(log, bp, bl, 1, NULL) == KH_ERR_TOOBIG);
  bl[0] = 65535;
  CHECK_OK(kh_tlog_append(log, bp, bl, 1, NULL));
  uint8_t *e = NULL;
  size_t el = 0;
  CHECK_OK(kh_tlog_entry(log, N, &e, &el));
  CHECK_EQ(el, 65535);
  free(e);
  free(big);
  CHECK(kh_tlog_entry(log, N + 1, &e, &el) == KH_ERR_NOTFOUND);
  /* tile paths on disk follow tlog-tiles */
  struct stat st;
  CHECK(stat(sub("log1/tile/0/000"), &st) == 0 && st.st_size == 8192);
  CHECK(stat(sub("log1/tile/0/004"), &st) == 0 && st.st_size == 8192);
  CHECK(stat(sub("log1/tile/0/005.p/121"), &st) == 0 && st.st_size == 121 * 32);
  CHECK(stat(sub("log1/tile/1/000.p/5"), &st) == 0 && st.st_size == 5 * 32);
  CHECK(stat(sub("log1/tile/entries/005.p/121"), &st) == 0);
  kh_tlog_free(log);
  free(leaves);
}

static void test_tile_paths(void)
{
  char p[128];
  CHECK_OK(kh_tile_path(p, sizeof p, 0, 1234067, 0));
  CHECK(!strcmp(p, "tile/0/x001/x234/067"));
  CHECK_OK(kh_tile_path(p, sizeof p, 2, 5, 17));
  CHECK(!strcmp(p, "tile/2/005.p/17"));
  CHECK_OK(kh_tile_path(p, sizeof p, -1, 1000, 0));
  CHECK(!strcmp(p, "tile/entries/x001/000"));
  CHECK_OK(kh_tile_path(p, sizeof p, 0, UINT64_MAX, 255));
  CHECK(!strcmp(p, "tile/0/x018/x446/x744/x073/x709/x551/615.p/255"));
  CHECK_ERR(kh_tile_path(p, sizeof p, 0, 1, 256), KH_ERR_INVAL);
  uint8_t b[] = {0, 1, 'a', 0, 0, 0, 2, 'b', 'c'};
  size_t off[3], len[3];
  CHECK_OK(kh_bundle_parse(b, sizeof b, 3, off, len));
  CHECK(len[0] == 1 && len[1] == 0 && len[2] == 2 && off[2] == 7);
  CHECK(kh_bundle_parse(b, sizeof b, 2, NULL, NULL) == KH_ERR_CORRUPT);
  CHECK(kh_bundle_parse(b, sizeof b - 1, 3, NULL, NULL) == KH_ERR_CORRUPT);
  CHECK(kh_bundle_parse(b, sizeof b, 4, NULL, NULL) == KH_ERR_CORRUPT);
}

static void test_crash(void)
{
  enum { N = 700 };
  kh_log_hash *leaves = malloc(N * sizeof *leaves);
  all_leaves(leaves, N);
  char dir[512];
  snprintf(dir, sizeof dir, "%s", sub("log2"));
  kh_tlog *log = NULL;
  CHECK_OK(kh_tlog_create(dir, "example.org/log2", skey));
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
  if (!log)
    return;
  CHECK_OK(append_range(log, 0, 200));
  for (int stage = 1; stage <= 2; stage++) {
    /* the batch crosses a tile boundary, so full tiles are written too */
    kh_tlog__crash_after(log, stage);
    CHECK(append_range(log, 200, 100) == KH_ERR_IO);
    CHECK(append_range(log, 200, 1) == KH_ERR_STATE);
    kh_tlog_free(log);
    log = NULL;
    /* reopen: the old checkpoint (200) is intact and verifies */
    CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
    if (!log)
      return;
    CHECK_EQ(kh_tlog_size(log), 200);
    CHECK_OK(kh_tlog_verify(log, NULL, NULL));
    check_against_memory(log, leaves, 20);
  }
  /* tiles left beyond the checkpoint are overwritten by different data */
  uint8_t x[3] = {1, 2, 3};
  const void *xp[1] = {x};
  size_t xl[1] = {3};
  CHECK_OK(kh_tlog_append(log, xp, xl, 1, NULL));
  kh_log_leaf_hash(leaves[200], x, 3);
  CHECK_OK(kh_tlog_verify(log, NULL, NULL));
  kh_tlog_free(log);
  log = NULL;
  /* a stale full tile from a crashed batch must not be trusted either: crash
   * a batch completing tile 0, then reopen and append other data */
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
  if (!log)
    return;
  kh_tlog__crash_after(log, 1);
  CHECK(append_range(log, 201, 100) == KH_ERR_IO);
  kh_tlog_free(log);
  log = NULL;
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
  if (!log)
    return;
  CHECK_EQ(kh_tlog_size(log), 201);
  uint8_t y[2] = {9, 9};
  const void *yp[1] = {y};
  size_t yl[1] = {2};
  CHECK_OK(kh_tlog_append(log, yp, yl, 1, NULL));
  kh_log_leaf_hash(leaves[201], y, 2);
  CHECK_OK(kh_tlog_verify(log, NULL, NULL));
  kh_log_hash r, want;
  kh_tlog_root(log, r);
  kh_log_root(want, leaves, 202);
  CHECK_MEM(r, want, 32);
  kh_tlog_free(log);
  free(leaves);
}

/* A child process appends in a loop and is killed with SIGKILL at a random
 * moment; the log must reopen with a verifiable checkpoint every time. */
static void test_kill9(void)
{
  char dir[512];
  snprintf(dir, sizeof dir, "%s", sub("log3"));
  CHECK_OK(kh_tlog_create(dir, "example.org/log3", skey));
  uint64_t last = 0;
  int regress = 0, fail = 0;
  for (int round = 0; round < 6; round++) {
    pid_t pid = fork();
    if (pid == 0) {
      kh_tlog *l = NULL;
      if (kh_tlog_open(dir, NULL, skey, NULL, &l))
        _exit(3);
      for (;;)
        if (append_range(l, kh_tlog_size(l), 1 + (size_t)rand() % 40))
          _exit(4);
    }
    struct timespec ts = {0, (10 + rand() % 60) * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    kh_tlog *log = NULL;
    kh_err e = kh_tlog_open(dir, NULL, NULL, vkey, &log);
    fail += e != KH_OK;
    if (log) {
      fail += kh_tlog_verify(log, NULL, NULL) != KH_OK;
      regress += kh_tlog_size(log) < last;
      last = kh_tlog_size(log);
      kh_tlog_free(log);
    }
  }
  CHECK_EQ(fail, 0);
  CHECK_EQ(regress, 0);
  CHECK(last > 0);
}

static void test_tamper(void)
{
  char dir[512];
  snprintf(dir, sizeof dir, "%s", sub("log4"));
  kh_tlog *log = NULL;
  CHECK_OK(kh_tlog_create(dir, "example.org/log4", skey));
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
  if (!log)
    return;
  CHECK_OK(append_range(log, 0, 300));
  kh_tlog_free(log);
  log = NULL;
  /* flip a byte of a full entry bundle: open works (right edge is fine),
   * the full audit finds it */
  uint8_t *d = NULL;
  size_t n = 0;
  CHECK_OK(kh_read_file(sub("log4/tile/entries/000"), 1 << 24, &d, &n));
  d[n - 1] ^= 1;
  CHECK_OK(kh_write_file_atomic(sub("log4/tile/entries/000"), d, n, 0644, false));
  CHECK_OK(kh_tlog_open(dir, NULL, NULL, vkey, &log));
  if (log) {
    CHECK(kh_tlog_verify(log, NULL, NULL) == KH_ERR_CORRUPT);
    uint8_t *e = NULL;
    size_t el;
    CHECK(kh_tlog_entry(log, 255, &e, &el) == KH_ERR_CORRUPT);
    kh_tlog_free(log);
    log = NULL;
  }
  d[n - 1] ^= 1;
  CHECK_OK(kh_write_file_atomic(sub("log4/tile/entries/000"), d, n, 0644, false));
  free(d);
  /* a damaged partial tile: open refuses */
  CHECK_OK(kh_read_file(sub("log4/tile/0/001.p/44"), 1 << 20, &d, &n));
  d[0] ^= 1;
  CHECK_OK(kh_write_file_atomic(sub("log4/tile/0/001.p/44"), d, n, 0644, false));
  CHECK(kh_tlog_open(dir, NULL, NULL, vkey, &log) == KH_ERR_CORRUPT);
  d[0] ^= 1;
  CHECK_OK(kh_write_file_atomic(sub("log4/tile/0/001.p/44"), d, n, 0644, false));
  free(d);
  /* a forged checkpoint: wrong key */
  kh_secret *sk2 = NULL;
  char *vk2 = NULL;
  CHECK_OK(kh_note_keygen("example.org/log4", KH_NOTE_ALG_ED25519, &sk2, &vk2));
  CHECK(kh_tlog_open(dir, NULL, NULL, vk2, &log) == KH_ERR_INVALID_PROOF);
  kh_secret_free(sk2);
  free(vk2);
  CHECK_OK(kh_tlog_open(dir, NULL, NULL, vkey, &log));
  kh_tlog_free(log);
}

static void test_witness(void)
{
  char wdir[512], dir[512];
  snprintf(wdir, sizeof wdir, "%s", sub("witness"));
  snprintf(dir, sizeof dir, "%s", sub("log5"));
  char *wvk = NULL, *out = NULL;
  size_t olen = 0;
  kh_witness *w = NULL;
  kh_tlog *log = NULL;
  CHECK_OK(kh_witness_init(wdir, "witness.example/w1", &wvk));
  CHECK(kh_witness_init(wdir, "witness.example/w1", &out) == KH_ERR_EXISTS);
  CHECK_OK(kh_witness_open(wdir, &w));
  if (!w || !wvk)
    return;
  CHECK(!strcmp(kh_witness_vkey(w), wvk));
  CHECK_OK(kh_tlog_create(dir, "example.org/log5", skey));
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
  /* unknown log */
  CHECK(kh_witness_cosign_dir(w, dir, 1000, &out, &olen) == KH_ERR_NOTFOUND);
  CHECK_OK(kh_witness_add_log(w, "example.org/log5", vkey));
  CHECK_OK(kh_witness_add_log(w, "example.org/log5", vkey));
  kh_secret *sk2 = NULL;
  char *vk2 = NULL;
  CHECK_OK(kh_note_keygen("example.org/log5", KH_NOTE_ALG_ED25519, &sk2, &vk2));
  CHECK(kh_witness_add_log(w, "example.org/log5", vk2) == KH_ERR_EXISTS);
  /* empty log, then growing */
  CHECK_OK(kh_witness_cosign_dir(w, dir, 1000, &out, &olen));
  free(out);
  kh_note_verifier *lv = NULL, *wv = NULL;
  CHECK_OK(kh_note_verifier_new(vkey, &lv));
  CHECK_OK(kh_note_verifier_new(wvk, &wv));
  kh_note_verifier *list[2] = {lv, wv};
  size_t sizes[] = {1, 300, 2, 0};
  uint64_t total = 0;
  for (int i = 0; i < 4; i++) {
    if (sizes[i]) {
      CHECK_OK(append_range(log, total, sizes[i]));
      total += sizes[i];
    }
    out = NULL;
    CHECK_OK(kh_witness_cosign_dir(w, dir, 2000 + (uint64_t)i, &out, &olen));
    if (!out)
      continue;
    bool ok[2];
    uint64_t times[2];
    kh_note_info info;
    CHECK_OK(kh_note_open(out, olen, list, 2, &info, ok, times));
    CHECK(ok[0] && ok[1]);
    CHECK_EQ(times[1], 2000 + i);
    free(out);
    uint64_t ls;
    kh_log_hash lr;
    CHECK_OK(kh_witness_last(w, "example.org/log5", &ls, lr));
    CHECK_EQ(ls, total);
  }
  kh_tlog_free(log);
  log = NULL;
  /* a fork: same origin and key, different history -> refused, state kept */
  char saved[600];
  snprintf(saved, sizeof saved, "%s.real", dir);
  CHECK(rename(dir, saved) == 0);
  CHECK_OK(kh_tlog_create(dir, "example.org/log5", skey));
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
  uint8_t z = 7;
  const void *zp[1] = {&z};
  size_t zl[1] = {1};
  for (int i = 0; i < 400; i++)
    kh_tlog_append(log, zp, zl, 1, NULL);
  out = NULL;
  CHECK(kh_witness_cosign_dir(w, dir, 3000, &out, &olen) == KH_ERR_INVALID_PROOF);
  CHECK(out == NULL);
  /* smaller log (rollback) refused */
  kh_tlog_free(log);
  log = NULL;
  CHECK_OK(kh_remove_tree(dir));
  CHECK_OK(kh_tlog_create(dir, "example.org/log5", skey));
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
  CHECK_OK(append_range(log, 0, 5));
  CHECK(kh_witness_cosign_dir(w, dir, 3001, &out, &olen) == KH_ERR_INVALID_PROOF);
  /* same size, different root refused */
  kh_tlog_free(log);
  log = NULL;
  CHECK_OK(kh_remove_tree(dir));
  CHECK_OK(kh_tlog_create(dir, "example.org/log5", skey));
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
  for (uint64_t i = 0; i < total; i++)
    kh_tlog_append(log, zp, zl, 1, NULL);
  CHECK_EQ(kh_tlog_size(log), total);
  CHECK(kh_witness_cosign_dir(w, dir, 3002, &out, &olen) == KH_ERR_INVALID_PROOF);
  uint64_t ls;
  kh_log_hash lr;
  CHECK_OK(kh_witness_last(w, "example.org/log5", &ls, lr));
  CHECK_EQ(ls, total);
  /* the real log, grown further, is still accepted */
  kh_tlog_free(log);
  log = NULL;
  CHECK_OK(kh_remove_tree(dir));
  CHECK(rename(saved, dir) == 0);
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
  CHECK_OK(append_range(log, total, 3));
  CHECK_OK(kh_witness_cosign_dir(w, dir, 4000, &out, &olen));
  free(out);
  /* checkpoint signed by another key with the same origin: refused */
  kh_tlog_free(log);
  kh_note_verifier_free(lv);
  kh_note_verifier_free(wv);
  kh_secret_free(sk2);
  free(vk2);
  free(wvk);
  kh_witness_free(w);
}

/* ---- concurrent cosign requests ---- */

/* Two histories of one log (same origin and key): branch 0 and a fork,
 * branch 1, that shares the first RACE_FORK entries.  notes[b][n] is the
 * log-signed checkpoint of branch b at size n. */
#define RACE_N 160
#define RACE_FORK 6
#define RACE_ORIGIN "example.org/race"
typedef struct race {
  const char *wdir;
  kh_log_hash (*leaves)[RACE_N];
  char *(*notes)[RACE_N + 1];
  size_t (*nlens)[RACE_N + 1];
  int fd;               /* records (branch, size) of every cosignature */
  unsigned seed;
  int regress;          /* the state was seen going back */
  int errors;           /* unexpected errors */
} race;

static void *race_worker(void *arg)
{
  race *r = arg;
  kh_witness *w = NULL;
  uint64_t seen = 0;
  if (kh_witness_open(r->wdir, &w)) {
    r->errors++;
    return NULL;
  }
  for (int it = 0; it < 60; it++) {
    uint64_t old;
    kh_log_hash oroot;
    if (kh_witness_last(w, RACE_ORIGIN, &old, oroot)) {
      r->errors++;
      break;
    }
    if (old < seen)
      r->regress++;
    seen = old > seen ? old : seen;
    if (old >= RACE_N)
      break;
    int b = rand_r(&r->seed) % 4 == 0; /* one request in four is the fork */
    uint64_t t = old + (uint64_t)(rand_r(&r->seed) % 4);
    if (t > RACE_N)
      t = RACE_N;
    kh_log_hash proof[KH_LOG_PROOF_MAX];
    size_t plen = 0;
    if (kh_log_consistency_proof(r->leaves[b], RACE_N, old, t, proof, &plen)) {
      r->errors++;
      break;
    }
    char *out = NULL;
    size_t olen = 0;
    kh_err e = kh_witness_cosign(w, r->notes[b][t], r->nlens[b][t], proof, plen,
                                 1000 + (uint64_t)it, &out, &olen);
    if (e == KH_OK) {
      uint32_t rec[2] = {(uint32_t)b, (uint32_t)t};
      if (write(r->fd, rec, sizeof rec) != (ssize_t)sizeof rec)
        r->errors++;
    } else if (e != KH_ERR_INVALID_PROOF) {
      r->errors++; /* a stale proof or a fork is refused, nothing else fails */
    }
    free(out);
  }
  kh_witness_free(w);
  return NULL;
}

/* Many concurrent cosign requests (3 processes x 2 threads) of increasing
 * sizes, a quarter of them for a fork of the log: the witness's state never
 * goes back, ends at the largest size it cosigned, and it never cosigns two
 * different roots for one size (both branches past the fork point). */
static void test_witness_concurrent(void)
{
  static kh_log_hash leaves[2][RACE_N];
  static char *notes[2][RACE_N + 1];
  static size_t nlens[2][RACE_N + 1];
  char wdir[512];
  char *wvk = NULL;
  kh_note_signer *lsig = NULL;
  snprintf(wdir, sizeof wdir, "%s", sub("witness-race"));
  all_leaves(leaves[0], RACE_N);
  memcpy(leaves[1], leaves[0], sizeof leaves[0]);
  for (uint64_t i = RACE_FORK; i < RACE_N; i++) {
    char fork[32];
    int fl = snprintf(fork, sizeof fork, "fork %llu", (unsigned long long)i);
    kh_log_leaf_hash(leaves[1][i], fork, (size_t)fl);
  }
  CHECK_OK(kh_note_signer_new(skey, &lsig));
  if (!lsig)
    return;
  for (int b = 0; b < 2; b++)
    for (uint64_t n = 0; n <= RACE_N; n++) {
      kh_checkpoint c;
      char *body = NULL;
      size_t blen = 0;
      memset(&c, 0, sizeof c);
      snprintf(c.origin, sizeof c.origin, "%s", RACE_ORIGIN);
      c.size = n;
      kh_log_root(c.root, leaves[b], n);
      CHECK_OK(kh_checkpoint_format(&c, &body, &blen));
      CHECK_OK(kh_note_sign(body, blen, lsig, &notes[b][n], &nlens[b][n]));
      free(body);
    }
  kh_note_signer_free(lsig);
  CHECK_OK(kh_witness_init(wdir, "witness.example/race", &wvk));
  kh_witness *w = NULL;
  CHECK_OK(kh_witness_open(wdir, &w));
  if (w)
    CHECK_OK(kh_witness_add_log(w, RACE_ORIGIN, vkey));
  int pfd[2];
  CHECK(pipe(pfd) == 0);
  enum { PROCS = 3, THREADS = 2 };
  pid_t pids[PROCS];
  for (int p = 0; p < PROCS; p++) {
    pids[p] = fork();
    if (pids[p] == 0) {
      close(pfd[0]);
      race rs[THREADS];
      pthread_t th[THREADS];
      int bad = 0;
      for (int t = 0; t < THREADS; t++) {
        rs[t] = (race){wdir, leaves, notes, nlens, pfd[1], (unsigned)(p * 7919 + t * 104729 + 1),
                       0, 0};
        if (pthread_create(&th[t], NULL, race_worker, &rs[t]) != 0)
          _exit(5);
      }
      for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        bad |= (rs[t].regress ? 1 : 0) | (rs[t].errors ? 2 : 0);
      }
      _exit(bad);
    }
  }
  close(pfd[1]);
  uint64_t max_size[2] = {0, 0};
  int ncosig = 0;
  uint32_t rec[2];
  while (read(pfd[0], rec, sizeof rec) == (ssize_t)sizeof rec) {
    ncosig++;
    if (rec[1] > max_size[rec[0]])
      max_size[rec[0]] = rec[1];
  }
  close(pfd[0]);
  int regress = 0, errors = 0;
  for (int p = 0; p < PROCS; p++) {
    int st = 0;
    waitpid(pids[p], &st, 0);
    CHECK(WIFEXITED(st));
    regress += WIFEXITED(st) && (WEXITSTATUS(st) & 1);
    errors += !WIFEXITED(st) || (WEXITSTATUS(st) & ~1);
  }
  CHECK_EQ(regress, 0);
  CHECK_EQ(errors, 0);
  CHECK(ncosig > 0);
  /* never both histories past the fork point: that is a cosigned fork */
  CHECK(max_size[0] <= RACE_FORK || max_size[1] <= RACE_FORK);
  /* the state is the largest checkpoint it cosigned */
  uint64_t ls = 0;
  kh_log_hash lr;
  if (w)
    CHECK_OK(kh_witness_last(w, RACE_ORIGIN, &ls, lr));
  int wb = max_size[1] > max_size[0];
  uint64_t top = max_size[wb];
  CHECK_EQ(ls, top);
  kh_log_hash want;
  kh_log_root(want, leaves[wb], top);
  CHECK_MEM(lr, want, KH_LOG_HASH);
  fprintf(stderr, "   %d cosignatures, state at size %llu (branch %d)\n", ncosig,
          (unsigned long long)ls, wb);
  for (int b = 0; b < 2; b++)
    for (uint64_t n = 0; n <= RACE_N; n++)
      free(notes[b][n]);
  kh_witness_free(w);
  free(wvk);
}

static void bench(void)
{
  char dir[512];
  snprintf(dir, sizeof dir, "%s", sub("bench"));
  kh_tlog *log = NULL;
  uint8_t entry[200];
  memset(entry, 'e', sizeof entry);
  CHECK_OK(kh_tlog_create(dir, "example.org/bench", skey));
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &log));
  if (!log)
    return;
  static const size_t bs[] = {1, 64};
  for (size_t k = 0; k < 2; k++) {
    const void *ptrs[64];
    size_t lens[64];
    for (int i = 0; i < 64; i++)
      ptrs[i] = entry, lens[i] = sizeof entry;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int batches = 0;
    double el = 0;
    do {
      CHECK_OK(kh_tlog_append(log, ptrs, lens, bs[k], NULL));
      batches++;
      clock_gettime(CLOCK_MONOTONIC, &b);
      el = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    } while (el < 1.0);
    fprintf(stderr, "bench: batch %zu: %d batches, %.0f batches/s, %.0f entries/s\n", bs[k],
            batches, batches / el, batches * (double)bs[k] / el);
  }
  kh_tlog_free(log);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(tmpdir, sizeof tmpdir, "%s/kh-test-log-XXXXXX", base);
  if (!mkdtemp(tmpdir))
    return 1;
  kh_secret *sk = NULL;
  if (kh_note_keygen("example.org/log", KH_NOTE_ALG_ED25519, &sk, &vkey))
    return 1;
  skey = strndup((const char *)sk->bytes, sk->len);
  kh_secret_free(sk);
  srand(1);
  RUN(test_tile_paths);
  RUN(test_store_batches);
  RUN(test_crash);
  RUN(test_tamper);
  RUN(test_kill9);
  RUN(test_witness);
  RUN(test_witness_concurrent);
  if (getenv("KH_LOG_BENCH"))
    RUN(bench);
  if (!getenv("KH_TEST_KEEP"))
    kh_remove_tree(tmpdir);
  else
    fprintf(stderr, "kept %s\n", tmpdir);
  free(skey);
  free(vkey);
  return kh_test_done("test_log_store");
}
