//! Streams this server opens to others (RFC 6120 as the initiating
//! entity): find the peer, connect, secure (STARTTLS or direct TLS),
//! authenticate (SASL EXTERNAL, else Server Dialback), then write the
//! queued stanzas in order until idle. Also the short streams that verify
//! a dialback key with a peer's authoritative server (XEP-0220 §2.2).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use proto::error::{StanzaCondition, StreamCondition};
use proto::ns;
use proto::stanza::Stanza;
use proto::xml::{StreamEvent, StreamHeader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use super::stream::{DIALBACK, DIALBACK_FEATURE, Failure, XmlStream, header};
use super::{AuthMethod, Queued, S2s, Status};
use crate::io::Io;

/// Why no stream to a peer could be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// No server for the domain (DNS, or s2s.max_streams here).
    #[error("{0}")]
    NotFound(String),
    /// Its server does not take connections.
    #[error("{0}")]
    Unreachable(String),
    /// This server has no stream to spare (`s2s.max_streams`).
    #[error("{0}")]
    Busy(String),
    /// Reached, but the streams could not agree (TLS, authentication,
    /// policy).
    #[error("{0}")]
    Refused(String),
}

impl From<Failure> for ConnectError {
    fn from(f: Failure) -> ConnectError {
        ConnectError::Refused(f.to_string())
    }
}

/// A stream set up with a peer.
pub(crate) struct Conn {
    pub stream: XmlStream,
    pub peer: SocketAddr,
    pub auth: AuthMethod,
}

/// Serve the outbound stream from `key.0` to `key.1`, reading its queue.
pub(crate) async fn run(
    s2s: Arc<S2s>,
    key: (String, String),
    mut rx: mpsc::UnboundedReceiver<Queued>,
    queued: Arc<AtomicUsize>,
    status: Status,
) {
    let (local, remote) = (key.0.clone(), key.1.clone());
    let limit = Duration::from_secs(s2s.cfg.connect_timeout_secs);
    // Taken from the queue but not written (a stream broke under them):
    // first on the next stream.
    let mut pending: VecDeque<Queued> = VecDeque::new();
    loop {
        let outcome = match s2s.slot() {
            None => Err(Some(ConnectError::Busy(
                "too many server-to-server streams (s2s.max_streams)".to_string(),
            ))),
            Some(slot) => match timeout(limit, connect(&s2s, &local, &remote)).await {
                Ok(Ok(conn)) => Ok((conn, slot)),
                Ok(Err(e)) => Err(Some(e)),
                Err(_) => Err(None),
            },
        };
        match outcome {
            Ok((mut conn, _slot)) => {
                tracing::info!(%local, %remote, peer = %conn.peer, auth = ?conn.auth, "server-to-server stream out established");
                {
                    let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                    st.state = "established";
                    st.peer = Some(conn.peer.to_string());
                    st.tls = conn.stream.is_tls();
                    st.auth = Some(conn.auth);
                    st.since = super::unix_now();
                    // Counted per stream: a new stream starts at 0.
                    st.stanzas = 0;
                }
                let gauge = s2s.metrics.streams.with_label_values(&["out"]);
                gauge.inc();
                pump(&s2s, &mut conn, &mut rx, &mut pending, &queued, &status).await;
                gauge.dec();
                let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                st.state = "connecting";
                st.auth = None;
            }
            Err(e) => {
                // The log has the details; the sender is told in general
                // terms (no addresses of the peer's or of this network).
                let (cond, why, told) = match &e {
                    Some(ConnectError::NotFound(why)) => (
                        StanzaCondition::RemoteServerNotFound,
                        why.clone(),
                        format!("no server found for {remote}"),
                    ),
                    Some(ConnectError::Busy(why)) => (
                        StanzaCondition::ResourceConstraint,
                        why.clone(),
                        "too many streams to other servers here; try again later".to_string(),
                    ),
                    Some(ConnectError::Unreachable(why)) => (
                        StanzaCondition::RemoteServerNotFound,
                        why.clone(),
                        format!("the server of {remote} cannot be reached"),
                    ),
                    Some(ConnectError::Refused(why)) => (
                        StanzaCondition::RemoteServerNotFound,
                        why.clone(),
                        format!("no secure, authenticated stream with the server of {remote}"),
                    ),
                    None => (
                        StanzaCondition::RemoteServerTimeout,
                        format!("no stream within {} s", limit.as_secs()),
                        format!("no answer from the server of {remote}"),
                    ),
                };
                tracing::warn!(%local, %remote, reason = %why, "no server-to-server stream; waiting stanzas answered with errors");
                let mut failed: Vec<Stanza> = pending.drain(..).map(Queued::done).collect();
                while let Ok(q) = rx.try_recv() {
                    failed.push(q.done());
                }
                queued.fetch_sub(failed.len(), Ordering::Relaxed);
                s2s.metrics.bounced.inc_by(failed.len() as u64);
                s2s.bounce(failed, cond, &told);
            }
        }
        if *s2s.shutdown.borrow() || (pending.is_empty() && s2s.retire(&key, &rx)) {
            return;
        }
    }
}

