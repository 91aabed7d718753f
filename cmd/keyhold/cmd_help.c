/* keyhold help [COMMAND]: the command list, or one command's manual. */
#include "cli.h"

#include <string.h>

const char cmd_help_help[] =
"NAME\n"
"    keyhold help - show help for keyhold or one of its commands\n"
"\n"
"SYNOPSIS\n"
"    keyhold help [COMMAND]\n"
"    keyhold help --man [COMMAND]\n"
"    keyhold help --list\n"
"    keyhold COMMAND --help\n"
"\n"
"DESCRIPTION\n"
"    Without COMMAND, lists every command with a one-line summary and the\n"
"    global options.  With COMMAND, prints that command's manual (NAME,\n"
"    SYNOPSIS, DESCRIPTION, OPTIONS, ENVIRONMENT, EXIT STATUS, EXAMPLES).\n"
"\n"
"    keyhold help --man COMMAND prints the same manual as a roff man page\n"
"    (keyhold-COMMAND(1)); without COMMAND, the keyhold(1) page with the\n"
"    command list and the global options.  make install writes these pages,\n"
"    so the man pages and keyhold help never disagree.\n"
"\n"
"OPTIONS\n"
"    --man\n"
"        Print roff (man -l renders it) instead of text.\n"
"    --list\n"
"        Print the names of the commands available in this build, one per\n"
"        line (for scripts such as make install).\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 2 if COMMAND is unknown or not available in this build.\n"
"\n"
"EXAMPLES\n"
"    keyhold help\n"
"    keyhold help backup\n";

/* The global options, for `keyhold help` and keyhold(1). */
static const struct { const char *opt, *desc; } global_help[] = {
  {"--region DIR|URL", "the region directory, or a region server's\n"
                       "http(s)://HOST:PORT (env KEYHOLD_REGION)"},
  {"--ca-file FILE", "CA certificates for an https:// region server\n"
                     "(env KEYHOLD_CA_FILE; default: the system's)"},
  {"--passcode-file FILE", "read the passcode from the first line of FILE\n"
                           "(\"-\": standard input; env KEYHOLD_PASSCODE_FILE)"},
  {"--passcode-command CMD", "run CMD with /bin/sh -c, passcode = first line of\n"
                             "its output (env KEYHOLD_PASSCODE_COMMAND)"},
  {"--account ID", "the account to open, or a unique prefix of its id\n"
                   "(env KEYHOLD_ACCOUNT; default: the only account)"},
  {"--json", "machine-readable output"},
  {"-q, --quiet", "no progress line (nor JSON status lines)"},
  {"-v, --verbose", "backup: list new and changed files as they are\n"
                    "stored; -vv (or twice): every file with its status"},
  {"--no-cache", "do not use the local cache"},
  {"--limit-upload KIB", "write to the provider at most KIB KiB/s"},
  {"--limit-download KIB", "read from the provider at most KIB KiB/s"},
  {"-h, --help", "show help (for a command: keyhold COMMAND --help)"},
  {"--version", "print the version"},
};

