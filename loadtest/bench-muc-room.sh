#!/usr/bin/env bash
# One large room (XEP-0045): OCCUPANTS occupants (10,000 by default) spread
# over EDGES edge processes of a cluster with one core node, and as many
# harness processes (one process holds at most ~19,500 sockets here). The
# occupants enter at JOIN_RATE a second per harness process, each reading
# all along; then one sender on edge 1 sends MESSAGES groupchat messages,
# one a second. Reports the entering (how long until the last occupant
# was in, each entry's latency), each message's latency to its last
# recipient (the largest of the harness processes' own last ones), and
# the CPU seconds and RSS of the core and the edges over the entering and
# over the messages. BROADCAST=moderator makes a room of listeners
# (muc#roomconfig_presencebroadcast: only moderators' presence is sent
# to everyone); empty (the default) broadcasts every occupant's presence
# to every other, XEP-0045's default, which costs N^2 presence stanzas.
# Uses the perf build; sends traffic only to 127.0.0.1 and stops by
# itself.
#
# usage: bash loadtest/bench-muc-room.sh   (OCCUPANTS=10000 EDGES=4 MESSAGES=10 JOIN_RATE=50 BROADCAST=)
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
OCCUPANTS=${OCCUPANTS:-10000}
EDGES=${EDGES:-4}
MESSAGES=${MESSAGES:-10}
JOIN_RATE=${JOIN_RATE:-50}
LOGIN_RATE=${LOGIN_RATE:-300}
REGISTER_RATE=${REGISTER_RATE:-80}
BROADCAST=${BROADCAST:-}
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
outbound_queue = 120000
[registration]
enabled = true
[muc]
max_occupants = 100000
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
# Ports: the core's gRPC 17300, edge e's c2s as 17000 + 100 e + 22.
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
# Source addresses of harness process E in phase P: four of its own.
sources() { echo "127.$((10 + $2)).$1.1,127.$((10 + $2)).$1.2,127.$((10 + $2)).$1.3,127.$((10 + $2)).$1.4"; }
log "core (pid $CORE) and $EDGES edges up"

# The room, made (persistent) by the sender's account.
SEND=(--muc-room big --user-pattern "bigsend{n}" --port "$(port 1)")
BC=()
[ -n "$BROADCAST" ] && BC=(--muc-broadcast "$BROADCAST")
"$LT" muc --muc-role sender "${SEND[@]}" "${BC[@]}" --register --duration 0 > "$work/create.txt" 2>&1 ||
  { cat "$work/create.txt"; exit 1; }

per=$(((OCCUPANTS + EDGES - 1) / EDGES))
t0=$(date +%s)
REG_PIDS=()
for e in $(seq 1 "$EDGES"); do
  first=$(((e - 1) * per))
  n=$((OCCUPANTS - first < per ? OCCUPANTS - first : per))
  "$LT" connect --user-pattern "big{n}" --first-user "$first" --sessions "$n" --register \
    --login-rate "$REGISTER_RATE" --port "$(port "$e")" --sources "$(sources "$e" 1)" --duration 0 > "$work/reg$e.txt" 2>&1 &
  REG_PIDS+=($!)
done
for e in $(seq 1 "$EDGES"); do
  wait "${REG_PIDS[$((e - 1))]}" || { log "registration on edge $e failed"; tail -3 "$work/reg$e.txt"; exit 1; }
done
log "$OCCUPANTS accounts made in $(($(date +%s) - t0)) s"

stat_of() { # PID: CPU seconds (user + system) and RSS KiB
  local t
  t=$(awk '{print $14 + $15}' "/proc/$1/stat")
  echo "$(echo "$t / $(getconf CLK_TCK)" | bc -l) $(awk '/VmRSS/ {print $2}' "/proc/$1/status")"
}
snapshot() { for p in "$CORE" "${EDGE_PIDS[@]}"; do stat_of "$p"; done; }
J0=$(snapshot)
tj0=$(date +%s.%N)
OCC_PIDS=()
for e in $(seq 1 "$EDGES"); do
  first=$(((e - 1) * per))
  n=$((OCCUPANTS - first < per ? OCCUPANTS - first : per))
  "$LT" muc --muc-role occupants --muc-room big --user-pattern "big{n}" \
    --first-user "$first" --occupants "$n" --login-rate "$LOGIN_RATE" --join-rate "$JOIN_RATE" \
    --port "$(port "$e")" --sources "$(sources "$e" 2)" --duration 3600 --ready-file "$work/ready$e" \
    --json "$work/occ$e.json" > "$work/occ$e.txt" 2>&1 &
  OCC_PIDS+=($!)
