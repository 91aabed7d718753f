/* Fuzz the pack trailer (docs/format.md §6).  Input: 8 bytes of pack
 * length (LE) then the trailer plaintext.
 *   raw: kh_pack_trailer_decode; a decoded trailer must lie in the pack;
 *   sealed: the plaintext is sealed as the trailer of a pack of that
 *   length (capped) under a fixed key and kh_pack_parse must not crash,
 *   and must fail unless the trailer points at a valid sealed header. */
#include "pack/pack.h"
#include "common/buf.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static kh_keys keys;
static const uint8_t pack_id[32] = {0x74, 0x72, 0x6c};

static void setup(void)
{
  static int done;
  if (done)
    return;
  done = 1;
  if (kh_crypto_init())
    abort();
  uint8_t master[32];
  memset(master, 0x43, sizeof master);
  if (kh_keys_init(&keys, master, KH_CIPHER_XCHACHA20POLY1305, "fuzz",
                   "00000000000000000000000000000000"))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  setup();
  if (size < 8)
    return 0;
  uint64_t plen = kh_le64_get(data);
  const uint8_t *t = data + 8;
  size_t n = size - 8;
  uint64_t hoff = 0;
  uint32_t hlen = 0;
  if (kh_pack_trailer_decode(t, n, plen, &hoff, &hlen) == KH_OK) {
    if (n != 12 || hoff > plen || hlen > plen - hoff || hoff + hlen > plen)
      abort();
  }
  /* sealed into a pack: body of (plen mod 64 KiB) bytes holding a valid
   * sealed empty header at offset 0 */
  size_t body = (size_t)(plen & 0xffff);
  kh_buf pk;
  kh_buf_init(&pk, body + 4096 + n);
  kh_buf_append(&pk, "", 0);
  uint8_t hdr[6] = {'K', 'H', 'P', 'H', '1', 0};
  kh_obj_seal(&keys, "packhdr", pack_id, 32, hdr, sizeof hdr, &pk);
  size_t sealed_hlen = pk.len;
  while (pk.len < body && kh_buf_put_u8(&pk, 0xab) == KH_OK)
    ;
  kh_obj_seal(&keys, "packtrl", pack_id, 32, t, n, &pk);
  kh_pack_blob *b = NULL;
  size_t cnt = 0;
  kh_err e = kh_pack_parse(&keys, pack_id, pk.data, pk.len, &b, &cnt);
  if (e == KH_OK && (n != 12 || kh_le64_get(t) != 0 || kh_le32_get(t + 8) != sealed_hlen ||
                     cnt != 0))
    abort();
  free(b);
  kh_buf_release(&pk);
  return 0;
}
