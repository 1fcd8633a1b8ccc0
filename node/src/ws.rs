//! XMPP over WebSocket (RFC 7395): the `xmpp` subprotocol at
//! `/xmpp-websocket`, on a listener of its own (`listeners.websocket`,
//! plain, for a TLS-terminating proxy in front; `listeners.websocket_tls`,
//! with the server's certificate). A WebSocket connection is one more
//! transport under the same stream machine and driver as TCP
//! (`conn.rs`): [`WsIo`] turns the framing into the byte stream the
//! parser reads and the machine's bytes into one message per element.
//!
//! The same listeners serve XEP-0156's `/.well-known/host-meta` and
//! `host-meta.json`, naming the WebSocket URL (`websocket.public_url`
//! when a proxy in front changes it) and the BOSH one, and BOSH itself at
//! `/http-bind` (`bosh/`).
//!
//! Framing (RFC 7395 §3.3): the client opens with
//! `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to=... version='1.0'/>`
//! (taken as a stream header) and ends with `<close/>` (the stream's end);
//! every other message is one complete element. Out, the server's stream
//! header becomes `<open/>`, its end `<close/>`, a stream-level element
//! declares the `stream` prefix, and a stanza without a namespace gets
//! `jabber:client`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Sink, Stream};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::edge::{Edge, Slot};
use crate::scan::{find, start_tag};

pub(crate) const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

/// The path of the XMPP endpoint.
pub const PATH: &str = "/xmpp-websocket";

/// Time a client gets to send its HTTP request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A WebSocket's read buffer to start with.
const READ_BUFFER: usize = 4 * 1024;
/// How long connections get to close after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);
/// How long requests in progress get to be answered at a stop.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the WebSocket listeners check and tell.
#[derive(Debug, Clone, Default)]
pub struct WsSettings {
    /// Browser origins allowed (`Origin` header); empty: any. A request
    /// without `Origin` (not from a browser) is always let in.
    pub origins: Vec<String>,
    /// The WebSocket URL clients are told of (XEP-0156), when a proxy or
    /// load balancer in front gives it another; otherwise it is made of
    /// the request's `Host`.
    pub public_url: Option<String>,
    /// Where a draining edge sends its WebSocket clients
    /// (`see-other-uri` on `<close/>`, RFC 7395 §3.6.1); unset: they are
    /// told the server shuts down, and reconnect.
    pub see_other_uri: Option<String>,
    /// The domains served: without `public_url`, host-meta names a URL
    /// only for a request to one of them (or an IP address), so that a
    /// made-up `Host` is not echoed into a document a cache may keep.
    pub domains: Vec<String>,
    /// BOSH (XEP-0124, XEP-0206) at `/http-bind`, when on.
    pub bosh: Option<Arc<crate::bosh::Hub>>,
}

/// One accepted TCP connection: its place in the edge's connection
/// count, taken by the WebSocket it upgrades to.
pub(crate) struct Accepted {
    pub(crate) edge: Arc<Edge>,
    pub(crate) peer: SocketAddr,
    slot: Mutex<Option<Slot>>,
    pub(crate) settings: Arc<WsSettings>,
    tls: bool,
}

