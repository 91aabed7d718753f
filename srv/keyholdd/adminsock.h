/* keyholdd's operator socket DIR/server/admin.sock (docs/operations.md,
 * "The operator socket"): while the server runs it holds the key service's
 * lock, so operator commands that need the key service (keyholdd admin
 * unwrap) ask the server through this socket instead of opening DIR.
 *
 * One request per connection, a few "key value" lines; one response, a few
 * lines.  Both parsers are bounded and fuzzed (fuzz/fuzz_admin_sock.c).  The
 * socket is mode 0600 in a 0700 directory and the server also checks the
 * peer's uid (SO_PEERCRED): only the server's own user may connect. */
#ifndef KEYHOLDD_ADMINSOCK_H
#define KEYHOLDD_ADMINSOCK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KD_ADMIN_MAGIC "keyholdd-admin v1"
#define KD_ADMIN_REQ_MAX 4096          /* request bytes */
#define KD_ADMIN_RESP_MAX 65536        /* response bytes */
#define KD_ADMIN_CHECKPOINT_MAX 16384  /* checkpoint note in a response */
#define KD_ADMIN_PROOF_MAX 64
#define KD_ADMIN_TEXT_MAX 512          /* requester, reason (docs/log.md §5) */
#define KD_ADMIN_TIMEOUT_S 30          /* per connection, both ways */

typedef struct kd_admin_req {
  char op[16];                         /* "unwrap" */
  char account[33];                    /* 32 lowercase hex */
  char requester[KD_ADMIN_TEXT_MAX + 1];
  char reason[KD_ADMIN_TEXT_MAX + 1];
  bool want_key;                       /* send the key back (--key-out) */
} kd_admin_req;

/* A response.  key points into sodium memory owned by the response
 * (kd_admin_resp_release wipes and frees it). */
typedef struct kd_admin_resp {
  bool ok;
  char error[512];                     /* when !ok: "<kh_strerror>: detail" */
  uint64_t index, size;
  uint8_t root[32], leaf[32];
  uint8_t proof[KD_ADMIN_PROOF_MAX][32];
  size_t plen;
  unsigned cosignatures;
  uint8_t *key;                        /* 32 bytes or NULL */
  int cipher;
  char checkpoint[KD_ADMIN_CHECKPOINT_MAX + 1];
  size_t checkpoint_len;
} kd_admin_resp;

/* 0 and *r filled, or -1 if p is not exactly a request (any deviation). */
int kd_admin_req_parse(const char *p, size_t n, kd_admin_req *r);
/* Format r into out (cap bytes): its length, or 0 if it does not fit or a
 * field is not valid. */
size_t kd_admin_req_format(const kd_admin_req *r, char *out, size_t cap);

void kd_admin_resp_init(kd_admin_resp *r);
void kd_admin_resp_release(kd_admin_resp *r);
/* 0 and *r filled (r initialised first), or -1 on any deviation. */
int kd_admin_resp_parse(const char *p, size_t n, kd_admin_resp *r);
/* Format r (with its key if want_key): malloc'd text in *out, its length in
 * *len (the caller wipes and frees it); -1 on failure. */
int kd_admin_resp_format(const kd_admin_resp *r, bool want_key, char **out, size_t *len);

#endif
