#!/bin/sh
# keyhold's log checked by Go's reference implementation (Debian packages
# golang-go and golang-golang-x-mod-dev, offline, GOPATH mode): a
# checkpoint cosigned by a keyhold witness opens with note.Open (and a
# cosignature verifier written from c2sp.org/tlog-cosignature), the tiles
# rehash to the signed roots under tlog.TileHashReader, the key service's
# inclusion proof of a release passes tlog.CheckRecord and equals Go's own,
# and a consistency proof made by Go's tlog.ProveTree passes
# `keyhold log consistency`.  Skipped (77) without Go.
. "$KH_SRCDIR/tests/cli/lib.sh"

GOSRC=/usr/share/gocode
if ! command -v go >/dev/null 2>&1 || [ ! -d "$GOSRC/src/golang.org/x/mod/sumdb/tlog" ]; then
  echo "SKIP: go or golang.org/x/mod missing (apt-get install golang-go golang-golang-x-mod-dev)"
  exit 77
fi
GO111MODULE=off GOPATH=$GOSRC GOCACHE=$KH_T/gocache GOPROXY=off GOFLAGS= GOTOOLCHAIN=local
export GO111MODULE GOPATH GOCACHE GOPROXY GOFLAGS GOTOOLCHAIN
run go build -o "$KH_T/kh_goverify" "$KH_SRCDIR/tests/go/kh_goverify.go"
assert_ok "go build kh_goverify"

KEYHOLD_OPERATOR_DIR=$KH_T/operator
export KEYHOLD_OPERATOR_DIR
kh_init
W=$KH_T/witness

khr log key
assert_ok "log key"
LOGKEY=$(cat "$OUT")
khr log checkpoint
assert_ok "log checkpoint"
ORIGIN=$(head -n 1 "$OUT")
khr witness --state "$W" init --name witness.example/w1
assert_ok "witness init"
WITKEY=$(cat "$OUT")
khr witness --state "$W" key
assert_ok "witness key"
WITKEY=$(cat "$OUT")
khr witness --state "$W" add-log --origin "$ORIGIN" --key "$LOGKEY"
assert_ok "witness add-log"

# grow the log across several operations, cosign, grow further
printf 'data\n' >"$KH_T/f"
backup_id "$KH_T/f"
for i in 1 2 3; do
  khr admin unwrap --account "$ACCOUNT" --reason "go check $i" --key-out "$KH_T/k$i.hex"
  assert_ok "admin unwrap $i"
done
khr witness --state "$W" cosign --log "$KEYHOLD_REGION/log"
assert_ok "witness cosign"
cp "$OUT" "$KH_T/cosigned"
khr --json admin unwrap --account "$ACCOUNT" --reason "go check release" --key-out "$KH_T/k4.hex"
assert_ok "admin unwrap --json"
cp "$OUT" "$KH_T/release.json"
for i in 5 6; do
  khr admin unwrap --account "$ACCOUNT" --reason "go check $i" --key-out "$KH_T/k$i.hex"
  assert_ok "admin unwrap $i"
done

run "$KH_T/kh_goverify" -log "$KEYHOLD_REGION/log" -logkey "$LOGKEY" -witkey "$WITKEY" \
  -cosigned "$KH_T/cosigned" -release "$KH_T/release.json"
assert_ok "Go verifies keyhold's checkpoint, cosignature, tiles and inclusion proof"
read -r S1 S2 R1 R2 P <"$OUT" || fail "kh_goverify output"
[ "$S1" -ge 4 ] && [ "$S2" -gt "$S1" ] || fail "sizes $S1 -> $S2"
khr log consistency --size1 "$S1" --size2 "$S2" --root1 "$R1" --root2 "$R2" --proof "$P"
assert_ok "keyhold verifies Go's consistency proof"
# and refuses it for a root it does not lead to
khr log consistency --size1 "$S1" --size2 "$S2" --root1 "$R2" --root2 "$R2" --proof "$P"
assert_rc 1 "keyhold refuses Go's proof for another root"
pass
