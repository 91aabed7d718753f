/* The bounded JSON reader of include/keyhold/json.h (RFC 8259).
 *
 * Recursive descent with an explicit depth bound; every value is one
 * node, and the node count is bounded, so a hostile body costs at most
 * KH_JSON_MAX_NODES small allocations plus its own size in strings. */
#include "keyhold/json.h"
#include <stdlib.h>
#include <string.h>
#include "common/err.h"

struct kh_json {
  kh_json_type type;
  bool b;
  bool is_int;
  int64_t i;
  char *s;            /* strings: NUL-terminated */
  size_t slen;
  kh_json **items;    /* arrays and objects: values */
  char **keys;        /* objects: keys */
  size_t n, cap;
};

typedef struct parser {
  const char *p, *end, *start;
  size_t nodes;
  kh_err e;
} parser;

static kh_err fail(parser *ps, const char *what)
{
  if (!ps->e)
    ps->e = kh_seterr(KH_ERR_FORMAT, "JSON: %s at byte %zu", what, (size_t)(ps->p - ps->start));
  return ps->e;
}

static void skip_ws(parser *ps)
{
  while (ps->p < ps->end &&
         (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static kh_json *new_node(parser *ps, kh_json_type t)
{
  if (ps->nodes >= KH_JSON_MAX_NODES) {
    fail(ps, "too many values");
    return NULL;
  }
  kh_json *j = calloc(1, sizeof *j);
  if (!j) {
    if (!ps->e)
      ps->e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  ps->nodes++;
  j->type = t;
  return j;
}

static void node_free(kh_json *j)
{
  if (!j)
    return;
  for (size_t i = 0; i < j->n; i++) {
    node_free(j->items[i]);
    if (j->keys)
      free(j->keys[i]);
  }
  free(j->items);
  free(j->keys);
  free(j->s);
  free(j);
}

void kh_json_free(kh_json *root) { node_free(root); }

static int hexval(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static bool read_u4(parser *ps, uint32_t *out)
{
  if (ps->end - ps->p < 4)
    return false;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(ps->p[i]);
    if (h < 0)
      return false;
    v = v << 4 | (uint32_t)h;
  }
  ps->p += 4;
  *out = v;
  return true;
}

/* Length of the valid UTF-8 sequence at p (1..4), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
  unsigned c = p[0];
  size_t n;
  uint32_t cp, min;
  if (c < 0x80)
    return 1;
  if ((c & 0xe0) == 0xc0) { n = 2; cp = c & 0x1f; min = 0x80; }
  else if ((c & 0xf0) == 0xe0) { n = 3; cp = c & 0x0f; min = 0x800; }
  else if ((c & 0xf8) == 0xf0) { n = 4; cp = c & 0x07; min = 0x10000; }
  else return 0;
  if ((size_t)(end - p) < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (p[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

static size_t put_utf8(char *o, uint32_t cp)
{
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f)); return 3;
  }
  o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* At the opening quote.  The unescaped string is never longer than its
 * source, so one allocation of the source span suffices. */
static kh_err parse_string(parser *ps, char **out, size_t *len)
{
  ps->p++; /* '"' */
  const char *q = ps->p;
  while (q < ps->end && *q != '"')
    q += (*q == '\\' && ps->end - q > 1) ? 2 : 1;
  if (q >= ps->end)
    return fail(ps, "unterminated string");
  char *buf = malloc((size_t)(q - ps->p) + 1);
  if (!buf)
    return ps->e = kh_seterr(KH_ERR_NOMEM, "out of memory");
  size_t o = 0;
  while (*ps->p != '"') {
    unsigned char c = (unsigned char)*ps->p;
    if (c < 0x20) {
      free(buf);
      return fail(ps, "control character in string");
    }
    if (c != '\\') {
      size_t n = utf8_len((const unsigned char *)ps->p, (const unsigned char *)ps->end);
      if (!n) {
        free(buf);
        return fail(ps, "invalid UTF-8 in string");
      }
      memcpy(buf + o, ps->p, n);
      o += n;
      ps->p += n;
      continue;
    }
    ps->p++;
    char esc = *ps->p++;
    uint32_t cp;
    switch (esc) {
    case '"': buf[o++] = '"'; break;
    case '\\': buf[o++] = '\\'; break;
    case '/': buf[o++] = '/'; break;
    case 'b': buf[o++] = '\b'; break;
    case 'f': buf[o++] = '\f'; break;
    case 'n': buf[o++] = '\n'; break;
    case 'r': buf[o++] = '\r'; break;
    case 't': buf[o++] = '\t'; break;
    case 'u':
      if (!read_u4(ps, &cp))
        goto bad_escape;
      if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t lo;
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
          goto bad_escape;
        ps->p += 2;
        if (!read_u4(ps, &lo) || lo < 0xdc00 || lo > 0xdfff)
          goto bad_escape;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        goto bad_escape;
      }
      if (cp == 0) {
        free(buf);
        return fail(ps, "U+0000 in string");
      }
      /* an escape is 6 (or 12) source bytes for at most 3 (or 4) out */
      o += put_utf8(buf + o, cp);
      break;
    default:
      goto bad_escape;
    }
    continue;
  bad_escape:
    free(buf);
    return fail(ps, "bad escape in string");
  }
  ps->p++; /* closing quote */
  buf[o] = 0;
  *out = buf;
  *len = o;
  return KH_OK;
}

static kh_err parse_number(parser *ps, kh_json *j)
{
  const char *s = ps->p;
  bool neg = false, frac = false;
  if (ps->p < ps->end && *ps->p == '-') {
    neg = true;
    ps->p++;
  }
  if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
    return fail(ps, "bad number");
  if (*ps->p == '0') {
    ps->p++;
  } else {
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
      ps->p++;
  }
  const char *int_end = ps->p;
  if (ps->p < ps->end && *ps->p == '.') {
    frac = true;
    ps->p++;
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
      return fail(ps, "bad number");
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
      ps->p++;
  }
  if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
    frac = true;
    ps->p++;
    if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
      ps->p++;
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
      return fail(ps, "bad number");
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
      ps->p++;
  }
  if (frac)
    return KH_OK;
  /* accumulate as a negative number: covers INT64_MIN */
  int64_t v = 0;
  for (const char *d = s + neg; d < int_end; d++) {
    int digit = *d - '0';
    if (v < (INT64_MIN + digit) / 10)
      return KH_OK; /* out of range: a number, not an integer */
    v = v * 10 - digit;
  }
  if (!neg) {
    if (v == INT64_MIN)
      return KH_OK;
    v = -v;
  }
  j->is_int = true;
  j->i = v;
  return KH_OK;
}

static bool lit(parser *ps, const char *w)
{
  size_t n = strlen(w);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n))
    return false;
  ps->p += n;
  return true;
}

