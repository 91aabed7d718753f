/* lib/proto (include/keyhold/proto.h, docs/protocol.md §6-§9): the object
 * grammar, the §8.1 capability table checked cell by cell for every kind x
 * op x capability set, targets, canonical requests, the replay window,
 * enrolment codes and base64. */
#include <sodium.h>
#include <stdint.h>
#include "keyhold/proto.h"
#include "kh_test.h"

#define H32 "0123456789abcdef0123456789abcdef"
#define H64 H32 H32
#define OWN "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define OTHER "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void test_caps(void)
{
  unsigned c = 99;
  char buf[64];
  CHECK_OK(kh_proto_caps_parse("backup,read", &c));
  CHECK_EQ(c, KH_CAP_BACKUP | KH_CAP_READ);
  CHECK_OK(kh_proto_caps_parse("admin,prune,read,backup", &c));
  CHECK_EQ(c, KH_CAP_ALL);
  CHECK_ERR(kh_proto_caps_parse("", &c), KH_ERR_INVAL);
  CHECK_EQ(c, 0);
  CHECK_ERR(kh_proto_caps_parse("read,", &c), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_caps_parse(",read", &c), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_caps_parse("read,read", &c), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_caps_parse("root", &c), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_caps_parse("Read", &c), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_caps_parse("readx", &c), KH_ERR_INVAL);
  kh_proto_caps_format(KH_CAP_ALL, buf, sizeof buf);
  CHECK(strcmp(buf, "backup,read,prune,admin") == 0);
  kh_proto_caps_format(KH_CAP_ADMIN | KH_CAP_READ, buf, sizeof buf);
  CHECK(strcmp(buf, "read,admin") == 0);
  kh_proto_caps_format(0, buf, sizeof buf);
  CHECK(strcmp(buf, "") == 0);
  kh_proto_caps_format(KH_CAP_ALL, buf, 12); /* cut at a whole name */
  CHECK(strcmp(buf, "backup,read") == 0);
  CHECK(strcmp(kh_proto_cap_name(KH_CAP_PRUNE | KH_CAP_ADMIN), "prune") == 0);
  for (unsigned m = 1; m < 16; m++) { /* format and parse are inverse */
    kh_proto_caps_format(m, buf, sizeof buf);
    CHECK_OK(kh_proto_caps_parse(buf, &c));
    CHECK_EQ(c, m);
  }
}

