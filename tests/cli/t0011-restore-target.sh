#!/bin/sh
# restore never writes outside its target: a symlink found beneath the
# target (planted there, or left by restoring another snapshot into the same
# target) is never followed, at any level; what cannot be restored because
# of it is counted in "failed" and makes the exit status 1.  A target that is
# itself a symlink named on the command line is the user's choice and fine.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
SRC=$KH_T/src
mkdir -p "$SRC/a/sub" "$SRC/b" || fail "mkdir"
printf 'one\n' >"$SRC/a/f1"
printf 'two\n' >"$SRC/a/sub/f2"
ln -s f1 "$SRC/a/link"
mkfifo "$SRC/a/fifo" || fail "mkfifo"
printf 'bee\n' >"$SRC/b/file.txt"
printf 'sea\n' >"$SRC/c.txt"
printf 'linked\n' >"$SRC/a/hl"
ln "$SRC/a/hl" "$SRC/b/hl"
chmod 0750 "$SRC/a"
# a chain deeper than the directory descriptors restore keeps open (32),
# with files at every level and a sibling branch deep down
D=$SRC/deep
i=1
while [ $i -le 45 ]; do
  D=$D/d$i
  mkdir -p "$D" && printf 'level %d\n' $i >"$D/f" || fail "deep tree"
  [ $i -eq 40 ] && DEEP40=$D
  i=$((i + 1))
done
mkdir "$DEEP40/e" && printf 'branch\n' >"$DEEP40/e/g" || fail "deep tree"
ln "$SRC/deep/d1/f" "$D/hard-to-level-1"
backup_id "$SRC"
SNAPA=$SNAP
NA=7 # a, a/f1, a/hl, a/sub, a/sub/f2, a/link, a/fifo
NDEEP=$((45 * 2 + 2 + 1)) # deep: d1..d45 and their f, e, e/g, the hard link
NDF=$((45 + 2))           # ... of which files

# outside_untouched DIR WHAT: DIR (outside every target) is still empty and
# keeps its mode and mtime
mk_outside() {
  mkdir -p "$1" || fail "mkdir $1"
  chmod 0755 "$1"
  touch -d '2005-05-05 05:05:05' "$1"
}
outside_untouched() {
  [ -z "$(ls -A "$1")" ] || fail "$2: restore wrote outside its target: $(ls -A "$1" | head -n 5 | tr '\n' ' ')"
  assert_eq "$(stat -c '%a %Y' "$1")" "755 $(date -d '2005-05-05 05:05:05' +%s)" \
    "$2: mode and mtime of the directory outside the target"
}

# 0. a fresh target: everything restored, nothing failed; the totals are
# what the other cases compare with
T0=$KH_T/rt/fresh
khr restore "$SNAPA" --target "$T0" --json
assert_ok "restore into a fresh target"
assert_same_tree "$SRC" "$T0$SRC" "restore into a fresh target"
NANC=$(printf '%s' "$SRC" | tr -cd / | wc -c) # the directories down to $SRC
json_check "$OUT" "d['failed'] == 0 and d['files'] == 6 + $NDF and d['others'] == 2 and d['dirs'] == $NANC + 4 + 46" \
  "restore into a fresh target: counts"
NALL=$((NANC + 3 + 6 + 2 + NDEEP + 1))
# the same with one worker and with many (each keeps its own descriptors)
for n in 1 16; do
  rm -rf "$T0"
  khr restore "$SNAPA" --target "$T0" --threads $n
  assert_ok "restore with $n threads"
  assert_same_tree "$SRC" "$T0$SRC" "restore with $n threads"
done

# 1. a planted symlink where the snapshot has a directory
OUT1=$KH_W/outside1
mk_outside "$OUT1"
T1=$KH_T/rt/planted-dir
mkdir -p "$T1$SRC" || fail "mkdir"
ln -s "$OUT1" "$T1$SRC/a"
khr restore "$SNAPA" --target "$T1" --json
assert_rc 1 "restore over a planted directory symlink"
outside_untouched "$OUT1" "planted directory symlink"
json_check "$OUT" "d['failed'] == $NA and d['files'] == 3 + $NDF and d['others'] == 0 and d['dirs'] == $NANC + 2 + 46" \
  "planted directory symlink: JSON counts the directory and everything below it as failed"
assert_grep -F "keyhold: error: $T1$SRC/a: exists and is not a directory (not followed); 6 entries below it were not restored" \
  "$ERR" "planted directory symlink: reported"
assert_grep -F "keyhold: restore: $NA entries could not be restored intact" "$ERR" \
  "planted directory symlink: summary on stderr"
assert_eq "$(readlink "$T1$SRC/a")" "$OUT1" "planted directory symlink: left as it was"
assert_eq "$(cat "$T1$SRC/b/file.txt")" "bee" "planted directory symlink: the rest is restored"
assert_eq "$(cat "$T1$SRC/c.txt")" "sea" "planted directory symlink: the rest is restored"
assert_eq "$(cat "$T1$SRC/b/hl")" "linked" "planted directory symlink: a hard link outside it is restored"
assert_same_tree "$SRC/deep" "$T1$SRC/deep" "planted directory symlink: the rest is restored"
# the human summary says the same
rm -rf "$T1" && mkdir -p "$T1$SRC" && ln -s "$OUT1" "$T1$SRC/a"
khr restore "$SNAPA" --target "$T1"
assert_rc 1 "restore over a planted directory symlink (text output)"
outside_untouched "$OUT1" "planted directory symlink (text output)"
assert_grep "^failed: +$NA entries not restored$" "$OUT" "planted directory symlink: summary"
assert_grep "^files: +$((3 + NDF))$" "$OUT" "planted directory symlink: files restored"

