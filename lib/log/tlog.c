/* The tiled log store (c2sp.org/tlog-tiles; docs/log.md §1 and §6).
 *
 * In memory we keep the right edge of the tree: at each tile level l the
 * hashes of the rightmost, partial tile (width (size >> 8l) & 255) and the
 * entries of the partial entry bundle.  An append extends the edge, writes
 * every tile that became full and the new partial tiles (new file names:
 * nothing the current checkpoint references is ever rewritten), makes them
 * durable with one syncfs(2), and only then renames a new signed checkpoint
 * into place and syncs the directory.  A crash at any point therefore
 * leaves the old or the new checkpoint, each referring only to durable
 * tiles; tiles beyond the checkpoint are ignored and later overwritten. */
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
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LEVELS 8 /* 256^8 = 2^64: eight tile levels cover any uint64 size */
#define TILE_BYTES (KH_TILE_WIDTH * KH_LOG_HASH)
#define BUNDLE_MAX ((size_t)KH_TILE_WIDTH * (KH_LOG_ENTRY_MAX + 2))
#define CACHE_TILES 8

typedef struct tile_cache {
  bool valid;
  int level;
  uint64_t n;
  unsigned age;
  kh_log_hash h[KH_TILE_WIDTH];
} tile_cache;

typedef struct edge {
  kh_log_hash h[LEVELS][KH_TILE_WIDTH];
} edge;

struct kh_tlog {
  char *dir;                  /* directory, or the reader's name */
  kh_log_reader reader;       /* read != NULL: files come from here */
  int dirfd;
  int lockfd;
  kh_note_signer *signer;     /* NULL: read-only */
  kh_note_verifier *verifier;
  char origin[KH_CHECKPOINT_ORIGIN_MAX + 1];
  uint64_t size;
  kh_log_hash root;
  char *checkpoint;           /* signed note, NUL-terminated */
  size_t checkpoint_len;
  edge *edge;                 /* committed right edge */
  edge *next;                 /* scratch for an append */
  kh_buf bundle;              /* committed partial entry bundle */
  kh_buf nbundle;             /* scratch */
  bool broken;                /* a simulated crash happened: reopen */
  int crash_stage;
  unsigned clock;
  tile_cache cache[CACHE_TILES];
};

static uint64_t shr(uint64_t x, unsigned n) { return n >= 64 ? 0 : x >> n; }
static unsigned width(uint64_t size, int l) { return (unsigned)(shr(size, 8 * (unsigned)l) & 255); }

void kh_tlog__crash_after(kh_tlog *log, int stage) { log->crash_stage = stage; }

/* Root of a tree given its right edge (complete subtrees, left to right). */
static void edge_root(const edge *e, uint64_t size, kh_log_hash out)
{
  kh_log_hash st[64];
  size_t sp = 0;
  if (size == 0) {
    crypto_hash_sha256(out, NULL, 0);
    return;
  }
  for (int l = LEVELS - 1; l >= 0; l--) {
    unsigned w = width(size, l), off = 0;
    for (int b = 7; b >= 0; b--)
      if (w & (1u << b)) {
        kh_mt_hash_list(st[sp++], e->h[l] + off, 1u << b);
        off += 1u << b;
      }
  }
  for (size_t i = sp - 1; i > 0; i--)
    kh_log_node_hash(st[i - 1], st[i - 1], st[i]);
  memcpy(out, st[0], KH_LOG_HASH);
}

/* ---- file helpers ---- */

static kh_err read_rel(kh_tlog *log, const char *rel, size_t max, uint8_t **out, size_t *len)
{
  if (log->reader.read) {
    *out = NULL;
    *len = 0;
    return log->reader.read(log->reader.ctx, rel, max, out, len);
  }
  char *p = kh_path_join(log->dir, rel);
  if (!p)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  kh_err e = kh_read_file(p, max, out, len);
  free(p);
  return e;
}

/* Write rel under the log dir via a temp file and rename, without fsync:
 * the caller makes the whole batch durable with one syncfs. */
