#!/bin/sh
# restore --include/--iinclude/--exclude/--iexclude (backup's patterns),
# --overwrite always|if-changed|if-newer|never, --delete, --verify and
# --dry-run (docs/cli.md "restore"): target contents compared exactly, exit
# codes exact, and no symlink planted in the target is ever followed by
# --overwrite or --delete.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
SRC=$KH_T/src
mkdir -p "$SRC/docs/sub" "$SRC/cache"
printf 'alpha\n' >"$SRC/docs/a.txt"
printf '%%PDF pretend\n' >"$SRC/docs/b.pdf"
printf 'charlie\n' >"$SRC/docs/sub/c.txt"
printf 'tmp\n' >"$SRC/cache/x.tmp"
printf 'top\n' >"$SRC/top.txt"
ln -s a.txt "$SRC/docs/link"
touch -h -d '2020-01-01 00:00:00' "$SRC/docs/a.txt" "$SRC/docs/b.pdf" "$SRC/docs/sub/c.txt" \
  "$SRC/cache/x.tmp" "$SRC/top.txt" "$SRC/docs/link"
backup_id "$SRC"
OUTSIDE=$KH_T/outside
mkdir -p "$OUTSIDE/dir"
printf 'victim\n' >"$OUTSIDE/victim"
printf 'inner\n' >"$OUTSIDE/dir/inner"
outside_intact() {
  assert_eq "$(cat "$OUTSIDE/victim")" "victim" "$1: a file outside the target was written through a symlink"
  assert_eq "$(cat "$OUTSIDE/dir/inner")" "inner" "$1: a file outside the target was removed or changed"
  assert_eq "$(cd "$OUTSIDE" && find . | sort | tr '\n' ' ')" ". ./dir ./dir/inner ./victim " "$1: outside changed"
}
# files TARGET: the non-directories below TARGET's copy of SRC, relative
files() { (cd "$1$SRC" && find . ! -type d | sed 's|^\./||' | sort | tr '\n' ' '); }
# restore --json is NDJSON: status lines, then the summary as the last line
jnum() { python3 -c '
import json, sys
ls = [json.loads(l) for l in open(sys.argv[1], "rb").read().splitlines() if l.strip()]
assert ls and all(x["message_type"] == "status" for x in ls[:-1]), "not status lines, then a summary"
d = ls[-1]
assert d["message_type"] == "summary", "the last line is not the summary"
print(" ".join(str(d[k]) for k in sys.argv[2:]))' "$OUT" "$@"; }

# ---- usage errors ---------------------------------------------------------------
for bad in "--overwrite sometimes" "--include !x" "--include [abc" "--exclude ''" "--iinclude ''"; do
  eval "khr restore $SNAP --target \"\$KH_T/rt/bad\" $bad"
  assert_rc 2 "restore $bad"
done
assert_absent "$KH_T/rt/bad" "a refused restore created its target"

# ---- --include / --exclude patterns -------------------------------------------------
khr restore "$SNAP" --target "$KH_T/rt/i1" --include '*.txt'
assert_ok "restore --include '*.txt'"
assert_eq "$(files "$KH_T/rt/i1")" "docs/a.txt docs/sub/c.txt top.txt " "--include '*.txt' at any depth"
cmp "$SRC/docs/sub/c.txt" "$KH_T/rt/i1$SRC/docs/sub/c.txt" || fail "--include: content"
khr restore "$SNAP" --target "$KH_T/rt/i2" --iinclude '*.PDF'
assert_ok "restore --iinclude '*.PDF'"
assert_eq "$(files "$KH_T/rt/i2")" "docs/b.pdf " "--iinclude ignores case"
khr restore "$SNAP" --target "$KH_T/rt/i3" --include "$SRC/docs/" --exclude '*.pdf' --exclude "$SRC/docs/sub"
assert_ok "restore --include DIR --exclude"
assert_eq "$(files "$KH_T/rt/i3")" "docs/a.txt docs/link " "--include a directory, --exclude inside it"
assert_absent "$KH_T/rt/i3$SRC/docs/sub" "an excluded directory is not created"
khr restore "$SNAP" --target "$KH_T/rt/i4" --iexclude "$SRC/CACHE" --exclude '*.txt' --exclude '!top.txt'
assert_ok "restore --iexclude with a re-include"
assert_eq "$(files "$KH_T/rt/i4")" "docs/b.pdf docs/link top.txt " "--iexclude, last match decides"
khr restore "$SNAP" --target "$KH_T/rt/i5" --include '*.nothing' --include "$SRC/top.txt"
assert_fail "restore --include that matches nothing"
assert_grep -F "*.nothing: is not in the snapshot" "$ERR" "the pattern that matched nothing is named"
assert_eq "$(files "$KH_T/rt/i5")" "top.txt " "the other include is restored"

# ---- --dry-run: nothing written; listing and counts -----------------------------------
T=$KH_T/rt/main
khr restore "$SNAP" --target "$T" --dry-run
assert_ok "restore --dry-run into a missing target"
assert_absent "$T" "--dry-run created the target"
for f in docs/a.txt docs/b.pdf docs/sub/c.txt cache/x.tmp top.txt docs/link; do
  grep -qxF "restore $T$SRC/$f" "$OUT" || fail "--dry-run does not list $f"
done
assert_grep '^dry run: nothing was written' "$OUT" "--dry-run says so"
khr --json restore "$SNAP" --target "$T" --dry-run --delete
assert_ok "restore --dry-run --json"
assert_eq "$(jnum dry_run files others skipped deleted failed)" "True 5 1 0 0 0" "--dry-run --json counts"
assert_absent "$T" "--dry-run --json created the target"

# ---- a full restore with --verify ------------------------------------------------------
khr --json restore "$SNAP" --target "$T" --verify
assert_ok "restore --verify"
assert_eq "$(jnum files others verified skipped failed)" "5 1 5 0 0" "--verify counts every file"
diff -r "$SRC" "$T$SRC" >"$KH_W/d" 2>&1 || fail "restore: trees differ: $(cat "$KH_W/d")"

# ---- --overwrite --------------------------------------------------------------------------
printf 'changed, longer\n' >"$T$SRC/docs/a.txt"; touch -d '2000-01-01' "$T$SRC/docs/a.txt"
printf 'newer top\n' >"$T$SRC/top.txt"; touch -d '2030-01-01' "$T$SRC/top.txt"
printf 'CHARLIE\n' >"$T$SRC/docs/sub/c.txt"; touch -r "$SRC/docs/sub/c.txt" "$T$SRC/docs/sub/c.txt"

khr --json restore "$SNAP" --target "$T" --overwrite never
assert_ok "restore --overwrite never"
assert_eq "$(jnum files others skipped)" "0 0 6" "never keeps every existing entry"
assert_eq "$(cat "$T$SRC/docs/a.txt" "$T$SRC/top.txt" "$T$SRC/docs/sub/c.txt")" \
  "$(printf 'changed, longer\nnewer top\nCHARLIE')" "never left the changed files alone"

khr --json restore "$SNAP" --target "$T" --overwrite if-newer
assert_ok "restore --overwrite if-newer"
assert_eq "$(jnum files skipped)" "1 5" "if-newer: replaced only what is older"
assert_eq "$(cat "$T$SRC/docs/a.txt")" "alpha" "if-newer replaced an older file"
assert_eq "$(cat "$T$SRC/top.txt")" "newer top" "if-newer kept a newer file"
assert_eq "$(cat "$T$SRC/docs/sub/c.txt")" "CHARLIE" "if-newer kept a file of the same time"

printf 'changed, longer\n' >"$T$SRC/docs/a.txt"; touch -r "$SRC/docs/a.txt" "$T$SRC/docs/a.txt"
khr restore "$SNAP" --target "$T" --overwrite if-changed --verify
assert_fail "restore --overwrite if-changed --verify with a file changed behind size and mtime"
assert_grep -F "$T$SRC/docs/sub/c.txt: verify: content differs from the snapshot" "$ERR" "verify names the file"
assert_eq "$(grep -c 'verify:' "$ERR")" 1 "only that file fails verification"
assert_eq "$(cat "$T$SRC/docs/a.txt")" "alpha" "if-changed replaced a file of another size"
assert_eq "$(cat "$T$SRC/top.txt")" "top" "if-changed replaced a file of another mtime"
assert_eq "$(cat "$T$SRC/docs/sub/c.txt")" "CHARLIE" "if-changed kept the file that looks unchanged"

khr restore "$SNAP" --target "$T" --verify
assert_ok "restore (always) --verify"
diff -r "$SRC" "$T$SRC" >"$KH_W/d" 2>&1 || fail "--overwrite always: trees differ: $(cat "$KH_W/d")"

# --verify re-reads what was written: a file changed after it was written
# (the restore held at the event point restore.verify) is caught
T2=$KH_T/rt/verify
bg env KH_FAULT=restore.verify:1:stop "$KEYHOLD" restore "$SNAP" --target "$T2" --verify \
  >"$KH_W/v.out" 2>"$KH_W/v.err"
PV=$BGPID
n=0
while :; do
  st=$(sed 's/.*) //' "/proc/$PV/stat" 2>/dev/null | cut -c1)
  [ "$st" = T ] && break
  kill -0 "$PV" 2>/dev/null || fail "restore ended before it stopped at restore.verify: $(cat "$KH_W/v.err")"
  n=$((n + 1))
  [ $n -le 3000 ] || fail "restore did not stop at restore.verify within 30 s"
  sleep 0.01
done
assert_eq "$(cat "$T2$SRC/docs/b.pdf")" "%PDF pretend" "restored before verification"
printf '%%PDF PRETEND\n' >"$T2$SRC/docs/b.pdf"
kill -CONT "$PV"
wait "$PV"; RC=$?
cp "$KH_W/v.err" "$ERR"
assert_fail "restore --verify with a file changed after it was written"
assert_grep -F "$T2$SRC/docs/b.pdf: verify: content differs from the snapshot in bytes 0 to 13" "$ERR" "verify names the file and the bytes"
assert_eq "$(grep -c 'verify:' "$ERR")" 1 "only that file fails verification"
assert_grep -F "restore: 1 entry could not be restored intact" "$ERR" "restore counts the failed verification"

# ---- --overwrite never follows a symlink planted where a file goes --------------------------
rm "$T$SRC/docs/a.txt"; ln -s "$OUTSIDE/victim" "$T$SRC/docs/a.txt"
khr restore "$SNAP" --target "$T" --overwrite if-newer
assert_ok "restore --overwrite if-newer over a planted symlink"
outside_intact "if-newer"
[ -L "$T$SRC/docs/a.txt" ] || fail "if-newer replaced a newer symlink"
khr restore "$SNAP" --target "$T" --overwrite never
outside_intact "never"
khr restore "$SNAP" --target "$T" --overwrite if-changed --verify
assert_ok "restore --overwrite if-changed over a planted symlink"
outside_intact "if-changed"
[ -f "$T$SRC/docs/a.txt" ] && [ ! -L "$T$SRC/docs/a.txt" ] || fail "if-changed did not replace the symlink by the file"
assert_eq "$(cat "$T$SRC/docs/a.txt")" "alpha" "if-changed restored the file"
rm "$T$SRC/docs/a.txt"; ln -s "$OUTSIDE/victim" "$T$SRC/docs/a.txt"
khr restore "$SNAP" --target "$T"
assert_ok "restore (always) over a planted symlink"
outside_intact "always"
assert_eq "$(cat "$T$SRC/docs/a.txt")" "alpha" "always replaced the symlink, not its target"

# ---- --delete -----------------------------------------------------------------------------
mkdir -p "$T$SRC/docs/extra/deep" "$T/elsewhere"
printf 'x\n' >"$T$SRC/docs/extra/deep/f"
printf 'old\n' >"$T$SRC/docs/sub/old.txt"
printf 'keep\n' >"$T$SRC/docs/x.keep"
printf 'top level\n' >"$T/elsewhere/g"
ln -s "$OUTSIDE" "$T$SRC/docs/evil-dir-link"
ln -s "$OUTSIDE/victim" "$T$SRC/evil-file-link"
find "$T" | sort >"$KH_W/before"
khr restore "$SNAP" --target "$T" --delete --exclude '*.keep' --dry-run
assert_ok "restore --delete --dry-run"
assert_eq "$(grep '^delete ' "$OUT" | sort | tr '\n' '|')" \
  "$(printf 'delete %s\n' "$T$SRC/docs/evil-dir-link" "$T$SRC/docs/extra" "$T$SRC/docs/extra/deep" "$T$SRC/docs/extra/deep/f" "$T$SRC/docs/sub/old.txt" "$T$SRC/evil-file-link" "$T/elsewhere" "$T/elsewhere/g" | sort | tr '\n' '|')" \
  "--delete --dry-run lists exactly the extra paths"
find "$T" | sort >"$KH_W/after"
cmp -s "$KH_W/before" "$KH_W/after" || fail "--delete --dry-run removed something"

khr restore "$SNAP" --target "$T" --delete --include "$SRC/docs/sub"
assert_ok "restore --delete --include"
assert_absent "$T$SRC/docs/sub/old.txt" "--delete inside an included directory"
assert_exists "$T$SRC/docs/extra/deep/f" "--delete removed something outside the included directory"
assert_exists "$T/elsewhere/g" "--delete with --include removed something at the top"

khr --json restore "$SNAP" --target "$T" --delete --exclude '*.keep'
assert_ok "restore --delete"
assert_eq "$(jnum deleted)" "7" "--delete count (each path removed counts)"
outside_intact "--delete"
assert_exists "$T$SRC/docs/x.keep" "--delete removed an excluded path"
rm "$T$SRC/docs/x.keep"
diff -r "$SRC" "$T$SRC" >"$KH_W/d" 2>&1 || fail "--delete: trees differ: $(cat "$KH_W/d")"
assert_eq "$(ls -A "$T")" "$(printf %s "$KH_T" | cut -d/ -f2)" "--delete: only the snapshot's top directory is left in the target"

# a symlink planted where the snapshot has a directory: neither followed by
# restore nor by --delete
rm -r "$T$SRC/cache"; ln -s "$OUTSIDE/dir" "$T$SRC/cache"
khr restore "$SNAP" --target "$T" --delete --overwrite if-changed
assert_fail "restore --delete over a directory replaced by a symlink"
assert_grep -F "$T$SRC/cache: exists and is not a directory (not followed)" "$ERR" "the symlink is reported"
outside_intact "--delete over a symlinked directory"

pass
