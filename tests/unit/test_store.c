/* The region server's object store (include/keyhold/store.h): put (with
 * excl), put of a whole file without buffering (same filesystem and
 * another), ranged get, whole read with its bound, size, list, delete. */
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include "keyhold/store.h"
#include "kh_test.h"

static int sum_list(const char *name, uint64_t size, void *ctx)
{
  uint64_t *t = ctx;
  t[0]++;
  t[1] += size;
  return 0;
}

static void write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

int main(void)
{
  char dir[] = "/tmp/kh_test_store.XXXXXX", p[512], q[512];
  if (!mkdtemp(dir))
    return 1;
  kh_store *s = NULL;
  CHECK_ERR(kh_store_open_dir("/nonexistent/kh", &s), KH_ERR_NOTFOUND);
  CHECK(s == NULL);
  CHECK_OK(kh_store_open_dir(dir, &s));
  if (!s)
    return 1;
  CHECK_OK(kh_store_put(s, "accounts/a/locks/1", "hello", 5, true));
  CHECK_ERR(kh_store_put(s, "accounts/a/locks/1", "other", 5, true), KH_ERR_EXISTS);
  CHECK_OK(kh_store_put(s, "accounts/a/protection", "v1", 2, false));
  CHECK_OK(kh_store_put(s, "accounts/a/protection", "v2!", 3, false));
  uint8_t *all = NULL;
  size_t len = 0;
  CHECK_OK(kh_store_read(s, "accounts/a/protection", 4096, &all, &len));
  CHECK(len == 3 && all && memcmp(all, "v2!", 3) == 0);
  free(all);
  CHECK_ERR(kh_store_read(s, "accounts/a/locks/1", 4, &all, &len), KH_ERR_TOOBIG);
  char got[16] = {0};
  CHECK_OK(kh_store_get(s, "accounts/a/locks/1", 1, 3, got));
  CHECK(memcmp(got, "ell", 3) == 0);
  CHECK_ERR(kh_store_get(s, "accounts/a/locks/1", 3, 3, got), KH_ERR_FORMAT);
  CHECK_ERR(kh_store_get(s, "accounts/a/locks/2", 0, 1, got), KH_ERR_NOTFOUND);
  uint64_t size = 0;
  CHECK_OK(kh_store_size(s, "accounts/a/locks/1", &size));
  CHECK_EQ(size, 5);
  /* a file on the same filesystem is linked into place and gone after */
  snprintf(p, sizeof p, "%s/upload.tmp", dir);
  write_file(p, "packbytes");
  CHECK_OK(kh_store_put_file(s, "accounts/a/data/ab/cd", p, true));
  CHECK(access(p, F_OK) != 0);
  CHECK_OK(kh_store_size(s, "accounts/a/data/ab/cd", &size));
  CHECK_EQ(size, 9);
  /* excl on an existing object: refused, the file is the caller's still */
  write_file(p, "different");
  CHECK_ERR(kh_store_put_file(s, "accounts/a/data/ab/cd", p, true), KH_ERR_EXISTS);
  CHECK(access(p, F_OK) == 0);
  CHECK_OK(kh_store_get(s, "accounts/a/data/ab/cd", 0, 4, got));
  CHECK(memcmp(got, "pack", 4) == 0);
  /* replace */
  CHECK_OK(kh_store_put_file(s, "accounts/a/data/ab/cd", p, false));
  CHECK(access(p, F_OK) != 0);
  CHECK_OK(kh_store_get(s, "accounts/a/data/ab/cd", 0, 4, got));
  CHECK(memcmp(got, "diff", 4) == 0);
  /* from another filesystem (/dev/shm when it is one): copied */
  struct stat a, b;
  snprintf(q, sizeof q, "/dev/shm/kh_test_store.%d", (int)getpid());
  if (stat("/dev/shm", &a) == 0 && stat(dir, &b) == 0 && a.st_dev != b.st_dev) {
    write_file(q, "elsewhere");
    CHECK_OK(kh_store_put_file(s, "accounts/a/index/ee", q, true));
    CHECK(access(q, F_OK) != 0);
    CHECK_OK(kh_store_get(s, "accounts/a/index/ee", 0, 9, got));
    CHECK(memcmp(got, "elsewhere", 9) == 0);
  }
  /* a symlink is never taken as the file */
  write_file(p, "x");
  snprintf(q, sizeof q, "%s/link.tmp", dir);
  CHECK_EQ(symlink(p, q), 0);
  CHECK(kh_store_put_file(s, "accounts/a/locks/9", q, true) != KH_OK);
  CHECK_ERR(kh_store_size(s, "accounts/a/locks/9", &size), KH_ERR_NOTFOUND);
  uint64_t t[2] = {0, 0};
  CHECK_OK(kh_store_list(s, "accounts/a", sum_list, t));
  CHECK_EQ(t[0], 3 + (access("/dev/shm", F_OK) == 0 && a.st_dev != b.st_dev));
  CHECK_OK(kh_store_delete(s, "accounts/a/locks/1"));
  CHECK_OK(kh_store_delete(s, "accounts/a/locks/1"));
  CHECK_ERR(kh_store_size(s, "accounts/a/locks/1", &size), KH_ERR_NOTFOUND);
  t[0] = t[1] = 0;
  CHECK_OK(kh_store_list(s, "accounts/none", sum_list, t));
  CHECK_EQ(t[0], 0);
  kh_store_free(s);
  kh_store_free(NULL);
  snprintf(q, sizeof q, "rm -rf %s", dir);
  if (system(q) != 0)
    return 1;
  return kh_test_done("test_store");
}
