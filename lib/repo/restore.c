/* Restore: recreate a snapshot's paths under a target directory.  Files are
 * written by worker threads to a temporary name next to their place and
 * renamed only when every byte authenticated, so a file that cannot be
 * restored intact is never left in the target. */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct ritem {
  char *path;          /* target path */
  uint8_t type;
  uint32_t mode, uid, gid;
  int64_t mtime_ns;
  uint64_t size, nlink, ino, dev, rdev;
  char *link;
  kh_chunkref *chunks;
  size_t nchunks;
  long link_to;        /* hard link: index of the first item with this inode, else -1 */
  int depth;
  bool failed;
} ritem;

typedef struct rctx {
  kh_vault *v;
  const kh_restore_opts *o;
  kh_restore_result *r;
  ritem *items;
  size_t n, cap;
  const char *const *incl;
  size_t nincl;
  bool *incl_found;    /* an include named something in the snapshot */
  char *tpath;
  size_t tlen, tcap;
  _Atomic size_t next;
  _Atomic uint64_t files_done, bytes_done, failed;
  uint64_t files_total, bytes_total;
  pthread_mutex_t wmu;
  bool root;
  uid_t euid;
  gid_t egid;
  double t0, last;
  kh_err fatal;
} rctx;

static void rwarn(rctx *c, kh_err e, const char *path, const char *msg)
{
  pthread_mutex_lock(&c->wmu);
  if (c->o->warn)
    c->o->warn(e, path, msg, c->o->ctx);
  pthread_mutex_unlock(&c->wmu);
}

/* Is snapshot path p (len n) selected by the includes?  Also true for the
 * ancestors of an include, which must exist to hold it. */
static bool selected(rctx *c, const uint8_t *p, size_t n)
{
  if (!c->nincl)
    return true;
  for (size_t i = 0; i < c->nincl; i++) {
    const char *inc = c->incl[i];
    size_t il = strlen(inc);
    while (il > 1 && inc[il - 1] == '/')
      il--;
    size_t m = n < il ? n : il;
    if (memcmp(p, inc, m))
      continue;
    if (n == il) {
      c->incl_found[i] = true;
      return true;
    }
    if ((n > il && (p[il] == '/' || il == 1)) || (n < il && inc[n] == '/'))
      return true;
  }
  return false;
}

