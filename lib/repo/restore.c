/* Restore: recreate a snapshot's paths under a target directory.  Files are
 * written by worker threads to a temporary name next to their place and
 * renamed only when every byte authenticated, so a file that cannot be
 * restored intact is never left in the target.
 *
 * Nothing beneath the target is trusted: it may hold symlinks planted there
 * or left by restoring another snapshot.  No path below the target is ever
 * resolved by the kernel in one go; every entry is reached from an open
 * descriptor of its directory (a chain of O_PATH | O_DIRECTORY | O_NOFOLLOW
 * opens from the target down, see dcursor), and created or changed with the
 * *at calls that do not follow a final symlink.  A directory that cannot be
 * created or opened that way fails, with everything below it. */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/fault.h"
#include "common/fsutil.h"
#include "common/pattern.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

typedef struct ritem {
  char *path;          /* target path, for messages */
  size_t nameoff;      /* path + nameoff: the name in its directory */
  long parent;         /* index of the directory item holding it; -1: the target */
  uint8_t type;
  uint32_t mode, uid, gid;
  int64_t mtime_ns;
  uint64_t size, nlink, ino, dev, rdev;
  char *link;
  kh_chunkref *chunks;
  size_t nchunks;
  uint32_t flags;      /* KH_FLAG_* */
  uint8_t *xattrs;     /* as in the tree (docs/format.md §8) */
  size_t xattrlen;
  bool meta_warned;    /* counted in meta_warnings */
  long link_to;        /* hard link: index of the first item with this inode, else -1 */
  int depth;
  bool failed;
  bool full;           /* selected itself, not only as an include's ancestor */
  bool skipped;        /* an existing entry kept by --overwrite */
  bool unchanged;      /* ... because it matched (if-changed): verified too */
  bool written;        /* the file's content was written by this restore */
} ritem;

typedef struct rctx {
  kh_vault *v;
  const kh_restore_opts *o;
  kh_restore_result *r;
  ritem *items;
  size_t n, cap;
  kh_pattern_set *incl, *excl; /* NULL: none */
  size_t nincl;
  bool *incl_found;    /* an include matched something in the snapshot */
  bool verifying;      /* the workers' pass: verify, not write */
  _Atomic uint64_t skipped, verified;
  char *tpath;
  size_t tlen, tcap;
  int levels;          /* 1 + the deepest item depth */
  int tfd;             /* the target directory (O_PATH) */
  _Atomic size_t next;
  _Atomic uint64_t files_done, bytes_done, failed, meta_warnings;
  uint64_t files_total, bytes_total;
  pthread_mutex_t wmu;
  pthread_mutex_t cmu;  /* current */
  const char *current[KH_PROGRESS_CURRENT]; /* files being written (progress) */
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

/* Does an --exclude leave snapshot path p (n bytes) out? */
static bool excluded(const rctx *c, const uint8_t *p, size_t n)
{
  return c->excl && kh_pattern_set_excludes(c->excl, (const char *)p, n);
}

/* Does an --include match snapshot path p (or is there none)?  Marks the
 * includes that match, for the report of those that match nothing. */
static bool included(rctx *c, const uint8_t *p, size_t n)
{
  return !c->incl || kh_pattern_set_match_each(c->incl, (const char *)p, n, c->incl_found);
}

static void ritem_release(ritem *it)
{
  free(it->path);
  free(it->link);
  free(it->chunks);
  free(it->xattrs);
}

static kh_err add_item(rctx *c, const kh_tnode *t, int depth, long parent, size_t nameoff)
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
  it->parent = parent;
  it->nameoff = nameoff;
  if (depth + 1 > c->levels)
    c->levels = depth + 1;
  if (!it->path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (t->type == KH_NODE_SYMLINK && !(it->link = strndup((const char *)t->link, t->linklen))) {
    free(it->path);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  if (t->nxattr) {
    if (!(it->xattrs = malloc(t->xattrlen))) {
      free(it->path);
      free(it->link);
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    }
    memcpy(it->xattrs, t->xattrs, t->xattrlen);
    it->xattrlen = t->xattrlen;
  }
  it->flags = t->flags;
  if (t->type == KH_NODE_FILE && t->nchunks) {
    it->chunks = malloc(t->nchunks * sizeof *it->chunks);
    if (!it->chunks) {
      free(it->path);
      free(it->link);
      free(it->xattrs);
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    }
    memcpy(it->chunks, t->chunks, t->nchunks * sizeof *it->chunks);
    it->nchunks = t->nchunks;
  }
  c->n++;
  return KH_OK;
}

/* Add the selected nodes of a tree in pre-order.  A directory no include
 * matches is kept only to hold something below it that one does; what an
 * exclude matches is left out with everything below it.  *kept: something
 * was added. */
static kh_err collect(rctx *c, const uint8_t tree_id[32], size_t snaplen_at, int depth,
                      long parent, bool inc_above, bool *kept)
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
    bool inc = included(c, sp, sl) || inc_above; /* always asked: marks the includes */
    if (!excluded(c, sp, sl) && (inc || x->type == KH_NODE_DIR)) {
      size_t mark = c->n;
      e = add_item(c, x, depth, parent, saved + 1);
      if (!e)
        c->items[mark].full = inc;
      bool below = false;
      if (!e && x->type == KH_NODE_DIR)
        e = collect(c, x->subtree, snaplen_at, depth + 1, (long)mark, inc, &below);
      if (!e && !inc && !below) { /* an unselected directory holding nothing selected */
        while (c->n > mark)
          ritem_release(&c->items[--c->n]);
      } else if (!e) {
        *kept = true;
      }
    }
    c->tlen = saved;
    c->tpath[saved] = 0;
  }
  kh_tree_release(&t);
  return e;
}