static kh_err write_rel(kh_tlog *log, const char *rel, const void *data, size_t len)
{
  kh_err e = KH_OK;
  char tmp[256];
  int fd = -1;
  const char *slash = strrchr(rel, '/');
  if (snprintf(tmp, sizeof tmp, "%s.tmp", rel) >= (int)sizeof tmp)
    return kh_seterr(KH_ERR_TOOBIG, "path too long");
  if (slash) {
    char d[256];
    size_t dl = (size_t)(slash - rel);
    memcpy(d, rel, dl);
    d[dl] = '\0';
    char *full = kh_path_join(log->dir, d);
    if (!full)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    e = kh_mkdirs(full, 0755);
    free(full);
    if (e)
      return e;
  }
  fd = openat(log->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return kh_seterr(kh_errno_code(errno), "create %s/%s: %s", log->dir, tmp, strerror(errno));
  const uint8_t *p = data;
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      e = kh_seterr(kh_errno_code(errno), "write %s/%s: %s", log->dir, tmp, strerror(errno));
      goto out;
    }
    p += n;
    len -= (size_t)n;
  }
  if (close(fd) != 0) {
    fd = -1;
    e = kh_seterr(kh_errno_code(errno), "close %s/%s: %s", log->dir, tmp, strerror(errno));
    goto out;
  }
  fd = -1;
  if (renameat(log->dirfd, tmp, log->dirfd, rel) != 0)
    e = kh_seterr(kh_errno_code(errno), "rename %s/%s: %s", log->dir, rel, strerror(errno));
out:
  if (fd >= 0)
    close(fd);
  if (e)
    unlinkat(log->dirfd, tmp, 0);
  return e;
}

/* Hashes of tile (level, n), full at the current size, through the cache. */
static kh_err full_tile(kh_tlog *log, int level, uint64_t n, const kh_log_hash **out)
{
  tile_cache *victim = &log->cache[0];
  for (int i = 0; i < CACHE_TILES; i++) {
    tile_cache *c = &log->cache[i];
    if (c->valid && c->level == level && c->n == n) {
      c->age = ++log->clock;
      *out = (const kh_log_hash *)c->h;
      return KH_OK;
    }
    if (!c->valid || c->age < victim->age)
      victim = c;
  }
  char rel[128];
  uint8_t *data = NULL;
  size_t len = 0;
  kh_err e = kh_tile_path(rel, sizeof rel, level, n, 0);
  if (!e)
    e = read_rel(log, rel, TILE_BYTES, &data, &len);
  if (!e)
    e = kh_tile_check(data, len, KH_TILE_WIDTH);
  if (!e) {
    memcpy(victim->h, data, TILE_BYTES);
    victim->valid = true;
    victim->level = level;
    victim->n = n;
    victim->age = ++log->clock;
    *out = (const kh_log_hash *)victim->h;
  } else {
    kh_adderr(e, "log %s", log->dir);
  }
  free(data);
  return e;
}

/* kh_mt_src over the tiles: hash of the complete subtree [j 2^k, (j+1) 2^k). */
static kh_err tile_subtree(void *ctx, unsigned k, uint64_t j, kh_log_hash out)
{
  kh_tlog *log = ctx;
  unsigned t = k / 8, r = k % 8;
  if (k >= 64 || j >= shr(log->size, k))
    return kh_seterr(KH_ERR_INVAL, "subtree beyond the log");
  uint64_t first = j << r, n = first >> 8;
  unsigned off = (unsigned)(first & 255), count = 1u << r;
  const kh_log_hash *h;
  if (n < shr(log->size, 8 * (t + 1))) {
    kh_err e = full_tile(log, (int)t, n, &h);
    if (e)
      return e;
  } else {
    h = (const kh_log_hash *)log->edge->h[t];
  }
  kh_mt_hash_list(out, h + off, count);
  return KH_OK;
}

/* ---- create / open / free ---- */

static kh_err sign_checkpoint(const kh_note_signer *s, const char *origin, uint64_t size,
                              const kh_log_hash root, char **out, size_t *len)
{
  kh_checkpoint c;
  char *body = NULL;
  size_t blen;
  memset(&c, 0, sizeof c);
  snprintf(c.origin, sizeof c.origin, "%s", origin);
  c.size = size;
  memcpy(c.root, root, KH_LOG_HASH);
  kh_err e = kh_checkpoint_format(&c, &body, &blen);
  if (!e)
    e = kh_note_sign(body, blen, s, out, len);
  free(body);
  return e;
}

