# ejabberd (Debian's package, 23.01) as a federation (server-to-server)
# peer for tests/interop/s2s/run.sh and the federated load runs: run as
# the current user from WORKDIR with a throw-away configuration, Mnesia
# spool and logs, its client and server ports on one loopback address,
# serving one domain. No system service is touched. Source this file; see
# ejabberd.sh for the single-server configuration that compare.sh uses.
#
# Peers are found through DNS only (SRV, then A/AAAA): ejabberd asks
# Erlang's resolver (inet_res), which reads the file named by ERL_INETRC;
# ejabberdctl points that at WORKDIR/inetrc, which names dns.py
# (`{nameserver, IP, PORT}`: any port), turns off /etc/resolv.conf and
# /etc/hosts (`{resolv_conf, ""}`, `{hosts_file, ""}`) and makes `dns`
# the lookup method.
#
# The Erlang node listens for ejabberdctl on a port of its own on
# 127.0.0.1 (ERL_DIST_PORT, 45400 + the last byte of IP), so no epmd is
# started and nothing outlives the server.
#
# AUTH chooses how peers authenticate:
#   external  SASL EXTERNAL with certificates (XEP-0178) only: the test CA
#             is trusted (`s2s_cafile`) and mod_s2s_dialback is not loaded;
#   dialback  Server Dialback (XEP-0220) only: the test CA is not trusted
#             (certificates are checked against the system store, fail,
#             and EXTERNAL is not offered) and mod_s2s_dialback is loaded;
#   both      the CA is trusted and mod_s2s_dialback is loaded.

