#!/bin/sh
# keyhold benchmark: the cost of excludes and of the new metadata (xattrs,
# ACLs, chattr flags), issue 8.  In ONE run, side by side, the first backup
# of the Linux 6.1 tree into an empty region with an empty cache, by:
#
#   a  OLD   keyhold built from commit 5354e89 (before xattrs/ACLs/flags and
#            the exclude code paths), no excludes
#   b  NEW   this build, no excludes
#   c  NEW   with excludes that match nothing or little in a source tree
#            (same data stored; only the matching cost is measured)
#   e  NEW   the same exclude options with `--exclude Documentation` (which
#            leaves out the tree's Documentation/, 44 MB of 1.3 GB) replaced
#            by a name that matches nothing: the same data as b is stored,
#            so e/b is the pure cost of the matching
#   d  NEW   on a copy of the tree where 10% of the files carry a user.*
#            xattr and 1% a POSIX ACL (vs b: the cost of metadata present)
#
# The runs alternate (a b c e d, a b c e d, ...) for ROUNDS rounds; the
# medians of the wall time and of the user+sys CPU time are reported, with
# the ratios b/a, c/b, e/b (target <= 1.05) and d/b.  See docs/benchmarks.md.
#
#   sh bench/overhead.sh [BUILD_DIR] [--rounds N] [--old-rev REV]
#                        [--work-dir DIR] [--strict]
#
# POSIX sh (dash): `make bench` runs it with `sh`.

set -u

die() { echo "overhead: error: $*" >&2; exit 2; }
log() { echo "overhead: $*" >&2; }

BUILD_DIR=build
ROUNDS=3
OLD_REV=5354e89
WORK=${KH_BENCH_DIR:-/var/tmp/khbench}
STRICT=0
LINUX_TARBALL=/usr/src/linux-source-6.1.tar.xz
LINUX_NAME=linux-source-6.1
LINUX_FILES=78579
EXCLUDES="--exclude *.o --exclude *.ko --exclude Documentation --iexclude *.PDF --exclude-caches --exclude-if-present .nobackup --exclude-larger-than 100M"
EXCLUDES_NONE="--exclude *.o --exclude *.ko --exclude No-Such-Dir --iexclude *.PDF --exclude-caches --exclude-if-present .nobackup --exclude-larger-than 100M"

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) [ $# -ge 2 ] || die "--rounds needs a value"; ROUNDS=$2; shift 2 ;;
    --old-rev) [ $# -ge 2 ] || die "--old-rev needs a value"; OLD_REV=$2; shift 2 ;;
    --work-dir) [ $# -ge 2 ] || die "--work-dir needs a value"; WORK=$2; shift 2 ;;
    --strict) STRICT=1; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option: $1" ;;
    *) BUILD_DIR=$1; shift ;;
  esac
done
case $ROUNDS in ''|*[!0-9]*|0) die "--rounds wants a positive integer" ;; esac