/// Write what is pending, then what comes in the queue, until the stream
/// breaks (what was being written goes back to `pending`) or stays idle
/// for `idle_timeout_secs`.
async fn pump(
    s2s: &S2s,
    conn: &mut Conn,
    rx: &mut mpsc::UnboundedReceiver<Queued>,
    pending: &mut VecDeque<Queued>,
    queued: &AtomicUsize,
    status: &Status,
) {
    let idle = Duration::from_secs(s2s.cfg.idle_timeout_secs);
    let counter = s2s.metrics.stanzas.with_label_values(&["out"]);
    let mut shutdown = s2s.shutdown.clone();
    let mut last = Instant::now();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut batch: Vec<Queued> = Vec::new();
    loop {
        if pending.is_empty() {
            tokio::select! {
                q = rx.recv() => {
                    let Some(q) = q else { return };
                    pending.push_back(q);
                }
                ev = conn.stream.next() => match ev {
                    // Nothing is expected from the peer on this stream but
                    // whitespace and its end.
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::info!(reason = %e, "server-to-server stream out ended by the peer");
                        return;
                    }
                },
                _ = tokio::time::sleep_until(last + idle) => {
                    conn.stream.close().await;
                    return;
                }
                _ = crate::s2s::stream::stopping(&mut shutdown) => {
                    conn.stream.close().await;
                    return;
                }
            }
        }
        // `queued` counts these until they are written (or answered).
        while let Ok(q) = rx.try_recv() {
            pending.push_back(q);
        }
        buf.clear();
        batch.clear();
        while buf.len() < 64 * 1024 {
            let Some(q) = pending.pop_front() else { break };
            buf.extend_from_slice(&super::server_bytes(&q.s));
            batch.push(q);
        }
        if let Err(e) = conn.stream.send(&buf).await {
            tracing::info!(error = %e, "server-to-server stream out broke; its stanzas wait for the next one");
            for q in batch.drain(..).rev() {
                pending.push_front(q);
            }
            return;
        }
        let n = batch.len() as u64;
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
        for q in batch.drain(..) {
            q.done();
        }
        counter.inc_by(n);
        status.lock().unwrap_or_else(|p| p.into_inner()).stanzas += n;
        last = Instant::now();
    }
}

