//! The server's configuration: one TOML file, read once at start-up.
//!
//! Every table is a serde struct with `#[serde(default, deny_unknown_fields)]`:
//! anything left out takes its documented default and a misspelt key is an
//! error, not a silently ignored setting. [`Config::validate`] then checks
//! the values together and reports every problem at once, one line each
//! (`field.path: what is wrong`), so `xmppd config check` can list them all.
//! `xmppd.example.toml` at the repository root documents every option.
//!
//! Relative paths are taken relative to the process's working directory.
//! This module only reads and checks the settings; it must not open
//! sockets, stores or TLS material (see `tls.rs` for that).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod check;
mod muc;
mod pubsub;
mod s2s;

pub use muc::MucConfig;
pub use pubsub::PubsubConfig;
pub use s2s::{ComponentsConfig, S2sConfig};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Virtual hosts served, as XMPP domainparts in canonical form
    /// (RFC 7622 §3.2). Default `["localhost"]`.
    pub domains: Vec<String>,
    /// Where the database, the admin socket and a generated certificate
    /// live. Default `"./data"`.
    pub data_dir: PathBuf,
    /// `[listeners]`: addresses to listen on.
    pub listeners: Listeners,
    /// `[tls]`: certificate and protocol versions.
    pub tls: TlsConfig,
    /// `[limits]`: protection against misbehaving clients.
    pub limits: LimitsConfig,
    /// `[registration]`: XEP-0077 in-band registration.
    pub registration: RegistrationConfig,
    /// `[offline]`: messages stored for unavailable users.
    pub offline: OfflineConfig,
    /// `[storage]`: durability of the database.
    pub storage: StorageConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[cluster]`: the node's role in a cluster.
    pub cluster: ClusterConfig,
    /// `[pubsub]`: PubSub services and PEP.
    pub pubsub: PubsubConfig,
    /// `[muc]`: XEP-0045 Multi-User Chat.
    pub muc: MucConfig,
    /// `[admin]`: the admin HTTP API.
    pub admin: AdminConfig,
    /// `[shutdown]`: how a node with clients stops on SIGTERM.
    pub shutdown: ShutdownConfig,
    /// `[tracing]`: OpenTelemetry traces of stanzas.
    pub tracing: TracingConfig,
    /// `[websocket]`: who may connect over WebSocket.
    pub websocket: WebSocketConfig,
    /// `[bosh]`: XMPP over BOSH on the WebSocket listeners.
    pub bosh: BoshConfig,
    /// `[csi]`: client state indication (XEP-0352).
    pub csi: CsiConfig,
    /// `[sm]`: stream management (XEP-0198).
    pub sm: SmConfig,
    /// `[s2s]`: federation with other servers.
    pub s2s: S2sConfig,
    /// `[components]`: external components (XEP-0114).
    pub components: ComponentsConfig,
}

/// `[tracing]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP/gRPC endpoint of an OpenTelemetry collector, e.g.
    /// `"http://otel-collector:4317"` (plain HTTP/2; run the collector
    /// next to the node for TLS beyond it). Unset (default): no traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The fraction of client stanzas whose trace is recorded, 0 to 1
    /// (the edge that reads a stanza decides, and every node after it
    /// follows). Default 0.1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<Ratio>,
}

impl TracingConfig {
    /// The sample ratio in force.
    pub fn ratio(&self) -> f64 {
        self.sample_ratio.map_or(DEFAULT_SAMPLE_RATIO, |r| r.0)
    }
}

/// `tracing.sample_ratio` when unset.
const DEFAULT_SAMPLE_RATIO: f64 = 0.1;

/// A number from 0 to 1, compared by value.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ratio(pub f64);

impl PartialEq for Ratio {
    fn eq(&self, other: &Ratio) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Ratio {}

/// `[shutdown]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Seconds a node with client connections drains on SIGTERM before it
    /// stops: it takes no new connections, is not ready (`/readyz`), and
    /// closes the open streams one by one at random moments over this
    /// time, so that their clients reconnect elsewhere a few at a time.
    /// It stops as soon as the last one is gone. 0 to 3600; 0 (default):
    /// every stream gets `<system-shutdown/>` at once.
    pub drain_secs: u64,
    /// Where draining sends clients (RFC 6120 `<see-other-host/>`): a
    /// host name or IP address, with an optional port, e.g.
    /// `"xmpp.example.org:5222"`. Unset (default): `<system-shutdown/>`,
    /// and clients reconnect to the address they know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub see_other_host: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// A file whose first line is the bearer token of the admin HTTP API
    /// (`/api/v1` on `listeners.http`; at least 16 printable characters).
    /// Default: none, and the API is not served. On an edge only
    /// `POST /api/v1/drain` serves (it holds no accounts or sessions'
    /// state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            domains: vec!["localhost".to_string()],
            data_dir: PathBuf::from("./data"),
            listeners: Listeners::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            registration: RegistrationConfig::default(),
            offline: OfflineConfig::default(),
            storage: StorageConfig::default(),
            log: LogConfig::default(),
            cluster: ClusterConfig::default(),
            pubsub: PubsubConfig::default(),
            muc: MucConfig::default(),
            admin: AdminConfig::default(),
            shutdown: ShutdownConfig::default(),
            tracing: TracingConfig::default(),
            websocket: WebSocketConfig::default(),
            bosh: BoshConfig::default(),
            csi: CsiConfig::default(),
            sm: SmConfig::default(),
            s2s: S2sConfig::default(),
            components: ComponentsConfig::default(),
        }
    }
}

/// `[listeners]`. A client listener is turned off by setting it to `false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listeners {
    /// Client connections with STARTTLS (RFC 6120 §5). Default
    /// `"0.0.0.0:5222"`; `false` turns it off.
    #[serde(with = "listener_addr")]
    pub c2s: Option<String>,
    /// Client connections with TLS from the first byte (XEP-0368). Default
    /// `"0.0.0.0:5223"`; `false` turns it off.
    #[serde(with = "listener_addr")]
    pub c2s_direct_tls: Option<String>,
    /// Operators' HTTP: `/metrics` (Prometheus) and the health probes
    /// `/livez`, `/readyz`, `/startupz`. Default `"127.0.0.1:9090"`;
    /// `false` turns it off. Give each process on one host its own.
    #[serde(with = "listener_addr")]
    pub http: Option<String>,
    /// XMPP over WebSocket (RFC 7395) without TLS, at `/xmpp-websocket`,
    /// for a TLS-terminating proxy in front. Off by default; `true` is
    /// `"127.0.0.1:5280"`.
    #[serde(with = "websocket_addr", skip_serializing_if = "Option::is_none")]
    pub websocket: Option<String>,
    /// XMPP over WebSocket with TLS (wss) and the server's certificate.
    /// Off by default; `true` is `"0.0.0.0:5443"`.
    #[serde(with = "websocket_tls_addr", skip_serializing_if = "Option::is_none")]
    pub websocket_tls: Option<String>,
    /// Unix socket of the `xmppd user ...` commands. Default: none given,
    /// which means `<data_dir>/admin.sock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_socket: Option<PathBuf>,
}

impl Default for Listeners {
    fn default() -> Listeners {
        Listeners {
            c2s: Some("0.0.0.0:5222".to_string()),
            c2s_direct_tls: Some("0.0.0.0:5223".to_string()),
            http: Some("127.0.0.1:9090".to_string()),
            websocket: None,
            websocket_tls: None,
            admin_socket: None,
        }
    }
}

/// Whether two listen addresses cannot both be bound: the same port on
/// the same address, or one of them the wildcard that covers the other
/// (`[::]` takes IPv4 too, `0.0.0.0` all of IPv4). Port 0 never clashes:
/// the system picks a free one.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let covers = |w: SocketAddr, o: SocketAddr| match w.ip() {
        std::net::IpAddr::V6(ip) => ip.is_unspecified(),
        std::net::IpAddr::V4(ip) => ip.is_unspecified() && o.is_ipv4(),
    };
    a.ip() == b.ip() || covers(a, b) || covers(b, a)
}

impl Listeners {
    /// The STARTTLS listener's address; `None` when it is off (or, before
    /// [`Config::validate`] passed, when it does not parse).
    pub fn c2s_addr(&self) -> Option<SocketAddr> {
        self.c2s.as_deref().and_then(|a| a.parse().ok())
    }

    /// The direct TLS listener's address, like [`Listeners::c2s_addr`].
    pub fn c2s_direct_tls_addr(&self) -> Option<SocketAddr> {
        self.c2s_direct_tls.as_deref().and_then(|a| a.parse().ok())
    }

