#!/usr/bin/env bash
# One-to-one chat across two edges of a cluster (one core node and two edge
# nodes, separate processes talking gRPC; and three core nodes that
# replicate every shard with Raft, with leaders spread over them, and two
# edges) against the same chat on one embedded node, in one run: the maximum rate (flat out) and the latency at
# fixed paced rates. Every sender is on edge 1 and its receiver on edge 2,
# so every message crosses both tiers. Uses the perf build; prints a
# Markdown table.
#
# usage: bash loadtest/bench-cluster.sh   (RUNS=3 DURATION=10 PAIRS=50 RATES="10000 20000")
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
PAIRS=${PAIRS:-50}
RATES=${RATES:-"10000 20000"}
cargo build --profile perf -p node -p loadtest || exit 1
T=$CARGO_TARGET_DIR/perf
LT=$T/xmpp-loadtest
work=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2> /dev/null; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2> /dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null

# conf NAME BODY: a configuration with the shared parts.
conf() {
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
# wait_port PORT
wait_port() {
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
  LAST=$!
  wait_port "$2" || exit 1
}

# Ports: the embedded node 16222, the core's gRPC 16300, edges 16232/16242.
conf embedded '[listeners]
c2s = "127.0.0.1:16222"
c2s_direct_tls = false
http = false'
conf core '[listeners]
http = false
[cluster]
role = "core"
listen = "127.0.0.1:16300"'
for i in 2 3; do
  conf "edge$i" "[listeners]
c2s = \"127.0.0.1:16${i}32\"
c2s_direct_tls = false
http = false
[cluster]
role = \"edge\"
node_id = $i
core = \"127.0.0.1:16300\""
done
# Three core nodes (gRPC 16401-16403) and two edges (16442, 16452).
PEERS='"1=127.0.0.1:16401", "2=127.0.0.1:16402", "3=127.0.0.1:16403"'
for n in 1 2 3; do
  conf "rcore$n" "[listeners]
http = false
[cluster]
role = \"core\"
node_id = $n
listen = \"127.0.0.1:1640$n\"
peers = [$PEERS]"
done
for i in 4 5; do
  conf "redge$i" "[listeners]
c2s = \"127.0.0.1:164${i}2\"
c2s_direct_tls = false
http = false
[cluster]
role = \"edge\"
node_id = $i
core = \"127.0.0.1:16401\""
done
start embedded 16222
EMBEDDED=$LAST
start core 16300
CORE=$LAST
start edge2 16232
start edge3 16332
for n in 1 2 3; do start "rcore$n" "1640$n"; [ "$n" = 1 ] && RCORE=$LAST; done
# The edges start once every shard has a leader (they wait for it).
start redge4 16442
start redge5 16452
sleep 3 # leaders spread over the three core nodes

run() { # NAME PID ARGS...
  local name=$1 pid=$2
  shift 2
  "$LT" chat --pairs "$PAIRS" --duration "$DURATION" --server-pid "$pid" \
    --json "$work/$name.json" "$@" > /dev/null 2>&1
}
EMB=(--port 16222)
CLU=(--port 16232 --also 127.0.0.1:16332)
REP=(--port 16442 --also 127.0.0.1:16452)
"$LT" chat "${EMB[@]}" --register --pairs "$PAIRS" --duration 1 > /dev/null 2>&1
"$LT" chat "${CLU[@]}" --register --pairs "$PAIRS" --duration 1 > /dev/null 2>&1
"$LT" chat "${REP[@]}" --register --pairs "$PAIRS" --duration 1 > /dev/null 2>&1
for i in $(seq 1 "$RUNS"); do
  run "embedded-max-$i" "$EMBEDDED" "${EMB[@]}" --window 16
  run "cluster-max-$i" "$CORE" "${CLU[@]}" --window 16
  run "replicated-max-$i" "$RCORE" "${REP[@]}" --window 16
  for r in $RATES; do
    run "embedded-rate$r-$i" "$EMBEDDED" "${EMB[@]}" --window 64 --warmup 2 --rate "$r"
    run "cluster-rate$r-$i" "$CORE" "${CLU[@]}" --window 64 --warmup 2 --rate "$r"
    run "replicated-rate$r-$i" "$RCORE" "${REP[@]}" --window 64 --warmup 2 --rate "$r"
  done
done
RATES=$RATES python3 - "$work" << 'PY'
import glob, json, os, statistics, sys
work = sys.argv[1]
def med(files, path):
    vals = []
    for f in files:
        d = json.load(open(f))
        for k in path.split("."):
            d = d.get(k) if isinstance(d, dict) else None
        if isinstance(d, (int, float)):
            vals.append(d)
    return statistics.median(vals) if vals else float("nan")
def row(label, setup, fs):
    ok = sum(1 for f in fs if json.load(open(f)).get("ok"))
    ms = lambda p: f"{med(fs, p) / 1000:.2f} ms"
    print(f"| {label} | {setup} | {med(fs, 'result.delivered_per_second'):,.0f} | {ms('result.latency_us.p50')} | "
          f"{ms('result.latency_us.p99')} | {med(fs, 'cpu.server_cores'):.2f} | {med(fs, 'cpu.generator_cores'):.2f} | {ok} of {len(fs)} |")
print("| load | setup | delivered/s | p50 | p99 | cores of the process measured | generator cores | runs passed |")
print("|---|---|---|---|---|---|---|---|")
files = lambda n: sorted(glob.glob(os.path.join(work, f"{n}-*.json")))
for load, tag in [("flat out", "max")] + [(f"{int(r):,}/s", f"rate{r}") for r in os.environ["RATES"].split()]:
    row(load, "one embedded node", files(f"embedded-{tag}"))
    row(load, "1 core + 2 edges", files(f"cluster-{tag}"))
    row(load, "3 cores (Raft) + 2 edges", files(f"replicated-{tag}"))
e = med(files("embedded-max"), "result.delivered_per_second")
c = med(files("cluster-max"), "result.delivered_per_second")
r = med(files("replicated-max"), "result.delivered_per_second")
print()
print(f"cluster / embedded maximum rate: {c / e:.2f}")
print(f"3 cores + 2 edges / embedded maximum rate: {r / e:.2f}")
PY
