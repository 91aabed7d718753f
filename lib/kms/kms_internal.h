/* Internal to lib/kms/kms*.c, escrow*.c and their fuzz targets: the key
 * service's on-disk formats (docs/threat-model.md §4) and the shared
 * kh_kms state. */
#ifndef KH_KMS_INTERNAL_H
#define KH_KMS_INTERNAL_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/kms.h"
#include "kms/rootkey.h"
#include "provider/provider.h"

/* ---- kms/config (text) ---------------------------------------------------- */

#define KH_KMS_WITNESS_MAX 16
#define KH_KMS_CONFIG_MAX 16384
#define KH_KMS_PATH_MAX 1024

typedef struct kh_kms_config {
  char region[64];
  char instance[KH_REGION_INSTANCE_HEX + 1]; /* "" in regions made before it */
  int backend;                         /* KH_ROOTKEY_BACKEND_FILE / _PKCS11 */
  char pkcs11_label[65];               /* pkcs11 only */
  char origin[KH_CHECKPOINT_ORIGIN_MAX + 1];
  unsigned witnesses_required;
  size_t nwitnesses;
  char witness[KH_KMS_WITNESS_MAX][KH_KMS_PATH_MAX];
} kh_kms_config;

/* Strict parser: KH_ERR_FORMAT on anything unexpected. */
kh_err kh_kms_config_parse(const uint8_t *p, size_t n, kh_kms_config *c);
kh_err kh_kms_config_format(const kh_kms_config *c, kh_buf *out);

/* ---- key-service wrap object, kind 2 (accounts/<acct>/keys/<wid>) ------- */

#define KH_KMS_WRAP_MAGIC "KHKEY1"
#define KH_KMS_WRAP_KIND 2
#define KH_KMS_WRAP_HEADER 10 /* magic(6) kind(1) cipher(1) bloblen(u16) */

typedef struct kh_kms_wrapobj {
  uint8_t cipher;
  const uint8_t *blob; /* kh_rootkey blob */
  size_t bloblen;
} kh_kms_wrapobj;
kh_err kh_kms_wrapobj_parse(const uint8_t *p, size_t n, kh_kms_wrapobj *w);

/* ---- escrow record (kms/escrow/<acct>.rec) and counter (<acct>.ctr) ------ */

#define KH_ESCROW_MAGIC "KHESC1"
#define KH_ESCROW_HEADER 47   /* magic(6) format(1) ops(4) memkib(4) salt(16) rid(16) */
#define KH_ESCROW_BYTES (KH_ESCROW_HEADER + 24 + 33 + 16)
typedef struct kh_escrow_rec {
  uint32_t ops, memkib;
  const uint8_t *salt;   /* 16 */
  const uint8_t *rid;    /* 16: record id, binds the counter */
  const uint8_t *box;    /* nonce(24) || ct(33) || tag(16) */
} kh_escrow_rec;
kh_err kh_escrow_rec_parse(const uint8_t *p, size_t n, kh_escrow_rec *r);

#define KH_ESCROW_CTR_MAGIC "KHESCN1\n"
#define KH_ESCROW_CTR_BYTES (8 + 16 + 4 + 8 + 1 + 32)
typedef struct kh_escrow_ctr {
  uint8_t rid[16];
  uint32_t failed;       /* wrong attempts in a row (counted before judging) */
  uint64_t attempts;     /* all attempts ever started */
  bool destroyed;
} kh_escrow_ctr;
/* Parse without checking the MAC (the last 32 bytes); the caller checks. */
kh_err kh_escrow_ctr_parse(const uint8_t *p, size_t n, kh_escrow_ctr *c);

/* ---- the log key (kms/log.key) -------------------------------------------- */

#define KH_LOGKEY_MAGIC "KHLOGK1\n"
typedef struct kh_logkey_file {
  const char *name; size_t namelen;   /* note key name (= origin) */
  const uint8_t *blob; size_t bloblen; /* rootkey blob of the Ed25519 seed */
} kh_logkey_file;
kh_err kh_logkey_parse(const uint8_t *p, size_t n, kh_logkey_file *f);

/* ---- shared state ----------------------------------------------------------- */

typedef struct kh_kms_pending kh_kms_pending;

/* Every complete node hash of the log, by level, so inclusion proofs cost
 * O(log n) lookups instead of rehashing tile ranges (built on first use by
 * reading the whole log; only the committing thread touches it). */
#define KH_KMS_MTREE_MAX (1ull << 22)
typedef struct kh_kms_mtree {
  bool built, disabled;
  kh_log_hash *lv[64];
  uint64_t n[64], cap[64];
} kh_kms_mtree;

/* Account keys already unwrapped from their key-service wrap (the service
 * holds the root key that opens them anyway); every release is still logged
 * first.  Dropped on destroy and rotate. */
#define KH_KMS_CACHE_BUCKETS 1024
#define KH_KMS_CACHE_MAX 65536
#define KH_KMS_SLOTS 8192
typedef struct kh_kms_cached {
  struct kh_kms_cached *next;
  char account[KH_LOG_ACCOUNT_MAX + 1];
  char kid[KH_LOG_KEY_MAX + 1];
  int cipher;
  uint8_t *key;                /* 32 bytes, sodium memory */
} kh_kms_cached;

