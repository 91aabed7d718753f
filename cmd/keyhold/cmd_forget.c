/* keyhold forget: remove snapshots, named or chosen by a keep policy. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

const char cmd_forget_help[] =
"NAME\n"
"    keyhold forget - remove snapshots, by id or by a keep policy\n"
"\n"
"SYNOPSIS\n"
"    keyhold forget [--host H]... [--path P]... [--tag T]... [--dry-run]\n"
"                   [--prune] SNAPSHOT...\n"
"    keyhold forget [--host H]... [--path P]... [--tag T]...\n"
"                   [--group-by KEYS] [--keep-last N] [--keep-hourly N]\n"
"                   [--keep-daily N] [--keep-weekly N] [--keep-monthly N]\n"
"                   [--keep-yearly N] [--keep-within DURATION]\n"
"                   [--keep-tag TAG]... [--dry-run] [--prune]\n"
"\n"
"DESCRIPTION\n"
"    Removes snapshots: either the ones named (\"latest\", full ids or unique\n"
"    prefixes), or every snapshot the keep policy does not keep.  Give one\n"
"    or the other, not both.  The data the removed snapshots used stays in\n"
"    the vault until keyhold prune, or --prune.\n"
"\n"
"    --host, --path and --tag limit forget to the snapshots they select\n"
"    (as in keyhold snapshots): the keep policy is applied to those only,\n"
"    every other snapshot is left alone; a named snapshot (an id, latest\n"
"    or latest~N, see keyhold help restore) must be among them.\n"
"\n"
"    The policy is applied to each group of snapshots separately: by\n"
"    default the snapshots of one host with the same paths, so a folder\n"
"    backed up once keeps its only snapshot whatever other folders do.\n"
"    A snapshot kept by any rule is kept.  A policy without a rule that\n"
"    keeps something is refused.  \"Newest\" is the snapshot order of\n"
"    keyhold snapshots: a device's signed counter outranks its clock, so a\n"
"    snapshot made with a clock running ahead does not count as newer than\n"
"    the backups its device made after it; hours, days, weeks, months and\n"
"    years are local calendar periods of that order's times.\n"
"\n"
"    Prints, for each group, a line \"group host H paths P\", then one line\n"
"    per snapshot, newest first: short id, time, host, paths, [tags] and\n"
"    \"keep: \" with the reasons (e.g. \"last 1, daily 2026-11-28\"),\n"
"    \"removed\", or with --dry-run \"remove\".  With --json one object:\n"
"    {\"dry_run\", \"groups\": [{\"group\": {\"host\", \"paths\", \"tags\"},\n"
"    \"keep\": [{\"id\", \"short_id\", \"time\", \"host\", \"paths\", \"tags\",\n"
"    \"reasons\"}], \"remove\": [{\"id\", ...}]}]} (keys not grouped by are\n"
"    null), and with --prune \"prune\": the prune summary.  By id: lines\n"
"    \"removed ID\" or \"would remove ID\"; with --json NDJSON {\"id\",\n"
"    \"short_id\", \"action\": \"remove\", \"dry_run\"}.  Nothing is printed as\n"
"    removed unless the removal succeeded.\n"
"\n"
"OPTIONS\n"
"    --host H, --path P, --tag T[,T...]\n"
"        Consider only the snapshots made on host H (repeatable: any of\n"
"        them), whose backed-up paths are exactly the --path options, and\n"
"        carrying every tag of one of the --tag lists (repeatable: any).\n"
"    --group-by KEYS\n"
"        Group by a comma-separated subset of host, paths, tags (default\n"
"        host,paths); '' makes one group of all snapshots.\n"
"    --keep-last N\n"
"        Keep the N newest snapshots of each group.\n"
"    --keep-hourly N, --keep-daily N, --keep-weekly N, --keep-monthly N,\n"
"    --keep-yearly N\n"
"        Keep the newest snapshot of each of the N newest hours (days, ISO\n"
"        weeks, months, years) that have one.\n"
"    --keep-within DURATION\n"
"        Keep every snapshot later than DURATION before the newest of its\n"
"        group; DURATION is [Ny][Nm][Nd][Nh], e.g. 1y2m3d4h.\n"
"    --keep-tag TAG\n"
"        Keep every snapshot with tag TAG (repeatable).\n"
"    --dry-run, -n\n"
"        Only print what would be removed; remove and prune nothing.\n"
"    --prune\n"
"        Run keyhold prune after removing the snapshots.\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_REGION, KEYHOLD_PASSCODE_FILE, KEYHOLD_ACCOUNT (see keyhold help)\n"
"\n"
"EXIT STATUS\n"
"    0 on success, 1 on failure (for example an unknown snapshot: then\n"
"    nothing is removed), 2 on a usage error.\n"
"\n"
"EXAMPLES\n"
"    keyhold forget 1a2b3c4d\n"
"    keyhold forget --keep-last 7 --keep-daily 30 --dry-run\n"
"    keyhold forget --keep-within 30d --keep-monthly 12 --keep-tag important\n"
"    keyhold forget --group-by host --keep-last 10 --prune\n"
"    keyhold forget --host laptop --path /home/ana --keep-daily 7\n";

static unsigned g_group_by;

struct plan_out {
  bool dry_run;
  char *text;     /* the printed plan, built while the list is alive */
  size_t len;
  bool oom;
};

