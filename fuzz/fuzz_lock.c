/* Fuzz the reading of other processes' lock records (docs/format.md §10):
 * the input is sealed as a foreign lock object in a temporary region and
 * kh_vault_lock(exclusive) must judge it without crashing: held (busy) or
 * provably stale (removed), never an error of another kind.  The verdict
 * must be consistent: removed only if it decoded.  Region made once per
 * process with a deterministic random source; no back-off between tries. */
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
    kh_lock_set_timing(1000ll * 1000000000, 0, 1);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  setup();
  static const uint8_t id[16] = {0x10, 0xcc};
  char name[256];
  kh_vault_objname(v, name, sizeof name, "locks", id, 16);
  if (kh_vault_put_obj(v, "locks", "lock", id, 16, data, size, false))
    abort();
  kh_lock_info l;
  bool decodes = kh_lock_decode(data, size, &l);
  kh_err e = kh_vault_lock(v, true);
  uint64_t sz;
  bool present = kh_provider_size(v->prov, name, &sz) == KH_OK;
  if (e != KH_OK && e != KH_ERR_LOCKED)
    abort();
  if (!present && !decodes)
    abort(); /* an unreadable lock is never taken for stale */
  if (e == KH_OK && present)
    abort(); /* got an exclusive lock past a live one */
  kh_vault_unlock(v);
  if (v->lock_name[0] || v->lock_keeper)
    abort();
  kh_provider_del(v->prov, name);
  return 0;
}