/* A chain of open directories from the target down to one directory of the
 * snapshot, each level opened relative to the one above with O_NOFOLLOW |
 * O_DIRECTORY, so a symlink beneath the target is never followed.  The
 * entries of one directory come one after the other, so most lookups reuse
 * the deepest level; a move to another directory reopens only the levels
 * that differ.  Only the deepest DCUR_KEEP levels stay open (a deeper chain
 * is reopened from the target when needed), so each cursor holds a bounded
 * number of descriptors however deep the tree. */
#define DCUR_KEEP 32

typedef struct dcursor {
  int root;   /* the target (not owned) */
  int n;      /* levels in the chain */
  long *idx;  /* item index of the directory at each level */
  long *want; /* scratch: the chain wanted by dcur_dir */
  int *fd;    /* each level's descriptor; -1 when closed to bound them */
} dcursor;

static void dcur_truncate(dcursor *k, int l)
{
  for (int i = l; i < k->n; i++)
    if (k->fd[i] >= 0)
      close(k->fd[i]);
  if (l < k->n)
    k->n = l;
}

static void dcur_release(dcursor *k)
{
  if (k->fd)
    dcur_truncate(k, 0);
  free(k->idx);
  free(k->want);
  free(k->fd);
  memset(k, 0, sizeof *k);
}

