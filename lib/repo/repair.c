/* repair index (rebuild the index from the packs present) and repair
 * snapshots (rewrite snapshots whose data is gone), so that an account
 * that lost packs can be brought back to one where check passes and every
 * intact file restores (docs/cli.md "repair"). */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/hex.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void say(kh_repair_fn fn, void *ctx, const char *snap, const uint8_t *path, size_t plen,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void say(kh_repair_fn fn, void *ctx, const char *snap, const uint8_t *path, size_t plen,
                const char *fmt, ...)
{
  if (!fn)
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fn(snap ? snap : "", path, plen, msg, ctx);
}

/* Fresh, unloaded index: the next kh_vault_load_index reads the region. */
static void index_forget(kh_vault *v)
{
  v->index_loaded = false;
  kh_index_release(&v->index);
  kh_index_init(&v->index);
  v->nindex_ids = v->nsuperseded = 0;
}

static void ignore_index(const char *what, kh_err e, void *ctx) {}

/* A pack's header, read by range: trailer, then header (format.md §6). */
static kh_err read_header(kh_vault *v, const uint8_t id[32], uint64_t size, kh_pack_blob **blobs,
                          size_t *n)
{
  char name[256];
  size_t tlen = kh_pack_trailer_len(&v->keys);
  kh_buf ct, pt;
  kh_buf_init(&ct, 1u << 26);
  kh_buf_init(&pt, 1u << 26);
  uint64_t hoff;
  uint32_t hlen;
  kh_err e = KH_OK;
  kh_vault_objname(v, name, sizeof name, "data", id, 32);
  if (size < tlen) {
    e = kh_seterr(KH_ERR_FORMAT, "pack too short");
    goto out;
  }
  if ((e = kh_provider_get(v->prov, name, size - tlen, tlen, &ct)))
    goto out;
  if (ct.len != tlen) {
    e = kh_seterr(KH_ERR_FORMAT, "pack changed size while being read");
    goto out;
  }
  if ((e = kh_obj_open(&v->keys, "packtrl", id, 32, ct.data, ct.len, &pt)) ||
      (e = kh_pack_trailer_decode(pt.data, pt.len, size - tlen, &hoff, &hlen)))
    goto out;
  kh_buf_reset(&ct);
  kh_buf_reset(&pt);
  if ((e = kh_provider_get(v->prov, name, hoff, hlen, &ct)))
    goto out;
  if (ct.len != hlen) {
    e = kh_seterr(KH_ERR_FORMAT, "pack header cut short");
    goto out;
  }
  if ((e = kh_obj_open(&v->keys, "packhdr", id, 32, ct.data, ct.len, &pt)))
    goto out;
  e = kh_pack_header_decode(pt.data, pt.len, hoff, blobs, n);
out:
  kh_buf_release(&ct);
  kh_buf_release(&pt);
  return e;
}

static bool bad_pair(const kh_vault *v, const uint8_t pack[32], const uint8_t blob[32])
{
  uint8_t key[64];
  memcpy(key, pack, 32);
  memcpy(key + 32, blob, 32);
  for (size_t lo = 0, hi = v->nbad_blobs; lo < hi;) {
    size_t mid = lo + (hi - lo) / 2;
    int c = memcmp(v->bad_blobs[mid], key, 64);
    if (!c)
      return true;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return false;
}

kh_err kh_repair_index(kh_vault *v, kh_repair_fn fn, void *ctx, kh_repair_index_result *r)
{
  memset(r, 0, sizeof *r);
  kh_err e = kh_vault_lock(v, true);
  if (e)
    return e;
  uint8_t(*ids)[32] = NULL, (*oldidx)[32] = NULL, (*damage)[32] = NULL;
  uint64_t *sizes = NULL;
  size_t n = 0, nold = 0, ndamage = 0;
  kh_index nidx;
  kh_index_init(&nidx);
  char name[256], sh[17];
  /* what the old index said (tolerant: repairing is the point) and the
   * damage known so far */
  index_forget(v);
  if ((e = kh_vault_load_index(v, ignore_index, NULL)) ||
      (e = kh_vault_list_sized(v, "data", &ids, &sizes, &n)))
    goto out;
  r->packs = n;
  for (size_t i = 0; i < n && !e; i++) {
    kh_pack_blob *blobs = NULL;
    size_t nb = 0;
    kh_hex_encode(sh, ids[i], 8);
    kh_err he = read_header(v, ids[i], sizes[i], &blobs, &nb);
    if (he == KH_ERR_NOMEM) {
      e = he;
      break;
    }
    if (he) {
      r->packs_unreadable++;
      say(fn, ctx, NULL, NULL, 0, "pack %s: header unreadable (%s: %s); left out of the index",
          sh, kh_strerror(he), kh_errdetail());
      continue;
    }
    uint32_t no;
    e = kh_index_add_pack(&nidx, ids[i], sizes[i], &no);
    for (size_t k = 0; k < nb && !e; k++) {
      if (bad_pair(v, ids[i], blobs[k].id)) {
        r->blobs_dropped++;
        continue;
      }
      e = kh_index_add(&nidx, &blobs[k], no, NULL);
    }
    free(blobs);
  }
  if (e)
    goto out;
  for (size_t p = 0; p < v->index.npacks; p++)
    if (kh_ids_find((const uint8_t(*)[32])ids, n, v->index.packs[p].id) < 0)
      r->packs_missing++;
  r->blobs = nidx.n;
  /* crash-safe: the new index supersedes every index there is, by its list
   * and by its generation (so an old index served again later stays inert);
   * only once it is durable are the old ones and the damage records deleted */
  if ((e = kh_vault_list_ids(v, "index", &oldidx, &nold)) ||
      (e = kh_vault_list_ids(v, "damage", &damage, &ndamage)))
    goto out;
  uint8_t newid[32];
  if ((e = kh_vault_write_full_index(v, &nidx, (const uint8_t(*)[32])oldidx, nold, newid)))
    goto out;
  for (size_t i = 0; i < nold && !e; i++) {
    kh_vault_objname(v, name, sizeof name, "index", oldidx[i], 32);
    e = kh_provider_del(v->prov, name);
    if (!e)
      r->indexes_replaced++;
  }
  for (size_t i = 0; i < ndamage && !e; i++) {
    kh_vault_objname(v, name, sizeof name, "damage", damage[i], 32);
    e = kh_provider_del(v->prov, name);
  }
  if (!e) /* the new index has none of the recorded copies */
    kh_vault_clear_damage(v);
out:
  free(ids);
  free(sizes);
  free(oldidx);
  free(damage);
  kh_index_release(&nidx);
  index_forget(v);
  kh_vault_unlock(v);
  return e;
}

/* ---- repair snapshots ---------------------------------------------------- */

typedef struct rctx {
  kh_vault *v;
  const kh_repair_snapshots_opts *o;
  kh_repair_snapshots_result *r;
  char snap[65];
  kh_buf path;
  kh_index nidx;              /* tree blobs written by this repair */
  kh_index intact;            /* trees found whole (a set): not walked again */
  kh_pack_writer w;
  bool wopen;
  uint64_t files_removed, bytes_removed, dirs_emptied; /* this snapshot */
} rctx;

#define PENDING UINT32_MAX

static bool usable(rctx *c, const uint8_t id[32])
{
  if (kh_index_find(&c->nidx, id))
    return true;
  return kh_vault_blob_usable(c->v, &c->v->index, kh_index_find(&c->v->index, id));
}

static kh_err flush(rctx *c)
{
  kh_vault *v = c->v;
  if (!c->wopen || c->w.n == 0)
    return KH_OK;
  const struct iovec *iov;
  size_t niov;
  uint64_t total;
  char name[256];
  uint32_t no;
  kh_err e = kh_pack_finish(&c->w, &v->keys, &iov, &niov, &total);
  if (!e) {
    kh_vault_objname(v, name, sizeof name, "data", c->w.id, 32);
    e = kh_provider_putv(v->prov, name, iov, niov, true);
  }
  if (!e)
    e = kh_index_add_pack(&c->nidx, c->w.id, total, &no);
  for (size_t k = 0; !e && k < c->w.n; k++) {
    kh_index_entry *ne = kh_index_find(&c->nidx, c->w.blobs[k].id);
    ne->pack = no;
    ne->offset = c->w.blobs[k].offset;
    ne->clen = c->w.blobs[k].clen;
    ne->ulen = c->w.blobs[k].ulen;
    c->nidx.packs[no].nblobs++;
  }
  kh_pack_writer_reset(&c->w);
  return e;
}

/* Store a rewritten tree (unless it is stored already); id receives its id. */
static kh_err store_tree(rctx *c, const kh_tnode *nodes, size_t n, uint8_t id[32])
{
  kh_buf enc;
  kh_buf_init(&enc, KH_BLOB_MAX);
  kh_err e = kh_tree_encode(nodes, n, &enc);
  if (e)
    goto out;
  kh_blob_id(&c->v->keys, id, enc.data, enc.len);
  if (c->o->dry_run || usable(c, id))
    goto out;
  if (!c->wopen) {
    if ((e = kh_pack_writer_init(&c->w)))
      goto out;
    c->wopen = true;
  }
  kh_pack_blob pb = {.type = KH_BLOB_TREE, .ulen = (uint32_t)enc.len};
  memcpy(pb.id, id, 32);
  if ((e = kh_index_add(&c->nidx, &pb, PENDING, NULL)) ||
      (e = kh_pack_add(&c->w, &c->v->keys, KH_BLOB_TREE, id, enc.data, enc.len,
                       (uint32_t)enc.len)))
    goto out;
  if (kh_pack_size(&c->w) >= KH_PACK_TARGET)
    e = flush(c);
out:
  kh_buf_release(&enc);
  return e;
}

static void path_push(rctx *c, const uint8_t *name, size_t n, size_t *saved)
{
  *saved = c->path.len;
  if (kh_buf_reserve(&c->path, n + 2) == KH_OK) {
    c->path.data[c->path.len++] = '/';
    memcpy(c->path.data + c->path.len, name, n);
    c->path.len += n;
    c->path.data[c->path.len] = 0;
  }
}

static void report(rctx *c, const char *fmt, const char *detail)
{
  const uint8_t *p = c->path.len ? c->path.data : (const uint8_t *)"/";
  size_t pl = c->path.len ? c->path.len : 1;
  say(c->o->removed, c->o->ctx, c->snap, p, pl, fmt, detail);
}

/* Rewrite tree id: out gets the id to use; *changed if it differs. */
static kh_err fix_tree(rctx *c, const uint8_t id[32], int depth, uint8_t out[32], bool *changed)
{
  kh_tree t = {0};
  kh_tnode *keep = NULL;
  kh_err e = KH_OK;
  *changed = false;
  memcpy(out, id, 32);
  if (kh_index_find(&c->intact, id))
    return KH_OK; /* shared with a snapshot already repaired */
  kh_err le = depth > 1024 ? kh_seterr(KH_ERR_FORMAT, "tree nesting too deep")
              : !usable(c, id) ? kh_seterr(KH_ERR_NOTFOUND, "its data is gone")
                               : kh_vault_load_tree(c->v, id, &t);
  if (le == KH_ERR_NOMEM)
    return le;
  if (le) {
    /* the listing is gone: the directory stays, empty */
    report(c, "directory listing lost (%s); restored as an empty directory",
           kh_errdetail());
    c->dirs_emptied++;
    *changed = true;
    return store_tree(c, NULL, 0, out);
  }
  keep = calloc(t.n ? t.n : 1, sizeof *keep);
  if (!keep) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  size_t k = 0;
  for (size_t i = 0; i < t.n && !e; i++) {
    kh_tnode x = t.nodes[i];
    size_t saved;
    path_push(c, x.name, x.namelen, &saved);
    if (x.type == KH_NODE_DIR) {
      bool ch;
      e = fix_tree(c, t.nodes[i].subtree, depth + 1, x.subtree, &ch);
      *changed |= ch;
    } else if (x.type == KH_NODE_FILE) {
      bool lost = false;
      for (size_t j = 0; j < x.nchunks && !lost; j++)
        lost = !sodium_is_zero(x.chunks[j].id, 32) && !usable(c, x.chunks[j].id);
      if (lost) {
        report(c, "%s", "file content lost: removed from the snapshot");
        c->files_removed++;
        c->bytes_removed += x.size;
        *changed = true;
        c->path.len = saved;
        if (c->path.data)
          c->path.data[saved] = 0;
        continue;
      }
    }
    c->path.len = saved;
    if (c->path.data)
      c->path.data[saved] = 0;
    keep[k++] = x;
  }
  if (!e && *changed) {
    e = store_tree(c, keep, k, out);
  } else if (!e) {
    kh_pack_blob b = {0};
    memcpy(b.id, id, 32);
    e = kh_index_add(&c->intact, &b, 0, NULL);
  }
out:
  free(keep);
  kh_tree_release(&t);
  return e;
}

typedef struct fixed {
  uint8_t id[32];
  kh_snap s;           /* the original, tree replaced */
  uint64_t files_removed, dirs_emptied;
} fixed;

kh_err kh_repair_snapshots(kh_vault *v, const kh_repair_snapshots_opts *o,
                           kh_repair_snapshots_result *r)
{
  memset(r, 0, sizeof *r);
  rctx c = {.v = v, .o = o, .r = r};
  kh_buf_init(&c.path, 1 << 20);
  kh_index_init(&c.nidx);
  kh_index_init(&c.intact);
  uint8_t(*ids)[32] = NULL;
  size_t n = 0, nfixed = 0;
  fixed *fx = NULL;
  kh_snapshot_info *list = NULL;
  size_t nlist = 0;
  char name[256];
  kh_err e = kh_vault_lock(v, false);
  if (e)
    goto out0;
  index_forget(v);
  uint64_t lost;
  if ((e = kh_vault_load_index(v, NULL, NULL))) {
    kh_adderr(e, "run keyhold repair index first");
    goto out;
  }
  if ((e = kh_vault_scan_packs(v, !o->dry_run, &lost)))
    goto out;
  if (o->nsnaps) {
    if (!(ids = calloc(o->nsnaps, 32))) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    for (size_t i = 0; i < o->nsnaps && !e; i++)
      e = kh_vault_resolve(v, o->snaps[i], ids[i]);
    n = o->nsnaps;
  } else {
    e = kh_vault_list_ids(v, "snapshots", &ids, &n);
  }
  if (e)
    goto out;
  if (!(fx = calloc(n ? n : 1, sizeof *fx))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  /* 1. new trees, stored in new packs */
  for (size_t i = 0; i < n && !e; i++) {
    bool dup = false;
    for (size_t j = 0; j < i && !dup; j++)
      dup = !memcmp(ids[i], ids[j], 32);
    if (dup)
      continue;
    kh_snap s;
    kh_hex_encode(c.snap, ids[i], 32);
    kh_err se = kh_vault_load_snapshot(v, ids[i], &s);
    if (se == KH_ERR_NOMEM) {
      e = se;
      break;
    }
    if (se) {
      r->unreadable++;
      say(o->removed, o->ctx, c.snap, NULL, 0, "snapshot unreadable (%s: %s); left alone",
          kh_strerror(se), kh_errdetail());
      continue;
    }
    r->snapshots++;
    c.files_removed = c.bytes_removed = c.dirs_emptied = 0;
    c.path.len = 0;
    uint8_t root[32];
    bool changed = false;
    e = fix_tree(&c, s.tree, 0, root, &changed);
    if (e || !changed) {
      kh_snap_release(&s);
      continue;
    }
    memcpy(s.tree, root, 32);
    s.files = s.files > c.files_removed ? s.files - c.files_removed : 0;
    s.bytes = s.bytes > c.bytes_removed ? s.bytes - c.bytes_removed : 0;
    memcpy(fx[nfixed].id, ids[i], 32);
    fx[nfixed].s = s;
    fx[nfixed].files_removed = c.files_removed;
    fx[nfixed++].dirs_emptied = c.dirs_emptied;
    r->files_removed += c.files_removed;
    r->dirs_emptied += c.dirs_emptied;
  }
  if (e)
    goto out;
  if (!o->dry_run) {
    /* 2. the packs' index before any snapshot names them (format.md §11) */
    uint8_t idxid[32];
    if ((e = flush(&c)))
      goto out;
    if (c.nidx.npacks && (e = kh_vault_write_index(v, &c.nidx, 0, NULL, 0, idxid)))
      goto out;
  }
  uint64_t maxctr = 0;
  if (nfixed && !o->dry_run) {
    if ((e = kh_snapshots_list(v, &list, &nlist)))
      goto out;
    for (size_t i = 0; i < nlist; i++)
      if (!strcmp(list[i].device, v->device_hex) && list[i].counter > maxctr)
        maxctr = list[i].counter;
  }
  /* 3. the copies, signed by this device; then the originals go (--forget) */
  for (size_t i = 0; i < nfixed && !e; i++) {
    kh_snap *s = &fx[i].s;
    char old[65], nid[65] = "";
    kh_hex_encode(old, fx[i].id, 32);
    if (!o->dry_run) {
      if (!s->has_original) { /* a copy of a copy keeps the first one's place */
        memcpy(s->orig_device, s->has_copy_of ? s->copy_device : s->device, 16);
        s->orig_counter = s->has_copy_of ? s->copy_counter : s->counter;
      }
      s->has_original = true;
      memcpy(s->original, fx[i].id, 32);
      memcpy(s->device, v->device_id, 16);
      uint8_t newid[32];
      if ((e = kh_vault_next_counter(v, maxctr, &s->counter)) ||
          (e = kh_vault_write_snapshot(v, s, newid)))
        break;
      maxctr = s->counter;
      kh_hex_encode(nid, newid, 32);
      r->rewritten++;
      if (o->forget) {
        kh_vault_objname(v, name, sizeof name, "snapshots", fx[i].id, 32);
        if ((e = kh_provider_del(v->prov, name)))
          break;
        r->forgotten++;
      }
    }
    if (o->rewritten)
      o->rewritten(old, nid, fx[i].files_removed, fx[i].dirs_emptied,
                   o->forget && !o->dry_run, o->ctx);
  }
out:
  kh_vault_unlock(v);
out0:
  if (fx)
    for (size_t i = 0; i < nfixed; i++)
      kh_snap_release(&fx[i].s);
  free(fx);
  free(ids);
  kh_snapshots_free(list, nlist);
  if (c.wopen)
    kh_pack_writer_release(&c.w);
  kh_index_release(&c.nidx);
  kh_index_release(&c.intact);
  kh_buf_release(&c.path);
  index_forget(v);
  return e;
}
