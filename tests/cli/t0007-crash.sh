#!/bin/sh
# kill -9 during backup and during prune: earlier snapshots stay intact,
# check finds no damage, the next backup and prune complete.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
SRC=$KH_T/src
BIG=$KH_T/big
make_tree "$SRC" nofifo
backup_id "$SRC"
S0=$SNAP
cp -a "$SRC" "$KH_T/cp/s0"
mkdir -p "$KH_W/m"

big_tree "$BIG" 0
manifest "$BIG" >"$KH_W/m/big0"
backup_id "$BIG"
# how long a backup of half the tree takes, for the kill window
big_tree "$BIG" 999 0 9
t0=$(now_ms)
backup_id "$BIG"
TB=$(($(now_ms) - t0))
manifest "$BIG" >"$KH_W/m/big0"
BPREV=$SNAP
cp "$KH_W/m/big0" "$KH_W/m/prev"
note "backup of half the big tree: $TB ms"

# after_crash WHAT: the state after a kill -9 is consistent
after_crash() {
  khr check
  assert_ok "$1: check after kill -9"
  assert_no_grep '^error' "$OUT" "$1: check after kill -9"
  restore_and_compare "$S0" "$SRC" "$1: first snapshot" "$KH_T/cp/s0"
}

# ---- kill -9 during backup ------------------------------------------------------
killed=0
i=1
max=$TB
while [ $i -le 6 ]; do
  big_tree "$BIG" "$i" $(((i % 2) * 10)) $(((i % 2) * 10 + 9))
  manifest "$BIG" >"$KH_W/m/big$i"
  # once the backup holds its lock, between 10 ms and the time such a
  # backup took (at most 1 s), so that the kill lands at a random moment
  [ $max -le 1000 ] || max=1000
  [ $max -ge 30 ] || max=30
  d=$((10 + $(rand_below $((max - 10)))))
  bg "$KEYHOLD" --quiet backup "$BIG" >"$KH_W/killed.out" 2>"$KH_W/killed.err"
  wait_lock "$BGPID" && sleep_ms $d
  kill -9 "$BGPID" 2>/dev/null
  wait "$BGPID"
  st=$?
  if [ $st -eq 137 ]; then killed=$((killed + 1)); else max=$((max * 2 / 3)); fi
  note "backup $i: kill -9 $d ms after it took the lock (exit $st)"
  [ $st -eq 137 ] || [ $st -eq 0 ] || fail "backup $i exited $st before it was killed: $(cat "$KH_W/killed.err")"
  after_crash "backup $i killed"
  if [ $((i % 3)) -eq 0 ]; then
    restore_matches "$BPREV" "$BIG" "$KH_W/m/prev" "backup $i killed: the previous big snapshot"
  fi
  backup_id "$BIG"
  BPREV=$SNAP
  restore_matches "$BPREV" "$BIG" "$KH_W/m/big$i" "backup $i killed: the next backup"
  cp "$KH_W/m/big$i" "$KH_W/m/prev"
  i=$((i + 1))
done
[ $killed -ge 2 ] || fail "only $killed of 6 backups were still running when killed (the test did not exercise crashes)"
khr check --read-data
assert_ok "check --read-data after the backup crashes"

