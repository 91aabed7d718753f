/* libkeyhold: the region's transparency log (docs/log.md).
 *
 *  - RFC 6962 / RFC 9162 Merkle trees over SHA-256: roots, inclusion and
 *    consistency proofs (generation and verification);
 *  - C2SP signed notes (c2sp.org/signed-note), checkpoints
 *    (c2sp.org/tlog-checkpoint) and Ed25519 cosignatures
 *    (c2sp.org/tlog-cosignature);
 *  - a tiled log store in a directory (c2sp.org/tlog-tiles), crash-safe;
 *  - the keyhold log entry format for key operations;
 *  - a witness that cosigns checkpoints it has checked for consistency.
 *
 * Every function returns a kh_err (KH_OK = 0) and leaves a detail for
 * kh_errdetail() on failure.  A proof or signature that does not verify is
 * KH_ERR_INVALID_PROOF; malformed input is KH_ERR_FORMAT.  Nothing prints. */
#ifndef KEYHOLD_LOG_H
#define KEYHOLD_LOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"
#include "keyhold/secret.h"

#define KH_LOG_HASH 32
/* Longest proof for 64-bit tree sizes: inclusion <= 64, consistency <= 128. */
#define KH_LOG_PROOF_MAX 128
/* Largest entry a log accepts (the tile entry bundle uses a 16-bit length). */
#define KH_LOG_ENTRY_MAX 65535
/* Signed notes larger than this are rejected without parsing. */
#define KH_NOTE_MAX (1u << 20)
#define KH_NOTE_SIGS_MAX 100

typedef uint8_t kh_log_hash[KH_LOG_HASH];

/* ---- Merkle tree (RFC 9162 §2.1) ---------------------------------------- */

/* SHA-256(0x00 || data) */
void kh_log_leaf_hash(kh_log_hash out, const void *data, size_t len);
/* SHA-256(0x01 || left || right) */
void kh_log_node_hash(kh_log_hash out, const kh_log_hash left, const kh_log_hash right);
/* MTH of n leaf hashes (n = 0 gives SHA-256 of the empty string). */
void kh_log_root(kh_log_hash out, const kh_log_hash *leaves, uint64_t n);
/* Inclusion proof of leaf index in the tree of the first size leaves (size
 * <= n).  proof receives *plen <= 64 hashes.  KH_ERR_INVAL on bad indexes. */
kh_err kh_log_inclusion_proof(const kh_log_hash *leaves, uint64_t n, uint64_t index,
                              uint64_t size, kh_log_hash proof[KH_LOG_PROOF_MAX],
                              size_t *plen);
/* Consistency proof between the trees of sizes size1 <= size2 <= n. */
kh_err kh_log_consistency_proof(const kh_log_hash *leaves, uint64_t n, uint64_t size1,
                                uint64_t size2, kh_log_hash proof[KH_LOG_PROOF_MAX],
                                size_t *plen);
/* RFC 9162 §2.1.3.2: KH_OK if proof shows leaf at index in the tree (size,
 * root), else KH_ERR_INVALID_PROOF. */
kh_err kh_log_verify_inclusion(const kh_log_hash leaf, uint64_t index, uint64_t size,
                               const kh_log_hash *proof, size_t plen,
                               const kh_log_hash root);
/* RFC 9162 §2.1.4.2: KH_OK if the tree (size2, root2) extends (size1, root1).
 * size1 == 0 needs an empty proof; size1 == size2 needs an empty proof and
 * equal roots. */
kh_err kh_log_verify_consistency(uint64_t size1, uint64_t size2,
                                 const kh_log_hash *proof, size_t plen,
                                 const kh_log_hash root1, const kh_log_hash root2);

/* ---- signed notes (c2sp.org/signed-note) --------------------------------- */

/* Key algorithm bytes: 0x01 Ed25519 note signatures, 0x04 Ed25519
 * cosignature/v1 (c2sp.org/tlog-cosignature). */
enum { KH_NOTE_ALG_ED25519 = 0x01, KH_NOTE_ALG_COSIG_V1 = 0x04 };

