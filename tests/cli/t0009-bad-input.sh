#!/bin/sh
# Bad input: unreadable and missing source paths (exit 3, snapshot of the
# rest), all paths missing (failure), a full region and a full restore
# target (clear errors, nothing damaged).
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init

# ---- a source file the user cannot read (keyhold runs as nobody) ------------
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
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
  US=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT")
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
else
  note "SKIP unreadable-file case: needs root, setpriv and user nobody"
fi

# ---- a nonexistent path among several -------------------------------------------
S1=$KH_T/s1
S2=$KH_T/s2
make_tree "$S1" nofifo
mkdir -p "$S2"
printf 'two\n' >"$S2/file"
touch -d '2012-01-01' "$S2/file" "$S2"
khr backup "$S1" "$KH_T/does-not-exist" "$S2"
assert_rc 3 "backup with one missing path"
assert_grep -F "keyhold: warning: $KH_T/does-not-exist: " "$ERR" "warning names the missing path"
SNAP=$(tail -n 1 "$OUT")
is_hex64 "$SNAP" || fail "backup with one missing path: no snapshot id"
restore_and_compare "$SNAP" "$S1" "missing path among several: first path"
restore_and_compare "$SNAP" "$S2" "missing path among several: last path"
khr ls "$SNAP" "$KH_T/does-not-exist"
assert_rc 1 "the missing path is not in the snapshot"

# ---- all paths missing -------------------------------------------------------------
n0=$(ls "$(account_dir)/snapshots" | wc -l)
khr backup "$KH_T/nope1" "$KH_T/nope2"
assert_rc 1 "backup of only missing paths"
assert_grep -F "$KH_T/nope1" "$ERR" "all paths missing: message names a path"
assert_eq "$(ls "$(account_dir)/snapshots" | wc -l)" "$n0" "backup of only missing paths made a snapshot"
khr backup
assert_rc 2 "backup without paths"

# ---- a full region ------------------------------------------------------------------
FULL=$KH_T/full-region
mkdir -p "$FULL"
if mount -t tmpfs -o size=3m tmpfs "$FULL" 2>"$KH_W/mount.err"; then
  KH_MOUNTS="$KH_MOUNTS $FULL"
  SM=$KH_T/small
  mkdir -p "$SM"
  rand_file "$SM/one" 200
  printf 'small\n' >"$SM/two"
  touch -d '2014-04-04' "$SM/one" "$SM/two" "$SM"
  cp -a "$SM" "$KH_T/cp/small"
  R0=$KEYHOLD_REGION
  KEYHOLD_REGION=$FULL
  KEYHOLD_CACHE_DIR=$KH_T/state/cache-full
  kh_init
  backup_id "$SM"
  SF=$SNAP
  rand_file "$SM/huge" 6144
  khr backup "$SM"
  assert_rc 1 "backup into a full region"
  # the message names the real cause (the worker's failed write), not a
  # detail some earlier, handled error left behind
  assert_grep -F 'no space left on device: write ' "$ERR" "backup into a full region: message"
  assert_grep -F 'No space left on device' "$ERR" "backup into a full region: the errno text"
  assert_no_grep 'passcode' "$ERR" "backup into a full region: stale detail"
  assert_eq "$(ls "$(account_dir)/snapshots")" "$SF" "a failed backup must not leave a snapshot"
  khr check
  assert_ok "check of the full region"
  rm "$SM/huge"
  restore_and_compare "$SF" "$SM" "snapshot in the full region" "$KH_T/cp/small"
  # free the space the failed backup used, then back up again
  khr prune
  assert_ok "prune in the full region"
  khr check --read-data
  assert_ok "check --read-data after freeing space"
  printf 'more\n' >"$SM/three"
  touch -d '2014-04-04' "$SM"
  cp -a "$SM" "$KH_T/cp/small2"
  backup_id "$SM"
  restore_and_compare "$SNAP" "$SM" "backup after freeing space" "$KH_T/cp/small2"
  restore_and_compare "$SF" "$SM" "old snapshot after freeing space" "$KH_T/cp/small"
  KEYHOLD_REGION=$R0
  KEYHOLD_CACHE_DIR=$KH_T/state/cache
else
  note "SKIP full-region case: mount failed: $(cat "$KH_W/mount.err")"
fi

# ---- a full restore target ------------------------------------------------------------
FT=$KH_T/full-target
mkdir -p "$FT"
if mount -t tmpfs -o size=3m tmpfs "$FT" 2>"$KH_W/mount.err"; then
  KH_MOUNTS="$KH_MOUNTS $FT"
  khr restore latest --target "$FT/t"
  assert_rc 1 "restore into a full target"
  assert_grep 'no space|space left' "$ERR" "restore into a full target: message"
  # whatever was written is complete and correct
  if [ -d "$FT/t$S1" ]; then
    (cd "$FT/t$S1" && find . -type f -exec sh -c 'for f; do cmp -s "$0/$f" "$f" || echo "$f"; done' "$S1" {} +) >"$KH_W/partial"
  fi
  [ ! -s "$KH_W/partial" ] || fail "restore into a full target left incomplete files: $(head -n 5 "$KH_W/partial")"
else
  note "SKIP full-target case: mount failed: $(cat "$KH_W/mount.err")"
fi

# ---- a cache directory that lands inside the region ----------------------------------
# relative, or through a symlink: refused with a clear error, and no files.db
# (plaintext path names) ever appears in the region
CS=$KH_T/cache-src
mkdir -p "$CS"
printf 'name of a secret file\n' >"$CS/secret-name.txt"
ln -s "$KEYHOLD_REGION/accounts" "$KH_T/cache-link"
for spelling in rel link dotdot; do
  case $spelling in
  rel) CD=$(basename "$KEYHOLD_REGION")/cache ;;
  link) CD=cache-link/cache ;;
  dotdot) CD=$KH_T/not-yet/../$(basename "$KEYHOLD_REGION")/cache ;;
  esac
  (cd "$KH_T" && KEYHOLD_CACHE_DIR=$CD "$KEYHOLD" backup "$CS" >"$OUT" 2>"$ERR")
  RC=$?
  assert_rc 1 "cache inside the region ($spelling): backup"
  assert_grep -F "may not be inside the region" "$ERR" "cache inside the region ($spelling): message"
  [ -z "$(find "$KEYHOLD_REGION" -name 'files.db*')" ] || fail "cache inside the region ($spelling): files.db in the region"
  [ ! -e "$KEYHOLD_REGION/cache" ] || fail "cache inside the region ($spelling): a cache directory was made in the region"
done
assert_absent "$KH_T/not-yet" "cache inside the region: nothing created while checking"
rm "$KH_T/cache-link"

pass
