/* keyhold mount: the snapshots as a read-only FUSE file system.  The
 * virtual top levels (snapshots/, ids/, hosts/, tags/) come from the
 * snapshot list; everything below a snapshot is read on demand through
 * kh_browse (vault.h), one request at a time (fuse_loop, single thread). */
#define FUSE_USE_VERSION 35
#include "cli.h"

#include <errno.h>
#include <fuse.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char cmd_mount_help[] =
"NAME\n"
"    keyhold mount - browse the snapshots as a read-only file system\n"
"\n"
"SYNOPSIS\n"
"    keyhold mount [--allow-other] DIR\n"
"\n"
"DESCRIPTION\n"
"    Mounts the account's snapshots on the directory DIR with FUSE and\n"
"    serves them until unmounted.  Nothing is restored: directories are\n"
"    read when listed and file contents chunk by chunk when read, through\n"
"    the index, with a bounded cache (64 MiB) of decrypted chunks and\n"
"    listings.  Every byte is authenticated before it is returned; a read\n"
"    that touches a missing or damaged chunk fails with EIO (and the\n"
"    problem is reported on stderr).\n"
"\n"
"    The top level has four directories:\n"
"\n"
"      snapshots/TIME/    every snapshot, by its time (UTC, RFC 3339 to the\n"
"                         second, e.g. 2026-11-28T08:22:31Z; a second\n"
"                         snapshot of the same second gets -1, -2...)\n"
"      ids/ID/            every snapshot by its short id (8 hex digits, as\n"
"                         in keyhold snapshots); any unique prefix of 4 or\n"
"                         more hex digits, or the full id, also works\n"
"      hosts/HOST/TIME/   the snapshots made on HOST\n"
"      tags/TAG/TIME/     the snapshots carrying TAG\n"
"\n"
"    snapshots/, and each hosts/HOST/ and tags/TAG/, also hold a symlink\n"
"    \"latest\" to the newest of their snapshots (in the snapshot order of\n"
"    keyhold snapshots).  A '/' or '%' in a host or tag shows as %2F or\n"
"    %25.  Inside a snapshot directory are the backed-up paths from the\n"
"    root, as restore writes them, with the mode, owner, size, link count\n"
"    and modification time recorded in the snapshot; symlinks, devices\n"
"    and FIFOs appear as such (a FIFO cannot be used to talk to anything).\n"
"    Snapshots made while the file system is mounted appear in the\n"
"    listings within a few seconds.\n"
"\n"
"    Everything is read-only.  mount holds the account's shared lock until\n"
"    it exits, like restore: prune waits for it, backups may run.  It runs\n"
"    in the foreground; unmount with `fusermount3 -u DIR` (or `umount\n"
"    DIR`), or stop it with Ctrl-C (SIGINT), SIGTERM or SIGHUP, which\n"
"    unmount cleanly (a signal that was ignored when mount started, as\n"
"    SIGINT is for a shell's background job, stays ignored).  It needs\n"
"    /dev/fuse and, for a user other than root, the fusermount3 helper\n"
"    (Debian package fuse3).\n"
"\n"
"OPTIONS\n"
"    --allow-other\n"
"        Let other users see the mount (FUSE option allow_other; for a\n"
"        non-root user it needs user_allow_other in /etc/fuse.conf).  The\n"
"        modes in the snapshot are then enforced by the kernel\n"
"        (default_permissions).\n"
"    --json\n"
"        Not accepted: mount has no report (usage error).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 once unmounted (by fusermount3 -u or umount, or on SIGINT, SIGTERM\n"
"    or SIGHUP); 1 if the account cannot be opened, the lock cannot be\n"
"    taken or DIR cannot be mounted; 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    mkdir -p /mnt/kh && keyhold mount /mnt/kh &\n"
"    ls /mnt/kh/hosts/laptop/latest/home/ana\n"
"    cp /mnt/kh/snapshots/latest/home/ana/notes.txt /tmp/\n"
"    fusermount3 -u /mnt/kh\n";

