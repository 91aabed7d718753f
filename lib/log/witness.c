/* A witness: checks that each new checkpoint of a log is consistent with
 * the last one it cosigned, then cosigns it (docs/log.md §7).
 *
 * State directory:
 *   key                      PRIVATE+KEY+<name>+<hash>+base64(0x04 || seed), 0600
 *   vkey                     <name>+<hash>+base64(0x04 || pubkey)
 *   logs/<hex sha256(origin)>/origin      the origin line
 *   logs/<hex sha256(origin)>/key         the log's verifier key
 *   logs/<hex sha256(origin)>/checkpoint  the last checkpoint cosigned
 *   lock                     flock(2)ed across every read-check-write
 *
 * Every change of state (add-log, cosign) holds the lock from reading the
 * state to writing it back (temp file, fsync, rename, directory fsync), so
 * two concurrent requests cannot both check against one old state and the
 * later writer roll the earlier one back (docs/log.md §7).  flock locks
 * belong to an open file description, so they also order threads of one
 * process; a process-wide mutex is taken first all the same, so threads
 * never depend on that detail of the kernel. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syncfs, strndup, gmtime_r */
#endif
#include "log/log_internal.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/hex.h"
#include "crypto/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct kh_witness {
  char *dir;
  kh_note_signer *signer;
  char *vkey;
};

typedef struct log_state {
  kh_note_verifier *v;
  bool have;                 /* a checkpoint was cosigned before */
  uint64_t size;
  kh_log_hash root;
  char *logdir;              /* state subdirectory */
} log_state;

static void log_state_release(log_state *s)
{
  kh_note_verifier_free(s->v);
  free(s->logdir);
  memset(s, 0, sizeof *s);
}

static pthread_mutex_t state_mutex = PTHREAD_MUTEX_INITIALIZER;

/* Take the witness state lock (process mutex, then flock on dir/lock).
 * *fd is the lock's descriptor; release with state_unlock. */
static kh_err state_lock(const kh_witness *w, int *fd)
{
  kh_err e = KH_OK;
  char *lp = kh_path_join(w->dir, "lock");
  *fd = -1;
  if (!lp)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  pthread_mutex_lock(&state_mutex);
  int f = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (f < 0) {
    e = kh_seterr(kh_errno_code(errno), "open %s: %s", lp, strerror(errno));
    goto out;
  }
  while (flock(f, LOCK_EX) != 0) {
    if (errno != EINTR) {
      e = kh_seterr(kh_errno_code(errno), "lock %s: %s", lp, strerror(errno));
      close(f);
      goto out;
    }
  }
  *fd = f;
out:
  if (e)
    pthread_mutex_unlock(&state_mutex);
  free(lp);
  return e;
}

static void state_unlock(int fd)
{
  if (fd < 0)
    return;
  close(fd); /* releases the flock */
  pthread_mutex_unlock(&state_mutex);
}

static bool origin_ok(const char *o, size_t n)
{
  return n > 0 && n <= KH_CHECKPOINT_ORIGIN_MAX && kh_utf8_ok((const uint8_t *)o, n, false);
}

static char *log_dir(const kh_witness *w, const char *origin, size_t olen)
{
  uint8_t h[32];
  char rel[5 + 64 + 1];
  crypto_hash_sha256(h, (const uint8_t *)origin, olen);
  memcpy(rel, "logs/", 5);
  kh_hex_encode(rel + 5, h, 32);
  return kh_path_join(w->dir, rel);
}

