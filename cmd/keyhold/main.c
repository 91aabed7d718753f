/* keyhold: the command-line client.  main() strips the global options,
 * then hands the rest of argv to exactly one command (docs/cli.md). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#ifndef KEYHOLD_VERSION
#define KEYHOLD_VERSION "0.1.0"
#endif

/* Commands written elsewhere and possibly not linked into this build: weak,
 * so that their absence leaves a NULL here instead of a link error. */
#define CLI_WEAK_VERB(x) \
  extern int cmd_##x(int, char **) __attribute__((weak)); \
  extern const char cmd_##x##_help[] __attribute__((weak))
CLI_WEAK_VERB(log);
CLI_WEAK_VERB(witness);
CLI_WEAK_VERB(whoami);
CLI_WEAK_VERB(admin);
CLI_WEAK_VERB(watch);
CLI_WEAK_VERB(protection);
CLI_WEAK_VERB(escrow);
CLI_WEAK_VERB(device);
CLI_WEAK_VERB(mount);
#undef CLI_WEAK_VERB

static const cli_command commands[] = {
  {"init", cmd_init, "create a region (if new) and an account in it", cmd_init_help},
  {"backup", cmd_backup, "back up files and directories into a new snapshot", cmd_backup_help},
  {"snapshots", cmd_snapshots, "list the snapshots", cmd_snapshots_help},
  {"ls", cmd_ls, "list the files in a snapshot", cmd_ls_help},
  {"dump", cmd_dump, "write a file of a snapshot, or a directory as tar, to stdout", cmd_dump_help},
  {"mount", cmd_mount, "browse the snapshots as a read-only file system (FUSE)", cmd_mount_help},
  {"find", cmd_find, "search snapshots for files by name", cmd_find_help},
  {"stats", cmd_stats, "sizes: what a restore writes, or the data stored", cmd_stats_help},
  {"diff", cmd_diff, "show the differences between two snapshots", cmd_diff_help},
  {"copy", cmd_copy, "copy snapshots from another account, re-encrypting them", cmd_copy_help},
  {"restore", cmd_restore, "restore a snapshot into a directory", cmd_restore_help},
  {"check", cmd_check, "verify the vault's structure and (optionally) every byte", cmd_check_help},
  {"forget", cmd_forget, "remove snapshots, by id or by a keep policy", cmd_forget_help},
  {"prune", cmd_prune, "remove data that no snapshot uses", cmd_prune_help},
  {"repair", cmd_repair, "rebuild the index, rewrite snapshots whose data is gone", cmd_repair_help},
  {"passcode", cmd_passcode, "change the account passcode", cmd_passcode_help},
  {"whoami", cmd_whoami, "show the account, device and region in use", cmd_whoami_help},
  {"protection", cmd_protection, "show or change the account's protection mode", cmd_protection_help},
  {"escrow", cmd_escrow, "manage the recovery escrow of the account key", cmd_escrow_help},
  {"device", cmd_device, "list, add, approve and revoke devices of the account", cmd_device_help},
  {"watch", cmd_watch, "watch the log for uses of this account's keys", cmd_watch_help},
  {"log", cmd_log, "inspect and verify the region's transparency log", cmd_log_help},
  {"witness", cmd_witness, "verify and cosign log checkpoints", cmd_witness_help},
  {"admin", cmd_admin, "operator tasks on a region", cmd_admin_help},
  {"accounts", cmd_accounts, "list the accounts of a region", cmd_accounts_help},
  {"completion", cmd_completion, "print a shell completion script", cmd_completion_help},
  {"help", cmd_help, "show help for keyhold or one command", cmd_help_help},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

const cli_command *cli_command_find(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

const cli_command *cli_command_list(size_t *n) {
  *n = NCOMMANDS;
  return commands;
}

static void print_version(void) {
  printf("keyhold %s\n", KEYHOLD_VERSION);
}

/* A global option that takes a value: "--name VALUE" or "--name=VALUE".
 * Returns 1 if argv[*i] is that option (value stored, *i advanced past the
 * value), 0 if not, -1 if the value is missing. */
static int take_value(int argc, char **argv, int *i, const char *name, const char **val) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) return 0;
  if (a[n] == '=') { *val = a + n + 1; return 1; }
  if (a[n] != 0) return 0;
  if (*i + 1 >= argc) return -1;
  *val = argv[++*i];
  return 1;
}

