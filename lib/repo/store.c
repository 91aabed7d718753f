/* The account's objects in the provider: sealed meta objects, index
 * loading (with supersedes), blobs, trees, signed snapshots
 * (docs/format.md §7–§9). */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/hex.h"
#include "common/wire.h"
#include "snapshot/order.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define INDEX_PLAIN_MAX (1u << 30)
#define SNAP_SIG_CTX "keyhold-snapshot-v1"

kh_err kh_vault_put_obj(kh_vault *v, const char *kind, const char *type, const uint8_t *id,
                        size_t idlen, const void *pt, size_t n, bool excl)
{
  char name[256];
  kh_buf ct;
  kh_buf_init(&ct, n + 1024);
  kh_vault_objname(v, name, sizeof name, kind, id, idlen);
  kh_err e = kh_obj_seal(&v->keys, type, id, idlen, pt, n, &ct);
  if (!e)
    e = kh_provider_put(v->prov, name, ct.data, ct.len, excl);
  kh_buf_release(&ct);
  return e;
}

/* The size bound of each kind of sealed meta object (provider.h). */
static uint64_t obj_max(const char *kind)
{
  if (!strcmp(kind, "index"))
    return KH_OBJMAX_INDEX;
  if (!strcmp(kind, "snapshots"))
    return KH_OBJMAX_SNAPSHOT;
  if (!strcmp(kind, "locks"))
    return KH_OBJMAX_LOCK;
  if (!strcmp(kind, "devices"))
    return KH_OBJMAX_DEVICE;
  if (!strcmp(kind, "damage"))
    return KH_OBJMAX_DAMAGE;
  assert(!"kh_vault_get_obj: unknown kind");
  return KH_OBJMAX_LOCK;
}

kh_err kh_vault_get_obj(kh_vault *v, const char *kind, const char *type, const uint8_t *id,
                        size_t idlen, kh_buf *out)
{
  char name[256];
  kh_buf ct;
  uint64_t max = obj_max(kind);
  kh_buf_init(&ct, (size_t)max);
  kh_vault_objname(v, name, sizeof name, kind, id, idlen);
  kh_err e = kh_provider_read(v->prov, name, max, &ct);
  if (!e) {
    kh_buf_reset(out);
    e = kh_obj_open(&v->keys, type, id, idlen, ct.data, ct.len, out);
    if (e == KH_ERR_AUTH)
      e = kh_seterr(KH_ERR_AUTH, "%s %.*s failed authentication (damaged, moved or forged)",
                    kind, (int)(idlen > 8 ? 16 : idlen * 2), name + strlen(name) - idlen * 2);
  }
  kh_buf_release(&ct);
  return e;
}

typedef struct id_list {
  uint8_t (*ids)[32];
  uint64_t *sizes;
  size_t n, cap;
  kh_err e;
} id_list;

static int collect_id(const char *name, uint64_t size, void *ctx)
{
  id_list *l = ctx;
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  uint8_t id[32];
  if (strlen(base) != 64 || kh_hex_decode(id, 32, base, 64))
    return 0; /* not ours: ignore */
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 64;
    uint8_t(*ni)[32] = realloc(l->ids, nc * 32);
    if (ni)
      l->ids = ni;
    uint64_t *ns = realloc(l->sizes, nc * sizeof *ns);
    if (ns)
      l->sizes = ns;
    if (!ni || !ns) {
      l->e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      return 1;
    }
    l->cap = nc;
  }
  l->sizes[l->n] = size;
  memcpy(l->ids[l->n++], id, 32);
  return 0;
}

typedef struct sized_id {
  uint8_t id[32];
  uint64_t size;
} sized_id;

static int cmp_sized(const void *a, const void *b) { return memcmp(a, b, 32); }

/* Sort ids (and sizes with them) so that kh_ids_find can bisect. */
static kh_err sort_ids(uint8_t (*ids)[32], uint64_t *sizes, size_t n)
{
  sized_id *t = malloc((n ? n : 1) * sizeof *t);
  if (!t)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    memcpy(t[i].id, ids[i], 32);
    t[i].size = sizes[i];
  }
  qsort(t, n, sizeof *t, cmp_sized);
  for (size_t i = 0; i < n; i++) {
    memcpy(ids[i], t[i].id, 32);
    sizes[i] = t[i].size;
  }
  free(t);
  return KH_OK;
}

