# A private OpenSSH server on loopback for the benchmark (restic over SFTP,
# borg over SSH).  Sourced by bench/bench.sh; POSIX sh.
#
#   sshd_start DIR   start sshd on 127.0.0.1:<free port>; everything it uses
#                    lives in DIR (made here, mode 700): host key, client key,
#                    authorized_keys, sshd_config, the client's ssh_config
#                    and known_hosts, its log.  Sets SSHD_PID, SSHD_PORT,
#                    SSH_CONFIG (give it to ssh with -F), SSH_USER, SSH_HOST.
#                    Returns 0 when a login works, else 1 with SSHD_WHY set
#                    and the server stopped.
#   sshd_stop        stop that server and its sessions (safe to call twice,
#                    and from an EXIT trap).
#   sshd_server_clear
#                    forget what sshd_server_take would report.
#   sshd_server_take prints "KIB CPU" for what ran since the last clear:
#                    KIB the peak RSS of the server-side programs
#                    (sftp-server, borg serve), CPU the user+sys seconds of
#                    all of the server side (the per-connection sshd that
#                    encrypts, and those programs), after waiting briefly
#                    for the sessions to end; nothing if none ran.
#
# Nothing outside DIR is read or written: not /etc/ssh/sshd_config (sshd -f
# DIR/sshd_config), not ~/.ssh (ssh -F DIR/ssh_config, whose IdentityFile
# and UserKnownHostsFile point into DIR; with -F ssh neither reads
# ~/.ssh/config nor creates ~/.ssh).  The one exception is sshd's
# privilege-separation directory /run/sshd, compiled into sshd: it is created
# (empty, root-owned, 0755) when missing, as the system's unit would.
#
# Server side: the sftp subsystem and `borg serve` run under GNU time (the
# sftp Subsystem line here, BORG_REMOTE_PATH in bench.sh), which appends
# "KIB,USER,SYS" to DIR/server.time (no blank: sshd_config would split it):
# their peak RSS.  CPU is the growth of the listener's cutime + cstime
# (proc(5)): every finished connection, sshd and its children together.

SSHD_PID=
SSHD_PORT=
SSHD_DIR=
SSHD_WHY=
SSH_CONFIG=
SSH_USER=
SSH_HOST=127.0.0.1

