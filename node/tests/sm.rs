//! Stream management (XEP-0198) over real sockets: enabling, the counts
//! both ways, the server's ack requests, resumption after the connection
//! dropped with nothing lost, the errors, and what becomes of stanzas a
//! client never acknowledged when its session really ends.

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use proto::{Element, ns};

const PW: &str = "correct horse";
const SM: &str = "urn:xmpp:sm:3";

/// Connected and authenticated, not bound (to bind or to resume).
async fn authenticated(t: &TestServer, user: &str) -> Client {
    let (local, domain) = user.split_once('@').expect("jid");
    let mut c = Client::connect(t.addr).await;
    c.open(domain).await.expect("open");
    c.starttls().await.expect("starttls");
    c.open(domain).await.expect("open");
    c.sasl("SCRAM-SHA-256", local, PW).await.expect("sasl");
    c.open(domain).await.expect("open");
    c
}

/// Enable stream management with resumption; the `<enabled/>`.
async fn enable(c: &mut Client) -> Element {
    c.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    c.expect(|e| e.ns == SM).await.expect("an answer")
}

fn body(e: &Element) -> Option<String> {
    e.child("body", ns::CLIENT).map(Element::text)
}

/// The next message with a body, skipping everything else (presence, ack
/// requests), and how many stanzas came on the way (for the count).
async fn next_body(c: &mut Client, stanzas: &mut u32) -> String {
    loop {
        let e = c.next_element().await.expect("an element");
        if e.ns == ns::CLIENT {
            *stanzas += 1;
        }
        if e.name == "message"
            && let Some(b) = body(&e)
        {
            return b;
        }
    }
}

async fn say(c: &mut Client, to: &str, text: &str) {
    c.send(&format!(
        "<message type='chat' to='{to}'><body>{text}</body></message>"
    ))
    .await;
}

