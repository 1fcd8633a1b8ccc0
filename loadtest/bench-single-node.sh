#!/usr/bin/env bash
# xmppd alone: its maximum one-to-one rate, and latency at fixed fractions
# of that rate (the target: p99 under 5 ms at 80% of the maximum). Uses the
# perf build and loadtest/servers/xmppd.sh; prints a Markdown table.
#
# usage: bash loadtest/bench-single-node.sh   (RUNS=3 DURATION=10 PAIRS=50 PIN=1)
#
# PIN=1 (the default) gives the server CPU 0 and the generator CPU 1
# (taskset; tokio then starts one worker thread in each), so that the two
# do not queue for the same core and "maximum" is what the server does on
# one core. PIN=0 lets them share both cores. Paced runs leave their first
# two seconds out of the latencies (--warmup 2).
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
PAIRS=${PAIRS:-50}
cargo build --profile perf -p node -p loadtest || exit 1
T=$CARGO_TARGET_DIR/perf
PIN=${PIN:-1}
. loadtest/servers/xmppd.sh
if [ "$PIN" = 1 ]; then
  XMPPD_WRAPPER="taskset -c 0"
  GEN="taskset -c 1 $T/xmpp-loadtest"
else
  XMPPD_WRAPPER=
  GEN="$T/xmpp-loadtest"
fi
export XMPPD_WRAPPER
work=$(mktemp -d)
trap 'xmppd_stop "$work/x"; rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null
xmppd_config "$work/x" 15222 localhost "$work/cert.pem" "$work/key.pem"
xmppd_start "$work/x" || exit 1
$GEN chat --port 15222 --register --pairs "$PAIRS" --duration 1 > /dev/null 2>&1
run() { # name args...
  local name=$1
  shift
  $GEN chat --port 15222 --pairs "$PAIRS" --duration "$DURATION" --server-pid "$PID" \
    --json "$work/$name.json" "$@" > /dev/null 2>&1
}
for i in $(seq 1 "$RUNS"); do run "max-$i" --window 16; done
max=$(python3 -c '
import json, statistics, sys
print(int(statistics.median(json.load(open(f))["result"]["delivered_per_second"] for f in sys.argv[1:])))' "$work"/max-*.json)
for pct in 20 40 60 80; do
  for i in $(seq 1 "$RUNS"); do run "rate$pct-$i" --window 64 --warmup 2 --rate $((max * pct / 100)); done
done
PIN=$PIN python3 - "$work" "$max" <<'PY'
import glob, json, os, statistics, sys
work, top = sys.argv[1], int(sys.argv[2])
def med(files, path):
    vals = []
    for f in files:
        d = json.load(open(f))
        for k in path.split("."):
            d = d.get(k) if isinstance(d, dict) else None
        if isinstance(d, (int, float)):
            vals.append(d)
    return statistics.median(vals) if vals else float("nan")
pin = os.environ.get("PIN", "1") == "1"
print(f"maximum (flat out, window 16): {top:,} delivered/s (median of runs); "
      + ("server on CPU 0, generator on CPU 1" if pin else "server and generator share both cores"))
print()
print("| load | target/s | delivered/s | p50 | p99 | p99.9 | server cores | generator cores | runs passed |")
print("|---|---|---|---|---|---|---|---|---|")
for name in ["max"] + [f"rate{p}" for p in (20, 40, 60, 80)]:
    fs = sorted(glob.glob(os.path.join(work, f"{name}-*.json")))
    ok = sum(1 for f in fs if json.load(open(f)).get("ok"))
    label = "flat out" if name == "max" else name[4:] + " % of max"
    target = "–" if name == "max" else f"{top * int(name[4:]) // 100:,}"
    ms = lambda p: f"{med(fs, p) / 1000:.2f} ms"
    print(f"| {label} | {target} | {med(fs, 'result.delivered_per_second'):,.0f} | {ms('result.latency_us.p50')} | "
          f"{ms('result.latency_us.p99')} | {ms('result.latency_us.p999')} | {med(fs, 'cpu.server_cores'):.2f} | "
          f"{med(fs, 'cpu.generator_cores'):.2f} | {ok} of {len(fs)} |")
PY
