//! RFC 6121 and the server XEPs over real sockets: rosters with versioning
//! and pushes, the subscription handshake, presence broadcast and probes,
//! unavailable on disconnect, directed presence, message routing by
//! priority, offline storage (XEP-0160), disco, version, vCard, in-band
//! registration, and errors for unknown users and payloads.

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use proto::{Element, ns};

const PW: &str = "correct horse";

fn is_presence_from(e: &Element, from_prefix: &str, ptype: Option<&str>) -> bool {
    e.name == "presence"
        && e.attr("from").is_some_and(|f| f.starts_with(from_prefix))
        && e.attr("type") == ptype
}

async fn two_users() -> TestServer {
    let t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    t
}

/// alice and bob subscribe to each other; both end online and see each other.
async fn befriend(t: &TestServer) -> (Client, Client) {
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    a.send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    let req = b
        .expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .await
        .expect("request");
    assert_eq!(
        req.attr("from"),
        Some("alice@localhost"),
        "subscription requests carry the bare JID"
    );
    b.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    a.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribed"))
        .await
        .expect("approved");
    a.expect(|e| is_presence_from(e, "bob@localhost/b", None))
        .await
        .expect("bob's presence after approval");
    b.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    a.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .await
        .expect("request back");
    a.send("<presence to='bob@localhost' type='subscribed'/>")
        .await;
    b.expect(|e| is_presence_from(e, "alice@localhost/a", None))
        .await
        .expect("alice's presence");
    (a, b)
}

#[tokio::test]
async fn subscription_handshake_gives_both_and_pushes_roster() {
    let mut t = two_users().await;
    let (mut a, _b) = befriend(&t).await;
    a.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let r = a
        .expect(|e| e.attr("id") == Some("r"))
        .await
        .expect("roster");
    let item = r
        .child("query", ns::ROSTER)
        .and_then(|q| q.child("item", ns::ROSTER))
        .expect("bob in roster");
    assert_eq!(item.attr("jid"), Some("bob@localhost"));
    assert_eq!(item.attr("subscription"), Some("both"));
    assert_eq!(item.attr("ask"), None);
    t.stop().await;
}

