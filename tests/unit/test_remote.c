/* The device's server-mode state (docs/format.md §12), the kind-4 key
 * object (§4), and the client's URL rules (include/keyhold/remote.h). */
#include "kh_test.h"
#include "keyhold/remote.h"
#include "http/http.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];

static void fill(kh_device_state *d, const char *inst)
{
  snprintf(d->url, sizeof d->url, "http://127.0.0.1:8443");
  snprintf(d->region, sizeof d->region, "eu-west");
  snprintf(d->instance, sizeof d->instance, "%s", inst);
  snprintf(d->name, sizeof d->name, "laptop one");
}

static void test_save_load(void)
{
  const char *inst = "0123456789abcdef0123456789abcdef";
  kh_device_state *d = NULL, *l = NULL, *f = NULL;
  CHECK_OK(kh_device_state_new(&d));
  fill(d, inst);
  /* ids empty before sign-up: still a valid state (enrolment saves it so) */
  CHECK_OK(kh_device_state_save(d, g_dir, false));
  CHECK_OK(kh_device_state_load(g_dir, inst, &l));
  CHECK(l && !strcmp(l->url, d->url) && !strcmp(l->name, "laptop one") && !*l->account);
  CHECK(l && !memcmp(l->sign_pk, d->sign_pk, 32) && !memcmp(l->box_pk, d->box_pk, 32));
  CHECK(l && !sodium_memcmp(l->sign_sk, d->sign_sk, 64) && !sodium_memcmp(l->box_sk, d->box_sk, 32));
  kh_device_state_free(l);
  l = NULL;
  /* a second identity on the same instance is refused, overwrite allowed */
  CHECK_ERR(kh_device_state_save(d, g_dir, false), KH_ERR_EXISTS);
  snprintf(d->account, sizeof d->account, "00112233445566778899aabbccddeeff");
  snprintf(d->device, sizeof d->device, "ffeeddccbbaa99887766554433221100");
  CHECK_OK(kh_device_state_save(d, g_dir, true));
  CHECK_OK(kh_device_state_find(g_dir, "http://127.0.0.1:8443/", &f));
  CHECK(f && !strcmp(f->account, d->account) && !strcmp(f->device, d->device));
  CHECK_ERR(kh_device_state_find(g_dir, "http://127.0.0.1:9999", &l), KH_ERR_NOTFOUND);
  CHECK(strstr(kh_errdetail(), "keyhold init") != NULL);
  /* the key file is private */
  char p[512];
  struct stat st;
  snprintf(p, sizeof p, "%s/server-%s/device.key", g_dir, inst);
  CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 96);
  /* a key file of another device is refused, not used */
  kh_device_state *o = NULL;
  CHECK_OK(kh_device_state_new(&o));
  FILE *fp = fopen(p, "wb");
  fwrite(o->sign_sk, 1, 64, fp);
  fwrite(o->box_sk, 1, 32, fp);
  fclose(fp);
  CHECK_ERR(kh_device_state_load(g_dir, inst, &l), KH_ERR_AUTH);
  CHECK(l == NULL);
  /* bad fields are refused on save */
  snprintf(o->url, sizeof o->url, "ftp://x");
  snprintf(o->region, sizeof o->region, "eu");
  snprintf(o->instance, sizeof o->instance, "%s", inst);
  snprintf(o->name, sizeof o->name, "n");
  CHECK_ERR(kh_device_state_save(o, g_dir, true), KH_ERR_INVAL);
  kh_device_state_free(o);
  kh_device_state_free(f);
  kh_device_state_free(d);
}

static void test_parse(void)
{
  kh_device_state d;
  char text[1024], zero[65], aa[65];
  memset(zero, '0', 64);
  zero[64] = 0;
  memset(aa, 'a', 64);
  aa[64] = 0;
  int n = snprintf(text, sizeof text,
                   "keyhold-device v1\nurl https://h:1\nregion r\ninstance %s\naccount -\n"
                   "device -\nname n\nsign_pk %s\nbox_pk %s\nkeycheck -\n",
                   "0123456789abcdef0123456789abcdef", zero, aa);
  CHECK_OK(kh_device_state_parse(text, (size_t)n, &d));
  CHECK(!strcmp(d.url, "https://h:1") && !*d.account && d.box_pk[0] == 0xaa);
  /* every prefix is refused (truncation), and a trailing line too */
  for (int i = 0; i < n; i++)
    CHECK_ERR(kh_device_state_parse(text, (size_t)i, &d), KH_ERR_FORMAT);
  text[n] = 'x';
  CHECK_ERR(kh_device_state_parse(text, (size_t)n + 1, &d), KH_ERR_FORMAT);
  /* an upper-case id is not an id */
  char *acc = strstr(text, "account -");
  memcpy(acc + 8, "X", 1);
  CHECK_ERR(kh_device_state_parse(text, (size_t)n, &d), KH_ERR_FORMAT);
}

