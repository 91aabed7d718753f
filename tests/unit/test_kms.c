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
#include <poll.h>
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

/* A device over the network: prepare, sign the exact entry, commit.  An
 * entry altered after it was signed, signed by another key, prepared for
 * another operation or account, or outside the time window is refused and
 * nothing is logged; the accepted one is appended byte for byte. */
static void presign(const char *entry, size_t len, const uint8_t *sk, uint8_t sig[64])
{
  kh_buf m;
  kh_buf_init(&m, 70000);
  kh_buf_append(&m, "keyhold-device-request v1\n", 26);
  kh_buf_append(&m, entry, len);
  crypto_sign_detached(sig, NULL, m.data, m.len, sk);
  kh_buf_release(&m);
}

static void test_presigned(void)
{
  kh_kms *k = open_kms();
  if (!k)
    return;
  uint8_t pk[32], sk[64], pk2[32], sk2[64], sig[64];
  crypto_sign_keypair(pk, sk);
  crypto_sign_keypair(pk2, sk2);
  const char *dev = "00112233445566778899aabbccddeeff";
  char *entry = NULL;
  size_t len = 0;
  CHECK_EQ(kh_kms_prepare(k, KH_LOG_OP_WRAP, acct1, dev, "r", &entry, &len), KH_ERR_INVAL);
  CHECK_OK(kh_kms_prepare(k, KH_LOG_OP_UNWRAP, acct1, dev, "lost my laptop", &entry, &len));
  if (!entry) {
    kh_kms_free(k);
    return;
  }
  CHECK(strstr(entry, "requester device:00112233445566778899aabbccddeeff\n") != NULL);
  CHECK(strstr(entry, "reason lost my laptop\n") != NULL);
  CHECK(strstr(entry, "\ndevice ") == NULL);
  presign(entry, len, sk, sig);
  uint64_t size0 = kh_tlog_size(k->log);
  kh_kms_presigned ps = {entry, len, dev, sig, pk};
    kh_kms_release r;

  /* altered between prepare and commit: the reason */
  char *alt = strdup(entry);
  char *at = strstr(alt, "lost my laptop");
  memcpy(at, "lost my tablet", 14);
  kh_kms_presigned pa = {alt, len, dev, sig, pk};
    CHECK_EQ(kh_kms_unwrap_signed(k, acct1, &pa, &r), KH_ERR_AUTH);
  CHECK(r.key == NULL);
  /* ...re-signed by the device after the alteration is fine, by another key not */
  uint8_t sig2[64];
  presign(alt, len, sk2, sig2);
  pa.sig = sig2;
  CHECK_EQ(kh_kms_unwrap_signed(k, acct1, &pa, &r), KH_ERR_AUTH);
  /* another key id in the entry (e.g. prepared before a rotation) */
  char *kp = strstr(alt, "key kms-wrap/");
  kp[13] = kp[13] == '0' ? '1' : '0';
  presign(alt, len, sk, sig2);
  CHECK_EQ(kh_kms_unwrap_signed(k, acct1, &pa, &r), KH_ERR_DENIED);
  /* the right entry for another operation or another account */
  CHECK_EQ(kh_kms_destroy_signed(k, acct1, &ps), KH_ERR_DENIED);
  CHECK_EQ(kh_kms_unwrap_signed(k, acct2, &ps, &r), KH_ERR_DENIED);
  /* another device id than the one the entry names */
  kh_kms_presigned pd = {entry, len, "00112233445566778899aabbccddeefe", sig, pk};
    CHECK_EQ(kh_kms_unwrap_signed(k, acct1, &pd, &r), KH_ERR_DENIED);
  CHECK_EQ(kh_tlog_size(k->log), size0);

  /* the one that matches: appended exactly, with the device line */
  CHECK_OK(kh_kms_unwrap_signed(k, acct1, &ps, &r));
  CHECK(r.key && !memcmp(r.key, key1, 32));
  CHECK_EQ(kh_tlog_size(k->log), size0 + 1);
  kh_log_entry en;
  CHECK_OK(kh_log_entry_parse(r.entry, r.entry_len, &en));
  CHECK_OK(kh_kms_verify_device_entry(&en, dev, pk));
  kh_log_entry plain = en;
  plain.device[0] = '\0';
  char *ptext = NULL;
  size_t plen = 0;
  CHECK_OK(kh_log_entry_format(&plain, &ptext, &plen));
  CHECK(plen == len && !memcmp(ptext, entry, len));
  free(ptext);
  kh_kms_release_clear(&r);

  /* an old entry (time outside the window) */
  kh_log_entry old;
  CHECK_OK(kh_log_entry_parse(entry, len, &old));
  old.time -= KH_KMS_PRESIGNED_WINDOW + 5;
  char *otext = NULL;
  size_t olen = 0;
  CHECK_OK(kh_log_entry_format(&old, &otext, &olen));
  presign(otext, olen, sk, sig2);
  kh_kms_presigned po = {otext, olen, dev, sig2, pk};
    CHECK_EQ(kh_kms_unwrap_signed(k, acct1, &po, &r), KH_ERR_DENIED);
  free(otext);

  /* escrow enable names the record chosen at prepare */
  char *ee = NULL;
  size_t eel = 0;
  CHECK_OK(kh_kms_prepare(k, KH_LOG_OP_ESCROW_ENABLE, acct2, dev, "escrow on", &ee, &eel));
  presign(ee, eel, sk, sig2);
  kh_kms_presigned pe = {ee, eel, dev, sig2, pk};
    kh_secret *pw = kh_secret_new("derived", 7);
  uint64_t s1 = kh_tlog_size(k->log);
  CHECK_OK(kh_kms_escrow_enable_signed(k, acct2, key2, 1, pw, &pe));
  CHECK_EQ(kh_tlog_size(k->log), s1 + 1);
  uint8_t *le = NULL;
  size_t lel = 0;
  CHECK_OK(kh_tlog_entry(k->log, s1, &le, &lel));
  CHECK(lel > eel && !memcmp(le, ee, eel - 1));
  free(le);
  kh_secret_free(pw);
  free(ee);
  free(alt);
  free(entry);
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
    /* the kill lands only after this child judged an escrow attempt and
     * released a key (however slow the machine), then at a random moment:
     * no fixed sleep that a busy machine can outrun */
    size_t seen0 = nseen;
    uint64_t judged0 = judged;
    bool killed = false;
    double deadline = now() + 120, kill_at = 0;
    report rep;
    for (;;) {
      if (!killed && nseen > seen0 && judged > judged0 && kill_at == 0)
        kill_at = now() + (double)randombytes_uniform(200) / 1000.0;
      if (!killed && ((kill_at > 0 && now() >= kill_at) || now() > deadline)) {
        kill(pid, SIGKILL);
        killed = true;
      }
      if (!killed) {
        struct pollfd pf = {pfd[0], POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0)
          continue;
      }
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
    CHECK(nseen > seen0 && judged > judged0); /* each child got that far */
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

/* ---- crash points: a kill at exactly the interesting step ------------------- */

static void kill_at_point(void *ctx, const char *point)
{
  if (!strcmp(point, (const char *)ctx))
    raise(SIGKILL);
}

/* In a child process: one escrow attempt with pass, killed by SIGKILL at
 * point.  true if the child really died there. */
static bool escrow_killed_at(const char *acct, const kh_secret *pass, const char *point)
{
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    kh_kms *ck = NULL;
    if (kh_kms_open(region, &ck))
      _exit(2);
    kh_kms_test_hook(ck, kill_at_point, (void *)point);
    kh_kms_release r;
    uint32_t left;
    kh_kms_escrow_recover(ck, acct, pass, &op_rq, &r, &left);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
}

static void wrong_attempts(kh_kms *k, const char *acct, const kh_secret *bad, int n)
{
  for (int i = 0; i < n; i++) {
    kh_kms_release r;
    uint32_t left = 0;
    CHECK_EQ(kh_kms_escrow_recover(k, acct, bad, &op_rq, &r, &left), KH_ERR_PASSCODE);
  }
}

static void test_escrow_crash_points(void)
{
  const char *acct = "c0ffee00c0ffee00c0ffee00c0ffee00";
  kh_secret *good = kh_secret_new("right words", 11), *bad = kh_secret_new("guess", 5);
  kh_kms_release r;
  uint32_t left = 0;
  kh_kms_escrow_info in;
  kh_kms *k = open_kms();
  if (!k)
    goto out;
  CHECK_OK(kh_kms_escrow_enable(k, acct, key1, 2, good, &op_rq));
  /* killed before the 10th attempt is counted: nothing spent */
  wrong_attempts(k, acct, bad, 9);
  kh_kms_free(k);
  CHECK(escrow_killed_at(acct, bad, "escrow-before-counter"));
  k = open_kms();
  if (!k)
    goto out;
  CHECK_OK(kh_kms_escrow_status(k, acct, &in));
  CHECK(in.present && !in.destroyed && in.failed == 9 && in.attempts == 9);
  CHECK_OK(kh_kms_escrow_recover(k, acct, good, &op_rq, &r, &left));
  CHECK(r.key && !memcmp(r.key, key1, 32));
  kh_kms_release_clear(&r);
  CHECK_OK(kh_kms_escrow_status(k, acct, &in));
  CHECK(in.failed == 0 && in.attempts == 10); /* a right guess resets the counter */
  /* killed after the 10th attempt is counted, before it is judged: that was
   * the last guess; the restart finds the same count and destroys */
  wrong_attempts(k, acct, bad, 9);
  kh_kms_free(k);
  CHECK(escrow_killed_at(acct, bad, "escrow-counter-written"));
  k = open_kms();
  if (!k)
    goto out;
  CHECK_OK(kh_kms_escrow_status(k, acct, &in));
  CHECK(in.failed == 10 && in.attempts == 20);
  CHECK_EQ(kh_kms_escrow_recover(k, acct, good, &op_rq, &r, &left), KH_ERR_DENIED);
  CHECK(r.key == NULL);
  CHECK_OK(kh_kms_escrow_status(k, acct, &in));
  CHECK(in.destroyed && !in.present && in.attempts == 20);
  /* killed after the destruction is durable, before the answer */
  CHECK_OK(kh_kms_escrow_enable(k, acct, key1, 2, good, &op_rq));
  wrong_attempts(k, acct, bad, 9);
  kh_kms_free(k);
  CHECK(escrow_killed_at(acct, bad, "escrow-destroyed"));
  k = open_kms();
  if (!k)
    goto out;
  CHECK_OK(kh_kms_escrow_status(k, acct, &in));
  CHECK(in.destroyed && !in.present && in.failed == 10 && in.attempts == 30);
  CHECK_EQ(kh_kms_escrow_recover(k, acct, good, &op_rq, &r, &left), KH_ERR_DENIED);
  CHECK(r.key == NULL);
  /* killed between the destroyed counter and the record's removal */
  CHECK_OK(kh_kms_escrow_enable(k, acct, key1, 2, good, &op_rq));
  wrong_attempts(k, acct, bad, 9);
  kh_kms_free(k);
  CHECK(escrow_killed_at(acct, bad, "escrow-destroy-counted"));
  k = open_kms();
  if (!k)
    goto out;
  CHECK_EQ(kh_kms_escrow_recover(k, acct, good, &op_rq, &r, &left), KH_ERR_DENIED);
  CHECK(r.key == NULL);
  CHECK_OK(kh_kms_escrow_status(k, acct, &in));
  CHECK(in.destroyed && !in.present && in.attempts == 40);
out:
  kh_kms_free(k);
  kh_secret_free(good);
  kh_secret_free(bad);
}

/* ---- races: unwrap against destroy, escrow against everything else ----------- */

static struct gate {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state;          /* 0 armed, 1 paused at the point, 2 passed it */
  bool go;
  const char *point;
  int hold_ms;        /* how long the paused thread waits for go at most */
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false, NULL, 0};

static void gate_arm(const char *point, int hold_ms)
{
  pthread_mutex_lock(&gate.mu);
  gate.state = 0;
  gate.go = false;
  gate.point = point;
  gate.hold_ms = hold_ms;
  pthread_mutex_unlock(&gate.mu);
}

/* The first thread to reach gate.point pauses there (until go, or hold_ms). */
static void gate_hook(void *ctx, const char *point)
{
  (void)ctx;
  pthread_mutex_lock(&gate.mu);
  if (gate.point && !strcmp(point, gate.point) && gate.state == 0) {
    gate.state = 1;
    pthread_cond_broadcast(&gate.cv);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += gate.hold_ms / 1000;
    dl.tv_nsec += (long)(gate.hold_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
      dl.tv_sec++;
      dl.tv_nsec -= 1000000000L;
    }
    while (!gate.go && pthread_cond_timedwait(&gate.cv, &gate.mu, &dl) == 0)
      ;
    gate.state = 2;
    pthread_cond_broadcast(&gate.cv);
  }
  pthread_mutex_unlock(&gate.mu);
}

static void gate_wait_paused(void)
{
  pthread_mutex_lock(&gate.mu);
  while (gate.state == 0)
    pthread_cond_wait(&gate.cv, &gate.mu);
  pthread_mutex_unlock(&gate.mu);
}

static int gate_state(void)
{
  pthread_mutex_lock(&gate.mu);
  int s = gate.state;
  pthread_mutex_unlock(&gate.mu);
  return s;
}

static void gate_open(void)
{
  pthread_mutex_lock(&gate.mu);
  gate.go = true;
  pthread_cond_broadcast(&gate.cv);
  pthread_mutex_unlock(&gate.mu);
}

typedef struct race_unwrap {
  kh_kms *k;
  const char *acct;
  kh_err e;
  uint64_t index;
  bool keyok;
} race_unwrap;

static void *race_unwrapper(void *arg)
{
  race_unwrap *u = arg;
  kh_kms_release r;
  u->e = kh_kms_unwrap(u->k, u->acct, &op_rq, &r);
  u->index = r.index;
  u->keyok = r.key && !memcmp(r.key, key2, 32);
  kh_kms_release_clear(&r);
  return NULL;
}

/* Index of the last entry with op for account, or UINT64_MAX. */
static uint64_t last_entry(kh_kms *k, kh_log_op op, const char *acct)
{
  uint64_t found = UINT64_MAX;
  for (uint64_t i = 0; i < kh_tlog_size(k->log); i++) {
    uint8_t *e = NULL;
    size_t len = 0;
    kh_log_entry en;
    if (kh_tlog_entry(k->log, i, &e, &len) == KH_OK && kh_log_entry_parse(e, len, &en) == KH_OK &&
        en.op == op && !strcmp(en.account, acct))
      found = i;
    free(e);
  }
  return found;
}

/* An unwrap that passed its destroyed check when a destroy starts: either its
 * entry comes before the destroy's, or it releases nothing. */
static void test_unwrap_destroy_race(void)
{
  const char *acct = "d00dd00dd00dd00dd00dd00dd00dd00d";
  mark_account(acct);
  kh_kms *k = open_kms();
  if (!k)
    return;
  CHECK_OK(kh_kms_wrap(k, acct, key2, 1, &op_rq));
  gate_arm("unwrap-before-log", 500);
  kh_kms_test_hook(k, gate_hook, NULL);
  race_unwrap u = {k, acct, KH_OK, 0, false};
  pthread_t th;
  pthread_create(&th, NULL, race_unwrapper, &u);
  gate_wait_paused();                    /* the unwrap holds the key, not yet logged */
  CHECK_OK(kh_kms_destroy(k, acct, &op_rq));
  gate_open();
  pthread_join(th, NULL);
  kh_kms_test_hook(k, NULL, NULL);
  uint64_t d = last_entry(k, KH_LOG_OP_DESTROY, acct), un = last_entry(k, KH_LOG_OP_UNWRAP, acct);
  CHECK(d != UINT64_MAX);
  if (u.e == KH_OK) {
    CHECK(u.keyok);
    CHECK(u.index == un && un < d);      /* released before the destroy entry */
  } else {
    CHECK_EQ(u.e, KH_ERR_STATE);
    CHECK(un == UINT64_MAX || un < d);
  }
  kh_kms_release r;
  CHECK_EQ(kh_kms_unwrap(k, acct, &op_rq, &r), KH_ERR_STATE);
  kh_kms_free(k);
}

typedef struct race_escrow {
  kh_kms *k;
  const char *acct;
  const kh_secret *pass;
  kh_err e;
} race_escrow;

static void *race_escrower(void *arg)
{
  race_escrow *x = arg;
  kh_kms_release r;
  uint32_t left;
  x->e = kh_kms_escrow_recover(x->k, x->acct, x->pass, &op_rq, &r, &left);
  kh_kms_release_clear(&r);
  return NULL;
}

/* An escrow attempt in progress (Argon2id) does not hold up other accounts. */
static void test_escrow_not_global(void)
{
  const char *a = "e5c0e5c0e5c0e5c0e5c0e5c0e5c0e5c0";
  char b[33] = "e5c0e5c0e5c0e5c0e5c0e5c0e5c0e5c1";
  kh_kms *k = open_kms();
  if (!k)
    return;
  /* another stripe for b */
  for (char c = '1'; c <= '9' && kh_kms_escrow_lock(k, a) == kh_kms_escrow_lock(k, b); c++)
    b[31] = c;
  kh_secret *good = kh_secret_new("pa", 2);
  CHECK_OK(kh_kms_escrow_enable(k, a, key1, 2, good, &op_rq));
  CHECK_OK(kh_kms_escrow_enable(k, b, key2, 1, good, &op_rq));
  gate_arm("escrow-attempt-logged", 3000);
  kh_kms_test_hook(k, gate_hook, NULL);
  race_escrow x = {k, a, good, KH_OK};
  pthread_t th;
  pthread_create(&th, NULL, race_escrower, &x);
  gate_wait_paused();                    /* a's attempt is counted, logged, not judged */
  kh_kms_escrow_info in;
  CHECK_OK(kh_kms_escrow_status(k, b, &in));
  CHECK(in.present && in.failed == 0);
  CHECK_EQ(gate_state(), 1);             /* ... and still in progress */
  kh_secret *pw = kh_secret_new("other", 5);
  CHECK_OK(kh_kms_escrow_enable(k, b, key2, 1, pw, &op_rq));
  CHECK_EQ(gate_state(), 1);
  gate_open();
  pthread_join(th, NULL);
  kh_kms_test_hook(k, NULL, NULL);
  CHECK_OK(x.e);
  kh_secret_free(pw);
  kh_secret_free(good);
  kh_kms_free(k);
}

/* ---- the log rolled back underneath the service --------------------------------- */

static void test_log_rollback(void)
{
  const char *acct = "10ba10ba10ba10ba10ba10ba10ba10ba";
  char cp[400], old[400], cur[400];
  uint8_t *data = NULL;
  size_t len = 0;
  snprintf(cp, sizeof cp, "%s/log/checkpoint", region);
  snprintf(old, sizeof old, "%s/checkpoint.old", tmp);
  snprintf(cur, sizeof cur, "%s/checkpoint.cur", tmp);
  mark_account(acct);
  kh_kms *k = open_kms();
  if (!k)
    return;
  kh_kms_release r;
  CHECK_OK(kh_kms_wrap(k, acct, key1, 2, &op_rq));
  CHECK_OK(kh_kms_unwrap(k, acct, &op_rq, &r));
  kh_kms_release_clear(&r);
  CHECK_OK(kh_read_file(cp, 1 << 16, &data, &len));
  CHECK_OK(kh_write_file_atomic(old, data, len, 0600, false));
  free(data);
  for (int i = 0; i < 3; i++) {
    CHECK_OK(kh_kms_unwrap(k, acct, &op_rq, &r));
    kh_kms_release_clear(&r);
  }
  CHECK_OK(kh_read_file(cp, 1 << 16, &data, &len));
  CHECK_OK(kh_write_file_atomic(cur, data, len, 0600, false));
  free(data);
  /* while the service runs: its checkpoint is replaced by an older one */
  CHECK_OK(kh_read_file(old, 1 << 16, &data, &len));
  CHECK_OK(kh_write_file_atomic(cp, data, len, 0644, false));
  free(data);
  CHECK_EQ(kh_kms_unwrap(k, acct, &op_rq, &r), KH_ERR_ROLLBACK);
  CHECK(r.key == NULL);
  kh_secret *pw = kh_secret_new("pw", 2);
  CHECK_EQ(kh_kms_escrow_enable(k, acct, key1, 2, pw, &op_rq), KH_ERR_ROLLBACK);
  kh_kms_free(k);
  /* a restart over the older log refuses too (the service's own record) */
  k = open_kms();
  if (k) {
    uint64_t size = kh_tlog_size(k->log);
    CHECK_EQ(kh_kms_unwrap(k, acct, &op_rq, &r), KH_ERR_ROLLBACK);
    CHECK(r.key == NULL);
    CHECK_EQ(kh_kms_destroy(k, acct, &op_rq), KH_ERR_ROLLBACK);
    CHECK_EQ(kh_tlog_size(k->log), size); /* nothing appended */
    CHECK(strstr(kh_errdetail(), "rolled back") != NULL);
    kh_kms_free(k);
  }
  /* the operator puts the newest checkpoint back: the service resumes */
  CHECK_OK(kh_read_file(cur, 1 << 16, &data, &len));
  CHECK_OK(kh_write_file_atomic(cp, data, len, 0644, false));
  free(data);
  k = open_kms();
  if (k) {
    CHECK_OK(kh_kms_unwrap(k, acct, &op_rq, &r));
    CHECK(r.key && !memcmp(r.key, key1, 32) && proof_ok(k, &r));
    kh_kms_release_clear(&r);
    kh_kms_free(k);
  }
  kh_secret_free(pw);
}

/* ---- fault injection: every allocation and write of each operation ------------- */

typedef kh_err (*fault_op)(kh_kms *k, const char *acct);

static kh_secret *f_good, *f_bad;

static kh_err op_unwrap(kh_kms *k, const char *acct)
{
  kh_kms_release r;
  kh_err e = kh_kms_unwrap(k, acct, &op_rq, &r);
  if (!e && (!r.key || memcmp(r.key, key1, 32)))
    e = KH_ERR_AUTH;
  kh_kms_release_clear(&r);
  return e;
}

static kh_err op_escrow_right(kh_kms *k, const char *acct)
{
  kh_kms_release r;
  uint32_t left;
  kh_err e = kh_kms_escrow_recover(k, acct, f_good, &op_rq, &r, &left);
  if (!e && (!r.key || memcmp(r.key, key1, 32)))
    e = KH_ERR_AUTH;
  kh_kms_release_clear(&r);
  return e;
}

static kh_err op_escrow_wrong(kh_kms *k, const char *acct)
{
  kh_kms_release r;
  uint32_t left;
  kh_err e = kh_kms_escrow_recover(k, acct, f_bad, &op_rq, &r, &left);
  kh_kms_release_clear(&r);
  return e == KH_ERR_PASSCODE ? KH_OK : e ? e : KH_ERR_AUTH;
}

static kh_err op_escrow_enable(kh_kms *k, const char *acct)
{
  return kh_kms_escrow_enable(k, acct, key1, 2, f_good, &op_rq);
}

static kh_err op_rotate(kh_kms *k, const char *acct)
{
  (void)acct;
  return kh_kms_rotate(k, &op_rq, NULL);
}

static kh_err op_destroy(kh_kms *k, const char *acct)
{
  return kh_kms_destroy(k, acct, &op_rq);
}

/* After a failed operation the account still works (or, for destroy, is
 * either intact or destroyed for good), and its escrow counter is sane. */
static void check_usable(kh_kms *k, const char *acct, uint64_t *attempts, bool destroying)
{
  kh_kms_release r;
  kh_err e = kh_kms_unwrap(k, acct, &op_rq, &r);
  bool gone = false;
  kh_kms_account_destroyed(region, acct, &gone);
  if (destroying && gone)
    CHECK_EQ(e, KH_ERR_STATE);
  else
    CHECK(e == KH_OK && r.key && !memcmp(r.key, key1, 32));
  kh_kms_release_clear(&r);
  kh_kms_escrow_info in;
  CHECK_OK(kh_kms_escrow_status(k, acct, &in));
  CHECK(in.attempts >= *attempts && in.failed < KH_KMS_ESCROW_LIMIT && !in.destroyed);
  *attempts = in.attempts;
  if (in.failed >= 5) { /* keep the wrong-passcode loops off the limit */
    CHECK_OK(op_escrow_right(k, acct));
  }
}

static void test_faults(void)
{
  const char *acct = "fa017fa017fa017fa017fa017fa017fa";
  static const struct { const char *name; fault_op fn; } ops[] = {
    {"unwrap", op_unwrap},           {"escrow right", op_escrow_right},
    {"escrow wrong", op_escrow_wrong}, {"escrow enable", op_escrow_enable},
    {"rotate", op_rotate},           {"destroy", op_destroy},
  };
  f_good = kh_secret_new("fault pass", 10);
  f_bad = kh_secret_new("not it", 6);
  mark_account(acct);
  kh_kms *k = open_kms();
  if (!k)
    goto out;
  CHECK_OK(kh_kms_wrap(k, acct, key1, 2, &op_rq));
  CHECK_OK(kh_kms_escrow_enable(k, acct, key1, 2, f_good, &op_rq));
  uint64_t attempts = 0;
  unsigned failures = 0;
  for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
    for (int kind = 0; kind < 2; kind++) {
      bool destroying = ops[o].fn == op_destroy;
      if (destroying && kind == 1)
        break; /* destroy runs once per kind below */
      unsigned n;
      for (n = 1; n < 400; n++) {
        kh_kms_test_fault(k, destroying ? 0 : kind, n);
        kh_err e = ops[o].fn(k, acct);
        kh_kms_test_fault(k, 0, 0);
        kh_kms_test_fault(k, 1, 0);
        if (e == KH_OK)
          break;
        failures++;
        if (e != KH_ERR_NOMEM && e != KH_ERR_IO && e != KH_ERR_LOG) {
          fprintf(stderr, "   %s, %s fault %u: unexpected %s (%s)\n", ops[o].name,
                  kind ? "write" : "alloc", n, kh_strerror(e), kh_errdetail());
          CHECK(false);
        }
        check_usable(k, acct, &attempts, destroying);
      }
      CHECK(n < 400);
    }
  }
  /* destroy under write faults, on a second account */
  {
    const char *acct2w = "fa027fa027fa027fa027fa027fa027fa";
    mark_account(acct2w);
    CHECK_OK(kh_kms_wrap(k, acct2w, key1, 2, &op_rq));
    uint64_t a2 = 0;
    unsigned n;
    for (n = 1; n < 400; n++) {
      kh_kms_test_fault(k, 1, n);
      kh_err e = op_destroy(k, acct2w);
      kh_kms_test_fault(k, 1, 0);
      if (e == KH_OK)
        break;
      failures++;
      CHECK(e == KH_ERR_IO || e == KH_ERR_LOG);
      check_usable(k, acct2w, &a2, true);
    }
    CHECK(n < 400);
    CHECK_EQ(op_unwrap(k, acct2w), KH_ERR_STATE);
  }
  CHECK_EQ(op_unwrap(k, acct), KH_ERR_STATE);
  CHECK(failures > 20);
  fprintf(stderr, "   %u injected failures, each left the account usable\n", failures);
out:
  kh_kms_free(k);
  kh_secret_free(f_good);
  kh_secret_free(f_bad);
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
    RUN(test_presigned);
    RUN(test_rotate_destroy);
    RUN(test_witnesses);
    RUN(test_kill9);
    RUN(test_escrow_crash_points);
    RUN(test_unwrap_destroy_race);
    RUN(test_escrow_not_global);
    RUN(test_log_rollback);
    RUN(test_faults);
  }
  int rc = kh_test_done("test_kms");
  kh_remove_tree(tmp);
  return rc;
}
