#!/bin/sh
# Extended attributes, POSIX ACLs and file flags (chattr a, i, d) are backed
# up and restored; a file system that cannot take them gets a warning per
# entry naming what was lost, counted, and exit status 3 (not silence).
# Virtual files (/proc, /sys: the size stat reports says nothing about the
# content) are read to their end and restored with their content, and the
# summary counts the bytes read.  Needs root (file flags, a ramfs mount).
. "$KH_SRCDIR/tests/cli/lib.sh"

[ "$(id -u)" -eq 0 ] || { note "not root: cannot set file flags or mount a ramfs"; exit 77; }
command -v chattr >/dev/null && command -v lsattr >/dev/null || { note "chattr/lsattr missing (e2fsprogs)"; exit 77; }

kh_init
S=$KH_T/src
mkdir -p "$S/dir/sub" "$S/plain" || fail "mkdir"
printf 'tagged\n' >"$S/dir/tagged.txt"
printf 'acl\n' >"$S/dir/acl.txt"
printf 'frozen\n' >"$S/frozen"
printf 'log line\n' >"$S/append.log"
printf 'no dump\n' >"$S/plain/nodump"
printf 'nothing special\n' >"$S/plain/none"
ln -s dir/tagged.txt "$S/link"

# set_meta: xattrs (any bytes, an empty value, a 4 KiB one), an access ACL
# on a file, a default ACL on a directory (raw system.posix_acl_* values)
python3 - "$S" <<'PY' || { note "this file system takes no user xattrs or ACLs"; exit 77; }
import os, struct, sys
s = sys.argv[1]
def acl(entries):
    return struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in entries)
U = 0xffffffff
os.setxattr(s + '/dir/tagged.txt', 'user.color', b'blue')
os.setxattr(s + '/dir/tagged.txt', 'user.empty', b'')
os.setxattr(s + '/dir/tagged.txt', 'user.bin', bytes(range(256)) * 16)
os.setxattr(s + '/dir', 'user.dirnote', b'\x00\x01\x02')
os.setxattr(s + '/dir/acl.txt', 'system.posix_acl_access',
            acl([(1, 6, U), (2, 4, 1234), (4, 4, U), (0x10, 4, U), (0x20, 0, U)]))
os.setxattr(s + '/dir/sub', 'system.posix_acl_default',
            acl([(1, 7, U), (2, 5, 1234), (4, 5, U), (0x10, 5, U), (0x20, 0, U)]))
PY
chattr +i "$S/frozen" || { note "no file flags on this file system"; exit 77; }
chattr +a "$S/append.log" || fail "chattr +a"
chattr +d "$S/plain/nodump" || fail "chattr +d"
chattr +d "$S/plain" || fail "chattr +d on a directory"
# unset the flags again on exit (the scratch directory must be removable)
trap 'rc=$?; chattr -i -a "$S/frozen" "$S/append.log" $KH_T/rt/*/$S/frozen $KH_T/rt/*/$S/append.log 2>/dev/null; (exit $rc); kh_cleanup' EXIT

# xattrs_of DIR: every path below DIR with its sorted xattrs (hex values)
# and its chattr flags among a, i, d
meta_of() {
  python3 - "$1" <<'PY'
import os, subprocess, sys
root = sys.argv[1]
for dp, dns, fns in sorted(os.walk(root)):
    for n in sorted([''] if dp == root else []) + sorted(dns + fns):
        p = os.path.join(dp, n) if n else dp
        rel = os.path.relpath(p, root)
        xs = {} if os.path.islink(p) else {k: os.getxattr(p, k, follow_symlinks=False).hex() for k in os.listxattr(p, follow_symlinks=False)}
        fl = ''
        if not os.path.islink(p):
            out = subprocess.run(['lsattr', '-d', p], capture_output=True, text=True).stdout.split()[0]
            fl = ''.join(sorted(c for c in out if c in 'aid'))
        print(rel, fl, sorted(xs.items()))
PY
}
meta_of "$S" >"$KH_W/meta.src" || fail "metadata of the source"
assert_grep "system.posix_acl_access" "$KH_W/meta.src" "the source has an ACL"
assert_grep "^frozen i " "$KH_W/meta.src" "the source has an immutable file"

