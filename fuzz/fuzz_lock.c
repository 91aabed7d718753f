/* Fuzz lock records (docs/format.md §10; the decoder, decode_lock, is
 * static in lib/repo/lock.c).  The input is sealed as this process's own
 * lock object in a temporary region and kh_vault_lock_refresh reads and
 * decodes it (and rewrites it when it decodes).  A malformed lock must be
 * handled without crashing; the rewritten lock must then load cleanly.
 * Region made once per process with a deterministic random source. */
#include "fuzz_fixture.h"
#include "repo/vault_internal.h"
#include "common/buf.h"
#include "common/fsutil.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static kh_vault *v;
static char root[] = "/tmp/kh-fuzz-lock-XXXXXX";

static void setup(void)
{
  if (!v) {
    kh_fuzz_deterministic_rng(0x6c6f636bull);
    v = kh_fuzz_vault(root, "fuzz_lock");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  setup();
  static const uint8_t id[16] = {0x10, 0xcc};
  if (kh_vault_put_obj(v, "locks", "lock", id, 16, data, size, false))
    abort();
  kh_vault_objname(v, v->lock_name, sizeof v->lock_name, "locks", id, 16);
  kh_err e = kh_vault_lock_refresh(v);
  if (e)
    abort(); /* a malformed own lock is left alone, not an error */
  /* whatever happened, the object is still a readable sealed object */
  kh_buf b;
  kh_buf_init(&b, 4096);
  if (kh_vault_get_obj(v, "locks", "lock", id, 16, &b))
    abort();
  kh_buf_release(&b);
  kh_vault_unlock(v);
  if (v->lock_name[0])
    abort();
  return 0;
}
