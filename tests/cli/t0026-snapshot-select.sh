#!/bin/sh
# Snapshot selection (docs/cli.md "Selecting snapshots"): --host, --path
# (the set of paths must be equal) and --tag (a,b = both; repeated = any)
# filter snapshots, forget, ls, restore, diff, dump and find the same way;
# "latest" is the newest of ONE group (host and paths): when several groups
# are left it is refused with exit 2 and the groups listed, never the newest
# snapshot of some other folder; latest~N and ID~N count back in the group.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
A=$KH_T/src/alpha
B=$KH_T/src/beta
mkdir -p "$A" "$B"
printf 'a1\n' >"$A/f"
printf 'only in the first\n' >"$A/old"
printf 'b1\n' >"$B/g"
short() { printf %.8s "$1"; }
has_line() { grep -qxF -- "$1" "$2" || fail "$3: line '$1' not in $(basename "$2")"; }
ME=$(hostname)

backup_id "$A"; SA1=$SNAP
rm "$A/old"; printf 'a2\n' >"$A/f"; printf 'new\n' >"$A/new"
backup_id --tag x --tag y "$A"; SA2=$SNAP
cp -a "$A" "$KH_T/cp/a2"
backup_id --tag x "$B"; SB1=$SNAP
cp -a "$B" "$KH_T/cp/b1"
printf 'a3 elsewhere\n' >"$A/f"
backup_id --host other.example --tag z "$A"; SO1=$SNAP
backup_id "$A" "$B"; SAB=$SNAP

# ---- latest over several groups: refused, groups listed, exit 2 -------------
khr restore latest --target "$KH_T/rt/amb"
assert_rc 2 "restore latest with several folders backed up"
assert_grep -F "choose one with --host and --path" "$ERR" "ambiguity explained"
assert_grep -F "--host '$ME' --path '$A'" "$ERR" "group of alpha listed"
assert_grep -F "--host '$ME' --path '$B'" "$ERR" "group of beta listed"
assert_grep -F "--host '$ME' --path '$A' --path '$B'" "$ERR" "group of alpha+beta listed"
assert_no_grep -F "other.example" "$ERR" "this machine's snapshots are preferred"
assert_absent "$KH_T/rt/amb" "a refused restore created its target"
for cmd in "ls latest" "diff latest~1 latest" "find --snapshot latest f"; do
  # shellcheck disable=SC2086
  khr $cmd
  assert_rc 2 "$cmd over several groups"
  assert_grep -F "choose one with --host and --path" "$ERR" "$cmd: ambiguity explained"
done
run sh -c '"$KEYHOLD" dump latest "$1" >"$2"' sh "$A/f" "$KH_W/dump"
assert_rc 2 "dump latest over several groups"

# ---- --path picks the group; this host is preferred ---------------------------
khr restore --path "$A/" latest --target "$KH_T/rt/a"
assert_ok "restore --path A latest"
diff -r "$KH_T/cp/a2" "$KH_T/rt/a$A" >"$KH_W/d" 2>&1 || fail "restore --path A latest is not the newest alpha of this host: $(cat "$KH_W/d")"
assert_eq "$(cd "$KH_T/rt/a$A" && find . | sort | tr '\n' ' ')" ". ./f ./new " "alpha as of its newest snapshot"
assert_eq "$(ls "$KH_T/rt/a$KH_T/src")" "alpha" "restore --path A restored only alpha"
khr restore --path "$B" latest --target "$KH_T/rt/b"
assert_ok "restore --path B latest"
diff -r "$KH_T/cp/b1" "$KH_T/rt/b$B" >"$KH_W/d" 2>&1 || fail "restore --path B: $(cat "$KH_W/d")"
assert_absent "$KH_T/rt/b$A" "restore --path B latest restored alpha too"

khr dump --host other.example --path "$A" latest "$A/f"
assert_ok "dump --host other --path A latest"
assert_eq "$(cat "$OUT")" "a3 elsewhere" "latest of the other host"
# no snapshot of this host matches --tag z: the other host's one is used
khr dump --tag z latest "$A/f"
assert_ok "dump --tag z latest"
assert_eq "$(cat "$OUT")" "a3 elsewhere" "latest falls back to other hosts when this one has none"

