//! XEP-0045 rooms in a cluster of real processes: three core nodes, the
//! room's shard led by one of them, occupants on two edges. The room's
//! shard leader is killed with -9 in the middle of a conversation: every
//! message the room reflected to its sender reaches every occupant that
//! stayed (none twice under one stanza id), the occupants are still in
//! the room, and its configuration and owner are unchanged.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Client;
use common::cores::*;
use common::procs::*;
use proto::Element;

const PW: &str = "correct horse";
const MUC: &str = "http://jabber.org/protocol/muc";
const OWNER: &str = "http://jabber.org/protocol/muc#owner";
const ADMIN: &str = "http://jabber.org/protocol/muc#admin";

fn sid(m: &Element) -> Option<String> {
    m.child("stanza-id", "urn:xmpp:sid:0")
        .and_then(|s| s.attr("id"))
        .map(str::to_string)
}

async fn enter(c: &mut Client, room: &str, nick: &str) {
    c.send(&format!(
        "<presence to='{room}/{nick}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
    ))
    .await;
    let me = format!("{room}/{nick}");
    c.expect(|e| {
        e.name == "presence"
            && e.attr("from") == Some(me.as_str())
            && e.attr("type") != Some("error")
    })
    .await
    .expect("in the room");
    // The subject closes the entering.
    c.expect(|e| e.name == "message" && e.child("subject", proto::ns::CLIENT).is_some())
        .await
        .expect("subject");
}

/// Messages of `c` until `quiet` passes without one: message id to the
/// stanza ids it came with.
async fn drain(c: &mut Client, quiet: Duration, got: &mut BTreeMap<String, BTreeSet<String>>) {
    while let Ok(Ok(m)) = tokio::time::timeout(quiet, c.expect(|e| e.name == "message")).await {
        if let (Some(id), Some(s)) = (m.attr("id"), sid(&m)) {
            got.entry(id.to_string()).or_default().insert(s);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_keeps_its_occupants_when_its_shard_leader_is_killed_mid_conversation() {
    const N: usize = 90;
    let mut cores = Cores::start().await;
    cores.wait_balanced(0).await;
    // Shard 2 is led by node 3; the users' shards by nodes 1 and 2, so
    // only the room moves.
    let room = (0..)
        .map(|i| format!("room{i}@conference.localhost"))
        .find(|r| router::cluster::shard_of(r, 16) == 2)
        .expect("a room in shard 2");
    let alice = user_in_shard("alice", 0);
    let bob = user_in_shard("bob", 1);
    let carol = user_in_shard("carol", 3);
    for u in [&alice, &bob, &carol] {
        let (ok, out) = xmppd(&cores.cfgs[0], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let (_e1, a1) = cores.edge(21, 0);
    let (_e2, a2) = cores.edge(22, 1);
    let mut a = Client::online(a1, &alice, PW, "a").await.expect("alice");
    let mut b = Client::online(a2, &bob, PW, "b").await.expect("bob");
    let mut c = Client::online(a2, &carol, PW, "c").await.expect("carol");

    enter(&mut a, &room, "Alice").await;
    a.send(&format!(
        "<iq type='set' id='cfg' to='{room}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_roomname'><value>Survivors</value></field><field var='muc#roomconfig_moderatedroom'><value>1</value></field></x></query></iq>"
    ))
    .await;
    let r = a
        .expect(|e| e.attr("id") == Some("cfg"))
        .await
        .expect("configured");
    assert_eq!(
        r.attr("type"),
        Some("result"),
        "{}",
        r.to_xml(proto::ns::CLIENT)
    );
    // A moderated room: bob and carol get voice from the owner, a change
    // of role that must survive too.
    enter(&mut b, &room, "Bob").await;
    enter(&mut c, &room, "Carol").await;
    for nick in ["Bob", "Carol"] {
        a.send(&format!(
            "<iq type='set' id='v{nick}' to='{room}'><query xmlns='{ADMIN}'><item nick='{nick}' role='participant'/></query></iq>"
        ))
        .await;
        let r = a
            .expect(|e| e.attr("id") == Some(format!("v{nick}").as_str()))
            .await
            .expect("voice");
        assert_eq!(
            r.attr("type"),
            Some("result"),
            "{}",
            r.to_xml(proto::ns::CLIENT)
        );
    }

    // Alice talks; node 3 (the room's leader) dies a third of the way.
    let mut killed = false;
    for i in 0..N {
        a.send(&format!(
            "<message to='{room}' type='groupchat' id='g{i}'><body>g{i}</body></message>"
        ))
        .await;
        if i == N / 3 {
            cores.kill(2);
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(killed);
    // What the room reflected to alice is what it acknowledged.
    let mut reflected = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while reflected.len() < N && std::time::Instant::now() < deadline {
        drain(&mut a, Duration::from_secs(3), &mut reflected).await;
    }
    assert!(
        reflected.len() >= N / 3,
        "the room answered only {} of {N}",
        reflected.len()
    );
    for (who, cl) in [("bob", &mut b), ("carol", &mut c)] {
        let mut got = BTreeMap::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline && !reflected.keys().all(|k| got.contains_key(k))
        {
            drain(cl, Duration::from_secs(2), &mut got).await;
        }
        let missing: Vec<&String> = reflected.keys().filter(|k| !got.contains_key(*k)).collect();
        assert!(missing.is_empty(), "{who} missed {missing:?}");
        // One stanza id per message, the one the sender saw.
        for (id, sids) in &got {
            assert_eq!(sids.len(), 1, "{who} got {id} under {sids:?}");
            if let Some(r) = reflected.get(id) {
                assert_eq!(r, sids, "{who}: {id}");
            }
        }
    }

    // Still occupants, with their roles, in the same room: bob speaks
    // (a participant in a moderated room) and both others hear him.
    b.send(&format!(
        "<message to='{room}' type='groupchat' id='after'><body>still here</body></message>"
    ))
    .await;
    for cl in [&mut a, &mut b, &mut c] {
        let m = cl
            .expect(|e| e.attr("id") == Some("after"))
            .await
            .expect("after the kill");
        assert!(m.attr("from").is_some_and(|f| f.ends_with("/Bob")));
    }
    a.send(&format!(
        "<iq type='get' id='info' to='{room}'><query xmlns='{}'/></iq>",
        proto::ns::DISCO_INFO
    ))
    .await;
    let info = a
        .expect(|e| e.attr("id") == Some("info"))
        .await
        .expect("info");
    let xml = info.to_xml(proto::ns::CLIENT);
    assert!(
        xml.contains("Survivors") && xml.contains("muc_moderated"),
        "{xml}"
    );
    assert!(xml.contains("<value>3</value>"), "three occupants: {xml}");
    a.send(&format!(
        "<iq type='get' id='owners' to='{room}'><query xmlns='{ADMIN}'><item affiliation='owner'/></query></iq>"
    ))
    .await;
    let owners = a
        .expect(|e| e.attr("id") == Some("owners"))
        .await
        .expect("owners");
    assert!(
        owners.to_xml(proto::ns::CLIENT).contains(&alice),
        "{}",
        owners.to_xml(proto::ns::CLIENT)
    );
}
