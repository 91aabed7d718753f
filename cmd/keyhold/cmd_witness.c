/* keyhold witness: verify log checkpoints for consistency and cosign them
 * (docs/log.md §7). */
#include "cli.h"
#include "keyhold/log.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cmd_witness(int argc, char **argv);

const char cmd_witness_help[] =
"NAME\n"
"    keyhold witness - verify and cosign transparency log checkpoints\n"
"\n"
"SYNOPSIS\n"
"    keyhold witness [--state DIR] init --name NAME\n"
"    keyhold witness [--state DIR] key\n"
"    keyhold witness [--state DIR] add-log --origin ORIGIN --key VKEY\n"
"    keyhold witness [--state DIR] cosign --log DIR\n"
"\n"
"DESCRIPTION\n"
"    A witness is an outside party that keeps, for every log it follows,\n"
"    the last checkpoint it checked, and cosigns a new checkpoint only if\n"
"    the log proves it is an append-only extension of that one.  Clients\n"
"    that require cosignatures from witnesses they trust cannot be shown a\n"
"    forked or rolled-back log.  Cosignatures follow c2sp.org/tlog-cosignature\n"
"    (Ed25519 cosignature/v1, key algorithm byte 0x04).\n"
"\n"
"    init\n"
"        Create the state directory and the witness's Ed25519 key named\n"
"        NAME (a schema-less URL is customary, e.g. witness.example.org/w1),\n"
"        and print its verifier key.  The private key stays in DIR/key\n"
"        (mode 0600).\n"
"    key\n"
"        Print the witness's verifier key.\n"
"    add-log\n"
"        Follow the log with checkpoint origin ORIGIN, whose checkpoints are\n"
"        signed by the verifier key VKEY.  A different key for an origin that\n"
"        is already followed is refused.\n"
"    cosign\n"
"        Read DIR/checkpoint, verify its signature with the configured key,\n"
"        check that the log's tiles hash to its root, compute a consistency\n"
"        proof from the tiles between the size remembered for this origin\n"
"        and the new size and verify it, remember the new checkpoint, and\n"
"        print the checkpoint with the witness's cosignature line appended.\n"
"        Refuses, leaving the state unchanged, if anything does not verify,\n"
"        if the log is smaller than before, or if it has the same size but\n"
"        a different root.\n"
"\n"
"OPTIONS\n"
"    --state DIR    the witness state directory (default $KEYHOLD_WITNESS_DIR)\n"
"    --name NAME    the witness key name (init)\n"
"    --origin O     the log's checkpoint origin line (add-log)\n"
"    --key VKEY     the log's verifier key (add-log)\n"
"    --log DIR      the log directory to cosign (cosign)\n"
"\n"
"ENVIRONMENT\n"
"    KEYHOLD_WITNESS_DIR  the state directory when --state is not given\n"
"\n"
"EXIT STATUS\n"
"    0 done; 1 refused or failed (one line says why); 2 usage error.\n"
"\n"
"EXAMPLES\n"
"    export KEYHOLD_WITNESS_DIR=~/.local/share/keyhold-witness\n"
"    keyhold witness init --name witness.example.org/w1\n"
"    keyhold witness add-log --origin keyhold.example.org/eu-west --key \"$(cat log.vkey)\"\n"
"    keyhold witness cosign --log /srv/keyhold/eu-west/log > cosigned-checkpoint\n";

int cmd_witness(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"state", required_argument, NULL, 's'}, {"name", required_argument, NULL, 'n'},
    {"origin", required_argument, NULL, 'o'}, {"key", required_argument, NULL, 'k'},
    {"log", required_argument, NULL, 'l'},    {NULL, 0, NULL, 0},
  };
  const char *state = NULL, *name = NULL, *origin = NULL, *key = NULL, *logdir = NULL;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 's': state = optarg; break;
    case 'n': name = optarg; break;
    case 'o': origin = optarg; break;
    case 'k': key = optarg; break;
    case 'l': logdir = optarg; break;
    default: return cli_usage("witness");
    }
  }
  if (optind != argc - 1) {
    cli_errorf("witness: expected one subcommand");
    return cli_usage("witness");
  }
  const char *sub = argv[optind];
  if (!state)
    state = getenv("KEYHOLD_WITNESS_DIR");
  if (!state || !*state) {
    cli_errorf("witness: no state directory (--state DIR or KEYHOLD_WITNESS_DIR)");
    return CLI_EXIT_USAGE;
  }
  kh_witness *w = NULL;
  kh_err e;
  int rc = CLI_EXIT_FAIL;
  if (!strcmp(sub, "init")) {
    char *vkey = NULL;
    if (!name || origin || key || logdir)
      return cli_usage("witness");
    if ((e = kh_witness_init(state, name, &vkey)))
      return cli_fail(e, "witness init");
    printf("%s\n", vkey);
    free(vkey);
    return CLI_EXIT_OK;
  }
  if (strcmp(sub, "key") && strcmp(sub, "add-log") && strcmp(sub, "cosign")) {
    cli_errorf("witness: unknown subcommand '%s'", sub);
    return cli_usage("witness");
  }
  if (name || (strcmp(sub, "add-log") && (origin || key)) ||
      (strcmp(sub, "cosign") && logdir) ||
      (!strcmp(sub, "add-log") && (!origin || !key)) || (!strcmp(sub, "cosign") && !logdir))
    return cli_usage("witness");
  if ((e = kh_witness_open(state, &w)))
    return cli_fail(e, "witness");
  if (!strcmp(sub, "key")) {
    printf("%s\n", kh_witness_vkey(w));
    rc = CLI_EXIT_OK;
  } else if (!strcmp(sub, "add-log")) {
    if ((e = kh_witness_add_log(w, origin, key)))
      rc = cli_fail(e, "witness add-log");
    else
      rc = CLI_EXIT_OK;
  } else {
    char *out = NULL;
    size_t len = 0;
    if ((e = kh_witness_cosign_dir(w, logdir, (uint64_t)time(NULL), &out, &len))) {
      rc = cli_fail(e, "witness cosign: REFUSED");
    } else {
      fwrite(out, 1, len, stdout);
      rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    }
    free(out);
  }
  kh_witness_free(w);
  return rc;
}
