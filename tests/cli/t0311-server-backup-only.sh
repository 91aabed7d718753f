#!/bin/sh
# A backup-only device on a region server (docs/protocol.md §8.1): it backs
# up (deduplicating against the index it may read, without a parent
# snapshot it may not read, numbered by its own counter), and is refused
# restore, snapshots, forget and prune with exit 1 and the capability named;
# nothing it was refused changed anything.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/server.sh"

server_init
server_start
unset KEYHOLD_PASSCODE_FILE
D1=$KH_T/dev1
D2=$KH_T/dev2
as() { d=$1; shift; run env KEYHOLD_DEVICE_DIR="$d" "$KEYHOLD" "$@"; }

as "$D1" init --name admin
assert_ok "init"
ACCOUNT=$(sed -n 's/^created account \([0-9a-f]*\) .*/\1/p' "$OUT")
AD=$SRV_DIR/accounts/$ACCOUNT
SRC=$KH_T/src
make_tree "$SRC" nofifo
mkdir -p "$SRC/big"
rand_file "$SRC/big/r.bin" 4096
as "$D1" backup "$SRC"
assert_ok "backup by the full device"
S1=$(tail -n 1 "$OUT")

# ---- the backup-only device joins (device add / approve --can backup) --------
env KEYHOLD_DEVICE_DIR="$D2" "$KEYHOLD" device add --name laptop >"$KH_W/add.out" 2>"$KH_W/add.err" &
APID=$!
KH_BGPIDS="$KH_BGPIDS $APID"
i=0
while ! grep -q '^code ' "$KH_W/add.out" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 300 ] || fail "device add printed no code: $(cat "$KH_W/add.err")"
  kill -0 "$APID" 2>/dev/null || fail "device add exited: $(cat "$KH_W/add.err")"
  sleep 0.1
done
CODE=$(sed -n 's/^code //p' "$KH_W/add.out")
as "$D1" device approve "$CODE" --can backup
assert_ok "approve with backup only"
wait "$APID" || fail "device add: $(cat "$KH_W/add.err")"

# ---- it backs up, deduplicating against the index ----------------------------
npacks() { find "$AD/data" -type f | wc -l; }
snaps() { ls "$AD/snapshots" | sort | tr '\n' ' '; }
p0=$(npacks)
printf 'from the laptop\n' >"$SRC/docs/laptop.txt"
as "$D2" --quiet backup --json "$SRC"
assert_ok "backup by the backup-only device"
json_check "$OUT" "d['bytes_new_stored'] < 1048576 and d['id'] is not None" "it deduplicated against the index"
S2=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$OUT")
as "$D2" backup "$SRC"
assert_ok "a second backup by the backup-only device"
S3=$(tail -n 1 "$OUT")
before=$(snaps)
p1=$(npacks)

# ---- and is refused what it may not do ---------------------------------------
as "$D2" prune
assert_fail "prune by a backup-only device"
assert_grep -F "this device lacks the 'prune' capability" "$ERR" "prune refusal names the capability"
as "$D2" forget "$S1"
assert_fail "forget by a backup-only device"
assert_grep -F "this device lacks the 'prune' capability" "$ERR" "forget refusal names the capability"
as "$D2" forget --keep-last 1
assert_fail "forget --keep-last by a backup-only device"
assert_grep -F "lacks the 'prune' capability" "$ERR" "forget policy refusal names the capability"
as "$D2" restore "$S1" --target "$KH_T/rt/x"
assert_fail "restore by a backup-only device"
assert_grep -F "this device lacks the 'read' capability" "$ERR" "restore refusal names the capability"
assert_absent "$KH_T/rt/x$SRC/docs" "nothing restored"
as "$D2" snapshots
assert_fail "snapshots by a backup-only device"
assert_grep -F "lacks the 'read' capability" "$ERR" "snapshots refusal names the capability"
assert_eq "$(snaps)" "$before" "refusals removed no snapshot"
assert_eq "$(npacks)" "$p1" "refusals removed no pack"

# ---- the full device sees and restores what the laptop stored -----------------
as "$D1" snapshots --json
assert_ok "snapshots by the full device"
json_check "$OUT" "sorted(x['id'] for x in d) == sorted(['$S1', '$S2', '$S3']) and [x['parent'] for x in d if x['id'] == '$S2'] == [None] and [x['counter'] for x in d if x['id'] == '$S3'] == [2]" "the backup-only snapshots: no parent, counted by the device"
as "$D1" restore "$S3" --target "$KH_T/rt/three"
assert_ok "restore the backup-only device's snapshot"
assert_same_tree "$SRC" "$KH_T/rt/three$SRC" "backup-only snapshot restores exactly"
as "$D1" check --read-data
assert_ok "check"
pass
