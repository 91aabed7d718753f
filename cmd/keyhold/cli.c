/* The keyhold CLI: option state, messages, passcode input, output
 * formatting and the progress line shared by the commands. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

cli_opts g_opts;

#define PASSCODE_MAX 1024

/* ---- messages ----------------------------------------------------------- */

/* One lock for everything written to stderr, so that warnings from library
 * worker threads and the progress line do not interleave. */
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static bool progress_shown; /* a progress line is on the terminal (err_lock) */
static int progress_lines;  /* how many lines it has (the status, then files) */

static void progress_erase_locked(void) {
  if (progress_shown) {
    fputs("\r\033[K", stderr);
    for (int i = 1; i < progress_lines; i++) fputs("\033[1A\033[K", stderr);
    progress_shown = false;
    progress_lines = 0;
  }
}

static void vmsg(const char *kind, const char *fmt, va_list ap) {
  pthread_mutex_lock(&err_lock);
  progress_erase_locked();
  fputs("keyhold: ", stderr);
  if (kind) fputs(kind, stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  fflush(stderr);
  pthread_mutex_unlock(&err_lock);
}

void cli_errorf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmsg("error: ", fmt, ap);
  va_end(ap);
}

void cli_warnf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmsg("warning: ", fmt, ap);
  va_end(ap);
}

void cli_msgf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmsg(NULL, fmt, ap);
  va_end(ap);
}

void cli_path_msg(const char *kind, const char *path, const char *msg) {
  pthread_mutex_lock(&err_lock);
  progress_erase_locked();
  fprintf(stderr, "keyhold: %s: ", kind);
  if (path) cli_print_path(stderr, path, strlen(path));
  fputs(": ", stderr);
  fputs(msg ? msg : "", stderr);
  fputc('\n', stderr);
  fflush(stderr);
  pthread_mutex_unlock(&err_lock);
}

int cli_fail(kh_err e, const char *what) {
  if (e == KH_ERR_PASSCODE) {
    cli_msgf("%s: wrong passcode", what);
    return CLI_EXIT_FAIL;
  }
  const char *detail = kh_errdetail();
  if (detail && *detail)
    cli_msgf("%s: %s: %s", what, kh_strerror(e), detail);
  else
    cli_msgf("%s: %s", what, kh_strerror(e));
  return CLI_EXIT_FAIL;
}

/* ---- help --------------------------------------------------------------- */

bool cli_print_help(FILE *f, const char *cmd) {
  const cli_command *c = cli_command_find(cmd);
  if (!c || !c->help) return false;
  fputs(c->help, f);
  size_t n = strlen(c->help);
  if (n && c->help[n - 1] != '\n') fputc('\n', f);
  return true;
}

/* Help texts are man-page shaped: headings start in column 0, the body is
 * indented.  The usage message is the body of the SYNOPSIS section. */
int cli_usage(const char *cmd) {
  const cli_command *c = cli_command_find(cmd);
  const char *h = c ? c->help : NULL;
  const char *syn = h ? strstr(h, "SYNOPSIS\n") : NULL;
  pthread_mutex_lock(&err_lock);
  progress_erase_locked();
  if (syn) {
    fputs("usage:\n", stderr);
    const char *p = syn + strlen("SYNOPSIS\n");
    while (*p && (*p == ' ' || *p == '\t' || *p == '\n')) {
      const char *e = strchr(p, '\n');
      size_t len = e ? (size_t)(e - p) + 1 : strlen(p);
      if (len > 1) fwrite(p, 1, len, stderr);
      p += len;
    }
  } else {
    fprintf(stderr, "usage: keyhold %s ...\n", cmd);
  }
  fprintf(stderr, "Try 'keyhold help %s' for more information.\n", cmd);
  fflush(stderr);
  pthread_mutex_unlock(&err_lock);
  return CLI_EXIT_USAGE;
}

bool cli_want_help(int argc, char **argv, const char *cmd) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      if (!cli_print_help(stdout, cmd)) printf("keyhold %s: no help available\n", cmd);
      return true;
    }
  }
  return false;
}

/* ---- passcodes ---------------------------------------------------------- */

static void wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n--) *v++ = 0;
}

