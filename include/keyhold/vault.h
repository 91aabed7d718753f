/* libkeyhold: the vault — an account's encrypted, deduplicated snapshots in
 * a region (docs/format.md).  All functions return kh_err; on failure
 * kh_errdetail() says what and where.  Nothing here prints. */
#ifndef KEYHOLD_VAULT_H
#define KEYHOLD_VAULT_H
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"
#include "keyhold/secret.h"

#define KH_SNAPSHOT_ID_HEX 64
#define KH_ACCOUNT_ID_HEX 32

typedef struct kh_vault kh_vault;

/* ---- creating and opening ------------------------------------------- */

typedef struct kh_init_opts {
  const char *region_path;  /* directory (created if missing or empty), or the
                               http(s):// URL of a region server: then an
                               account is signed up for there and this
                               device's identity saved in device_dir
                               (docs/format.md §12); no passcode is used */
  const char *region_id;    /* NULL = "local"; [a-z0-9-]{1,63} */
  const kh_secret *passcode;
  uint32_t kdf_ops;         /* Argon2id passes; 0 = default (3) */
  uint32_t kdf_mem_mib;     /* Argon2id memory in MiB; 0 = default (64) */
  int cipher;               /* 0 = auto (AES-256-GCM with AES-NI, else XChaCha20-Poly1305) */
  /* server mode only */
  const char *ca_file;      /* NULL: $KEYHOLD_CA_FILE, else the system's CAs */
  const char *invite;       /* sign-up invitation, NULL if none */
  const char *device_name;  /* NULL: the host name */
  const char *device_dir;   /* NULL: as kh_open_opts */
} kh_init_opts;

/* Create the region (if new) and a new account in it.  account_out receives
 * the account id (hex, NUL-terminated). */
kh_err kh_vault_init(const kh_init_opts *o, char account_out[KH_ACCOUNT_ID_HEX + 1]);
/* The region id of an existing region directory. */
kh_err kh_region_id(const char *region_path, char out[64]);
/* The region's only account (KH_ERR_AMBIGUOUS if several, NOTFOUND if none). */
kh_err kh_region_account(const char *region_path, char out[KH_ACCOUNT_ID_HEX + 1]);
/* Every account of the region, sorted by id.  *ids is malloc'd (caller
 * frees; NULL when *n is 0).  NOTFOUND if the directory is not a region. */
kh_err kh_region_accounts(const char *region_path, char (**ids)[KH_ACCOUNT_ID_HEX + 1],
                          size_t *n);

typedef struct kh_open_opts {
  const char *region_path;  /* directory, or a region server's URL: then the
                               device's identity on it is loaded from
                               device_dir and the account key opened with the
                               device's own key (no passcode needed) */
  const char *ca_file;      /* server mode: NULL = $KEYHOLD_CA_FILE / system */
  const char *account;      /* NULL: the region's only account */
  const kh_secret *passcode;
  const char *cache_dir;    /* NULL: $KEYHOLD_CACHE_DIR, $XDG_CACHE_HOME/keyhold, ~/.cache/keyhold */
  const char *device_dir;   /* NULL: $KEYHOLD_DEVICE_DIR, $XDG_CONFIG_HOME/keyhold, ~/.config/keyhold */
  bool no_cache;            /* do not use the local file cache */
  uint64_t limit_upload;    /* bytes per second written to the provider; 0 = unlimited */
  uint64_t limit_download;  /* bytes per second read from the provider; 0 = unlimited */
} kh_open_opts;

/* Open an account: unwraps the master key with the passcode (KH_ERR_PASSCODE
 * if wrong), loads this device's keys (enrolling a new device on first use). */
kh_err kh_vault_open(const kh_open_opts *o, kh_vault **out);
void kh_vault_free(kh_vault *v);
const char *kh_vault_account_id(const kh_vault *v);
const char *kh_vault_region_id(const kh_vault *v);
const char *kh_vault_device_id(const kh_vault *v);

/* Re-wrap the master key under a new passcode (old wrap removed after the
 * new one is durable). */
kh_err kh_vault_passcode_change(kh_vault *v, const kh_secret *newpass,
                                uint32_t kdf_ops, uint32_t kdf_mem_mib);

/* ---- protection and the key service (docs/threat-model.md) ------------- */

