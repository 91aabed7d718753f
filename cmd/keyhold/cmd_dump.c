/* keyhold dump: a file's content, or a directory as a tar stream, on stdout. */
#include "cli.h"
#include "tar.h"
#include "zip.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

const char cmd_dump_help[] =
"NAME\n"
"    keyhold dump - write a file or directory of a snapshot to stdout\n"
"\n"
"SYNOPSIS\n"
"    keyhold dump [--archive tar|zip] [--host H]... [--path P]... [--tag T]...\n"
"                 SNAPSHOT PATH\n"
"\n"
"DESCRIPTION\n"
"    Writes PATH (an absolute path in SNAPSHOT) to standard output without\n"
"    restoring it.\n"
"\n"
"    A regular file is written as its bare content, chunk by chunk: memory\n"
"    stays bounded by one chunk whatever the size of the file.\n"
"\n"
"    A directory (or a symlink or special file, or / for the whole\n"
"    snapshot) is written as a POSIX tar stream (pax interchange format):\n"
"    ustar headers, with a pax extended header where a name or link target\n"
"    is longer than 100 bytes or a number does not fit.  Entry names are\n"
"    relative to PATH's parent, as `tar -C PARENT -c NAME` would write them\n"
"    (dumping /home/ana/docs gives docs/, docs/a.txt...; dumping / gives\n"
"    the backed-up paths without their leading slash).  Each entry carries\n"
"    its mode, uid, gid and modification time (whole seconds); symlinks\n"
"    their target; files hard-linked to one another within the dump become\n"
"    tar hard links to the first of them; character and block devices\n"
"    their device numbers; FIFOs are included.  Sockets cannot be stored in\n"
"    tar and are left out with a warning.  User and group names are not\n"
"    stored in snapshots, so the tar has numeric ids only.\n"
"\n"
"    With --archive zip the directory is written as a ZIP archive instead,\n"
"    streamed like the tar: entries are stored (not compressed), each\n"
"    followed by a data descriptor with its CRC-32, and ZIP64 records are\n"
"    used where a size, an offset or the number of entries needs them.\n"
"    Names are as in the tar (directories end in /, UTF-8 names are\n"
"    flagged as such); each entry carries its Unix mode, its uid and gid\n"
"    (\"ux\" extra field) and its modification time (\"UT\" extra field, whole\n"
"    seconds; the MS-DOS time field holds the local time).  Symlinks are\n"
"    stored as Info-ZIP does (the target as content); a hard-linked file\n"
"    is stored again in full each time; devices, FIFOs and sockets cannot\n"
"    be stored in a ZIP and are left out with a warning.  The central\n"
"    directory is kept in memory until the end (about 100 bytes and the\n"
"    name per entry).\n"
"\n"
"    Every byte is authenticated before it is written.  If a chunk is\n"
"    missing or fails authentication, dump stops there with exit status 1\n"
"    and an error on stderr: the output then holds exactly the complete,\n"
"    authenticated chunks before the damaged one (for a tar, the archive is\n"
"    cut short without its end-of-archive blocks, so tar reports it as\n"
"    truncated; a ZIP then lacks its central directory).  Nothing that failed authentication is ever written.\n"
"\n"
"    dump refuses to write to a terminal.  It holds the account's shared\n"
"    lock while it runs, like restore: prune waits for it.\n"
"\n"
CLI_HELP_SNAPSHOT_NAMES
"\n"
"OPTIONS\n"
"    --archive FORMAT\n"
"        Archive format for a directory: tar (the default) or zip.\n"
"        Ignored for a regular file.\n"
CLI_HELP_FILTER_OPTIONS
"    --json\n"
"        Not accepted: dump writes data, not a report (usage error).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success; 1 if the snapshot or PATH does not exist, data is\n"
"    missing or damaged, or the output cannot be written; 2 on a usage\n"
"    error.\n"
"\n"
"EXAMPLES\n"
"    keyhold dump latest /home/ana/notes.txt > notes.txt\n"
"    keyhold dump latest /home/ana/docs | tar -x -C /tmp/r\n"
"    keyhold dump 1a2b3c4d / | gzip > snapshot.tar.gz\n"
"    keyhold dump --archive zip latest /home/ana/docs > docs.zip\n";