#define REFRESH_SECONDS 5.0
#define NAME_BUF 64

typedef struct msnap {
  char id[KH_SNAPSHOT_ID_HEX + 1];
  char name[NAME_BUF];   /* snapshots/NAME: unique */
  char *host;            /* escaped */
  char **tags;           /* escaped */
  size_t ntags;
  int64_t time_ns;
  bool have_root;
  uint8_t root[32];
} msnap;

typedef struct mount_ctx {
  kh_vault *v;
  kh_browse *b;
  msnap *s;
  size_t n;
  double loaded_at;
  uid_t uid;
  gid_t gid;
  /* files open now: a signal ends the loop before the kernel's releases
   * arrive, so whatever is left is freed at exit */
  kh_browse_file **open;
  size_t nopen, capopen;
} mount_ctx;

static mount_ctx *ctx_get(void) { return fuse_get_context()->private_data; }

/* A host or tag as one path component: '/' and '%' escaped, "." and ".."
 * and "" made visible. */
static char *escape_name(const char *s) {
  if (!s) s = "";
  if (!*s) return strdup("%00");
  if (!strcmp(s, ".")) return strdup("%2E");
  if (!strcmp(s, "..")) return strdup("%2E%2E");
  size_t n = strlen(s), k = 0;
  char *o = malloc(3 * n + 1);
  if (!o) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '/' || s[i] == '%') k += (size_t)snprintf(o + k, 4, "%%%02X", (unsigned char)s[i]);
    else o[k++] = s[i];
  }
  o[k] = 0;
  return o;
}

static void snaps_free(msnap *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(s[i].host);
    for (size_t j = 0; j < s[i].ntags; j++) free(s[i].tags[j]);
    free(s[i].tags);
  }
  free(s);
}

/* (Re)load the snapshot list; roots already known are kept. */
static kh_err snaps_load(mount_ctx *c) {
  kh_snapshot_info *l = NULL;
  size_t n = 0;
  msnap *s = NULL;
  kh_err e = kh_snapshots_list(c->v, &l, &n);
  if (e) goto out;
  if (n && !(s = calloc(n, sizeof *s))) { e = KH_ERR_NOMEM; goto out; }
  for (size_t i = 0; i < n; i++) {
    msnap *m = &s[i];
    memcpy(m->id, l[i].id, sizeof m->id);
    m->time_ns = l[i].time_ns;
    char t[CLI_TIME_BUF];
    cli_fmt_time_rfc3339(t, sizeof t, l[i].time_ns);
    char *dot = strchr(t, '.');
    if (dot) { dot[0] = 'Z'; dot[1] = 0; } /* to the second */
    snprintf(m->name, sizeof m->name, "%s", t);
    for (unsigned k = 1; ; k++) { /* unique among the earlier ones */
      bool dup = false;
      for (size_t j = 0; j < i && !dup; j++) dup = !strcmp(s[j].name, m->name);
      if (!dup) break;
      snprintf(m->name, sizeof m->name, "%s-%u", t, k);
    }
    if (!(m->host = escape_name(l[i].host))) { e = KH_ERR_NOMEM; goto out; }
    if (l[i].ntags && !(m->tags = calloc(l[i].ntags, sizeof *m->tags))) { e = KH_ERR_NOMEM; goto out; }
    for (size_t j = 0; j < l[i].ntags; j++, m->ntags++)
      if (!(m->tags[j] = escape_name(l[i].tags[j]))) { e = KH_ERR_NOMEM; goto out; }
    for (size_t j = 0; j < c->n; j++)
      if (c->s[j].have_root && !strcmp(c->s[j].id, m->id)) {
        m->have_root = true;
        memcpy(m->root, c->s[j].root, 32);
      }
  }
  snaps_free(c->s, c->n);
  c->s = s;
  c->n = n;
  s = NULL;
  c->loaded_at = cli_now();
out:
  if (s) snaps_free(s, n);
  kh_snapshots_free(l, n);
  return e;
}

