/* The snapshot filter (kh_snapshot_filter_match, docs/cli.md "Selecting
 * snapshots"): --host any of, --path the same set, --tag a,b all of one
 * entry, "" no tags. */
#include "kh_test.h"
#include "keyhold/vault.h"

#include <string.h>

static char *docs[] = {"/docs"}, *docs_photos[] = {"/photos", "/docs"};
static char *t_ab[] = {"a", "b"}, *t_a[] = {"a"};

static kh_snapshot_info snap(char *host, char **paths, size_t np, char **tags, size_t nt)
{
  kh_snapshot_info s;
  memset(&s, 0, sizeof s);
  s.host = host;
  s.paths = paths;
  s.npaths = np;
  s.tags = tags;
  s.ntags = nt;
  return s;
}

static void test_hosts(void)
{
  kh_snapshot_info s = snap("box", docs, 1, NULL, 0);
  const char *h1[] = {"other"}, *h2[] = {"other", "box"};
  kh_snapshot_filter f = {0};
  CHECK(kh_snapshot_filter_match(NULL, &s));
  CHECK(kh_snapshot_filter_match(&f, &s));
  f.hosts = h1;
  f.nhosts = 1;
  CHECK(!kh_snapshot_filter_match(&f, &s));
  f.hosts = h2;
  f.nhosts = 2;
  CHECK(kh_snapshot_filter_match(&f, &s));
  kh_snapshot_info nohost = snap(NULL, docs, 1, NULL, 0);
  CHECK(!kh_snapshot_filter_match(&f, &nohost));
}

static void test_paths_are_a_set(void)
{
  kh_snapshot_info one = snap("box", docs, 1, NULL, 0);
  kh_snapshot_info two = snap("box", docs_photos, 2, NULL, 0);
  const char *p1[] = {"/docs/"}, *p2[] = {"/docs", "/photos"}, *p3[] = {"/docs", "/docs"};
  kh_snapshot_filter f = {0};
  f.paths = p1; /* a trailing slash is ignored */
  f.npaths = 1;
  CHECK(kh_snapshot_filter_match(&f, &one));
  CHECK(!kh_snapshot_filter_match(&f, &two)); /* not "contains", as restic */
  f.paths = p2;
  f.npaths = 2;
  CHECK(!kh_snapshot_filter_match(&f, &one));
  CHECK(kh_snapshot_filter_match(&f, &two)); /* order does not matter */
  f.paths = p3; /* duplicates do not count */
  CHECK(kh_snapshot_filter_match(&f, &one));
}

static void test_tags(void)
{
  kh_snapshot_info ab = snap("box", docs, 1, t_ab, 2), a = snap("box", docs, 1, t_a, 1),
                   none = snap("box", docs, 1, NULL, 0);
  const char *both[] = {"a,b"}, *either[] = {"b", "a"}, *untagged[] = {""}, *bc[] = {"b,c"};
  kh_snapshot_filter f = {0};
  f.tags = both;
  f.ntags = 1;
  CHECK(kh_snapshot_filter_match(&f, &ab));
  CHECK(!kh_snapshot_filter_match(&f, &a));
  CHECK(!kh_snapshot_filter_match(&f, &none));
  f.tags = either;
  f.ntags = 2;
  CHECK(kh_snapshot_filter_match(&f, &ab) && kh_snapshot_filter_match(&f, &a));
  CHECK(!kh_snapshot_filter_match(&f, &none));
  f.tags = untagged;
  f.ntags = 1;
  CHECK(kh_snapshot_filter_match(&f, &none));
  CHECK(!kh_snapshot_filter_match(&f, &a));
  f.tags = bc;
  CHECK(!kh_snapshot_filter_match(&f, &ab)); /* "b,c" needs c too */
  /* all three kinds at once must all hold */
  const char *h[] = {"box"}, *p[] = {"/docs"};
  kh_snapshot_filter g = {h, 1, p, 1, both, 1};
  CHECK(kh_snapshot_filter_match(&g, &ab));
  CHECK(!kh_snapshot_filter_match(&g, &a));
}

int main(void)
{
  RUN(test_hosts);
  RUN(test_paths_are_a_set);
  RUN(test_tags);
  return kh_test_done("test_snapfilter");
}
