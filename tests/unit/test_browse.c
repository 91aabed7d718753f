/* Unit tests for lib/repo/browse.c (kh_browse_*, the API under keyhold
 * mount): lookups along a path, listings in name order, file ranges at any
 * offset and length (across chunk boundaries, holes, end of file) equal to
 * the source with any cache size, and a damaged chunk failing the read. */
#pragma GCC diagnostic ignored "-Wunused-function" /* the fixture's other helpers */
#include "repo_fixture.h"
#include "crypto/crypto.h"

#include <sodium.h>

static fx F;
static char src[400];
static char snap[KH_SNAPSHOT_ID_HEX + 1];
#define BIG (9u << 20)
static uint8_t *big;

/* Walk the absolute path p from the snapshot root. */
static kh_err lookup_path(kh_browse *b, const char *p, kh_node_info *out)
{
  uint8_t dir[32];
  kh_err e = kh_browse_root(b, snap, dir);
  while (!e && *p) {
    while (*p == '/')
      p++;
    const char *end = strchr(p, '/');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if ((e = kh_browse_lookup(b, dir, (const uint8_t *)p, n, out)))
      break;
    memcpy(dir, out->tree, 32);
    p += n;
  }
  return e;
}

typedef struct names {
  char buf[1024];
  size_t len;
} names;

static int collect(const kh_node_info *n, void *ctx)
{
  names *s = ctx;
  if (s->len + n->pathlen + 2 < sizeof s->buf) {
    memcpy(s->buf + s->len, n->path, n->pathlen);
    s->len += n->pathlen;
    s->buf[s->len++] = ' ';
    s->buf[s->len] = 0;
  }
  return 0;
}

static void check_ranges(kh_browse *b)
{
  char p[512];
  snprintf(p, sizeof p, "%s/big.bin", src);
  kh_node_info n;
  CHECK_OK(lookup_path(b, p, &n));
  CHECK_EQ(n.type, KH_NODE_FILE);
  CHECK_EQ(n.size, BIG);
  kh_browse_file *f = NULL;
  CHECK_OK(kh_browse_file_open(b, &n, &f));
  if (!f)
    return;
  uint8_t *buf = malloc(BIG + 10);
  size_t got = 0;
  /* the whole file in one read, then pieces of awkward sizes */
  CHECK_OK(kh_browse_file_read(f, 0, buf, BIG + 10, &got));
  CHECK_EQ(got, BIG);
  CHECK(!memcmp(buf, big, BIG));
  uint32_t x = 12345;
  for (int i = 0; i < 200; i++) {
    x = x * 1103515245u + 12345u;
    uint64_t off = x % BIG;
    x = x * 1103515245u + 12345u;
    size_t len = 1 + x % (3u << 20); /* up to 3 MiB: crosses chunks */
    size_t want = off + len > BIG ? BIG - off : len;
    memset(buf, 0xAA, len);
    CHECK_OK(kh_browse_file_read(f, off, buf, len, &got));
    CHECK_EQ(got, want);
    CHECK(!memcmp(buf, big + off, want));
  }
  CHECK_OK(kh_browse_file_read(f, BIG, buf, 10, &got));
  CHECK_EQ(got, 0);
  CHECK_OK(kh_browse_file_read(f, BIG + 100, buf, 10, &got));
  CHECK_EQ(got, 0);
  CHECK_OK(kh_browse_file_read(f, BIG - 1, buf, 10, &got));
  CHECK_EQ(got, 1);
  CHECK_EQ(buf[0], big[BIG - 1]);
  kh_browse_file_free(f);
  free(buf);

  /* a sparse file: the hole reads as zeros, the data where it was */
  snprintf(p, sizeof p, "%s/sparse", src);
  CHECK_OK(lookup_path(b, p, &n));
  CHECK_OK(kh_browse_file_open(b, &n, &f));
  if (!f)
    return;
  uint8_t s[16];
  CHECK_OK(kh_browse_file_read(f, 2000000 - 4, s, 16, &got));
  CHECK_EQ(got, 16);
  CHECK(!memcmp(s, "\0\0\0\0island", 10));
  uint8_t z[4096], zero[4096] = {0};
  CHECK_OK(kh_browse_file_read(f, 100, z, sizeof z, &got));
  CHECK_EQ(got, sizeof z);
  CHECK(!memcmp(z, zero, sizeof z));
  kh_browse_file_free(f);
}