/* "KEYHOLD_NEW_PASSCODE_FILE" -> "--new-passcode-file", for messages. */
static void option_for_env(const char *env, char *buf, size_t n) {
  const char *s = env;
  if (strncmp(s, "KEYHOLD_", 8) == 0) s += 8;
  size_t j = 0;
  if (n < 4) { if (n) buf[0] = 0; return; }
  buf[j++] = '-';
  buf[j++] = '-';
  for (; *s && j + 1 < n; s++)
    buf[j++] = *s == '_' ? '-' : (char)((*s >= 'A' && *s <= 'Z') ? *s - 'A' + 'a' : *s);
  buf[j] = 0;
}

/* The first line of what fd yields, into a kh_secret.  what names the
 * source in messages ("passcode file F", "standard input", "passcode
 * command 'C'").  Never keeps more than PASSCODE_MAX + 1 bytes of the
 * line.  drain_cap 0: stop reading once the line is in (a file);
 * otherwise read to the end, at most drain_cap bytes (a command's pipe,
 * which must not block on a full pipe or die of SIGPIPE). */
static kh_err passcode_from_fd(int fd, const char *what, size_t drain_cap, kh_secret **out) {
  unsigned char buf[PASSCODE_MAX + 2], junk[512];
  size_t len = 0, total = 0;
  bool line_done = false;
  kh_err e = KH_OK;
  for (;;) {
    unsigned char *dst = line_done ? junk : buf + len;
    size_t room = line_done ? sizeof junk : sizeof buf - len;
    if (room == 0) {
      line_done = true;
      if (!drain_cap) break;
      dst = junk;
      room = sizeof junk;
    }
    ssize_t r = read(fd, dst, room);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      cli_msgf("%s: %s", what, strerror(errno));
      e = KH_ERR_IO;
      goto out;
    }
    if (r == 0) break;
    total += (size_t)r;
    if (drain_cap && total > drain_cap) {
      cli_msgf("%s: output longer than %zu bytes", what, drain_cap);
      e = KH_ERR_TOOBIG;
      goto out;
    }
    if (!line_done) {
      if (memchr(buf + len, '\n', (size_t)r)) line_done = true;
      len += (size_t)r;
      /* a file needs nothing past the first line; a command is drained */
      if (line_done && !drain_cap) break;
    }
  }
  unsigned char *nl = memchr(buf, '\n', len);
  if (nl) len = (size_t)(nl - buf);
  if (len > 0 && buf[len - 1] == '\r') len--;
  if (len > PASSCODE_MAX) {
    cli_msgf("%s: passcode longer than %d bytes", what, PASSCODE_MAX);
    e = KH_ERR_TOOBIG;
    goto out;
  }
  if (len == 0) {
    cli_msgf("%s: empty passcode", what);
    e = KH_ERR_INVAL;
    goto out;
  }
  *out = kh_secret_new(buf, len);
  if (!*out) {
    cli_msgf("passcode: out of memory");
    e = KH_ERR_NOMEM;
  }
out:
  wipe(buf, sizeof buf);
  wipe(junk, sizeof junk);
  return e;
}

/* "-" is standard input. */
static kh_err passcode_from_file(const char *path, kh_secret **out) {
  char what[PATH_MAX + 32];
  if (strcmp(path, "-") == 0)
    return passcode_from_fd(STDIN_FILENO, "passcode from standard input", 0, out);
  snprintf(what, sizeof what, "passcode file %s", path);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    cli_msgf("%s: %s", what, strerror(errno));
    return KH_ERR_IO;
  }
  kh_err e = passcode_from_fd(fd, what, 0, out);
  close(fd);
  return e;
}

#define PASSCODE_COMMAND_MAX (64 * 1024)

/* Run cmd with /bin/sh -c (stdin and stderr inherited) and take the first
 * line of its stdout; a non-zero exit is an error whatever it printed. */
