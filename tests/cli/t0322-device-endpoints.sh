#!/bin/sh
# The device and enrolment endpoints (docs/protocol.md §9) against every
# kind of caller, with the test client kh_proto_client: no session, another
# account's device, a revoked device, a device without the admin
# capability, an altered signature, a replayed request; malformed bodies,
# statements that do not describe the change, the poll's signature.  Each
# refusal has its exact status and code, and changes nothing.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/protolib.sh"
command -v curl >/dev/null 2>&1 || { echo "SKIP: curl missing"; exit 77; }

srv_init
srv_start --signup open

pc keygen alice
pc signup alice -
expect "201 -" "sign-up alice"
pc session alice
expect "201 -" "session alice"
ACC_A=$(cut -d' ' -f1 "$ST/alice.id")
DEV_A=$(cut -d' ' -f2 "$ST/alice.id")
pc keygen bob
pc signup bob -
expect "201 -" "sign-up bob"
pc session bob
ACC_B=$(cut -d' ' -f1 "$ST/bob.id")
for n in reader gone; do
  pc keygen "$n"
  run "$KH_PROTO_CLIENT" "$URL" "$ST" adddev "$R" "$n" "$ACC_A" backup,read
  assert_ok "device $n of alice"
  pc session "$n"
  expect "201 -" "session $n"
done
DEV_R=$(cut -d' ' -f2 "$ST/reader.id")
DEV_G=$(cut -d' ' -f2 "$ST/gone.id")
run "$KH_PROTO_CLIENT" "$URL" "$ST" revoke "$R" gone
assert_ok "revoke gone in the metadata"

# a pending enrolment, made by the real client (it prints its code and waits)
KEYHOLD_DEVICE_DIR=$KH_T/newdev "$KEYHOLD" --region "$URL" device add --name newdev \
  --timeout 120 >"$KH_W/add.out" 2>"$KH_W/add.err" &
APID=$!
KH_BGPIDS="$KH_BGPIDS $APID"
i=0
while ! grep -q '^code ' "$KH_W/add.out" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 200 ] || fail "device add printed no code: $(cat "$KH_W/add.err")"
  sleep 0.1
done
BUCKET=$(sed -n 's/^code \(..\).*/\1/p' "$KH_W/add.out")
pc req alice GET "/v1/enrolments?bucket=$BUCKET" --out "$KH_W/pending"
expect "200 -" "the admin lists the bucket"
ENR=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["enrolments"]; assert len(d) == 1 and d[0]["name"] == "newdev", d; print(d[0]["enrolment"])' "$KH_W/pending") \
  || fail "the pending list: $(cat "$KH_W/pending")"

DEVS=/v1/accounts/$ACC_A/devices
printf '{"entry":"x"}' >"$KH_W/revoke.json"
printf '{"device":"%s","caps":["read"],"wrap":"QUFB","wrap_tag":"%s","entry":"x"}' \
  "$ENR" "$(head -c 32 /dev/zero | base64 -w0)" >"$KH_W/approve.json"

# matrix NAME EXPECT...: each endpoint as caller NAME
check_all() {
  who=$1
  shift
  pc req "$who" GET "$DEVS" --out "$KH_W/o"
  expect "$1" "$who: GET devices"
  pc req "$who" POST "$DEVS/$DEV_R/revoke" --body "$KH_W/revoke.json" --out "$KH_W/o"
  expect "$2" "$who: POST revoke"
  pc req "$who" GET "/v1/enrolments?bucket=$BUCKET" --out "$KH_W/o"
  expect "$3" "$who: GET enrolments"
  pc req "$who" POST "/v1/enrolments/$ENR/approve" --body "$KH_W/approve.json" --out "$KH_W/o"
  expect "$4" "$who: POST approve"
  pc req "$who" POST "/v1/enrolments/$ENR/refuse" --out "$KH_W/o"
  expect "$5" "$who: POST refuse"
}
check_all reader "200 -" "403 missing_capability" "403 missing_capability" \
  "403 missing_capability" "403 missing_capability"
assert_grep "lacks the 'admin' capability" "$KH_W/o" "the refusal names the capability"
check_all gone "403 revoked" "401 session_expired" "401 session_expired" \
  "401 session_expired" "401 session_expired"
check_all bob "403 wrong_account" "403 wrong_account" "200 -" "400 bad_request" "200 -"
# (bob is an admin of his own account: he may list and decide enrolments of
# the region, but the new device only accepts a key tagged under its code)

# no session at all, an altered signature, a replay
for t in "$DEVS" "/v1/enrolments?bucket=$BUCKET"; do
  pc req alice GET "$t" --nosign --out "$KH_W/o"
  expect "401 no_session" "no session: $t"
  pc req alice GET "$t" --tamper sig --out "$KH_W/o"
  expect "401 bad_signature" "altered signature: $t"
done
pc req alice GET "$DEVS" --seq 5000 --out "$KH_W/o"
expect "200 -" "a fresh sequence number"
pc req alice GET "$DEVS" --seq 5000 --out "$KH_W/o"
expect "401 replay" "a replayed request"

# bob refused the enrolment above: it is decided now
wait "$APID"
RC=$?
cp "$KH_W/add.err" "$ERR"
assert_fail "device add of an enrolment another account refused"

