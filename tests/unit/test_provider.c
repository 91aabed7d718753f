/* Unit tests for lib/provider (directory backend): put/get/ranged get,
 * size, recursive list skipping *.tmp, idempotent delete, exclusive put,
 * reads past the end, refused names, per-kind size bounds, and hostile
 * entries (symlinks, FIFOs, devices) planted where objects should be. */
#include "provider/provider.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "kh_test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
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
  CHECK_OK(kh_provider_read(p, "a/b/c/obj", 1 << 20, &b));
  CHECK_EQ(b.len, 10);
  CHECK_MEM(b.data, "0123456789", 10);
  kh_buf_reset(&b);
  CHECK_OK(kh_buf_append(&b, "X", 1)); /* get appends */
  CHECK_OK(kh_provider_get(p, "a/b/c/obj", 3, 4, &b));
  CHECK_EQ(b.len, 5);
  CHECK_MEM(b.data, "X3456", 5);
  kh_buf_reset(&b);
  CHECK_OK(kh_provider_get(p, "a/b/c/obj", 7, 3, &b));
  CHECK_EQ(b.len, 3);
  CHECK_MEM(b.data, "789", 3);
  kh_buf_reset(&b);
  CHECK_OK(kh_provider_get(p, "a/b/c/obj", 10, 0, &b)); /* empty read at the end */
  CHECK_EQ(b.len, 0);
  uint64_t sz = 0;
  CHECK_OK(kh_provider_size(p, "a/b/c/obj", &sz));
  CHECK_EQ(sz, 10);
  /* past the end: FORMAT (truncated), nothing appended */
  CHECK_EQ(kh_provider_get(p, "a/b/c/obj", 8, 3, &b), KH_ERR_FORMAT);
  CHECK_EQ(kh_provider_get(p, "a/b/c/obj", 11, 0, &b), KH_ERR_FORMAT);
  CHECK_EQ(kh_provider_get(p, "a/b/c/obj", UINT64_MAX, 1, &b), KH_ERR_FORMAT);
  CHECK_EQ(kh_provider_get(p, "a/b/c/obj", 0, SIZE_MAX - 1, &b), KH_ERR_FORMAT);
  CHECK_EQ(b.len, 0);
  /* missing */
  CHECK_EQ(kh_provider_read(p, "a/b/c/none", 1 << 20, &b), KH_ERR_NOTFOUND);
  CHECK_EQ(kh_provider_size(p, "a/none", &sz), KH_ERR_NOTFOUND);
  /* buffer cap respected */
  kh_buf small;
  kh_buf_init(&small, 5);
  CHECK_EQ(kh_provider_read(p, "a/b/c/obj", 1 << 20, &small), KH_ERR_TOOBIG);
  kh_buf_release(&small);
  /* the kind's bound is checked against the object's size */
  CHECK_OK(kh_provider_read(p, "a/b/c/obj", 10, &b));
  CHECK_EQ(b.len, 10);
  kh_buf_reset(&b);
  CHECK_EQ(kh_provider_read(p, "a/b/c/obj", 9, &b), KH_ERR_TOOBIG);
  CHECK_EQ(b.len, 0);

  /* overwrite and exclusive put */
  CHECK_OK(kh_provider_put(p, "a/b/c/obj", "new", 3, false));
  CHECK_EQ(kh_provider_put(p, "a/b/c/obj", "other", 5, true), KH_ERR_EXISTS);
  kh_buf_reset(&b);
  CHECK_OK(kh_provider_read(p, "a/b/c/obj", 1 << 20, &b));
  CHECK(b.len == 3 && !memcmp(b.data, "new", 3));
  CHECK_OK(kh_provider_put(p, "excl-new", "e", 1, true));
  /* gather put */
  struct iovec iov[3] = {{"ab", 2}, {"", 0}, {"cde", 3}};
  CHECK_OK(kh_provider_putv(p, "a/gather", iov, 3, true));
  kh_buf_reset(&b);
  CHECK_OK(kh_provider_read(p, "a/gather", 1 << 20, &b));
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
  CHECK_EQ(kh_provider_read(p, "a/gather", 1 << 20, &b), KH_ERR_NOTFOUND);

  /* names that could escape the root are refused by every operation */
  static const char *bad[] = {"..", "../x", "a/../../x", "a/..", "/etc/passwd", ""};
  int refused = 0;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    refused += kh_provider_put(p, bad[i], "x", 1, false) == KH_ERR_INVAL;
    refused += kh_provider_read(p, bad[i], 1 << 20, &b) == KH_ERR_INVAL;
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

static char outdir[] = "/tmp/kh-test-prov-out-XXXXXX";

static char *at(const char *base, const char *rel) { return kh_path_join(base, rel); }

/* The provider's directory is hostile: entries that are not regular files
 * are refused without being followed or waited on, and listing skips them. */