# 2. a planted symlink at a parent level: the first directory below the target
OUT2=$KH_W/outside2
mk_outside "$OUT2"
T2=$KH_T/rt/planted-parent
FIRST=$(printf '%s' "$SRC" | cut -d/ -f2)
mkdir -p "$T2" && ln -s "$OUT2" "$T2/$FIRST"
khr restore "$SNAPA" --target "$T2" --json
assert_rc 1 "restore below a planted parent symlink"
outside_untouched "$OUT2" "planted parent symlink"
json_check "$OUT" "d['failed'] == $NALL and d['files'] == 0 and d['dirs'] == 0 and d['others'] == 0" \
  "planted parent symlink: every entry counted as failed"
assert_grep -F "keyhold: error: $T2/$FIRST: exists and is not a directory (not followed); $((NALL - 1)) entries below it were not restored" \
  "$ERR" "planted parent symlink: reported"

# 2b. a planted symlink deep down, below the descriptors kept open
OUT2B=$KH_W/outside2b
mk_outside "$OUT2B"
T2B=$KH_T/rt/planted-deep
rm -rf "$T0$DEEP40/d41"
mv "$T0" "$T2B" && ln -s "$OUT2B" "$T2B$DEEP40/d41" || fail "plant deep"
khr restore "$SNAPA" --target "$T2B" --json --threads 2
assert_rc 1 "restore over a planted symlink 41 levels down"
outside_untouched "$OUT2B" "planted deep symlink"
json_check "$OUT" "d['failed'] == 11" "planted deep symlink: d41 and its f, d42..d45 and their f, the hard link"
assert_grep -F "keyhold: error: $T2B$DEEP40/d41: exists and is not a directory (not followed); 10 entries below it were not restored" \
  "$ERR" "planted deep symlink: reported"
assert_eq "$(cat "$T2B$DEEP40/e/g" "$T2B$DEEP40/f")" "branch
level 40" "planted deep symlink: the branch beside it is restored"

# 3. planted symlinks where the snapshot has a file, a symlink and a FIFO:
# replaced, never written through
VICTIM=$KH_W/victim
printf 'precious\n' >"$VICTIM"
chmod 0604 "$VICTIM"
touch -d '2003-03-03 03:03:03' "$VICTIM"
T3=$KH_T/rt/planted-file
mkdir -p "$T3$SRC/a" "$T3$SRC/b" || fail "mkdir"
ln -s "$VICTIM" "$T3$SRC/c.txt"
ln -s "$KH_W/not-created" "$T3$SRC/b/file.txt"
ln -s "$VICTIM" "$T3$SRC/a/fifo"
ln -s "$VICTIM" "$T3$SRC/a/link"
khr restore "$SNAPA" --target "$T3" --json
assert_ok "restore over planted file symlinks"
json_check "$OUT" "d['failed'] == 0" "planted file symlinks: nothing failed"
assert_eq "$(cat "$VICTIM")" "precious" "planted file symlink: the file outside keeps its content"
assert_eq "$(stat -c '%a %Y %h' "$VICTIM")" "604 $(date -d '2003-03-03 03:03:03' +%s) 1" \
  "planted file symlink: the file outside keeps its mode, mtime and link count"
assert_absent "$KH_W/not-created" "planted dangling file symlink"
assert_same_tree "$SRC" "$T3$SRC" "restore over planted file symlinks"

# 4. the target itself may be a symlink the user names
mkdir -p "$KH_T/rt/real5" && ln -s real5 "$KH_T/rt/link5"
khr restore "$SNAPA" --target "$KH_T/rt/link5"
assert_ok "restore into a target given as a symlink"
assert_same_tree "$SRC" "$KH_T/rt/real5$SRC" "restore into a target given as a symlink"

# 5. a directory where the snapshot has a symlink and a FIFO: not removed,
# and the two entries that could not be restored are counted (they used to
# be reported but left out of "failed" and the exit status)
T5=$KH_T/rt/dir-in-the-way
mkdir -p "$T5$SRC/a/link" "$T5$SRC/a/fifo" || fail "mkdir"
printf 'keep\n' >"$T5$SRC/a/link/keep"
printf 'keep\n' >"$T5$SRC/a/fifo/keep"
khr restore "$SNAPA" --target "$T5" --json
assert_rc 1 "restore where directories stand in the way of a symlink and a FIFO"
json_check "$OUT" "d['failed'] == 2 and d['others'] == 0 and d['files'] == 6 + $NDF" \
  "directories in the way: the symlink and the FIFO counted as failed"
assert_grep -F "keyhold: error: $T5$SRC/a/link: File exists" "$ERR" "directory in the way of a symlink: reported"
assert_grep -F "keyhold: error: $T5$SRC/a/fifo: File exists" "$ERR" "directory in the way of a FIFO: reported"
assert_eq "$(cat "$T5$SRC/a/link/keep" "$T5$SRC/a/fifo/keep")" "keep
keep" "directories in the way are left as they were"

# 6. a symlink left by restoring another snapshot into the same target
OUT6=$KH_W/outside6
mk_outside "$OUT6"
rm -rf "$SRC/a" && ln -s "$OUT6" "$SRC/a"
backup_id "$SRC"
SNAPB=$SNAP
T6=$KH_T/rt/two-snapshots
khr restore "$SNAPB" --target "$T6"
assert_ok "restore of the snapshot with the symlink"
assert_eq "$(readlink "$T6$SRC/a")" "$OUT6" "the snapshot's symlink is restored"
khr restore "$SNAPA" --target "$T6" --json
assert_rc 1 "restore of the older snapshot into the same target"
outside_untouched "$OUT6" "symlink left by another snapshot"
json_check "$OUT" "d['failed'] == $NA and d['files'] == 3 + $NDF" \
  "symlink left by another snapshot: failed entries counted"

pass