static char *read_line(const char *dir, const char *name, kh_err *e)
{
  char *p = kh_path_join(dir, name);
  uint8_t *data = NULL;
  size_t len = 0;
  if (!p) {
    *e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  *e = kh_read_file(p, 4096, &data, &len);
  free(p);
  if (*e)
    return NULL;
  while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
    len--;
  data[len] = '\0';
  return (char *)data;
}

kh_err kh_witness_init(const char *state_dir, const char *name, char **vkey)
{
  kh_err e;
  kh_secret *sk = NULL;
  char *kp = NULL, *vp = NULL, *vk = NULL;
  *vkey = NULL;
  if ((e = kh_mkdirs(state_dir, 0700)))
    return e;
  if (!(kp = kh_path_join(state_dir, "key")) || !(vp = kh_path_join(state_dir, "vkey"))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  struct stat st;
  if (stat(kp, &st) == 0) {
    e = kh_seterr(KH_ERR_EXISTS, "witness key %s already exists", kp);
    goto out;
  }
  if ((e = kh_note_keygen(name, KH_NOTE_ALG_COSIG_V1, &sk, &vk)))
    goto out;
  if ((e = kh_write_file_atomic(kp, sk->bytes, sk->len, 0600, true)))
    goto out;
  size_t vl = strlen(vk);
  vk[vl] = '\n'; /* write with a newline, then restore */
  e = kh_write_file_atomic(vp, vk, vl + 1, 0644, false);
  vk[vl] = '\0';
  if (e)
    goto out;
  *vkey = vk;
  vk = NULL;
out:
  kh_secret_free(sk);
  free(kp);
  free(vp);
  free(vk);
  return e;
}

kh_err kh_witness_open(const char *state_dir, kh_witness **out)
{
  kh_err e;
  kh_witness *w = NULL;
  kh_secret *sk = NULL;
  char *kp = NULL;
  *out = NULL;
  if (!(w = calloc(1, sizeof *w)) || !(w->dir = strdup(state_dir)) ||
      !(kp = kh_path_join(state_dir, "key"))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((e = kh_secret_from_file(kp, &sk))) {
    kh_adderr(e, "witness state %s", state_dir);
    goto out;
  }
  if ((e = kh_note_signer_new((const char *)sk->bytes, &w->signer)))
    goto out;
  if ((e = kh_note_signer_vkey(w->signer, &w->vkey)))
    goto out;
  *out = w;
  w = NULL;
out:
  kh_secret_free(sk);
  free(kp);
  kh_witness_free(w);
  return e;
}

void kh_witness_free(kh_witness *w)
{
  if (!w)
    return;
  kh_note_signer_free(w->signer);
  free(w->vkey);
  free(w->dir);
  free(w);
}

const char *kh_witness_vkey(const kh_witness *w) { return w->vkey; }

kh_err kh_witness_add_log(kh_witness *w, const char *origin, const char *vkey)
{
  kh_err e;
  kh_note_verifier *v = NULL;
  char *d = NULL, *old = NULL, *kp = NULL, *op = NULL, *line = NULL;
  int lockfd = -1;
  size_t olen = origin ? strlen(origin) : 0;
  if (!origin_ok(origin, olen) || !vkey)
    return kh_seterr(KH_ERR_INVAL, "bad log origin or key");
  if ((e = kh_note_verifier_new(vkey, &v)))
    return e;
  if (kh_note_verifier_alg(v) != KH_NOTE_ALG_ED25519) {
    e = kh_seterr(KH_ERR_INVAL, "a log key must be an Ed25519 (0x01) note key");
    goto out;
  }
  if (!(d = log_dir(w, origin, olen))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((e = state_lock(w, &lockfd)))
    goto out;
  if ((old = read_line(d, "key", &e))) {
    if (strcmp(old, vkey) != 0)
      e = kh_seterr(KH_ERR_EXISTS, "origin %s is already configured with another key", origin);
    goto out;
  }
  if (e != KH_ERR_NOTFOUND)
    goto out;
  if ((e = kh_mkdirs(d, 0700)))
    goto out;
  if (!(kp = kh_path_join(d, "key")) || !(op = kh_path_join(d, "origin")) ||
      !(line = malloc(strlen(vkey) + olen + 2))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  snprintf(line, olen + 2, "%s\n", origin);
  if ((e = kh_write_file_atomic(op, line, olen + 1, 0644, false)))
    goto out;
  snprintf(line, strlen(vkey) + 2, "%s\n", vkey);
  e = kh_write_file_atomic(kp, line, strlen(vkey) + 1, 0644, false);
out:
  state_unlock(lockfd);
  kh_note_verifier_free(v);
  free(d);
  free(old);
  free(kp);
  free(op);
  free(line);
  return e;
}

/* Load what the witness knows about origin. */
static kh_err load_state(kh_witness *w, const char *origin, size_t olen, log_state *s)
{
  kh_err e;
  char *vk = NULL, *cpp = NULL;
  uint8_t *note = NULL;
  size_t nlen = 0;
  kh_checkpoint c;
  memset(s, 0, sizeof *s);
  if (!origin_ok(origin, olen))
    return kh_seterr(KH_ERR_FORMAT, "bad checkpoint origin");
  if (!(s->logdir = log_dir(w, origin, olen)))
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (!(vk = read_line(s->logdir, "key", &e))) {
    if (e == KH_ERR_NOTFOUND)
      e = kh_seterr(KH_ERR_NOTFOUND, "the witness does not know the log \"%.*s\" "
                    "(add it with its key first)", (int)olen, origin);
    goto out;
  }
  if ((e = kh_note_verifier_new(vk, &s->v)))
    goto out;
  crypto_hash_sha256(s->root, NULL, 0);
  if (!(cpp = kh_path_join(s->logdir, "checkpoint"))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  e = kh_read_file(cpp, KH_NOTE_MAX, &note, &nlen);
  if (e == KH_ERR_NOTFOUND) {
    e = KH_OK;
    goto out;
  }
  if (e)
    goto out;
  if ((e = kh_checkpoint_open(note, nlen, s->v, &c, NULL))) {
    kh_adderr(e, "witness state %s", cpp);
    goto out;
  }
  s->have = true;
  s->size = c.size;
  memcpy(s->root, c.root, KH_LOG_HASH);
out:
  free(vk);
  free(cpp);
  free(note);
  if (e)
    log_state_release(s);
  return e;
}

static size_t first_line(const void *p, size_t len)
{
  const char *nl = memchr(p, '\n', len);
  return nl ? (size_t)(nl - (const char *)p) : 0;
}

kh_err kh_witness_last(kh_witness *w, const char *origin, uint64_t *size, kh_log_hash root)
{
  log_state s;
  kh_err e = load_state(w, origin, strlen(origin), &s);
  *size = 0;
  if (e)
    return e;
  *size = s.size;
  memcpy(root, s.root, KH_LOG_HASH);
  log_state_release(&s);
  return KH_OK;
}

/* Check note against the state s (loaded under the lock) and, if it is
 * consistent, persist it and return it with the cosignature appended.  The
 * caller holds the state lock. */
static kh_err cosign_locked(kh_witness *w, log_state *s, const char *origin,
                            const void *note, size_t note_len, const kh_log_hash *proof,
                            size_t plen, uint64_t now, char **out, size_t *len)
{
  kh_err e;
  kh_checkpoint c;
  size_t tlen = 0;
  char *line = NULL, *cpp = NULL, *res = NULL;
  if ((e = kh_checkpoint_open(note, note_len, s->v, &c, &tlen))) {
    kh_adderr(e, "checkpoint of %s", origin);
    goto out;
  }
  if (strcmp(c.origin, origin) != 0) {
    e = kh_seterr(KH_ERR_FORMAT, "checkpoint origin does not match %s", origin);
    goto out;
  }
  if (c.size < s->size) {
    e = kh_seterr(KH_ERR_INVALID_PROOF, "log %s went back from size %llu to %llu: refusing",
                  origin, (unsigned long long)s->size, (unsigned long long)c.size);
    goto out;
  }
  if ((e = kh_log_verify_consistency(s->size, c.size, proof, plen, s->root, c.root))) {
    kh_adderr(e, "log %s, size %llu -> %llu: refusing", origin,
              (unsigned long long)s->size, (unsigned long long)c.size);
    goto out;
  }
  if ((e = kh_cosig_sign(note, tlen, w->signer, now, &line)))
    goto out;
  if (!(cpp = kh_path_join(s->logdir, "checkpoint"))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  /* remember it (durably) before handing out the cosignature */
  if ((e = kh_write_file_atomic(cpp, note, note_len, 0644, false)))
    goto out;
  size_t ll = strlen(line);
  if (!(res = malloc(note_len + ll + 1))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  memcpy(res, note, note_len);
  memcpy(res + note_len, line, ll + 1);
  *out = res;
  *len = note_len + ll;
  res = NULL;
out:
  free(line);
  free(cpp);
  free(res);
  return e;
}

kh_err kh_witness_cosign(kh_witness *w, const void *note, size_t note_len,
                         const kh_log_hash *proof, size_t plen, uint64_t now,
                         char **out, size_t *len)
{
  kh_err e;
  log_state s;
  int lockfd = -1;
  bool have_state = false;
  char origin[KH_CHECKPOINT_ORIGIN_MAX + 1];
  *out = NULL;
  *len = 0;
  if (note_len > KH_NOTE_MAX)
    return kh_seterr(KH_ERR_TOOBIG, "checkpoint note too large");
  size_t olen = first_line(note, note_len);
  if (!olen || olen > KH_CHECKPOINT_ORIGIN_MAX)
    return kh_seterr(KH_ERR_FORMAT, "checkpoint: bad origin line");
  memcpy(origin, note, olen);
  origin[olen] = '\0';
  if ((e = state_lock(w, &lockfd)))
    return e;
  if ((e = load_state(w, origin, olen, &s)))
    goto out;
  have_state = true;
  e = cosign_locked(w, &s, origin, note, note_len, proof, plen, now, out, len);
out:
  if (have_state)
    log_state_release(&s);
  state_unlock(lockfd);
  return e;
}

kh_err kh_witness_cosign_dir(kh_witness *w, const char *log_dir_path, uint64_t now,
                             char **out, size_t *len)
{
  kh_err e;
  log_state s;
  kh_tlog *log = NULL;
  uint8_t *raw = NULL;
  size_t rlen = 0, plen = 0;
  char *cpp = NULL;
  kh_log_hash proof[KH_LOG_PROOF_MAX];
  char origin[KH_CHECKPOINT_ORIGIN_MAX + 1];
  bool have_state = false;
  int lockfd = -1;
  *out = NULL;
  *len = 0;
  if (!(cpp = kh_path_join(log_dir_path, "checkpoint")))
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  e = kh_read_file(cpp, KH_NOTE_MAX, &raw, &rlen);
  free(cpp);
  if (e)
    return e;
  size_t olen = first_line(raw, rlen);
  if (!olen || olen > KH_CHECKPOINT_ORIGIN_MAX) {
    e = kh_seterr(KH_ERR_FORMAT, "checkpoint: bad origin line");
    goto out;
  }
  memcpy(origin, raw, olen);
  origin[olen] = '\0';
  /* the proof is computed from the state it is checked against: hold the
   * lock from reading the state to writing the new one */
  if ((e = state_lock(w, &lockfd)))
    goto out;
  if ((e = load_state(w, origin, olen, &s)))
    goto out;
  have_state = true;
  char *vk = NULL;
  /* the verifier key string is what the log was added with */
  if (!(vk = read_line(s.logdir, "key", &e)))
    goto out;
  e = kh_tlog_open(log_dir_path, origin, NULL, vk, &log);
  free(vk);
  if (e)
    goto out;
  if (s.size <= kh_tlog_size(log) &&
      (e = kh_tlog_consistency_proof(log, s.size, kh_tlog_size(log), proof, &plen)))
    goto out;
  size_t cl;
  const char *cp = kh_tlog_checkpoint(log, &cl);
  e = cosign_locked(w, &s, origin, cp, cl, proof, plen, now, out, len);
out:
  if (have_state)
    log_state_release(&s);
  state_unlock(lockfd);
  kh_tlog_free(log);
  free(raw);
  return e;
}