static void test_names(void)
{
  const char *id = NULL;
  CHECK_EQ(kh_proto_obj_kind("account", &id), KH_OBJ_ACCOUNT);
  CHECK(id == NULL);
  CHECK_EQ(kh_proto_obj_kind("protection", NULL), KH_OBJ_PROTECTION);
  CHECK_EQ(kh_proto_obj_kind("keys/" H32, &id), KH_OBJ_KEY);
  CHECK(id && strcmp(id, H32) == 0);
  CHECK_EQ(kh_proto_obj_kind("devices/" H32, NULL), KH_OBJ_DEVICE);
  CHECK_EQ(kh_proto_obj_kind("data/01/" H64, &id), KH_OBJ_PACK);
  CHECK(id && strcmp(id, H64) == 0);
  CHECK_EQ(kh_proto_obj_kind("index/" H64, NULL), KH_OBJ_INDEX);
  CHECK_EQ(kh_proto_obj_kind("snapshots/" H64, NULL), KH_OBJ_SNAPSHOT);
  CHECK_EQ(kh_proto_obj_kind("locks/" H32, NULL), KH_OBJ_LOCK);
  CHECK_EQ(kh_proto_obj_kind("damage/" H64, NULL), KH_OBJ_DAMAGE);
  static const char *bad[] = {
    "", "accounts", "account/", "/account", "keys/", "keys/" H64, "keys/" H32 "0",
    "keys/0123456789ABCDEF0123456789abcdef", "keys/" H32 "/", "devices//" H32,
    "data/" H64, "data/02/" H64, "data/01/" H64 "0", "data/1/" H64, "data/01" H64,
    "index/" H32, "snapshots/../" H64, "locks/" H64, "damage/" H32, "lock/" H32,
    "Index/" H64, "index/" H64 "\n", "protection2", "keys/" H32 "?x",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    kh_obj_kind k = kh_proto_obj_kind(bad[i], &id);
    if (k != KH_OBJ_INVALID)
      fprintf(stderr, "accepted: '%s'\n", bad[i]);
    CHECK_EQ(k, KH_OBJ_INVALID);
  }
  CHECK_EQ(kh_proto_obj_kind(NULL, NULL), KH_OBJ_INVALID);
  CHECK_EQ(kh_proto_obj_max(KH_OBJ_PACK), 96u << 20);
  CHECK_EQ(kh_proto_obj_max(KH_OBJ_INDEX), (1ull << 30) + (8u << 20));
  CHECK_EQ(kh_proto_obj_max(KH_OBJ_SNAPSHOT), (16u << 20) + 4096);
  CHECK_EQ(kh_proto_obj_max(KH_OBJ_DAMAGE), (96u << 20) + 4096);
  CHECK_EQ(kh_proto_obj_max(KH_OBJ_KEY), 4096);
  CHECK_EQ(kh_proto_obj_max(KH_OBJ_ACCOUNT), 4096);
  CHECK_EQ(kh_proto_obj_max(KH_OBJ_INVALID), 0);
  CHECK(kh_proto_kind_prefix(KH_OBJ_ACCOUNT) == NULL);
  CHECK(kh_proto_kind_prefix(KH_OBJ_PROTECTION) == NULL);
  CHECK(strcmp(kh_proto_kind_prefix(KH_OBJ_PACK), "data") == 0);
  CHECK(strcmp(kh_proto_kind_prefix(KH_OBJ_SNAPSHOT), "snapshots") == 0);
  CHECK_EQ(kh_proto_list_kind("damage"), KH_OBJ_DAMAGE);
  CHECK_EQ(kh_proto_list_kind("keys"), KH_OBJ_KEY);
  CHECK_EQ(kh_proto_list_kind("account"), KH_OBJ_INVALID);
  CHECK_EQ(kh_proto_list_kind("data/01"), KH_OBJ_INVALID);
}

/* The §8.1 table as the document has it, spelled independently of the
 * library's table: per cell, the capability sets any one of which allows. */
enum { ANY = 0, NEVER = 0x100 };
#define B KH_CAP_BACKUP
#define R KH_CAP_READ
#define P KH_CAP_PRUNE
#define A KH_CAP_ADMIN
typedef struct cell_row {
  const char *name, *own_name, *list;
  unsigned put, put_own, get, get_own, del, lst;
} cell_row;
static const cell_row g_doc[] = {
  {"account", NULL, NULL, A, A, ANY, ANY, NEVER, NEVER},
  {"protection", NULL, NULL, A, A, ANY, ANY, NEVER, NEVER},
  {"keys/" OTHER, "keys/" OWN, "keys", A, A, A, ANY, A, A},
  {"devices/" OTHER, "devices/" OWN, "devices", A, ANY, ANY, ANY, A, ANY},
  {"data/01/" H64, NULL, "data", B | P, B | P, R, R, P, R | P},
  {"index/" H64, NULL, "index", B | P, B | P, ANY, ANY, P, ANY},
  {"snapshots/" H64, NULL, "snapshots", B | P, B | P, R, R, P, ANY},
  {"locks/" OTHER, "locks/" OWN, "locks", ANY, ANY, ANY, ANY, ANY, ANY},
  {"damage/" H64, NULL, "damage", B | R | P, B | R | P, R, R, P, R | P},
};

static unsigned expect(unsigned rule, unsigned caps)
{
  if (rule == ANY)
    return 0;
  if (rule == NEVER)
    return KH_PROTO_CAP_NEVER;
  return (caps & rule) ? 0 : (rule & (~rule + 1u));
}

