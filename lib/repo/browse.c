/* Random access to snapshots (keyhold mount): directory listings by id and
 * file ranges read chunk by chunk through the index, with one bounded LRU
 * cache of decoded listings and decrypted chunks (vault.h "browsing"). */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/hex.h"
#include "pack/pack.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define BROWSE_CACHE_DEFAULT (64u << 20)
#define BROWSE_CACHE_SLOTS 512   /* bounds the linear scan as well */

/* One cached object: a decoded tree or a chunk's plaintext. */
typedef struct cache_slot {
  bool used, is_tree;
  uint8_t id[32];
  uint64_t stamp;                /* last use, for LRU */
  size_t cost;                   /* bytes held */
  kh_tree tree;
  kh_buf data;
} cache_slot;

struct kh_browse {
  kh_vault *v;
  size_t budget, held;
  uint64_t clock;
  cache_slot slots[BROWSE_CACHE_SLOTS];
};

struct kh_browse_file {
  kh_browse *b;
  kh_chunkref *chunks;
  uint64_t *start;               /* start[i]: offset of chunk i */
  size_t n;
  uint64_t size;
};

kh_err kh_browse_new(kh_vault *v, size_t cache_bytes, kh_browse **out)
{
  *out = NULL;
  kh_browse *b = calloc(1, sizeof *b);
  if (!b)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  b->v = v;
  b->budget = cache_bytes ? cache_bytes : BROWSE_CACHE_DEFAULT;
  *out = b;
  return KH_OK;
}

static void slot_clear(kh_browse *b, cache_slot *s)
{
  if (!s->used)
    return;
  if (s->is_tree)
    kh_tree_release(&s->tree);
  else
    kh_buf_release(&s->data);
  b->held -= s->cost;
  memset(s, 0, sizeof *s);
}

void kh_browse_free(kh_browse *b)
{
  if (!b)
    return;
  for (size_t i = 0; i < BROWSE_CACHE_SLOTS; i++)
    slot_clear(b, &b->slots[i]);
  free(b);
}

static cache_slot *cache_find(kh_browse *b, const uint8_t id[32], bool is_tree)
{
  for (size_t i = 0; i < BROWSE_CACHE_SLOTS; i++) {
    cache_slot *s = &b->slots[i];
    if (s->used && s->is_tree == is_tree && !memcmp(s->id, id, 32)) {
      s->stamp = ++b->clock;
      return s;
    }
  }
  return NULL;
}

/* A free slot, after evicting least recently used entries until cost more
 * bytes fit the budget (the newest entry always gets in). */
static cache_slot *cache_make_room(kh_browse *b, size_t cost)
{
  for (;;) {
    cache_slot *oldest = NULL, *free_slot = NULL;
    for (size_t i = 0; i < BROWSE_CACHE_SLOTS; i++) {
      cache_slot *s = &b->slots[i];
      if (!s->used) {
        if (!free_slot)
          free_slot = s;
      } else if (!oldest || s->stamp < oldest->stamp) {
        oldest = s;
      }
    }
    if (free_slot && (b->held + cost <= b->budget || !oldest))
      return free_slot;
    slot_clear(b, oldest);
  }
}

/* The decoded tree id (cached). */
static kh_err get_tree(kh_browse *b, const uint8_t id[32], const kh_tree **out)
{
  cache_slot *s = cache_find(b, id, true);
  if (s) {
    *out = &s->tree;
    return KH_OK;
  }
  kh_buf raw;
  kh_buf_init(&raw, KH_BLOB_MAX);
  kh_tree t = {0};
  kh_err e = kh_vault_read_blob(b->v, id, &raw);
  if (!e)
    e = kh_tree_decode(raw.data, raw.len, &t);
  size_t cost = raw.len + t.n * sizeof(kh_tnode);
  kh_buf_release(&raw);
  if (e)
    return e;
  s = cache_make_room(b, cost);
  s->used = s->is_tree = true;
  memcpy(s->id, id, 32);
  s->stamp = ++b->clock;
  s->cost = cost;
  s->tree = t;
  b->held += cost;
  *out = &s->tree;
  return KH_OK;
}

/* The plaintext of chunk r (cached); its length must be r->len. */
static kh_err get_chunk(kh_browse *b, const kh_chunkref *r, const kh_buf **out)
{
  cache_slot *s = cache_find(b, r->id, false);
  if (s) {
    *out = &s->data;
    return KH_OK;
  }
  kh_buf data;
  kh_buf_init(&data, KH_BLOB_MAX);
  kh_err e = kh_vault_read_blob(b->v, r->id, &data);
  if (!e && data.len != r->len)
    e = kh_seterr(KH_ERR_FORMAT, "chunk length differs from the tree");
  if (e) {
    kh_buf_release(&data);
    return e;
  }
  s = cache_make_room(b, data.cap);
  s->used = true;
  s->is_tree = false;
  memcpy(s->id, r->id, 32);
  s->stamp = ++b->clock;
  s->cost = data.cap;
  s->data = data;
  b->held += s->cost;
  *out = &s->data;
  return KH_OK;
}

