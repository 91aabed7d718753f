/* RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification
 * (docs/log.md §2).  Proof generation works over a kh_mt_src so the same
 * code serves in-memory hash lists (tests, tools) and the tile store. */
#include "log/log_internal.h"
#include "common/err.h"

#include <sodium.h>
#include <string.h>

void kh_log_leaf_hash(kh_log_hash out, const void *data, size_t len)
{
  crypto_hash_sha256_state st;
  const uint8_t z = 0x00;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, &z, 1);
  crypto_hash_sha256_update(&st, data, len);
  crypto_hash_sha256_final(&st, out);
}

void kh_log_node_hash(kh_log_hash out, const kh_log_hash left, const kh_log_hash right)
{
  uint8_t buf[1 + 2 * KH_LOG_HASH];
  buf[0] = 0x01;
  memcpy(buf + 1, left, KH_LOG_HASH);
  memcpy(buf + 1 + KH_LOG_HASH, right, KH_LOG_HASH);
  crypto_hash_sha256(out, buf, sizeof buf);
}

/* Largest power of two strictly less than n (n >= 2). */
static uint64_t split_point(uint64_t n)
{
  return (uint64_t)1 << (63 - __builtin_clzll(n - 1));
}

/* Right-edge stack fold: the hashes of complete subtrees of a tree, left to
 * right (decreasing sizes), fold into its root from the right. */
static void fold_right(kh_log_hash out, kh_log_hash *st, size_t n)
{
  for (size_t i = n - 1; i > 0; i--)
    kh_log_node_hash(st[i - 1], st[i - 1], st[i]);
  memcpy(out, st[0], KH_LOG_HASH);
}

void kh_mt_hash_list(kh_log_hash out, const kh_log_hash *h, uint64_t n)
{
  if (n == 0) {
    crypto_hash_sha256(out, NULL, 0);
    return;
  }
  /* Stack of complete subtrees: entry i has height ht[i]; merge equal ones. */
  kh_log_hash st[65];
  unsigned ht[65];
  size_t sp = 0;
  for (uint64_t i = 0; i < n; i++) {
    memcpy(st[sp], h[i], KH_LOG_HASH);
    ht[sp++] = 0;
    while (sp >= 2 && ht[sp - 1] == ht[sp - 2]) {
      kh_log_node_hash(st[sp - 2], st[sp - 2], st[sp - 1]);
      ht[sp - 2]++;
      sp--;
    }
  }
  fold_right(out, st, sp);
}

void kh_log_root(kh_log_hash out, const kh_log_hash *leaves, uint64_t n)
{
  kh_mt_hash_list(out, leaves, n);
}

kh_err kh_mt_range(const kh_mt_src *s, uint64_t a, uint64_t b, kh_log_hash out)
{
  kh_log_hash st[64];
  size_t sp = 0;
  if (a >= b)
    return kh_seterr(KH_ERR_INVAL, "empty Merkle range %llu..%llu",
                     (unsigned long long)a, (unsigned long long)b);
  while (a < b) {
    unsigned k = a ? (unsigned)__builtin_ctzll(a) : 63;
    while (k > 0 && (k >= 64 || ((uint64_t)1 << k) > b - a))
      k--;
    kh_err e = s->subtree(s->ctx, k, a >> k, st[sp]);
    if (e)
      return e;
    sp++;
    a += (uint64_t)1 << k;
  }
  fold_right(out, st, sp);
  return KH_OK;
}

static kh_err path(const kh_mt_src *s, uint64_t m, uint64_t a, uint64_t n,
                   kh_log_hash *proof, size_t *plen)
{
  if (n <= 1)
    return KH_OK;
  uint64_t k = split_point(n);
  kh_err e;
  if (m < k) {
    if ((e = path(s, m, a, k, proof, plen)))
      return e;
    e = kh_mt_range(s, a + k, a + n, proof[*plen]);
  } else {
    if ((e = path(s, m - k, a + k, n - k, proof, plen)))
      return e;
    e = kh_mt_range(s, a, a + k, proof[*plen]);
  }
  if (!e)
    (*plen)++;
  return e;
}