    /// The HTTP listener's address, like [`Listeners::c2s_addr`].
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_deref().and_then(|a| a.parse().ok())
    }
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Give both `cert` and `key`, or
    /// neither: then a self-signed certificate for the domains is generated
    /// at start-up (development only). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, RSA or SEC1). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// On the plain port, refuse SASL and resource binding before STARTTLS.
    /// Default `true`.
    pub require_starttls: bool,
    /// Also offer TLS 1.2; TLS 1.3 is always on and nothing older exists.
    /// Default `true`.
    pub allow_tls12: bool,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            cert: None,
            key: None,
            require_starttls: true,
            allow_tls12: true,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest stanza accepted, in bytes; at least 10000 (RFC 6120 §13.12).
    /// Default 262144.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza. Default 32.
    pub max_depth: usize,
    /// Most attributes on one element. Default 64.
    pub max_attrs: usize,
    /// Bytes per second one connection may send; 0 = unlimited.
    /// Default 102400.
    pub read_rate_bytes_per_sec: u64,
    /// Bytes a connection may send at once above the rate. Default 524288.
    pub read_burst_bytes: u64,
    /// Connections from one IP address. Default 100.
    pub max_connections_per_ip: usize,
    /// Connections to this node. Default 15000.
    pub max_connections: usize,
    /// Seconds from connecting to a bound session. Default 30.
    pub handshake_timeout_secs: u64,
    /// Seconds without traffic before the server pings the client
    /// (XEP-0199). Default 300.
    pub idle_timeout_secs: u64,
    /// Seconds allowed for the answer to that ping before the connection is
    /// closed. Default 60.
    pub ping_timeout_secs: u64,
    /// Stanzas queued for one session before it is closed as too slow.
    /// Default 2048 (entering a room of `muc.max_occupants` sends that
    /// many presences at once; keep it above them).
    pub outbound_queue: usize,
    /// Seconds a write to a client may take before the client is considered
    /// dead and the connection closed. Default 30.
    pub write_timeout_secs: u64,
    /// Stanzas (messages, presences and IQs together) one session may send
    /// per second on average; 0 = unlimited. Default 100.
    pub stanza_rate_per_sec: u32,
    /// Stanzas a session may send at once above that rate. Default 500.
    pub stanza_burst: u32,
    /// Items a user's roster may hold. Default 5000.
    pub max_roster_items: usize,
    /// Largest vCard (XEP-0054) a user may store, in bytes. Default 131072.
    pub max_vcard_bytes: usize,
    /// Failed logins from one address, or on one account, before each
    /// further one makes the next attempt wait. Default 3.
    pub login_free_failures: u32,
    /// The first such wait in seconds, doubled after every further
    /// failure. 0 turns the login throttle off. Default 1.
    pub login_delay_secs: u64,
    /// The longest wait, in seconds. Default 15.
    pub login_max_delay_secs: u64,
    /// Seconds without a failure after which the count starts again.
    /// Default 900.
    pub login_forget_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
            max_attrs: 64,
            read_rate_bytes_per_sec: 100 * 1024,
            read_burst_bytes: 512 * 1024,
            max_connections_per_ip: 100,
            max_connections: 15_000,
            handshake_timeout_secs: 30,
            idle_timeout_secs: 300,
            ping_timeout_secs: 60,
            outbound_queue: 2048,
            write_timeout_secs: 30,
            stanza_rate_per_sec: 100,
            stanza_burst: 500,
            max_roster_items: 5000,
            max_vcard_bytes: 128 * 1024,
            login_free_failures: 3,
            login_delay_secs: 1,
            login_max_delay_secs: 15,
            login_forget_secs: 900,
        }
    }
}

impl LimitsConfig {
    /// The stream parser's limits.
    pub fn xml_limits(&self) -> proto::xml::Limits {
        proto::xml::Limits {
            max_stanza_bytes: self.max_stanza_bytes,
            max_depth: self.max_depth,
            max_attrs: self.max_attrs,
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn ping_timeout(&self) -> Duration {
        Duration::from_secs(self.ping_timeout_secs)
    }
}

/// `[registration]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Let anyone create an account over XMPP (XEP-0077). Default `false`.
    pub enabled: bool,
    /// Let signed-in users change their password (XEP-0077 §3.3).
    /// Default `true`.
    pub allow_password_change: bool,
    /// Shortest password accepted, in characters; 1 to 1023. Default 8.
    pub min_password_len: usize,
    /// Seconds between two in-band registrations from one address (an
    /// IPv6 client counts by its /64); 0 = no limit. Default 600.
    pub min_interval_secs: u64,
    /// Addresses or networks (`"10.0.0.0/8"`) exempt from that interval.
    /// Default `["127.0.0.0/8", "::1"]`.
    pub trusted_networks: Vec<String>,
    /// When not empty, only these addresses or networks may register
    /// in-band. Default empty (anyone, when `enabled`).
    pub allowed_networks: Vec<String>,
}

impl Default for RegistrationConfig {
    fn default() -> RegistrationConfig {
        RegistrationConfig {
            enabled: false,
            allow_password_change: true,
            min_password_len: 8,
            min_interval_secs: 600,
            trusted_networks: vec!["127.0.0.0/8".to_string(), "::1".to_string()],
            allowed_networks: Vec::new(),
        }
    }
}

/// `[offline]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineConfig {
    /// Messages stored per user while no resource is available; the ones
    /// after that are bounced. Default 1000.
    pub max_per_user: usize,
}