static void out_paths(FILE *f, const kh_snapshot_info *s, bool json) {
  if (json) {
    fputc('[', f);
    for (size_t k = 0; k < s->npaths; k++) {
      if (k) fputc(',', f);
      cli_json_cstr(f, s->paths[k]);
    }
    fputc(']', f);
    return;
  }
  for (size_t k = 0; k < s->npaths; k++) {
    if (k) fputc(',', f);
    cli_print_path(f, s->paths[k], strlen(s->paths[k]));
  }
  if (!s->npaths) fputc('-', f);
}

static void out_tags(FILE *f, const kh_snapshot_info *s, bool json) {
  if (json) {
    fputc('[', f);
    for (size_t k = 0; k < s->ntags; k++) {
      if (k) fputc(',', f);
      cli_json_cstr(f, s->tags[k]);
    }
    fputc(']', f);
    return;
  }
  fputc('[', f);
  for (size_t k = 0; k < s->ntags; k++) {
    if (k) fputc(',', f);
    cli_print_path(f, s->tags[k], strlen(s->tags[k]));
  }
  fputc(']', f);
}

static void forget_report(const kh_snapshot_info *list, const kh_forget_decision *plan, size_t n,
                          size_t ngroups, void *vctx) {
  struct plan_out *o = vctx;
  FILE *f = open_memstream(&o->text, &o->len);
  if (!f) { o->oom = true; return; }
  bool json = g_opts.json;
  if (json) fprintf(f, "\"groups\":[");
  for (size_t g = 0; g < ngroups; g++) {
    size_t first = n;
    for (size_t k = 0; k < n && first == n; k++)
      if (plan[n - 1 - k].group == g) first = n - 1 - k;
    if (first == n) continue;
    const kh_snapshot_info *r = &list[first];
    if (json) {
      fprintf(f, "%s{\"group\":{\"host\":", g ? "," : "");
      if (g_group_by & KH_GROUP_HOST) cli_json_cstr(f, r->host ? r->host : "");
      else fputs("null", f);
      fputs(",\"paths\":", f);
      if (g_group_by & KH_GROUP_PATHS) out_paths(f, r, true);
      else fputs("null", f);
      fputs(",\"tags\":", f);
      if (g_group_by & KH_GROUP_TAGS) out_tags(f, r, true);
      else fputs("null", f);
      fputs("}", f);
      for (int pass = 0; pass < 2; pass++) {
        fprintf(f, ",\"%s\":[", pass ? "remove" : "keep");
        bool any = false;
        for (size_t k = 0; k < n; k++) { /* newest first */
          size_t i = n - 1 - k;
          if (plan[i].group != g || plan[i].keep == (pass == 1)) continue;
          char t[CLI_TIME_BUF];
          cli_fmt_time_rfc3339(t, sizeof t, list[i].time_ns);
          fprintf(f, "%s{\"id\":\"%s\",\"short_id\":\"%.8s\",\"time\":\"%s\",\"host\":",
                  any ? "," : "", list[i].id, list[i].id, t);
          cli_json_cstr(f, list[i].host ? list[i].host : "");
          fputs(",\"paths\":", f);
          out_paths(f, &list[i], true);
          fputs(",\"tags\":", f);
          out_tags(f, &list[i], true);
          if (!pass) {
            fputs(",\"reasons\":[", f);
            for (size_t q = 0; q < plan[i].nreasons; q++) {
              if (q) fputc(',', f);
              cli_json_cstr(f, plan[i].reasons[q]);
            }
            fputc(']', f);
          }
          fputc('}', f);
          any = true;
        }
        fputc(']', f);
      }
      fputc('}', f);
      continue;
    }
    fputs("group", f);
    if (g_group_by & KH_GROUP_HOST) {
      fputs(" host ", f);
      cli_print_path(f, r->host ? r->host : "", r->host ? strlen(r->host) : 0);
    }
    if (g_group_by & KH_GROUP_PATHS) { fputs(" paths ", f); out_paths(f, r, false); }
    if (g_group_by & KH_GROUP_TAGS) { fputs(" tags ", f); out_tags(f, r, false); }
    if (!g_group_by) fputs(" (all snapshots)", f);
    fputc('\n', f);
    for (size_t k = 0; k < n; k++) {
      size_t i = n - 1 - k;
      if (plan[i].group != g) continue;
      char t[CLI_TIME_BUF];
      cli_fmt_time_local(t, sizeof t, list[i].time_ns);
      fprintf(f, "  %.8s  %s  ", list[i].id, t);
      cli_print_path(f, list[i].host ? list[i].host : "", list[i].host ? strlen(list[i].host) : 0);
      fputs("  ", f);
      out_paths(f, &list[i], false);
      fputc(' ', f);
      out_tags(f, &list[i], false);
      if (plan[i].keep) {
        fputs("  keep: ", f);
        for (size_t q = 0; q < plan[i].nreasons; q++)
          fprintf(f, "%s%s", q ? ", " : "", plan[i].reasons[q]);
      } else {
        fputs(o->dry_run ? "  remove" : "  removed", f);
      }
      fputc('\n', f);
    }
  }
  if (json) fputc(']', f);
  if (fclose(f)) o->oom = true;
}

