/* Unit tests for lib/chunk: keyed FastCDC determinism, key dependence, size
 * bounds and average, shift resistance, streaming, zero runs. */
#include "chunk/chunker.h"
#include "common/err.h"
#include "kh_test.h"

#include <sodium.h>
#include <stdlib.h>

typedef struct cuts {
  size_t *len;
  size_t n;
} cuts;

/* Chunk a whole buffer (everything available, eof). */
static cuts chunk_all(const kh_chunker *c, const uint8_t *p, size_t n)
{
  cuts r = {malloc((n / 64 + 2) * sizeof(size_t)), 0};
  size_t off = 0;
  while (off < n) {
    size_t l = kh_chunker_next(c, p + off, n - off, true);
    if (l == 0 || l > n - off)
      break; /* would loop forever: the checks below catch it */
    r.len[r.n++] = l;
    off += l;
  }
  return r;
}

/* Chunk by feeding windows of at most `win` bytes, as a streaming reader does. */
static cuts chunk_stream(const kh_chunker *c, const uint8_t *p, size_t n, size_t win)
{
  cuts r = {malloc((n / 64 + 2) * sizeof(size_t)), 0};
  size_t off = 0, avail = 0;
  while (off < n) {
    if (avail < n - off && avail < win)
      avail = n - off < win ? n - off : win;
    bool eof = off + avail == n;
    size_t l = kh_chunker_next(c, p + off, avail, eof);
    if (l == 0) {
      if (avail >= win || eof)
        break; /* no progress possible */
      avail += win / 3 + 1;
      if (avail > n - off)
        avail = n - off;
      continue;
    }
    r.len[r.n++] = l;
    off += l;
    avail -= l;
  }
  return r;
}

static size_t total(const cuts *c)
{
  size_t t = 0;
  for (size_t i = 0; i < c->n; i++)
    t += c->len[i];
  return t;
}

static int same_cuts(const cuts *a, const cuts *b)
{
  return a->n == b->n && memcmp(a->len, b->len, a->n * sizeof(size_t)) == 0;
}

static uint8_t secret_a[32], secret_b[32];

static void test_init_rejects(void)
{
  kh_chunker c;
  CHECK_EQ(kh_chunker_init(&c, secret_a, 1000, 3000, 8000), KH_ERR_INVAL);  /* avg not 2^k */
  CHECK_EQ(kh_chunker_init(&c, secret_a, 4096, 4096, 8192), KH_ERR_INVAL);  /* min == avg */
  CHECK_EQ(kh_chunker_init(&c, secret_a, 1024, 8192, 8192), KH_ERR_INVAL);  /* avg == max */
  CHECK_EQ(kh_chunker_init(&c, secret_a, 32, 4096, 8192), KH_ERR_INVAL);    /* min < 64 */
  CHECK_OK(kh_chunker_init(&c, secret_a, KH_CHUNK_MIN, KH_CHUNK_AVG, KH_CHUNK_MAX));
  CHECK_EQ(c.min, KH_CHUNK_MIN);
  CHECK_EQ(c.avg, KH_CHUNK_AVG);
  CHECK_EQ(c.max, KH_CHUNK_MAX);
  /* the gear table is a function of the secret only */
  kh_chunker d;
  CHECK_OK(kh_chunker_init(&d, secret_a, 64, 1024, 4096));
  CHECK_MEM(c.gear, d.gear, sizeof c.gear);
  kh_chunker_release(&d);
  static const kh_chunker zero;
  CHECK_MEM(&d, &zero, sizeof d); /* wiped */
  kh_chunker_release(&c);
}

static void test_default_sizes_random(void)
{
  size_t n = 64u << 20;
  uint8_t *data = malloc(n);
  randombytes_buf(data, n);
  kh_chunker a, b;
  CHECK_OK(kh_chunker_init(&a, secret_a, KH_CHUNK_MIN, KH_CHUNK_AVG, KH_CHUNK_MAX));
  CHECK_OK(kh_chunker_init(&b, secret_b, KH_CHUNK_MIN, KH_CHUNK_AVG, KH_CHUNK_MAX));
  cuts ca = chunk_all(&a, data, n), ca2 = chunk_all(&a, data, n), cb = chunk_all(&b, data, n);
  CHECK_EQ(total(&ca), n);
  CHECK_EQ(total(&cb), n);
  CHECK(same_cuts(&ca, &ca2)); /* deterministic */
  CHECK(!same_cuts(&ca, &cb)); /* key-dependent */
  int out = 0;
  for (size_t i = 0; i + 1 < ca.n; i++)
    out += ca.len[i] < KH_CHUNK_MIN || ca.len[i] > KH_CHUNK_MAX;
  CHECK_EQ(out, 0);
  CHECK(ca.n > 0 && ca.len[ca.n - 1] <= KH_CHUNK_MAX && ca.len[ca.n - 1] > 0);
  double avg = (double)n / (double)ca.n;
  fprintf(stderr, "   64 MiB: %zu chunks, average %.0f KiB (key b: %zu chunks)\n", ca.n,
          avg / 1024, cb.n);
  CHECK(avg >= KH_CHUNK_AVG / 2.0 && avg <= KH_CHUNK_AVG * 2.0);
  /* no chunk boundary of key a lines up with key b beyond chance */
  size_t shared = 0, ia = 0, ib = 0, oa = 0, ob = 0;
  while (ia < ca.n && ib < cb.n) {
    if (oa + ca.len[ia] == ob + cb.len[ib]) { shared++; oa += ca.len[ia++]; ob += cb.len[ib++]; }
    else if (oa + ca.len[ia] < ob + cb.len[ib]) oa += ca.len[ia++];
    else ob += cb.len[ib++];
  }
  CHECK(shared < ca.n / 4 + 1); /* the final cut (end of data) is always shared */
  free(ca.len);
  free(ca2.len);
  free(cb.len);
  free(data);
}