/// Accept WebSocket connections until shutdown; `tls`: the listener
/// speaks TLS (wss) with the edge's certificate.
pub async fn serve(
    listener: TcpListener,
    edge: Arc<Edge>,
    tls: bool,
    settings: Arc<WsSettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut drain = edge.drain_signal();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => match edge.admit(peer.ip()) {
                    Some(slot) => {
                        let _ = tcp.set_nodelay(true);
                        let acc = Arc::new(Accepted {
                            edge: edge.clone(),
                            peer,
                            slot: Mutex::new(Some(slot)),
                            settings: settings.clone(),
                            tls,
                        });
                        conns.spawn(http_conn(acc, tcp, shutdown.clone()));
                    }
                    None => {
                        edge.metrics.refused.inc();
                        tracing::warn!(%peer, "WebSocket connection refused: connection limit reached");
                        // Said in HTTP where it is spoken in the clear (a
                        // TLS listener just closes: no handshake is spent
                        // on a refusal).
                        if !tls {
                            conns.spawn(refuse(tcp));
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
            _ = drain.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

/// A connection over the limits: `503`, then close (bounded in time: a
/// peer that does not read gets nothing).
async fn refuse(mut tcp: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 32\r\nRetry-After: 10\r\nConnection: close\r\n\r\ntoo many connections: try later\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(REFUSED).await?;
        tcp.shutdown().await
    })
    .await;
}

/// Serve HTTP/1.1 on one connection (TLS first for wss) until it upgrades
/// to a WebSocket (which then lives on in its own task) or ends.
async fn http_conn(acc: Arc<Accepted>, tcp: tokio::net::TcpStream, stop: watch::Receiver<bool>) {
    let mut app = Router::new()
        .route(PATH, get(upgrade))
        .route("/.well-known/host-meta", get(host_meta))
        .route("/.well-known/host-meta.json", get(host_meta_json));
    if acc.settings.bosh.is_some() {
        app = app.route(
            crate::bosh::PATH,
            post(crate::bosh::post).options(crate::bosh::preflight),
        );
    }
    let app = app.with_state(acc.clone());
    let service = TowerToHyperService::new(app);
    let builder = {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        b
    };
    if acc.tls {
        let Some(tls) = acc.edge.tls() else { return };
        let limits = acc.edge.limits();
        let stream =
            match tokio::time::timeout(limits.handshake_timeout, tls.starttls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                _ => return,
            };
        serve_http(&builder, TokioIo::new(stream), service, stop).await;
    } else {
        serve_http(&builder, TokioIo::new(tcp), service, stop).await;
    }
}

/// Serve `io` until it ends or the stop signal comes; then the requests
/// in progress get a moment to be answered (a held BOSH request gets its
/// session's end) before the connection closes.
async fn serve_http<I>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: TowerToHyperService<Router>,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(STOP_GRACE, conn).await;
}

/// `GET /xmpp-websocket`: the upgrade, with the `xmpp` subprotocol
/// (RFC 7395 §3.1) from an allowed origin.
async fn upgrade(
    State(acc): State<Arc<Accepted>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "xmpp");
    if !offered {
        return (
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol 'xmpp' is required (RFC 7395)\n",
        )
            .into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !acc.settings.origins.is_empty() && !acc.settings.origins.iter().any(|o| o == origin) {
            return (StatusCode::FORBIDDEN, "this origin may not connect\n").into_response();
        }
    }
    let Some(slot) = acc.slot.lock().ok().and_then(|mut s| s.take()) else {
        return (StatusCode::CONFLICT, "one WebSocket per connection\n").into_response();
    };
    let limits = acc.edge.limits();
    // A message is one stanza; the parser's stanza limit is the bound,
    // with room for the framing.
    let max = limits.parser.max_stanza_bytes + 1024;
    let (edge, peer) = (acc.edge.clone(), acc.peer);
    let see_other = acc.settings.see_other_uri.clone();
    let listener = if acc.tls {
        crate::metrics::Listener::WebSocketTls
    } else {
        crate::metrics::Listener::WebSocket
    };
    ws.protocols(["xmpp"])
        .max_message_size(max)
        .max_frame_size(max)
        // The library's 128 KiB read buffer is for bulk transfers; a
        // stanza stream's messages are small, and an idle session should
        // not hold one that size (it grows for a large message).
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| {
            crate::conn::run_ws(edge, socket, see_other, peer, slot, listener)
        })
}

/// The URLs to announce (XEP-0156 §3), as (rel, href): WebSocket's, and
/// BOSH's when it is on.
fn public_urls(acc: &Accepted, headers: &HeaderMap) -> Vec<(&'static str, String)> {
    let mut links = Vec::new();
    if let Some(u) = public_url(acc, headers) {
        links.push((ALT_WS, u));
    }
    if let Some(hub) = &acc.settings.bosh
        && let Some(u) = hub
            .settings
            .public_url
            .clone()
            .or_else(|| own_url(acc, headers, ("http", "https"), crate::bosh::PATH))
    {
        links.push((ALT_BOSH, u));
    }
    links
}

/// The WebSocket URL to announce (XEP-0156 §3): the configured public
/// one, else this listener's as the client reached it (`wss` when it, or
/// the proxy in front by `X-Forwarded-Proto`, speaks TLS).
fn public_url(acc: &Accepted, headers: &HeaderMap) -> Option<String> {
    if let Some(u) = &acc.settings.public_url {
        return Some(u.clone());
    }
    own_url(acc, headers, ("ws", "wss"), PATH)
}

