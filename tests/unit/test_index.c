/* Unit tests for lib/index: hash table (add, find, duplicates, growth),
 * index object codec with supersedes, decoder bounds, zstd helpers. */
#include "index/index.h"
#include "common/err.h"
#include "kh_test.h"

#include <sodium.h>
#include <stdlib.h>

static kh_pack_blob mkblob(uint32_t seed, uint8_t type, uint32_t off, uint32_t clen,
                           uint32_t ulen)
{
  kh_pack_blob b;
  memset(&b, 0, sizeof b);
  crypto_generichash(b.id, 32, (const uint8_t *)&seed, sizeof seed, NULL, 0);
  b.type = type;
  b.offset = off;
  b.clen = clen;
  b.ulen = ulen;
  return b;
}

static void test_table(void)
{
  kh_index x;
  kh_index_init(&x);
  uint8_t pid[32] = {1};
  CHECK(kh_index_find(&x, pid) == NULL); /* empty */
  uint32_t p0, p1;
  CHECK_OK(kh_index_add_pack(&x, pid, 1u << 30, &p0));
  pid[0] = 2;
  CHECK_OK(kh_index_add_pack(&x, pid, 1u << 30, &p1));
  CHECK_EQ(p0, 0);
  CHECK_EQ(p1, 1);
  /* 5000 blobs: several growths */
  int bad = 0;
  for (uint32_t i = 0; i < 5000; i++) {
    kh_pack_blob b = mkblob(i, i % 2 ? KH_BLOB_DATA : KH_BLOB_TREE, i * 100, 16 + i, i);
    bool added = false;
    bad += kh_index_add(&x, &b, i % 2, &added) != KH_OK || !added;
  }
  CHECK_EQ(bad, 0);
  CHECK_EQ(x.n, 5000);
  CHECK((x.cap & (x.cap - 1)) == 0);
  CHECK(x.n * 4 <= x.cap * 3);
  CHECK_EQ(x.packs[0].nblobs, 2500);
  CHECK_EQ(x.packs[1].nblobs, 2500);
  for (uint32_t i = 0; i < 5000; i++) {
    kh_pack_blob b = mkblob(i, 0, 0, 0, 0);
    kh_index_entry *e = kh_index_find(&x, b.id);
    if (!e || e->pack != i % 2 || e->offset != i * 100 || e->clen != 16 + i || e->ulen != i ||
        e->type != (i % 2 ? KH_BLOB_DATA : KH_BLOB_TREE)) {
      bad++;
      continue;
    }
    kh_pack_blob v;
    kh_index_blob(e, &v);
    bad += memcmp(v.id, b.id, 32) || v.offset != i * 100 || v.clen != 16 + i;
  }
  CHECK_EQ(bad, 0);
  /* absent ids */
  for (uint32_t i = 5000; i < 6000; i++) {
    kh_pack_blob b = mkblob(i, 0, 0, 0, 0);
    bad += kh_index_find(&x, b.id) != NULL;
  }
  CHECK_EQ(bad, 0);
  /* duplicate: first place kept, nblobs not counted twice */
  kh_pack_blob dup = mkblob(7, KH_BLOB_DATA, 999, 999, 999);
  bool added = true;
  CHECK_OK(kh_index_add(&x, &dup, 0, &added));
  CHECK(!added);
  CHECK_EQ(x.n, 5000);
  kh_index_entry *e = kh_index_find(&x, dup.id);
  CHECK(e && e->pack == 1 && e->offset == 700);
  CHECK_EQ(x.packs[0].nblobs, 2500);
  CHECK_OK(kh_index_add(&x, &dup, 0, NULL)); /* added may be NULL */
  /* colliding first 8 bytes (same slot) still distinct */
  kh_pack_blob c1 = mkblob(1, KH_BLOB_DATA, 0, 16, 0), c2 = c1;
  memset(c1.id, 0x77, 8);
  memset(c2.id, 0x77, 8);
  c2.id[31] ^= 0xff;
  CHECK_OK(kh_index_add(&x, &c1, 0, &added));
  CHECK(added);
  CHECK_OK(kh_index_add(&x, &c2, 1, &added));
  CHECK(added);
  CHECK(kh_index_find(&x, c1.id) && kh_index_find(&x, c1.id)->pack == 0);
  CHECK(kh_index_find(&x, c2.id) && kh_index_find(&x, c2.id)->pack == 1);
  kh_index_release(&x);
  CHECK(x.slots == NULL && x.n == 0 && x.packs == NULL);
}

