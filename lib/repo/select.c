/* Which snapshots a command is about: the one filter (--host, --path,
 * --tag) and the one way to turn a name ("latest", "latest~N", an id or a
 * unique prefix, "ID~N") into a snapshot, used by every verb (docs/cli.md
 * "Selecting snapshots"). */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/hex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TILDE_MAX 1000000u /* latest~N: N at most this */

static bool has_str(char *const *v, size_t n, const char *s, size_t len)
{
  for (size_t i = 0; i < n; i++)
    if (v[i] && strlen(v[i]) == len && memcmp(v[i], s, len) == 0)
      return true;
  return false;
}

bool kh_snap_same_set(char *const *a, size_t na, char *const *b, size_t nb)
{
  for (size_t i = 0; i < na; i++)
    if (a[i] && !has_str(b, nb, a[i], strlen(a[i])))
      return false;
  for (size_t i = 0; i < nb; i++)
    if (b[i] && !has_str(a, na, b[i], strlen(b[i])))
      return false;
  return true;
}

/* A path as given to --path, without trailing slashes ("/" stays "/"). */
static size_t path_len(const char *p)
{
  size_t l = strlen(p);
  while (l > 1 && p[l - 1] == '/')
    l--;
  return l;
}

/* One --tag entry: every comma-separated tag of it is on the snapshot; ""
 * matches a snapshot without tags. */
static bool tags_match(const char *entry, char *const *tags, size_t ntags)
{
  if (!*entry)
    return ntags == 0;
  const char *p = entry;
  for (;;) {
    const char *c = strchr(p, ',');
    size_t len = c ? (size_t)(c - p) : strlen(p);
    if (len && !has_str(tags, ntags, p, len))
      return false;
    if (!c)
      return true;
    p = c + 1;
  }
}

bool kh_snapshot_filter_match(const kh_snapshot_filter *f, const kh_snapshot_info *s)
{
  if (!f)
    return true;
  if (f->nhosts) {
    bool hit = false;
    for (size_t i = 0; i < f->nhosts && !hit; i++)
      hit = s->host && !strcmp(s->host, f->hosts[i]);
    if (!hit)
      return false;
  }
  if (f->npaths) {
    /* the same set of paths: every given one is backed up, and nothing else */
    for (size_t i = 0; i < f->npaths; i++)
      if (!has_str(s->paths, s->npaths, f->paths[i], path_len(f->paths[i])))
        return false;
    for (size_t i = 0; i < s->npaths; i++) {
      bool hit = false;
      for (size_t j = 0; j < f->npaths && !hit; j++)
        hit = s->paths[i] && strlen(s->paths[i]) == path_len(f->paths[j]) &&
              !memcmp(s->paths[i], f->paths[j], path_len(f->paths[j]));
      if (!hit)
        return false;
    }
  }
  if (f->ntags) {
    bool hit = false;
    for (size_t i = 0; i < f->ntags && !hit; i++)
      hit = tags_match(f->tags[i], s->tags, s->ntags);
    if (!hit)
      return false;
  }
  return true;
}

static bool filter_empty(const kh_snapshot_filter *f)
{
  return !f || (!f->nhosts && !f->npaths && !f->ntags);
}

/* Keep the snapshots of list that match f (others freed), in order. */
static void filter_list(const kh_snapshot_filter *f, kh_snapshot_info *list, size_t *n)
{
  size_t k = 0;
  for (size_t i = 0; i < *n; i++) {
    if (kh_snapshot_filter_match(f, &list[i])) {
      if (k != i)
        list[k] = list[i];
      k++;
    } else {
      kh_snapshots_free_one(&list[i]);
    }
  }
  *n = k;
}

kh_err kh_snapshots_select(kh_vault *v, const kh_snapshot_filter *f, kh_snapshot_info **out,
                           size_t *n)
{
  kh_err e = kh_snapshots_list(v, out, n);
  if (!e)
    filter_list(f, *out, n);
  return e;
}

static bool same_group(const kh_snapshot_info *a, const kh_snapshot_info *b)
{
  return !strcmp(a->host ? a->host : "", b->host ? b->host : "") &&
         kh_snap_same_set(a->paths, a->npaths, b->paths, b->npaths);
}

/* Append s single-quoted for a shell to buf (at *w of cap). */
static void put_quoted(char *buf, size_t cap, size_t *w, const char *s)
{
  if (*w + 1 >= cap)
    return;
  buf[(*w)++] = '\'';
  for (; *s && *w + 5 < cap; s++) {
    if (*s == '\'') {
      memcpy(buf + *w, "'\\''", 4);
      *w += 4;
    } else {
      buf[(*w)++] = *s;
    }
  }
  if (*w + 1 < cap)
    buf[(*w)++] = '\'';
  buf[*w] = 0;
}

