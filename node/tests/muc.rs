//! XEP-0045 Multi-User Chat over real sockets: the service in discovery,
//! creating a room (locked until its owner configures it), entering with
//! the occupants' presence, history and subject, groupchat messages with
//! the room's stanza id, private messages, nick changes, leaving by
//! dropping the connection, moderation (kick, ban), configuration that
//! survives a restart, passwords, destruction and self-ping.

mod common;

use common::{Client, TestServer};
use proto::{Element, ns};

const PW: &str = "correct horse";
const ROOM: &str = "tea@conference.localhost";
const MUC: &str = "http://jabber.org/protocol/muc";
const USER: &str = "http://jabber.org/protocol/muc#user";
const OWNER: &str = "http://jabber.org/protocol/muc#owner";
const ADMIN: &str = "http://jabber.org/protocol/muc#admin";

async fn online(t: &TestServer, user: &str) -> Client {
    Client::online(t.addr, &format!("{user}@localhost"), PW, "r")
        .await
        .expect("online")
}

async fn iq(c: &mut Client, id: &str, ty: &str, to: &str, payload: &str) -> Element {
    c.send(&format!(
        "<iq type='{ty}' id='{id}' to='{to}'>{payload}</iq>"
    ))
    .await;
    c.expect(|e| e.name == "iq" && e.attr("id") == Some(id))
        .await
        .expect("answer")
}

