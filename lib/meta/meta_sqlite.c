/* The SQLite backend of the metadata store (include/keyhold/meta.h).
 * One connection per handle, serialised by a mutex; WAL so that readers and
 * other processes (keyholdd admin) work while a server writes; a busy
 * timeout so that a writer in another process is waited for, not failed.
 * Every change that must be atomic is one BEGIN IMMEDIATE transaction. */
#include "keyhold/meta.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"

#define BUSY_MS 10000

typedef struct meta_sqlite {
  kh_meta base;
  sqlite3 *db;
  pthread_mutex_t lock;
} meta_sqlite;

static const char g_schema[] =
    "CREATE TABLE IF NOT EXISTS accounts(id TEXT PRIMARY KEY, created INTEGER NOT NULL,"
    " quota_bytes INTEGER NOT NULL, used_bytes INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS devices(id TEXT PRIMARY KEY, account TEXT NOT NULL"
    " REFERENCES accounts(id), name TEXT NOT NULL, sign_pk BLOB NOT NULL, box_pk BLOB NOT NULL,"
    " caps INTEGER NOT NULL, enrolled INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS devices_account ON devices(account, enrolled);"
    "CREATE TABLE IF NOT EXISTS invites(hash BLOB PRIMARY KEY, created INTEGER NOT NULL,"
    " expires INTEGER NOT NULL, used_by TEXT);"
    "CREATE TABLE IF NOT EXISTS enrolments(id TEXT PRIMARY KEY, bucket TEXT NOT NULL,"
    " name TEXT NOT NULL, sign_pk BLOB NOT NULL, box_pk BLOB NOT NULL, salt BLOB NOT NULL,"
    " tag BLOB NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL,"
    " state INTEGER NOT NULL, account TEXT, device TEXT, caps INTEGER, wrap BLOB,"
    " wrap_tag BLOB, approver TEXT, decided INTEGER);"
    "CREATE INDEX IF NOT EXISTS enrolments_bucket ON enrolments(state, bucket, created);"
    "PRAGMA user_version = 1;";

static kh_err dberr(meta_sqlite *s, int rc, const char *what)
{
  kh_err e = rc == SQLITE_FULL ? KH_ERR_NOSPACE
             : rc == SQLITE_CONSTRAINT ? KH_ERR_EXISTS
             : rc == SQLITE_NOMEM ? KH_ERR_NOMEM
             : rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? KH_ERR_CORRUPT
                                                           : KH_ERR_IO;
  return kh_seterr(e, "metadata: %s: %s", what, sqlite3_errmsg(s->db));
}

/* Prepare sql and bind its arguments, spelled by fmt: 't' text, 'i' int64,
 * 'b' blob (pointer, size_t length), 'n' null. */
/* Step a query expected to give one row: KH_OK with st on it, NOTFOUND
 * ("no <what> <id>") when it gives none, or the database's error. */
static kh_err step_one(meta_sqlite *s, sqlite3_stmt *st, const char *what, const char *id)
{
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    return KH_OK;
  if (rc == SQLITE_DONE)
    return kh_seterr(KH_ERR_NOTFOUND, "no %s %s", what, id);
  return dberr(s, rc, what);
}

/* Step a listing: true with st on the next row; false at the end or on an
 * error (then *e is set). */
static bool step_row(meta_sqlite *s, sqlite3_stmt *st, const char *what, kh_err *e)
{
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    return true;
  if (rc != SQLITE_DONE)
    *e = dberr(s, rc, what);
  return false;
}

