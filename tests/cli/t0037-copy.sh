#!/bin/sh
# keyhold copy: snapshots of an account in one region re-encrypted into an
# account in another region.  Both restore to the same tree; the copy keeps
# time, host, paths and tags and names its source; no source ciphertext or
# plaintext marker lands in the destination; a second run copies nothing; a
# new source snapshot is copied alone; copying back is refused as a copy.
. "$KH_SRCDIR/tests/cli/lib.sh"

SRC=$KH_T/src
make_tree "$SRC" nofifo
REGION_A=$KH_T/region-a
REGION_B=$KH_T/region-b
KEYHOLD_REGION=$REGION_A
kh_init --region-id eu-west
ACCT_A=$ACCOUNT
backup_id --host laptop --tag daily "$SRC"; A1=$SNAP
printf 'second version\n' >"$SRC/docs/marker.txt"
backup_id --host laptop "$SRC"; A2=$SNAP
cp -a "$SRC" "$KH_T/cp/v2"

KEYHOLD_REGION=$REGION_B
kh_init --region-id cn-north
ACCT_B=$ACCOUNT
# the destination's own, unrelated snapshot
mkdir -p "$KH_T/other" && printf 'b only\n' >"$KH_T/other/f"
backup_id --host server "$KH_T/other"; B0=$SNAP

# ---- usage ------------------------------------------------------------------------
khr copy --from-region "$REGION_B" --from-passcode-file "$KEYHOLD_PASSCODE_FILE"
assert_rc 2 "copy from the destination account itself"
assert_grep -F "the source is the destination account" "$ERR" "same-account message"
khr copy --from-region "$REGION_A" --from-account ffff --from-passcode-file "$KEYHOLD_PASSCODE_FILE"
assert_fail "copy from an unknown source account"
assert_grep -F "no account ffff in this region" "$ERR" "unknown account message"
printf 'wrong\n' >"$KH_W/wrong"
khr copy --from-region "$REGION_A" --from-passcode-file "$KH_W/wrong"
assert_fail "copy with a wrong source passcode"
assert_grep -F "open source account: wrong passcode" "$ERR" "wrong passcode message"

# ---- copy everything ------------------------------------------------------------------
khr copy --from-region "$REGION_A" --from-account "$(printf '%.6s' "$ACCT_A")" \
  --from-passcode-file "$KEYHOLD_PASSCODE_FILE"
assert_ok "copy A -> B"
assert_grep "^copied $(printf '%.8s' "$A1") -> [0-9a-f]{64}$" "$OUT" "first snapshot copied"
assert_grep "^copied $(printf '%.8s' "$A2") -> [0-9a-f]{64}$" "$OUT" "second snapshot copied"
assert_grep '^2 copied, 0 skipped, ' "$OUT" "summary"
B1=$(sed -n "s/^copied $(printf '%.8s' "$A1") -> //p" "$OUT")
B2=$(sed -n "s/^copied $(printf '%.8s' "$A2") -> //p" "$OUT")

# the copies carry time, host, paths, tags and their source
KEYHOLD_REGION=$REGION_A khr --json snapshots
cp "$OUT" "$KH_W/snaps-a.json"
khr --json snapshots
cp "$OUT" "$KH_W/snaps-b.json"
python3 - "$KH_W/snaps-a.json" "$KH_W/snaps-b.json" "$A1" "$A2" "$B1" "$B2" "$B0" <<'EOF' || fail "copied snapshots' fields"
import json, sys
a = {s["id"]: s for s in json.load(open(sys.argv[1]))}
b = {s["id"]: s for s in json.load(open(sys.argv[2]))}
a1, a2, b1, b2, b0 = sys.argv[3:8]
assert set(b) == {b0, b1, b2}, sorted(b)
for src, dst in ((a1, b1), (a2, b2)):
    for k in ("time", "host", "paths", "tags", "files", "bytes"):
        assert a[src][k] == b[dst][k], (k, a[src][k], b[dst][k])
    assert b[dst]["copy_of"] == src
    assert b[dst]["tree"] != a[src]["tree"]   # rebuilt under other keys
