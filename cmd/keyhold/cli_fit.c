/* The CLI's manners: "did you mean" for mistyped verbs and options, the
 * checks of global option values, and the long options a help text
 * documents (also used by the completion scripts and man pages). */
#include "cli.h"

#include <string.h>

/* The global options (docs/cli.md), without their values. */
static const char *const global_opts[] = {
  "--region", "--ca-file", "--passcode-file", "--passcode-command", "--account", "--json", "--quiet",
  "--verbose",
  "--no-cache", "--limit-upload", "--limit-download", "--help", "--version",
};
#define NGLOBAL (sizeof global_opts / sizeof global_opts[0])

const char *const *cli_global_options(size_t *n) {
  *n = NGLOBAL;
  return global_opts;
}

size_t cli_help_options(const char *help, char names[][CLI_OPT_MAX], size_t max) {
  size_t n = 0;
  for (const char *p = help ? help : ""; (p = strstr(p, "--")) != NULL;) {
    /* "--name" at a word start, not "---" and not a lone "--" */
    bool start = p == help || p[-1] == ' ' || p[-1] == '[' || p[-1] == '\n' ||
                 p[-1] == '(' || p[-1] == '|' || p[-1] == '"' || p[-1] == ',';
    size_t len = 2;
    while ((p[len] >= 'a' && p[len] <= 'z') || (p[len] >= '0' && p[len] <= '9') ||
           (p[len] == '-' && len > 2))
      len++;
    if (start && len > 3 && len < CLI_OPT_MAX && p[2] != '-') {
      bool dup = false;
      for (size_t i = 0; i < n && !dup; i++)
        dup = strlen(names[i]) == len && memcmp(names[i], p, len) == 0;
      if (!dup && n < max) {
        memcpy(names[n], p, len);
        names[n][len] = 0;
        n++;
      }
    }
    p += len;
  }
  return n;
}

/* Every option name a command accepts according to its help text, plus the
 * global ones; returns the count. */
static size_t known_options(const char *cmd, char names[][CLI_OPT_MAX], size_t max) {
  const cli_command *c = cli_command_find(cmd);
  size_t n = cli_help_options(c ? c->help : NULL, names, max);
  for (size_t i = 0; i < NGLOBAL && n < max; i++) {
    snprintf(names[n], CLI_OPT_MAX, "%s", global_opts[i]);
    n++;
  }
  return n;
}

void cli_unknown_command(const char *word) {
  size_t n;
  const cli_command *c = cli_command_list(&n);
  const char *names[64];
  size_t k = 0;
  for (size_t i = 0; i < n && k < 64; i++)
    if (c[i].fn) names[k++] = c[i].name;
  const char *s = cli_suggest(word, names, k);
  if (s)
    cli_msgf("unknown command '%s'; did you mean '%s'?", word, s);
  else
    cli_msgf("unknown command '%s'; see 'keyhold help'", word);
}

void cli_unknown_option(const char *arg, const char *cmd) {
  char names[128][CLI_OPT_MAX];
  const char *ptrs[128];
  char word[CLI_OPT_MAX];
  size_t n = cmd ? known_options(cmd, names, 128) : 0;
  if (!cmd)
    for (size_t i = 0; i < NGLOBAL; i++) snprintf(names[n++], CLI_OPT_MAX, "%s", global_opts[i]);
  for (size_t i = 0; i < n; i++) ptrs[i] = names[i];
  size_t wl = strcspn(arg, "=");
  snprintf(word, sizeof word, "%.*s", (int)(wl < CLI_OPT_MAX - 1 ? wl : CLI_OPT_MAX - 1), arg);
  const char *s = cli_suggest(word, ptrs, n);
  if (s)
    cli_msgf("%s%sunknown option '%s'; did you mean '%s'?", cmd ? cmd : "", cmd ? ": " : "",
             word, s);
  else
    cli_msgf("%s%sunknown option '%s'", cmd ? cmd : "", cmd ? ": " : "", word);
}

bool cli_check_options(const char *cmd, int argc, char **argv) {
  char names[128][CLI_OPT_MAX];
  size_t n = known_options(cmd, names, 128);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) break;
    if (strncmp(a, "--", 2) != 0) continue;
    size_t wl = strcspn(a, "=");
    bool known = false;
    /* exact, or an abbreviation getopt_long will resolve */
    for (size_t k = 0; k < n && !known; k++)
      known = strncmp(names[k], a, wl) == 0;
    if (known) continue;
    char word[CLI_OPT_MAX];
    const char *ptrs[128];
    for (size_t k = 0; k < n; k++) ptrs[k] = names[k];
    snprintf(word, sizeof word, "%.*s", (int)(wl < CLI_OPT_MAX - 1 ? wl : CLI_OPT_MAX - 1), a);
    /* no near option: the command's own parser has the last word */
    if (!cli_suggest(word, ptrs, n)) continue;
    cli_unknown_option(a, cmd);
    fprintf(stderr, "Try 'keyhold help %s' for more information.\n", cmd);
    return true;
  }
  return false;
}

bool cli_global_checks(const char *limit_up, const char *limit_down) {
  const char *v[2] = {limit_up, limit_down};
  const char *nm[2] = {"--limit-upload", "--limit-download"};
  uint64_t *dst[2] = {&g_opts.limit_upload, &g_opts.limit_download};
  for (int i = 0; i < 2; i++) {
    uint64_t kib;
    if (!v[i]) continue;
    if (!cli_parse_u64(v[i], 1, UINT64_C(1) << 30, &kib)) {
      cli_msgf("%s: not a rate in KiB/s from 1 to 1073741824: %s", nm[i], v[i]);
      return false;
    }
    *dst[i] = kib * 1024;
  }
  if (g_opts.passcode_file && g_opts.passcode_command) {
    cli_msgf("--passcode-file and --passcode-command cannot be used together");
    return false;
  }
  return true;
}
