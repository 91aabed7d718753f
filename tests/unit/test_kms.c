/* The key service (lib/kms/kms.c, escrow.c): log before release, group
 * commit, fail closed on log failures, escrow counter, destroy, rotation,
 * and a kill -9 loop during unwraps and escrow attempts.
 * KH_KMS_BENCH=1 runs the throughput benchmark instead (bench/kms.sh). */
#include "keyhold/kms.h"
#include "kms/kms_internal.h"
#include "common/fsutil.h"
#include "crypto/crypto.h"
#include "kh_test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmp[256], region[300];
static const char *acct1 = "0123456789abcdef0123456789abcdef";
static const char *acct2 = "fedcba9876543210fedcba9876543210";
static uint8_t key1[32], key2[32];

static kh_kms_request op_rq = {"operator", "unit test", NULL, NULL, NULL};

static void mark_account(const char *a)
{
  char p[512];
  snprintf(p, sizeof p, "%s/accounts/%s", region, a);
  kh_mkdirs(p, 0700);
  snprintf(p, sizeof p, "%s/accounts/%s/account", region, a);
  kh_write_file_atomic(p, "keyhold-account v1\n", 19, 0600, false);
}

static kh_kms *open_kms(void)
{
  kh_kms *k = NULL;
  kh_err e = kh_kms_open(region, &k);
  CHECK_OK(e);
  return k;
}

static bool proof_ok(const kh_kms *k, const kh_kms_release *r)
{
  kh_note_verifier *v = NULL;
  kh_checkpoint c;
  bool ok = kh_note_verifier_new(kh_kms_log_vkey(k), &v) == KH_OK &&
            kh_checkpoint_open(r->checkpoint, r->checkpoint_len, v, &c, NULL) == KH_OK &&
            c.size == r->size && !memcmp(c.root, r->root, 32);
  kh_log_hash leaf;
  kh_log_leaf_hash(leaf, r->entry, r->entry_len);
  ok = ok && !memcmp(leaf, r->leaf, 32) &&
       kh_log_verify_inclusion(r->leaf, r->index, r->size, r->proof, r->plen, r->root) == KH_OK;
  kh_note_verifier_free(v);
  return ok;
}

static void test_create_wrap_unwrap(void)
{
  CHECK(!kh_kms_exists(region));
  CHECK_OK(kh_kms_create(region, "test-region"));
  CHECK(kh_kms_exists(region));
  CHECK_EQ(kh_kms_create(region, "test-region"), KH_ERR_EXISTS);
  mark_account(acct1);
  mark_account(acct2);
  kh_kms *k = open_kms();
  if (!k)
    return;
  CHECK_OK(kh_kms_wrap(k, acct1, key1, 2, &op_rq));
  CHECK_OK(kh_kms_wrap(k, acct2, key2, 1, &op_rq));
  CHECK_EQ(kh_kms_wrap(k, acct1, key1, 2, &op_rq), KH_ERR_EXISTS);
  kh_kms_release r;
  CHECK_OK(kh_kms_unwrap(k, acct1, &op_rq, &r));
  CHECK(r.key && !memcmp(r.key, key1, 32));
  CHECK_EQ(r.cipher, 2);
  CHECK_EQ(r.index, 2);
  CHECK_EQ(r.size, 3);
  CHECK(proof_ok(k, &r));
  CHECK(r.entry && strstr(r.entry, "op unwrap\n") && strstr(r.entry, "reason unit test\n"));
  kh_kms_release_clear(&r);
  CHECK(r.key == NULL);
  /* an unknown account: nothing logged */
  CHECK_EQ(kh_kms_unwrap(k, "00112233445566778899aabbccddeeff", &op_rq, &r), KH_ERR_STATE);
  CHECK(r.key == NULL);
  /* a request without reason is refused */
  kh_kms_request bad = {"operator", NULL, NULL, NULL, NULL};
  CHECK_EQ(kh_kms_unwrap(k, acct1, &bad, &r), KH_ERR_INVAL);
  uint64_t b, n;
  kh_kms_stats(k, &b, &n);
  CHECK_EQ(n, 3);
  kh_kms_free(k);
}