/* (dev, ino) -> the tar name of the first file of a hard-linked group */
typedef struct link_slot {
  uint64_t dev, ino;
  uint8_t *name;
  size_t len;
} link_slot;

typedef struct dump_ctx {
  kh_vault *v;
  bool started, tar;
  zip_writer *zw;        /* --archive zip (NULL: tar) */
  size_t base;           /* bytes of the snapshot path stripped from tar names */
  link_slot *links;
  size_t nlinks, cap;
  kh_err e;              /* the library's error that stopped the walk */
  const char *epath;     /* and where */
  char *epath_buf;
  char *edetail;         /* kh_errdetail() when it stopped */
  bool werr;             /* writing stdout failed */
  bool bad;              /* an entry that could not be written (reported) */
} dump_ctx;

static int out_data(const uint8_t *p, size_t n, void *ctx) {
  (void)ctx;
  return fwrite(p, 1, n, stdout) == n ? 0 : 1;
}

static int out_zip(const uint8_t *p, size_t n, void *ctx) {
  dump_ctx *c = ctx;
  return zip_data(c->zw, p, n) ? 1 : 0;
}

static link_slot *link_find(dump_ctx *c, uint64_t dev, uint64_t ino, bool *found) {
  if ((c->nlinks + 1) * 2 > c->cap) {
    size_t nc = c->cap ? c->cap * 2 : 64;
    link_slot *ns = calloc(nc, sizeof *ns);
    if (!ns) return NULL;
    for (size_t i = 0; i < c->cap; i++) {
      if (!c->links[i].name) continue;
      size_t j = (c->links[i].ino * 31 + c->links[i].dev) & (nc - 1);
      while (ns[j].name) j = (j + 1) & (nc - 1);
      ns[j] = c->links[i];
    }
    free(c->links);
    c->links = ns;
    c->cap = nc;
  }
  size_t j = (ino * 31 + dev) & (c->cap - 1);
  while (c->links[j].name) {
    if (c->links[j].dev == dev && c->links[j].ino == ino) {
      *found = true;
      return &c->links[j];
    }
    j = (j + 1) & (c->cap - 1);
  }
  *found = false;
  return &c->links[j];
}

static void set_epath(dump_ctx *c, const kh_node_info *n) {
  free(c->epath_buf);
  c->epath_buf = strndup((const char *)n->path, n->pathlen);
  c->epath = c->epath_buf;
  free(c->edetail);
  c->edetail = strdup(kh_errdetail());
}

