/* Unit tests for lib/pack: writing, shuffling, padding, parsing and opening
 * blobs; tamper detection; PADME; header and trailer decoders. */
#include "pack/pack.h"
#include "common/err.h"
#include "common/wire.h"
#include "provider/provider.h"
#include "kh_test.h"

#include <sodium.h>
#include <stdlib.h>
#include <zstd.h>

#define NBLOBS 50

static kh_keys keys;

typedef struct plain {
  uint8_t id[32];
  uint8_t *data;
  size_t len;
  int type;
  bool compressed;
} plain;

/* PADME (Nikitin et al., PETS 2019), written out as in the paper:
 * E = floor(log2 L), S = floor(log2 E) + 1, lastBits = E - S,
 * round L up to a multiple of 2^lastBits. */
static uint64_t padme_ref(uint64_t L)
{
  if (L < 2)
    return L;
  unsigned E = 0, S = 0;
  for (uint64_t t = L; t > 1; t >>= 1)
    E++;
  for (unsigned t = E; t > 1; t >>= 1)
    S++;
  S += 1;
  unsigned last = E - S;
  uint64_t m = (1ull << last) - 1;
  return (L + m) & ~m;
}

static void test_padme(void)
{
  /* literal known values */
  CHECK_EQ(kh_padme(0), 0);
  CHECK_EQ(kh_padme(1), 1);
  CHECK_EQ(kh_padme(2), 2);
  CHECK_EQ(kh_padme(3), 3);
  CHECK_EQ(kh_padme(4), 4);
  CHECK_EQ(kh_padme(9), 10);
  CHECK_EQ(kh_padme(1000), 1024); /* E=9, S=4, 5 low bits cleared */
  CHECK_EQ(kh_padme(1u << 20), 1u << 20);
  CHECK_EQ(kh_padme((1u << 20) + 1), (1u << 20) + (1u << 15));
  CHECK_EQ(kh_padme((1u << 23) + 1), (1u << 23) + (1u << 18));
  /* against the definition */
  uint64_t vals[] = {0, 1, 2, 3, 4, 5, 7, 8, 100, 1000, 1023, 1024, 1025, 65535, 1u << 20,
                     (1u << 20) + 1, (1u << 23) + 1, 8388607, 123456789, 1ull << 40,
                     (1ull << 40) + 1, (1ull << 62) + 12345};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
    CHECK(kh_padme(vals[i]) == padme_ref(vals[i]));
  int bad = 0;
  for (uint64_t l = 0; l < 200000; l++) {
    uint64_t p = kh_padme(l);
    bad += p != padme_ref(l) || p < l || (l > 8 && (double)(p - l) > 0.12 * (double)l);
  }
  CHECK_EQ(bad, 0);
}

static void make_blobs(plain *pl, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    pl[i].len = 64 + randombytes_uniform(3000); /* long enough for zstd to win */
    pl[i].data = malloc(pl[i].len);
    pl[i].compressed = i % 2 == 0;
    pl[i].type = i % 3 == 0 ? KH_BLOB_TREE : KH_BLOB_DATA;
    if (pl[i].compressed) { /* compressible: repeated text */
      for (size_t j = 0; j < pl[i].len; j++)
        pl[i].data[j] = (uint8_t)("keyhold "[j % 8] + i % 5);
      /* unique: two blobs of one pattern and length would share an id, and
       * the checks below would compare one with the other's type */
      pl[i].data[0] = (uint8_t)i;
      pl[i].data[1] = (uint8_t)(i >> 8);
    } else {
      randombytes_buf(pl[i].data, pl[i].len);
    }
    kh_blob_id(&keys, pl[i].id, pl[i].data, pl[i].len);
  }
}

static kh_err add_plain(kh_pack_writer *w, const plain *p)
{
  if (!p->compressed)
    return kh_pack_add(w, &keys, p->type, p->id, p->data, p->len, (uint32_t)p->len);
  size_t bound = ZSTD_compressBound(p->len);
  uint8_t *z = malloc(bound);
  size_t zl = ZSTD_compress(z, bound, p->data, p->len, 3);
  kh_err e = ZSTD_isError(zl) || zl >= p->len
                 ? kh_pack_add(w, &keys, p->type, p->id, p->data, p->len, (uint32_t)p->len)
                 : kh_pack_add(w, &keys, p->type, p->id, z, zl, (uint32_t)p->len);
  free(z);
  return e;
}

