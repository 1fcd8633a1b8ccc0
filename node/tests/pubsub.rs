//! XEP-0060 PubSub and XEP-0163 PEP over real sockets: discovery, the
//! owner, publisher and subscriber use cases, access models, errors, and
//! that the answers and notifications reach clients whose shards differ
//! from the node's.

mod common;

use common::caps::{Caps, subscribe};
use common::{Client, TestServer};
use proto::{Element, ns};

const PW: &str = "correct horse";
const PS: &str = "pubsub.localhost";

async fn server(users: &[&str]) -> TestServer {
    let t = TestServer::start().await;
    for u in users {
        t.add_user(&format!("{u}@localhost"), PW);
    }
    t
}

async fn online(t: &TestServer, user: &str) -> Client {
    Client::online(t.addr, &format!("{user}@localhost"), PW, "r")
        .await
        .expect("online")
}

/// Send an IQ and return the answer (result or error).
async fn iq(c: &mut Client, id: &str, ty: &str, to: &str, payload: &str) -> Element {
    let to = if to.is_empty() {
        String::new()
    } else {
        format!(" to='{to}'")
    };
    c.send(&format!("<iq type='{ty}' id='{id}'{to}>{payload}</iq>"))
        .await;
    c.expect(|e| e.name == "iq" && e.attr("id") == Some(id))
        .await
        .expect("answer")
}

fn ok(e: &Element) -> &Element {
    assert_eq!(e.attr("type"), Some("result"), "{}", e.to_xml(ns::CLIENT));
    e
}

/// The error condition and the pubsub#errors condition of an answer.
fn err(e: &Element) -> (String, Option<String>) {
    assert_eq!(e.attr("type"), Some("error"), "{}", e.to_xml(ns::CLIENT));
    let er = e.child("error", ns::CLIENT).expect("error");
    let cond = er
        .elements()
        .find(|c| c.ns == ns::STANZAS_ERR && c.name != "text")
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let app = er
        .elements()
        .find(|c| c.ns == ns::PUBSUB_ERRORS)
        .map(|c| c.name.clone());
    (cond, app)
}

fn pubsub(payload: &str) -> String {
    format!("<pubsub xmlns='{}'>{payload}</pubsub>", ns::PUBSUB)
}

fn owner(payload: &str) -> String {
    format!("<pubsub xmlns='{}'>{payload}</pubsub>", ns::PUBSUB_OWNER)
}

fn config_form(fields: &[(&str, &str)]) -> String {
    let mut f = format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field>",
        ns::PUBSUB_NODE_CONFIG
    );
    for (k, v) in fields {
        f.push_str(&format!("<field var='{k}'><value>{v}</value></field>"));
    }
    f.push_str("</x>");
    f
}

/// The next pubsub event message a client gets.
async fn event(c: &mut Client) -> Element {
    c.expect(|e| e.name == "message" && e.child("event", ns::PUBSUB_EVENT).is_some())
        .await
        .expect("event")
}