static void maybe_refresh(mount_ctx *c) {
  if (cli_now() - c->loaded_at < REFRESH_SECONDS) return;
  kh_err e = snaps_load(c);
  if (e) { /* keep serving the list we have; try again in a while */
    cli_warnf("mount: reloading the snapshot list: %s: %s", kh_strerror(e), kh_errdetail());
    c->loaded_at = cli_now();
  }
}

/* ---- resolving a path --------------------------------------------------- */

enum vkind {
  V_ROOT, V_SNAPSHOTS, V_IDS, V_HOSTS, V_TAGS, /* fixed directories */
  V_HOST, V_TAG,         /* hosts/H, tags/T: group */
  V_LATEST,              /* a "latest" symlink: target is snap's name */
  V_NODE                 /* inside a snapshot: info (the snapshot's root if is_root) */
};

typedef struct target {
  enum vkind kind;
  const char *group;     /* V_HOST / V_TAG: the escaped name (points into c->s) */
  msnap *snap;           /* V_LATEST, V_NODE */
  bool is_root;
  kh_node_info info;     /* V_NODE, !is_root: valid until the next browse call */
} target;

static bool in_group(const msnap *m, enum vkind k, const char *g) {
  if (k == V_HOST) return !strcmp(m->host, g);
  if (k == V_TAG) {
    for (size_t i = 0; i < m->ntags; i++)
      if (!strcmp(m->tags[i], g)) return true;
    return false;
  }
  return true;
}

/* Newest snapshot of a group (the list is oldest first). */
static msnap *group_latest(mount_ctx *c, enum vkind k, const char *g) {
  for (size_t i = c->n; i-- > 0;)
    if (in_group(&c->s[i], k, g)) return &c->s[i];
  return NULL;
}

static msnap *by_name(mount_ctx *c, enum vkind k, const char *g, const char *name, size_t len) {
  for (size_t i = 0; i < c->n; i++)
    if (strlen(c->s[i].name) == len && !memcmp(c->s[i].name, name, len) && in_group(&c->s[i], k, g))
      return &c->s[i];
  return NULL;
}

static msnap *by_id(mount_ctx *c, const char *p, size_t len) {
  if (len < 4 || len > KH_SNAPSHOT_ID_HEX) return NULL;
  msnap *hit = NULL;
  for (size_t i = 0; i < c->n; i++)
    if (!memcmp(c->s[i].id, p, len)) {
      if (hit) return NULL; /* ambiguous */
      hit = &c->s[i];
    }
  return hit;
}

static const char *group_find(mount_ctx *c, enum vkind k, const char *name, size_t len) {
  for (size_t i = 0; i < c->n; i++) {
    if (k == V_HOST && strlen(c->s[i].host) == len && !memcmp(c->s[i].host, name, len))
      return c->s[i].host;
    if (k == V_TAG)
      for (size_t j = 0; j < c->s[i].ntags; j++)
        if (strlen(c->s[i].tags[j]) == len && !memcmp(c->s[i].tags[j], name, len))
          return c->s[i].tags[j];
  }
  return NULL;
}

static int err_to_errno(kh_err e) {
  return e == KH_ERR_NOTFOUND ? -ENOENT : e == KH_ERR_NOMEM ? -ENOMEM : -EIO;
}

static int report(kh_err e, const char *path) {
  if (e != KH_ERR_NOTFOUND) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", kh_strerror(e), kh_errdetail());
    cli_path_msg("error", path, msg);
  }
  return err_to_errno(e);
}

/* The next component of *p (without slashes); false at the end. */
static bool next_comp(const char **p, const char **name, size_t *len) {
  while (**p == '/') (*p)++;
  if (!**p) return false;
  *name = *p;
  while (**p && **p != '/') (*p)++;
  *len = (size_t)(*p - *name);
  return true;
}

static bool comp_is(const char *name, size_t len, const char *lit) {
  return strlen(lit) == len && !memcmp(name, lit, len);
}

