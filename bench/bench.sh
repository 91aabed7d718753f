#!/bin/sh
# keyhold benchmark harness: keyhold vs restic vs borg, side by side, each
# locally and over the network on loopback (keyhold through keyholdd, restic
# to an SFTP server, borg over SSH, both against a private sshd).
#
#   sh bench/bench.sh [BUILD_DIR] [--tools LIST] [--tree DIR]
#                     [--work-dir DIR] [--keep] [--strict]
#
# For each tool: first backup into an empty repo, unchanged re-backup,
# restore of the latest snapshot into an empty dir (verified against a
# checksum list of the whole tree), repo size.  Each timed step runs under
# GNU time (/usr/bin/time -f '%e %M': wall seconds, peak RSS KiB); the
# server side's peak RSS is measured too (keyholdd: VmHWM; sftp-server and
# borg serve: GNU time inside the sshd session).
# See docs/benchmarks.md.  POSIX sh (dash) on purpose: `make bench` runs it
# with `sh`.

set -u

usage() {
  cat <<'EOF'
usage: sh bench/bench.sh [BUILD_DIR] [options]

  BUILD_DIR          meson build dir; keyhold is BUILD_DIR/cmd/keyhold/keyhold
                     (default: build)
  --tools LIST       comma-separated subset of keyhold,keyholdd,restic,
                     restic-sftp,borg,borg-ssh (default: all, run in that
                     order).  keyholdd = keyhold through a keyholdd on
                     127.0.0.1; restic-sftp / borg-ssh = restic with an
                     sftp: repo / borg with an ssh:// repo on a private
                     sshd on 127.0.0.1 (needs root and openssh-server)
  --tree DIR         tree to back up (default: $KH_BENCH_TREE or the Linux
                     6.1 source extracted under the work dir)
  --work-dir DIR     work dir (default: $KH_BENCH_DIR or /var/tmp/khbench)
  --keep             keep repos and restore dirs (default: remove them)
  --strict           exit 1 if any target is missed (default: only failures
                     of a tool exit non-zero)
  -h, --help         this text

environment:
  KH_BENCH_TREE      same as --tree
  KH_BENCH_DIR       same as --work-dir
  KH_BENCH_TIMEOUT   per-step timeout in seconds (default 3600)
  KEYHOLD            path of the keyhold binary (overrides BUILD_DIR)
  KEYHOLDD           path of the keyholdd binary (default
                     BUILD_DIR/srv/keyholdd/keyholdd)

A tool that cannot run yet is reported "not available" with the reason, not
as a failure: keyholdd when the server does not start with the issue-9
command line or `keyhold init --region URL` does not work against it.
EOF
}

die() { echo "bench: error: $*" >&2; exit 2; }
log() { echo "bench: $*" >&2; }

BUILD_DIR=build
ALL_TOOLS="keyhold keyholdd restic restic-sftp borg borg-ssh"
TOOLS=keyhold,keyholdd,restic,restic-sftp,borg,borg-ssh
TOOLS_GIVEN=0
TREE=${KH_BENCH_TREE:-}
WORK=${KH_BENCH_DIR:-/var/tmp/khbench}
KEEP=0
STRICT=0
STEP_TIMEOUT=${KH_BENCH_TIMEOUT:-3600}
LINUX_TARBALL=/usr/src/linux-source-6.1.tar.xz
LINUX_NAME=linux-source-6.1
LINUX_FILES=78579   # regular files in the Debian linux-source-6.1 tree

while [ $# -gt 0 ]; do
  case $1 in
    --tools) [ $# -ge 2 ] || die "--tools needs a value"; TOOLS=$2; TOOLS_GIVEN=1; shift 2 ;;
    --tools=*) TOOLS=${1#*=}; TOOLS_GIVEN=1; shift ;;
    --tree) [ $# -ge 2 ] || die "--tree needs a value"; TREE=$2; shift 2 ;;
    --tree=*) TREE=${1#*=}; shift ;;
    --work-dir) [ $# -ge 2 ] || die "--work-dir needs a value"; WORK=$2; shift 2 ;;
    --work-dir=*) WORK=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    --strict) STRICT=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) BUILD_DIR=$1; shift ;;
  esac
done

TOOLS=$(echo "$TOOLS" | tr ',' ' ')
[ -n "$TOOLS" ] || die "--tools is empty"
for t in $TOOLS; do
  case " $ALL_TOOLS " in *" $t "*) ;; *) die "unknown tool '$t' (want any of: $ALL_TOOLS)" ;; esac
