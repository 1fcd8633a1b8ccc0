#!/usr/bin/env bash
# Federation between two XMPP servers, end to end: starts dns.py and the
# peers that are asked for, runs fed.py with one account on each, stops
# everything it started (on success, failure, timeout or signal) and exits
# with fed.py's status (2 when the set-up itself failed).
#
# usage: run.sh [options] PEER_A PEER_B [-- FED.PY OPTIONS]
#   PEER is one of
#     prosody    Debian's Prosody 0.12, started here (loadtest/servers/prosody-s2s.sh)
#     ejabberd   Debian's ejabberd 23.01, started here (loadtest/servers/ejabberd-s2s.sh)
#     external:HOST:C2S_PORT:DOMAIN[:S2S_PORT]
#                a server already running (xmppd started by a Rust test):
#                fed.py logs in at HOST:C2S_PORT; with S2S_PORT, dns.py
#                publishes _xmpp-server._tcp.DOMAIN -> HOST:S2S_PORT so the
#                other peer finds it. Its account must exist already.
#
# options (defaults in brackets):
#   --auth MODE       how the started peers authenticate each other:
#                     dialback (XEP-0220; the test CA is not trusted),
#                     external (SASL EXTERNAL, XEP-0178; the test CA is
#                     trusted and dialback is off) or both [dialback]
#   --dns IP:PORT     where dns.py listens [127.0.0.2:45053]
#   --no-dns          start no dns.py: the caller serves the records
#   --ip-targets      SRV targets are address literals (always on when a
#                     peer is ejabberd, which needs them; see dns.py)
#   --addr-a IP, --addr-b IP   loopback addresses of started peers
#                     [127.0.0.3, 127.0.0.4]
#   --c2s-port N, --s2s-port N ports of started peers, on their own
#                     addresses [45222, 45269]
#   --certs DIR       CA and certificates (certs.sh; made or completed
#                     there) [WORK/certs]
#   --work DIR        working directory [a new one under ${TMPDIR:-/tmp}]
#   --keep            keep WORK (it is kept anyway when the run fails)
#   --user-a U, --user-b U, --password PW   the accounts [alice, bob,
#                     fed-secret-1]; created on started peers
#   --python PATH     the interpreter for fed.py [python3]; /usr/bin/python3
#                     runs it with Debian's slixmpp
#   --timeout SECS    the whole run, set-up included [110]
#
# Domains: prosody.test and ejabberd.test, or KIND-a.test and KIND-b.test
# when both peers are of one kind. A client of an ejabberd peer checks the
# unknown-domain error with unreachable.test (an SRV record to a closed
# loopback port), any other with nowhere.test (NXDOMAIN): ejabberd looks
# up a domain without SRV records through getaddrinfo, which would ask
# the machine's resolver instead of dns.py.
#
# To federate with xmppd from a Rust test: make certificates first
# (certs.sh DIR xmppd.test prosody.test), start xmppd with
# DIR/xmppd.test.pem and .key, DIR/ca.pem as trusted CA and 127.0.0.2:45053
# (or --dns) as its resolver, create its account, then run
#   run.sh --certs DIR prosody external:127.0.0.1:PORT:xmppd.test:S2S_PORT
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=../../../loadtest/servers/prosody-s2s.sh
. "$root/loadtest/servers/prosody-s2s.sh"
# shellcheck source=../../../loadtest/servers/ejabberd-s2s.sh
. "$root/loadtest/servers/ejabberd-s2s.sh"