kh_err kh_browse_root(kh_browse *b, const char *snap, uint8_t dir[32])
{
  uint8_t id[32];
  kh_snap s;
  kh_err e = KH_OK;
  if (strlen(snap) != KH_SNAPSHOT_ID_HEX || kh_hex_decode(id, 32, snap, KH_SNAPSHOT_ID_HEX))
    return kh_seterr(KH_ERR_INVAL, "not a full snapshot id: %s", snap);
  /* a snapshot made after the index was loaded needs the packs added since */
  if ((e = kh_vault_index_revalidate(b->v)) || (e = kh_vault_load_index(b->v, NULL, NULL)))
    return e;
  if ((e = kh_vault_load_snapshot(b->v, id, &s)))
    return e;
  memcpy(dir, s.tree, 32);
  kh_snap_release(&s);
  return KH_OK;
}

kh_err kh_browse_list(kh_browse *b, const uint8_t dir[32], kh_walk_fn fn, void *ctx)
{
  const kh_tree *t;
  kh_err e = get_tree(b, dir, &t);
  if (e)
    return e;
  for (size_t i = 0; i < t->n; i++) {
    kh_node_info info;
    kh_node_info_fill(&t->nodes[i], t->nodes[i].name, t->nodes[i].namelen, &info);
    int stop = fn(&info, ctx);
    if (stop)
      return (kh_err)stop;
  }
  return KH_OK;
}

kh_err kh_browse_lookup(kh_browse *b, const uint8_t dir[32], const uint8_t *name, size_t len,
                        kh_node_info *out)
{
  const kh_tree *t;
  kh_err e = get_tree(b, dir, &t);
  if (e)
    return e;
  const kh_tnode *n = kh_tree_find(t, name, len);
  if (!n)
    return kh_seterr(KH_ERR_NOTFOUND, "no such entry");
  kh_node_info_fill(n, n->name, n->namelen, out);
  return KH_OK;
}

kh_err kh_browse_file_open(kh_browse *b, const kh_node_info *n, kh_browse_file **out)
{
  *out = NULL;
  if (!n || !n->node || n->type != KH_NODE_FILE)
    return kh_seterr(KH_ERR_INVAL, "not a file");
  const kh_tnode *t = n->node;
  kh_err e = KH_OK;
  kh_browse_file *f = calloc(1, sizeof *f);
  if (!f || (t->nchunks && (!(f->chunks = calloc(t->nchunks, sizeof *f->chunks)) ||
                            !(f->start = calloc(t->nchunks, sizeof *f->start))))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  f->b = b;
  f->n = t->nchunks;
  f->size = t->size;
  uint64_t off = 0;
  for (size_t i = 0; i < t->nchunks; i++) {
    f->chunks[i] = t->chunks[i];
    f->start[i] = off;
    if (t->chunks[i].len > UINT64_MAX - off) {
      e = kh_seterr(KH_ERR_FORMAT, "chunk lengths overflow");
      goto out;
    }
    off += t->chunks[i].len;
  }
  if (off != t->size) {
    e = kh_seterr(KH_ERR_FORMAT, "chunk lengths do not add up to the file size");
    goto out;
  }
  *out = f;
  f = NULL;
out:
  kh_browse_file_free(f);
  return e;
}

void kh_browse_file_free(kh_browse_file *f)
{
  if (!f)
    return;
  free(f->chunks);
  free(f->start);
  free(f);
}

/* The chunk holding offset off (< f->size): the last one starting at or
 * before it that is not empty. */
static size_t chunk_at(const kh_browse_file *f, uint64_t off)
{
  size_t lo = 0, hi = f->n; /* start[lo] <= off < start[hi] */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (f->start[mid] <= off)
      lo = mid;
    else
      hi = mid;
  }
  while (lo + 1 < f->n && f->start[lo] + f->chunks[lo].len <= off)
    lo++; /* skip empty chunks */
  return lo;
}

kh_err kh_browse_file_read(kh_browse_file *f, uint64_t off, void *buf, size_t len, size_t *got)
{
  *got = 0;
  uint8_t *dst = buf;
  if (off >= f->size || !len)
    return KH_OK;
  if (len > f->size - off)
    len = (size_t)(f->size - off);
  size_t i = chunk_at(f, off);
  size_t done = 0;
  while (done < len) {
    const kh_chunkref *r = &f->chunks[i];
    uint64_t in = off + done - f->start[i];
    size_t k = r->len - in < len - done ? (size_t)(r->len - in) : len - done;
    if (sodium_is_zero(r->id, 32)) {
      memset(dst + done, 0, k);
    } else {
      const kh_buf *data;
      kh_err e = get_chunk(f->b, r, &data);
      if (e)
        return e;
      memcpy(dst + done, data->data + in, k);
    }
    done += k;
    *got = done;
    i++;
  }
  return KH_OK;
}
