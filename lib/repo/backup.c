/* Backup: walk the paths (main thread, consulting the file cache), while
 * worker threads read, chunk, hash, compress, encrypt and pack the files
 * that changed; then trees bottom-up, the index, and the signed snapshot.
 * Memory is bounded: a fixed job queue of file references and, per worker,
 * one read window and one pack (docs/format.md §11 for the write order that
 * makes a crash at any moment safe). */
#include "repo/vault_internal.h"
#include "cache/cache.h"
#include "common/err.h"
#include "common/hex.h"
#include "common/pattern.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zstd.h>

#define QUEUE_LEN 256
#define PENDING_PACK UINT32_MAX
#define ZSTD_LEVEL 3
#define MAX_DEPTH 512
#ifndef XATTR_LIST_MAX
#define XATTR_LIST_MAX 65536
#endif
/* the packs written so far are indexed every FLUSH_PACKS packs or
 * FLUSH_SECONDS seconds, whichever comes first (and on cancel) */
#define FLUSH_PACKS 4
#define FLUSH_SECONDS 30.0

typedef struct bnode {
  uint8_t *name;
  size_t namelen;
  uint8_t type;
  uint32_t mode, uid, gid;
  int64_t mtime_ns, ctime_ns;
  uint64_t size, nlink, ino, dev, rdev;
  uint8_t *link;
  size_t linklen;
  kh_chunkref *chunks;
  size_t nchunks;
  uint32_t flags;      /* KH_FLAG_* */
  uint8_t *xattrs;     /* encoded as in the tree (docs/format.md §8) */
  size_t xattrlen;
  uint32_t nxattr;
  struct bnode **kids;
  size_t nkids, kidcap;
  uint8_t tree_id[32];
  bool failed;     /* could not be read: left out of the snapshot */
  bool from_disk;  /* read by a worker this time: goes into the cache */
  bool no_descend; /* another file system's mount point (--one-file-system) */
  uint8_t status;  /* KH_FILE_NEW / CHANGED / UNMODIFIED (files) */
  bool xattrs_unknown; /* could not be listed: not recorded in the cache */
} bnode;

typedef struct job {
  bnode *node;
  char *path;
} job;

typedef struct backup_ctx backup_ctx;

typedef struct worker {
  backup_ctx *bc;
  pthread_t tid;
  uint8_t *buf;       /* read window */
  size_t bufcap;
  uint8_t *zbuf;      /* compression output */
  size_t zcap;
  ZSTD_CCtx *zc;
  kh_pack_writer pack; /* reused pack after pack */
  kh_chunkref *refs;  /* chunks of the file being read */
  size_t nrefs, refcap;
  int slot;           /* index in backup_ctx.current */
  char *xlist;        /* flistxattr names (XATTR_LIST_MAX) */
  uint8_t *xval;      /* one value (KH_XATTR_VALUE_MAX) */
  bool stream;        /* read(2), not pread(2): a pipe (--stdin) */
} worker;

struct backup_ctx {
  kh_vault *v;
  const kh_backup_opts *o;
  kh_backup_result *r;
  /* job queue */
  pthread_mutex_t qmu;
  pthread_cond_t qnotempty, qnotfull, qidle;
  job q[QUEUE_LEN];
  size_t qhead, qlen, busy;
  size_t idle;        /* workers waiting for jobs */
  bool main_waiting;  /* walker waiting for room */
  bool closing;
  /* blobs written this session (under nmu) */
  pthread_mutex_t nmu;
  kh_index newidx;
  kh_err fatal;       /* first fatal error of any worker (under nmu) */
  kh_errsave fatal_why; /* its detail, recorded on the worker's thread */
  _Atomic bool stop;  /* fatal is set: walker and workers stop early */
  uint32_t flushed;   /* packs [0, flushed) of newidx are in an index object */
  double last_flush, last_flush_check;
  pthread_mutex_t wmu; /* serialises warn callbacks */
  _Atomic uint64_t files_done, bytes_done, bytes_new, bytes_stored, blobs_new, bytes_read;
  _Atomic uint64_t skipped_files, skipped_bytes; /* unreadable: not in the snapshot */
  _Atomic uint64_t grown, shrunk; /* read size minus stat size (/proc, /sys, changing files) */
  uint64_t files_total, bytes_total;
  bool scan_done;
  double t0, last_progress, last_refresh;
  kh_cache *cache;
  uint64_t warnings;
  kh_pattern_set *excl; /* NULL when there are no exclude patterns */
  /* progress only: the files the workers read now (under cmu), and the
   * totals of the counting walk that runs ahead of the real one */
  pthread_mutex_t cmu;
  const char *current[KH_PROGRESS_CURRENT];
  pthread_t counter;
  bool counting;
  _Atomic bool count_done, count_stop;
  _Atomic uint64_t count_files, count_bytes;
  char *xlist;          /* walker: llistxattr names (XATTR_LIST_MAX) */
  uint8_t *xval;        /* walker: one value (KH_XATTR_VALUE_MAX) */
};

/* ---- helpers ------------------------------------------------------------ */

static void warn(backup_ctx *bc, kh_err e, const char *path, const char *msg)
{
  pthread_mutex_lock(&bc->wmu);
  bc->warnings++;
  if (bc->o->warn)
    bc->o->warn(e, path, msg, bc->o->ctx);
  pthread_mutex_unlock(&bc->wmu);
}

/* A file is in the snapshot: count it by status and tell the caller. */
static void file_done(backup_ctx *bc, const bnode *n, const char *path)
{
  pthread_mutex_lock(&bc->wmu);
  if (n->status == KH_FILE_NEW)
    bc->r->files_new++;
  else if (n->status == KH_FILE_CHANGED)
    bc->r->files_changed++;
  else
    bc->r->files_unmodified++;
  if (bc->o->file)
    bc->o->file(n->status, path, n->size, bc->o->ctx);
  pthread_mutex_unlock(&bc->wmu);
}

static void set_fatal(backup_ctx *bc, kh_err e)
{
  pthread_mutex_lock(&bc->nmu);
  if (!bc->fatal) {
    bc->fatal = e;
    kh_err_save(&bc->fatal_why, e);
  }
  atomic_store(&bc->stop, true);
  pthread_mutex_unlock(&bc->nmu);
}

static bool cancel_requested(const backup_ctx *bc)
{
  return bc->o->cancel && *bc->o->cancel;
}

/* Name the packs written since the last flush in a new index object, so
 * that a backup that is interrupted (or killed) from now on leaves them
 * usable by the next one.  Main thread only.  The lock is confirmed first:
 * only a holder may name packs in an index (docs/format.md §11). */
static kh_err index_flush(backup_ctx *bc)
{
  if (bc->o->dry_run)
    return KH_OK;
  pthread_mutex_lock(&bc->nmu);
  uint32_t np = bc->newidx.npacks;
  pthread_mutex_unlock(&bc->nmu);
  if (np == bc->flushed)
    return KH_OK;
  kh_err e = kh_vault_lock_refresh(bc->v);
  if (e)
    return e;
  uint8_t id[32];
  pthread_mutex_lock(&bc->nmu); /* workers add packs meanwhile */
  np = bc->newidx.npacks;
  e = kh_vault_write_index(bc->v, &bc->newidx, bc->flushed, NULL, 0, id);
  pthread_mutex_unlock(&bc->nmu);
  if (!e)
    bc->flushed = np;
  bc->last_flush = kh_now();
  return e;
}

static bool has_fatal(backup_ctx *bc)
{
  return atomic_load_explicit(&bc->stop, memory_order_relaxed);
}

/* Called often from the main thread: reports progress and stops the
 * backup if its lock was lost (lock.c refreshes it in the background;
 * prune may then delete packs this backup wrote but has not indexed yet). */