typedef enum kh_protection { KH_PROTECTION_STANDARD = 1, KH_PROTECTION_E2E = 2 } kh_protection;

/* The account's protection mode from its sealed protection record (the
 * provider can neither forge nor silently drop it: a missing or forged
 * record is KH_ERR_CORRUPT / KH_ERR_AUTH).  A device that once saw e2e
 * remembers it; a later "standard" is reported as KH_ERR_CORRUPT. */
kh_err kh_vault_protection(kh_vault *v, kh_protection *out);
kh_err kh_vault_protection_set(kh_vault *v, kh_protection mode);

/* New random recovery key rk; stores a recovery wrap (kind 3) of the
 * account key under it.  The caller shows rk to the person once. */
kh_err kh_vault_recovery_key_create(kh_vault *v, uint8_t rk[32]);

/* Signs a key-service request with this device's Ed25519 key; ctx is the
 * kh_vault (a kh_kms_sign_fn). */
kh_err kh_vault_device_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64]);
/* This device's per-account state directory (owned by v). */
const char *kh_vault_device_dir(const kh_vault *v);

typedef struct kh_device_info {
  char id[KH_ACCOUNT_ID_HEX + 1];  /* 32 hex digits */
  uint8_t pk[32];                  /* Ed25519 public key */
} kh_device_info;
/* The account's enrolled devices (only records that authenticate); *out is
 * malloc'd (free()). */
kh_err kh_vault_devices(kh_vault *v, kh_device_info **out, size_t *n);
/* Write the device record (docs/format.md §4, sealed with the account's
 * meta key) of another device approved into the account (server mode,
 * `keyhold device approve`): device_hex 32 hex digits, its Ed25519 key and
 * name.  An existing record is kept (KH_OK): a retried approval. */
kh_err kh_vault_device_record_add(kh_vault *v, const char *device_hex, const uint8_t pk[32],
                                  const char *name);
/* A copy of the account key and its cipher id (for escrow enable). */
kh_err kh_vault_master_key(kh_vault *v, uint8_t key[32], int *cipher);

/* Set a new passcode for account from its account key (e.g. released by
 * escrow) or from its recovery key.  The key is checked against the
 * account's protection record first (KH_ERR_AUTH if it does not open it);
 * the new passcode wrap is stored before the old ones are removed. */
kh_err kh_account_passcode_from_key(const char *region_path, const char *account,
                                    const uint8_t key[32], int cipher, const kh_secret *pass,
                                    uint32_t kdf_ops, uint32_t kdf_mem_mib);
kh_err kh_account_passcode_from_recovery(const char *region_path, const char *account,
                                         const uint8_t rk[32], const kh_secret *pass,
                                         uint32_t kdf_ops, uint32_t kdf_mem_mib);

/* ---- callbacks -------------------------------------------------------- */

typedef struct kh_progress {
  uint64_t files_done, files_total;   /* files_total grows while scanning */
  uint64_t bytes_done, bytes_total;
  uint64_t bytes_new;                 /* plaintext bytes not already stored */
  bool scan_done;                     /* totals are final */
  double elapsed;                     /* seconds */
  uint64_t errors;                    /* paths reported through warn so far */
  /* The files being read (backup) or written (restore) right now, at most
   * KH_PROGRESS_CURRENT; valid during the callback only. */
  const char *const *current;
  size_t ncurrent;
} kh_progress;
#define KH_PROGRESS_CURRENT 16
typedef void (*kh_progress_fn)(const kh_progress *p, void *ctx);
/* A non-fatal problem with one path (unreadable file, damaged file...). */
typedef void (*kh_warn_fn)(kh_err e, const char *path, const char *msg, void *ctx);
/* One file of a backup, once it is stored: status KH_FILE_NEW (the file
 * cache of this device has no record of the path), KH_FILE_CHANGED (it has
 * one, with other size, inode or times: the file was read again) or
 * KH_FILE_UNMODIFIED (served by the cache, not read).  size is the bytes
 * backed up.  Called from several threads, one call at a time. */
enum { KH_FILE_NEW = 'A', KH_FILE_CHANGED = 'M', KH_FILE_UNMODIFIED = 'U' };
typedef void (*kh_file_fn)(int status, const char *path, uint64_t size, void *ctx);

/* ---- backup ----------------------------------------------------------- */

