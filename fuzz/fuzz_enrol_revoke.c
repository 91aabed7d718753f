/* The revocation body the server interprets (POST
 * /v1/accounts/<a>/devices/<id>/revoke, docs/protocol.md §9.1): whatever
 * parses builds back into a body that parses to the same entry. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/enrol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *en = NULL, *t = NULL, *en2 = NULL;
  size_t el = 0, tl = 0, el2 = 0;
  if (kh_enrol_revoke_parse((const char *)data, size, &en, &el) != KH_OK)
    return 0;
  if (!el || strlen(en) != el || kh_enrol_revoke_json(en, el, &t, &tl) != KH_OK ||
      kh_enrol_revoke_parse(t, tl, &en2, &el2) != KH_OK || el2 != el || memcmp(en, en2, el))
    abort();
  free(en);
  free(en2);
  free(t);
  return 0;
}
