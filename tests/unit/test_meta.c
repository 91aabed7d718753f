/* lib/meta (include/keyhold/meta.h): the SQLite metadata store of a region
 * server: sign-up with and without invitations, quotas and usage, devices,
 * enrolments and their limits, and a second handle (keyholdd admin) on the
 * same file while the first is open. */
#include <sodium.h>
#include <stdint.h>
#include <unistd.h>
#include "keyhold/meta.h"
#include "keyhold/proto.h"
#include "kh_test.h"

#define ACC1 "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
#define ACC2 "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2"
#define DEV1 "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1"
#define DEV2 "d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2"
#define DEV3 "d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3"

static char g_path[256];
#define RUN_M(fn) do { fprintf(stderr, "-- %s\n", #fn); fn(m); } while (0)

static kh_meta_device dev(const char *id, const char *acc, const char *name, unsigned caps)
{
  kh_meta_device d;
  memset(&d, 0, sizeof d);
  snprintf(d.id, sizeof d.id, "%s", id);
  snprintf(d.account, sizeof d.account, "%s", acc);
  snprintf(d.name, sizeof d.name, "%s", name);
  memset(d.sign_pk, id[1], 32);
  memset(d.box_pk, id[1] + 1, 32);
  d.caps = caps;
  d.enrolled = 1000;
  return d;
}

static int count_acc(const kh_meta_account *a, void *ctx) { (*(int *)ctx)++; return 0; }
static int count_dev(const kh_meta_device *d, void *ctx) { (*(int *)ctx)++; return 0; }
static int count_enr(const kh_meta_enrolment *e, void *ctx) { (*(int *)ctx)++; return 0; }

static void test_signup(kh_meta *m)
{
  uint8_t h[32], h2[32], h3[32];
  kh_meta_account a;
  kh_meta_device d = dev(DEV1, ACC1, "laptop", KH_CAP_ALL), got;
  memset(h, 1, 32);
  memset(h2, 2, 32);
  memset(h3, 3, 32);
  CHECK_OK(kh_meta_invite_add(m, h, 100, 0));
  CHECK_OK(kh_meta_invite_add(m, h2, 100, 150));
  CHECK_ERR(kh_meta_invite_add(m, h, 100, 0), KH_ERR_EXISTS);
  /* unknown and expired invitations: refused, nothing created */
  CHECK_ERR(kh_meta_signup(m, &d, h3, 200, KH_META_UNLIMITED), KH_ERR_DENIED);
  CHECK_ERR(kh_meta_signup(m, &d, h2, 200, KH_META_UNLIMITED), KH_ERR_DENIED);
  CHECK_ERR(kh_meta_account_get(m, ACC1, &a), KH_ERR_NOTFOUND);
  CHECK_ERR(kh_meta_device_get(m, DEV1, &got), KH_ERR_NOTFOUND);
  CHECK_OK(kh_meta_signup(m, &d, h, 200, 1000));
  CHECK_OK(kh_meta_account_get(m, ACC1, &a));
  CHECK(strcmp(a.id, ACC1) == 0);
  CHECK_EQ(a.created, 200);
  CHECK_EQ(a.quota_bytes, 1000);
  CHECK_EQ(a.used_bytes, 0);
  CHECK_EQ(a.devices, 1);
  CHECK_OK(kh_meta_device_get(m, DEV1, &got));
  CHECK(strcmp(got.name, "laptop") == 0 && strcmp(got.account, ACC1) == 0);
  CHECK_EQ(got.caps, KH_CAP_ALL);
  CHECK_MEM(got.sign_pk, d.sign_pk, 32);
  CHECK_MEM(got.box_pk, d.box_pk, 32);
  CHECK_EQ(got.revoked, 0);
  /* spent: refused, the second account is not created */
  kh_meta_device d2 = dev(DEV2, ACC2, "phone", KH_CAP_ALL);
  CHECK_ERR(kh_meta_signup(m, &d2, h, 300, KH_META_UNLIMITED), KH_ERR_DENIED);
  CHECK_ERR(kh_meta_account_get(m, ACC2, &a), KH_ERR_NOTFOUND);
  /* open sign-up; a taken device id fails the whole sign-up */
  kh_meta_device dup = dev(DEV1, ACC2, "dup", KH_CAP_ALL);
  CHECK_ERR(kh_meta_signup(m, &dup, NULL, 300, KH_META_UNLIMITED), KH_ERR_EXISTS);
  CHECK_ERR(kh_meta_account_get(m, ACC2, &a), KH_ERR_NOTFOUND);
  CHECK_OK(kh_meta_signup(m, &d2, NULL, 300, KH_META_UNLIMITED));
  CHECK_OK(kh_meta_account_get(m, ACC2, &a));
  CHECK_EQ(a.quota_bytes, KH_META_UNLIMITED);
  int n = 0;
  CHECK_OK(kh_meta_account_list(m, count_acc, &n));
  CHECK_EQ(n, 2);
  /* bad arguments */
  kh_meta_device bad = dev(DEV3, ACC1, "", 1);
  CHECK_ERR(kh_meta_device_add(m, &bad), KH_ERR_INVAL);
  bad = dev("D3D3D3D3D3D3D3D3D3D3D3D3D3D3D3D3", ACC1, "x", 1);
  CHECK_ERR(kh_meta_device_add(m, &bad), KH_ERR_INVAL);
  bad = dev(DEV3, ACC1, "tab\there", 1);
  CHECK_ERR(kh_meta_device_add(m, &bad), KH_ERR_INVAL);
  CHECK_ERR(kh_meta_account_get(m, "a1", &a), KH_ERR_INVAL);
}