/* Build a small index: 3 packs, pack p has p+2 blobs. */
static void build(kh_index *x)
{
  kh_index_init(x);
  for (uint32_t p = 0; p < 3; p++) {
    uint8_t pid[32];
    memset(pid, 0xa0 + (int)p, 32);
    uint32_t no;
    kh_index_add_pack(x, pid, 10000 + p, &no);
    for (uint32_t j = 0; j < p + 2; j++) {
      /* valid entries: the stored payload (clen - 16) is never longer than ulen */
      kh_pack_blob b = mkblob(p * 100 + j, j % 2 ? KH_BLOB_TREE : KH_BLOB_DATA, j * 100, 100,
                              84 + j * 1000);
      kh_index_add(x, &b, no, NULL);
    }
  }
}

static void test_codec_roundtrip(void)
{
  kh_index x;
  build(&x);
  uint8_t sup[3][32];
  for (int i = 0; i < 3; i++)
    memset(sup[i], 0x10 + i, 32);
  kh_buf enc;
  kh_buf_init(&enc, 1 << 20);
  x.gen = 300; /* two uvar bytes */
  CHECK_OK(kh_index_encode(&x, 0, (const uint8_t(*)[32])sup, 3, &enc));
  /* size: magic, gen, nsup, 3 ids, npacks, per pack 32+2+1, per blob 1+32+uvars */
  CHECK_EQ(memcmp(enc.data, "KHIX2", 5), 0);
  CHECK_EQ(enc.data[5], 0xac);
  CHECK_EQ(enc.data[6], 0x02);

  kh_index y;
  kh_index_init(&y);
  y.gen = 7; /* decoding raises the generation, never lowers it */
  uint8_t (*got)[32] = NULL;
  size_t ngot = 0;
  CHECK_OK(kh_index_decode(&y, enc.data, enc.len, &got, &ngot));
  CHECK_EQ(ngot, 3);
  CHECK_EQ(y.gen, 300);
  if (ngot == 3)
    CHECK_MEM(got, sup, sizeof sup);
  free(got);
  CHECK_EQ(y.npacks, 3);
  CHECK_EQ(y.n, x.n);
  int bad = 0;
  for (size_t p = 0; p < y.npacks; p++)
    bad += memcmp(y.packs[p].id, x.packs[p].id, 32) || y.packs[p].size != x.packs[p].size ||
           y.packs[p].nblobs != p + 2;
  for (size_t i = 0; i < x.cap; i++) {
    if (!x.slots[i].used)
      continue;
    kh_index_entry *a = &x.slots[i], *b = kh_index_find(&y, a->id);
    bad += !b || b->pack != a->pack || b->offset != a->offset || b->clen != a->clen ||
           b->ulen != a->ulen || b->type != a->type;
  }
  CHECK_EQ(bad, 0);
  /* encode(decode(x)) has the same size (blob order within a pack follows
   * the hash table, so bytes may be permuted) */
  kh_buf enc2;
  kh_buf_init(&enc2, 1 << 20);
  got = NULL;
  CHECK_OK(kh_index_encode(&y, 0, (const uint8_t(*)[32])sup, 3, &enc2));
  CHECK_EQ(enc2.len, enc.len);
  kh_index_release(&y);

  /* first_pack: only packs [1, 3) with their blobs */
  CHECK_OK(kh_index_encode(&x, 1, NULL, 0, &enc2));
  kh_index_init(&y);
  CHECK_OK(kh_index_decode(&y, enc2.data, enc2.len, &got, &ngot));
  CHECK_EQ(ngot, 0);
  CHECK(got == NULL);
  CHECK_EQ(y.npacks, 2);
  CHECK_EQ(y.n, 3 + 4);
  CHECK(y.npacks == 2 && y.packs[0].id[0] == 0xa1);
  kh_index_release(&y);

  /* decoding into a non-empty index appends packs and keeps first places */
  kh_index_init(&y);
  CHECK_OK(kh_index_decode(&y, enc.data, enc.len, &got, &ngot));
  free(got);
  CHECK_OK(kh_index_decode(&y, enc.data, enc.len, &got, &ngot));
  free(got);
  CHECK_EQ(y.npacks, 6);
  CHECK_EQ(y.n, x.n);
  kh_pack_blob b0 = mkblob(200, 0, 0, 0, 0);
  CHECK(kh_index_find(&y, b0.id) && kh_index_find(&y, b0.id)->pack == 2);
  kh_index_release(&y);

  /* every truncation fails, trailing garbage fails */
  int accepted = 0;
  for (size_t l = 0; l < enc.len; l++) {
    kh_index_init(&y);
    got = NULL;
    kh_err e = kh_index_decode(&y, enc.data, l, &got, &ngot);
    if (e == KH_OK) {
      if (!accepted)
        fprintf(stderr, "   BUG: index truncated to %zu of %zu bytes decodes (%zu packs, %zu "
                        "blobs)\n", l, enc.len, y.npacks, y.n);
      accepted++;
    }
    free(got);
    kh_index_release(&y);
  }
  CHECK_EQ(accepted, 0);
  CHECK_OK(kh_buf_put_u8(&enc, 0));
  kh_index_init(&y);
  CHECK_EQ(kh_index_decode(&y, enc.data, enc.len, &got, &ngot), KH_ERR_FORMAT);
  CHECK(got == NULL && ngot == 0);
  kh_index_release(&y);
  kh_buf_release(&enc);
  kh_buf_release(&enc2);
  kh_index_release(&x);
}

