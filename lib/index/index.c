#include "index/index.h"
#include "common/err.h"
#include "common/wire.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define INDEX_MAGIC "KHIX2"     /* with a generation */
#define INDEX_MAGIC_V1 "KHIX1"  /* generation 0, still read */
#define INDEX_MAX_PACKS (1u << 24)
#define INDEX_MAX_SUP 100000u

void kh_index_init(kh_index *x) { memset(x, 0, sizeof *x); }

void kh_index_release(kh_index *x)
{
  free(x->slots);
  free(x->packs);
  memset(x, 0, sizeof *x);
}

static size_t slot_of(const uint8_t id[32], size_t mask)
{
  uint64_t h;
  memcpy(&h, id, 8); /* ids are keyed hashes: uniform */
  return (size_t)h & mask;
}

static kh_err grow(kh_index *x)
{
  size_t ncap = x->cap ? x->cap * 2 : 1024;
  kh_index_entry *ns = calloc(ncap, sizeof *ns);
  if (!ns)
    return kh_seterr(KH_ERR_NOMEM, "out of memory (index of %zu blobs)", x->n);
  for (size_t i = 0; i < x->cap; i++) {
    if (!x->slots[i].used)
      continue;
    size_t j = slot_of(x->slots[i].id, ncap - 1);
    while (ns[j].used)
      j = (j + 1) & (ncap - 1);
    ns[j] = x->slots[i];
  }
  free(x->slots);
  x->slots = ns;
  x->cap = ncap;
  return KH_OK;
}

kh_err kh_index_add_pack(kh_index *x, const uint8_t id[32], uint64_t size, uint32_t *no)
{
  if (x->npacks >= INDEX_MAX_PACKS)
    return kh_seterr(KH_ERR_TOOBIG, "too many packs");
  if (x->npacks == x->packcap) {
    size_t nc = x->packcap ? x->packcap * 2 : 64;
    kh_index_pack *np = realloc(x->packs, nc * sizeof *np);
    if (!np)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    x->packs = np;
    x->packcap = nc;
  }
  kh_index_pack *p = &x->packs[x->npacks];
  memset(p, 0, sizeof *p);
  memcpy(p->id, id, 32);
  p->size = size;
  *no = (uint32_t)x->npacks++;
  return KH_OK;
}

kh_index_entry *kh_index_find(const kh_index *x, const uint8_t id[32])
{
  if (!x->cap)
    return NULL;
  size_t mask = x->cap - 1;
  for (size_t j = slot_of(id, mask);; j = (j + 1) & mask) {
    if (!x->slots[j].used)
      return NULL;
    if (!memcmp(x->slots[j].id, id, 32))
      return &x->slots[j];
  }
}

kh_err kh_index_add(kh_index *x, const kh_pack_blob *b, uint32_t pack, bool *added)
{
  if (added)
    *added = false;
  if ((x->n + 1) * 4 > x->cap * 3) { /* load <= 0.75 */
    kh_err e = grow(x);
    if (e)
      return e;
  }
  size_t mask = x->cap - 1, j = slot_of(b->id, mask);
  for (; x->slots[j].used; j = (j + 1) & mask)
    if (!memcmp(x->slots[j].id, b->id, 32))
      return KH_OK;
  kh_index_entry *e = &x->slots[j];
  memcpy(e->id, b->id, 32);
  e->pack = pack;
  e->offset = b->offset;
  e->clen = b->clen;
  e->ulen = b->ulen;
  e->type = b->type;
  e->used = 1;
  e->mark = 0;
  x->n++;
  if (pack < x->npacks)
    x->packs[pack].nblobs++;
  if (added)
    *added = true;
  return KH_OK;
}

void kh_index_blob(const kh_index_entry *e, kh_pack_blob *b)
{
  memcpy(b->id, e->id, 32);
  b->type = e->type;
  b->offset = e->offset;
  b->clen = e->clen;
  b->ulen = e->ulen;
}

kh_err kh_index_group(const kh_index *x, uint32_t first_pack, uint32_t **startp,
                      kh_index_entry ***orderp)
{
  size_t np = x->npacks > first_pack ? x->npacks - first_pack : 0;
  /* counting sort by pack: count, prefix sums, place */
  uint32_t *start = calloc(np + 2, sizeof *start);
  kh_index_entry **order = malloc((x->n ? x->n : 1) * sizeof *order);
  if (!start || !order) {
    free(start);
    free(order);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < x->cap; i++)
    if (x->slots[i].used && x->slots[i].pack >= first_pack && x->slots[i].pack < x->npacks)
      start[x->slots[i].pack - first_pack + 2]++;
  for (size_t p = 0; p < np; p++)
    start[p + 2] += start[p + 1];
  /* start[p + 1] is now where pack p's entries begin: fill it up to the
   * next pack's beginning, which leaves start[p] = begin of pack p */
  for (size_t i = 0; i < x->cap; i++)
    if (x->slots[i].used && x->slots[i].pack >= first_pack && x->slots[i].pack < x->npacks)
      order[start[x->slots[i].pack - first_pack + 1]++] = &x->slots[i];
  *startp = start;
  *orderp = order;
  return KH_OK;
}

