#!/bin/sh
# keyholdd serves the region's log as C2SP tlog-tiles on loopback:
# init, serve on 127.0.0.1:0, log verify and watch against the URL,
# a tampered tile makes them fail, caching headers, JSON errors for
# unknown paths / methods / oversized requests, metrics, health, the
# access log (and its reopening on SIGHUP), SIGTERM stops with exit 0.
. "$KH_SRCDIR/tests/cli/lib.sh"
: "${KEYHOLDD:?set KEYHOLDD to the keyholdd binary}"
: "${KH_FILL_LOG:?set KH_FILL_LOG to the kh_fill_log fixture}"
command -v curl >/dev/null 2>&1 || { echo "SKIP: curl missing"; exit 77; }

KEYHOLD_OPERATOR_DIR=$KH_T/operator
export KEYHOLD_OPERATOR_DIR
R=$KEYHOLD_REGION

# ---- init ------------------------------------------------------------------
run "$KEYHOLDD" init
assert_rc 2 "keyholdd init without --dir"
run "$KEYHOLDD" init --dir "$R" --region-id "Bad_Id"
assert_rc 1 "keyholdd init with a bad region id"
run "$KEYHOLDD" init --dir "$R" --region-id eu-west
assert_ok "keyholdd init"
assert_grep '^region eu-west$' "$OUT" "init prints the region"
VKEY=$(sed -n 's/^log-key //p' "$OUT")
assert_eq "$VKEY" "$(cat "$R/log/verifier")" "init prints the log's verifier key"
run "$KEYHOLDD" init --dir "$R"
assert_rc 1 "keyholdd init over an existing region"
assert_grep 'not empty' "$ERR" "init refuses a non-empty directory"

# an account in the same region, made by the CLI (the region marker is shared)
kh_init
assert_grep 'in region eu-west' "$OUT" "keyhold init joins the keyholdd region"

# ---- serve -----------------------------------------------------------------
run "$KEYHOLDD" serve --dir "$R" --listen 192.0.2.1:8080
assert_rc 2 "plain HTTP on a non-loopback address"
assert_grep 'not a loopback address' "$ERR" "non-loopback refusal says why"
run "$KEYHOLDD" serve --dir "$R" --listen localhost:80
assert_rc 2 "a non-numeric listen address"
mkdir -p "$KH_T/notregion"
run "$KEYHOLDD" serve --dir "$KH_T/notregion" --listen 127.0.0.1:0
assert_rc 1 "serve a directory that is not a region"
assert_grep 'not a region' "$ERR" "serve names the problem"
run "$KEYHOLDD"
assert_rc 2 "keyholdd without a command"
run "$KEYHOLDD" help
assert_ok "keyholdd help"
assert_grep '^SIGNALS' "$OUT" "keyholdd help text"

SLOG=$KH_W/server.err
ALOG=$KH_W/access.log
# start_server SCHEME ARGS...: keyholdd serve ARGS in the background, wait
# for its "listening on" line; sets SPID and PORT.  The log is removed
# first: the redirect truncates it only in the child, after the fork, so a
# wait on the old file could read the previous server's line.
start_server() {
  scheme=$1
  shift
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
  PORT=$(sed -n "s|^listening on $scheme://127\\.0\\.0\\.1:\\([0-9][0-9]*\\)\$|\\1|p" "$SLOG")
  [ -n "$PORT" ] && [ "$PORT" -gt 0 ] || fail "no $scheme port in: $(cat "$SLOG")"
}
start_server http --access-log "$ALOG"
URL=http://127.0.0.1:$PORT

# curl -s -D headers -o body URL [ARGS]: status in $CODE
get() {
  u=$1; shift
  CODE=$(curl -s -D "$KH_W/h" -o "$KH_W/b" -w '%{http_code}' "$@" "$u")
}
header() { tr -d '\r' <"$KH_W/h" | sed -n "s/^$1: //Ip"; }

