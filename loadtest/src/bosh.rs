//! XMPP over BOSH (XEP-0124, XEP-0206) as the byte stream the rest of the
//! harness reads and writes, as `ws.rs` does for WebSocket: what the
//! login and the scenarios write (a stream header, stanzas, a restart
//! after SASL, `</stream:stream>`) becomes HTTP requests, and the
//! responses' payloads come back as a stream (a header for the session's
//! creation and each restart, then the elements, then the stream's end).
//!
//! A task per session keeps one request waiting at the server at all
//! times (the long poll, `hold='1'`) and sends what was written on the
//! other of its two HTTP/1.1 connections, so that a stanza leaves at once
//! and one comes back as soon as the server has it. Responses are read
//! in rid order.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::framer::{Framer, tag_end};

const NS_BOSH: &str = "http://jabber.org/protocol/httpbind";
const NS_XBOSH: &str = "urn:xmpp:xbosh";
const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// The longest a request waits at the server.
const WAIT_SECS: u32 = 30;

/// A BOSH session read and written as an XMPP byte stream.
pub struct BoshConn {
    /// What the harness writes, to the session's task.
    tx: mpsc::UnboundedSender<Bytes>,
    /// Stream bytes from the task.
    rx: mpsc::Receiver<io::Result<Bytes>>,
    inbound: Bytes,
    ended: bool,
}

/// A session at `http://addr{path}` for the domain `to`. Nothing is sent
/// until the harness writes its stream header.
pub async fn connect(addr: SocketAddr, path: &str, to: &str) -> anyhow::Result<BoshConn> {
    // One connection to begin with (an idle session holds one); a second
    // is opened the first time something is to be sent while the first
    // waits at the server.
    let first = lane(addr).await?;
    let (tx, wrx) = mpsc::unbounded_channel();
    let (rtx, rx) = mpsc::channel(64);
    let session = Session {
        uri: format!("http://{addr}{path}"),
        host: addr.to_string(),
        to: to.to_string(),
        sid: None,
        // Any start will do (XEP-0124 §7.1 asks for a large random one).
        rid: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::from(d.subsec_nanos()) + 1),
        opened: false,
        addr,
        lanes: vec![Some(first)],
        out: Framer::new(BytesMut::new()),
    };
    tokio::spawn(session.run(wrx, rtx));
    Ok(BoshConn {
        tx,
        rx,
        inbound: Bytes::new(),
        ended: false,
    })
}