fn cond(e: &Element) -> String {
    assert_eq!(e.attr("type"), Some("error"), "{}", e.to_xml(ns::CLIENT));
    e.child("error", ns::CLIENT)
        .expect("error")
        .elements()
        .find(|c| c.ns == ns::STANZAS_ERR && c.name != "text")
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

fn codes(p: &Element) -> Vec<String> {
    p.child("x", USER)
        .map(|x| {
            x.elements()
                .filter(|c| c.name == "status")
                .filter_map(|c| c.attr("code").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn item(p: &Element) -> Element {
    p.child("x", USER)
        .and_then(|x| x.child("item", USER))
        .cloned()
        .expect("an item")
}

/// Enter `ROOM` as `nick`, with `extra` in the MUC element; the own
/// presence back (or the error).
async fn enter(c: &mut Client, nick: &str, extra: &str) -> Element {
    c.send(&format!(
        "<presence to='{ROOM}/{nick}'><x xmlns='{MUC}'>{extra}</x></presence>"
    ))
    .await;
    let me = format!("{ROOM}/{nick}");
    c.expect(|e| {
        e.name == "presence"
            && e.attr("from") == Some(me.as_str())
            && (e.attr("type") == Some("error") || codes(e).contains(&"110".to_string()))
    })
    .await
    .expect("own presence")
}

fn presence_from<'a>(nick: &'a str) -> impl Fn(&Element) -> bool + 'a {
    move |e: &Element| {
        e.name == "presence" && e.attr("from") == Some(format!("{ROOM}/{nick}").as_str())
    }
}

async fn instant(c: &mut Client) {
    let r = iq(
        c,
        "instant",
        "set",
        ROOM,
        &format!("<query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_from_creation_to_destruction() {
    let t = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        t.add_user(&format!("{u}@localhost"), PW);
    }
    let mut alice = online(&t, "alice").await;
    let mut bob = online(&t, "bob").await;
    let mut carol = online(&t, "carol").await;

    // §6.1, §6.2: the service is listed by the server and says what it is.
    let items = iq(
        &mut alice,
        "d1",
        "get",
        "localhost",
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    assert!(
        items
            .child("query", ns::DISCO_ITEMS)
            .expect("query")
            .elements()
            .any(|i| i.attr("jid") == Some("conference.localhost")),
        "{}",
        items.to_xml(ns::CLIENT)
    );
    let info = iq(
        &mut alice,
        "d2",
        "get",
        "conference.localhost",
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    let q = info.child("query", ns::DISCO_INFO).expect("query");
    let id = q.child("identity", ns::DISCO_INFO).expect("identity");
    assert_eq!(
        (id.attr("category"), id.attr("type")),
        (Some("conference"), Some("text"))
    );
    assert!(q.elements().any(|f| f.attr("var") == Some(MUC)));

    // §10.1.1: the first to enter creates the room, as its owner; it is
    // locked until configured (201), and others cannot enter yet.
    let me = enter(&mut alice, "Alice", "").await;
    let mut c = codes(&me);
    c.sort();
    assert_eq!(c, ["110", "201"], "{}", me.to_xml(ns::CLIENT));
    assert_eq!(item(&me).attr("affiliation"), Some("owner"));
    assert_eq!(item(&me).attr("role"), Some("moderator"));
    let refused = enter(&mut bob, "Bob", "").await;
    assert_eq!(cond(&refused), "item-not-found");
    instant(&mut alice).await;

    // §7.2: bob enters: he gets alice's presence, then his own (110), then
    // the (empty) subject; alice gets his presence.
    bob.send(&format!(
        "<presence to='{ROOM}/Bob'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    let first = bob
        .expect(|e| e.name == "presence")
        .await
        .expect("presence");
    assert_eq!(first.attr("from"), Some(format!("{ROOM}/Alice").as_str()));
    // Semi-anonymous: a participant does not see the real JID.
    assert_eq!(item(&first).attr("jid"), None);
    let own = bob.expect(presence_from("Bob")).await.expect("own");
    assert!(codes(&own).contains(&"110".to_string()));
    assert_eq!(item(&own).attr("role"), Some("participant"));
    let subject = bob.expect(|e| e.name == "message").await.expect("subject");
    assert!(subject.child("subject", ns::CLIENT).is_some());
    let seen = alice
        .expect(presence_from("Bob"))
        .await
        .expect("alice sees bob");
    // The moderator sees his real JID.
    assert_eq!(item(&seen).attr("jid"), Some("bob@localhost/r"));

    // §7.2.3: a nickname in use.
    let taken = enter(&mut carol, "Bob", "").await;
    assert_eq!(cond(&taken), "conflict");

    // §7.4: a groupchat message reaches everyone, the sender too, with
    // its id and the room's stanza id.
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='m1'><body>hello</body></message>"
    ))
    .await;
    for c in [&mut alice, &mut bob] {
        let m = c
            .expect(|e| e.name == "message" && e.attr("id") == Some("m1"))
            .await
            .expect("m1");
        assert_eq!(m.attr("from"), Some(format!("{ROOM}/Bob").as_str()));
        let sid = m.child("stanza-id", "urn:xmpp:sid:0").expect("stanza-id");
        assert_eq!(sid.attr("by"), Some(ROOM));
        assert!(m.child("occupant-id", "urn:xmpp:occupant-id:0").is_some());
    }
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='m2'><body>second</body></message>"
    ))
    .await;
    alice
        .expect(|e| e.attr("id") == Some("m2"))
        .await
        .expect("m2");

    // §7.2.14: history on entering, limited to one message, delayed,
    // before the subject.
    let own = enter(&mut carol, "Carol", "<history maxstanzas='1'/>").await;
    assert!(codes(&own).contains(&"110".to_string()));
    let h = carol
        .expect(|e| e.name == "message")
        .await
        .expect("history");
    assert_eq!(h.attr("id"), Some("m2"), "{}", h.to_xml(ns::CLIENT));
    assert!(h.child("delay", "urn:xmpp:delay").is_some());
    let s = carol
        .expect(|e| e.name == "message")
        .await
        .expect("subject");
    assert!(s.child("subject", ns::CLIENT).is_some());

    // §8.1: the owner sets the subject; everyone gets it.
    alice
        .send(&format!(
            "<message to='{ROOM}' type='groupchat' id='s1'><subject>Tea time</subject></message>"
        ))
        .await;
    let s = carol
        .expect(|e| e.attr("id") == Some("s1"))
        .await
        .expect("subject");
    assert_eq!(
        s.child("subject", ns::CLIENT).map(Element::text).as_deref(),
        Some("Tea time")
    );

    // §7.5: a private message between occupants.
    carol
        .send(&format!(
            "<message to='{ROOM}/Alice' type='chat' id='pm'><body>psst</body></message>"
        ))
        .await;
    let pm = alice
        .expect(|e| e.attr("id") == Some("pm"))
        .await
        .expect("pm");
    assert_eq!(pm.attr("from"), Some(format!("{ROOM}/Carol").as_str()));
    // Not an occupant: not acceptable. An unknown nick: item-not-found.
    carol
        .send(&format!(
            "<message to='{ROOM}/Nobody' type='chat' id='pm2'><body>?</body></message>"
        ))
        .await;
    let e = carol
        .expect(|e| e.attr("id") == Some("pm2"))
        .await
        .expect("error");
    assert_eq!(cond(&e), "item-not-found");

    // XEP-0410: a self-ping is answered by the room.
    let pong = iq(
        &mut carol,
        "sp",
        "get",
        &format!("{ROOM}/Carol"),
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_eq!(pong.attr("type"), Some("result"));

    // §7.6: a nick change: 303 with the new nick, then the new presence.
    bob.send(&format!("<presence to='{ROOM}/Robert'/>")).await;
    let gone = alice
        .expect(|e| presence_from("Bob")(e) && e.attr("type") == Some("unavailable"))
        .await
        .expect("303");
    assert!(codes(&gone).contains(&"303".to_string()));
    assert_eq!(item(&gone).attr("nick"), Some("Robert"));
    alice
        .expect(presence_from("Robert"))
        .await
        .expect("new nick");

    // §8.2: the moderator kicks Robert: 307, to him and the others.
    let r = iq(
        &mut alice,
        "kick",
        "set",
        ROOM,
        &format!("<query xmlns='{ADMIN}'><item nick='Robert' role='none'><reason>out</reason></item></query>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let kicked = bob
        .expect(|e| presence_from("Robert")(e) && e.attr("type") == Some("unavailable"))
        .await
        .expect("kicked");
    assert!(codes(&kicked).contains(&"307".to_string()));
    assert!(codes(&kicked).contains(&"110".to_string()));
    let k = carol
        .expect(|e| presence_from("Robert")(e) && e.attr("type") == Some("unavailable"))
        .await
        .expect("carol sees it");
    assert!(codes(&k).contains(&"307".to_string()));

    // RFC 6121 §4.6: carol's connection drops; the room hears she left.
    drop(carol);
    let left = alice
        .expect(|e| presence_from("Carol")(e) && e.attr("type") == Some("unavailable"))
        .await
        .expect("carol leaves");
    assert_eq!(item(&left).attr("role"), Some("none"));

    // §9.1: a ban: bob may not come back.
    let r = iq(
        &mut alice,
        "ban",
        "set",
        ROOM,
        &format!(
            "<query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='outcast'/></query>"
        ),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    let refused = enter(&mut bob, "Bob", "").await;
    assert_eq!(cond(&refused), "forbidden");
    let list = iq(
        &mut alice,
        "bans",
        "get",
        ROOM,
        &format!("<query xmlns='{ADMIN}'><item affiliation='outcast'/></query>"),
    )
    .await;
    assert!(
        list.child("query", ADMIN)
            .expect("query")
            .elements()
            .any(|i| i.attr("jid") == Some("bob@localhost"))
    );

    // §10.9: destroyed; the owner hears it with the alternate venue
    // (before the IQ's result).
    alice
        .send(&format!(
            "<iq type='set' id='destroy' to='{ROOM}'><query xmlns='{OWNER}'><destroy jid='coffee@conference.localhost'><reason>moved</reason></destroy></query></iq>"
        ))
        .await;
    let p = alice
        .expect(|e| presence_from("Alice")(e) && e.attr("type") == Some("unavailable"))
        .await
        .expect("destroyed");
    let d = p
        .child("x", USER)
        .and_then(|x| x.child("destroy", USER))
        .expect("destroy");
    assert_eq!(d.attr("jid"), Some("coffee@conference.localhost"));
    let r = alice
        .expect(|e| e.attr("id") == Some("destroy"))
        .await
        .expect("result");
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let info = iq(
        &mut alice,
        "gone",
        "get",
        ROOM,
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    assert_eq!(cond(&info), "item-not-found");
}

fn config(fields: &[(&str, &str)]) -> String {
    let mut f = format!(
        "<query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
    );
    for (k, v) in fields {
        f.push_str(&format!("<field var='{k}'><value>{v}</value></field>"));
    }
    f.push_str("</x></query>");
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_room_keeps_its_configuration_across_a_restart() {
    let mut t = TestServer::start().await;
    for u in ["alice", "bob"] {
        t.add_user(&format!("{u}@localhost"), PW);
    }
    let mut alice = online(&t, "alice").await;
    enter(&mut alice, "Alice", "").await;
    // Bad values and unknown fields are refused, and change nothing.
    let bad = iq(
        &mut alice,
        "c0",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_maxusers", "lots")]),
    )
    .await;
    assert_eq!(cond(&bad), "not-acceptable");
    let bad = iq(
        &mut alice,
        "c1",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_colour", "red")]),
    )
    .await;
    assert_eq!(cond(&bad), "not-acceptable");
    let r = iq(
        &mut alice,
        "c2",
        "set",
        ROOM,
        &config(&[
            ("muc#roomconfig_roomname", "Tea Room"),
            ("muc#roomconfig_persistentroom", "1"),
            ("muc#roomconfig_passwordprotectedroom", "1"),
            ("muc#roomconfig_roomsecret", "s3cret"),
        ]),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    // The form shows what was set.
    let form = iq(
        &mut alice,
        "c3",
        "get",
        ROOM,
        &format!("<query xmlns='{OWNER}'/>"),
    )
    .await;
    let xml = form.to_xml(ns::CLIENT);
    assert!(xml.contains("Tea Room"), "{xml}");
    drop(alice);
    t.restart().await;

    let mut bob = online(&t, "bob").await;
    let info = iq(
        &mut bob,
        "i",
        "get",
        ROOM,
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    let q = info.child("query", ns::DISCO_INFO).expect("room info");
    let features: Vec<&str> = q.elements().filter_map(|f| f.attr("var")).collect();
    for f in [
        "muc_persistent",
        "muc_passwordprotected",
        "muc_public",
        "muc_semianonymous",
    ] {
        assert!(features.contains(&f), "{f} in {features:?}");
    }
    assert_eq!(
        q.child("identity", ns::DISCO_INFO)
            .and_then(|i| i.attr("name")),
        Some("Tea Room")
    );
    // The service lists the public room.
    let items = iq(
        &mut bob,
        "l",
        "get",
        "conference.localhost",
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    assert!(items.to_xml(ns::CLIENT).contains(ROOM));
    // §7.2.6: the password is asked for.
    let refused = enter(&mut bob, "Bob", "").await;
    assert_eq!(cond(&refused), "not-authorized");
    let wrong = enter(&mut bob, "Bob", "<password>nope</password>").await;
    assert_eq!(cond(&wrong), "not-authorized");
    let ok = enter(&mut bob, "Bob", "<password>s3cret</password>").await;
    assert!(codes(&ok).contains(&"110".to_string()));
    // Nicks beyond the limit are refused.
    let long = "n".repeat(200);
    let mut alice = online(&t, "alice").await;
    let refused = enter(&mut alice, &long, "<password>s3cret</password>").await;
    assert_eq!(cond(&refused), "jid-malformed");
    // RFC 8266: a nick must be in its Nickname form (no outer spaces, no
    // fullwidth letters), and two nicks that differ only in case are the
    // same.
    for bad in [" Alice", "\u{FF21}lice"] {
        let refused = enter(&mut alice, bad, "<password>s3cret</password>").await;
        assert_eq!(cond(&refused), "jid-malformed", "{bad:?}");
    }
    let taken = enter(&mut alice, "bOB", "<password>s3cret</password>").await;
    assert_eq!(cond(&taken), "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupants_query_each_other_and_visitors_ask_for_voice() {
    let t = TestServer::start().await;
    for u in ["alice", "bob"] {
        t.add_user(&format!("{u}@localhost"), PW);
    }
    let mut alice = online(&t, "alice").await;
    let mut bob = online(&t, "bob").await;
    enter(&mut alice, "Alice", "").await;
    let r = iq(
        &mut alice,
        "m",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_moderatedroom", "1")]),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));

    // §7.13: in a moderated room bob enters as a visitor, may not speak,
    // and asks for voice; the moderator gets the request as a form.
    let me = enter(&mut bob, "Bob", "").await;
    assert_eq!(item(&me).attr("role"), Some("visitor"));
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='hush'><body>hi</body></message>"
    ))
    .await;
    let e = bob
        .expect(|e| e.attr("id") == Some("hush"))
        .await
        .expect("refused");
    assert_eq!(cond(&e), "forbidden");
    bob.send(&format!(
        "<message to='{ROOM}' id='ask'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field><field var='muc#role'><value>participant</value></field></x></message>"
    ))
    .await;
    let req = alice
        .expect(|e| e.name == "message" && e.child("x", "jabber:x:data").is_some())
        .await
        .expect("the request");
    let xml = req.to_xml(ns::CLIENT);
    assert!(
        xml.contains("muc#request_allow") && xml.contains("<value>Bob</value>"),
        "{xml}"
    );
    // §8.6: the moderator approves; bob has voice and speaks.
    alice.send(&format!(
        "<message to='{ROOM}' id='yes'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field><field var='muc#role'><value>participant</value></field><field var='muc#roomnick'><value>Bob</value></field><field var='muc#request_allow'><value>true</value></field></x></message>"
    ))
    .await;
    let p = bob
        .expect(|e| presence_from("Bob")(e) && item(e).attr("role") == Some("participant"))
        .await
        .expect("voice");
    assert!(codes(&p).contains(&"110".to_string()) || p.attr("type").is_none());
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='now'><body>hi</body></message>"
    ))
    .await;
    alice
        .expect(|e| e.attr("id") == Some("now"))
        .await
        .expect("bob speaks");

    // An IQ to an occupant goes to its client, from the asker's occupant
    // JID; the answer comes back the same way.
    alice
        .send(&format!(
            "<iq type='get' id='ver' to='{ROOM}/Bob'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await;
    let q = bob
        .expect(|e| e.name == "iq" && e.attr("type") == Some("get"))
        .await
        .expect("forwarded");
    assert_eq!(q.attr("from"), Some(format!("{ROOM}/Alice").as_str()));
    // The room gives the request an id of its own (two askers may use the
    // same one); bob answers that, alice gets her own back.
    let room_id = q.attr("id").expect("an id").to_string();
    bob.send(&format!(
        "<iq type='result' id='{room_id}' to='{ROOM}/Alice'><query xmlns='jabber:iq:version'><name>bobclient</name><version>1</version></query></iq>"
    ))
    .await;
    let a = alice
        .expect(|e| e.name == "iq" && e.attr("id") == Some("ver"))
        .await
        .expect("answer");
    assert_eq!(a.attr("type"), Some("result"));
    assert_eq!(a.attr("from"), Some(format!("{ROOM}/Bob").as_str()));
    assert!(a.to_xml(ns::CLIENT).contains("bobclient"));
    // A vCard request is for the occupant's account, which the server
    // answers; it comes back from the occupant JID.
    let set = iq(
        &mut alice,
        "vs",
        "set",
        "alice@localhost",
        "<vCard xmlns='vcard-temp'><FN>Alice A.</FN></vCard>",
    )
    .await;
    assert_eq!(set.attr("type"), Some("result"));
    let v = iq(
        &mut bob,
        "vc",
        "get",
        &format!("{ROOM}/Alice"),
        "<vCard xmlns='vcard-temp'/>",
    )
    .await;
    assert_eq!(v.attr("type"), Some("result"), "{}", v.to_xml(ns::CLIENT));
    assert_eq!(v.attr("from"), Some(format!("{ROOM}/Alice").as_str()));
    assert!(v.to_xml(ns::CLIENT).contains("Alice A."));
    // An IQ to a nick nobody has.
    let e = iq(
        &mut bob,
        "nobody",
        "get",
        &format!("{ROOM}/Nobody"),
        "<query xmlns='jabber:iq:version'/>",
    )
    .await;
    assert_eq!(cond(&e), "item-not-found");
    // Nicks compare without case (RFC 8266): room/ALICE is Alice.
    bob.send(&format!(
        "<iq type='get' id='ver2' to='{ROOM}/ALICE'><query xmlns='jabber:iq:version'/></iq>"
    ))
    .await;
    alice
        .expect(|e| e.name == "iq" && e.attr("from") == Some(format!("{ROOM}/Bob").as_str()))
        .await
        .expect("forwarded to Alice");
    // An answer nobody asked for is not passed on: alice's made-up result
    // to bob never reaches him, the ping after it does.
    alice
        .send(&format!(
            "<iq type='result' id='made-up' to='{ROOM}/Bob'><query xmlns='jabber:iq:version'><name>spoof</name></query></iq>"
        ))
        .await;
    alice
        .send(&format!(
            "<iq type='get' id='p-after' to='{ROOM}/Bob'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    let first = bob.expect(|e| e.name == "iq").await.expect("the ping");
    assert!(
        first.child("ping", "urn:xmpp:ping").is_some(),
        "the made-up result was passed on: {}",
        first.to_xml(ns::CLIENT)
    );

    // With private messages off, IQs between occupants are refused too,
    // but for vCards (avatars).
    let r = iq(
        &mut alice,
        "nopm",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_allowpm", "none")]),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let e = iq(
        &mut bob,
        "ver3",
        "get",
        &format!("{ROOM}/Alice"),
        "<query xmlns='jabber:iq:version'/>",
    )
    .await;
    assert_eq!(cond(&e), "forbidden");
    let v = iq(
        &mut bob,
        "vc2",
        "get",
        &format!("{ROOM}/alice"),
        "<vCard xmlns='vcard-temp'/>",
    )
    .await;
    assert_eq!(v.attr("type"), Some("result"), "{}", v.to_xml(ns::CLIENT));
}

/// §8.2 and §9.1: who kicked or banned an occupant and why reach it and
/// the others; private messages reach a nick written in another case;
/// occupant ids (XEP-0421) are the same for an account in one room each
/// time, and differ between rooms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_and_bans_say_who_and_why() {
    let t = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        t.add_user(&format!("{u}@localhost"), PW);
    }
    let mut alice = online(&t, "alice").await;
    let mut bob = online(&t, "bob").await;
    let mut carol = online(&t, "carol").await;
    enter(&mut alice, "Alice", "").await;
    instant(&mut alice).await;
    let occupant_id = |p: &Element| {
        p.child("occupant-id", "urn:xmpp:occupant-id:0")
            .and_then(|o| o.attr("id"))
            .map(str::to_string)
            .expect("occupant id")
    };
    let first = occupant_id(&enter(&mut bob, "Bob", "").await);
    enter(&mut carol, "carol", "").await;

    // A private message to room/CAROL reaches carol.
    bob.send(&format!(
        "<message to='{ROOM}/CAROL' type='chat' id='pm'><body>psst</body></message>"
    ))
    .await;
    let m = carol
        .expect(|e| e.name == "message" && e.attr("id") == Some("pm"))
        .await
        .expect("the private message");
    assert_eq!(m.attr("type"), Some("chat"), "{}", m.to_xml(ns::CLIENT));

    let kick = iq(
        &mut alice,
        "k",
        "set",
        ROOM,
        &format!("<query xmlns='{ADMIN}'><item nick='bob' role='none'><reason>Too loud &amp; proud</reason></item></query>"),
    )
    .await;
    assert_eq!(
        kick.attr("type"),
        Some("result"),
        "{}",
        kick.to_xml(ns::CLIENT)
    );
    for c in [&mut bob, &mut carol] {
        let p = c
            .expect(|e| presence_from("Bob")(e) && e.attr("type") == Some("unavailable"))
            .await
            .expect("kicked");
        assert!(codes(&p).contains(&"307".to_string()));
        let it = item(&p);
        assert_eq!(
            it.child("actor", USER).and_then(|a| a.attr("nick")),
            Some("Alice")
        );
        assert_eq!(
            it.child("reason", USER).map(Element::text).as_deref(),
            Some("Too loud & proud")
        );
    }
    // Back in, bob has the same occupant id; in another room another.
    let again = occupant_id(&enter(&mut bob, "Bob", "").await);
    assert_eq!(first, again);
    assert!(!first.is_empty());
    bob.send(&format!(
        "<presence to='other@conference.localhost/Bob'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    let other = bob
        .expect(|e| {
            presence_from("Bob")(e) || e.attr("from") == Some("other@conference.localhost/Bob")
        })
        .await
        .expect("other room");
    assert_eq!(other.attr("from"), Some("other@conference.localhost/Bob"));
    assert_ne!(occupant_id(&other), first);

    let ban = iq(
        &mut alice,
        "b",
        "set",
        ROOM,
        &format!("<query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='outcast'><reason>Enough</reason></item></query>"),
    )
    .await;
    assert_eq!(
        ban.attr("type"),
        Some("result"),
        "{}",
        ban.to_xml(ns::CLIENT)
    );
    let p = bob
        .expect(|e| presence_from("Bob")(e) && e.attr("type") == Some("unavailable"))
        .await
        .expect("banned");
    assert!(codes(&p).contains(&"301".to_string()));
    let it = item(&p);
    assert_eq!(it.attr("affiliation"), Some("outcast"));
    assert_eq!(
        it.child("actor", USER).and_then(|a| a.attr("nick")),
        Some("Alice")
    );
    assert_eq!(
        it.child("reason", USER).map(Element::text).as_deref(),
        Some("Enough")
    );
}

/// Review findings: lists set through the form change roles as the admin
/// API does; a room made members-only sends non-members out (322); a
/// refused form leaves a new room locked; stanza ids differ for different
/// messages with one id; declines only from invitees; no MUC extension,
/// no lock; a subject with a body needs the right to change it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_lists_members_only_declines_and_stanza_ids() {
    let t = TestServer::start().await;
    for u in ["alice", "bob", "carol", "dave"] {
        t.add_user(&format!("{u}@localhost"), PW);
    }
    let mut alice = online(&t, "alice").await;
    let mut bob = online(&t, "bob").await;
    let mut carol = online(&t, "carol").await;
    let mut dave = online(&t, "dave").await;
    enter(&mut alice, "Alice", "").await;
    // A refused submission leaves the new room locked.
    let bad = iq(
        &mut alice,
        "b1",
        "set",
        ROOM,
        &format!("<query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_roomowners'/></x></query>"),
    )
    .await;
    assert_eq!(cond(&bad), "conflict");
    assert_eq!(cond(&enter(&mut bob, "Bob", "").await), "item-not-found");
    instant(&mut alice).await;
    enter(&mut bob, "Bob", "").await;
    enter(&mut carol, "Carol", "").await;

    // Bob made admin through the form: everyone sees his new affiliation
    // and role.
    let r = iq(
        &mut alice,
        "adm",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_roomadmins", "bob@localhost")]),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let p = carol
        .expect(|e| presence_from("Bob")(e) && item(e).attr("affiliation") == Some("admin"))
        .await
        .expect("bob is admin");
    assert_eq!(item(&p).attr("role"), Some("moderator"));
    // Alice hands the room to bob and is owner no more: no moderator.
    let r = iq(
        &mut alice,
        "own",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_roomowners", "bob@localhost")]),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let p = carol
        .expect(|e| presence_from("Alice")(e) && item(e).attr("affiliation") == Some("none"))
        .await
        .expect("alice is no owner");
    assert_eq!(item(&p).attr("role"), Some("participant"));
    let kick = iq(
        &mut alice,
        "k",
        "set",
        ROOM,
        &format!("<query xmlns='{ADMIN}'><item nick='Carol' role='none'/></query>"),
    )
    .await;
    assert_eq!(cond(&kick), "forbidden");

    // Mediated invitations: dave, not invited, may not decline; carol
    // invites him and his decline reaches her.
    dave.send(&format!(
        "<message to='{ROOM}'><x xmlns='{USER}'><decline to='carol@localhost'><reason>spam</reason></decline></x></message>"
    ))
    .await;
    let e = dave
        .expect(|e| e.name == "message" && e.attr("type") == Some("error"))
        .await
        .expect("refused");
    assert_eq!(cond(&e), "not-acceptable");
    // `muc#roomconfig_allowinvites` is off by default: an occupant below
    // admin may not invite, in an open room too, until the owner allows it.
    let invite = format!(
        "<message to='{ROOM}'><x xmlns='{USER}'><invite to='dave@localhost'><reason>tea?</reason></invite><invite to='dave@localhost/phone'><reason>tea?</reason></invite></x></message>"
    );
    carol.send(&invite).await;
    let e = carol
        .expect(|e| e.name == "message" && e.attr("type") == Some("error"))
        .await
        .expect("refused");
    assert_eq!(cond(&e), "forbidden");
    let r = iq(
        &mut bob,
        "inv",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_allowinvites", "1")]),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    // Named twice, dave gets one invitation.
    carol.send(&invite).await;
    let inv = dave
        .expect(|e| e.name == "message" && e.child("x", USER).is_some())
        .await
        .expect("invitation");
    assert!(inv.to_xml(ns::CLIENT).contains("tea?"));
    dave.send("<iq type='get' id='after-invite'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let next = dave
        .expect(|e| {
            e.attr("id") == Some("after-invite")
                || (e.name == "message" && e.child("x", USER).is_some())
        })
        .await
        .expect("the ping's answer");
    assert_eq!(next.attr("id"), Some("after-invite"), "one invitation only");
    dave.send(&format!(
        "<message to='{ROOM}'><x xmlns='{USER}'><decline to='carol@localhost'><reason>busy</reason></decline></x></message>"
    ))
    .await;
    let d = carol
        .expect(|e| e.name == "message" && e.to_xml(ns::CLIENT).contains("busy"))
        .await
        .expect("decline");
    assert_eq!(d.attr("from"), Some(ROOM));
    let many: String = (0..21)
        .map(|i| format!("<invite to='x{i}@localhost'/>"))
        .collect();
    carol
        .send(&format!(
            "<message to='{ROOM}' id='many'><x xmlns='{USER}'>{many}</x></message>"
        ))
        .await;
    let e = carol
        .expect(|e| e.attr("id") == Some("many"))
        .await
        .expect("refused");
    assert_eq!(cond(&e), "not-acceptable");

    // Two different messages with the same id get two stanza ids.
    let mut sids = Vec::new();
    for body in ["first", "second"] {
        carol
            .send(&format!(
                "<message to='{ROOM}' type='groupchat' id='1'><body>{body}</body></message>"
            ))
            .await;
        let m = carol
            .expect(|e| e.name == "message" && e.to_xml(ns::CLIENT).contains(body))
            .await
            .expect("reflected");
        sids.push(
            m.child("stanza-id", "urn:xmpp:sid:0")
                .and_then(|s| s.attr("id"))
                .map(str::to_string),
        );
    }
    assert_ne!(sids[0], sids[1]);
    // A participant may not slip a subject in with a body.
    carol
        .send(&format!("<message to='{ROOM}' type='groupchat' id='sb'><subject>mine</subject><body>x</body></message>"))
        .await;
    let e = carol
        .expect(|e| e.attr("id") == Some("sb"))
        .await
        .expect("refused");
    assert_eq!(cond(&e), "forbidden");

    // Made members-only: carol and alice are not members and leave (322);
    // bob, the owner, stays.
    let r = iq(
        &mut bob,
        "mo",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_membersonly", "1")]),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let out = carol
        .expect(|e| presence_from("Carol")(e) && e.attr("type") == Some("unavailable"))
        .await
        .expect("carol leaves");
    assert!(codes(&out).contains(&"322".to_string()));

    // Entering without the MUC extension makes an instant room.
    dave.send("<presence to='plain@conference.localhost/Dave'/>")
        .await;
    dave.expect(|e| {
        e.name == "presence" && e.attr("from") == Some("plain@conference.localhost/Dave")
    })
    .await
    .expect("in");
    let mut eve = carol;
    eve.send("<presence to='plain@conference.localhost/Carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await;
    let p = eve
        .expect(|e| {
            e.name == "presence" && e.attr("from") == Some("plain@conference.localhost/Carol")
        })
        .await
        .expect("carol enters the instant room");
    assert_ne!(p.attr("type"), Some("error"), "{}", p.to_xml(ns::CLIENT));
}

/// §6.3 with XEP-0059: the public rooms in pages, with a true count;
/// hidden rooms are not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_list_comes_in_pages() {
    let t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut alice = online(&t, "alice").await;
    for i in 0..6 {
        let room = format!("r{i}@conference.localhost");
        alice
            .send(&format!(
                "<presence to='{room}/A'><x xmlns='{MUC}'/></presence>"
            ))
            .await;
        alice
            .expect(|e| {
                e.name == "presence" && e.attr("from") == Some(format!("{room}/A").as_str())
            })
            .await
            .expect("created");
        let public = if i == 5 { "0" } else { "1" };
        let r = iq(
            &mut alice,
            &format!("c{i}"),
            "set",
            &room,
            &config(&[
                ("muc#roomconfig_persistentroom", "1"),
                ("muc#roomconfig_publicroom", public),
            ]),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    }
    // A temporary public room is listed too, wherever its shard is.
    alice
        .send(&format!(
            "<presence to='s0@conference.localhost/A'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    alice
        .expect(|e| e.name == "presence" && e.attr("from") == Some("s0@conference.localhost/A"))
        .await
        .expect("created");
    let r = iq(
        &mut alice,
        "s0",
        "set",
        "s0@conference.localhost",
        &format!("<query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let rsm = "http://jabber.org/protocol/rsm";
    let page = |e: &Element| -> (Vec<String>, String, String) {
        let q = e.child("query", ns::DISCO_ITEMS).expect("query");
        let jids = q
            .elements()
            .filter(|i| i.name == "item")
            .filter_map(|i| i.attr("jid").map(str::to_string))
            .collect();
        let set = q.child("set", rsm).expect("set");
        (
            jids,
            set.child("count", rsm)
                .map(Element::text)
                .unwrap_or_default(),
            set.child("last", rsm)
                .map(Element::text)
                .unwrap_or_default(),
        )
    };
    let first = iq(
        &mut alice,
        "p1",
        "get",
        "conference.localhost",
        &format!(
            "<query xmlns='{}'><set xmlns='{rsm}'><max>2</max></set></query>",
            ns::DISCO_ITEMS
        ),
    )
    .await;
    let (jids, count, last) = page(&first);
    assert_eq!(jids, ["r0@conference.localhost", "r1@conference.localhost"]);
    assert_eq!(count, "6", "the hidden room is not counted");
    let second = iq(
        &mut alice,
        "p2",
        "get",
        "conference.localhost",
        &format!(
            "<query xmlns='{}'><set xmlns='{rsm}'><max>10</max><after>{last}</after></set></query>",
            ns::DISCO_ITEMS
        ),
    )
    .await;
    let (jids, _, _) = page(&second);
    assert_eq!(
        jids,
        [
            "r2@conference.localhost",
            "r3@conference.localhost",
            "r4@conference.localhost",
            "s0@conference.localhost"
        ]
    );

    // Rooms with long names: a page stops before 64 KiB, and the pages
    // still cover every room.
    for i in 0..70 {
        let room = format!("t{i:02}@conference.localhost");
        alice
            .send(&format!(
                "<presence to='{room}/A'><x xmlns='{MUC}'/></presence>"
            ))
            .await;
        alice
            .expect(|e| {
                e.name == "presence" && e.attr("from") == Some(format!("{room}/A").as_str())
            })
            .await
            .expect("created");
        let name = format!("{i:02}{}", "&lt;".repeat(300));
        let r = iq(
            &mut alice,
            &format!("n{i}"),
            "set",
            &room,
            &config(&[("muc#roomconfig_roomname", &name)]),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    for n in 0..20 {
        let set = if after.is_empty() {
            format!("<set xmlns='{rsm}'><max>1000</max></set>")
        } else {
            format!("<set xmlns='{rsm}'><max>1000</max><after>{after}</after></set>")
        };
        let r = iq(
            &mut alice,
            &format!("long{n}"),
            "get",
            "conference.localhost",
            &format!("<query xmlns='{}'>{set}</query>", ns::DISCO_ITEMS),
        )
        .await;
        let xml = r.to_xml(ns::CLIENT);
        assert!(xml.len() < 80_000, "a page of {} bytes", xml.len());
        let (jids, count, last) = page(&r);
        assert_eq!(count, "76");
        if jids.is_empty() {
            break;
        }
        seen.extend(jids);
        after = last;
    }
    assert_eq!(seen.len(), 76, "{seen:?}");
}

/// `muc.max_rooms_per_user`: an account is in at most that many rooms
/// over all its sessions. One more is refused with `policy-violation`;
/// leaving a room, being kicked from one, failing to enter one, changing
/// nick or being in the same room twice do not use up the allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_in_a_bounded_number_of_rooms() {
    let t = TestServer::start_with(|c| c.muc.max_rooms_per_user = 2).await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut alice = online(&t, "alice").await;
    let mut phone = Client::online(t.addr, "alice@localhost", PW, "phone")
        .await
        .expect("alice's phone");
    let mut bob = online(&t, "bob").await;
    // Enter `room` as `nick`: the own presence or the error.
    async fn join(c: &mut Client, room: &str, nick: &str) -> Element {
        c.send(&format!(
            "<presence to='{room}/{nick}'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
        let me = format!("{room}/{nick}");
        c.expect(|e| e.name == "presence" && e.attr("from") == Some(me.as_str()))
            .await
            .expect("answer")
    }
    let one = "one@conference.localhost";
    let two = "two@conference.localhost";
    let three = "three@conference.localhost";
    // Presence to the service itself is not a room.
    alice.send("<presence to='conference.localhost'/>").await;
    alice.send("<presence to='conference.localhost/x'/>").await;
    // Bob's room, where alice will be kicked.
    let p = join(&mut bob, one, "bob").await;
    assert!(codes(&p).contains(&"201".to_string()));
    let r = iq(&mut bob, "i1", "set", one, &config(&[])).await;
    assert_eq!(r.attr("type"), Some("result"));
    for room in [one, two] {
        let p = join(&mut alice, room, "alice").await;
        assert_ne!(p.attr("type"), Some("error"), "{}", p.to_xml(ns::CLIENT));
        if room == two {
            let r = iq(&mut alice, "i2", "set", two, &config(&[])).await;
            assert_eq!(r.attr("type"), Some("result"));
        }
    }
    // The third room, from either session: refused, and not created.
    for c in [&mut alice, &mut phone] {
        let p = join(c, three, "alice").await;
        assert_eq!(cond(&p), "policy-violation");
    }
    // The phone in a room alice is in already, and a nick change there:
    // still two rooms.
    let p = join(&mut phone, two, "alice-phone").await;
    assert_ne!(p.attr("type"), Some("error"), "{}", p.to_xml(ns::CLIENT));
    let p = join(&mut phone, two, "alice-phone2").await;
    assert_ne!(p.attr("type"), Some("error"), "{}", p.to_xml(ns::CLIENT));
    let p = join(&mut phone, three, "alice").await;
    assert_eq!(cond(&p), "policy-violation");
    // A failed entry (a nick in use) does not count either.
    let p = join(&mut phone, one, "bob").await;
    assert_eq!(cond(&p), "conflict");
    // Kicked from bob's room: room for one more.
    let r = iq(
        &mut bob,
        "k",
        "set",
        one,
        &format!("<query xmlns='{ADMIN}'><item nick='alice' role='none'/></query>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    alice
        .expect(|e| {
            e.name == "presence"
                && e.attr("type") == Some("unavailable")
                && e.attr("from") == Some("one@conference.localhost/alice")
        })
        .await
        .expect("kicked");
    let p = join(&mut alice, three, "alice").await;
    assert!(
        codes(&p).contains(&"201".to_string()),
        "{}",
        p.to_xml(ns::CLIENT)
    );
    // Leaving the room both sessions are in frees it only once both left.
    alice
        .send(&format!("<presence type='unavailable' to='{two}/alice'/>"))
        .await;
    let p = join(&mut alice, one, "alice").await;
    assert_eq!(cond(&p), "policy-violation");
    phone
        .send(&format!(
            "<presence type='unavailable' to='{two}/alice-phone2'/>"
        ))
        .await;
    phone
        .expect(|e| {
            e.name == "presence"
                && e.attr("type") == Some("unavailable")
                && e.attr("from") == Some("two@conference.localhost/alice-phone2")
        })
        .await
        .expect("left");
    let p = join(&mut alice, one, "alice").await;
    assert_ne!(p.attr("type"), Some("error"), "{}", p.to_xml(ns::CLIENT));
}

/// `muc#roomconfig_presencebroadcast` (§10.2): in a room that broadcasts
/// only moderators' presence, a participant is not announced to anyone
/// (it still gets the moderators' presence and its own), and chats as
/// usual; the setting is in the form as configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_listeners_broadcasts_only_moderators() {
    let t = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        t.add_user(&format!("{u}@localhost"), PW);
    }
    let mut alice = online(&t, "alice").await;
    let mut bob = online(&t, "bob").await;
    let mut carol = online(&t, "carol").await;
    let p = enter(&mut alice, "alice", "").await;
    assert!(codes(&p).contains(&"201".to_string()));
    let r = iq(
        &mut alice,
        "cfg",
        "set",
        ROOM,
        "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_presencebroadcast'><value>moderator</value></field></x></query>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    // A role that is none of the three is refused.
    let r = iq(
        &mut alice,
        "bad",
        "set",
        ROOM,
        "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_presencebroadcast'><value>owner</value></field></x></query>",
    )
    .await;
    assert_eq!(cond(&r), "not-acceptable");
    let form = iq(
        &mut alice,
        "get",
        "get",
        ROOM,
        &format!("<query xmlns='{OWNER}'/>"),
    )
    .await;
    let field = form
        .child("query", OWNER)
        .and_then(|q| q.child("x", "jabber:x:data"))
        .and_then(|x| {
            x.elements()
                .find(|f| f.attr("var") == Some("muc#roomconfig_presencebroadcast"))
        })
        .cloned()
        .expect("the field");
    let values: Vec<String> = field
        .elements()
        .filter(|v| v.name == "value")
        .map(Element::text)
        .collect();
    assert_eq!(values, ["moderator"]);

    // Bob enters: he gets alice's presence (a moderator's) and his own;
    // carol, entering after, gets alice's only.
    let p = enter(&mut bob, "bob", "").await;
    assert_ne!(p.attr("type"), Some("error"));
    let p = enter(&mut carol, "carol", "").await;
    assert_ne!(p.attr("type"), Some("error"));
    // Bob and carol chat; alice gets both messages, and no presence of
    // theirs came before (a stream is in order).
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat'><body>hi</body></message>"
    ))
    .await;
    carol
        .send(&format!(
            "<message to='{ROOM}' type='groupchat'><body>hello</body></message>"
        ))
        .await;
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        let e = alice
            .expect(|e| e.name == "presence" || e.name == "message")
            .await
            .expect("a stanza");
        if e.name == "presence" {
            let from = e.attr("from").unwrap_or_default();
            assert!(
                !from.ends_with("/bob") && !from.ends_with("/carol"),
                "a participant's presence was broadcast: {}",
                e.to_xml(ns::CLIENT)
            );
            continue;
        }
        if let Some(b) = e.child("body", ns::CLIENT) {
            bodies.push(b.text());
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["hello", "hi"]);
    // Carol never heard of bob either: his message is all she got of him.
    let e = carol
        .expect(|e| e.attr("from").is_some_and(|f| f.ends_with("/bob")))
        .await
        .expect("bob's message");
    assert_eq!(e.name, "message", "{}", e.to_xml(ns::CLIENT));

    // Bob made a moderator: everyone hears of him (he with 110); made a
    // participant again: he goes from the others' view.
    let bob_from = format!("{ROOM}/bob");
    for (role, gone) in [("moderator", false), ("participant", true)] {
        let r = iq(
            &mut alice,
            &format!("role-{role}"),
            "set",
            ROOM,
            &format!("<query xmlns='{ADMIN}'><item nick='bob' role='{role}'/></query>"),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
        let p = carol
            .expect(|e| e.name == "presence" && e.attr("from") == Some(bob_from.as_str()))
            .await
            .expect("bob's presence");
        assert_eq!(
            p.attr("type") == Some("unavailable"),
            gone,
            "{role}: {}",
            p.to_xml(ns::CLIENT)
        );
        let own = bob
            .expect(|e| e.name == "presence" && e.attr("from") == Some(bob_from.as_str()))
            .await
            .expect("bob's own presence");
        assert_ne!(own.attr("type"), Some("unavailable"));
        assert!(
            codes(&own).contains(&"110".to_string()),
            "{}",
            own.to_xml(ns::CLIENT)
        );
    }
    // The room broadcasts every role again: bob and carol come into view.
    // (The IQ is sent by hand: the presences may come before its result.)
    alice
        .send(&format!(
            "<iq type='set' id='cfg-all' to='{ROOM}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_presencebroadcast'><value>moderator</value><value>participant</value><value>visitor</value></field></x></query></iq>"
        ))
        .await;
    // (Alice saw bob come and go with his roles; carol never before.)
    for nick in ["carol"] {
        let from = format!("{ROOM}/{nick}");
        let p = alice
            .expect(|e| e.name == "presence" && e.attr("from") == Some(from.as_str()))
            .await
            .expect("in view");
        assert_ne!(
            p.attr("type"),
            Some("unavailable"),
            "{}",
            p.to_xml(ns::CLIENT)
        );
    }
    let p = carol
        .expect(|e| e.name == "presence" && e.attr("from") == Some(bob_from.as_str()))
        .await
        .expect("bob in carol's view");
    assert_ne!(p.attr("type"), Some("unavailable"));
}

/// Review findings: the form cannot take a room's last owner away, a
/// room's name is bounded, the room answers a ping (its disco#info lists
/// ping and the XEP-0410 optimisation), and occupants whose presence is
/// not broadcast stay out of the room's disco#items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_keeps_an_owner_and_bounds_names() {
    let t = TestServer::start().await;
    for u in ["alice", "bob"] {
        t.add_user(&format!("{u}@localhost"), PW);
    }
    let mut alice = online(&t, "alice").await;
    let mut bob = online(&t, "bob").await;
    let p = enter(&mut alice, "alice", "").await;
    assert!(codes(&p).contains(&"201".to_string()));
    instant(&mut alice).await;
    // Alice listed as admin only: refused, she stays the owner.
    let r = iq(
        &mut alice,
        "demote",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_roomadmins", "alice@localhost")]),
    )
    .await;
    assert_eq!(cond(&r), "conflict");
    let r = iq(
        &mut alice,
        "form",
        "get",
        ROOM,
        &format!("<query xmlns='{OWNER}'/>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "still the owner");
    let long = "n".repeat(1025);
    let r = iq(
        &mut alice,
        "long",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_roomname", &long)]),
    )
    .await;
    assert_eq!(cond(&r), "not-acceptable");
    // Ping to the room, and its features.
    let r = iq(
        &mut bob,
        "ping",
        "get",
        ROOM,
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let r = iq(
        &mut bob,
        "info",
        "get",
        ROOM,
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    assert!(
        r.to_xml(ns::CLIENT)
            .contains("http://jabber.org/protocol/muc#self-ping-optimization")
    );
    // Only moderators broadcast: bob, a participant, is not in the items.
    let r = iq(
        &mut alice,
        "bc",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_presencebroadcast", "moderator")]),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let p = enter(&mut bob, "bob", "").await;
    assert_ne!(p.attr("type"), Some("error"));
    let r = iq(
        &mut bob,
        "items",
        "get",
        ROOM,
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    let xml = r.to_xml(ns::CLIENT);
    assert!(xml.contains("/alice"), "{xml}");
    assert!(!xml.contains("/bob"), "{xml}");
}

/// RFC 6120 §10.1: a client's stanzas are handled in the order it sent
/// them. A groupchat message, or the owner's configuration, written in
/// the same packet as the entering presence comes after the entering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_follows_the_entering_presence_comes_after_it() {
    let t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut alice = online(&t, "alice").await;
    for i in 0..20 {
        let room = format!("order{i}@conference.localhost");
        // Create and configure in one write (persistent: it stays when
        // she leaves).
        alice
            .send(&format!(
                "<presence to='{room}/A'><x xmlns='{MUC}'/></presence><iq type='set' id='cfg{i}' to='{room}'>{}</iq>",
                config(&[("muc#roomconfig_persistentroom", "1")])
            ))
            .await;
        let r = alice
            .expect(|e| e.attr("id") == Some(format!("cfg{i}").as_str()))
            .await
            .expect("the configuration's answer");
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
        // Leave, then enter and speak in one write.
        alice
            .send(&format!(
                "<presence to='{room}/A' type='unavailable'/><presence to='{room}/A'><x xmlns='{MUC}'/></presence><message to='{room}' type='groupchat' id='m{i}'><body>hi</body></message>"
            ))
            .await;
        let m = alice
            .expect(|e| e.name == "message" && e.attr("id") == Some(format!("m{i}").as_str()))
            .await
            .expect("the message back");
        assert_eq!(
            m.attr("type"),
            Some("groupchat"),
            "{}",
            m.to_xml(ns::CLIENT)
        );
    }
}

/// Review findings: two askers may use one IQ id with one occupant; a
/// private message carries the room's occupant id of its sender, not one
/// the sender made up; a groupchat message cannot carry the room's
/// muc#user extension or a delay in the room's name; nobody takes an
/// admin's voice (§8.4, not-allowed), an admin does not ban an owner
/// (§9.1, not-allowed); an occupant's exit status reaches the others
/// (§7.14); a non-occupant's query of an occupant is bad-request (§6.6);
/// subjects, maxusers and affiliation lists are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupants_cannot_speak_for_the_room() {
    let t = TestServer::start_with(|c| c.muc.max_affiliations = 4).await;
    for u in ["alice", "bob", "carol", "dave"] {
        t.add_user(&format!("{u}@localhost"), PW);
    }
    let mut alice = online(&t, "alice").await;
    let mut bob = online(&t, "bob").await;
    let mut carol = online(&t, "carol").await;
    let mut dave = online(&t, "dave").await;
    enter(&mut alice, "Alice", "").await;
    instant(&mut alice).await;
    let bob_in = enter(&mut bob, "Bob", "").await;
    let bob_id = bob_in
        .child("occupant-id", "urn:xmpp:occupant-id:0")
        .and_then(|o| o.attr("id"))
        .expect("bob's occupant id")
        .to_string();
    enter(&mut carol, "Carol", "").await;

    // Alice and bob ask carol with the same id; each gets an answer.
    for c in [&mut alice, &mut bob] {
        c.send(&format!(
            "<iq type='get' id='same' to='{ROOM}/Carol'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await;
    }
    for _ in 0..2 {
        let q = carol
            .expect(|e| e.name == "iq" && e.attr("type") == Some("get"))
            .await
            .expect("a request");
        carol
            .send(&format!(
                "<iq type='result' id='{}' to='{}'><query xmlns='jabber:iq:version'><name>c</name></query></iq>",
                q.attr("id").expect("id"),
                q.attr("from").expect("from")
            ))
            .await;
    }
    for c in [&mut alice, &mut bob] {
        let a = c
            .expect(|e| e.name == "iq" && e.attr("id") == Some("same"))
            .await
            .expect("an answer");
        assert_eq!(a.attr("type"), Some("result"), "{}", a.to_xml(ns::CLIENT));
    }

    // A made-up occupant id in a private message is replaced.
    bob.send(&format!(
        "<message to='{ROOM}/Alice' type='chat' id='pm'><body>pm</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='fake'/></message>"
    ))
    .await;
    let pm = alice
        .expect(|e| e.name == "message" && e.attr("id") == Some("pm"))
        .await
        .expect("the private message");
    let ids: Vec<&str> = pm
        .elements()
        .filter(|c| c.ns == "urn:xmpp:occupant-id:0")
        .filter_map(|c| c.attr("id"))
        .collect();
    assert_eq!(ids, [bob_id.as_str()]);

    // The room's extension and a delay in its name are dropped.
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='fake-status'><body>hi</body><delay xmlns='urn:xmpp:delay' stamp='2001-01-01T00:00:00Z' from='{ROOM}'/><x xmlns='{USER}'><status code='104'/></x></message>"
    ))
    .await;
    let m = carol
        .expect(|e| e.name == "message" && e.attr("id") == Some("fake-status"))
        .await
        .expect("the message");
    let xml = m.to_xml(ns::CLIENT);
    assert!(
        !xml.contains("urn:xmpp:delay") && !xml.contains("104"),
        "{xml}"
    );

    // Bob is made admin: the owner may not take his voice.
    let r = iq(
        &mut alice,
        "adm",
        "set",
        ROOM,
        &format!("<query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='admin'/></query>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let r = iq(
        &mut alice,
        "mute",
        "set",
        ROOM,
        &format!("<query xmlns='{ADMIN}'><item nick='Bob' role='visitor'/></query>"),
    )
    .await;
    assert_eq!(cond(&r), "not-allowed");
    // The admin may not ban the owner.
    let r = iq(
        &mut bob,
        "ban-owner",
        "set",
        ROOM,
        &format!(
            "<query xmlns='{ADMIN}'><item jid='alice@localhost' affiliation='outcast'/></query>"
        ),
    )
    .await;
    assert_eq!(cond(&r), "not-allowed");
    // Affiliations: alice (owner), bob (admin); two more fit, not three.
    let r = iq(
        &mut alice,
        "many",
        "set",
        ROOM,
        &format!("<query xmlns='{ADMIN}'><item jid='x1@localhost' affiliation='member'/><item jid='x2@localhost' affiliation='member'/><item jid='x3@localhost' affiliation='outcast'/></query>"),
    )
    .await;
    assert_eq!(cond(&r), "resource-constraint");

    // A subject past 4096 bytes; maxusers past the service's limit.
    alice
        .send(&format!(
            "<message to='{ROOM}' type='groupchat' id='subj'><subject>{}</subject></message>",
            "s".repeat(5000)
        ))
        .await;
    let e = alice
        .expect(|e| e.attr("id") == Some("subj"))
        .await
        .expect("refused");
    assert_eq!(cond(&e), "not-acceptable");
    let r = iq(
        &mut alice,
        "big",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_maxusers", "5000")]),
    )
    .await;
    assert_eq!(cond(&r), "not-acceptable");

    // Not in the room: a query of an occupant is bad-request (§6.6).
    let r = iq(
        &mut dave,
        "peek",
        "get",
        &format!("{ROOM}/Carol"),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    assert_eq!(cond(&r), "bad-request");

    // Carol leaves saying why; the others hear it (§7.14).
    carol
        .send(&format!(
            "<presence to='{ROOM}/Carol' type='unavailable'><status>gone fishing</status></presence>"
        ))
        .await;
    let p = alice
        .expect(|e| presence_from("Carol")(e) && e.attr("type") == Some("unavailable"))
        .await
        .expect("carol's exit");
    assert_eq!(
        p.child("status", ns::CLIENT).map(Element::text).as_deref(),
        Some("gone fishing")
    );
}

/// `muc#roomconfig_maxusers` takes any number up to the service's limit,
/// and the form offers the room's own value among its choices (a
/// list-single's value is one of its options, XEP-0004 §3.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_offers_the_rooms_own_size() {
    let t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut alice = online(&t, "alice").await;
    enter(&mut alice, "Alice", "").await;
    let r = iq(
        &mut alice,
        "seven",
        "set",
        ROOM,
        &config(&[("muc#roomconfig_maxusers", "7")]),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    let form = iq(
        &mut alice,
        "get",
        "get",
        ROOM,
        &format!("<query xmlns='{OWNER}'/>"),
    )
    .await;
    let field = form
        .child("query", OWNER)
        .and_then(|q| q.child("x", "jabber:x:data"))
        .and_then(|x| {
            x.elements()
                .find(|f| f.attr("var") == Some("muc#roomconfig_maxusers"))
                .cloned()
        })
        .expect("the maxusers field");
    let value = field.child("value", "jabber:x:data").map(Element::text);
    assert_eq!(value.as_deref(), Some("7"));
    let options: Vec<String> = field
        .elements()
        .filter(|o| o.name == "option")
        .filter_map(|o| o.child("value", "jabber:x:data").map(Element::text))
        .collect();
    assert!(options.iter().any(|o| o == "7"), "{options:?}");
}
