/* The keyhold CLI: shared option state and output helpers.  Commands use
 * libkeyhold only through include/keyhold/.  The output formats and exit
 * codes these helpers produce are documented in docs/cli.md. */
#ifndef KH_CLI_H
#define KH_CLI_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "keyhold/keyhold.h"

/* Global options, parsed by main() from anywhere before "--" and removed
 * from argv before the command sees it.  main() also fills in the
 * environment fallbacks, so these are the effective values. */
typedef struct cli_opts {
  const char *region;        /* --region DIR|URL or KEYHOLD_REGION */
  const char *ca_file;       /* --ca-file F or KEYHOLD_CA_FILE (server mode) */
  const char *passcode_file; /* --passcode-file F ("-": stdin); env read by cli_read_passcode */
  const char *passcode_command; /* --passcode-command CMD */
  const char *account;       /* --account ID or KEYHOLD_ACCOUNT (NULL: the only one) */
  bool json;                 /* --json */
  bool quiet;                /* -q, --quiet: no progress */
  int verbose;               /* -v, --verbose (repeatable), -vv: 2 */
  bool no_cache;             /* --no-cache */
  uint64_t limit_upload;     /* --limit-upload KIB/s, in bytes/s; 0: none */
  uint64_t limit_download;   /* --limit-download KIB/s, in bytes/s; 0: none */
  bool usage_error;          /* a required global option was missing: exit 2 */
} cli_opts;
extern cli_opts g_opts;

/* Exit codes shared by every command. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2, CLI_EXIT_PARTIAL = 3 };

typedef int (*cli_fn)(int argc, char **argv);
typedef struct cli_command {
  const char *name;
  cli_fn fn;           /* NULL: not linked into this build */
  const char *summary;
  const char *help;    /* man-page style text for `keyhold help NAME` */
} cli_command;

/* The command table (main.c).  cli_command_find returns NULL if unknown. */
const cli_command *cli_command_find(const char *name);
const cli_command *cli_command_list(size_t *n);

/* The verbs in this directory (each in cmd_<verb>.c). */
#define CLI_VERB(x) int cmd_##x(int argc, char **argv); extern const char cmd_##x##_help[]
CLI_VERB(init); CLI_VERB(backup); CLI_VERB(snapshots); CLI_VERB(ls); CLI_VERB(diff);
CLI_VERB(restore); CLI_VERB(check); CLI_VERB(forget); CLI_VERB(prune);
CLI_VERB(passcode); CLI_VERB(repair); CLI_VERB(help); CLI_VERB(accounts);
CLI_VERB(completion); CLI_VERB(dump); CLI_VERB(find); CLI_VERB(stats); CLI_VERB(copy);
#undef CLI_VERB

/* Print "keyhold: WHAT: <error text>: <detail>" to stderr (": <detail>" left
 * out when the library gave none; a wrong passcode prints just "keyhold:
 * WHAT: wrong passcode"); returns 1. */
int cli_fail(kh_err e, const char *what);
/* "keyhold: error: ..." / "keyhold: warning: ..." on stderr (a progress line
 * is cleared first).  Safe to call from library worker threads. */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "keyhold: KIND: PATH: MSG" on stderr, PATH escaped as by cli_print_path
 * (KIND is "warning" or "error").  Thread-safe like cli_warnf. */
void cli_path_msg(const char *kind, const char *path, const char *msg);
/* "keyhold: ..." on stderr, nothing added. */
void cli_msgf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a command's SYNOPSIS to stderr and return 2 (usage error). */
int cli_usage(const char *cmd);
/* true if argv has -h/--help before "--" (prints help to stdout, caller
 * returns 0).  main() already handles this for every command. */
bool cli_want_help(int argc, char **argv, const char *cmd);
/* Print the full help of cmd to f; false if there is none. */
bool cli_print_help(FILE *f, const char *cmd);

/* True if the account passcode would be read from standard input
 * (--passcode-file - or, without a passcode flag, KEYHOLD_PASSCODE_FILE=-):
 * a command that also reads data from standard input must refuse. */
bool cli_passcode_uses_stdin(void);