backup_id "$S"
SNAP1=$SNAP
T=$KH_T/rt/1
khr restore "$SNAP1" --target "$T"
assert_ok "restore onto a file system that takes everything"
assert_no_grep "warning" "$ERR" "no warning when everything could be restored"
meta_of "$T$S" >"$KH_W/meta.dst" || fail "metadata of the copy"
if ! cmp -s "$KH_W/meta.src" "$KH_W/meta.dst"; then
  diff "$KH_W/meta.src" "$KH_W/meta.dst" >&2
  fail "restored xattrs, ACLs or flags differ from the source"
fi
cmp "$S/dir/tagged.txt" "$T$S/dir/tagged.txt" || fail "content of a file with xattrs"
# the ACL is in force, not just stored: getfacl-free check through the mode's group bits
assert_eq "$(stat -c %a "$T$S/dir/acl.txt")" "$(stat -c %a "$S/dir/acl.txt")" "mode of the file with an ACL"
chattr -i -a "$T$S/frozen" "$T$S/append.log"

# an unchanged second backup keeps the metadata (files served by the cache)
backup_id "$S"
khr restore "$SNAP" --target "$KH_T/rt/2"
assert_ok "restore of the incremental snapshot"
meta_of "$KH_T/rt/2$S" >"$KH_W/meta.dst2"
cmp -s "$KH_W/meta.src" "$KH_W/meta.dst2" || fail "the incremental snapshot lost metadata"
chattr -i -a "$KH_T/rt/2$S/frozen" "$KH_T/rt/2$S/append.log"

# a changed attribute alone (ctime moves, content does not) is seen
python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.color", b"red")' "$S/dir/tagged.txt" || fail "setxattr"
khr -v backup "$S"
assert_ok "backup after an xattr change"
assert_grep "^modified +$S/dir/tagged.txt " "$OUT" "the file whose xattr changed is read again"
khr restore "$(tail -n 1 "$OUT")" --target "$KH_T/rt/3" --include "$S/dir"
assert_ok "restore after an xattr change"
assert_eq "$(python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], "user.color").decode())' "$KH_T/rt/3$S/dir/tagged.txt")" red "the new value is in the new snapshot"

# an unchanged re-backup lists no file's attributes (the cache has them):
# one listxattr per directory at most, so metadata costs next to nothing.
# (Not under ASan: LeakSanitizer does not run under ptrace.)
if command -v strace >/dev/null && [ -z "${KH_ASAN:-}" ]; then
  mkdir -p "$KH_T/many"
  i=0
  while [ $i -lt 300 ]; do printf '%s\n' $i >"$KH_T/many/f$i"; i=$((i + 1)); done
  backup_id "$KH_T/many"
  run strace -f -qq -c -o "$KH_W/strace" -e trace=listxattr,llistxattr,flistxattr "$KEYHOLD" backup "$KH_T/many"
  assert_ok "unchanged re-backup under strace"
  calls=$(awk '/listxattr/ {s += $4} END {print s + 0}' "$KH_W/strace")
  [ "$calls" -le 20 ] || { cat "$KH_W/strace" >&2; fail "unchanged re-backup of 300 files made $calls listxattr calls"; }
fi