get "$URL/v1/health"
assert_eq "$CODE" 200 "health status"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["status"]=="ok" and d["region"]=="eu-west", d' "$KH_W/b" || fail "health body: $(cat "$KH_W/b")"

# ---- log entries, verified through the server ------------------------------
# the server holds the key service: the operator goes through its socket
for n in 1 2 3; do
  run "$KEYHOLDD" admin unwrap --dir "$R" --account "$ACCOUNT" --reason "audit $n"
  assert_ok "admin unwrap $n"
done
khr log verify --log "$URL/log" --key "$VKEY"
assert_ok "log verify over HTTP"
assert_grep '^size 4$' "$OUT" "log verify sees every entry"
khr log verify --log "$URL/log"
assert_rc 2 "log verify of a URL without --key"
assert_grep 'needs --key' "$ERR" "the key is never taken from the server"
khr watch --log "$URL/log"
assert_rc 1 "watch over HTTP reports the operator's unwraps"
assert_grep 'requester=.*reason="audit 3"' "$OUT" "watch lists the unwrap"

get "$URL/log/checkpoint"
assert_eq "$CODE" 200 "checkpoint status"
assert_eq "$(header Cache-Control)" "no-cache" "checkpoint Cache-Control"
assert_eq "$(header Content-Type)" "text/plain; charset=utf-8" "checkpoint Content-Type"
cmp -s "$KH_W/b" "$R/log/checkpoint" || fail "checkpoint body differs from the file"
get "$URL/log/tile/0/000.p/4"
assert_eq "$CODE" 200 "partial tile status"
assert_eq "$(header Cache-Control)" "no-cache" "a partial tile is not immutable"
[ "$(wc -c <"$KH_W/b")" -eq 128 ] || fail "partial tile of 4 hashes"
get "$URL/log/tile/entries/000.p/4"
assert_eq "$CODE" 200 "partial entry bundle status"
# an older partial width or a tile beyond the checkpoint is not served
get "$URL/log/tile/0/000.p/3"
assert_eq "$CODE" 404 "partial tile of an older size"
get "$URL/log/tile/0/000"
assert_eq "$CODE" 404 "full tile beyond the checkpoint"
assert_grep '"code":"not_found"' "$KH_W/b" "404 JSON code"
# malformed tile paths (c2sp.org/tlog-tiles spelling is exact)
for p in tile/0/0 tile/0/x000/000 tile/00/000 tile/0/000.p/0 tile/0/000.p/256 \
         tile/0/000.p/04 tile/64/000 tile/0/000/ tile/entries/x1/000 tile/-1/000; do
  get "$URL/log/$p"
  assert_eq "$CODE" 404 "malformed tile path $p"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["code"]=="not_found" and d["error"], d' "$KH_W/b" || fail "JSON error body for $p"
done

# full tiles are immutable: fill the first tile (256 entries), with the key
# service to ourselves while the server is stopped
kill -TERM "$SPID"
wait "$SPID"
run "$KH_FILL_LOG" "$R" "$ACCOUNT" 253
assert_ok "253 more unwraps"
start_server http --access-log "$ALOG"
URL=http://127.0.0.1:$PORT
get "$URL/log/tile/0/000"
assert_eq "$CODE" 200 "full tile status"
assert_eq "$(header Cache-Control)" "public, max-age=31536000, immutable" "full tile Cache-Control"
[ "$(wc -c <"$KH_W/b")" -eq 8192 ] || fail "full tile of 256 hashes"
get "$URL/log/tile/entries/000"
assert_eq "$CODE" 200 "full entry bundle status"
assert_eq "$(header Cache-Control)" "public, max-age=31536000, immutable" "full bundle Cache-Control"
get "$URL/log/tile/0/001.p/1"
assert_eq "$CODE" 200 "partial tile after the first full one"
get "$URL/log/tile/1/000.p/1"
assert_eq "$CODE" 200 "level-1 partial tile"
[ "$(wc -c <"$KH_W/b")" -eq 32 ] || fail "level-1 partial tile of 1 hash"
khr log verify --log "$URL/log" --key "$VKEY"
assert_ok "log verify over HTTP with a full tile"
assert_grep '^size 257$' "$OUT" "log verify size after filling"

