#!/bin/sh
# Choosing what to back up (issue 8): --exclude / --iexclude and their
# files, --exclude-caches, --exclude-if-present, --exclude-larger-than,
# --one-file-system, --files-from, --files-from-verbatim, and exact usage
# errors.  Each case asserts on the paths the snapshot holds (ls --json).
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
S=$KH_T/data

# snap_paths SNAP: the snapshot's paths below $S, relative, sorted, one a
# line (a newline inside a name is shown as \n) -> $KH_W/got
snap_paths() {
  khr ls --json "$1"
  assert_ok "ls --json $1"
  python3 -c '
import json, sys
s = sys.argv[2]
out = []
for l in open(sys.argv[1], "rb").read().splitlines():
    p = json.loads(l)["path"]
    if p.startswith(s + "/"):
        out.append(p[len(s) + 1:].replace("\n", "\\n"))
print("\n".join(sorted(out)))
' "$OUT" "$S" >"$KH_W/got" || fail "snap_paths $1"
}

# expect_paths WHAT PATH...: the last snap_paths is exactly these paths
expect_paths() {
  ep_what=$1
  shift
  printf '%s\n' "$@" | sort >"$KH_W/want"
  if ! cmp -s "$KH_W/want" "$KH_W/got"; then
    diff "$KH_W/want" "$KH_W/got" >&2
    fail "$ep_what: wrong paths in the snapshot (- expected, + got)"
  fi
}

# sel WHAT EXPECTED-PATHS... -- BACKUP-ARGS...: back up with the args, check
sel() {
  sel_what=$1
  shift
  sel_want=""
  : >"$KH_W/selwant"
  while [ "$1" != -- ]; do printf '%s\n' "$1" >>"$KH_W/selwant"; shift; done
  shift
  backup_id "$@"
  snap_paths "$SNAP"
  sort "$KH_W/selwant" >"$KH_W/want"
  if ! cmp -s "$KH_W/want" "$KH_W/got"; then
    diff "$KH_W/want" "$KH_W/got" >&2
    fail "$sel_what: wrong paths in the snapshot (- expected, + got)"
  fi
}

mkdir -p "$S/src/sub" "$S/docs" "$S/build/obj" "$S/Photos"
printf 'main\n' >"$S/src/main.c"
printf 'obj\n' >"$S/src/main.o"
printf 'deep\n' >"$S/src/sub/x.o"
printf 'keep\n' >"$S/src/sub/keep.o"
printf 'readme\n' >"$S/docs/README"
printf 'o\n' >"$S/build/obj/a.o"
printf 'jpg\n' >"$S/Photos/A.JPG"
printf 'jpg\n' >"$S/Photos/b.jpg"
printf 'png\n' >"$S/Photos/c.png"
ALL="Photos Photos/A.JPG Photos/b.jpg Photos/c.png build build/obj build/obj/a.o docs docs/README src src/main.c src/main.o src/sub src/sub/keep.o src/sub/x.o"

# ---- patterns ---------------------------------------------------------------
# shellcheck disable=SC2086
sel "no excludes" $ALL -- "$S"
sel "unanchored glob at any depth" \
  Photos Photos/A.JPG Photos/b.jpg Photos/c.png build docs docs/README src src/main.c src/sub -- \
  --exclude '*.o' --exclude obj "$S"
sel "anchored pattern" \
  Photos Photos/A.JPG Photos/b.jpg Photos/c.png build build/obj build/obj/a.o docs docs/README src src/main.c src/main.o -- \
  --exclude "$S/src/sub" "$S"
sel "an anchored pattern is not matched at depth" $ALL -- --exclude /sub --exclude /main.o "$S"
sel "** spans components" \
  Photos Photos/A.JPG Photos/b.jpg Photos/c.png build build/obj docs docs/README src src/main.c src/sub src/sub/keep.o -- \
  --exclude "$S/**/*.o" --exclude '!keep.o' "$S"
sel "re-include after the parent's content is excluded" \
  Photos Photos/c.png build docs src src/main.c src/main.o src/sub src/sub/keep.o src/sub/x.o -- \
  --exclude "$S/*/*" --exclude "!$S/src" --exclude "!$S/src/*" --exclude "!*.png" "$S"
sel "the last matching pattern wins" \
  Photos Photos/A.JPG Photos/b.jpg Photos/c.png build build/obj docs docs/README src src/main.c src/sub -- \
  --exclude '!*.o' --exclude '*.o' "$S"
