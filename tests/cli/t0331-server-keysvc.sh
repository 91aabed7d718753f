#!/bin/sh
# The key service behind a real keyholdd (docs/protocol.md §10):
# - init on the server: the key service's wrap (kind 2) exists and its
#   `wrap` log entry (requester init) is in the log;
# - the operator's unwrap while the server runs is reported by the
#   account's device (`keyhold watch` against the URL, exit 1);
# - escrow enable (signed by the device: watch does not list it), recovery
#   on a fresh device dir with wrong passcodes (attempts counted, exit 1)
#   and the right one: the new device restores byte-identical data;
#   ten wrong attempts in a row destroy the record (then exit 1, destroyed);
#   `keyhold passcode change` makes a new escrow record;
# - the server never holds a passcode wrap: every keys/ object is kind 2
#   or a kind-4 device wrap;
# - protection e2e: the destroy is device-signed (not listed by watch), the
#   key service holds nothing more (operator unwrap and escrow refused).
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/server.sh"

server_init eu-west
VKEY=$(sed -n 's/^log-key //p' "$OUT")
server_start
unset KEYHOLD_PASSCODE_FILE
R=$SRV_DIR
# the log's entries as text (every bundle, full or partial)
log_text() { cat "$R"/log/tile/entries/* "$R"/log/tile/entries/*.p/* 2>/dev/null | tr -c '[:print:]\n' '.'; }
# every keys/ object of the account is a key-service wrap (KHKEY1, kind 2),
# a recovery-key wrap (kind 3, after e2e) or a device's kind-4 wrap (81
# bytes, named by a device of the account): nothing a passcode opens
keys_ok() {
  for k in "$AD"/keys/*; do
    magic=$(head -c 7 "$k" | od -An -tx1 | tr -d ' \n')
    case $magic in
    4b484b45593102 | 4b484b45593103) ;; # key service / recovery key (random 256 bits)
    4b484b4559*) fail "$1: a key object of another kind on the server: $k ($magic)" ;;
    *)
      [ "$(stat -c %s "$k")" -eq 81 ] || fail "$1: not a device wrap: $k"
      assert_exists "$AD/devices/$(basename "$k")" "$1: a device wrap names a device"
      ;;
    esac
  done
  # and nowhere in the server's directory a passcode wrap (kind 1)
  if grep -rlaP '^KHKEY1\x01' "$R" >/dev/null 2>&1; then
    fail "$1: a passcode wrap is stored on the server"
  fi
}
count_kind2() {
  n=0
  for k in "$AD"/keys/*; do
    [ "$(head -c 7 "$k" | od -An -tx1 | tr -d ' \n')" = 4b484b45593102 ] && n=$((n + 1))
  done
  echo $n
}

# ---- init: standard protection through the key service ----------------------
khr init --name laptop
assert_ok "keyhold init against the server"
ACCOUNT=$(sed -n 's/^created account \([0-9a-f]*\) .*/\1/p' "$OUT")
DEVICE=$(sed -n 's/^device //p' "$OUT")
AD=$R/accounts/$ACCOUNT
assert_eq "$(count_kind2)" 1 "the key service's wrap (kind 2) is stored"
log_text | grep -q "account $ACCOUNT" || fail "the account's entries are in the log"
log_text | grep -A3 "account $ACCOUNT" | grep -q '^op wrap$' || fail "a wrap entry for the account"
log_text | grep -q '^requester init$' || fail "the wrap entry's requester is init"
keys_ok "after init"
khr whoami
assert_ok "whoami"
assert_grep '^protection standard$' "$OUT" "standard protection"
khr watch
assert_ok "watch: nothing by anybody else yet"

# data to get back later
SRC=$KH_T/src
make_tree "$SRC" nofifo
backup_id "$SRC"

# ---- the operator's unwrap, seen by the device ------------------------------------
run "$KEYHOLDD" admin unwrap --dir "$R" --account "$ACCOUNT" --reason "court order 7"
assert_ok "operator unwrap while the server runs"
assert_grep '^log index [0-9]+$' "$OUT" "the release's log index"
OPIDX=$(sed -n 's/^log index //p' "$OUT")
khr watch
assert_rc 1 "watch reports the operator's unwrap"
assert_grep 'unwrap +requester="operator" reason="court order 7"' "$OUT" "listed with its reason"
assert_grep "\\(log index $OPIDX\\)" "$OUT" "at its index"
khr --json watch
json_check "$OUT" "d['count'] == 1 and d['entries'][0]['op'] == 'unwrap' and d['entries'][0]['index'] == $OPIDX" "watch --json"

# ---- escrow ---------------------------------------------------------------------
printf 'blue heron 4711\n' >"$KH_W/rp"
printf 'wrong one\n' >"$KH_W/wp"
KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_W/rp run "$KEYHOLD" escrow enable
assert_ok "escrow enable against the server"
assert_grep "^escrow enabled for account $ACCOUNT" "$OUT" "escrow enable output"
log_text | grep -q '^op escrow-enable$' || fail "escrow-enable logged"
log_text | grep -q "^requester device:$DEVICE\$" || fail "the device's own request"
khr watch
assert_rc 1 "watch still lists only the operator's unwrap"
assert_no_grep 'escrow-enable' "$OUT" "the device-signed escrow-enable is the account's own"
khr --json escrow status
assert_ok "escrow status"
json_check "$OUT" "d['escrow'] == 'enabled' and d['failed'] == 0" "escrow status fields"
keys_ok "after escrow enable"
# the passcode never reaches the server: nothing in its directory holds it
if grep -rqa 'blue heron 4711' "$R" "$KH_W/access.log" "$SRV_LOG" 2>/dev/null; then
  fail "the escrow passcode reached the server"
fi

# a fresh device with only the passcode: two wrong attempts, then the right one
FRESH=$KH_T/state/fresh
for left in 9 8; do
  KEYHOLD_DEVICE_DIR=$FRESH KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_W/wp \
    run "$KEYHOLD" --json --account "$ACCOUNT" escrow recover --name phone
  assert_fail "recover with a wrong passcode"
  json_check "$OUT" "d['recovered'] is False and d['attempts_left'] == $left" "attempts left $left"
  assert_grep "wrong recovery passcode \\($left attempts left\\)" "$ERR" "says how many are left"
done
assert_absent "$FRESH" "a wrong attempt leaves no device identity"
khr --json escrow status
json_check "$OUT" "d['failed'] == 2 and d['attempts'] == 2" "wrong attempts counted by the key service"
KEYHOLD_DEVICE_DIR=$FRESH KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_W/rp \
  run "$KEYHOLD" --account "$ACCOUNT" escrow recover --name phone
assert_ok "recover with the right passcode"
assert_grep "^recovered account $ACCOUNT: this device is device [0-9a-f]{32} \\(escrow attempt logged at index [0-9]+\\)\$" "$OUT" "recover output"
NEWDEV=$(sed -n 's/.* is device \([0-9a-f]*\) .*/\1/p' "$OUT")
assert_exists "$AD/keys/$NEWDEV" "the new device's kind-4 wrap"
assert_exists "$AD/devices/$NEWDEV" "the new device's record"
KEYHOLD_DEVICE_DIR=$FRESH run "$KEYHOLD" whoami
assert_ok "the recovered device opens the account"
assert_grep "^device $NEWDEV\$" "$OUT" "as itself"
KEYHOLD_DEVICE_DIR=$FRESH run "$KEYHOLD" --quiet restore "$SNAP" --target "$KH_T/rt/fresh"
assert_ok "the recovered device restores"
assert_same_tree "$SRC" "$KH_T/rt/fresh$SRC" "restored by the recovered device"
KEYHOLD_DEVICE_DIR=$FRESH KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_W/rp \
  run "$KEYHOLD" --account "$ACCOUNT" escrow recover
assert_fail "a device dir that already has an identity there"
assert_grep 'already belongs to account' "$ERR" "says why"
khr --json escrow status
json_check "$OUT" "d['failed'] == 0 and d['attempts'] == 3" "the right attempt resets the run"
keys_ok "after recovery"

# ten wrong attempts in a row destroy the record
for i in 1 2 3 4 5 6 7 8 9 10; do
  KEYHOLD_DEVICE_DIR=$KH_T/state/thief KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_W/wp \
    run "$KEYHOLD" --json --account "$ACCOUNT" escrow recover
  assert_fail "wrong attempt $i"
  json_check "$OUT" "d['attempts_left'] == $((10 - i))" "attempt $i counted"
done
assert_grep 'the escrow record is destroyed' "$ERR" "the 10th says destroyed"
KEYHOLD_DEVICE_DIR=$KH_T/state/thief KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_W/rp \
  run "$KEYHOLD" --account "$ACCOUNT" escrow recover
assert_fail "the right passcode after the destruction"
assert_grep 'destroyed after 10 wrong attempts' "$ERR" "destroyed for good"
khr --json escrow status
json_check "$OUT" "d['escrow'] == 'destroyed'" "status destroyed"
khr --json watch
assert_rc 1 "watch lists the escrow attempts"
json_check "$OUT" "[e['attempt'] for e in d['entries'] if e['op'] == 'escrow-attempt'] == [1, 2, 3] + list(range(1, 11))" "every attempt logged with its number before it was judged"

# passcode change: a new escrow record under the new passcode
printf 'new river 99\n' >"$KH_W/np"
khr passcode change --new-passcode-file "$KH_W/np"
assert_ok "passcode change against the server"
assert_grep '^passcode changed \(the escrow record now opens with it\)$' "$OUT" "passcode change output"
KEYHOLD_DEVICE_DIR=$KH_T/state/third KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_W/rp \
  run "$KEYHOLD" --json --account "$ACCOUNT" escrow recover
assert_fail "the old escrow passcode"
json_check "$OUT" "d['attempts_left'] == 9" "a new record, a new count"
KEYHOLD_DEVICE_DIR=$KH_T/state/third KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_W/np \
  run "$KEYHOLD" --account "$ACCOUNT" escrow recover
assert_ok "the new escrow passcode"
keys_ok "after passcode change"

# ---- protection e2e ----------------------------------------------------------------
khr protection e2e --recovery-key-file "$KH_W/rk"
assert_ok "protection e2e against the server"
assert_grep 'destroyed' "$OUT" "e2e output"
assert_eq "$(count_kind2)" 0 "the key service's wrap is gone"
khr protection
assert_ok "protection show"
assert_eq "$(cat "$OUT")" e2e "now e2e"
khr watch
assert_rc 1 "watch"
log_text | grep -q '^reason switch to end-to-end protection$' || fail "the destroy is logged"
assert_no_grep 'switch to end-to-end' "$OUT" "the device-signed destroy is the account's own"
run "$KEYHOLDD" admin unwrap --dir "$R" --account "$ACCOUNT" --reason "after e2e"
assert_fail "the operator can no longer unwrap"
assert_grep 'end-to-end|no key-service wrap' "$ERR" "says why"
KEYHOLD_DEVICE_DIR=$KH_T/state/fourth KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_W/np \
  run "$KEYHOLD" --account "$ACCOUNT" escrow recover
assert_fail "no escrow after e2e"
assert_grep 'end-to-end protected' "$ERR" "escrow recover says why"
KEYHOLD_RECOVERY_PASSCODE_FILE=$KH_W/np run "$KEYHOLD" escrow enable
assert_fail "escrow enable after e2e"
assert_grep 'end-to-end' "$ERR" "escrow enable says why"
keys_ok "after e2e"
khr log verify --key "$VKEY"
assert_ok "log verify against the server's URL"
pass
