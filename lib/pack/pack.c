#include "pack/pack.h"
#include "common/err.h"
#include "common/wire.h"
#include "provider/provider.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define HEADER_MAGIC "KHPH1"

/* The provider-object bounds readers enforce (provider.h, docs/format.md
 * §1.1) must hold every pack a writer can make: data below the target plus
 * one largest blob, a header of the most blobs (type, id, three uvars of at
 * most 4 bytes each), the trailer, and PADME's padding (< 2 MiB there). */
#define HEADER_ENTRY_MAX (1 + 32 + 3 * 4)
_Static_assert(5 + 3 + (uint64_t)KH_PACK_MAX_BLOBS * HEADER_ENTRY_MAX + 64 <=
                   KH_OBJMAX_PACK_HEADER,
               "pack header bound too small");
_Static_assert((uint64_t)KH_PACK_TARGET + KH_BLOB_MAX + KH_AEAD_TAG + KH_OBJMAX_PACK_HEADER +
                       64 + (2u << 20) <=
                   KH_OBJMAX_PACK,
               "pack object bound too small");

uint64_t kh_padme(uint64_t len)
{
  if (len < 2)
    return len;
  unsigned e = 63 - (unsigned)__builtin_clzll(len);
  unsigned s = 32 - (unsigned)__builtin_clz(e); /* floor(log2 e) + 1 */
  unsigned last = e - s;
  uint64_t mask = (1ull << last) - 1;
  return (len + mask) & ~mask;
}

static void blob_nonce(uint8_t nonce[KH_NONCE_MAX], const uint8_t pack_id[32],
                       const uint8_t blob_id[32])
{
  /* unique per (pack, blob): blob ids are unique within a pack and pack ids
   * are random, so a key never sees a nonce twice (docs/format.md §6) */
  crypto_generichash_state st;
  crypto_generichash_init(&st, (const uint8_t *)"khnonce1", 8, KH_NONCE_MAX);
  crypto_generichash_update(&st, pack_id, 32);
  crypto_generichash_update(&st, blob_id, 32);
  crypto_generichash_final(&st, nonce, KH_NONCE_MAX);
}

static kh_err blob_ad(const kh_keys *k, kh_buf *ad, int type, const uint8_t id[32])
{
  return kh_ad_build(ad, k->region, k->account, type == KH_BLOB_TREE ? "tree" : "data", id, 32);
}

kh_err kh_pack_writer_init(kh_pack_writer *w)
{
  memset(w, 0, sizeof *w);
  randombytes_buf(w->id, sizeof w->id);
  kh_buf_init(&w->data, KH_PACK_TARGET + KH_BLOB_MAX + 4096);
  kh_buf_init(&w->tail, KH_PACK_TARGET / 8 + (size_t)KH_PACK_MAX_BLOBS * 64);
  /* one reservation, pages touched only as used: no regrowth copies */
  return kh_buf_reserve(&w->data, KH_PACK_TARGET + (4u << 20) + 4096);
}

void kh_pack_writer_reset(kh_pack_writer *w)
{
  randombytes_buf(w->id, sizeof w->id);
  w->n = 0;
  kh_buf_reset(&w->data);
  kh_buf_reset(&w->tail);
}

void kh_pack_writer_release(kh_pack_writer *w)
{
  kh_buf_release(&w->data);
  kh_buf_release(&w->tail);
  free(w->blobs);
  free(w->iov);
  memset(w, 0, sizeof *w);
}

kh_err kh_pack_add(kh_pack_writer *w, const kh_keys *k, int type, const uint8_t id[32],
                   const uint8_t *payload, size_t payload_len, uint32_t ulen)
{
  if (payload_len > KH_BLOB_MAX || w->n >= KH_PACK_MAX_BLOBS)
    return kh_seterr(KH_ERR_TOOBIG, "blob too large for a pack");
  if (w->n == w->cap) {
    size_t nc = w->cap ? w->cap * 2 : 64;
    kh_pack_blob *nb = realloc(w->blobs, nc * sizeof *nb);
    if (!nb)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    w->blobs = nb;
    w->cap = nc;
  }
  kh_err e = kh_buf_reserve(&w->data, payload_len + KH_AEAD_TAG);
  if (e)
    return e;
  uint8_t nonce[KH_NONCE_MAX], adm[160];
  kh_buf ad = {adm, 0, sizeof adm, sizeof adm};
  blob_nonce(nonce, w->id, id);
  if ((e = blob_ad(k, &ad, type, id)))
    return e;
  e = kh_aead_seal(k->data, w->data.data + w->data.len, payload, payload_len, ad.data, ad.len,
                   nonce);
  if (e)
    return e;
  kh_pack_blob *b = &w->blobs[w->n++];
  memcpy(b->id, id, 32);
  b->type = (uint8_t)type;
  b->offset = (uint32_t)w->data.len;
  b->clen = (uint32_t)(payload_len + KH_AEAD_TAG);
  b->ulen = ulen;
  w->data.len += payload_len + KH_AEAD_TAG;
  return KH_OK;
}

