//! The node's Prometheus metrics. Counters on the connection paths are
//! resolved to their label values once, here, so that counting a stanza is
//! one atomic add; what is cheaper to read than to keep (sessions, the
//! shards' Raft state, the process's CPU and memory) is read at scrape
//! time. Names follow Prometheus conventions: an `xmppd_` prefix, base
//! units in the name, `_total` on counters.

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use proto::stanza::Kind;

/// Bucket bounds of the routing latency, in seconds.
const ROUTING_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Which client listener a connection came through.
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    StartTls,
    DirectTls,
    /// RFC 7395, plain (for a TLS proxy in front).
    WebSocket,
    /// XEP-0124/XEP-0206 sessions, on the WebSocket listeners.
    Bosh,
    /// RFC 7395 with TLS (wss).
    WebSocketTls,
}

pub struct Metrics {
    registry: Registry,
    connections: [IntGauge; 5],
    accepted: [IntCounter; 5],
    pub refused: IntCounter,
    received: [IntCounter; 3],
    pub stanzas_sent: IntCounter,
    /// From the edge reading a stanza to an edge writing what it caused.
    pub routing_latency: prometheus::Histogram,
    /// Exports of spans to the OTLP collector that failed, and the spans
    /// they carried (lost: the SDK does not retry them).
    pub trace_export_failures: IntCounter,
    pub trace_spans_lost: IntCounter,
    /// Spans dropped because the export queue was full.
    pub trace_spans_dropped: IntCounter,
    pub bytes_received: IntCounter,
    pub bytes_sent: IntCounter,
    /// Writes to client connections (a batch of stanzas is one).
    pub writes: IntCounter,
    /// XEP-0352: stanzas held back for inactive clients, and presence
    /// superseded while held (never written).
    pub csi_held: IntCounter,
    pub csi_superseded: IntCounter,
    /// XEP-0198: sessions that enabled stream management, resumptions
    /// made and refused.
    pub sm_enabled: IntCounter,
    /// Server-to-server (federation).
    pub s2s: S2sMetrics,
    pub sm_resumed: IntCounter,
    pub sm_resume_failed: IntCounter,
    /// Messages for a session that ended before they were written, handed
    /// back to the core (the account's other resources or offline).
    pub handed_back: IntCounter,
    pub logins: IntCounter,
    login_failures: IntCounterVec,
    pub registrations: IntCounter,
    pub slow_clients: IntCounter,
    /// Set at scrape time.
    sessions: IntGauge,
    shard_leader: IntGaugeVec,
    shard_applied: IntGaugeVec,
    shard_term: IntGaugeVec,
    shard_apply_lag: IntGaugeVec,
    /// An edge's forward streams to the core nodes (1 open, 0 lost).
    core_link_up: IntGaugeVec,
    shard_queue: IntGaugeVec,
    edge_queue: IntGaugeVec,
    offline_keys: IntGauge,
    offline_bytes: IntGauge,
    rocksdb: RocksGauges,
    process: ProcessGauges,
}

/// RocksDB's figures, read at scrape time (nodes with a store).
struct RocksGauges {
    live_sst: IntGauge,
    memtables: IntGauge,
    pending_compaction: IntGauge,
    running_compactions: IntGauge,
    write_stopped: IntGauge,
    delayed_write_rate: IntGauge,
}

struct ProcessGauges {
    /// A counter moved up to the process's CPU time at each scrape; the
    /// lock keeps two scrapes from adding the same time twice.
    cpu: std::sync::Mutex<prometheus::Counter>,
    rss: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
}

/// Registers a metric. The names and labels are constants that
/// Prometheus accepts and are distinct, so construction and registration
/// cannot fail short of a bug in this file, which the unit test below
/// would show.
fn reg<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    if let Err(e) = r.register(Box::new(m.clone())) {
        tracing::error!(error = %e, "a metric could not be registered");
    }
    m
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(
        r,
        IntCounter::new(name, help).expect("constant metric name"),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(r, IntGauge::new(name, help).expect("constant metric name"))
}

