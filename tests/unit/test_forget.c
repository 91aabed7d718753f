/* The keep policy (kh_forget_plan, docs/cli.md "forget"): fixed snapshot
 * lists, times given explicitly, TZ=UTC. */
#include "kh_test.h"
#include "keyhold/vault.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S 1000000000LL
#define H (3600 * S)
#define D (24 * H)
/* 2026-11-28 12:00:00 UTC, a Saturday */
#define NOW (1795867200LL * S)

static char *host_a = "a", *host_b = "b";
static char *p_docs[] = {"/docs"}, *p_photos[] = {"/photos"};
static char *t_imp[] = {"important"}, *t_x[] = {"x"};

static void snap(kh_snapshot_info *s, int id, char *host, char **paths, int64_t t)
{
  memset(s, 0, sizeof *s);
  snprintf(s->id, sizeof s->id, "%02d", id);
  s->host = host;
  s->paths = paths;
  s->npaths = 1;
  s->time_ns = t;
  s->order_ns = t;
}

static kh_keep_policy pol(unsigned group_by)
{
  kh_keep_policy p;
  memset(&p, 0, sizeof p);
  p.group_by = group_by;
  return p;
}

static bool has_reason(const kh_forget_decision *d, const char *r)
{
  for (size_t i = 0; i < d->nreasons; i++)
    if (strcmp(d->reasons[i], r) == 0)
      return true;
  return false;
}

/* two folders each backed up once: --keep-last 1 keeps both */
static void test_last_per_folder(void)
{
  kh_snapshot_info s[5];
  kh_forget_decision d[5];
  size_t ng = 0;
  snap(&s[0], 0, host_a, p_docs, NOW - 3 * D);   /* the only /docs */
  snap(&s[1], 1, host_a, p_photos, NOW - 2 * D);
  snap(&s[2], 2, host_a, p_photos, NOW - 1 * D);
  snap(&s[3], 3, host_a, p_photos, NOW);
  snap(&s[4], 4, host_b, p_photos, NOW + H); /* another host */
  kh_keep_policy p = pol(KH_GROUP_HOST | KH_GROUP_PATHS);
  p.last = 1;
  CHECK_OK(kh_forget_plan(s, 5, &p, d, &ng));
  CHECK_EQ(ng, 3);
  CHECK(d[0].keep && has_reason(&d[0], "last 1") && d[0].nreasons == 1);
  CHECK(!d[1].keep && d[1].nreasons == 0);
  CHECK(!d[2].keep);
  CHECK(d[3].keep && has_reason(&d[3], "last 1"));
  CHECK(d[4].keep);
  CHECK_EQ(d[1].group, d[3].group);
  CHECK(d[0].group != d[3].group && d[4].group != d[3].group && d[0].group != d[4].group);
  /* group-by paths only: the two hosts' /photos are one group */
  p.group_by = KH_GROUP_PATHS;
  CHECK_OK(kh_forget_plan(s, 5, &p, d, &ng));
  CHECK_EQ(ng, 2);
  CHECK(d[0].keep && !d[3].keep && d[4].keep);
  /* group-by '': one group, the newest of all */
  p.group_by = 0;
  p.last = 2;
  CHECK_OK(kh_forget_plan(s, 5, &p, d, &ng));
  CHECK_EQ(ng, 1);
  CHECK(!d[0].keep && !d[1].keep && !d[2].keep && d[3].keep && d[4].keep);
  CHECK(has_reason(&d[4], "last 1") && has_reason(&d[3], "last 2"));
}

/* newest snapshot of each day, in list (snapshot) order */
static void test_daily(void)
{
  kh_snapshot_info s[6];
  kh_forget_decision d[6];
  size_t ng = 0;
  snap(&s[0], 0, host_a, p_docs, NOW - 2 * D);       /* 11-26 */
  snap(&s[1], 1, host_a, p_docs, NOW - D - 2 * H);   /* 11-27 10:00 */
  snap(&s[2], 2, host_a, p_docs, NOW - D);           /* 11-27 12:00 */
  snap(&s[3], 3, host_a, p_docs, NOW - H);           /* 11-28 11:00 */
  snap(&s[4], 4, host_a, p_docs, NOW);               /* 11-28 12:00 */
  /* ordered last (newest) by the library although its order time is
   * earlier on the same day: the list order decides, not the clock */
  snap(&s[5], 5, host_a, p_docs, NOW - 3 * H);
  kh_keep_policy p = pol(KH_GROUP_HOST | KH_GROUP_PATHS);
  p.daily = 2;
  CHECK_OK(kh_forget_plan(s, 6, &p, d, &ng));
  CHECK_EQ(ng, 1);
  CHECK(d[5].keep && has_reason(&d[5], "daily 2026-11-28"));
  CHECK(!d[4].keep && !d[3].keep);
  CHECK(d[2].keep && has_reason(&d[2], "daily 2026-11-27"));
  CHECK(!d[1].keep && !d[0].keep);
  /* more days than there are: every day's newest */
  p.daily = 10;
  CHECK_OK(kh_forget_plan(s, 6, &p, d, &ng));
  CHECK(d[0].keep && has_reason(&d[0], "daily 2026-11-26") && !d[1].keep);
  /* weekly / monthly / yearly / hourly buckets */
  p = pol(0);
  p.weekly = 1;
  p.monthly = 1;
  p.yearly = 1;
  p.hourly = 2;
  CHECK_OK(kh_forget_plan(s, 6, &p, d, &ng));
  CHECK(has_reason(&d[5], "weekly 2026-W48") && has_reason(&d[5], "monthly 2026-11") &&
        has_reason(&d[5], "yearly 2026") && has_reason(&d[5], "hourly 2026-11-28 09:00"));
  CHECK(d[4].keep && d[4].nreasons == 1 && has_reason(&d[4], "hourly 2026-11-28 12:00"));
  CHECK(!d[3].keep && !d[2].keep);
}