impl Default for OfflineConfig {
    fn default() -> OfflineConfig {
        OfflineConfig { max_per_user: 1000 }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `false`: each write reaches the write-ahead log before it is
    /// acknowledged, and the OS decides when to flush it to disk (a crash
    /// of the process loses nothing, a power cut may lose the last
    /// moments). `true`: fsync every write. Default `false`.
    pub sync_writes: bool,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` EnvFilter directive such as `"info"` or
    /// `"info,node=debug"`; the `RUST_LOG` environment variable overrides
    /// it. Default `"info"`. openraft (the cluster's consensus) logs at
    /// `warn` unless the directive names it, e.g. `"info,openraft=info"`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            level: "info".to_string(),
        }
    }
}

/// What a node does in a cluster (docs/cluster.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Edge and core in one process: the single-node server.
    Both,
    /// Holds the data and the sessions' state; serves edges over gRPC.
    Core,
    /// Holds client connections only; forwards to a core node.
    Edge,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `"both"` (default), `"core"` or `"edge"`.
    pub role: Role,
    /// This node's id, unique in the cluster, 1 to 65535. Default 1.
    /// `"ordinal"`: `node_id_base` + 1 + the number that ends the host
    /// name (a StatefulSet's pod `xmppd-core-0` is node 1). `"auto"`
    /// (edges only): an id drawn at random at each start; a core node
    /// refuses an edge whose id another running edge holds, and the edge
    /// draws again.
    pub node_id: NodeId,
    /// Added to the ordinal of `node_id = "ordinal"`. Default 0.
    pub node_id_base: u64,
    /// Core: the address the other nodes reach this one at, when it is
    /// not in `peers` (a node that joins later). `{hostname}` stands for
    /// the host name, e.g. `"{hostname}.xmppd-core:7000"` under a
    /// headless Service. Default: its `peers` entry, else `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Core: a node that is not a member (a StatefulSet scaled up, or a
    /// removed node started again) asks the `peers` to add it, instead of
    /// waiting for `xmppd cluster add-node`. Default `false`.
    pub auto_join: bool,
    /// Core: the address the gRPC services listen on. Default
    /// `"127.0.0.1:7000"`.
    pub listen: String,
    /// Edge: the core node's gRPC address, e.g. `"127.0.0.1:7000"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core: Option<String>,
    /// Seconds after which a node that stopped answering (crashed, hung,
    /// cut off) is dropped by its peer: an edge's users then go
    /// unavailable to their contacts. 1 to 300, default 4.
    pub liveness_secs: u64,
    /// Core: the core nodes that found the cluster, as `"id=address"`
    /// (its gRPC address as the others reach it), this one included. On
    /// the first start the lowest id creates the groups with them as
    /// members; later members come and go with `xmppd cluster add-node` /
    /// `remove-node` (a node that joins a running cluster lists a running
    /// member and itself). Empty (default): this core node alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Core: how many core nodes hold a replica of each shard (its Raft
    /// group), 1 to 7, default 3; all of them when there are fewer.
    pub replication: usize,
    /// Core: the number of user shards, 1 to 1024, default 16. The same on
    /// every core node, and fixed once the cluster (or the single node)
    /// has started: a node configured otherwise refuses to start.
    pub shards: usize,
    /// Core: Raft log entries of a shard between two snapshot points,
    /// 10 to 10,000,000, default 5000. At a point the log is purged but
    /// for its last entries; a follower further behind is sent the
    /// shard's data instead.
    pub snapshot_logs: u64,
}

/// An OTLP/gRPC endpoint: `http://HOST:PORT` with nothing after the port
/// but an optional `/`.
fn check_otlp_endpoint(e: &str) -> Result<(), String> {
    if e.starts_with("https://") {
        return Err(format!(
            "{e:?}: TLS to the collector is not supported; use http:// to a collector next to the node"
        ));
    }
    let Some(rest) = e.strip_prefix("http://") else {
        return Err(format!("{e:?} must start with http://"));
    };
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    check_host_port(hostport).map_err(|why| format!("{e:?}: {why} (http://HOST:PORT)"))
}

/// A problem with one entry of a list: its index and why.
pub type Misfit = (usize, String);

impl ClusterConfig {
    /// `peers` as (id, address) pairs, and every problem found, by index.
    pub fn peers_checked(&self) -> (Vec<(u64, String)>, Vec<Misfit>) {
        let mut out: Vec<(u64, String)> = Vec::with_capacity(self.peers.len());
        let mut problems = Vec::new();
        for (i, p) in self.peers.iter().enumerate() {
            let Some((id, addr)) = p.split_once('=') else {
                problems.push((i, format!("{p:?} is not \"id=address\"")));
                continue;
            };
            let id: u64 = match id.trim().parse() {
                Ok(n) if (1..=65_535).contains(&n) => n,
                _ => {
                    problems.push((i, format!("{id:?} is not a node id (1 to 65535)")));
                    continue;
                }
            };
            let addr = addr.trim();
            if let Err(why) = check_host_port(addr) {
                problems.push((
                    i,
                    format!(
                        "{addr:?}: {why} (an address such as \"127.0.0.1:7000\" or \"core-0.xmppd-core:7000\")"
                    ),
                ));
                continue;
            }
            if out.iter().any(|(o, _)| *o == id) {
                problems.push((i, format!("node id {id} is listed more than once")));
                continue;
            }
            if let Some((other, _)) = out.iter().find(|(_, a)| same_place(a) == same_place(addr)) {
                problems.push((i, format!("{addr} is listed for node {other} too")));
                continue;
            }
            out.push((id, addr.to_string()));
        }
        (out, problems)
    }
}

/// `cluster.node_id`: a number, or how to find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeId {
    Id(u64),
    /// From the host name's trailing number (a StatefulSet's ordinal).
    Ordinal,
    /// Drawn at random at each start (edges).
    Auto,
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NodeId::Id(n) => s.serialize_u64(*n),
            NodeId::Ordinal => s.serialize_str("ordinal"),
            NodeId::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = NodeId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a node id (1 to 65535), \"ordinal\" or \"auto\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<NodeId, E> {
                Ok(NodeId::Id(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<NodeId, E> {
                u64::try_from(n)
                    .map(NodeId::Id)
                    .map_err(|_| E::custom(format!("{n} is not a node id (1 to 65535)")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NodeId, E> {
                match v {
                    "ordinal" => Ok(NodeId::Ordinal),
                    "auto" => Ok(NodeId::Auto),
                    _ => Err(E::custom(format!(
                        "{v:?} is not a node id: use a number (1 to 65535), \"ordinal\" or \"auto\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The host name: `HOSTNAME` from the environment (Kubernetes sets it to
/// the pod's name), else the kernel's.
pub fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// The number that ends `host` after a `-` (`xmppd-core-2` → 2).
pub fn ordinal_of(host: &str) -> Option<u64> {
    let (_, n) = host.rsplit_once('-')?;
    if n.is_empty() || n.len() > 5 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Why `addr` is not a `host:port` to connect to: a DNS name or an IP
/// address (IPv6 in brackets) that names a host (not 0.0.0.0 or `::`),
/// and a port 1 to 65535 in digits.
pub fn check_host_port(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("no :port".into());
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the port {port:?} is not a number"));
    }
    match port.parse::<u16>() {
        Ok(0) => return Err("port 0 is not a port to connect to".into()),
        Ok(_) => {}
        Err(_) => return Err(format!("the port {port} is past 65535")),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match v6.parse::<std::net::Ipv6Addr>() {
            Ok(ip) if ip.is_unspecified() => Err("[::] names no host to connect to".into()),
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{v6:?} is not an IPv6 address")),
        };
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        if ip.is_unspecified() {
            return Err("0.0.0.0 names no host to connect to".into());
        }
        return Ok(());
    }
    dns_name(host)
}

/// The `services` table of a service kind (`pubsub.services`,
/// `muc.services`): each key a served domain, each value a domain name that
/// is neither served nor, as `clash` says why, taken by another service.
fn check_service_names(
    field: &str,
    services: &std::collections::BTreeMap<String, String>,
    domains: &[String],
    p: &mut Problems,
    clash: impl Fn(&str) -> Option<&'static str>,
) {
    for (domain, service) in services {
        if !domains.contains(domain) {
            p.add(field, format!("{domain} is not one of the domains served"));
        }
        match proto::BareJid::parse(service) {
            Ok(j) if j.local().is_none() => {
                let name = j.to_string();
                if domains.contains(&name) {
                    p.add(
                        field,
                        format!("{service} is a served domain, not a service name"),
                    );
                } else if let Some(why) = clash(&name) {
                    p.add(field, format!("{service} {why}"));
                }
            }
            _ => p.add(field, format!("{service:?} is not a domain name")),
        }
    }
}

/// A DNS host name (RFC 1123): dot-separated labels of letters, digits
/// and inner hyphens, 1 to 63 bytes each, a final dot allowed; the last
/// label not all digits, so that a mistyped IPv4 address such as
/// `999.1.1.1` is not taken for a name.
fn dns_name(host: &str) -> Result<(), String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return Err("no host name".into());
    }
    if name.len() > 253 {
        return Err("the host name is longer than 253 bytes".into());
    }
    for l in name.split('.') {
        if l.is_empty() {
            return Err(format!("{host:?} has an empty label"));
        }
        if l.len() > 63 {
            return Err(format!("the label {l:?} is longer than 63 bytes"));
        }
        if !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!(
                "the label {l:?} has characters other than letters, digits and '-'"
            ));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err(format!("the label {l:?} starts or ends with '-'"));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{host:?} is neither an IPv4 address nor a host name"
        ));
    }
    Ok(())
}

/// `host[:port]` with the host name's final dot dropped (RFC 7622 §3.2:
/// a domain is sent without it), for telling clients where to go.
pub fn without_final_dot(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((h, p)) => format!("{}:{p}", h.strip_suffix('.').unwrap_or(h)),
        None => addr.strip_suffix('.').unwrap_or(addr).to_string(),
    }
}

/// `host:port` as compared for sameness: the name in lower case without
/// a final dot.
fn same_place(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((h, p)) => format!(
            "{}:{}",
            h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase(),
            p.trim_start_matches('0')
        ),
        None => addr.to_ascii_lowercase(),
    }
}

impl ClusterConfig {
    /// This node's id as configured or found (`"ordinal"`: from the host
    /// name; `"auto"`: drawn now, 1024 to 65535).
    pub fn resolve_node_id(&self) -> Result<u64, String> {
        match self.node_id {
            NodeId::Id(n) => Ok(n),
            NodeId::Auto => Ok(rand::random_range(1024..=65_535)),
            NodeId::Ordinal => {
                let host = host_name().ok_or("\"ordinal\" needs a host name, and there is none")?;
                let n = ordinal_of(&host).ok_or_else(|| {
                    format!("\"ordinal\" needs a host name that ends in -N (a StatefulSet's pod); this host is {host:?}")
                })?;
                let id = self.node_id_base + n + 1;
                if id > 65_535 {
                    return Err(format!(
                        "node_id_base {} + ordinal {n} + 1 is past 65535",
                        self.node_id_base
                    ));
                }
                Ok(id)
            }
        }
    }

    /// `advertise` with `{hostname}` replaced, if it is set.
    pub fn advertised(&self) -> Option<String> {
        let a = self.advertise.as_ref()?;
        Some(a.replace("{hostname}", &host_name().unwrap_or_default()))
    }
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            role: Role::Both,
            node_id: NodeId::Id(1),
            node_id_base: 0,
            advertise: None,
            auto_join: false,
            listen: "127.0.0.1:7000".to_string(),
            core: None,
            liveness_secs: 4,
            peers: Vec::new(),
            replication: 3,
            shards: 16,
            snapshot_logs: 5000,
        }
    }
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, as a TOML path: `limits.max_depth`, `domains[1]`; `TOML
    /// syntax` for text that is no TOML.
    pub field: String,
    pub message: String,
    /// The line of the file (from 1), when the problem was found in one.
    pub line: Option<usize>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Everything wrong with the file, one line each: bad TOML, unknown
    /// keys, values of the wrong type, values that cannot work.
    #[error("{}", lines(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems found in the file; empty when it could not be read.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            _ => &[],
        }
    }
}

fn lines(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

/// RFC 6120 §13.12: a server must accept stanzas of at least 10000 bytes.
const MIN_STANZA_BYTES: usize = 10_000;
/// Beyond this one stanza could hold a good share of a small machine's memory.
const MAX_STANZA_BYTES: usize = 64 * 1024 * 1024;
/// `<stream:stream>` > stanza > payload > child: anything less breaks XMPP.
const MIN_DEPTH: usize = 4;
/// A stream header carries up to 7 attributes (with its namespaces).
const MIN_ATTRS: usize = 8;
/// Timers longer than a day are a mistake, and huge ones overflow `Instant`.
const MAX_TIMEOUT_SECS: u64 = 86_400;
/// RFC 7622 §3.3 bounds a localpart, and so sensible passwords, to 1023.
const MAX_MIN_PASSWORD_LEN: usize = 1023;
/// A vCard with a name and a few fields; below this, clients break.
const MIN_VCARD_BYTES: usize = 1024;
/// A longer wait would outlast the handshake timeout of any sane setup.
const MAX_LOGIN_DELAY_SECS: u64 = 300;
/// `sun_path` holds 108 bytes including the final NUL (Linux unix(7)).
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// Room left in a stanza around a PubSub item (the IQ, publish and item
/// elements with their attributes).
pub const PUBLISH_OVERHEAD: usize = 4096;

impl Config {
    /// The largest PubSub item in force: `pubsub.max_item_bytes`, but no
    /// more than fits in a stanza with the publish around it.
    pub fn item_limit(&self) -> usize {
        self.pubsub
            .max_item_bytes
            .min(
                self.limits
                    .max_stanza_bytes
                    .saturating_sub(PUBLISH_OVERHEAD),
            )
            .max(1)
    }

    /// Read, parse and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// Parse and validate a configuration; the error lists every problem
    /// of the text at once, each with its line (see `config/check.rs`).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        check::parse(text)
    }

    /// The admin socket's path: as configured, or `<data_dir>/admin.sock`.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.listeners
            .admin_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }

    /// What is allowed but likely not what was meant, one line each
    /// (`config check` prints them, `serve` logs them as warnings).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(e) = &self.tracing.otlp_endpoint
            && e.trim_end_matches('/').ends_with(":4318")
        {
            notes.push(
                "tracing.otlp_endpoint: 4318 is the port of OTLP/HTTP; xmppd speaks OTLP/gRPC (usually 4317)"
                    .to_string(),
            );
        }
        if self.tracing.sample_ratio.is_some() && self.tracing.otlp_endpoint.is_none() {
            notes.push(
                "tracing.sample_ratio is set but tracing.otlp_endpoint is not: nothing is traced"
                    .to_string(),
            );
        }
        notes
    }

    /// Check the values together; every problem found is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        self.check_domains(&mut p);
        if self.data_dir.as_os_str().is_empty() {
            p.add("data_dir", "must not be empty");
        }
        self.check_listeners(&mut p);
        self.check_tls(&mut p);
        self.check_limits(&mut p);
        let min = self.registration.min_password_len;
        if min == 0 || min > MAX_MIN_PASSWORD_LEN {
            p.add(
                "registration.min_password_len",
                format!("is {min}, must be 1 to {MAX_MIN_PASSWORD_LEN}"),
            );
        }
        self.pubsub.check(&self.domains, &mut p);
        let pubsub_services = router::config::CoreConfig {
            domains: self.domains.clone(),
            pubsub: self.pubsub.to_core(),
            ..Default::default()
        }
        .pubsub_services();
        self.muc.check(&self.domains, &pubsub_services, &mut p);
        let mut services = pubsub_services.clone();
        for d in &self.domains {
            services.push(
                self.muc
                    .services
                    .get(d)
                    .cloned()
                    .unwrap_or_else(|| format!("conference.{d}")),
            );
        }
        self.components.check(&self.domains, &services, &mut p);
        services.extend(self.components.secrets.keys().cloned());
        self.s2s.check(&self.domains, &services, &mut p);
        if self.sm.resume_timeout_secs > 86_400 {
            p.add("sm.resume_timeout_secs", "must be at most 86400 (a day)");
        }
        if self.sm.max_unacked == 0 || self.sm.max_unacked > 100_000 {
            p.add("sm.max_unacked", "must be 1 to 100000");
        }
        if self.sm.request_every == 0 {
            p.add("sm.request_every", "must be at least 1");
        }
        if let Some(l) = &self.sm.location
            && (l.is_empty()
                || l.len() > 255
                || l.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>'\"&".contains(c)))
        {
            p.add(
                "sm.location",
                "must be a host and port, without spaces or XML characters",
            );
        }
        if self.offline.max_per_user == 0 {
            p.add("offline.max_per_user", "must be at least 1");
        }
        for (field, list) in [
            (
                "registration.trusted_networks",
                &self.registration.trusted_networks,
            ),
            (
                "registration.allowed_networks",
                &self.registration.allowed_networks,
            ),
        ] {
            for (i, n) in list.iter().enumerate() {
                if let Err(e) = crate::throttle::Network::parse(n) {
                    p.add(&format!("{field}[{i}]"), e);
                }
            }
        }
        if self.registration.min_interval_secs > MAX_TIMEOUT_SECS {
            p.add(
                "registration.min_interval_secs",
                format!(
                    "is {}, must be 0 to {MAX_TIMEOUT_SECS}",
                    self.registration.min_interval_secs
                ),
            );
        }
        check_log_level(&self.log.level, &mut p);
        self.check_cluster(&mut p);
        if self.shutdown.drain_secs > 3600 {
            p.add(
                "shutdown.drain_secs",
                format!("is {}, must be 0 to 3600", self.shutdown.drain_secs),
            );
        }
        if let Some(h) = &self.shutdown.see_other_host {
            // A bare host name or IPv4 address has no ':'; IPv6 is in
            // brackets with a port.
            let checked = if h.contains(':') {
                check_host_port(h)
            } else {
                check_host_port(&format!("{h}:5222"))
            };
            if let Err(why) = checked {
                p.add(
                    "shutdown.see_other_host",
                    format!("{h:?}: {why} (a host name or address with an optional port)"),
                );
            }
        }
        if let Some(f) = &self.admin.token_file
            && let Err(e) = crate::api::read_token(f)
        {
            p.add("admin.token_file", e.to_string());
        }
        self.check_tracing(&mut p);
        self.bosh.check(&mut p);

        if self.admin.token_file.is_some() && self.listeners.http.is_none() {
            p.add(
                "admin.token_file",
                "the admin API is served on listeners.http, which is off",
            );
        }
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(p.0))
        }
    }

    fn check_tracing(&self, p: &mut Problems) {
        let r = self.tracing.ratio();
        if !(0.0..=1.0).contains(&r) {
            // `{:?}` writes 1e308 as such, not as 309 digits.
            p.add("tracing.sample_ratio", format!("is {r:?}, must be 0 to 1"));
        }
        if let Some(e) = &self.tracing.otlp_endpoint
            && let Err(why) = check_otlp_endpoint(e)
        {
            p.add("tracing.otlp_endpoint", why);
        }
    }

    fn check_cluster(&self, p: &mut Problems) {
        let c = &self.cluster;
        let node_id = match c.resolve_node_id() {
            Ok(n) if (1..=65_535).contains(&n) => n,
            Ok(n) => {
                p.add("cluster.node_id", format!("is {n}, must be 1 to 65535"));
                0
            }
            Err(e) => {
                p.add("cluster.node_id", e);
                0
            }
        };
        if c.node_id == NodeId::Auto && c.role != Role::Edge {
            p.add(
                "cluster.node_id",
                "\"auto\" is for edges: a core node keeps its id (use a number or \"ordinal\")",
            );
        }
        if c.node_id_base > 65_534 {
            p.add(
                "cluster.node_id_base",
                format!("is {}, must be 0 to 65534", c.node_id_base),
            );
        }
        if let Some(a) = c.advertised() {
            if c.role != Role::Core {
                p.add("cluster.advertise", "only core nodes advertise an address");
            } else if let Err(why) = check_host_port(&a) {
                p.add(
                    "cluster.advertise",
                    format!("{a:?}: {why} (host:port after replacing {{hostname}})"),
                );
            }
        }
        if c.auto_join && c.role != Role::Core {
            p.add("cluster.auto_join", "only core nodes join a cluster");
        }
        if !(1..=1024).contains(&c.shards) {
            p.add(
                "cluster.shards",
                format!("is {}, must be 1 to 1024", c.shards),
            );
        }
        if !(1..=7).contains(&c.replication) {
            p.add(
                "cluster.replication",
                format!("is {}, must be 1 to 7", c.replication),
            );
        }
        if !(10..=10_000_000).contains(&c.snapshot_logs) {
            p.add(
                "cluster.snapshot_logs",
                format!("is {}, must be 10 to 10000000", c.snapshot_logs),
            );
        }
        if c.liveness_secs == 0 || c.liveness_secs > 300 {
            p.add(
                "cluster.liveness_secs",
                format!("is {}, must be 1 to 300", c.liveness_secs),
            );
        }
        if c.role == Role::Core && c.listen.parse::<SocketAddr>().is_err() {
            p.add(
                "cluster.listen",
                format!(
                    "{:?} is not an address such as \"127.0.0.1:7000\"",
                    c.listen
                ),
            );
        }
        let (peers, bad) = c.peers_checked();
        for (i, e) in &bad {
            p.add(&format!("cluster.peers[{i}]"), e.clone());
        }
        match (bad.is_empty(), peers) {
            (false, _) => {}
            (true, peers) if !peers.is_empty() => {
                if c.role != Role::Core {
                    p.add(
                        "cluster.peers",
                        "only core nodes (role = \"core\") have peers",
                    );
                } else if !c.auto_join
                    && node_id != 0
                    && !peers.iter().any(|(id, _)| *id == node_id)
                {
                    p.add(
                        "cluster.peers",
                        format!(
                            "must list this node (node_id {node_id}) too, unless auto_join is on"
                        ),
                    );
                }
            }
            _ => {}
        }
        match (c.role, &c.core) {
            (Role::Edge, None) => p.add("cluster.core", "an edge needs the core node's address"),
            (Role::Edge, Some(a)) => {
                if let Err(why) = check_host_port(a) {
                    p.add(
                        "cluster.core",
                        format!(
                            "{a:?}: {why} (an address such as \"127.0.0.1:7000\" or \"xmppd-core:7000\")"
                        ),
                    )
                }
            }
            _ => {}
        }
    }

    fn check_domains(&self, p: &mut Problems) {
        if self.domains.is_empty() {
            p.add("domains", "at least one domain must be served");
        }
        let mut seen: Vec<String> = Vec::new();
        for (i, d) in self.domains.iter().enumerate() {
            let field = format!("domains[{i}]");
            match proto::jid::normalize_domain(d) {
                Err(e) => p.add(
                    &field,
                    format!("{d:?} is not a valid XMPP domainpart (RFC 7622 §3.2): {e}"),
                ),
                Ok(n) => {
                    if n != *d {
                        p.add(
                            &field,
                            format!("{d:?} is not in canonical form, write {n:?}"),
                        );
                    }
                    if seen.contains(&n) {
                        p.add(&field, format!("{n:?} is listed more than once"));
                    } else {
                        seen.push(n);
                    }
                }
            }
        }
    }

    fn check_listeners(&self, p: &mut Problems) {
        let l = &self.listeners;
        // What this role binds: a core node takes no clients but serves
        // the cluster's gRPC.
        let core = self.cluster.role == Role::Core;
        let cluster = core.then(|| self.cluster.listen.clone());
        let s2s = self.s2s.enabled.then(|| self.s2s.listen.clone());
        let s2s_direct = self
            .s2s
            .direct_tls_listen
            .clone()
            .filter(|_| self.s2s.enabled);
        let components =
            (!self.components.secrets.is_empty()).then(|| self.components.listen.clone());
        let mut bound: Vec<(SocketAddr, &str)> = Vec::new();
        for (field, addr, binds) in [
            ("listeners.c2s", &l.c2s, !core),
            ("listeners.c2s_direct_tls", &l.c2s_direct_tls, !core),
            ("listeners.http", &l.http, true),
            ("listeners.websocket", &l.websocket, !core),
            ("listeners.websocket_tls", &l.websocket_tls, !core),
            ("cluster.listen", &cluster, core),
            ("s2s.listen", &s2s, !core),
            ("s2s.direct_tls_listen", &s2s_direct, !core),
            ("components.listen", &components, !core),
        ] {
            let Some(addr) = addr else { continue };
            match addr.parse::<SocketAddr>() {
                // cluster.listen's own form is checked with [cluster].
                Err(_) if field == "cluster.listen" => {}
                Err(_) => p.add(
                    field,
                    format!("{addr:?} is not an address like \"0.0.0.0:5222\" or \"[::]:5222\""),
                ),
                Ok(_) if !binds => {}
                Ok(a) => match bound.iter().find(|(b, _)| overlaps(*b, a)) {
                    Some((b, other)) => p.add(
                        field,
                        format!(
                            "{a} is also used by {other} ({b}); each listener needs a port of its own"
                        ),
                    ),
                    None => bound.push((a, field)),
                },
            }
        }
        if l.c2s.is_none() && l.c2s_direct_tls.is_none() {
            p.add(
                "listeners",
                "c2s and c2s_direct_tls are both off, clients could not connect",
            );
        }
        let socket = self.admin_socket_path();
        if socket.as_os_str().len() > MAX_SOCKET_PATH_BYTES {
            p.add(
                "listeners.admin_socket",
                format!(
                    "{} is longer than the {MAX_SOCKET_PATH_BYTES} bytes a unix socket path may have",
                    socket.display()
                ),
            );
        }
    }

    fn check_tls(&self, p: &mut Problems) {
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => p.add("tls.key", "must be given with tls.cert"),
            (None, Some(_)) => p.add("tls.cert", "must be given with tls.key"),
            _ => {}
        }
        for (field, path) in [("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)] {
            let Some(path) = path else { continue };
            if let Err(e) = check_readable(path) {
                p.add(field, format!("cannot read {}: {e}", path.display()));
            }
        }
    }

    fn check_limits(&self, p: &mut Problems) {
        let l = &self.limits;
        if !(MIN_STANZA_BYTES..=MAX_STANZA_BYTES).contains(&l.max_stanza_bytes) {
            p.add(
                "limits.max_stanza_bytes",
                format!(
                    "is {}, must be {MIN_STANZA_BYTES} (RFC 6120 §13.12) to {MAX_STANZA_BYTES}",
                    l.max_stanza_bytes
                ),
            );
        }
        p.at_least("limits.max_depth", l.max_depth, MIN_DEPTH);
        p.at_least("limits.max_attrs", l.max_attrs, MIN_ATTRS);
        if l.read_rate_bytes_per_sec > 0 && l.read_burst_bytes == 0 {
            p.add(
                "limits.read_burst_bytes",
                "must be at least 1 when limits.read_rate_bytes_per_sec is set",
            );
        }
        p.at_least("limits.max_connections", l.max_connections, 1);
        p.at_least("limits.max_connections_per_ip", l.max_connections_per_ip, 1);
        if l.max_connections_per_ip > l.max_connections {
            p.add(
                "limits.max_connections_per_ip",
                format!(
                    "is {}, more than limits.max_connections ({})",
                    l.max_connections_per_ip, l.max_connections
                ),
            );
        }
        for (field, secs) in [
            ("limits.handshake_timeout_secs", l.handshake_timeout_secs),
            ("limits.idle_timeout_secs", l.idle_timeout_secs),
            ("limits.ping_timeout_secs", l.ping_timeout_secs),
            ("limits.write_timeout_secs", l.write_timeout_secs),
        ] {
            if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
                p.add(field, format!("is {secs}, must be 1 to {MAX_TIMEOUT_SECS}"));
            }
        }
        p.at_least("limits.outbound_queue", l.outbound_queue, 1);
        if l.stanza_rate_per_sec > 0 && l.stanza_burst == 0 {
            p.add(
                "limits.stanza_burst",
                "must be at least 1 when limits.stanza_rate_per_sec is set",
            );
        }
        p.at_least("limits.max_roster_items", l.max_roster_items, 1);
        p.at_least("limits.max_vcard_bytes", l.max_vcard_bytes, MIN_VCARD_BYTES);
        if l.login_max_delay_secs < l.login_delay_secs
            || l.login_max_delay_secs > MAX_LOGIN_DELAY_SECS
        {
            p.add(
                "limits.login_max_delay_secs",
                format!(
                    "is {}, must be limits.login_delay_secs ({}) to {MAX_LOGIN_DELAY_SECS}",
                    l.login_max_delay_secs, l.login_delay_secs
                ),
            );
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&l.login_forget_secs) {
            p.add(
                "limits.login_forget_secs",
                format!(
                    "is {}, must be 1 to {MAX_TIMEOUT_SECS}",
                    l.login_forget_secs
                ),
            );
        }
    }
}

