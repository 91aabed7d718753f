/* Internal state of an open account and helpers shared by the vault verbs
 * (backup.c, restore.c, walk.c, check.c, prune.c, lock.c). */
#ifndef KH_VAULT_INTERNAL_H
#define KH_VAULT_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/vault.h"
#include "common/buf.h"
#include "crypto/objseal.h"
#include "chunk/chunker.h"
#include "index/index.h"
#include "provider/provider.h"
#include "snapshot/tree.h"

#define KH_REGION_MARKER "keyhold-region"
#define KH_DEVICE_ID_BYTES 16

struct kh_remote;
struct kh_device_state;

struct kh_vault {
  kh_provider *prov;
  struct kh_remote *remote;     /* server mode (vault_remote.c), else NULL */
  struct kh_device_state *dev;  /* server mode: this device's identity */
  char *region_path;
  char region_id[64];
  char account[KH_ACCOUNT_ID_HEX + 1];
  char prefix[128];             /* "accounts/<account>" */
  uint8_t *master;              /* 32 bytes, secure */
  int cipher;
  kh_keys keys;
  kh_chunker chunker;
  /* this device */
  uint8_t device_id[KH_DEVICE_ID_BYTES];
  char device_hex[KH_DEVICE_ID_BYTES * 2 + 1];
  uint8_t *device_sk;           /* Ed25519 secret key, 64 bytes, secure */
  uint8_t device_pk[32];
  char *device_dir;             /* per-account state directory of this device */
  char *cache_path;             /* NULL with no_cache */
  /* loaded on demand */
  bool index_loaded;
  kh_index index;
  uint8_t (*index_ids)[32];     /* index objects the table was built from */
  size_t nindex_ids;
  uint8_t (*superseded)[32];    /* loaded index objects that others supersede */
  size_t nsuperseded;
  /* known devices: id -> Ed25519 public key */
  struct kh_known_device { uint8_t id[KH_DEVICE_ID_BYTES]; uint8_t pk[32]; } *devices;
  size_t ndevices;
  bool devices_loaded;
  /* the held lock (lock.c) */
  char lock_name[160];          /* held lock object, "" if none */
  struct kh_lock_keeper *lock_keeper; /* refreshes it in the background */
  /* known damage (damage.c): sorted pack ids, sorted (pack id | blob id) */
  uint8_t (*bad_packs)[32];
  size_t nbad_packs;
  uint8_t (*bad_blobs)[64];
  size_t nbad_blobs;
};

/* object name helpers: "<prefix>/<kind>/<hex>" (packs: data/<2hex>/<hex>) */
void kh_vault_objname(const kh_vault *v, char *out, size_t n, const char *kind,
                      const uint8_t *id, size_t idlen);
/* Write / read a sealed meta object of this account. */
kh_err kh_vault_put_obj(kh_vault *v, const char *kind, const char *type, const uint8_t *id,
                        size_t idlen, const void *pt, size_t n, bool excl);
kh_err kh_vault_get_obj(kh_vault *v, const char *kind, const char *type, const uint8_t *id,
                        size_t idlen, kh_buf *out);
/* The ids ("<64 hex>" names) of one kind of object, sorted; with sizes
 * non-NULL also their sizes.  Both arrays are malloc'd (free()). */
kh_err kh_vault_list_ids(kh_vault *v, const char *kind, uint8_t (**ids)[32], size_t *n);
kh_err kh_vault_list_sized(kh_vault *v, const char *kind, uint8_t (**ids)[32],
                           uint64_t **sizes, size_t *n);
/* Position of id in a sorted id list, or -1. */
ptrdiff_t kh_ids_find(const uint8_t (*ids)[32], size_t n, const uint8_t id[32]);

/* Index: load all index objects (strict: any failure is an error; tolerant:
 * report through fn and go on, used by check). */
typedef void (*kh_index_report_fn)(const char *what, kh_err e, void *ctx);
kh_err kh_vault_load_index(kh_vault *v, kh_index_report_fn report, void *ctx);
/* Write packs [first_pack, npacks) of idx as a new index object of the
 * loaded index's generation (docs/format.md §7); the index must be loaded. */
kh_err kh_vault_write_index(kh_vault *v, const kh_index *idx, uint32_t first_pack,
                            const uint8_t (*sup)[32], size_t nsup, uint8_t id_out[32]);
/* Write idx, which holds everything the account still needs, as an index
 * of the next generation: every index of a lower generation is ignored
 * from then on, even if the provider serves it again after it was deleted
 * (prune). */
kh_err kh_vault_write_full_index(kh_vault *v, const kh_index *idx, const uint8_t (*sup)[32],
                                 size_t nsup, uint8_t id_out[32]);
