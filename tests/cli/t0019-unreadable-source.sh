#!/bin/sh
# A source file the user cannot read (keyhold runs as nobody): exit 3, a
# snapshot of the rest, warnings that name the paths.  Needs root (to drop
# to nobody with setpriv from util-linux, a TEST_PKGS package).
. "$KH_SRCDIR/tests/cli/lib.sh"

[ "$(id -u)" -eq 0 ] || { note "not root: cannot run keyhold as another user"; exit 77; }
command -v setpriv >/dev/null || fail "setpriv is missing (package util-linux; make test-deps installs it)"
id nobody >/dev/null 2>&1 || fail "there is no user nobody (package base-passwd)"

kh_init

chmod 0755 "$KH_T"
NB=$KH_T/nobody
mkdir -p "$NB/state" "$NB/region"
chown nobody "$NB/state" "$NB/region"
chmod 0644 "$KEYHOLD_PASSCODE_FILE"
U=$KH_T/usrc
mkdir -p "$U/ok" "$U/locked-dir"
printf 'readable\n' >"$U/ok/a"
rand_file "$U/ok/b" 300
printf 'secret\n' >"$U/ok/unreadable"
chmod 0000 "$U/ok/unreadable"
printf 'inside\n' >"$U/locked-dir/x"
chmod 0000 "$U/locked-dir"
find "$U" -depth -type d ! -name locked-dir -exec touch -d '2015-05-05 05:05:05' {} +
asnobody() {
  run setpriv --reuid=nobody --regid=nogroup --clear-groups env \
    KEYHOLD_REGION="$NB/region" KEYHOLD_CACHE_DIR="$NB/state/cache" \
    KEYHOLD_DEVICE_DIR="$NB/state/device" HOME="$NB/state" "$KEYHOLD" "$@"
}
asnobody init --kdf-memory 8 --kdf-ops 1
assert_ok "init as nobody"
asnobody backup --json "$U"
assert_rc 3 "backup with an unreadable file and directory"
json_check "$OUT" "d['warnings'] == 2 and len(d['id']) == 64" "backup --json counts 2 warnings"
assert_grep -F "keyhold: warning: $U/ok/unreadable: " "$ERR" "warning names the unreadable file"
assert_grep -F "keyhold: warning: $U/locked-dir" "$ERR" "warning names the unreadable directory"
assert_grep 'permission denied' "$ERR" "warning says why"
US=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$OUT")
asnobody backup "$U"
assert_rc 3 "backup with warnings (human output)"
assert_grep '^warnings: +2 ' "$OUT" "summary shows the warnings"
is_hex64 "$(tail -n 1 "$OUT")" || fail "backup with warnings: the id is still the last line"
asnobody ls "$US" "$U/ok"
assert_ok "ls of the snapshot with warnings"
assert_grep -F "$U/ok/a" "$OUT" "readable file in the snapshot"
assert_no_grep -F "$U/ok/unreadable" "$OUT" "a skipped file must not be in the snapshot"
asnobody restore "$US" --target "$NB/state/rt"
assert_ok "restore of the snapshot with warnings (as nobody)"
cmp "$U/ok/a" "$NB/state/rt$U/ok/a" || fail "restore: readable file a"
cmp "$U/ok/b" "$NB/state/rt$U/ok/b" || fail "restore: readable file b"
assert_absent "$NB/state/rt$U/ok/unreadable" "restore: the skipped file"
asnobody check --read-data
assert_ok "check of nobody's region"

pass
