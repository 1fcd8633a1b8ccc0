# ejabberd (Debian's package) for loadtest/compare.sh: run as the current
# user from WORKDIR with a throw-away configuration, Mnesia spool and logs,
# on loopback only, under an Erlang node name of its own. Registration is
# unthrottled, shapers are off, MUC is at conference.DOMAIN and PubSub at
# pubsub.DOMAIN. No system service is touched. Erlang's epmd, started on
# demand on 127.0.0.1, is left running (other Erlang nodes may use it).

# ejabberd_config WORKDIR PORT DOMAIN CERT KEY
ejabberd_config() {
  local w=$1 port=$2 domain=$3 cert=$4 key=$5
  mkdir -p "$w/spool" "$w/logs" "$w/modules.d"
  # Debian's ejabberdctl switches to the `ejabberd` user when run as root;
  # this copy runs as whoever calls it.
  sed 's/^INSTALLUSER=ejabberd$/INSTALLUSER=/' /usr/sbin/ejabberdctl > "$w/ejabberdctl"
  chmod +x "$w/ejabberdctl"
  cp /etc/ejabberd/inetrc "$w/inetrc" 2>/dev/null || : > "$w/inetrc"
  cat > "$w/ejabberdctl.cfg" <<CFG
ERLANG_NODE=ejabberd-lt$port@localhost
EJABBERD_PID_PATH=$w/ejabberd.pid
CONTRIB_MODULES_CONF_DIR=$w/modules.d
ERL_MAX_PORTS=65536
ERL_EPMD_ADDRESS=127.0.0.1
CFG
  cat > "$w/ejabberd.yml" <<YML
hosts:
  - "$domain"
loglevel: warning
certfiles:
  - "$cert"
  - "$key"
listen:
  -
    port: $port
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    shaper: none
    max_stanza_size: 262144
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
shaper_rules:
  max_user_sessions: 100000
  max_user_offline_messages: 5000
  c2s_shaper: none
  s2s_shaper: none
registration_timeout: infinity
auth_method: internal
auth_password_format: scram
s2s_access: none
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_vcard: {}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_register:
    access: register
    ip_access: all
  mod_muc:
    host: "conference.@HOST@"
    access: all
    access_create: local
    history_size: 0
    max_users: 10000
    max_user_conferences: 1000
  mod_pubsub:
    host: "pubsub.@HOST@"
    access_createnode: local
    plugins:
      - flat
YML
}

ejabberd_ctl() { # WORKDIR ARGS...
  local w=$1
  shift
  "$w/ejabberdctl" --config-dir "$w" --ctl-config "$w/ejabberdctl.cfg" \
    --config "$w/ejabberd.yml" --logs "$w/logs" --spool "$w/spool" "$@"
}

# ejabberd_start WORKDIR: sets PID (the beam.smp process)
ejabberd_start() {
  local w=$1 port node
  port=$(sed -n 's/^    port: \([0-9]*\)$/\1/p' "$w/ejabberd.yml" | head -1)
  node=ejabberd-lt$port@localhost
  (ejabberd_ctl "$w" foreground >> "$w/stdout" 2>&1 &)
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      PID=$(pgrep -f "beam.smp.*-s?name $node" | head -1)
      [ -n "$PID" ] || PID=$(pgrep -f "beam.smp.*$node" | head -1)
      return 0
    fi
    sleep 0.1
  done
  echo "ejabberd did not start; see $w/stdout and $w/logs" >&2
  return 1
}

# ejabberd_stop WORKDIR
ejabberd_stop() {
  local w=$1 port node
  port=$(sed -n 's/^    port: \([0-9]*\)$/\1/p' "$w/ejabberd.yml" | head -1)
  node=ejabberd-lt$port@localhost
  [ -n "${PID:-}" ] && kill -TERM "$PID" 2>/dev/null
  for _ in $(seq 1 150); do pgrep -f "beam.smp.*$node" > /dev/null || break; sleep 0.1; done
  pkill -KILL -f "beam.smp.*$node" 2>/dev/null
  PID=
}