kh_err kh_index_encode(const kh_index *x, uint32_t first_pack, const uint8_t (*sup)[32],
                       size_t nsup, kh_buf *out)
{
  kh_buf_reset(out);
  size_t np = x->npacks > first_pack ? x->npacks - first_pack : 0;
  uint32_t *start = NULL;
  kh_index_entry **order = NULL;
  kh_err e = kh_index_group(x, first_pack, &start, &order);
  if (e)
    return e;
  if ((e = kh_buf_append(out, INDEX_MAGIC, 5)) || (e = kh_buf_put_uvar(out, x->gen)) ||
      (e = kh_buf_put_uvar(out, nsup)))
    goto out;
  for (size_t i = 0; i < nsup; i++)
    if ((e = kh_buf_append(out, sup[i], 32)))
      goto out;
  if ((e = kh_buf_put_uvar(out, np)))
    goto out;
  for (size_t p = 0; p < np; p++) {
    const kh_index_pack *pk = &x->packs[first_pack + p];
    uint32_t cnt = start[p + 1] - start[p];
    if ((e = kh_buf_append(out, pk->id, 32)) || (e = kh_buf_put_uvar(out, pk->size)) ||
        (e = kh_buf_put_uvar(out, cnt)))
      goto out;
    for (uint32_t i = start[p]; i < start[p + 1]; i++) {
      const kh_index_entry *en = order[i];
      if ((e = kh_buf_put_u8(out, en->type)) || (e = kh_buf_append(out, en->id, 32)) ||
          (e = kh_buf_put_uvar(out, en->offset)) || (e = kh_buf_put_uvar(out, en->clen)) ||
          (e = kh_buf_put_uvar(out, en->ulen)))
        goto out;
    }
  }
out:
  free(start);
  free(order);
  return e;
}

kh_err kh_index_decode(kh_index *x, const uint8_t *p, size_t n, uint8_t (**supp)[32],
                       size_t *nsupp)
{
  *supp = NULL;
  *nsupp = 0;
  kh_rd r;
  kh_rd_init(&r, p, n);
  kh_err e = KH_OK;
  uint8_t(*sup)[32] = NULL;
  const uint8_t *magic = kh_rd_bytes(&r, 5);
  uint64_t gen = 0;
  if (magic && !memcmp(magic, INDEX_MAGIC, 5))
    gen = kh_rd_uvar(&r);
  else if (!magic || memcmp(magic, INDEX_MAGIC_V1, 5))
    return kh_seterr(KH_ERR_FORMAT, "not an index");
  uint64_t nsup = kh_rd_uvar(&r);
  if (nsup > INDEX_MAX_SUP || nsup > kh_rd_left(&r) / 32)
    return kh_seterr(KH_ERR_FORMAT, "bad index (supersedes)");
  if (nsup) {
    sup = malloc(nsup * 32);
    if (!sup)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < nsup; i++)
      kh_rd_copy(&r, sup[i], 32);
  }
  uint64_t np = kh_rd_uvar(&r);
  if (np > INDEX_MAX_PACKS || np > kh_rd_left(&r) / 34) {
    e = kh_seterr(KH_ERR_FORMAT, "bad index (packs)");
    goto out;
  }
  for (uint64_t i = 0; i < np && kh_rd_ok(&r); i++) {
    uint8_t pid[32];
    kh_rd_copy(&r, pid, 32);
    uint64_t size = kh_rd_uvar(&r), cnt = kh_rd_uvar(&r);
    uint32_t no;
    if (!kh_rd_ok(&r) || cnt > KH_PACK_MAX_BLOBS || cnt > kh_rd_left(&r) / 36) {
      kh_rd_fail(&r);
      break;
    }
    if ((e = kh_index_add_pack(x, pid, size, &no)))
      goto out;
    for (uint64_t j = 0; j < cnt && kh_rd_ok(&r); j++) {
      kh_pack_blob b;
      b.type = kh_rd_u8(&r);
      kh_rd_copy(&r, b.id, 32);
      uint64_t off = kh_rd_uvar(&r), clen = kh_rd_uvar(&r), ulen = kh_rd_uvar(&r);
      if ((b.type != KH_BLOB_DATA && b.type != KH_BLOB_TREE) || clen < KH_AEAD_TAG ||
          clen - KH_AEAD_TAG > ulen || ulen > KH_BLOB_MAX || off > size || clen > size - off) {
        kh_rd_fail(&r);
        break;
      }
      b.offset = (uint32_t)off;
      b.clen = (uint32_t)clen;
      b.ulen = (uint32_t)ulen;
      if ((e = kh_index_add(x, &b, no, NULL)))
        goto out;
    }
  }
  if (!kh_rd_done(&r)) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed index");
    goto out;
  }
  *supp = sup;
  *nsupp = (size_t)nsup;
  sup = NULL;
  if (gen > x->gen)
    x->gen = gen;
out:
  free(sup);
  return e;
}

kh_err kh_zstd_pack(const uint8_t *p, size_t n, int level, kh_buf *out)
{
  kh_buf_reset(out);
  size_t bound = ZSTD_compressBound(n);
  kh_err e = kh_buf_reserve(out, bound);
  if (e)
    return e;
  size_t r = ZSTD_compress(out->data, bound, p, n, level);
  if (ZSTD_isError(r))
    return kh_seterr(KH_ERR_IO, "zstd: %s", ZSTD_getErrorName(r));
  out->len = r;
  return KH_OK;
}

kh_err kh_zstd_unpack(const uint8_t *p, size_t n, size_t max, kh_buf *out)
{
  kh_buf_reset(out);
  unsigned long long sz = ZSTD_getFrameContentSize(p, n);
  if (sz == ZSTD_CONTENTSIZE_ERROR || sz == ZSTD_CONTENTSIZE_UNKNOWN || sz > max)
    return kh_seterr(KH_ERR_FORMAT, "bad compressed data");
  kh_err e = kh_buf_reserve(out, (size_t)sz);
  if (e)
    return e;
  size_t r = ZSTD_decompress(out->data, (size_t)sz, p, n);
  if (ZSTD_isError(r) || r != sz)
    return kh_seterr(KH_ERR_FORMAT, "bad compressed data");
  out->len = r;
  return KH_OK;
}
