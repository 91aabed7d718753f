/* libkeyhold: the region's key service (docs/threat-model.md).
 *
 * The key service holds the region's root key (lib/kms/rootkey.h: sealed
 * key file or PKCS#11) and the region's transparency log (keyhold/log.h).
 * Every operation on an account key is first appended to the log; a key
 * leaves the service only after its log entry is durable and covered by a
 * signed checkpoint (fail closed).  The embedded region keeps its state in
 *
 *   <region>/kms/   config, sealed root key, wrapped log key, escrow records
 *   <region>/log/   the C2SP tlog-tiles log and its verifier key
 *
 * neither of which is the provider's data (accounts/...).
 *
 * One kh_kms handle holds an exclusive lock on <region>/kms/lock for its
 * lifetime (other processes wait).  Within a process it may be used from
 * many threads at once: concurrent log appends are grouped into one durable
 * batch (group commit).  Every function returns a kh_err and leaves a detail
 * for kh_errdetail(); nothing prints. */
#ifndef KEYHOLD_KMS_H
#define KEYHOLD_KMS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"
#include "keyhold/log.h"
#include "keyhold/secret.h"

typedef struct kh_kms kh_kms;

/* Wrong escrow attempts in a row after which the record is destroyed. */
#define KH_KMS_ESCROW_LIMIT 10

/* A region instance id: 128 random bits, lowercase hex, made when the region
 * is created (docs/format.md, region marker).  It tells apart regions that
 * share a short id ("local") on one machine. */
#define KH_REGION_INSTANCE_HEX 32

/* ---- the operator secret (sealed-file backend) ----------------------------
 * Path: $KEYHOLD_OPERATOR_SECRET_FILE, else
 * $KEYHOLD_OPERATOR_DIR/<region>-<instance>.secret, else
 * ~/.config/keyhold/operator/<region>-<instance>.secret (<region>.secret
 * when instance is NULL or "": regions made before instance ids).  With
 * create, a missing file is made (32 random bytes, base64, mode 0600,
 * directory 0700).  *out is freed with kh_secret_free. */
kh_err kh_kms_operator_secret(const char *region_id, const char *instance, bool create,
                              kh_secret **out);

/* ---- region lifecycle --------------------------------------------------- */

/* true if region_path holds key service state (<region>/kms/config). */
bool kh_kms_exists(const char *region_path);

/* Create the key service of a new region: root key (PKCS#11 when
 * $KEYHOLD_PKCS11_MODULE is set, else a sealed file under the operator
 * secret, created if missing), the log signing key (wrapped by the root
 * key), the empty log and <region>/log/verifier.  KH_ERR_EXISTS if
 * <region>/kms/config exists.  On failure kms/ and log/ are removed again. */
kh_err kh_kms_create(const char *region_path, const char *region_id);
/* The same for a region whose instance id (KH_REGION_INSTANCE_HEX lowercase
 * hex digits) is already chosen: the log origin is
 * "keyhold.local/<region>/<instance>/log" and the operator secret is keyed
 * by it.  kh_kms_create picks a random instance id. */
kh_err kh_kms_create_instance(const char *region_path, const char *region_id,
                              const char *instance);

/* Open the key service of a region (waits for the kms lock).  The root key
 * backend comes from kms/config; its credentials from the environment
 * (operator secret, or $KEYHOLD_PKCS11_TOKEN / $KEYHOLD_PKCS11_PIN_FILE). */
kh_err kh_kms_open(const char *region_path, kh_kms **out);
void kh_kms_free(kh_kms *k);

const char *kh_kms_region_id(const kh_kms *k);
const char *kh_kms_log_origin(const kh_kms *k);
const char *kh_kms_log_vkey(const kh_kms *k);    /* verifier key line */
/* e.g. "file:local:v1"; valid until the next kh_kms_rotate on this handle
 * (do not call it while another thread rotates) */