static void progress(backup_ctx *bc, bool force)
{
  double now = kh_now();
  kh_err le = kh_vault_lock_check(bc->v); /* refreshed by lock.c's thread */
  if (le)
    set_fatal(bc, le); /* lost: stop, commit nothing */
  if (cancel_requested(bc) && !has_fatal(bc))
    set_fatal(bc, kh_seterr(KH_ERR_CANCELLED, "interrupted"));
  if (!has_fatal(bc) && !bc->o->dry_run && now - bc->last_flush_check >= 0.1) {
    bc->last_flush_check = now; /* called per file: look at most 10 times a second */
    pthread_mutex_lock(&bc->nmu);
    uint32_t unflushed = bc->newidx.npacks - bc->flushed;
    pthread_mutex_unlock(&bc->nmu);
    if (unflushed >= FLUSH_PACKS || (unflushed && now - bc->last_flush >= FLUSH_SECONDS)) {
      kh_err fe = index_flush(bc);
      if (fe)
        set_fatal(bc, fe);
    }
  }
  if (!bc->o->progress)
    return;
  if (!force && now - bc->last_progress < 0.25)
    return;
  bc->last_progress = now;
  kh_progress p = {
      .files_done = atomic_load(&bc->files_done), .files_total = bc->files_total,
      .bytes_done = atomic_load(&bc->bytes_done), .bytes_total = bc->bytes_total,
      .bytes_new = atomic_load(&bc->bytes_new), .scan_done = bc->scan_done,
      .elapsed = now - bc->t0};
  if (!p.scan_done && bc->counting) {
    /* the counting walk runs ahead: its totals give the ETA early */
    bool done = atomic_load(&bc->count_done);
    uint64_t cf = atomic_load(&bc->count_files), cb = atomic_load(&bc->count_bytes);
    p.files_total = cf > p.files_total ? cf : p.files_total;
    p.bytes_total = cb > p.bytes_total ? cb : p.bytes_total;
    p.scan_done = done;
  }
  pthread_mutex_lock(&bc->wmu);
  p.errors = bc->warnings;
  pthread_mutex_unlock(&bc->wmu);
  char cur[KH_PROGRESS_CURRENT][512];
  const char *curp[KH_PROGRESS_CURRENT];
  pthread_mutex_lock(&bc->cmu);
  for (size_t i = 0; i < KH_PROGRESS_CURRENT; i++)
    if (bc->current[i]) {
      snprintf(cur[p.ncurrent], sizeof cur[0], "%s", bc->current[i]);
      curp[p.ncurrent] = cur[p.ncurrent];
      p.ncurrent++;
    }
  pthread_mutex_unlock(&bc->cmu);
  p.current = curp;
  bc->o->progress(&p, bc->o->ctx);
}

static void node_free(bnode *n)
{
  if (!n)
    return;
  for (size_t i = 0; i < n->nkids; i++)
    node_free(n->kids[i]);
  free(n->kids);
  free(n->name);
  free(n->link);
  free(n->chunks);
  free(n->xattrs);
  free(n);
}

static int node_cmp(const void *a, const void *b)
{
  const bnode *x = *(bnode *const *)a, *y = *(bnode *const *)b;
  return kh_name_cmp(x->name, x->namelen, y->name, y->namelen);
}

static uint8_t type_of(mode_t m)
{
  if (S_ISREG(m)) return KH_NODE_FILE;
  if (S_ISDIR(m)) return KH_NODE_DIR;
  if (S_ISLNK(m)) return KH_NODE_SYMLINK;
  if (S_ISCHR(m)) return KH_NODE_CHARDEV;
  if (S_ISBLK(m)) return KH_NODE_BLOCKDEV;
  if (S_ISFIFO(m)) return KH_NODE_FIFO;
  return KH_NODE_SOCKET;
}

static bnode *node_new(const char *name, size_t namelen, const struct stat *st)
{
  bnode *n = calloc(1, sizeof *n);
  if (!n || !(n->name = malloc(namelen ? namelen : 1))) {
    free(n);
    return NULL;
  }
  memcpy(n->name, name, namelen);
  n->namelen = namelen;
  n->type = type_of(st->st_mode);
  n->mode = st->st_mode & 07777;
  n->uid = st->st_uid;
  n->gid = st->st_gid;
  n->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  n->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
  n->size = n->type == KH_NODE_FILE ? (uint64_t)st->st_size : 0;
  n->nlink = st->st_nlink;
  n->ino = st->st_ino;
  n->dev = st->st_dev;
  n->rdev = st->st_rdev;
  return n;
}

static kh_err add_kid(bnode *dir, bnode *kid)
{
  if (dir->nkids == dir->kidcap) {
    size_t nc = dir->kidcap ? dir->kidcap * 2 : 8;
    bnode **nk = realloc(dir->kids, nc * sizeof *nk);
    if (!nk)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    dir->kids = nk;
    dir->kidcap = nc;
  }
  dir->kids[dir->nkids++] = kid;
  return KH_OK;
}

/* lstat(2) through statx(2), which also says whether the chattr flags kept
 * (append-only, immutable, no-dump) are set, at no extra cost. */
static int stat_entry(int dfd, const char *name, struct stat *st, uint32_t *flags)
{
  struct statx sx;
  if (statx(dfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &sx) != 0)
    return -1;
  memset(st, 0, sizeof *st);
  st->st_mode = sx.stx_mode;
  st->st_uid = sx.stx_uid;
  st->st_gid = sx.stx_gid;
  st->st_size = (off_t)sx.stx_size;
  st->st_blocks = (blkcnt_t)sx.stx_blocks;
  st->st_nlink = sx.stx_nlink;
  st->st_ino = sx.stx_ino;
  st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
  st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
  st->st_mtim.tv_sec = sx.stx_mtime.tv_sec;
  st->st_mtim.tv_nsec = sx.stx_mtime.tv_nsec;
  st->st_ctim.tv_sec = sx.stx_ctime.tv_sec;
  st->st_ctim.tv_nsec = sx.stx_ctime.tv_nsec;
  uint64_t a = sx.stx_attributes & sx.stx_attributes_mask;
  *flags = ((a & STATX_ATTR_APPEND) ? KH_FLAG_APPEND : 0) |
           ((a & STATX_ATTR_IMMUTABLE) ? KH_FLAG_IMMUTABLE : 0) |
           ((a & STATX_ATTR_NODUMP) ? KH_FLAG_NODUMP : 0);
  return 0;
}