/* One exclude pattern (docs/cli.md "Patterns"); "!" re-includes.  Also
 * restore's include and exclude patterns. */
typedef struct kh_backup_pattern {
  const char *pattern;
  bool icase;                /* ASCII letters match either case */
} kh_backup_pattern;

typedef struct kh_backup_opts {
  const char *const *paths;
  size_t npaths;
  const char *host;          /* NULL: gethostname() */
  int threads;               /* 0: number of CPUs */
  /* what to leave out (all off when zero) */
  const kh_backup_pattern *excludes; /* in order: the last that matches wins */
  size_t nexcludes;
  const char *const *exclude_if_present; /* a directory holding one of these
                                            names keeps only that file */
  size_t nexclude_if_present;
  bool exclude_caches;       /* same for a valid CACHEDIR.TAG */
  uint64_t exclude_larger_than; /* bytes; 0: no limit */
  bool one_file_system;      /* mount points are kept, empty */
  const char *const *tags;   /* stored in the snapshot (1..1024 bytes each) */
  size_t ntags;
  /* Walk, read, chunk and count as usual, but write nothing to the
   * provider (no pack, index, damage record, snapshot or lock) and leave
   * the local file cache alone; r->snapshot_id stays "". */
  bool dry_run;
  /* Back up what fd stdin_fd yields until end of file as one regular file
   * named stdin_name (absolute, normalised, e.g. "/db.sql"; mode 0644,
   * owned by this process, modified now; directories above it 0755) instead
   * of paths (npaths must be 0).  A read error fails the backup. */
  const char *stdin_name;
  int stdin_fd;
  kh_progress_fn progress;   /* called about 4 times a second, may be NULL */
  kh_warn_fn warn;
  void *ctx;
  /* Non-NULL: the backup stops soon after *cancel becomes non-zero (a
   * signal handler may set it).  What was stored by then is kept: the
   * packs written, including the ones being filled, are named by an index
   * object so that the next backup reuses them; no snapshot is written,
   * the lock is released and kh_backup returns KH_ERR_CANCELLED with r
   * counting what was done. */
  volatile sig_atomic_t *cancel;
  kh_file_fn file;           /* each file as it is stored; may be NULL */
} kh_backup_opts;

typedef struct kh_backup_result {
  char snapshot_id[KH_SNAPSHOT_ID_HEX + 1];
  uint64_t files, dirs, others;
  uint64_t bytes;            /* plaintext bytes of files */
  uint64_t bytes_read;       /* bytes read from disk (not served by the cache) */
  uint64_t blobs_new, bytes_new_plain, bytes_new_stored;
  uint64_t warnings;         /* paths skipped or read partially */
  double seconds;
  uint64_t files_new, files_changed, files_unmodified; /* as kh_file_fn says */
} kh_backup_result;

/* Back up paths into a new signed snapshot.  Paths that cannot be read are
 * reported through warn and counted in warnings; the snapshot is still made
 * (unless o->dry_run).  The packs stored so far are indexed every few packs
 * and seconds (docs/format.md §11), so an interrupted or killed backup
 * leaves data the next one deduplicates against. */
kh_err kh_backup(kh_vault *v, const kh_backup_opts *o, kh_backup_result *r);
/* KH_OK if pattern is a valid exclude pattern, else KH_ERR_INVAL with the
 * reason in kh_errdetail(). */
kh_err kh_backup_check_pattern(const char *pattern);

/* ---- snapshots -------------------------------------------------------- */

typedef struct kh_snapshot_info {
  char id[KH_SNAPSHOT_ID_HEX + 1];
  int64_t time_ns;           /* Unix time, nanoseconds */
  char *host;
  char **paths;              /* absolute paths as backed up */
  size_t npaths;
  char parent[KH_SNAPSHOT_ID_HEX + 1]; /* "" if none */
  char tree[KH_SNAPSHOT_ID_HEX + 1];
  char device[KH_ACCOUNT_ID_HEX + 1];
  uint64_t counter;          /* the device's monotonic counter */
  uint64_t files, bytes;     /* summary at backup time */
  char original[KH_SNAPSHOT_ID_HEX + 1]; /* repaired copy of this snapshot; "" if none */
  int64_t order_ns;          /* the time it is ordered by (<= time_ns) */
  char **tags;               /* backup --tag, in the order given */
  size_t ntags;
  char copy_of[KH_SNAPSHOT_ID_HEX + 1]; /* keyhold copy: the source snapshot; "" if none */
} kh_snapshot_info;

