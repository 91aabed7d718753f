/* keyhold copy: snapshots of one account re-encrypted into another (another
 * region, other keys, another chunker secret).  File contents are streamed
 * from the source chunk by chunk into a window cut by the destination's
 * chunker, exactly as a backup of the same bytes would cut them (so copies
 * deduplicate against the destination's own backups); trees are rebuilt
 * bottom-up (each distinct source tree once per run); then, per snapshot,
 * the last pack, one index and the signed snapshot (docs/format.md §11
 * write order). */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/hex.h"
#include "pack/pack.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define PENDING_PACK UINT32_MAX
#define ZSTD_LEVEL 3
#define MAX_DEPTH 1024

typedef struct tree_map {
  uint8_t src[32], dst[32];
} tree_map;

typedef struct copy_ctx {
  kh_vault *dst, *src;
  kh_copy_result *r;
  kh_index newidx;            /* blobs stored for the snapshot being copied */
  kh_pack_writer pack;
  ZSTD_CCtx *zc;
  uint8_t *zbuf;
  size_t zcap;
  uint8_t *win;               /* chunking window: 2 x KH_CHUNK_MAX */
  size_t wlen;
  kh_chunkref *refs;          /* chunks of the file being copied */
  size_t nrefs, refcap;
  kh_buf blob;                /* one source chunk */
  tree_map *trees;            /* source tree -> copy, sorted by src */
  size_t ntrees, treecap;
} copy_ctx;

/* ---- storing into the destination ------------------------------------------ */

static kh_err flush_pack(copy_ctx *c)
{
  if (c->pack.n == 0)
    return KH_OK;
  const struct iovec *iov;
  size_t niov;
  uint64_t total;
  char name[256];
  kh_err e = kh_pack_finish(&c->pack, &c->dst->keys, &iov, &niov, &total);
  if (!e) {
    kh_vault_objname(c->dst, name, sizeof name, "data", c->pack.id, 32);
    e = kh_provider_putv(c->dst->prov, name, iov, niov, true);
  }
  uint32_t no;
  if (!e)
    e = kh_index_add_pack(&c->newidx, c->pack.id, total, &no);
  for (size_t i = 0; !e && i < c->pack.n; i++) {
    kh_index_entry *en = kh_index_find(&c->newidx, c->pack.blobs[i].id);
    en->pack = no;
    en->offset = c->pack.blobs[i].offset;
    en->clen = c->pack.blobs[i].clen;
    en->ulen = c->pack.blobs[i].ulen;
    c->newidx.packs[no].nblobs++;
  }
  if (!e)
    c->r->bytes_new_stored += total;
  kh_pack_writer_reset(&c->pack);
  return e;
}

/* Store one blob unless the destination has a usable copy. */
static kh_err store_blob(copy_ctx *c, int type, const uint8_t *data, size_t len, uint8_t id[32])
{
  kh_vault *v = c->dst;
  kh_blob_id(&v->keys, id, data, len);
  if (kh_vault_blob_usable(v, &v->index, kh_index_find(&v->index, id)))
    return KH_OK;
  bool added = false;
  kh_pack_blob pb = {.type = (uint8_t)type, .ulen = (uint32_t)len};
  memcpy(pb.id, id, 32);
  kh_err e = kh_index_add(&c->newidx, &pb, PENDING_PACK, &added);
  if (e || !added)
    return e;
  const uint8_t *payload = data;
  size_t plen = len;
  if (len >= 64) { /* compress when it pays, as backup does */
    size_t need = ZSTD_compressBound(len);
    if (need > c->zcap) {
      uint8_t *nz = realloc(c->zbuf, need);
      if (!nz)
        return kh_seterr(KH_ERR_NOMEM, "out of memory");
      c->zbuf = nz;
      c->zcap = need;
    }
    size_t z = ZSTD_compressCCtx(c->zc, c->zbuf, c->zcap, data, len, ZSTD_LEVEL);
    if (!ZSTD_isError(z) && z < len - len / 32) {
      payload = c->zbuf;
      plen = z;
    }
  }
  if ((e = kh_pack_add(&c->pack, &v->keys, type, id, payload, plen, (uint32_t)len)))
    return e;
  c->r->blobs_new++;
  c->r->bytes_new_plain += len;
  return kh_pack_size(&c->pack) >= KH_PACK_TARGET ? flush_pack(c) : KH_OK;
}

