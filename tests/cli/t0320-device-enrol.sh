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
# (each secret character moved one place along the code alphabet)
WRONG=$(printf '%s' "$CODE" | cut -c1-5)$(printf '%s' "$CODE" | cut -c6-9 |
  tr 0123456789ABCDEFGHJKMNPQRSTVWXYZ 123456789ABCDEFGHJKMNPQRSTVWXYZ0)
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

# ---- a backup-only device: backs up, refused prune and restore -----------
add_start "$D3" "build box"
as "$D1" device approve "$CODE" --can backup
assert_ok "approve a backup-only device"
cp "$OUT" "$KH_W/approve3.out"
add_wait
assert_ok "device add (backup only)"
DEV3=$(sed -n 's/^approved device \([0-9a-f]*\) .*/\1/p' "$KH_W/approve3.out")
make_tree "$KH_T/src3" small
as "$D3" backup "$KH_T/src3"
assert_ok "a backup-only device backs up"
as "$D3" prune
assert_fail "prune by a backup-only device"
assert_grep "lacks the 'prune' capability" "$ERR" "prune refusal names the capability"
as "$D3" restore "$SNAP" --target "$KH_T/rt/three"
assert_fail "restore by a backup-only device"
assert_grep "lacks the 'read' capability" "$ERR" "restore refusal names the capability"
# ... and it cannot approve devices
add_start "$D4" tablet
as "$D3" device approve "$CODE"
assert_fail "approve by a device without admin"
assert_grep "lacks the 'admin' capability" "$ERR" "approve refusal names the capability"
as "$D2" device refuse "$CODE"
assert_fail "refuse by a device without admin"
as "$D1" device refuse "$CODE"
assert_ok "refuse by the admin device"
add_wait
assert_fail "device add of a refused enrolment"
assert_grep 'refused' "$ERR" "device add says it was refused"
assert_absent "$D4/server-"* "a refused device saves no state"

# ---- tampering: keys swapped in the server's metadata ---------------------
add_start "$D4" tablet
# the server (or whoever can write its metadata) swaps the pending keys for
# its own: the tag no longer verifies under the code
sqlite3 "$R/server/meta.db" "UPDATE enrolments SET sign_pk = randomblob(32), box_pk = randomblob(32) WHERE state = 0;"   || fail "cannot edit the metadata"
as "$D1" device approve "$CODE"
assert_fail "approve of an enrolment whose keys were swapped"
assert_grep 'no pending enrolment matches this code' "$ERR" "swapped keys: the reason"
kill "$APID" 2>/dev/null
wait "$APID" 2>/dev/null

# a second enrolment in the same bucket, with the same name, salt and tag but
# the server's own keys, is ignored; the right one is approved
add_start "$D4" tablet 60
B=$(printf '%s' "$CODE" | cut -c1-2)
sqlite3 "$R/server/meta.db" "INSERT INTO enrolments(id, bucket, name, sign_pk, box_pk, salt, tag, created, expires, state) SELECT lower(hex(randomblob(16))), bucket, name, randomblob(32), randomblob(32), salt, tag, created, expires, 0 FROM enrolments WHERE state = 0 AND bucket = '$B';" \
  || fail "cannot add an enrolment"
assert_eq "$(sqlite3 "$R/server/meta.db" "SELECT count(*) FROM enrolments WHERE state = 0 AND bucket = '$B';")" 2 \
  "two pending enrolments in the code's bucket"
as "$D1" device approve "$CODE" --can read,prune
assert_ok "approve the right one of two pending enrolments"
assert_grep '"tablet" with capabilities read,prune' "$OUT" "the approved one is the code's"
DEV4=$(sed -n 's/^approved device \([0-9a-f]*\) .*/\1/p' "$OUT")
assert_eq "$(sqlite3 "$R/server/meta.db" "SELECT count(*) FROM enrolments WHERE state = 0 AND bucket = '$B';")" 1 \
  "the forged one stays pending"
add_wait
assert_ok "the tablet joined"

# ---- an expired enrolment -------------------------------------------------
add_start "$KH_T/dev6" old 60
OLDAPID=$APID
sqlite3 "$R/server/meta.db" "UPDATE enrolments SET expires = 1 WHERE state = 0;"   || fail "cannot age the enrolment"
as "$D1" device approve "$CODE"
assert_fail "approve of an expired enrolment"
APID=$OLDAPID
add_wait
assert_fail "device add of an expired enrolment"
assert_grep 'expired' "$ERR" "device add says it expired"

# ---- list ----------------------------------------------------------------
as "$D1" device list
assert_ok "device list"
assert_eq "$(wc -l <"$OUT")" 4 "four devices"
assert_grep "^$DEV1 +backup,read,prune,admin .* - +laptop  \(this device\)\$" "$OUT" "list: the first device"
assert_grep "^$DEV2 +read .* - +phone\$" "$OUT" "list: the phone"
as "$D1" --json device list
assert_ok "device list --json"
json_check "$OUT" '[x["name"] for x in d["devices"]] == ["laptop", "phone", "build box", "tablet"] and [x["caps"] for x in d["devices"]] == [["backup", "read", "prune", "admin"], ["read"], ["backup"], ["read", "prune"]] and [x["this"] for x in d["devices"]] == [True, False, False, False] and all(x["revoked"] is None and x["enrolled"] > 1700000000 for x in d["devices"])' "device list --json"

