/* keyhold ls: list the nodes of a snapshot. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

const char cmd_ls_help[] =
"NAME\n"
"    keyhold ls - list the files in a snapshot\n"
"\n"
"SYNOPSIS\n"
"    keyhold ls [--json] [-l] [--host H]... [--path P]... [--tag T]...\n"
"               SNAPSHOT [PATH]\n"
"\n"
"DESCRIPTION\n"
"    Prints every node of SNAPSHOT (depth first, names in byte order), one\n"
"    absolute path per line; with PATH only that path and what is below it.\n"
"\n"
CLI_HELP_SNAPSHOT_NAMES
"\n"
"    Bytes that are not printable are shown as \\xNN and a newline as \\n,\n"
"    so every node is exactly one line.\n"
"\n"
"    -l adds, like ls -l: the mode string, uid, gid, size, modification time\n"
"    (local), the path and \"-> TARGET\" for symlinks.\n"
"\n"
"    With --json, one JSON object per line (NDJSON) with \"path\", \"type\"\n"
"    (file, dir, symlink, chardev, blockdev, fifo, socket), \"mode\"\n"
"    (permission bits 07777 as an integer, e.g. 420 for 0644), \"uid\",\n"
"    \"gid\", \"size\", \"mtime\" (RFC 3339, UTC, nanoseconds), \"nlink\", and\n"
"    \"link\" for symlinks.  Strings are valid UTF-8 JSON; a byte that is not\n"
"    part of valid UTF-8 is written as \\u00XX.\n"
"\n"
"OPTIONS\n"
"    -l, --long\n"
"        Long format.\n"
CLI_HELP_FILTER_OPTIONS
"    --json\n"
"        NDJSON output (a global option).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 1 if the snapshot or PATH does not exist or cannot be\n"
"    read; 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold ls latest\n"
"    keyhold ls --path /home/ana latest~1\n"
"    keyhold ls -l 1a2b3c4d /home/ana/Documents\n"
"    keyhold ls --json latest | jq -r 'select(.type==\"file\") | .path'\n";

struct ls_ctx {
  bool lng;
};

static int ls_node(const kh_node_info *n, void *vctx) {
  struct ls_ctx *c = vctx;
  if (g_opts.json) {
    char t[CLI_TIME_BUF];
    cli_fmt_time_rfc3339(t, sizeof t, n->mtime_ns);
    fputs("{\"path\":", stdout);
    cli_json_str(stdout, n->path, n->pathlen);
    printf(",\"type\":\"%s\",\"mode\":%u,\"uid\":%u,\"gid\":%u,\"size\":%llu,\"mtime\":\"%s\","
           "\"nlink\":%llu",
           cli_node_type(n->type), (unsigned)(n->mode & 07777), (unsigned)n->uid, (unsigned)n->gid,
           (unsigned long long)n->size, t, (unsigned long long)n->nlink);
    if (n->type == KH_NODE_SYMLINK) {
      fputs(",\"link\":", stdout);
      cli_json_str(stdout, n->link ? (const void *)n->link : "", n->link ? n->linklen : 0);
    }
    fputs("}\n", stdout);
  } else if (c->lng) {
    char m[11], t[CLI_TIME_BUF];
    cli_mode_string(n->type, n->mode, m);
    cli_fmt_time_local(t, sizeof t, n->mtime_ns);
    printf("%s %6u %6u %12llu %s ", m, (unsigned)n->uid, (unsigned)n->gid,
           (unsigned long long)n->size, t);
    cli_print_path(stdout, n->path, n->pathlen);
    if (n->type == KH_NODE_SYMLINK) {
      fputs(" -> ", stdout);
      if (n->link) cli_print_path(stdout, n->link, n->linklen);
    }
    putchar('\n');
  } else {
    cli_print_path(stdout, n->path, n->pathlen);
    putchar('\n');
  }
  /* Stop early if the reader went away (e.g. `| head` with SIGPIPE ignored). */
  return ferror(stdout) ? 1 : 0;
}

int cmd_ls(int argc, char **argv) {
  static const struct option longopts[] = {
    {"long", no_argument, NULL, 'l'},
    CLI_FILTER_OPTIONS,
    {NULL, 0, NULL, 0},
  };
  cli_filter cf;
  if (!cli_filter_init(&cf, argc)) return CLI_EXIT_FAIL;
  kh_vault *v = NULL;
  char *prefix = NULL;
  int rc = CLI_EXIT_FAIL;
  struct ls_ctx ctx = {false};
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "l", longopts, NULL)) != -1) {
    switch (c) {
    case 'l': ctx.lng = true; break;
    case CLI_OPT_HOST: case CLI_OPT_PATH: case CLI_OPT_TAG:
      if (!cli_filter_add(&cf, c, optarg, "ls")) { rc = cli_usage("ls"); goto out; }
      break;
    default: rc = cli_usage("ls"); goto out;
    }
  }
  int rest = argc - optind;
  if (rest < 1 || rest > 2) {
    cli_msgf(rest < 1 ? "ls: no SNAPSHOT given" : "ls: too many arguments");
    rc = cli_usage("ls");
    goto out;
  }
  const char *snap = argv[optind];
  char id[KH_SNAPSHOT_ID_HEX + 1], what[512];
  if (rest == 2) {
    size_t len = strlen(argv[optind + 1]);
    while (len > 1 && argv[optind + 1][len - 1] == '/') len--;
    prefix = strndup(argv[optind + 1], len);
    if (!prefix) { cli_msgf("out of memory"); goto out; }
  }
  if (cli_open_vault(&v)) goto out;
  snprintf(what, sizeof what, "ls %s", snap);
  if ((rc = cli_resolve_snapshot(v, snap, &cf, what, id))) goto out;
  rc = CLI_EXIT_FAIL;
  kh_err e = kh_snapshot_walk(v, id, prefix, ls_node, &ctx);
  if (e) {
    if (ferror(stdout)) goto out; /* reported by main() */
    if (prefix) snprintf(what, sizeof what, "ls %s %s", snap, prefix);
    else snprintf(what, sizeof what, "ls %s", snap);
    rc = cli_fail(e, what);
    goto out;
  }
  rc = CLI_EXIT_OK;
out:
  kh_vault_free(v);
  free(prefix);
  cli_filter_release(&cf);
  return rc;
}
