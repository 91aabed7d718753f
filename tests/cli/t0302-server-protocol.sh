#!/bin/sh
# keyholdd's account protocol (docs/protocol.md §6-§8, §11) driven by the
# test client kh_proto_client, without the keyhold client: region, marker
# and challenge; sign-up by invitation (missing, bad, spent, expired) and
# open; sessions; every signed-request refusal with its exact status and
# code (no session, expired session, revoked device, another account,
# replay, altered body / path / method / signature, oversized body,
# malformed path and headers), and that a refused request changes
# nothing; objects (PUT, GET, ranges, HEAD, DELETE, lists); quotas; rate
# limits; keyholdd admin invite|accounts|quota while the server runs.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/protolib.sh"
command -v curl >/dev/null 2>&1 || { echo "SKIP: curl missing"; exit 77; }

srv_init
srv_start

# ---- region, marker, challenge (no authentication) -------------------------
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' "$URL/v1/region")
assert_eq "$CODE" 200 "GET /v1/region"
INST=$(sed -n 's/^instance //p' "$R/keyhold-region")
python3 - "$KH_W/b" "$INST" "$(cat "$R/log/verifier")" <<'PY' || fail "region JSON: $(cat "$KH_W/b")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d == {"protocol": 1, "region": "eu-west", "instance": sys.argv[2],
             "origin": "keyhold.local/eu-west/%s/log" % sys.argv[2],
             "vkey": sys.argv[3].strip(), "signup": "invite"}, d
PY
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' "$URL/v1/region/marker")
assert_eq "$CODE" 200 "GET /v1/region/marker"
cmp -s "$KH_W/b" "$R/keyhold-region" || fail "the marker is served byte for byte"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' "$URL/v1/challenge")
assert_eq "$CODE" 200 "GET /v1/challenge"
python3 -c 'import json,sys,base64,time; d=json.load(open(sys.argv[1])); assert len(base64.b64decode(d["challenge"], validate=True)) == 32 and 100 < d["expires"] - time.time() <= 121, d' "$KH_W/b" || fail "challenge JSON"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -X POST "$URL/v1/region")
assert_eq "$CODE" 405 "POST /v1/region"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' "$URL/v1/region/")
assert_eq "$CODE" 400 "no trailing-slash folding (an empty segment, §6.1)"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' "$URL/v1/regions")
assert_eq "$CODE" 404 "an unknown endpoint"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' --path-as-is "$URL/v1/region/../region")
assert_eq "$CODE" 400 "a '..' segment"
assert_grep '"code":"bad_request"' "$KH_W/b" "'..' code"