# ---- latest~N and ID~N ---------------------------------------------------------
khr dump --path "$A" latest~1 "$A/f"
assert_ok "dump latest~1"
assert_eq "$(cat "$OUT")" "a1" "latest~1 of alpha"
khr dump --path "$A" latest~0 "$A/f"
assert_eq "$(cat "$OUT")" "a2" "latest~0 is latest"
khr dump "$(short "$SA2")~1" "$A/f"
assert_ok "dump ID~1"
assert_eq "$(cat "$OUT")" "a1" "ID~1 counts back in the snapshot's group, not over beta"
khr dump --path "$A" latest~2 "$A/f"
assert_fail "latest~2 with two alpha snapshots"
assert_grep -F "only 1 snapshot(s) of its group precede it" "$ERR" "latest~2 error"
khr ls --path "$A" latest~x
assert_fail "latest~x is not a snapshot name"
assert_grep -F "'~' must be followed by a number" "$ERR" "latest~x error"
khr ls --path "$A" latest~1
assert_ok "ls latest~1"
has_line "$A/old" "$OUT" "ls latest~1 lists the first snapshot"
khr diff --path "$A" latest~1 latest
assert_ok "diff latest~1 latest"
has_line "-    $A/old" "$OUT" "diff: removed"
has_line "+    $A/new" "$OUT" "diff: added"
has_line "M    $A/f" "$OUT" "diff: changed"
khr find --path "$A" --snapshot latest~1 old
assert_ok "find --snapshot latest~1"
assert_grep "^snapshot $(short "$SA1") " "$OUT" "find searched the first alpha snapshot"
assert_grep "^1 match in 1 snapshot$" "$OUT" "find count"

# an id must match the filter
khr ls --host other.example "$SA1"
assert_fail "ls ID with a --host it does not match"
assert_grep -F "does not match --host/--path/--tag" "$ERR" "mismatch explained"

# ---- snapshots: --path is the exact set, --tag a,b = both, repeated = any ------
ids_of() { python3 -c 'import json,sys; print(" ".join(sorted(x["id"][:8] for x in json.load(open(sys.argv[1])))))' "$OUT"; }
sorted() { printf '%s\n' "$@" | sort | tr '\n' ' ' | sed 's/ $//'; }
khr snapshots --json --path "$A"
assert_ok "snapshots --path A"
assert_eq "$(ids_of)" "$(sorted "$(short "$SA1")" "$(short "$SA2")" "$(short "$SO1")")" "--path A: not the snapshot of A and B"
khr snapshots --json --path "$B" --path "$A"
assert_eq "$(ids_of)" "$(short "$SAB")" "--path A --path B: only the snapshot of both"
khr snapshots --json --host other.example
assert_eq "$(ids_of)" "$(short "$SO1")" "--host"
khr snapshots --json --host other.example --host "$ME" --path "$B"
assert_eq "$(ids_of)" "$(short "$SB1")" "repeated --host is any of them"
khr snapshots --json --tag x,y
assert_eq "$(ids_of)" "$(short "$SA2")" "--tag x,y needs both"
khr snapshots --json --tag y --tag z
assert_eq "$(ids_of)" "$(sorted "$(short "$SA2")" "$(short "$SO1")")" "repeated --tag is any"
khr snapshots --json --tag ''
assert_eq "$(ids_of)" "$(sorted "$(short "$SA1")" "$(short "$SAB")")" "--tag '' is untagged"
khr snapshots --path "$A"
assert_ok "snapshots table --path"
assert_grep "^3 snapshots$" "$OUT" "table count"
khr snapshots --path relative/p
assert_rc 2 "--path must be absolute"
khr snapshots --tag 'a,,b'
assert_rc 2 "--tag with an empty tag"
khr snapshots --host ''
assert_rc 2 "--host ''"

# ---- forget: only the selected snapshots ------------------------------------------
snap_ids() { ls "$(account_dir)/snapshots" | sort | tr '\n' ' '; }
before=$(snap_ids)
khr forget --host "$ME" --keep-last 1 --group-by '' -n --json
assert_ok "forget --host with one group"
json_check "$OUT" "len(d['groups']) == 1 and [k['id'] for k in d['groups'][0]['keep']] == ['$SAB'] and sorted(r['id'] for r in d['groups'][0]['remove']) == sorted(['$SA1', '$SA2', '$SB1'])" "the other host's snapshot is not planned"
assert_eq "$(snap_ids)" "$before" "dry run removed something"
khr forget latest
assert_rc 2 "forget latest over several groups"
assert_eq "$(snap_ids)" "$before" "an ambiguous forget removed something"
khr forget --path "$A" latest~1
assert_ok "forget --path A latest~1"
assert_eq "$(cat "$OUT")" "removed $SA1" "forget removed the first alpha snapshot"
khr forget --host other.example --path "$A" --keep-last 5
assert_ok "forget policy limited to the other host"
assert_eq "$(snap_ids)" "$(printf '%s\n' "$SA2" "$SB1" "$SO1" "$SAB" | sort | tr '\n' ' ')" "only the named snapshot is gone"

pass
