//! XMPP over WebSocket (RFC 7395) over real sockets: the upgrade asks
//! for the `xmpp` subprotocol and an allowed origin; the stream is framed
//! with `<open/>` and `<close/>`, one element per message, stream-level
//! elements declaring their prefix and stanzas their namespace; a client
//! logs in, binds and chats as over TCP; bad input ends in a framed
//! stream error; an oversized message closes the connection; and
//! xmpp.js chats over ws:// and wss://.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::TestServer;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

const PW: &str = "correct horse";
const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

async fn server() -> (TestServer, SocketAddr, SocketAddr) {
    let t = TestServer::start_with(|c| {
        c.listeners.websocket = Some("127.0.0.1:0".into());
        c.listeners.websocket_tls = Some("127.0.0.1:0".into());
        c.websocket.origins = vec!["https://chat.example".into()];
    })
    .await;
    let s = t.server.as_ref().expect("running");
    let (ws, wss) = (
        s.websocket_addr.expect("ws"),
        s.websocket_tls_addr.expect("wss"),
    );
    (t, ws, wss)
}

type Ws = WebSocketStream<TcpStream>;

/// An upgrade to `/xmpp-websocket` with `protocol` and `origin`.
async fn connect(
    addr: SocketAddr,
    protocol: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws, WsError> {
    let mut req = format!("ws://{addr}/xmpp-websocket")
        .into_client_request()
        .expect("request");
    if let Some(p) = protocol {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(p).expect("value"),
        );
    }
    if let Some(o) = origin {
        req.headers_mut()
            .insert("Origin", HeaderValue::from_str(o).expect("value"));
    }
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    client_async(req, tcp).await.map(|(ws, resp)| {
        assert_eq!(
            resp.headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok()),
            Some("xmpp"),
            "the server takes the xmpp subprotocol"
        );
        ws
    })
}

