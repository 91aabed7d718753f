#!/bin/sh
# keyhold mount vs restic mount, side by side, on the Linux-tree snapshot:
#
#   sh bench/mount.sh [BUILD_DIR] [--work-dir DIR] [--tree DIR] [--keep]
#
# Each tool backs up the Linux 6.1 source tree plus a directory holding one
# 100 MB random file (the Linux tree has no file that large; the tree itself
# is left untouched), mounts its repository, then times, through the mount:
#   list:  ls -lR of linux-source-6.1/kernel (every entry stat'ed)
#   read:  cat of the 100 MB file to /dev/null
# each twice (cold: first access after mounting; warm: again).  The bytes
# read are compared with the original afterwards (not timed).  See
# docs/benchmarks.md.  POSIX sh.

set -u

die() { echo "bench-mount: error: $*" >&2; exit 2; }
log() { echo "bench-mount: $*" >&2; }

BUILD_DIR=build
WORK=${KH_BENCH_DIR:-/var/tmp/khbench}
TREE=${KH_BENCH_TREE:-}
KEEP=0
LINUX_TARBALL=/usr/src/linux-source-6.1.tar.xz
LINUX_NAME=linux-source-6.1
LINUX_FILES=78579
LIST_SUB=kernel
BIG_MB=100

while [ $# -gt 0 ]; do
  case $1 in
    --work-dir) [ $# -ge 2 ] || die "--work-dir needs a value"; WORK=$2; shift 2 ;;
    --tree) [ $# -ge 2 ] || die "--tree needs a value"; TREE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) die "unknown option: $1" ;;
    *) BUILD_DIR=$1; shift ;;
  esac
done

