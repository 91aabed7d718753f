/* Root-key custody, PKCS#11 backend, against a real SoftHSM2 token in a
 * temporary directory.  SoftHSM2 missing is a FAILURE (make check installs
 * the softhsm2 package), never a skip. */
#include "kms/rootkey.h"
#include "kms/pkcs11/kh_pkcs11.h"
#include "common/fsutil.h"
#include "crypto/crypto.h"
#include "kh_test.h"
#include "softhsm_fixture.h"

#include <dlfcn.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


static char tmpdir[256];
static const char *module;
static kh_secret *pin, *wrong_pin;
static const uint8_t account_key[32] = "fedcba9876543210fedcba987654321";
static const uint8_t ad1[] = "keyhold/1\0local\0alice\0account-key";
static const uint8_t ad2[] = "keyhold/1\0local\0bob\0account-key";

static bool setup_token(void) { return kh_softhsm_token(tmpdir, "kh-test"); }

static bool all_zero(const uint8_t *p, size_t n)
{
  uint8_t acc = 0;
  for (size_t i = 0; i < n; i++)
    acc |= p[i];
  return acc == 0;
}

static int tamper_count(kh_rootkey *k, kh_buf *blob)
{
  int bad = 0;
  uint8_t out[32];
  for (size_t i = 0; i < blob->len; i++) {
    for (int bit = 0; bit < 8; bit += 7) { /* lowest and highest bit of each byte */
      blob->data[i] ^= (uint8_t)(1u << bit);
      memset(out, 0xAA, 32);
      kh_err e = kh_rootkey_unwrap(k, blob->data, blob->len, ad1, sizeof ad1, out);
      if (e != KH_ERR_AUTH || !all_zero(out, 32)) {
        fprintf(stderr, "flip byte %zu bit %d: %d\n", i, bit, e);
        bad++;
      }
      blob->data[i] ^= (uint8_t)(1u << bit);
    }
  }
  for (size_t n = 0; n < blob->len; n++) {
    memset(out, 0xAA, 32);
    if (kh_rootkey_unwrap(k, blob->data, n, ad1, sizeof ad1, out) != KH_ERR_AUTH ||
        !all_zero(out, 32))
      bad++;
  }
  return bad;
}

struct worker { kh_rootkey *k; int failures; };

static void *worker_run(void *arg)
{
  struct worker *w = arg;
  for (int i = 0; i < 25; i++) {
    kh_buf b;
    uint8_t out[32], d[32];
    kh_buf_init(&b, 4096);
    if (kh_rootkey_wrap(w->k, account_key, ad1, sizeof ad1, &b) != KH_OK ||
        kh_rootkey_unwrap(w->k, b.data, b.len, ad1, sizeof ad1, out) != KH_OK ||
        memcmp(out, account_key, 32) != 0 ||
        kh_rootkey_derive(w->k, (const uint8_t *)"t", 1, d) != KH_OK)
      w->failures++;
    kh_buf_release(&b);
  }
  return NULL;
}

