//! RFC 6120/6121 rules that real clients trip on, each over a real socket:
//! one payload per IQ get/set (RFC 6120 §8.2.3), the 'from' of replies to
//! stanzas without 'to' (§8.1.2.1, §10.3.3), the message delivery tables
//! of RFC 6121 §8.5, subscription requests kept whole while the contact is
//! offline (RFC 6121 §3.1.3), and the features an account serves
//! (XEP-0030).

mod common;

use common::{Client, TestServer};
use proto::{Element, ns};

const PW: &str = "correct horse";

async fn users(names: &[&str]) -> TestServer {
    let t = TestServer::start().await;
    for n in names {
        t.add_user(&format!("{n}@localhost"), PW);
    }
    t
}

fn condition(e: &Element) -> Option<String> {
    e.child("error", ns::CLIENT)?
        .elements()
        .find(|c| c.ns == ns::STANZAS_ERR && c.name != "text")
        .map(|c| c.name.clone())
}

#[tokio::test]
async fn an_iq_with_two_payloads_is_a_bad_request_whichever_comes_first() {
    // The edge answered the ping when it came first and ignored the rest.
    let mut t = users(&["alice"]).await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let pairs = [
        "<ping xmlns='urn:xmpp:ping'/><query xmlns='jabber:iq:version'/>",
        "<query xmlns='jabber:iq:version'/><ping xmlns='urn:xmpp:ping'/>",
        "<query xmlns='jabber:iq:roster'/><query xmlns='vcard-temp'/>",
        "<vCard xmlns='vcard-temp'/><x xmlns='urn:example'/>",
    ];
    for (i, pair) in pairs.iter().enumerate() {
        for to in [" to='localhost'", "", " to='alice@localhost'"] {
            let id = format!("two{i}{}", to.len());
            a.send(&format!("<iq type='get' id='{id}'{to}>{pair}</iq>"))
                .await;
            let r = a
                .expect(|e| e.attr("id") == Some(id.as_str()))
                .await
                .expect("answer");
            assert_eq!(r.attr("type"), Some("error"), "{pair} to{to}");
            assert_eq!(
                condition(&r).as_deref(),
                Some("bad-request"),
                "{pair} to{to}"
            );
        }
    }
    // An empty get is also a bad request; one payload still works.
    a.send("<iq type='get' id='none' to='localhost'/>").await;
    let r = a
        .expect(|e| e.attr("id") == Some("none"))
        .await
        .expect("answer");
    assert_eq!(condition(&r).as_deref(), Some("bad-request"));
    a.send("<iq type='get' id='one' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = a
        .expect(|e| e.attr("id") == Some("one"))
        .await
        .expect("answer");
    assert_eq!(r.attr("type"), Some("result"));
    t.stop().await;
}

#[tokio::test]
async fn replies_to_an_iq_without_to_never_come_from_the_domain() {
    // Ping and service-unavailable answered with from='localhost' while
    // roster, vCard and disco did not: one rule for every handler.
    let mut t = users(&["alice"]).await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let cases = [
        ("get", "<ping xmlns='urn:xmpp:ping'/>", "result"),
        ("get", "<query xmlns='jabber:iq:roster'/>", "result"),
        ("get", "<vCard xmlns='vcard-temp'/>", "result"),
        (
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            "result",
        ),
        ("get", "<unknown xmlns='urn:example:nothing'/>", "error"),
        ("set", "<unknown xmlns='urn:example:nothing'/>", "error"),
        ("set", "<ping xmlns='urn:xmpp:ping'/>", "error"),
        ("get", "<a xmlns='x'/><b xmlns='y'/>", "error"),
        (
            "set",
            "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
            "result",
        ),
    ];
    for (i, (ty, payload, want)) in cases.iter().enumerate() {
        let id = format!("nf{i}");
        a.send(&format!("<iq type='{ty}' id='{id}'>{payload}</iq>"))
            .await;
        let r = a
            .expect(|e| e.attr("id") == Some(id.as_str()))
            .await
            .expect("answer");
        assert_eq!(r.attr("type"), Some(*want), "{payload}");
        let from = r.attr("from");
        assert!(
            from.is_none() || from == Some("alice@localhost"),
            "{ty} {payload}: from={from:?}"
        );
    }
    t.stop().await;
}

/// A message marked with `body`, of `mtype` (or no type), to `to`.
fn msg(to: &str, mtype: Option<&str>, body: &str) -> String {
    let ty = mtype.map(|t| format!(" type='{t}'")).unwrap_or_default();
    format!("<message to='{to}'{ty} id='{body}'><body>{body}</body></message>")
}

/// The bodies of the messages `c` received up to the barrier `mark`.
async fn received_until(c: &mut Client, mark: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let e = c.next_element().await.expect("stanza before the barrier");
        if e.name != "message" {
            continue;
        }
        let body = e
            .child("body", ns::CLIENT)
            .map(Element::text)
            .unwrap_or_default();
        if body == mark {
            return got;
        }
        got.push(body);
    }
}