static uint8_t *assemble(const struct iovec *iov, size_t niov, uint64_t total)
{
  uint8_t *buf = malloc(total ? total : 1), *q = buf;
  for (size_t i = 0; i < niov; i++) {
    memcpy(q, iov[i].iov_base, iov[i].iov_len);
    q += iov[i].iov_len;
  }
  CHECK_EQ(q - buf, total);
  return buf;
}

static const plain *find_plain(const plain *pl, size_t n, const uint8_t id[32])
{
  for (size_t i = 0; i < n; i++)
    if (!memcmp(pl[i].id, id, 32))
      return &pl[i];
  return NULL;
}

static void test_pack_roundtrip(void)
{
  plain pl[NBLOBS];
  make_blobs(pl, NBLOBS);
  bool shuffled = false;
  for (int attempt = 0; attempt < 4; attempt++) {
    kh_pack_writer w;
    CHECK_OK(kh_pack_writer_init(&w));
    for (size_t i = 0; i < NBLOBS; i++)
      CHECK_OK(add_plain(&w, &pl[i]));
    CHECK_EQ(w.n, NBLOBS);
    int ncomp = 0;
    for (size_t i = 0; i < w.n; i++)
      ncomp += kh_blob_compressed(&w.blobs[i]);
    CHECK(ncomp >= NBLOBS / 2 - 2 && ncomp <= NBLOBS / 2);
    const struct iovec *iov;
    size_t niov;
    uint64_t total;
    CHECK_OK(kh_pack_finish(&w, &keys, &iov, &niov, &total));
    CHECK_EQ(niov, NBLOBS + 1);
    uint8_t *pk = assemble(iov, niov, total);

    /* the order in the pack differs from the insertion order */
    for (size_t i = 0; i < NBLOBS; i++)
      if (memcmp(w.blobs[i].id, pl[i].id, 32)) {
        shuffled = true;
        break;
      }

    kh_pack_blob *blobs = NULL;
    size_t n = 0;
    CHECK_OK(kh_pack_parse(&keys, w.id, pk, total, &blobs, &n));
    CHECK_EQ(n, NBLOBS);
    /* the parsed table is the writer's final table */
    int tdiff = 0;
    for (size_t i = 0; i < n && n == NBLOBS; i++)
      tdiff += memcmp(blobs[i].id, w.blobs[i].id, 32) || blobs[i].type != w.blobs[i].type ||
               blobs[i].offset != w.blobs[i].offset || blobs[i].clen != w.blobs[i].clen ||
               blobs[i].ulen != w.blobs[i].ulen;
    CHECK_EQ(tdiff, 0);
    kh_buf out;
    kh_buf_init(&out, KH_BLOB_MAX);
    int missing = 0, wrong = 0, notauth = 0, seen = 0;
    uint64_t expect_off = 0;
    for (size_t i = 0; i < n; i++) {
      const plain *p = find_plain(pl, NBLOBS, blobs[i].id);
      if (!p) {
        missing++;
        continue;
      }
      seen++;
      if (blobs[i].type != p->type || blobs[i].ulen != p->len ||
          blobs[i].offset != expect_off || (bool)kh_blob_compressed(&blobs[i]) != p->compressed)
        wrong++;
      expect_off += blobs[i].clen;
      if (kh_pack_blob_open(&keys, w.id, &blobs[i], pk + blobs[i].offset, &out) ||
          out.len != p->len || memcmp(out.data, p->data, p->len))
        wrong++;
      /* any single byte flipped in this blob's ciphertext */
      if (i < 10) {
        for (uint32_t j = 0; j < blobs[i].clen; j++) {
          pk[blobs[i].offset + j] ^= 0x01;
          if (kh_pack_blob_open(&keys, w.id, &blobs[i], pk + blobs[i].offset, &out) !=
              KH_ERR_AUTH)
            notauth++;
          pk[blobs[i].offset + j] ^= 0x01;
        }
      }
      /* wrong pack id, wrong type, wrong blob id */
      uint8_t other[32];
      memcpy(other, w.id, 32);
      other[5] ^= 0x80;
      if (kh_pack_blob_open(&keys, other, &blobs[i], pk + blobs[i].offset, &out) != KH_ERR_AUTH)
        notauth++;
      kh_pack_blob b2 = blobs[i];
      b2.type = b2.type == KH_BLOB_DATA ? KH_BLOB_TREE : KH_BLOB_DATA;
      if (kh_pack_blob_open(&keys, w.id, &b2, pk + blobs[i].offset, &out) != KH_ERR_AUTH)
        notauth++;
      b2 = blobs[i];
      b2.id[31] ^= 1;
      if (kh_pack_blob_open(&keys, w.id, &b2, pk + blobs[i].offset, &out) != KH_ERR_AUTH)
        notauth++;
    }
    CHECK_EQ(missing, 0);
    CHECK_EQ(seen, NBLOBS);
    CHECK_EQ(wrong, 0);
    CHECK_EQ(notauth, 0);

    /* padded size: trailer -> (hoff, hlen); unpadded = hoff + hlen + trailer */
    size_t tlen = kh_pack_trailer_len(&keys);
    CHECK_EQ(tlen, kh_aead_box_overhead(keys.meta) + 12);
    kh_buf t;
    kh_buf_init(&t, 64);
    CHECK_OK(kh_obj_open(&keys, "packtrl", w.id, 32, pk + total - tlen, tlen, &t));
    CHECK_EQ(t.len, 12);
    uint64_t hend = total - tlen; /* end of the header = start of padding */
    if (t.len == 12) {
      uint64_t hoff = kh_le64_get(t.data), hlen = kh_le32_get(t.data + 8);
      hend = hoff + hlen;
      CHECK_EQ(hoff, expect_off);
      CHECK_EQ(total, kh_padme(hoff + hlen + tlen));
      CHECK_EQ(total, padme_ref(hoff + hlen + tlen));
    }
    kh_buf_release(&t);

    /* tampering with trailer or header or truncating: parse fails, no crash */
    int parsebad = 0;
    size_t probes[] = {total - 1, total - tlen, total - tlen - 1, (size_t)expect_off,
                       (size_t)expect_off + 30, (size_t)hend - 1, (size_t)hend};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
      pk[probes[i]] ^= 0x20;
      kh_pack_blob *bb = NULL;
      size_t nn = 0;
      kh_err e = kh_pack_parse(&keys, w.id, pk, total, &bb, &nn);
      /* the padding (random bytes) is not authenticated; anything else is */
      bool inpad = probes[i] >= hend && probes[i] < total - tlen;
      if (inpad ? (e != KH_OK || nn != NBLOBS) : (e != KH_ERR_AUTH || bb || nn))
        parsebad++;
      free(bb);
      pk[probes[i]] ^= 0x20;
    }
    CHECK_EQ(parsebad, 0);
    kh_pack_blob *bb = (kh_pack_blob *)1;
    size_t nn = 7;
    CHECK_ERR(kh_pack_parse(&keys, w.id, pk, total - 1, &bb, &nn), KH_ERR_AUTH);
    CHECK(bb == NULL && nn == 0);
    CHECK_EQ(kh_pack_parse(&keys, w.id, pk, tlen - 1, &bb, &nn), KH_ERR_FORMAT);
    uint8_t other[32];
    memcpy(other, w.id, 32);
    other[0] ^= 1;
    CHECK_EQ(kh_pack_parse(&keys, other, pk, total, &bb, &nn), KH_ERR_AUTH);
    /* another account's keys */
    kh_keys k2;
    uint8_t m2[32] = {9};
    CHECK_OK(kh_keys_init(&k2, m2, kh_aead_cipher(keys.meta), keys.region, keys.account));
    CHECK_EQ(kh_pack_parse(&k2, w.id, pk, total, &bb, &nn), KH_ERR_AUTH);
    kh_keys_release(&k2);

    kh_buf_release(&out);
    free(blobs);
    free(pk);
    kh_pack_writer_release(&w);
    if (shuffled)
      break;
  }
  CHECK(shuffled);
  for (size_t i = 0; i < NBLOBS; i++)
    free(pl[i].data);
}