# ejabberd_s2s_config WORKDIR IP C2S_PORT S2S_PORT DOMAIN CERTDIR AUTH DNS_IP:DNS_PORT
# CERTDIR holds ca.pem, DOMAIN.pem and DOMAIN.key (tests/interop/s2s/certs.sh).
# EJABBERD_LOG_LEVEL (debug, info, warning; default info) sets the log's level.
ejabberd_s2s_config() {
  local w=$1 ip=$2 c2s=$3 s2s=$4 domain=$5 certs=$6 auth=$7 dns=$8
  local dialback='' cafile=''
  case $auth in
    external) cafile="s2s_cafile: \"$w/ca.pem\"" ;;
    dialback) dialback='  mod_s2s_dialback: {}' ;;
    both) dialback='  mod_s2s_dialback: {}'; cafile="s2s_cafile: \"$w/ca.pem\"" ;;
    *) echo "ejabberd_s2s_config: AUTH is external, dialback or both, not $auth" >&2; return 2 ;;
  esac
  mkdir -p "$w/spool" "$w/logs" "$w/modules.d"
  cp "$certs/$domain.pem" "$w/cert.pem"
  cp "$certs/$domain.key" "$w/key.pem"
  cp "$certs/ca.pem" "$w/ca.pem"
  # Debian's ejabberdctl switches to the `ejabberd` user when run as root;
  # this copy runs as whoever calls it.
  sed 's/^INSTALLUSER=ejabberd$/INSTALLUSER=/' /usr/sbin/ejabberdctl > "$w/ejabberdctl"
  chmod +x "$w/ejabberdctl"
  local dnsip=${dns%:*} dnsport=${dns##*:}
  cat > "$w/inetrc" <<RC
{lookup, [file, dns]}.
{resolv_conf, ""}.
{hosts_file, ""}.
{host, {127,0,0,1}, ["localhost"]}.
{nameserver, {${dnsip//./,}}, $dnsport}.
{timeout, 2000}.
{retry, 2}.
RC
  cat > "$w/ejabberdctl.cfg" <<CFG
ERLANG_NODE=ejabberd-s2s-$s2s-${ip##*.}@localhost
EJABBERD_PID_PATH=$w/ejabberd.pid
CONTRIB_MODULES_CONF_DIR=$w/modules.d
ERL_MAX_PORTS=65536
ERL_EPMD_ADDRESS=127.0.0.1
ERL_DIST_PORT=$((45400 + ${ip##*.}))
INET_DIST_INTERFACE=127.0.0.1
CFG
  cat > "$w/ejabberd.yml" <<YML
# federation peer $domain on $ip (c2s $c2s, s2s $s2s), auth $auth
hosts:
  - "$domain"
loglevel: ${EJABBERD_LOG_LEVEL:-info}
certfiles:
  - "$w/cert.pem"
  - "$w/key.pem"
$cafile
s2s_use_starttls: required
s2s_access: s2s
s2s_dns_timeout: 3
s2s_dns_retries: 1
# How long a remote domain gets to connect before its stanzas bounce:
# the tests expect an error back within seconds. (A bare number is
# seconds; ejabberd warns about one that looks like milliseconds.)
outgoing_s2s_timeout: 10
listen:
  -
    port: $c2s
    ip: "$ip"
    module: ejabberd_c2s
    starttls_required: true
    shaper: none
    max_stanza_size: 262144
  -
    port: $s2s
    ip: "$ip"
    module: ejabberd_s2s_in
    shaper: none
    max_stanza_size: 524288
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
  register:
    allow: all
shaper_rules:
  max_user_sessions: 100000
  max_user_offline_messages: 5000
  c2s_shaper: none
  s2s_shaper: none
registration_timeout: infinity
auth_method: internal
auth_password_format: scram
modules:
  mod_disco: {}
  mod_ping: {}
  mod_version: {}
  mod_roster: {}
  mod_register:
    access: register
    ip_access: all
$dialback
YML
}

ejabberd_s2s_ctl() { # WORKDIR ARGS...
  local w=$1
  shift
  "$w/ejabberdctl" --config-dir "$w" --ctl-config "$w/ejabberdctl.cfg" \
    --config "$w/ejabberd.yml" --logs "$w/logs" --spool "$w/spool" "$@"
}

# ejabberd_s2s_adduser WORKDIR USER DOMAIN PASSWORD (once started); an
# account that exists (a WORKDIR used again) is made anew (change_password
# needs mod_admin_extra).
ejabberd_s2s_adduser() {
  ejabberd_s2s_ctl "$1" register "$2" "$3" "$4" >> "$1/stdout" 2>&1 && return 0
  ejabberd_s2s_ctl "$1" unregister "$2" "$3" >> "$1/stdout" 2>&1 &&
    ejabberd_s2s_ctl "$1" register "$2" "$3" "$4" >> "$1/stdout" 2>&1
}

# ejabberd_s2s_start WORKDIR: sets PID (the shell that runs ejabberdctl,
# parent of the Erlang VM) once the client port answers.
ejabberd_s2s_start() {
  local w=$1 ip port
  ip=$(sed -n 's/^    ip: "\(.*\)"$/\1/p' "$w/ejabberd.yml" | head -1)
  port=$(sed -n 's/^    port: \([0-9]*\)$/\1/p' "$w/ejabberd.yml" | head -1)
  "$w/ejabberdctl" --config-dir "$w" --ctl-config "$w/ejabberdctl.cfg" \
    --config "$w/ejabberd.yml" --logs "$w/logs" --spool "$w/spool" \
    foreground >> "$w/stdout" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "ejabberd did not start; see $w/stdout and $w/logs" >&2
  return 1
}

ejabberd_s2s_alive() { kill -0 "$1" 2>/dev/null; }

# ejabberd_s2s_stop [PID]: SIGTERM to the Erlang VM (a clean stop), then
# SIGKILL to it and its shell after 15 s.
ejabberd_s2s_stop() {
  local pid=${1:-${PID:-}} vm
  [ -n "$pid" ] || return 0
  vm=$(pgrep -P "$pid" 2>/dev/null | head -1)
  # The shell waits for the VM and ends with it.
  kill -TERM "${vm:-$pid}" 2>/dev/null
  for _ in $(seq 1 150); do
    ejabberd_s2s_alive "$pid" || { [ -n "$vm" ] && ejabberd_s2s_alive "$vm"; } || break
    sleep 0.1
  done
  kill -KILL ${vm:+"$vm"} "$pid" 2>/dev/null
  PID=
  return 0
}
