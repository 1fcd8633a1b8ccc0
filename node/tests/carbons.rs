//! XEP-0280 Message Carbons over real sockets: a user with three
//! sessions, two of them with carbons on, sees both sides of every
//! conversation on each of those two, and nothing on the third.

mod common;

use common::{Client, TestServer};
use proto::{Element, ns};

const PW: &str = "correct horse";
const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const SM: &str = "urn:xmpp:sm:3";

/// Two users whose shards differ (of the 16 a single node has), so that
/// a message between them crosses shards.
fn users() -> (String, String) {
    let shard = |j: &str| router::cluster::shard_of(j, 16);
    let alice = "alice@localhost".to_string();
    let bob = (0..)
        .map(|i| format!("bob{i}@localhost"))
        .find(|b| shard(b) != shard(&alice))
        .expect("a name in another shard");
    (alice, bob)
}

async fn enable(c: &mut Client, id: &str) {
    c.send(&format!(
        "<iq type='set' id='{id}'><enable xmlns='{CARBONS}'/></iq>"
    ))
    .await;
    let r = c
        .expect(|e| e.attr("id") == Some(id))
        .await
        .expect("an answer to enable");
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
}

fn body(e: &Element) -> Option<String> {
    e.child("body", ns::CLIENT).map(Element::text)
}

/// The next message with a body, or a carbon (`received`/`sent`), as
/// (kind, the forwarded message or the message itself).
async fn next_message(c: &mut Client) -> (String, Element) {
    loop {
        let e = c.next_element().await.expect("a message");
        if e.name != "message" {
            continue;
        }
        for way in ["received", "sent"] {
            if let Some(inner) = e
                .child(way, CARBONS)
                .and_then(|w| w.child("forwarded", FORWARD))
                .and_then(|f| f.child("message", ns::CLIENT))
            {
                return (
                    format!("{way}:{}", e.attr("from").unwrap_or("")),
                    inner.clone(),
                );
            }
        }
        if body(&e).is_some() {
            return ("message".into(), e);
        }
    }
}