const char *kh_kms_rootkey_id(const kh_kms *k);

/* ---- requests ------------------------------------------------------------ */

/* Signs msg with a device's Ed25519 key (e.g. kh_vault_device_sign). */
typedef kh_err (*kh_kms_sign_fn)(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64]);

/* A device's request signed over the exact log entry the service will
 * append (docs/protocol.md §10.2): entry is the text kh_kms_prepare made
 * (without a `device` line), sig the device's Ed25519 signature over
 * "keyhold-device-request v1\n" followed by entry (docs/log.md §5.1), pk
 * the device's signing key as the caller knows it (its metadata store),
 * device_id the device's 32 lowercase hex id. */
typedef struct kh_kms_presigned {
  const char *entry;
  size_t len;
  const char *device_id;
  const uint8_t *sig;        /* 64 bytes */
  const uint8_t *pk;         /* 32 bytes */
} kh_kms_presigned;

/* Who asks and why; both end up in the log entry (printable text, 1..512
 * bytes).  A device that asks on its own behalf passes its id and a signer:
 * the entry's `device` field then carries "<device id>:<base64 signature>"
 * over the entry (docs/log.md §5.1), which is how `keyhold watch` tells the
 * account's own requests from anybody else's.  A device that is not in
 * this process (a request over the network) uses the *_signed functions
 * below instead. */
typedef struct kh_kms_request {
  const char *requester;
  const char *reason;
  const char *device_id;     /* NULL, or 32 lowercase hex digits */
  kh_kms_sign_fn sign;       /* with device_id */
  void *sign_ctx;
} kh_kms_request;

/* How far the time of a presigned entry may be from the service's clock. */
#define KH_KMS_PRESIGNED_WINDOW 300

/* Prepare the entry a device signs (prepare / sign / commit): the exact
 * text the operation op on account will append for device_id with reason
 * (printable, 1..512 bytes), without the device line.  op is
 * KH_LOG_OP_UNWRAP, KH_LOG_OP_DESTROY or KH_LOG_OP_ESCROW_ENABLE (whose
 * record id is chosen here and taken from the entry at commit).
 * *entry is malloc'd (NUL-terminated, *len bytes), freed by the caller.
 * KH_ERR_STATE if the account has no key-service wrap (unwrap) or was
 * destroyed; KH_ERR_INVAL on a bad argument. */
kh_err kh_kms_prepare(kh_kms *k, kh_log_op op, const char *account, const char *device_id,
                      const char *reason, char **entry, size_t *len);

/* What an unwrap returns.  Owned by the caller: kh_kms_release_clear wipes
 * the key and frees everything (idempotent). */
typedef struct kh_kms_release {
  uint8_t *key;              /* 32 bytes in sodium memory, or NULL */
  int cipher;                /* the account's cipher id */
  uint64_t index;            /* the log entry's index */
  uint64_t size;             /* size of the checkpoint that covers it */
  kh_log_hash root;          /* its root */
  kh_log_hash leaf;          /* leaf hash of the entry */
  kh_log_hash proof[KH_LOG_PROOF_MAX];
  size_t plen;               /* inclusion proof of index in (size, root) */
  char *checkpoint;          /* signed checkpoint note (+ cosignatures) */
  size_t checkpoint_len;
  char *entry;               /* the entry text */
  size_t entry_len;
  unsigned cosignatures;     /* witness cosignatures obtained */
  struct kh_kms *pool_;      /* private: key slot owner (clear before kh_kms_free) */
  uint32_t slot_;
} kh_kms_release;
/* Wipe the key and free everything; call it before kh_kms_free of the
 * handle that released it (the key may live in that handle's secure slab). */
void kh_kms_release_clear(kh_kms_release *r);

/* ---- operations (each one logged first) ---------------------------------- */