auth=dialback dns=127.0.0.2:45053 start_dns=1 ip_targets=0
addr_a=127.0.0.3 addr_b=127.0.0.4 c2s_port=45222 s2s_port=45269
certs='' work='' keep=0 user_a=alice user_b=bob password=fed-secret-1
python=python3 timeout=110
peers=() fed_extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --auth) auth=$2; shift ;;
    --dns) dns=$2; shift ;;
    --no-dns) start_dns=0 ;;
    --ip-targets) ip_targets=1 ;;
    --addr-a) addr_a=$2; shift ;;
    --addr-b) addr_b=$2; shift ;;
    --c2s-port) c2s_port=$2; shift ;;
    --s2s-port) s2s_port=$2; shift ;;
    --certs) certs=$2; shift ;;
    --work) work=$2; shift ;;
    --keep) keep=1 ;;
    --user-a) user_a=$2; shift ;;
    --user-b) user_b=$2; shift ;;
    --password) password=$2; shift ;;
    --python) python=$2; shift ;;
    --timeout) timeout=$2; shift ;;
    --) shift; fed_extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) peers+=("$1") ;;
  esac
  shift
done
[ ${#peers[@]} -eq 2 ] || { echo "usage: run.sh [options] PEER_A PEER_B (see --help)" >&2; exit 2; }
case $auth in dialback|external|both) ;; *) echo "run.sh: --auth is dialback, external or both" >&2; exit 2 ;; esac

t0=$(date +%s)
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/s2s-run.XXXXXX")
else
  mkdir -p "$work"
fi
[ -n "$certs" ] || certs=$work/certs

# --- what each side is
kind=() domain=() host=() c2s=() s2s=() dir=() pid=() user=("$user_a" "$user_b")
for i in 0 1; do
  p=${peers[$i]}
  side=$([ "$i" = 0 ] && echo a || echo b)
  case $p in
    prosody|ejabberd)
      kind[i]=$p
      if [ "${peers[0]}" = "${peers[1]}" ]; then domain[i]=$p-$side.test; else domain[i]=$p.test; fi
      host[i]=$([ "$i" = 0 ] && echo "$addr_a" || echo "$addr_b")
      c2s[i]=$c2s_port s2s[i]=$s2s_port dir[i]=$work/$side-$p
      ;;
    external:*)
      IFS=: read -r _ h c d s <<< "$p"
      [ -n "$h" ] && [ -n "$c" ] && [ -n "$d" ] || { echo "run.sh: $p: want external:HOST:C2S_PORT:DOMAIN[:S2S_PORT]" >&2; exit 2; }
      kind[i]=external domain[i]=$d host[i]=$h c2s[i]=$c s2s[i]=$s dir[i]=
      ;;
    *) echo "run.sh: unknown peer $p (prosody, ejabberd or external:...)" >&2; exit 2 ;;
  esac
  pid[i]=
done
[ "${domain[0]}" != "${domain[1]}" ] || { echo "run.sh: both peers serve ${domain[0]}" >&2; exit 2; }
for i in 0 1; do [ "${kind[i]}" = ejabberd ] && ip_targets=1; done

# --- stopping everything, whatever happens
dns_pid='' fed_pid='' watchdog='' status=2
cleanup() {
  trap - EXIT INT TERM
  [ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
  if [ -n "$fed_pid" ] && kill -0 "$fed_pid" 2>/dev/null; then
    kill -TERM "$fed_pid" 2>/dev/null
    wait "$fed_pid" 2>/dev/null
  fi
  for i in 0 1; do
    [ -n "${pid[i]}" ] || continue
    case ${kind[i]} in
      prosody) prosody_s2s_stop "${pid[i]}" ;;
      ejabberd) ejabberd_s2s_stop "${pid[i]}" ;;
    esac
  done
  if [ -n "$dns_pid" ]; then
    kill -TERM "$dns_pid" 2>/dev/null
    wait "$dns_pid" 2>/dev/null
  fi
  if [ "$status" != 0 ]; then
    for i in 0 1; do
      [ -n "${dir[i]}" ] || continue
      for f in "${dir[i]}/prosody.log" "${dir[i]}/logs/ejabberd.log" "${dir[i]}/stdout"; do
        [ -s "$f" ] || continue
        echo "--- last lines of $f"
        grep -avE '\[debug\]|	debug	' "$f" | tail -n 15
      done
    done
    echo "run.sh: failed; logs are in $work"
  elif [ "$keep" = 1 ]; then
    echo "run.sh: kept $work"
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; status=2; exit 2' INT TERM
# The whole run is bounded: the watchdog sends TERM, which stops everything.
# Its sleep goes when it goes: a sleep left behind would hold the output
# open for whoever reads it through a pipe.
(
  sleep "$timeout" &
  trap 'kill $! 2>/dev/null; exit 0' TERM
  wait $!
  echo "run.sh: no result within ${timeout}s" >&2
  kill -TERM $$
) &
watchdog=$!

