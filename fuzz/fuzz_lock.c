/* Fuzz lock records (docs/format.md §10; the decoder, decode_lock, is
 * static in lib/repo/lock.c).  The input is sealed as this process's own
 * lock object in a temporary region and kh_vault_lock_refresh reads and
 * decodes it (and rewrites it when it decodes).  A malformed lock must be
 * handled without crashing; the rewritten lock must then load cleanly.
 * Region made once per process with a deterministic random source. */
#include "repo/vault_internal.h"
#include "common/buf.h"
#include "common/fsutil.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x6c6f636bull;
static uint64_t splitmix(void)
{
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static uint32_t rng_random(void) { return (uint32_t)splitmix(); }
static void rng_buf(void *p, size_t n)
{
  uint8_t *q = p;
  for (size_t i = 0; i < n; i++)
    q[i] = (uint8_t)splitmix();
}
static const char *rng_name(void) { return "fuzz-deterministic"; }
static randombytes_implementation rng = {rng_name, rng_random, NULL, NULL, rng_buf, NULL};

static kh_vault *v;
static char root[] = "/tmp/kh-fuzz-lock-XXXXXX";

static void cleanup(void)
{
  kh_vault_free(v);
  kh_remove_tree(root);
}

static void setup(void)
{
  if (v)
    return;
  randombytes_set_implementation(&rng);
  if (!mkdtemp(root))
    abort();
  char *region = kh_path_join(root, "region"), *dev = kh_path_join(root, "device");
  kh_secret *pass = kh_secret_new("fuzz", 4);
  kh_init_opts io = {.region_path = region, .passcode = pass, .kdf_ops = 1, .kdf_mem_mib = 8,
                     .cipher = KH_CIPHER_XCHACHA20POLY1305};
  char acct[KH_ACCOUNT_ID_HEX + 1];
  kh_open_opts oo = {.region_path = region, .passcode = pass, .device_dir = dev,
                     .no_cache = true};
  if (kh_vault_init(&io, acct) || kh_vault_open(&oo, &v)) {
    fprintf(stderr, "fuzz_lock: setup failed: %s\n", kh_errdetail());
    abort();
  }
  kh_secret_free(pass);
  free(region);
  free(dev);
  atexit(cleanup);
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