static kh_err prep(meta_sqlite *s, sqlite3_stmt **st, const char *sql, const char *fmt, ...)
{
  va_list ap;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
  if (rc != SQLITE_OK)
    return dberr(s, rc, "prepare");
  va_start(ap, fmt);
  for (int i = 1; fmt && *fmt && rc == SQLITE_OK; fmt++, i++) {
    switch (*fmt) {
    case 't': rc = sqlite3_bind_text(*st, i, va_arg(ap, const char *), -1, SQLITE_TRANSIENT); break;
    case 'i': rc = sqlite3_bind_int64(*st, i, va_arg(ap, int64_t)); break;
    case 'b': {
      const void *p = va_arg(ap, const void *);
      size_t n = va_arg(ap, size_t);
      rc = sqlite3_bind_blob(*st, i, p, (int)n, SQLITE_TRANSIENT);
      break;
    }
    default: rc = sqlite3_bind_null(*st, i); break;
    }
  }
  va_end(ap);
  if (rc != SQLITE_OK) {
    kh_err e = dberr(s, rc, "bind");
    sqlite3_finalize(*st);
    *st = NULL;
    return e;
  }
  return KH_OK;
}

static kh_err exec(meta_sqlite *s, const char *sql)
{
  char *msg = NULL;
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
  kh_err e = KH_OK;
  if (rc != SQLITE_OK)
    e = dberr(s, rc, msg ? msg : sql);
  sqlite3_free(msg);
  return e;
}

/* Run a statement that returns no rows; *changes (may be NULL) gets the
 * rows it changed.  Finalizes st. */
static kh_err step_done(meta_sqlite *s, sqlite3_stmt *st, int *changes, const char *what)
{
  int rc = sqlite3_step(st);
  kh_err e = rc == SQLITE_DONE ? KH_OK : dberr(s, rc, what);
  if (changes)
    *changes = sqlite3_changes(s->db);
  sqlite3_finalize(st);
  return e;
}

static kh_err begin(meta_sqlite *s) { return exec(s, "BEGIN IMMEDIATE"); }
static kh_err finish(meta_sqlite *s, kh_err e)
{
  if (e) {
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return e;
  }
  return exec(s, "COMMIT");
}

static void col_text(sqlite3_stmt *st, int c, char *out, size_t cap)
{
  const unsigned char *t = sqlite3_column_text(st, c);
  size_t n = t ? strnlen((const char *)t, cap - 1) : 0;
  if (n)
    memcpy(out, t, n);
  out[n] = '\0';
}

static void col_blob(sqlite3_stmt *st, int c, uint8_t *out, size_t n)
{
  const void *p = sqlite3_column_blob(st, c);
  size_t have = (size_t)sqlite3_column_bytes(st, c);
  memset(out, 0, n);
  if (p)
    memcpy(out, p, have < n ? have : n);
}

static int64_t quota_db(uint64_t q) { return q == KH_META_UNLIMITED ? -1 : q > INT64_MAX ? INT64_MAX : (int64_t)q; }
static uint64_t quota_api(int64_t q) { return q < 0 ? KH_META_UNLIMITED : (uint64_t)q; }

/* ---- accounts ------------------------------------------------------------ */

static kh_err insert_device(meta_sqlite *s, const kh_meta_device *d)
{
  sqlite3_stmt *st = NULL;
  kh_err e = prep(s, &st,
                  "INSERT INTO devices(id, account, name, sign_pk, box_pk, caps, enrolled, revoked)"
                  " VALUES(?,?,?,?,?,?,?,0)",
                  "tttbbii", d->id, d->account, d->name, (const void *)d->sign_pk, (size_t)32,
                  (const void *)d->box_pk, (size_t)32, (int64_t)d->caps, d->enrolled);
  if (!e && (e = step_done(s, st, NULL, "add device")) == KH_ERR_EXISTS)
    kh_seterr(e, "metadata: device %s exists", d->id);
  return e;
}