/* Forget the loaded index (the next kh_vault_load_index reads it again). */
void kh_vault_index_drop(kh_vault *v);
/* Is the loaded index still what the provider holds?  Drops it if the set
 * of index objects changed (another process backed up or pruned). */
kh_err kh_vault_index_revalidate(kh_vault *v);
/* Known damage (damage.c, docs/format.md §7.1).  load: add the account's
 * damage records to the sets (unreadable ones are ignored; the sets only
 * grow, clear empties them).  record: store one record and add it to the
 * sets.  scan_packs: list the packs; every pack of the index that is
 * missing or of another size is added (record: and recorded) and the index
 * reloaded (*nbad: how many were new).  blob_usable: en (of idx) exists
 * and its copy is not known damaged.  index_merge: decode one index
 * plaintext into v->index, a copy not known damaged winning over one that
 * is.  encode/decode: a record's plaintext (decode bounded, fuzzed; the
 * pointers point into p). */
kh_err kh_damage_encode(const uint8_t (*packs)[32], size_t np, const uint8_t (*blobs)[64],
                        size_t nb, kh_buf *out);
kh_err kh_damage_decode(const uint8_t *p, size_t n, const uint8_t **packs, size_t *np,
                        const uint8_t **blobs, size_t *nb);
void kh_vault_clear_damage(kh_vault *v);
kh_err kh_vault_load_damage(kh_vault *v);
kh_err kh_vault_record_damage(kh_vault *v, const uint8_t (*packs)[32], size_t np,
                              const uint8_t (*blobs)[64], size_t nb);
kh_err kh_vault_scan_packs(kh_vault *v, bool record, uint64_t *nbad);
bool kh_vault_pack_known_bad(const kh_vault *v, const uint8_t pack[32]);
bool kh_vault_blob_usable(const kh_vault *v, const kh_index *idx, const kh_index_entry *en);
kh_err kh_vault_index_merge(kh_vault *v, const uint8_t *plain, size_t n);
/* Read one blob by id through the index into out. */
kh_err kh_vault_read_blob(kh_vault *v, const uint8_t id[32], kh_buf *out);
/* Authenticate and parse pack pid's header in bounded pieces (trailer, then
 * header; kh_pack_read_header).  *blobs is malloc'd (free()). */
kh_err kh_vault_read_pack_header(kh_vault *v, const uint8_t pid[32], kh_pack_blob **blobs,
                                 size_t *n);
kh_err kh_vault_load_tree(kh_vault *v, const uint8_t id[32], kh_tree *t);
/* The public view of tree node t named path (walk.c); n->node = t. */
void kh_node_info_fill(const kh_tnode *t, const uint8_t *path, size_t pathlen, kh_node_info *n);

/* Snapshots */
kh_err kh_vault_load_snapshot(kh_vault *v, const uint8_t id[32], kh_snap *s);
kh_err kh_vault_write_snapshot(kh_vault *v, const kh_snap *s, uint8_t id_out[32]);
/* select.c: a snapshot name -> id (kh_snapshot_resolve; f NULL: no filter) */
kh_err kh_vault_resolve(kh_vault *v, const char *spec, uint8_t id[32]);
kh_err kh_vault_resolve_filtered(kh_vault *v, const char *spec, const kh_snapshot_filter *f,
                                 uint8_t id[32]);
/* Free what one kh_snapshot_info owns (not the struct) and zero it. */
void kh_snapshots_free_one(kh_snapshot_info *s);
/* The same set of strings (duplicates and NULLs do not count). */
bool kh_snap_same_set(char *const *a, size_t na, char *const *b, size_t nb);
/* Device counter (monotonic per device) */
kh_err kh_vault_next_counter(kh_vault *v, uint64_t region_max, uint64_t *out);

/* Parse a passcode key-wrap object's header (docs/format.md §4) without
 * running Argon2id: KH_ERR_NOTFOUND for another kind, KH_ERR_FORMAT if
 * malformed or asking for KDF costs out of bounds.  Fuzzed. */
kh_err kh_keywrap_passcode_header(const uint8_t *obj, size_t n, uint32_t *ops, uint32_t *mib,
                                  uint8_t salt[16], size_t *hlen);

/* A lock object's plaintext (docs/format.md §10); false if malformed. Fuzzed. */
typedef struct kh_lock_info {
  bool exclusive;
  int64_t time_ns;              /* informative only: never used for staleness */
  uint32_t pid;
  char host[256];
  bool has_owner;               /* the owner fields below are present */
  uint8_t boot_id[16];          /* the owner's kernel boot id */
  uint64_t pidns_dev, pidns_ino; /* the owner's PID namespace */
  uint64_t start;               /* the owner's start time (clock ticks since boot) */
  uint64_t refresh;             /* bumped by every refresh */
} kh_lock_info;
bool kh_lock_decode(const uint8_t *p, size_t n, kh_lock_info *l);

