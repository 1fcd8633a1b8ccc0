#!/usr/bin/env bash
# PubSub fan-out at IoT scale: one node with SUBSCRIBERS subscribers (100,000
# by default) spread over EDGES edge processes of a cluster with one core
# node, and as many harness processes (one process holds at most ~19,500
# sockets here). Once every subscriber has subscribed, one publisher on
# edge 1 publishes ITEMS items, one a second; each item's latency to its
# last recipient is the largest of the harness processes' own last ones.
# Reports that latency, deliveries, and the CPU seconds and RSS of the core
# and the edges over the publishing. Uses the perf build; sends traffic
# only to 127.0.0.1 and stops by itself.
#
# The accounts are made first by in-band registration at REGISTER_RATE per
# edge (each costs the core two PBKDF2 hashes, so this phase is slow);
# the subscribers then log in at LOGIN_RATE per harness process.
#
# usage: bash loadtest/bench-fanout.sh   (SUBSCRIBERS=100000 EDGES=6 ITEMS=10 REGISTER_RATE=80 LOGIN_RATE=300)
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
SUBSCRIBERS=${SUBSCRIBERS:-100000}
EDGES=${EDGES:-6}
ITEMS=${ITEMS:-10}
LOGIN_RATE=${LOGIN_RATE:-300}
REGISTER_RATE=${REGISTER_RATE:-80}
cargo build --profile perf -p node -p loadtest || exit 1
T=$CARGO_TARGET_DIR/perf
LT=$T/xmpp-loadtest
work=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2> /dev/null; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2> /dev/null; done
  [ -z "${KEEP:-}" ] && rm -rf "$work"
}
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
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
max_connections = 19500
max_connections_per_ip = 19500
read_rate_bytes_per_sec = 0
stanza_rate_per_sec = 0
[registration]
enabled = true
[pubsub]
max_subscriptions_per_node = 1000000
[log]
level = "warn"
TOML
}
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  exit 1
}
start() { # NAME PORT
  "$T/xmppd" --config "$work/$1.toml" serve >> "$work/$1.log" 2>&1 &
  PIDS+=($!)
  LAST=$!
  wait_port "$2"
}
# Ports: the core's gRPC 17300, edge e's c2s 17e02... as 17000 + 100 e + 22.
# The harness processes' SCRAM and the core's password hashing keep both
# cores busy while the accounts are made: a peer gets 30 s, not the
# default 4, to answer before it is taken for dead.
conf core '[listeners]
http = false
[cluster]
role = "core"
listen = "127.0.0.1:17300"
liveness_secs = 30'
start core 17300
CORE=$LAST
EDGE_PIDS=()
for e in $(seq 1 "$EDGES"); do
  conf "edge$e" "[listeners]
c2s = \"127.0.0.1:$((17000 + 100 * e + 22))\"
c2s_direct_tls = false
http = false
[cluster]
role = \"edge\"
node_id = $((e + 1))
core = \"127.0.0.1:17300\"
liveness_secs = 30"
  start "edge$e" $((17000 + 100 * e + 22))
  EDGE_PIDS+=($LAST)
done
port() { echo $((17000 + 100 * $1 + 22)); }
# Source addresses of harness process E in phase P (1 registration, 2
# subscribers): four of its own, so that no address holds more than a
# few thousand connections. With all of them from 127.0.0.1 the kernel's
# search for a free ephemeral port (__inet_hash_connect) took most of the
# CPU past ~60,000 connections, and the sockets a finished phase leaves
# in TIME_WAIT would crowd the next one's.
sources() { echo "127.$((10 + $2)).$1.1,127.$((10 + $2)).$1.2,127.$((10 + $2)).$1.3,127.$((10 + $2)).$1.4"; }
log "core (pid $CORE) and $EDGES edges up"

# The node, made by the publisher's account.
PUB=(--pubsub-node fanout --user-pattern "fanpub{n}" --port "$(port 1)")
"$LT" pubsub --pubsub-role publisher "${PUB[@]}" --register --duration 0 > "$work/create.txt" 2>&1 ||
  { cat "$work/create.txt"; exit 1; }

# The subscribers, an equal share per edge and per harness process.
per=$(((SUBSCRIBERS + EDGES - 1) / EDGES))
t0=$(date +%s)
REG_PIDS=()
for e in $(seq 1 "$EDGES"); do
  first=$(((e - 1) * per))
  n=$((SUBSCRIBERS - first < per ? SUBSCRIBERS - first : per))
  "$LT" connect --user-pattern "fan{n}" --first-user "$first" --sessions "$n" --register \
    --login-rate "$REGISTER_RATE" --port "$(port "$e")" --sources "$(sources "$e" 1)" --duration 0 > "$work/reg$e.txt" 2>&1 &
  REG_PIDS+=($!)