static kh_err passcode_from_command(const char *cmd, kh_secret **out) {
  char what[256];
  snprintf(what, sizeof what, "passcode command '%.200s'", cmd);
  int pfd[2] = {-1, -1};
  pid_t pid = -1;
  kh_err e = KH_OK;
  kh_secret *got = NULL;
  posix_spawn_file_actions_t fa;
  bool fa_init = false;
  if (pipe2(pfd, O_CLOEXEC) != 0) {
    cli_msgf("%s: %s", what, strerror(errno));
    return KH_ERR_IO;
  }
  if (posix_spawn_file_actions_init(&fa) != 0) {
    e = KH_ERR_NOMEM;
    cli_msgf("%s: out of memory", what);
    goto out;
  }
  fa_init = true;
  posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
  char *const av[] = {"sh", "-c", (char *)cmd, NULL};
  int rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, av, environ);
  if (rc != 0) {
    pid = -1;
    cli_msgf("%s: cannot run /bin/sh: %s", what, strerror(rc));
    e = KH_ERR_IO;
    goto out;
  }
  close(pfd[1]);
  pfd[1] = -1;
  e = passcode_from_fd(pfd[0], what, PASSCODE_COMMAND_MAX, &got);
  close(pfd[0]);
  pfd[0] = -1;
  int st = 0;
  if (e) kill(pid, SIGTERM); /* it said too much: stop it */
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  pid = -1;
  if (e) goto out;
  if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
    cli_msgf("%s failed: exit status %d", what, WEXITSTATUS(st));
    e = KH_ERR_IO;
  } else if (WIFSIGNALED(st)) {
    cli_msgf("%s failed: killed by signal %d", what, WTERMSIG(st));
    e = KH_ERR_IO;
  }
out:
  if (fa_init) posix_spawn_file_actions_destroy(&fa);
  if (pfd[0] >= 0) close(pfd[0]);
  if (pfd[1] >= 0) close(pfd[1]);
  if (e) kh_secret_free(got);
  else *out = got;
  return e;
}

bool cli_passcode_uses_stdin(void) {
  if (g_opts.passcode_file) return strcmp(g_opts.passcode_file, "-") == 0;
  if (g_opts.passcode_command) return false;
  const char *f = getenv("KEYHOLD_PASSCODE_FILE");
  return f && strcmp(f, "-") == 0;
}

/* KEYHOLD_PASSCODE: the value itself (the least safe source: any process
 * of the same user can read /proc/PID/environ). */
static kh_err passcode_from_env_value(const char *v, kh_secret **out) {
  size_t len = strlen(v);
  if (len > PASSCODE_MAX) {
    cli_msgf("KEYHOLD_PASSCODE: passcode longer than %d bytes", PASSCODE_MAX);
    return KH_ERR_TOOBIG;
  }
  *out = kh_secret_new(v, len);
  if (!*out) {
    cli_msgf("passcode: out of memory");
    return KH_ERR_NOMEM;
  }
  return KH_OK;
}

/* Terminal state restored by the signal handler if the user interrupts a
 * prompt while echo is off. */
static volatile sig_atomic_t tty_saved;
static int tty_fd = -1;
static struct termios tty_orig;
static const int prompt_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
#define NPROMPT_SIGNALS (sizeof prompt_signals / sizeof prompt_signals[0])
static struct sigaction prompt_oldact[NPROMPT_SIGNALS];

