/* libkeyhold: a second device joins an account by approval code, and an
 * account's device statements (docs/protocol.md §9, docs/log.md §5.2).
 *
 * Pure functions shared by the client (cmd/keyhold) and the server
 * (srv/keyholdd) so the two can never disagree on what is signed, tagged or
 * sent: the byte strings of §9, the JSON bodies of its endpoints (built and
 * parsed; every parser is bounded and fuzzed, fuzz/fuzz_enrol.c) and the
 * enrol / revoke log entries.  No I/O, nothing prints. */
#ifndef KEYHOLD_ENROL_H
#define KEYHOLD_ENROL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"
#include "keyhold/kms.h"

#define KH_ENROL_NAME_MAX 64      /* device name, bytes */
#define KH_ENROL_TTL 600          /* a pending enrolment lives 10 minutes */
#define KH_ENROL_SKEW 300         /* statement and poll times: +-5 minutes */
#define KH_ENROL_WRAP_MAX 4096    /* the largest key object (§8.1) */
#define KH_ENROL_LIST_MAX 16      /* pending enrolments per bucket (§11) */
#define KH_ENROL_DEVICES_MAX 4096 /* devices in one list response */
#define KH_ENROL_B64_32 45        /* base64 of 32 bytes + NUL */

/* true for a device name: 1..64 bytes of printable UTF-8 (no control
 * characters), not starting or ending with a space (it ends a log line). */
bool kh_enrol_name_valid(const char *name);
/* caps as a JSON array ["backup","read"] into out (n >= 48 always fits). */
void kh_enrol_caps_json(unsigned caps, char *out, size_t n);
/* true for 32 lowercase hex digits (account, device, enrolment ids) */
bool kh_enrol_id_valid(const char *id);

/* ---- POST /v1/enrolments (§9.2) ----------------------------------------- */
typedef struct kh_enrol_request {
  char name[KH_ENROL_NAME_MAX + 1];
  uint8_t sign_pk[32], box_pk[32], salt[16], tag[32], sig[64];
  char bucket[3];                 /* the code's first two characters */
  char challenge[KH_ENROL_B64_32];
} kh_enrol_request;

/* The tag over the new device's keys under k (the Argon2id key of the code). */
void kh_enrol_tag(const uint8_t k[32], const char *instance, const uint8_t sign_pk[32],
                  const uint8_t box_pk[32], const char *name, uint8_t tag[32]);
/* The statement sign_pk signs (malloc'd, NUL-terminated). */
kh_err kh_enrol_request_statement(const char *instance, const kh_enrol_request *r,
                                  char **out, size_t *len);
/* Body of the request (malloc'd JSON). */
kh_err kh_enrol_request_json(const kh_enrol_request *r, char **out, size_t *len);
/* Parse a body: every field present, of its exact type and size, base64 in
 * canonical form, name valid, bucket two code characters.  KH_ERR_FORMAT
 * otherwise (with a detail naming the field). */
kh_err kh_enrol_request_parse(const char *body, size_t n, kh_enrol_request *out);

/* ---- GET /v1/enrolments?bucket= (§9.2) ---------------------------------- */
typedef struct kh_enrol_pending {
  char enrolment[33];
  char name[KH_ENROL_NAME_MAX + 1];
  uint8_t sign_pk[32], box_pk[32], salt[16], tag[32];
  int64_t created;
} kh_enrol_pending;
/* Parse the list; *out (malloc'd, free()) holds *n <= KH_ENROL_LIST_MAX. */
kh_err kh_enrol_list_parse(const char *body, size_t n, kh_enrol_pending **out, size_t *count);

/* ---- POST /v1/enrolments/<id>/approve (§9.2) ---------------------------- */
/* wrap_tag over what the approver gives the new device, under k. */
void kh_enrol_wrap_tag(const uint8_t k[32], const char *instance, const char *account,
                       const char *device, unsigned caps, const uint8_t *wrap,
                       size_t wrap_len, uint8_t tag[32]);

