#!/usr/bin/env bash
# Idle persistent rooms (XEP-0045): ROOMS persistent rooms (100,000 by
# default) are made on a single-node server by SESSIONS sessions (each
# enters a room, configures it persistent and leaves it, in turn) and
# left empty. Reports the rate they were made at, the server's RSS and the
# RocksDB directory's size per room (after a restart, when what was
# written is in SST files), the RSS of the restarted server that holds
# them, and the latency of PROBES first entries into random cold rooms
# after the restart (each read from the store). Uses the perf build; sends
# traffic only to 127.0.0.1 and stops by itself.
#
# usage: bash loadtest/bench-muc-idle.sh   (ROOMS=100000 SESSIONS=20 PROBES=200)
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
ROOMS=${ROOMS:-100000}
SESSIONS=${SESSIONS:-20}
PROBES=${PROBES:-200}
cargo build --profile perf -p node -p loadtest || exit 1
T=$CARGO_TARGET_DIR/perf
LT=$T/xmpp-loadtest
work=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill -TERM "$PID" 2> /dev/null && sleep 1 && kill -KILL "$PID" 2> /dev/null
  [ -z "${KEEP:-}" ] && rm -rf "$work"
}
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null
cat > "$work/node.toml" << TOML
domains = ["localhost"]
data_dir = "$work/data"
[listeners]
c2s = "127.0.0.1:17522"
c2s_direct_tls = false
http = false
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
[limits]
read_rate_bytes_per_sec = 0
stanza_rate_per_sec = 0
[registration]
enabled = true
[log]
level = "warn"
TOML
start() {
  "$T/xmppd" --config "$work/node.toml" serve >> "$work/node.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 300); do
    (exec 3<> /dev/tcp/127.0.0.1/17522) 2> /dev/null && return 0
    sleep 0.1
  done
  echo "the server did not start" >&2
  exit 1
}
stop() {
  kill -TERM "$PID"
  wait "$PID" 2> /dev/null
  PID=
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
db() { du -sb "$work/data/db" | cut -f1; }

start
sleep 2
rss0=$(rss)
stop
db0=$(db)
start
log "server up (RSS $rss0 KiB, store $db0 bytes)"
"$LT" muc --muc-role creator --muc-room idle --rooms "$ROOMS" --sessions "$SESSIONS" \
  --user-pattern "idlemaker{n}" --register --port 17522 --json "$work/make.json" > "$work/make.txt" 2>&1 ||
  { tail -5 "$work/make.txt"; exit 1; }
sleep 2
rss1=$(rss)
log "$ROOMS rooms made (RSS $rss1 KiB)"
stop
db1=$(db)
start
sleep 2
rss2=$(rss)
"$LT" muc --muc-role prober --muc-room idle --rooms "$ROOMS" --probes "$PROBES" \
  --user-pattern "idleprobe{n}" --register --port 17522 --json "$work/probe.json" > "$work/probe.txt" 2>&1 ||
  { tail -5 "$work/probe.txt"; exit 1; }
rss3=$(rss)

python3 - "$work" "$ROOMS" "$rss0" "$rss1" "$rss2" "$rss3" "$db0" "$db1" << 'PY'
import json, sys
work, rooms = sys.argv[1], int(sys.argv[2])
rss0, rss1, rss2, rss3, db0, db1 = (int(v) for v in sys.argv[3:9])
make = json.load(open(f"{work}/make.json"))["result"]
probe = json.load(open(f"{work}/probe.json"))["result"]
j = probe["first_join_us"]
ms = lambda us: f"{us / 1000:.2f} ms"
print(f"| rooms made | rooms/s | RSS while serving them | per room | RSS after a restart | store | per room |")
print("|---|---|---|---|---|---|---|")
print(f"| {make['made']:,} of {rooms:,} | {make['rooms_per_second']:,.0f} | {rss1 / 1024:.0f} MiB (empty server {rss0 / 1024:.0f} MiB) "
      f"| {(rss1 - rss0) * 1024 / rooms:,.0f} B | {rss2 / 1024:.0f} MiB | {db1 / 1e6:.1f} MB (empty {db0 / 1e6:.1f} MB) | {(db1 - db0) / rooms:,.0f} B |")
print()
print(f"First entry into a cold room after the restart ({probe['probes']} random rooms, one at a time): "
      f"p50 {ms(j['p50'])}, p90 {ms(j['p90'])}, p99 {ms(j['p99'])}, max {ms(j['max'])}; "
      f"{probe['rooms_that_did_not_exist']} of them did not exist. RSS after the probes {rss3 / 1024:.0f} MiB.")
PY