typedef struct kh_note_verifier kh_note_verifier;
typedef struct kh_note_signer kh_note_signer;

/* Parse a verifier key "name+hash8hex+base64(alg||pubkey)" (alg 0x01 or
 * 0x04; the key hash must match).  Free with kh_note_verifier_free. */
kh_err kh_note_verifier_new(const char *vkey, kh_note_verifier **out);
void kh_note_verifier_free(kh_note_verifier *v);
const char *kh_note_verifier_name(const kh_note_verifier *v);
uint32_t kh_note_verifier_hash(const kh_note_verifier *v);
int kh_note_verifier_alg(const kh_note_verifier *v);
/* Parse a signer key "PRIVATE+KEY+name+hash8hex+base64(alg||seed)".  The seed
 * and expanded key live in sodium memory and are wiped by _free. */
kh_err kh_note_signer_new(const char *skey, kh_note_signer **out);
void kh_note_signer_free(kh_note_signer *s);
const char *kh_note_signer_name(const kh_note_signer *s);
/* The matching verifier key string (malloc'd, caller frees). */
kh_err kh_note_signer_vkey(const kh_note_signer *s, char **vkey);
/* New random key pair for name with algorithm alg.  *skey is a kh_secret
 * (free with kh_secret_free); *vkey is malloc'd. */
kh_err kh_note_keygen(const char *name, int alg, kh_secret **skey, char **vkey);

/* Sign text (which must end in '\n', be valid UTF-8 without control
 * characters other than '\n') with an alg 0x01 signer.  *out (malloc'd,
 * NUL-terminated, *outlen bytes) = text "\n" "— name base64(hash||sig)\n". */
kh_err kh_note_sign(const char *text, size_t len, const kh_note_signer *s,
                    char **out, size_t *outlen);

/* Result of opening a note against a list of known verifiers. */
typedef struct kh_note_info {
  size_t text_len;    /* the note text is msg[0, text_len), ends in '\n' */
  size_t sigs_len;    /* signature block msg[text_len + 1, len) */
  unsigned nverified; /* distinct known keys whose signature verified */
  unsigned nunknown;  /* signatures by keys not in the list (ignored) */
} kh_note_info;

/* Open a signed note.  Verifies every signature by a known key (alg 0x01 as
 * a note signature, alg 0x04 as a cosignature/v1 over the text); unknown
 * keys are ignored.  verified[i] (if not NULL) is set when known[i]
 * verified, times[i] (if not NULL) to the cosignature's timestamp.
 * KH_OK if at least one known key verified; KH_ERR_INVALID_PROOF if none
 * did or a known key's signature is bad; KH_ERR_FORMAT on malformed notes;
 * KH_ERR_TOOBIG above KH_NOTE_MAX. */
kh_err kh_note_open(const void *msg, size_t len, kh_note_verifier *const *known,
                    size_t nknown, kh_note_info *info, bool *verified, uint64_t *times);

/* ---- checkpoints (c2sp.org/tlog-checkpoint) ------------------------------ */

#define KH_CHECKPOINT_ORIGIN_MAX 255

typedef struct kh_checkpoint {
  char origin[KH_CHECKPOINT_ORIGIN_MAX + 1];
  uint64_t size;
  kh_log_hash root;
  const char *ext;    /* extension lines (each ending in '\n'), pointing */
  size_t ext_len;     /* into the parsed text; NULL/0 if none */
} kh_checkpoint;

/* Parse a checkpoint body (the note text, not the signatures).  Strict:
 * non-empty origin, decimal size without leading zeros, canonical base64 of
 * exactly 32 bytes, non-empty extension lines. */
kh_err kh_checkpoint_parse(const void *text, size_t len, kh_checkpoint *c);
/* Format the body (malloc'd, NUL-terminated). */
kh_err kh_checkpoint_format(const kh_checkpoint *c, char **out, size_t *len);
/* Open a signed checkpoint note with the log's verifier v: verifies the
 * signature and parses the body (c->ext points into msg). */
kh_err kh_checkpoint_open(const void *msg, size_t len, const kh_note_verifier *v,
                          kh_checkpoint *c, size_t *text_len);

