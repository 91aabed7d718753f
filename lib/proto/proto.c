/* The account protocol's shared pieces (include/keyhold/proto.h,
 * docs/protocol.md §6-§9): capabilities, the object-name grammar and the
 * capability table of §8.1 (one table), canonical requests, request
 * targets, the replay window, enrolment codes and base64. */
#include "keyhold/proto.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "provider/provider.h"

/* ---- capabilities ------------------------------------------------------ */

static const char *const g_cap_names[4] = {"backup", "read", "prune", "admin"};

kh_err kh_proto_caps_parse(const char *s, unsigned *caps)
{
  unsigned c = 0;
  *caps = 0;
  if (!s || !*s)
    return kh_seterr(KH_ERR_INVAL, "no capability named");
  while (*s) {
    size_t n = strcspn(s, ",");
    unsigned bit = 0;
    for (unsigned i = 0; i < 4; i++)
      if (strlen(g_cap_names[i]) == n && memcmp(s, g_cap_names[i], n) == 0)
        bit = 1u << i;
    if (!bit || (c & bit))
      return kh_seterr(KH_ERR_INVAL, "capabilities: unknown or repeated name in '%.64s'", s);
    c |= bit;
    s += n;
    if (*s == ',' && !*++s)
      return kh_seterr(KH_ERR_INVAL, "capabilities: empty name after ','");
  }
  *caps = c;
  return KH_OK;
}

void kh_proto_caps_format(unsigned caps, char *out, size_t n)
{
  size_t o = 0;
  if (!n)
    return;
  out[0] = '\0';
  for (unsigned i = 0; i < 4; i++) {
    if (!(caps & (1u << i)))
      continue;
    int w = snprintf(out + o, n - o, "%s%s", o ? "," : "", g_cap_names[i]);
    if (w < 0 || (size_t)w >= n - o) {
      out[o] = '\0'; /* cut at a whole name */
      return;
    }
    o += (size_t)w;
  }
}

const char *kh_proto_cap_name(unsigned cap)
{
  for (unsigned i = 0; i < 4; i++)
    if (cap & (1u << i))
      return g_cap_names[i];
  return "none";
}

/* ---- the §8.1 table ---------------------------------------------------- */

/* A rule is a set of capabilities any one of which allows the operation:
 * R_ANY (no capability needed: any device of the account) or R_NEVER. */
#define R_ANY 0u
#define R_NEVER KH_PROTO_CAP_NEVER
#define B KH_CAP_BACKUP
#define RD KH_CAP_READ
#define P KH_CAP_PRUNE
#define A KH_CAP_ADMIN

typedef struct kind_row {
  kh_obj_kind kind;
  const char *prefix;   /* "keys": names are "keys/<hex>"; NULL: exact name */
  const char *exact;    /* the whole name when prefix is NULL */
  unsigned id_len;      /* hex digits of the id */
  bool fanout;          /* data/<2 hex>/<64 hex> */
  uint64_t max;
  unsigned put, get, del, list;
  bool own_get_any;     /* keys/<own device id>: any device may read */
  bool own_put_any;     /* devices/<own device id>: any device may write */
} kind_row;

static const kind_row g_kinds[] = {
  {KH_OBJ_ACCOUNT, NULL, "account", 0, false, KH_OBJMAX_REGION_MARKER,
   A, R_ANY, R_NEVER, R_NEVER, false, false},
  {KH_OBJ_PROTECTION, NULL, "protection", 0, false, KH_OBJMAX_PROTECTION,
   A, R_ANY, R_NEVER, R_NEVER, false, false},
  {KH_OBJ_KEY, "keys", NULL, 32, false, KH_OBJMAX_KEY, A, A, A, A, true, false},
  {KH_OBJ_DEVICE, "devices", NULL, 32, false, KH_OBJMAX_DEVICE, A, R_ANY, A, R_ANY, false, true},
  {KH_OBJ_PACK, "data", NULL, 64, true, KH_OBJMAX_PACK, B | P, RD, P, RD | P, false, false},
  {KH_OBJ_INDEX, "index", NULL, 64, false, KH_OBJMAX_INDEX, B | P, R_ANY, P, R_ANY, false, false},
  {KH_OBJ_SNAPSHOT, "snapshots", NULL, 64, false, KH_OBJMAX_SNAPSHOT, B | P, RD, P, R_ANY,
   false, false},
  {KH_OBJ_LOCK, "locks", NULL, 32, false, KH_OBJMAX_LOCK, R_ANY, R_ANY, R_ANY, R_ANY, false,
   false},
  {KH_OBJ_DAMAGE, "damage", NULL, 64, false, KH_OBJMAX_DAMAGE, B | RD | P, RD, P, RD | P,
   false, false},
};

