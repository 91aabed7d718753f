/* Unit tests for lib/cache: put/lookup, metadata mismatches miss, damaged
 * rows and damaged database files are recovered from. */
#include "cache/cache.h"
#include "common/err.h"
#include "common/fsutil.h"
#include "kh_test.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/kh-test-cache-XXXXXX";

static kh_cache_key key(void)
{
  kh_cache_key k = {.size = 300, .ino = 1234567, .dev = 0xfd01, .mtime_ns = 1700000000000000001ll,
                    .ctime_ns = 1700000000000000002ll};
  return k;
}

static void refs3(kh_chunkref r[3])
{
  memset(r, 0, 3 * sizeof *r);
  memset(r[0].id, 0xa1, 32);
  r[0].len = 100;
  /* r[1] is a hole: zero id */
  r[1].len = 150;
  memset(r[2].id, 0xa3, 32);
  r[2].len = 50;
}

static void test_roundtrip_and_mismatch(void)
{
  char *path = kh_path_join(dir, "sub/dir/files.db"); /* parents are created */
  kh_cache *c = NULL;
  CHECK_OK(kh_cache_open(path, &c));
  if (!c) {
    free(path);
    return;
  }
  kh_chunkref r[3], *got = NULL;
  refs3(r);
  kh_cache_key k = key();
  static const uint8_t p[] = "/home/u/f\xff\x00x"; /* any bytes, including NUL */
  size_t pl = sizeof p - 1;
  size_t n = 9;
  bool found = true, known = true;
  CHECK_OK(kh_cache_lookup(c, p, pl, &k, &got, &n, &found, &known));
  CHECK(!found && !known && got == NULL && n == 0);
  CHECK_OK(kh_cache_begin(c));
  CHECK_OK(kh_cache_put(c, p, pl, &k, r, 3, NULL, 0));
  CHECK_OK(kh_cache_commit(c));
  CHECK_OK(kh_cache_lookup(c, p, pl, &k, &got, &n, &found, NULL));
  CHECK(found);
  CHECK_EQ(n, 3);
  if (found && n == 3) {
    CHECK_MEM(got[0].id, r[0].id, 32);
    CHECK_MEM(got[1].id, r[1].id, 32);
    CHECK_EQ(got[1].len, 150);
    CHECK_EQ(got[2].len, 50);
  }
  free(got);
  /* a path that differs only after the NUL is another path */
  CHECK_OK(kh_cache_lookup(c, p, pl - 1, &k, &got, &n, &found, NULL));
  CHECK(!found);
  /* each field of the fingerprint matters */
  for (int f = 0; f < 5; f++) {
    kh_cache_key m = key();
    switch (f) {
    case 0: m.size++; break;
    case 1: m.ino++; break;
    case 2: m.dev++; break;
    case 3: m.mtime_ns++; break;
    case 4: m.ctime_ns--; break;
    }
    found = true;
    CHECK_OK(kh_cache_lookup(c, p, pl, &m, &got, &n, &found, &known));
    CHECK(known); /* the path is there, with another fingerprint */
    CHECK(!found && got == NULL);
  }
  /* replace: the newest entry wins */
  k.size = 100;
  CHECK_OK(kh_cache_put(c, p, pl, &k, r, 1, NULL, 0));
  CHECK_OK(kh_cache_lookup(c, p, pl, &k, &got, &n, &found, NULL));
  CHECK(found && n == 1);
  free(got);
  /* an entry whose chunk lengths do not add up to the size is a miss */
  k.size = 101;
  CHECK_OK(kh_cache_put(c, p, pl, &k, r, 1, NULL, 0));
  CHECK_OK(kh_cache_lookup(c, p, pl, &k, &got, &n, &found, NULL));
  CHECK(!found);
  /* empty file: zero chunks */
  kh_cache_key z = key();
  z.size = 0;
  CHECK_OK(kh_cache_put(c, (const uint8_t *)"empty", 5, &z, NULL, 0, NULL, 0));
  CHECK_OK(kh_cache_lookup(c, (const uint8_t *)"empty", 5, &z, &got, &n, &found, NULL));
  CHECK(found && n == 0);
  free(got);
  /* values above INT64_MAX survive (stored as signed 64-bit) */
  kh_cache_key big = key();
  big.ino = UINT64_MAX;
  big.dev = 1ull << 63;
  big.size = 300;
  CHECK_OK(kh_cache_put(c, (const uint8_t *)"big", 3, &big, r, 3, NULL, 0));
  CHECK_OK(kh_cache_lookup(c, (const uint8_t *)"big", 3, &big, &got, &n, &found, NULL));
  CHECK(found && n == 3);
  free(got);
  kh_cache_free(c);
  kh_cache_free(NULL);
  /* persistence across reopen */
  c = NULL;
  CHECK_OK(kh_cache_open(path, &c));
  k = key();
  k.size = 300;
  CHECK_OK(kh_cache_lookup(c, (const uint8_t *)"big", 3, &big, &got, &n, &found, NULL));
  CHECK(found);
  free(got);
  kh_cache_free(c);
  free(path);
}

