/* forget (remove snapshots) and prune (remove data no snapshot uses).
 * Prune's order makes kill -9 at any moment safe (docs/format.md §11):
 * new packs, then the new index that supersedes every old one, then the
 * deletions.  Until the new index is durable nothing is deleted; after it,
 * whatever is left over is only unreferenced. */
#include "repo/vault_internal.h"
#include "keyhold/proto.h"
#include "common/err.h"
#include "common/hex.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

kh_err kh_forget(kh_vault *v, const char *const *snaps, size_t n)
{
  uint8_t(*ids)[32] = calloc(n ? n : 1, 32);
  if (!ids)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  kh_err e = kh_vault_require(v, KH_CAP_PRUNE);
  /* resolve everything first: a typo removes nothing */
  for (size_t i = 0; i < n && !e; i++)
    e = kh_vault_resolve(v, snaps[i], ids[i]);
  for (size_t i = 0; i < n && !e; i++) {
    char name[256];
    kh_vault_objname(v, name, sizeof name, "snapshots", ids[i], 32);
    e = kh_provider_del(v->prov, name);
  }
  free(ids);
  return e;
}

/* ---- prune -------------------------------------------------------------- */

enum { USED = 1 };

static kh_err mark_tree(kh_vault *v, const uint8_t id[32], int depth)
{
  kh_index_entry *en = kh_index_find(&v->index, id);
  if (!en)
    return kh_seterr(KH_ERR_CORRUPT, "a tree is missing: run keyhold check");
  if (en->mark == USED)
    return KH_OK; /* shared subtree already walked */
  en->mark = USED;
  if (depth > 1024)
    return kh_seterr(KH_ERR_FORMAT, "tree nesting too deep");
  kh_tree t;
  kh_err e = kh_vault_load_tree(v, id, &t);
  if (e)
    return kh_adderr(e, "cannot read a tree (run keyhold check)");
  for (size_t i = 0; i < t.n && !e; i++) {
    const kh_tnode *x = &t.nodes[i];
    if (x->type == KH_NODE_DIR) {
      e = mark_tree(v, x->subtree, depth + 1);
    } else if (x->type == KH_NODE_FILE) {
      for (size_t k = 0; k < x->nchunks; k++) {
        if (sodium_is_zero(x->chunks[k].id, 32))
          continue;
        kh_index_entry *c = kh_index_find(&v->index, x->chunks[k].id);
        if (!c) {
          e = kh_seterr(KH_ERR_CORRUPT, "a chunk is missing: run keyhold check");
          break;
        }
        c->mark = USED;
      }
    }
  }
  kh_tree_release(&t);
  return e;
}

typedef struct pack_stat {
  uint64_t used, unused, nused;
} pack_stat;

/* Write a repacked pack and point its blobs' placeholders at it. */
static kh_err flush_pack(kh_vault *v, kh_pack_writer *w, kh_index *nidx)
{
  if (w->n == 0)
    return KH_OK;
  const struct iovec *iov;
  size_t niov;
  uint64_t total;
  char name[256];
  uint32_t no;
  kh_err e = kh_pack_finish(w, &v->keys, &iov, &niov, &total);
  if (!e) {
    kh_vault_objname(v, name, sizeof name, "data", w->id, 32);
    e = kh_provider_putv(v->prov, name, iov, niov, true);
  }
  if (!e)
    e = kh_index_add_pack(nidx, w->id, total, &no);
  for (size_t k = 0; !e && k < w->n; k++) {
    kh_index_entry *ne = kh_index_find(nidx, w->blobs[k].id);
    ne->pack = no;
    ne->offset = w->blobs[k].offset;
    ne->clen = w->blobs[k].clen;
    nidx->packs[no].nblobs++;
  }
  kh_pack_writer_reset(w);
  return e;
}

