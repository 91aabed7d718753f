/* Path patterns for backup excludes: see pattern.h and docs/cli.md. */
#include "common/pattern.h"
#include "common/err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct pcomp {
  const char *text; /* into pat->text; not NUL-terminated */
  size_t len;
  bool dstar;       /* "**": any number of components */
} pcomp;

typedef struct kh_pat {
  char *text;
  pcomp *comps;
  size_t ncomps;
  bool negate, icase;
} kh_pat;

struct kh_pattern_set {
  kh_pat *pats;
  size_t n, cap;
};

static unsigned char fold(unsigned char c, bool icase)
{
  return icase && c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Length of the "[...]" at p (pl bytes left), 0 if it is not closed. */
static size_t class_len(const char *p, size_t pl)
{
  size_t i = 1;
  if (i < pl && (p[i] == '!' || p[i] == '^'))
    i++;
  if (i < pl && p[i] == ']') /* "[]...]": a leading ] is literal */
    i++;
  for (; i < pl; i++) {
    if (p[i] == '\\') {
      i++;
      continue;
    }
    if (p[i] == ']')
      return i + 1;
  }
  return 0;
}

/* Does byte c match the class p[0..n) (n from class_len)? */
static bool class_match(const char *p, size_t n, unsigned char c, bool icase)
{
  size_t i = 1, end = n - 1;
  bool neg = false, hit = false;
  if (p[i] == '!' || p[i] == '^') {
    neg = true;
    i++;
  }
  unsigned char fc = fold(c, icase);
  bool first = true;
  while (i < end) {
    unsigned char lo = (unsigned char)p[i];
    if (lo == '\\' && i + 1 < end)
      lo = (unsigned char)p[++i];
    else if (lo == ']' && !first)
      break;
    i++;
    first = false;
    unsigned char hi = lo;
    if (i + 1 < end && p[i] == '-') {
      hi = (unsigned char)p[i + 1];
      i += 2;
      if (hi == '\\' && i < end)
        hi = (unsigned char)p[i++];
    }
    if ((c >= lo && c <= hi) || (icase && fc >= fold(lo, true) && fc <= fold(hi, true)))
      hit = true;
    else if (icase && lo == hi && fold(lo, true) == fc)
      hit = true;
  }
  return hit != neg;
}

/* Bytes of the UTF-8 character at s (1 for anything malformed). */
static size_t char_len(const unsigned char *s, size_t n)
{
  size_t want = s[0] < 0xc0 ? 1 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : s[0] < 0xf8 ? 4 : 1;
  if (want > n)
    return 1;
  for (size_t i = 1; i < want; i++)
    if ((s[i] & 0xc0) != 0x80)
      return 1;
  return want;
}

/* One component glob against one path component (no "/" in either).
 * Linear with one backtrack point per "*", no recursion. */
static bool glob_match(const char *p, size_t pl, const char *s, size_t sl, bool icase)
{
  size_t pi = 0, si = 0, star_p = SIZE_MAX, star_s = 0;
  while (si < sl) {
    if (pi < pl) {
      char c = p[pi];
      if (c == '*') {
        star_p = ++pi;
        star_s = si;
        continue;
      }
      size_t padv = 1, sadv = 1;
      bool ok;
      if (c == '?') {
        ok = true;
        sadv = char_len((const unsigned char *)s + si, sl - si);
      } else if (c == '[') {
        padv = class_len(p + pi, pl - pi); /* checked when compiled */
        ok = class_match(p + pi, padv, (unsigned char)s[si], icase);
      } else if (c == '\\') {
        padv = 2;
        ok = fold((unsigned char)p[pi + 1], icase) == fold((unsigned char)s[si], icase);
      } else {
        ok = fold((unsigned char)c, icase) == fold((unsigned char)s[si], icase);
      }
      if (ok) {
        pi += padv;
        si += sadv;
        continue;
      }
    }
    if (star_p == SIZE_MAX)
      return false;
    pi = star_p;
    si = ++star_s;
  }
  while (pi < pl && p[pi] == '*')
    pi++;
  return pi == pl;
}

/* Start of the component at or after s, or end. */
static const char *comp_start(const char *s, const char *end)
{
  while (s < end && *s == '/')
    s++;
  return s;
}

static const char *comp_end(const char *s, const char *end)
{
  const char *e = memchr(s, '/', (size_t)(end - s));
  return e ? e : end;
}

/* Does the pattern match the path's components from the first one on,
 * leaving any rest of the path unmatched?  "**" backtracks like "*" does
 * in glob_match, so this is linear-times-pattern, never exponential. */
static bool pat_match(const kh_pat *p, const char *path, size_t len)
{
  const char *end = path + len, *s = comp_start(path, end);
  size_t pi = 0, star_p = SIZE_MAX;
  const char *star_s = NULL;
  for (;;) {
    if (pi == p->ncomps)
      return true;
    if (p->comps[pi].dstar) {
      star_p = ++pi;
      star_s = s;
      continue;
    }
    if (s < end) {
      const char *e = comp_end(s, end);
      if (glob_match(p->comps[pi].text, p->comps[pi].len, s, (size_t)(e - s), p->icase)) {
        pi++;
        s = comp_start(e, end);
        continue;
      }
    }
    if (star_p == SIZE_MAX || star_s >= end)
      return false;
    pi = star_p;
    star_s = comp_start(comp_end(star_s, end), end);
    s = star_s;
  }
}

/* Syntax check of one component glob. */
static kh_err check_glob(const char *c, size_t n, const char *pat)
{
  for (size_t i = 0; i < n; i++) {
    if (c[i] == '\\') {
      if (++i == n)
        return kh_seterr(KH_ERR_INVAL, "pattern ends in a lone \\: %s", pat);
    } else if (c[i] == '[') {
      size_t l = class_len(c + i, n - i);
      if (!l)
        return kh_seterr(KH_ERR_INVAL, "unclosed [ in pattern: %s", pat);
      i += l - 1;
    }
  }
  return KH_OK;
}

static void pat_release(kh_pat *p)
{
  free(p->text);
  free(p->comps);
}

static kh_err pat_compile(const char *pat, bool icase, kh_pat *out)
{
  memset(out, 0, sizeof *out);
  kh_err e = KH_OK;
  size_t n = strlen(pat);
  if (n > KH_PATTERN_MAX_LEN)
    return kh_seterr(KH_ERR_INVAL, "pattern longer than %d bytes", KH_PATTERN_MAX_LEN);
  const char *p = pat;
  if (*p == '!') {
    out->negate = true;
    p++;
  }
  bool anchored = *p == '/';
  if (!*p)
    return kh_seterr(KH_ERR_INVAL, "empty pattern");
  out->icase = icase;
  out->text = strdup(p);
  /* at most one component per byte, plus the leading "**" */
  out->comps = calloc(strlen(p) + 2, sizeof *out->comps);
  if (!out->text || !out->comps) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (!anchored)
    out->comps[out->ncomps++] = (pcomp){NULL, 0, true};
  const char *t = out->text, *end = t + strlen(t);
  for (t = comp_start(t, end); t < end; t = comp_start(comp_end(t, end), end)) {
    size_t cl = (size_t)(comp_end(t, end) - t);
    bool ds = cl == 2 && t[0] == '*' && t[1] == '*';
    if (ds && out->ncomps && out->comps[out->ncomps - 1].dstar)
      continue; /* "**" twice in a row is one "**" */
    if (!ds && (e = check_glob(t, cl, pat)))
      goto out;
    out->comps[out->ncomps++] = (pcomp){t, cl, ds};
  }
out:
  if (e)
    pat_release(out);
  return e;
}

kh_err kh_pattern_set_new(kh_pattern_set **out)
{
  *out = calloc(1, sizeof **out);
  return *out ? KH_OK : kh_seterr(KH_ERR_NOMEM, "out of memory");
}

void kh_pattern_set_free(kh_pattern_set *s)
{
  if (!s)
    return;
  for (size_t i = 0; i < s->n; i++)
    pat_release(&s->pats[i]);
  free(s->pats);
  free(s);
}

kh_err kh_pattern_set_add(kh_pattern_set *s, const char *pat, bool icase)
{
  if (s->n == KH_PATTERN_MAX_COUNT)
    return kh_seterr(KH_ERR_TOOBIG, "more than %d patterns", KH_PATTERN_MAX_COUNT);
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 8;
    kh_pat *np = realloc(s->pats, nc * sizeof *np);
    if (!np)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    s->pats = np;
    s->cap = nc;
  }
  kh_err e = pat_compile(pat, icase, &s->pats[s->n]);
  if (!e)
    s->n++;
  return e;
}

kh_err kh_pattern_check(const char *pat)
{
  kh_pat p;
  kh_err e = pat_compile(pat, false, &p);
  if (!e)
    pat_release(&p);
  return e;
}

size_t kh_pattern_set_count(const kh_pattern_set *s)
{
  return s ? s->n : 0;
}

bool kh_pattern_set_excludes(const kh_pattern_set *s, const char *path, size_t len)
{
  if (!s)
    return false;
  for (size_t i = s->n; i-- > 0;)
    if (pat_match(&s->pats[i], path, len))
      return !s->pats[i].negate;
  return false;
}

bool kh_pattern_set_match_each(const kh_pattern_set *s, const char *path, size_t len,
                               bool *matched)
{
  bool any = false;
  for (size_t i = 0; s && i < s->n; i++)
    if (pat_match(&s->pats[i], path, len)) {
      any = true;
      if (matched)
        matched[i] = true;
    }
  return any;
}