static void test_within(void)
{
  kh_snapshot_info s[4];
  kh_forget_decision d[4];
  size_t ng = 0;
  snap(&s[0], 0, host_a, p_docs, NOW - 40 * D);
  snap(&s[1], 1, host_a, p_docs, NOW - 7 * D - H);
  snap(&s[2], 2, host_a, p_docs, NOW - 7 * D + H);
  snap(&s[3], 3, host_a, p_docs, NOW - 30 * D); /* relative to the newest: NOW - 7d + 1h */
  /* the newest of the group is s[3] in list order: the span is from its time */
  kh_keep_policy p = pol(KH_GROUP_HOST);
  p.within_days = 7;
  CHECK_OK(kh_forget_plan(s, 4, &p, d, &ng));
  CHECK(d[3].keep && has_reason(&d[3], "within 7d"));
  CHECK(!d[0].keep); /* 40 days before, 10 before the newest */
  CHECK(d[1].keep && d[2].keep); /* later than 7 days before the newest */
  /* 1m2d3h back from the newest, 2026-11-28 12:00 */
  snap(&s[0], 0, host_a, p_docs, NOW - 40 * D); /* 10-19 */
  snap(&s[1], 1, host_a, p_docs, NOW - 33 * D); /* 10-26 */
  snap(&s[2], 2, host_a, p_docs, NOW - 31 * D); /* 10-28 */
  snap(&s[3], 3, host_a, p_docs, NOW);
  p.within_days = 2;
  p.within_months = 1;
  p.within_hours = 3;
  CHECK_OK(kh_forget_plan(s, 4, &p, d, &ng));
  /* limit: 11-28 12:00 - 1m = 10-28 12:00, - 2d = 10-26 12:00, - 3h = 10-26 09:00 */
  CHECK(d[3].keep && has_reason(&d[3], "within 1m2d3h"));
  CHECK(d[2].keep && d[1].keep && !d[0].keep);
}

static void test_keep_tag(void)
{
  kh_snapshot_info s[3];
  kh_forget_decision d[3];
  size_t ng = 0;
  snap(&s[0], 0, host_a, p_docs, NOW - 2 * D);
  s[0].tags = t_imp;
  s[0].ntags = 1;
  snap(&s[1], 1, host_a, p_docs, NOW - D);
  s[1].tags = t_x;
  s[1].ntags = 1;
  snap(&s[2], 2, host_a, p_docs, NOW);
  const char *keep[] = {"important"};
  kh_keep_policy p = pol(KH_GROUP_HOST | KH_GROUP_PATHS);
  p.tags = keep;
  p.ntags = 1;
  p.last = 1;
  CHECK_OK(kh_forget_plan(s, 3, &p, d, &ng));
  CHECK_EQ(ng, 1);
  CHECK(d[0].keep && d[0].nreasons == 1 && has_reason(&d[0], "tag important"));
  CHECK(!d[1].keep);
  CHECK(d[2].keep && has_reason(&d[2], "last 1"));
  /* grouping by tags splits them */
  p.group_by = KH_GROUP_TAGS;
  p.ntags = 0;
  CHECK_OK(kh_forget_plan(s, 3, &p, d, &ng));
  CHECK_EQ(ng, 3);
  CHECK(d[0].keep && d[1].keep && d[2].keep);
}

static void test_empty_policy(void)
{
  kh_snapshot_info s[1];
  kh_forget_decision d[1];
  size_t ng = 0;
  snap(&s[0], 0, host_a, p_docs, NOW);
  kh_keep_policy p = pol(KH_GROUP_HOST);
  CHECK_ERR(kh_forget_plan(s, 1, &p, d, &ng), KH_ERR_INVAL);
  p.last = 1;
  CHECK_OK(kh_forget_plan(s, 0, &p, d, &ng));
  CHECK_EQ(ng, 0);
}

int main(void)
{
  setenv("TZ", "UTC", 1);
  tzset();
  RUN(test_last_per_folder);
  RUN(test_daily);
  RUN(test_within);
  RUN(test_keep_tag);
  RUN(test_empty_policy);
  return kh_test_done("test_forget");
}
