#!/bin/sh
# keyholdd serve --config FILE (srv/keyholdd/config.c) and contrib/: the
# sample config's settings reach the server, the command line wins over the
# file, a misspelt or malformed setting stops it with exit 2 (never
# ignored), and the systemd unit passes systemd-analyze verify.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/server.sh"

server_init eu-west
C=$KH_W/keyholdd.conf
# region SIGNUP: what GET /v1/region says about sign-up
region_signup() {
  curl -sS --max-time 10 "$URL/v1/region" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["signup"])'
}
# serve_conf ARGS...: keyholdd serve ARGS in the background, until ready
serve_conf() {
  rm -f "$SRV_LOG"
  "$KEYHOLDD" serve "$@" 2>"$SRV_LOG" &
  SPID=$!
  KH_BGPIDS="$KH_BGPIDS $SPID"
  i=0
  while ! grep -q '^listening on ' "$SRV_LOG" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 200 ] || fail "keyholdd did not start: $(cat "$SRV_LOG")"
    kill -0 "$SPID" 2>/dev/null || fail "keyholdd exited: $(cat "$SRV_LOG")"
    sleep 0.1
  done
  URL=$(sed -n 's/^listening on //p' "$SRV_LOG")
}
stop() { kill -TERM "$SPID"; wait "$SPID"; RC=$?; assert_ok "keyholdd stops on SIGTERM"; }

# ---- the sample config, pointed at this test's directory ---------------------
sed -e "s|^dir = .*|dir = $SRV_DIR|" -e 's|^listen = .*|listen = 127.0.0.1:0|' \
    -e '/^tls-/d' -e "s|^access-log = .*|access-log = $KH_W/conf-access.log|" \
    -e 's|^signup = .*|  signup   =   open  # trailing comments are not comments|' \
    "$KH_SRCDIR/contrib/keyholdd.conf" >"$C"
# (a '#' after a value belongs to the value: the server must refuse it)
run "$KEYHOLDD" serve --config "$C"
assert_rc 2 "a value with a trailing comment"
assert_grep "signup" "$ERR" "the bad value is named"
sed -i 's|^  signup   =   open  # trailing.*|  signup   =   open  |' "$C"
serve_conf --config "$C"
assert_eq "$(region_signup)" "open" "signup from the config file"
curl -sS --max-time 10 -o /dev/null "$URL/v1/health"
grep -q '"path":"/v1/health"' "$KH_W/conf-access.log" || fail "access-log from the config file"
stop
# the command line wins over the file, also given before --config
serve_conf --signup invite --config "$C"
assert_eq "$(region_signup)" "invite" "--signup on the command line wins"
stop
serve_conf --config="$C" --signup invite
assert_eq "$(region_signup)" "invite" "--config=FILE spelling"
stop

# ---- refused -------------------------------------------------------------------
bad() { # WHAT LINE EXPECTED-MESSAGE
  printf 'dir = %s\nlisten = 127.0.0.1:0\n%s\n' "$SRV_DIR" "$2" >"$KH_W/bad.conf"
  run "$KEYHOLDD" serve --config "$KH_W/bad.conf"
  assert_rc 2 "$1"
  assert_grep "$3" "$ERR" "$1: the message"
}
bad "a misspelt setting" "sigup = open" "unrecognized option|sigup"
bad "a setting name with a capital" "Signup = open" "not a setting name"
bad "config inside the config" "config = /etc/passwd" "not a setting name"
bad "a bad value" "idle-timeout = forever" "idle-timeout"
run "$KEYHOLDD" serve --config "$KH_W/missing.conf"
assert_rc 2 "a missing config file"
assert_grep "missing.conf" "$ERR" "missing config named"
run "$KEYHOLDD" serve --config "$KH_W"
assert_rc 2 "a directory as config"
head -c 70000 /dev/zero | tr '\0' '#' >"$KH_W/big.conf"
run "$KEYHOLDD" serve --config "$KH_W/big.conf"
assert_rc 2 "a config over 64 KiB"
run "$KEYHOLDD" serve --config "$C" --config "$C"
assert_rc 2 "--config twice"

# ---- the systemd unit ---------------------------------------------------------
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (package systemd)"
sed "s|/usr/local/bin/keyholdd|$KEYHOLDD|" "$KH_SRCDIR/contrib/keyholdd.service" >"$KH_W/keyholdd.service"
run systemd-analyze verify "$KH_W/keyholdd.service"
assert_ok "systemd-analyze verify contrib/keyholdd.service"
assert_no_grep "." "$ERR" "no warnings from systemd-analyze"
grep -q "^ExecStart=.* serve --config /etc/keyhold/keyholdd.conf$" "$KH_SRCDIR/contrib/keyholdd.service" ||
  fail "the unit runs serve with the sample config's path"
pass
