# Shared helpers for the CLI scenario tests (tests/cli/tNNNN-*.sh).
# Sourced with:  . "$KH_SRCDIR/tests/cli/lib.sh"
#
# Environment: KEYHOLD (the binary), KH_SRCDIR (source root), optional
# KH_BUILDDIR; KH_KEEP=1 keeps the scratch directory for post-mortems.
#
# Conventions: no `set -e`; every step that matters is checked explicitly
# and a failed check prints FAIL: <what>, the last command's output and
# exits 1.

set -u
: "${KEYHOLD:?set KEYHOLD to the keyhold binary}"
: "${KH_SRCDIR:?set KH_SRCDIR to the source root}"
case $KEYHOLD in /*) ;; *) KEYHOLD=$(pwd)/$KEYHOLD ;; esac
[ -x "$KEYHOLD" ] || { echo "FAIL: KEYHOLD=$KEYHOLD is not executable" >&2; exit 1; }

KH_TEST=$(basename "$0" .sh)
LC_ALL=C
export LC_ALL
TZ=UTC
export TZ

# Scratch space: $KH_TEST_TMPDIR, else $TMPDIR, else /dev/shm when it is a
# writable tmpfs (the scenarios write and restore a few hundred MB; on a disk
# the fsyncs of parallel tests make each other crawl), else /tmp.
if [ -n "${KH_TEST_TMPDIR:-}" ]; then
  kh_base=$KH_TEST_TMPDIR
elif [ -n "${TMPDIR:-}" ]; then
  kh_base=$TMPDIR
elif [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  kh_base=/dev/shm
else
  kh_base=/tmp
fi
KH_T=$(mktemp -d "$kh_base/kh-$KH_TEST.XXXXXX") || { echo "FAIL: mktemp in $kh_base" >&2; exit 1; }
KH_T=$(cd "$KH_T" && pwd -P)
KH_BGPIDS=""
KH_MOUNTS=""

kh_cleanup() {
  rc=$?
  for p in $KH_BGPIDS; do
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  for m in $KH_MOUNTS; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  if [ "${KH_KEEP:-}" = 1 ]; then
    echo "# kept $KH_T" >&2
  else
    chmod -R u+rwX "$KH_T" 2>/dev/null
    rm -rf "$KH_T"
  fi
  exit "$rc"
}
trap kh_cleanup EXIT
trap 'exit 130' INT TERM HUP

HOME=$KH_T/home
KEYHOLD_REGION=$KH_T/region
KEYHOLD_PASSCODE_FILE=$KH_T/passcode
KEYHOLD_CACHE_DIR=$KH_T/state/cache
KEYHOLD_DEVICE_DIR=$KH_T/state/device
export HOME KEYHOLD_REGION KEYHOLD_PASSCODE_FILE KEYHOLD_CACHE_DIR KEYHOLD_DEVICE_DIR
unset KEYHOLD_ACCOUNT KEYHOLD_NEW_PASSCODE_FILE XDG_CACHE_HOME XDG_CONFIG_HOME
mkdir -p "$HOME" "$KH_T/state" "$KH_T/cp"
printf 'correct horse battery staple\n' >"$KEYHOLD_PASSCODE_FILE"
# Snapshots record the metadata of the ancestors of a backed-up path; /tmp
# and the like change whenever other tests run.  KH_NANC is how many tree
# blobs may be new because of that (the root, each ancestor of $KH_T, $KH_T).
KH_NANC=$(($(printf '%s' "$KH_T" | tr -cd / | wc -c) + 2))

# scratch files and restore targets live in their own directories, so that
# the test's top directory (an ancestor of every backed-up tree) does not
# change while a test runs
KH_W=$KH_T/work
mkdir -p "$KH_W" "$KH_T/rt"
OUT=$KH_W/out
ERR=$KH_W/err
RC=0

# ---- reporting -----------------------------------------------------------

note() { printf '# %s\n' "$*" >&2; }

fail() {
  printf 'FAIL: %s: %s\n' "$KH_TEST" "$*" >&2
  if [ -s "$OUT" ]; then
    echo "--- stdout of the last command (head) ---" >&2
    head -n 30 "$OUT" >&2
  fi
  if [ -s "$ERR" ]; then
    echo "--- stderr of the last command (head) ---" >&2
    head -n 30 "$ERR" >&2
  fi
  exit 1
}

pass() { printf 'PASS: %s\n' "$KH_TEST"; exit 0; }

# ---- running keyhold ---------------------------------------------------

# kh ARGS...: run keyhold directly (output not captured).
kh() { "$KEYHOLD" "$@"; }

# run CMD ARGS...: run anything, stdout -> $OUT, stderr -> $ERR, status -> $RC.
run() {
  "$@" >"$OUT" 2>"$ERR"
  RC=$?
  return 0
}

# khr ARGS...: run keyhold capturing output (see run).
khr() { run "$KEYHOLD" "$@"; }

assert_rc() { # EXPECTED WHAT
  [ "$RC" -eq "$1" ] || fail "$2: exit status $RC, expected $1"
}
assert_ok() { assert_rc 0 "$1"; }
# assert_fail WHAT: exit status exactly 1, "failure" in docs/cli.md (usage
# errors are 2 and partial backups 3: assert those with assert_rc).
assert_fail() {
  [ "$RC" -lt 128 ] || fail "$1: died with signal $((RC - 128))"
  assert_rc 1 "$1"
}

# assert_grep [-F] PATTERN FILE WHAT (grep -E by default, case-insensitive)
assert_grep() {
  mode=-E
  if [ "$1" = -F ]; then mode=-F; shift; fi
  grep -qi $mode -- "$1" "$2" || fail "$3: '$1' not found in $(basename "$2")"
}
assert_no_grep() {
  mode=-E
  if [ "$1" = -F ]; then mode=-F; shift; fi
  if grep -qi $mode -- "$1" "$2"; then fail "$3: '$1' unexpectedly found in $(basename "$2")"; fi
}
assert_eq() { # ACTUAL EXPECTED WHAT
  [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
}
assert_exists() { [ -e "$1" ] || [ -L "$1" ] || fail "$2: $1 does not exist"; }
assert_absent() { if [ -e "$1" ] || [ -L "$1" ]; then fail "$2: $1 exists"; fi; }

# below DIR < FILE: keep only diff/ls lines about DIR and what is below it
below() {
  awk -v d="$1" '{ p = $0; sub(/^[-+MUT]    /, "", p); if (p == d || index(p, d "/") == 1) print }'
}

is_hex64() { printf '%s' "$1" | grep -Eqx '[0-9a-f]{64}'; }

# ---- accounts and snapshots ------------------------------------------------

# kh_init [ARGS...]: a new region/account with a fast KDF.  Sets ACCOUNT.
kh_init() {
  khr init --kdf-memory 8 --kdf-ops 1 "$@"
  assert_ok "keyhold init"
  assert_grep '^created account [0-9a-f]{32} in region ' "$OUT" "init output"
  ACCOUNT=$(sed -n 's/^created account \([0-9a-f]*\) .*/\1/p' "$OUT")
}

