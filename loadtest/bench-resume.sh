#!/usr/bin/env bash
# Stream management's resumption (XEP-0198 §5) when an edge dies: a cluster
# of one core node and two edge nodes, each its own xmppd process. RECEIVERS
# clients (10,000 by default, split over PROCS harness processes: one
# process holds at most ~20,000 files here) log in to edge 1 and enable
# stream management with resumption; SENDERS per process, on edge 2, send
# them numbered chat messages at RATE a second in all. Once every process
# is in and WARM seconds of messages went by, the script SIGKILLs edge 1;
# every receiver reconnects to edge 2, authenticates and resumes (at most
# CONCURRENCY handshakes at a time per process; with CACHE=1, the default,
# the clients keep their SCRAM keys from the first login, `--cache-scram`,
# so that the reconnection storm measures the server rather than the
# harness's PBKDF2 on the same two cores), and must get every number
# sent to it: none missing (lost, must be 0), some perhaps twice
# (redelivered, allowed by XEP-0198, counted). Senders go on for the whole
# run, also while the sessions wait detached at the core.
#
# Reported per run: the time from the kill until the last receiver was
# resumed, the median and p99 of each receiver's time from the kill to
# its <resumed/>, lost, redelivered, refused resumptions, and the core's
# RSS just before the kill and its peak after it (the detached sessions
# and what they keep), sampled every 0.2 s; edge 2's too. Every process
# is started fresh for each run (the accounts stay in the core's data
# directory); the medians of RUNS runs at the end.
#
# Uses the perf build; listens and sends only on 127.0.0.x ports
# 45900-45935 (core gRPC 45900, edge 1 c2s 45922 and metrics 45923,
# edge 2 c2s 45932 and metrics 45933); stops by itself; kills only the
# processes it started, by PID.
#
# usage: bash loadtest/bench-resume.sh   (RUNS=3 RECEIVERS=10000 PROCS=2 SENDERS=4
#   RATE=2000 LOGIN_RATE=500 WARM=10 DURATION=60 CONCURRENCY=256 JITTER=0 CACHE=1;
#   KEEP=1 keeps the logs and JSON reports)
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
RUNS=${RUNS:-3}
RECEIVERS=${RECEIVERS:-10000}
PROCS=${PROCS:-2}
SENDERS=${SENDERS:-4}
RATE=${RATE:-2000}
LOGIN_RATE=${LOGIN_RATE:-500}
REGISTER_RATE=${REGISTER_RATE:-300}
WARM=${WARM:-10}
DURATION=${DURATION:-60}
CONCURRENCY=${CONCURRENCY:-256}
JITTER=${JITTER:-0}
CACHE=${CACHE:-1}
KEEPKEYS=()
[ "$CACHE" = 1 ] && KEEPKEYS=(--cache-scram)
per=$(((RECEIVERS + PROCS - 1) / PROCS))
[ "$(ulimit -n)" -ge $((per + 1000)) ] || ulimit -n $((per + 1000)) || exit 1
commit=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain -uno | awk '{print $2}' | cut -d/ -f1 | sort -u | tr '\n' ' ')
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
[log]
level = "warn"
TOML
}
conf core '[listeners]
http = false
[cluster]
role = "core"
listen = "127.0.0.1:45900"'
for e in 1 2; do
  conf "edge$e" "[listeners]
c2s = \"127.0.0.1:$((45912 + 10 * e))\"
c2s_direct_tls = false
http = \"127.0.0.1:$((45913 + 10 * e))\"
[cluster]
role = \"edge\"
node_id = $((e + 1))
core = \"127.0.0.1:45900\""
done
wait_port() { # PORT PID
  for _ in $(seq 1 300); do
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    kill -0 "$2" 2> /dev/null || break
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}
start() { # NAME PORT: sets LAST
  "$T/xmppd" --config "$work/$1.toml" serve >> "$work/$1.log" 2>&1 &
  LAST=$!
  PIDS+=("$LAST")
  wait_port "$2" "$LAST"
}
stop() { # PID
  kill -TERM "$1" 2> /dev/null
  for _ in $(seq 1 100); do kill -0 "$1" 2> /dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2> /dev/null
  wait "$1" 2> /dev/null
}
cluster() { # sets CORE EDGE1 EDGE2
  start core 45900 || exit 1
  CORE=$LAST
  start edge1 45922 || exit 1
  EDGE1=$LAST
  start edge2 45932 || exit 1
  EDGE2=$LAST
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2> /dev/null || echo 0; }
ticks() { # PID...: user + system CPU ticks of all of them
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2> /dev/null || echo 0))); done
  echo "$t"
}
counter() { # PORT NAME: a counter of an edge's /metrics
  exec 3<> "/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  awk -v n="$2" '$1 == n { print $2 }' <&3
  exec 3<&-
}
# Users of process p: p * (SENDERS + per) .. : its senders, then its receivers.
users=$((SENDERS + per))