ptrdiff_t kh_ids_find(const uint8_t (*ids)[32], size_t n, const uint8_t id[32])
{
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = memcmp(ids[mid], id, 32);
    if (c == 0)
      return (ptrdiff_t)mid;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

kh_err kh_vault_list_sized(kh_vault *v, const char *kind, uint8_t (**ids)[32],
                           uint64_t **sizes, size_t *n)
{
  char pre[200];
  snprintf(pre, sizeof pre, "%s/%s", v->prefix, kind);
  id_list l = {0};
  kh_err e = kh_provider_list(v->prov, pre, collect_id, &l);
  if (!e)
    e = l.e;
  if (!e)
    e = sort_ids(l.ids, l.sizes, l.n);
  if (e) {
    free(l.ids);
    free(l.sizes);
    return e;
  }
  *ids = l.ids;
  *n = l.n;
  if (sizes)
    *sizes = l.sizes;
  else
    free(l.sizes);
  return KH_OK;
}

kh_err kh_vault_list_ids(kh_vault *v, const char *kind, uint8_t (**ids)[32], size_t *n)
{
  return kh_vault_list_sized(v, kind, ids, NULL, n);
}

static bool id_in(const uint8_t (*set)[32], size_t n, const uint8_t id[32])
{
  for (size_t i = 0; i < n; i++)
    if (!memcmp(set[i], id, 32))
      return true;
  return false;
}

static kh_err read_index_plain(kh_vault *v, const uint8_t id[32], kh_buf *plain)
{
  kh_buf z;
  kh_buf_init(&z, INDEX_PLAIN_MAX);
  kh_err e = kh_vault_get_obj(v, "index", "index", id, 32, &z);
  if (!e)
    e = kh_zstd_unpack(z.data, z.len, INDEX_PLAIN_MAX, plain);
  kh_buf_release(&z);
  return e;
}

kh_err kh_vault_load_index(kh_vault *v, kh_index_report_fn report, void *ctx)
{
  if (v->index_loaded)
    return KH_OK;
  uint8_t(*ids)[32] = NULL, (*allsup)[32] = NULL;
  size_t n = 0, nall = 0;
  kh_buf *plains = NULL;
  uint64_t *gens = NULL, maxgen = 0;
  kh_err e = kh_vault_list_ids(v, "index", &ids, &n);
  if (e)
    return e;
  plains = calloc(n ? n : 1, sizeof *plains);
  gens = calloc(n ? n : 1, sizeof *gens);
  if (!plains || !gens) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  /* pass 1: authenticate every index and learn what each supersedes */
  for (size_t i = 0; i < n; i++) {
    kh_buf_init(&plains[i], INDEX_PLAIN_MAX);
    char hex[65];
    kh_hex_encode(hex, ids[i], 32);
    kh_err e2 = read_index_plain(v, ids[i], &plains[i]);
    if (!e2) {
      kh_index probe;
      kh_index_init(&probe);
      uint8_t(*sup)[32] = NULL;
      size_t nsup = 0;
      e2 = kh_index_decode(&probe, plains[i].data, plains[i].len, &sup, &nsup);
      gens[i] = probe.gen;
      if (!e2 && probe.gen > maxgen)
        maxgen = probe.gen;
      kh_index_release(&probe);
      if (!e2 && nsup) {
        uint8_t(*na)[32] = realloc(allsup, (nall + nsup) * 32);
        if (!na) {
          free(sup);
          e = kh_seterr(KH_ERR_NOMEM, "out of memory");
          goto out;
        }
        allsup = na;
        memcpy(allsup + nall, sup, nsup * 32);
        nall += nsup;
      }
      free(sup);
    }
    if (e2) {
      kh_buf_release(&plains[i]);
      plains[i].data = NULL;
      if (!report) {
        e = kh_adderr(e2, "index %.16s", hex);
        goto out;
      }
      char what[128];
      snprintf(what, sizeof what, "index %.16s", hex);
      report(what, e2, ctx);
    }
  }
  /* pass 2: load what nothing supersedes: neither a present index's list
   * nor a newer generation (an old index served again after prunes replaced
   * it, even once the index that named it is gone, is ignored; check
   * reports it); a copy of a blob known to be damaged loses to another copy
   * (damage.c) */
  if ((e = kh_vault_load_damage(v)))
    goto out;
  for (size_t i = 0; i < n; i++) {
    if (!plains[i].data)
      continue;
    if (gens[i] < maxgen || id_in((const uint8_t(*)[32])allsup, nall, ids[i])) {
      uint8_t(*ns)[32] = realloc(v->superseded, (v->nsuperseded + 1) * 32);
      if (!ns) {
        e = kh_seterr(KH_ERR_NOMEM, "out of memory");
        goto out;
      }
      v->superseded = ns;
      memcpy(v->superseded[v->nsuperseded++], ids[i], 32);
      continue;
    }
    if ((e = kh_vault_index_merge(v, plains[i].data, plains[i].len)))
      goto out;
    uint8_t(*ni)[32] = realloc(v->index_ids, (v->nindex_ids + 1) * 32);
    if (!ni) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    v->index_ids = ni;
    memcpy(v->index_ids[v->nindex_ids++], ids[i], 32);
  }
  v->index.gen = maxgen;
  v->index_loaded = true;
out:
  if (plains)
    for (size_t i = 0; i < n; i++)
      kh_buf_release(&plains[i]);
  free(plains);
  free(gens);
  free(ids);
  free(allsup);
  return e;
}

void kh_vault_index_drop(kh_vault *v)
{
  v->index_loaded = false;
  kh_index_release(&v->index);
  kh_index_init(&v->index);
  v->nindex_ids = v->nsuperseded = 0;
}

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, 32); }

