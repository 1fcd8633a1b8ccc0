//! XMPP over BOSH (XEP-0124, XEP-0206) at `/http-bind`, on the same HTTP
//! listeners as WebSocket (`ws.rs`: `listeners.websocket` and
//! `listeners.websocket_tls`). A BOSH session is one more transport under
//! the same stream machine and driver as TCP and WebSocket (`conn.rs`):
//! [`io::BoshIo`] gives the machine what the client's requests carry and
//! the client's waiting requests what the machine writes, so
//! authentication, binding, routing, limits and rate limits are those of
//! every stream. A session outlives the HTTP connections its requests come
//! on; it holds one place in the edge's connection count (as a TCP or
//! WebSocket client does), taken at its creation.
//!
//! `session.rs` keeps the protocol's bookkeeping (rids, holding, the
//! response cache, acknowledgements, pauses, overactivity, the end),
//! `body.rs` reads and writes the `<body/>` wrapper, and this file serves
//! the HTTP side: the POST that carries a `<body/>`, the CORS preflight,
//! and the creation of sessions.
//!
//! Memory: an idle session (one request held) keeps its state (a few
//! hundred bytes), its last response for a retransmission (an empty one
//! most of the time), the held request's channel, and its stream's driver
//! task with the machine and parser, which hold no buffer while idle.

mod body;
mod io;
mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub(crate) use io::BoshIo;
use session::{Condition, Reply, Terms, parse_rid};

use crate::ws::Accepted;

/// The path of the BOSH endpoint.
pub const PATH: &str = "/http-bind";

/// The highest version of XEP-0124 spoken here.
const VERSION: (u64, u64) = (1, 11);
/// Time a client gets to send a request's body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes for a client kept waiting for its next request before the
/// stream's writes wait.
const MAX_OUTBOUND: usize = 512 * 1024;
const TEXT_XML: &str = "text/xml; charset=utf-8";

/// What the BOSH endpoint offers, from `[bosh]`.
#[derive(Debug, Clone)]
pub struct BoshSettings {
    /// Longest time a request is held (a client's longer 'wait' is cut
    /// to it).
    pub max_wait: Duration,
    /// Longest time without a request before a session is over.
    pub inactivity: Duration,
    /// Shortest interval between two empty polls of a polling session.
    pub polling: Duration,
    /// Most requests held at once (a client's larger 'hold' is cut to it).
    pub max_hold: usize,
    /// Longest pause a client may ask for; zero: none.
    pub max_pause: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// The BOSH URL announced by host-meta (XEP-0156); unset: made of the
    /// request's `Host`.
    pub public_url: Option<String>,
}

impl Default for BoshSettings {
    fn default() -> BoshSettings {
        BoshSettings {
            max_wait: Duration::from_secs(60),
            inactivity: Duration::from_secs(60),
            polling: Duration::from_secs(2),
            max_hold: 1,
            max_pause: Duration::from_secs(120),
            max_body_bytes: 264 * 1024,
            public_url: None,
        }
    }
}

/// The BOSH sessions of this edge, by sid.
pub struct Hub {
    pub settings: BoshSettings,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("settings", &self.settings)
            .field("sessions", &self.len())
            .finish()
    }
}

