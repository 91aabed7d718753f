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
"    keyhold restore SNAPSHOT --target DIR [--include PATH]... [--threads N]\n"
"\n"
"DESCRIPTION\n"
"    Recreates the files of SNAPSHOT (\"latest\", a full id or a unique\n"
"    prefix) under DIR, which is created if missing: a file backed up as\n"
"    /home/ana/a.txt is restored as DIR/home/ana/a.txt, with its mode, owner\n"
"    (when running as root), times, symlinks and hard links.\n"
"\n"
"    Every byte is authenticated before it is written.  A file whose data\n"
"    fails authentication or cannot be read is not left behind half written:\n"
"    it is removed and reported on stderr as \"keyhold: error: PATH: message\".\n"
"\n"
"    Nothing is ever written outside DIR.  DIR itself may be a symlink, but\n"
"    a symlink found beneath it is never followed: where the snapshot has a\n"
"    file, symlink or special file, an existing entry of that name (a\n"
"    symlink too) is replaced; where it has a directory, anything there but\n"
"    a directory is left alone, and that directory and everything below it\n"
"    are reported and counted as not restored.\n"
"\n"
"    On a terminal (and without --quiet) a progress line is shown on stderr.\n"
"    A summary follows on stdout.  With --json, stdout is one JSON object:\n"
"    {\"snapshot\", \"target\", \"files\", \"dirs\", \"others\", \"bytes\",\n"
"    \"failed\", \"seconds\"}.\n"
"\n"
"OPTIONS\n"
"    --target DIR\n"
"        Where to restore (required).\n"
"    --include PATH\n"
"        Restore only PATH (an absolute path in the snapshot) and what is\n"
"        below it; may be given more than once.  A PATH that is not in the\n"
"        snapshot is reported and makes the exit status 1; the other\n"
"        includes are still restored.\n"
"    --threads N\n"
"        Worker threads (default: 4 per CPU: creating files waits on the\n"
"        disk more than on the CPU).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 if everything was restored intact; 1 if any entry (file, directory,\n"
"    symlink or special file) could not be restored (they are listed on\n"
"    stderr and counted in \"failed\"), if an --include names nothing in the\n"
"    snapshot, or on failure; 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold restore latest --target /tmp/r\n"
"    keyhold restore 1a2b3c4d --target /tmp/r --include /home/ana/Documents\n";

static void restore_warn(kh_err e, const char *path, const char *msg, void *ctx) {
  (void)ctx;
  cli_path_msg("error", path, msg && *msg ? msg : kh_strerror(e));
}

int cmd_restore(int argc, char **argv) {
  static const struct option longopts[] = {
    {"target", required_argument, NULL, 't'},
    {"include", required_argument, NULL, 'i'},
    {"threads", required_argument, NULL, 'j'},
    CLI_FILTER_OPTIONS,
    {NULL, 0, NULL, 0},
  };
  cli_filter cf;
  char id[KH_SNAPSHOT_ID_HEX + 1];
  kh_restore_opts o;
  memset(&o, 0, sizeof o);
  char **inc = calloc((size_t)argc + 1, sizeof *inc);
  size_t ninc = 0;
  int c, rc = CLI_EXIT_FAIL;
  kh_vault *v = NULL;
  if (!inc) { cli_msgf("out of memory"); return CLI_EXIT_FAIL; }
  if (!cli_filter_init(&cf, argc)) { free(inc); return CLI_EXIT_FAIL; }
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 't':
      if (!*optarg) { cli_msgf("restore: --target: empty path"); rc = cli_usage("restore"); goto out; }
      o.target = optarg;
      break;
    case 'i': {
      size_t len = strlen(optarg);
      while (len > 1 && optarg[len - 1] == '/') len--;
      if (len == 0) { cli_msgf("restore: --include: empty path"); rc = cli_usage("restore"); goto out; }
      inc[ninc] = strndup(optarg, len);
      if (!inc[ninc]) { cli_msgf("out of memory"); goto out; }
      ninc++;
      break;
    }
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
  o.includes = ninc ? (const char *const *)inc : NULL;
  o.nincludes = ninc;
  o.progress = cli_progress_enabled() ? cli_progress : NULL;
  o.warn = restore_warn;
  kh_restore_result r;
  memset(&r, 0, sizeof r);
  double t0 = cli_now();
  kh_err e = kh_restore(v, id, &o, &r);
  double secs = cli_now() - t0;
  cli_progress_end();
  if (e && e != KH_ERR_CORRUPT) {
    rc = cli_fail(e, what);
    goto out;
  }
  if (g_opts.json) {
    fputs("{\"snapshot\":", stdout);
    cli_json_cstr(stdout, snap);
    fputs(",\"target\":", stdout);
    cli_json_cstr(stdout, o.target);
    printf(",\"files\":%llu,\"dirs\":%llu,\"others\":%llu,\"bytes\":%llu,\"failed\":%llu,"
           "\"seconds\":%.3f}\n",
           (unsigned long long)r.files, (unsigned long long)r.dirs,
           (unsigned long long)r.others, (unsigned long long)r.bytes,
           (unsigned long long)r.failed, secs);
  } else if (!g_opts.quiet || r.failed || e) {
    char b[CLI_BYTES_BUF], t[32];
    cli_fmt_bytes(b, sizeof b, r.bytes);
    cli_fmt_duration(t, sizeof t, secs);
    printf("files:     %llu\n", (unsigned long long)r.files);
    printf("dirs:      %llu\n", (unsigned long long)r.dirs);
    if (r.others) printf("others:    %llu\n", (unsigned long long)r.others);
    printf("bytes:     %s\n", b);
    printf("time:      %s (%.2f s)\n", t, secs);
    if (r.failed || e)
      printf("failed:    %llu entr%s not restored\n", (unsigned long long)r.failed,
             r.failed == 1 ? "y" : "ies");
  }
  if (r.failed || e) {
    cli_msgf("restore: %llu entr%s could not be restored intact", (unsigned long long)r.failed,
             r.failed == 1 ? "y" : "ies");
    rc = CLI_EXIT_FAIL;
  } else {
    rc = CLI_EXIT_OK;
  }
out:
  kh_vault_free(v);
  for (size_t i = 0; i < ninc; i++) free(inc[i]);
  free(inc);
  cli_filter_release(&cf);
  return rc;
}