/// This listener's URL for `path` as the client reached it, with the
/// first scheme of `schemes`, or the second for TLS; only for a `Host`
/// that is a served domain or an IP address.
fn own_url(
    acc: &Accepted,
    headers: &HeaderMap,
    schemes: (&str, &str),
    path: &str,
) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    // A Host header is a host and port, nothing else.
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return None;
    }
    // Host, or host:port; an IPv6 address in brackets.
    let name = match host.rsplit_once(':') {
        Some((h, port)) if !host.ends_with(']') => {
            port.parse::<u16>().ok()?;
            h
        }
        _ => host,
    };
    let name = name.to_ascii_lowercase();
    let ip = name
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .is_ok();
    if !ip && !acc.settings.domains.contains(&name) {
        return None;
    }
    // The proxy's own scheme: the first of a list.
    let forwarded_tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let scheme = if acc.tls || forwarded_tls {
        schemes.1
    } else {
        schemes.0
    };
    Some(format!("{scheme}://{host}{path}"))
}

const ALT_WS: &str = "urn:xmpp:alt-connections:websocket";
const ALT_BOSH: &str = "urn:xmpp:alt-connections:xbosh";

/// `/.well-known/host-meta` (XEP-0156 §3.1, the XRD form), readable by
/// pages of any origin.
async fn host_meta(State(acc): State<Arc<Accepted>>, headers: HeaderMap) -> Response {
    let mut xrd = String::from(
        "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n",
    );
    for (rel, u) in public_urls(&acc, &headers) {
        xrd.push_str(&format!(
            "  <Link rel='{rel}' href='{}'/>\n",
            proto::element::escape(&u)
        ));
    }
    xrd.push_str("</XRD>\n");
    (
        [
            (header::CONTENT_TYPE, "application/xrd+xml; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        xrd,
    )
        .into_response()
}

/// `/.well-known/host-meta.json` (XEP-0156 §3.1, the JRD form).
async fn host_meta_json(State(acc): State<Arc<Accepted>>, headers: HeaderMap) -> Response {
    let links: Vec<serde_json::Value> = public_urls(&acc, &headers)
        .into_iter()
        .map(|(rel, u)| serde_json::json!({ "rel": rel, "href": u }))
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        serde_json::json!({ "links": links }).to_string(),
    )
        .into_response()
}

/// A WebSocket as the byte transport of a stream ([`crate::io::Io`]).
pub(crate) struct WsIo {
    socket: WebSocket,
    /// Bytes for the parser not read yet, from the last message.
    inbound: Vec<u8>,
    taken: usize,
    /// What the driver wrote that does not make a whole element yet.
    out: Vec<u8>,
    /// Messages to send, in order.
    frames: VecDeque<String>,
    /// The client's `<close/>` came (the stream's end was given to the
    /// parser); reads end there.
    ended: bool,
    see_other_uri: Option<String>,
}

impl WsIo {
    pub fn new(socket: WebSocket, see_other_uri: Option<String>) -> WsIo {
        WsIo {
            socket,
            inbound: Vec::new(),
            taken: 0,
            out: Vec::new(),
            frames: VecDeque::new(),
            ended: false,
            see_other_uri,
        }
    }

    /// Where to send the client when the edge drains.
    pub fn see_other_uri(&self) -> Option<&str> {
        self.see_other_uri.as_deref()
    }
}

impl AsyncRead for WsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            if me.taken < me.inbound.len() {
                let n = buf.remaining().min(me.inbound.len() - me.taken);
                buf.put_slice(&me.inbound[me.taken..me.taken + n]);
                me.taken += n;
                if me.taken == me.inbound.len() {
                    me.inbound = Vec::new();
                    me.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if me.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut me.socket).poll_next(cx)) {
                Some(Ok(Message::Text(t))) => match inbound(t.as_str()) {
                    Ok((bytes, end)) => {
                        me.inbound = bytes;
                        me.ended = end;
                    }
                    Err(why) => {
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
                    }
                },
                // Text only (RFC 7395 §3.2).
                Some(Ok(Message::Binary(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "XMPP over WebSocket is sent in text messages (RFC 7395 §3.2)",
                    )));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                // Past max_message_size: said as a stream error.
                Some(Err(e)) => {
                    let text = e.to_string();
                    let kind = if text.contains("too long")
                        || text.contains("too big")
                        || text.contains("Space limit")
                    {
                        io::ErrorKind::FileTooLarge
                    } else {
                        io::ErrorKind::Other
                    };
                    return Poll::Ready(Err(io::Error::new(kind, text)));
                }
            }
        }
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        me.out.extend_from_slice(buf);
        let used = split(&me.out, &mut me.frames);
        me.out.drain(..used);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        while !me.frames.is_empty() {
            // Ready first, then the frame leaves the queue (not copied).
            ready!(Pin::new(&mut me.socket).poll_ready(cx)).map_err(io::Error::other)?;
            let Some(f) = me.frames.pop_front() else {
                break;
            };
            Pin::new(&mut me.socket)
                .start_send(Message::Text(f.into()))
                .map_err(io::Error::other)?;
        }
        Pin::new(&mut me.socket)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        let me = self.get_mut();
        // Closed already (the client's close frame came): nothing to say.
        let _ = ready!(Pin::new(&mut me.socket).poll_close(cx));
        Poll::Ready(Ok(()))
    }
}

