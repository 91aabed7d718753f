/* Unit tests for lib/provider (directory backend): put/get/ranged get,
 * size, recursive list skipping *.tmp, idempotent delete, exclusive put,
 * reads past the end, refused names. */
#include "provider/provider.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "kh_test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/kh-test-prov-XXXXXX";

typedef struct listing {
  char names[32][128];
  uint64_t sizes[32];
  int n;
  int stop_after;
} listing;

static int collect(const char *name, uint64_t size, void *ctx)
{
  listing *l = ctx;
  if (l->n < 32) {
    snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
    l->sizes[l->n] = size;
  }
  l->n++;
  return l->stop_after && l->n >= l->stop_after;
}

static int has(const listing *l, const char *name, uint64_t size)
{
  for (int i = 0; i < l->n && i < 32; i++)
    if (!strcmp(l->names[i], name))
      return l->sizes[i] == size;
  return 0;
}

static void test_provider(void)
{
  kh_provider *p = NULL;
  char *missing = kh_path_join(dir, "nope");
  CHECK_EQ(kh_provider_dir_new(missing, &p), KH_ERR_NOTFOUND);
  CHECK(p == NULL);
  free(missing);
  CHECK_OK(kh_provider_dir_new(dir, &p));
  if (!p)
    return;
  kh_buf b;
  kh_buf_init(&b, 1 << 20);

  /* put (creating parents), get all, ranged get, size */
  CHECK_OK(kh_provider_put(p, "a/b/c/obj", "0123456789", 10, false));
  CHECK_OK(kh_provider_get(p, "a/b/c/obj", 0, KH_GET_ALL, &b));
  CHECK_EQ(b.len, 10);
  CHECK_MEM(b.data, "0123456789", 10);
  kh_buf_reset(&b);
  CHECK_OK(kh_buf_append(&b, "X", 1)); /* get appends */
  CHECK_OK(kh_provider_get(p, "a/b/c/obj", 3, 4, &b));
  CHECK_EQ(b.len, 5);
  CHECK_MEM(b.data, "X3456", 5);
  kh_buf_reset(&b);
  CHECK_OK(kh_provider_get(p, "a/b/c/obj", 7, KH_GET_ALL, &b));
  CHECK_EQ(b.len, 3);
  CHECK_MEM(b.data, "789", 3);
  kh_buf_reset(&b);
  CHECK_OK(kh_provider_get(p, "a/b/c/obj", 10, 0, &b)); /* empty read at the end */
  CHECK_EQ(b.len, 0);
  CHECK_OK(kh_provider_get(p, "a/b/c/obj", 10, KH_GET_ALL, &b));
  CHECK_EQ(b.len, 0);
  uint64_t sz = 0;
  CHECK_OK(kh_provider_size(p, "a/b/c/obj", &sz));
  CHECK_EQ(sz, 10);
  /* past the end: FORMAT (truncated), nothing appended */
  CHECK_EQ(kh_provider_get(p, "a/b/c/obj", 8, 3, &b), KH_ERR_FORMAT);
  CHECK_EQ(kh_provider_get(p, "a/b/c/obj", 11, KH_GET_ALL, &b), KH_ERR_FORMAT);
  CHECK_EQ(kh_provider_get(p, "a/b/c/obj", 11, 0, &b), KH_ERR_FORMAT);
  CHECK_EQ(kh_provider_get(p, "a/b/c/obj", UINT64_MAX, 1, &b), KH_ERR_FORMAT);
  CHECK_EQ(kh_provider_get(p, "a/b/c/obj", 0, SIZE_MAX - 1, &b), KH_ERR_FORMAT);
  CHECK_EQ(b.len, 0);
  /* missing */
  CHECK_EQ(kh_provider_get(p, "a/b/c/none", 0, KH_GET_ALL, &b), KH_ERR_NOTFOUND);
  CHECK_EQ(kh_provider_size(p, "a/none", &sz), KH_ERR_NOTFOUND);
  /* buffer cap respected */
  kh_buf small;
  kh_buf_init(&small, 5);
  CHECK_EQ(kh_provider_get(p, "a/b/c/obj", 0, KH_GET_ALL, &small), KH_ERR_TOOBIG);
  kh_buf_release(&small);

  /* overwrite and exclusive put */
  CHECK_OK(kh_provider_put(p, "a/b/c/obj", "new", 3, false));
  CHECK_EQ(kh_provider_put(p, "a/b/c/obj", "other", 5, true), KH_ERR_EXISTS);
  kh_buf_reset(&b);
  CHECK_OK(kh_provider_get(p, "a/b/c/obj", 0, KH_GET_ALL, &b));
  CHECK(b.len == 3 && !memcmp(b.data, "new", 3));
  CHECK_OK(kh_provider_put(p, "excl-new", "e", 1, true));
  /* gather put */
  struct iovec iov[3] = {{"ab", 2}, {"", 0}, {"cde", 3}};
  CHECK_OK(kh_provider_putv(p, "a/gather", iov, 3, true));
  kh_buf_reset(&b);
  CHECK_OK(kh_provider_get(p, "a/gather", 0, KH_GET_ALL, &b));
  CHECK(b.len == 5 && !memcmp(b.data, "abcde", 5));
  CHECK_OK(kh_provider_put(p, "a/empty", "", 0, false));
  CHECK_OK(kh_provider_size(p, "a/empty", &sz));
  CHECK_EQ(sz, 0);

  /* list: recursive, relative names, skips *.tmp and dot files */
  CHECK_OK(kh_provider_put(p, "a/b/deep/x/y", "12", 2, false));
  char *tmp = kh_path_join(dir, "a/b/leftover.tmp");
  FILE *f = fopen(tmp, "w");
  fputs("partial", f);
  fclose(f);
  free(tmp);
  listing l = {0};
  CHECK_OK(kh_provider_list(p, "a", collect, &l));
  CHECK_EQ(l.n, 4);
  CHECK(has(&l, "b/c/obj", 3));
  CHECK(has(&l, "b/deep/x/y", 2));
  CHECK(has(&l, "gather", 5));
  CHECK(has(&l, "empty", 0));
  CHECK(!has(&l, "b/leftover.tmp", 7));
  memset(&l, 0, sizeof l);
  CHECK_OK(kh_provider_list(p, "a/b", collect, &l));
  CHECK_EQ(l.n, 2);
  CHECK(has(&l, "c/obj", 3));
  /* a missing prefix lists nothing; a callback may stop the listing */
  memset(&l, 0, sizeof l);
  CHECK_OK(kh_provider_list(p, "zzz", collect, &l));
  CHECK_EQ(l.n, 0);
  memset(&l, 0, sizeof l);
  l.stop_after = 1;
  CHECK_OK(kh_provider_list(p, "a", collect, &l));
  CHECK_EQ(l.n, 1);

  /* delete is idempotent */
  CHECK_OK(kh_provider_del(p, "a/gather"));
  CHECK_OK(kh_provider_del(p, "a/gather"));
  CHECK_OK(kh_provider_del(p, "never/existed"));
  CHECK_EQ(kh_provider_get(p, "a/gather", 0, KH_GET_ALL, &b), KH_ERR_NOTFOUND);

  /* names that could escape the root are refused by every operation */
  static const char *bad[] = {"..", "../x", "a/../../x", "a/..", "/etc/passwd", ""};
  int refused = 0;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    refused += kh_provider_put(p, bad[i], "x", 1, false) == KH_ERR_INVAL;
    refused += kh_provider_get(p, bad[i], 0, KH_GET_ALL, &b) == KH_ERR_INVAL;
    refused += kh_provider_size(p, bad[i], &sz) == KH_ERR_INVAL;
    refused += kh_provider_del(p, bad[i]) == KH_ERR_INVAL;
    refused += kh_provider_list(p, bad[i], collect, &l) == KH_ERR_INVAL;
  }
  CHECK_EQ(refused, 5 * (int)(sizeof bad / sizeof bad[0]));
  char *outside = kh_path_join(dir, "../x");
  struct stat st;
  CHECK(stat(outside, &st) != 0);
  free(outside);
  char longname[1100];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  CHECK_EQ(kh_provider_put(p, longname, "x", 1, false), KH_ERR_INVAL);

  kh_buf_release(&b);
  kh_provider_free(p);
  kh_provider_free(NULL);
}

int main(void)
{
  if (!mkdtemp(dir))
    return 1;
  RUN(test_provider);
  kh_remove_tree(dir);
  return kh_test_done("test_provider");
}
