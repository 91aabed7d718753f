#!/bin/sh
# The §8.1 capability table (docs/protocol.md), enforced by keyholdd: for
# every object kind x operation (PUT, GET, DELETE, list) x a device with
# no capability or exactly one (backup, read, prune, admin), the exact
# answer, 403 missing_capability (or forbidden where no capability
# allows), and that a refused PUT stores nothing and a refused DELETE
# deletes nothing.  Then the "own" rows: any device reads keys/<own id>
# and writes devices/<own id>, and no other.
. "$KH_SRCDIR/tests/cli/lib.sh"
. "$KH_SRCDIR/tests/cli/protolib.sh"
command -v curl >/dev/null 2>&1 || { echo "SKIP: curl missing"; exit 77; }

srv_init
srv_start
new_account alice
ACC=$(acct alice)
O=/v1/accounts/$ACC/objects
head -c 100 /dev/urandom >"$KH_W/obj"

# name KIND N: the N-th object name of a kind
name() {
  h32=$(printf '%032x' "$2")
  h64=$(printf '%064x' "$2")
  case $1 in
  account) echo account ;;
  protection) echo protection ;;
  keys) echo "keys/$h32" ;;
  devices) echo "devices/$h32" ;;
  data) echo "data/00/$h64" ;;
  index) echo "index/$h64" ;;
  snapshots) echo "snapshots/$h64" ;;
  locks) echo "locks/$h32" ;;
  damage) echo "damage/$h64" ;;
  esac
}

# The table, as docs/protocol.md §8.1 has it: for each kind the rule of
# PUT, GET, DELETE and list: a set of capabilities any one of which
# allows (b r p a), "any" or "never" ("-": not listed).
TABLE="account a any never -
protection a any never -
keys a a a a
devices a any a any
data bp r p rp
index bp any p any
snapshots bp r p any
locks any any any any
damage brp r p rp"

# allowed RULE CAP: 0 if a device with exactly CAP (none b r p a) may
allowed() {
  case $1 in
  any) return 0 ;;
  never|-) return 1 ;;
  esac
  [ "$2" != none ] && case $1 in *"$2"*) return 0 ;; esac
  return 1
}

# the devices: one per capability, and one with none
for cap in none b r p a; do
  case $cap in none) c=none ;; b) c=backup ;; r) c=read ;; p) c=prune ;; a) c=admin ;; esac
  pc keygen "dev_$cap"
  run "$KH_PROTO_CLIENT" "$URL" "$ST" adddev "$R" "dev_$cap" "$ACC" "$c"
  assert_ok "device with $c"
  pc session "dev_$cap"
  expect "201 -" "session of the $c device"
done

# objects for GET and DELETE, made by alice (every capability)
n=100
echo "$TABLE" >"$KH_W/table"
while read -r kind put get del lst; do
  for cap in none b r p a; do
    n=$((n + 1))
    pc req alice PUT "$O/$(name "$kind" $n)" --body "$KH_W/obj"
    case $GOT in 201*) ;; 409*) [ "$kind" = account ] || fail "setup $kind: $GOT" ;; *) fail "setup PUT $kind: $GOT" ;; esac
  done
done <"$KH_W/table"

