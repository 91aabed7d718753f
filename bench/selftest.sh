#!/bin/sh
# Checks of the benchmark harness itself (not of keyhold's speed), on tiny
# inputs, in about a minute:
#   1. load.sh --analyze: exact counts, failures and percentiles of a made-up
#      access log;
#   2. bench.sh's keyholdd column and load.sh say "not available" (exit 0, no
#      number) when keyholdd serve does not start, and when keyhold init
#      --region URL "succeeds" by writing a local directory;
#   3. the private sshd: restic-sftp and borg-ssh back up and restore a small
#      tree, the server side's RSS is reported, and afterwards no sshd of
#      ours is left and ~/.ssh was not created.
#
#   sh bench/selftest.sh [BUILD_DIR]      (make bench-selftest)
# Ends with "N passed, N failed"; exit 1 if any failed.
set -u
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd -P)
T=$(mktemp -d /var/tmp/khbench-selftest.XXXXXX) || exit 2
trap 'rm -rf "$T"' EXIT
PASSED=0; FAILED=0
ok() { PASSED=$((PASSED + 1)); echo "ok: $1"; }
no() { FAILED=$((FAILED + 1)); echo "FAIL: $1"; [ $# -ge 2 ] && sed 's/^/    /' "$2" | tail -n 20; }
check() { # NAME FILE PATTERN (grep -E, must match)
  if grep -Eq -- "$3" "$2"; then ok "$1"; else no "$1: no /$3/ in" "$2"; fi
}

# ------------------------------------------------------------ 1. the analyzer
{
  for i in $(seq 1 98); do
    printf '{"time":"t","method":"PUT","path":"/v1/accounts/00112233445566778899aabbccddeeff/objects/%064d","status":201,"bytes":2,"duration_ms":%d.000,"remote":"127.0.0.1"}\n' "$i" "$i"
  done
  echo '{"time":"t","method":"GET","path":"/log/tile/0/000","status":200,"bytes":8192,"duration_ms":500.000,"remote":"127.0.0.1"}'
  echo '{"time":"t","method":"POST","path":"/v1/session","status":503,"bytes":40,"duration_ms":99.000,"remote":"127.0.0.1"}'
  echo '{"time":"t","method":"PUT","path":"/v1/x","status":0,"bytes":0,"duration_ms":0.500,"remote":"127.0.0.1"}'
  echo '{"time":"t","method":"GET","path":"/v1/missing","status":404,"bytes":50,"duration_ms":0.250,"remote":"127.0.0.1"}'
  echo 'not json'
} > "$T/access.log"
sh "$HERE/load.sh" --analyze "$T/access.log" --skip 0 --seconds 4 > "$T/stats" 2>&1
exp() { awk -v k="$1" '$1 == k { print $2; exit }' "$T/stats"; }
for kv in requests=102 failed=2 status_4xx=1 rps=25.5 max_ms=500.00 \
          small_requests=101 p50_ms=49.00 p99_ms=99.00 small_p99_ms=98.00; do
  k=${kv%%=*}; v=${kv#*=}
  if [ "$(exp "$k")" = "$v" ]; then ok "analyze $k = $v"; else no "analyze $k: got '$(exp "$k")', want $v" "$T/stats"; fi
done
check "analyze groups ids as *" "$T/stats" '^route PUT /v1/accounts/\*/objects/\* 98 '

# ------------------------------------------------- 2. "not available" paths
mkdir -p "$T/tree/a"
for i in 1 2 3 4 5; do seq 1 $((i * 500)) > "$T/tree/a/f$i"; done
KH=$BUILD/cmd/keyhold/keyhold
if [ -x "$KH" ]; then
  # a keyholdd that refuses the issue-9 serve command line
  printf '#!/bin/sh\n[ "$1" = init ] && { mkdir -p "$3"; echo region local; exit 0; }\necho "keyholdd: unrecognized option --signup" >&2; exit 2\n' > "$T/khd-refuses"
  # a keyholdd that serves (a tiny HTTP server) and a client that ignores URLs
  cat > "$T/khd-serves" <<'EOF'
#!/bin/sh
[ "$1" = init ] && { mkdir -p "$3"; exit 0; }
log=; while [ $# -gt 0 ]; do [ "$1" = --access-log ] && log=$2; shift; done
exec python3 -c '
import http.server, sys, json
log = open(sys.argv[1], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"x")
        log.write(json.dumps({"method": "GET", "path": self.path, "status": 200, "bytes": 1, "duration_ms": 0.1}) + "\n")
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("listening on http://127.0.0.1:%d" % s.server_address[1], file=sys.stderr, flush=True)
s.serve_forever()' "$log"
EOF
  chmod +x "$T/khd-refuses" "$T/khd-serves"
  KEYHOLDD=$T/khd-refuses sh "$HERE/bench.sh" "$BUILD" --tools keyhold,keyholdd --tree "$T/tree" \
    --work-dir "$T/w1" > "$T/b1.out" 2> "$T/b1.err"
  rc=$?
  [ $rc = 0 ] && ok "bench.sh: keyholdd that does not start -> exit 0" || no "bench.sh exit $rc, want 0" "$T/b1.err"
  check "bench.sh: keyholdd not available, with the reason" "$T/b1.out" \
    '^keyholdd +- +- +- .*not available: keyholdd serve exited \(status 2\): keyholdd: unrecognized option --signup'
  check "bench.sh: server targets n/a" "$T/b1.out" 'server first backup <= 1.25 x keyhold +ratio - +n/a \(keyholdd not available\)'
  check "bench.sh: JSON says not available" "$T/w1/results/latest.json" '"keyholdd": \{.*"status": "not available", "reason": "keyholdd serve exited'
  check "bench.sh: embedded keyhold still measured" "$T/b1.out" '^keyhold +[0-9.]+ +[0-9.]+ +[0-9.]+ .* ok$'

  # a client that writes "http:/..." locally must not produce numbers
  printf '#!/bin/sh\nif [ "$1" = init ]; then mkdir -p "$3"; exit 0; fi\necho "unexpected $*" >&2; exit 9\n' > "$T/kh-local"
  chmod +x "$T/kh-local"
  KEYHOLD=$T/kh-local KEYHOLDD=$T/khd-serves sh "$HERE/bench.sh" "$BUILD" --tools keyholdd \
    --tree "$T/tree" --work-dir "$T/w2" > "$T/b2.out" 2> "$T/b2.err"
  rc=$?
  [ $rc = 0 ] && ok "bench.sh: local-dir client -> exit 0" || no "bench.sh exit $rc, want 0" "$T/b2.err"
  check "bench.sh: local-dir client is not available" "$T/b2.out" \
    'not available: keyhold init --region http://127.0.0.1:[0-9]+ wrote a local directory \(http:\)'

  # a client that succeeds without a request
  printf '#!/bin/sh\nexit 0\n' > "$T/kh-silent"; chmod +x "$T/kh-silent"
  KEYHOLD=$T/kh-silent KEYHOLDD=$T/khd-serves sh "$HERE/load.sh" "$BUILD" --devices 3 --files 2 \
    --work-dir "$T/w3" > "$T/l1.out" 2> "$T/l1.err"
  rc=$?
  [ $rc = 0 ] && ok "load.sh: silent client -> exit 0" || no "load.sh exit $rc, want 0" "$T/l1.err"
  check "load.sh: silent client is not available" "$T/l1.out" \
    'not available: keyhold init --region http://127.0.0.1:[0-9]+ exited 0 without a request to the server'

  # a client that talks to the server: the load path runs and counts
  cat > "$T/kh-curl" <<'EOF'
#!/bin/sh
cmd=$1; url=; while [ $# -gt 0 ]; do [ "$1" = --region ] && url=$2; shift; done
case $cmd in
  init) exec curl -sf -o /dev/null "$url/v1/signup" ;;
  backup) for j in 1 2 3; do curl -sf -o /dev/null "$url/v1/o$j" || exit 1; done ;;
esac
EOF
  chmod +x "$T/kh-curl"
  if command -v curl >/dev/null 2>&1; then
    KEYHOLD=$T/kh-curl KEYHOLDD=$T/khd-serves sh "$HERE/load.sh" "$BUILD" --devices 4 --files 2 \
      --work-dir "$T/w4" > "$T/l2.out" 2> "$T/l2.err"
    rc=$?
    [ $rc = 0 ] && ok "load.sh: 4 devices -> exit 0" || no "load.sh exit $rc, want 0" "$T/l2.err"
    check "load.sh: 12 requests in the load phase, none failed" "$T/l2.out" '^requests: +12, failed \(status >= 500 or cut off\) 0, 4xx 0$'
    check "load.sh: no failed device" "$T/l2.out" '^failed devices: +0 of 4'
    check "load.sh: server RSS measured" "$T/l2.out" '^server peak RSS: +[0-9]+\.[0-9] MiB'
  else
    no "curl missing: load path not checked"
  fi
else
  no "$KH not built: run make build"
fi

# ------------------------------------------------------- 3. the private sshd
if [ "$(id -u)" = 0 ] && { command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; }; then
  home_ssh_before=$([ -e "$HOME/.ssh" ] && echo yes || echo no)
  sh "$HERE/bench.sh" "$BUILD" --tools restic-sftp,borg-ssh --tree "$T/tree" --work-dir "$T/w5" \
    > "$T/s.out" 2> "$T/s.err"
  rc=$?
  [ $rc = 0 ] && ok "bench.sh: restic-sftp, borg-ssh -> exit 0" || no "bench.sh exit $rc, want 0" "$T/s.err"
  check "restic-sftp measured and verified" "$T/s.err" '^bench: restic-sftp: restore verified'
  check "borg-ssh measured and verified" "$T/s.err" '^bench: borg-ssh: restore verified'
  check "restic-sftp: server RSS (sftp-server) reported" "$T/s.out" '^restic-sftp( +[0-9.]+){9} +ok$'
  check "borg-ssh: server RSS (borg serve) reported" "$T/s.out" '^borg-ssh( +[0-9.]+){9} +ok$'
  pid=$(sed -n 's/.*private sshd on 127.0.0.1:[0-9]* (pid \([0-9]*\),.*/\1/p' "$T/s.err")
  if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then ok "sshd $pid stopped"; else no "sshd pid '$pid' still running or unknown" "$T/s.err"; fi
  home_ssh_after=$([ -e "$HOME/.ssh" ] && echo yes || echo no)
  [ "$home_ssh_before$home_ssh_after" != noyes ] && ok "~/.ssh not created" || no "~/.ssh was created"
else
  no "sshd checks need root and openssh-server"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
