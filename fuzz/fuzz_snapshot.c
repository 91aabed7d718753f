/* Fuzz snapshot records (docs/format.md §9).  Input byte 0 selects:
 *   0: kh_snap_decode on raw bytes; a decoded record re-encodes to the same
 *      bytes (canonical);
 *   1: the sealed snapshot object plaintext (uvar body length, body, 64-byte
 *      signature): sealed as a snapshot of a real account in a temporary
 *      region and loaded with kh_vault_load_snapshot; it must never load
 *      (the signature cannot be forged);
 *   2: the body only, signed with this device's key by the harness (a body
 *      that decodes is first re-encoded to name this device), so it must
 *      load exactly when the body decodes, and the loaded record must be
 *      the one signed.
 * The region is made once per process (Argon2id at its minimum cost) with a
 * deterministic random source so runs are reproducible. */
#include "fuzz_fixture.h"
#include "repo/vault_internal.h"
#include "common/buf.h"
#include "common/fsutil.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static kh_vault *v;
static char root[] = "/tmp/kh-fuzz-snap-XXXXXX";

static void setup(void)
{
  if (!v) {
    kh_fuzz_deterministic_rng(0x6b6579686f6c64ull);
    v = kh_fuzz_vault(root, "fuzz_snapshot");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  int mode = data[0] % 3;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  kh_snap s;
  if (mode == 0) {
    if (kh_snap_decode(p, n, &s) == KH_OK) {
      kh_buf enc;
      kh_buf_init(&enc, n + 64);
      if (kh_snap_encode(&s, &enc) || enc.len != n || memcmp(enc.data, p, n))
        abort();
      kh_buf_release(&enc);
      kh_snap_release(&s);
    } else if (s.host || s.paths || s.npaths) {
      abort();
    }
    return 0;
  }
  setup();
  uint8_t id[32];
  crypto_generichash(id, 32, data, size, NULL, 0);
  kh_buf pt;
  kh_buf_init(&pt, n + 256);
  bool decodes = false;
  if (mode == 1) {
    kh_buf_append(&pt, p, n);
  } else {
    /* a body that decodes is re-encoded naming this device, so the signed
     * record must load; the rest is signed as given and must not */
    kh_buf fixed;
    kh_buf_init(&fixed, n + 64);
    if (kh_snap_decode(p, n, &s) == KH_OK) {
      memcpy(s.device, v->device_id, 16);
      if (kh_snap_encode(&s, &fixed))
        abort();
      kh_snap_release(&s);
      p = fixed.data;
      n = fixed.len;
      decodes = true;
    }
    /* sign the body as kh_vault_write_snapshot does */
    kh_buf msg;
    kh_buf_init(&msg, n + 512);
    kh_buf_append(&msg, "keyhold-snapshot-v1", 20);
    kh_buf_append(&msg, v->region_id, strlen(v->region_id) + 1);
    kh_buf_append(&msg, v->account, strlen(v->account) + 1);
    kh_buf_append(&msg, id, 32);
    kh_buf_append(&msg, p, n);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, msg.data, msg.len, v->device_sk);
    kh_buf_put_lbytes(&pt, p, n);
    kh_buf_append(&pt, sig, 64);
    kh_buf_release(&msg);
    kh_buf_release(&fixed); /* pt holds its own copy */
  }
  if (kh_vault_put_obj(v, "snapshots", "snapshot", id, 32, pt.data, pt.len, false))
    abort();
  kh_err e = kh_vault_load_snapshot(v, id, &s);
  if (e == KH_OK) {
    if (mode == 1 || !decodes)
      abort();
    kh_buf re;
    kh_buf_init(&re, pt.len + 64);
    /* pt = uvar length, body, signature: the body is what was loaded */
    if (kh_snap_encode(&s, &re) || re.len + 64 > pt.len ||
        memcmp(pt.data + pt.len - 64 - re.len, re.data, re.len))
      abort();
    kh_buf_release(&re);
    kh_snap_release(&s);
  } else if (mode == 2 && decodes) {
    abort();
  }
  char name[256];
  kh_vault_objname(v, name, sizeof name, "snapshots", id, 32);
  kh_provider_del(v->prov, name);
  kh_buf_release(&pt);
  return 0;
}
