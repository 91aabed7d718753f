/* The enrolment request body the server interprets (POST /v1/enrolments,
 * docs/protocol.md §9.2): whatever parses builds back into a body that
 * parses to the same request, and its statement can be built. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/enrol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_enrol_request r, g;
  if (kh_enrol_request_parse((const char *)data, size, &r) != KH_OK)
    return 0;
  char *t = NULL, *st = NULL;
  size_t tl = 0, sl = 0;
  if (kh_enrol_request_json(&r, &t, &tl) != KH_OK ||
      kh_enrol_request_parse(t, tl, &g) != KH_OK || memcmp(&r, &g, sizeof r) != 0 ||
      kh_enrol_request_statement("00112233445566778899aabbccddeeff", &r, &st, &sl) != KH_OK ||
      strlen(st) != sl)
    abort();
  free(t);
  free(st);
  return 0;
}
