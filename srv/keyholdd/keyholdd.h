/* keyholdd: the region server (docs/operations.md, docs/protocol.md).
 *
 * http.c     the HTTP layer on libmicrohttpd: per-request state, limits,
 *            JSON errors, the signed-request check before the body, bodies
 *            buffered (JSON) or streamed to DIR/server/tmp (objects);
 * routes.c   concatenates the route tables of the feature files;
 * logroutes.c the log, health and metrics rows (§3-§5);
 * auth.c     challenges, sessions, the signed-request check (§7.4), rate
 *            limits (§11);
 * account.c  region, challenge, sign-up and session rows (§7);
 * objects.c  the object rows (§8);
 * keysvc.c   the key service's rows (§10);
 * enrol.c    devices, revocation and enrolment by approval code (§9);
 * adminsock.c the operator socket DIR/server/admin.sock (keyholdd admin unwrap);
 * admin.c    keyholdd admin (operator commands on DIR/server/meta.db);
 * obs.c      metrics counters and the structured access log;
 * main.c     the command line: init, serve, admin, signals.
 *
 * A handler sees a parsed request (method, path, headers, body already
 * bounded and, for a signed request, its caller authenticated) and fills a
 * kd_response; it never touches MHD, so each feature file adds rows to the
 * route table (kd_routes_<file>, listed in routes.c).  The server uses
 * libkeyhold only through include/keyhold/. */
#ifndef KEYHOLDD_H
#define KEYHOLDD_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "keyhold/keyhold.h"
#include "keyhold/meta.h"
#include "keyhold/proto.h"
#include "keyhold/store.h"

/* Limits (docs/protocol.md §2). */
#define KD_PATH_MAX 1024          /* request target, bytes: 414 beyond */
#define KD_HEADERS_MAX 8192       /* all header names and values: 431 beyond */
#define KD_BODY_MAX (1u << 20)    /* request body: 413 beyond */
#define KD_CONN_LIMIT 512         /* open connections */
#define KD_CONN_PER_IP 256        /* open connections from one address */
#define KD_CONN_TIMEOUT 30        /* default seconds a connection may sit idle */
#define KD_THREADS 4              /* MHD worker threads */

#define KD_SESSION_TTL 3600       /* default session lifetime, seconds (§7.3) */
#define KD_SESSIONS_PER_DEVICE 64 /* the oldest ends beyond (§11) */
#define KD_CHALLENGE_TTL 120      /* seconds a challenge is good for (§7.1) */
#define KD_DEVICE_RATE 20000      /* default requests per second per device (§11) */
#define KD_ADDR_RATE 20           /* default sign-up/session requests per minute per address */

/* Routes, for metrics (a fixed set: labels never carry request data).
 * Each feature file's owner adds its values. */
typedef enum kd_route {
  KD_ROUTE_CHECKPOINT, KD_ROUTE_TILE, KD_ROUTE_ENTRIES, KD_ROUTE_HEALTH,
  KD_ROUTE_METRICS, KD_ROUTE_REGION, KD_ROUTE_CHALLENGE, KD_ROUTE_SIGNUP, KD_ROUTE_SESSION,
  KD_ROUTE_OBJECT, KD_ROUTE_LIST, KD_ROUTE_KMS, KD_ROUTE_DEVICES, KD_ROUTE_ENROL,
  KD_ROUTE_OTHER, KD_ROUTE__COUNT
} kd_route;
const char *kd_route_name(kd_route r);

typedef enum kd_method { KD_GET = 1, KD_HEAD = 2, KD_POST = 4, KD_PUT = 8, KD_DELETE = 16,
                         KD_OTHER = 32 } kd_method;

/* Who sent a signed request (§7.4), filled by the check before the body. */
typedef struct kd_caller {
  char account[KH_META_ID_HEX + 1];
  char device[KH_META_ID_HEX + 1];
  unsigned caps;                    /* the device's capabilities now */
} kd_caller;

