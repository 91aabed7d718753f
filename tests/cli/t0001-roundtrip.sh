#!/bin/sh
# init / backup / restore round trip of the tricky tree; the region holds no
# plaintext content or names; snapshot listing, ls, and snapshot names.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
SRC=$KH_T/src
make_tree "$SRC"

# no snapshots yet: `latest` has nothing to name
khr ls latest
assert_fail "ls latest in an empty account"
assert_grep 'no snapshot' "$ERR" "ls latest in an empty account"

# backup: summary on stdout, the id as the very last line
khr backup "$SRC"
assert_ok "backup"
SNAP=$(tail -n 1 "$OUT")
is_hex64 "$SNAP" || fail "backup: last stdout line is not a 64-hex snapshot id: '$SNAP'"
assert_grep '^files: +19$' "$OUT" "backup summary: files"
assert_grep '^dirs: +9$' "$OUT" "backup summary: dirs"
assert_grep '^others: +4$' "$OUT" "backup summary: others (3 symlinks + fifo)"

# round trip
restore_and_compare "$SNAP" "$SRC" "full restore"
# by unique prefix and by `latest`, too
restore_and_compare "$(printf %.8s "$SNAP")" "$SRC" "restore by 8-digit prefix"
restore_and_compare "$(printf %.4s "$SNAP")" "$SRC" "restore by 4-digit prefix"
restore_and_compare latest "$SRC" "restore latest"

# --quiet: only the id
khr --quiet backup "$SRC"
assert_ok "backup --quiet"
assert_eq "$(wc -l <"$OUT" | tr -d ' ')" 1 "backup --quiet prints one line"
SNAP2=$(cat "$OUT")
is_hex64 "$SNAP2" || fail "backup --quiet: not an id: $SNAP2"
[ "$SNAP2" != "$SNAP" ] || fail "second backup reused the snapshot id"

# ---- the provider learns nothing ------------------------------------------
R=$KEYHOLD_REGION
if grep -r -a -q -F "$TRICKY_MARKER" "$R"; then fail "region contains the plaintext marker"; fi
for name in marker.txt "file with spaces" "sub dir" "-leading-dash" "ünïcødé" "файл" \
  "hard linked content" "dangling target" "$SRC" "kh-$KH_TEST"; do
  if grep -r -a -q -F -- "$name" "$R"; then fail "region contains the plaintext string '$name'"; fi
  if find "$R" -name "*$name*" | grep -q .; then fail "region has an object named like '$name'"; fi
done
if grep -r -a -q -F "$(printf 'caf\351')" "$R"; then fail "region contains the non-UTF-8 name"; fi
# every object name is hex or a fixed lowercase word (docs/format.md §1):
# names are random, never derived from file names or content
# (log/ and kms/ belong to the region's key service, docs/log.md)
top=$(ls -A "$R" | grep -Evx 'keyhold-region|accounts|log|kms')
[ -z "$top" ] || fail "unexpected objects at the top of the region: $top"
bad=$(find "$R/accounts" -mindepth 1 | sed "s|^$R/accounts/||" | tr '/' '\n' | sort -u | grep -Ev '^([0-9a-f]+|[a-z]+)$')
[ -z "$bad" ] || fail "unexpected object names in the region: $bad"
[ -d "$R/accounts/$ACCOUNT/snapshots" ] || fail "no snapshots directory where docs/format.md puts it"
[ "$(find "$R/accounts/$ACCOUNT/data" -type f | grep -Evc '/data/([0-9a-f]{2})/\1[0-9a-f]{62}$')" = 0 ] ||
  fail "pack names are not data/<2 hex>/<64 hex>"

# ---- snapshots --json ---------------------------------------------------
khr snapshots --json
assert_ok "snapshots --json"
json_check "$OUT" "isinstance(d, list) and len(d) == 2" "snapshots --json is an array of 2"
json_check "$OUT" "d[0]['id'] == '$SNAP' and d[1]['id'] == '$SNAP2'" "snapshot ids, oldest first"
json_check "$OUT" "all(s['paths'] == ['$SRC'] for s in d)" "snapshot paths"
json_check "$OUT" "all(s['short_id'] == s['id'][:8] for s in d)" "short_id"
json_check "$OUT" "all(__import__('re').fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z', s['time']) for s in d)" "time is RFC 3339 UTC with ns"
json_check "$OUT" "d[0]['parent'] is None and d[1]['parent'] == '$SNAP'" "parent"
json_check "$OUT" "d[0]['counter'] < d[1]['counter'] and d[0]['device'] == d[1]['device']" "device counter"
json_check "$OUT" "all(s['files'] == 19 for s in d)" "files total"
khr snapshots
assert_ok "snapshots"
assert_grep "^$(printf %.8s "$SNAP") " "$OUT" "snapshots table lists the first snapshot"
assert_grep '^2 snapshots$' "$OUT" "snapshots table footer"

