//! XMPP over BOSH (XEP-0124, XEP-0206) over real HTTP, with hyper's
//! client, each request on a connection of its own (a session outlives
//! them): a session is created with the attributes the XEPs name and the
//! stream features; a client authenticates, restarts, binds and chats with
//! a TCP client through long polls; requests are taken in rid order (a gap
//! waits to be filled), a retransmission gets its response again; every
//! binding error condition comes as the XEPs say; terminate and
//! inactivity end the session and its presence; pauses, acknowledgements,
//! CORS, host-meta; and thousands of idle sessions.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use common::{Client, TestServer};
use hyper_util::rt::TokioIo;
use proto::Element;
use tokio::net::TcpStream;

const PW: &str = "correct horse";
const NS: &str = "http://jabber.org/protocol/httpbind";
const FIRST_RID: u64 = 4_000_000;

/// A server with the WebSocket listener (where BOSH is served), waits of
/// 2 s so that held requests come back quickly, and `f`'s changes.
async fn server_with(f: impl FnOnce(&mut node::config::Config)) -> (TestServer, SocketAddr) {
    let t = TestServer::start_with(|c| {
        c.listeners.websocket = Some("127.0.0.1:0".into());
        c.websocket.origins = vec!["https://chat.example".into()];
        c.bosh.max_wait_secs = 2;
        c.bosh.inactivity_secs = 30;
        f(c);
    })
    .await;
    let addr = t
        .server
        .as_ref()
        .and_then(|s| s.websocket_addr)
        .expect("the http listener");
    (t, addr)
}

async fn server() -> (TestServer, SocketAddr) {
    server_with(|_| {}).await
}

struct Http {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Http {
    /// The `<body/>` of a 200 response.
    fn body(&self) -> Element {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        Element::parse(self.text.as_bytes(), "", &[])
            .unwrap_or_else(|e| panic!("not a body ({e}): {}", self.text))
    }
}

/// One request on a new connection.
async fn try_http(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> anyhow::Result<Http> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tx.send_request(req.body(Body::from(body))?).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(Body::new(resp.into_body()), 1 << 24).await?;
    Ok(Http {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec())?,
    })
}

async fn http(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Http {
    tokio::time::timeout(common::TIMEOUT, try_http(addr, method, path, headers, body))
        .await
        .expect("an answer in time")
        .expect("an HTTP exchange")
}

async fn post(addr: SocketAddr, body: String) -> Http {
    http(
        addr,
        Method::POST,
        "/http-bind",
        &[("content-type", "text/xml; charset=utf-8")],
        body,
    )
    .await
}

/// A terminate body's condition.
fn condition(b: &Element) -> Option<&str> {
    assert_eq!(b.attr("type"), Some("terminate"), "{}", b.to_xml(""));
    b.attr("condition")
}

/// A client's BOSH session.
struct Bosh {
    addr: SocketAddr,
    sid: String,
    /// The last rid sent.
    rid: u64,
}

impl Bosh {
    /// Create a session with `attrs` on the request (to, ver, wait and
    /// hold are there unless `attrs` gives them).
    async fn create(addr: SocketAddr, attrs: &str) -> (Bosh, Element) {
        let mut a = attrs.to_string();
        for (k, v) in [
            ("to", "localhost"),
            ("ver", "1.6"),
            ("wait", "60"),
            ("hold", "1"),
        ] {
            if !attrs.contains(&format!("{k}=")) {
                a.push_str(&format!(" {k}='{v}'"));
            }
        }
        let r = post(
            addr,
            format!(
                "<body xmlns='{NS}' xmlns:xmpp='urn:xmpp:xbosh' rid='{FIRST_RID}' xml:lang='en' xmpp:version='1.0' {a}/>"
            ),
        )
        .await;
        let b = r.body();
        let sid = b
            .attr("sid")
            .unwrap_or_else(|| panic!("no sid: {}", r.text))
            .to_string();
        (
            Bosh {
                addr,
                sid,
                rid: FIRST_RID,
            },
            b,
        )
    }

    fn wrap(&self, rid: u64, attrs: &str, payload: &str) -> String {
        format!(
            "<body xmlns='{NS}' xmlns:xmpp='urn:xmpp:xbosh' sid='{}' rid='{rid}' {attrs}>{payload}</body>",
            self.sid
        )
    }

    /// A request with `rid`.
    async fn at(&self, rid: u64, attrs: &str, payload: &str) -> Http {
        post(self.addr, self.wrap(rid, attrs, payload)).await
    }

    /// The next request.
    async fn send(&mut self, payload: &str) -> Element {
        self.rid += 1;
        self.at(self.rid, "", payload).await.body()
    }

    /// The payloads of the next responses until one matches `pred`
    /// (sending `payload` first, then polling).
    async fn until(&mut self, payload: &str, pred: impl Fn(&Element) -> bool) -> Element {
        let mut next = payload.to_string();
        for _ in 0..10 {
            let b = self.send(&next).await;
            assert_ne!(b.attr("type"), Some("terminate"), "{}", b.to_xml(""));
            if let Some(e) = b.elements().find(|e| pred(e)) {
                return e.clone();
            }
            next.clear();
        }
        panic!("nothing matched after {payload}");
    }

    /// Create, authenticate with PLAIN, restart and bind.
    async fn login(addr: SocketAddr, user: &str, resource: &str) -> Bosh {
        let (mut s, b) = Bosh::create(addr, "").await;
        assert!(
            b.elements().any(|e| e.name == "features"),
            "{}",
            b.to_xml("")
        );
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PW}"));
        s.until(
            &format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
            ),
            |e| e.name == "success",
        )
        .await;
        s.rid += 1;
        let r = s
            .at(
                s.rid,
                "to='localhost' xml:lang='en' xmpp:restart='true'",
                "",
            )
            .await
            .body();
        let f = r
            .elements()
            .find(|e| e.name == "features")
            .unwrap_or_else(|| panic!("features after the restart: {}", r.to_xml("")));
        assert!(
            f.child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
                .is_some()
        );
        let iq = s
            .until(
                &format!("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"),
                |e| e.name == "iq" && e.attr("id") == Some("b1"),
            )
            .await;
        assert_eq!(iq.attr("type"), Some("result"), "{}", iq.to_xml(""));
        s
    }
}