sel "case-sensitive --exclude" \
  Photos Photos/A.JPG Photos/c.png build build/obj build/obj/a.o docs docs/README src src/main.c src/main.o src/sub src/sub/keep.o src/sub/x.o -- \
  --exclude '*.jpg' "$S"
sel "--iexclude folds case" \
  Photos Photos/c.png build build/obj build/obj/a.o docs docs/README src src/main.c src/main.o src/sub src/sub/keep.o src/sub/x.o -- \
  --iexclude '*.jpg' "$S"
sel "[...] classes and ?" \
  Photos Photos/A.JPG Photos/b.jpg build build/obj build/obj/a.o docs docs/README src src/main.c src/main.o src/sub src/sub/keep.o src/sub/x.o -- \
  --exclude '[c-d].p?g' "$S"
sel "a path given on the command line is excluded too" \
  docs docs/README -- --exclude src "$S/src" "$S/docs"

# exclude files: comments, blank lines, surrounding blanks, no $VAR expansion
cat >"$KH_W/ex" <<'EOT'
# object files
*.o

   build   
$HOME
EOT
mkdir -p "$S/\$HOME"
printf 'x\n' >"$S/\$HOME/f"
sel "--exclude-file" \
  Photos Photos/A.JPG Photos/b.jpg Photos/c.png docs docs/README src src/main.c src/sub -- \
  --exclude-file "$KH_W/ex" "$S"
printf '*.JPG\n' >"$KH_W/iex"
sel "--iexclude-file, in order with --exclude" \
  Photos Photos/c.png docs docs/README src src/main.c src/sub src/sub/keep.o -- \
  --exclude-file "$KH_W/ex" --iexclude-file "$KH_W/iex" --exclude '!keep.o' --exclude '\$HOME' "$S"
rm -r "$S/\$HOME"

# ---- tags, sizes, file systems ---------------------------------------------
mkdir -p "$S/cache/d" "$S/badcache" "$S/marked/d"
printf 'Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n' >"$S/cache/CACHEDIR.TAG"
printf 'c\n' >"$S/cache/d/blob"
printf 'Signature: 8a477f597d28d172789f06886806bc5\n' >"$S/badcache/CACHEDIR.TAG"
printf 'c\n' >"$S/badcache/blob"
: >"$S/marked/.nobackup"
printf 'm\n' >"$S/marked/d/file"
sel "--exclude-caches keeps the tag, skips a valid cache's content" \
  Photos Photos/A.JPG Photos/b.jpg Photos/c.png docs docs/README \
  badcache badcache/CACHEDIR.TAG badcache/blob cache cache/CACHEDIR.TAG marked marked/.nobackup marked/d marked/d/file -- \
  --exclude-caches --exclude src --exclude build "$S"
sel "--exclude-if-present" \
  Photos Photos/A.JPG Photos/b.jpg Photos/c.png docs docs/README \
  cache cache/CACHEDIR.TAG cache/d cache/d/blob marked marked/.nobackup -- \
  --exclude-if-present .nobackup --exclude-if-present missing --exclude src --exclude build --exclude badcache "$S"
rm -r "$S/cache" "$S/badcache" "$S/marked"

mkdir -p "$S/big"
head -c 2048 /dev/zero >"$S/big/2k"
head -c 2049 /dev/zero >"$S/big/2k1"
head -c 3000000 /dev/zero >"$S/big/3m"
sel "--exclude-larger-than 2K" big big/2k -- --exclude-larger-than 2K "$S/big"
sel "--exclude-larger-than 2m" big big/2k big/2k1 -- --exclude-larger-than 2m "$S/big"
sel "--exclude-larger-than on a path given" big -- --exclude-larger-than 1k "$S/big" "$S/big/2k1"
rm -r "$S/big"

# --one-file-system: a mount point below the path is kept, empty
if [ "$(stat -c %d /dev)" != "$(stat -c %d /dev/shm)" ]; then
  khr backup -x /dev
  [ "$RC" -eq 0 ] || [ "$RC" -eq 3 ] || fail "backup -x /dev: exit $RC"
  SNAP=$(tail -n 1 "$OUT")
  khr ls --json "$SNAP" /dev/shm
  assert_ok "ls /dev/shm"
  ndjson_check "$OUT" "[x['path'] for x in d] == ['/dev/shm'] and d[0]['type'] == 'dir'" \
    "-x: /dev/shm is in the snapshot and empty"
  khr ls --json "$SNAP" /dev/null
  assert_ok "-x: /dev/null (same file system) is in the snapshot"
else
  note "/dev/shm is not a mount point: --one-file-system not exercised"
fi

