#!/bin/sh
# keyhold mount: the snapshots as a read-only FUSE file system.  The mounted
# snapshot equals the source (diff -r, modes, sizes, mtimes, symlinks), a
# byte range read at an offset is right, hosts/, tags/, ids/ and the latest
# links list what the snapshots say, the mount holds the shared lock, and
# fusermount3 -u, SIGTERM and SIGINT each unmount with exit status 0.
. "$KH_SRCDIR/tests/cli/lib.sh"

# the only precondition: a usable /dev/fuse (and the verb in this build)
if ! (: <>/dev/fuse) 2>/dev/null; then echo "SKIP: cannot open /dev/fuse"; exit 77; fi
kh help mount >/dev/null 2>&1 || fail "keyhold mount is not in this build (libfuse3-dev missing?)"
command -v fusermount3 >/dev/null || fail "fusermount3 is missing (Debian package fuse3)"

SRC=$KH_T/src
MNT=$KH_T/mnt
mkdir -p "$SRC/docs/deep" "$SRC/empty" "$MNT"
: >"$SRC/docs/zero"
printf 'x' >"$SRC/docs/one"
head -c 4095 /dev/urandom >"$SRC/docs/page-1"
head -c 4097 /dev/urandom >"$SRC/docs/page+1"
head -c 1048583 /dev/urandom >"$SRC/docs/mib+7"
head -c 20000000 /dev/urandom >"$SRC/big.bin"
printf 'deep content\n' >"$SRC/docs/deep/leaf.txt"
truncate -s 3M "$SRC/sparse.img"
printf 'island' | dd of="$SRC/sparse.img" bs=1 seek=1500000 conv=notrunc status=none
ln -s deep/leaf.txt "$SRC/docs/rel-link"
ln -s /nonexistent/target "$SRC/docs/dangling"
printf '#!/bin/sh\n' >"$SRC/docs/tool"
chmod 0750 "$SRC/docs/tool"
chmod 0600 "$SRC/docs/one"
touch -d '2001-02-03 04:05:06.5' "$SRC/docs/one"

kh_init
backup_id --host alpha --tag nightly --tag 'a/b' "$SRC"; S1=$SNAP
printf 'changed\n' >"$SRC/docs/deep/leaf.txt"
backup_id --host beta "$SRC"; S2=$SNAP
cp -a "$SRC" "$KH_T/cp/v2"

# ---- mount ----------------------------------------------------------------------
# start_mount: in the background, with SIGINT at its default action (sh
# starts background jobs with SIGINT ignored, and an ignored SIGINT stays
# ignored, as in every program)
start_mount() {
  env --default-signal=INT "$KEYHOLD" mount "$MNT" >"$KH_W/mount.out" 2>"$KH_W/mount.err" &
  MPID=$!
  KH_BGPIDS="$KH_BGPIDS $MPID"
  KH_MOUNTS="$KH_MOUNTS $MNT"
  n=0
  until [ -d "$MNT/snapshots" ]; do
    kill -0 "$MPID" 2>/dev/null || { cat "$KH_W/mount.err" >&2; fail "keyhold mount exited early"; }
    n=$((n + 1))
    [ $n -le 300 ] || fail "the mount did not appear in 30 s"
    sleep 0.1
  done
}
# stop_mount HOW: unmount (fusermount3 -u, or a signal) and expect exit 0
stop_mount() {
  case $1 in
  fusermount) run fusermount3 -u "$MNT"; assert_ok "fusermount3 -u" ;;
  *) kill "-$1" "$MPID" ;;
  esac
  n=0
  while kill -0 "$MPID" 2>/dev/null; do
    n=$((n + 1))
    [ $n -le 300 ] || fail "keyhold mount did not exit within 30 s after $1"
    sleep 0.1
  done
  wait "$MPID"
  mrc=$?
  [ "$mrc" -eq 0 ] || { cat "$KH_W/mount.err" >&2; fail "keyhold mount exited $mrc after $1, expected 0"; }
  grep -q " $MNT fuse" /proc/mounts && fail "$MNT is still mounted after $1"
  ls "$(account_dir)/locks" 2>/dev/null | grep -Eqx '[0-9a-f]{32}' &&
    fail "the lock was left behind after $1"
  return 0
}

start_mount
grep -q " $MNT fuse.keyhold ro[,]" /proc/mounts || fail "not mounted read-only as fuse.keyhold: $(grep " $MNT " /proc/mounts)"