impl Hub {
    pub fn new(settings: BoshSettings) -> Arc<Hub> {
        Arc::new(Hub {
            settings,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, sid: &str) -> Option<Arc<Session>> {
        self.map().get(sid).cloned()
    }
}

/// One session: its sid, the Content-Type of its responses, and its
/// state.
pub(crate) struct Session {
    sid: String,
    content_type: HeaderValue,
    hub: Weak<Hub>,
    st: Mutex<session::State>,
    released: AtomicBool,
}

impl Session {
    /// Run `f` on the state; a session that is over leaves the hub.
    fn with<R>(&self, f: impl FnOnce(&mut session::State) -> R) -> R {
        let (r, gone) = {
            let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
            let r = f(&mut st);
            (r, st.gone)
        };
        if gone
            && !self.released.swap(true, Ordering::Relaxed)
            && let Some(hub) = self.hub.upgrade()
        {
            hub.map().remove(&self.sid);
        }
        r
    }
}

/// A request waiting for its answer. Dropped early (the client's HTTP
/// connection went), the session learns it, so that the request holds
/// nothing up.
struct Waiting {
    session: Arc<Session>,
    rid: Option<u64>,
    rx: Option<oneshot::Receiver<Reply>>,
}

impl Waiting {
    async fn reply(mut self, wait: Duration) -> Reply {
        // The receiver stays in `self` while it is awaited, so that a drop
        // closes it before the session is told (see `Drop`).
        let first = match self.rx.as_mut() {
            Some(rx) => tokio::time::timeout(wait, rx).await,
            None => return Condition::ItemNotFound.reply(false),
        };
        let r = match first {
            Ok(r) => r.ok(),
            Err(_) => {
                if let Some(rid) = self.rid {
                    let now = Instant::now();
                    self.session.with(|st| st.expire(rid, now));
                }
                match self.rx.as_mut() {
                    Some(rx) => tokio::time::timeout(Duration::from_secs(1), rx)
                        .await
                        .ok()
                        .and_then(Result::ok),
                    None => None,
                }
            }
        };
        self.rid = None;
        r.unwrap_or_else(|| Reply::ok(body::response(&[], b"")))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Still waiting: the client is gone; its request no longer holds.
        if self.rid.is_some() {
            drop(self.rx.take());
            let now = Instant::now();
            self.session.with(|st| st.dispatch(now));
        }
    }
}

/// `POST /http-bind`: one `<body/>`.
pub(crate) async fn post(
    State(acc): State<Arc<Accepted>>,
    headers: HeaderMap,
    request: Body,
) -> Response {
    let Some(hub) = acc.settings.bosh.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(origin) = cors_origin(&acc.settings.origins, &headers) else {
        return (StatusCode::FORBIDDEN, "this origin may not connect\n").into_response();
    };
    let text_xml = HeaderValue::from_static(TEXT_XML);
    // Only XML is taken: a form of another site posts text/plain or
    // form-encoded bodies without asking (no CORS preflight), and must
    // not be able to drive a session.
    if let Some(ct) = headers.get(header::CONTENT_TYPE)
        && !ct.to_str().is_ok_and(is_xml_type)
    {
        tracing::debug!(peer = %acc.peer, "BOSH request refused: not an XML content type");
        return respond(Condition::BadRequest.reply(false), &text_xml, origin);
    }
    let raw = match read_body(request, hub.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(start) => {
            // Too large (or cut off): the session it names, if any, ends.
            tracing::debug!(peer = %acc.peer, "BOSH request body too large or incomplete");
            if let Some(s) = start
                .as_deref()
                .and_then(sid_hint)
                .and_then(|s| hub.get(&s))
            {
                s.with(|st| st.kill(Condition::PolicyViolation, None));
            }
            return respond(Condition::PolicyViolation.reply(false), &text_xml, origin);
        }
    };
    let req = match body::parse(&raw) {
        Ok(r) => r,
        Err(why) => {
            tracing::debug!(peer = %acc.peer, why, "BOSH request refused");
            if let Some(s) = sid_hint(&raw).and_then(|s| hub.get(&s)) {
                s.with(|st| st.kill(Condition::BadRequest, None));
            }
            return respond(Condition::BadRequest.reply(false), &text_xml, origin);
        }
    };
    let rid = req.attr("rid").and_then(parse_rid);
    let (tx, rx) = oneshot::channel();
    let session = match req.attr("sid") {
        None => match create(&acc, &hub, req, tx) {
            Ok(s) => s,
            Err(reply) => return respond(reply, &text_xml, origin),
        },
        Some(sid) => match hub.get(sid) {
            Some(s) => {
                let now = Instant::now();
                s.with(|st| st.request(req, tx, now));
                s
            }
            // §17.2: an unknown sid (or one whose session is over).
            None => return respond(Condition::ItemNotFound.reply(false), &text_xml, origin),
        },
    };
    let wait = session.with(|st| st.terms().wait);
    let content_type = session.content_type.clone();
    let reply = Waiting {
        session,
        rid,
        rx: Some(rx),
    }
    .reply(wait)
    .await;
    respond(reply, &content_type, origin)
}

/// `OPTIONS /http-bind`: the CORS preflight of a browser's POST.
pub(crate) async fn preflight(State(acc): State<Arc<Accepted>>, headers: HeaderMap) -> Response {
    let Ok(origin) = cors_origin(&acc.settings.origins, &headers) else {
        return (StatusCode::FORBIDDEN, "this origin may not connect\n").into_response();
    };
    let allow_headers = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| {
            v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(b))
        })
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("content-type"));
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        origin.unwrap_or_else(|| HeaderValue::from_static("*")),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    r
}

