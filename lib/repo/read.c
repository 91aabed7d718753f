/* Reading without restoring: the shared read lock, a file node's content
 * as a stream (dump), and statistics over snapshots (stats).  The tree walk
 * itself is kh_snapshot_walk (walk.c). */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/hex.h"
#include "pack/pack.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

kh_err kh_vault_read_lock(kh_vault *v)
{
  return kh_vault_lock(v, false);
}

void kh_vault_read_unlock(kh_vault *v)
{
  kh_vault_unlock(v);
}

/* ---- streaming a file node ----------------------------------------------- */

#define ZERO_PIECE 65536

kh_err kh_node_read(kh_vault *v, const kh_node_info *n, kh_data_fn fn, void *ctx)
{
  if (!n || !n->node || n->type != KH_NODE_FILE)
    return kh_seterr(KH_ERR_INVAL, "not a file");
  const kh_tnode *t = n->node;
  static const uint8_t zeros[ZERO_PIECE];
  kh_buf blob;
  kh_buf_init(&blob, KH_BLOB_MAX);
  kh_err e = KH_OK;
  uint64_t total = 0;
  for (size_t i = 0; i < t->nchunks; i++)
    total += t->chunks[i].len;
  if (total != t->size) {
    e = kh_seterr(KH_ERR_FORMAT, "chunk lengths do not add up to the file size");
    goto out;
  }
  for (size_t i = 0; !e && i < t->nchunks; i++) {
    const kh_chunkref *r = &t->chunks[i];
    if (sodium_is_zero(r->id, 32)) { /* a hole */
      for (uint64_t left = r->len; !e && left;) {
        size_t k = left < ZERO_PIECE ? (size_t)left : ZERO_PIECE;
        if (fn(zeros, k, ctx))
          e = kh_seterr(KH_ERR_IO, "output stopped");
        left -= k;
      }
      continue;
    }
    if ((e = kh_vault_read_blob(v, r->id, &blob)))
      break;
    if (blob.len != r->len) {
      e = kh_seterr(KH_ERR_FORMAT, "chunk length differs from the tree");
      break;
    }
    if (fn(blob.data, blob.len, ctx))
      e = kh_seterr(KH_ERR_IO, "output stopped");
  }
out:
  kh_buf_release(&blob);
  return e;
}

/* ---- stats --------------------------------------------------------------- */

/* A set of fixed-size random-looking keys (blob ids, or dev|ino pairs
 * hashed first), open addressing, grown at half full. */
typedef struct idset {
  uint8_t *keys;
  uint8_t *used;
  size_t cap, n, klen;
} idset;

static uint64_t key_hash(const uint8_t *k, size_t klen)
{
  uint64_t h;
  if (klen >= 32) { /* blob ids are keyed hashes already */
    memcpy(&h, k, 8);
    return h;
  }
  uint8_t d[8];
  crypto_generichash(d, sizeof d, k, klen, NULL, 0);
  memcpy(&h, d, 8);
  return h;
}

static kh_err idset_grow(idset *s)
{
  size_t nc = s->cap ? s->cap * 2 : 1024;
  uint8_t *nk = malloc(nc * s->klen), *nu = calloc(nc, 1);
  if (!nk || !nu) {
    free(nk);
    free(nu);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < s->cap; i++) {
    if (!s->used[i])
      continue;
    const uint8_t *k = s->keys + i * s->klen;
    size_t j = key_hash(k, s->klen) & (nc - 1);
    while (nu[j])
      j = (j + 1) & (nc - 1);
    nu[j] = 1;
    memcpy(nk + j * s->klen, k, s->klen);
  }
  free(s->keys);
  free(s->used);
  s->keys = nk;
  s->used = nu;
  s->cap = nc;
  return KH_OK;
}

/* Add k; *added says whether it was new. */
static kh_err idset_add(idset *s, const uint8_t *k, bool *added)
{
  kh_err e;
  if ((s->n + 1) * 2 > s->cap && (e = idset_grow(s)))
    return e;
  size_t j = key_hash(k, s->klen) & (s->cap - 1);
  while (s->used[j]) {
    if (!memcmp(s->keys + j * s->klen, k, s->klen)) {
      *added = false;
      return KH_OK;
    }
    j = (j + 1) & (s->cap - 1);
  }
  s->used[j] = 1;
  memcpy(s->keys + j * s->klen, k, s->klen);
  s->n++;
  *added = true;
  return KH_OK;
}

static void idset_release(idset *s)
{
  free(s->keys);
  free(s->used);
  memset(s, 0, sizeof *s);
}