# the top level
ls "$MNT" >"$OUT" || fail "ls of the mount"
assert_eq "$(tr '\n' ' ' <"$OUT")" "hosts ids snapshots tags " "top-level listing"
ls "$MNT/hosts" >"$OUT" || fail "ls hosts"
assert_eq "$(tr '\n' ' ' <"$OUT")" "alpha beta " "hosts/ lists both hosts"
ls "$MNT/tags" >"$OUT" || fail "ls tags"
assert_eq "$(tr '\n' ' ' <"$OUT")" "a%2Fb nightly " "tags/ lists both tags ('/' escaped)"
T1=$(ls "$MNT/hosts/alpha" | grep -v '^latest$')
T2=$(ls "$MNT/hosts/beta" | grep -v '^latest$')
printf '%s' "$T1" | grep -Eqx '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z(-[0-9]+)?' ||
  fail "hosts/alpha holds one snapshot named by its time, got '$T1'"
[ "$T1" != "$T2" ] || fail "two snapshots share the name $T1"
assert_eq "$(ls "$MNT/tags/nightly" | tr '\n' ' ')" "$T1 latest " "tags/nightly holds the first snapshot only"
assert_eq "$(ls "$MNT/tags/a%2Fb" | tr '\n' ' ')" "$T1 latest " "tags/a%2Fb holds the first snapshot only"
assert_eq "$(ls "$MNT/snapshots" | tr '\n' ' ')" "$(printf '%s\n%s\n' "$T1" "$T2" | sort | tr '\n' ' ')latest " "snapshots/ lists both and latest"
assert_eq "$(readlink "$MNT/snapshots/latest")" "$T2" "snapshots/latest points to the newest"
assert_eq "$(readlink "$MNT/hosts/alpha/latest")" "$T1" "hosts/alpha/latest"
S1SHORT=$(printf '%.8s' "$S1") S2SHORT=$(printf '%.8s' "$S2")
assert_eq "$(ls "$MNT/ids" | tr '\n' ' ')" "$(printf '%s\n%s\n' "$S1SHORT" "$S2SHORT" | sort | tr '\n' ' ')" "ids/ lists the short ids"
[ -d "$MNT/ids/$S1" ] || fail "ids/ does not take the full id"
[ -e "$MNT/snapshots/no-such" ] && fail "a name that is no snapshot exists"
[ -e "$MNT/nothing" ] && fail "an unknown top-level name exists"

# the newest snapshot equals the source, byte for byte and in metadata
M2=$MNT/snapshots/latest$SRC
run diff -r --no-dereference "$KH_T/cp/v2" "$M2"
assert_ok "diff -r of the mounted latest snapshot against the source"
run diff -r --no-dereference "$KH_T/cp/v2" "$MNT/hosts/beta/$T2$SRC"
assert_ok "diff -r through hosts/beta"
(cd "$KH_T/cp/v2" && find . -printf '%y %m %U %G %s %T@ %l %p\n' | grep -v '^d' | sort) >"$KH_W/meta-src"
(cd "$M2" && find . -printf '%y %m %U %G %s %T@ %l %p\n' | grep -v '^d' | sort) >"$KH_W/meta-mnt"
cmp -s "$KH_W/meta-src" "$KH_W/meta-mnt" || { diff "$KH_W/meta-src" "$KH_W/meta-mnt" >&2; fail "types, modes, owners, sizes, mtimes or link targets differ"; }
(cd "$KH_T/cp/v2" && find . -type d -printf '%m %U %G %T@ %p\n' | sort) >"$KH_W/dirs-src"
(cd "$M2" && find . -type d -printf '%m %U %G %T@ %p\n' | sort) >"$KH_W/dirs-mnt"
cmp -s "$KH_W/dirs-src" "$KH_W/dirs-mnt" || { diff "$KH_W/dirs-src" "$KH_W/dirs-mnt" >&2; fail "directory modes or mtimes differ"; }
assert_eq "$(readlink "$M2/docs/rel-link")" "deep/leaf.txt" "symlink target"
assert_eq "$(cat "$M2/docs/rel-link")" "changed" "reading through a relative symlink"
# the older snapshot still has the old content
assert_eq "$(cat "$MNT/ids/$S1SHORT$SRC/docs/deep/leaf.txt")" "deep content" "the first snapshot's file"
assert_eq "$(cat "$MNT/tags/nightly/latest$SRC/docs/deep/leaf.txt")" "deep content" "through tags/nightly/latest"

