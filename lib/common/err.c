#include "common/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The detail and the code it was recorded for: a detail left behind by an
 * error that was handled (a wrap that was not ours, a retry that worked)
 * must never be taken as the cause of a later, different error. */
static _Thread_local char detail[KH_ERRDETAIL_MAX];
static _Thread_local kh_err detail_code;

static const char *const messages[KH_ERR__COUNT] = {
  [KH_OK] = "success",
  [KH_ERR_NOMEM] = "out of memory",
  [KH_ERR_IO] = "input/output error",
  [KH_ERR_NOSPACE] = "no space left on device",
  [KH_ERR_NOTFOUND] = "not found",
  [KH_ERR_EXISTS] = "already exists",
  [KH_ERR_AUTH] = "authentication failed (data damaged, moved or forged)",
  [KH_ERR_FORMAT] = "malformed data",
  [KH_ERR_INVAL] = "invalid argument",
  [KH_ERR_PASSCODE] = "wrong passcode",
  [KH_ERR_LOCKED] = "locked by another operation",
  [KH_ERR_CORRUPT] = "damage found",
  [KH_ERR_TOOBIG] = "too large",
  [KH_ERR_UNSUPPORTED] = "unsupported version or algorithm",
  [KH_ERR_AMBIGUOUS] = "ambiguous id",
  [KH_ERR_STATE] = "not allowed in this state",
  [KH_ERR_LOG] = "transparency log unavailable; nothing released",
  [KH_ERR_DENIED] = "denied",
  [KH_ERR_CRYPTO] = "cryptography library unavailable",
  [KH_ERR_HSM] = "PKCS#11 token error",
  [KH_ERR_INVALID_PROOF] = "proof or signature did not verify",
  [KH_ERR_ROLLBACK] = "log rolled back",
  [KH_ERR_CANCELLED] = "interrupted",
};

const char *kh_strerror(kh_err e)
{
  if ((unsigned)e >= KH_ERR__COUNT || !messages[e])
    return "unknown error";
  return messages[e];
}

const char *kh_errdetail(void) { return detail; }

void kh_clearerr(void)
{
  detail[0] = '\0';
  detail_code = KH_OK;
}

kh_err kh_seterr(kh_err e, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  detail_code = e;
  return e;
}

kh_err kh_adderr(kh_err e, const char *fmt, ...)
{
  char prefix[512], old[sizeof detail];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  /* only a detail recorded for this very code describes its cause */
  memcpy(old, detail, sizeof old);
  if (old[0] && detail_code == e)
    snprintf(detail, sizeof detail, "%.400s: %.600s", prefix, old);
  else
    snprintf(detail, sizeof detail, "%.1000s", prefix);
  detail_code = e;
  return e;
}

void kh_err_save(kh_errsave *s, kh_err e)
{
  s->code = e;
  if (detail_code == e)
    memcpy(s->detail, detail, sizeof s->detail);
  else
    s->detail[0] = '\0';
}

kh_err kh_err_restore(const kh_errsave *s)
{
  memcpy(detail, s->detail, sizeof detail);
  detail[sizeof detail - 1] = '\0';
  detail_code = s->code;
  return s->code;
}

kh_err kh_errno_code(int err)
{
  switch (err) {
  case ENOSPC:
  case EDQUOT: return KH_ERR_NOSPACE;
  case ENOENT: return KH_ERR_NOTFOUND;
  case EEXIST: return KH_ERR_EXISTS;
  case ENOMEM: return KH_ERR_NOMEM;
  default: return KH_ERR_IO;
  }
}