# ---- not root: a read-only file keeps its user.* attribute --------------------
# (set before the mode: the owner may not set attributes on a file it
# cannot write)
if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  chmod 0755 "$KH_T"
  NB=$KH_T/nobody
  mkdir -p "$NB/state" "$NB/region" "$NB/src"
  printf 'read only\n' >"$NB/src/ro.txt"
  python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.note", b"kept")' "$NB/src/ro.txt" || fail "setxattr"
  chmod 0444 "$NB/src/ro.txt"
  chown -R nobody "$NB"
  chmod 0644 "$KEYHOLD_PASSCODE_FILE"
  asnobody() {
    run setpriv --reuid=nobody --regid=nogroup --clear-groups env \
      KEYHOLD_REGION="$NB/region" KEYHOLD_CACHE_DIR="$NB/state/cache" \
      KEYHOLD_DEVICE_DIR="$NB/state/device" HOME="$NB/state" "$KEYHOLD" "$@"
  }
  asnobody init --kdf-memory 8 --kdf-ops 1
  assert_ok "init as nobody"
  asnobody backup "$NB/src"
  assert_ok "backup as nobody"
  asnobody restore latest --target "$NB/state/rt"
  assert_ok "restore as nobody: the read-only file takes its attribute"
  assert_eq "$(python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], "user.note").decode())' "$NB/state/rt$NB/src/ro.txt")" kept "user.note of a read-only file restored by its owner"
  assert_eq "$(stat -c %a "$NB/state/rt$NB/src/ro.txt")" 444 "mode of the read-only file"
fi

# ---- a file system without xattrs or flags: warned, counted, exit 3 ----------
RF=$KH_T/ramfs
mkdir -p "$RF"
mount -t ramfs ramfs "$RF" 2>"$KH_W/mount.err" || { note "cannot mount a ramfs: $(cat "$KH_W/mount.err")"; exit 77; }
KH_MOUNTS="$KH_MOUNTS $RF"
khr --json restore "$SNAP1" --target "$RF"
assert_rc 3 "restore onto ramfs: entries without their metadata"
json_check "$OUT" "d['failed'] == 0 and d['warnings'] == 8 and d['files'] == 6" "JSON counts the entries without all their metadata"
for p in dir/tagged.txt dir/acl.txt dir dir/sub; do
  assert_grep -F "keyhold: warning: $RF$S/$p: extended attributes not restored (" "$ERR" "warning names $p"
done
assert_grep -F "$RF$S/dir/tagged.txt: extended attributes not restored (user.bin, user.color, user.empty): Operation not supported" "$ERR" "warning names the attributes"
assert_grep -F "$RF$S/frozen: file flags (i) not restored: " "$ERR" "warning names the immutable flag"
assert_grep -F "$RF$S/append.log: file flags (a) not restored: " "$ERR" "warning names the append-only flag"
assert_grep -F "$RF$S/plain: file flags (d) not restored: " "$ERR" "warning names the no-dump flag of a directory"
assert_grep -F "$RF$S/plain/nodump: file flags (d) not restored: " "$ERR" "warning names the no-dump flag"
[ "$(grep -c 'keyhold: warning: ' "$ERR")" -eq 8 ] || fail "8 warnings expected, one per entry"
cmp "$S/dir/tagged.txt" "$RF$S/dir/tagged.txt" || fail "content restored onto ramfs"
khr restore "$SNAP1" --target "$RF/2"
assert_rc 3 "human output onto ramfs"
assert_grep '^warnings:  8 entries without all their metadata$' "$OUT" "summary line"
umount "$RF" || fail "umount"

# ---- virtual files ---------------------------------------------------------------
V="/proc/version /proc/cmdline /proc/cpuinfo /sys/devices/system/cpu/possible"
[ -r /sys/kernel/mm/transparent_hugepage/enabled ] && V="$V /sys/kernel/mm/transparent_hugepage/enabled"
# shellcheck disable=SC2086
khr --json backup $V
assert_ok "backup of /proc and /sys files"
tail -n 1 "$OUT" >"$KH_W/v.json"
VS=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$KH_W/v.json")
khr restore "$VS" --target "$KH_T/rt/v"
assert_ok "restore of the virtual files"
sum=0
for f in $V; do
  [ -s "$KH_T/rt/v$f" ] || fail "$f restored empty"
  case $f in
  /proc/cpuinfo) assert_grep '^processor' "$KH_T/rt/v$f" "content of $f" ;;
  *) cmp "$f" "$KH_T/rt/v$f" || fail "content of $f differs" ;;
  esac
  sum=$((sum + $(stat -c %s "$KH_T/rt/v$f")))
done
json_check "$KH_W/v.json" "d['bytes'] == $sum and d['files'] == $(echo $V | wc -w)" "backup counts the bytes read from virtual files ($sum), not their stat size"
pass