/* A reader over a pack in memory that records what it was asked for. */
typedef struct counting_src {
  const uint8_t *data;
  uint64_t len;      /* the size the "provider" claims */
  uint64_t bytes, calls, lowest;
} counting_src;

static kh_err counting_read(void *ctx, uint64_t off, size_t len, kh_buf *out)
{
  counting_src *s = ctx;
  s->calls++;
  s->bytes += len;
  if (off < s->lowest)
    s->lowest = off;
  if (off > s->len || len > s->len - off)
    return kh_seterr(KH_ERR_FORMAT, "truncated");
  return kh_buf_append(out, s->data + off, len);
}

/* The header is authenticated in bounded pieces: the trailer, then the
 * header it names; no blob byte is read, and a size beyond any pack is
 * refused before anything is read. */
static void test_read_header_bounded(void)
{
  plain pl[NBLOBS];
  make_blobs(pl, NBLOBS);
  kh_pack_writer w;
  CHECK_OK(kh_pack_writer_init(&w));
  for (size_t i = 0; i < NBLOBS; i++)
    CHECK_OK(add_plain(&w, &pl[i]));
  const struct iovec *iov;
  size_t niov;
  uint64_t total;
  CHECK_OK(kh_pack_finish(&w, &keys, &iov, &niov, &total));
  uint8_t *pk = assemble(iov, niov, total);
  uint64_t data_end = 0;
  for (size_t i = 0; i < w.n; i++)
    data_end += w.blobs[i].clen;
  size_t tlen = kh_pack_trailer_len(&keys);

  counting_src src = {pk, total, 0, 0, UINT64_MAX};
  kh_pack_blob *blobs = NULL;
  size_t n = 0;
  CHECK_OK(kh_pack_read_header(&keys, w.id, total, counting_read, &src, &blobs, &n));
  CHECK_EQ(n, NBLOBS);
  CHECK_EQ(src.calls, 2);
  CHECK_EQ(src.lowest, data_end); /* nothing before the header: no blob */
  CHECK(src.bytes < total - data_end + 1 && src.bytes > tlen);
  free(blobs);

  /* the claimed size is beyond any pack: refused without a single read */
  counting_src big = {pk, (uint64_t)KH_OBJMAX_PACK + 1, 0, 0, UINT64_MAX};
  blobs = (kh_pack_blob *)1;
  CHECK_EQ(kh_pack_read_header(&keys, w.id, big.len, counting_read, &big, &blobs, &n),
           KH_ERR_TOOBIG);
  CHECK_EQ(big.calls, 0);
  CHECK(blobs == NULL && n == 0);
  big.len = 8ull << 30;
  CHECK_EQ(kh_pack_read_header(&keys, w.id, big.len, counting_read, &big, &blobs, &n),
           KH_ERR_TOOBIG);
  CHECK_EQ(big.calls, 0);

  /* a forged trailer cannot name a huge header: it does not authenticate, and
   * only the trailer was read */
  counting_src forged = {pk, total, 0, 0, UINT64_MAX};
  pk[total - 1] ^= 1;
  CHECK_EQ(kh_pack_read_header(&keys, w.id, total, counting_read, &forged, &blobs, &n),
           KH_ERR_AUTH);
  CHECK_EQ(forged.calls, 1);
  CHECK_EQ(forged.bytes, tlen);
  pk[total - 1] ^= 1;

  free(pk);
  kh_pack_writer_release(&w);
  for (size_t i = 0; i < NBLOBS; i++)
    free(pl[i].data);
}