static kh_err add_item(rctx *c, const kh_tnode *t, int depth)
{
  if (c->n == c->cap) {
    size_t nc = c->cap ? c->cap * 2 : 256;
    ritem *ni = realloc(c->items, nc * sizeof *ni);
    if (!ni)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    c->items = ni;
    c->cap = nc;
  }
  ritem *it = &c->items[c->n];
  memset(it, 0, sizeof *it);
  it->path = strndup(c->tpath, c->tlen);
  it->type = t->type;
  it->mode = t->mode;
  it->uid = t->uid;
  it->gid = t->gid;
  it->mtime_ns = t->mtime_ns;
  it->size = t->size;
  it->nlink = t->nlink;
  it->ino = t->ino;
  it->dev = t->dev;
  it->rdev = t->rdev;
  it->link_to = -1;
  it->depth = depth;
  if (!it->path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (t->type == KH_NODE_SYMLINK && !(it->link = strndup((const char *)t->link, t->linklen))) {
    free(it->path);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  if (t->type == KH_NODE_FILE && t->nchunks) {
    it->chunks = malloc(t->nchunks * sizeof *it->chunks);
    if (!it->chunks) {
      free(it->path);
      free(it->link);
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    }
    memcpy(it->chunks, t->chunks, t->nchunks * sizeof *it->chunks);
    it->nchunks = t->nchunks;
  }
  c->n++;
  return KH_OK;
}

static kh_err collect(rctx *c, const uint8_t tree_id[32], size_t snaplen_at, int depth)
{
  if (depth > 1024)
    return kh_seterr(KH_ERR_FORMAT, "tree nesting too deep");
  kh_tree t;
  kh_err e = kh_vault_load_tree(c->v, tree_id, &t);
  if (e)
    return e;
  for (size_t i = 0; !e && i < t.n; i++) {
    const kh_tnode *x = &t.nodes[i];
    if (memchr(x->name, 0, x->namelen))
      continue; /* cannot exist on POSIX; the decoder refuses it too */
    size_t need = c->tlen + 1 + x->namelen + 1;
    if (need > c->tcap) {
      char *np = realloc(c->tpath, need * 2);
      if (!np) {
        e = kh_seterr(KH_ERR_NOMEM, "out of memory");
        break;
      }
      c->tpath = np;
      c->tcap = need * 2;
    }
    size_t saved = c->tlen;
    c->tpath[c->tlen++] = '/';
    memcpy(c->tpath + c->tlen, x->name, x->namelen);
    c->tlen += x->namelen;
    c->tpath[c->tlen] = 0;
    const uint8_t *sp = (const uint8_t *)c->tpath + snaplen_at;
    size_t sl = c->tlen - snaplen_at;
    if (selected(c, sp, sl)) {
      e = add_item(c, x, depth);
      if (!e && x->type == KH_NODE_DIR)
        e = collect(c, x->subtree, snaplen_at, depth + 1);
    }
    c->tlen = saved;
    c->tpath[saved] = 0;
  }
  kh_tree_release(&t);
  return e;
}

static void set_times(int fd, const char *path, int64_t mtime_ns, bool nofollow)
{
  struct timespec ts[2];
  ts[0].tv_sec = 0;
  ts[0].tv_nsec = UTIME_OMIT;
  ts[1].tv_sec = (time_t)(mtime_ns / 1000000000);
  ts[1].tv_nsec = (long)(mtime_ns % 1000000000);
  if (ts[1].tv_nsec < 0) {
    ts[1].tv_sec--;
    ts[1].tv_nsec += 1000000000;
  }
  if (fd >= 0)
    futimens(fd, ts);
  else if (path)
    utimensat(AT_FDCWD, path, ts, nofollow ? AT_SYMLINK_NOFOLLOW : 0);
}

static kh_err write_all_at(int fd, const uint8_t *p, size_t n, uint64_t off)
{
  while (n) {
    ssize_t w = pwrite(fd, p, n, (off_t)off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return kh_seterr(kh_errno_code(errno), "write: %s", strerror(errno));
    p += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
  return KH_OK;
}

static void restore_file(rctx *c, ritem *it, kh_buf *blob)
{
  size_t pl = strlen(it->path);
  char *tmp = malloc(pl + 32);
  if (!tmp) {
    it->failed = true;
    rwarn(c, KH_ERR_NOMEM, it->path, "out of memory");
    return;
  }
  /* A new file is written in place (removed again if anything fails); an
   * existing one is replaced only by a complete, authenticated copy. */
  kh_err e = KH_OK;
  bool replace = false, created = false;
  int fd = open(it->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    const char *slash = strrchr(it->path, '/');
    size_t dl = (size_t)(slash - it->path);
    uint8_t rnd[4];
    randombytes_buf(rnd, sizeof rnd);
    snprintf(tmp, pl + 32, "%.*s/.kh-restore-%02x%02x%02x%02x", (int)dl, it->path, rnd[0],
             rnd[1], rnd[2], rnd[3]);
    replace = true;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  }
  const char *wpath = replace ? tmp : it->path;
  if (fd < 0) {
    e = kh_seterr(kh_errno_code(errno), "create: %s", strerror(errno));
    goto out;
  }
  created = true; /* from here on, a failure removes wpath */
  uint64_t off = 0;
  for (size_t i = 0; !e && i < it->nchunks; i++) {
    const kh_chunkref *r = &it->chunks[i];
    if (sodium_is_zero(r->id, 32)) { /* hole: leave it sparse */
      off += r->len;
      continue;
    }
    e = kh_vault_read_blob(c->v, r->id, blob);
    if (!e && blob->len != r->len)
      e = kh_seterr(KH_ERR_FORMAT, "chunk length differs from the tree");
    if (!e)
      e = write_all_at(fd, blob->data, blob->len, off);
    off += r->len;
    atomic_fetch_add(&c->bytes_done, r->len);
  }
  if (!e && off != it->size)
    e = kh_seterr(KH_ERR_FORMAT, "chunk lengths do not add up to the file size");
  if (!e && it->nchunks && sodium_is_zero(it->chunks[it->nchunks - 1].id, 32) &&
      ftruncate(fd, (off_t)it->size) != 0) /* a trailing hole */
    e = kh_seterr(kh_errno_code(errno), "truncate: %s", strerror(errno));
  if (!e) {
    if (c->root && (it->uid != c->euid || it->gid != c->egid) &&
        fchown(fd, it->uid, it->gid) != 0)
      e = kh_seterr(KH_ERR_IO, "chown: %s", strerror(errno));
    if (!e && fchmod(fd, it->mode) != 0)
      e = kh_seterr(KH_ERR_IO, "chmod: %s", strerror(errno));
    set_times(fd, NULL, it->mtime_ns, false);
  }
  if (close(fd) != 0 && !e)
    e = kh_seterr(KH_ERR_IO, "close: %s", strerror(errno));
  fd = -1;
  if (!e && replace && rename(tmp, it->path) != 0)
    e = kh_seterr(kh_errno_code(errno), "rename: %s", strerror(errno));
out:
  if (e) {
    if (fd >= 0)
      close(fd);
    if (created)
      unlink(wpath); /* never leave bytes that did not authenticate */
    it->failed = true;
    atomic_fetch_add(&c->failed, 1);
    rwarn(c, e, it->path, kh_errdetail());
    if (e == KH_ERR_NOSPACE) {
      pthread_mutex_lock(&c->wmu);
      c->fatal = e; /* a full disk fails every file that follows */
      pthread_mutex_unlock(&c->wmu);
    }
  }
  atomic_fetch_add(&c->files_done, 1);
  free(tmp);
}

static void *restore_worker(void *arg)
{
  rctx *c = arg;
  kh_buf blob;
  kh_buf_init(&blob, KH_BLOB_MAX);
  for (;;) {
    size_t i = atomic_fetch_add(&c->next, 1);
    if (i >= c->n)
      break;
    ritem *it = &c->items[i];
    if (it->type != KH_NODE_FILE || it->link_to >= 0)
      continue;
    pthread_mutex_lock(&c->wmu);
    bool stop = c->fatal != KH_OK;
    pthread_mutex_unlock(&c->wmu);
    if (stop) {
      it->failed = true;
      atomic_fetch_add(&c->failed, 1);
      continue;
    }
    restore_file(c, it, &blob);
  }
  kh_buf_release(&blob);
  return NULL;
}

static void rprogress(rctx *c, bool force)
{
  if (!c->o->progress)
    return;
  double now = kh_now();
  if (!force && now - c->last < 0.25)
    return;
  c->last = now;
  kh_progress p = {.files_done = atomic_load(&c->files_done), .files_total = c->files_total,
                   .bytes_done = atomic_load(&c->bytes_done), .bytes_total = c->bytes_total,
                   .scan_done = true, .elapsed = now - c->t0};
  c->o->progress(&p, c->o->ctx);
}

static int cmp_hl(const void *a, const void *b, void *arg)
{
  const ritem *items = arg;
  const ritem *x = &items[*(const size_t *)a], *y = &items[*(const size_t *)b];
  if (x->dev != y->dev)
    return x->dev < y->dev ? -1 : 1;
  if (x->ino != y->ino)
    return x->ino < y->ino ? -1 : 1;
  return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

kh_err kh_restore(kh_vault *v, const char *snap, const kh_restore_opts *o, kh_restore_result *r)
{
  memset(r, 0, sizeof *r);
  if (!o->target || !o->target[0])
    return kh_seterr(KH_ERR_INVAL, "no target directory");
  rctx *c = calloc(1, sizeof *c);
  if (!c)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  c->v = v;
  c->o = o;
  c->r = r;
  c->incl = o->includes;
  c->nincl = o->nincludes;
  c->euid = geteuid();
  c->egid = getegid();
  c->root = c->euid == 0;
  c->t0 = kh_now();
  pthread_mutex_init(&c->wmu, NULL);
  kh_err e = KH_OK;
  uint8_t id[32];
  kh_snap s = {0};
  pthread_t tids[16];
  int started = 0;
  size_t *hl = NULL;
  bool locked = false; /* shared: prune waits until we are done (docs/format.md §10) */
  if ((e = kh_vault_lock(v, false)))
    goto out;
  locked = true;
  if ((e = kh_vault_resolve(v, snap, id)) || (e = kh_vault_load_snapshot(v, id, &s)) ||
      (e = kh_vault_load_index(v, NULL, NULL)))
    goto out;
  if ((e = kh_mkdirs(o->target, 0700)))
    goto out;
  {
    char *t = realpath(o->target, NULL);
    if (!t) {
      e = kh_seterr(KH_ERR_IO, "%s: %s", o->target, strerror(errno));
      goto out;
    }
    c->tlen = strlen(strcmp(t, "/") ? t : "");
    c->tcap = c->tlen + 4096;
    c->tpath = malloc(c->tcap);
    if (!c->tpath) {
      free(t);
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    memcpy(c->tpath, t, c->tlen);
    c->tpath[c->tlen] = 0;
    free(t);
  }
  if (c->nincl && !(c->incl_found = calloc(c->nincl, sizeof *c->incl_found))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((e = collect(c, s.tree, c->tlen, 0)))
    goto out;
  /* an include that names nothing is reported (after restoring the rest) */
  const char *missing = NULL;
  for (size_t i = 0; i < c->nincl; i++)
    if (!c->incl_found[i] && strcmp(c->incl[i], "/")) {
      rwarn(c, KH_ERR_NOTFOUND, c->incl[i], "is not in the snapshot");
      missing = c->incl[i];
    }
  /* hard links: later items of the same (dev, inode) link to the first */
  hl = malloc((c->n ? c->n : 1) * sizeof *hl);
  if (!hl) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  size_t nhl = 0;
  for (size_t i = 0; i < c->n; i++)
    if (c->items[i].type == KH_NODE_FILE && c->items[i].nlink > 1)
      hl[nhl++] = i;
  qsort_r(hl, nhl, sizeof *hl, cmp_hl, c->items);
  for (size_t i = 1; i < nhl; i++) {
    ritem *a = &c->items[hl[i - 1]], *b = &c->items[hl[i]];
    if (a->dev == b->dev && a->ino == b->ino)
      b->link_to = a->link_to >= 0 ? a->link_to : (long)hl[i - 1];
  }
  /* pass 1: directories and non-file nodes, in tree order */
  for (size_t i = 0; i < c->n; i++) {
    ritem *it = &c->items[i];
    if (it->type == KH_NODE_FILE) {
      if (it->link_to < 0) {
        c->files_total++;
        c->bytes_total += it->size;
      }
      continue;
    }
    int rc = 0;
    switch (it->type) {
    case KH_NODE_DIR:
      rc = mkdir(it->path, 0700);
      if (rc && errno == EEXIST) {
        struct stat st;
        rc = lstat(it->path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
        errno = EEXIST;
      }
      r->dirs++;
      break;
    case KH_NODE_SYMLINK:
      unlink(it->path);
      rc = symlink(it->link, it->path);
      if (!rc && c->root)
        lchown(it->path, it->uid, it->gid);
      if (!rc)
        set_times(-1, it->path, it->mtime_ns, true);
      r->others++;
      break;
    case KH_NODE_FIFO:
      unlink(it->path);
      rc = mkfifo(it->path, it->mode);
      r->others++;
      break;
    case KH_NODE_CHARDEV:
    case KH_NODE_BLOCKDEV:
      unlink(it->path);
      rc = mknod(it->path, (it->type == KH_NODE_CHARDEV ? S_IFCHR : S_IFBLK) | it->mode,
                 (dev_t)it->rdev);
      r->others++;
      break;
    default: /* sockets are not recreated: they only exist while bound */
      r->others++;
      break;
    }
    if (rc) {
      it->failed = true;
      rwarn(c, kh_errno_code(errno), it->path, strerror(errno));
    } else if (it->type == KH_NODE_FIFO || it->type == KH_NODE_CHARDEV ||
               it->type == KH_NODE_BLOCKDEV) {
      /* mkfifo/mknod apply the umask: set mode, owner and time as recorded */
      if (c->root)
        lchown(it->path, it->uid, it->gid);
      chmod(it->path, it->mode);
      set_times(-1, it->path, it->mtime_ns, true);
    }
  }
  /* pass 2: file contents, in parallel */
  /* creating files is latency-bound (journal, metadata): more threads than
   * cores keep the disk busy; each holds at most one blob in memory */
  int nthreads = o->threads > 0 ? o->threads : 4 * (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (nthreads < 1)
    nthreads = 1;
  if (nthreads > 16)
    nthreads = 16;
  for (; started < nthreads; started++)
    if (pthread_create(&tids[started], NULL, restore_worker, c) != 0)
      break;
  if (started == 0)
    restore_worker(c);
  while (atomic_load(&c->next) < c->n) {
    rprogress(c, false);
    usleep(50000);
  }
  for (int i = 0; i < started; i++)
    pthread_join(tids[i], NULL);
  rprogress(c, true);
  /* pass 3: hard links, then directory metadata deepest first */
  for (size_t i = 0; i < c->n; i++) {
    ritem *it = &c->items[i];
    if (it->type != KH_NODE_FILE)
      continue;
    if (it->link_to >= 0) {
      ritem *first = &c->items[it->link_to];
      if (first->failed) {
        it->failed = true;
        atomic_fetch_add(&c->failed, 1);
        rwarn(c, KH_ERR_CORRUPT, it->path, "hard link target could not be restored");
        continue;
      }
      unlink(it->path);
      if (link(first->path, it->path) != 0) {
        it->failed = true;
        atomic_fetch_add(&c->failed, 1);
        rwarn(c, kh_errno_code(errno), it->path, strerror(errno));
        continue;
      }
    }
    if (!it->failed) {
      r->files++;
      r->bytes += it->size;
    }
  }
  /* reverse pre-order visits every directory after everything inside it */
  for (size_t i = c->n; i-- > 0;) {
    ritem *it = &c->items[i];
    if (it->type != KH_NODE_DIR || it->failed)
      continue;
    if (c->root)
      lchown(it->path, it->uid, it->gid);
    chmod(it->path, it->mode);
    set_times(-1, it->path, it->mtime_ns, false);
  }
  r->failed = atomic_load(&c->failed);
  if (c->fatal)
    e = kh_seterr(c->fatal, "restore stopped: %s", kh_strerror(c->fatal));
  else if (r->failed)
    e = kh_seterr(KH_ERR_CORRUPT, "%llu files could not be restored intact",
                  (unsigned long long)r->failed);
  else if (missing)
    e = kh_seterr(KH_ERR_NOTFOUND, "%s is not in the snapshot", missing);
out:
  if (locked)
    kh_vault_unlock(v);
  kh_snap_release(&s);
  free(hl);
  for (size_t i = 0; i < c->n; i++) {
    free(c->items[i].path);
    free(c->items[i].link);
    free(c->items[i].chunks);
  }
  free(c->items);
  free(c->incl_found);
  free(c->tpath);
  pthread_mutex_destroy(&c->wmu);
  free(c);
  return e;
}