static kh_err s_signup(kh_meta *m, const kh_meta_device *d, const uint8_t *ih, int64_t now,
                       uint64_t quota)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  int ch = 0;
  pthread_mutex_lock(&s->lock);
  kh_err e = begin(s);
  if (e)
    goto out;
  if (ih) {
    if (!(e = prep(s, &st,
                   "UPDATE invites SET used_by = ? WHERE hash = ? AND used_by IS NULL"
                   " AND (expires = 0 OR expires > ?)",
                   "tbi", d->account, (const void *)ih, (size_t)32, now)) &&
        !(e = step_done(s, st, &ch, "spend invitation")) && ch != 1)
      e = kh_seterr(KH_ERR_DENIED, "invitation unknown, spent or expired");
    st = NULL;
  }
  if (!e && !(e = prep(s, &st,
                       "INSERT INTO accounts(id, created, quota_bytes, used_bytes) VALUES(?,?,?,0)",
                       "tii", d->account, now, quota_db(quota))) &&
      (e = step_done(s, st, NULL, "create account")) == KH_ERR_EXISTS)
    kh_seterr(e, "metadata: account %s exists", d->account);
  st = NULL;
  if (!e)
    e = insert_device(s, d);
  e = finish(s, e);
out:
  pthread_mutex_unlock(&s->lock);
  return e;
}

#define ACCOUNT_COLS                                                                   \
  "SELECT a.id, a.created, a.quota_bytes, a.used_bytes, (SELECT count(*) FROM devices d" \
  " WHERE d.account = a.id AND d.revoked = 0) FROM accounts a "

static void row_account(sqlite3_stmt *st, kh_meta_account *a)
{
  memset(a, 0, sizeof *a);
  col_text(st, 0, a->id, sizeof a->id);
  a->created = sqlite3_column_int64(st, 1);
  a->quota_bytes = quota_api(sqlite3_column_int64(st, 2));
  int64_t used = sqlite3_column_int64(st, 3);
  a->used_bytes = used < 0 ? 0 : (uint64_t)used;
  a->devices = (unsigned)sqlite3_column_int64(st, 4);
}

static kh_err s_account_get(kh_meta *m, const char *id, kh_meta_account *out)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  pthread_mutex_lock(&s->lock);
  kh_err e = prep(s, &st, ACCOUNT_COLS "WHERE a.id = ?", "t", id);
  if (!e && !(e = step_one(s, st, "account", id)))
    row_account(st, out);
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  return e;
}

static kh_err s_account_list(kh_meta *m, kh_meta_account_fn fn, void *ctx)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  kh_meta_account a;
  pthread_mutex_lock(&s->lock);
  kh_err e = prep(s, &st, ACCOUNT_COLS "ORDER BY a.id", NULL);
  while (!e && step_row(s, st, "list accounts", &e)) {
    row_account(st, &a);
    if (fn(&a, ctx))
      break;
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  return e;
}

static kh_err s_quota_set(kh_meta *m, const char *account, uint64_t bytes)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  int ch = 0;
  pthread_mutex_lock(&s->lock);
  kh_err e = prep(s, &st, "UPDATE accounts SET quota_bytes = ? WHERE id = ?", "it",
                  quota_db(bytes), account);
  if (!e && !(e = step_done(s, st, &ch, "set quota")) && ch != 1)
    e = kh_seterr(KH_ERR_NOTFOUND, "no account %s", account);
  pthread_mutex_unlock(&s->lock);
  return e;
}

static kh_err s_usage_add(kh_meta *m, const char *account, int64_t delta, bool check)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  int ch = 0;
  pthread_mutex_lock(&s->lock);
  kh_err e = begin(s);
  if (e)
    goto out;
  if (!(e = prep(s, &st,
                 "UPDATE accounts SET used_bytes = max(0, used_bytes + ?1) WHERE id = ?2 AND"
                 " (?3 = 0 OR ?1 <= 0 OR quota_bytes < 0 OR used_bytes + ?1 <= quota_bytes)",
                 "iti", delta, account, (int64_t)check)) &&
      !(e = step_done(s, st, &ch, "account usage")) && ch != 1) {
    /* which: no account, or over quota? */
    kh_meta_account a;
    st = NULL;
    if (!(e = prep(s, &st, ACCOUNT_COLS "WHERE a.id = ?", "t", account))) {
      int rc = sqlite3_step(st);
      if (rc == SQLITE_ROW) {
        row_account(st, &a);
        e = kh_seterr(KH_ERR_NOSPACE, "quota of account %s: %llu of %llu bytes used", account,
                      (unsigned long long)a.used_bytes, (unsigned long long)a.quota_bytes);
      } else {
        e = rc == SQLITE_DONE ? kh_seterr(KH_ERR_NOTFOUND, "no account %s", account)
                              : dberr(s, rc, "read account");
      }
      sqlite3_finalize(st);
    }
  }
  e = finish(s, e);
