/* keyhold backup: back up paths into a new signed snapshot. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char cmd_backup_help[] =
"NAME\n"
"    keyhold backup - back up files and directories into a new snapshot\n"
"\n"
"SYNOPSIS\n"
"    keyhold backup [--host NAME] [--tag T]... [--threads N] [SELECTION...] PATH...\n"
"    keyhold backup [SELECTION...] --files-from F [PATH...]\n"
"    keyhold backup --stdin [--stdin-filename NAME]\n"
"\n"
"DESCRIPTION\n"
"    Reads every PATH (recursively for directories), splits files into\n"
"    content-defined chunks, stores the chunks the vault does not have yet\n"
"    (compressed, encrypted, padded) and writes a new snapshot signed by this\n"
"    device.  Relative paths are made absolute: the parent directory is\n"
"    resolved with realpath(3), the last component is kept as given, so a\n"
"    symlink named on the command line is backed up as a symlink.\n""\n"
"    Each file and directory keeps its extended attributes (POSIX ACLs\n"
"    included) and its chattr flags append-only, immutable and no-dump.\n"
"    Files are read to their end whatever size stat(2) reports, so /proc\n"
"    and /sys files are kept whole.\n"
"\n"
"    On a terminal (and without -q/--quiet) progress on stderr shows the\n"
"    percentage, files and bytes done out of the total, the rate, the paths\n"
"    reported so far, the time left and, below, the files being read.  The\n"
"    totals come from a counting walk that runs ahead of the backup, so the\n"
"    time left appears within seconds (\"+\" marks totals still growing).\n"
"\n"
"    A summary follows on stdout: files (new, changed, unmodified), dirs,\n"
"    bytes, the new data and what it takes stored, and the time.  The new\n"
"    snapshot id (64 hex digits) is always the last line of stdout, so\n"
"    scripts can use `| tail -n 1`.  Paths that cannot be read are reported\n"
"    on stderr as \"keyhold: warning: PATH: message\" and left out.\n"
"\n"
"    -v lists each new or changed file on stdout as it is stored (\"new\",\n"
"    \"modified\", then the path and size); -vv every file, \"unmodified\"\n"
"    ones too.  New means the local file cache has no record of the path,\n"
"    modified that its size, inode or times differ (the file was read).\n"
"\n"
"    With --json, stdout is NDJSON: {\"message_type\": \"status\", ...}\n"
"    progress objects (about once a second, and one at the end; with -v\n"
"    also \"verbose_status\" objects), then the summary as the last line:\n"
"    {\"message_type\": \"summary\", \"id\", \"dry_run\", \"interrupted\",\n"
"    \"files\", \"dirs\", \"others\", \"bytes\", \"bytes_read\", \"blobs_new\",\n"
"    \"bytes_new\", \"bytes_new_stored\", \"warnings\", \"seconds\",\n"
"    \"files_new\", \"files_changed\", \"files_unmodified\"}.  With --quiet only\n"
"    the summary.  Fields: docs/cli.md.\n"
"\n"
"OPTIONS\n"
"    -v, -vv\n"
"        List new and changed files (-v) or every file (-vv) as stored.\n"
"    -q, --quiet\n"
"        No progress; only the snapshot id (with --json, only the summary).\n"
"    --host NAME\n"
"        Host name recorded in the snapshot (default: gethostname()).\n"
"    --tag T[,T...]\n"
"        Tags recorded in the snapshot (shown by keyhold snapshots).\n"
"        Repeatable; a comma separates tags; each has 1 to 1024 bytes.\n"
"    --threads N\n"
"        Worker threads (default: the number of CPUs).\n"
"    --stdin\n"
"        Back up standard input (read to its end) as one file instead of\n"
"        PATHs: mode 0644, owned by the caller, modified now.  The exclude\n"
"        options do not apply.  A read error fails the backup.\n"
"    --stdin-filename NAME\n"
"        The file's name in the snapshot (default \"stdin\"); a relative\n"
"        NAME is placed under /, so --stdin-filename db.sql is /db.sql.\n"
"    -n, --dry-run\n"
"        Walk, read and chunk as usual and print the summary (how many\n"
"        bytes are new and what they would take), but write nothing to the\n"
"        region: no data, index, snapshot or lock.  The last line is then\n"
"        \"dry run: nothing was written\" instead of an id (JSON: \"id\"\n"
"        is null, \"dry_run\" true).\n"
"\n"
"SELECTION\n"
"    --exclude PATTERN\n"
"        Leave out what PATTERN matches (see PATTERNS).  Repeatable; the\n"
"        last pattern that matches a path decides.\n"
"    --iexclude PATTERN\n"
"        The same, with ASCII letters matching either case.\n"
"    --exclude-file F, --iexclude-file F\n"
"        Read patterns from F, one a line; blank lines and lines starting\n"
"        with # are ignored, $VAR is not expanded.  F \"-\" is stdin.\n"
"    --exclude-caches\n"
"        In a directory holding a CACHEDIR.TAG that starts with\n"
"        \"Signature: 8a477f597d28d172789f06886806bc55\", keep only the tag.\n"
"    --exclude-if-present NAME\n"
"        In a directory holding a file called NAME, keep only that file.\n"
"        Repeatable.\n"
"    --exclude-larger-than SIZE\n"
"        Leave out regular files larger than SIZE (bytes, or with a K, M,\n"
"        G or T suffix: powers of 1024).\n"
"    -x, --one-file-system\n"
"        Do not descend into other file systems; mount points are kept as\n"
"        empty directories.\n"
"    --files-from F\n"
"        Back up the paths listed in F, one a line (blank lines and lines\n"
"        starting with # ignored; relative to the working directory).\n"
"    --files-from-verbatim F\n"
"        The same with NUL-separated paths, every byte kept (find -print0).\n"
"\n"
"PATTERNS\n"
"    Matched against the absolute path, one component at a time: * any\n"
"    bytes but /, ? one character, [a-z] [!a-z] a byte class, \\x a literal\n"
"    x; a component ** matches any number of components.  A pattern that\n"
"    starts with / is anchored at the root, any other may start at any\n"
"    component (*.o matches /src/a.o).  A pattern that matches a directory\n"
"    leaves out everything below it.  !PATTERN re-includes; an excluded\n"
"    directory is not descended into, so exclude its content instead:\n"
"    --exclude '/home/ana/*' --exclude '!/home/ana/Documents'.\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"INTERRUPTION\n"
"    SIGINT (Ctrl-C) or SIGTERM stops the backup: the packs being filled are\n"
"    finished, everything uploaded is indexed (so the next backup reuses it),\n"
"    the lock is released and no snapshot is written; stderr says\n"
"    \"keyhold: backup interrupted by SIGINT: no snapshot was made; ...\".  A\n"
"    second signal ends the process at once.  While the backup runs, its\n"
"    packs are indexed every 4 packs or 30 seconds, so even a killed backup\n"
"    leaves most of its upload reusable.\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 3 if the snapshot was made but some paths were skipped or\n"
"    read only partially; 1 on failure (no snapshot); 2 on a usage error\n"
"    (also a malformed pattern or SIZE); 130 if interrupted by SIGINT, 143\n"
"    by SIGTERM (no snapshot; what was uploaded is kept).\n"
"\n"
"EXAMPLES\n"
"    keyhold backup ~/Documents ~/Photos\n"
"    id=$(keyhold backup --quiet /etc | tail -n 1)\n"
"    keyhold backup --exclude-caches --exclude '*.o' -x ~\n"
"    find ~/src -name '*.c' -print0 | keyhold backup --files-from-verbatim -\n"
"    pg_dump app | keyhold backup --stdin --stdin-filename app.sql --tag db\n";

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

/* ---- the selection options ------------------------------------------------ */

