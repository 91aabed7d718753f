/* Unit tests for lib/common/pattern: the exclude pattern syntax of
 * docs/cli.md, with restic's documented examples. */
#include "common/pattern.h"
#include "common/err.h"
#include "kh_test.h"

#include <string.h>

/* Does the one pattern pat exclude path? */
static bool ex1(const char *pat, bool icase, const char *path)
{
  kh_pattern_set *s = NULL;
  bool r = false;
  if (kh_pattern_set_new(&s) || kh_pattern_set_add(s, pat, icase)) {
    CHECK(!"pattern compiles");
    goto out;
  }
  r = kh_pattern_set_excludes(s, path, strlen(path));
out:
  kh_pattern_set_free(s);
  return r;
}

static void test_component_globs(void)
{
  CHECK(ex1("*.go", false, "/home/user/src/main.go"));
  CHECK(!ex1("*.go", false, "/home/user/src/main.goo"));
  CHECK(!ex1("*.go", false, "/home/user/src/main.c"));
  CHECK(ex1("foo*", false, "/a/foobar"));
  CHECK(ex1("f?o", false, "/a/fxo"));
  CHECK(!ex1("f?o", false, "/a/fo"));
  CHECK(ex1("f?o", false, "/a/f\xc3\xa9o"));  /* ? is one UTF-8 character */
  CHECK(ex1("[abc].txt", false, "/b.txt"));
  CHECK(!ex1("[abc].txt", false, "/d.txt"));
  CHECK(ex1("[a-c]x", false, "/bx"));
  CHECK(ex1("[!a-c]x", false, "/dx"));
  CHECK(!ex1("[!a-c]x", false, "/bx"));
  CHECK(ex1("[^a-c]x", false, "/dx"));
  CHECK(ex1("[]]x", false, "/]x"));
  CHECK(ex1("a\\*b", false, "/a*b"));
  CHECK(!ex1("a\\*b", false, "/axb"));
  CHECK(ex1("*", false, "/anything"));
  CHECK(ex1("a*b*c", false, "/aXXbYYbZc"));
  CHECK(!ex1("a*b*c", false, "/aXXbYYbZ"));
  /* * never crosses a "/" */
  CHECK(!ex1("/a*c", false, "/ab/c"));
}

static void test_depth_and_anchoring(void)
{
  /* unanchored: at any depth, and everything below a match */
  CHECK(ex1("foo", false, "/foo"));
  CHECK(ex1("foo", false, "/a/b/foo"));
  CHECK(ex1("foo", false, "/a/foo/b"));
  CHECK(!ex1("foo", false, "/a/foobar"));
  CHECK(ex1("src/*.o", false, "/home/u/src/x.o"));
  CHECK(!ex1("src/*.o", false, "/home/u/src/sub/x.o"));
  /* anchored: from the root only */
  CHECK(ex1("/home/u/tmp", false, "/home/u/tmp"));
  CHECK(ex1("/home/u/tmp", false, "/home/u/tmp/x/y"));
  CHECK(!ex1("/tmp", false, "/home/u/tmp"));
  CHECK(!ex1("/home/u/tmp", false, "/home/u"));
  CHECK(ex1("/home/*/.cache", false, "/home/ann/.cache"));
  /* ** spans any number of components, zero included */
  CHECK(ex1("/home/**/*.tmp", false, "/home/x.tmp"));
  CHECK(ex1("/home/**/*.tmp", false, "/home/a/b/c/x.tmp"));
  CHECK(!ex1("/home/**/*.tmp", false, "/var/a/x.tmp"));
  CHECK(ex1("a/**/b/**/c", false, "/z/a/x/b/y/y/c"));
  CHECK(!ex1("a/**/b/**/c", false, "/z/a/x/c/y/b"));
  CHECK(ex1("/**", false, "/any/thing"));
  /* trailing and doubled "/" are not special */
  CHECK(ex1("/home//u/", false, "/home/u"));
  CHECK(ex1("foo/", false, "/a/foo"));
  CHECK(ex1("foo", false, "//a//foo//"));
}

