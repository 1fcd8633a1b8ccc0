#!/usr/bin/env bash
# Group chat across a cluster of three core nodes (every shard replicated
# with Raft, leaders spread over them) and two edges, where a room's
# messages reach occupants whose shards other core nodes lead (relays
# between core nodes). Compares two xmppd binaries, A and B, run
# alternately RUNS times each on the same layout: deliveries per second
# and the core nodes' CPU per delivery (their utime+stime from /proc over
# the measured phase), each run's figures and the median of the pairwise
# B/A ratios. Sends traffic only to 127.0.0.1 and stops by itself.
#
# usage: bash loadtest/bench-cluster-muc.sh A_XMPPD B_XMPPD
#        (RUNS=5 ROOMS=20 OCCUPANTS=10 DURATION=8; LOADTEST=path of the harness)
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
A=${1:?usage: bench-cluster-muc.sh A_XMPPD B_XMPPD}
B=${2:?usage: bench-cluster-muc.sh A_XMPPD B_XMPPD}
RUNS=${RUNS:-5}
ROOMS=${ROOMS:-20}
OCCUPANTS=${OCCUPANTS:-10}
DURATION=${DURATION:-8}
if [ -z "${LOADTEST:-}" ]; then
  cargo build --profile perf -p loadtest || exit 1
  LOADTEST=$CARGO_TARGET_DIR/perf/xmpp-loadtest
fi
work=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2> /dev/null; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2> /dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    sleep 0.2
  done
  echo "nothing listens on $1" >&2
  return 1
}

# one BIN LABEL: a fresh cluster, a warm-up that registers the accounts,
# the measured run; prints LABEL, deliveries/s, lost, core CPU µs per
# delivery.
one() {
  local bin=$1 label=$2 d
  d=$(mktemp -d "$work/run.XXXX")
  local peers='"1=127.0.0.1:18401", "2=127.0.0.1:18402", "3=127.0.0.1:18403"'
  local common='[registration]
enabled = true
[limits]
stanza_rate_per_sec = 0
[log]
level = "warn"'
  for n in 1 2 3; do
    printf '%s\n' 'domains = ["localhost"]' "data_dir = \"$d/core$n\"" '[listeners]' 'http = false' \
      "$common" '[cluster]' 'role = "core"' "node_id = $n" "listen = \"127.0.0.1:1840$n\"" \
      "peers = [$peers]" > "$d/core$n.toml"
  done
  for e in 4 5; do
    printf '%s\n' 'domains = ["localhost"]' "data_dir = \"$d/edge$e\"" '[listeners]' \
      "c2s = \"127.0.0.1:184${e}2\"" 'c2s_direct_tls = false' 'http = false' \
      "$common" '[cluster]' 'role = "edge"' "node_id = $e" 'core = "127.0.0.1:18401"' > "$d/edge$e.toml"
  done
  local cores=() all=()
  for n in 1 2 3; do
    "$bin" --config "$d/core$n.toml" serve >> "$d/core$n.log" 2>&1 &
    cores+=($!)
  done
  for e in 4 5; do
    "$bin" --config "$d/edge$e.toml" serve >> "$d/edge$e.log" 2>&1 &
    all+=($!)
  done
  all+=("${cores[@]}")
  PIDS+=("${all[@]}")
  wait_port 18442 && wait_port 18452 || exit 1
  sleep 3 # leaders spread over the three core nodes
  local args=(muc --rooms "$ROOMS" --occupants "$OCCUPANTS" --window 16 --port 18442
    --also 127.0.0.1:18452 --domain localhost)
  "$LOADTEST" "${args[@]}" --duration 2 --register > /dev/null 2>&1
  cpu() { local s=0 p; for p in "${cores[@]}"; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$s"; }
  local c0 c1 out
  c0=$(cpu)
  out=$("$LOADTEST" "${args[@]}" --duration "$DURATION" 2>&1)
  c1=$(cpu)
  for p in "${all[@]}"; do kill -TERM "$p" 2> /dev/null; done
  wait "${all[@]}" 2> /dev/null
  local del rate lost
  del=$(echo "$out" | awk '$1=="result.delivered"{print $2}')
  rate=$(echo "$out" | awk '$1=="result.delivered_per_second"{print $2}')
  lost=$(echo "$out" | awk '$1=="result.lost"{print $2}')
  python3 -c "import sys; print(sys.argv[1], sys.argv[2], sys.argv[3], round((int(sys.argv[5]) - int(sys.argv[4])) / int(sys.argv[7]) / int(sys.argv[6]) * 1e6, 2))" \
    "$label" "$rate" "$lost" "$c0" "$c1" "$del" "$(getconf CLK_TCK)"
  rm -rf "$d"
}

: > "$work/results"
for i in $(seq 1 "$RUNS"); do
  one "$A" A >> "$work/results"
  one "$B" B >> "$work/results"
done
python3 - "$work/results" << 'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
a = [r for r in rows if r[0] == "A"]
b = [r for r in rows if r[0] == "B"]
print("| run | " + " | ".join(str(i + 1) for i in range(len(a))) + " |")
print("|---" * (len(a) + 1) + "|")
print("| A: deliveries/s | " + " | ".join(r[1] for r in a) + " |")
print("| B: deliveries/s | " + " | ".join(r[1] for r in b) + " |")
print("| A: core CPU µs per delivery | " + " | ".join(r[3] for r in a) + " |")
print("| B: core CPU µs per delivery | " + " | ".join(r[3] for r in b) + " |")
print("| lost (A, B) | " + " | ".join(f"{x[2]}, {y[2]}" for x, y in zip(a, b)) + " |")
cpu = [float(y[3]) / float(x[3]) for x, y in zip(a, b)]
rate = [float(y[1]) / float(x[1]) for x, y in zip(a, b)]
print()
print(f"median B/A core CPU per delivery {statistics.median(cpu):.3f}, deliveries/s {statistics.median(rate):.3f}")
PY
