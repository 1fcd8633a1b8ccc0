//! A minimal XMPP client for load: over TCP (STARTTLS, direct TLS or
//! plain) or WebSocket (RFC 7395, ws or wss); SCRAM or PLAIN; optional
//! in-band registration (XEP-0077); bind, or resume a session; optional
//! stream management (XEP-0198); then raw stanzas. It works against any
//! RFC 6120 server.
//!
//! With stream management the [`Reader`] counts the stanzas it takes off
//! the wire (from `<enabled/>`, or from the `h` of a resumption), and
//! [`Reader::answer`] turns the server's `<r/>` into `<a h/>` with that
//! count, as it turns a ping into its result: every place that reads
//! answers both the same way.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use memchr::memmem;
use proto::Element;
use proto::sasl::Mechanism;
use proto::sasl::client::ScramClient;
use proto::xml::{Limits, StreamEvent, StreamParser};

use crate::framer::{Frame, Framer};
use crate::ws::{self, WsConn};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    Plain,
    Starttls,
    Direct,
}

/// What the XMPP stream runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// TCP (RFC 6120), with TLS as --tls says.
    Tcp,
    /// WebSocket (RFC 7395) without TLS: ws://.
    Websocket,
    /// WebSocket (RFC 7395) in TLS: wss://.
    Wss,
    /// BOSH (XEP-0124, XEP-0206) over plain HTTP/1.1 (as behind a TLS
    /// proxy).
    Bosh,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// The server's addresses (several: the edges of a cluster); user `n`
    /// connects to `addrs[n % len]`.
    pub addrs: Vec<SocketAddr>,
    pub domain: String,
    pub transport: Transport,
    /// The WebSocket endpoint's path.
    pub ws_path: String,
    /// The BOSH endpoint's path.
    pub bosh_path: String,
    /// TLS on TCP; a WebSocket has none of its own (`Transport::Wss` is
    /// TLS under it).
    pub tls: TlsMode,
    pub mechanism: String,
    pub register: bool,
    /// XEP-0198: enable stream management with resumption after binding.
    pub sm: bool,
    /// SCRAM-SHA-256 keys kept between logins (`--cache-scram`).
    pub scram_keys: Option<Arc<crate::scram::Keys>>,
    pub tls_config: Arc<rustls::ClientConfig>,
}

