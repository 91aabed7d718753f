#!/bin/sh
# Concurrency: two backups at once both succeed; prune refuses while a backup
# holds the lock (exit 1, lock error, as `keyhold help prune` says) and never
# deletes an in-flight backup's data; a backup refuses while prune holds the
# exclusive lock; stale locks of killed processes do not block.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
A=$KH_T/treeA
B=$KH_T/treeB
C=$KH_T/treeC
make_tree "$C" nofifo
mkdir -p "$KH_W/m"
LOCKS=$(account_dir)/locks

# ---- two backups of different trees at the same time ------------------------
# (this device enrolls first; concurrent first use is tested at the end)
khr snapshots
assert_ok "first use of the device"
round=1
while [ $round -le 2 ]; do
  big_tree "$A" $((round * 10 + 1)) 0 9
  big_tree "$B" $((round * 10 + 2)) 10 19
  printf 'round %s\n' $round >"$C/docs/marker.txt"
  manifest "$A" >"$KH_W/m/A$round"
  manifest "$B" >"$KH_W/m/B$round"
  cp -a "$C" "$KH_T/cp/C$round"
  bg "$KEYHOLD" backup --json "$A" >"$KH_W/a.json" 2>"$KH_W/a.err"
  PA=$BGPID
  bg "$KEYHOLD" backup --json "$B" >"$KH_W/b.json" 2>"$KH_W/b.err"
  PB=$BGPID
  bg "$KEYHOLD" backup --json "$C" >"$KH_W/c.json" 2>"$KH_W/c.err"
  PC=$BGPID
  wait "$PA"; ra=$?
  wait "$PB"; rb=$?
  wait "$PC"; rc=$?
  [ $ra -eq 0 ] || fail "round $round: concurrent backup A exited $ra: $(cat "$KH_W/a.err")"
  [ $rb -eq 0 ] || fail "round $round: concurrent backup B exited $rb: $(cat "$KH_W/b.err")"
  [ $rc -eq 0 ] || fail "round $round: concurrent backup C exited $rc: $(cat "$KH_W/c.err")"
  SA=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$KH_W/a.json") || fail "backup A json"
  SB=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$KH_W/b.json") || fail "backup B json"
  SC=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$KH_W/c.json") || fail "backup C json"
  khr check --read-data
  assert_ok "round $round: check --read-data after concurrent backups"
  assert_no_grep 'counter' "$OUT" "round $round: concurrent backups of one device must not share a counter"
  restore_matches "$SA" "$A" "$KH_W/m/A$round" "round $round: concurrent backup A"
  restore_matches "$SB" "$B" "$KH_W/m/B$round" "round $round: concurrent backup B"
  restore_and_compare "$SC" "$C" "round $round: concurrent backup C" "$KH_T/cp/C$round"
  khr snapshots --json
  json_check "$OUT" "len({s['counter'] for s in d}) == len(d)" "round $round: every snapshot of the device has its own counter"
  round=$((round + 1))
done
[ -z "$(ls "$LOCKS")" ] || fail "finished backups left lock objects: $(ls "$LOCKS")"

# ---- prune while a backup holds its lock ------------------------------------------
# give prune work: forget everything but the last round
for s in $(ls "$(account_dir)/snapshots"); do
  case " $SA $SB $SC " in *" $s "*) ;; *) khr forget "$s"; assert_ok "forget $s" ;; esac
done
big_tree "$A" 77
manifest "$A" >"$KH_W/m/A-paused"
bg "$KEYHOLD" backup --json "$A" >"$KH_W/a.json" 2>"$KH_W/a.err"
PA=$BGPID
wait_lock "$PA" || fail "the backup finished before it could be paused (no lock seen)"
pause_holding_lock "$PA" || fail "the backup finished before it could be paused"
run timeout 60 "$KEYHOLD" prune
[ $RC -ne 124 ] || fail "prune waited 60 s for a backup's lock (docs: it fails)"
assert_rc 1 "prune while a backup holds the lock"
assert_grep 'lock' "$ERR" "prune while a backup holds the lock: message"
kill -CONT "$PA"
wait "$PA"; ra=$?
[ $ra -eq 0 ] || fail "the paused backup failed after prune was refused: $(cat "$KH_W/a.err")"
SP=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$KH_W/a.json")
restore_matches "$SP" "$A" "$KH_W/m/A-paused" "backup that was paused while prune ran"
khr prune
assert_ok "prune after the backup finished"
khr check --read-data
assert_ok "check --read-data after prune"
restore_matches "$SP" "$A" "$KH_W/m/A-paused" "paused backup after prune"
restore_matches "$SB" "$B" "$KH_W/m/B2" "backup B after prune"

