/* lib/log: Merkle tree (RFC 6962 vectors, random trees against a recursive
 * reference), signed notes (Go sumdb/note vectors), checkpoints,
 * cosignatures and the log entry format. */
#include "kh_test.h"
#include "keyhold/log.h"
#include "common/hex.h"
#include "common/fsutil.h"
#include "crypto/crypto.h"
#include "log/log_internal.h"

#include <sodium.h>
#include <stdint.h>

#define SET(field, str) snprintf((field), sizeof(field), "%s", (str))

static const char *vectors(void)
{
  const char *v = getenv("KH_TEST_VECTORS");
  return v ? v : "tests/vectors";
}

static char *vec_read(const char *name, size_t *len)
{
  char path[1024];
  uint8_t *data = NULL;
  size_t n = 0;
  snprintf(path, sizeof path, "%s/log/%s", vectors(), name);
  if (kh_read_file(path, 1 << 20, &data, &n) != KH_OK) {
    fprintf(stderr, "cannot read vector %s\n", path);
    exit(1);
  }
  data[n] = 0;
  if (len)
    *len = n;
  return (char *)data;
}

static char *vec_line(const char *name)
{
  size_t n;
  char *s = vec_read(name, &n);
  while (n && s[n - 1] == '\n')
    s[--n] = 0;
  return s;
}

/* ---- reference Merkle implementation, straight from RFC 6962 §2.1 ---- */

static uint64_t ref_k(uint64_t n)
{
  uint64_t k = 1;
  while (k << 1 < n)
    k <<= 1;
  return k;
}

static void ref_mth(kh_log_hash out, const kh_log_hash *d, uint64_t n)
{
  if (n == 0) {
    crypto_hash_sha256(out, NULL, 0);
  } else if (n == 1) {
    memcpy(out, d[0], 32);
  } else {
    uint64_t k = ref_k(n);
    kh_log_hash l, r;
    ref_mth(l, d, k);
    ref_mth(r, d + k, n - k);
    kh_log_node_hash(out, l, r);
  }
}

static void ref_path(uint64_t m, const kh_log_hash *d, uint64_t n, kh_log_hash *p, size_t *pl)
{
  if (n <= 1)
    return;
  uint64_t k = ref_k(n);
  if (m < k) {
    ref_path(m, d, k, p, pl);
    ref_mth(p[(*pl)++], d + k, n - k);
  } else {
    ref_path(m - k, d + k, n - k, p, pl);
    ref_mth(p[(*pl)++], d, k);
  }
}

static void ref_sub(uint64_t m, const kh_log_hash *d, uint64_t n, int b, kh_log_hash *p,
                    size_t *pl)
{
  if (m == n) {
    if (!b)
      ref_mth(p[(*pl)++], d, n);
    return;
  }
  uint64_t k = ref_k(n);
  if (m <= k) {
    ref_sub(m, d, k, b, p, pl);
    ref_mth(p[(*pl)++], d + k, n - k);
  } else {
    ref_sub(m - k, d + k, n - k, 0, p, pl);
    ref_mth(p[(*pl)++], d, k);
  }
}

/* ---- RFC 6962 vectors ---- */

static size_t parse_proof(const char *s, kh_log_hash *p)
{
  size_t n = 0;
  if (!strcmp(s, "-"))
    return 0;
  while (*s) {
    if (kh_hex_decode(p[n], 32, s, 64) != KH_OK) {
      fprintf(stderr, "bad vector hash %s\n", s);
      exit(1);
    }
    n++;
    s += 64;
    if (*s == ',')
      s++;
  }
  return n;
}

