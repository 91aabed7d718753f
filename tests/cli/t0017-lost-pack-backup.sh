#!/bin/sh
# Data known to be missing is never reused by a later backup: after a pack
# is lost at the provider, a backup of the same files stores that data
# again (also when the file cache says the files did not change), the new
# snapshot restores fully, and once the index is rebuilt the old snapshot
# is whole again and check passes.  Damage found by check --read-data (a
# flipped byte) is recorded and not reused either.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
SRC=$KH_T/src
make_tree "$SRC" nofifo
backup_id "$SRC"; S1=$SNAP
AD=$(account_dir)

# ---- a deleted pack --------------------------------------------------------
P=$(largest_pack "$AD")
rm "$P" || fail "delete a pack"
khr check
assert_rc 1 "check after a pack was deleted"
assert_grep "pack $(basename "$P" | cut -c1-16) is missing" "$OUT" "check names the missing pack"

backup_id "$SRC"; S2=$SNAP
khr --json snapshots
json_check "$OUT" "d[-1]['id'] == '$S2' and d[-1]['parent'] == '$S1'" "the second backup"
# the data of the lost pack was stored again (not taken from the cache or index)
restore_and_compare "$S2" "$SRC" "the new snapshot restores fully"

khr check
assert_rc 1 "check before repair index: the old index still names the lost pack"
khr repair index
assert_ok "repair index"
assert_grep '^packs missing: +1$' "$OUT" "repair index counts the lost pack"
[ "$(ls "$AD/damage" 2>/dev/null | grep -c .)" -eq 0 ] || fail "repair index leaves damage records behind"
khr check --read-data
assert_ok "check --read-data after repair index"
assert_grep '^no errors were found' "$OUT" "check after repair index"
restore_and_compare "$S1" "$SRC" "the old snapshot is whole again"

# ---- a flipped byte that only check --read-data sees -------------------------
P=$(largest_pack "$AD")
flip_byte "$P" $(($(stat -c %s "$P") / 3))
khr check
assert_ok "check without --read-data does not read the data"
khr check --read-data
assert_rc 1 "check --read-data after a flipped byte"
# the damage is recorded (once): even the structural check reports it now
ndamage() { ls "$AD/damage" 2>/dev/null | grep -Ec '^[0-9a-f]{64}$'; }
assert_eq "$(ndamage)" 1 "one damage record after check --read-data"
khr check
assert_rc 1 "check after check --read-data recorded the damage"
assert_grep 'known to be missing or damaged' "$OUT" "check names the recorded damage"
khr check --read-data
assert_rc 1 "check --read-data again"
assert_eq "$(ndamage)" 1 "a second check records nothing new"
backup_id "$SRC"; S3=$SNAP
restore_and_compare "$S3" "$SRC" "the snapshot after the flipped byte restores fully"
khr repair index
assert_ok "repair index after the flipped byte"
assert_grep '^blobs dropped: +[1-9]' "$OUT" "repair index drops the damaged blob"
khr check --read-data
assert_ok "check --read-data after repair index (the damaged copy is out of the index)"
assert_grep '^no errors were found' "$OUT" "check after the second repair index"
for s in "$S1" "$S2" "$S3"; do
  restore_and_compare "$s" "$SRC" "snapshot $s after repair"
done
pass
