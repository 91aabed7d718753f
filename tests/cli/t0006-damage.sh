#!/bin/sh
# Damage done by the provider is detected: check --read-data reports it
# (naming snapshot and path), restore never writes a damaged file.
. "$KH_SRCDIR/tests/cli/lib.sh"

SRC=$KH_T/src
BASE=$KH_T/base
mkdir -p "$BASE" "$KH_T/cases"

# ---- one pristine region with two snapshots, copied for each case ----------
KEYHOLD_REGION=$BASE/region
KEYHOLD_CACHE_DIR=$BASE/state/cache
KEYHOLD_DEVICE_DIR=$BASE/state/device
kh_init
make_tree "$SRC" nofifo
backup_id "$SRC"; S1=$SNAP
cp -a "$SRC" "$KH_T/cp/v1"
printf 'second version\n' >"$SRC/docs/marker.txt"
rand_file "$SRC/docs/only-in-s2" 700
backup_id "$SRC"; S2=$SNAP
cp -a "$SRC" "$KH_T/cp/v2"
ACC=$ACCOUNT

# case NAME: a fresh copy of the pristine region, cache and device state
case_() {
  CASE=$KH_T/cases/$1
  mkdir -p "$CASE"
  cp -a "$BASE/region" "$BASE/state" "$CASE/" || fail "copy the pristine region"
  KEYHOLD_REGION=$CASE/region
  KEYHOLD_CACHE_DIR=$CASE/state/cache
  KEYHOLD_DEVICE_DIR=$CASE/state/device
  AD=$KEYHOLD_REGION/accounts/$ACC
  note "case $1"
}

# damaged_check WHAT: check --read-data must fail; keeps the JSON in $KH_W/check.json
damaged_check() {
  khr check --read-data
  assert_rc 1 "$1: check --read-data"
  assert_grep '^damage found' "$OUT" "$1: check summary"
  cp "$OUT" "$KH_W/check.txt"
  khr check --read-data --json
  assert_rc 1 "$1: check --read-data --json"
  cp "$OUT" "$KH_W/check.json"
  json_check "$KH_W/check.json" "d['complete'] is True and d['errors'] >= 1 and d['errors'] == len([f for f in d['findings'] if f['level'] == 'error'])" "$1: check --json"
}

# named_in_check SNAP PATH WHAT: the human check output has an error line
# naming SNAP's 8-digit prefix and PATH
named_in_check() {
  grep -F "error: snapshot $(printf %.8s "$1"): $2: " "$KH_W/check.txt" >/dev/null ||
    fail "$3: check does not name snapshot $(printf %.8s "$1") and $2"
}

# restores_both WHAT: both snapshots restore, damage only where check said
restores_both() {
  verify_damaged_restore "$KH_W/check.json" "$S1" "$SRC" "$KH_T/cp/v1" "$KH_T/rt/s1"
  N1=$NDAMAGED
  verify_damaged_restore "$KH_W/check.json" "$S2" "$SRC" "$KH_T/cp/v2" "$KH_T/rt/s2"
  N2=$NDAMAGED
  rm -rf "$KH_T/rt/s1" "$KH_T/rt/s2"
}

# ---- (a) one flipped byte in the middle of the largest pack ----------------
case_ a-flip
P=$(largest_pack "$AD")
PID=$(basename "$P")
flip_byte "$P" $(($(stat -c %s "$P") / 2))
damaged_check "flipped pack byte"
assert_grep "^error: pack $(printf %.16s "$PID"): " "$KH_W/check.txt" "flipped pack byte: the pack is named"
# the blob id named must be a blob's, not the pack's id again
if grep -q "^error: pack $(printf %.16s "$PID"): blob $(printf %.16s "$PID"):" "$KH_W/check.txt"; then
  fail "flipped pack byte: check prints the pack id where the blob id belongs"
fi
json_check "$KH_W/check.json" "len([f for f in d['findings'] if f['level'] == 'error' and f['snapshot'] and f['path']]) >= 1" "flipped pack byte: a file of a snapshot is named"
restores_both
[ $((N1 + N2)) -ge 1 ] || fail "flipped pack byte: no damaged file in either snapshot"

# ---- (b) a truncated pack ------------------------------------------------
case_ b-truncate
P=$(largest_pack "$AD")
truncate -s $(($(stat -c %s "$P") / 2)) "$P"
damaged_check "truncated pack"
assert_grep "pack $(printf %.16s "$(basename "$P")") has [0-9]+ bytes, the index says" "$KH_W/check.txt" "truncated pack: reported"
restores_both
[ $((N1 + N2)) -ge 1 ] || fail "truncated pack: no damaged file in either snapshot"
khr check
assert_rc 1 "truncated pack: check without --read-data"