kh_err kh_vault_index_revalidate(kh_vault *v)
{
  if (!v->index_loaded)
    return KH_OK;
  uint8_t(*ids)[32] = NULL, (*had)[32] = NULL;
  size_t n = 0, nhad = v->nindex_ids + v->nsuperseded;
  kh_err e = kh_vault_list_ids(v, "index", &ids, &n);
  if (e)
    return e;
  /* the table was built from exactly these objects (the loaded and the
   * superseded ones); anything else (an index a prune removed or wrote, or
   * one a backup on this handle added) means it is out of date */
  bool same = n == nhad;
  if (same && n) {
    had = malloc(n * 32);
    if (!had) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
      goto out;
    }
    if (v->nindex_ids)
      memcpy(had, v->index_ids, v->nindex_ids * 32);
    if (v->nsuperseded)
      memcpy(had + v->nindex_ids, v->superseded, v->nsuperseded * 32);
    qsort(had, n, 32, cmp_id);
    same = !memcmp(had, ids, n * 32);
  }
  if (!same)
    kh_vault_index_drop(v);
out:
  free(ids);
  free(had);
  return e;
}

/* Encode idx as generation gen and store it as a new index object. */
static kh_err write_index(kh_vault *v, const kh_index *idx, uint64_t gen, uint32_t first_pack,
                          const uint8_t (*sup)[32], size_t nsup, uint8_t id_out[32])
{
  kh_buf plain, z;
  kh_buf_init(&plain, INDEX_PLAIN_MAX);
  kh_buf_init(&z, INDEX_PLAIN_MAX);
  randombytes_buf(id_out, 32);
  kh_index hdr = *idx; /* a shallow view: only the generation differs */
  hdr.gen = gen;
  kh_err e = kh_index_encode(&hdr, first_pack, sup, nsup, &plain);
  if (!e)
    e = kh_zstd_pack(plain.data, plain.len, 3, &z);
  if (!e)
    e = kh_vault_put_obj(v, "index", "index", id_out, 32, z.data, z.len, true);
  kh_buf_release(&plain);
  kh_buf_release(&z);
  return e;
}

kh_err kh_vault_write_index(kh_vault *v, const kh_index *idx, uint32_t first_pack,
                            const uint8_t (*sup)[32], size_t nsup, uint8_t id_out[32])
{
  assert(v->index_loaded); /* the generation is the loaded one's */
  return write_index(v, idx, v->index.gen, first_pack, sup, nsup, id_out);
}

kh_err kh_vault_write_full_index(kh_vault *v, const kh_index *idx, const uint8_t (*sup)[32],
                                 size_t nsup, uint8_t id_out[32])
{
  assert(v->index_loaded);
  if (v->index.gen == UINT64_MAX)
    return kh_seterr(KH_ERR_TOOBIG, "index generation exhausted");
  return write_index(v, idx, v->index.gen + 1, 0, sup, nsup, id_out);
}