static void test_browse(size_t cache)
{
  kh_vault *v = NULL;
  kh_browse *b = NULL;
  CHECK_OK(fx_open(&F, &v));
  CHECK_OK(kh_vault_read_lock(v));
  CHECK_OK(kh_browse_new(v, cache, &b));
  if (!b)
    goto out;
  check_ranges(b);

  /* listings in name order, names only */
  kh_node_info n;
  CHECK_OK(lookup_path(b, src, &n));
  CHECK_EQ(n.type, KH_NODE_DIR);
  names s = {.len = 0};
  CHECK_OK(kh_browse_list(b, n.tree, collect, &s));
  CHECK(!strcmp(s.buf, "big.bin link sparse sub "));
  char p[512];
  snprintf(p, sizeof p, "%s/link", src);
  CHECK_OK(lookup_path(b, p, &n));
  CHECK_EQ(n.type, KH_NODE_SYMLINK);
  CHECK(n.linklen == 7 && !memcmp(n.link, "sub/one", 7));
  snprintf(p, sizeof p, "%s/sub/one", src);
  CHECK_OK(lookup_path(b, p, &n));
  CHECK_EQ(n.size, 4);
  CHECK_EQ(n.mode, 0640);
  kh_browse_file *f = NULL;
  char four[8];
  size_t got = 0;
  CHECK_OK(kh_browse_file_open(b, &n, &f));
  CHECK_OK(kh_browse_file_read(f, 0, four, sizeof four, &got));
  CHECK(got == 4 && !memcmp(four, "one\n", 4));
  kh_browse_file_free(f);

  /* errors */
  snprintf(p, sizeof p, "%s/nothing", src);
  CHECK_ERR(lookup_path(b, p, &n), KH_ERR_NOTFOUND);
  CHECK_OK(lookup_path(b, src, &n));
  f = NULL;
  CHECK_ERR(kh_browse_file_open(b, &n, &f), KH_ERR_INVAL);
  CHECK(f == NULL);
  uint8_t dir[32];
  CHECK_ERR(kh_browse_root(b, "1234", dir), KH_ERR_INVAL);
  CHECK_ERR(kh_browse_root(b, "00000000000000000000000000000000000000000000000000000000000000ff",
                           dir), KH_ERR_NOTFOUND);
out:
  kh_browse_free(b);
  kh_vault_read_unlock(v);
  kh_vault_free(v);
}

static void test_browse_default_cache(void) { test_browse(0); }
/* 1 byte: every chunk and listing evicts the previous one */
static void test_browse_tiny_cache(void) { test_browse(1); }

/* Flip one byte in the middle of every pack: reading the big file fails
 * with the authentication error, not with wrong bytes. */
static void test_damage(void)
{
  char data[400];
  snprintf(data, sizeof data, "%s/accounts", F.region);
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "find '%s' -path '*/data/*' -type f -size +1M | while read -r f; do "
           "python3 -c 'import sys; f=open(sys.argv[1],\"r+b\"); f.seek(1<<20); b=f.read(1); "
           "f.seek(1<<20); f.write(bytes([b[0]^1]))' \"$f\"; done", data);
  CHECK_EQ(system(cmd), 0);
  kh_vault *v = NULL;
  kh_browse *b = NULL;
  CHECK_OK(fx_open(&F, &v));
  CHECK_OK(kh_browse_new(v, 0, &b));
  char p[512];
  snprintf(p, sizeof p, "%s/big.bin", src);
  kh_node_info n;
  kh_browse_file *f = NULL;
  CHECK_OK(lookup_path(b, p, &n));
  CHECK_OK(kh_browse_file_open(b, &n, &f));
  uint8_t *buf = malloc(BIG);
  size_t got = 99;
  kh_err e = f ? kh_browse_file_read(f, 0, buf, BIG, &got) : KH_ERR_INVAL;
  CHECK_EQ(e, KH_ERR_AUTH);
  CHECK(got < BIG);
  CHECK(!memcmp(buf, big, got)); /* what was returned is authentic */
  free(buf);
  kh_browse_file_free(f);
  kh_browse_free(b);
  kh_vault_free(v);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  if (!fx_init(&F, "browse", "browse passcode")) {
    fprintf(stderr, "fixture setup failed: %s\n", kh_errdetail());
    return 1;
  }
  char p[512];
  snprintf(src, sizeof src, "%s/src", F.root);
  snprintf(p, sizeof p, "%s/sub", src);
  CHECK(mkdir(src, 0755) == 0 && mkdir(p, 0755) == 0);
  big = malloc(BIG);
  randombytes_buf(big, BIG);
  snprintf(p, sizeof p, "%s/big.bin", src);
  CHECK(fx_write(p, big, BIG));
  snprintf(p, sizeof p, "%s/sub/one", src);
  CHECK(fx_write(p, "one\n", 4));
  CHECK(chmod(p, 0640) == 0);
  snprintf(p, sizeof p, "%s/link", src);
  CHECK(symlink("sub/one", p) == 0);
  snprintf(p, sizeof p, "%s/sparse", src);
  int fd = open(p, O_WRONLY | O_CREAT, 0644);
  CHECK(fd >= 0 && ftruncate(fd, 5000000) == 0 && pwrite(fd, "island", 6, 2000000) == 6);
  if (fd >= 0)
    close(fd);

  kh_vault *v = NULL;
  kh_backup_result r;
  CHECK_OK(fx_open(&F, &v));
  CHECK_OK(fx_backup(v, src, &r));
  memcpy(snap, r.snapshot_id, sizeof snap);
  kh_vault_free(v);

  RUN(test_browse_default_cache);
  RUN(test_browse_tiny_cache);
  RUN(test_damage);
  free(big);
  fx_done(&F);
  return kh_test_done("test_browse");
}
