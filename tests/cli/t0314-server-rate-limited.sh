#!/bin/sh
# A device over its request rate (429 with Retry-After and a JSON body) is
# slowed down, never failed: a restore of many small files, whose ranged
# reads are smaller than the 429 answer's body, waits and retries, and
# restores byte for byte (the client once took such an answer for an
# object "larger than 33 bytes").
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/server.sh"

server_init eu-west
server_start --device-rate 150
unset KEYHOLD_PASSCODE_FILE
D1=$KH_T/dev1
as() { run env KEYHOLD_DEVICE_DIR="$D1" "$KEYHOLD" "$@"; }
as init --name laptop
assert_ok "init on the server"
mkdir -p "$KH_T/src"
i=0
while [ $i -lt 300 ]; do
  printf 'file %d %s\n' "$i" "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    >"$KH_T/src/f$i"
  i=$((i + 1))
done
as backup "$KH_T/src"
assert_ok "backup"
for n in 1 2 3; do
  as restore --path "$KH_T/src" latest --target "$KH_T/rt/$n"
  assert_ok "restore $n while the device is rate limited"
  assert_same_tree "$KH_T/src" "$KH_T/rt/$n$KH_T/src" "restore $n is byte-identical"
done
grep -q '"status":429' "$SRV_ACCESS" || fail "the server never rate-limited the device (the test proves nothing)"
pass