# ---- ls lists every path, escaped, depth first in byte order -------------
python3 - "$SRC" >"$KH_W/ls.expected" <<'PY' || fail "python: expected ls"
import os, sys
src = os.fsencode(sys.argv[1])
def esc(b):
    out, i = [], 0
    while i < len(b):
        c = b[i]
        if c == 0x0a:
            out.append('\\n'); i += 1; continue
        if 0x20 <= c < 0x7f:
            out.append(chr(c)); i += 1; continue
        if c >= 0x80:
            for n in (4, 3, 2):
                try:
                    s = b[i:i+n].decode('utf-8')
                    if len(s) == 1:
                        out.append(s); i += n; break
                except UnicodeDecodeError:
                    pass
            else:
                out.append('\\x%02x' % c); i += 1
            continue
        out.append('\\x%02x' % c); i += 1
    return ''.join(out)
parts = src.split(b'/')[1:]
for k in range(1, len(parts)):
    print(esc(b'/' + b'/'.join(parts[:k])))
def walk(p):
    print(esc(p))
    if os.path.isdir(p) and not os.path.islink(p):
        for n in sorted(os.listdir(p)):
            walk(p + b'/' + n)
walk(src)
PY
khr ls "$SNAP"
assert_ok "ls"
grep -v '^/$' "$OUT" >"$KH_W/ls.actual"
if ! cmp -s "$KH_W/ls.expected" "$KH_W/ls.actual"; then
  diff "$KH_W/ls.expected" "$KH_W/ls.actual" | head -n 20 >&2
  fail "ls does not list exactly the tree (depth first, byte order, escaped)"
fi
assert_grep -F "$SRC/docs/caf\\xe9" "$OUT" "ls escapes a non-UTF-8 byte as \\xNN"
assert_grep -F "$SRC/docs/new\\nline" "$OUT" "ls escapes a newline as \\n"
# latest and prefixes name the same snapshot
khr ls latest
assert_ok "ls latest"
grep -v '^/$' "$OUT" >"$KH_W/ls.latest"
cmp -s "$KH_W/ls.expected" "$KH_W/ls.latest" || fail "ls latest differs from ls <id>"
# ls -l shows the symlink target and modes
khr ls -l "$SNAP" "$SRC/docs"
assert_ok "ls -l PATH"
assert_grep -F " $SRC/docs/link-rel -> sub dir/file with spaces.txt" "$OUT" "ls -l symlink target"
assert_grep -F "-rw------- " "$OUT" "ls -l mode string of a 0600 file"
assert_no_grep -F "$SRC/bin" "$OUT" "ls PATH lists only below PATH"
khr ls "$SNAP" "$SRC/no such"
assert_rc 1 "ls of a path not in the snapshot"

# ---- bad snapshot names --------------------------------------------------
# unknown prefix: a 6-digit prefix that matches neither snapshot
unk=000000
for p in 000000 111111 222222 333333; do
  case "$SNAP$SNAP2" in *"$p"*) ;; *) unk=$p; break ;; esac
done
case "$SNAP" in "$unk"*) unk=ffffff ;; esac
case "$SNAP2" in "$unk"*) unk=eeeeee ;; esac
khr ls "$unk"
assert_fail "ls of an unknown prefix"
assert_grep "no snapshot|not found" "$ERR" "unknown prefix message"
khr restore "$unk" --target "$KH_T/rt/never"
assert_fail "restore of an unknown prefix"
assert_absent "$KH_T/rt/never$SRC/docs/marker.txt" "restore of an unknown prefix"
khr ls abc
assert_fail "ls with a 3-digit prefix"
khr ls "zzzz"
assert_fail "ls with a non-hex name"
# ambiguous: a second object whose name shares the first 8 digits
AD=$(account_dir)
last=$(printf %s "$SNAP" | cut -c64)
if [ "$last" = 0 ]; then repl=1; else repl=0; fi
FAKE=$(printf %.63s "$SNAP")$repl
cp "$AD/snapshots/$SNAP" "$AD/snapshots/$FAKE" || fail "copy snapshot object"
khr ls "$(printf %.8s "$SNAP")"
assert_fail "ls of an ambiguous prefix"
assert_grep "ambiguous|matches 2" "$ERR" "ambiguous prefix message"
khr forget "$(printf %.8s "$SNAP")"
assert_fail "forget of an ambiguous prefix"
assert_exists "$AD/snapshots/$SNAP" "forget of an ambiguous prefix removed nothing"
rm -f "$AD/snapshots/$FAKE"
# the full id still works
khr ls "$SNAP" "$SRC/docs/marker.txt"
assert_ok "ls by full id"
assert_eq "$(cat "$OUT")" "$SRC/docs/marker.txt" "ls of one file"

pass