assert b[b1]["tags"] == ["daily"] and b[b1]["host"] == "laptop"
assert b[b0]["copy_of"] is None and a[a1]["copy_of"] is None
# ordered as their sources were, by time: the older copies come before the
# destination's own (newer) snapshot although this device signed them later
order = [s["id"] for s in json.load(open(sys.argv[2]))]
assert order == [b1, b2, b0], order
assert b[b1]["counter"] > b[b0]["counter"]
EOF

# both restore to the same tree as the source's snapshots
restore_and_compare "$B2" "$SRC" "restore of the copy" "$KH_T/cp/v2"
KEYHOLD_REGION=$REGION_A restore_and_compare "$A2" "$SRC" "restore of the source" "$KH_T/cp/v2"
tgt_a=$KH_T/rt/a tgt_b=$KH_T/rt/b
KEYHOLD_REGION=$REGION_A khr restore "$A1" --target "$tgt_a"
assert_ok "restore A1"
khr restore "$B1" --target "$tgt_b"
assert_ok "restore B1"
run diff -r --no-dereference "$tgt_a" "$tgt_b"
assert_ok "diff -r of the restored first snapshot from both regions"
assert_eq "$(cat "$tgt_b$SRC/docs/marker.txt")" "the secret marker $TRICKY_MARKER lives here" "the first version's content"
rm -rf "$tgt_a" "$tgt_b"
khr check --read-data
assert_ok "check --read-data of the destination"

# nothing readable crossed over: no plaintext marker, no source pack or index object
if grep -rqF "$TRICKY_MARKER" "$REGION_B"; then fail "the plaintext marker is in the destination region"; fi
(cd "$REGION_A/accounts/$ACCT_A" && find data index -type f -printf '%f\n' | sort) >"$KH_W/objs-a"
(cd "$REGION_B/accounts/$ACCT_B" && find data index -type f -printf '%f\n' | sort) >"$KH_W/objs-b"
[ -z "$(comm -12 "$KH_W/objs-a" "$KH_W/objs-b")" ] || fail "an object of the source was copied as is"

# ---- a second run copies nothing ----------------------------------------------------------
find "$REGION_B" -type f | sort >"$KH_W/files-before"
khr copy --from-region "$REGION_A" --from-passcode-file "$KEYHOLD_PASSCODE_FILE"
assert_ok "second copy"
assert_grep '^0 copied, 2 skipped, 0 B new \(0 B stored\)$' "$OUT" "second run copies nothing"
assert_grep "^skipped $(printf '%.8s' "$A1") \(already copied\)$" "$OUT" "first reported as skipped"
find "$REGION_B" -type f | grep -v '/locks/' | sort >"$KH_W/files-after"
grep -v '/locks/' "$KH_W/files-before" | cmp -s - "$KH_W/files-after" || fail "the second copy wrote objects"

# ---- a new source snapshot is copied alone; unchanged data is not stored again --------------
printf 'third version\n' >"$SRC/docs/marker.txt"
KEYHOLD_REGION=$REGION_A backup_id --host laptop "$SRC"; A3=$SNAP
khr --json copy --from-region "$REGION_A" --from-passcode-file "$KEYHOLD_PASSCODE_FILE"
assert_ok "third copy (json)"
json_check "$OUT" "len(d['copied']) == 1 and d['copied'][0]['source'] == '$A3' and sorted(d['skipped']) == sorted(['$A1', '$A2']) and 0 < d['bytes_new'] < 100000" "only the new snapshot is copied, and only its new data"
B3=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["copied"][0]["id"])' "$OUT")
khr --json snapshots
json_check "$OUT" "[s['id'] for s in d] == ['$B1', '$B2', '$B0', '$B3']" "the newest copy is the newest snapshot"
KH_NREST=$((KH_NREST + 1))
khr restore "$B3" --target "$KH_T/rt/b3"
assert_ok "restore of the third copy"
assert_eq "$(cat "$KH_T/rt/b3$SRC/docs/marker.txt")" "third version" "the third copy's content"

