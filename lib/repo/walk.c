/* Reading a snapshot's trees: ls (kh_snapshot_walk) and diff. */
#include "repo/vault_internal.h"
#include "common/err.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define WALK_MAX_DEPTH 1024

typedef struct pathbuf {
  uint8_t *p;
  size_t len, cap;
} pathbuf;

static kh_err path_push(pathbuf *pb, const uint8_t *name, size_t n, size_t *saved)
{
  *saved = pb->len;
  if (pb->len + n + 2 > pb->cap) {
    size_t nc = (pb->len + n + 2) * 2;
    uint8_t *np = realloc(pb->p, nc);
    if (!np)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    pb->p = np;
    pb->cap = nc;
  }
  pb->p[pb->len++] = '/';
  memcpy(pb->p + pb->len, name, n);
  pb->len += n;
  pb->p[pb->len] = 0;
  return KH_OK;
}

static void content_id(const kh_tnode *t, uint8_t out[32])
{
  if (t->type == KH_NODE_DIR) {
    memcpy(out, t->subtree, 32);
    return;
  }
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, 32);
  if (t->type == KH_NODE_FILE)
    for (size_t i = 0; i < t->nchunks; i++) {
      crypto_generichash_update(&st, t->chunks[i].id, 32);
      crypto_generichash_update(&st, (const uint8_t *)&t->chunks[i].len, 8);
    }
  else if (t->type == KH_NODE_SYMLINK)
    crypto_generichash_update(&st, t->link, t->linklen);
  else
    crypto_generichash_update(&st, (const uint8_t *)&t->rdev, sizeof t->rdev);
  crypto_generichash_final(&st, out, 32);
}

void kh_node_info_fill(const kh_tnode *t, const uint8_t *path, size_t pathlen, kh_node_info *n)
{
  memset(n, 0, sizeof *n);
  n->path = path;
  n->pathlen = pathlen;
  n->type = t->type;
  n->mode = t->mode;
  n->uid = t->uid;
  n->gid = t->gid;
  n->mtime_ns = t->mtime_ns;
  n->size = t->size;
  n->link = t->link;
  n->linklen = t->linklen;
  n->nlink = t->nlink;
  n->dev = t->dev;
  n->ino = t->ino;
  n->rdev = t->rdev;
  if (t->type == KH_NODE_DIR)
    memcpy(n->tree, t->subtree, 32);
  n->node = t;
  content_id(t, n->content_id);
}

typedef struct walk_ctx {
  kh_vault *v;
  kh_walk_fn fn;
  void *ctx;
  pathbuf pb;
  int stop;
} walk_ctx;

static kh_err walk_node(walk_ctx *w, const kh_tnode *t, int depth);

static kh_err walk_tree(walk_ctx *w, const uint8_t id[32], int depth)
{
  if (depth > WALK_MAX_DEPTH)
    return kh_seterr(KH_ERR_FORMAT, "tree nesting too deep");
  kh_tree tree;
  kh_err e = kh_vault_load_tree(w->v, id, &tree);
  if (e)
    return kh_adderr(e, "%s", w->pb.len ? (const char *)w->pb.p : "/");
  for (size_t i = 0; !e && !w->stop && i < tree.n; i++)
    e = walk_node(w, &tree.nodes[i], depth);
  kh_tree_release(&tree);
  return e;
}

static kh_err walk_node(walk_ctx *w, const kh_tnode *t, int depth)
{
  size_t saved;
  kh_err e = path_push(&w->pb, t->name, t->namelen, &saved);
  if (e)
    return e;
  kh_node_info info;
  kh_node_info_fill(t, w->pb.p, w->pb.len, &info);
  w->stop = w->fn(&info, w->ctx);
  if (!w->stop && t->type == KH_NODE_DIR)
    e = walk_tree(w, t->subtree, depth + 1);
  w->pb.len = saved;
  if (w->pb.p)
    w->pb.p[saved] = 0;
  return e;
}

/* Load snapshot spec's root tree id. */
static kh_err snap_root(kh_vault *v, const char *spec, uint8_t root[32])
{
  uint8_t id[32];
  kh_snap s;
  kh_err e = kh_vault_resolve(v, spec, id);
  if (!e)
    e = kh_vault_load_snapshot(v, id, &s);
  if (!e) {
    memcpy(root, s.tree, 32);
    kh_snap_release(&s);
  }
  if (!e)
    e = kh_vault_load_index(v, NULL, NULL);
  return e;
}

