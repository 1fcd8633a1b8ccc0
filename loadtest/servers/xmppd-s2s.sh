# xmppd as a federation peer for loadtest/bench-s2s.sh, with the same
# calling convention as prosody-s2s.sh and ejabberd-s2s.sh: a throw-away
# configuration and data directory under WORKDIR on one loopback address,
# the perf build from $T (the target directory's perf/ folder), peers
# found through tests/interop/s2s/dns.py. Source this file.

# xmppd_s2s_config WORKDIR IP C2S_PORT S2S_PORT DOMAIN CERTDIR AUTH DNS_IP:DNS_PORT
# AUTH: external (the test CA is trusted and peers must have valid
# certificates), dialback (it is not), or both (trusted, dialback allowed).
xmppd_s2s_config() {
  local w=$1 ip=$2 c2s=$3 s2s=$4 domain=$5 certs=$6 auth=$7 dns=$8
  local ca='' strict=false
  case $auth in
    external) ca="ca_file = \"$certs/ca.pem\"" strict=true ;;
    both) ca="ca_file = \"$certs/ca.pem\"" ;;
    dialback) ;;
    *) echo "xmppd_s2s_config: AUTH is external, dialback or both, not $auth" >&2; return 2 ;;
  esac
  mkdir -p "$w"
  cat > "$w/xmppd.toml" <<TOML
domains = ["$domain"]
data_dir = "$w/data"
[listeners]
c2s = "$ip:$c2s"
c2s_direct_tls = false
http = false
[tls]
cert = "$certs/$domain.pem"
key = "$certs/$domain.key"
[limits]
max_connections = 19000
max_connections_per_ip = 19000
read_rate_bytes_per_sec = 0
stanza_rate_per_sec = 0
[registration]
enabled = true
min_interval_secs = 0
[log]
level = "warn"
[s2s]
enabled = true
listen = "$ip:$s2s"
system_roots = false
require_valid_certs = $strict
nameservers = ["$dns"]
$ca
TOML
}

# xmppd_s2s_start WORKDIR: sets PID once the client port answers.
xmppd_s2s_start() {
  local w=$1 addr ip port
  addr=$(sed -n 's/^c2s = "\(.*\)"$/\1/p' "$w/xmppd.toml")
  ip=${addr%:*} port=${addr##*:}
  "$T/xmppd" --config "$w/xmppd.toml" serve >> "$w/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "xmppd did not start; see $w/server.log" >&2
  return 1
}

# xmppd_s2s_stop [PID]: SIGTERM, then SIGKILL after 10 s.
xmppd_s2s_stop() {
  local pid=${1:-${PID:-}}
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