out:
  pthread_mutex_unlock(&s->lock);
  return e;
}

static kh_err s_usage_set(kh_meta *m, const char *account, uint64_t bytes)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  int ch = 0;
  pthread_mutex_lock(&s->lock);
  kh_err e = prep(s, &st, "UPDATE accounts SET used_bytes = ? WHERE id = ?", "it",
                  (int64_t)bytes, account);
  if (!e && !(e = step_done(s, st, &ch, "account usage")) && ch != 1)
    e = kh_seterr(KH_ERR_NOTFOUND, "no account %s", account);
  pthread_mutex_unlock(&s->lock);
  return e;
}

/* ---- devices ------------------------------------------------------------- */

#define DEVICE_COLS "SELECT id, account, name, sign_pk, box_pk, caps, enrolled, revoked FROM devices "

static void row_device(sqlite3_stmt *st, kh_meta_device *d)
{
  memset(d, 0, sizeof *d);
  col_text(st, 0, d->id, sizeof d->id);
  col_text(st, 1, d->account, sizeof d->account);
  col_text(st, 2, d->name, sizeof d->name);
  col_blob(st, 3, d->sign_pk, 32);
  col_blob(st, 4, d->box_pk, 32);
  d->caps = (unsigned)sqlite3_column_int64(st, 5) & 15u;
  d->enrolled = sqlite3_column_int64(st, 6);
  d->revoked = sqlite3_column_int64(st, 7);
}

static kh_err s_device_add(kh_meta *m, const kh_meta_device *d)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  pthread_mutex_lock(&s->lock);
  kh_err e = begin(s);
  if (e)
    goto out;
  if (!(e = prep(s, &st, "SELECT 1 FROM accounts WHERE id = ?", "t", d->account))) {
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
      e = rc == SQLITE_DONE ? kh_seterr(KH_ERR_NOTFOUND, "no account %s", d->account)
                            : dberr(s, rc, "read account");
    sqlite3_finalize(st);
  }
  if (!e)
    e = insert_device(s, d);
  e = finish(s, e);
out:
  pthread_mutex_unlock(&s->lock);
  return e;
}

static kh_err s_device_get(kh_meta *m, const char *id, kh_meta_device *out)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  pthread_mutex_lock(&s->lock);
  kh_err e = prep(s, &st, DEVICE_COLS "WHERE id = ?", "t", id);
  if (!e && !(e = step_one(s, st, "device", id)))
    row_device(st, out);
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  return e;
}

static kh_err s_device_list(kh_meta *m, const char *account, kh_meta_device_fn fn, void *ctx)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  kh_meta_device d;
  pthread_mutex_lock(&s->lock);
  kh_err e = prep(s, &st, DEVICE_COLS "WHERE account = ? ORDER BY enrolled, rowid", "t", account);
  while (!e && step_row(s, st, "list devices", &e)) {
    row_device(st, &d);
    if (fn(&d, ctx))
      break;
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  return e;
}

static kh_err s_device_revoke(kh_meta *m, const char *account, const char *id, int64_t now)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  int ch = 0;
  pthread_mutex_lock(&s->lock);
  kh_err e = begin(s);
  if (e)
    goto out;
  if (!(e = prep(s, &st, "SELECT revoked FROM devices WHERE id = ? AND account = ?", "tt", id,
                 account))) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_int64(st, 0) != 0)
      e = kh_seterr(KH_ERR_STATE, "device %s is already revoked", id);
    else if (rc != SQLITE_ROW)
      e = rc == SQLITE_DONE ? kh_seterr(KH_ERR_NOTFOUND, "no device %s in account %s", id, account)
                            : dberr(s, rc, "read device");
    sqlite3_finalize(st);
  }
  if (!e && !(e = prep(s, &st, "UPDATE devices SET revoked = ? WHERE id = ?", "it",
                       now > 0 ? now : 1, id)))
    e = step_done(s, st, &ch, "revoke device");
  e = finish(s, e);