done
has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; esac; return 1; }
# keep the fixed order whatever order --tools named them in
_sel=; for t in $ALL_TOOLS; do has_tool "$t" && _sel="$_sel $t"; done; TOOLS=${_sel# }
HERE=$(cd "$(dirname "$0")" && pwd -P)
. "$HERE/sshd.sh"
. "$HERE/keyholdd.sh"

# ---------------------------------------------------------------- prerequisites
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is missing: apt-get install time"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is missing (coreutils)"
HAVE_TIMEOUT=0; command -v timeout >/dev/null 2>&1 && HAVE_TIMEOUT=1

KEYHOLD=${KEYHOLD:-$BUILD_DIR/cmd/keyhold/keyhold}
KEYHOLDD=${KEYHOLDD:-$BUILD_DIR/srv/keyholdd/keyholdd}
case $KEYHOLDD in /*) ;; *) KEYHOLDD=$(pwd -P)/$KEYHOLDD ;; esac
missing=
if has_tool keyhold || has_tool keyholdd; then
  if [ ! -x "$KEYHOLD" ]; then
    missing="$missing keyhold($KEYHOLD: not found; run 'make build')"
  else
    case $KEYHOLD in /*) ;; *) KEYHOLD=$(pwd -P)/$KEYHOLD ;; esac
  fi
fi
if { has_tool restic || has_tool restic-sftp; } && ! command -v restic >/dev/null 2>&1; then
  missing="$missing restic(apt-get install restic)"
fi
if { has_tool borg || has_tool borg-ssh; } && ! command -v borg >/dev/null 2>&1; then
  missing="$missing borg(apt-get install borgbackup)"
fi
if [ "$TOOLS_GIVEN" = 0 ] && [ "$(id -u)" != 0 ]; then
  # the default set on a machine where we are not root: the rest still runs
  log "warning: not root: leaving out restic-sftp and borg-ssh (their private sshd runs as root)"
  TOOLS=$(echo " $TOOLS " | sed 's/ restic-sftp / /; s/ borg-ssh / /; s/^ *//; s/ *$//')
fi
NEED_SSHD=0; { has_tool restic-sftp || has_tool borg-ssh; } && NEED_SSHD=1
if [ "$NEED_SSHD" = 1 ]; then
  [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 ||
    missing="$missing sshd(apt-get install openssh-server)"
  command -v ssh >/dev/null 2>&1 || missing="$missing ssh(apt-get install openssh-client)"
  command -v python3 >/dev/null 2>&1 || missing="$missing python3(apt-get install python3)"
  [ "$(id -u)" = 0 ] || missing="$missing root(the private sshd for restic-sftp/borg-ssh runs as root)"
fi
[ -z "$missing" ] || die "missing tool(s):$missing -- install them or leave them out with --tools"

mkdir -p "$WORK" || die "cannot create work dir $WORK"
WORK=$(cd "$WORK" && pwd -P)

# --------------------------------------------------------------------- the tree
if [ -z "$TREE" ]; then
  TREE=$WORK/$LINUX_NAME
  n=-1
  [ -d "$TREE" ] && n=$(find "$TREE" -type f | wc -l)
  if [ "$n" != "$LINUX_FILES" ]; then
    [ -f "$LINUX_TARBALL" ] || die "$LINUX_TARBALL missing: apt-get install linux-source-6.1 (or pass --tree)"
    log "extracting $LINUX_TARBALL into $WORK (found $n files, want $LINUX_FILES) ..."
    rm -rf "$TREE" "$TREE.partial"
    mkdir -p "$TREE.partial" || die "mkdir $TREE.partial"
    tar -xJf "$LINUX_TARBALL" -C "$TREE.partial" || die "extracting $LINUX_TARBALL failed"
    mv "$TREE.partial/$LINUX_NAME" "$TREE" && rmdir "$TREE.partial" || die "unexpected tarball layout"
    n=$(find "$TREE" -type f | wc -l)
    [ "$n" = "$LINUX_FILES" ] || log "warning: extracted tree has $n files, expected $LINUX_FILES"
  fi
fi
[ -d "$TREE" ] || die "tree $TREE is not a directory"
TREE=$(cd "$TREE" && pwd -P)
case $TREE/ in "$WORK"/run.*) die "tree must not be inside the run dir" ;; esac

RUN=$WORK/run.$$
RESULTS=$WORK/results
mkdir -p "$RUN" "$RESULTS" || die "cannot create $RUN"
cleanup() {
  # servers first, whatever happened (error, ^C, a failed step)
  sshd_stop
  khd_stop
  if [ "$KEEP" = 1 ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASS=$RUN/passcode
umask 077
printf 'keyhold-bench-passcode-%s\n' "$$" > "$PASS"
umask 022

# Keep every tool's caches and config out of $HOME.  Note that these caches
# start empty, so the first backup of each tool is a cold-cache backup.
export XDG_CACHE_HOME="$RUN/xdg-cache" XDG_CONFIG_HOME="$RUN/xdg-config"
export RESTIC_CACHE_DIR="$RUN/restic-cache"
export BORG_BASE_DIR="$RUN/borg-base"
export KEYHOLD_CACHE_DIR="$RUN/keyhold-cache" KEYHOLD_DEVICE_DIR="$RUN/keyhold-device"
export RESTIC_PASSWORD_FILE="$PASS"
BORG_PASSPHRASE=$(cat "$PASS"); export BORG_PASSPHRASE
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no
unset RESTIC_REPOSITORY BORG_REPO KEYHOLD_REGION KEYHOLD_PASSCODE_FILE 2>/dev/null || true

# ------------------------------------------------------- warm-up and reference
# We cannot reliably drop the page cache, so every tool sees a warm cache.
# Read everything once first.  (Pipe through cat: GNU tar skips reading file
# data when it notices its archive is /dev/null.)
log "tree: $TREE"
log "warm-up: reading the whole tree ..."
(cd "$(dirname "$TREE")" && tar cf - "$(basename "$TREE")") | cat > /dev/null

# Manifest: sha256 of every regular file, every symlink target, every dir.
manifest() { # DIR OUT
  (
    cd "$1" || exit 1
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum || exit 1
    find . -type l -printf 'L %p -> %l\n' | LC_ALL=C sort
    find . -type d -printf 'D %p\n' | LC_ALL=C sort
  ) > "$2"
}
log "computing the reference manifest ..."
manifest "$TREE" "$RUN/tree.manifest" || die "cannot checksum $TREE"
TREE_FILES=$(find "$TREE" -type f | wc -l | tr -d ' ')
TREE_BYTES=$(du -sb "$TREE" | cut -f1)
PROBE=$(grep -m1 -v '^[LD] ' "$RUN/tree.manifest" | sed 's/^[0-9a-f]*  //')

# Other work on the machine skews wall times (2 cores!).  Record the load and
# warn; CPU seconds (user+sys) are reported too, they suffer less from it.
LOAD_START=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null)
if [ -n "$LOAD_START" ] && awk -v l="$LOAD_START" 'BEGIN { exit !(l > 0.7) }'; then
  log "warning: load average is $LOAD_START before measuring; wall times will be inflated"
fi

# ------------------------------------------------------------------- machinery
# timed NAME CMD...: run CMD under GNU time; output in $RUN/$NAME.{out,err,time}
# sets T_SEC (wall), T_KIB (peak RSS), T_CPU (user+sys s); returns CMD's status.  Runs `sync` first (not timed).
timed() {
  _n=$1; shift
  if [ "$HAVE_TIMEOUT" = 1 ]; then set -- timeout "$STEP_TIMEOUT" "$@"; fi
  # Flush dirty pages left by earlier steps (a restore leaves ~1.3 GB) so one
  # step's writeback is not charged to the next.  Not timed.
  sync
  /usr/bin/time -o "$RUN/$_n.time" -f '%e %M %U %S' "$@" > "$RUN/$_n.out" 2> "$RUN/$_n.err"
  _rc=$?
  T_SEC=$(tail -n1 "$RUN/$_n.time" | cut -d' ' -f1)
  T_KIB=$(tail -n1 "$RUN/$_n.time" | cut -d' ' -f2)
  T_CPU=$(tail -n1 "$RUN/$_n.time" | awk 'NF >= 4 { printf "%.2f", $3 + $4 }')
  [ "$_rc" = 124 ] && echo "bench: timed out after ${STEP_TIMEOUT}s" >> "$RUN/$_n.err"
  return $_rc
}

# results live in shell variables R_<tool>_<key>; '-' in a tool name is '_'
tvar() { case $1 in *-*) printf '%s' "$1" | tr - _ ;; *) printf '%s' "$1" ;; esac; }
setv() { eval "R_$(tvar "$1")_$2=\$3"; }
getv() { eval "printf '%s' \"\${R_$(tvar "$1")_$2:-}\""; }