cells=0
n=100
m=1000
while read -r kind put get del lst; do
  for cap in none b r p a; do
    n=$((n + 1))
    m=$((m + 1))
    d=dev_$cap
    # PUT of a new object (account and protection: the existing one)
    if [ "$kind" = account ] || [ "$kind" = protection ]; then new=$kind; else new=$(name "$kind" $m); fi
    before=$(cat "$(obj_file alice "$new")" 2>/dev/null | od -An -tx1 | head -c 64)
    pc req "$d" PUT "$O/$new" --body "$KH_W/obj"
    if allowed "$put" "$cap"; then
      case $GOT in "201 -"|"409 exists") ;; *) fail "PUT $kind by $cap: got '$GOT', expected it allowed" ;; esac
      assert_exists "$(obj_file alice "$new")" "PUT $kind by $cap stored"
    else
      [ "$put" = never ] && want="403 forbidden" || want="403 missing_capability"
      expect "$want" "PUT $kind by $cap"
      after=$(cat "$(obj_file alice "$new")" 2>/dev/null | od -An -tx1 | head -c 64)
      assert_eq "$after" "$before" "a refused PUT of $kind by $cap changes nothing"
      if [ "$kind" != account ] && [ "$kind" != protection ]; then
        assert_absent "$(obj_file alice "$new")" "a refused PUT of $kind by $cap stores nothing"
      fi
    fi
    # GET of an existing one
    pc req "$d" GET "$O/$(name "$kind" $n)" --out "$KH_W/got"
    if allowed "$get" "$cap"; then
      expect "200 -" "GET $kind by $cap"
      [ "$kind" = account ] || cmp -s "$KH_W/got" "$KH_W/obj" || fail "GET $kind by $cap: content"
    else
      expect "403 missing_capability" "GET $kind by $cap"
      assert_grep "this device lacks the '[a-z]+' capability" "$KH_W/got" "GET $kind by $cap names the capability"
    fi
    # DELETE of an existing one
    f=$(obj_file alice "$(name "$kind" $n)")
    pc req "$d" DELETE "$O/$(name "$kind" $n)"
    if allowed "$del" "$cap"; then
      expect "204 -" "DELETE $kind by $cap"
      assert_absent "$f" "DELETE $kind by $cap deletes"
    else
      [ "$del" = never ] && want="403 forbidden" || want="403 missing_capability"
      expect "$want" "DELETE $kind by $cap"
      assert_exists "$f" "a refused DELETE of $kind by $cap deletes nothing"
    fi
    # list
    if [ "$lst" != - ]; then
      pc req "$d" GET "/v1/accounts/$ACC/list/$kind" --out "$KH_W/got"
      if allowed "$lst" "$cap"; then
        expect "200 -" "list $kind by $cap"
      else
        expect "403 missing_capability" "list $kind by $cap"
      fi
    fi
    cells=$((cells + 4))
  done
done <"$KH_W/table"
assert_eq "$cells" 180 "every kind x op x capability cell was checked"

# the backup-only device's failure names the capability it lacks
pc req dev_b GET "$O/$(name data 1)" --out "$KH_W/got"
assert_grep "lacks the 'read' capability" "$KH_W/got" "GET pack by backup: read named"
pc req dev_b DELETE "$O/$(name snapshots 1)" --out "$KH_W/got"
assert_grep "lacks the 'prune' capability" "$KH_W/got" "DELETE snapshot by backup: prune named"

# own rows: keys/<own id> readable and devices/<own id> writable by any device
OWN=$(devid dev_none)
pc req alice PUT "$O/keys/$OWN" --body "$KH_W/obj"
expect "201 -" "alice writes the wrap of the capability-less device"
pc req dev_none GET "$O/keys/$OWN" --out "$KH_W/got"
expect "200 -" "a device reads its own wrap"
cmp -s "$KH_W/got" "$KH_W/obj" || fail "own wrap content"
pc req dev_none GET "$O/keys/$(devid dev_b)" --out "$KH_W/got"
expect "403 missing_capability" "a device reads no other wrap"
pc req dev_none PUT "$O/devices/$OWN" --body "$KH_W/obj"
expect "201 -" "a device writes its own record"
pc req dev_none PUT "$O/devices/$(devid dev_b)" --body "$KH_W/obj"
expect "403 missing_capability" "a device writes no other record"
assert_absent "$(obj_file alice "devices/$(devid dev_b)")" "no other record stored"
pc req dev_none DELETE "$O/devices/$OWN"
expect "403 missing_capability" "deleting even its own record needs admin"
assert_exists "$(obj_file alice "devices/$OWN")" "own record stays"

srv_stop
pass