/* Read a passcode: from the file named by opt_file ("-": standard input, or
 * by the environment variable env), else a prompt on the terminal (echo
 * off, twice when confirm is set), else an error.  For the account passcode
 * (env "KEYHOLD_PASSCODE_FILE") the order is --passcode-file,
 * --passcode-command, KEYHOLD_PASSCODE_FILE, KEYHOLD_PASSCODE_COMMAND,
 * KEYHOLD_PASSCODE, the terminal (docs/cli.md).  At most 1024 bytes; the
 * first line of a file or of a command's output.
 * Prints its own error message.  Returns a kh_secret (sodium memory) the
 * caller frees with kh_secret_free(). */
kh_err cli_read_passcode(const char *opt_file, const char *env, const char *prompt,
                         bool confirm, kh_secret **out);
/* true if cli_read_passcode with these arguments would prompt. */
bool cli_passcode_will_prompt(const char *opt_file, const char *env);
/* true if the last cli_read_passcode read the passcode from the terminal. */
bool cli_passcode_was_prompted(void);

/* Damerau-Levenshtein distance (optimal string alignment) of a and b, for
 * "did you mean" suggestions; strings longer than 63 bytes give a large
 * number. */
size_t cli_edit_distance(const char *a, const char *b);
/* The candidate nearest to word (distance <= 2, ties: the first), or NULL. */
const char *cli_suggest(const char *word, const char *const *cands, size_t n);

/* "did you mean" (cli_fit.c).  Messages on stderr:
 * "keyhold: unknown command 'bakcup'; did you mean 'backup'?" */
void cli_unknown_command(const char *word);
/* "keyhold: [CMD: ]unknown option '--x'[; did you mean '--y'?]" */
void cli_unknown_option(const char *arg, const char *cmd);
/* Before a command runs: a "--name" it does not document but that is near
 * one it does is reported with a suggestion (true: exit 2).  Unknown ones
 * with no near match are left to the command's parser. */
bool cli_check_options(const char *cmd, int argc, char **argv);
/* Validate global option values (limits; conflicting passcode flags);
 * prints and returns false on a usage error. */
bool cli_global_checks(const char *limit_up, const char *limit_down);
/* The "--name" options a help text mentions, unique, in order of first
 * appearance; returns how many were stored (at most max). */
#define CLI_OPT_MAX 40
size_t cli_help_options(const char *help, char names[][CLI_OPT_MAX], size_t max);
const char *const *cli_global_options(size_t *n);
/* Render a help text (cmd_*_help shape) as the man page keyhold-NAME(1);
 * NAME "" is keyhold(1). */
void cli_render_man(FILE *f, const char *name, const char *help);

/* true if s is an http:// or https:// URL (a log or server, not a directory). */
bool cli_is_url(const char *s);
/* The region directory from --region / KEYHOLD_REGION or an error (printed). */
kh_err cli_region_path(const char **out);
/* The account named by --account/KEYHOLD_ACCOUNT (a unique prefix of an id
 * in the region), else the region's only account; prints the error itself
 * ("account prefix X matches N accounts", "no account X in this region")
 * and returns false on failure. */
bool cli_pick_account(const char *region, char out[KH_ACCOUNT_ID_HEX + 1]);
/* Open the account in the region with the passcode; prints its own error
 * ("keyhold: open account: wrong passcode"). */
kh_err cli_open_vault(kh_vault **out);

/* Write s as a JSON string (any bytes; invalid UTF-8 bytes as \u00XX) to f. */
void cli_json_str(FILE *f, const void *s, size_t n);
/* Same for a NUL-terminated string; NULL writes null. */
void cli_json_cstr(FILE *f, const char *s);
/* Write a path for humans: printable bytes (and valid UTF-8) as is, others
 * as \xNN, newline as \n. */
void cli_print_path(FILE *f, const void *s, size_t n);

/* Decimal number in [min, max]; false (nothing written) if not. */
bool cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
bool cli_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out);
bool cli_parse_int(const char *s, int min, int max, int *out);

/* Formatting into caller buffers (always NUL-terminated). */
void cli_fmt_bytes(char *buf, size_t n, uint64_t bytes);        /* "1.5 MiB" */
void cli_fmt_duration(char *buf, size_t n, double seconds);     /* "1:02:03" / "0:07" */
void cli_fmt_time_rfc3339(char *buf, size_t n, int64_t unix_ns); /* UTC, 9 digits, "Z" */
void cli_fmt_time_local(char *buf, size_t n, int64_t unix_ns);  /* "2006-01-02 15:04:05" */
#define CLI_TIME_BUF 48
#define CLI_BYTES_BUF 24

