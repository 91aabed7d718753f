/* keyhold backup: back up paths into a new signed snapshot. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char cmd_backup_help[] =
"NAME\n"
"    keyhold backup - back up files and directories into a new snapshot\n"
"\n"
"SYNOPSIS\n"
"    keyhold backup [--host NAME] [--threads N] PATH...\n"
"\n"
"DESCRIPTION\n"
"    Reads every PATH (recursively for directories), splits files into\n"
"    content-defined chunks, stores the chunks the vault does not have yet\n"
"    (compressed, encrypted, padded) and writes a new snapshot signed by this\n"
"    device.  Relative paths are made absolute: the parent directory is\n"
"    resolved with realpath(3), the last component is kept as given, so a\n"
"    symlink named on the command line is backed up as a symlink.\n"
"\n"
"    On a terminal (and without --quiet) a progress line on stderr shows\n"
"    files and bytes done out of the total found so far (\"+\" while the scan\n"
"    is still running), the rate and, once the scan is done, the time left.\n"
"\n"
"    A summary follows on stdout, and the new snapshot id (64 hex digits) is\n"
"    always the last line of stdout, so scripts can use `| tail -n 1`.  Paths\n"
"    that cannot be read are reported on stderr as\n"
"    \"keyhold: warning: PATH: message\" and left out of the snapshot.\n"
"\n"
"    With --json, stdout is one JSON object: {\"id\", \"files\", \"dirs\",\n"
"    \"others\", \"bytes\", \"bytes_read\", \"blobs_new\", \"bytes_new\",\n"
"    \"bytes_new_stored\", \"warnings\", \"seconds\"}.\n"
"\n"
"OPTIONS\n"
"    --host NAME\n"
"        Host name recorded in the snapshot (default: gethostname()).\n"
"    --threads N\n"
"        Worker threads (default: the number of CPUs).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 3 if the snapshot was made but some paths were skipped or\n"
"    read only partially; 1 on failure (no snapshot); 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold backup ~/Documents ~/Photos\n"
"    id=$(keyhold backup --quiet /etc | tail -n 1)\n";

/* true if p has a "." or ".." component */
static bool has_dot_component(const char *p) {
  for (const char *c = p; *c;) {
    const char *e = strchr(c, '/');
    size_t n = e ? (size_t)(e - c) : strlen(c);
    if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return true;
    c += n;
    while (*c == '/') c++;
  }
  return false;
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + 1 + strlen(name) + 1;
  char *out = malloc(n);
  if (out) snprintf(out, n, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name);
  return out;
}

/* PATH made absolute without following a final symlink: realpath of the
 * parent plus the last component as given.  An absolute path without "."
 * or ".." components is kept as given.  Returns a malloc'd string (NULL:
 * out of memory). */
static char *absolute_path(const char *p) {
  char buf[PATH_MAX], *copy, *out;
  size_t len = strlen(p);
  while (len > 1 && p[len - 1] == '/') len--; /* "dir/" -> "dir", "/" stays */
  copy = strndup(p, len);
  if (!copy) return NULL;
  if (copy[0] == '/' && !has_dot_component(copy)) return copy;
  char *slash = strrchr(copy, '/');
  const char *base = slash ? slash + 1 : copy;
  if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
    /* the last component is a directory reference: resolve all of it */
    out = realpath(copy, buf) ? strdup(buf) : NULL;
  } else {
    const char *parent = ".";
    if (slash == copy) parent = "/";
    else if (slash) { *slash = 0; parent = copy; }
    out = realpath(parent, buf) ? join(buf, base) : NULL;
    if (slash && slash != copy) *slash = '/';
  }
  if (!out) {
    /* Unresolvable: let the library report the path as unreadable, but
     * still never put a relative path into a snapshot. */
    if (copy[0] == '/' || !getcwd(buf, sizeof buf)) return copy;
    out = join(buf, copy);
  }
  free(copy);
  return out;
}

static void backup_warn(kh_err e, const char *path, const char *msg, void *ctx) {
  (void)ctx;
  cli_path_msg("warning", path, msg && *msg ? msg : kh_strerror(e));
}