/* All snapshots, oldest first in the one snapshot order (docs/format.md
 * §9.1): a device's counter and parent links outrank clocks, so a snapshot
 * made with a clock running ahead is not newer than what its device made
 * after it.  Each is verified (decryption and device signature); free with
 * kh_snapshots_free. */
kh_err kh_snapshots_list(kh_vault *v, kh_snapshot_info **out, size_t *n);
void kh_snapshots_free(kh_snapshot_info *s, size_t n);
/* How many snapshots the last kh_snapshots_list on this thread skipped
 * because they failed to authenticate or parse (keyhold check names them). */
uint64_t kh_snapshots_skipped(void);
/* Which snapshots a command is about (docs/cli.md "Selecting snapshots").
 * A snapshot matches when its host is one of hosts, its set of backed-up
 * paths equals the set paths (trailing slashes ignored) and it carries
 * every tag of at least one entry of tags, an entry being a comma-separated
 * list ("a,b": a and b; "": no tags at all).  An empty list matches
 * anything; a NULL filter matches every snapshot. */
typedef struct kh_snapshot_filter {
  const char *const *hosts;
  size_t nhosts;
  const char *const *paths;
  size_t npaths;
  const char *const *tags;
  size_t ntags;
} kh_snapshot_filter;
bool kh_snapshot_filter_match(const kh_snapshot_filter *f, const kh_snapshot_info *s);
/* kh_snapshots_list keeping only the snapshots f matches (same order; free
 * with kh_snapshots_free; kh_snapshots_skipped counts as for the list). */
kh_err kh_snapshots_select(kh_vault *v, const kh_snapshot_filter *f, kh_snapshot_info **out,
                           size_t *n);
/* A snapshot name -> full id.  spec is a full id or a unique prefix (>= 4
 * hex digits; it must match f: else KH_ERR_NOTFOUND), "latest", or either
 * followed by "~N": the Nth snapshot before it in its group (same host and
 * paths), in the snapshot order, among those f matches.  "latest" is the
 * newest snapshot f matches, preferring this machine's host when f names no
 * host and this host has some; if those span more than one group,
 * KH_ERR_AMBIGUOUS with the groups listed in kh_errdetail() (never the
 * newest of some other folder).  latest and ~N refuse (KH_ERR_CORRUPT) while
 * some snapshot fails authentication.  f may be NULL. */
kh_err kh_snapshot_resolve(kh_vault *v, const char *spec, const kh_snapshot_filter *f,
                           char id[KH_SNAPSHOT_ID_HEX + 1]);

/* ---- walking a snapshot's tree --------------------------------------- */

enum kh_node_type {
  KH_NODE_FILE = 1, KH_NODE_DIR = 2, KH_NODE_SYMLINK = 3, KH_NODE_CHARDEV = 4,
  KH_NODE_BLOCKDEV = 5, KH_NODE_FIFO = 6, KH_NODE_SOCKET = 7
};

typedef struct kh_node_info {
  const uint8_t *path;       /* absolute path inside the snapshot, any bytes */
  size_t pathlen;
  int type;                  /* enum kh_node_type */
  uint32_t mode;             /* permission bits (07777) */
  uint32_t uid, gid;
  int64_t mtime_ns;
  uint64_t size;
  const uint8_t *link;       /* symlink target (type SYMLINK) */
  size_t linklen;
  uint64_t nlink;            /* > 1: hard-linked file */
  uint8_t content_id[32];    /* for diff: keyed hash over the content ids */
  uint64_t dev, ino;         /* as backed up: identify hard links (nlink > 1) */
  uint64_t rdev;             /* device number (types CHARDEV, BLOCKDEV) */
  uint8_t tree[32];          /* type DIR: its listing's id (kh_browse_list) */
  const void *node;          /* the library's node, for kh_node_read; valid in the callback only */
} kh_node_info;
/* Return non-zero from the callback to stop the walk (that value is returned). */
typedef int (*kh_walk_fn)(const kh_node_info *n, void *ctx);

/* Depth-first, names in byte order.  prefix (NULL = everything) limits the
 * walk to that path and what is below it; KH_ERR_NOTFOUND if absent. */
