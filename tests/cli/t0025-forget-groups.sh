#!/bin/sh
# forget applies its keep policy to each group (host and paths by default):
# --keep-last 1 keeps the only snapshot of a folder backed up once as well as
# the newest of a folder backed up three times; --dry-run removes nothing and
# prints each snapshot's reasons; --json gives the groups; --prune prunes.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
A=$KH_T/once
B=$KH_T/often
make_tree "$A" nofifo
mkdir -p "$B"
printf 'b1\n' >"$B/f"
snap_ids() { ls "$(account_dir)/snapshots" | sort | tr '\n' ' '; }

backup_id "$A"; SA=$SNAP; cp -a "$A" "$KH_T/cp/a"
backup_id "$B"; SB1=$SNAP
printf 'b2\n' >"$B/f"
backup_id "$B"; SB2=$SNAP
printf 'b3\n' >"$B/f"; rand_file "$B/r.bin" 64
backup_id --tag important "$B"; SB3=$SNAP; cp -a "$B" "$KH_T/cp/b"
short() { printf %.8s "$1"; }

# ---- usage errors --------------------------------------------------------
before=$(snap_ids)
khr forget --group-by host,disk --keep-last 1
assert_rc 2 "forget --group-by with an unknown key"
khr forget --keep-within 3x
assert_rc 2 "forget --keep-within with a bad duration"
khr forget --group-by host
assert_rc 2 "forget with --group-by and no keep rule"
khr forget --keep-last 0 --keep-daily 0
assert_rc 2 "forget with rules that keep nothing"
assert_eq "$(snap_ids)" "$before" "a refused forget removed something"

# ---- --dry-run: nothing removed, reasons printed ----------------------------
khr forget --keep-last 1 --dry-run
assert_ok "forget --keep-last 1 --dry-run"
assert_eq "$(snap_ids)" "$before" "forget --dry-run removed something"
assert_eq "$(grep -c '^group host ' "$OUT")" 2 "dry run shows two groups"
assert_grep "^  $(short "$SA")  .*  $A \\[\\]  keep: last 1\$" "$OUT" "the only snapshot of the first folder is kept"
assert_grep "^  $(short "$SB3")  .*  $B \\[important\\]  keep: last 1\$" "$OUT" "the newest of the second folder is kept"
assert_grep "^  $(short "$SB2")  .*  remove\$" "$OUT" "an older one would be removed"
assert_grep "^  $(short "$SB1")  .*  remove\$" "$OUT" "the oldest would be removed"
assert_no_grep 'removed$' "$OUT" "dry run says it removed something"

khr forget --keep-daily 1 --keep-tag important --dry-run
assert_ok "forget --keep-daily 1 --keep-tag important --dry-run"
today=$(date +%Y-%m-%d)
assert_grep "^  $(short "$SB3")  .*  keep: daily $today, tag important\$" "$OUT" "two reasons"

# one group: --keep-last 1 keeps only the newest of all
khr forget --group-by '' --keep-last 1 -n --json
assert_ok "forget --group-by '' --json"
json_check "$OUT" "d['dry_run'] is True and len(d['groups']) == 1 and d['groups'][0]['group'] == {'host': None, 'paths': None, 'tags': None} and [k['id'] for k in d['groups'][0]['keep']] == ['$SB3'] and sorted(r['id'] for r in d['groups'][0]['remove']) == sorted(['$SA', '$SB1', '$SB2'])" "one group keeps only the newest"

khr forget --keep-last 1 --keep-within 1d -n --json
assert_ok "forget --json"
json_check "$OUT" "set(d) == {'dry_run', 'groups'} and len(d['groups']) == 2" "forget --json top level"
json_check "$OUT" "all(set(g) == {'group', 'keep', 'remove'} and set(g['group']) == {'host', 'paths', 'tags'} and g['group']['tags'] is None and isinstance(g['group']['host'], str) for g in d['groups'])" "forget --json group fields"
json_check "$OUT" "[(g['group']['paths'], [k['id'] for k in g['keep']], [k['reasons'] for k in g['keep']], [r['id'] for r in g['remove']]) for g in d['groups']] == [(['$A'], ['$SA'], [['last 1', 'within 1d']], []), (['$B'], ['$SB3', '$SB2', '$SB1'], [['last 1', 'within 1d'], ['within 1d'], ['within 1d']], [])]" "forget --json keep and reasons per group"
json_check "$OUT" "all(set(k) == {'id', 'short_id', 'time', 'host', 'paths', 'tags', 'reasons'} and k['short_id'] == k['id'][:8] for g in d['groups'] for k in g['keep'])" "forget --json keep entry fields"
assert_eq "$(snap_ids)" "$before" "forget -n --json removed something"

# ---- the real thing, with --prune ------------------------------------------
khr forget --keep-last 1 --prune
assert_ok "forget --keep-last 1 --prune"
assert_grep "^  $(short "$SB1")  .*  removed\$" "$OUT" "the oldest was removed"
assert_grep "^  $(short "$SB2")  .*  removed\$" "$OUT" "the older was removed"
assert_grep '^prune: ' "$OUT" "prune summary"
assert_eq "$(snap_ids)" "$(printf '%s\n' "$SA" "$SB3" | sort | tr '\n' ' ')" "snapshots left"
khr check --read-data
assert_ok "check --read-data after forget --prune"
restore_and_compare "$SA" "$A" "the folder backed up once" "$KH_T/cp/a"
restore_and_compare "$SB3" "$B" "the newest of the folder backed up three times" "$KH_T/cp/b"

# --json --prune: the prune summary is in the object
backup_id "$B"; SB4=$SNAP
khr forget --keep-last 1 --prune --json
assert_ok "forget --keep-last 1 --prune --json"
json_check "$OUT" "d['dry_run'] is False and [r['id'] for g in d['groups'] for r in g['remove']] == ['$SB3'] and d['prune']['packs_deleted'] + d['prune']['packs_repacked'] + d['prune']['packs_kept'] >= 1" "forget --prune --json"
assert_eq "$(snap_ids)" "$(printf '%s\n' "$SA" "$SB4" | sort | tr '\n' ' ')" "snapshots left after the second forget"
restore_and_compare "$SA" "$A" "the folder backed up once, again" "$KH_T/cp/a"
pass