static void test_usage(kh_meta *m)
{
  kh_meta_account a;
  CHECK_OK(kh_meta_usage_add(m, ACC1, 600, true));
  CHECK_OK(kh_meta_usage_add(m, ACC1, 400, true)); /* exactly the quota */
  CHECK_ERR(kh_meta_usage_add(m, ACC1, 1, true), KH_ERR_NOSPACE);
  CHECK_OK(kh_meta_account_get(m, ACC1, &a));
  CHECK_EQ(a.used_bytes, 1000);
  CHECK_OK(kh_meta_usage_add(m, ACC1, 1, false)); /* unchecked (a replacement) */
  CHECK_OK(kh_meta_usage_add(m, ACC1, -301, true));
  CHECK_OK(kh_meta_account_get(m, ACC1, &a));
  CHECK_EQ(a.used_bytes, 700);
  CHECK_OK(kh_meta_usage_add(m, ACC1, -5000, true)); /* never below 0 */
  CHECK_OK(kh_meta_account_get(m, ACC1, &a));
  CHECK_EQ(a.used_bytes, 0);
  CHECK_OK(kh_meta_quota_set(m, ACC1, 10));
  CHECK_ERR(kh_meta_usage_add(m, ACC1, 11, true), KH_ERR_NOSPACE);
  CHECK_OK(kh_meta_quota_set(m, ACC1, KH_META_UNLIMITED));
  CHECK_OK(kh_meta_usage_add(m, ACC1, (int64_t)1 << 50, true));
  CHECK_OK(kh_meta_usage_add(m, ACC1, -((int64_t)1 << 50), true));
  CHECK_ERR(kh_meta_usage_add(m, "ffffffffffffffffffffffffffffffff", 1, true), KH_ERR_NOTFOUND);
  CHECK_OK(kh_meta_usage_set(m, ACC1, 12345));
  CHECK_OK(kh_meta_account_get(m, ACC1, &a));
  CHECK_EQ(a.used_bytes, 12345);
  CHECK_OK(kh_meta_usage_set(m, ACC1, 0));
  CHECK_ERR(kh_meta_usage_set(m, "ffffffffffffffffffffffffffffffff", 1), KH_ERR_NOTFOUND);
  CHECK_ERR(kh_meta_quota_set(m, "ffffffffffffffffffffffffffffffff", 1), KH_ERR_NOTFOUND);
}