# not_available TOOL WHY: the tool cannot run here yet; no numbers, no failure
not_available() {
  setv "$1" status NA
  setv "$1" why "$2"
  log "$1: not available: $2"
}

fail() { # TOOL STEP
  setv "$1" status FAILED
  setv "$1" failstep "$2"
  log "$1: FAILED at $2 -- last lines of its stderr ($RUN/$1-$2.err):"
  tail -n 15 "$RUN/$1-$2.err" 2>/dev/null | sed 's/^/    /' >&2
  [ "$KEEP" = 1 ] || log "(rerun with --keep to keep the logs)"
}

# server_begin TOOL / server_end TOOL: "KIB CPU", the peak RSS (KiB) and the
# user+sys CPU seconds of the server side of a networked tool during one
# step; nothing for a local tool.
server_begin() {
  case $1 in
    keyholdd) khd_hwm_reset; KHD_CPU0=$(khd_cpu) ;;
    restic-sftp|borg-ssh) sshd_server_clear ;;
  esac
}
server_end() {
  case $1 in
    keyholdd) echo "$(khd_hwm) $(awk -v a="${KHD_CPU0:-0}" -v b="$(khd_cpu)" 'BEGIN { printf "%.2f", b - a }')" ;;
    restic-sftp|borg-ssh) sshd_server_take ;;
  esac
}