/* a wrap object tampered with by the provider does not release anything */
static void test_tampered_wrap(void)
{
  kh_kms *k = open_kms();
  if (!k)
    return;
  char dir[512];
  snprintf(dir, sizeof dir, "accounts/%s/keys", acct2);
  kh_buf obj;
  kh_buf_init(&obj, 4096);
  uint8_t wid[16];
  (void)wid;
  /* flip one byte of acct2's wrap */
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", region, dir);
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "ls %s", path);
  FILE *f = popen(cmd, "r");
  char name[64] = "";
  if (f) {
    if (!fgets(name, sizeof name, f))
      name[0] = 0;
    pclose(f);
  }
  name[strcspn(name, "\n")] = 0;
  snprintf(path, sizeof path, "%s/%s/%s", region, dir, name);
  uint8_t *data = NULL;
  size_t len = 0;
  CHECK_OK(kh_read_file(path, 4096, &data, &len));
  uint64_t before = kh_tlog_size(k->log);
  if (data && len > 40) {
    data[len - 5] ^= 1;
    CHECK_OK(kh_write_file_atomic(path, data, len, 0600, false));
    kh_kms_release r;
    CHECK_EQ(kh_kms_unwrap(k, acct2, &op_rq, &r), KH_ERR_AUTH);
    CHECK(r.key == NULL);
    CHECK_EQ(kh_tlog_size(k->log), before);
    data[len - 5] ^= 1;
    CHECK_OK(kh_write_file_atomic(path, data, len, 0600, false));
    kh_kms_free(k); /* the provider caches open objects: reopen */
    k = open_kms();
    if (!k)
      goto out;
    CHECK_OK(kh_kms_unwrap(k, acct2, &op_rq, &r));
    CHECK(r.key && !memcmp(r.key, key2, 32));
    kh_kms_release_clear(&r);
  }
out:
  free(data);
  kh_buf_release(&obj);
  kh_kms_free(k);
}

/* Fail closed: when the log cannot be written, no key comes out. */
static void test_log_failure(void)
{
  kh_kms *k = open_kms();
  if (!k)
    return;
  kh_kms_release r;
  uint64_t size = kh_tlog_size(k->log);
  kh_kms_test_fail_appends(k, 1);
  memset(&r, 0xAA, sizeof r);
  CHECK_EQ(kh_kms_unwrap(k, acct1, &op_rq, &r), KH_ERR_LOG);
  CHECK(r.key == NULL && r.checkpoint == NULL);
  CHECK_EQ(kh_tlog_size(k->log), size);
  /* a real failure: the next partial tile's name is taken by a directory */
  char p[600];
  snprintf(p, sizeof p, "%s/log/tile/entries/000.p/%llu", region,
           (unsigned long long)size + 1);
  CHECK(mkdir(p, 0700) == 0);
  CHECK_EQ(kh_kms_unwrap(k, acct1, &op_rq, &r), KH_ERR_LOG);
  CHECK(r.key == NULL);
  CHECK(strstr(kh_errdetail(), "nothing released") != NULL);
  kh_kms_free(k);
  CHECK(rmdir(p) == 0);
  k = open_kms();
  if (!k)
    return;
  CHECK_EQ(kh_tlog_size(k->log), size);
  CHECK_OK(kh_kms_unwrap(k, acct1, &op_rq, &r));
  CHECK(r.key && !memcmp(r.key, key1, 32) && r.index == size);
  CHECK(proof_ok(k, &r));
  kh_kms_release_clear(&r);
  CHECK_OK(kh_tlog_verify(k->log, NULL, NULL));
  kh_kms_free(k);
}

struct worker {
  kh_kms *k;
  int n, bad;
  const char *acct;
  const uint8_t *key;
  double *lat;
};

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *worker_run(void *arg)
{
  struct worker *w = arg;
  for (int i = 0; i < w->n; i++) {
    kh_kms_release r;
    double t0 = now();
    kh_err e = kh_kms_unwrap(w->k, w->acct, &op_rq, &r);
    if (w->lat)
      w->lat[i] = now() - t0;
    if (e || !r.key || memcmp(r.key, w->key, 32) || (!w->lat && !proof_ok(w->k, &r)))
      w->bad++;
    kh_kms_release_clear(&r);
  }
  return NULL;
}

