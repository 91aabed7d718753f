#!/bin/sh
# Incremental backups: unchanged files are not read again, diff names exactly
# what changed, older snapshots keep their content, the cache is disposable.
. "$KH_SRCDIR/tests/cli/lib.sh"

# the summary line counts the lines above it
diff_summary_consistent() {
  a=$(grep -c '^+    ' "$OUT")
  r=$(grep -c '^-    ' "$OUT")
  c=$(grep -Ec '^[MUT]    ' "$OUT")
  assert_eq "$(tail -n 1 "$OUT" | sed 's/; .*//')" "added $a, removed $r, changed $c" "diff summary"
  assert_eq "$(wc -l <"$OUT" | tr -d ' ')" $((a + r + c + 1)) "diff output has only change lines and the summary"
}

kh_init
SRC=$KH_T/src
make_tree "$SRC" nofifo
TOTAL=$(tree_size "$SRC")

khr backup --json "$SRC"
assert_ok "first backup"
cp "$OUT" "$KH_W/b1.json"
S1=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$OUT")
is_hex64 "$S1" || fail "backup --json id: $S1"
json_check "$OUT" "d['bytes'] == $TOTAL" "first backup: bytes = apparent size of the files"
json_check "$OUT" "d['blobs_new'] > 0 and d['bytes_new'] > 0 and d['bytes_new_stored'] > 0" "first backup stores data"
# dedup: three 2 MiB copies and three hard links are stored once
json_check "$OUT" "d['bytes_new'] < $TOTAL - 2 * 2097152 - 8 * 1048576 + 1048576" "first backup deduplicates (bytes_new < total minus copies and holes)"
json_check "$OUT" "d['warnings'] == 0" "no warnings"
cp -a "$SRC" "$KH_T/cp/v1"

# unchanged: nothing read, nothing new
khr backup --json "$SRC"
assert_ok "second backup"
S2=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$OUT")
json_check "$OUT" "d['bytes_read'] <= $TOTAL // 100" "unchanged backup reads (almost) nothing"
# (only the directory listings of changed ancestors such as /tmp may be new)
json_check "$OUT" "d['blobs_new'] <= $KH_NANC and d['bytes_new'] <= 4096 * $KH_NANC" "unchanged backup stores nothing new"
json_check "$OUT" "d['bytes'] == $TOTAL" "unchanged backup: bytes"
[ "$S1" != "$S2" ] || fail "second backup has the same id"
restore_and_compare "$S2" "$SRC" "restore of the unchanged backup"
khr diff "$S1" "$S2"
assert_ok "diff of identical snapshots"
assert_eq "$(below "$SRC" <"$OUT" | wc -l | tr -d ' ')" 0 "diff of snapshots of an unchanged tree lists nothing below it"
diff_summary_consistent

# ---- changes ---------------------------------------------------------------
D=$SRC/docs
printf 'changed content, different length\n' >"$D/marker.txt"           # M
touch -d '2002-01-01 00:00:00' "$D/marker.txt"
printf 'a new file\n' >"$D/added.txt"                                     # +
mkdir "$SRC/newdir" && printf 'x\n' >"$SRC/newdir/inner"                  # + +
rm "$D/private"                                                           # -
rm -r "$SRC/dedup"                                                        # - - -
chmod 0700 "$SRC/bin/tool"                                                # U
touch -d '2021-01-01 00:00:00' "$D/-leading-dash"                         # U
rm "$D/empty file" && ln -s marker.txt "$D/empty file"                    # T
head -c 100 /dev/urandom | dd of="$SRC/big/random.bin" bs=100 seek=5000 conv=notrunc status=none
touch -d '2001-02-03 04:05:06.123456789' "$SRC/big/random.bin"            # M (same size, same mtime? no: ctime)
touch -d '2003-03-03 03:03:03' "$SRC/big/random.bin"                      # M
# directories keep their old mtimes, so only the paths above differ
find "$SRC" -depth -type d -exec touch -d '2010-10-10 10:10:10.101010101' {} +
CHANGED=$(printf '%s\n' "$D/marker.txt" "$SRC/big/random.bin" "$D/added.txt")
CHANGED_SIZE=$(cat "$D/marker.txt" "$SRC/big/random.bin" "$D/added.txt" "$SRC/newdir/inner" | wc -c)