/// The next text message, within the test's time.
async fn recv(ws: &mut Ws) -> String {
    loop {
        let m = tokio::time::timeout(common::TIMEOUT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("no error");
        match m {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("not text: {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, s: &str) {
    ws.send(Message::Text(s.into())).await.expect("send");
}

fn open() -> String {
    format!("<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
}

/// Open the stream; the server's `<open/>` and features.
async fn opened(ws: &mut Ws) -> String {
    send(ws, &open()).await;
    let o = recv(ws).await;
    assert!(
        o.starts_with("<open") && o.contains(FRAMING) && o.contains("from='localhost'"),
        "{o}"
    );
    assert!(o.contains("version='1.0'") && o.contains(" id='"), "{o}");
    let f = recv(ws).await;
    assert!(
        f.starts_with("<stream:features xmlns:stream='http://etherx.jabber.org/streams'"),
        "{f}"
    );
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_needs_the_xmpp_subprotocol_and_an_allowed_origin() {
    let (t, ws, _) = server().await;
    for (protocol, origin, status) in [
        (None, None, 400),
        (Some("chat, superchat"), None, 400),
        (Some("xmpp"), Some("https://evil.example"), 403),
    ] {
        match connect(ws, protocol, origin).await {
            Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), status),
            Err(e) => panic!("{protocol:?} {origin:?}: {e}"),
            Ok(_) => panic!("{protocol:?} {origin:?} was let in"),
        }
    }
    // Listed, or no origin at all (not a browser): in.
    connect(ws, Some("xmpp"), Some("https://chat.example"))
        .await
        .expect("allowed origin");
    connect(ws, Some("other, xmpp"), None)
        .await
        .expect("no origin");
    drop(t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_logs_in_binds_and_chats_over_the_framing() {
    let (t, addr, _) = server().await;
    t.add_user("alice@localhost", PW);
    let mut ws = connect(addr, Some("xmpp"), None).await.expect("upgrade");
    let f = opened(&mut ws).await;
    assert!(f.contains("PLAIN") && !f.contains("starttls"), "{f}");
    let creds = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{PW}"))
    };
    send(
        &mut ws,
        &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"),
    )
    .await;
    let s = recv(&mut ws).await;
    assert!(
        s.starts_with("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"),
        "{s}"
    );
    // The stream restarts with a new <open/> (RFC 7395 §3.5).
    let f = opened(&mut ws).await;
    assert!(f.contains("urn:ietf:params:xml:ns:xmpp-bind"), "{f}");
    send(
        &mut ws,
        "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>",
    )
    .await;
    let b = recv(&mut ws).await;
    assert!(
        b.starts_with("<iq xmlns='jabber:client'") && b.contains("alice@localhost/web"),
        "{b}"
    );
    // A message to oneself comes back as one framed stanza.
    send(
        &mut ws,
        "<message xmlns='jabber:client' to='alice@localhost/web' id='m1' type='chat'><body>a &lt; b</body></message>",
    )
    .await;
    let m = recv(&mut ws).await;
    assert!(
        m.starts_with("<message ")
            && m.contains("xmlns='jabber:client'")
            && m.contains("id='m1'")
            && m.contains("a &lt; b"),
        "{m}"
    );
    // <close/> ends the stream: the server closes its own.
    send(&mut ws, &format!("<close xmlns='{FRAMING}'/>")).await;
    let c = recv(&mut ws).await;
    assert_eq!(c, format!("<close xmlns='{FRAMING}'/>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_ends_in_a_framed_stream_error() {
    let (_t, addr, _) = server().await;
    // Not XML: not-well-formed, framed, then <close/>.
    let mut ws = connect(addr, Some("xmpp"), None).await.expect("upgrade");
    opened(&mut ws).await;
    send(&mut ws, "<message><body>unclosed</body></mess>").await;
    let e = recv(&mut ws).await;
    assert!(
        e.starts_with("<stream:error xmlns:stream='http://etherx.jabber.org/streams'")
            && e.contains("not-well-formed"),
        "{e}"
    );
    let c = recv(&mut ws).await;
    assert!(c.starts_with("<close"), "{c}");
    // A stanza before authentication: not-authorized.
    let mut ws = connect(addr, Some("xmpp"), None).await.expect("upgrade");
    opened(&mut ws).await;
    send(
        &mut ws,
        "<message xmlns='jabber:client' to='x@localhost'><body>hi</body></message>",
    )
    .await;
    let e = recv(&mut ws).await;
    assert!(e.contains("not-authorized"), "{e}");
    // A message larger than any stanza may be: the connection goes.
    let mut ws = connect(addr, Some("xmpp"), None).await.expect("upgrade");
    opened(&mut ws).await;
    let big = format!(
        "<message xmlns='jabber:client'><body>{}</body></message>",
        "x".repeat(2 << 20)
    );
    let _ = ws.send(Message::Text(big.into())).await;
    let end = tokio::time::timeout(common::TIMEOUT, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the oversized message did not end the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_js_chats_over_ws_and_wss() {
    let (t, ws, wss) = server().await;
    t.add_user("alice@localhost", "alice secret");
    t.add_user("bob@localhost", "bob secret");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new("node")
        .arg(format!("{dir}/../tests/interop/xmppjs/websocket.mjs"))
        .arg(format!("ws://{ws}/xmpp-websocket"))
        .arg(format!("wss://{wss}/xmpp-websocket"))
        .args(["localhost", "alice secret", "bob secret"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("node runs (scripts/setup.sh installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("interop ok"),
        "xmpp.js over WebSocket failed:\n{stdout}\n{stderr}"
    );
    // Each listener counts its own connections.
    let http = t.server.as_ref().expect("running").http_addr.expect("http");
    let metrics = http_get(http, "/metrics", "Host: localhost\r\n").await;
    for l in ["websocket", "websocket_tls"] {
        let line = format!("xmppd_client_connections_accepted_total{{listener=\"{l}\"}} 1");
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_js_resumes_its_session_after_the_websocket_is_cut() {
    // XEP-0198 over WebSocket with xmpp.js's own stream management: the
    // TCP socket under bob's WebSocket is destroyed, alice goes on
    // sending, xmpp.js reconnects and resumes (tests/interop/xmppjs/sm.mjs).
    let (t, ws, _) = server().await;
    t.add_user("alice@localhost", "alice secret");
    t.add_user("bob@localhost", "bob secret");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new("node")
        .arg(format!("{dir}/../tests/interop/xmppjs/sm.mjs"))
        .arg(format!("ws://{ws}/xmpp-websocket"))
        .args(["localhost", "alice secret", "bob secret"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("node runs (scripts/setup.sh installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("interop ok"),
        "xmpp.js stream management over WebSocket failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_clients_are_cut_off_and_cannot_lock_others_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Slowloris: connections that send their request headers a byte at a
    // time, or nothing at all, hold at most the per-address limit, get
    // 503 beyond it, and are closed once the header timeout (10 s) is
    // up; meanwhile another address is served.
    const PER_IP: usize = 8;
    let t = TestServer::start_with(|c| {
        c.listeners.websocket = Some("127.0.0.1:0".into());
        c.limits.max_connections_per_ip = PER_IP;
    })
    .await;
    let ws = t
        .server
        .as_ref()
        .expect("running")
        .websocket_addr
        .expect("ws");
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    for i in 0..PER_IP {
        let mut tcp = TcpStream::connect(ws).await.expect("connect");
        if i % 2 == 0 {
            tcp.write_all(b"GET /xmpp-websocket HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("start");
        }
        slow.push(tcp);
    }
    // The dribble goes on in the background: one header byte a second.
    let dribble = async {
        let mut gone = vec![false; slow.len()];
        for _ in 0..20 {
            for (i, tcp) in slow.iter_mut().enumerate() {
                if !gone[i] && tcp.write_all(b"X").await.is_err() {
                    gone[i] = true;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let checks = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // One more from the same address: refused, and told so.
        let mut extra = TcpStream::connect(ws).await.expect("connect");
        let mut reply = String::new();
        let _ = tokio::time::timeout(common::TIMEOUT, extra.read_to_string(&mut reply)).await;
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply:?}");
        // Another address is served at once.
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind");
        let mut other = sock.connect(ws).await.expect("connect");
        other
            .write_all(b"GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut body = String::new();
        tokio::time::timeout(common::TIMEOUT, other.read_to_string(&mut body))
            .await
            .expect("in time")
            .expect("read");
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    };
    tokio::join!(checks, dribble);
    // By now (the dribble ran 20 s) every slow connection was closed
    // by the server: reads end.
    for tcp in &mut slow {
        let mut buf = [0u8; 512];
        let end = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "a slow connection was still open");
    }
    assert!(started.elapsed() < Duration::from_secs(40));
    // And the address may connect again.
    let mut again = TcpStream::connect(ws).await.expect("connect");
    again
        .write_all(
            b"GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("request");
    let mut body = String::new();
    tokio::time::timeout(common::TIMEOUT, again.read_to_string(&mut body))
        .await
        .expect("in time")
        .expect("read");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
}

/// One HTTP/1.1 request on a fresh connection; the whole response.
async fn http_get(addr: SocketAddr, path: &str, headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.expect("tcp");
    tcp.write_all(format!("GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut out = String::new();
    tokio::time::timeout(common::TIMEOUT, tcp.read_to_string(&mut out))
        .await
        .expect("in time")
        .expect("response");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_meta_names_the_websocket_url() {
    let (t, ws, _) = server().await;
    // XEP-0156: the XRD and JRD forms, readable from any origin.
    let xrd = http_get(ws, "/.well-known/host-meta", "Host: localhost:5280\r\n").await;
    assert!(xrd.starts_with("HTTP/1.1 200"), "{xrd}");
    assert!(
        xrd.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{xrd}"
    );
    assert!(
        xrd.contains("<Link rel='urn:xmpp:alt-connections:websocket' href='ws://localhost:5280/xmpp-websocket'/>"),
        "{xrd}"
    );
    // Behind a proxy that speaks TLS: wss.
    let jrd = http_get(
        ws,
        "/.well-known/host-meta.json",
        "Host: LOCALHOST\r\nX-Forwarded-Proto: https, http\r\n",
    )
    .await;
    let body = jrd.split("\r\n\r\n").nth(1).expect("body");
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(
        v["links"][0]["href"], "wss://LOCALHOST/xmpp-websocket",
        "{jrd}"
    );
    assert_eq!(v["links"][0]["rel"], "urn:xmpp:alt-connections:websocket");
    // A Host that is no host name, or not a domain served here, is not
    // echoed into the document.
    for host in ["a'><b x='", "evil.example", "localhost:99999"] {
        let bad = http_get(ws, "/.well-known/host-meta", &format!("Host: {host}\r\n")).await;
        assert!(
            !bad.contains("<b") && !bad.contains("<Link"),
            "{host}: {bad}"
        );
    }
    drop(t);
    // A configured public URL wins.
    let t = TestServer::start_with(|c| {
        c.listeners.websocket = Some("127.0.0.1:0".into());
        c.websocket.public_url = Some("wss://xmpp.example.org/ws".into());
    })
    .await;
    let ws = t
        .server
        .as_ref()
        .and_then(|s| s.websocket_addr)
        .expect("ws");
    let xrd = http_get(ws, "/.well-known/host-meta", "Host: 127.0.0.1\r\n").await;
    assert!(xrd.contains("href='wss://xmpp.example.org/ws'"), "{xrd}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_edge_sends_websocket_clients_to_another_uri() {
    for uri in [Some("wss://other.example/xmpp-websocket"), None] {
        let t = TestServer::start_with(|c| {
            c.listeners.websocket = Some("127.0.0.1:0".into());
            c.websocket.see_other_uri = uri.map(str::to_string);
        })
        .await;
        let s = t.server.as_ref().expect("running");
        let addr = s.websocket_addr.expect("ws");
        let mut ws = connect(addr, Some("xmpp"), None).await.expect("upgrade");
        opened(&mut ws).await;
        s.edge.start_drain(std::time::Duration::ZERO, None);
        let end = recv(&mut ws).await;
        match uri {
            // RFC 7395 §3.6.1: the other endpoint on <close/>.
            Some(u) => assert_eq!(
                end,
                format!("<close xmlns='{FRAMING}' see-other-uri='{u}'/>")
            ),
            // Else the stream's end as over TCP, framed.
            None => {
                assert!(end.contains("system-shutdown"), "{end}");
                let c = recv(&mut ws).await;
                assert!(c.starts_with("<close"), "{c}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_one_whole_element() {
    let (_t, addr, _) = server().await;
    // An XML declaration before <open/> is allowed (RFC 7395 §3.3.3).
    let mut ws = connect(addr, Some("xmpp"), None).await.expect("upgrade");
    send(&mut ws, &format!("<?xml version='1.0'?>{}", open())).await;
    let o = recv(&mut ws).await;
    assert!(o.starts_with("<open"), "{o}");
    let f = recv(&mut ws).await;
    assert!(f.starts_with("<stream:features"), "{f}");
    // Half an element, two elements, a binary message: bad-format, then
    // <close/>.
    for bad in [
        Message::Text("<message><body>half".into()),
        Message::Text("<iq type='get' id='a'/><iq type='get' id='b'/>".into()),
        Message::Binary(b"<presence/>".to_vec().into()),
    ] {
        let mut ws = connect(addr, Some("xmpp"), None).await.expect("upgrade");
        opened(&mut ws).await;
        ws.send(bad.clone()).await.expect("send");
        let e = recv(&mut ws).await;
        assert!(e.contains("bad-format"), "{bad:?}: {e}");
        let c = recv(&mut ws).await;
        assert!(c.starts_with("<close"), "{c}");
    }
    // Past the size limit: policy-violation, then <close/>.
    let mut ws = connect(addr, Some("xmpp"), None).await.expect("upgrade");
    opened(&mut ws).await;
    let big = format!("<message><body>{}</body></message>", "x".repeat(400 << 10));
    ws.send(Message::Text(big.into())).await.expect("send");
    let e = recv(&mut ws).await;
    assert!(e.contains("policy-violation"), "{e}");
}
