#!/bin/sh
# repair index + repair snapshots: an account that lost a pack is brought
# back to one where check passes and every intact file restores byte for
# byte; the files whose data is gone are listed and removed.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
A=$KH_T/a
B=$KH_T/b
mkdir -p "$A/sub" "$B"
for i in 1 2 3 4; do rand_file "$A/sub/big$i" 3072; done
printf 'small file in a\n' >"$A/small"
printf 'small file in b\n' >"$B/small"
rand_file "$B/big" 2048
# one worker: the data of a lands in two packs of its own
khr backup --threads 1 "$A"; assert_ok "backup a"; SA=$(tail -n 1 "$OUT")
khr backup --threads 1 "$B"; assert_ok "backup b"; SB=$(tail -n 1 "$OUT")
AD=$(account_dir)

# ---- usage -----------------------------------------------------------------
khr repair
assert_rc 2 "repair without a subcommand"
khr repair frobnicate
assert_rc 2 "repair with an unknown subcommand"
khr repair index --forget
assert_rc 2 "repair index --forget"
khr repair --help
assert_ok "repair --help"
assert_grep '^SYNOPSIS' "$OUT" "repair --help is a manual"

# ---- nothing to repair ---------------------------------------------------------
khr repair snapshots --json
assert_ok "repair snapshots on a healthy account"
json_check "$OUT" "d['rewritten'] == 0 and d['snapshots'] == 2 and d['removed'] == [] and d['repaired'] == []" "nothing to repair"

# ---- lose the largest pack (data of a only) -------------------------------
P=$(largest_pack "$AD")
rm "$P" || fail "delete a pack"
khr check --json
assert_rc 1 "check after the loss"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("\n".join(sorted({f["path"] for f in d["findings"] if f["level"] == "error" and f["snapshot"] == sys.argv[2] and "file content" in f["message"]})))' "$OUT" "$SA" >"$KH_W/damaged" || fail "check --json"
[ -s "$KH_W/damaged" ] || fail "check names no damaged file"