/// The parser's bytes for one message from the client, and whether it
/// ended the stream: `<open/>` becomes a stream header, `<close/>` the
/// stream's end, an element goes as it is. A message that is not one
/// whole element (RFC 7395 §3.3.3: each is a document of its own) is
/// refused with why; one of whitespace only is nothing.
fn inbound(text: &str) -> Result<(Vec<u8>, bool), &'static str> {
    let mut t = text.trim();
    // An XML declaration is allowed, if not recommended (§3.3.3).
    if t.starts_with("<?xml")
        && let Some(end) = t.find("?>")
    {
        t = t[end + 2..].trim_start();
    }
    if t.is_empty() {
        return Ok((Vec::new(), false));
    }
    if element_len(t.as_bytes()) != Some(t.len()) {
        return Err("a WebSocket message carries exactly one whole element (RFC 7395 §3.3.3)");
    }
    let framing = |name: &str| {
        t.starts_with(&format!("<{name}"))
            && t[name.len() + 1..].starts_with(|c: char| c.is_whitespace() || c == '/' || c == '>')
            && attr(t, "xmlns").as_deref() == Some(NS_FRAMING)
    };
    if framing("open") {
        let mut h = format!("<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}'");
        for a in ["to", "from", "version", "xml:lang", "id"] {
            if let Some(v) = attr(t, a) {
                h.push_str(&format!(" {a}='{}'", proto::element::escape(&v)));
            }
        }
        h.push('>');
        return Ok((h.into_bytes(), false));
    }
    if framing("close") {
        return Ok((b"</stream:stream>".to_vec(), true));
    }
    Ok((t.as_bytes().to_vec(), false))
}

/// The value of attribute `name` in the start tag at the head of `tag`
/// (framing attributes are plain names and numbers; entities resolved).
fn attr(tag: &str, name: &str) -> Option<String> {
    let head = &tag.as_bytes()[..start_tag(tag.as_bytes()).unwrap_or(tag.len())];
    let v = crate::scan::attr(head, name.as_bytes())?;
    Some(unescape(&String::from_utf8_lossy(v)))
}

