#!/usr/bin/env bash
# Measure idle-session memory and one-to-one throughput of xmppd (perf build).
# Builds with the `perf` profile, runs the server on 127.0.0.1:15222 with
# a throw-away data directory, and stops everything at the end.
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
cargo build --profile perf -p node -p loadtest
T=$CARGO_TARGET_DIR/perf
work=$(mktemp -d)
cfg=$work/xmppd.toml
cat > "$cfg" <<TOML
domains = ["localhost"]
data_dir = "$work/data"
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
# Accounts: load0..load9999 by in-band registration (first pass only).
$T/xmppd --config "$cfg" serve > "$work/server.log" 2>&1 & sleep 2
$T/xmpp-loadtest connect --port 15222 --register --sessions 10000 --login-rate 500 --duration 0 > /dev/null 2>&1
kill -TERM $(pgrep -f "$cfg") ; sleep 2
start() { $T/xmppd --config "$cfg" serve > "$work/server.log" 2>&1 & sleep 2; PID=$(pgrep -f "$cfg"); }
stop() { kill -TERM $PID; wait 2>/dev/null; sleep 1; }
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for i in 1 2 3; do
  start
  $T/xmpp-loadtest connect --port 15222 --sessions 10000 --login-rate 500 --duration 2 --server-pid $PID 2>/dev/null | grep -E '"failed"|bytes_per|logins_per' | tr -d '\n '; echo
  stop
done
start
for i in 1 2 3; do
  c0=$(cpu $PID)
  /usr/bin/time -f "loadgen_cpu_s=%U+%S wall_s=%e" $T/xmpp-loadtest chat --port 15222 --pairs 50 --window 16 --duration 10 2>"$work/time.txt" | grep -E 'delivered_per|"lost"|p50|p90|p99"|p999|max' | tr -d '\n '
  c1=$(cpu $PID); echo " server_cpu_s=$(( (c1-c0) / 100 )) $(tail -1 "$work/time.txt")"
done
stop
rm -rf "$work"
