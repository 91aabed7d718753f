/* keyhold restore: recreate a snapshot's files under a target directory. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

const char cmd_restore_help[] =
"NAME\n"
"    keyhold restore - restore a snapshot into a directory\n"
"\n"
"SYNOPSIS\n"
"    keyhold restore SNAPSHOT --target DIR [--include PATTERN]...\n"
"                    [--exclude PATTERN]... [--overwrite WHEN] [--delete]\n"
"                    [--verify] [--dry-run] [--host H]... [--path P]...\n"
"                    [--tag T]... [--threads N]\n"
"\n"
"DESCRIPTION\n"
"    Recreates the files of SNAPSHOT under DIR, which is created if\n"
"    missing: a file backed up as /home/ana/a.txt is restored as\n"
"    DIR/home/ana/a.txt, with its mode, owner (when running as root),\n"
"    times, symlinks and hard links, extended attributes and POSIX ACLs,\n"
"    and the file flags append-only, immutable and no-dump (set last).  An\n"
"    entry the target file system (or a process that is not root) cannot\n"
"    give all of these is restored without them and reported as\n"
"    \"keyhold: warning: PATH: extended attributes not restored (NAMES):\n"
"    reason\" or \"...: file flags (a) not restored: reason\".\n"
"\n"
CLI_HELP_SNAPSHOT_NAMES
"\n"
"    Every byte is authenticated before it is written.  A file whose data\n"
"    fails authentication or cannot be read is not left behind half written:\n"
"    it is removed and reported on stderr as \"keyhold: error: PATH: message\".\n"
"\n"
"    Nothing is ever written outside DIR.  DIR itself may be a symlink, but\n"
"    a symlink found beneath it is never followed: where the snapshot has a\n"
"    file, symlink or special file, an existing entry of that name (a\n"
"    symlink too) is replaced by rename, never written through; where it\n"
"    has a directory, anything there but a directory is left alone, and\n"
"    that directory and everything below it are reported and counted as not\n"
"    restored.  --overwrite and --delete look at entries without following\n"
"    them either, and --delete removes a symlink itself, never what it\n"
"    points to.\n"
"\n"
"    On a terminal (and without -q/--quiet) progress is shown on stderr:\n"
"    percentage, files and bytes, rate, errors, time left and the files being\n"
"    written (not with --dry-run).  A summary follows on stdout: files, dirs,\n"
"    others, bytes (hard links included), and skipped, deleted, verified when\n"
"    those options are used.  With --dry-run, one line per entry first:\n"
"    \"restore PATH\", \"skip PATH\" (kept by --overwrite) or \"delete PATH\"\n"
"    (target paths).  With --json, stdout is NDJSON: {\"message_type\":\n"
"    \"status\", ...} progress objects (about once a second, and one at the\n"
"    end; none with --dry-run or --quiet), then the summary as the last line:\n"
"    {\"message_type\": \"summary\", \"snapshot\", \"id\", \"target\",\n"
"    \"dry_run\", \"files\", \"dirs\", \"others\", \"bytes\", \"restored\",\n"
"    \"skipped\", \"deleted\", \"verified\", \"failed\", \"warnings\",\n"
"    \"seconds\"} (\"restored\" = files + dirs + others; with --dry-run the\n"
"    counts say what would be done).\n"
"\n"
"OPTIONS\n"
"    --target DIR\n"
"        Where to restore (required).\n"
"    --include PATTERN, --iinclude PATTERN\n"
"        Restore only what PATTERN matches and what is below it, with the\n"
"        directories above it; repeatable.  Patterns are those of keyhold\n"
"        backup --exclude (see keyhold help backup): an absolute path is a\n"
"        pattern matching just that path; '*.pdf' matches at any depth.\n"
"        --iinclude ignores ASCII case.  A PATTERN that matches nothing is\n"
"        reported and makes the exit status 1; the rest is still restored.\n"
"    --exclude PATTERN, --iexclude PATTERN\n"
"        Leave out what PATTERN matches and everything below it; the last\n"
"        matching pattern decides (!PATTERN re-includes).  Repeatable; may\n"
"        be combined with --include.\n"
"    --overwrite WHEN\n"
"        What happens to an existing file, symlink or special file where\n"
"        the snapshot has one: always (the default: replace it), if-changed\n"
"        (keep it when type, size and modification time match the snapshot\n"
"        - a symlink: its target - and give it the snapshot's mode, owner\n"
"        and time), if-newer (replace it only if the snapshot's copy has a\n"
"        later modification time), never (keep whatever is there).\n"
"        Directories are always merged.\n"
"    --delete\n"
"        Make the target match: remove what is not in the snapshot, inside\n"
"        each directory restored whole (without --include: DIR itself and\n"
"        every directory below it; with --include: the directories a\n"
"        PATTERN matches), never elsewhere.  Paths an --exclude matches are\n"
"        kept.  Symlinks are removed, not followed.\n"
"    --verify\n"
"        Re-read every file written (and every file if-changed kept as\n"
"        unchanged) and compare it with the snapshot's content hashes; a\n"
"        mismatch is reported as \"keyhold: error: PATH: verify: ...\" and\n"
"        makes the exit status 1.\n"
"    -n, --dry-run\n"
"        Print what would be restored, kept and deleted; write nothing (DIR\n"
"        is not even created).\n"
CLI_HELP_FILTER_OPTIONS
"    --threads N\n"
"        Worker threads (default: 4 per CPU: creating files waits on the\n"
"        disk more than on the CPU).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 if everything was restored intact; 3 if everything was restored but\n"
"    some entries without all their metadata (counted in \"warnings\"); 1 if\n"
"    any entry (file, directory, symlink or special file) could not be\n"
"    restored or verified (they are listed on stderr and counted in\n"
"    \"failed\"), if an --include matches nothing in the snapshot, or on\n"
"    failure; 2 on a usage error, also when latest would have to choose\n"
"    between several groups.\n"
"\n"
"EXAMPLES\n"
"    keyhold restore --path /home/ana latest --target /tmp/r\n"
"    keyhold restore 1a2b3c4d --target /tmp/r --include /home/ana/Documents\n"
"    keyhold restore latest~1 --target / --include /etc --overwrite if-changed\n"
"    keyhold restore latest --target /srv/copy --delete --verify --dry-run\n";

static void restore_warn(kh_err e, const char *path, const char *msg, void *ctx) {
  (void)ctx;
  cli_path_msg("error", path, msg && *msg ? msg : kh_strerror(e));
}

static void restore_report(int action, const char *path, void *ctx) {
  (void)ctx;
  fputs(action == KH_RESTORE_DELETE ? "delete " : action == KH_RESTORE_SKIP ? "skip " : "restore ",
        stdout);
  cli_print_path(stdout, path, strlen(path));
  putchar('\n');
}

static bool parse_overwrite(const char *s, kh_overwrite *out) {
  static const char *const names[] = {"always", "if-changed", "if-newer", "never"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(s, names[i])) {
      *out = (kh_overwrite)i;
      return true;
    }
  return false;
}

enum { O_INCLUDE = 0x1200, O_IINCLUDE, O_EXCLUDE, O_IEXCLUDE, O_OVERWRITE, O_DELETE, O_VERIFY };

static void restore_meta_warn(kh_err e, const char *path, const char *msg, void *ctx) {
  (void)ctx;
  cli_path_msg("warning", path, msg && *msg ? msg : kh_strerror(e));
}

int cmd_restore(int argc, char **argv) {
  static const struct option longopts[] = {
    {"target", required_argument, NULL, 't'},
    {"include", required_argument, NULL, O_INCLUDE},
    {"iinclude", required_argument, NULL, O_IINCLUDE},
    {"exclude", required_argument, NULL, O_EXCLUDE},
    {"iexclude", required_argument, NULL, O_IEXCLUDE},
    {"overwrite", required_argument, NULL, O_OVERWRITE},
    {"delete", no_argument, NULL, O_DELETE},
    {"verify", no_argument, NULL, O_VERIFY},
    {"dry-run", no_argument, NULL, 'n'},
    {"threads", required_argument, NULL, 'j'},
    CLI_FILTER_OPTIONS,
    {NULL, 0, NULL, 0},
  };
  cli_filter cf;
  char id[KH_SNAPSHOT_ID_HEX + 1];
  kh_restore_opts o;
  memset(&o, 0, sizeof o);
  /* includes and excludes point into argv, trailing slashes cut */
  kh_backup_pattern *inc = calloc((size_t)argc + 1, sizeof *inc);
  kh_backup_pattern *exc = calloc((size_t)argc + 1, sizeof *exc);
  size_t ninc = 0, nexc = 0;
  int c, rc = CLI_EXIT_FAIL;
  kh_vault *v = NULL;
  if (!inc || !exc || !cli_filter_init(&cf, argc)) {
    cli_msgf("out of memory");
    free(inc);
    free(exc);
    return CLI_EXIT_FAIL;
  }
  optind = 0;
  while ((c = getopt_long(argc, argv, "n", longopts, NULL)) != -1) {
    switch (c) {
    case 't':
      if (!*optarg) {
        cli_msgf("restore: --target: empty path");
        rc = cli_usage("restore");
        goto out;
      }
      o.target = optarg;
      break;
    case O_INCLUDE: case O_IINCLUDE: case O_EXCLUDE: case O_IEXCLUDE: {
      bool is_inc = c == O_INCLUDE || c == O_IINCLUDE;
      const char *opt = c == O_INCLUDE ? "include" : c == O_IINCLUDE ? "iinclude"
                        : c == O_EXCLUDE ? "exclude" : "iexclude";
      size_t len = strlen(optarg);
      while (len > 1 && optarg[len - 1] == '/') optarg[--len] = 0;
      kh_err e = KH_OK;
      if (is_inc && optarg[0] == '!')
        cli_msgf("restore: --%s: a pattern to include cannot start with '!' (use --exclude)", opt);
      else if (len == 0)
        cli_msgf("restore: --%s: empty pattern", opt);
      else if ((e = kh_backup_check_pattern(optarg)))
        cli_msgf("restore: --%s: %s", opt, kh_errdetail());
      if (len == 0 || e || (is_inc && optarg[0] == '!')) { rc = cli_usage("restore"); goto out; }
      kh_backup_pattern *p = is_inc ? &inc[ninc++] : &exc[nexc++];
      p->pattern = optarg;
      p->icase = c == O_IINCLUDE || c == O_IEXCLUDE;
      break;
    }
    case O_OVERWRITE:
      if (!parse_overwrite(optarg, &o.overwrite)) {
        cli_msgf("restore: --overwrite: not one of always, if-changed, if-newer, never: %s",
                 optarg);
        rc = cli_usage("restore");
        goto out;
      }
      break;
    case O_DELETE: o.delete_extra = true; break;
    case O_VERIFY: o.verify = true; break;
    case 'n': o.dry_run = true; break;
    case 'j':
      if (!cli_parse_int(optarg, 0, 1024, &o.threads)) {
        cli_msgf("restore: --threads: not a number from 0 to 1024: %s", optarg);
        rc = cli_usage("restore");
        goto out;
      }
      break;
    case CLI_OPT_HOST: case CLI_OPT_PATH: case CLI_OPT_TAG:
      if (!cli_filter_add(&cf, c, optarg, "restore")) { rc = cli_usage("restore"); goto out; }
      break;
    default: rc = cli_usage("restore"); goto out;
    }
  }
  if (argc - optind != 1) {
    cli_msgf(argc - optind < 1 ? "restore: no SNAPSHOT given" : "restore: too many arguments");
    rc = cli_usage("restore");
    goto out;
  }
  if (!o.target) {
    cli_msgf("restore: --target DIR is required");
    rc = cli_usage("restore");
    goto out;
  }
  const char *snap = argv[optind];
  if (cli_open_vault(&v)) goto out;
  char what[300];
  snprintf(what, sizeof what, "restore %s", snap);
  if ((rc = cli_resolve_snapshot(v, snap, &cf, what, id))) goto out;
  rc = CLI_EXIT_FAIL;
  o.includes = ninc ? inc : NULL;
  o.nincludes = ninc;
  o.excludes = nexc ? exc : NULL;
  o.nexcludes = nexc;
  cli_progress_stream();
  o.progress = cli_progress_enabled() && !o.dry_run ? cli_progress : NULL;
  o.warn = restore_warn;
  o.meta_warn = restore_meta_warn;
  o.report = o.dry_run && !g_opts.json ? restore_report : NULL;
  kh_restore_result r;
  memset(&r, 0, sizeof r);
  double t0 = cli_now();
  kh_err e = kh_restore(v, id, &o, &r);
  double secs = cli_now() - t0;
  cli_progress_end();
  if (e && e != KH_ERR_CORRUPT && e != KH_ERR_NOTFOUND) {
    rc = cli_fail(e, what);
    goto out;
  }
  uint64_t restored = r.files + r.dirs + r.others;
  if (g_opts.json) {
    fputs("{\"message_type\":\"summary\",\"snapshot\":", stdout);
    cli_json_cstr(stdout, snap);
    printf(",\"id\":\"%s\",\"target\":", id);
    cli_json_cstr(stdout, o.target);
    printf(",\"dry_run\":%s,\"files\":%llu,\"dirs\":%llu,\"others\":%llu,\"bytes\":%llu,"
           "\"restored\":%llu,\"skipped\":%llu,\"deleted\":%llu,\"verified\":%llu,"
           "\"failed\":%llu,\"warnings\":%llu,\"seconds\":%.3f}\n",
           o.dry_run ? "true" : "false", (unsigned long long)r.files,
           (unsigned long long)r.dirs, (unsigned long long)r.others,
           (unsigned long long)r.bytes, (unsigned long long)restored,
           (unsigned long long)r.skipped, (unsigned long long)r.deleted,
           (unsigned long long)r.verified, (unsigned long long)r.failed,
           (unsigned long long)r.meta_warnings, secs);
  } else if (!g_opts.quiet || r.failed || e || o.dry_run) {
    char b[CLI_BYTES_BUF], t[32];
    cli_fmt_bytes(b, sizeof b, r.bytes);
    cli_fmt_duration(t, sizeof t, secs);
    if (o.dry_run) printf("dry run: nothing was written; would restore:\n");
    printf("files:     %llu\n", (unsigned long long)r.files);
    printf("dirs:      %llu\n", (unsigned long long)r.dirs);
    if (r.others) printf("others:    %llu\n", (unsigned long long)r.others);
    printf("bytes:     %s\n", b);
    if (o.overwrite != KH_OVERWRITE_ALWAYS)
      printf("skipped:   %llu\n", (unsigned long long)r.skipped);
    if (o.delete_extra) printf("deleted:   %llu\n", (unsigned long long)r.deleted);
    if (o.verify && !o.dry_run) printf("verified:  %llu\n", (unsigned long long)r.verified);
    printf("time:      %s (%.2f s)\n", t, secs);
    if (r.meta_warnings)
      printf("warnings:  %llu entr%s without all their metadata\n",
             (unsigned long long)r.meta_warnings, r.meta_warnings == 1 ? "y" : "ies");
    if (r.failed || e == KH_ERR_CORRUPT)
      printf("failed:    %llu entr%s not restored\n", (unsigned long long)r.failed,
             r.failed == 1 ? "y" : "ies");
  }
  if (r.failed || e) {
    if (e && e != KH_ERR_CORRUPT)
      cli_fail(e, what); /* an include that matched nothing (named above) */
    if (r.failed || e == KH_ERR_CORRUPT)
      cli_msgf("restore: %llu entr%s could not be restored intact", (unsigned long long)r.failed,
               r.failed == 1 ? "y" : "ies");
    rc = CLI_EXIT_FAIL;
  } else {
    rc = r.meta_warnings ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
  }
out:
  kh_vault_free(v);
  free(inc);
  free(exc);
  cli_filter_release(&cf);
  return rc;
}