# backup_id PATH...: back up; fail unless exit 0; SNAP = the new id (last line).
backup_id() {
  khr backup "$@"
  assert_ok "backup $*"
  SNAP=$(tail -n 1 "$OUT")
  is_hex64 "$SNAP" || fail "backup: last stdout line is not a snapshot id: '$SNAP'"
}

# account_dir: the directory of the (only or selected) account.
account_dir() {
  if [ -n "${KEYHOLD_ACCOUNT:-}" ]; then
    echo "$KEYHOLD_REGION/accounts/$KEYHOLD_ACCOUNT"
  else
    echo "$KEYHOLD_REGION/accounts/$ACCOUNT"
  fi
}

# largest_pack [ACCOUNT_DIR]: path of the largest pack.
largest_pack() {
  d=${1:-$(account_dir)}
  find "$d/data" -type f -printf '%s %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-
}

# ---- trees ----------------------------------------------------------------

# rand_file PATH KIB: KIB KiB of random (incompressible) data.
rand_file() {
  head -c "$(($2 * 1024))" /dev/urandom >"$1" || fail "rand_file $1"
}

# make_tree DIR [nofifo]: the tricky sample tree.  Sets TRICKY_MARKER (a
# string that appears in a file's content and nowhere in the region if
# encryption works).  "nofifo" leaves out the FIFO: scenarios that are not
# about node types use it, so that one bug in restoring special files fails
# the tests about special files (t0001, t0003, t0010), not every scenario.
make_tree() {
  d=$1
  mt_fifo=${2:-fifo}
  mkdir -p "$d" || fail "make_tree: mkdir $d"
  TRICKY_MARKER="KHMARKER-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  mkdir -p "$d/docs/sub dir" "$d/empty dir" "$d/ünïcødé ✓" "$d/bin" "$d/big" "$d/dedup"
  printf 'the secret marker %s lives here\n' "$TRICKY_MARKER" >"$d/docs/marker.txt"
  printf 'plain text\n' >"$d/docs/sub dir/file with spaces.txt"
  printf 'line one\nline two\n' >"$d/docs/$(printf 'new\nline')"
  printf 'latin-1 name\n' >"$d/docs/$(printf 'caf\351')"
  printf 'dash\n' >"$d/docs/-leading-dash"
  printf 'unicode\n' >"$d/ünïcødé ✓/файл 名前.txt"
  printf 'back\\slash\n' >"$d/docs/back\\slash"
  : >"$d/docs/empty file"
  ln -s "sub dir/file with spaces.txt" "$d/docs/link-rel"
  ln -s "/nonexistent/dangling target" "$d/docs/link-dangling"
  ln -s "../docs" "$d/bin/link-to-dir"
  printf 'hard linked content\n' >"$d/docs/hard1"
  ln "$d/docs/hard1" "$d/docs/hard2"
  ln "$d/docs/hard1" "$d/bin/hard3"
  # sparse: 8 MiB logical, 64 KiB of data at 4 MiB
  truncate -s 8M "$d/big/sparse.img"
  head -c 65536 /dev/urandom | dd of="$d/big/sparse.img" bs=65536 seek=64 conv=notrunc status=none
  # a few MiB of random data
  rand_file "$d/big/random.bin" 3072
  # shared content for dedup (2 MiB, three copies + a copy inside a bigger file)
  rand_file "$d/dedup/one" 2048
  cp "$d/dedup/one" "$d/dedup/two"
  cp "$d/dedup/one" "$d/docs/sub dir/three"
  # modes
  printf '#!/bin/sh\necho hi\n' >"$d/bin/tool"
  chmod 0755 "$d/bin/tool"
  printf 'private\n' >"$d/docs/private"
  chmod 0600 "$d/docs/private"
  printf 'setuid-ish\n' >"$d/bin/suid"
  chmod 04755 "$d/bin/suid" 2>/dev/null || chmod 0755 "$d/bin/suid"
  mkdir -p "$d/sticky"
  chmod 01777 "$d/sticky"
  chmod 0700 "$d/docs/sub dir"
  if [ "$mt_fifo" != nofifo ]; then
    mkfifo "$d/bin/fifo" || fail "make_tree: mkfifo"
    chmod 0666 "$d/bin/fifo"
    touch -h -d '2001-02-03 04:05:06.123456789' "$d/bin/fifo"
  fi
  # mtimes (files, symlinks, then directories bottom-up)
  touch -h -d '2001-02-03 04:05:06.123456789' "$d/docs/marker.txt" "$d/docs/link-rel" \
    "$d/docs/link-dangling" "$d/big/random.bin" "$d/docs/empty file"
  touch -d '1999-12-31 23:59:59' "$d/docs/hard1"
  touch -d '2020-06-15 12:00:00.5' "$d/bin/tool" "$d/big/sparse.img"
  find "$d" -depth -type d -exec touch -d '2010-10-10 10:10:10.101010101' {} + || fail "touch dirs"
}