static void prompt_signal(int sig) {
  if (tty_saved) tcsetattr(tty_fd, TCSAFLUSH, &tty_orig);
  tty_saved = 0;
  (void)!write(tty_fd, "\n", 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Read one line from the terminal with echo off into buf (at most max
 * bytes); returns its length, -1 on error (errno), -2 if too long. */
static ssize_t tty_read_line(int fd, const char *prompt, unsigned char *buf, size_t max) {
  struct termios t;
  ssize_t ret = 0;
  size_t len = 0;
  bool toolong = false;
  if (tcgetattr(fd, &tty_orig) != 0) return -1;
  tty_fd = fd;
  t = tty_orig;
  t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
  t.c_lflag |= ICANON;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = prompt_signal;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < NPROMPT_SIGNALS; i++) sigaction(prompt_signals[i], &sa, &prompt_oldact[i]);
  tty_saved = 1;
  if (tcsetattr(fd, TCSAFLUSH, &t) != 0) { ret = -1; goto out; }
  (void)!write(fd, prompt, strlen(prompt));
  for (;;) {
    unsigned char c;
    ssize_t r = read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { ret = -1; goto out; }
    if (r == 0 || c == '\n') break;
    if (len < max) buf[len++] = c;
    else toolong = true;
  }
  if (len > 0 && buf[len - 1] == '\r') len--;
  ret = toolong ? -2 : (ssize_t)len;
out:
  {
    int saved = errno;
    (void)!write(fd, "\n", 1);
    tcsetattr(fd, TCSAFLUSH, &tty_orig);
    tty_saved = 0;
    for (size_t i = 0; i < NPROMPT_SIGNALS; i++) sigaction(prompt_signals[i], &prompt_oldact[i], NULL);
    errno = saved;
  }
  return ret;
}

static kh_err passcode_from_tty(const char *env, const char *prompt, bool confirm,
                                kh_secret **out) {
  unsigned char a[PASSCODE_MAX], b[PASSCODE_MAX];
  kh_err e = KH_OK;
  char opt[64];
  option_for_env(env ? env : "KEYHOLD_PASSCODE_FILE", opt, sizeof opt);
  int fd = -1;
  if (isatty(STDIN_FILENO)) fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (env && strcmp(env, "KEYHOLD_PASSCODE_FILE") == 0)
      cli_msgf("no passcode: use --passcode-file or KEYHOLD_PASSCODE_FILE (or --passcode-command, "
               "KEYHOLD_PASSCODE_COMMAND, KEYHOLD_PASSCODE), or run on a terminal");
    else
      cli_msgf("no passcode: use %s or %s", opt, env ? env : "KEYHOLD_PASSCODE_FILE");
    return KH_ERR_INVAL;
  }
  char p1[128], p2[160];
  snprintf(p1, sizeof p1, "%s: ", prompt ? prompt : "Passcode");
  snprintf(p2, sizeof p2, "Repeat %s: ", prompt ? prompt : "passcode");
  if (prompt && prompt[0] >= 'A' && prompt[0] <= 'Z')
    p2[7] = (char)(p2[7] - 'A' + 'a');
  ssize_t na = tty_read_line(fd, p1, a, sizeof a), nb = 0;
  if (na == -1) { cli_msgf("reading passcode: %s", strerror(errno)); e = KH_ERR_IO; goto out; }
  if (na == -2) { cli_msgf("passcode longer than %d bytes", PASSCODE_MAX); e = KH_ERR_TOOBIG; goto out; }
  if (na == 0) { cli_msgf("empty passcode"); e = KH_ERR_INVAL; goto out; }
  if (confirm) {
    nb = tty_read_line(fd, p2, b, sizeof b);
    if (nb == -1) { cli_msgf("reading passcode: %s", strerror(errno)); e = KH_ERR_IO; goto out; }
    /* Compare without an early exit: the passcode is a secret. */
    unsigned char diff = (unsigned char)(na != nb);
    size_t n = (size_t)na < sizeof b ? (size_t)na : sizeof b;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(a[i] ^ b[i]);
    if (diff) { cli_msgf("passcodes do not match"); e = KH_ERR_INVAL; goto out; }
  }
  *out = kh_secret_new(a, (size_t)na);
  if (!*out) { cli_msgf("passcode: out of memory"); e = KH_ERR_NOMEM; }
out:
  wipe(a, sizeof a);
  wipe(b, sizeof b);
  close(fd);
  return e;
}

static const char *env_set(const char *name) {
  const char *v = name ? getenv(name) : NULL;
  return v && *v ? v : NULL;
}

static bool last_prompted;

bool cli_passcode_will_prompt(const char *opt_file, const char *env) {
  if (opt_file || env_set(env)) return false;
  if (env && strcmp(env, "KEYHOLD_PASSCODE_FILE") == 0 &&
      (g_opts.passcode_command || env_set("KEYHOLD_PASSCODE_COMMAND") ||
       env_set("KEYHOLD_PASSCODE")))
    return false;
  return true;
}

bool cli_passcode_was_prompted(void) {
  return last_prompted;
}