kh_err kh_prune(kh_vault *v, kh_progress_fn progress, void *pctx, kh_prune_result *r)
{
  memset(r, 0, sizeof *r);
  kh_err e = kh_vault_require(v, KH_CAP_PRUNE | KH_CAP_READ);
  if (e || (e = kh_vault_lock(v, true)))
    return e;
  uint8_t(*snaps)[32] = NULL;
  size_t nsnaps = 0;
  pack_stat *ps = NULL;
  uint8_t *action = NULL; /* 0 keep, 1 delete, 2 repack */
  kh_index nidx;
  kh_index_init(&nidx);
  kh_pack_writer w;
  bool wopen = false;
  kh_buf pack, plain, z;
  kh_buf_init(&pack, KH_OBJMAX_PACK);
  kh_buf_init(&plain, KH_BLOB_MAX);
  kh_buf_init(&z, 2 * KH_BLOB_MAX);
  uint8_t(*oldidx)[32] = NULL;
  size_t nold = 0;
  uint8_t(*lo_ids)[32] = NULL;
  size_t lo_n = 0;
  uint8_t *lo_live = NULL;       /* listed pack i is in the new index */
  uint32_t *gstart = NULL;       /* v->index grouped by pack */
  kh_index_entry **gorder = NULL;
  ZSTD_CCtx *zc = ZSTD_createCCtx();
  char name[256];
  if (!zc) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  /* a fresh index: earlier calls may have left marks */
  kh_vault_index_drop(v);
  if ((e = kh_vault_load_index(v, NULL, NULL)))
    goto out;
  /* every snapshot must be readable, else we cannot know what is used */
  if ((e = kh_vault_list_ids(v, "snapshots", &snaps, &nsnaps)))
    goto out;
  for (size_t i = 0; i < nsnaps && !e; i++) {
    kh_snap s;
    if ((e = kh_vault_load_snapshot(v, snaps[i], &s))) {
      kh_adderr(e, "prune refuses to run while a snapshot is unreadable (see keyhold check)");
      break;
    }
    e = mark_tree(v, s.tree, 0);
    kh_snap_release(&s);
    if (!e)
      e = kh_vault_lock_check(v); /* a lost lock stops prune before it deletes */
  }
  if (e)
    goto out;
  size_t np = v->index.npacks;
  ps = calloc(np ? np : 1, sizeof *ps);
  action = calloc(np ? np : 1, 1);
  if (!ps || !action) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < v->index.cap; i++) {
    kh_index_entry *en = &v->index.slots[i];
    if (!en->used)
      continue;
    if (en->mark == USED) {
      ps[en->pack].used += en->clen;
      ps[en->pack].nused++;
    } else {
      ps[en->pack].unused += en->clen;
    }
  }
  for (size_t p = 0; p < np; p++) {
    if (ps[p].nused == 0)
      action[p] = 1;
    else if (ps[p].unused > (ps[p].used + ps[p].unused) / 5) /* > 20% waste */
      action[p] = 2;
  }
  /* v->index does not change from here on: group its entries by pack once */
  if ((e = kh_index_group(&v->index, 0, &gstart, &gorder)))
    goto out;
  /* new index: kept packs as they are, plus the repacked blobs */
  for (size_t p = 0; p < np && !e; p++) {
    if (action[p])
      continue;
    uint32_t no;
    e = kh_index_add_pack(&nidx, v->index.packs[p].id, v->index.packs[p].size, &no);
    v->index.packs[p].mark = 0;
    for (uint32_t i = gstart[p]; !e && i < gstart[p + 1]; i++) {
      kh_pack_blob b;
      kh_index_blob(gorder[i], &b);
      e = kh_index_add(&nidx, &b, no, NULL);
    }
    r->packs_kept++;
  }
  for (size_t p = 0; p < np && !e; p++) {
    if (action[p] != 2)
      continue;
    const uint8_t *pid = v->index.packs[p].id;
    kh_vault_objname(v, name, sizeof name, "data", pid, 32);
    kh_buf_reset(&pack);
    if ((e = kh_provider_read(v->prov, name, KH_OBJMAX_PACK, &pack)))
      break;
    for (uint32_t i = gstart[p]; !e && i < gstart[p + 1]; i++) {
      kh_index_entry *en = gorder[i];
      if (en->mark != USED || kh_index_find(&nidx, en->id))
        continue;
      kh_pack_blob b;
      kh_index_blob(en, &b);
      if ((uint64_t)b.offset + b.clen > pack.len) {
        e = kh_seterr(KH_ERR_CORRUPT, "pack is truncated: run keyhold check");
        break;
      }
      if ((e = kh_pack_blob_open(&v->keys, pid, &b, pack.data + b.offset, &plain)))
        break;
      const uint8_t *payload = plain.data;
      size_t plen = plain.len;
      if (kh_blob_compressed(&b)) {
        kh_buf_reset(&z);
        if ((e = kh_buf_reserve(&z, ZSTD_compressBound(plain.len))))
          break;
        size_t zl = ZSTD_compressCCtx(zc, z.data, z.cap, plain.data, plain.len, 3);
        if (!ZSTD_isError(zl) && zl < plain.len) {
          payload = z.data;
          plen = zl;
        }
      }
      if (!wopen) {
        kh_pack_writer_init(&w);
        wopen = true;
      }
      if ((e = kh_pack_add(&w, &v->keys, b.type, b.id, payload, plen, b.ulen)))
        break;
      /* placeholder so a blob is repacked once; fixed when the pack is written */
      kh_pack_blob ph = b;
      if ((e = kh_index_add(&nidx, &ph, UINT32_MAX, NULL)))
        break;
      if (kh_pack_size(&w) >= KH_PACK_TARGET && (e = flush_pack(v, &w, &nidx)))
        break;
    }
    r->packs_repacked++;
    if (!e)
      e = kh_vault_lock_check(v);
    if (progress) {
      kh_progress pr = {.files_done = p + 1, .files_total = np, .scan_done = true};
      progress(&pr, pctx);
    }
  }
  if (!e && wopen)
    e = flush_pack(v, &w, &nidx);
  if (e)
    goto out;
  /* still exclusive?  (the lock is confirmed, not assumed, before the
   * first step that makes anything unreachable) */
  if ((e = kh_vault_lock_refresh(v)))
    goto out;
  /* the new index supersedes every index there is (loaded or superseded),
   * by name and by generation */
  if ((e = kh_vault_list_ids(v, "index", &oldidx, &nold)))
    goto out;
  uint8_t newid[32];
  if ((e = kh_vault_write_full_index(v, &nidx, (const uint8_t(*)[32])oldidx, nold, newid)))
    goto out;
  /* from here on, failures leave only unreferenced objects behind */
  for (size_t i = 0; i < nold && !e; i++) {
    kh_vault_objname(v, name, sizeof name, "index", oldidx[i], 32);
    e = kh_provider_del(v->prov, name);
  }
  /* and once more before deleting packs: a backup that started after our
   * lock was lost would have packs no index names yet */
  if (!e)
    e = kh_vault_lock_refresh(v);
  if (!e)
    e = kh_vault_list_ids(v, "data", &lo_ids, &lo_n);
  if (!e && !(lo_live = calloc(lo_n ? lo_n : 1, 1)))
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
  for (size_t p = 0; p < nidx.npacks && !e; p++) {
    ptrdiff_t j = kh_ids_find((const uint8_t(*)[32])lo_ids, lo_n, nidx.packs[p].id);
    if (j >= 0)
      lo_live[j] = 1;
  }
  for (size_t i = 0; i < lo_n && !e; i++) {
    if (lo_live[i])
      continue;
    uint64_t sz = 0;
    kh_vault_objname(v, name, sizeof name, "data", lo_ids[i], 32);
    kh_provider_size(v->prov, name, &sz);
    e = kh_provider_del(v->prov, name);
    r->bytes_freed += sz;
    r->packs_deleted++;
  }
  for (size_t i = 0; i < v->index.cap; i++)
    if (v->index.slots[i].used && !kh_index_find(&nidx, v->index.slots[i].id))
      r->blobs_removed++;
out:
  if (wopen)
    kh_pack_writer_release(&w);
  ZSTD_freeCCtx(zc);
  free(snaps);
  free(ps);
  free(action);
  free(oldidx);
  free(lo_ids);
  free(lo_live);
  free(gstart);
  free(gorder);
  kh_index_release(&nidx);
  kh_buf_release(&pack);
  kh_buf_release(&plain);
  kh_buf_release(&z);
  kh_vault_index_drop(v);
  kh_vault_unlock(v);
  return e;
}