static const kind_row *row_of(kh_obj_kind k)
{
  for (size_t i = 0; i < sizeof g_kinds / sizeof g_kinds[0]; i++)
    if (g_kinds[i].kind == k)
      return &g_kinds[i];
  return NULL;
}

static bool lower_hex(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

kh_obj_kind kh_proto_obj_kind(const char *name, const char **id_hex)
{
  if (id_hex)
    *id_hex = NULL;
  if (!name)
    return KH_OBJ_INVALID;
  for (size_t i = 0; i < sizeof g_kinds / sizeof g_kinds[0]; i++) {
    const kind_row *r = &g_kinds[i];
    if (!r->prefix) {
      if (strcmp(name, r->exact) == 0)
        return r->kind;
      continue;
    }
    size_t pl = strlen(r->prefix);
    if (strncmp(name, r->prefix, pl) != 0 || name[pl] != '/')
      continue;
    const char *p = name + pl + 1;
    if (r->fanout) {
      if (!lower_hex(p, 2) || p[2] != '/')
        return KH_OBJ_INVALID;
      if (strnlen(p + 3, r->id_len + 1) != r->id_len || !lower_hex(p + 3, r->id_len) ||
          memcmp(p, p + 3, 2) != 0)
        return KH_OBJ_INVALID;
      p += 3;
    } else if (strnlen(p, r->id_len + 1) != r->id_len || !lower_hex(p, r->id_len)) {
      return KH_OBJ_INVALID;
    }
    if (id_hex)
      *id_hex = p;
    return r->kind;
  }
  return KH_OBJ_INVALID;
}

uint64_t kh_proto_obj_max(kh_obj_kind k)
{
  const kind_row *r = row_of(k);
  return r ? r->max : 0;
}

const char *kh_proto_kind_prefix(kh_obj_kind k)
{
  const kind_row *r = row_of(k);
  return r ? r->prefix : NULL;
}

kh_obj_kind kh_proto_list_kind(const char *prefix)
{
  for (size_t i = 0; prefix && i < sizeof g_kinds / sizeof g_kinds[0]; i++)
    if (g_kinds[i].prefix && strcmp(prefix, g_kinds[i].prefix) == 0)
      return g_kinds[i].kind;
  return KH_OBJ_INVALID;
}

/* What a rule asks of caps: 0 if satisfied, else the lowest bit that would
 * satisfy it (R_NEVER for a rule nothing satisfies). */
static unsigned rule_lacks(unsigned rule, unsigned caps)
{
  if (rule == R_ANY)
    return 0;
  if (rule == R_NEVER)
    return R_NEVER;
  if (caps & rule)
    return 0;
  return rule & (~rule + 1u); /* lowest set bit */
}

unsigned kh_proto_obj_allowed(kh_obj_op op, const char *name, const char *device_hex,
                              unsigned caps)
{
  const char *id = NULL;
  const kind_row *r;
  if (op == KH_OP_LIST) {
    r = row_of(kh_proto_list_kind(name));
    return r ? rule_lacks(r->list, caps) : R_NEVER;
  }
  if (!(r = row_of(kh_proto_obj_kind(name, &id))))
    return R_NEVER;
  bool own = id && device_hex && strlen(device_hex) == r->id_len &&
             memcmp(id, device_hex, r->id_len) == 0;
  switch (op) {
  case KH_OP_PUT: return (own && r->own_put_any) ? 0 : rule_lacks(r->put, caps);
  case KH_OP_GET: return (own && r->own_get_any) ? 0 : rule_lacks(r->get, caps);
  case KH_OP_DELETE: return rule_lacks(r->del, caps);
  default: return R_NEVER;
  }
}

/* ---- request targets and canonical requests ----------------------------- */

bool kh_proto_target_valid(const char *t)
{
  if (!t || t[0] != '/')
    return false;
  size_t n = strnlen(t, KH_PROTO_TARGET_MAX + 1);
  if (n > KH_PROTO_TARGET_MAX)
    return false;
  const char *q = memchr(t, '?', n);
  size_t pl = q ? (size_t)(q - t) : n;
  /* path: segments of [A-Za-z0-9._-], none empty, none "." or ".." */
  size_t seg = 0, dots = 0;
  for (size_t i = 1; i <= pl; i++) {
    char c = i < pl ? t[i] : '/';
    if (c == '/') {
      if (seg == 0 || (seg == dots && seg <= 2))
        return false;
      seg = dots = 0;
      continue;
    }
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '.' || c == '_' || c == '-'))
      return false;
    seg++;
    dots += c == '.';
  }
  if (q) {
    if (pl + 1 == n)
      return false; /* "?" and nothing */
    for (size_t i = pl + 1; i < n; i++) {
      char c = t[i];
      if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '=' || c == '&' || c == '.' || c == '_' || c == '-'))
        return false;
    }
  }
  return true;
}