# byte ranges at offsets, across chunk boundaries and in a hole
for spec in "1 0 1" "4096 1234 7" "65536 100 50" "1000 19990 10" "1 19999999 1"; do
  set -- $spec
  dd if="$M2/big.bin" bs="$1" skip="$2" count="$3" status=none >"$KH_W/r-mnt" || fail "dd from the mount ($spec)"
  dd if="$SRC/big.bin" bs="$1" skip="$2" count="$3" status=none >"$KH_W/r-src" || fail "dd from the source"
  [ -s "$KH_W/r-mnt" ] || fail "dd ($spec) read nothing"
  cmp -s "$KH_W/r-mnt" "$KH_W/r-src" || fail "byte range bs=$1 skip=$2 count=$3 differs"
done
assert_eq "$(dd if="$M2/sparse.img" bs=1 skip=1500000 count=6 status=none)" "island" "data inside a sparse file"
assert_eq "$(dd if="$M2/sparse.img" bs=4096 skip=10 count=1 status=none | tr -d '\0' | wc -c)" "0" "a hole reads as zeros"
# reading past the end gives nothing
assert_eq "$(dd if="$M2/docs/one" bs=1 skip=5 count=1 status=none | wc -c)" "0" "read past the end of a file"

# read-only
if printf 'x' 2>/dev/null >"$M2/docs/one"; then fail "a file in the mount could be written"; fi
if mkdir "$M2/newdir" 2>/dev/null; then fail "a directory could be created in the mount"; fi
if rm -f "$M2/docs/one" 2>/dev/null && [ ! -e "$M2/docs/one" ]; then fail "a file could be removed"; fi

# the shared lock: prune waits (fails with LOCKED) while the mount runs
ls "$(account_dir)/locks" | grep -Eqx '[0-9a-f]{32}' || fail "the mount holds no lock"
khr prune
assert_fail "prune while mounted"
assert_grep 'lock' "$ERR" "prune names the lock"

# a snapshot made while mounted appears in the listing within seconds
printf 'third\n' >"$SRC/docs/deep/leaf.txt"
backup_id --host alpha "$SRC"; S3=$SNAP
n=0
until [ -d "$MNT/ids/$(printf '%.8s' "$S3")" ]; do
  n=$((n + 1)); [ $n -le 100 ] || fail "a new snapshot did not appear in the mount within 10 s"
  sleep 0.1
done
assert_eq "$(cat "$MNT/ids/$(printf '%.8s' "$S3")$SRC/docs/deep/leaf.txt")" "third" "the new snapshot's file"

stop_mount fusermount
# the help and usage errors
khr mount
assert_rc 2 "mount without DIR"
khr mount "$KH_T/no-such-dir"
assert_fail "mount on a missing directory"
khr --json mount "$MNT"
assert_rc 2 "mount --json"

# SIGTERM and SIGINT unmount cleanly too
start_mount
cat "$MNT/snapshots/latest$SRC/docs/deep/leaf.txt" >/dev/null || fail "read after remount"
stop_mount TERM
# damaged data: the read fails with EIO (reported), nothing wrong is
# returned, and the rest of the mount keeps working
PACK=$(largest_pack)
flip_byte "$PACK" $(($(stat -c %s "$PACK") / 2))
start_mount
run cat "$MNT/ids/$S1SHORT$SRC/big.bin"
assert_fail "reading a file with a damaged chunk through the mount"
assert_grep -F "Input/output error" "$ERR" "the read fails with EIO"
[ "$(stat -c %s "$OUT")" -lt 20000000 ] || fail "the whole damaged file was returned"
cmp -s "$OUT" "$SRC/big.bin" && fail "the damaged file read back whole"
head -c "$(stat -c %s "$OUT")" "$SRC/big.bin" | cmp -s - "$OUT" || fail "bytes returned before the damage are not the original ones"
assert_grep "error: .*big.bin: authentication failed" "$KH_W/mount.err" "the mount reports the damaged chunk"
assert_eq "$(cat "$MNT/ids/$S1SHORT$SRC/docs/deep/leaf.txt")" "deep content" "other files still read"
stop_mount INT
pass