cluster
t0=$(date +%s)
REG=()
for p in $(seq 0 $((PROCS - 1))); do
  "$LT" connect --port 45932 --register --first-user $((p * users)) --sessions "$users" \
    --login-rate "$REGISTER_RATE" --sources "127.0.0.$((11 + p))" --duration 0 \
    --json "$work/register$p.json" > "$work/register$p.txt" 2>&1 &
  REG+=($!)
done
for p in "${REG[@]}"; do wait "$p"; done
for p in $(seq 0 $((PROCS - 1))); do
  grep -q '"ok": true' "$work/register$p.json" 2> /dev/null ||
    { log "registration $p failed:"; tail -5 "$work/register$p.txt" >&2; exit 1; }
done
log "$((PROCS * users)) accounts made in $(($(date +%s) - t0)) s"
stop "$EDGE2"; stop "$EDGE1"; stop "$CORE"
PIDS=()

for i in $(seq 1 "$RUNS"); do
  cluster
  log "run $i: core $CORE, edge 1 $EDGE1, edge 2 $EDGE2"
  HP=()
  for p in $(seq 0 $((PROCS - 1))); do
    rm -f "$work/ready$i-$p" "$work/ready$i-$p.killed"
    n=$((RECEIVERS - p * per < per ? RECEIVERS - p * per : per))
    timeout $((DURATION + 900)) "$LT" resume --port 45922 --also 127.0.0.1:45932 \
      --first-user $((p * users)) --senders "$SENDERS" --receivers "$n" \
      --rate "$(echo "$RATE / $PROCS" | bc -l)" --login-rate "$LOGIN_RATE" --duration "$DURATION" \
      --reconnect-concurrency "$CONCURRENCY" --reconnect-jitter "$JITTER" "${KEEPKEYS[@]}" \
      --sources "127.0.0.$((11 + p))" --ready-file "$work/ready$i-$p" \
      --json "$work/run$i-$p.json" > "$work/run$i-$p.txt" 2>&1 &
    HP+=($!)
    PIDS+=($!)
  done
  for p in $(seq 0 $((PROCS - 1))); do
    while [ ! -e "$work/ready$i-$p" ]; do
      kill -0 "${HP[$p]}" 2> /dev/null || { log "harness $p stopped:"; tail -5 "$work/run$i-$p.txt" >&2; exit 1; }
      sleep 0.2
    done
  done
  log "run $i: $RECEIVERS receivers in; $WARM s of messages before the kill"
  # Every 0.2 s until the harness is done: the core's and edge 2's RSS,
  # and the CPU ticks of the core, edge 2 and the harness processes (the
  # children of the `timeout`s).
  LTP=()
  for p in "${HP[@]}"; do LTP+=($(cat "/proc/$p/task/$p/children")); done
  (while :; do
    echo "$(date +%s.%N) $(rss "$CORE") $(rss "$EDGE2") $(ticks "$CORE") $(ticks "$EDGE2") $(ticks "${LTP[@]}")"
    sleep 0.2
  done) > "$work/rss$i" &
  SAMPLER=$!
  PIDS+=("$SAMPLER")
  sleep "$WARM"
  killed=$(date +%s.%N)
  kill -KILL "$EDGE1"
  for p in $(seq 0 $((PROCS - 1))); do echo "$killed" > "$work/ready$i-$p.killed"; done
  log "run $i: edge 1 killed"
  for p in "${HP[@]}"; do wait "$p"; done
  kill "$SAMPLER" 2> /dev/null
  wait "$EDGE1" 2> /dev/null
  resumed=$(counter 45933 xmppd_sm_resumed_total)
  failed=$(counter 45933 xmppd_sm_resume_failed_total)
  echo "$killed ${resumed:-?} ${failed:-?}" > "$work/counts$i"
  log "run $i: edge 2 counted ${resumed:-?} resumptions, ${failed:-?} refused"
  stop "$EDGE2"; stop "$CORE"
  PIDS=()
done

python3 - "$work" "$RUNS" "$PROCS" "$commit" "$dirty" "$RECEIVERS" "$RATE" "$SENDERS" "$CONCURRENCY" "$JITTER" "$(getconf CLK_TCK)" "$CACHE" << 'PY'
import json, statistics, sys
work, runs, procs, commit, dirty = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5].strip()
receivers, rate, senders, conc, jitter = sys.argv[6:11]
hz = float(sys.argv[11])
cache = sys.argv[12] == "1"
def q(xs, f):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(f * len(xs)))] if xs else None
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, spec, unit=""):
    return "–" if x is None else format(x, spec) + unit
