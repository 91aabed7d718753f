/* Snapshot order (docs/format.md §9.1).  The snapshots and the links
 * "made after" (next counter of the same device line, parent -> child,
 * original -> repaired copy) form a graph that is acyclic unless forged.
 * 1. Each snapshot's order time is the minimum of the recorded times of
 *    everything reachable from it: a snapshot cannot be newer than one made
 *    after it, so a clock running ahead cannot lift it past its successors.
 * 2. A topological sort (Kahn) that always takes the ready snapshot with
 *    the smallest (order time, time, device, counter, id), so links are
 *    never violated and ties are broken the same way everywhere. */
#include "snapshot/order.h"

#include <stdlib.h>
#include <string.h>

typedef struct graph {
  const kh_snap_order_key *k;
  size_t n;
  int64_t *eff;
  size_t *out_start, *out;   /* successors, CSR */
  size_t *in_start, *in;     /* predecessors, CSR */
} graph;

static _Thread_local const kh_snap_order_key *sort_keys; /* qsort has no context argument */

static int cmp_by_id(const void *a, const void *b)
{
  return memcmp(sort_keys[*(const size_t *)a].id, sort_keys[*(const size_t *)b].id, 32);
}

static int cmp_by_line(const void *a, const void *b)
{
  const kh_snap_order_key *x = &sort_keys[*(const size_t *)a], *y = &sort_keys[*(const size_t *)b];
  int c = memcmp(x->device, y->device, 16);
  if (c)
    return c;
  if (x->counter != y->counter)
    return x->counter < y->counter ? -1 : 1;
  if (x->has_original != y->has_original)
    return x->has_original ? 1 : -1; /* the original before its repaired copy */
  return memcmp(x->id, y->id, 32);
}

static int cmp_by_time(const void *a, const void *b)
{
  const kh_snap_order_key *x = &sort_keys[*(const size_t *)a], *y = &sort_keys[*(const size_t *)b];
  if (x->time_ns != y->time_ns)
    return x->time_ns < y->time_ns ? -1 : 1;
  return memcmp(x->id, y->id, 32);
}

/* Index of the key with this id, or n. */
static size_t find_id(const kh_snap_order_key *k, const size_t *by_id, size_t n,
                      const uint8_t id[32])
{
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = memcmp(k[by_id[mid]].id, id, 32);
    if (c == 0)
      return by_id[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return n;
}

/* The heap order of step 2. */
static bool before(const graph *g, size_t a, size_t b)
{
  const kh_snap_order_key *x = &g->k[a], *y = &g->k[b];
  if (g->eff[a] != g->eff[b])
    return g->eff[a] < g->eff[b];
  if (x->time_ns != y->time_ns)
    return x->time_ns < y->time_ns;
  int c = memcmp(x->device, y->device, 16);
  if (c)
    return c < 0;
  if (x->counter != y->counter)
    return x->counter < y->counter;
  return memcmp(x->id, y->id, 32) < 0;
}

static void heap_push(const graph *g, size_t *h, size_t *hn, size_t v)
{
  size_t i = (*hn)++;
  h[i] = v;
  while (i && before(g, h[i], h[(i - 1) / 2])) {
    size_t p = (i - 1) / 2, t = h[p];
    h[p] = h[i];
    h[i] = t;
    i = p;
  }
}

static size_t heap_pop(const graph *g, size_t *h, size_t *hn)
{
  size_t top = h[0], i = 0;
  h[0] = h[--*hn];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < *hn && before(g, h[l], h[m]))
      m = l;
    if (r < *hn && before(g, h[r], h[m]))
      m = r;
    if (m == i)
      break;
    size_t t = h[m];
    h[m] = h[i];
    h[i] = t;
    i = m;
  }
  return top;
}

/* Compressed adjacency of edges (from[i] -> to[i]) keyed by key[]. */
static void csr(size_t n, size_t ne, const size_t *key, const size_t *val, size_t *start,
                size_t *out)
{
  memset(start, 0, (n + 1) * sizeof *start);
  for (size_t i = 0; i < ne; i++)
    start[key[i] + 1]++;
  for (size_t i = 0; i < n; i++)
    start[i + 1] += start[i];
  size_t *fill = start; /* reuse: advance then restore */
  for (size_t i = 0; i < ne; i++)
    out[fill[key[i]]++] = val[i];
  for (size_t i = n; i > 0; i--)
    start[i] = start[i - 1];
  start[0] = 0;
}

