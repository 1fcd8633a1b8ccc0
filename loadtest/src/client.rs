//! A minimal XMPP client for load: over TCP (STARTTLS, direct TLS or
//! plain) or WebSocket (RFC 7395, ws or wss); SCRAM or PLAIN; optional
//! in-band registration (XEP-0077); bind; then raw stanzas. It works
//! against any RFC 6120 server.

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
    /// TLS on TCP; a WebSocket has none of its own (`Transport::Wss` is
    /// TLS under it).
    pub tls: TlsMode,
    pub mechanism: String,
    pub register: bool,
    pub tls_config: Arc<rustls::ClientConfig>,
}

pub enum Conn {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A WebSocket over one of the others.
    Ws(Box<WsConn>),
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
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Ws(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Ws(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
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
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(io: R) -> Reader<R> {
        Reader {
            io,
            parser: StreamParser::new(Limits::default()),
            buf: vec![0u8; 8192],
            framer: None,
            held: Default::default(),
        }
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
            Ok(Frame::Element(e)) => Some(e),
            _ => None,
        }
    }

    /// The next element from the connection. Cancel-safe: the bytes of a
    /// read are taken in before the next await.
    async fn read_raw(&mut self) -> anyhow::Result<Bytes> {
        if let Some(f) = &mut self.framer {
            loop {
                match f.next_frame() {
                    Ok(Frame::Element(e)) => return Ok(e),
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
                Ok(Some(StreamEvent::Element(e))) => return Ok(e.raw),
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
    /// pings and passing every other stanza to `other`.
    pub async fn request(
        &mut self,
        xml: &str,
        id: &str,
        mut other: impl FnMut(&Element),
    ) -> anyhow::Result<Element> {
        self.send(xml).await?;
        loop {
            let raw = self.reader.next_raw().await?;
            if let Some(pong) = ping_reply(&raw) {
                self.send(&pong).await?;
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
    /// server's pings and keeping every other element for `next_raw`: a
    /// session waiting for the rest of a long ramp stays alive (the server
    /// pings a silent client after its idle timeout and closes it when the
    /// ping is not answered). An ended connection stops the reading; the
    /// next read meets the same end.
    pub async fn keep_alive(&mut self, mut done: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *done.borrow() {
                return;
            }
            tokio::select! {
                _ = done.changed() => {}
                r = self.reader.read_raw() => match r {
                    Ok(raw) => match ping_reply(&raw) {
                        Some(pong) => {
                            if self.send(&pong).await.is_err() {
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
    pub async fn close(mut self) {
        if put(&mut self.writer, b"</stream:stream>").await.is_err() {
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

/// Connect, (register,) authenticate, bind and send `presence` (the
/// initial presence, or nothing when empty).
pub async fn login(
    t: &Target,
    addr: SocketAddr,
    user: &str,
    password: &str,
    resource: &str,
    source: Option<IpAddr>,
    presence: &str,
) -> anyhow::Result<Session> {
    let s = tcp(addr, source).await?;
    let mut cb = None;
    let conn = match (t.transport, t.tls) {
        (Transport::Tcp, TlsMode::Direct) => {
            let (c, b) = tls(t, s).await?;
            cb = b;
            c
        }
        (Transport::Tcp, _) => Conn::Tcp(s),
        (Transport::Websocket, _) => websocket(t, addr, "ws", Conn::Tcp(s)).await?,
        (Transport::Wss, _) => {
            let (c, b) = tls(t, s).await?;
            cb = b;
            websocket(t, addr, "wss", c).await?
        }
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
    open(&mut r, &t.domain).await?;
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
    if !presence.is_empty() {
        put(&mut r.io, presence.as_bytes()).await?;
    }
    let mut parser = r.parser;
    // From here on the stream is only cut into elements (see framer.rs).
    let framer = parser.take_unparsed().map(Framer::new);
    let (rh, wh) = tokio::io::split(r.io);
    Ok(Session {
        jid,
        reader: Reader {
            io: rh,
            parser,
            buf: if framer.is_some() { Vec::new() } else { r.buf },
            framer,
            held: Default::default(),
        },
        writer: wh,
    })
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
