/* The route table: the concatenation of the feature files' tables.  A row
 * names a path (exact, or a prefix whose rest the handler parses; "*" is
 * one segment, e.g. an account id), the methods it answers and its metrics
 * label.  Unknown paths are 404; a known
 * path with another method is 405.  A feature file adds its table here
 * (one line) and its route labels to kd_route. */
#include "keyholdd.h"

#include <string.h>

static const struct {
  const kd_row *rows;
  const size_t *n;
} g_tables[] = {
  {kd_routes_log, &kd_routes_log_n},
  {kd_routes_account, &kd_routes_account_n},
  {kd_routes_objects, &kd_routes_objects_n},
  {kd_routes_keysvc, &kd_routes_keysvc_n},
  {kd_routes_enrol, &kd_routes_enrol_n},
};

const char *kd_route_name(kd_route r)
{
  static const char *n[KD_ROUTE__COUNT] = {
    [KD_ROUTE_CHECKPOINT] = "log_checkpoint", [KD_ROUTE_TILE] = "log_tile",
    [KD_ROUTE_ENTRIES] = "log_entries", [KD_ROUTE_HEALTH] = "health",
    [KD_ROUTE_METRICS] = "metrics", [KD_ROUTE_REGION] = "region",
    [KD_ROUTE_CHALLENGE] = "challenge", [KD_ROUTE_SIGNUP] = "signup",
    [KD_ROUTE_SESSION] = "session", [KD_ROUTE_OBJECT] = "object", [KD_ROUTE_LIST] = "list", [KD_ROUTE_KMS] = "kms",
    [KD_ROUTE_DEVICES] = "devices", [KD_ROUTE_ENROL] = "enrolments",
    [KD_ROUTE_OTHER] = "other",
  };
  return (unsigned)r < KD_ROUTE__COUNT && n[r] ? n[r] : "other";
}

/* Does path match the row's path?  A "*" in a row's path stands for one
 * non-empty segment (an account id); *end gets where the match ends. */
static bool path_match(const char *pat, const char *path, bool prefix, const char **end)
{
  while (*pat) {
    if (*pat == '*') {
      size_t n = strcspn(path, "/");
      if (n == 0)
        return false;
      path += n;
      pat++;
      continue;
    }
    if (*pat != *path)
      return false;
    pat++;
    path++;
  }
  *end = path;
  return prefix || *path == '\0';
}

size_t kd_path_rest(const kd_row *r, const char *path)
{
  const char *end = path;
  return path_match(r->path, path, r->prefix, &end) ? (size_t)(end - path) : 0;
}

bool kd_path_segment(const char *path, unsigned i, char *out, size_t cap)
{
  const char *p = path;
  for (unsigned k = 0; k <= i; k++) {
    if (*p != '/')
      return false;
    p++;
    if (k < i)
      p += strcspn(p, "/");
  }
  size_t n = strcspn(p, "/");
  if (n == 0 || n >= cap)
    return false;
  memcpy(out, p, n);
  out[n] = '\0';
  return true;
}

const kd_row *kd_route_find(const char *path, kd_method m, bool *method_ok, unsigned *allow)
{
  const kd_row *found = NULL;
  *method_ok = false;
  *allow = 0;
  for (size_t t = 0; t < sizeof g_tables / sizeof g_tables[0]; t++)
    for (size_t i = 0; i < *g_tables[t].n; i++) {
      const kd_row *r = &g_tables[t].rows[i];
      const char *end;
      if (!path_match(r->path, path, r->prefix, &end))
        continue;
      *allow |= r->methods;
      if (r->methods & m) {
        *method_ok = true;
        return r;
      }
      if (!found)
        found = r; /* the path exists: 405 unless another row takes the method */
    }
  return found;
}