/* Standard protection: wrap an account key (32 bytes, with its cipher id)
 * under the root key.  Logs "wrap", then stores the key-service wrap
 * (kind 2) in accounts/<account>/keys/.  KH_ERR_EXISTS if the account
 * already has one; KH_ERR_STATE if it was destroyed (e2e). */
kh_err kh_kms_wrap(kh_kms *k, const char *account, const uint8_t key[32], int cipher,
                   const kh_kms_request *rq);

/* Release an account key: KH_ERR_STATE if the account has no key-service
 * wrap (end-to-end protection) or was destroyed, also by a destroy running
 * concurrently (both hold the account's lock); KH_ERR_LOG if the log could
 * not be written (nothing released); KH_ERR_ROLLBACK if the log was rolled
 * back underneath the service (nothing released until an operator resolves
 * it, docs/kms-rootkey.md); KH_ERR_DENIED if too few witnesses cosigned.  On
 * success out holds the key, the entry's index and its inclusion proof in
 * the signed checkpoint.  Thread-safe; concurrent calls share log appends. */
kh_err kh_kms_unwrap(kh_kms *k, const char *account, const kh_kms_request *rq,
                     kh_kms_release *out);

/* The same operations for a device over the network (prepare / sign /
 * commit, docs/protocol.md §10.2): the service appends exactly ps->entry,
 * with the device line added, only if it parses, is in canonical form,
 * names this region, the account, the operation and the key the operation
 * acts on, has requester "device:<ps->device_id>" and a time within
 * KH_KMS_PRESIGNED_WINDOW seconds of the service's clock, and ps->sig
 * verifies with ps->pk.  Otherwise KH_ERR_AUTH (the signature) or
 * KH_ERR_DENIED (an entry that does not describe this operation, e.g. one
 * prepared before a rotation), and nothing is logged or done. */
kh_err kh_kms_unwrap_signed(kh_kms *k, const char *account, const kh_kms_presigned *ps,
                            kh_kms_release *out);
kh_err kh_kms_destroy_signed(kh_kms *k, const char *account, const kh_kms_presigned *ps);
kh_err kh_kms_escrow_enable_signed(kh_kms *k, const char *account, const uint8_t key[32],
                                   int cipher, const kh_secret *passcode,
                                   const kh_kms_presigned *ps);

/* Without opening the service (no lock, no root key): *destroyed = true if
 * the key service of region_path destroyed the account's wrap (its
 * tombstone kms/destroyed/<account> exists).  The authoritative answer to
 * "can the operator still recover this account"; KH_ERR_IO if it cannot be
 * told. */
kh_err kh_kms_account_destroyed(const char *region_path, const char *account, bool *destroyed);

/* true if the account has a key-service wrap that is not destroyed. */
kh_err kh_kms_has_wrap(kh_kms *k, const char *account, bool *has);

/* End-to-end: log "destroy", then delete the account's key-service wrap and
 * escrow record and remember the account as destroyed (kms/destroyed/), so a
 * wrap restored from a backup is refused.  Idempotent. */
kh_err kh_kms_destroy(kh_kms *k, const char *account, const kh_kms_request *rq);

/* Root-key rotation: new root-key version, log "rotate", then rewrap every
 * account's key-service wrap (one "rewrap" entry each, logged before the
 * new wrap is stored) and the log key.  *n (may be NULL) = wraps rewrapped. */
kh_err kh_kms_rotate(kh_kms *k, const kh_kms_request *rq, size_t *n);

/* ---- escrow --------------------------------------------------------------- */

/* Store the account key behind a recovery passcode (replaces an existing
 * record and resets its counter).  Logs "escrow-enable" first.
 * KH_ERR_STATE if the account was destroyed (e2e). */
kh_err kh_kms_escrow_enable(kh_kms *k, const char *account, const uint8_t key[32], int cipher,
                            const kh_secret *passcode, const kh_kms_request *rq);

