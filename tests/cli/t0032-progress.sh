#!/bin/sh
# Seeing what happens.  backup/restore --json stream NDJSON status objects
# then the summary; the totals and an ETA are known within seconds (the
# counting walk runs ahead of the bounded one), the files in flight are
# named, the last status of a restore counts what its summary counts (hard
# links, holes); -q leaves only the summary; the summary says files new /
# changed / unmodified; -v lists new and changed files, -vv every file;
# the terminal line has the percentage, files, bytes, rate, ETA and the
# files in flight; diff reports bytes added and removed.
. "$KH_SRCDIR/tests/cli/lib.sh"

kh_init
SRC=$KH_T/src
big_tree "$SRC" 1          # 800 files, ~62 MB, incompressible
NF=800
TOTAL=$(tree_size "$SRC")

# ---- backup --json: the stream -------------------------------------------------
khr --limit-upload 10240 backup --json "$SRC"
assert_ok "backup --json"
ndjson_check "$OUT" "all(x['message_type'] == 'status' for x in d[:-1]) and d[-1]['message_type'] == 'summary'" "status objects, then the summary last"
ndjson_check "$OUT" "len(d) >= 4" "a 6-second backup writes a status object about every second"
ndjson_check "$OUT" "all(set(x) >= {'seconds_elapsed', 'percent_done', 'total_files', 'files_done', 'total_bytes', 'bytes_done', 'error_count', 'scan_finished', 'current_files'} for x in d[:-1])" "status fields"
# the totals and the time left are known within seconds, while the bounded
# walk itself cannot have ended: it waits for the workers until at most 256
# files are queued, so with fewer than 500 of 800 files done it is still
# running
ndjson_check "$OUT" "any(x['scan_finished'] and 'seconds_remaining' in x and x['total_files'] == $NF and x['total_bytes'] == $TOTAL and x['seconds_elapsed'] < 3 and x['files_done'] < 500 for x in d[:-1])" "ETA and exact totals within seconds"
ndjson_check "$OUT" "all(a['percent_done'] <= b['percent_done'] for a, b in zip(d[:-2], d[1:-1]))" "percent_done never goes back"
ndjson_check "$OUT" "any(x['current_files'] and all(f.startswith('$SRC/d') for f in x['current_files']) for x in d[:-1])" "the files in flight are named"
ndjson_check "$OUT" "d[-2]['files_done'] == d[-2]['total_files'] == $NF and d[-2]['bytes_done'] == d[-2]['total_bytes'] == $TOTAL and d[-2]['percent_done'] == 1 and d[-2]['current_files'] == []" "the last status is complete"
ndjson_check "$OUT" "d[-1]['files'] == $NF and d[-1]['files_new'] == $NF and d[-1]['files_changed'] == 0 and d[-1]['files_unmodified'] == 0" "first backup: every file is new"
S1=$(tail -n 1 "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

# -q: only the summary
khr -q backup --json "$SRC"
assert_ok "backup -q --json"
assert_eq "$(wc -l <"$OUT" | tr -d ' ')" 1 "with -q, --json prints only the summary"
json_check "$OUT" "d['message_type'] == 'summary' and d['files_unmodified'] == $NF" "unchanged: every file unmodified"

# ---- new / changed / unmodified, -v and -vv ---------------------------------------
printf 'changed one\n' >>"$SRC/d00/f000"
printf 'changed two\n' >>"$SRC/d05/f010"
touch -d '2001-01-01' "$SRC/d07/f007" # same content, other mtime: read again
head -c 100000 /dev/urandom >"$SRC/d01/new-a"
head -c 5000 /dev/urandom >"$SRC/d19/new-b"
khr -v backup "$SRC"
assert_ok "backup -v"
S2=$(tail -n 1 "$OUT")
is_hex64 "$S2" || fail "backup -v: the last line is the id"
grep -E '^(new|modified|unmodified) ' "$OUT" | sort >"$KH_W/v.lines"
cat >"$KH_W/v.expected" <<EOF
modified   $SRC/d00/f000 ($(python3 -c "print('%.1f KiB' % ($(stat -c %s "$SRC/d00/f000") / 1024))"))
modified   $SRC/d05/f010 ($(python3 -c "print('%.1f KiB' % ($(stat -c %s "$SRC/d05/f010") / 1024))"))
modified   $SRC/d07/f007 ($(python3 -c "print('%.1f KiB' % ($(stat -c %s "$SRC/d07/f007") / 1024))"))
new        $SRC/d01/new-a (97.7 KiB)
new        $SRC/d19/new-b (4.88 KiB)
EOF
if ! cmp -s "$KH_W/v.expected" "$KH_W/v.lines"; then
  diff "$KH_W/v.expected" "$KH_W/v.lines" >&2
  fail "-v lists exactly the new and changed files"
fi
assert_grep "^files: +$((NF + 2))$" "$OUT" "summary: files"
assert_grep "^ +2 new, 3 changed, $((NF - 3)) unmodified$" "$OUT" "summary: new, changed, unmodified"
assert_grep '^dirs: ' "$OUT" "summary: dirs"
assert_grep '^new: .*stored as ' "$OUT" "summary: bytes added and stored"
assert_grep '^time: ' "$OUT" "summary: time"

khr -vv backup --json "$SRC"
assert_ok "backup -vv --json"
ndjson_check "$OUT" "sorted(x['item'] for x in d if x['message_type'] == 'verbose_status') == sorted(set(x['item'] for x in d if x['message_type'] == 'verbose_status')) and len([x for x in d if x['message_type'] == 'verbose_status' and x['action'] == 'unmodified']) == $NF + 2 and d[-1]['files_unmodified'] == $NF + 2" "-vv lists every file once, as unmodified"
ndjson_check "$OUT" "[x['data_size'] for x in d if x['message_type'] == 'verbose_status' and x['item'] == '$SRC/d01/new-a'] == [100000]" "-vv: size of a file"

# ---- restore: totals of the last status = the summary --------------------------
T=$KH_T/tricky
make_tree "$T" nofifo    # hard links, a sparse file, empty files
backup_id "$T"
khr restore --json "$SNAP" --target "$KH_T/rt/r1"
assert_ok "restore --json"
ndjson_check "$OUT" "all(x['message_type'] == 'status' for x in d[:-1]) and len(d) >= 2 and d[-1]['message_type'] == 'summary'" "restore: status objects, then the summary"
ndjson_check "$OUT" "d[-2]['files_done'] == d[-2]['total_files'] == d[-1]['files'] and d[-2]['bytes_done'] == d[-2]['total_bytes'] == d[-1]['bytes'] and d[-2]['percent_done'] == 1 and d[-2]['error_count'] == 0" "restore: the last status counts what the summary counts (hard links, holes)"
khr -q restore --json "$SNAP" --target "$KH_T/rt/r2"
assert_ok "restore -q --json"
assert_eq "$(wc -l <"$OUT" | tr -d ' ')" 1 "restore -q --json prints only the summary"

# ---- the terminal: percentage, ETA, files in flight ---------------------------------
SRC3=$KH_T/src3
big_tree "$SRC3" 3       # new data: the upload limit makes it last ~6 s
PTY_STEPS="" run timeout 120 python3 "$KH_SRCDIR/tests/cli/ptydrive.py" "$KH_W/tty" -- \
  "$KEYHOLD" --limit-upload 10240 backup "$SRC3"
assert_ok "backup on a terminal"
python3 - "$KH_W/tty" "$SRC3" <<'PY' || fail "terminal progress (see above)"
import re, sys
t = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
src = sys.argv[2]
frames = re.split(r"\r|\x1b\[1A", t)
line = re.compile(r"\[0:0\d\] +\d+\.\d%  \d+/\d+ files  [\d.]+ [KMG]?i?B/[\d.]+ [KMG]?i?B  [\d.]+ [KMG]?i?B/s  ETA 0:\d\d")
ok = [f for f in frames if line.search(f)]
if not ok:
    print("no status line with percentage, files, bytes, rate and ETA in:", repr(t[:600]), file=sys.stderr)
    sys.exit(1)
if not re.search(r"\n  " + re.escape(src) + r"/d\d\d/", t):
    print("no file in flight shown under the status line", file=sys.stderr)
    sys.exit(1)
if "\x1b[K" not in t:
    sys.exit(1)
PY

# ---- diff: bytes added and removed ------------------------------------------------
khr diff "$S1" "$S2"
assert_ok "diff"
# added: the two new files (100000 + 5000 bytes) and the changed chunks of
# the two appended files; removed: their old chunks.  Files of 78 KB are one
# chunk each: an append replaces it.
F0=$(stat -c %s "$SRC/d00/f000")
F5=$(stat -c %s "$SRC/d05/f010")
OLD=$(( (F0 - 12) + (F5 - 12) ))
assert_eq "$(tail -n 1 "$OUT")" "added 2, removed 0, changed 3; $(python3 -c "print('%.0f KiB added, %.0f KiB removed' % ((105000 + $F0 + $F5) / 1024, $OLD / 1024))")" "diff summary with bytes"
khr --json diff "$S1" "$S2"
assert_ok "diff --json"
ndjson_check "$OUT" "{x['path']: (x['change'], x['bytes_added'], x['bytes_removed']) for x in d if x['path'].startswith('$SRC/')} == {'$SRC/d01/new-a': ('+', 100000, 0), '$SRC/d19/new-b': ('+', 5000, 0), '$SRC/d00/f000': ('M', $F0, $F0 - 12), '$SRC/d05/f010': ('M', $F5, $F5 - 12), '$SRC/d07/f007': ('U', 0, 0)} or print(d)" "diff --json bytes per path"
pass
