//! Federation: server-to-server streams (RFC 6120), authenticated by
//! certificates (SASL EXTERNAL, XEP-0178) or by Server Dialback
//! (XEP-0220), found through DNS SRV (RFC 6120 §3.2, XEP-0368) or the
//! operator's table.
//!
//! Outbound: the core hands this edge every stanza for a domain it does
//! not host ([`router::federation::Outlet`]); one stream per pair of
//! (local domain, remote domain) carries them in order, opened when the
//! first one comes and closed when idle. Stanzas that cannot be sent
//! within `connect_timeout_secs` go back to their senders as errors.
//!
//! Inbound: other servers connect to `s2s.listen`; once a (remote
//! domain, local domain) pair is authenticated on a stream, its stanzas go
//! into the core like a client's, for inbound processing at the
//! recipient's shard.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::Stanza;
use tokio::sync::mpsc;

use crate::config::S2sConfig;
use crate::core_link::CoreLink;

pub mod dialback;
mod inbound;
mod outbound;
pub mod resolve;
pub mod stream;
pub mod tls;

pub use inbound::serve;

/// How a stream's peer proved its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// SASL EXTERNAL with a valid certificate (XEP-0178).
    Certificate,
    /// Server Dialback (XEP-0220).
    Dialback,
}

/// One stream as `xmppd s2s status` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamInfo {
    /// `in` (a peer connected here) or `out`.
    pub direction: &'static str,
    /// The local domain and the remote domains authenticated on it.
    pub local: String,
    pub remote: Vec<String>,
    pub peer: Option<String>,
    pub tls: bool,
    pub auth: Option<AuthMethod>,
    /// Established, or still connecting (outbound).
    pub state: &'static str,
    /// Seconds since the UNIX epoch when it opened.
    pub since: u64,
    pub stanzas: u64,
    /// Stanzas waiting (outbound).
    pub queued: usize,
}

/// The shared state of a stream, for the status list.
pub(crate) type Status = Arc<Mutex<StreamInfo>>;

/// Told once a stanza for another server has been written to it (or
/// answered with an error): a core node keeps it until then.
pub struct Receipt(Box<dyn FnOnce() + Send>);

impl Receipt {
    pub fn new(f: impl FnOnce() + Send + 'static) -> Receipt {
        Receipt(Box::new(f))
    }

    pub fn done(self) {
        (self.0)()
    }
}

/// A stanza waiting for its stream, with whom to tell when it is sent.
pub(crate) struct Queued {
    pub s: Stanza,
    pub receipt: Option<Receipt>,
}

impl Queued {
    /// It was sent, or answered: tell whoever waits.
    pub fn done(self) -> Stanza {
        if let Some(r) = self.receipt {
            r.done();
        }
        self.s
    }
}

/// The queue to one outbound stream.
struct OutHandle {
    tx: mpsc::UnboundedSender<Queued>,
    queued: Arc<AtomicUsize>,
    status: Status,
}

pub struct S2s {
    pub(crate) cfg: S2sConfig,
    /// Domains this server hosts (served domains and their services).
    pub(crate) hosted: Vec<String>,
    pub(crate) core: CoreLink,
    tls: std::sync::RwLock<Arc<tls::S2sTls>>,
    pub(crate) resolver: resolve::Resolver,
    pub(crate) secret: dialback::Secret,
    pub(crate) limits: proto::xml::Limits,
    out: Mutex<HashMap<(String, String), OutHandle>>,
    inbound: Mutex<HashMap<u64, Status>>,
    /// Streams open, inbound and outbound, and dialback callbacks (a
    /// budget of their own, so that peers that never authenticate cannot
    /// take the outbound streams' slots).
    open_in: AtomicUsize,
    open_out: AtomicUsize,
    open_verify: AtomicUsize,
    /// Inbound streams by the peer's IP address.
    per_ip: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Remote resources' available presence remembered by all inbound
    /// streams (for unavailable when one is lost).
    pub(crate) tracked: AtomicUsize,
    /// Turns true when the node stops: every stream closes.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    next_id: AtomicU64,
    pub(crate) metrics: crate::metrics::S2sMetrics,
}

impl S2s {
    pub fn new(
        cfg: S2sConfig,
        hosted: Vec<String>,
        core: CoreLink,
        tls: tls::S2sTls,
        limits: proto::xml::Limits,
        metrics: crate::metrics::S2sMetrics,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<S2s> {
        let secret = match &cfg.dialback_secret {
            Some(s) => dialback::Secret::new(s.as_bytes()),
            None => dialback::Secret::random(),
        };
        let resolver = resolve::Resolver::new(&cfg.hosts, &cfg.nameservers);
        Arc::new(S2s {
            cfg,
            hosted,
            core,
            tls: std::sync::RwLock::new(Arc::new(tls)),
            resolver,
            secret,
            limits,
            out: Mutex::new(HashMap::new()),
            inbound: Mutex::new(HashMap::new()),
            open_in: AtomicUsize::new(0),
            open_out: AtomicUsize::new(0),
            open_verify: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            tracked: AtomicUsize::new(0),
            shutdown,
            next_id: AtomicU64::new(1),
            metrics,
        })
    }

    /// The TLS configurations in force.
    pub(crate) fn tls(&self) -> Arc<tls::S2sTls> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// New certificates (a configuration reload): for streams opened
    /// from now on.
    pub fn set_tls(&self, tls: tls::S2sTls) {
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tls);
    }

