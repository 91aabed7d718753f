/* keyhold repair: rebuild the index from the packs present, and rewrite
 * snapshots whose data is gone (docs/cli.md "repair"). */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

const char cmd_repair_help[] =
"NAME\n"
"    keyhold repair - rebuild the index, rewrite snapshots whose data is gone\n"
"\n"
"SYNOPSIS\n"
"    keyhold repair index [--json]\n"
"    keyhold repair snapshots [--forget] [--dry-run] [--json] [SNAPSHOT...]\n"
"\n"
"DESCRIPTION\n"
"    Brings an account that lost data at the provider (packs deleted,\n"
"    truncated or damaged) back to a state where keyhold check passes and\n"
"    every intact file restores.  The usual order, after check reported\n"
"    damage:\n"
"        keyhold backup ...            (stores again what still exists on disk)\n"
"        keyhold repair index\n"
"        keyhold repair snapshots --forget\n"
"        keyhold check\n"
"    A backup never reuses data that check or an earlier backup found\n"
"    missing or damaged: it stores such data again, so after the backup the\n"
"    older snapshots that need it are whole again once the index is rebuilt.\n"
"\n"
"    repair index\n"
"        Lists the packs the provider holds and reads each one's\n"
"        authenticated header (not its data).  Packs that are gone drop out;\n"
"        a pack whose header is missing or does not authenticate is left\n"
"        out (and named); blobs that check --read-data found damaged are\n"
"        left out.  Takes the exclusive lock, writes one new index that\n"
"        supersedes every old one and only then deletes the old ones and\n"
"        the records of known damage, so an interruption leaves either the\n"
"        old or the new index in force.  Prints a summary: packs, packs\n"
"        missing (were in the index, gone now), packs unreadable, blobs,\n"
"        blobs dropped, indexes replaced.\n"
"\n"
"    repair snapshots\n"
"        Rewrites every snapshot (or the ones named) whose trees reference\n"
"        data that is gone: a file with any chunk missing or known damaged\n"
"        is removed from the snapshot, a directory whose listing is gone is\n"
"        kept empty.  Each removal is printed as\n"
"            snapshot 1a2b3c4d: PATH: message\n"
"        then one line per rewritten snapshot,\n"
"            snapshot 1a2b3c4d: rewritten as 5e6f7a8b (N files removed, M\n"
"            directories emptied)[, original forgotten]\n"
"        and a summary.  The copy keeps the original's time, host, paths\n"
"        and parent, names the original (keyhold snapshots --json shows it\n"
"        as \"original\"), takes its place in the snapshot order, and is\n"
"        signed by this device.  Without --forget the original stays (as\n"
"        restic does); check keeps reporting it until it is forgotten.\n"
"        Snapshots that need no change are left alone; a snapshot object\n"
"        that does not authenticate cannot be repaired and is reported.\n"
"        Run repair index first: data that is only missing from the index\n"
"        is otherwise taken for lost.\n"
"\n"
"    With --json, stdout is one JSON object.  repair index: {\"packs\",\n"
"    \"packs_missing\", \"packs_unreadable\", \"blobs\", \"blobs_dropped\",\n"
"    \"indexes_replaced\", \"problems\": [message...]}.  repair snapshots:\n"
"    {\"dry_run\", \"forget\", \"snapshots\" (examined), \"rewritten\",\n"
"    \"forgotten\", \"unreadable\", \"files_removed\", \"dirs_emptied\",\n"
"    \"removed\": [{\"snapshot\", \"path\" (null if none), \"message\"}...],\n"
"    \"repaired\": [{\"snapshot\", \"new_id\" (null with --dry-run),\n"
"    \"files_removed\", \"dirs_emptied\", \"forgotten\"}...]}.\n"
"\n"
"OPTIONS\n"
"    --forget\n"
"        Remove each original snapshot once its rewritten copy is stored.\n"
"    --dry-run, -n\n"
"        Print what would be removed and rewritten; write nothing.\n"
"    --json\n"
"        Machine-readable output (a global option).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success (also when files had to be removed); 1 on failure, or\n"
"    when some snapshot could not be read (repair snapshots); 2 on a usage\n"
"    error.\n"
"\n"
"EXAMPLES\n"
"    keyhold repair index\n"
"    keyhold repair snapshots --dry-run\n"
"    keyhold repair snapshots --forget && keyhold check\n";

typedef struct item {
  char snap[KH_SNAPSHOT_ID_HEX + 1];
  char new_id[KH_SNAPSHOT_ID_HEX + 1];
  char *path;                /* NULL if none */
  size_t pathlen;
  char *msg;
  uint64_t files, dirs;
  bool forgotten;
} item;

