#!/bin/sh
# Missing source paths: one missing path among several (exit 3, snapshot of
# the rest), all paths missing (failure, no snapshot), no path at all (usage).
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init

# ---- a nonexistent path among several -------------------------------------------
S1=$KH_T/s1
S2=$KH_T/s2
make_tree "$S1" nofifo
mkdir -p "$S2"
printf 'two\n' >"$S2/file"
touch -d '2012-01-01' "$S2/file" "$S2"
khr backup "$S1" "$KH_T/does-not-exist" "$S2"
assert_rc 3 "backup with one missing path"
assert_grep -F "keyhold: warning: $KH_T/does-not-exist: " "$ERR" "warning names the missing path"
SNAP=$(tail -n 1 "$OUT")
is_hex64 "$SNAP" || fail "backup with one missing path: no snapshot id"
restore_and_compare "$SNAP" "$S1" "missing path among several: first path"
restore_and_compare "$SNAP" "$S2" "missing path among several: last path"
khr ls "$SNAP" "$KH_T/does-not-exist"
assert_rc 1 "the missing path is not in the snapshot"

# ---- all paths missing -------------------------------------------------------------
n0=$(ls "$(account_dir)/snapshots" | wc -l)
khr backup "$KH_T/nope1" "$KH_T/nope2"
assert_rc 1 "backup of only missing paths"
assert_grep -F "$KH_T/nope1" "$ERR" "all paths missing: message names a path"
assert_eq "$(ls "$(account_dir)/snapshots" | wc -l)" "$n0" "backup of only missing paths made a snapshot"
khr backup
assert_rc 2 "backup without paths"

pass
