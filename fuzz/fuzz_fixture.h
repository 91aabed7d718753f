/* Shared by the fuzz targets that need a real account: a deterministic
 * random source (so seed corpora are byte-identical to real objects) and a
 * temporary region made once per process. */
#ifndef KH_FUZZ_FIXTURE_H
#define KH_FUZZ_FIXTURE_H
#include "repo/vault_internal.h"
#include "common/fsutil.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t kh_fuzz_rng_state;

static inline uint64_t kh_fuzz_splitmix(void)
{
  uint64_t z = (kh_fuzz_rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static inline uint32_t kh_fuzz_rng_random(void) { return (uint32_t)kh_fuzz_splitmix(); }
static inline void kh_fuzz_rng_buf(void *p, size_t n)
{
  uint8_t *q = p;
  for (size_t i = 0; i < n; i++)
    q[i] = (uint8_t)kh_fuzz_splitmix();
}
static inline const char *kh_fuzz_rng_name(void) { return "fuzz-deterministic"; }

/* Replace libsodium's random source by a fixed sequence from seed. */
static inline void kh_fuzz_deterministic_rng(uint64_t seed)
{
  static randombytes_implementation rng = {kh_fuzz_rng_name, kh_fuzz_rng_random, NULL, NULL,
                                           kh_fuzz_rng_buf, NULL};
  kh_fuzz_rng_state = seed;
  randombytes_set_implementation(&rng);
}

static kh_vault *kh_fuzz_v;
static char *kh_fuzz_root;

static inline void kh_fuzz_cleanup(void)
{
  kh_vault_free(kh_fuzz_v);
  kh_remove_tree(kh_fuzz_root);
}

/* An open account in a new temporary region under root (a mkdtemp
 * template, modified in place), made on the first call. */
static inline kh_vault *kh_fuzz_vault(char *root, const char *who)
{
  if (kh_fuzz_v)
    return kh_fuzz_v;
  if (!mkdtemp(root))
    abort();
  kh_fuzz_root = root;
  char *region = kh_path_join(root, "region"), *dev = kh_path_join(root, "device");
  kh_secret *pass = kh_secret_new("fuzz", 4);
  kh_init_opts io = {.region_path = region, .passcode = pass, .kdf_ops = 1, .kdf_mem_mib = 8,
                     .cipher = KH_CIPHER_XCHACHA20POLY1305};
  char acct[KH_ACCOUNT_ID_HEX + 1];
  kh_open_opts oo = {.region_path = region, .passcode = pass, .device_dir = dev,
                     .no_cache = true};
  if (kh_vault_init(&io, acct) || kh_vault_open(&oo, &kh_fuzz_v)) {
    fprintf(stderr, "%s: setup failed: %s\n", who, kh_errdetail());
    abort();
  }
  kh_secret_free(pass);
  free(region);
  free(dev);
  atexit(kh_fuzz_cleanup);
  return kh_fuzz_v;
}
#endif