static void test_corrupt_db(void)
{
  char *path = kh_path_join(dir, "corrupt.db");
  kh_cache *c = NULL;
  CHECK_OK(kh_cache_open(path, &c));
  kh_chunkref r[3];
  refs3(r);
  kh_cache_key k = key();
  CHECK_OK(kh_cache_put(c, (const uint8_t *)"f", 1, &k, r, 3, NULL, 0));
  kh_cache_free(c);
  /* overwrite the database with garbage */
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  for (int i = 0; i < 8192; i++)
    fputc((i * 131 + 7) & 0xff, f);
  fclose(f);
  char side[4200];
  snprintf(side, sizeof side, "%s-wal", path);
  unlink(side);
  snprintf(side, sizeof side, "%s-shm", path);
  unlink(side);
  c = NULL;
  CHECK_OK(kh_cache_open(path, &c));
  CHECK(c != NULL);
  if (c) {
    kh_chunkref *got = NULL;
    size_t n;
    bool found = true;
    CHECK_OK(kh_cache_lookup(c, (const uint8_t *)"f", 1, &k, &got, &n, &found, NULL));
    CHECK(!found);
    /* and it works again */
    CHECK_OK(kh_cache_put(c, (const uint8_t *)"f", 1, &k, r, 3, NULL, 0));
    CHECK_OK(kh_cache_lookup(c, (const uint8_t *)"f", 1, &k, &got, &n, &found, NULL));
    CHECK(found && n == 3);
    free(got);
    kh_cache_free(c);
  }
  /* a database file truncated to a valid-looking header */
  f = fopen(path, "wb");
  fputs("SQLite format 3", f);
  fputc(0, f);
  fclose(f);
  c = NULL;
  CHECK_OK(kh_cache_open(path, &c));
  kh_cache_free(c);
  free(path);
}

/* The cache may not be inside the region, however the path is spelled:
 * relative, through a symlink, with "..", or not existing yet. */
static void test_outside_region(void)
{
  char *region = kh_path_join(dir, "region"), *sub = kh_path_join(dir, "region/accounts");
  char *other = kh_path_join(dir, "region-other"), *link = kh_path_join(dir, "link");
  char *linkr = kh_path_join(dir, "linkr");
  CHECK(mkdir(region, 0700) == 0 && mkdir(sub, 0700) == 0 && mkdir(other, 0700) == 0);
  CHECK(symlink(sub, link) == 0);
  CHECK(symlink(region, linkr) == 0);
  char cwd[4096];
  CHECK(getcwd(cwd, sizeof cwd) != NULL);
  CHECK(chdir(dir) == 0);
  static const char *inside[] = {
      "region/c/local-x/files.db",          /* relative */
      "./region/files.db",                  /* relative, at the top */
      "link/c/local-x/files.db",            /* a symlink into the region */
      "linkr/files.db",                     /* a symlink to the region */
      "nope/../region/c/files.db",          /* ".." after a directory to be made */
      "region-other/../region/c/files.db",  /* ".." after one that exists */
  };
  for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++) {
    kh_err e = kh_cache_check_outside(inside[i], region);
    CHECK_EQ(e, KH_ERR_INVAL);
    if (e != KH_ERR_INVAL)
      fprintf(stderr, "  accepted %s\n", inside[i]);
    else
      CHECK(strstr(kh_errdetail(), "may not be inside the region") != NULL);
    /* the same through an absolute spelling and a relative region */
    char *abs = kh_path_join(dir, inside[i]);
    CHECK_EQ(kh_cache_check_outside(abs, "region"), KH_ERR_INVAL);
    free(abs);
  }
  static const char *outside[] = {"region-other/files.db", "c/local-x/files.db",
                                  "region-other/new/../files.db", "/tmp/files.db"};
  for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++)
    CHECK_OK(kh_cache_check_outside(outside[i], region));
  /* nothing was created while checking */
  struct stat st;
  CHECK(stat("region/c", &st) != 0 && stat("nope", &st) != 0 && stat("c", &st) != 0);
  CHECK(chdir(cwd) == 0);
  free(region);
  free(sub);
  free(other);
  free(link);
  free(linkr);
}

