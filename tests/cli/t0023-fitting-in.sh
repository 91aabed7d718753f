#!/bin/sh
# Fitting in: passcode sources (command, stdin, environment) and their
# order; the first init on a terminal (notice, twice, weak passcodes);
# init refusing a second account; `accounts` and --account prefixes;
# "did you mean"; man pages, completions and make install; NO_COLOR;
# --limit-upload / --limit-download.
. "$KH_SRCDIR/tests/cli/lib.sh"

PTY="python3 $KH_SRCDIR/tests/cli/ptydrive.py"
kdf="--kdf-memory 8 --kdf-ops 1"

# ---- did you mean ------------------------------------------------------------
khr bakcup
assert_rc 2 "mistyped verb"
assert_eq "$(cat "$ERR")" "keyhold: unknown command 'bakcup'; did you mean 'backup'?" "verb suggestion"
khr snapsohts
assert_rc 2 "transposed verb"
assert_grep -F "did you mean 'snapshots'?" "$ERR" "transposition counts as one edit"
khr help rsetore
assert_rc 2 "help with a mistyped verb"
assert_grep -F "unknown command 'rsetore'; did you mean 'restore'?" "$ERR" "help suggests too"
khr zzqqxxyy
assert_rc 2 "far from any verb"
assert_eq "$(cat "$ERR")" "keyhold: unknown command 'zzqqxxyy'; see 'keyhold help'" "no suggestion when nothing is near"
khr init --kdf-memroy 8
assert_rc 2 "mistyped option"
assert_grep -F "keyhold: init: unknown option '--kdf-memroy'; did you mean '--kdf-memory'?" "$ERR" "option suggestion"
assert_absent "$KEYHOLD_REGION" "a mistyped option creates nothing"
khr --josn snapshots
assert_rc 2 "mistyped global option"
assert_grep -F "unknown option '--josn'; did you mean '--json'?" "$ERR" "global option suggestion"
khr init --kdf-mem 8 --kdf-ops 1 --region-id BAD!
assert_rc 2 "an abbreviation is not a typo (getopt takes it)"
assert_no_grep "did you mean" "$ERR" "abbreviation left to getopt"

# ---- init refuses a second account; accounts; --account prefixes ---------------
kh_init
A1=$ACCOUNT
khr init $kdf
assert_fail "second init without --new-account"
assert_eq "$(cat "$ERR")" "keyhold: init: the region already has 1 account ($A1): use it with --account, or pass --new-account to add another" "second init message"
khr accounts
assert_ok "accounts"
assert_eq "$(cat "$OUT")" "$A1" "accounts lists the one account"
# more accounts until two share a first hex digit (pigeonhole: at most 17)
n=1
while :; do
  kh_init --new-account
  n=$((n + 1))
  dup=$(kh accounts | cut -c1 | sort | uniq -d | head -n 1)
  [ -n "$dup" ] && break
  [ $n -le 17 ] || fail "no shared prefix after $n accounts"
done
khr --json accounts
assert_ok "accounts --json"
json_check "$OUT" "list(d) == ['accounts'] and len(d['accounts']) == $n and all(list(a) == ['id'] and len(a['id']) == 32 for a in d['accounts']) and '$A1' in [a['id'] for a in d['accounts']]" "accounts json"
assert_eq "$(kh accounts | sort | tr '\n' ' ')" "$(kh accounts | tr '\n' ' ')" "accounts sorted"
matches=$(kh accounts | grep -c "^$dup")
khr --account "$dup" snapshots
assert_fail "ambiguous account prefix"
assert_eq "$(cat "$ERR")" "keyhold: open account: account prefix $dup matches $matches accounts" "ambiguous prefix message"
assert_no_grep "snapshot" "$ERR" "no snapshot wording for accounts"
khr --account 0123456789abcdef0123456789abcdef snapshots
assert_fail "no such account"
assert_eq "$(cat "$ERR")" "keyhold: open account: no account 0123456789abcdef0123456789abcdef in this region" "missing account message"
khr snapshots
assert_fail "several accounts, none named"
assert_eq "$(cat "$ERR")" "keyhold: open account: the region has $n accounts: name one with --account (see keyhold accounts)" "several accounts message"
P1=$(printf '%s' "$A1" | cut -c1-8)
khr --account "$P1" whoami
assert_ok "unique prefix opens the account"
assert_grep "^account $A1\$" "$OUT" "prefix resolved to the full id"