static void test_rfc6962_vectors(void)
{
  char *text = vec_read("rfc6962.txt", NULL), *save = NULL;
  kh_log_hash leaves[8], proof[KH_LOG_PROOF_MAX], gen[KH_LOG_PROOF_MAX], roots[9];
  int nleaves = 0, nroots = 0, ninc = 0, ncons = 0;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char a[4096], b[64], c[64], d[4096];
    if (line[0] == '#')
      continue;
    if (sscanf(line, "leaf %4095s", a) == 1) {
      uint8_t data[64];
      size_t n = strcmp(a, "-") ? strlen(a) / 2 : 0;
      CHECK_OK(n ? kh_hex_decode(data, n, a, 2 * n) : KH_OK);
      kh_log_leaf_hash(leaves[nleaves++], data, n);
    } else if (sscanf(line, "root %63s %4095s", b, a) == 2) {
      int size = atoi(b);
      kh_log_hash want, got;
      CHECK_OK(kh_hex_decode(want, 32, a, 64));
      kh_log_root(got, (const kh_log_hash *)leaves, (uint64_t)size);
      CHECK_MEM(got, want, 32);
      memcpy(roots[size], want, 32);
      nroots++;
    } else if (sscanf(line, "inclusion %63s %63s %4095s", b, c, d) == 3) {
      uint64_t idx = strtoull(b, NULL, 10), size = strtoull(c, NULL, 10);
      size_t pl = parse_proof(d, proof), gl = 99;
      CHECK_OK(kh_log_inclusion_proof((const kh_log_hash *)leaves, 8, idx, size, gen, &gl));
      CHECK_EQ(gl, pl);
      CHECK(gl == pl && memcmp(gen, proof, pl * 32) == 0);
      CHECK_OK(kh_log_verify_inclusion(leaves[idx], idx, size, (const kh_log_hash *)proof,
                                       pl, roots[size]));
      /* corruptions (transparency-dev/merkle corruptInclusionProof) */
      CHECK_ERR(kh_log_verify_inclusion(leaves[idx], idx + 1, size, (const kh_log_hash *)proof,
                                        pl, roots[size]), KH_ERR_INVALID_PROOF);
      if (idx > 0)
        CHECK_ERR(kh_log_verify_inclusion(leaves[idx], idx - 1, size, (const kh_log_hash *)proof,
                                          pl, roots[size]), KH_ERR_INVALID_PROOF);
      CHECK((idx ^ 2) == idx ||
            kh_log_verify_inclusion(leaves[idx], idx ^ 2, size, (const kh_log_hash *)proof, pl,
                                    roots[size]) == KH_ERR_INVALID_PROOF);
      CHECK_ERR(kh_log_verify_inclusion(leaves[idx], idx, size * 2, (const kh_log_hash *)proof,
                                        pl, roots[size]), KH_ERR_INVALID_PROOF);
      CHECK_ERR(kh_log_verify_inclusion(leaves[idx], idx, size / 2, (const kh_log_hash *)proof,
                                        pl, roots[size]), KH_ERR_INVALID_PROOF);
      CHECK_ERR(kh_log_verify_inclusion(roots[0], idx, size, (const kh_log_hash *)proof, pl,
                                        roots[size]), KH_ERR_INVALID_PROOF);
      CHECK_ERR(kh_log_verify_inclusion(leaves[idx], idx, size, (const kh_log_hash *)proof, pl,
                                        roots[0]), KH_ERR_INVALID_PROOF);
      memcpy(proof[pl], roots[size], 32); /* trailing root */
      CHECK_ERR(kh_log_verify_inclusion(leaves[idx], idx, size, (const kh_log_hash *)proof,
                                        pl + 1, roots[size]), KH_ERR_INVALID_PROOF);
      for (size_t i = 0; i < pl; i++) {
        proof[i][0] ^= 8;
        CHECK_ERR(kh_log_verify_inclusion(leaves[idx], idx, size, (const kh_log_hash *)proof, pl,
                                          roots[size]), KH_ERR_INVALID_PROOF);
        proof[i][0] ^= 8;
      }
      if (pl)
        CHECK_ERR(kh_log_verify_inclusion(leaves[idx], idx, size, (const kh_log_hash *)proof,
                                          pl - 1, roots[size]), KH_ERR_INVALID_PROOF);
      ninc++;
    } else if (sscanf(line, "consistency %63s %63s %4095s", b, c, d) == 3) {
      uint64_t s1 = strtoull(b, NULL, 10), s2 = strtoull(c, NULL, 10);
      size_t pl = parse_proof(d, proof), gl = 99;
      CHECK_OK(kh_log_consistency_proof((const kh_log_hash *)leaves, 8, s1, s2, gen, &gl));
      CHECK_EQ(gl, pl);
      CHECK(gl == pl && memcmp(gen, proof, pl * 32) == 0);
      CHECK_OK(kh_log_verify_consistency(s1, s2, (const kh_log_hash *)proof, pl, roots[s1],
                                         roots[s2]));
      if (pl) {
        CHECK_ERR(kh_log_verify_consistency(s1 - 1, s2, (const kh_log_hash *)proof, pl, roots[s1],
                                            roots[s2]), KH_ERR_INVALID_PROOF);
        CHECK_ERR(kh_log_verify_consistency(s1 + 1, s2, (const kh_log_hash *)proof, pl, roots[s1],
                                            roots[s2]), KH_ERR_INVALID_PROOF);
        CHECK_ERR(kh_log_verify_consistency(s1, s2 * 2, (const kh_log_hash *)proof, pl, roots[s1],
                                            roots[s2]), KH_ERR_INVALID_PROOF);
        CHECK_ERR(kh_log_verify_consistency(s1, s2 / 2, (const kh_log_hash *)proof, pl, roots[s1],
                                            roots[s2]), KH_ERR_INVALID_PROOF);
        CHECK_ERR(kh_log_verify_consistency(s1, s2, (const kh_log_hash *)proof, pl, roots[s2],
                                            roots[s1]), KH_ERR_INVALID_PROOF); /* swapped roots */
        CHECK_ERR(kh_log_verify_consistency(s1, s2, (const kh_log_hash *)proof, 0, roots[s1],
                                            roots[s2]), KH_ERR_INVALID_PROOF); /* empty proof */
        CHECK_ERR(kh_log_verify_consistency(s1, s2, (const kh_log_hash *)proof, pl - 1, roots[s1],
                                            roots[s2]), KH_ERR_INVALID_PROOF); /* truncated */
        memcpy(proof[pl], roots[s1], 32);
        CHECK_ERR(kh_log_verify_consistency(s1, s2, (const kh_log_hash *)proof, pl + 1, roots[s1],
                                            roots[s2]), KH_ERR_INVALID_PROOF); /* extended */
        for (size_t i = 0; i < pl; i++) {
          proof[i][0] ^= 16;
          CHECK_ERR(kh_log_verify_consistency(s1, s2, (const kh_log_hash *)proof, pl, roots[s1],
                                              roots[s2]), KH_ERR_INVALID_PROOF);
          proof[i][0] ^= 16;
        }
      }
      ncons++;
    }
  }
  CHECK_EQ(nleaves, 8);
  CHECK_EQ(nroots, 9);
  CHECK_EQ(ninc, 5);
  CHECK_EQ(ncons, 5);
  free(text);
}

