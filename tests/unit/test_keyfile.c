/* Unit tests for the key files of an account (lib/repo/vault.c,
 * docs/format.md §4): the passcode key-wrap object and the device key file.
 * The parsers are static, so these drive kh_vault_init / kh_vault_open on a
 * temporary region with the cheapest Argon2id parameters. */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/buf.h"
#include "kh_test.h"

#include <dirent.h>
#include <sodium.h>
#include <stdlib.h>
#include <unistd.h>

static char root[] = "/tmp/kh-test-keyfile-XXXXXX";
static char *region, *devdir, *keypath, *devpath;
static char account_id[KH_ACCOUNT_ID_HEX + 1];
static kh_secret *pass;

static kh_err open_with(const kh_secret *p)
{
  kh_vault *v = NULL;
  kh_open_opts o = {.region_path = region, .passcode = p, .device_dir = devdir, .no_cache = true};
  kh_err e = kh_vault_open(&o, &v);
  kh_vault_free(v);
  return e;
}

static kh_err put(const char *path, const uint8_t *p, size_t n)
{
  return kh_write_file_atomic(path, p, n, 0600, false);
}

static void test_init_layout(void)
{
  kh_init_opts io = {.region_path = region, .passcode = pass, .kdf_ops = 1, .kdf_mem_mib = 8};
  CHECK_OK(kh_vault_init(&io, account_id));
  CHECK_EQ(strlen(account_id), KH_ACCOUNT_ID_HEX);
  char rid[64];
  CHECK_OK(kh_region_id(region, rid));
  CHECK(!strcmp(rid, "local"));
  /* find the single key wrap object */
  char *keys = NULL;
  {
    char rel[200];
    snprintf(rel, sizeof rel, "accounts/%s/keys", account_id);
    keys = kh_path_join(region, rel);
  }
  DIR *d = opendir(keys);
  CHECK(d != NULL);
  struct dirent *de;
  int n = 0;
  /* the passcode wrap is the object of kind 1; other wraps of the account
   * (the key service's) are removed so that opening can only go through
   * the passcode wrap under test */
  while (d && (de = readdir(d)))
    if (de->d_name[0] != '.') {
      CHECK_EQ(strlen(de->d_name), 32);
      char *kp = kh_path_join(keys, de->d_name);
      uint8_t *o = NULL;
      size_t ol = 0;
      if (kh_read_file(kp, 1 << 20, &o, &ol) == KH_OK && ol > 7 && !memcmp(o, "KHKEY1", 6) &&
          o[6] == 1 && !keypath) {
        keypath = kp;
        n++;
      } else {
        unlink(kp);
        free(kp);
      }
      free(o);
    }
  if (d)
    closedir(d);
  free(keys);
  CHECK_EQ(n, 1);
  /* header: "KHKEY1" kind=1 ops=1 mib=8 salt[16], then nonce(24) ct(33) tag(16) */
  uint8_t *obj = NULL;
  size_t len = 0;
  CHECK_OK(kh_read_file(keypath, 4096, &obj, &len));
  CHECK_EQ(len, 6 + 1 + 4 + 4 + 16 + 24 + 33 + 16);
  if (obj && len >= 15) {
    CHECK_MEM(obj, "KHKEY1", 6);
    CHECK_EQ(obj[6], 1);
    CHECK_EQ(kh_le32_get(obj + 7), 1);
    CHECK_EQ(kh_le32_get(obj + 11), 8);
  }
  free(obj);
  /* first open enrolls the device */
  CHECK_OK(open_with(pass));
  char sub[200];
  snprintf(sub, sizeof sub, "local-%s/device.key", account_id);
  devpath = kh_path_join(devdir, sub);
  CHECK(access(devpath, R_OK) == 0);
  CHECK_OK(open_with(pass)); /* second open loads it */
  /* wrong passcode */
  kh_secret *wrong = kh_secret_new("fuzzy", 5);
  CHECK_EQ(open_with(wrong), KH_ERR_PASSCODE);
  kh_secret_free(wrong);
  /* KDF parameters outside the accepted range are refused at init */
  io.kdf_ops = 65;
  char a2[KH_ACCOUNT_ID_HEX + 1];
  CHECK_EQ(kh_vault_init(&io, a2), KH_ERR_INVAL);
  io.kdf_ops = 1;
  io.kdf_mem_mib = 4;
  CHECK_EQ(kh_vault_init(&io, a2), KH_ERR_INVAL);
}

