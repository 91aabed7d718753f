/* The snapshot order (lib/snapshot/order.c, docs/format.md §9.1). */
#include "kh_test.h"
#include "snapshot/order.h"

#define S 1000000000LL
#define YEAR (365LL * 86400 * S)

static void key(kh_snap_order_key *k, int id, int dev, uint64_t ctr, int64_t t)
{
  memset(k, 0, sizeof *k);
  k->id[0] = (uint8_t)id;
  k->device[0] = (uint8_t)dev;
  k->counter = ctr;
  k->time_ns = t;
}

static void parent(kh_snap_order_key *k, int p)
{
  k->has_parent = true;
  memset(k->parent, 0, 32);
  k->parent[0] = (uint8_t)p;
}

/* the ids (first byte) in order */
static void order(kh_snap_order_key *k, size_t n, int *ids, int64_t *eff)
{
  size_t perm[16];
  CHECK_OK(kh_snap_order(k, n, perm, eff));
  for (size_t i = 0; i < n; i++)
    ids[i] = k[perm[i]].id[0];
}

static void test_one_device_clock_ahead(void)
{
  kh_snap_order_key k[3];
  int64_t now = 1700000000 * S, eff[3];
  int ids[3];
  key(&k[0], 1, 1, 1, now - 60 * S);
  key(&k[1], 2, 1, 2, now + YEAR); /* clock a year ahead */
  key(&k[2], 3, 1, 3, now);
  order(k, 3, ids, eff);
  CHECK_EQ(ids[0], 1);
  CHECK_EQ(ids[1], 2);
  CHECK_EQ(ids[2], 3);
  CHECK_EQ(eff[1], now); /* ordered at its successor's time */
  CHECK_EQ(eff[0], now - 60 * S);
}

static void test_two_devices(void)
{
  /* A: F (a year ahead), then N; B: X1 before N, X2 after N */
  kh_snap_order_key k[4];
  int64_t now = 1700000000 * S;
  int ids[4];
  key(&k[0], 10, 1, 1, now + YEAR);
  key(&k[1], 11, 1, 2, now);
  key(&k[2], 20, 2, 1, now - 3600 * S);
  key(&k[3], 21, 2, 2, now + 3600 * S);
  order(k, 4, ids, NULL);
  CHECK_EQ(ids[0], 20);
  CHECK_EQ(ids[1], 10);
  CHECK_EQ(ids[2], 11);
  CHECK_EQ(ids[3], 21);
}

static void test_parent_across_devices(void)
{
  /* B's snapshot names A's as parent but has an earlier time: it still
   * comes after it, and pulls it down to its time */
  kh_snap_order_key k[3];
  int64_t now = 1700000000 * S, eff[3];
  int ids[3];
  key(&k[0], 1, 1, 1, now);
  key(&k[1], 2, 2, 1, now - 100 * S);
  parent(&k[1], 1);
  key(&k[2], 3, 3, 1, now - 50 * S);
  order(k, 3, ids, eff);
  CHECK_EQ(ids[0], 1);
  CHECK_EQ(ids[1], 2);
  CHECK_EQ(ids[2], 3);
  CHECK_EQ(eff[0], now - 100 * S);
}

static void test_repaired_copy(void)
{
  /* device 1 made 1 then 2; device 2 repaired 1 as 3 (time and place of
   * 1): 3 comes after 1 but before 2, so `latest` stays 2 */
  kh_snap_order_key k[3];
  int64_t now = 1700000000 * S;
  int ids[3];
  key(&k[0], 1, 1, 1, now - 100 * S);
  key(&k[1], 2, 1, 2, now);
  key(&k[2], 3, 1, 1, now - 100 * S);
  k[2].has_original = true;
  k[2].original[0] = 1;
  order(k, 3, ids, NULL);
  CHECK_EQ(ids[0], 1);
  CHECK_EQ(ids[1], 3);
  CHECK_EQ(ids[2], 2);
}

static void test_cycle_terminates(void)
{
  /* forged: 1 names 2 as parent, 2 names 1; both orders are in the result */
  kh_snap_order_key k[3];
  int ids[3];
  key(&k[0], 1, 1, 1, 5 * S);
  parent(&k[0], 2);
  key(&k[1], 2, 2, 1, 7 * S);
  parent(&k[1], 1);
  key(&k[2], 3, 3, 1, 6 * S);
  order(k, 3, ids, NULL);
  CHECK(ids[0] + ids[1] + ids[2] == 6 && ids[0] != ids[1] && ids[1] != ids[2]);
  CHECK_OK(kh_snap_order(k, 0, NULL, NULL));
}

int main(void)
{
  RUN(test_one_device_clock_ahead);
  RUN(test_two_devices);
  RUN(test_parent_across_devices);
  RUN(test_repaired_copy);
  RUN(test_cycle_terminates);
  return kh_test_done("test_snaporder");
}