/* A kh_progress_fn that redraws a status line (and the files in flight) on
 * stderr (at most ~4 times a second) when stderr is a terminal and --quiet
 * is not set; ctx is unused.  After cli_progress_stream() (backup and
 * restore), with --json and without --quiet it writes NDJSON status objects
 * to stdout instead, at most once a second.  cli_progress_end() erases the
 * line, or writes the last status object if it was not written yet. */
void cli_progress(const kh_progress *p, void *ctx);
void cli_progress_end(void);
bool cli_progress_enabled(void);
void cli_progress_stream(void);
/* Write one line to stdout, clearing the progress line first (thread-safe:
 * for -v output while the progress is drawn). */
void cli_out_line(const char *prefix, const void *path, size_t pathlen, const char *suffix);
/* The same for a line the caller formatted (JSON). */
void cli_out_raw(const char *line);

/* Seconds on a monotonic clock. */
double cli_now(void);

/* --host, --path, --tag (cli_select.c; docs/cli.md "Selecting snapshots"):
 * add CLI_FILTER_OPTIONS to a command's getopt_long table and hand each of
 * those options to cli_filter_add. */
enum { CLI_OPT_HOST = 0x1100, CLI_OPT_PATH, CLI_OPT_TAG };
#define CLI_FILTER_OPTIONS                                                    \
  {"host", required_argument, NULL, CLI_OPT_HOST},                            \
  {"path", required_argument, NULL, CLI_OPT_PATH},                            \
  {"tag", required_argument, NULL, CLI_OPT_TAG}
/* Help text shared by the commands that take a SNAPSHOT name. */
#define CLI_HELP_SNAPSHOT_NAMES                                                \
  "    SNAPSHOT is a full id, a unique prefix of 4 or more hex digits, or\n"   \
  "    \"latest\": the newest snapshot of one group (same host and same\n"     \
  "    backed-up paths) among those --host, --path and --tag select.\n"       \
  "    Without --host, this machine's snapshots are preferred when it has\n"  \
  "    any.  If what is left spans several groups, latest is refused\n"      \
  "    (exit 2) and the groups are listed, each as the --host and --path\n"  \
  "    options that choose it: it never picks another folder's snapshot.\n"  \
  "    NAME~N is the Nth snapshot before NAME in its group, in the order of\n" \
  "    keyhold snapshots (latest~1: the one before the newest).  An id\n"    \
  "    given with --host, --path or --tag must match them.\n"
#define CLI_HELP_FILTER_OPTIONS                                                \
  "    --host H\n"                                                           \
  "        Choose among snapshots made on host H (repeatable: any of them).\n" \
  "    --path P\n"                                                           \
  "        Choose among snapshots whose backed-up paths are exactly the\n"    \
  "        --path options given (repeat it for a snapshot of several paths).\n" \
  "    --tag T[,T...]\n"                                                     \
  "        Choose among snapshots carrying every tag of the list\n"          \
  "        (repeatable: any of the lists; '' selects those without tags).\n"
typedef struct cli_filter {
  kh_snapshot_filter f;     /* what the library is given */
  char **hosts, **paths, **tags; /* owned */
  size_t cap;
} cli_filter;
/* cap: how many options at most (argc will do).  false: out of memory. */
bool cli_filter_init(cli_filter *cf, int cap);
void cli_filter_release(cli_filter *cf);
/* Take one option (c is CLI_OPT_*): false on a bad value, after printing
 * why ("CMD: --path: ..."); the caller then returns cli_usage(cmd). */
bool cli_filter_add(cli_filter *cf, int c, const char *arg, const char *cmd);
/* Resolve a snapshot name with the filter (NULL: none) into id.  On error
 * prints "keyhold: WHAT: ..." and returns the exit code: 2 when latest (or
 * latest~N) spans several groups (listed), else 1.  0 on success. */
int cli_resolve_snapshot(kh_vault *v, const char *spec, const cli_filter *cf, const char *what,
                         char id[KH_SNAPSHOT_ID_HEX + 1]);

/* A tree node's type as ls and find print it ("file", "dir", "symlink",
 * ...), and its mode as "ls -l" shows it ("drwxr-xr-x"; s must hold 11). */
const char *cli_node_type(int t);
void cli_mode_string(int type, uint32_t m, char s[11]);

#endif