/* ---- cosignatures (c2sp.org/tlog-cosignature, Ed25519 cosignature/v1) ---- */

/* Cosign a checkpoint body at time t with an alg 0x04 signer: *line
 * (malloc'd) = "— name base64(keyhash || be64(t) || sig)\n". */
kh_err kh_cosig_sign(const char *text, size_t len, const kh_note_signer *s, uint64_t t,
                     char **line);

/* ---- log entries for key operations (docs/log.md §5) --------------------- */

typedef enum kh_log_op {
  KH_LOG_OP_WRAP = 1, KH_LOG_OP_UNWRAP, KH_LOG_OP_REWRAP, KH_LOG_OP_DESTROY,
  KH_LOG_OP_ROTATE, KH_LOG_OP_ESCROW_ENABLE, KH_LOG_OP_ESCROW_ATTEMPT,
  /* device statements of an account (docs/log.md §5.2): not key releases */
  KH_LOG_OP_ENROL, KH_LOG_OP_REVOKE
} kh_log_op;
#define KH_LOG_OP_LAST KH_LOG_OP_REVOKE

typedef enum kh_log_result { KH_LOG_RESULT_NONE = 0, KH_LOG_RESULT_OK, KH_LOG_RESULT_FAIL }
    kh_log_result;

#define KH_LOG_REGION_MAX 63
#define KH_LOG_ACCOUNT_MAX 128
#define KH_LOG_KEY_MAX 128
#define KH_LOG_DEVICE_MAX 128
#define KH_LOG_TEXT_MAX 512

typedef struct kh_log_entry {
  int64_t time;                              /* Unix seconds, UTC */
  char region[KH_LOG_REGION_MAX + 1];        /* [a-z0-9-]{1,63} */
  char account[KH_LOG_ACCOUNT_MAX + 1];      /* lowercase hex */
  kh_log_op op;
  char key[KH_LOG_KEY_MAX + 1];              /* key id: printable, no spaces */
  char requester[KH_LOG_TEXT_MAX + 1];       /* printable UTF-8 */
  char reason[KH_LOG_TEXT_MAX + 1];          /* printable UTF-8 */
  char device[KH_LOG_DEVICE_MAX + 1];        /* optional: "" = absent */
  bool has_attempt;
  uint32_t attempt;                          /* optional escrow attempt number */
  kh_log_result result;                      /* optional */
} kh_log_entry;

const char *kh_log_op_name(kh_log_op op);    /* "unwrap", ...; NULL if unknown */
/* Format e (validated like parse) into a malloc'd NUL-terminated text. */
kh_err kh_log_entry_format(const kh_log_entry *e, char **out, size_t *len);
/* Strict bounded parse; KH_ERR_FORMAT with a detail on any deviation. */
kh_err kh_log_entry_parse(const void *data, size_t len, kh_log_entry *e);

/* ---- the tiled log store (c2sp.org/tlog-tiles) --------------------------- */

typedef struct kh_tlog kh_tlog;

/* Create an empty log in dir (created if missing) and sign its first
 * checkpoint (size 0) with skey (a PRIVATE+KEY+ string, alg 0x01).
 * KH_ERR_EXISTS if dir already holds a checkpoint. */
kh_err kh_tlog_create(const char *dir, const char *origin, const char *skey);
/* Open a log.  With skey the log is writable (an exclusive lock on
 * dir/lock is taken: KH_ERR_LOCKED if another writer has it); with only vkey
 * it is read-only.  The checkpoint signature is verified, origin (if not
 * NULL) must match it, and the right edge of the tree read from the tiles
 * must hash to the checkpoint root (KH_ERR_CORRUPT otherwise).  Tiles
 * beyond the checkpoint (left by a crash) are ignored and overwritten. */
kh_err kh_tlog_open(const char *dir, const char *origin, const char *skey,
                    const char *vkey, kh_tlog **out);
void kh_tlog_free(kh_tlog *log);

/* Append a batch of n entries (entries[i] of lens[i] <= KH_LOG_ENTRY_MAX
 * bytes) durably: tiles are written and synced first, then the new signed
 * checkpoint.  *first_index (may be NULL) gets the index of entries[0].  On
 * failure the log on disk and in memory is unchanged (the caller may
 * retry). */
