/* The order of snapshots (docs/format.md §9.1): wall-clock time is a hint,
 * the signed per-device counter and the parent links are the truth.  A pure
 * function over the fields that matter, so that `latest`, `snapshots`,
 * forget's keep rules and backup's parent choice all use one order. */
#ifndef KH_SNAPSHOT_ORDER_H
#define KH_SNAPSHOT_ORDER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

typedef struct kh_snap_order_key {
  uint8_t id[32];
  int64_t time_ns;        /* as recorded (the maker's clock) */
  uint8_t device[16];     /* the device line it belongs to (a repaired */
  uint64_t counter;       /* snapshot: its original's device and counter) */
  bool has_parent;
  uint8_t parent[32];
  bool has_original;      /* a repaired snapshot: comes after its original */
  uint8_t original[32];
} kh_snap_order_key;

/* Order n snapshots oldest first: perm[0..n) receives the indices of keys
 * in that order; order_ns[i] (may be NULL) the time key i is ordered by:
 * its own time, or the earliest time of any snapshot known to have been
 * made after it (a later counter of its device line, a snapshot naming it
 * as parent or original), whichever is earlier.  Never fails but on
 * allocation (KH_ERR_NOMEM).  Snapshots linked in a cycle (only a forgery
 * can make one) are ordered by time among themselves. */
kh_err kh_snap_order(const kh_snap_order_key *keys, size_t n, size_t *perm, int64_t *order_ns);

#endif
