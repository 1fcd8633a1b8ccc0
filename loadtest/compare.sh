#!/usr/bin/env bash
# Side by side on this machine: the same scenarios against xmppd, Prosody
# and ejabberd, one server after the other, each as the current user on
# loopback ports of its own with a throw-away configuration and data
# directory (loadtest/servers/*.sh). Installs Prosody and ejabberd from
# Debian if missing, never touches their system services, stops everything
# at the end, and replaces the comparison section of loadtest/RESULTS.md.
#
# usage: bash loadtest/compare.sh
# knobs (environment): SERVERS="xmppd prosody ejabberd" RUNS=3
#   SESSIONS=10000 LOGIN_RATE=250 DURATION=10 PACED_RATE=10000 KEEP=1
#   SCENARIOS="connect chat paced presence muc pubsub" (a subset writes
#   loadtest/results/ only and leaves RESULTS.md alone)
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xmppd-target}"
SERVERS=${SERVERS:-"xmppd prosody ejabberd"}
RUNS=${RUNS:-3}
SESSIONS=${SESSIONS:-10000}
LOGIN_RATE=${LOGIN_RATE:-250}
DURATION=${DURATION:-10}
PACED_RATE=${PACED_RATE:-10000}
MECH=SCRAM-SHA-1 # offered by all three with their default settings
DOMAIN=localhost
ALL_SCENARIOS="connect chat paced presence muc pubsub pubsub500"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
want() { case " $SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

need=()
for s in $SERVERS; do
  case $s in
    prosody) command -v prosody > /dev/null || need+=(prosody) ;;
    ejabberd) command -v ejabberdctl > /dev/null || need+=(ejabberd) ;;
  esac
done
command -v openssl > /dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
  # Installing must not leave the distribution's services running.
  for s in prosody ejabberd; do
    systemctl stop "$s" 2> /dev/null || service "$s" stop 2> /dev/null || true
  done
fi
cargo build --profile perf -p node -p loadtest || exit 1
T=$CARGO_TARGET_DIR/perf
LT=$T/xmpp-loadtest

work=$(mktemp -d)
results=$work/results
mkdir -p "$results"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$DOMAIN" \
  -addext "subjectAltName=DNS:$DOMAIN,DNS:conference.$DOMAIN,DNS:pubsub.$DOMAIN" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null

PID=
cleanup() { [ -n "${CURRENT:-}" ] && "${CURRENT}_stop" "$work/$CURRENT"; [ -z "${KEEP:-}" ] && rm -rf "$work"; }
trap cleanup EXIT

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# run SERVER SCENARIO RUN ARGS...: one harness run, its JSON kept.
run() {
  local server=$1 scenario=$2 n=$3
  shift 3
  "$LT" "$@" --port "$PORT" --domain $DOMAIN --mechanism $MECH --server-pid "$PID" \
    --json "$results/$server-$scenario-$n.json" > "$work/$server-$scenario-$n.txt" 2> /dev/null
  log "$server $scenario $n: $(tail -1 "$work/$server-$scenario-$n.txt" | sed 's/^ *//')"
}

port=15222
for s in $SERVERS; do
  # shellcheck source=/dev/null
  . "loadtest/servers/$s.sh"
  PORT=$port
  port=$((port + 10000))
  w=$work/$s
  "${s}_config" "$w" "$PORT" $DOMAIN "$work/cert.pem" "$work/key.pem"
  CURRENT=$s
  "${s}_start" "$w" || { log "$s did not start"; CURRENT=; continue; }
  log "$s started (pid $PID)"
  # Registration again at a lower rate for whatever failed (a server may
  # refuse connections at the first pass's rate); existing accounts just
  # get a conflict.
  # Only connect, chat and paced use these accounts; the other scenarios
  # register their own, and 10,000 registrations just before them leave a
  # slow server busy hashing passwords when they log in.
  if want connect || want chat || want paced; then
    log "$s: creating $SESSIONS accounts"
    for rate in "$LOGIN_RATE" $((LOGIN_RATE / 4 + 1)); do
      "$LT" connect --port "$PORT" --domain $DOMAIN --mechanism $MECH --register \
        --sessions "$SESSIONS" --login-rate "$rate" --duration 0 > "$work/$s-register.txt" 2>&1 && break
      log "$s registration at $rate/s: $(tail -1 "$work/$s-register.txt")"
    done
  fi
  want connect && for i in $(seq 1 "$RUNS"); do
    "${s}_stop" "$w"
    "${s}_start" "$w" || break
    run "$s" connect "$i" connect --sessions "$SESSIONS" --login-rate "$LOGIN_RATE" --duration 2
  done
  want chat && for i in $(seq 1 "$RUNS"); do
    run "$s" chat "$i" chat --pairs 50 --window 16 --duration "$DURATION"
  done
  want paced && for i in $(seq 1 "$RUNS"); do
    run "$s" paced "$i" chat --pairs 50 --window 64 --rate "$PACED_RATE" --duration "$DURATION"
  done
  want presence && for i in $(seq 1 "$RUNS"); do
    run "$s" presence "$i" presence --presence-users 200 --contacts 9 --churn-interval 2 \
      --duration "$DURATION" --user-pattern "pres{n}" --register
  done
  want muc && for i in $(seq 1 "$RUNS"); do
    run "$s" muc "$i" muc --rooms 5 --occupants 20 --window 4 --duration "$DURATION" \
      --user-pattern "muc{n}" --register
  done
  want pubsub && for i in $(seq 1 "$RUNS"); do
    run "$s" pubsub "$i" pubsub --subscribers 100 --window 8 --duration "$DURATION" \
      --user-pattern "ps{n}" --register
  done
  want pubsub500 && for i in $(seq 1 "$RUNS"); do
    run "$s" pubsub500 "$i" pubsub --subscribers 500 --window 8 --duration "$DURATION" \
      --user-pattern "pt{n}" --register
  done
  "${s}_stop" "$w"
  CURRENT=
done

cmd="SERVERS=\"$SERVERS\" SCENARIOS=\"$SCENARIOS\" RUNS=$RUNS SESSIONS=$SESSIONS LOGIN_RATE=$LOGIN_RATE DURATION=$DURATION PACED_RATE=$PACED_RATE bash loadtest/compare.sh"
section=$work/section.md
{
  echo "<!-- compare:begin (written by loadtest/compare.sh on $(date -u +%Y-%m-%d); do not edit by hand) -->"
  echo "## Side by side with Prosody and ejabberd, $(date -u +%Y-%m-%d)"
  echo
  python3 loadtest/summarize.py "$results" "$cmd"
  echo "<!-- compare:end -->"
} > "$section"
mkdir -p loadtest/results
cp "$section" "loadtest/results/compare-$(date -u +%Y%m%d-%H%M).md"
[ "$SCENARIOS" = "$ALL_SCENARIOS" ] && python3 - "$ROOT/loadtest/RESULTS.md" "$section" <<'PY'
import re, sys
path, section = sys.argv[1], open(sys.argv[2]).read().rstrip() + "\n"
text = open(path).read()
pat = re.compile(r"<!-- compare:begin.*?<!-- compare:end -->\n?", re.S)
text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip() + "\n\n" + section
open(path, "w").write(text)
PY
cat "$section"