static void test_consistency_edges(void)
{
  kh_log_hash r1, r2, p[1];
  memset(r1, 1, 32);
  memset(r2, 2, 32);
  crypto_hash_sha256(p[0], NULL, 0);
  CHECK_OK(kh_log_verify_consistency(0, 0, NULL, 0, r1, r1));
  CHECK_OK(kh_log_verify_consistency(0, 1, NULL, 0, r1, r2));
  CHECK_OK(kh_log_verify_consistency(1, 1, NULL, 0, r2, r2));
  CHECK(kh_log_verify_consistency(0, 0, NULL, 0, r1, r2) == KH_ERR_INVALID_PROOF);
  CHECK(kh_log_verify_consistency(1, 1, NULL, 0, r1, r2) == KH_ERR_INVALID_PROOF);
  CHECK(kh_log_verify_consistency(1, 0, NULL, 0, r1, r2) == KH_ERR_INVALID_PROOF);
  CHECK(kh_log_verify_consistency(2, 1, NULL, 0, r1, r2) == KH_ERR_INVALID_PROOF);
  CHECK(kh_log_verify_consistency(1, 2, NULL, 0, r1, r2) == KH_ERR_INVALID_PROOF);
  CHECK_ERR(kh_log_verify_consistency(0, 1, (const kh_log_hash *)p, 1, p[0], p[0]),
            KH_ERR_INVALID_PROOF);
  CHECK_ERR(kh_log_verify_consistency(1, 1, (const kh_log_hash *)p, 1, p[0], p[0]),
            KH_ERR_INVALID_PROOF);
  CHECK_ERR(kh_log_verify_inclusion(r1, 0, 0, NULL, 0, r1), KH_ERR_INVALID_PROOF);
  CHECK_ERR(kh_log_verify_inclusion(r1, 1, 1, NULL, 0, r1), KH_ERR_INVALID_PROOF);
  CHECK_OK(kh_log_verify_inclusion(r1, 0, 1, NULL, 0, r1));
  CHECK_ERR(kh_log_verify_inclusion(r1, 0, 1, NULL, 0, r2), KH_ERR_INVALID_PROOF);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* The in-memory subtree source checks its bounds before it shifts: no
 * undefined shift for k >= 64, no wrapped j << k landing inside the tree. */
static void test_mem_subtree_bounds(void)
{
  kh_log_hash leaves[4], out, want;
  for (int i = 0; i < 4; i++)
    kh_log_leaf_hash(leaves[i], &i, sizeof i);
  kh_mt_mem m = {leaves, 4};
  CHECK_OK(kh_mt_mem_subtree(&m, 1, 1, out));
  kh_log_root(want, leaves + 2, 2);
  CHECK_MEM(out, want, KH_LOG_HASH);
  CHECK_OK(kh_mt_mem_subtree(&m, 2, 0, out));
  kh_log_root(want, leaves, 4);
  CHECK_MEM(out, want, KH_LOG_HASH);
  CHECK_EQ(kh_mt_mem_subtree(&m, 2, 1, out), KH_ERR_INVAL);
  CHECK_EQ(kh_mt_mem_subtree(&m, 3, 0, out), KH_ERR_INVAL);
  CHECK_EQ(kh_mt_mem_subtree(&m, 64, 0, out), KH_ERR_INVAL);
  CHECK_EQ(kh_mt_mem_subtree(&m, 200, 0, out), KH_ERR_INVAL);
  /* (2^63 + 1) << 1 wraps to 2: leaves [2, 4) would be returned as the
   * hash of a subtree far beyond the tree */
  CHECK_EQ(kh_mt_mem_subtree(&m, 1, ((uint64_t)1 << 63) + 1, out), KH_ERR_INVAL);
  CHECK_EQ(kh_mt_mem_subtree(&m, 63, 2, out), KH_ERR_INVAL);
  CHECK_EQ(kh_mt_mem_subtree(&m, 0, UINT64_MAX, out), KH_ERR_INVAL);
}

static void test_random_trees(void)
{
  enum { N = 600 };
  kh_log_hash *leaves = malloc(N * sizeof *leaves);
  kh_log_hash roots[N + 1];
  kh_log_hash p[KH_LOG_PROOF_MAX], q[KH_LOG_PROOF_MAX];
  for (int i = 0; i < N; i++) {
    uint8_t d[8];
    kh_le64_put(d, (uint64_t)i * 7919);
    kh_log_leaf_hash(leaves[i], d, sizeof d);
  }
  int bad_root = 0, bad_inc = 0, bad_cons = 0, neg_ok = 0;
  for (uint64_t n = 0; n <= N; n++) {
    kh_log_hash a;
    ref_mth(roots[n], (const kh_log_hash *)leaves, n);
    kh_log_root(a, (const kh_log_hash *)leaves, n);
    bad_root += memcmp(a, roots[n], 32) != 0;
  }
  for (int t = 0; t < 3000; t++) {
    uint64_t size = 1 + rnd() % N, idx = rnd() % size;
    size_t pl = 0, ql = 0;
    CHECK_OK(kh_log_inclusion_proof((const kh_log_hash *)leaves, N, idx, size, p, &pl));
    ref_path(idx, (const kh_log_hash *)leaves, size, q, &ql);
    bad_inc += pl != ql || memcmp(p, q, pl * 32) != 0;
    bad_inc += kh_log_verify_inclusion(leaves[idx], idx, size, (const kh_log_hash *)p, pl,
                                       roots[size]) != KH_OK;
    uint64_t other = (idx + 1 + rnd() % size) % size;
    if (other != idx)
      neg_ok += kh_log_verify_inclusion(leaves[idx], other, size, (const kh_log_hash *)p, pl,
                                        roots[size]) != KH_ERR_INVALID_PROOF;
    if (pl > 0) /* truncated proof */
      neg_ok += kh_log_verify_inclusion(leaves[idx], idx, size, (const kh_log_hash *)p,
                                        pl - 1, roots[size]) != KH_ERR_INVALID_PROOF;
    uint64_t s2 = 1 + rnd() % N, s1 = rnd() % (s2 + 1);
    CHECK_OK(kh_log_consistency_proof((const kh_log_hash *)leaves, N, s1, s2, p, &pl));
    ql = 0;
    if (s1 > 0 && s1 < s2)
      ref_sub(s1, (const kh_log_hash *)leaves, s2, 1, q, &ql);
    bad_cons += pl != ql || memcmp(p, q, pl * 32) != 0;
    bad_cons += kh_log_verify_consistency(s1, s2, (const kh_log_hash *)p, pl, roots[s1],
                                          roots[s2]) != KH_OK;
    if (s1 > 0 && s1 < s2) {
      neg_ok += kh_log_verify_consistency(s1, s2, (const kh_log_hash *)p, pl, roots[s2],
                                          roots[s1]) != KH_ERR_INVALID_PROOF;
      p[rnd() % pl][rnd() % 32] ^= 1;
      neg_ok += kh_log_verify_consistency(s1, s2, (const kh_log_hash *)p, pl, roots[s1],
                                          roots[s2]) != KH_ERR_INVALID_PROOF;
    }
  }
  CHECK_EQ(bad_root, 0);
  CHECK_EQ(bad_inc, 0);
  CHECK_EQ(bad_cons, 0);
  CHECK_EQ(neg_ok, 0);
  free(leaves);
}

/* ---- signed notes ---- */

static void test_note_go_vectors(void)
{
  char *vk = vec_line("peter.vkey"), *sk = vec_line("peter.skey"), *ek = vec_line("enoch.vkey");
  size_t tlen, nlen, n2len;
  char *text = vec_read("peter.text", &tlen), *note = vec_read("peter.note", &nlen);
  char *note2 = vec_read("peter_enoch.note", &n2len);
  kh_note_verifier *v = NULL, *ev = NULL;
  kh_note_signer *s = NULL;
  kh_note_info info;
  CHECK_OK(kh_note_verifier_new(vk, &v));
  CHECK_OK(kh_note_verifier_new(ek, &ev));
  CHECK_OK(kh_note_signer_new(sk, &s));
  if (!v || !s || !ev)
    goto out;
  CHECK(!strcmp(kh_note_verifier_name(v), "PeterNeumann"));
  CHECK_EQ(kh_note_verifier_hash(v), 0xc74f20a3u);
  /* signing is deterministic: we must reproduce Go's note byte for byte */
  char *signed_ = NULL, *vk2 = NULL;
  size_t slen = 0;
  CHECK_OK(kh_note_sign(text, tlen, s, &signed_, &slen));
  CHECK(signed_ && slen == nlen && memcmp(signed_, note, nlen) == 0);
  free(signed_);
  CHECK_OK(kh_note_signer_vkey(s, &vk2));
  CHECK(vk2 && !strcmp(vk2, vk));
  free(vk2);
  kh_note_verifier *list[2] = {v, ev};
  bool ok[2];
  CHECK_OK(kh_note_open(note, nlen, list, 1, &info, ok, NULL));
  CHECK_EQ(info.text_len, tlen);
  CHECK_EQ(info.nverified, 1);
  CHECK(ok[0]);
  /* two signatures: one unknown (ignored), then both verified */
  CHECK_OK(kh_note_open(note2, n2len, list, 1, &info, NULL, NULL));
  CHECK_EQ(info.nunknown, 1);
  CHECK_OK(kh_note_open(note2, n2len, list, 2, &info, ok, NULL));
  CHECK_EQ(info.nverified, 2);
  CHECK(ok[0] && ok[1]);
  /* only unknown keys: not verified */
  CHECK(kh_note_open(note2, n2len, list + 1, 0, &info, NULL, NULL) == KH_ERR_INVALID_PROOF);
  /* tampered text */
  char *bad = malloc(nlen + 200);
  memcpy(bad, note, nlen);
  bad[10] ^= 0x20;
  CHECK(kh_note_open(bad, nlen, list, 1, &info, NULL, NULL) == KH_ERR_INVALID_PROOF);
  bad[10] ^= 0x20;
  /* a known key with a bad signature is an error even when another verifies */
  memcpy(bad, note2, n2len);
  char *sig = strstr(bad, "EnochRoot ") + 10 + 20;
  *sig = *sig == 'A' ? 'B' : 'A';
  CHECK(kh_note_open(bad, n2len, list, 2, &info, NULL, NULL) == KH_ERR_INVALID_PROOF);
  CHECK_OK(kh_note_open(bad, n2len, list, 1, &info, NULL, NULL)); /* Enoch unknown: ignored */
  /* Go's malformed-message table */
  const char *sigline = note + tlen + 1;
  size_t siglen = nlen - tlen - 1;
  struct { const char *pre; int cut; const char *post; } mal[] = {
    {"", -1, ""},               /* text only */
    {"", -2, ""},               /* text + blank line */
    {"", 1, ""},                /* signature without final newline */
    {"\x01", 0, ""},
    {"\xff", 0, ""},
    {"", 0, "Unexpected line.\n"},
  };
  for (size_t i = 0; i < sizeof mal / sizeof mal[0]; i++) {
    size_t o = 0;
    o += (size_t)snprintf(bad + o, 16, "%s", mal[i].pre);
    memcpy(bad + o, text, tlen);
    o += tlen;
    if (mal[i].cut != -1) {
      bad[o++] = '\n';
      if (mal[i].cut != -2) {
        memcpy(bad + o, sigline, siglen - (size_t)mal[i].cut);
        o += siglen - (size_t)mal[i].cut;
      }
    }
    o += (size_t)snprintf(bad + o, 64, "%s", mal[i].post);
    CHECK_ERR(kh_note_open(bad, o, list, 1, &info, NULL, NULL), KH_ERR_FORMAT);
  }
  /* bad name with space */
  int o = snprintf(bad, nlen + 200, "%s\n\xe2\x80\x94 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n", text);
  CHECK(kh_note_open(bad, (size_t)o, list, 1, &info, NULL, NULL) == KH_ERR_FORMAT);
  free(bad);
  /* 101 signatures: malformed; 100 repeated are fine (checked once) */
  size_t big = tlen + 1 + 101 * siglen;
  char *many = malloc(big);
  memcpy(many, text, tlen);
  many[tlen] = '\n';
  for (int i = 0; i < 101; i++)
    memcpy(many + tlen + 1 + (size_t)i * siglen, sigline, siglen);
  CHECK(kh_note_open(many, big, list, 1, &info, NULL, NULL) == KH_ERR_FORMAT);
  CHECK_OK(kh_note_open(many, big - siglen, list, 1, &info, NULL, NULL));
  CHECK_EQ(info.nverified, 1);
  free(many);
  /* key manglings (Go TestNewVerifier): every proper substring and every
   * single-byte change is rejected */
  size_t vl = strlen(vk);
  char *m = malloc(vl + 1);
  int accepted = 0;
  for (size_t i = 0; i <= vl; i++)
    for (size_t j = i + 1; j <= vl; j++) {
      if (i == 0 && j == vl)
        continue;
      memcpy(m, vk + i, j - i);
      m[j - i] = 0;
      kh_note_verifier *x = NULL;
      if (kh_note_verifier_new(m, &x) == KH_OK)
        accepted++;
      kh_note_verifier_free(x);
    }
  for (size_t i = 0; i < vl; i++) {
    snprintf(m, vl + 1, "%s", vk);
    m[i]++;
    kh_note_verifier *x = NULL;
    if (kh_note_verifier_new(m, &x) == KH_OK)
      accepted++;
    kh_note_verifier_free(x);
  }
  CHECK_EQ(accepted, 0);
  free(m);
  kh_note_verifier *x = NULL;
  CHECK_ERR(kh_note_verifier_new("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &x), KH_ERR_UNSUPPORTED);
  CHECK_ERR(kh_note_verifier_new("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==", &x), KH_ERR_FORMAT);
  kh_note_signer *y = NULL;
  CHECK_ERR(kh_note_signer_new(vk, &y), KH_ERR_FORMAT);
  CHECK_ERR(kh_note_signer_new("PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", &y), KH_ERR_FORMAT);
out:
  kh_note_verifier_free(v);
  kh_note_verifier_free(ev);
  kh_note_signer_free(s);
  free(vk);
  free(sk);
  free(ek);
  free(text);
  free(note);
  free(note2);
}

static void test_keygen_and_names(void)
{
  kh_secret *sk = NULL;
  char *vk = NULL;
  CHECK(kh_note_keygen("bad name", 1, &sk, &vk) == KH_ERR_INVAL);
  CHECK(kh_note_keygen("a+b", 1, &sk, &vk) == KH_ERR_INVAL);
  CHECK(kh_note_keygen("", 1, &sk, &vk) == KH_ERR_INVAL);
  CHECK(kh_note_keygen("a\xe2\x80\x83" "b", 1, &sk, &vk) == KH_ERR_INVAL); /* EM SPACE */
  CHECK(kh_note_keygen("a\x1f" "b", 1, &sk, &vk) == KH_ERR_INVAL);
  /* U+007F is neither a space nor '+': a valid key name */
  CHECK_OK(kh_note_keygen("del\x7fname", 1, &sk, &vk));
  if (vk) {
    kh_note_verifier *dv = NULL;
    CHECK_OK(kh_note_verifier_new(vk, &dv));
    if (dv)
      CHECK(strcmp(kh_note_verifier_name(dv), "del\x7fname") == 0);
    kh_note_verifier_free(dv);
  }
  kh_secret_free(sk);
  free(vk);
  sk = NULL;
  vk = NULL;
  CHECK_OK(kh_note_keygen("example.com/log", 1, &sk, &vk));
  kh_note_signer *s = NULL;
  kh_note_verifier *v = NULL;
  CHECK_OK(kh_note_signer_new((const char *)sk->bytes, &s));
  CHECK_OK(kh_note_verifier_new(vk, &v));
  if (s && v) {
    char *n = NULL;
    size_t nl = 0;
    kh_note_info info;
    CHECK(kh_note_sign("no newline", 10, s, &n, &nl) == KH_ERR_FORMAT);
    CHECK(kh_note_sign("ctl\x01\n", 5, s, &n, &nl) == KH_ERR_FORMAT);
    CHECK(kh_note_sign("ctl\x1f\n", 5, s, &n, &nl) == KH_ERR_FORMAT);
    CHECK(kh_note_sign("cr\r\n", 4, s, &n, &nl) == KH_ERR_FORMAT);
    CHECK_OK(kh_note_sign("hello\n", 6, s, &n, &nl));
    kh_note_verifier *list[1] = {v};
    CHECK_OK(kh_note_open(n, nl, list, 1, &info, NULL, NULL));
    free(n);
    n = NULL;
    /* c2sp.org/signed-note forbids only controls below U+0020 other than
     * newline: U+007F DEL (and C1 U+0085) are valid note text. */
    static const char del[] = "del\x7f here\nnel\xc2\x85\n";
    CHECK_OK(kh_note_sign(del, sizeof del - 1, s, &n, &nl));
    if (n) {
      CHECK_OK(kh_note_open(n, nl, list, 1, &info, NULL, NULL));
      CHECK_EQ(info.text_len, sizeof del - 1);
      CHECK_MEM(n, del, sizeof del - 1);
    }
    free(n);
    n = NULL;
    /* the same text signed by hand (independently of kh_note_sign) */
    {
      uint8_t seed[33], pk[32], skb[64], raw[68];
      size_t sl = 0;
      const char *sb = strchr(strchr((const char *)sk->bytes + 12, '+') + 1, '+') + 1;
      CHECK_OK(kh_b64_decode(seed, sizeof seed, &sl, sb, strlen(sb)));
      crypto_sign_seed_keypair(pk, skb, seed + 1);
      uint32_t h = kh_note_verifier_hash(v);
      raw[0] = (uint8_t)(h >> 24); raw[1] = (uint8_t)(h >> 16);
      raw[2] = (uint8_t)(h >> 8); raw[3] = (uint8_t)h;
      crypto_sign_detached(raw + 4, NULL, (const uint8_t *)del, sizeof del - 1, skb);
      char b64[128], msg[512];
      kh_b64_encode(b64, raw, 68);
      int ml = snprintf(msg, sizeof msg, "%s\n\xe2\x80\x94 example.com/log %s\n", del, b64);
      CHECK_OK(kh_note_open(msg, (size_t)ml, list, 1, &info, NULL, NULL));
      /* a control below U+0020 in the text is still malformed */
      msg[3] = 0x1b;
      CHECK_EQ(kh_note_open(msg, (size_t)ml, list, 1, &info, NULL, NULL), KH_ERR_FORMAT);
      sodium_memzero(seed, sizeof seed);
      sodium_memzero(skb, sizeof skb);
    }
  }
  kh_note_signer_free(s);
  kh_note_verifier_free(v);
  kh_secret_free(sk);
  free(vk);
}

/* ---- checkpoints and cosignatures ---- */

static void test_checkpoint(void)
{
  kh_checkpoint c;
  const char *ok = "example.com/log\n12345\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
  CHECK_OK(kh_checkpoint_parse(ok, strlen(ok), &c));
  CHECK(!strcmp(c.origin, "example.com/log"));
  CHECK_EQ(c.size, 12345);
  CHECK(c.ext == NULL);
  char *f = NULL;
  size_t fl = 0;
  CHECK_OK(kh_checkpoint_format(&c, &f, &fl));
  CHECK(f && fl == strlen(ok) && !memcmp(f, ok, fl));
  free(f);
  const char *ext = "o\n0\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\nx y\nz\n";
  CHECK_OK(kh_checkpoint_parse(ext, strlen(ext), &c));
  CHECK_EQ(c.ext_len, 6);
  const char *bad[] = {
    "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",            /* empty origin */
    "o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",           /* leading zero */
    "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "o\n18446744073709551616\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", /* 2^64 */
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",            /* no padding */
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",           /* non-canonical */
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",             /* no final newline */
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",         /* empty extension */
    "o\n1\n",
    "o\n",
    "o\n 1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK(kh_checkpoint_parse(bad[i], strlen(bad[i]), &c) == KH_ERR_FORMAT);
  const char *max = "o\n18446744073709551615\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
  CHECK_OK(kh_checkpoint_parse(max, strlen(max), &c));
  CHECK(c.size == UINT64_MAX);
}

static void test_cosignature(void)
{
  kh_secret *lsk = NULL, *wsk = NULL;
  char *lvk = NULL, *wvk = NULL, *note = NULL, *line = NULL;
  size_t nlen = 0;
  kh_note_signer *ls = NULL, *ws = NULL;
  kh_note_verifier *lv = NULL, *wv = NULL;
  CHECK_OK(kh_note_keygen("example.com/log", KH_NOTE_ALG_ED25519, &lsk, &lvk));
  CHECK_OK(kh_note_keygen("witness.example/w1", KH_NOTE_ALG_COSIG_V1, &wsk, &wvk));
  CHECK_OK(kh_note_signer_new((const char *)lsk->bytes, &ls));
  CHECK_OK(kh_note_signer_new((const char *)wsk->bytes, &ws));
  CHECK_OK(kh_note_verifier_new(lvk, &lv));
  CHECK_OK(kh_note_verifier_new(wvk, &wv));
  if (!ls || !ws || !lv || !wv)
    goto out;
  CHECK_EQ(kh_note_verifier_alg(wv), KH_NOTE_ALG_COSIG_V1);
  const char *body = "example.com/log\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
  CHECK_OK(kh_note_sign(body, strlen(body), ls, &note, &nlen));
  size_t dummy = 0;
  CHECK(kh_note_sign(body, strlen(body), ws, &line, &dummy) == KH_ERR_INVAL); /* wrong alg */
  CHECK(kh_cosig_sign(body, strlen(body), ls, 1, &line) == KH_ERR_INVAL);
  CHECK_OK(kh_cosig_sign(body, strlen(body), ws, 1679315147, &line));
  if (!line || !note)
    goto out;
  /* key hash uses algorithm byte 0x04 (c2sp.org/tlog-cosignature) */
  kh_note_verifier *tmp = NULL;
  CHECK_OK(kh_note_verifier_new(wvk, &tmp));
  kh_note_verifier_free(tmp);
  /* line = "— name base64(4 + 8 + 64 bytes)" */
  const char *b64 = strchr(line, ' ');
  b64 = strchr(b64 + 1, ' ') + 1;
  uint8_t raw[80];
  size_t rl = 0;
  CHECK_OK(kh_b64_decode(raw, sizeof raw, &rl, b64, strlen(b64) - 1));
  CHECK_EQ(rl, 76);
  CHECK_EQ(kh_be64_get(raw + 4), 1679315147);
  /* verify it by hand: message = "cosignature/v1\ntime T\n" || body */
  char msg[512];
  int ml = snprintf(msg, sizeof msg, "cosignature/v1\ntime 1679315147\n%s", body);
  uint8_t pk[33];
  size_t pkl = 0;
  const char *kb = strchr(strchr(wvk, '+') + 1, '+') + 1; /* base64 may hold '+' */
  CHECK_OK(kh_b64_decode(pk, sizeof pk, &pkl, kb, strlen(kb)));
  CHECK_EQ(pk[0], 0x04);
  CHECK(crypto_sign_verify_detached(raw + 12, (const uint8_t *)msg, (size_t)ml, pk + 1) == 0);
  /* and through kh_note_open, with the log key and the witness key */
  size_t ll = strlen(line);
  char *both = malloc(nlen + ll);
  memcpy(both, note, nlen);
  memcpy(both + nlen, line, ll);
  kh_note_verifier *list[2] = {lv, wv};
  bool ok[2];
  uint64_t times[2];
  kh_note_info info;
  CHECK_OK(kh_note_open(both, nlen + ll, list, 2, &info, ok, times));
  CHECK(ok[0] && ok[1]);
  CHECK_EQ(times[1], 1679315147);
  /* tamper with the timestamp: the cosignature no longer verifies */
  raw[11] ^= 1;
  char nb[128];
  kh_b64_encode(nb, raw, 76);
  memcpy(both + nlen + (size_t)(b64 - line), nb, strlen(nb));
  CHECK(kh_note_open(both, nlen + ll, list, 2, &info, ok, times) == KH_ERR_INVALID_PROOF);
  free(both);
  /* A forged cosignature: the witness's key hash, a timestamp of 2^63 or
   * more and garbage for the signature.  Anyone who knows only the public
   * key can write this line; it must never count as the witness's. */
  static const uint64_t bad_times[] = {(uint64_t)1 << 63, UINT64_MAX};
  for (size_t i = 0; i < 2; i++) {
    uint8_t fr[76];
    char fb[128], fline[256];
    memcpy(fr, raw, 4);                 /* the witness's key hash */
    kh_be64_put(fr + 4, bad_times[i]);
    memset(fr + 12, 0x5a, 64);
    kh_b64_encode(fb, fr, 76);
    int fl = snprintf(fline, sizeof fline, "\xe2\x80\x94 witness.example/w1 %s\n", fb);
    char *forged = malloc(nlen + (size_t)fl);
    memcpy(forged, note, nlen);
    memcpy(forged + nlen, fline, (size_t)fl);
    ok[0] = ok[1] = true;
    times[1] = 7;
    CHECK_EQ(kh_note_open(forged, nlen + (size_t)fl, list, 2, &info, ok, times),
             KH_ERR_INVALID_PROOF);
    CHECK(!ok[1]);
    CHECK_EQ(times[1], 0);
    /* with the witness key alone as well */
    CHECK_EQ(kh_note_open(forged, nlen + (size_t)fl, &wv, 1, &info, ok, times),
             KH_ERR_INVALID_PROOF);
    CHECK(!ok[0]);
    free(forged);
  }
  /* A genuine Ed25519 signature over a message with T = 2^63 is still
   * refused: the spec caps T at 2^63 - 1. */
  {
    uint8_t seed[33], wpk[32], wskb[64], fr[76];
    size_t sl = 0;
    const char *sb = strchr(strchr((const char *)wsk->bytes + 12, '+') + 1, '+') + 1;
    CHECK_OK(kh_b64_decode(seed, sizeof seed, &sl, sb, strlen(sb)));
    crypto_sign_seed_keypair(wpk, wskb, seed + 1);
    char m2[512], fb[128], fline[256];
    int m2l = snprintf(m2, sizeof m2, "cosignature/v1\ntime 9223372036854775808\n%s", body);
    memcpy(fr, raw, 4);
    kh_be64_put(fr + 4, (uint64_t)1 << 63);
    crypto_sign_detached(fr + 12, NULL, (const uint8_t *)m2, (size_t)m2l, wskb);
    kh_b64_encode(fb, fr, 76);
    int fl = snprintf(fline, sizeof fline, "\xe2\x80\x94 witness.example/w1 %s\n", fb);
    char *big = malloc(nlen + (size_t)fl);
    memcpy(big, note, nlen);
    memcpy(big + nlen, fline, (size_t)fl);
    CHECK_EQ(kh_note_open(big, nlen + (size_t)fl, list, 2, &info, ok, times),
             KH_ERR_INVALID_PROOF);
    CHECK(!ok[1]);
    free(big);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(wskb, sizeof wskb);
  }
out:
  free(note);
  free(line);
  kh_note_signer_free(ls);
  kh_note_signer_free(ws);
  kh_note_verifier_free(lv);
  kh_note_verifier_free(wv);
  kh_secret_free(lsk);
  kh_secret_free(wsk);
  free(lvk);
  free(wvk);
}

/* ---- entries ---- */

static void test_entry(void)
{
  kh_log_entry e, g;
  memset(&e, 0, sizeof e);
  CHECK_OK(kh_log_time_parse("2026-11-23T19:00:00Z", 20, &e.time));
  CHECK_EQ(e.time, 1795460400);
  SET(e.region, "local");
  SET(e.account, "0123456789abcdef0123456789abcdef");
  e.op = KH_LOG_OP_UNWRAP;
  SET(e.key, "acct-key/7");
  SET(e.requester, "support agent 42 (ticket #991)");
  SET(e.reason, "recovery requested by the account holder — verified by phone");
  char *t = NULL;
  size_t tl = 0;
  CHECK_OK(kh_log_entry_format(&e, &t, &tl));
  const char *want =
      "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\n"
      "account 0123456789abcdef0123456789abcdef\nop unwrap\nkey acct-key/7\n"
      "requester support agent 42 (ticket #991)\n"
      "reason recovery requested by the account holder — verified by phone\n";
  CHECK(t && !strcmp(t, want));
  CHECK_OK(kh_log_entry_parse(t, tl, &g));
  CHECK(!memcmp(&e, &g, sizeof e));
  free(t);
  e.op = KH_LOG_OP_ESCROW_ATTEMPT;
  SET(e.device, "dev-1");
  e.has_attempt = true;
  e.attempt = 3;
  e.result = KH_LOG_RESULT_FAIL;
  CHECK_OK(kh_log_entry_format(&e, &t, &tl));
  CHECK_OK(kh_log_entry_parse(t, tl, &g));
  CHECK(!memcmp(&e, &g, sizeof e));
  CHECK(t && strstr(t, "op escrow-attempt\n") && strstr(t, "attempt 3\nresult fail\n"));
  free(t);
  /* device statements (docs/log.md §5.2) */
  {
    const char *ops[] = {"enrol", "revoke"};
    kh_log_op want_op[] = {KH_LOG_OP_ENROL, KH_LOG_OP_REVOKE};
    for (int i = 0; i < 2; i++) {
      char st[512];
      snprintf(st, sizeof st, "keyhold-log-entry v1\ntime 2026-11-28T09:00:00Z\nregion local\n"
               "account ab\nop %s\nkey 0123456789abcdef0123456789abcdef\n"
               "requester device:fedcba9876543210fedcba9876543210\nreason x y\n"
               "device fedcba9876543210fedcba9876543210:c2ln\n", ops[i]);
      CHECK_OK(kh_log_entry_parse(st, strlen(st), &g));
      CHECK_EQ(g.op, want_op[i]);
      CHECK(!strcmp(kh_log_op_name(g.op), ops[i]));
      CHECK_OK(kh_log_entry_format(&g, &t, &tl));
      CHECK(t && tl == strlen(st) && !memcmp(t, st, tl));
      free(t);
    }
    CHECK(kh_log_op_name((kh_log_op)(KH_LOG_OP_LAST + 1)) == NULL);
  }
  /* strict parse */
  const char *base = "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\n"
                     "account ab\nop wrap\nkey k\nrequester r\nreason x\n";
  CHECK_OK(kh_log_entry_parse(base, strlen(base), &g));
  char buf[2048];
  const char *bad_tail[] = {"op wrap\n", "color blue\n", "attempt 01\n", "attempt 4294967296\n",
                            "result maybe\n", "device \n", "device a b\n", "nospace\n",
                            "attempt -1\n"};
  for (size_t i = 0; i < sizeof bad_tail / sizeof bad_tail[0]; i++) {
    snprintf(buf, sizeof buf, "%s%s", base, bad_tail[i]);
    CHECK(kh_log_entry_parse(buf, strlen(buf), &g) == KH_ERR_FORMAT);
  }
  const char *bad_whole[] = {
    "keyhold-log-entry v2\ntime 2026-11-23T19:00:00Z\nregion local\naccount ab\nop wrap\nkey k\nrequester r\nreason x\n",
    "keyhold-log-entry v1\ntime 2026-02-29T19:00:00Z\nregion local\naccount ab\nop wrap\nkey k\nrequester r\nreason x\n",
    "keyhold-log-entry v1\ntime 2026-11-23 19:00:00\nregion local\naccount ab\nop wrap\nkey k\nrequester r\nreason x\n",
    "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion Local\naccount ab\nop wrap\nkey k\nrequester r\nreason x\n",
    "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\naccount AB\nop wrap\nkey k\nrequester r\nreason x\n",
    "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\naccount ab\nop steal\nkey k\nrequester r\nreason x\n",
    "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\naccount ab\nop wrap\nkey k\nrequester r\n",
    "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\naccount ab\nop wrap\nkey k\nrequester r\tx\nreason x\n",
    "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\naccount ab\nop wrap\nkey k\nrequester r\xc0\xaf\nreason x\n",
    "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\naccount ab\nop wrap\nkey k\nrequester r\r\nreason x\n",
    /* entry values stay printable: DEL is refused here (docs/log.md §5) */
    "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\naccount ab\nop wrap\nkey k\nrequester r\x7f\nreason x\n",
    "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\naccount ab\nop wrap\nkey k\nrequester r\nreason x",
  };
  for (size_t i = 0; i < sizeof bad_whole / sizeof bad_whole[0]; i++)
    CHECK(kh_log_entry_parse(bad_whole[i], strlen(bad_whole[i]), &g) == KH_ERR_FORMAT);
  /* over-long values */
  char longv[700];
  memset(longv, 'a', sizeof longv - 1);
  longv[sizeof longv - 1] = 0;
  snprintf(buf, sizeof buf, "keyhold-log-entry v1\ntime 2026-11-23T19:00:00Z\nregion local\n"
           "account ab\nop wrap\nkey k\nrequester %s\nreason x\n", longv);
  CHECK(kh_log_entry_parse(buf, strlen(buf), &g) == KH_ERR_FORMAT);
  /* time round trips */
  int bad = 0;
  for (int i = 0; i < 2000; i++) {
    int64_t tt = (int64_t)(rnd() % 253402300800ULL), back = -1;
    char ts[21];
    if (kh_log_time_format(tt, ts) || kh_log_time_parse(ts, 20, &back) || back != tt)
      bad++;
  }
  CHECK_EQ(bad, 0);
  int64_t tt;
  CHECK_OK(kh_log_time_parse("2000-02-29T00:00:00Z", 20, &tt));
  CHECK_EQ(tt, 951782400);
  CHECK_ERR(kh_log_time_parse("1900-02-29T00:00:00Z", 20, &tt), KH_ERR_FORMAT);
  CHECK_ERR(kh_log_time_parse("2024-13-01T00:00:00Z", 20, &tt), KH_ERR_FORMAT);
  CHECK_ERR(kh_log_time_parse("2024-12-01T24:00:00Z", 20, &tt), KH_ERR_FORMAT);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  RUN(test_rfc6962_vectors);
  RUN(test_consistency_edges);
  RUN(test_mem_subtree_bounds);
  RUN(test_random_trees);
  RUN(test_note_go_vectors);
  RUN(test_keygen_and_names);
  RUN(test_checkpoint);
  RUN(test_cosignature);
  RUN(test_entry);
  return kh_test_done("test_log");
}
