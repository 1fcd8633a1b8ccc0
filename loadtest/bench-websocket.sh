#!/usr/bin/env bash
# XMPP over WebSocket (RFC 7395) against TCP on one server configuration,
# in one run (issue 14): the server's memory per idle session and its
# one-to-one chat throughput, for each transport of TRANSPORTS:
#   tcp        TCP with STARTTLS (TLS 1.3), the harness's default
#   tcp-plain  TCP without TLS ([tls] require_starttls = false)
#   websocket  ws://, no TLS (as behind a TLS-terminating proxy)
#   wss        wss://, TLS under the WebSocket
#   bosh       BOSH (XEP-0206) over plain HTTP at /http-bind, on the
#              WebSocket listener (an idle session holds one connection
#              with a request waiting at the server)
# Memory: `connect --sessions SESSIONS` on a freshly started server for
# each run (the accounts stay in its data directory), so that no run
# inherits the memory that another one freed. Chat: `chat --pairs PAIRS
# --window WINDOW --duration DURATION` on one server process, the
# transports alternated RUNS times. Prints Markdown tables: medians, and
# the median of each transport's ratios to tcp within a round.
#
# Uses the perf build and loadtest/servers/xmppd.sh (ports 45700-45703);
# sends traffic only to 127.0.0.1, stops by itself, and kills only the
# server processes it started.
#
# usage: bash loadtest/bench-websocket.sh   (RUNS=3 SESSIONS=10000 LOGIN_RATE=1000
#   PAIRS=50 WINDOW=16 DURATION=10 TRANSPORTS="tcp tcp-plain websocket wss bosh";
#   KEEP=1 keeps the logs and JSON reports)
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
RUNS=${RUNS:-3}
SESSIONS=${SESSIONS:-10000}
LOGIN_RATE=${LOGIN_RATE:-1000}
PAIRS=${PAIRS:-50}
WINDOW=${WINDOW:-16}
DURATION=${DURATION:-10}
TRANSPORTS=${TRANSPORTS:-tcp tcp-plain websocket wss bosh}
PORT=45700 # c2s; 45701 direct TLS, 45702 WebSocket, 45703 WebSocket with TLS
# The harness and the server each hold a descriptor per session.
[ "$(ulimit -n)" -ge $((SESSIONS + 500)) ] || ulimit -n $((SESSIONS + 500)) || exit 1
# The commit built, and where the tree differs from it (top-level folders).
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
sed -i -e "/^http = false/a websocket = \"127.0.0.1:$((PORT + 2))\"\nwebsocket_tls = \"127.0.0.1:$((PORT + 3))\"" \
  -e '/^key = /a require_starttls = false' "$work/x/xmppd.toml"

# The harness's options for a transport.
opts() {
  case $1 in
    tcp) echo "--port $PORT" ;;
    tcp-plain) echo "--port $PORT --tls plain" ;;
    websocket) echo "--port $((PORT + 2)) --transport websocket" ;;
    wss) echo "--port $((PORT + 3)) --transport wss" ;;
    bosh) echo "--port $((PORT + 2)) --transport bosh" ;;
    *) echo "unknown transport $1" >&2; exit 2 ;;
  esac
}
# Run the harness, bounded even if it hangs; its report goes to $work/NAME.json.
lt() { # NAME ARGS...
  local name=$1
  shift
  timeout 600 "$LT" "$@" --json "$work/$name.json" > "$work/$name.txt" 2>&1 ||
    log "$name did not pass: $(tail -1 "$work/$name.txt")"
}

xmppd_start "$work/x" || exit 1
# A pass that lost a connection left an account out; the next one makes it
# (the others exist already: a conflict, then the login).
for pass in 1 2 3; do
  log "registering $SESSIONS accounts, pass $pass"
  lt "register-$pass" connect $(opts tcp) --register --sessions "$SESSIONS" --login-rate "$LOGIN_RATE" --duration 0
  grep -q '"ok": true' "$work/register-$pass.json" 2> /dev/null && break