static int dump_tar_node(dump_ctx *c, const kh_node_info *n) {
  tar_entry t;
  memset(&t, 0, sizeof t);
  if (n->pathlen <= c->base) return 0;
  t.name = n->path + c->base;
  t.namelen = n->pathlen - c->base;
  t.mode = n->mode & 07777;
  t.uid = n->uid;
  t.gid = n->gid;
  t.mtime = n->mtime_ns >= 0 ? n->mtime_ns / 1000000000 : -((-n->mtime_ns + 999999999) / 1000000000);
  switch (n->type) {
  case KH_NODE_FILE: t.type = '0'; t.size = n->size; break;
  case KH_NODE_DIR: t.type = '5'; break;
  case KH_NODE_SYMLINK: t.type = '2'; t.link = n->link; t.linklen = n->linklen; break;
  case KH_NODE_CHARDEV:
  case KH_NODE_BLOCKDEV:
    t.type = n->type == KH_NODE_CHARDEV ? '3' : '4';
    t.devmajor = major((dev_t)n->rdev);
    t.devminor = minor((dev_t)n->rdev);
    break;
  case KH_NODE_FIFO: t.type = '6'; break;
  default:
    cli_path_msg("warning", (const char *)n->path, "a socket cannot be stored in tar: left out");
    return 0;
  }
  if (n->type == KH_NODE_FILE && n->nlink > 1) {
    bool found;
    link_slot *s = link_find(c, n->dev, n->ino, &found);
    if (!s) { c->e = KH_ERR_NOMEM; set_epath(c, n); return 1; }
    if (found) {
      t.type = '1';
      t.size = 0;
      t.link = s->name;
      t.linklen = s->len;
    } else {
      s->dev = n->dev;
      s->ino = n->ino;
      s->len = t.namelen;
      s->name = malloc(t.namelen + 1);
      if (!s->name) { c->e = KH_ERR_NOMEM; set_epath(c, n); return 1; }
      memcpy(s->name, t.name, t.namelen);
      s->name[t.namelen] = 0;
      c->nlinks++;
    }
  }
  if (tar_write_header(stdout, &t)) {
    if (ferror(stdout)) { c->werr = true; return 1; }
    cli_path_msg("error", (const char *)n->path, "name too long for tar: left out");
    c->bad = true;
    return 0;
  }
  if (t.type != '0') return 0;
  kh_err e = kh_node_read(c->v, n, out_data, c);
  if (e) {
    if (ferror(stdout)) c->werr = true;
    c->e = e;
    set_epath(c, n);
    return 1;
  }
  if (tar_pad(stdout, n->size)) { c->werr = true; return 1; }
  return 0;
}

static int dump_zip_node(dump_ctx *c, const kh_node_info *n) {
  zip_entry z;
  memset(&z, 0, sizeof z);
  if (n->pathlen <= c->base) return 0;
  z.name = n->path + c->base;
  z.namelen = n->pathlen - c->base;
  z.mode = n->mode & 07777;
  z.uid = n->uid;
  z.gid = n->gid;
  z.mtime = n->mtime_ns >= 0 ? n->mtime_ns / 1000000000 : -((-n->mtime_ns + 999999999) / 1000000000);
  switch (n->type) {
  case KH_NODE_FILE: z.type = 'f'; z.size = n->size; break;
  case KH_NODE_DIR: z.type = 'd'; break;
  case KH_NODE_SYMLINK: z.type = 'l'; z.link = n->link; z.linklen = n->linklen; break;
  default:
    cli_path_msg("warning", (const char *)n->path, "a device, FIFO or socket cannot be stored in a zip: left out");
    return 0;
  }
  if (zip_begin(c->zw, &z)) {
    if (ferror(stdout)) { c->werr = true; return 1; }
    c->e = KH_ERR_NOMEM; /* or a name over 64 KiB */
    set_epath(c, n);
    return 1;
  }
  if (z.type != 'f') return 0;
  kh_err e = kh_node_read(c->v, n, out_zip, c);
  if (e) {
    if (ferror(stdout)) c->werr = true;
    c->e = e;
    set_epath(c, n);
    return 1;
  }
  if (zip_end(c->zw)) { c->werr = true; return 1; }
  return 0;
}

static int dump_node(const kh_node_info *n, void *ctx) {
  dump_ctx *c = ctx;
  int stop;
  if (!c->started) {
    c->started = true;
    if (n->type == KH_NODE_FILE) {
      kh_err e = kh_node_read(c->v, n, out_data, c);
      if (e) {
        if (ferror(stdout)) c->werr = true;
        c->e = e;
        set_epath(c, n);
      }
      return 1; /* a file: nothing else */
    }
    c->tar = true;
    size_t k = n->pathlen;
    while (k > 0 && n->path[k - 1] != '/') k--;
    c->base = k; /* up to and including the parent's trailing slash */
  }
  stop = c->zw ? dump_zip_node(c, n) : dump_tar_node(c, n);
  if (!stop && ferror(stdout)) { c->werr = true; stop = 1; }
  return stop;
}