/* --group-by: comma-separated subset of host, paths, tags; "" is one group */
static bool parse_group_by(const char *s, unsigned *out) {
  unsigned m = 0;
  const char *p = s;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 4 && !strncmp(p, "host", 4)) m |= KH_GROUP_HOST;
    else if (len == 5 && !strncmp(p, "paths", 5)) m |= KH_GROUP_PATHS;
    else if (len == 4 && !strncmp(p, "tags", 4)) m |= KH_GROUP_TAGS;
    else if (len != 0) return false;
    p += len;
    if (*p == ',') p++;
  }
  *out = m;
  return true;
}

/* --keep-within: [Ny][Nm][Nd][Nh], at least one part, e.g. 1y2m3d4h */
static bool parse_within(const char *s, kh_keep_policy *pol) {
  uint32_t v[4] = {0, 0, 0, 0};
  const char units[] = "ymdh";
  int next = 0;
  bool any = false;
  const char *p = s;
  while (*p) {
    uint64_t x = 0;
    const char *q = p;
    while (*q >= '0' && *q <= '9') {
      x = x * 10 + (uint64_t)(*q - '0');
      if (x > 1000000) return false;
      q++;
    }
    if (q == p || !*q) return false;
    const char *u = strchr(units, *q);
    if (!u) return false;
    int ui = (int)(u - units);
    if (ui < next) return false;
    v[ui] = (uint32_t)x;
    next = ui + 1;
    any = true;
    p = q + 1;
  }
  if (!any) return false;
  pol->within_years = v[0];
  pol->within_months = v[1];
  pol->within_days = v[2];
  pol->within_hours = v[3];
  return true;
}