typedef struct kd_request {
  kd_method method;
  const char *method_name;  /* "GET"... */
  const char *path;         /* NUL-terminated, <= KD_PATH_MAX; account-protocol rows
                             * get the bytes as sent (§6.1), others decoded */
  const char *target;       /* path plus "?query" as sent (what was signed) */
  const char *rest;         /* the path after what the row's path matched ("" for exact rows) */
  const uint8_t *body;      /* buffered body (rows without KD_UPLOAD); NULL if none */
  size_t body_len;
  const char *upload_path;  /* KD_UPLOAD: the complete body in DIR/server/tmp, checked
                             * against KH-Body-SHA256; the handler may consume it */
  uint64_t upload_len;
  const kd_caller *caller;  /* KD_AUTH rows: the authenticated caller; else NULL */
  const char *remote;       /* the peer's address, text */
  void *conn;               /* private to http.c */
  void *state;              /* a row's per-request state (from its prepare) */
} kd_request;

/* A request header's value (NULL if absent).  Valid during the request. */
const char *kd_header(const kd_request *rq, const char *name);
/* A query argument's value as sent (NULL if absent or without "="; the
 * target was checked per §6.1 for KD_PROTO rows).  Valid during the request. */
const char *kd_query(const kd_request *rq, const char *key);

/* A body produced piece by piece (a large object): read up to max bytes at
 * pos into buf, return the count (>0), or -1 on error. */
typedef long (*kd_stream_fn)(void *ctx, uint64_t pos, char *buf, size_t max);

#define KD_EXTRA_HEADERS 3
typedef struct kd_response {
  unsigned status;
  const char *content_type;  /* static string */
  const char *cache_control; /* static string or NULL */
  uint8_t *body;             /* malloc'd, owned by the response */
  size_t len;
  /* instead of body: stream_len bytes from stream (ctx freed with stream_free) */
  kd_stream_fn stream;
  void *stream_ctx;
  void (*stream_free)(void *ctx);
  uint64_t stream_len;
  const char *hname[KD_EXTRA_HEADERS]; /* static names of extra headers */
  char hval[KD_EXTRA_HEADERS][96];
} kd_response;

/* Fill r with {"error": msg, "code": code} and status. */
void kd_error(kd_response *r, unsigned status, const char *code, const char *msg);
/* Take body (malloc'd) as the response (status 200). */
void kd_ok(kd_response *r, const char *type, const char *cache, uint8_t *body, size_t len);
/* Copy text (n bytes) as a JSON response with status. */
void kd_json(kd_response *r, unsigned status, const char *text, size_t n);
/* Add a response header (name static, value copied); ignored beyond
 * KD_EXTRA_HEADERS. */
void kd_header_add(kd_response *r, const char *name, const char *value);

typedef struct kd_metrics {
  atomic_uint_fast64_t count[KD_ROUTE__COUNT][6]; /* by status class 1xx..5xx, [0] other */
  atomic_int_fast64_t in_flight;
} kd_metrics;

typedef struct kd_sessions kd_sessions;
typedef struct kd_limiter kd_limiter;

