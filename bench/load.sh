#!/bin/sh
# keyholdd under load: N devices (default 50) back up small trees at once
# against one keyholdd on 127.0.0.1 (issue 9, "Speed").  See
# docs/benchmarks.md.  POSIX sh (dash).
#
#   sh bench/load.sh [BUILD_DIR] [--devices N] [--files N] [--file-size B]
#                    [--work-dir DIR] [--timeout S] [--keep] [--strict]
#   sh bench/load.sh --analyze ACCESS_LOG [--skip N] [--seconds S]
#
# Measures: server peak RSS (VmHWM of the keyholdd process), failed devices
# (exit codes), failed requests (access log: status >= 500, or 0 = cut off
# before an answer), requests/s and p50/p99 latency (access log
# duration_ms), overall, for small objects, and per method and route.

set -u

usage() {
  cat <<'EOF'
usage: sh bench/load.sh [BUILD_DIR] [options]
       sh bench/load.sh --analyze ACCESS_LOG [--skip N] [--seconds S]

  BUILD_DIR          meson build dir (default: build): keyhold is
                     BUILD_DIR/cmd/keyhold/keyhold, keyholdd
                     BUILD_DIR/srv/keyholdd/keyholdd ($KEYHOLD, $KEYHOLDD
                     override)
  --devices N        devices backing up at once, 1-500 (default 50); each
                     is its own KEYHOLD_DEVICE_DIR and its own account
                     (keyhold init --region URL, sign-up open)
  --files N          files per device tree, 1-10000 (default 200)
  --file-size B      bytes per file, 1-1048576 (default 16384: 200 files
                     = 3.3 MB, half random, half text)
  --work-dir DIR     work dir (default: $KH_BENCH_DIR or /var/tmp/khbench)
  --timeout S        per-command time limit in seconds (default 600); the
                     whole load phase ends within about S seconds
  --keep             keep the run dir (trees, device dirs, logs)
  --strict           exit 1 if a target is missed
  --analyze LOG      only print the access-log statistics of LOG (JSON
                     lines), skipping its first N lines (--skip) and taking
                     S seconds (--seconds) as the wall time for requests/s
  -h, --help         this text

Exit status: 0 measured (or keyholdd not available, reported as such), 1 a
device or a request failed (or, with --strict, a target was missed), 2 a
usage or setup error.
EOF
}

die() { echo "load: error: $*" >&2; exit 2; }
log() { echo "load: $*" >&2; }

# Small object: a response of at most this many bytes on a path outside
# /log/, /metrics and /health (the access log records response bytes only).
SMALL_MAX=${KH_LOAD_SMALL_MAX:-65536}