/// A stream from `local` to `remote`, secured and authenticated.
pub(crate) async fn connect(s2s: &S2s, local: &str, remote: &str) -> Result<Conn, ConnectError> {
    let mut open = open(s2s, local, remote).await?;
    let features = &open.features;
    let external = features.child("mechanisms", ns::SASL).is_some_and(|m| {
        m.elements()
            .any(|c| c.name == "mechanism" && c.text() == "EXTERNAL")
    });
    let direction = ["out"];
    if external && open.stream.is_tls() {
        let authzid = base64::engine::general_purpose::STANDARD.encode(local);
        open.stream
            .send(
                format!(
                    "<auth xmlns='{}' mechanism='EXTERNAL'>{authzid}</auth>",
                    ns::SASL
                )
                .as_bytes(),
            )
            .await?;
        let e = open.stream.element().await?;
        if e.ns == ns::SASL && e.name == "success" {
            // RFC 6120 §6.4.6: a new stream after SASL.
            open.stream.parser.reset();
            restart(&mut open.stream, local, remote).await?;
            s2s.metrics
                .auth
                .with_label_values(&[direction[0], "certificate", "ok"])
                .inc();
            return Ok(Conn {
                stream: open.stream,
                peer: open.peer,
                auth: AuthMethod::Certificate,
            });
        }
        s2s.metrics
            .auth
            .with_label_values(&[direction[0], "certificate", "failed"])
            .inc();
        tracing::info!(%remote, "the peer refused our certificate (SASL EXTERNAL); trying dialback");
    }
    if s2s.cfg.require_valid_certs {
        return Err(ConnectError::Refused(
            "the peer did not accept our certificate, and s2s.require_valid_certs allows nothing else"
                .to_string(),
        ));
    }
    let dialback = features.child("dialback", DIALBACK_FEATURE).is_some()
        || open
            .stream
            .parser
            .stream_prefixes()
            .iter()
            .any(|(_, n)| n == DIALBACK);
    if !dialback {
        return Err(ConnectError::Refused(
            "the peer offers neither SASL EXTERNAL for our certificate nor dialback".to_string(),
        ));
    }
    let key = s2s.secret.key(remote, local, &open.id);
    open.stream
        .send(
            format!(
                "<db:result from='{}' to='{}'>{key}</db:result>",
                esc(local),
                esc(remote)
            )
            .as_bytes(),
        )
        .await?;
    loop {
        let e = open.stream.element().await?;
        if e.ns != DIALBACK || e.name != "result" {
            continue;
        }
        if e.attr("from") != Some(remote) || e.attr("to") != Some(local) {
            continue;
        }
        return match e.attr("type") {
            Some("valid") => {
                s2s.metrics
                    .auth
                    .with_label_values(&[direction[0], "dialback", "ok"])
                    .inc();
                Ok(Conn {
                    stream: open.stream,
                    peer: open.peer,
                    auth: AuthMethod::Dialback,
                })
            }
            t => {
                s2s.metrics
                    .auth
                    .with_label_values(&[direction[0], "dialback", "failed"])
                    .inc();
                Err(ConnectError::Refused(format!(
                    "the peer answered our dialback key with type={}",
                    t.unwrap_or("(none)")
                )))
            }
        };
    }
}

/// Ask `remote`'s authoritative server whether `key` is the key it gave
/// for stream `id`, on which it claimed to be `remote` to our `local`
/// (XEP-0220 §2.2).
pub(crate) async fn verify(
    s2s: &S2s,
    local: &str,
    remote: &str,
    id: &str,
    key: &str,
) -> Result<bool, ConnectError> {
    let mut open = open(s2s, local, remote).await?;
    open.stream
        .send(
            format!(
                "<db:verify from='{}' to='{}' id='{}'>{}</db:verify>",
                esc(local),
                esc(remote),
                esc(id),
                esc(key)
            )
            .as_bytes(),
        )
        .await?;
    loop {
        let e = open.stream.element().await?;
        if e.ns == DIALBACK && e.name == "verify" && e.attr("id") == Some(id) {
            let valid = e.attr("type") == Some("valid")
                && e.attr("from") == Some(remote)
                && e.attr("to") == Some(local);
            open.stream.close().await;
            return Ok(valid);
        }
    }
}

/// A stream that has been opened and secured, before authentication.
struct Open {
    stream: XmlStream,
    peer: SocketAddr,
    /// The peer's stream id.
    id: String,
    features: proto::Element,
}