static int cmp_cstr(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The extended attributes (POSIX ACLs among them) of n, through fd when it
 * is open (a worker reading the file), else by path: one listxattr, nothing
 * more when there are none.  A list or value that cannot be read is a
 * warning (the node is kept, its attributes are not recorded in the cache). */
static kh_err read_xattrs(backup_ctx *bc, bnode *n, const char *path, int fd, char *xlist,
                          uint8_t *xval)
{
  ssize_t len = fd >= 0 ? flistxattr(fd, xlist, XATTR_LIST_MAX)
                        : llistxattr(path, xlist, XATTR_LIST_MAX);
  if (len == 0 || (len < 0 && (errno == ENOTSUP || errno == ENOENT)))
    return KH_OK;
  if (len < 0) {
    char msg[200];
    snprintf(msg, sizeof msg, "extended attributes not read: %s", strerror(errno));
    warn(bc, KH_ERR_IO, path, msg);
    n->xattrs_unknown = true;
    return KH_OK;
  }
  const char *names[KH_XATTR_COUNT_MAX];
  size_t nn = 0;
  for (ssize_t i = 0; i < len; i += (ssize_t)strlen(xlist + i) + 1) {
    if (!xlist[i])
      continue;
    if (nn == KH_XATTR_COUNT_MAX) {
      warn(bc, KH_ERR_TOOBIG, path, "more than 1024 extended attributes: the rest not kept");
      n->xattrs_unknown = true;
      break;
    }
    names[nn++] = xlist + i;
  }
  qsort(names, nn, sizeof *names, cmp_cstr);
  kh_buf enc;
  kh_buf_init(&enc, KH_XATTR_COUNT_MAX * (KH_XATTR_NAME_MAX + KH_XATTR_VALUE_MAX + 16));
  kh_err e = KH_OK;
  uint32_t kept = 0;
  for (size_t i = 0; i < nn && !e; i++) {
    ssize_t vl = fd >= 0 ? fgetxattr(fd, names[i], xval, KH_XATTR_VALUE_MAX)
                         : lgetxattr(path, names[i], xval, KH_XATTR_VALUE_MAX);
    if (vl < 0) {
      if (errno != ENODATA) { /* ENODATA: removed meanwhile */
        char msg[400];
        snprintf(msg, sizeof msg, "extended attribute %.255s not read: %s", names[i],
                 strerror(errno));
        warn(bc, KH_ERR_IO, path, msg);
        n->xattrs_unknown = true;
      }
      continue;
    }
    e = kh_buf_put_lbytes(&enc, names[i], strlen(names[i]));
    if (!e)
      e = kh_buf_put_lbytes(&enc, xval, (size_t)vl);
    kept++;
  }
  free(n->xattrs);
  n->xattrs = NULL;
  n->xattrlen = 0;
  n->nxattr = 0;
  if (!e && kept) {
    if (!(n->xattrs = malloc(enc.len)))
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    else {
      memcpy(n->xattrs, enc.data, enc.len);
      n->xattrlen = enc.len;
      n->nxattr = kept;
    }
  }
  kh_buf_release(&enc);
  return e;
}

/* Flags (from statx, no extra call) of a file or directory, and the
 * extended attributes of a directory.  A file's come later: from the
 * worker that reads it (through its descriptor), or from the cache with
 * its chunks (a change of attributes changes the ctime the cache keys on). */
static kh_err node_meta(backup_ctx *bc, bnode *n, const char *path, uint32_t flags)
{
  if (n->type != KH_NODE_FILE && n->type != KH_NODE_DIR)
    return KH_OK;
  n->flags = flags;
  return n->type == KH_NODE_DIR ? read_xattrs(bc, n, path, -1, bc->xlist, bc->xval) : KH_OK;
}

/* ---- storing chunks (workers and main) ----------------------------------- */

static kh_err worker_flush(worker *w)
{
  backup_ctx *bc = w->bc;
  kh_vault *v = bc->v;
  if (w->pack.n == 0)
    return KH_OK;
  const struct iovec *iov;
  size_t niov;
  uint64_t total;
  kh_err e = kh_pack_finish(&w->pack, &v->keys, &iov, &niov, &total);
  char name[256];
  if (!e && !bc->o->dry_run) {
    kh_vault_objname(v, name, sizeof name, "data", w->pack.id, 32);
    e = kh_provider_putv(v->prov, name, iov, niov, true);
  }
  if (!e) {
    pthread_mutex_lock(&bc->nmu);
    uint32_t no;
    e = kh_index_add_pack(&bc->newidx, w->pack.id, total, &no);
    for (size_t i = 0; !e && i < w->pack.n; i++) {
      kh_index_entry *en = kh_index_find(&bc->newidx, w->pack.blobs[i].id);
      en->pack = no;
      en->offset = w->pack.blobs[i].offset;
      en->clen = w->pack.blobs[i].clen;
      en->ulen = w->pack.blobs[i].ulen;
      bc->newidx.packs[no].nblobs++;
    }
    pthread_mutex_unlock(&bc->nmu);
    atomic_fetch_add(&bc->bytes_stored, total);
  }
  kh_pack_writer_reset(&w->pack);
  return e;
}

/* Store one blob unless the account already has it. */
static kh_err store_blob(worker *w, int type, const uint8_t *data, size_t len, uint8_t id[32])
{
  backup_ctx *bc = w->bc;
  kh_vault *v = bc->v;
  kh_blob_id(&v->keys, id, data, len);
  /* a copy known to be missing or damaged does not count: store it again */
  if (kh_vault_blob_usable(v, &v->index, kh_index_find(&v->index, id)))
    return KH_OK;
  pthread_mutex_lock(&bc->nmu);
  bool added = false;
  kh_pack_blob pb = {.type = (uint8_t)type, .ulen = (uint32_t)len};
  memcpy(pb.id, id, 32);
  kh_err e = kh_index_add(&bc->newidx, &pb, PENDING_PACK, &added);
  pthread_mutex_unlock(&bc->nmu);
  if (e || !added)
    return e;
  /* compress when it pays (at least 1/32 smaller), else store as is */
  const uint8_t *payload = data;
  size_t plen = len;
  if (len >= 64) {
    size_t need = ZSTD_compressBound(len);
    if (need > w->zcap) {
      uint8_t *nz = realloc(w->zbuf, need);
      if (!nz)
        return kh_seterr(KH_ERR_NOMEM, "out of memory");
      w->zbuf = nz;
      w->zcap = need;
    }
    size_t z = ZSTD_compressCCtx(w->zc, w->zbuf, w->zcap, data, len, ZSTD_LEVEL);
    if (!ZSTD_isError(z) && z < len - len / 32) {
      payload = w->zbuf;
      plen = z;
    }
  }
  if ((e = kh_pack_add(&w->pack, &v->keys, type, id, payload, plen, (uint32_t)len)))
    return e;
  atomic_fetch_add(&bc->bytes_new, len);
  atomic_fetch_add(&bc->blobs_new, 1);
  if (kh_pack_size(&w->pack) >= KH_PACK_TARGET)
    return worker_flush(w);
  return KH_OK;
}

static kh_err add_ref(worker *w, const uint8_t id[32], uint64_t len)
{
  if (w->nrefs && sodium_is_zero(id, 32) && sodium_is_zero(w->refs[w->nrefs - 1].id, 32)) {
    w->refs[w->nrefs - 1].len += len; /* merge adjacent holes */
    return KH_OK;
  }
  if (w->nrefs == w->refcap) {
    size_t nc = w->refcap ? w->refcap * 2 : 16;
    kh_chunkref *nr = realloc(w->refs, nc * sizeof *nr);
    if (!nr)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    w->refs = nr;
    w->refcap = nc;
  }
  memcpy(w->refs[w->nrefs].id, id, 32);
  w->refs[w->nrefs++].len = len;
  return KH_OK;
}

/* Read [off, end) (end UINT64_MAX: to EOF), chunk and store it.  *got
 * receives the bytes read.  Read errors are KH_ERR_IO with detail. */
static kh_err read_range(worker *w, int fd, uint64_t off, uint64_t end, const char *path,
                         uint64_t *got)
{
  backup_ctx *bc = w->bc;
  size_t len = 0, start = 0;
  bool eof = false;
  *got = 0;
  for (;;) {
    /* refill: keep at least one max-size chunk in the window when possible */
    if (!eof && len - start < KH_CHUNK_MAX) {
      if (start) {
        memmove(w->buf, w->buf + start, len - start);
        len -= start;
        start = 0;
      }
      while (!eof && len < w->bufcap) {
        size_t want = w->bufcap - len;
        if (end != UINT64_MAX && want > end - off)
          want = (size_t)(end - off);
        if (want == 0) {
          eof = true;
          break;
        }
        ssize_t r = w->stream ? read(fd, w->buf + len, want)
                              : pread(fd, w->buf + len, want, (off_t)off);
        if (r < 0 && errno == EINTR)
          continue;
        if (r < 0)
          return kh_seterr(KH_ERR_IO, "read %s: %s", path, strerror(errno));
        if (r == 0) {
          eof = true;
          break;
        }
        len += (size_t)r;
        off += (uint64_t)r;
        *got += (uint64_t)r;
        atomic_fetch_add(&bc->bytes_read, (uint64_t)r);
      }
    }
    if (start == len)
      return KH_OK;
    if (has_fatal(bc) || cancel_requested(bc))
      return kh_seterr(KH_ERR_CANCELLED, "stopped");
    size_t cut = kh_chunker_next(&bc->v->chunker, w->buf + start, len - start, eof);
    if (cut == 0)
      continue; /* need more data (cannot happen with a full window) */
    uint8_t id[32];
    kh_err e = store_blob(w, KH_BLOB_DATA, w->buf + start, cut, id);
    if (!e)
      e = add_ref(w, id, cut);
    if (e)
      return e;
    atomic_fetch_add(&bc->bytes_done, cut);
    start += cut;
  }
}

static kh_err read_file(worker *w, bnode *n, const char *path, bool *skipped)
{
  *skipped = false;
  w->nrefs = 0;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
  if (fd < 0 && errno == EPERM)
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    *skipped = true;
    warn(w->bc, kh_errno_code(errno), path, strerror(errno));
    return KH_OK;
  }
  struct stat st;
  kh_err e = KH_OK;
  uint64_t total = 0, got;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *skipped = true;
    warn(w->bc, KH_ERR_IO, path, "changed type while being read");
    goto out;
  }
  if ((e = read_xattrs(w->bc, n, path, fd, w->xlist, w->xval)))
    goto out;
  bool sparse = st.st_size > 0 && (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size;
  if (sparse) {
    uint64_t pos = 0, size = (uint64_t)st.st_size;
    static const uint8_t zero[32];
    while (!e && pos < size) {
      off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
      if (d < 0 && errno != ENXIO) {
        /* no hole information (a virtual or remote file system): read
         * the rest, never record what was not read as a hole */
        e = read_range(w, fd, pos, UINT64_MAX, path, &got);
        total += got;
        break;
      }
      uint64_t data = d < 0 ? size : (uint64_t)d;
      if (data > size)
        data = size;
      if (data > pos) {
        e = add_ref(w, zero, data - pos); /* a hole */
        atomic_fetch_add(&w->bc->bytes_done, data - pos);
        total += data - pos;
      }
      if (e || data >= size)
        break;
      off_t h = lseek(fd, (off_t)data, SEEK_HOLE);
      uint64_t hend = h < 0 || (uint64_t)h > size ? size : (uint64_t)h;
      /* the last data reaches to end of file, wherever that is now: a
       * file that grew, or a virtual one (/sys) whose size says nothing */
      e = read_range(w, fd, data, hend >= size ? UINT64_MAX : hend, path, &got);
      total += got;
      pos = hend;
    }
  } else {
    e = read_range(w, fd, 0, UINT64_MAX, path, &total);
  }
  if (e == KH_ERR_IO) {
    *skipped = true;
    warn(w->bc, e, path, kh_errdetail());
    e = KH_OK;
    goto out;
  }
  if (!e) {
    n->size = total;
    n->nchunks = w->nrefs;
    n->chunks = malloc((w->nrefs ? w->nrefs : 1) * sizeof *n->chunks);
    if (!n->chunks)
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    else if (w->nrefs) /* an empty file has no refs array at all */
      memcpy(n->chunks, w->refs, w->nrefs * sizeof *n->chunks);
  }
out:
  close(fd);
  return e;
}

