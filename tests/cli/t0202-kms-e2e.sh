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

# ---- protection e2e killed between the key service's destroy and the record
# A second region: the switch runs, then the account's protection record and
# the device are put back as they were before it (what a kill -9 right after
# the key service's destroy leaves).  The key service's tombstone is the
# authority: the account says e2e and the next command completes the switch.
KEYHOLD_REGION=$KH_T/region2
kh_init
ACC2=$ACCOUNT
cp "$(account_dir)/protection" "$KH_T/protection2.standard"
khr protection e2e --recovery-key-file "$KH_T/rk2.txt"
assert_ok "protection e2e (second region)"
assert_exists "$KEYHOLD_REGION/kms/destroyed/$ACC2" "the key service's tombstone"
cp "$KH_T/protection2.standard" "$(account_dir)/protection"
rm -f "$KEYHOLD_DEVICE_DIR/local-$ACC2/protection-e2e"
khr protection show
assert_ok "protection show after an interrupted switch"
assert_eq "$(cat "$OUT")" "e2e" "an account whose operator recovery is gone does not claim standard"
cmp -s "$KH_T/protection2.standard" "$(account_dir)/protection" && fail "the protection record was not rolled forward"
assert_exists "$KEYHOLD_DEVICE_DIR/local-$ACC2/protection-e2e" "the device remembers e2e again"
khr whoami --json
assert_ok "whoami after the roll-forward"
json_check "$OUT" "d['protection'] == 'e2e'" "whoami says e2e"
khr protection e2e --recovery-key-file "$KH_T/rk2b.txt"
assert_ok "protection e2e again completes nothing twice"
assert_grep "already end-to-end protected" "$OUT" "the switch is complete"
khr admin unwrap --account "$ACC2" --reason "after the interrupted switch"
assert_rc 1 "admin unwrap after the interrupted switch"
assert_grep "end-to-end" "$ERR" "refusal says why"

# ---- a protection record that cannot be read is not "wrong key" -------------
# (prot_get kept the read error's code, reset_passcode no longer turns it into
# "the recovery key does not open the account")
mv "$(account_dir)/protection" "$KH_T/protection2.saved"
mkdir "$(account_dir)/protection"
printf 'another passcode\n' >"$KH_T/newpass2"
KEYHOLD_PASSCODE_FILE=$KH_T/newpass2 khr protection recover --recovery-key-file "$KH_T/rk2.txt"
assert_rc 1 "protection recover with an unreadable protection record"
assert_grep "protection record" "$ERR" "the error names the protection record"
assert_no_grep "does not open" "$ERR" "a read error is not reported as a wrong recovery key"
rmdir "$(account_dir)/protection"
mv "$KH_T/protection2.saved" "$(account_dir)/protection"
KEYHOLD_PASSCODE_FILE=$KH_T/newpass2 khr protection recover --recovery-key-file "$KH_T/rk2.txt"
assert_ok "protection recover with the record back"
pass
