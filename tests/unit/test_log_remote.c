/* Reading a log from elsewhere (keyhold/log.h "reading a log from
 * elsewhere"): the tile-path parser, logs opened through a kh_log_reader,
 * kh_tlog_refresh, kh_tlog_tile, and kh_tlog_open_url's refusals.  The
 * HTTP path end to end is tests/cli/t0301-keyholdd-log.sh. */
#include "kh_test.h"
#include "keyhold/log.h"
#include "common/fsutil.h"
#include "crypto/crypto.h"

#include <stdint.h>
#include <unistd.h>

static char tmpdir[256];
static char *skey, *vkey;

/* ---- tile paths ---- */

static void test_tile_ref(void)
{
  static const struct { const char *p; int level; uint64_t n; unsigned w; } ok[] = {
    {"tile/0/000", 0, 0, 0},
    {"tile/0/001", 0, 1, 0},
    {"tile/1/999.p/255", 1, 999, 255},
    {"tile/0/x001/000", 0, 1000, 0},
    {"tile/2/x001/x234/067.p/8", 2, 1234067, 8},
    {"tile/entries/000.p/1", -1, 0, 1},
    {"tile/entries/x123/456", -1, 123456, 0},
    {"tile/63/000", 63, 0, 0},
    {"tile/0/x018/x446/x744/x073/x709/x551/615", 0, UINT64_MAX, 0},
  };
  static const char *bad[] = {
    "", "tile", "tile/", "tile/0", "tile/0/", "tile/0/0", "tile/0/00", "tile/0/0000",
    "tile/00/000", "tile/01/000", "tile/64/000", "tile/-1/000", "tile/+1/000",
    "tile/0/x000/001", "tile/0/x000", "tile/0/x001", "tile/0/x001/", "tile/0/001/002",
    "tile/0/X001/002", "tile/0/x01/002", "tile/0/000.p/0", "tile/0/000.p/256",
    "tile/0/000.p/04", "tile/0/000.p/", "tile/0/000.p", "tile/0/000.q/1", "tile/0/000/",
    "tile/0/000.p/1/", "tile/0/000 ", "/tile/0/000", "tiles/0/000", "tile/entries/",
    "tile/entries/0", "tile/entries/x000/000", "tile/entries.p/000", "tile/0/00a",
    "tile//000", "tile/0//000",
    /* 2^64 and beyond */
    "tile/0/x018/x446/x744/x073/x709/x551/616", "tile/0/x999/x999/x999/x999/x999/x999/999",
    "tile/0/x001/x000/x000/x000/x000/x000/x000/000",
  };
  kh_tile_ref t;
  char buf[KH_TILE_PATH_MAX + 1];
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int e = kh_tile_ref_parse(ok[i].p, strlen(ok[i].p), &t);
    CHECK_EQ(e, KH_OK);
    if (e) {
      fprintf(stderr, "  rejected %s\n", ok[i].p);
      continue;
    }
    CHECK_EQ(t.level, ok[i].level);
    CHECK(t.n == ok[i].n);
    CHECK_EQ(t.w, ok[i].w);
    CHECK_OK(kh_tile_ref_format(&t, buf, sizeof buf));
    CHECK(strcmp(buf, ok[i].p) == 0);
    for (size_t k = 0; k < strlen(ok[i].p); k++)
      if (kh_tile_ref_parse(ok[i].p, k, &t) == KH_OK) {
        /* only a prefix that is itself a canonical path ("tile/1/999.p/25"
         * of "tile/1/999.p/255") may parse, and as itself */
        char pre[KH_TILE_PATH_MAX + 1];
        CHECK_OK(kh_tile_ref_format(&t, pre, sizeof pre));
        CHECK(strlen(pre) == k && memcmp(pre, ok[i].p, k) == 0);
      }
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int e = kh_tile_ref_parse(bad[i], strlen(bad[i]), &t);
    CHECK_EQ(e, KH_ERR_FORMAT);
    if (e != KH_ERR_FORMAT)
      fprintf(stderr, "  accepted %s\n", bad[i]);
  }
  /* no read past len: the path is a prefix of a longer buffer */
  CHECK_OK(kh_tile_ref_parse("tile/0/001.p/25X", 15, &t));
  CHECK_EQ(t.w, 25);
  /* round trip over many indexes */
  int bad_rt = 0;
  for (int k = 0; k < 20000; k++) {
    kh_tile_ref a = {k % 9 - 1, 0, (unsigned)(k % 256)}, b;
    for (int j = 0; j < 8; j++)
      a.n = a.n << 8 | (uint64_t)(rand() & 255);
    a.n >>= (unsigned)(k % 64);
    bad_rt += kh_tile_ref_format(&a, buf, sizeof buf) != KH_OK;
    bad_rt += kh_tile_ref_parse(buf, strlen(buf), &b) != KH_OK;
    bad_rt += a.level != b.level || a.n != b.n || a.w != b.w;
  }
  CHECK_EQ(bad_rt, 0);
}

/* ---- a reader over a directory that counts and can corrupt ---- */