kh_err kh_vault_read_blob(kh_vault *v, const uint8_t id[32], kh_buf *out)
{
  const kh_index_entry *en = kh_index_find(&v->index, id);
  if (!en)
    return kh_seterr(KH_ERR_NOTFOUND, "blob %02x%02x%02x%02x is not in the index", id[0], id[1],
                     id[2], id[3]);
  kh_pack_blob b;
  kh_index_blob(en, &b);
  const uint8_t *pid = v->index.packs[en->pack].id;
  char name[256];
  kh_buf ct;
  kh_buf_init(&ct, KH_BLOB_MAX + KH_AEAD_TAG);
  kh_vault_objname(v, name, sizeof name, "data", pid, 32);
  kh_err e = kh_provider_get(v->prov, name, b.offset, b.clen, &ct);
  if (!e)
    e = kh_pack_blob_open(&v->keys, pid, &b, ct.data, out);
  if (e)
    kh_adderr(e, "pack %02x%02x%02x%02x", pid[0], pid[1], pid[2], pid[3]);
  kh_buf_release(&ct);
  return e;
}

typedef struct pack_src {
  kh_provider *prov;
  const char *name;
} pack_src;

static kh_err pack_src_read(void *ctx, uint64_t off, size_t len, kh_buf *out)
{
  const pack_src *s = ctx;
  return kh_provider_get(s->prov, s->name, off, len, out);
}

kh_err kh_vault_read_pack_header(kh_vault *v, const uint8_t pid[32], kh_pack_blob **blobs,
                                 size_t *n)
{
  *blobs = NULL;
  *n = 0;
  char name[256];
  uint64_t size;
  kh_vault_objname(v, name, sizeof name, "data", pid, 32);
  kh_err e = kh_provider_size(v->prov, name, &size);
  pack_src src = {v->prov, name};
  if (!e)
    e = kh_pack_read_header(&v->keys, pid, size, pack_src_read, &src, blobs, n);
  return e;
}

kh_err kh_vault_load_tree(kh_vault *v, const uint8_t id[32], kh_tree *t)
{
  kh_buf b;
  kh_buf_init(&b, KH_BLOB_MAX);
  kh_err e = kh_vault_read_blob(v, id, &b);
  if (!e)
    e = kh_tree_decode(b.data, b.len, t);
  kh_buf_release(&b);
  return e;
}

/* ---- snapshots ---------------------------------------------------------- */

static kh_err snap_sig_msg(const kh_vault *v, const uint8_t id[32], const uint8_t *body,
                           size_t n, kh_buf *msg)
{
  kh_err e = kh_buf_append(msg, SNAP_SIG_CTX, sizeof SNAP_SIG_CTX);
  if (!e) e = kh_buf_append(msg, v->region_id, strlen(v->region_id) + 1);
  if (!e) e = kh_buf_append(msg, v->account, strlen(v->account) + 1);
  if (!e) e = kh_buf_append(msg, id, 32);
  if (!e) e = kh_buf_append(msg, body, n);
  return e;
}

static kh_err device_key(kh_vault *v, const uint8_t dev[16], uint8_t pk[32])
{
  for (size_t i = 0; i < v->ndevices; i++)
    if (!memcmp(v->devices[i].id, dev, 16)) {
      memcpy(pk, v->devices[i].pk, 32);
      return KH_OK;
    }
  kh_buf rec;
  kh_buf_init(&rec, 1 << 16);
  kh_err e = kh_vault_get_obj(v, "devices", "device", dev, 16, &rec);
  if (e == KH_ERR_NOTFOUND)
    e = kh_seterr(KH_ERR_AUTH, "signed by a device this account does not know");
  if (!e && (rec.len < 38 || memcmp(rec.data, "KHDEV1", 6)))
    e = kh_seterr(KH_ERR_FORMAT, "malformed device record");
  if (!e) {
    memcpy(pk, rec.data + 6, 32);
    struct kh_known_device *nd = realloc(v->devices, (v->ndevices + 1) * sizeof *nd);
    if (!nd) {
      e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    } else {
      v->devices = nd;
      memcpy(nd[v->ndevices].id, dev, 16);
      memcpy(nd[v->ndevices].pk, pk, 32);
      v->ndevices++;
    }
  }
  kh_buf_release(&rec);
  return e;
}