/// One HTTP/1.1 connection to the server.
async fn lane(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// What a request carries.
enum Request {
    /// The session's creation (the stream header's first time).
    Create,
    /// `xmpp:restart` (a stream header after SASL).
    Restart,
    /// Payload (maybe none: a poll).
    Payload(Vec<u8>),
    /// `type='terminate'` (the stream's end), with the payload before it.
    Terminate(Vec<u8>),
}

struct Session {
    addr: SocketAddr,
    uri: String,
    host: String,
    to: String,
    sid: Option<String>,
    /// The next request's rid.
    rid: u64,
    /// The connections (two at most); `None` while a request is out on it.
    lanes: Vec<Option<SendRequest<Full<Bytes>>>>,
    /// What was written and not sent yet.
    out: Framer,
    /// The harness's first stream header was seen.
    opened: bool,
}

type Sent = Pin<
    Box<
        dyn std::future::Future<
                Output = (usize, u64, SendRequest<Full<Bytes>>, anyhow::Result<Bytes>),
            > + Send,
    >,
>;

impl Session {
    fn body(&self, rid: u64, r: &Request) -> String {
        let sid = self.sid.as_deref().unwrap_or("");
        match r {
            Request::Create => format!(
                "<body xmlns='{NS_BOSH}' xmlns:xmpp='{NS_XBOSH}' rid='{rid}' to='{}' xml:lang='en' wait='{WAIT_SECS}' hold='1' ver='1.11' xmpp:version='1.0'/>",
                self.to
            ),
            Request::Restart => format!(
                "<body xmlns='{NS_BOSH}' xmlns:xmpp='{NS_XBOSH}' sid='{sid}' rid='{rid}' to='{}' xml:lang='en' xmpp:restart='true'/>",
                self.to
            ),
            Request::Payload(p) => format!(
                "<body xmlns='{NS_BOSH}' sid='{sid}' rid='{rid}'>{}</body>",
                String::from_utf8_lossy(p)
            ),
            Request::Terminate(p) => format!(
                "<body xmlns='{NS_BOSH}' sid='{sid}' rid='{rid}' type='terminate'>{}</body>",
                String::from_utf8_lossy(p)
            ),
        }
    }

    /// Send `r` on a free lane (there is one: the caller checked).
    fn send(&mut self, r: &Request) -> Option<Sent> {
        let i = self.lanes.iter().position(Option::is_some)?;
        let mut lane = self.lanes[i].take()?;
        let rid = self.rid;
        self.rid += 1;
        let body = self.body(rid, r);
        if debug() {
            eprintln!("bosh: send on {i}: {body}");
        }
        let req = hyper::Request::post(&self.uri)
            .header("Host", &self.host)
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(Full::new(Bytes::from(body)));
        Some(Box::pin(async move {
            let r = async {
                let req = req?;
                lane.ready().await?;
                let resp = lane.send_request(req).await?;
                anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
                Ok(resp.into_body().collect().await?.to_bytes())
            }
            .await;
            (i, rid, lane, r)
        }))
    }

    async fn run(
        mut self,
        mut written: mpsc::UnboundedReceiver<Bytes>,
        stream: mpsc::Sender<io::Result<Bytes>>,
    ) {
        let fail = |e: String| io::Error::other(e);
        let mut out_flight: FuturesUnordered<Sent> = FuturesUnordered::new();
        // Responses that came before an earlier rid's.
        let mut done: BTreeMap<u64, Bytes> = BTreeMap::new();
        let mut next_read: Option<u64> = None;
        let mut requests: std::collections::VecDeque<Request> = Default::default();
        let mut closing = false;
        loop {
            // Cut what was written into requests.
            loop {
                match cut(&mut self.out, &mut self.opened) {
                    Ok(Some(r)) => requests.push_back(r),
                    Ok(None) => break,
                    Err(e) => {
                        let _ = stream.send(Err(e)).await;
                        return;
                    }
                }
            }
            // A second connection, the first time one is needed.
            if self.lanes.len() < 2
                && out_flight.len() == self.lanes.len()
                && self.sid.is_some()
                && !requests.is_empty()
            {
                match lane(self.addr).await {
                    Ok(l) => self.lanes.push(Some(l)),
                    Err(e) => {
                        let _ = stream.send(Err(fail(e.to_string()))).await;
                        return;
                    }
                }
            }
            // Send what can go: the creation alone; then payloads merged
            // (a restart goes alone), keeping a poll out otherwise.
            while out_flight.len() < self.lanes.len() {
                let r = match requests.front() {
                    Some(Request::Create) if self.sid.is_none() && out_flight.is_empty() => {
                        requests.pop_front()
                    }
                    Some(Request::Create) => None,
                    Some(_) if self.sid.is_none() => None,
                    Some(_) => requests.pop_front(),
                    None if self.sid.is_some() && out_flight.is_empty() && !closing => {
                        Some(Request::Payload(Vec::new()))
                    }
                    None => None,
                };
                let Some(mut r) = r else { break };
                if let Request::Payload(p) = &mut r {
                    while let Some(Request::Payload(more)) = requests.front() {
                        p.extend_from_slice(more);
                        requests.pop_front();
                    }
                    if let Some(Request::Terminate(t)) = requests.front_mut() {
                        let mut all = std::mem::take(p);
                        all.extend_from_slice(t);
                        *t = all;
                        continue;
                    }
                }
                if matches!(r, Request::Terminate(_)) {
                    closing = true;
                }
                if next_read.is_none() {
                    next_read = Some(self.rid);
                }
                let Some(f) = self.send(&r) else { break };
                out_flight.push(f);
                if matches!(r, Request::Create) {
                    break;
                }
            }
            tokio::select! {
                w = written.recv() => match w {
                    Some(b) => self.out.buf.extend_from_slice(&b),
                    // The harness let go of the session.
                    None => return,
                },
                Some((i, rid, lane, r)) = out_flight.next(), if !out_flight.is_empty() => {
                    self.lanes[i] = Some(lane);
                    let body = match r {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = stream.send(Err(fail(e.to_string()))).await;
                            return;
                        }
                    };
                    if debug() {
                        eprintln!("bosh: rid {rid}: {}", String::from_utf8_lossy(&body));
                    }
                    done.insert(rid, body);
                    // In rid order: what a later response carries came
                    // after what an earlier one did.
                    while let Some(b) = next_read.and_then(|r| done.remove(&r)) {
                        next_read = next_read.map(|r| r + 1);
                        match self.received(&b) {
                            Ok((bytes, end)) => {
                                if !bytes.is_empty() && stream.send(Ok(bytes)).await.is_err() {
                                    return;
                                }
                                if end {
                                    let _ = stream
                                        .send(Ok(Bytes::from_static(b"</stream:stream>")))
                                        .await;
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = stream.send(Err(e)).await;
                                return;
                            }
                        }
                    }
                    if next_read.is_some_and(|r| r >= self.rid) {
                        next_read = None;
                    }
                }
            }
        }
    }

    /// A response's payload as stream bytes (a stream header first for a
    /// creation or restart answer: it carries features), and whether it
    /// ended the session.
    fn received(&mut self, b: &[u8]) -> io::Result<(Bytes, bool)> {
        let t = std::str::from_utf8(b).map_err(|_| invalid("not UTF-8"))?;
        let t = t.trim();
        let head_end = tag_end(t.as_bytes()).ok_or_else(|| invalid("no <body/>"))?;
        let head = &t[..=head_end];
        let inner = if head.ends_with("/>") {
            ""
        } else {
            t[head_end + 1..]
                .strip_suffix("</body>")
                .unwrap_or("")
                .trim()
        };
        let attr = |name: &str| attribute(head, name);
        let terminate = attr("type").as_deref() == Some("terminate");
        let mut out = String::new();
        if self.sid.is_none() {
            let sid = attr("sid").ok_or_else(|| invalid("no sid in the session's creation"))?;
            out.push_str(&self.header(&sid));
            self.sid = Some(sid);
        } else if inner.contains("<stream:features") || inner.contains("<features") {
            let sid = self.sid.clone().unwrap_or_default();
            out.push_str(&self.header(&sid));
        }
        out.push_str(inner);
        if terminate && attr("condition").is_some() && inner.is_empty() {
            return Err(invalid(&format!(
                "the session ended: {}",
                attr("condition").unwrap_or_default()
            )));
        }
        Ok((Bytes::from(out), terminate))
    }

    fn header(&self, id: &str) -> String {
        format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}' from='{}' id='{id}' version='1.0'>",
            self.to
        )
    }
}