kh_err kh_tlog_append(kh_tlog *log, const void *const *entries, const size_t *lens,
                      size_t n, uint64_t *first_index);

uint64_t kh_tlog_size(const kh_tlog *log);
void kh_tlog_root(const kh_tlog *log, kh_log_hash root);
const char *kh_tlog_origin(const kh_tlog *log);
/* The current signed checkpoint note (pointer valid until the next append
 * or free; *len bytes, NUL-terminated). */
const char *kh_tlog_checkpoint(const kh_tlog *log, size_t *len);
/* Entry i < size: *out is malloc'd (caller frees). */
kh_err kh_tlog_entry(kh_tlog *log, uint64_t i, uint8_t **out, size_t *len);
/* Root of the tree of the first size entries (size <= current size). */
kh_err kh_tlog_root_at(kh_tlog *log, uint64_t size, kh_log_hash root);
/* Proofs computed from the tiles. */
kh_err kh_tlog_inclusion_proof(kh_tlog *log, uint64_t index, uint64_t size,
                               kh_log_hash proof[KH_LOG_PROOF_MAX], size_t *plen);
kh_err kh_tlog_consistency_proof(kh_tlog *log, uint64_t size1, uint64_t size2,
                                 kh_log_hash proof[KH_LOG_PROOF_MAX], size_t *plen);
/* Audit the whole log: every entry bundle rehashes to the level-0 tiles,
 * every full tile rehashes to the tile above, and everything to the
 * checkpoint root (KH_ERR_CORRUPT otherwise).  each (may be NULL) is called
 * for every entry in order; a non-KH_OK return stops the walk and is
 * returned. */
kh_err kh_tlog_verify(kh_tlog *log,
                      kh_err (*each)(void *ctx, uint64_t index, const uint8_t *e, size_t len),
                      void *ctx);

/* ---- reading a log from elsewhere (docs/protocol.md §3) ------------------ */

/* A tile in c2sp.org/tlog-tiles terms: hash tile (level >= 0) or entry
 * bundle (level -1), index n, width w (0 = full, 1..255 = partial). */
typedef struct kh_tile_ref {
  int level;
  uint64_t n;
  unsigned w;
} kh_tile_ref;
/* Longest canonical tile path ("tile/entries/x018/.../615.p/255"). */
#define KH_TILE_PATH_MAX 64

/* Parse a tile path relative to the log prefix, exactly as
 * c2sp.org/tlog-tiles spells it: "tile/<L>/<N>[.p/<W>]" or
 * "tile/entries/<N>[.p/<W>]"; L decimal 0..63 without leading zeros; N in
 * zero-padded 3-digit groups, all but the last prefixed by 'x', no leading
 * all-zero group, fitting in 64 bits; W decimal 1..255 without leading
 * zeros.  path need not be NUL-terminated; nothing is read past len.  Any
 * deviation is KH_ERR_FORMAT (paths longer than KH_TILE_PATH_MAX at once).
 * Accepted paths are exactly those kh_tile_ref_format produces. */
kh_err kh_tile_ref_parse(const char *path, size_t len, kh_tile_ref *t);
/* The canonical path of t into buf (cap >= KH_TILE_PATH_MAX is enough). */
kh_err kh_tile_ref_format(const kh_tile_ref *t, char *buf, size_t cap);

/* A read-only source of a log's files by path relative to its prefix
 * ("checkpoint", "tile/0/000.p/3", ...).  read stores a malloc'd buffer of
 * at least *len + 1 bytes in *out (caller frees); a missing file is
 * KH_ERR_NOTFOUND, one larger than max KH_ERR_TOOBIG.  free (may be NULL)
 * releases ctx when the log is freed. */
typedef struct kh_log_reader {
  kh_err (*read)(void *ctx, const char *rel, size_t max, uint8_t **out, size_t *len);
  void (*free)(void *ctx);
  void *ctx;
} kh_log_reader;