static kh_err push(parser *ps, kh_json *c, kh_json *item, char *key)
{
  if (c->n == c->cap) {
    size_t nc = c->cap ? c->cap * 2 : 4;
    kh_json **ni = realloc(c->items, nc * sizeof *ni);
    if (ni)
      c->items = ni;
    char **nk = NULL;
    if (ni && c->type == KH_JSON_OBJ) {
      nk = realloc(c->keys, nc * sizeof *nk);
      if (nk)
        c->keys = nk;
    }
    if (!ni || (c->type == KH_JSON_OBJ && !nk)) {
      node_free(item);
      free(key);
      return ps->e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    }
    c->cap = nc;
  }
  c->items[c->n] = item;
  if (c->type == KH_JSON_OBJ)
    c->keys[c->n] = key;
  c->n++;
  return KH_OK;
}

static int cmp_key(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static kh_err no_dup_keys(parser *ps, kh_json *o)
{
  if (o->n < 2)
    return KH_OK;
  char **k = malloc(o->n * sizeof *k);
  if (!k)
    return ps->e = kh_seterr(KH_ERR_NOMEM, "out of memory");
  memcpy(k, o->keys, o->n * sizeof *k);
  qsort(k, o->n, sizeof *k, cmp_key);
  kh_err e = KH_OK;
  for (size_t i = 1; i < o->n && !e; i++)
    if (!strcmp(k[i - 1], k[i]))
      e = fail(ps, "repeated key in object");
  free(k);
  return e;
}

static kh_err parse_value(parser *ps, int depth, kh_json **out)
{
  *out = NULL;
  skip_ws(ps);
  if (ps->p >= ps->end)
    return fail(ps, "unexpected end");
  char c = *ps->p;
  kh_json *j = NULL;
  kh_err e = KH_OK;
  if (c == '{' || c == '[') {
    if (depth >= KH_JSON_MAX_DEPTH)
      return fail(ps, "nested too deeply");
    bool obj = c == '{';
    char close = obj ? '}' : ']';
    if (!(j = new_node(ps, obj ? KH_JSON_OBJ : KH_JSON_ARR)))
      return ps->e;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
      ps->p++;
      *out = j;
      return KH_OK;
    }
    for (;;) {
      char *key = NULL;
      size_t klen;
      if (obj) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') {
          e = fail(ps, "expected a key");
          break;
        }
        if ((e = parse_string(ps, &key, &klen)))
          break;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
          free(key);
          e = fail(ps, "expected ':'");
          break;
        }
        ps->p++;
      }
      kh_json *item;
      if ((e = parse_value(ps, depth + 1, &item))) {
        free(key);
        break;
      }
      if ((e = push(ps, j, item, key)))
        break;
      skip_ws(ps);
      if (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        continue;
      }
      if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        break;
      }
      e = fail(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'");
      break;
    }
    if (!e && obj)
      e = no_dup_keys(ps, j);
  } else if (c == '"') {
    if (!(j = new_node(ps, KH_JSON_STR)))
      return ps->e;
    e = parse_string(ps, &j->s, &j->slen);
  } else if (c == 't' || c == 'f') {
    if (!(j = new_node(ps, KH_JSON_BOOL)))
      return ps->e;
    j->b = c == 't';
    if (!lit(ps, j->b ? "true" : "false"))
      e = fail(ps, "bad literal");
  } else if (c == 'n') {
    if (!(j = new_node(ps, KH_JSON_NULL)))
      return ps->e;
    if (!lit(ps, "null"))
      e = fail(ps, "bad literal");
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    if (!(j = new_node(ps, KH_JSON_NUM)))
      return ps->e;
    e = parse_number(ps, j);
  } else {
    e = fail(ps, "unexpected character");
  }
  if (e) {
    node_free(j);
    return e;
  }
  *out = j;
  return KH_OK;
}

