/* keyhold copy: snapshots of another account (in this or another region)
 * re-encrypted into the current one. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

const char cmd_copy_help[] =
"NAME\n"
"    keyhold copy - copy snapshots from another account into this one\n"
"\n"
"SYNOPSIS\n"
"    keyhold copy [--from-region DIR] [--from-account ID]\n"
"                 [--from-passcode-file F] [--host H]... [--path P]...\n"
"                 [--tag T]... [--json] [SNAPSHOT...]\n"
"\n"
"DESCRIPTION\n"
"    Copies snapshots of the source account (--from-account in\n"
"    --from-region) into the current account (--account in --region, the\n"
"    destination).  The source may live in another region: everything is\n"
"    re-encrypted under the destination's keys on this machine.  Every\n"
"    file's content is read from the source, authenticated, cut with the\n"
"    destination's chunker and stored as a backup of the same bytes would\n"
"    store it, so copies share data with the destination's own backups and\n"
"    with each other; the trees are rebuilt.  Nothing is ever copied as\n"
"    ciphertext: the source's keys never reach the destination.\n"
"\n"
"    SNAPSHOT names source snapshots (see below; --host, --path and --tag\n"
"    choose among the source's snapshots); without any, every snapshot of\n"
"    the source that --host, --path and --tag select (all of them without\n"
"    these options) is copied, oldest first.\n"
"    Each copy keeps the time, host, paths, tags and counts of its source\n"
"    and records the source snapshot's id (shown as copy_of by keyhold\n"
"    snapshots --json); it is signed by this device but ordered as its\n"
"    source was, among the destination's snapshots by time: copying old\n"
"    snapshots never makes one of them \"latest\" over newer ones.\n"
"    Snapshots already copied are skipped: those the destination\n"
"    has a copy of, those that are themselves copies of a destination\n"
"    snapshot, and those copied from the same snapshot as one of the\n"
"    destination's.  A second run therefore copies only what is new.  Each\n"
"    copy is complete (data, index, snapshot) before the next one starts.\n"
"\n"
"    The source passcode is read from --from-passcode-file, else from the\n"
"    file named by KEYHOLD_FROM_PASSCODE_FILE, else asked on the terminal;\n"
"    the destination's as for every command (see keyhold help).  Opening\n"
"    the source enrolls this device in it on first use, as any command\n"
"    does.  copy holds the shared lock of both accounts.\n"
"\n"
"    The output is one line per selected snapshot, \"copied SRC -> ID\" or\n"
"    \"skipped SRC (already copied)\" (SRC is the short id, ID the new full\n"
"    id), then \"N copied, M skipped, X new (Y stored)\".  With --json it\n"
"    is one object {\"copied\": [{\"source\", \"id\"}...], \"skipped\":\n"
"    [source ids], \"blobs_new\", \"bytes_new\", \"bytes_stored\"}.\n"
"\n"
CLI_HELP_SNAPSHOT_NAMES
"\n"
"OPTIONS\n"
CLI_HELP_FILTER_OPTIONS
"    --from-region DIR\n"
"        The source region (default: the destination's region).\n"
"    --from-account ID\n"
"        The source account: an id or a unique prefix (default: the\n"
"        source region's only account).\n"
"    --from-passcode-file F\n"
"        Read the source passcode from the first line of F (\"-\": stdin).\n"
"    --json\n"
"        Machine-readable output (a global option).\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_FROM_PASSCODE_FILE, and KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE,\n"
"    KEYHOLD_ACCOUNT for the destination (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success (also when everything was already copied); 1 if an\n"
"    account cannot be opened, a snapshot does not exist, or data is\n"
"    missing or damaged (the copies finished before stay); 2 on a usage\n"
"    error, or when source and destination are the same account, or when\n"
"    latest would have to choose between several groups of the source.\n"
"\n"
"EXAMPLES\n"
"    keyhold --region /srv/eu copy --from-region /srv/local\n"
"    keyhold copy --from-account 3f2a --from-passcode-file old.pass \\\n"
"        --path /home/ana latest\n"
"    keyhold copy --from-region /srv/local --host laptop\n";

typedef struct copy_out {
  uint64_t n;
  bool json_started_skipped;
  char **skipped;
  size_t nskipped;
} copy_out;

static void on_copy(const kh_snapshot_info *src, const char *new_id, void *vctx) {
  copy_out *o = vctx;
  if (g_opts.json) {
    if (!*new_id) {
      char **ns = realloc(o->skipped, (o->nskipped + 1) * sizeof *ns);
      if (ns && (ns[o->nskipped] = strdup(src->id))) o->nskipped++;
      if (ns) o->skipped = ns;
      return;
    }
    printf("%s{\"source\":\"%s\",\"id\":\"%s\"}", o->n ? "," : "", src->id, new_id);
    o->n++;
  } else if (*new_id) {
    printf("copied %.8s -> %s\n", src->id, new_id);
  } else {
    printf("skipped %.8s (already copied)\n", src->id);
  }
  fflush(stdout);
}

int cmd_copy(int argc, char **argv) {
  static const struct option longopts[] = {
    {"from-region", required_argument, NULL, 'r'},
    {"from-account", required_argument, NULL, 'a'},
    {"from-passcode-file", required_argument, NULL, 'p'},
    CLI_FILTER_OPTIONS,
    {NULL, 0, NULL, 0},
  };
  const char *from_region = NULL, *from_account = NULL, *from_pass = NULL;
  int ch;
  kh_vault *dst = NULL, *src = NULL;
  kh_secret *pass = NULL;
  copy_out out;
  memset(&out, 0, sizeof out);
  int rc = CLI_EXIT_FAIL;
  cli_filter cf;
  kh_snapshot_info *sel = NULL;
  size_t nsel = 0, nids = 0;
  char (*idbuf)[KH_SNAPSHOT_ID_HEX + 1] = NULL;
  const char **ids = NULL;
  if (!cli_filter_init(&cf, argc)) return CLI_EXIT_FAIL;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
    case 'r': from_region = optarg; break;
    case 'a': from_account = optarg; break;
    case 'p': from_pass = optarg; break;
    case CLI_OPT_HOST: case CLI_OPT_PATH: case CLI_OPT_TAG:
      if (!cli_filter_add(&cf, ch, optarg, "copy")) { rc = cli_usage("copy"); goto out; }
      break;
    default: rc = cli_usage("copy"); goto out;
    }
  }
  const char *region;
  char dacct[KH_ACCOUNT_ID_HEX + 1], sacct[KH_ACCOUNT_ID_HEX + 1];
  if (cli_region_path(&region)) { rc = CLI_EXIT_USAGE; goto out; }
  if (!from_region) from_region = region;
  if (!cli_pick_account(region, dacct)) goto out;
  {
    const char *saved = g_opts.account; /* the source: same rules, its own prefix */
    g_opts.account = from_account;
    bool ok = cli_pick_account(from_region, sacct);
    g_opts.account = saved;
    if (!ok) goto out;
  }
  char rid_d[64], rid_s[64];
  if (!kh_region_id(region, rid_d) && !kh_region_id(from_region, rid_s) && !strcmp(rid_d, rid_s) &&
      !strcmp(dacct, sacct)) {
    cli_msgf("copy: the source is the destination account (%s); name another with "
             "--from-region or --from-account", dacct);
    rc = cli_usage("copy");
    goto out;
  }
  if (cli_open_vault(&dst)) goto out;
  kh_err e = cli_read_passcode(from_pass, "KEYHOLD_FROM_PASSCODE_FILE",
                               "Passcode of the source account", false, &pass);
  if (e) goto out;
  kh_open_opts o;
  memset(&o, 0, sizeof o);
  o.region_path = from_region;
  o.account = sacct;
  o.passcode = pass;
  o.no_cache = g_opts.no_cache;
  o.limit_download = g_opts.limit_download;
  if ((e = kh_vault_open(&o, &src))) { rc = cli_fail(e, "open source account"); goto out; }
  /* the snapshots, as full ids: named ones resolved as every verb does
   * (latest of one group, ~N, the filter), else those the filter selects */
  bool filtered = cf.f.nhosts || cf.f.npaths || cf.f.ntags;
  size_t nargs = (size_t)(argc - optind);
  if (!nargs && filtered) {
    if ((e = kh_snapshots_select(src, &cf.f, &sel, &nsel))) {
      rc = cli_fail(e, "copy: source snapshots");
      goto out;
    }
  }
  size_t want = nargs ? nargs : nsel;
  idbuf = calloc(want ? want : 1, sizeof *idbuf);
  ids = calloc(want ? want : 1, sizeof *ids);
  if (!idbuf || !ids) { cli_msgf("out of memory"); goto out; }
  for (; nids < want; nids++) {
    if (nargs) {
      char what[300];
      snprintf(what, sizeof what, "copy: snapshot %s", argv[optind + (int)nids]);
      if ((rc = cli_resolve_snapshot(src, argv[optind + (int)nids], &cf, what, idbuf[nids])))
        goto out;
      rc = CLI_EXIT_FAIL;
    } else {
      snprintf(idbuf[nids], sizeof idbuf[nids], "%s", sel[nids].id);
    }
    ids[nids] = idbuf[nids];
  }
  kh_copy_result r;
  memset(&r, 0, sizeof r);
  if (g_opts.json) fputs("{\"copied\":[", stdout);
  /* a filter that selects nothing copies nothing (kh_copy: none = all) */
  e = nids || !filtered ? kh_copy(dst, src, ids, nids, on_copy, &out, &r) : KH_OK;
  if (e) {
    if (g_opts.json) fputs("]}\n", stdout); /* the copies made so far */
    rc = e == KH_ERR_INVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
    cli_fail(e, "copy");
    goto out;
  }
  char nb[CLI_BYTES_BUF], sb[CLI_BYTES_BUF];
  cli_fmt_bytes(nb, sizeof nb, r.bytes_new_plain);
  cli_fmt_bytes(sb, sizeof sb, r.bytes_new_stored);
  if (g_opts.json) {
    fputs("],\"skipped\":[", stdout);
    for (size_t i = 0; i < out.nskipped; i++) printf("%s\"%s\"", i ? "," : "", out.skipped[i]);
    printf("],\"blobs_new\":%llu,\"bytes_new\":%llu,\"bytes_stored\":%llu}\n",
           (unsigned long long)r.blobs_new, (unsigned long long)r.bytes_new_plain,
           (unsigned long long)r.bytes_new_stored);
  } else {
    printf("%llu copied, %llu skipped, %s new (%s stored)\n", (unsigned long long)r.copied,
           (unsigned long long)r.skipped, nb, sb);
  }
  rc = CLI_EXIT_OK;
out:
  kh_secret_free(pass);
  kh_vault_free(src);
  kh_vault_free(dst);
  for (size_t i = 0; i < out.nskipped; i++) free(out.skipped[i]);
  free(out.skipped);
  free(ids);
  free(idbuf);
  kh_snapshots_free(sel, nsel);
  cli_filter_release(&cf);
  return rc;
}