done
for e in $(seq 1 "$EDGES"); do
  wait "${REG_PIDS[$((e - 1))]}" || { log "registration on edge $e failed"; tail -3 "$work/reg$e.txt"; exit 1; }
done
log "$SUBSCRIBERS accounts made in $(($(date +%s) - t0)) s"
SUB_PIDS=()
for e in $(seq 1 "$EDGES"); do
  first=$(((e - 1) * per))
  n=$((SUBSCRIBERS - first < per ? SUBSCRIBERS - first : per))
  "$LT" pubsub --pubsub-role subscribers --pubsub-node fanout --user-pattern "fan{n}" \
    --first-user "$first" --subscribers "$n" --login-rate "$LOGIN_RATE" \
    --port "$(port "$e")" --sources "$(sources "$e" 2)" --duration 3600 --ready-file "$work/ready$e" \
    --json "$work/sub$e.json" > "$work/sub$e.txt" 2>&1 &
  SUB_PIDS+=($!)
done
t0=$(date +%s)
for e in $(seq 1 "$EDGES"); do
  while [ ! -e "$work/ready$e" ]; do
    kill -0 "${SUB_PIDS[$((e - 1))]}" 2> /dev/null || { log "harness $e stopped"; tail -5 "$work/sub$e.txt"; exit 1; }
    sleep 1
  done
done
log "$SUBSCRIBERS subscribed in $(($(date +%s) - t0)) s"

stat_of() { # PID: CPU seconds (user + system) and RSS KiB
  local t
  t=$(awk '{print $14 + $15}' "/proc/$1/stat")
  echo "$(echo "$t / $(getconf CLK_TCK)" | bc -l) $(awk '/VmRSS/ {print $2}' "/proc/$1/status")"
}
before() { for p in "$CORE" "${EDGE_PIDS[@]}"; do stat_of "$p"; done; }
B=$(before)
t1=$(date +%s.%N)
"$LT" pubsub --pubsub-role publisher "${PUB[@]}" --window 1 --publish-rate 1 --duration "$ITEMS" \
  --server-pid "$CORE" --json "$work/pub.json" > "$work/pub.txt" 2>&1
sleep 5 # the last item's deliveries
t2=$(date +%s.%N)
A=$(before)
for e in $(seq 1 "$EDGES"); do touch "$work/ready$e.stop"; done
for p in "${SUB_PIDS[@]}"; do wait "$p"; done

python3 - "$work" "$EDGES" "$SUBSCRIBERS" "$(echo "$t2 - $t1" | bc -l)" "$B" "$A" << 'PY'
import json, statistics, sys
work, edges, subs, wall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
before = [l.split() for l in sys.argv[5].splitlines()]
after = [l.split() for l in sys.argv[6].splitlines()]
pub = json.load(open(f"{work}/pub.json"))
published = pub["result"].get("sent")
reports = [json.load(open(f"{work}/sub{e}.json")) for e in range(1, edges + 1)]
items = set()
for r in reports:
    items |= set(r["result"].get("last_recipient_by_item_us", {}))
    items |= set(r["result"].get("incomplete_items", {}))
n_pub = published if published is not None else len(items)
last = {}
incomplete = 0
for i in range(n_pub):
    k = str(i)
    per = [r["result"].get("last_recipient_by_item_us", {}).get(k) for r in reports]
    if any(v is None for v in per):
        incomplete += 1
    else:
        last[i] = max(per)
delivered = sum(r["result"].get("delivered", 0) for r in reports)
dups = sum(r["result"].get("duplicates", 0) for r in reports)
lat = sorted(last.values())
ms = lambda us: f"{us / 1000:.1f} ms"
print(f"| subscribers | edges | items published | items that reached every subscriber | deliveries | duplicates |")
print(f"|---|---|---|---|---|---|")
print(f"| {subs:,} | {edges} | {n_pub} | {len(lat)} | {delivered:,} of {n_pub * subs:,} | {dups} |")
print()
if lat:
    print(f"Publish to last recipient, per item: median {ms(statistics.median(lat))}, max {ms(lat[-1])} "
          f"(all: {', '.join(ms(v) for v in (last[i] for i in sorted(last)))})")
print()
print("| process | CPU seconds over the publishing | cores | RSS after |")
print("|---|---|---|---|")
names = ["core"] + [f"edge {e}" for e in range(1, edges + 1)]
for name, b, a in zip(names, before, after):
    cpu = float(a[0]) - float(b[0])
    print(f"| {name} | {cpu:.2f} | {cpu / wall:.2f} | {int(a[1]) / 1024:.0f} MiB |")
print()
print(f"Publishing and draining took {wall:.1f} s; {incomplete} items did not reach everyone.")
PY