/// The browser origin to allow in the response (`None` when the request
/// has no `Origin`: not from a browser); `Err` for an origin not allowed
/// (`websocket.origins`, shared with WebSocket; empty: any).
fn cors_origin(allowed: &[String], headers: &HeaderMap) -> Result<Option<HeaderValue>, ()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    let text = origin.to_str().map_err(|_| ())?;
    if !allowed.is_empty() && !allowed.iter().any(|o| o == text) {
        return Err(());
    }
    Ok(Some(origin.clone()))
}

/// A media type that is XML (`text/xml`, `application/xml`, or any
/// `+xml`), with or without parameters.
fn is_xml_type(value: &str) -> bool {
    let t = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    t == "text/xml" || t == "application/xml" || (t.ends_with("+xml") && !t.contains("html"))
}

fn respond(reply: Reply, content_type: &HeaderValue, origin: Option<HeaderValue>) -> Response {
    let mut r = (reply.status, reply.body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

/// The request's body, at most `max` bytes; `Err` with its start (for
/// the sid it names) when larger, or when it does not come whole in time.
async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    let read = tokio::time::timeout(BODY_TIMEOUT, async {
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk.map_err(|_| ())?;
            if out.len() + chunk.len() > max {
                let keep = (1024 - out.len().min(1024)).min(chunk.len());
                out.extend_from_slice(&chunk[..keep]);
                out.truncate(1024);
                return Err(());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) => Ok(out),
        _ => Err(Some(out)),
    }
}

/// The sid named by the `<body>` start tag at the head of `b`, read
/// without parsing (the body is too large or not XML).
fn sid_hint(b: &[u8]) -> Option<String> {
    let head = &b[..crate::scan::start_tag(b)?];
    let sid = crate::scan::attr(head, b"sid")?;
    (!sid.is_empty() && sid.len() <= 64 && sid.iter().all(u8::is_ascii_alphanumeric))
        .then(|| String::from_utf8_lossy(sid).into_owned())
}

/// A session creation request (XEP-0124 §7.1, XEP-0206 §3): the session,
/// with `tx` waiting for its first response; or the reason it is refused.
fn create(
    acc: &Accepted,
    hub: &Arc<Hub>,
    req: body::Request,
    tx: oneshot::Sender<Reply>,
) -> Result<Arc<Session>, Reply> {
    let legacy = req.attr("ver").is_none();
    let refuse = |c: Condition| c.reply(legacy);
    let Some(rid) = req.attr("rid").and_then(parse_rid) else {
        return Err(refuse(Condition::BadRequest));
    };
    let edge = &acc.edge;
    if *edge.shutdown.borrow() || edge.drain_signal().borrow().is_some() {
        return Err(refuse(Condition::SystemShutdown));
    }
    let Some(to) = req.attr("to").map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(refuse(Condition::ImproperAddressing));
    };
    let domain = match proto::jid::normalize_domain(to) {
        Ok(d) if edge.settings().domains.contains(&d) => d,
        _ => return Err(refuse(Condition::HostUnknown)),
    };
    let s = &hub.settings;
    let number = |name: &str, default: u64| -> Result<u64, Reply> {
        match req.attr(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| refuse(Condition::BadRequest)),
        }
    };
    // §7.2: the server's wait and hold are at most the client's.
    let wait = Duration::from_secs(number("wait", s.max_wait.as_secs())?).min(s.max_wait);
    let hold = usize::try_from(number("hold", 1)?)
        .unwrap_or(usize::MAX)
        .min(s.max_hold);
    // An XML type only: a response served as HTML would run what a
    // stanza carries as script in the server's origin.
    let content_type = match req.attr("content") {
        None => HeaderValue::from_static(TEXT_XML),
        Some(c) => match HeaderValue::from_str(c.trim()) {
            Ok(v) if c.len() <= 128 && is_xml_type(c) => v,
            _ => return Err(refuse(Condition::BadRequest)),
        },
    };
    let ver = req
        .attr("ver")
        .and_then(parse_version)
        .map_or(VERSION, |v| v.min(VERSION));
    let acks = req.attr("ack").map(str::trim) == Some("1");
    let Some(slot) = edge.admit(acc.peer.ip()) else {
        edge.metrics.refused.inc();
        tracing::warn!(peer = %acc.peer, "BOSH session refused: connection limit reached");
        // As the TCP listener says it: the stream's error.
        let error = b"<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too many connections</text></stream:error>";
        let attrs = [
            ("type", "terminate".to_string()),
            ("condition", "remote-stream-error".to_string()),
        ];
        return Err(Reply::ok(body::response(&attrs, error)));
    };
    let polls = hold == 0 || wait.is_zero();
    // §12: a polling session may be quiet longer than one that is held.
    let inactivity = if polls {
        s.inactivity + 2 * s.polling
    } else {
        s.inactivity
    };
    let sid = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let requests = hold as u64 + 1;
    let mut attrs: Vec<(&'static str, String)> = vec![
        ("sid", sid.clone()),
        ("wait", wait.as_secs().to_string()),
        ("requests", requests.to_string()),
        ("hold", hold.to_string()),
        ("polling", s.polling.as_secs().to_string()),
        ("inactivity", inactivity.as_secs().to_string()),
    ];
    if !s.max_pause.is_zero() {
        attrs.push(("maxpause", s.max_pause.as_secs().to_string()));
    }
    attrs.push(("ver", format!("{}.{}", ver.0, ver.1)));
    attrs.push(("from", domain.clone()));
    if acks {
        attrs.push(("ack", rid.to_string()));
    }
    attrs.push(("xmpp:version", "1.0".to_string()));
    attrs.push(("xmpp:restartlogic", "true".to_string()));
    let limits = edge.limits();
    let terms = Terms {
        wait,
        hold,
        requests,
        inactivity,
        polling: s.polling,
        polls,
        max_pause: s.max_pause,
        acks,
        legacy,
        domain: domain.clone(),
        max_inbound: (4 * s.max_body_bytes).max(limits.read_burst as usize),
        max_outbound: MAX_OUTBOUND.max(limits.parser.max_stanza_bytes),
    };
    let header = session::stream_header(
        &domain,
        req.attr("xml:lang"),
        req.attr("xmpp:version").unwrap_or("1.0"),
        req.attr("from"),
    );
    let now = Instant::now();
    let session = Arc::new(Session {
        sid: sid.clone(),
        content_type,
        hub: Arc::downgrade(hub),
        st: Mutex::new(session::State::new(terms, rid, attrs, header, req, tx, now)),
        released: AtomicBool::new(false),
    });
    hub.map().insert(sid, session.clone());
    tokio::spawn(crate::conn::run_bosh(
        edge.clone(),
        BoshIo::new(session.clone()),
        acc.peer,
        slot,
    ));
    Ok(session)
}

/// A BOSH version, `major.minor` (the minor compared as a number).
fn parse_version(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}
