#!/bin/sh
# dump (a file byte for byte, a directory as tar), find (glob patterns over
# snapshots) and stats (restore-size, raw-data), checked against the source
# tree and against check's own counts.
. "$KH_SRCDIR/tests/cli/lib.sh"

command -v tar >/dev/null || { echo "SKIP: no tar"; exit 77; }

SRC=$KH_T/src
kh_init
LONG=$(python3 -c "print('L' * 200)")
mkdir -p "$SRC/docs/deep/er" "$SRC/empty" "$SRC/bin"
printf 'alpha content\n' >"$SRC/docs/a.txt"
printf 'notes of ana\n' >"$SRC/docs/notes.TXT"
printf 'read me first\n' >"$SRC/ReadMe.md"
printf 'deep down\n' >"$SRC/docs/deep/er/bottom.txt"
printf 'long name content\n' >"$SRC/docs/$LONG"
rand_file "$SRC/docs/multi.bin" 3000
printf '#!/bin/sh\necho hi\n' >"$SRC/bin/run.sh"
chmod 0755 "$SRC/bin/run.sh"
chmod 0600 "$SRC/docs/notes.TXT"
: >"$SRC/docs/zero-length"
ln "$SRC/docs/a.txt" "$SRC/bin/a-hardlink"
ln -s ../docs/a.txt "$SRC/bin/a-symlink"
ln -s "deep/er/$LONG-target-that-is-long-too" "$SRC/docs/long-link"
touch -d '2001-02-03 04:05:06' "$SRC/docs/deep/er/bottom.txt"
backup_id "$SRC"; S1=$SNAP
cp -a "$SRC" "$KH_T/cp/v1"

# ---- dump: a file ------------------------------------------------------------
khr dump "$S1" "$SRC/docs/multi.bin"
assert_ok "dump of a file"
cmp "$OUT" "$SRC/docs/multi.bin" || fail "dump of a file is not byte-identical"
[ ! -s "$ERR" ] || fail "dump of a file wrote to stderr"
khr dump "$S1" "$SRC/docs/zero-length"
assert_ok "dump of an empty file"
[ ! -s "$OUT" ] || fail "dump of an empty file wrote bytes"
khr dump latest "$SRC/docs/$LONG"
assert_ok "dump of a file with a 200-character name"
assert_eq "$(cat "$OUT")" "long name content" "dump of the long-named file"

# ---- dump: a directory as tar --------------------------------------------------
khr dump "$S1" "$SRC"
assert_ok "dump of a directory"
cp "$OUT" "$KH_W/src.tar"
# tar -t lists exactly the tree, named relative to the parent of the dump
tar -tf "$KH_W/src.tar" | sed 's:/$::' | LC_ALL=C sort >"$KH_W/tar-list" || fail "tar -t"
(cd "$KH_T" && find src | LC_ALL=C sort) >"$KH_W/src-list"
cmp -s "$KH_W/tar-list" "$KH_W/src-list" || { diff "$KH_W/src-list" "$KH_W/tar-list" >&2; fail "tar -t of the dump differs from the source tree"; }
mkdir "$KH_T/rt/x"
run tar -xf "$KH_W/src.tar" -C "$KH_T/rt/x"
assert_ok "tar -x of the dump"
[ ! -s "$ERR" ] || fail "tar -x complained"
# same names, types, modes, sizes, mtimes (seconds), contents, link targets,
# and the hard link is a hard link again
python3 - "$KH_T/cp/v1" "$KH_T/rt/x/src" <<'EOF' || fail "the tree extracted from the dump differs from the source"
import os, stat, sys, hashlib
a, b = sys.argv[1], sys.argv[2]
def walk(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            info = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)]
            if stat.S_ISREG(st.st_mode):
                info += [st.st_size, int(st.st_mtime), hashlib.sha256(open(p, 'rb').read()).hexdigest()]
            elif stat.S_ISLNK(st.st_mode):
                info += [os.readlink(p)]
            else:
                info += [int(st.st_mtime)]
            out[rel] = info
    return out