kh_err cli_read_passcode(const char *opt_file, const char *env, const char *prompt,
                         bool confirm, kh_secret **out) {
  *out = NULL;
  last_prompted = false;
  /* The account passcode (env KEYHOLD_PASSCODE_FILE) has more sources; in
   * order: --passcode-file, --passcode-command, KEYHOLD_PASSCODE_FILE,
   * KEYHOLD_PASSCODE_COMMAND, KEYHOLD_PASSCODE, the terminal. */
  bool account = env && strcmp(env, "KEYHOLD_PASSCODE_FILE") == 0;
  if (opt_file) return passcode_from_file(opt_file, out);
  if (account && g_opts.passcode_command)
    return passcode_from_command(g_opts.passcode_command, out);
  const char *file = env_set(env);
  if (file) return passcode_from_file(file, out);
  if (account) {
    const char *v;
    if ((v = env_set("KEYHOLD_PASSCODE_COMMAND"))) return passcode_from_command(v, out);
    if ((v = env_set("KEYHOLD_PASSCODE"))) return passcode_from_env_value(v, out);
  }
  kh_err e = passcode_from_tty(env, prompt, confirm, out);
  last_prompted = e == KH_OK;
  return e;
}

bool cli_is_url(const char *s) {
  return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

kh_err cli_region_path(const char **out) {
  const char *r = g_opts.region;
  if (!r || !*r) r = getenv("KEYHOLD_REGION");
  if (!r || !*r) {
    /* --region is required by every command that reaches here: its absence
     * is a usage error (exit 2) whichever command notices it. */
    cli_msgf("no region: use --region DIR|URL or KEYHOLD_REGION");
    fputs("Try 'keyhold help' for the list of commands and options.\n", stderr);
    g_opts.usage_error = true;
    return KH_ERR_INVAL;
  }
  *out = r;
  return KH_OK;
}

kh_err cli_open_vault(kh_vault **out) {
  const char *region = NULL;
  kh_secret *pass = NULL;
  *out = NULL;
  char account[KH_ACCOUNT_ID_HEX + 1];
  kh_err e = cli_region_path(&region);
  if (e) return e;
  bool server = cli_is_url(region);
  /* server mode: the device's own key opens the account (no passcode), and
   * the account is the one this device belongs to there */
  if (!server) {
    /* a prefix is resolved (and a wrong one reported) before the passcode */
    if (!cli_pick_account(region, account)) return KH_ERR_NOTFOUND;
    e = cli_read_passcode(g_opts.passcode_file, "KEYHOLD_PASSCODE_FILE", "Passcode", false,
                          &pass);
    if (e) return e;
  }
  kh_open_opts o;
  memset(&o, 0, sizeof o);
  o.region_path = region;
  o.ca_file = g_opts.ca_file;
  o.account = server ? g_opts.account : account;
  o.limit_upload = g_opts.limit_upload;
  o.limit_download = g_opts.limit_download;
  o.passcode = pass;
  o.no_cache = g_opts.no_cache;
  e = kh_vault_open(&o, out);
  kh_secret_free(pass);
  if (e) {
    *out = NULL;
    cli_fail(e, "open account");
  }
  return e;
}

/* ---- output ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  size_t len;
  uint32_t v, min;
  if (c < 0x80) { *cp = c; return 1; }
  if (c >= 0xc2 && c <= 0xdf) { len = 2; v = c & 0x1f; min = 0x80; }
  else if (c >= 0xe0 && c <= 0xef) { len = 3; v = c & 0x0f; min = 0x800; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; v = c & 0x07; min = 0x10000; }
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    v = (v << 6) | (s[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *cp = v;
  return len;
}

void cli_json_str(FILE *f, const void *p, size_t n) {
  const unsigned char *s = p;
  fputc('"', f);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len = utf8_seq(s + i, n - i, &cp);
    if (len == 0) { /* invalid byte: keep it visible, as U+00XX */
      fprintf(f, "\\u%04x", s[i]);
      i++;
      continue;
    }
    if (len == 1) {
      unsigned char c = s[i];
      switch (c) {
      case '"': fputs("\\\"", f); break;
      case '\\': fputs("\\\\", f); break;
      case '\n': fputs("\\n", f); break;
      case '\r': fputs("\\r", f); break;
      case '\t': fputs("\\t", f); break;
      case '\b': fputs("\\b", f); break;
      case '\f': fputs("\\f", f); break;
      default:
        if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
      }
    } else {
      fwrite(s + i, 1, len, f);
    }
    i += len;
  }
  fputc('"', f);
}