/// The next request of what the harness wrote: the WebSocket cutter's
/// messages, read as BOSH: `<open/>` is the session's creation or a
/// restart, `<close/>` its end, an element payload.
fn cut(out: &mut Framer, opened: &mut bool) -> io::Result<Option<Request>> {
    let Some(m) = crate::ws::cut(out)? else {
        return Ok(None);
    };
    let Message::Text(t) = m else {
        return Ok(None);
    };
    let s = t.as_str();
    if s.starts_with("<open ") || s.starts_with("<open/") {
        // The first header makes the session; the rest restart it.
        return Ok(Some(if *opened {
            Request::Restart
        } else {
            *opened = true;
            Request::Create
        }));
    }
    if s.starts_with("<close ") || s.starts_with("<close/") {
        return Ok(Some(Request::Terminate(Vec::new())));
    }
    Ok(Some(Request::Payload(s.as_bytes().to_vec())))
}

/// The value of attribute `name` in the start tag `head`.
fn attribute(head: &str, name: &str) -> Option<String> {
    let mut rest = head;
    loop {
        let at = rest.find(name)?;
        let before = rest[..at].chars().last();
        let after = &rest[at + name.len()..];
        rest = after;
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let after = after.trim_start();
        let Some(v) = after.strip_prefix('=') else {
            continue;
        };
        let v = v.trim_start();
        let q = v.chars().next()?;
        if q != '\'' && q != '"' {
            return None;
        }
        let end = v[1..].find(q)?;
        return Some(v[1..=end].to_string());
    }
}

/// `XMPP_LOADTEST_BOSH_DEBUG` set: every request and response on stderr.
fn debug() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("XMPP_LOADTEST_BOSH_DEBUG").is_some())
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

impl AsyncRead for BoshConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            if !me.inbound.is_empty() {
                let n = me.inbound.len().min(buf.remaining());
                buf.put_slice(&me.inbound[..n]);
                me.inbound.advance(n);
                return Poll::Ready(Ok(()));
            }
            if me.ended {
                return Poll::Ready(Ok(()));
            }
            match me.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(b))) => me.inbound = b,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => me.ended = true,
            }
        }
    }
}

impl AsyncWrite for BoshConn {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.tx.send(Bytes::copy_from_slice(buf)) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_from_the_start_tag() {
        let h = "<body xmlns='http://jabber.org/protocol/httpbind' sid=\"abc\" wait='60' type='terminate'>";
        assert_eq!(attribute(h, "sid").as_deref(), Some("abc"));
        assert_eq!(attribute(h, "wait").as_deref(), Some("60"));
        assert_eq!(attribute(h, "type").as_deref(), Some("terminate"));
        assert_eq!(attribute(h, "rid"), None);
    }

    #[test]
    fn what_the_harness_writes_becomes_requests() {
        let mut out = Framer::new(BytesMut::new());
        out.buf.extend_from_slice(b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGE=</auth><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><message to='b@x'><body>hi</body></message></stream:stream>");
        let mut got = Vec::new();
        let mut opened = false;
        while let Some(r) = cut(&mut out, &mut opened).expect("xml") {
            got.push(match r {
                Request::Create => "create".to_string(),
                Request::Restart => "restart".to_string(),
                Request::Payload(p) => String::from_utf8(p).expect("utf-8"),
                Request::Terminate(_) => "terminate".to_string(),
            });
        }
        assert_eq!(
            got,
            [
                "create",
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGE=</auth>",
                "restart",
                "<message xmlns='jabber:client' to='b@x'><body>hi</body></message>",
                "terminate"
            ]
        );
    }
}