static void test_group_commit(void)
{
  kh_kms *k = open_kms();
  if (!k)
    return;
  enum { T = 16, N = 40 };
  pthread_t th[T];
  struct worker w[T];
  uint64_t b0, e0, b1, e1;
  kh_kms_stats(k, &b0, &e0);
  for (int i = 0; i < T; i++) {
    w[i] = (struct worker){k, N, 0, i % 2 ? acct1 : acct2, i % 2 ? key1 : key2, NULL};
    pthread_create(&th[i], NULL, worker_run, &w[i]);
  }
  int bad = 0;
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    bad += w[i].bad;
  }
  CHECK_EQ(bad, 0);
  kh_kms_stats(k, &b1, &e1);
  CHECK_EQ(e1 - e0, T * N);
  fprintf(stderr, "   %d unwraps in %llu batches\n", T * N, (unsigned long long)(b1 - b0));
  CHECK(b1 - b0 < e1 - e0); /* at least some batching */
  CHECK_OK(kh_tlog_verify(k->log, NULL, NULL));
  kh_kms_free(k);
}

static void test_escrow(void)
{
  kh_kms *k = open_kms();
  if (!k)
    return;
  kh_secret *good = kh_secret_new("recovery words", 14), *bad = kh_secret_new("wrong", 5);
  kh_kms_release r;
  uint32_t left = 0;
  kh_kms_escrow_info in;
  kh_kms_request dev = {"device:x", "escrow", NULL, NULL, NULL};
  CHECK_EQ(kh_kms_escrow_recover(k, acct2, good, &dev, &r, &left), KH_ERR_NOTFOUND);
  CHECK_OK(kh_kms_escrow_enable(k, acct2, key2, 1, good, &dev));
  for (int i = 1; i <= 3; i++) {
    CHECK_EQ(kh_kms_escrow_recover(k, acct2, bad, &dev, &r, &left), KH_ERR_PASSCODE);
    CHECK(r.key == NULL);
    CHECK_EQ(left, 10 - i);
  }
  CHECK_OK(kh_kms_escrow_status(k, acct2, &in));
  CHECK(in.present && !in.destroyed && in.failed == 3 && in.attempts == 3);
  kh_kms_free(k);
  /* the counter survives a reopen */
  k = open_kms();
  if (!k)
    goto out;
  CHECK_OK(kh_kms_escrow_status(k, acct2, &in));
  CHECK(in.failed == 3 && in.attempts == 3);
  uint64_t size = kh_tlog_size(k->log);
  CHECK_OK(kh_kms_escrow_recover(k, acct2, good, &dev, &r, &left));
  CHECK(r.key && !memcmp(r.key, key2, 32) && r.cipher == 1);
  CHECK(r.index == size && proof_ok(k, &r));
  CHECK(strstr(r.entry, "op escrow-attempt\n") && strstr(r.entry, "attempt 4\n"));
  kh_kms_release_clear(&r);
  CHECK_OK(kh_kms_escrow_status(k, acct2, &in));
  CHECK(in.present && in.failed == 0 && in.attempts == 4);
  /* a log failure: the attempt is still counted, nothing is released */
  kh_kms_test_fail_appends(k, 1);
  CHECK_EQ(kh_kms_escrow_recover(k, acct2, good, &dev, &r, &left), KH_ERR_LOG);
  CHECK(r.key == NULL);
  CHECK_OK(kh_kms_escrow_status(k, acct2, &in));
  CHECK(in.failed == 1 && in.attempts == 5);
  /* a tampered counter is refused */
  char *cp = kh_kms_path(k, "escrow", acct2, "ctr");
  uint8_t *data = NULL;
  size_t len = 0;
  CHECK_OK(kh_read_file(cp, 4096, &data, &len));
  if (data) {
    uint8_t save = data[24];
    data[24] = 0; /* failed = 0 */
    kh_write_file_atomic(cp, data, len, 0600, false);
    CHECK_EQ(kh_kms_escrow_recover(k, acct2, good, &dev, &r, &left), KH_ERR_AUTH);
    data[24] = save;
    kh_write_file_atomic(cp, data, len, 0600, false);
  }
  free(data);
  /* a deleted counter: fail closed (no attempt is judged) */
  char moved[700];
  snprintf(moved, sizeof moved, "%s.moved", cp);
  CHECK(rename(cp, moved) == 0);
  CHECK_EQ(kh_kms_escrow_recover(k, acct2, good, &dev, &r, &left), KH_ERR_NOTFOUND);
  CHECK(r.key == NULL);
  CHECK(rename(moved, cp) == 0);
  /* 9 more wrong (10 in a row with the failed log attempt) destroy the record */
  for (int i = 2; i <= 10; i++)
    CHECK_EQ(kh_kms_escrow_recover(k, acct2, bad, &dev, &r, &left), KH_ERR_PASSCODE);
  CHECK_EQ(left, 0);
  CHECK_OK(kh_kms_escrow_status(k, acct2, &in));
  CHECK(!in.present && in.destroyed);
  /* for good: even the right passcode gets nothing now */
  CHECK_EQ(kh_kms_escrow_recover(k, acct2, good, &dev, &r, &left), KH_ERR_DENIED);
  CHECK(r.key == NULL);
  free(cp);
  kh_kms_free(k);
  k = open_kms();
  if (k)
    CHECK_EQ(kh_kms_escrow_recover(k, acct2, good, &dev, &r, &left), KH_ERR_DENIED);
  /* enabling again makes a fresh record */
  if (k) {
    CHECK_OK(kh_kms_escrow_enable(k, acct2, key2, 1, good, &dev));
    CHECK_OK(kh_kms_escrow_recover(k, acct2, good, &dev, &r, &left));
    CHECK(r.key && !memcmp(r.key, key2, 32));
    kh_kms_release_clear(&r);
    CHECK_OK(kh_kms_escrow_status(k, acct2, &in));
    CHECK(in.attempts == 15); /* monotonic across records */
  }
out:
  kh_kms_free(k);
  kh_secret_free(good);
  kh_secret_free(bad);
}