kh_err kh_mt_inclusion(const kh_mt_src *s, uint64_t index, uint64_t size,
                       kh_log_hash proof[KH_LOG_PROOF_MAX], size_t *plen)
{
  *plen = 0;
  if (index >= size)
    return kh_seterr(KH_ERR_INVAL, "leaf index %llu is not below tree size %llu",
                     (unsigned long long)index, (unsigned long long)size);
  return path(s, index, 0, size, proof, plen);
}

static kh_err subproof(const kh_mt_src *s, uint64_t m, uint64_t a, uint64_t n, bool b,
                       kh_log_hash *proof, size_t *plen)
{
  kh_err e;
  if (m == n) {
    if (b)
      return KH_OK;
    e = kh_mt_range(s, a, a + n, proof[*plen]);
    if (!e)
      (*plen)++;
    return e;
  }
  uint64_t k = split_point(n);
  if (m <= k) {
    if ((e = subproof(s, m, a, k, b, proof, plen)))
      return e;
    e = kh_mt_range(s, a + k, a + n, proof[*plen]);
  } else {
    if ((e = subproof(s, m - k, a + k, n - k, false, proof, plen)))
      return e;
    e = kh_mt_range(s, a, a + k, proof[*plen]);
  }
  if (!e)
    (*plen)++;
  return e;
}

kh_err kh_mt_consistency(const kh_mt_src *s, uint64_t size1, uint64_t size2,
                         kh_log_hash proof[KH_LOG_PROOF_MAX], size_t *plen)
{
  *plen = 0;
  if (size1 > size2)
    return kh_seterr(KH_ERR_INVAL, "consistency from size %llu to smaller size %llu",
                     (unsigned long long)size1, (unsigned long long)size2);
  if (size1 == 0 || size1 == size2)
    return KH_OK;
  return subproof(s, size1, 0, size2, true, proof, plen);
}

/* ---- in-memory source ---- */

kh_err kh_mt_mem_subtree(void *ctx, unsigned k, uint64_t j, kh_log_hash out)
{
  const kh_mt_mem *m = ctx;
  /* Bounds first, in terms that cannot overflow: subtree j of height k
   * lies inside the tree iff (j + 1) 2^k <= n, i.e. j < n >> k.  Only then
   * are the shifts defined and exact. */
  if (k >= 64 || j >= m->n >> k)
    return kh_seterr(KH_ERR_INVAL, "subtree beyond the tree");
  uint64_t w = (uint64_t)1 << k, a = j << k;
  kh_mt_hash_list(out, m->leaves + a, w);
  return KH_OK;
}

kh_err kh_log_inclusion_proof(const kh_log_hash *leaves, uint64_t n, uint64_t index,
                              uint64_t size, kh_log_hash proof[KH_LOG_PROOF_MAX],
                              size_t *plen)
{
  *plen = 0;
  if (size > n)
    return kh_seterr(KH_ERR_INVAL, "tree size %llu exceeds %llu leaves",
                     (unsigned long long)size, (unsigned long long)n);
  kh_mt_mem m = {leaves, n};
  kh_mt_src s = {kh_mt_mem_subtree, &m};
  return kh_mt_inclusion(&s, index, size, proof, plen);
}

kh_err kh_log_consistency_proof(const kh_log_hash *leaves, uint64_t n, uint64_t size1,
                                uint64_t size2, kh_log_hash proof[KH_LOG_PROOF_MAX],
                                size_t *plen)
{
  *plen = 0;
  if (size2 > n)
    return kh_seterr(KH_ERR_INVAL, "tree size %llu exceeds %llu leaves",
                     (unsigned long long)size2, (unsigned long long)n);
  kh_mt_mem m = {leaves, n};
  kh_mt_src s = {kh_mt_mem_subtree, &m};
  return kh_mt_consistency(&s, size1, size2, proof, plen);
}

