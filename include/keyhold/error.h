/* keyhold — error codes shared by every part of libkeyhold.
 *
 * Every library function that can fail returns a kh_err.  KH_OK is 0.  The
 * library never prints: a failing call may leave a one-line human-readable
 * detail in a thread-local buffer, read with kh_errdetail().  Failed
 * authentication or decryption is always KH_ERR_AUTH and says nothing about
 * which check failed. */
#ifndef KEYHOLD_ERROR_H
#define KEYHOLD_ERROR_H

typedef enum kh_err {
  KH_OK = 0,
  KH_ERR_NOMEM,       /* allocation failed */
  KH_ERR_IO,          /* read/write/fsync failed (detail names the path) */
  KH_ERR_NOSPACE,     /* disk or quota full */
  KH_ERR_NOTFOUND,    /* object, file, snapshot or account missing */
  KH_ERR_EXISTS,      /* refusing to overwrite */
  KH_ERR_AUTH,        /* authentication or decryption failed */
  KH_ERR_FORMAT,      /* malformed data (after authentication, or public) */
  KH_ERR_INVAL,       /* bad argument from the caller */
  KH_ERR_PASSCODE,    /* wrong passcode */
  KH_ERR_LOCKED,      /* region locked by another operation */
  KH_ERR_CORRUPT,     /* damage found (check) */
  KH_ERR_TOOBIG,      /* a bounded buffer or field would exceed its cap */
  KH_ERR_UNSUPPORTED, /* unknown version / algorithm */
  KH_ERR_AMBIGUOUS,   /* snapshot id prefix matches more than one */
  KH_ERR_STATE,       /* operation not allowed in this state (e.g. e2e) */
  KH_ERR_LOG,         /* the transparency log could not be written: nothing released */
  KH_ERR_DENIED,      /* refused: attempt limit, destroyed record, policy */
  KH_ERR_CRYPTO,      /* crypto library unavailable */
  KH_ERR_HSM,         /* PKCS#11 token error */
  KH_ERR_INVALID_PROOF, /* a Merkle proof or signature did not verify */
  KH_ERR_ROLLBACK,    /* the key service's log was rolled back or forked under it */
  KH_ERR_CANCELLED,   /* stopped at the caller's request (kh_backup_opts.cancel) */
  KH_ERR__COUNT
} kh_err;

/* Static English text for a code; never NULL. */
const char *kh_strerror(kh_err e);

/* Detail of the last failure on this thread ("" if none).  Valid until the
 * next library call on the same thread. */
const char *kh_errdetail(void);

#endif
