#!/bin/sh
# keyhold dump --archive zip: a directory as a streamed ZIP that unzip
# tests and extracts to the same tree (contents, modes, mtimes, symlinks,
# non-UTF-8 and long names), ZIP64 when there are more than 65535 entries
# and when a file is 4 GiB or more, and a damaged chunk leaving an archive
# unzip rejects (exit 1).
. "$KH_SRCDIR/tests/cli/lib.sh"

SRC=$KH_T/src
kh_init
LONG=$(python3 -c "print('L' * 250)")
mkdir -p "$SRC/docs/deep" "$SRC/empty" "$SRC/bin" "$SRC/ünï"
printf 'alpha content\n' >"$SRC/docs/a.txt"
: >"$SRC/docs/zero"
rand_file "$SRC/docs/multi.bin" 5000
printf 'long name\n' >"$SRC/docs/deep/$LONG"
printf 'utf-8 name\n' >"$SRC/ünï/файл.txt"
printf 'latin-1 name\n' >"$SRC/docs/$(printf 'caf\351')"
printf '#!/bin/sh\necho hi\n' >"$SRC/bin/run.sh"
chmod 0755 "$SRC/bin/run.sh"
chmod 0600 "$SRC/docs/a.txt"
ln -s ../docs/a.txt "$SRC/bin/a-link"
ln "$SRC/docs/zero" "$SRC/bin/zero-hardlink"
mkfifo "$SRC/bin/fifo"
touch -d '2001-02-03 04:05:06' "$SRC/docs/deep/$LONG" "$SRC/docs/multi.bin"
find "$SRC" -depth -type d -exec touch -d '2010-10-10 10:10:10' {} +
backup_id "$SRC"; S1=$SNAP

khr dump --archive zip "$S1" "$SRC"
assert_ok "dump --archive zip of a directory"
assert_grep -F "fifo: a device, FIFO or socket cannot be stored in a zip: left out" "$ERR" "the FIFO is reported"
cp "$OUT" "$KH_W/src.zip"
run unzip -t "$KH_W/src.zip"
assert_ok "unzip -t"
assert_grep 'No errors detected' "$OUT" "unzip -t"
# the entries, named relative to the parent of PATH, directories with '/'
LC_ALL=C.UTF-8 unzip -Z1 "$KH_W/src.zip" | LC_ALL=C sort >"$KH_W/zip-list" || fail "unzip -Z1"
(cd "$KH_T" && find src ! -type p \( -type d -printf '%p/\n' -o -printf '%p\n' \) | LC_ALL=C sort) >"$KH_W/src-list"
cmp -s "$KH_W/zip-list" "$KH_W/src-list" || { diff "$KH_W/src-list" "$KH_W/zip-list" >&2; fail "zip entries differ from the source tree"; }
mkdir "$KH_T/rt/x"
LC_ALL=C.UTF-8 run unzip -q "$KH_W/src.zip" -d "$KH_T/rt/x"
assert_ok "unzip of the dump"
rm "$SRC/bin/fifo"
touch -d '2010-10-10 10:10:10' "$SRC/bin"
run diff -r --no-dereference "$SRC" "$KH_T/rt/x/src"
assert_ok "diff -r of the extracted zip against the source"
assert_eq "$(readlink "$KH_T/rt/x/src/bin/a-link")" "../docs/a.txt" "the symlink is a symlink again"
(cd "$SRC" && find . ! -type l -printf '%y %m %T@ %p\n' | sed 's/\.[0-9]* / /' | sort) >"$KH_W/meta-src"
(cd "$KH_T/rt/x/src" && find . ! -type l -printf '%y %m %T@ %p\n' | sed 's/\.[0-9]* / /' | sort) >"$KH_W/meta-zip"
cmp -s "$KH_W/meta-src" "$KH_W/meta-zip" || { diff "$KH_W/meta-src" "$KH_W/meta-zip" >&2; fail "modes or mtimes (seconds) differ after unzip"; }
# python's reader agrees on names (UTF-8 flag), CRCs and the Unix modes
python3 - "$KH_W/src.zip" <<'EOF' || fail "python zipfile disagrees"
import sys, zipfile, stat
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
names = {i.filename: i for i in z.infolist()}
assert "src/ünï/файл.txt" in names, sorted(names)
assert names["src/ünï/файл.txt"].flag_bits & 0x800
i = names["src/docs/a.txt"]
assert stat.S_IMODE(i.external_attr >> 16) == 0o600 and stat.S_ISREG(i.external_attr >> 16)
assert stat.S_ISLNK(names["src/bin/a-link"].external_attr >> 16)
assert names["src/bin/a-link"].flag_bits & 0x8 == 0
assert names["src/docs/multi.bin"].flag_bits & 0x8  # streamed: data descriptor
assert z.read("src/bin/zero-hardlink") == b""
EOF

