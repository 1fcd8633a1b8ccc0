# Prosody (Debian's package, 0.12) as a federation (server-to-server)
# peer for tests/interop/s2s/run.sh and the federated load runs: run as
# the current user from WORKDIR with a throw-away configuration, its
# client and server ports on one loopback address, serving one domain.
# No system service is touched. Source this file; see prosody.sh for the
# single-server configuration that compare.sh uses.
#
# Peers are found through DNS: Prosody asks dns.py (tests/interop/s2s)
# through libunbound, which Prosody uses whenever lua-unbound is
# installed, with `unbound = { forward = ... }` (an address@port, any
# port) instead of /etc/resolv.conf. Prosody's built-in resolver, used
# without lua-unbound, reads only /etc/resolv.conf and always asks port 53,
# so lua-unbound is required. libunbound answers NXDOMAIN for `test.`
# itself (a special-use name, RFC 6761) unless told otherwise, hence the
# `local-zone` option.
#
# AUTH chooses how peers authenticate:
#   external  SASL EXTERNAL with certificates (XEP-0178) only: the test CA
#             is trusted (`ssl.cafile`), s2s_secure_auth is on and the
#             dialback module is not loaded;
#   dialback  Server Dialback (XEP-0220) only: the test CA is not trusted
#             (certificates are checked against the system store and fail),
#             so no peer qualifies for EXTERNAL;
#   both      the CA is trusted and dialback is loaded: EXTERNAL when the
#             peer's certificate is valid, dialback otherwise.

# prosody_s2s_config WORKDIR IP C2S_PORT S2S_PORT DOMAIN CERTDIR AUTH DNS_IP:DNS_PORT
# CERTDIR holds ca.pem, DOMAIN.pem and DOMAIN.key (tests/interop/s2s/certs.sh).
# PROSODY_LOG_LEVEL (debug, info, warn; default info) sets the log's level.
prosody_s2s_config() {
  local w=$1 ip=$2 c2s=$3 s2s=$4 domain=$5 certs=$6 auth=$7 dns=$8
  local dialback='' secure=false cafile=''
  case $auth in
    external) secure=true; cafile="cafile = \"$w/ca.pem\";" ;;
    dialback) dialback='"dialback";' ;;
    both) dialback='"dialback";'; cafile="cafile = \"$w/ca.pem\";" ;;
    *) echo "prosody_s2s_config: AUTH is external, dialback or both, not $auth" >&2; return 2 ;;
  esac
  mkdir -p "$w/data" "$w/certs"
  cp "$certs/$domain.pem" "$w/cert.pem"
  cp "$certs/$domain.key" "$w/key.pem"
  cp "$certs/ca.pem" "$w/ca.pem"
  cat > "$w/prosody.cfg.lua" <<LUA
-- federation peer $domain on $ip (c2s $c2s, s2s $s2s), auth $auth
run_as_root = true
daemonize = false
pidfile = "$w/prosody.pid"
data_path = "$w/data"
certificates = "$w/certs"
interfaces = { "$ip" }
local_interfaces = { "$ip" }
c2s_ports = { $c2s }
c2s_direct_tls_ports = { }
s2s_ports = { $s2s }
s2s_direct_tls_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "version"; "register"; "posix"; $dialback }
modules_disabled = { "limits"; "offline" }
allow_registration = true
min_seconds_between_registrations = 0
registration_throttle_max = 1000000
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = $secure
-- A remote domain that does not answer is given up on after this long:
-- the tests expect an error back within seconds, not the default 90.
s2s_timeout = 10
authentication = "internal_hashed"
storage = "internal"
log = { { levels = { min = "${PROSODY_LOG_LEVEL:-info}" }; to = "file"; filename = "$w/prosody.log" } }
ssl = { key = "$w/key.pem"; certificate = "$w/cert.pem"; $cafile }
unbound = {
  resolvconf = false;
  hoststxt = false;
  forward = { "${dns%:*}@${dns##*:}" };
  options = { ["local-zone:"] = "test. transparent" };
}
VirtualHost "$domain"
LUA
}

# prosody_s2s_adduser WORKDIR USER DOMAIN PASSWORD (before or after start)
prosody_s2s_adduser() {
  local w=$1 user=$2 domain=$3 password=$4
  prosodyctl --config "$w/prosody.cfg.lua" register "$user" "$domain" "$password" >> "$w/stdout" 2>&1
}

# prosody_s2s_start WORKDIR: sets PID once the client port answers.
prosody_s2s_start() {
  local w=$1 ip port
  ip=$(sed -n 's/^interfaces = { "\(.*\)" }$/\1/p' "$w/prosody.cfg.lua")
  port=$(sed -n 's/^c2s_ports = { \([0-9]*\) }$/\1/p' "$w/prosody.cfg.lua")
  if ! lua5.4 -e 'require "lunbound"' 2>/dev/null; then
    echo "prosody_s2s_start: lua-unbound is missing (apt-get install lua-unbound)" >&2
    return 1
  fi
  # The shell execs prosody (a Lua script run by its interpreter): $! is its PID.
  (cd "$w" && exec prosody -F --config "$w/prosody.cfg.lua" >> "$w/stdout" 2>&1) &
  PID=$!
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "prosody did not start; see $w/prosody.log and $w/stdout" >&2
  return 1
}

# prosody_s2s_stop [PID]: SIGTERM, then SIGKILL after 10 s.
prosody_s2s_stop() {
  local pid=${1:-${PID:-}}
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  PID=
  return 0
}