typedef struct items {
  item *v;
  size_t n, cap;
  bool oom;
} items;

static item *items_add(items *l) {
  if (l->oom) return NULL;
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 32;
    item *nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) { l->oom = true; return NULL; }
    l->v = nv;
    l->cap = nc;
  }
  item *it = &l->v[l->n++];
  memset(it, 0, sizeof *it);
  return it;
}

static void items_free(items *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].path);
    free(l->v[i].msg);
  }
  free(l->v);
}

/* removals and problems: printed as they come (human) or kept (JSON) */
static void on_removed(const char *snapshot, const uint8_t *path, size_t pathlen, const char *msg,
                       void *ctx) {
  items *l = ctx;
  if (!g_opts.json) {
    if (snapshot && *snapshot) printf("snapshot %.8s: ", snapshot);
    if (path) {
      cli_print_path(stdout, path, pathlen);
      fputs(": ", stdout);
    }
    cli_print_path(stdout, msg, strlen(msg));
    putchar('\n');
    return;
  }
  item *it = items_add(l);
  if (!it) return;
  snprintf(it->snap, sizeof it->snap, "%s", snapshot ? snapshot : "");
  it->msg = strdup(msg);
  if (path) {
    it->path = malloc(pathlen ? pathlen : 1);
    if (it->path) memcpy(it->path, path, pathlen);
    it->pathlen = pathlen;
  }
  if (!it->msg || (path && !it->path)) l->oom = true;
}

typedef struct rctx {
  items removed, repaired;
} rctx;

static void on_removed_snap(const char *snapshot, const uint8_t *path, size_t pathlen,
                            const char *msg, void *ctx) {
  on_removed(snapshot, path, pathlen, msg, &((rctx *)ctx)->removed);
}

static void on_rewritten(const char *snapshot, const char *new_id, uint64_t files, uint64_t dirs,
                         bool forgotten, void *ctx) {
  rctx *c = ctx;
  if (!g_opts.json) {
    if (*new_id)
      printf("snapshot %.8s: rewritten as %.8s (%llu files removed, %llu directories emptied)%s\n",
             snapshot, new_id, (unsigned long long)files, (unsigned long long)dirs,
             forgotten ? ", original forgotten" : "");
    else
      printf("snapshot %.8s: would be rewritten (%llu files removed, %llu directories emptied)\n",
             snapshot, (unsigned long long)files, (unsigned long long)dirs);
    return;
  }
  item *it = items_add(&c->repaired);
  if (!it) return;
  snprintf(it->snap, sizeof it->snap, "%s", snapshot);
  snprintf(it->new_id, sizeof it->new_id, "%s", new_id);
  it->files = files;
  it->dirs = dirs;
  it->forgotten = forgotten;
}

static int repair_index(void) {
  kh_vault *v = NULL;
  if (cli_open_vault(&v)) return CLI_EXIT_FAIL;
  items probs = {0};
  kh_repair_index_result r;
  kh_err e = kh_repair_index(v, on_removed, &probs, &r);
  kh_vault_free(v);
  if (e) {
    items_free(&probs);
    return cli_fail(e, "repair index");
  }
  if (g_opts.json) {
    printf("{\"packs\":%llu,\"packs_missing\":%llu,\"packs_unreadable\":%llu,\"blobs\":%llu,"
           "\"blobs_dropped\":%llu,\"indexes_replaced\":%llu,\"problems\":[",
           (unsigned long long)r.packs, (unsigned long long)r.packs_missing,
           (unsigned long long)r.packs_unreadable, (unsigned long long)r.blobs,
           (unsigned long long)r.blobs_dropped, (unsigned long long)r.indexes_replaced);
    for (size_t i = 0; i < probs.n; i++) {
      if (i) putchar(',');
      cli_json_cstr(stdout, probs.v[i].msg ? probs.v[i].msg : "");
    }
    fputs("]}\n", stdout);
  } else {
    printf("packs:            %llu\n", (unsigned long long)r.packs);
    printf("packs missing:    %llu\n", (unsigned long long)r.packs_missing);
    printf("packs unreadable: %llu\n", (unsigned long long)r.packs_unreadable);
    printf("blobs:            %llu\n", (unsigned long long)r.blobs);
    printf("blobs dropped:    %llu\n", (unsigned long long)r.blobs_dropped);
    printf("indexes replaced: %llu\n", (unsigned long long)r.indexes_replaced);
  }
  int rc = probs.oom ? cli_fail(KH_ERR_NOMEM, "repair index: output") : CLI_EXIT_OK;
  items_free(&probs);
  return rc;
}