rows = []
for i in range(1, runs + 1):
    reps = []
    for p in range(procs):
        try:
            reps.append(json.load(open(f"{work}/run{i}-{p}.json")))
        except (OSError, ValueError):
            reps.append({})
    res = [r.get("result", {}) for r in reps]
    tot = lambda k: sum(x.get(k, 0) or 0 for x in res)
    each = [us for x in res for us in x.get("each_resumed_after_kill_us", [])]
    killed, ev_resumed, ev_failed = open(f"{work}/counts{i}").read().split()
    killed = float(killed)
    last = [x.get("last_resumed_unix_us") for x in res if x.get("last_resumed_unix_us")]
    all_in = (max(last) / 1e6 - killed) if last and tot("not_resumed") == 0 and tot("resumed") >= int(receivers) else None
    # The storm: from the kill until the last resumption (or the end).
    until = max(last) / 1e6 if last else float("inf")
    samples = [l.split() for l in open(f"{work}/rss{i}") if len(l.split()) == 6]
    before = [s for s in samples if float(s[0]) < killed]
    storm = [s for s in samples if killed <= float(s[0]) <= until + 0.2]
    core0 = int(before[-1][1]) if before else None
    core_peak = max((int(s[1]) for s in storm), default=None)
    edge0 = int(before[-1][2]) if before else None
    edge_peak = max((int(s[2]) for s in storm), default=None)
    # CPU over the storm: cores used by the core, edge 2 and the harness.
    cpu = None
    if before and storm:
        a, b = before[-1], storm[-1]
        secs = float(b[0]) - float(a[0])
        cpu = tuple((int(b[k]) - int(a[k])) / hz / secs for k in (3, 4, 5))
    rows.append(dict(
        ok=all(r.get("ok") for r in reps), sent=tot("sent"), delivered=tot("delivered"),
        lost=tot("lost"), gaps=tot("receivers_with_gaps"), redelivered=tot("redelivered"),
        offline=tot("from_offline_storage"), dropped=tot("receivers_dropped"), resumed=tot("resumed"),
        refused=tot("resume_refused"), not_resumed=tot("not_resumed"), attempts=tot("resume_attempts"),
        all_in=all_in, p50=q(each, 0.5) / 1e6 if each else None, p99=q(each, 0.99) / 1e6 if each else None,
        core0=core0, core_peak=core_peak, edge0=edge0, edge_peak=edge_peak, cpu=cpu,
        ev_resumed=ev_resumed, ev_failed=ev_failed,
        gen=sum((r.get("cpu", {}).get("generator_seconds") or 0) for r in reps),
        errors={k: v for r in reps for k, v in r.get("errors", {}).items()},
        refused_example=next((x.get("resume_refused_example") for x in res if x.get("resume_refused_example")), None),
        offline_examples=[e for x in res for e in x.get("from_offline_storage_examples", [])],
        killed=killed,
    ))
print(f"Build: commit {commit}" + (f", with uncommitted changes in {dirty}" if dirty else "") + ".")
print(f"{receivers} receivers over {procs} harness processes, {senders} senders each, {rate} messages/s in all; "
      f"reconnect concurrency {conc} per process, jitter {jitter} s; SCRAM keys "
      + ("kept from the first login (--cache-scram)." if cache else "computed at every login."))
print()
print("| run | all resumed after the kill | each receiver, median | p99 | sent | lost | redelivered | refused | resumptions (edge 2 counted) | core RSS before the kill | core peak in the storm | edge 2 before | peak | cores in the storm: core / edge 2 / harness | passed |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
mib = lambda k: None if k is None else k / 1024
for i, r in enumerate(rows, 1):
    c = " / ".join(f"{x:.2f}" for x in r["cpu"]) if r["cpu"] else "–"
    print(f"| {i} | {fmt(r['all_in'], '.1f', ' s')} | {fmt(r['p50'], '.1f', ' s')} | {fmt(r['p99'], '.1f', ' s')} | "
          f"{r['sent']:,} | {r['lost']} | {r['redelivered']} | {r['refused']} | {r['resumed']:,} ({r['ev_resumed']}) | "
          f"{fmt(mib(r['core0']), ',.0f', ' MiB')} | {fmt(mib(r['core_peak']), ',.0f', ' MiB')} | "
          f"{fmt(mib(r['edge0']), ',.0f', ' MiB')} | {fmt(mib(r['edge_peak']), ',.0f', ' MiB')} | {c} | {'yes' if r['ok'] else 'NO'} |")
print()
print(f"Median of {runs}: all {receivers} resumed {fmt(med([r['all_in'] for r in rows]), '.1f')} s after the kill "
      f"(each receiver: median {fmt(med([r['p50'] for r in rows]), '.1f')} s, p99 {fmt(med([r['p99'] for r in rows]), '.1f')} s); "
      f"lost {sum(r['lost'] for r in rows)} in all runs; redelivered {fmt(med([r['redelivered'] for r in rows]), '.0f')}; "
      f"core RSS {fmt(mib(med([r['core0'] for r in rows])), ',.0f')} MiB before, peak {fmt(mib(med([r['core_peak'] for r in rows])), ',.0f')} MiB.")
for i, r in enumerate(rows, 1):
    if r["errors"] or r["refused_example"]:
        print(f"\nrun {i} errors: {r['errors']}")
        if r["refused_example"]:
            print(f"  a refusal: {r['refused_example']}")
    if r["offline"]:
        print(f"\nrun {i}: {r['offline']} messages out of offline storage (an earlier run's) were set aside")
        for e in r["offline_examples"][:2]:
            print(f"  e.g. {e}")
PY
