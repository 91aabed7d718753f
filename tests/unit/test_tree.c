/* Unit tests for lib/snapshot/tree: tree and snapshot codecs — round trips
 * (arbitrary name bytes, holes, large chunk lists, every node type), the
 * canonical-encoding property, and the decoder's rejections. */
#include "snapshot/tree.h"
#include "common/err.h"
#include "keyhold/vault.h"
#include "kh_test.h"

#include <sodium.h>
#include <stdlib.h>

#define CHECK_STR(a, b) do { const char *_a = (a), *_b = (b); kh_test_checks++; \
  if (strcmp(_a, _b)) { kh_test_failures++; fprintf(stderr, "%s:%d: CHECK_STR failed: %s = \"%s\", " \
  "expected \"%s\"\n", __FILE__, __LINE__, #a, _a, _b); } } while (0)

static kh_tnode node(const char *name, size_t nl, int type)
{
  kh_tnode t;
  memset(&t, 0, sizeof t);
  t.name = (const uint8_t *)name;
  t.namelen = nl;
  t.type = (uint8_t)type;
  t.mode = 0644;
  t.uid = 1000;
  t.gid = 1000;
  t.mtime_ns = 1700000000123456789ll;
  t.nlink = 1;
  t.ino = 42;
  t.dev = 2049;
  return t;
}

static int cmp_nodes(const void *a, const void *b)
{
  const kh_tnode *x = a, *y = b;
  return kh_name_cmp(x->name, x->namelen, y->name, y->namelen);
}

static int node_eq(const kh_tnode *a, const kh_tnode *b)
{
  if (a->namelen != b->namelen || memcmp(a->name, b->name, a->namelen) || a->type != b->type ||
      a->mode != b->mode || a->uid != b->uid || a->gid != b->gid || a->mtime_ns != b->mtime_ns ||
      a->size != b->size || a->nlink != b->nlink || a->ino != b->ino || a->dev != b->dev)
    return 0;
  switch (a->type) {
  case KH_NODE_FILE:
    if (a->nchunks != b->nchunks)
      return 0;
    for (size_t i = 0; i < a->nchunks; i++)
      if (memcmp(a->chunks[i].id, b->chunks[i].id, 32) || a->chunks[i].len != b->chunks[i].len)
        return 0;
    return 1;
  case KH_NODE_DIR: return !memcmp(a->subtree, b->subtree, 32);
  case KH_NODE_SYMLINK:
    return a->linklen == b->linklen && !memcmp(a->link, b->link, a->linklen);
  case KH_NODE_CHARDEV:
  case KH_NODE_BLOCKDEV: return a->rdev == b->rdev;
  default: return 1;
  }
}

static void test_name_cmp(void)
{
  CHECK(kh_name_cmp((const uint8_t *)"a", 1, (const uint8_t *)"b", 1) < 0);
  CHECK(kh_name_cmp((const uint8_t *)"a", 1, (const uint8_t *)"ab", 2) < 0); /* shorter first */
  CHECK(kh_name_cmp((const uint8_t *)"ab", 2, (const uint8_t *)"a", 1) > 0);
  CHECK(kh_name_cmp((const uint8_t *)"ab", 2, (const uint8_t *)"ab", 2) == 0);
  CHECK(kh_name_cmp((const uint8_t *)"\xff", 1, (const uint8_t *)"a", 1) > 0); /* unsigned */
}

static void test_tree_roundtrip(void)
{
  /* names: every byte value except '/' and NUL, as 1-byte names and inside
   * longer names; invalid UTF-8; a long name */
  enum { NSINGLE = 253 };
  static char singles[256];
  static char longname[KH_NAME_MAX];
  kh_tnode nodes[NSINGLE + 8];
  size_t n = 0;
  for (int c = 1, k = 0; c < 256; c++) {
    if (c == '/' || c == '.')
      continue;
    singles[k] = (char)c;
    nodes[n++] = node(&singles[k], 1, KH_NODE_FIFO);
    k++;
  }
  memset(longname, 'L', sizeof longname);
  nodes[n++] = node(longname, sizeof longname, KH_NODE_SOCKET);
  nodes[n++] = node("...", 3, KH_NODE_DIR);
  memset(nodes[n - 1].subtree, 0x5d, 32);
  nodes[n++] = node(".hidden", 7, KH_NODE_SYMLINK);
  nodes[n - 1].link = (const uint8_t *)"../t\0a\xff/rget";
  nodes[n - 1].linklen = 12;
  nodes[n++] = node("\xff\xfe bad utf8 \x80", 13, KH_NODE_CHARDEV);
  nodes[n - 1].rdev = 0x0501;
  nodes[n++] = node("blk", 3, KH_NODE_BLOCKDEV);
  nodes[n - 1].rdev = UINT64_MAX;
  /* a big sparse file: 100000 chunks with holes */
  size_t nch = 100000;
  kh_chunkref *ch = calloc(nch, sizeof *ch);
  uint64_t sum = 0;
  for (size_t i = 0; i < nch; i++) {
    if (i % 7) /* every 7th is a hole (all-zero id) */
      randombytes_buf(ch[i].id, 32);
    ch[i].len = 1 + randombytes_uniform(1u << 22);
    sum += ch[i].len;
  }
  nodes[n++] = node("big.img", 7, KH_NODE_FILE);
  nodes[n - 1].chunks = ch;
  nodes[n - 1].nchunks = nch;
  nodes[n - 1].size = sum;
  nodes[n - 1].mode = 07777;
  nodes[n - 1].uid = UINT32_MAX;
  nodes[n - 1].gid = 0;
  nodes[n - 1].mtime_ns = -1234567890123ll; /* before 1970 */
  nodes[n - 1].nlink = 3;
  nodes[n++] = node("empty", 5, KH_NODE_FILE); /* zero chunks, size 0 */
  qsort(nodes, n, sizeof nodes[0], cmp_nodes);

  kh_buf enc;
  kh_buf_init(&enc, 64u << 20);
  CHECK_OK(kh_tree_encode(nodes, n, &enc));
  kh_tree t;
  CHECK_OK(kh_tree_decode(enc.data, enc.len, &t));
  CHECK_EQ(t.n, n);
  int bad = 0;
  for (size_t i = 0; i < n && i < t.n; i++)
    bad += !node_eq(&nodes[i], &t.nodes[i]);
  CHECK_EQ(bad, 0);
  /* decoded names point into the tree's own copy, not the input */
  CHECK(t.n == 0 || !(t.nodes[0].name >= enc.data && t.nodes[0].name < enc.data + enc.len));
  /* find every name, and some absent ones */
  for (size_t i = 0; i < n; i++)
    bad += kh_tree_find(&t, nodes[i].name, nodes[i].namelen) != &t.nodes[i];
  CHECK_EQ(bad, 0);
  CHECK(kh_tree_find(&t, (const uint8_t *)"zz-absent", 9) == NULL);
  CHECK(kh_tree_find(&t, (const uint8_t *)"bi", 2) == NULL);
  const kh_tnode *big = kh_tree_find(&t, (const uint8_t *)"big.img", 7);
  CHECK(big && big->nchunks == nch && big->chunks[7].id[0] == 0 &&
        !memcmp(big->chunks[7].id, (uint8_t[32]){0}, 32));
  /* canonical: re-encoding gives the same bytes */
  kh_buf enc2;
  kh_buf_init(&enc2, 64u << 20);
  CHECK_OK(kh_tree_encode(t.nodes, t.n, &enc2));
  CHECK_EQ(enc2.len, enc.len);
  CHECK(enc2.len == enc.len && !memcmp(enc2.data, enc.data, enc.len));
  kh_tree_release(&t);
  CHECK(t.nodes == NULL && t.n == 0);
  kh_buf_release(&enc);
  kh_buf_release(&enc2);
  free(ch);

  /* the empty tree */
  kh_buf_init(&enc, 64);
  CHECK_OK(kh_tree_encode(NULL, 0, &enc));
  CHECK_OK(kh_tree_decode(enc.data, enc.len, &t));
  CHECK_EQ(t.n, 0);
  kh_tree_release(&t);
  kh_buf_release(&enc);
}

/* Smallest nodes: a directory holding only a FIFO or a socket with a
 * one-byte name (18 bytes per node). */
static void test_tree_minimal_nodes(void)
{
  kh_tnode nodes[2] = {node("p", 1, KH_NODE_FIFO), node("s", 1, KH_NODE_SOCKET)};
  for (size_t n = 1; n <= 2; n++) {
    kh_tnode one[2];
    memcpy(one, nodes, sizeof one);
    for (size_t i = 0; i < n; i++) {
      one[i].mode = 0;
      one[i].uid = one[i].gid = 0;
      one[i].nlink = one[i].ino = one[i].dev = 0;
    }
    kh_buf enc;
    kh_buf_init(&enc, 1024);
    CHECK_OK(kh_tree_encode(one, n, &enc));
    kh_tree t;
    kh_err e = kh_tree_decode(enc.data, enc.len, &t);
    if (e)
      fprintf(stderr, "   BUG: a valid tree of %zu minimal FIFO/socket node(s) (%zu bytes) "
                      "does not decode\n", n, enc.len);
    CHECK_OK(e);
    CHECK_EQ(t.n, e ? 0 : n);
    kh_tree_release(&t);
    kh_buf_release(&enc);
  }
}

static kh_err encode_one(kh_tnode a, kh_buf *enc) { return kh_tree_encode(&a, 1, enc); }

static kh_err decode_buf(const kh_buf *b)
{
  kh_tree t;
  kh_err e = kh_tree_decode(b->data, b->len, &t);
  kh_tree_release(&t);
  return e;
}

/* A tree encoded by hand (the encoder refuses bad names): optionally a
 * FIFO named "\x01" first, then a directory with the given name. */
static void raw_tree(kh_buf *b, int lead, const char *name, size_t nl)
{
  static const uint8_t sub[32] = {7};
  kh_buf_reset(b);
  kh_buf_append(b, "KHTR1", 5);
  kh_buf_put_uvar(b, (uint64_t)(lead + 1));
  for (int i = 0; i <= lead; i++) {
    int dir = i == lead;
    if (dir)
      kh_buf_put_lbytes(b, name, nl);
    else
      kh_buf_put_lbytes(b, "\x01", 1);
    kh_buf_put_u8(b, dir ? KH_NODE_DIR : KH_NODE_FIFO);
    kh_buf_put_uvar(b, 0755);
    kh_buf_put_uvar(b, 0);
    kh_buf_put_uvar(b, 0);
    kh_buf_put_u64(b, 0);
    for (int k = 0; k < 4; k++)
      kh_buf_put_uvar(b, 0);
    if (dir)
      kh_buf_append(b, sub, 32);
  }
}

static void test_tree_rejects(void)
{
  kh_buf enc;
  kh_buf_init(&enc, 1 << 20);
  kh_tree t;
  /* bad names: the encoder refuses them, and a decoder given them (by a
   * hostile or buggy writer) rejects them with the same clear detail,
   * also after a valid first node and also for a directory (which restore
   * would descend into) */
  static const struct { const char *n; size_t l; } names[] = {
    {"", 0}, {".", 1}, {"..", 2}, {"a/b", 3}, {"/", 1}, {"a\0b", 3}, {"\0", 1}, {"ab/", 3},
    {"../x", 4}, {"/etc", 4},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    kh_clearerr();
    CHECK_EQ(encode_one(node(names[i].n, names[i].l, KH_NODE_DIR), &enc), KH_ERR_INVAL);
    CHECK_STR(kh_errdetail(),
              "tree: entry name is empty, \".\" or \"..\", or contains '/' or NUL");
    for (int lead = 0; lead < 2; lead++) {
      raw_tree(&enc, lead, names[i].n, names[i].l);
      kh_clearerr();
      CHECK_EQ(kh_tree_decode(enc.data, enc.len, &t), KH_ERR_FORMAT);
      CHECK_STR(kh_errdetail(), "malformed tree: entry name is empty, \".\" or \"..\", or "
                                "contains '/' or NUL");
      CHECK(t.nodes == NULL && t.raw == NULL && t.refs == NULL && t.n == 0);
    }
  }
  /* the same bytes with a valid name decode: the rejection is the name's */
  raw_tree(&enc, 1, "x.", 2);
  CHECK_OK(decode_buf(&enc));
  raw_tree(&enc, 0, "...", 3);
  CHECK_OK(decode_buf(&enc));
  /* unsorted and duplicate names */
  kh_tnode two[2] = {node("b", 1, KH_NODE_FIFO), node("a", 1, KH_NODE_FIFO)};
  CHECK_OK(kh_tree_encode(two, 2, &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  two[1] = node("b", 1, KH_NODE_FIFO);
  CHECK_OK(kh_tree_encode(two, 2, &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  two[0] = node("ab", 2, KH_NODE_FIFO);
  two[1] = node("a", 1, KH_NODE_FIFO); /* longer before its prefix */
  CHECK_OK(kh_tree_encode(two, 2, &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  two[0] = node("a", 1, KH_NODE_FIFO);
  two[1] = node("ab", 2, KH_NODE_FIFO);
  CHECK_OK(kh_tree_encode(two, 2, &enc));
  CHECK_OK(decode_buf(&enc));
  /* size != sum of chunk lengths (both ways), and overflowing sums */
  kh_chunkref ch[2] = {{{1}, 100}, {{2}, 50}};
  kh_tnode f = node("f", 1, KH_NODE_FILE);
  f.chunks = ch;
  f.nchunks = 2;
  f.size = 150;
  CHECK_OK(encode_one(f, &enc));
  CHECK_OK(decode_buf(&enc));
  f.size = 149;
  CHECK_OK(encode_one(f, &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  f.size = 151;
  CHECK_OK(encode_one(f, &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  ch[0].len = UINT64_MAX;
  ch[1].len = 151; /* wraps to 150 */
  f.size = 150;
  CHECK_OK(encode_one(f, &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  f.nchunks = 0;
  f.size = 1;
  CHECK_OK(encode_one(f, &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  /* mode, uid, gid, type out of range */
  kh_tnode x = node("x", 1, KH_NODE_FIFO);
  x.mode = 010000;
  CHECK_OK(encode_one(x, &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  x = node("x", 1, 0);
  CHECK_OK(encode_one(x, &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  x = node("x", 1, 8);
  CHECK_OK(encode_one(x, &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  /* uid above 32 bits: patch the encoding by hand */
  kh_buf h;
  kh_buf_init(&h, 256);
  kh_buf_append(&h, "KHTR1", 5);
  kh_buf_put_uvar(&h, 1);
  kh_buf_put_lbytes(&h, "x", 1);
  kh_buf_put_u8(&h, KH_NODE_FIFO);
  kh_buf_put_uvar(&h, 0644);
  kh_buf_put_uvar(&h, 1ull << 32); /* uid */
  kh_buf_put_uvar(&h, 0);
  kh_buf_put_u64(&h, 0);
  for (int i = 0; i < 4; i++)
    kh_buf_put_uvar(&h, 0);
  CHECK_EQ(kh_tree_decode(h.data, h.len, &t), KH_ERR_FORMAT);
  kh_buf_release(&h);
  /* name longer than KH_NAME_MAX */
  char *ln = malloc(KH_NAME_MAX + 1);
  memset(ln, 'n', KH_NAME_MAX + 1);
  CHECK_OK(encode_one(node(ln, KH_NAME_MAX + 1, KH_NODE_FIFO), &enc));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  CHECK_OK(encode_one(node(ln, KH_NAME_MAX, KH_NODE_DIR), &enc));
  CHECK_OK(decode_buf(&enc));
  free(ln);

  /* trailing garbage and every truncation of a valid tree */
  kh_tnode three[3] = {node("d", 1, KH_NODE_DIR), node("f", 1, KH_NODE_FILE),
                       node("l", 1, KH_NODE_SYMLINK)};
  ch[0].len = 10;
  ch[1].len = 20;
  three[1].chunks = ch;
  three[1].nchunks = 2;
  three[1].size = 30;
  three[2].link = (const uint8_t *)"target";
  three[2].linklen = 6;
  CHECK_OK(kh_tree_encode(three, 3, &enc));
  CHECK_OK(decode_buf(&enc));
  int bad = 0;
  for (size_t l = 0; l < enc.len; l++)
    bad += kh_tree_decode(enc.data, l, &t) != KH_ERR_FORMAT || t.nodes || t.n;
  CHECK_EQ(bad, 0);
  CHECK_OK(kh_buf_put_u8(&enc, 0));
  CHECK_EQ(decode_buf(&enc), KH_ERR_FORMAT);
  /* wrong magic; node count far beyond the data */
  static const uint8_t m1[] = "KHTR2\0", m2[] = "KHTR1\xff\xff\xff\xff\x0f";
  CHECK_EQ(kh_tree_decode(m1, 6, &t), KH_ERR_FORMAT);
  CHECK_EQ(kh_tree_decode(m2, sizeof m2 - 1, &t), KH_ERR_FORMAT);
  CHECK_EQ(kh_tree_decode(NULL, 0, &t), KH_ERR_FORMAT);
  kh_buf_release(&enc);
}

static void test_snap(void)
{
  char *paths[] = {"/home/user", "/etc", "/weird \xff path"};
  kh_snap s = {.time_ns = 1700000000987654321ll, .host = "host.example", .paths = paths,
               .npaths = 3, .has_parent = true, .counter = 77, .files = 12345,
               .bytes = 1ull << 40};
  memset(s.parent, 0x11, 32);
  memset(s.tree, 0x22, 32);
  memset(s.device, 0x33, 16);
  kh_buf enc, enc2;
  kh_buf_init(&enc, 1 << 20);
  kh_buf_init(&enc2, 1 << 20);
  CHECK_OK(kh_snap_encode(&s, &enc));
  kh_snap d;
  CHECK_OK(kh_snap_decode(enc.data, enc.len, &d));
  CHECK(d.time_ns == s.time_ns);
  CHECK(d.host && !strcmp(d.host, "host.example"));
  CHECK_EQ(d.npaths, 3);
  for (size_t i = 0; i < 3 && i < d.npaths; i++)
    CHECK(!strcmp(d.paths[i], paths[i]));
  CHECK(d.has_parent);
  CHECK_MEM(d.parent, s.parent, 32);
  CHECK_MEM(d.tree, s.tree, 32);
  CHECK_MEM(d.device, s.device, 16);
  CHECK(d.counter == 77 && d.files == 12345 && d.bytes == 1ull << 40);
  CHECK_OK(kh_snap_encode(&d, &enc2));
  CHECK(enc2.len == enc.len && !memcmp(enc2.data, enc.data, enc.len));
  kh_snap_release(&d);
  CHECK(d.host == NULL && d.paths == NULL);

  /* every truncation and trailing garbage */
  int bad = 0;
  for (size_t l = 0; l < enc.len; l++) {
    bad += kh_snap_decode(enc.data, l, &d) != KH_ERR_FORMAT || d.host || d.paths;
  }
  CHECK_EQ(bad, 0);
  kh_buf_put_u8(&enc, 0);
  CHECK_EQ(kh_snap_decode(enc.data, enc.len, &d), KH_ERR_FORMAT);

  /* no parent, no paths, NULL host (encodes as "") */
  kh_snap e = {.time_ns = -5, .host = NULL, .npaths = 0, .has_parent = false};
  CHECK_OK(kh_snap_encode(&e, &enc));
  CHECK_OK(kh_snap_decode(enc.data, enc.len, &d));
  CHECK(d.host && d.host[0] == 0 && d.npaths == 0 && !d.has_parent && d.time_ns == -5);
  kh_snap_release(&d);
  /* has_parent other than 0/1 */
  size_t hp_off = 5 + 8 + 1 + 1; /* magic, time, host "", npaths 0 */
  CHECK_EQ(enc.data[hp_off], 0);
  enc.data[hp_off] = 2;
  CHECK_EQ(kh_snap_decode(enc.data, enc.len, &d), KH_ERR_FORMAT);
  enc.data[hp_off] = 0;
  /* NUL inside host or a path */
  char *np[] = {"a"};
  kh_snap f = {.host = "h", .paths = np, .npaths = 1};
  CHECK_OK(kh_snap_encode(&f, &enc));
  CHECK_OK(kh_snap_decode(enc.data, enc.len, &d));
  kh_snap_release(&d);
  size_t host_off = 5 + 8 + 1, path_off = 5 + 8 + 2 + 1 + 1;
  CHECK_EQ(enc.data[host_off], 'h');
  CHECK_EQ(enc.data[path_off], 'a');
  enc.data[host_off] = 0;
  CHECK_EQ(kh_snap_decode(enc.data, enc.len, &d), KH_ERR_FORMAT);
  enc.data[host_off] = 'h';
  enc.data[path_off] = 0;
  CHECK_EQ(kh_snap_decode(enc.data, enc.len, &d), KH_ERR_FORMAT);
  /* wrong magic */
  enc.data[path_off] = 'a';
  enc.data[4] = '2';
  CHECK_EQ(kh_snap_decode(enc.data, enc.len, &d), KH_ERR_FORMAT);
  /* huge path count */
  kh_buf_reset(&enc);
  kh_buf_append(&enc, "KHSN1", 5);
  kh_buf_put_u64(&enc, 0);
  kh_buf_put_str(&enc, "h");
  kh_buf_put_uvar(&enc, 1ull << 40);
  CHECK_EQ(kh_snap_decode(enc.data, enc.len, &d), KH_ERR_FORMAT);
  kh_buf_release(&enc);
  kh_buf_release(&enc2);
}

/* Tags (backup --tag) are an optional trailing field: a snapshot without
 * tags encodes exactly as before tags existed, one with tags round-trips,
 * and malformed tag fields are rejected (docs/format.md §9). */
static void test_snap_tags(void)
{
  char *paths[] = {"/p"}, *tags[] = {"daily", "work \xc3\xa9"};
  kh_snap s = {.time_ns = 1, .host = "h", .paths = paths, .npaths = 1, .counter = 3};
  kh_buf plain, enc, enc2;
  kh_buf_init(&plain, 1 << 16);
  kh_buf_init(&enc, 1 << 16);
  kh_buf_init(&enc2, 1 << 16);
  CHECK_OK(kh_snap_encode(&s, &plain));
  /* the pre-tags layout: the body ends with files and bytes */
  CHECK_EQ(plain.len, 5 + 8 + 2 + 1 + 3 + 1 + 32 + 16 + 8 + 1 + 1);
  kh_snap d;
  CHECK_OK(kh_snap_decode(plain.data, plain.len, &d));
  CHECK(d.ntags == 0 && d.tags == NULL);
  kh_snap_release(&d);

  s.tags = tags;
  s.ntags = 2;
  CHECK_OK(kh_snap_encode(&s, &enc));
  CHECK_EQ(enc.len, plain.len + 1 + 1 + 6 + 8);
  CHECK_MEM(enc.data, plain.data, plain.len);
  CHECK_EQ(enc.data[plain.len], 2);
  CHECK_OK(kh_snap_decode(enc.data, enc.len, &d));
  CHECK_EQ(d.ntags, 2);
  if (d.ntags == 2)
    CHECK(!strcmp(d.tags[0], "daily") && !strcmp(d.tags[1], tags[1]));
  CHECK_OK(kh_snap_encode(&d, &enc2));
  CHECK(enc2.len == enc.len && !memcmp(enc2.data, enc.data, enc.len));
  kh_snap_release(&d);
  CHECK(d.tags == NULL && d.ntags == 0);
  /* with the "original" field too: original comes first */
  s.has_original = true;
  CHECK_OK(kh_snap_encode(&s, &enc));
  CHECK_OK(kh_snap_decode(enc.data, enc.len, &d));
  CHECK(d.has_original && d.ntags == 2);
  kh_snap_release(&d);
  s.has_original = false;
  /* every truncation inside the tags field fails cleanly */
  CHECK_OK(kh_snap_encode(&s, &enc));
  int bad = 0;
  for (size_t l = plain.len + 1; l < enc.len; l++)
    bad += kh_snap_decode(enc.data, l, &d) != KH_ERR_FORMAT || d.tags || d.host;
  CHECK_EQ(bad, 0);
  /* zero tags, an empty tag, a NUL in a tag, a field twice or out of
   * order, an unknown field */
  static const uint8_t tails[][6] = {{2, 0}, {2, 1, 0}, {2, 1, 1, 0}, {2, 1, 1, 'a', 2, 0},
                                     {4}, {0}};
  static const size_t tlen[] = {2, 3, 4, 6, 1, 1};
  for (size_t i = 0; i < sizeof tlen / sizeof tlen[0]; i++) {
    kh_buf_reset(&enc2);
    kh_buf_append(&enc2, plain.data, plain.len);
    kh_buf_append(&enc2, tails[i], tlen[i]);
    CHECK_ERR(kh_snap_decode(enc2.data, enc2.len, &d), KH_ERR_FORMAT);
  }
  /* encoding refuses an empty tag */
  char *empty[] = {""};
  s.tags = empty;
  s.ntags = 1;
  CHECK_ERR(kh_snap_encode(&s, &enc), KH_ERR_INVAL);
  kh_buf_release(&plain);
  kh_buf_release(&enc);
  kh_buf_release(&enc2);
}

/* docs/format.md §8 "ext": flags and extended attributes.  A node without
 * them is encoded exactly as before the group existed (so old trees decode
 * and trees dedup across versions); a node with them round-trips; the
 * decoder refuses every non-canonical or out-of-bounds form. */
static void test_tree_xattrs(void)
{
  /* an old-format tree, byte by byte: one fifo "f" */
  static const uint8_t old[] = {'K', 'H', 'T', 'R', '1', 1, 1, 'f', 6, 0x80, 0x03, 0, 0,
                                0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
  kh_tree t;
  CHECK_OK(kh_tree_decode(old, sizeof old, &t));
  CHECK(t.n == 1 && t.nodes[0].type == KH_NODE_FIFO && t.nodes[0].mode == 0600 &&
        t.nodes[0].flags == 0 && t.nodes[0].nxattr == 0 && t.nodes[0].xattrs == NULL);
  kh_buf enc;
  kh_buf_init(&enc, 1 << 20);
  CHECK_OK(kh_tree_encode(t.nodes, t.n, &enc));
  CHECK(enc.len == sizeof old && !memcmp(enc.data, old, sizeof old));
  kh_tree_release(&t);

  /* a file and a directory with attributes, a symlink without */
  kh_buf xa, xd;
  kh_buf_init(&xa, 1 << 20);
  kh_buf_init(&xd, 1 << 20);
  static const uint8_t acl[] = {2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff};
  CHECK_OK(kh_buf_put_lbytes(&xa, "system.posix_acl_access", 23));
  CHECK_OK(kh_buf_put_lbytes(&xa, acl, sizeof acl));
  CHECK_OK(kh_buf_put_lbytes(&xa, "user.a", 6));
  CHECK_OK(kh_buf_put_lbytes(&xa, "", 0)); /* an empty value */
  CHECK_OK(kh_buf_put_lbytes(&xa, "user.b", 6));
  CHECK_OK(kh_buf_put_lbytes(&xa, "\x00\xff", 2)); /* any value bytes */
  CHECK_OK(kh_buf_put_lbytes(&xd, "user.d", 6));
  CHECK_OK(kh_buf_put_lbytes(&xd, "v", 1));
  kh_tnode n[3] = {node("d", 1, KH_NODE_DIR), node("f", 1, KH_NODE_FILE), node("l", 1, KH_NODE_SYMLINK)};
  n[0].flags = KH_FLAG_NODUMP;
  n[0].xattrs = xd.data;
  n[0].xattrlen = xd.len;
  n[0].nxattr = 1;
  n[1].flags = KH_FLAG_APPEND | KH_FLAG_IMMUTABLE;
  n[1].xattrs = xa.data;
  n[1].xattrlen = xa.len;
  n[1].nxattr = 3;
  n[2].link = (const uint8_t *)"f";
  n[2].linklen = 1;
  CHECK_OK(kh_tree_encode(n, 3, &enc));
  CHECK_OK(kh_tree_decode(enc.data, enc.len, &t));
  CHECK(t.n == 3);
  if (t.n == 3) {
    CHECK(t.nodes[0].type == KH_NODE_DIR && t.nodes[0].flags == KH_FLAG_NODUMP &&
          t.nodes[0].nxattr == 1 && t.nodes[0].xattrlen == xd.len &&
          !memcmp(t.nodes[0].xattrs, xd.data, xd.len));
    CHECK(t.nodes[1].type == KH_NODE_FILE && t.nodes[1].flags == 3 && t.nodes[1].nxattr == 3 &&
          t.nodes[1].xattrlen == xa.len && !memcmp(t.nodes[1].xattrs, xa.data, xa.len));
    CHECK(t.nodes[2].type == KH_NODE_SYMLINK && t.nodes[2].nxattr == 0);
    size_t off = 0, nl, vl, k = 0;
    const uint8_t *nm, *val;
    while (kh_xattr_next(t.nodes[1].xattrs, t.nodes[1].xattrlen, &off, &nm, &nl, &val, &vl)) {
      if (k == 0)
        CHECK(nl == 23 && !memcmp(nm, "system.posix_acl_access", 23) && vl == sizeof acl &&
              !memcmp(val, acl, vl));
      if (k == 1)
        CHECK(nl == 6 && !memcmp(nm, "user.a", 6) && vl == 0);
      if (k == 2)
        CHECK(nl == 6 && !memcmp(nm, "user.b", 6) && vl == 2 && !memcmp(val, "\x00\xff", 2));
      k++;
    }
    CHECK(k == 3);
  }
  kh_buf enc2;
  kh_buf_init(&enc2, 1 << 20);
  CHECK_OK(kh_tree_encode(t.nodes, t.n, &enc2));
  CHECK(enc2.len == enc.len && !memcmp(enc2.data, enc.data, enc.len));
  kh_tree_release(&t);

  /* the writer refuses what the reader would */
  kh_tnode bad = n[2];
  bad.flags = KH_FLAG_IMMUTABLE; /* on a symlink */
  CHECK(kh_tree_encode(&bad, 1, &enc2) == KH_ERR_INVAL);
  bad = n[1];
  bad.flags = 8; /* an unknown flag */
  CHECK(kh_tree_encode(&bad, 1, &enc2) == KH_ERR_INVAL);
  bad = n[1];
  bad.nxattr = 2; /* count does not match the list */
  CHECK(kh_tree_encode(&bad, 1, &enc2) == KH_ERR_INVAL);

  /* the decoder: a tree of one file "f" (no chunks) with a hand-made ext */
  struct {
    const char *what;
    uint64_t flags, n;
    const char *names[3];
    size_t vlen;
    bool ok;
  } cases[] = {
      {"flags only", KH_FLAG_NODUMP, 0, {NULL}, 0, true},
      {"one xattr", 0, 1, {"user.x"}, 3, true},
      {"largest value", 0, 1, {"user.x"}, KH_XATTR_VALUE_MAX, true},
      {"empty ext", 0, 0, {NULL}, 0, false},
      {"unknown flag", 16, 0, {NULL}, 0, false},
      {"unsorted", 0, 2, {"user.b", "user.a"}, 1, false},
      {"duplicate", 0, 2, {"user.a", "user.a"}, 1, false},
      {"empty name", 0, 1, {""}, 1, false},
      {"NUL in name", 0, 1, {"user\0x"}, 1, false},
      {"value too long", 0, 1, {"user.x"}, KH_XATTR_VALUE_MAX + 1, false},
      {"count beyond the list", 0, 2, {"user.x"}, 1, false},
  };
  uint8_t *val = calloc(1, KH_XATTR_VALUE_MAX + 1);
  CHECK(val != NULL);
  for (size_t i = 0; val && i < sizeof cases / sizeof cases[0]; i++) {
    kh_buf b;
    kh_buf_init(&b, 1 << 20);
    kh_tnode f = node("f", 1, KH_NODE_FILE);
    CHECK_OK(kh_tree_encode(&f, 1, &b));
    b.data[8] |= 0x80; /* the type byte: "KHTR1", count, name length, name */
    CHECK_OK(kh_buf_put_uvar(&b, cases[i].flags));
    CHECK_OK(kh_buf_put_uvar(&b, cases[i].n));
    for (size_t k = 0; k < 3 && cases[i].names[k]; k++) {
      size_t nl = strcmp(cases[i].names[k], "user") ? strlen(cases[i].names[k]) : 6;
      CHECK_OK(kh_buf_put_lbytes(&b, cases[i].names[k], nl));
      CHECK_OK(kh_buf_put_lbytes(&b, val, cases[i].vlen));
    }
    kh_err e = kh_tree_decode(b.data, b.len, &t);
    if ((e == KH_OK) != cases[i].ok)
      fprintf(stderr, "case '%s': decode returned %d\n", cases[i].what, (int)e);
    CHECK((e == KH_OK) == cases[i].ok);
    if (!e)
      kh_tree_release(&t);
    else
      CHECK(e == KH_ERR_FORMAT && t.nodes == NULL && t.n == 0);
    kh_buf_release(&b);
  }
  free(val);
  kh_buf_release(&xa);
  kh_buf_release(&xd);
  kh_buf_release(&enc);
  kh_buf_release(&enc2);
}

/* kind 3 (keyhold copy): after the tags, id, device, counter (56 bytes),
 * canonical, optional. */
static void test_snap_copy_of(void)
{
  char *paths[] = {"/p"}, *tags[] = {"daily"};
  kh_snap s = {.time_ns = 1, .host = "h", .paths = paths, .npaths = 1, .counter = 3};
  kh_buf plain, enc, enc2;
  kh_buf_init(&plain, 1 << 16);
  kh_buf_init(&enc, 1 << 16);
  kh_buf_init(&enc2, 1 << 16);
  CHECK_OK(kh_snap_encode(&s, &plain));
  s.has_copy_of = true;
  memset(s.copy_of, 0xc5, 32);
  memset(s.copy_device, 0x5c, 16);
  s.copy_counter = 0x0102030405060708ull;
  CHECK_OK(kh_snap_encode(&s, &enc));
  CHECK_EQ(enc.len, plain.len + 1 + 56);
  CHECK_MEM(enc.data, plain.data, plain.len);
  CHECK_EQ(enc.data[plain.len], 3);
  kh_snap d;
  CHECK_OK(kh_snap_decode(enc.data, enc.len, &d));
  CHECK(d.has_copy_of && !memcmp(d.copy_of, s.copy_of, 32) && !d.has_original && !d.ntags);
  CHECK(!memcmp(d.copy_device, s.copy_device, 16) && d.copy_counter == s.copy_counter);
  CHECK_OK(kh_snap_encode(&d, &enc2));
  CHECK(enc2.len == enc.len && !memcmp(enc2.data, enc.data, enc.len));
  kh_snap_release(&d);
  /* with tags and original: kinds 1, 2, 3 in order */
  s.tags = tags;
  s.ntags = 1;
  s.has_original = true;
  CHECK_OK(kh_snap_encode(&s, &enc));
  CHECK_EQ(enc.data[enc.len - 57], 3);
  CHECK_OK(kh_snap_decode(enc.data, enc.len, &d));
  CHECK(d.has_copy_of && d.has_original && d.ntags == 1 && !memcmp(d.copy_of, s.copy_of, 32));
  kh_snap_release(&d);
  /* truncated, twice, or before the tags: malformed */
  int bad = 0;
  for (size_t l = enc.len - 56; l < enc.len; l++) /* the kind byte and part of the field */
    bad += kh_snap_decode(enc.data, l, &d) != KH_ERR_FORMAT;
  CHECK_EQ(bad, 0);
  kh_buf_reset(&enc2);
  kh_buf_append(&enc2, enc.data, enc.len);
  kh_buf_append(&enc2, enc.data + enc.len - 57, 57);
  CHECK_ERR(kh_snap_decode(enc2.data, enc2.len, &d), KH_ERR_FORMAT);
  s.ntags = 0;
  s.has_original = false;
  CHECK_OK(kh_snap_encode(&s, &enc)); /* plain | 3 | id */
  kh_buf_reset(&enc2);
  kh_buf_append(&enc2, enc.data, enc.len);
  kh_buf_append(&enc2, (const uint8_t[]){2, 1, 1, 'a'}, 4);
  CHECK_ERR(kh_snap_decode(enc2.data, enc2.len, &d), KH_ERR_FORMAT);
  kh_buf_release(&plain);
  kh_buf_release(&enc);
  kh_buf_release(&enc2);
}

int main(void)
{
  if (sodium_init() < 0)
    return 1;
  RUN(test_name_cmp);
  RUN(test_tree_roundtrip);
  RUN(test_tree_minimal_nodes);
  RUN(test_tree_rejects);
  RUN(test_tree_xattrs);
  RUN(test_snap);
  RUN(test_snap_tags);
  RUN(test_snap_copy_of);
  return kh_test_done("test_tree");
}
