#!/usr/bin/env bash
# Side-by-side load test on this machine: the same scenarios against
# Prosody and xmppd, one after the other, each server on loopback ports of
# its own with a throw-away configuration and data directory. Prints one
# line per run; RESULTS.md quotes the medians.
#
# Status: Prosody and xmppd. ejabberd (also in Debian) is not wired in yet.
#
# usage: bash loadtest/compare.sh
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
command -v prosody >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody >/dev/null; }
cargo build --profile perf -p node -p loadtest
T=$CARGO_TARGET_DIR/perf
work=$(mktemp -d)
SESSIONS=${SESSIONS:-10000}
RATE=${RATE:-250}
MECH=SCRAM-SHA-1   # what both servers offer by default

cpu() { awk '{print $14+$15}' /proc/$1/stat; }

# --- xmppd -------------------------------------------------------------
mkdir -p "$work/xmppd"
cat > "$work/xmppd/xmppd.toml" <<TOML
domains = ["localhost"]
data_dir = "$work/xmppd/data"
[listeners]
c2s = "127.0.0.1:15222"
c2s_direct_tls = "127.0.0.1:15223"
[limits]
max_connections = 19000
max_connections_per_ip = 19000
read_rate_bytes_per_sec = 0
[registration]
enabled = true
[log]
level = "warn"
TOML
xstart() { $T/xmppd --config "$work/xmppd/xmppd.toml" serve > "$work/xmppd/log" 2>&1 & sleep 2; PID=$(pgrep -f "$work/xmppd/xmppd.toml"); }

# --- Prosody -----------------------------------------------------------
mkdir -p "$work/prosody/data"
pstart_once=0
pconfig() {
  # Reuse xmppd's generated self-signed certificate.
  cp "$work/xmppd/data/tls/selfsigned.crt" "$work/prosody/cert.pem"
  cp "$work/xmppd/data/tls/selfsigned.key" "$work/prosody/key.pem"
  cat > "$work/prosody/prosody.cfg.lua" <<LUA
run_as_root = true
pidfile = "$work/prosody/prosody.pid"
data_path = "$work/prosody/data"
interfaces = { "127.0.0.1" }
c2s_ports = { 25222 }
c2s_direct_tls_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "register"; "offline"; "vcard" }
modules_disabled = { "s2s" }
allow_registration = true
min_seconds_between_registrations = 0
registration_throttle_max = 1000000
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
log = { warn = "$work/prosody/prosody.log" }
VirtualHost "localhost"
  ssl = { key = "$work/prosody/key.pem"; certificate = "$work/prosody/cert.pem" }
LUA
}
pstart() { (cd "$work/prosody" && prosody -F --config "$work/prosody/prosody.cfg.lua" > "$work/prosody/stdout" 2>&1 &); sleep 3; PID=$(pgrep -f "prosody -F --config $work"); }

stop() { kill -TERM "$PID"; sleep 3; }

run_suite() { # name port start-function
  local name=$1 port=$2 start=$3
  $start
  $T/xmpp-loadtest connect --port "$port" --register --mechanism $MECH --sessions "$SESSIONS" --login-rate "$RATE" --duration 0 > /dev/null 2>&1
  stop
  for i in 1 2 3; do
    $start
    echo "$name connect: $($T/xmpp-loadtest connect --port "$port" --mechanism $MECH --sessions "$SESSIONS" --login-rate "$RATE" --duration 2 --server-pid "$PID" 2>/dev/null | grep -E '"failed"|bytes_per|logins_per' | tr -d '\n ')"
    stop
  done
  $start
  for i in 1 2 3; do
    local c0 c1
    c0=$(cpu "$PID")
    out=$(/usr/bin/time -f "loadgen_cpu_s=%U+%S wall_s=%e" $T/xmpp-loadtest chat --port "$port" --mechanism $MECH --pairs 50 --window 16 --duration 10 2>"$work/time" | grep -E 'delivered_per|"lost"|p50|p99"|max' | tr -d '\n ')
    c1=$(cpu "$PID")
    echo "$name chat: $out server_cpu_s=$(( (c1 - c0) / 100 )) $(tail -1 "$work/time")"
  done
  stop
}

run_suite xmppd 15222 xstart
pconfig
run_suite prosody 25222 pstart
rm -rf "$work"
