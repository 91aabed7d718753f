/* The keyhold log entry: one key operation as "key value" text lines
 * (docs/log.md §5).  Parsing is strict so that every auditor reads an entry
 * the same way: fixed header, known keys only, each at most once, bounded
 * values, no control characters. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syncfs, strndup, gmtime_r */
#endif
#include "log/log_internal.h"
#include "common/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char HEADER[] = "keyhold-log-entry v1";

static const char *const OPS[] = {
  [KH_LOG_OP_WRAP] = "wrap", [KH_LOG_OP_UNWRAP] = "unwrap", [KH_LOG_OP_REWRAP] = "rewrap",
  [KH_LOG_OP_DESTROY] = "destroy", [KH_LOG_OP_ROTATE] = "rotate",
  [KH_LOG_OP_ESCROW_ENABLE] = "escrow-enable", [KH_LOG_OP_ESCROW_ATTEMPT] = "escrow-attempt",
  [KH_LOG_OP_ENROL] = "enrol", [KH_LOG_OP_REVOKE] = "revoke",
};

const char *kh_log_op_name(kh_log_op op)
{
  if ((int)op < KH_LOG_OP_WRAP || (int)op > KH_LOG_OP_LAST)
    return NULL;
  return OPS[op];
}

/* ---- UTC time, without gmtime/timegm ---- */

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant) */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

#define TIME_MIN 0                     /* 1970-01-01T00:00:00Z */
#define TIME_MAX 253402300799LL        /* 9999-12-31T23:59:59Z */

kh_err kh_log_time_format(int64_t t, char out[21])
{
  struct tm tm;
  time_t tt = (time_t)t;
  if (t < TIME_MIN || t > TIME_MAX || !gmtime_r(&tt, &tm))
    return kh_seterr(KH_ERR_INVAL, "time %lld out of range", (long long)t);
  /* fields are in range (t is bounded), so each prints as exactly its width */
  snprintf(out, 21, "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)(tm.tm_year + 1900) % 10000,
           (unsigned)(tm.tm_mon + 1) % 100, (unsigned)tm.tm_mday % 100,
           (unsigned)tm.tm_hour % 100, (unsigned)tm.tm_min % 100, (unsigned)tm.tm_sec % 100);
  return KH_OK;
}

static bool digits(const char *s, size_t n, unsigned *v)
{
  unsigned x = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    x = x * 10 + (unsigned)(s[i] - '0');
  }
  *v = x;
  return true;
}

kh_err kh_log_time_parse(const char *s, size_t len, int64_t *t)
{
  static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  unsigned y, mo, d, h, mi, se;
  if (len != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != 'Z' || !digits(s, 4, &y) || !digits(s + 5, 2, &mo) ||
      !digits(s + 8, 2, &d) || !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) ||
      !digits(s + 17, 2, &se))
    return kh_seterr(KH_ERR_FORMAT, "time is not YYYY-MM-DDTHH:MM:SSZ");
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
      (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || se > 59)
    return kh_seterr(KH_ERR_FORMAT, "time out of range");
  *t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  return KH_OK;
}

/* ---- field validation ---- */

static bool region_ok(const char *s, size_t n)
{
  if (n == 0 || n > KH_LOG_REGION_MAX)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
      return false;
  return true;
}