static kh_err dcur_init(dcursor *k, int root, int levels)
{
  memset(k, 0, sizeof *k);
  k->root = root;
  size_t l = levels > 0 ? (size_t)levels : 1;
  k->idx = malloc(l * sizeof *k->idx);
  k->want = malloc(l * sizeof *k->want);
  k->fd = malloc(l * sizeof *k->fd);
  if (!k->idx || !k->want || !k->fd) {
    dcur_release(k);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  return KH_OK;
}

/* The descriptor (O_PATH, owned by the cursor, valid until its next call) of
 * directory item d, or of the target when d < 0; -1 with errno set when a
 * level is missing, not a directory or a symlink. */
static int dcur_dir(const rctx *c, dcursor *k, long d)
{
  if (d < 0) {
    if (k->root < 0)
      errno = ENOENT; /* a dry run's target that does not exist */
    return k->root;
  }
  int top = c->items[d].depth;
  if (top == k->n - 1 && k->idx[top] == d && k->fd[top] >= 0)
    return k->fd[top];
  long a = d;
  for (int l = top; l >= 0; l--) {
    k->want[l] = a;
    a = c->items[a].parent;
  }
  int same = 0;
  while (same < k->n && same <= top && k->idx[same] == k->want[same])
    same++;
  dcur_truncate(k, same);
  /* the levels still open are a suffix of the chain: continue below them */
  int from = k->n;
  while (from > 0 && k->fd[from - 1] < 0)
    from--;
  for (int l = from; l <= top; l++) {
    const ritem *it = &c->items[k->want[l]];
    int fd = openat(l ? k->fd[l - 1] : k->root, it->path + it->nameoff,
                    O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      dcur_truncate(k, l);
      errno = err;
      return -1;
    }
    if (l < k->n && k->fd[l] >= 0)
      close(k->fd[l]);
    k->fd[l] = fd;
    k->idx[l] = k->want[l];
    if (l >= k->n)
      k->n = l + 1;
  }
  for (int l = top - DCUR_KEEP; l >= 0 && k->fd[l] >= 0; l--) {
    close(k->fd[l]);
    k->fd[l] = -1;
  }
  return k->fd[top];
}

static void mtime_ts(struct timespec ts[2], int64_t mtime_ns)
{
  ts[0].tv_sec = 0;
  ts[0].tv_nsec = UTIME_OMIT;
  ts[1].tv_sec = (time_t)(mtime_ns / 1000000000);
  ts[1].tv_nsec = (long)(mtime_ns % 1000000000);
  if (ts[1].tv_nsec < 0) {
    ts[1].tv_sec--;
    ts[1].tv_nsec += 1000000000;
  }
}

/* chmod of dfd/name, never through a symlink.  Without /proc the C library
 * cannot do AT_SYMLINK_NOFOLLOW for a mode; then the entry (which this
 * restore just created in a directory it holds open) is checked first. */
static int chmod_at(int dfd, const char *name, mode_t mode)
{
  if (fchmodat(dfd, name, mode, AT_SYMLINK_NOFOLLOW) == 0)
    return 0;
  if (errno != ENOTSUP && errno != EOPNOTSUPP && errno != ENOSYS)
    return -1;
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return -1;
  if (S_ISLNK(st.st_mode)) {
    errno = ELOOP;
    return -1;
  }
  return fchmodat(dfd, name, mode, 0);
}

/* Owner (as root), mode (unless a symlink) and mtime of dfd/name, never
 * following a symlink.  Failures are not fatal to the entry: as with cp -p,
 * the content or node is what matters. */
static void meta_at(const rctx *c, int dfd, const char *name, const ritem *it)
{
  if (c->root)
    (void)fchownat(dfd, name, it->uid, it->gid, AT_SYMLINK_NOFOLLOW);
  if (it->type != KH_NODE_SYMLINK)
    (void)chmod_at(dfd, name, it->mode);
  struct timespec ts[2];
  mtime_ts(ts, it->mtime_ns);
  (void)utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

/* An entry restored without some of its metadata: reported and counted,
 * once per entry. */
static void meta_warn(rctx *c, ritem *it, const char *msg)
{
  if (!it->meta_warned) /* the item belongs to one thread at a time */
    atomic_fetch_add(&c->meta_warnings, 1);
  it->meta_warned = true;
  pthread_mutex_lock(&c->wmu);
  if (c->o->meta_warn)
    c->o->meta_warn(KH_ERR_UNSUPPORTED, it->path, msg, c->o->ctx);
  pthread_mutex_unlock(&c->wmu);
}

/* Set the extended attributes of it on fd (a file being written or a
 * directory); the ones the target refuses are named in one warning. */
static void xattrs_fd(rctx *c, int fd, ritem *it)
{
  if (!it->xattrlen)
    return;
  char msg[512] = "", name[KH_XATTR_NAME_MAX + 1];
  size_t off = 0, ml = 0, nl, vl;
  const uint8_t *n, *val;
  int err = 0;
  while (kh_xattr_next(it->xattrs, it->xattrlen, &off, &n, &nl, &val, &vl)) {
    memcpy(name, n, nl);
    name[nl] = 0;
    if (fsetxattr(fd, name, val, vl, 0) == 0)
      continue;
    err = errno;
    int w = snprintf(msg + ml, sizeof msg - ml, "%s%s", ml ? ", " : "", name);
    if (w > 0 && (size_t)w < sizeof msg - ml)
      ml += (size_t)w;
  }
  if (err) {
    char full[640];
    snprintf(full, sizeof full, "extended attributes not restored (%s): %s", msg, strerror(err));
    meta_warn(c, it, full);
  }
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

static void fail_item(rctx *c, ritem *it)
{
  it->failed = true;
  atomic_fetch_add(&c->failed, 1);
}

static void report(rctx *c, int action, const char *path)
{
  if (!c->o->report)
    return;
  pthread_mutex_lock(&c->wmu);
  c->o->report(action, path, c->o->ctx);
  pthread_mutex_unlock(&c->wmu);
}

static int64_t st_mtime_ns(const struct stat *st)
{
  return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* --overwrite for a file, symlink or special file: false if the entry at
 * dfd/name (looked at, never followed) is to be kept, with *unchanged when
 * it matched the snapshot (if-changed).  dfd < 0: its directory does not
 * exist yet, so there is nothing to keep. */
static bool want_write(const rctx *c, int dfd, const ritem *it, bool *unchanged)
{
  *unchanged = false;
  if (c->o->overwrite == KH_OVERWRITE_ALWAYS || dfd < 0)
    return true;
  const char *name = it->path + it->nameoff;
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return true; /* nothing there (or nothing we can see): write */
  switch (c->o->overwrite) {
  case KH_OVERWRITE_NEVER:
    return false;
  case KH_OVERWRITE_IF_NEWER:
    return it->mtime_ns > st_mtime_ns(&st);
  case KH_OVERWRITE_IF_CHANGED: {
    bool same;
    switch (it->type) {
    case KH_NODE_FILE:
      same = S_ISREG(st.st_mode) && (uint64_t)st.st_size == it->size &&
             st_mtime_ns(&st) == it->mtime_ns;
      break;
    case KH_NODE_SYMLINK: {
      char buf[4096];
      ssize_t n = S_ISLNK(st.st_mode) ? readlinkat(dfd, name, buf, sizeof buf) : -1;
      same = n >= 0 && (size_t)n == strlen(it->link) && !memcmp(buf, it->link, (size_t)n);
      break;
    }
    case KH_NODE_FIFO:
      same = S_ISFIFO(st.st_mode);
      break;
    case KH_NODE_CHARDEV:
    case KH_NODE_BLOCKDEV:
      same = (it->type == KH_NODE_CHARDEV ? S_ISCHR(st.st_mode) : S_ISBLK(st.st_mode)) &&
             (uint64_t)st.st_rdev == it->rdev;
      break;
    default:
      same = false;
    }
    *unchanged = same;
    return !same;
  }
  default:
    return true;
  }
}

/* An entry kept by --overwrite: counted and reported; one that matched
 * (if-changed) gets the snapshot's metadata, as restic does, never
 * through a symlink. */
static void keep_entry(rctx *c, int dfd, ritem *it, bool unchanged)
{
  it->skipped = true;
  it->unchanged = unchanged;
  atomic_fetch_add(&c->skipped, 1);
  if (unchanged && !c->o->dry_run)
    meta_at(c, dfd, it->path + it->nameoff, it);
  report(c, KH_RESTORE_SKIP, it->path);
}

static void restore_file(rctx *c, dcursor *cur, ritem *it, kh_buf *blob)
{
  const char *name = it->path + it->nameoff;
  char tmp[32];
  /* A new file is written in place (removed again if anything fails); an
   * existing entry (a file, or a symlink: never written through) is
   * replaced only by a complete, authenticated copy. */
  kh_err e = KH_OK;
  bool replace = false, created = false;
  const char *wname = name;
  int fd = -1, dfd = dcur_dir(c, cur, it->parent);
  if (dfd < 0) {
    e = kh_seterr(kh_errno_code(errno), "directory: %s", strerror(errno));
    goto out;
  }
  bool unchanged;
  if (!want_write(c, dfd, it, &unchanged)) {
    keep_entry(c, dfd, it, unchanged);
    atomic_fetch_add(&c->bytes_done, it->size);
    goto out;
  }
  fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    uint8_t rnd[4];
    randombytes_buf(rnd, sizeof rnd);
    snprintf(tmp, sizeof tmp, ".kh-restore-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    replace = true;
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  }
  if (replace)
    wname = tmp;
  if (fd < 0) {
    e = kh_seterr(kh_errno_code(errno), "create: %s", strerror(errno));
    goto out;
  }
  created = true; /* from here on, a failure removes wname */
  uint64_t off = 0;
  for (size_t i = 0; !e && i < it->nchunks; i++) {
    const kh_chunkref *r = &it->chunks[i];
    if (sodium_is_zero(r->id, 32)) { /* hole: leave it sparse */
      off += r->len;
      atomic_fetch_add(&c->bytes_done, r->len);
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
    /* after the owner (chown drops security.capability), before the mode
     * (a read-only mode would refuse user.* attributes to a non-root
     * process; chmod to the recorded mode keeps an ACL's mask, which the
     * recorded group bits are) */
    if (!e)
      xattrs_fd(c, fd, it);
    if (!e && fchmod(fd, it->mode) != 0)
      e = kh_seterr(KH_ERR_IO, "chmod: %s", strerror(errno));
    struct timespec ts[2];
    mtime_ts(ts, it->mtime_ns);
    (void)futimens(fd, ts);
  }
  if (close(fd) != 0 && !e)
    e = kh_seterr(KH_ERR_IO, "close: %s", strerror(errno));
  fd = -1;
  /* rename replaces the entry itself (a symlink too), never its target */
  if (!e && replace && renameat(dfd, tmp, dfd, name) != 0)
    e = kh_seterr(kh_errno_code(errno), "rename: %s", strerror(errno));
  if (!e) {
    it->written = true;
    report(c, KH_RESTORE_WRITE, it->path);
  }
out:
  if (e) {
    if (fd >= 0)
      close(fd);
    if (created)
      unlinkat(dfd, wname, 0); /* never leave bytes that did not authenticate */
    fail_item(c, it);
    rwarn(c, e, it->path, kh_errdetail());
    if (e == KH_ERR_NOSPACE) {
      pthread_mutex_lock(&c->wmu);
      c->fatal = e; /* a full disk fails every file that follows */
      pthread_mutex_unlock(&c->wmu);
    }
  }
  atomic_fetch_add(&c->files_done, 1);
}

static kh_err read_at(int fd, uint8_t *p, size_t n, uint64_t off)
{
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, p + got, n - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return kh_seterr(kh_errno_code(errno), "verify: read: %s", strerror(errno));
    if (r == 0)
      return kh_seterr(KH_ERR_CORRUPT, "verify: file shorter than in the snapshot");
    got += (size_t)r;
  }
  return KH_OK;
}

/* --verify: re-read file item it from the target (never through a
 * symlink) and compare each chunk with its content id, holes with zeros. */
static void verify_file(rctx *c, dcursor *cur, ritem *it, kh_buf *buf)
{
  const char *name = it->path + it->nameoff;
  kh_err e = KH_OK;
  uint64_t off = 0;
  struct stat st;
  int fd = -1, dfd = dcur_dir(c, cur, it->parent);
  if (dfd < 0 || (fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0) {
    e = kh_seterr(kh_errno_code(errno), "verify: open: %s", strerror(errno));
    goto out;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != it->size) {
    e = kh_seterr(KH_ERR_CORRUPT, "verify: not a file of %llu bytes",
                  (unsigned long long)it->size);
    goto out;
  }
  for (size_t i = 0; !e && i < it->nchunks; i++) {
    const kh_chunkref *r = &it->chunks[i];
    bool hole = sodium_is_zero(r->id, 32);
    bool ok = true;
    /* a chunk is at most one blob; a hole may be longer: read in pieces */
    for (uint64_t done = 0; !e && ok && done < r->len;) {
      size_t want = hole && r->len - done > (1u << 20) ? (1u << 20) : (size_t)(r->len - done);
      kh_buf_reset(buf);
      if ((e = kh_buf_reserve(buf, want)) || (e = read_at(fd, buf->data, want, off + done)))
        break;
      if (hole) {
        ok = sodium_is_zero(buf->data, want);
      } else {
        uint8_t id[32];
        kh_blob_id(&c->v->keys, id, buf->data, want);
        ok = memcmp(id, r->id, 32) == 0;
      }
      done += want;
    }
    if (!e && !ok)
      e = kh_seterr(KH_ERR_CORRUPT,
                    "verify: content differs from the snapshot in bytes %llu to %llu",
                    (unsigned long long)off, (unsigned long long)(off + r->len));
    off += r->len;
  }
out:
  if (fd >= 0)
    close(fd);
  if (e) {
    fail_item(c, it);
    rwarn(c, e, it->path, kh_errdetail());
  } else {
    atomic_fetch_add(&c->verified, 1);
  }
}

#define RBATCH 8

typedef struct rworker {
  rctx *c;
  dcursor cur;
  int slot;            /* in rctx.current */
} rworker;

static void *restore_worker(void *arg)
{
  rworker *w = arg;
  rctx *c = w->c;
  kh_buf blob;
  kh_buf_init(&blob, KH_BLOB_MAX);
  /* a few consecutive items at a time: mostly of one directory, whose
   * descriptor the cursor then keeps */
  for (size_t i, end; (i = atomic_fetch_add(&c->next, RBATCH)) < c->n;) {
    for (end = c->n - i < RBATCH ? c->n : i + RBATCH; i < end; i++) {
      ritem *it = &c->items[i];
      if (it->type != KH_NODE_FILE || it->link_to >= 0 || it->failed)
        continue;
      if (c->verifying) {
        if (it->written || it->unchanged)
          verify_file(c, &w->cur, it, &blob);
        continue;
      }
      pthread_mutex_lock(&c->wmu);
      bool stop = c->fatal != KH_OK;
      pthread_mutex_unlock(&c->wmu);
      if (stop) {
        fail_item(c, it);
        atomic_fetch_add(&c->files_done, 1);
        atomic_fetch_add(&c->bytes_done, it->size);
        continue;
      }
      if (c->o->progress) {
        pthread_mutex_lock(&c->cmu);
        c->current[w->slot] = it->path;
        pthread_mutex_unlock(&c->cmu);
      }
      restore_file(c, &w->cur, it, &blob);
      if (c->o->progress) {
        pthread_mutex_lock(&c->cmu);
        c->current[w->slot] = NULL;
        pthread_mutex_unlock(&c->cmu);
      }
    }
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
                   .scan_done = true, .elapsed = now - c->t0,
                   .errors = atomic_load(&c->failed)};
  char cur[KH_PROGRESS_CURRENT][512];
  const char *curp[KH_PROGRESS_CURRENT];
  pthread_mutex_lock(&c->cmu);
  for (size_t i = 0; i < KH_PROGRESS_CURRENT; i++)
    if (c->current[i]) {
      snprintf(cur[p.ncurrent], sizeof cur[0], "%s", c->current[i]);
      curp[p.ncurrent] = cur[p.ncurrent];
      p.ncurrent++;
    }
  pthread_mutex_unlock(&c->cmu);
  p.current = curp;
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

/* chattr flags of it (KH_FLAG_*), through its own descriptor. */
static void set_flags(rctx *c, dcursor *cur, ritem *it)
{
  int dfd = dcur_dir(c, cur, it->parent), fd = -1, err = 0;
  if (dfd < 0 ||
      (fd = openat(dfd, it->path + it->nameoff,
                   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
                       (it->type == KH_NODE_DIR ? O_DIRECTORY : 0))) < 0) {
    err = errno;
  } else {
    int fl = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &fl) != 0)
      err = errno;
    else {
      fl &= ~(FS_APPEND_FL | FS_IMMUTABLE_FL | FS_NODUMP_FL);
      fl |= ((it->flags & KH_FLAG_APPEND) ? FS_APPEND_FL : 0) |
            ((it->flags & KH_FLAG_IMMUTABLE) ? FS_IMMUTABLE_FL : 0) |
            ((it->flags & KH_FLAG_NODUMP) ? FS_NODUMP_FL : 0);
      if (ioctl(fd, FS_IOC_SETFLAGS, &fl) != 0)
        err = errno;
    }
    close(fd);
  }
  if (err) {
    char msg[200];
    snprintf(msg, sizeof msg, "file flags (%s%s%s) not restored: %s",
             (it->flags & KH_FLAG_APPEND) ? "a" : "", (it->flags & KH_FLAG_IMMUTABLE) ? "i" : "",
             (it->flags & KH_FLAG_NODUMP) ? "d" : "", strerror(err));
    meta_warn(c, it, msg);
  }
}

/* Pass 1 for one directory, symlink, FIFO or device node (tree order, so a
 * directory's parents exist before it).  False (errno set) if it could not
 * be created. */
static bool restore_node(rctx *c, dcursor *cur, size_t i, const char **why)
{
  ritem *it = &c->items[i];
  const char *name = it->path + it->nameoff;
  bool dry = c->o->dry_run;
  int dfd = dcur_dir(c, cur, it->parent);
  if (dfd < 0 && !(dry && errno != ELOOP && errno != ENOTDIR))
    return false; /* dry run: a directory not there yet would be created */
  switch (it->type) {
  case KH_NODE_DIR: {
    if (dry) { /* only what is there now decides */
      struct stat st;
      if (dfd >= 0 && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
        *why = "exists and is not a directory (not followed)";
        errno = ENOTDIR;
        return false;
      }
      c->r->dirs++;
      return true;
    }
    bool existed = mkdirat(dfd, name, 0700) != 0;
    if (existed && errno != EEXIST)
      return false;
    /* an existing directory is used; anything else there (a symlink
     * above all) is neither followed nor replaced */
    if (dcur_dir(c, cur, (long)i) < 0) {
      if (existed && (errno == ENOTDIR || errno == ELOOP))
        *why = "exists and is not a directory (not followed)";
      return false;
    }
    c->r->dirs++;
    return true;
  }
  case KH_NODE_SYMLINK:
  case KH_NODE_FIFO:
  case KH_NODE_CHARDEV:
  case KH_NODE_BLOCKDEV: {
    bool unchanged;
    if (!want_write(c, dfd, it, &unchanged)) {
      keep_entry(c, dfd, it, unchanged);
      return true;
    }
    if (!dry) {
      (void)unlinkat(dfd, name, 0); /* an old entry: the link itself, not its target */
      int rc;
      if (it->type == KH_NODE_SYMLINK)
        rc = symlinkat(it->link, dfd, name);
      else if (it->type == KH_NODE_FIFO)
        rc = mkfifoat(dfd, name, it->mode & 0777);
      else
        rc = mknodat(dfd, name,
                     (it->type == KH_NODE_CHARDEV ? S_IFCHR : S_IFBLK) | (it->mode & 0777),
                     (dev_t)it->rdev);
      if (rc)
        return false;
      /* mkfifo/mknod apply the umask: set mode, owner and time as recorded */
      meta_at(c, dfd, name, it);
    }
    report(c, KH_RESTORE_WRITE, it->path);
    c->r->others++;
    return true;
  }
  default: /* sockets are not recreated: they only exist while bound */
    c->r->others++;
    return true;
  }
}

/* --delete: names of the snapshot in directory item d (-1: the target) */
static int cmp_name(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Remove dfd/name (path: for messages and the excludes; snapshot path at
 * path + snapoff) and, for a directory, what is in it, never following a
 * symlink: a directory is opened O_NOFOLLOW and removed only once empty, an
 * excluded path inside it is kept (and so is the directory).  True if it is
 * gone (dry run: would be). */
static bool delete_tree(rctx *c, int dfd, const char *name, char *path, size_t plen,
                        size_t snapoff, int depth)
{
  struct stat st;
  bool gone = true, dry = c->o->dry_run;
  if (excluded(c, (const uint8_t *)path + snapoff, plen - snapoff))
    return false;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT;
  if (S_ISDIR(st.st_mode)) {
    int fd = depth < 256 ? openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
      if (fd >= 0)
        close(fd);
      rwarn(c, KH_ERR_IO, path, depth < 256 ? strerror(errno) : "--delete: nested too deep");
      return false;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
        continue;
      size_t nl = strlen(de->d_name);
      char *sub = malloc(plen + nl + 2);
      if (!sub) {
        gone = false;
        break;
      }
      memcpy(sub, path, plen);
      sub[plen] = '/';
      memcpy(sub + plen + 1, de->d_name, nl + 1);
      if (!delete_tree(c, dirfd(d), de->d_name, sub, plen + nl + 1, snapoff, depth + 1))
        gone = false;
      free(sub);
    }
    closedir(d);
    if (gone && !dry && unlinkat(dfd, name, AT_REMOVEDIR) != 0) {
      rwarn(c, kh_errno_code(errno), path, strerror(errno));
      gone = false;
    }
  } else if (!dry && unlinkat(dfd, name, 0) != 0) {
    rwarn(c, kh_errno_code(errno), path, strerror(errno));
    gone = false;
  }
  if (gone) {
    c->r->deleted++;
    report(c, KH_RESTORE_DELETE, path);
  }
  return gone;
}

/* --delete for directory item d (-1: the target itself): every entry there
 * that the snapshot does not have goes. */
static kh_err delete_extra(rctx *c, dcursor *cur, long d, size_t snapoff)
{
  kh_err e = KH_OK;
  const char **names = NULL;
  size_t nn = 0;
  DIR *dir = NULL;
  int dfd = dcur_dir(c, cur, d);
  if (dfd < 0)
    return KH_OK; /* dry run: not there yet; else reported when it failed */
  size_t from = d < 0 ? 0 : (size_t)d + 1;
  int depth = d < 0 ? 0 : c->items[d].depth + 1;
  names = malloc((c->n - from + 1) * sizeof *names);
  if (!names)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  for (size_t j = from; j < c->n && c->items[j].depth >= depth; j++)
    if (c->items[j].depth == depth)
      names[nn++] = c->items[j].path + c->items[j].nameoff;
  qsort(names, nn, sizeof *names, cmp_name);
  int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || !(dir = fdopendir(fd))) {
    if (fd >= 0)
      close(fd);
    rwarn(c, KH_ERR_IO, d < 0 ? c->tpath : c->items[d].path, strerror(errno));
    goto out;
  }
  const char *dpath = d < 0 ? c->tpath : c->items[d].path;
  size_t dl = d < 0 ? c->tlen : strlen(dpath);
  struct dirent *de;
  while ((de = readdir(dir))) {
    const char *nm = de->d_name;
    if (!strcmp(nm, ".") || !strcmp(nm, "..") ||
        bsearch(&nm, names, nn, sizeof *names, cmp_name))
      continue;
    size_t nl = strlen(nm);
    char *p = malloc(dl + nl + 2);
    if (!p) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      break;
    }
    memcpy(p, dpath, dl);
    p[dl] = '/';
    memcpy(p + dl + 1, nm, nl + 1);
    (void)delete_tree(c, dirfd(dir), nm, p, dl + nl + 1, snapoff, depth);
    free(p);
  }
out:
  if (dir)
    closedir(dir);
  free(names);
  return e;
}

/* Run the workers over the items once (c->verifying says for what). */
static void run_workers(rctx *c, rworker *wk, int nwk)
{
  pthread_t tids[16];
  int started = 0;
  atomic_store(&c->next, 0);
  for (; started < nwk && started < 16; started++)
    if (pthread_create(&tids[started], NULL, restore_worker, &wk[started]) != 0)
      break;
  if (started == 0)
    restore_worker(&wk[0]);
  while (atomic_load(&c->next) < c->n) {
    rprogress(c, false);
    usleep(50000);
  }
  for (int i = 0; i < started; i++)
    pthread_join(tids[i], NULL);
  rprogress(c, true);
}

static kh_err compile_patterns(const kh_backup_pattern *p, size_t n, bool include,
                               kh_pattern_set **out)
{
  kh_err e = KH_OK;
  *out = NULL;
  if (!n)
    return KH_OK;
  if ((e = kh_pattern_set_new(out)))
    return e;
  for (size_t i = 0; !e && i < n; i++) {
    if (include && p[i].pattern[0] == '!')
      e = kh_seterr(KH_ERR_INVAL, "an include cannot start with '!' (use an exclude): %s",
                    p[i].pattern);
    else
      e = kh_pattern_set_add(*out, p[i].pattern, p[i].icase);
  }
  return e;
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
  c->nincl = o->nincludes;
  c->euid = geteuid();
  c->egid = getegid();
  c->root = c->euid == 0;
  c->t0 = kh_now();
  c->tfd = -1;
  pthread_mutex_init(&c->wmu, NULL);
  pthread_mutex_init(&c->cmu, NULL);
  kh_err e = KH_OK;
  uint8_t id[32];
  kh_snap s = {0};
  size_t *hl = NULL;
  bool dry = o->dry_run;
  /* cursors: [0] and [1] for the passes on this thread, then one per worker */
  dcursor cur[2] = {{0}};
  rworker *wk = NULL;
  int nwk = 0;
  bool locked = false; /* shared: prune waits until we are done (docs/format.md §10) */
  if ((e = compile_patterns(o->includes, o->nincludes, true, &c->incl)) ||
      (e = compile_patterns(o->excludes, o->nexcludes, false, &c->excl)))
    goto out;
  if ((e = kh_vault_lock(v, false)))
    goto out;
  locked = true;
  if ((e = kh_vault_resolve(v, snap, id)) || (e = kh_vault_load_snapshot(v, id, &s)) ||
      (e = kh_vault_load_index(v, NULL, NULL)))
    goto out;
  /* the target itself is the user's choice and may be reached through a
   * symlink; everything below it is reached from this descriptor only.  A
   * dry run creates nothing: a missing target just has nothing in it. */
  if (!dry && (e = kh_mkdirs(o->target, 0700)))
    goto out;
  c->tfd = open(o->target, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (c->tfd < 0 && !(dry && errno == ENOENT)) {
    e = kh_seterr(kh_errno_code(errno), "%s: %s", o->target, strerror(errno));
    goto out;
  }
  {
    char *t = c->tfd >= 0 ? realpath(o->target, NULL) : strdup(o->target); /* for messages */
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
  bool kept = false;
  if ((e = collect(c, s.tree, c->tlen, 0, -1, false, &kept)))
    goto out;
  /* an include that matches nothing is reported (after restoring the rest) */
  const char *missing = NULL;
  for (size_t i = 0; i < c->nincl; i++)
    if (!c->incl_found[i]) {
      rwarn(c, KH_ERR_NOTFOUND, o->includes[i].pattern,
            "is not in the snapshot (the pattern matches nothing)");
      missing = o->includes[i].pattern;
    }
  /* creating files is latency-bound (journal, metadata): more threads than
   * cores keep the disk busy; each holds at most one blob in memory */
  nwk = o->threads > 0 ? o->threads : 4 * (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (nwk < 1)
    nwk = 1;
  if (nwk > 16)
    nwk = 16;
  if (!(wk = calloc((size_t)nwk, sizeof *wk))) {
    nwk = 0;
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (int i = 0; i < 2; i++)
    if ((e = dcur_init(&cur[i], c->tfd, c->levels)))
      goto out;
  for (int i = 0; i < nwk; i++) {
    wk[i].c = c;
    wk[i].slot = i % KH_PROGRESS_CURRENT;
    if ((e = dcur_init(&wk[i].cur, c->tfd, c->levels)))
      goto out;
  }
  /* pass 1: directories and non-file nodes, in tree order.  What a
   * directory that failed would hold is not attempted: it fails too. */
  for (size_t i = 0; i < c->n; i++) {
    ritem *it = &c->items[i];
    if (it->type == KH_NODE_FILE)
      continue;
    const char *why = NULL;
    if (restore_node(c, &cur[0], i, &why))
      continue;
    int err = errno;
    fail_item(c, it);
    size_t end = i + 1;
    if (it->type == KH_NODE_DIR)
      for (; end < c->n && c->items[end].depth > it->depth; end++)
        fail_item(c, &c->items[end]);
    char msg[160];
    if (end > i + 1)
      snprintf(msg, sizeof msg, "%s; %zu entr%s below it %s not restored",
               why ? why : strerror(err), end - i - 1, end - i - 1 == 1 ? "y" : "ies",
               end - i - 1 == 1 ? "was" : "were");
    else
      snprintf(msg, sizeof msg, "%s", why ? why : strerror(err));
    rwarn(c, kh_errno_code(err), it->path, msg);
    i = end - 1;
  }
  /* hard links: later items of the same (dev, inode) link to the first
   * one that can still be restored */
  hl = malloc((c->n ? c->n : 1) * sizeof *hl);
  if (!hl) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  size_t nhl = 0;
  for (size_t i = 0; i < c->n; i++)
    if (c->items[i].type == KH_NODE_FILE && c->items[i].nlink > 1 && !c->items[i].failed)
      hl[nhl++] = i;
  qsort_r(hl, nhl, sizeof *hl, cmp_hl, c->items);
  for (size_t i = 1; i < nhl; i++) {
    ritem *a = &c->items[hl[i - 1]], *b = &c->items[hl[i]];
    if (a->dev == b->dev && a->ino == b->ino)
      b->link_to = a->link_to >= 0 ? a->link_to : (long)hl[i - 1];
  }
  /* totals: every file still to do, hard links too (pass 3), so that the
   * last progress says what the result says */
  for (size_t i = 0; i < c->n; i++) {
    const ritem *it = &c->items[i];
    if (it->type == KH_NODE_FILE && !it->failed) {
      c->files_total++;
      c->bytes_total += it->size;
    }
  }
  /* pass 2: file contents, in parallel; a dry run only decides */
  if (!dry) {
    run_workers(c, wk, nwk);
  } else {
    for (size_t i = 0; i < c->n; i++) {
      ritem *it = &c->items[i];
      if (it->type != KH_NODE_FILE || it->link_to >= 0 || it->failed)
        continue;
      int dfd = dcur_dir(c, &cur[0], it->parent);
      bool unchanged;
      if (!want_write(c, dfd, it, &unchanged)) {
        keep_entry(c, dfd, it, unchanged);
      } else {
        it->written = true;
        report(c, KH_RESTORE_WRITE, it->path);
      }
    }
  }
  /* pass 3: hard links, then directory metadata deepest first */
  for (size_t i = 0; i < c->n; i++) {
    ritem *it = &c->items[i];
    if (it->type != KH_NODE_FILE || it->failed || it->skipped)
      continue;
    if (it->link_to >= 0) {
      atomic_fetch_add(&c->files_done, 1);
      atomic_fetch_add(&c->bytes_done, it->size);
      ritem *first = &c->items[it->link_to];
      if (first->failed) {
        fail_item(c, it);
        rwarn(c, KH_ERR_CORRUPT, it->path, "hard link target could not be restored");
        continue;
      }
      int ffd = dcur_dir(c, &cur[1], first->parent);
      int dfd = ffd < 0 && !dry ? -1 : dcur_dir(c, &cur[0], it->parent);
      const char *name = it->path + it->nameoff;
      bool unchanged;
      if (!want_write(c, dfd, it, &unchanged)) {
        keep_entry(c, dfd, it, false); /* a link: its first file is verified */
        continue;
      }
      if (!dry) {
        if (dfd >= 0)
          (void)unlinkat(dfd, name, 0);
        if (dfd < 0 || linkat(ffd, first->path + first->nameoff, dfd, name, 0) != 0) {
          fail_item(c, it);
          rwarn(c, kh_errno_code(errno), it->path, strerror(errno));
          continue;
        }
      }
      report(c, KH_RESTORE_WRITE, it->path);
    }
    r->files++;
    r->bytes += it->size;
  }
  rprogress(c, true);
  /* --delete: in each directory restored whole, what the snapshot lacks */
  if (o->delete_extra) {
    bool root_full = !c->incl || kh_pattern_set_match_each(c->incl, "/", 1, NULL);
    if (root_full && !excluded(c, (const uint8_t *)"/", 1) &&
        (e = delete_extra(c, &cur[0], -1, c->tlen)))
      goto out;
    for (size_t i = 0; i < c->n; i++) {
      const ritem *it = &c->items[i];
      if (it->type == KH_NODE_DIR && it->full && !it->failed &&
          (e = delete_extra(c, &cur[0], (long)i, c->tlen)))
        goto out;
    }
  }
  /* --verify: every file written, and every file kept as unchanged */
  if (o->verify && !dry) {
    (void)kh_fault_point("restore.verify"); /* test-only event point (fault.h) */
    c->verifying = true;
    run_workers(c, wk, nwk);
  }
  /* reverse pre-order visits every directory after everything inside it */
  for (size_t i = c->n; !dry && i-- > 0;) {
    ritem *it = &c->items[i];
    if (it->type != KH_NODE_DIR || it->failed)
      continue;
    int dfd = dcur_dir(c, &cur[0], it->parent);
    if (dfd < 0)
      continue;
    if (it->xattrlen) { /* now that everything inside exists: a default ACL is not inherited */
      int fd = openat(dfd, it->path + it->nameoff,
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) {
        xattrs_fd(c, fd, it);
        close(fd);
      }
    }
    meta_at(c, dfd, it->path + it->nameoff, it);
  }
  /* pass 4: file flags, last: an immutable or append-only file or
   * directory takes no more changes.  Not in a dry run; an entry kept by
   * --overwrite only when it matched (it got the snapshot's metadata). */
  for (size_t i = 0; !dry && i < c->n; i++) {
    ritem *it = &c->items[i];
    if (it->flags && !it->failed && it->link_to < 0 && (!it->skipped || it->unchanged))
      set_flags(c, &cur[0], it);
  }
  r->failed = atomic_load(&c->failed);
  r->skipped = atomic_load(&c->skipped);
  r->verified = atomic_load(&c->verified);
  r->meta_warnings = atomic_load(&c->meta_warnings);
  if (c->fatal)
    e = kh_seterr(c->fatal, "restore stopped: %s", kh_strerror(c->fatal));
  else if (r->failed)
    e = kh_seterr(KH_ERR_CORRUPT, "%llu entries could not be restored intact",
                  (unsigned long long)r->failed);
  else if (missing)
    e = kh_seterr(KH_ERR_NOTFOUND, "%s is not in the snapshot", missing);
out:
  if (locked)
    kh_vault_unlock(v);
  kh_snap_release(&s);
  free(hl);
  for (int i = 0; i < 2; i++)
    dcur_release(&cur[i]);
  for (int i = 0; i < nwk; i++)
    dcur_release(&wk[i].cur);
  free(wk);
  if (c->tfd >= 0)
    close(c->tfd);
  for (size_t i = 0; i < c->n; i++)
    ritem_release(&c->items[i]);
  free(c->items);
  free(c->incl_found);
  free(c->tpath);
  kh_pattern_set_free(c->incl);
  kh_pattern_set_free(c->excl);
  pthread_mutex_destroy(&c->wmu);
  pthread_mutex_destroy(&c->cmu);
  free(c);
  return e;
}