static bool one_line(const char *s)
{
  for (; *s; s++)
    if (*s == '\n' || *s == '\r')
      return false;
  return true;
}

kh_err kh_proto_canonical_request(const char *method, const char *target,
                                  const char *session, uint64_t seq,
                                  const char body_sha256_hex[65], const char *if_none_match,
                                  const char *range, char **out, size_t *len)
{
  *out = NULL;
  *len = 0;
  if (!if_none_match)
    if_none_match = "";
  if (!range)
    range = "";
  if (!method || !*method || strlen(method) > 16 || !session || !*session || !one_line(session) ||
      strlen(session) > 256 || !kh_proto_target_valid(target) || !one_line(if_none_match) ||
      !one_line(range) || strlen(if_none_match) > 256 || strlen(range) > 256 ||
      seq == 0 || seq > KH_PROTO_SEQ_MAX || !body_sha256_hex ||
      strnlen(body_sha256_hex, 65) != 64 || !lower_hex(body_sha256_hex, 64))
    return kh_seterr(KH_ERR_INVAL, "request cannot be signed (field malformed)");
  for (const char *m = method; *m; m++)
    if (*m < 'A' || *m > 'Z')
      return kh_seterr(KH_ERR_INVAL, "request method malformed");
  size_t cap = 20 + strlen(method) + strlen(target) + strlen(session) + 24 + 64 +
               strlen(if_none_match) + strlen(range) + 8;
  char *b = malloc(cap);
  if (!b)
    return kh_seterr(KH_ERR_NOMEM, "canonical request");
  int w = snprintf(b, cap, "keyhold-request v1\n%s\n%s\n%s\n%llu\n%s\n%s\n%s\n", method, target,
                   session, (unsigned long long)seq, body_sha256_hex, if_none_match, range);
  if (w < 0 || (size_t)w >= cap) {
    free(b);
    return kh_seterr(KH_ERR_INVAL, "canonical request");
  }
  *out = b;
  *len = (size_t)w;
  return KH_OK;
}

/* Decimal digits at *p (at most 20, no leading zero unless "0"): the value,
 * *p moved past them; false on none, overflow or a leading zero. */
