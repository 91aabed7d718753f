/* libkeyhold: a device talking to a region server (docs/protocol.md §6-§8).
 *
 * Two pieces, both used by `keyhold init` against a URL, by the vault in
 * server mode, by `keyhold device add` (enrolment) and by escrow recovery:
 *
 * - the device's server-mode state (docs/format.md §12): its Ed25519 and
 *   X25519 key pairs (secrets in sodium memory), the server's URL, region
 *   id and pinned instance, and once known the account and device ids;
 *   saved in <device dir>/server-<instance>/ as `device` (text) and
 *   `device.key` (mode 0600);
 * - a client (kh_remote) for the server: GET /v1/region, challenges,
 *   sign-up, and signed requests (§7.4) in a session opened on first use
 *   and reopened when the server says it expired.  Thread-safe: several
 *   threads may call it at once, each on its own connection.
 *
 * Nothing here prints. */
#ifndef KEYHOLD_REMOTE_H
#define KEYHOLD_REMOTE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"

#define KH_REMOTE_URL_MAX 512
#define KH_REMOTE_ID_HEX 32          /* account, device and instance ids */
#define KH_REMOTE_NAME_MAX 64        /* device name, printable bytes */
/* A kind-4 key object (docs/format.md §4): crypto_box_seal(key | cipher). */
#define KH_DEVICE_WRAP_LEN (33 + 48)

/* ---- the device's server-mode state (docs/format.md §12) ---------------- */

typedef struct kh_device_state {
  char url[KH_REMOTE_URL_MAX];              /* "https://host:port", no path */
  char region[64];                          /* region id ("eu-west") */
  char instance[KH_REMOTE_ID_HEX + 1];      /* pinned at first contact */
  char account[KH_REMOTE_ID_HEX + 1];       /* "" until signed up / enrolled */
  char device[KH_REMOTE_ID_HEX + 1];        /* "" until signed up / enrolled */
  char name[KH_REMOTE_NAME_MAX + 1];        /* the device's name */
  char keycheck[65];                        /* "" or hex of the account key's
                                               check value (kh_device_keycheck):
                                               a server cannot swap the key */
  uint8_t sign_pk[32];                      /* Ed25519 */
  uint8_t box_pk[32];                       /* X25519 */
  uint8_t *sign_sk;                         /* 64 bytes, sodium memory */
  uint8_t *box_sk;                          /* 32 bytes, sodium memory */
} kh_device_state;

/* A new state with fresh key pairs and every text field empty; the caller
 * fills url/region/instance/name (and account/device when known).  Free
 * with kh_device_state_free. */
kh_err kh_device_state_new(kh_device_state **out);
/* Wipes the secrets and frees; NULL is a no-op. */
void kh_device_state_free(kh_device_state *d);
/* Write d to <device_dir>/server-<instance>/ (created 0700): device.key
 * first (0600, exclusive: KH_ERR_EXISTS if this device dir already has an
 * identity on that instance, unless overwrite), then the text file, both
 * atomically and durably.  device_dir NULL: $KEYHOLD_DEVICE_DIR,
 * $XDG_CONFIG_HOME/keyhold, ~/.config/keyhold.  KH_ERR_INVAL if a field is
 * malformed (url, ids, name). */
kh_err kh_device_state_save(const kh_device_state *d, const char *device_dir, bool overwrite);
/* Load the state of instance (32 hex).  KH_ERR_NOTFOUND if there is none;
 * KH_ERR_FORMAT if a file is malformed (bounded parser, fuzzed:
 * fuzz/fuzz_device_state.c); KH_ERR_AUTH if device.key does not hold the
 * private halves of the recorded public keys. */
kh_err kh_device_state_load(const char *device_dir, const char *instance,
                            kh_device_state **out);
/* Load the one state in device_dir whose url is url (exact string, a
 * trailing '/' ignored).  KH_ERR_NOTFOUND if none (the message says to run
 * `keyhold init` or `keyhold device add`); KH_ERR_AMBIGUOUS if several. */
kh_err kh_device_state_find(const char *device_dir, const char *url, kh_device_state **out);
/* Parse the text file (for the loader and its fuzz target): fills the text
 * fields and public keys of d. */
kh_err kh_device_state_parse(const char *text, size_t n, kh_device_state *d);

/* The kind-4 key object of an account key to a device's X25519 key, and
 * opening it with this device's secret (KH_ERR_AUTH if it does not open,
 * KH_ERR_FORMAT if its length is wrong). */
kh_err kh_device_wrap_seal(const uint8_t box_pk[32], const uint8_t key[32], int cipher,
                           uint8_t out[KH_DEVICE_WRAP_LEN]);
kh_err kh_device_wrap_open(const kh_device_state *d, const uint8_t *wrap, size_t n,
                           uint8_t key[32], int *cipher);