static void test_devices(kh_meta *m)
{
  kh_meta_device d = dev(DEV3, ACC1, "backup box", KH_CAP_BACKUP), got;
  kh_meta_account a;
  CHECK_OK(kh_meta_device_add(m, &d));
  CHECK_ERR(kh_meta_device_add(m, &d), KH_ERR_EXISTS);
  kh_meta_device orphan = dev("e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0",
                              "ffffffffffffffffffffffffffffffff", "x", 1);
  CHECK_ERR(kh_meta_device_add(m, &orphan), KH_ERR_NOTFOUND);
  int n = 0;
  CHECK_OK(kh_meta_device_list(m, ACC1, count_dev, &n));
  CHECK_EQ(n, 2);
  CHECK_OK(kh_meta_account_get(m, ACC1, &a));
  CHECK_EQ(a.devices, 2);
  CHECK_ERR(kh_meta_device_revoke(m, ACC2, DEV3, 500), KH_ERR_NOTFOUND); /* not ACC2's */
  CHECK_OK(kh_meta_device_revoke(m, ACC1, DEV3, 500));
  CHECK_ERR(kh_meta_device_revoke(m, ACC1, DEV3, 600), KH_ERR_STATE);
  CHECK_OK(kh_meta_device_get(m, DEV3, &got));
  CHECK_EQ(got.revoked, 500);
  CHECK_EQ(got.caps, KH_CAP_BACKUP);
  CHECK_OK(kh_meta_account_get(m, ACC1, &a));
  CHECK_EQ(a.devices, 1);
}

static kh_meta_enrolment *enrol(const char *id, const char *bucket, int64_t now)
{
  static kh_meta_enrolment e;
  memset(&e, 0, sizeof e);
  snprintf(e.id, sizeof e.id, "%s", id);
  snprintf(e.bucket, sizeof e.bucket, "%s", bucket);
  snprintf(e.name, sizeof e.name, "new %s", bucket);
  memset(e.sign_pk, 5, 32);
  memset(e.box_pk, 6, 32);
  memset(e.salt, 7, 16);
  memset(e.tag, 8, 32);
  e.created = now;
  e.expires = now + 600;
  return &e;
}

static void test_enrolments(kh_meta *m)
{
  char id[33];
  kh_meta_enrolment *got = malloc(sizeof *got), ap;
  int n;
  /* 16 per bucket */
  for (int i = 0; i < KH_META_ENROL_BUCKET_MAX; i++) {
    snprintf(id, sizeof id, "%032x", i + 1);
    CHECK_OK(kh_meta_enrol_add(m, enrol(id, "AB", 1000 + i), 1000));
  }
  CHECK_ERR(kh_meta_enrol_add(m, enrol("000000000000000000000000000000ff", "AB", 1000), 1000),
            KH_ERR_NOSPACE);
  CHECK_OK(kh_meta_enrol_add(m, enrol("000000000000000000000000000000fe", "CD", 1990), 1000));
  CHECK_ERR(kh_meta_enrol_add(m, enrol("000000000000000000000000000000fe", "EF", 1000), 1000),
            KH_ERR_EXISTS);
  n = 0;
  CHECK_OK(kh_meta_enrol_list(m, "AB", 1000, count_enr, &n));
  CHECK_EQ(n, 16);
  /* expired ones no longer count nor list */
  n = 0;
  CHECK_OK(kh_meta_enrol_list(m, "AB", 2000, count_enr, &n));
  CHECK_EQ(n, 0);
  CHECK_OK(kh_meta_enrol_add(m, enrol("000000000000000000000000000000ff", "AB", 2000), 2000));
  CHECK_OK(kh_meta_enrol_get(m, "00000000000000000000000000000001", 2000, got));
  CHECK_EQ(got->state, KH_ENROL_EXPIRED);
  CHECK_OK(kh_meta_enrol_get(m, "000000000000000000000000000000ff", 2000, got));
  CHECK_EQ(got->state, KH_ENROL_PENDING);
  CHECK(strcmp(got->bucket, "AB") == 0 && strcmp(got->name, "new AB") == 0);
  CHECK_EQ(got->expires, 2600);
  /* approve: the device appears in the account with the enrolment's keys */
  memset(&ap, 0, sizeof ap);
  snprintf(ap.account, sizeof ap.account, "%s", ACC1);
  snprintf(ap.device, sizeof ap.device, "%s", "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0");
  snprintf(ap.approver, sizeof ap.approver, "%s", DEV1);
  ap.caps = KH_CAP_READ;
  memset(ap.wrap, 9, 81);
  ap.wrap_len = 81;
  memset(ap.wrap_tag, 10, 32);
  CHECK_ERR(kh_meta_enrol_approve(m, "00000000000000000000000000000001", &ap, 2000), KH_ERR_STATE);
  CHECK_OK(kh_meta_enrol_approve(m, "000000000000000000000000000000ff", &ap, 2001));
  CHECK_ERR(kh_meta_enrol_approve(m, "000000000000000000000000000000ff", &ap, 2002), KH_ERR_EXISTS);
  CHECK_ERR(kh_meta_enrol_refuse(m, "000000000000000000000000000000ff", 2002), KH_ERR_EXISTS);
  CHECK_OK(kh_meta_enrol_get(m, "000000000000000000000000000000ff", 5000, got));
  CHECK_EQ(got->state, KH_ENROL_APPROVED); /* decided: never "expired" */
  CHECK(strcmp(got->account, ACC1) == 0 && strcmp(got->device, ap.device) == 0);
  CHECK_EQ(got->wrap_len, 81);
  CHECK_MEM(got->wrap, ap.wrap, 81);
  CHECK_MEM(got->wrap_tag, ap.wrap_tag, 32);
  CHECK_EQ(got->caps, KH_CAP_READ);
  kh_meta_device d;
  CHECK_OK(kh_meta_device_get(m, ap.device, &d));
  CHECK_EQ(d.caps, KH_CAP_READ);
  CHECK_EQ(d.enrolled, 2001);
  CHECK(strcmp(d.name, "new AB") == 0);
  CHECK_MEM(d.sign_pk, got->sign_pk, 32);
  /* approving into a missing account changes nothing */
  snprintf(ap.account, sizeof ap.account, "%s", "ffffffffffffffffffffffffffffffff");
  snprintf(ap.device, sizeof ap.device, "%s", "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1");
  CHECK_ERR(kh_meta_enrol_approve(m, "000000000000000000000000000000fe", &ap, 2001),
            KH_ERR_NOTFOUND);
  CHECK_OK(kh_meta_enrol_get(m, "000000000000000000000000000000fe", 2001, got));
  CHECK_EQ(got->state, KH_ENROL_PENDING);
  CHECK_OK(kh_meta_enrol_refuse(m, "000000000000000000000000000000fe", 2001));
  CHECK_OK(kh_meta_enrol_get(m, "000000000000000000000000000000fe", 2001, got));
  CHECK_EQ(got->state, KH_ENROL_REFUSED);
  CHECK_ERR(kh_meta_enrol_get(m, "0000000000000000000000000000abcd", 2001, got), KH_ERR_NOTFOUND);
  /* purge */
  CHECK_OK(kh_meta_enrol_purge(m, 100000));
  CHECK_ERR(kh_meta_enrol_get(m, "000000000000000000000000000000ff", 2001, got), KH_ERR_NOTFOUND);
  free(got);
}