/* "latest" spans several groups: say which, each as the options that
 * choose it. */
static kh_err ambiguous(const kh_snapshot_info *list, size_t n, const size_t *grp_first,
                        size_t ngroups)
{
  char msg[KH_ERRDETAIL_MAX - 24];
  size_t w = (size_t)snprintf(msg, sizeof msg,
                              "'latest' would pick among %zu groups of snapshots (host and "
                              "paths); choose one with --host and --path:",
                              ngroups);
  size_t shown = 0;
  for (size_t g = 0; g < ngroups; g++) {
    const kh_snapshot_info *s = &list[grp_first[g]];
    char line[512];
    size_t lw = (size_t)snprintf(line, sizeof line, "\n  --host ");
    put_quoted(line, sizeof line, &lw, s->host ? s->host : "");
    for (size_t i = 0; i < s->npaths && lw + 8 < sizeof line; i++) {
      lw += (size_t)snprintf(line + lw, sizeof line - lw, " --path ");
      put_quoted(line, sizeof line, &lw, s->paths[i] ? s->paths[i] : "");
    }
    if (w + lw + 40 >= sizeof msg)
      break;
    memcpy(msg + w, line, lw + 1);
    w += lw;
    shown++;
  }
  if (shown < ngroups)
    snprintf(msg + w, sizeof msg - w, "\n  ... and %zu more", ngroups - shown);
  (void)n;
  return kh_seterr(KH_ERR_AMBIGUOUS, "%s", msg);
}

/* Split "BASE~N" (N decimal, 0..TILDE_MAX); no "~": back 0. */
static kh_err split_tilde(const char *spec, char *base, size_t cap, unsigned long *back)
{
  const char *t = strchr(spec, '~');
  size_t bl = t ? (size_t)(t - spec) : strlen(spec);
  *back = 0;
  if (bl == 0 || bl >= cap)
    return kh_seterr(KH_ERR_INVAL,
                     "'%s' is not a snapshot name ('latest', 'latest~N', an id or a unique "
                     "prefix of 4 or more hex digits, 'ID~N')",
                     spec);
  memcpy(base, spec, bl);
  base[bl] = 0;
  if (t) {
    const char *d = t + 1;
    unsigned long v = 0;
    if (!*d)
      return kh_seterr(KH_ERR_INVAL, "'%s': a number must follow '~'", spec);
    for (; *d; d++) {
      if (*d < '0' || *d > '9' || (v = v * 10 + (unsigned long)(*d - '0')) > TILDE_MAX)
        return kh_seterr(KH_ERR_INVAL, "'%s': '~' must be followed by a number up to %u",
                         spec, TILDE_MAX);
    }
    *back = v;
  }
  return KH_OK;
}

/* A full id or a unique prefix among the account's snapshot objects. */
static kh_err resolve_prefix(kh_vault *v, const char *spec, uint8_t id[32])
{
  size_t sl = strlen(spec);
  if (sl < 4 || sl > 64)
    return kh_seterr(KH_ERR_INVAL, "'%s' is not a snapshot id (4 to 64 hex digits or 'latest')",
                     spec);
  for (size_t i = 0; i < sl; i++)
    if (!((spec[i] >= '0' && spec[i] <= '9') || (spec[i] >= 'a' && spec[i] <= 'f')))
      return kh_seterr(KH_ERR_INVAL, "'%s' is not a snapshot id", spec);
  uint8_t(*ids)[32] = NULL;
  size_t n = 0, hits = 0;
  kh_err e = kh_vault_list_ids(v, "snapshots", &ids, &n);
  if (e)
    return e;
  for (size_t i = 0; i < n; i++) {
    char hex[65];
    kh_hex_encode(hex, ids[i], 32);
    if (!strncmp(hex, spec, sl)) {
      if (hits++ == 0)
        memcpy(id, ids[i], 32);
    }
  }
  free(ids);
  if (hits == 0)
    return kh_seterr(KH_ERR_NOTFOUND, "no snapshot %s", spec);
  if (hits > 1)
    return kh_seterr(KH_ERR_AMBIGUOUS, "%s matches %zu snapshots", spec, hits);
  return KH_OK;
}