# ---- path lists ---------------------------------------------------------------
cd "$S" || fail "cd $S"
cat >"$KH_W/list" <<EOT
# the sources
src/main.c

  # an indented comment
$S/docs
Photos/b.jpg
EOT
sel "--files-from: relative to the working directory, comments ignored" \
  Photos Photos/b.jpg docs docs/README src src/main.c -- --files-from "$KH_W/list"
nl='
'
mkdir -p "$S/odd"
printf 'n\n' >"$S/odd/a${nl}b"
printf ' \n' >"$S/odd/# x "
printf "$S/odd/a\nb\000odd/# x \000" >"$KH_W/nul"
sel "--files-from-verbatim: NUL-separated, every byte kept" \
  'odd' 'odd/# x ' 'odd/a\nb' -- --files-from-verbatim "$KH_W/nul"
sel "--files-from with PATH arguments" Photos Photos/b.jpg docs docs/README src src/main.c src/sub src/sub/keep.o src/sub/x.o -- \
  --files-from "$KH_W/list" --exclude main.o src/sub src/main.o
khr restore "$SNAP" --target "$KH_T/r1"
assert_ok "restore the files-from snapshot"
cmp "$S/src/main.c" "$KH_T/r1$S/src/main.c" || fail "files-from: restored content"
cd "$KH_T" || fail "cd"

# ---- --tag and --host: in the snapshot, shown by snapshots -----------------
khr snapshots --json
assert_ok "snapshots --json"
json_check "$OUT" "all(x['tags'] == [] for x in d)" "snapshots without tags show an empty list"
backup_id --tag daily --tag 'work,ünï code' --tag daily --host other.example "$S/docs"
TAGGED=$SNAP
khr snapshots --json
assert_ok "snapshots --json"
json_check "$OUT" "[(x['tags'], x['host']) for x in d if x['id'] == '$TAGGED'] == [(['daily', 'work', 'ünï code', 'daily'], 'other.example')]" \
  "tags in the order given and the --host override"
json_check "$OUT" "sum(1 for x in d if x['tags']) == 1" "only the tagged snapshot has tags"
khr snapshots
assert_ok "snapshots"
assert_grep '^ID +TIME +HOST +TAGS +PATHS$' "$OUT" "snapshots: TAGS column"
assert_grep "^$(printf %.8s "$TAGGED") .* other\.example +daily,work,ünï code,daily +$S/docs\$" "$OUT" "snapshots: the tagged row"
restore_and_compare "$TAGGED" "$S/docs" "tagged snapshot"
for bad in "--tag ''" "--tag a,,b" "--tag ," "--host ''"; do
  eval "khr backup $bad \"\$S\""
  assert_rc 2 "backup $bad"
done

# ---- --dry-run: counts, writes nothing ---------------------------------------
region_state() { find "$KEYHOLD_REGION" -printf '%p %y %s %T@\n' | sort; }
rand_file "$S/docs/new" 300
region_state >"$KH_W/r0"
khr snapshots --json
assert_ok "snapshots before the dry run"
cp "$OUT" "$KH_W/snaps0"
khr backup --dry-run --json "$S/docs"
assert_ok "backup --dry-run --json"
json_check "$OUT" "d['id'] is None and d['dry_run'] is True and d['files'] == 2 and d['bytes_new'] >= 300 * 1024 and d['bytes_new_stored'] >= 300 * 1024 and d['blobs_new'] >= 1" \
  "dry run: counts the new file"
khr backup -n "$S/docs"
assert_ok "backup -n"
assert_grep '^new: .*would be stored as' "$OUT" "dry run: summary"
assert_eq "$(tail -n 1 "$OUT")" "dry run: nothing was written" "dry run: last line"
region_state >"$KH_W/r1"
if ! cmp -s "$KH_W/r0" "$KH_W/r1"; then
  diff "$KH_W/r0" "$KH_W/r1" >&2
  fail "dry run changed the region"
fi
# the cache was left alone too: a real backup now reads and stores the file
khr backup --json "$S/docs"
assert_ok "backup after the dry runs"
json_check "$OUT" "d['dry_run'] is False and d['bytes_new'] >= 300 * 1024 and d['bytes_read'] >= 300 * 1024" \
  "the real backup stores what the dry run only counted"
DOCS=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$OUT")
restore_and_compare "$DOCS" "$S/docs" "backup after a dry run"
rm "$S/docs/new"