typedef struct mem_reader {
  char dir[512];
  int reads;
  int *freed;
  const char *corrupt; /* flip a byte of this file when read */
} mem_reader;

static kh_err mr_read(void *ctx, const char *rel, size_t max, uint8_t **out, size_t *len)
{
  mem_reader *m = ctx;
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", m->dir, rel);
  m->reads++;
  kh_err e = kh_read_file(p, max, out, len);
  if (!e && m->corrupt && strcmp(rel, m->corrupt) == 0 && *len)
    (*out)[*len / 2] ^= 1;
  return e;
}

static void mr_free(void *ctx)
{
  mem_reader *m = ctx;
  (*m->freed)++;
  free(m);
}

static kh_err append_n(kh_tlog *log, size_t n, uint64_t from)
{
  const void *p[300];
  size_t l[300];
  char text[300][16];
  for (size_t i = 0; i < n; i++) {
    l[i] = (size_t)snprintf(text[i], sizeof text[i], "e%llu", (unsigned long long)(from + i));
    p[i] = text[i];
  }
  return kh_tlog_append(log, p, l, n, NULL);
}

static void test_reader(void)
{
  char dir[512];
  kh_tlog *w = NULL, *r = NULL, *d = NULL;
  int freed = 0;
  snprintf(dir, sizeof dir, "%s/reader", tmpdir);
  CHECK_OK(kh_tlog_create(dir, "example.org/log", skey));
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &w));
  CHECK_OK(append_n(w, 300, 0));
  CHECK_OK(append_n(w, 7, 300));

  mem_reader *m = calloc(1, sizeof *m);
  snprintf(m->dir, sizeof m->dir, "%s", dir);
  m->freed = &freed;
  kh_log_reader rd = {mr_read, mr_free, m};
  CHECK_OK(kh_tlog_open_reader(&rd, "mem:reader", "example.org/log", vkey, &r));
  CHECK_OK(kh_tlog_open(dir, NULL, NULL, vkey, &d));
  CHECK(r != NULL && d != NULL);
  if (r && d) {
    kh_log_hash a, b;
    CHECK_EQ(kh_tlog_size(r), 307);
    kh_tlog_root(r, a);
    kh_tlog_root(d, b);
    CHECK_MEM(a, b, 32);
    CHECK_OK(kh_tlog_verify(r, NULL, NULL));
    CHECK(m->reads > 3);
    uint8_t *e = NULL;
    size_t el = 0;
    CHECK_OK(kh_tlog_entry(r, 42, &e, &el));
    CHECK(el == 3 && memcmp(e, "e42", 3) == 0);
    free(e);
  }
  kh_tlog_free(r);
  CHECK_EQ(freed, 1);
  kh_tlog_free(d);

  /* a corrupted partial tile or bundle is caught at open, a corrupted full
   * tile by verify; the reader is freed on failure too */
  static const char *bad_open[] = {"tile/0/001.p/51", "tile/entries/001.p/51",
                                   "tile/1/000.p/1", "checkpoint"};
  for (size_t i = 0; i < sizeof bad_open / sizeof bad_open[0]; i++) {
    m = calloc(1, sizeof *m);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    m->freed = &freed;
    m->corrupt = bad_open[i];
    kh_log_reader rb = {mr_read, mr_free, m};
    freed = 0;
    r = NULL;
    kh_err e = kh_tlog_open_reader(&rb, "mem:bad", NULL, vkey, &r);
    CHECK(e == KH_ERR_CORRUPT || e == KH_ERR_INVALID_PROOF || e == KH_ERR_FORMAT);
    CHECK(r == NULL);
    CHECK_EQ(freed, 1);
  }
  m = calloc(1, sizeof *m);
  snprintf(m->dir, sizeof m->dir, "%s", dir);
  m->freed = &freed;
  m->corrupt = "tile/0/000";
  kh_log_reader rc = {mr_read, mr_free, m};
  CHECK_OK(kh_tlog_open_reader(&rc, "mem:full", NULL, vkey, &r));
  CHECK_EQ(kh_tlog_verify(r, NULL, NULL), KH_ERR_CORRUPT);
  kh_tlog_free(r);
  /* wrong origin */
  m = calloc(1, sizeof *m);
  snprintf(m->dir, sizeof m->dir, "%s", dir);
  m->freed = &freed;
  kh_log_reader ro = {mr_read, mr_free, m};
  CHECK(kh_tlog_open_reader(&ro, "mem:origin", "other.org/log", vkey, &r) != KH_OK);
  kh_tlog_free(w);
}

/* ---- refresh and tiles, as the server uses them ---- */