khr backup --json "$SRC"
assert_ok "third backup"
S3=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$OUT")
json_check "$OUT" "d['bytes_read'] <= $CHANGED_SIZE + 65536" "third backup reads only the changed files"
json_check "$OUT" "d['bytes_read'] >= $CHANGED_SIZE" "third backup reads the changed files"
json_check "$OUT" "d['blobs_new'] > 0" "third backup stores new blobs"
restore_and_compare "$S3" "$SRC" "restore of the changed tree"

khr diff "$S2" "$S3"
assert_ok "diff"
cat >"$KH_W/diff.expected" <<EXP
+    $D/added.txt
+    $SRC/newdir
+    $SRC/newdir/inner
-    $D/private
-    $SRC/dedup
-    $SRC/dedup/one
-    $SRC/dedup/two
M    $D/marker.txt
M    $SRC/big/random.bin
U    $SRC/bin/tool
U    $D/-leading-dash
T    $D/empty file
EXP
below "$SRC" <"$OUT" | sort >"$KH_W/diff.actual"
sort "$KH_W/diff.expected" >"$KH_W/diff.expected.sorted"
if ! cmp -s "$KH_W/diff.expected.sorted" "$KH_W/diff.actual"; then
  diff "$KH_W/diff.expected.sorted" "$KH_W/diff.actual" >&2
  fail "diff does not list exactly the changes"
fi
diff_summary_consistent
khr diff --json "$S2" "$S3"
assert_ok "diff --json"
ndjson_check "$OUT" "len([x for x in d if x['path'].startswith('$SRC')]) == 12 and all(set(x) >= {'change', 'path'} for x in d)" "diff --json is NDJSON of 12 changes"
ndjson_check "$OUT" "sorted((x['change'], x['path']) for x in d if x['change'] in '+-') == sorted([('+', '$D/added.txt'), ('+', '$SRC/newdir'), ('+', '$SRC/newdir/inner'), ('-', '$D/private'), ('-', '$SRC/dedup'), ('-', '$SRC/dedup/one'), ('-', '$SRC/dedup/two')])" "diff --json added/removed"
khr diff "$S3" "$S2"
assert_ok "reverse diff"
assert_grep -F "+    $D/private" "$OUT" "reverse diff: removed becomes added"
assert_grep -F "-    $D/added.txt" "$OUT" "reverse diff: added becomes removed"

# the older snapshots still hold the old content
restore_and_compare "$S1" "$SRC" "restore of the first snapshot after changes" "$KH_T/cp/v1"
restore_and_compare "$S2" "$SRC" "restore of the second snapshot after changes" "$KH_T/cp/v1"

# ---- the cache is disposable -----------------------------------------------
cp -a "$SRC" "$KH_T/cp/v3"
rm -rf "$KEYHOLD_CACHE_DIR"
khr backup --json "$SRC"
assert_ok "backup without a cache"
S4=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$OUT")
T3=$(tree_size "$SRC")
json_check "$OUT" "d['blobs_new'] <= $KH_NANC and d['bytes_new'] <= 4096 * $KH_NANC" "backup without a cache: everything is deduplicated against the region"
json_check "$OUT" "d['bytes_read'] >= $T3 - 8 * 1048576" "backup without a cache reads the files again"
restore_and_compare "$S4" "$SRC" "restore after losing the cache" "$KH_T/cp/v3"
restore_and_compare "$S1" "$SRC" "first snapshot after losing the cache" "$KH_T/cp/v1"
khr diff "$S3" "$S4"
assert_ok "diff after losing the cache"
assert_eq "$(below "$SRC" <"$OUT")" "" "snapshots before and after losing the cache are equal"
# and the rebuilt cache works: the next backup reads nothing
khr backup --json "$SRC"
assert_ok "backup with the rebuilt cache"
json_check "$OUT" "d['bytes_read'] <= $T3 // 100" "rebuilt cache: unchanged files are not read"
# --no-cache reads everything but still stores nothing new
khr --no-cache backup --json "$SRC"
assert_ok "backup --no-cache"
json_check "$OUT" "d['blobs_new'] <= $KH_NANC and d['bytes_read'] >= $T3 - 8 * 1048576" "backup --no-cache"
khr check --read-data
assert_ok "check --read-data"

pass