static bool decimal(const char **p, uint64_t *out)
{
  const char *s = *p;
  uint64_t v = 0;
  size_t n = 0;
  while (s[n] >= '0' && s[n] <= '9') {
    unsigned d = (unsigned)(s[n] - '0');
    if (n == 20 || v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
    n++;
  }
  if (n == 0 || (n > 1 && s[0] == '0'))
    return false;
  *p = s + n;
  *out = v;
  return true;
}

kh_err kh_proto_seq_parse(const char *v, uint64_t *seq)
{
  uint64_t n = 0;
  *seq = 0;
  if (!v || !decimal(&v, &n) || *v || n == 0 || n > KH_PROTO_SEQ_MAX)
    return kh_seterr(KH_ERR_FORMAT, "KH-Seq malformed");
  *seq = n;
  return KH_OK;
}

kh_err kh_proto_range_parse(const char *v, uint64_t *first, uint64_t *last)
{
  uint64_t a = 0, b = 0;
  *first = *last = 0;
  if (!v || strncmp(v, "bytes=", 6) != 0)
    goto bad;
  v += 6;
  if (!decimal(&v, &a) || *v++ != '-' || !decimal(&v, &b) || *v || a > b || b == UINT64_MAX)
    goto bad;
  *first = a;
  *last = b;
  return KH_OK;
bad:
  return kh_seterr(KH_ERR_FORMAT, "Range must be bytes=A-B");
}

/* ---- replay window ----------------------------------------------------- */

#define WBITS 4096u
#define WWORDS (WBITS / 64u)

static void window_shift(kh_proto_window *w, uint64_t d)
{
  if (d >= WBITS) {
    memset(w->bits, 0, sizeof w->bits);
    return;
  }
  unsigned words = (unsigned)(d / 64), bits = (unsigned)(d % 64);
  for (unsigned i = WWORDS; i-- > 0;) {
    uint64_t v = 0;
    if (i >= words) {
      v = w->bits[i - words] << bits;
      if (bits && i >= words + 1)
        v |= w->bits[i - words - 1] >> (64 - bits);
    }
    w->bits[i] = v;
  }
}

kh_err kh_proto_window_accept(kh_proto_window *w, uint64_t seq)
{
  if (seq == 0 || seq > KH_PROTO_SEQ_MAX)
    return KH_ERR_DENIED;
  if (seq > w->top) {
    window_shift(w, seq - w->top);
    w->top = seq;
    w->bits[0] |= 1u;
    return KH_OK;
  }
  uint64_t i = w->top - seq;
  if (i >= WBITS)
    return KH_ERR_DENIED;
  uint64_t m = (uint64_t)1 << (i % 64);
  if (w->bits[i / 64] & m)
    return KH_ERR_DENIED;
  w->bits[i / 64] |= m;
  return KH_OK;
}

/* ---- enrolment codes ----------------------------------------------------- */

static const char g_crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void kh_proto_code_new(char out[KH_PROTO_CODE_LEN + 1])
{
  uint8_t r[5];
  randombytes_buf(r, sizeof r);
  uint64_t v = 0;
  for (int i = 0; i < 5; i++)
    v = (v << 8) | r[i];
  for (int i = KH_PROTO_CODE_LEN - 1; i >= 0; i--) {
    out[i] = g_crockford[v & 31];
    v >>= 5;
  }
  out[KH_PROTO_CODE_LEN] = '\0';
  sodium_memzero(r, sizeof r);
}

kh_err kh_proto_code_parse(const char *in, char out[KH_PROTO_CODE_LEN + 1])
{
  size_t n = in ? strnlen(in, KH_PROTO_CODE_LEN + 2) : 0, o = 0;
  memset(out, 0, KH_PROTO_CODE_LEN + 1);
  if (n != KH_PROTO_CODE_LEN && !(n == KH_PROTO_CODE_LEN + 1 && in[4] == '-'))
    return kh_seterr(KH_ERR_INVAL, "not an approval code (XXXX-XXXX)");
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    if (i == 4 && n == KH_PROTO_CODE_LEN + 1)
      continue; /* the dash */
    if (c >= 'a' && c <= 'z')
      c = (char)(c - 'a' + 'A');
    if (c == 'I' || c == 'L')
      c = '1';
    else if (c == 'O')
      c = '0';
    if (c == '\0' || !strchr(g_crockford, c)) {
      memset(out, 0, KH_PROTO_CODE_LEN + 1);
      return kh_seterr(KH_ERR_INVAL, "not an approval code (XXXX-XXXX)");
    }
    out[o++] = c;
  }
  return KH_OK;
}