# a single file is its bare content, as with tar
khr dump --archive zip "$S1" "$SRC/docs/multi.bin"
assert_ok "dump --archive zip of a file"
cmp -s "$OUT" "$SRC/docs/multi.bin" || fail "a file is written as its content"
khr dump --archive rar "$S1" "$SRC"
assert_rc 2 "dump --archive rar"
assert_grep -F "unsupported archive format 'rar' (tar or zip)" "$ERR" "the usage message"

# ---- ZIP64: more than 65535 entries -------------------------------------------
MANY=$KH_T/many
mkdir -p "$MANY"
python3 - "$MANY" <<'EOF' || fail "making 66000 files"
import os, sys
for d in range(66):
    p = os.path.join(sys.argv[1], "d%02d" % d)
    os.mkdir(p)
    for f in range(1000):
        open(os.path.join(p, "%d" % f), "w").write("%d/%d\n" % (d, f))
EOF
backup_id "$MANY"; S2=$SNAP
khr dump --archive zip "$S2" "$MANY"
assert_ok "dump --archive zip of 66067 entries"
mv "$OUT" "$KH_W/many.zip"
run unzip -t "$KH_W/many.zip"
assert_ok "unzip -t of a ZIP64 archive with 66067 entries"
assert_grep 'No errors detected' "$OUT" "unzip -t (many)"
assert_eq "$(unzip -Z1 "$KH_W/many.zip" | wc -l)" "66067" "entry count"
assert_eq "$(unzip -p "$KH_W/many.zip" many/d65/999)" "65/999" "the last file's content"
rm -f "$KH_W/many.zip"

# ---- ZIP64: a file of 4 GiB and more (sparse: cheap to back up) -----------------
HUGE=$KH_T/huge
mkdir -p "$HUGE"
truncate -s $((4 * 1024 * 1024 * 1024 + 4096 + 7)) "$HUGE/big.img"
printf 'head' | dd of="$HUGE/big.img" conv=notrunc status=none
printf 'tail' | dd of="$HUGE/big.img" bs=1 seek=$((4 * 1024 * 1024 * 1024 + 4096 + 3)) conv=notrunc status=none
printf 'after the big one\n' >"$HUGE/small.txt"
backup_id "$HUGE"; S3=$SNAP
# the archive goes to disk, not to the tmpfs scratch directory
ZDIR=$(mktemp -d /var/tmp/kh-t0036.XXXXXX) || fail "mktemp in /var/tmp"
trap 'rm -rf "$ZDIR"; kh_cleanup' EXIT
"$KEYHOLD" dump --archive zip "$S3" "$HUGE" >"$ZDIR/huge.zip" 2>"$ERR"
RC=$?
assert_ok "dump --archive zip of a 4 GiB file"
python3 - "$ZDIR/huge.zip" <<'EOF' || fail "the ZIP64 archive with a 4 GiB entry does not check out"
import sys, zipfile, zlib
z = zipfile.ZipFile(sys.argv[1])
i = z.getinfo("huge/big.img")
assert i.file_size == 4 * 2**30 + 4096 + 7, i.file_size
assert i.flag_bits & 0x8
crc, n, head, tail = 0, 0, b"", b""
with z.open(i) as f:     # zipfile checks the CRC at the end
    while True:
        b = f.read(1 << 22)
        if not b:
            break
        if n == 0:
            head = b[:4]
        n += len(b)
        tail = (tail + b)[-4:]
assert n == i.file_size and head == b"head" and tail == b"tail", (n, head, tail)
assert z.read("huge/small.txt") == b"after the big one\n"
EOF
run unzip -t "$ZDIR/huge.zip"
assert_ok "unzip -t of the archive with a 4 GiB entry"
rm -rf "$ZDIR"

# ---- damage: the archive is cut short, never wrong ------------------------------
PACK=$(largest_pack)
flip_byte "$PACK" $(($(stat -c %s "$PACK") / 2))
khr dump --archive zip "$S1" "$SRC"
assert_fail "dump --archive zip over a damaged chunk"
cp "$OUT" "$KH_W/bad.zip"
run unzip -t "$KH_W/bad.zip"
[ "$RC" -ne 0 ] || fail "unzip -t accepted an archive cut short by damage"
pass
