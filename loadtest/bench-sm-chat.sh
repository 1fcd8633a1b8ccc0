#!/usr/bin/env bash
# What stream management (XEP-0198) costs one-to-one chat on a single node:
# `chat --pairs PAIRS --window WINDOW --duration DURATION` without and with
# `--sm`, alternated RUNS times on one server process. With --sm every
# session enables it; the server asks each receiver for an acknowledgement
# every sm.request_every (5) stanzas it writes, the receiver answers
# <a h/>, and the server keeps every stanza until it is acknowledged.
# Prints a Markdown table: delivered/s, latency, the server's CPU per
# delivery, and the ratio of each --sm run to the run before it.
#
# Uses the perf build and loadtest/servers/xmppd.sh (ports 45940 and
# 45941 on 127.0.0.1); stops by itself; kills only the server process it
# started.
#
# usage: bash loadtest/bench-sm-chat.sh   (RUNS=3 PAIRS=50 WINDOW=16 DURATION=10;
#   KEEP=1 keeps the logs and JSON reports)
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
RUNS=${RUNS:-3}
PAIRS=${PAIRS:-50}
WINDOW=${WINDOW:-16}
DURATION=${DURATION:-10}
PORT=45940
commit=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain -uno | awk '{print $2}' | cut -d/ -f1 | sort -u | tr '\n' ' ')
cargo build --profile perf -p node -p loadtest || exit 1
T=$CARGO_TARGET_DIR/perf
LT=$T/xmpp-loadtest
. loadtest/servers/xmppd.sh
work=$(mktemp -d)
cleanup() {
  xmppd_stop "$work/x"
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null
xmppd_config "$work/x" "$PORT" localhost "$work/cert.pem" "$work/key.pem"
xmppd_start "$work/x" || exit 1

lt() { # NAME ARGS...: the harness, bounded; its report in $work/NAME.json
  local name=$1
  shift
  timeout 600 "$LT" "$@" --json "$work/$name.json" > "$work/$name.txt" 2>&1 ||
    log "$name did not pass: $(tail -1 "$work/$name.txt")"
}
CHAT=(chat --port "$PORT" --pairs "$PAIRS" --window "$WINDOW" --server-pid "$PID")
lt warmup "${CHAT[@]}" --register --duration 2
for i in $(seq 1 "$RUNS"); do
  for mode in plain sm; do
    flag=()
    [ "$mode" = sm ] && flag=(--sm)
    log "round $i, $mode"
    lt "$mode-$i" "${CHAT[@]}" --duration "$DURATION" "${flag[@]}"
  done
done

python3 - "$work" "$RUNS" "$commit" "$dirty" "$PAIRS" "$WINDOW" "$DURATION" << 'PY'
import json, os, statistics, sys
work, runs, commit, dirty = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].strip()
pairs, window, duration = sys.argv[5:8]
def get(name, path):
    try:
        d = json.load(open(os.path.join(work, name + ".json")))
    except (OSError, ValueError):
        return None
    for k in path.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d
def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float)) and not isinstance(x, bool)]
    return statistics.median(xs) if xs else None
def fmt(x, spec):
    return "–" if x is None else format(x, spec)
print(f"Build: commit {commit}" + (f", with uncommitted changes in {dirty}" if dirty else "") + ".")
print(f"`chat --pairs {pairs} --window {window} --duration {duration}`, without and with `--sm`, alternated {runs} times.")
print()
print("| run | delivered/s | p50 | p99 | server µs per delivery | server cores | generator cores | sm enabled | passed | --sm / without |")
print("|---|---|---|---|---|---|---|---|---|---|")
ratios = {"delivered": [], "cpu": []}
cols = {}
for i in range(1, runs + 1):
    for mode in ("plain", "sm"):
        n = f"{mode}-{i}"
        d = get(n, "result.delivered_per_second")
        per = None
        if get(n, "cpu.server_seconds") and get(n, "result.delivered"):
            per = get(n, "cpu.server_seconds") * 1e6 / get(n, "result.delivered")
        cols.setdefault(mode, []).append((d, per, get(n, "result.latency_us.p50"), get(n, "result.latency_us.p99"),
                                          get(n, "cpu.server_cores"), get(n, "cpu.generator_cores")))
        ratio = ""
        if mode == "sm":
            b, bp = cols["plain"][-1][0], cols["plain"][-1][1]
            if d and b:
                ratios["delivered"].append(d / b)
                ratio = f"{d / b:.2f}"
            if per and bp:
                ratios["cpu"].append(per / bp)
        ms = lambda us: "–" if us is None else f"{us / 1000:.2f} ms"
        print(f"| {i} {'with --sm' if mode == 'sm' else 'without'} | {fmt(d, ',.0f')} | {ms(get(n, 'result.latency_us.p50'))} | "
              f"{ms(get(n, 'result.latency_us.p99'))} | {fmt(per, '.2f')} | {fmt(get(n, 'cpu.server_cores'), '.2f')} | "
              f"{fmt(get(n, 'cpu.generator_cores'), '.2f')} | {get(n, 'sm.enabled') or '–'} | {'yes' if get(n, 'ok') else 'NO'} | {ratio} |")
print()
for mode, label in (("plain", "without"), ("sm", "with --sm")):
    c = cols.get(mode, [])
    print(f"Median {label}: {fmt(med([x[0] for x in c]), ',.0f')} delivered/s, p99 "
          f"{fmt(med([x[3] / 1000 if x[3] else None for x in c]), '.2f')} ms, server "
          f"{fmt(med([x[1] for x in c]), '.2f')} µs per delivery.")
print(f"Median of the round ratios, --sm / without: {fmt(med(ratios['delivered']), '.2f')}x the deliveries per second, "
      f"{fmt(med(ratios['cpu']), '.2f')}x the server's CPU per delivery.")
PY
