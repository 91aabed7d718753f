#!/bin/sh
# The key service's endpoints (docs/protocol.md §10) driven by the test
# client, with exact statuses and codes: the wrap at account creation and
# its refusals (second wrap, another account, a missing capability, a bad
# body, no session); prepare / sign / commit of a device's request: the
# entry the device signs is appended byte for byte, and an entry altered
# between prepare and commit, a signature by another key, a prepared request
# used twice or by another device are refused with nothing logged; kill -9
# of the server between a release's log entry and its answer (the entry is
# there, the log verifies, the next release completes); the escrow recovery
# endpoint's refusals.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/protolib.sh"
python3 -c 'import cryptography.hazmat.primitives.asymmetric.ed25519' 2>/dev/null ||
  { echo "SKIP: python3 cryptography missing (Ed25519 signing)"; exit 77; }

srv_init
srv_start
new_account alice
new_account bob
A=$(acct alice)
KMS=/v1/accounts/$A/kms
log_size() { sed -n 2p "$R/log/checkpoint"; }
log_text() { cat "$R"/log/tile/entries/* "$R"/log/tile/entries/*.p/* 2>/dev/null | tr -c '[:print:]\n' '.'; }
# sign_entry NAME ENTRYFILE: base64 Ed25519 signature by NAME's key over
# "keyhold-device-request v1\n" ENTRY (docs/log.md §5.1)
sign_entry() {
  python3 - "$ST/$1.key" "$2" <<'PY'
import base64, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
sk = open(sys.argv[1], "rb").read()[:32]
msg = b"keyhold-device-request v1\n" + open(sys.argv[2], "rb").read()
print(base64.b64encode(Ed25519PrivateKey.from_private_bytes(sk).sign(msg)).decode())
PY
}
# json_field FILE KEY: a string member of a JSON file, to stdout (exactly)
json_field() { python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# ---- the wrap at account creation ------------------------------------------------
python3 -c 'import base64,os; print("{\"key\":\"%s\",\"cipher\":2}" % base64.b64encode(os.urandom(32)).decode())' >"$KH_W/wrap.json"
S0=$(log_size)
pc req alice POST "$KMS/wrap" --body "$KH_W/wrap.json" --nosign
expect "401 no_session" "wrap without a session"
pc req bob POST "$KMS/wrap" --body "$KH_W/wrap.json"
expect "403 wrong_account" "wrap of another account"
printf '{"key":"AAAA","cipher":2}' >"$KH_W/bad.json"
pc req alice POST "$KMS/wrap" --body "$KH_W/bad.json"
expect "400 bad_request" "wrap with a short key"
printf '{"key":"%s","cipher":7}' "$(head -c 32 /dev/zero | base64)" >"$KH_W/bad.json"
pc req alice POST "$KMS/wrap" --body "$KH_W/bad.json"
expect "400 bad_request" "wrap with an unknown cipher"
printf '[1,2]' >"$KH_W/bad.json"
pc req alice POST "$KMS/wrap" --body "$KH_W/bad.json"
expect "400 bad_request" "wrap with a body that is not an object"
pc keygen carol
pc adddev "$R" carol "$A" backup,read
pc session carol "$A" "$(devid carol)"
expect "201 -" "session of a backup,read device"
pc req carol POST "$KMS/wrap" --body "$KH_W/wrap.json"
expect "403 missing_capability" "wrap by a device without admin"
pc req alice GET "$KMS/wrap"
expect "405 method_not_allowed" "GET on wrap"
assert_eq "$(log_size)" "$S0" "refused wraps log nothing"
pc req alice POST "$KMS/wrap" --body "$KH_W/wrap.json"
expect "201 -" "the wrap"
assert_eq "$(log_size)" "$((S0 + 1))" "one wrap entry"
log_text | grep -q "^reason standard protection at account creation (device $(devid alice))\$" ||
  fail "the wrap entry names the device"
ls "$R/accounts/$A/keys" | grep -Eq '^[0-9a-f]{32}$' || fail "the kind-2 wrap is stored"
pc req alice POST "$KMS/wrap" --body "$KH_W/wrap.json"
expect "409 exists" "a second wrap"
pc req alice GET "$KMS" --out "$KH_W/st.json"
expect "200 -" "key-service status"
json_check "$KH_W/st.json" "d['wrap'] is True and d['destroyed'] is False and d['escrow']['present'] is False" "status fields"
pc req carol GET "$KMS" --out "$KH_W/st.json"
expect "200 -" "status needs no capability"

# ---- prepare / sign / commit ------------------------------------------------------
printf '{"op":"unwrap","reason":"lost my laptop"}' >"$KH_W/prep.json"
pc req carol POST "$KMS/prepare" --body "$KH_W/prep.json"
expect "403 missing_capability" "prepare by a device without admin"
printf '{"op":"wrap","reason":"x"}' >"$KH_W/bad.json"
pc req alice POST "$KMS/prepare" --body "$KH_W/bad.json"
expect "400 bad_request" "prepare of an operation devices do not ask for"
printf '{"op":"unwrap","reason":" padded"}' >"$KH_W/bad.json"
pc req alice POST "$KMS/prepare" --body "$KH_W/bad.json"
expect "400 bad_request" "prepare with a reason the log cannot hold"
pc req alice POST "$KMS/prepare" --body "$KH_W/prep.json" --out "$KH_W/p1.json"
expect "201 -" "prepare an unwrap"
json_field "$KH_W/p1.json" entry >"$KH_W/e1"
P1=$(json_field "$KH_W/p1.json" prepare)
grep -q "^requester device:$(devid alice)\$" "$KH_W/e1" || fail "the entry names the device"
grep -q '^reason lost my laptop$' "$KH_W/e1" || fail "the entry carries the reason"
grep -q '^op unwrap$' "$KH_W/e1" || fail "the entry's op"
if grep -q '^device ' "$KH_W/e1"; then fail "the prepared entry has no device line yet"; fi
S1=$(log_size)
# altered between prepare and commit: the device signed another reason
sed 's/^reason lost my laptop$/reason lost my tablet/' "$KH_W/e1" >"$KH_W/e1x"
printf '{"prepare":"%s","sig":"%s"}' "$P1" "$(sign_entry alice "$KH_W/e1x")" >"$KH_W/c.json"
pc req alice POST "$KMS/commit" --body "$KH_W/c.json"
expect "401 bad_signature" "an entry altered between prepare and commit"
assert_eq "$(log_size)" "$S1" "nothing logged for an altered entry"
# a prepared request is used once, refused or not
printf '{"prepare":"%s","sig":"%s"}' "$P1" "$(sign_entry alice "$KH_W/e1")" >"$KH_W/c.json"
pc req alice POST "$KMS/commit" --body "$KH_W/c.json"
expect "404 not_found" "a prepared request is used once"
# signed by another key
pc req alice POST "$KMS/prepare" --body "$KH_W/prep.json" --out "$KH_W/p2.json"
expect "201 -" "prepare again"
json_field "$KH_W/p2.json" entry >"$KH_W/e2"
P2=$(json_field "$KH_W/p2.json" prepare)
printf '{"prepare":"%s","sig":"%s"}' "$P2" "$(sign_entry bob "$KH_W/e2")" >"$KH_W/c.json"
pc req alice POST "$KMS/commit" --body "$KH_W/c.json"
expect "401 bad_signature" "an entry signed by another device's key"
# another admin device of the account cannot commit alice's prepared request
pc req alice POST "$KMS/prepare" --body "$KH_W/prep.json" --out "$KH_W/p3.json"
expect "201 -" "prepare a third time"
json_field "$KH_W/p3.json" entry >"$KH_W/e3"
P3=$(json_field "$KH_W/p3.json" prepare)
pc keygen dave
pc adddev "$R" dave "$A" backup,read,prune,admin
pc session dave "$A" "$(devid dave)"
printf '{"prepare":"%s","sig":"%s"}' "$P3" "$(sign_entry dave "$KH_W/e3")" >"$KH_W/c.json"
pc req dave POST "$KMS/commit" --body "$KH_W/c.json"
expect "404 not_found" "another device's prepared request"
printf '{"prepare":"%s"}' "$P3" >"$KH_W/c.json"
pc req alice POST "$KMS/commit" --body "$KH_W/c.json"
expect "400 bad_request" "a commit without a signature"
assert_eq "$(log_size)" "$S1" "refused commits log nothing"
# the right one: appended byte for byte with the device's signature line
pc req alice POST "$KMS/prepare" --body "$KH_W/prep.json" --out "$KH_W/p4.json"
expect "201 -" "prepare a fourth time"
json_field "$KH_W/p4.json" entry >"$KH_W/e4"
P4=$(json_field "$KH_W/p4.json" prepare)
SIG=$(sign_entry alice "$KH_W/e4")
printf '{"prepare":"%s","sig":"%s"}' "$P4" "$SIG" >"$KH_W/c.json"
pc req alice POST "$KMS/commit" --body "$KH_W/c.json" --out "$KH_W/r4.json"
expect "200 -" "the signed unwrap"
assert_eq "$(log_size)" "$((S1 + 1))" "one entry"
json_check "$KH_W/r4.json" "d['op'] == 'unwrap' and d['index'] == $S1 and len(d['wrap']) == 108" "the key comes back sealed to the device"
{ cat "$KH_W/e4"; printf 'device %s:%s\n' "$(devid alice)" "$SIG"; } >"$KH_W/e4.logged"
log_text | tr '\n' '\001' | grep -qF "$(tr '\n' '\001' <"$KH_W/e4.logged")" ||
  fail "the log holds exactly the signed entry and the device's signature"

# ---- kill -9 between a device's release and its answer ------------------------------
srv_stop
KH_FAULT=kms.unwrap-logged:1:kill
export KH_FAULT
srv_start
unset KH_FAULT
pc session alice
expect "201 -" "a new session after the restart"
pc req alice POST "$KMS/prepare" --body "$KH_W/prep.json" --out "$KH_W/p5.json"
expect "201 -" "prepare before the crash"
json_field "$KH_W/p5.json" entry >"$KH_W/e5"
P5=$(json_field "$KH_W/p5.json" prepare)
SIG5=$(sign_entry alice "$KH_W/e5")
printf '{"prepare":"%s","sig":"%s"}' "$P5" "$SIG5" >"$KH_W/c.json"
S5=$(log_size)
pc req alice POST "$KMS/commit" --body "$KH_W/c.json"
[ "$RC" -eq 1 ] || fail "the client sees the connection end without an answer (rc $RC: $GOT)"
i=0
while kill -0 "$SPID" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "the server was not killed at the fault point"; sleep 0.1
done
wait "$SPID"
assert_eq "$(log_size)" "$((S5 + 1))" "the release was logged before the crash"
{ cat "$KH_W/e5"; printf 'device %s:%s\n' "$(devid alice)" "$SIG5"; } >"$KH_W/e5.logged"
log_text | tr '\n' '\001' | grep -qF "$(tr '\n' '\001' <"$KH_W/e5.logged")" ||
  fail "the released key's entry is in the log, signed by the device"
srv_start
run "$KEYHOLD" log verify --log "$URL/log" --key "$(cat "$R/log/verifier")"
assert_ok "the log verifies after the crash"
assert_grep "^size $((S5 + 1))\$" "$OUT" "with the crashed release in it"
pc session alice
expect "201 -" "session after the restart"
pc req alice POST "$KMS/commit" --body "$KH_W/c.json"
expect "404 not_found" "a prepared request does not outlive the server"
pc req alice POST "$KMS/prepare" --body "$KH_W/prep.json" --out "$KH_W/p6.json"
expect "201 -" "prepare after the restart"
json_field "$KH_W/p6.json" entry >"$KH_W/e6"
printf '{"prepare":"%s","sig":"%s"}' "$(json_field "$KH_W/p6.json" prepare)" \
  "$(sign_entry alice "$KH_W/e6")" >"$KH_W/c.json"
pc req alice POST "$KMS/commit" --body "$KH_W/c.json" --out "$KH_W/r6.json"
expect "200 -" "the next release completes"
json_check "$KH_W/r6.json" "d['index'] == $((S5 + 1))" "right after the crashed one"

# ---- escrow recovery endpoint (no session) ------------------------------------------
S7=$(log_size)
CH=$(curl -s "$URL/v1/challenge" | python3 -c 'import json,sys; print(json.load(sys.stdin)["challenge"])')
Z=$(head -c 32 /dev/zero | base64 -w0)
S64=$(head -c 64 /dev/zero | base64 -w0)
printf '{"name":"x","sign_pk":"%s","box_pk":"%s","challenge":"%s","sig":"%s","secret":"%s"}' \
  "$Z" "$Z" "$CH" "$S64" "$Z" >"$KH_W/rec.json"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -X POST --data-binary "@$KH_W/rec.json" "$URL$KMS/escrow/recover")
assert_eq "$CODE" 401 "recovery with a bad signature"
assert_grep '"code":"bad_signature"' "$KH_W/b" "code bad_signature"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -X POST --data-binary "@$KH_W/rec.json" "$URL$KMS/escrow/recover")
assert_eq "$CODE" 401 "a challenge is used once"
assert_grep '"code":"bad_challenge"' "$KH_W/b" "code bad_challenge"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -X POST --data-binary '{"name":"x"}' "$URL$KMS/escrow/recover")
assert_eq "$CODE" 400 "recovery with a malformed body"
assert_eq "$(log_size)" "$S7" "refused recoveries log nothing (not even an attempt)"
pass
