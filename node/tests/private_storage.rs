//! XEP-0049 private XML storage and XEP-0048 bookmarks kept in step with
//! XEP-0402 PEP bookmarks (XEP-0402 §5.3), over real sockets: what one
//! kind of client writes the other reads, and what only XEP-0402 can hold
//! (`<extensions/>`) survives a write by an older client.

mod common;

use common::{Client, TestServer};
use proto::{Element, ns};

const PW: &str = "correct horse";
const ROOM: &str = "room@conference.localhost";
const ROOM2: &str = "other@conference.localhost";

async fn iq(c: &mut Client, id: &str, ty: &str, to: Option<&str>, payload: &str) -> Element {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    c.send(&format!("<iq type='{ty}' id='{id}'{to}>{payload}</iq>"))
        .await;
    c.expect(|e| e.name == "iq" && e.attr("id") == Some(id))
        .await
        .expect("answer")
}

fn kind(e: &Element) -> &str {
    e.attr("type").unwrap_or("")
}

/// The XEP-0048 `<storage/>` as private storage returns it.
async fn legacy(c: &mut Client, id: &str) -> Element {
    let r = iq(
        c,
        id,
        "get",
        None,
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>",
    )
    .await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
    r.child("query", ns::PRIVATE)
        .and_then(|q| q.child("storage", ns::BOOKMARKS))
        .cloned()
        .expect("storage")
}