pub enum Conn {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A WebSocket over one of the others.
    Ws(Box<WsConn>),
    /// A BOSH session (its own HTTP connections).
    Bosh(Box<crate::bosh::BoshConn>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Ws(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Bosh(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Ws(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Bosh(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Ws(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Bosh(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Ws(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Bosh(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Reads whole top-level elements.
pub struct Reader<R> {
    io: R,
    parser: StreamParser,
    buf: Vec<u8>,
    /// After login: elements are cut out without being parsed.
    framer: Option<Framer>,
    /// Elements read while a session waited for the others of its ramp
    /// (see [`Session::keep_alive`]), returned first.
    held: std::collections::VecDeque<Bytes>,
    /// XEP-0198, once enabled: the stanzas taken off the wire since
    /// `<enabled/>` (or since the count a resumption gave), mod 2^32.
    sm: Option<u32>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(io: R) -> Reader<R> {
        Reader {
            io,
            parser: StreamParser::new(Limits::default()),
            buf: vec![0u8; 8192],
            framer: None,
            held: Default::default(),
            sm: None,
        }
    }

    /// The stanzas handled, with stream management on: the `h` of an
    /// `<a/>` now, or of a `<resume/>` if the connection ends here.
    pub fn handled(&self) -> Option<u32> {
        self.sm
    }

    /// What to send back for `raw`, if anything: `<a h/>` for the
    /// server's `<r/>` (XEP-0198 §4), the result of its ping (XEP-0199).
    pub fn answer(&self, raw: &[u8]) -> Option<String> {
        if let Some(h) = self.sm
            && is_ack_request(raw)
        {
            return Some(ack(h));
        }
        ping_reply(raw)
    }

    /// The next top-level element's raw bytes.
    pub async fn next_raw(&mut self) -> anyhow::Result<Bytes> {
        if let Some(b) = self.held.pop_front() {
            return Ok(b);
        }
        self.read_raw().await
    }

    /// The next element if it is here already (whole in the bytes read,
    /// or held), without reading: a burst that came in one read is handled
    /// together. Only once the stream is framed (after login); an error is
    /// left for the next read to meet.
    pub fn buffered(&mut self) -> Option<Bytes> {
        if let Some(b) = self.held.pop_front() {
            return Some(b);
        }
        match self.framer.as_mut()?.next_frame() {
            Ok(Frame::Element(e)) => {
                count(&mut self.sm, &e);
                Some(e)
            }
            _ => None,
        }
    }

    /// The next element from the connection. Cancel-safe: the bytes of a
    /// read are taken in before the next await.
    async fn read_raw(&mut self) -> anyhow::Result<Bytes> {
        if let Some(f) = &mut self.framer {
            loop {
                match f.next_frame() {
                    Ok(Frame::Element(e)) => {
                        count(&mut self.sm, &e);
                        return Ok(e);
                    }
                    Ok(Frame::Closed) => bail!("stream closed by the server"),
                    Ok(Frame::NeedMore) => {}
                    Err(e) => bail!("parse error: {e}"),
                }
                f.buf.reserve(8192);
                if self.io.read_buf(&mut f.buf).await? == 0 {
                    bail!("connection closed");
                }
            }
        }
        loop {
            match self.parser.next_event() {
                Ok(Some(StreamEvent::Element(e))) => {
                    count(&mut self.sm, &e.raw);
                    return Ok(e.raw);
                }
                Ok(Some(StreamEvent::Close)) => bail!("stream closed by the server"),
                Ok(Some(StreamEvent::Open(_))) => continue,
                Ok(None) => {}
                Err(e) => bail!("parse error: {e}"),
            }
            let n = self.io.read(&mut self.buf).await?;
            if n == 0 {
                bail!("connection closed");
            }
            self.parser.feed(&self.buf[..n]);
        }
    }

    pub async fn next_element(&mut self) -> anyhow::Result<Element> {
        let raw = self.next_raw().await?;
        self.parse(&raw)
    }

    pub fn parse(&self, raw: &[u8]) -> anyhow::Result<Element> {
        Element::parse(raw, proto::ns::CLIENT, self.parser.stream_prefixes())
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// A logged-in session, split for concurrent reading and writing.
pub struct Session {
    pub jid: String,
    pub reader: Reader<ReadHalf<Conn>>,
    pub writer: WriteHalf<Conn>,
    /// XEP-0198: the id to resume this session with, when the server
    /// allows resumption.
    pub sm_id: Option<String>,
}

impl Session {
    pub fn bare(&self) -> &str {
        self.jid.split('/').next().unwrap_or(&self.jid)
    }

    pub async fn send(&mut self, xml: &str) -> anyhow::Result<()> {
        put(&mut self.writer, xml.as_bytes()).await?;
        Ok(())
    }

    /// Send an IQ and wait for the reply with its `id`, answering server
    /// pings (and ack requests) and passing every other stanza to `other`.
    pub async fn request(
        &mut self,
        xml: &str,
        id: &str,
        mut other: impl FnMut(&Element),
    ) -> anyhow::Result<Element> {
        self.send(xml).await?;
        loop {
            let raw = self.reader.next_raw().await?;
            if let Some(answer) = self.reader.answer(&raw) {
                self.send(&answer).await?;
                continue;
            }
            let e = self.reader.parse(&raw)?;
            if e.name == "iq" && e.attr("id") == Some(id) {
                return Ok(e);
            }
            other(&e);
        }
    }

    /// Read until `done` says so (or its sender is gone), answering the
    /// server's pings and ack requests and keeping every other element
    /// for `next_raw`: a session waiting for the rest of a long ramp
    /// stays alive (the server pings a silent client after its idle
    /// timeout and closes it when the ping is not answered). An ended
    /// connection stops the reading; the next read meets the same end.
    pub async fn keep_alive(&mut self, mut done: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *done.borrow() {
                return;
            }
            tokio::select! {
                _ = done.changed() => {}
                r = self.reader.read_raw() => match r {
                    Ok(raw) => match self.reader.answer(&raw) {
                        Some(answer) => {
                            if self.send(&answer).await.is_err() {
                                return;
                            }
                        }
                        None => self.reader.held.push_back(raw),
                    },
                    Err(_) => return,
                },
            }
        }
    }

    /// Close the stream and wait (a few seconds at most) for the server to
    /// close its own (RFC 6120 §4.4) before dropping the connection.
    /// Dropping it at once would lose data: anything the server sends after
    /// that draws a reset, and a reset discards what the server has not
    /// yet read from us, such as a final unavailable presence.
    ///
    /// With stream management, a last `<a h/>` goes first (XEP-0198 §4):
    /// a session closed with stanzas unacknowledged ends with them handled
    /// as undelivered, messages going to offline storage, where the next
    /// run's login would find them.
    pub async fn close(mut self) {
        let mut bye = Vec::new();
        if let Some(h) = self.reader.sm {
            bye.extend_from_slice(ack(h).as_bytes());
        }
        bye.extend_from_slice(b"</stream:stream>");
        if put(&mut self.writer, &bye).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while self.reader.next_raw().await.is_ok() {}
        })
        .await;
        let _ = self.writer.shutdown().await;
    }
}

/// Write `bytes` and flush them: a WebSocket sends its messages on flush
/// (a flush of TCP costs nothing).
async fn put(io: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

/// The reply to a server's XEP-0199 ping, if `raw` is one.
pub fn ping_reply(raw: &[u8]) -> Option<String> {
    if !raw.starts_with(b"<iq") || !contains(raw, &PING) {
        return None;
    }
    let e = Element::parse(raw, proto::ns::CLIENT, &[]).ok()?;
    if e.attr("type") != Some("get") {
        return None;
    }
    let id = e.attr("id").unwrap_or_default();
    let to = e.attr("from").unwrap_or_default();
    Some(format!(
        "<iq type='result' id='{}' to='{}'/>",
        proto::element::escape(id),
        proto::element::escape(to)
    ))
}

/// A byte string searched for in raw stanzas, its searcher built on first
/// use: `memmem::find` builds one on every call, which costs more than the
/// search through a stanza of a few hundred bytes.
pub type Needle = LazyLock<memmem::Finder<'static>>;

static PING: Needle = Needle::new(|| memmem::Finder::new("urn:xmpp:ping"));

pub fn contains(hay: &[u8], needle: &Needle) -> bool {
    needle.find(hay).is_some()
}

/// XEP-0198's namespace.
pub const NS_SM: &str = "urn:xmpp:sm:3";
static SM: Needle = Needle::new(|| memmem::Finder::new(NS_SM));

/// An element named `name` (its start tag ends or goes on right after).
fn named(raw: &[u8], name: &[u8]) -> bool {
    raw.first() == Some(&b'<')
        && raw[1..].starts_with(name)
        && matches!(
            raw.get(1 + name.len()),
            Some(b' ' | b'/' | b'>' | b'\t' | b'\n' | b'\r')
        )
}

/// A stanza, as XEP-0198 counts them: a message, presence or IQ (the
/// server writes them unprefixed, in the stream's jabber:client).
pub fn is_stanza(raw: &[u8]) -> bool {
    named(raw, b"message") || named(raw, b"presence") || named(raw, b"iq")
}

/// The server's request for an acknowledgement, `<r xmlns='urn:xmpp:sm:3'/>`.
pub fn is_ack_request(raw: &[u8]) -> bool {
    named(raw, b"r") && contains(raw, &SM)
}

/// The acknowledgement of `h` stanzas.
pub fn ack(h: u32) -> String {
    format!("<a xmlns='{NS_SM}' h='{h}'/>")
}

/// One more stanza taken, if stream management counts.
fn count(sm: &mut Option<u32>, raw: &[u8]) {
    if let Some(h) = sm
        && is_stanza(raw)
    {
        *h = h.wrapping_add(1);
    }
}

/// An IQ reply's error condition, or the element's name.
pub fn condition(e: &Element) -> String {
    let cond = e
        .child("error", proto::ns::CLIENT)
        .and_then(Element::first_element)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| e.attr("type").unwrap_or("no type").to_string());
    if cond == "resource-constraint" {
        // xmppd's answer to a session over its stanza rate.
        return format!(
            "{cond} (the server limits the stanzas per session: raise or zero its limits.stanza_rate_per_sec, or spread the load over more --sessions)"
        );
    }
    cond
}

fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let s = sock.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn tls(t: &Target, s: TcpStream) -> anyhow::Result<(Conn, Option<Vec<u8>>)> {
    let name = rustls_pki_types::ServerName::try_from(t.domain.clone()).context("server name")?;
    let c = tokio_rustls::TlsConnector::from(t.tls_config.clone())
        .connect(name, s)
        .await?;
    let conn = c.get_ref().1;
    let cb = if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        conn.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
    } else {
        None
    };
    Ok((Conn::Tls(Box::new(c)), cb))
}

/// A WebSocket (`scheme` ws or wss) at `addr` and `--ws-path` over `io`.
async fn websocket(t: &Target, addr: SocketAddr, scheme: &str, io: Conn) -> anyhow::Result<Conn> {
    let url = format!("{scheme}://{addr}{}", t.ws_path);
    let c = ws::connect(io, &url)
        .await
        .with_context(|| format!("WebSocket {url}"))?;
    Ok(Conn::Ws(Box::new(c)))
}

async fn open(r: &mut Reader<Conn>, domain: &str) -> anyhow::Result<Element> {
    r.parser.reset();
    put(&mut r.io, header(domain).as_bytes()).await?;
    let f = r.next_element().await?;
    if f.name == "error" {
        bail!("stream error: {}", failure(&f));
    }
    if f.name != "features" {
        bail!("expected stream features, got {}", f.name);
    }
    Ok(f)
}

fn failure(e: &Element) -> String {
    e.first_element()
        .map(|c| c.name.clone())
        .unwrap_or_else(|| e.name.clone())
}

/// Connect, (register,) authenticate, bind, enable stream management if
/// the target says so, and send `presence` (the initial presence, or
/// nothing when empty).
pub async fn login(
    t: &Target,
    addr: SocketAddr,
    user: &str,
    password: &str,
    resource: &str,
    source: Option<IpAddr>,
    presence: &str,
) -> anyhow::Result<Session> {
    let (mut r, features) = authenticated(t, addr, user, password, source).await?;
    put(
        &mut r.io,
        format!("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>")
            .as_bytes(),
    )
    .await?;
    let b = r.next_element().await?;
    let jid = b
        .child("bind", proto::ns::BIND)
        .and_then(|x| x.child("jid", proto::ns::BIND))
        .map(Element::text)
        .with_context(|| format!("bind failed: {}", failure(&b)))?;
    let mut held = std::collections::VecDeque::new();
    let mut sm_id = None;
    if t.sm {
        if features.child("sm", NS_SM).is_none() {
            bail!("the server does not offer stream management (XEP-0198)");
        }
        put(
            &mut r.io,
            format!("<enable xmlns='{NS_SM}' resume='true'/>").as_bytes(),
        )
        .await?;
        // The server counts from `<enabled/>`: what comes before it is
        // not counted, and kept for the scenario.
        loop {
            let raw = r.next_raw().await?;
            if !contains(&raw, &SM) {
                held.push_back(raw);
                continue;
            }
            let e = r.parse(&raw)?;
            match e.name.as_str() {
                "enabled" => {
                    sm_id = e.attr("id").map(str::to_string);
                    break;
                }
                "failed" => bail!(
                    "stream management refused: {}",
                    String::from_utf8_lossy(&raw)
                ),
                // An ack request cannot come before <enabled/>.
                _ => held.push_back(raw),
            }
        }
        r.sm = Some(0);
    }
    if !presence.is_empty() {
        put(&mut r.io, presence.as_bytes()).await?;
    }
    Ok(framed(r, jid, sm_id, held))
}

/// Why a resumption did not happen.
#[derive(Debug)]
pub enum ResumeError {
    /// The server answered `<failed/>` (its XML): no use trying again.
    Refused(String),
    /// Anything else (connecting, TLS, authentication, a closed stream):
    /// another attempt may do.
    Other(anyhow::Error),
}

impl std::fmt::Display for ResumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResumeError::Refused(xml) => write!(f, "resumption refused: {xml}"),
            ResumeError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<anyhow::Error> for ResumeError {
    fn from(e: anyhow::Error) -> ResumeError {
        ResumeError::Other(e)
    }
}

/// XEP-0198 §5: connect, authenticate and resume session `previd` (whose
/// full JID was `jid`), having handled `h` of the stanzas it was sent.
/// The server sends again what came after those; the new session counts
/// on from `h`. Returns the session and the server's count of ours.
#[allow(clippy::too_many_arguments)]
pub async fn resume(
    t: &Target,
    addr: SocketAddr,
    user: &str,
    password: &str,
    source: Option<IpAddr>,
    jid: &str,
    previd: &str,
    h: u32,
) -> Result<(Session, u32), ResumeError> {
    let (mut r, features) = authenticated(t, addr, user, password, source).await?;
    if features.child("sm", NS_SM).is_none() {
        return Err(ResumeError::Refused(
            "(no <sm/> among the stream features)".into(),
        ));
    }
    let req = format!(
        "<resume xmlns='{NS_SM}' previd='{}' h='{h}'/>",
        proto::element::escape(previd)
    );
    put(&mut r.io, req.as_bytes())
        .await
        .map_err(anyhow::Error::from)?;
    let raw = r.next_raw().await?;
    let e = r.parse(&raw)?;
    match (e.name.as_str(), e.ns.as_str()) {
        ("resumed", NS_SM) => {
            let theirs = e.attr("h").and_then(|h| h.trim().parse().ok()).unwrap_or(0);
            r.sm = Some(h);
            let s = framed(
                r,
                jid.to_string(),
                Some(previd.to_string()),
                Default::default(),
            );
            Ok((s, theirs))
        }
        ("failed", NS_SM) => Err(ResumeError::Refused(
            String::from_utf8_lossy(&raw).into_owned(),
        )),
        _ => Err(ResumeError::Other(anyhow::anyhow!(
            "unexpected answer to <resume/>: {}",
            String::from_utf8_lossy(&raw)
        ))),
    }
}

/// Connect, (register,) authenticate and open the authenticated stream:
/// the reader, and that stream's features.
async fn authenticated(
    t: &Target,
    addr: SocketAddr,
    user: &str,
    password: &str,
    source: Option<IpAddr>,
) -> anyhow::Result<(Reader<Conn>, Element)> {
    let mut cb = None;
    let conn = match (t.transport, t.tls) {
        (Transport::Tcp, TlsMode::Direct) => {
            let (c, b) = tls(t, tcp(addr, source).await?).await?;
            cb = b;
            c
        }
        (Transport::Tcp, _) => Conn::Tcp(tcp(addr, source).await?),
        (Transport::Websocket, _) => {
            websocket(t, addr, "ws", Conn::Tcp(tcp(addr, source).await?)).await?
        }
        (Transport::Wss, _) => {
            let (c, b) = tls(t, tcp(addr, source).await?).await?;
            cb = b;
            websocket(t, addr, "wss", c).await?
        }
        // Its own HTTP connections (one, a second when sending while a
        // request waits at the server; the source address is not taken).
        (Transport::Bosh, _) => Conn::Bosh(Box::new(
            crate::bosh::connect(addr, &t.bosh_path, &t.domain).await?,
        )),
    };
    let mut r = Reader::new(conn);
    open(&mut r, &t.domain).await?;
    if t.transport == Transport::Tcp && t.tls == TlsMode::Starttls {
        put(
            &mut r.io,
            b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        )
        .await?;
        let p = r.next_element().await?;
        if p.name != "proceed" {
            bail!("starttls refused");
        }
        let Conn::Tcp(s) = r.io else {
            bail!("starttls on a TLS connection")
        };
        let (c, b) = tls(t, s).await?;
        cb = b;
        r = Reader::new(c);
        open(&mut r, &t.domain).await?;
    }
    if t.register {
        let q = format!(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{}</username><password>{}</password></query></iq>",
            proto::element::escape(user),
            proto::element::escape(password)
        );
        put(&mut r.io, q.as_bytes()).await?;
        // A conflict means the account exists already: fine.
        let reply = r.next_element().await?;
        if reply.attr("type") == Some("error") {
            let condition = reply
                .child("error", proto::ns::CLIENT)
                .and_then(|e| e.elements().next())
                .map(|c| c.name.clone())
                .unwrap_or_default();
            if condition != "conflict" {
                let text = reply
                    .child("error", proto::ns::CLIENT)
                    .and_then(|e| e.elements().find(|c| c.name == "text"))
                    .map(|t| t.text())
                    .unwrap_or_default();
                bail!("registration failed: {condition} {text}");
            }
        }
    }
    let mech = Mechanism::parse(&t.mechanism).context("unknown mechanism")?;
    let mut scram = None;
    let kept = t.scram_keys.as_ref().filter(|_| {
        matches!(mech, Mechanism::ScramSha256 | Mechanism::ScramSha256Plus)
            && crate::scram::usable(password)
    });
    if let Some(keys) = kept {
        // As below: binding data only for -PLUS ('y' would tell a server
        // that offers -PLUS of a downgrade, RFC 5802 §6).
        let plus = mech.is_plus();
        let mut c = crate::scram::Exchange::new(user, password, plus, cb.clone().filter(|_| plus))?;
        put(
            &mut r.io,
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>{}</auth>",
                t.mechanism,
                B64.encode(c.first())
            )
            .as_bytes(),
        )
        .await?;
        let ch = r.next_element().await?;
        if ch.name != "challenge" {
            bail!("authentication failed: {}", failure(&ch));
        }
        let server_first = B64.decode(ch.text().trim())?;
        // Hashing only the first time for an account: off the async
        // workers then, as below.
        let keys = keys.clone();
        let (c, fin) = tokio::task::spawn_blocking(move || {
            let fin = c.finish(&server_first, &keys);
            (c, fin)
        })
        .await?;
        let fin = fin?;
        put(
            &mut r.io,
            format!(
                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                B64.encode(fin)
            )
            .as_bytes(),
        )
        .await?;
        let ok = r.next_element().await?;
        if ok.name != "success" {
            bail!("authentication failed: {}", failure(&ok));
        }
        c.verify(&B64.decode(ok.text().trim())?)
            .context("the server's SCRAM signature does not verify")?;
        let features = open(&mut r, &t.domain).await?;
        return Ok((r, features));
    }
    if mech == Mechanism::Plain {
        let m = B64.encode(format!("\0{user}\0{password}"));
        put(
            &mut r.io,
            format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{m}</auth>")
                .as_bytes(),
        )
        .await?;
    } else {
        let c = ScramClient::new(
            mech,
            user,
            password,
            if mech.is_plus() { cb.clone() } else { None },
        )?;
        let first = B64.encode(c.first());
        put(
            &mut r.io,
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>{first}</auth>",
                t.mechanism
            )
            .as_bytes(),
        )
        .await?;
        let ch = r.next_element().await?;
        if ch.name != "challenge" {
            bail!("authentication failed: {}", failure(&ch));
        }
        // The salted password takes thousands of hash rounds: off the
        // async workers, so that a login does not stall other sessions'
        // reading (and their measured latency).
        let server_first = B64.decode(ch.text().trim())?;
        let (c, fin) = tokio::task::spawn_blocking(move || {
            let mut c = c;
            let fin = c.finish(&server_first);
            (c, fin)
        })
        .await?;
        let fin = fin?;
        scram = Some(c);
        put(
            &mut r.io,
            format!(
                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                B64.encode(fin)
            )
            .as_bytes(),
        )
        .await?;
    }
    let ok = r.next_element().await?;
    if ok.name != "success" {
        bail!("authentication failed: {}", failure(&ok));
    }
    if let Some(c) = scram {
        // RFC 5802 §5: the server proves it knows the password too.
        c.verify(&B64.decode(ok.text().trim())?)
            .context("the server's SCRAM signature does not verify")?;
    }
    let features = open(&mut r, &t.domain).await?;
    Ok((r, features))
}

/// The session from here on: the stream only cut into elements (see
/// framer.rs), split for reading and writing.
fn framed(
    r: Reader<Conn>,
    jid: String,
    sm_id: Option<String>,
    held: std::collections::VecDeque<Bytes>,
) -> Session {
    let mut parser = r.parser;
    let framer = parser.take_unparsed().map(Framer::new);
    let (rh, wh) = tokio::io::split(r.io);
    Session {
        jid,
        reader: Reader {
            io: rh,
            parser,
            buf: if framer.is_some() { Vec::new() } else { r.buf },
            framer,
            held,
            sm: r.sm,
        },
        writer: wh,
        sm_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        Element::parse(xml.as_bytes(), proto::ns::CLIENT, &[]).expect("xml")
    }

    #[test]
    fn a_refusal_for_rate_says_what_to_change() {
        let e = el(
            "<iq type='error' id='x'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        assert!(condition(&e).contains("limits.stanza_rate_per_sec"));
        let e = el(
            "<iq type='error' id='x'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        assert_eq!(condition(&e), "conflict");
        assert_eq!(condition(&el("<iq type='result' id='x'/>")), "result");
    }
}