/* A public check value of an account key (hex, 64 digits + NUL), pinned
 * in the device's state so that a server cannot hand it another key. */
void kh_device_keycheck(const uint8_t key[32], char out[65]);

/* ---- the client ---------------------------------------------------------- */

typedef struct kh_remote kh_remote;

typedef struct kh_remote_opts {
  const char *ca_file;       /* NULL: $KEYHOLD_CA_FILE, else the system's CAs */
  long connect_timeout_ms;   /* 0: 10 s */
  long timeout_ms;           /* 0: 10 minutes for one request */
  int max_retries;           /* 0: 4 (transient failures: reset, 429, 503) */
  long max_retry_ms;         /* 0: 30 s of waiting at most, over all retries */
} kh_remote_opts;

/* A client for url ("http://host:port" or "https://...", no path).  Plain
 * http only to a loopback host (127.0.0.0/8, ::1, localhost); KH_ERR_INVAL
 * otherwise.  Makes no request yet.  o may be NULL. */
kh_err kh_remote_new(const char *url, const kh_remote_opts *o, kh_remote **out);
void kh_remote_free(kh_remote *r);
/* Sign requests as d (borrowed: it must outlive r, or until the next call).
 * d must have account and device set. */
void kh_remote_set_device(kh_remote *r, const kh_device_state *d);

typedef struct kh_region_info {
  int protocol;
  char region[64];
  char instance[KH_REMOTE_ID_HEX + 1];
  char origin[256];
  char vkey[256];
  char signup[16];          /* "open" or "invite" */
} kh_region_info;
/* GET /v1/region (§7.1), checked: protocol 1, valid region id and instance. */
kh_err kh_remote_region(kh_remote *r, kh_region_info *out);
/* GET /v1/challenge: the challenge as sent (base64, NUL-terminated). */
kh_err kh_remote_challenge(kh_remote *r, char out[64]);
/* POST /v1/signup (§7.2) as d (name, keys and instance from d); on success
 * d->account and d->device are set and *caps (may be NULL) holds the
 * device's capabilities.  invite may be NULL. */
kh_err kh_remote_signup(kh_remote *r, kh_device_state *d, const char *invite, unsigned *caps);

typedef struct kh_remote_resp {
  long status;              /* HTTP status */
  uint8_t *body;            /* malloc'd, len bytes + NUL; NULL if none */
  size_t len;
  char code[48];            /* the JSON error body's "code", "" if none */
} kh_remote_resp;
void kh_remote_resp_release(kh_remote_resp *resp);

typedef struct kh_remote_req {
  const char *method;        /* "GET", "PUT", "POST", "DELETE", "HEAD" */
  const char *target;        /* path (+ "?query"), §6.1 */
  const void *body;          /* may be NULL */
  size_t len;
  const char *content_type;  /* NULL: application/json when there is a body */
  bool sign;                 /* a signed request in the session (§7.4) */
  const char *if_none_match; /* NULL or "*" */
  const char *range;         /* NULL or "bytes=A-B" */
  const char *const *headers; /* more "Name: value" headers, NULL-terminated, or NULL */
  size_t max;                /* largest response body accepted (KH_ERR_TOOBIG beyond) */
} kh_remote_req;
/* One request, retried on transient failures (connection reset or refused,
 * 429 honouring Retry-After, 503) within the client's bounds; a signed
 * request whose session the server no longer knows (401 session_expired /
 * no_session) reopens the session and is sent once more.  KH_OK for 2xx;
 * otherwise the status is mapped (404 KH_ERR_NOTFOUND, 409 KH_ERR_EXISTS,
 * 403 KH_ERR_DENIED -- for missing_capability with the server's "this device
 * lacks the 'prune' capability" --, 401 KH_ERR_DENIED, 413 KH_ERR_TOOBIG, 416
 * KH_ERR_FORMAT, 507 KH_ERR_NOSPACE "account quota exceeded", 400
 * KH_ERR_INVAL, other KH_ERR_IO) with the server's message as the detail,
 * and resp (may be NULL) still holds status, code and body. */
kh_err kh_remote_call(kh_remote *r, const kh_remote_req *rq, kh_remote_resp *resp);
/* The device's capabilities (KH_CAP_* of proto.h) as the server granted
 * them in the session (opened now if there is none). */
kh_err kh_remote_caps(kh_remote *r, unsigned *caps);
/* The number of distinct connections opened so far (for tests). */
uint64_t kh_remote_connections(const kh_remote *r);

/* ---- a vault opened on a region server ------------------------------------ */

struct kh_vault;
/* The client and device identity of a vault opened with a URL (owned by
 * the vault, valid until kh_vault_free; signed requests share its session);
 * NULL for a vault in a directory. */
kh_remote *kh_vault_remote(struct kh_vault *v);
const kh_device_state *kh_vault_device_state(const struct kh_vault *v);

#endif
