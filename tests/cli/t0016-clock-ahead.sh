#!/bin/sh
# Time is not trusted for safety: a snapshot made with a clock a year ahead
# does not stay `latest` once its device has made a later one, and
# `forget --keep-last 1` keeps the newest real backup (docs/format.md §9.1).
# KH_TEST_NOW (test only) sets the clock of one keyhold process.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
SRC=$KH_T/src
mkdir -p "$SRC"
printf 'made while the clock was a year ahead\n' >"$SRC/f"
KH_TEST_NOW=+31536000 khr backup "$SRC"
assert_ok "backup with the clock a year ahead"
SFUT=$(tail -n 1 "$OUT")
is_hex64 "$SFUT" || fail "backup id"
printf 'made with the right time, later\n' >"$SRC/f"
backup_id "$SRC"; SNOW=$SNAP

# the future snapshot does carry the future time (the clock was faked)
khr snapshots --json
assert_ok "snapshots --json"
json_check "$OUT" "[s['id'] for s in d] == ['$SFUT', '$SNOW']" "snapshots: the device's counter order, not the times"
json_check "$OUT" "d[0]['time'] > d[1]['time'] and d[0]['counter'] < d[1]['counter']" "the first snapshot has the later time and the lower counter"

khr snapshots
assert_ok "snapshots"
assert_eq "$(sed -n '2s/ .*//p;3s/ .*//p' "$OUT" | tr '\n' ' ')" "$(printf %.8s "$SFUT") $(printf %.8s "$SNOW") " "snapshots table order"

khr restore latest --target "$KH_T/rt/latest"
assert_ok "restore latest"
assert_eq "$(cat "$KH_T/rt/latest$SRC/f")" "made with the right time, later" "restore latest restores the newest real backup"

khr forget --keep-last 1 --dry-run --json
assert_ok "forget --keep-last 1 --dry-run"
json_check "$OUT" "len(d['groups']) == 1 and [x['id'] for x in d['groups'][0]['keep']] == ['$SNOW'] and [x['id'] for x in d['groups'][0]['remove']] == ['$SFUT']" "keep-last 1 would keep the newest real backup"

# --keep-daily 1: the day that counts is the one the snapshot is ordered by
khr forget --keep-daily 1 --dry-run --json
assert_ok "forget --keep-daily 1 --dry-run"
json_check "$OUT" "[x['id'] for x in d['groups'][0]['keep']] == ['$SNOW']" "keep-daily 1 keeps only today's newest"

khr forget --keep-last 1
assert_ok "forget --keep-last 1"
assert_grep "^  $(printf %.8s "$SNOW")  .*  keep: last 1\$" "$OUT" "forget keeps the newest real backup"
assert_grep "^  $(printf %.8s "$SFUT")  .*  removed\$" "$OUT" "forget removes the future-dated one"
assert_exists "$(account_dir)/snapshots/$SNOW" "the newest real backup"
assert_absent "$(account_dir)/snapshots/$SFUT" "the future-dated snapshot"

# a new backup after that takes the remaining one as its parent
printf 'third\n' >"$SRC/f"
backup_id "$SRC"; S3=$SNAP
khr snapshots --json
json_check "$OUT" "d[-1]['id'] == '$S3' and d[-1]['parent'] == '$SNOW'" "parent of the next backup"
pass