size_t kh_pack_trailer_len(const kh_keys *k) { return kh_aead_box_overhead(k->meta) + 12; }

kh_err kh_pack_finish(kh_pack_writer *w, const kh_keys *k, const struct iovec **iovp,
                      size_t *niov, uint64_t *total)
{
  kh_err e = KH_OK;
  kh_buf hdr;
  kh_buf_init(&hdr, (size_t)w->n * 64 + 64);
  kh_buf *out = &w->tail;
  kh_buf_reset(out);
  struct iovec *iov = realloc(w->iov, (w->n + 1) * sizeof *iov);
  if (!iov)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  w->iov = iov;
  for (size_t i = w->n; i > 1; i--) { /* Fisher-Yates over the blobs */
    size_t j = randombytes_uniform((uint32_t)i);
    kh_pack_blob t = w->blobs[i - 1];
    w->blobs[i - 1] = w->blobs[j];
    w->blobs[j] = t;
  }
  if ((e = kh_buf_append(&hdr, HEADER_MAGIC, 5)) || (e = kh_buf_put_uvar(&hdr, w->n)))
    goto out;
  uint64_t off = 0;
  for (size_t i = 0; i < w->n; i++) {
    kh_pack_blob *b = &w->blobs[i];
    iov[i].iov_base = w->data.data + b->offset;
    iov[i].iov_len = b->clen;
    b->offset = (uint32_t)off;
    off += b->clen;
    if ((e = kh_buf_put_u8(&hdr, b->type)) || (e = kh_buf_append(&hdr, b->id, 32)) ||
        (e = kh_buf_put_uvar(&hdr, b->offset)) || (e = kh_buf_put_uvar(&hdr, b->clen)) ||
        (e = kh_buf_put_uvar(&hdr, b->ulen)))
      goto out;
  }
  uint64_t hoff = off;
  if ((e = kh_obj_seal(k, "packhdr", w->id, 32, hdr.data, hdr.len, out)))
    goto out;
  uint32_t hlen = (uint32_t)out->len;
  size_t tlen = kh_pack_trailer_len(k);
  uint64_t unpadded = off + out->len + tlen, padded = kh_padme(unpadded);
  size_t pad = (size_t)(padded - unpadded);
  if ((e = kh_buf_reserve(out, pad + tlen)))
    goto out;
  randombytes_buf(out->data + out->len, pad); /* indistinguishable from ciphertext */
  out->len += pad;
  uint8_t trl[12];
  kh_le64_put(trl, hoff);
  kh_le32_put(trl + 8, hlen);
  if ((e = kh_obj_seal(k, "packtrl", w->id, 32, trl, sizeof trl, out)))
    goto out;
  iov[w->n].iov_base = out->data;
  iov[w->n].iov_len = out->len;
  *iovp = iov;
  *niov = w->n + 1;
  *total = off + out->len;
out:
  kh_buf_release(&hdr);
  return e;
}

kh_err kh_pack_blob_open(const kh_keys *k, const uint8_t pack_id[32], const kh_pack_blob *b,
                         const uint8_t *ct, kh_buf *out)
{
  kh_buf_reset(out);
  /* a stored payload is never longer than its plaintext (compression is
   * kept only when it shrinks): reject before decrypting into ulen bytes */
  if (b->clen < KH_AEAD_TAG || b->ulen > KH_BLOB_MAX || b->clen - KH_AEAD_TAG > b->ulen)
    return kh_seterr(KH_ERR_FORMAT, "blob sizes out of range");
  size_t plen = b->clen - KH_AEAD_TAG;
  uint8_t nonce[KH_NONCE_MAX], adm[160];
  kh_buf ad = {adm, 0, sizeof adm, sizeof adm};
  blob_nonce(nonce, pack_id, b->id);
  kh_err e = blob_ad(k, &ad, b->type, b->id);
  if (e)
    return e;
  bool comp = plen < b->ulen;
  if ((e = kh_buf_reserve(out, comp ? plen + b->ulen : b->ulen)))
    return e;
  /* compressed: decrypt into the tail of out, then decompress to the front */
  uint8_t *dst = comp ? out->data + b->ulen : out->data;
  if ((e = kh_aead_open(k->data, dst, ct, b->clen, ad.data, ad.len, nonce)))
    return e;
  if (comp) {
    size_t r = ZSTD_decompress(out->data, b->ulen, dst, plen);
    if (ZSTD_isError(r) || r != b->ulen)
      return kh_seterr(KH_ERR_FORMAT, "blob does not decompress");
  }
  out->len = b->ulen;
  return KH_OK;
}

