/* The operator socket's request and response (adminsock.h, docs/operations.md
 * "The operator socket"): strict, bounded line parsers. */
#include "adminsock.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Next line of [*p, end): key and value split at the first space.  -1 at a
 * line without '\n', without a space, or with a control byte. */
typedef struct line {
  const char *key, *val;
  size_t klen, vlen;
} line;

static int next_line(const char **p, const char *end, line *l)
{
  const char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
  if (!nl)
    return -1;
  for (const char *q = s; q < nl; q++)
    if ((unsigned char)*q < 0x20 || *q == 0x7f)
      return -1;
  const char *sp = memchr(s, ' ', (size_t)(nl - s));
  if (!sp || sp == s)
    return -1;
  l->key = s;
  l->klen = (size_t)(sp - s);
  l->val = sp + 1;
  l->vlen = (size_t)(nl - sp - 1);
  *p = nl + 1;
  return 0;
}

static bool is(const line *l, const char *key)
{
  return l->klen == strlen(key) && !memcmp(l->key, key, l->klen);
}

/* Copy a value of 1..max bytes without leading or trailing space. */
static int text(const line *l, char *out, size_t max)
{
  if (!l->vlen || l->vlen > max || l->val[0] == ' ' || l->val[l->vlen - 1] == ' ')
    return -1;
  memcpy(out, l->val, l->vlen);
  out[l->vlen] = '\0';
  return 0;
}

static bool lowhex(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

static int hexval(const char *s, size_t n, uint8_t *out)
{
  if (!lowhex(s, n))
    return -1;
  size_t bl = 0;
  return sodium_hex2bin(out, n / 2, s, n, NULL, &bl, NULL) == 0 && bl == n / 2 ? 0 : -1;
}

/* Decimal without leading zeros, < 2^63. */
static int number(const line *l, uint64_t *out)
{
  if (!l->vlen || l->vlen > 18 || (l->val[0] == '0' && l->vlen > 1))
    return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < l->vlen; i++) {
    if (l->val[i] < '0' || l->val[i] > '9')
      return -1;
    v = v * 10 + (uint64_t)(l->val[i] - '0');
  }
  *out = v;
  return 0;
}

static int magic(const char **p, const char *end)
{
  size_t ml = strlen(KD_ADMIN_MAGIC);
  if ((size_t)(end - *p) < ml + 1 || memcmp(*p, KD_ADMIN_MAGIC "\n", ml + 1))
    return -1;
  *p += ml + 1;
  return 0;
}

int kd_admin_req_parse(const char *p, size_t n, kd_admin_req *r)
{
  static const char *const keys[] = {"op", "account", "requester", "reason", "key"};
  const char *end = p + n;
  memset(r, 0, sizeof *r);
  if (n > KD_ADMIN_REQ_MAX || magic(&p, end))
    return -1;
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    line l;
    if (next_line(&p, end, &l) || !is(&l, keys[i]))
      return -1;
    int bad = 0;
    switch (i) {
    case 0:
      bad = l.vlen != 6 || memcmp(l.val, "unwrap", 6) || text(&l, r->op, sizeof r->op - 1);
      break;
    case 1:
      bad = l.vlen != 32 || !lowhex(l.val, 32) || text(&l, r->account, 32);
      break;
    case 2: bad = text(&l, r->requester, KD_ADMIN_TEXT_MAX); break;
    case 3: bad = text(&l, r->reason, KD_ADMIN_TEXT_MAX); break;
    default:
      if (l.vlen == 3 && !memcmp(l.val, "yes", 3))
        r->want_key = true;
      else if (!(l.vlen == 2 && !memcmp(l.val, "no", 2)))
        bad = 1;
    }
    if (bad)
      return -1;
  }
  return p == end ? 0 : -1;
}

size_t kd_admin_req_format(const kd_admin_req *r, char *out, size_t cap)
{
  int n = snprintf(out, cap, KD_ADMIN_MAGIC "\nop %s\naccount %s\nrequester %s\nreason %s\n"
                   "key %s\n", r->op, r->account, r->requester, r->reason,
                   r->want_key ? "yes" : "no");
  if (n < 0 || (size_t)n >= cap)
    return 0;
  kd_admin_req check;
  return kd_admin_req_parse(out, (size_t)n, &check) == 0 ? (size_t)n : 0;
}

void kd_admin_resp_init(kd_admin_resp *r)
{
  memset(r, 0, sizeof *r);
}

void kd_admin_resp_release(kd_admin_resp *r)
{
  if (r->key)
    sodium_free(r->key);
  r->key = NULL;
}

