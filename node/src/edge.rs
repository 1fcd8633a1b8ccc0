//! The edge: what every connection of this node shares (the core handle,
//! TLS, limits, connection counts, the registration and login throttles)
//! and the shutdown signal.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::core_link::CoreLink;
use tokio::sync::watch;

use crate::stream::StreamSettings;
use crate::throttle::{AuthThrottle, Network, RegistrationGate};

/// Connection limits and timers, from the configuration.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    pub parser: proto::xml::Limits,
    /// Bytes per second a connection may send; 0 = unlimited.
    pub read_rate: u64,
    pub read_burst: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// From connect to a bound session.
    pub handshake_timeout: Duration,
    /// Silence after which the server pings the client.
    pub idle_timeout: Duration,
    /// Time allowed for the ping's answer.
    pub ping_timeout: Duration,
    /// Stanzas queued for one session before it is closed as too slow.
    pub outbound_queue: usize,
    /// Time allowed to write to a client before it is considered dead.
    pub write_timeout: Duration,
    /// Stanzas per second one session may send; 0 = unlimited.
    pub stanza_rate: u32,
    /// Stanzas a session may send at once above the rate.
    pub stanza_burst: u32,
    /// Time between two in-band registrations from one address.
    pub registration_interval: Duration,
    /// Networks exempt from that interval.
    pub registration_trusted: Vec<Network>,
    /// When not empty, the only networks that may register in-band.
    pub registration_allowed: Vec<Network>,
    /// Failed logins per address or account before they are slowed down.
    pub login_free_failures: u32,
    /// The wait after the first failure past those, doubled after each.
    pub login_delay: Duration,
    /// The longest wait.
    pub login_max_delay: Duration,
    /// Failures are forgotten after this long without one.
    pub login_forget: Duration,
    /// XEP-0352: stanzas held for an inactive client before they are
    /// written anyway.
    pub csi_max_held: usize,
    /// XEP-0352: chat states without a body are written at once to an
    /// inactive client (else held).
    pub csi_chat_states_urgent: bool,
    /// XEP-0198: longest wait for a resumption (zero: none offered).
    pub sm_resume_timeout: Duration,
    pub sm_max_unacked: usize,
    /// `<r/>` after this many stanzas written.
    pub sm_request_every: u32,
}

impl Default for EdgeLimits {
    fn default() -> EdgeLimits {
        EdgeLimits {
            parser: proto::xml::Limits::default(),
            read_rate: 100 * 1024,
            read_burst: 512 * 1024,
            max_connections: 15_000,
            max_connections_per_ip: 100,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            ping_timeout: Duration::from_secs(60),
            outbound_queue: 2048,
            write_timeout: Duration::from_secs(30),
            stanza_rate: 100,
            stanza_burst: 500,
            registration_interval: Duration::from_secs(600),
            registration_trusted: Vec::new(),
            registration_allowed: Vec::new(),
            login_free_failures: 3,
            login_delay: Duration::from_secs(1),
            login_max_delay: Duration::from_secs(60),
            login_forget: Duration::from_secs(900),
            csi_max_held: 500,
            csi_chat_states_urgent: false,
            sm_resume_timeout: Duration::from_secs(300),
            sm_max_unacked: 1000,
            sm_request_every: 5,
        }
    }
}

/// TLS server configurations.
#[derive(Clone)]
pub struct EdgeTls {
    pub starttls: tokio_rustls::TlsAcceptor,
    pub direct: tokio_rustls::TlsAcceptor,
    /// The certificate's `tls-server-end-point` binding (RFC 5929).
    pub end_point: Option<Arc<[u8]>>,
}

pub struct Edge {
    pub core: CoreLink,
    // What a configuration reload (SIGHUP) may change: each new
    // connection takes the current ones, and keeps them.
    settings: RwLock<Arc<StreamSettings>>,
    tls: RwLock<Option<EdgeTls>>,
    limits: RwLock<Arc<EdgeLimits>>,
    next_conn: AtomicU64,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// In-band registrations per client address.
    pub registrations: RegistrationGate,
    /// Failed logins per client address and account.
    pub logins: AuthThrottle,
    pub shutdown: watch::Receiver<bool>,
    /// Set when the edge drains (see [`Drain`]).
    drain: watch::Sender<Option<Arc<Drain>>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A draining edge: it takes no new connections, and closes each open
/// one at a random moment within `window` (so that the clients do not
/// all reconnect elsewhere at once), with `<see-other-host/>` naming
/// `redirect` when it is set, `<system-shutdown/>` otherwise.
#[derive(Debug)]
pub struct Drain {
    pub window: Duration,
    pub redirect: Option<String>,
}

/// Held by a connection; gives its slot back when dropped.
pub struct Slot {
    edge: Arc<Edge>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.edge.total.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut m) = self.edge.per_ip.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Edge {
    /// `node_id` goes into the top bits of the edge's connection ids, so
    /// that they are unique in the cluster.
    pub fn new(
        core: CoreLink,
        node_id: u64,
        settings: StreamSettings,
        tls: Option<EdgeTls>,
        limits: EdgeLimits,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Edge> {
        let registrations = RegistrationGate::new(
            limits.registration_interval,
            limits.registration_trusted.clone(),
            limits.registration_allowed.clone(),
        );
        let logins = AuthThrottle::new(
            limits.login_free_failures,
            limits.login_delay,
            limits.login_max_delay,
            limits.login_forget,
        );
        Arc::new(Edge {
            core,
            settings: RwLock::new(Arc::new(settings)),
            tls: RwLock::new(tls),
            limits: RwLock::new(Arc::new(limits)),
            next_conn: AtomicU64::new((node_id << router::session::EDGE_SHIFT) + 1),
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            registrations,
            logins,
            shutdown,
            drain: watch::channel(None).0,
            metrics,
        })
    }

    /// The stream settings a new connection starts with.
    pub fn settings(&self) -> Arc<StreamSettings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The TLS configurations a new connection is given.
    pub fn tls(&self) -> Option<EdgeTls> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The limits a new connection takes.
    pub fn limits(&self) -> Arc<EdgeLimits> {
        self.limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A reloaded configuration: new connections take these; those open
    /// keep what they started with.
    pub fn reconfigure(
        &self,
        settings: Option<StreamSettings>,
        tls: Option<EdgeTls>,
        limits: Option<EdgeLimits>,
    ) {
        if let Some(s) = settings {
            *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
        }
        if let Some(t) = tls {
            *self.tls.write().unwrap_or_else(|p| p.into_inner()) = Some(t);
        }
        if let Some(l) = limits {
            *self.limits.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(l);
        }
    }

    /// Start draining (see [`Drain`]).
    pub fn start_drain(&self, window: Duration, redirect: Option<String>) {
        self.drain
            .send_replace(Some(Arc::new(Drain { window, redirect })));
    }

    /// Told when the edge starts draining.
    pub fn drain_signal(&self) -> watch::Receiver<Option<Arc<Drain>>> {
        self.drain.subscribe()
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Take a connection slot, or None when over the global or per-IP limit.
    pub fn admit(self: &Arc<Edge>, ip: IpAddr) -> Option<Slot> {
        let limits = self.limits();
        let mut m = self.per_ip.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_ip
            || self.total.load(Ordering::Relaxed) >= limits.max_connections
        {
            if *n == 0 {
                m.remove(&ip);
            }
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            edge: self.clone(),
            ip,
        })
    }

    pub fn connections(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}