async fn open(s2s: &S2s, local: &str, remote: &str) -> Result<Open, ConnectError> {
    let targets = s2s
        .resolver
        .targets(remote)
        .await
        .map_err(|e| ConnectError::NotFound(e.to_string()))?;
    let mut last = ConnectError::NotFound("no address".to_string());
    for t in targets {
        let addrs = match s2s.resolver.addresses(&t.host, t.port).await {
            Ok(a) => a,
            Err(e) => {
                last = ConnectError::NotFound(e.to_string());
                continue;
            }
        };
        for addr in addrs {
            let tcp = match timeout(Duration::from_secs(10), TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    last = ConnectError::Unreachable(format!("{addr}: {e}"));
                    continue;
                }
                Err(_) => {
                    last = ConnectError::Unreachable(format!("{addr}: connection timed out"));
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            match negotiate(s2s, tcp, addr, t.direct_tls, local, remote).await {
                Ok(o) => return Ok(o),
                Err(e) => {
                    tracing::info!(%remote, %addr, error = %e, "server-to-server connection failed");
                    last = e;
                }
            }
        }
    }
    Err(last)
}

async fn negotiate(
    s2s: &S2s,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    local: &str,
    remote: &str,
) -> Result<Open, ConnectError> {
    let io = if direct_tls {
        let name = super::stream::server_name(remote)?;
        let tls = s2s
            .tls()
            .client_direct
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::Refused(format!("TLS: {e}")))?;
        Io::TlsOut(Box::new(tls))
    } else {
        Io::Plain(tcp)
    };
    let mut stream = XmlStream::new(io, s2s.limits);
    let (mut hdr, mut features) = restart(&mut stream, local, remote).await?;
    if !stream.is_tls() {
        if features.child("starttls", ns::TLS).is_some() {
            stream
                .send(format!("<starttls xmlns='{}'/>", ns::TLS).as_bytes())
                .await?;
            let e = stream.element().await?;
            if e.ns != ns::TLS || e.name != "proceed" {
                return Err(ConnectError::Refused(
                    "STARTTLS refused by the peer".to_string(),
                ));
            }
            stream
                .connect_tls(&s2s.tls().client, remote)
                .await
                .map_err(|e| ConnectError::Refused(format!("TLS: {e}")))?;
            (hdr, features) = restart(&mut stream, local, remote).await?;
        } else if s2s.cfg.require_encryption {
            stream
                .fail(StreamCondition::PolicyViolation, Some("TLS is required"))
                .await;
            return Err(ConnectError::Refused(
                "the peer offers no TLS and s2s.require_encryption is on".to_string(),
            ));
        }
    }
    if stream.is_tls()
        && let Err(why) = s2s.tls().check(stream.peer_certs().as_deref(), remote)
    {
        if s2s.cfg.require_valid_certs {
            stream
                .fail(
                    StreamCondition::PolicyViolation,
                    Some("invalid certificate"),
                )
                .await;
            return Err(ConnectError::Refused(format!(
                "the peer's certificate is not valid for {remote}: {why}"
            )));
        }
        tracing::debug!(%remote, reason = %why, "the peer's certificate is not valid: dialback will decide");
    }
    Ok(Open {
        stream,
        peer,
        id: hdr.id.unwrap_or_default(),
        features,
    })
}

/// Send our header, read the peer's and its features.
async fn restart(
    stream: &mut XmlStream,
    local: &str,
    remote: &str,
) -> Result<(StreamHeader, proto::Element), ConnectError> {
    stream
        .send(header(local, Some(remote), None).as_bytes())
        .await?;
    let hdr = match stream.next().await? {
        StreamEvent::Open(h) => h,
        _ => return Err(ConnectError::Refused("no stream header".to_string())),
    };
    if hdr.default_ns.as_deref() != Some(ns::SERVER) {
        stream.fail(StreamCondition::InvalidNamespace, None).await;
        return Err(ConnectError::Refused(
            "the peer's stream is not jabber:server".to_string(),
        ));
    }
    if !super::stream::speaks_xmpp_1(&hdr) {
        stream.fail(StreamCondition::UnsupportedVersion, None).await;
        return Err(ConnectError::Refused(
            "the peer does not speak XMPP 1.0".to_string(),
        ));
    }
    let e = stream.element().await?;
    if e.ns != ns::STREAM || e.name != "features" {
        return Err(ConnectError::Refused("no stream features".to_string()));
    }
    let features = stream.tree(&e)?;
    Ok((hdr, features))
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    proto::element::escape(s)
}
