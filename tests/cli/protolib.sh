# Helpers of the account-protocol scenarios (t0302-t0309): a real keyholdd
# driven by the test client kh_proto_client (tests/tools/), without the
# keyhold client.  Sourced after lib.sh.
: "${KEYHOLDD:?set KEYHOLDD to the keyholdd binary}"
: "${KH_PROTO_CLIENT:?set KH_PROTO_CLIENT to the kh_proto_client helper}"

KEYHOLD_OPERATOR_DIR=$KH_T/operator
export KEYHOLD_OPERATOR_DIR
R=$KH_T/sregion
SLOG=$KH_W/server.err
ST=$KH_T/devs

# srv_init: a region for the server
srv_init() {
  run "$KEYHOLDD" init --dir "$R" --region-id eu-west
  assert_ok "keyholdd init"
}

# srv_start ARGS...: keyholdd serve in the background; sets SPID, URL.
srv_start() {
  rm -f "$SLOG"
  "$KEYHOLDD" serve --dir "$R" --listen 127.0.0.1:0 "$@" 2>"$SLOG" &
  SPID=$!
  KH_BGPIDS="$KH_BGPIDS $SPID"
  i=0
  while ! grep -q '^listening on ' "$SLOG" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "keyholdd did not start: $(cat "$SLOG")"
    kill -0 "$SPID" 2>/dev/null || fail "keyholdd exited: $(cat "$SLOG")"
    sleep 0.1
  done
  port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$SLOG")
  [ -n "$port" ] || fail "no port in: $(cat "$SLOG")"
  URL=http://127.0.0.1:$port
}

# srv_stop: SIGTERM, and the server exits 0
srv_stop() {
  kill -TERM "$SPID"
  wait "$SPID"
  rc=$?
  [ "$rc" -eq 0 ] || fail "keyholdd exited $rc on SIGTERM: $(cat "$SLOG")"
}

# pc ARGS...: the test client against $URL; its "STATUS CODE" line in $GOT
pc() {
  "$KH_PROTO_CLIENT" "$URL" "$ST" "$@" >"$OUT" 2>"$ERR"
  RC=$?
  GOT=$(head -n 1 "$OUT")
}

# expect "STATUS CODE" WHAT: the last pc answered exactly that
expect() {
  [ "$RC" -eq 0 ] || fail "$2: the client failed ($RC): $(cat "$ERR")"
  [ "$GOT" = "$1" ] || fail "$2: got '$GOT', expected '$1'"
}

# new_account NAME: keys, an invitation, sign-up, a session; sets ACC_<NAME>
new_account() {
  pc keygen "$1"
  run "$KEYHOLDD" admin --dir "$R" invite
  assert_ok "admin invite for $1"
  pc signup "$1" "$(cat "$OUT")"
  expect "201 -" "sign-up of $1"
  pc session "$1"
  expect "201 -" "session of $1"
}

acct() { cut -d' ' -f1 "$ST/$1.id"; }
devid() { cut -d' ' -f2 "$ST/$1.id"; }

# obj_path NAME OBJECT: the object's file in the region (for "nothing changed")
obj_file() { echo "$R/accounts/$(acct "$1")/$2"; }

H32=0123456789abcdef0123456789abcdef
H64=$H32$H32
