#!/bin/sh
# kill -9 of keyholdd in the middle of a backup: the client reports it
# (exit 1, a message naming the server), no snapshot is made; after a
# restart on the same address the next backup completes (the client opens
# a new session: the server forgot the old one), earlier snapshots restore
# exactly and check passes.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/server.sh"

server_init
server_start
unset KEYHOLD_PASSCODE_FILE
khr init
assert_ok "init against the server"
ACCOUNT=$(sed -n 's/^created account \([0-9a-f]*\) .*/\1/p' "$OUT")

SRC=$KH_T/src
make_tree "$SRC" nofifo
backup_id "$SRC"
S1=$SNAP
cp -a "$SRC" "$KH_T/cp/v1"

# a backup slow enough to be killed in the middle (4 MiB/s of 48 MiB)
mkdir -p "$SRC/big"
rand_file "$SRC/big/a.bin" 24576
rand_file "$SRC/big/b.bin" 24576
touch "$KH_W/stamp"
"$KEYHOLD" --limit-upload 4096 backup "$SRC" >"$OUT" 2>"$ERR" &
BGPID=$!
# wait until the backup has stored a pack, then kill the server hard
i=0
while [ -z "$(find "$SRV_DIR/accounts/$ACCOUNT/data" -type f -newer "$KH_W/stamp" 2>/dev/null | head -n 1)" ]; do
  i=$((i + 1))
  [ $i -lt 600 ] || fail "the backup stored no pack within 60 s"
  kill -0 "$BGPID" 2>/dev/null || fail "the backup ended before the server was killed"
  sleep 0.1
done
server_kill9
wait "$BGPID"
RC=$?
assert_fail "backup whose server was killed"
assert_grep "keyhold: backup: .*127\.0\.0\.1:$PORT" "$ERR" "the error names the server"
assert_grep "connect|reset|receive|send|empty reply|gave up" "$ERR" "the error says what happened"
assert_no_grep '^[0-9a-f]{64}$' "$OUT" "no snapshot id printed"

# restart on the same address: the device's state names the URL
server_start
khr snapshots --json
assert_ok "snapshots after the restart (new session)"
json_check "$OUT" "[x['id'] for x in d] == ['$S1']" "the interrupted backup left no snapshot"
backup_id "$SRC"
S2=$SNAP
restore_and_compare "$S1" "$SRC" "the earlier snapshot after the crash" "$KH_T/cp/v1"
restore_and_compare "$S2" "$SRC" "the backup after the restart"
khr check --read-data
assert_ok "check after the crash"
assert_grep 'no errors were found' "$OUT" "check finds no errors"
pass