#define LIST_FILE_MAX (64u << 20) /* bytes of one --exclude-file / --files-from */

typedef struct sel {
  kh_backup_pattern *pats;
  size_t npats, patcap;
  char **paths;               /* absolute, malloc'd */
  size_t npaths, pathcap;
  const char **present;       /* --exclude-if-present names (argv) */
  size_t npresent, presentcap;
  const char **tags;          /* --tag, split at commas (into owned) */
  size_t ntags, tagcap;
  char **owned;               /* pattern strings read from files */
  size_t nowned, ownedcap;
} sel;

static bool grow(void **arr, size_t *cap, size_t n, size_t elem) {
  if (n < *cap) return true;
  size_t nc = *cap ? *cap * 2 : 16;
  void *na = realloc(*arr, nc * elem);
  if (!na) return false;
  *arr = na;
  *cap = nc;
  return true;
}

static bool add_pattern(sel *s, const char *pat, bool icase) {
  if (!grow((void **)&s->pats, &s->patcap, s->npats, sizeof *s->pats)) return false;
  s->pats[s->npats++] = (kh_backup_pattern){pat, icase};
  return true;
}

/* Takes ownership of p (freed on failure too). */
static bool add_owned(sel *s, char *p) {
  if (!p || !grow((void **)&s->owned, &s->ownedcap, s->nowned, sizeof *s->owned)) {
    free(p);
    return false;
  }
  s->owned[s->nowned++] = p;
  return true;
}

