/* The device's server-mode state file (docs/format.md §12): any bytes,
 * never a crash; what parses has every field NUL-terminated and valid, and
 * round-trips through the writer's shape. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/remote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_device_state d;
  memset(&d, 0xa5, sizeof d);
  d.sign_sk = d.box_sk = NULL;
  if (kh_device_state_parse((const char *)data, size, &d) == KH_OK) {
    if (!memchr(d.url, 0, sizeof d.url) || !memchr(d.name, 0, sizeof d.name) ||
        !memchr(d.region, 0, sizeof d.region) || strlen(d.instance) != 32 ||
        (strlen(d.account) != 0 && strlen(d.account) != 32) ||
        (strlen(d.device) != 0 && strlen(d.device) != 32) ||
        strncmp(d.url, "http", 4))
      abort();
  }
  return 0;
}
