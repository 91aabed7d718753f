#!/bin/sh
# Two regions with the default id on one machine (one HOME, one default
# operator secret directory, one cache): each gets an identity of its own
# (region instance id), so their logs have different origins and their root
# keys different operator secrets.  Backups and operator unwraps in both;
# `log verify` and `watch` stay clean in both, and one witness cosigns both
# logs without reporting tampering.  The short id "local" is what is shown.
. "$KH_SRCDIR/tests/cli/lib.sh"

# the defaults: no KEYHOLD_OPERATOR_DIR / _SECRET_FILE, one $HOME
unset KEYHOLD_OPERATOR_DIR KEYHOLD_OPERATOR_SECRET_FILE KEYHOLD_PKCS11_MODULE
OPDIR=$HOME/.config/keyhold/operator
R1=$KH_T/region1
R2=$KH_T/region2
W=$KH_T/witness
mkdir -p "$KH_T/src1" "$KH_T/src2"
printf 'region one data\n' >"$KH_T/src1/a.txt"
printf 'region two data\n' >"$KH_T/src2/b.txt"

# in_region N CMD...: run keyhold against region N with its own account
in_region() {
  ir_n=$1
  shift
  if [ "$ir_n" = 1 ]; then
    run env KEYHOLD_REGION="$R1" KEYHOLD_ACCOUNT="$A1" "$KEYHOLD" "$@"
  else
    run env KEYHOLD_REGION="$R2" KEYHOLD_ACCOUNT="$A2" "$KEYHOLD" "$@"
  fi
}

KEYHOLD_REGION=$R1
kh_init
A1=$ACCOUNT
KEYHOLD_REGION=$R2
kh_init
A2=$ACCOUNT
assert_grep "in region local" "$OUT" "the second region is 'local' too"

# each region marker carries its own 128-bit instance id
I1=$(sed -n 's/^instance \([0-9a-f]\{32\}\)$/\1/p' "$R1/keyhold-region")
I2=$(sed -n 's/^instance \([0-9a-f]\{32\}\)$/\1/p' "$R2/keyhold-region")
[ -n "$I1" ] && [ -n "$I2" ] || fail "region markers without an instance id"
[ "$I1" != "$I2" ] || fail "two regions share the instance id $I1"
assert_eq "$(sed -n 2p "$R1/keyhold-region")" "id local" "marker keeps the short id"

# display keeps the short id
in_region 1 whoami --json
assert_ok "whoami region 1"
json_check "$OUT" "d['region'] == 'local' and d['account'] == '$A1'" "whoami shows 'local'"

# two origins, two operator secrets (0600), keyed by the instance id
in_region 1 log checkpoint
assert_ok "checkpoint region 1"
O1=$(head -n 1 "$OUT")
in_region 2 log checkpoint
assert_ok "checkpoint region 2"
O2=$(head -n 1 "$OUT")
assert_eq "$O1" "keyhold.local/local/$I1/log" "origin of region 1"
assert_eq "$O2" "keyhold.local/local/$I2/log" "origin of region 2"
assert_exists "$OPDIR/local-$I1.secret" "operator secret of region 1"
assert_exists "$OPDIR/local-$I2.secret" "operator secret of region 2"
[ "$(stat -c %a "$OPDIR/local-$I1.secret")" = 600 ] || fail "operator secret mode"
cmp -s "$OPDIR/local-$I1.secret" "$OPDIR/local-$I2.secret" && fail "the operator secrets are equal"
assert_absent "$OPDIR/local.secret" "no shared operator secret"

# a witness follows both logs
khr witness --state "$W" init --name witness.example/w1
assert_ok "witness init"
for n in 1 2; do
  in_region $n log key
  assert_ok "log key region $n"
  VK=$(cat "$OUT")
  if [ $n = 1 ]; then O=$O1; R=$R1; else O=$O2; R=$R2; fi
  khr witness --state "$W" add-log --origin "$O" --key "$VK"
  assert_ok "witness add-log region $n"
  khr witness --state "$W" cosign --log "$R/log"
  assert_ok "witness cosign region $n (first)"
done

# back up and unwrap in both, interleaved; verify, watch and cosign after each
for round in 1 2; do
  for n in 1 2; do
    if [ $n = 1 ]; then R=$R1; A=$A1; else R=$R2; A=$A2; fi
    printf 'round %s\n' "$round" >>"$KH_T/src$n/round.txt"
    in_region $n backup "$KH_T/src$n"
    assert_ok "backup region $n round $round"
    in_region $n admin unwrap --account "$A" --reason "round $round" --requester "op $n" \
      --key-out "$KH_T/key$n-$round.hex"
    assert_ok "admin unwrap region $n round $round"
    in_region $n log verify
    assert_ok "log verify region $n round $round"
    assert_no_grep "inconsistent|tamper|rolled|forked" "$ERR" "log verify region $n is clean"
    in_region $n watch
    assert_rc 1 "watch region $n round $round (reports the operator's unwraps)"
    assert_grep "reason=\"round $round\"" "$OUT" "watch region $n lists its own unwrap"
    assert_no_grep "CHANGED|SHRANK|NOT CONSISTENT|FAILED" "$ERR" "watch region $n is clean"
    khr witness --state "$W" cosign --log "$R/log"
    assert_ok "witness cosign region $n round $round"
    assert_grep "^— witness\\.example/w1 " "$OUT" "cosignature line region $n"
  done
done

# each watch lists only its own region's unwraps
in_region 1 --json watch
assert_rc 1 "watch --json region 1"
json_check "$OUT" "d['count'] == 2 and all(e['requester'] == 'op 1' for e in d['entries'])" "watch region 1 entries"
in_region 2 --json watch
assert_rc 1 "watch --json region 2"
json_check "$OUT" "d['count'] == 2 and all(e['requester'] == 'op 2' for e in d['entries'])" "watch region 2 entries"

# restores in both
KEYHOLD_REGION=$R1
restore_and_compare latest "$KH_T/src1" "restore region 1"
KEYHOLD_REGION=$R2
restore_and_compare latest "$KH_T/src2" "restore region 2"

# decommissioning region 1 (its directory and its operator secret) leaves
# region 2's key service working
rm -rf "$R1" "$OPDIR/local-$I1.secret"
in_region 2 admin unwrap --account "$A2" --reason "after region 1 is gone" --key-out "$KH_T/key-last.hex"
assert_ok "region 2 unwrap after region 1 is gone"
in_region 2 log verify
assert_ok "log verify region 2 at the end"
khr witness --state "$W" cosign --log "$R2/log"
assert_ok "witness cosign region 2 at the end"

# a region made before instance ids (no instance line in kms/config) keeps
# its recorded origin and the operator secret <region>.secret
grep -v '^instance ' "$R2/kms/config" >"$KH_T/config.old" || fail "strip the instance line"
cp "$KH_T/config.old" "$R2/kms/config"
in_region 2 admin unwrap --account "$A2" --reason "old layout" --key-out "$KH_T/key-old1.hex"
assert_rc 1 "old-layout region without <region>.secret"
assert_grep "operator secret" "$ERR" "the error names the operator secret"
mv "$OPDIR/local-$I2.secret" "$OPDIR/local.secret"
in_region 2 admin unwrap --account "$A2" --reason "old layout" --key-out "$KH_T/key-old2.hex"
assert_ok "old-layout region opens with <region>.secret"
in_region 2 log verify
assert_ok "log verify of the old-layout region"
pass
