#include "cache/cache.h"
#include "common/err.h"
#include "common/fsutil.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kh_cache {
  sqlite3 *db;
  sqlite3_stmt *get, *put;
  bool xattrs_known; /* the row of the last hit has an xattrs value */
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=OFF;" /* a lost cache costs a re-read, nothing more */
    "CREATE TABLE IF NOT EXISTS files ("
    " path BLOB PRIMARY KEY, size INTEGER, mtime INTEGER, ctime INTEGER,"
    " ino INTEGER, dev INTEGER, chunks BLOB, xattrs BLOB) WITHOUT ROWID;";

static kh_err open_db(const char *path, kh_cache *c)
{
  if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
    return kh_seterr(KH_ERR_IO, "cache %s: %s", path, sqlite3_errmsg(c->db));
  sqlite3_busy_timeout(c->db, 10000);
  if (sqlite3_exec(c->db, schema, NULL, NULL, NULL) != SQLITE_OK)
    return kh_seterr(KH_ERR_IO, "cache %s: %s", path, sqlite3_errmsg(c->db));
  /* a cache from before xattrs: its rows get NULL, "not known" (backup
   * then lists the file's attributes itself) */
  sqlite3_stmt *probe = NULL;
  if (sqlite3_prepare_v2(c->db, "SELECT xattrs FROM files LIMIT 0", -1, &probe, NULL) != SQLITE_OK)
    sqlite3_exec(c->db, "ALTER TABLE files ADD COLUMN xattrs BLOB", NULL, NULL, NULL);
  sqlite3_finalize(probe);
  if (sqlite3_prepare_v2(c->db,
                         "SELECT size, mtime, ctime, ino, dev, chunks, xattrs FROM files "
                         "WHERE path=?",
                         -1, &c->get, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(c->db,
                         "INSERT OR REPLACE INTO files (path, size, mtime, ctime, ino, dev, "
                         "chunks, xattrs) VALUES (?,?,?,?,?,?,?,?)",
                         -1, &c->put, NULL) != SQLITE_OK)
    return kh_seterr(KH_ERR_IO, "cache %s: %s", path, sqlite3_errmsg(c->db));
  return KH_OK;
}

static void close_db(kh_cache *c)
{
  sqlite3_finalize(c->get);
  sqlite3_finalize(c->put);
  sqlite3_close(c->db);
  c->get = c->put = NULL;
  c->db = NULL;
}

/* Append component comp (not "" or ".") to the canonical path in b, or pop
 * the last component for "..".  b holds an absolute path without symlinks. */
static kh_err canon_push(kh_buf *b, const char *comp, size_t n)
{
  if (n == 2 && !memcmp(comp, "..", 2)) {
    while (b->len > 1 && b->data[b->len - 1] != '/')
      b->len--;
    if (b->len > 1)
      b->len--; /* the slash, unless it is the root */
    b->data[b->len] = '\0';
    return KH_OK;
  }
  kh_err e = KH_OK;
  if (b->len > 1)
    e = kh_buf_append(b, "/", 1);
  if (!e)
    e = kh_buf_append(b, comp, n);
  if (!e)
    e = kh_buf_append(b, "", 1);
  if (!e)
    b->len--; /* keep it a C string */
  return e;
}

/* The canonical form of path, which need not exist: the longest existing
 * prefix through realpath (relative paths and symlinks resolved), then the
 * rest normalized by name.  The rest does not exist yet, so it holds no
 * symlinks: once created, "x/.." is the directory x was made in.  *out is
 * malloc'd. */
static kh_err canonical_path(const char *path, char **out)
{
  *out = NULL;
  char *head = strdup(path);
  kh_buf b;
  kh_buf_init(&b, PATH_MAX * 4);
  kh_err e = KH_OK;
  if (!head)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  size_t hl = strlen(head);
  char *real = NULL;
  for (;;) {
    real = realpath(hl ? head : ".", NULL);
    if (real)
      break;
    if (errno != ENOENT || hl == 0 || (hl == 1 && head[0] == '/')) {
      e = kh_seterr(KH_ERR_IO, "cannot resolve %s: %s", path, strerror(errno));
      goto out;
    }
    /* drop the last component: it does not exist */
    while (hl > 0 && head[hl - 1] == '/')
      hl--;
    while (hl > 0 && head[hl - 1] != '/')
      hl--;
    while (hl > 1 && head[hl - 1] == '/')
      hl--;
    head[hl] = '\0';
  }
  if ((e = kh_buf_append(&b, real, strlen(real) + 1)))
    goto out;
  b.len--;
  /* the part that does not exist yet, by name */
  for (const char *p = path + hl; *p;) {
    while (*p == '/')
      p++;
    size_t n = strcspn(p, "/");
    if (n && !(n == 1 && p[0] == '.') && (e = canon_push(&b, p, n)))
      goto out;
    p += n;
  }
  *out = (char *)kh_buf_detach(&b, NULL);
out:
  free(real);
  free(head);
  kh_buf_release(&b);
  return e;
}

kh_err kh_cache_check_outside(const char *path, const char *region)
{
  char *cp = NULL, *rp = NULL;
  kh_err e = canonical_path(path, &cp);
  if (!e && !(rp = realpath(region, NULL)))
    e = kh_seterr(kh_errno_code(errno), "region %s: %s", region, strerror(errno));
  if (!e) {
    size_t rl = strlen(rp);
    if (!strncmp(cp, rp, rl) && (cp[rl] == '/' || cp[rl] == '\0' || !strcmp(rp, "/")))
      e = kh_seterr(KH_ERR_INVAL, "the cache (%s, that is %s) may not be inside the region "
                    "(%s): the provider would hold the names of your files; choose another "
                    "cache directory", path, cp, rp);
  }
  free(cp);
  free(rp);
  return e;
}

kh_err kh_cache_open(const char *path, kh_cache **out)
{
  *out = NULL;
  kh_cache *c = calloc(1, sizeof *c);
  if (!c)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  char *dir = strdup(path);
  char *slash = dir ? strrchr(dir, '/') : NULL;
  if (slash && slash != dir) {
    *slash = 0;
    kh_mkdirs(dir, 0700);
  }
  free(dir);
  kh_err e = open_db(path, c);
  if (e) { /* damaged: start over */
    close_db(c);
    unlink(path);
    char side[4200];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    e = open_db(path, c);
  }
  if (e) {
    close_db(c);
    free(c);
    return e;
  }
  *out = c;
  return KH_OK;
}

void kh_cache_free(kh_cache *c)
{
  if (!c)
    return;
  close_db(c);
  free(c);
}

kh_err kh_cache_lookup(kh_cache *c, const uint8_t *path, size_t plen, const kh_cache_key *k,
                       kh_chunkref **refs, size_t *n, bool *found, bool *known)
{
  *found = false;
  *refs = NULL;
  *n = 0;
  c->xattrs_known = false;
  if (known)
    *known = false;
  sqlite3_reset(c->get);
  sqlite3_bind_blob(c->get, 1, path, (int)plen, SQLITE_STATIC);
  if (sqlite3_step(c->get) != SQLITE_ROW)
    return KH_OK;
  if (known)
    *known = true;
  if ((uint64_t)sqlite3_column_int64(c->get, 0) != k->size ||
      sqlite3_column_int64(c->get, 1) != k->mtime_ns ||
      sqlite3_column_int64(c->get, 2) != k->ctime_ns ||
      (uint64_t)sqlite3_column_int64(c->get, 3) != k->ino ||
      (uint64_t)sqlite3_column_int64(c->get, 4) != k->dev)
    return KH_OK;
  const uint8_t *blob = sqlite3_column_blob(c->get, 5);
  size_t bl = (size_t)sqlite3_column_bytes(c->get, 5);
  if (bl % 40)
    return KH_OK; /* damaged row: ignore */
  size_t cnt = bl / 40;
  kh_chunkref *r = malloc((cnt ? cnt : 1) * sizeof *r);
  if (!r)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  uint64_t total = 0;
  for (size_t i = 0; i < cnt; i++) {
    memcpy(r[i].id, blob + 40 * i, 32);
    memcpy(&r[i].len, blob + 40 * i + 32, 8);
    total += r[i].len;
  }
  if (total != k->size) {
    free(r);
    return KH_OK;
  }
  *refs = r;
  *n = cnt;
  *found = true;
  c->xattrs_known = sqlite3_column_type(c->get, 6) == SQLITE_BLOB ||
                    sqlite3_column_type(c->get, 6) == SQLITE_TEXT;
  return KH_OK;
}

bool kh_cache_xattrs(kh_cache *c, const uint8_t **p, size_t *len)
{
  *p = NULL;
  *len = 0;
  if (!c->xattrs_known)
    return false;
  *len = (size_t)sqlite3_column_bytes(c->get, 6);
  *p = sqlite3_column_blob(c->get, 6);
  return true;
}

kh_err kh_cache_begin(kh_cache *c)
{
  return sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK
             ? KH_OK
             : kh_seterr(KH_ERR_IO, "cache: %s", sqlite3_errmsg(c->db));
}

kh_err kh_cache_commit(kh_cache *c)
{
  return sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK
             ? KH_OK
             : kh_seterr(KH_ERR_IO, "cache: %s", sqlite3_errmsg(c->db));
}

kh_err kh_cache_put(kh_cache *c, const uint8_t *path, size_t plen, const kh_cache_key *k,
                    const kh_chunkref *refs, size_t n, const uint8_t *xattrs,
                    size_t xattrlen)
{
  uint8_t *blob = malloc(n * 40 + 1);
  if (!blob)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    memcpy(blob + 40 * i, refs[i].id, 32);
    memcpy(blob + 40 * i + 32, &refs[i].len, 8);
  }
  sqlite3_reset(c->put);
  sqlite3_bind_blob(c->put, 1, path, (int)plen, SQLITE_STATIC);
  sqlite3_bind_int64(c->put, 2, (sqlite3_int64)k->size);
  sqlite3_bind_int64(c->put, 3, k->mtime_ns);
  sqlite3_bind_int64(c->put, 4, k->ctime_ns);
  sqlite3_bind_int64(c->put, 5, (sqlite3_int64)k->ino);
  sqlite3_bind_int64(c->put, 6, (sqlite3_int64)k->dev);
  sqlite3_bind_blob(c->put, 7, blob, (int)(n * 40), SQLITE_STATIC);
  if (xattrs) /* a zero-length blob: known to have none */
    sqlite3_bind_blob(c->put, 8, xattrlen ? (const void *)xattrs : "", (int)xattrlen,
                      SQLITE_STATIC);
  else
    sqlite3_bind_null(c->put, 8);
  int rc = sqlite3_step(c->put);
  free(blob);
  return rc == SQLITE_DONE ? KH_OK : kh_seterr(KH_ERR_IO, "cache: %s", sqlite3_errmsg(c->db));
}