/* Makes path absolute and appends it; false: out of memory. */
static bool add_path_arg(sel *s, const char *p) {
  if (!grow((void **)&s->paths, &s->pathcap, s->npaths, sizeof *s->paths)) return false;
  char *a = absolute_path(p);
  if (!a) return false;
  s->paths[s->npaths++] = a;
  return true;
}

static void sel_release(sel *s) {
  for (size_t i = 0; i < s->npaths; i++) free(s->paths[i]);
  for (size_t i = 0; i < s->nowned; i++) free(s->owned[i]);
  free(s->paths);
  free(s->owned);
  free(s->pats);
  free(s->present);
  free(s->tags);
}

/* --tag A[,B...]: each tag 1..1024 bytes.  Returns an exit code or -1. */
static int add_tags(sel *s, const char *arg) {
  for (const char *p = arg;;) {
    size_t n = strcspn(p, ",");
    if (n == 0 || n > 1024) {
      cli_msgf("backup: --tag: a tag must have 1 to 1024 bytes: '%s'", arg);
      return cli_usage("backup");
    }
    char *t = strndup(p, n);
    if (!add_owned(s, t) || !grow((void **)&s->tags, &s->tagcap, s->ntags, sizeof *s->tags)) {
      cli_msgf("out of memory");
      return CLI_EXIT_FAIL;
    }
    s->tags[s->ntags++] = t;
    if (!p[n]) return -1;
    p += n + 1;
  }
}

/* Whole file ("-": standard input) into a NUL-terminated malloc'd buffer.
 * Prints its own error and returns false. */
static bool read_list(const char *opt, const char *name, char **out, size_t *outlen) {
  FILE *f = strcmp(name, "-") ? fopen(name, "rb") : stdin;
  char *buf = NULL;
  size_t len = 0, cap = 0;
  bool ok = false;
  if (!f) {
    cli_msgf("backup: %s: %s: %s", opt, name, strerror(errno));
    return false;
  }
  for (;;) {
    if (len + 4096 + 1 > cap) {
      size_t nc = cap ? cap * 2 : 8192;
      char *nb = realloc(buf, nc);
      if (!nb) { cli_msgf("out of memory"); goto out; }
      buf = nb;
      cap = nc;
    }
    size_t r = fread(buf + len, 1, cap - len - 1, f);
    len += r;
    if (len > LIST_FILE_MAX) {
      cli_msgf("backup: %s: %s: larger than %u bytes", opt, name, LIST_FILE_MAX);
      goto out;
    }
    if (r == 0) break;
  }
  if (ferror(f)) {
    cli_msgf("backup: %s: %s: %s", opt, name, strerror(errno));
    goto out;
  }
  buf[len] = 0;
  *out = buf;
  *outlen = len;
  buf = NULL;
  ok = true;
out:
  free(buf);
  if (f != stdin) fclose(f);
  return ok;
}

/* Next line of buf (from *pos) with surrounding blanks and a trailing CR
 * removed, in place; NULL at the end. */
static char *next_line(char *buf, size_t len, size_t *pos, bool trim_front) {
  if (*pos >= len) return NULL;
  char *l = buf + *pos, *nl = memchr(l, '\n', len - *pos);
  size_t n = nl ? (size_t)(nl - l) : len - *pos;
  *pos += n + (nl ? 1 : 0);
  l[n] = 0;
  while (n && (l[n - 1] == '\r' || (trim_front && (l[n - 1] == ' ' || l[n - 1] == '\t'))))
    l[--n] = 0;
  if (trim_front)
    while (*l == ' ' || *l == '\t') l++;
  return l;
}