# ---- bodies and statements that do not describe the change ---------------------
pc req alice GET "$DEVS" --out "$KH_W/list0"
expect "200 -" "devices before"
for body in '' '{}' '{"entry":""}' '{"entry":"x","more":1}' '[1]' '{"entry":' ; do
  printf '%s' "$body" >"$KH_W/bad.json"
  pc req alice POST "$DEVS/$DEV_R/revoke" --body "$KH_W/bad.json" --out "$KH_W/o"
  expect "400 bad_request" "revoke with body '$body'"
done
# a well-formed log entry that is not a revoke statement of this device
T=$(date -u +%Y-%m-%dT%H:%M:%SZ)
entry() { # OP KEY REQUESTER
  printf 'keyhold-log-entry v1\ntime %s\nregion eu-west\naccount %s\nop %s\nkey %s\nrequester %s\nreason sign_pk AAAA\ndevice %s:c2ln\n' \
    "$T" "$ACC_A" "$1" "$2" "$3" "$DEV_A"
}
for e in "unwrap $DEV_R device:$DEV_A op_must_be_revoke" \
         "revoke $DEV_G device:$DEV_A names_another_device" \
         "revoke $DEV_R device:$DEV_R not_by_the_device_that_sends_it"; do
  set -- $e
  why=$(printf '%s' "$4" | tr _ ' ')
  entry "$1" "$2" "$3" | python3 -c 'import json,sys; print(json.dumps({"entry": sys.stdin.read()}))' \
    >"$KH_W/st.json"
  pc req alice POST "$DEVS/$DEV_R/revoke" --body "$KH_W/st.json" --out "$KH_W/o"
  expect "400 bad_request" "a statement that is not this revocation ($e)"
  assert_grep "$why" "$KH_W/o" "the refusal says why ($why)"
done
pc req alice POST "$DEVS/00000000000000000000000000000000/revoke" --body "$KH_W/revoke.json" \
  --out "$KH_W/o"
expect "404 not_found" "revoke of a device the account does not have"
pc req alice POST "$DEVS/$DEV_G/revoke" --body "$KH_W/revoke.json" --out "$KH_W/o"
expect "409 exists" "revoke of a revoked device"
pc req alice GET "$DEVS" --out "$KH_W/list1"
cmp -s "$KH_W/list0" "$KH_W/list1" || fail "refused revocations changed the device list"
pc req alice GET "/v1/enrolments?bucket=ZZZ" --out "$KH_W/o"
expect "400 bad_request" "a bucket of three characters"
pc req alice GET "/v1/enrolments?bucket=IL" --out "$KH_W/o"
expect "400 bad_request" "a bucket outside the code alphabet"
pc req alice POST "/v1/enrolments/$ENR/approve" --body "$KH_W/approve.json" --out "$KH_W/o"
expect "409 exists" "approve of a decided enrolment"
pc req alice POST "/v1/enrolments/0123456789abcdef0123456789abcdef/refuse" --out "$KH_W/o"
expect "404 not_found" "refuse of an unknown enrolment"

# ---- unauthenticated: create and poll -----------------------------------------------
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data '{"name":"x"}' "$URL/v1/enrolments")
assert_eq "$CODE" 400 "an enrolment request without its fields"
python3 - "$KH_W/req.json" <<'PY'
import base64, json, sys
z = lambda n: base64.b64encode(bytes(n)).decode()
json.dump({"name": "x", "sign_pk": z(32), "box_pk": z(32), "salt": z(16), "tag": z(32),
           "bucket": "AB", "challenge": z(32), "sig": z(64)}, open(sys.argv[1], "w"))
PY
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data @"$KH_W/req.json" "$URL/v1/enrolments")
assert_eq "$CODE" 401 "an enrolment request with a forged challenge"
assert_grep '"code":"bad_challenge"' "$KH_W/b" "forged challenge: code"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' "$URL/v1/enrolments/$ENR")
assert_eq "$CODE" 401 "a poll without its signature"
assert_grep '"code":"bad_signature"' "$KH_W/b" "unsigned poll: code"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -H "KH-Time: $(date +%s)" \
  -H "KH-Enrolment-Signature: $(head -c 64 /dev/zero | base64 -w0)" "$URL/v1/enrolments/$ENR")
assert_eq "$CODE" 401 "a poll signed by another key"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -H "KH-Time: 1" \
  -H "KH-Enrolment-Signature: $(head -c 64 /dev/zero | base64 -w0)" "$URL/v1/enrolments/$ENR")
assert_eq "$CODE" 401 "a poll from long ago"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -H "KH-Time: $(date +%s)" \
  -H "KH-Enrolment-Signature: $(head -c 64 /dev/zero | base64 -w0)" \
  "$URL/v1/enrolments/0123456789abcdef0123456789abcdef")
assert_eq "$CODE" 404 "a poll of an unknown enrolment"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -X DELETE "$URL/v1/enrolments/$ENR")
assert_eq "$CODE" 405 "DELETE of an enrolment"
head -c $((2 * 1024 * 1024)) /dev/zero >"$KH_W/big"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -X POST --data-binary @"$KH_W/big" "$URL/v1/enrolments")
assert_eq "$CODE" 413 "an oversized enrolment request"

pass
