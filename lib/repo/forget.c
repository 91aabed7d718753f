/* forget by keep policy: group the snapshots, apply the keep rules to each
 * group separately (docs/cli.md "forget"), remove what no rule keeps. */
#include "repo/vault_internal.h"
#include "keyhold/proto.h"
#include "common/err.h"
#include "common/hex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool has_str(char *const *v, size_t n, const char *s)
{
  for (size_t i = 0; i < n; i++)
    if (v[i] && strcmp(v[i], s) == 0)
      return true;
  return false;
}

static bool same_group(const kh_snapshot_info *a, const kh_snapshot_info *b, unsigned by)
{
  if ((by & KH_GROUP_HOST) && strcmp(a->host ? a->host : "", b->host ? b->host : ""))
    return false;
  if ((by & KH_GROUP_PATHS) && !kh_snap_same_set(a->paths, a->npaths, b->paths, b->npaths))
    return false;
  if ((by & KH_GROUP_TAGS) && !kh_snap_same_set(a->tags, a->ntags, b->tags, b->ntags))
    return false;
  return true;
}

static bool policy_empty(const kh_keep_policy *p)
{
  return !p->last && !p->hourly && !p->daily && !p->weekly && !p->monthly && !p->yearly &&
         !p->within_years && !p->within_months && !p->within_days && !p->within_hours &&
         !p->ntags;
}

static void add_reason(kh_forget_decision *d, const char *fmt, const char *a, const char *b)
{
  if (d->nreasons >= KH_KEEP_NRULES)
    return;
  snprintf(d->reasons[d->nreasons], KH_KEEP_REASON_MAX, fmt, a, b);
  d->nreasons++;
  d->keep = true;
}

enum { R_HOURLY, R_DAILY, R_WEEKLY, R_MONTHLY, R_YEARLY, R_NPERIODS };

static const char *const period_name[R_NPERIODS] = {"hourly", "daily", "weekly", "monthly",
                                                    "yearly"};
static const char *const period_fmt[R_NPERIODS] = {"%Y-%m-%d %H:00", "%Y-%m-%d", "%G-W%V",
                                                   "%Y-%m", "%Y"};

static void local_tm(int64_t ns, struct tm *tm)
{
  int64_t s = ns / 1000000000;
  if (ns % 1000000000 < 0)
    s--;
  time_t t = (time_t)s;
  memset(tm, 0, sizeof *tm);
  localtime_r(&t, tm);
}

/* The first instant not within the span back from newest_ns. */
static int64_t within_limit(const kh_keep_policy *p, int64_t newest_ns)
{
  struct tm tm;
  local_tm(newest_ns, &tm);
  int64_t frac = newest_ns % 1000000000;
  if (frac < 0)
    frac += 1000000000;
  tm.tm_year -= (int)(p->within_years > 100000 ? 100000 : p->within_years);
  tm.tm_mon -= (int)(p->within_months > 1200000 ? 1200000 : p->within_months);
  tm.tm_mday -= (int)(p->within_days > 36500000 ? 36500000 : p->within_days);
  tm.tm_isdst = -1;
  time_t t = mktime(&tm);
  if (t == (time_t)-1)
    return INT64_MIN;
  int64_t s = (int64_t)t - (int64_t)p->within_hours * 3600;
  if (s < INT64_MIN / 1000000000 + 1)
    return INT64_MIN;
  return s * 1000000000 + frac;
}

