#!/usr/bin/env bash
# Many small PubSub nodes in one server: NODES nodes (1,000,000 by default)
# with ITEMS items each, created by SESSIONS accounts (1,000 each at most,
# the default quota) through the harness's `nodes` scenario against one
# xmppd process. At each tenth the creation pauses and PROBES single-item
# retrievals are timed. Prints the harness's checkpoint lines (nodes,
# creation rate, retrieval p50/p99, server RSS, data directory size) and
# the totals. Uses the perf build; sends traffic only to 127.0.0.1 and
# stops by itself.
#
# usage: bash loadtest/bench-nodes.sh   (NODES=1000000 ITEMS=2 SESSIONS=1000 WINDOW=4 PROBES=500)
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
NODES=${NODES:-1000000}
ITEMS=${ITEMS:-2}
SESSIONS=${SESSIONS:-1000}
WINDOW=${WINDOW:-4}
PROBES=${PROBES:-500}
cargo build --profile perf -p node -p loadtest || exit 1
T=$CARGO_TARGET_DIR/perf
work=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill -TERM "$PID" 2> /dev/null && sleep 1 && kill -KILL "$PID" 2> /dev/null
  [ -z "${KEEP:-}" ] && rm -rf "$work"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null
cat > "$work/xmppd.toml" << TOML
domains = ["localhost"]
data_dir = "$work/data"
[listeners]
c2s = "127.0.0.1:18222"
c2s_direct_tls = false
http = false
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
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
"$T/xmppd" --config "$work/xmppd.toml" serve >> "$work/xmppd.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do (exec 3<> /dev/tcp/127.0.0.1/18222) 2> /dev/null && break; sleep 0.1; done
"$T/xmpp-loadtest" nodes --port 18222 --register --user-pattern "dev{n}" --sessions "$SESSIONS" \
  --login-rate 500 --nodes "$NODES" --items-per-node "$ITEMS" --window "$WINDOW" --probes "$PROBES" \
  --server-pid "$PID" --server-data "$work/data" --json "$work/nodes.json" 2>&1 |
  grep -E '^nodes [0-9]|result\.(nodes|requests_per_second|create_seconds)|^ *(ok|PASSED|FAILED)'
du -sh "$work/data"
