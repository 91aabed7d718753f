#!/bin/sh
# Passcodes: wrong ones fail cleanly and change nothing; passcode change;
# clear errors for a missing region, a non-region directory, an empty
# passcode file; init refuses a non-empty non-region directory.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
SRC=$KH_T/src
make_tree "$SRC" nofifo
backup_id "$SRC"
S1=$SNAP
region_state() { (cd "$KEYHOLD_REGION" && find . -printf '%y %s %p\n' | sort && find . -type f -exec sha256sum {} + | sort); }

# ---- wrong passcode ----------------------------------------------------------
printf 'not the passcode\n' >"$KH_T/wrong"
region_state >"$KH_W/state0"
for verb in "snapshots" "backup $SRC" "check" "prune" "forget $S1" "ls $S1"; do
  # shellcheck disable=SC2086
  khr --passcode-file "$KH_T/wrong" $verb
  assert_rc 1 "$verb with a wrong passcode"
  assert_eq "$(cat "$ERR")" "keyhold: open account: wrong passcode" "$verb with a wrong passcode: message"
  [ ! -s "$OUT" ] || fail "$verb with a wrong passcode printed on stdout"
done
khr --passcode-file "$KH_T/wrong" restore "$S1" --target "$KH_T/rt/wrong"
assert_rc 1 "restore with a wrong passcode"
assert_grep 'wrong passcode' "$ERR" "restore with a wrong passcode"
if [ -e "$KH_T/rt/wrong" ]; then
  [ -z "$(find "$KH_T/rt/wrong" ! -type d)" ] || fail "restore with a wrong passcode wrote files"
fi
region_state >"$KH_W/state1"
cmp -s "$KH_W/state0" "$KH_W/state1" || { diff "$KH_W/state0" "$KH_W/state1" >&2; fail "commands with a wrong passcode changed the region"; }
# --passcode-file wins over KEYHOLD_PASSCODE_FILE
KEYHOLD_PASSCODE_FILE=$KH_T/wrong khr --passcode-file "$KH_T/passcode" snapshots
assert_ok "--passcode-file overrides KEYHOLD_PASSCODE_FILE"

# ---- passcode file format -----------------------------------------------------
printf 'correct horse battery staple\r\n' >"$KH_T/crlf"
khr --passcode-file "$KH_T/crlf" snapshots
assert_ok "passcode file with CRLF"
printf 'correct horse battery staple' >"$KH_T/nonl"
khr --passcode-file "$KH_T/nonl" snapshots
assert_ok "passcode file without a newline"
printf 'correct horse battery staple\nsecond line\n' >"$KH_T/twolines"
khr --passcode-file "$KH_T/twolines" snapshots
assert_ok "only the first line of a passcode file counts"
printf 'correct horse battery staple \n' >"$KH_T/trailing-space"
khr --passcode-file "$KH_T/trailing-space" snapshots
assert_rc 1 "a trailing space is part of the passcode"
: >"$KH_T/empty"
khr --passcode-file "$KH_T/empty" snapshots
assert_fail "empty passcode file"
assert_grep 'passcode' "$ERR" "empty passcode file: message mentions the passcode"
assert_grep 'empty' "$ERR" "empty passcode file: message says it is empty"
printf '\n' >"$KH_T/emptyline"
khr --passcode-file "$KH_T/emptyline" snapshots
assert_fail "passcode file with an empty first line"
assert_grep 'passcode' "$ERR" "empty first line: message"
head -c 2000 /dev/zero | tr '\0' x >"$KH_T/long"
khr --passcode-file "$KH_T/long" snapshots
assert_fail "passcode longer than 1024 bytes"
assert_grep 'passcode' "$ERR" "long passcode: message"
khr --passcode-file "$KH_T/does-not-exist" snapshots
assert_fail "missing passcode file"
assert_grep -F "does-not-exist" "$ERR" "missing passcode file: message names the file"
KEYHOLD_PASSCODE_FILE='' run "$KEYHOLD" snapshots </dev/null
assert_fail "no passcode at all"
assert_grep -F "keyhold: no passcode: use --passcode-file or KEYHOLD_PASSCODE_FILE" "$ERR" "no passcode message"

# ---- passcode change ---------------------------------------------------------
printf 'a brand new passcode\n' >"$KH_T/new"
khr passcode change --new-passcode-file "$KH_T/new" --kdf-memory 8 --kdf-ops 1
assert_ok "passcode change"
assert_eq "$(cat "$OUT")" "passcode changed" "passcode change output"
if grep -r -a -q -F "a brand new passcode" "$KEYHOLD_REGION" "$KH_T/state"; then fail "new passcode stored in the clear"; fi
khr snapshots
assert_rc 1 "old passcode after change"
assert_grep 'wrong passcode' "$ERR" "old passcode after change"
khr --passcode-file "$KH_T/new" snapshots --json
assert_ok "new passcode after change"
json_check "$OUT" "[s['id'] for s in d] == ['$S1']" "snapshots readable with the new passcode"
KEYHOLD_PASSCODE_FILE=$KH_T/new
restore_and_compare "$S1" "$SRC" "restore with the new passcode"
backup_id "$SRC"
# via KEYHOLD_NEW_PASSCODE_FILE, with --json
printf 'third passcode\n' >"$KH_T/third"
KEYHOLD_NEW_PASSCODE_FILE=$KH_T/third khr passcode change --json --kdf-memory 8 --kdf-ops 1
assert_ok "passcode change via KEYHOLD_NEW_PASSCODE_FILE"
json_check "$OUT" "d == {'passcode_changed': True, 'account': '$ACCOUNT'}" "passcode change --json"
khr snapshots
assert_rc 1 "second passcode after the second change"
KEYHOLD_PASSCODE_FILE=$KH_T/third
khr check --read-data
assert_ok "check with the third passcode"
# a wrong current passcode changes nothing
printf 'fourth\n' >"$KH_T/fourth"
khr --passcode-file "$KH_T/wrong" passcode change --new-passcode-file "$KH_T/fourth"
assert_rc 1 "passcode change with a wrong current passcode"
khr --passcode-file "$KH_T/fourth" snapshots
assert_rc 1 "a failed passcode change must not install the new passcode"
khr snapshots
assert_ok "current passcode still works after a failed change"
# an empty new passcode is refused and changes nothing
khr passcode change --new-passcode-file "$KH_T/empty"
assert_fail "passcode change to an empty passcode"
khr snapshots
assert_ok "passcode still works after a refused change"

