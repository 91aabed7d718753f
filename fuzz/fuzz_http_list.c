/* A region server's list response (docs/protocol.md §8.2), untrusted: any
 * bytes, never a crash; every name handed on is a valid name of the kind
 * asked for, relative to it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "http/http.h"
#include "keyhold/proto.h"

static const char *const kinds[] = {"data", "index", "snapshots", "keys", "devices", "locks",
                                    "damage"};

static int check(const char *name, uint64_t size, void *ctx)
{
  const char *kind = ctx;
  char full[1200];
  (void)size;
  size_t n = strlen(name);
  if (n == 0 || n > 1100)
    abort();
  memcpy(full, kind, strlen(kind));
  full[strlen(kind)] = '/';
  memcpy(full + strlen(kind) + 1, name, n + 1);
  kh_obj_kind k = kh_proto_obj_kind(full, NULL);
  if (k == KH_OBJ_INVALID || strcmp(kh_proto_kind_prefix(k), kind))
    abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  const char *kind = kinds[data[0] % 7];
  kh_http_list_parse((const char *)data + 1, size - 1, kind, check, (void *)kind);
  return 0;
}