# ---- errors: method, sizes ---------------------------------------------------
get "$URL/log/checkpoint" -X POST
assert_eq "$CODE" 405 "POST checkpoint"
assert_grep '"code":"method_not_allowed"' "$KH_W/b" "405 JSON code"
assert_eq "$(header Allow)" "GET, HEAD" "405 Allow header"
get "$URL/nowhere"
assert_eq "$CODE" 404 "unknown path"
get "$URL/$(head -c 1100 /dev/zero | tr '\0' a)"
assert_eq "$CODE" 414 "path too long"
assert_grep '"code":"uri_too_long"' "$KH_W/b" "414 JSON code"
get "$URL/v1/health" -H "X-Big: $(head -c 9000 /dev/zero | tr '\0' a)"
assert_eq "$CODE" 431 "headers too large"
assert_grep '"code":"headers_too_large"' "$KH_W/b" "431 JSON code"
head -c 1100000 /dev/zero >"$KH_W/big"
get "$URL/v1/health" -X POST --data-binary "@$KH_W/big"
assert_eq "$CODE" 413 "body too large"
assert_grep '"code":"body_too_large"' "$KH_W/b" "413 JSON code"

# ---- tampering: the client notices, whatever the server says -----------------
T=$R/log/tile/0/001.p/1
cp "$T" "$KH_W/tile.orig"
printf '\001' | dd of="$T" bs=1 seek=5 conv=notrunc 2>/dev/null
khr log verify --log "$URL/log" --key "$VKEY"
assert_rc 1 "log verify of a tampered partial tile"
assert_grep 'corrupt|do not hash' "$ERR" "tampered tile reported"
cp "$KH_W/tile.orig" "$T"
B=$R/log/tile/entries/000
cp "$B" "$KH_W/bundle.orig"
printf 'X' | dd of="$B" bs=1 seek=40 conv=notrunc 2>/dev/null
khr log verify --log "$URL/log" --key "$VKEY"
assert_rc 1 "log verify of a tampered entry bundle"
cp "$KH_W/bundle.orig" "$B"
khr log verify --log "$URL/log" --key "$VKEY"
assert_ok "log verify after repair"

# a query string is ignored and never logged; HEAD has GET's headers
get "$URL/v1/health?token=SeCrEt123"
assert_eq "$CODE" 200 "health with a query string"
get "$URL/log/checkpoint" -I
assert_eq "$CODE" 200 "HEAD checkpoint"
assert_eq "$(header Cache-Control)" "no-cache" "HEAD checkpoint Cache-Control"

# ---- metrics and the access log ------------------------------------------------
get "$URL/metrics"
assert_eq "$CODE" 200 "metrics status"
assert_grep '^keyholdd_http_requests_total\{route="log_checkpoint",code="2xx"\} [1-9]' "$KH_W/b" "checkpoint count"
assert_grep '^keyholdd_http_requests_total\{route="other",code="4xx"\} [1-9]' "$KH_W/b" "404 count"
assert_grep '^keyholdd_http_requests_total\{route="log_checkpoint",code="4xx"\} 1$' "$KH_W/b" "405 count"
assert_grep '^keyholdd_http_requests_in_flight 1$' "$KH_W/b" "in flight (this request)"
assert_no_grep "$ACCOUNT" "$KH_W/b" "no account in metrics"
python3 - "$ALOG" <<'PY' || fail "access log lines"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
keys = {"time", "method", "path", "status", "bytes", "duration_ms", "remote"}
assert all(set(l) == keys for l in lines), lines[0]
assert any(l["path"] == "/log/checkpoint" and l["status"] == 200 and l["method"] == "GET" and l["remote"] == "127.0.0.1" for l in lines)
assert any(l["status"] == 405 and l["method"] == "POST" for l in lines)
assert any(l["status"] == 413 for l in lines)
assert any(l["method"] == "HEAD" and l["path"] == "/log/checkpoint" for l in lines)
PY
assert_no_grep 'SeCrEt123' "$ALOG" "query strings are not logged"
# SIGHUP reopens the access log (log rotation)
mv "$ALOG" "$ALOG.1"
kill -HUP "$SPID"
i=0
while [ ! -e "$ALOG" ]; do
  i=$((i + 1)); [ $i -lt 50 ] || fail "SIGHUP did not reopen the access log"; sleep 0.1