# run_step TOOL STEP CMD...
run_step() {
  _t=$1; _s=$2; shift 2
  log "$_t: $_s ..."
  server_begin "$_t"
  if timed "$_t-$_s" "$@"; then
    setv "$_t" "${_s}_s" "$T_SEC"; setv "$_t" "${_s}_kib" "$T_KIB"; setv "$_t" "${_s}_cpu" "$T_CPU"
    _srv=$(server_end "$_t")
    setv "$_t" "${_s}_srv" "${_srv%% *}"; setv "$_t" "${_s}_srvcpu" "${_srv#* }"
    log "$_t: $_s ${T_SEC} s wall, ${T_CPU} s cpu, peak RSS ${T_KIB} KiB${_srv:+, server: peak RSS ${_srv%% *} KiB, ${_srv#* } s cpu}"
    return 0
  fi
  server_end "$_t" > /dev/null
  fail "$_t" "$_s"; return 1
}

# find the restored tree inside DIR (tools differ in how they lay out paths)
find_restored() { # DIR
  for c in "$1$TREE" "$1/$(basename "$TREE")" "$1"; do
    if [ -e "$c/$PROBE" ] || [ -L "$c/$PROBE" ]; then printf '%s' "$c"; return 0; fi
  done
  return 1
}

verify() { # TOOL DIR
  _root=$(find_restored "$2") || {
    echo "restored tree not found under $2 (looked for $PROBE)" > "$RUN/$1-verify.err"
    fail "$1" verify; return 1; }
  manifest "$_root" "$RUN/$1.manifest" 2> "$RUN/$1-verify.err"
  if cmp -s "$RUN/tree.manifest" "$RUN/$1.manifest"; then
    setv "$1" verify ok; log "$1: restore verified ($TREE_FILES files, full sha256 manifest)"
    return 0
  fi
  diff "$RUN/tree.manifest" "$RUN/$1.manifest" | head -n 20 >> "$RUN/$1-verify.err"
  echo "MISMATCH: restored tree differs from $TREE" >> "$RUN/$1-verify.err"
  setv "$1" verify MISMATCH
  fail "$1" verify; return 1
}

repo_size() { # TOOL REPO
  setv "$1" repo_bytes "$(du -sb "$2" | cut -f1)"
}

# ------------------------------------------------------------------ the tools
bench_keyhold() {
  R=$RUN/repo-keyhold; D=$RUN/restore-keyhold
  mkdir -p "$D" "$KEYHOLD_CACHE_DIR" "$KEYHOLD_DEVICE_DIR"
  setv keyhold version "$("$KEYHOLD" --version 2>/dev/null | head -n1)"
  run_step keyhold init "$KEYHOLD" init --region "$R" --passcode-file "$PASS" || return 1
  run_step keyhold backup1 "$KEYHOLD" backup --region "$R" --passcode-file "$PASS" --quiet "$TREE" || return 1
  setv keyhold snap1 "$(tail -n1 "$RUN/keyhold-backup1.out")"
  run_step keyhold backup2 "$KEYHOLD" backup --region "$R" --passcode-file "$PASS" --quiet "$TREE" || return 1
  setv keyhold snap2 "$(tail -n1 "$RUN/keyhold-backup2.out")"
  repo_size keyhold "$R"
  run_step keyhold restore "$KEYHOLD" restore latest --target "$D" --region "$R" --passcode-file "$PASS" || return 1
  verify keyhold "$D"
}

bench_restic() {
  R=$RUN/repo-restic; D=$RUN/restore-restic
  mkdir -p "$D"
  setv restic version "$(restic version 2>/dev/null | head -n1)"
  # repository format v2 = zstd compression (mode auto)
  run_step restic init restic -r "$R" init --repository-version 2 || return 1
  run_step restic backup1 restic -r "$R" backup --quiet "$TREE" || return 1
  run_step restic backup2 restic -r "$R" backup --quiet "$TREE" || return 1
  repo_size restic "$R"
  run_step restic restore restic -r "$R" restore latest --target "$D" || return 1
  verify restic "$D"
}

bench_borg() {
  R=$RUN/repo-borg; D=$RUN/restore-borg
  mkdir -p "$D"
  setv borg version "$(borg --version 2>/dev/null | head -n1)"
  run_step borg init borg init --encryption=repokey-blake2 "$R" || return 1
  run_step borg backup1 borg create --compression zstd,3 "$R::a1" "$TREE" || return 1
  run_step borg backup2 borg create --compression zstd,3 "$R::a2" "$TREE" || return 1
  repo_size borg "$R"
  # borg extract restores into the current directory
  run_step borg restore sh -c 'cd "$1" && exec borg extract "$2"' sh "$D" "$R::a2" || return 1
  verify borg "$D"
}

