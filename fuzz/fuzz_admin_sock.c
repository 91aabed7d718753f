/* Fuzz keyholdd's operator-socket parsers (srv/keyholdd/adminsock.h): the
 * request the server reads and the response `keyholdd admin` reads.  The
 * first input byte picks which.  Whatever parses must format back to text
 * that parses to the same thing (no field lost or widened). */
#include "../srv/keyholdd/adminsock_proto.c"

#include <assert.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 || sodium_init() < 0)
    return 0;
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  if (data[0] & 1) {
    kd_admin_req a, b;
    char out[KD_ADMIN_REQ_MAX + 1];
    if (kd_admin_req_parse(p, n, &a) == 0) {
      size_t l = kd_admin_req_format(&a, out, sizeof out);
      assert(l == n && !memcmp(out, p, n));
      assert(kd_admin_req_parse(out, l, &b) == 0 && !memcmp(&a, &b, sizeof a));
    }
  } else {
    kd_admin_resp a, b;
    char *out = NULL;
    size_t l = 0;
    if (kd_admin_resp_parse(p, n, &a) == 0) {
      assert(kd_admin_resp_format(&a, true, &out, &l) == 0);
      assert(kd_admin_resp_parse(out, l, &b) == 0);
      assert(a.ok == b.ok && a.index == b.index && a.size == b.size && a.plen == b.plen &&
             a.checkpoint_len == b.checkpoint_len && !strcmp(a.error, b.error) &&
             !memcmp(a.checkpoint, b.checkpoint, a.checkpoint_len) &&
             !a.key == !b.key && (!a.key || !memcmp(a.key, b.key, 32)));
      free(out);
      kd_admin_resp_release(&b);
    }
    kd_admin_resp_release(&a);
  }
  return 0;
}