# ---- revoke ----------------------------------------------------------------
as "$D2" device revoke "$DEV1"
assert_fail "revoke by a device without admin"
assert_grep "lacks the 'admin' capability" "$ERR" "revoke refusal names the capability"
as "$D1" device revoke "$(printf '%s' "$DEV2" | cut -c1-8)"
assert_ok "revoke the phone by a prefix of its id"
assert_grep "^revoked device $DEV2 \"phone\"\$" "$OUT" "revoke output"
as "$D2" snapshots
assert_fail "the revoked device is refused at once"
assert_grep 'revoked' "$ERR" "the refusal says revoked"
as "$D2" restore "$SNAP" --target "$KH_T/rt/revoked"
assert_fail "the revoked device cannot restore"
# the others keep working
as "$D1" snapshots
assert_ok "the first device still works"
as "$D3" backup "$KH_T/src3"
assert_ok "the backup-only device still backs up"
as "$D1" device revoke "$DEV2"
assert_fail "revoking a revoked device"
as "$D1" device revoke "$DEV1"
assert_fail "the last admin device cannot revoke itself"
assert_grep 'last admin' "$ERR" "last admin: the reason"
assert_absent "$R/accounts/$ACCT/keys/$DEV2" "the revoked device's key object is deleted"
as "$D1" device list
assert_grep "^$DEV2 +read +[0-9TZ:-]+ +[0-9TZ:-]+ +phone\$" "$OUT" "list shows the revocation time"

# ---- the log has the statements, watch reports them -----------------------
as "$D1" --json watch
assert_ok "watch: every statement is the account's own"
json_check "$OUT" "[(c['op'], c['device'], c['by'], c['signature']) for c in d['device_changes']] == [('enrol', '$DEV2', 'device:$DEV1', 'valid'), ('enrol', '$DEV3', 'device:$DEV1', 'valid'), ('enrol', '$DEV4', 'device:$DEV1', 'valid'), ('revoke', '$DEV2', 'device:$DEV1', 'valid')]" \
  "watch reports every enrolment and the revocation, signed by the first device"
as "$D1" watch
assert_grep "^device enrolled: .* $DEV2 by device:$DEV1, signature valid" "$OUT" "watch text: enrolment"
assert_grep "^device revoked: .* $DEV2 by device:$DEV1, signature valid" "$OUT" "watch text: revocation"

# ---- statements no device of the account made: by the revoked phone (with a
# colluding operator, server stopped) and by a stranger's key -------------
: "${KH_STATEMENT:?set KH_STATEMENT to the kh_statement fixture}"
server_kill9
GHOST=00112233445566778899aabbccddeeff
run "$KH_STATEMENT" "$R" "$(ls -d "$D2"/server-*)/device.key" enrol "$ACCT" "$GHOST" "$DEV2" \
  "caps admin sign_pk x box_pk y name ghost"
assert_ok "append an enrol statement signed by the revoked phone"
run "$KH_STATEMENT" "$R" new revoke "$ACCT" "$DEV3" ffeeddccbbaa99887766554433221100 "sign_pk x"
assert_ok "append a revoke statement signed by a stranger"
server_start
as "$D1" --json watch
assert_fail "watch reports statements the account's devices did not make"
json_check "$OUT" "[(c['op'], c['device'], c['by'], c['signature']) for c in d['device_changes']][-2:] == [('enrol', '$GHOST', 'device:$DEV2', 'revoked-signer'), ('revoke', '$DEV3', 'device:ffeeddccbbaa99887766554433221100', 'invalid')] and d['count'] == 2" \
  "watch: a statement by a revoked device and one by a stranger"
as "$D1" watch
assert_fail "watch (text)"
assert_grep "^device enrolled: .* $GHOST by device:$DEV2, signature by a device REVOKED before it" "$OUT" \
  "watch text: revoked signer"
assert_grep "^device revoked: .* $DEV3 by device:ffeeddccbbaa99887766554433221100, signature INVALID" \
  "$OUT" "watch text: stranger"

# ---- the server hands the new device another wrap: refused (wrap_tag) ------
add_start "$KH_T/dev7" "laptop two" 60
kill -STOP "$APID"
as "$D1" device approve "$CODE"
assert_ok "approve laptop two"
sqlite3 "$R/server/meta.db" "UPDATE enrolments SET wrap = randomblob(81) WHERE name = 'laptop two';" \
  || fail "cannot edit the approval"
kill -CONT "$APID"
add_wait
assert_fail "device add with a wrap the approver did not make"
assert_grep "does not carry this code's tag" "$ERR" "wrap_tag refusal: the reason"
if ls "$KH_T/dev7"/server-*/device >/dev/null 2>&1; then
  fail "a device that refused its approval saved a state"
fi

pass
