//! XEP-0045 rooms in a cluster of real processes: three core nodes, the
//! room's shard led by one of them, occupants on two edges. The room's
//! shard leader, or an occupant's, is killed with -9 in the middle of a
//! conversation: every
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
    talk_through_a_kill(2, false).await;
}

/// The same with SIGTERM: a clean stop (a rolling restart) hands the
/// room's shard on and loses none of what the room acknowledged or was
/// sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_keeps_its_occupants_when_its_shard_leader_stops_mid_conversation() {
    talk_through_a_kill(2, true).await;
}

/// The node that leads bob's shard (not the room's) is killed while the
/// room sends him messages: what the room had relayed to that node and
/// what it relays before it learns of the new leader go to the new
/// leader, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_reaches_an_occupant_whose_shard_leader_is_killed_mid_conversation() {
    talk_through_a_kill(1, false).await;
}

/// Alice talks in a moderated room with bob and carol; core node
/// `victim` (index) is killed with -9 (or stopped with SIGTERM) a third
/// of the way, just after a burst of messages. Every message the room reflected to alice reaches
/// bob and carol under the stanza id alice saw, and the room keeps its
/// occupants, their roles, its configuration and its owner.
async fn talk_through_a_kill(victim: usize, term: bool) {
    const N: usize = 90;
    let mut cores = Cores::start().await;
    cores.wait_balanced(0).await;
    // Shard 2 (the room's) is led by node 3, alice's and carol's shards
    // by node 1, bob's by node 2.
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

    // Alice talks; the victim dies a third of the way, right after a
    // burst, so that the room has stanzas in flight to every node.
    let mut killed = false;
    let mut stopping = None;
    for i in 0..N {
        a.send(&format!(
            "<message to='{room}' type='groupchat' id='g{i}'><body>g{i}</body></message>"
        ))
        .await;
        if i == N / 3 {
            if term {
                stopping = Some(cores.term(victim));
            } else {
                cores.kill(victim);
            }
            killed = true;
        }
        if !(N / 3 - 15..N / 3).contains(&i) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(killed);
    if let Some(p) = stopping {
        cores.reap(victim, p);
    }
    // What the room reflected to alice is what it acknowledged.
    let mut reflected = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while reflected.len() < N && std::time::Instant::now() < deadline {
        drain(&mut a, Duration::from_secs(3), &mut reflected).await;
    }
    // Every message alice's edge took was reflected: what the stopped
    // node had not confirmed went to the room's new leader.
    let unanswered: Vec<usize> = (0..N)
        .filter(|i| !reflected.contains_key(&format!("g{i}")))
        .collect();
    assert!(
        unanswered.is_empty(),
        "the room never reflected {unanswered:?}"
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

/// A room whose shard moves: a fourth core node joins and takes the lead
/// of the room's shard, then the node that led it first is removed and
/// stops. The occupants (on two edges) stay in the room with their roles
/// throughout, the room's configuration goes with it, and every message
/// the room reflected to its sender reaches the other occupant under the
/// stanza id the sender saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_keeps_its_occupants_while_its_shard_moves_to_another_core_node() {
    let mut cores = Cores::start().await;
    cores.wait_balanced(0).await;
    // Shard s is led by node s % 3 + 1 of three and by node s % 4 + 1 of
    // four: a room in a shard with s % 3 == 0 and s % 4 == 3 is led by
    // node 1 first and by node 4 once it has joined.
    let room = (0..)
        .map(|i| format!("moving{i}@conference.localhost"))
        .find(|r| {
            let s = router::cluster::shard_of(r, 16);
            s.is_multiple_of(3) && s % 4 == 3
        })
        .expect("a room");
    let shard = router::cluster::shard_of(&room, 16);
    // The occupants' own shards are led by nodes 2 and 3, on edges seeded
    // with them (node 1 leaves).
    let alice = user_in_shard("alice", 1);
    let bob = user_in_shard("bob", 2);
    for u in [&alice, &bob] {
        let (ok, out) = xmppd(&cores.cfgs[1], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let (_e1, a1) = cores.edge(31, 1);
    let (_e2, a2) = cores.edge(32, 2);
    let mut a = Client::online(a1, &alice, PW, "a").await.expect("alice");
    let mut b = Client::online(a2, &bob, PW, "b").await.expect("bob");
    enter(&mut a, &room, "Alice").await;
    a.send(&format!(
        "<iq type='set' id='cfg' to='{room}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_roomname'><value>Movers</value></field><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"
    ))
    .await;
    let r = a
        .expect(|e| e.attr("id") == Some("cfg"))
        .await
        .expect("configured");
    assert_eq!(r.attr("type"), Some("result"));
    enter(&mut b, &room, "Bob").await;

    // A round of talk: alice sends until the room reflects each message
    // (a message sent while the lead moves may get an error: sent again,
    // as a client would), bob must get each reflected one once.
    let mut round = 0;
    let mut talk = async |a: &mut Client, b: &mut Client, phase: &str| {
        round += 1;
        let mut reflected = BTreeMap::new();
        for i in 0..10 {
            let id = format!("r{round}m{i}");
            for _ in 0..20 {
                a.send(&format!(
                    "<message to='{room}' type='groupchat' id='{id}'><body>{id}</body></message>"
                ))
                .await;
                let back = tokio::time::timeout(
                    Duration::from_secs(3),
                    a.expect(|e| e.name == "message" && e.attr("id") == Some(id.as_str())),
                )
                .await;
                if let Ok(Ok(m)) = back
                    && m.attr("type") != Some("error")
                {
                    reflected.insert(id.clone(), sid(&m).expect("a stanza id"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert!(
                reflected.contains_key(&id),
                "{phase}: the room never took {id}"
            );
        }
        let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline && !reflected.keys().all(|k| got.contains_key(k))
        {
            drain(b, Duration::from_secs(1), &mut got).await;
        }
        for (id, s) in &reflected {
            assert!(
                got.get(id).is_some_and(|g| g.contains(s)),
                "{phase}: bob missed {id} ({s}): {got:?}"
            );
        }
    };
    talk(&mut a, &mut b, "before the move").await;

    // Node 4 joins and takes the lead of the room's shard.
    let i4 = cores.start_joining(4).await;
    cores.add_node(i4, 4, 1).await;
    until(
        "node 4 leads the room's shard",
        Duration::from_secs(60),
        || leader_in_status(&cores.status(1).1, shard) == Some(4),
    )
    .await;
    talk(&mut a, &mut b, "after node 4 took the room").await;

    // Node 1, the room's first home, leaves and stops by itself.
    let (ok, out) = xmppd(
        &cores.cfgs[1],
        &[
            "cluster",
            "remove-node",
            "1",
            "--core",
            &cores.addrs[2].to_string(),
        ],
    );
    assert!(ok, "{out}");
    until("node 1 stops by itself", Duration::from_secs(60), || {
        cores.procs[0]
            .as_mut()
            .is_some_and(|p| p.0.try_wait().ok().flatten().is_some())
    })
    .await;
    cores.procs[0].take();
    talk(&mut a, &mut b, "after node 1 left").await;

    // Both still occupants with their roles, and the configuration moved.
    a.send(&format!(
        "<iq type='get' id='parts' to='{room}'><query xmlns='{ADMIN}'><item role='participant'/></query></iq>"
    ))
    .await;
    let parts = a
        .expect(|e| e.attr("id") == Some("parts"))
        .await
        .expect("participants");
    let xml = parts.to_xml(proto::ns::CLIENT);
    assert!(
        xml.contains("nick='Bob'") || xml.contains("nick=\"Bob\""),
        "{xml}"
    );
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
        xml.contains("Movers") && xml.contains("muc_persistent"),
        "{xml}"
    );
    assert!(xml.contains("<value>2</value>"), "two occupants: {xml}");

    // The public room list gathers the rooms of every core node: the
    // persistent room and temporary rooms in shards of all leaders.
    let mut temporary = Vec::new();
    for i in 0..6 {
        let t = (0..)
            .map(|n| format!("temp{i}x{n}@conference.localhost"))
            .find(|r| router::cluster::shard_of(r, 16) % 6 == i)
            .expect("a room");
        enter(&mut b, &t, "Bob").await;
        b.send(&format!(
            "<iq type='set' id='inst{i}' to='{t}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        .await;
        let r = b
            .expect(|e| e.attr("id") == Some(format!("inst{i}").as_str()))
            .await
            .expect("instant room");
        assert_eq!(r.attr("type"), Some("result"));
        temporary.push(t);
    }
    a.send(&format!(
        "<iq type='get' id='list' to='conference.localhost'><query xmlns='{}'/></iq>",
        proto::ns::DISCO_ITEMS
    ))
    .await;
    let list = a
        .expect(|e| e.attr("id") == Some("list"))
        .await
        .expect("the list");
    let xml = list.to_xml(proto::ns::CLIENT);
    for r in temporary.iter().chain([&room]) {
        assert!(xml.contains(r.as_str()), "{r} not in {xml}");
    }
}