kh_err kh_snapshot_walk(kh_vault *v, const char *snap, const char *prefix, kh_walk_fn fn,
                        void *ctx)
{
  uint8_t root[32];
  kh_err e = snap_root(v, snap, root);
  if (e)
    return e;
  walk_ctx w = {.v = v, .fn = fn, .ctx = ctx};
  if (!prefix || !strcmp(prefix, "/") || !prefix[0]) {
    e = walk_tree(&w, root, 0);
    goto out;
  }
  /* descend to prefix component by component */
  uint8_t cur[32];
  memcpy(cur, root, 32);
  const char *p = prefix;
  kh_tree tree = {0};
  for (;;) {
    while (*p == '/')
      p++;
    const char *end = strchr(p, '/');
    size_t cl = end ? (size_t)(end - p) : strlen(p);
    bool last = !end || !end[strspn(end, "/")];
    kh_tree_release(&tree);
    if ((e = kh_vault_load_tree(v, cur, &tree)))
      goto out;
    const kh_tnode *t = kh_tree_find(&tree, (const uint8_t *)p, cl);
    if (!t) {
      e = kh_seterr(KH_ERR_NOTFOUND, "%s is not in the snapshot", prefix);
      break;
    }
    if (last) {
      size_t saved;
      /* rebuild the path to t's parent */
      w.pb.len = 0;
      const char *q = prefix;
      while (q < p) {
        while (*q == '/')
          q++;
        if (q >= p)
          break;
        const char *qe = strchr(q, '/');
        if ((e = path_push(&w.pb, (const uint8_t *)q, (size_t)(qe - q), &saved)))
          break;
        q = qe;
      }
      if (!e)
        e = walk_node(&w, t, 0);
      break;
    }
    if (t->type != KH_NODE_DIR) {
      e = kh_seterr(KH_ERR_NOTFOUND, "%s is not in the snapshot", prefix);
      break;
    }
    memcpy(cur, t->subtree, 32);
    p += cl;
  }
  kh_tree_release(&tree);
out:
  free(w.pb.p);
  return e;
}

/* ---- diff ---------------------------------------------------------------- */

typedef struct diff_ctx {
  kh_vault *v;
  kh_diff_fn fn;
  void *ctx;
  pathbuf pb;
} diff_ctx;

typedef struct sub_ctx {
  diff_ctx *d;
  char change;
} sub_ctx;

/* Bytes of a file's content that are data (holes are none). */
static uint64_t data_bytes(const kh_tnode *t)
{
  uint64_t n = 0;
  if (t->type == KH_NODE_FILE)
    for (size_t i = 0; i < t->nchunks; i++)
      if (!sodium_is_zero(t->chunks[i].id, 32))
        n += t->chunks[i].len;
  return n;
}

static int cmp_ref(const void *a, const void *b)
{
  return memcmp(((const kh_chunkref *)a)->id, ((const kh_chunkref *)b)->id, 32);
}

/* Bytes of the chunks of y that x does not have (*added) and of x that y
 * does not have (*removed), by content id. */