/* --exclude-file / --iexclude-file: one pattern a line; blank lines and
 * lines starting with "#" are ignored.  Returns an exit code or -1 (ok). */
static int read_exclude_file(sel *s, const char *opt, const char *name, bool icase) {
  char *buf = NULL, *l;
  size_t len = 0, pos = 0, lineno = 0;
  int rc = CLI_EXIT_FAIL;
  if (!read_list(opt, name, &buf, &len)) goto out;
  while ((l = next_line(buf, len, &pos, true))) {
    lineno++;
    if (!*l || *l == '#') continue;
    if (kh_backup_check_pattern(l)) {
      cli_msgf("backup: %s: %s:%zu: %s", opt, name, lineno, kh_errdetail());
      rc = cli_usage("backup");
      goto out;
    }
    char *copy = strdup(l);
    if (!add_owned(s, copy) || !add_pattern(s, copy, icase)) { cli_msgf("out of memory"); goto out; }
  }
  rc = -1;
out:
  free(buf);
  return rc;
}

/* --files-from (one path a line, "#" comments and blank lines ignored) and
 * --files-from-verbatim (NUL-separated, every byte kept).  Returns an exit
 * code or -1 (ok). */
static int read_files_from(sel *s, const char *opt, const char *name, bool verbatim) {
  char *buf = NULL;
  size_t len = 0, pos = 0;
  int rc = CLI_EXIT_FAIL;
  if (!read_list(opt, name, &buf, &len)) goto out;
  if (verbatim) {
    while (pos < len) {
      char *p = buf + pos;
      size_t n = strnlen(p, len - pos);
      pos += n + 1;
      if (!n) continue; /* "a\0\0b" or a final NUL */
      if (!add_path_arg(s, p)) { cli_msgf("out of memory"); goto out; }
    }
  } else {
    char *l;
    while ((l = next_line(buf, len, &pos, false))) {
      const char *t = l + strspn(l, " \t");
      if (!*t || *t == '#') continue;
      if (!add_path_arg(s, l)) { cli_msgf("out of memory"); goto out; }
    }
  }
  rc = -1;
out:
  free(buf);
  return rc;
}

/* SIZE with an optional K, M, G or T suffix (powers of 1024, either case). */
static bool parse_size(const char *a, uint64_t *out) {
  uint64_t v = 0;
  const char *p = a;
  if (*p < '0' || *p > '9') return false;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  int shift = 0;
  switch (*p) {
  case 0: break;
  case 'k': case 'K': shift = 10; p++; break;
  case 'm': case 'M': shift = 20; p++; break;
  case 'g': case 'G': shift = 30; p++; break;
  case 't': case 'T': shift = 40; p++; break;
  default: return false;
  }
  if (*p || v == 0 || v > (UINT64_MAX >> shift)) return false;
  *out = v << shift;
  return true;
}

/* SIGINT / SIGTERM during the backup: the library is asked to stop (it
 * keeps what it stored); a second signal ends the process at once
 * (SA_RESETHAND). */
static volatile sig_atomic_t backup_signal;

static void on_backup_signal(int sig) { backup_signal = sig; }

static void catch_signals(struct sigaction old[2]) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_backup_signal;
  sa.sa_flags = SA_RESETHAND | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  backup_signal = 0;
  sigaction(SIGINT, &sa, &old[0]);
  sigaction(SIGTERM, &sa, &old[1]);
}

static void restore_signals(const struct sigaction old[2]) {
  sigaction(SIGINT, &old[0], NULL);
  sigaction(SIGTERM, &old[1], NULL);
}

/* -v: new and changed files as they are stored; -vv: every file. */
static void backup_file(int status, const char *path, uint64_t size, void *ctx) {
  (void)ctx;
  if (status == KH_FILE_UNMODIFIED && g_opts.verbose < 2) return;
  const char *action = status == KH_FILE_NEW ? "new" : status == KH_FILE_CHANGED ? "modified"
                                                                                 : "unmodified";
  if (g_opts.json) {
    char *line = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&line, &len);
    if (!m) return;
    fprintf(m, "{\"message_type\":\"verbose_status\",\"action\":\"%s\",\"item\":", action);
    cli_json_cstr(m, path);
    fprintf(m, ",\"data_size\":%llu}\n", (unsigned long long)size);
    if (fclose(m) == 0) cli_out_raw(line);
    free(line);
    return;
  }
  char pre[16], suf[CLI_BYTES_BUF + 8], b[CLI_BYTES_BUF];
  snprintf(pre, sizeof pre, "%-11s", action);
  cli_fmt_bytes(b, sizeof b, size);
  snprintf(suf, sizeof suf, " (%s)", b);
  cli_out_line(pre, path, strlen(path), suf);
}