static kh_err sign_with(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
  crypto_sign_detached(sig, NULL, msg, len, ctx);
  return KH_OK;
}

static void test_device_signature(void)
{
  kh_kms *k = open_kms();
  if (!k)
    return;
  uint8_t pk[32], sk[64], pk2[32], sk2[64];
  crypto_sign_keypair(pk, sk);
  crypto_sign_keypair(pk2, sk2);
  const char *dev = "00112233445566778899aabbccddeeff";
  kh_kms_request rq = {"device:00112233445566778899aabbccddeeff", "escrow", dev, sign_with, sk};
  kh_secret *pw = kh_secret_new("pw", 2);
  CHECK_OK(kh_kms_escrow_enable(k, acct1, key1, 2, pw, &rq));
  uint8_t *e = NULL;
  size_t len = 0;
  kh_log_entry en;
  CHECK_OK(kh_tlog_entry(k->log, kh_tlog_size(k->log) - 1, &e, &len));
  CHECK_OK(kh_log_entry_parse(e, len, &en));
  CHECK_OK(kh_kms_verify_device_entry(&en, dev, pk));
  CHECK_EQ(kh_kms_verify_device_entry(&en, dev, pk2), KH_ERR_AUTH);
  CHECK_EQ(kh_kms_verify_device_entry(&en, acct1, pk), KH_ERR_AUTH);
  kh_log_entry forged = en;
  snprintf(forged.reason, sizeof forged.reason, "something else");
  CHECK_EQ(kh_kms_verify_device_entry(&forged, dev, pk), KH_ERR_AUTH);
  forged = en;
  forged.op = KH_LOG_OP_UNWRAP;
  CHECK_EQ(kh_kms_verify_device_entry(&forged, dev, pk), KH_ERR_AUTH);
  free(e);
  kh_secret_free(pw);
  kh_kms_free(k);
}