# ---- (c) a deleted pack ---------------------------------------------------
case_ c-delete
P=$(largest_pack "$AD")
rm "$P"
damaged_check "deleted pack"
assert_grep "pack $(printf %.16s "$(basename "$P")") is missing" "$KH_W/check.txt" "deleted pack: reported"
restores_both
[ $((N1 + N2)) -ge 1 ] || fail "deleted pack: no damaged file in either snapshot"

# ---- (c2) every small pack deleted (the directory listings are there) -----
case_ c2-delete-trees
find "$AD/data" -type f -size -64k -delete
damaged_check "deleted tree packs"
json_check "$KH_W/check.json" "{f['snapshot'] for f in d['findings'] if f['level'] == 'error' and f['path']} == {'$S1', '$S2'}" "deleted tree packs: both snapshots named"
restores_both

# ---- (d) a snapshot object emptied, or one byte flipped --------------------
for how in empty flip; do
  case_ "d-snapshot-$how"
  if [ $how = empty ]; then : >"$AD/snapshots/$S1"; else flip_byte "$AD/snapshots/$S1" 40; fi
  damaged_check "snapshot object ($how)"
  json_check "$KH_W/check.json" "any(f['snapshot'] == '$S1' and f['level'] == 'error' for f in d['findings'])" "snapshot object ($how): check names the snapshot"
  json_check "$KH_W/check.json" "not any(f['snapshot'] == '$S2' for f in d['findings'])" "snapshot object ($how): the other snapshot is fine"
  assert_grep -F "$(printf %.8s "$S1")" "$KH_W/check.txt" "snapshot object ($how): human check names the snapshot"
  verify_damaged_restore "$KH_W/check.json" "$S2" "$SRC" "$KH_T/cp/v2" "$KH_T/rt/s2"
  assert_eq "$NDAMAGED" 0 "snapshot object ($how): the other snapshot"
  khr restore "$S1" --target "$KH_T/rt/s1"
  assert_fail "snapshot object ($how): restore of the damaged snapshot"
  [ -z "$(find "$KH_T/rt/s1" ! -type d 2>/dev/null)" ] || fail "snapshot object ($how): restore of a damaged snapshot wrote files"
  rm -rf "$KH_T/rt/s1" "$KH_T/rt/s2"
  khr ls "$S1"
  assert_fail "snapshot object ($how): ls of the damaged snapshot"
done

# ---- (d3) the newest snapshot object damaged: `latest` must not silently
#      fall back to an older snapshot, and `snapshots` must say that one
#      snapshot could not be read (a provider could otherwise roll back)
case_ d3-latest
flip_byte "$AD/snapshots/$S2" 40
khr snapshots
assert_grep "$(printf %.8s "$S2")|could not|failed|damaged|skipped" "$ERR" "snapshots with a damaged snapshot object: a warning on stderr"
khr restore latest --target "$KH_T/rt/latest"
# either a failure (1) or the older snapshot with a warning (0); nothing else
[ "$RC" -eq 0 ] || assert_fail "restore latest with the newest snapshot damaged"
if [ "$RC" -eq 0 ]; then
  assert_grep "$(printf %.8s "$S2")|could not|failed|damaged|skipped" "$ERR" "restore latest with the newest snapshot damaged: silently restored an older snapshot"
fi
rm -rf "$KH_T/rt/latest"

# ---- (e) swaps: another account's snapshot, and a snapshot under another name
case_ e-swap
khr init --kdf-memory 8 --kdf-ops 1 --new-account
assert_ok "init of a second account in the same region"
ACCB=$(sed -n 's/^created account \([0-9a-f]*\) .*/\1/p' "$OUT")
[ "$ACCB" != "$ACC" ] || fail "second account has the same id"
khr snapshots
assert_fail "without --account in a region with two accounts"
assert_grep 'account' "$ERR" "two accounts: the message asks for --account"
KEYHOLD_ACCOUNT=$ACCB khr backup "$SRC"
assert_ok "backup into account B"
SB=$(tail -n 1 "$OUT")
is_hex64 "$SB" || fail "account B snapshot id"
BD=$KEYHOLD_REGION/accounts/$ACCB
FORGED=$(printf '%s' "$SB" | tr '0-9a-f' '1-9a-f0')
cp "$BD/snapshots/$SB" "$AD/snapshots/$SB"
cp "$BD/snapshots/$SB" "$AD/snapshots/$FORGED"
# and A's own first snapshot under a new name (a move)
MOVED=$(printf '%s' "$S1" | tr '0-9a-f' 'f0-9a-e')
cp "$AD/snapshots/$S1" "$AD/snapshots/$MOVED"
export KEYHOLD_ACCOUNT=$ACC
damaged_check "swapped snapshots"
for s in "$SB" "$FORGED" "$MOVED"; do
  json_check "$KH_W/check.json" "any(f['snapshot'] == '$s' and f['level'] == 'error' and 'authentic' in f['message'] for f in d['findings'])" "swapped snapshot $s fails authentication"
  khr restore "$s" --target "$KH_T/rt/swap"
  assert_fail "restore of swapped snapshot $s"
  [ -z "$(find "$KH_T/rt/swap" ! -type d 2>/dev/null)" ] || fail "restore of a swapped snapshot wrote files"