static void backup_warn(kh_err e, const char *path, const char *msg, void *ctx) {
  (void)ctx;
  cli_path_msg("warning", path, msg && *msg ? msg : kh_strerror(e));
}

/* The summary object (docs/cli.md "backup"). */
static void print_summary_json(const kh_backup_opts *o, const kh_backup_result *r,
                               bool interrupted) {
  fputs("{\"message_type\":\"summary\",", stdout);
  if (o->dry_run || interrupted) printf("\"id\":null,\"dry_run\":%s,", o->dry_run ? "true" : "false");
  else printf("\"id\":\"%s\",\"dry_run\":false,", r->snapshot_id);
  printf("\"interrupted\":%s,", interrupted ? "true" : "false");
  printf("\"files\":%llu,\"dirs\":%llu,\"others\":%llu,\"bytes\":%llu,"
         "\"bytes_read\":%llu,\"blobs_new\":%llu,\"bytes_new\":%llu,"
         "\"bytes_new_stored\":%llu,\"warnings\":%llu,\"seconds\":%.3f,"
         "\"files_new\":%llu,\"files_changed\":%llu,\"files_unmodified\":%llu}\n",
         (unsigned long long)r->files, (unsigned long long)r->dirs,
         (unsigned long long)r->others, (unsigned long long)r->bytes,
         (unsigned long long)r->bytes_read, (unsigned long long)r->blobs_new,
         (unsigned long long)r->bytes_new_plain, (unsigned long long)r->bytes_new_stored,
         (unsigned long long)r->warnings, r->seconds, (unsigned long long)r->files_new,
         (unsigned long long)r->files_changed, (unsigned long long)r->files_unmodified);
}

