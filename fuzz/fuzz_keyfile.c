/* Fuzz the key files read when an account is opened (docs/format.md §4):
 *   byte 0 even: the rest replaces the passcode key-wrap object
 *     (accounts/<id>/keys/<wid>: "KHKEY1", kind, ops, MiB, salt, box) and
 *     kh_vault_open runs;
 *   byte 0 odd: the rest replaces this device's key file (device.key:
 *     "KHDEV1", box) and kh_vault_open runs with the real key wrap.
 * Either way opening must succeed only for the untouched original bytes.
 * The header parser (open_passcode_wrap) and the device-file parser
 * (load_device) are static in lib/repo/vault.c, so every run pays one
 * Argon2id: to keep that bounded the harness rewrites KDF parameters that
 * the parser would accept to the minimum (1 pass, 8 MiB) — values outside
 * the accepted range are passed through untouched.  The region is made
 * with a deterministic random source, so the corpus holds its real files. */
#include "fuzz_fixture.h"
#include "repo/vault_internal.h"
#include "common/buf.h"
#include "common/fsutil.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static char root[] = "/tmp/kh-fuzz-key-XXXXXX";
static char *region, *devdir, *keypath, *devpath;
static uint8_t *orig_key, *orig_dev;
static size_t orig_key_len, orig_dev_len;
static kh_secret *pass;

static void cleanup(void)
{
  kh_remove_tree(root);
  kh_secret_free(pass);
}

/* Collect the account's key objects: the passcode wrap (kind 1) is the one
 * fuzzed; others (e.g. the key service's wrap) are removed in setup so that
 * opening can only go through the passcode wrap under test. */
typedef struct key_scan {
  char *passcode, *others[8];
  int nothers;
  kh_provider *p;
} key_scan;

static int find_key(const char *name, uint64_t size, void *ctx)
{
  key_scan *s = ctx;
  if (!strstr(name, "/keys/"))
    return 0;
  char *rel = kh_path_join("accounts", name);
  kh_buf b;
  kh_buf_init(&b, 1 << 20);
  bool pw = kh_provider_get(s->p, rel, 0, 7, &b) == KH_OK && !memcmp(b.data, "KHKEY1", 6) &&
            b.data[6] == 1;
  kh_buf_release(&b);
  if (pw && !s->passcode)
    s->passcode = rel;
  else if (s->nothers < 8)
    s->others[s->nothers++] = rel;
  else
    free(rel);
  return 0;
}

static void setup(void)
{
  if (region)
    return;
  kh_fuzz_deterministic_rng(0x6b657966ull);
  if (!mkdtemp(root))
    abort();
  region = kh_path_join(root, "region");
  devdir = kh_path_join(root, "device");
  pass = kh_secret_new("fuzz", 4);
  kh_init_opts io = {.region_path = region, .passcode = pass, .kdf_ops = 1, .kdf_mem_mib = 8,
                     .cipher = KH_CIPHER_XCHACHA20POLY1305};
  char acct[KH_ACCOUNT_ID_HEX + 1];
  kh_vault *v = NULL;
  kh_open_opts oo = {.region_path = region, .passcode = pass, .device_dir = devdir,
                     .no_cache = true};
  if (kh_vault_init(&io, acct) || kh_vault_open(&oo, &v)) {
    fprintf(stderr, "fuzz_keyfile: setup failed: %s\n", kh_errdetail());
    abort();
  }
  char sub[200];
  snprintf(sub, sizeof sub, "%s-%s/device.key", v->region_id, v->account);
  devpath = kh_path_join(devdir, sub);
  kh_vault_free(v);
  key_scan ks = {0};
  if (kh_provider_dir_new(region, &ks.p) || kh_provider_list(ks.p, "accounts", find_key, &ks) ||
      !ks.passcode)
    abort();
  for (int i = 0; i < ks.nothers; i++) {
    kh_provider_del(ks.p, ks.others[i]);
    free(ks.others[i]);
  }
  keypath = kh_path_join(region, ks.passcode);
  free(ks.passcode);
  kh_provider_free(ks.p);
  if (kh_read_file(keypath, 1 << 20, &orig_key, &orig_key_len) ||
      kh_read_file(devpath, 1 << 20, &orig_dev, &orig_dev_len))
    abort();
  const char *dump = getenv("KH_FUZZ_DUMP_SEEDS"); /* write seed files into this dir */
  if (dump) {
    for (int i = 0; i < 2; i++) {
      char sp[4096];
      snprintf(sp, sizeof sp, "%s/%s", dump, i ? "device-original" : "keywrap-original");
      FILE *f = fopen(sp, "wb");
      if (!f)
        abort();
      fputc(i, f);
      fwrite(i ? orig_dev : orig_key, 1, i ? orig_dev_len : orig_key_len, f);
      fclose(f);
    }
  }
  atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  setup();
  int dev = data[0] & 1;
  size_t n = size - 1;
  uint8_t *buf = malloc(n ? n : 1);
  memcpy(buf, data + 1, n);
  if (!dev && n >= 15) {
    uint32_t ops = kh_le32_get(buf + 7), mib = kh_le32_get(buf + 11);
    if (ops >= 1 && ops <= 64 && mib >= 8 && mib <= 4096) {
      kh_le32_put(buf + 7, 1);
      kh_le32_put(buf + 11, 8);
    }
  }
  const char *path = dev ? devpath : keypath;
  if (kh_write_file_atomic(path, buf, n, 0600, false))
    abort();
  kh_vault *v = NULL;
  kh_open_opts oo = {.region_path = region, .passcode = pass, .device_dir = devdir,
                     .no_cache = true};
  kh_err e = kh_vault_open(&oo, &v);
  const uint8_t *orig = dev ? orig_dev : orig_key;
  size_t olen = dev ? orig_dev_len : orig_key_len;
  bool same = n == olen && !memcmp(buf, orig, n);
  if ((e == KH_OK) != same) {
    fprintf(stderr, "fuzz_keyfile: open %s for a %s %s file: %s\n", e ? "failed" : "succeeded",
            same ? "original" : "modified", dev ? "device" : "key", kh_errdetail());
    abort();
  }
  if (!dev && !same && e != KH_ERR_PASSCODE)
    abort(); /* a bad key wrap looks like a wrong passcode */
  if (dev && !same && e != KH_ERR_AUTH && e != KH_ERR_FORMAT)
    abort();
  kh_vault_free(v);
  /* restore both files */
  if (kh_write_file_atomic(path, orig, olen, 0600, false))
    abort();
  free(buf);
  return 0;
}