/* keyholdd admin opens the store while the server holds it */
static void test_second_handle(kh_meta *m)
{
  kh_meta *m2 = NULL;
  kh_meta_account a;
  CHECK_OK(kh_meta_open_sqlite(g_path, &m2));
  if (!m2)
    return;
  CHECK_OK(kh_meta_quota_set(m2, ACC2, 4242));
  CHECK_OK(kh_meta_account_get(m, ACC2, &a));
  CHECK_EQ(a.quota_bytes, 4242);
  uint8_t h[32];
  memset(h, 9, 32);
  CHECK_OK(kh_meta_invite_add(m2, h, 1, 0));
  kh_meta_free(m2);
}

int main(void)
{
  if (sodium_init() < 0)
    return 1;
  char dir[] = "/tmp/kh_test_meta.XXXXXX";
  if (!mkdtemp(dir))
    return 1;
  snprintf(g_path, sizeof g_path, "%s/meta.db", dir);
  kh_meta *m = NULL;
  CHECK_OK(kh_meta_open_sqlite(g_path, &m));
  if (m) {
    RUN_M(test_signup);
    RUN_M(test_usage);
    RUN_M(test_devices);
    RUN_M(test_enrolments);
    RUN_M(test_second_handle);
    kh_meta_free(m);
  }
  /* reopening keeps everything */
  CHECK_OK(kh_meta_open_sqlite(g_path, &m));
  kh_meta_account a;
  if (m)
    CHECK_OK(kh_meta_account_get(m, ACC1, &a));
  kh_meta_free(m);
  kh_meta_free(NULL);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    return 1;
  return kh_test_done("test_meta");
}