done
xmppd_stop "$work/x"

for i in $(seq 1 "$RUNS"); do
  for t in $TRANSPORTS; do
    xmppd_start "$work/x" || exit 1
    sleep 2
    log "memory, round $i: $SESSIONS idle sessions over $t"
    lt "mem-$t-$i" connect $(opts "$t") --sessions "$SESSIONS" --login-rate "$LOGIN_RATE" \
      --duration 2 --server-pid "$PID"
    xmppd_stop "$work/x"
  done
done

xmppd_start "$work/x" || exit 1
lt warmup chat $(opts tcp) --pairs "$PAIRS" --window "$WINDOW" --duration 2
for i in $(seq 1 "$RUNS"); do
  for t in $TRANSPORTS; do
    log "chat, round $i, over $t"
    lt "chat-$t-$i" chat $(opts "$t") --pairs "$PAIRS" --window "$WINDOW" --duration "$DURATION" \
      --server-pid "$PID"
  done
done

python3 - "$work" "$RUNS" "$commit" "$dirty" $TRANSPORTS << 'PY'
import json, os, statistics, sys
work, runs, commit, dirty = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].strip()
transports = sys.argv[5:]
def report(name):
    try:
        return json.load(open(os.path.join(work, name + ".json")))
    except (OSError, ValueError):
        return {}
def get(name, path):
    d = report(name)
    for k in path.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d if isinstance(d, (int, float)) and not isinstance(d, bool) else None
def series(kind, t, path):
    return [get(f"{kind}-{t}-{i}", path) for i in range(1, runs + 1)]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def ratios(kind, t, path):
    return [a / b if a is not None and b else None
            for a, b in zip(series(kind, t, path), series(kind, "tcp", path))]
def passed(kind, t):
    return sum(report(f"{kind}-{t}-{i}").get("ok") is True for i in range(1, runs + 1))
def fmt(x, spec):
    return "–" if x is None else format(x, spec)
def each(xs, spec):
    return ", ".join(fmt(x, spec) for x in xs)
print(f"Build: commit {commit}" + (f", with uncommitted changes in {dirty}" if dirty else "") + ".")
print()
print("| transport | server bytes per idle session (runs) | median | ratio to tcp (median of rounds) | logins/s | runs passed |")
print("|---|---|---|---|---|---|")
key = "result.server_bytes_per_session"
for t in transports:
    b = series("mem", t, key)
    r = "–" if t == "tcp" else fmt(med(ratios("mem", t, key)), ".2f")
    print(f"| {t} | {each(b, ',.0f')} | {fmt(med(b), ',.0f')} | {r} | "
          f"{fmt(med(series('mem', t, 'result.logins_per_second')), ',.0f')} | {passed('mem', t)} of {runs} |")
print()
print("| transport | delivered/s (runs) | median | ratio to tcp (rounds) | median ratio | p50 | p99 | server µs per delivery | server cores | generator cores | runs passed |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
key = "result.delivered_per_second"
for t in transports:
    d = series("chat", t, key)
    rs = ratios("chat", t, key)
    per = [s * 1e6 / n if s is not None and n else None
           for s, n in zip(series("chat", t, "cpu.server_seconds"), series("chat", t, "result.delivered"))]
    ms = lambda p: fmt(med([us / 1000 if us is not None else None for us in series("chat", t, p)]), ".2f") + " ms"
    print(f"| {t} | {each(d, ',.0f')} | {fmt(med(d), ',.0f')} | "
          f"{'–' if t == 'tcp' else each(rs, '.2f')} | {'–' if t == 'tcp' else fmt(med(rs), '.2f')} | "
          f"{ms('result.latency_us.p50')} | {ms('result.latency_us.p99')} | {fmt(med(per), '.2f')} | "
          f"{fmt(med(series('chat', t, 'cpu.server_cores')), '.2f')} | "
          f"{fmt(med(series('chat', t, 'cpu.generator_cores')), '.2f')} | {passed('chat', t)} of {runs} |")
PY