static void test_empty_and_reset(void)
{
  kh_pack_writer w;
  CHECK_OK(kh_pack_writer_init(&w));
  uint8_t first_id[32];
  memcpy(first_id, w.id, 32);
  const struct iovec *iov;
  size_t niov;
  uint64_t total;
  CHECK_OK(kh_pack_finish(&w, &keys, &iov, &niov, &total));
  CHECK_EQ(niov, 1);
  uint8_t *pk = assemble(iov, niov, total);
  kh_pack_blob *b = NULL;
  size_t n = 9;
  CHECK_OK(kh_pack_parse(&keys, w.id, pk, total, &b, &n));
  CHECK_EQ(n, 0);
  free(b);
  free(pk);
  /* reset: new id, empty */
  kh_pack_writer_reset(&w);
  CHECK(memcmp(first_id, w.id, 32) != 0);
  CHECK_EQ(w.n, 0);
  CHECK_EQ(kh_pack_size(&w), 0);
  uint8_t id[32] = {1}, data[100] = {0};
  CHECK_OK(kh_pack_add(&w, &keys, KH_BLOB_DATA, id, data, sizeof data, sizeof data));
  CHECK_EQ(kh_pack_size(&w), sizeof data + KH_AEAD_TAG);
  CHECK_OK(kh_pack_finish(&w, &keys, &iov, &niov, &total));
  pk = assemble(iov, niov, total);
  CHECK_OK(kh_pack_parse(&keys, w.id, pk, total, &b, &n));
  CHECK_EQ(n, 1);
  kh_buf out;
  kh_buf_init(&out, KH_BLOB_MAX);
  if (n == 1) {
    CHECK_OK(kh_pack_blob_open(&keys, w.id, &b[0], pk + b[0].offset, &out));
    CHECK_EQ(out.len, 100);
    /* ulen that does not match the payload: FORMAT after authentication */
    kh_pack_blob bad = b[0];
    bad.ulen = 99;
    CHECK_ERR(kh_pack_blob_open(&keys, w.id, &bad, pk + b[0].offset, &out), KH_ERR_FORMAT);
    bad.ulen = KH_BLOB_MAX + 1;
    CHECK_EQ(kh_pack_blob_open(&keys, w.id, &bad, pk + b[0].offset, &out), KH_ERR_FORMAT);
    /* stored payload longer than ulen (not compressed, plen > ulen): must
     * fail cleanly and never write past the ulen bytes it reserved.  The
     * buffer's capacity is set to exactly ulen with a canary behind it
     * (libsodium's writes are not seen by ASan). */
    for (int flip = 0; flip < 2; flip++)
      for (uint32_t ul = 0; ul < 100; ul += 33) {
        kh_buf fresh;
        kh_buf_init(&fresh, KH_BLOB_MAX);
        fresh.data = malloc(ul + 256);
        fresh.cap = ul;
        memset(fresh.data + ul, 0xc5, 256);
        bad = b[0];
        bad.ulen = ul;
        pk[b[0].offset] ^= (uint8_t)flip; /* flip: the authentication fails too */
        kh_err e = kh_pack_blob_open(&keys, w.id, &bad, pk + b[0].offset, &fresh);
        pk[b[0].offset] ^= (uint8_t)flip;
        CHECK(e == KH_ERR_FORMAT || e == KH_ERR_AUTH);
        CHECK_EQ(fresh.len, 0);
        int smashed = 0;
        for (int c = 0; c < 256; c++)
          smashed += fresh.data[ul + c] != 0xc5;
        if (smashed)
          fprintf(stderr, "   BUG: kh_pack_blob_open wrote %d bytes past a %u-byte output "
                          "(clen %u, flip %d)\n", smashed, ul, bad.clen, flip);
        CHECK_EQ(smashed, 0);
        kh_buf_release(&fresh);
      }
    bad = b[0];
    bad.clen = KH_AEAD_TAG - 1;
    CHECK_EQ(kh_pack_blob_open(&keys, w.id, &bad, pk + b[0].offset, &out), KH_ERR_FORMAT);
  }
  free(b);
  free(pk);
  /* compressed payload whose size is not ulen: FORMAT */
  kh_pack_writer_reset(&w);
  uint8_t big[4096] = {0}, z[4096];
  size_t zl = ZSTD_compress(z, sizeof z, big, sizeof big, 3);
  CHECK(!ZSTD_isError(zl) && zl < 200);
  CHECK_OK(kh_pack_add(&w, &keys, KH_BLOB_DATA, id, z, zl, sizeof big + 1));
  CHECK_OK(kh_pack_finish(&w, &keys, &iov, &niov, &total));
  pk = assemble(iov, niov, total);
  CHECK_OK(kh_pack_parse(&keys, w.id, pk, total, &b, &n));
  if (n == 1)
    CHECK_EQ(kh_pack_blob_open(&keys, w.id, &b[0], pk + b[0].offset, &out), KH_ERR_FORMAT);
  free(b);
  free(pk);
  /* too large */
  CHECK_EQ(kh_pack_add(&w, &keys, KH_BLOB_DATA, id, big, (size_t)KH_BLOB_MAX + 1, 1),
           KH_ERR_TOOBIG);
  kh_buf_release(&out);
  kh_pack_writer_release(&w);
}