/* ---- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---- */

static bool lsb(uint64_t x) { return x & 1; }

kh_err kh_log_verify_inclusion(const kh_log_hash leaf, uint64_t index, uint64_t size,
                               const kh_log_hash *proof, size_t plen,
                               const kh_log_hash root)
{
  if (index >= size || plen > 64)
    return kh_seterr(KH_ERR_INVALID_PROOF, "inclusion proof: index %llu, size %llu, "
                     "%zu hashes: impossible", (unsigned long long)index,
                     (unsigned long long)size, plen);
  uint64_t fn = index, sn = size - 1;
  kh_log_hash r;
  memcpy(r, leaf, KH_LOG_HASH);
  for (size_t i = 0; i < plen; i++) {
    if (sn == 0)
      return kh_seterr(KH_ERR_INVALID_PROOF, "inclusion proof too long");
    if (lsb(fn) || fn == sn) {
      kh_log_node_hash(r, proof[i], r);
      while (!lsb(fn) && fn != 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      kh_log_node_hash(r, r, proof[i]);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0)
    return kh_seterr(KH_ERR_INVALID_PROOF, "inclusion proof too short");
  if (sodium_memcmp(r, root, KH_LOG_HASH) != 0)
    return kh_seterr(KH_ERR_INVALID_PROOF, "inclusion proof does not lead to the root");
  return KH_OK;
}

kh_err kh_log_verify_consistency(uint64_t size1, uint64_t size2,
                                 const kh_log_hash *proof, size_t plen,
                                 const kh_log_hash root1, const kh_log_hash root2)
{
  if (size2 < size1)
    return kh_seterr(KH_ERR_INVALID_PROOF, "consistency: size %llu < earlier size %llu",
                     (unsigned long long)size2, (unsigned long long)size1);
  if (size1 == size2) {
    if (plen != 0)
      return kh_seterr(KH_ERR_INVALID_PROOF, "consistency: non-empty proof for equal sizes");
    if (sodium_memcmp(root1, root2, KH_LOG_HASH) != 0)
      return kh_seterr(KH_ERR_INVALID_PROOF, "consistency: same size, different roots");
    return KH_OK;
  }
  if (size1 == 0) {
    if (plen != 0)
      return kh_seterr(KH_ERR_INVALID_PROOF, "consistency: non-empty proof from size 0");
    return KH_OK;
  }
  if (plen == 0 || plen > KH_LOG_PROOF_MAX)
    return kh_seterr(KH_ERR_INVALID_PROOF, "consistency proof has %zu hashes", plen);
  /* Step 2: when size1 is a power of two, root1 is the implicit first hash. */
  size_t i = 0;
  kh_log_hash fr, sr;
  if ((size1 & (size1 - 1)) == 0) {
    memcpy(fr, root1, KH_LOG_HASH);
  } else {
    memcpy(fr, proof[0], KH_LOG_HASH);
    i = 1;
  }
  memcpy(sr, fr, KH_LOG_HASH);
  uint64_t fn = size1 - 1, sn = size2 - 1;
  while (lsb(fn)) {
    fn >>= 1;
    sn >>= 1;
  }
  for (; i < plen; i++) {
    if (sn == 0)
      return kh_seterr(KH_ERR_INVALID_PROOF, "consistency proof too long");
    if (lsb(fn) || fn == sn) {
      kh_log_node_hash(fr, proof[i], fr);
      kh_log_node_hash(sr, proof[i], sr);
      while (!lsb(fn) && fn != 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      kh_log_node_hash(sr, sr, proof[i]);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0)
    return kh_seterr(KH_ERR_INVALID_PROOF, "consistency proof too short");
  if (sodium_memcmp(fr, root1, KH_LOG_HASH) != 0 ||
      sodium_memcmp(sr, root2, KH_LOG_HASH) != 0)
    return kh_seterr(KH_ERR_INVALID_PROOF, "consistency proof does not match the roots");
  return KH_OK;
}