static void test_small_sizes_and_streaming(void)
{
  const uint32_t mn = 2048, av = 8192, mx = 32768;
  size_t n = 4u << 20;
  uint8_t *data = malloc(n);
  randombytes_buf(data, n);
  kh_chunker c;
  CHECK_OK(kh_chunker_init(&c, secret_a, mn, av, mx));
  cuts all = chunk_all(&c, data, n);
  CHECK_EQ(total(&all), n);
  int out = 0;
  for (size_t i = 0; i + 1 < all.n; i++)
    out += all.len[i] < mn || all.len[i] > mx;
  CHECK_EQ(out, 0);
  double avg = (double)n / (double)all.n;
  CHECK(avg >= av / 2.0 && avg <= av * 2.0);
  /* streaming in windows of max bytes, and of odd sizes, gives the same cuts */
  cuts s1 = chunk_stream(&c, data, n, mx), s2 = chunk_stream(&c, data, n, mx + 12345);
  CHECK(same_cuts(&all, &s1));
  CHECK(same_cuts(&all, &s2));
  free(s1.len);
  free(s2.len);
  /* the "need more data" contract */
  CHECK_EQ(kh_chunker_next(&c, data, mn, false), 0);
  CHECK_EQ(kh_chunker_next(&c, data, mn, true), mn);
  CHECK_EQ(kh_chunker_next(&c, data, 10, true), 10);
  CHECK_EQ(kh_chunker_next(&c, data, 0, true), 0);
  size_t first = all.len[0];
  CHECK_EQ(kh_chunker_next(&c, data, first, false), first); /* cut at the last byte */
  if (first > mn + 1)
    CHECK_EQ(kh_chunker_next(&c, data, first - 1, false), 0);
  CHECK(kh_chunker_next(&c, data, mx + 1000, false) <= mx);
  free(all.len);
  free(data);
}

static void test_shift_resistance(void)
{
  const uint32_t mn = 4096, av = 16384, mx = 65536;
  size_t n = 16u << 20, ins = 100;
  uint8_t *data = malloc(n), *edit = malloc(n + ins);
  randombytes_buf(data, n);
  memcpy(edit, data, 5000);
  randombytes_buf(edit + 5000, ins);
  memcpy(edit + 5000 + ins, data + 5000, n - 5000);
  kh_chunker c;
  CHECK_OK(kh_chunker_init(&c, secret_a, mn, av, mx));
  cuts a = chunk_all(&c, data, n), b = chunk_all(&c, edit, n + ins);
  /* ids: hash of the content of each chunk */
  uint8_t (*ida)[32] = malloc(a.n * 32), (*idb)[32] = malloc(b.n * 32);
  size_t off = 0;
  for (size_t i = 0; i < a.n; off += a.len[i++])
    crypto_generichash(ida[i], 32, data + off, a.len[i], NULL, 0);
  off = 0;
  for (size_t i = 0; i < b.n; off += b.len[i++])
    crypto_generichash(idb[i], 32, edit + off, b.len[i], NULL, 0);
  size_t kept = 0;
  for (size_t i = 0; i < b.n; i++)
    for (size_t j = 0; j < a.n; j++)
      if (!memcmp(idb[i], ida[j], 32)) {
        kept++;
        break;
      }
  fprintf(stderr, "   insertion: %zu of %zu chunks unchanged\n", kept, b.n);
  CHECK(b.n >= 100);
  CHECK(kept + 3 >= b.n); /* only the chunks around the edit change */
  free(ida);
  free(idb);
  free(a.len);
  free(b.len);
  free(data);
  free(edit);
}

static void test_zero_run(void)
{
  size_t n = 3 * (size_t)KH_CHUNK_MAX + 12345;
  uint8_t *z = calloc(1, n);
  kh_chunker c;
  CHECK_OK(kh_chunker_init(&c, secret_a, KH_CHUNK_MIN, KH_CHUNK_AVG, KH_CHUNK_MAX));
  cuts r = chunk_all(&c, z, n);
  CHECK_EQ(r.n, 4);
  for (size_t i = 0; i < 3 && i < r.n; i++)
    CHECK_EQ(r.len[i], KH_CHUNK_MAX);
  if (r.n == 4)
    CHECK_EQ(r.len[3], 12345);
  free(r.len);
  /* same for another key (no key may cut a zero run) */
  kh_chunker d;
  CHECK_OK(kh_chunker_init(&d, secret_b, KH_CHUNK_MIN, KH_CHUNK_AVG, KH_CHUNK_MAX));
  CHECK_EQ(kh_chunker_next(&d, z, n, true), KH_CHUNK_MAX);
  free(z);
}

int main(void)
{
  if (sodium_init() < 0)
    return 1;
  for (int i = 0; i < 32; i++) {
    secret_a[i] = (uint8_t)i;
    secret_b[i] = (uint8_t)(i + 1);
  }
  RUN(test_init_rejects);
  RUN(test_default_sizes_random);
  RUN(test_small_sizes_and_streaming);
  RUN(test_shift_resistance);
  RUN(test_zero_run);
  return kh_test_done("test_chunker");
}