# ---- interrupted passcode changes -------------------------------------------
# A change killed after storing its new wrap and before retiring the old ones
# leaves both.  Twenty such runs (more than the 16 wraps once read): every
# passcode so far must still open the account, and the next complete change
# must leave exactly one passcode wrap (the key service's wrap stays).
KEYS=$(account_dir)/keys
cp "$KH_T/third" "$KH_T/pc0"
i=1
while [ $i -le 20 ]; do
  printf 'interrupted passcode %d\n' $i >"$KH_T/pc$i"
  rm -rf "$KH_W/keys.before"
  cp -a "$KEYS" "$KH_W/keys.before"
  khr --passcode-file "$KH_T/pc$((i - 1))" passcode change --new-passcode-file "$KH_T/pc$i" --kdf-memory 8 --kdf-ops 1
  assert_ok "passcode change $i"
  cp -a "$KH_W/keys.before/." "$KEYS/"   # as if killed before the old wraps went
  i=$((i + 1))
done
assert_eq "$(find "$KEYS" -type f | wc -l)" 22 "21 passcode wraps and the key service's wrap"
i=0
while [ $i -le 20 ]; do
  khr --passcode-file "$KH_T/pc$i" snapshots
  assert_ok "passcode $i of the interrupted changes still opens the account"
  i=$((i + 1))
done
printf 'after the interruptions\n' >"$KH_T/final"
khr --passcode-file "$KH_T/pc7" passcode change --new-passcode-file "$KH_T/final" --kdf-memory 8 --kdf-ops 1
assert_ok "a complete passcode change after interrupted ones"
assert_eq "$(find "$KEYS" -type f | wc -l)" 2 "one passcode wrap and the key service's wrap left"
i=0
while [ $i -le 20 ]; do
  khr --passcode-file "$KH_T/pc$i" snapshots
  assert_rc 1 "old passcode $i after the complete change"
  assert_eq "$(cat "$ERR")" "keyhold: open account: wrong passcode" "old passcode $i: message"
  i=$((i + 1))
done
KEYHOLD_PASSCODE_FILE=$KH_T/final
khr snapshots --json
assert_ok "the final passcode opens the account"
json_check "$OUT" "len(d) == 2" "both snapshots readable with the final passcode"

# ---- regions that are not there or not regions ----------------------------
khr --region "$KH_T/no-region" snapshots
assert_fail "missing region directory"
assert_grep -F "$KH_T/no-region" "$ERR" "missing region: message names the directory"
assert_absent "$KH_T/no-region" "a command other than init created the region"
mkdir -p "$KH_T/not-a-region/stuff"
printf 'hello\n' >"$KH_T/not-a-region/file"
khr --region "$KH_T/not-a-region" snapshots
assert_fail "a directory that is not a region"
assert_grep 'region' "$ERR" "non-region directory: message mentions the region"
khr --region "$KH_T/not-a-region" backup "$SRC"
assert_fail "backup into a directory that is not a region"
assert_eq "$(find "$KH_T/not-a-region" | sort | tr '\n' ' ')" "$KH_T/not-a-region $KH_T/not-a-region/file $KH_T/not-a-region/stuff " "the non-region directory was changed"
khr --region "$KH_T/not-a-region" init --kdf-memory 8 --kdf-ops 1
assert_fail "init into a non-empty non-region directory"
assert_eq "$(find "$KH_T/not-a-region" | sort | tr '\n' ' ')" "$KH_T/not-a-region $KH_T/not-a-region/file $KH_T/not-a-region/stuff " "init changed a non-region directory"
# init into a missing and into an empty directory works; an empty passcode is refused
khr --region "$KH_T/r-empty" --passcode-file "$KH_T/empty" init --kdf-memory 8 --kdf-ops 1
assert_fail "init with an empty passcode"
[ ! -e "$KH_T/r-empty/keyhold-region" ] || fail "init with an empty passcode created a region"
mkdir -p "$KH_T/r-emptydir"
khr --region "$KH_T/r-emptydir" init --kdf-memory 8 --kdf-ops 1
assert_ok "init into an empty directory"
assert_exists "$KH_T/r-emptydir/keyhold-region" "init into an empty directory"
khr --region "$KH_T/r-new/sub" init --kdf-memory 8 --kdf-ops 1 --json
assert_ok "init into a missing directory"
json_check "$OUT" "d['region'] == 'local' and len(d['account']) == 32 and d['path'] == '$KH_T/r-new/sub'" "init --json"
# no region given at all
KEYHOLD_REGION='' khr snapshots
assert_rc 2 "no region given (a missing required option is a usage error)"
assert_grep -F "keyhold: no region: use --region DIR|URL or KEYHOLD_REGION" "$ERR" "no region given: message"
KEYHOLD_REGION='' khr init --kdf-memory 8 --kdf-ops 1
assert_rc 2 "init without a region"
assert_grep 'region' "$ERR" "no region: message"

pass