/// The XEP-0402 items (id, conference) of the account's bookmarks node.
async fn pep(c: &mut Client, id: &str) -> Vec<(String, Element)> {
    let r = iq(
        c,
        id,
        "get",
        None,
        &format!(
            "<pubsub xmlns='{}'><items node='{}'/></pubsub>",
            ns::PUBSUB,
            ns::BOOKMARKS2
        ),
    )
    .await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
    r.child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .map(|items| {
            items
                .elements()
                .filter_map(|i| {
                    let c = i.child("conference", ns::BOOKMARKS2)?;
                    Some((i.attr("id")?.to_string(), c.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn bookmarks_of_both_kinds_are_one_list_and_extensions_survive() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut a = Client::online(t.addr, "alice@localhost", PW, "new")
        .await
        .expect("alice");

    // The account says the two kinds are kept in step.
    let info = iq(
        &mut a,
        "info",
        "get",
        Some("alice@localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    let xml = info.to_xml(ns::CLIENT);
    assert!(xml.contains("urn:xmpp:bookmarks:1#compat"), "{xml}");
    assert!(xml.contains("'jabber:iq:private'"), "{xml}");

    // A XEP-0402 client adds a bookmark with an extension of its own
    // (with the publish-options of XEP-0402 §3).
    let publish = format!(
        "<pubsub xmlns='{}'><publish node='{}'><item id='{ROOM}'><conference xmlns='{}' name='Room' autojoin='true'><nick>al</nick><extensions><state xmlns='urn:example:client'>kept</state></extensions></conference></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#persist_items'><value>true</value></field><field var='pubsub#max_items'><value>max</value></field><field var='pubsub#send_last_published_item'><value>never</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options></pubsub>",
        ns::PUBSUB,
        ns::BOOKMARKS2,
        ns::BOOKMARKS2
    );
    let r = iq(&mut a, "add", "set", None, &publish).await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));

    // An older client (mcabber, poezio, profanity) sees it in private
    // storage...
    let mut old = Client::online(t.addr, "alice@localhost", PW, "old")
        .await
        .expect("alice old");
    let st = legacy(&mut old, "l1").await;
    let conf = st
        .elements()
        .find(|c| c.attr("jid") == Some(ROOM))
        .expect("the bookmark, the XEP-0048 way");
    assert_eq!(conf.attr("name"), Some("Room"));
    assert_eq!(conf.attr("autojoin"), Some("true"));
    assert_eq!(
        conf.child("nick", ns::BOOKMARKS).map(|n| n.text()),
        Some("al".to_string())
    );

    // ...and writes the whole list back: a new nick, a second room and a
    // URL bookmark.
    let store = format!(
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='{ROOM}' name='Room' autojoin='true'><nick>alice</nick></conference><conference jid='{ROOM2}' autojoin='false'/><url name='Docs' url='https://example.org/'/></storage></query>"
    );
    let r = iq(&mut old, "w1", "set", None, &store).await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
    let items = pep(&mut a, "p1").await;
    let room = &items.iter().find(|(id, _)| id == ROOM).expect("room").1;
    assert_eq!(
        room.child("nick", ns::BOOKMARKS2).map(|n| n.text()),
        Some("alice".to_string())
    );
    let ext = room
        .child("extensions", ns::BOOKMARKS2)
        .expect("the extensions the older client knew nothing of");
    assert!(ext.to_xml(ns::BOOKMARKS2).contains(">kept<"));
    assert!(items.iter().any(|(id, _)| id == ROOM2), "{items:?}");

    // Dropping a room from the older list retracts it; the URL stays in
    // private storage, and all of it is there after a new login.
    let store = format!(
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='{ROOM2}' autojoin='false'/><url name='Docs' url='https://example.org/'/></storage></query>"
    );
    let r = iq(&mut old, "w2", "set", None, &store).await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
    let ids: Vec<String> = pep(&mut a, "p2")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec![ROOM2.to_string()]);
    drop(old);
    let mut again = Client::online(t.addr, "alice@localhost", PW, "again")
        .await
        .expect("alice again");
    let st = legacy(&mut again, "l2").await;
    let jids: Vec<&str> = st.elements().filter_map(|c| c.attr("jid")).collect();
    assert_eq!(jids, vec![ROOM2]);
    assert!(
        st.elements()
            .any(|u| u.name == "url" && u.attr("name") == Some("Docs"))
    );

    // Private data is the account's own (XEP-0049 §3).
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    let r = iq(
        &mut b,
        "peek",
        "get",
        Some("alice@localhost"),
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>",
    )
    .await;
    assert_eq!(kind(&r), "error");
    assert!(
        r.to_xml(ns::CLIENT).contains("<forbidden"),
        "{}",
        r.to_xml(ns::CLIENT)
    );
    t.stop().await;
}

/// Publish a XEP-0402 bookmark, with `options` as its publish-options
/// fields (none: the PEP defaults).
async fn publish_bookmark(
    c: &mut Client,
    id: &str,
    room: &str,
    body: &str,
    options: &[(&str, &str)],
) {
    let mut opts = String::new();
    if !options.is_empty() {
        opts.push_str("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>");
        for (k, v) in options {
            opts.push_str(&format!("<field var='{k}'><value>{v}</value></field>"));
        }
        opts.push_str("</x></publish-options>");
    }
    let publish = format!(
        "<pubsub xmlns='{}'><publish node='{}'><item id='{room}'><conference xmlns='{}' {body}</item></publish>{opts}</pubsub>",
        ns::PUBSUB,
        ns::BOOKMARKS2,
        ns::BOOKMARKS2
    );
    let r = iq(c, id, "set", None, &publish).await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
}

const XEP_0402_OPTIONS: &[(&str, &str)] = &[
    ("pubsub#persist_items", "true"),
    ("pubsub#max_items", "max"),
    ("pubsub#send_last_published_item", "never"),
    ("pubsub#access_model", "whitelist"),
];

#[tokio::test]
async fn an_unchanged_bookmark_with_a_non_canonical_jid_keeps_its_item_and_extensions() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut a = Client::online(t.addr, "alice@localhost", PW, "new")
        .await
        .expect("alice");
    let upper = "Upper-x@Conference.Localhost";
    publish_bookmark(
        &mut a,
        "add",
        upper,
        "name='Upper' autojoin='true'><nick>al</nick><extensions><state xmlns='urn:example:client'>kept</state></extensions></conference>",
        XEP_0402_OPTIONS,
    )
    .await;
    // A XEP-0048 client writes back exactly what it read (XEP-0402 §5.3).
    let st = legacy(&mut a, "l1").await;
    let store = format!(
        "<query xmlns='jabber:iq:private'>{}</query>",
        st.to_xml(ns::PRIVATE)
    );
    let r = iq(&mut a, "w1", "set", None, &store).await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
    let items = pep(&mut a, "p1").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let (id, conf) = &items[0];
    assert_eq!(id, upper);
    assert!(
        conf.child("extensions", ns::BOOKMARKS2).is_some(),
        "{}",
        conf.to_xml(ns::BOOKMARKS2)
    );
    // Written with the JID normalised, it is still that bookmark.
    let store = "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='upper-x@conference.localhost' name='Renamed' autojoin='true'><nick>al</nick></conference></storage></query>";
    let r = iq(&mut a, "w2", "set", None, store).await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
    let items = pep(&mut a, "p2").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let (id, conf) = &items[0];
    assert_eq!(id, upper);
    assert_eq!(conf.attr("name"), Some("Renamed"));
    assert!(conf.child("extensions", ns::BOOKMARKS2).is_some());
    t.stop().await;
}

#[tokio::test]
async fn a_bookmarks_node_made_without_publish_options_is_private_and_keeps_every_bookmark() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut a = Client::online(t.addr, "alice@localhost", PW, "new")
        .await
        .expect("alice");
    // Published without the publish-options XEP-0402 §3 asks for: the node
    // is still whitelist (bookmarks carry room passwords) and keeps every
    // item, not the PEP default of presence access and one item.
    publish_bookmark(
        &mut a,
        "add",
        "first@conference.localhost",
        "autojoin='true'/>",
        &[],
    )
    .await;
    assert_eq!(
        config_of(&mut a, "c0").await,
        (Some("whitelist".to_string()), Some("max".to_string()))
    );
    // bob, who has no say on alice's whitelist, reads nothing of it.
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    let r = iq(
        &mut b,
        "peek",
        "get",
        Some("alice@localhost"),
        &format!(
            "<pubsub xmlns='{}'><items node='{}'/></pubsub>",
            ns::PUBSUB,
            ns::BOOKMARKS2
        ),
    )
    .await;
    let xml = r.to_xml(ns::CLIENT);
    assert_eq!(kind(&r), "error", "{xml}");
    assert!(!xml.contains("first@conference"), "{xml}");
    let confs: String = (0..3)
        .map(|i| format!("<conference jid='c{i}@conference.localhost' autojoin='false'/>"))
        .collect();
    let store = format!(
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>{confs}</storage></query>"
    );
    let r = iq(&mut a, "w", "set", None, &store).await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
    let st = legacy(&mut a, "l").await;
    let mut jids: Vec<&str> = st.elements().filter_map(|c| c.attr("jid")).collect();
    jids.sort_unstable();
    assert_eq!(
        jids,
        vec![
            "c0@conference.localhost",
            "c1@conference.localhost",
            "c2@conference.localhost"
        ]
    );
    assert_eq!(pep(&mut a, "p").await.len(), 3);
    assert_eq!(
        config_of(&mut a, "c1").await.0.as_deref(),
        Some("whitelist")
    );
    t.stop().await;
}

/// The bookmarks node's access model and max_items, from its owner's
/// configuration form.
async fn config_of(a: &mut Client, id: &str) -> (Option<String>, Option<String>) {
    let conf = iq(
        a,
        id,
        "get",
        None,
        &format!(
            "<pubsub xmlns='{}#owner'><configure node='{}'/></pubsub>",
            ns::PUBSUB,
            ns::BOOKMARKS2
        ),
    )
    .await;
    let xml = conf.to_xml(ns::CLIENT);
    assert_eq!(kind(&conf), "result", "{xml}");
    let value = |var: &str| {
        conf.child("pubsub", ns::PUBSUB_OWNER)
            .and_then(|p| p.child("configure", ns::PUBSUB_OWNER))
            .and_then(|c| c.child("x", ns::DATA_FORMS))
            .and_then(|x| x.elements().find(|f| f.attr("var") == Some(var)))
            .and_then(|f| f.child("value", ns::DATA_FORMS))
            .map(|v| v.text())
    };
    (value("pubsub#access_model"), value("pubsub#max_items"))
}

#[tokio::test]
async fn a_bookmark_for_a_room_jid_over_1023_bytes_is_not_acceptable() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut a = Client::online(t.addr, "alice@localhost", PW, "new")
        .await
        .expect("alice");
    let store = format!(
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='{ROOM}' autojoin='false'/></storage></query>"
    );
    let r = iq(&mut a, "w1", "set", None, &store).await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
    // A valid JID (a 1000-byte localpart), but longer than an item id
    // may be (XEP-0402 §3: the room's JID is the item's id).
    let long = format!("{}@{}.localhost", "l".repeat(1000), "c".repeat(60));
    let store = format!(
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='{ROOM}' autojoin='false'/><conference jid='{long}' autojoin='false'/></storage></query>"
    );
    let r = iq(&mut a, "w2", "set", None, &store).await;
    let xml = r.to_xml(ns::CLIENT);
    assert_eq!(kind(&r), "error", "{xml}");
    assert!(xml.contains("<not-acceptable"), "{xml}");
    // Refused whole: the list is as it was.
    let ids: Vec<String> = pep(&mut a, "p")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec![ROOM.to_string()]);
    t.stop().await;
}

#[tokio::test]
async fn a_private_set_stores_each_of_several_elements_of_one_namespace() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut a = Client::online(t.addr, "alice@localhost", PW, "r")
        .await
        .expect("alice");
    // XEP-0049 §2.3: an IQ set may contain several elements qualified by
    // the same namespace.
    let r = iq(
        &mut a,
        "s",
        "set",
        None,
        "<query xmlns='jabber:iq:private'><a xmlns='urn:x:p'>1</a><b xmlns='urn:x:p'>2</b></query>",
    )
    .await;
    assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
    for (id, name, text) in [("ga", "a", "1"), ("gb", "b", "2")] {
        let r = iq(
            &mut a,
            id,
            "get",
            None,
            &format!("<query xmlns='jabber:iq:private'><{name} xmlns='urn:x:p'/></query>"),
        )
        .await;
        assert_eq!(kind(&r), "result", "{}", r.to_xml(ns::CLIENT));
        let got = r.child("query", ns::PRIVATE).map(|q| {
            q.elements()
                .map(|e| (e.name.clone(), e.text()))
                .collect::<Vec<_>>()
        });
        assert_eq!(got, Some(vec![(name.to_string(), text.to_string())]));
    }
    t.stop().await;
}
