#!/bin/sh
# make demo, part 2: the region as a service.  A keyholdd on loopback, a
# person's first device backing up through it, a second device approved by
# code and restoring, a backup-only device refused a prune, and the
# operator's logged unwrap reported by the device's watch.  Everything
# lives under build/demo/service/ and is redone on each run.
set -eu
K=${1:-build/cmd/keyhold/keyhold}
KHD=${2:-build/srv/keyholdd/keyholdd}
K=$(cd "$(dirname "$K")" && pwd)/$(basename "$K")
KHD=$(cd "$(dirname "$KHD")" && pwd)/$(basename "$KHD")
D=$(pwd)/build/demo/service
rm -rf "$D"
mkdir -p "$D/home"
export HOME="$D/home" KEYHOLD_OPERATOR_DIR="$D/operator"
unset KEYHOLD_REGION KEYHOLD_PASSCODE_FILE KEYHOLD_DEVICE_DIR KEYHOLD_CACHE_DIR
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
# as NAME CMD...: keyhold on the device whose keys live in $D/NAME
as() {
  n=$1; shift
  printf '[%s]$ keyhold %s\n' "$n" "$*"
  KEYHOLD_DEVICE_DIR="$D/$n" KEYHOLD_CACHE_DIR="$D/$n/cache" "$K" "$@"
}
# add NAME: `keyhold device add` on a new device in the background, until it
# shows its code (CODE, APID)
add() {
  rm -f "$D/add.out" "$D/add.err"
  KEYHOLD_DEVICE_DIR="$D/$1" KEYHOLD_CACHE_DIR="$D/$1/cache" "$K" device add --name "$1" \
    --timeout 60 >"$D/add.out" 2>"$D/add.err" &
  APID=$!
  i=0
  until grep -q '^code ' "$D/add.out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 $APID 2>/dev/null; then
      echo "  !! device add printed no code: $(cat "$D/add.err")"; exit 1
    fi
    sleep 0.1
  done
  CODE=$(sed -n 's/^code //p' "$D/add.out")
  echo "[$1]\$ keyhold device add --name $1"
  echo "code $CODE"
}

say "A region server: keyholdd on loopback (its own metadata, storage, key service and log)"
run "$KHD" init --dir "$D/region" --region-id eu-west | tee "$D/init.out"
"$KHD" serve --dir "$D/region" --listen 127.0.0.1:0 --signup open \
  --access-log "$D/access.log" 2>"$D/keyholdd.err" &
KPID=$!
trap 'kill $KPID 2>/dev/null; wait $KPID 2>/dev/null' EXIT
i=0
until grep -q '^listening on ' "$D/keyholdd.err" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 100 ] || ! kill -0 $KPID 2>/dev/null; then
    echo "  !! keyholdd did not start: $(cat "$D/keyholdd.err")"; exit 1
  fi
  sleep 0.1
done
URL=$(sed -n 's/^listening on //p' "$D/keyholdd.err")
echo "  keyholdd: listening on $URL"
export KEYHOLD_REGION="$URL"

say "The first device (a laptop) signs up and backs up through the server"
S="$D/home/Pictures"
mkdir -p "$S/2026"
head -c 3000000 /dev/urandom >"$S/2026/beach.jpg"
printf 'grandma, 1961\n' >"$S/2026/caption.txt"
as laptop init --name laptop
as laptop backup "$S"
as laptop snapshots

say "A second device (a phone) joins: it shows a code, the laptop approves it"
add phone
as laptop device approve "$CODE" --can read,backup
wait $APID
echo "  (the phone's device add exited 0: it holds the account key, wrapped to its own key)"
as phone restore --path "$S" latest --target "$D/restored"
cmp "$S/2026/beach.jpg" "$D/restored$S/2026/beach.jpg" &&
  echo "  the phone restored beach.jpg byte for byte"

say "A backup-only device (a build box) can add backups but cannot destroy history"
add buildbox
as laptop device approve "$CODE" --can backup
wait $APID
as buildbox backup "$S"
if as buildbox prune; then
  echo "  !! a backup-only device was allowed to prune"; exit 1
else
  echo "  (refused, exit $?: the server enforces the device's capabilities)"
fi
as laptop device list

say "No silent back door: the operator's unwrap is logged first, and the laptop sees it"
ACCT=$(KEYHOLD_DEVICE_DIR="$D/laptop" KEYHOLD_CACHE_DIR="$D/laptop/cache" "$K" whoami --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["account"])')
run "$KHD" admin unwrap --dir "$D/region" --account "$ACCT" --reason "demo: legal request #42"
if as laptop watch; then
  echo "  !! watch did not report the operator's unwrap"; exit 1
else
  echo "  (exit $?: the laptop reports the operator's unwrap of its account)"
fi

say "An auditor anywhere verifies the region's log over HTTP, with the log key from keyholdd init"
VKEY=$(sed -n 's/^log-key //p' "$D/init.out")
echo "\$ keyhold log verify --log $URL/log --key <the log key printed by keyholdd init>"
"$K" log verify --log "$URL/log" --key "$VKEY"

kill -TERM $KPID
wait $KPID && echo "  (keyholdd stopped cleanly on SIGTERM; $(wc -l <"$D/access.log") requests in its JSON access log)"
trap - EXIT
echo
echo "Done. The service part is under build/demo/service/ (server region, each device's keys and cache)."