typedef struct kd_server {
  char *dir;
  char region_id[64];
  char instance[KH_REGION_INSTANCE_HEX + 1];
  char *vkey;                  /* the log's verifier key (text) */
  char origin[256];            /* the log's origin (from vkey) */
  uint8_t *marker;             /* the region marker object, byte for byte */
  size_t marker_len;
  kh_kms *kms;                 /* the region's key service (holds kms/lock) */
  struct kd_adminsock *adminsock; /* the operator socket (adminsock.c) */
  kh_meta *meta;               /* DIR/server/meta.db */
  kh_store *store;             /* the region's objects (provider at DIR) */
  char *tmpdir;                /* DIR/server/tmp: upload staging */
  bool signup_open;            /* serve --signup open */
  uint64_t quota;              /* quota of new accounts (KH_META_UNLIMITED) */
  unsigned session_ttl;        /* seconds */
  unsigned device_rate;        /* requests per second per device */
  unsigned addr_rate;          /* per-address requests per minute (sign-up, session) */
  kd_sessions *sessions;       /* auth.c */
  kd_limiter *dev_limit, *addr_limit;
  atomic_bool stopping;        /* SIGTERM: new requests are 503 */
  kh_tlog *log;                /* read-only view of dir/log */
  pthread_rwlock_t log_lock;   /* refresh: write; tile reads: read */
  kd_metrics metrics;
  pthread_mutex_t access_lock;
  FILE *access;                /* NULL: stderr */
  char *access_path;
  unsigned idle_timeout;       /* seconds; 0 = KD_CONN_TIMEOUT */
  struct MHD_Daemon *mhd;
} kd_server;

/* ---- routes ---------------------------------------------------------------
 * A row names a path (exact, or a prefix whose rest the handler parses), the
 * methods it answers, its metrics label and how its body is taken. */
typedef void (*kd_handler)(kd_server *s, const kd_request *rq, kd_response *rs);
/* KD_UPLOAD rows: called after the signed-request check, before the body:
 * check what can be checked from the headers (name, capability, size,
 * quota), set *limit (the most body bytes taken) and rq->state; return
 * false with rs filled to refuse.  cleanup(s, state, done) runs when the
 * request ends, whatever happened (done: the handler ran). */
typedef bool (*kd_prepare_fn)(kd_server *s, kd_request *rq, uint64_t *limit, kd_response *rs);
typedef void (*kd_cleanup_fn)(kd_server *s, void *state);

enum {
  KD_AUTH = 1,       /* a signed request (§7.4), checked before the body */
  KD_JSON = 2,       /* takes a body of at most KD_BODY_MAX bytes, buffered */
  KD_UPLOAD = 4,     /* takes a body streamed to DIR/server/tmp (prepare) */
  KD_RATE_ADDR = 8,  /* rate-limited per address (§11) */
  KD_PROTO = 16,     /* account protocol: target per §6.1, no percent-decoding */
};

typedef struct kd_row {
  const char *path;
  bool prefix;
  unsigned methods;
  kd_route route;
  unsigned flags;
  kd_handler fn;
  kd_prepare_fn prepare;
  kd_cleanup_fn cleanup;
} kd_row;

/* Each feature file's table (routes.c lists them). */
extern const kd_row kd_routes_log[];
extern const size_t kd_routes_log_n;
extern const kd_row kd_routes_account[];
extern const size_t kd_routes_account_n;
extern const kd_row kd_routes_objects[];
extern const size_t kd_routes_objects_n;

/* routes.c: the row for path (raw: as sent) and method; NULL if no path
 * matches (404).  *method_ok false: the path exists, the method not (405).
 * A "*" in a row's path matches one non-empty segment.  *allow gets the
 * methods of the rows that match the path (so far: all, when none takes m). */
const kd_row *kd_route_find(const char *path, kd_method m, bool *method_ok, unsigned *allow);
/* Length of the part of path that r's path matched (rq->rest follows it). */
size_t kd_path_rest(const kd_row *r, const char *path);
/* Segment i (0-based: "/v1/accounts/X" has X as 2) of path into out;
 * false if missing, empty or not shorter than cap. */
bool kd_path_segment(const char *path, unsigned i, char *out, size_t cap);

/* ---- auth.c ---------------------------------------------------------------- */
kh_err kd_auth_init(kd_server *s);
void kd_auth_free(kd_server *s);
/* The signed-request check (§7.4), the one every KD_AUTH row goes through,
 * before its body: session, device not revoked, signature, sequence number,
 * the device's rate.  true with *who filled, or false with rs filled. */
