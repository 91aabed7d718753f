/* --host, --path, --tag and snapshot names, the same for every command
 * (docs/cli.md "Selecting snapshots"); the selection itself is the
 * library's (kh_snapshot_filter, kh_snapshot_resolve). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

bool cli_filter_init(cli_filter *cf, int cap) {
  memset(cf, 0, sizeof *cf);
  cf->cap = cap > 0 ? (size_t)cap : 1;
  cf->hosts = calloc(cf->cap, sizeof *cf->hosts);
  cf->paths = calloc(cf->cap, sizeof *cf->paths);
  cf->tags = calloc(cf->cap, sizeof *cf->tags);
  if (!cf->hosts || !cf->paths || !cf->tags) {
    cli_filter_release(cf);
    cli_msgf("out of memory");
    return false;
  }
  cf->f.hosts = (const char *const *)cf->hosts;
  cf->f.paths = (const char *const *)cf->paths;
  cf->f.tags = (const char *const *)cf->tags;
  return true;
}

void cli_filter_release(cli_filter *cf) {
  for (size_t i = 0; i < cf->f.nhosts; i++) free(cf->hosts[i]);
  for (size_t i = 0; i < cf->f.npaths; i++) free(cf->paths[i]);
  for (size_t i = 0; i < cf->f.ntags; i++) free(cf->tags[i]);
  free(cf->hosts);
  free(cf->paths);
  free(cf->tags);
  memset(cf, 0, sizeof *cf);
}

/* "a,b" with no empty tag in it ("" alone: snapshots without tags). */
static bool tag_entry_ok(const char *s) {
  if (!*s) return true;
  if (*s == ',') return false;
  for (; *s; s++)
    if (*s == ',' && (s[1] == ',' || s[1] == 0)) return false;
  return true;
}

bool cli_filter_add(cli_filter *cf, int c, const char *arg, const char *cmd) {
  char *copy = NULL;
  size_t *n = NULL;
  char **slot = NULL;
  if (c == CLI_OPT_HOST) {
    if (!*arg) { cli_msgf("%s: --host: empty host name", cmd); return false; }
    copy = strdup(arg);
    n = &cf->f.nhosts;
    slot = cf->hosts;
  } else if (c == CLI_OPT_PATH) {
    if (arg[0] != '/') {
      cli_msgf("%s: --path: not an absolute path (as keyhold snapshots shows it): '%s'", cmd, arg);
      return false;
    }
    size_t len = strlen(arg);
    while (len > 1 && arg[len - 1] == '/') len--;
    copy = strndup(arg, len);
    n = &cf->f.npaths;
    slot = cf->paths;
  } else if (c == CLI_OPT_TAG) {
    if (!tag_entry_ok(arg)) {
      cli_msgf("%s: --tag: empty tag in '%s' (\"a,b\" means both a and b)", cmd, arg);
      return false;
    }
    copy = strdup(arg);
    n = &cf->f.ntags;
    slot = cf->tags;
  } else {
    return false;
  }
  if (!copy || *n >= cf->cap) {
    free(copy);
    cli_msgf("out of memory");
    return false;
  }
  slot[(*n)++] = copy;
  return true;
}

int cli_resolve_snapshot(kh_vault *v, const char *spec, const cli_filter *cf, const char *what,
                         char id[KH_SNAPSHOT_ID_HEX + 1]) {
  kh_err e = kh_snapshot_resolve(v, spec, cf ? &cf->f : NULL, id);
  if (!e) return CLI_EXIT_OK;
  cli_fail(e, what);
  /* latest over several groups needs --host/--path: a usage error, as a
   * missing option is.  (A prefix of several ids, or a malformed or unknown
   * name, stays 1, as docs/cli.md has always said.) */
  bool latest = !strncmp(spec, "latest", 6) && (!spec[6] || spec[6] == '~');
  return e == KH_ERR_AMBIGUOUS && latest ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
}