static kh_err chunk_delta(const kh_tnode *x, const kh_tnode *y, uint64_t *added,
                          uint64_t *removed)
{
  *added = *removed = 0;
  kh_chunkref *a = malloc((x->nchunks + 1) * sizeof *a), *b = malloc((y->nchunks + 1) * sizeof *b);
  if (!a || !b) {
    free(a);
    free(b);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  if (x->nchunks)
    memcpy(a, x->chunks, x->nchunks * sizeof *a);
  if (y->nchunks)
    memcpy(b, y->chunks, y->nchunks * sizeof *b);
  qsort(a, x->nchunks, sizeof *a, cmp_ref);
  qsort(b, y->nchunks, sizeof *b, cmp_ref);
  size_t i = 0, j = 0;
  while (i < x->nchunks || j < y->nchunks) {
    int c = i == x->nchunks ? 1 : j == y->nchunks ? -1 : cmp_ref(&a[i], &b[j]);
    if (c < 0) {
      if (!sodium_is_zero(a[i].id, 32))
        *removed += a[i].len;
      i++;
    } else if (c > 0) {
      if (!sodium_is_zero(b[j].id, 32))
        *added += b[j].len;
      j++;
    } else { /* in both: skip every copy of this id on either side */
      kh_chunkref k = a[i];
      while (i < x->nchunks && !cmp_ref(&a[i], &k))
        i++;
      while (j < y->nchunks && !cmp_ref(&b[j], &k))
        j++;
    }
  }
  free(a);
  free(b);
  return KH_OK;
}

static int report_sub(const kh_node_info *n, void *ctx)
{
  sub_ctx *s = ctx;
  uint64_t bytes = data_bytes(n->node);
  s->d->fn(s->change, n->path, n->pathlen, s->change == '+' ? bytes : 0,
           s->change == '-' ? bytes : 0, s->d->ctx);
  return 0;
}

/* Report t and everything below it as change c. */
static kh_err diff_whole(diff_ctx *d, const kh_tnode *t, char c)
{
  sub_ctx s = {d, c};
  walk_ctx w = {.v = d->v, .fn = report_sub, .ctx = &s, .pb = d->pb};
  kh_err e = walk_node(&w, t, 0);
  d->pb = w.pb; /* may have grown */
  return e;
}

static kh_err diff_trees(diff_ctx *d, const uint8_t a[32], const uint8_t b[32], int depth)
{
  if (!memcmp(a, b, 32))
    return KH_OK;
  if (depth > WALK_MAX_DEPTH)
    return kh_seterr(KH_ERR_FORMAT, "tree nesting too deep");
  kh_tree ta = {0}, tb = {0};
  kh_err e = kh_vault_load_tree(d->v, a, &ta);
  if (!e)
    e = kh_vault_load_tree(d->v, b, &tb);
  size_t i = 0, j = 0;
  while (!e && (i < ta.n || j < tb.n)) {
    int c = i == ta.n ? 1 : j == tb.n ? -1
                                      : kh_name_cmp(ta.nodes[i].name, ta.nodes[i].namelen,
                                                    tb.nodes[j].name, tb.nodes[j].namelen);
    if (c < 0) {
      e = diff_whole(d, &ta.nodes[i++], '-');
      continue;
    }
    if (c > 0) {
      e = diff_whole(d, &tb.nodes[j++], '+');
      continue;
    }
    const kh_tnode *x = &ta.nodes[i++], *y = &tb.nodes[j++];
    size_t saved;
    if ((e = path_push(&d->pb, x->name, x->namelen, &saved)))
      break;
    if (x->type != y->type) {
      d->fn('T', d->pb.p, d->pb.len, data_bytes(y), data_bytes(x), d->ctx);
    } else {
      uint8_t cx[32], cy[32];
      content_id(x, cx);
      content_id(y, cy);
      bool meta = x->mode != y->mode || x->uid != y->uid || x->gid != y->gid ||
                  (x->type != KH_NODE_DIR && x->mtime_ns != y->mtime_ns) ||
                  x->flags != y->flags || x->xattrlen != y->xattrlen ||
                  (x->xattrlen && memcmp(x->xattrs, y->xattrs, x->xattrlen));
      if (x->type == KH_NODE_DIR) {
        if (meta)
          d->fn('U', d->pb.p, d->pb.len, 0, 0, d->ctx);
        e = diff_trees(d, x->subtree, y->subtree, depth + 1);
      } else if (memcmp(cx, cy, 32)) {
        uint64_t add = 0, rem = 0;
        if (x->type == KH_NODE_FILE)
          e = chunk_delta(x, y, &add, &rem);
        if (!e)
          d->fn('M', d->pb.p, d->pb.len, add, rem, d->ctx);
      } else if (meta) {
        d->fn('U', d->pb.p, d->pb.len, 0, 0, d->ctx);
      }
    }
    d->pb.len = saved;
    d->pb.p[saved] = 0;
  }
  kh_tree_release(&ta);
  kh_tree_release(&tb);
  return e;
}

kh_err kh_diff(kh_vault *v, const char *snap_a, const char *snap_b, kh_diff_fn fn, void *ctx)
{
  uint8_t ra[32], rb[32];
  kh_err e = snap_root(v, snap_a, ra);
  if (!e)
    e = snap_root(v, snap_b, rb);
  if (e)
    return e;
  diff_ctx d = {.v = v, .fn = fn, .ctx = ctx};
  e = diff_trees(&d, ra, rb, 0);
  free(d.pb.p);
  return e;
}