/* Resolve path; 0 or -errno. */
static int resolve_once(mount_ctx *c, const char *path, target *t) {
  const char *p = path, *nm;
  size_t len;
  memset(t, 0, sizeof *t);
  t->kind = V_ROOT;
  if (!next_comp(&p, &nm, &len)) return 0;
  enum vkind k;
  if (comp_is(nm, len, "snapshots")) k = V_SNAPSHOTS;
  else if (comp_is(nm, len, "ids")) k = V_IDS;
  else if (comp_is(nm, len, "hosts")) k = V_HOSTS;
  else if (comp_is(nm, len, "tags")) k = V_TAGS;
  else return -ENOENT;
  t->kind = k;
  if (!next_comp(&p, &nm, &len)) return 0;
  const char *g = NULL;
  if (k == V_HOSTS || k == V_TAGS) {
    k = k == V_HOSTS ? V_HOST : V_TAG;
    if (!(g = group_find(c, k, nm, len))) return -ENOENT;
    t->kind = k;
    t->group = g;
    if (!next_comp(&p, &nm, &len)) return 0;
  }
  msnap *m;
  if (k != V_IDS && comp_is(nm, len, "latest")) {
    if (!(m = group_latest(c, k, g))) return -ENOENT;
    t->kind = V_LATEST;
    t->snap = m;
    return next_comp(&p, &nm, &len) ? -ENOTDIR : 0;
  }
  m = k == V_IDS ? by_id(c, nm, len) : by_name(c, k, g, nm, len);
  if (!m) return -ENOENT;
  t->kind = V_NODE;
  t->snap = m;
  t->is_root = true;
  if (!m->have_root) {
    kh_err e = kh_browse_root(c->b, m->id, m->root);
    if (e) return report(e, path);
    m->have_root = true;
  }
  const uint8_t *dir = m->root;
  while (next_comp(&p, &nm, &len)) {
    if (!t->is_root && t->info.type != KH_NODE_DIR) return -ENOTDIR;
    uint8_t cur[32];
    memcpy(cur, dir, 32);
    kh_err e = kh_browse_lookup(c->b, cur, (const uint8_t *)nm, len, &t->info);
    if (e) return report(e, path);
    t->is_root = false;
    dir = t->info.tree;
  }
  return 0;
}

/* A name in a virtual directory that is not there may be a snapshot made
 * since the list was loaded. */
static int resolve(mount_ctx *c, const char *path, target *t) {
  int r = resolve_once(c, path, t);
  if (r == -ENOENT && (t->kind != V_NODE || t->is_root)) {
    double before = c->loaded_at;
    maybe_refresh(c);
    if (c->loaded_at != before) r = resolve_once(c, path, t);
  }
  return r;
}

/* ---- attributes --------------------------------------------------------- */

static void ts_from_ns(struct timespec *ts, int64_t ns) {
  ts->tv_sec = (time_t)(ns / 1000000000);
  ts->tv_nsec = (long)(ns % 1000000000);
  if (ts->tv_nsec < 0) { ts->tv_nsec += 1000000000; ts->tv_sec--; }
}

static void vdir_stat(mount_ctx *c, struct stat *st, int64_t ns) {
  memset(st, 0, sizeof *st);
  st->st_mode = S_IFDIR | 0555;
  st->st_nlink = 2;
  st->st_uid = c->uid;
  st->st_gid = c->gid;
  ts_from_ns(&st->st_mtim, ns);
  st->st_atim = st->st_ctim = st->st_mtim;
}

static void node_stat(const kh_node_info *n, struct stat *st) {
  static const mode_t fmt[] = {0, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK};
  memset(st, 0, sizeof *st);
  st->st_mode = (n->type >= 1 && n->type <= 7 ? fmt[n->type] : S_IFREG) | (n->mode & 07777);
  st->st_nlink = n->type == KH_NODE_DIR ? 2 : n->nlink ? (nlink_t)n->nlink : 1;
  st->st_uid = n->uid;
  st->st_gid = n->gid;
  st->st_size = (off_t)(n->type == KH_NODE_SYMLINK ? n->linklen : n->size);
  st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
  st->st_blksize = 65536;
  st->st_rdev = (dev_t)n->rdev;
  ts_from_ns(&st->st_mtim, n->mtime_ns);
  st->st_atim = st->st_ctim = st->st_mtim;
}