kh_err kh_snapshot_walk(kh_vault *v, const char *snap, const char *prefix,
                        kh_walk_fn fn, void *ctx);

/* A shared lock for a series of reads (dump, find, stats): prune (which
 * takes the exclusive lock) waits until kh_vault_read_unlock; backups and
 * other readers may run meanwhile.  KH_ERR_LOCKED while prune runs,
 * KH_ERR_STATE if v already holds a lock.  Unlock is a no-op without one. */
kh_err kh_vault_read_lock(kh_vault *v);
void kh_vault_read_unlock(kh_vault *v);

/* Content of a file, piece by piece: return non-zero to stop. */
typedef int (*kh_data_fn)(const uint8_t *p, size_t n, void *ctx);
/* Stream the content of file node n (only inside the kh_walk_fn callback
 * that received n) to fn, one chunk at a time, in order: memory is bounded
 * by one chunk.  fn sees a chunk only after it authenticated and its
 * length matched the tree; holes come as zeros.  A chunk that is missing
 * or fails authentication stops the stream with its error (KH_ERR_NOTFOUND,
 * KH_ERR_AUTH...), so fn has then seen exactly the complete, authentic
 * chunks before it.  KH_ERR_FORMAT if the chunk lengths do not add up to
 * n->size; KH_ERR_INVAL if n is not a file; if fn returns non-zero the
 * stream stops with KH_ERR_IO. */
kh_err kh_node_read(kh_vault *v, const kh_node_info *n, kh_data_fn fn, void *ctx);

/* ---- browsing a snapshot without restoring (mount) ------------------- */

/* A reader of snapshots' directories and file contents for random access
 * (keyhold mount).  It keeps a bounded cache of decoded directory listings
 * and decrypted chunks (cache_bytes; 0: 64 MiB, at least one entry is always
 * kept).  Every chunk and listing is authenticated before it is used.  Not
 * thread-safe: one thread at a time per kh_browse and its vault.  v must
 * stay open (and should hold kh_vault_read_lock) while b is in use. */
typedef struct kh_browse kh_browse;
kh_err kh_browse_new(kh_vault *v, size_t cache_bytes, kh_browse **out);
void kh_browse_free(kh_browse *b);
/* The root directory's listing id of snapshot snap (a full 64-hex id):
 * verifies the snapshot and loads the index if new packs appeared. */
kh_err kh_browse_root(kh_browse *b, const char *snap, uint8_t dir[32]);
/* Each entry of directory dir (a root or a kh_node_info.tree), in name
 * order; in the callback n->path/pathlen is the entry's name (no '/').
 * Return non-zero from fn to stop (that value is returned); fn must not
 * call b. */
kh_err kh_browse_list(kh_browse *b, const uint8_t dir[32], kh_walk_fn fn, void *ctx);
/* Entry name of directory dir into *out (KH_ERR_NOTFOUND if absent).  The
 * pointers in *out stay valid until the next call on b. */
kh_err kh_browse_lookup(kh_browse *b, const uint8_t dir[32], const uint8_t *name, size_t len,
                        kh_node_info *out);

/* An open file: its chunk list is copied, so it outlives the kh_node_info
 * it was opened from (n from kh_browse_lookup/list, type FILE, else
 * KH_ERR_INVAL; KH_ERR_FORMAT if the chunk lengths do not add up). */
typedef struct kh_browse_file kh_browse_file;
kh_err kh_browse_file_open(kh_browse *b, const kh_node_info *n, kh_browse_file **out);
void kh_browse_file_free(kh_browse_file *f);
/* Up to len bytes at offset off into buf; *got is less than len only at
 * end of file.  Reads only the chunks the range touches (holes as zeros);
 * a chunk that is missing or not authentic fails the read (its error) and
 * nothing of it is copied. */
kh_err kh_browse_file_read(kh_browse_file *f, uint64_t off, void *buf, size_t len,
                           size_t *got);

/* ---- copy (docs/cli.md "copy") -------------------------------------- */

typedef struct kh_copy_result {
  uint64_t snapshots;        /* selected in the source */
  uint64_t copied, skipped;  /* skipped: a copy already exists (either way) */
  uint64_t blobs_new, bytes_new_plain, bytes_new_stored;
} kh_copy_result;
/* Called for each selected snapshot, oldest first: new_id is the copy's id,
 * or "" if it was skipped. */