static int run_prune(kh_vault *v, char **json_out, size_t *json_len) {
  kh_prune_result r;
  memset(&r, 0, sizeof r);
  kh_err e = kh_prune(v, cli_progress_enabled() ? cli_progress : NULL, NULL, &r);
  cli_progress_end();
  if (e) return cli_fail(e, "forget --prune");
  if (g_opts.json) {
    FILE *f = open_memstream(json_out, json_len);
    if (!f) { cli_msgf("out of memory"); return CLI_EXIT_FAIL; }
    fprintf(f, ",\"prune\":{\"packs_deleted\":%llu,\"packs_repacked\":%llu,\"packs_kept\":%llu,"
            "\"blobs_removed\":%llu,\"bytes_freed\":%llu}",
            (unsigned long long)r.packs_deleted, (unsigned long long)r.packs_repacked,
            (unsigned long long)r.packs_kept, (unsigned long long)r.blobs_removed,
            (unsigned long long)r.bytes_freed);
    if (fclose(f)) { cli_msgf("out of memory"); return CLI_EXIT_FAIL; }
  } else {
    char b[CLI_BYTES_BUF];
    cli_fmt_bytes(b, sizeof b, r.bytes_freed);
    printf("prune: %llu packs deleted, %llu repacked, %llu kept, %llu blobs removed, %s freed\n",
           (unsigned long long)r.packs_deleted, (unsigned long long)r.packs_repacked,
           (unsigned long long)r.packs_kept, (unsigned long long)r.blobs_removed, b);
  }
  return CLI_EXIT_OK;
}

static void print_removed(const char *id, bool dry_run) {
  if (g_opts.json)
    printf("{\"id\":\"%s\",\"short_id\":\"%.8s\",\"action\":\"remove\",\"dry_run\":%s}\n", id, id,
           dry_run ? "true" : "false");
  else
    printf("%s %s\n", dry_run ? "would remove" : "removed", id);
}

enum { MAX_KEEP_TAGS = 256 };