/// Bob over TCP, online, his own presence read.
async fn bob(t: &TestServer) -> Client {
    let mut bob = Client::online(t.addr, "bob@localhost", PW, "tcp")
        .await
        .expect("bob");
    bob.expect(|e| e.name == "presence" && e.attr("from") == Some("bob@localhost/tcp"))
        .await
        .expect("his own presence");
    bob
}

/// Nothing from `c` for a while.
async fn quiet(c: &mut Client) {
    let r = tokio::time::timeout(Duration::from_millis(600), c.next_element()).await;
    assert!(
        r.is_err(),
        "unexpected: {:?}",
        r.map(|e| e.map(|e| e.to_xml("")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_logs_in_and_chats_with_a_tcp_client_through_long_polls() {
    let (t, addr) = server().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    // The creation response (XEP-0124 §7.2, XEP-0206 §3): a longer wait
    // than the server's is cut to it, requests is hold + 1, and the
    // stream features come with it.
    let r = post(
        addr,
        format!(
            "<body xmlns='{NS}' xmlns:xmpp='urn:xmpp:xbosh' rid='{FIRST_RID}' to='localhost' ver='1.6' wait='3600' hold='1' xml:lang='en' xmpp:version='1.0' route='xmpp:localhost:5222'/>"
        ),
    )
    .await;
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/xml; charset=utf-8")
    );
    let b = r.body();
    assert_eq!(b.name, "body");
    assert_eq!(b.ns, NS);
    for (k, v) in [
        ("wait", "2"),
        ("requests", "2"),
        ("hold", "1"),
        ("polling", "2"),
        ("inactivity", "30"),
        ("maxpause", "120"),
        ("ver", "1.6"),
        ("from", "localhost"),
        ("xmpp:version", "1.0"),
        ("xmpp:restartlogic", "true"),
    ] {
        assert_eq!(b.attr(k), Some(v), "{k}: {}", r.text);
    }
    let sid = b.attr("sid").expect("sid");
    assert!(
        sid.len() >= 32 && sid.bytes().all(|c| c.is_ascii_hexdigit()),
        "{sid}"
    );
    let f = b
        .child("features", "http://etherx.jabber.org/streams")
        .expect("features");
    let mechs: Vec<String> = f
        .child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .expect("mechanisms")
        .elements()
        .map(Element::text)
        .collect();
    assert!(mechs.contains(&"PLAIN".to_string()), "{mechs:?}");
    assert!(!r.text.contains("starttls"), "{}", r.text);
    drop(b);

    let mut alice = Bosh::login(addr, "alice", "web").await;
    let mut bob = bob(&t).await;
    // Out: a message reaches the TCP client.
    let b = alice
        .send("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='m1'><body>hello bob</body></message>")
        .await;
    assert_ne!(b.attr("type"), Some("terminate"));
    let m = bob
        .expect(|e| e.name == "message")
        .await
        .expect("bob's message");
    assert_eq!(m.attr("from"), Some("alice@localhost/web"));
    assert_eq!(
        m.child("body", "jabber:client")
            .map(Element::text)
            .as_deref(),
        Some("hello bob")
    );
    // In: a long poll held until the answer comes, which carries it.
    alice.rid += 1;
    let poll = {
        let (a, body) = (alice.addr, alice.wrap(alice.rid, "", ""));
        tokio::spawn(async move { post(a, body).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.send("<message to='alice@localhost/web' type='chat' id='m2'><body>hi &lt;alice&gt;</body></message>")
        .await;
    let r = poll.await.expect("the poll");
    let b = r.body();
    let m = b
        .elements()
        .find(|e| e.name == "message")
        .unwrap_or_else(|| panic!("the message in the held response: {}", r.text));
    assert_eq!(m.ns, "jabber:client");
    assert!(
        r.text.contains("<message xmlns='jabber:client'"),
        "{}",
        r.text
    );
    assert_eq!(m.attr("from"), Some("bob@localhost/tcp"));
    assert_eq!(
        m.child("body", "jabber:client")
            .map(Element::text)
            .as_deref(),
        Some("hi <alice>")
    );
    // Nothing to say within the wait: an empty body.
    let b = alice.send("").await;
    assert!(
        b.elements().next().is_none() && b.attr("type").is_none(),
        "{}",
        b.to_xml("")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_taken_in_rid_order_and_a_gap_waits_to_be_filled() {
    let (t, addr) = server().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let alice = Bosh::login(addr, "alice", "web").await;
    let mut bob = bob(&t).await;
    let msg = |n: &str| {
        format!(
            "<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>{n}</body></message>"
        )
    };
    // The second request comes first: it waits for the first.
    let second = {
        let (a, body) = (alice.addr, alice.wrap(alice.rid + 2, "", &msg("second")));
        tokio::spawn(async move { post(a, body).await })
    };
    quiet(&mut bob).await;
    let first = alice.at(alice.rid + 1, "", &msg("first")).await;
    assert_eq!(first.status, StatusCode::OK);
    for want in ["first", "second"] {
        let m = bob.expect(|e| e.name == "message").await.expect("message");
        assert_eq!(
            m.child("body", "jabber:client")
                .map(Element::text)
                .as_deref(),
            Some(want)
        );
    }
    let b = second.await.expect("second").body();
    assert_ne!(b.attr("type"), Some("terminate"), "{}", b.to_xml(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_request_gets_the_same_response_again() {
    let (t, addr) = server().await;
    t.add_user("alice@localhost", PW);
    let mut alice = Bosh::login(addr, "alice", "web").await;
    let ping = "<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>";
    alice.rid += 1;
    let rid = alice.rid;
    let first = alice.at(rid, "", ping).await;
    assert!(first.text.contains("id='p1'"), "{}", first.text);
    // XEP-0124 §14.3: the same rid again (the answer was lost): the same
    // response, and the ping is not taken twice.
    let again = alice.at(rid, "", ping).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.text, first.text);
    let b = alice.send("").await;
    assert!(b.elements().next().is_none(), "{}", b.to_xml(""));
    // A rid older than the responses kept: item-not-found, and the
    // session is over.
    let old = alice.at(rid - 5, "", "").await.body();
    assert_eq!(condition(&old), Some("item-not-found"));
    let after = alice.at(alice.rid + 1, "", "").await.body();
    assert_eq!(condition(&after), Some("item-not-found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_creation_errors_have_the_conditions_the_xep_names() {
    let (_t, addr) = server().await;
    let ask = |attrs: &str| format!("<body xmlns='{NS}' {attrs}/>");
    for (body, want) in [
        // No 'to': improper-addressing; one not served: host-unknown.
        (
            ask("rid='10' ver='1.6' wait='60' hold='1'"),
            "improper-addressing",
        ),
        (
            ask("rid='10' ver='1.6' to='elsewhere.example' wait='60' hold='1'"),
            "host-unknown",
        ),
        // Bad attributes: bad-request.
        (ask("rid='ten' ver='1.6' to='localhost'"), "bad-request"),
        (
            ask("rid='9007199254740992' ver='1.6' to='localhost'"),
            "bad-request",
        ),
        (
            ask("rid='10' ver='1.6' to='localhost' wait='long'"),
            "bad-request",
        ),
        (
            ask("rid='10' ver='1.6' to='localhost' hold='-1'"),
            "bad-request",
        ),
        // Not XML, not a <body/>, the wrong namespace, character data.
        ("this is not xml".into(), "bad-request"),
        (
            "<body xmlns='http://jabber.org/protocol/httpbind' rid='10' to='localhost'>".into(),
            "bad-request",
        ),
        (
            "<body xmlns='urn:wrong' rid='10' to='localhost' ver='1.6'/>".into(),
            "bad-request",
        ),
        (
            "<iq xmlns='http://jabber.org/protocol/httpbind'/>".into(),
            "bad-request",
        ),
        (
            format!("<body xmlns='{NS}' rid='10' to='localhost' ver='1.6'>text</body>"),
            "bad-request",
        ),
        // An unknown sid.
        (ask("sid='0123456789abcdef' rid='10'"), "item-not-found"),
    ] {
        let r = post(addr, body.clone()).await;
        assert_eq!(condition(&r.body()), Some(want), "{body}");
    }
    // A client that gave no 'ver' (XEP-0124 §17.1, legacy) gets the HTTP
    // error codes those conditions replaced.
    let r = post(addr, ask("rid='ten' to='localhost'")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_errors_have_the_conditions_the_xep_names() {
    let (_t, addr) = server().await;
    // A rid beyond the window: item-not-found (§14.2), and the session is
    // over.
    let (s, _) = Bosh::create(addr, "").await;
    let r = s.at(s.rid + 3, "", "").await.body();
    assert_eq!(condition(&r), Some("item-not-found"));
    assert_eq!(
        condition(&s.at(s.rid + 1, "", "").await.body()),
        Some("item-not-found")
    );

    // A rid that is not a number: bad-request.
    let (s, _) = Bosh::create(addr, "").await;
    let r = post(
        addr,
        format!("<body xmlns='{NS}' sid='{}' rid='x'/>", s.sid),
    )
    .await;
    assert_eq!(condition(&r.body()), Some("bad-request"));

    // A body that is not XML names a live session: it ends.
    let (s, _) = Bosh::create(addr, "").await;
    let r = post(
        addr,
        format!(
            "<body xmlns='{NS}' sid='{}' rid='{}'><message>",
            s.sid,
            s.rid + 1
        ),
    )
    .await;
    assert_eq!(condition(&r.body()), Some("bad-request"));
    assert_eq!(
        condition(&s.at(s.rid + 1, "", "").await.body()),
        Some("item-not-found")
    );

    // Too many requests at once (§11): requests is 2; one held, one ahead
    // of a gap, and the gap's own: policy-violation; the held one is
    // answered with other-request.
    let (s, _) = Bosh::create(addr, "").await;
    let held = {
        let (a, b) = (addr, s.wrap(s.rid + 1, "", ""));
        tokio::spawn(async move { post(a, b).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ahead = {
        let (a, b) = (addr, s.wrap(s.rid + 3, "", ""));
        tokio::spawn(async move { post(a, b).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.at(s.rid + 2, "", "").await.body();
    assert_eq!(condition(&r), Some("policy-violation"));
    assert_eq!(
        condition(&held.await.expect("held").body()),
        Some("other-request")
    );
    assert_eq!(
        condition(&ahead.await.expect("ahead").body()),
        Some("other-request")
    );

    // Polling too often (§12): a polling session (hold 0) whose empty
    // polls come closer together than 'polling' (2 s) seconds, each
    // answered empty.
    let (mut s, b) = Bosh::create(addr, "hold='0'").await;
    assert_eq!(b.attr("hold"), Some("0"));
    assert_eq!(b.attr("requests"), Some("1"));
    let mut refused = false;
    for _ in 0..5 {
        let b = s.send("").await;
        if b.attr("type") == Some("terminate") {
            assert_eq!(condition(&b), Some("policy-violation"));
            refused = true;
            break;
        }
    }
    assert!(refused, "polling too often was let through");

    // A restart before SASL succeeded: bad-request (XEP-0206 §5).
    let (s, _) = Bosh::create(addr, "").await;
    let r = s.at(s.rid + 1, "xmpp:restart='true'", "").await.body();
    assert_eq!(condition(&r), Some("bad-request"));

    // 'stream' names a stream of multiple streams (§16), not offered:
    // item-not-found.
    let (s, _) = Bosh::create(addr, "").await;
    let r = s.at(s.rid + 1, "stream='other'", "").await.body();
    assert_eq!(condition(&r), Some("item-not-found"));

    // A body larger than bosh.max_body_bytes: policy-violation, and the
    // session it names is over.
    let (s, _) = Bosh::create(addr, "").await;
    let big = format!(
        "<message xmlns='jabber:client' to='a@localhost'><body>{}</body></message>",
        "x".repeat(300 << 10)
    );
    let r = s.at(s.rid + 1, "", &big).await.body();
    assert_eq!(condition(&r), Some("policy-violation"));
    assert_eq!(
        condition(&s.at(s.rid + 1, "", "").await.body()),
        Some("item-not-found")
    );

    // A legacy client (no 'ver'): HTTP 404 for item-not-found, 403 for
    // policy-violation (§17.1).
    let r = post(
        addr,
        format!("<body xmlns='{NS}' rid='{FIRST_RID}' to='localhost' wait='60' hold='1'/>"),
    )
    .await;
    let b = r.body();
    assert!(b.attr("ver").is_some(), "{}", r.text);
    let legacy = Bosh {
        addr,
        sid: b.attr("sid").expect("sid").to_string(),
        rid: FIRST_RID,
    };
    let r = legacy.at(legacy.rid + 3, "", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = post(
        addr,
        format!("<body xmlns='{NS}' rid='{FIRST_RID}' to='localhost' wait='60' hold='0'/>"),
    )
    .await;
    let mut legacy = Bosh {
        addr,
        sid: r.body().attr("sid").expect("sid").to_string(),
        rid: FIRST_RID,
    };
    let mut status = StatusCode::OK;
    for _ in 0..5 {
        legacy.rid += 1;
        let r = legacy.at(legacy.rid, "", "").await;
        if r.status != StatusCode::OK {
            status = r.status;
            break;
        }
    }
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_stream_error_ends_the_session_as_remote_stream_error() {
    let (_t, addr) = server().await;
    let (mut s, _) = Bosh::create(addr, "").await;
    // A stanza before authentication: the stream machine's not-authorized.
    let b = s
        .send("<message xmlns='jabber:client' to='x@localhost'><body>hi</body></message>")
        .await;
    assert_eq!(
        condition(&b),
        Some("remote-stream-error"),
        "{}",
        b.to_xml("")
    );
    let e = b
        .child("error", "http://etherx.jabber.org/streams")
        .unwrap_or_else(|| panic!("the stream error: {}", b.to_xml("")));
    assert!(
        e.child("not-authorized", "urn:ietf:params:xml:ns:xmpp-streams")
            .is_some(),
        "{}",
        b.to_xml("")
    );
    assert_eq!(condition(&s.send("").await), Some("item-not-found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_ends_the_session_and_its_presence() {
    let (t, addr) = server().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut alice = Bosh::login(addr, "alice", "web").await;
    let mut bob = bob(&t).await;
    alice
        .send("<presence xmlns='jabber:client' to='bob@localhost/tcp'/>")
        .await;
    let p = bob
        .expect(|e| e.name == "presence")
        .await
        .expect("presence");
    assert_eq!(p.attr("from"), Some("alice@localhost/web"));
    assert_eq!(p.attr("type"), None);
    // §13: the terminate request is answered type='terminate'.
    alice.rid += 1;
    let b = alice.at(alice.rid, "type='terminate'", "").await.body();
    assert_eq!(condition(&b), None);
    let p = bob
        .expect(|e| e.name == "presence")
        .await
        .expect("unavailable");
    assert_eq!(p.attr("from"), Some("alice@localhost/web"));
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert_eq!(condition(&alice.send("").await), Some("item-not-found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_session_ends_and_a_pause_stretches_the_inactivity() {
    let (t, addr) = server_with(|c| c.bosh.inactivity_secs = 1).await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut bob = bob(&t).await;
    let mut alice = Bosh::login(addr, "alice", "web").await;
    alice
        .send("<presence xmlns='jabber:client' to='bob@localhost/tcp'/>")
        .await;
    bob.expect(|e| e.name == "presence")
        .await
        .expect("presence");
    // No request for longer than 'inactivity' (§8): the session ends, and
    // with it the presence.
    let p = bob
        .expect(|e| e.name == "presence")
        .await
        .expect("unavailable");
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert_eq!(condition(&alice.send("").await), Some("item-not-found"));

    // §10: a pause answers the held request at once, and the session
    // outlives its inactivity period for the pause's length, once.
    let (s, b) = Bosh::create(addr, "").await;
    assert_eq!(b.attr("inactivity"), Some("1"));
    let held = {
        let (a, b) = (addr, s.wrap(s.rid + 1, "", ""));
        tokio::spawn(async move { post(a, b).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let p = s.at(s.rid + 2, "pause='4'", "").await.body();
    assert!(
        p.attr("type").is_none() && p.elements().next().is_none(),
        "{}",
        p.to_xml("")
    );
    let h = held.await.expect("held").body();
    assert!(h.attr("type").is_none(), "{}", h.to_xml(""));
    assert!(started.elapsed() < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let b = s.at(s.rid + 3, "", "").await.body();
    assert!(
        b.attr("type").is_none(),
        "the pause was not honoured: {}",
        b.to_xml("")
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        condition(&s.at(s.rid + 4, "", "").await.body()),
        Some("item-not-found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_and_the_content_type_asked_for() {
    let (_t, addr) = server().await;
    let r = post(
        addr,
        format!(
            "<body xmlns='{NS}' rid='{FIRST_RID}' to='localhost' ver='1.11' wait='60' hold='1' ack='1' content='application/xml; charset=utf-8'/>"
        ),
    )
    .await;
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/xml; charset=utf-8")
    );
    // Never sniffed as something else.
    assert_eq!(
        r.headers
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );
    let b = r.body();
    // §9.1: the creation response acknowledges the creation request.
    assert_eq!(b.attr("ack"), Some(FIRST_RID.to_string().as_str()));
    assert_eq!(b.attr("ver"), Some("1.11"));
    let s = Bosh {
        addr,
        sid: b.attr("sid").expect("sid").to_string(),
        rid: FIRST_RID,
    };
    // A held request answered because a later one came: it acknowledges
    // the later one; the later one, answered after its wait, does not
    // (its own rid).
    let held = {
        let (a, b) = (addr, s.wrap(s.rid + 1, "", ""));
        tokio::spawn(async move { post(a, b).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = s.at(s.rid + 2, &format!("ack='{}'", s.rid), "").await;
    assert_eq!(
        later
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/xml; charset=utf-8")
    );
    assert_eq!(later.body().attr("ack"), None, "{}", later.text);
    let h = held.await.expect("held").body();
    assert_eq!(h.attr("ack"), Some((s.rid + 2).to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_cors_from_the_allowed_origins() {
    let (_t, addr) = server().await;
    let pre = http(
        addr,
        Method::OPTIONS,
        "/http-bind",
        &[
            ("origin", "https://chat.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        String::new(),
    )
    .await;
    assert!(pre.status.is_success(), "{}", pre.status);
    let h = |r: &Http, k: &str| {
        r.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        h(&pre, "access-control-allow-origin").as_deref(),
        Some("https://chat.example")
    );
    assert!(h(&pre, "access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(
        h(&pre, "access-control-allow-headers")
            .is_some_and(|m| m.to_ascii_lowercase().contains("content-type"))
    );
    let bad = http(
        addr,
        Method::OPTIONS,
        "/http-bind",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        String::new(),
    )
    .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    // The POST itself: allowed with the origin echoed, or refused.
    let body = format!(
        "<body xmlns='{NS}' rid='{FIRST_RID}' to='localhost' ver='1.6' wait='60' hold='1'/>"
    );
    let ok = http(
        addr,
        Method::POST,
        "/http-bind",
        &[("origin", "https://chat.example")],
        body.clone(),
    )
    .await;
    assert_eq!(
        h(&ok, "access-control-allow-origin").as_deref(),
        Some("https://chat.example")
    );
    assert!(ok.body().attr("sid").is_some());
    let no = http(
        addr,
        Method::POST,
        "/http-bind",
        &[("origin", "https://evil.example")],
        body,
    )
    .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    // BOSH is POST only.
    let get = http(addr, Method::GET, "/http-bind", &[], String::new()).await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_meta_names_the_bosh_url() {
    let (_t, addr) = server().await;
    let xrd = http(
        addr,
        Method::GET,
        "/.well-known/host-meta",
        &[],
        String::new(),
    )
    .await;
    assert!(
        xrd.text.contains(
            "<Link rel='urn:xmpp:alt-connections:xbosh' href='http://localhost/http-bind'/>"
        ),
        "{}",
        xrd.text
    );
    assert!(
        xrd.text.contains("urn:xmpp:alt-connections:websocket"),
        "{}",
        xrd.text
    );
    let jrd = http(
        addr,
        Method::GET,
        "/.well-known/host-meta.json",
        &[("x-forwarded-proto", "https")],
        String::new(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&jrd.text).expect("json");
    let links = v["links"].as_array().expect("links");
    assert!(
        links
            .iter()
            .any(|l| l["rel"] == "urn:xmpp:alt-connections:xbosh"
                && l["href"] == "https://localhost/http-bind"),
        "{}",
        jrd.text
    );
    // A configured public URL wins; BOSH turned off is not named.
    let (_t, addr) =
        server_with(|c| c.bosh.public_url = Some("https://chat.example.org/bosh".into())).await;
    let xrd = http(
        addr,
        Method::GET,
        "/.well-known/host-meta",
        &[],
        String::new(),
    )
    .await;
    assert!(
        xrd.text.contains("href='https://chat.example.org/bosh'"),
        "{}",
        xrd.text
    );
    let (_t, addr) = server_with(|c| c.bosh.enabled = false).await;
    let xrd = http(
        addr,
        Method::GET,
        "/.well-known/host-meta",
        &[],
        String::new(),
    )
    .await;
    assert!(!xrd.text.contains("xbosh"), "{}", xrd.text);
    let r = post(addr, format!("<body xmlns='{NS}' rid='1' to='localhost'/>")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_count_against_the_connection_limits() {
    let (_t, addr) = server_with(|c| c.limits.max_connections_per_ip = 3).await;
    let mut made = 0;
    let mut refused = false;
    for i in 0..6 {
        let body = format!(
            "<body xmlns='{NS}' rid='{}' to='localhost' ver='1.6' wait='60' hold='1'/>",
            FIRST_RID + i
        );
        match try_http(addr, Method::POST, "/http-bind", &[], body).await {
            Ok(r) => {
                let b = r.body();
                if b.attr("sid").is_some() {
                    made += 1;
                } else {
                    // As a TCP client is told: the stream's policy-violation.
                    assert_eq!(condition(&b), Some("remote-stream-error"));
                    assert!(r.text.contains("policy-violation"), "{}", r.text);
                    refused = true;
                    break;
                }
            }
            // The HTTP connection itself refused at the limit.
            Err(_) => {
                refused = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(made >= 1 && refused, "made {made}, refused {refused}");
}

/// The process's resident memory, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_sessions_and_the_server_still_answers() {
    use futures::StreamExt;
    const N: u64 = 2000;
    let (t, addr) = server_with(|c| {
        c.limits.max_connections = 20_000;
        c.limits.max_connections_per_ip = 20_000;
        c.bosh.inactivity_secs = 300;
    })
    .await;
    t.add_user("alice@localhost", PW);
    let before = rss_kib();
    let made = futures::stream::iter(0..N)
        .map(|i| async move {
            let body = format!(
                "<body xmlns='{NS}' rid='{}' to='localhost' ver='1.6' wait='60' hold='1'/>",
                FIRST_RID + i
            );
            let r = post(addr, body).await;
            r.body().attr("sid").is_some()
        })
        .buffer_unordered(16)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    assert_eq!(made as u64, N);
    let edge = &t.server.as_ref().expect("running").edge;
    assert!(edge.connections() as u64 >= N, "{}", edge.connections());
    let after = rss_kib();
    eprintln!(
        "{N} idle BOSH sessions: RSS {before} KiB -> {after} KiB, about {} bytes each",
        (after.saturating_sub(before) * 1024) / N
    );
    // The server still serves: a new session logs in and pings.
    let mut alice = Bosh::login(addr, "alice", "web").await;
    let pong = alice
        .until(
            "<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            |e| e.attr("id") == Some("p1"),
        )
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_ends_its_sessions_with_system_shutdown() {
    let (mut t, addr) = server().await;
    let (s, _) = Bosh::create(addr, "").await;
    let held = {
        let (a, b) = (addr, s.wrap(s.rid + 1, "", ""));
        tokio::spawn(async move { post(a, b).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.stop().await;
    let b = held.await.expect("held").body();
    assert_eq!(
        condition(&b),
        Some("remote-stream-error"),
        "{}",
        b.to_xml("")
    );
    let e = b
        .child("error", "http://etherx.jabber.org/streams")
        .expect("the stream error");
    assert!(
        e.child("system-shutdown", "urn:ietf:params:xml:ns:xmpp-streams")
            .is_some(),
        "{}",
        b.to_xml("")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_while_its_request_is_held_still_times_out() {
    let (_t, addr) = server_with(|c| {
        c.bosh.inactivity_secs = 1;
        c.bosh.max_wait_secs = 60;
    })
    .await;
    let (s, _) = Bosh::create(addr, "").await;
    // A long poll whose connection goes while it is held: the request
    // no longer holds the session up, whose inactivity period runs.
    let held = {
        let (a, b) = (addr, s.wrap(s.rid + 1, "", ""));
        tokio::spawn(async move { post(a, b).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.abort();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        condition(&s.at(s.rid + 2, "", "").await.body()),
        Some("item-not-found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_management_over_bosh_resumes_a_session_that_timed_out() {
    // XEP-0198 over BOSH: a BOSH session that ends by inactivity (the
    // client lost its network) leaves its XMPP session waiting; a new BOSH
    // session resumes it and gets what was not acknowledged, and what
    // came meanwhile. Nobody saw it go offline.
    const SM: &str = "urn:xmpp:sm:3";
    let (t, addr) = server_with(|c| c.bosh.inactivity_secs = 1).await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut bob = bob(&t).await;
    let mut alice = Bosh::login(addr, "alice", "web").await;
    let enabled = alice
        .until(&format!("<enable xmlns='{SM}' resume='true'/>"), |e| {
            e.ns == SM
        })
        .await;
    assert_eq!(enabled.name, "enabled", "{}", enabled.to_xml(""));
    let id = enabled.attr("id").expect("id").to_string();
    alice
        .send("<presence xmlns='jabber:client' to='bob@localhost/tcp'/>")
        .await;
    bob.expect(|e| e.name == "presence")
        .await
        .expect("alice's presence");
    bob.send("<message to='alice@localhost/web' type='chat'><body>one</body></message>")
        .await;
    let m = alice.until("", |e| e.name == "message").await;
    assert_eq!(
        m.child("body", "jabber:client")
            .map(Element::text)
            .as_deref(),
        Some("one")
    );
    // Alice's network goes: no more requests; the BOSH session ends.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(condition(&alice.send("").await), Some("item-not-found"));
    bob.send("<message to='alice@localhost/web' type='chat'><body>two</body></message>")
        .await;
    quiet(&mut bob).await;

    // A new BOSH session: authenticate, restart, resume (having handled
    // nothing: "one" comes again).
    let (mut s, _) = Bosh::create(addr, "").await;
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{PW}"));
    s.until(
        &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"),
        |e| e.name == "success",
    )
    .await;
    s.rid += 1;
    s.at(
        s.rid,
        "to='localhost' xml:lang='en' xmpp:restart='true'",
        "",
    )
    .await;
    let mut got = Vec::new();
    let mut next = format!("<resume xmlns='{SM}' previd='{id}' h='0'/>");
    let mut resumed = false;
    for _ in 0..10 {
        let b = s.send(&next).await;
        next.clear();
        for e in b.elements() {
            if e.ns == SM && e.name == "resumed" {
                resumed = true;
            }
            if let Some(t) = e.child("body", "jabber:client") {
                got.push(t.text());
            }
        }
        if got.len() >= 2 {
            break;
        }
    }
    assert!(resumed, "no <resumed/>");
    assert_eq!(got, ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_xml_goes_in_or_out() {
    // A page of another site can post a form (text/plain, no CORS
    // preflight) and could ask for responses served as HTML: neither is
    // taken, so what a stanza carries never runs as script in the
    // server's origin.
    let (_t, addr) = server().await;
    for content in [
        "text/html",
        "text/html; charset=utf-8",
        "application/xhtml+xml",
        "text/plain",
    ] {
        let r = post(
            addr,
            format!(
                "<body xmlns='{NS}' rid='{FIRST_RID}' to='localhost' ver='1.11' wait='60' hold='1' content='{content}'/>"
            ),
        )
        .await;
        assert_eq!(
            condition(&r.body()),
            Some("bad-request"),
            "{content}: {}",
            r.text
        );
    }
    for form in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = http(
            addr,
            Method::POST,
            "/http-bind",
            &[("content-type", form)],
            format!("<body xmlns='{NS}' rid='{FIRST_RID}' to='localhost' ver='1.11' wait='60' hold='1'/>"),
        )
        .await;
        assert_eq!(
            condition(&r.body()),
            Some("bad-request"),
            "{form}: {}",
            r.text
        );
        assert!(r.body().attr("sid").is_none(), "{form}: a session was made");
    }
}
