#!/bin/sh
# restore --include: only the named subtrees/files are recreated, at their
# full absolute path under the target.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
SRC=$KH_T/src
make_tree "$SRC"
backup_id "$SRC"

# only_paths TARGET EXPECTED...: the non-directories under TARGET are exactly
# EXPECTED (absolute snapshot paths), and every directory is an ancestor of
# one of them or below an included directory.
only_files() {
  tgt=$1
  shift
  (cd "$tgt" && find . ! -type d -print0 | sort -z | tr '\n\0' '\001\n' | sed 's|^\.||') >"$KH_W/got"
  : >"$KH_W/want"
  for p in "$@"; do printf '%s\n' "$p" | tr '\n' '\001' | sed 's/\x01$//' >>"$KH_W/want"; echo >>"$KH_W/want"; done
  sort -o "$KH_W/want" "$KH_W/want"
  if ! cmp -s "$KH_W/want" "$KH_W/got"; then
    diff "$KH_W/want" "$KH_W/got" >&2
    fail "restore --include: unexpected set of restored files"
  fi
}

# 1. a subdirectory
T1=$KH_T/rt/sub
khr restore "$SNAP" --target "$T1" --include "$SRC/docs/sub dir"
assert_ok "restore --include of a directory"
assert_same_tree "$SRC/docs/sub dir" "$T1$SRC/docs/sub dir" "restore --include of a directory"
only_files "$T1" "$SRC/docs/sub dir/file with spaces.txt" "$SRC/docs/sub dir/three"
assert_absent "$T1$SRC/docs/marker.txt" "restore --include of a directory: sibling file"
assert_absent "$T1$SRC/bin" "restore --include of a directory: sibling dir"
assert_grep '^files: +2$' "$OUT" "restore --include summary counts only included files"

# 2. one file (with a non-UTF-8 name)
T2=$KH_T/rt/file
F=$SRC/docs/$(printf 'caf\351')
khr restore "$SNAP" --target "$T2" --include "$F"
assert_ok "restore --include of one file"
only_files "$T2" "$F"
cmp "$F" "$T2$F" || fail "restore --include of one file: content differs"
assert_eq "$(stat -c '%a %Y' "$T2$F")" "$(stat -c '%a %Y' "$F")" "restore --include of one file: mode and mtime"

# 3. several includes, one with a newline in its name, one a symlink
T3=$KH_T/rt/multi
NL=$SRC/docs/$(printf 'new\nline')
khr restore "$SNAP" --target "$T3" --include "$NL" --include "$SRC/docs/link-dangling" \
  --include "$SRC/big"
assert_ok "restore with several --include"
only_files "$T3" "$NL" "$SRC/docs/link-dangling" "$SRC/big/random.bin" "$SRC/big/sparse.img"
cmp "$NL" "$T3$NL" || fail "file with a newline in its name"
assert_eq "$(readlink "$T3$SRC/docs/link-dangling")" "/nonexistent/dangling target" "restored symlink target"
assert_same_tree "$SRC/big" "$T3$SRC/big" "several --include: big/"

# 4. a hard link whose other links are not included still gets its content
T4=$KH_T/rt/hard
khr restore "$SNAP" --target "$T4" --include "$SRC/bin/hard3"
assert_ok "restore --include of one link of a hard-linked file"
only_files "$T4" "$SRC/bin/hard3"
cmp "$SRC/bin/hard3" "$T4$SRC/bin/hard3" || fail "hard link restored alone: content differs"
T5=$KH_T/rt/hard2
khr restore "$SNAP" --target "$T5" --include "$SRC/docs/hard2" --include "$SRC/bin/hard3"
assert_ok "restore --include of two links of a hard-linked file"
only_files "$T5" "$SRC/docs/hard2" "$SRC/bin/hard3"
assert_eq "$(stat -c %i "$T5$SRC/docs/hard2")" "$(stat -c %i "$T5$SRC/bin/hard3")" "two included hard links share an inode"
cmp "$SRC/docs/hard1" "$T5$SRC/docs/hard2" || fail "hard link content"

# 5. an include that is not in the snapshot restores nothing and is an
#    error that names it (docs/cli.md)
T6=$KH_T/rt/none
khr restore "$SNAP" --target "$T6" --include "$SRC/no such thing"
assert_rc 1 "restore --include of a missing path"
assert_grep 'no such thing.*not in the snapshot' "$ERR" "restore --include of a missing path: message"
if [ -d "$T6" ]; then
  n=$(find "$T6" ! -type d | wc -l)
  assert_eq "$n" 0 "restore --include of a missing path wrote files"
fi

# 6. a prefix of a name is not a path prefix: --include .../docs/hard must not
#    restore docs/hard1
T7=$KH_T/rt/prefix
khr restore "$SNAP" --target "$T7" --include "$SRC/docs/hard" --include "$SRC/bin/tool"
assert_rc 1 "restore with one include that names nothing (the others are restored)"
only_files "$T7" "$SRC/bin/tool"

# 7. restore into an existing target with other content leaves that content
T8=$KH_T/rt/existing
mkdir -p "$T8/keep"
printf 'mine\n' >"$T8/keep/file"
khr restore "$SNAP" --target "$T8" --include "$SRC/docs/marker.txt"
assert_ok "restore into a non-empty target"
assert_eq "$(cat "$T8/keep/file")" "mine" "restore must not touch unrelated files in the target"
cmp "$SRC/docs/marker.txt" "$T8$SRC/docs/marker.txt" || fail "restore into a non-empty target: content"

pass