fn check_readable(path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(())
}

/// The levels a `log.level` directive may name.
const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// `log.level` must be an EnvFilter whose every directive names a real
/// level: EnvFilter reads a lone unknown word such as `warning` as a
/// target name with no level, which turns every other log off.
fn check_log_level(level: &str, p: &mut Problems) {
    if level.trim().is_empty() {
        p.add("log.level", "must not be empty, e.g. \"info\"");
        return;
    }
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        // `target=level`, `target[span{field=value}]=level` or `level`:
        // the level follows the last '=' that is outside brackets.
        let named = match directive.rsplit_once('=') {
            Some((_, lvl)) if !lvl.contains([']', '}']) => lvl.trim(),
            _ => directive,
        };
        if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(named)) {
            p.add(
                "log.level",
                format!(
                    "{named:?} is not a log level; use one of {}, alone or per target as in \"info,node=debug\"",
                    LOG_LEVELS.join(", ")
                ),
            );
            return;
        }
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
        p.add("log.level", format!("{level:?} is not a log filter: {e}"));
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.to_string(),
            message: message.into(),
            line: None,
        });
    }

    fn at_least(&mut self, field: &str, value: usize, min: usize) {
        if value < min {
            self.add(field, format!("is {value}, must be at least {min}"));
        }
    }
}

/// A listener address: a `"host:port"` string, or `false` for off (TOML
/// has no null, and a left-out key means the default).
mod listener_addr {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(a) => s.serialize_str(a),
            None => s.serialize_bool(false),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(AddrVisitor)
    }

    struct AddrVisitor;

    impl Visitor<'_> for AddrVisitor {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an address such as \"0.0.0.0:5222\", or false to turn the listener off")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            if v {
                Err(E::invalid_value(de::Unexpected::Bool(true), &self))
            } else {
                Ok(None)
            }
        }
    }
}

/// A listener that is off unless given: `true` is its usual address.
macro_rules! optional_listener {
    ($name:ident, $usual:expr) => {
        mod $name {
            use serde::{Deserialize, Deserializer, Serializer};

            pub fn serialize<S: Serializer>(
                addr: &Option<String>,
                s: S,
            ) -> Result<S::Ok, S::Error> {
                super::listener_addr::serialize(addr, s)
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(
                d: D,
            ) -> Result<Option<String>, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Given {
                    On(bool),
                    At(String),
                }
                Ok(match Given::deserialize(d)? {
                    Given::On(true) => Some($usual.to_string()),
                    Given::On(false) => None,
                    Given::At(a) => Some(a),
                })
            }
        }
    };
}

optional_listener!(websocket_addr, "127.0.0.1:5280");
optional_listener!(websocket_tls_addr, "0.0.0.0:5443");

/// `[csi]`: what a connection holds back while its client says it is
/// inactive (XEP-0352).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsiConfig {
    /// Stanzas held before they are written anyway. Default 500.
    pub max_held: usize,
    /// Chat states (typing notifications) without a body are written at
    /// once rather than held. Default false.
    pub chat_states_urgent: bool,
}

impl Default for CsiConfig {
    fn default() -> CsiConfig {
        CsiConfig {
            max_held: 500,
            chat_states_urgent: false,
        }
    }
}

/// `[sm]`: stream management (XEP-0198): acknowledgements both ways, and
/// sessions that outlive their connection so that a client resumes them
/// (on any edge of a cluster) with nothing lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmConfig {
    /// Offered to clients. Default true.
    pub enabled: bool,
    /// Longest wait for a client to resume its session, in seconds (a
    /// client may ask for less). 0: no resumption. Default 300.
    pub resume_timeout_secs: u64,
    /// Stanzas sent and not acknowledged after which the client is told
    /// to close (a resumable session keeps them for its resumption).
    /// Default 1000.
    pub max_unacked: usize,
    /// The server asks for an acknowledgement (`<r/>`) after this many
    /// stanzas sent (and when the connection is idle). Default 5.
    pub request_every: u32,
    /// Where clients should resume (`host:port`), given in `<enabled/>`
    /// as `location`; unset: anywhere (the name they connected to).
    pub location: Option<String>,
}

impl Default for SmConfig {
    fn default() -> SmConfig {
        SmConfig {
            enabled: true,
            resume_timeout_secs: 300,
            max_unacked: 1000,
            request_every: 5,
            location: None,
        }
    }
}