bool kd_auth_check(kd_server *s, const kd_request *rq, kd_caller *who, kd_response *rs);
/* The path's account must be the caller's (403 wrong_account) and the
 * caller must hold cap (0: any; 403 missing_capability); else rs filled. */
bool kd_require(const kd_request *rq, const char *account, unsigned cap, kd_response *rs);
/* A new challenge (§7.1): base64 text into out (45 bytes), *expires. */
void kd_challenge_new(kd_server *s, char out[45], int64_t *expires);
/* Check a challenge (base64 as sent) and spend it: false if malformed,
 * forged, expired or used. */
bool kd_challenge_spend(kd_server *s, const char *b64);
/* Open a session for a device (§7.3): token (base64url, 43 chars) into
 * out, *expires. */
kh_err kd_session_open(kd_server *s, const kh_meta_device *d, char out[44], int64_t *expires);
/* End every session of a device (revocation). */
void kd_sessions_end_device(kd_server *s, const char *device);
/* Per-address rate limit: true if allowed; else rs is 429 with Retry-After. */
bool kd_rate_addr(kd_server *s, const char *remote, kd_response *rs);

/* obs.c */
void kd_metrics_count(kd_metrics *m, kd_route route, unsigned status);
char *kd_metrics_render(kd_metrics *m, size_t *len);
/* Reopen the access log file (SIGHUP); stays on the old one on failure. */
int kd_access_reopen(kd_server *s);
void kd_access_log(kd_server *s, const char *method, const char *path, unsigned status,
                   size_t bytes, double ms, const char *remote);
/* Append s as a JSON string (quoted, escaped) to buf of cap; returns the
 * new length or cap on overflow. */
size_t kd_json_str(char *buf, size_t cap, size_t off, const char *s);

/* http.c */
typedef struct kd_listen {
  char host[64];
  unsigned port;
  bool loopback;
} kd_listen;
int kd_parse_listen(const char *arg, kd_listen *out);
/* Remove what a killed server left in DIR/server/tmp (called at start). */
void kd_tmp_clean(kd_server *s);
/* Start MHD on l; *port gets the bound port.  cert/key PEM text or NULL. */
int kd_http_start(kd_server *s, const kd_listen *l, const char *cert, const char *key,
                  unsigned *port);
/* Stop accepting, let in-flight requests finish (up to grace_ms), stop. */
void kd_http_stop(kd_server *s, unsigned grace_ms);

/* adminsock.c: the operator socket DIR/server/admin.sock (adminsock.h),
 * served by a thread with s->kms; -1 with errno on failure. */
int kd_adminsock_start(kd_server *s);
void kd_adminsock_stop(kd_server *s);
/* keyholdd admin unwrap ARGS (argv[0] is "unwrap"): exit status. */
int kd_cmd_admin_unwrap(int argc, char **argv);

/* keysvc.c: the key service's rows (docs/protocol.md §10). */
extern const kd_row kd_routes_keysvc[];
extern const size_t kd_routes_keysvc_n;

/* enrol.c: devices and enrolment by approval code (docs/protocol.md §9). */
extern const kd_row kd_routes_enrol[];
extern const size_t kd_routes_enrol_n;

/* objects.c: set every account's used bytes to the size of its objects
 * (at start: reservations of uploads a crash cut off are gone). */
kh_err kd_usage_recount(kd_server *s);

/* config.c: `serve --config FILE`.  *nargv is argv with --config FILE
 * replaced by the file's settings (as "--name" "value", before the other
 * arguments); *hold keeps them alive until kd_config_free.  Without
 * --config, *nargv is argv and *hold NULL.  Returns 0, or the exit status
 * of a usage error (message on stderr). */
typedef struct kd_config kd_config;
int kd_config_expand(int argc, char **argv, int *nargc, char ***nargv, kd_config **hold);
void kd_config_free(kd_config *c);

/* admin.c: keyholdd admin ARGS (argv[0] == "admin"). */
int kd_admin_main(int argc, char **argv);

#endif
