/* keyhold find: search snapshots for names matching patterns. */
#include "cli.h"

#include <fnmatch.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

const char cmd_find_help[] =
"NAME\n"
"    keyhold find - search snapshots for files by name\n"
"\n"
"SYNOPSIS\n"
"    keyhold find [-i] [--pathname] [-l] [--snapshot ID]... [--host H]...\n"
"                 [--path P]... [--tag T]... [--json] PATTERN...\n"
"\n"
"DESCRIPTION\n"
"    Searches the snapshots for nodes (files, directories, symlinks...)\n"
"    whose name matches any PATTERN, and prints each match under the\n"
"    snapshot it was found in.  Only trees are read, never file contents.\n"
"\n"
"    A PATTERN is a shell glob (fnmatch(3): *, ?, [...], \\ quotes the next\n"
"    character) matched against the node's base name: 'report*.pdf' finds\n"
"    /home/ana/docs/report-2024.pdf.  A leading dot is matched by * like\n"
"    any other character.  With --pathname it is matched against the whole\n"
"    absolute path instead, and * then also matches /, as in find -path:\n"
"    '/home/*/.bashrc'.\n"
"\n"
"    By default every snapshot is searched, oldest first.  --snapshot\n"
"    names the snapshots to search (\"latest\", an id or a unique prefix;\n"
"    repeatable); --host, --path and --tag keep only the snapshots they\n"
"    select, as in keyhold snapshots (and a --snapshot name is resolved\n"
"    among them: --snapshot latest --path P is the newest snapshot of P).\n"
"\n"
"    The output is, for each snapshot with matches, a line\n"
"    \"snapshot ID (TIME, HOST):\" then one matching path per line (escaped\n"
"    as in keyhold ls), and at the end \"N matches in M snapshots\".  With\n"
"    -l each path is preceded by the mode string, the size and the\n"
"    modification time (local), as in keyhold ls -l.\n"
"\n"
"    With --json, stdout is one JSON array of objects {\"snapshot\" (64\n"
"    hex digits), \"path\", \"type\" (file, dir, symlink, chardev, blockdev,\n"
"    fifo, socket), \"size\", \"mtime\" (RFC 3339, UTC, nanoseconds)}, in the\n"
"    order found.\n"
"\n"
"    find holds the account's shared lock while it runs.\n"
"\n"
"OPTIONS\n"
"    -i, --ignore-case\n"
"        Match without regard to case (ASCII letters).\n"
"    --pathname\n"
"        Match PATTERN against the whole path, not the base name.\n"
"    -l, --long\n"
"        Show mode, size and modification time.\n"
"    --snapshot ID\n"
"        Search only this snapshot; repeatable.\n"
"    --host H\n"
"        Search only snapshots made on host H (repeatable: any of them).\n"
"    --path P\n"
"        Search only snapshots whose backed-up paths are exactly the --path\n"
"        options given.\n"
"    --tag T[,T...]\n"
"        Search only snapshots carrying every tag of the list (repeatable:\n"
"        any of the lists).\n"
"    --json\n"
"        Machine-readable output (a global option).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success, whether or not anything matched; 1 if a snapshot named\n"
"    by --snapshot does not exist or a tree cannot be read; 2 on a usage\n"
"    error.\n"
"\n"
"EXAMPLES\n"
"    keyhold find '*.pdf'\n"
"    keyhold find -i --snapshot latest 'readme*'\n"
"    keyhold find --pathname '/home/*/.ssh/*' --json | jq -r '.[].path'\n";

typedef struct find_ctx {
  char *const *pats;
  int npats;
  int flags;
  bool pathname, lng;
  const kh_snapshot_info *snap;
  uint64_t matches, in_snap, snaps_with;
} find_ctx;

static int find_node(const kh_node_info *n, void *vctx) {
  find_ctx *c = vctx;
  const char *path = (const char *)n->path; /* NUL-terminated by the walk */
  const char *subject = path;
  if (!c->pathname) {
    const char *slash = strrchr(path, '/');
    if (slash) subject = slash + 1;
  }
  bool hit = false;
  for (int i = 0; i < c->npats && !hit; i++)
    hit = fnmatch(c->pats[i], subject, c->flags) == 0;
  if (!hit) return 0;
  if (g_opts.json) {
    char t[CLI_TIME_BUF];
    cli_fmt_time_rfc3339(t, sizeof t, n->mtime_ns);
    printf("%s{\"snapshot\":\"%s\",\"path\":", c->matches ? "," : "", c->snap->id);
    cli_json_str(stdout, n->path, n->pathlen);
    printf(",\"type\":\"%s\",\"size\":%llu,\"mtime\":\"%s\"}", cli_node_type(n->type),
           (unsigned long long)n->size, t);
  } else {
    if (!c->in_snap) {
      char t[CLI_TIME_BUF];
      cli_fmt_time_local(t, sizeof t, c->snap->time_ns);
      printf("%ssnapshot %.8s (%s, ", c->snaps_with ? "\n" : "", c->snap->id, t);
      const char *h = c->snap->host ? c->snap->host : "";
      cli_print_path(stdout, h, strlen(h));
      fputs("):\n", stdout);
    }
    if (c->lng) {
      char m[11], t[CLI_TIME_BUF];
      cli_mode_string(n->type, n->mode, m);
      cli_fmt_time_local(t, sizeof t, n->mtime_ns);
      printf("%s %12llu %s ", m, (unsigned long long)n->size, t);
    }
    cli_print_path(stdout, n->path, n->pathlen);
    putchar('\n');
  }
  if (!c->in_snap) c->snaps_with++;
  c->in_snap++;
  c->matches++;
  return ferror(stdout) ? 1 : 0;
}