# A free TCP port on 127.0.0.1 (bind to port 0, read it, close).  A race with
# another program is possible; sshd_start retries on a failed bind.
sshd_free_port() {
  python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

sshd_stop() {
  [ -n "$SSHD_PID" ] || return 0
  # sessions first (children of the listener: one sshd per connection), then
  # the listener; both by process id, nothing else on the machine
  pkill -TERM -P "$SSHD_PID" 2>/dev/null
  kill -TERM "$SSHD_PID" 2>/dev/null
  _i=0
  while kill -0 "$SSHD_PID" 2>/dev/null && [ $_i -lt 50 ]; do sleep 0.1; _i=$((_i + 1)); done
  kill -KILL "$SSHD_PID" 2>/dev/null
  wait "$SSHD_PID" 2>/dev/null
  SSHD_PID=
}

sshd_start() {
  SSHD_DIR=$1
  SSHD_WHY=
  _sshd=$(command -v sshd 2>/dev/null || echo /usr/sbin/sshd)
  if [ ! -x "$_sshd" ]; then SSHD_WHY="sshd not installed (apt-get install openssh-server)"; return 1; fi
  if ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then
    SSHD_WHY="ssh/ssh-keygen not installed (apt-get install openssh-client)"; return 1
  fi
  _sftp=/usr/lib/openssh/sftp-server
  [ -x "$_sftp" ] || { SSHD_WHY="$_sftp missing (apt-get install openssh-sftp-server)"; return 1; }
  case $SSHD_DIR in *[!A-Za-z0-9/._-]*) SSHD_WHY="dir '$SSHD_DIR' has characters sshd_config cannot carry"; return 1 ;; esac
  if [ "$(id -u)" != 0 ]; then SSHD_WHY="the private sshd needs root"; return 1; fi
  if [ ! -d /run/sshd ]; then
    mkdir -p /run/sshd && chmod 0755 /run/sshd || { SSHD_WHY="cannot create /run/sshd"; return 1; }
  fi
  SSH_USER=$(id -un)
  (umask 077 && mkdir -p "$SSHD_DIR") || { SSHD_WHY="cannot create $SSHD_DIR"; return 1; }
  chmod 700 "$SSHD_DIR"
  rm -f "$SSHD_DIR/host_ed25519" "$SSHD_DIR/host_ed25519.pub" "$SSHD_DIR/id_ed25519" "$SSHD_DIR/id_ed25519.pub"
  ssh-keygen -q -t ed25519 -N '' -C khbench-host -f "$SSHD_DIR/host_ed25519" </dev/null >/dev/null 2>&1 &&
    ssh-keygen -q -t ed25519 -N '' -C khbench-client -f "$SSHD_DIR/id_ed25519" </dev/null >/dev/null 2>&1 ||
    { SSHD_WHY="ssh-keygen failed"; return 1; }
  cp "$SSHD_DIR/id_ed25519.pub" "$SSHD_DIR/authorized_keys"
  : > "$SSHD_DIR/server.time"
  mkdir -p "$SSHD_DIR/borg-serve-base"
  # PAM, lastlog, motd and DNS off: the session touches nothing of the system.
  # StrictModes off: DIR's parents (e.g. /var/tmp, mode 1777) would fail it.
  cat > "$SSHD_DIR/sshd_config" <<EOF
HostKey $SSHD_DIR/host_ed25519
PidFile none
AuthorizedKeysFile $SSHD_DIR/authorized_keys
AllowUsers $SSH_USER
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
UseDNS no
PermitTTY no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
PermitUserEnvironment no
MaxStartups 200:30:400
MaxSessions 64
SetEnv BORG_BASE_DIR=$SSHD_DIR/borg-serve-base
Subsystem sftp /usr/bin/time -a -o $SSHD_DIR/server.time -f %M,%U,%S $_sftp
EOF
  _try=0
  while [ $_try -lt 5 ]; do
    _try=$((_try + 1))
    SSHD_PORT=$(sshd_free_port) || { SSHD_WHY="cannot find a free port (python3 missing?)"; return 1; }
    : > "$SSHD_DIR/sshd.log"
    "$_sshd" -D -f "$SSHD_DIR/sshd_config" -E "$SSHD_DIR/sshd.log" \
      -o "ListenAddress=127.0.0.1:$SSHD_PORT" -o "Port=$SSHD_PORT" </dev/null &
    SSHD_PID=$!
    _i=0
    while [ $_i -lt 100 ]; do
      grep -q "Server listening on 127.0.0.1 port $SSHD_PORT" "$SSHD_DIR/sshd.log" 2>/dev/null && break
      kill -0 "$SSHD_PID" 2>/dev/null || break
      sleep 0.1; _i=$((_i + 1))
    done
    if grep -q "Server listening on 127.0.0.1 port $SSHD_PORT" "$SSHD_DIR/sshd.log" 2>/dev/null; then
      break
    fi
    sshd_stop
    grep -qi 'bind\|address already in use' "$SSHD_DIR/sshd.log" 2>/dev/null || break
  done
  if [ -z "$SSHD_PID" ]; then
    SSHD_WHY="sshd did not start: $(tail -n 3 "$SSHD_DIR/sshd.log" 2>/dev/null | tr '\n' ' ')"
    return 1
  fi
  printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$(cut -d' ' -f1,2 "$SSHD_DIR/host_ed25519.pub")" \
    > "$SSHD_DIR/known_hosts"
  SSH_CONFIG=$SSHD_DIR/ssh_config
  cat > "$SSH_CONFIG" <<EOF
Host 127.0.0.1
  HostName 127.0.0.1
  Port $SSHD_PORT
  User $SSH_USER
  IdentityFile $SSHD_DIR/id_ed25519
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile $SSHD_DIR/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  ControlMaster no
  ControlPath none
  Compression no
  LogLevel ERROR
EOF
  if ! ssh -F "$SSH_CONFIG" 127.0.0.1 true </dev/null > "$SSHD_DIR/login-check.err" 2>&1; then
    SSHD_WHY="login to the private sshd failed: $(tail -n 3 "$SSHD_DIR/login-check.err" | tr '\n' ' ')$(tail -n 3 "$SSHD_DIR/sshd.log" | tr '\n' ' ')"
    sshd_stop
    return 1
  fi
  return 0
}

# user+sys CPU seconds of the listener's waited-for descendants
sshd_child_cpu() {
  sed 's/^.*) //' "/proc/$SSHD_PID/stat" 2>/dev/null |
    awk -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" '{ printf "%.2f\n", ($14 + $15) / hz }'
}

sshd_server_clear() {
  : > "$SSHD_DIR/server.time"
  SSHD_CPU0=$(sshd_child_cpu)
}

sshd_server_take() {
  _f=$SSHD_DIR/server.time
  # the remote side writes its line when it exits, which can be just after
  # the client has: give it a moment
  _i=0
  while [ $_i -lt 30 ] && [ ! -s "$_f" ]; do sleep 0.1; _i=$((_i + 1)); done
  # and for the connections' sshd processes to end and be reaped
  _i=0
  while [ $_i -lt 30 ] && pgrep -P "$SSHD_PID" >/dev/null 2>&1; do sleep 0.1; _i=$((_i + 1)); done
  awk -F, -v cpu="$(awk -v a="${SSHD_CPU0:-0}" -v b="$(sshd_child_cpu)" 'BEGIN { printf "%.2f", b - a }')" \
    'NF == 3 && $1 ~ /^[0-9]+$/ { n++; if ($1 + 0 > k) k = $1 + 0 }
     END { if (n) printf "%d %s\n", k, cpu }' "$_f" 2>/dev/null
  : > "$_f"
}