wa, wb = walk(a), walk(b)
if wa != wb:
    for k in sorted(set(wa) | set(wb)):
        if wa.get(k) != wb.get(k):
            print('differs:', k, wa.get(k), wb.get(k), file=sys.stderr)
    sys.exit(1)
ia = os.stat(os.path.join(b, 'docs/a.txt')).st_ino
ib = os.stat(os.path.join(b, 'bin/a-hardlink')).st_ino
if ia != ib:
    print('hard link not restored', file=sys.stderr); sys.exit(1)
assert os.path.isdir(os.path.join(b, 'empty')) and not os.listdir(os.path.join(b, 'empty'))
EOF
# the 200-character name needs a pax header (ustar names stop at 100)
python3 - "$KH_W/src.tar" "$LONG" <<'EOF' || fail "the dump's tar is not a pax archive with the long name in a pax record"
import tarfile, sys
t = tarfile.open(sys.argv[1])
names = [m.name for m in t.getmembers()]
long = [m for m in t.getmembers() if m.name == 'src/docs/' + sys.argv[2]]
assert len(long) == 1 and 'path' in long[0].pax_headers, names
bottom = t.getmember('src/docs/deep/er/bottom.txt')
import calendar, time
assert bottom.mtime == calendar.timegm((2001, 2, 3, 4, 5, 6)), bottom.mtime
# the first name of the hard-linked pair (in byte order, bin/ before docs/)
# carries the data, the second is a hard link to it
assert t.getmember('src/bin/a-hardlink').isreg() and t.getmember('src/bin/a-hardlink').size == 14
assert t.getmember('src/docs/a.txt').islnk() and t.getmember('src/docs/a.txt').linkname == 'src/bin/a-hardlink'
assert names.index('src/bin/a-hardlink') < names.index('src/docs/a.txt')
assert t.getmember('src/bin/run.sh').mode == 0o755 and t.getmember('src/docs/notes.TXT').mode == 0o600
EOF
# a subdirectory is named from its own name down
khr dump "$S1" "$SRC/docs/deep/"
assert_ok "dump of a subdirectory"
assert_eq "$(tar -tf "$OUT" | LC_ALL=C sort | tr '\n' ' ')" "deep/ deep/er/ deep/er/bottom.txt " "tar -t of a subdirectory dump"

# the whole snapshot: the backed-up paths without their leading slash
khr dump "$S1" /
assert_ok "dump of /"
tar -tf "$OUT" >"$KH_W/root-list" || fail "tar -t of the dump of /"
grep -qxF "${SRC#/}/docs/deep/er/bottom.txt" "$KH_W/root-list" || fail "dump of /: ${SRC#/}/docs/deep/er/bottom.txt not listed"
grep -q '^/' "$KH_W/root-list" && fail "dump of /: an absolute name in the tar"
assert_eq "$(grep -c "^${SRC#/}/" "$KH_W/root-list")" "$(wc -l <"$KH_W/src-list")" "dump of /: the source and every entry below it"

# usage errors and failures
khr dump "$S1" "$SRC/nope"
assert_fail "dump of a missing path"
assert_grep "not in the snapshot" "$ERR" "dump of a missing path: message"
khr dump "$S1"
assert_rc 2 "dump without PATH"
khr dump --archive cpio "$S1" "$SRC"
assert_rc 2 "dump --archive cpio"
khr dump --json "$S1" "$SRC/docs/a.txt"
assert_rc 2 "dump --json"
khr dump ffffffff "$SRC"
assert_fail "dump of an unknown snapshot"

# ---- a second snapshot for find and stats ----------------------------------------
rm "$SRC/docs/notes.TXT"
printf 'the report\n' >"$SRC/docs/new-report.txt"
rand_file "$SRC/docs/added.bin" 600
backup_id "$SRC"; S2=$SNAP
cp -a "$SRC" "$KH_T/cp/v2"

# ---- find ------------------------------------------------------------------------
khr find --json '*.txt'
assert_ok "find --json"
json_check "$OUT" "sorted((x['snapshot'], x['path']) for x in d) == sorted([
  ('$S1', '$SRC/docs/a.txt'), ('$S1', '$SRC/docs/deep/er/bottom.txt'),
  ('$S2', '$SRC/docs/a.txt'), ('$S2', '$SRC/docs/deep/er/bottom.txt'), ('$S2', '$SRC/docs/new-report.txt')])" "find '*.txt' across two snapshots"
