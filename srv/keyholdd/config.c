/* keyholdd serve --config FILE: the same settings as the command line, one
 * per line (contrib/keyholdd.conf is a commented sample):
 *
 *   # comment
 *   listen = 127.0.0.1:8443
 *   signup = invite
 *
 * A line is `name = value` (or `name value`); the name is a long option of
 * `serve` without its dashes.  The file's settings come first and the
 * command line's after them, so an option given on the command line wins.
 * The file is bounded (64 KiB, 256 settings, lines of 4 KiB) and every
 * name is checked by serve's own option parser, so a misspelt setting is
 * an error, never ignored. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "keyholdd.h"

#define CONF_MAX (64u << 10)
#define CONF_SETTINGS 256
#define CONF_LINE 4096

static char *trim(char *s, char *e)
{
  while (s < e && (*s == ' ' || *s == '\t'))
    s++;
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
    e--;
  *e = 0;
  return s;
}

/* Read path into a NUL-terminated buffer (at most CONF_MAX bytes). */
static char *read_conf(const char *path)
{
  char *buf = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  struct stat st;
  if (fd < 0) {
    fprintf(stderr, "keyholdd: config %s: %s\n", path, strerror(errno));
    return NULL;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    fprintf(stderr, "keyholdd: config %s: not a regular file\n", path);
    goto out;
  }
  if (st.st_size > (off_t)CONF_MAX) {
    fprintf(stderr, "keyholdd: config %s: larger than %u bytes\n", path, CONF_MAX);
    goto out;
  }
  buf = malloc(CONF_MAX + 1);
  size_t n = 0;
  while (buf && n < CONF_MAX) {
    ssize_t r = read(fd, buf + n, CONF_MAX - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      fprintf(stderr, "keyholdd: config %s: %s\n", path, strerror(errno));
      free(buf);
      buf = NULL;
      goto out;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  if (buf) {
    if (memchr(buf, 0, n)) {
      fprintf(stderr, "keyholdd: config %s: NUL byte\n", path);
      free(buf);
      buf = NULL;
      goto out;
    }
    buf[n] = 0;
  }
out:
  close(fd);
  return buf;
}

struct kd_config {
  char *text;    /* the file, split in place into values */
  char *names;   /* "--name" strings */
  char **argv;
};

void kd_config_free(kd_config *c)
{
  if (!c)
    return;
  free(c->text);
  free(c->names);
  free(c->argv);
  free(c);
}

int kd_config_expand(int argc, char **argv, int *nargc, char ***nargv, kd_config **hold)
{
  const char *path = NULL;
  int at = -1, width = 0;
  *hold = NULL;
  *nargc = argc;
  *nargv = argv;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--")) /* options end here */
      break;
    if (!strcmp(argv[i], "--config")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "keyholdd: --config needs a file\n");
        return 2;
      }
      if (path) {
        fprintf(stderr, "keyholdd: --config given twice\n");
        return 2;
      }
      path = argv[i + 1];
      at = i;
      width = 2;
      i++;
    } else if (!strncmp(argv[i], "--config=", 9)) {
      if (path) {
        fprintf(stderr, "keyholdd: --config given twice\n");
        return 2;
      }
      path = argv[i] + 9;
      at = i;
      width = 1;
    }
  }
  if (!path)
    return 0;
  char *buf = read_conf(path);
  if (!buf)
    return 2;
  kd_config *c = calloc(1, sizeof *c);
  char **out = calloc((size_t)argc + 2 * CONF_SETTINGS + 1, sizeof *out);
  char *names = malloc(CONF_MAX + 3 * CONF_SETTINGS);
  if (!c || !out || !names) {
    free(c);
    free(out);
    free(names);
    free(buf);
    fprintf(stderr, "keyholdd: out of memory\n");
    return 1;
  }
  c->text = buf;
  c->names = names;
  c->argv = out;
  size_t used = 0;
  int n = 0, settings = 0, lineno = 0;
  out[n++] = argv[0];
  /* each setting becomes "--name" and "value", in place in buf: the name
   * gets its dashes from a copy made before it */
  char *p = buf;
  int rc = 0;
  while (*p && !rc) {
    lineno++;
    char *nl = strchr(p, '\n');
    char *end = nl ? nl : p + strlen(p);
    char *next = nl ? nl + 1 : end;
    if (end - p > CONF_LINE) {
      fprintf(stderr, "keyholdd: config %s:%d: line longer than %d bytes\n", path, lineno,
              CONF_LINE);
      rc = 2;
      break;
    }
    char *line = trim(p, end);
    p = next;
    if (!*line || *line == '#')
      continue;
    char *sep = line + strcspn(line, " \t=");
    char *val = sep;
    if (*val)
      *val++ = 0;
    val = trim(val, val + strlen(val));
    if (*val == '=')
      val = trim(val + 1, val + strlen(val));
    size_t nl_len = strlen(line);
    bool name_ok = nl_len > 0 && nl_len < 64 && strcmp(line, "config") != 0;
    for (size_t k = 0; name_ok && k < nl_len; k++)
      name_ok = (line[k] >= 'a' && line[k] <= 'z') || (line[k] >= '0' && line[k] <= '9') ||
                line[k] == '-';
    if (!name_ok) {
      fprintf(stderr, "keyholdd: config %s:%d: '%s' is not a setting name\n", path, lineno,
              line);
      rc = 2;
      break;
    }
    if (++settings > CONF_SETTINGS) {
      fprintf(stderr, "keyholdd: config %s: more than %d settings\n", path, CONF_SETTINGS);
      rc = 2;
      break;
    }
    char *opt = names + used; /* names hold at most the file's bytes + 3 a setting */
    opt[0] = opt[1] = '-';
    memcpy(opt + 2, line, nl_len + 1);
    used += nl_len + 3;
    out[n++] = opt;
    if (*val)
      out[n++] = val;
  }
  if (rc) {
    kd_config_free(c);
    return rc;
  }
  for (int i = 1; i < argc; i++)
    if (i < at || i >= at + width)
      out[n++] = argv[i];
  out[n] = NULL;
  *nargc = n;
  *nargv = out;
  *hold = c;
  return 0;
}
