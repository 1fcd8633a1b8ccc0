# xmppd for loadtest/compare.sh and friends: a throw-away configuration and
# data directory under WORKDIR, the perf build from $T (the target dir's
# perf/ folder). Source this file; see compare.sh for the calling order.

# xmppd_config WORKDIR PORT DOMAIN CERT KEY
xmppd_config() {
  local w=$1 port=$2 domain=$3 cert=$4 key=$5
  mkdir -p "$w"
  cat > "$w/xmppd.toml" <<TOML
domains = ["$domain"]
data_dir = "$w/data"
[listeners]
c2s = "127.0.0.1:$port"
c2s_direct_tls = "127.0.0.1:$((port + 1))"
http = false
[tls]
cert = "$cert"
key = "$key"
[limits]
max_connections = 19000
max_connections_per_ip = 19000
read_rate_bytes_per_sec = 0
stanza_rate_per_sec = 0
[registration]
enabled = true
[log]
level = "warn"
TOML
}

# xmppd_start WORKDIR: sets PID
xmppd_start() {
  local w=$1 port
  port=$(sed -n 's/^c2s = "127.0.0.1:\([0-9]*\)"/\1/p' "$w/xmppd.toml")
  # XMPPD_WRAPPER: a command to run it under, e.g. "taskset -c 0".
  ${XMPPD_WRAPPER:-} "$T/xmppd" --config "$w/xmppd.toml" serve >> "$w/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "xmppd did not start; see $w/server.log" >&2
  return 1
}

# xmppd_stop WORKDIR
xmppd_stop() {
  [ -n "${PID:-}" ] || return 0
  kill -TERM "$PID" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
  PID=
}
