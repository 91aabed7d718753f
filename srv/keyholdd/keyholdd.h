/* keyholdd: the region server (docs/operations.md, docs/protocol.md).
 *
 * http.c    the HTTP layer on libmicrohttpd: per-request state, limits,
 *           JSON errors, dispatch through the route table;
 * routes.c  the route table and its handlers (log, health, metrics);
 * obs.c     metrics counters and the structured access log;
 * main.c    the command line: init, serve, signals.
 *
 * A handler sees a parsed request (method, path, body already bounded)
 * and fills a kd_response; it never touches MHD, so later endpoints
 * (accounts, devices, sessions, the key service) are just more rows in the
 * route table.  The server uses libkeyhold only through include/keyhold/. */
#ifndef KEYHOLDD_H
#define KEYHOLDD_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "keyhold/keyhold.h"

/* Limits (docs/protocol.md §2). */
#define KD_PATH_MAX 1024          /* request target, bytes: 414 beyond */
#define KD_HEADERS_MAX 8192       /* all header names and values: 431 beyond */
#define KD_BODY_MAX (1u << 20)    /* request body: 413 beyond */
#define KD_CONN_LIMIT 512         /* open connections */
#define KD_CONN_PER_IP 256        /* open connections from one address */
#define KD_CONN_TIMEOUT 30        /* default seconds a connection may sit idle */
#define KD_THREADS 4              /* MHD worker threads */

/* Routes, for metrics (a fixed set: labels never carry request data). */
typedef enum kd_route {
  KD_ROUTE_CHECKPOINT, KD_ROUTE_TILE, KD_ROUTE_ENTRIES, KD_ROUTE_HEALTH,
  KD_ROUTE_METRICS, KD_ROUTE_KMS, KD_ROUTE_OTHER, KD_ROUTE__COUNT
} kd_route;
const char *kd_route_name(kd_route r);

typedef enum kd_method { KD_GET = 1, KD_HEAD = 2, KD_POST = 4, KD_PUT = 8, KD_DELETE = 16,
                         KD_OTHER = 32 } kd_method;

typedef struct kd_request {
  kd_method method;
  const char *path;      /* decoded by MHD, NUL-terminated, <= KD_PATH_MAX */
  const uint8_t *body;   /* NULL if none */
  size_t body_len;
} kd_request;

typedef struct kd_response {
  unsigned status;
  const char *content_type;  /* static string */
  const char *cache_control; /* static string or NULL */
  uint8_t *body;             /* malloc'd, owned by the response */
  size_t len;
} kd_response;

/* Fill r with {"error": msg, "code": code} and status. */
void kd_error(kd_response *r, unsigned status, const char *code, const char *msg);
/* Take body (malloc'd) as the response. */
void kd_ok(kd_response *r, const char *type, const char *cache, uint8_t *body, size_t len);

typedef struct kd_metrics {
  atomic_uint_fast64_t count[KD_ROUTE__COUNT][6]; /* by status class 1xx..5xx, [0] other */
  atomic_int_fast64_t in_flight;
} kd_metrics;

typedef struct kd_server {
  char *dir;
  char region_id[64];
  kh_kms *kms;                 /* the region's key service (holds kms/lock) */
  kh_tlog *log;                /* read-only view of dir/log */
  pthread_rwlock_t log_lock;   /* refresh: write; tile reads: read */
  kd_metrics metrics;
  pthread_mutex_t access_lock;
  FILE *access;                /* NULL: stderr */
  char *access_path;
  unsigned idle_timeout;       /* seconds; 0 = KD_CONN_TIMEOUT */
  struct kd_adminsock *adminsock; /* the operator socket (adminsock.c) */
  struct MHD_Daemon *mhd;
} kd_server;

/* keysvc.c: the key service's endpoints (docs/protocol.md §10).  true if
 * the path is one of them (rs is then filled). */
bool kd_keysvc_dispatch(kd_server *s, const kd_request *rq, kd_route *route, kd_response *rs);

/* adminsock.c: the operator socket DIR/server/admin.sock (adminsock.h), served by
 * a thread with s->kms; -1 with errno on failure. */
int kd_adminsock_start(kd_server *s);
void kd_adminsock_stop(kd_server *s);
/* keyholdd admin unwrap ARGS (argv[0] is "unwrap"): exit status. */
int kd_cmd_admin_unwrap(int argc, char **argv);

/* routes.c: dispatch a request (status 404/405 for unknown routes). */
void kd_dispatch(kd_server *s, const kd_request *rq, kd_route *route, kd_response *rs);

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
/* Start MHD on l; *port gets the bound port.  cert/key PEM text or NULL. */
int kd_http_start(kd_server *s, const kd_listen *l, const char *cert, const char *key,
                  unsigned *port);
/* Stop accepting, let in-flight requests finish (up to grace_ms), stop. */
void kd_http_stop(kd_server *s, unsigned grace_ms);

#endif