fn float_gauge(r: &Registry, name: &str, help: &str) -> prometheus::Gauge {
    reg(
        r,
        prometheus::Gauge::new(name, help).expect("constant metric name"),
    )
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("constant metric name"),
    )
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("constant metric name"),
    )
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let conns = gauge_vec(
            &r,
            "xmppd_client_connections",
            "Client connections open now, by listener.",
            &["listener"],
        );
        let accepted = counter_vec(
            &r,
            "xmppd_client_connections_accepted_total",
            "Client connections accepted, by listener.",
            &["listener"],
        );
        let received = counter_vec(
            &r,
            "xmppd_stanzas_received_total",
            "Stanzas received from clients and handed to the core, by kind.",
            &["kind"],
        );
        let info = gauge_vec(
            &r,
            "xmppd_build_info",
            "The running version (always 1).",
            &["version"],
        );
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let listeners = [
            "c2s",
            "c2s_direct_tls",
            "websocket",
            "bosh",
            "websocket_tls",
        ];
        let kinds = ["message", "presence", "iq"];
        let cpu = reg(
            &r,
            prometheus::Counter::new(
                "process_cpu_seconds_total",
                "User and system CPU time of the process, in seconds.",
            )
            .expect("constant metric name"),
        );
        let start = float_gauge(
            &r,
            "process_start_time_seconds",
            "When the process started, in seconds since the Unix epoch.",
        );
        // The process starts with the node, near enough for restarts.
        start.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
        Metrics {
            connections: listeners.map(|l| conns.with_label_values(&[l])),
            accepted: listeners.map(|l| accepted.with_label_values(&[l])),
            refused: counter(
                &r,
                "xmppd_client_connections_refused_total",
                "Client connections refused at a connection limit.",
            ),
            received: kinds.map(|k| received.with_label_values(&[k])),
            stanzas_sent: counter(
                &r,
                "xmppd_stanzas_sent_total",
                "Stanzas written to clients.",
            ),
            routing_latency: reg(
                &r,
                prometheus::Histogram::with_opts(
                    prometheus::HistogramOpts::new(
                        "xmppd_routing_latency_seconds",
                        "Time from an edge reading a client's stanza to an edge (this one) writing a stanza it caused (the message routed, a reply from the core, a presence broadcast; not what the edge answers alone, such as a ping) to a client, in seconds; across nodes, as far as their clocks agree.",
                    )
                    .buckets(ROUTING_BUCKETS.to_vec()),
                )
                .expect("constant name, help and increasing buckets"),
            ),
            trace_export_failures: counter(
                &r,
                "xmppd_trace_export_failures_total",
                "Batches of trace spans that could not be exported to the OTLP collector (unreachable, refused, timed out).",
            ),
            trace_spans_lost: counter(
                &r,
                "xmppd_trace_spans_lost_total",
                "Trace spans in batches that could not be exported: they are not sent again.",
            ),
            trace_spans_dropped: counter(
                &r,
                "xmppd_trace_spans_dropped_total",
                "Trace spans dropped because the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE).",
            ),
            bytes_received: counter(
                &r,
                "xmppd_client_received_bytes_total",
                "Bytes read from client connections (after TLS).",
            ),
            bytes_sent: counter(
                &r,
                "xmppd_client_sent_bytes_total",
                "Bytes written to client connections (before TLS).",
            ),
            writes: counter(
                &r,
                "xmppd_client_writes_total",
                "Writes to client connections (stanzas queued together go in one write; each is a wake-up of the client's radio).",
            ),
            csi_held: counter(
                &r,
                "xmppd_csi_held_total",
                "Stanzas held back for clients that said they are inactive (XEP-0352), written later together.",
            ),
            csi_superseded: counter(
                &r,
                "xmppd_csi_superseded_total",
                "Presence held for an inactive client and replaced by a newer one of the same resource before it was written (never sent).",
            ),
            s2s: S2sMetrics {
                streams: gauge_vec(
                    &r,
                    "xmppd_s2s_streams",
                    "Server-to-server streams open now, by direction (in, out).",
                    &["direction"],
                ),
                stanzas: counter_vec(
                    &r,
                    "xmppd_s2s_stanzas_total",
                    "Stanzas received from (in) and sent to (out) other servers.",
                    &["direction"],
                ),
                bounced: counter(
                    &r,
                    "xmppd_s2s_bounced_total",
                    "Stanzas for other servers answered with an error because their server could not be reached in time, or too many waited.",
                ),
                auth: counter_vec(
                    &r,
                    "xmppd_s2s_auth_total",
                    "Authentications of server-to-server streams by direction, method (certificate, dialback) and result (ok, failed).",
                    &["direction", "method", "result"],
                ),
                refused: counter_vec(
                    &r,
                    "xmppd_s2s_refused_total",
                    "Inbound server-to-server streams or stanzas refused, by reason.",
                    &["reason"],
                ),
            },
            sm_enabled: counter(
                &r,
                "xmppd_sm_enabled_total",
                "Sessions that enabled stream management (XEP-0198).",
            ),
            sm_resumed: counter(
                &r,
                "xmppd_sm_resumed_total",
                "Sessions resumed (XEP-0198) on a new connection, on this edge.",
            ),
            sm_resume_failed: counter(
                &r,
                "xmppd_sm_resume_failed_total",
                "Resumptions refused (no such session, timed out, or a bad count).",
            ),
            handed_back: counter(
                &r,
                "xmppd_messages_handed_back_total",
                "Messages that reached an edge for a session already gone (without stream management) and were handed back to the core for the account's other resources or offline storage.",
            ),
            logins: counter(&r, "xmppd_logins_total", "Successful SASL authentications."),
            login_failures: {
                let v = counter_vec(
                    &r,
                    "xmppd_login_failures_total",
                    "Failed SASL authentications, by the SASL condition sent (RFC 6120 §6.5) and whether a name and password were checked (checked=\"true\" with not-authorized: a wrong password).",
                    &["reason", "checked"],
                );
                // Present from the start, so that a rate of wrong
                // passwords is defined before the first one.
                v.with_label_values(&["not-authorized", "true"]);
                v
            },
            registrations: counter(
                &r,
                "xmppd_registrations_total",
                "Accounts made by in-band registration (XEP-0077).",
            ),
            slow_clients: counter(
                &r,
                "xmppd_slow_client_disconnects_total",
                "Sessions closed because their outbound queue overflowed or a write timed out.",
            ),
            sessions: gauge(
                &r,
                "xmppd_sessions",
                "Bound sessions held by this node's core (none on an edge-only node).",
            ),
            shard_leader: gauge_vec(
                &r,
                "xmppd_shard_leader",
                "The core node this node's Raft group of each shard follows (0: none, during an election or while this node leads without a majority).",
                &["shard"],
            ),
            shard_applied: gauge_vec(
                &r,
                "xmppd_shard_applied_index",
                "The last Raft log index each shard applied on this node.",
                &["shard"],
            ),
            shard_term: gauge_vec(
                &r,
                "xmppd_shard_term",
                "The Raft term each shard is in on this node.",
                &["shard"],
            ),
            shard_apply_lag: gauge_vec(
                &r,
                "xmppd_shard_apply_lag_entries",
                "Entries of each shard's log on this node not applied yet.",
                &["shard"],
            ),
            core_link_up: gauge_vec(
                &r,
                "xmppd_core_link_up",
                "An edge's gRPC forward stream to each core node: 1 open, 0 lost (edges).",
                &["core"],
            ),
            shard_queue: gauge_vec(
                &r,
                "xmppd_shard_queue_depth",
                "Messages waiting in each shard's queue on this core node (4096 at most; a full queue holds its senders back).",
                &["shard"],
            ),
            edge_queue: gauge_vec(
                &r,
                "xmppd_edge_queue_depth",
                "Deliveries waiting in a core node's queue to each connected edge.",
                &["edge"],
            ),
            offline_keys: gauge(
                &r,
                "xmppd_offline_store_keys",
                "RocksDB's estimate of the offline store's keys: about one per stored message.",
            ),
            offline_bytes: gauge(
                &r,
                "xmppd_offline_store_bytes",
                "Bytes of the offline store's table files and memtables.",
            ),
            rocksdb: RocksGauges {
                live_sst: gauge(
                    &r,
                    "xmppd_rocksdb_size_bytes",
                    "Bytes of RocksDB table files in use (nodes with a store).",
                ),
                memtables: gauge(
                    &r,
                    "xmppd_rocksdb_memtable_bytes",
                    "Bytes of RocksDB memtables.",
                ),
                pending_compaction: gauge(
                    &r,
                    "xmppd_rocksdb_pending_compaction_bytes",
                    "RocksDB's estimate of the bytes compaction must rewrite.",
                ),
                running_compactions: gauge(
                    &r,
                    "xmppd_rocksdb_running_compactions",
                    "RocksDB compactions running now.",
                ),
                write_stopped: gauge(
                    &r,
                    "xmppd_rocksdb_write_stopped",
                    "1 while RocksDB stops writes (a write stall), else 0.",
                ),
                delayed_write_rate: gauge(
                    &r,
                    "xmppd_rocksdb_delayed_write_rate_bytes",
                    "The rate RocksDB slows writes to, in bytes per second; 0 when it does not.",
                ),
            },
            process: ProcessGauges {
                cpu: std::sync::Mutex::new(cpu),
                rss: gauge(
                    &r,
                    "process_resident_memory_bytes",
                    "Resident memory of the process, in bytes.",
                ),
                open_fds: gauge(&r, "process_open_fds", "Open file descriptors."),
                max_fds: gauge(
                    &r,
                    "process_max_fds",
                    "The most file descriptors the process may open.",
                ),
            },
            registry: r,
        }
    }

    /// Add a collector made elsewhere (the core's histograms).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::error!(error = %e, "a metric could not be registered");
        }
    }

    /// Count a connection open until the guard is dropped.
    pub fn open(self: &std::sync::Arc<Self>, l: Listener) -> OpenConnection {
        self.connection_opened(l);
        OpenConnection {
            metrics: self.clone(),
            listener: l,
        }
    }

    pub fn connection_opened(&self, l: Listener) {
        self.connections[l as usize].inc();
        self.accepted[l as usize].inc();
    }

    pub fn connection_closed(&self, l: Listener) {
        self.connections[l as usize].dec();
    }

    pub fn received(&self, k: Kind) {
        let i = match k {
            Kind::Message => 0,
            Kind::Presence => 1,
            Kind::Iq => 2,
        };
        self.received[i].inc();
    }

    /// A failed authentication, by its SASL condition (a fixed set of
    /// names from the stream machine, never client input) and whether the
    /// credentials were checked: an older client's probe of a channel
    /// binding the server does not offer is refused before any check and
    /// is no wrong password.
    pub fn login_failed(&self, reason: &'static str, checked: bool) {
        let checked = if checked { "true" } else { "false" };
        self.login_failures
            .with_label_values(&[reason, checked])
            .inc();
    }

    /// Set what is read at scrape time, then encode everything.
    pub fn render(&self, state: &ScrapeState) -> String {
        self.sessions.set(state.sessions.map_or(0, |n| n as i64));
        for g in &state.shards {
            let s = g.shard.to_string();
            let applied = g.applied.unwrap_or(0);
            self.shard_leader
                .with_label_values(&[&s])
                .set(if g.quorum_lost {
                    0
                } else {
                    g.raft_leader.unwrap_or(0) as i64
                });
            self.shard_applied
                .with_label_values(&[&s])
                .set(applied as i64);
            self.shard_term.with_label_values(&[&s]).set(g.term as i64);
            self.shard_apply_lag
                .with_label_values(&[&s])
                .set(g.last_log.unwrap_or(0).saturating_sub(applied) as i64);
        }
        if let Some(st) = &state.engine {
            let g = &self.rocksdb;
            let set = |gauge: &IntGauge, v: u64| gauge.set(i64::try_from(v).unwrap_or(i64::MAX));
            set(&g.live_sst, st.live_sst_bytes);
            set(&g.memtables, st.memtable_bytes);
            set(&g.pending_compaction, st.pending_compaction_bytes);
            set(&g.running_compactions, st.running_compactions);
            g.write_stopped.set(i64::from(st.write_stopped));
            set(&g.delayed_write_rate, st.delayed_write_rate);
            set(&self.offline_keys, st.offline_keys);
            set(&self.offline_bytes, st.offline_bytes);
        }
        for (i, d) in state.shard_queues.iter().enumerate() {
            self.shard_queue
                .with_label_values(&[&i.to_string()])
                .set(i64::try_from(*d).unwrap_or(i64::MAX));
        }
        self.edge_queue.reset();
        for (edge, d) in &state.edge_queues {
            self.edge_queue
                .with_label_values(&[&edge.to_string()])
                .set(i64::try_from(*d).unwrap_or(i64::MAX));
        }
        self.core_link_up.reset();
        for (core, up) in &state.core_links {
            self.core_link_up
                .with_label_values(&[&core.to_string()])
                .set(i64::from(*up));
        }
        let p = process_stats();
        {
            let cpu = self.process.cpu.lock().unwrap_or_else(|e| e.into_inner());
            let more = p.cpu_seconds - cpu.get();
            if more > 0.0 {
                cpu.inc_by(more);
            }
        }
        self.process.rss.set(p.rss_bytes);
        self.process.open_fds.set(p.open_fds);
        self.process.max_fds.set(p.max_fds);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// An open client connection, counted until dropped.
/// Server-to-server metrics (cheap clones of the registered ones).
#[derive(Clone)]
pub struct S2sMetrics {
    pub streams: IntGaugeVec,
    pub stanzas: IntCounterVec,
    pub bounced: IntCounter,
    pub auth: IntCounterVec,
    pub refused: IntCounterVec,
}

pub struct OpenConnection {
    metrics: std::sync::Arc<Metrics>,
    listener: Listener,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connection_closed(self.listener);
    }
}

