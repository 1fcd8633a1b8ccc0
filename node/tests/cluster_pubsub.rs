//! PubSub in a cluster of real processes: a node lives in the shard of its
//! own key, led by one core node, while its publisher and subscriber live
//! in shards that others lead and connect through two edges. The node's
//! shard leader is killed with -9 in the middle of a steady publish
//! stream: every publish that was acknowledged can be retrieved afterwards,
//! exactly once, and the subscriber got a notification for each.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Client;
use common::caps::{Caps, subscribe};
use common::cores::*;
use common::procs::*;
use proto::{Element, ns};

const PW: &str = "correct horse";
const PS: &str = "pubsub.localhost";

/// Send an IQ and wait (up to `limit`) for its answer.
async fn iq(c: &mut Client, id: &str, to: &str, payload: &str, limit: Duration) -> Option<Element> {
    c.send(&format!(
        "<iq type='set' id='{id}' to='{to}'>{payload}</iq>"
    ))
    .await;
    tokio::time::timeout(
        limit,
        c.expect(|e| e.name == "iq" && e.attr("id") == Some(id)),
    )
    .await
    .ok()
    .and_then(Result::ok)
}

/// The item ids of the notifications in `e`, if it is one.
fn notified(e: &Element) -> Vec<String> {
    e.child("event", ns::PUBSUB_EVENT)
        .and_then(|ev| ev.child("items", ns::PUBSUB_EVENT))
        .map(|items| {
            items
                .elements()
                .filter(|i| i.name == "item")
                .filter_map(|i| i.attr("id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Alice creates `node` keeping every item (`max_items` max, and the
/// configuration `fields` besides); bob subscribes to it.
async fn create_and_subscribe(a: &mut Client, b: &mut Client, node: &str, bob: &str, fields: &str) {
    let create = format!(
        "<pubsub xmlns='{}'><create node='{node}'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field><field var='pubsub#max_items'><value>max</value></field>{fields}</x></configure></pubsub>",
        ns::PUBSUB,
        ns::PUBSUB_NODE_CONFIG
    );
    let r = iq(a, "create", PS, &create, Duration::from_secs(10))
        .await
        .expect("created");
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let sub = format!(
        "<pubsub xmlns='{}'><subscribe node='{node}' jid='{bob}'/></pubsub>",
        ns::PUBSUB
    );
    let r = iq(b, "sub", PS, &sub, Duration::from_secs(10))
        .await
        .expect("subscribed");
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

/// Publish item `id`, sending it again with the same id when no answer
/// comes (as a client would), up to `attempts` times; whether it was
/// acknowledged.
async fn publish_until_acked(a: &mut Client, node: &str, id: &str, attempts: usize) -> bool {
    for attempt in 0..attempts {
        let answer = iq(
            a,
            &format!("{id}-{attempt}"),
            PS,
            &publish_xml(node, id),
            Duration::from_secs(5),
        )
        .await;
        if answer.is_some_and(|r| r.attr("type") == Some("result")) {
            return true;
        }
    }
    false
}

/// Every acknowledged item is among `ids`, and no id is there twice.
fn assert_stored_once(ids: &[String], acked: &BTreeSet<String>) {
    let stored: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(stored.len(), ids.len(), "an item id twice: {ids:?}");
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but gone: {lost:?}");
}

/// A subscriber's notifications, counted by item id, read in the
/// background until `stop`.
struct Notifications {
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<Client>,
}

impl Notifications {
    fn count(mut c: Client) -> Notifications {
        let seen: Arc<Mutex<BTreeMap<String, usize>>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (seen, stop) = (seen.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(500), c.next_element()).await {
                        Ok(Ok(e)) => {
                            for id in notified(&e) {
                                *seen.lock().expect("lock").entry(id).or_default() += 1;
                            }
                        }
                        // The stream ended: no more notifications. Reading
                        // on would fail at once, again and again, without
                        // ever yielding (the test's timers would stall).
                        Ok(Err(e)) => {
                            eprintln!("bob's stream ended: {e}");
                            break;
                        }
                        Err(_) => {}
                    }
                }
                c
            })
        };
        Notifications { seen, stop, reader }
    }

    /// Wait until every id of `acked` was notified.
    async fn wait_for_all(&self, acked: &BTreeSet<String>) {
        until(
            "bob has every notification",
            Duration::from_secs(20),
            || {
                let s = self.seen.lock().expect("lock");
                acked.iter().all(|id| s.contains_key(id))
            },
        )
        .await;
    }

    /// Stop reading; the client, and how many ids came more than once.
    async fn stop(self) -> (Client, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let c = self.reader.await.expect("reader");
        let dup = self
            .seen
            .lock()
            .expect("lock")
            .values()
            .filter(|n| **n > 1)
            .count();
        (c, dup)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_publish_survives_a_kill_of_the_nodes_shard_leader() {
    const N: usize = 150;
    let mut cores = Cores::start().await;
    cores.wait_balanced(0).await;
    // Shard s is led by node s % 3 + 1: the node's home by node 3, the
    // publisher's shard by node 1, the subscriber's by node 2.
    let node = (0..)
        .map(|i| format!("telemetry{i}"))
        .find(|n| router::cluster::shard_of(&format!("{PS}/{n}"), 16) % 3 == 2)
        .expect("a node id");
    let alice = user_in_shard("alice", 0);
    let bob = user_in_shard("bob", 1);
    for u in [&alice, &bob] {
        let (ok, out) = xmppd(&cores.cfgs[0], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let (_edge_a, addr_a) = cores.edge(41, 0);
    let (_edge_b, addr_b) = cores.edge(42, 1);
    let mut a = Client::online(addr_a, &alice, PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(addr_b, &bob, PW, "b").await.expect("bob");
    create_and_subscribe(&mut a, &mut b, &node, &bob, "").await;

    // Bob's notifications, counted by item id, until the test ends.
    let notes = Notifications::count(b);

    // A steady stream of publishes; one that gets no answer is sent again
    // with the same id (as a client would), so a publish is acknowledged
    // once its result arrives.
    let mut acked = BTreeSet::new();
    let started = std::time::Instant::now();
    for i in 0..N {
        if i == N / 3 {
            cores.kill(2);
            eprintln!("killed node 3 after {:?}", started.elapsed());
        }
        let id = format!("p{i:03}");
        if publish_until_acked(&mut a, &node, &id, 8).await {
            acked.insert(id);
        }
    }
    eprintln!(
        "{} of {N} acknowledged in {:?}",
        acked.len(),
        started.elapsed()
    );
    assert!(acked.len() >= N - 5, "only {} acknowledged", acked.len());

    // Every acknowledged item is there, once.
    assert_stored_once(&stored_ids(&mut a, &node, "all").await, &acked);

    // Bob was notified of each (his session is on a node that lives).
    notes.wait_for_all(&acked).await;
    let (_, dup) = notes.stop().await;
    eprintln!("notifications repeated after a resend: {dup}");
}

/// The publish request for item `id` of `node`.
fn publish_xml(node: &str, id: &str) -> String {
    format!(
        "<pubsub xmlns='{}'><publish node='{node}'><item id='{id}'><reading xmlns='urn:example'>{id}</reading></item></publish></pubsub>",
        ns::PUBSUB
    )
}

/// The ids of every item of `node`, as `c` retrieves them. A request
/// that gets no answer in 10 s is sent again, as a client would (a stanza
/// relayed between core nodes while leaders move may be lost; the items
/// are what is checked here).
async fn stored_ids(c: &mut Client, node: &str, id: &str) -> Vec<String> {
    let get = format!(
        "<pubsub xmlns='{}'><items node='{node}'/></pubsub>",
        ns::PUBSUB
    );
    let mut answer = None;
    for attempt in 0..3 {
        let id = format!("{id}-{attempt}");
        c.send(&format!("<iq type='get' id='{id}' to='{PS}'>{get}</iq>"))
            .await;
        match tokio::time::timeout(
            Duration::from_secs(10),
            c.expect(|e| e.attr("id") == Some(id.as_str())),
        )
        .await
        {
            Ok(Ok(r)) => {
                answer = Some(r);
                break;
            }
            Ok(Err(e)) if !e.to_string().contains("timed out") => panic!("items: {e}"),
            _ => eprintln!("items request {id} unanswered in 10 s; asking again"),
        }
    }
    let r = answer.expect("the items, within three requests");
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    r.child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .map(|items| {
            items
                .elements()
                .filter_map(|i| i.attr("id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A node whose shard moves while it is used: a fourth core node is added
/// (`xmppd cluster add-node`) and takes over the leadership of the node's
/// shard, then the node that led it first is removed (`remove-node`) and
/// stops. A publisher keeps publishing all along (resending what got no
/// answer, as a client does); afterwards every acknowledged item is
/// stored once, the subscriber (on another edge) was notified of each,
/// and the node, its configuration and its subscription serve on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_serving_while_its_shard_moves_to_another_core_node() {
    let mut cores = Cores::start().await;
    cores.wait_balanced(0).await;
    // Shard s is led by node s % 3 + 1 of three and by node s % 4 + 1 of
    // four: a node in a shard with s % 3 == 0 and s % 4 == 3 (3 or 15)
    // is led by node 1 first and by node 4 once it has joined.
    let node = (0..)
        .map(|i| format!("meter{i}"))
        .find(|n| {
            let s = router::cluster::shard_of(&format!("{PS}/{n}"), 16);
            s.is_multiple_of(3) && s % 4 == 3
        })
        .expect("a node id");
    // Publisher and subscriber in shards that nodes 2 and 3 lead, on edges
    // whose seeds are nodes 2 and 3 (node 1 leaves).
    let alice = user_in_shard("alice", 1);
    let bob = user_in_shard("bob", 2);
    for u in [&alice, &bob] {
        let (ok, out) = xmppd(&cores.cfgs[1], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let (_edge_a, addr_a) = cores.edge(41, 1);
    let (_edge_b, addr_b) = cores.edge(42, 2);
    let mut a = Client::online(addr_a, &alice, PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(addr_b, &bob, PW, "b").await.expect("bob");
    create_and_subscribe(
        &mut a,
        &mut b,
        &node,
        &bob,
        "<field var='pubsub#title'><value>Meter</value></field>",
    )
    .await;

    // Bob counts his notifications by item id until the test ends.
    let notes = Notifications::count(b);
    // Alice publishes until told to stop; the acknowledged ids are shared.
    let acked: Arc<Mutex<BTreeSet<String>>> = Default::default();
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (acked, publishing, node) = (acked.clone(), publishing.clone(), node.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while publishing.load(Ordering::Relaxed) {
                let id = format!("m{i:05}");
                if publish_until_acked(&mut a, &node, &id, 10).await {
                    acked.lock().expect("lock").insert(id);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            a
        })
    };
    let count = |acked: &Mutex<BTreeSet<String>>| acked.lock().expect("lock").len();
    let goes_on = |phase: &'static str, from: usize| {
        let acked = acked.clone();
        async move {
            until(phase, Duration::from_secs(30), || {
                count(&acked) >= from + 20
            })
            .await;
        }
    };
    goes_on("publishes before the move", 0).await;

    // Node 4 joins and takes the lead of the node's shard.
    let before = count(&acked);
    let i4 = cores.start_joining(4).await;
    cores.add_node(i4, 4, 1).await;
    let shard = router::cluster::shard_of(&format!("{PS}/{node}"), 16);
    let took = until(
        "node 4 leads the node's shard",
        Duration::from_secs(60),
        || leader_in_status(&cores.status(1).1, shard) == Some(4),
    )
    .await;
    eprintln!("the node's shard moved to node 4 in {took:?}");
    goes_on("publishes after node 4 took the shard", before).await;

    // Node 1, the node's first home, leaves and stops by itself.
    let before = count(&acked);
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
    until(
        "the node's shard on nodes 2-4 only",
        Duration::from_secs(60),
        || {
            let (_, st) = cores.status(1);
            replicas_in_status(&st, shard) == vec![2, 3, 4]
                && leader_in_status(&st, shard).is_some_and(|l| l != 1)
        },
    )
    .await;
    goes_on("publishes after node 1 left", before).await;
    publishing.store(false, Ordering::Relaxed);
    let mut a = publisher.await.expect("publisher");
    let acked = acked.lock().expect("lock").clone();

    // Every acknowledged item is stored, once.
    assert_stored_once(&stored_ids(&mut a, &node, "all").await, &acked);
    // Bob was notified of each.
    notes.wait_for_all(&acked).await;
    let (mut b, _) = notes.stop().await;
    // The configuration and the subscription moved with the node.
    let get = format!(
        "<pubsub xmlns='{}'><configure node='{node}'/></pubsub>",
        ns::PUBSUB_OWNER
    );
    a.send(&format!("<iq type='get' id='conf' to='{PS}'>{get}</iq>"))
        .await;
    let r = a
        .expect(|e| e.attr("id") == Some("conf"))
        .await
        .expect("configure");
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert!(r.to_xml("").contains("Meter"), "{}", r.to_xml(""));
    let subs = format!(
        "<pubsub xmlns='{}'><subscriptions node='{node}'/></pubsub>",
        ns::PUBSUB
    );
    b.send(&format!("<iq type='get' id='subs' to='{PS}'>{subs}</iq>"))
        .await;
    let r = b
        .expect(|e| e.attr("id") == Some("subs"))
        .await
        .expect("subscriptions");
    assert!(
        r.to_xml("").contains("subscription='subscribed'"),
        "{}",
        r.to_xml("")
    );
    eprintln!(
        "{} items acknowledged and stored across the move",
        acked.len()
    );
}

/// XEP-0115 hashes are learnt once for the whole cluster: bob's session
/// (on core node 2) is asked what his hash means; carol's (on node 3),
/// announcing the same hash, is not asked again and still gets the PEP
/// notifications her features ask for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_hash_is_asked_about_once_in_the_whole_cluster() {
    const TUNE: &str = "http://jabber.org/protocol/tune";
    let notify = format!("{TUNE}+notify");
    let cores = Cores::start().await;
    cores.wait_balanced(0).await;
    // Shard s is led by node s % 3 + 1.
    let alice = user_in_shard("alice", 0);
    let bob = user_in_shard("bob", 1);
    let carol = user_in_shard("carol", 2);
    for u in [&alice, &bob, &carol] {
        let (ok, out) = xmppd(&cores.cfgs[0], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let (_edge_a, addr_a) = cores.edge(41, 0);
    let (_edge_b, addr_b) = cores.edge(42, 1);
    let (_edge_c, addr_c) = cores.edge(43, 2);
    let mut a = Client::online(addr_a, &alice, PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(addr_b, &bob, PW, "b").await.expect("bob");
    let mut c = Client::online(addr_c, &carol, PW, "c")
        .await
        .expect("carol");
    for (x, xj) in [(&mut b, &bob), (&mut c, &carol)] {
        subscribe(x, &mut a, xj, &alice).await;
        subscribe(&mut a, x, &alice, xj).await;
    }
    let caps = Caps::new(
        "http://bob.example/client",
        &[ns::DISCO_INFO, TUNE, &notify],
    );
    b.send(&caps.presence("")).await;
    caps.answer(&mut b).await;
    // What bob answered is committed at the hash's home; give it time.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Carol's client is another build with the same features: same hash.
    let same = Caps {
        node: "http://carol.example/client".into(),
        ..Caps::new(
            "http://bob.example/client",
            &[ns::DISCO_INFO, TUNE, &notify],
        )
    };
    c.send(&same.presence("")).await;
    let publish = format!(
        "<pubsub xmlns='{}'><publish node='{TUNE}'><item id='current'><tune xmlns='{TUNE}'><title>Once</title></tune></item></publish></pubsub>",
        ns::PUBSUB
    );
    a.send(&format!("<iq type='set' id='tune'>{publish}</iq>"))
        .await;
    let r = a
        .expect(|e| e.attr("id") == Some("tune"))
        .await
        .expect("published");
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml(ns::CLIENT));
    for x in [&mut b, &mut c] {
        let ev = tokio::time::timeout(
            Duration::from_secs(10),
            x.expect(|e| {
                assert!(
                    e.child("query", ns::DISCO_INFO).is_none(),
                    "a hash the cluster knows is not asked about again"
                );
                e.child("event", ns::PUBSUB_EVENT).is_some()
            }),
        )
        .await
        .expect("the tune in time")
        .expect("the tune");
        assert!(ev.to_xml(ns::CLIENT).contains(">Once<"));
    }
}