/* The extended attributes a row records: NULL is "not known", an empty
 * value "none"; a database from before the column gets it, its rows not
 * known. */
static void test_xattrs(void)
{
  char *path = kh_path_join(dir, "x/files.db");
  kh_chunkref r[3];
  refs3(r);
  kh_cache_key k = key();
  const uint8_t *xp = NULL;
  size_t xl = 9, n = 0;
  kh_chunkref *got = NULL;
  bool found = false;
  /* an old database: the schema without the column, one row */
  CHECK_OK(kh_mkdirs(dir, 0700));
  char *sub = kh_path_join(dir, "x");
  CHECK_OK(kh_mkdirs(sub, 0700));
  free(sub);
  sqlite3 *db = NULL;
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  uint8_t blob[120];
  for (int i = 0; i < 3; i++) {
    memcpy(blob + 40 * i, r[i].id, 32);
    memcpy(blob + 40 * i + 32, &r[i].len, 8);
  }
  sqlite3_stmt *st = NULL;
  CHECK(sqlite3_exec(db, "CREATE TABLE files (path BLOB PRIMARY KEY, size INTEGER, mtime "
                         "INTEGER, ctime INTEGER, ino INTEGER, dev INTEGER, chunks BLOB) "
                         "WITHOUT ROWID", NULL, NULL, NULL) == SQLITE_OK);
  CHECK(sqlite3_prepare_v2(db, "INSERT INTO files VALUES (X'6f6c64', ?, ?, ?, ?, ?, ?)", -1, &st,
                           NULL) == SQLITE_OK);
  sqlite3_bind_int64(st, 1, (sqlite3_int64)k.size);
  sqlite3_bind_int64(st, 2, k.mtime_ns);
  sqlite3_bind_int64(st, 3, k.ctime_ns);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)k.ino);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)k.dev);
  sqlite3_bind_blob(st, 6, blob, sizeof blob, SQLITE_STATIC);
  CHECK(sqlite3_step(st) == SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);

  kh_cache *c = NULL;
  CHECK_OK(kh_cache_open(path, &c));
  if (!c) {
    free(path);
    return;
  }
  CHECK_OK(kh_cache_lookup(c, (const uint8_t *)"old", 3, &k, &got, &n, &found, NULL));
  CHECK(found && n == 3); /* the old row still serves its chunks */
  free(got);
  CHECK(!kh_cache_xattrs(c, &xp, &xl) && xp == NULL && xl == 0); /* but not its xattrs */
  static const uint8_t xa[] = {6, 'u', 's', 'e', 'r', '.', 'a', 1, 'v'};
  CHECK_OK(kh_cache_begin(c));
  CHECK_OK(kh_cache_put(c, (const uint8_t *)"with", 4, &k, r, 3, xa, sizeof xa));
  CHECK_OK(kh_cache_put(c, (const uint8_t *)"none", 4, &k, r, 3, xa, 0));
  CHECK_OK(kh_cache_put(c, (const uint8_t *)"unknown", 7, &k, r, 3, NULL, 0));
  CHECK_OK(kh_cache_commit(c));
  CHECK_OK(kh_cache_lookup(c, (const uint8_t *)"with", 4, &k, &got, &n, &found, NULL));
  free(got);
  CHECK(found && kh_cache_xattrs(c, &xp, &xl) && xl == sizeof xa && !memcmp(xp, xa, xl));
  CHECK_OK(kh_cache_lookup(c, (const uint8_t *)"none", 4, &k, &got, &n, &found, NULL));
  free(got);
  CHECK(found && kh_cache_xattrs(c, &xp, &xl) && xl == 0);
  CHECK_OK(kh_cache_lookup(c, (const uint8_t *)"unknown", 7, &k, &got, &n, &found, NULL));
  free(got);
  CHECK(found && !kh_cache_xattrs(c, &xp, &xl));
  /* a miss knows nothing either */
  kh_cache_key m = key();
  m.size++;
  CHECK_OK(kh_cache_lookup(c, (const uint8_t *)"with", 4, &m, &got, &n, &found, NULL));
  CHECK(!found && !kh_cache_xattrs(c, &xp, &xl));
  kh_cache_free(c);
  free(path);
}

int main(void)
{
  if (!mkdtemp(dir))
    return 1;
  RUN(test_roundtrip_and_mismatch);
  RUN(test_corrupt_db);
  RUN(test_outside_region);
  RUN(test_xattrs);
  kh_remove_tree(dir);
  return kh_test_done("test_cache");
}