/// `[websocket]`: XMPP over WebSocket (RFC 7395).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Browser origins allowed to connect (the `Origin` header, e.g.
    /// `"https://chat.example.org"`); empty: any.
    pub origins: Vec<String>,
    /// The URL clients use to reach the WebSocket endpoint, announced in
    /// `/.well-known/host-meta` (XEP-0156), e.g.
    /// `"wss://chat.example.org/xmpp-websocket"` behind a proxy. Unset:
    /// made of the request's `Host` and the listener's scheme.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Where a draining edge sends its WebSocket clients: the
    /// `see-other-uri` of its `<close/>` (RFC 7395 §3.6.1), e.g.
    /// `"wss://other.example.org/xmpp-websocket"`. Unset: they get
    /// `system-shutdown` and reconnect (to another edge behind the name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub see_other_uri: Option<String>,
}

/// `[bosh]`: XMPP over BOSH (XEP-0124, XEP-0206) at `/http-bind`, on the
/// WebSocket listeners (`listeners.websocket`, `listeners.websocket_tls`),
/// from the browser origins of `websocket.origins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BoshConfig {
    /// Serve `/http-bind` on the WebSocket listeners. Default `true`.
    pub enabled: bool,
    /// Longest time a request is held before an empty answer (a client
    /// asking for a longer `wait` gets this), 1 to 3600. Default 60.
    pub max_wait_secs: u64,
    /// Time without a request after which a session is over (its
    /// presence goes unavailable), 1 to 86400. Default 60; polling
    /// sessions get twice `polling_secs` more.
    pub inactivity_secs: u64,
    /// Shortest interval between two empty requests of a polling session
    /// (hold or wait 0), 0 to 3600. Default 2.
    pub polling_secs: u64,
    /// Most requests held at once (a client asking for more gets this), 0
    /// to 8. Default 1.
    pub max_hold: u64,
    /// Longest pause a client may ask for (XEP-0124 §10), 0 to 86400; 0:
    /// no pauses. Default 120.
    pub max_pause_secs: u64,
    /// Largest request body in bytes, 1024 to 16 MiB. Default 270336
    /// (the largest stanza and room for the wrapper). Larger: the session
    /// ends with `policy-violation`.
    pub max_body_bytes: usize,
    /// The BOSH URL announced in `/.well-known/host-meta` (XEP-0156), e.g.
    /// `"https://chat.example.org/http-bind"` behind a proxy. Unset: the
    /// request's `Host` with http:// (https:// on `websocket_tls`, or when
    /// the proxy says `X-Forwarded-Proto: https`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl Default for BoshConfig {
    fn default() -> BoshConfig {
        BoshConfig {
            enabled: true,
            max_wait_secs: 60,
            inactivity_secs: 60,
            polling_secs: 2,
            max_hold: 1,
            max_pause_secs: 120,
            max_body_bytes: 264 * 1024,
            public_url: None,
        }
    }
}

impl BoshConfig {
    fn check(&self, p: &mut Problems) {
        for (field, v, lo, hi) in [
            ("bosh.max_wait_secs", self.max_wait_secs, 1, 3600),
            (
                "bosh.inactivity_secs",
                self.inactivity_secs,
                1,
                MAX_TIMEOUT_SECS,
            ),
            ("bosh.polling_secs", self.polling_secs, 0, 3600),
            ("bosh.max_hold", self.max_hold, 0, 8),
            (
                "bosh.max_pause_secs",
                self.max_pause_secs,
                0,
                MAX_TIMEOUT_SECS,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                p.add(field, format!("is {v}, must be {lo} to {hi}"));
            }
        }
        if !(1024..=16 << 20).contains(&self.max_body_bytes) {
            p.add(
                "bosh.max_body_bytes",
                format!("is {}, must be 1024 to {}", self.max_body_bytes, 16 << 20),
            );
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            p.add(
                "bosh.public_url",
                format!("{u:?} is not an http:// or https:// URL"),
            );
        }
    }