json_check "$OUT" "all(set(x) == {'snapshot', 'path', 'type', 'size', 'mtime'} for x in d)" "find --json fields"
json_check "$OUT" "[(x['type'], x['size'], x['mtime']) for x in d if x['path'] == '$SRC/docs/deep/er/bottom.txt'][0] == ('file', 10, '2001-02-03T04:05:06.000000000Z')" "find --json size and mtime"
khr find --json -i '*.txt'
assert_ok "find -i"
json_check "$OUT" "sorted(x['path'] for x in d if x['snapshot'] == '$S1') == sorted(['$SRC/docs/a.txt', '$SRC/docs/deep/er/bottom.txt', '$SRC/docs/notes.TXT'])" "find -i matches notes.TXT in the first snapshot only"
json_check "$OUT" "'$SRC/docs/notes.TXT' not in [x['path'] for x in d if x['snapshot'] == '$S2']" "find -i: the removed file is not in the second snapshot"
khr find --json --snapshot "$(printf %.8s "$S2")" 'readme*' -i 'bin'
assert_ok "find with --snapshot and two patterns"
json_check "$OUT" "sorted((x['snapshot'], x['path'], x['type']) for x in d) == [('$S2', '$SRC/ReadMe.md', 'file'), ('$S2', '$SRC/bin', 'dir')]" "find --snapshot restricts to one snapshot"
khr find --json --pathname "$SRC/docs/*/*"
assert_ok "find --pathname"
json_check "$OUT" "sorted(set(x['path'] for x in d)) == ['$SRC/docs/deep/er', '$SRC/docs/deep/er/bottom.txt']" "find --pathname matches whole paths, * across /"
khr find --json 'bottom.txt' --host no-such-host
assert_ok "find --host with no snapshot"
json_check "$OUT" "d == []" "find --host filters snapshots"
khr find --json 'bottom.txt' --path "$SRC/"
assert_ok "find --path"
json_check "$OUT" "len(d) == 2" "find --path keeps snapshots of that path"
khr find --json 'bottom.txt' --path /elsewhere
json_check "$OUT" "d == []" "find --path /elsewhere"
khr find -l 'bottom.txt' --snapshot "$S1"
assert_ok "find -l"
assert_grep "^snapshot $(printf %.8s "$S1") \(" "$OUT" "find: snapshot heading"
assert_grep -F "-rw-r--r--           10 2001-02-03 04:05:06 $SRC/docs/deep/er/bottom.txt" "$OUT" "find -l line"
assert_grep "^1 match in 1 snapshot$" "$OUT" "find summary"
khr find
assert_rc 2 "find without PATTERN"
khr find --snapshot ffffffff '*'
assert_fail "find --snapshot unknown"