out:
  pthread_mutex_unlock(&s->lock);
  return e;
}

/* ---- invitations ----------------------------------------------------------- */

static kh_err s_invite_add(kh_meta *m, const uint8_t hash[32], int64_t now, int64_t expires)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  pthread_mutex_lock(&s->lock);
  kh_err e = prep(s, &st, "INSERT INTO invites(hash, created, expires) VALUES(?,?,?)", "bii",
                  (const void *)hash, (size_t)32, now, expires);
  if (!e)
    e = step_done(s, st, NULL, "add invitation");
  pthread_mutex_unlock(&s->lock);
  return e;
}

/* ---- enrolments ------------------------------------------------------------ */

#define ENROL_COLS                                                                         \
  "SELECT id, bucket, name, sign_pk, box_pk, salt, tag, created, expires, state, account," \
  " device, caps, wrap, wrap_tag, approver FROM enrolments "

static void row_enrol(sqlite3_stmt *st, int64_t now, kh_meta_enrolment *x)
{
  memset(x, 0, sizeof *x);
  col_text(st, 0, x->id, sizeof x->id);
  col_text(st, 1, x->bucket, sizeof x->bucket);
  col_text(st, 2, x->name, sizeof x->name);
  col_blob(st, 3, x->sign_pk, 32);
  col_blob(st, 4, x->box_pk, 32);
  col_blob(st, 5, x->salt, 16);
  col_blob(st, 6, x->tag, 32);
  x->created = sqlite3_column_int64(st, 7);
  x->expires = sqlite3_column_int64(st, 8);
  x->state = (kh_meta_enrol_state)sqlite3_column_int64(st, 9);
  if (x->state == KH_ENROL_PENDING && now >= x->expires)
    x->state = KH_ENROL_EXPIRED;
  if (x->state == KH_ENROL_APPROVED) {
    col_text(st, 10, x->account, sizeof x->account);
    col_text(st, 11, x->device, sizeof x->device);
    x->caps = (unsigned)sqlite3_column_int64(st, 12) & 15u;
    size_t wl = (size_t)sqlite3_column_bytes(st, 13);
    x->wrap_len = wl < KH_META_WRAP_MAX ? wl : KH_META_WRAP_MAX;
    col_blob(st, 13, x->wrap, x->wrap_len);
    col_blob(st, 14, x->wrap_tag, 32);
    col_text(st, 15, x->approver, sizeof x->approver);
  }
}

static kh_err count(meta_sqlite *s, const char *sql, const char *fmt, const char *t, int64_t i,
                    int64_t *n)
{
  sqlite3_stmt *st = NULL;
  kh_err e = fmt[0] == 't' ? prep(s, &st, sql, fmt, t, i) : prep(s, &st, sql, fmt, i);
  if (!e) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
      *n = sqlite3_column_int64(st, 0);
    else
      e = dberr(s, rc, "count");
  }
  sqlite3_finalize(st);
  return e;
}