/* Open a log read-only through r, like kh_tlog_open with only vkey; name
 * (a URL or path) is used in error details.  The log owns r->ctx from
 * this call on, also on failure. */
kh_err kh_tlog_open_reader(const kh_log_reader *r, const char *name, const char *origin,
                           const char *vkey, kh_tlog **out);

/* Limits of kh_tlog_open_url's HTTP client (0 = default). */
typedef struct kh_http_opts {
  long connect_timeout_ms; /* default 10000 */
  long timeout_ms;         /* whole transfer, default 60000 */
  const char *ca_file;     /* NULL: the system's CA store */
} kh_http_opts;

/* Open a log served over HTTP(S) at prefix url ("http://host:port/log"):
 * the checkpoint and tiles are fetched on demand (one connection, reused),
 * every response capped at the size it can legitimately have, no
 * redirects.  Trust comes from vkey only: the server is not trusted.
 * Transport failures are KH_ERR_IO, a 404 KH_ERR_NOTFOUND (KH_ERR_CORRUPT
 * for a tile the checkpoint needs). */
kh_err kh_tlog_open_url(const char *url, const kh_http_opts *o, const char *origin,
                        const char *vkey, kh_tlog **out);

/* Server side: re-read the checkpoint of a read-only log.  If it changed,
 * it is verified as at open (same origin) and the log moves to it;
 * *changed (may be NULL) says whether it did.  On failure the log keeps
 * its previous state.  Not thread-safe with any other call on log. */
kh_err kh_tlog_refresh(kh_tlog *log, bool *changed);
/* The stored bytes of tile t, if t belongs to the tree of the current
 * checkpoint (a full tile wholly inside it, or the partial tile of exactly
 * the current size: partial tiles of earlier sizes are not served, since
 * a crashed append may have left one with other entries): KH_ERR_NOTFOUND
 * otherwise.  The bytes are checked for shape (w hashes, or a bundle of w
 * entries), not against the root.  *out is malloc'd (caller frees).  May
 * run concurrently with itself, not with kh_tlog_refresh or appends. */
kh_err kh_tlog_tile(kh_tlog *log, const kh_tile_ref *t, uint8_t **out, size_t *len);

/* ---- witness (docs/log.md §7) -------------------------------------------- */

typedef struct kh_witness kh_witness;

/* Create a witness state directory with a new cosigner key (alg 0x04) named
 * name.  *vkey (malloc'd) is its verifier key.  KH_ERR_EXISTS if present. */
kh_err kh_witness_init(const char *state_dir, const char *name, char **vkey);
kh_err kh_witness_open(const char *state_dir, kh_witness **out);
void kh_witness_free(kh_witness *w);
const char *kh_witness_vkey(const kh_witness *w);
/* Trust a log: its origin and verifier key (alg 0x01, name need not equal
 * origin).  Re-adding the same key is a no-op; a different key for a known
 * origin is KH_ERR_EXISTS. */
kh_err kh_witness_add_log(kh_witness *w, const char *origin, const char *vkey);
/* Check the log in log_dir (checkpoint signature, right edge, consistency
 * with the last checkpoint this witness cosigned for that origin, using a
 * proof computed from the log's tiles) and cosign it at time now.  On
 * success the state is updated and *out (malloc'd, NUL-terminated) is the
 * checkpoint note with the cosignature line appended.  On any failure the
 * state is unchanged: KH_ERR_INVALID_PROOF for inconsistency (smaller size,
 * same size with another root, bad proof), KH_ERR_NOTFOUND for unknown
 * origins. */
kh_err kh_witness_cosign_dir(kh_witness *w, const char *log_dir, uint64_t now,
                             char **out, size_t *len);
/* Transport-free form: a signed checkpoint note and a consistency proof
 * from the witness's remembered size to the note's size. */
kh_err kh_witness_cosign(kh_witness *w, const void *note, size_t note_len,
                         const kh_log_hash *proof, size_t plen, uint64_t now,
                         char **out, size_t *len);
/* The last cosigned size for origin (0 and KH_ERR_NOTFOUND if none). */
kh_err kh_witness_last(kh_witness *w, const char *origin, uint64_t *size, kh_log_hash root);

#endif
