/* libkeyhold: a region server's metadata store (docs/operations.md §
 * "Server directory"): accounts and their quotas, devices, invitations and
 * pending enrolments (docs/protocol.md §7, §9).  None of it is secret: the
 * store holds public keys, ids, hashes of invitation tokens and the sealed
 * wraps of approved enrolments.
 *
 * The store is an ops table (kh_meta_ops) behind the kh_meta_* functions, so
 * another backend (PostgreSQL) can be added without touching the server.
 * The SQLite backend (kh_meta_open_sqlite) uses WAL and a busy timeout, so
 * operator commands (keyholdd admin) can use the database while a server
 * runs.  A kh_meta handle may be used from many threads at once.  Every
 * function returns a kh_err and leaves a detail for kh_errdetail(). */
#ifndef KEYHOLD_META_H
#define KEYHOLD_META_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"

#define KH_META_ID_HEX 32              /* account, device and enrolment ids */
#define KH_META_NAME_MAX 64            /* device names, bytes */
#define KH_META_WRAP_MAX 4096          /* a key object (KH_OBJMAX_KEY) */
#define KH_META_UNLIMITED UINT64_MAX   /* quota_bytes: no quota */
#define KH_META_ENROL_PENDING_MAX 10000 /* pending enrolments in the region */
#define KH_META_ENROL_BUCKET_MAX 16     /* pending enrolments per bucket */

typedef struct kh_meta kh_meta;

typedef struct kh_meta_account {
  char id[KH_META_ID_HEX + 1];
  int64_t created;              /* unix seconds */
  uint64_t quota_bytes;         /* KH_META_UNLIMITED: none */
  uint64_t used_bytes;          /* bytes of the account's objects (and uploads in flight) */
  unsigned devices;             /* devices not revoked (filled by get and list) */
} kh_meta_account;

typedef struct kh_meta_device {
  char id[KH_META_ID_HEX + 1];
  char account[KH_META_ID_HEX + 1];
  char name[KH_META_NAME_MAX + 1];
  uint8_t sign_pk[32];          /* Ed25519 */
  uint8_t box_pk[32];           /* X25519 */
  unsigned caps;                /* KH_CAP_* (keyhold/proto.h) */
  int64_t enrolled;             /* unix seconds */
  int64_t revoked;              /* unix seconds; 0: not revoked */
} kh_meta_device;

typedef enum kh_meta_enrol_state {
  KH_ENROL_PENDING = 0, KH_ENROL_APPROVED, KH_ENROL_REFUSED, KH_ENROL_EXPIRED
} kh_meta_enrol_state;

typedef struct kh_meta_enrolment {
  char id[KH_META_ID_HEX + 1];
  char bucket[3];               /* the code's first 2 characters */
  char name[KH_META_NAME_MAX + 1];
  uint8_t sign_pk[32], box_pk[32];
  uint8_t salt[16];
  uint8_t tag[32];
  int64_t created, expires;     /* unix seconds */
  kh_meta_enrol_state state;    /* EXPIRED is reported for a pending one past expires */
  /* the approval (state APPROVED), else zero */
  char account[KH_META_ID_HEX + 1];
  char device[KH_META_ID_HEX + 1];
  unsigned caps;
  uint8_t wrap[KH_META_WRAP_MAX];
  size_t wrap_len;
  uint8_t wrap_tag[32];
  char approver[KH_META_ID_HEX + 1];
} kh_meta_enrolment;

/* Callbacks of the list functions: a non-zero return stops the listing
 * (the list function then returns KH_OK).  A callback must not call into
 * the same kh_meta handle (the listing holds it). */
typedef int (*kh_meta_account_fn)(const kh_meta_account *a, void *ctx);
typedef int (*kh_meta_device_fn)(const kh_meta_device *d, void *ctx);
typedef int (*kh_meta_enrol_fn)(const kh_meta_enrolment *e, void *ctx);

/* The backend.  Each op has the contract of the kh_meta_* function of the
 * same name below. */
typedef struct kh_meta_ops {
  kh_err (*signup)(kh_meta *m, const kh_meta_device *first, const uint8_t *invite_hash,
                   int64_t now, uint64_t quota);
  kh_err (*account_get)(kh_meta *m, const char *id, kh_meta_account *out);
  kh_err (*account_list)(kh_meta *m, kh_meta_account_fn fn, void *ctx);
  kh_err (*quota_set)(kh_meta *m, const char *account, uint64_t bytes);
  kh_err (*usage_add)(kh_meta *m, const char *account, int64_t delta, bool check);
  kh_err (*usage_set)(kh_meta *m, const char *account, uint64_t bytes);
  kh_err (*device_add)(kh_meta *m, const kh_meta_device *d);
  kh_err (*device_get)(kh_meta *m, const char *id, kh_meta_device *out);
  kh_err (*device_list)(kh_meta *m, const char *account, kh_meta_device_fn fn, void *ctx);
  kh_err (*device_revoke)(kh_meta *m, const char *account, const char *id, int64_t now);
  kh_err (*invite_add)(kh_meta *m, const uint8_t hash[32], int64_t now, int64_t expires);
  kh_err (*enrol_add)(kh_meta *m, const kh_meta_enrolment *e, int64_t now);
  kh_err (*enrol_get)(kh_meta *m, const char *id, int64_t now, kh_meta_enrolment *out);
  kh_err (*enrol_list)(kh_meta *m, const char *bucket, int64_t now, kh_meta_enrol_fn fn,
                       void *ctx);
  kh_err (*enrol_approve)(kh_meta *m, const char *id, const kh_meta_enrolment *approval,
                          int64_t now);
  kh_err (*enrol_refuse)(kh_meta *m, const char *id, int64_t now);
  kh_err (*enrol_purge)(kh_meta *m, int64_t before);
  void (*close)(kh_meta *m);
} kh_meta_ops;

