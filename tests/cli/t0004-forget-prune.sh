#!/bin/sh
# forget (by id, --keep-last, --keep-daily --dry-run) and prune: the kept
# snapshots stay intact, the region shrinks when unique data is forgotten.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
SRC=$KH_T/src
BIG=$KH_T/bigsrc
make_tree "$SRC" nofifo
mkdir -p "$BIG"
rand_file "$BIG/unique.bin" 6144
region_bytes() { du -sb "$KEYHOLD_REGION" | cut -f1; }
snap_ids() { ls "$(account_dir)/snapshots" | sort | tr '\n' ' '; }

backup_id "$SRC"; S1=$SNAP; cp -a "$SRC" "$KH_T/cp/v1"
printf 'v2\n' >"$SRC/docs/marker.txt"; rand_file "$SRC/docs/v2only" 512
backup_id "$SRC"; S2=$SNAP; cp -a "$SRC" "$KH_T/cp/v2"
backup_id "$BIG"; SBIG=$SNAP
rm "$SRC/docs/v2only"; printf 'v3\n' >"$SRC/docs/marker.txt"
backup_id "$SRC"; S3=$SNAP; cp -a "$SRC" "$KH_T/cp/v3"
rand_file "$SRC/big/random.bin" 1024
backup_id "$SRC"; S4=$SNAP; cp -a "$SRC" "$KH_T/cp/v4"

# ---- usage errors remove nothing --------------------------------------------
before=$(snap_ids)
khr forget
assert_rc 2 "forget without ids or policy"
khr forget --keep-last 1 "$S1"
assert_rc 2 "forget with ids and a policy"
khr forget --keep-last 0
assert_rc 2 "forget with a policy that keeps nothing"
khr forget "$S1" 0123456789abcdef
assert_fail "forget of a known and an unknown snapshot"
assert_eq "$(snap_ids)" "$before" "a failed forget removed something"

# ---- --keep-daily 1 --dry-run: decisions printed, nothing removed -----------
# (grouped by host and paths: $BIG is its own group, its only snapshot stays)
short() { printf %.8s "$1"; }
khr forget --keep-daily 1 --dry-run
assert_ok "forget --keep-daily 1 --dry-run"
assert_grep "^  $(short "$S4")  .*  keep: daily " "$OUT" "dry run keeps the newest snapshot of the day"
assert_grep "^  $(short "$SBIG")  .*  keep: daily " "$OUT" "dry run keeps the only snapshot of the other folder"
for s in "$S1" "$S2" "$S3"; do
  assert_grep "^  $(short "$s")  .*  remove\$" "$OUT" "dry run would remove an older snapshot of the same day"
done
assert_eq "$(grep -c '^  ' "$OUT")" 5 "dry run prints one line per snapshot"
assert_eq "$(grep -c '^group host ' "$OUT")" 2 "dry run prints one line per group"
assert_no_grep 'removed$' "$OUT" "dry run says it removed something"
assert_eq "$(snap_ids)" "$before" "forget --dry-run removed something"
khr forget --group-by '' --keep-last 3 -n --json
assert_ok "forget -n --json"
json_check "$OUT" "d['dry_run'] is True and len(d['groups']) == 1 and all(x['short_id'] == x['id'][:8] and 'time' in x and 'host' in x for x in d['groups'][0]['keep'] + d['groups'][0]['remove'])" "forget --json fields"
json_check "$OUT" "sorted(x['id'] for x in d['groups'][0]['keep']) == sorted(['$SBIG', '$S3', '$S4']) and sorted(x['id'] for x in d['groups'][0]['remove']) == sorted(['$S1', '$S2'])" "forget --group-by '' --keep-last 3 keeps the newest 3"
assert_eq "$(snap_ids)" "$before" "forget -n --json removed something"

# ---- forget the only snapshot of a big unique file, prune ------------------
khr forget "$SBIG"
assert_ok "forget by id"
assert_eq "$(cat "$OUT")" "removed $SBIG" "forget by id output"
assert_absent "$(account_dir)/snapshots/$SBIG" "forgotten snapshot object"
khr snapshots --json
json_check "$OUT" "'$SBIG' not in [s['id'] for s in d] and len(d) == 4" "snapshots after forget"
size0=$(region_bytes)
khr prune --json
assert_ok "prune"
json_check "$OUT" "d['bytes_freed'] >= 6 * 1048576 and d['packs_deleted'] + d['packs_repacked'] >= 1" "prune frees the unique file"
size1=$(region_bytes)
[ $((size0 - size1)) -ge $((6 * 1048576)) ] || fail "region did not shrink by the 6 MiB file: $size0 -> $size1"
khr check --read-data
assert_ok "check --read-data after prune"
assert_grep 'no errors were found' "$OUT" "check summary"
restore_and_compare "$S1" "$SRC" "S1 after prune" "$KH_T/cp/v1"
restore_and_compare "$S2" "$SRC" "S2 after prune" "$KH_T/cp/v2"
restore_and_compare "$S3" "$SRC" "S3 after prune" "$KH_T/cp/v3"
restore_and_compare "$S4" "$SRC" "S4 after prune" "$KH_T/cp/v4"
# a second prune has nothing to do
khr prune --json
assert_ok "second prune"
json_check "$OUT" "d['bytes_freed'] == 0 and d['packs_deleted'] == 0 and d['packs_repacked'] == 0" "second prune is a no-op"

# ---- --keep-last 2, prune --------------------------------------------------
khr forget --keep-last 2
assert_ok "forget --keep-last 2"
assert_grep "^  $(short "$S4")  .*  keep: last 1\$" "$OUT" "keep-last keeps S4"
assert_grep "^  $(short "$S3")  .*  keep: last 2\$" "$OUT" "keep-last keeps S3"
assert_grep "^  $(short "$S1")  .*  removed\$" "$OUT" "keep-last removes S1"
assert_grep "^  $(short "$S2")  .*  removed\$" "$OUT" "keep-last removes S2"
assert_eq "$(snap_ids)" "$(printf '%s\n' "$S3" "$S4" | sort | tr '\n' ' ')" "snapshots left after keep-last 2"
size1=$(region_bytes)
khr prune
assert_ok "prune after keep-last"
assert_grep '^freed: ' "$OUT" "prune output"
size2=$(region_bytes)
# S1, S2 had 3 MiB random.bin (replaced in S4 but kept by S3 ...) and the
# 512 KiB v2only file: at least that must go
[ "$size2" -lt "$size1" ] || fail "region did not shrink after forgetting S1, S2: $size1 -> $size2"
khr check --read-data
assert_ok "check --read-data after the second prune"
restore_and_compare "$S3" "$SRC" "S3 after the second prune" "$KH_T/cp/v3"
restore_and_compare "$S4" "$SRC" "S4 after the second prune" "$KH_T/cp/v4"
khr ls "$S1"
assert_fail "ls of a forgotten snapshot"
# backups after prune still deduplicate against what is left
khr backup --json "$SRC"
assert_ok "backup after prune"
json_check "$OUT" "d['bytes_new'] <= 4096 * $KH_NANC" "backup after prune finds the kept data"
restore_and_compare latest "$SRC" "latest after prune" "$KH_T/cp/v4"
khr check --read-data
assert_ok "final check"

pass