# restic to an SFTP server: the private sshd's sftp subsystem (sshd.sh), the
# connection made by `ssh -F` with the temp dir's key, port and known_hosts.
bench_restic_sftp() {
  R=$RUN/repo-restic-sftp; D=$RUN/restore-restic-sftp
  mkdir -p "$D"
  setv restic-sftp version "$(restic version 2>/dev/null | head -n1); $(ssh -V 2>&1)"
  _url="sftp:$SSH_USER@127.0.0.1:$R"
  _cmd="ssh -F $SSH_CONFIG 127.0.0.1 -s sftp"
  run_step restic-sftp init restic -o sftp.command="$_cmd" -r "$_url" init --repository-version 2 || return 1
  run_step restic-sftp backup1 restic -o sftp.command="$_cmd" -r "$_url" backup --quiet "$TREE" || return 1
  run_step restic-sftp backup2 restic -o sftp.command="$_cmd" -r "$_url" backup --quiet "$TREE" || return 1
  repo_size restic-sftp "$R"
  run_step restic-sftp restore restic -o sftp.command="$_cmd" -r "$_url" restore latest --target "$D" || return 1
  verify restic-sftp "$D"
}

# borg over SSH: `borg serve` in a session of the private sshd, run under GNU
# time (BORG_REMOTE_PATH) so that its peak RSS is reported as the server's.
bench_borg_ssh() {
  R=$RUN/repo-borg-ssh; D=$RUN/restore-borg-ssh
  mkdir -p "$D"
  setv borg-ssh version "$(borg --version 2>/dev/null | head -n1); $(ssh -V 2>&1)"
  _url="ssh://$SSH_USER@127.0.0.1:$SSHD_PORT$R"
  set -- env "BORG_RSH=ssh -F $SSH_CONFIG" \
    "BORG_REMOTE_PATH=/usr/bin/time -a -o $SSHD_DIR/server.time -f %M,%U,%S borg"
  run_step borg-ssh init "$@" borg init --encryption=repokey-blake2 "$_url" || return 1
  run_step borg-ssh backup1 "$@" borg create --compression zstd,3 "$_url::a1" "$TREE" || return 1
  run_step borg-ssh backup2 "$@" borg create --compression zstd,3 "$_url::a2" "$TREE" || return 1
  repo_size borg-ssh "$R"
  run_step borg-ssh restore "$@" sh -c 'cd "$1" && exec borg extract "$2"' sh "$D" "$_url::a2" || return 1
  verify borg-ssh "$D"
}

# ===================== keyhold through keyholdd (issue 9, server path) =====
# Plugged in by the command-line contract of issue 9 only:
#   keyholdd init --dir D; keyholdd serve --dir D --listen 127.0.0.1:0
#   --signup open (its "listening on URL" line gives the URL);
#   keyhold init --region URL, then backup / restore with --region URL.
# Until the server and the client speak that protocol this reports "not
# available" (no number) -- never a local-directory run in disguise:
# khd_client_init checks that init went through the server.  A step that
# fails after a working init is a real FAILED.
bench_keyholdd() {
  # a device of its own, with a cold cache, as the embedded run had
  _odev=$KEYHOLD_DEVICE_DIR; _ocache=$KEYHOLD_CACHE_DIR
  KEYHOLD_DEVICE_DIR=$RUN/keyholdd-device; KEYHOLD_CACHE_DIR=$RUN/keyholdd-cache
  bench_keyholdd_steps; _rc=$?
  khd_stop
  KEYHOLD_DEVICE_DIR=$_odev; KEYHOLD_CACHE_DIR=$_ocache
  return $_rc
}

bench_keyholdd_steps() {
  R=$RUN/repo-keyholdd; D=$RUN/restore-keyholdd
  if [ ! -x "$KEYHOLDD" ]; then not_available keyholdd "$KEYHOLDD not built"; return 0; fi
  setv keyholdd version "$("$KEYHOLD" --version 2>/dev/null | head -n1)"
  if ! khd_start "$KEYHOLDD" "$R" "$RUN/keyholdd-logs"; then
    not_available keyholdd "$KHD_WHY"; return 0
  fi
  log "keyholdd: serving $R at $KHD_URL (pid $KHD_PID)"
  mkdir -p "$D" "$KEYHOLD_DEVICE_DIR" "$KEYHOLD_CACHE_DIR"
  if ! khd_client_init "$KEYHOLD" "$PASS" "$RUN/keyholdd-init"; then
    not_available keyholdd "$KHD_WHY"; return 0
  fi
  run_step keyholdd backup1 "$KEYHOLD" backup --region "$KHD_URL" --passcode-file "$PASS" --quiet "$TREE" || return 1
  setv keyholdd snap1 "$(tail -n1 "$RUN/keyholdd-backup1.out")"
  run_step keyholdd backup2 "$KEYHOLD" backup --region "$KHD_URL" --passcode-file "$PASS" --quiet "$TREE" || return 1
  setv keyholdd snap2 "$(tail -n1 "$RUN/keyholdd-backup2.out")"
  run_step keyholdd restore "$KEYHOLD" restore latest --target "$D" --region "$KHD_URL" --passcode-file "$PASS" || return 1
  khd_stop
  repo_size keyholdd "$R"
  verify keyholdd "$D"
}
# ===========================================================================