typedef void (*kh_copy_fn)(const kh_snapshot_info *src, const char *new_id, void *ctx);
/* Copy snapshots of src (ids, prefixes or "latest"; NULL/0: all) into dst:
 * every file's content is read from src, chunked with dst's chunker and
 * stored under dst's keys, trees rebuilt, and a snapshot signed by dst's
 * device keeps the time, host, paths and tags and names the source
 * snapshot (docs/format.md §9, kind 3).  A source snapshot is skipped when
 * dst already has a copy of it, when it is itself a copy of one of dst's
 * snapshots, or when it and one of dst's snapshots copy the same one.
 * Each copy is committed (packs, index, snapshot) before the next one
 * starts.  Holds the shared lock of both; KH_ERR_INVAL if they are the
 * same account. */
kh_err kh_copy(kh_vault *dst, kh_vault *src, const char *const *snaps, size_t nsnaps,
               kh_copy_fn fn, void *ctx, kh_copy_result *r);

/* ---- stats (docs/cli.md "stats") ------------------------------------ */

typedef struct kh_stats_result {
  uint64_t snapshots;
  /* restore-size: what restoring each snapshot would write, summed over
   * the snapshots; hard links are one file per snapshot, as in restore */
  uint64_t files, dirs, others, bytes;
  /* raw-data: the distinct blobs the snapshots reference (data chunks and
   * trees), their plaintext and stored (compressed, encrypted) sizes */
  uint64_t blobs, data_blobs, tree_blobs;
  uint64_t plain_bytes, stored_bytes;
  uint64_t data_plain_bytes; /* plaintext of the distinct data chunks (dedup denominator) */
  uint64_t referenced_bytes; /* plaintext of every chunk reference (dedup numerator) */
  uint64_t missing_blobs;    /* referenced but not in the index */
} kh_stats_result;
/* Statistics over snaps (ids, prefixes or "latest"; NULL/0: every
 * snapshot).  Reads trees only, never file data; holds the shared lock. */
kh_err kh_stats(kh_vault *v, const char *const *snaps, size_t nsnaps, kh_stats_result *r);

/* change: '+' added, '-' removed, 'M' content changed, 'U' metadata only,
 * 'T' type changed.  added / removed: bytes of file content only in the
 * second / first snapshot's version of this path (for 'M' the chunks that
 * differ, by content id; holes count as no bytes). */
typedef void (*kh_diff_fn)(char change, const uint8_t *path, size_t pathlen, uint64_t added,
                           uint64_t removed, void *ctx);
kh_err kh_diff(kh_vault *v, const char *snap_a, const char *snap_b, kh_diff_fn fn, void *ctx);

/* ---- restore ---------------------------------------------------------- */

/* What an existing entry of the target gets where the snapshot has a file,
 * symlink or special file (docs/cli.md "restore"); directories are always
 * merged.  An entry is never written through: it is replaced by rename. */
typedef enum kh_overwrite {
  KH_OVERWRITE_ALWAYS = 0,   /* replace it */
  KH_OVERWRITE_IF_CHANGED,   /* keep it if type, size and mtime (symlinks: target) match */
  KH_OVERWRITE_IF_NEWER,     /* replace it only if the snapshot's mtime is later */
  KH_OVERWRITE_NEVER         /* keep anything that is there */
} kh_overwrite;

/* What restore did (or with dry_run would do) to one target path. */
enum { KH_RESTORE_WRITE = 1, KH_RESTORE_SKIP = 2, KH_RESTORE_DELETE = 3 };
typedef void (*kh_restore_fn)(int action, const char *path, void *ctx);