kh_err kh_forget_plan(const kh_snapshot_info *list, size_t n, const kh_keep_policy *p,
                      kh_forget_decision *out, size_t *ngroups)
{
  if (policy_empty(p))
    return kh_seterr(KH_ERR_INVAL, "a policy must keep something (give a --keep rule)");
  const size_t NONE = (size_t)-1;
  size_t ng = 0;
  for (size_t i = 0; i < n; i++) {
    memset(&out[i], 0, sizeof out[i]);
    out[i].group = NONE;
    for (size_t j = 0; j < i && out[i].group == NONE; j++)
      if (same_group(&list[i], &list[j], p->group_by))
        out[i].group = out[j].group;
    if (out[i].group == NONE)
      out[i].group = ng++;
  }
  char within[64] = "";
  {
    size_t w = 0;
    const uint32_t val[4] = {p->within_years, p->within_months, p->within_days,
                             p->within_hours};
    const char unit[4] = {'y', 'm', 'd', 'h'};
    for (int k = 0; k < 4; k++)
      if (val[k] && w < sizeof within)
        w += (size_t)snprintf(within + w, sizeof within - w, "%u%c", (unsigned)val[k],
                              unit[k]);
  }
  const uint32_t counts[R_NPERIODS] = {p->hourly, p->daily, p->weekly, p->monthly, p->yearly};
  for (size_t g = 0; g < ng; g++) {
    uint32_t left[R_NPERIODS];
    char last[R_NPERIODS][32];
    memcpy(left, counts, sizeof left);
    memset(last, 0, sizeof last);
    uint32_t rank = 0;
    bool have_limit = false;
    int64_t limit = 0;
    for (size_t k = 0; k < n; k++) { /* newest first */
      size_t i = n - 1 - k;
      if (out[i].group != g)
        continue;
      kh_forget_decision *d = &out[i];
      const kh_snapshot_info *s = &list[i];
      rank++;
      if (rank <= p->last) {
        char r[16];
        snprintf(r, sizeof r, "%u", (unsigned)rank);
        add_reason(d, "last %s%s", r, "");
      }
      struct tm tm;
      local_tm(s->order_ns, &tm);
      for (int r = 0; r < R_NPERIODS; r++) {
        if (!left[r])
          continue;
        char b[32];
        if (strftime(b, sizeof b, period_fmt[r], &tm) == 0)
          continue;
        if (strcmp(b, last[r]) == 0)
          continue;
        memcpy(last[r], b, sizeof b);
        left[r]--;
        add_reason(d, "%s %s", period_name[r], b);
      }
      if (within[0]) {
        if (!have_limit) { /* the newest of the group sets the span */
          limit = within_limit(p, s->order_ns);
          have_limit = true;
        }
        if (s->order_ns > limit)
          add_reason(d, "within %s%s", within, "");
      }
      for (size_t t = 0; t < p->ntags; t++) {
        if (p->tags[t] && has_str(s->tags, s->ntags, p->tags[t])) {
          add_reason(d, "tag %s%s", p->tags[t], "");
          break;
        }
      }
    }
  }
  *ngroups = ng;
  return KH_OK;
}

kh_err kh_forget_policy(kh_vault *v, const kh_keep_policy *p, bool dry_run, kh_forget_fn fn,
                        void *ctx)
{
  kh_snapshot_info *list = NULL;
  kh_forget_decision *plan = NULL;
  size_t n = 0, ngroups = 0;
  kh_err e = KH_OK;
  if (policy_empty(p)) {
    e = kh_seterr(KH_ERR_INVAL, "a policy must keep something (give a --keep rule)");
    goto out;
  }
  if (!dry_run && (e = kh_vault_require(v, KH_CAP_PRUNE | KH_CAP_READ)))
    goto out;
  e = kh_snapshots_select(v, p->filter, &list, &n); /* the rest is left alone */
  if (e)
    goto out;
  if (kh_snapshots_skipped()) {
    e = kh_seterr(KH_ERR_CORRUPT,
                  "%llu snapshots could not be read; run keyhold check before forgetting",
                  (unsigned long long)kh_snapshots_skipped());
    goto out;
  }
  plan = calloc(n ? n : 1, sizeof *plan);
  if (!plan) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  e = kh_forget_plan(list, n, p, plan, &ngroups);
  for (size_t i = 0; i < n && !e && !dry_run; i++) {
    if (plan[i].keep)
      continue;
    uint8_t id[32];
    char name[256];
    kh_hex_decode(id, 32, list[i].id, 64);
    kh_vault_objname(v, name, sizeof name, "snapshots", id, 32);
    e = kh_provider_del(v->prov, name);
  }
  if (!e && fn)
    fn(list, plan, n, ngroups, ctx);
out:
  free(plan);
  kh_snapshots_free(list, n);
  return e;
}
