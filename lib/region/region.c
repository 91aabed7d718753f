/* Creating a region without an account (keyhold/region.h).  The marker
 * format is docs/format.md §1 ("keyhold-region v1\nid ID\ninstance HEX\n"),
 * the same text lib/repo/vault.c writes for a region made by `keyhold init`. */
#include "keyhold/region.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "common/hex.h"
#include "crypto/crypto.h"
#include "provider/provider.h"

#include <dirent.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool kh_region_id_valid(const char *id)
{
  size_t n = strlen(id);
  if (n == 0 || n > 63)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') || id[i] == '-'))
      return false;
  return true;
}

static kh_err must_be_empty(const char *path)
{
  DIR *d = opendir(path);
  if (!d)
    return kh_seterr(kh_errno_code(errno), "open %s: %s", path, strerror(errno));
  struct dirent *de;
  kh_err e = KH_OK;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
      e = kh_seterr(KH_ERR_EXISTS, "%s is not empty", path);
      break;
    }
  closedir(d);
  return e;
}

kh_err kh_region_create(const char *path, const char *region_id,
                        char instance_out[KH_REGION_INSTANCE_HEX + 1])
{
  kh_err e;
  kh_provider *p = NULL;
  bool made = false;
  const char *rid = region_id ? region_id : "local";
  uint8_t inst[KH_REGION_INSTANCE_HEX / 2];
  char inst_hex[KH_REGION_INSTANCE_HEX + 1], marker[160];
  if ((e = kh_crypto_init()))
    return e;
  if (!path || !kh_region_id_valid(rid))
    return kh_seterr(KH_ERR_INVAL, "region id '%s' must be 1-63 of [a-z0-9-]", rid);
  if ((e = kh_mkdirs(path, 0700)) || (e = must_be_empty(path)))
    return e;
  randombytes_buf(inst, sizeof inst);
  kh_hex_encode(inst_hex, inst, sizeof inst);
  if ((e = kh_kms_create_instance(path, rid, inst_hex)))
    goto out;
  made = true;
  int ml = snprintf(marker, sizeof marker, "keyhold-region v1\nid %s\ninstance %s\n", rid,
                    inst_hex);
  if ((e = kh_provider_dir_new(path, &p)) ||
      (e = kh_provider_put(p, "keyhold-region", marker, (size_t)ml, true)))
    goto out;
  if (instance_out)
    memcpy(instance_out, inst_hex, sizeof inst_hex);
out:
  if (e && made) {
    char *k = kh_path_join(path, "kms"), *l = kh_path_join(path, "log");
    if (k)
      kh_remove_tree(k);
    if (l)
      kh_remove_tree(l);
    free(k);
    free(l);
  }
  kh_provider_free(p);
  return e;
}