int cmd_forget(int argc, char **argv) {
  static const struct option longopts[] = {
    {"keep-last", required_argument, NULL, 'l'},
    {"keep-hourly", required_argument, NULL, 'H'},
    {"keep-daily", required_argument, NULL, 'd'},
    {"keep-weekly", required_argument, NULL, 'w'},
    {"keep-monthly", required_argument, NULL, 'm'},
    {"keep-yearly", required_argument, NULL, 'y'},
    {"keep-within", required_argument, NULL, 'W'},
    {"keep-tag", required_argument, NULL, 't'},
    {"group-by", required_argument, NULL, 'g'},
    {"prune", no_argument, NULL, 'p'},
    {"dry-run", no_argument, NULL, 'n'},
    CLI_FILTER_OPTIONS,
    {NULL, 0, NULL, 0},
  };
  cli_filter cf;
  if (!cli_filter_init(&cf, argc)) return CLI_EXIT_FAIL;
  kh_keep_policy pol;
  memset(&pol, 0, sizeof pol);
  const char *tags[MAX_KEEP_TAGS];
  size_t ntags = 0;
  unsigned group_by = KH_GROUP_HOST | KH_GROUP_PATHS;
  bool policy = false, dry_run = false, prune = false;
  int c, rc = CLI_EXIT_FAIL;
  optind = 0;
  while ((c = getopt_long(argc, argv, "n", longopts, NULL)) != -1) {
    uint32_t *count = NULL;
    const char *name = NULL;
    switch (c) {
    case 'l': count = &pol.last; name = "last"; break;
    case 'H': count = &pol.hourly; name = "hourly"; break;
    case 'd': count = &pol.daily; name = "daily"; break;
    case 'w': count = &pol.weekly; name = "weekly"; break;
    case 'm': count = &pol.monthly; name = "monthly"; break;
    case 'y': count = &pol.yearly; name = "yearly"; break;
    case 'W':
      if (!parse_within(optarg, &pol)) {
        cli_msgf("forget: --keep-within: not a duration like 1y2m3d4h: %s", optarg);
        { rc = cli_usage("forget"); goto out_args; }
      }
      policy = true;
      break;
    case 't':
      if (!*optarg || ntags == MAX_KEEP_TAGS) {
        cli_msgf("forget: --keep-tag: %s", *optarg ? "too many tags" : "empty tag");
        { rc = cli_usage("forget"); goto out_args; }
      }
      tags[ntags++] = optarg;
      policy = true;
      break;
    case 'g':
      if (!parse_group_by(optarg, &group_by)) {
        cli_msgf("forget: --group-by: not a list of host, paths, tags: %s", optarg);
        { rc = cli_usage("forget"); goto out_args; }
      }
      break;
    case 'p': prune = true; break;
    case 'n': dry_run = true; break;
    case CLI_OPT_HOST: case CLI_OPT_PATH: case CLI_OPT_TAG:
      if (!cli_filter_add(&cf, c, optarg, "forget")) { rc = cli_usage("forget"); goto out_args; }
      break;
    default: { rc = cli_usage("forget"); goto out_args; }
    }
    if (count) {
      if (!cli_parse_u32(optarg, 0, UINT32_MAX, count)) {
        cli_msgf("forget: --keep-%s: not a count: %s", name, optarg);
        { rc = cli_usage("forget"); goto out_args; }
      }
      policy = true;
    }
  }
  pol.tags = tags;
  pol.ntags = ntags;
  pol.group_by = group_by;
  pol.filter = &cf.f;
  g_group_by = group_by;
  size_t nsnaps = (size_t)(argc - optind);
  if (policy && nsnaps) {
    cli_msgf("forget: give snapshots or a --keep policy, not both");
    { rc = cli_usage("forget"); goto out_args; }
  }
  if (!policy && !nsnaps) {
    cli_msgf("forget: give snapshots to remove or a --keep policy");
    { rc = cli_usage("forget"); goto out_args; }
  }
  if (policy && !pol.last && !pol.hourly && !pol.daily && !pol.weekly && !pol.monthly &&
      !pol.yearly && !pol.within_years && !pol.within_months && !pol.within_days &&
      !pol.within_hours && !pol.ntags) {
    cli_msgf("forget: the policy would keep nothing; name the snapshots to remove instead");
    { rc = cli_usage("forget"); goto out_args; }
  }

  kh_vault *v = NULL;
  char (*ids)[KH_SNAPSHOT_ID_HEX + 1] = NULL;
  const char **idp = NULL;
  struct plan_out po = {dry_run, NULL, 0, false};
  char *prune_json = NULL;
  size_t prune_len = 0;
  if (cli_open_vault(&v)) goto out;

  if (policy) {
    kh_err e = kh_forget_policy(v, &pol, dry_run, forget_report, &po);
    if (e) { rc = cli_fail(e, "forget"); goto out; }
    if (po.oom || !po.text) {
      cli_msgf("forget: out of memory (snapshots were removed as decided)");
      goto out;
    }
    if (!g_opts.json) {
      fwrite(po.text, 1, po.len, stdout);
      fflush(stdout);
    }
    rc = CLI_EXIT_OK;
    if (prune && !dry_run) rc = run_prune(v, &prune_json, &prune_len);
    if (g_opts.json) {
      printf("{\"dry_run\":%s,", dry_run ? "true" : "false");
      fwrite(po.text, 1, po.len, stdout);
      if (prune_json) fwrite(prune_json, 1, prune_len, stdout);
      fputs("}\n", stdout);
    }
    goto out;
  }

  /* Resolve every name first, so one typo removes nothing. */
  ids = calloc(nsnaps, sizeof *ids);
  idp = calloc(nsnaps, sizeof *idp);
  if (!ids || !idp) { cli_msgf("out of memory"); goto out; }
  size_t n = 0;
  for (size_t i = 0; i < nsnaps; i++) {
    const char *spec = argv[optind + (int)i];
    char id[KH_SNAPSHOT_ID_HEX + 1], what[300];
    snprintf(what, sizeof what, "snapshot %s", spec);
    if ((rc = cli_resolve_snapshot(v, spec, &cf, what, id))) goto out;
    rc = CLI_EXIT_FAIL;
    bool dup = false;
    for (size_t j = 0; j < n && !dup; j++) dup = strcmp(ids[j], id) == 0;
    if (dup) continue;
    memcpy(ids[n], id, sizeof id);
    idp[n] = ids[n];
    n++;
  }
  if (!dry_run) {
    kh_err e = kh_forget(v, idp, n);
    if (e) { rc = cli_fail(e, "forget"); goto out; }
  }
  for (size_t i = 0; i < n; i++) print_removed(ids[i], dry_run);
  fflush(stdout);
  rc = CLI_EXIT_OK;
  if (prune && !dry_run) {
    rc = run_prune(v, &prune_json, &prune_len);
    /* by-id --json stays NDJSON: the prune summary is one more line */
    if (prune_json && prune_len > 1) printf("{%s}\n", prune_json + 1);
  }
out:
  free(po.text);
  free(prune_json);
  free(ids);
  free(idp);
  kh_vault_free(v);
out_args:
  cli_filter_release(&cf);
  return rc;
}