static int repair_snapshots(int argc, char **argv, bool forget, bool dry_run) {
  kh_vault *v = NULL;
  if (cli_open_vault(&v)) return CLI_EXIT_FAIL;
  rctx c = {0};
  kh_repair_snapshots_opts o = {
    .snaps = (const char *const *)argv, .nsnaps = (size_t)argc, .forget = forget,
    .dry_run = dry_run, .removed = on_removed_snap, .rewritten = on_rewritten, .ctx = &c};
  kh_repair_snapshots_result r;
  kh_err e = kh_repair_snapshots(v, &o, &r);
  kh_vault_free(v);
  int rc = CLI_EXIT_OK;
  if (e) {
    rc = cli_fail(e, "repair snapshots");
    goto out;
  }
  if (g_opts.json) {
    printf("{\"dry_run\":%s,\"forget\":%s,\"snapshots\":%llu,\"rewritten\":%llu,\"forgotten\":%llu,"
           "\"unreadable\":%llu,\"files_removed\":%llu,\"dirs_emptied\":%llu,\"removed\":[",
           dry_run ? "true" : "false", forget ? "true" : "false",
           (unsigned long long)r.snapshots, (unsigned long long)r.rewritten,
           (unsigned long long)r.forgotten, (unsigned long long)r.unreadable,
           (unsigned long long)r.files_removed, (unsigned long long)r.dirs_emptied);
    for (size_t i = 0; i < c.removed.n; i++) {
      item *it = &c.removed.v[i];
      printf("%s{\"snapshot\":", i ? "," : "");
      if (it->snap[0]) printf("\"%s\"", it->snap);
      else fputs("null", stdout);
      fputs(",\"path\":", stdout);
      if (it->path) cli_json_str(stdout, it->path, it->pathlen);
      else fputs("null", stdout);
      fputs(",\"message\":", stdout);
      cli_json_cstr(stdout, it->msg ? it->msg : "");
      putchar('}');
    }
    fputs("],\"repaired\":[", stdout);
    for (size_t i = 0; i < c.repaired.n; i++) {
      item *it = &c.repaired.v[i];
      printf("%s{\"snapshot\":\"%s\",\"new_id\":", i ? "," : "", it->snap);
      if (it->new_id[0]) printf("\"%s\"", it->new_id);
      else fputs("null", stdout);
      printf(",\"files_removed\":%llu,\"dirs_emptied\":%llu,\"forgotten\":%s}",
             (unsigned long long)it->files, (unsigned long long)it->dirs,
             it->forgotten ? "true" : "false");
    }
    fputs("]}\n", stdout);
  } else {
    printf("%s %llu of %llu snapshots: %llu files removed, %llu directories emptied",
           dry_run ? "would repair" : "repaired", (unsigned long long)(dry_run ? c.repaired.n : r.rewritten),
           (unsigned long long)r.snapshots, (unsigned long long)r.files_removed,
           (unsigned long long)r.dirs_emptied);
    if (forget && !dry_run) printf(", %llu originals forgotten", (unsigned long long)r.forgotten);
    putchar('\n');
  }
  if (c.removed.oom || c.repaired.oom) rc = cli_fail(KH_ERR_NOMEM, "repair snapshots: output");
  else if (r.unreadable) {
    cli_msgf("repair snapshots: %llu snapshot(s) could not be read and were left alone",
             (unsigned long long)r.unreadable);
    rc = CLI_EXIT_FAIL;
  }
out:
  items_free(&c.removed);
  items_free(&c.repaired);
  return rc;
}

int cmd_repair(int argc, char **argv) {
  static const struct option longopts[] = {
    {"forget", no_argument, NULL, 'f'},
    {"dry-run", no_argument, NULL, 'n'},
    {NULL, 0, NULL, 0},
  };
  bool forget = false, dry_run = false;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "n", longopts, NULL)) != -1) {
    switch (c) {
    case 'f': forget = true; break;
    case 'n': dry_run = true; break;
    default: return cli_usage("repair");
    }
  }
  if (optind >= argc) {
    cli_msgf("repair: missing what to repair: 'index' or 'snapshots'");
    return cli_usage("repair");
  }
  const char *what = argv[optind++];
  if (!strcmp(what, "index")) {
    if (forget || dry_run) {
      cli_msgf("repair index: --forget and --dry-run are for repair snapshots");
      return cli_usage("repair");
    }
    if (optind != argc) {
      cli_msgf("repair index: unexpected argument '%s'", argv[optind]);
      return cli_usage("repair");
    }
    return repair_index();
  }
  if (!strcmp(what, "snapshots"))
    return repair_snapshots(argc - optind, argv + optind, forget, dry_run);
  cli_msgf("repair: unknown subcommand '%s' (index or snapshots)", what);
  return cli_usage("repair");
}