# analyze LOG SKIP SECONDS: statistics of the access-log lines after the
# first SKIP, as "key value" lines (key names: see the report below).
analyze() {
  tail -n +"$(($2 + 1))" "$1" | awk -v secs="$3" -v small_max="$SMALL_MAX" '
    function field(name,   m, s) {
      # a number field of one JSON object per line (docs/operations.md;
      # keyholdd writes no blank after the colon, other writers may)
      if (match($0, "\"" name "\": *[0-9.]+")) {
        s = substr($0, RSTART, RLENGTH); sub(/^"[^"]*": */, "", s); return s
      }
      return ""
    }
    function sfield(name,   s) {
      if (match($0, "\"" name "\": *\"[^\"]*\"")) {
        s = substr($0, RSTART, RLENGTH); sub(/^"[^"]*": *"/, "", s); sub(/"$/, "", s); return s
      }
      return ""
    }
    /^\{/ {
      st = field("status"); d = field("duration_ms"); b = field("bytes")
      m = sfield("method"); p = sfield("path")
      if (st == "" || d == "") { bad++; next }
      n++; all[n] = d + 0
      if (st + 0 >= 500 || st + 0 == 0) fail++
      if (st + 0 >= 400 && st + 0 < 500) c4++
      # route: the path with ids (hex of 8+ digits, numbers, long names)
      # as "*", at most 5 segments; every tile path is "/log"
      r = p; sub(/^\//, "", r); k = split(r, seg, "/"); fam = ""
      for (i = 1; i <= k && i <= 5; i++) {
        s = seg[i]
        if ((s ~ /^[0-9a-fA-F]+$/ && length(s) >= 8) || s ~ /^[0-9]+$/ || length(s) > 24) s = "*"
        fam = fam "/" s
      }
      if (k > 5) fam = fam "/..."
      if (fam == "" ) fam = "/"
      if (seg[1] == "log") fam = "/log"
      key = m " " fam
      gn[key]++; g[key, gn[key]] = d + 0
      if (fam != "/log" && seg[1] != "metrics" && seg[1] != "health" && b + 0 <= small_max) { sn++; sm[sn] = d + 0 }
    }
    function sortv(a, cnt,   i, j, t) {       # insertion sort is too slow for 1e5; use shell sort
      for (gap = int(cnt / 2); gap > 0; gap = int(gap / 2))
        for (i = gap + 1; i <= cnt; i++) {
          t = a[i]
          for (j = i; j > gap && a[j - gap] > t; j -= gap) a[j] = a[j - gap]
          a[j] = t
        }
    }
    function pct(a, cnt, q,   i) {             # nearest rank
      if (cnt == 0) return "-"
      i = int(q * cnt); if (i < q * cnt) i++; if (i < 1) i = 1
      return sprintf("%.2f", a[i])
    }
    END {
      sortv(all, n); sortv(sm, sn)
      printf "requests %d\n", n
      printf "failed %d\n", fail
      printf "status_4xx %d\n", c4
      printf "unparsed %d\n", bad
      printf "rps %s\n", (secs > 0 ? sprintf("%.1f", n / secs) : "-")
      printf "p50_ms %s\np99_ms %s\nmax_ms %s\n", pct(all, n, 0.5), pct(all, n, 0.99), pct(all, n, 1)
      printf "small_requests %d\n", sn
      printf "small_rps %s\n", (secs > 0 ? sprintf("%.1f", sn / secs) : "-")
      printf "small_p50_ms %s\nsmall_p99_ms %s\n", pct(sm, sn, 0.5), pct(sm, sn, 0.99)
      for (key in gn) {
        cnt = gn[key]; delete v
        for (i = 1; i <= cnt; i++) v[i] = g[key, i]
        sortv(v, cnt)
        printf "route %s %d %s %s\n", key, cnt, pct(v, cnt, 0.5), pct(v, cnt, 0.99)
      }
    }'
}

BUILD_DIR=build
DEVICES=50
FILES=200
FSIZE=16384
WORK=${KH_BENCH_DIR:-/var/tmp/khbench}
TIMEOUT=600
KEEP=0
STRICT=0
ANALYZE=
SKIP=0
SECS=0

isnum() { case $1 in ''|*[!0-9]*) return 1 ;; esac; [ ${#1} -le 9 ]; }
while [ $# -gt 0 ]; do
  case $1 in
    --devices|--files|--file-size|--work-dir|--timeout|--analyze|--skip|--seconds)
      [ $# -ge 2 ] || die "$1 needs a value"
      case $1 in
        --devices) DEVICES=$2 ;; --files) FILES=$2 ;; --file-size) FSIZE=$2 ;;
        --work-dir) WORK=$2 ;; --timeout) TIMEOUT=$2 ;; --analyze) ANALYZE=$2 ;;
        --skip) SKIP=$2 ;; --seconds) SECS=$2 ;;
      esac
      shift 2 ;;
    --keep) KEEP=1; shift ;;
    --strict) STRICT=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) BUILD_DIR=$1; shift ;;
  esac
done
isnum "$DEVICES" && [ "$DEVICES" -ge 1 ] && [ "$DEVICES" -le 500 ] || die "--devices takes 1-500"
isnum "$FILES" && [ "$FILES" -ge 1 ] && [ "$FILES" -le 10000 ] || die "--files takes 1-10000"
isnum "$FSIZE" && [ "$FSIZE" -ge 1 ] && [ "$FSIZE" -le 1048576 ] || die "--file-size takes 1-1048576"
isnum "$TIMEOUT" && [ "$TIMEOUT" -ge 1 ] && [ "$TIMEOUT" -le 86400 ] || die "--timeout takes 1-86400"
isnum "$SKIP" || die "--skip takes a line count"
case $SECS in ''|*[!0-9.]*) die "--seconds takes a number" ;; esac

