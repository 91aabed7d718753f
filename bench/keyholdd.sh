# A keyholdd region server on loopback for the benchmarks, driven only by the
# command-line contract of issue 9 (docs/cli.md, docs/operations.md):
#
#   keyholdd init  --dir DIR
#   keyholdd serve --dir DIR --listen 127.0.0.1:0 --signup open --access-log F
#     -> one stderr line "listening on URL" when ready
#
# Sourced by bench/bench.sh and bench/load.sh; POSIX sh.
#
#   khd_start BIN REGION_DIR LOG_DIR
#                 init REGION_DIR, serve it; the server's stderr goes to
#                 LOG_DIR/serve.err, its access log (JSON lines) to
#                 LOG_DIR/access.log.  Sets KHD_PID and KHD_URL, or returns
#                 1 with KHD_WHY set (the server is then not running).
#   khd_stop      SIGTERM (graceful stop), SIGKILL after 15 s; safe to call
#                 twice and from an EXIT trap.
#   khd_hwm_reset / khd_hwm
#                 reset / read the server's peak RSS in KiB (VmHWM in
#                 /proc/PID/status; "5" in /proc/PID/clear_refs resets it).
#   khd_cpu       the server's user+sys CPU seconds so far (/proc/PID/stat).
#   khd_requests  number of lines in the access log so far.
#   khd_client_init KEYHOLD PASSFILE SCRATCH
#                 `keyhold init --region URL` in the empty dir SCRATCH, with
#                 the caller's KEYHOLD_DEVICE_DIR; returns 0 only if it
#                 succeeded AND went through the server (the access log grew,
#                 and no local directory named after the URL appeared in
#                 SCRATCH -- a client that does not know URLs yet would take
#                 "http://..." for a relative path).  Else KHD_WHY is set.

KHD_PID=
KHD_URL=
KHD_WHY=
KHD_LOG=

khd_stop() {
  [ -n "$KHD_PID" ] || return 0
  kill -TERM "$KHD_PID" 2>/dev/null
  _i=0
  while kill -0 "$KHD_PID" 2>/dev/null && [ $_i -lt 150 ]; do sleep 0.1; _i=$((_i + 1)); done
  kill -KILL "$KHD_PID" 2>/dev/null
  wait "$KHD_PID" 2>/dev/null
  KHD_PID=
}

khd_start() { # BIN REGION_DIR LOG_DIR
  _bin=$1; _dir=$2; _logs=$3
  KHD_PID=; KHD_URL=; KHD_WHY=
  if [ ! -x "$_bin" ]; then KHD_WHY="$_bin not built"; return 1; fi
  mkdir -p "$_logs" || { KHD_WHY="cannot create $_logs"; return 1; }
  KHD_LOG=$_logs/access.log
  : > "$KHD_LOG"
  if ! "$_bin" init --dir "$_dir" > "$_logs/init.out" 2> "$_logs/init.err"; then
    KHD_WHY="keyholdd init failed: $(tail -n 2 "$_logs/init.err" | tr '\n' ' ')"
    return 1
  fi
  # shellcheck disable=SC2086 # KHD_SERVE_ARGS: extra serve options, split on blanks
  "$_bin" serve --dir "$_dir" --listen 127.0.0.1:0 --signup open --access-log "$KHD_LOG" \
    ${KHD_SERVE_ARGS:-} \
    </dev/null > "$_logs/serve.out" 2> "$_logs/serve.err" &
  KHD_PID=$!
  _i=0
  while [ $_i -lt 300 ]; do
    KHD_URL=$(sed -n 's/^listening on \(https\{0,1\}:\/\/[^ ]*\)$/\1/p' "$_logs/serve.err" 2>/dev/null | head -n 1)
    [ -n "$KHD_URL" ] && break
    kill -0 "$KHD_PID" 2>/dev/null || break
    sleep 0.1; _i=$((_i + 1))
  done
  if [ -z "$KHD_URL" ]; then
    if kill -0 "$KHD_PID" 2>/dev/null; then
      KHD_WHY="keyholdd serve printed no 'listening on URL' line in 30 s"
      khd_stop
    else
      wait "$KHD_PID"; _rc=$?; KHD_PID=
      KHD_WHY="keyholdd serve exited (status $_rc): $(grep -v '^{' "$_logs/serve.err" | head -n 2 | tr '\n' ' ')"
    fi
    return 1
  fi
  return 0
}

khd_hwm_reset() {
  [ -n "$KHD_PID" ] && echo 5 > "/proc/$KHD_PID/clear_refs" 2>/dev/null
  return 0
}

khd_hwm() {
  [ -n "$KHD_PID" ] && awk '$1 == "VmHWM:" { print $2 }' "/proc/$KHD_PID/status" 2>/dev/null
}

khd_cpu() {
  [ -n "$KHD_PID" ] || return 0
  # fields after "(comm) ": state is $1, utime $12, stime $13 (proc(5))
  sed 's/^.*) //' "/proc/$KHD_PID/stat" 2>/dev/null |
    awk -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" '{ printf "%.2f\n", ($12 + $13) / hz }'
}

khd_requests() {
  # JSON lines only (the access log falls back to stderr without --access-log)
  if [ -f "$KHD_LOG" ]; then grep -c '^{' "$KHD_LOG"; else echo 0; fi
  return 0
}

khd_client_init() { # KEYHOLD PASSFILE SCRATCH
  _kh=$1; _pass=$2; _scr=$3
  mkdir -p "$_scr"
  _before=$(khd_requests)
  if ! (cd "$_scr" && "$_kh" init --region "$KHD_URL" --passcode-file "$_pass") \
      > "$_scr.out" 2> "$_scr.err"; then
    KHD_WHY="keyhold init --region $KHD_URL failed: $(tail -n 2 "$_scr.err" | tr '\n' ' ')"
    return 1
  fi
  if [ -n "$(ls -A "$_scr")" ]; then
    KHD_WHY="keyhold init --region $KHD_URL wrote a local directory ($(ls -A "$_scr" | head -n 1)) instead of using the server"
    return 1
  fi
  if [ "$(khd_requests)" -le "$_before" ]; then
    KHD_WHY="keyhold init --region $KHD_URL exited 0 without a request to the server"
    return 1
  fi
  return 0
}
