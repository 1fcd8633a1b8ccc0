#!/usr/bin/env bash
# Federated chat throughput between two servers of one kind, a baseline
# for xmppd's server-to-server code: `chat --pairs PAIRS --window WINDOW
# --duration DURATION` with the senders on server A (KIND-a.test) and the
# receivers on server B (KIND-b.test, --peer-host/--peer-domain), so
# every message crosses A's one outgoing S2S stream to B. RUNS runs after
# a warm-up that registers the accounts (XEP-0077) and opens the stream.
# Prints a Markdown table: delivered/s, latency, each server's cores, the
# generator's cores, and the medians.
#
# KIND is xmppd (the perf build), prosody or ejabberd (Debian's
# packages), started by loadtest/servers/KIND-s2s.sh and found through
# tests/interop/s2s/dns.py; AUTH is dialback
# (default), external or both. Addresses 127.0.0.2 (DNS, port 45053),
# 127.0.0.3 (A) and 127.0.0.4 (B), ports 45222 (c2s) and 45269 (s2s);
# ejabberd's control ports 45403 and 45404. Stops by itself; kills only
# the processes it started.
#
# usage: bash loadtest/bench-s2s.sh KIND...   (RUNS=3 PAIRS=20 WINDOW=16
#   DURATION=10 AUTH=dialback; KEEP=1 keeps the logs and JSON reports)
set -u
cd "$(dirname "$0")/.."
# Several kinds: each in turn (same settings, one after the other), then
# their medians side by side as ratios to the first.
if [ $# -gt 1 ]; then
  summary=()
  for k in "$@"; do
    out=$(bash "$0" "$k") || echo "bench-s2s.sh $k failed" >&2
    printf '%s\n\n' "$out"
    summary+=("$k $(printf '%s\n' "$out" | awk -F'|' '/^\| median /{gsub(/[ ,]/, "", $3); print $3}')")
  done
  echo "| pair | delivered/s (median) | ratio to $1 |"
  echo "|---|---|---|"
  base=$(printf '%s\n' "${summary[0]}" | awk '{print $2}')
  for line in "${summary[@]}"; do
    set -- $line
    ratio=$(awk -v a="${2:-0}" -v b="${base:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }')
    echo "| $1 <-> $1 | ${2:-–} | $ratio |"
  done
  exit 0
fi
KIND=${1:-prosody}
case $KIND in xmppd|prosody|ejabberd) ;; *) echo "usage: $0 xmppd|prosody|ejabberd ..." >&2; exit 2 ;; esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
RUNS=${RUNS:-3}
PAIRS=${PAIRS:-20}
WINDOW=${WINDOW:-16}
DURATION=${DURATION:-10}
AUTH=${AUTH:-dialback}
DNS=127.0.0.2:45053
C2S=45222
S2S=45269
cargo build --profile perf -p loadtest -p node >&2 || exit 1
LT=$CARGO_TARGET_DIR/perf/xmpp-loadtest
T=$CARGO_TARGET_DIR/perf
. loadtest/servers/prosody-s2s.sh
. loadtest/servers/ejabberd-s2s.sh
. loadtest/servers/xmppd-s2s.sh
work=$(mktemp -d)
dns_pid='' pid_a='' pid_b=''
cleanup() {
  trap - EXIT INT TERM
  for p in "$pid_a" "$pid_b"; do
    [ -n "$p" ] || continue
    "${KIND}_s2s_stop" "$p"
  done
  [ -n "$dns_pid" ] && kill "$dns_pid" 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

a=$KIND-a.test b=$KIND-b.test
bash tests/interop/s2s/certs.sh "$work/certs" "$a" "$b" || exit 1
targets=()
[ "$KIND" = ejabberd ] && targets=(--ip-targets)
timeout $((600 + RUNS * (DURATION + 60))) python3 tests/interop/s2s/dns.py --listen "$DNS" \
  --timeout $((590 + RUNS * (DURATION + 60))) "${targets[@]}" \
  --peer "$a=127.0.0.3:$S2S" --peer "$b=127.0.0.4:$S2S" > "$work/dns.out" 2> "$work/dns.log" &
dns_pid=$!
start() { # DIR IP DOMAIN: sets PID
  mkdir -p "$1"
  "${KIND}_s2s_config" "$1" "$2" "$C2S" "$S2S" "$3" "$work/certs" "$AUTH" "$DNS" &&
    "${KIND}_s2s_start" "$1"
}
start "$work/a" 127.0.0.3 "$a" || exit 1
pid_a=$PID
start "$work/b" 127.0.0.4 "$b" || exit 1
pid_b=$PID
# The process whose CPU counts: ejabberd's is the Erlang VM under the shell.
vm() { if [ "$KIND" = ejabberd ]; then pgrep -P "$1" | head -1; else echo "$1"; fi; }
vm_a=$(vm "$pid_a") vm_b=$(vm "$pid_b")
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The whole machine's busy time: what neither server nor the generator
# used was some other program's, which the table shows, since the figures
# mean little on a machine that was busy with something else.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

lt() { # NAME ARGS...: the harness, bounded; its report in $work/NAME.json
  local name=$1 t0b w0 m0
  shift
  t0b=$(ticks "$vm_b") m0=$(busy) w0=$(date +%s.%N)
  timeout $((DURATION + 120)) "$LT" "$@" --json "$work/$name.json" > "$work/$name.txt" 2>&1 ||
    log "$name did not pass: $(tail -1 "$work/$name.txt")"
  # Server B's CPU, which the harness (one --server-pid) does not measure.
  echo "$(ticks "$vm_b") $t0b $(date +%s.%N) $w0 $(getconf CLK_TCK) $(busy) $m0" > "$work/$name.b"
}
CHAT=(chat --host 127.0.0.3 --port "$C2S" --domain "$a"
      --peer-host 127.0.0.4 --peer-port "$C2S" --peer-domain "$b"
      --pairs "$PAIRS" --window "$WINDOW" --server-pid "$vm_a"
      --mechanism SCRAM-SHA-1) # what both offer with the configurations used here
log "warm-up: registering $PAIRS accounts on each side, opening the S2S stream"
lt warmup "${CHAT[@]}" --register --duration 2
# The stream that carries the messages is A's to B; dialback opens one the
# other way too (B asks A to verify A's key).
to_b=$(ss -Htn state established "( dst 127.0.0.4:$S2S )" | wc -l)
to_a=$(ss -Htn state established "( dst 127.0.0.3:$S2S )" | wc -l)
s2s_conns="$to_b to B's S2S port and $to_a to A's"
for i in $(seq 1 "$RUNS"); do
  log "run $i of $RUNS"
  lt "run-$i" "${CHAT[@]}" --duration "$DURATION"
done

python3 - "$work" "$RUNS" "$KIND" "$AUTH" "$PAIRS" "$WINDOW" "$DURATION" "$s2s_conns" << 'PY'
import json, os, statistics, sys
work, runs, kind, auth, pairs, window, duration, conns = sys.argv[1:9]
def get(name, path):
    try:
        d = json.load(open(os.path.join(work, name + ".json")))
    except (OSError, ValueError):
        return None
    for k in path.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d
def b_cores(name):
    """Server B's cores and the whole machine's, over the harness's run."""
    try:
        t1, t0, w1, w0, hz, m1, m0 = map(float, open(os.path.join(work, name + ".b")).read().split())
        return (t1 - t0) / hz / (w1 - w0), (m1 - m0) / hz / (w1 - w0)
    except (OSError, ValueError, ZeroDivisionError):
        return None, None
def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float)) and not isinstance(x, bool)]
    return statistics.median(xs) if xs else None
