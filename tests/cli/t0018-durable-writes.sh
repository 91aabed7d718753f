#!/bin/sh
# The files the CLI writes for itself (admin unwrap --key-out, the recovery
# key file of protection e2e, watch's pinned log key and checkpoint, log
# verify's remembered checkpoint) are replaced atomically and durably: a
# temporary file that is fsynced, renamed over the target, then the
# directory fsynced (the library's one atomic-write helper).  Checked on
# the system calls, with strace.
. "$KH_SRCDIR/tests/cli/lib.sh"

command -v strace >/dev/null || { note "strace is missing (make test-deps installs it)"; exit 77; }
strace -o /dev/null true 2>/dev/null || { note "ptrace is not permitted here"; exit 77; }

KEYHOLD_OPERATOR_DIR=$KH_T/operator
export KEYHOLD_OPERATOR_DIR
kh_init

# traced WHAT REGEX MIN ARGS...: run keyhold under strace; at least MIN
# distinct files whose path matches REGEX are written durably and none is
# opened for writing in place.
traced() {
  tr_what=$1 tr_re=$2 tr_min=$3
  shift 3
  # LeakSanitizer cannot run under ptrace (make check-asan)
  run env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    strace -f -y -qq -o "$KH_W/strace" \
    -e trace=openat,open,creat,rename,renameat,renameat2,link,fsync,fdatasync "$KEYHOLD" "$@"
  assert_ok "$tr_what"
  python3 - "$KH_W/strace" "$tr_re" "$tr_min" <<'PY' || fail "$tr_what: not written durably (see above)"
import os, re, sys
trace, pat, need = sys.argv[1], re.compile(sys.argv[2]), int(sys.argv[3])
synced = []      # (line number, path) of successful fsyncs
renames = []     # (line number, from, to) of renames and links
problems = []
written = []     # (path, flags) opened for writing
for n, l in enumerate(open(trace, encoding="utf-8", errors="replace")):
    m = re.search(r'\b(?:fsync|fdatasync)\(\d+<([^>]*)>\) = 0', l)
    if m:
        synced.append((n, m.group(1)))
    m = re.search(r'\b(?:rename(?:at2?)?|link(?:at)?)\((?:[^,]*, )?"([^"]*)", (?:[^,]*, )?"([^"]*)"[^)]*\) = 0', l)
    if m:
        renames.append((n, m.group(1), m.group(2)))
    m = re.search(r'\bopen(?:at)?\((?:[^,]*, )?"([^"]*)", ([A-Z_|]*)', l)
    if m and pat.search(m.group(1)) and re.search(r'O_WRONLY|O_RDWR', m.group(2)):
        written.append((m.group(1), m.group(2)))
for f, flags in written:
    # only temporaries renamed later may be written; a target may be created
    # empty with O_EXCL (to refuse an existing file) if it is then replaced
    if any(src == f for _, src, _ in renames):
        continue
    if not ("O_EXCL" in flags and any(dst == f for _, _, dst in renames)):
        problems.append("%s opened for writing in place (%s)" % (f, flags))
done = set()
for n, src, dst in renames:
    if not pat.search(dst):
        continue
    if src == dst or not any(p == src and k < n for k, p in synced):
        problems.append("%s: renamed from %s, which was not fsynced first" % (dst, src))
        continue
    d = os.path.dirname(dst) or "."
    if not any(p == d and k > n for k, p in synced):
        problems.append("%s: its directory %s was not fsynced after the rename" % (dst, d))
        continue
    done.add(dst)
if len(done) < need:
    problems.append("%d file(s) matching %s replaced durably, expected at least %d" % (len(done), pat.pattern, need))
for p in problems:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

# watch's first run pins the log key and remembers the checkpoint
traced "watch" "^$KEYHOLD_DEVICE_DIR/" 2 watch
# log verify remembers the checkpoint in the cache directory
traced "log verify" "^$KEYHOLD_CACHE_DIR/" 1 log verify
# the released key, written where the operator asked
traced "admin unwrap --key-out" "^$KH_T/key\.hex\$" 1 admin unwrap --account "$ACCOUNT" \
  --reason "durability test" --key-out "$KH_T/key.hex"
grep -Eqx '[0-9a-f]{64}' "$KH_T/key.hex" || fail "admin unwrap --key-out: content"
[ "$(stat -c %a "$KH_T/key.hex")" = 600 ] || fail "admin unwrap --key-out: mode"
# the recovery key, written before the key service's wrap is destroyed
traced "protection e2e" "^$KH_T/rk\.txt\$" 1 protection e2e --recovery-key-file "$KH_T/rk.txt"
grep -Eqx '([A-Z2-7]{4}-){12}[A-Z2-7]{4}' "$KH_T/rk.txt" || fail "recovery key format: $(cat "$KH_T/rk.txt")"
[ "$(stat -c %a "$KH_T/rk.txt")" = 600 ] || fail "recovery key file mode"

pass