static kh_err add_ref(copy_ctx *c, const uint8_t id[32], uint64_t len)
{
  if (c->nrefs && sodium_is_zero(id, 32) && sodium_is_zero(c->refs[c->nrefs - 1].id, 32)) {
    c->refs[c->nrefs - 1].len += len;
    return KH_OK;
  }
  if (c->nrefs == c->refcap) {
    size_t nc = c->refcap ? c->refcap * 2 : 16;
    kh_chunkref *nr = realloc(c->refs, nc * sizeof *nr);
    if (!nr)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    c->refs = nr;
    c->refcap = nc;
  }
  memcpy(c->refs[c->nrefs].id, id, 32);
  c->refs[c->nrefs++].len = len;
  return KH_OK;
}

/* Cut and store chunks while a full maximum chunk is in the window (or,
 * at eof, until it is empty), as backup's read loop does. */
static kh_err cut_window(copy_ctx *c, bool eof)
{
  size_t start = 0;
  kh_err e = KH_OK;
  while (!e && (c->wlen - start >= KH_CHUNK_MAX || (eof && start < c->wlen))) {
    size_t cut = kh_chunker_next(&c->dst->chunker, c->win + start, c->wlen - start, eof);
    if (cut == 0)
      break;
    uint8_t id[32];
    if (!(e = store_blob(c, KH_BLOB_DATA, c->win + start, cut, id)))
      e = add_ref(c, id, cut);
    start += cut;
  }
  memmove(c->win, c->win + start, c->wlen - start);
  c->wlen -= start;
  return e;
}

/* Re-chunk file t of the source into c->refs. */
static kh_err copy_file(copy_ctx *c, const kh_tnode *t)
{
  static const uint8_t zero[32];
  kh_err e = KH_OK;
  c->nrefs = 0;
  c->wlen = 0;
  for (size_t i = 0; !e && i < t->nchunks; i++) {
    const kh_chunkref *r = &t->chunks[i];
    if (sodium_is_zero(r->id, 32)) { /* a hole: the data before it ends there */
      if (!(e = cut_window(c, true)))
        e = add_ref(c, zero, r->len);
      continue;
    }
    if ((e = kh_vault_read_blob(c->src, r->id, &c->blob)))
      break;
    if (c->blob.len != r->len) {
      e = kh_seterr(KH_ERR_FORMAT, "chunk length differs from the tree");
      break;
    }
    for (size_t off = 0; !e && off < c->blob.len;) {
      size_t k = 2 * KH_CHUNK_MAX - c->wlen;
      if (k > c->blob.len - off)
        k = c->blob.len - off;
      memcpy(c->win + c->wlen, c->blob.data + off, k);
      c->wlen += k;
      off += k;
      e = cut_window(c, false);
    }
  }
  if (!e)
    e = cut_window(c, true);
  return e;
}