# ---- --stdin ---------------------------------------------------------------------
rand_file "$KH_W/stdin.bin" 3000
printf 'tail without newline' >>"$KH_W/stdin.bin"
khr backup --stdin --stdin-filename dumps/db.sql --tag db <"$KH_W/stdin.bin"
assert_ok "backup --stdin (from a file)"
SIN=$(tail -n 1 "$OUT")
# a pipe, which cannot be read with pread
cat "$KH_W/stdin.bin" | "$KEYHOLD" backup --json --stdin >"$OUT" 2>"$ERR"
RC=$?
assert_ok "backup --stdin (from a pipe)"
json_check "$OUT" "d['files'] == 1 and d['bytes'] == $(stat -c %s "$KH_W/stdin.bin")" "stdin: one file of the input's size"
SPIPE=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["id"])' "$OUT")
khr snapshots --json
json_check "$OUT" "[(x['paths'], x['tags']) for x in d if x['id'] in ('$SIN', '$SPIPE')] == [(['/dumps/db.sql'], ['db']), (['/stdin'], [])]" \
  "stdin: snapshot paths and tags"
khr ls --json "$SIN"
assert_ok "ls stdin snapshot"
ndjson_check "$OUT" "[(x['path'], x['type']) for x in d] == [('/dumps', 'dir'), ('/dumps/db.sql', 'file')] and d[1]['mode'] == 0o644 and d[0]['mode'] == 0o755" \
  "stdin: the file and its directory"
khr restore "$SIN" --target "$KH_T/rs"
assert_ok "restore the stdin snapshot"
cmp "$KH_W/stdin.bin" "$KH_T/rs/dumps/db.sql" || fail "stdin: restored bytes differ"
khr restore "$SPIPE" --target "$KH_T/rp"
assert_ok "restore the piped stdin snapshot"
cmp "$KH_W/stdin.bin" "$KH_T/rp/stdin" || fail "stdin (pipe): restored bytes differ"
khr backup --stdin --stdin-filename empty </dev/null
assert_ok "backup --stdin of nothing"
khr restore "$(tail -n 1 "$OUT")" --target "$KH_T/re"
assert_ok "restore the empty stdin snapshot"
[ -f "$KH_T/re/empty" ] && [ ! -s "$KH_T/re/empty" ] || fail "stdin: an empty input restores as an empty file"
for bad in "--stdin $S" "--stdin --files-from $KH_W/list" "--stdin-filename x $S" \
           "--stdin --stdin-filename a/../b" "--stdin --stdin-filename a/" "--stdin --stdin-filename /"; do
  # shellcheck disable=SC2086
  khr backup $bad </dev/null
  assert_rc 2 "backup $bad"
done

# ---- usage errors: exit 2, nothing written ------------------------------------
ls -R "$(account_dir)" >"$KH_W/before"
for bad in "--exclude-larger-than 12Q" "--exclude-larger-than 0" "--exclude-larger-than K" \
           "--exclude-larger-than 99999999999999999999" "--exclude a[b" "--iexclude x\\" \
           "--exclude-if-present a/b" "--exclude !" "--files-from $KH_W/missing"; do
  # shellcheck disable=SC2086
  khr backup $bad "$S"
  case $bad in
  --files-from*) assert_fail "backup $bad" ;;
  *) assert_rc 2 "backup $bad" ;;
  esac
  assert_grep '^keyhold: backup: ' "$ERR" "backup $bad: the message"
done
printf '*.o\n[oops\n' >"$KH_W/badex"
khr backup --exclude-file "$KH_W/badex" "$S"
assert_rc 2 "bad pattern in an exclude file"
assert_grep -F "badex:2: unclosed [" "$ERR" "bad exclude file line: file and line named"
: >"$KH_W/empty"
khr backup --files-from "$KH_W/empty"
assert_rc 2 "an empty --files-from list and no PATH"
# standard input cannot carry both the passcode and the data or the list
run "$KEYHOLD" --passcode-file - backup --stdin <"$KH_W/stdin.bin"
assert_rc 2 "--passcode-file - with --stdin"
assert_grep -F "standard input cannot carry both the passcode and the data (--stdin)" "$ERR" \
  "--passcode-file - with --stdin: message"
printf '%s\n' "$S" | KEYHOLD_PASSCODE_FILE=- "$KEYHOLD" backup --files-from - >"$OUT" 2>"$ERR"
RC=$?
assert_rc 2 "KEYHOLD_PASSCODE_FILE=- with --files-from -"
assert_grep -F "standard input cannot carry both the passcode and the list of paths" "$ERR" \
  "KEYHOLD_PASSCODE_FILE=- with --files-from -: message"
ls -R "$(account_dir)" >"$KH_W/after"
cmp -s "$KH_W/before" "$KH_W/after" || fail "a usage error wrote to the account"

pass