# ---- stats -------------------------------------------------------------------------
# independent counts: files (every name, as find -type f), bytes (each inode
# once), directories (the tree plus the ancestors of $SRC the snapshot records)
files_of() { find "$1" -type f | wc -l; }
bytes_of() { find "$1" -type f -printf '%i %s\n' | sort -u | awk '{s += $2} END {print s + 0}'; }
NANC=$(printf '%s' "$(dirname "$SRC")" | tr -cd / | wc -c)
F1=$(files_of "$KH_T/cp/v1"); B1=$(bytes_of "$KH_T/cp/v1")
F2=$(files_of "$KH_T/cp/v2"); B2=$(bytes_of "$KH_T/cp/v2")
D1=$(($(find "$KH_T/cp/v1" -type d | wc -l) + NANC))
O1=$(find "$KH_T/cp/v1" ! -type f ! -type d | wc -l)
khr stats --json "$S1"
assert_ok "stats restore-size"
json_check "$OUT" "d == {'mode': 'restore-size', 'snapshots': 1, 'files': $F1, 'bytes': $B1, 'dirs': $D1, 'others': $O1}" "stats restore-size of the first snapshot"
khr stats --json
assert_ok "stats over every snapshot"
json_check "$OUT" "d['snapshots'] == 2 and d['files'] == $F1 + $F2 and d['bytes'] == $B1 + $B2" "stats with no SNAPSHOT sums every snapshot"
khr stats "$S2" latest
assert_ok "stats human output"
assert_grep "^Snapshots: +1$" "$OUT" "stats counts a snapshot named twice once"
assert_grep "^Files: +$F2$" "$OUT" "stats human files"
assert_grep "^Total size: +$B2 \(" "$OUT" "stats human size"
# raw-data over every snapshot: the same blobs and trees check counts, data
# plaintext = the distinct file contents (nothing was shared but whole files)
khr check
assert_ok "check"
CB=$(sed -n 's/^checked .* \([0-9]*\) blobs.*/\1/p' "$OUT")
CT=$(sed -n 's/^checked .* \([0-9]*\) trees.*/\1/p' "$OUT")
UNIQ=$(cat "$KH_T/cp/v1/docs/notes.TXT" | wc -c)
UNIQ=$((B2 + UNIQ))
PACKS=$(find "$(account_dir)/data" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
khr stats --json --mode raw-data
assert_ok "stats raw-data"
json_check "$OUT" "d['blobs'] == $CB and d['tree_blobs'] == $CT and d['blobs'] == d['data_blobs'] + d['tree_blobs']" "stats raw-data blob counts match check ($CB blobs, $CT trees)"
json_check "$OUT" "d['data_plain_bytes'] == $UNIQ" "stats raw-data: the distinct file contents, once"
json_check "$OUT" "d['referenced_bytes'] == $B1 + $B2 and d['missing_blobs'] == 0" "stats raw-data referenced bytes are the restore sizes"
json_check "$OUT" "0 < d['stored_bytes'] <= $PACKS and d['plain_bytes'] >= $UNIQ" "stats raw-data stored bytes fit in the packs"
json_check "$OUT" "abs(d['dedup_ratio'] - ($B1 + $B2) / $UNIQ) < 0.001 and abs(d['compression_ratio'] - d['plain_bytes'] / d['stored_bytes']) < 0.001" "stats raw-data ratios"
khr stats --mode bogus
assert_rc 2 "stats --mode bogus"
khr stats ffffffff
assert_fail "stats of an unknown snapshot"

# ---- help ----------------------------------------------------------------------------
khr help
for v in dump find stats; do
  assert_grep "^ +$v +[a-z]" "$OUT" "keyhold help lists $v"
done
for v in dump find stats; do
  khr help $v
  assert_ok "help $v"
  for sec in NAME SYNOPSIS DESCRIPTION OPTIONS ENVIRONMENT "EXIT STATUS" EXAMPLES; do
    assert_grep "^$sec\$" "$OUT" "help $v has $sec"
  done
done

# ---- dump of damaged data: only the complete, authentic chunks before it ------------
KEYHOLD_REGION=$KH_T/region-dmg
KEYHOLD_CACHE_DIR=$KH_T/state/cache-dmg
KEYHOLD_DEVICE_DIR=$KH_T/state/device-dmg
kh_init
mkdir -p "$KH_T/dmg"
rand_file "$KH_T/dmg/file.bin" 8192
backup_id "$KH_T/dmg"
cp -a "$KEYHOLD_REGION" "$KH_T/region-pristine" || fail "copy the region"
P=$(largest_pack)
PSIZE=$(stat -c %s "$P")
# damage at several places of the largest pack (the file's chunks, in the
# order the workers stored them): each time the output must be exactly a
# prefix of the file made of whole chunks, and at least once it is not empty
MAXN=0
for pct in 10 30 50 70 90; do
  rm -rf "$KEYHOLD_REGION" && cp -a "$KH_T/region-pristine" "$KEYHOLD_REGION" || fail "reset the region"
  flip_byte "$P" $((PSIZE * pct / 100))
  khr dump --no-cache "$SNAP" "$KH_T/dmg/file.bin"
  assert_fail "dump of a file with a damaged chunk ($pct%)"
  assert_grep "authentication failed" "$ERR" "dump of a damaged chunk: the error says why"
  assert_grep -F "$KH_T/dmg/file.bin" "$ERR" "dump of a damaged chunk: the error names the file"
  N=$(stat -c %s "$OUT")
  [ "$N" -lt $((8192 * 1024)) ] || fail "dump of a damaged chunk ($pct%): wrote the whole file"
  cmp -s -n "$N" "$OUT" "$KH_T/dmg/file.bin" || fail "dump of a damaged chunk ($pct%): output is not a prefix of the file"
  # whole chunks only: the chunker never cuts below 256 KiB
  [ "$N" -eq 0 ] || [ "$N" -ge $((256 * 1024)) ] || fail "dump of a damaged chunk ($pct%): $N bytes is less than one chunk"
  [ "$N" -le "$MAXN" ] || MAXN=$N
done
[ "$MAXN" -gt 0 ] || fail "dump of a damaged chunk: never wrote the authentic chunks before the damage"
khr dump --no-cache "$SNAP" "$KH_T/dmg"
assert_fail "dump of a directory with a damaged chunk"
run tar -tf "$OUT"
[ "$RC" -ne 0 ] || fail "a tar cut short by damage must not look complete to tar"

# ---- memory: a 200 MB file is streamed ------------------------------------------------
mkdir -p "$KH_T/big"
head -c $((200 * 1024 * 1024)) /dev/urandom >"$KH_T/big/file" || fail "make the 200 MB file"
backup_id "$KH_T/big"
run /usr/bin/time -o "$KH_W/rss" -f %M "$KEYHOLD" dump "$SNAP" "$KH_T/big/file"
assert_ok "dump of a 200 MB file"
cmp -s "$OUT" "$KH_T/big/file" || fail "dump of a 200 MB file is not byte-identical"
RSS=$(tail -n 1 "$KH_W/rss")
# (under ASan, whose shadow memory and quarantine inflate RSS, the bound is
# not meaningful: the content check above still runs)
if [ -z "${KH_ASAN:-}" ]; then
  [ "$RSS" -lt 102400 ] || fail "dump of a 200 MB file: peak RSS $RSS KiB (limit 100 MiB)"
fi
note "dump of 200 MB: peak RSS $RSS KiB"
rm -f "$OUT"

# ---- dump holds the shared lock: prune refuses while a dump runs ----------------------
# the dump blocks writing into a FIFO nobody reads, holding its lock
mkfifo "$KH_W/fifo" || fail "mkfifo"
bg sh -c 'exec "$0" dump "$1" "$2" >"$3" 2>"$4"' "$KEYHOLD" "$SNAP" "$KH_T/big/file" "$KH_W/fifo" "$KH_W/d.err"
PD=$BGPID
exec 3<"$KH_W/fifo"
wait_lock "$PD" || fail "the dump finished before a lock was seen (dump takes no lock?)"
run timeout 60 "$KEYHOLD" prune
[ $RC -ne 124 ] || fail "prune waited 60 s for a dump's lock"
assert_rc 1 "prune while a dump holds a shared lock"
assert_grep 'lock' "$ERR" "prune during dump: message"
cat <&3 >/dev/null
exec 3<&-
wait "$PD"; rd=$?
[ $rd -eq 0 ] || fail "the dump prune waited for failed: $(cat "$KH_W/d.err")"
rm -f "$KH_T/big/file"

pass