static tree_map *map_find(copy_ctx *c, const uint8_t src[32], size_t *pos)
{
  size_t lo = 0, hi = c->ntrees;
  *pos = 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int d = memcmp(c->trees[mid].src, src, 32);
    if (!d)
      return &c->trees[mid];
    if (d < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *pos = lo;
  return NULL;
}

static kh_err map_add(copy_ctx *c, size_t pos, const uint8_t src[32], const uint8_t dst[32])
{
  if (c->ntrees == c->treecap) {
    size_t nc = c->treecap ? c->treecap * 2 : 256;
    tree_map *nt = realloc(c->trees, nc * sizeof *nt);
    if (!nt)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    c->trees = nt;
    c->treecap = nc;
  }
  memmove(&c->trees[pos + 1], &c->trees[pos], (c->ntrees - pos) * sizeof *c->trees);
  memcpy(c->trees[pos].src, src, 32);
  memcpy(c->trees[pos].dst, dst, 32);
  c->ntrees++;
  return KH_OK;
}

/* The copy of source tree id (cached per run) into out. */
static kh_err copy_tree(copy_ctx *c, const uint8_t id[32], uint8_t out[32], int depth)
{
  size_t pos = 0;
  tree_map *m = map_find(c, id, &pos);
  if (m) {
    memcpy(out, m->dst, 32);
    return KH_OK;
  }
  if (depth > MAX_DEPTH)
    return kh_seterr(KH_ERR_FORMAT, "tree nesting too deep");
  kh_tree t = {0};
  kh_tnode *nodes = NULL;
  kh_buf enc;
  kh_buf_init(&enc, KH_BLOB_MAX);
  kh_err e = kh_vault_load_tree(c->src, id, &t);
  if (e)
    goto out;
  if (!(nodes = calloc(t.n ? t.n : 1, sizeof *nodes))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; !e && i < t.n; i++) {
    nodes[i] = t.nodes[i];
    nodes[i].chunks = NULL;
    nodes[i].nchunks = 0;
    if (t.nodes[i].type == KH_NODE_DIR) {
      e = copy_tree(c, t.nodes[i].subtree, nodes[i].subtree, depth + 1);
    } else if (t.nodes[i].type == KH_NODE_FILE) {
      if ((e = copy_file(c, &t.nodes[i])))
        e = kh_adderr(e, "%.*s", (int)t.nodes[i].namelen, (const char *)t.nodes[i].name);
      else if (c->nrefs && !(nodes[i].chunks = malloc(c->nrefs * sizeof *c->refs)))
        e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      else if (c->nrefs) {
        memcpy(nodes[i].chunks, c->refs, c->nrefs * sizeof *c->refs);
        nodes[i].nchunks = c->nrefs;
      }
    }
  }
  uint8_t nid[32];
  if (!e)
    e = kh_tree_encode(nodes, t.n, &enc);
  if (!e)
    e = store_blob(c, KH_BLOB_TREE, enc.data, enc.len, nid);
  if (!e && !map_find(c, id, &pos))
    e = map_add(c, pos, id, nid);
  if (!e)
    memcpy(out, nid, 32);
out:
  for (size_t i = 0; nodes && i < t.n; i++)
    free(nodes[i].chunks);
  free(nodes);
  kh_buf_release(&enc);
  kh_tree_release(&t);
  return e;
}

/* ---- committing one snapshot ---------------------------------------------------- */

/* The session's packs are indexed: make them visible to dst's loaded
 * index (session pack p becomes base + p), then start a new session. */
static kh_err merge_session(copy_ctx *c)
{
  kh_vault *v = c->dst;
  kh_err e = KH_OK;
  uint32_t base = (uint32_t)v->index.npacks, no;
  for (size_t p = 0; p < c->newidx.npacks && !e; p++)
    e = kh_index_add_pack(&v->index, c->newidx.packs[p].id, c->newidx.packs[p].size, &no);
  for (size_t i = 0; !e && i < c->newidx.cap; i++) {
    kh_index_entry *en = &c->newidx.slots[i];
    if (!en->used || en->pack >= c->newidx.npacks)
      continue;
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
  kh_index_release(&c->newidx);
  kh_index_init(&c->newidx);
  return e;
}

/* This device's highest counter among dst's snapshots. */
static uint64_t device_max_counter(kh_vault *v, const kh_snapshot_info *l, size_t n)
{
  char dev[KH_ACCOUNT_ID_HEX + 1];
  kh_hex_encode(dev, v->device_id, 16);
  uint64_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(l[i].device, dev) && l[i].counter > m)
      m = l[i].counter;
  return m;
}

static kh_err copy_one(copy_ctx *c, const kh_snapshot_info *si, uint64_t *maxctr,
                       char new_id[KH_SNAPSHOT_ID_HEX + 1])
{
  uint8_t sid[32], root[32], idxid[32], nid[32];
  kh_snap s;
  kh_err e = kh_hex_decode(sid, 32, si->id, KH_SNAPSHOT_ID_HEX);
  if (e || (e = kh_vault_load_snapshot(c->src, sid, &s)))
    return e;
  e = copy_tree(c, s.tree, root, 0);
  if (!e)
    e = flush_pack(c);
  if (!e) /* still ours?  Only then may the index and snapshot name our packs */
    e = kh_vault_lock_refresh(c->dst);
  if (!e && c->newidx.npacks)
    e = kh_vault_write_index(c->dst, &c->newidx, 0, NULL, 0, idxid);
  if (!e)
    e = merge_session(c);
  if (!e) {
    kh_snap d = s; /* time, host, paths, tags, counts: borrowed */
    d.has_parent = false;
    d.has_original = false;
    memcpy(d.tree, root, 32);
    memcpy(d.device, c->dst->device_id, 16);
    d.has_copy_of = true;
    memcpy(d.copy_of, sid, 32);
    /* ordered in its source's line, not this device's (docs/format.md §9.1) */
    memcpy(d.copy_device, s.has_original ? s.orig_device : s.has_copy_of ? s.copy_device : s.device, 16);
    d.copy_counter = s.has_original ? s.orig_counter : s.has_copy_of ? s.copy_counter : s.counter;
    e = kh_vault_next_counter(c->dst, *maxctr, &d.counter);
    if (!e)
      e = kh_vault_write_snapshot(c->dst, &d, nid);
    if (!e) {
      *maxctr = d.counter;
      kh_hex_encode(new_id, nid, 32);
    }
  }
  kh_snap_release(&s);
  return e;
}

static bool in_set(const kh_snapshot_info *l, size_t n, const char *id, bool copies)
{
  if (!id[0])
    return false;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(copies ? l[i].copy_of : l[i].id, id))
      return true;
  return false;
}