KEYHOLD=${KEYHOLD:-$BUILD_DIR/cmd/keyhold/keyhold}
[ -x "$KEYHOLD" ] || die "$KEYHOLD not found: run 'make build'"
case $KEYHOLD in /*) ;; *) KEYHOLD=$(pwd -P)/$KEYHOLD ;; esac
"$KEYHOLD" help mount >/dev/null 2>&1 || die "this keyhold has no mount (build with libfuse3-dev)"
command -v restic >/dev/null 2>&1 || die "restic is missing (apt-get install restic)"
command -v fusermount3 >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1 ||
  die "fusermount3 is missing (apt-get install fuse3)"
(: <>/dev/fuse) 2>/dev/null || die "/dev/fuse cannot be opened"

mkdir -p "$WORK" || die "cannot create $WORK"
WORK=$(cd "$WORK" && pwd -P)
if [ -z "$TREE" ]; then
  TREE=$WORK/$LINUX_NAME
  n=-1
  [ -d "$TREE" ] && n=$(find "$TREE" -type f | wc -l)
  if [ "$n" != "$LINUX_FILES" ]; then
    [ -f "$LINUX_TARBALL" ] || die "$LINUX_TARBALL missing: apt-get install linux-source-6.1 (or pass --tree)"
    log "extracting $LINUX_TARBALL into $WORK ..."
    rm -rf "$TREE" "$TREE.partial"
    mkdir -p "$TREE.partial" && tar -xJf "$LINUX_TARBALL" -C "$TREE.partial" &&
      mv "$TREE.partial/$LINUX_NAME" "$TREE" && rmdir "$TREE.partial" || die "extracting failed"
  fi
fi
TREE=$(cd "$TREE" && pwd -P)
[ -d "$TREE/$LIST_SUB" ] || die "$TREE/$LIST_SUB is not a directory"

RUN=$WORK/mount-run.$$
RESULTS=$WORK/results
mkdir -p "$RUN/big" "$RUN/mnt-keyhold" "$RUN/mnt-restic" "$RESULTS" || die "mkdir $RUN"
MPIDS=""
cleanup() {
  for m in "$RUN/mnt-keyhold" "$RUN/mnt-restic"; do
    fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null
  done
  for p in $MPIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ "$KEEP" = 1 ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASS=$RUN/passcode
printf 'keyhold-bench-mount-%s\n' "$$" >"$PASS"
export XDG_CACHE_HOME="$RUN/xdg-cache" XDG_CONFIG_HOME="$RUN/xdg-config"
export RESTIC_CACHE_DIR="$RUN/restic-cache" RESTIC_PASSWORD_FILE="$PASS"
export KEYHOLD_CACHE_DIR="$RUN/keyhold-cache" KEYHOLD_DEVICE_DIR="$RUN/keyhold-device"
unset RESTIC_REPOSITORY KEYHOLD_REGION KEYHOLD_PASSCODE_FILE 2>/dev/null || true

BIG=$RUN/big/big-${BIG_MB}M.bin
head -c $((BIG_MB * 1000000)) /dev/urandom >"$BIG" || die "cannot write $BIG"
log "warm-up: reading the tree ..."
(cd "$(dirname "$TREE")" && tar cf - "$(basename "$TREE")") | cat >/dev/null

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# timed_ls MNTROOT -> seconds; timed_cat MNTROOT -> seconds
timed_ls() {
  t0=$(now_ns)
  ls -lR "$1$TREE/$LIST_SUB" >"$RUN/ls.out" 2>"$RUN/ls.err" || { cat "$RUN/ls.err" >&2; return 1; }
  secs "$t0" "$(now_ns)"
}
timed_cat() {
  t0=$(now_ns)
  cat "$1$BIG" >/dev/null || return 1
  secs "$t0" "$(now_ns)"
}

wait_mount() { # DIR PID
  n=0
  until [ -d "$1/snapshots" ] && [ -n "$(ls "$1/snapshots" 2>/dev/null)" ]; do
    kill -0 "$2" 2>/dev/null || return 1
    n=$((n + 1)); [ $n -le 600 ] || return 1
    sleep 0.1
  done
}

measure() { # TOOL MNT PID
  wait_mount "$2" "$3" || die "$1 mount did not come up (see $RUN/$1-mount.err)"
  root=$2/snapshots/latest
  l1=$(timed_ls "$root") || die "$1: ls -lR failed"
  c1=$(timed_cat "$root") || die "$1: reading the big file failed"
  l2=$(timed_ls "$root") || die "$1: ls -lR failed"
  c2=$(timed_cat "$root") || die "$1: reading the big file failed"
  entries=$(grep -c '^[-dlcbps]' "$RUN/ls.out")
  cmp -s "$root$BIG" "$BIG" || die "$1: the big file read through the mount differs"
  log "$1: ls -lR $LIST_SUB ($entries entries) ${l1} s cold, ${l2} s warm; read ${BIG_MB} MB ${c1} s cold, ${c2} s warm"
  eval "R_${1}_l1=$l1 R_${1}_l2=$l2 R_${1}_c1=$c1 R_${1}_c2=$c2 R_${1}_n=$entries"
}

# ---- keyhold
R=$RUN/repo-keyhold
log "keyhold: init + backup (not timed) ..."
"$KEYHOLD" init --region "$R" --passcode-file "$PASS" >"$RUN/kh-init.out" 2>&1 || die "keyhold init"
"$KEYHOLD" backup --region "$R" --passcode-file "$PASS" --quiet "$TREE" "$RUN/big" \
  >"$RUN/kh-backup.out" 2>&1 || die "keyhold backup (see $RUN/kh-backup.out)"
"$KEYHOLD" mount --region "$R" --passcode-file "$PASS" "$RUN/mnt-keyhold" \
  >"$RUN/keyhold-mount.out" 2>"$RUN/keyhold-mount.err" &
KPID=$!; MPIDS="$MPIDS $KPID"
measure keyhold "$RUN/mnt-keyhold" "$KPID"
fusermount3 -u "$RUN/mnt-keyhold" || die "keyhold: fusermount3 -u"
wait "$KPID" || die "keyhold mount exited non-zero after unmount"

# ---- restic
R=$RUN/repo-restic
log "restic: init + backup (not timed) ..."
restic -r "$R" init --repository-version 2 >"$RUN/restic-init.out" 2>&1 || die "restic init"
restic -r "$R" backup --quiet "$TREE" "$RUN/big" >"$RUN/restic-backup.out" 2>&1 || die "restic backup"
restic -r "$R" mount "$RUN/mnt-restic" >"$RUN/restic-mount.out" 2>"$RUN/restic-mount.err" &
RPID=$!; MPIDS="$MPIDS $RPID"
measure restic "$RUN/mnt-restic" "$RPID"
fusermount3 -u "$RUN/mnt-restic" 2>/dev/null || umount "$RUN/mnt-restic"
wait "$RPID"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
TXT=$RESULTS/mount-latest.txt
{
  echo "keyhold mount vs restic mount  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(nproc) CPU ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "snapshot: $TREE + one ${BIG_MB} MB random file; $("$KEYHOLD" --version | head -n1); $(restic version | head -n1)"
  echo
  printf '%-8s %14s %14s %14s %14s\n' tool 'ls -lR cold' 'ls -lR warm' 'read cold' 'read warm'
  for t in keyhold restic; do
    eval "printf '%-8s %12s s %12s s %12s s %12s s\n' $t \$R_${t}_l1 \$R_${t}_l2 \$R_${t}_c1 \$R_${t}_c2"
  done
  echo
  echo "ls -lR $LIST_SUB: $R_keyhold_n entries (keyhold), $R_restic_n (restic)"
  echo "keyhold/restic: ls cold $(ratio "$R_keyhold_l1" "$R_restic_l1"), ls warm $(ratio "$R_keyhold_l2" "$R_restic_l2"), read cold $(ratio "$R_keyhold_c1" "$R_restic_c1"), read warm $(ratio "$R_keyhold_c2" "$R_restic_c2")"
  echo "  read MB/s cold: keyhold $(awk -v s="$R_keyhold_c1" -v m=$BIG_MB 'BEGIN { printf "%.0f", m / s }'), restic $(awk -v s="$R_restic_c1" -v m=$BIG_MB 'BEGIN { printf "%.0f", m / s }')"
} >"$TXT"
cp "$TXT" "$RESULTS/mount-$(date -u +%Y%m%dT%H%M%SZ).txt"
echo
cat "$TXT"