echo "run.sh: ${peers[0]} (${domain[0]}) <-> ${peers[1]} (${domain[1]}), auth $auth, work $work"

# --- certificates and DNS
bash "$here/certs.sh" "$certs" "${domain[@]}" || exit 2
if [ "$start_dns" = 1 ]; then
  args=(--listen "$dns" --timeout "$((timeout + 10))" -v
        --srv "_xmpp-server._tcp.unreachable.test=0:0:45999:127.0.0.1")
  [ "$ip_targets" = 1 ] && args+=(--ip-targets)
  for i in 0 1; do
    [ -n "${s2s[i]}" ] && args+=(--peer "${domain[i]}=${host[i]}:${s2s[i]}")
  done
  python3 "$here/dns.py" "${args[@]}" > "$work/dns.out" 2> "$work/dns.log" &
  dns_pid=$!
  for _ in $(seq 1 100); do
    grep -q ready "$work/dns.out" 2>/dev/null && break
    kill -0 "$dns_pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q ready "$work/dns.out" || { echo "run.sh: dns.py did not start:"; cat "$work/dns.log"; exit 2; }
  echo "run.sh: $(cat "$work/dns.out")"
fi

# --- the peers and their accounts
for i in 0 1; do
  d=${dir[i]}
  case ${kind[i]} in
    prosody)
      mkdir -p "$d"
      prosody_s2s_config "$d" "${host[i]}" "${c2s[i]}" "${s2s[i]}" "${domain[i]}" "$certs" "$auth" "$dns" || exit 2
      prosody_s2s_adduser "$d" "${user[i]}" "${domain[i]}" "$password" || { echo "run.sh: prosodyctl register failed"; exit 2; }
      prosody_s2s_start "$d" || exit 2
      pid[i]=$PID
      ;;
    ejabberd)
      mkdir -p "$d"
      ejabberd_s2s_config "$d" "${host[i]}" "${c2s[i]}" "${s2s[i]}" "${domain[i]}" "$certs" "$auth" "$dns" || exit 2
      ejabberd_s2s_start "$d" || { pid[i]=$PID; exit 2; }
      pid[i]=$PID
      ejabberd_s2s_adduser "$d" "${user[i]}" "${domain[i]}" "$password" || { echo "run.sh: ejabberdctl register failed"; exit 2; }
      ;;
  esac
  [ -n "${pid[i]}" ] && echo "run.sh: ${kind[i]} ${domain[i]} up at ${host[i]} (c2s ${c2s[i]}, s2s ${s2s[i]}), pid ${pid[i]}, $(($(date +%s) - t0))s"
done

# --- the check
missing=()
for i in 0 1; do
  m=nowhere.test
  [ "${kind[i]}" = ejabberd ] && m=unreachable.test
  missing+=("$m")
done
left=$((timeout - ($(date +%s) - t0) - 5))
[ "$left" -gt 10 ] || { echo "run.sh: no time left for fed.py"; exit 2; }
"$python" "$here/fed.py" \
  --a-host "${host[0]}" --a-port "${c2s[0]}" --a-jid "${user[0]}@${domain[0]}" --a-password "$password" \
  --b-host "${host[1]}" --b-port "${c2s[1]}" --b-jid "${user[1]}@${domain[1]}" --b-password "$password" \
  --a-missing "${missing[0]}" --b-missing "${missing[1]}" --timeout "$left" "${fed_extra[@]}" &
fed_pid=$!
# `wait` (unlike a command in the foreground) lets the watchdog's TERM in.
wait "$fed_pid"
status=$?
fed_pid=
echo "run.sh: fed.py exited $status after $(($(date +%s) - t0))s"
exit "$status"