/// A row of the delivery table: to, type, whether the high-priority and
/// the low-priority resource get it, and the error the sender gets.
type Case = (
    &'static str,
    Option<&'static str>,
    bool,
    bool,
    Option<&'static str>,
);

#[tokio::test]
async fn message_types_follow_the_delivery_tables_of_rfc_6121() {
    // A 'normal' message to a full JID whose resource is offline went to
    // another resource; §8.5.3.2.1 handles only 'chat' by the bare rules.
    let mut t = users(&["alice", "bob"]).await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut hi = Client::online(t.addr, "bob@localhost", PW, "hi")
        .await
        .expect("bob hi");
    let mut lo = Client::online(t.addr, "bob@localhost", PW, "lo")
        .await
        .expect("bob lo");
    hi.send("<presence><priority>5</priority></presence>").await;
    // hi's priority is in before the table runs (lo keeps priority 0).
    lo.expect(|e| {
        e.name == "presence"
            && e.attr("from") == Some("bob@localhost/hi")
            && e.child("priority", ns::CLIENT)
                .map(Element::text)
                .as_deref()
                == Some("5")
    })
    .await
    .expect("hi's priority");

    // (to, type, who gets it: hi, lo, alice's error)
    let types = [
        None,
        Some("normal"),
        Some("chat"),
        Some("groupchat"),
        Some("headline"),
        Some("error"),
    ];
    let table: Vec<Case> = vec![
        // §8.5.3.1: a connected resource gets every type.
        ("bob@localhost/lo", None, false, true, None),
        ("bob@localhost/lo", Some("normal"), false, true, None),
        ("bob@localhost/lo", Some("chat"), false, true, None),
        ("bob@localhost/lo", Some("groupchat"), false, true, None),
        ("bob@localhost/lo", Some("headline"), false, true, None),
        ("bob@localhost/lo", Some("error"), false, true, None),
        // §8.5.3.2.1: no such resource.
        (
            "bob@localhost/gone",
            None,
            false,
            false,
            Some("service-unavailable"),
        ),
        (
            "bob@localhost/gone",
            Some("normal"),
            false,
            false,
            Some("service-unavailable"),
        ),
        ("bob@localhost/gone", Some("chat"), true, false, None),
        (
            "bob@localhost/gone",
            Some("groupchat"),
            false,
            false,
            Some("service-unavailable"),
        ),
        ("bob@localhost/gone", Some("headline"), false, false, None),
        ("bob@localhost/gone", Some("error"), false, false, None),
        // §8.5.2.1: the bare JID with available resources.
        ("bob@localhost", None, true, false, None),
        ("bob@localhost", Some("normal"), true, false, None),
        ("bob@localhost", Some("chat"), true, false, None),
        (
            "bob@localhost",
            Some("groupchat"),
            false,
            false,
            Some("service-unavailable"),
        ),
        ("bob@localhost", Some("headline"), true, true, None),
        ("bob@localhost", Some("error"), false, false, None),
        // §8.5.1: no such user.
        (
            "nobody@localhost",
            None,
            false,
            false,
            Some("service-unavailable"),
        ),
        (
            "nobody@localhost",
            Some("normal"),
            false,
            false,
            Some("service-unavailable"),
        ),
        (
            "nobody@localhost",
            Some("chat"),
            false,
            false,
            Some("service-unavailable"),
        ),
        (
            "nobody@localhost",
            Some("groupchat"),
            false,
            false,
            Some("service-unavailable"),
        ),
        (
            "nobody@localhost/r",
            Some("chat"),
            false,
            false,
            Some("service-unavailable"),
        ),
        ("nobody@localhost", Some("headline"), false, false, None),
        ("nobody@localhost", Some("error"), false, false, None),
    ];
    for ty in types {
        assert!(
            table.iter().filter(|r| r.1 == ty).count() >= 4,
            "{ty:?} covered"
        );
    }
    for (i, (to, ty, to_hi, to_lo, err)) in table.iter().enumerate() {
        let body = format!("m{i}");
        a.send(&msg(to, *ty, &body)).await;
        // Barriers: each recipient and alice learn that the case is over
        // from a later stanza on the same paths.
        let mark = format!("end{i}");
        a.send(&msg("bob@localhost/hi", Some("chat"), &mark)).await;
        a.send(&msg("bob@localhost/lo", Some("chat"), &mark)).await;
        a.send(&format!(
            "<iq type='get' id='{mark}' to='bob@localhost'><vCard xmlns='vcard-temp'/></iq>"
        ))
        .await;
        let case = format!("{to} type={ty:?}");
        let got_hi = received_until(&mut hi, &mark).await;
        let got_lo = received_until(&mut lo, &mark).await;
        assert_eq!(
            got_hi,
            if *to_hi { vec![body.clone()] } else { vec![] },
            "hi: {case}"
        );
        assert_eq!(
            got_lo,
            if *to_lo { vec![body.clone()] } else { vec![] },
            "lo: {case}"
        );
        let mut errors = Vec::new();
        loop {
            let e = a.next_element().await.expect("alice");
            if e.attr("id") == Some(mark.as_str()) {
                break;
            }
            if e.name == "message" && e.attr("type") == Some("error") {
                errors.push(condition(&e).unwrap_or_default());
            }
        }
        let want: Vec<String> = err.iter().map(|c| c.to_string()).collect();
        assert_eq!(errors, want, "alice: {case}");
    }

    // §8.5.2.2: no available resource: normal and chat are stored,
    // headline, groupchat and error are not. Both resources go
    // unavailable (still connected), each waits until its shard has taken
    // that in (an IQ to its own account answers after it).
    for (c, n) in [(&mut hi, "hi"), (&mut lo, "lo")] {
        c.send("<presence type='unavailable'/>").await;
        c.send(&format!(
            "<iq type='get' id='u{n}'><vCard xmlns='vcard-temp'/></iq>"
        ))
        .await;
        c.expect(|e| e.attr("id") == Some(format!("u{n}").as_str()))
            .await
            .expect("unavailable taken in");
    }
    for (i, ty) in types.iter().enumerate() {
        a.send(&msg("bob@localhost", *ty, &format!("off{i}"))).await;
        a.send(&msg("bob@localhost/gone", *ty, &format!("offfull{i}")))
            .await;
    }
    a.send(&msg("bob@localhost", Some("chat"), "offend")).await;
    // Bob's shard has taken them all in before he comes back (an IQ to
    // his account takes the same path after them); else a headline could
    // find the new resource online.
    a.send("<iq type='get' id='offdone' to='bob@localhost'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    a.expect(|e| e.attr("id") == Some("offdone"))
        .await
        .expect("messages taken in");
    let mut b = Client::online(t.addr, "bob@localhost", PW, "back")
        .await
        .expect("bob back");
    let got = received_until(&mut b, "offend").await;
    // Stored: no type, normal, chat to the bare JID; chat to a gone
    // resource (handled as bare).
    assert_eq!(got, ["off0", "off1", "off2", "offfull2"]);
    t.stop().await;
}

#[tokio::test]
async fn a_subscription_request_kept_for_an_offline_contact_keeps_its_children() {
    // The request reached an online contact whole but lost its children
    // when kept for an offline one (XEP-0379 pre-auth tokens ride in it).
    let mut t = users(&["alice", "bob"]).await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    a.send(
        "<presence to='bob@localhost' type='subscribe' id='s1'>\
         <status>it is me</status>\
         <preauth xmlns='urn:xmpp:pars:0' token='8e5ac28f'/>\
         <nick xmlns='http://jabber.org/protocol/nick'>Alice</nick></presence>",
    )
    .await;
    // Once alice sees the request pending in her roster push it is kept.
    a.expect(|e| {
        e.name == "iq"
            && e.child("query", ns::ROSTER)
                .and_then(|q| q.child("item", ns::ROSTER))
                .is_some_and(|i| i.attr("ask") == Some("subscribe"))
    })
    .await
    .expect("roster push with ask");
    for round in 0..2 {
        // Delivered again at each login until answered (§3.1.3).
        let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
            .await
            .expect("bob");
        let req = b
            .expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
            .await
            .expect("request");
        assert_eq!(req.attr("from"), Some("alice@localhost"), "round {round}");
        let preauth = req
            .child("preauth", "urn:xmpp:pars:0")
            .expect("preauth kept");
        assert_eq!(preauth.attr("token"), Some("8e5ac28f"));
        assert_eq!(
            req.child("status", ns::CLIENT)
                .map(Element::text)
                .as_deref(),
            Some("it is me")
        );
        assert!(
            req.child("nick", "http://jabber.org/protocol/nick")
                .is_some()
        );
        assert_eq!(req.attr("id"), Some("s1"));
        b.send("</stream:stream>").await;
    }
    // Approved: the request is gone, and no later login sees it.
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    b.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .await
        .expect("request");
    b.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    a.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribed"))
        .await
        .expect("approved");
    b.send("</stream:stream>").await;
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b2")
        .await
        .expect("bob");
    b.send("<iq type='get' id='barrier' to='bob@localhost'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    loop {
        let e = b.next_element().await.expect("stanza");
        assert!(
            !(e.name == "presence" && e.attr("type") == Some("subscribe")),
            "an answered request is not delivered again"
        );
        if e.attr("id") == Some("barrier") {
            break;
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn an_account_lists_every_feature_it_serves() {
    // disco#info on the account listed disco#info but not disco#items,
    // though disco#items is answered there (XEP-0030 §3).
    let mut t = users(&["alice", "bob"]).await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let features = |r: &Element| -> Vec<String> {
        r.child("query", ns::DISCO_INFO)
            .map(|q| {
                q.elements()
                    .filter(|f| f.name == "feature")
                    .filter_map(|f| f.attr("var").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (to, own) in [("alice@localhost", true), ("bob@localhost", false)] {
        a.send(&format!(
            "<iq type='get' id='i-{to}' to='{to}'><query xmlns='{}'/></iq>",
            ns::DISCO_INFO
        ))
        .await;
        let r = a
            .expect(|e| e.attr("id") == Some(&format!("i-{to}")))
            .await
            .expect("info");
        let f = features(&r);
        // Every feature listed is served: ask each namespace that is an IQ
        // payload and expect no service-unavailable.
        for want in [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::VCARD] {
            assert!(f.iter().any(|x| x == want), "{to} lacks {want}: {f:?}");
        }
        assert_eq!(f.iter().any(|x| x == ns::PING), own, "{to}: {f:?}");
        for (i, feature) in f.iter().enumerate() {
            let payload = match feature.as_str() {
                x if x == ns::VCARD => "<vCard xmlns='vcard-temp'/>".to_string(),
                x if x == ns::PING => "<ping xmlns='urn:xmpp:ping'/>".to_string(),
                // XEP-0402 §5.3: XEP-0048 bookmarks in private storage.
                "urn:xmpp:bookmarks:1#compat" => {
                    "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>"
                        .to_string()
                }
                // PubSub's features are of the PEP service there (XEP-0163).
                x if x.starts_with("http://jabber.org/protocol/pubsub") => {
                    format!("<pubsub xmlns='{}'><affiliations/></pubsub>", ns::PUBSUB)
                }
                x => format!("<query xmlns='{x}'/>"),
            };
            let id = format!("f{i}-{to}");
            a.send(&format!(
                "<iq type='get' id='{id}' to='{to}'>{payload}</iq>"
            ))
            .await;
            let r = a
                .expect(|e| e.attr("id") == Some(id.as_str()))
                .await
                .expect("answer");
            assert_ne!(
                condition(&r).as_deref(),
                Some("service-unavailable"),
                "{to} lists {feature} but does not serve it"
            );
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn a_probe_while_the_contact_is_offline_gets_its_last_unavailable_presence() {
    // RFC 6121 §4.3.2: the full XML of the last unavailable presence, not
    // a bare one made up by the server.
    let mut t = users(&["alice", "bob"]).await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    a.send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    b.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .await
        .expect("request");
    b.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    a.expect(|e| e.name == "presence" && e.attr("from") == Some("bob@localhost/b"))
        .await
        .expect("bob's presence");
    b.send("<presence type='unavailable'><status>gone fishing</status></presence>")
        .await;
    a.expect(|e| e.name == "presence" && e.attr("type") == Some("unavailable"))
        .await
        .expect("bob leaves");
    b.send("</stream:stream>").await;
    a.send("</stream:stream>").await;
    // alice comes back: her initial presence probes bob.
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a2")
        .await
        .expect("alice again");
    let p = a
        .expect(|e| {
            e.name == "presence"
                && e.attr("from")
                    .is_some_and(|f| f.starts_with("bob@localhost"))
        })
        .await
        .expect("probe answer");
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert_eq!(p.attr("from"), Some("bob@localhost/b"));
    assert_eq!(
        p.child("status", ns::CLIENT).map(Element::text).as_deref(),
        Some("gone fishing")
    );
    // A plain unavailable later replaces it with nothing to say.
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    a.expect(|e| {
        e.name == "presence"
            && e.attr("from") == Some("bob@localhost/b")
            && e.attr("type").is_none()
    })
    .await
    .expect("bob back");
    b.send("<presence type='unavailable'/>").await;
    a.expect(|e| e.name == "presence" && e.attr("type") == Some("unavailable"))
        .await
        .expect("bob leaves");
    a.send("</stream:stream>").await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a3")
        .await
        .expect("alice again");
    let p = a
        .expect(|e| {
            e.name == "presence"
                && e.attr("from")
                    .is_some_and(|f| f.starts_with("bob@localhost"))
        })
        .await
        .expect("probe answer");
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert!(p.child("status", ns::CLIENT).is_none());
    t.stop().await;
}

#[tokio::test]
async fn a_deleted_account_left_its_subscriptions_to_a_new_account_of_its_name() {
    let mut t = users(&["ivan", "judy"]).await;
    let mut i = Client::online(t.addr, "ivan@localhost", PW, "i")
        .await
        .expect("ivan");
    let mut j = Client::online(t.addr, "judy@localhost", PW, "j")
        .await
        .expect("judy");
    i.send("<presence to='judy@localhost' type='subscribe'/>")
        .await;
    j.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .await
        .expect("request");
    j.send("<presence to='ivan@localhost' type='subscribed'/>")
        .await;
    j.send("<presence to='ivan@localhost' type='subscribe'/>")
        .await;
    i.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .await
        .expect("request back");
    i.send("<presence to='judy@localhost' type='subscribed'/>")
        .await;
    j.expect(|e| {
        e.name == "presence"
            && e.attr("from") == Some("ivan@localhost/i")
            && e.attr("type").is_none()
    })
    .await
    .expect("ivan's presence");
    drop(j);
    let core = t
        .server
        .as_ref()
        .and_then(|s| s.core.clone())
        .expect("core");
    let judy = proto::BareJid::parse("judy@localhost").expect("jid");
    core.delete_account(&judy).await.expect("deleted");
    // ivan's roster loses judy's subscriptions (a push says so).
    i.expect(|e| {
        e.name == "iq"
            && e.child("query", ns::ROSTER)
                .and_then(|q| q.child("item", ns::ROSTER))
                .is_some_and(|it| {
                    it.attr("jid") == Some("judy@localhost")
                        && it.attr("subscription") == Some("none")
                })
    })
    .await
    .expect("roster push");
    // A new judy gets nothing of ivan's presence.
    t.add_user("judy@localhost", "another password");
    let mut j2 = Client::online(t.addr, "judy@localhost", "another password", "new")
        .await
        .expect("new judy");
    i.send("<presence><status>ivan is at home</status></presence>")
        .await;
    j2.send("<iq type='get' id='b' to='judy@localhost'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    loop {
        let e = j2.next_element().await.expect("stanza");
        assert!(
            !(e.name == "presence" && e.attr("from").is_some_and(|f| f.starts_with("ivan"))),
            "the new account got ivan's presence: {e:?}"
        );
        if e.attr("id") == Some("b") {
            break;
        }
    }
    t.stop().await;
}

/// XML is a byte stream (RFC 6120 §11): how TCP splits it does not change
/// it. A stanza whose first part arrives in one read ending right after a
/// `>` and the rest a moment later (the server frees an idle session's
/// buffer after each read) is delivered whole, a message as an IQ.
#[tokio::test]
async fn a_stanza_split_after_a_closing_angle_bracket_arrives_whole() {
    let mut t = users(&["alice", "bob"]).await;
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    let message = "<message to='bob@localhost/b' type='chat' id='split1'><body>hello</body><thread>t1</thread></message>";
    let pieces: Vec<&str> = message.split_inclusive('>').collect();
    for piece in &pieces {
        a.send(piece).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let m = b
        .expect(|e| e.name == "message")
        .await
        .expect("the message");
    assert_eq!(m.attr("id"), Some("split1"));
    let body = m.child("body", ns::CLIENT).map(|e| e.text());
    assert_eq!(body.as_deref(), Some("hello"));
    let iq = "<iq type='get' id='split2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>";
    for piece in iq.split_inclusive('>') {
        a.send(piece).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let r = a
        .expect(|e| e.attr("id") == Some("split2"))
        .await
        .expect("the answer");
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    t.stop().await;
}