# ---- sign-up by invitation ----------------------------------------------------
pc keygen alice
pc signup alice
expect "403 invite_required" "sign-up without an invitation"
pc signup alice "not-a-token"
expect "403 bad_invite" "sign-up with an unknown invitation"
run "$KEYHOLDD" admin --dir "$R" invite
assert_ok "admin invite while the server runs"
TOKEN=$(cat "$OUT")
[ ${#TOKEN} -eq 43 ] || fail "an invitation token is 43 characters: $TOKEN"
assert_no_grep "$TOKEN" "$R/server/meta.db" "only the token's hash is stored"
pc signup alice "$TOKEN"
expect "201 -" "sign-up with the invitation"
ACC_A=$(acct alice)
DEV_A=$(devid alice)
pc keygen mallory
pc signup mallory "$TOKEN"
expect "403 bad_invite" "a spent invitation"
run "$KEYHOLDD" admin --dir "$R" accounts --json
assert_ok "admin accounts --json"
assert_eq "$(wc -l <"$OUT")" 1 "the refused sign-up made no account"
python3 - "$OUT" "$ACC_A" <<'PY' || fail "accounts JSON: $(cat "$OUT")"
import json, sys, time
d = json.loads(open(sys.argv[1]).readline())
assert d["account"] == sys.argv[2] and d["devices"] == 1 and d["used_bytes"] == 0
assert d["quota_bytes"] is None and abs(d["created"] - time.time()) < 600, d
PY
run "$KEYHOLDD" admin --dir "$R" invite --expires 1
EXPIRING=$(cat "$OUT")
sleep 2
pc signup mallory "$EXPIRING"
expect "403 bad_invite" "an expired invitation"
# a challenge the server never made, and one used twice
curl -s -o "$KH_W/b" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data "{\"name\":\"x\",\"sign_pk\":\"$(head -c 32 /dev/zero | base64)\",\"box_pk\":\"$(head -c 32 /dev/zero | base64)\",\"invite\":\"t\",\"challenge\":\"$(head -c 32 /dev/urandom | base64)\",\"sig\":\"$(head -c 64 /dev/zero | base64 -w0)\"}" \
  "$URL/v1/signup" >"$KH_W/code"
assert_eq "$(cat "$KH_W/code")" 401 "forged challenge status"
assert_grep '"code":"bad_challenge"' "$KH_W/b" "forged challenge code"
# a real challenge, spent by a sign-up whose signature fails, is not good twice
CH=$(curl -s "$URL/v1/challenge" | python3 -c 'import json,sys; print(json.load(sys.stdin)["challenge"])')
Z32=$(head -c 32 /dev/zero | base64)
Z64=$(head -c 64 /dev/zero | base64 -w0)
for want in "401 bad_signature" "401 bad_challenge"; do
  CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' --data "{\"name\":\"x\",\"sign_pk\":\"$Z32\",\"box_pk\":\"$Z32\",\"invite\":\"t\",\"challenge\":\"$CH\",\"sig\":\"$Z64\"}" "$URL/v1/signup")
  assert_eq "$CODE ${want#* }" "${want% *} $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["code"])' "$KH_W/b")" "challenge use: $want"
done
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -H 'Content-Type: application/json' --data '{"name":' "$URL/v1/signup")
assert_eq "$CODE" 400 "malformed sign-up JSON"
head -c 1100000 /dev/zero >"$KH_W/big"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' --data-binary "@$KH_W/big" "$URL/v1/signup")
assert_eq "$CODE" 413 "sign-up body over 1 MiB"
assert_grep '"code":"body_too_large"' "$KH_W/b" "413 code"

# ---- sessions -------------------------------------------------------------------
pc session alice
expect "201 -" "session of alice"
new_account bob
ACC_B=$(acct bob)
# bob's key claiming alice's device
pc session bob "$ACC_A" "$DEV_A"
expect "401 bad_signature" "a session for another's device"
pc session bob "$ACC_A" "$(devid bob)"
expect "401 bad_signature" "a session naming another account"

# ---- objects ---------------------------------------------------------------------
O=/v1/accounts/$ACC_A/objects
L=locks/$H32
head -c 3000 /dev/urandom >"$KH_W/lock"
pc req alice PUT "$O/$L" --body "$KH_W/lock" --inm '*'
expect "201 -" "PUT a lock"
cmp -s "$KH_W/lock" "$(obj_file alice "$L")" || fail "the lock is stored byte for byte"
pc req alice PUT "$O/$L" --body "$KH_W/lock"
expect "409 exists" "objects are immutable"
pc req alice GET "$O/$L" --out "$KH_W/got"
expect "200 -" "GET the lock"
cmp -s "$KH_W/lock" "$KH_W/got" || fail "GET returns the object"
pc req alice GET "$O/$L" --range bytes=100-199 --out "$KH_W/got"
expect "206 -" "GET a range"
dd if="$KH_W/lock" bs=1 skip=100 count=100 2>/dev/null | cmp -s - "$KH_W/got" || fail "the range's bytes"
pc req alice GET "$O/$L" --range bytes=100-3000 --out "$KH_W/got"
expect "416 bad_range" "a range past the end"
pc req alice GET "$O/$L" --range bytes=5- --out "$KH_W/got"
expect "400 bad_request" "a range not of the form bytes=A-B"
pc req alice HEAD "$O/$L"
expect "200 -" "HEAD"
pc req alice GET "$O/$L?a=b&c=d.e" --out "$KH_W/got"
expect "200 -" "a signed target with a query (§6.1)"
cmp -s "$KH_W/lock" "$KH_W/got" || fail "GET with a query returns the object"
pc req alice GET "/v1/accounts/$ACC_A/list/locks" --out "$KH_W/list"
expect "200 -" "list locks"
assert_eq "$(cat "$KH_W/list")" "3000 $L" "the listing"
pc req alice GET "$O/locks/$(echo $H32 | tr 0 f)" --out "$KH_W/got"
expect "404 not_found" "GET a missing object"
pc req alice DELETE "$O/locks/$(echo $H32 | tr 0 f)"
expect "204 -" "DELETE a missing object"

# ---- the signed-request check: each refusal, exactly, and nothing changes ---------
L2=locks/$(echo $H32 | tr 1 e)
F2=$(obj_file alice "$L2")
pc req alice PUT "$O/$L2" --body "$KH_W/lock" --nosign
expect "401 no_session" "no session"
pc req alice PUT "$O/$L2" --body "$KH_W/lock" --session "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
expect "401 no_session" "a session token never issued"
pc req alice PUT "$O/$L2" --body "$KH_W/lock" --tamper body
expect "400 bad_request" "body altered after signing"
assert_absent "$F2" "nothing stored for an altered body"
pc req alice PUT "$O/$L2" --body "$KH_W/lock" --tamper sha
expect "401 bad_signature" "KH-Body-SHA256 altered after signing"
pc req alice PUT "$O/$L2" --body "$KH_W/lock" --tamper sig
expect "401 bad_signature" "signature altered"
pc req alice PUT "$O/$L2" --body "$KH_W/lock" --tamper path
expect "401 bad_signature" "path altered after signing"
assert_absent "$F2" "nothing stored for refused PUTs"
pc req alice HEAD "$O/$L" --tamper method
expect "401 bad_signature" "method altered after signing"
pc req alice PUT "$O/$L2" --body "$KH_W/lock" --seq 1
expect "401 replay" "a sequence number used before"
assert_absent "$F2" "nothing stored for a replay"
pc req alice DELETE "$O/$L" --seq 2
expect "401 replay" "a replayed DELETE"
assert_exists "$(obj_file alice "$L")" "a refused DELETE deletes nothing"
pc req alice GET "$O/$L" --seq 5000
expect "200 -" "a sequence number far ahead"
pc req alice GET "$O/$L" --seq 900
expect "401 replay" "a sequence number 4100 below the highest"
pc req alice GET "$O/$L" --seq 905
expect "200 -" "a sequence number 4095 below the highest, unused"
# another account's device
pc req bob PUT "$O/$L2" --body "$KH_W/lock"
expect "403 wrong_account" "PUT into another account"
assert_absent "$F2" "nothing stored in another account"
pc req bob DELETE "$O/$L"
expect "403 wrong_account" "DELETE in another account"
assert_exists "$(obj_file alice "$L")" "another account's DELETE deletes nothing"
pc req bob GET "$O/$L" --out "$KH_W/got"
expect "403 wrong_account" "GET from another account"
pc req bob GET "/v1/accounts/$ACC_A/list/locks" --out "$KH_W/got"
expect "403 wrong_account" "list another account"
# oversized bodies: the kind's bound (a lock is at most 4 KiB)
head -c 4097 /dev/urandom >"$KH_W/big-lock"
pc req alice PUT "$O/$L2" --body "$KH_W/big-lock"
expect "413 body_too_large" "a lock of 4 KiB + 1"
assert_absent "$F2" "nothing stored for an oversized body"
head -c 4096 /dev/urandom >"$KH_W/max-lock"
pc req alice PUT "$O/$L2" --body "$KH_W/max-lock"
expect "201 -" "a lock of exactly 4 KiB"
truncate -s $((16 * 1024 * 1024 + 4097)) "$KH_W/big-snap"
pc req alice PUT "$O/snapshots/$H64" --body "$KH_W/big-snap"
expect "413 body_too_large" "a snapshot of 16 MiB + 4 KiB + 1"
assert_absent "$(obj_file alice "snapshots/$H64")" "no oversized snapshot"
# malformed paths and names
pc req alice GET "$O/locks/$(echo $H32 | tr a A)"
expect "400 bad_request" "an upper-case id"
pc req alice GET "$O/data/ff/$H64"
expect "400 bad_request" "a pack whose fan-out is not its id's first byte"
pc req alice GET "$O/keys/$H64"
expect "400 bad_request" "a key id of 64 digits"
pc req alice GET "/v1/accounts/$ACC_A/list/account"
expect "400 bad_request" "list a kind that is not listed"
pc req alice PUT "$O/account" --body "$KH_W/lock"
expect "201 -" "PUT the account marker (admin)"
pc req alice DELETE "$O/account"
expect "403 forbidden" "nobody deletes the account marker"
assert_exists "$(obj_file alice account)" "the marker stays"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' "$URL/v1/accounts/$ACC_A/objects/locks/%30123456789abcdef0123456789abcdef")
assert_eq "$CODE" 400 "percent-encoding in an object path"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' --path-as-is "$URL/v1/accounts/$ACC_A/objects//locks/$H32")
assert_eq "$CODE" 400 "an empty segment"
assert_grep '"code":"bad_request"' "$KH_W/b" "empty segment code"
TOK=$(cut -d' ' -f1 "$ST/alice.sess")
for seq in abc 0 -1 9223372036854775808 01; do
  CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -H "KH-Session: $TOK" -H "KH-Seq: $seq" \
    -H "KH-Body-SHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    -H "KH-Signature: $(head -c 64 /dev/zero | base64 -w0)" "$URL$O/$L")
  assert_eq "$CODE" 400 "KH-Seq '$seq'"
  assert_grep '"code":"bad_request"' "$KH_W/b" "KH-Seq '$seq' code"
done
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' -H "KH-Session: $TOK" -H "KH-Seq: 7777" \
  -H "KH-Body-SHA256: E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855" \
  -H "KH-Signature: $(head -c 64 /dev/zero | base64 -w0)" "$URL$O/$L")
assert_eq "$CODE" 400 "an upper-case KH-Body-SHA256"
pc req alice PUT "$O/$L2" --body "$KH_W/lock" --inm '"etag"'
expect "400 bad_request" "If-None-Match other than *"

# ---- revoked device ------------------------------------------------------------------
pc keygen phone
run "$KH_PROTO_CLIENT" "$URL" "$ST" adddev "$R" phone "$ACC_A" backup,read,prune,admin
assert_ok "a second device of alice"
pc session phone
expect "201 -" "session of the second device"
pc req phone GET "$O/$L" --out "$KH_W/got"
expect "200 -" "the second device reads"
run "$KH_PROTO_CLIENT" "$URL" "$ST" revoke "$R" phone
assert_ok "revoke the second device"
pc req phone GET "$O/$L" --out "$KH_W/got"
expect "403 revoked" "a revoked device's session"
pc req phone GET "$O/$L" --out "$KH_W/got"
expect "401 session_expired" "the revoked device's sessions ended"
pc session phone
expect "403 revoked" "a revoked device opens no session"

# ---- quota ------------------------------------------------------------------------------
run "$KEYHOLDD" admin --dir "$R" accounts --json
USED=$(python3 -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["account"]==sys.argv[2]][0]["used_bytes"])' "$OUT" "$ACC_A")
assert_eq "$USED" $((3000 + 4096 + 3000)) "used bytes count every stored object"
run "$KEYHOLDD" admin --dir "$R" quota --account "$ACC_A" --bytes $((USED + 4000))
assert_ok "admin quota while the server runs"
L3=locks/$(echo $H32 | tr 2 d)
pc req alice PUT "$O/$L3" --body "$KH_W/lock"
expect "201 -" "within the quota"
L4=locks/$(echo $H32 | tr 3 c)
pc req alice PUT "$O/$L4" --body "$KH_W/lock"
expect "507 quota" "over the quota"
assert_absent "$(obj_file alice "$L4")" "nothing stored over the quota"
pc req alice DELETE "$O/$L3"
expect "204 -" "DELETE gives the bytes back"
pc req alice PUT "$O/$L4" --body "$KH_W/lock"
expect "201 -" "within the quota again"
run "$KEYHOLDD" admin --dir "$R" accounts
assert_ok "admin accounts"
assert_grep "^$ACC_A  [0-9]+  1  $((USED + 3000))  $((USED + 4000))\$" "$OUT" "accounts line: id created devices used quota"
run "$KEYHOLDD" admin --dir "$R" quota --account "$ACC_A" --bytes none
assert_ok "admin quota none"
run "$KEYHOLDD" admin --dir "$R" quota --account abc --bytes 5
assert_rc 2 "admin quota with a short id"
run "$KEYHOLDD" admin --dir "$R" quota --account "$(echo $H32 | tr 0 a)" --bytes 5
assert_rc 1 "admin quota of a missing account"
assert_grep 'not found' "$ERR" "missing account named"
run "$KEYHOLDD" admin invite
assert_rc 2 "admin without --dir"
run "$KEYHOLDD" admin --dir "$R" frobnicate
assert_rc 2 "admin with an unknown command"
run "$KEYHOLDD" admin --dir "$KH_T/nothing" accounts
assert_rc 1 "admin on a directory that is not a region"