async fn say(c: &mut Client, to: &str, text: &str, extra: &str) {
    c.send(&format!(
        "<message type='chat' to='{to}' id='{text}'><body>{text}</body>{extra}</message>"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_with_carbons_see_both_sides_of_every_conversation() {
    let t = TestServer::start().await;
    let (alice, bob) = users();
    t.add_user(&alice, PW);
    t.add_user(&bob, PW);
    let mut phone = Client::online(t.addr, &alice, PW, "phone")
        .await
        .expect("phone");
    let mut desk = Client::online(t.addr, &alice, PW, "desk")
        .await
        .expect("desk");
    let mut old = Client::online(t.addr, &alice, PW, "old")
        .await
        .expect("old");
    let mut b = Client::online(t.addr, &bob, PW, "b").await.expect("bob");

    // The server says it has carbons (§3).
    desk.send("<iq type='get' id='info' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let info = desk
        .expect(|e| e.attr("id") == Some("info"))
        .await
        .expect("info");
    assert!(
        info.to_xml(ns::CLIENT)
            .contains(&format!("var='{CARBONS}'")),
        "{}",
        info.to_xml(ns::CLIENT)
    );
    enable(&mut phone, "e1").await;
    enable(&mut desk, "e2").await;
    // Enabling twice is not an error (§8.1).
    enable(&mut desk, "e3").await;

    // Received, to a full JID: the phone gets it, the desk a copy (§6).
    let alice_phone = format!("{alice}/phone");
    say(&mut b, &alice_phone, "r1", "").await;
    let (k, m) = next_message(&mut phone).await;
    assert_eq!((k.as_str(), body(&m).as_deref()), ("message", Some("r1")));
    let (k, m) = next_message(&mut desk).await;
    assert_eq!(k, format!("received:{alice}"));
    assert_eq!(body(&m).as_deref(), Some("r1"));
    assert_eq!(m.attr("to"), Some(alice_phone.as_str()));
    assert_eq!(m.attr("from"), Some(format!("{bob}/b").as_str()));

    // Sent, from the desk to bob in another shard: bob gets it, the
    // phone a copy, the desk none of its own (§7).
    say(&mut desk, &bob, "s1", "").await;
    let (k, m) = next_message(&mut b).await;
    assert_eq!((k.as_str(), body(&m).as_deref()), ("message", Some("s1")));
    let (k, m) = next_message(&mut phone).await;
    assert_eq!(k, format!("sent:{alice}"));
    assert_eq!(body(&m).as_deref(), Some("s1"));
    assert_eq!(m.attr("from"), Some(format!("{alice}/desk").as_str()));
    assert_eq!(m.attr("to"), Some(bob.as_str()));

    // Marked private (§7) or no-copy (XEP-0334): not copied; a groupchat
    // or headline is not either (§6).
    say(
        &mut desk,
        &bob,
        "p1",
        &format!("<private xmlns='{CARBONS}'/>"),
    )
    .await;
    say(&mut desk, &bob, "p2", "<no-copy xmlns='urn:xmpp:hints'/>").await;
    desk.send(&format!(
        "<message type='headline' to='{bob}'><body>h1</body></message>"
    ))
    .await;
    say(&mut desk, &bob, "s2", "").await;
    let (k, m) = next_message(&mut phone).await;
    assert_eq!(
        (k, body(&m).as_deref()),
        (format!("sent:{alice}"), Some("s2")),
        "nothing private came before"
    );

    // To the bare JID, the phone with the highest priority gets it and
    // the desk a copy; the session without carbons gets neither.
    phone
        .send("<presence><priority>5</priority></presence>")
        .await;
    // The desk sees it (an account's sessions see each other's
    // presence): the server has it before bob writes.
    desk.expect(|e| {
        e.name == "presence"
            && e.attr("from") == Some(alice_phone.as_str())
            && e.child("priority", ns::CLIENT)
                .map(Element::text)
                .as_deref()
                == Some("5")
    })
    .await
    .expect("the phone's new priority");
    say(&mut b, &alice, "r2", "").await;
    let (k, m) = next_message(&mut phone).await;
    assert_eq!((k.as_str(), body(&m).as_deref()), ("message", Some("r2")));
    let (k, m) = next_message(&mut desk).await;
    assert_eq!(
        (k, body(&m).as_deref()),
        (format!("received:{alice}"), Some("r2"))
    );

    // The session without carbons got nothing of all this: its next
    // message is one for it, of which the two others get copies.
    say(&mut b, &format!("{alice}/old"), "o1", "").await;
    let (k, m) = next_message(&mut old).await;
    assert_eq!((k.as_str(), body(&m).as_deref()), ("message", Some("o1")));
    for c in [&mut phone, &mut desk] {
        let (k, m) = next_message(c).await;
        assert_eq!(
            (k, body(&m).as_deref()),
            (format!("received:{alice}"), Some("o1"))
        );
    }

    // Between two sessions of the account: the phone gets it, the desk
    // (the sender) no copy of its own.
    say(&mut desk, &alice_phone, "self1", "").await;
    let (k, m) = next_message(&mut phone).await;
    assert_eq!(
        (k.as_str(), body(&m).as_deref()),
        ("message", Some("self1"))
    );
    say(&mut b, &format!("{alice}/desk"), "d0", "").await;
    let (k, m) = next_message(&mut desk).await;
    assert_eq!(
        (k.as_str(), body(&m).as_deref()),
        ("message", Some("d0")),
        "no copy of its own message"
    );
    let (k, m) = next_message(&mut phone).await;
    assert_eq!(
        (k, body(&m).as_deref()),
        (format!("received:{alice}"), Some("d0"))
    );

    // Disabled on the desk: no more copies there.
    desk.send(&format!(
        "<iq type='set' id='d1'><disable xmlns='{CARBONS}'/></iq>"
    ))
    .await;
    let r = desk
        .expect(|e| e.attr("id") == Some("d1"))
        .await
        .expect("disable");
    assert_eq!(r.attr("type"), Some("result"));
    say(&mut b, &alice_phone, "r3", "").await;
    say(&mut phone, &bob, "s3", "").await;
    next_message(&mut phone).await;
    say(&mut b, &format!("{alice}/desk"), "d2", "").await;
    let (k, m) = next_message(&mut desk).await;
    assert_eq!((k.as_str(), body(&m).as_deref()), ("message", Some("d2")));

    // A malformed request is refused.
    desk.send(&format!(
        "<iq type='get' id='bad'><enable xmlns='{CARBONS}'/></iq>"
    ))
    .await;
    let r = desk
        .expect(|e| e.attr("id") == Some("bad"))
        .await
        .expect("error");
    assert_eq!(r.attr("type"), Some("error"));
}

/// Connected and authenticated, not bound (to resume).
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

/// A session resumed (XEP-0198) keeps its carbons: what it sends after
/// the resumption is still copied to the account's other sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_keeps_its_carbons() {
    let t = TestServer::start().await;
    let (alice, bob) = users();
    t.add_user(&alice, PW);
    t.add_user(&bob, PW);
    let mut desk = Client::online(t.addr, &alice, PW, "desk")
        .await
        .expect("desk");
    let mut b = Client::online(t.addr, &bob, PW, "b").await.expect("bob");
    enable(&mut desk, "e1").await;

    let mut phone = authenticated(&t, &alice).await;
    phone.bind(Some("phone")).await.expect("bind");
    phone.send("<presence/>").await;
    phone
        .send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = phone.expect(|e| e.ns == SM).await.expect("enabled");
    let id = enabled.attr("id").expect("id").to_string();
    enable(&mut phone, "e2").await;
    drop(phone);

    let mut phone = authenticated(&t, &alice).await;
    phone
        .send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await;
    let r = phone
        .expect(|e| e.ns == SM && e.name != "r")
        .await
        .expect("resumed");
    assert_eq!(r.name, "resumed", "{}", r.to_xml(SM));
    say(&mut phone, &bob, "after", "").await;
    let (k, m) = next_message(&mut b).await;
    assert_eq!(
        (k.as_str(), body(&m).as_deref()),
        ("message", Some("after"))
    );
    let (k, m) = next_message(&mut desk).await;
    assert_eq!(
        (k, body(&m).as_deref()),
        (format!("sent:{alice}"), Some("after"))
    );
}

/// What a review of the first version found: a copy is never made into
/// an ordinary message when its session ends unacknowledged, a session
/// that will get a stored message does not also get a copy, a carbons
/// session's IQs keep their place behind its messages, an unknown type is
/// copied as a normal message, and a message from a session without
/// carbons to a local user is not copied wherever the two accounts are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_are_not_repeated_and_order_is_kept() {
    let t = TestServer::start().await;
    let (alice, bob) = users();
    let shard = |j: &str| router::cluster::shard_of(j, 16);
    let cat = (0..)
        .map(|i| format!("cat{i}@localhost"))
        .find(|c| shard(c) == shard(&alice))
        .expect("a name in alice's shard");
    for u in [&alice, &bob, &cat] {
        t.add_user(u, PW);
    }
    let mut desk = Client::online(t.addr, &alice, PW, "desk")
        .await
        .expect("desk");
    enable(&mut desk, "e1").await;
    let mut b = Client::online(t.addr, &bob, PW, "b").await.expect("bob");

    // The phone: carbons and stream management, gets a copy, does not
    // acknowledge it, and closes its stream.
    let mut phone = authenticated(&t, &alice).await;
    phone.bind(Some("phone")).await.expect("bind");
    phone.send("<presence/>").await;
    phone
        .send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    phone.expect(|e| e.ns == SM).await.expect("enabled");
    enable(&mut phone, "e2").await;
    say(&mut b, &format!("{alice}/desk"), "x1", "").await;
    let (k, _) = next_message(&mut phone).await;
    assert_eq!(k, format!("received:{alice}"));
    let (k, m) = next_message(&mut desk).await;
    assert_eq!((k.as_str(), body(&m).as_deref()), ("message", Some("x1")));
    phone.send("</stream:stream>").await;
    // The server closes its side too once it has ended the session.
    while phone.next().await.is_ok() {}
    drop(phone);
    // The desk hears the phone go: its session has ended, and what it
    // left unacknowledged has been dealt with (in the same step, ahead of
    // what bob sends next).
    let alice_phone = format!("{alice}/phone");
    desk.expect(|e| {
        e.name == "presence"
            && e.attr("from") == Some(alice_phone.as_str())
            && e.attr("type") == Some("unavailable")
    })
    .await
    .expect("the phone's unavailable presence");
    // Not again at the desk, as a copy or otherwise.
    say(&mut b, &format!("{alice}/desk"), "x2", "").await;
    let (k, m) = next_message(&mut desk).await;
    assert_eq!(
        (k.as_str(), body(&m).as_deref()),
        ("message", Some("x2")),
        "the phone's unacknowledged copy came back"
    );

    // A session with carbons but no presence yet, the only one: the
    // message is stored, and it gets it once, when it comes online.
    desk.send("<presence type='unavailable'/>").await;
    let mut late = authenticated(&t, &alice).await;
    late.bind(Some("late")).await.expect("bind");
    enable(&mut late, "e3").await;
    // (The desk's unavailable presence and the late session's enable
    // reach alice's shard on two connections: a moment for both.)
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    say(&mut b, &alice, "stored", "").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    late.send("<presence/>").await;
    let (k, m) = next_message(&mut late).await;
    assert_eq!(
        (k.as_str(), body(&m).as_deref()),
        ("message", Some("stored"))
    );
    assert!(m.child("delay", "urn:xmpp:delay").is_some(), "from storage");
    say(&mut b, &format!("{alice}/late"), "y1", "").await;
    let (k, m) = next_message(&mut late).await;
    assert_eq!(
        (k.as_str(), body(&m).as_deref()),
        ("message", Some("y1")),
        "the stored message came twice"
    );
    desk.send("<presence/>").await;

    // Messages and IQs of a carbons session reach bob in the order sent.
    let bob_b = format!("{bob}/b");
    for i in 0..20 {
        say(&mut late, &bob_b, &format!("m{i}"), "").await;
        late.send(&format!(
            "<iq type='get' to='{bob_b}' id='q{i}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    }
    let mut seen = Vec::new();
    while seen.len() < 40 {
        let e = b.next_element().await.expect("bob's stanzas");
        match e.name.as_str() {
            "message" if body(&e).is_some() => seen.push(body(&e).unwrap_or_default()),
            "iq" if e.attr("type") == Some("get") => {
                seen.push(e.attr("id").unwrap_or_default().to_string())
            }
            _ => {}
        }
    }
    let want: Vec<String> = (0..20)
        .flat_map(|i| [format!("m{i}"), format!("q{i}")])
        .collect();
    assert_eq!(seen, want);

    // An unknown type is a normal message (RFC 6121 §5.2.2): copied.
    b.send(&format!(
        "<message type='weird' to='{alice}/desk'><body>w1</body></message>"
    ))
    .await;
    let (k, m) = next_message(&mut late).await;
    assert_eq!(
        (k, body(&m).as_deref()),
        (format!("received:{alice}"), Some("w1"))
    );

    // A session without carbons writes to cat, in alice's own shard, and
    // to bob, in another: neither is copied.
    let mut old = Client::online(t.addr, &alice, PW, "old")
        .await
        .expect("old");
    let mut c = Client::online(t.addr, &cat, PW, "c").await.expect("cat");
    say(&mut old, &cat, "n1", "").await;
    say(&mut old, &bob, "n2", "").await;
    next_message(&mut c).await;
    next_message(&mut b).await;
    say(&mut desk, &bob, "after", "").await;
    let (k, m) = next_message(&mut late).await;
    assert_eq!(
        (k, body(&m).as_deref()),
        (format!("sent:{alice}"), Some("after")),
        "a message of a session without carbons was copied"
    );
}

/// An `<enable/>` or `<disable/>` addressed to another of the account's
/// resources is that resource's IQ, not the server's: it reaches the
/// resource and leaves the sender's carbons as they were (its messages
/// are still copied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_sent_to_another_resource_does_not_turn_the_senders_carbons_off() {
    let t = TestServer::start().await;
    let (alice, bob) = users();
    t.add_user(&alice, PW);
    t.add_user(&bob, PW);
    let mut phone = Client::online(t.addr, &alice, PW, "phone")
        .await
        .expect("phone");
    let mut desk = Client::online(t.addr, &alice, PW, "desk")
        .await
        .expect("desk");
    let mut b = Client::online(t.addr, &bob, PW, "b").await.expect("bob");
    enable(&mut phone, "e1").await;
    enable(&mut desk, "e2").await;
    phone
        .send(&format!(
            "<iq type='set' id='x' to='{alice}/desk'><disable xmlns='{CARBONS}'/></iq>"
        ))
        .await;
    let iq = desk
        .expect(|e| e.name == "iq" && e.attr("id") == Some("x"))
        .await
        .expect("the desk gets the IQ");
    assert_eq!(iq.attr("type"), Some("set"));
    say(&mut phone, &bob, "still", "").await;
    next_message(&mut b).await;
    let (k, m) = next_message(&mut desk).await;
    assert_eq!(
        (k, body(&m).as_deref()),
        (format!("sent:{alice}"), Some("still"))
    );
}