typedef struct kh_restore_opts {
  const char *target;        /* created if missing */
  /* Selection by pattern (docs/cli.md "Patterns", as for backup excludes):
   * with includes, only what an include matches (and what is below it) is
   * restored, with its ancestor directories; an include starting with "!"
   * is refused (KH_ERR_INVAL).  What an exclude matches (the last matching
   * one decides; "!" re-includes) is left out with what is below it. */
  const kh_backup_pattern *includes;
  size_t nincludes;
  const kh_backup_pattern *excludes;
  size_t nexcludes;
  kh_overwrite overwrite;
  /* Remove what the target holds that the snapshot does not, inside each
   * directory restored whole (with includes: those an include matches;
   * without: the target itself and every directory).  Excluded paths are
   * kept.  Symlinks are removed, never followed. */
  bool delete_extra;
  /* Re-read every file written (and every file --overwrite if-changed kept
   * as unchanged) and compare it with the snapshot's content ids; a
   * mismatch is reported through warn and counted in failed. */
  bool verify;
  /* Decide everything, write and delete nothing (the target is not
   * created); report and the counts say what would be done. */
  bool dry_run;
  int threads;
  kh_progress_fn progress;
  kh_warn_fn warn;           /* files that could not be restored intact */
  kh_restore_fn report;      /* each file, symlink or special file written
                              * or skipped, each path deleted; may be NULL */
  void *ctx;
  /* An entry restored without some of its metadata: an extended attribute
   * or ACL, or a file flag the target file system or this process could
   * not set (msg names them).  May be NULL; counted in meta_warnings. */
  kh_warn_fn meta_warn;
} kh_restore_opts;

typedef struct kh_restore_result {
  uint64_t files, dirs, others, bytes; /* restored (dry_run: would be) */
  uint64_t failed;           /* entries not restored (reported through warn) */
  uint64_t skipped;          /* existing entries kept by overwrite */
  uint64_t deleted;          /* target paths removed by delete_extra */
  uint64_t verified;         /* files re-read and found intact */
  uint64_t meta_warnings;    /* entries restored without all their metadata (meta_warn) */
} kh_restore_result;

/* Restore a snapshot under target, recreating the backed-up absolute paths.
 * Bytes that fail authentication are never written: such a file is reported,
 * removed and counted in failed; the call then returns KH_ERR_CORRUPT (also
 * when verify finds a mismatch).  No symlink beneath target is followed; an
 * entry that cannot be restored without (a directory where one is) fails
 * with everything below it.  KH_ERR_NOTFOUND if an include matches
 * nothing (the rest is restored). */
kh_err kh_restore(kh_vault *v, const char *snap, const kh_restore_opts *o, kh_restore_result *r);

/* ---- check ------------------------------------------------------------ */

typedef enum kh_check_level { KH_CHECK_ERROR = 1, KH_CHECK_NOTE = 2 } kh_check_level;
/* One finding.  snapshot/path name what is affected when known ("" otherwise). */
typedef void (*kh_check_fn)(kh_check_level lvl, const char *snapshot, const char *path,
                            const char *msg, void *ctx);
typedef struct kh_check_result {
  uint64_t snapshots, trees, blobs, packs, packs_read;
  uint64_t errors, notes;
} kh_check_result;
/* Verify the structure (and with read_data every byte).  Returns
 * KH_ERR_CORRUPT if any error was reported.  Holds a shared lock:
 * KH_ERR_LOCKED while prune runs; backups may run meanwhile. */
kh_err kh_check(kh_vault *v, bool read_data, kh_check_fn fn, void *ctx, kh_check_result *r);

/* ---- forget and prune ------------------------------------------------- */

kh_err kh_forget(kh_vault *v, const char *const *snaps, size_t n);
/* A keep policy (docs/cli.md "forget").  Snapshots are grouped by the
 * keys in group_by (0: one group) and each rule is applied to each group
 * separately; a snapshot kept by any rule is kept.  Periods are local
 * calendar periods of the snapshot's order_ns, "newest" is the snapshot
 * order (docs/format.md §9.1).  within_* is a span back from the newest
 * snapshot of the group (all 0: no such rule); tags keeps every snapshot
 * carrying one of them. */
enum { KH_GROUP_HOST = 1, KH_GROUP_PATHS = 2, KH_GROUP_TAGS = 4 };
typedef struct kh_keep_policy {
  uint32_t last, hourly, daily, weekly, monthly, yearly;
  uint32_t within_years, within_months, within_days, within_hours;
  const char *const *tags;
  size_t ntags;
  unsigned group_by;
  const kh_snapshot_filter *filter; /* only these snapshots are planned (NULL: all) */
} kh_keep_policy;
/* Rules, one reason each: "last 1", "hourly 2026-11-28 14:00", "daily
 * 2026-11-28", "weekly 2026-W48", "monthly 2026-11", "yearly 2026",
 * "within 1y2m3d4h", "tag important". */
