/* keyhold help [COMMAND]: the command list, or one command's manual. */
#include "cli.h"

#include <string.h>

const char cmd_help_help[] =
"NAME\n"
"    keyhold help - show help for keyhold or one of its commands\n"
"\n"
"SYNOPSIS\n"
"    keyhold help [COMMAND]\n"
"    keyhold COMMAND --help\n"
"\n"
"DESCRIPTION\n"
"    Without COMMAND, lists every command with a one-line summary and the\n"
"    global options.  With COMMAND, prints that command's manual (NAME,\n"
"    SYNOPSIS, DESCRIPTION, OPTIONS, ENVIRONMENT, EXIT STATUS, EXAMPLES).\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 2 if COMMAND is unknown or not available in this build.\n"
"\n"
"EXAMPLES\n"
"    keyhold help\n"
"    keyhold help backup\n";

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
  fputs("\n"
        "Global options (accepted anywhere before \"--\"):\n"
        "    --region DIR          the region directory (env KEYHOLD_REGION)\n"
        "    --passcode-file FILE  read the passcode from the first line of FILE\n"
        "                          (env KEYHOLD_PASSCODE_FILE; else a terminal prompt)\n"
        "    --account ID          the account to open (env KEYHOLD_ACCOUNT; default:\n"
        "                          the region's only account)\n"
        "    --json                machine-readable output\n"
        "    --quiet               no progress line\n"
        "    --no-cache            do not use the local cache\n"
        "    -h, --help            show help (for a command: keyhold COMMAND --help)\n"
        "    --version             print the version\n"
        "\n"
        "Run 'keyhold help COMMAND' for the manual of one command.\n", f);
}

int cmd_help(int argc, char **argv) {
  if (argc > 2) return cli_usage("help");
  if (argc < 2) {
    list_commands(stdout);
    return CLI_EXIT_OK;
  }
  const char *name = argv[1];
  const cli_command *c = cli_command_find(name);
  if (!c) {
    cli_msgf("'%s' is not a keyhold command; see 'keyhold help'", name);
    return CLI_EXIT_USAGE;
  }
  if (!c->fn) {
    cli_msgf("'%s' is not available in this build", name);
    return CLI_EXIT_USAGE;
  }
  if (!cli_print_help(stdout, name)) printf("keyhold %s: %s\n", c->name, c->summary);
  return CLI_EXIT_OK;
}