# ---- kill -9 during prune ---------------------------------------------------------
# Each round: half the big tree gets new content (snapshot A), then a quarter
# again (snapshot B); forgetting A and older leaves A's packs half used, so
# prune must repack as well as delete.
KEEP="$S0"
prune_round() { # N: prepare a round, leaves the snapshot to keep in SB
  big_tree "$BIG" $((100 + $1 * 2)) 0 9
  backup_id "$BIG"
  SA=$SNAP
  big_tree "$BIG" $((101 + $1 * 2)) 0 4
  manifest "$BIG" >"$KH_W/m/pb$1"
  backup_id "$BIG"
  SB=$SNAP
  for s in $(ls "$(account_dir)/snapshots"); do
    case " $KEEP $SB " in *" $s "*) ;; *) khr forget "$s"; assert_ok "forget $s" ;; esac
  done
}
prune_round 0
# TP: how long prune holds its lock (the kill window)
bg "$KEYHOLD" prune --json >"$OUT" 2>"$ERR"
wait_lock "$BGPID" || note "prune ended before its lock was seen"
t0=$(now_ms)
wait "$BGPID"
RC=$?
TP=$(($(now_ms) - t0))
assert_ok "uninterrupted prune"
json_check "$OUT" "d['packs_repacked'] >= 1 and d['packs_deleted'] >= 1" "prune repacks and deletes"
note "prune held its lock for about $TP ms"
restore_matches "$SB" "$BIG" "$KH_W/m/pb0" "after the first prune"
# after_prune_crash N WHAT: the checks after prune round N was interrupted
after_prune_crash() {
  after_crash "$2"
  restore_matches "$SB" "$BIG" "$KH_W/m/pb$1" "$2: the kept snapshot"
  khr snapshots --json
  json_check "$OUT" "sorted(s['id'] for s in d) == sorted('$KEEP $SB'.split())" "$2: the snapshots are unchanged"
  backup_id "$BIG"
  restore_matches "$SNAP" "$BIG" "$KH_W/m/pb$1" "$2: the next backup"
  LASTPB=$KH_W/m/pb$1
}

# Random moments: prune holds its lock only briefly, so rounds go on until
# two prunes were killed while running (at most 5); when a prune finished
# before the kill, the next window is shorter.
pkilled=0
j=1
max=$TP
while [ $pkilled -lt 2 ] && [ $j -le 5 ]; do
  prune_round $j
  [ $max -le 1000 ] || max=1000
  [ $max -ge 2 ] || max=2
  d=$(rand_below "$max")
  bg "$KEYHOLD" prune >"$KH_W/killed.out" 2>"$KH_W/killed.err"
  wait_lock "$BGPID" && sleep_ms $d
  kill -9 "$BGPID" 2>/dev/null
  wait "$BGPID"
  st=$?
  note "prune $j: kill -9 $d ms after it took the lock (exit $st)"
  [ $st -eq 137 ] || [ $st -eq 0 ] || fail "prune $j exited $st before it was killed: $(cat "$KH_W/killed.err")"
  if [ $st -eq 137 ]; then pkilled=$((pkilled + 1)); else max=$((max * 2 / 3)); fi
  after_prune_crash $j "prune $j killed"
  j=$((j + 1))
done
# Chosen moments: SIGKILL injected (strace) at the Nth unlink prune makes:
# around committing repacked packs and the new index, deleting old index
# objects, deleting packs.
if command -v strace >/dev/null 2>&1; then
  for n in 2 4 7 11; do
    prune_round $j
    run strace -f -qq -o /dev/null -e trace=unlink,unlinkat \
      -e inject=unlink,unlinkat:signal=KILL:when=$n "$KEYHOLD" prune
    note "prune $j: SIGKILL at unlink #$n (exit $RC)"
    if [ $RC -eq 137 ]; then
      pkilled=$((pkilled + 1))
    else
      assert_ok "prune $j (had fewer than $n unlinks)"
    fi
    after_prune_crash $j "prune $j killed at unlink #$n"
    j=$((j + 1))
  done
else
  note "strace not found: prune is killed only at random moments"
fi
[ $pkilled -ge 2 ] || fail "only $pkilled prunes were still running when killed"
khr prune
assert_ok "prune after the crashes"
khr check --read-data
assert_ok "check --read-data after prune crashes"
assert_no_grep 'in no index' "$OUT" "prune after crashes removes the leftovers"
restore_matches latest "$BIG" "$LASTPB" "latest after everything"
restore_and_compare "$S0" "$SRC" "first snapshot after everything" "$KH_T/cp/s0"

pass