static void test_icase(void)
{
  CHECK(!ex1("*.JPG", false, "/p/a.jpg"));
  CHECK(ex1("*.JPG", true, "/p/a.jpg"));
  CHECK(ex1("/HOME/*/Cache", true, "/home/u/cache"));
  CHECK(ex1("[A-C]x", true, "/bX"));
  CHECK(ex1("[a-c]x", true, "/BX"));
  CHECK(!ex1("[!a-c]x", true, "/BX"));
}

static void test_reinclude(void)
{
  /* restic's example: everything in $HOME but Documents */
  kh_pattern_set *s = NULL;
  CHECK_OK(kh_pattern_set_new(&s));
  CHECK_OK(kh_pattern_set_add(s, "/home/u/*", false));
  CHECK_OK(kh_pattern_set_add(s, "!/home/u/Documents", false));
  CHECK_EQ(kh_pattern_set_count(s), 2);
  CHECK(kh_pattern_set_excludes(s, "/home/u/Music", 14));
  CHECK(!kh_pattern_set_excludes(s, "/home/u/Documents", 17));
  CHECK(!kh_pattern_set_excludes(s, "/home/u/Documents/a/b", 21));
  CHECK(!kh_pattern_set_excludes(s, "/home/u", 7));
  CHECK(!kh_pattern_set_excludes(s, "/etc/x", 6));
  /* the last matching pattern wins: exclude again after the re-include */
  CHECK_OK(kh_pattern_set_add(s, "*.iso", false));
  CHECK(kh_pattern_set_excludes(s, "/home/u/Documents/d.iso", 23));
  kh_pattern_set_free(s);
  /* a "!" alone re-includes nothing that was not excluded */
  CHECK(!ex1("!foo", false, "/foo"));
  /* "\!" is a literal "!" */
  CHECK(ex1("\\!x", false, "/!x"));
  CHECK(!kh_pattern_set_excludes(NULL, "/x", 2));
  kh_pattern_set_free(NULL);
}

static void test_bad_patterns(void)
{
  CHECK_ERR(kh_pattern_check(""), KH_ERR_INVAL);
  CHECK_ERR(kh_pattern_check("!"), KH_ERR_INVAL);
  CHECK_ERR(kh_pattern_check("a[bc"), KH_ERR_INVAL);
  CHECK_ERR(kh_pattern_check("a[b/c]"), KH_ERR_INVAL);
  CHECK_ERR(kh_pattern_check("ab\\"), KH_ERR_INVAL);
  CHECK(strstr(kh_errdetail(), "ab\\") != NULL);
  char big[KH_PATTERN_MAX_LEN + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = 0;
  CHECK_ERR(kh_pattern_check(big), KH_ERR_INVAL);
  big[KH_PATTERN_MAX_LEN] = 0;
  CHECK_OK(kh_pattern_check(big));
  CHECK_OK(kh_pattern_check("/"));
  CHECK_OK(kh_pattern_check("[]]"));
  CHECK(ex1("/", false, "/x")); /* the root: everything */
}

/* Many "**" against a deep path stay fast (no exponential backtracking). */
static void test_no_blowup(void)
{
  char pat[512] = "", path[4096] = "";
  for (int i = 0; i < 60; i++)
    strcat(pat, "**/a*/");
  strcat(pat, "b");
  for (int i = 0; i < 400; i++)
    strcat(path, "/aaaaaaa");
  CHECK(!ex1(pat, false, path));
}

int main(void)
{
  RUN(test_component_globs);
  RUN(test_depth_and_anchoring);
  RUN(test_icase);
  RUN(test_reinclude);
  RUN(test_bad_patterns);
  RUN(test_no_blowup);
  return kh_test_done("test_pattern");
}
