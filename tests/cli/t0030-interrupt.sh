#!/bin/sh
# An interrupted backup keeps what it uploaded.  SIGINT (exit 130) and
# SIGTERM (exit 143) stop a backup with a message, no snapshot and no lock
# left behind, and every pack written so far is named by an index object, so
# the next backup stores only the rest and check passes with no left-over
# pack.  The index is also written while the backup runs (every 4 packs), so
# even a kill -9 leaves most of the uploaded data reusable.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
AD=$(account_dir)
npacks() { find "$AD/data" -type f ! -name '*.tmp' 2>/dev/null | grep -c .; }
nindex() { find "$AD/index" -type f ! -name '*.tmp' 2>/dev/null | grep -c .; }
packbytes() { find "$AD/data" -type f ! -name '*.tmp' -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
nsnaps() { khr --json snapshots; python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$OUT"; }

# last_json FILE: the summary (last line) of a --json backup
summary() { tail -n 1 "$1" >"$KH_W/summary.json"; }

# interrupt SIGNAL EXPECTED_RC SRC: start a slow backup of SRC, send SIGNAL
# once two more packs exist, check the reaction.
interrupt() {
  before=$(npacks)
  "$KEYHOLD" --limit-upload 6144 backup --json "$3" >"$KH_W/int.out" 2>"$KH_W/int.err" &
  pid=$!
  KH_BGPIDS="$KH_BGPIDS $pid"
  n=0
  while [ "$(npacks)" -lt $((before + 2)) ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$KH_W/int.err" >&2; fail "the backup ended before two packs were written"; }
    n=$((n + 1))
    [ $n -le 600 ] || fail "no two packs after 30 s"
    sleep 0.05
  done
  kill "-$1" "$pid"
  wait "$pid"
  RC=$?
  cp "$KH_W/int.out" "$OUT"
  cp "$KH_W/int.err" "$ERR"
  assert_rc "$2" "backup stopped by SIG$1"
  assert_grep "^keyhold: backup interrupted by SIG$1: no snapshot was made; the .* stored so far are kept and the next backup reuses them$" "$ERR" "message after SIG$1"
  summary "$OUT"
  json_check "$KH_W/summary.json" "d['message_type'] == 'summary' and d['interrupted'] is True and d['id'] is None and d['bytes_new_stored'] > 0" "JSON summary of the interrupted backup"
  [ "$(ls "$AD/locks" 2>/dev/null | grep -c .)" -eq 0 ] || fail "SIG$1: the lock was left behind"
}

# ---- SIGINT -----------------------------------------------------------------
SRC=$KH_T/src
big_tree "$SRC" 1
TOTAL=$(tree_size "$SRC")
interrupt INT 130 "$SRC"
[ "$(nsnaps)" -eq 0 ] || fail "the interrupted backup wrote a snapshot"
KEPT=$(packbytes)
[ "$KEPT" -ge $((16 * 1048576)) ] || fail "less than two packs kept: $KEPT bytes"
khr --json check
assert_ok "check after the interrupted backup"
json_check "$OUT" "not any('in no index' in f['message'] for f in d['findings'])" "every pack of the interrupted backup is indexed"

khr backup --json "$SRC"
assert_ok "backup after the interruption"
summary "$OUT"
# what the first run uploaded is reused: only the rest is new
json_check "$KH_W/summary.json" "d['bytes'] == $TOTAL and d['bytes_new'] <= $TOTAL - $KEPT + 1048576" "second backup stores only what the first did not (total $TOTAL, kept $KEPT)"
SNAP=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$KH_W/summary.json")
khr --json check --read-data
assert_ok "check --read-data"
json_check "$OUT" "d['findings'] == []" "no findings after the resumed backup"
restore_and_compare "$SNAP" "$SRC" "the resumed backup restores"

# ---- SIGTERM ----------------------------------------------------------------
SRC2=$KH_T/src2
big_tree "$SRC2" 2
interrupt TERM 143 "$SRC2"
[ "$(nsnaps)" -eq 1 ] || fail "the backup stopped by SIGTERM wrote a snapshot"
khr --json check
assert_ok "check after SIGTERM"
json_check "$OUT" "not any('in no index' in f['message'] for f in d['findings'])" "every pack of the SIGTERM'd backup is indexed"

# ---- kill -9: the index written while the backup ran ------------------------
SRC3=$KH_T/src3
big_tree "$SRC3" 3
TOTAL3=$(tree_size "$SRC3")
ib=$(nindex)
pb=$(packbytes)
"$KEYHOLD" --limit-upload 6144 backup "$SRC3" >"$KH_W/k9.out" 2>"$KH_W/k9.err" &
pid=$!
KH_BGPIDS="$KH_BGPIDS $pid"
n=0
while [ "$(nindex)" -le "$ib" ]; do
  kill -0 "$pid" 2>/dev/null || { cat "$KH_W/k9.err" >&2; fail "the backup ended without writing an index while it ran"; }
  n=$((n + 1))
  [ $n -le 600 ] || fail "no index object written in 30 s of backup"
  sleep 0.05
done
kill -9 "$pid"
wait "$pid" 2>/dev/null
khr backup --json "$SRC3"
assert_ok "backup after kill -9"
summary "$OUT"
json_check "$KH_W/summary.json" "d['bytes_new'] <= $TOTAL3 - 3 * 8388608" "backup after kill -9 reuses the packs indexed while the killed one ran"
khr check
assert_ok "check after kill -9 and a new backup"
pass