cp -a "$AD/index" "$KH_W/old-index" || fail "save the old index objects"
khr repair index --json
assert_ok "repair index"
json_check "$OUT" "d['packs_missing'] == 1 and d['packs_unreadable'] == 0 and d['indexes_replaced'] == 2 and d['problems'] == []" "repair index --json"
[ "$(ls "$AD/index" | grep -c .)" -eq 1 ] || fail "repair index leaves exactly one index object"
# as if repair index had been killed before deleting the old index objects
# (or the provider served them again): the new index supersedes them
cp -a "$KH_W/old-index/." "$AD/index/" || fail "put the old index objects back"
khr check --json
assert_rc 1 "check with the old index objects back (the snapshot still lost data)"
json_check "$OUT" "sum('is superseded' in f['message'] for f in d['findings']) == 2 and not any('is missing' in f['message'] and f['path'] is None for f in d['findings'])" "old index objects are superseded, the lost pack no longer indexed"
for f in "$KH_W"/old-index/*; do rm "$AD/index/$(basename "$f")"; done

before=$(ls "$AD/snapshots" "$AD/data" "$AD/index" | sort | tr '\n' ' ')
khr repair snapshots --dry-run --json
assert_ok "repair snapshots --dry-run"
cp "$OUT" "$KH_W/dry.json"
json_check "$OUT" "d['dry_run'] is True and d['rewritten'] == 0 and len(d['repaired']) == 1 and d['repaired'][0]['snapshot'] == '$SA' and d['repaired'][0]['new_id'] is None" "dry run names the damaged snapshot"
assert_eq "$(ls "$AD/snapshots" "$AD/data" "$AD/index" | sort | tr '\n' ' ')" "$before" "repair snapshots --dry-run wrote something"

khr repair snapshots --forget
assert_ok "repair snapshots --forget"
cp "$OUT" "$KH_W/repair.txt"
# the removed files are listed, one line each, and are files of a
grep -F "snapshot $(printf %.8s "$SA"): " "$KH_W/repair.txt" | grep ': file content lost: removed from the snapshot$' |
  sed "s|^snapshot [0-9a-f]*: ||; s|: file content lost: removed from the snapshot\$||" | sort >"$KH_W/removed"
[ -s "$KH_W/removed" ] || fail "no removed file was listed"
grep -Eqvx "$A/sub/big[1-4]|$A/small" "$KH_W/removed" && fail "a file not in a was removed: $(cat "$KH_W/removed")"
cmp -s "$KH_W/damaged" "$KH_W/removed" || fail "repair removed other files than check named: $(diff "$KH_W/damaged" "$KH_W/removed")"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
names = sorted(r["path"] for r in d["removed"] if r["path"])
sys.exit(0 if names == open(sys.argv[2]).read().split() else 1)' "$KH_W/dry.json" "$KH_W/removed" ||
  fail "the dry run listed other files than the repair"
assert_grep "^snapshot $(printf %.8s "$SA"): rewritten as [0-9a-f]{8} \\($(grep -c . "$KH_W/removed") files removed, 0 directories emptied\\), original forgotten\$" "$KH_W/repair.txt" "the rewritten snapshot is named"
assert_grep '^repaired 1 of 2 snapshots' "$KH_W/repair.txt" "repair summary"
assert_absent "$AD/snapshots/$SA" "the original (--forget)"

khr --json snapshots
json_check "$OUT" "len(d) == 2 and d[0]['original'] == '$SA' and d[1]['id'] == '$SB' and d[1]['original'] is None" "the copy takes the original's place; b stays latest"
NA=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["id"])' "$OUT")

khr check --read-data
assert_ok "check --read-data after repair"
assert_grep '^no errors were found' "$OUT" "check after repair"

# every intact file restores byte-identical; removed ones are gone
khr restore "$NA" --target "$KH_T/rt/a"
assert_ok "restore of the repaired snapshot"
n=0
for f in "$A/small" "$A"/sub/big*; do
  if grep -qx "$f" "$KH_W/removed"; then
    assert_absent "$KH_T/rt/a$f" "a removed file"
  else
    cmp -s "$f" "$KH_T/rt/a$f" || fail "intact file $f does not restore byte-identical"
    n=$((n + 1))
  fi
done
[ "$n" -ge 1 ] || fail "no intact file of a left to check"
restore_and_compare latest "$B" "the undamaged snapshot"

# a backup now stores the lost data again and is whole
backup_id "$A"
SA2=$SNAP
restore_and_compare "$SA2" "$A" "a new backup after the repair"

# ---- lose the directory listings of one snapshot ------------------------------
C=$KH_T/c
mkdir -p "$C/d"
rand_file "$C/d/f" 1024
ls "$AD"/data/*/* | sort >"$KH_W/packs.before"
khr backup --threads 1 "$C"; assert_ok "backup c"; SC=$(tail -n 1 "$OUT")
ls "$AD"/data/*/* | sort >"$KH_W/packs.after"
TP=$(comm -13 "$KH_W/packs.before" "$KH_W/packs.after" | xargs ls -S | tail -n 1)
[ "$(comm -13 "$KH_W/packs.before" "$KH_W/packs.after" | grep -c .)" -eq 2 ] || fail "backup c made other than 2 packs"
rm "$TP" || fail "delete the tree pack"
khr check
assert_rc 1 "check after losing the tree pack"
khr repair index
assert_ok "repair index (trees)"
khr repair snapshots --forget --json
assert_ok "repair snapshots (trees)"
json_check "$OUT" "[r['snapshot'] for r in d['repaired']] == ['$SC'] and d['repaired'][0]['dirs_emptied'] == 1 and d['removed'] == [{'snapshot': '$SC', 'path': '/', 'message': d['removed'][0]['message']}] and 'directory listing lost' in d['removed'][0]['message']" "the lost root listing is named"
khr check
assert_ok "check after repairing the lost listing"
restore_and_compare "$SA2" "$A" "another snapshot after the tree repair"
restore_and_compare "$SB" "$B" "b after the tree repair"
pass