# manifest DIR: one line per node, relative to DIR: type, mode, uid, gid,
# link count, size (not for dirs), mtime (ns), link target, path; then the
# sha256 of every regular file.  Newlines in names are mapped to \001 so
# each node is one line (enough to compare two trees).
manifest() {
  (
    cd "$1" || exit 1
    {
      find . ! -type d -printf '%y %m %U %G %n %s %T@ [%l] %p\0'
      find . -type d -printf '%y %m %U %G - - %T@ [] %p\0'
    } | tr '\n\0' '\001\n' | sort
    find . -type f -print0 | sort -z | xargs -0 -r sha256sum
  )
}

# assert_same_tree SRC COPY WHAT: manifests equal, hard links shared, sparse
# files still sparse.
assert_same_tree() {
  [ -d "$2" ] || fail "$3: $2 is not a directory"
  manifest "$1" >"$KH_W/m1" || fail "$3: manifest of $1"
  manifest "$2" >"$KH_W/m2" || fail "$3: manifest of $2"
  [ -s "$KH_W/m1" ] || fail "$3: empty manifest for $1"
  if ! cmp -s "$KH_W/m1" "$KH_W/m2"; then
    echo "--- manifest diff (source vs restored) ---" >&2
    diff "$KH_W/m1" "$KH_W/m2" | head -n 40 >&2
    fail "$3: restored tree differs from $1"
  fi
  # hard links: every group of source paths sharing an inode shares one in the copy
  (cd "$1" && find . -type f -links +1 -printf '%i %p\0' | tr '\n\0' '\001\n' | sort) >"$KH_W/hl"
  prev_ino="" prev_path=""
  while IFS= read -r line; do
    ino=${line%% *}
    p=$(printf '%s' "${line#* }" | tr '\001' '\n')
    if [ "$ino" = "$prev_ino" ]; then
      a=$(stat -c %i "$2/$prev_path") || fail "$3: stat $2/$prev_path"
      b=$(stat -c %i "$2/$p") || fail "$3: stat $2/$p"
      [ "$a" = "$b" ] || fail "$3: hard links $prev_path and $p were not restored as one inode"
    fi
    prev_ino=$ino prev_path=$p
  done <"$KH_W/hl"
  # sparse files stay sparse (allocated < half the logical size)
  (cd "$1" && find . -type f -size +1M -printf '%b %s %p\0' | tr '\n\0' '\001\n') >"$KH_W/sp"
  while IFS= read -r line; do
    blocks=${line%% *}
    rest=${line#* }
    size=${rest%% *}
    p=$(printf '%s' "${rest#* }" | tr '\001' '\n')
    if [ $((blocks * 512 * 2)) -lt "$size" ]; then
      assert_sparse "$2/$p" "$3"
    fi
  done <"$KH_W/sp"
  return 0
}

# assert_sparse FILE WHAT: allocated blocks < half the logical size.
assert_sparse() {
  sp=$(stat -c '%b %B %s' "$1") || fail "$2: stat $1"
  sp_b=${sp%% *} sp=${sp#* }
  sp_u=${sp%% *} sp_s=${sp#* }
  [ $((sp_b * sp_u * 2)) -lt "$sp_s" ] ||
    fail "$2: $1 is not sparse ($((sp_b * sp_u)) bytes allocated of $sp_s)"
}

# restore_and_compare SNAP SRC WHAT [EXPECTED]: restore SNAP into a fresh
# target and compare the copy of SRC there with EXPECTED (default: SRC).
KH_NREST=0
# restore_name NAME PATH TARGET: restore snapshot NAME into TARGET; when NAME
# is latest or latest~N, the newest of PATH's snapshots (--path PATH,
# docs/cli.md "Selecting snapshots").
restore_name() {
  case $1 in
  latest | latest~*) khr restore --path "$2" "$1" --target "$3" ;;
  *) khr restore "$1" --target "$3" ;;
  esac
}

restore_and_compare() {
  KH_NREST=$((KH_NREST + 1))
  tgt=$KH_T/rt/$KH_NREST
  rm -rf "$tgt"
  restore_name "$1" "$2" "$tgt"
  assert_ok "$3: restore $1"
  assert_same_tree "${4:-$2}" "$tgt$2" "$3"
  rm -rf "$tgt"
}

# tree_size DIR: bytes of all files under DIR (apparent sizes).
tree_size() { find "$1" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }

# json_check FILE EXPR WHAT: FILE parses as one JSON value `d`, or is the
# NDJSON stream of backup/restore --json (status and verbose_status objects,
# then the summary, which is `d`); python EXPR is true.
json_check() {
  python3 -c '
import json, sys
raw = open(sys.argv[1], "rb").read()
try:
    d = json.loads(raw)
except ValueError:
    lines = [json.loads(l) for l in raw.splitlines() if l.strip()]
    assert len(lines) > 1, "not JSON"
    assert all(x.get("message_type") in ("status", "verbose_status") for x in lines[:-1]), "stream: not status lines"
    d = lines[-1]
    assert d.get("message_type") == "summary", "stream: last line is not the summary"
ok = eval(sys.argv[2])
sys.exit(0 if ok else 1)
' "$1" "$2" || fail "$3: JSON check failed: $2"
}
# ndjson_check FILE EXPR WHAT: every line parses; python EXPR over list `d`.
ndjson_check() {
  python3 -c '
import json, sys
d = [json.loads(l) for l in open(sys.argv[1], "rb").read().splitlines() if l.strip()]
ok = eval(sys.argv[2])
sys.exit(0 if ok else 1)
' "$1" "$2" || fail "$3: NDJSON check failed: $2"
}

# flip_byte FILE OFFSET: invert one byte in place.
flip_byte() {
  python3 -c '
import sys
p, o = sys.argv[1], int(sys.argv[2])
with open(p, "r+b") as f:
    f.seek(o); b = f.read(1); f.seek(o); f.write(bytes([b[0] ^ 0xff]))
' "$1" "$2" || fail "flip_byte $1 $2"
}

# bg CMD...: start in the background, remember the pid in BGPID (killed on exit).
bg() {
  "$@" &
  BGPID=$!
  KH_BGPIDS="$KH_BGPIDS $BGPID"
}

# ---- damage ---------------------------------------------------------------

# human_path BYTES-AS-SHELL-STRING: the escaping docs/cli.md prescribes for
# paths in human output (\xNN for bytes that are not printable ASCII or
# valid UTF-8, \n for a newline).
KH_PY_ESC='
def esc(b):
    out, i = [], 0
    while i < len(b):
        c = b[i]
        if c == 0x0a:
            out.append("\\n"); i += 1; continue
        if 0x20 <= c < 0x7f:
            out.append(chr(c)); i += 1; continue
        if c >= 0x80:
            for n in (4, 3, 2):
                try:
                    s = b[i:i+n].decode("utf-8")
                    if len(s) == 1:
                        out.append(s); i += n; break
                except UnicodeDecodeError:
                    pass
            else:
                out.append("\\x%02x" % c); i += 1
            continue
        out.append("\\x%02x" % c); i += 1
    return "".join(out)
def jsonform(b):
    s = b.decode("utf-8", "surrogateescape")
    return "".join(chr(ord(ch) - 0xdc00) if 0xdc80 <= ord(ch) <= 0xdcff else ch for ch in s)
'

# verify_damaged_restore CHECK_JSON SNAP SRCPATH EXPECTED_DIR TARGET
# Restores SNAP into TARGET (fresh) and verifies against EXPECTED_DIR (what
# SRCPATH held when SNAP was made):
#  - every path `check --read-data --json` (CHECK_JSON) names as an error of
#    SNAP exists in the expected tree;
#  - everything in the target is exactly as it was (type, mode, owner, size,
#    mtime, link target, content);
#  - a file restore reports ("keyhold: error: ...PATH: ...") is absent and
#    was named by check (check may name more: it is conservative about a
#    truncated pack whose first blobs are still readable);
#  - a file that is absent was reported (or lies below a directory check
#    named as damaged); restore exits 1 if it reported a file, else 0.
# Sets NDAMAGED to the number of files (and damaged directories) not restored.
verify_damaged_restore() {
  rm -rf "$5"
  khr restore "$2" --target "$5"
  [ "$RC" -lt 128 ] || fail "restore $2 died with signal $((RC - 128))"
  NDAMAGED=$(python3 -c "$KH_PY_ESC"'
import hashlib, json, os, stat, sys
cj, snap, srcpath, expected, target, errf, rc = sys.argv[1:8]
rc = int(rc)
chk = json.load(open(cj, "rb"))
named = {f["path"] for f in chk["findings"]
         if f["level"] == "error" and f["snapshot"] == snap and f["path"]}
srcb = os.fsencode(srcpath)
exp = os.fsencode(expected)
tgt = os.fsencode(target)
def walk(root):
    out = [b""]
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            out.append(os.path.relpath(os.path.join(dp, n), root))
    return out
rels = walk(exp)
byjson = {jsonform(srcb + (b"/" + r if r else b"")): r for r in rels}
problems = []
bad = set()
anc = [jsonform(srcb[:i]) or "/" for i in range(1, len(srcb)) if srcb[i:i+1] == b"/"]
for p in named:
    if p in anc or p == "/":
        bad.add(b"")
    elif p not in byjson:
        problems.append("check named %r, which is not in the backed-up tree" % p)
    else:
        bad.add(byjson[p])
def is_bad(r):
    return any(r == b or (b == b"" or r.startswith(b + b"/")) for b in bad) if bad else False
def h(p):
    d = hashlib.sha256()
    with open(p, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            d.update(blk)
    return d.hexdigest()
def desc(p):
    st = os.lstat(p)
    d = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns]
    if not stat.S_ISDIR(st.st_mode):
        d += [st.st_size, st.st_nlink]
    if stat.S_ISLNK(st.st_mode):
        d.append(os.readlink(p))
    if stat.S_ISREG(st.st_mode):
        d.append(h(p))
    return d
err = open(errf, "rb").read().decode("utf-8", "replace").splitlines()
errlines = [l for l in err if l.startswith("keyhold: error: ")]
def reported(r):
    want = esc(srcb + b"/" + r) + ": "
    return any(want in l for l in errlines)
nrep = 0
for r in rels:
    e = exp + (b"/" + r if r else b"")
    t = tgt + srcb + (b"/" + r if r else b"")
    isdir = os.path.isdir(e) and not os.path.islink(e)
    rep = r != b"" and not isdir and reported(r)
    nrep += rep
    if rep and r not in bad:
        problems.append("restore reported %s, which check did not name" % esc(r))
    if os.path.lexists(t):
        if rep:
            problems.append("%s was reported as not restored but left in the target" % esc(r))
            continue
        de, dt = desc(e), desc(t)
        if de != dt:
            problems.append("%s differs from the original: %r vs %r" % (esc(r), de, dt))
    elif not rep and not is_bad(r):
        problems.append("%s is missing from the target (and not reported)" % esc(r))
    elif not rep and not isdir and not any(r.startswith(b + b"/") or b == b"" for b in bad):
        problems.append("%s is missing from the target and restore did not say so" % esc(r))
baddirs = [b for b in bad if b == b"" or os.path.isdir(exp + b"/" + b)]
if nrep and rc != 1:
    problems.append("restore exited %d although files were not restored (docs/cli.md: 1)" % rc)
if baddirs and rc != 1:
    problems.append("restore exited %d although a directory listing is damaged (docs/cli.md: 1)" % rc)
if not nrep and not baddirs and rc != 0:
    problems.append("restore exited %d although it reported no file" % rc)
for p in problems[:20]:
    print("  " + p, file=sys.stderr)
if problems:
    sys.exit(1)
print(nrep + len(baddirs))
' "$1" "$2" "$3" "$4" "$5" "$ERR" "$RC") || fail "restore of $2 after damage (see above)"
}

# ---- timing and big trees -------------------------------------------------------

# pause_holding_lock PID: SIGSTOP PID; succeeds only if it is then stopped
# (not already exited) and an account lock object exists, else resumes it
# and returns 1.
pause_holding_lock() {
  kill -STOP "$1" 2>/dev/null || return 1
  sleep 0.05
  ph_state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
  if [ "$ph_state" = T ] && ls "$(account_dir)/locks" 2>/dev/null | grep -Eqx '[0-9a-f]{32}'; then
    return 0
  fi
  kill -CONT "$1" 2>/dev/null
  return 1
}

# wait_lock PID: wait (at most 10 s) until the account has a lock object (a
# 32-hex name, not a temporary file of an atomic write) while PID runs;
# returns 1 if PID ended first.
wait_lock() {
  wl_dir=$(account_dir)/locks
  wl_n=0
  while ! ls "$wl_dir" 2>/dev/null | grep -Eqx '[0-9a-f]{32}'; do
    kill -0 "$1" 2>/dev/null || return 1
    wl_n=$((wl_n + 1))
    [ $wl_n -le 2000 ] || fail "no lock object appeared in 10 s"
    sleep 0.005
  done
  kill -0 "$1" 2>/dev/null
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# rand_below N: a random integer in [0, N)
rand_below() { echo $(($(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % $1)); }
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# big_tree DIR SEED [FIRST LAST]: 20 directories of 40 files of ~77 KiB
# (about 62 MB, incompressible); directories FIRST..LAST (default all) get
# content unique to SEED.  Uses a 60 MiB random pool made once per test.
big_tree() {
  [ -s "$KH_W/pool" ] || head -c 62914560 /dev/urandom >"$KH_W/pool"
  python3 - "$1" "$KH_W/pool" "$2" "${3:-0}" "${4:-19}" <<'PY' || fail "big_tree"
import os, sys
b, pool, seed, first, last = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
n = 78600
for d in range(first, last + 1):
    os.makedirs("%s/d%02d" % (b, d), exist_ok=True)
    for f in range(40):
        k = d * 40 + f
        off = (k * n + seed * 104729) % (len(pool) - n)
        with open("%s/d%02d/f%03d" % (b, d, f), "wb") as fh:
            fh.write(b"seed %12d file %6d\n" % (seed, k))
            fh.write(pool[off:off + n])
PY
}

# assert_manifest MANIFEST_FILE DIR WHAT: DIR matches a saved manifest.
assert_manifest() {
  manifest "$2" >"$KH_W/m2" || fail "$3: manifest of $2"
  if ! cmp -s "$1" "$KH_W/m2"; then
    diff "$1" "$KH_W/m2" | head -n 20 >&2
    fail "$3: $2 differs from the saved manifest"
  fi
}

# restore_matches SNAP SRC MANIFEST_FILE WHAT: restore SNAP; SRC's copy
# matches MANIFEST_FILE (saved when SNAP was made).
restore_matches() {
  KH_NREST=$((KH_NREST + 1))
  tgt=$KH_T/rt/$KH_NREST
  restore_name "$1" "$2" "$tgt"
  assert_ok "$4: restore $1"
  assert_manifest "$3" "$tgt$2" "$4"
  rm -rf "$tgt"
}