kh_err kh_vault_write_snapshot(kh_vault *v, const kh_snap *s, uint8_t id_out[32])
{
  kh_buf body, msg, pt;
  kh_buf_init(&body, 1 << 24);
  kh_buf_init(&msg, 1 << 24);
  kh_buf_init(&pt, 1 << 24);
  randombytes_buf(id_out, 32);
  uint8_t sig[64];
  kh_err e = kh_snap_encode(s, &body);
  if (!e) e = snap_sig_msg(v, id_out, body.data, body.len, &msg);
  if (!e) {
    crypto_sign_detached(sig, NULL, msg.data, msg.len, v->device_sk);
    e = kh_buf_put_lbytes(&pt, body.data, body.len);
  }
  if (!e) e = kh_buf_append(&pt, sig, 64);
  if (!e) e = kh_vault_put_obj(v, "snapshots", "snapshot", id_out, 32, pt.data, pt.len, true);
  kh_buf_release(&body);
  kh_buf_release(&msg);
  kh_buf_release(&pt);
  return e;
}

kh_err kh_vault_load_snapshot(kh_vault *v, const uint8_t id[32], kh_snap *s)
{
  memset(s, 0, sizeof *s);
  kh_buf pt, msg;
  kh_buf_init(&pt, 1 << 24);
  kh_buf_init(&msg, 1 << 24);
  kh_err e = kh_vault_get_obj(v, "snapshots", "snapshot", id, 32, &pt);
  if (e)
    goto out;
  kh_rd r;
  kh_rd_init(&r, pt.data, pt.len);
  size_t blen;
  const uint8_t *body = kh_rd_lbytes(&r, 1 << 24, &blen);
  const uint8_t *sig = kh_rd_bytes(&r, 64);
  if (!kh_rd_done(&r)) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed snapshot");
    goto out;
  }
  if ((e = kh_snap_decode(body, blen, s)))
    goto out;
  uint8_t pk[32];
  if ((e = device_key(v, s->device, pk)) ||
      (e = snap_sig_msg(v, id, body, blen, &msg)))
    goto out;
  if (crypto_sign_verify_detached(sig, msg.data, msg.len, pk) != 0)
    e = kh_seterr(KH_ERR_AUTH, "device signature does not verify");
out:
  if (e) {
    char hex[65];
    kh_hex_encode(hex, id, 32);
    kh_adderr(e, "snapshot %.8s", hex);
    kh_snap_release(s);
  }
  kh_buf_release(&pt);
  kh_buf_release(&msg);
  return e;
}

static void snap_info(const uint8_t id[32], kh_snap *s, kh_snapshot_info *o)
{
  memset(o, 0, sizeof *o);
  kh_hex_encode(o->id, id, 32);
  o->time_ns = s->time_ns;
  o->host = s->host;
  o->paths = s->paths;
  o->npaths = s->npaths;
  o->tags = s->tags;
  o->ntags = s->ntags;
  s->host = NULL;
  s->paths = NULL;
  s->npaths = 0;
  s->tags = NULL;
  s->ntags = 0;
  if (s->has_parent)
    kh_hex_encode(o->parent, s->parent, 32);
  kh_hex_encode(o->tree, s->tree, 32);
  kh_hex_encode(o->device, s->device, 16);
  o->counter = s->counter;
  o->files = s->files;
  o->bytes = s->bytes;
  if (s->has_original)
    kh_hex_encode(o->original, s->original, 32);
  if (s->has_copy_of)
    kh_hex_encode(o->copy_of, s->copy_of, 32);
}

/* The ordering fields of a snapshot (docs/format.md §9.1). */
static void snap_order_key(const uint8_t id[32], const kh_snap *s, kh_snap_order_key *k)
{
  memset(k, 0, sizeof *k);
  memcpy(k->id, id, 32);
  k->time_ns = s->time_ns;
  /* the order line: a rewrite's original's, a copy's source's, else its own */
  memcpy(k->device, s->has_original ? s->orig_device : s->has_copy_of ? s->copy_device : s->device, 16);
  k->counter = s->has_original ? s->orig_counter : s->has_copy_of ? s->copy_counter : s->counter;
  k->has_parent = s->has_parent;
  memcpy(k->parent, s->parent, 32);
  k->has_original = s->has_original;
  memcpy(k->original, s->original, 32);
}

