/* Packs: many encrypted blobs in one provider object, in random order,
 * padded (PADME), with an encrypted header and a fixed-size encrypted
 * trailer (docs/format.md §6).  The provider learns only the padded size. */
#ifndef KH_PACK_H
#define KH_PACK_H
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "crypto/objseal.h"

enum { KH_BLOB_DATA = 1, KH_BLOB_TREE = 2 };
#define KH_PACK_TARGET (8u << 20)       /* finish a pack at this many bytes */
#define KH_PACK_MAX_BLOBS 200000u
#define KH_BLOB_MAX (64u << 20)         /* bound for any blob's plaintext */

typedef struct kh_pack_blob {
  uint8_t id[32];
  uint8_t type;
  uint32_t offset;   /* of the ciphertext in the pack */
  uint32_t clen;     /* ciphertext length including the tag */
  uint32_t ulen;     /* plaintext length after decompression */
} kh_pack_blob;

/* Compressed iff the stored payload is shorter than the plaintext. */
static inline int kh_blob_compressed(const kh_pack_blob *b)
{ return b->clen - KH_AEAD_TAG < b->ulen; }

typedef struct kh_pack_writer {
  uint8_t id[32];
  kh_buf data;          /* ciphertexts in insertion order */
  kh_pack_blob *blobs;
  size_t n, cap;
  struct iovec *iov;    /* gather list made by kh_pack_finish */
  kh_buf tail;          /* header, padding, trailer */
} kh_pack_writer;

/* New pack with a random id. */
kh_err kh_pack_writer_init(kh_pack_writer *w);
/* Start the next pack (new id) reusing the buffers. */
void kh_pack_writer_reset(kh_pack_writer *w);
void kh_pack_writer_release(kh_pack_writer *w);
/* Encrypt payload (already compressed when payload_len < ulen) as blob id. */
kh_err kh_pack_add(kh_pack_writer *w, const kh_keys *k, int type, const uint8_t id[32],
                   const uint8_t *payload, size_t payload_len, uint32_t ulen);
static inline size_t kh_pack_size(const kh_pack_writer *w) { return w->data.len; }
/* Shuffle the blobs and seal header, padding and trailer.  The finished
 * pack is the gather list *iov[0..*niov) (owned by w, valid until the next
 * add or reset) of *total bytes; blob offsets in w->blobs are updated to
 * their final place.  No copy of the ciphertexts is made. */
kh_err kh_pack_finish(kh_pack_writer *w, const kh_keys *k, const struct iovec **iov,
                      size_t *niov, uint64_t *total);

/* Decrypt one blob (ct = clen bytes read at offset) and decompress into out
 * (reset first; capped at KH_BLOB_MAX).  KH_ERR_AUTH if it fails. */
kh_err kh_pack_blob_open(const kh_keys *k, const uint8_t pack_id[32], const kh_pack_blob *b,
                         const uint8_t *ct, kh_buf *out);
/* Reads len bytes at off of a pack into out (appending). */
typedef kh_err (*kh_pack_read_fn)(void *ctx, uint64_t off, size_t len, kh_buf *out);
/* Authenticate and parse a pack's header in bounded pieces: a pack_len
 * (the provider's claim) above KH_OBJMAX_PACK is KH_ERR_TOOBIG; then the
 * fixed-size trailer is read and opened, then the header it names (at most
 * KH_OBJMAX_PACK_HEADER bytes).  No blob is read.  *blobs is malloc'd
 * (free()); KH_ERR_AUTH if trailer or header does not authenticate. */
kh_err kh_pack_read_header(const kh_keys *k, const uint8_t pack_id[32], uint64_t pack_len,
                           kh_pack_read_fn rd, void *ctx, kh_pack_blob **blobs, size_t *n);
/* kh_pack_read_header over a pack held in memory (pack = all its bytes).
 * *blobs is malloc'd (free()). */
kh_err kh_pack_parse(const kh_keys *k, const uint8_t pack_id[32], const uint8_t *pack,
                     size_t len, kh_pack_blob **blobs, size_t *n);
/* Size of the trailer for a cipher (nonce + 12 + tag). */
size_t kh_pack_trailer_len(const kh_keys *k);
/* Parse a decrypted trailer; bounds-checked against the pack size and the
 * largest header a writer makes (KH_OBJMAX_PACK_HEADER). */
kh_err kh_pack_trailer_decode(const uint8_t *pt, size_t n, uint64_t pack_len,
                              uint64_t *hoff, uint32_t *hlen);
/* Parse a decrypted header plaintext; bounded (fuzzed: fuzz/fuzz_pack_header.c). */
kh_err kh_pack_header_decode(const uint8_t *pt, size_t n, uint64_t hoff,
                             kh_pack_blob **blobs, size_t *count);
uint64_t kh_padme(uint64_t len);

#endif
