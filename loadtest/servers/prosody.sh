# Prosody (Debian's package) for loadtest/compare.sh: run as the current
# user from WORKDIR with a throw-away configuration, on loopback only, with
# in-band registration unthrottled, a MUC service at conference.DOMAIN and
# a PubSub service at pubsub.DOMAIN. No system service is touched.

# prosody_config WORKDIR PORT DOMAIN CERT KEY
prosody_config() {
  local w=$1 port=$2 domain=$3 cert=$4 key=$5
  mkdir -p "$w/data"
  cp "$cert" "$w/cert.pem"
  cp "$key" "$w/key.pem"
  cat > "$w/prosody.cfg.lua" <<LUA
run_as_root = true
daemonize = false
pidfile = "$w/prosody.pid"
data_path = "$w/data"
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $port }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "register"; "offline"; "vcard"; "posix" }
modules_disabled = { "s2s"; "limits" }
allow_registration = true
min_seconds_between_registrations = 0
registration_throttle_max = 1000000
c2s_require_encryption = true
authentication = "internal_hashed"
-- Prosody lets only admins create PubSub nodes: the harness's publisher is
-- user 0 of its pattern (load0 by default, ps0 and pt0 in compare.sh).
admins = { "load0@$domain", "ps0@$domain", "pt0@$domain" }
storage = "internal"
log = { warn = "$w/prosody.log" }
ssl = { key = "$w/key.pem"; certificate = "$w/cert.pem" }
VirtualHost "$domain"
Component "conference.$domain" "muc"
  restrict_room_creation = false
  max_history_messages = 0
Component "pubsub.$domain" "pubsub"
LUA
}

# prosody_start WORKDIR: sets PID
prosody_start() {
  local w=$1 port
  port=$(sed -n 's/^c2s_ports = { \([0-9]*\) }/\1/p' "$w/prosody.cfg.lua")
  (cd "$w" && exec prosody -F --config "$w/prosody.cfg.lua" >> "$w/stdout" 2>&1) &
  PID=$!
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { PID=$(pgrep -f "prosody -F --config $w/" | head -1); return 0; }
    sleep 0.1
  done
  echo "prosody did not start; see $w/prosody.log and $w/stdout" >&2
  return 1
}

# prosody_stop WORKDIR
prosody_stop() {
  [ -n "${PID:-}" ] || return 0
  kill -TERM "$PID" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null
  pkill -KILL -f "prosody -F --config $1/" 2>/dev/null
  PID=
}