def fmt(x, spec):
    return "–" if x is None else format(x, spec)
print(f"{kind} <-> {kind} over S2S ({auth}), `chat --pairs {pairs} --window {window} --duration {duration}`:"
      f" senders on {kind}-a.test, receivers on {kind}-b.test; TCP connections established after"
      f" the warm-up: {conns}.")
print()
print("| run | delivered/s | lost | p50 ms | p99 ms | server A cores | server B cores | generator cores | other programs' cores | passed |")
print("|---|---|---|---|---|---|---|---|---|---|")
cols = {k: [] for k in ("rate", "p50", "p99", "a", "b", "g", "o")}
for i in range(1, int(runs) + 1):
    n = f"run-{i}"
    rate = get(n, "result.delivered_per_second")
    p50 = get(n, "result.latency_us.p50")
    p99 = get(n, "result.latency_us.p99")
    p50 = p50 / 1000 if p50 is not None else None
    p99 = p99 / 1000 if p99 is not None else None
    a, g = get(n, "cpu.server_cores"), get(n, "cpu.generator_cores")
    b, machine = b_cores(n)
    o = machine - a - b - g if None not in (machine, a, b, g) else None
    for k, v in zip(cols, (rate, p50, p99, a, b, g, o)):
        cols[k].append(v)
    print(f"| {i} | {fmt(rate, ',.0f')} | {get(n, 'result.lost')} | {fmt(p50, '.1f')} | {fmt(p99, '.1f')}"
          f" | {fmt(a, '.2f')} | {fmt(b, '.2f')} | {fmt(g, '.2f')} | {fmt(o, '.2f')} | {get(n, 'ok')} |")
m = {k: med(v) for k, v in cols.items()}
print(f"| median | {fmt(m['rate'], ',.0f')} | | {fmt(m['p50'], '.1f')} | {fmt(m['p99'], '.1f')}"
      f" | {fmt(m['a'], '.2f')} | {fmt(m['b'], '.2f')} | {fmt(m['g'], '.2f')} | {fmt(m['o'], '.2f')} | |")
PY