kh_err kh_snap_order(const kh_snap_order_key *keys, size_t n, size_t *perm, int64_t *order_ns)
{
  kh_err e = KH_OK;
  size_t cap = n ? n : 1, ne = 0;
  size_t *by_id = malloc(cap * sizeof *by_id), *tmp = malloc(cap * sizeof *tmp);
  size_t *efrom = calloc(3 * cap, sizeof *efrom), *eto = calloc(3 * cap, sizeof *eto);
  size_t *indeg = calloc(cap, sizeof *indeg), *heap = malloc(cap * sizeof *heap);
  size_t *stack = malloc(cap * sizeof *stack);
  bool *done = calloc(cap, sizeof *done);
  graph g = {.k = keys, .n = n, .eff = malloc(cap * sizeof *g.eff),
             .out_start = malloc((n + 1) * sizeof(size_t)), .out = malloc(3 * cap * sizeof(size_t)),
             .in_start = malloc((n + 1) * sizeof(size_t)), .in = malloc(3 * cap * sizeof(size_t))};
  if (!by_id || !tmp || !efrom || !eto || !indeg || !heap || !stack || !done || !g.eff ||
      !g.out_start || !g.out || !g.in_start || !g.in) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  sort_keys = keys;
  for (size_t i = 0; i < n; i++)
    by_id[i] = tmp[i] = i;
  qsort(by_id, n, sizeof *by_id, cmp_by_id);
  /* edges: device lines, parents, originals */
  qsort(tmp, n, sizeof *tmp, cmp_by_line);
  for (size_t i = 1; i < n; i++)
    if (!memcmp(keys[tmp[i - 1]].device, keys[tmp[i]].device, 16)) {
      efrom[ne] = tmp[i - 1];
      eto[ne++] = tmp[i];
    }
  for (size_t i = 0; i < n; i++) {
    size_t p = keys[i].has_parent ? find_id(keys, by_id, n, keys[i].parent) : n;
    if (p < n && p != i) {
      efrom[ne] = p;
      eto[ne++] = i;
    }
    p = keys[i].has_original ? find_id(keys, by_id, n, keys[i].original) : n;
    if (p < n && p != i) {
      efrom[ne] = p;
      eto[ne++] = i;
    }
  }
  csr(n, ne, efrom, eto, g.out_start, g.out);
  csr(n, ne, eto, efrom, g.in_start, g.in);
  /* 1. order time: visiting by recorded time, the first time that reaches
   *    a snapshot backwards along the links is the smallest reachable */
  qsort(tmp, n, sizeof *tmp, cmp_by_time);
  for (size_t t = 0; t < n; t++) {
    size_t root = tmp[t], sp = 0;
    if (done[root])
      continue;
    done[root] = true;
    g.eff[root] = keys[root].time_ns;
    stack[sp++] = root;
    while (sp) {
      size_t x = stack[--sp];
      for (size_t j = g.in_start[x]; j < g.in_start[x + 1]; j++) {
        size_t p = g.in[j];
        if (!done[p]) {
          done[p] = true;
          g.eff[p] = keys[root].time_ns;
          stack[sp++] = p;
        }
      }
    }
  }
  /* 2. topological order, smallest first */
  for (size_t i = 0; i < ne; i++)
    indeg[eto[i]]++;
  memset(done, 0, cap * sizeof *done);
  size_t hn = 0, k = 0;
  for (size_t i = 0; i < n; i++)
    if (!indeg[i])
      heap_push(&g, heap, &hn, i);
  while (k < n) {
    if (!hn) { /* a cycle: release its smallest member */
      size_t best = n;
      for (size_t i = 0; i < n; i++)
        if (!done[i] && (best == n || before(&g, i, best)))
          best = i;
      indeg[best] = 0;
      heap_push(&g, heap, &hn, best);
    }
    size_t x = heap_pop(&g, heap, &hn);
    if (done[x])
      continue;
    done[x] = true;
    perm[k++] = x;
    for (size_t j = g.out_start[x]; j < g.out_start[x + 1]; j++) {
      size_t s = g.out[j];
      if (!done[s] && indeg[s] && --indeg[s] == 0)
        heap_push(&g, heap, &hn, s);
    }
  }
  if (order_ns)
    for (size_t i = 0; i < n; i++)
      order_ns[i] = g.eff[i];
out:
  free(by_id);
  free(tmp);
  free(efrom);
  free(eto);
  free(indeg);
  free(heap);
  free(stack);
  free(done);
  free(g.eff);
  free(g.out_start);
  free(g.out);
  free(g.in_start);
  free(g.in);
  return e;
}