static void test_table(void)
{
  unsigned cells = 0;
  for (size_t i = 0; i < sizeof g_doc / sizeof g_doc[0]; i++) {
    const cell_row *d = &g_doc[i];
    for (unsigned caps = 0; caps < 16; caps++) {
      struct { kh_obj_op op; const char *name; unsigned rule; } c[] = {
        {KH_OP_PUT, d->name, d->put},
        {KH_OP_PUT, d->own_name ? d->own_name : d->name, d->put_own},
        {KH_OP_GET, d->name, d->get},
        {KH_OP_GET, d->own_name ? d->own_name : d->name, d->get_own},
        {KH_OP_DELETE, d->name, d->del},
        {KH_OP_DELETE, d->own_name ? d->own_name : d->name, d->del},
        {KH_OP_LIST, d->list ? d->list : d->name, d->lst},
      };
      for (size_t j = 0; j < sizeof c / sizeof c[0]; j++) {
        unsigned got = kh_proto_obj_allowed(c[j].op, c[j].name, OWN, caps);
        unsigned want = expect(c[j].rule, caps);
        if (got != want)
          fprintf(stderr, "table: op %d on %s with caps %u: got %u, want %u\n", (int)c[j].op,
                  c[j].name, caps, got, want);
        CHECK_EQ(got, want);
        cells++;
      }
    }
  }
  CHECK_EQ(cells, 9 * 16 * 7);
  /* invalid names and kinds are never allowed */
  CHECK_EQ(kh_proto_obj_allowed(KH_OP_GET, "keys/x", OWN, KH_CAP_ALL), KH_PROTO_CAP_NEVER);
  CHECK_EQ(kh_proto_obj_allowed(KH_OP_LIST, "account", OWN, KH_CAP_ALL), KH_PROTO_CAP_NEVER);
  CHECK_EQ(kh_proto_obj_allowed(KH_OP_LIST, "nope", OWN, KH_CAP_ALL), KH_PROTO_CAP_NEVER);
  /* "own" is the whole id, not a prefix of it, and needs a device id */
  CHECK_EQ(kh_proto_obj_allowed(KH_OP_GET, "keys/" OWN, "aaaa", 0), KH_CAP_ADMIN);
  CHECK_EQ(kh_proto_obj_allowed(KH_OP_GET, "keys/" OWN, NULL, 0), KH_CAP_ADMIN);
  CHECK_EQ(kh_proto_obj_allowed(KH_OP_PUT, "devices/" OWN, OWN "a", 0), KH_CAP_ADMIN);
}

static void test_targets(void)
{
  static const char *good[] = {
    "/v1/region", "/v1/accounts/" H32 "/objects/data/01/" H64, "/v1/enrolments?bucket=AB",
    "/a.b/c_d-e", "/v1/x?a=b&c=d.e_f-g", "/...", "/a..b",
  };
  static const char *bad[] = {
    "", "v1/region", "/", "//", "/v1//region", "/v1/region/", "/v1/./region", "/v1/../x",
    "/v1/.", "/v1/..", "/v1/re gion", "/v1/%2e", "/v1/x?", "/v1/x?a=b c", "/v1/x?a/b",
    "/v1/x?a=%20", "/v1/\n", "/v1/x#y", "/v1/\xc3\xa9", "/v1/a?b?c",
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    if (!kh_proto_target_valid(good[i]))
      fprintf(stderr, "refused: '%s'\n", good[i]);
    CHECK(kh_proto_target_valid(good[i]));
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (kh_proto_target_valid(bad[i]))
      fprintf(stderr, "accepted: '%s'\n", bad[i]);
    CHECK(!kh_proto_target_valid(bad[i]));
  }
  char big[KH_PROTO_TARGET_MAX + 2];
  big[0] = '/';
  memset(big + 1, 'a', sizeof big - 2);
  big[sizeof big - 1] = '\0'; /* 1025 bytes */
  CHECK(!kh_proto_target_valid(big));
  big[KH_PROTO_TARGET_MAX] = '\0'; /* 1024 bytes */
  CHECK(kh_proto_target_valid(big));
  CHECK(!kh_proto_target_valid(NULL));
}

