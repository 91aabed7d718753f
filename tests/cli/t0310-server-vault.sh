#!/bin/sh
# The vault against a real keyholdd on loopback (docs/protocol.md §6-§8):
# init signs up (no passcode), backup, snapshots, restore byte-identical,
# a second backup deduplicates, check, forget + prune, whoami; backup and
# restore use several connections at once; the device's state and the
# pinned instance; no passcode wrap is stored.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/server.sh"

server_init eu-west
server_start
# no passcode anywhere: server mode must not need one
unset KEYHOLD_PASSCODE_FILE

# ---- init ------------------------------------------------------------------
khr init --name "laptop one"
assert_ok "keyhold init against the server"
assert_grep "^created account [0-9a-f]{32} in region eu-west at $URL\$" "$OUT" "init output"
assert_grep '^device [0-9a-f]{32}$' "$OUT" "init prints the device id"
ACCOUNT=$(sed -n 's/^created account \([0-9a-f]*\) .*/\1/p' "$OUT")
DEVICE=$(sed -n 's/^device //p' "$OUT")
INSTANCE=$(sed -n 's/^instance \([0-9a-f]*\)$/\1/p' "$SRV_DIR/keyhold-region")
[ -n "$INSTANCE" ] || INSTANCE=$(sed -n 's/^instance //p' "$KEYHOLD_DEVICE_DIR"/server-*/device)
STATE=$KEYHOLD_DEVICE_DIR/server-$INSTANCE
assert_exists "$STATE/device" "device state file"
assert_eq "$(stat -c %a "$STATE/device.key")" 600 "device.key is private"
assert_eq "$(stat -c %s "$STATE/device.key")" 96 "device.key holds both secrets"
assert_grep "^account $ACCOUNT\$" "$STATE/device" "state names the account"
assert_grep "^device $DEVICE\$" "$STATE/device" "state names the device"
assert_grep "^name laptop one\$" "$STATE/device" "state keeps the name"
assert_grep "^url $URL\$" "$STATE/device" "state keeps the URL"
AD=$SRV_DIR/accounts/$ACCOUNT
assert_exists "$AD/account" "the account marker is stored on the server"
assert_exists "$AD/protection" "the protection record"
assert_exists "$AD/devices/$DEVICE" "the device record"
assert_eq "$(stat -c %s "$AD/keys/$DEVICE")" 81 "the kind-4 device wrap (crypto_box_seal of 33 bytes)"
# no passcode wrap (kind 1) is ever stored in server mode
for k in "$AD"/keys/*; do
  if [ "$(head -c 7 "$k" | od -An -tx1 | tr -d ' \n')" = "4b484b45593101" ]; then
    fail "a passcode wrap was stored on the server: $k"
  fi
done
# a second init from the same device dir is refused
khr init
assert_fail "second init from the same device dir"
assert_grep 'already belongs to account' "$ERR" "second init says why"
# --json
KEYHOLD_DEVICE_DIR=$KH_T/state/dev2 run "$KEYHOLD" init --json --name other
assert_ok "init --json (second device dir: a second account)"
json_check "$OUT" "len(d['account']) == 32 and d['account'] != '$ACCOUNT' and d['region'] == 'eu-west' and d['url'] == '$URL' and len(d['device']) == 32" "init --json fields"
# usage errors
khr init --kdf-ops 1
assert_rc 2 "--kdf-ops against a server"
khr --region http://10.1.2.3:80 snapshots
assert_fail "plain http off loopback"
assert_grep 'only allowed to a loopback address' "$ERR" "plain http refusal says why"

khr accounts
assert_fail "accounts against a server"
assert_grep 'keyholdd admin accounts' "$ERR" "accounts says who lists a server's accounts"

# ---- whoami ----------------------------------------------------------------
khr whoami --json
assert_ok "whoami against the server"
json_check "$OUT" "d == {'account': '$ACCOUNT', 'region': 'eu-west', 'device': '$DEVICE', 'protection': 'standard'}" "whoami fields"

# ---- backup, snapshots, restore ----------------------------------------------
SRC=$KH_T/src
make_tree "$SRC" nofifo
mkdir -p "$SRC/big"
# many 2 MiB files: the workers share them out (a batch is half the queue),
# so when the first pack lands both still have packs to upload
for f in $(seq 1 32); do rand_file "$SRC/big/r$f.bin" 2048; done
# Several connections at once: once the first pack is stored the server is
# stopped (SIGSTOP: the kernel still accepts connections) while the two
# workers each try to upload their next pack; each needs a connection of
# its own, and ss sees them.  Then the server goes on.
touch "$KH_W/stamp"
# (not `run ... &`: the exit status of the background command itself)
"$KEYHOLD" --quiet backup --threads 2 "$SRC" >"$OUT" 2>"$ERR" &
BGPID=$!
i=0
while [ -z "$(find "$AD/data" -type f -newer "$KH_W/stamp" 2>/dev/null | head -n 1)" ]; do
  i=$((i + 1))
  [ $i -lt 1200 ] || fail "the backup stored no pack within 120 s"
  sleep 0.1
done
kill -STOP "$SPID"
MC=0
i=0
while [ "$MC" -lt 2 ] && [ $i -lt 250 ]; do
  c=$(ss -Htn state established "( dport = :$PORT )" | wc -l)
  [ "$c" -gt "$MC" ] && MC=$c
  i=$((i + 1))
  sleep 0.1
done
kill -CONT "$SPID"
wait "$BGPID"
RC=$?
assert_ok "backup against the server"
S1=$(tail -n 1 "$OUT")
is_hex64 "$S1" || fail "backup did not print a snapshot id"
[ "$MC" -ge 2 ] || fail "backup used $MC connection(s) at once, expected several"
if grep -rqF "$TRICKY_MARKER" "$SRV_DIR"; then fail "plaintext reached the server's storage"; fi
khr snapshots --json
assert_ok "snapshots"
json_check "$OUT" "len(d) == 1 and d[0]['id'] == '$S1' and d[0]['device'] == '$DEVICE'" "snapshots lists the backup"

tgt=$KH_T/rt/one
"$KEYHOLD" --quiet restore --threads 4 "$S1" --target "$tgt" >"$OUT" 2>"$ERR" &
BGPID=$!
MC=$(max_conns 300)
wait "$BGPID"
RC=$?
assert_ok "restore from the server"
diff -r --no-dereference "$SRC" "$tgt$SRC" >"$KH_W/diff" 2>&1 || fail "restore differs: $(head -5 "$KH_W/diff")"
assert_same_tree "$SRC" "$tgt$SRC" "restore from the server"
[ "$MC" -ge 2 ] || fail "restore used $MC connection(s) at once, expected several"

# ---- a second backup deduplicates -------------------------------------------
printf 'second\n' >"$SRC/docs/new.txt"
khr --quiet backup --json "$SRC"
assert_ok "second backup"
json_check "$OUT" "d['bytes_new_stored'] < 1048576" "second backup stores only what changed"
S2=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$OUT")
is_hex64 "$S2" || fail "second backup id"
khr snapshots --json
json_check "$OUT" "[x['id'] for x in d] == ['$S1', '$S2'] and d[1]['parent'] == '$S1'" "second snapshot has the first as parent"
restore_and_compare "$S2" "$SRC" "second snapshot"

# ---- ls, diff, find, stats, dump, check --------------------------------------
khr ls "$S2" "$SRC/docs"
assert_ok "ls"
assert_grep 'new.txt' "$OUT" "ls shows the new file"
khr diff "$S1" "$S2"
assert_ok "diff"
assert_grep -F "+    $SRC/docs/new.txt" "$OUT" "diff shows the added file"
khr find new.txt
assert_ok "find"
assert_grep -F "$SRC/docs/new.txt" "$OUT" "find finds it"
khr dump "$S2" "$SRC/docs/new.txt"
assert_ok "dump"
assert_eq "$(cat "$OUT")" "second" "dump prints the file"
khr stats
assert_ok "stats"
khr check --read-data
assert_ok "check --read-data against the server"
assert_grep 'no errors were found' "$OUT" "check finds no errors"

# ---- forget + prune ----------------------------------------------------------
npacks() { find "$AD/data" -type f | wc -l; }
rm -rf "$SRC/big"
khr backup "$SRC"
assert_ok "third backup"
S3=$(tail -n 1 "$OUT")
before=$(npacks)
khr forget "$S1" "$S2"
assert_ok "forget"
khr prune
assert_ok "prune against the server"
after=$(npacks)
[ "$after" -lt "$before" ] || fail "prune removed no pack ($before -> $after)"
assert_absent "$AD/snapshots/$S1" "forgotten snapshot"
restore_and_compare "$S3" "$SRC" "snapshot kept by prune"
khr check
assert_ok "check after prune"

# ---- the pinned instance -------------------------------------------------------
sed -i "s/^instance .*/instance 00000000000000000000000000000000/" "$STATE/device"
mv "$STATE" "$KEYHOLD_DEVICE_DIR/server-00000000000000000000000000000000"
khr snapshots
assert_fail "a server that is not the instance the device joined"
assert_grep 'this device joined instance 0{32}' "$ERR" "the refusal names the instance"
pass