# ---- sessions across a restart end; the session lifetime ------------------------------
srv_stop
srv_start --session-ttl 2 --signup open
pc req alice GET "$O/$L" --out "$KH_W/got"
expect "401 session_expired" "a session from before the restart"
pc session alice
expect "201 -" "a new session"
pc req alice GET "$O/$L" --out "$KH_W/got"
expect "200 -" "within the session's lifetime"
sleep 3
pc req alice GET "$O/$L" --out "$KH_W/got"
expect "401 session_expired" "after the session's lifetime"
# open sign-up takes no invitation
pc keygen carol
pc signup carol
expect "201 -" "open sign-up"
CODE=$(curl -s -o "$KH_W/b" -w '%{http_code}' "$URL/v1/region")
assert_grep '"signup":"open"' "$KH_W/b" "region says open"

# ---- at most 64 sessions per device: the oldest ends -----------------------------------
srv_stop
srv_start --address-rate 100
pc session alice
expect "201 -" "the first of 65 sessions"
cp "$ST/alice.sess" "$KH_W/first.sess"
n=1
while [ $n -lt 65 ]; do
  pc session alice
  expect "201 -" "session $n"
  n=$((n + 1))
done
pc req alice GET "$O/$L" --out "$KH_W/got"
expect "200 -" "the 65th session works"
cp "$ST/alice.sess" "$KH_W/last.sess"
cp "$KH_W/first.sess" "$ST/alice.sess"
pc req alice GET "$O/$L" --out "$KH_W/got"
expect "401 session_expired" "the oldest of 65 sessions ended"
cp "$KH_W/last.sess" "$ST/alice.sess"