int cmd_backup(int argc, char **argv) {
  enum { O_HOST = 256, O_THREADS, O_EXCLUDE, O_IEXCLUDE, O_EXCLUDE_FILE, O_IEXCLUDE_FILE,
         O_CACHES, O_PRESENT, O_LARGER, O_FILES_FROM, O_FILES_VERBATIM, O_TAG, O_STDIN, O_STDIN_NAME };
  /* (--dry-run is -n, --one-file-system -x) */
  static const struct option longopts[] = {
    {"host", required_argument, NULL, O_HOST},
    {"threads", required_argument, NULL, O_THREADS},
    {"exclude", required_argument, NULL, O_EXCLUDE},
    {"iexclude", required_argument, NULL, O_IEXCLUDE},
    {"exclude-file", required_argument, NULL, O_EXCLUDE_FILE},
    {"iexclude-file", required_argument, NULL, O_IEXCLUDE_FILE},
    {"exclude-caches", no_argument, NULL, O_CACHES},
    {"exclude-if-present", required_argument, NULL, O_PRESENT},
    {"exclude-larger-than", required_argument, NULL, O_LARGER},
    {"one-file-system", no_argument, NULL, 'x'},
    {"files-from", required_argument, NULL, O_FILES_FROM},
    {"files-from-verbatim", required_argument, NULL, O_FILES_VERBATIM},
    {"tag", required_argument, NULL, O_TAG},
    {"dry-run", no_argument, NULL, 'n'},
    {"stdin", no_argument, NULL, O_STDIN},
    {"stdin-filename", required_argument, NULL, O_STDIN_NAME},
    {NULL, 0, NULL, 0},
  };
  kh_backup_opts o;
  memset(&o, 0, sizeof o);
  sel s;
  memset(&s, 0, sizeof s);
  int c, rc = CLI_EXIT_FAIL, r2;
  bool listed = false; /* --files-from* given: PATH arguments are optional */
  bool use_stdin = false, list_from_stdin = false;
  const char *stdin_name = NULL;
  char *stdin_abs = NULL;
  kh_vault *v = NULL;
  optind = 0;
  while ((c = getopt_long(argc, argv, "xn", longopts, NULL)) != -1) {
    switch (c) {
    case O_HOST:
      if (!*optarg) {
        cli_msgf("backup: --host: empty name");
        rc = cli_usage("backup");
        goto out;
      }
      o.host = optarg;
      break;
    case O_THREADS:
      if (!cli_parse_int(optarg, 0, 1024, &o.threads)) {
        cli_msgf("backup: --threads: not a number from 0 to 1024: %s", optarg);
        rc = cli_usage("backup");
        goto out;
      }
      break;
    case O_EXCLUDE:
    case O_IEXCLUDE:
      if (kh_backup_check_pattern(optarg)) {
        cli_msgf("backup: --%s: %s", c == O_EXCLUDE ? "exclude" : "iexclude", kh_errdetail());
        rc = cli_usage("backup");
        goto out;
      }
      if (!add_pattern(&s, optarg, c == O_IEXCLUDE)) { cli_msgf("out of memory"); goto out; }
      break;
    case O_EXCLUDE_FILE:
    case O_IEXCLUDE_FILE:
      r2 = read_exclude_file(&s, c == O_EXCLUDE_FILE ? "--exclude-file" : "--iexclude-file",
                             optarg, c == O_IEXCLUDE_FILE);
      if (r2 >= 0) { rc = r2; goto out; }
      break;
    case O_CACHES: o.exclude_caches = true; break;
    case O_PRESENT:
      if (!*optarg || strchr(optarg, '/')) {
        cli_msgf("backup: --exclude-if-present: not a file name: '%s'", optarg);
        rc = cli_usage("backup");
        goto out;
      }
      if (!grow((void **)&s.present, &s.presentcap, s.npresent, sizeof *s.present)) {
        cli_msgf("out of memory");
        goto out;
      }
      s.present[s.npresent++] = optarg;
      break;
    case O_LARGER:
      if (!parse_size(optarg, &o.exclude_larger_than)) {
        cli_msgf("backup: --exclude-larger-than: not a size (like 500K, 2M, 1G): %s", optarg);
        rc = cli_usage("backup");
        goto out;
      }
      break;
    case 'x': o.one_file_system = true; break;
    case 'n': o.dry_run = true; break;
    case O_STDIN: use_stdin = true; break;
    case O_STDIN_NAME: stdin_name = optarg; break;
    case O_TAG:
      r2 = add_tags(&s, optarg);
      if (r2 >= 0) { rc = r2; goto out; }
      break;
    case O_FILES_FROM:
    case O_FILES_VERBATIM:
      listed = true;
      if (!strcmp(optarg, "-")) list_from_stdin = true;
      r2 = read_files_from(&s, c == O_FILES_FROM ? "--files-from" : "--files-from-verbatim",
                           optarg, c == O_FILES_VERBATIM);
      if (r2 >= 0) { rc = r2; goto out; }
      break;
    default: rc = cli_usage("backup"); goto out;
    }
  }
  if ((use_stdin || list_from_stdin) && cli_passcode_uses_stdin()) {
    cli_msgf("backup: standard input cannot carry both the passcode and %s; give the "
             "passcode with --passcode-command, a file or KEYHOLD_PASSCODE",
             use_stdin ? "the data (--stdin)" : "the list of paths");
    rc = cli_usage("backup");
    goto out;
  }
  if (stdin_name && !use_stdin) {
    cli_msgf("backup: --stdin-filename needs --stdin");
    rc = cli_usage("backup");
    goto out;
  }
  if (use_stdin) {
    if (optind < argc || listed) {
      cli_msgf("backup: --stdin takes no PATH and no --files-from list");
      rc = cli_usage("backup");
      goto out;
    }
    const char *nm = stdin_name ? stdin_name : "stdin";
    size_t n = strlen(nm) + 2;
    if (!(stdin_abs = malloc(n))) { cli_msgf("out of memory"); goto out; }
    snprintf(stdin_abs, n, "%s%s", nm[0] == '/' ? "" : "/", nm);
    size_t l = strlen(stdin_abs);
    if (l < 2 || stdin_abs[l - 1] == '/' || strstr(stdin_abs, "//") || has_dot_component(stdin_abs)) {
      cli_msgf("backup: --stdin-filename: not a normalised file name: '%s'", nm);
      rc = cli_usage("backup");
      goto out;
    }
    o.stdin_name = stdin_abs;
    o.stdin_fd = STDIN_FILENO;
  }
  if (optind >= argc && !listed && !use_stdin) {
    cli_msgf("backup: no PATH given");
    rc = cli_usage("backup");
    goto out;
  }
  for (int i = optind; i < argc; i++) {
    if (!*argv[i]) {
      cli_msgf("backup: empty path");
      rc = cli_usage("backup");
      goto out;
    }
    if (!add_path_arg(&s, argv[i])) { cli_msgf("out of memory"); goto out; }
  }
  if (!s.npaths && !use_stdin) {
    cli_msgf("backup: the --files-from lists name no path");
    rc = cli_usage("backup");
    goto out;
  }
  if (cli_open_vault(&v)) goto out;

  o.paths = (const char *const *)s.paths;
  o.npaths = s.npaths;
  o.excludes = s.pats;
  o.nexcludes = s.npats;
  o.exclude_if_present = s.present;
  o.tags = s.tags;
  o.ntags = s.ntags;
  o.nexclude_if_present = s.npresent;
  cli_progress_stream();
  o.progress = cli_progress_enabled() ? cli_progress : NULL;
  o.warn = backup_warn;
  if (g_opts.verbose && !g_opts.quiet) o.file = backup_file;
  kh_backup_result r;
  memset(&r, 0, sizeof r);
  struct sigaction oldsig[2];
  o.cancel = &backup_signal;
  catch_signals(oldsig);
  kh_err e = kh_backup(v, &o, &r);
  restore_signals(oldsig);
  cli_progress_end();
  if (e == KH_ERR_CANCELLED) {
    int sig = backup_signal ? backup_signal : SIGINT;
    char bs[CLI_BYTES_BUF];
    cli_fmt_bytes(bs, sizeof bs, r.bytes_new_stored);
    if (g_opts.json) print_summary_json(&o, &r, true);
    if (o.dry_run)
      cli_msgf("backup interrupted by %s (dry run: nothing was written)",
               sig == SIGTERM ? "SIGTERM" : "SIGINT");
    else
      cli_msgf("backup interrupted by %s: no snapshot was made; the %s stored so far are "
               "kept and the next backup reuses them", sig == SIGTERM ? "SIGTERM" : "SIGINT", bs);
    rc = 128 + sig;
    goto out;
  }
  if (e) { rc = cli_fail(e, "backup"); goto out; }

  if (g_opts.json) {
    print_summary_json(&o, &r, false);
  } else {
    if (!g_opts.quiet) {
      char b[CLI_BYTES_BUF], bn[CLI_BYTES_BUF], bs[CLI_BYTES_BUF], t[32];
      cli_fmt_bytes(b, sizeof b, r.bytes);
      cli_fmt_bytes(bn, sizeof bn, r.bytes_new_plain);
      cli_fmt_bytes(bs, sizeof bs, r.bytes_new_stored);
      cli_fmt_duration(t, sizeof t, r.seconds);
      printf("files:     %llu\n", (unsigned long long)r.files);
      printf("           %llu new, %llu changed, %llu unmodified\n",
             (unsigned long long)r.files_new, (unsigned long long)r.files_changed,
             (unsigned long long)r.files_unmodified);
      printf("dirs:      %llu\n", (unsigned long long)r.dirs);
      if (r.others) printf("others:    %llu\n", (unsigned long long)r.others);
      printf("bytes:     %s\n", b);
      printf("new:       %s (%llu new blobs), %s as %s\n", bn,
             (unsigned long long)r.blobs_new, o.dry_run ? "would be stored" : "stored", bs);
      printf("time:      %s (%.2f s)\n", t, r.seconds);
      if (r.warnings) printf("warnings:  %llu paths skipped or incomplete\n",
                             (unsigned long long)r.warnings);
    }
    if (o.dry_run) printf("dry run: nothing was written\n");
    else printf("%s\n", r.snapshot_id);
  }
  rc = r.warnings ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
out:
  kh_vault_free(v);
  sel_release(&s);
  free(stdin_abs);
  return rc;
}
