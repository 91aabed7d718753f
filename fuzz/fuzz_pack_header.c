/* Fuzz the pack header parser (docs/format.md §6).
 * Input byte 0 selects:
 *   even: kh_pack_header_decode on raw plaintext (hoff = next 4 bytes, LE);
 *         a decoded header must satisfy every bound and re-encode to the
 *         same bytes (the format is canonical);
 *   odd:  the authenticated path: the rest is sealed as the header of a
 *         pack under a fixed test key, a valid trailer is added, and
 *         kh_pack_parse + kh_pack_blob_open run on the result; raw input
 *         bytes are also given to kh_pack_parse, which must refuse them. */
#include "pack/pack.h"
#include "common/buf.h"
#include "common/wire.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static kh_keys keys;
static const uint8_t pack_id[32] = {0x70, 0x61, 0x63, 0x6b};

static void setup(void)
{
  static int done;
  if (done)
    return;
  done = 1;
  if (kh_crypto_init())
    abort();
  uint8_t master[32];
  memset(master, 0x42, sizeof master);
  if (kh_keys_init(&keys, master, KH_CIPHER_XCHACHA20POLY1305, "fuzz",
                   "00000000000000000000000000000000"))
    abort();
}

static void check_blobs(const kh_pack_blob *b, size_t n, uint64_t hoff)
{
  for (size_t i = 0; i < n; i++) {
    if ((b[i].type != KH_BLOB_DATA && b[i].type != KH_BLOB_TREE) || b[i].clen < KH_AEAD_TAG ||
        b[i].clen - KH_AEAD_TAG > KH_BLOB_MAX || b[i].ulen > KH_BLOB_MAX ||
        (uint64_t)b[i].offset + b[i].clen > hoff)
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  setup();
  if (size < 5)
    return 0;
  int mode = data[0] & 1;
  uint64_t hoff = kh_le32_get(data + 1);
  const uint8_t *p = data + 5;
  size_t n = size - 5;
  kh_pack_blob *b = NULL;
  size_t cnt = 0;
  if (mode == 0) {
    if (kh_pack_header_decode(p, n, hoff, &b, &cnt) == KH_OK) {
      check_blobs(b, cnt, hoff);
      kh_buf re;
      kh_buf_init(&re, n + 64);
      kh_buf_append(&re, "KHPH1", 5);
      kh_buf_put_uvar(&re, cnt);
      for (size_t i = 0; i < cnt; i++) {
        kh_buf_put_u8(&re, b[i].type);
        kh_buf_append(&re, b[i].id, 32);
        kh_buf_put_uvar(&re, b[i].offset);
        kh_buf_put_uvar(&re, b[i].clen);
        kh_buf_put_uvar(&re, b[i].ulen);
      }
      if (re.len != n || memcmp(re.data, p, n))
        abort();
      kh_buf_release(&re);
    } else if (b || cnt) {
      abort();
    }
    free(b);
    return 0;
  }
  /* raw bytes as a whole pack: never authenticate */
  if (kh_pack_parse(&keys, pack_id, data, size, &b, &cnt) == KH_OK)
    abort();
  free(b);
  /* sealed: [hoff filler bytes][sealed header = p][pad][trailer] */
  hoff &= 0xffff;
  kh_buf pk;
  kh_buf_init(&pk, hoff + n + 4096);
  if (kh_buf_reserve(&pk, hoff))
    return 0;
  if (hoff)
    memset(pk.data, 0xee, hoff);
  pk.len = hoff;
  kh_obj_seal(&keys, "packhdr", pack_id, 32, p, n, &pk);
  uint8_t trl[12];
  kh_le64_put(trl, hoff);
  kh_le32_put(trl + 8, (uint32_t)(pk.len - hoff));
  kh_obj_seal(&keys, "packtrl", pack_id, 32, trl, sizeof trl, &pk);
  kh_err e = kh_pack_parse(&keys, pack_id, pk.data, pk.len, &b, &cnt);
  kh_pack_blob *ref = NULL;
  size_t rn = 0;
  kh_err re = kh_pack_header_decode(p, n, hoff, &ref, &rn);
  if ((e == KH_OK) != (re == KH_OK) || rn != cnt)
    abort();
  if (e == KH_OK) {
    check_blobs(b, cnt, hoff);
    kh_buf out;
    kh_buf_init(&out, 2 * (size_t)KH_BLOB_MAX);
    for (size_t i = 0; i < cnt && i < 8; i++)
      if (kh_pack_blob_open(&keys, pack_id, &b[i], pk.data + b[i].offset, &out) == KH_OK)
        abort(); /* the filler is not a valid ciphertext */
    kh_buf_release(&out);
  }
  free(b);
  free(ref);
  kh_buf_release(&pk);
  return 0;
}