int cmd_find(int argc, char **argv) {
  static const struct option longopts[] = {
    {"ignore-case", no_argument, NULL, 'i'},
    {"pathname", no_argument, NULL, 'P'},
    {"long", no_argument, NULL, 'l'},
    {"snapshot", required_argument, NULL, 's'},
    CLI_FILTER_OPTIONS,
    {NULL, 0, NULL, 0},
  };
  find_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  cli_filter cf;
  char **want = calloc((size_t)argc + 1, sizeof *want);
  char (*wid)[KH_SNAPSHOT_ID_HEX + 1] = NULL;
  size_t nwant = 0;
  kh_vault *v = NULL;
  kh_snapshot_info *s = NULL;
  size_t n = 0;
  bool locked = false;
  int c, rc = CLI_EXIT_FAIL;
  if (!want) { cli_msgf("out of memory"); return CLI_EXIT_FAIL; }
  if (!cli_filter_init(&cf, argc)) { free(want); return CLI_EXIT_FAIL; }
  optind = 0;
  while ((c = getopt_long(argc, argv, "il", longopts, NULL)) != -1) {
    switch (c) {
    case 'i': ctx.flags |= FNM_CASEFOLD; break;
    case 'P': ctx.pathname = true; break;
    case 'l': ctx.lng = true; break;
    case 's': want[nwant++] = optarg; break;
    case CLI_OPT_HOST: case CLI_OPT_PATH: case CLI_OPT_TAG:
      if (!cli_filter_add(&cf, c, optarg, "find")) { rc = cli_usage("find"); goto out; }
      break;
    default: rc = cli_usage("find"); goto out;
    }
  }
  if (optind >= argc) {
    cli_msgf("find: no PATTERN given");
    rc = cli_usage("find");
    goto out;
  }
  ctx.pats = argv + optind;
  ctx.npats = argc - optind;
  if (cli_open_vault(&v)) goto out;
  kh_err e = kh_vault_read_lock(v);
  if (e) { rc = cli_fail(e, "find"); goto out; }
  locked = true;
  if ((e = kh_snapshots_select(v, &cf.f, &s, &n))) { rc = cli_fail(e, "list snapshots"); goto out; }
  if (kh_snapshots_skipped())
    cli_warnf("%llu snapshot(s) failed authentication and are not searched; run keyhold check",
              (unsigned long long)kh_snapshots_skipped());
  if (nwant) {
    if (!(wid = calloc(nwant, sizeof *wid))) { cli_msgf("out of memory"); goto out; }
    for (size_t i = 0; i < nwant; i++) {
      char what[256];
      snprintf(what, sizeof what, "find: snapshot %s", want[i]);
      if ((rc = cli_resolve_snapshot(v, want[i], &cf, what, wid[i]))) goto out;
      rc = CLI_EXIT_FAIL;
    }
  }
  if (g_opts.json) fputc('[', stdout);
  for (size_t i = 0; i < n; i++) {
    if (nwant) {
      bool sel = false;
      for (size_t j = 0; j < nwant && !sel; j++) sel = !strcmp(wid[j], s[i].id);
      if (!sel) continue;
    }
    ctx.snap = &s[i];
    ctx.in_snap = 0;
    e = kh_snapshot_walk(v, s[i].id, NULL, find_node, &ctx);
    if (ferror(stdout)) goto out; /* reported by main() */
    if (e) {
      char what[128];
      snprintf(what, sizeof what, "find in snapshot %.8s", s[i].id);
      rc = cli_fail(e, what);
      goto out;
    }
  }
  if (g_opts.json) fputs("]\n", stdout);
  else
    printf("%s%llu match%s in %llu snapshot%s\n", ctx.matches ? "\n" : "",
           (unsigned long long)ctx.matches, ctx.matches == 1 ? "" : "es",
           (unsigned long long)ctx.snaps_with, ctx.snaps_with == 1 ? "" : "s");
  rc = CLI_EXIT_OK;
out:
  if (locked) kh_vault_read_unlock(v);
  kh_snapshots_free(s, n);
  kh_vault_free(v);
  free(wid);
  free(want);
  cli_filter_release(&cf);
  return rc;
}