#[tokio::test]
async fn the_service_is_discoverable_and_lists_only_what_works() {
    let mut t = server(&["alice"]).await;
    let mut a = online(&t, "alice").await;
    let items = ok(&iq(
        &mut a,
        "d1",
        "get",
        "localhost",
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await)
    .clone();
    let q = items.child("query", ns::DISCO_ITEMS).expect("query");
    assert!(
        q.elements().any(|i| i.attr("jid") == Some(PS)),
        "{}",
        items.to_xml(ns::CLIENT)
    );
    let info = ok(&iq(
        &mut a,
        "d2",
        "get",
        PS,
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await)
    .clone();
    let q = info.child("query", ns::DISCO_INFO).expect("query");
    let id = q.child("identity", ns::DISCO_INFO).expect("identity");
    assert_eq!(
        (id.attr("category"), id.attr("type")),
        (Some("pubsub"), Some("service"))
    );
    let features: Vec<&str> = q.elements().filter_map(|f| f.attr("var")).collect();
    for f in [
        "publish",
        "subscribe",
        "create-nodes",
        "retrieve-items",
        "publish-options",
        "access-whitelist",
    ] {
        assert!(
            features.contains(&format!("{}#{f}", ns::PUBSUB).as_str()),
            "{f} missing: {features:?}"
        );
    }
    // Nothing advertised that is not there: collections, for one.
    assert!(!features.iter().any(|f| f.ends_with("#collections")));
    // Nothing of the accounts' own services: no vCards here.
    assert!(!features.contains(&"vcard-temp"), "{features:?}");
    t.stop().await;
}

#[tokio::test]
async fn owners_create_configure_publish_purge_and_delete() {
    let mut t = server(&["alice", "bob", "carol"]).await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    // An instant node: the service names it.
    let r = ok(&iq(&mut a, "c1", "set", PS, &pubsub("<create/>")).await).clone();
    let instant = r
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("create", ns::PUBSUB))
        .and_then(|c| c.attr("node"))
        .expect("node id")
        .to_string();
    assert!(!instant.is_empty());
    // A named node with a configuration.
    let create = pubsub(&format!(
        "<create node='news'/><configure>{}</configure>",
        config_form(&[("pubsub#title", "News"), ("pubsub#max_items", "3")])
    ));
    ok(&iq(&mut a, "c2", "set", PS, &create).await);
    assert_eq!(
        err(&iq(&mut a, "c3", "set", PS, &pubsub("<create node='news'/>")).await).0,
        "conflict"
    );
    // The configuration form, changed, then cancelled.
    let conf = ok(&iq(&mut a, "g1", "get", PS, &owner("<configure node='news'/>")).await).clone();
    let xml = conf.to_xml(ns::CLIENT);
    assert!(
        xml.contains("pubsub#node_config") && xml.contains("<value>News</value>"),
        "{xml}"
    );
    ok(&iq(
        &mut a,
        "g2",
        "set",
        PS,
        &owner(&format!(
            "<configure node='news'>{}</configure>",
            config_form(&[("pubsub#title", "Daily news")])
        )),
    )
    .await);
    ok(&iq(
        &mut a,
        "g3",
        "set",
        PS,
        &owner("<configure node='news'><x xmlns='jabber:x:data' type='cancel'/></configure>"),
    )
    .await);
    let conf = iq(&mut a, "g4", "get", PS, &owner("<configure node='news'/>")).await;
    assert!(conf.to_xml(ns::CLIENT).contains("Daily news"));
    // Only owners configure.
    assert_eq!(
        err(&iq(&mut b, "g5", "get", PS, &owner("<configure node='news'/>")).await).0,
        "forbidden"
    );
    // A bad value is refused and named.
    let bad = iq(
        &mut a,
        "g6",
        "set",
        PS,
        &owner(&format!(
            "<configure node='news'>{}</configure>",
            config_form(&[("pubsub#access_model", "everyone")])
        )),
    )
    .await;
    assert_eq!(err(&bad).0, "not-acceptable");
    // Malformed forms are bad requests and change nothing: two FORM_TYPE
    // values (XEP-0068), an element inside a value (XEP-0004 §3.3).
    let two_types = config_form(&[("pubsub#title", "x")]).replacen(
        "</value></field>",
        "</value><value>urn:other</value></field>",
        1,
    );
    let nested = config_form(&[("pubsub#title", "a<b xmlns='urn:x'/>")]);
    let two_forms = format!(
        "{}{}",
        config_form(&[("pubsub#title", "x")]),
        config_form(&[("pubsub#title", "a")])
    );
    for (id, form) in [("g6b", two_types), ("g6c", nested), ("g6e", two_forms)] {
        let r = iq(
            &mut a,
            id,
            "set",
            PS,
            &owner(&format!("<configure node='news'>{form}</configure>")),
        )
        .await;
        assert_eq!(err(&r).0, "bad-request", "{}", r.to_xml(ns::CLIENT));
    }
    let conf = ok(&iq(&mut a, "g6d", "get", PS, &owner("<configure node='news'/>")).await)
        .to_xml(ns::CLIENT);
    assert!(
        !conf.contains("<value>a</value>") && !conf.contains("<value>x</value>"),
        "{conf}"
    );
    let dflt = ok(&iq(&mut a, "g7", "get", PS, &owner("<default/>")).await).clone();
    assert!(dflt.to_xml(ns::CLIENT).contains("pubsub#access_model"));
    // §6.4: in the pubsub namespace, <default/> is the default
    // subscription options, of the service or of an existing node.
    for (id, node) in [("g8", ""), ("g9", " node='news'")] {
        let r = ok(&iq(&mut b, id, "get", PS, &pubsub(&format!("<default{node}/>"))).await).clone();
        let d = r
            .child("pubsub", ns::PUBSUB)
            .and_then(|p| p.child("default", ns::PUBSUB))
            .expect("default");
        let xml = d.to_xml(ns::CLIENT);
        assert!(xml.contains("pubsub#subscribe_options"), "{xml}");
        assert!(xml.contains("pubsub#deliver"), "{xml}");
        assert!(!xml.contains("pubsub#access_model"), "{xml}");
    }
    let missing = iq(&mut b, "g10", "get", PS, &pubsub("<default node='nope'/>")).await;
    assert_eq!(err(&missing).0, "item-not-found");
    // One request at a time (the XEP-0060 schema): two are a bad request,
    // not the first answered and the second dropped.
    for (id, two) in [
        ("g11", pubsub("<default/><items node='news'/>")),
        (
            "g12",
            pubsub("<default node='news'/><default node='nope'/>"),
        ),
        ("g13", owner("<default/><configure node='news'/>")),
    ] {
        assert_eq!(
            err(&iq(&mut a, id, "get", PS, &two).await).0,
            "bad-request",
            "{two}"
        );
    }

    // bob subscribes and gets what alice publishes.
    let r = ok(&iq(
        &mut b,
        "s1",
        "set",
        PS,
        &pubsub("<subscribe node='news' jid='bob@localhost'/>"),
    )
    .await)
    .clone();
    let sub = r
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("subscription", ns::PUBSUB))
        .expect("subscription");
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    assert!(sub.attr("subid").is_some_and(|s| !s.is_empty()));
    for i in 0..5 {
        let r = ok(&iq(&mut a, &format!("p{i}"), "set", PS, &pubsub(&format!("<publish node='news'><item id='i{i}'><entry xmlns='urn:example'>n{i}</entry></item></publish>"))).await).clone();
        let id = r
            .child("pubsub", ns::PUBSUB)
            .and_then(|p| p.child("publish", ns::PUBSUB))
            .and_then(|p| p.child("item", ns::PUBSUB))
            .and_then(|i| i.attr("id"));
        assert_eq!(id, Some(format!("i{i}").as_str()));
        let ev = event(&mut b).await;
        assert_eq!(ev.attr("from"), Some(PS));
        assert_eq!(ev.attr("to"), Some("bob@localhost/r"));
        let item = ev
            .child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
            .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
            .expect("item");
        assert_eq!(item.attr("id"), Some(format!("i{i}").as_str()));
        assert_eq!(
            item.child("entry", "urn:example").map(Element::text),
            Some(format!("n{i}"))
        );
    }
    // Without an id the service makes a unique one.
    let mut ids = std::collections::HashSet::new();
    for i in 0..3 {
        let r = ok(&iq(
            &mut a,
            &format!("q{i}"),
            "set",
            PS,
            &pubsub("<publish node='news'><item><entry xmlns='urn:example'/></item></publish>"),
        )
        .await)
        .clone();
        let id = r
            .child("pubsub", ns::PUBSUB)
            .and_then(|p| p.child("publish", ns::PUBSUB))
            .and_then(|p| p.child("item", ns::PUBSUB))
            .and_then(|i| i.attr("id"))
            .expect("id")
            .to_string();
        assert!(ids.insert(id));
        event(&mut b).await;
    }
    // max_items 3: only the newest three are kept.
    let items = ok(&iq(&mut b, "r1", "get", PS, &pubsub("<items node='news'/>")).await).clone();
    let got: Vec<String> = items
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .map(|i| {
            i.elements()
                .filter_map(|e| e.attr("id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(got.len(), 3, "{got:?}");
    // Retract with notify.
    let last = got[0].clone();
    ok(&iq(
        &mut a,
        "x1",
        "set",
        PS,
        &pubsub(&format!(
            "<retract node='news' notify='true'><item id='{last}'/></retract>"
        )),
    )
    .await);
    let ev = event(&mut b).await;
    assert!(
        ev.to_xml(ns::CLIENT)
            .contains(&format!("<retract id='{last}'/>"))
    );
    // Purge, then delete with a redirect: bob hears both.
    ok(&iq(&mut a, "x2", "set", PS, &owner("<purge node='news'/>")).await);
    let ev = event(&mut b).await;
    assert!(
        ev.child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.child("purge", ns::PUBSUB_EVENT))
            .is_some()
    );
    let items = ok(&iq(&mut b, "r2", "get", PS, &pubsub("<items node='news'/>")).await).clone();
    assert_eq!(
        items
            .child("pubsub", ns::PUBSUB)
            .and_then(|p| p.child("items", ns::PUBSUB))
            .map(|i| i.elements().count()),
        Some(0)
    );
    ok(&iq(
        &mut a,
        "x3",
        "set",
        PS,
        &owner("<delete node='news'><redirect uri='xmpp:pubsub.localhost?;node=other'/></delete>"),
    )
    .await);
    let ev = event(&mut b).await;
    let del = ev
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("delete", ns::PUBSUB_EVENT))
        .expect("delete");
    assert_eq!(del.attr("node"), Some("news"));
    assert!(del.child("redirect", ns::PUBSUB_EVENT).is_some());
    assert_eq!(
        err(&iq(&mut b, "r3", "get", PS, &pubsub("<items node='news'/>")).await).0,
        "item-not-found"
    );
    t.stop().await;
}

#[tokio::test]
async fn subscribers_page_through_items_and_manage_their_subscriptions() {
    let mut t = server(&["alice", "bob"]).await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    ok(&iq(
        &mut a,
        "c",
        "set",
        PS,
        &pubsub(&format!(
            "<create node='log'/><configure>{}</configure>",
            config_form(&[("pubsub#max_items", "max")])
        )),
    )
    .await);
    for i in 0..25 {
        ok(&iq(
            &mut a,
            &format!("p{i}"),
            "set",
            PS,
            &pubsub(&format!(
                "<publish node='log'><item id='e{i:02}'><e xmlns='urn:x'/></item></publish>"
            )),
        )
        .await);
    }
    // max_items: the newest.
    let r = ok(&iq(
        &mut b,
        "m",
        "get",
        PS,
        &pubsub("<items node='log' max_items='2'/>"),
    )
    .await)
    .clone();
    let ids: Vec<&str> = r
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .map(|i| i.elements().filter_map(|e| e.attr("id")).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["e24", "e23"]);
    // RSM pages of 10, newest first, to the end.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for page in 0..4 {
        let a_el = after
            .as_ref()
            .map(|x| format!("<after>{x}</after>"))
            .unwrap_or_default();
        let r = ok(&iq(
            &mut b,
            &format!("rsm{page}"),
            "get",
            PS,
            &pubsub(&format!(
                "<items node='log'/><set xmlns='{}'><max>10</max>{a_el}</set>",
                ns::RSM
            )),
        )
        .await)
        .clone();
        let p = r.child("pubsub", ns::PUBSUB).expect("pubsub");
        let ids: Vec<String> = p
            .child("items", ns::PUBSUB)
            .map(|i| {
                i.elements()
                    .filter_map(|e| e.attr("id").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let set = p.child("set", ns::RSM).expect("set");
        assert_eq!(
            set.child("count", ns::RSM).map(Element::text).as_deref(),
            Some("25")
        );
        if ids.is_empty() {
            break;
        }
        after = set.child("last", ns::RSM).map(Element::text);
        seen.extend(ids);
    }
    let want: Vec<String> = (0..25).rev().map(|i| format!("e{i:02}")).collect();
    assert_eq!(seen, want);
    // By id.
    let r = ok(&iq(
        &mut b,
        "byid",
        "get",
        PS,
        &pubsub("<items node='log'><item id='e03'/><item id='nope'/></items>"),
    )
    .await)
    .clone();
    assert_eq!(
        r.child("pubsub", ns::PUBSUB)
            .and_then(|p| p.child("items", ns::PUBSUB))
            .map(|i| i.elements().count()),
        Some(1)
    );

    // Subscribe, options, own subscriptions, unsubscribe rules.
    assert_eq!(
        err(&iq(
            &mut b,
            "s0",
            "set",
            PS,
            &pubsub("<subscribe node='log' jid='alice@localhost'/>")
        )
        .await),
        ("bad-request".into(), Some("invalid-jid".into()))
    );
    assert_eq!(
        err(&iq(
            &mut b,
            "s00",
            "set",
            PS,
            &pubsub("<subscribe node='nothing' jid='bob@localhost'/>")
        )
        .await)
        .0,
        "item-not-found"
    );
    let r = ok(&iq(
        &mut b,
        "s1",
        "set",
        PS,
        &pubsub("<subscribe node='log' jid='bob@localhost/r'/>"),
    )
    .await)
    .clone();
    let subid = r
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("subscription", ns::PUBSUB))
        .and_then(|s| s.attr("subid"))
        .expect("subid")
        .to_string();
    let o = ok(&iq(
        &mut b,
        "o1",
        "get",
        PS,
        &pubsub("<options node='log' jid='bob@localhost/r'/>"),
    )
    .await)
    .clone();
    assert!(o.to_xml(ns::CLIENT).contains("pubsub#deliver"));
    let submit = format!(
        "<options node='log' jid='bob@localhost/r'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field><field var='pubsub#deliver'><value>0</value></field></x></options>",
        ns::PUBSUB_SUBSCRIBE_OPTIONS
    );
    ok(&iq(&mut b, "o2", "set", PS, &pubsub(&submit)).await);
    let mine = ok(&iq(&mut b, "l1", "get", PS, &pubsub("<subscriptions/>")).await).clone();
    assert!(mine.to_xml(ns::CLIENT).contains(&subid));
    let affs = ok(&iq(&mut a, "l2", "get", PS, &pubsub("<affiliations/>")).await).clone();
    assert!(affs.to_xml(ns::CLIENT).contains("affiliation='owner'"));
    assert_eq!(
        err(&iq(
            &mut b,
            "u0",
            "set",
            PS,
            &pubsub("<unsubscribe node='log' jid='bob@localhost/r' subid='wrong'/>")
        )
        .await),
        ("not-acceptable".into(), Some("invalid-subid".into()))
    );
    ok(&iq(
        &mut b,
        "u1",
        "set",
        PS,
        &pubsub(&format!(
            "<unsubscribe node='log' jid='bob@localhost/r' subid='{subid}'/>"
        )),
    )
    .await);
    assert_eq!(
        err(&iq(
            &mut b,
            "u2",
            "set",
            PS,
            &pubsub("<unsubscribe node='log' jid='bob@localhost/r'/>")
        )
        .await),
        ("unexpected-request".into(), Some("not-subscribed".into()))
    );
    t.stop().await;
}

#[tokio::test]
async fn access_models_and_affiliations_are_enforced() {
    let mut t = server(&["alice", "bob", "carol"]).await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    let mut c = online(&t, "carol").await;
    // Whitelist: members only.
    ok(&iq(
        &mut a,
        "w",
        "set",
        PS,
        &pubsub(&format!(
            "<create node='club'/><configure>{}</configure>",
            config_form(&[("pubsub#access_model", "whitelist")])
        )),
    )
    .await);
    assert_eq!(
        err(&iq(
            &mut b,
            "w1",
            "set",
            PS,
            &pubsub("<subscribe node='club' jid='bob@localhost'/>")
        )
        .await),
        ("not-allowed".into(), Some("closed-node".into()))
    );
    ok(&iq(&mut a, "w2", "set", PS, &owner("<affiliations node='club'><affiliation jid='bob@localhost' affiliation='member'/><affiliation jid='carol@localhost' affiliation='publisher'/></affiliations>")).await);
    ok(&iq(
        &mut b,
        "w3",
        "set",
        PS,
        &pubsub("<subscribe node='club' jid='bob@localhost'/>"),
    )
    .await);
    // A publisher publishes; a member may not.
    ok(&iq(
        &mut c,
        "w4",
        "set",
        PS,
        &pubsub("<publish node='club'><item><x xmlns='urn:x'/></item></publish>"),
    )
    .await);
    event(&mut b).await;
    assert_eq!(
        err(&iq(
            &mut b,
            "w5",
            "set",
            PS,
            &pubsub("<publish node='club'><item><x xmlns='urn:x'/></item></publish>")
        )
        .await)
        .0,
        "forbidden"
    );
    // An outcast loses its subscription and is refused.
    ok(&iq(&mut a, "w6", "set", PS, &owner("<affiliations node='club'><affiliation jid='bob@localhost' affiliation='outcast'/></affiliations>")).await);
    assert_eq!(
        err(&iq(&mut b, "w7", "get", PS, &pubsub("<items node='club'/>")).await).0,
        "forbidden"
    );
    let list = ok(&iq(
        &mut a,
        "w8",
        "get",
        PS,
        &owner("<subscriptions node='club'/>"),
    )
    .await)
    .clone();
    assert!(!list.to_xml(ns::CLIENT).contains("bob@localhost"));
    // The last owner stays.
    assert_eq!(err(&iq(&mut a, "w9", "set", PS, &owner("<affiliations node='club'><affiliation jid='alice@localhost' affiliation='none'/></affiliations>")).await).0, "not-acceptable");
    // A publisher made outcast may not retract even its own items.
    ok(&iq(
        &mut c,
        "wa",
        "set",
        PS,
        &pubsub("<publish node='club'><item id='c-own'><x xmlns='urn:x'/></item></publish>"),
    )
    .await);
    ok(&iq(&mut a, "wb", "set", PS, &owner("<affiliations node='club'><affiliation jid='carol@localhost' affiliation='outcast'/></affiliations>")).await);
    assert_eq!(
        err(&iq(
            &mut c,
            "wc",
            "set",
            PS,
            &pubsub("<retract node='club'><item id='c-own'/></retract>")
        )
        .await)
        .0,
        "forbidden"
    );

    // Authorize: pending until the owner approves through the form.
    ok(&iq(
        &mut a,
        "z",
        "set",
        PS,
        &pubsub(&format!(
            "<create node='vip'/><configure>{}</configure>",
            config_form(&[("pubsub#access_model", "authorize")])
        )),
    )
    .await);
    let r = ok(&iq(
        &mut c,
        "z1",
        "set",
        PS,
        &pubsub("<subscribe node='vip' jid='carol@localhost'/>"),
    )
    .await)
    .clone();
    assert!(r.to_xml(ns::CLIENT).contains("subscription='pending'"));
    assert_eq!(
        err(&iq(
            &mut c,
            "z2",
            "set",
            PS,
            &pubsub("<subscribe node='vip' jid='carol@localhost'/>")
        )
        .await),
        ("not-authorized".into(), Some("pending-subscription".into()))
    );
    let ask = a
        .expect(|e| {
            e.name == "message"
                && e.to_xml(ns::CLIENT)
                    .contains(ns::PUBSUB_SUBSCRIBE_AUTHORIZATION)
        })
        .await
        .expect("authorization request");
    let subid = ask
        .to_xml(ns::CLIENT)
        .split("pubsub#subid")
        .nth(1)
        .and_then(|r| r.split("<value>").nth(1))
        .and_then(|r| r.split("</value>").next())
        .expect("subid")
        .to_string();
    a.send(&format!("<message to='{PS}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field><field var='pubsub#node'><value>vip</value></field><field var='pubsub#subscriber_jid'><value>carol@localhost</value></field><field var='pubsub#subid'><value>{subid}</value></field><field var='pubsub#allow'><value>true</value></field></x></message>", ns::PUBSUB_SUBSCRIBE_AUTHORIZATION)).await;
    let ev = event(&mut c).await;
    assert!(
        ev.to_xml(ns::CLIENT).contains("subscription='subscribed'"),
        "{}",
        ev.to_xml(ns::CLIENT)
    );
    // Approved under her bare JID, carol retrieves from her full one
    // (XEP-0060 §6.5), and may publish where subscribers may.
    ok(&iq(&mut c, "z3", "get", PS, &pubsub("<items node='vip'/>")).await);
    ok(&iq(
        &mut a,
        "z4",
        "set",
        PS,
        &owner(&format!(
            "<configure node='vip'>{}</configure>",
            config_form(&[("pubsub#publish_model", "subscribers")])
        )),
    )
    .await);
    ok(&iq(
        &mut c,
        "z5",
        "set",
        PS,
        &pubsub("<publish node='vip'><item id='c1'><note xmlns='urn:example'/></item></publish>"),
    )
    .await);
    // Publish-only: publishes, but neither subscribes nor sees items.
    ok(&iq(&mut a, "z6", "set", PS, &owner("<affiliations node='vip'><affiliation jid='bob@localhost' affiliation='publish-only'/></affiliations>")).await);
    ok(&iq(
        &mut b,
        "z7",
        "set",
        PS,
        &pubsub("<publish node='vip'><item id='b1'><note xmlns='urn:example'/></item></publish>"),
    )
    .await);
    assert_eq!(
        err(&iq(&mut b, "z8", "get", PS, &pubsub("<items node='vip'/>")).await).0,
        "forbidden"
    );
    assert_eq!(
        err(&iq(
            &mut b,
            "z9",
            "set",
            PS,
            &pubsub("<subscribe node='vip' jid='bob@localhost'/>")
        )
        .await)
        .0,
        "forbidden"
    );

    // Presence: only those who see the owner's presence.
    ok(&iq(
        &mut a,
        "y",
        "set",
        PS,
        &pubsub(&format!(
            "<create node='mood'/><configure>{}</configure>",
            config_form(&[("pubsub#access_model", "presence")])
        )),
    )
    .await);
    assert_eq!(
        err(&iq(
            &mut b,
            "y1",
            "set",
            PS,
            &pubsub("<subscribe node='mood' jid='bob@localhost'/>")
        )
        .await),
        (
            "not-authorized".into(),
            Some("presence-subscription-required".into())
        )
    );
    t.stop().await;
}

#[tokio::test]
async fn bad_requests_get_the_errors_xep_0060_names_and_store_nothing() {
    let mut t = TestServer::start_with(|cfg| {
        cfg.pubsub.max_item_bytes = 2048;
        cfg.pubsub.max_nodes_per_account = 3;
    })
    .await;
    t.add_user("alice@localhost", PW);
    let mut a = online(&t, "alice").await;
    ok(&iq(&mut a, "c", "set", PS, &pubsub("<create node='n'/>")).await);
    // Too big.
    let big = "x".repeat(4000);
    assert_eq!(
        err(&iq(
            &mut a,
            "b1",
            "set",
            PS,
            &pubsub(&format!(
                "<publish node='n'><item id='big'><p xmlns='urn:x'>{big}</p></item></publish>"
            ))
        )
        .await),
        ("not-acceptable".into(), Some("payload-too-big".into()))
    );
    // Two payloads, none, no node.
    assert_eq!(
        err(&iq(
            &mut a,
            "b2",
            "set",
            PS,
            &pubsub(
                "<publish node='n'><item><a xmlns='urn:x'/><b xmlns='urn:x'/></item></publish>"
            )
        )
        .await)
        .1
        .as_deref(),
        Some("invalid-payload")
    );
    assert_eq!(
        err(&iq(
            &mut a,
            "b3",
            "set",
            PS,
            &pubsub("<publish node='n'><item/></publish>")
        )
        .await)
        .1
        .as_deref(),
        Some("payload-required")
    );
    assert_eq!(
        err(&iq(
            &mut a,
            "b4",
            "set",
            PS,
            &pubsub("<publish><item/></publish>")
        )
        .await)
        .1
        .as_deref(),
        Some("nodeid-required")
    );
    assert_eq!(
        err(&iq(
            &mut a,
            "b5",
            "set",
            PS,
            &pubsub("<publish node='none'><item><a xmlns='urn:x'/></item></publish>")
        )
        .await)
        .0,
        "item-not-found"
    );
    // A precondition that does not hold.
    let opts = format!(
        "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options>",
        ns::PUBSUB_PUBLISH_OPTIONS
    );
    assert_eq!(
        err(&iq(
            &mut a,
            "b6",
            "set",
            PS,
            &pubsub(&format!(
                "<publish node='n'><item><a xmlns='urn:x'/></item></publish>{opts}"
            ))
        )
        .await),
        ("conflict".into(), Some("precondition-not-met".into()))
    );
    // A malformed form.
    assert_eq!(
        err(&iq(
            &mut a,
            "b7",
            "set",
            PS,
            &owner("<configure node='n'><x xmlns='jabber:x:data' type='bogus'/></configure>")
        )
        .await)
        .0,
        "bad-request"
    );
    // Quota: three nodes per account.
    ok(&iq(&mut a, "q1", "set", PS, &pubsub("<create node='n2'/>")).await);
    ok(&iq(&mut a, "q2", "set", PS, &pubsub("<create node='n3'/>")).await);
    assert_eq!(
        err(&iq(&mut a, "q3", "set", PS, &pubsub("<create node='n4'/>")).await).0,
        "policy-violation"
    );
    // Nothing of the refused requests was stored.
    let r = ok(&iq(&mut a, "r", "get", PS, &pubsub("<items node='n'/>")).await).clone();
    assert_eq!(
        r.child("pubsub", ns::PUBSUB)
            .and_then(|p| p.child("items", ns::PUBSUB))
            .map(|i| i.elements().count()),
        Some(0)
    );
    t.stop().await;
}

#[tokio::test]
async fn pep_nodes_are_auto_created_and_reach_the_owners_resources() {
    let mut t = server(&["alice", "bob"]).await;
    let mut a1 = Client::online(t.addr, "alice@localhost", PW, "one")
        .await
        .expect("alice");
    let mut a2 = Client::online(t.addr, "alice@localhost", PW, "two")
        .await
        .expect("alice");
    let mut b = online(&t, "bob").await;
    let info = ok(&iq(
        &mut a1,
        "i",
        "get",
        "alice@localhost",
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await)
    .clone();
    let xml = info.to_xml(ns::CLIENT);
    assert!(
        xml.contains("type='pep'")
            && xml.contains("auto-create")
            && xml.contains("pubsub#filtered-notifications")
            && xml.contains("pubsub#auto-subscribe")
            && xml.contains("pubsub#retrieve-default-sub")
            && xml.contains("pubsub#subscription-options"),
        "{xml}"
    );
    // What it advertises works: the default subscription options (§6.4).
    let d = ok(&iq(
        &mut a1,
        "d",
        "get",
        "alice@localhost",
        &pubsub("<default/>"),
    )
    .await)
    .to_xml(ns::CLIENT);
    assert!(d.contains("pubsub#subscribe_options"), "{d}");
    // Publishing creates the node; both resources hear it.
    let nick = "<publish node='http://jabber.org/protocol/nick'><item id='current'><nick xmlns='http://jabber.org/protocol/nick'>Alice</nick></item></publish>";
    a1.send(&format!("<iq type='set' id='p'>{}</iq>", pubsub(nick)))
        .await;
    // The publisher gets its answer and the notification, in either order.
    let (mut answered, mut notified) = (false, false);
    while !(answered && notified) {
        let e = a1.next_element().await.expect("stanza");
        if e.name == "iq" && e.attr("id") == Some("p") {
            ok(&e);
            answered = true;
        } else if e.name == "message" && e.child("event", ns::PUBSUB_EVENT).is_some() {
            assert_eq!(e.attr("from"), Some("alice@localhost"));
            assert!(e.to_xml(ns::CLIENT).contains(">Alice<"));
            notified = true;
        }
    }
    let ev = event(&mut a2).await;
    assert_eq!(ev.attr("from"), Some("alice@localhost"));
    assert_eq!(ev.attr("to"), Some("alice@localhost/two"));
    assert!(ev.to_xml(ns::CLIENT).contains(">Alice<"));
    // Default access is presence: bob does not see alice's presence yet.
    let r = iq(
        &mut b,
        "g",
        "get",
        "alice@localhost",
        &pubsub("<items node='http://jabber.org/protocol/nick'/>"),
    )
    .await;
    assert_eq!(
        err(&r),
        (
            "not-authorized".into(),
            Some("presence-subscription-required".into())
        )
    );
    // A private node (XEP-0223): whitelist by publish-options.
    let private = format!(
        "<publish node='storage:private'><item id='current'><data xmlns='urn:x'>secret</data></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field><field var='pubsub#persist_items'><value>true</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options>",
        ns::PUBSUB_PUBLISH_OPTIONS
    );
    ok(&iq(&mut a1, "pp", "set", "", &pubsub(&private)).await);
    let r = iq(
        &mut b,
        "g2",
        "get",
        "alice@localhost",
        &pubsub("<items node='storage:private'/>"),
    )
    .await;
    assert_eq!(err(&r).0, "not-allowed");
    let r = ok(&iq(
        &mut a2,
        "g3",
        "get",
        "",
        &pubsub("<items node='storage:private'/>"),
    )
    .await)
    .clone();
    assert!(r.to_xml(ns::CLIENT).contains("secret"));
    // Only the account creates nodes on its PEP service.
    assert_eq!(
        err(&iq(
            &mut b,
            "x",
            "set",
            "alice@localhost",
            &pubsub("<create node='mine'/>")
        )
        .await)
        .0,
        "forbidden"
    );
    t.stop().await;
}

/// XEP-0115 §5.4: a client that answers the server's question with an
/// error, or with features that do not hash to what it announced, is not
/// taken at its word nor asked again; the next session announcing the
/// same hash is asked, and the notifications that waited are delivered.
#[tokio::test]
async fn a_hash_answered_badly_is_asked_of_the_next_session_that_has_it() {
    const MOOD: &str = "http://jabber.org/protocol/mood";
    let notify = format!("{MOOD}+notify");
    let mut t = server(&["alice", "bob"]).await;
    let mut a = online(&t, "alice").await;
    let mut b1 = online(&t, "bob").await;
    subscribe(&mut a, &mut b1, "alice@localhost", "bob@localhost").await;
    subscribe(&mut b1, &mut a, "bob@localhost", "alice@localhost").await;
    let caps = Caps::new("http://bob.example/c", &[ns::DISCO_INFO, MOOD, &notify]);
    // The first resource answers with an error.
    b1.send(&caps.presence("")).await;
    let q = b1
        .expect(|e| e.child("query", ns::DISCO_INFO).is_some() && e.attr("type") == Some("get"))
        .await
        .expect("asked");
    b1.send(&format!(
        "<iq type='error' id='{}' to='localhost'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        q.attr("id").expect("id")
    ))
    .await;
    // The second resource, same hash, is asked and answers truly.
    let mut b2 = Client::login(t.addr, "bob@localhost", PW, "two")
        .await
        .expect("bob two");
    b2.send(&caps.presence("")).await;
    caps.answer(&mut b2).await;
    ok(&iq(&mut b2, "ping", "get", "", "<ping xmlns='urn:xmpp:ping'/>").await);
    let mood = |m: &str| {
        pubsub(&format!(
            "<publish node='{MOOD}'><item id='current'><mood xmlns='{MOOD}'><{m}/></mood></item></publish>"
        ))
    };
    ok(&iq(&mut a, "m1", "set", "", &mood("happy")).await);
    for x in [&mut b1, &mut b2] {
        let ev = event(x).await;
        assert!(ev.to_xml(ns::CLIENT).contains("<happy"));
    }

    // A liar: its notification waits, it is not asked again, and the
    // next session with the hash settles it.
    let other = Caps::new(
        "http://bob.example/other",
        &[ns::DISCO_INFO, "urn:xmpp:ping", MOOD, &notify],
    );
    let mut b3 = Client::login(t.addr, "bob@localhost", PW, "three")
        .await
        .expect("bob three");
    b3.send(&other.presence("")).await;
    let lie = Caps {
        children: format!("<feature var='{}'/>", ns::DISCO_INFO),
        ..Caps::new(
            "http://bob.example/other",
            &[ns::DISCO_INFO, "urn:xmpp:ping", MOOD, &notify],
        )
    };
    lie.answer(&mut b3).await;
    ok(&iq(&mut a, "m2", "set", "", &mood("sad")).await);
    let mut b4 = Client::login(t.addr, "bob@localhost", PW, "four")
        .await
        .expect("bob four");
    b4.send(&other.presence("")).await;
    other.answer(&mut b4).await;
    let ev = b3
        .expect(|e| {
            assert!(
                e.child("query", ns::DISCO_INFO).is_none(),
                "a session that lied is not asked again"
            );
            e.child("event", ns::PUBSUB_EVENT).is_some()
        })
        .await
        .expect("the waiting notification");
    assert!(ev.to_xml(ns::CLIENT).contains("<sad"));
    t.stop().await;
}

/// What a capability hash means outlives the server: after a restart a
/// client announcing a hash learnt before is not asked again, and gets
/// the PEP notifications its features ask for.
#[tokio::test]
async fn a_learnt_capability_hash_outlives_a_restart() {
    const MOOD: &str = "http://jabber.org/protocol/mood";
    let notify = format!("{MOOD}+notify");
    let mut t = server(&["alice", "bob"]).await;
    let caps = Caps::new("http://bob.example/c", &[ns::DISCO_INFO, MOOD, &notify]);
    {
        let mut a = online(&t, "alice").await;
        let mut b = online(&t, "bob").await;
        subscribe(&mut a, &mut b, "alice@localhost", "bob@localhost").await;
        subscribe(&mut b, &mut a, "bob@localhost", "alice@localhost").await;
        b.send(&caps.presence("")).await;
        caps.answer(&mut b).await;
        ok(&iq(&mut b, "ping", "get", "", "<ping xmlns='urn:xmpp:ping'/>").await);
    }
    t.restart().await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    b.send(&caps.presence("")).await;
    let mood = pubsub(&format!(
        "<publish node='{MOOD}'><item id='current'><mood xmlns='{MOOD}'><happy/></mood></item></publish>"
    ));
    ok(&iq(&mut a, "mood", "set", "", &mood).await);
    let ev = b
        .expect(|e| {
            assert!(
                e.child("query", ns::DISCO_INFO).is_none(),
                "a hash learnt before the restart is not asked about again"
            );
            e.child("event", ns::PUBSUB_EVENT).is_some()
        })
        .await
        .expect("the mood");
    assert!(ev.to_xml(ns::CLIENT).contains("<happy"));
    t.stop().await;
}

/// Poll `node` until retrieval returns no item (its items expired), for
/// at most 5 s.
async fn until_expired(a: &mut Client, node: &str) {
    let mut tries = 0;
    loop {
        let r = ok(&iq(
            a,
            &format!("w{tries}"),
            "get",
            PS,
            &pubsub(&format!("<items node='{node}'/>")),
        )
        .await)
        .clone();
        if retrieved_items(&r).is_empty() {
            break;
        }
        tries += 1;
        assert!(tries < 100, "the item never expired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Read until a chat message from `from` arrives, failing on any PubSub
/// event before it (the message is a barrier sent after what must not
/// arrive).
async fn no_event_before_message(c: &mut Client, from: &str) {
    loop {
        let e = c.next_element().await.expect("stanza");
        assert!(
            e.child("event", ns::PUBSUB_EVENT).is_none(),
            "unexpected event: {}",
            e.to_xml(ns::CLIENT)
        );
        if e.name == "message" && e.attr("from").is_some_and(|f| f.starts_with(from)) {
            return;
        }
    }
}

#[tokio::test]
async fn pep_reaches_the_contacts_whose_capabilities_ask_for_it() {
    const TUNE: &str = "http://jabber.org/protocol/tune";
    let notify = format!("{TUNE}+notify");
    let mut t = server(&["alice", "bob", "carol"]).await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    let mut c = online(&t, "carol").await;
    subscribe(&mut a, &mut b, "alice@localhost", "bob@localhost").await;
    subscribe(&mut b, &mut a, "bob@localhost", "alice@localhost").await;
    subscribe(&mut a, &mut c, "alice@localhost", "carol@localhost").await;
    subscribe(&mut c, &mut a, "carol@localhost", "alice@localhost").await;
    // Bob's client asks for tunes; carol's knows tunes but does not ask.
    let bob_caps = Caps::new(
        "http://bob.example/client",
        &[ns::DISCO_INFO, TUNE, &notify],
    );
    let carol_caps = Caps::new("http://carol.example/client", &[ns::DISCO_INFO, TUNE]);
    b.send(&bob_caps.presence("")).await;
    bob_caps.answer(&mut b).await;
    c.send(&carol_caps.presence("")).await;
    carol_caps.answer(&mut c).await;
    // Presence round trips: the answers are in before alice publishes.
    for (x, id) in [(&mut b, "p1"), (&mut c, "p2")] {
        ok(&iq(x, id, "get", "", "<ping xmlns='urn:xmpp:ping'/>").await);
    }

    let song = |title: &str| {
        pubsub(&format!(
            "<publish node='{TUNE}'><item id='current'><tune xmlns='{TUNE}'><title>{title}</title></tune></item></publish>"
        ))
    };
    ok(&iq(&mut a, "pub1", "set", "", &song("First")).await);
    let ev = event(&mut b).await;
    assert_eq!(ev.attr("from"), Some("alice@localhost"));
    assert_eq!(ev.attr("to"), Some("bob@localhost/r"));
    assert!(ev.to_xml(ns::CLIENT).contains(">First<"));
    a.send("<message to='carol@localhost' type='chat'><body>after</body></message>")
        .await;
    no_event_before_message(&mut c, "alice@localhost").await;

    // Bob's second resource announces the same hash: the server knows it
    // (no question) and sends the last tune as the resource comes online.
    let mut b2 = Client::login(t.addr, "bob@localhost", PW, "two")
        .await
        .expect("bob two");
    b2.send(&bob_caps.presence("")).await;
    let ev = b2
        .expect(|e| {
            assert!(
                e.child("query", ns::DISCO_INFO).is_none(),
                "a known hash is not asked about again"
            );
            e.child("event", ns::PUBSUB_EVENT).is_some()
        })
        .await
        .expect("last item");
    assert_eq!(ev.attr("to"), Some("bob@localhost/two"));
    assert!(ev.to_xml(ns::CLIENT).contains(">First<"));
    // A change of status is not a new resource: no second last item.
    b2.send(&bob_caps.presence("<show>away</show>")).await;
    a.send("<message to='bob@localhost/two' type='chat'><body>after</body></message>")
        .await;
    no_event_before_message(&mut b2, "alice@localhost").await;

    // Carol's second resource has a new hash that asks for tunes: the
    // last item waits for its answer, then arrives.
    let carol2_caps = Caps::new(
        "http://carol.example/other",
        &[ns::DISCO_INFO, "urn:xmpp:ping", TUNE, &notify],
    );
    let mut c2 = Client::login(t.addr, "carol@localhost", PW, "two")
        .await
        .expect("carol two");
    c2.send(&carol2_caps.presence("")).await;
    carol2_caps.answer(&mut c2).await;
    let ev = event(&mut c2).await;
    assert!(ev.to_xml(ns::CLIENT).contains(">First<"));

    // A forged answer (features that do not hash to the announced ver)
    // is refused: the contact gets nothing.
    let forged = Caps::new("http://forged.example/c", &[ns::DISCO_INFO]);
    let mut c3 = Client::login(t.addr, "carol@localhost", PW, "three")
        .await
        .expect("carol three");
    c3.send(&forged.presence("")).await;
    let lie = Caps {
        children: format!(
            "<feature var='{}'/><feature var='{notify}'/>",
            ns::DISCO_INFO
        ),
        ..Caps::new("http://forged.example/c", &[ns::DISCO_INFO])
    };
    lie.answer(&mut c3).await;

    // Publishing again reaches bob's two resources and carol's second.
    ok(&iq(&mut a, "pub2", "set", "", &song("Second")).await);
    for x in [&mut b, &mut b2, &mut c2] {
        let ev = event(x).await;
        assert!(ev.to_xml(ns::CLIENT).contains(">Second<"));
    }
    for x in [&mut c, &mut c3] {
        a.send("<message to='carol@localhost' type='chat'><body>after</body></message>")
            .await;
        no_event_before_message(x, "alice@localhost").await;
    }
    t.stop().await;
}

/// The ids and the payload names of the items of a retrieval answer.
fn retrieved_items(r: &Element) -> Vec<(String, Vec<String>)> {
    r.child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .map(|i| {
            i.elements()
                .map(|e| {
                    (
                        e.attr("id").unwrap_or_default().to_string(),
                        e.elements().map(|p| p.name.clone()).collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn retrieval_returns_payloads_of_a_node_that_does_not_deliver_them() {
    // XEP-0060 §4.3: pubsub#deliver_payloads governs notifications; the
    // subscriber of a notification-only node fetches the payload (§6.5).
    let mut t = server(&["alice", "bob"]).await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    ok(&iq(
        &mut a,
        "c",
        "set",
        PS,
        &pubsub(&format!(
            "<create node='quiet'/><configure>{}</configure>",
            config_form(&[("pubsub#deliver_payloads", "0")])
        )),
    )
    .await);
    ok(&iq(
        &mut b,
        "s",
        "set",
        PS,
        &pubsub("<subscribe node='quiet' jid='bob@localhost'/>"),
    )
    .await);
    ok(&iq(
        &mut a,
        "p",
        "set",
        PS,
        &pubsub("<publish node='quiet'><item id='q1'><entry xmlns='urn:example'>hush</entry></item></publish>"),
    )
    .await);
    let ev = event(&mut b).await;
    let item = ev
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
        .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
        .expect("item");
    assert_eq!(item.attr("id"), Some("q1"));
    assert_eq!(item.elements().count(), 0, "{}", ev.to_xml(ns::CLIENT));
    for (id, req) in [
        ("r1", "<items node='quiet'/>"),
        ("r2", "<items node='quiet'><item id='q1'/></items>"),
    ] {
        let r = ok(&iq(&mut b, id, "get", PS, &pubsub(req)).await).clone();
        assert_eq!(
            retrieved_items(&r),
            [("q1".to_string(), vec!["entry".to_string()])],
            "{}",
            r.to_xml(ns::CLIENT)
        );
        assert!(r.to_xml(ns::CLIENT).contains(">hush<"));
    }
    t.stop().await;
}

#[tokio::test]
async fn publish_follows_the_event_type_of_the_node() {
    // XEP-0060 §4.3's table and §7.1.3.6: persistent or transient, with
    // payloads or notification-only.
    let mut t = server(&["alice", "bob"]).await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    for (node, persist, payloads) in [
        ("pn", "1", "0"),
        ("tn", "0", "0"),
        ("pp", "1", "1"),
        ("tp", "0", "1"),
    ] {
        ok(&iq(
            &mut a,
            &format!("c-{node}"),
            "set",
            PS,
            &pubsub(&format!(
                "<create node='{node}'/><configure>{}</configure>",
                config_form(&[
                    ("pubsub#persist_items", persist),
                    ("pubsub#deliver_payloads", payloads)
                ])
            )),
        )
        .await);
        ok(&iq(
            &mut b,
            &format!("s-{node}"),
            "set",
            PS,
            &pubsub(&format!("<subscribe node='{node}' jid='bob@localhost'/>")),
        )
        .await);
    }
    let publish =
        |node: &str, body: &str| pubsub(&format!("<publish node='{node}'>{body}</publish>"));
    // Persistent, notification-only: an item, empty or not; notified
    // without payload.
    ok(&iq(&mut a, "p1", "set", PS, &publish("pn", "<item id='x'/>")).await);
    let ev = event(&mut b).await;
    let xml = ev.to_xml(ns::CLIENT);
    assert!(xml.contains("<items node='pn'><item id='x'"), "{xml}");
    assert!(
        ev.child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
            .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
            .is_some_and(|i| i.elements().count() == 0),
        "{xml}"
    );
    assert_eq!(
        err(&iq(&mut a, "p2", "set", PS, &publish("pn", "")).await),
        ("bad-request".into(), Some("item-required".into()))
    );
    // Transient, notification-only: no item at all, and the notification
    // is an empty <items/> (§1.2's doorbell).
    assert_eq!(
        err(&iq(&mut a, "p3", "set", PS, &publish("tn", "<item id='y'/>")).await),
        ("bad-request".into(), Some("item-forbidden".into()))
    );
    assert_eq!(
        err(&iq(
            &mut a,
            "p4",
            "set",
            PS,
            &publish("tn", "<item><ring xmlns='urn:example'/></item>")
        )
        .await),
        ("bad-request".into(), Some("item-forbidden".into()))
    );
    ok(&iq(&mut a, "p5", "set", PS, &publish("tn", "")).await);
    let ev = event(&mut b).await;
    let items = ev
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
        .expect("items");
    assert_eq!(items.attr("node"), Some("tn"));
    assert_eq!(items.elements().count(), 0, "{}", ev.to_xml(ns::CLIENT));
    // Payload nodes, persistent or transient: an item with a payload.
    for (i, node) in ["pp", "tp"].into_iter().enumerate() {
        assert_eq!(
            err(&iq(
                &mut a,
                &format!("q{i}a"),
                "set",
                PS,
                &publish(node, "<item id='z'/>")
            )
            .await),
            ("bad-request".into(), Some("payload-required".into()))
        );
        assert_eq!(
            err(&iq(&mut a, &format!("q{i}b"), "set", PS, &publish(node, "")).await),
            ("bad-request".into(), Some("item-required".into()))
        );
        ok(&iq(
            &mut a,
            &format!("q{i}c"),
            "set",
            PS,
            &publish(node, "<item><e xmlns='urn:example'>v</e></item>"),
        )
        .await);
        assert!(event(&mut b).await.to_xml(ns::CLIENT).contains(">v<"));
    }
    t.stop().await;
}

/// The (jid, state) entries of the owner list an error carries back
/// (XEP-0060 §8.8.2.4, §8.9.2.4).
fn refused_entries(e: &Element, list: &str, attr: &str) -> Vec<(String, String)> {
    e.child("pubsub", ns::PUBSUB_OWNER)
        .and_then(|p| p.child(list, ns::PUBSUB_OWNER))
        .map(|l| {
            l.elements()
                .map(|x| {
                    (
                        x.attr("jid").unwrap_or_default().to_string(),
                        x.attr(attr).unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_refused_request_changes_nothing() {
    let mut t = TestServer::start_with(|cfg| cfg.pubsub.max_item_bytes = 1024).await;
    for u in ["alice", "bob", "carol"] {
        t.add_user(&format!("{u}@localhost"), PW);
    }
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    let mut c = online(&t, "carol").await;
    ok(&iq(&mut a, "c", "set", PS, &pubsub("<create node='club'/>")).await);
    ok(&iq(
        &mut b,
        "s",
        "set",
        PS,
        &pubsub("<subscribe node='club' jid='bob@localhost'/>"),
    )
    .await);
    // §8.8.2.4: one bad entry, and the good one before it is not applied
    // either; the error returns the entries unaltered.
    let r = iq(
        &mut a,
        "m1",
        "set",
        PS,
        &owner("<subscriptions node='club'><subscription jid='carol@localhost' subscription='subscribed'/><subscription jid='bob@localhost' subscription='bogus'/></subscriptions>"),
    )
    .await;
    assert_eq!(err(&r).0, "not-acceptable");
    assert_eq!(
        refused_entries(&r, "subscriptions", "subscription"),
        [
            ("carol@localhost".to_string(), "none".to_string()),
            ("bob@localhost".to_string(), "subscribed".to_string())
        ],
        "{}",
        r.to_xml(ns::CLIENT)
    );
    let list = ok(&iq(
        &mut a,
        "m2",
        "get",
        PS,
        &owner("<subscriptions node='club'/>"),
    )
    .await)
    .to_xml(ns::CLIENT);
    assert!(!list.contains("carol@localhost"), "{list}");
    assert!(list.contains("bob@localhost"), "{list}");
    // Carol heard of no subscription either.
    a.send("<message to='carol@localhost' type='chat'><body>after</body></message>")
        .await;
    no_event_before_message(&mut c, "alice@localhost").await;
    // §8.9.2.4 likewise, and the same entity twice is a bad request.
    let r = iq(
        &mut a,
        "m3",
        "set",
        PS,
        &owner("<affiliations node='club'><affiliation jid='bob@localhost' affiliation='publisher'/><affiliation jid='carol@localhost' affiliation='boss'/></affiliations>"),
    )
    .await;
    assert_eq!(err(&r).0, "not-acceptable");
    assert_eq!(
        refused_entries(&r, "affiliations", "affiliation"),
        [
            ("bob@localhost".to_string(), "none".to_string()),
            ("carol@localhost".to_string(), "none".to_string())
        ]
    );
    let r = iq(
        &mut a,
        "m4",
        "set",
        PS,
        &owner("<affiliations node='club'><affiliation jid='bob@localhost' affiliation='publisher'/><affiliation jid='bob@localhost' affiliation='member'/></affiliations>"),
    )
    .await;
    assert_eq!(err(&r).0, "bad-request");
    assert_eq!(
        err(&iq(
            &mut b,
            "m5",
            "set",
            PS,
            &pubsub("<publish node='club'><item><x xmlns='urn:x'/></item></publish>")
        )
        .await)
        .0,
        "forbidden"
    );
    // XEP-0163 auto-create: a publish refused after the node was made
    // leaves no node behind.
    let big = "x".repeat(2000);
    // A precondition the new node's configuration does not meet to the
    // letter (the max_items it parsed is '1', not ' 1 ').
    let odd = format!(
        "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field><field var='pubsub#max_items'><value> 1 </value></field></x></publish-options>",
        ns::PUBSUB_PUBLISH_OPTIONS
    );
    for (id, item, options, refusal) in [
        (
            "e1",
            format!("<item><big xmlns='urn:x'>{big}</big></item>"),
            String::new(),
            "payload-too-big",
        ),
        (
            "e2",
            "<item/>".to_string(),
            String::new(),
            "payload-required",
        ),
        (
            "e3",
            "<item><x xmlns='urn:x'/></item>".to_string(),
            odd,
            "precondition-not-met",
        ),
    ] {
        let r = iq(
            &mut a,
            id,
            "set",
            "",
            &pubsub(&format!(
                "<publish node='urn:x:new'>{item}</publish>{options}"
            )),
        )
        .await;
        assert_eq!(err(&r).1.as_deref(), Some(refusal), "{id}");
        assert_eq!(
            err(&iq(
                &mut a,
                &format!("{id}g"),
                "get",
                "",
                &pubsub("<items node='urn:x:new'/>")
            )
            .await)
            .0,
            "item-not-found",
            "after {id}"
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn pep_refuses_the_authorize_access_model_it_does_not_advertise() {
    // XEP-0163 §5 asks for presence, open, roster and whitelist; the
    // account does not advertise access-authorize, and XEP-0060 §8.1.2
    // names the refusal: not-acceptable, unsupported-access-model.
    let mut t = server(&["alice"]).await;
    let mut a = online(&t, "alice").await;
    let info = ok(&iq(
        &mut a,
        "i",
        "get",
        "alice@localhost",
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await)
    .to_xml(ns::CLIENT);
    assert!(info.contains("pubsub#access-whitelist"), "{info}");
    assert!(!info.contains("pubsub#access-authorize"), "{info}");
    let authorize = config_form(&[("pubsub#access_model", "authorize")]);
    let unsupported = (
        "not-acceptable".to_string(),
        Some("unsupported-access-model".to_string()),
    );
    assert_eq!(
        err(&iq(
            &mut a,
            "c1",
            "set",
            "",
            &pubsub(&format!(
                "<create node='urn:x:a'/><configure>{authorize}</configure>"
            ))
        )
        .await),
        unsupported
    );
    ok(&iq(&mut a, "c2", "set", "", &pubsub("<create node='urn:x:b'/>")).await);
    assert_eq!(
        err(&iq(
            &mut a,
            "c3",
            "set",
            "",
            &owner(&format!(
                "<configure node='urn:x:b'>{authorize}</configure>"
            ))
        )
        .await),
        unsupported
    );
    // The form offers what a PEP node can have, and the model stayed.
    let conf = ok(&iq(
        &mut a,
        "c4",
        "get",
        "",
        &owner("<configure node='urn:x:b'/>"),
    )
    .await)
    .clone();
    let field = conf
        .child("pubsub", ns::PUBSUB_OWNER)
        .and_then(|p| p.child("configure", ns::PUBSUB_OWNER))
        .and_then(|c| c.child("x", ns::DATA_FORMS))
        .and_then(|x| {
            x.elements()
                .find(|f| f.attr("var") == Some("pubsub#access_model"))
        })
        .expect("access model field");
    let xml = field.to_xml(ns::DATA_FORMS);
    assert_eq!(
        field
            .child("value", ns::DATA_FORMS)
            .map(Element::text)
            .as_deref(),
        Some("presence"),
        "{xml}"
    );
    assert!(!xml.contains("authorize"), "{xml}");
    // Auto-create with publish-options asking for it: the precondition
    // cannot be met, and no node is left.
    let opts = format!(
        "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field><field var='pubsub#access_model'><value>authorize</value></field></x></publish-options>",
        ns::PUBSUB_PUBLISH_OPTIONS
    );
    assert_eq!(
        err(&iq(
            &mut a,
            "p",
            "set",
            "",
            &pubsub(&format!(
                "<publish node='urn:x:c'><item><x xmlns='urn:x'/></item></publish>{opts}"
            ))
        )
        .await),
        ("conflict".into(), Some("precondition-not-met".into()))
    );
    assert_eq!(
        err(&iq(&mut a, "g", "get", "", &pubsub("<items node='urn:x:c'/>")).await).0,
        "item-not-found"
    );
    t.stop().await;
}

/// disco#items: the node names listed, and the RSM <set/> if any.
async fn disco_nodes(
    c: &mut Client,
    id: &str,
    to: &str,
    rsm: &str,
) -> (Vec<String>, Option<Element>) {
    let r = ok(&iq(
        c,
        id,
        "get",
        to,
        &format!("<query xmlns='{}'>{rsm}</query>", ns::DISCO_ITEMS),
    )
    .await)
    .clone();
    let q = r.child("query", ns::DISCO_ITEMS).expect("query");
    let nodes = q
        .elements()
        .filter(|e| e.name == "item")
        .filter_map(|e| e.attr("node").map(str::to_string))
        .collect();
    (nodes, q.child("set", ns::RSM).cloned())
}

fn rsm(max: usize, extra: &str) -> String {
    format!("<set xmlns='{}'><max>{max}</max>{extra}</set>", ns::RSM)
}

#[tokio::test]
async fn discovery_lists_the_nodes_the_requester_may_see_a_page_at_a_time() {
    let mut t = server(&["alice", "bob"]).await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;

    // XEP-0163 §6: an account's PEP nodes, to the account and, by access
    // model, to others.
    let opts = |access: &str| {
        format!(
            "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field><field var='pubsub#access_model'><value>{access}</value></field></x></publish-options>",
            ns::PUBSUB_PUBLISH_OPTIONS
        )
    };
    for (node, access) in [
        ("urn:x:open", "open"),
        ("urn:x:presence", "presence"),
        ("urn:x:white", "whitelist"),
    ] {
        ok(&iq(
            &mut a,
            node,
            "set",
            "",
            &pubsub(&format!(
                "<publish node='{node}'><item id='current'><x xmlns='urn:x'/></item></publish>{}",
                opts(access)
            )),
        )
        .await);
    }
    let (mine, _) = disco_nodes(&mut a, "d1", "alice@localhost", "").await;
    assert_eq!(mine, ["urn:x:open", "urn:x:presence", "urn:x:white"]);
    let (theirs, _) = disco_nodes(&mut b, "d2", "alice@localhost", "").await;
    assert_eq!(theirs, ["urn:x:open"]);
    subscribe(&mut b, &mut a, "bob@localhost", "alice@localhost").await;
    let (theirs, _) = disco_nodes(&mut b, "d3", "alice@localhost", "").await;
    assert_eq!(theirs, ["urn:x:open", "urn:x:presence"]);
    // A PEP node's identity and meta-data (XEP-0060 §5.3, §5.4).
    let info = ok(&iq(
        &mut b,
        "d4",
        "get",
        "alice@localhost",
        &format!("<query xmlns='{}' node='urn:x:presence'/>", ns::DISCO_INFO),
    )
    .await)
    .clone();
    let q = info.child("query", ns::DISCO_INFO).expect("query");
    let id = q.child("identity", ns::DISCO_INFO).expect("identity");
    assert_eq!(
        (id.attr("category"), id.attr("type")),
        (Some("pubsub"), Some("leaf"))
    );
    let xml = q.to_xml(ns::DISCO_INFO);
    assert!(
        xml.contains(ns::PUBSUB_META_DATA) && xml.contains("alice@localhost"),
        "{xml}"
    );
    assert_eq!(
        err(&iq(
            &mut b,
            "d5",
            "get",
            "alice@localhost",
            &format!("<query xmlns='{}' node='urn:x:white'/>", ns::DISCO_INFO),
        )
        .await)
        .0,
        "item-not-found"
    );

    // A service hides the nodes one may not retrieve from (whitelist,
    // authorize) but from their owners and members.
    for n in ["n1", "n2", "n3", "n4", "n5"] {
        ok(&iq(
            &mut a,
            n,
            "set",
            PS,
            &pubsub(&format!("<create node='{n}'/>")),
        )
        .await);
    }
    for (n, access) in [("secret", "whitelist"), ("vetted", "authorize")] {
        ok(&iq(
            &mut a,
            n,
            "set",
            PS,
            &pubsub(&format!(
                "<create node='{n}'/><configure>{}</configure>",
                config_form(&[("pubsub#access_model", access)])
            )),
        )
        .await);
    }
    let (all, _) = disco_nodes(&mut a, "s1", PS, "").await;
    assert_eq!(all, ["n1", "n2", "n3", "n4", "n5", "secret", "vetted"]);
    let (seen, _) = disco_nodes(&mut b, "s2", PS, "").await;
    assert_eq!(seen, ["n1", "n2", "n3", "n4", "n5"]);
    ok(&iq(&mut a, "s3", "set", PS, &owner("<affiliations node='secret'><affiliation jid='bob@localhost' affiliation='member'/></affiliations>")).await);
    let (seen, _) = disco_nodes(&mut b, "s4", PS, "").await;
    assert_eq!(seen, ["n1", "n2", "n3", "n4", "n5", "secret"]);
    ok(&iq(&mut a, "s5", "set", PS, &owner("<affiliations node='secret'><affiliation jid='bob@localhost' affiliation='none'/></affiliations>")).await);

    // XEP-0059 on the service's disco#items: the count is of all, pages
    // go forwards and backwards, and an unknown id is item-not-found.
    let count = |set: &Option<Element>| {
        set.as_ref()
            .and_then(|s| s.child("count", ns::RSM))
            .map(Element::text)
    };
    let (page, set) = disco_nodes(&mut b, "r1", PS, &rsm(2, "")).await;
    assert_eq!(page, ["n1", "n2"]);
    assert_eq!(count(&set).as_deref(), Some("5"));
    let (page, set) = disco_nodes(&mut b, "r2", PS, &rsm(2, "<after>n2</after>")).await;
    assert_eq!(page, ["n3", "n4"]);
    assert_eq!(count(&set).as_deref(), Some("5"));
    let (page, set) = disco_nodes(&mut b, "r3", PS, &rsm(2, "<before>n5</before>")).await;
    assert_eq!(page, ["n3", "n4"]);
    let first = set
        .as_ref()
        .and_then(|s| s.child("first", ns::RSM))
        .expect("first");
    assert_eq!(first.attr("index"), Some("2"));
    let (page, _) = disco_nodes(&mut b, "r4", PS, &rsm(2, "<before/>")).await;
    assert_eq!(page, ["n4", "n5"]);
    let (page, set) = disco_nodes(&mut b, "r5", PS, &rsm(0, "")).await;
    assert!(page.is_empty());
    assert_eq!(count(&set).as_deref(), Some("5"));
    assert_eq!(
        err(&iq(
            &mut b,
            "r6",
            "get",
            PS,
            &format!(
                "<query xmlns='{}'>{}</query>",
                ns::DISCO_ITEMS,
                rsm(2, "<after>nosuch</after>")
            ),
        )
        .await)
        .0,
        "item-not-found"
    );
    t.stop().await;
}

/// Send an IQ and return its answer, failing on any PubSub event that
/// arrives before it (`iq` would skip it).
async fn iq_without_event(c: &mut Client, id: &str, to: &str, payload: &str) -> Element {
    c.send(&format!(
        "<iq type='set' id='{id}' to='{to}'>{payload}</iq>"
    ))
    .await;
    loop {
        let e = c.next_element().await.expect("stanza");
        assert!(
            e.child("event", ns::PUBSUB_EVENT).is_none(),
            "unexpected event: {}",
            e.to_xml(ns::CLIENT)
        );
        if e.name == "iq" && e.attr("id") == Some(id) {
            return e;
        }
    }
}

#[tokio::test]
async fn expired_items_are_gone_everywhere_and_deliver_0_gets_no_last_item() {
    let mut t = server(&["alice", "bob"]).await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    for (node, fields) in [
        (
            "last",
            &[
                ("pubsub#item_expire", "1"),
                ("pubsub#send_last_published_item", "on_sub"),
            ][..],
        ),
        ("listed", &[("pubsub#item_expire", "1")][..]),
        (
            "counted",
            &[("pubsub#item_expire", "1"), ("pubsub#max_items", "2")][..],
        ),
        ("clock", &[("pubsub#item_expire", "1")][..]),
        ("kept", &[("pubsub#send_last_published_item", "on_sub")][..]),
    ] {
        ok(&iq(
            &mut a,
            &format!("c-{node}"),
            "set",
            PS,
            &pubsub(&format!(
                "<create node='{node}'/><configure>{}</configure>",
                config_form(fields)
            )),
        )
        .await);
    }
    // The clock's item is published last: once it has expired, so have
    // the others.
    for (node, item) in [
        ("last", "l1"),
        ("listed", "d1"),
        ("counted", "c1"),
        ("counted", "c2"),
        ("kept", "k1"),
        ("clock", "t1"),
    ] {
        ok(&iq(
            &mut a,
            &format!("p-{item}"),
            "set",
            PS,
            &pubsub(&format!(
                "<publish node='{node}'><item id='{item}'><e xmlns='urn:x'/></item></publish>"
            )),
        )
        .await);
    }
    until_expired(&mut a, "clock").await;
    // Not sent as the last item to a new subscriber (§6.1.7).
    ok(&iq_without_event(
        &mut b,
        "s-last",
        PS,
        &pubsub("<subscribe node='last' jid='bob@localhost'/>"),
    )
    .await);
    a.send("<message to='bob@localhost' type='chat'><body>after</body></message>")
        .await;
    no_event_before_message(&mut b, "alice@localhost").await;
    // Not listed as a disco item of the node (§5.5).
    let r = ok(&iq(
        &mut b,
        "d",
        "get",
        PS,
        &format!("<query xmlns='{}' node='listed'/>", ns::DISCO_ITEMS),
    )
    .await)
    .clone();
    assert_eq!(
        r.child("query", ns::DISCO_ITEMS)
            .map(|q| q.elements().count()),
        Some(0),
        "{}",
        r.to_xml(ns::CLIENT)
    );
    // Neither retrieved nor counted (§6.5, XEP-0059 <count/>), and its id
    // is not there to page from.
    let r = ok(&iq(
        &mut b,
        "r1",
        "get",
        PS,
        &pubsub(&format!(
            "<items node='counted'/><set xmlns='{}'><max>10</max></set>",
            ns::RSM
        )),
    )
    .await)
    .clone();
    assert!(retrieved_items(&r).is_empty(), "{}", r.to_xml(ns::CLIENT));
    assert_eq!(
        r.child("pubsub", ns::PUBSUB)
            .and_then(|p| p.child("set", ns::RSM))
            .and_then(|s| s.child("count", ns::RSM))
            .map(Element::text)
            .as_deref(),
        Some("0"),
        "{}",
        r.to_xml(ns::CLIENT)
    );
    let r = ok(&iq(
        &mut b,
        "r2",
        "get",
        PS,
        &pubsub("<items node='counted'><item id='c1'/></items>"),
    )
    .await)
    .clone();
    assert!(retrieved_items(&r).is_empty());
    // A subscription that asked for no notifications (pubsub#deliver=0,
    // §6.3) gets no last item either.
    let opts = format!(
        "<options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field><field var='pubsub#deliver'><value>0</value></field></x></options>",
        ns::PUBSUB_SUBSCRIBE_OPTIONS
    );
    ok(&iq_without_event(
        &mut b,
        "s-kept",
        PS,
        &pubsub(&format!(
            "<subscribe node='kept' jid='bob@localhost'/>{opts}"
        )),
    )
    .await);
    a.send("<message to='bob@localhost' type='chat'><body>after</body></message>")
        .await;
    no_event_before_message(&mut b, "alice@localhost").await;
    t.stop().await;
}

/// The feature an error's `<unsupported/>` names (XEP-0060 §7.1.3 etc.).
fn unsupported_feature(e: &Element) -> Option<String> {
    e.child("error", ns::CLIENT)
        .and_then(|er| er.child("unsupported", ns::PUBSUB_ERRORS))
        .and_then(|u| u.attr("feature").map(str::to_string))
}

#[tokio::test]
async fn refusals_reveal_nothing_and_say_why() {
    let mut t = server(&["alice", "bob"]).await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    ok(&iq(&mut a, "c", "set", PS, &pubsub("<create node='n'/>")).await);
    ok(&iq(
        &mut a,
        "p",
        "set",
        PS,
        &pubsub("<publish node='n'><item id='a1'><e xmlns='urn:x'/></item></publish>"),
    )
    .await);
    // §7.2.3.1: whether or not the item exists, one who may not retract
    // hears forbidden; the owner hears item-not-found.
    for (id, item) in [("x1", "a1"), ("x2", "nosuch")] {
        assert_eq!(
            err(&iq(
                &mut b,
                id,
                "set",
                PS,
                &pubsub(&format!("<retract node='n'><item id='{item}'/></retract>"))
            )
            .await)
            .0,
            "forbidden",
            "{item}"
        );
    }
    assert_eq!(
        err(&iq(
            &mut a,
            "x3",
            "set",
            PS,
            &pubsub("<retract node='n'><item id='nosuch'/></retract>")
        )
        .await)
        .0,
        "item-not-found"
    );
    // feature-not-implemented only ever with <unsupported feature=.../>;
    // what is no request at all is a bad request.
    ok(&iq(
        &mut a,
        "c2",
        "set",
        PS,
        &pubsub(&format!(
            "<create node='gone'/><configure>{}</configure>",
            config_form(&[("pubsub#persist_items", "0"), ("pubsub#subscribe", "0")])
        )),
    )
    .await);
    for (id, ty, payload, feature) in [
        ("u1", "set", pubsub("<frob node='n'/>"), None),
        ("u2", "get", pubsub("<publish node='n'/>"), None),
        ("u3", "set", owner("<frob node='n'/>"), None),
        ("u4", "set", owner("<default/>"), None),
        (
            "u5",
            "get",
            pubsub("<items node='gone'/>"),
            Some("persistent-items"),
        ),
        (
            "u6",
            "set",
            pubsub("<subscribe node='gone' jid='bob@localhost'/>"),
            Some("subscribe"),
        ),
    ] {
        let r = iq(&mut b, id, ty, PS, &payload).await;
        let (cond, _) = err(&r);
        match feature {
            None => assert_eq!(cond, "bad-request", "{}", r.to_xml(ns::CLIENT)),
            Some(f) => {
                assert_eq!(cond, "feature-not-implemented");
                assert_eq!(unsupported_feature(&r).as_deref(), Some(f));
            }
        }
    }
    // XEP-0004 §3.3: a boolean, list-single or text-single field takes one
    // value; two are a bad request, not the first one taken.
    let two = |var: &str, x: &str, y: &str, form_type: &str| {
        format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{form_type}</value></field><field var='{var}'><value>{x}</value><value>{y}</value></field></x>"
        )
    };
    for (i, (var, x, y)) in [
        ("pubsub#title", "One", "Two"),
        ("pubsub#access_model", "open", "whitelist"),
        ("pubsub#notify_retract", "1", "0"),
    ]
    .into_iter()
    .enumerate()
    {
        let form = two(var, x, y, ns::PUBSUB_NODE_CONFIG);
        assert_eq!(
            err(&iq(
                &mut a,
                &format!("v{i}"),
                "set",
                PS,
                &owner(&format!("<configure node='n'>{form}</configure>"))
            )
            .await)
            .0,
            "bad-request",
            "{var}"
        );
    }
    let conf =
        ok(&iq(&mut a, "v9", "get", PS, &owner("<configure node='n'/>")).await).to_xml(ns::CLIENT);
    assert!(!conf.contains("One") && !conf.contains("Two"), "{conf}");
    let opts = two(
        "pubsub#access_model",
        "open",
        "whitelist",
        ns::PUBSUB_PUBLISH_OPTIONS,
    );
    assert_eq!(
        err(&iq(
            &mut a,
            "v10",
            "set",
            PS,
            &pubsub(&format!(
                "<publish node='n'><item><e xmlns='urn:x'/></item></publish><publish-options>{opts}</publish-options>"
            ))
        )
        .await)
        .0,
        "bad-request"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_strangers_publish_options_do_not_reveal_the_nodes_configuration() {
    let mut t = server(&["alice", "carol"]).await;
    let mut a = online(&t, "alice").await;
    let mut c = online(&t, "carol").await;
    ok(&iq(
        &mut a,
        "c",
        "set",
        PS,
        &pubsub(&format!(
            "<create node='secret'/><configure>{}</configure>",
            config_form(&[
                ("pubsub#access_model", "whitelist"),
                ("pubsub#title", "Project Zebra")
            ])
        )),
    )
    .await);
    // XEP-0060 §7.1.3.1: one who may not publish hears forbidden, whether
    // its precondition guessed the node's title right or wrong.
    for (id, guess) in [("p1", "Project Zebra"), ("p2", "Project Lion")] {
        let opts = format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field><field var='pubsub#title'><value>{guess}</value></field></x>",
            ns::PUBSUB_PUBLISH_OPTIONS
        );
        let r = iq(
            &mut c,
            id,
            "set",
            PS,
            &pubsub(&format!(
                "<publish node='secret'><item><e xmlns='urn:x'/></item></publish><publish-options>{opts}</publish-options>"
            )),
        )
        .await;
        assert_eq!(err(&r), ("forbidden".to_string(), None), "{guess}");
    }
    t.stop().await;
}

#[tokio::test]
async fn an_expired_item_stays_gone_when_item_expire_is_lifted_or_raised() {
    let mut t = server(&["alice"]).await;
    let mut a = online(&t, "alice").await;
    // XEP-0060 §16.4.3: an item is purged once item_expire has passed.
    // Nothing reads the nodes while their items expire.
    for node in ["lifted", "raised"] {
        ok(&iq(
            &mut a,
            &format!("c-{node}"),
            "set",
            PS,
            &pubsub(&format!(
                "<create node='{node}'/><configure>{}</configure>",
                config_form(&[("pubsub#item_expire", "1")])
            )),
        )
        .await);
        ok(&iq(
            &mut a,
            &format!("p-{node}"),
            "set",
            PS,
            &pubsub(&format!(
                "<publish node='{node}'><item id='gone'><e xmlns='urn:x'/></item></publish>"
            )),
        )
        .await);
    }
    let published = std::time::Instant::now();
    // The clock: a node no one reads but this loop, published after them.
    ok(&iq(
        &mut a,
        "c-clock",
        "set",
        PS,
        &pubsub(&format!(
            "<create node='clock'/><configure>{}</configure>",
            config_form(&[("pubsub#item_expire", "1")])
        )),
    )
    .await);
    ok(&iq(
        &mut a,
        "p-clock",
        "set",
        PS,
        &pubsub("<publish node='clock'><item id='t'><e xmlns='urn:x'/></item></publish>"),
    )
    .await);
    until_expired(&mut a, "clock").await;
    assert!(published.elapsed() >= std::time::Duration::from_secs(1));
    for (node, expire) in [("lifted", "0"), ("raised", "3600")] {
        ok(&iq(
            &mut a,
            &format!("g-{node}"),
            "set",
            PS,
            &owner(&format!(
                "<configure node='{node}'>{}</configure>",
                config_form(&[("pubsub#item_expire", expire)])
            )),
        )
        .await);
        let r = ok(&iq(
            &mut a,
            &format!("r-{node}"),
            "get",
            PS,
            &pubsub(&format!("<items node='{node}'/>")),
        )
        .await)
        .clone();
        assert!(
            retrieved_items(&r).is_empty(),
            "{node}: {}",
            r.to_xml(ns::CLIENT)
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn disco_items_of_a_hidden_node_answer_as_for_a_missing_one() {
    let mut t = server(&["alice", "carol"]).await;
    let mut a = online(&t, "alice").await;
    let mut c = online(&t, "carol").await;
    ok(&iq(
        &mut a,
        "c",
        "set",
        PS,
        &pubsub(&format!(
            "<create node='wl'/><configure>{}</configure>",
            config_form(&[("pubsub#access_model", "whitelist")])
        )),
    )
    .await);
    // XEP-0163 §6.2, XEP-0060 §5.5: a node the requester may not see is
    // not there, for disco#items as for disco#info.
    let mut answers = Vec::new();
    for (id, node, what) in [
        ("i1", "wl", ns::DISCO_ITEMS),
        ("i2", "nosuch", ns::DISCO_ITEMS),
        ("i3", "wl", ns::DISCO_INFO),
    ] {
        let r = iq(
            &mut c,
            id,
            "get",
            PS,
            &format!("<query xmlns='{what}' node='{node}'/>"),
        )
        .await;
        answers.push(err(&r));
    }
    for a in &answers {
        assert_eq!(a, &("item-not-found".to_string(), None), "{answers:?}");
    }
    // The owner still lists the node's items.
    ok(&iq(
        &mut a,
        "i4",
        "get",
        PS,
        &format!("<query xmlns='{}' node='wl'/>", ns::DISCO_ITEMS),
    )
    .await);
    t.stop().await;
}

#[tokio::test]
async fn ids_that_cannot_be_stored_are_not_found_not_a_server_error() {
    let mut t = server(&["alice", "bob"]).await;
    let mut a = online(&t, "alice").await;
    let mut b = online(&t, "bob").await;
    ok(&iq(&mut a, "c", "set", PS, &pubsub("<create node='n'/>")).await);
    ok(&iq(
        &mut a,
        "p",
        "set",
        PS,
        &pubsub("<publish node='n'><item id='i1'><e xmlns='urn:x'/></item></publish>"),
    )
    .await);
    let long = "x".repeat(1024);
    // XEP-0059 §2.5, §2.7: a page after or before an id that is no
    // item of the node (an empty <after/>, an id longer than any stored
    // one) is item-not-found.
    for (i, set) in [
        "<max>2</max><after/>".to_string(),
        format!("<max>2</max><after>{long}</after>"),
        format!("<max>2</max><before>{long}</before>"),
    ]
    .iter()
    .enumerate()
    {
        let r = iq(
            &mut b,
            &format!("r{i}"),
            "get",
            PS,
            &pubsub(&format!(
                "<items node='n'/><set xmlns='{}'>{set}</set>",
                ns::RSM
            )),
        )
        .await;
        assert_eq!(err(&r).0, "item-not-found", "{set}");
    }
    // An empty <before/> is still the last page.
    let r = ok(&iq(
        &mut b,
        "r9",
        "get",
        PS,
        &pubsub(&format!(
            "<items node='n'/><set xmlns='{}'><max>2</max><before/></set>",
            ns::RSM
        )),
    )
    .await)
    .clone();
    assert_eq!(retrieved_items(&r).len(), 1, "{}", r.to_xml(ns::CLIENT));
    // By id (§6.5.8): not there, like any missing id.
    let r = ok(&iq(
        &mut b,
        "g",
        "get",
        PS,
        &pubsub(&format!("<items node='n'><item id='{long}'/></items>")),
    )
    .await)
    .clone();
    assert!(retrieved_items(&r).is_empty(), "{}", r.to_xml(ns::CLIENT));
    // Retract (§7.2.3): the owner hears item-not-found, others forbidden.
    let retract = pubsub(&format!("<retract node='n'><item id='{long}'/></retract>"));
    assert_eq!(
        err(&iq(&mut a, "x1", "set", PS, &retract).await).0,
        "item-not-found"
    );
    assert_eq!(
        err(&iq(&mut b, "x2", "set", PS, &retract).await).0,
        "forbidden"
    );
    // Publish: a bad request.
    assert_eq!(
        err(&iq(
            &mut a,
            "x3",
            "set",
            PS,
            &pubsub(&format!(
                "<publish node='n'><item id='{long}'><e xmlns='urn:x'/></item></publish>"
            ))
        )
        .await)
        .0,
        "bad-request"
    );
    t.stop().await;
}
