/* The approval body the server interprets (POST /v1/enrolments/<id>/approve,
 * docs/protocol.md §9.2): whatever parses builds back into a body that
 * parses to the same approval. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/enrol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_enrol_approval a, g;
  if (kh_enrol_approval_parse((const char *)data, size, &a) != KH_OK)
    return 0;
  char *t = NULL;
  size_t tl = 0;
  if (kh_enrol_approval_json(&a, &t, &tl) != KH_OK ||
      kh_enrol_approval_parse(t, tl, &g) != KH_OK || strcmp(a.device, g.device) ||
      a.caps != g.caps || a.wrap_len != g.wrap_len || memcmp(a.wrap, g.wrap, a.wrap_len) ||
      memcmp(a.wrap_tag, g.wrap_tag, 32) || a.entry_len != g.entry_len ||
      memcmp(a.entry, g.entry, a.entry_len))
    abort();
  kh_enrol_approval_release(&g);
  kh_enrol_approval_release(&a);
  free(t);
  return 0;
}
