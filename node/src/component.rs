//! External components (XEP-0114, the "accept" protocol): a gateway or
//! bridge connects, names its domain in the stream header, proves the
//! shared secret with `<handshake/>` (SHA-1 of the stream id and the
//! secret), and then sends stanzas from any address at its domain and
//! receives every stanza to one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::error::StreamCondition;
use proto::stanza::Stanza;
use proto::xml::{StreamEvent, TopElement};
use router::{Outbound, Received, SessionSink};
use sha1::{Digest, Sha1};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::core_link::CoreLink;
use crate::io::Io;
use crate::s2s::stream::{Failure, XmlStream};

/// The component protocol's namespace.
pub const ACCEPT: &str = "jabber:component:accept";
/// How long a component has for its header and handshake.
const HANDSHAKE: Duration = Duration::from_secs(30);
/// Stanzas, and their bytes, queued for one component before it is
/// disconnected (it does not read them).
const QUEUE: usize = 100_000;
const QUEUE_BYTES: usize = 64 << 20;

pub struct Components {
    pub secrets: BTreeMap<String, String>,
    pub core: CoreLink,
    pub limits: proto::xml::Limits,
    /// The edge's connection ids (in a cluster they name the edge).
    pub edge: Arc<crate::edge::Edge>,
}

/// How often a connected component is bound again at its domain's shard:
/// in a cluster the shard's leader may change (the binding is not
/// replicated), and the new one learns of the component this way.
const REBIND: Duration = Duration::from_secs(5);

/// Accept component connections until shutdown.
pub async fn serve(listener: TcpListener, c: Arc<Components>, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    conns.spawn(run(c.clone(), tcp, peer, shutdown.clone()));
                }
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
    // The connections see the same signal and end with <system-shutdown/>.
    let _ = timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

async fn run(
    c: Arc<Components>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let mut stream = XmlStream::new(Io::Plain(tcp), c.limits);
    let id = format!("{:016x}", rand::random::<u64>());
    let domain = match timeout(HANDSHAKE, handshake(&c, &mut stream, &id)).await {
        Ok(Ok(d)) => d,
        Ok(Err(f)) => return end(&mut stream, f, peer).await,
        Err(_) => {
            return end(&mut stream, Failure::Timeout("no handshake in time"), peer).await;
        }
    };
    let conn_id = c.edge.next_conn_id();
    let (sink, mut inbox) = SessionSink::channel_bounded(conn_id, QUEUE, QUEUE_BYTES);
    if let Err(e) = c.core.bind_component(domain.clone(), sink.clone()).await {
        tracing::warn!(%domain, error = %e, "component not connected");
        let f = Failure::Protocol(StreamCondition::InternalServerError, e);
        return end(&mut stream, f, peer).await;
    }
    tracing::info!(%domain, %peer, "component connected (XEP-0114)");
    let result: Result<(), Failure> = async {
        stream.send(b"<handshake/>").await?;
        let mut rebind = tokio::time::interval(REBIND);
        rebind.tick().await;
        loop {
            tokio::select! {
                _ = crate::s2s::stream::stopping(&mut shutdown) => {
                    return Err(Failure::Protocol(StreamCondition::SystemShutdown, "the server is stopping".into()));
                }
                _ = rebind.tick() => {
                    if let Err(e) = c.core.bind_component(domain.clone(), sink.clone()).await {
                        tracing::warn!(%domain, error = %e, "component not bound again");
                    }
                }
                r = inbox.recv() => match r {
                    Received::Item(Outbound::Stanza(b) | Outbound::Addressed(b), _) => {
                        let mut buf = b.to_vec();
                        while buf.len() < 64 * 1024 {
                            match inbox.try_recv() {
                                Some((Outbound::Stanza(b) | Outbound::Addressed(b), _)) => buf.extend_from_slice(&b),
                                Some((Outbound::Close(cond, text), _)) => {
                                    stream.send(&buf).await?;
                                    return Err(Failure::Protocol(cond, text.unwrap_or_default()));
                                }
                                Some(_) => {}
                                None => break,
                            }
                        }
                        stream.send(&buf).await?;
                    }
                    Received::Item(Outbound::Close(cond, text), _) => {
                        return Err(Failure::Protocol(cond, text.unwrap_or_default()));
                    }
                    Received::Item(_, _) => {}
                    Received::Overflowed => {
                        return Err(Failure::Protocol(StreamCondition::PolicyViolation, "the component does not read its stanzas".into()));
                    }
                    _ => return Ok(()),
                },
                ev = stream.next() => match ev? {
                    StreamEvent::Element(e) => {
                        if let Some(answer) = stanza(&c, &domain, e).await? {
                            stream.send(&answer).await?;
                        }
                    }
                    StreamEvent::Open(_) => {
                        return Err(Failure::Protocol(StreamCondition::InvalidXml, "a second stream header".into()));
                    }
                    StreamEvent::Close => return Ok(()),
                },
            }
        }
    }
    .await;
    if let Err(e) = c.core.unbind_component(domain.clone(), conn_id).await {
        tracing::debug!(%domain, error = %e, "component not unbound");
    }
    tracing::info!(%domain, %peer, "component disconnected");
    match result {
        Ok(()) => stream.close().await,
        Err(f) => end(&mut stream, f, peer).await,
    }
}