static void test_refresh_tile(void)
{
  char dir[512], p[1024];
  kh_tlog *w = NULL, *r = NULL;
  bool changed = true;
  uint8_t *data = NULL;
  size_t len = 0;
  snprintf(dir, sizeof dir, "%s/refresh", tmpdir);
  CHECK_OK(kh_tlog_create(dir, "example.org/log", skey));
  CHECK_OK(kh_tlog_open(dir, NULL, skey, NULL, &w));
  CHECK_OK(kh_tlog_open(dir, NULL, NULL, vkey, &r));
  CHECK_OK(kh_tlog_refresh(r, &changed));
  CHECK(!changed);
  CHECK_EQ(kh_tlog_refresh(w, NULL), KH_ERR_STATE);
  CHECK_OK(append_n(w, 3, 0));
  kh_tile_ref t0 = {0, 0, 3};
  CHECK_EQ(kh_tlog_tile(r, &t0, &data, &len), KH_ERR_NOTFOUND); /* not seen yet */
  CHECK_OK(kh_tlog_refresh(r, &changed));
  CHECK(changed);
  CHECK_EQ(kh_tlog_size(r), 3);
  CHECK_OK(kh_tlog_tile(r, &t0, &data, &len));
  CHECK_EQ(len, 3 * 32);
  free(data);
  CHECK_OK(append_n(w, 260, 3)); /* size 263: tile 0/000 full, 0/001.p/7 */
  CHECK_OK(kh_tlog_refresh(r, &changed));
  CHECK(changed && kh_tlog_size(r) == 263);
  struct { kh_tile_ref t; int want; size_t len; } cases[] = {
    {{0, 0, 0}, KH_OK, 8192},
    {{-1, 0, 0}, KH_OK, 0},
    {{0, 1, 7}, KH_OK, 7 * 32},
    {{-1, 1, 7}, KH_OK, 0},
    {{1, 0, 1}, KH_OK, 32},
    {{0, 0, 3}, KH_ERR_NOTFOUND, 0},  /* an older partial width */
    {{0, 1, 6}, KH_ERR_NOTFOUND, 0},
    {{0, 1, 8}, KH_ERR_NOTFOUND, 0},  /* beyond the checkpoint */
    {{0, 1, 0}, KH_ERR_NOTFOUND, 0},
    {{1, 0, 0}, KH_ERR_NOTFOUND, 0},
    {{2, 0, 1}, KH_ERR_NOTFOUND, 0},
    {{8, 0, 0}, KH_ERR_NOTFOUND, 0},
    {{63, 0, 1}, KH_ERR_NOTFOUND, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    data = NULL;
    kh_err e = kh_tlog_tile(r, &cases[i].t, &data, &len);
    CHECK_EQ(e, cases[i].want);
    if (!e && cases[i].len)
      CHECK_EQ(len, cases[i].len);
    if (e)
      CHECK(data == NULL);
    free(data);
  }
  /* a tile of the wrong shape is refused */
  snprintf(p, sizeof p, "%s/tile/0/001.p/7", dir);
  CHECK(truncate(p, 100) == 0);
  kh_tile_ref t7 = {0, 1, 7};
  data = NULL;
  CHECK_EQ(kh_tlog_tile(r, &t7, &data, &len), KH_ERR_CORRUPT);
  CHECK(data == NULL);
  /* a refresh to a checkpoint whose tiles do not verify fails and leaves
   * the log as it was */
  CHECK_OK(append_n(w, 1, 263)); /* writes 0/001.p/8 */
  snprintf(p, sizeof p, "%s/tile/0/001.p/8", dir);
  CHECK(truncate(p, 8 * 32 - 1) == 0);
  kh_err e = kh_tlog_refresh(r, &changed);
  CHECK(e != KH_OK);
  CHECK(!changed);
  CHECK_EQ(kh_tlog_size(r), 263);
  size_t cl;
  CHECK(strstr(kh_tlog_checkpoint(r, &cl), "\n263\n") != NULL);
  kh_tlog_free(r);
  kh_tlog_free(w);
}

static void test_open_url_refusals(void)
{
  kh_tlog *r = (kh_tlog *)1;
  CHECK_EQ(kh_tlog_open_url("file:///etc/passwd", NULL, NULL, vkey, &r), KH_ERR_INVAL);
  CHECK(r == NULL);
  CHECK_EQ(kh_tlog_open_url("ftp://example.org/log", NULL, NULL, vkey, &r), KH_ERR_INVAL);
  /* nothing listens on port 1 of loopback */
  kh_http_opts o = {.connect_timeout_ms = 2000, .timeout_ms = 4000};
  CHECK_EQ(kh_tlog_open_url("http://127.0.0.1:1/log", &o, NULL, vkey, &r), KH_ERR_IO);
  CHECK(r == NULL);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(tmpdir, sizeof tmpdir, "%s/kh-test-logr-XXXXXX", base);
  if (!mkdtemp(tmpdir))
    return 1;
  kh_secret *sk = NULL;
  if (kh_note_keygen("example.org/log", KH_NOTE_ALG_ED25519, &sk, &vkey))
    return 1;
  skey = strndup((const char *)sk->bytes, sk->len);
  kh_secret_free(sk);
  srand(1);
  RUN(test_tile_ref);
  RUN(test_reader);
  RUN(test_refresh_tile);
  RUN(test_open_url_refusals);
  kh_remove_tree(tmpdir);
  free(skey);
  free(vkey);
  return kh_test_done("test_log_remote");
}