#define BATCH 16

static void *worker_main(void *arg)
{
  worker *w = arg;
  backup_ctx *bc = w->bc;
  job batch[BATCH];
  for (;;) {
    /* take several jobs per lock round: one wake-up per file costs more
     * than reading a small file */
    pthread_mutex_lock(&bc->qmu);
    while (bc->qlen == 0 && !bc->closing) {
      bc->idle++;
      pthread_cond_wait(&bc->qnotempty, &bc->qmu);
      bc->idle--;
    }
    if (bc->qlen == 0 && bc->closing) {
      pthread_mutex_unlock(&bc->qmu);
      break;
    }
    size_t take = bc->qlen / 2 + 1; /* leave work for the other workers */
    if (take > BATCH)
      take = BATCH;
    for (size_t i = 0; i < take; i++) {
      batch[i] = bc->q[bc->qhead];
      bc->qhead = (bc->qhead + 1) % QUEUE_LEN;
    }
    bc->qlen -= take;
    bc->busy++;
    if (bc->main_waiting)
      pthread_cond_signal(&bc->qnotfull);
    pthread_mutex_unlock(&bc->qmu);

    for (size_t i = 0; i < take; i++) {
      job j = batch[i];
      bool skipped = false;
      uint64_t statsize = j.node->size;
      if (bc->o->progress) {
        pthread_mutex_lock(&bc->cmu);
        bc->current[w->slot] = j.path;
        pthread_mutex_unlock(&bc->cmu);
      }
      kh_err e = has_fatal(bc) ? KH_OK : read_file(w, j.node, j.path, &skipped);
      if (bc->o->progress) {
        pthread_mutex_lock(&bc->cmu);
        bc->current[w->slot] = NULL;
        pthread_mutex_unlock(&bc->cmu);
      }
      if (!e && !skipped && !has_fatal(bc))
        file_done(bc, j.node, j.path);
      if (!e && !skipped && j.node->size > statsize)
        atomic_fetch_add(&bc->grown, j.node->size - statsize);
      else if (!e && !skipped && j.node->size < statsize)
        atomic_fetch_add(&bc->shrunk, statsize - j.node->size);
      if (e)
        set_fatal(bc, kh_adderr(e, "%s", j.path));
      j.node->failed = skipped;
      j.node->from_disk = !skipped && !e;
      if (skipped) {
        atomic_fetch_add(&bc->skipped_files, 1);
        atomic_fetch_add(&bc->skipped_bytes, j.node->size);
      }
      free(j.path);
      atomic_fetch_add(&bc->files_done, 1);
    }

    pthread_mutex_lock(&bc->qmu);
    bc->busy--;
    if (bc->qlen == 0 && bc->busy == 0 && bc->closing)
      pthread_cond_broadcast(&bc->qidle);
    pthread_mutex_unlock(&bc->qmu);
  }
  kh_err e = worker_flush(w);
  if (e)
    set_fatal(bc, e);
  return NULL;
}

static kh_err enqueue(backup_ctx *bc, bnode *n, const char *path)
{
  char *p = strdup(path);
  if (!p)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  pthread_mutex_lock(&bc->qmu);
  while (bc->qlen == QUEUE_LEN) {
    bc->main_waiting = true;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 250000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&bc->qnotfull, &bc->qmu, &ts);
    bc->main_waiting = false;
    pthread_mutex_unlock(&bc->qmu);
    progress(bc, false);
    pthread_mutex_lock(&bc->qmu);
  }
  bc->q[(bc->qhead + bc->qlen) % QUEUE_LEN] = (job){n, p};
  bc->qlen++;
  /* wake a sleeper only when the queue has enough for a batch, or it is
   * the first job (nobody is working) */
  if (bc->idle && (bc->qlen >= BATCH || bc->busy == 0))
    pthread_cond_signal(&bc->qnotempty);
  pthread_mutex_unlock(&bc->qmu);
  return KH_OK;
}

/* ---- the walk (main thread) ----------------------------------------------- */