    /// What the BOSH endpoint runs with.
    pub fn settings(&self) -> crate::bosh::BoshSettings {
        use std::time::Duration;
        crate::bosh::BoshSettings {
            max_wait: Duration::from_secs(self.max_wait_secs),
            inactivity: Duration::from_secs(self.inactivity_secs),
            polling: Duration::from_secs(self.polling_secs),
            max_hold: self.max_hold as usize,
            max_pause: Duration::from_secs(self.max_pause_secs),
            max_body_bytes: self.max_body_bytes,
            public_url: self.public_url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../xmppd.example.toml");

    fn problems(cfg: &Config) -> Vec<String> {
        match cfg.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.problems().iter().map(Problem::to_string).collect(),
        }
    }

    /// The one problem of `cfg`, which must be about `field`.
    fn only_problem(cfg: &Config, field: &str) -> String {
        let p = problems(cfg);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].starts_with(&format!("{field}: ")), "{p:#?}");
        p[0].clone()
    }

    #[test]
    fn defaults_round_trip_and_validate() {
        let def = Config::default();
        def.validate().expect("defaults are valid");
        let text = toml::to_string(&def).expect("serialize");
        assert_eq!(Config::from_toml(&text).expect("parse"), def);
        assert_eq!(Config::from_toml("").expect("empty file"), def);
    }

    #[test]
    fn cluster_roles_need_their_addresses() {
        let mut c = Config::default();
        c.cluster.role = Role::Edge;
        only_problem(&c, "cluster.core");
        c.cluster.core = Some("core example:7000".into());
        only_problem(&c, "cluster.core");
        c.cluster.core = Some("xmppd-core.prod.svc:7000".into());
        assert!(problems(&c).is_empty());
        c.cluster.core = Some("127.0.0.1:7000".into());
        assert!(problems(&c).is_empty());
        c.cluster.node_id = NodeId::Id(0);
        only_problem(&c, "cluster.node_id");
        let mut c = Config::default();
        c.cluster.role = Role::Core;
        c.cluster.listen = "nowhere".into();
        only_problem(&c, "cluster.listen");
        let parsed =
            Config::from_toml("[cluster]\nrole = \"edge\"\nnode_id = 7\ncore = \"127.0.0.1:1\"\n")
                .expect("parses");
        assert_eq!(parsed.cluster.role, Role::Edge);
        assert!(Config::from_toml("[cluster]\nrole = \"leader\"\n").is_err());
    }

    #[test]
    fn node_ids_are_numbers_ordinals_or_drawn() {
        // Parsed only: resolving "ordinal" needs a pod's host name.
        let c = |t: &str| toml::from_str::<Config>(&format!("[cluster]\n{t}\n"));
        assert_eq!(
            c("node_id = 7").map(|c| c.cluster.node_id).ok(),
            Some(NodeId::Id(7))
        );
        assert_eq!(
            c("node_id = \"ordinal\"").map(|c| c.cluster.node_id).ok(),
            Some(NodeId::Ordinal)
        );
        let e = c("node_id = \"seven\"").expect_err("a word");
        assert!(e.to_string().contains("\"ordinal\" or \"auto\""), "{e}");
        assert!(c("node_id = -1").is_err());
        assert_eq!(ordinal_of("xmppd-core-12"), Some(12));
        for bad in ["xmppd-core", "core-", "core-x1", "vm", "a-123456"] {
            assert_eq!(ordinal_of(bad), None, "{bad}");
        }
        // Drawn ids stay clear of the small ones cores are given.
        let mut edge = Config::default();
        edge.cluster.role = Role::Edge;
        edge.cluster.core = Some("xmppd-core:7000".into());
        edge.cluster.node_id = NodeId::Auto;
        assert!(problems(&edge).is_empty(), "{:?}", problems(&edge));
        for _ in 0..100 {
            let id = edge.cluster.resolve_node_id().expect("drawn");
            assert!((1024..=65_535).contains(&id), "{id}");
        }
        let mut core = Config::default();
        core.cluster.node_id = NodeId::Auto;
        only_problem(&core, "cluster.node_id");
    }

    /// Every bad peer is reported, each with why; the same place written
    /// twice (case, a final dot, leading zeros in the port) is caught.
    #[test]
    fn every_bad_peer_is_reported_with_why() {
        let mut c = Config::default();
        c.cluster.role = Role::Core;
        c.cluster.node_id = NodeId::Id(1);
        c.cluster.peers = vec![
            "1=127.0.0.1:7000".into(),
            "2=-a.b:7000".into(),
            "3=999.0.0.1:7000".into(),
            "4=127.0.0.1:0".into(),
        ];
        let p = problems(&c);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].contains("cluster.peers[1]") && p[0].contains("starts or ends with '-'"),
            "{p:?}"
        );
        assert!(
            p[1].contains("cluster.peers[2]") && p[1].contains("neither an IPv4 address"),
            "{p:?}"
        );
        assert!(
            p[2].contains("cluster.peers[3]") && p[2].contains("port 0"),
            "{p:?}"
        );
        for twice in [
            ["1=a.b.:7000", "2=a.b:7000"],
            ["1=LOCALHOST:7000", "2=localhost:7000"],
            ["1=a.b:07000", "2=a.b:7000"],
        ] {
            c.cluster.peers = twice.iter().map(|s| s.to_string()).collect();
            let p = only_problem(&c, "cluster.peers[1]");
            assert!(p.contains("listed for node 1 too"), "{p}");
        }
        assert_eq!(
            without_final_dot("other.example.org.:5222"),
            "other.example.org:5222"
        );
        assert_eq!(without_final_dot("other.example.org."), "other.example.org");
        assert_eq!(without_final_dot("[::1]:5222"), "[::1]:5222");
        let mut t = Config::default();
        t.tracing.otlp_endpoint = Some("http://collector:4318".into());
        assert!(problems(&t).is_empty());
        assert!(t.notes()[0].contains("OTLP/HTTP"), "{:?}", t.notes());
    }

    #[test]
    fn cluster_addresses_may_be_host_names() {
        for ok in [
            "127.0.0.1:7000",
            "[::1]:7000",
            "xmppd-core-0.xmppd-core:7000",
            "core:1",
            "xmppd-core.default.svc.cluster.local.:7000",
            "3com.example:7000",
            "a-b.c1:65535",
        ] {
            assert!(check_host_port(ok).is_ok(), "{ok}");
        }
        for bad in [
            "core",
            "core:0",
            "core:x",
            ":7000",
            "a b:7000",
            "a..b:7000",
            "a/b:7000",
            "127.0.0.1:0",
            "[::1]:0",
            "0.0.0.0:7000",
            "[::]:7000",
            "core:+7000",
            "127.0.0.1:+7000",
            "core:70000",
            "999.1.1.1:7000",
            "10.0.0:7000",
            "-bad-.example:7000",
            "bad-.example:7000",
            "core.:7000:1",
            "[::1:7000",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
        let mut c = Config::default();
        c.cluster.role = Role::Core;
        c.cluster.node_id = NodeId::Id(4);
        c.cluster.peers = vec!["1=xmppd-core-0.xmppd-core:7000".into()];
        only_problem(&c, "cluster.peers");
        c.cluster.auto_join = true;
        c.cluster.advertise = Some("{hostname}.xmppd-core:7000".into());
        // The placeholder stands for this host's name.
        let host = host_name().unwrap_or_default();
        assert_eq!(
            c.cluster.advertised(),
            Some(format!("{host}.xmppd-core:7000"))
        );
        if check_host_port(&format!("{host}.xmppd-core:7000")).is_ok() {
            assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        }
        c.cluster.role = Role::Both;
        c.cluster.peers.clear();
        let p = problems(&c);
        assert!(
            p.iter().any(|p| p.starts_with("cluster.auto_join")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.starts_with("cluster.advertise")),
            "{p:?}"
        );
    }

    #[test]
    fn the_admin_token_file_is_read_by_the_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Config::default();
        c.admin.token_file = Some(dir.path().join("missing"));
        let p = only_problem(&c, "admin.token_file");
        assert!(p.contains("cannot read"), "{p}");
        for (text, why) in [
            ("short\n", "at least 16"),
            ("with a space 0123456789\n", "printable"),
        ] {
            let f = dir.path().join("token");
            std::fs::write(&f, text).expect("token");
            c.admin.token_file = Some(f);
            let p = only_problem(&c, "admin.token_file");
            assert!(p.contains(why), "{p}");
        }
        std::fs::write(dir.path().join("token"), "0123456789abcdef\n").expect("token");
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
    }

    #[test]
    fn example_file_documents_the_defaults() {
        let cfg = Config::from_toml(EXAMPLE).expect("example is valid");
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let e = Config::from_toml("[limits]\nmax_stanza_byte = 5\n").expect_err("typo");
        let msg = e.to_string();
        assert!(
            msg.starts_with("line 2: limits.max_stanza_byte: unknown field"),
            "{msg}"
        );
        let e = Config::from_toml("domain = [\"a.example\"]\n").expect_err("typo");
        assert!(e.to_string().contains("domain"), "{e}");
        // Several are listed in the order of the file.
        let e = Config::from_toml("[limits]\nfirst_typo = 1\nsecond_typo = 2\n[log]\nthird = 3\n")
            .expect_err("typos");
        let lines: Vec<u32> = e
            .problems()
            .iter()
            .filter_map(|p| p.line.map(|l| l as u32))
            .collect();
        assert_eq!(lines, [2, 3, 5], "{e}");
    }

    /// A table given a value says a table is expected, in the file's
    /// words, not the code's (`TracingConfig`).
    #[test]
    fn a_value_where_a_table_belongs_names_no_rust_type() {
        let msg = Config::from_toml("tracing = \"on\"\n")
            .expect_err("not a table")
            .to_string();
        assert!(msg.contains("expected a table"), "{msg}");
        assert!(!msg.contains("struct") && !msg.contains("Config"), "{msg}");
        for (text, want) in [
            (
                "[limits]\nmax_depth = \"deep\"\n",
                "expected a whole number, 0 or more",
            ),
            (
                "[limits]\nmax_stanza_bytes = -1\n",
                "expected a whole number, 0 or more",
            ),
            ("[tracing]\nsample_ratio = \"0.5\"\n", "expected a number"),
        ] {
            let msg = Config::from_toml(text).expect_err("wrong type").to_string();
            assert!(msg.contains(want), "{msg}");
            assert!(!msg.contains("usize") && !msg.contains("f64"), "{msg}");
        }
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let msg = Config::from_toml("domains = [\"a\"\n[tls]\n")
            .expect_err("bad")
            .to_string();
        assert!(msg.contains("line 2: TOML syntax: "), "{msg}");
    }

    #[test]
    fn listener_can_be_turned_off_and_round_trips() {
        let cfg = Config::from_toml("[listeners]\nc2s_direct_tls = false\n").expect("valid");
        assert_eq!(cfg.listeners.c2s_direct_tls, None);
        assert_eq!(cfg.listeners.c2s_addr(), "0.0.0.0:5222".parse().ok());
        let text = toml::to_string(&cfg).expect("serialize");
        assert_eq!(Config::from_toml(&text).expect("parse"), cfg);
        let e = Config::from_toml("[listeners]\nc2s = true\n").expect_err("true");
        assert!(
            e.to_string().contains("false to turn the listener off"),
            "{e}"
        );
    }

    #[test]
    fn domains_are_required_canonical_and_unique() {
        let mut cfg = Config {
            domains: vec![],
            ..Config::default()
        };
        only_problem(&cfg, "domains");
        cfg.domains = vec!["Example.COM".into()];
        let p = only_problem(&cfg, "domains[0]");
        assert!(p.contains("\"example.com\""), "{p}");
        cfg.domains = vec!["a..b".into()];
        only_problem(&cfg, "domains[0]");
        cfg.domains = vec!["a.example".into(), "b.example".into(), "a.example".into()];
        let p = only_problem(&cfg, "domains[2]");
        assert!(p.contains("more than once"), "{p}");
        cfg.domains = vec!["a.example".into(), "127.0.0.1".into(), "[::1]".into()];
        assert_eq!(problems(&cfg), Vec::<String>::new());
    }

    #[test]
    fn listener_addresses_parse_and_differ() {
        let mut cfg = Config::default();
        cfg.listeners.c2s = Some("localhost:5222".into());
        only_problem(&cfg, "listeners.c2s");
        cfg.listeners.c2s = Some("0.0.0.0:5223".into());
        let p = only_problem(&cfg, "listeners.c2s_direct_tls");
        assert!(p.contains("listeners.c2s"), "{p}");
        cfg.listeners.c2s = Some("127.0.0.1:0".into());
        cfg.listeners.c2s_direct_tls = Some("127.0.0.1:0".into());
        assert_eq!(problems(&cfg), Vec::<String>::new());
        cfg.listeners.c2s = None;
        cfg.listeners.c2s_direct_tls = None;
        only_problem(&cfg, "listeners");
    }

    /// A wildcard address covers the specific ones of its family (and
    /// `[::]` both families), so the HTTP listener on 127.0.0.1:5222
    /// clashes with c2s on 0.0.0.0:5222; a core node binds its cluster
    /// listener and no client listener.
    #[test]
    fn listeners_that_cannot_all_be_bound_are_refused() {
        let mut cfg = Config::default();
        cfg.listeners.http = Some("127.0.0.1:5222".into());
        let p = only_problem(&cfg, "listeners.http");
        assert!(p.contains("listeners.c2s"), "{p}");
        cfg.listeners.http = Some("[::1]:5222".into());
        assert_eq!(problems(&cfg), Vec::<String>::new());
        cfg.listeners.c2s = Some("[::]:5222".into());
        only_problem(&cfg, "listeners.http");
        cfg.listeners.c2s = Some("0.0.0.0:5222".into());
        cfg.listeners.http = Some("127.0.0.1:9090".into());
        cfg.cluster.role = Role::Core;
        cfg.cluster.listen = "127.0.0.1:9090".into();
        let p = only_problem(&cfg, "cluster.listen");
        assert!(p.contains("listeners.http"), "{p}");
        // A core node does not bind the client ports.
        cfg.cluster.listen = "0.0.0.0:5222".into();
        assert_eq!(problems(&cfg), Vec::<String>::new());
        cfg.cluster.role = Role::Both;
        assert_eq!(problems(&cfg), Vec::<String>::new());
    }

    #[test]
    fn admin_socket_path_defaults_into_data_dir_and_is_bounded() {
        let mut cfg = Config::default();
        assert_eq!(cfg.admin_socket_path(), PathBuf::from("./data/admin.sock"));
        cfg.data_dir = PathBuf::from("/d".repeat(60));
        only_problem(&cfg, "listeners.admin_socket");
        cfg.listeners.admin_socket = Some(PathBuf::from("/run/xmppd.sock"));
        assert_eq!(problems(&cfg), Vec::<String>::new());
        cfg.data_dir = PathBuf::new();
        only_problem(&cfg, "data_dir");
    }

    #[test]
    fn cert_and_key_go_together_and_must_be_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "x").expect("write");
        let mut cfg = Config::default();
        cfg.tls.cert = Some(cert.clone());
        only_problem(&cfg, "tls.key");
        cfg.tls = TlsConfig {
            key: Some(cert.clone()),
            ..TlsConfig::default()
        };
        only_problem(&cfg, "tls.cert");
        cfg.tls.cert = Some(dir.path().join("missing.pem"));
        let p = only_problem(&cfg, "tls.cert");
        assert!(p.contains("missing.pem"), "{p}");
        cfg.tls.cert = Some(dir.path().to_path_buf());
        only_problem(&cfg, "tls.cert");
        cfg.tls.cert = Some(cert);
        assert_eq!(problems(&cfg), Vec::<String>::new());
    }

    #[test]
    fn limits_must_be_sane() {
        let field_of = |f: fn(&mut LimitsConfig)| {
            let mut cfg = Config::default();
            f(&mut cfg.limits);
            problems(&cfg)
        };
        type Case = (fn(&mut LimitsConfig), &'static str);
        let cases: [Case; 12] = [
            (|l| l.max_stanza_bytes = 9_999, "limits.max_stanza_bytes"),
            (|l| l.max_depth = 3, "limits.max_depth"),
            (|l| l.max_attrs = 0, "limits.max_attrs"),
            (|l| l.read_burst_bytes = 0, "limits.read_burst_bytes"),
            (
                |l| l.max_connections_per_ip = 0,
                "limits.max_connections_per_ip",
            ),
            (|l| l.max_connections = 10, "limits.max_connections_per_ip"),
            (
                |l| l.handshake_timeout_secs = 0,
                "limits.handshake_timeout_secs",
            ),
            (|l| l.idle_timeout_secs = 0, "limits.idle_timeout_secs"),
            (|l| l.ping_timeout_secs = 0, "limits.ping_timeout_secs"),
            (
                |l| l.ping_timeout_secs = u64::MAX,
                "limits.ping_timeout_secs",
            ),
            (|l| l.outbound_queue = 0, "limits.outbound_queue"),
            (
                |l| l.max_stanza_bytes = usize::MAX,
                "limits.max_stanza_bytes",
            ),
        ];
        for (change, field) in cases {
            let p = field_of(change);
            assert_eq!(p.len(), 1, "{field}: {p:#?}");
            assert!(p[0].starts_with(&format!("{field}: ")), "{p:#?}");
        }
        // 0 = unlimited rate, and then the burst does not matter.
        assert!(
            field_of(|l| {
                l.read_rate_bytes_per_sec = 0;
                l.read_burst_bytes = 0;
            })
            .is_empty()
        );
        assert_eq!(
            field_of(|l| l.max_stanza_bytes = 10_000),
            Vec::<String>::new()
        );
    }

    #[test]
    fn registration_offline_and_log_are_checked() {
        let mut cfg = Config::default();
        cfg.registration.min_password_len = 1024;
        only_problem(&cfg, "registration.min_password_len");
        cfg.registration.min_password_len = 0;
        only_problem(&cfg, "registration.min_password_len");
        cfg.registration.min_password_len = 1023;
        cfg.offline.max_per_user = 0;
        only_problem(&cfg, "offline.max_per_user");
        cfg.offline.max_per_user = 1;
        cfg.log.level = "info,node=loud".into();
        only_problem(&cfg, "log.level");
        cfg.log.level = " ".into();
        only_problem(&cfg, "log.level");
        cfg.log.level = "warn,node=debug".into();
        assert_eq!(problems(&cfg), Vec::<String>::new());
        for ok in ["off", "INFO", "info,openraft=warn", "node::conn=trace,info"] {
            cfg.log.level = ok.into();
            assert_eq!(problems(&cfg), Vec::<String>::new(), "{ok}");
        }
    }

    #[test]
    fn tracing_needs_a_plain_endpoint_and_a_ratio_from_0_to_1() {
        let mut cfg = Config::default();
        for ok in [
            "http://127.0.0.1:4317",
            "http://otel-collector.observability.svc:4317/",
            "http://[::1]:4317",
        ] {
            cfg.tracing.otlp_endpoint = Some(ok.into());
            assert_eq!(problems(&cfg), Vec::<String>::new(), "{ok}");
        }
        for bad in [
            "https://collector:4317",
            "collector:4317",
            "http://collector",
            "http://collector:4317/v1/traces",
            "http://a b:4317",
            "http://collector:0",
        ] {
            cfg.tracing.otlp_endpoint = Some(bad.into());
            only_problem(&cfg, "tracing.otlp_endpoint");
        }
        cfg.tracing.otlp_endpoint = None;
        for r in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            cfg.tracing.sample_ratio = Some(Ratio(r));
            only_problem(&cfg, "tracing.sample_ratio");
        }
        cfg.tracing.sample_ratio = Some(Ratio(1e308));
        assert_eq!(
            problems(&cfg),
            ["tracing.sample_ratio: is 1e308, must be 0 to 1"]
        );
        for r in [0.0, 0.25, 1.0] {
            cfg.tracing.sample_ratio = Some(Ratio(r));
            assert_eq!(problems(&cfg), Vec::<String>::new(), "{r}");
        }
        // An integer is taken as the number it is.
        let cfg = Config::from_toml(
            "[tracing]\notlp_endpoint = \"http://127.0.0.1:4317\"\nsample_ratio = 1\n",
        )
        .expect("valid");
        assert_eq!(cfg.tracing.sample_ratio, Some(Ratio(1.0)));
        assert!(cfg.notes().is_empty());
        assert_eq!(Config::default().tracing.ratio(), 0.1);
        // A ratio with no endpoint traces nothing: said, but not refused
        // (an operator may have commented the endpoint out).
        let cfg = Config::from_toml("[tracing]\nsample_ratio = 0.5\n").expect("valid");
        assert_eq!(cfg.notes().len(), 1);
        assert!(cfg.notes()[0].starts_with("tracing.sample_ratio"));
    }

    #[test]
    fn muc_services_and_limits_are_checked() {
        let mut cfg = Config::default();
        for (domain, service, why) in [
            (
                "elsewhere.org",
                "rooms.elsewhere.org",
                "not one of the domains",
            ),
            ("localhost", "localhost", "a served domain"),
            ("localhost", "pubsub.localhost", "PubSub"),
            ("localhost", "a@b", "not a domain name"),
        ] {
            cfg.muc.services = [(domain.to_string(), service.to_string())].into();
            let p = only_problem(&cfg, "muc.services");
            assert!(p.contains(why), "{p}");
        }
        cfg.muc.services = [("localhost".to_string(), "rooms.localhost".to_string())].into();
        assert!(problems(&cfg).is_empty());
        let core = cfg.muc.to_core();
        let rc = router::config::CoreConfig {
            muc: core,
            ..Default::default()
        };
        assert_eq!(
            rc.muc_service("localhost").as_deref(),
            Some("rooms.localhost")
        );
        assert!(rc.is_muc_service("rooms.localhost"));
        assert!(!rc.is_muc_service("conference.localhost"));
        for (field, set) in [
            (
                "muc.max_occupants",
                (|c: &mut Config| c.muc.max_occupants = 0) as fn(&mut Config),
            ),
            ("muc.max_history", |c: &mut Config| c.muc.max_history = 1001),
            ("muc.max_nick_bytes", |c: &mut Config| {
                c.muc.max_nick_bytes = 1024
            }),
            ("muc.max_rooms_per_user", |c: &mut Config| {
                c.muc.max_rooms_per_user = 0
            }),
        ] {
            let mut c = Config::default();
            set(&mut c);
            only_problem(&c, field);
        }
    }

    /// An item as large as a stanza could never get payload-too-big: the
    /// stream would end first (new-user review). The limit in force leaves
    /// room for the publish around the item.
    #[test]
    fn an_item_fits_in_a_stanza() {
        let mut cfg = Config::default();
        assert!(cfg.item_limit() + PUBLISH_OVERHEAD <= cfg.limits.max_stanza_bytes);
        cfg.pubsub.max_item_bytes = cfg.limits.max_stanza_bytes;
        assert_eq!(
            cfg.item_limit(),
            cfg.limits.max_stanza_bytes - PUBLISH_OVERHEAD
        );
        cfg.pubsub.max_item_bytes = 1000;
        assert_eq!(cfg.item_limit(), 1000);
    }

    /// EnvFilter took `warning` for a target name: the level check passed
    /// and the server then logged nothing.
    #[test]
    fn unknown_log_level_word_silenced_the_server() {
        let mut cfg = Config::default();
        for bad in ["warning", "info,node=warning", "node", "info,verbose"] {
            cfg.log.level = bad.into();
            let p = only_problem(&cfg, "log.level");
            assert!(p.contains("error, warn, info, debug, trace, off"), "{p}");
        }
    }

    #[test]
    fn all_problems_are_reported_together() {
        let text = r#"
            domains = ["Upper.Example", "ok.example", "ok.example"]
            [listeners]
            c2s = "nowhere"
            [tls]
            cert = "/nonexistent/cert.pem"
            [limits]
            max_depth = 1
            max_stanza_bytes = 100
        "#;
        let e = Config::from_toml(text).expect_err("invalid");
        let fields: Vec<&str> = e.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "domains[0]",
                "domains[2]",
                "listeners.c2s",
                "tls.key",
                "tls.cert",
                "limits.max_depth",
                "limits.max_stanza_bytes",
            ]
        );
        let shown = e.to_string();
        assert_eq!(shown.lines().count(), 7, "{shown}");
        assert!(
            shown
                .lines()
                .all(|l| l.contains(": ") && !l.starts_with(' '))
        );
    }

    #[test]
    fn load_reads_a_file_and_names_it_when_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("xmppd.toml");
        std::fs::write(&path, "domains = [\"chat.example\"]\n").expect("write");
        let cfg = Config::load(&path).expect("load");
        assert_eq!(cfg.domains, ["chat.example"]);
        let missing = dir.path().join("nope.toml");
        let e = Config::load(&missing).expect_err("missing");
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }
}