static void test_canonical(void)
{
  char sha[65], *out = NULL;
  size_t len = 0;
  kh_proto_sha256_hex((const uint8_t *)"", 0, sha);
  CHECK(strcmp(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
  CHECK_OK(kh_proto_canonical_request("PUT", "/v1/a/b", "tok", 7, sha, "*", NULL, &out, &len));
  const char *want = "keyhold-request v1\nPUT\n/v1/a/b\ntok\n7\n"
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n*\n\n";
  CHECK(out && strcmp(out, want) == 0);
  CHECK_EQ(len, strlen(want));
  free(out);
  CHECK_OK(kh_proto_canonical_request("GET", "/v1/x", "t", KH_PROTO_SEQ_MAX, sha, NULL,
                                      "bytes=0-9", &out, &len));
  CHECK(out && strstr(out, "\n9223372036854775807\n") && strstr(out, "\n\nbytes=0-9\n"));
  free(out);
  CHECK_ERR(kh_proto_canonical_request("GET", "/v1/x", "t", 0, sha, NULL, NULL, &out, &len),
            KH_ERR_INVAL);
  CHECK(out == NULL);
  CHECK_ERR(kh_proto_canonical_request("GET", "/v1/x", "t", KH_PROTO_SEQ_MAX + 1, sha, NULL,
                                       NULL, &out, &len), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_canonical_request("GET", "/v1//x", "t", 1, sha, NULL, NULL, &out, &len),
            KH_ERR_INVAL);
  CHECK_ERR(kh_proto_canonical_request("GET", "/v1/x", "t\n", 1, sha, NULL, NULL, &out, &len),
            KH_ERR_INVAL);
  CHECK_ERR(kh_proto_canonical_request("GET", "/v1/x", "t", 1, sha, "*\n", NULL, &out, &len),
            KH_ERR_INVAL);
  CHECK_ERR(kh_proto_canonical_request("GET", "/v1/x", "t", 1, sha, NULL, "a\nb", &out, &len),
            KH_ERR_INVAL);
  CHECK_ERR(kh_proto_canonical_request("get", "/v1/x", "t", 1, sha, NULL, NULL, &out, &len),
            KH_ERR_INVAL);
  char shortsha[65] = "e3b0";
  CHECK_ERR(kh_proto_canonical_request("GET", "/v1/x", "t", 1, shortsha, NULL, NULL, &out, &len),
            KH_ERR_INVAL);
  char up[65];
  memcpy(up, sha, 65);
  up[0] = 'E';
  CHECK_ERR(kh_proto_canonical_request("GET", "/v1/x", "t", 1, up, NULL, NULL, &out, &len),
            KH_ERR_INVAL);

  CHECK_OK(kh_proto_signup_statement("inst", "Y2g=", "c2s=", "Ym94", "laptop", NULL, &out, &len));
  CHECK(out && strcmp(out, "keyhold-signup v1\ninst\nY2g=\nc2s=\nYm94\nlaptop\n-\n") == 0);
  free(out);
  CHECK_OK(kh_proto_signup_statement("i", "c", "s", "b", "n", "tok", &out, &len));
  CHECK(out && strcmp(out, "keyhold-signup v1\ni\nc\ns\nb\nn\ntok\n") == 0);
  free(out);
  CHECK_ERR(kh_proto_signup_statement("i", "c", "s", "b", "n\nx", "t", &out, &len), KH_ERR_INVAL);
  CHECK_OK(kh_proto_session_statement("i", "c", "acc", "dev", &out, &len));
  CHECK(out && strcmp(out, "keyhold-session v1\ni\nc\nacc\ndev\n") == 0);
  CHECK_EQ(len, strlen("keyhold-session v1\ni\nc\nacc\ndev\n"));
  free(out);
}

static void test_headers(void)
{
  uint64_t v = 0, a = 0, b = 0;
  CHECK_OK(kh_proto_seq_parse("1", &v));
  CHECK_EQ(v, 1);
  CHECK_OK(kh_proto_seq_parse("9223372036854775807", &v));
  CHECK(v == KH_PROTO_SEQ_MAX);
  static const char *bad_seq[] = {"", "0", "01", "-1", "+1", " 1", "1 ", "1a", "0x10",
                                  "9223372036854775808", "18446744073709551616", "99999999999999999999999"};
  for (size_t i = 0; i < sizeof bad_seq / sizeof bad_seq[0]; i++) {
    CHECK_ERR(kh_proto_seq_parse(bad_seq[i], &v), KH_ERR_FORMAT);
    CHECK_EQ(v, 0);
  }
  CHECK_ERR(kh_proto_seq_parse(NULL, &v), KH_ERR_FORMAT);
  CHECK_OK(kh_proto_range_parse("bytes=0-0", &a, &b));
  CHECK(a == 0 && b == 0);
  CHECK_OK(kh_proto_range_parse("bytes=100-199", &a, &b));
  CHECK(a == 100 && b == 199);
  CHECK_OK(kh_proto_range_parse("bytes=5-18446744073709551614", &a, &b));
  CHECK(b == UINT64_MAX - 1);
  static const char *bad_range[] = {"", "bytes=", "bytes=5-", "bytes=-5", "bytes=5-4",
                                    "bytes=1-2,3-4", "bytes= 1-2", "bytes=1-2 ", "Bytes=1-2",
                                    "bytes=01-2", "bytes=0-18446744073709551615",
                                    "bytes=0-18446744073709551616", "items=1-2", "bytes=+1-2"};
  for (size_t i = 0; i < sizeof bad_range / sizeof bad_range[0]; i++) {
    if (kh_proto_range_parse(bad_range[i], &a, &b) == KH_OK)
      fprintf(stderr, "accepted range '%s'\n", bad_range[i]);
    CHECK_ERR(kh_proto_range_parse(bad_range[i], &a, &b), KH_ERR_FORMAT);
  }
}

static void test_window(void)
{
  kh_proto_window w;
  memset(&w, 0, sizeof w);
  CHECK_ERR(kh_proto_window_accept(&w, 0), KH_ERR_DENIED);
  CHECK_OK(kh_proto_window_accept(&w, 5));
  CHECK_ERR(kh_proto_window_accept(&w, 5), KH_ERR_DENIED);
  CHECK_OK(kh_proto_window_accept(&w, 3)); /* out of order is fine */
  CHECK_ERR(kh_proto_window_accept(&w, 3), KH_ERR_DENIED);
  CHECK_OK(kh_proto_window_accept(&w, 4));
  CHECK_OK(kh_proto_window_accept(&w, 1000));
  CHECK_ERR(kh_proto_window_accept(&w, 4), KH_ERR_DENIED);
  CHECK_ERR(kh_proto_window_accept(&w, 5), KH_ERR_DENIED);
  CHECK_OK(kh_proto_window_accept(&w, 6)); /* remembered as unseen across the shift */
  CHECK_OK(kh_proto_window_accept(&w, 5000));
  /* top 5000: the window is 905..5000 */
  CHECK_ERR(kh_proto_window_accept(&w, 904), KH_ERR_DENIED);
  CHECK_OK(kh_proto_window_accept(&w, 905));
  CHECK_ERR(kh_proto_window_accept(&w, 1000), KH_ERR_DENIED); /* seen, still in the window */
  CHECK_OK(kh_proto_window_accept(&w, 999));
  CHECK_ERR(kh_proto_window_accept(&w, KH_PROTO_SEQ_MAX + 1), KH_ERR_DENIED);
  CHECK_OK(kh_proto_window_accept(&w, KH_PROTO_SEQ_MAX));
  CHECK_ERR(kh_proto_window_accept(&w, 5000), KH_ERR_DENIED);
  /* against a plain set, with random shifts of every size */
  memset(&w, 0, sizeof w);
  static uint8_t seen[20000];
  memset(seen, 0, sizeof seen);
  uint64_t top = 0;
  for (int i = 0; i < 200000; i++) {
    uint64_t s = 1 + randombytes_uniform(19999);
    bool want = s + 4096 > top && !seen[s];
    kh_err e = kh_proto_window_accept(&w, s);
    if ((e == KH_OK) != want) {
      CHECK_EQ(e == KH_OK, want);
      break;
    }
    if (e == KH_OK) {
      seen[s] = 1;
      if (s > top)
        top = s;
    }
  }
}

static void test_codes(void)
{
  char c[KH_PROTO_CODE_LEN + 1], n[KH_PROTO_CODE_LEN + 1];
  for (int i = 0; i < 100; i++) {
    kh_proto_code_new(c);
    CHECK_EQ(strlen(c), 8);
    CHECK(strspn(c, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") == 8);
    CHECK_OK(kh_proto_code_parse(c, n));
    CHECK(strcmp(c, n) == 0);
  }
  CHECK_OK(kh_proto_code_parse("abcd-efgh", n));
  CHECK(strcmp(n, "ABCDEFGH") == 0);
  CHECK_OK(kh_proto_code_parse("iLoO1234", n));
  CHECK(strcmp(n, "1100" "1234") == 0);
  CHECK_ERR(kh_proto_code_parse("ABCD-EFGU", n), KH_ERR_INVAL); /* U is not Crockford */
  CHECK_EQ(n[0], 0);
  CHECK_ERR(kh_proto_code_parse("ABCDEFG", n), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_code_parse("ABCDEFGHJ", n), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_code_parse("ABC-DEFGH", n), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_code_parse("ABCD--EFGH", n), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_code_parse("ABCD EFGH", n), KH_ERR_INVAL);
  CHECK_ERR(kh_proto_code_parse(NULL, n), KH_ERR_INVAL);
  /* Argon2id ops 3, 64 MiB: the same as crypto_pwhash with those numbers */
  uint8_t salt[16], k[32], k2[32];
  memset(salt, 7, sizeof salt);
  CHECK_OK(kh_proto_code_key("ABCDEFGH", salt, k));
  CHECK_EQ(crypto_pwhash(k2, 32, "ABCDEFGH", 8, salt, 3, 64u << 20, crypto_pwhash_ALG_ARGON2ID13),
           0);
  CHECK_MEM(k, k2, 32);
  CHECK_OK(kh_proto_code_key("ABCDEFGJ", salt, k2));
  CHECK(memcmp(k, k2, 32) != 0);
}

static void test_b64(void)
{
  uint8_t in[32], out[32];
  char t[64];
  for (int i = 0; i < 32; i++)
    in[i] = (uint8_t)(i * 37);
  kh_proto_b64(in, 32, t);
  CHECK_EQ(strlen(t), 44);
  CHECK_OK(kh_proto_unb64(t, out, 32));
  CHECK_MEM(in, out, 32);
  kh_proto_b64((const uint8_t *)"ab", 2, t);
  CHECK(strcmp(t, "YWI=") == 0);
  CHECK_OK(kh_proto_unb64("YWI=", out, 2));
  CHECK_MEM(out, "ab", 2);
  CHECK_ERR(kh_proto_unb64("YWJ=", out, 2), KH_ERR_FORMAT); /* unused bits set */
  CHECK_EQ(out[0], 0);
  CHECK_ERR(kh_proto_unb64("YWI", out, 2), KH_ERR_FORMAT);
  CHECK_ERR(kh_proto_unb64("YWI==", out, 2), KH_ERR_FORMAT);
  CHECK_ERR(kh_proto_unb64("YWI=", out, 1), KH_ERR_FORMAT);
  CHECK_ERR(kh_proto_unb64("YW-=", out, 2), KH_ERR_FORMAT);
  CHECK_ERR(kh_proto_unb64("YWJj", out, 2), KH_ERR_FORMAT);
  CHECK_ERR(kh_proto_unb64(NULL, out, 2), KH_ERR_FORMAT);
  CHECK_OK(kh_proto_unb64("YWJj", out, 3));
  CHECK_MEM(out, "abc", 3);
}

int main(void)
{
  if (sodium_init() < 0)
    return 1;
  RUN(test_caps);
  RUN(test_names);
  RUN(test_table);
  RUN(test_targets);
  RUN(test_canonical);
  RUN(test_headers);
  RUN(test_window);
  RUN(test_codes);
  RUN(test_b64);
  return kh_test_done("test_proto");
}
