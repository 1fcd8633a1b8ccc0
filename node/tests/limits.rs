//! Abuse controls over real sockets (issue 11 item 6): in-band
//! registrations per address, failed logins per address and per account,
//! stanzas per session, roster and vCard sizes, each with a client below
//! the limit that does not notice it.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{Client, TestServer};
use proto::{Element, ns};

const PW: &str = "secret password";

/// The condition of a stanza error, e.g. `not-allowed`.
fn condition(e: &Element) -> Option<String> {
    e.child("error", ns::CLIENT)
        .and_then(|x| x.first_element())
        .map(|c| c.name.clone())
}

/// Open a stream after STARTTLS, ready for SASL or registration.
async fn secured(addr: std::net::SocketAddr, from: Option<IpAddr>) -> Client {
    let mut c = match from {
        Some(ip) => Client::connect_from(addr, ip).await,
        None => Client::connect(addr).await,
    };
    c.open("localhost").await.expect("open");
    c.starttls().await.expect("tls");
    c.open("localhost").await.expect("open");
    c
}

/// Register `user` in-band; the answer to the set.
async fn register(addr: std::net::SocketAddr, user: &str) -> Element {
    let mut c = secured(addr, None).await;
    c.send(&format!(
        "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username><password>{PW}</password></query></iq>"
    ))
    .await;
    c.expect(|e| e.attr("id") == Some("reg"))
        .await
        .expect("answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_from_one_address_were_unthrottled() {
    let s = TestServer::start_with(|c| {
        c.registration.enabled = true;
        c.registration.trusted_networks = Vec::new();
    })
    .await;
    s.add_user("taken@localhost", PW);
    // A failed registration (the name is taken) does not use the turn...
    let taken = register(s.addr, "taken").await;
    assert_eq!(condition(&taken).as_deref(), Some("conflict"));
    let first = register(s.addr, "first").await;
    assert_eq!(first.attr("type"), Some("result"), "{first:?}");
    // ...but a second account from the same address must wait.
    let second = register(s.addr, "second").await;
    assert_eq!(condition(&second).as_deref(), Some("policy-violation"));
    let err = second.child("error", ns::CLIENT).expect("error");
    assert_eq!(err.attr("type"), Some("wait"));
    Client::login(s.addr, "first@localhost", PW, "r")
        .await
        .expect("the registered account works");

    // Loopback is trusted by default: a test rig registers freely.
    let open = TestServer::start_with(|c| c.registration.enabled = true).await;
    for u in ["a", "b", "c"] {
        let r = register(open.addr, u).await;
        assert_eq!(r.attr("type"), Some("result"), "{u}: {r:?}");
    }
    // Only the allowed networks may register.
    let closed = TestServer::start_with(|c| {
        c.registration.enabled = true;
        c.registration.allowed_networks = vec!["10.0.0.0/8".into()];
    })
    .await;
    let r = register(closed.addr, "nope").await;
    assert_eq!(condition(&r).as_deref(), Some("not-allowed"));
}

/// SASL PLAIN on a fresh connection from `from`; Ok or the condition.
async fn plain(
    addr: std::net::SocketAddr,
    from: IpAddr,
    user: &str,
    password: &str,
) -> Result<(), String> {
    let mut c = secured(addr, Some(from)).await;
    c.sasl("PLAIN", user, password)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_were_limited_per_stream_only() {
    let s = TestServer::start_with(|c| {
        c.limits.login_free_failures = 2;
        c.limits.login_delay_secs = 2;
        c.limits.login_max_delay_secs = 4;
    })
    .await;
    s.add_user("bob@localhost", PW);
    s.add_user("carol@localhost", PW);
    let attacker = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    // A legit client that mistypes once is not slowed down.
    let t = Instant::now();
    assert!(plain(s.addr, other, "carol", "typo").await.is_err());
    plain(s.addr, other, "carol", PW).await.expect("carol");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Two free failures, each on a new connection; the third is held back.
    for _ in 0..2 {
        let e = plain(s.addr, attacker, "bob", "guess")
            .await
            .expect_err("wrong");
        assert!(e.contains("not-authorized"), "{e}");
    }
    let t = Instant::now();
    assert!(plain(s.addr, attacker, "bob", "guess 3").await.is_err());
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
    // The address must now wait: even the right password is refused
    // without being checked.
    let e = plain(s.addr, attacker, "bob", PW)
        .await
        .expect_err("throttled");
    assert!(e.contains("temporary-auth-failure"), "{e}");
    // From elsewhere the owner still gets in, after the account's wait.
    let t = Instant::now();
    plain(s.addr, other, "bob", PW)
        .await
        .expect("bob from elsewhere");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Once the wait is over the address may try again.
    let start = Instant::now();
    loop {
        match plain(s.addr, attacker, "bob", PW).await {
            Ok(()) => break,
            Err(e) => {
                assert!(e.contains("temporary-auth-failure"), "{e}");
                assert!(start.elapsed() < Duration::from_secs(10), "still refused");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanza_floods_were_unlimited() {
    let s = TestServer::start_with(|c| {
        c.limits.stanza_rate_per_sec = 5;
        c.limits.stanza_burst = 20;
    })
    .await;
    s.add_user("alice@localhost", PW);
    s.add_user("bob@localhost", PW);
    let mut a = Client::online(s.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(s.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    // Within the burst: all delivered.
    for i in 0..10 {
        a.send(&format!(
            "<message to='bob@localhost/b' id='m{i}' type='chat'><body>{i}</body></message>"
        ))
        .await;
    }
    for i in 0..10 {
        let id = format!("m{i}");
        b.expect(|e| e.name == "message" && e.attr("id") == Some(id.as_str()))
            .await
            .expect("delivered");
    }
    // A flood: the stanzas over the rate come back as resource-constraint,
    // and going on ends the stream with policy-violation.
    for i in 0..60 {
        a.send(&format!(
            "<message to='bob@localhost/b' id='f{i}' type='chat'><body>{i}</body></message>"
        ))
        .await;
    }
    let refused = a
        .expect(|e| e.name == "message" && e.attr("type") == Some("error"))
        .await
        .expect("refused");
    assert_eq!(condition(&refused).as_deref(), Some("resource-constraint"));
    assert_eq!(a.stream_error().await.expect("closed"), "policy-violation");
    // Bob, who sent nothing, is unaffected.
    b.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    b.expect(|e| e.attr("id") == Some("p")).await.expect("bob");
    // Pings the edge answers itself count too: 40 of them over a burst of
    // 20 were all answered.
    for i in 0..40 {
        b.send(&format!(
            "<iq type='get' id='q{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    }
    let refused = b
        .expect(|e| e.name == "iq" && e.attr("type") == Some("error"))
        .await
        .expect("a ping over the rate is refused");
    assert_eq!(condition(&refused).as_deref(), Some("resource-constraint"));
}

async fn roster_set(c: &mut Client, id: &str, jid: &str, name: &str) -> Element {
    c.send(&format!(
        "<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'><item jid='{jid}' name='{name}'/></query></iq>"
    ))
    .await;
    c.expect(|e| e.name == "iq" && e.attr("id") == Some(id))
        .await
        .expect("answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rosters_grew_without_limit() {
    let s = TestServer::start_with(|c| c.limits.max_roster_items = 2).await;
    for u in ["alice", "bob", "carol"] {
        s.add_user(&format!("{u}@localhost"), PW);
    }
    let mut a = Client::online(s.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    for (i, j) in ["x@localhost", "y@localhost"].iter().enumerate() {
        let r = roster_set(&mut a, &format!("s{i}"), j, "ok").await;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    }
    let full = roster_set(&mut a, "s3", "z@localhost", "one too many").await;
    assert_eq!(condition(&full).as_deref(), Some("not-allowed"), "{full:?}");
    // Changing an item already there still works.
    let rename = roster_set(&mut a, "s4", "x@localhost", "renamed").await;
    assert_eq!(rename.attr("type"), Some("result"));
    // Asking for a subscription would add an item: refused too.
    a.send("<presence to='bob@localhost' type='subscribe' id='sub'/>")
        .await;
    let e = a
        .expect(|e| e.name == "presence" && e.attr("type") == Some("error"))
        .await
        .expect("refused");
    assert_eq!(condition(&e).as_deref(), Some("not-allowed"));
    // A request to alice's full roster is refused: it is neither kept nor
    // passed on (the error goes to carol's bare JID). Carol's message after
    // it reaches alice's shard after it, so it shows what alice got.
    let mut c = Client::online(s.addr, "carol@localhost", PW, "c")
        .await
        .expect("carol");
    c.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    c.send("<message to='alice@localhost/a' id='after' type='chat'><body>hi</body></message>")
        .await;
    loop {
        let e = a.next_element().await.expect("alice reads");
        assert!(
            !(e.name == "presence" && e.attr("type") == Some("subscribe")),
            "the request reached a full roster: {e:?}"
        );
        if e.name == "message" && e.attr("id") == Some("after") {
            break;
        }
    }
    // Carol hears why: the error to her bare JID reaches her resources.
    let e = c
        .expect(|e| e.name == "presence" && e.attr("type") == Some("error"))
        .await
        .expect("carol is told");
    assert_eq!(condition(&e).as_deref(), Some("resource-constraint"));
    // Carol's own roster has room: she asked, so bob is in it.
    c.send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    c.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let r = c
        .expect(|e| e.attr("id") == Some("r"))
        .await
        .expect("roster");
    let items = r.child("query", ns::ROSTER).expect("query");
    assert_eq!(items.elements().count(), 2, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_vcards_were_stored() {
    let s = TestServer::start_with(|c| c.limits.max_vcard_bytes = 2048).await;
    s.add_user("alice@localhost", PW);
    let mut a = Client::online(s.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let big = "A".repeat(3000);
    a.send(&format!(
        "<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><BINVAL>{big}</BINVAL></PHOTO></vCard></iq>"
    ))
    .await;
    let r = a.expect(|e| e.attr("id") == Some("v1")).await.expect("v1");
    assert_eq!(condition(&r).as_deref(), Some("not-acceptable"), "{r:?}");
    a.send("<iq type='set' id='v2'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>")
        .await;
    let r = a.expect(|e| e.attr("id") == Some("v2")).await.expect("v2");
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    a.send("<iq type='get' id='v3'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    let r = a.expect(|e| e.attr("id") == Some("v3")).await.expect("v3");
    let fn_ = r
        .child("vCard", ns::VCARD)
        .and_then(|v| v.child("FN", ns::VCARD))
        .map(Element::text);
    assert_eq!(fn_.as_deref(), Some("Alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_downgrade_counted_as_a_wrong_password() {
    // A client sending the 'y' flag while -PLUS is offered is refused as
    // a downgrade, but it guessed no password: the address must not be
    // throttled for it.
    let s = TestServer::start_with(|c| {
        c.limits.login_free_failures = 1;
        c.limits.login_delay_secs = 5;
    })
    .await;
    s.add_user("bob@localhost", PW);
    let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    for _ in 0..4 {
        let mut c = secured(s.addr, Some(from)).await;
        // A SCRAM exchange whose client saw no -PLUS: flag 'y'.
        c.cb = Some(vec![1; 32]);
        c.y_flag = true;
        let e = c
            .sasl("SCRAM-SHA-256", "bob", PW)
            .await
            .expect_err("a downgrade");
        assert!(e.to_string().contains("not-authorized"), "{e}");
    }
    let t = Instant::now();
    plain(s.addr, from, "bob", PW)
        .await
        .expect("bob, not held back");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_with_two_payloads_created_an_account() {
    let s = TestServer::start_with(|c| c.registration.enabled = true).await;
    for (id, payload) in [
        (
            "two",
            "<query xmlns='jabber:iq:register'><username>mallory</username><password>long enough pw</password></query><extra xmlns='urn:x'/>",
        ),
        ("none", ""),
    ] {
        let mut c = secured(s.addr, None).await;
        c.send(&format!("<iq type='set' id='{id}'>{payload}</iq>"))
            .await;
        let r = c
            .expect(|e| e.attr("id") == Some(id))
            .await
            .expect("answer");
        assert_eq!(r.attr("type"), Some("error"), "{r:?}");
        assert_eq!(condition(&r).as_deref(), Some("bad-request"), "{r:?}");
    }
    // To another address: not a registration with this server.
    let mut c = secured(s.addr, None).await;
    c.send("<iq type='set' id='to' to='bob@localhost'><query xmlns='jabber:iq:register'><username>trudy</username><password>long enough pw</password></query></iq>").await;
    let r = c
        .expect(|e| e.attr("id") == Some("to"))
        .await
        .expect("answer");
    assert_eq!(r.attr("type"), Some("error"));
    // A result is never answered.
    c.send("<iq type='result' id='res'/>").await;
    c.send("<iq type='get' id='after'><query xmlns='jabber:iq:register'/></iq>")
        .await;
    let r = c.next_element().await.expect("answer");
    assert_eq!(
        r.attr("id"),
        Some("after"),
        "the result was answered: {r:?}"
    );
    let core = s
        .server
        .as_ref()
        .and_then(|x| x.core.as_ref())
        .expect("core");
    for u in ["mallory", "trudy"] {
        let jid = proto::BareJid::parse(&format!("{u}@localhost")).expect("jid");
        assert!(
            !core.accounts().exists(&jid).expect("read"),
            "{u} was created"
        );
    }
}