static void target_stat(mount_ctx *c, const target *t, struct stat *st) {
  if (t->kind == V_NODE && !t->is_root) { node_stat(&t->info, st); return; }
  const msnap *m = t->snap;
  if (!m) m = group_latest(c, t->kind, t->group); /* a group: its newest snapshot's time */
  vdir_stat(c, st, m ? m->time_ns : 0);
  if (t->kind == V_LATEST) {
    st->st_mode = S_IFLNK | 0777;
    st->st_nlink = 1;
    st->st_size = (off_t)strlen(t->snap->name);
  }
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  (void)fi;
  mount_ctx *c = ctx_get();
  target t;
  int r = resolve(c, path, &t);
  if (r) return r;
  target_stat(c, &t, st);
  return 0;
}

static int fs_readlink(const char *path, char *buf, size_t size) {
  mount_ctx *c = ctx_get();
  target t;
  int r = resolve(c, path, &t);
  if (r) return r;
  const char *l;
  size_t n;
  if (t.kind == V_LATEST) { l = t.snap->name; n = strlen(l); }
  else if (t.kind == V_NODE && !t.is_root && t.info.type == KH_NODE_SYMLINK) {
    l = (const char *)t.info.link;
    n = t.info.linklen;
  } else return -EINVAL;
  if (!size) return -EINVAL;
  if (n > size - 1) n = size - 1;
  memcpy(buf, l, n);
  buf[n] = 0;
  return 0;
}

/* ---- directories -------------------------------------------------------- */

typedef struct fill_ctx {
  void *buf;
  fuse_fill_dir_t fill;
  bool full;
} fill_ctx;

static int fill_node(const kh_node_info *n, void *vctx) {
  fill_ctx *f = vctx;
  char name[4097];
  if (n->pathlen >= sizeof name) return 0; /* not a POSIX name: left out */
  memcpy(name, n->path, n->pathlen);
  name[n->pathlen] = 0;
  struct stat st;
  node_stat(n, &st);
  if (f->fill(f->buf, name, &st, 0, FUSE_FILL_DIR_PLUS)) { f->full = true; return 1; }
  return 0;
}

/* Hosts and tags repeat across snapshots: list each once. */
static bool host_seen(const mount_ctx *c, size_t i) {
  for (size_t k = 0; k < i; k++)
    if (!strcmp(c->s[k].host, c->s[i].host)) return true;
  return false;
}