static void test_rotate_destroy(void)
{
  kh_kms *k = open_kms();
  if (!k)
    return;
  size_t n = 0;
  CHECK(strstr(kh_kms_rootkey_id(k), ":v1") != NULL);
  CHECK_OK(kh_kms_rotate(k, &op_rq, &n));
  CHECK_EQ(n, 2);
  CHECK(strstr(kh_kms_rootkey_id(k), ":v2") != NULL);
  kh_kms_release r;
  CHECK_OK(kh_kms_unwrap(k, acct1, &op_rq, &r));
  CHECK(r.key && !memcmp(r.key, key1, 32) && strstr(r.entry, ":v2\n"));
  kh_kms_release_clear(&r);
  kh_kms_free(k);
  /* after reopen, with the log key rewrapped too */
  k = open_kms();
  if (!k)
    return;
  CHECK_OK(kh_kms_unwrap(k, acct2, &op_rq, &r));
  CHECK(r.key && !memcmp(r.key, key2, 32));
  kh_kms_release_clear(&r);
  /* destroy: logged, wrap and escrow gone, and nothing comes back */
  bool has = false;
  CHECK_OK(kh_kms_has_wrap(k, acct1, &has));
  CHECK(has);
  char wrapdir[1400];
  snprintf(wrapdir, sizeof wrapdir, "cp -a %s/accounts/%s/keys %s/saved-keys", region, acct1,
           tmp);
  CHECK(system(wrapdir) == 0);
  uint64_t size = kh_tlog_size(k->log);
  CHECK_OK(kh_kms_destroy(k, acct1, &op_rq));
  CHECK_EQ(kh_tlog_size(k->log), size + 1);
  CHECK_OK(kh_kms_has_wrap(k, acct1, &has));
  CHECK(!has);
  CHECK_EQ(kh_kms_unwrap(k, acct1, &op_rq, &r), KH_ERR_STATE);
  kh_kms_escrow_info in;
  CHECK_OK(kh_kms_escrow_status(k, acct1, &in));
  CHECK(!in.present);
  kh_secret *pw = kh_secret_new("pw", 2);
  CHECK_EQ(kh_kms_escrow_enable(k, acct1, key1, 2, pw, &op_rq), KH_ERR_STATE);
  CHECK_EQ(kh_kms_wrap(k, acct1, key1, 2, &op_rq), KH_ERR_STATE);
  kh_secret_free(pw);
  /* the provider brings the old wrap back: still refused */
  snprintf(wrapdir, sizeof wrapdir, "cp -a %s/saved-keys/. %s/accounts/%s/keys/", tmp, region,
           acct1);
  CHECK(system(wrapdir) == 0);
  CHECK_EQ(kh_kms_unwrap(k, acct1, &op_rq, &r), KH_ERR_STATE);
  CHECK(r.key == NULL);
  kh_kms_free(k);
}

/* N witness cosignatures required before a release */
static void test_witnesses(void)
{
  kh_kms *k = open_kms();
  if (!k)
    return;
  char w1[400], w2[400];
  snprintf(w1, sizeof w1, "%s/w1", tmp);
  snprintf(w2, sizeof w2, "%s/w2", tmp);
  char *vk = NULL;
  CHECK_OK(kh_witness_init(w1, "witness.one/w", &vk));
  free(vk);
  CHECK_OK(kh_witness_init(w2, "witness.two/w", &vk));
  free(vk);
  const char *one[] = {w1}, *two[] = {w1, w2};
  CHECK_EQ(kh_kms_set_witnesses(k, 2, one, 1), KH_ERR_INVAL);
  CHECK_OK(kh_kms_set_witnesses(k, 1, one, 1));
  kh_kms_release r;
  CHECK_OK(kh_kms_unwrap(k, acct2, &op_rq, &r));
  CHECK(r.key && r.cosignatures == 1 && strstr(r.checkpoint, "\n— witness.one/w "));
  kh_kms_release_clear(&r);
  CHECK_OK(kh_kms_set_witnesses(k, 2, two, 2));
  kh_kms_free(k);
  /* the config survives a reopen; a witness that is gone: nothing released */
  k = open_kms();
  if (!k)
    return;
  CHECK_OK(kh_kms_unwrap(k, acct2, &op_rq, &r));
  CHECK(r.key && r.cosignatures == 2);
  kh_kms_release_clear(&r);
  kh_remove_tree(w2);
  kh_kms_free(k);
  k = open_kms();
  if (!k)
    return;
  uint64_t size = kh_tlog_size(k->log);
  CHECK_EQ(kh_kms_unwrap(k, acct2, &op_rq, &r), KH_ERR_DENIED);
  CHECK(r.key == NULL);
  CHECK_EQ(kh_tlog_size(k->log), size + 1); /* the attempt itself is logged */
  CHECK_OK(kh_kms_set_witnesses(k, 0, NULL, 0));
  CHECK_OK(kh_kms_unwrap(k, acct2, &op_rq, &r));
  CHECK(r.key && r.cosignatures == 0);
  kh_kms_release_clear(&r);
  kh_kms_free(k);
}

/* ---- kill -9 during unwraps and escrow attempts ------------------------------ */

typedef struct report {
  char kind;              /* 'U' release, 'A' judged escrow attempt */
  uint64_t index, size;
  uint8_t root[32];
  uint8_t key[32];
} report;

static int report_fd = -1;
static pthread_mutex_t report_mu = PTHREAD_MUTEX_INITIALIZER;

static void send_report(const report *r)
{
  pthread_mutex_lock(&report_mu);
  if (write(report_fd, r, sizeof *r) != (ssize_t)sizeof *r)
    _exit(3);
  pthread_mutex_unlock(&report_mu);
}