done
get "$URL/v1/health"
assert_grep '"path":"/v1/health"' "$ALOG" "request logged to the reopened file"

# ---- SIGTERM: graceful stop, exit 0 ----------------------------------------------
# a stalled client (half a request line) and an idle keep-alive connection
# do not hold the stop up
python3 - "$PORT" "$KH_W/stalled" <<'PY' &
import socket, sys, time
a = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
a.sendall(b"GET /v1/hea")
b = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
b.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
b.recv(4096)
open(sys.argv[2], "w").close()
time.sleep(60)
PY
CPID=$!
KH_BGPIDS="$KH_BGPIDS $CPID"
i=0
while [ ! -e "$KH_W/stalled" ]; do
  i=$((i + 1)); [ $i -lt 50 ] || fail "stalled client did not connect"; sleep 0.1
done
kill -TERM "$SPID"
i=0
while kill -0 "$SPID" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 50 ] || fail "keyholdd still running 5 s after SIGTERM"; sleep 0.1
done
wait "$SPID"
assert_eq "$?" 0 "keyholdd exit status after SIGTERM"
kill "$CPID" 2>/dev/null
wait "$CPID" 2>/dev/null
KH_BGPIDS=""

# ---- a stalled client is cut off after --idle-timeout ----------------------------
run "$KEYHOLDD" serve --dir "$R" --listen 127.0.0.1:0 --idle-timeout 0
assert_rc 2 "--idle-timeout 0"
start_server http --idle-timeout 1
python3 - "$PORT" <<'PY' || fail "a stalled client was not cut off within 10 s"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(10)
s.sendall(b"GET /v1/hea")
t = time.monotonic()
assert s.recv(100) == b"", "data on a stalled request"
assert time.monotonic() - t < 10
PY
kill -TERM "$SPID"
wait "$SPID"
assert_eq "$?" 0 "keyholdd (idle timeout) exit status"
KH_BGPIDS=""

# ---- HTTPS (--tls-cert/--tls-key): the client checks the certificate ---------
command -v openssl >/dev/null 2>&1 || fail "openssl is missing (make check installs it)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$KH_W/key.pem" -out "$KH_W/cert.pem" -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || fail "openssl req"
run "$KEYHOLDD" serve --dir "$R" --listen 127.0.0.1:0 --tls-cert "$KH_W/cert.pem"
assert_rc 2 "--tls-cert without --tls-key"
start_server https --tls-cert "$KH_W/cert.pem" --tls-key "$KH_W/key.pem" --access-log "$ALOG"
khr log verify --log "https://127.0.0.1:$PORT/log" --key "$VKEY" --ca-file "$KH_W/cert.pem"
assert_ok "log verify over HTTPS"
assert_grep '^size 257$' "$OUT" "log verify over HTTPS size"
khr log verify --log "https://127.0.0.1:$PORT/log" --key "$VKEY"
assert_rc 1 "log verify over HTTPS without the CA"
assert_grep 'certificate' "$ERR" "an untrusted certificate is refused"
kill -TERM "$SPID"
wait "$SPID"
assert_eq "$?" 0 "keyholdd (TLS) exit status after SIGTERM"
KH_BGPIDS=""
pass