/* One attempt: the counter is made durable and "escrow-attempt" (attempt n)
 * logged BEFORE the passcode is judged (a process killed while judging has
 * spent the attempt; a counter found at the limit is destroyed first).  Right: out holds the key and the
 * counter of wrong attempts is reset.  Wrong: KH_ERR_PASSCODE; at the
 * KH_KMS_ESCROW_LIMIT-th wrong attempt in a row the record is destroyed
 * (logged).  No record: KH_ERR_NOTFOUND; destroyed: KH_ERR_DENIED.
 * *left (may be NULL) = wrong attempts still allowed. */
kh_err kh_kms_escrow_recover(kh_kms *k, const char *account, const kh_secret *passcode,
                             const kh_kms_request *rq, kh_kms_release *out, uint32_t *left);

typedef struct kh_kms_escrow_info {
  bool present;              /* a record exists */
  bool destroyed;            /* destroyed after too many wrong attempts */
  uint32_t failed;           /* wrong attempts in a row */
  uint64_t attempts;         /* every attempt ever started (never decreases) */
} kh_kms_escrow_info;
kh_err kh_kms_escrow_status(kh_kms *k, const char *account, kh_kms_escrow_info *info);

/* ---- configuration (kms/config) ------------------------------------------ */

/* Require n witness cosignatures before any release; each witness is a
 * local state directory (keyhold witness) that gets this log added. */
kh_err kh_kms_set_witnesses(kh_kms *k, unsigned required, const char *const *dirs, size_t n);

/* ---- device statements (docs/log.md §5.2) -------------------------------- */

/* Append a device-signed account statement (op enrol or revoke) exactly as
 * given: entry is the full entry text with its `device` field, as the
 * signing device built it.  Refused (KH_ERR_FORMAT) unless it parses, is in
 * canonical form (formatting it again gives the same bytes), its op is enrol
 * or revoke, its region is this service's, and its requester is
 * "device:<id>" for the id in its device field; KH_ERR_AUTH unless the
 * signature verifies with signer_pk (the caller looks the signer up: only
 * the caller knows the account's devices).  It does not judge the time or
 * whether the signer may make the statement: the caller does.  Durable in
 * the log when it returns KH_OK; *index (may be NULL) is the entry's
 * index.  KH_ERR_LOG if the log could not be written. */
kh_err kh_kms_append_statement(kh_kms *k, const char *entry, size_t len,
                               const uint8_t signer_pk[32], uint64_t *index);

/* ---- for watchers -------------------------------------------------------- */

/* KH_OK if entry e carries, in its device field, device_id and a valid
 * signature by pk over the entry (docs/log.md §5.1); KH_ERR_AUTH if not. */
kh_err kh_kms_verify_device_entry(const kh_log_entry *e, const char *device_id,
                                  const uint8_t pk[32]);

/* ---- for tests ------------------------------------------------------------- */

/* Make the next n log appends fail as if the disk failed (KH_ERR_LOG). */
void kh_kms_test_fail_appends(kh_kms *k, unsigned n);
/* Fault injection: the n-th allocation (kind 0) or write (kind 1: files
 * under kms/, provider objects, log appends) the key service makes from now
 * on fails as if memory or the disk failed; n = 0 disarms.  Every later call
 * succeeds again.  For tests (tests/unit/test_kms.c). */
void kh_kms_test_fault(kh_kms *k, int kind, unsigned n);
/* Crash points: fn(ctx, point) is called at named points of an operation
 * (docs/kms-rootkey.md "Crash points"), e.g. "escrow-counter-written" after
 * an attempt is durably counted and before it is judged.  A test's fn may
 * _exit or raise SIGKILL there.  NULL removes the hook. */
void kh_kms_test_hook(kh_kms *k, void (*fn)(void *ctx, const char *point), void *ctx);
/* Log batches written and entries in them since open. */
void kh_kms_stats(const kh_kms *k, uint64_t *batches, uint64_t *entries);

#endif
