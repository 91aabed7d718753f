#!/bin/sh
# help and usage errors; every --json output parses and has the documented
# fields.
. "$KH_SRCDIR/tests/cli/lib.sh"

VERBS="init backup snapshots ls diff restore check forget prune passcode help"

# ---- help ------------------------------------------------------------------------
khr help
assert_ok "keyhold help"
for v in $VERBS; do
  assert_grep "^ +$v +[a-z]" "$OUT" "keyhold help lists $v"
done
assert_grep -F '--region DIR' "$OUT" "keyhold help lists the global options"
[ ! -s "$ERR" ] || fail "keyhold help wrote to stderr"
cp "$OUT" "$KH_W/help"
khr --help
assert_ok "keyhold --help"
cmp -s "$OUT" "$KH_W/help" || fail "keyhold --help differs from keyhold help"
for v in init backup snapshots ls diff restore check forget prune passcode; do
  khr help "$v"
  assert_ok "keyhold help $v"
  for sec in NAME SYNOPSIS DESCRIPTION OPTIONS ENVIRONMENT "EXIT STATUS" EXAMPLES; do
    assert_grep "^$sec\$" "$OUT" "keyhold help $v: section $sec"
  done
  assert_grep "^ +keyhold $v" "$OUT" "keyhold help $v: synopsis names the command"
  cp "$OUT" "$KH_W/help.$v"
  khr "$v" --help
  assert_ok "keyhold $v --help"
  cmp -s "$OUT" "$KH_W/help.$v" || fail "keyhold $v --help differs from keyhold help $v"
  khr "$v" -h
  assert_ok "keyhold $v -h"
done
assert_grep '^ +keyhold backup \[--host NAME\] \[--tag T\]\.\.\. \[--threads N\] \[SELECTION\.\.\.\] PATH\.\.\.$' "$KH_W/help.backup" "backup synopsis"
khr help no-such-command
assert_rc 2 "help for an unknown command"
khr --version
assert_ok "--version"
assert_grep '^keyhold [0-9]+\.[0-9]+' "$OUT" "--version output"

# ---- usage errors: exit 2 -------------------------------------------------------
khr
assert_rc 2 "keyhold without a command"
[ ! -s "$OUT" ] || fail "keyhold without a command wrote to stdout"
assert_grep 'usage' "$ERR" "keyhold without a command prints a usage"
khr frobnicate
assert_rc 2 "unknown command"
assert_grep 'frobnicate' "$ERR" "unknown command: message names it"
khr --frobnicate snapshots
assert_rc 2 "unknown global option"
for v in init backup snapshots ls diff restore check forget prune; do
  khr "$v" --no-such-option
  assert_rc 2 "keyhold $v --no-such-option"
  assert_grep -F '--no-such-option' "$ERR" "keyhold $v: the message names the bad option"
  assert_grep "^ +keyhold $v" "$ERR" "keyhold $v: usage error shows the synopsis"
  assert_grep -F "Try 'keyhold help $v' for more information." "$ERR" "keyhold $v: usage error points to help"
  [ ! -s "$OUT" ] || fail "keyhold $v --no-such-option wrote to stdout"
done
khr passcode frob
assert_rc 2 "passcode with an unknown subcommand"
khr restore latest
assert_rc 2 "restore without --target"
khr ls
assert_rc 2 "ls without a snapshot"
khr diff latest
assert_rc 2 "diff with one snapshot"
khr backup
assert_rc 2 "backup without paths"
khr backup --threads abc /tmp
assert_rc 2 "backup --threads abc"
khr backup --threads 1025 /tmp
assert_rc 2 "backup --threads 1025"
khr snapshots --region
assert_rc 2 "--region without a value"
khr init --region-id 'Bad_ID'
assert_rc 2 "init --region-id with a bad id"
assert_grep -F "region id 'Bad_ID' must be" "$ERR" "init --region-id with a bad id: message"
assert_grep -F "Try 'keyhold help init'" "$ERR" "init --region-id with a bad id: usage"
for o in "--kdf-memory 4097" "--kdf-memory 7" "--kdf-ops 65"; do
  khr init $o
  assert_rc 2 "init $o (outside the range the library accepts)"
done
assert_absent "$KEYHOLD_REGION" "a usage error created the region"
for v in whoami protection escrow watch admin; do
  if ! grep -q "^ *$v " "$KH_W/help"; then
    khr "$v"
    assert_rc 2 "$v (not in this build)"
    assert_grep -F "keyhold: '$v' is not available in this build" "$ERR" "$v: not available message"
  fi
done

# ---- JSON outputs -------------------------------------------------------------------
khr init --json --kdf-memory 8 --kdf-ops 1
assert_ok "init --json"
json_check "$OUT" "set(d) == {'account', 'region', 'path'}" "init --json fields"
khr snapshots --json
assert_ok "snapshots --json (none)"
json_check "$OUT" "d == []" "snapshots --json of an empty account"
SRC=$KH_T/src
make_tree "$SRC"
# global options after the command, and --opt=VALUE
khr backup --json "$SRC" --region="$KEYHOLD_REGION"
assert_ok "backup --json with --region=DIR after the command"
json_check "$OUT" "set(d) == {'message_type', 'id', 'dry_run', 'interrupted', 'files', 'dirs', 'others', 'bytes', 'bytes_read', 'blobs_new', 'bytes_new', 'bytes_new_stored', 'warnings', 'seconds', 'files_new', 'files_changed', 'files_unmodified'}" "backup --json fields"
json_check "$OUT" "d['message_type'] == 'summary' and d['interrupted'] is False and all(isinstance(d[k], int) for k in d if k not in ('message_type', 'id', 'dry_run', 'interrupted', 'seconds'))" "backup --json counts are integers"
SNAP=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$OUT")
khr snapshots --json
json_check "$OUT" "set(d[0]) == {'id', 'short_id', 'time', 'host', 'paths', 'tags', 'parent', 'tree', 'device', 'counter', 'files', 'bytes', 'original', 'copy_of'}" "snapshots --json fields"

