//! XMPP over WebSocket (RFC 7395) as the byte stream the rest of the
//! harness reads and writes: the login and every scenario keep writing a
//! stream header, stanzas and `</stream:stream>`, and keep cutting what
//! they read with the stream parser and the framer, whatever the
//! transport. [`WsConn`] turns what is written into one message per
//! element (the stream header into `<open/>`, the stream's end into
//! `<close/>`) and the messages received back into a stream (`<open/>`
//! into a stream header, `<close/>` into `</stream:stream>`).
//!
//! Messages go out on flush, as from a buffered writer: the several
//! stanzas of one write leave in one write to the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::client::Conn;
use crate::framer::{Frame, Framer, tag_end};

const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

/// A WebSocket read and written as an XMPP byte stream.
pub struct WsConn {
    ws: WebSocketStream<Conn>,
    /// Bytes of the messages received that were not read yet.
    inbound: Bytes,
    /// An error met after a read had bytes already: the next read's.
    error: Option<io::Error>,
    /// What was written and not cut into messages yet: an incomplete
    /// element, or whole ones the WebSocket could not take yet.
    out: Framer,
    /// A message cut out that the WebSocket could not take yet.
    pending: Option<Message>,
}

/// Open a WebSocket with the `xmpp` subprotocol at `url` over `io` (TCP,
/// or TLS for `wss`).
pub async fn connect(io: Conn, url: &str) -> anyhow::Result<WsConn> {
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    // The read buffer is allocated up front: the default 128 KiB would
    // take 1.3 GB for 10,000 idle sessions. 8 KiB is what a TCP read takes.
    let config = WebSocketConfig::default().read_buffer_size(8192);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, io, Some(config)).await?;
    Ok(WsConn {
        ws,
        inbound: Bytes::new(),
        error: None,
        out: Framer::new(BytesMut::new()),
        pending: None,
    })
}

impl WsConn {
    /// Hand every whole message written so far to the WebSocket; pending
    /// while it cannot take more.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let m = match self.pending.take() {
                Some(m) => m,
                None => match cut(&mut self.out)? {
                    Some(m) => m,
                    None => return Poll::Ready(Ok(())),
                },
            };
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Pending => {
                    self.pending = Some(m);
                    return Poll::Pending;
                }
                Poll::Ready(r) => r.map_err(io::Error::other)?,
            }
            Pin::new(&mut self.ws)
                .start_send(m)
                .map_err(io::Error::other)?;
        }
    }
}

impl AsyncRead for WsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if let Some(e) = me.error.take() {
            return Poll::Ready(Err(e));
        }
        let start = buf.filled().len();
        loop {
            let n = me.inbound.len().min(buf.remaining());
            buf.put_slice(&me.inbound[..n]);
            me.inbound.advance(n);
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let got = buf.filled().len() > start;
            // The messages that are here already go into the same read: a
            // burst reaches the framer at once, as it does on TCP.
            let next = match Pin::new(&mut me.ws).poll_next(cx) {
                Poll::Pending if got => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            };
            match next {
                Some(Ok(Message::Text(t))) => me.inbound = inbound(t),
                Some(Ok(Message::Binary(b))) => me.inbound = b,
                // The end: what was read now, then nothing.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let e = io::Error::other(e);
                    if got {
                        me.error = Some(e);
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl AsyncWrite for WsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        // What earlier writes left goes first: a WebSocket that cannot take
        // it holds this write back.
        ready!(me.poll_push(cx))?;
        me.out.buf.extend_from_slice(buf);
        if let Poll::Ready(Err(e)) = me.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_push(cx))?;
        Pin::new(&mut me.ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_push(cx))?;
        // A connection the server closed first needs no closing here.
        let _ = ready!(Pin::new(&mut me.ws).poll_close(cx));
        Poll::Ready(Ok(()))
    }
}

