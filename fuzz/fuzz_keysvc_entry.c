/* Fuzz the device's check of an entry a region server prepared for it to
 * sign (kh_keysvc_entry_check, keyhold/keysvc.h): untrusted text from the
 * server.  Whatever it accepts must parse and say exactly what the device
 * asked for (op, region, account, requester, reason, no device line). */
#include "keyhold/keysvc.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#define ACCT "0123456789abcdef0123456789abcdef"
#define DEV "00112233445566778899aabbccddeeff"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* the time the corpus entries carry, so that they can be accepted */
  const int64_t now = 1795000000;
  if (kh_keysvc_entry_check((const char *)data, size, "eu-west", ACCT, KH_LOG_OP_DESTROY, DEV,
                            "switch to end-to-end protection", now) != KH_OK)
    return 0;
  kh_log_entry e;
  assert(kh_log_entry_parse(data, size, &e) == KH_OK);
  assert(e.op == KH_LOG_OP_DESTROY && !strcmp(e.region, "eu-west") && !strcmp(e.account, ACCT));
  assert(!strcmp(e.requester, "device:" DEV) && !e.device[0]);
  assert(!strcmp(e.reason, "switch to end-to-end protection"));
  assert(e.time - now <= KH_KMS_PRESIGNED_WINDOW && now - e.time <= KH_KMS_PRESIGNED_WINDOW);
  return 0;
}