/* The exact case: one pack whose blob list is cut off right after its count. */
static void test_truncated_blob_list(void)
{
  kh_buf b;
  kh_buf_init(&b, 1024);
  uint8_t pid[32] = {0};
  kh_buf_append(&b, "KHIX1", 5);
  kh_buf_put_uvar(&b, 0);  /* no supersedes */
  kh_buf_put_uvar(&b, 1);  /* one pack */
  kh_buf_append(&b, pid, 32);
  kh_buf_put_uvar(&b, 5);  /* size */
  kh_buf_put_uvar(&b, 1);  /* claims one blob ... which is missing */
  kh_index y;
  kh_index_init(&y);
  uint8_t (*sup)[32] = NULL;
  size_t nsup;
  kh_err e = kh_index_decode(&y, b.data, b.len, &sup, &nsup);
  CHECK_EQ(e, KH_ERR_FORMAT);
  free(sup);
  kh_index_release(&y);
  kh_buf_release(&b);
}

static void test_decode_rejects(void)
{
  kh_buf b;
  kh_buf_init(&b, 4096);
  kh_index y;
  uint8_t (*sup)[32] = NULL;
  size_t nsup = 0;
  uint8_t id[32] = {5};
  struct { uint8_t type; uint64_t size, off, clen, ulen; } bads[] = {
    {0, 1000, 0, 100, 100}, {3, 1000, 0, 100, 100}, {1, 1000, 0, 15, 100},
    {1, 1000, 0, 1001, 100}, {1, 1000, 990, 11 + 16, 10}, {1, 1000, 1001, 16, 0},
    {1, 1ull << 40, 0, (uint64_t)KH_BLOB_MAX + 17, 1},
    {1, 1ull << 40, 0, 100, (uint64_t)KH_BLOB_MAX + 1}, {1, UINT64_MAX, UINT64_MAX, 16, 0},
  };
  int bad = 0;
  for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
    kh_buf_reset(&b);
    kh_buf_append(&b, "KHIX1", 5);
    kh_buf_put_uvar(&b, 0);
    kh_buf_put_uvar(&b, 1);
    kh_buf_append(&b, id, 32);
    kh_buf_put_uvar(&b, bads[i].size);
    kh_buf_put_uvar(&b, 1);
    kh_buf_put_u8(&b, bads[i].type);
    kh_buf_append(&b, id, 32);
    kh_buf_put_uvar(&b, bads[i].off);
    kh_buf_put_uvar(&b, bads[i].clen);
    kh_buf_put_uvar(&b, bads[i].ulen);
    kh_index_init(&y);
    if (kh_index_decode(&y, b.data, b.len, &sup, &nsup) != KH_ERR_FORMAT) {
      fprintf(stderr, "   bad entry %zu accepted\n", i);
      bad++;
    }
    free(sup);
    sup = NULL;
    kh_index_release(&y);
  }
  CHECK_EQ(bad, 0);
  /* garbage, wrong magic, huge counts */
  static const uint8_t g1[] = "KHIX2\0\0", g2[] = "KHIX1\xff\xff\xff\xff\x0f",
                       g3[] = "KHIX1\x00\xff\xff\xff\xff\x0f", g4[] = "KHIX";
  const uint8_t *gs[] = {g1, g2, g3, g4};
  size_t gl[] = {sizeof g1 - 1, sizeof g2 - 1, sizeof g3 - 1, sizeof g4 - 1};
  for (size_t i = 0; i < 4; i++) {
    kh_index_init(&y);
    CHECK_EQ(kh_index_decode(&y, gs[i], gl[i], &sup, &nsup), KH_ERR_FORMAT);
    CHECK(sup == NULL);
    kh_index_release(&y);
  }
  /* random bytes behind a valid magic never crash and rarely decode */
  int ok = 0;
  for (int i = 0; i < 2000; i++) {
    uint8_t r[200];
    memcpy(r, "KHIX1", 5);
    size_t l = 5 + randombytes_uniform(196);
    randombytes_buf(r + 5, l - 5);
    kh_index_init(&y);
    if (kh_index_decode(&y, r, l, &sup, &nsup) == KH_OK)
      ok++;
    free(sup);
    sup = NULL;
    kh_index_release(&y);
  }
  CHECK(ok < 20);
  /* the empty index */
  static const uint8_t empty[] = "KHIX1\0\0";
  kh_index_init(&y);
  CHECK_OK(kh_index_decode(&y, empty, 7, &sup, &nsup));
  CHECK_EQ(y.npacks, 0);
  CHECK_EQ(nsup, 0);
  CHECK_EQ(y.gen, 0); /* a KHIX1 index is generation 0 */
  kh_index_release(&y);
  static const uint8_t empty2[] = "KHIX2\x05\0\0";
  kh_index_init(&y);
  CHECK_OK(kh_index_decode(&y, empty2, 8, &sup, &nsup));
  CHECK_EQ(y.gen, 5);
  kh_index_release(&y);
  kh_buf_release(&b);
}