static void test_trailer_decode(void)
{
  uint8_t t[12];
  uint64_t hoff;
  uint32_t hlen;
  kh_le64_put(t, 100);
  kh_le32_put(t + 8, 50);
  CHECK_OK(kh_pack_trailer_decode(t, 12, 150, &hoff, &hlen));
  CHECK_EQ(hoff, 100);
  CHECK_EQ(hlen, 50);
  CHECK_EQ(kh_pack_trailer_decode(t, 12, 149, &hoff, &hlen), KH_ERR_FORMAT);
  CHECK_EQ(kh_pack_trailer_decode(t, 11, 150, &hoff, &hlen), KH_ERR_FORMAT);
  CHECK_EQ(kh_pack_trailer_decode(t, 13, 150, &hoff, &hlen), KH_ERR_FORMAT);
  kh_le64_put(t, UINT64_MAX);
  kh_le32_put(t + 8, 2);
  CHECK_EQ(kh_pack_trailer_decode(t, 12, UINT64_MAX, &hoff, &hlen), KH_ERR_FORMAT);
  kh_le64_put(t, UINT64_MAX - 1);
  CHECK_EQ(kh_pack_trailer_decode(t, 12, UINT64_MAX, &hoff, &hlen), KH_ERR_FORMAT);
  /* a header longer than any writer makes is refused even inside the pack:
   * a reader never allocates for a header length the provider claims */
  kh_le64_put(t, 0);
  kh_le32_put(t + 8, KH_OBJMAX_PACK_HEADER);
  CHECK_OK(kh_pack_trailer_decode(t, 12, KH_OBJMAX_PACK, &hoff, &hlen));
  CHECK_EQ(hlen, KH_OBJMAX_PACK_HEADER);
  kh_le32_put(t + 8, KH_OBJMAX_PACK_HEADER + 1);
  CHECK_EQ(kh_pack_trailer_decode(t, 12, KH_OBJMAX_PACK, &hoff, &hlen), KH_ERR_FORMAT);
  kh_le32_put(t + 8, UINT32_MAX);
  CHECK_EQ(kh_pack_trailer_decode(t, 12, UINT64_MAX, &hoff, &hlen), KH_ERR_FORMAT);
}