static bool tag_seen(const mount_ctx *c, size_t i, size_t j) {
  for (size_t k = 0; k <= i; k++)
    for (size_t m = 0; m < (k == i ? j : c->s[k].ntags); m++)
      if (!strcmp(c->s[k].tags[m], c->s[i].tags[j])) return true;
  return false;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
  (void)off; (void)fi; (void)flags;
  mount_ctx *c = ctx_get();
  target t;
  int r = resolve(c, path, &t);
  if (r) return r;
  if (t.kind != V_NODE) { /* a virtual directory: show what is there now */
    maybe_refresh(c);
    if ((r = resolve_once(c, path, &t))) return r;
  }
  fill(buf, ".", NULL, 0, 0);
  fill(buf, "..", NULL, 0, 0);
  switch (t.kind) {
  case V_ROOT:
    fill(buf, "hosts", NULL, 0, 0);
    fill(buf, "ids", NULL, 0, 0);
    fill(buf, "snapshots", NULL, 0, 0);
    fill(buf, "tags", NULL, 0, 0);
    return 0;
  case V_SNAPSHOTS:
  case V_HOST:
  case V_TAG: {
    bool any = false;
    for (size_t i = 0; i < c->n; i++)
      if (in_group(&c->s[i], t.kind, t.group)) {
        fill(buf, c->s[i].name, NULL, 0, 0);
        any = true;
      }
    if (any) fill(buf, "latest", NULL, 0, 0);
    return 0;
  }
  case V_IDS:
    for (size_t i = 0; i < c->n; i++) {
      char sid[9];
      memcpy(sid, c->s[i].id, 8);
      sid[8] = 0;
      fill(buf, sid, NULL, 0, 0);
    }
    return 0;
  case V_HOSTS:
    for (size_t i = 0; i < c->n; i++)
      if (!host_seen(c, i)) fill(buf, c->s[i].host, NULL, 0, 0);
    return 0;
  case V_TAGS:
    for (size_t i = 0; i < c->n; i++)
      for (size_t j = 0; j < c->s[i].ntags; j++)
        if (!tag_seen(c, i, j)) fill(buf, c->s[i].tags[j], NULL, 0, 0);
    return 0;
  case V_LATEST:
    return -ENOTDIR;
  case V_NODE:
    break;
  }
  if (!t.is_root && t.info.type != KH_NODE_DIR) return -ENOTDIR;
  uint8_t dir[32];
  memcpy(dir, t.is_root ? t.snap->root : t.info.tree, 32);
  fill_ctx f = {buf, fill, false};
  kh_err e = kh_browse_list(c->b, dir, fill_node, &f);
  if (e && !f.full) return report(e, path);
  return 0;
}

/* ---- files -------------------------------------------------------------- */

static int fs_open(const char *path, struct fuse_file_info *fi) {
  mount_ctx *c = ctx_get();
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
  target t;
  int r = resolve(c, path, &t);
  if (r) return r;
  if (t.kind != V_NODE || t.is_root || t.info.type == KH_NODE_DIR) return -EISDIR;
  if (t.info.type != KH_NODE_FILE) return -ENXIO;
  if (c->nopen == c->capopen) {
    size_t nc = c->capopen ? c->capopen * 2 : 16;
    kh_browse_file **no = realloc(c->open, nc * sizeof *no);
    if (!no) return -ENOMEM;
    c->open = no;
    c->capopen = nc;
  }
  kh_browse_file *f;
  kh_err e = kh_browse_file_open(c->b, &t.info, &f);
  if (e) return report(e, path);
  c->open[c->nopen++] = f;
  fi->fh = (uint64_t)(uintptr_t)f;
  fi->keep_cache = 1; /* a snapshot never changes */
  return 0;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  kh_browse_file *f = (kh_browse_file *)(uintptr_t)fi->fh;
  if (off < 0) return -EINVAL;
  if (size > INT32_MAX) size = INT32_MAX;
  size_t got;
  kh_err e = kh_browse_file_read(f, (uint64_t)off, buf, size, &got);
  if (e) return report(e, path);
  return (int)got;
}

static int fs_release(const char *path, struct fuse_file_info *fi) {
  (void)path;
  mount_ctx *c = ctx_get();
  kh_browse_file *f = (kh_browse_file *)(uintptr_t)fi->fh;
  for (size_t i = 0; i < c->nopen; i++)
    if (c->open[i] == f) {
      c->open[i] = c->open[--c->nopen];
      break;
    }
  kh_browse_file_free(f);
  return 0;
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  (void)conn;
  /* snapshots never change: let the kernel keep what it learned */
  cfg->entry_timeout = 300;
  cfg->attr_timeout = 300;
  cfg->negative_timeout = 0;
  cfg->kernel_cache = 1;
  return fuse_get_context()->private_data;
}

static const struct fuse_operations mount_ops = {
  .getattr = fs_getattr,
  .readlink = fs_readlink,
  .open = fs_open,
  .read = fs_read,
  .release = fs_release,
  .readdir = fs_readdir,
  .init = fs_init,
};