static void test_zstd(void)
{
  uint8_t in[10000];
  for (size_t i = 0; i < sizeof in; i++)
    in[i] = (uint8_t)(i % 13);
  kh_buf z, out;
  kh_buf_init(&z, 1 << 20);
  kh_buf_init(&out, 1 << 20);
  CHECK_OK(kh_zstd_pack(in, sizeof in, 3, &z));
  CHECK(z.len < sizeof in / 10);
  CHECK_OK(kh_zstd_unpack(z.data, z.len, sizeof in, &out));
  CHECK_EQ(out.len, sizeof in);
  CHECK_MEM(out.data, in, sizeof in);
  /* cap below the declared size, garbage, truncation */
  CHECK_EQ(kh_zstd_unpack(z.data, z.len, sizeof in - 1, &out), KH_ERR_FORMAT);
  CHECK_EQ(kh_zstd_unpack(in, 100, 1 << 20, &out), KH_ERR_FORMAT);
  CHECK_EQ(kh_zstd_unpack(z.data, z.len - 1, sizeof in, &out), KH_ERR_FORMAT);
  CHECK_EQ(kh_zstd_unpack(z.data, 0, sizeof in, &out), KH_ERR_FORMAT);
  kh_buf_release(&z);
  kh_buf_release(&out);
}

/* kh_index_group puts every entry of pack p, and only those, in p's range;
 * first_pack skips earlier packs. */
static void test_group(void)
{
  kh_index x;
  build(&x); /* pack p holds p + 2 blobs */
  for (uint32_t first = 0; first <= 3; first++) {
    uint32_t *start = NULL;
    kh_index_entry **order = NULL;
    CHECK_OK(kh_index_group(&x, first, &start, &order));
    size_t seen = 0;
    for (uint32_t p = first; p < x.npacks; p++) {
      uint32_t b = start[p - first], e = start[p - first + 1];
      CHECK_EQ(e - b, p + 2);
      for (uint32_t i = b; i < e; i++)
        CHECK_EQ(order[i]->pack, p);
      seen += e - b;
    }
    size_t want = 0;
    for (uint32_t p = first; p < x.npacks; p++)
      want += p + 2;
    CHECK_EQ(seen, want);
    free(start);
    free(order);
  }
  kh_index_release(&x);
}

int main(void)
{
  if (sodium_init() < 0)
    return 1;
  RUN(test_table);
  RUN(test_codec_roundtrip);
  RUN(test_group);
  RUN(test_truncated_blob_list);
  RUN(test_decode_rejects);
  RUN(test_zstd);
  return kh_test_done("test_index");
}