fn unescape(v: &str) -> String {
    v.replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Split the server's bytes into one message per top-level unit (stream
/// header, stream end, element), each framed as RFC 7395 §3.3 asks, into
/// `frames`; the count of bytes used (the rest is an incomplete unit).
fn split(b: &[u8], frames: &mut VecDeque<String>) -> usize {
    let mut at = 0;
    loop {
        while at < b.len() && b[at].is_ascii_whitespace() {
            at += 1;
        }
        let rest = &b[at..];
        if rest.is_empty() {
            return at;
        }
        if rest.starts_with(b"<?") {
            match find(rest, b"?>") {
                Some(i) => at += i + 2,
                None => return at,
            }
            continue;
        }
        if rest.starts_with(b"</stream:stream") {
            match find(rest, b">") {
                Some(i) => {
                    frames.push_back(format!("<close xmlns='{NS_FRAMING}'/>"));
                    at += i + 1;
                }
                None => return at,
            }
            continue;
        }
        if rest.starts_with(b"<stream:stream") {
            let Some(n) = start_tag(rest) else { return at };
            let head = String::from_utf8_lossy(&rest[..n]);
            let mut open = format!("<open xmlns='{NS_FRAMING}'");
            for a in ["from", "to", "id", "version", "xml:lang"] {
                if let Some(v) = attr(&head, a) {
                    open.push_str(&format!(" {a}='{}'", proto::element::escape(&v)));
                }
            }
            open.push_str("/>");
            frames.push_back(open);
            at += n;
            continue;
        }
        let Some(n) = element_len(rest) else {
            return at;
        };
        frames.push_back(framed(&rest[..n]));
        at += n;
    }
}

/// One element of the server's as a message of its own: the `stream`
/// prefix declared on a stream-level element, `jabber:client` on a
/// stanza written without its namespace.
pub(crate) fn framed(el: &[u8]) -> String {
    let text = String::from_utf8_lossy(el);
    let name_end = text[1..]
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .map_or(text.len(), |i| i + 1);
    let head_len = start_tag(el).unwrap_or(el.len());
    let head = &text[..head_len];
    let decl = if text.starts_with("<stream:") {
        (!head.contains("xmlns:stream=")).then(|| format!(" xmlns:stream='{NS_STREAMS}'"))
    } else if !head.contains("xmlns=") {
        Some(" xmlns='jabber:client'".to_string())
    } else {
        None
    };
    match decl {
        Some(d) => format!("{}{d}{}", &text[..name_end], &text[name_end..]),
        None => text.into_owned(),
    }
}

/// The length of the complete element at the head of `b`, or `None`
/// while it is incomplete. Quotes, CDATA sections, comments and
/// processing instructions are stepped over.
pub(crate) fn element_len(b: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0;
    while at < b.len() {
        at += find(&b[at..], b"<")?;
        let rest = &b[at..];
        if rest.starts_with(b"<![CDATA[") {
            at += find(rest, b"]]>")? + 3;
        } else if rest.starts_with(b"<!--") {
            at += find(rest, b"-->")? + 3;
        } else if rest.starts_with(b"<?") {
            at += find(rest, b"?>")? + 2;
        } else if rest.starts_with(b"</") {
            at += find(rest, b">")? + 1;
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return Some(at);
            }
        } else {
            let n = start_tag(rest)?;
            at += n;
            if rest[n - 2] != b'/' {
                depth += 1;
            } else if depth == 0 {
                return Some(at);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(chunks: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let mut frames = VecDeque::new();
        for c in chunks {
            out.extend_from_slice(c.as_bytes());
            let used = split(&out, &mut frames);
            out.drain(..used);
        }
        assert!(out.iter().all(u8::is_ascii_whitespace), "left: {out:?}");
        frames.into_iter().collect()
    }

    #[test]
    fn the_servers_stream_becomes_framed_messages() {
        let stream = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='localhost' version='1.0' xml:lang='en'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features><message from='a@b/c' id='x'><body>1 &lt; 2 <![CDATA[ </message> ]]></body></message><presence to='a@b' /><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:stream>";
        let whole = frames_of(&[stream]);
        assert_eq!(
            whole,
            [
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='abc' version='1.0' xml:lang='en'/>",
                "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
                "<message xmlns='jabber:client' from='a@b/c' id='x'><body>1 &lt; 2 <![CDATA[ </message> ]]></body></message>",
                "<presence xmlns='jabber:client' to='a@b' />",
                "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
                "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
            ]
        );
        // Written in pieces, split anywhere: the same messages.
        for cut in 1..stream.len() {
            if !stream.is_char_boundary(cut) {
                continue;
            }
            assert_eq!(
                frames_of(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn the_clients_framing_becomes_a_stream() {
        let (h, end) = inbound(
            "<?xml version='1.0'?> <open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" to=\"localhost\" version=\"1.0\"/>",
        )
        .expect("one element");
        assert!(!end);
        assert_eq!(
            String::from_utf8(h).expect("utf-8"),
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
        );
        let (c, end) =
            inbound("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' />").expect("one element");
        assert!(end);
        assert_eq!(c, b"</stream:stream>");
        // Not framing: as it is (an <openx/> or an <open/> elsewhere).
        let (m, _) = inbound("<open xmlns='urn:example'/>").expect("one element");
        assert_eq!(m, b"<open xmlns='urn:example'/>");
        // Not one whole element: refused; whitespace: nothing.
        for bad in ["<message><body>half", "<a/><b/>", "text", "<a></b>x"] {
            assert!(inbound(bad).is_err(), "{bad}");
        }
        assert_eq!(inbound("  \n").expect("whitespace"), (Vec::new(), false));
    }
}