#[tokio::test]
async fn roster_set_push_versioning_and_remove() {
    let mut t = two_users().await;
    let mut a = Client::login(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut a2 = Client::login(t.addr, "alice@localhost", PW, "a2")
        .await
        .expect("alice 2");
    for c in [&mut a, &mut a2] {
        c.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster' ver=''/></iq>")
            .await;
        let r = c
            .expect(|e| e.attr("id") == Some("r0"))
            .await
            .expect("empty roster");
        assert_eq!(r.attr("type"), Some("result"));
    }
    a.send("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='carol@example.org' name='Carol'><group>Friends</group></item></query></iq>").await;
    // Both interested resources get the push (RFC 6121 §2.3.2).
    for c in [&mut a, &mut a2] {
        let push = c
            .expect(|e| e.name == "iq" && e.attr("type") == Some("set"))
            .await
            .expect("push");
        let q = push.child("query", ns::ROSTER).expect("query");
        assert!(q.attr("ver").is_some());
        let item = q.child("item", ns::ROSTER).expect("item");
        assert_eq!(item.attr("jid"), Some("carol@example.org"));
        assert_eq!(item.attr("name"), Some("Carol"));
        assert_eq!(item.attr("subscription"), Some("none"));
        assert_eq!(
            item.child("group", ns::ROSTER)
                .map(Element::text)
                .as_deref(),
            Some("Friends")
        );
    }
    a.expect(|e| e.attr("id") == Some("s1") && e.attr("type") == Some("result"))
        .await
        .expect("set result");
    // Versioning: the current version gives an empty result (§2.6.3).
    a.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let r = a
        .expect(|e| e.attr("id") == Some("r1"))
        .await
        .expect("roster");
    let ver = r
        .child("query", ns::ROSTER)
        .and_then(|q| q.attr("ver"))
        .expect("ver")
        .to_string();
    a.send(&format!(
        "<iq type='get' id='r2'><query xmlns='jabber:iq:roster' ver='{ver}'/></iq>"
    ))
    .await;
    let r = a
        .expect(|e| e.attr("id") == Some("r2"))
        .await
        .expect("roster");
    assert!(
        r.first_element().is_none(),
        "unchanged roster must be an empty result"
    );
    // Errors of §2.3.3.
    a.send("<iq type='set' id='bad1'><query xmlns='jabber:iq:roster'><item jid='x@y'/><item jid='z@y'/></query></iq>").await;
    let e = a
        .expect(|e| e.attr("id") == Some("bad1"))
        .await
        .expect("err");
    assert_eq!(e.attr("type"), Some("error"));
    a.send("<iq type='set' id='bad2'><query xmlns='jabber:iq:roster'><item jid='x@y'><group>g</group><group>g</group></item></query></iq>").await;
    let e = a
        .expect(|e| e.attr("id") == Some("bad2"))
        .await
        .expect("err");
    assert!(
        e.child("error", ns::CLIENT)
            .and_then(|x| x.child("bad-request", ns::STANZAS_ERR))
            .is_some()
    );
    // Remove (§2.5).
    a.send("<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='carol@example.org' subscription='remove'/></query></iq>").await;
    let push = a
        .expect(|e| e.name == "iq" && e.attr("type") == Some("set"))
        .await
        .expect("remove push");
    let item = push
        .child("query", ns::ROSTER)
        .and_then(|q| q.child("item", ns::ROSTER))
        .expect("item");
    assert_eq!(item.attr("subscription"), Some("remove"));
    a.expect(|e| e.attr("id") == Some("rm") && e.attr("type") == Some("result"))
        .await
        .expect("removed");
    a.send("<iq type='set' id='rm2'><query xmlns='jabber:iq:roster'><item jid='carol@example.org' subscription='remove'/></query></iq>").await;
    let e = a
        .expect(|e| e.attr("id") == Some("rm2"))
        .await
        .expect("err");
    assert!(
        e.child("error", ns::CLIENT)
            .and_then(|x| x.child("item-not-found", ns::STANZAS_ERR))
            .is_some()
    );
    t.stop().await;
}

#[tokio::test]
async fn dropped_connection_sends_unavailable_to_contacts() {
    let mut t = two_users().await;
    let (mut a, b) = befriend(&t).await;
    // Drop bob's TCP connection without a closing handshake.
    drop(b);
    let u = a
        .expect(|e| is_presence_from(e, "bob@localhost/b", Some("unavailable")))
        .await
        .expect("unavailable");
    assert_eq!(u.attr("type"), Some("unavailable"));
    t.stop().await;
}

#[tokio::test]
async fn probes_on_login_return_contacts_presence() {
    let mut t = two_users().await;
    let (a, mut b) = befriend(&t).await;
    drop(a);
    b.expect(|e| is_presence_from(e, "alice@localhost/a", Some("unavailable")))
        .await
        .expect("gone");
    // alice logs in again: her probe brings bob's presence back to her.
    let mut a = Client::online(t.addr, "alice@localhost", PW, "again")
        .await
        .expect("alice again");
    a.expect(|e| is_presence_from(e, "bob@localhost/b", None))
        .await
        .expect("bob's presence from the probe");
    b.expect(|e| is_presence_from(e, "alice@localhost/again", None))
        .await
        .expect("alice's broadcast");
    t.stop().await;
}

#[tokio::test]
async fn presence_is_not_sent_without_subscription() {
    let mut t = two_users().await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    b.send("<presence><status>busy</status></presence>").await;
    // alice must not see it; a ping round-trip proves the queue is drained.
    a.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let e = a
        .expect(|e| {
            e.attr("id") == Some("p")
                || e.name == "presence" && e.attr("from").is_some_and(|f| f.starts_with("bob"))
        })
        .await
        .expect("next");
    assert_eq!(e.name, "iq", "presence leaked without a subscription");
    // Directed presence reaches a non-contact, and unavailable follows on disconnect (§4.6).
    b.send("<presence to='alice@localhost/a'/>").await;
    a.expect(|e| is_presence_from(e, "bob@localhost/b", None))
        .await
        .expect("directed presence");
    drop(b);
    a.expect(|e| is_presence_from(e, "bob@localhost/b", Some("unavailable")))
        .await
        .expect("directed unavailable");
    t.stop().await;
}

#[tokio::test]
async fn messages_to_the_bare_jid_go_to_the_highest_priority() {
    let mut t = two_users().await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut hi = Client::login(t.addr, "bob@localhost", PW, "hi")
        .await
        .expect("bob hi");
    let mut lo = Client::login(t.addr, "bob@localhost", PW, "lo")
        .await
        .expect("bob lo");
    hi.send("<presence><priority>5</priority></presence>").await;
    lo.send("<presence><priority>1</priority></presence>").await;
    // Wait until both presences are processed (each sees its own).
    hi.expect(|e| is_presence_from(e, "bob@localhost/hi", None))
        .await
        .expect("own presence");
    lo.expect(|e| is_presence_from(e, "bob@localhost/lo", None))
        .await
        .expect("own presence");
    a.send("<message to='bob@localhost' type='chat' id='m1'><body>to the best</body></message>")
        .await;
    let m = hi
        .expect(|e| e.name == "message")
        .await
        .expect("hi gets it");
    assert_eq!(m.attr("from"), Some("alice@localhost/a"));
    // A full JID reaches exactly that resource.
    a.send("<message to='bob@localhost/lo' type='chat' id='m2'><body>to lo</body></message>")
        .await;
    let m = lo
        .expect(|e| e.name == "message")
        .await
        .expect("lo gets the full-JID message");
    assert_eq!(m.attr("id"), Some("m2"), "lo must not have received m1");
    t.stop().await;
}

#[tokio::test]
async fn negative_priority_gets_no_bare_messages_and_they_go_offline() {
    let mut t = two_users().await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut b = Client::login(t.addr, "bob@localhost", PW, "neg")
        .await
        .expect("bob");
    b.send("<presence><priority>-1</priority></presence>").await;
    b.expect(|e| is_presence_from(e, "bob@localhost/neg", None))
        .await
        .expect("own presence");
    a.send("<message to='bob@localhost' type='chat'><body>stored</body></message>")
        .await;
    a.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    a.expect(|e| e.attr("id") == Some("p")).await.expect("pong");
    drop(b);
    let mut b = Client::online(t.addr, "bob@localhost", PW, "pos")
        .await
        .expect("bob again");
    let m = b
        .expect(|e| e.name == "message")
        .await
        .expect("offline delivery");
    assert_eq!(
        m.child("body", ns::CLIENT).map(Element::text).as_deref(),
        Some("stored")
    );
    t.stop().await;
}

#[tokio::test]
async fn offline_messages_are_stored_stamped_and_limited() {
    let mut t = TestServer::start_with(|c| c.offline.max_per_user = 3).await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    for i in 0..3 {
        a.send(&format!(
            "<message to='bob@localhost' id='o{i}'><body>offline {i}</body></message>"
        ))
        .await;
    }
    a.send("<message to='bob@localhost' id='o3'><body>one too many</body></message>")
        .await;
    let err = a
        .expect(|e| e.attr("id") == Some("o3"))
        .await
        .expect("error past the limit");
    assert_eq!(err.attr("type"), Some("error"));
    let cond = err.child("error", ns::CLIENT).expect("error child");
    assert!(
        cond.child("service-unavailable", ns::STANZAS_ERR).is_some(),
        "{}",
        err.to_xml(ns::CLIENT)
    );
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    for i in 0..3 {
        let m = b
            .expect(|e| e.name == "message")
            .await
            .expect("stored message");
        assert_eq!(
            m.child("body", ns::CLIENT).map(Element::text),
            Some(format!("offline {i}"))
        );
        let delay = m.child("delay", ns::DELAY).expect("XEP-0203 delay");
        assert!(delay.attr("stamp").is_some_and(|s| s.ends_with('Z')));
    }
    drop(b);
    // Delivered messages are gone from storage.
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b2")
        .await
        .expect("bob again");
    b.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let e = b
        .expect(|e| e.name == "message" || e.attr("id") == Some("p"))
        .await
        .expect("next");
    assert_eq!(e.name, "iq", "offline messages delivered twice");
    t.stop().await;
}

#[tokio::test]
async fn unknown_users_and_payloads_get_service_unavailable() {
    let mut t = two_users().await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let cases = [
        "<message to='nobody@localhost' id='x1'><body>hi</body></message>",
        "<iq to='nobody@localhost' type='get' id='x2'><query xmlns='jabber:iq:version'/></iq>",
        "<iq to='localhost' type='get' id='x3'><query xmlns='urn:example:nothing'/></iq>",
        "<iq type='get' id='x4'><query xmlns='urn:example:nothing'/></iq>",
        "<iq to='bob@localhost/nowhere' type='get' id='x5'><ping xmlns='urn:xmpp:ping'/></iq>",
    ];
    for (i, c) in cases.iter().enumerate() {
        a.send(c).await;
        let id = format!("x{}", i + 1);
        let e = a
            .expect(|e| e.attr("id") == Some(id.as_str()))
            .await
            .expect("error");
        assert_eq!(e.attr("type"), Some("error"), "{c}");
        assert!(
            e.child("error", ns::CLIENT)
                .and_then(|x| x.child("service-unavailable", ns::STANZAS_ERR))
                .is_some(),
            "{c}: {}",
            e.to_xml(ns::CLIENT)
        );
    }
    // An unparsable address is jid-malformed.
    a.send("<message to='a@b@c' id='x6'><body>hi</body></message>")
        .await;
    let e = a
        .expect(|e| e.attr("id") == Some("x6"))
        .await
        .expect("error");
    assert!(
        e.child("error", ns::CLIENT)
            .and_then(|x| x.child("jid-malformed", ns::STANZAS_ERR))
            .is_some()
    );
    // A remote domain cannot be reached without server-to-server.
    a.send("<message to='someone@example.org' id='x7'><body>hi</body></message>")
        .await;
    let e = a
        .expect(|e| e.attr("id") == Some("x7"))
        .await
        .expect("error");
    assert!(
        e.child("error", ns::CLIENT)
            .and_then(|x| x.child("remote-server-not-found", ns::STANZAS_ERR))
            .is_some()
    );
    t.stop().await;
}

#[tokio::test]
async fn disco_version_and_ping() {
    let mut t = two_users().await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    // The stream features announce the server's capabilities (XEP-0115
    // §6.3), a hash of what disco#info answers.
    let c = a
        .features
        .as_ref()
        .and_then(|f| f.child("c", ns::CAPS))
        .cloned()
        .expect("caps in the stream features");
    let caps = proto::caps::Caps {
        hash: c.attr("hash").expect("hash").into(),
        node: c.attr("node").expect("node").into(),
        ver: c.attr("ver").expect("ver").into(),
    };
    a.send("<iq to='localhost' type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let r = a
        .expect(|e| e.attr("id") == Some("d"))
        .await
        .expect("disco");
    let q = r.child("query", ns::DISCO_INFO).expect("query");
    assert!(proto::caps::verify(&caps, q), "{}", q.to_xml(ns::CLIENT));
    // And under the node#ver that the hash names (§6.2).
    a.send(&format!(
        "<iq to='localhost' type='get' id='dn'><query xmlns='{}' node='{}'/></iq>",
        ns::DISCO_INFO,
        caps.query_node()
    ))
    .await;
    let rn = a
        .expect(|e| e.attr("id") == Some("dn"))
        .await
        .expect("disco node");
    let qn = rn.child("query", ns::DISCO_INFO).expect("query");
    assert_eq!(qn.attr("node"), Some(caps.query_node().as_str()));
    assert!(proto::caps::verify(&caps, qn));
    let id = q.child("identity", ns::DISCO_INFO).expect("identity");
    assert_eq!(
        (id.attr("category"), id.attr("type")),
        (Some("server"), Some("im"))
    );
    let features: Vec<_> = q.elements().filter_map(|f| f.attr("var")).collect();
    for f in [
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        ns::VERSION,
        ns::ROSTER_VER,
        ns::VCARD,
    ] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    a.send("<iq to='localhost' type='get' id='i'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    let r = a
        .expect(|e| e.attr("id") == Some("i"))
        .await
        .expect("items");
    assert_eq!(r.attr("type"), Some("result"));
    a.send("<iq to='bob@localhost' type='get' id='acct'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let r = a
        .expect(|e| e.attr("id") == Some("acct"))
        .await
        .expect("account disco");
    let id = r
        .child("query", ns::DISCO_INFO)
        .and_then(|q| q.child("identity", ns::DISCO_INFO))
        .expect("identity");
    assert_eq!(id.attr("category"), Some("account"));
    a.send("<iq to='localhost' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let r = a
        .expect(|e| e.attr("id") == Some("v"))
        .await
        .expect("version");
    let q = r.child("query", ns::VERSION).expect("query");
    assert_eq!(
        q.child("name", ns::VERSION).map(Element::text).as_deref(),
        Some("xmppd")
    );
    a.send("<iq to='localhost' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        a.expect(|e| e.attr("id") == Some("p"))
            .await
            .expect("pong")
            .attr("type"),
        Some("result")
    );
    t.stop().await;
}

#[tokio::test]
async fn vcard_set_and_get() {
    let mut t = two_users().await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    a.send("<iq type='set' id='vs'><vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>al</NICKNAME></vCard></iq>").await;
    assert_eq!(
        a.expect(|e| e.attr("id") == Some("vs"))
            .await
            .expect("set")
            .attr("type"),
        Some("result")
    );
    b.send("<iq to='alice@localhost' type='get' id='vg'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    let r = b.expect(|e| e.attr("id") == Some("vg")).await.expect("get");
    let v = r.child("vCard", ns::VCARD).expect("vcard");
    assert_eq!(
        v.child("FN", ns::VCARD).map(Element::text).as_deref(),
        Some("Alice Liddell")
    );
    b.send("<iq to='alice@localhost' type='set' id='vx'><vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard></iq>").await;
    let r = b
        .expect(|e| e.attr("id") == Some("vx"))
        .await
        .expect("refused");
    assert_eq!(r.attr("type"), Some("error"));
    t.stop().await;
}

#[tokio::test]
async fn in_band_registration_is_off_by_default() {
    let mut t = TestServer::start().await;
    let mut c = Client::connect(t.addr).await;
    c.open("localhost").await.expect("features");
    c.starttls().await.expect("tls");
    let f = c.open("localhost").await.expect("features");
    assert!(f.child("register", ns::REGISTER_FEATURE).is_none());
    c.send("<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>eve</username><password>secret123</password></query></iq>").await;
    let r = c
        .expect(|e| e.attr("id") == Some("reg"))
        .await
        .expect("answer");
    assert_eq!(r.attr("type"), Some("error"));
    t.stop().await;
}

#[tokio::test]
async fn in_band_registration_creates_an_account_when_enabled() {
    let mut t = TestServer::start_with(|c| c.registration.enabled = true).await;
    let mut c = Client::connect(t.addr).await;
    c.open("localhost").await.expect("features");
    c.starttls().await.expect("tls");
    let f = c.open("localhost").await.expect("features");
    assert!(f.child("register", ns::REGISTER_FEATURE).is_some());
    c.send("<iq type='get' id='form'><query xmlns='jabber:iq:register'/></iq>")
        .await;
    let r = c
        .expect(|e| e.attr("id") == Some("form"))
        .await
        .expect("form");
    assert!(
        r.child("query", ns::REGISTER)
            .and_then(|q| q.child("username", ns::REGISTER))
            .is_some()
    );
    c.send("<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>Eve</username><password>secret123</password></query></iq>").await;
    assert_eq!(
        c.expect(|e| e.attr("id") == Some("reg"))
            .await
            .expect("ok")
            .attr("type"),
        Some("result")
    );
    c.send("<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>eve</username><password>other123</password></query></iq>").await;
    let r = c
        .expect(|e| e.attr("id") == Some("reg2"))
        .await
        .expect("taken");
    assert!(
        r.child("error", ns::CLIENT)
            .and_then(|x| x.child("conflict", ns::STANZAS_ERR))
            .is_some()
    );
    // The username was case-folded (PRECIS) and the account works.
    let mut e = Client::login(t.addr, "eve@localhost", "secret123", "r")
        .await
        .expect("login as eve");
    e.send("<iq type='set' id='pw'><query xmlns='jabber:iq:register'><username>eve</username><password>newsecret</password></query></iq>").await;
    assert_eq!(
        e.expect(|x| x.attr("id") == Some("pw"))
            .await
            .expect("changed")
            .attr("type"),
        Some("result")
    );
    Client::login(t.addr, "eve@localhost", "newsecret", "r2")
        .await
        .expect("login with the new password");
    t.stop().await;
}

#[tokio::test]
async fn ten_sessions_chat_concurrently_without_loss() {
    let mut t = TestServer::start().await;
    for i in 0..10 {
        t.add_user(&format!("u{i}@localhost"), PW);
    }
    let mut clients = Vec::new();
    for i in 0..10 {
        clients.push(
            Client::online(t.addr, &format!("u{i}@localhost"), PW, "r")
                .await
                .expect("online"),
        );
    }
    for (i, c) in clients.iter_mut().enumerate() {
        for k in 0..20 {
            let to = (i + 1) % 10;
            c.send(&format!("<message to='u{to}@localhost/r' type='chat' id='{i}-{k}'><body>{k}</body></message>")).await;
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let from = (i + 9) % 10;
        for k in 0..20 {
            let m = c.expect(|e| e.name == "message").await.expect("message");
            assert_eq!(
                m.attr("id"),
                Some(format!("{from}-{k}").as_str()),
                "order and completeness"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    t.stop().await;
}

#[tokio::test]
async fn pre_approved_subscription_is_accepted_without_asking() {
    let mut t = two_users().await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    // RFC 6121 §3.4: alice approves bob before he asks.
    a.send("<presence to='bob@localhost' type='subscribed'/>")
        .await;
    let push = a
        .expect(|e| e.name == "iq" && e.attr("type") == Some("set"))
        .await
        .expect("roster push");
    let item = push
        .child("query", ns::ROSTER)
        .and_then(|q| q.child("item", ns::ROSTER))
        .expect("item");
    assert_eq!(item.attr("approved"), Some("true"));
    assert_eq!(item.attr("subscription"), Some("none"));
    b.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    // bob is answered by alice's server at once, and gets her presence.
    let ok = b
        .expect(|e| e.name == "presence" && e.attr("type") == Some("subscribed"))
        .await
        .expect("auto-approved");
    assert_eq!(ok.attr("from"), Some("alice@localhost"));
    b.expect(|e| is_presence_from(e, "alice@localhost/a", None))
        .await
        .expect("alice's presence");
    let push = a
        .expect(|e| e.name == "iq" && e.attr("type") == Some("set"))
        .await
        .expect("push after approval");
    let item = push
        .child("query", ns::ROSTER)
        .and_then(|q| q.child("item", ns::ROSTER))
        .expect("item");
    assert_eq!(item.attr("subscription"), Some("from"));
    assert_eq!(item.attr("approved"), None);
    // alice never saw a request to answer.
    a.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let e = a
        .expect(|e| e.attr("id") == Some("p") || e.attr("type") == Some("subscribe"))
        .await
        .expect("next");
    assert_eq!(
        e.name, "iq",
        "a pre-approved request must not reach the user"
    );
    t.stop().await;
}

#[tokio::test]
async fn unsubscribing_stops_presence_and_updates_both_rosters() {
    let mut t = two_users().await;
    let (mut a, mut b) = befriend(&t).await;
    // alice cancels bob's subscription to her (RFC 6121 §3.2).
    a.send("<presence to='bob@localhost' type='unsubscribed'/>")
        .await;
    // Both arrive, in either order.
    let (mut unavailable, mut cancelled) = (false, false);
    while !(unavailable && cancelled) {
        let e = b.expect(|e| e.name == "presence").await.expect("presence");
        unavailable |= is_presence_from(&e, "alice@localhost/a", Some("unavailable"));
        cancelled |=
            e.attr("type") == Some("unsubscribed") && e.attr("from") == Some("alice@localhost");
    }
    b.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let r = b
        .expect(|e| e.attr("id") == Some("r"))
        .await
        .expect("roster");
    let item = r
        .child("query", ns::ROSTER)
        .and_then(|q| q.child("item", ns::ROSTER))
        .expect("item");
    assert_eq!(
        item.attr("subscription"),
        Some("from"),
        "bob keeps only 'from'"
    );
    // alice's new presence no longer reaches bob.
    a.send("<presence><status>away</status></presence>").await;
    b.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.send("<iq type='get' id='p2'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let e = b
        .expect(|e| e.attr("id") == Some("p2") || is_presence_from(e, "alice@localhost/a", None))
        .await
        .expect("next");
    assert_eq!(
        e.name, "iq",
        "presence leaked after the subscription was cancelled"
    );
    t.stop().await;
}

/// Joining a room of a MUC service on another domain (here
/// conference.example.org, which this server does not serve) is directed
/// presence that cannot be delivered without server-to-server: the client
/// gets a presence error at once instead of waiting for a join that never
/// comes; its own unavailable presence later is not answered.
#[tokio::test]
async fn directed_presence_to_an_unserved_domain_is_answered_with_an_error() {
    let t = two_users().await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    a.send("<presence to='room@conference.example.org/alice' id='j1'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await;
    let e = a
        .expect(|e| e.name == "presence" && e.attr("type") == Some("error"))
        .await
        .expect("a presence error");
    assert_eq!(e.attr("from"), Some("room@conference.example.org/alice"));
    assert_eq!(e.attr("id"), Some("j1"));
    assert!(
        e.child("error", ns::CLIENT)
            .and_then(|x| x.child("remote-server-not-found", ns::STANZAS_ERR))
            .is_some(),
        "{}",
        e.to_xml(ns::CLIENT)
    );
    // Unavailable presence to it is dropped without an answer: the next
    // thing alice reads is the answer to her ping.
    a.send("<presence to='room@conference.example.org/alice' type='unavailable'/>")
        .await;
    a.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let next = a.next_element().await.expect("the ping answer");
    assert_eq!(next.attr("id"), Some("p1"), "{}", next.to_xml(ns::CLIENT));
}