static void test_keywrap_tamper(void)
{
  uint8_t *orig = NULL;
  size_t len = 0;
  CHECK_OK(kh_read_file(keypath, 4096, &orig, &len));
  if (!orig)
    return;
  uint8_t *m = malloc(len + 8);
  /* every byte position flipped: never opens, always looks like a bad passcode */
  int bad = 0, opened = 0;
  size_t positions[] = {0, 5, 6, 7, 10, 11, 14, 15, 30, 31, 40, 54, 55, 60, len - 17, len - 1};
  for (size_t i = 0; i < sizeof positions / sizeof positions[0]; i++) {
    memcpy(m, orig, len);
    m[positions[i]] ^= 0x01;
    put(keypath, m, len);
    kh_err e = open_with(pass);
    opened += e == KH_OK;
    bad += e != KH_ERR_PASSCODE;
  }
  CHECK_EQ(opened, 0);
  CHECK_EQ(bad, 0);
  /* absurd KDF parameters (would cost 4 TiB of memory) are refused before
   * any work: timing bound is implicit, the result must be PASSCODE */
  memcpy(m, orig, len);
  kh_le32_put(m + 11, 0xffffffffu);
  put(keypath, m, len);
  CHECK_EQ(open_with(pass), KH_ERR_PASSCODE);
  kh_le32_put(m + 11, 8);
  kh_le32_put(m + 7, 0);
  put(keypath, m, len);
  CHECK_EQ(open_with(pass), KH_ERR_PASSCODE);
  /* truncations, an empty object, extra bytes */
  size_t cuts[] = {0, 5, 6, 7, 14, 31, 32, 55, len - 1};
  bad = 0;
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    put(keypath, orig, cuts[i]);
    bad += open_with(pass) != KH_ERR_PASSCODE;
  }
  CHECK_EQ(bad, 0);
  memcpy(m, orig, len);
  m[len] = 0;
  put(keypath, m, len + 1);
  CHECK_EQ(open_with(pass), KH_ERR_PASSCODE);
  /* an unknown kind is skipped (not an error by itself) */
  memcpy(m, orig, len);
  m[6] = 2;
  put(keypath, m, len);
  CHECK_EQ(open_with(pass), KH_ERR_PASSCODE);
  /* restored: opens again */
  CHECK_OK(put(keypath, orig, len));
  CHECK_OK(open_with(pass));
  free(m);
  free(orig);
}

static void test_device_file(void)
{
  uint8_t *orig = NULL;
  size_t len = 0;
  CHECK_OK(kh_read_file(devpath, 4096, &orig, &len));
  if (!orig)
    return;
  /* "KHDEV1" + nonce(24) + (16 id + 64 secret key) + tag(16) */
  CHECK_EQ(len, 6 + 24 + 80 + 16);
  CHECK_MEM(orig, "KHDEV1", 6);
  uint8_t *m = malloc(len + 1);
  int bad = 0;
  for (size_t i = 0; i < len; i += 7) {
    memcpy(m, orig, len);
    m[i] ^= 0x80;
    put(devpath, m, len);
    kh_err e = open_with(pass);
    bad += i < 6 ? e != KH_ERR_FORMAT : e != KH_ERR_AUTH;
  }
  CHECK_EQ(bad, 0);
  size_t cuts[] = {0, 5, 6, 7, 30, 46, len - 1};
  bad = 0;
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    put(devpath, orig, cuts[i]);
    kh_err e = open_with(pass);
    bad += e != KH_ERR_FORMAT && e != KH_ERR_AUTH;
  }
  CHECK_EQ(bad, 0);
  CHECK_OK(put(devpath, orig, len));
  CHECK_OK(open_with(pass));
  free(m);
  free(orig);
}

int main(void)
{
  if (sodium_init() < 0 || !mkdtemp(root))
    return 1;
  region = kh_path_join(root, "region");
  devdir = kh_path_join(root, "device");
  pass = kh_secret_new("fuzz", 4);
  RUN(test_init_layout);
  if (keypath && devpath) {
    RUN(test_keywrap_tamper);
    RUN(test_device_file);
  }
  kh_remove_tree(root);
  free(region);
  free(devdir);
  free(keypath);
  free(devpath);
  kh_secret_free(pass);
  return kh_test_done("test_keyfile");
}