/// Read the header and the handshake: the component's domain.
async fn handshake(c: &Components, stream: &mut XmlStream, id: &str) -> Result<String, Failure> {
    let hdr = match stream.next().await? {
        StreamEvent::Open(h) => h,
        _ => {
            return Err(Failure::Protocol(
                StreamCondition::NotWellFormed,
                "no stream header".into(),
            ));
        }
    };
    let domain = hdr.to.clone().unwrap_or_default();
    let answer = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{ACCEPT}' xmlns:stream='http://etherx.jabber.org/streams' from='{}' id='{id}'>",
        proto::element::escape(&domain)
    );
    stream.send(answer.as_bytes()).await?;
    if hdr.default_ns.as_deref() != Some(ACCEPT) {
        return Err(Failure::Protocol(
            StreamCondition::InvalidNamespace,
            format!("components speak {ACCEPT}"),
        ));
    }
    let Some(secret) = c.secrets.get(&domain) else {
        return Err(Failure::Protocol(
            StreamCondition::HostUnknown,
            "no component is configured for that domain".into(),
        ));
    };
    let e = stream.element().await?;
    if e.name != "handshake" || e.ns != ACCEPT {
        return Err(Failure::Protocol(
            StreamCondition::NotAuthorized,
            "the handshake comes first".into(),
        ));
    }
    let got = stream.tree(&e)?.text().trim().to_ascii_lowercase();
    let want = hex(&Sha1::digest(format!("{id}{secret}").as_bytes()));
    use subtle::ConstantTimeEq;
    if !bool::from(want.as_bytes().ct_eq(got.as_bytes())) {
        tracing::warn!(%domain, "component handshake with a wrong secret");
        return Err(Failure::Protocol(
            StreamCondition::NotAuthorized,
            "wrong handshake".into(),
        ));
    }
    Ok(domain)
}

/// A stanza from the component: its 'from' must be at its domain.
/// What to answer the component with, if anything.
async fn stanza(
    c: &Components,
    domain: &str,
    e: TopElement,
) -> Result<Option<bytes::Bytes>, Failure> {
    if e.ns != ACCEPT || !matches!(e.name.as_str(), "message" | "presence" | "iq") {
        return Err(Failure::Protocol(
            StreamCondition::UnsupportedStanzaType,
            format!("<{}/> in {}", e.name, e.ns),
        ));
    }
    let s = match Stanza::from_top(e) {
        Ok(s) => s,
        // An address that is not a JID spoils that stanza only: it is
        // answered with jid-malformed (RFC 6120 §8.3.3.8).
        Err(proto::stanza::EnvelopeError::Bad { error, stanza }) => {
            let ours = stanza.from.as_ref().is_some_and(|f| f.domain() == domain);
            let answerable = !(stanza.is_error()
                || (stanza.kind == proto::stanza::Kind::Iq && stanza.stype() == "result"));
            return Ok((ours && answerable).then(|| stanza.error_reply(&error, None)));
        }
        Err(proto::stanza::EnvelopeError::NotAStanza) => return Ok(None),
    };
    let (Some(from), Some(_)) = (&s.from, &s.to) else {
        return Err(Failure::Protocol(
            StreamCondition::ImproperAddressing,
            "a component's stanzas need 'from' and 'to'".into(),
        ));
    };
    if from.domain() != domain {
        return Err(Failure::Protocol(
            StreamCondition::InvalidFrom,
            format!("'from' must be at {domain}"),
        ));
    }
    // Its namespace becomes that of the stream it is delivered on.
    let s = s.renamespaced(ACCEPT, None);
    c.core.route_inbound_wait(s).await;
    Ok(None)
}

async fn end(stream: &mut XmlStream, f: Failure, peer: SocketAddr) {
    match f {
        Failure::Xml(e) => stream.fail(e.condition, Some(&e.text)).await,
        Failure::Protocol(cond, text) => {
            tracing::info!(%peer, condition = cond.name(), reason = %text, "component stream ended");
            stream.fail(cond, Some(&text)).await
        }
        Failure::Timeout(what) => {
            stream
                .fail(StreamCondition::ConnectionTimeout, Some(what))
                .await
        }
        Failure::Closed => stream.close().await,
        other => tracing::debug!(%peer, error = %other, "component connection ended"),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