int cmd_dump(int argc, char **argv) {
  static const struct option longopts[] = {
    {"archive", required_argument, NULL, 'a'},
    CLI_FILTER_OPTIONS,
    {NULL, 0, NULL, 0},
  };
  int c, rc = CLI_EXIT_FAIL;
  cli_filter cf;
  char *prefix = NULL;
  dump_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  kh_vault *v = NULL;
  bool locked = false;
  char what[512], id[KH_SNAPSHOT_ID_HEX + 1];
  bool zip = false;
  if (!cli_filter_init(&cf, argc)) return CLI_EXIT_FAIL;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'a':
      if (strcmp(optarg, "tar") != 0 && strcmp(optarg, "zip") != 0) {
        cli_msgf("dump: unsupported archive format '%s' (tar or zip)", optarg);
        rc = cli_usage("dump");
        goto out;
      }
      zip = !strcmp(optarg, "zip");
      break;
    case CLI_OPT_HOST: case CLI_OPT_PATH: case CLI_OPT_TAG:
      if (!cli_filter_add(&cf, c, optarg, "dump")) { rc = cli_usage("dump"); goto out; }
      break;
    default: rc = cli_usage("dump"); goto out;
    }
  }
  int rest = argc - optind;
  if (rest != 2) {
    cli_msgf(rest < 2 ? "dump: SNAPSHOT and PATH are required" : "dump: too many arguments");
    rc = cli_usage("dump");
    goto out;
  }
  if (g_opts.json) {
    cli_msgf("dump: --json does not apply: dump writes data");
    rc = cli_usage("dump");
    goto out;
  }
  if (isatty(fileno(stdout))) {
    cli_msgf("dump: refusing to write binary data to a terminal; redirect stdout");
    rc = CLI_EXIT_USAGE;
    goto out;
  }
  const char *snap = argv[optind], *path = argv[optind + 1];
  if (path[0] != '/') {
    cli_msgf("dump: PATH must be absolute (as in keyhold ls): '%s'", path);
    rc = CLI_EXIT_USAGE;
    goto out;
  }
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/') len--;
  prefix = strndup(path, len);
  if (!prefix) { cli_msgf("out of memory"); goto out; }
  snprintf(what, sizeof what, "dump %s %s", snap, prefix);
  if (zip && !(ctx.zw = zip_new(stdout))) { cli_msgf("out of memory"); goto out; }
  if (cli_open_vault(&v)) goto out;
  ctx.v = v;
  kh_err e = kh_vault_read_lock(v);
  if (e) { rc = cli_fail(e, what); goto out; }
  locked = true;
  if ((rc = cli_resolve_snapshot(v, snap, &cf, what, id))) goto out;
  rc = CLI_EXIT_FAIL;
  if (!strcmp(prefix, "/")) { /* the whole snapshot: its children, as a tar */
    ctx.started = ctx.tar = true;
    ctx.base = 1;
  }
  e = kh_snapshot_walk(v, id, prefix, dump_node, &ctx);
  if (ctx.werr || ferror(stdout)) goto out; /* reported by main() */
  if (ctx.e) {
    if (ctx.edetail && *ctx.edetail)
      cli_msgf("dump %s %s: %s: %s", snap, ctx.epath ? ctx.epath : prefix, kh_strerror(ctx.e),
               ctx.edetail);
    else
      cli_msgf("dump %s %s: %s", snap, ctx.epath ? ctx.epath : prefix, kh_strerror(ctx.e));
    goto out;
  }
  if (e) { rc = cli_fail(e, what); goto out; }
  if (ctx.tar && (ctx.zw ? zip_finish(ctx.zw) : tar_finish(stdout))) goto out;
  rc = ctx.bad ? CLI_EXIT_FAIL : CLI_EXIT_OK;
out:
  if (locked) kh_vault_read_unlock(v);
  kh_vault_free(v);
  for (size_t i = 0; i < ctx.cap; i++) free(ctx.links[i].name);
  free(ctx.links);
  free(ctx.epath_buf);
  free(ctx.edetail);
  zip_free(ctx.zw);
  free(prefix);
  cli_filter_release(&cf);
  return rc;
}