kh_err kh_vault_resolve_filtered(kh_vault *v, const char *spec, const kh_snapshot_filter *f,
                                 uint8_t id[32])
{
  char base[80];
  unsigned long back = 0;
  kh_snapshot_info *list = NULL;
  size_t n = 0, *grp = NULL, *members = NULL;
  kh_err e = split_tilde(spec, base, sizeof base, &back);
  if (e)
    return e;
  bool latest = !strcmp(base, "latest");
  if (!latest && back == 0 && filter_empty(f))
    return resolve_prefix(v, base, id); /* no order needed */
  uint8_t want[32];
  char want_hex[65] = "";
  if (!latest) {
    if ((e = resolve_prefix(v, base, want)))
      return e;
    kh_hex_encode(want_hex, want, 32);
  }
  if ((e = kh_snapshots_list(v, &list, &n)))
    goto out;
  if (kh_snapshots_skipped() && (latest || back)) {
    /* the newest, or one in between, may be the damaged one: never fall
     * back silently */
    e = kh_seterr(KH_ERR_CORRUPT,
                  "%llu snapshot(s) failed authentication, so '%s' cannot be trusted; run "
                  "keyhold check, or name a snapshot by id",
                  (unsigned long long)kh_snapshots_skipped(), spec);
    goto out;
  }
  size_t at = n; /* the snapshot counted back from */
  if (!latest) {
    for (size_t i = 0; i < n && at == n; i++)
      if (!strcmp(list[i].id, want_hex))
        at = i;
    if (at == n) {
      e = kh_seterr(KH_ERR_CORRUPT, "snapshot %s failed authentication", base);
      goto out;
    }
    if (!kh_snapshot_filter_match(f, &list[at])) {
      e = kh_seterr(KH_ERR_NOTFOUND, "snapshot %.8s does not match --host/--path/--tag",
                    want_hex);
      goto out;
    }
    if (back == 0) {
      memcpy(id, want, 32);
      goto out;
    }
  }
  grp = calloc(n ? n : 1, sizeof *grp);
  members = calloc(n ? n : 1, sizeof *members);
  if (!grp || !members) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  /* the candidates: what f selects; for latest without --host, this
   * machine's snapshots when it has any */
  char me[256] = "";
  bool prefer_me = latest && (!f || !f->nhosts) && gethostname(me, sizeof me - 1) == 0;
  if (prefer_me) {
    bool any = false;
    for (size_t i = 0; i < n && !any; i++)
      any = list[i].host && !strcmp(list[i].host, me) && kh_snapshot_filter_match(f, &list[i]);
    prefer_me = any;
  }
  size_t nm = 0, ngroups = 0;
  for (size_t i = 0; i < n; i++) {
    if (!kh_snapshot_filter_match(f, &list[i]))
      continue;
    if (prefer_me && (!list[i].host || strcmp(list[i].host, me)))
      continue;
    if (!latest && !same_group(&list[i], &list[at]))
      continue;
    size_t g = 0;
    while (g < ngroups && !same_group(&list[grp[g]], &list[i]))
      g++;
    if (g == ngroups)
      grp[ngroups++] = i; /* first member stands for the group */
    members[nm++] = i;
  }
  if (nm == 0) {
    e = kh_seterr(KH_ERR_NOTFOUND, filter_empty(f) ? "there are no snapshots"
                                                   : "no snapshot matches --host/--path/--tag");
    goto out;
  }
  if (ngroups > 1) {
    e = ambiguous(list, n, grp, ngroups);
    goto out;
  }
  size_t pos = nm - 1; /* latest: the newest of the group */
  if (!latest)
    for (pos = 0; members[pos] != at; pos++)
      ;
  if (back > pos) {
    e = kh_seterr(KH_ERR_NOTFOUND, "%s: only %zu snapshot(s) of its group precede it", spec,
                  pos);
    goto out;
  }
  kh_hex_decode(id, 32, list[members[pos - back]].id, 64);
out:
  free(grp);
  free(members);
  kh_snapshots_free(list, n);
  return e;
}

kh_err kh_vault_resolve(kh_vault *v, const char *spec, uint8_t id[32])
{
  return kh_vault_resolve_filtered(v, spec, NULL, id);
}

kh_err kh_snapshot_resolve(kh_vault *v, const char *spec, const kh_snapshot_filter *f,
                           char out[KH_SNAPSHOT_ID_HEX + 1])
{
  uint8_t id[32];
  kh_err e = kh_vault_resolve_filtered(v, spec, f, id);
  if (!e)
    kh_hex_encode(out, id, 32);
  return e;
}