# ---- passcode sources ------------------------------------------------------------
R2=$KH_T/region2
export KEYHOLD_REGION="$R2"
kh_init
PW=$(cat "$KEYHOLD_PASSCODE_FILE")
unset KEYHOLD_PASSCODE_FILE
printf '%s\n' "$PW" >"$KH_T/good"
printf 'nope\n' >"$KH_T/bad"
khr snapshots </dev/null
assert_fail "no source at all"
assert_grep -F "keyhold: no passcode: use --passcode-file or KEYHOLD_PASSCODE_FILE" "$ERR" "no passcode message"
khr --passcode-command "printf '%s\\n' '$PW'" snapshots
assert_ok "--passcode-command"
khr --passcode-command "printf 'x\\n%s\\n' '$PW'" snapshots
assert_fail "only the first line of the command counts"
assert_eq "$(cat "$ERR")" "keyhold: open account: wrong passcode" "second line ignored"
khr --passcode-command "printf '%s\\n' '$PW'; exit 7" snapshots
assert_fail "command exiting non-zero"
assert_eq "$(cat "$ERR")" "keyhold: passcode command 'printf '%s\\n' '$PW'; exit 7' failed: exit status 7" "exit status named"
khr --passcode-command "head -c 200000 /dev/zero | tr '\\0' a" snapshots
assert_fail "command printing too much"
assert_grep -F "output longer than 65536 bytes" "$ERR" "output capped"
KEYHOLD_PASSCODE_COMMAND="printf '%s\\n' '$PW'" khr snapshots
assert_ok "KEYHOLD_PASSCODE_COMMAND"
khr --passcode-file - snapshots <"$KH_T/good"
assert_ok "--passcode-file - (stdin)"
khr --passcode-file - snapshots <"$KH_T/bad"
assert_fail "stdin passcode is really used"
KEYHOLD_PASSCODE="$PW" khr snapshots
assert_ok "KEYHOLD_PASSCODE"
KEYHOLD_PASSCODE=nope khr snapshots
assert_fail "KEYHOLD_PASSCODE is really used"
# order: --passcode-file, --passcode-command, KEYHOLD_PASSCODE_FILE,
# KEYHOLD_PASSCODE_COMMAND, KEYHOLD_PASSCODE
KEYHOLD_PASSCODE=nope KEYHOLD_PASSCODE_COMMAND="echo nope" KEYHOLD_PASSCODE_FILE="$KH_T/bad" \
  khr --passcode-file "$KH_T/good" snapshots
assert_ok "--passcode-file wins over everything"
KEYHOLD_PASSCODE=nope KEYHOLD_PASSCODE_COMMAND="echo nope" KEYHOLD_PASSCODE_FILE="$KH_T/bad" \
  khr --passcode-command "cat '$KH_T/good'" snapshots
assert_ok "--passcode-command wins over the environment"
KEYHOLD_PASSCODE=nope KEYHOLD_PASSCODE_COMMAND="echo nope" KEYHOLD_PASSCODE_FILE="$KH_T/good" \
  khr snapshots
assert_ok "KEYHOLD_PASSCODE_FILE wins over the other variables"
KEYHOLD_PASSCODE=nope KEYHOLD_PASSCODE_COMMAND="cat '$KH_T/good'" khr snapshots
assert_ok "KEYHOLD_PASSCODE_COMMAND wins over KEYHOLD_PASSCODE"
khr --passcode-file "$KH_T/good" --passcode-command "echo x" snapshots
assert_rc 2 "both passcode flags"
assert_grep -F "cannot be used together" "$ERR" "conflicting flags message"

# ---- the first init on a terminal ----------------------------------------------
R3=$KH_T/region3
export KEYHOLD_REGION="$R3"
khr init $kdf </dev/null
assert_fail "init with no passcode source and no terminal"
assert_eq "$(cat "$ERR")" "keyhold: no passcode: use --passcode-file or KEYHOLD_PASSCODE_FILE (or --passcode-command, KEYHOLD_PASSCODE_COMMAND, KEYHOLD_PASSCODE), or run on a terminal" "no notice without a terminal, just the error"
PTY_STEPS="expect New passcode:
send abc
expect epeat new passcode:
send abc" run $PTY "$KH_W/tty1" -- "$KEYHOLD" init $kdf
assert_fail "short passcode on a terminal"
assert_grep -F "init: passcode refused: it is shorter than 8 characters" "$KH_W/tty1" "short refused"
assert_grep -F "Nobody can reset it" "$KH_W/tty1" "loss notice shown"
assert_grep -F "recovery key" "$KH_W/tty1" "notice names the recovery key"
assert_grep -F "escrow" "$KH_W/tty1" "notice names escrow"
assert_no_grep "abc" "$KH_W/tty1" "no echo"
khr accounts
assert_eq "$(cat "$OUT")" "" "refused passcode made no account"
for weak in aaaaaaaaaaaa 12345678901 ; do
  PTY_STEPS="expect New passcode:
send $weak
expect epeat new passcode:
send $weak" run $PTY "$KH_W/tty2" -- "$KEYHOLD" init $kdf
  assert_fail "weak passcode $weak"
  assert_grep -F "passcode refused" "$KH_W/tty2" "weak $weak refused"
done
PTY_STEPS="expect New passcode:
send longenough-1
expect epeat new passcode:
send longenough-2" run $PTY "$KH_W/tty3" -- "$KEYHOLD" init $kdf
assert_fail "mismatched passcodes"
assert_grep -F "passcodes do not match" "$KH_W/tty3" "mismatch message"
PTY_STEPS="expect New passcode:
send 123456
expect epeat new passcode:
send 123456" run $PTY "$KH_W/tty4" -- "$KEYHOLD" init $kdf --force-weak-passcode
assert_ok "--force-weak-passcode"
assert_grep "created account [0-9a-f]{32}" "$KH_W/tty4" "forced weak passcode accepted"
KEYHOLD_PASSCODE=123456 khr snapshots
assert_ok "the passcode typed on the terminal opens the account"
# a strong passcode needs no force; from a file no weakness check applies
R4=$KH_T/region4
PTY_STEPS="expect New passcode:
send 0123456789ab
expect epeat new passcode:
send 0123456789ab" run $PTY "$KH_W/tty5" -- "$KEYHOLD" --region "$R4" init $kdf
assert_ok "a 12-character passcode on a terminal"
printf 'ab\n' >"$KH_T/weakfile"
khr --region "$KH_T/region5" --passcode-file "$KH_T/weakfile" init $kdf
assert_ok "a passcode from a file is taken as it is"
assert_no_grep "Nobody can reset" "$ERR" "no notice when not prompting"

# ---- man pages, completions, make install ----------------------------------------
khr help --man init
assert_ok "help --man init"
cp "$OUT" "$KH_W/init.1"
assert_grep '^\.TH KEYHOLD-INIT 1 ' "$KH_W/init.1" "man page header"
kh help init | grep -Eo -- '--[a-z][a-z0-9-]+' | sort -u >"$KH_W/helpopts"
[ -s "$KH_W/helpopts" ] || fail "help init lists options"
while read -r o; do
  ro=$(printf '%s' "$o" | sed 's/-/\\\\-/g')
  grep -q -- "$ro" "$KH_W/init.1" || fail "man page lacks $o"
done <"$KH_W/helpopts"
if command -v man >/dev/null 2>&1; then
  MANWIDTH=80 man -l "$KH_W/init.1" 2>/dev/null | col -b >"$KH_W/init.txt"
  assert_grep -F "keyhold init - create a region" "$KH_W/init.txt" "man renders NAME"
  assert_grep -F "force-weak-passcode" "$KH_W/init.txt" "man renders options"
fi
khr help --man bakcup
assert_rc 2 "help --man of an unknown verb"
for sh in bash zsh fish; do
  khr completion $sh
  assert_ok "completion $sh"
  assert_grep -F "snapshots" "$OUT" "$sh completion has the verbs"
  assert_grep -F "force-weak-passcode" "$OUT" "$sh completion has init's options"
done
khr completion bash
bash -n "$OUT" || fail "bash completion does not parse"
if command -v bash >/dev/null 2>&1; then
  got=$(bash -c ". '$OUT'; COMP_WORDS=(keyhold ba); COMP_CWORD=1; _keyhold; echo \"\${COMPREPLY[*]}\"")
  assert_eq "$got" "backup" "bash completes a verb"
  got=$(bash -c ". '$OUT'; COMP_WORDS=(keyhold init --new); COMP_CWORD=2; _keyhold; echo \"\${COMPREPLY[*]}\"")
  assert_eq "$got" "--new-account" "bash completes an option"