/* Independent look at the token: its own dlopen, session and login. */
static void check_token_objects(void)
{
  void *dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
  CHECK(dl != NULL);
  if (!dl)
    return;
  CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
  CK_FUNCTION_LIST_PTR f = NULL;
  CHECK(gfl && gfl(&f) == CKR_OK);
  if (!f) {
    dlclose(dl);
    return;
  }
  CHECK_EQ(f->C_Initialize(NULL), CKR_OK);
  CK_SLOT_ID slots[8];
  CK_ULONG nslots = 8;
  CHECK_EQ(f->C_GetSlotList(CK_TRUE, slots, &nslots), CKR_OK);
  CK_SLOT_ID slot = 0;
  bool found = false;
  for (CK_ULONG i = 0; i < nslots; i++) {
    CK_TOKEN_INFO ti;
    if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && memcmp(ti.label, "kh-test ", 8) == 0) {
      slot = slots[i];
      found = true;
    }
  }
  CHECK(found);

  /* which wrap mechanism this token offers (the backend prefers KWP) */
  CK_MECHANISM_TYPE mechs[512];
  CK_ULONG nm = 512;
  bool kwp = false, pad = false;
  CHECK_EQ(f->C_GetMechanismList(slot, mechs, &nm), CKR_OK);
  for (CK_ULONG i = 0; i < nm; i++) {
    kwp |= mechs[i] == CKM_AES_KEY_WRAP_KWP;
    pad |= mechs[i] == CKM_AES_KEY_WRAP_PAD;
  }
  fprintf(stderr, "token offers CKM_AES_KEY_WRAP_KWP: %s, CKM_AES_KEY_WRAP_PAD: %s -> "
                  "backend uses %s\n", kwp ? "yes" : "no", pad ? "yes" : "no",
          kwp ? "CKM_AES_KEY_WRAP_KWP" : "CKM_AES_KEY_WRAP_PAD");
  CHECK(kwp || pad);

  CK_SESSION_HANDLE s;
  CHECK_EQ(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
           CKR_OK);
  CHECK_EQ(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)"1234", 4), CKR_OK);
  const char *labels[] = {"kh-root", "kh-root.v2", "kh-root.mac"};
  for (int i = 0; i < 3; i++) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_LABEL, (void *)labels[i], strlen(labels[i])}};
    CK_OBJECT_HANDLE h[2];
    CK_ULONG n = 0;
    CHECK_EQ(f->C_FindObjectsInit(s, t, 2), CKR_OK);
    CHECK_EQ(f->C_FindObjects(s, h, 2, &n), CKR_OK);
    f->C_FindObjectsFinal(s);
    CHECK_EQ(n, 1);
    if (n != 1)
      continue;
    CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, asens = CK_FALSE, nextr = CK_FALSE,
             token = CK_FALSE;
    CK_ATTRIBUTE a[] = {{CKA_SENSITIVE, &sens, sizeof sens},
                        {CKA_EXTRACTABLE, &extr, sizeof extr},
                        {CKA_ALWAYS_SENSITIVE, &asens, sizeof asens},
                        {CKA_NEVER_EXTRACTABLE, &nextr, sizeof nextr},
                        {CKA_TOKEN, &token, sizeof token}};
    CHECK_EQ(f->C_GetAttributeValue(s, h[0], a, 5), CKR_OK);
    CHECK(sens == CK_TRUE);
    CHECK(extr == CK_FALSE);
    CHECK(asens == CK_TRUE);  /* generated inside the token ... */
    CHECK(nextr == CK_TRUE);  /* ... and never exportable */
    CHECK(token == CK_TRUE);
    uint8_t value[64];
    CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof value};
    CK_RV rv = f->C_GetAttributeValue(s, h[0], &v, 1);
    CHECK(rv != CKR_OK);
    CHECK_EQ(rv, CKR_ATTRIBUTE_SENSITIVE);
    CHECK(v.ulValueLen == CK_UNAVAILABLE_INFORMATION);
  }

  /* a key someone made extractable under our naming scheme is refused */
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ULONG vlen = 32;
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE wt[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_KEY_TYPE, &kt, sizeof kt},
                       {CKA_VALUE_LEN, &vlen, sizeof vlen}, {CKA_TOKEN, &yes, sizeof yes},
                       {CKA_PRIVATE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &yes, sizeof yes},
                       {CKA_WRAP, &yes, sizeof yes}, {CKA_UNWRAP, &yes, sizeof yes},
                       {CKA_LABEL, "weak", 4}};
  CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
  CK_OBJECT_HANDLE weak;
  CHECK_EQ(f->C_GenerateKey(s, &gen, wt, 9, &weak), CKR_OK);
  kh_rootkey *k = NULL;
  CHECK_EQ(kh_rootkey_pkcs11_open(module, "kh-test", pin, "weak", true, &k), KH_ERR_HSM);
  CHECK(k == NULL);
  CHECK(strstr(kh_errdetail(), "extractable") != NULL);
  kh_rootkey_free(k);
  /* the library did not finalise a module it did not initialise */
  CK_SESSION_INFO si;
  CHECK_EQ(f->C_GetSessionInfo(s, &si), CKR_OK);

  f->C_CloseSession(s);
  f->C_Finalize(NULL);
  dlclose(dl);
}

