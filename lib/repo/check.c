/* check: verify the account's structure and, with read_data, every byte.
 * Each finding names what it affects: the index or pack, and for damaged
 * content every snapshot and file that uses it. */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/hex.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MARK_BAD = 1, MARK_GOOD_TREE = 2 };

typedef struct cctx {
  kh_vault *v;
  kh_check_fn fn;
  void *ctx;
  kh_check_result *r;
  char snap[65];
  kh_index good_trees;      /* trees already verified intact (a set) */
  kh_buf path;
} cctx;

static void finding(cctx *c, kh_check_level l, const char *snap, const char *path,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void finding(cctx *c, kh_check_level l, const char *snap, const char *path,
                    const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (l == KH_CHECK_ERROR)
    c->r->errors++;
  else
    c->r->notes++;
  if (c->fn)
    c->fn(l, snap ? snap : "", path ? path : "", msg, c->ctx);
}

static void index_report(const char *what, kh_err e, void *ctx)
{
  cctx *c = ctx;
  finding(c, KH_CHECK_ERROR, NULL, NULL, "%s: %s: %s", what, kh_strerror(e), kh_errdetail());
}

static char *full_hex(const uint8_t *id, char out[65])
{
  kh_hex_encode(out, id, 32);
  return out;
}

static char *short_hex(const uint8_t *id, char out[17])
{
  kh_hex_encode(out, id, 8);
  return out;
}

/* Is a blob usable?  Missing, in a bad pack, or bad itself: no. */
static const char *blob_problem(cctx *c, const uint8_t id[32])
{
  const kh_index_entry *en = kh_index_find(&c->v->index, id);
  if (!en)
    return "is missing (not in any index)";
  if (en->mark == MARK_BAD)
    return "is damaged (failed authentication)";
  if (c->v->index.packs[en->pack].mark == MARK_BAD)
    return "is in a missing or truncated pack";
  if (!kh_vault_blob_usable(c->v, &c->v->index, en))
    return "is known to be missing or damaged (recorded earlier; keyhold repair index)";
  return NULL;
}

static void check_tree(cctx *c, const uint8_t id[32], int depth, bool *damaged);

/* c->path holds the current path without its terminator in len; a NUL is
 * always kept just past len. */
static void path_push(cctx *c, const uint8_t *name, size_t n, size_t *saved)
{
  *saved = c->path.len;
  if (kh_buf_reserve(&c->path, n + 2) == KH_OK) {
    c->path.data[c->path.len++] = '/';
    memcpy(c->path.data + c->path.len, name, n);
    c->path.len += n;
    c->path.data[c->path.len] = 0;
  }
}

static void path_pop(cctx *c, size_t saved)
{
  c->path.len = saved;
  if (c->path.data)
    c->path.data[saved] = 0;
}

static const char *cur_path(cctx *c)
{
  return c->path.len ? (const char *)c->path.data : "/";
}

static void check_tree(cctx *c, const uint8_t id[32], int depth, bool *damaged)
{
  kh_index_entry *seen = kh_index_find(&c->good_trees, id);
  if (seen)
    return;
  char sh[17];
  const char *prob = blob_problem(c, id);
  if (prob) {
    finding(c, KH_CHECK_ERROR, c->snap, cur_path(c), "directory listing (tree %s) %s",
            short_hex(id, sh), prob);
    *damaged = true;
    return;
  }
  if (depth > 1024) {
    finding(c, KH_CHECK_ERROR, c->snap, cur_path(c), "tree nesting too deep");
    *damaged = true;
    return;
  }
  kh_tree t;
  kh_err e = kh_vault_load_tree(c->v, id, &t);
  if (e) {
    finding(c, KH_CHECK_ERROR, c->snap, cur_path(c), "directory listing (tree %s): %s: %s",
            short_hex(id, sh), kh_strerror(e), kh_errdetail());
    *damaged = true;
    return;
  }
  c->r->trees++;
  bool bad = false;
  for (size_t i = 0; i < t.n; i++) {
    const kh_tnode *x = &t.nodes[i];
    size_t saved;
    path_push(c, x->name, x->namelen, &saved);
    if (x->type == KH_NODE_DIR) {
      check_tree(c, x->subtree, depth + 1, &bad);
    } else if (x->type == KH_NODE_FILE) {
      for (size_t k = 0; k < x->nchunks; k++) {
        if (sodium_is_zero(x->chunks[k].id, 32))
          continue;
        const char *p = blob_problem(c, x->chunks[k].id);
        if (p) {
          finding(c, KH_CHECK_ERROR, c->snap, cur_path(c),
                  "file content cannot be restored: chunk %s %s",
                  short_hex(x->chunks[k].id, sh), p);
          bad = true;
          break;
        }
      }
    }
    path_pop(c, saved);
  }
  kh_tree_release(&t);
  if (bad)
    *damaged = true;
  else {
    kh_pack_blob b = {0};
    memcpy(b.id, id, 32);
    kh_index_add(&c->good_trees, &b, 0, NULL);
  }
}

/* read_data: read each pack in bounded pieces (header, then each blob the
 * index names), authenticate header and every blob, verify ids */
static void read_packs(cctx *c)
{
  kh_vault *v = c->v;
  kh_buf ct, plain;
  kh_buf_init(&ct, KH_BLOB_MAX + KH_AEAD_TAG);
  kh_buf_init(&plain, KH_BLOB_MAX);
  char sh[17], name[256];
  uint32_t *start = NULL;
  kh_index_entry **order = NULL;
  if (kh_index_group(&v->index, 0, &start, &order) != KH_OK) {
    finding(c, KH_CHECK_ERROR, NULL, NULL, "out of memory reading packs");
    goto done;
  }
  for (size_t p = 0; p < v->index.npacks; p++) {
    kh_index_pack *pk = &v->index.packs[p];
    if (pk->mark == MARK_BAD)
      continue;
    kh_vault_objname(v, name, sizeof name, "data", pk->id, 32);
    c->r->packs_read++;
    kh_pack_blob *hdr = NULL;
    size_t nh = 0;
    kh_err e = kh_vault_read_pack_header(v, pk->id, &hdr, &nh);
    free(hdr);
    if (e) {
      finding(c, KH_CHECK_ERROR, NULL, NULL, "pack %s: header: %s: %s", short_hex(pk->id, sh),
              kh_strerror(e), kh_errdetail());
      if (e != KH_ERR_AUTH && e != KH_ERR_FORMAT) {
        pk->mark = MARK_BAD;
        continue;
      }
    }
    for (uint32_t i = start[p]; i < start[p + 1]; i++) {
      kh_index_entry *en = order[i];
      kh_pack_blob b;
      kh_index_blob(en, &b);
      kh_buf_reset(&ct);
      kh_err be = kh_provider_get(v->prov, name, b.offset, b.clen, &ct);
      if (!be)
        be = kh_pack_blob_open(&v->keys, pk->id, &b, ct.data, &plain);
      uint8_t id[32];
      if (!be) {
        kh_blob_id(&v->keys, id, plain.data, plain.len);
        if (sodium_memcmp(id, b.id, 32))
          be = kh_seterr(KH_ERR_AUTH, "content does not match its id");
      }
      c->r->blobs++;
      if (be) {
        en->mark = MARK_BAD;
        char bh[17];
        finding(c, KH_CHECK_ERROR, NULL, NULL, "pack %s: blob %s: %s", short_hex(pk->id, sh),
                short_hex(b.id, bh), kh_strerror(be));
      }
    }
  }
done:
  free(start);
  free(order);
  kh_buf_release(&ct);
  kh_buf_release(&plain);
}

/* Record the packs and blobs found bad (damage.c), so that no later backup
 * deduplicates against them; a failure to record is a finding, not fatal. */
static kh_err record_damage(cctx *c)
{
  kh_vault *v = c->v;
  uint8_t(*packs)[32] = malloc((v->index.npacks ? v->index.npacks : 1) * 32);
  uint8_t(*blobs)[64] = NULL;
  size_t np = 0, nb = 0, nbcap = 0;
  kh_err e = packs ? KH_OK : kh_seterr(KH_ERR_NOMEM, "out of memory");
  for (size_t p = 0; !e && p < v->index.npacks; p++)
    if (v->index.packs[p].mark == MARK_BAD && !kh_vault_pack_known_bad(v, v->index.packs[p].id))
      memcpy(packs[np++], v->index.packs[p].id, 32);
  for (size_t i = 0; !e && i < v->index.cap; i++) {
    const kh_index_entry *en = &v->index.slots[i];
    if (!en->used || en->mark != MARK_BAD || en->pack >= v->index.npacks ||
        !kh_vault_blob_usable(v, &v->index, en)) /* not new */
      continue;
    if (nb == nbcap) {
      nbcap = nbcap ? 2 * nbcap : 64;
      uint8_t(*nbl)[64] = realloc(blobs, nbcap * 64);
      if (!nbl) {
        e = kh_seterr(KH_ERR_NOMEM, "out of memory");
        break;
      }
      blobs = nbl;
    }
    memcpy(blobs[nb], v->index.packs[en->pack].id, 32);
    memcpy(blobs[nb++] + 32, en->id, 32);
  }
  if (!e && kh_vault_record_damage(v, (const uint8_t(*)[32])packs, np,
                                   (const uint8_t(*)[64])blobs, nb) != KH_OK)
    finding(c, KH_CHECK_ERROR, NULL, NULL, "could not record the damage found: %s",
            kh_errdetail());
  free(packs);
  free(blobs);
  return e;
}

typedef struct snapctr {
  uint8_t dev[16];
  uint64_t counter;
  uint8_t id[32];
} snapctr;

static int cmp_ctr(const void *a, const void *b)
{
  const snapctr *x = a, *y = b;
  int c = memcmp(x->dev, y->dev, 16);
  if (c)
    return c;
  return x->counter < y->counter ? -1 : x->counter > y->counter;
}

kh_err kh_check(kh_vault *v, bool read_data, kh_check_fn fn, void *ctx, kh_check_result *r)
{
  memset(r, 0, sizeof *r);
  cctx c = {.v = v, .fn = fn, .ctx = ctx, .r = r};
  kh_index_init(&c.good_trees);
  kh_buf_init(&c.path, 1 << 20);
  uint8_t(*pl_ids)[32] = NULL;
  uint64_t *pl_sizes = NULL;
  size_t pl_n = 0;
  uint8_t *listed_known = NULL; /* listed pack j is in the index */
  uint8_t(*snaps)[32] = NULL;
  size_t nsnaps = 0;
  snapctr *ctrs = NULL;
  size_t nctrs = 0;
  char sh[17], full[65];
  /* A shared lock keeps prune out while we read.  Backups may run: we read
   * in the reverse of their write order (packs, index, snapshot), so every
   * snapshot we list has its index, and every pack an index names, in what
   * we read after it; a running backup's packs are only unindexed (a note).
   * docs/format.md §10. */
  kh_err e = kh_vault_lock(v, false);
  if (e)
    return e;
  /* 0. the snapshots, before anything they need */
  if ((e = kh_vault_list_ids(v, "snapshots", &snaps, &nsnaps)))
    goto out;
  /* 1. the index */
  kh_vault_index_drop(v);
  if ((e = kh_vault_load_index(v, index_report, &c)))
    goto out;
  for (size_t i = 0; i < v->nsuperseded; i++)
    finding(&c, KH_CHECK_NOTE, NULL, NULL,
            "index %s is superseded by a newer one and ignored (left over from prune, or "
            "served again by the provider)",
            short_hex(v->superseded[i], sh));
  /* 2. packs: present, of the indexed size, and nothing unindexed */
  if ((e = kh_vault_list_sized(v, "data", &pl_ids, &pl_sizes, &pl_n)))
    goto out;
  r->packs = v->index.npacks;
  if (!read_data)
    r->blobs = v->index.n;
  listed_known = calloc(pl_n ? pl_n : 1, 1);
  if (!listed_known) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t p = 0; p < v->index.npacks; p++) {
    kh_index_pack *pk = &v->index.packs[p];
    ptrdiff_t j = kh_ids_find((const uint8_t(*)[32])pl_ids, pl_n, pk->id);
    if (j >= 0)
      listed_known[j] = 1;
    if (j < 0) {
      pk->mark = MARK_BAD;
      finding(&c, KH_CHECK_ERROR, NULL, NULL, "pack %s is missing", short_hex(pk->id, sh));
    } else if (pl_sizes[j] != pk->size) {
      pk->mark = MARK_BAD;
      finding(&c, KH_CHECK_ERROR, NULL, NULL,
              "pack %s has %llu bytes, the index says %llu (truncated or replaced)",
              short_hex(pk->id, sh), (unsigned long long)pl_sizes[j],
              (unsigned long long)pk->size);
    }
  }
  for (size_t j = 0; j < pl_n; j++) {
    if (!listed_known[j])
      finding(&c, KH_CHECK_NOTE, NULL, NULL,
              "pack %s is in no index (written by a backup still running, or left over "
              "from an interrupted backup or prune; prune removes left-overs)",
              short_hex(pl_ids[j], sh));
  }
  if (read_data)
    read_packs(&c);
  /* 3. snapshots and everything they reach */
  ctrs = calloc(nsnaps ? nsnaps : 1, sizeof *ctrs);
  if (!ctrs) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < nsnaps; i++) {
    kh_snap s;
    kh_hex_encode(c.snap, snaps[i], 32);
    kh_err se = kh_vault_load_snapshot(v, snaps[i], &s);
    if (se) {
      finding(&c, KH_CHECK_ERROR, c.snap, NULL, "%s: %s", kh_strerror(se), kh_errdetail());
      continue;
    }
    r->snapshots++;
    memcpy(ctrs[nctrs].dev, s.device, 16);
    ctrs[nctrs].counter = s.counter;
    memcpy(ctrs[nctrs++].id, snaps[i], 32);
    bool damaged = false;
    c.path.len = 0;
    check_tree(&c, s.tree, 0, &damaged);
    kh_snap_release(&s);
  }
  /* 4. counters: a device never reuses one; this device's newest is there */
  qsort(ctrs, nctrs, sizeof *ctrs, cmp_ctr);
  uint64_t mine = 0;
  for (size_t i = 0; i < nctrs; i++) {
    if (i && !memcmp(ctrs[i].dev, ctrs[i - 1].dev, 16) && ctrs[i].counter == ctrs[i - 1].counter)
      finding(&c, KH_CHECK_ERROR, full_hex(ctrs[i].id, full), NULL,
              "reuses device counter %llu of another snapshot (replayed or forged)",
              (unsigned long long)ctrs[i].counter);
    if (!memcmp(ctrs[i].dev, v->device_id, 16) && ctrs[i].counter > mine)
      mine = ctrs[i].counter;
  }
  {
    char *cp = kh_path_join(v->device_dir, "counter");
    uint8_t *data = NULL;
    size_t len = 0;
    if (cp && kh_read_file(cp, 64, &data, &len) == KH_OK) {
      char t[65] = {0};
      memcpy(t, data, len < 64 ? len : 64);
      unsigned long long local = strtoull(t, NULL, 10);
      if (local > mine)
        finding(&c, KH_CHECK_NOTE, NULL, NULL,
                "this device's newest snapshot (#%llu) is not in the region: it was "
                "forgotten, or the provider rolled the region back",
                local);
    }
    free(data);
    free(cp);
  }
  if (!e)
    e = record_damage(&c);
  if (!e && r->errors)
    e = kh_seterr(KH_ERR_CORRUPT, "%llu errors found", (unsigned long long)r->errors);
out:
  free(pl_ids);
  free(pl_sizes);
  free(listed_known);
  free(snaps);
  free(ctrs);
  kh_index_release(&c.good_trees);
  kh_buf_release(&c.path);
  /* marks are scratch: later calls must reload a clean index */
  kh_vault_index_drop(v);
  kh_vault_unlock(v);
  return e;
}