if [ "$NEED_SSHD" = 1 ]; then
  if sshd_start "$RUN/sshd"; then
    log "private sshd on 127.0.0.1:$SSHD_PORT (pid $SSHD_PID, config $RUN/sshd/sshd_config)"
  else
    log "private sshd: $SSHD_WHY"
  fi
fi

for t in $TOOLS; do
  setv "$t" status ok
  case $t in
    restic-sftp|borg-ssh)
      if [ -z "$SSHD_PID" ]; then
        setv "$t" status FAILED; setv "$t" failstep sshd
        log "$t: FAILED: no private sshd ($SSHD_WHY)"; continue
      fi ;;
  esac
  "bench_$(tvar "$t")" || true
  # Restore dirs (78k files each) are removed only at the end: ext4 makes
  # inode allocation slow for minutes after a mass delete (it avoids
  # recently deleted inodes), which would tax whichever tool restores next.
  if [ "$KEEP" != 1 ]; then rm -rf "$RUN/repo-$t"; fi
done
sshd_stop

# --------------------------------------------------------------------- report
num() { awk -v x="$1" -v f="$2" 'BEGIN { if (x == "") print "-"; else printf f, x }'; }
mib() { [ -n "$1" ] && awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
mb()  { [ -n "$1" ] && awk -v b="$1" 'BEGIN { printf "%.1f", b / 1000000 }'; }
maxk() { awk 'BEGIN { m = "" } { for (i = 1; i <= NF; i++) if ($i != "" && (m == "" || $i + 0 > m)) m = $i + 0 } END { print m }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

for t in $TOOLS; do
  m=$(echo "$(getv $t backup1_kib) $(getv $t backup2_kib) $(getv $t restore_kib)" | maxk)
  setv "$t" peak_kib "$m"
  m=$(echo "$(getv $t backup1_srv) $(getv $t backup2_srv) $(getv $t restore_srv)" | maxk)
  setv "$t" srv_kib "$m"
done

status_text() { # TOOL
  case $(getv "$1" status) in
    FAILED) printf 'FAILED(%s)' "$(getv "$1" failstep)" ;;
    NA) printf 'not available: %s' "$(getv "$1" why)" ;;
    *) getv "$1" status ;;
  esac
}

DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
NCPU=$(nproc 2>/dev/null || echo '?')
MEM_MB=$(awk '/^MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo 2>/dev/null)

TXT=$RESULTS/latest.txt
JSON=$RESULTS/latest.json
{
  echo "keyhold benchmark  $DATE"
  echo "host: $NCPU CPU ($CPU), ${MEM_MB} MiB RAM, $(uname -sr)"
  echo "tree: $TREE ($TREE_FILES files, $(mb "$TREE_BYTES") MB)  -- warm page cache"
  echo "load average: $LOAD_START at start, $(cut -d' ' -f1 /proc/loadavg) at end"
  for t in $TOOLS; do
    case $t in
      keyhold) cfg='embedded region: init --region DIR, backup --quiet, restore latest' ;;
      keyholdd) cfg='through keyholdd serve --listen 127.0.0.1:0 --signup open (HTTP on loopback)' ;;
      restic) cfg='repo format v2 (zstd, compression auto)' ;;
      restic-sftp) cfg='repo format v2, sftp: repo on a private sshd, 127.0.0.1' ;;
      borg) cfg='repokey-blake2, --compression zstd,3' ;;
      borg-ssh) cfg='repokey-blake2, --compression zstd,3, ssh:// repo on a private sshd, 127.0.0.1' ;;
    esac
    echo "$t: $(getv $t version)  [$cfg]"
  done
  echo
  printf '%-11s %9s %9s %9s %9s %9s %9s %9s %9s %9s  %s\n' \
    tool 'backup1' 'backup2' 'restore' 'peakRSS' 'RSS b1' 'RSS b2' 'RSS rst' 'srvRSS' 'repo' status
  printf '%-11s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n' \
    '' s s s MiB MiB MiB MiB MiB MB
  for t in $TOOLS; do
    printf '%-11s %9s %9s %9s %9s %9s %9s %9s %9s %9s  %s\n' "$t" \
      "$(num "$(getv $t backup1_s)" %.2f)" "$(num "$(getv $t backup2_s)" %.2f)" \
      "$(num "$(getv $t restore_s)" %.2f)" \
      "$(num "$(mib "$(getv $t peak_kib)")" %s)" \
      "$(num "$(mib "$(getv $t backup1_kib)")" %s)" "$(num "$(mib "$(getv $t backup2_kib)")" %s)" \
      "$(num "$(mib "$(getv $t restore_kib)")" %s)" \
      "$(num "$(mib "$(getv $t srv_kib)")" %s)" \
      "$(num "$(mb "$(getv $t repo_bytes)")" %s)" "$(status_text $t)"
  done
  echo
  echo "peakRSS: the client (max over b1, b2, restore); srvRSS: the server side"
  echo "(keyholdd VmHWM; sftp-server / borg serve under GNU time), max over the same steps"
  echo
  printf '%-11s %9s %9s %9s %9s %9s %9s   (CPU seconds, user+sys)\n' '' 'b1 cpu' 'b2 cpu' 'rst cpu' \
    'srv b1' 'srv b2' 'srv rst'
  for t in $TOOLS; do
    printf '%-11s %9s %9s %9s %9s %9s %9s\n' "$t" "$(num "$(getv $t backup1_cpu)" %.2f)" \
      "$(num "$(getv $t backup2_cpu)" %.2f)" "$(num "$(getv $t restore_cpu)" %.2f)" \
      "$(num "$(getv $t backup1_srvcpu)" %.2f)" "$(num "$(getv $t backup2_srvcpu)" %.2f)" \
      "$(num "$(getv $t restore_srvcpu)" %.2f)"
  done
  echo "(client: the tool and its children, e.g. ssh; server: keyholdd, or every sshd"
  echo " connection with its sftp-server / borg serve)"
  echo
  # A/B ratios of every pair that says something: local vs over the network
  # for each tool, keyhold (embedded and through the server) vs the others.
  for pair in keyhold/restic keyhold/borg restic-sftp/restic borg-ssh/borg \
              keyhold/restic-sftp keyhold/borg-ssh keyholdd/keyhold \
              keyholdd/restic-sftp keyholdd/borg-ssh; do
    a=${pair%/*}; b=${pair#*/}
    has_tool "$a" && has_tool "$b" || continue
    printf '%-20s backup1 %-5s backup2 %-5s restore %-5s peakRSS %-5s repo %s\n' "$pair" \
      "$(ratio "$(getv $a backup1_s)" "$(getv $b backup1_s)")" \
      "$(ratio "$(getv $a backup2_s)" "$(getv $b backup2_s)")" \
      "$(ratio "$(getv $a restore_s)" "$(getv $b restore_s)")" \
      "$(ratio "$(getv $a peak_kib)" "$(getv $b peak_kib)")" \
      "$(ratio "$(getv $a repo_bytes)" "$(getv $b repo_bytes)")"
  done
} > "$TXT.tmp"

# targets: NAME SUBJECT_VALUE OTHER_VALUE FACTOR OTHER_TOOL [SUBJECT_TOOL]
MET=0; MISSED=0; UNKNOWN=0
TARGETS_JSON=
target() {
  _subj=${6:-keyhold}
  r=$(ratio "$2" "$3")
  if ! has_tool "$5" || [ -z "$3" ]; then v=n/a; UNKNOWN=$((UNKNOWN + 1))
  elif [ "$(getv "$_subj" status)" = NA ]; then v="n/a ($_subj not available)"; UNKNOWN=$((UNKNOWN + 1))
  elif [ "$(getv "$_subj" status)" = FAILED ]; then
    v="MISSED ($_subj FAILED at $(getv "$_subj" failstep))"; MISSED=$((MISSED + 1))
  elif [ "$r" = - ]; then v=n/a; UNKNOWN=$((UNKNOWN + 1))
  elif awk -v a="$2" -v b="$3" -v f="$4" 'BEGIN { exit !(a <= f * b) }'; then v=MET; MET=$((MET + 1))
  else v=MISSED; MISSED=$((MISSED + 1)); fi
  if [ "$(getv "$5" status)" = FAILED ] && [ "$v" != n/a ]; then
    v="$v ($5 FAILED; steps it completed only)"
  fi
  printf '  %-44s ratio %-6s %s\n' "$1" "$r" "$v" >> "$TXT.tmp"
  TARGETS_JSON="$TARGETS_JSON${TARGETS_JSON:+,}
    {\"target\": \"$1\", \"ratio\": \"$r\", \"result\": \"$v\"}"
}
if has_tool keyhold; then
  echo >> "$TXT.tmp"; echo "targets (keyhold vs):" >> "$TXT.tmp"
  target "first backup <= 0.5 x borg" "$(getv keyhold backup1_s)" "$(getv borg backup1_s)" 0.5 borg
  target "re-backup <= 0.5 x restic" "$(getv keyhold backup2_s)" "$(getv restic backup2_s)" 0.5 restic
  target "restore <= restic" "$(getv keyhold restore_s)" "$(getv restic restore_s)" 1 restic
  target "peak RSS <= restic" "$(getv keyhold peak_kib)" "$(getv restic peak_kib)" 1 restic
  target "repo size <= 1.05 x restic" "$(getv keyhold repo_bytes)" "$(getv restic repo_bytes)" 1.05 restic
  echo "  => $MET met, $MISSED missed, $UNKNOWN not measurable" >> "$TXT.tmp"
fi
if has_tool keyholdd; then
  m0=$MET; x0=$MISSED; u0=$UNKNOWN
  echo >> "$TXT.tmp"; echo "targets (keyhold through keyholdd vs, issue 9):" >> "$TXT.tmp"
  for o in keyhold restic-sftp borg-ssh; do
    case $o in keyhold) f=1.25 ;; *) f=0.5 ;; esac
    for s in backup1 restore; do
      case $s in backup1) sn="first backup" ;; *) sn=restore ;; esac
      target "server $sn <= $f x $o" "$(getv keyholdd ${s}_s)" "$(getv $o ${s}_s)" $f $o keyholdd
    done
  done
  echo "  => $((MET - m0)) met, $((MISSED - x0)) missed, $((UNKNOWN - u0)) not measurable" >> "$TXT.tmp"