static const char *env_or_null(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

int main(int argc, char **argv) {
  bool help = false, version = false, seen_dashdash = false;
  const char *limit_up = NULL, *limit_down = NULL;
  int n = 1;
  char **args = calloc((size_t)argc + 1, sizeof *args);
  if (!args) {
    cli_msgf("out of memory");
    return CLI_EXIT_FAIL;
  }
  args[0] = argv[0];
  /* Strip the global options everywhere before "--" (which stays, for the
   * command's own parser). */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (seen_dashdash) { args[n++] = argv[i]; continue; }
    if (strcmp(a, "--") == 0) { seen_dashdash = true; args[n++] = argv[i]; continue; }
    const struct { const char *name; const char **dst; } valued[] = {
      {"--region", &g_opts.region},
      {"--ca-file", &g_opts.ca_file},
      {"--passcode-file", &g_opts.passcode_file},
      {"--passcode-command", &g_opts.passcode_command},
      {"--limit-upload", &limit_up},
      {"--limit-download", &limit_down},
      {"--account", &g_opts.account},
    };
    int took = 0;
    for (size_t k = 0; k < sizeof valued / sizeof valued[0] && !took; k++) {
      took = take_value(argc, argv, &i, valued[k].name, valued[k].dst);
      if (took < 0) {
        cli_msgf("option '%s' requires an argument", valued[k].name);
        free(args);
        return CLI_EXIT_USAGE;
      }
      if (took && !**valued[k].dst) {
        cli_msgf("option '%s' requires a non-empty argument", valued[k].name);
        free(args);
        return CLI_EXIT_USAGE;
      }
    }
    if (took) continue;
    if (strcmp(a, "--json") == 0) g_opts.json = true;
    else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) g_opts.quiet = true;
    else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) g_opts.verbose++;
    else if (strcmp(a, "-vv") == 0) g_opts.verbose += 2;
    else if (strcmp(a, "--no-cache") == 0) g_opts.no_cache = true;
    else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) help = true;
    else if (strcmp(a, "--version") == 0 && n == 1) version = true;
    else args[n++] = argv[i];
  }
  args[n] = NULL;
  if (!g_opts.region) g_opts.region = env_or_null("KEYHOLD_REGION");
  if (!g_opts.ca_file) g_opts.ca_file = env_or_null("KEYHOLD_CA_FILE");
  if (!g_opts.account) g_opts.account = env_or_null("KEYHOLD_ACCOUNT");

  int rc;
  if (!cli_global_checks(limit_up, limit_down)) {
    rc = CLI_EXIT_USAGE;
    goto out;
  }
  if (version) {
    print_version();
    rc = CLI_EXIT_OK;
    goto out;
  }
  if (n < 2) {
    if (help) {
      char *hargv[] = {"keyhold help", NULL};
      rc = cmd_help(1, hargv);
    } else {
      fputs("usage: keyhold [GLOBAL OPTIONS] COMMAND [ARGS...]\n"
            "Try 'keyhold help' for the list of commands and options.\n", stderr);
      rc = CLI_EXIT_USAGE;
    }
    goto out;
  }
  if (args[1][0] == '-' && strcmp(args[1], "--") != 0) {
    cli_unknown_option(args[1], NULL);
    fputs("Try 'keyhold help' for the list of commands and options.\n", stderr);
    rc = CLI_EXIT_USAGE;
    goto out;
  }
  const cli_command *c = cli_command_find(args[1]);
  if (!c) {
    cli_unknown_command(args[1]);
    rc = CLI_EXIT_USAGE;
    goto out;
  }
  if (!c->fn) {
    cli_msgf("'%s' is not available in this build", c->name);
    rc = CLI_EXIT_USAGE;
    goto out;
  }
  if (help) {
    if (!cli_print_help(stdout, c->name)) printf("keyhold %s: %s\n", c->name, c->summary);
    rc = CLI_EXIT_OK;
    goto out;
  }
  /* argv[0] of the command reads "keyhold VERB", so getopt's own messages
   * name the command. */
  if (cli_check_options(c->name, n - 1, args + 1)) {
    rc = CLI_EXIT_USAGE;
    goto out;
  }
  char prog[64];
  snprintf(prog, sizeof prog, "keyhold %s", c->name);
  args[1] = prog;
  rc = c->fn(n - 1, args + 1);
  if (rc == CLI_EXIT_FAIL && g_opts.usage_error) rc = CLI_EXIT_USAGE;
out:
  if (fflush(stdout) != 0 || ferror(stdout)) {
    cli_msgf("writing output: %s", "write error");
    if (rc == CLI_EXIT_OK) rc = CLI_EXIT_FAIL;
  }
  free(args);
  return rc;
}
