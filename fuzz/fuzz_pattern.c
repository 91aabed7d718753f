/* Exclude patterns (lib/common/pattern.h, docs/cli.md "Patterns"): input is
 * PATTERN NUL PATH.  Any bytes: never a crash, an error or a boolean, and a
 * pattern that matches case-sensitively also matches with --iexclude. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "common/pattern.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const uint8_t *nul = memchr(data, 0, size);
  if (!nul || size > 65536)
    return 0;
  const char *pat = (const char *)data;
  const char *path = (const char *)nul + 1;
  size_t plen = size - (size_t)(nul + 1 - data);
  kh_pattern_set *cs = NULL, *is = NULL;
  if (kh_pattern_set_new(&cs) || kh_pattern_set_new(&is))
    goto out;
  kh_err e1 = kh_pattern_set_add(cs, pat, false);
  kh_err e2 = kh_pattern_set_add(is, pat, true);
  if ((e1 != KH_OK) != (e2 != KH_OK) || (e1 != KH_OK) != (kh_pattern_check(pat) != KH_OK))
    abort();
  if (e1)
    goto out;
  bool a = kh_pattern_set_excludes(cs, path, plen);
  bool b = kh_pattern_set_excludes(is, path, plen);
  if (pat[0] != '!' && a && !b)
    abort();
  if (pat[0] == '!' && (a || b))
    abort(); /* a lone re-include never excludes */
out:
  kh_pattern_set_free(cs);
  kh_pattern_set_free(is);
  return 0;
}
