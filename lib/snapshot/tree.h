/* Trees (one per directory, stored as blobs of type tree) and snapshot
 * records: binary codecs, bounded and fuzzed (docs/format.md §8, §9). */
#ifndef KH_TREE_H
#define KH_TREE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/buf.h"

#define KH_NAME_MAX 4096
#define KH_TREE_MAX_NODES 10000000u
/* extended attributes of one node (docs/format.md §8): Linux's own limits */
#define KH_XATTR_NAME_MAX 255
#define KH_XATTR_VALUE_MAX 65536u
#define KH_XATTR_COUNT_MAX 1024u
/* file flags kept (chattr a, i, d); format bits, not the kernel's */
#define KH_FLAG_APPEND 1u
#define KH_FLAG_IMMUTABLE 2u
#define KH_FLAG_NODUMP 4u
#define KH_FLAGS_ALL 7u

typedef struct kh_chunkref {
  uint8_t id[32];   /* all zero: a hole (sparse region) of len bytes */
  uint64_t len;
} kh_chunkref;

typedef struct kh_tnode {
  const uint8_t *name;
  size_t namelen;
  uint8_t type;                 /* enum kh_node_type */
  uint32_t mode, uid, gid;
  int64_t mtime_ns;
  uint64_t size, nlink, ino, dev, rdev;
  const uint8_t *link;          /* symlink target */
  size_t linklen;
  uint8_t subtree[32];          /* dir */
  kh_chunkref *chunks;          /* file */
  size_t nchunks;
  /* files and directories: file flags (KH_FLAG_*) and extended
   * attributes (POSIX ACLs are the system.posix_acl_* ones), encoded as
   * nxattr × (lbytes name | lbytes value) with names strictly increasing */
  uint32_t flags;
  const uint8_t *xattrs;
  size_t xattrlen;
  uint32_t nxattr;
} kh_tnode;

typedef struct kh_tree {
  kh_tnode *nodes;
  size_t n;
  uint8_t *raw;                 /* owned copy the names point into */
  kh_chunkref *refs;            /* owned, all nodes' chunks */
} kh_tree;

/* nodes must be sorted by name (memcmp order, shorter first) and unique. */
kh_err kh_tree_encode(const kh_tnode *nodes, size_t n, kh_buf *out);
kh_err kh_tree_decode(const uint8_t *p, size_t len, kh_tree *t);
void kh_tree_release(kh_tree *t);
int kh_name_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl);
/* The next extended attribute of a node's list (*off: 0 to start):
 * name (1..255 bytes, no NUL) and value; false at the end.  Only for a
 * list kh_tree_decode or kh_tree_encode accepted. */
bool kh_xattr_next(const uint8_t *xattrs, size_t len, size_t *off, const uint8_t **name,
                   size_t *namelen, const uint8_t **value, size_t *valuelen);
/* How many attributes p[0..len) holds if it is a valid list (the rules of
 * docs/format.md §8: what kh_tree_encode accepts); false if it is not. */
bool kh_xattr_list_count(const uint8_t *p, size_t len, uint32_t *n);
/* Find a child by name (binary search); NULL if absent. */
const kh_tnode *kh_tree_find(const kh_tree *t, const uint8_t *name, size_t len);

typedef struct kh_snap {
  int64_t time_ns;
  char *host;
  char **paths;
  size_t npaths;
  bool has_parent;
  uint8_t parent[32];
  uint8_t tree[32];
  uint8_t device[16];
  uint64_t counter;
  uint64_t files, bytes;
  /* A rewritten snapshot (keyhold repair snapshots) names the one it
   * replaces and keeps that one's place in the order: the device and
   * counter of the first snapshot in its line (docs/format.md §9). */
  bool has_original;
  uint8_t original[32];
  uint8_t orig_device[16];
  uint64_t orig_counter;
  /* backup --tag: in the order given; none in snapshots made before tags */
  char **tags;
  size_t ntags;
  /* keyhold copy: the snapshot (of another account) this one copies, and
   * the device and counter that order it: its source's order line
   * (docs/format.md §9, §9.1) */
  bool has_copy_of;
  uint8_t copy_of[32];
  uint8_t copy_device[16];
  uint64_t copy_counter;
} kh_snap;

kh_err kh_snap_encode(const kh_snap *s, kh_buf *out);
kh_err kh_snap_decode(const uint8_t *p, size_t n, kh_snap *s);
void kh_snap_release(kh_snap *s);

#endif
