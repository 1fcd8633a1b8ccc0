#!/usr/bin/env bash
# Logins per second on one embedded node against three core nodes (Raft,
# every session replicated with its shard) behind two edges, in one run:
# each login is TLS, SCRAM-SHA-256, bind and initial presence; in the
# cluster the bind and the presence are each written to the shard's Raft
# log. Uses the perf build; prints a Markdown table of medians.
#
# usage: bash loadtest/bench-logins.sh   (RUNS=3 SESSIONS=2000 RATE=4000; KEEP=1 keeps
# the logs and JSON reports)
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
RUNS=${RUNS:-3}
SESSIONS=${SESSIONS:-2000}
RATE=${RATE:-4000}
cargo build --profile perf -p node -p loadtest || exit 1
T=$CARGO_TARGET_DIR/perf
LT=$T/xmpp-loadtest
work=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2> /dev/null; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2> /dev/null; done
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null

conf() { # NAME BODY
  cat > "$work/$1.toml" << TOML
domains = ["localhost"]
data_dir = "$work/$1"
$2
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
}
wait_port() { # PORT
  for _ in $(seq 1 100); do
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}
start() { # NAME PORT
  "$T/xmppd" --config "$work/$1.toml" serve >> "$work/$1.log" 2>&1 &
  PIDS+=($!)
  wait_port "$2" || exit 1
}

conf embedded '[listeners]
c2s = "127.0.0.1:17222"
c2s_direct_tls = false
http = false'
PEERS='"1=127.0.0.1:17401", "2=127.0.0.1:17402", "3=127.0.0.1:17403"'
for n in 1 2 3; do
  conf "core$n" "[listeners]
http = false
[cluster]
role = \"core\"
node_id = $n
listen = \"127.0.0.1:1740$n\"
peers = [$PEERS]"
done
for i in 4 5; do
  conf "edge$i" "[listeners]
c2s = \"127.0.0.1:174${i}2\"
c2s_direct_tls = false
http = false
[cluster]
role = \"edge\"
node_id = $i
core = \"127.0.0.1:17401\""
done
start embedded 17222
for n in 1 2 3; do start "core$n" "1740$n"; done
start edge4 17442
start edge5 17452
sleep 3 # leaders spread over the three core nodes

EMB=(--port 17222)
CLU=(--port 17442 --also 127.0.0.1:17452)
# The accounts first (in-band registration), then the measured logins.
for s in EMB CLU; do
  declare -n a=$s
  "$LT" connect "${a[@]}" --register --sessions "$SESSIONS" --login-rate "$RATE" --duration 1 \
    --json "$work/register-$s.json" > /dev/null 2>&1
done
for i in $(seq 1 "$RUNS"); do
  "$LT" connect "${EMB[@]}" --sessions "$SESSIONS" --login-rate "$RATE" --duration 1 \
    --json "$work/embedded-$i.json" > /dev/null 2>&1
  "$LT" connect "${CLU[@]}" --sessions "$SESSIONS" --login-rate "$RATE" --duration 1 \
    --json "$work/cluster-$i.json" > /dev/null 2>&1
done
python3 - "$work" << 'PY'
import glob, json, os, statistics, sys
work = sys.argv[1]
def med(name, key):
    vals = []
    for f in sorted(glob.glob(os.path.join(work, f"{name}-*.json"))):
        d = json.load(open(f)).get("result", {})
        if isinstance(d.get(key), (int, float)):
            vals.append(d[key])
    return statistics.median(vals) if vals else float("nan"), len(vals)
print("| setup | logins/s (median) | failed logins | runs |")
print("|---|---|---|---|")
rates = {}
for name, label in [("embedded", "one embedded node"), ("cluster", "3 cores (Raft, replicated sessions) + 2 edges")]:
    r, n = med(name, "logins_per_second")
    f, _ = med(name, "failed_logins")
    rates[name] = r
    print(f"| {label} | {r:,.0f} | {f:.0f} | {n} |")
print()
print(f"cluster / embedded login rate: {rates['cluster'] / rates['embedded']:.2f}")
PY