kh_err kh_proto_code_key(const char code[KH_PROTO_CODE_LEN + 1], const uint8_t salt[16],
                         uint8_t k[32])
{
  if (crypto_pwhash(k, 32, code, KH_PROTO_CODE_LEN, salt, KH_PROTO_CODE_OPSLIMIT,
                    KH_PROTO_CODE_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    sodium_memzero(k, 32);
    return kh_seterr(KH_ERR_NOMEM, "approval code: Argon2id needs 64 MiB");
  }
  return KH_OK;
}

/* ---- base64 -------------------------------------------------------------- */

void kh_proto_b64(const uint8_t *in, size_t n, char *out)
{
  sodium_bin2base64(out, 4 * ((n + 2) / 3) + 1, in, n, sodium_base64_VARIANT_ORIGINAL);
}

kh_err kh_proto_unb64(const char *in, uint8_t *out, size_t n)
{
  size_t want = 4 * ((n + 2) / 3), got = 0;
  const char *end = NULL;
  char *again = NULL;
  kh_err e = KH_ERR_FORMAT;
  if (!in || strnlen(in, want + 1) != want ||
      sodium_base642bin(out, n, in, want, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      got != n || end != in + want)
    goto out;
  /* one spelling per value: the unused bits of the last group are zero */
  if (!(again = malloc(want + 1))) {
    e = KH_ERR_NOMEM;
    goto out;
  }
  kh_proto_b64(out, n, again);
  if (memcmp(again, in, want) == 0)
    e = KH_OK;
out:
  free(again);
  if (e && n)
    memset(out, 0, n);
  if (e)
    kh_seterr(e, "base64 value malformed or of the wrong length");
  return e;
}

/* ---- statements (§7.2, §7.3) -------------------------------------------- */

static kh_err join_lines(char **out, size_t *len, const char *const *f, size_t nf)
{
  size_t cap = 1;
  *out = NULL;
  *len = 0;
  for (size_t i = 0; i < nf; i++) {
    if (!f[i] || !one_line(f[i]) || strlen(f[i]) > 4096)
      return kh_seterr(KH_ERR_INVAL, "statement field malformed");
    cap += strlen(f[i]) + 1;
  }
  char *b = malloc(cap);
  if (!b)
    return kh_seterr(KH_ERR_NOMEM, "statement");
  size_t o = 0;
  for (size_t i = 0; i < nf; i++) {
    size_t l = strlen(f[i]);
    memcpy(b + o, f[i], l);
    o += l;
    b[o++] = '\n';
  }
  b[o] = '\0';
  *out = b;
  *len = o;
  return KH_OK;
}

kh_err kh_proto_signup_statement(const char *instance, const char *challenge,
                                 const char *sign_pk, const char *box_pk, const char *name,
                                 const char *invite, char **out, size_t *len)
{
  const char *f[] = {"keyhold-signup v1", instance, challenge, sign_pk, box_pk, name,
                     invite && *invite ? invite : "-"};
  return join_lines(out, len, f, sizeof f / sizeof f[0]);
}

kh_err kh_proto_session_statement(const char *instance, const char *challenge,
                                  const char *account, const char *device, char **out,
                                  size_t *len)
{
  const char *f[] = {"keyhold-session v1", instance, challenge, account, device};
  return join_lines(out, len, f, sizeof f / sizeof f[0]);
}

void kh_proto_sha256_hex(const uint8_t *data, size_t n, char out[65])
{
  static const char hx[] = "0123456789abcdef";
  uint8_t h[32];
  crypto_hash_sha256(h, data, n);
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hx[h[i] >> 4];
    out[2 * i + 1] = hx[h[i] & 15];
  }
  out[64] = '\0';
}
