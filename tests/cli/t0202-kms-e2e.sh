#!/bin/sh
# protection e2e: recovery key first, key-service wrap destroyed (logged),
# admin unwrap refused afterwards, the recovery key sets a new passcode.
. "$KH_SRCDIR/tests/cli/lib.sh"

KEYHOLD_OPERATOR_DIR=$KH_T/operator
export KEYHOLD_OPERATOR_DIR
kh_init
mkdir -p "$KH_T/src"
printf 'hello e2e\n' >"$KH_T/src/file.txt"
backup_id "$KH_T/src"

khr admin unwrap --account "$ACCOUNT" --reason "before e2e"
assert_ok "admin unwrap on a standard account"

cp "$(account_dir)/protection" "$KH_T/protection.standard"
khr protection e2e --recovery-key-file "$KH_T/rk.txt"
assert_ok "protection e2e"
[ "$(stat -c %a "$KH_T/rk.txt")" = 600 ] || fail "recovery key file mode"
grep -Eqx '([A-Z2-7]{4}-){12}[A-Z2-7]{4}' "$KH_T/rk.txt" || fail "recovery key format: $(cat "$KH_T/rk.txt")"
khr whoami --json
json_check "$OUT" "d['protection'] == 'e2e'" "whoami after e2e"
assert_absent "$KEYHOLD_REGION/kms/escrow/$ACCOUNT.rec" "escrow record"

khr admin unwrap --account "$ACCOUNT" --reason "after e2e" --key-out "$KH_T/k.hex"
assert_fail "admin unwrap on an e2e account"
assert_grep "end-to-end" "$ERR" "refusal says why"
assert_absent "$KH_T/k.hex" "no key"

# the destruction is in the log (and was the device's own request)
khr log verify
assert_ok "log verify"
grep -rqa "op destroy" "$KEYHOLD_REGION/log/tile/entries" || fail "no destroy entry in the log"
khr --json watch
assert_rc 1 "watch shows the pre-e2e unwrap only"
json_check "$OUT" "d['count'] == 1 and d['entries'][0]['op'] == 'unwrap'" "destroy is the device's own"

# escrow is refused on an e2e account
printf 'rp\n' >"$KH_T/rp"
KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_T/rp khr escrow enable
assert_fail "escrow enable on e2e"

# forgot the passcode: the recovery key sets a new one
printf 'a brand new passcode\n' >"$KH_T/newpass"
printf 'WRONGWRONG\n' >"$KH_T/badrk"
KEYHOLD_PASSCODE_FILE=$KH_T/newpass khr protection recover --recovery-key-file "$KH_T/badrk"
assert_fail "recover with a malformed recovery key"
KEYHOLD_PASSCODE_FILE=$KH_T/newpass khr protection recover --recovery-key-file "$KH_T/rk.txt"
assert_ok "protection recover"
khr snapshots
assert_fail "the old passcode no longer opens the account"
KEYHOLD_PASSCODE_FILE=$KH_T/newpass khr whoami --json
assert_ok "new passcode opens the account"
json_check "$OUT" "d['protection'] == 'e2e'" "still e2e"
KEYHOLD_PASSCODE_FILE=$KH_T/newpass restore_and_compare latest "$KH_T/src" "restore after recovery"

# the provider rolls the protection record back: the device notices
cp "$(account_dir)/protection" "$KH_T/protection.e2e"
cp "$KH_T/protection.standard" "$(account_dir)/protection"
KEYHOLD_PASSCODE_FILE=$KH_T/newpass khr whoami
assert_fail "whoami after a rolled-back protection record"
assert_grep "rolled back" "$ERR" "rollback named"
# and a forged one does not authenticate
printf 'garbage garbage garbage garbage garbage garbage\n' >"$(account_dir)/protection"
KEYHOLD_PASSCODE_FILE=$KH_T/newpass khr whoami
assert_fail "whoami with a forged protection record"
cp "$KH_T/protection.e2e" "$(account_dir)/protection"
KEYHOLD_PASSCODE_FILE=$KH_T/newpass khr whoami
assert_ok "whoami with the real record"
pass