/// The next message of what the harness wrote (RFC 7395 §3.3), or `None`
/// until a whole one is there: its stream header becomes `<open/>`, its
/// `</stream:stream>` `<close/>`, the XML declaration goes, and each
/// element is a message of its own, put in `jabber:client` when it was
/// written without a namespace.
pub(crate) fn cut(out: &mut Framer) -> io::Result<Option<Message>> {
    const OPEN: &[u8] = b"<stream:stream";
    const CLOSE: &[u8] = b"</stream:stream";
    loop {
        let blank = out
            .buf
            .iter()
            .take_while(|c| c.is_ascii_whitespace())
            .count();
        out.buf.advance(blank);
        let b = &out.buf[..];
        if b.is_empty() || OPEN.starts_with(b) || CLOSE.starts_with(b) {
            // Nothing, or too little to tell a stream tag from an element.
            return Ok(None);
        }
        if b.starts_with(b"<?") {
            let Some(end) = memchr::memmem::find(b, b"?>") else {
                return Ok(None);
            };
            out.buf.advance(end + 2);
            continue;
        }
        if b.starts_with(CLOSE) {
            let Some(gt) = memchr::memchr(b'>', b) else {
                return Ok(None);
            };
            out.buf.advance(gt + 1);
            return Ok(Some(Message::text(format!(
                "<close xmlns='{NS_FRAMING}'/>"
            ))));
        }
        if b.starts_with(OPEN) {
            let Some(gt) = tag_end(b) else {
                return Ok(None);
            };
            let header = text(&b[..=gt])?;
            let mut open = format!("<open xmlns='{NS_FRAMING}'");
            for (name, value) in attributes(header) {
                if !name.starts_with("xmlns") {
                    open.push_str(&format!(" {name}={value}"));
                }
            }
            open.push_str("/>");
            out.buf.advance(gt + 1);
            return Ok(Some(Message::text(open)));
        }
        return match out.next_frame() {
            Ok(Frame::Element(e)) => element(e).map(Some),
            Ok(Frame::NeedMore) => Ok(None),
            Ok(Frame::Closed) => Err(invalid("an end tag outside any element")),
            Err(e) => Err(invalid(e)),
        };
    }
}

/// A whole element as a message, declaring `jabber:client` when it
/// declares no namespace (RFC 7395 §3.3.3: a message stands alone).
fn element(e: Bytes) -> io::Result<Message> {
    let head_len = tag_end(&e).map_or(e.len(), |gt| gt + 1);
    let namespaced = attributes(text(&e[..head_len])?).any(|(name, _)| name == "xmlns");
    let e = Utf8Bytes::try_from(e).map_err(|_| invalid("not UTF-8"))?;
    if namespaced {
        return Ok(Message::Text(e));
    }
    let at = name_len(&e);
    Ok(Message::text(format!(
        "{} xmlns='jabber:client'{}",
        &e[..at],
        &e[at..]
    )))
}

/// A message from the server as stream bytes: `<open/>` becomes a stream
/// header (declaring what the framed stanzas declare each), `<close/>`
/// the stream's end; anything else stays as it is.
fn inbound(message: Utf8Bytes) -> Bytes {
    let t = message.trim_start();
    let framing = |name: &str| {
        t.starts_with(name)
            && name_len(t) == name.len()
            && attributes(t).any(|(n, v)| n == "xmlns" && unquoted(v) == NS_FRAMING)
    };
    if framing("<open") {
        let mut header =
            format!("<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}'");
        for (name, value) in attributes(t) {
            if !name.starts_with("xmlns") {
                header.push_str(&format!(" {name}={value}"));
            }
        }
        header.push('>');
        return Bytes::from(header);
    }
    if framing("<close") {
        return Bytes::from_static(b"</stream:stream>");
    }
    message.into()
}

/// The length of `<name` at the head of a tag.
fn name_len(tag: &str) -> usize {
    tag.find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(tag.len())
}

/// The attributes of the start tag at the head of `tag`, each as its name
/// and its value as written, quotes included.
fn attributes(tag: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = &tag[name_len(tag)..];
    std::iter::from_fn(move || {
        rest = rest.trim_start();
        let eq = rest.find('=')?;
        let name = rest[..eq].trim_end();
        // Past the tag's end (`/>` or `>`), the `=` is someone else's.
        if name.is_empty() || name.contains(['/', '>']) {
            return None;
        }
        let value = rest[eq + 1..].trim_start();
        let quote = value.chars().next().filter(|&c| c == '\'' || c == '"')?;
        let end = value[1..].find(quote)? + 2;
        rest = &value[end..];
        Some((name, &value[..end]))
    })
}

fn unquoted(value: &str) -> &str {
    value.get(1..value.len() - 1).unwrap_or_default()
}

