/* Fuzz the index object plaintext parser (docs/format.md §7).
 * Invariants when kh_index_decode succeeds: every pack the input declares
 * is present, every entry lies inside its pack, every id is findable, and
 * encode -> decode reproduces the same table and supersedes list. */
#include "index/index.h"
#include "common/buf.h"
#include "common/wire.h"

#include <stdlib.h>
#include <string.h>

static void same_table(const kh_index *a, const kh_index *b)
{
  if (a->n != b->n || a->npacks != b->npacks)
    abort();
  for (size_t p = 0; p < a->npacks; p++)
    if (memcmp(a->packs[p].id, b->packs[p].id, 32) || a->packs[p].size != b->packs[p].size ||
        a->packs[p].nblobs != b->packs[p].nblobs)
      abort();
  for (size_t i = 0; i < a->cap; i++) {
    const kh_index_entry *e = &a->slots[i];
    if (!e->used)
      continue;
    const kh_index_entry *f = kh_index_find(b, e->id);
    if (!f || f->pack != e->pack || f->offset != e->offset || f->clen != e->clen ||
        f->ulen != e->ulen || f->type != e->type)
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_index x;
  kh_index_init(&x);
  uint8_t (*sup)[32] = NULL;
  size_t nsup = 0;
  if (kh_index_decode(&x, data, size, &sup, &nsup) != KH_OK) {
    if (sup || nsup)
      abort();
    kh_index_release(&x);
    return 0;
  }
  /* the declared pack count (after magic and supersedes) must all be there */
  kh_rd r;
  kh_rd_init(&r, data, size);
  const uint8_t *magic = kh_rd_bytes(&r, 5);
  bool v2 = magic && !memcmp(magic, "KHIX2", 5);
  uint64_t gen = v2 ? kh_rd_uvar(&r) : 0;
  uint64_t ns = kh_rd_uvar(&r);
  kh_rd_bytes(&r, (size_t)ns * 32);
  uint64_t np = kh_rd_uvar(&r);
  if (!kh_rd_ok(&r) || ns != nsup || np != x.npacks || gen != x.gen)
    abort();
  size_t counted = 0;
  for (size_t i = 0; i < x.cap; i++) {
    const kh_index_entry *e = &x.slots[i];
    if (!e->used)
      continue;
    counted++;
    if (e->pack >= x.npacks || (uint64_t)e->offset + e->clen > x.packs[e->pack].size ||
        e->clen < KH_AEAD_TAG || (e->type != KH_BLOB_DATA && e->type != KH_BLOB_TREE) ||
        kh_index_find(&x, e->id) != e)
      abort();
  }
  if (counted != x.n)
    abort();
  kh_buf enc;
  kh_buf_init(&enc, size + 64);
  if (kh_index_encode(&x, 0, (const uint8_t(*)[32])sup, nsup, &enc) != KH_OK ||
      enc.len > size + (v2 ? 0 : 1)) /* a KHIX1 input gains a generation byte */
    abort();
  kh_index y;
  kh_index_init(&y);
  uint8_t (*sup2)[32] = NULL;
  size_t nsup2 = 0;
  if (kh_index_decode(&y, enc.data, enc.len, &sup2, &nsup2) != KH_OK || nsup2 != nsup ||
      (nsup && memcmp(sup, sup2, nsup * 32)) || y.gen != x.gen)
    abort();
  same_table(&x, &y);
  free(sup2);
  kh_index_release(&y);
  kh_buf_release(&enc);
  free(sup);
  kh_index_release(&x);
  return 0;
}
