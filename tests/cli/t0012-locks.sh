#!/bin/sh
# Locks and index freshness from the command line (docs/format.md §7, §10):
# - an old index object served again by the provider after two prunes (so
#   no present index names it any more) makes no backup reuse its deleted
#   packs and no prune delete live data;
# - restore holds a shared lock: prune refuses (exit 1) while it runs;
# - a lock left by a process in another PID namespace of this host (same
#   host name, its pid not running here) is never taken for stale, while
#   the lock of a killed process of our own namespace is.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
AD=$(account_dir)
LOCKS=$AD/locks
X=$KH_T/x
Y=$KH_T/y
mkdir -p "$X" "$Y"
rand_file "$X/x1" 3000
rand_file "$X/x2" 700
rand_file "$Y/y1" 2000
cp -a "$X" "$KH_T/cp/x"
cp -a "$Y" "$KH_T/cp/y"

# ---- an old index served again ------------------------------------------------
khr prune
assert_ok "first prune (an empty index)"
ls "$AD/index" >"$KH_W/idx0"
backup_id "$X"
SX=$SNAP
OLD=$(ls "$AD/index" | grep -vxF -f "$KH_W/idx0")
[ "$(printf '%s\n' "$OLD" | wc -l)" -eq 1 ] && is_hex64 "$OLD" || fail "backup of X did not add exactly one index: '$OLD'"
cp "$AD/index/$OLD" "$KH_W/old-index"
backup_id "$Y"
SY=$SNAP
khr forget "$SX"
assert_ok "forget X"
khr prune --json
assert_ok "prune after forgetting X"
json_check "$OUT" "d['packs_deleted'] >= 1" "prune deleted X's packs"
khr prune
assert_ok "second prune (the index that named the old one goes too)"
[ -e "$AD/index/$OLD" ] && fail "the old index is still there"
# the provider serves the old index again
cp "$KH_W/old-index" "$AD/index/$OLD"
khr check
assert_ok "check with an old index served again"
assert_grep "index ${OLD%"${OLD#????????????????}"} is superseded" "$OUT" "check notes the old index"
# a backup of X must store X again (not point at the deleted packs)
khr backup --json "$X"
assert_ok "backup of X with the old index back"
SX2=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$OUT") || fail "backup json"
json_check "$OUT" "d['bytes_new'] >= 3700 * 1024" "backup stored X's data again"
khr prune
assert_ok "prune after the old index came back"
khr check --read-data
assert_ok "check --read-data after prune"
assert_no_grep 'missing' "$OUT" "nothing is missing"
restore_and_compare "$SX2" "$X" "X backed up again" "$KH_T/cp/x"
restore_and_compare "$SY" "$Y" "Y, untouched by the old index" "$KH_T/cp/y"

# ---- restore holds a shared lock ------------------------------------------------
big_tree "$X" 5
manifest "$X" >"$KH_W/mx"
backup_id "$X"
SB=$SNAP
khr forget "$SX2"
assert_ok "forget"
bg "$KEYHOLD" restore "$SB" --target "$KH_T/rt/shared" >"$KH_W/r.out" 2>"$KH_W/r.err"
PR=$BGPID
wait_lock "$PR" || fail "the restore finished before a lock was seen (restore takes no lock?)"
pause_holding_lock "$PR" || fail "the restore finished before it could be paused"
run timeout 60 "$KEYHOLD" prune
[ $RC -ne 124 ] || fail "prune waited 60 s for a restore's lock (docs: it fails)"
assert_rc 1 "prune while a restore holds a shared lock"
assert_grep 'lock' "$ERR" "prune during restore: message"
kill -CONT "$PR"
wait "$PR"; rr=$?
[ $rr -eq 0 ] || fail "the paused restore failed: $(cat "$KH_W/r.err")"
assert_manifest "$KH_W/mx" "$KH_T/rt/shared$X" "restore that prune waited for"
rm -rf "$KH_T/rt/shared"
khr prune
assert_ok "prune after the restore"
[ -z "$(ls "$LOCKS")" ] || fail "locks left behind: $(ls "$LOCKS")"

# ---- a lock of another PID namespace with our host name --------------------------
# A backup runs as pid 99991 in a new PID namespace (as in a container with
# the same host name) and is killed while it holds its lock; pid 99991 does
# not run in ours.  Needs unshare(1) and CAP_SYS_ADMIN.
other_ns=0
if unshare -pf --mount-proc --kill-child true 2>/dev/null; then
  other_ns=1
  big_tree "$Y" 6
  bg unshare -pf --mount-proc --kill-child sh -c \
    'echo 99990 >/proc/sys/kernel/ns_last_pid && "$0" backup "$1"' "$KEYHOLD" "$Y"
  PU=$BGPID
  wait_lock "$PU" || fail "the namespaced backup finished before a lock was seen"
  kill -9 "$PU"
  wait "$PU"
  sleep 0.2
  [ -n "$(ls "$LOCKS")" ] || fail "the killed namespaced backup left no lock"
  kill -0 99991 2>/dev/null && fail "pid 99991 runs in this namespace (cannot test)"
  run timeout 60 "$KEYHOLD" prune
  assert_rc 1 "prune against the lock of another namespace's process"
  assert_grep 'lock held by pid 99991' "$ERR" "prune names the other namespace's lock"
  [ -n "$(ls "$LOCKS")" ] || fail "prune removed another namespace's lock"
  rm -f "$LOCKS"/*
fi
# the lock of a killed process of this namespace is provably stale
bg "$KEYHOLD" backup "$Y" >/dev/null 2>&1
PA=$BGPID
wait_lock "$PA" || fail "backup finished before a lock was seen"
kill -9 "$PA"
wait "$PA"
[ -n "$(ls "$LOCKS")" ] || fail "kill -9 left no lock object"
run timeout 60 "$KEYHOLD" prune
assert_ok "prune after a backup of this namespace was killed"
[ -z "$(ls "$LOCKS")" ] || fail "prune left the dead process's lock: $(ls "$LOCKS")"
khr check --read-data
assert_ok "final check"
restore_matches "$SB" "$X" "$KH_W/mx" "final restore"

if [ $other_ns -eq 0 ]; then
  note "unshare -p is not permitted here: the other-namespace case did not run"
  exit 77
fi
pass