kh_err kh_tlog_create(const char *dir, const char *origin, const char *skey)
{
  kh_err e;
  kh_note_signer *s = NULL;
  char *cp = NULL, *path = NULL, *tiles = NULL;
  size_t cplen;
  kh_log_hash root;
  struct stat st;
  if (!dir || !origin || !skey)
    return kh_seterr(KH_ERR_INVAL, "log create needs a directory, origin and key");
  if ((e = kh_note_signer_new(skey, &s)))
    goto out;
  if (!(path = kh_path_join(dir, "checkpoint")) || !(tiles = kh_path_join(dir, "tile"))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (stat(path, &st) == 0) {
    e = kh_seterr(KH_ERR_EXISTS, "%s already exists", path);
    goto out;
  }
  if ((e = kh_mkdirs(tiles, 0755)))
    goto out;
  crypto_hash_sha256(root, NULL, 0);
  if ((e = sign_checkpoint(s, origin, 0, root, &cp, &cplen)))
    goto out;
  e = kh_write_file_atomic(path, cp, cplen, 0644, true);
out:
  kh_note_signer_free(s);
  free(cp);
  free(path);
  free(tiles);
  return e;
}

void kh_tlog_free(kh_tlog *log)
{
  if (!log)
    return;
  if (log->dirfd >= 0)
    close(log->dirfd);
  if (log->lockfd >= 0)
    close(log->lockfd); /* releases the flock */
  kh_note_signer_free(log->signer);
  kh_note_verifier_free(log->verifier);
  free(log->checkpoint);
  free(log->edge);
  free(log->next);
  kh_buf_release(&log->bundle);
  kh_buf_release(&log->nbundle);
  if (log->reader.free)
    log->reader.free(log->reader.ctx);
  free(log->dir);
  free(log);
}

/* Read the checkpoint, verify it and load the right edge from the tiles. */
static kh_err load(kh_tlog *log, const char *origin)
{
  kh_err e;
  uint8_t *note = NULL, *data = NULL;
  size_t nlen = 0, len = 0;
  kh_checkpoint c;
  char rel[128];
  if ((e = read_rel(log, "checkpoint", KH_NOTE_MAX, &note, &nlen)))
    goto out;
  if ((e = kh_checkpoint_open(note, nlen, log->verifier, &c, NULL))) {
    kh_adderr(e, "checkpoint of %s", log->dir);
    goto out;
  }
  if (origin && strcmp(origin, c.origin) != 0) {
    e = kh_seterr(KH_ERR_AUTH, "log %s has origin \"%s\", expected \"%s\"", log->dir,
                  c.origin, origin);
    goto out;
  }
  for (int l = 0; l < LEVELS; l++) {
    unsigned w = width(c.size, l);
    if (!w)
      continue;
    if ((e = kh_tile_path(rel, sizeof rel, l, shr(c.size, 8 * (unsigned)(l + 1)), w)) ||
        (e = read_rel(log, rel, TILE_BYTES, &data, &len)) ||
        (e = kh_tile_check(data, len, w))) {
      if (e == KH_ERR_NOTFOUND)
        e = KH_ERR_CORRUPT;
      kh_adderr(e, "log %s: tile %s", log->dir, rel);
      goto out;
    }
    memcpy(log->next->h[l], data, len);
    free(data);
    data = NULL;
  }
  kh_log_hash root;
  edge_root(log->next, c.size, root);
  if (sodium_memcmp(root, c.root, KH_LOG_HASH) != 0) {
    e = kh_seterr(KH_ERR_CORRUPT, "log %s: tiles do not hash to the checkpoint root",
                  log->dir);
    goto out;
  }
  kh_buf_reset(&log->nbundle);
  unsigned w0 = width(c.size, 0);
  if (w0) {
    size_t off[KH_TILE_WIDTH], el[KH_TILE_WIDTH];
    if ((e = kh_tile_path(rel, sizeof rel, -1, c.size >> 8, w0)) ||
        (e = read_rel(log, rel, BUNDLE_MAX, &data, &len)) ||
        (e = kh_bundle_parse(data, len, w0, off, el))) {
      if (e == KH_ERR_NOTFOUND)
        e = KH_ERR_CORRUPT;
      kh_adderr(e, "log %s: %s", log->dir, rel);
      goto out;
    }
    for (unsigned i = 0; i < w0; i++) {
      kh_log_hash h;
      kh_log_leaf_hash(h, data + off[i], el[i]);
      if (sodium_memcmp(h, log->next->h[0][i], KH_LOG_HASH) != 0) {
        e = kh_seterr(KH_ERR_CORRUPT, "log %s: %s entry %u does not match its hash",
                      log->dir, rel, i);
        goto out;
      }
    }
    if ((e = kh_buf_append(&log->nbundle, data, len)))
      goto out;
  }
  /* commit: the log moves to this checkpoint only now */
  edge *t = log->edge;
  log->edge = log->next;
  log->next = t;
  kh_buf tb = log->bundle;
  log->bundle = log->nbundle;
  log->nbundle = tb;
  for (int i = 0; i < CACHE_TILES; i++)
    log->cache[i].valid = false;
  snprintf(log->origin, sizeof log->origin, "%s", c.origin);
  log->size = c.size;
  memcpy(log->root, c.root, KH_LOG_HASH);
  free(log->checkpoint);
  log->checkpoint = (char *)note;
  log->checkpoint_len = nlen;
  /* kh_read_file leaves room for a NUL */
  log->checkpoint[nlen] = '\0';
  note = NULL;
out:
  free(note);
  free(data);
  return e;
}

/* A handle for the log called name with nothing open yet; NULL when out
 * of memory (nothing left allocated). */
static kh_tlog *tlog_alloc(const char *name)
{
  kh_tlog *log = calloc(1, sizeof *log);
  if (!log)
    return NULL;
  log->dirfd = log->lockfd = -1;
  kh_buf_init(&log->bundle, BUNDLE_MAX);
  kh_buf_init(&log->nbundle, BUNDLE_MAX);
  if (!(log->dir = strdup(name)) || !(log->edge = calloc(1, sizeof *log->edge)) ||
      !(log->next = calloc(1, sizeof *log->next))) {
    kh_tlog_free(log);
    return NULL;
  }
  return log;
}

/* The common end of opening: the Ed25519 verifier, then the state. */
static kh_err tlog_verify_and_load(kh_tlog *log, const char *vkey, const char *origin)
{
  kh_err e = kh_note_verifier_new(vkey, &log->verifier);
  if (e)
    return e;
  if (kh_note_verifier_alg(log->verifier) != KH_NOTE_ALG_ED25519)
    return kh_seterr(KH_ERR_INVAL, "log key must be an Ed25519 (0x01) note key");
  return load(log, origin);
}

kh_err kh_tlog_open(const char *dir, const char *origin, const char *skey,
                    const char *vkey, kh_tlog **out)
{
  kh_err e = KH_OK;
  kh_tlog *log = NULL;
  char *vk = NULL, *lockp = NULL;
  *out = NULL;
  if ((e = kh_crypto_init()))
    return e;
  if (!dir || (!skey && !vkey))
    return kh_seterr(KH_ERR_INVAL, "log open needs a directory and a key");
  if (!(log = tlog_alloc(dir))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  log->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (log->dirfd < 0) {
    e = kh_seterr(kh_errno_code(errno), "open %s: %s", dir, strerror(errno));
    goto out;
  }
  if (skey) {
    if ((e = kh_note_signer_new(skey, &log->signer)) ||
        (e = kh_note_signer_vkey(log->signer, &vk)))
      goto out;
    vkey = vk;
    if (!(lockp = kh_path_join(dir, "lock"))) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    log->lockfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (log->lockfd < 0) {
      e = kh_seterr(kh_errno_code(errno), "open %s: %s", lockp, strerror(errno));
      goto out;
    }
    if (flock(log->lockfd, LOCK_EX | LOCK_NB) != 0) {
      e = kh_seterr(KH_ERR_LOCKED, "log %s is open for writing elsewhere", dir);
      goto out;
    }
  }
  if ((e = tlog_verify_and_load(log, vkey, origin)))
    goto out;
  *out = log;
  log = NULL;
out:
  free(vk);
  free(lockp);
  kh_tlog_free(log);
  return e;
}

kh_err kh_tlog_open_reader(const kh_log_reader *r, const char *name, const char *origin,
                           const char *vkey, kh_tlog **out)
{
  kh_err e = KH_OK;
  kh_tlog *log = NULL;
  *out = NULL;
  if (!r || !r->read || !name || !vkey) {
    if (r && r->free)
      r->free(r->ctx);
    return kh_seterr(KH_ERR_INVAL, "log open needs a reader, a name and a key");
  }
  if (!(log = tlog_alloc(name))) {
    if (r->free)
      r->free(r->ctx);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  log->reader = *r; /* owned from here on */
  if ((e = kh_crypto_init()))
    goto out;
  if ((e = tlog_verify_and_load(log, vkey, origin)))
    goto out;
  *out = log;
  log = NULL;
out:
  kh_tlog_free(log);
  return e;
}

kh_err kh_tlog_refresh(kh_tlog *log, bool *changed)
{
  kh_err e;
  uint8_t *note = NULL;
  size_t nlen = 0;
  char origin[KH_CHECKPOINT_ORIGIN_MAX + 1];
  if (changed)
    *changed = false;
  if (log->signer)
    return kh_seterr(KH_ERR_STATE, "log %s is open for writing: nothing to refresh", log->dir);
  if ((e = read_rel(log, "checkpoint", KH_NOTE_MAX, &note, &nlen)))
    goto out;
  if (nlen == log->checkpoint_len && memcmp(note, log->checkpoint, nlen) == 0)
    goto out;
  snprintf(origin, sizeof origin, "%s", log->origin);
  if ((e = load(log, origin)))
    goto out;
  if (changed)
    *changed = true;
out:
  free(note);
  return e;
}

kh_err kh_tlog_tile(kh_tlog *log, const kh_tile_ref *t, uint8_t **out, size_t *len)
{
  kh_err e;
  char rel[KH_TILE_PATH_MAX + 1];
  *out = NULL;
  *len = 0;
  int l = t->level < 0 ? 0 : t->level;
  if (t->level < -1 || l >= LEVELS || t->w > 255)
    return kh_seterr(KH_ERR_NOTFOUND, "no such tile");
  uint64_t full = shr(log->size, 8 * (unsigned)(l + 1)); /* full tiles at level l */
  /* Only the partial tiles of the current checkpoint: an older width may
   * have been left by a crashed append with other entries (tlog.c top). */
  bool in = t->w == 0 ? t->n < full : t->n == full && t->w == width(log->size, l);
  if (!in)
    return kh_seterr(KH_ERR_NOTFOUND, "tile beyond the log's checkpoint");
  unsigned count = t->w ? t->w : KH_TILE_WIDTH;
  if ((e = kh_tile_path(rel, sizeof rel, t->level, t->n, t->w)) ||
      (e = read_rel(log, rel, t->level < 0 ? BUNDLE_MAX : TILE_BYTES, out, len)))
    goto out;
  if (t->level < 0)
    e = kh_bundle_parse(*out, *len, count, NULL, NULL);
  else
    e = kh_tile_check(*out, *len, count);
  if (e)
    kh_adderr(e, "log %s: %s", log->dir, rel);
out:
  if (e) {
    free(*out);
    *out = NULL;
    *len = 0;
  }
  return e;
}

uint64_t kh_tlog_size(const kh_tlog *log) { return log->size; }
void kh_tlog_root(const kh_tlog *log, kh_log_hash root) { memcpy(root, log->root, KH_LOG_HASH); }
const char *kh_tlog_origin(const kh_tlog *log) { return log->origin; }

const char *kh_tlog_checkpoint(const kh_tlog *log, size_t *len)
{
  if (len)
    *len = log->checkpoint_len;
  return log->checkpoint;
}

/* ---- append ---- */

kh_err kh_tlog_append(kh_tlog *log, const void *const *entries, const size_t *lens,
                      size_t n, uint64_t *first_index)
{
  kh_err e = KH_OK;
  char rel[128];
  char *cp = NULL;
  size_t cplen = 0;
  bool dirty[LEVELS] = {false};
  uint64_t size = log->size;
  kh_log_hash root;
  if (!log->signer)
    return kh_seterr(KH_ERR_STATE, "log %s is open read-only", log->dir);
  if (log->broken)
    return kh_seterr(KH_ERR_STATE, "log %s must be reopened after a failed write", log->dir);
  if (n == 0)
    return kh_seterr(KH_ERR_INVAL, "empty batch");
  for (size_t i = 0; i < n; i++)
    if (lens[i] > KH_LOG_ENTRY_MAX)
      return kh_seterr(KH_ERR_TOOBIG, "log entry %zu has %zu bytes (max %d)", i, lens[i],
                       KH_LOG_ENTRY_MAX);
  if (n > UINT64_MAX - size)
    return kh_seterr(KH_ERR_TOOBIG, "log full");
  memcpy(log->next, log->edge, sizeof *log->next);
  kh_buf_reset(&log->nbundle);
  if ((e = kh_buf_append(&log->nbundle, log->bundle.data, log->bundle.len)))
    goto out;
  for (size_t i = 0; i < n; i++) {
    uint8_t l2[2] = {(uint8_t)(lens[i] >> 8), (uint8_t)lens[i]};
    if ((e = kh_buf_append(&log->nbundle, l2, 2)) ||
        (e = kh_buf_append(&log->nbundle, entries[i], lens[i])))
      goto out;
    kh_log_leaf_hash(log->next->h[0][size & 255], entries[i], lens[i]);
    dirty[0] = true;
    size++;
    /* cascade full tiles upwards */
    for (int l = 0; l < LEVELS && width(size, l) == 0; l++) {
      uint64_t cnt = shr(size, 8 * (unsigned)l); /* hashes at level l */
      if (cnt == 0)
        break;
      uint64_t tn = (cnt >> 8) - 1; /* the tile that just became full */
      if ((e = kh_tile_path(rel, sizeof rel, l, tn, 0)) ||
          (e = write_rel(log, rel, log->next->h[l], TILE_BYTES)))
        goto out;
      if (l == 0) {
        if ((e = kh_tile_path(rel, sizeof rel, -1, tn, 0)) ||
            (e = write_rel(log, rel, log->nbundle.data, log->nbundle.len)))
          goto out;
        kh_buf_reset(&log->nbundle);
      }
      if (l + 1 < LEVELS) {
        kh_mt_hash_list(log->next->h[l + 1][tn & 255], log->next->h[l], KH_TILE_WIDTH);
        dirty[l + 1] = true;
      }
    }
  }
  for (int l = 0; l < LEVELS; l++) {
    unsigned w = width(size, l);
    if (!dirty[l] || !w)
      continue;
    if ((e = kh_tile_path(rel, sizeof rel, l, shr(size, 8 * (unsigned)(l + 1)), w)) ||
        (e = write_rel(log, rel, log->next->h[l], (size_t)w * KH_LOG_HASH)))
      goto out;
    if (l == 0 && ((e = kh_tile_path(rel, sizeof rel, -1, size >> 8, w)) ||
                   (e = write_rel(log, rel, log->nbundle.data, log->nbundle.len))))
      goto out;
  }
  if (log->crash_stage == 1) {
    log->broken = true;
    e = kh_seterr(KH_ERR_IO, "simulated crash after writing tiles");
    goto out;
  }
  edge_root(log->next, size, root);
  if ((e = sign_checkpoint(log->signer, log->origin, size, root, &cp, &cplen)) ||
      (e = write_rel(log, "checkpoint.new", cp, cplen)))
    goto out;
  /* One sync makes every tile, bundle and the new checkpoint's bytes durable
   * before the rename that publishes the checkpoint. */
  if (syncfs(log->dirfd) != 0) {
    e = kh_seterr(kh_errno_code(errno), "syncfs %s: %s", log->dir, strerror(errno));
    goto out;
  }
  if (log->crash_stage == 2) {
    log->broken = true;
    e = kh_seterr(KH_ERR_IO, "simulated crash before publishing the checkpoint");
    goto out;
  }
  if (renameat(log->dirfd, "checkpoint.new", log->dirfd, "checkpoint") != 0) {
    e = kh_seterr(kh_errno_code(errno), "rename %s/checkpoint: %s", log->dir, strerror(errno));
    goto out;
  }
  if (fsync(log->dirfd) != 0) {
    /* the rename may or may not be durable: only a reopen can tell */
    log->broken = true;
    e = kh_seterr(kh_errno_code(errno), "fsync %s: %s", log->dir, strerror(errno));
    goto out;
  }
  /* commit */
  if (first_index)
    *first_index = log->size;
  edge *t = log->edge;
  log->edge = log->next;
  log->next = t;
  kh_buf tb = log->bundle;
  log->bundle = log->nbundle;
  log->nbundle = tb;
  log->size = size;
  memcpy(log->root, root, KH_LOG_HASH);
  free(log->checkpoint);
  log->checkpoint = cp;
  log->checkpoint_len = cplen;
  cp = NULL;
out:
  free(cp);
  return e;
}

/* ---- reading ---- */

kh_err kh_tlog_entry(kh_tlog *log, uint64_t i, uint8_t **out, size_t *len)
{
  kh_err e = KH_OK;
  uint8_t *data = NULL;
  size_t dlen = 0, off[KH_TILE_WIDTH], el[KH_TILE_WIDTH];
  const uint8_t *b;
  unsigned count;
  char rel[128];
  kh_log_hash want, got;
  *out = NULL;
  *len = 0;
  if (i >= log->size)
    return kh_seterr(KH_ERR_NOTFOUND, "entry %llu is beyond the log size %llu",
                     (unsigned long long)i, (unsigned long long)log->size);
  if ((i >> 8) < (log->size >> 8)) {
    count = KH_TILE_WIDTH;
    if ((e = kh_tile_path(rel, sizeof rel, -1, i >> 8, 0)) ||
        (e = read_rel(log, rel, BUNDLE_MAX, &data, &dlen)))
      goto out;
    b = data;
  } else {
    count = width(log->size, 0);
    b = log->bundle.data;
    dlen = log->bundle.len;
  }
  if ((e = kh_bundle_parse(b, dlen, count, off, el)))
    goto out;
  unsigned k = (unsigned)(i & 255);
  if ((e = tile_subtree(log, 0, i, want)))
    goto out;
  kh_log_leaf_hash(got, b + off[k], el[k]);
  if (sodium_memcmp(got, want, KH_LOG_HASH) != 0) {
    e = kh_seterr(KH_ERR_CORRUPT, "log %s: entry %llu does not match its tile hash",
                  log->dir, (unsigned long long)i);
    goto out;
  }
  if (!(*out = malloc(el[k] ? el[k] : 1))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  memcpy(*out, b + off[k], el[k]);
  *len = el[k];
out:
  free(data);
  return e;
}

kh_err kh_tlog_root_at(kh_tlog *log, uint64_t size, kh_log_hash root)
{
  if (size > log->size)
    return kh_seterr(KH_ERR_INVAL, "size %llu is beyond the log size %llu",
                     (unsigned long long)size, (unsigned long long)log->size);
  if (size == 0) {
    crypto_hash_sha256(root, NULL, 0);
    return KH_OK;
  }
  kh_mt_src s = {tile_subtree, log};
  return kh_mt_range(&s, 0, size, root);
}

kh_err kh_tlog_inclusion_proof(kh_tlog *log, uint64_t index, uint64_t size,
                               kh_log_hash proof[KH_LOG_PROOF_MAX], size_t *plen)
{
  *plen = 0;
  if (size > log->size)
    return kh_seterr(KH_ERR_INVAL, "size %llu is beyond the log size %llu",
                     (unsigned long long)size, (unsigned long long)log->size);
  kh_mt_src s = {tile_subtree, log};
  return kh_mt_inclusion(&s, index, size, proof, plen);
}

kh_err kh_tlog_consistency_proof(kh_tlog *log, uint64_t size1, uint64_t size2,
                                 kh_log_hash proof[KH_LOG_PROOF_MAX], size_t *plen)
{
  *plen = 0;
  if (size2 > log->size)
    return kh_seterr(KH_ERR_INVAL, "size %llu is beyond the log size %llu",
                     (unsigned long long)size2, (unsigned long long)log->size);
  kh_mt_src s = {tile_subtree, log};
  return kh_mt_consistency(&s, size1, size2, proof, plen);
}

/* ---- full audit ---- */

kh_err kh_tlog_verify(kh_tlog *log,
                      kh_err (*each)(void *ctx, uint64_t index, const uint8_t *e, size_t len),
                      void *ctx)
{
  kh_err e = KH_OK;
  edge *acc = NULL;
  uint8_t *data = NULL;
  size_t dlen = 0, off[KH_TILE_WIDTH], el[KH_TILE_WIDTH];
  char rel[128];
  if (!(acc = calloc(1, sizeof *acc)))
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  uint64_t ntiles = (log->size + 255) >> 8;
  for (uint64_t tn = 0; tn < ntiles; tn++) {
    bool full = tn < (log->size >> 8);
    unsigned count = full ? KH_TILE_WIDTH : width(log->size, 0);
    const uint8_t *b;
    free(data);
    data = NULL;
    if (full) {
      if ((e = kh_tile_path(rel, sizeof rel, -1, tn, 0)) ||
          (e = read_rel(log, rel, BUNDLE_MAX, &data, &dlen)))
        goto out;
      b = data;
    } else {
      b = log->bundle.data;
      dlen = log->bundle.len;
    }
    if ((e = kh_bundle_parse(b, dlen, count, off, el))) {
      kh_adderr(e, "log %s: entries tile %llu", log->dir, (unsigned long long)tn);
      goto out;
    }
    for (unsigned i = 0; i < count; i++) {
      uint64_t idx = tn * KH_TILE_WIDTH + i;
      kh_log_leaf_hash(acc->h[0][i], b + off[i], el[i]);
      if (each && (e = each(ctx, idx, b + off[i], el[i])))
        goto out;
    }
    if (!full)
      break;
    /* level 0 tile tn is full; climb while tiles complete */
    uint64_t done = (tn + 1) * KH_TILE_WIDTH; /* entries covered so far */
    for (int l = 0; l < LEVELS; l++) {
      uint64_t cnt = shr(done, 8 * (unsigned)l);
      if (cnt == 0 || (cnt & 255) != 0)
        break;
      uint64_t n = (cnt >> 8) - 1;
      const kh_log_hash *disk;
      if ((e = full_tile(log, l, n, &disk)))
        goto out;
      if (sodium_memcmp(disk, acc->h[l], TILE_BYTES) != 0) {
        e = kh_seterr(KH_ERR_CORRUPT, "log %s: tile %d/%llu does not match the entries",
                      log->dir, l, (unsigned long long)n);
        goto out;
      }
      if (l + 1 < LEVELS)
        kh_mt_hash_list(acc->h[l + 1][n & 255], acc->h[l], KH_TILE_WIDTH);
    }
  }
  for (int l = 0; l < LEVELS; l++) {
    unsigned w = width(log->size, l);
    if (w && sodium_memcmp(acc->h[l], log->edge->h[l], (size_t)w * KH_LOG_HASH) != 0) {
      e = kh_seterr(KH_ERR_CORRUPT, "log %s: partial tile at level %d does not match",
                    log->dir, l);
      goto out;
    }
  }
  kh_log_hash root;
  edge_root(acc, log->size, root);
  if (sodium_memcmp(root, log->root, KH_LOG_HASH) != 0)
    e = kh_seterr(KH_ERR_CORRUPT, "log %s: entries do not hash to the checkpoint root",
                  log->dir);
out:
  free(data);
  free(acc);
  return e;
}
