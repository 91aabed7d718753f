#!/bin/sh
# Escrow: enable, wrong attempts counted and logged, a right one resets the
# count and sets a new passcode, 10 wrong in a row destroy the record.
. "$KH_SRCDIR/tests/cli/lib.sh"

KEYHOLD_OPERATOR_DIR=$KH_T/operator
export KEYHOLD_OPERATOR_DIR
kh_init
printf 'recovery words\n' >"$KH_T/rp"
printf 'not it\n' >"$KH_T/bad"
printf 'second passcode\n' >"$KH_T/p2"
printf 'third passcode\n' >"$KH_T/p3"

KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_T/bad KEYHOLD_PASSCODE_FILE=$KH_T/p2 khr escrow recover
assert_fail "recover without a record"

KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_T/rp khr escrow enable
assert_ok "escrow enable"

for i in 1 2 3; do
  KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_T/bad KEYHOLD_PASSCODE_FILE=$KH_T/p2 khr escrow recover
  assert_fail "wrong attempt $i"
  assert_grep "$((10 - i)) attempts left" "$ERR" "attempts left after $i"
done
khr admin escrow-status --account "$ACCOUNT" --json
json_check "$OUT" "d['present'] and d['failed'] == 3 and d['attempts'] == 3" "counter after 3 wrong"

KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_T/rp KEYHOLD_PASSCODE_FILE=$KH_T/p2 khr escrow recover
assert_ok "right attempt"
khr whoami
assert_fail "old passcode replaced"
KEYHOLD_PASSCODE_FILE=$KH_T/p2 khr whoami
assert_ok "new passcode works"
khr admin escrow-status --account "$ACCOUNT" --json
json_check "$OUT" "d['present'] and d['failed'] == 0 and d['attempts'] == 4" "counter reset"

# every attempt is logged and watch reports them (not the device's requests)
KEYHOLD_PASSCODE_FILE=$KH_T/p2 khr --json watch
assert_rc 1 "watch reports escrow attempts"
json_check "$OUT" "[e['attempt'] for e in d['entries'] if e['op'] == 'escrow-attempt'] == [1, 2, 3, 4]" "attempt numbers"

for i in 1 2 3 4 5 6 7 8 9; do
  KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_T/bad KEYHOLD_PASSCODE_FILE=$KH_T/p3 khr escrow recover
  assert_fail "wrong attempt $i of 10"
done
KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_T/bad KEYHOLD_PASSCODE_FILE=$KH_T/p3 khr escrow recover
assert_fail "10th wrong attempt"
assert_grep "destroyed" "$ERR" "10th attempt destroys"
assert_absent "$KEYHOLD_REGION/kms/escrow/$ACCOUNT.rec" "record removed"
KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_T/rp KEYHOLD_PASSCODE_FILE=$KH_T/p3 khr escrow recover
assert_fail "right passcode after destruction"
assert_grep "destroyed" "$ERR" "destroyed for good"
KEYHOLD_PASSCODE_FILE=$KH_T/p2 khr whoami
assert_ok "the account passcode is unchanged"
KEYHOLD_PASSCODE_FILE=$KH_T/p2 khr --json watch
assert_rc 1 "watch after destruction"
json_check "$OUT" "any(e['op'] == 'destroy' for e in d['entries'])" "destroy logged"
khr log verify
assert_ok "log verify"

# root-key rotation rewraps and the operator can still unwrap
khr admin rotate
assert_ok "admin rotate"
assert_grep "v2; 1 account" "$OUT" "rotation output"
khr admin unwrap --account "$ACCOUNT" --reason "after rotation"
assert_ok "unwrap after rotation"

# the log is rolled back underneath the key service: it refuses to release
# anything (exit 1, "log rolled back") and appends nothing until the operator
# puts the newest log back (docs/kms-rootkey.md §8)
cp "$KEYHOLD_REGION/log/checkpoint" "$KH_T/checkpoint.old"
khr admin unwrap --account "$ACCOUNT" --reason "one more"
assert_ok "unwrap before the rollback"
cp "$KEYHOLD_REGION/log/checkpoint" "$KH_T/checkpoint.new"
cp "$KH_T/checkpoint.old" "$KEYHOLD_REGION/log/checkpoint"
khr admin unwrap --account "$ACCOUNT" --reason "after the rollback" --key-out "$KH_T/k.hex"
assert_rc 1 "unwrap over a rolled-back log"
assert_grep "log rolled back" "$ERR" "the refusal names the rollback"
assert_absent "$KH_T/k.hex" "no key released over a rolled-back log"
cmp -s "$KH_T/checkpoint.old" "$KEYHOLD_REGION/log/checkpoint" || fail "the key service appended over the older log"
cp "$KH_T/checkpoint.new" "$KEYHOLD_REGION/log/checkpoint"
khr admin unwrap --account "$ACCOUNT" --reason "after the operator's fix"
assert_ok "unwrap once the newest log is back"
khr log verify
assert_ok "log verify after the fix"
pass