enum { KH_KEEP_NRULES = 8, KH_KEEP_REASON_MAX = 96 };
typedef struct kh_forget_decision {
  size_t group;       /* 0..ngroups-1, numbered in list order of first member */
  bool keep;
  size_t nreasons;    /* 0 iff !keep */
  char reasons[KH_KEEP_NRULES][KH_KEEP_REASON_MAX];
} kh_forget_decision;
/* Pure: decides for each of the n snapshots of list (in kh_snapshots_list
 * order, oldest first) into out[n]; *ngroups gets the number of groups.
 * KH_ERR_INVAL if the policy has no rule. */
kh_err kh_forget_plan(const kh_snapshot_info *list, size_t n, const kh_keep_policy *p,
                      kh_forget_decision *out, size_t *ngroups);
/* Plans over every snapshot p->filter matches, removes the ones not kept
 * (unless dry_run), then calls fn once with the list and the plan.
 * Refuses (KH_ERR_CORRUPT) if some snapshot could not be read. */
typedef void (*kh_forget_fn)(const kh_snapshot_info *list, const kh_forget_decision *plan,
                             size_t n, size_t ngroups, void *ctx);
kh_err kh_forget_policy(kh_vault *v, const kh_keep_policy *p, bool dry_run,
                        kh_forget_fn fn, void *ctx);

typedef struct kh_prune_result {
  uint64_t packs_deleted, packs_repacked, blobs_removed, bytes_freed, packs_kept;
} kh_prune_result;
/* Remove data no snapshot uses.  Takes the exclusive lock: KH_ERR_LOCKED
 * while another operation holds a lock, or if its own lock is lost before
 * it commits (docs/format.md §10 says when a lock is stale). */
kh_err kh_prune(kh_vault *v, kh_progress_fn progress, void *ctx, kh_prune_result *r);

/* ---- repair (docs/cli.md "repair") ------------------------------------ */

/* One thing a repair found or did: snapshot ("" if none), path (NULL if
 * none; any bytes) and a message. */
typedef void (*kh_repair_fn)(const char *snapshot, const uint8_t *path, size_t pathlen,
                             const char *msg, void *ctx);

typedef struct kh_repair_index_result {
  uint64_t packs;            /* packs found at the provider */
  uint64_t packs_unreadable; /* left out: header missing or not authentic */
  uint64_t packs_missing;    /* in the old index, gone now */
  uint64_t blobs;            /* in the new index */
  uint64_t blobs_dropped;    /* left out: known damaged (check --read-data) */
  uint64_t indexes_replaced; /* old index objects superseded and deleted */
} kh_repair_index_result;
/* Rebuild the index from the packs present, reading each one's
 * authenticated header (not its data), leaving out copies known damaged.
 * Under the exclusive lock: one new index superseding every old one is
 * written, then the old ones and the damage records are deleted, so a
 * crash leaves either index in force. */
kh_err kh_repair_index(kh_vault *v, kh_repair_fn fn, void *ctx, kh_repair_index_result *r);

/* A snapshot repair snapshots rewrote (new_id "" with dry_run). */
typedef void (*kh_repair_snap_fn)(const char *snapshot, const char *new_id,
                                  uint64_t files_removed, uint64_t dirs_emptied, bool forgotten,
                                  void *ctx);
typedef struct kh_repair_snapshots_opts {
  const char *const *snaps;  /* NULL/0: every snapshot */
  size_t nsnaps;
  bool forget;               /* remove each original once its copy is stored */
  bool dry_run;              /* write nothing */
  kh_repair_fn removed;      /* each file removed / directory emptied */
  kh_repair_snap_fn rewritten;
  void *ctx;
} kh_repair_snapshots_opts;
typedef struct kh_repair_snapshots_result {
  uint64_t snapshots, rewritten, forgotten, unreadable, files_removed, dirs_emptied;
} kh_repair_snapshots_result;
/* Rewrite every snapshot whose trees reference data that is gone: a file
 * with any chunk missing or known damaged is removed, a directory whose
 * listing is gone becomes empty.  The copy keeps the original's time, host,
 * paths and parent, names it as original (docs/format.md §9, so it takes
 * its place in the order) and is signed by this device.  Snapshots that
 * fail to authenticate are reported and left alone (unreadable). */
kh_err kh_repair_snapshots(kh_vault *v, const kh_repair_snapshots_opts *o,
                           kh_repair_snapshots_result *r);

#endif