int cmd_mount(int argc, char **argv) {
  static const struct option longopts[] = {
    {"allow-other", no_argument, NULL, 'o'},
    {NULL, 0, NULL, 0},
  };
  bool allow_other = false;
  int ch;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
    case 'o': allow_other = true; break;
    default: return cli_usage("mount");
    }
  }
  if (argc - optind != 1) {
    cli_msgf(argc - optind < 1 ? "mount: DIR is required" : "mount: too many arguments");
    return cli_usage("mount");
  }
  if (g_opts.json) {
    cli_msgf("mount: --json does not apply: mount has no report");
    return cli_usage("mount");
  }
  const char *dir = argv[optind];
  struct stat st;
  if (stat(dir, &st)) {
    cli_msgf("mount: %s: %s", dir, strerror(errno));
    return CLI_EXIT_FAIL;
  }
  if (!S_ISDIR(st.st_mode)) {
    cli_msgf("mount: %s: not a directory", dir);
    return CLI_EXIT_FAIL;
  }
  mount_ctx c;
  memset(&c, 0, sizeof c);
  c.uid = getuid();
  c.gid = getgid();
  struct fuse *f = NULL;
  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  bool locked = false, mounted = false, handlers = false;
  int rc = CLI_EXIT_FAIL;
  /* Signals must reach the thread that waits for the kernel (this one), or
   * the loop would not notice them until the next request: block them in
   * the threads the library starts (the lock refresher), which inherit
   * this mask. */
  sigset_t sigs, old;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, &old);
  kh_err e;
  if (cli_open_vault(&c.v)) goto out;
  if ((e = kh_vault_read_lock(c.v))) { rc = cli_fail(e, "mount"); goto out; }
  locked = true;
  if ((e = kh_browse_new(c.v, 0, &c.b))) { rc = cli_fail(e, "mount"); goto out; }
  if ((e = snaps_load(&c))) { rc = cli_fail(e, "mount: list snapshots"); goto out; }
  if (kh_snapshots_skipped())
    cli_warnf("%llu snapshot(s) failed authentication and are not shown; run keyhold check",
              (unsigned long long)kh_snapshots_skipped());
  char opts[128];
  snprintf(opts, sizeof opts, "ro,fsname=keyhold,subtype=keyhold%s",
           allow_other ? ",allow_other,default_permissions" : "");
  if (fuse_opt_add_arg(&args, "keyhold") || fuse_opt_add_arg(&args, "-o") ||
      fuse_opt_add_arg(&args, opts)) {
    cli_msgf("out of memory");
    goto out;
  }
  if (!(f = fuse_new(&args, &mount_ops, sizeof mount_ops, &c))) {
    cli_msgf("mount: cannot set up FUSE");
    goto out;
  }
  if (fuse_mount(f, dir)) {
    cli_msgf("mount: cannot mount on %s (is /dev/fuse usable, or fusermount3 installed?)", dir);
    goto out;
  }
  mounted = true;
  if (fuse_set_signal_handlers(fuse_get_session(f))) {
    cli_msgf("mount: cannot install signal handlers");
    goto out;
  }
  handlers = true;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (!g_opts.quiet)
    cli_msgf("serving %zu snapshot%s on %s; unmount with 'fusermount3 -u %s' or Ctrl-C", c.n,
             c.n == 1 ? "" : "s", dir, dir);
  int r = fuse_loop(f);
  if (r < 0) {
    cli_msgf("mount: %s", strerror(-r));
    goto out;
  }
  rc = CLI_EXIT_OK;
out:
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (handlers) fuse_remove_signal_handlers(fuse_get_session(f));
  if (mounted) fuse_unmount(f);
  if (f) fuse_destroy(f);
  fuse_opt_free_args(&args);
  for (size_t i = 0; i < c.nopen; i++) kh_browse_file_free(c.open[i]);
  free(c.open);
  kh_browse_free(c.b);
  snaps_free(c.s, c.n);
  if (locked) kh_vault_read_unlock(c.v);
  kh_vault_free(c.v);
  return rc;
}