    /// Whether `domain` is this server's.
    pub fn hosts(&self, domain: &str) -> bool {
        self.hosted.iter().any(|d| d == domain)
    }

    /// Whether the operator lets `domain` federate.
    pub fn allowed(&self, domain: &str) -> bool {
        let listed = |l: &[String]| l.iter().any(|d| at_or_under(domain, d));
        !listed(&self.cfg.deny) && (self.cfg.allow.is_empty() || listed(&self.cfg.allow))
    }

    /// Count an inbound stream or stanza refused, by reason.
    pub(crate) fn refused(&self, reason: &str) {
        self.metrics.refused.with_label_values(&[reason]).inc();
    }

    /// A fresh stream id (random: dialback keys depend on it).
    pub(crate) fn stream_id(&self) -> String {
        format!(
            "{:016x}{:08x}",
            rand::random::<u64>(),
            self.next_id.fetch_add(1, Ordering::Relaxed) as u32
        )
    }

    /// Take an outbound stream slot; none past `max_streams`.
    pub(crate) fn slot(self: &Arc<Self>) -> Option<StreamSlot> {
        let n = self.open_out.fetch_add(1, Ordering::AcqRel);
        if n >= self.cfg.max_streams {
            self.open_out.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(StreamSlot(self.clone(), SlotKind::Out))
    }

    /// Take a dialback callback slot; none past `max_streams`.
    pub(crate) fn verify_slot(self: &Arc<Self>) -> Option<StreamSlot> {
        let n = self.open_verify.fetch_add(1, Ordering::AcqRel);
        if n >= self.cfg.max_streams {
            self.open_verify.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(StreamSlot(self.clone(), SlotKind::Verify))
    }

    /// Take an inbound stream slot for a peer at `ip`; none past
    /// `max_streams` or `max_streams_per_ip`.
    pub(crate) fn inbound_slot(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<StreamSlot> {
        let n = self.open_in.fetch_add(1, Ordering::AcqRel);
        if n >= self.cfg.max_streams {
            self.open_in.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let c = per_ip.entry(ip).or_default();
        if *c >= self.cfg.max_streams_per_ip {
            drop(per_ip);
            self.open_in.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *c += 1;
        Some(StreamSlot(self.clone(), SlotKind::In(ip)))
    }

    pub(crate) fn register_inbound(&self, id: u64, status: Status) {
        self.lock_in().insert(id, status);
    }

    pub(crate) fn unregister_inbound(&self, id: u64) {
        self.lock_in().remove(&id);
    }

    fn lock_in(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Status>> {
        self.inbound.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_out(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), OutHandle>> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Nothing waits to be written to another server.
    pub fn drained(&self) -> bool {
        self.lock_out()
            .values()
            .all(|h| h.queued.load(Ordering::Relaxed) == 0)
    }

    /// Every stream, outbound first.
    pub fn status(&self) -> Vec<StreamInfo> {
        let mut v: Vec<StreamInfo> = self
            .lock_out()
            .values()
            .map(|h| {
                let mut i = h.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
                i.queued = h.queued.load(Ordering::Relaxed);
                i
            })
            .collect();
        v.extend(
            self.lock_in()
                .values()
                .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        );
        v
    }

    /// Queue `s` on the stream from its 'from' domain to its 'to' domain,
    /// opening it if needed.
    pub(crate) fn queue(self: &Arc<Self>, s: Stanza) {
        self.queue_with(s, None)
    }

    /// [`S2s::queue`], telling `receipt` once it is written (or answered).
    pub fn queue_with(self: &Arc<Self>, s: Stanza, receipt: Option<Receipt>) {
        let q = Queued { s, receipt };
        let (Some(from), Some(to)) = (&q.s.from, &q.s.to) else {
            q.done();
            return;
        };
        let remote = to.domain().to_string();
        if !self.allowed(&remote) {
            self.bounce(
                vec![q.done()],
                StanzaCondition::RemoteServerNotFound,
                "federation with this domain is not allowed",
            );
            return;
        }
        let key = (from.domain().to_string(), remote);
        let mut out = self.lock_out();
        if let Some(h) = out.get(&key) {
            if h.queued.load(Ordering::Relaxed) >= self.cfg.max_queued {
                drop(out);
                self.metrics.bounced.inc();
                self.bounce(
                    vec![q.done()],
                    StanzaCondition::RemoteServerTimeout,
                    "too many stanzas wait for this server",
                );
                return;
            }
            h.queued.fetch_add(1, Ordering::Relaxed);
            if let Err(mpsc::error::SendError(q)) = h.tx.send(q) {
                // Its task ended without taking itself out: start anew.
                h.queued.fetch_sub(1, Ordering::Relaxed);
                out.remove(&key);
                drop(out);
                return self.queue_with(q.s, q.receipt);
            }
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(1));
        let status = Arc::new(Mutex::new(StreamInfo {
            direction: "out",
            local: key.0.clone(),
            remote: vec![key.1.clone()],
            peer: None,
            tls: false,
            auth: None,
            state: "connecting",
            since: unix_now(),
            stanzas: 0,
            queued: 0,
        }));
        let _ = tx.send(q);
        out.insert(
            key.clone(),
            OutHandle {
                tx,
                queued: queued.clone(),
                status: status.clone(),
            },
        );
        drop(out);
        tokio::spawn(outbound::run(self.clone(), key, rx, queued, status));
    }

    /// The outbound stream `key` has nothing left and ends, unless a
    /// stanza came meanwhile (then it goes on: returns false).
    pub(crate) fn retire(
        &self,
        key: &(String, String),
        rx: &mpsc::UnboundedReceiver<Queued>,
    ) -> bool {
        let mut out = self.lock_out();
        if !rx.is_empty() {
            return false;
        }
        out.remove(key);
        true
    }

    /// Answer `stanzas` to their senders with `cond` (RFC 6120 §8.3):
    /// the error comes from the remote address they were sent to.
    pub(crate) fn bounce(&self, stanzas: Vec<Stanza>, cond: StanzaCondition, text: &str) {
        let err = StanzaError::with_text(cond, text);
        for s in stanzas {
            if !router::federation::answered_when_unreachable(&s) {
                continue;
            }
            let raw = s.error_reply(&err, None);
            match Stanza::parse(&raw) {
                Ok(reply) => self.core.route_inbound(reply),
                Err(e) => tracing::debug!(error = ?e, "cannot answer a stanza that was not sent"),
            }
        }
    }
}

/// One of `max_streams` (inbound with the peer's address), given back
/// when dropped.
pub(crate) struct StreamSlot(Arc<S2s>, SlotKind);

pub(crate) enum SlotKind {
    Out,
    Verify,
    In(std::net::IpAddr),
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        match self.1 {
            SlotKind::Out => {
                self.0.open_out.fetch_sub(1, Ordering::AcqRel);
            }
            SlotKind::Verify => {
                self.0.open_verify.fetch_sub(1, Ordering::AcqRel);
            }
            SlotKind::In(ip) => {
                self.0.open_in.fetch_sub(1, Ordering::AcqRel);
                let mut per_ip = self.0.per_ip.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(c) = per_ip.get_mut(&ip) {
                    *c -= 1;
                    if *c == 0 {
                        per_ip.remove(&ip);
                    }
                }
            }
        }
    }
}

/// The core's way out to remote domains.
pub struct Outlet(pub Arc<S2s>);

impl router::federation::Outlet for Outlet {
    fn send(&self, s: Stanza) {
        self.0.queue(s);
    }
}

/// Whether `domain` is `parent` or one of its subdomains (no allocation:
/// this runs for every stanza to another server).
pub(crate) fn at_or_under(domain: &str, parent: &str) -> bool {
    domain == parent
        || domain
            .strip_suffix(parent)
            .is_some_and(|head| head.ends_with('.'))
}

/// `xmppd s2s status`: a line per stream.
pub fn status_lines(streams: &[StreamInfo]) -> Vec<String> {
    if streams.is_empty() {
        return vec!["no server-to-server streams".to_string()];
    }
    let now = unix_now();
    streams
        .iter()
        .map(|i| {
            format!(
                "{} {} {} {} auth={} tls={} peer={} stanzas={} queued={} age={}s",
                i.direction,
                i.local,
                if i.remote.is_empty() {
                    "-".to_string()
                } else {
                    i.remote.join(",")
                },
                i.state,
                match i.auth {
                    Some(AuthMethod::Certificate) => "certificate",
                    Some(AuthMethod::Dialback) => "dialback",
                    None => "none",
                },
                if i.tls { "yes" } else { "no" },
                i.peer.as_deref().unwrap_or("-"),
                i.stanzas,
                i.queued,
                now.saturating_sub(i.since)
            )
        })
        .collect()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The stanza's bytes for a server-to-server stream: a top-level
/// `xmlns='jabber:client'` a client wrote becomes `jabber:server`
/// (RFC 6120 §4.8.3); without one it takes the stream's.
pub(crate) fn server_bytes(s: &Stanza) -> bytes::Bytes {
    if s.declares_ns(proto::ns::CLIENT) {
        s.clone()
            .renamespaced(proto::ns::CLIENT, Some(proto::ns::SERVER))
            .raw
    } else {
        s.raw.clone()
    }
}

/// A stanza read from a server: a top-level `xmlns='jabber:server'` is
/// dropped, so that it takes the client stream's namespace on delivery.
pub(crate) fn client_stanza(s: Stanza) -> Stanza {
    s.renamespaced(proto::ns::SERVER, None)
}