khr ls --json "$SNAP" "$SRC"
assert_ok "ls --json"
ndjson_check "$OUT" "all(set(x) >= {'path', 'type', 'mode', 'uid', 'gid', 'size', 'mtime', 'nlink'} for x in d)" "ls --json fields"
ndjson_check "$OUT" "len(d) == $(find "$SRC" -printf . | wc -c)" "ls --json: one object per node"
ndjson_check "$OUT" "{x['type'] for x in d} == {'file', 'dir', 'symlink', 'fifo'}" "ls --json types"
ndjson_check "$OUT" "all(('link' in x) == (x['type'] == 'symlink') for x in d)" "ls --json: link only for symlinks"
ndjson_check "$OUT" "[x['link'] for x in d if x['path'] == '$SRC/docs/link-dangling'] == ['/nonexistent/dangling target']" "ls --json symlink target"
ndjson_check "$OUT" "[(x['mode'], x['size']) for x in d if x['path'] == '$SRC/docs/private'] == [(0o600, 8)]" "ls --json mode is an integer"
ndjson_check "$OUT" "[x['nlink'] for x in d if x['path'] == '$SRC/docs/hard1'] == [3]" "ls --json nlink of a hard link"
ndjson_check "$OUT" "[x['mtime'] for x in d if x['path'] == '$SRC/docs/marker.txt'] == ['2001-02-03T04:05:06.123456789Z']" "ls --json mtime in RFC 3339 UTC with ns"
ndjson_check "$OUT" "'$SRC/docs/new\nline' in [x['path'] for x in d]" "ls --json: a newline in a name"
assert_grep -F '"'"$SRC"'/docs/caf\u00e9"' "$OUT" "ls --json writes a non-UTF-8 byte as \\u00XX"

khr check --json
assert_ok "check --json"
json_check "$OUT" "d['errors'] == 0 and d['complete'] is True and d['read_data'] is False and d['snapshots'] == 1 and d['packs_read'] == 0 and isinstance(d['findings'], list)" "check --json"
khr check --json --read-data
assert_ok "check --json --read-data"
json_check "$OUT" "d['read_data'] is True and d['packs_read'] == d['packs'] and d['packs'] > 0 and d['blobs'] > 0" "check --json --read-data"
khr restore --json "$(printf %.8s "$SNAP")" --target "$KH_T/rt/j"
assert_ok "restore --json"
json_check "$OUT" "set(d) == {'message_type', 'snapshot', 'id', 'target', 'dry_run', 'files', 'dirs', 'others', 'bytes', 'restored', 'skipped', 'deleted', 'verified', 'failed', 'warnings', 'seconds'} and d['message_type'] == 'summary' and d['snapshot'] == '$(printf %.8s "$SNAP")' and d['id'] == '$SNAP' and d['dry_run'] is False and d['restored'] == d['files'] + d['dirs'] + d['others'] and d['skipped'] == d['deleted'] == d['verified'] == 0 and d['failed'] == 0 and d['warnings'] == 0 and d['files'] == 19" "restore --json"
backup_id "$SRC"
S2=$SNAP
khr diff --json "$S2" "$SNAP"
assert_ok "diff --json"
khr forget --json --dry-run "$S2"
assert_ok "forget --json --dry-run"
ndjson_check "$OUT" "d == [{'id': '$S2', 'short_id': '$(printf %.8s "$S2")', 'action': 'remove', 'dry_run': True}]" "forget --json by id"
khr forget --json --keep-last 1
assert_ok "forget --json --keep-last 1"
json_check "$OUT" "set(d) == {'dry_run', 'groups'} and sum(len(g['keep']) + len(g['remove']) for g in d['groups']) == 2 and all(set(x) == {'id', 'short_id', 'time', 'host', 'paths', 'tags', 'reasons'} for g in d['groups'] for x in g['keep']) and all(set(x) == {'id', 'short_id', 'time', 'host', 'paths', 'tags'} for g in d['groups'] for x in g['remove'])" "forget --json policy fields"
khr prune --json
assert_ok "prune --json"
json_check "$OUT" "set(d) == {'packs_deleted', 'packs_repacked', 'packs_kept', 'blobs_removed', 'bytes_freed', 'seconds'}" "prune --json fields"
printf 'p2\n' >"$KH_T/p2"
khr passcode change --json --new-passcode-file "$KH_T/p2"
assert_ok "passcode change --json"
json_check "$OUT" "d['passcode_changed'] is True" "passcode change --json"

# ---- -- ends the options ------------------------------------------------------------
mkdir -p "$KH_T/dash"
printf 'dash\n' >"$KH_T/dash/-x"
touch -d '2013-03-03' "$KH_T/dash/-x" "$KH_T/dash"
cp -a "$KH_T/dash" "$KH_T/cp/dash"
(cd "$KH_T/dash" && "$KEYHOLD" --passcode-file "$KH_T/p2" --quiet backup -- -x) >"$OUT" 2>"$ERR"
RC=$?
assert_ok "backup -- -x"
khr --passcode-file "$KH_T/p2" ls --path "$KH_T/dash/-x" latest
assert_ok "ls the snapshot of -x"
assert_eq "$(tail -n 1 "$OUT")" "$KH_T/dash/-x" "backup -- -x backs up the file named -x"

pass