typedef struct stats_ctx {
  kh_vault *v;
  kh_stats_result *r;
  idset blobs;   /* every distinct blob, over all snapshots */
  idset links;   /* (dev, ino) of hard-linked files, per snapshot */
  kh_err e;
} stats_ctx;

static kh_err count_blob(stats_ctx *c, const uint8_t id[32], bool tree)
{
  bool added;
  kh_err e = idset_add(&c->blobs, id, &added);
  if (e || !added)
    return e;
  const kh_index_entry *en = kh_index_find(&c->v->index, id);
  if (!en) {
    c->r->missing_blobs++;
    return KH_OK;
  }
  c->r->blobs++;
  if (tree)
    c->r->tree_blobs++;
  else {
    c->r->data_blobs++;
    c->r->data_plain_bytes += en->ulen;
  }
  c->r->plain_bytes += en->ulen;
  c->r->stored_bytes += en->clen;
  return KH_OK;
}

static int stats_node(const kh_node_info *n, void *ctx)
{
  stats_ctx *c = ctx;
  const kh_tnode *t = n->node;
  kh_err e = KH_OK;
  switch (n->type) {
  case KH_NODE_DIR:
    c->r->dirs++;
    e = count_blob(c, t->subtree, true);
    break;
  case KH_NODE_FILE: {
    c->r->files++;
    bool first = true;
    if (n->nlink > 1) {
      uint8_t k[16];
      memcpy(k, &n->dev, 8);
      memcpy(k + 8, &n->ino, 8);
      e = idset_add(&c->links, k, &first);
    }
    if (e || !first)
      break; /* a hard link: restore writes its content once */
    c->r->bytes += n->size;
    for (size_t i = 0; !e && i < t->nchunks; i++) {
      if (sodium_is_zero(t->chunks[i].id, 32))
        continue;
      c->r->referenced_bytes += t->chunks[i].len;
      e = count_blob(c, t->chunks[i].id, false);
    }
    break;
  }
  default:
    c->r->others++;
  }
  c->e = e;
  return e ? 1 : 0;
}

static kh_err stats_one(stats_ctx *c, const uint8_t id[32])
{
  kh_snap s;
  kh_err e = kh_vault_load_snapshot(c->v, id, &s);
  if (e)
    return e;
  e = count_blob(c, s.tree, true);
  kh_snap_release(&s);
  if (e)
    return e;
  char hex[KH_SNAPSHOT_ID_HEX + 1];
  kh_hex_encode(hex, id, 32);
  idset_release(&c->links);
  c->links.klen = 16;
  c->r->snapshots++;
  e = kh_snapshot_walk(c->v, hex, NULL, stats_node, c);
  if (c->e)
    e = c->e;
  return e;
}

kh_err kh_stats(kh_vault *v, const char *const *snaps, size_t nsnaps, kh_stats_result *r)
{
  memset(r, 0, sizeof *r);
  stats_ctx c = {.v = v, .r = r, .blobs = {.klen = 32}, .links = {.klen = 16}};
  kh_snapshot_info *all = NULL;
  size_t nall = 0;
  uint8_t (*ids)[32] = NULL;
  size_t nids = 0;
  bool locked = false;
  kh_err e = kh_vault_lock(v, false);
  if (e)
    goto out;
  locked = true;
  if ((e = kh_vault_load_index(v, NULL, NULL)))
    goto out;
  if (nsnaps) {
    if (!(ids = calloc(nsnaps, sizeof *ids))) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    for (size_t i = 0; i < nsnaps; i++) {
      uint8_t id[32];
      if ((e = kh_vault_resolve(v, snaps[i], id)))
        goto out;
      bool dup = false; /* the same snapshot named twice counts once */
      for (size_t j = 0; j < nids && !dup; j++)
        dup = !memcmp(ids[j], id, 32);
      if (!dup)
        memcpy(ids[nids++], id, 32);
    }
  } else {
    if ((e = kh_snapshots_list(v, &all, &nall)))
      goto out;
    if (nall && !(ids = calloc(nall, sizeof *ids))) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    for (size_t i = 0; i < nall; i++)
      if ((e = kh_hex_decode(ids[nids++], 32, all[i].id, KH_SNAPSHOT_ID_HEX)))
        goto out;
  }
  for (size_t i = 0; i < nids; i++)
    if ((e = stats_one(&c, ids[i])))
      goto out;
out:
  if (locked)
    kh_vault_unlock(v);
  kh_snapshots_free(all, nall);
  free(ids);
  idset_release(&c.blobs);
  idset_release(&c.links);
  return e;
}
