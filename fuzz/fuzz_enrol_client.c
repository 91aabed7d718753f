/* The enrolment and device responses a client interprets (docs/protocol.md
 * §9): the pending list, the poll result and the device list, all from
 * the same bytes.  What parses must satisfy the parser's promises, and a
 * result or device list must build back into the same values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/enrol.h"
#include "keyhold/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *s = (const char *)data;
  kh_enrol_pending *p = NULL;
  size_t n = 0;
  if (kh_enrol_list_parse(s, size, &p, &n) == KH_OK) {
    if (n > KH_ENROL_LIST_MAX)
      abort();
    for (size_t i = 0; i < n; i++)
      if (!kh_enrol_id_valid(p[i].enrolment) || !kh_enrol_name_valid(p[i].name))
        abort();
    free(p);
  }
  kh_enrol_result r, g;
  if (kh_enrol_result_parse(s, size, &r) == KH_OK) {
    char *t = NULL;
    size_t tl = 0;
    if (kh_enrol_result_json(&r, &t, &tl) != KH_OK || kh_enrol_result_parse(t, tl, &g) != KH_OK ||
        g.state != r.state || g.caps != r.caps || g.wrap_len != r.wrap_len ||
        (r.wrap_len && memcmp(g.wrap, r.wrap, r.wrap_len)) || strcmp(g.device, r.device) ||
        strcmp(g.account, r.account))
      abort();
    if (r.state == KH_POLL_APPROVED && (!r.caps || r.caps > KH_CAP_ALL || !r.wrap_len))
      abort();
    kh_enrol_result_release(&g);
    kh_enrol_result_release(&r);
    free(t);
  }
  kh_enrol_device *d = NULL, *d2 = NULL;
  size_t dn = 0, dn2 = 0;
  if (kh_enrol_devices_parse(s, size, &d, &dn) == KH_OK) {
    char *t = NULL;
    size_t tl = 0;
    if (kh_enrol_devices_json(d, dn, &t, &tl) != KH_OK ||
        kh_enrol_devices_parse(t, tl, &d2, &dn2) != KH_OK || dn2 != dn ||
        (dn && memcmp(d, d2, dn * sizeof *d)))
      abort();
    free(t);
    free(d2);
    free(d);
  }
  return 0;
}