/* Per-account locks, striped: unwrap takes its account's lock shared, every
 * operation that changes an account's key-service state (wrap, destroy,
 * rotate's rewrap) takes it exclusive, so a
 * release can never be logged after a destroy of the same account, and an
 * escrow attempt's Argon2id stalls only its own stripe.  Lock order: opmu,
 * then an account lock, then mu / cmu / smu. */
#define KH_KMS_ACCT_LOCKS 256

/* ---- the key service's own view of its log (kms/log-state) --------------
 * The size and root of the last checkpoint this key service signed, MAC'd
 * under a key derived from the root key.  Before each append the log's
 * checkpoint must extend it; a log that is smaller, or differs at the same
 * size, or does not prove consistent, was rolled back or forked underneath
 * the service: KH_ERR_ROLLBACK until an operator resolves it
 * (docs/kms-rootkey.md "Log rollback"). */
#define KH_LOGSTATE_MAGIC "KHLOGS1\n"
#define KH_LOGSTATE_BYTES (8 + 8 + 32 + 32)

/* ---- test hooks: named crash points and fault injection ------------------ */
typedef enum kh_fault_kind { KH_FAULT_ALLOC = 0, KH_FAULT_WRITE = 1 } kh_fault_kind;
/* true if this call must fail (the armed count-down reached it). */
bool kh_fault_kms_hit(kh_kms *k, kh_fault_kind kind);
/* Call the test hook, if any, at a named point of an operation. */
void kh_kms_point(kh_kms *k, const char *point);
/* Allocation and write call sites of the key service, with fault injection. */
void *kh_kms_malloc(kh_kms *k, size_t n);
void *kh_kms_secure_alloc(kh_kms *k, size_t n);
kh_err kh_kms_write_file(kh_kms *k, const char *path, const void *data, size_t len);
kh_err kh_kms_unlink(kh_kms *k, const char *path);
/* The account's stripe lock, and its escrow lock (taken after it): an
 * escrow attempt (Argon2id, seconds) holds only the latter, so it stalls no
 * release, and no escrow attempt of another stripe. */
pthread_rwlock_t *kh_kms_acct_lock(kh_kms *k, const char *account);
pthread_mutex_t *kh_kms_escrow_lock(kh_kms *k, const char *account);

struct kh_kms {
  char *region_path, *kms_dir, *log_dir;
  kh_kms_config cfg;
  kh_rootkey *rk;
  kh_provider *prov;
  kh_tlog *log;
  char *vkey;
  int lockfd;
  int lsfd;                    /* kms/log-state, kept open (committing thread) */
  /* group commit */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  kh_kms_pending *qhead, *qtail;
  bool committing;
  unsigned fail_appends;       /* test hook */
  kh_kms_mtree mt;
  uint64_t batches, entries;
  /* serialises escrow attempts and the operations that rewrite state */
  pthread_mutex_t opmu;
  /* unwrapped key cache (cmu) */
  pthread_mutex_t cmu;
  kh_kms_cached *cache[KH_KMS_CACHE_BUCKETS];
  size_t ncached;
  /* released keys live in one secure slab (sodium_malloc per release costs
   * mmap/mprotect/mlock and TLB shootdowns): smu */
  pthread_mutex_t smu;
  uint8_t *slab;               /* KH_KMS_SLOTS * 32 bytes, sodium memory */
  uint32_t *free_slots, nfree;
  /* witnesses opened on demand */
  struct kh_witness *witness[KH_KMS_WITNESS_MAX];
  pthread_rwlock_t acct[KH_KMS_ACCT_LOCKS];
  pthread_mutex_t esc[KH_KMS_ACCT_LOCKS]; /* escrow record and counter */
  /* log rollback detection (mu, committing thread) */
  struct kh_note_verifier *verifier; /* of the log's own key */
  bool rolled_back;
  char rollback_detail[200];
  struct { unsigned long long dev, ino, size; long long mtime_s, mtime_ns; } cp_stat;
  /* test hooks */
  pthread_mutex_t tmu;
  unsigned fault_n[2];         /* 0: off; else the n-th call of the kind fails */
  void (*hook)(void *ctx, const char *point);
  void *hook_ctx;
};

/* Append an already formatted entry (statement.c) through the same group
 * commit; durable when it returns KH_OK. */
kh_err kh_kms_log_text(kh_kms *k, const char *entry, size_t len, uint64_t *index);
/* Build the entry for op on account, sign it for a device request, and
 * append it durably (group commit).  With rel, fill index, proof and
 * checkpoint.  KH_ERR_LOG if the log could not be written. */
kh_err kh_kms_log(kh_kms *k, kh_log_op op, const char *account, const char *key,
                  const kh_kms_request *rq, bool has_attempt, uint32_t attempt,
                  kh_kms_release *rel);
/* The same for a device's presigned entry (kh_kms_presigned): appended only
 * if it describes exactly this operation and its signature verifies. */
kh_err kh_kms_log_presigned(kh_kms *k, kh_log_op op, const char *account, const char *key,
                            const kh_kms_presigned *ps, kh_kms_release *rel);
/* rq, or ps when it is not NULL */
kh_err kh_kms_log_either(kh_kms *k, kh_log_op op, const char *account, const char *key,
                         const kh_kms_request *rq, const kh_kms_presigned *ps,
                         kh_kms_release *rel);
/* "kms/escrow/<account>.<ext>" etc. (malloc'd) */
char *kh_kms_path(const kh_kms *k, const char *sub, const char *account, const char *ext);
bool kh_kms_account_ok(const char *account);
bool kh_kms_destroyed(kh_kms *k, const char *account);

#endif
