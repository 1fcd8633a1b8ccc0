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
use proto::stanza::{Kind, Stanza};
use proto::xml::{StreamEvent, StreamHeader, TopElement};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use super::stream::{DIALBACK, DIALBACK_FEATURE, Failure, Transport, XmlStream, header};
use super::{AuthMethod, S2s, StreamInfo};
use crate::throttle::{Budget, StanzaBudget};

/// Most remote full JIDs whose available presence one stream remembers
/// (to send unavailable for them when the stream is lost).
const MAX_TRACKED: usize = 10_000;
/// Dialback verifications one stream may have running at once.
const MAX_PENDING: usize = 16;

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
                Ok((tcp, peer)) => match s2s.slot() {
                    Some(slot) => {
                        let s2s = s2s.clone();
                        conns.spawn(async move {
                            let _slot = slot;
                            run(s2s, tcp, peer, direct_tls).await;
                        });
                    }
                    None => {
                        s2s.metrics.refused.with_label_values(&["max_streams"]).inc();
                        tracing::warn!(%peer, "server-to-server connection refused: s2s.max_streams reached");
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
    conns.abort_all();
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
    /// Authenticated (remote, local) pairs.
    pairs: HashSet<(String, String)>,
    /// The peer authenticated its domain with SASL EXTERNAL.
    sasl_done: bool,
    /// Our stream header went out (a stream error needs one before it,
    /// RFC 6120 §4.9.1.1).
    said_hello: bool,
    status: Arc<Mutex<StreamInfo>>,
    /// Remote full JIDs that sent available presence, and to whom.
    available: HashMap<proto::Jid, HashSet<proto::Jid>>,
    budget: StanzaBudget,
    /// Dialback verifications under way: (remote, local, valid).
    verdicts: mpsc::Sender<(String, String, bool)>,
    pending: usize,
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
            Ok(Ok(t)) => Transport::Accepted(Box::new(t)),
            _ => return,
        }
    } else {
        Transport::Plain(tcp)
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
    let rate = s2s.cfg.stanza_rate_per_sec;
    let mut c = Inbound {
        stream: XmlStream::new(io, s2s.limits),
        peer,
        id: s2s.stream_id(),
        local: String::new(),
        claimed: None,
        pairs: HashSet::new(),
        sasl_done: false,
        said_hello: false,
        status,
        available: HashMap::new(),
        budget: StanzaBudget::new(rate, rate.max(1), std::time::Instant::now()),
        verdicts: tx,
        pending: 0,
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
    match result {
        Ok(()) | Err(Failure::Closed) => c.stream.close().await,
        Err(Failure::Xml(e)) => c.stream.fail(e.condition, Some(&e.text)).await,
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
    c.gone();
    gauge.dec();
    s2s.unregister_inbound(conn_id);
}

impl Inbound {
    async fn main(
        &mut self,
        verdicts: &mut mpsc::Receiver<(String, String, bool)>,
    ) -> Result<(), Failure> {
        let limit = Duration::from_secs(self.s2s.cfg.connect_timeout_secs);
        let idle = Duration::from_secs(self.s2s.cfg.idle_timeout_secs);
        // Until a pair is authenticated the peer has `connect_timeout_secs`
        // for each step; then `idle_timeout_secs` between stanzas.
        self.open(limit).await?;
        loop {
            let wait = if self.pairs.is_empty() && self.pending == 0 {
                limit
            } else {
                idle
            };
            let deadline = Instant::now() + wait;
            tokio::select! {
                ev = self.stream.next() => match ev? {
                    StreamEvent::Open(_) => {
                        return Err(Failure::Protocol(StreamCondition::InvalidXml, "a second stream header".into()));
                    }
                    StreamEvent::Element(e) => self.element(e).await?,
                    StreamEvent::Close => return Ok(()),
                },
                Some((remote, local, valid)) = verdicts.recv() => {
                    self.pending -= 1;
                    self.verdict(remote, local, valid).await?;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.pairs.is_empty() {
                        return Err(Failure::Timeout("not authenticated in time"));
                    }
                    return Ok(());
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
        let to = hdr.to.clone().unwrap_or_default();
        // Our header goes out first, so that an error can follow it.
        let from = if self.s2s.hosts(&to) {
            to.clone()
        } else {
            self.s2s.hosted.first().cloned().unwrap_or_default()
        };
        let answer = header(&from, hdr.from.as_deref(), Some(&self.id));
        self.said_hello = true;
        self.stream.send(answer.as_bytes()).await?;
        if hdr.default_ns.as_deref() != Some(ns::SERVER) {
            return Err(Failure::Protocol(
                StreamCondition::InvalidNamespace,
                "server-to-server streams are jabber:server".into(),
            ));
        }
        if hdr
            .version
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
            < Some(1)
        {
            return Err(Failure::Protocol(
                StreamCondition::UnsupportedVersion,
                "XMPP 1.0 (version='1.0') is required".into(),
            ));
        }
        if !self.s2s.hosts(&to) {
            self.s2s
                .metrics
                .refused
                .with_label_values(&["host_unknown"])
                .inc();
            return Err(Failure::Protocol(
                StreamCondition::HostUnknown,
                "this server does not host that domain".into(),
            ));
        }
        if let Some(f) = &hdr.from {
            let canonical = proto::BareJid::domain_jid(f)
                .ok()
                .filter(|j| j.as_str() == f && j.local().is_none());
            if canonical.is_none() {
                return Err(Failure::Protocol(
                    StreamCondition::InvalidFrom,
                    "'from' is not a domain".into(),
                ));
            }
            if !self.s2s.allowed(f) {
                self.s2s
                    .metrics
                    .refused
                    .with_label_values(&["denied"])
                    .inc();
                return Err(Failure::Protocol(
                    StreamCondition::PolicyViolation,
                    "federation with this domain is not allowed".into(),
                ));
            }
        }
        self.local = to;
        self.claimed = hdr.from.clone();
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.local = self.local.clone();
        st.tls = self.stream.is_tls();
        Ok(())
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
        self.pairs.insert((remote, local));
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
        let (from, to) = (from.to_string(), to.to_string());
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
        if !canonical || self.s2s.hosts(&from) {
            return self.stream.send(error("not-allowed").as_bytes()).await;
        }
        if !self.s2s.allowed(&from) {
            self.s2s
                .metrics
                .refused
                .with_label_values(&["denied"])
                .inc();
            return self.stream.send(error("not-allowed").as_bytes()).await;
        }
        if self.s2s.cfg.require_valid_certs {
            return self.stream.send(error("policy-violation").as_bytes()).await;
        }
        if self.pairs.contains(&(from.clone(), to.clone())) {
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
        tokio::spawn(async move {
            let limit = Duration::from_secs(s2s.cfg.connect_timeout_secs);
            let valid = match timeout(
                limit,
                super::outbound::verify(&s2s, &to, &from, &id, key.trim()),
            )
            .await
            {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    tracing::info!(remote = %from, error = %e, "dialback verification failed");
                    false
                }
                Err(_) => {
                    tracing::info!(remote = %from, "dialback verification timed out");
                    false
                }
            };
            let _ = tx.send((from, to, valid)).await;
        });
        Ok(())
    }

    async fn verdict(&mut self, remote: String, local: String, valid: bool) -> Result<(), Failure> {
        self.count_auth("dialback", valid);
        if valid {
            self.authenticated(remote.clone(), local.clone(), AuthMethod::Dialback);
        } else {
            tracing::info!(peer = %self.peer, %remote, "dialback key did not verify");
        }
        self.stream
            .send(verdict_result(&local, &remote, valid).as_bytes())
            .await
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
            self.s2s
                .metrics
                .refused
                .with_label_values(&["not_authorized"])
                .inc();
            return Err(Failure::Protocol(
                StreamCondition::NotAuthorized,
                "stanzas before authentication".into(),
            ));
        }
        let s = match Stanza::from_top(e) {
            Ok(s) => s,
            Err(_) => {
                return Err(Failure::Protocol(
                    StreamCondition::ImproperAddressing,
                    "a stanza address is not a JID".into(),
                ));
            }
        };
        let (Some(from), Some(to)) = (&s.from, &s.to) else {
            return Err(Failure::Protocol(
                StreamCondition::ImproperAddressing,
                "stanzas between servers need 'from' and 'to'".into(),
            ));
        };
        let (fd, td) = (from.domain().to_string(), to.domain().to_string());
        if !self.pairs.contains(&(fd.clone(), td.clone())) {
            self.s2s
                .metrics
                .refused
                .with_label_values(&["unauthenticated_from"])
                .inc();
            if self.pairs.iter().any(|(r, _)| *r == fd) {
                return Err(Failure::Protocol(
                    StreamCondition::HostUnknown,
                    format!("{td} was not authenticated on this stream"),
                ));
            }
            return Err(Failure::Protocol(
                StreamCondition::InvalidFrom,
                format!("{fd} was not authenticated on this stream"),
            ));
        }
        match self.budget.take(std::time::Instant::now()) {
            Budget::Take => {}
            Budget::Refuse => {
                self.s2s.metrics.refused.with_label_values(&["rate"]).inc();
                // The answer goes back on our own stream to that server.
                let err = proto::error::StanzaError::with_text(
                    proto::error::StanzaCondition::ResourceConstraint,
                    "too many stanzas from your server",
                );
                if !(s.is_error() || s.kind == Kind::Iq && s.stype() == "result")
                    && s.kind != Kind::Presence
                    && let Ok(reply) = Stanza::parse(&s.error_reply(&err, None))
                {
                    self.s2s.queue(reply);
                }
                return Ok(());
            }
            Budget::Close => {
                return Err(Failure::Protocol(
                    StreamCondition::PolicyViolation,
                    "too many stanzas".into(),
                ));
            }
        }
        self.track_presence(&s);
        self.s2s.metrics.stanzas.with_label_values(&["in"]).inc();
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

    /// Remember who has a remote resource's available presence.
    fn track_presence(&mut self, s: &Stanza) {
        if s.kind != Kind::Presence || !matches!(s.from, Some(proto::Jid::Full(_))) {
            return;
        }
        let (Some(from), Some(to)) = (&s.from, &s.to) else {
            return;
        };
        match s.stype() {
            "" if self.available.len() < MAX_TRACKED || self.available.contains_key(from) => {
                let set = self.available.entry(from.clone()).or_default();
                if set.len() < MAX_TRACKED {
                    set.insert(to.clone());
                }
            }
            "unavailable" => {
                if let Some(set) = self.available.get_mut(from) {
                    set.remove(to);
                    if set.is_empty() {
                        self.available.remove(from);
                    }
                }
            }
            _ => {}
        }
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
