#!/usr/bin/env bash
# What client state indication (XEP-0352) saves an inactive client (issue
# 14): the `presence` scenario (USERS users in groups of CONTACTS+1, all
# each other's contacts; half of each group churns every CHURN seconds,
# the other half watches) run with the watchers active, then with them
# inactive (`--csi-inactive`: they say <inactive/> once their rosters are
# set up and <active/> when the churn stops), alternated RUNS times on one
# server. For each run, the server's own counters (scraped from
# /metrics before and after) give the bytes written to clients and the
# writes (each one a wake-up of a phone's radio); what the churners get is
# the same in both, so the difference per watcher is the saving of one
# inactive session. Prints a Markdown table with medians and the ratio of
# each inactive run to the active run before it.
#
# Uses the perf build and loadtest/servers/xmppd.sh (ports 45800, 45801
# and the HTTP listener on 45802); sends traffic only to 127.0.0.1, stops
# by itself, and kills only the server process it started.
#
# usage: bash loadtest/bench-csi.sh   (RUNS=3 USERS=1000 CONTACTS=9 CHURN=2
#   DURATION=20; KEEP=1 keeps the logs and JSON reports)
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
RUNS=${RUNS:-3}
USERS=${USERS:-1000}
CONTACTS=${CONTACTS:-9}
CHURN=${CHURN:-2}
DURATION=${DURATION:-20}
PORT=45800
HTTP=45802
commit=$(git rev-parse --short HEAD)
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
sed -i -e "s/^http = false/http = \"127.0.0.1:$HTTP\"/" "$work/x/xmppd.toml"
xmppd_start "$work/x" || exit 1

# counter NAME: its value on the server now.
counter() {
  exec 3<> "/dev/tcp/127.0.0.1/$HTTP" || return 1
  printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  awk -v n="$1" '$1 == n { print $2 }' <&3
  exec 3<&-
}

size=$((CONTACTS + 1))
watchers=$(((USERS / size) * ((size + 1) / 2)))
rows=$work/rows
: > "$rows"
for i in $(seq 1 "$RUNS"); do
  for mode in active inactive; do
    flag=
    [ "$mode" = inactive ] && flag=--csi-inactive
    b0=$(counter xmppd_client_sent_bytes_total)
    w0=$(counter xmppd_client_writes_total)
    "$LT" presence --port "$PORT" --domain localhost --presence-users "$USERS" \
      --contacts "$CONTACTS" --churn-interval "$CHURN" --duration "$DURATION" \
      --user-pattern "csi{n}" --register $flag --json "$work/$mode-$i.json" \
      > "$work/$mode-$i.txt" 2>&1
    ok=$?
    b1=$(counter xmppd_client_sent_bytes_total)
    w1=$(counter xmppd_client_writes_total)
    held=$(counter xmppd_csi_held_total)
    sup=$(counter xmppd_csi_superseded_total)
    log "$mode $i: exit $ok, bytes $((b1 - b0)), writes $((w1 - w0)), held so far $held, superseded so far $sup"
    echo "$i $mode $ok $((b1 - b0)) $((w1 - w0))" >> "$rows"
  done
done

python3 - "$rows" "$watchers" "$commit" "$USERS" "$CONTACTS" "$CHURN" "$DURATION" << 'EOF'
import statistics, sys
rows, watchers, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
users, contacts, churn, duration = sys.argv[4:8]
runs = {}
for line in open(rows):
    i, mode, ok, b, w = line.split()
    runs.setdefault(i, {})[mode] = (int(ok), int(b), int(w))
print(f"build {commit}; `presence --presence-users {users} --contacts {contacts} "
      f"--churn-interval {churn} --duration {duration}`; {watchers} watchers\n")
print("| run | bytes written, watchers active | inactive | writes, active | inactive | "
      "bytes saved per inactive watcher | writes saved per inactive watcher |")
print("|---|---|---|---|---|---|---|")
bs, ws, br, wr = [], [], [], []
for i in sorted(runs, key=int):
    a, n = runs[i].get("active"), runs[i].get("inactive")
    if not a or not n or a[0] != 0 or n[0] != 0:
        print(f"| {i} | a run failed ({a}, {n}) | | | | | |")
        continue
    sb, sw = (a[1] - n[1]) / watchers, (a[2] - n[2]) / watchers
    bs.append(sb); ws.append(sw); br.append(n[1] / a[1]); wr.append(n[2] / a[2])
    print(f"| {i} | {a[1]:,} | {n[1]:,} | {a[2]:,} | {n[2]:,} | {sb:,.0f} | {sw:,.1f} |")
if bs:
    print(f"\nMedian per inactive watcher over the run: {statistics.median(bs):,.0f} bytes and "
          f"{statistics.median(ws):,.1f} writes fewer; all clients together got "
          f"{statistics.median(br):.2f}x the bytes and {statistics.median(wr):.2f}x the writes.")
EOF