int cmd_backup(int argc, char **argv) {
  static const struct option longopts[] = {
    {"host", required_argument, NULL, 'H'},
    {"threads", required_argument, NULL, 't'},
    {NULL, 0, NULL, 0},
  };
  kh_backup_opts o;
  memset(&o, 0, sizeof o);
  int c, rc = CLI_EXIT_FAIL;
  char **paths = NULL;
  size_t npaths = 0;
  kh_vault *v = NULL;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'H':
      if (!*optarg) {
        cli_msgf("backup: --host: empty name");
        return cli_usage("backup");
      }
      o.host = optarg;
      break;
    case 't':
      if (!cli_parse_int(optarg, 0, 1024, &o.threads)) {
        cli_msgf("backup: --threads: not a number from 0 to 1024: %s", optarg);
        return cli_usage("backup");
      }
      break;
    default: return cli_usage("backup");
    }
  }
  if (optind >= argc) {
    cli_msgf("backup: no PATH given");
    return cli_usage("backup");
  }
  npaths = (size_t)(argc - optind);
  paths = calloc(npaths, sizeof *paths);
  if (!paths) { cli_msgf("out of memory"); goto out; }
  for (size_t i = 0; i < npaths; i++) {
    if (!*argv[optind + (int)i]) {
      cli_msgf("backup: empty path");
      rc = cli_usage("backup");
      goto out;
    }
    paths[i] = absolute_path(argv[optind + (int)i]);
    if (!paths[i]) { cli_msgf("out of memory"); goto out; }
  }
  if (cli_open_vault(&v)) goto out;

  o.paths = (const char *const *)paths;
  o.npaths = npaths;
  o.progress = cli_progress_enabled() ? cli_progress : NULL;
  o.warn = backup_warn;
  kh_backup_result r;
  memset(&r, 0, sizeof r);
  kh_err e = kh_backup(v, &o, &r);
  cli_progress_end();
  if (e) { rc = cli_fail(e, "backup"); goto out; }

  if (g_opts.json) {
    printf("{\"id\":\"%s\",\"files\":%llu,\"dirs\":%llu,\"others\":%llu,\"bytes\":%llu,"
           "\"bytes_read\":%llu,\"blobs_new\":%llu,\"bytes_new\":%llu,"
           "\"bytes_new_stored\":%llu,\"warnings\":%llu,\"seconds\":%.3f}\n",
           r.snapshot_id, (unsigned long long)r.files, (unsigned long long)r.dirs,
           (unsigned long long)r.others, (unsigned long long)r.bytes,
           (unsigned long long)r.bytes_read, (unsigned long long)r.blobs_new,
           (unsigned long long)r.bytes_new_plain, (unsigned long long)r.bytes_new_stored,
           (unsigned long long)r.warnings, r.seconds);
  } else {
    if (!g_opts.quiet) {
      char b[CLI_BYTES_BUF], bn[CLI_BYTES_BUF], bs[CLI_BYTES_BUF], t[32];
      cli_fmt_bytes(b, sizeof b, r.bytes);
      cli_fmt_bytes(bn, sizeof bn, r.bytes_new_plain);
      cli_fmt_bytes(bs, sizeof bs, r.bytes_new_stored);
      cli_fmt_duration(t, sizeof t, r.seconds);
      printf("files:     %llu\n", (unsigned long long)r.files);
      printf("dirs:      %llu\n", (unsigned long long)r.dirs);
      if (r.others) printf("others:    %llu\n", (unsigned long long)r.others);
      printf("bytes:     %s\n", b);
      printf("new:       %s (%llu new blobs), stored as %s\n", bn,
             (unsigned long long)r.blobs_new, bs);
      printf("time:      %s (%.2f s)\n", t, r.seconds);
      if (r.warnings) printf("warnings:  %llu paths skipped or incomplete\n",
                             (unsigned long long)r.warnings);
    }
    printf("%s\n", r.snapshot_id);
  }
  rc = r.warnings ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
out:
  kh_vault_free(v);
  if (paths)
    for (size_t i = 0; i < npaths; i++) free(paths[i]);
  free(paths);
  return rc;
}