static kh_err s_enrol_add(kh_meta *m, const kh_meta_enrolment *x, int64_t now)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  int64_t all = 0, bucket = 0;
  pthread_mutex_lock(&s->lock);
  kh_err e = begin(s);
  if (e)
    goto out;
  if (!(e = count(s, "SELECT count(*) FROM enrolments WHERE state = 0 AND expires > ?", "i", NULL,
                  now, &all)) &&
      !(e = count(s, "SELECT count(*) FROM enrolments WHERE state = 0 AND bucket = ? AND expires > ?",
                  "ti", x->bucket, now, &bucket))) {
    if (all >= KH_META_ENROL_PENDING_MAX || bucket >= KH_META_ENROL_BUCKET_MAX)
      e = kh_seterr(KH_ERR_NOSPACE, "too many pending enrolments (%s)",
                    all >= KH_META_ENROL_PENDING_MAX ? "region" : "bucket");
  }
  if (!e && !(e = prep(s, &st,
                       "INSERT INTO enrolments(id, bucket, name, sign_pk, box_pk, salt, tag,"
                       " created, expires, state) VALUES(?,?,?,?,?,?,?,?,?,0)",
                       "tttbbbbii", x->id, x->bucket, x->name, (const void *)x->sign_pk,
                       (size_t)32, (const void *)x->box_pk, (size_t)32, (const void *)x->salt,
                       (size_t)16, (const void *)x->tag, (size_t)32, x->created, x->expires)))
    e = step_done(s, st, NULL, "add enrolment");
  e = finish(s, e);
out:
  pthread_mutex_unlock(&s->lock);
  return e;
}

/* Read one enrolment under the lock (and in the caller's transaction). */
static kh_err enrol_read(meta_sqlite *s, const char *id, int64_t now, kh_meta_enrolment *out)
{
  sqlite3_stmt *st = NULL;
  kh_err e = prep(s, &st, ENROL_COLS "WHERE id = ?", "t", id);
  if (!e && !(e = step_one(s, st, "enrolment", id)))
    row_enrol(st, now, out);
  sqlite3_finalize(st);
  return e;
}

static kh_err s_enrol_get(kh_meta *m, const char *id, int64_t now, kh_meta_enrolment *out)
{
  meta_sqlite *s = (meta_sqlite *)m;
  pthread_mutex_lock(&s->lock);
  kh_err e = enrol_read(s, id, now, out);
  pthread_mutex_unlock(&s->lock);
  return e;
}

static kh_err s_enrol_list(kh_meta *m, const char *bucket, int64_t now, kh_meta_enrol_fn fn,
                           void *ctx)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  kh_meta_enrolment *x = malloc(sizeof *x);
  if (!x)
    return kh_seterr(KH_ERR_NOMEM, "enrolments");
  pthread_mutex_lock(&s->lock);
  kh_err e = prep(s, &st, ENROL_COLS "WHERE state = 0 AND bucket = ? AND expires > ?"
                  " ORDER BY created, rowid", "ti", bucket, now);
  while (!e && step_row(s, st, "list enrolments", &e)) {
    row_enrol(st, now, x);
    if (fn(x, ctx))
      break;
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  free(x);
  return e;
}

static kh_err decided(const kh_meta_enrolment *x)
{
  if (x->state == KH_ENROL_EXPIRED)
    return kh_seterr(KH_ERR_STATE, "enrolment %s expired", x->id);
  if (x->state != KH_ENROL_PENDING)
    return kh_seterr(KH_ERR_EXISTS, "enrolment %s was already decided", x->id);
  return KH_OK;
}

static kh_err s_enrol_approve(kh_meta *m, const char *id, const kh_meta_enrolment *a,
                              int64_t now)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  kh_meta_enrolment *x = malloc(sizeof *x);
  kh_meta_device d;
  if (!x)
    return kh_seterr(KH_ERR_NOMEM, "enrolment");
  pthread_mutex_lock(&s->lock);
  kh_err e = begin(s);
  if (e)
    goto out;
  if (!(e = enrol_read(s, id, now, x)) && !(e = decided(x)) &&
      !(e = prep(s, &st, "SELECT 1 FROM accounts WHERE id = ?", "t", a->account))) {
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
      e = rc == SQLITE_DONE ? kh_seterr(KH_ERR_NOTFOUND, "no account %s", a->account)
                            : dberr(s, rc, "read account");
    sqlite3_finalize(st);
    st = NULL;
  }
  if (!e) {
    memset(&d, 0, sizeof d);
    memcpy(d.id, a->device, sizeof d.id);
    memcpy(d.account, a->account, sizeof d.account);
    memcpy(d.name, x->name, sizeof d.name);
    memcpy(d.sign_pk, x->sign_pk, 32);
    memcpy(d.box_pk, x->box_pk, 32);
    d.caps = a->caps;
    d.enrolled = now;
    e = insert_device(s, &d);
  }
  if (!e && !(e = prep(s, &st,
                       "UPDATE enrolments SET state = 1, account = ?, device = ?, caps = ?,"
                       " wrap = ?, wrap_tag = ?, approver = ?, decided = ? WHERE id = ?",
                       "ttibbtit", a->account, a->device, (int64_t)a->caps,
                       (const void *)a->wrap, a->wrap_len, (const void *)a->wrap_tag, (size_t)32,
                       a->approver, now, id)))
    e = step_done(s, st, NULL, "approve enrolment");
  e = finish(s, e);
