/* libkeyhold: the account protocol's shared pieces (docs/protocol.md §6-§9),
 * used by the client (lib/http) and the server (srv/keyholdd) alike, so the
 * two can never disagree on what is signed or what a name means.
 * Pure functions: no I/O, nothing prints; every parser is bounded (and
 * fuzzed: fuzz/fuzz_proto.c). */
#ifndef KEYHOLD_PROTO_H
#define KEYHOLD_PROTO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"

/* ---- capabilities (§8.1) ------------------------------------------------ */
#define KH_CAP_BACKUP 1u
#define KH_CAP_READ 2u
#define KH_CAP_PRUNE 4u
#define KH_CAP_ADMIN 8u
#define KH_CAP_ALL 15u
/* Returned by kh_proto_obj_allowed when no capability allows the operation
 * (deleting the account marker or protection; an invalid name). */
#define KH_PROTO_CAP_NEVER 0x100u
/* "backup,read" -> bits; KH_ERR_INVAL on an unknown or empty name. */
kh_err kh_proto_caps_parse(const char *s, unsigned *caps);
/* bits -> "backup,read,prune,admin" order, comma-separated ("" for 0). */
void kh_proto_caps_format(unsigned caps, char *out, size_t n);
/* The name of the lowest capability in caps ("backup"...), for messages. */
const char *kh_proto_cap_name(unsigned cap);

/* ---- object names (§8.1) ------------------------------------------------ */
typedef enum kh_obj_kind {
  KH_OBJ_INVALID = 0, KH_OBJ_ACCOUNT, KH_OBJ_PROTECTION, KH_OBJ_KEY, KH_OBJ_DEVICE,
  KH_OBJ_PACK, KH_OBJ_INDEX, KH_OBJ_SNAPSHOT, KH_OBJ_LOCK, KH_OBJ_DAMAGE
} kh_obj_kind;
/* Classify an account-relative object name (exact grammar of §8.1);
 * KH_OBJ_INVALID for anything else.  *id_hex (may be NULL) points at the
 * name's final hex id inside name, or NULL for account/protection. */
kh_obj_kind kh_proto_obj_kind(const char *name, const char **id_hex);
/* The largest object of a kind (the KH_OBJMAX_* bounds of format §1.1). */
uint64_t kh_proto_obj_max(kh_obj_kind k);
/* The list prefix of a kind ("data", "index"...), NULL if not listable. */
const char *kh_proto_kind_prefix(kh_obj_kind k);
/* The kind listed under prefix ("keys" ... "damage", §8.2), or
 * KH_OBJ_INVALID. */
kh_obj_kind kh_proto_list_kind(const char *prefix);

typedef enum kh_obj_op { KH_OP_PUT, KH_OP_GET, KH_OP_DELETE, KH_OP_LIST } kh_obj_op;
/* May a device with caps (and id device_hex) do op on name?  Returns 0 if
 * yes, else the capability bit it lacks (the lowest that would do), or
 * KH_PROTO_CAP_NEVER if none would.  KH_OP_GET covers HEAD.  For
 * KH_OP_LIST, name is the list prefix ("data"...).  This and the kind
 * grammar are one table in lib/proto/proto.c: the §8.1 table. */
unsigned kh_proto_obj_allowed(kh_obj_op op, const char *name, const char *device_hex,
                              unsigned caps);

/* ---- signed requests (§7.4) -------------------------------------------- */
#define KH_PROTO_TARGET_MAX 1024            /* bytes of a request target */
#define KH_PROTO_SEQ_MAX 0x7fffffffffffffffull /* KH-Seq is 1..2^63-1 */
/* Build the canonical request into out (malloc'd, *len bytes, NUL-terminated).
 * if_none_match and range may be NULL (empty).  KH_ERR_INVAL if target is
 * not a valid target (§6.1) or a field holds a newline. */
kh_err kh_proto_canonical_request(const char *method, const char *target,
                                  const char *session, uint64_t seq,
                                  const char body_sha256_hex[65], const char *if_none_match,
                                  const char *range, char **out, size_t *len);
/* true if target is spelled per §6.1 (path chars, optional query) and at
 * most KH_PROTO_TARGET_MAX bytes. */
bool kh_proto_target_valid(const char *target);
/* The KH-Seq value: decimal 1..KH_PROTO_SEQ_MAX, digits only, no leading
 * zero; KH_ERR_FORMAT otherwise. */
kh_err kh_proto_seq_parse(const char *v, uint64_t *seq);
/* A Range value "bytes=A-B" (decimal, A <= B < 2^64-1, no spaces, no other
 * form); KH_ERR_FORMAT otherwise. */
kh_err kh_proto_range_parse(const char *v, uint64_t *first, uint64_t *last);
/* Lowercase hex SHA-256 of data (the KH-Body-SHA256 value). */
void kh_proto_sha256_hex(const uint8_t *data, size_t n, char out[65]);

/* ---- sign-up and session statements (§7.2, §7.3) ----------------------- */
/* The exact bytes a device signs (malloc'd into *out, *len bytes,
 * NUL-terminated).  Fields are the strings as sent (base64 as sent);
 * invite NULL or "" is "-".  KH_ERR_INVAL if a field holds a newline. */
kh_err kh_proto_signup_statement(const char *instance, const char *challenge,
                                 const char *sign_pk, const char *box_pk, const char *name,
                                 const char *invite, char **out, size_t *len);
kh_err kh_proto_session_statement(const char *instance, const char *challenge,
                                  const char *account, const char *device, char **out,
                                  size_t *len);

/* ---- replay window (§7.4) ---------------------------------------------- */
typedef struct kh_proto_window {
  uint64_t top;              /* highest sequence number seen (0: none) */
  uint64_t bits[4096 / 64];  /* bit i: top - i seen */
} kh_proto_window;
/* Accept seq once: KH_OK and remembered, or KH_ERR_DENIED (seen, 0, above
 * KH_PROTO_SEQ_MAX, or 4096 or more below the top: the window holds the
 * 4096 numbers top-4095..top).  Not thread-safe: the caller locks. */
kh_err kh_proto_window_accept(kh_proto_window *w, uint64_t seq);

/* ---- enrolment codes (§9.2) -------------------------------------------- */
#define KH_PROTO_CODE_LEN 8
#define KH_PROTO_CODE_OPSLIMIT 3ull
#define KH_PROTO_CODE_MEMLIMIT (64ull << 20)
/* A new random code: 8 Crockford base32 characters, NUL-terminated. */
void kh_proto_code_new(char out[KH_PROTO_CODE_LEN + 1]);
/* Normalise typed input ("abcd-efgh", I/L->1, O->0, dash optional) into
 * 8 canonical characters; KH_ERR_INVAL if it is not a code. */
kh_err kh_proto_code_parse(const char *in, char out[KH_PROTO_CODE_LEN + 1]);
/* k = Argon2id(code, salt, ops 3, 64 MiB). k must be sodium memory. */
kh_err kh_proto_code_key(const char code[KH_PROTO_CODE_LEN + 1], const uint8_t salt[16],
                         uint8_t k[32]);

/* ---- base64 (standard, padded) for JSON fields ------------------------- */
/* Encode n bytes; out must hold 4*((n+2)/3)+1. */
void kh_proto_b64(const uint8_t *in, size_t n, char *out);
/* Decode exactly n bytes (KH_ERR_FORMAT otherwise, also on bad padding). */
kh_err kh_proto_unb64(const char *in, uint8_t *out, size_t n);

#endif