/// Ask for the server's count and wait for it: everything sent before
/// has been taken.
async fn sync(c: &mut Client) -> u32 {
    c.send(&format!("<r xmlns='{SM}'/>")).await;
    let a = c
        .expect(|e| e.ns == SM && e.name == "a")
        .await
        .expect("<a/>");
    a.attr("h").and_then(|h| h.parse().ok()).expect("h")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_with_nothing_lost() {
    let t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut alice = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut bob = authenticated(&t, "bob@localhost").await;
    let features = bob.features.clone().expect("features");
    assert!(
        features.child("sm", SM).is_some(),
        "{}",
        features.to_xml(ns::CLIENT)
    );
    // XEP-0198 §3: not before binding.
    bob.send(&format!("<enable xmlns='{SM}'/>")).await;
    let f = bob.expect(|e| e.ns == SM).await.expect("failed");
    assert_eq!(f.name, "failed");
    assert!(f.child("unexpected-request", ns::STANZAS_ERR).is_some());
    bob.bind(Some("phone")).await.expect("bind");
    let enabled = enable(&mut bob).await;
    assert_eq!(enabled.name, "enabled", "{}", enabled.to_xml(SM));
    assert_eq!(enabled.attr("resume"), Some("true"));
    let id = enabled.attr("id").expect("an id").to_string();
    assert!(id.len() >= 16);
    let max: u64 = enabled
        .attr("max")
        .and_then(|m| m.parse().ok())
        .expect("max");
    assert!(max > 0 && max <= 300);
    // A second enable is refused; the stream goes on.
    bob.send(&format!("<enable xmlns='{SM}'/>")).await;
    let f = bob.expect(|e| e.ns == SM).await.expect("failed");
    assert_eq!(f.name, "failed");

    // The server counts bob's stanzas from the enable: two pings.
    for i in 0..2 {
        bob.send(&format!(
            "<iq type='get' id='p{i}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    }
    assert_eq!(sync(&mut bob).await, 2);

    // Three messages: bob reads them and the pings' results, and
    // acknowledges only the first stanza.
    for i in 1..=3 {
        say(&mut alice, "bob@localhost/phone", &format!("m{i}")).await;
    }
    let mut got = 0;
    for i in 1..=3 {
        assert_eq!(next_body(&mut bob, &mut got).await, format!("m{i}"));
    }
    bob.send(&format!("<a xmlns='{SM}' h='1'/>")).await;
    // Another sync, so that the ack is in before the connection goes.
    let handled = sync(&mut bob).await;
    assert_eq!(handled, 2);

    // The connection drops without a word.
    drop(bob);
    // Two more while bob is away; alice still sees him online.
    for i in 4..=5 {
        say(&mut alice, "bob@localhost/phone", &format!("m{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut bob = authenticated(&t, "bob@localhost").await;
    bob.send(&format!("<resume xmlns='{SM}' previd='{id}' h='1'/>"))
        .await;
    let r = bob.expect(|e| e.ns == SM).await.expect("resumed");
    assert_eq!(r.name, "resumed", "{}", r.to_xml(SM));
    assert_eq!(r.attr("previd"), Some(id.as_str()));
    assert_eq!(
        r.attr("h"),
        Some("2"),
        "the server's count of bob's stanzas"
    );
    // Everything after the first stanza comes again, in order: the
    // second ping's result, m1..m3, then what came while he was away.
    let mut again = Vec::new();
    let mut counted = 1;
    while again.len() < 5 {
        let e = bob.next_element().await.expect("replayed");
        if e.ns == ns::CLIENT {
            counted += 1;
        }
        if let Some(b) = body(&e) {
            again.push(b);
        }
        if e.name == "iq" {
            assert_eq!(e.attr("id"), Some("p1"));
        }
    }
    assert_eq!(again, ["m1", "m2", "m3", "m4", "m5"]);
    // The counts go on from the resumption: bob's next stanza is his 3rd.
    bob.send("<iq type='get' id='p3'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    bob.expect(|e| e.attr("id") == Some("p3"))
        .await
        .expect("the ping's result");
    counted += 1;
    assert_eq!(sync(&mut bob).await, 3);
    // An ack of everything so far is taken; more than that is a stream
    // error (XEP-0198 §4).
    bob.send(&format!("<a xmlns='{SM}' h='{counted}'/>")).await;
    bob.send(&format!("<a xmlns='{SM}' h='{}'/>", counted + 10))
        .await;
    let err = bob.expect(|e| e.name == "error").await.expect("error");
    assert!(
        err.child("handled-count-too-high", SM).is_some(),
        "{}",
        err.to_xml(ns::STREAM)
    );
    let _ = got;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_asks_for_acks_as_it_sends() {
    let t = TestServer::start_with(|c| c.sm.location = Some("edge1.example.org:5222".into())).await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut alice = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut bob = Client::login(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    let enabled = enable(&mut bob).await;
    assert_eq!(enabled.name, "enabled");
    // XEP-0198 §5: where to resume, as configured.
    assert_eq!(enabled.attr("location"), Some("edge1.example.org:5222"));
    // A burst: written together, with a request at its end.
    for i in 0..12 {
        say(&mut alice, "bob@localhost/b", &format!("x{i}")).await;
    }
    let mut seen = 0;
    loop {
        let e = bob.next_element().await.expect("element");
        if e.name == "message" {
            seen += 1;
        }
        if e.ns == SM && e.name == "r" && seen == 12 {
            break;
        }
    }
    bob.send(&format!("<a xmlns='{SM}' h='12'/>")).await;
    // Fewer than sm.request_every (5) stanzas: no request.
    for i in 0..2 {
        say(&mut alice, "bob@localhost/b", &format!("y{i}")).await;
    }
    let mut n = 0;
    for i in 0..2 {
        assert_eq!(next_body(&mut bob, &mut n).await, format!("y{i}"));
    }
    if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(300), bob.next_element()).await {
        panic!("nothing due yet, got {}", e.to_xml(SM));
    }
    // Three more make five since the last request: one comes.
    for i in 2..5 {
        say(&mut alice, "bob@localhost/b", &format!("y{i}")).await;
    }
    let mut seen = 0;
    loop {
        let e = bob.next_element().await.expect("element");
        if e.name == "message" {
            seen += 1;
        }
        if e.ns == SM && e.name == "r" {
            assert_eq!(seen, 3);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_go_offline_when_the_session_really_ends() {
    let t = TestServer::start_with(|c| c.sm.resume_timeout_secs = 1).await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut alice = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");

    // 1. A clean close with a message not acknowledged: no resumption,
    // the message is stored offline.
    let mut bob = Client::login(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    assert_eq!(enable(&mut bob).await.name, "enabled");
    say(&mut alice, "bob@localhost/b", "unread").await;
    let mut n = 0;
    assert_eq!(next_body(&mut bob, &mut n).await, "unread");
    bob.send("</stream:stream>").await;
    let _ = bob.expect(|_| false).await;

    // 2. A resumable session whose client never comes back: after the
    // timeout, what it did not acknowledge, and what came meanwhile,
    // is stored offline.
    let mut bob = Client::login(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    let enabled = enable(&mut bob).await;
    let id = enabled.attr("id").expect("id").to_string();
    say(&mut alice, "bob@localhost/b", "seen, not acked").await;
    assert_eq!(next_body(&mut bob, &mut n).await, "seen, not acked");
    drop(bob);
    say(&mut alice, "bob@localhost/b", "while away").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut bob = authenticated(&t, "bob@localhost").await;
    bob.send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await;
    let f = bob.expect(|e| e.ns == SM).await.expect("failed");
    assert_eq!(f.name, "failed");
    assert!(f.child("item-not-found", ns::STANZAS_ERR).is_some());
    // A garbage id is the same.
    bob.send(&format!("<resume xmlns='{SM}' previd='nope' h='0'/>"))
        .await;
    let f = bob.expect(|e| e.ns == SM).await.expect("failed");
    assert!(f.child("item-not-found", ns::STANZAS_ERR).is_some());
    // The client binds a new session and gets all three from storage.
    bob.bind(Some("b")).await.expect("bind");
    bob.send("<presence/>").await;
    let mut bodies = Vec::new();
    while bodies.len() < 3 {
        let e = bob.next_element().await.expect("offline");
        if let Some(b) = body(&e) {
            assert!(
                e.child("delay", "urn:xmpp:delay").is_some(),
                "stored: {}",
                e.to_xml(ns::CLIENT)
            );
            bodies.push(b);
        }
    }
    assert_eq!(bodies, ["unread", "seen, not acked", "while away"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumption_takes_over_a_connection_still_open() {
    let t = TestServer::start().await;
    t.add_user("bob@localhost", PW);
    t.add_user("alice@localhost", PW);
    let mut alice = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut old = Client::login(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    let id = enable(&mut old).await.attr("id").expect("id").to_string();
    // The client thinks its connection dead (it is not, yet) and resumes
    // on a new one: the old one is closed with conflict.
    let mut bob = authenticated(&t, "bob@localhost").await;
    // Not someone else's session: alice cannot resume bob's.
    let mut thief = authenticated(&t, "alice@localhost").await;
    thief
        .send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await;
    let f = thief.expect(|e| e.ns == SM).await.expect("failed");
    assert!(f.child("item-not-found", ns::STANZAS_ERR).is_some());

    bob.send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await;
    assert_eq!(
        bob.expect(|e| e.ns == SM).await.expect("resumed").name,
        "resumed"
    );
    assert_eq!(old.stream_error().await.expect("closed"), "conflict");
    say(&mut alice, "bob@localhost/b", "to the new one").await;
    let mut n = 0;
    assert_eq!(next_body(&mut bob, &mut n).await, "to the new one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_request_is_answered_with_an_error_when_the_session_ends() {
    let t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut alice = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut bob = Client::login(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    assert_eq!(enable(&mut bob).await.name, "enabled");
    alice
        .send("<iq type='get' to='bob@localhost/b' id='v1'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    bob.expect(|e| e.attr("id") == Some("v1"))
        .await
        .expect("bob gets the request");
    // Bob closes his stream without answering or acknowledging it: the
    // session ends for good, and alice is not left waiting.
    bob.send("</stream:stream>").await;
    let e = alice
        .expect(|e| e.attr("id") == Some("v1"))
        .await
        .expect("an answer");
    assert_eq!(e.attr("type"), Some("error"), "{}", e.to_xml(ns::CLIENT));
    assert_eq!(e.attr("from"), Some("bob@localhost/b"));
    let err = e.child("error", ns::CLIENT).expect("error");
    assert!(err.child("service-unavailable", ns::STANZAS_ERR).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_just_before_the_close_is_taken() {
    // A client that acknowledges everything and closes in the same write:
    // nothing it acknowledged is handed on as undelivered (no duplicate
    // from offline storage at its next login).
    let t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut alice = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    for round in 0..5 {
        let mut bob = Client::login(t.addr, "bob@localhost", PW, "b")
            .await
            .expect("bob");
        assert_eq!(enable(&mut bob).await.name, "enabled");
        say(&mut alice, "bob@localhost/b", &format!("r{round}")).await;
        let mut n = 0;
        assert_eq!(next_body(&mut bob, &mut n).await, format!("r{round}"));
        bob.send(&format!("<a xmlns='{SM}' h='{n}'/></stream:stream>"))
            .await;
        let _ = bob.expect(|_| false).await;
    }
    let mut bob = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(700), bob.next_element()).await
    {
        assert!(
            body(&e).is_none(),
            "handed on again: {}",
            e.to_xml(ns::CLIENT)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_client_with_stream_management_gets_every_stanza_counted() {
    // XEP-0352 with XEP-0198: while inactive, presence is held, but none
    // is dropped for a newer one (the core keeps each until counted), so
    // the client's count and the server's agree; a late <a/> with a lower
    // h is no error.
    let t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut alice = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut bob = Client::login(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    let id = enable(&mut bob).await.attr("id").expect("id").to_string();
    bob.send("<inactive xmlns='urn:xmpp:csi:0'/><iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut n = 0u32;
    bob.expect(|e| e.attr("id") == Some("sync"))
        .await
        .expect("sync");
    n += 1;
    for show in ["away", "xa", "dnd"] {
        alice
            .send(&format!(
                "<presence to='bob@localhost/b'><show>{show}</show></presence>"
            ))
            .await;
    }
    // All three held (a message goes straight to bob's shard, presence
    // through alice's: it must not overtake them).
    let m = &t.server.as_ref().expect("running").edge.metrics;
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    while m.csi_held.get() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held {}",
            m.csi_held.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(m.csi_superseded.get(), 0);
    say(&mut alice, "bob@localhost/b", "wake up").await;
    let mut shows = Vec::new();
    let mut woke = false;
    while shows.len() < 3 || !woke {
        let e = bob.next_element().await.expect("element");
        if e.ns == ns::CLIENT {
            n += 1;
        }
        if e.name == "presence"
            && let Some(s) = e.child("show", ns::CLIENT)
        {
            shows.push(s.text());
        }
        woke |= body(&e).is_some();
        if woke && shows.len() < 3 {
            // Held again after the flush: the client says it is active.
            bob.send("<active xmlns='urn:xmpp:csi:0'/>").await;
        }
    }
    assert_eq!(shows, ["away", "xa", "dnd"], "none dropped");
    bob.send(&format!("<a xmlns='{SM}' h='{n}'/><a xmlns='{SM}' h='1'/>"))
        .await;
    // Still there, and the counts agree: resuming with h = n replays nothing.
    assert_eq!(sync(&mut bob).await, 1);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bob = authenticated(&t, "bob@localhost").await;
    bob.send(&format!("<resume xmlns='{SM}' previd='{id}' h='{n}'/>"))
        .await;
    assert_eq!(
        bob.expect(|e| e.ns == SM).await.expect("resumed").name,
        "resumed"
    );
    if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(500), bob.next_element()).await {
        assert!(
            e.ns != ns::CLIENT,
            "replayed though counted: {}",
            e.to_xml(ns::CLIENT)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_stores_what_was_not_acknowledged() {
    // A graceful stop (SIGTERM) ends every session with stream management:
    // no resumption can find them after the restart, so what their clients
    // did not acknowledge is stored offline, for a session waiting for its
    // client and for one still connected alike.
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    t.add_user("carol@localhost", PW);
    let mut bob = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    let mut alice = Client::login(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    assert_eq!(enable(&mut alice).await.name, "enabled");
    let mut carol = Client::login(t.addr, "carol@localhost", PW, "c")
        .await
        .expect("carol");
    assert_eq!(enable(&mut carol).await.name, "enabled");
    // Alice's connection is cut: her session waits.
    drop(alice);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..3 {
        say(&mut bob, "alice@localhost/a", &format!("a{i}")).await;
        say(&mut bob, "carol@localhost/c", &format!("c{i}")).await;
    }
    // Carol reads hers but acknowledges none.
    let mut n = 0;
    for i in 0..3 {
        assert_eq!(next_body(&mut carol, &mut n).await, format!("c{i}"));
    }
    bob.send("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    bob.expect(|e| e.attr("id") == Some("sync"))
        .await
        .expect("sync");
    t.restart().await;
    for (user, want) in [("alice", "a"), ("carol", "c")] {
        let mut c = Client::online(t.addr, &format!("{user}@localhost"), PW, "new")
            .await
            .expect("login after the restart");
        let mut got = Vec::new();
        while got.len() < 3 {
            let e = c.next_element().await.expect("offline");
            if let Some(b) = body(&e) {
                got.push(b);
            }
        }
        let expected: Vec<String> = (0..3).map(|i| format!("{want}{i}")).collect();
        assert_eq!(got, expected, "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_keeps_at_most_ten_sessions_waiting() {
    // Memory stays bounded: an account that leaves session after session
    // waiting keeps only the last ten; the oldest end.
    let t = TestServer::start().await;
    t.add_user("bob@localhost", PW);
    for i in 0..13 {
        let mut c = Client::login(t.addr, "bob@localhost", PW, &format!("r{i}"))
            .await
            .expect("bob");
        assert_eq!(enable(&mut c).await.name, "enabled");
        drop(c);
    }
    let core = t
        .server
        .as_ref()
        .expect("running")
        .core
        .clone()
        .expect("a core");
    let bob = proto::BareJid::parse("bob@localhost").expect("jid");
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    loop {
        let n = core.list_sessions(Some(&bob)).await.len();
        if n == 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} sessions waiting"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The ten kept are the latest.
    let kept: Vec<String> = core
        .list_sessions(Some(&bob))
        .await
        .into_iter()
        .map(|s| s.jid.resource().to_string())
        .collect();
    for old in ["r0", "r1", "r2"] {
        assert!(!kept.contains(&old.to_string()), "{kept:?}");
    }
}