if [ -n "$ANALYZE" ]; then
  [ -r "$ANALYZE" ] || die "cannot read $ANALYZE"
  analyze "$ANALYZE" "$SKIP" "$SECS"
  exit 0
fi

HERE=$(cd "$(dirname "$0")" && pwd -P)
. "$HERE/keyholdd.sh"

KEYHOLD=${KEYHOLD:-$BUILD_DIR/cmd/keyhold/keyhold}
KEYHOLDD=${KEYHOLDD:-$BUILD_DIR/srv/keyholdd/keyholdd}
[ -x "$KEYHOLD" ] || die "$KEYHOLD not found; run 'make build'"
case $KEYHOLD in /*) ;; *) KEYHOLD=$(pwd -P)/$KEYHOLD ;; esac
case $KEYHOLDD in /*) ;; *) KEYHOLDD=$(pwd -P)/$KEYHOLDD ;; esac
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is missing"
command -v split >/dev/null 2>&1 || die "split (coreutils) is missing"

mkdir -p "$WORK" || die "cannot create work dir $WORK"
WORK=$(cd "$WORK" && pwd -P)
RUN=$WORK/load.$$
RESULTS=$WORK/results
mkdir -p "$RUN" "$RESULTS" || die "cannot create $RUN"
PIDS=
cleanup() {
  # on ^C or an error during the load: the clients' timeout processes (by the
  # pid of their subshell), which pass the signal on to keyhold
  for p in $PIDS; do pkill -TERM -P "$p" 2>/dev/null; done
  khd_stop
  if [ "$KEEP" = 1 ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASS=$RUN/passcode
umask 077
printf 'keyhold-load-passcode-%s\n' "$$" > "$PASS"
umask 022
export XDG_CACHE_HOME="$RUN/xdg-cache" XDG_CONFIG_HOME="$RUN/xdg-config"
unset KEYHOLD_REGION KEYHOLD_PASSCODE_FILE 2>/dev/null || true

DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
TXT=$RESULTS/load-latest.txt
JSON=$RESULTS/load-latest.json
jstr() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
jnum() { if [ -n "$1" ] && [ "$1" != - ]; then printf '%s' "$1"; else printf 'null'; fi; }

# not available: say why, write it to the results, exit 0 (not a failure)
not_available() {
  log "keyholdd: not available: $1"
  {
    echo "keyholdd load benchmark  $DATE"
    echo "$DEVICES devices x $FILES files x $FSIZE bytes"
    echo "not available: $1"
  } > "$TXT"
  printf '{"date": "%s", "devices": %s, "status": "not available", "reason": "%s"}\n' \
    "$DATE" "$DEVICES" "$(jstr "$1")" > "$JSON"
  cat "$TXT"
  exit 0
}

# ------------------------------------------------------------------ the server
# Every device here connects from 127.0.0.1, like 50 people behind one NAT:
# the per-address limit on sign-ups and sessions (default 20 a minute, an
# operator setting) is raised for that, as an operator serving such an
# address would; per-device limits stay at their defaults.
KHD_SERVE_ARGS="--address-rate 100000"
if ! khd_start "$KEYHOLDD" "$RUN/region" "$RUN/server"; then not_available "$KHD_WHY"; fi
log "keyholdd at $KHD_URL (pid $KHD_PID)"

i=1
while [ $i -le "$DEVICES" ]; do
  mkdir -p "$RUN/dev/d$i" "$RUN/cache/d$i" || die "mkdir under $RUN"
  i=$((i + 1))
done

# one account per device: the first init decides whether the server path
# exists at all; the others are counted as failures if they fail
KEYHOLD_DEVICE_DIR=$RUN/dev/d1 KEYHOLD_CACHE_DIR=$RUN/cache/d1
export KEYHOLD_DEVICE_DIR KEYHOLD_CACHE_DIR
khd_client_init "$KEYHOLD" "$PASS" "$RUN/init-scratch" || not_available "$KHD_WHY"
INIT_FAIL=0
t0=$(date +%s.%N)
i=2
while [ $i -le "$DEVICES" ]; do
  KEYHOLD_DEVICE_DIR=$RUN/dev/d$i KEYHOLD_CACHE_DIR=$RUN/cache/d$i \
    timeout 60 "$KEYHOLD" init --region "$KHD_URL" --passcode-file "$PASS" \
    > "$RUN/dev/d$i.init.out" 2> "$RUN/dev/d$i.init.err" || INIT_FAIL=$((INIT_FAIL + 1))
  i=$((i + 1))
done
INIT_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
log "$DEVICES accounts ($INIT_FAIL failed) in ${INIT_S} s"

# ------------------------------------------------------------------- the trees
# Half random (incompressible, unique per device), half text: FILES files of
# FSIZE bytes each, made by split(1) from one stream.
log "making $DEVICES trees of $FILES files x $FSIZE bytes ..."
half=$((FILES * FSIZE / 2))
i=1
while [ $i -le "$DEVICES" ]; do
  mkdir -p "$RUN/trees/d$i" || die "mkdir under $RUN"
  { head -c "$half" /dev/urandom; seq "$i" 999999999 | head -c $((FILES * FSIZE - half)); } |
    split -b "$FSIZE" -a 5 - "$RUN/trees/d$i/f." || die "cannot make tree $i"
  i=$((i + 1))
done

# --------------------------------------------------------------------- the load
MARK=$(wc -l < "$KHD_LOG" | tr -d ' ')
# peak RSS so far (start-up unseals the root key with a 256 MiB Argon2id,
# freed at once, and the sign-ups), then from the load on
HWM_START=$(khd_hwm)
khd_hwm_reset
log "$DEVICES backups at once (limit ${TIMEOUT} s each) ..."
t0=$(date +%s.%N)
i=1
while [ $i -le "$DEVICES" ]; do
  (
    KEYHOLD_DEVICE_DIR=$RUN/dev/d$i KEYHOLD_CACHE_DIR=$RUN/cache/d$i \
      timeout "$TIMEOUT" "$KEYHOLD" backup --region "$KHD_URL" --passcode-file "$PASS" \
      --quiet "$RUN/trees/d$i" > "$RUN/dev/d$i.out" 2> "$RUN/dev/d$i.err"
    echo $? > "$RUN/dev/d$i.rc"
  ) &
  PIDS="$PIDS $!"
  i=$((i + 1))
done
# these clients only: a bare `wait` would also wait for the server
wait $PIDS
PIDS=
t1=$(date +%s.%N)
LOAD_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
HWM=$(khd_hwm)
# the access log line of a request is written when it completes: all are
# in once every client has exited
khd_stop

FAIL_DEV=0; TIMEOUTS=0
i=1
while [ $i -le "$DEVICES" ]; do
  rc=$(cat "$RUN/dev/d$i.rc" 2>/dev/null || echo missing)
  if [ "$rc" != 0 ]; then
    FAIL_DEV=$((FAIL_DEV + 1))
    [ "$rc" = 124 ] && TIMEOUTS=$((TIMEOUTS + 1))
    [ "$FAIL_DEV" -le 3 ] && { log "device $i: exit $rc:"; tail -n 3 "$RUN/dev/d$i.err" | sed 's/^/    /' >&2; }
  fi
  i=$((i + 1))
done

analyze "$KHD_LOG" "$MARK" "$LOAD_S" > "$RUN/stats"
sv() { awk -v k="$1" '$1 == k { print $2; exit }' "$RUN/stats"; }
REQ=$(sv requests); FAILREQ=$(sv failed)

# targets (issue 9): server RSS under 200 MB (10^6 bytes), no failed request
RSS_OK=MISSED; [ -n "$HWM" ] && [ "$HWM" -lt 195313 ] && RSS_OK=MET
[ -z "$HWM" ] && RSS_OK=n/a
NOFAIL=MISSED; [ "$FAIL_DEV" = 0 ] && [ "$INIT_FAIL" = 0 ] && [ "$FAILREQ" = 0 ] && NOFAIL=MET

{
  echo "keyholdd load benchmark  $DATE"
  echo "host: $(nproc) CPU, $(uname -sr); load average $(cut -d' ' -f1 /proc/loadavg) at end"
  echo "$DEVICES devices (one account each) x $FILES files x $FSIZE bytes, backing up at once"
  echo "server: $KEYHOLDD, access log $KHD_LOG"
  echo
  echo "sign-ups:          $DEVICES in $INIT_S s (one after another), $INIT_FAIL failed"
  echo "load phase:        $LOAD_S s wall"
  echo "server peak RSS:   $(awk -v k="${HWM:-0}" 'BEGIN { printf "%.1f MiB (%.1f MB)", k / 1024, k * 1.024 / 1000 }')  (VmHWM during the load)"
  echo "                   $(awk -v k="${HWM_START:-0}" 'BEGIN { printf "%.1f MiB (%.1f MB)", k / 1024, k * 1.024 / 1000 }')  (VmHWM before it: start-up, incl. the root key's 256 MiB Argon2id, and sign-ups)"
  echo "failed devices:    $FAIL_DEV of $DEVICES (timeouts $TIMEOUTS)"
  echo "requests:          $REQ, failed (status >= 500 or cut off) $FAILREQ, 4xx $(sv status_4xx)"
  echo "requests/s:        $(sv rps)   p50 $(sv p50_ms) ms   p99 $(sv p99_ms) ms   max $(sv max_ms) ms"
  echo "small objects:     $(sv small_requests) requests, $(sv small_rps)/s   p50 $(sv small_p50_ms) ms   p99 $(sv small_p99_ms) ms"
  echo "                   (response <= $SMALL_MAX bytes, outside /log, /metrics, /health)"
  echo
  printf '  %-32s %8s %9s %9s\n' 'method route' requests 'p50 ms' 'p99 ms'
  awk '$1 == "route" { printf "  %-32s %8s %9s %9s\n", $2 " " $3, $4, $5, $6 }' "$RUN/stats" | sort
  echo
  echo "targets (issue 9):"
  echo "  server RSS < 200 MB (during the load)  $RSS_OK"
  echo "  no failed request                     $NOFAIL"
} > "$TXT"
{
  printf '{"date": "%s", "devices": %s, "files": %s, "file_size": %s, "status": "ok",\n' \
    "$DATE" "$DEVICES" "$FILES" "$FSIZE"
  printf '  "signup_s": %s, "signup_failed": %s, "load_s": %s, "server_peak_rss_kib": %s,\n' \
    "$INIT_S" "$INIT_FAIL" "$LOAD_S" "$(jnum "$HWM")"
  printf '  "server_peak_rss_before_load_kib": %s,\n' "$(jnum "$HWM_START")"
  printf '  "failed_devices": %s, "timeouts": %s, "requests": %s, "failed_requests": %s,\n' \
    "$FAIL_DEV" "$TIMEOUTS" "$(jnum "$REQ")" "$(jnum "$FAILREQ")"
  printf '  "requests_per_s": %s, "p50_ms": %s, "p99_ms": %s,\n' \
    "$(jnum "$(sv rps)")" "$(jnum "$(sv p50_ms)")" "$(jnum "$(sv p99_ms)")"
  printf '  "small_requests": %s, "small_requests_per_s": %s, "small_p50_ms": %s, "small_p99_ms": %s,\n' \
    "$(jnum "$(sv small_requests)")" "$(jnum "$(sv small_rps)")" \
    "$(jnum "$(sv small_p50_ms)")" "$(jnum "$(sv small_p99_ms)")"
  printf '  "targets": {"server_rss_under_200mb": "%s", "no_failed_request": "%s"}}\n' "$RSS_OK" "$NOFAIL"
} > "$JSON"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
cp "$TXT" "$RESULTS/load-$STAMP.txt"; cp "$JSON" "$RESULTS/load-$STAMP.json"
echo
cat "$TXT"
echo
echo "results: $TXT"
echo "results: $JSON"

rc=0
[ "$FAIL_DEV" != 0 ] || [ "$INIT_FAIL" != 0 ] || [ "$FAILREQ" != 0 ] && rc=1
[ "$STRICT" = 1 ] && [ "$RSS_OK" = MISSED ] && rc=1
exit $rc