static void *crash_unwrapper(void *arg)
{
  kh_kms *k = arg;
  for (;;) {
    kh_kms_release r;
    if (kh_kms_unwrap(k, acct2, &op_rq, &r) == KH_OK) {
      report rep = {'U', r.index, r.size, {0}, {0}};
      memcpy(rep.root, r.root, 32);
      memcpy(rep.key, r.key, 32);
      send_report(&rep);
    }
    kh_kms_release_clear(&r);
  }
  return NULL;
}

static void *crash_escrow(void *arg)
{
  kh_kms *k = arg;
  kh_secret *good = kh_secret_new("crash pass", 10), *bad = kh_secret_new("nope", 4);
  for (unsigned i = 0;; i++) {
    kh_kms_release r;
    uint32_t left;
    kh_err e = kh_kms_escrow_recover(k, acct2, i % 3 ? bad : good, &op_rq, &r, &left);
    if (e == KH_OK || e == KH_ERR_PASSCODE) {
      report rep = {'A', r.index, r.size, {0}, {0}};
      send_report(&rep);
    }
    kh_kms_release_clear(&r);
  }
  return NULL;
}

static void test_kill9(void)
{
  kh_kms *k = open_kms();
  if (!k)
    return;
  kh_secret *good = kh_secret_new("crash pass", 10);
  CHECK_OK(kh_kms_escrow_enable(k, acct2, key2, 1, good, &op_rq));
  kh_secret_free(good);
  kh_kms_escrow_info in0;
  CHECK_OK(kh_kms_escrow_status(k, acct2, &in0));
  kh_kms_free(k);
  report *seen = NULL;
  size_t nseen = 0, cap = 0;
  uint64_t judged = 0;
  unsigned iters = getenv("KH_ASAN") ? 3 : 6;
  for (unsigned it = 0; it < iters; it++) {
    int pfd[2];
    if (pipe(pfd) != 0)
      return;
    pid_t pid = fork();
    if (pid == 0) {
      close(pfd[0]);
      report_fd = pfd[1];
      kh_kms *ck = NULL;
      if (kh_kms_open(region, &ck))
        _exit(2);
      char ready = 'R';
      if (write(pfd[1], &ready, 1) != 1)
        _exit(3);
      pthread_t th[5];
      for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, crash_unwrapper, ck);
      pthread_create(&th[4], NULL, crash_escrow, ck);
      for (;;)
        pause();
    }
    close(pfd[1]);
    char ready = 0;
    CHECK(read(pfd[0], &ready, 1) == 1 && ready == 'R');
    struct timespec d = {0, (long)(100 + randombytes_uniform(300)) * 1000000L};
    nanosleep(&d, NULL);
    kill(pid, SIGKILL);
    report rep;
    for (;;) {
      ssize_t got = read(pfd[0], &rep, sizeof rep);
      if (got != (ssize_t)sizeof rep)
        break;
      if (rep.kind == 'A') {
        judged++;
        continue;
      }
      if (nseen == cap) {
        cap = cap ? 2 * cap : 256;
        seen = realloc(seen, cap * sizeof *seen);
      }
      seen[nseen++] = rep;
    }
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
  }
  fprintf(stderr, "   %u kills: %zu releases and %llu escrow attempts reported\n", iters,
          nseen, (unsigned long long)judged);
  k = open_kms();
  if (!k)
    goto out;
  CHECK_OK(kh_tlog_verify(k->log, NULL, NULL));
  uint64_t size = kh_tlog_size(k->log);
  kh_log_hash root;
  kh_tlog_root(k->log, root);
  size_t missing = 0, inconsistent = 0, wrongkey = 0;
  for (size_t i = 0; i < nseen; i++) {
    report *r = &seen[i];
    uint8_t *e = NULL;
    size_t len = 0;
    kh_log_entry en;
    if (memcmp(r->key, key2, 32))
      wrongkey++;
    if (r->index >= size || r->size > size || kh_tlog_entry(k->log, r->index, &e, &len) ||
        kh_log_entry_parse(e, len, &en) || en.op != KH_LOG_OP_UNWRAP ||
        strcmp(en.account, acct2))
      missing++;
    free(e);
    kh_log_hash proof[KH_LOG_PROOF_MAX];
    size_t n = 0;
    if (r->size <= size && (kh_tlog_consistency_proof(k->log, r->size, size, proof, &n) ||
                            kh_log_verify_consistency(r->size, size, proof, n, r->root, root)))
      inconsistent++;
  }
  CHECK_EQ(missing, 0);
  CHECK_EQ(inconsistent, 0);
  CHECK_EQ(wrongkey, 0);
  kh_kms_escrow_info in;
  CHECK_OK(kh_kms_escrow_status(k, acct2, &in));
  CHECK(in.attempts - in0.attempts >= judged);
  CHECK(nseen > 0 && judged > 0);
  /* the log still takes appends */
  kh_kms_release r;
  CHECK_OK(kh_kms_unwrap(k, acct2, &op_rq, &r));
  CHECK(proof_ok(k, &r));
  kh_kms_release_clear(&r);