kh_err kh_json_parse(const char *text, size_t n, kh_json **out)
{
  *out = NULL;
  parser ps = {text, text + n, text, 0, KH_OK};
  kh_json *root;
  kh_err e = parse_value(&ps, 0, &root);
  if (e)
    return e;
  skip_ws(&ps);
  if (ps.p != ps.end) {
    node_free(root);
    return fail(&ps, "trailing bytes");
  }
  *out = root;
  return KH_OK;
}

kh_json_type kh_json_type_of(const kh_json *j) { return j ? j->type : KH_JSON_NULL; }

size_t kh_json_len(const kh_json *j)
{
  return j && (j->type == KH_JSON_ARR || j->type == KH_JSON_OBJ) ? j->n : 0;
}

const kh_json *kh_json_at(const kh_json *j, size_t i)
{
  return i < kh_json_len(j) ? j->items[i] : NULL;
}

const char *kh_json_key_at(const kh_json *j, size_t i)
{
  return j && j->type == KH_JSON_OBJ && i < j->n ? j->keys[i] : NULL;
}

const kh_json *kh_json_get(const kh_json *j, const char *key)
{
  if (!j || j->type != KH_JSON_OBJ)
    return NULL;
  for (size_t i = 0; i < j->n; i++)
    if (!strcmp(j->keys[i], key))
      return j->items[i];
  return NULL;
}

const char *kh_json_string(const kh_json *j)
{
  return j && j->type == KH_JSON_STR ? j->s : NULL;
}

size_t kh_json_string_len(const kh_json *j)
{
  return j && j->type == KH_JSON_STR ? j->slen : 0;
}

bool kh_json_int(const kh_json *j, int64_t *out)
{
  if (!j || j->type != KH_JSON_NUM || !j->is_int)
    return false;
  *out = j->i;
  return true;
}

bool kh_json_bool(const kh_json *j, bool *out)
{
  if (!j || j->type != KH_JSON_BOOL)
    return false;
  *out = j->b;
  return true;
}

const char *kh_json_get_str(const kh_json *obj, const char *key)
{
  return kh_json_string(kh_json_get(obj, key));
}

bool kh_json_get_int(const kh_json *obj, const char *key, int64_t *out)
{
  return kh_json_int(kh_json_get(obj, key), out);
}