# ---- a backup while prune holds the exclusive lock ---------------------------------
# prune stops itself (SIGSTOP) right after it took its exclusive lock, at the
# test-only event point lock.held (lib/common/fault.h): it then holds the
# lock for as long as we like, with no tracer and no timing involved
big_tree "$A" 201 0 9
backup_id "$A"
SX=$SNAP
big_tree "$A" 301 0 4
backup_id "$A"
khr forget "$SX"
assert_ok "forget $SX"
bg env KH_FAULT=lock.held:1:stop "$KEYHOLD" prune >"$KH_W/p.out" 2>"$KH_W/p.err"
PS=$BGPID
n=0
while :; do
  st=$(sed 's/.*) //' "/proc/$PS/stat" 2>/dev/null | cut -c1)
  [ "$st" = T ] && break
  kill -0 "$PS" 2>/dev/null || fail "prune ended before it stopped at lock.held: $(cat "$KH_W/p.err")"
  n=$((n + 1))
  [ $n -le 3000 ] || fail "prune did not stop at lock.held within 30 s"
  sleep 0.01
done
ls "$LOCKS" | grep -Eqx '[0-9a-f]{32}' || fail "prune stopped at lock.held holds no lock"
printf 'during prune\n' >"$C/docs/marker.txt"
run timeout 60 "$KEYHOLD" backup "$C"
[ $RC -ne 124 ] || fail "backup waited 60 s for prune's lock"
assert_rc 1 "backup while prune holds the exclusive lock"
assert_grep 'exclusive lock held' "$ERR" "backup during prune: message"
kill -CONT "$PS"
wait "$PS"; rp=$?
[ $rp -eq 0 ] || fail "prune failed after the refused backup: $(cat "$KH_W/p.err")"
khr check --read-data
assert_ok "check after prune with a refused backup"

# ---- stale locks of killed processes ----------------------------------------------
big_tree "$A" 88
bg "$KEYHOLD" backup "$A" >/dev/null 2>&1
PA=$BGPID
wait_lock "$PA" || fail "backup finished before a lock was seen"
kill -9 "$PA"
wait "$PA"
[ -n "$(ls "$LOCKS")" ] || fail "kill -9 left no lock object (cannot test stale locks)"
run timeout 60 "$KEYHOLD" prune
assert_ok "prune after a backup was killed (stale lock)"
[ -z "$(ls "$LOCKS")" ] || fail "prune left the stale lock or its own: $(ls "$LOCKS")"
khr check --read-data
assert_ok "check after the stale lock"
# a stale exclusive lock (prune killed) does not block a backup: prune is
# killed (SIGKILL) right after it took its lock, at the event point lock.held
khr forget "$SP"
run env KH_FAULT=lock.held:1:kill "$KEYHOLD" prune
assert_rc 137 "prune killed right after taking its lock"
ls "$LOCKS" | grep -Eqx '[0-9a-f]{32}' || fail "the killed prune left no lock (cannot test a stale exclusive lock)"
cp -a "$C" "$KH_T/cp/C-final"
run timeout 60 "$KEYHOLD" backup "$C"
assert_ok "backup after prune was killed (stale exclusive lock)"
restore_and_compare latest "$C" "backup after a stale exclusive lock" "$KH_T/cp/C-final"
khr prune
assert_ok "final prune"
khr check --read-data
assert_ok "final check"

# ---- a new device used by three processes at once ----------------------------------
k=1
while [ $k -le 10 ]; do
  KEYHOLD_DEVICE_DIR=$KH_T/state/device-new$k
  export KEYHOLD_DEVICE_DIR
  bg "$KEYHOLD" snapshots >/dev/null 2>"$KH_W/n1.err"
  P1=$BGPID
  bg "$KEYHOLD" snapshots >/dev/null 2>"$KH_W/n2.err"
  P2=$BGPID
  bg "$KEYHOLD" snapshots >/dev/null 2>"$KH_W/n3.err"
  P3=$BGPID
  for p in 1 2 3; do
    eval "wait \$P$p"
    r=$?
    [ $r -eq 0 ] || fail "first use of a new device by three processes: one failed: $(cat "$KH_W/n$p.err")"
  done
  k=$((k + 1))
done
backup_id "$C"
khr check
assert_ok "check after new devices enrolled concurrently"

pass