out:
  pthread_mutex_unlock(&s->lock);
  free(x);
  return e;
}

static kh_err s_enrol_refuse(kh_meta *m, const char *id, int64_t now)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  kh_meta_enrolment *x = malloc(sizeof *x);
  if (!x)
    return kh_seterr(KH_ERR_NOMEM, "enrolment");
  pthread_mutex_lock(&s->lock);
  kh_err e = begin(s);
  if (e)
    goto out;
  if (!(e = enrol_read(s, id, now, x)) && !(e = decided(x)) &&
      !(e = prep(s, &st, "UPDATE enrolments SET state = 2, decided = ? WHERE id = ?", "it", now,
                 id)))
    e = step_done(s, st, NULL, "refuse enrolment");
  e = finish(s, e);
out:
  pthread_mutex_unlock(&s->lock);
  free(x);
  return e;
}

static kh_err s_enrol_purge(kh_meta *m, int64_t before)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_stmt *st = NULL;
  pthread_mutex_lock(&s->lock);
  kh_err e = prep(s, &st,
                  "DELETE FROM enrolments WHERE expires < ?1 AND (state = 0 OR decided < ?1)",
                  "i", before);
  if (!e)
    e = step_done(s, st, NULL, "purge enrolments");
  pthread_mutex_unlock(&s->lock);
  return e;
}

static void s_close(kh_meta *m)
{
  meta_sqlite *s = (meta_sqlite *)m;
  sqlite3_close(s->db);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static const kh_meta_ops g_sqlite_ops = {
  s_signup, s_account_get, s_account_list, s_quota_set, s_usage_add, s_usage_set, s_device_add,
  s_device_get, s_device_list, s_device_revoke, s_invite_add, s_enrol_add, s_enrol_get,
  s_enrol_list, s_enrol_approve, s_enrol_refuse, s_enrol_purge, s_close,
};

kh_err kh_meta_open_sqlite(const char *path, kh_meta **out)
{
  meta_sqlite *s = calloc(1, sizeof *s);
  kh_err e = KH_OK;
  *out = NULL;
  if (!s)
    return kh_seterr(KH_ERR_NOMEM, "metadata");
  s->base.ops = &g_sqlite_ops;
  pthread_mutex_init(&s->lock, NULL);
  /* the file is made 0600 before SQLite opens it */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    e = kh_seterr(KH_ERR_IO, "metadata %s: cannot open", path);
    goto out;
  }
  close(fd);
  int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX |
                           SQLITE_OPEN_NOFOLLOW, NULL);
  if (rc != SQLITE_OK) {
    e = kh_seterr(KH_ERR_IO, "metadata %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "open");
    goto out;
  }
  sqlite3_busy_timeout(s->db, BUSY_MS);
  if ((e = exec(s, "PRAGMA journal_mode = WAL")) ||
      (e = exec(s, "PRAGMA synchronous = FULL")) ||
      (e = exec(s, "PRAGMA foreign_keys = ON")) || (e = begin(s)))
    goto out;
  e = finish(s, exec(s, g_schema));
out:
  if (e) {
    kh_adderr(e, "metadata %s", path);
    if (s->db)
      sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return e;
  }
  *out = &s->base;
  return KH_OK;
}