[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is missing: apt-get install time"
command -v setfattr >/dev/null 2>&1 || die "setfattr is missing: apt-get install attr"
command -v setfacl >/dev/null 2>&1 || die "setfacl is missing: apt-get install acl"
command -v meson >/dev/null 2>&1 || die "meson is missing"
command -v ninja >/dev/null 2>&1 || die "ninja is missing"

NEW=$BUILD_DIR/cmd/keyhold/keyhold
[ -x "$NEW" ] || die "$NEW not found; run 'make build'"
case $NEW in /*) ;; *) NEW=$(pwd -P)/$NEW ;; esac
SRC=$(cd "$(dirname "$0")/.." && pwd -P)

mkdir -p "$WORK" || die "cannot create $WORK"
WORK=$(cd "$WORK" && pwd -P)

# ------------------------------------------------------------- the OLD build
# A detached worktree at OLD_REV, built with the project's default buildtype
# (release, as `make build`); reused when it is already at that commit.
OLD_TREE=${KH_OLD_TREE:-/var/tmp/kh-old}
OLD=$OLD_TREE/build-old/cmd/keyhold/keyhold
want=$(git -C "$SRC" rev-parse --verify "$OLD_REV^{commit}") || die "unknown revision $OLD_REV"
have=$(git -C "$OLD_TREE" rev-parse HEAD 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  log "checking out $OLD_REV into $OLD_TREE ..."
  if [ -d "$OLD_TREE" ]; then
    git -C "$SRC" worktree remove --force "$OLD_TREE" 2>/dev/null || rm -rf "$OLD_TREE"
    git -C "$SRC" worktree prune
  fi
  git -C "$SRC" worktree add --detach "$OLD_TREE" "$want" >/dev/null 2>&1 ||
    die "git worktree add $OLD_TREE $OLD_REV failed"
fi
if [ ! -f "$OLD_TREE/build-old/build.ninja" ]; then
  (cd "$OLD_TREE" && meson setup build-old --buildtype=release >/dev/null) ||
    die "meson setup of the old build failed"
fi
log "building keyhold at $OLD_REV ..."
ninja -C "$OLD_TREE/build-old" cmd/keyhold/keyhold >/dev/null || die "building keyhold at $OLD_REV failed"

# ------------------------------------------------------------------ the trees
TREE=$WORK/$LINUX_NAME
n=-1; [ -d "$TREE" ] && n=$(find "$TREE" -type f | wc -l)
if [ "$n" != "$LINUX_FILES" ]; then
  [ -f "$LINUX_TARBALL" ] || die "$LINUX_TARBALL missing: apt-get install linux-source-6.1"
  log "extracting $LINUX_TARBALL into $WORK ..."
  rm -rf "$TREE" "$TREE.partial"; mkdir -p "$TREE.partial" || die "mkdir"
  tar -xJf "$LINUX_TARBALL" -C "$TREE.partial" || die "extracting $LINUX_TARBALL failed"
  { mv "$TREE.partial/$LINUX_NAME" "$TREE" && rmdir "$TREE.partial"; } || die "unexpected tarball layout"
fi
TREE_FILES=$(find "$TREE" -type f | wc -l | tr -d ' ')

RUN=$WORK/overhead.$$
mkdir -p "$RUN" "$WORK/results" || die "cannot create $RUN"
trap 'rm -rf "$RUN"' EXIT
trap 'exit 130' INT TERM

# The metadata copy: every 10th file (sorted order) gets a user.* xattr,
# every 100th a POSIX ACL with a named-user entry (which needs the
# system.posix_acl_access xattr, a minimal mode-only ACL would not).
META=$RUN/$LINUX_NAME
log "copying the tree and adding xattrs / ACLs ..."
cp -a "$TREE" "$META" || die "cp -a $TREE failed"
(cd "$META" && find . -type f | LC_ALL=C sort) > "$RUN/files"
awk 'NR % 10 == 1' "$RUN/files" | (cd "$META" && tr '\n' '\0' |
  xargs -0 setfattr -n user.keyhold.bench -v overhead-bench-value) ||
  die "setfattr failed (does $WORK's file system support user xattrs?)"
awk 'NR % 100 == 1' "$RUN/files" | (cd "$META" && tr '\n' '\0' |
  xargs -0 setfacl -m u:nobody:r--) || die "setfacl failed (ACLs unsupported on $WORK?)"
N_XATTR=$(awk 'NR % 10 == 1' "$RUN/files" | wc -l | tr -d ' ')
N_ACL=$(awk 'NR % 100 == 1' "$RUN/files" | wc -l | tr -d ' ')
probe=$(sed -n 1p "$RUN/files")
getfattr -n user.keyhold.bench "$META/$probe" >/dev/null 2>&1 || die "xattr did not stick on $probe"
getfacl -c "$META/$probe" 2>/dev/null | grep -q '^user:nobody:r--' || die "ACL did not stick on $probe"

# warm cache for both trees (pipe through cat: tar skips /dev/null archives)
log "warm-up: reading both trees ..."
(cd "$WORK" && tar cf - "$LINUX_NAME") | cat > /dev/null
(cd "$RUN" && tar cf - "$LINUX_NAME") | cat > /dev/null

PASS=$RUN/passcode
umask 077; printf 'keyhold-bench-passcode-%s\n' "$$" > "$PASS"; umask 022
unset KEYHOLD_REGION KEYHOLD_PASSCODE_FILE 2>/dev/null || true

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $LOAD_START"

# one KIND ROUND: init (not timed) an empty region with an empty cache and
# device dir, then the timed first backup.  Appends "KIND WALL CPU BYTES".
one() {
  _k=$1; _r=$2; _d=$RUN/$_k.$_r
  mkdir -p "$_d/cache" "$_d/device"
  export KEYHOLD_CACHE_DIR="$_d/cache" KEYHOLD_DEVICE_DIR="$_d/device"
  export XDG_CACHE_HOME="$_d/xdg-cache" XDG_CONFIG_HOME="$_d/xdg-config"
  case $_k in a) _bin=$OLD ;; *) _bin=$NEW ;; esac
  case $_k in d) _tree=$META ;; *) _tree=$TREE ;; esac
  "$_bin" init --region "$_d/region" --passcode-file "$PASS" > "$_d/init.out" 2>&1 ||
    { cat "$_d/init.out" >&2; die "$_k: init failed"; }
  sync
  # the exclude options split into words on purpose; set -f: no globbing
  set -f
  if [ "$_k" = c ] || [ "$_k" = e ]; then
    if [ "$_k" = c ]; then _ex=$EXCLUDES; else _ex=$EXCLUDES_NONE; fi
    # shellcheck disable=SC2086
    /usr/bin/time -o "$_d/time" -f '%e %U %S' "$_bin" backup --region "$_d/region" \
      --passcode-file "$PASS" --quiet $_ex "$_tree" > "$_d/out" 2> "$_d/err"
  else
    /usr/bin/time -o "$_d/time" -f '%e %U %S' "$_bin" backup --region "$_d/region" \
      --passcode-file "$PASS" --quiet "$_tree" > "$_d/out" 2> "$_d/err"
  fi
  _rc=$?; set +f
  [ "$_rc" = 0 ] || { tail -n 15 "$_d/err" >&2; die "$_k (round $_r): backup failed (exit $_rc)"; }
  _b=$(du -sb "$_d/region" | cut -f1)
  tail -n1 "$_d/time" | awk -v k="$_k" -v b="$_b" '{ printf "%s %.2f %.2f %s\n", k, $1, $2 + $3, b }' \
    >> "$RUN/samples"
  log "$_k round $_r: $(tail -n1 "$RUN/samples" | cut -d' ' -f2) s wall, $(tail -n1 "$RUN/samples" | cut -d' ' -f3) s cpu"
  rm -rf "$_d"
}

: > "$RUN/samples"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for k in a b c e d; do one "$k" "$r"; done
  r=$((r + 1))
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- the report
med() { # KIND FIELD
  awk -v k="$1" -v f="$2" '$1 == k { print $f }' "$RUN/samples" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
all() { awk -v k="$1" -v f="$2" '$1 == k { printf "%s%s", s, $f; s = " " }' "$RUN/samples"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
verdict() { awk -v r="$1" 'BEGIN { if (r <= 1.05) print "MET"; else print "MISSED" }'; }

TXT=$WORK/results/overhead-latest.txt
MISSED=0
{
  echo "keyhold excludes/metadata overhead  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(nproc) CPU ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)"
  echo "tree: $TREE ($TREE_FILES files), warm page cache; first backup, empty region, empty cache"
  echo "old: $OLD_REV ($(git -C "$SRC" log -1 --format=%s "$want" | cut -c1-60))"
  echo "new: $(git -C "$SRC" rev-parse --short HEAD) ($NEW)"
  echo "c excludes: $EXCLUDES"
  echo "d tree: copy with $N_XATTR files carrying a user.* xattr, $N_ACL a POSIX ACL"
  echo "e excludes: $EXCLUDES_NONE"
  echo "rounds: $ROUNDS, order a b c e d per round"
  echo "load average (1/5/15 min): $LOAD_START at start, $LOAD_END at end"
  echo
  printf '%-24s %8s %8s %10s   %s\n' run 'wall s' 'cpu s' 'region MB' 'samples wall / cpu'
  for k in a b c e d; do
    case $k in a) nm='a OLD' ;; b) nm='b NEW' ;; c) nm='c NEW + excludes' ;;
      e) nm='e NEW + no-match excl.' ;; d) nm='d NEW, xattr/ACL tree' ;; esac
    printf '%-24s %8s %8s %10s   %s / %s\n' "$nm" "$(med $k 2)" "$(med $k 3)" \
      "$(awk -v b="$(med $k 4)" 'BEGIN { printf "%.1f", b / 1e6 }')" "$(all $k 2)" "$(all $k 3)"
  done
  echo
  for p in b/a c/b e/b d/b; do
    x=${p%/*}; y=${p#*/}
    rw=$(ratio "$(med "$x" 2)" "$(med "$y" 2)"); rc=$(ratio "$(med "$x" 3)" "$(med "$y" 3)")
    case $p in
      d/b) v='(no target: metadata present costs what it stores)' ;;
      c/b) v="target <= 1.05: wall $(verdict "$rw"), cpu $(verdict "$rc") (c stores less: Documentation/ left out)" ;;
      *) v="target <= 1.05: wall $(verdict "$rw"), cpu $(verdict "$rc")" ;;
    esac
    printf '%-4s wall %s  cpu %s  %s\n' "$p" "$rw" "$rc" "$v"
  done
} > "$TXT"
grep -q 'MISSED' "$TXT" && MISSED=1
cp "$TXT" "$WORK/results/overhead-$(date -u +%Y%m%dT%H%M%SZ).txt"
echo; cat "$TXT"; echo; echo "results: $TXT"
[ "$STRICT" = 1 ] && [ "$MISSED" = 1 ] && exit 1
exit 0