static void man_keyhold(FILE *f) {
  size_t n;
  const cli_command *c = cli_command_list(&n);
  char buf[4096];
  int len = snprintf(buf, sizeof buf,
    "NAME\n"
    "    keyhold - encrypted, deduplicated, signed backups\n"
    "\n"
    "SYNOPSIS\n"
    "    keyhold [GLOBAL OPTIONS] COMMAND [ARGS...]\n"
    "\n"
    "DESCRIPTION\n"
    "    keyhold keeps encrypted, deduplicated, signed backups of your files in a\n"
    "    region the storage provider cannot read.  Each command has its own\n"
    "    page, keyhold-COMMAND(1).  Passcodes are read in this order:\n"
    "    --passcode-file, --passcode-command, KEYHOLD_PASSCODE_FILE,\n"
    "    KEYHOLD_PASSCODE_COMMAND, KEYHOLD_PASSCODE (least safe), a terminal prompt.\n"
    "\n"
    "COMMANDS\n");
  for (size_t i = 0; i < n && len > 0 && (size_t)len < sizeof buf; i++)
    if (c[i].fn)
      len += snprintf(buf + len, sizeof buf - (size_t)len, "    %s\n        %s\n", c[i].name,
                      c[i].summary);
  if (len > 0 && (size_t)len < sizeof buf)
    len += snprintf(buf + len, sizeof buf - (size_t)len, "\nGLOBAL OPTIONS\n");
  for (size_t i = 0; i < sizeof global_help / sizeof global_help[0]; i++) {
    if (len <= 0 || (size_t)len >= sizeof buf) break;
    len += snprintf(buf + len, sizeof buf - (size_t)len, "    %s\n        ", global_help[i].opt);
    for (const char *d = global_help[i].desc; *d && (size_t)len < sizeof buf - 8; d++) {
      buf[len++] = *d;
      if (*d == '\n') { memcpy(buf + len, "        ", 8); len += 8; }
    }
    buf[len++] = '\n';
    buf[len] = 0;
  }
  if (len > 0 && (size_t)len < sizeof buf)
    snprintf(buf + len, sizeof buf - (size_t)len,
             "\nEXIT STATUS\n"
             "    0 success; 1 failure; 2 usage error; 3 backup made with some paths\n"
             "    skipped (docs/cli.md).\n");
  cli_render_man(f, "", buf);
}

static void list_commands(FILE *f) {
  size_t n;
  const cli_command *c = cli_command_list(&n);
  fputs("usage: keyhold [GLOBAL OPTIONS] COMMAND [ARGS...]\n"
        "\n"
        "keyhold keeps encrypted, deduplicated, signed backups of your files in a\n"
        "region the storage provider cannot read.\n"
        "\n"
        "Commands:\n", f);
  for (size_t i = 0; i < n; i++)
    if (c[i].fn) fprintf(f, "    %-11s %s\n", c[i].name, c[i].summary);
  fputs("\nGlobal options (accepted anywhere before \"--\"):\n", f);
  for (size_t i = 0; i < sizeof global_help / sizeof global_help[0]; i++) {
    const char *d = global_help[i].desc, *nl;
    fprintf(f, "    %-22s ", global_help[i].opt);
    while ((nl = strchr(d, '\n')) != NULL) {
      fprintf(f, "%.*s\n    %-22s ", (int)(nl - d), d, "");
      d = nl + 1;
    }
    fprintf(f, "%s\n", d);
  }
  fputs("\nRun 'keyhold help COMMAND' for the manual of one command.\n", f);
}

int cmd_help(int argc, char **argv) {
  bool man = false;
  if (argc >= 2 && strcmp(argv[1], "--list") == 0) {
    if (argc != 2) return cli_usage("help");
    size_t n;
    const cli_command *c = cli_command_list(&n);
    for (size_t i = 0; i < n; i++)
      if (c[i].fn) printf("%s\n", c[i].name);
    return CLI_EXIT_OK;
  }
  if (argc >= 2 && strcmp(argv[1], "--man") == 0) {
    man = true;
    argc--;
    argv++;
  }
  if (argc > 2) return cli_usage("help");
  if (argc < 2) {
    if (man) man_keyhold(stdout);
    else list_commands(stdout);
    return CLI_EXIT_OK;
  }
  const char *name = argv[1];
  const cli_command *c = cli_command_find(name);
  if (!c) {
    cli_unknown_command(name);
    return CLI_EXIT_USAGE;
  }
  if (!c->fn) {
    cli_msgf("'%s' is not available in this build", name);
    return CLI_EXIT_USAGE;
  }
  if (man && c->help) cli_render_man(stdout, c->name, c->help);
  else if (!cli_print_help(stdout, name)) printf("keyhold %s: %s\n", c->name, c->summary);
  return CLI_EXIT_OK;
}