static bool cache_hit(backup_ctx *bc, bnode *n, const char *path, size_t plen)
{
  if (!bc->cache)
    return false;
  kh_cache_key k = {n->size, n->ino, n->dev, n->mtime_ns, n->ctime_ns};
  kh_chunkref *refs = NULL;
  size_t cnt = 0;
  bool found = false, known = false;
  if (kh_cache_lookup(bc->cache, (const uint8_t *)path, plen, &k, &refs, &cnt, &found, &known) ||
      !found) {
    n->status = known ? KH_FILE_CHANGED : KH_FILE_NEW;
    return false;
  }
  n->status = known ? KH_FILE_CHANGED : KH_FILE_NEW; /* unless all chunks are usable */
  for (size_t i = 0; i < cnt; i++)
    if (!sodium_is_zero(refs[i].id, 32) &&
        !kh_vault_blob_usable(bc->v, &bc->v->index, kh_index_find(&bc->v->index, refs[i].id))) {
      free(refs); /* pruned or lost since: read it again */
      return false;
    }
  /* the attributes recorded with the chunks, unless the row (from before
   * they were) does not know them or they do not parse: then list them */
  const uint8_t *xp;
  size_t xl;
  uint32_t nx = 0;
  if (kh_cache_xattrs(bc->cache, &xp, &xl) && kh_xattr_list_count(xp, xl, &nx)) {
    if (xl && !(n->xattrs = malloc(xl))) {
      free(refs);
      return false;
    }
    if (xl)
      memcpy(n->xattrs, xp, xl);
    n->xattrlen = xl;
    n->nxattr = nx;
  } else if (read_xattrs(bc, n, path, -1, bc->xlist, bc->xval)) {
    free(refs);
    return false;
  }
  n->chunks = refs;
  n->nchunks = cnt;
  n->status = KH_FILE_UNMODIFIED;
  return true;
}

static kh_err visit(backup_ctx *bc, bnode *n, char *path, size_t plen, int depth);

#define CACHEDIR_TAG "CACHEDIR.TAG"
#define CACHEDIR_SIG "Signature: 8a477f597d28d172789f06886806bc55"

/* Does directory dfd hold a CACHEDIR.TAG that starts with the signature
 * (https://bford.info/cachedir/)? */
static bool cachedir_tagged(int dfd)
{
  char buf[sizeof CACHEDIR_SIG - 1];
  int fd = openat(dfd, CACHEDIR_TAG, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return false;
  size_t got = 0;
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
    while (got < sizeof buf) {
      ssize_t r = read(fd, buf + got, sizeof buf - got);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        break;
      got += (size_t)r;
    }
  close(fd);
  return got == sizeof buf && !memcmp(buf, CACHEDIR_SIG, sizeof buf);
}

/* Is a directory's content left out (--exclude-caches, --exclude-if-present)?
 * Then only the tag files themselves are kept. */
static bool dir_tagged(backup_ctx *bc, int dfd, bool *cache_tag)
{
  const kh_backup_opts *o = bc->o;
  struct stat st;
  *cache_tag = o->exclude_caches && cachedir_tagged(dfd);
  if (*cache_tag)
    return true;
  for (size_t i = 0; i < o->nexclude_if_present; i++)
    if (fstatat(dfd, o->exclude_if_present[i], &st, AT_SYMLINK_NOFOLLOW) == 0)
      return true;
  return false;
}

static bool is_tag_name(backup_ctx *bc, const char *name, bool cache_tag)
{
  if (cache_tag && !strcmp(name, CACHEDIR_TAG))
    return true;
  for (size_t i = 0; i < bc->o->nexclude_if_present; i++)
    if (!strcmp(name, bc->o->exclude_if_present[i]))
      return true;
  return false;
}

/* Is a file too large for --exclude-larger-than? */
static bool too_large(backup_ctx *bc, const struct stat *st)
{
  return bc->o->exclude_larger_than && S_ISREG(st->st_mode) &&
         (uint64_t)st->st_size > bc->o->exclude_larger_than;
}

static kh_err walk_dir(backup_ctx *bc, bnode *dir, char *path, size_t plen, int depth)
{
  if (depth > MAX_DEPTH) {
    warn(bc, KH_ERR_TOOBIG, path, "directory nesting too deep; contents skipped");
    return KH_OK;
  }
  DIR *d = opendir(path);
  if (!d) {
    warn(bc, kh_errno_code(errno), path, strerror(errno));
    return KH_OK; /* the directory itself is kept, empty */
  }
  kh_err e = KH_OK;
  struct dirent *de;
  bool cache_tag = false;
  bool tagged = (bc->o->exclude_caches || bc->o->nexclude_if_present) &&
                dir_tagged(bc, dirfd(d), &cache_tag);
  while (!e && !has_fatal(bc) && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    if (tagged && !is_tag_name(bc, de->d_name, cache_tag))
      continue;
    size_t nl = strlen(de->d_name);
    if (plen + 1 + nl >= 65536) {
      warn(bc, KH_ERR_TOOBIG, path, "path too long; entry skipped");
      continue;
    }
    size_t np = plen;
    if (np > 1 || path[0] != '/')
      path[np++] = '/';
    memcpy(path + np, de->d_name, nl + 1);
    if (bc->excl && kh_pattern_set_excludes(bc->excl, path, np + nl)) {
      path[plen] = 0;
      continue;
    }
    struct stat st;
    uint32_t flags = 0;
    if (stat_entry(dirfd(d), de->d_name, &st, &flags) != 0) {
      path[plen] = 0;
      if (errno != ENOENT) /* vanished meanwhile: not an error */
        warn(bc, kh_errno_code(errno), path, strerror(errno));
      continue;
    }
    if (too_large(bc, &st)) {
      path[plen] = 0;
      continue;
    }
    bnode *kid = node_new(de->d_name, nl, &st);
    if (!kid || (e = add_kid(dir, kid))) {
      node_free(kid);
      e = e ? e : kh_seterr(KH_ERR_NOMEM, "out of memory");
      path[plen] = 0;
      break;
    }
    kid->no_descend = bc->o->one_file_system && S_ISDIR(st.st_mode) && st.st_dev != dir->dev;
    e = node_meta(bc, kid, path, flags);
    if (!e)
      e = visit(bc, kid, path, np + nl, depth + 1);
    path[plen] = 0;
  }
  closedir(d);
  if (!e && dir->nkids > 1)
    qsort(dir->kids, dir->nkids, sizeof *dir->kids, node_cmp);
  return e;
}

/* ---- the counting walk (progress only) -------------------------------------- */

/* Files and bytes below path as the walk will find them (same excludes),
 * counted ahead of it so that the progress has totals, hence an ETA, within
 * seconds; the walk itself waits for the workers (a bounded queue).  Only
 * counters are kept: memory is one directory stream per level. */
static void count_dir(backup_ctx *bc, char *path, size_t plen, dev_t dev, int depth)
{
  DIR *d = depth > MAX_DEPTH ? NULL : opendir(path);
  if (!d)
    return;
  struct dirent *de;
  bool cache_tag = false;
  bool tagged = (bc->o->exclude_caches || bc->o->nexclude_if_present) &&
                dir_tagged(bc, dirfd(d), &cache_tag);
  while (!has_fatal(bc) && !atomic_load(&bc->count_stop) && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
        (tagged && !is_tag_name(bc, de->d_name, cache_tag)))
      continue;
    size_t nl = strlen(de->d_name), np = plen;
    if (plen + 1 + nl >= 65536)
      continue;
    if (np > 1 || path[0] != '/')
      path[np++] = '/';
    memcpy(path + np, de->d_name, nl + 1);
    struct stat st;
    if ((!bc->excl || !kh_pattern_set_excludes(bc->excl, path, np + nl)) &&
        fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !too_large(bc, &st)) {
      if (S_ISREG(st.st_mode)) {
        atomic_fetch_add(&bc->count_files, 1);
        atomic_fetch_add(&bc->count_bytes, (uint64_t)st.st_size);
      } else if (S_ISDIR(st.st_mode) && !(bc->o->one_file_system && st.st_dev != dev)) {
        count_dir(bc, path, np + nl, st.st_dev, depth + 1);
      }
    }
    path[plen] = 0;
  }
  closedir(d);
}