kh_err kh_copy(kh_vault *dst, kh_vault *src, const char *const *snaps, size_t nsnaps,
               kh_copy_fn fn, void *ctx, kh_copy_result *r)
{
  memset(r, 0, sizeof *r);
  if (!strcmp(dst->region_id, src->region_id) && !strcmp(dst->account, src->account))
    return kh_seterr(KH_ERR_INVAL, "source and destination are the same account");
  copy_ctx c = {.dst = dst, .src = src, .r = r};
  kh_snapshot_info *sl = NULL, *dl = NULL;
  size_t sn = 0, dn = 0;
  bool *want = NULL;
  bool dlocked = false, slocked = false;
  kh_index_init(&c.newidx);
  kh_buf_init(&c.blob, KH_BLOB_MAX);
  kh_err e = kh_pack_writer_init(&c.pack);
  if (e)
    goto out;
  if (!(c.zc = ZSTD_createCCtx()) || !(c.win = malloc(2 * KH_CHUNK_MAX))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((e = kh_vault_lock(src, false)))
    goto out;
  slocked = true;
  if ((e = kh_vault_lock(dst, false)))
    goto out;
  dlocked = true;
  if ((e = kh_vault_load_index(src, NULL, NULL)) || (e = kh_vault_load_index(dst, NULL, NULL)))
    goto out;
  uint64_t lost;
  if ((e = kh_vault_scan_packs(dst, true, &lost)))
    goto out;
  if ((e = kh_snapshots_list(src, &sl, &sn)) || (e = kh_snapshots_list(dst, &dl, &dn)))
    goto out;
  if (!(want = calloc(sn ? sn : 1, sizeof *want))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < nsnaps; i++) {
    char id[KH_SNAPSHOT_ID_HEX + 1];
    if ((e = kh_snapshot_resolve(src, snaps[i], NULL, id)))
      goto out;
    for (size_t j = 0; j < sn; j++)
      if (!strcmp(sl[j].id, id))
        want[j] = true;
  }
  uint64_t maxctr = device_max_counter(dst, dl, dn);
  for (size_t i = 0; i < sn; i++) {
    if (nsnaps && !want[i])
      continue;
    r->snapshots++;
    char new_id[KH_SNAPSHOT_ID_HEX + 1] = "";
    if (in_set(dl, dn, sl[i].id, true) || in_set(dl, dn, sl[i].copy_of, false) ||
        in_set(dl, dn, sl[i].copy_of, true)) {
      r->skipped++;
    } else {
      if ((e = copy_one(&c, &sl[i], &maxctr, new_id))) {
        kh_adderr(e, "copy of snapshot %.8s", sl[i].id);
        goto out;
      }
      r->copied++;
    }
    if (fn)
      fn(&sl[i], new_id, ctx);
  }
out:
  if (dlocked)
    kh_vault_unlock(dst);
  if (slocked)
    kh_vault_unlock(src);
  kh_snapshots_free(sl, sn);
  kh_snapshots_free(dl, dn);
  free(want);
  free(c.trees);
  free(c.refs);
  free(c.win);
  free(c.zbuf);
  ZSTD_freeCCtx(c.zc);
  kh_pack_writer_release(&c.pack);
  kh_buf_release(&c.blob);
  kh_index_release(&c.newidx);
  return e;
}