void cli_json_cstr(FILE *f, const char *s) {
  if (!s) fputs("null", f);
  else cli_json_str(f, s, strlen(s));
}

void cli_print_path(FILE *f, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len = utf8_seq(s + i, n - i, &cp);
    if (len == 1 && s[i] == '\n') {
      fputs("\\n", f);
    } else if (len == 1 && s[i] >= 0x20 && s[i] < 0x7f) {
      fputc(s[i], f);
    } else if (len > 1 && !(cp >= 0x80 && cp < 0xa0)) {
      fwrite(s + i, 1, len, f); /* printable UTF-8; C1 controls are escaped */
    } else {
      if (len == 0) len = 1;
      for (size_t j = 0; j < len; j++) fprintf(f, "\\x%02x", s[i + j]);
    }
    i += len;
  }
}

/* ---- parsing and formatting ------------------------------------------- */

bool cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
  if (!s || *s < '0' || *s > '9') return false;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return false;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (v < min || v > max) return false;
  *out = v;
  return true;
}

bool cli_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out) {
  uint64_t v;
  if (!cli_parse_u64(s, min, max, &v)) return false;
  *out = (uint32_t)v;
  return true;
}

bool cli_parse_int(const char *s, int min, int max, int *out) {
  uint64_t v;
  if (min < 0 || !cli_parse_u64(s, (uint64_t)min, (uint64_t)max, &v)) return false;
  *out = (int)v;
  return true;
}