static void *count_main(void *arg)
{
  backup_ctx *bc = arg;
  char *path = malloc(65536);
  for (size_t i = 0; path && i < bc->o->npaths && !has_fatal(bc); i++) {
    const char *p = bc->o->paths[i];
    struct stat st;
    size_t l = strlen(p);
    if (p[0] != '/' || l >= 4096 || lstat(p, &st) != 0 ||
        (bc->excl && kh_pattern_set_excludes(bc->excl, p, l)) || too_large(bc, &st))
      continue;
    if (S_ISREG(st.st_mode)) {
      atomic_fetch_add(&bc->count_files, 1);
      atomic_fetch_add(&bc->count_bytes, (uint64_t)st.st_size);
    } else if (S_ISDIR(st.st_mode)) {
      memcpy(path, p, l + 1);
      while (l > 1 && path[l - 1] == '/')
        path[--l] = 0;
      count_dir(bc, path, l, st.st_dev, 0);
    }
  }
  free(path);
  atomic_store(&bc->count_done, true);
  return NULL;
}

static kh_err visit(backup_ctx *bc, bnode *n, char *path, size_t plen, int depth)
{
  switch (n->type) {
  case KH_NODE_DIR:
    bc->r->dirs++;
    return n->no_descend ? KH_OK : walk_dir(bc, n, path, plen, depth);
  case KH_NODE_SYMLINK: {
    char buf[4097];
    ssize_t l = readlink(path, buf, sizeof buf - 1);
    if (l < 0) {
      warn(bc, KH_ERR_IO, path, strerror(errno));
      n->failed = true;
      return KH_OK;
    }
    n->link = malloc((size_t)l + 1);
    if (!n->link)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    memcpy(n->link, buf, (size_t)l);
    n->linklen = (size_t)l;
    bc->r->others++;
    return KH_OK;
  }
  case KH_NODE_FILE:
    bc->files_total++;
    bc->bytes_total += n->size;
    bc->r->files++;
    n->status = KH_FILE_NEW; /* no cache: every file counts as new */
    if (cache_hit(bc, n, path, plen)) {
      atomic_fetch_add(&bc->files_done, 1);
      atomic_fetch_add(&bc->bytes_done, n->size);
      file_done(bc, n, path);
      progress(bc, false);
      return KH_OK;
    }
    progress(bc, false);
    return enqueue(bc, n, path);
  default:
    bc->r->others++;
    return KH_OK;
  }
}