kh_err kh_pack_trailer_decode(const uint8_t *pt, size_t n, uint64_t pack_len, uint64_t *hoff,
                              uint32_t *hlen)
{
  if (n != 12)
    return kh_seterr(KH_ERR_FORMAT, "bad pack trailer");
  *hoff = kh_le64_get(pt);
  *hlen = kh_le32_get(pt + 8);
  if (*hoff > pack_len || *hlen > pack_len - *hoff || *hlen > KH_OBJMAX_PACK_HEADER)
    return kh_seterr(KH_ERR_FORMAT, "pack header out of range");
  return KH_OK;
}

kh_err kh_pack_header_decode(const uint8_t *pt, size_t n, uint64_t hoff, kh_pack_blob **blobs,
                             size_t *count)
{
  *blobs = NULL;
  *count = 0;
  kh_rd r;
  kh_rd_init(&r, pt, n);
  const uint8_t *magic = kh_rd_bytes(&r, 5);
  uint64_t cnt = kh_rd_uvar(&r);
  if (!magic || memcmp(magic, HEADER_MAGIC, 5) || cnt > KH_PACK_MAX_BLOBS ||
      cnt > kh_rd_left(&r) / 36)
    return kh_seterr(KH_ERR_FORMAT, "bad pack header");
  kh_pack_blob *b = calloc(cnt ? cnt : 1, sizeof *b);
  if (!b)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  for (uint64_t i = 0; i < cnt && kh_rd_ok(&r); i++) {
    b[i].type = kh_rd_u8(&r);
    kh_rd_copy(&r, b[i].id, 32);
    uint64_t off = kh_rd_uvar(&r), clen = kh_rd_uvar(&r), ulen = kh_rd_uvar(&r);
    if ((b[i].type != KH_BLOB_DATA && b[i].type != KH_BLOB_TREE) || clen < KH_AEAD_TAG ||
        clen - KH_AEAD_TAG > ulen || ulen > KH_BLOB_MAX || off > hoff || clen > hoff - off)
      kh_rd_fail(&r);
    b[i].offset = (uint32_t)off;
    b[i].clen = (uint32_t)clen;
    b[i].ulen = (uint32_t)ulen;
  }
  if (!kh_rd_done(&r)) {
    free(b);
    return kh_seterr(KH_ERR_FORMAT, "bad pack header");
  }
  *blobs = b;
  *count = (size_t)cnt;
  return KH_OK;
}

kh_err kh_pack_read_header(const kh_keys *k, const uint8_t pack_id[32], uint64_t pack_len,
                           kh_pack_read_fn rd, void *ctx, kh_pack_blob **blobs, size_t *n)
{
  *blobs = NULL;
  *n = 0;
  size_t tlen = kh_pack_trailer_len(k);
  if (pack_len > KH_OBJMAX_PACK)
    return kh_seterr(KH_ERR_TOOBIG, "pack of %llu bytes is larger than any pack (%u)",
                     (unsigned long long)pack_len, KH_OBJMAX_PACK);
  if (pack_len < tlen)
    return kh_seterr(KH_ERR_FORMAT, "pack too short");
  /* the fixed trailer, then a header no longer than a writer makes, each
   * authenticated before it is parsed; the blobs are never read here */
  kh_buf ct, pt;
  kh_buf_init(&ct, KH_OBJMAX_PACK_HEADER);
  kh_buf_init(&pt, KH_OBJMAX_PACK_HEADER);
  uint64_t hoff;
  uint32_t hlen;
  kh_err e = rd(ctx, pack_len - tlen, tlen, &ct);
  if (!e)
    e = kh_obj_open(k, "packtrl", pack_id, 32, ct.data, ct.len, &pt);
  if (!e)
    e = kh_pack_trailer_decode(pt.data, pt.len, pack_len - tlen, &hoff, &hlen);
  if (!e) {
    kh_buf_reset(&ct);
    kh_buf_reset(&pt);
    e = rd(ctx, hoff, hlen, &ct);
  }
  if (!e)
    e = kh_obj_open(k, "packhdr", pack_id, 32, ct.data, ct.len, &pt);
  if (!e)
    e = kh_pack_header_decode(pt.data, pt.len, hoff, blobs, n);
  kh_buf_release(&ct);
  kh_buf_release(&pt);
  return e;
}

typedef struct mem_pack {
  const uint8_t *data;
  size_t len;
} mem_pack;

static kh_err mem_read(void *ctx, uint64_t off, size_t len, kh_buf *out)
{
  const mem_pack *m = ctx;
  if (off > m->len || len > m->len - off)
    return kh_seterr(KH_ERR_FORMAT, "pack is truncated");
  return kh_buf_append(out, m->data + off, len);
}

kh_err kh_pack_parse(const kh_keys *k, const uint8_t pack_id[32], const uint8_t *pack, size_t len,
                     kh_pack_blob **blobs, size_t *n)
{
  mem_pack m = {pack, len};
  return kh_pack_read_header(k, pack_id, len, mem_read, &m, blobs, n);
}