void cli_fmt_bytes(char *buf, size_t n, uint64_t b) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (b < 1024) { snprintf(buf, n, "%llu B", (unsigned long long)b); return; }
  double v = (double)b;
  int u = 0;
  while (v >= 1024.0 && u < 6) { v /= 1024.0; u++; }
  snprintf(buf, n, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

void cli_fmt_duration(char *buf, size_t n, double secs) {
  if (secs < 0 || secs != secs) secs = 0;
  if (secs > 359999999.0) secs = 359999999.0;
  unsigned long t = (unsigned long)(secs + 0.5);
  if (t >= 3600)
    snprintf(buf, n, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, n, "%lu:%02lu", t / 60, t % 60);
}

static void split_ns(int64_t ns, time_t *sec, long *frac) {
  int64_t s = ns / 1000000000, f = ns % 1000000000;
  if (f < 0) { f += 1000000000; s--; }
  *sec = (time_t)s;
  *frac = (long)f;
}

void cli_fmt_time_rfc3339(char *buf, size_t n, int64_t ns) {
  time_t s;
  long frac;
  struct tm tm;
  split_ns(ns, &s, &frac);
  if (!gmtime_r(&s, &tm)) { snprintf(buf, n, "1970-01-01T00:00:00.000000000Z"); return; }
  snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

void cli_fmt_time_local(char *buf, size_t n, int64_t ns) {
  time_t s;
  long frac;
  struct tm tm;
  split_ns(ns, &s, &frac);
  if (!localtime_r(&s, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm) == 0)
    snprintf(buf, n, "%lld", (long long)s);
}

double cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- progress ----------------------------------------------------------- */

static double progress_last; /* cli_now() of the last redraw (err_lock) */
static bool progress_json;   /* NDJSON status objects on stdout (cli_progress_stream) */
static kh_progress json_last; /* the last status seen (counts only) */
static bool json_pending;    /* json_last not written yet */

bool cli_progress_enabled(void) {
  return progress_json || (!g_opts.quiet && isatty(STDERR_FILENO));
}

void cli_progress_stream(void) {
  progress_json = g_opts.json && !g_opts.quiet;
}

/* Fraction done (bytes, else files), 0 when nothing is known. */
static double progress_fraction(const kh_progress *p) {
  if (p->bytes_total) return p->bytes_done >= p->bytes_total ? 1.0 : (double)p->bytes_done / (double)p->bytes_total;
  if (p->files_total) return p->files_done >= p->files_total ? 1.0 : (double)p->files_done / (double)p->files_total;
  return 0;
}

/* Seconds left, or < 0 when unknown (totals still growing, nothing done). */
static double progress_eta(const kh_progress *p) {
  double f = progress_fraction(p);
  if (!p->scan_done || f <= 0 || p->elapsed < 0.5) return -1;
  return p->elapsed * (1 - f) / f;
}

static void json_status_locked(const kh_progress *p) {
  double eta = progress_eta(p);
  printf("{\"message_type\":\"status\",\"seconds_elapsed\":%.3f,", p->elapsed);
  if (eta >= 0) printf("\"seconds_remaining\":%.0f,", eta);
  printf("\"percent_done\":%.4f,\"total_files\":%llu,\"files_done\":%llu,\"total_bytes\":%llu,"
         "\"bytes_done\":%llu,\"error_count\":%llu,\"scan_finished\":%s,\"current_files\":[",
         progress_fraction(p), (unsigned long long)p->files_total,
         (unsigned long long)p->files_done, (unsigned long long)p->bytes_total,
         (unsigned long long)p->bytes_done, (unsigned long long)p->errors,
         p->scan_done ? "true" : "false");
  for (size_t i = 0; i < p->ncurrent; i++) {
    if (i) putchar(',');
    cli_json_cstr(stdout, p->current[i]);
  }
  fputs("]}\n", stdout);
  fflush(stdout);
}

void cli_progress(const kh_progress *p, void *ctx) {
  (void)ctx;
  if (!p || !cli_progress_enabled()) return;
  double now = cli_now();
  pthread_mutex_lock(&err_lock);
  if (progress_json) {
    json_last = *p;
    json_last.current = NULL; /* valid during the call only */
    json_last.ncurrent = 0;
    json_pending = true;
    if (progress_last == 0 || now - progress_last >= 1.0) {
      progress_last = now;
      json_status_locked(p);
      json_pending = false;
    }
    pthread_mutex_unlock(&err_lock);
    return;
  }
  if (progress_last != 0 && now - progress_last < 0.24) {
    pthread_mutex_unlock(&err_lock);
    return;
  }
  progress_last = now;
  char el[32], bd[CLI_BYTES_BUF], bt[CLI_BYTES_BUF], rate[CLI_BYTES_BUF], eta[40] = "",
       pct[16] = "", errs[32] = "";
  cli_fmt_duration(el, sizeof el, p->elapsed);
  cli_fmt_bytes(bd, sizeof bd, p->bytes_done);
  cli_fmt_bytes(bt, sizeof bt, p->bytes_total);
  double r = p->elapsed > 0.1 ? (double)p->bytes_done / p->elapsed : 0;
  cli_fmt_bytes(rate, sizeof rate, (uint64_t)r);
  double left = progress_eta(p);
  if (left >= 0) {
    char d[32];
    cli_fmt_duration(d, sizeof d, left);
    snprintf(eta, sizeof eta, "  ETA %s", d);
  }
  if (p->scan_done) snprintf(pct, sizeof pct, "%5.1f%%  ", 100 * progress_fraction(p));
  if (p->errors)
    snprintf(errs, sizeof errs, "  %llu error%s", (unsigned long long)p->errors,
             p->errors == 1 ? "" : "s");
  char line[320];
  int len = snprintf(line, sizeof line, "[%s] %s%llu/%llu%s files  %s/%s%s  %s/s%s%s", el, pct,
                     (unsigned long long)p->files_done, (unsigned long long)p->files_total,
                     p->scan_done ? "" : "+", bd, bt, p->scan_done ? "" : "+", rate, errs, eta);
  /* Never wrap: a wrapped line cannot be redrawn. */
  struct winsize ws;
  size_t cols = 0;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1) cols = ws.ws_col;
  if (len > 0 && cols && (size_t)len >= cols) line[cols - 1] = 0;
  progress_erase_locked();
  fputs(line, stderr);
  int lines = 1;
  /* the files in flight, one a line below (at most 4) */
  for (size_t i = 0; i < p->ncurrent && i < 4; i++) {
    char f[320];
    snprintf(f, sizeof f, "  %s", p->current[i]);
    if (cols && strlen(f) >= cols) f[cols - 1] = 0;
    fputs("\n", stderr);
    fputs(f, stderr);
    fputs("\033[K", stderr);
    lines++;
  }
  fflush(stderr);
  progress_shown = true;
  progress_lines = lines;
  pthread_mutex_unlock(&err_lock);
}

void cli_progress_end(void) {
  pthread_mutex_lock(&err_lock);
  progress_erase_locked();
  fflush(stderr);
  if (progress_json && json_pending) {
    json_status_locked(&json_last);
    json_pending = false;
  }
  pthread_mutex_unlock(&err_lock);
}

void cli_out_line(const char *prefix, const void *path, size_t pathlen, const char *suffix) {
  pthread_mutex_lock(&err_lock);
  progress_erase_locked();
  fflush(stderr);
  fputs(prefix, stdout);
  cli_print_path(stdout, path, pathlen);
  fputs(suffix, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  pthread_mutex_unlock(&err_lock);
}

void cli_out_raw(const char *line) {
  pthread_mutex_lock(&err_lock);
  progress_erase_locked();
  fflush(stderr);
  fputs(line, stdout);
  fflush(stdout);
  pthread_mutex_unlock(&err_lock);
}

bool cli_pick_account(const char *region, char out[KH_ACCOUNT_ID_HEX + 1]) {
  char (*ids)[KH_ACCOUNT_ID_HEX + 1] = NULL;
  size_t n = 0, hits = 0, hit = 0;
  bool ok = false;
  kh_err e = kh_region_accounts(region, &ids, &n);
  if (e) {
    cli_fail(e, "open account");
    goto out;
  }
  if (!g_opts.account) {
    if (n == 0) {
      cli_msgf("open account: region %s has no account (run keyhold init)", region);
    } else if (n > 1) {
      cli_msgf("open account: the region has %zu accounts: name one with --account "
               "(see keyhold accounts)", n);
    } else {
      memcpy(out, ids[0], KH_ACCOUNT_ID_HEX + 1);
      ok = true;
    }
    goto out;
  }
  size_t plen = strlen(g_opts.account);
  for (size_t i = 0; i < n; i++)
    if (plen <= KH_ACCOUNT_ID_HEX && strncmp(ids[i], g_opts.account, plen) == 0) {
      hits++;
      hit = i;
    }
  if (hits == 0) {
    cli_msgf("open account: no account %s in this region", g_opts.account);
  } else if (hits > 1) {
    cli_msgf("open account: account prefix %s matches %zu accounts", g_opts.account, hits);
  } else {
    memcpy(out, ids[hit], KH_ACCOUNT_ID_HEX + 1);
    ok = true;
  }
out:
  free(ids);
  return ok;
}

size_t cli_edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return (size_t)-1;
  unsigned d[64][64];
  for (size_t i = 0; i <= la; i++) d[i][0] = (unsigned)i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = (unsigned)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      unsigned cost = a[i - 1] != b[j - 1];
      unsigned v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  return d[la][lb];
}

const char *cli_suggest(const char *word, const char *const *cands, size_t n) {
  const char *best = NULL;
  size_t bd = 3;
  for (size_t i = 0; i < n; i++) {
    size_t d = cli_edit_distance(word, cands[i]);
    if (d < bd) {
      bd = d;
      best = cands[i];
    }
  }
  return best;
}

const char *cli_node_type(int t) {
  switch (t) {
  case KH_NODE_FILE: return "file";
  case KH_NODE_DIR: return "dir";
  case KH_NODE_SYMLINK: return "symlink";
  case KH_NODE_CHARDEV: return "chardev";
  case KH_NODE_BLOCKDEV: return "blockdev";
  case KH_NODE_FIFO: return "fifo";
  case KH_NODE_SOCKET: return "socket";
  default: return "unknown";
  }
}

void cli_mode_string(int type, uint32_t m, char s[11]) {
  static const char tc[] = "?-dlcbps";
  s[0] = type >= 1 && type <= 7 ? tc[type] : '?';
  const char *rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; i++) s[1 + i] = (m & (1u << (8 - i))) ? rwx[i] : '-';
  if (m & 04000) s[3] = (m & 0100) ? 's' : 'S';
  if (m & 02000) s[6] = (m & 0010) ? 's' : 'S';
  if (m & 01000) s[9] = (m & 0001) ? 't' : 'T';
  s[10] = 0;
}