struct kh_meta {
  const kh_meta_ops *ops;
};

/* Open (creating if missing, mode 0600) the SQLite store at path. */
kh_err kh_meta_open_sqlite(const char *path, kh_meta **out);
/* Close; NULL is a no-op. */
void kh_meta_free(kh_meta *m);

/* ---- accounts ------------------------------------------------------------ */
/* Sign-up in one transaction: spend the invitation whose token hashes to
 * invite_hash (NULL: open sign-up), create the account first->account with
 * quota, and add first as its first device.  KH_ERR_DENIED if the invitation
 * is unknown, spent or expired (nothing changes); KH_ERR_EXISTS if the
 * account or device id is taken. */
kh_err kh_meta_signup(kh_meta *m, const kh_meta_device *first, const uint8_t *invite_hash,
                      int64_t now, uint64_t quota);
/* KH_ERR_NOTFOUND if there is no such account. */
kh_err kh_meta_account_get(kh_meta *m, const char *id, kh_meta_account *out);
/* Every account, by id. */
kh_err kh_meta_account_list(kh_meta *m, kh_meta_account_fn fn, void *ctx);
/* Set an account's quota (KH_META_UNLIMITED: none); NOTFOUND if missing. */
kh_err kh_meta_quota_set(kh_meta *m, const char *account, uint64_t bytes);
/* Add delta (may be negative) to the account's used bytes.  With check and
 * a positive delta, KH_ERR_NOSPACE (and nothing changes) if the result
 * would exceed the quota.  Used bytes never go below 0.  NOTFOUND if the
 * account is missing. */
kh_err kh_meta_usage_add(kh_meta *m, const char *account, int64_t delta, bool check);
/* Set the account's used bytes (a recount: the server counts its objects
 * at start, so that uploads cut off by a crash leave no reservation). */
kh_err kh_meta_usage_set(kh_meta *m, const char *account, uint64_t bytes);

/* ---- devices ------------------------------------------------------------- */
/* Add a device to an existing account (NOTFOUND if none; EXISTS if the id
 * is taken). */
kh_err kh_meta_device_add(kh_meta *m, const kh_meta_device *d);
/* Any device by id, revoked or not; NOTFOUND if none. */
kh_err kh_meta_device_get(kh_meta *m, const char *id, kh_meta_device *out);
/* The account's devices, revoked ones included, in order of enrolment. */
kh_err kh_meta_device_list(kh_meta *m, const char *account, kh_meta_device_fn fn, void *ctx);
/* Mark a device of account revoked at now.  NOTFOUND if it is not the
 * account's; KH_ERR_STATE if it is already revoked. */
kh_err kh_meta_device_revoke(kh_meta *m, const char *account, const char *id, int64_t now);

/* ---- invitations ----------------------------------------------------------- */
/* Record an invitation by the SHA-256 of its token (the token itself is
 * never stored); expires 0: never. */
kh_err kh_meta_invite_add(kh_meta *m, const uint8_t hash[32], int64_t now, int64_t expires);

/* ---- enrolments (docs/protocol.md §9.2) -------------------------------------- */
/* Record a pending enrolment (e->id, bucket, name, keys, salt, tag, created,
 * expires; the approval fields are ignored).  KH_ERR_NOSPACE if the region
 * already has KH_META_ENROL_PENDING_MAX pending enrolments or the bucket
 * KH_META_ENROL_BUCKET_MAX (expired ones do not count); EXISTS if the id is
 * taken. */
kh_err kh_meta_enrol_add(kh_meta *m, const kh_meta_enrolment *e, int64_t now);
/* One enrolment; a pending one past its expiry reads as KH_ENROL_EXPIRED.
 * NOTFOUND if none. */
kh_err kh_meta_enrol_get(kh_meta *m, const char *id, int64_t now, kh_meta_enrolment *out);
/* The pending, unexpired enrolments of a bucket, oldest first. */
kh_err kh_meta_enrol_list(kh_meta *m, const char *bucket, int64_t now, kh_meta_enrol_fn fn,
                          void *ctx);
/* Approve a pending, unexpired enrolment in one transaction: record the
 * approval (approval->account, device, caps, wrap, wrap_len, wrap_tag,
 * approver) and add the device (name and keys from the enrolment, enrolled
 * at now) to the account.  KH_ERR_EXISTS if it was already decided,
 * KH_ERR_STATE if it expired, NOTFOUND if there is no such enrolment or
 * account.  Nothing changes on failure. */
kh_err kh_meta_enrol_approve(kh_meta *m, const char *id, const kh_meta_enrolment *approval,
                             int64_t now);
/* Refuse a pending enrolment: EXISTS if already decided, STATE if expired,
 * NOTFOUND if none. */
kh_err kh_meta_enrol_refuse(kh_meta *m, const char *id, int64_t now);
/* Delete enrolments that expired (or were decided) before `before`. */
kh_err kh_meta_enrol_purge(kh_meta *m, int64_t before);

#endif