fn text(b: &[u8]) -> io::Result<&str> {
    std::str::from_utf8(b).map_err(|_| invalid("not UTF-8"))
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::xml::{Limits, StreamEvent, StreamParser};
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

    /// The messages that writing `chunks` one after the other makes.
    fn messages(chunks: &[&str]) -> Vec<String> {
        let mut out = Framer::new(BytesMut::new());
        let mut got = Vec::new();
        for c in chunks {
            out.buf.extend_from_slice(c.as_bytes());
            while let Some(m) = cut(&mut out).expect("xml") {
                got.push(m.into_text().expect("text").to_string());
            }
        }
        assert!(out.buf.is_empty(), "left over: {:?}", out.buf);
        got
    }

    const HEADER: &str = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    #[test]
    fn the_harness_stream_becomes_one_message_per_element() {
        let stanzas = "<message to='b@localhost' type='chat' id='c0'><body>LT!0!17</body></message><message to='b@localhost' type='chat' id='c1'><body>1 &lt; 2 > 0</body></message>";
        let auth =
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>";
        let stream = format!(
            "{HEADER}{auth}{stanzas}<presence/>\n<iq type=\"result\" id='x\"/>'/></stream:stream>"
        );
        let want = [
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
            auth,
            "<message xmlns='jabber:client' to='b@localhost' type='chat' id='c0'><body>LT!0!17</body></message>",
            "<message xmlns='jabber:client' to='b@localhost' type='chat' id='c1'><body>1 &lt; 2 > 0</body></message>",
            "<presence xmlns='jabber:client'/>",
            "<iq xmlns='jabber:client' type=\"result\" id='x\"/>'/>",
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
        ];
        assert_eq!(messages(&[&stream]), want);
        // However the writes cut it.
        for at in 0..=stream.len() {
            if stream.is_char_boundary(at) {
                assert_eq!(
                    messages(&[&stream[..at], &stream[at..]]),
                    want,
                    "split at {at}"
                );
            }
        }
    }

    #[test]
    fn the_servers_messages_become_a_stream_the_parser_reads() {
        let received = [
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='abc' version='1.0' xml:lang='en'/>",
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
            "<message xmlns='jabber:client' from='a@localhost/r' type='chat'><body>hi</body></message>",
            " <close xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" />",
        ];
        let bytes: Vec<Bytes> = received
            .iter()
            .map(|m| inbound(Utf8Bytes::from(*m)))
            .collect();
        assert_eq!(
            bytes[0],
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='abc' version='1.0' xml:lang='en'>"
        );
        assert_eq!(bytes[2], received[2], "a stanza goes as it came");
        assert_eq!(bytes[3], "</stream:stream>");
        let mut p = StreamParser::new(Limits::default());
        for b in &bytes {
            p.feed(b);
        }
        let mut events = Vec::new();
        while let Some(e) = p.next_event().expect("xml") {
            events.push(match e {
                StreamEvent::Open(_) => "open".to_string(),
                StreamEvent::Element(e) => e.name,
                StreamEvent::Close => "close".to_string(),
            });
        }
        assert_eq!(events, ["open", "features", "message", "close"]);
        // An element named like the framing but not in its namespace is
        // a stanza's business.
        let other = "<open xmlns='urn:example'/>";
        assert_eq!(inbound(Utf8Bytes::from(other)), other);
        let opened = "<opener xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";
        assert_eq!(inbound(Utf8Bytes::from(opened)), opened);
    }

    /// The server's side of the upgrade: the `xmpp` subprotocol asked for
    /// and given.
    #[allow(clippy::result_large_err)] // the type of tungstenite's callback
    fn xmpp_subprotocol(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
        assert_eq!(req.headers()["Sec-WebSocket-Protocol"], "xmpp");
        resp.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
        Ok(resp)
    }

    /// The adapter over a real WebSocket: written in two writes, read
    /// to the end that the server's `<close/>` and close frame make.
    #[tokio::test]
    async fn a_websocket_carries_the_stream_both_ways() {
        use futures::{SinkExt, StreamExt};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sent = [
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='s1' version='1.0'/>",
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
            "<message xmlns='jabber:client' from='a@localhost/r'><body>LT!1!2</body></message>",
            "<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
        ];
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, xmpp_subprotocol)
                .await
                .expect("handshake");
            let mut got = Vec::new();
            for _ in 0..3 {
                let m = ws.next().await.expect("message").expect("ok");
                got.push(m.into_text().expect("text").to_string());
            }
            for m in sent {
                ws.feed(Message::text(m)).await.expect("feed");
            }
            ws.close(None).await.expect("close");
            got
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let ws = connect(Conn::Tcp(tcp), &format!("ws://{addr}/xmpp-websocket"))
            .await
            .expect("upgrade");
        let mut conn = Conn::Ws(Box::new(ws));
        conn.write_all(HEADER.as_bytes()).await.expect("write");
        conn.write_all(b"<presence/><message to='b@localhost'><body>x</body></message>")
            .await
            .expect("write");
        conn.flush().await.expect("flush");
        let mut read = Vec::new();
        conn.read_to_end(&mut read).await.expect("read");
        assert_eq!(
            String::from_utf8(read).expect("utf-8"),
            format!(
                "<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}' from='localhost' id='s1' version='1.0'>{}{}{}</stream:stream>",
                sent[1], sent[2], sent[3]
            )
        );
        conn.shutdown().await.expect("shutdown");
        assert_eq!(
            server.await.expect("server"),
            [
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
                "<presence xmlns='jabber:client'/>",
                "<message xmlns='jabber:client' to='b@localhost'><body>x</body></message>",
            ]
        );
    }

    #[test]
    fn attributes_are_read_as_written_up_to_the_tags_end() {
        let tag = "<a b='1' c = \"x'y\" d='=>'/><e f='2'/>";
        let got: Vec<_> = attributes(tag).collect();
        assert_eq!(got, [("b", "'1'"), ("c", "\"x'y\""), ("d", "'=>'")]);
        assert_eq!(attributes("<presence/>").count(), 0);
        assert_eq!(attributes("<m><body>a=b</body></m>").count(), 0);
    }
}
