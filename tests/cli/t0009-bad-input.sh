#!/bin/sh
# A full region and a full restore target (tmpfs mounts of 3 MiB): clear
# errors, nothing damaged.  Needs root to mount; the unreadable-source and
# missing-path cases are t0012 and t0013.
. "$KH_SRCDIR/tests/cli/lib.sh"

[ "$(id -u)" -eq 0 ] || { note "not root: cannot mount a small tmpfs"; exit 77; }
command -v mount >/dev/null || fail "mount is missing (package mount; make test-deps installs it)"

kh_init

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
  fail "mount of a tmpfs as root failed: $(cat "$KH_W/mount.err")"
fi

# ---- a full restore target ------------------------------------------------------------
S1=$KH_T/s1
make_tree "$S1" nofifo
backup_id "$S1"
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
  fail "mount of a tmpfs as root failed: $(cat "$KH_W/mount.err")"
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
