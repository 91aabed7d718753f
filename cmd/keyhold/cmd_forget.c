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
"    keyhold forget [--dry-run] SNAPSHOT...\n"
"    keyhold forget [--keep-last N] [--keep-daily N] [--dry-run]\n"
"\n"
"DESCRIPTION\n"
"    Removes snapshots: either the ones named (\"latest\", full ids or unique\n"
"    prefixes), or every snapshot the policy does not keep.  Give one or the\n"
"    other, not both.  The data the removed snapshots used stays in the\n"
"    vault until keyhold prune.\n"
"\n"
"    --keep-last N keeps the N newest snapshots; --keep-daily N keeps the\n"
"    newest snapshot of each of the N most recent days that have one.  A\n"
"    snapshot kept by either rule is kept.  A policy that keeps nothing\n"
"    (all counts 0) is refused.  \"Newest\" is the snapshot order of keyhold\n"
"    snapshots: a device's signed counter outranks its clock, so a snapshot\n"
"    made with a clock running ahead does not count as newer than the\n"
"    backups its device made after it; days are those of that order.\n"
"\n"
"    Prints one line per snapshot: \"keep ID\" (policy only), \"removed ID\",\n"
"    or with --dry-run \"would remove ID\".  With --json, one JSON object per\n"
"    line (NDJSON): {\"id\", \"short_id\", \"action\": \"keep\"|\"remove\",\n"
"    \"dry_run\": boolean}; with a policy also \"time\" (RFC 3339) and \"host\".\n"
"    Nothing is printed as removed unless the removal succeeded.\n"
"\n"
"OPTIONS\n"
"    --keep-last N\n"
"        Keep the N most recent snapshots.\n"
"    --keep-daily N\n"
"        Keep the most recent snapshot of each of the last N days.\n"
"    --dry-run, -n\n"
"        Only print what would be removed.\n"
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
"    keyhold forget --keep-last 10 && keyhold prune\n";

struct decision {
  char id[KH_SNAPSHOT_ID_HEX + 1];
  int64_t time_ns;
  char *host;
  bool keep;
};

struct forget_ctx {
  struct decision *d;
  size_t n, cap;
  bool oom;
};

static void forget_decide(const kh_snapshot_info *s, bool keep, void *vctx) {
  struct forget_ctx *c = vctx;
  if (c->oom) return;
  if (c->n == c->cap) {
    size_t ncap = c->cap ? c->cap * 2 : 64;
    struct decision *nd = realloc(c->d, ncap * sizeof *nd);
    if (!nd) { c->oom = true; return; }
    c->d = nd;
    c->cap = ncap;
  }
  struct decision *d = &c->d[c->n];
  snprintf(d->id, sizeof d->id, "%s", s->id);
  d->time_ns = s->time_ns;
  d->host = strdup(s->host ? s->host : "");
  if (!d->host) { c->oom = true; return; }
  d->keep = keep;
  c->n++;
}

static void print_decision(const char *id, bool keep, bool dry_run, const struct decision *d) {
  if (g_opts.json) {
    printf("{\"id\":\"%s\",\"short_id\":\"%.8s\",\"action\":\"%s\",\"dry_run\":%s", id, id,
           keep ? "keep" : "remove", dry_run ? "true" : "false");
    if (d) {
      char t[CLI_TIME_BUF];
      cli_fmt_time_rfc3339(t, sizeof t, d->time_ns);
      printf(",\"time\":\"%s\",\"host\":", t);
      cli_json_cstr(stdout, d->host);
    }
    fputs("}\n", stdout);
  } else {
    printf("%s %s\n", keep ? "keep" : dry_run ? "would remove" : "removed", id);
  }
}

int cmd_forget(int argc, char **argv) {
  static const struct option longopts[] = {
    {"keep-last", required_argument, NULL, 'l'},
    {"keep-daily", required_argument, NULL, 'd'},
    {"dry-run", no_argument, NULL, 'n'},
    {NULL, 0, NULL, 0},
  };
  kh_keep_policy pol = {0, 0};
  bool policy = false, dry_run = false;
  int c, rc = CLI_EXIT_FAIL;
  optind = 0;
  while ((c = getopt_long(argc, argv, "n", longopts, NULL)) != -1) {
    switch (c) {
    case 'l':
    case 'd':
      if (!cli_parse_u32(optarg, 0, UINT32_MAX, c == 'l' ? &pol.last : &pol.daily)) {
        cli_msgf("forget: --keep-%s: not a count: %s", c == 'l' ? "last" : "daily", optarg);
        return cli_usage("forget");
      }
      policy = true;
      break;
    case 'n': dry_run = true; break;
    default: return cli_usage("forget");
    }
  }
  size_t nsnaps = (size_t)(argc - optind);
  if (policy && nsnaps) {
    cli_msgf("forget: give snapshots or a --keep policy, not both");
    return cli_usage("forget");
  }
  if (!policy && !nsnaps) {
    cli_msgf("forget: give snapshots to remove or a --keep policy");
    return cli_usage("forget");
  }
  if (policy && pol.last == 0 && pol.daily == 0) {
    cli_msgf("forget: the policy would keep nothing; name the snapshots to remove instead");
    return cli_usage("forget");
  }

  kh_vault *v = NULL;
  char (*ids)[KH_SNAPSHOT_ID_HEX + 1] = NULL;
  const char **idp = NULL;
  struct forget_ctx ctx = {NULL, 0, 0, false};
  if (cli_open_vault(&v)) goto out;

  if (policy) {
    kh_err e = kh_forget_policy(v, &pol, dry_run, forget_decide, &ctx);
    if (e) { rc = cli_fail(e, "forget"); goto out; }
    if (ctx.oom) { cli_msgf("forget: out of memory (snapshots were removed as decided)"); goto out; }
    for (size_t i = 0; i < ctx.n; i++)
      print_decision(ctx.d[i].id, ctx.d[i].keep, dry_run, &ctx.d[i]);
    rc = CLI_EXIT_OK;
    goto out;
  }

  /* Resolve every name first, so one typo removes nothing. */
  ids = calloc(nsnaps, sizeof *ids);
  idp = calloc(nsnaps, sizeof *idp);
  if (!ids || !idp) { cli_msgf("out of memory"); goto out; }
  size_t n = 0;
  for (size_t i = 0; i < nsnaps; i++) {
    const char *spec = argv[optind + (int)i];
    char id[KH_SNAPSHOT_ID_HEX + 1];
    kh_err e = kh_snapshot_resolve(v, spec, id);
    if (e) {
      char what[300];
      snprintf(what, sizeof what, "snapshot %s", spec);
      rc = cli_fail(e, what);
      goto out;
    }
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
  for (size_t i = 0; i < n; i++) print_decision(ids[i], false, dry_run, NULL);
  rc = CLI_EXIT_OK;
out:
  for (size_t i = 0; i < ctx.n; i++) free(ctx.d[i].host);
  free(ctx.d);
  free(ids);
  free(idp);
  kh_vault_free(v);
  return rc;
}