# ---- rate limits ------------------------------------------------------------------------
srv_stop
srv_start --address-rate 3 --device-rate 2
pc session alice
expect "201 -" "session 1 of 3"
pc session alice
expect "201 -" "session 2 of 3"
pc session alice
expect "201 -" "session 3 of 3"
pc session alice
expect "429 rate_limited" "a fourth session within the minute"
grep -Eq '^retry-after [1-9][0-9]*$' "$OUT" || fail "429 has Retry-After: $(cat "$OUT")"
pc req alice GET "$O/$L" --out "$KH_W/got"
expect "200 -" "device request 1"
n=1
while [ $n -lt 10 ]; do
  pc req alice GET "$O/$L" --out "$KH_W/got"
  [ "$GOT" = "200 -" ] || break
  n=$((n + 1))
done
expect "429 rate_limited" "a device over its rate (burst 4)"
[ $n -ge 4 ] && [ $n -le 6 ] || fail "the device's burst: $n requests passed"
grep -Eq '^retry-after 1$' "$OUT" || fail "device 429 Retry-After: $(cat "$OUT")"
sleep 1.2
pc req alice GET "$O/$L" --out "$KH_W/got"
expect "200 -" "after Retry-After"

srv_stop
assert_grep 'stopped' "$SLOG" "SIGTERM stops the server"
pass