done
json_check "$KH_W/check.json" "not any(f['snapshot'] in ('$S1', '$S2') for f in d['findings'])" "swaps do not taint the real snapshots"
khr snapshots --json
json_check "$OUT" "sorted(s['id'] for s in d) == sorted(['$S1', '$S2'])" "snapshots lists only the authentic snapshots"
restores_both
assert_eq "$((N1 + N2))" 0 "swapped snapshots: the real ones are intact"
unset KEYHOLD_ACCOUNT
KEYHOLD_ACCOUNT=$ACCB khr check --read-data
assert_ok "account B is unaffected"

# ---- (f) an old index served again, and a deleted pack put back -------------
case_ f-rollback
OLDIDX=$KH_T/cases/f-old-index
OLDDATA=$KH_T/cases/f-old-data
cp -a "$AD/index" "$OLDIDX"
cp -a "$AD/data" "$OLDDATA"
khr forget "$S1"
assert_ok "forget S1"
khr prune --json
assert_ok "prune"
json_check "$OUT" "d['packs_deleted'] + d['packs_repacked'] >= 1" "prune removed S1's unique data"
for f in "$OLDIDX"/*; do
  [ -e "$AD/index/$(basename "$f")" ] && fail "prune left an old index object"
  cp "$f" "$AD/index/"
done
khr check --read-data
assert_ok "check after an old index was served again"
assert_grep 'superseded' "$OUT" "check notes the superseded index"
restore_and_compare "$S2" "$SRC" "restore after an old index was served again" "$KH_T/cp/v2"
# and the deleted packs put back, too
(cd "$OLDDATA" && find . -type f) | while IFS= read -r f; do
  [ -e "$AD/data/$f" ] || { mkdir -p "$(dirname "$AD/data/$f")"; cp "$OLDDATA/$f" "$AD/data/$f"; }
done
khr check --read-data
assert_ok "check after old packs were put back"
restore_and_compare "$S2" "$SRC" "restore after old packs were put back" "$KH_T/cp/v2"
khr backup --json "$SRC"
assert_ok "backup after the rollback"
restore_and_compare latest "$SRC" "latest after the rollback" "$KH_T/cp/v2"
khr prune
assert_ok "prune after the rollback"
khr check --read-data
assert_ok "check after pruning the rollback"
assert_no_grep 'superseded|in no index' "$OUT" "prune removes the served-again objects"

# ---- (g) the key wrap object damaged -----------------------------------------
for off in 7 20 mid last; do
  case_ "g-keys-$off"
  # the passcode wrap: "KHKEY1" then kind 1 (docs/format.md §4); other
  # kinds (the key service's wrap) are not used to open with a passcode
  K=$(for f in "$AD"/keys/*; do
    [ "$(od -An -tx1 -j0 -N7 "$f" | tr -d ' \n')" = 4b484b45593101 ] && echo "$f"
  done | head -n 1)
  [ -n "$K" ] || fail "no passcode wrap object (KHKEY1, kind 1) under keys/"
  ksz=$(stat -c %s "$K")
  case $off in mid) o=$((ksz / 2)) ;; last) o=$((ksz - 1)) ;; *) o=$off ;; esac
  flip_byte "$K" "$o"
  khr snapshots
  assert_rc 1 "keys object with byte $o flipped: open"
  assert_grep '^keyhold: open account: ' "$ERR" "keys object damaged: message"
  [ ! -s "$OUT" ] || fail "keys object damaged: printed results"
  khr backup "$SRC"
  assert_rc 1 "keys object damaged: backup"
done

# ---- (h) the device record damaged: its snapshots no longer verify ------------
case_ h-device
DV=$(find "$AD/devices" -type f | head -n 1)
flip_byte "$DV" 30
khr --no-cache check --read-data --json
assert_rc 1 "device record damaged: check"
json_check "$OUT" "{f['snapshot'] for f in d['findings'] if f['level'] == 'error'} >= {'$S1', '$S2'}" "device record damaged: both snapshots reported"

pass
