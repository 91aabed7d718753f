#!/bin/sh
# Key service and log from the CLI: whoami, admin unwrap shows up in watch
# (exit 1) while the device's own operations do not (exit 0), the log
# verifies, and an unwrap is refused when the log cannot be written.
. "$KH_SRCDIR/tests/cli/lib.sh"

KEYHOLD_OPERATOR_DIR=$KH_T/operator
export KEYHOLD_OPERATOR_DIR
kh_init

khr whoami --json
assert_ok "whoami --json"
json_check "$OUT" "d['account'] == '$ACCOUNT' and d['region'] == 'local' and len(d['device']) == 32 and d['protection'] == 'standard'" "whoami json"
khr whoami
assert_grep "^protection standard$" "$OUT" "whoami text"

# the operator secret was made outside the region, 0600, named by the
# region's short id and instance id
INST=$(sed -n 's/^instance \([0-9a-f]\{32\}\)$/\1/p' "$KEYHOLD_REGION/keyhold-region")
[ -n "$INST" ] || fail "region marker without an instance id"
assert_exists "$KEYHOLD_OPERATOR_DIR/local-$INST.secret" "operator secret"
[ "$(stat -c %a "$KEYHOLD_OPERATOR_DIR/local-$INST.secret")" = 600 ] || fail "operator secret mode"
assert_exists "$KEYHOLD_REGION/kms/config" "kms config"
assert_exists "$KEYHOLD_REGION/log/verifier" "log verifier"

# nothing but the account's own operations so far
khr watch
assert_ok "watch after init"
assert_grep "no key operations" "$OUT" "watch text"

# the device's own, signed request (escrow enable) does not show either
printf 'my recovery words\n' >"$KH_T/rp"
KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_T/rp khr escrow enable
assert_ok "escrow enable"
khr watch
assert_ok "watch after the device's own escrow enable"

# the log: key, checkpoint, verify
khr log key
assert_ok "log key"
assert_grep "^keyhold\\.local/local/$INST/log\\+[0-9a-f]{8}\\+" "$OUT" "log key format"
VKEY=$(cat "$OUT")
khr log checkpoint
assert_ok "log checkpoint"
assert_grep "^keyhold\\.local/local/$INST/log\$" "$OUT" "checkpoint origin"
assert_grep '^2$' "$OUT" "checkpoint size"
khr log verify
assert_ok "log verify"

# the operator's unwrap: logged, with a proof that checks
khr --json admin unwrap --account "$ACCOUNT" --reason "legal request #42" --requester "agent 7" --key-out "$KH_T/key.hex"
assert_ok "admin unwrap"
json_check "$OUT" "d['index'] == 2 and d['size'] == 3 and len(d['proof']) >= 1" "unwrap json"
[ "$(stat -c %a "$KH_T/key.hex")" = 600 ] || fail "key file mode"
[ "$(wc -c <"$KH_T/key.hex")" -eq 65 ] || fail "key file size"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("%s %d %d %s %s" % (d["leaf_hash"], d["index"], d["size"], d["root"], ",".join(d["proof"])))
' "$OUT" >"$KH_T/proof" || fail "proof extraction"
read -r LEAF IDX SIZE ROOT PROOF <"$KH_T/proof"
khr log inclusion --leaf-hash "$LEAF" --index "$IDX" --size "$SIZE" --root "$ROOT" --proof "$PROOF"
assert_ok "inclusion proof of the release verifies"
khr log inclusion --leaf-hash "$LEAF" --index 1 --size "$SIZE" --root "$ROOT" --proof "$PROOF"
assert_fail "inclusion proof with a wrong index"

khr watch
assert_rc 1 "watch after admin unwrap"
assert_grep 'unwrap .*requester="agent 7" reason="legal request #42"' "$OUT" "watch lists the unwrap"
khr --json watch
assert_rc 1 "watch --json"
json_check "$OUT" "d['count'] == 1 and d['entries'][0]['op'] == 'unwrap' and d['entries'][0]['requester'] == 'agent 7' and d['entries'][0]['index'] == 2" "watch json"

khr log verify
assert_ok "log verify after the unwrap"
assert_grep "consistent with size 2" "$OUT" "log verify remembers"

# the log cannot be written (the next tile's name is taken): nothing released
SIZE=$(sed -n 2p "$KEYHOLD_REGION/log/checkpoint")
mkdir "$KEYHOLD_REGION/log/tile/entries/000.p/$((SIZE + 1))" || fail "block the log"
khr admin unwrap --account "$ACCOUNT" --reason "should fail" --key-out "$KH_T/key2.hex"
assert_fail "admin unwrap with an unwritable log"
assert_grep "log" "$ERR" "error names the log"
assert_absent "$KH_T/key2.hex" "no key file when the log fails"
rmdir "$KEYHOLD_REGION/log/tile/entries/000.p/$((SIZE + 1))"
[ "$(sed -n 2p "$KEYHOLD_REGION/log/checkpoint")" = "$SIZE" ] || fail "the log grew"
khr log verify
assert_ok "log verify after the failed unwrap"

# watch notices history being rewritten: roll the checkpoint back
cp "$KEYHOLD_REGION/log/checkpoint" "$KH_T/cp.saved"
PFX=$(printf %s "$ACCOUNT" | cut -c1-6)
khr --json admin unwrap --account "$PFX" --reason "second"
assert_ok "second unwrap, the account named by a prefix"
json_check "$OUT" "d['account'] == '$ACCOUNT'" "unwrap by prefix names the full account"
khr admin escrow-status --account "$PFX"
assert_ok "escrow-status by prefix"
khr admin unwrap --account "ffffffffff" --reason "nobody"
assert_rc 1 "unwrap of an account that does not exist"
assert_grep "no account ffffffffff" "$ERR" "unknown account named"
khr watch
assert_rc 1 "watch sees two"
cp "$KH_T/cp.saved" "$KEYHOLD_REGION/log/checkpoint"
khr watch
[ "$RC" -ge 2 ] || fail "watch on a rolled-back log: exit $RC, expected >= 2"
assert_grep "SHRANK|NOT CONSISTENT" "$ERR" "watch says why"

# a different log key is refused loudly (trust on first use)
printf 'keyhold.local/local/%s/log+00000000+AQ==\n' "$INST" >"$KEYHOLD_REGION/log/verifier"
khr watch
assert_rc 3 "watch with a changed log key"
assert_grep "CHANGED" "$ERR" "watch says the key changed"
pass