fi
mv "$TXT.tmp" "$TXT"

jstr() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
jnum() { if [ -n "$1" ]; then printf '%s' "$1"; else printf 'null'; fi; }
{
  echo "{"
  echo "  \"date\": \"$DATE\","
  echo "  \"host\": {\"cpus\": $(jnum "$NCPU"), \"cpu\": \"$(jstr "$CPU")\", \"mem_mib\": $(jnum "$MEM_MB"), \"kernel\": \"$(jstr "$(uname -sr)")\"},"
  echo "  \"tree\": {\"path\": \"$(jstr "$TREE")\", \"files\": $TREE_FILES, \"bytes\": $TREE_BYTES},"
  echo "  \"page_cache\": \"warm\","
  echo "  \"loadavg_start\": $(jnum "$LOAD_START"),"
  echo "  \"tools\": {"
  first=1
  for t in $TOOLS; do
    [ $first = 1 ] || echo ","; first=0
    st=$(getv $t status); [ "$st" = NA ] && st="not available"
    printf '    "%s": {"version": "%s", "status": "%s", "reason": "%s", "failed_step": "%s", "verify": "%s",\n' \
      "$t" "$(jstr "$(getv $t version)")" "$st" "$(jstr "$(getv $t why)")" "$(getv $t failstep)" "$(getv $t verify)"
    printf '      "backup1_s": %s, "backup2_s": %s, "restore_s": %s,\n' \
      "$(jnum "$(getv $t backup1_s)")" "$(jnum "$(getv $t backup2_s)")" "$(jnum "$(getv $t restore_s)")"
    printf '      "backup1_rss_kib": %s, "backup2_rss_kib": %s, "restore_rss_kib": %s, "peak_rss_kib": %s,\n' \
      "$(jnum "$(getv $t backup1_kib)")" "$(jnum "$(getv $t backup2_kib)")" \
      "$(jnum "$(getv $t restore_kib)")" "$(jnum "$(getv $t peak_kib)")"
    printf '      "server_backup1_rss_kib": %s, "server_backup2_rss_kib": %s, "server_restore_rss_kib": %s, "server_peak_rss_kib": %s,\n' \
      "$(jnum "$(getv $t backup1_srv)")" "$(jnum "$(getv $t backup2_srv)")" \
      "$(jnum "$(getv $t restore_srv)")" "$(jnum "$(getv $t srv_kib)")"
    printf '      "backup1_cpu_s": %s, "backup2_cpu_s": %s, "restore_cpu_s": %s,\n' \
      "$(jnum "$(getv $t backup1_cpu)")" "$(jnum "$(getv $t backup2_cpu)")" "$(jnum "$(getv $t restore_cpu)")"
    printf '      "server_backup1_cpu_s": %s, "server_backup2_cpu_s": %s, "server_restore_cpu_s": %s,\n' \
      "$(jnum "$(getv $t backup1_srvcpu)")" "$(jnum "$(getv $t backup2_srvcpu)")" "$(jnum "$(getv $t restore_srvcpu)")"
    printf '      "repo_bytes": %s}' "$(jnum "$(getv $t repo_bytes)")"
  done
  echo
  echo "  },"
  echo "  \"targets\": [$TARGETS_JSON"
  echo "  ]"
  echo "}"
} > "$JSON.tmp" && mv "$JSON.tmp" "$JSON"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
cp "$TXT" "$RESULTS/$STAMP.txt"; cp "$JSON" "$RESULTS/$STAMP.json"

echo
cat "$TXT"
echo
echo "results: $TXT"
echo "results: $JSON"

rc=0
for t in $TOOLS; do [ "$(getv $t status)" = FAILED ] && rc=1; done
[ "$STRICT" = 1 ] && [ "$MISSED" -gt 0 ] && rc=1
exit $rc
