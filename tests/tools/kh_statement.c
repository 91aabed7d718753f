/* Test fixture: append a device statement (docs/log.md §5.2) to the log of
 * REGION, signed by the Ed25519 secret key in KEYFILE (a device.key: 64
 * bytes of Ed25519 secret first), as an operator colluding with that device
 * could, with the server stopped; KEYFILE "new" signs with a fresh key pair
 * (a stranger to the account).  Public API only.
 *   kh_statement REGION KEYFILE enrol|revoke ACCOUNT SUBJECT SIGNER REASON */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "keyhold/enrol.h"
#include "keyhold/keyhold.h"

static kh_err sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64])
{
  crypto_sign_detached(sig, NULL, msg, len, ctx);
  return KH_OK;
}

int main(int argc, char **argv)
{
  uint8_t sk[64];
  kh_kms *k = NULL;
  char *entry = NULL;
  size_t len = 0;
  kh_err e;
  if (argc != 8 || sodium_init() < 0) {
    fprintf(stderr, "usage: kh_statement REGION KEYFILE enrol|revoke ACCOUNT SUBJECT SIGNER "
                    "REASON\n");
    return 2;
  }
  if (!strcmp(argv[2], "new")) {
    uint8_t pk[32];
    crypto_sign_keypair(pk, sk);
  } else {
    FILE *f = fopen(argv[2], "rb");
    size_t got = f ? fread(sk, 1, 64, f) : 0;
    if (f)
      fclose(f);
    if (got != 64) {
      fprintf(stderr, "kh_statement: cannot read 64 bytes of %s\n", argv[2]);
      return 1;
    }
  }
  kh_log_op op = !strcmp(argv[3], "enrol") ? KH_LOG_OP_ENROL : KH_LOG_OP_REVOKE;
  if ((e = kh_kms_open(argv[1], &k)) ||
      (e = kh_enrol_statement(op, (int64_t)time(NULL), kh_kms_region_id(k), argv[4], argv[5],
                              argv[6], argv[7], sign, sk, &entry, &len)) ||
      (e = kh_kms_append_statement(k, entry, len, sk + 32, NULL))) {
    fprintf(stderr, "kh_statement: %s: %s\n", kh_strerror(e), kh_errdetail());
    kh_kms_free(k);
    return 1;
  }
  fputs(entry, stdout);
  free(entry);
  kh_kms_free(k);
  sodium_memzero(sk, sizeof sk);
  return 0;
}