typedef struct kh_enrol_approval {
  char device[33];
  unsigned caps;                  /* KH_CAP_* bits, not 0 */
  uint8_t *wrap;                  /* malloc'd */
  size_t wrap_len;                /* 1..KH_ENROL_WRAP_MAX */
  uint8_t wrap_tag[32];
  char *entry;                    /* the signed enrol log entry (malloc'd) */
  size_t entry_len;
} kh_enrol_approval;
kh_err kh_enrol_approval_json(const kh_enrol_approval *a, char **out, size_t *len);
kh_err kh_enrol_approval_parse(const char *body, size_t n, kh_enrol_approval *out);
/* Free what a parse allocated (and zero the struct); NULL is fine. */
void kh_enrol_approval_release(kh_enrol_approval *a);

/* ---- GET /v1/enrolments/<id> (the new device polls, §9.2) --------------- */
typedef enum kh_enrol_poll_state {
  KH_POLL_PENDING = 1, KH_POLL_APPROVED, KH_POLL_REFUSED, KH_POLL_EXPIRED
} kh_enrol_poll_state;
const char *kh_enrol_state_name(kh_enrol_poll_state s);
/* "keyhold-enrol-poll v1\n" enrolment "\n" time "\n" (malloc'd) */
kh_err kh_enrol_poll_statement(const char *enrolment, int64_t t, char **out, size_t *len);

typedef struct kh_enrol_result {
  kh_enrol_poll_state state;
  char account[33];               /* approved only: */
  char device[33];
  unsigned caps;
  uint8_t *wrap;                  /* malloc'd */
  size_t wrap_len;
  uint8_t wrap_tag[32];
} kh_enrol_result;
kh_err kh_enrol_result_json(const kh_enrol_result *r, char **out, size_t *len);
kh_err kh_enrol_result_parse(const char *body, size_t n, kh_enrol_result *out);
void kh_enrol_result_release(kh_enrol_result *r);

/* ---- GET /v1/accounts/<a>/devices (§9.1) -------------------------------- */
typedef struct kh_enrol_device {
  char id[33];
  char name[KH_ENROL_NAME_MAX + 1];
  unsigned caps;
  int64_t enrolled;
  int64_t revoked;                /* 0: not revoked */
  uint8_t sign_pk[32], box_pk[32];
} kh_enrol_device;
/* The whole response body for n devices (malloc'd). */
kh_err kh_enrol_devices_json(const kh_enrol_device *v, size_t n, char **out, size_t *len);
/* Parse {"devices":[...]}: *out malloc'd (free()), *count <= KH_ENROL_DEVICES_MAX. */
kh_err kh_enrol_devices_parse(const char *body, size_t n, kh_enrol_device **out, size_t *count);

/* ---- POST /v1/accounts/<a>/devices/<id>/revoke (§9.1) ------------------ */
/* {"entry":"<the revoke statement>"} (malloc'd), and its strict parse:
 * *entry malloc'd, 1..KH_LOG_ENTRY_MAX bytes. */
kh_err kh_enrol_revoke_json(const char *entry, size_t len, char **out, size_t *outlen);
kh_err kh_enrol_revoke_parse(const char *body, size_t n, char **entry, size_t *len);

/* ---- the log statements (docs/log.md §5.2) ------------------------------ */
/* The reason field of an enrol entry: "caps C sign_pk B box_pk B name N". */
kh_err kh_enrol_reason(unsigned caps, const uint8_t sign_pk[32], const uint8_t box_pk[32],
                       const char *name, char *out, size_t n);
/* ... and of a revoke entry: "sign_pk B". */
kh_err kh_revoke_reason(const uint8_t sign_pk[32], char *out, size_t n);
/* Build and sign a statement (op KH_LOG_OP_ENROL or KH_LOG_OP_REVOKE) about
 * device subject, by device signer: the whole entry text with its device
 * field (malloc'd), ready for kh_kms_append_statement. */
kh_err kh_enrol_statement(kh_log_op op, int64_t t, const char *region, const char *account,
                          const char *subject, const char *signer, const char *reason,
                          kh_kms_sign_fn sign, void *ctx, char **out, size_t *len);

#endif