/* Insert an absolute path's components below root, then visit its end. */
static kh_err add_path(backup_ctx *bc, bnode *root, const char *abs)
{
  char *path = malloc(65536);
  if (!path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  kh_err e = KH_OK;
  struct stat st;
  if (abs[0] != '/' || strlen(abs) >= 4096) {
    e = kh_seterr(KH_ERR_INVAL, "backup paths must be absolute: %s", abs);
    goto out;
  }
  if (lstat(abs, &st) != 0) { /* reported; the other paths are still backed up */
    warn(bc, kh_errno_code(errno), abs, strerror(errno));
    goto out;
  }
  bnode *cur = root;
  const char *p = abs;
  path[0] = '/';
  path[1] = 0;
  size_t plen = 1;
  while (*p) {
    while (*p == '/')
      p++;
    if (!*p)
      break;
    const char *end = strchr(p, '/');
    size_t cl = end ? (size_t)(end - p) : strlen(p);
    bool last = !end || !end[strspn(end, "/")];
    if (plen > 1)
      path[plen++] = '/';
    memcpy(path + plen, p, cl);
    plen += cl;
    path[plen] = 0;
    if ((cl == 1 && p[0] == '.') || (cl == 2 && p[0] == '.' && p[1] == '.')) {
      e = kh_seterr(KH_ERR_INVAL, "path must be normalised (no . or ..): %s", abs);
      goto out;
    }
    bnode *kid = NULL;
    for (size_t i = 0; i < cur->nkids; i++)
      if (cur->kids[i]->namelen == cl && !memcmp(cur->kids[i]->name, p, cl))
        kid = cur->kids[i];
    if (kid && last) {
      goto out; /* the same path twice, or inside one given before */
    }
    if (!kid) {
      struct stat cs;
      uint32_t flags = 0;
      if (stat_entry(AT_FDCWD, path, &cs, &flags) != 0) {
        e = kh_seterr(kh_errno_code(errno), "%s: %s", path, strerror(errno));
        goto out;
      }
      if (!last && !S_ISDIR(cs.st_mode)) {
        e = kh_seterr(KH_ERR_INVAL, "%s is not a directory", path);
        goto out;
      }
      kid = node_new(p, cl, &cs);
      if (!kid || (e = add_kid(cur, kid))) {
        node_free(kid);
        e = e ? e : kh_seterr(KH_ERR_NOMEM, "out of memory");
        goto out;
      }
      if (last && ((bc->excl && kh_pattern_set_excludes(bc->excl, path, plen)) ||
                   too_large(bc, &cs))) {
        /* excluded itself (the directories above it stay) */
        cur->nkids--;
        node_free(kid);
        goto out;
      }
      qsort(cur->kids, cur->nkids, sizeof *cur->kids, node_cmp);
      if ((e = node_meta(bc, kid, path, flags)))
        goto out;
      if (last) {
        e = visit(bc, kid, path, plen, 0);
        goto out;
      }
    }
    cur = kid;
    p += cl;
  }
  if (cur == root) /* "/" itself */
    e = walk_dir(bc, root, path, 1, 0);
out:
  free(path);
  return e;
}

/* Back up what fd yields as the file abs (o->stdin_name), read on the
 * calling thread with worker w. */
static kh_err add_stream(backup_ctx *bc, worker *w, bnode *root, const char *abs, int fd)
{
  kh_err e = KH_OK;
  struct stat st;
  memset(&st, 0, sizeof st);
  st.st_uid = getuid();
  st.st_gid = getgid();
  st.st_nlink = 1;
  clock_gettime(CLOCK_REALTIME, &st.st_mtim);
  st.st_ctim = st.st_mtim;
  bnode *cur = root, *kid = NULL;
  const char *p = abs;
  while (*p == '/')
    p++;
  while (*p) {
    const char *end = strchr(p, '/');
    size_t cl = end ? (size_t)(end - p) : strlen(p);
    bool last = !end;
    st.st_mode = last ? S_IFREG | 0644 : S_IFDIR | 0755;
    if (!(kid = node_new(p, cl, &st)) || (e = add_kid(cur, kid))) {
      node_free(kid);
      return e ? e : kh_seterr(KH_ERR_NOMEM, "out of memory");
    }
    if (!last)
      bc->r->dirs++;
    cur = kid;
    p += cl + (end ? 1 : 0);
  }
  w->stream = true;
  w->nrefs = 0;
  uint64_t got = 0;
  e = read_range(w, fd, 0, UINT64_MAX, abs, &got);
  w->stream = false;
  if (e)
    return e;
  cur->size = got;
  cur->nchunks = w->nrefs;
  cur->chunks = malloc((w->nrefs ? w->nrefs : 1) * sizeof *cur->chunks);
  if (!cur->chunks)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (w->nrefs)
    memcpy(cur->chunks, w->refs, w->nrefs * sizeof *cur->chunks);
  bc->r->files++;
  bc->files_total++;
  bc->bytes_total += got;
  atomic_fetch_add(&bc->files_done, 1);
  cur->status = KH_FILE_NEW;
  file_done(bc, cur, abs);
  return KH_OK;
}

/* Is name absolute and normalised (no empty, "." or ".." component, no
 * trailing "/"), and not "/" itself? */
static bool stdin_name_ok(const char *name)
{
  if (name[0] != '/' || !name[1] || strlen(name) >= 4096)
    return false;
  for (const char *c = name + 1;;) {
    const char *e = strchr(c, '/');
    size_t n = e ? (size_t)(e - c) : strlen(c);
    if (!n || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
      return false;
    if (!e)
      return true;
    c = e + 1;
  }
}

/* ---- trees (main thread, after the workers) ----------------------------- */

static kh_err store_trees(backup_ctx *bc, worker *w, bnode *dir)
{
  kh_err e = KH_OK;
  for (size_t i = 0; i < dir->nkids && !e; i++)
    if (dir->kids[i]->type == KH_NODE_DIR)
      e = store_trees(bc, w, dir->kids[i]);
  if (e)
    return e;
  kh_tnode *tn = calloc(dir->nkids ? dir->nkids : 1, sizeof *tn);
  kh_buf enc;
  kh_buf_init(&enc, KH_BLOB_MAX);
  if (!tn)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < dir->nkids; i++) {
    bnode *n = dir->kids[i];
    if (n->failed)
      continue;
    kh_tnode *t = &tn[k++];
    t->name = n->name;
    t->namelen = n->namelen;
    t->type = n->type;
    t->mode = n->mode;
    t->uid = n->uid;
    t->gid = n->gid;
    t->mtime_ns = n->mtime_ns;
    t->size = n->size;
    t->nlink = n->nlink;
    t->ino = n->ino;
    t->dev = n->dev;
    t->rdev = n->rdev;
    t->link = n->link;
    t->linklen = n->linklen;
    memcpy(t->subtree, n->tree_id, 32);
    t->chunks = n->chunks;
    t->nchunks = n->nchunks;
    t->flags = n->flags;
    t->xattrs = n->xattrs;
    t->xattrlen = n->xattrlen;
    t->nxattr = n->nxattr;
  }
  e = kh_tree_encode(tn, k, &enc);
  if (!e)
    e = store_blob(w, KH_BLOB_TREE, enc.data, enc.len, dir->tree_id);
  free(tn);
  kh_buf_release(&enc);
  return e;
}

static kh_err cache_update(backup_ctx *bc, bnode *n, char *path, size_t plen)
{
  kh_err e = KH_OK;
  if (n->type == KH_NODE_FILE && n->from_disk) {
    kh_cache_key k = {n->size, n->ino, n->dev, n->mtime_ns, n->ctime_ns};
    return kh_cache_put(bc->cache, (const uint8_t *)path, plen, &k, n->chunks, n->nchunks,
                        n->xattrs_unknown ? NULL : n->xattrs ? n->xattrs : (const uint8_t *)"",
                        n->xattrlen);
  }
  for (size_t i = 0; !e && i < n->nkids; i++) {
    bnode *c = n->kids[i];
    if (plen + 1 + c->namelen >= 65536)
      continue;
    size_t np = plen;
    if (np > 1)
      path[np++] = '/';
    memcpy(path + np, c->name, c->namelen);
    path[np + c->namelen] = 0;
    e = cache_update(bc, c, path, np + c->namelen);
    path[plen] = 0;
  }
  return e;
}

/* ---- the whole backup ------------------------------------------------------ */

static void worker_release(worker *w)
{
  free(w->xlist);
  free(w->xval);
  free(w->buf);
  free(w->zbuf);
  ZSTD_freeCCtx(w->zc);
  kh_pack_writer_release(&w->pack);
  free(w->refs);
}

static kh_err worker_init(worker *w, backup_ctx *bc)
{
  memset(w, 0, sizeof *w);
  w->bc = bc;
  w->bufcap = 2 * KH_CHUNK_MAX;
  w->buf = malloc(w->bufcap);
  w->zc = ZSTD_createCCtx();
  w->xlist = malloc(XATTR_LIST_MAX);
  w->xval = malloc(KH_XATTR_VALUE_MAX);
  if (!w->buf || !w->zc || !w->xlist || !w->xval)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  return kh_pack_writer_init(&w->pack);
}

/* Find the parent (latest snapshot of the same host and paths) and the
 * highest counter this device used in the region.  A list that cannot be
 * read fails the backup: a snapshot without its parent and with a counter
 * from 0 would be ordered wrongly. */
static kh_err find_parent(kh_vault *v, const char *host, char **paths, size_t np, kh_snap *s,
                          uint64_t *maxctr)
{
  kh_snapshot_info *list = NULL;
  size_t n = 0;
  *maxctr = 0;
  kh_err e = kh_snapshots_list(v, &list, &n);
  if (e == KH_ERR_DENIED) {
    /* a backup-only device on a region server may not read snapshots: no
     * parent, and the device's own counter file (which only grows) numbers
     * the snapshot */
    kh_clearerr();
    return KH_OK;
  }
  if (e)
    return e;
  for (size_t i = 0; i < n; i++) {
    char dev[33];
    kh_hex_encode(dev, v->device_id, 16);
    if (!strcmp(list[i].device, dev) && list[i].counter > *maxctr)
      *maxctr = list[i].counter;
    if (strcmp(list[i].host, host) || list[i].npaths != np)
      continue;
    bool same = true;
    for (size_t j = 0; j < np && same; j++)
      same = !strcmp(list[i].paths[j], paths[j]);
    if (same) {
      s->has_parent = true;
      kh_hex_decode(s->parent, 32, list[i].id, 64);
    }
  }
  kh_snapshots_free(list, n);
  return KH_OK;
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

kh_err kh_backup(kh_vault *v, const kh_backup_opts *o, kh_backup_result *r)
{
  memset(r, 0, sizeof *r);
  if (o->stdin_name && (o->npaths || !stdin_name_ok(o->stdin_name)))
    return kh_seterr(KH_ERR_INVAL, "standard input needs an absolute, normalised file name "
                                   "and no other paths");
  if (!o->npaths && !o->stdin_name)
    return kh_seterr(KH_ERR_INVAL, "nothing to back up");
  const size_t np = o->stdin_name ? 1 : o->npaths;
  const char *const *opaths = o->stdin_name ? &o->stdin_name : o->paths;
  kh_err e = KH_OK;
  backup_ctx *bc = calloc(1, sizeof *bc);
  if (!bc)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  bc->v = v;
  bc->o = o;
  bc->r = r;
  bc->t0 = bc->last_refresh = bc->last_flush = kh_now();
  pthread_mutex_init(&bc->qmu, NULL);
  pthread_mutex_init(&bc->nmu, NULL);
  pthread_mutex_init(&bc->wmu, NULL);
  pthread_mutex_init(&bc->cmu, NULL);
  pthread_cond_init(&bc->qnotempty, NULL);
  pthread_cond_init(&bc->qnotfull, NULL);
  pthread_cond_init(&bc->qidle, NULL);
  kh_index_init(&bc->newidx);
  int nthreads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (nthreads < 1)
    nthreads = 1;
  if (nthreads > 16)
    nthreads = 16;
  worker *ws = calloc((size_t)nthreads + 1, sizeof *ws);
  int started = 0;
  bnode *root = NULL;
  char **paths = NULL;
  kh_snap snap = {0};
  struct stat rst;
  if (!ws) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  /* a dry run takes no lock: it writes nothing another run could trip on */
  if (!o->dry_run && (e = kh_vault_lock(v, false)))
    goto out;
  if ((e = kh_vault_load_index(v, NULL, NULL)))
    goto out;
  {
    /* packs the index names but the provider lost are not deduplicated
     * against (and recorded, so every device and reader knows) */
    uint64_t lost;
    e = kh_vault_scan_packs(v, !o->dry_run, &lost);
    if (e == KH_ERR_DENIED) {
      /* a backup-only device may not list packs: it trusts the index */
      kh_clearerr();
      e = KH_OK;
    }
    if (e)
      goto out;
  }
  if (o->nexcludes) {
    if ((e = kh_pattern_set_new(&bc->excl)))
      goto out;
    for (size_t i = 0; i < o->nexcludes && !e; i++)
      e = kh_pattern_set_add(bc->excl, o->excludes[i].pattern, o->excludes[i].icase);
    if (e)
      goto out;
  }
  if (v->cache_path && kh_cache_open(v->cache_path, &bc->cache) != KH_OK)
    bc->cache = NULL; /* no cache: slower, nothing lost */
  bc->xlist = malloc(XATTR_LIST_MAX);
  bc->xval = malloc(KH_XATTR_VALUE_MAX);
  uint32_t rflags = 0;
  if (!bc->xlist || !bc->xval || stat_entry(AT_FDCWD, "/", &rst, &rflags) != 0 ||
      !(root = node_new("", 0, &rst))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (!o->stdin_name && (e = node_meta(bc, root, "/", rflags)))
    goto out;
  for (int i = 0; i <= nthreads; i++) {
    if ((e = worker_init(&ws[i], bc)))
      goto out;
    ws[i].slot = i % KH_PROGRESS_CURRENT;
  }
  /* the counting walk costs a second stat of everything: only for a caller
   * that shows progress */
  if (o->progress && o->npaths && pthread_create(&bc->counter, NULL, count_main, bc) == 0)
    bc->counting = true;
  for (; started < nthreads; started++)
    if (pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]) != 0) {
      e = kh_seterr(KH_ERR_NOMEM, "cannot start threads");
      goto out;
    }
  paths = calloc(np, sizeof *paths);
  if (!paths) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < np; i++) {
    if (!(paths[i] = strdup(opaths[i]))) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
  }
  qsort(paths, np, sizeof *paths, cmp_str);
  if (o->stdin_name)
    e = add_stream(bc, &ws[nthreads], root, paths[0], o->stdin_fd);
  for (size_t i = 0; i < o->npaths && !e && !has_fatal(bc); i++)
    e = add_path(bc, root, paths[i]);
  if (!e && root->nkids == 0)
    e = kh_seterr(KH_ERR_NOTFOUND, "none of the paths could be read");
  bc->scan_done = true;
out:
  atomic_store(&bc->count_stop, true); /* the walk is over: its totals are the real ones */
  /* drain and stop the workers whatever happened */
  pthread_mutex_lock(&bc->qmu);
  bc->closing = true;
  pthread_cond_broadcast(&bc->qnotempty);
  while (bc->qlen || bc->busy) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 250000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&bc->qidle, &bc->qmu, &ts);
    pthread_mutex_unlock(&bc->qmu);
    progress(bc, false);
    pthread_mutex_lock(&bc->qmu);
  }
  pthread_mutex_unlock(&bc->qmu);
  for (int i = 0; i < started; i++)
    pthread_join(ws[i].tid, NULL);
  if (bc->counting) {
    pthread_join(bc->counter, NULL);
    bc->counting = false;
  }
  if (!e && bc->fatal)
    e = kh_err_restore(&bc->fatal_why);
  if (e == KH_ERR_CANCELLED) {
    /* keep what was stored: the workers flushed their last packs */
    kh_err fe = index_flush(bc);
    e = fe ? fe : kh_seterr(KH_ERR_CANCELLED, "interrupted; no snapshot was made");
    goto done;
  }
  /* what could not be read is not in the snapshot: do not count it */
  r->files -= atomic_load(&bc->skipped_files);
  bc->bytes_total -= atomic_load(&bc->skipped_bytes);
  bc->bytes_total += atomic_load(&bc->grown) - atomic_load(&bc->shrunk);
  if (!e) { /* trees, then the last pack, the index, the snapshot */
    worker *tw = &ws[nthreads];
    e = store_trees(bc, tw, root);
    if (!e)
      e = worker_flush(tw);
  }
  uint8_t idxid[32], snapid[32];
  if (!e) /* still ours?  Only then may the index and snapshot name our packs */
    e = kh_vault_lock_refresh(v);
  if (!e && o->dry_run)
    goto done; /* counted; nothing to write */
  if (!e && bc->newidx.npacks > bc->flushed)
    e = kh_vault_write_index(v, &bc->newidx, bc->flushed, NULL, 0, idxid);
  if (!e) {
    /* the new blobs are durable and indexed: make them visible to later
     * calls on this handle too (session pack p becomes base + p) */
    uint32_t base = (uint32_t)v->index.npacks, no;
    for (size_t p = 0; p < bc->newidx.npacks && !e; p++)
      e = kh_index_add_pack(&v->index, bc->newidx.packs[p].id, bc->newidx.packs[p].size, &no);
    for (size_t i = 0; !e && i < bc->newidx.cap; i++) {
      kh_index_entry *en = &bc->newidx.slots[i];
      if (en->used && en->pack < bc->newidx.npacks) {
        kh_pack_blob b;
        kh_index_blob(en, &b);
        kh_index_entry *have = kh_index_find(&v->index, b.id);
        if (have && !kh_vault_blob_usable(v, &v->index, have)) { /* stored again */
          have->pack = base + en->pack;
          have->offset = b.offset;
          have->clen = b.clen;
          have->ulen = b.ulen;
        } else {
          e = kh_index_add(&v->index, &b, base + en->pack, NULL);
        }
      }
    }
  }
  if (!e) {
    char host[256] = "";
    if (o->host)
      snprintf(host, sizeof host, "%s", o->host);
    else
      gethostname(host, sizeof host - 1);
    uint64_t maxctr;
    snap.time_ns = kh_wall_ns();
    snap.host = host;
    snap.paths = paths;
    snap.npaths = np;
    snap.tags = (char **)o->tags; /* not freed: borrowed for the encoding */
    snap.ntags = o->ntags;
    memcpy(snap.tree, root->tree_id, 32);
    memcpy(snap.device, v->device_id, 16);
    e = find_parent(v, host, paths, np, &snap, &maxctr);
    snap.files = r->files;
    snap.bytes = bc->bytes_total;
    if (!e)
      e = kh_vault_next_counter(v, maxctr, &snap.counter);
    if (!e)
      e = kh_vault_write_snapshot(v, &snap, snapid);
    snap.host = NULL;
    snap.paths = NULL;
    snap.tags = NULL;
    snap.ntags = 0;
    if (!e)
      kh_hex_encode(r->snapshot_id, snapid, 32);
  }
  if (!e && bc->cache) {
    char *path = malloc(65536);
    if (path) {
      path[0] = '/';
      path[1] = 0;
      if (kh_cache_begin(bc->cache) == KH_OK) {
        cache_update(bc, root, path, 1);
        kh_cache_commit(bc->cache);
      }
      free(path);
    }
  }
