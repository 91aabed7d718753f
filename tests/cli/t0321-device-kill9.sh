#!/bin/sh
# kill -9 of keyholdd in the middle of an enrolment and of a revocation:
# between the log append of the device statement and the device record
# (KH_FAULT=kms.statement.logged:1:kill, docs/protocol.md §9).  After a
# restart a retry completes, the new device restores, and the log has
# exactly what happened: the interrupted statement and the retried one,
# both signed by the approving device; the metadata has the device once.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/server.sh"

server_init eu-west
server_start
unset KEYHOLD_PASSCODE_FILE
D1=$KH_T/dev1
D2=$KH_T/dev2
as() { d=$1; shift; run env KEYHOLD_DEVICE_DIR="$d" "$KEYHOLD" "$@"; }

as "$D1" init --name laptop
assert_ok "init"
DEV1=$(sed -n 's/^device \([0-9a-f]*\)$/\1/p' "$OUT")
make_tree "$KH_T/src" small
as "$D1" backup "$KH_T/src"
assert_ok "backup"
SNAP=$(as "$D1" --json snapshots >/dev/null; sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' "$OUT" | head -n 1)
[ -n "$SNAP" ] || fail "no snapshot id"

# the server dies right after the enrol statement is durable in the log
server_kill9
server_start_fault() {
  rm -f "$SRV_LOG"
  env KH_FAULT=kms.statement.logged:1:kill KH_FAULT_LOG="$KH_W/fired" \
    "$KEYHOLDD" serve --dir "$SRV_DIR" --listen "127.0.0.1:$PORT" --signup open 2>"$SRV_LOG" &
  SPID=$!
  KH_BGPIDS="$KH_BGPIDS $SPID"
  i=0
  while ! grep -q '^listening on ' "$SRV_LOG" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 200 ] || fail "keyholdd did not start: $(cat "$SRV_LOG")"
    sleep 0.1
  done
}
server_start_fault

env KEYHOLD_DEVICE_DIR="$D2" "$KEYHOLD" device add --name phone --timeout 120 \
  >"$KH_W/add.out" 2>"$KH_W/add.err" &
APID=$!
KH_BGPIDS="$KH_BGPIDS $APID"
i=0
while ! grep -q '^code ' "$KH_W/add.out" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 200 ] || fail "device add printed no code: $(cat "$KH_W/add.err")"
  sleep 0.1
done
CODE=$(sed -n 's/^code //p' "$KH_W/add.out")

LOG0=$(curl -s "$URL/v1/health" | sed -n 's/.*"log_size":\([0-9]*\).*/\1/p')
as "$D1" device approve "$CODE" --can read
assert_fail "approve while the server is killed after the log append"
assert_grep 'kms.statement.logged 1' "$KH_W/fired" "the fault point fired"
wait "$SPID" 2>/dev/null
kill -0 "$SPID" 2>/dev/null && fail "the server survived its fault point"

# nothing but the statement happened: no device record
sqlite3 "$SRV_DIR/server/meta.db" "SELECT count(*) FROM devices;" >"$KH_W/n" \
  || fail "cannot read the metadata"
assert_eq "$(cat "$KH_W/n")" 1 "no device was recorded before the crash"

server_start
as "$D1" device approve "$CODE" --can read
assert_ok "the retried approval completes after the restart"
DEV2=$(sed -n 's/^approved device \([0-9a-f]*\) .*/\1/p' "$OUT")
wait "$APID"
RC=$?
cp "$KH_W/add.err" "$ERR"
assert_ok "the new device's add completes across the restart"
as "$D2" restore "$SNAP" --target "$KH_T/rt/two"
assert_ok "the new device restores"
assert_same_tree "$KH_T/src" "$KH_T/rt/two/$(printf '%s' "$KH_T/src" | sed 's|^/||')" \
  "restore after the interrupted enrolment"
as "$D1" device list
assert_eq "$(grep -c "^$DEV2 " "$OUT")" 1 "the device is recorded once"

# the log: both statements, each signed by the approver, about the same device
as "$D1" --json watch
json_check "$OUT" "[(c['op'], c['device'], c['by'], c['signature']) for c in d['device_changes']] == [('enrol', '$DEV2', 'device:$DEV1', 'valid')] * 2" \
  "the log has the interrupted and the retried enrol statement, both signed by the approver"
LOG1=$(curl -s "$URL/v1/health" | sed -n 's/.*"log_size":\([0-9]*\).*/\1/p')
assert_eq "$LOG1" "$((LOG0 + 2))" "exactly two entries were appended"

pass
