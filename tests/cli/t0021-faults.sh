#!/bin/sh
# Failing provider writes and local file writes (KH_FAULT=CLASS:N, see
# lib/common/fault.h) at every call site of backup and prune, from the
# command line: each run fails cleanly with exit 1 and an I/O error, and
# afterwards check passes and the earlier snapshot restores.
# (tests/unit/test_fault.c does the same, with allocations, in process.)
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
S=$KH_T/src
mkdir -p "$S/d"
rand_file "$S/a" 200
printf 'text\n' >"$S/d/b"
touch -d '2013-03-03' "$S/a" "$S/d/b" "$S/d" "$S"
cp -a "$S" "$KH_T/cp/v1"
backup_id "$S"
S1=$SNAP
rand_file "$S/c" 100
touch -d '2013-03-03' "$S"

# torture WHAT CMD...: run CMD with the Nth fault of each class until it
# succeeds; every failure is exit 1 and leaves the account usable (check
# passes, snapshot KEEP restores as KEEPCOPY).
torture() {
  t_what=$1
  shift
  for class in ${CLASSES:-provider. file. alloc.}; do
    n=1
    while :; do
      [ $n -le 400 ] || fail "$t_what: still failing after 400 $class faults"
      rm -f "$KH_W/fired"
      KH_FAULT=$class:$n KH_FAULT_LOG=$KH_W/fired khr "$@"
      if [ ! -s "$KH_W/fired" ]; then
        assert_ok "$t_what with no $class fault left to inject (N=$n)"
        break
      fi
      if [ "$RC" -eq 0 ]; then
        # the failure was absorbed (a cache write, say): the account must
        # still be whole, a new snapshot must follow the previous one
        # (parent and counter), and the loop goes on
        khr snapshots --json
        assert_ok "snapshots after $t_what absorbed $class fault $n"
        json_check "$OUT" "all(b['parent'] == a['id'] and b['counter'] > a['counter'] for a, b in zip(d, d[1:]))" \
          "$t_what absorbed $class fault $n: every snapshot follows the previous one"
        khr check --read-data
        assert_ok "check after $t_what absorbed $class fault $n"
        n=$((n + 1))
        continue
      fi
      assert_fail "$t_what with $class fault $n"
      # (the detail can still be a stale one when the failure happened in a
      # worker thread: "no space left on device: not a passcode wrap", an
      # item of issue 7 fixed elsewhere; then assert 'injected' here)
      case $class in alloc.) t_err='out of memory' ;; *) t_err='input/output error' ;; esac
      assert_grep "^keyhold: ($t_what|open account): $t_err: " "$ERR" "$t_what with $class fault $n: the error"
      khr check --read-data
      assert_ok "check after $t_what with $class fault $n"
      restore_and_compare "$KEEP" "$S" "$t_what with $class fault $n" "$KEEPCOPY"
      n=$((n + 1))
    done
    [ $n -gt 1 ] || fail "$t_what: no $class fault was injected"
    note "$t_what: $((n - 1)) $class faults, then success"
  done
}

KEEP=$S1 KEEPCOPY=$KH_T/cp/v1
torture backup backup "$S"
S2=$(tail -n 1 "$OUT")
is_hex64 "$S2" || fail "backup: no snapshot id"
cp -a "$S" "$KH_T/cp/v2"
khr forget "$S1"
assert_ok "forget"
KEEP=$S2 KEEPCOPY=$KH_T/cp/v2
torture prune prune
khr check --read-data
assert_ok "check at the end"
pass