static void test_hostile_entries(void)
{
  kh_provider *p = NULL;
  CHECK_OK(kh_provider_dir_new(dir, &p));
  if (!p)
    return;
  kh_buf b;
  kh_buf_init(&b, 1 << 20);
  uint64_t sz = 0;
  CHECK_OK(kh_provider_put(p, "h/real", "real", 4, false));
  /* outside the region: a file and a directory holding an "object" */
  char *secret = at(outdir, "secret"), *osub = at(outdir, "sub"), *oobj = at(outdir, "sub/obj");
  FILE *f = fopen(secret, "w");
  fputs("SECRET", f);
  fclose(f);
  mkdir(osub, 0700);
  f = fopen(oobj, "w");
  fputs("OUTSIDE", f);
  fclose(f);
  char *link = at(dir, "h/link"), *fifo = at(dir, "h/fifo"), *dev = at(dir, "h/dev");
  char *sublink = at(dir, "h/sub");
  CHECK(symlink(secret, link) == 0);
  CHECK(mkfifo(fifo, 0600) == 0);
  CHECK(symlink(osub, sublink) == 0);
  bool have_dev = mknod(dev, S_IFCHR | 0600, makedev(1, 3)) == 0; /* /dev/null; needs root */

  alarm(20); /* a read that blocks on the FIFO fails the test instead of hanging it */
  static const char *bad[] = {"h/link", "h/fifo", "h/sub/obj", "h/dev"};
  for (size_t i = 0; i < 4; i++) {
    if (i == 3 && !have_dev)
      continue;
    kh_buf_reset(&b);
    CHECK_EQ(kh_provider_read(p, bad[i], 1 << 20, &b), KH_ERR_FORMAT);
    CHECK_EQ(kh_provider_get(p, bad[i], 0, 1, &b), KH_ERR_FORMAT);
    CHECK_EQ(kh_provider_size(p, bad[i], &sz), KH_ERR_FORMAT);
    CHECK_EQ(b.len, 0);
  }
  /* the log's and key service's files in the region are read with
   * kh_read_file: a FIFO or device there is refused without blocking too */
  uint8_t *data = NULL;
  size_t dlen = 0;
  CHECK_EQ(kh_read_file(fifo, 4096, &data, &dlen), KH_ERR_FORMAT);
  CHECK(data == NULL && dlen == 0);
  if (have_dev)
    CHECK_EQ(kh_read_file(dev, 4096, &data, &dlen), KH_ERR_FORMAT);
  alarm(0);
  /* no write and no delete through a symlinked directory */
  CHECK_EQ(kh_provider_put(p, "h/sub/new", "x", 1, false), KH_ERR_FORMAT);
  char *onew = at(outdir, "sub/new");
  struct stat st;
  CHECK(lstat(onew, &st) != 0);
  CHECK_EQ(kh_provider_del(p, "h/sub/obj"), KH_ERR_FORMAT);
  CHECK(lstat(oobj, &st) == 0);
  /* deleting a planted symlink removes the link, never its target */
  CHECK_OK(kh_provider_del(p, "h/link"));
  CHECK(lstat(link, &st) != 0);
  CHECK(lstat(secret, &st) == 0);
  CHECK(symlink(secret, link) == 0);
  /* listing shows only the regular file and does not enter the symlinked dir */
  listing l = {0};
  CHECK_OK(kh_provider_list(p, "h", collect, &l));
  CHECK_EQ(l.n, 1);
  CHECK(has(&l, "real", 4));
  memset(&l, 0, sizeof l);
  CHECK_EQ(kh_provider_list(p, "h/sub", collect, &l), KH_ERR_FORMAT);
  CHECK_EQ(l.n, 0);
  /* the real object is still served */
  kh_buf_reset(&b);
  CHECK_OK(kh_provider_read(p, "h/real", 4, &b));
  CHECK(b.len == 4 && !memcmp(b.data, "real", 4));

  free(secret);
  free(osub);
  free(oobj);
  free(onew);
  free(link);
  free(fifo);
  free(dev);
  free(sublink);
  kh_buf_release(&b);
  kh_provider_free(p);
}

/* A whole-object read refuses a size beyond the kind's bound before it
 * allocates: an 8 GiB sparse "object" fails at once, with nothing read. */
static void test_size_bound(void)
{
  kh_provider *p = NULL;
  CHECK_OK(kh_provider_dir_new(dir, &p));
  if (!p)
    return;
  CHECK_OK(kh_provider_put(p, "big/obj", "x", 1, false));
  char *path = at(dir, "big/obj");
  CHECK(truncate(path, (off_t)8 << 30) == 0);
  kh_buf b;
  kh_buf_init(&b, SIZE_MAX); /* no cap from the buffer: the kind's bound must hold */
  CHECK_EQ(kh_provider_read(p, "big/obj", KH_OBJMAX_SNAPSHOT, &b), KH_ERR_TOOBIG);
  CHECK(b.data == NULL && b.len == 0);
  CHECK(strstr(kh_errdetail(), "8589934592 bytes") != NULL);
  /* a ranged read of a small piece still works (packs are read in pieces) */
  CHECK_OK(kh_provider_get(p, "big/obj", 0, 1, &b));
  CHECK(b.len == 1 && b.data[0] == 'x');
  kh_buf_release(&b);
  unlink(path);
  free(path);
  kh_provider_free(p);
}

int main(void)
{
  if (!mkdtemp(dir) || !mkdtemp(outdir))
    return 1;
  RUN(test_provider);
  RUN(test_hostile_entries);
  RUN(test_size_bound);
  kh_remove_tree(outdir);
  kh_remove_tree(dir);
  return kh_test_done("test_provider");
}
