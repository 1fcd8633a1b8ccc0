//! Client state indication (XEP-0352) over real sockets: the feature is
//! offered after authentication; while a client is inactive its
//! connection holds back presence (the latest per resource) and messages
//! without a body, and writes them, in order, with the next message that
//! has a body, or when the client is active again.

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use proto::{Element, ns};

const PW: &str = "correct horse";
const CSI: &str = "urn:xmpp:csi:0";

/// Nothing arrives for `c` within `d`.
async fn quiet(c: &mut Client, d: Duration) {
    if let Ok(Ok(e)) = tokio::time::timeout(d, c.next_element()).await {
        panic!("held back, yet written: {}", e.to_xml(ns::CLIENT));
    }
}

/// Say inactive, and know the connection took it: a ping after it
/// (answered by the edge itself, never held) has come back.
async fn inactive(c: &mut Client) {
    c.send(&format!(
        "<inactive xmlns='{CSI}'/><iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    c.expect(|e| e.attr("id") == Some("sync"))
        .await
        .expect("the ping's answer");
}

/// Wait until the server's connections have held back `n` stanzas for
/// inactive clients (its own counter).
async fn held_at_least(t: &TestServer, n: u64) {
    let m = &t.server.as_ref().expect("running").edge.metrics;
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    while m.csi_held.get() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held {} of {n}",
            m.csi_held.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn show(e: &Element) -> Option<String> {
    e.child("show", ns::CLIENT).map(Element::text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_client_gets_what_can_wait_with_what_cannot() {
    let t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut alice = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    // The feature comes with the post-authentication features.
    let mut bob = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    // Whatever his own presence brings, before he goes inactive.
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), bob.next_element()).await
    {
    }
    let features = bob.features.as_ref().expect("features");
    assert!(
        features.child("csi", CSI).is_some(),
        "{}",
        features.to_xml(ns::CLIENT)
    );

    inactive(&mut bob).await;
    // Three presences of alice's resource (directed to bob), and a
    // message without a body: all held; only the last presence is kept.
    for s in ["away", "xa", "dnd"] {
        alice
            .send(&format!(
                "<presence to='bob@localhost/b'><show>{s}</show></presence>"
            ))
            .await;
    }
    // A presence takes another way through the server than a message
    // (the sender's shard first): wait until bob's connection holds all
    // three before the message goes, so that the order is known.
    held_at_least(&t, 3).await;
    alice
        .send("<message to='bob@localhost/b' id='nobody'><x xmlns='urn:example:ping'/></message>")
        .await;
    held_at_least(&t, 4).await;
    quiet(&mut bob, Duration::from_millis(300)).await;
    // A message with a body is written at once, after what was held.
    alice
        .send("<message to='bob@localhost/b' id='hello' type='chat'><body>hi</body></message>")
        .await;
    let p = bob.next_element().await.expect("the presence");
    assert_eq!(p.name, "presence", "{}", p.to_xml(ns::CLIENT));
    assert_eq!(show(&p).as_deref(), Some("dnd"), "only the latest presence");
    let m = bob.next_element().await.expect("the held message");
    assert_eq!(m.attr("id"), Some("nobody"));
    let m = bob.next_element().await.expect("the message");
    assert_eq!(m.attr("id"), Some("hello"));

    // Held again, and written when bob is active.
    alice
        .send("<presence to='bob@localhost/b'><show>chat</show></presence>")
        .await;
    held_at_least(&t, 5).await;
    quiet(&mut bob, Duration::from_millis(300)).await;
    bob.send(&format!("<active xmlns='{CSI}'/>")).await;
    let p = bob.next_element().await.expect("the presence");
    assert_eq!(show(&p).as_deref(), Some("chat"));
    // Active: written at once.
    alice
        .send("<presence to='bob@localhost/b'><show>away</show></presence>")
        .await;
    let p = tokio::time::timeout(Duration::from_secs(2), bob.next_element())
        .await
        .expect("at once")
        .expect("presence");
    assert_eq!(show(&p).as_deref(), Some("away"));
    // An IQ to an inactive client is not held (someone waits for it).
    inactive(&mut bob).await;
    alice
        .send("<iq to='bob@localhost/b' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let q = tokio::time::timeout(Duration::from_secs(2), bob.next_element())
        .await
        .expect("at once")
        .expect("iq");
    assert_eq!(q.attr("id"), Some("v"));
}

/// The feature comes with the features after authentication, before
/// binding: a client may say it is inactive from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_before_binding_is_taken() {
    let t = TestServer::start().await;
    t.add_user("bob@localhost", PW);
    let mut bob = Client::connect(t.addr).await;
    bob.open("localhost").await.expect("open");
    let first_id = bob.stream_id.clone();
    bob.starttls().await.expect("tls");
    bob.open("localhost").await.expect("open");
    bob.sasl("SCRAM-SHA-256", "bob", PW).await.expect("sasl");
    bob.open("localhost").await.expect("open");
    // RFC 6120 §4.7.3: every stream header has a new id.
    assert_ne!(bob.stream_id, first_id);
    bob.send(&format!("<inactive xmlns='{CSI}'/>")).await;
    bob.bind(Some("b")).await.expect("bound after <inactive/>");
}
