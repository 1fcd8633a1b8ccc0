//! Streams other servers open to this one (RFC 6120 as the receiving
//! entity): STARTTLS, then authentication of each (remote domain, local
//! domain) pair by SASL EXTERNAL (XEP-0178) or dialback (XEP-0220, several
//! pairs on one stream), answers to dialback verification requests, and
//! the stanzas of authenticated pairs into the core.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use proto::error::StreamCondition;
use proto::ns;
use proto::stanza::{EnvelopeError, Kind, Stanza};
use proto::xml::{StreamEvent, StreamHeader, TopElement};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use super::stream::{DIALBACK, DIALBACK_FEATURE, Failure, XmlStream, header};
use super::{AuthMethod, S2s, StreamInfo};
use crate::io::Io;

/// Most (remote resource, local recipient) pairs of available presence
/// one stream remembers (to send unavailable for them when the stream is
/// lost), and all streams together.
const MAX_TRACKED: usize = 10_000;
const MAX_TRACKED_ALL: usize = 100_000;
/// Dialback verifications one stream may have running at once.
const MAX_PENDING: usize = 8;

/// Accept server-to-server connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    s2s: Arc<S2s>,
    direct_tls: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => match s2s.inbound_slot(peer.ip()) {
                    Some(slot) => {
                        let s2s = s2s.clone();
                        conns.spawn(async move {
                            let _slot = slot;
                            run(s2s, tcp, peer, direct_tls).await;
                        });
                    }
                    None => {
                        s2s.refused("max_streams");
                        tracing::warn!(%peer, "server-to-server connection refused: s2s.max_streams or s2s.max_streams_per_ip reached");
                        if !direct_tls {
                            tokio::spawn(refuse(tcp, s2s.hosted.first().cloned().unwrap_or_default()));
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // The streams see the same signal and end with <system-shutdown/>.
    let _ = timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// Tell a refused peer why (RFC 6120 §4.9.3.14 policy-violation).
async fn refuse(mut tcp: TcpStream, from: String) {
    use tokio::io::AsyncWriteExt;
    let mut msg = header(&from, None, None).into_bytes();
    msg.extend(StreamCondition::PolicyViolation.to_bytes(Some("too many streams")));
    let _ = timeout(Duration::from_secs(2), tcp.write_all(&msg)).await;
}

struct Inbound {
    s2s: Arc<S2s>,
    stream: XmlStream,
    peer: SocketAddr,
    id: String,
    /// Our domain the peer addressed in its header.
    local: String,
    /// The domain the peer named itself in its header, if any.
    claimed: Option<String>,
    /// Authenticated (remote, local) pairs (a few: searched in place,
    /// nothing allocated per stanza).
    pairs: Vec<(String, String)>,
    /// The peer authenticated its domain with SASL EXTERNAL.
    sasl_done: bool,
    /// Our stream header went out (a stream error needs one before it,
    /// RFC 6120 §4.9.1.1).
    said_hello: bool,
    status: Arc<Mutex<StreamInfo>>,
    /// Remote full JIDs that sent available presence, and to whom.
    available: HashMap<proto::Jid, HashSet<proto::Jid>>,
    /// Dialback verifications under way: (remote, local, verdict).
    verdicts: mpsc::Sender<(String, String, Verdict)>,
    pending: usize,
    /// Remote resources' available presence remembered by this stream
    /// (its share of `S2s::tracked`).
    tracked: usize,
    /// The stanza rate: when the next stanza may be taken.
    next_stanza: Option<tokio::time::Instant>,
    /// `xmppd_s2s_stanzas_total{direction="in"}`, looked up once.
    counted: prometheus::IntCounter,
}

async fn run(s2s: Arc<S2s>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let _ = tcp.set_nodelay(true);
    let io = if direct_tls {
        match timeout(
            Duration::from_secs(s2s.cfg.connect_timeout_secs),
            s2s.tls().direct.accept(tcp),
        )
        .await
        {
            Ok(Ok(t)) => Io::Tls(Box::new(t)),
            _ => return,
        }
    } else {
        Io::Plain(tcp)
    };
    let conn_id = rand::random::<u64>();
    let status = Arc::new(Mutex::new(StreamInfo {
        direction: "in",
        local: String::new(),
        remote: Vec::new(),
        peer: Some(peer.to_string()),
        tls: direct_tls,
        auth: None,
        state: "connecting",
        since: super::unix_now(),
        stanzas: 0,
        queued: 0,
    }));
    s2s.register_inbound(conn_id, status.clone());
    let gauge = s2s.metrics.streams.with_label_values(&["in"]);
    gauge.inc();
    let (tx, mut rx) = mpsc::channel(MAX_PENDING);
    let mut c = Inbound {
        stream: XmlStream::new(io, s2s.limits),
        peer,
        id: s2s.stream_id(),
        local: String::new(),
        claimed: None,
        pairs: Vec::new(),
        sasl_done: false,
        said_hello: false,
        status,
        available: HashMap::new(),
        verdicts: tx,
        pending: 0,
        tracked: 0,
        next_stanza: None,
        counted: s2s.metrics.stanzas.with_label_values(&["in"]),
        s2s: s2s.clone(),
    };
    let result = c.main(&mut rx).await;
    if result.is_err() && !c.said_hello {
        let from = s2s.hosted.first().cloned().unwrap_or_default();
        let _ = c
            .stream
            .send(header(&from, None, Some(&c.id)).as_bytes())
            .await;
    }
    // The peer's resources went away with it only if the connection was
    // lost; a stream closed (by either side, idle) says nothing of them.
    let lost = matches!(
        result,
        Err(Failure::Io(_) | Failure::Eof | Failure::PeerError(_))
    );
    match result {
        Ok(()) | Err(Failure::Closed) => c.stream.close().await,
        Err(Failure::Xml(e)) => c.stream.fail(e.condition, Some(&e.text)).await,
        Err(Failure::Protocol(StreamCondition::SystemShutdown, text)) => {
            c.stream
                .fail(StreamCondition::SystemShutdown, Some(&text))
                .await
        }
        Err(Failure::Protocol(cond, text)) => {
            tracing::info!(peer = %c.peer, condition = cond.name(), reason = %text, "server-to-server stream in refused");
            c.stream.fail(cond, Some(&text)).await
        }
        Err(Failure::Timeout(what)) => {
            c.stream
                .fail(StreamCondition::ConnectionTimeout, Some(what))
                .await
        }
        Err(e) => tracing::debug!(peer = %c.peer, error = %e, "server-to-server stream in ended"),
    }
    if lost {
        c.gone();
    }
    c.untrack();
    gauge.dec();
    s2s.unregister_inbound(conn_id);
}

impl Inbound {
    async fn main(
        &mut self,
        verdicts: &mut mpsc::Receiver<(String, String, Verdict)>,
    ) -> Result<(), Failure> {
        let limit = Duration::from_secs(self.s2s.cfg.connect_timeout_secs);
        let idle = Duration::from_secs(self.s2s.cfg.idle_timeout_secs);
        // A stream authenticates within twice `connect_timeout_secs` of
        // its start (a dialback callback takes up to one), whatever it
        // sends meanwhile; then it may stay `idle_timeout_secs` without
        // a byte (whitespace keepalives count).
        let auth_deadline = Instant::now() + 2 * limit;
        let mut shutdown = self.s2s.shutdown.clone();
        timeout(limit, self.open(limit))
            .await
            .map_err(|_| Failure::Timeout("no stream header"))??;
        let mut last_activity = Instant::now();
        loop {
            let deadline = if self.pairs.is_empty() {
                auth_deadline
            } else {
                last_activity + idle
            };
            let read_before = self.stream.read;
            tokio::select! {
                ev = self.stream.next() => {
                    last_activity = Instant::now();
                    match ev? {
                        StreamEvent::Open(_) => {
                            return Err(Failure::Protocol(StreamCondition::InvalidXml, "a second stream header".into()));
                        }
                        StreamEvent::Element(e) => self.element(e).await?,
                        StreamEvent::Close => return Ok(()),
                    }
                }
                Some((remote, local, verdict)) = verdicts.recv() => {
                    self.pending -= 1;
                    self.verdict(remote, local, verdict).await?;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.pairs.is_empty() {
                        return Err(Failure::Timeout("not authenticated in time"));
                    }
                    if self.stream.read != read_before {
                        // Whitespace came: not idle.
                        last_activity = Instant::now();
                        continue;
                    }
                    return Ok(());
                }
                _ = crate::s2s::stream::stopping(&mut shutdown) => {
                    return Err(Failure::Protocol(StreamCondition::SystemShutdown, "the server is stopping".into()));
                }
            }
        }
    }

    /// Read the peer's header, answer with ours and the features.
    async fn open(&mut self, limit: Duration) -> Result<(), Failure> {
        let hdr = match timeout(limit, self.stream.next()).await {
            Ok(Ok(StreamEvent::Open(h))) => h,
            Ok(Ok(_)) => {
                return Err(Failure::Protocol(
                    StreamCondition::NotWellFormed,
                    "no stream header".into(),
                ));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Failure::Timeout("no stream header")),
        };
        self.check_header(&hdr).await?;
        let mut features = String::from("<stream:features>");
        let tls = self.stream.is_tls();
        if !tls {
            features.push_str(&format!("<starttls xmlns='{}'", ns::TLS));
            if self.s2s.cfg.require_encryption {
                features.push_str("><required/></starttls>");
            } else {
                features.push_str("/>");
            }
        }
        if tls || !self.s2s.cfg.require_encryption {
            if !self.sasl_done {
                if let Some(claimed) = &self.claimed
                    && self.cert_valid(claimed).is_ok()
                {
                    features.push_str(&format!(
                        "<mechanisms xmlns='{}'><mechanism>EXTERNAL</mechanism></mechanisms>",
                        ns::SASL
                    ));
                }
                if !self.s2s.cfg.require_valid_certs {
                    features.push_str(&format!(
                        "<dialback xmlns='{DIALBACK_FEATURE}'><errors/></dialback>"
                    ));
                }
            } else if !self.s2s.cfg.require_valid_certs {
                // More pairs may be added by dialback (XEP-0220 §2.5).
                features.push_str(&format!(
                    "<dialback xmlns='{DIALBACK_FEATURE}'><errors/></dialback>"
                ));
            }
        }
        features.push_str("</stream:features>");
        self.stream.send(features.as_bytes()).await
    }

    async fn check_header(&mut self, hdr: &StreamHeader) -> Result<(), Failure> {
        // Domains compare in their canonical form (RFC 7622 §3.2).
        let to = hdr
            .to
            .as_deref()
            .and_then(|t| proto::jid::normalize_domain(t).ok())
            .unwrap_or_default();
        let from = hdr.from.as_deref().map(|f| {
            proto::BareJid::domain_jid(f)
                .ok()
                .filter(|j| j.local().is_none())
        });
        // Our header goes out first, so that an error can follow it; it
        // names the peer only when the peer named itself properly, and
        // every new stream (after TLS, after SASL) has a new id (RFC 6120
        // §4.7.3).
        let ours = if self.s2s.hosts(&to) {
            to.clone()
        } else {
            self.s2s.hosted.first().cloned().unwrap_or_default()
        };
        self.id = self.s2s.stream_id();
        let peer_name = from
            .as_ref()
            .and_then(|f| f.as_ref())
            .map(|j| j.as_str().to_string());
        let answer = header(&ours, peer_name.as_deref(), Some(&self.id));
        self.said_hello = true;
        self.stream.send(answer.as_bytes()).await?;
        if hdr.default_ns.as_deref() != Some(ns::SERVER) {
            return Err(Failure::Protocol(
                StreamCondition::InvalidNamespace,
                "server-to-server streams are jabber:server".into(),
            ));
        }
        if !super::stream::speaks_xmpp_1(hdr) {
            return Err(Failure::Protocol(
                StreamCondition::UnsupportedVersion,
                "XMPP 1.0 (version='1.0') is required".into(),
            ));
        }
        if !self.s2s.hosts(&to) {
            self.s2s.refused("host_unknown");
            return Err(Failure::Protocol(
                StreamCondition::HostUnknown,
                "this server does not host that domain".into(),
            ));
        }
        let claimed = match from {
            None => None,
            Some(None) => {
                return Err(Failure::Protocol(
                    StreamCondition::InvalidFrom,
                    "'from' is not a domain".into(),
                ));
            }
            Some(Some(j)) => Some(j.as_str().to_string()),
        };
        if let Some(f) = &claimed
            && !self.s2s.allowed(f)
        {
            self.s2s.refused("denied");
            tracing::info!(peer = %self.peer, remote = %f, "server-to-server stream in refused: not allowed");
            return Err(Failure::Protocol(
                StreamCondition::PolicyViolation,
                "federation with this domain is not allowed".into(),
            ));
        }
        self.local = to;
        self.claimed = claimed;
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.local = self.local.clone();
        st.tls = self.stream.is_tls();
        Ok(())
    }

    /// Whether (remote, local) is authenticated on this stream.
    fn paired(&self, remote: &str, local: &str) -> bool {
        self.pairs.iter().any(|(r, l)| r == remote && l == local)
    }

    fn cert_valid(&self, domain: &str) -> Result<(), String> {
        if !self.stream.is_tls() {
            return Err("no TLS".into());
        }
        self.s2s
            .tls()
            .check(self.stream.peer_certs().as_deref(), domain)
    }

    async fn element(&mut self, e: TopElement) -> Result<(), Failure> {
        match (e.ns.as_str(), e.name.as_str()) {
            (ns::TLS, "starttls") => self.starttls().await,
            (ns::SASL, "auth") => self.sasl(&e).await,
            (DIALBACK, "result") => self.db_result(&e).await,
            (DIALBACK, "verify") => self.db_verify(&e).await,
            (ns::SERVER, "message" | "presence" | "iq") => self.stanza(e).await,
            _ => Err(Failure::Protocol(
                StreamCondition::UnsupportedStanzaType,
                format!("<{}/> in {}", e.name, e.ns),
            )),
        }
    }

    async fn starttls(&mut self) -> Result<(), Failure> {
        if self.stream.is_tls() {
            return Err(Failure::Protocol(
                StreamCondition::PolicyViolation,
                "TLS is on already".into(),
            ));
        }
        self.stream
            .send(format!("<proceed xmlns='{}'/>", ns::TLS).as_bytes())
            .await?;
        let acceptor = self.s2s.tls().starttls.clone();
        timeout(
            Duration::from_secs(self.s2s.cfg.connect_timeout_secs),
            self.stream.accept_tls(&acceptor),
        )
        .await
        .map_err(|_| Failure::Timeout("TLS handshake"))??;
        self.open(Duration::from_secs(self.s2s.cfg.connect_timeout_secs))
            .await
    }

    fn require_tls(&self) -> Result<(), Failure> {
        if self.s2s.cfg.require_encryption && !self.stream.is_tls() {
            return Err(Failure::Protocol(
                StreamCondition::PolicyViolation,
                "STARTTLS first".into(),
            ));
        }
        Ok(())
    }

    /// XEP-0178: SASL EXTERNAL with the certificate the peer presented.
    async fn sasl(&mut self, e: &TopElement) -> Result<(), Failure> {
        self.require_tls()?;
        let failure = |cond: &str| format!("<failure xmlns='{}'><{cond}/></failure>", ns::SASL);
        if self.sasl_done || e.attr("mechanism") != Some("EXTERNAL") {
            return self
                .stream
                .send(failure("invalid-mechanism").as_bytes())
                .await;
        }
        let text = self.stream.tree(e)?.text();
        let text = text.trim();
        // An empty response ("=") means the domain of the stream header.
        let authzid = if text.is_empty() || text == "=" {
            self.claimed.clone()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        };
        let Some(domain) = authzid.filter(|d| Some(d) == self.claimed.as_ref()) else {
            self.count_auth("certificate", false);
            return self
                .stream
                .send(failure("invalid-authzid").as_bytes())
                .await;
        };
        if let Err(why) = self.cert_valid(&domain) {
            tracing::info!(peer = %self.peer, %domain, reason = %why, "SASL EXTERNAL refused");
            self.count_auth("certificate", false);
            return self.stream.send(failure("not-authorized").as_bytes()).await;
        }
        self.stream
            .send(format!("<success xmlns='{}'/>", ns::SASL).as_bytes())
            .await?;
        self.count_auth("certificate", true);
        self.sasl_done = true;
        self.authenticated(domain, self.local.clone(), AuthMethod::Certificate);
        // RFC 6120 §6.4.6: the stream starts again.
        self.stream.parser.reset();
        self.open(Duration::from_secs(self.s2s.cfg.connect_timeout_secs))
            .await
    }

    fn count_auth(&self, method: &str, ok: bool) {
        self.s2s
            .metrics
            .auth
            .with_label_values(&["in", method, if ok { "ok" } else { "failed" }])
            .inc();
    }

    fn authenticated(&mut self, remote: String, local: String, how: AuthMethod) {
        tracing::info!(peer = %self.peer, %remote, %local, auth = ?how, "server-to-server stream in authenticated");
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.state = "established";
        st.auth.get_or_insert(how);
        if !st.remote.contains(&remote) {
            st.remote.push(remote.clone());
        }
        drop(st);
        if !self.paired(&remote, &local) {
            self.pairs.push((remote, local));
        }
    }

    /// XEP-0220 §2.1: the peer offers a key for a (remote, local) pair.
    async fn db_result(&mut self, e: &TopElement) -> Result<(), Failure> {
        self.require_tls()?;
        let (Some(from), Some(to)) = (e.attr("from"), e.attr("to")) else {
            return Err(Failure::Protocol(
                StreamCondition::ImproperAddressing,
                "<db:result/> needs 'from' and 'to'".into(),
            ));
        };
        // Canonical forms (RFC 7622); what does not normalise stays as it
        // is and fails below.
        let norm = |d: &str| proto::jid::normalize_domain(d).unwrap_or_else(|_| d.to_string());
        let (from, to) = (norm(from), norm(to));
        let error = |cond: &str| {
            format!(
                "<db:result from='{}' to='{}' type='error'><error type='cancel'><{cond} xmlns='{}'/></error></db:result>",
                esc(&to),
                esc(&from),
                ns::STANZAS_ERR
            )
        };
        if !self.s2s.hosts(&to) {
            return self.stream.send(error("item-not-found").as_bytes()).await;
        }
        let canonical = proto::BareJid::domain_jid(&from)
            .ok()
            .is_some_and(|j| j.as_str() == from && j.local().is_none());
        if !canonical || self.s2s.hosts(&from) || from.len() > 1023 {
            return self.stream.send(error("not-allowed").as_bytes()).await;
        }
        if !self.s2s.allowed(&from) {
            self.s2s.refused("denied");
            return self.stream.send(error("not-allowed").as_bytes()).await;
        }
        if self.s2s.cfg.require_valid_certs {
            return self.stream.send(error("policy-violation").as_bytes()).await;
        }
        if self.paired(&from, &to) {
            return self
                .stream
                .send(verdict_result(&to, &from, true).as_bytes())
                .await;
        }
        if self.cert_valid(&from).is_ok() {
            // XEP-0344 §2.4: a certificate valid for the domain stands
            // for the callback ("dialback without dialback").
            self.count_auth("dialback", true);
            self.authenticated(from.clone(), to.clone(), AuthMethod::Dialback);
            return self
                .stream
                .send(verdict_result(&to, &from, true).as_bytes())
                .await;
        }
        if self.pending >= MAX_PENDING {
            return self
                .stream
                .send(error("resource-constraint").as_bytes())
                .await;
        }
        let key = self.stream.tree(e)?.text();
        self.pending += 1;
        let (s2s, id, tx) = (self.s2s.clone(), self.id.clone(), self.verdicts.clone());
        let Some(slot) = self.s2s.verify_slot() else {
            self.pending -= 1;
            return self
                .stream
                .send(error("resource-constraint").as_bytes())
                .await;
        };
        tokio::spawn(async move {
            let _slot = slot;
            let limit = Duration::from_secs(s2s.cfg.connect_timeout_secs);
            let verdict = match timeout(
                limit,
                super::outbound::verify(&s2s, &to, &from, &id, key.trim()),
            )
            .await
            {
                Ok(Ok(true)) => Verdict::Valid,
                Ok(Ok(false)) => Verdict::Invalid,
                // XEP-0220 §2.4: the callback could not be made.
                Ok(Err(e)) => {
                    tracing::info!(remote = %from, error = %e, "dialback verification failed");
                    Verdict::Error("remote-server-not-found")
                }
                Err(_) => {
                    tracing::debug!(remote = %from, "dialback verification timed out");
                    Verdict::Error("remote-server-timeout")
                }
            };
            let _ = tx.send((from, to, verdict)).await;
        });
        Ok(())
    }

    async fn verdict(
        &mut self,
        remote: String,
        local: String,
        verdict: Verdict,
    ) -> Result<(), Failure> {
        let answer = match verdict {
            Verdict::Valid => {
                self.count_auth("dialback", true);
                self.authenticated(remote.clone(), local.clone(), AuthMethod::Dialback);
                verdict_result(&local, &remote, true)
            }
            Verdict::Invalid => {
                self.count_auth("dialback", false);
                tracing::info!(peer = %self.peer, %remote, "dialback key did not verify");
                verdict_result(&local, &remote, false)
            }
            Verdict::Error(cond) => {
                self.count_auth("dialback", false);
                format!(
                    "<db:result from='{}' to='{}' type='error'><error type='cancel'><{cond} xmlns='{}'/></error></db:result>",
                    esc(&local),
                    esc(&remote),
                    ns::STANZAS_ERR
                )
            }
        };
        self.stream.send(answer.as_bytes()).await
    }

    /// XEP-0220 §2.2: as the authoritative server, say whether a key is
    /// one we gave.
    async fn db_verify(&mut self, e: &TopElement) -> Result<(), Failure> {
        let (Some(from), Some(to), Some(id)) = (e.attr("from"), e.attr("to"), e.attr("id")) else {
            return Err(Failure::Protocol(
                StreamCondition::ImproperAddressing,
                "<db:verify/> needs 'from', 'to' and 'id'".into(),
            ));
        };
        let key = self.stream.tree(e)?.text();
        // `to` is the domain that claims to have originated the stream
        // (ours), `from` the server that received it.
        let valid = self.s2s.hosts(to) && self.s2s.secret.verify(from, to, id, &key);
        let answer = format!(
            "<db:verify from='{}' to='{}' id='{}' type='{}'/>",
            esc(to),
            esc(from),
            esc(id),
            if valid { "valid" } else { "invalid" }
        );
        self.stream.send(answer.as_bytes()).await
    }

    async fn stanza(&mut self, e: TopElement) -> Result<(), Failure> {
        if self.pairs.is_empty() {
            self.s2s.refused("not_authorized");
            return Err(Failure::Protocol(
                StreamCondition::NotAuthorized,
                "stanzas before authentication".into(),
            ));
        }
        let (s, bad) = match Stanza::from_top(e) {
            Ok(s) => (s, None),
            // An address that is not a JID spoils that stanza only: it is
            // answered with jid-malformed (RFC 6120 §8.3.3.8), the stream
            // goes on.
            Err(EnvelopeError::Bad { error, stanza }) => (*stanza, Some(error)),
            Err(EnvelopeError::NotAStanza) => return Ok(()),
        };
        let Some(from) = &s.from else {
            if bad.is_some() {
                self.s2s.refused("jid_malformed");
                return Ok(());
            }
            return Err(Failure::Protocol(
                StreamCondition::ImproperAddressing,
                "stanzas between servers need 'from' and 'to'".into(),
            ));
        };
        let fd = from.domain();
        if !self.pairs.iter().any(|(r, _)| r == fd) {
            self.s2s.refused("unauthenticated_from");
            return Err(Failure::Protocol(
                StreamCondition::InvalidFrom,
                format!("{fd} was not authenticated on this stream"),
            ));
        }
        if let Some(error) = bad {
            self.s2s.refused("jid_malformed");
            if !(s.is_error() || (s.kind == Kind::Iq && s.stype() == "result")) {
                // The answer goes back on our own stream to that server.
                let raw = s.error_reply(
                    &error,
                    self.s2s
                        .hosted
                        .first()
                        .and_then(|d| proto::Jid::parse(d).ok())
                        .as_ref(),
                );
                if let Ok(reply) = Stanza::parse(&raw) {
                    self.s2s.queue(reply);
                }
            }
            return Ok(());
        }
        let Some(to) = &s.to else {
            return Err(Failure::Protocol(
                StreamCondition::ImproperAddressing,
                "stanzas between servers need 'from' and 'to'".into(),
            ));
        };
        let td = to.domain();
        if !self.paired(fd, td) {
            self.s2s.refused("unauthenticated_to");
            return Err(Failure::Protocol(
                StreamCondition::HostUnknown,
                format!("{td} was not authenticated on this stream"),
            ));
        }
        self.pace().await;
        self.track_presence(&s);
        self.counted.inc();
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stanzas += 1;
        self.s2s
            .core
            .route_inbound_wait(super::client_stanza(s))
            .await;
        Ok(())
    }

    /// `s2s.stanza_rate_per_sec`: a stream that sends faster waits (its
    /// socket is read no faster, so the peer's TCP slows down), and loses
    /// nothing.
    async fn pace(&mut self) {
        let rate = self.s2s.cfg.stanza_rate_per_sec;
        if rate == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        let at = self.next_stanza.filter(|t| *t > now).unwrap_or(now);
        if at > now {
            self.s2s.refused("rate");
            tokio::time::sleep_until(at).await;
        }
        self.next_stanza = Some(at + Duration::from_secs_f64(1.0 / f64::from(rate)));
    }

    /// Remember who has a remote resource's available presence.
    fn track_presence(&mut self, s: &Stanza) {
        if s.kind != Kind::Presence || !matches!(s.from, Some(proto::Jid::Full(_))) {
            return;
        }
        let (Some(from), Some(to)) = (&s.from, &s.to) else {
            return;
        };
        match s.stype() {
            "" => {
                if self.tracked >= MAX_TRACKED
                    || self.s2s.tracked.load(std::sync::atomic::Ordering::Relaxed)
                        >= MAX_TRACKED_ALL
                {
                    return;
                }
                if self
                    .available
                    .entry(from.clone())
                    .or_default()
                    .insert(to.clone())
                {
                    self.tracked += 1;
                    self.s2s
                        .tracked
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            "unavailable" => {
                if let Some(set) = self.available.get_mut(from) {
                    if set.remove(to) {
                        self.tracked -= 1;
                        self.s2s
                            .tracked
                            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if set.is_empty() {
                        self.available.remove(from);
                    }
                }
            }
            _ => {}
        }
    }

    /// Give this stream's share of `S2s::tracked` back.
    fn untrack(&mut self) {
        self.s2s
            .tracked
            .fetch_sub(self.tracked, std::sync::atomic::Ordering::Relaxed);
        self.tracked = 0;
        self.available.clear();
    }

    /// The stream is gone: whoever had a remote resource's available
    /// presence from it gets unavailable (the peer cannot send it now).
    fn gone(&mut self) {
        for (from, tos) in std::mem::take(&mut self.available) {
            for to in tos {
                let s = Stanza::written(
                    Kind::Presence,
                    Some(from.clone()),
                    vec![("type".to_string(), "unavailable".to_string())],
                    "",
                );
                let s = s.restamped(Some(from.clone()), Some(to));
                self.s2s.core.route_inbound(s);
            }
        }
    }
}

/// What a dialback callback found (XEP-0220 §2.1.4, §2.4).
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Valid,
    Invalid,
    /// It could not be made: this stanza error condition.
    Error(&'static str),
}

fn verdict_result(local: &str, remote: &str, valid: bool) -> String {
    format!(
        "<db:result from='{}' to='{}' type='{}'/>",
        esc(local),
        esc(remote),
        if valid { "valid" } else { "invalid" }
    )
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    proto::element::escape(s)
}