static _Thread_local uint64_t skipped_tls;

uint64_t kh_snapshots_skipped(void) { return skipped_tls; }

kh_err kh_snapshots_list(kh_vault *v, kh_snapshot_info **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  skipped_tls = 0;
  uint8_t(*ids)[32] = NULL;
  size_t cnt = 0, k = 0;
  kh_err e = kh_vault_list_ids(v, "snapshots", &ids, &cnt);
  if (e)
    return e;
  kh_snapshot_info *info = calloc(cnt ? cnt : 1, sizeof *info);
  kh_snapshot_info *sorted = calloc(cnt ? cnt : 1, sizeof *sorted);
  kh_snap_order_key *keys = calloc(cnt ? cnt : 1, sizeof *keys);
  size_t *perm = calloc(cnt ? cnt : 1, sizeof *perm);
  int64_t *order_ns = calloc(cnt ? cnt : 1, sizeof *order_ns);
  if (!info || !sorted || !keys || !perm || !order_ns) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < cnt && !e; i++) {
    kh_snap s;
    e = kh_vault_load_snapshot(v, ids[i], &s);
    if (e == KH_ERR_NOMEM || e == KH_ERR_IO || e == KH_ERR_NOSPACE || e == KH_ERR_CRYPTO ||
        e == KH_ERR_DENIED)
      break; /* not damage (a region server's refusal neither): the caller
              * must not see a shorter list */
    if (e) {
      e = KH_OK;
      skipped_tls++; /* damaged: `keyhold check` names it */
      continue;
    }
    snap_order_key(ids[i], &s, &keys[k]);
    snap_info(ids[i], &s, &info[k++]);
    kh_snap_release(&s);
  }
  if (e)
    goto out;
  /* one order for everything that asks "which is newer" (format.md §9.1) */
  if ((e = kh_snap_order(keys, k, perm, order_ns)))
    goto out;
  for (size_t i = 0; i < k; i++) {
    sorted[i] = info[perm[i]];
    sorted[i].order_ns = order_ns[perm[i]];
  }
  *out = sorted;
  *n = k;
  sorted = NULL;
  k = 0;
out:
  kh_snapshots_free(info, k);
  free(sorted);
  free(keys);
  free(perm);
  free(order_ns);
  free(ids);
  return e;
}

void kh_snapshots_free_one(kh_snapshot_info *s)
{
  free(s->host);
  for (size_t j = 0; j < s->npaths; j++)
    free(s->paths[j]);
  free(s->paths);
  for (size_t j = 0; j < s->ntags; j++)
    free(s->tags[j]);
  free(s->tags);
  memset(s, 0, sizeof *s);
}

void kh_snapshots_free(kh_snapshot_info *s, size_t n)
{
  if (!s)
    return;
  for (size_t i = 0; i < n; i++)
    kh_snapshots_free_one(&s[i]);
  free(s);
}

kh_err kh_vault_next_counter(kh_vault *v, uint64_t region_max, uint64_t *out)
{
  /* Two backups from this device may run at once: the read-increment-write
   * happens under an exclusive lock on the counter file, so they never get
   * the same counter. */
  char *path = kh_path_join(v->device_dir, "counter");
  if (!path)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  kh_err e = KH_OK;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    e = kh_seterr(kh_errno_code(errno), "open %s: %s", path, strerror(errno));
    goto out;
  }
  if (flock(fd, LOCK_EX) != 0) {
    e = kh_seterr(KH_ERR_IO, "lock %s: %s", path, strerror(errno));
    goto out;
  }
  char t[32] = {0};
  ssize_t n = pread(fd, t, sizeof t - 1, 0);
  uint64_t local = n > 0 ? strtoull(t, NULL, 10) : 0;
  uint64_t next = (local > region_max ? local : region_max) + 1;
  int l = snprintf(t, sizeof t, "%020llu\n", (unsigned long long)next);
  /* fixed width: an overwrite in place never leaves stale digits */
  if (pwrite(fd, t, (size_t)l, 0) != l || fsync(fd) != 0)
    e = kh_seterr(kh_errno_code(errno), "write %s: %s", path, strerror(errno));
  else
    *out = next;
out:
  if (fd >= 0)
    close(fd); /* releases the lock */
  free(path);
  return e;
}