static bool hex_ok(const char *s, size_t n, size_t max)
{
  if (n == 0 || n > max)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

/* printable UTF-8; with nospace, also no ' ' */
static bool text_ok(const char *s, size_t n, size_t max, bool nospace)
{
  if (n == 0 || n > max || !kh_utf8_printable((const uint8_t *)s, n))
    return false;
  if (nospace && memchr(s, ' ', n))
    return false;
  /* no leading/trailing blanks: they would not survive a human copy */
  return s[0] != ' ' && s[n - 1] != ' ';
}

static kh_err check(const kh_log_entry *e)
{
  if (!region_ok(e->region, strlen(e->region)))
    return kh_seterr(KH_ERR_FORMAT, "entry: bad region");
  if (!hex_ok(e->account, strlen(e->account), KH_LOG_ACCOUNT_MAX))
    return kh_seterr(KH_ERR_FORMAT, "entry: account must be lowercase hex");
  if (!kh_log_op_name(e->op))
    return kh_seterr(KH_ERR_FORMAT, "entry: unknown op");
  if (!text_ok(e->key, strlen(e->key), KH_LOG_KEY_MAX, true))
    return kh_seterr(KH_ERR_FORMAT, "entry: bad key id");
  if (!text_ok(e->requester, strlen(e->requester), KH_LOG_TEXT_MAX, false))
    return kh_seterr(KH_ERR_FORMAT, "entry: bad requester");
  if (!text_ok(e->reason, strlen(e->reason), KH_LOG_TEXT_MAX, false))
    return kh_seterr(KH_ERR_FORMAT, "entry: bad reason");
  if (e->device[0] && !text_ok(e->device, strlen(e->device), KH_LOG_DEVICE_MAX, true))
    return kh_seterr(KH_ERR_FORMAT, "entry: bad device id");
  if (e->result != KH_LOG_RESULT_NONE && e->result != KH_LOG_RESULT_OK &&
      e->result != KH_LOG_RESULT_FAIL)
    return kh_seterr(KH_ERR_FORMAT, "entry: bad result");
  return KH_OK;
}

kh_err kh_log_entry_format(const kh_log_entry *e, char **out, size_t *len)
{
  kh_err err;
  kh_buf b;
  char ts[21];
  *out = NULL;
  *len = 0;
  kh_buf_init(&b, KH_LOG_ENTRY_MAX);
  if ((err = check(e)) || (err = kh_log_time_format(e->time, ts)))
    return err;
  if ((err = kh_buf_printf(&b, "%s\ntime %s\nregion %s\naccount %s\nop %s\nkey %s\n"
                           "requester %s\nreason %s\n", HEADER, ts, e->region, e->account,
                           kh_log_op_name(e->op), e->key, e->requester, e->reason)))
    goto out;
  if (e->device[0] && (err = kh_buf_printf(&b, "device %s\n", e->device)))
    goto out;
  if (e->has_attempt && (err = kh_buf_printf(&b, "attempt %u\n", (unsigned)e->attempt)))
    goto out;
  if (e->result && (err = kh_buf_printf(&b, "result %s\n",
                                        e->result == KH_LOG_RESULT_OK ? "ok" : "fail")))
    goto out;
  if ((err = kh_buf_put_u8(&b, 0)))
    goto out;
  *len = b.len - 1;
  *out = (char *)kh_buf_detach(&b, NULL);
out:
  kh_buf_release(&b);
  return err;
}

enum { F_TIME, F_REGION, F_ACCOUNT, F_OP, F_KEY, F_REQUESTER, F_REASON, F_DEVICE,
       F_ATTEMPT, F_RESULT, F__N };
static const char *const FIELDS[F__N] = {"time", "region", "account", "op", "key",
                                         "requester", "reason", "device", "attempt",
                                         "result"};

static kh_err copy_field(char *dst, size_t cap, const char *v, size_t n)
{
  if (n >= cap)
    return kh_seterr(KH_ERR_FORMAT, "entry: value too long");
  memcpy(dst, v, n);
  dst[n] = '\0';
  return KH_OK;
}

kh_err kh_log_entry_parse(const void *data, size_t len, kh_log_entry *e)
{
  const char *p = data, *end = p + len;
  bool seen[F__N] = {false};
  kh_err err;
  memset(e, 0, sizeof *e);
  if (len > KH_LOG_ENTRY_MAX)
    return kh_seterr(KH_ERR_FORMAT, "entry larger than %d bytes", KH_LOG_ENTRY_MAX);
  if (len == 0 || p[len - 1] != '\n')
    return kh_seterr(KH_ERR_FORMAT, "entry: not newline-terminated");
  const char *nl = memchr(p, '\n', len);
  if ((size_t)(nl - p) != strlen(HEADER) || memcmp(p, HEADER, strlen(HEADER)) != 0)
    return kh_seterr(KH_ERR_FORMAT, "entry: first line is not \"%s\"", HEADER);
  p = nl + 1;
  while (p < end) {
    nl = memchr(p, '\n', (size_t)(end - p));
    const char *sp = memchr(p, ' ', (size_t)(nl - p));
    if (!sp)
      return kh_seterr(KH_ERR_FORMAT, "entry: line without \"key value\"");
    size_t klen = (size_t)(sp - p), vlen = (size_t)(nl - sp - 1);
    const char *v = sp + 1;
    int f;
    for (f = 0; f < F__N; f++)
      if (strlen(FIELDS[f]) == klen && memcmp(FIELDS[f], p, klen) == 0)
        break;
    if (f == F__N)
      return kh_seterr(KH_ERR_FORMAT, "entry: unknown key \"%.*s\"", (int)(klen > 32 ? 32 : klen), p);
    if (seen[f])
      return kh_seterr(KH_ERR_FORMAT, "entry: duplicate key \"%s\"", FIELDS[f]);
    seen[f] = true;
    if (!kh_utf8_printable((const uint8_t *)v, vlen))
      return kh_seterr(KH_ERR_FORMAT, "entry: %s has control characters or bad UTF-8",
                       FIELDS[f]);
    switch (f) {
    case F_TIME:
      err = kh_log_time_parse(v, vlen, &e->time);
      break;
    case F_REGION: err = copy_field(e->region, sizeof e->region, v, vlen); break;
    case F_ACCOUNT: err = copy_field(e->account, sizeof e->account, v, vlen); break;
    case F_KEY: err = copy_field(e->key, sizeof e->key, v, vlen); break;
    case F_REQUESTER: err = copy_field(e->requester, sizeof e->requester, v, vlen); break;
    case F_REASON: err = copy_field(e->reason, sizeof e->reason, v, vlen); break;
    case F_DEVICE:
      err = copy_field(e->device, sizeof e->device, v, vlen);
      if (!err && vlen == 0)
        err = kh_seterr(KH_ERR_FORMAT, "entry: empty device");
      break;
    case F_OP:
      err = kh_seterr(KH_ERR_FORMAT, "entry: unknown op \"%.*s\"", (int)(vlen > 32 ? 32 : vlen), v);
      for (int o = KH_LOG_OP_WRAP; o <= KH_LOG_OP_LAST; o++)
        if (strlen(OPS[o]) == vlen && memcmp(OPS[o], v, vlen) == 0) {
          e->op = (kh_log_op)o;
          err = KH_OK;
        }
      break;
    case F_ATTEMPT: {
      uint64_t a = 0;
      err = KH_OK;
      if (vlen == 0 || vlen > 10 || (vlen > 1 && v[0] == '0'))
        err = kh_seterr(KH_ERR_FORMAT, "entry: bad attempt number");
      for (size_t i = 0; !err && i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9')
          err = kh_seterr(KH_ERR_FORMAT, "entry: bad attempt number");
        a = a * 10 + (uint64_t)(v[i] - '0');
      }
      if (!err && a > UINT32_MAX)
        err = kh_seterr(KH_ERR_FORMAT, "entry: attempt number too large");
      e->attempt = (uint32_t)a;
      e->has_attempt = true;
      break;
    }
    case F_RESULT:
      if (vlen == 2 && !memcmp(v, "ok", 2))
        e->result = KH_LOG_RESULT_OK, err = KH_OK;
      else if (vlen == 4 && !memcmp(v, "fail", 4))
        e->result = KH_LOG_RESULT_FAIL, err = KH_OK;
      else
        err = kh_seterr(KH_ERR_FORMAT, "entry: result must be ok or fail");
      break;
    default:
      err = KH_OK;
    }
    if (err)
      return err;
    p = nl + 1;
  }
  for (int f = F_TIME; f <= F_REASON; f++)
    if (!seen[f])
      return kh_seterr(KH_ERR_FORMAT, "entry: missing \"%s\"", FIELDS[f]);
  return check(e);
}