done:
  progress(bc, true);
  r->bytes = bc->bytes_total;
  r->bytes_read = atomic_load(&bc->bytes_read);
  r->blobs_new = atomic_load(&bc->blobs_new);
  r->bytes_new_plain = atomic_load(&bc->bytes_new);
  r->bytes_new_stored = atomic_load(&bc->bytes_stored);
  r->warnings = bc->warnings;
  r->seconds = kh_now() - bc->t0;
  kh_vault_unlock(v);
  if (ws)
    for (int i = 0; i <= nthreads; i++)
      worker_release(&ws[i]);
  free(ws);
  if (paths)
    for (size_t i = 0; i < np; i++)
      free(paths[i]);
  free(paths);
  node_free(root);
  kh_cache_free(bc->cache);
  kh_pattern_set_free(bc->excl);
  free(bc->xlist);
  free(bc->xval);
  kh_index_release(&bc->newidx);
  pthread_mutex_destroy(&bc->qmu);
  pthread_mutex_destroy(&bc->nmu);
  pthread_mutex_destroy(&bc->wmu);
  pthread_mutex_destroy(&bc->cmu);
  pthread_cond_destroy(&bc->qnotempty);
  pthread_cond_destroy(&bc->qnotfull);
  pthread_cond_destroy(&bc->qidle);
  free(bc);
  return e;
}

kh_err kh_backup_check_pattern(const char *pattern)
{
  return kh_pattern_check(pattern);
}
