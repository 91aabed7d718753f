/* libkeyhold: a device using the key service behind a region server
 * (docs/protocol.md §10): standard-protection status, the switch to
 * end-to-end protection, escrow with a passcode derivative, and the
 * recovery of an account by a fresh device from the escrow passcode alone.
 *
 * Requests that change what the key service holds are device-signed over
 * the exact log entry the service will append (prepare / sign / commit):
 * the device checks every field of the prepared entry it can (time within
 * KH_KMS_PRESIGNED_WINDOW of its clock, region, account, op, requester
 * "device:<its id>", its reason, no device line) before it signs.
 *
 * The passcode never leaves the device: only
 *   secret = Argon2id(passcode, salt, ops 3, 64 MiB), 32 bytes, where
 *   salt = BLAKE2b-128("keyhold-escrow v1\n" instance "\n" account "\n")
 * is sent, and the key service keeps it behind its own Argon2id, its root
 * key and its attempt counter (docs/threat-model.md "Server mode").
 * Nothing prints. */
#ifndef KEYHOLD_KEYSVC_H
#define KEYHOLD_KEYSVC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"
#include "keyhold/kms.h"
#include "keyhold/log.h"
#include "keyhold/secret.h"
#include "keyhold/vault.h"

#define KH_KEYSVC_ESCROW_OPS 3
#define KH_KEYSVC_ESCROW_MEMKIB (64u * 1024)

/* The escrow secret of a passcode for account on region instance (both 32
 * lowercase hex); *out (32 bytes) is freed with kh_secret_free.  ops and
 * memkib 0: the defaults above (tests pass less). */
kh_err kh_keysvc_escrow_secret(const char *instance, const char *account,
                               const kh_secret *passcode, uint32_t ops, uint32_t memkib,
                               kh_secret **out);

/* Is a prepared entry exactly the one this device asked for?  KH_OK, or
 * KH_ERR_AUTH with a detail naming the first field that is wrong (the
 * server tried to get something else signed).  Pure. */
kh_err kh_keysvc_entry_check(const char *entry, size_t len, const char *region,
                             const char *account, kh_log_op op, const char *device,
                             const char *reason, int64_t now);

typedef struct kh_keysvc_status {
  bool wrap;                 /* the key service holds a wrap (standard) */
  bool destroyed;            /* it destroyed it (end-to-end) */
  kh_kms_escrow_info escrow;
} kh_keysvc_status;
/* GET /v1/accounts/<a>/kms for a vault opened with a URL. */
kh_err kh_keysvc_status_get(kh_vault *v, kh_keysvc_status *out);

/* End-to-end protection: the key service logs "destroy" (the entry signed
 * by this device) and deletes its wrap and escrow record for good. */
kh_err kh_keysvc_destroy(kh_vault *v, const char *reason);

/* Escrow (admin device): the account key, with the escrow secret of
 * passcode, is given to the key service (logged "escrow-enable", signed by
 * this device); replaces an earlier record and resets its counter.
 * ops/memkib as for kh_keysvc_escrow_secret. */
kh_err kh_keysvc_escrow_enable(kh_vault *v, const kh_secret *passcode, uint32_t ops,
                               uint32_t memkib);

/* The statement a fresh device signs with its new Ed25519 key to ask for an
 * escrow recovery (docs/protocol.md §10.4): "keyhold-escrow-recover v1\n"
 * instance "\n" challenge "\n" account "\n" sign_pk "\n" box_pk "\n" name
 * "\n" (base64 strings as sent).  *out malloc'd.  KH_ERR_INVAL if a field
 * holds a newline. */
kh_err kh_keysvc_recover_statement(const char *instance, const char *challenge,
                                   const char *account, const char *sign_pk,
                                   const char *box_pk, const char *name, char **out,
                                   size_t *len);

typedef struct kh_keysvc_recovery {
  const char *url;           /* the region server */
  const char *ca_file;       /* NULL: $KEYHOLD_CA_FILE or the system's */
  const char *device_dir;    /* NULL: $KEYHOLD_DEVICE_DIR, ... (remote.h) */
  const char *account;       /* 32 hex */
  const char *name;          /* the new device's name (1..64 printable bytes) */
  uint32_t ops, memkib;      /* as for kh_keysvc_escrow_secret */
} kh_keysvc_recovery;
typedef struct kh_keysvc_recovered {
  char device[33];           /* the new device's id */
  uint32_t left;             /* wrong attempts still allowed (on KH_ERR_PASSCODE) */
  uint64_t index;            /* the log index of the attempt's entry */
} kh_keysvc_recovered;
/* A fresh device with only the passcode: new key pairs, one escrow attempt
 * (counted and logged by the key service before it is judged), and on the
 * right passcode the account key sealed to this device's X25519 key; the
 * device is then an enrolled device of the account (all capabilities) with
 * its own kind-4 wrap, and its state is saved in device_dir.
 * KH_ERR_PASSCODE (out->left set; 0 once the 10th wrong attempt destroyed
 * the record), KH_ERR_DENIED (destroyed), KH_ERR_NOTFOUND (no record),
 * KH_ERR_EXISTS (this device dir already has an identity there). */
kh_err kh_keysvc_escrow_recover(const kh_keysvc_recovery *rq, const kh_secret *passcode,
                                kh_keysvc_recovered *out);

#endif
