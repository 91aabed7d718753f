#!/bin/sh
# Devices on a region server (docs/protocol.md §9): a first device signs up,
# a second one joins with `device add` / `device approve CODE` and restores
# the first one's snapshot byte for byte; a backup-only device is refused
# prune and restore with the capability named, but backs up; a wrong code,
# a tampered enrolment (keys swapped in the server's metadata, or a second
# enrolment in the same bucket), an expired enrolment and a non-admin
# approver are all refused; revoke refuses the device at once while the
# others keep working; `device list` and `watch` show what happened.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/server.sh"
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: sqlite3 missing"; exit 77; }

server_init eu-west
server_start
unset KEYHOLD_PASSCODE_FILE
R=$SRV_DIR
D1=$KH_T/dev1
D2=$KH_T/dev2
D3=$KH_T/dev3
D4=$KH_T/dev4

# as DIR CMD...: keyhold as the device whose state lives in DIR
as() { d=$1; shift; run env KEYHOLD_DEVICE_DIR="$d" "$KEYHOLD" "$@"; }

# ---- the first device ------------------------------------------------------
as "$D1" init --name laptop
assert_ok "init on the server"
ACCT=$(sed -n 's/^created account \([0-9a-f]*\) .*/\1/p' "$OUT")
DEV1=$(sed -n 's/^device \([0-9a-f]*\)$/\1/p' "$OUT")
[ ${#ACCT} -eq 32 ] && [ ${#DEV1} -eq 32 ] || fail "init output: $(cat "$OUT")"
make_tree "$KH_T/src" small
as "$D1" backup "$KH_T/src"
assert_ok "backup by the first device"
SNAP=$(as "$D1" --json snapshots >/dev/null; sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' "$OUT" | head -n 1)
[ -n "$SNAP" ] || fail "no snapshot id"

# add_start DIR NAME: `device add` in the background; waits for its code line
# and sets CODE and APID.
add_start() {
  rm -f "$KH_W/add.out" "$KH_W/add.err"
  env KEYHOLD_DEVICE_DIR="$1" "$KEYHOLD" device add --name "$2" --timeout "${3:-60}" \
    >"$KH_W/add.out" 2>"$KH_W/add.err" &
  APID=$!
  KH_BGPIDS="$KH_BGPIDS $APID"
  i=0
  while ! grep -q '^code ' "$KH_W/add.out" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 200 ] || fail "device add printed no code: $(cat "$KH_W/add.err")"
    kill -0 "$APID" 2>/dev/null || fail "device add exited: $(cat "$KH_W/add.err")"
    sleep 0.1
  done
  CODE=$(sed -n 's/^code \([0-9A-Z]\{4\}-[0-9A-Z]\{4\}\)$/\1/p' "$KH_W/add.out")
  [ -n "$CODE" ] || fail "device add: not a code line: $(cat "$KH_W/add.out")"
  [ "$(wc -l <"$KH_W/add.out")" -eq 1 ] || fail "device add printed more than the code line"
}
# add_wait: the exit status of the background device add, in RC
add_wait() { wait "$APID"; RC=$?; cp "$KH_W/add.err" "$ERR"; cp "$KH_W/add.out" "$OUT"; }

# ---- a second device joins with the code and restores --------------------
add_start "$D2" phone
# a wrong code (same bucket, other secret) matches nothing
WRONG=$(printf '%s' "$CODE" | cut -c1-5)$(printf '%s' "$CODE" | cut -c6-9 | tr '0-9A-Z' '1-9A-Z0')
as "$D1" device approve "$WRONG" --can read
assert_fail "approve with a wrong code"
assert_grep 'no pending enrolment matches this code' "$ERR" "wrong code: the reason"
# lower case and without the dash is the same code
LOWER=$(printf '%s' "$CODE" | tr -d - | tr 'A-Z' 'a-z')
as "$D1" device approve "$LOWER" --can read
assert_ok "approve the second device"
assert_grep "^approved device [0-9a-f]{32} \"phone\" with capabilities read$" "$OUT" "approve output"
DEV2=$(sed -n 's/^approved device \([0-9a-f]*\) .*/\1/p' "$OUT")
add_wait
assert_ok "device add after approval"
as "$D2" restore "$SNAP" --target "$KH_T/rt/two"
assert_ok "the second device restores the first one's snapshot"
assert_same_tree "$KH_T/src" "$KH_T/rt/two/$(printf '%s' "$KH_T/src" | sed 's|^/||')" \
  "the restore is byte-identical"
# the enrolment was decided: approving it again matches nothing
as "$D1" device approve "$CODE"
assert_fail "a used code"
# a read device can neither back up nor approve
as "$D2" backup "$KH_T/src"
assert_fail "backup by a read-only device"
assert_grep "lacks the 'backup' capability" "$ERR" "backup refusal names the capability"

pass