static void put_entry(kh_buf *h, uint8_t type, uint8_t idb, uint64_t off, uint64_t clen,
                      uint64_t ulen)
{
  uint8_t id[32];
  memset(id, idb, 32);
  kh_buf_put_u8(h, type);
  kh_buf_append(h, id, 32);
  kh_buf_put_uvar(h, off);
  kh_buf_put_uvar(h, clen);
  kh_buf_put_uvar(h, ulen);
}

static void test_header_decode(void)
{
  kh_buf h;
  kh_buf_init(&h, 4096);
  kh_pack_blob *b = NULL;
  size_t n = 0;
  kh_buf_append(&h, "KHPH1", 5);
  kh_buf_put_uvar(&h, 2);
  put_entry(&h, KH_BLOB_DATA, 0xa1, 0, 100, 84);
  put_entry(&h, KH_BLOB_TREE, 0xa2, 100, 50, 1000);
  CHECK_OK(kh_pack_header_decode(h.data, h.len, 150, &b, &n));
  CHECK_EQ(n, 2);
  if (n == 2) {
    CHECK_EQ(b[0].type, KH_BLOB_DATA);
    CHECK_EQ(b[0].id[0], 0xa1);
    CHECK_EQ(b[1].offset, 100);
    CHECK_EQ(b[1].clen, 50);
    CHECK_EQ(b[1].ulen, 1000);
    CHECK(!kh_blob_compressed(&b[0]));
    CHECK(kh_blob_compressed(&b[1]));
  }
  free(b);
  /* second blob ends past the header offset */
  CHECK_EQ(kh_pack_header_decode(h.data, h.len, 149, &b, &n), KH_ERR_FORMAT);
  CHECK(b == NULL && n == 0);
  /* every truncation and trailing garbage */
  int bad = 0;
  for (size_t l = 0; l < h.len; l++) {
    bad += kh_pack_header_decode(h.data, l, 150, &b, &n) != KH_ERR_FORMAT || b != NULL;
    free(b);
  }
  CHECK_EQ(bad, 0);
  kh_buf_put_u8(&h, 0);
  CHECK_EQ(kh_pack_header_decode(h.data, h.len, 150, &b, &n), KH_ERR_FORMAT);
  /* bad magic, bad type, clen < tag, huge sizes, count larger than the data */
  static const struct { uint8_t type; uint64_t off, clen, ulen; } bads[] = {
    {0, 0, 100, 10}, {3, 0, 100, 10}, {KH_BLOB_DATA, 0, 15, 10},
    {KH_BLOB_DATA, 0, (uint64_t)KH_BLOB_MAX + 17, 10},
    {KH_BLOB_DATA, 0, 100, (uint64_t)KH_BLOB_MAX + 1}, {KH_BLOB_DATA, UINT64_MAX, 16, 0},
    {KH_BLOB_DATA, 1ull << 32, 16, 0}, {KH_BLOB_DATA, 0, UINT64_MAX, 0},
  };
  bad = 0;
  for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
    kh_buf_reset(&h);
    kh_buf_append(&h, "KHPH1", 5);
    kh_buf_put_uvar(&h, 1);
    put_entry(&h, bads[i].type, 1, bads[i].off, bads[i].clen, bads[i].ulen);
    kh_err e = kh_pack_header_decode(h.data, h.len, (uint64_t)KH_BLOB_MAX * 2, &b, &n);
    if (e != KH_ERR_FORMAT || b) {
      fprintf(stderr, "   bad header entry %zu accepted\n", i);
      bad++;
    }
    free(b);
  }
  CHECK_EQ(bad, 0);
  kh_buf_reset(&h);
  kh_buf_append(&h, "KHPH2", 5);
  kh_buf_put_uvar(&h, 0);
  CHECK_EQ(kh_pack_header_decode(h.data, h.len, 0, &b, &n), KH_ERR_FORMAT);
  kh_buf_reset(&h);
  kh_buf_append(&h, "KHPH1", 5);
  kh_buf_put_uvar(&h, 1000000);
  CHECK_EQ(kh_pack_header_decode(h.data, h.len, 0, &b, &n), KH_ERR_FORMAT);
  kh_buf_reset(&h);
  kh_buf_append(&h, "KHPH1", 5);
  kh_buf_put_uvar(&h, 0);
  CHECK_OK(kh_pack_header_decode(h.data, h.len, 0, &b, &n));
  CHECK_EQ(n, 0);
  free(b);
  kh_buf_release(&h);
}

int main(void)
{
  if (kh_crypto_init())
    return 1;
  uint8_t master[32];
  randombytes_buf(master, sizeof master);
  if (kh_keys_init(&keys, master, kh_aead_default_cipher(), "test-region",
                   "00112233445566778899aabbccddeeff"))
    return 1;
  RUN(test_padme);
  RUN(test_pack_roundtrip);
  RUN(test_empty_and_reset);
  RUN(test_trailer_decode);
  RUN(test_read_header_bounded);
  RUN(test_header_decode);
  kh_keys_release(&keys);
  return kh_test_done("test_pack");
}