static void test_wrap(void)
{
  kh_device_state *a = NULL, *b = NULL;
  uint8_t key[32], out[32], w[KH_DEVICE_WRAP_LEN];
  int cipher = 0;
  CHECK_OK(kh_device_state_new(&a));
  CHECK_OK(kh_device_state_new(&b));
  randombytes_buf(key, 32);
  CHECK_OK(kh_device_wrap_seal(a->box_pk, key, 2, w));
  CHECK_OK(kh_device_wrap_open(a, w, sizeof w, out, &cipher));
  CHECK(!memcmp(out, key, 32) && cipher == 2);
  CHECK_ERR(kh_device_wrap_open(b, w, sizeof w, out, &cipher), KH_ERR_AUTH);
  CHECK_ERR(kh_device_wrap_open(a, w, sizeof w - 1, out, &cipher), KH_ERR_FORMAT);
  w[40] ^= 1;
  CHECK_ERR(kh_device_wrap_open(a, w, sizeof w, out, &cipher), KH_ERR_AUTH);
  char c1[65], c2[65];
  kh_device_keycheck(key, c1);
  key[0] ^= 1;
  kh_device_keycheck(key, c2);
  CHECK(strlen(c1) == 64 && strcmp(c1, c2));
  kh_device_state_free(a);
  kh_device_state_free(b);
}

static void test_urls(void)
{
  kh_remote *r = NULL;
  CHECK_OK(kh_remote_new("http://127.0.0.1:1", NULL, &r));
  kh_remote_free(r);
  r = NULL;
  CHECK_OK(kh_remote_new("http://localhost:1", NULL, &r));
  kh_remote_free(r);
  r = NULL;
  CHECK_OK(kh_remote_new("http://[::1]:1", NULL, &r));
  kh_remote_free(r);
  r = NULL;
  CHECK_OK(kh_remote_new("https://backup.example:443", NULL, &r));
  kh_remote_free(r);
  r = NULL;
  /* plain http only to loopback; no path, no user info */
  CHECK_ERR(kh_remote_new("http://10.0.0.1:80", NULL, &r), KH_ERR_INVAL);
  CHECK_ERR(kh_remote_new("http://127.0.0.1.example.com:80", NULL, &r), KH_ERR_INVAL);
  CHECK_ERR(kh_remote_new("https://h/path", NULL, &r), KH_ERR_INVAL);
  CHECK_ERR(kh_remote_new("https://u@h", NULL, &r), KH_ERR_INVAL);
  CHECK_ERR(kh_remote_new("ftp://h", NULL, &r), KH_ERR_INVAL);
  CHECK(r == NULL);
}

typedef struct seen { int n; uint64_t total; char last[200]; } seen;
static int on_name(const char *name, uint64_t size, void *ctx)
{
  seen *s = ctx;
  s->n++;
  s->total += size;
  snprintf(s->last, sizeof s->last, "%s", name);
  return 0;
}

static void test_list_parse(void)
{
  char h1[65], h2[65], text[600];
  memset(h1, 'a', 64);
  h1[64] = 0;
  memset(h2, 'b', 64);
  h2[64] = 0;
  int n = snprintf(text, sizeof text, "12 data/aa/%s\n7 data/bb/%s\n", h1, h2);
  seen s = {0};
  CHECK_OK(kh_http_list_parse(text, (size_t)n, "data", on_name, &s));
  CHECK(s.n == 2 && s.total == 19 && !strncmp(s.last, "bb/bbbb", 7));
  /* names are relative to the kind, and only of that kind */
  memset(&s, 0, sizeof s);
  CHECK_ERR(kh_http_list_parse(text, (size_t)n, "index", on_name, &s), KH_ERR_FORMAT);
  /* a truncated response (no final newline), a leading zero, a huge size */
  CHECK_ERR(kh_http_list_parse(text, (size_t)n - 1, "data", on_name, &s), KH_ERR_FORMAT);
  n = snprintf(text, sizeof text, "012 data/aa/%s\n", h1);
  CHECK_ERR(kh_http_list_parse(text, (size_t)n, "data", on_name, &s), KH_ERR_FORMAT);
  n = snprintf(text, sizeof text, "99999999999999999999 data/aa/%s\n", h1);
  CHECK_ERR(kh_http_list_parse(text, (size_t)n, "data", on_name, &s), KH_ERR_FORMAT);
  /* a pack under the wrong fan-out directory is not a pack name */
  n = snprintf(text, sizeof text, "1 data/ab/%s\n", h1);
  CHECK_ERR(kh_http_list_parse(text, (size_t)n, "data", on_name, &s), KH_ERR_FORMAT);
  CHECK_OK(kh_http_list_parse("", 0, "keys", on_name, &s));
}

int main(void)
{
  snprintf(g_dir, sizeof g_dir, "/tmp/kh-test-remote-%d", (int)getpid());
  RUN(test_save_load);
  RUN(test_parse);
  RUN(test_wrap);
  RUN(test_urls);
  RUN(test_list_parse);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", g_dir);
  return kh_test_done("test_remote");
}