static void test_pkcs11(void)
{
  kh_rootkey *k = NULL, *k2 = NULL;
  kh_buf b1, b2, b3, fb;
  kh_buf_init(&b1, 4096);
  kh_buf_init(&b2, 4096);
  kh_buf_init(&b3, 4096);
  kh_buf_init(&fb, 4096);
  uint8_t out[32], d1[32], d2[32];

  /* errors before anything exists */
  CHECK_EQ(kh_rootkey_pkcs11_open(module, "kh-test", pin, "kh-root", false, &k),
           KH_ERR_NOTFOUND);
  CHECK(k == NULL);
  CHECK_EQ(kh_rootkey_pkcs11_open(module, "kh-test", wrong_pin, "kh-root", true, &k),
           KH_ERR_AUTH);
  CHECK_EQ(kh_rootkey_pkcs11_open(module, "no-such-token", pin, "kh-root", true, &k),
           KH_ERR_NOTFOUND);
  CHECK_EQ(kh_rootkey_pkcs11_open("/nonexistent/libnope.so", "kh-test", pin, "kh-root",
                                  true, &k), KH_ERR_NOTFOUND);
  CHECK_EQ(kh_rootkey_pkcs11_open(module, "kh-test", pin, "bad label", true, &k),
           KH_ERR_INVAL);

  CHECK_OK(kh_rootkey_pkcs11_open(module, "kh-test", pin, "kh-root", true, &k));
  if (!k)
    goto out;
  CHECK(strcmp(kh_rootkey_id(k), "pkcs11:kh-root:v1") == 0);
  CHECK_OK(kh_rootkey_wrap(k, account_key, ad1, sizeof ad1, &b1));
  CHECK_EQ(b1.len, 125);
  CHECK_MEM(b1.data, "KHRW\x01\x02\x01\x00\x00\x00\x02\x28\x00", 13);
  CHECK_OK(kh_rootkey_unwrap(k, b1.data, b1.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);
  memset(out, 0xAA, 32);
  CHECK_EQ(kh_rootkey_unwrap(k, b1.data, b1.len, ad2, sizeof ad2, out), KH_ERR_AUTH);
  CHECK(all_zero(out, 32));
  CHECK_EQ(tamper_count(k, &b1), 0);
  CHECK_OK(kh_rootkey_unwrap(k, b1.data, b1.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);

  /* a second handle on the same token in the same process */
  CHECK_OK(kh_rootkey_pkcs11_open(module, "kh-test", pin, "kh-root", false, &k2));
  if (k2) {
    CHECK_OK(kh_rootkey_unwrap(k2, b1.data, b1.len, ad1, sizeof ad1, out));
    CHECK_MEM(out, account_key, 32);
  }

  CHECK_OK(kh_rootkey_derive(k, (const uint8_t *)"escrow:alice", 12, d1));
  CHECK_OK(kh_rootkey_derive(k, (const uint8_t *)"escrow:alice", 12, d2));
  CHECK_MEM(d1, d2, 32);
  CHECK(!all_zero(d1, 32));
  CHECK_OK(kh_rootkey_derive(k, (const uint8_t *)"escrow:bob", 10, d2));
  CHECK(memcmp(d1, d2, 32) != 0);

  /* rotation */
  CHECK_OK(kh_rootkey_rotate(k));
  CHECK(strcmp(kh_rootkey_id(k), "pkcs11:kh-root:v2") == 0);
  if (k2) {
    CHECK_EQ(kh_rootkey_rotate(k2), KH_ERR_EXISTS); /* lost the race cleanly */
    kh_rootkey_free(k2);                            /* the module stays initialised */
    k2 = NULL;
  }
  CHECK_OK(kh_rootkey_unwrap(k, b1.data, b1.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);
  CHECK_OK(kh_rootkey_rewrap(k, b1.data, b1.len, ad1, sizeof ad1, &b2));
  CHECK_EQ(kh_le32_get(b2.data + 6), 2);
  CHECK_OK(kh_rootkey_unwrap(k, b2.data, b2.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);
  CHECK_OK(kh_rootkey_derive(k, (const uint8_t *)"escrow:alice", 12, d2));
  CHECK_MEM(d1, d2, 32);
  /* a v1 blob relabelled v2 fails: the wrapped key is not under v2 */
  b1.data[6] = 2;
  CHECK_EQ(kh_rootkey_unwrap(k, b1.data, b1.len, ad1, sizeof ad1, out), KH_ERR_AUTH);
  b1.data[6] = 1;

  /* concurrent use of one handle */
  pthread_t t[4];
  struct worker w[4];
  for (int i = 0; i < 4; i++) {
    w[i].k = k;
    w[i].failures = 0;
    pthread_create(&t[i], NULL, worker_run, &w[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    CHECK_EQ(w[i].failures, 0);
  }
  kh_rootkey_free(k);
  k = NULL;

  /* reopen: the keys persist in the token */
  CHECK_OK(kh_rootkey_pkcs11_open(module, "kh-test", pin, "kh-root", false, &k));
  if (!k)
    goto out;
  CHECK_EQ(kh_rootkey_version(k), 2);
  CHECK_OK(kh_rootkey_unwrap(k, b1.data, b1.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);
  CHECK_OK(kh_rootkey_unwrap(k, b2.data, b2.len, ad1, sizeof ad1, out));
  CHECK_MEM(out, account_key, 32);
  CHECK_OK(kh_rootkey_derive(k, (const uint8_t *)"escrow:alice", 12, d2));
  CHECK_MEM(d1, d2, 32);
  CHECK_EQ(tamper_count(k, &b2), 0);

  /* another key label in the same token is another root key */
  CHECK_OK(kh_rootkey_pkcs11_open(module, "kh-test", pin, "other", true, &k2));
  if (k2) {
    CHECK_EQ(kh_rootkey_unwrap(k2, b2.data, b2.len, ad1, sizeof ad1, out), KH_ERR_AUTH);
    CHECK_OK(kh_rootkey_derive(k2, (const uint8_t *)"escrow:alice", 12, d2));
    CHECK(memcmp(d1, d2, 32) != 0);
    kh_rootkey_free(k2);
    k2 = NULL;
  }

  /* a file-backend blob is not accepted by the PKCS#11 backend, nor back */
  char *fdir = kh_path_join(tmpdir, "filekeys");
  kh_secret *opsec = kh_secret_new("operator secret 0123456789", 26);
  CHECK_OK(kh_rootkey_file_create(fdir, "local", opsec, &k2));
  if (k2) {
    CHECK_OK(kh_rootkey_wrap(k2, account_key, ad1, sizeof ad1, &fb));
    CHECK_EQ(kh_rootkey_unwrap(k, fb.data, fb.len, ad1, sizeof ad1, out), KH_ERR_AUTH);
    CHECK_EQ(kh_rootkey_unwrap(k2, b2.data, b2.len, ad1, sizeof ad1, out), KH_ERR_AUTH);
  }
  kh_secret_free(opsec);
  free(fdir);
out:
  kh_rootkey_free(k);
  kh_rootkey_free(k2);
  kh_buf_release(&b1);
  kh_buf_release(&b2);
  kh_buf_release(&b3);
  kh_buf_release(&fb);
}

int main(void)
{
  if (kh_crypto_init() != KH_OK)
    return 1;
  module = kh_softhsm_module();
  if (!module) {
    fprintf(stderr, "FAIL: SoftHSM2 is not installed (no libsofthsm2.so; install the Debian "
                    "package softhsm2, or set KH_SOFTHSM2_MODULE)\n");
    return 1;
  }
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/kh-p11-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  int rc = 1;
  pin = kh_secret_new("1234", 4);
  wrong_pin = kh_secret_new("0000", 4);
  if (!setup_token()) {
    fprintf(stderr, "FAIL: cannot initialise a SoftHSM2 token (is softhsm2-util in PATH?)\n");
    goto out;
  }
  RUN(test_pkcs11);
  RUN(check_token_objects);
  rc = kh_test_done("test_rootkey_pkcs11");
out:
  kh_secret_free(pin);
  kh_secret_free(wrong_pin);
  kh_remove_tree(tmpdir);
  return rc;
}