fi
# zsh and fish run their scripts for real: every verb with its whole
# summary (a quote in a summary must not break the quoting), and options
ZC="zsh -f $KH_SRCDIR/tests/cli/zsh-complete.zsh"
khr completion zsh
cp "$OUT" "$KH_W/_keyhold"
zsh -n "$KH_W/_keyhold" || fail "zsh completion does not parse"
kh help --list >"$KH_W/verbs"
got=$(KH_WORDS="keyhold x" KH_CURRENT=2 $ZC "$KH_W/_keyhold" | cut -d: -f1)
assert_eq "$got" "$(cat "$KH_W/verbs")" "zsh completes every verb, nothing else"
got=$(KH_WORDS="keyhold x" KH_CURRENT=2 $ZC "$KH_W/_keyhold" | grep '^check:')
assert_eq "$got" "check:verify the vault's structure and (optionally) every byte" "zsh verb summary with a quote"
got=$(KH_WORDS="keyhold init --n" KH_CURRENT=3 $ZC "$KH_W/_keyhold" | grep -x -- '--new-account')
assert_eq "$got" "--new-account" "zsh completes an option of the verb"
khr completion fish
cp "$OUT" "$KH_W/keyhold.fish"
got=$(fish --no-config -c "source '$KH_W/keyhold.fish'; complete -C 'keyhold ch'")
assert_eq "$got" "$(printf 'check\tverify the vault'"'"'s structure and (optionally) every byte')" "fish completes a verb with its summary"
got=$(fish --no-config -c "source '$KH_W/keyhold.fish'; complete -C 'keyhold init --new'")
assert_eq "$got" "--new-account" "fish completes an option of the verb"
khr completion tcsh
assert_rc 2 "unknown shell"
D=$KH_T/destdir
run make -s -C "$KH_SRCDIR" install DESTDIR="$D" PREFIX=/opt/kh KEYHOLD_BIN="$KEYHOLD"
assert_ok "make install"
for f in bin/keyhold share/man/man1/keyhold.1 share/man/man1/keyhold-init.1 \
         share/man/man1/keyhold-accounts.1 share/man/man1/keyhold-backup.1 \
         share/bash-completion/completions/keyhold share/zsh/site-functions/_keyhold \
         share/fish/vendor_completions.d/keyhold.fish; do
  assert_exists "$D/opt/kh/$f" "installed $f"
done
nman=$(ls "$D/opt/kh/share/man/man1" | wc -l)
assert_eq "$nman" "$(($(kh help --list | wc -l) + 1))" "one man page per verb plus keyhold.1"
cmp -s "$D/opt/kh/share/man/man1/keyhold-init.1" "$KH_W/init.1" || fail "installed page is help --man"
assert_grep '^\.TH KEYHOLD 1 ' "$D/opt/kh/share/man/man1/keyhold.1" "keyhold.1 header"
assert_grep -F 'limit\-upload' "$D/opt/kh/share/man/man1/keyhold.1" "keyhold.1 has the global options"
run make -s -C "$KH_SRCDIR" uninstall DESTDIR="$D" PREFIX=/opt/kh
assert_ok "make uninstall"
assert_eq "$(find "$D" -type f | wc -l)" "0" "uninstall removes every installed file"

# ---- NO_COLOR: keyhold prints no colour at all -------------------------------------
export KEYHOLD_REGION="$R2"
export KEYHOLD_PASSCODE_FILE="$KH_T/good"
khr snapshots
cp "$OUT" "$KH_W/plain"
NO_COLOR=1 khr snapshots
assert_ok "NO_COLOR set"
cmp -s "$OUT" "$KH_W/plain" || fail "NO_COLOR changes the output"
PTY_STEPS="" run $PTY "$KH_W/ttyhelp" -- "$KEYHOLD" help
assert_ok "help on a terminal"
if tr -d '\r' <"$KH_W/ttyhelp" | grep -q "$(printf '\033')"; then fail "escape sequences on a terminal"; fi

# ---- --limit-upload / --limit-download --------------------------------------------
khr --limit-upload 0 snapshots
assert_rc 2 "zero limit"
assert_grep -F "limit-upload: not a rate in KiB/s" "$ERR" "bad limit message"
khr --limit-download abc snapshots
assert_rc 2 "non-numeric limit"
SRC=$KH_T/src
mkdir -p "$SRC"
head -c 524288 /dev/urandom >"$SRC/blob"
t0=$(date +%s.%N)
khr --quiet --limit-upload 256 backup "$SRC"
t1=$(date +%s.%N)
assert_ok "limited backup completes"
el=$(echo "$t1 - $t0" | awk -F' - ' '{print $1 - $2}')
note "512 KiB backup at 256 KiB/s took $el s"
awk -v e="$el" 'BEGIN { exit !(e >= 1.5) }' || fail "backup at 256 KiB/s took $el s (< 1.5 s)"
t0=$(date +%s.%N)
khr --quiet --limit-download 256 restore latest --target "$KH_T/rt/lim"
t1=$(date +%s.%N)
assert_ok "limited restore completes"
el=$(echo "$t1 - $t0" | awk -F' - ' '{print $1 - $2}')
note "512 KiB restore at 256 KiB/s took $el s"
awk -v e="$el" 'BEGIN { exit !(e >= 1.5) }' || fail "restore at 256 KiB/s took $el s (< 1.5 s)"
cmp -s "$SRC/blob" "$KH_T/rt/lim$SRC/blob" || cmp -s "$SRC/blob" "$KH_T/rt/lim/blob" || \
  fail "limited restore restored the file"

pass