out:
  free(seen);
  kh_kms_free(k);
}

/* ---- benchmark (KH_KMS_BENCH=1) ---------------------------------------------- */

static int cmp_d(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void bench(void)
{
  CHECK_OK(kh_kms_create(region, "bench"));
  mark_account(acct1);
  kh_kms *k = open_kms();
  if (!k)
    return;
  CHECK_OK(kh_kms_wrap(k, acct1, key1, 2, &op_rq));
  int threads[] = {1, 8, 64, 256, 512};
  const char *only = getenv("KH_KMS_BENCH_THREADS");
  double secs = getenv("KH_KMS_BENCH_SECONDS") ? atof(getenv("KH_KMS_BENCH_SECONDS")) : 2.0;
  printf("%-8s %12s %10s %10s %10s %8s\n", "threads", "unwraps/s", "p50 ms", "p99 ms",
         "batches", "avg/batch");
  for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
    int T = threads[ti];
    if (only && atoi(only) != T)
      continue;
    /* calibrate: each thread does N unwraps; N chosen from a short trial */
    int N = (int)(secs * 12000 / T) + 5;
    if (T == 1)
      N = (int)(secs * 1000);
    pthread_t *th = calloc((size_t)T, sizeof *th);
    struct worker *w = calloc((size_t)T, sizeof *w);
    double *lat = calloc((size_t)T * (size_t)N, sizeof *lat);
    uint64_t b0, e0, b1, e1;
    kh_kms_stats(k, &b0, &e0);
    double t0 = now();
    for (int i = 0; i < T; i++) {
      w[i] = (struct worker){k, N, 0, acct1, key1, lat + (size_t)i * N};
      pthread_create(&th[i], NULL, worker_run, &w[i]);
    }
    int bad = 0;
    for (int i = 0; i < T; i++) {
      pthread_join(th[i], NULL);
      bad += w[i].bad;
    }
    double el = now() - t0;
    kh_kms_stats(k, &b1, &e1);
    size_t total = (size_t)T * (size_t)N;
    qsort(lat, total, sizeof *lat, cmp_d);
    printf("%-8d %12.0f %10.2f %10.2f %10llu %8.1f\n", T, (double)total / el,
           lat[total / 2] * 1e3, lat[total * 99 / 100] * 1e3, (unsigned long long)(b1 - b0),
           (double)(e1 - e0) / (double)(b1 - b0));
    fflush(stdout);
    CHECK_EQ(bad, 0);
    free(th);
    free(w);
    free(lat);
  }
  CHECK_OK(kh_tlog_verify(k->log, NULL, NULL));
  kh_kms_free(k);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  const char *base = getenv("TMPDIR");
  snprintf(tmp, sizeof tmp, "%s/kh-kms-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmp)) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(region, sizeof region, "%s/region", tmp);
  char op[300];
  snprintf(op, sizeof op, "%s/operator", tmp);
  setenv("KEYHOLD_OPERATOR_DIR", op, 1);
  unsetenv("KEYHOLD_OPERATOR_SECRET_FILE");
  unsetenv("KEYHOLD_PKCS11_MODULE");
  kh_mkdirs(region, 0700);
  randombytes_buf(key1, 32);
  randombytes_buf(key2, 32);
  if (getenv("KH_KMS_BENCH")) {
    bench();
  } else {
    RUN(test_create_wrap_unwrap);
    RUN(test_tampered_wrap);
    RUN(test_log_failure);
    RUN(test_group_commit);
    RUN(test_escrow);
    RUN(test_device_signature);
    RUN(test_rotate_destroy);
    RUN(test_witnesses);
    RUN(test_kill9);
  }
  int rc = kh_test_done("test_kms");
  kh_remove_tree(tmp);
  return rc;
}