int kd_admin_resp_parse(const char *p, size_t n, kd_admin_resp *r)
{
  const char *end = p + n;
  line l;
  kd_admin_resp_init(r);
  if (n > KD_ADMIN_RESP_MAX || magic(&p, end) || next_line(&p, end, &l) || !is(&l, "status"))
    return -1;
  if (l.vlen == 5 && !memcmp(l.val, "error", 5)) {
    if (next_line(&p, end, &l) || !is(&l, "error") || text(&l, r->error, sizeof r->error - 1))
      return -1;
    return p == end ? 0 : -1;
  }
  if (!(l.vlen == 2 && !memcmp(l.val, "ok", 2)))
    return -1;
  r->ok = true;
  uint64_t v;
  if (next_line(&p, end, &l) || !is(&l, "index") || number(&l, &r->index) ||
      next_line(&p, end, &l) || !is(&l, "size") || number(&l, &r->size) ||
      r->index >= r->size ||
      next_line(&p, end, &l) || !is(&l, "root") || l.vlen != 64 || hexval(l.val, 64, r->root) ||
      next_line(&p, end, &l) || !is(&l, "leaf") || l.vlen != 64 || hexval(l.val, 64, r->leaf) ||
      next_line(&p, end, &l) || !is(&l, "proof"))
    goto bad;
  if (!(l.vlen == 1 && l.val[0] == '-')) {
    /* hex,hex,... */
    const char *q = l.val, *qe = l.val + l.vlen;
    for (;;) {
      if ((size_t)(qe - q) < 64 || r->plen == KD_ADMIN_PROOF_MAX ||
          hexval(q, 64, r->proof[r->plen]))
        goto bad;
      r->plen++;
      q += 64;
      if (q == qe)
        break;
      if (*q++ != ',')
        goto bad;
    }
  }
  if (next_line(&p, end, &l) || !is(&l, "cosignatures") || number(&l, &v) || v > 1000)
    goto bad;
  r->cosignatures = (unsigned)v;
  if (next_line(&p, end, &l) || !is(&l, "cipher") || number(&l, &v) || (v != 1 && v != 2))
    goto bad;
  r->cipher = (int)v;
  if (next_line(&p, end, &l))
    goto bad;
  if (is(&l, "key")) {
    if (l.vlen != 64 || !(r->key = sodium_malloc(32)) || hexval(l.val, 64, r->key))
      goto bad;
    if (next_line(&p, end, &l))
      goto bad;
  }
  if (!is(&l, "checkpoint") || l.vlen % 2 || l.vlen / 2 > KD_ADMIN_CHECKPOINT_MAX ||
      !l.vlen || hexval(l.val, l.vlen, (uint8_t *)r->checkpoint))
    goto bad;
  r->checkpoint_len = l.vlen / 2;
  r->checkpoint[r->checkpoint_len] = '\0';
  if (p != end)
    goto bad;
  return 0;
bad:
  kd_admin_resp_release(r);
  kd_admin_resp_init(r);
  return -1;
}

int kd_admin_resp_format(const kd_admin_resp *r, bool want_key, char **out, size_t *len)
{
  size_t cap = KD_ADMIN_RESP_MAX, o = 0;
  char *b = sodium_malloc(cap);
  int rc = -1;
  *out = NULL;
  *len = 0;
  if (!b)
    return -1;
#define PUT(...)                                                                      \
  do {                                                                                \
    int w_ = snprintf(b + o, cap - o, __VA_ARGS__);                                   \
    if (w_ < 0 || (size_t)w_ >= cap - o)                                              \
      goto done;                                                                      \
    o += (size_t)w_;                                                                  \
  } while (0)
  char hex[65];
  if (!r->ok) {
    PUT(KD_ADMIN_MAGIC "\nstatus error\nerror %s\n", r->error[0] ? r->error : "failed");
  } else {
    if (r->checkpoint_len > KD_ADMIN_CHECKPOINT_MAX || r->plen > KD_ADMIN_PROOF_MAX)
      goto done;
    PUT(KD_ADMIN_MAGIC "\nstatus ok\nindex %llu\nsize %llu\n", (unsigned long long)r->index,
        (unsigned long long)r->size);
    sodium_bin2hex(hex, sizeof hex, r->root, 32);
    PUT("root %s\n", hex);
    sodium_bin2hex(hex, sizeof hex, r->leaf, 32);
    PUT("leaf %s\nproof ", hex);
    for (size_t i = 0; i < r->plen; i++) {
      sodium_bin2hex(hex, sizeof hex, r->proof[i], 32);
      PUT("%s%s", i ? "," : "", hex);
    }
    PUT("%s\ncosignatures %u\ncipher %d\n", r->plen ? "" : "-", r->cosignatures, r->cipher);
    if (want_key && r->key) {
      sodium_bin2hex(hex, sizeof hex, r->key, 32);
      PUT("key %s\n", hex);
      sodium_memzero(hex, sizeof hex);
    }
    PUT("checkpoint ");
    if (cap - o < 2 * r->checkpoint_len + 2)
      goto done;
    sodium_bin2hex(b + o, cap - o, (const unsigned char *)r->checkpoint, r->checkpoint_len);
    o += 2 * r->checkpoint_len;
    PUT("\n");
  }
#undef PUT
  if (!(*out = malloc(o)))
    goto done;
  memcpy(*out, b, o);
  *len = o;
  rc = 0;
done:
  sodium_free(b); /* wipes */
  return rc;
}
