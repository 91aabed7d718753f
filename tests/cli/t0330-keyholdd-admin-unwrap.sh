#!/bin/sh
# The operator's unwrap while keyholdd runs (it holds the key service):
# `keyholdd admin unwrap` goes through DIR/server/admin.sock and prints what
# `keyhold admin unwrap` prints; the account's device sees the release with
# `keyhold watch` against the URL; the embedded command refuses at once
# instead of waiting for the lock forever; a malformed socket request
# changes nothing; without a server the command opens DIR itself.  Then
# kill -9 of the server between the release's log entry and its answer:
# after a restart the log verifies, the entry is there, and the next
# release completes.
. "$KH_SRCDIR/tests/cli/lib.sh"
: "${KEYHOLDD:?set KEYHOLDD to the keyholdd binary}"

KEYHOLD_OPERATOR_DIR=$KH_T/operator
export KEYHOLD_OPERATOR_DIR
R=$KEYHOLD_REGION
SOCK=$R/server/admin.sock

run "$KEYHOLDD" init --dir "$R" --region-id eu-west
assert_ok "keyholdd init"
VKEY=$(sed -n 's/^log-key //p' "$OUT")
kh_init
SLOG=$KH_W/server.err
start_server() {
  rm -f "$SLOG"
  env "$@" "$KEYHOLDD" serve --dir "$R" --listen 127.0.0.1:0 2>"$SLOG" &
  SPID=$!
  KH_BGPIDS="$KH_BGPIDS $SPID"
  i=0
  while ! grep -q '^listening on ' "$SLOG" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 300 ] || fail "keyholdd did not start: $(cat "$SLOG")"
    kill -0 "$SPID" 2>/dev/null || fail "keyholdd exited: $(cat "$SLOG")"
    sleep 0.1
  done
  URL=$(sed -n 's|^listening on \(http://127\.0\.0\.1:[0-9][0-9]*\)$|\1|p' "$SLOG")
  [ -n "$URL" ] || fail "no URL in: $(cat "$SLOG")"
}
# the log's entries as text (every bundle, full or partial)
log_text() { cat "$R"/log/tile/entries/* "$R"/log/tile/entries/*.p/* 2>/dev/null | tr -c '[:print:]\n' '.'; }

start_server
[ -S "$SOCK" ] || fail "no operator socket at $SOCK"
assert_eq "$(stat -c %a "$SOCK")" 600 "socket mode"
assert_eq "$(stat -c %a "$R/server")" 700 "server directory mode"

# ---- usage ------------------------------------------------------------------
run "$KEYHOLDD" admin unwrap --dir "$R" --account "$ACCOUNT"
assert_rc 2 "admin unwrap without --reason"
run "$KEYHOLDD" admin unwrap --dir "$R" --account XYZ --reason r
assert_rc 2 "admin unwrap with a malformed account"
run "$KEYHOLDD" admin frobnicate --dir "$R"
assert_rc 2 "unknown admin command"

# ---- the embedded command is told where to go ------------------------------
run timeout 20 "$KEYHOLD" admin unwrap --account "$ACCOUNT" --reason "embedded"
assert_rc 1 "keyhold admin unwrap while the server runs"
assert_grep 'keyholdd admin --dir' "$ERR" "the refusal names the way in"

# ---- the operator's unwrap through the socket --------------------------------
run "$KEYHOLDD" admin unwrap --dir "$R" --account "$ACCOUNT" --reason "legal request 12" \
    --requester "court order 7"
assert_ok "keyholdd admin unwrap while the server runs"
assert_grep "^released the key of account $ACCOUNT\$" "$OUT" "release line"
assert_grep '^log index 1$' "$OUT" "index of the release (0 is the wrap)"
assert_grep '^checkpoint size 2$' "$OUT" "checkpoint size"
assert_grep '^checkpoint root [0-9a-f]{64}$' "$OUT" "root"
assert_grep '^leaf hash [0-9a-f]{64}$' "$OUT" "leaf hash"
assert_grep '^inclusion proof [0-9a-f]{64}$' "$OUT" "proof"
log_text | grep -q 'requester court order 7' || fail "the release is in the log"
ROOT=$(sed -n 's/^checkpoint root //p' "$OUT")
LEAF=$(sed -n 's/^leaf hash //p' "$OUT")
PROOF=$(sed -n 's/^inclusion proof //p' "$OUT")
khr log inclusion --leaf-hash "$LEAF" --index 1 --size 2 --root "$ROOT" --proof "$PROOF"
assert_ok "the printed inclusion proof verifies"

# the key, and the JSON form (same keys as keyhold admin unwrap --json)
run "$KEYHOLDD" admin unwrap --dir "$R" --account "$ACCOUNT" --reason "json" --json \
    --key-out "$KH_W/k1.hex"
assert_ok "admin unwrap --json --key-out"
python3 - "$OUT" "$KH_W/k1.hex" <<'PY' || fail "JSON output: $(cat "$OUT")"
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {"account", "index", "size", "root", "leaf_hash", "proof", "checkpoint",
                  "cosignatures", "key_file"}, d
assert d["index"] == 2 and d["size"] == 3 and d["key_file"] == sys.argv[2], d
assert d["checkpoint"].split("\n")[1] == "3", d
PY
assert_eq "$(stat -c %a "$KH_W/k1.hex")" 600 "key file mode"
grep -Eq '^[0-9a-f]{64}$' "$KH_W/k1.hex" || fail "key file is 64 hex digits"

# an end-to-end or unknown account: nothing released, exit 1
run "$KEYHOLDD" admin unwrap --dir "$R" --account 0123456789abcdef0123456789abcdef --reason x
assert_rc 1 "unwrap of an account without a key-service wrap"
assert_grep 'no key-service wrap' "$ERR" "says why"

# a malformed request on the socket: an error answer, nothing logged
SIZE0=$(head -2 "$R/log/checkpoint" | tail -1)
python3 - "$SOCK" <<'PY' || fail "malformed socket request"
import socket, sys
for req in [b"hello\n", b"keyholdd-admin v1\nop unwrap\n", b"keyholdd-admin v1\nop destroy\n" * 3,
            b"x" * 5000]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    try:
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
    except BrokenPipeError:
        pass
    r = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            r += b
    except ConnectionResetError:
        pass  # the server closed with our oversized request unread
    assert r == b"" or r.startswith(b"keyholdd-admin v1\nstatus error\n"), r
PY
assert_eq "$(head -2 "$R/log/checkpoint" | tail -1)" "$SIZE0" "nothing logged by bad requests"

# ---- the account's device sees the operator's unwrap --------------------------
khr watch --log "$URL/log"
assert_rc 1 "watch reports uses by somebody else"
assert_grep 'requester="court order 7"' "$OUT" "watch lists the operator's unwrap"
assert_grep 'reason="legal request 12"' "$OUT" "with its reason"

# ---- kill -9 between the release's log entry and its answer -------------------
kill -TERM "$SPID"
wait "$SPID"
assert_absent "$SOCK" "the socket is removed on stop"
start_server KH_FAULT=kms.unwrap-logged:1:kill
run "$KEYHOLDD" admin unwrap --dir "$R" --account "$ACCOUNT" --reason "crash release"
assert_rc 1 "the operator sees the server die"
assert_grep 'no valid answer' "$ERR" "and is told"
i=0
while kill -0 "$SPID" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "the server was not killed at the fault point"; sleep 0.1
done
wait "$SPID"
log_text | grep -q 'reason crash release' || fail "the killed release has its log entry"
start_server
khr log verify --log "$URL/log" --key "$VKEY"
assert_ok "log verify after the crash"
assert_grep '^size 4$' "$OUT" "the entry is covered by the checkpoint"
run "$KEYHOLDD" admin unwrap --dir "$R" --account "$ACCOUNT" --reason "after restart" \
    --key-out "$KH_W/k2.hex"
assert_ok "the next release completes"
assert_grep '^log index 4$' "$OUT" "right after the crashed one"
cmp -s "$KH_W/k1.hex" "$KH_W/k2.hex" || fail "the same key is released"
kill -TERM "$SPID"
wait "$SPID"

# ---- no server: the command opens DIR's key service itself --------------------
run "$KEYHOLDD" admin unwrap --dir "$R" --account "$ACCOUNT" --reason "offline"
assert_ok "admin unwrap without a server"
assert_grep '^log index 5$' "$OUT" "offline release index"
pass
