# Helpers for scenarios against a real keyholdd on loopback (sourced after
# lib.sh): server_init makes a region in $SRV_DIR; server_start runs it on
# 127.0.0.1:0 and sets SPID, PORT and URL (and KEYHOLD_REGION to the URL);
# server_kill9 kills it hard.  SRV_SCHEME=https when serving with TLS.  The trap of lib.sh stops it whatever happens.
: "${KEYHOLDD:?set KEYHOLDD to the keyholdd binary}"
SRV_DIR=$KH_T/server-region
SRV_LOG=$KH_W/server.err
SRV_ACCESS=$KH_W/access.log
KEYHOLD_OPERATOR_DIR=$KH_T/operator
export KEYHOLD_OPERATOR_DIR

server_init() {
  run "$KEYHOLDD" init --dir "$SRV_DIR" --region-id "${1:-eu-west}"
  assert_ok "keyholdd init"
}

# server_start [ARGS...]: keyholdd serve --signup open ARGS; the same port as
# before when PORT is set (a restart), else a free one.
server_start() {
  rm -f "$SRV_LOG"
  "$KEYHOLDD" serve --dir "$SRV_DIR" --listen "127.0.0.1:${PORT:-0}" --signup open \
    --access-log "$SRV_ACCESS" "$@" 2>"$SRV_LOG" &
  SPID=$!
  KH_BGPIDS="$KH_BGPIDS $SPID"
  i=0
  while ! grep -q '^listening on ' "$SRV_LOG" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 200 ] || fail "keyholdd did not start: $(cat "$SRV_LOG")"
    kill -0 "$SPID" 2>/dev/null || fail "keyholdd exited: $(cat "$SRV_LOG")"
    sleep 0.1
  done
  PORT=$(sed -n "s|^listening on ${SRV_SCHEME:-http}://127\\.0\\.0\\.1:\\([0-9][0-9]*\\)\$|\\1|p" "$SRV_LOG")
  [ -n "$PORT" ] && [ "$PORT" -gt 0 ] || fail "no port in: $(cat "$SRV_LOG")"
  URL=${SRV_SCHEME:-http}://127.0.0.1:$PORT
  KEYHOLD_REGION=$URL
  export KEYHOLD_REGION
}

server_kill9() {
  kill -9 "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
}

# max_conns SECONDS: the most client connections to the server established at
# once, sampled with ss every 50 ms for SECONDS or until $BGPID exits.
max_conns() {
  mc=0
  end=$(($(date +%s) + $1))
  # (kill -0 also succeeds on a zombie: ask ps for a live state)
  while [ "$(ps -o stat= -p "$BGPID" 2>/dev/null | cut -c1)" ] &&
    [ "$(ps -o stat= -p "$BGPID" 2>/dev/null | cut -c1)" != Z ] &&
    [ "$(date +%s)" -le "$end" ]; do
    c=$(ss -Htn state established "( dport = :$PORT )" 2>/dev/null | wc -l)
    [ "$c" -gt "$mc" ] && mc=$c
    sleep 0.05
  done
  echo "$mc"
}
