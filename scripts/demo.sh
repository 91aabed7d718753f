#!/bin/sh
# make demo: the main job on the embedded default (a region in a local
# directory), narrated.  Everything lives under build/demo/ and is redone
# on each run.
set -eu
K=${1:-build/cmd/keyhold/keyhold}
K=$(cd "$(dirname "$K")" && pwd)/$(basename "$K")
D=$(pwd)/build/demo
rm -rf "$D"
mkdir -p "$D/home"
export HOME="$D/home" KEYHOLD_REGION="$D/region" KEYHOLD_PASSCODE_FILE="$D/passcode"
export KEYHOLD_CACHE_DIR="$D/cache" KEYHOLD_DEVICE_DIR="$D/device"
export KEYHOLD_OPERATOR_DIR="$D/operator"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "A sample tree: photos, notes, a name with a newline, a symlink, a sparse file"
S="$D/Documents"
mkdir -p "$S/photos" "$S/notes" "$S/empty"
printf 'Meet at the harbour at 7. SECRET-MARKER-4711\n' > "$S/notes/plans.txt"
head -c 2000000 /dev/urandom > "$S/photos/beach.jpg"
cp "$S/photos/beach.jpg" "$S/photos/beach-copy.jpg"
printf 'tricky' > "$S/notes/two
lines.txt"
ln -s notes/plans.txt "$S/latest-plans"
truncate -s 50M "$S/disk.img"
find "$S" | sed "s|$D/||" | sort

say "Create a region (the embedded default: a local directory) and an account"
printf 'correct horse battery staple\n' > "$KEYHOLD_PASSCODE_FILE"
run "$K" init

say "Back up (the snapshot id is the last line)"
run "$K" backup "$S"

say "Change a file, add one, back up again: only new data is stored"
printf 'Changed: meet at 8.\n' >> "$S/notes/plans.txt"
printf 'new\n' > "$S/notes/new.txt"
run "$K" backup "$S"
run "$K" snapshots
S1=$("$K" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"][:8])')
run "$K" diff "$S1" latest

say "What the provider holds: opaque, padded objects with random names"
(cd "$KEYHOLD_REGION" && find . -type f | sort | sed 's/^/  /' | head -20)
if grep -rq "SECRET-MARKER-4711" "$KEYHOLD_REGION" || grep -rqa "plans.txt" "$KEYHOLD_REGION"; then
  echo "  !! plaintext found in the region"; exit 1
else
  echo "  no file content and no file name appears anywhere in the region"
fi

say "Restore the first snapshot and compare"
run "$K" restore "$S1" --target "$D/restored"
if cmp -s "$D/restored$S/photos/beach.jpg" "$S/photos/beach.jpg" &&
   [ "$(cat "$D/restored$S/notes/plans.txt")" = "Meet at the harbour at 7. SECRET-MARKER-4711" ]; then
  echo "  restored files match; plans.txt has its old content, as in snapshot $S1"
else
  echo "  !! restored files differ"; exit 1
fi
printf '  disk.img: %s bytes, %s KiB on disk (still sparse)\n' \
  "$(stat -c %s "$D/restored$S/disk.img")" "$(du -k "$D/restored$S/disk.img" | cut -f1)"

say "Verify every byte"
run "$K" check --read-data

say "No silent back door: the operator's key use is logged, and the device sees it"
run "$K" whoami
ACCT=$("$K" whoami --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["account"])')
echo "\$ keyhold watch   # every key operation this device did not ask for"
"$K" watch && echo "  (exit 0: nothing the device did not do itself)"
run "$K" admin unwrap --account "$ACCT" --reason "demo: legal request #42"
echo "\$ keyhold watch"
"$K" watch || echo "  (exit $?: the device reports the operator's unwrap)"
run "$K" log checkpoint
run "$K" log verify


say "A provider flips one byte of a pack: check finds it and names what is hurt"
# the largest pack (pack sizes vary from run to run: blobs are shuffled)
P=$(find "$KEYHOLD_REGION/accounts" -path '*/data/*' -type f -printf '%s %p\n' | sort -n |
    tail -n 1 | cut -d' ' -f2-)
printf '\377' | dd of="$P" bs=1 seek=1000 conv=notrunc 2>/dev/null
"$K" check --read-data || echo "  (check exited $? — damage found, as it must)"

say "A new backup never reuses the damaged copy; repair brings the account back"
run "$K" backup "$S"
run "$K" repair index
run "$K" repair snapshots --forget
run "$K" check --read-data
run "$K" restore latest --target "$D/after-repair"
if cmp -s "$D/after-repair$S/photos/beach.jpg" "$S/photos/beach.jpg"; then
  echo "  the newest snapshot restores beach.jpg intact: the backup after the damage stored it again"
else
  echo "  !! beach.jpg did not restore intact after repair"; exit 1
fi
echo
echo "The embedded part is done: build/demo/ (region, cache, device keys).  Next: the region as a service (scripts/demo-server.sh)."