/// What a scrape reads from the core: its bound sessions and, per shard,
/// the leader and the last index applied here.
#[derive(Debug, Default)]
pub struct ScrapeState {
    pub sessions: Option<usize>,
    pub shards: Vec<router::cluster::ShardGroup>,
    pub engine: Option<storage::EngineStats>,
    /// An edge's core nodes and whether its stream to each is open.
    pub core_links: Vec<(u64, bool)>,
    /// Messages queued for each shard of this core node.
    pub shard_queues: Vec<usize>,
    /// Deliveries queued for each connected edge.
    pub edge_queues: Vec<(u64, usize)>,
}

struct ProcessStats {
    cpu_seconds: f64,
    rss_bytes: i64,
    open_fds: i64,
    max_fds: i64,
}

/// The process's CPU time, resident memory and file descriptors, from
/// /proc (zeros where it cannot be read).
fn process_stats() -> ProcessStats {
    // utime and stime are in USER_HZ ticks, 100 a second in Linux's ABI
    // on every architecture.
    const TICKS: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may
    // hold spaces: utime and stime are fields 14 and 15 of the line, the
    // 12th and 13th after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu_seconds = (num(11) + num(12)) / TICKS;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_bytes = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024);
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|x| x.starts_with("Max open files"))
                .and_then(|x| x.split_whitespace().nth(3))
                .and_then(|v| v.parse::<i64>().ok())
        })
        .unwrap_or(0);
    ProcessStats {
        cpu_seconds,
        rss_bytes,
        open_fds,
        max_fds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_scrape_state_appear_in_the_text_format() {
        let m = Metrics::new();
        m.connection_opened(Listener::StartTls);
        m.connection_opened(Listener::DirectTls);
        m.connection_closed(Listener::DirectTls);
        m.received(Kind::Message);
        m.received(Kind::Message);
        m.login_failed("not-authorized", true);
        m.login_failed("not-authorized", false);
        m.login_failed("not-authorized", false);
        let text = m.render(&ScrapeState {
            sessions: Some(3),
            shards: vec![router::cluster::ShardGroup {
                shard: 0,
                leader: Some(1),
                raft_leader: Some(1),
                quorum_lost: false,
                replicas: vec![1],
                applied: Some(42),
                term: 3,
                last_log: Some(45),
            }],
            engine: Some(storage::EngineStats {
                live_sst_bytes: 4096,
                write_stopped: true,
                ..Default::default()
            }),
            core_links: vec![(1, true), (2, false)],
            shard_queues: vec![0, 7],
            edge_queues: vec![(4, 12)],
        });
        for line in [
            "xmppd_client_connections{listener=\"c2s\"} 1",
            "xmppd_client_connections{listener=\"c2s_direct_tls\"} 0",
            "xmppd_client_connections_accepted_total{listener=\"c2s_direct_tls\"} 1",
            "xmppd_stanzas_received_total{kind=\"message\"} 2",
            "xmppd_stanzas_received_total{kind=\"iq\"} 0",
            "xmppd_login_failures_total{checked=\"true\",reason=\"not-authorized\"} 1",
            "xmppd_login_failures_total{checked=\"false\",reason=\"not-authorized\"} 2",
            "# TYPE process_cpu_seconds_total counter",
            "xmppd_sessions 3",
            "xmppd_shard_leader{shard=\"0\"} 1",
            "xmppd_shard_applied_index{shard=\"0\"} 42",
            "xmppd_shard_term{shard=\"0\"} 3",
            "xmppd_shard_apply_lag_entries{shard=\"0\"} 3",
            "xmppd_rocksdb_size_bytes 4096",
            "xmppd_rocksdb_write_stopped 1",
            "xmppd_core_link_up{core=\"1\"} 1",
            "xmppd_core_link_up{core=\"2\"} 0",
            "xmppd_shard_queue_depth{shard=\"1\"} 7",
            "xmppd_edge_queue_depth{edge=\"4\"} 12",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(rss > 1e6, "rss {rss}");
    }
}