# ---- naming source snapshots: latest of one group, --host/--path/--tag ------------------------
# B holds two groups (laptop $SRC, server other): latest alone is refused
KEYHOLD_REGION=$REGION_A KEYHOLD_ACCOUNT=$ACCT_A khr copy --from-region "$REGION_B" \
  --from-passcode-file "$KEYHOLD_PASSCODE_FILE" latest
assert_rc 2 "copy latest of a source with two groups"
assert_grep -F "choose one with --host and --path" "$ERR" "copy latest: ambiguity explained"
assert_grep -F "--host 'server' --path '$KH_T/other'" "$ERR" "copy latest: the server group listed"
KEYHOLD_REGION=$REGION_A KEYHOLD_ACCOUNT=$ACCT_A khr copy --from-region "$REGION_B" \
  --from-passcode-file "$KEYHOLD_PASSCODE_FILE" --host laptop --path "$SRC" latest latest~1
assert_ok "copy --host --path latest latest~1"
assert_grep "^skipped $(printf '%.8s' "$B3") \(already copied\)$" "$OUT" "latest of laptop is B3 (a copy of A3)"
assert_grep "^skipped $(printf '%.8s' "$B2") \(already copied\)$" "$OUT" "latest~1 of laptop is B2"
assert_grep '^0 copied, 2 skipped, ' "$OUT" "copy latest latest~1: summary"
KEYHOLD_REGION=$REGION_A KEYHOLD_ACCOUNT=$ACCT_A khr copy --from-region "$REGION_B" \
  --from-passcode-file "$KEYHOLD_PASSCODE_FILE" --tag daily
assert_ok "copy --tag daily (no SNAPSHOT: what the filter selects)"
assert_grep "^skipped $(printf '%.8s' "$B1") \(already copied\)$" "$OUT" "--tag daily selects B1"
assert_grep '^0 copied, 1 skipped, ' "$OUT" "copy --tag daily: B1 only"
KEYHOLD_REGION=$REGION_A KEYHOLD_ACCOUNT=$ACCT_A khr copy --from-region "$REGION_B" \
  --from-passcode-file "$KEYHOLD_PASSCODE_FILE" --host nosuch
assert_ok "copy --host that selects nothing"
assert_grep '^0 copied, 0 skipped, ' "$OUT" "a filter selecting nothing copies nothing (not everything)"

# ---- copying back: the copies are recognised in the other direction --------------------------
KEYHOLD_REGION=$REGION_A KEYHOLD_ACCOUNT=$ACCT_A khr copy --from-region "$REGION_B" \
  --from-passcode-file "$KEYHOLD_PASSCODE_FILE"
assert_ok "copy B -> A"
assert_grep '^1 copied, 3 skipped, ' "$OUT" "only B's own snapshot is copied back"
assert_grep "^copied $(printf '%.8s' "$B0") -> " "$OUT" "B0 copied back"

# ---- damaged source data: the copy stops with exit 1, nothing half-made stays ---------------
mkdir -p "$KH_T/fresh"
rand_file "$KH_T/fresh/r.bin" 6000
KEYHOLD_REGION=$REGION_A backup_id --host laptop "$KH_T/fresh"; A4=$SNAP
PACK=$(largest_pack "$REGION_A/accounts/$ACCT_A")
flip_byte "$PACK" $(($(stat -c %s "$PACK") / 2))
khr snapshots --json
NB=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$OUT")
khr copy --from-region "$REGION_A" --from-passcode-file "$KEYHOLD_PASSCODE_FILE" "$A4"
assert_fail "copy of a snapshot whose data is damaged"
assert_grep "copy: authentication failed" "$ERR" "the error names the failed authentication"
khr snapshots --json
json_check "$OUT" "len(d) == $NB and all(s['copy_of'] != '$A4' for s in d)" "no snapshot was made for the damaged source"
pass
