#!/bin/sh
# The vault against keyholdd over HTTPS: the server's certificate is checked
# against --ca-file / KEYHOLD_CA_FILE (an unknown CA is refused, nothing is
# created), init, backup and a byte-identical restore work over TLS.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/server.sh"
command -v openssl >/dev/null 2>&1 || fail "openssl is missing (make check installs it)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$KH_W/key.pem" -out "$KH_W/cert.pem" -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || fail "openssl req"
server_init
SRV_SCHEME=https
server_start --tls-cert "$KH_W/cert.pem" --tls-key "$KH_W/key.pem"
unset KEYHOLD_PASSCODE_FILE KEYHOLD_CA_FILE
case $URL in https://127.0.0.1:*) ;; *) fail "not an https URL: $URL" ;; esac

khr init
assert_fail "init over HTTPS without the CA"
assert_grep 'certificate' "$ERR" "an untrusted certificate is refused"
assert_absent "$KEYHOLD_DEVICE_DIR" "nothing saved on a refused connection"
[ -z "$(ls "$SRV_DIR/accounts" 2>/dev/null)" ] || fail "an account was made over an untrusted connection"

khr --ca-file "$KH_W/cert.pem" init --name tls
assert_ok "init over HTTPS with --ca-file"
assert_grep "at $URL\$" "$OUT" "init names the https URL"

SRC=$KH_T/src
make_tree "$SRC" nofifo
khr backup "$SRC"
assert_fail "backup over HTTPS without the CA"
assert_grep 'certificate' "$ERR" "backup: an untrusted certificate is refused"
KEYHOLD_CA_FILE=$KH_W/cert.pem
export KEYHOLD_CA_FILE
backup_id "$SRC"
restore_and_compare "$SNAP" "$SRC" "restore over HTTPS"
khr check
assert_ok "check over HTTPS"
pass