done
for e in $(seq 1 "$EDGES"); do
  while [ ! -e "$work/ready$e" ]; do
    kill -0 "${OCC_PIDS[$((e - 1))]}" 2> /dev/null || { log "harness $e stopped"; tail -5 "$work/occ$e.txt"; exit 1; }
    sleep 1
  done
done
tj1=$(date +%s.%N)
J1=$(snapshot)
log "$OCCUPANTS in the room after $(echo "$tj1 - $tj0" | bc -l | cut -d. -f1) s"
sleep 5 # the presence of the last ones
B=$(snapshot)
t1=$(date +%s.%N)
"$LT" muc --muc-role sender "${SEND[@]}" --window 1 --muc-rate 1 --duration "$MESSAGES" \
  --server-pid "$CORE" --json "$work/send.json" > "$work/send.txt" 2>&1
sleep 5 # the last message's deliveries
t2=$(date +%s.%N)
A=$(snapshot)
for e in $(seq 1 "$EDGES"); do touch "$work/ready$e.stop"; done
for p in "${OCC_PIDS[@]}"; do wait "$p"; done

python3 - "$work" "$EDGES" "$OCCUPANTS" "$(echo "$tj1 - $tj0" | bc -l)" "$(echo "$t2 - $t1" | bc -l)" "$J0" "$J1" "$B" "$A" "${BROADCAST:-all roles}" << 'PY'
import json, statistics, sys
work, edges, occ = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
join_wall, send_wall = float(sys.argv[4]), float(sys.argv[5])
snap = lambda s: [l.split() for l in s.splitlines()]
j0, j1, before, after = (snap(sys.argv[i]) for i in range(6, 10))
broadcast = sys.argv[10]
send = json.load(open(f"{work}/send.json"))
sent = send["result"].get("sent", 0)
reports = [json.load(open(f"{work}/occ{e}.json"))["result"] for e in range(1, edges + 1)]
entered = sum(r.get("entered", 0) for r in reports)
refused = sum(r.get("refused", 0) for r in reports)
last_in = max(r.get("last_in_after_us", 0) for r in reports)
join_p50 = statistics.median(r["join_us"]["p50"] for r in reports if r.get("join_us"))
join_p99 = max(r["join_us"]["p99"] for r in reports if r.get("join_us"))
join_max = max(r["join_us"]["max"] for r in reports if r.get("join_us"))
last, incomplete = {}, 0
for i in range(sent):
    per = [r.get("last_recipient_by_item_us", {}).get(str(i)) for r in reports]
    if any(v is None for v in per):
        incomplete += 1
    else:
        last[i] = max(per)
delivered = sum(r.get("delivered", 0) for r in reports)
dups = sum(r.get("duplicates", 0) for r in reports)
ms = lambda us: f"{us / 1000:.1f} ms"
print(f"Presence broadcast: {broadcast}.")
print()
print("| occupants | edges | entered | refused | last one in after | entry latency p50 (median of processes) / p99 / max |")
print("|---|---|---|---|---|---|")
print(f"| {occ:,} | {edges} | {entered:,} | {refused} | {last_in / 1e6:.1f} s | {ms(join_p50)} / {ms(join_p99)} / {ms(join_max)} |")
print()
lat = sorted(last.values())
print("| messages | reached every occupant | deliveries | duplicates | send to last recipient, median | max |")
print("|---|---|---|---|---|---|")
print(f"| {sent} | {len(lat)} | {delivered:,} of {sent * occ:,} | {dups} | {ms(statistics.median(lat)) if lat else '-'} | {ms(lat[-1]) if lat else '-'} |")
print()
print("| process | CPU s entering | cores | CPU s over the messages | cores | RSS after |")
print("|---|---|---|---|---|---|")
names = ["core"] + [f"edge {e}" for e in range(1, edges + 1)]
for name, a0, a1, b, a in zip(names, j0, j1, before, after):
    cj = float(a1[0]) - float(a0[0])
    cm = float(a[0]) - float(b[0])
    print(f"| {name} | {cj:.1f} | {cj / join_wall:.2f} | {cm:.2f} | {cm / send_wall:.2f} | {int(a[1]) / 1024:.0f} MiB |")
print()
print(f"Entering took {join_wall:.1f} s, the messages and their draining {send_wall:.1f} s; {incomplete} messages did not reach everyone.")
PY