/* Locks (lock.c, docs/format.md §10).  kh_vault_lock takes a shared or
 * exclusive lock (KH_ERR_LOCKED if another live lock is in the way; a lock
 * that cannot be read is live), starts a thread that refreshes it, and
 * revalidates the loaded index.  KH_ERR_STATE if the handle holds one. */
kh_err kh_vault_lock(kh_vault *v, bool exclusive);
/* Release: stop the refresher, delete the lock object.  No-op without one. */
void kh_vault_unlock(kh_vault *v);
/* Refresh the lock now: KH_ERR_LOCKED if it is no longer ours (removed or
 * replaced by another process that took it for stale); an exclusive lock
 * also fails if another live lock appeared.  Call before committing. */
kh_err kh_vault_lock_refresh(kh_vault *v);
/* Without I/O: KH_ERR_LOCKED (with the reason) once a background refresh
 * failed; the operation must stop without committing. */
kh_err kh_vault_lock_check(kh_vault *v);
/* For tests: a lock is stale after expiry_ns unchanged, refreshed every
 * refresh_ns; lockers back off backoff_ns to 3 x backoff_ns between tries.
 * 0 restores a default (30 minutes, 5 minutes, 200 ms). */
void kh_lock_set_timing(int64_t expiry_ns, int64_t refresh_ns, int64_t backoff_ns);

/* Paths: user cache / device directories */
char *kh_default_dir(const char *env, const char *xdg, const char *fallback);

double kh_now(void); /* monotonic seconds */
int64_t kh_wall_ns(void);

/* Key wraps (vault.c): a passcode wrap (kind 1) of master; wid gets its id.
 * ops/mib 0 = defaults. */
kh_err kh_vault_make_passcode_wrap(const char *region, const char *account,
                                   const uint8_t *master, int cipher, const kh_secret *pass,
                                   uint32_t ops, uint32_t mib, uint8_t wid[16], kh_buf *out);
/* Every key object of an account (names of 32 hex digits under
 * <prefix>/keys), however many: *names is malloc'd (caller frees). */
kh_err kh_vault_key_names(kh_provider *p, const char *prefix, char (**names)[33], size_t *n);
/* A passcode change: store the passcode wrap obj as <prefix>/keys/<wid>,
 * then delete EVERY other passcode wrap (kind 1) of the account, so that
 * exactly the new passcode opens it.  An interrupted run leaves the new wrap
 * and some old ones, all of which open (kh_vault_open tries every wrap);
 * the next change removes them all. */
kh_err kh_vault_passcode_replace(kh_provider *p, const char *prefix, const uint8_t wid[16],
                                 const kh_buf *obj);
/* Server mode (vault_remote.c): region_path is an http(s) URL. */
bool kh_vault_is_url(const char *region);
kh_err kh_vault_init_remote(const kh_init_opts *o, char account_out[KH_ACCOUNT_ID_HEX + 1]);
/* Fill v (allocated as kh_vault_open does) from the device's state and its
 * kind-4 key: provider, region, account, master key, device keys. */
kh_err kh_vault_open_remote(const kh_open_opts *o, kh_vault *v);
/* The region id from the region marker "keyhold-region". */
kh_err kh_vault_read_marker(kh_provider *p, char id[64]);
/* A device record's plaintext (docs/format.md §4) into rec. */
kh_err kh_vault_device_record(kh_buf *rec, const uint8_t pk[32], const char *name);
/* Standard protection of a new account on a region server: the key
 * service's wrap through the server (logged there) and the protection
 * record, written through v's provider. */
kh_err kh_vault_protect_new_account_remote(kh_vault *v);
/* KH_OK in a directory; on a region server KH_ERR_DENIED ("this device
 * lacks the 'prune' capability") unless the device has every capability
 * in need (KH_CAP_* bits), checked before an operation starts so that it
 * is refused as a whole, by the name of what it is. */
kh_err kh_vault_require(kh_vault *v, unsigned need);
/* POST kms/wrap for v's account (docs/protocol.md §10.1). */
kh_err kh_vault_kms_wrap_remote(kh_vault *v);

/* protection.c: standard protection for a new account (key-service wrap,
 * logged) and its protection record. */
kh_err kh_vault_protect_new_account(kh_provider *p, const char *region_path,
                                    const char *region, const char *account,
                                    const uint8_t *master, int cipher);

#endif
