//! Two tiers as real processes: one `xmppd` with `role = "core"` and two
//! with `role = "edge"`, on loopback ports chosen by the OS, talking gRPC.
//! Clients on different edges subscribe to each other, chat and see each
//! other's presence exactly as on one node; an edge killed with -9 makes
//! its users go unavailable to their contacts, and they log in again
//! through the other edge and find what was sent meanwhile.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::Client;
use common::cores::*;
use common::procs::*;
use proto::Element;

const PW: &str = "correct horse";

struct Cluster {
    dir: tempfile::TempDir,
    core_cfg: PathBuf,
    core_addr: SocketAddr,
    core: Proc,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let core_cfg = config(
            dir.path(),
            "core",
            "[cluster]\nrole = \"core\"\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nliveness_secs = 2\n",
        );
        let (core, core_addr) = start(&core_cfg, "cluster listener (gRPC)");
        // The user commands reach the running core through its admin
        // socket, which is there once the shards have leaders.
        let sock = dir.path().join("core").join("admin.sock");
        let t = std::time::Instant::now();
        while !sock.exists() {
            assert!(t.elapsed() < Duration::from_secs(30), "no admin socket");
            std::thread::sleep(Duration::from_millis(50));
        }
        Cluster {
            dir,
            core_cfg,
            core_addr,
            core,
        }
    }

    /// An edge with this node id; returns it and its STARTTLS address.
    fn edge(&self, id: u64) -> (Proc, SocketAddr) {
        let cfg = config(
            self.dir.path(),
            &format!("edge{id}"),
            &format!(
                "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n\n[cluster]\nrole = \"edge\"\nnode_id = {id}\ncore = \"{}\"\nliveness_secs = 2\n",
                self.core_addr
            ),
        );
        start(&cfg, "client listener (STARTTLS)")
    }

    /// `xmppd cluster status` against the running core.
    fn status(&self) -> String {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&self.core_cfg)
            .args(["cluster", "status", "--core", &self.core_addr.to_string()])
            .output()
            .expect("run xmppd cluster status");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `xmppd user add` against the running core (its admin socket).
    fn add_user(&self, jid: &str) {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&self.core_cfg)
            .args(["user", "add", jid, "--password", PW])
            .output()
            .expect("run xmppd user add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn is_presence_from(e: &Element, from_prefix: &str, ptype: Option<&str>) -> bool {
    e.name == "presence"
        && e.attr("from").is_some_and(|f| f.starts_with(from_prefix))
        && e.attr("type") == ptype
}

fn body(e: &Element) -> Option<String> {
    (e.name == "message")
        .then(|| e.child("body", proto::ns::CLIENT).map(Element::text))
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_edges_work_as_on_one_node_and_survive_an_edge_kill() {
    let cluster = Cluster::start();
    cluster.add_user("alice@localhost");
    cluster.add_user("bob@localhost");
    let (_edge_a, addr_a) = cluster.edge(2);
    let (edge_b, addr_b) = cluster.edge(3);

    let mut a = Client::online(addr_a, "alice@localhost", PW, "a")
        .await
        .expect("alice logs in through edge 2");
    let mut b = Client::online(addr_b, "bob@localhost", PW, "b")
        .await
        .expect("bob logs in through edge 3");

    // RFC 6121 §3: the subscription handshake, both ways, across edges.
    a.send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    let req = b
        .expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .await
        .expect("bob gets alice's request");
    assert_eq!(req.attr("from"), Some("alice@localhost"));
    b.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    a.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribed"))
        .await
        .expect("alice sees the approval");
    a.expect(|e| is_presence_from(e, "bob@localhost/b", None))
        .await
        .expect("alice gets bob's presence");
    b.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    a.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .await
        .expect("alice gets bob's request");
    a.send("<presence to='bob@localhost' type='subscribed'/>")
        .await;
    b.expect(|e| is_presence_from(e, "alice@localhost/a", None))
        .await
        .expect("bob gets alice's presence");

    // The roster is the core's: both see each other with subscription both.
    a.send("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let roster = a
        .expect(|e| e.attr("id") == Some("r2"))
        .await
        .expect("roster");
    let item = roster
        .child("query", "jabber:iq:roster")
        .and_then(|q| {
            q.elements()
                .find(|i| i.attr("jid") == Some("bob@localhost"))
        })
        .expect("bob in alice's roster");
    assert_eq!(item.attr("subscription"), Some("both"));

    // Messages both ways, in order.
    for i in 0..50 {
        a.send(&format!(
            "<message to='bob@localhost/b' type='chat' id='a{i}'><body>a{i}</body></message>"
        ))
        .await;
    }
    for i in 0..50 {
        let m = b
            .expect(|e| e.name == "message")
            .await
            .expect("bob's message");
        assert_eq!(body(&m).as_deref(), Some(format!("a{i}").as_str()));
        assert_eq!(m.attr("from"), Some("alice@localhost/a"));
    }
    b.send("<message to='alice@localhost' type='chat'><body>hello back</body></message>")
        .await;
    let m = a
        .expect(|e| e.name == "message")
        .await
        .expect("alice's message");
    assert_eq!(body(&m).as_deref(), Some("hello back"));

    // The operator's view: the core, both edges with a session each, and
    // every shard led by the core.
    let st = cluster.status();
    let row = |id: &str| {
        st.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(row("1").get(1).copied(), Some("core"), "{st}");
    for edge in ["2", "3"] {
        let r = row(edge);
        assert_eq!(r.get(1).copied(), Some("edge"), "{st}");
        assert_eq!(r.get(3).copied(), Some("ok"), "{st}");
        assert_eq!(
            r.get(4).copied(),
            Some("1"),
            "one session on edge {edge}: {st}"
        );
    }
    assert!(st.contains("shards: 16"), "{st}");
    assert!(st.contains("0-15      leader 1     replicas 1"), "{st}");

    // Kill bob's edge: alice sees him go unavailable (RFC 6121 §4.5.2).
    drop(edge_b);
    a.expect(|e| is_presence_from(e, "bob@localhost/b", Some("unavailable")))
        .await
        .expect("bob goes unavailable when his edge dies");
    let st = cluster.status();
    assert!(
        !st.lines().any(|l| l.split_whitespace().next() == Some("3")),
        "the dead edge is gone: {st}"
    );

    // Sent while bob has no session: stored offline by the core.
    a.send("<message to='bob@localhost' type='chat'><body>while you were out</body></message>")
        .await;
    let (_edge_c, addr_c) = cluster.edge(4);
    let mut b = Client::login(addr_c, "bob@localhost", PW, "b2")
        .await
        .expect("bob logs in again through another edge");
    b.send("<presence/>").await;
    let m = b
        .expect(|e| e.name == "message")
        .await
        .expect("the offline message");
    assert_eq!(body(&m).as_deref(), Some("while you were out"));
    a.expect(|e| is_presence_from(e, "bob@localhost/b2", None))
        .await
        .expect("alice sees bob back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_on_one_edge_and_log_in_on_another() {
    let cluster = Cluster::start();
    let (_edge_a, addr_a) = cluster.edge(2);
    let (_edge_b, addr_b) = cluster.edge(3);

    // XEP-0077 before authentication, answered by the core.
    let mut c = Client::connect(addr_a).await;
    c.open("localhost").await.expect("open");
    c.starttls().await.expect("starttls");
    c.open("localhost").await.expect("reopen");
    c.send("<iq type='get' id='g1'><query xmlns='jabber:iq:register'/></iq>")
        .await;
    let form = c
        .expect(|e| e.attr("id") == Some("g1"))
        .await
        .expect("the registration form");
    assert_eq!(form.attr("type"), Some("result"));
    assert!(
        form.child("query", "jabber:iq:register")
            .and_then(|q| q.child("password", "jabber:iq:register"))
            .is_some()
    );
    c.send("<iq type='set' id='s1'><query xmlns='jabber:iq:register'><username>carol</username><password>carol's secret</password></query></iq>").await;
    let done = c
        .expect(|e| e.attr("id") == Some("s1"))
        .await
        .expect("registration result");
    assert_eq!(done.attr("type"), Some("result"));
    c.send("<iq type='set' id='s2'><query xmlns='jabber:iq:register'><username>carol</username><password>other</password></query></iq>").await;
    let again = c
        .expect(|e| e.attr("id") == Some("s2"))
        .await
        .expect("second registration answer");
    assert_eq!(again.attr("type"), Some("error"), "the name is taken");

    // SCRAM on the other edge uses the credentials stored by the core.
    let mut carol = Client::login(addr_b, "carol@localhost", "carol's secret", "x")
        .await
        .expect("carol logs in through the other edge");
    carol
        .send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let pong = carol
        .expect(|e| e.attr("id") == Some("p1"))
        .await
        .expect("the server answers");
    assert_eq!(pong.attr("type"), Some("result"));
    assert!(
        Client::login(addr_b, "carol@localhost", "wrong", "y")
            .await
            .is_err(),
        "a wrong password fails"
    );
}

/// `x` (`xj`) subscribes to `y` (`yj`), who approves; `x` gets `y`'s presence.
async fn subscribe(x: &mut Client, y: &mut Client, xj: &str, yj: &str) {
    x.send(&format!("<presence to='{yj}' type='subscribe'/>"))
        .await;
    y.expect(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .await
        .expect("request");
    y.send(&format!("<presence to='{xj}' type='subscribed'/>"))
        .await;
    x.expect(|e| is_presence_from(e, yj, None))
        .await
        .expect("presence after approval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_edge_is_dropped_a_lost_core_ends_sessions_and_a_restarted_core_is_found_again() {
    let mut cluster = Cluster::start();
    cluster.add_user("alice@localhost");
    cluster.add_user("bob@localhost");
    let (edge_a, addr_a) = cluster.edge(2);
    let (edge_b, addr_b) = cluster.edge(3);
    let mut a = Client::online(addr_a, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut b = Client::online(addr_b, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    // Mutual subscription, so that each sees the other's presence.
    subscribe(&mut a, &mut b, "alice@localhost", "bob@localhost").await;
    subscribe(&mut b, &mut a, "bob@localhost", "alice@localhost").await;

    // Edge 3 hangs (SIGSTOP: its sockets stay open, nothing answers). The
    // core stops hearing its HTTP/2 pings and drops it within the
    // liveness time (2 s here): alice sees bob go unavailable.
    signal(&edge_b, "STOP");
    let started = std::time::Instant::now();
    a.expect(|e| is_presence_from(e, "bob@localhost/b", Some("unavailable")))
        .await
        .expect("bob goes unavailable while his edge hangs");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "dropped after {waited:?}, liveness is 2 s"
    );
    // When it wakes up, the edge finds its stream gone and ends bob's
    // stream with an error: his client reconnects.
    signal(&edge_b, "CONT");
    let cond = b.stream_error().await.expect("bob's stream ends");
    assert_eq!(cond, "internal-server-error");
    drop(edge_b);

    // The core dies: edge 2 ends alice's stream rather than keep a session
    // that nothing routes to.
    let core = std::mem::replace(
        &mut cluster.core,
        Proc(Command::new("true").spawn().expect("spawn")),
    );
    drop(core);
    let cond = a.stream_error().await.expect("alice's stream ends");
    assert_eq!(cond, "internal-server-error");

    // The core comes back on its data and address: the edge finds it
    // again by itself, alice logs in through it, and her roster (durable
    // data of the core) is as it was.
    let cfg = config(
        cluster.dir.path(),
        "core",
        &format!(
            "[cluster]\nrole = \"core\"\nnode_id = 1\nlisten = \"{}\"\nliveness_secs = 2\n",
            cluster.core_addr
        ),
    );
    let (core, _) = start(&cfg, "cluster listener (gRPC)");
    cluster.core = core;
    let started = std::time::Instant::now();
    let mut a = loop {
        match Client::login(addr_a, "alice@localhost", PW, "a2").await {
            Ok(c) => break c,
            Err(e) if started.elapsed() > Duration::from_secs(20) => {
                panic!("alice cannot log in through edge 2 after the core restart: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    a.send("<iq type='get' id='r3'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let roster = a
        .expect(|e| e.attr("id") == Some("r3"))
        .await
        .expect("roster after the core restart");
    let item = roster
        .child("query", "jabber:iq:roster")
        .and_then(|q| {
            q.elements()
                .find(|i| i.attr("jid") == Some("bob@localhost"))
        })
        .expect("bob is still in alice's roster");
    assert_eq!(item.attr("subscription"), Some("both"));
    drop(edge_a);
}

/// Three core processes that list each other as peers, with their
/// configurations and gRPC addresses, once each serves its admin socket.
/// Three core nodes and two edges, with shard leaders spread over the
/// core nodes: users whose shards two different nodes lead, on different
/// edges, subscribe, see each other's presence and chat (each stanza goes
/// from its edge to the leader of its shard, and between core nodes where
/// a contact's shard is led elsewhere). Killing the core node that leads
/// one user's shard does not end that user's session: it was replicated,
/// and the shard's new leader serves it (messages both ways, presence);
/// when the user logs out, the contact sees it; a message sent meanwhile
/// is committed by the new leader and delivered at the next login; the
/// killed node, started again, catches up and takes its shards back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_follow_shard_leaders_over_three_core_nodes() {
    let mut cores = Cores::start().await;
    cores.wait_balanced(0).await;
    // alice's shard is led by node 2, bob's by node 3.
    let alice = user_in_shard("alice", 1);
    let bob = user_in_shard("bob", 2);
    for u in [&alice, &bob] {
        let (ok, out) = xmppd(&cores.cfgs[0], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let (_edge_a, addr_a) = cores.edge(11, 0);
    let (_edge_b, addr_b) = cores.edge(12, 1);
    let mut a = Client::online(addr_a, &alice, PW, "a")
        .await
        .expect("alice logs in through edge 11");
    let mut b = Client::online(addr_b, &bob, PW, "b")
        .await
        .expect("bob logs in through edge 12");
    subscribe(&mut a, &mut b, &alice, &bob).await;
    subscribe(&mut b, &mut a, &bob, &alice).await;
    for i in 0..20 {
        a.send(&format!(
            "<message to='{bob}' type='chat' id='a{i}'><body>a{i}</body></message>"
        ))
        .await;
    }
    for i in 0..20 {
        let m = b
            .expect(|e| e.name == "message")
            .await
            .expect("bob's message");
        assert_eq!(body(&m).as_deref(), Some(format!("a{i}").as_str()));
    }
    b.send(&format!(
        "<message to='{alice}' type='chat'><body>back</body></message>"
    ))
    .await;
    let m = a
        .expect(|e| e.name == "message")
        .await
        .expect("alice's message");
    assert_eq!(body(&m).as_deref(), Some("back"));

    // Kill node 3, the leader of bob's shard. Bob's session was
    // replicated with his shard: the new leader serves it, and his stream
    // goes on; alice sees no unavailable presence.
    cores.kill(2);
    let took = until(
        "a new leader for bob's shard",
        Duration::from_secs(15),
        || leader_in_status(&cores.status(0).1, 2).is_some_and(|l| l != 3),
    )
    .await;
    eprintln!("bob's shard has a new leader after {took:?}");
    a.send(&format!(
        "<message to='{bob}/b' type='chat'><body>still there?</body></message>"
    ))
    .await;
    let m = b
        .expect(|e| e.name == "message")
        .await
        .expect("bob's stream goes on: the new leader delivers to it");
    assert_eq!(body(&m).as_deref(), Some("still there?"));
    b.send(&format!(
        "<message to='{alice}' type='chat'><body>yes</body></message>"
    ))
    .await;
    let m = a
        .expect(|e| e.name == "message")
        .await
        .expect("bob's answer");
    assert_eq!(body(&m).as_deref(), Some("yes"));
    // His session is still available there: alice's new presence reaches
    // him (his shard delivers presence to available resources only).
    a.send("<presence><show>away</show></presence>").await;
    let p = b
        .expect(|e| is_presence_from(e, &format!("{alice}/a"), None))
        .await
        .expect("bob gets alice's new presence");
    assert!(p.child("show", proto::ns::CLIENT).is_some());

    // Bob logs out while the shard's lead is on another node: alice sees
    // him go (the unbind reaches the node that serves the session now).
    drop(b);
    a.expect(|e| is_presence_from(e, &format!("{bob}/b"), Some("unavailable")))
        .await
        .expect("alice sees bob go when he logs out");
    // Stored by the new leader while bob is away.
    a.send(&format!(
        "<message to='{bob}' type='chat'><body>while you were out</body></message>"
    ))
    .await;
    let mut b = Client::login(addr_b, &bob, PW, "b2")
        .await
        .expect("bob logs in again");
    b.send("<presence/>").await;
    let m = b
        .expect(|e| e.name == "message")
        .await
        .expect("the offline message");
    assert_eq!(body(&m).as_deref(), Some("while you were out"));
    a.expect(|e| is_presence_from(e, &format!("{bob}/b2"), None))
        .await
        .expect("alice sees bob back");

    // Node 3 comes back, catches up and leads its shards again.
    cores.restart(2).await;
    cores.wait_balanced(0).await;
}

/// kill -9 of a shard's leader while a client sends to a user of that
/// shard who is offline: every message is stored by the shard (committed
/// by a majority before the edge counts it as processed; what the dead
/// node had not confirmed the edge sends again to the new leader), so the
/// user finds all of them on logging in. Duplicates are allowed (a message
/// committed just before the kill is sent again); losses are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_is_lost_when_the_recipients_shard_leader_is_killed_mid_stream() {
    const N: usize = 300;
    let mut cores = Cores::start().await;
    cores.wait_balanced(0).await;
    let alice = user_in_shard("alice", 1); // led by node 2
    let bob = user_in_shard("bob", 2); // led by node 3
    for u in [&alice, &bob] {
        let (ok, out) = xmppd(&cores.cfgs[0], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let (_edge, addr) = cores.edge(21, 0);
    let mut a = Client::online(addr, &alice, PW, "a")
        .await
        .expect("alice logs in");
    let started = std::time::Instant::now();
    let mut killed_at = None;
    for i in 0..N {
        a.send(&format!(
            "<message to='{bob}' type='chat' id='m{i}'><body>m{i}</body></message>"
        ))
        .await;
        if i == N / 3 {
            cores.kill(2);
            killed_at = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A round trip through alice's own shard: everything before it has
    // left her connection.
    a.send("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    a.expect(|e| e.attr("id") == Some("sync"))
        .await
        .expect("ping answered");
    eprintln!(
        "killed node 3 after {killed_at:?}; sent {N} in {:?}",
        started.elapsed()
    );

    let want: std::collections::BTreeSet<String> = (0..N).map(|i| format!("m{i}")).collect();
    let mut got = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    // Log in until every message has arrived (the last ones may still be
    // waiting for the new leader when bob first logs in).
    while got != want && std::time::Instant::now() < deadline {
        let Ok(mut b) = Client::login(addr, &bob, PW, "b").await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        b.send("<presence/>").await;
        while let Ok(Ok(m)) =
            tokio::time::timeout(Duration::from_secs(2), b.expect(|e| e.name == "message")).await
        {
            if let Some(t) = body(&m) {
                got.insert(t);
            }
        }
        drop(b);
    }
    let missing: Vec<&String> = want.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} of {N} lost: {missing:?}",
        missing.len()
    );
}

/// Rolling restart: each core node in turn is stopped with SIGTERM and
/// started again, while alice sends to bob without pause; bob's session
/// (replicated with his shard) survives every restart. A client here
/// has no stream management, so alice counts a message as acknowledged
/// when a ping sent after it is answered (the edge has routed it), and
/// sends again what was not acknowledged when her stream ends, as a
/// client with XEP-0198 would. Every acknowledged message reaches bob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_core_node_loses_no_message() {
    let mut cores = Cores::start().await;
    cores.wait_balanced(0).await;
    let alice = user_in_shard("alice", 1); // led by node 2
    let bob = user_in_shard("bob", 2); // led by node 3
    for u in [&alice, &bob] {
        let (ok, out) = xmppd(&cores.cfgs[0], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let (_edge_a, addr_a) = cores.edge(31, 0);
    let (_edge_b, addr_b) = cores.edge(32, 1);
    let traffic = Traffic::start(addr_a, &alice, addr_b, &bob);

    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        let before = traffic.acked();
        cores.terminate(i);
        cores.restart(i).await;
        cores.wait_balanced((i + 1) % 3).await;
        traffic
            .goes_on(&format!("after node {} restarted", i + 1), before)
            .await;
    }
    let (total, logins) = traffic.finish().await;
    eprintln!("rolling restart: {total} messages acknowledged, bob logged in {logins} times");
    // Sessions are replicated with their shard: bob's stream outlived
    // every node.
    assert_eq!(logins, 1, "bob had to log in again");
}

/// A rolling update as Kubernetes runs it, with the probes deciding when
/// it moves on (no real Kubernetes can run on the test machine: there is
/// no container runtime): the core StatefulSet is replaced from the
/// highest ordinal down, one pod at a time, each stopped with SIGTERM and
/// the next one stopped only once the restarted pod's `/readyz` answers
/// 200; then the edge Deployment (maxSurge 1, maxUnavailable 0): a new
/// edge starts, joins the Service once its `/readyz` says so, and the old
/// one leaves the Service and drains on SIGTERM, its clients reconnecting
/// through the Service. alice and bob chat through it all; every
/// acknowledged message reaches bob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_paced_by_the_readiness_probes_loses_no_message() {
    let mut cores = Cores::start().await;
    let alice = user_in_shard("alice", 4);
    let bob = user_in_shard("bob", 9);
    for u in [&alice, &bob] {
        let (ok, out) = xmppd(&cores.cfgs[0], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let drain = "\n[shutdown]\ndrain_secs = 2\n";
    let ready = |http: SocketAddr, what: String| async move {
        until(&what, Duration::from_secs(60), || {
            probe(http, "/readyz") == 200
        })
        .await
    };
    let mut edges = Vec::new();
    for (id, seed) in [(41, 0), (42, 1)] {
        let (p, addr, http) = cores.edge_with(id, seed, drain);
        ready(http, format!("edge {id} ready")).await;
        edges.push((p, addr));
    }
    let service = Endpoints::new(&edges.iter().map(|e| e.1).collect::<Vec<_>>());
    let traffic = Traffic::start_via(service.clone(), &alice, service.clone(), &bob);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The StatefulSet: ordinals 2, 1, 0.
    for i in (0..3).rev() {
        let before = traffic.acked();
        cores.terminate(i);
        cores.restart(i).await;
        ready(cores.http[i], format!("core pod {i} ready again")).await;
        traffic
            .goes_on(&format!("after core pod {i} came back"), before)
            .await;
    }

    // The Deployment: one new edge up and ready, then one old one gone.
    for (n, id) in [43u64, 44].into_iter().enumerate() {
        let before = traffic.acked();
        let (p, addr, http) = cores.edge_with(id, n, drain);
        ready(http, format!("new edge {id} ready")).await;
        let (mut old, old_addr) = edges.remove(0);
        edges.push((p, addr));
        service.set(&edges.iter().map(|e| e.1).collect::<Vec<_>>());
        signal(&old, "TERM");
        let status = old.0.wait().expect("wait");
        assert!(
            status.success(),
            "old edge at {old_addr} drains and stops: {status}"
        );
        traffic
            .goes_on(&format!("after edge {id} replaced one"), before)
            .await;
    }
    let (total, logins) = traffic.finish().await;
    eprintln!("rolling update: {total} messages acknowledged, bob logged in {logins} times");
    assert!(total > 0);
}

/// alice sends to bob without pause, through two edges, while the test
/// changes the core tier. A client here has no stream management, so
/// alice counts a message as acknowledged when a ping sent after it is
/// answered (the edge has routed it), and sends again what was not
/// acknowledged when her stream ends, as a client with XEP-0198 would.
/// Both log in again if their stream ends. [`Traffic::finish`] checks that every acknowledged message reached
/// bob, online or from offline storage.
struct Traffic {
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    got: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    stop_tx: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop_rx: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sender: tokio::task::JoinHandle<()>,
    receiver: tokio::task::JoinHandle<usize>,
}

/// The addresses clients reach the edges at, as a Kubernetes Service
/// lists its ready pods: a client that (re)connects takes the next one.
#[derive(Clone)]
struct Endpoints(std::sync::Arc<std::sync::Mutex<(Vec<SocketAddr>, usize)>>);

impl Endpoints {
    fn new(addrs: &[SocketAddr]) -> Endpoints {
        Endpoints(std::sync::Arc::new(std::sync::Mutex::new((
            addrs.to_vec(),
            0,
        ))))
    }

    fn next(&self) -> Option<SocketAddr> {
        let mut g = self.0.lock().expect("lock");
        let (addrs, i) = &mut *g;
        if addrs.is_empty() {
            return None;
        }
        *i = (*i + 1) % addrs.len();
        Some(addrs[*i])
    }

    fn set(&self, addrs: &[SocketAddr]) {
        self.0.lock().expect("lock").0 = addrs.to_vec();
    }
}

impl Traffic {
    fn start(addr_a: SocketAddr, alice: &str, addr_b: SocketAddr, bob: &str) -> Traffic {
        Traffic::start_via(
            Endpoints::new(&[addr_a]),
            alice,
            Endpoints::new(&[addr_b]),
            bob,
        )
    }

    /// Traffic whose clients connect to one of `via_a` (alice) and
    /// `via_b` (bob) each time they log in.
    fn start_via(via_a: Endpoints, alice: &str, via_b: Endpoints, bob: &str) -> Traffic {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let got = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let stop_rx = Arc::new(AtomicBool::new(false));
        let receiver = {
            let (got, stop, bob) = (got.clone(), stop_rx.clone(), bob.to_string());
            tokio::spawn(async move {
                let mut logins = 0;
                while !stop.load(Ordering::Relaxed) {
                    let login = match via_b.next() {
                        Some(addr) => Client::login(addr, &bob, PW, "b").await,
                        None => Err(anyhow::anyhow!("no endpoint")),
                    };
                    let Ok(mut b) = login else {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    };
                    logins += 1;
                    if b.send_bytes(b"<presence/>").await.is_err() {
                        continue;
                    }
                    while !stop.load(Ordering::Relaxed) {
                        match tokio::time::timeout(Duration::from_secs(1), b.next_element()).await {
                            Ok(Ok(m)) => {
                                if let Some(t) = body(&m) {
                                    got.lock().expect("lock").insert(t);
                                }
                            }
                            Ok(Err(_)) => break,
                            Err(_) => {}
                        }
                    }
                }
                logins
            })
        };
        let acked = Arc::new(AtomicUsize::new(0));
        let stop_tx = Arc::new(AtomicBool::new(false));
        let sender = {
            let (acked, stop, alice, bob) = (
                acked.clone(),
                stop_tx.clone(),
                alice.to_string(),
                bob.to_string(),
            );
            tokio::spawn(async move {
                'conn: while !stop.load(Ordering::Relaxed) {
                    let login = match via_a.next() {
                        Some(addr) => Client::login(addr, &alice, PW, "a").await,
                        None => Err(anyhow::anyhow!("no endpoint")),
                    };
                    let Ok(mut a) = login else {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        // From the last acknowledged one: a batch, then a ping.
                        let from = acked.load(Ordering::Relaxed);
                        for i in from..from + 10 {
                            let m = format!(
                                "<message to='{bob}' type='chat'><body>m{i}</body></message>"
                            );
                            if a.send_bytes(m.as_bytes()).await.is_err() {
                                continue 'conn;
                            }
                        }
                        let ping = format!(
                            "<iq type='get' id='p{from}'><ping xmlns='urn:xmpp:ping'/></iq>"
                        );
                        if a.send_bytes(ping.as_bytes()).await.is_err() {
                            continue 'conn;
                        }
                        let id = format!("p{from}");
                        match tokio::time::timeout(
                            Duration::from_secs(5),
                            a.expect(|e| e.attr("id") == Some(id.as_str())),
                        )
                        .await
                        {
                            Ok(Ok(_)) => acked.store(from + 10, Ordering::Relaxed),
                            _ => continue 'conn,
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        };
        Traffic {
            acked,
            got,
            stop_tx,
            stop_rx,
            sender,
            receiver,
        }
    }

    fn acked(&self) -> usize {
        self.acked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait until more than `before` messages are acknowledged.
    async fn goes_on(&self, when: &str, before: usize) {
        until(
            &format!("messages go on {when}"),
            Duration::from_secs(30),
            || self.acked() > before,
        )
        .await;
    }

    /// Stop sending, wait for bob to get everything acknowledged, and
    /// check that nothing was lost; (acknowledged, bob's logins).
    async fn finish(mut self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.stop_tx.store(true, Ordering::Relaxed);
        let total = {
            let Traffic { sender, acked, .. } = &mut self;
            sender.await.expect("sender");
            acked.load(Ordering::Relaxed)
        };
        let want: std::collections::BTreeSet<String> =
            (0..total).map(|i| format!("m{i}")).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !want.is_subset(&self.got.lock().expect("lock"))
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.stop_rx.store(true, Ordering::Relaxed);
        let missing: Vec<String> = want
            .difference(&self.got.lock().expect("lock"))
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {total} lost: {missing:?}",
            missing.len()
        );
        let logins = (&mut self.receiver).await.expect("receiver");
        assert!(total >= 100, "only {total} messages acknowledged");
        (total, logins)
    }
}

/// Membership changes while messages flow: a fourth core node is started
/// and added with `xmppd cluster add-node`; each shard then has three
/// replicas out of the four nodes (the default replication), so every
/// node gains or loses replicas, and the new one leads its share.
/// Then node 1 is removed with `xmppd cluster remove-node`: its replicas
/// and leaderships move to the other three and it stops by itself. No
/// acknowledged message is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_and_another_removed_under_traffic_lose_no_message() {
    let mut cores = Cores::start().await;
    cores.wait_balanced(0).await;
    let alice = user_in_shard("alice", 1);
    let bob = user_in_shard("bob", 2);
    for u in [&alice, &bob] {
        let (ok, out) = xmppd(&cores.cfgs[0], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let (_edge_a, addr_a) = cores.edge(41, 0);
    let (_edge_b, addr_b) = cores.edge(42, 1);
    let traffic = Traffic::start(addr_a, &alice, addr_b, &bob);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Node 4 starts, lists node 1 and itself, and waits to be added.
    let before = traffic.acked();
    let i4 = cores.start_joining(4).await;
    let (_, st) = cores.status(i4);
    assert!(st.contains("joining"), "{st}");
    let out = cores.add_node(i4, 4, 1).await;
    assert!(out.contains("members: 1,2,3,4"), "{out}");
    // Three replicas per shard (the default): shard s on nodes s, s+1,
    // s+2 (mod 4, counting from node 1), led by the first.
    let placed = |s: usize| {
        let mut r: Vec<u64> = (0..3).map(|k| ((s + k) % 4) as u64 + 1).collect();
        r.sort_unstable();
        r
    };
    let took = until(
        "three replicas of every shard over four nodes, leaders spread",
        Duration::from_secs(60),
        || {
            let (_, st) = cores.status(1);
            (0..16).all(|s| {
                leader_in_status(&st, s) == Some(s as u64 % 4 + 1)
                    && replicas_in_status(&st, s) == placed(s)
            })
        },
    )
    .await;
    eprintln!("node 4 added and balanced in {took:?}");
    assert!(
        lists_user(&cores.cfgs[i4], &alice),
        "the new node has the accounts made before it joined"
    );
    traffic.goes_on("after node 4 joined", before).await;

    // Node 1 is removed (asked through node 3) and stops by itself.
    let before = traffic.acked();
    let (ok, out) = xmppd(
        &cores.cfgs[0],
        &[
            "cluster",
            "remove-node",
            "1",
            "--core",
            &cores.addrs[2].to_string(),
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("members: 2,3,4"), "{out}");
    let took = until("node 1 stops by itself", Duration::from_secs(60), || {
        cores.procs[0]
            .as_mut()
            .is_some_and(|p| p.0.try_wait().ok().flatten().is_some())
    })
    .await;
    eprintln!("node 1 handed over and stopped {took:?} after remove-node");
    let status = cores.procs[0]
        .take()
        .expect("node 1")
        .0
        .wait()
        .expect("wait");
    assert!(status.success(), "node 1 stops cleanly: {status}");
    until(
        "every shard on nodes 2-4, each with a leader",
        Duration::from_secs(60),
        || {
            let (_, st) = cores.status(1);
            (0..16).all(|s| {
                leader_in_status(&st, s).is_some_and(|l| l != 1)
                    && replicas_in_status(&st, s) == vec![2, 3, 4]
            }) && !st
                .lines()
                .take_while(|l| !l.starts_with("shards:"))
                .any(|l| l.split_whitespace().next() == Some("1"))
        },
    )
    .await;
    traffic.goes_on("after node 1 left", before).await;
    let (total, logins) = traffic.finish().await;
    eprintln!("membership changes: {total} messages acknowledged, bob logged in {logins} times");
}

/// Three `role = "core"` processes listing each other as peers replicate
/// every shard: an account added through any of them (a follower hands
/// the write to the shard's leader) is in all three stores; after `kill -9` of that leader the other two elect a new one within
/// seconds, which has the account and takes new writes; the killed node,
/// started again on its data, catches up on what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_core_nodes_replicate_accounts_and_survive_a_leader_kill() {
    let mut cores = Cores::start().await;
    let cfgs = cores.cfgs.clone();
    let alice = "alice@localhost";
    let shard = router::cluster::shard_of(alice, 16);
    until(
        "alice's shard has a leader",
        Duration::from_secs(30),
        || leader_in_status(&cores.status(0).1, shard).is_some(),
    )
    .await;
    // Leaders move to their preferred nodes first (shard s to node s % 3 + 1).
    cores.wait_balanced(0).await;
    let (_, st) = cores.status(0);
    assert!(st.contains("replicas 1,2,3"), "{st}");
    let leader = leader_in_status(&st, shard).expect("leader") as usize;
    let follower = leader % 3 + 1;

    // Added through a follower, which hands the write to the leader.
    let (ok, out) = xmppd(
        &cfgs[follower - 1],
        &["user", "add", alice, "--password", PW],
    );
    assert!(ok, "{out}");
    let (ok, out) = xmppd(&cfgs[leader - 1], &["user", "add", alice, "--password", PW]);
    assert!(!ok && out.contains("already exists"), "{out}");
    for c in &cfgs {
        until(
            "alice is in every node's store",
            Duration::from_secs(10),
            || lists_user(c, alice),
        )
        .await;
    }

    // kill -9 the leader; a survivor reports a new one for the shard.
    cores.kill(leader - 1);
    let survivor = follower - 1;
    let took = until(
        "a new leader for alice's shard",
        Duration::from_secs(15),
        || leader_in_status(&cores.status(survivor).1, shard).is_some_and(|l| l as usize != leader),
    )
    .await;
    eprintln!("shard fail-over after kill -9 of its leader: {took:?}");
    let mut new_leader = None;
    until("the new leader is stable", Duration::from_secs(15), || {
        new_leader =
            leader_in_status(&cores.status(survivor).1, shard).filter(|l| *l as usize != leader);
        new_leader.is_some()
    })
    .await;
    let new_leader = new_leader.expect("leader") as usize;
    // A user of the same shard, added through the new leader.
    let carol = (0..)
        .map(|i| format!("carol{i}@localhost"))
        .find(|j| router::cluster::shard_of(j, 16) == shard)
        .expect("a name in the shard");
    let (ok, out) = xmppd(
        &cfgs[new_leader - 1],
        &["user", "add", &carol, "--password", PW],
    );
    assert!(ok, "{out}");
    assert!(
        lists_user(&cfgs[survivor], alice),
        "alice survived on the new majority"
    );

    // The killed node comes back on its data and catches up.
    cores.restart(leader - 1).await;
    until(
        "the restarted node has carol",
        Duration::from_secs(30),
        || lists_user(&cfgs[leader - 1], &carol),
    )
    .await;
    assert!(lists_user(&cfgs[leader - 1], alice));
    let (ok, st) = cores.status(leader - 1);
    assert!(ok && leader_in_status(&st, shard).is_some(), "{st}");
}

/// A core node that joins after the shards' logs were purged (a snapshot
/// point every 10 entries here) is sent each of its shards' data as a
/// snapshot, read from the leader's RocksDB when it is sent, and then
/// follows the log: it has every account made before it joined and
/// those made after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_node_joining_after_the_log_was_purged_is_sent_a_snapshot() {
    let mut cores = Cores::start_with("snapshot_logs = 10\n").await;
    cores.wait_balanced(0).await;
    // Shard 1: on nodes 1-3 now, on nodes 2, 3 and 4 once node 4 is in.
    let in_shard = |prefix: &str, n: usize| -> Vec<String> {
        (0..)
            .map(|i| format!("{prefix}{i}@localhost"))
            .filter(|j| router::cluster::shard_of(j, 16) == 1)
            .take(n)
            .collect()
    };
    let early = in_shard("early", 40);
    for u in &early {
        let (ok, out) = xmppd(&cores.cfgs[1], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    for i in 0..3 {
        until(
            "every node has the early accounts",
            Duration::from_secs(10),
            || early.iter().all(|u| lists_user(&cores.cfgs[i], u)),
        )
        .await;
    }
    let i4 = cores.start_joining(4).await;
    cores.add_node(i4, 4, 1).await;
    let took = until(
        "node 4 is a replica of shard 1",
        Duration::from_secs(60),
        || replicas_in_status(&cores.status(1).1, 1).contains(&4),
    )
    .await;
    eprintln!("node 4 holds shard 1 {took:?} after it was up");
    // An account made now is committed by two of nodes 2, 3 and 4.
    let after = &in_shard("after", 41)[40];
    let (ok, out) = xmppd(&cores.cfgs[1], &["user", "add", after, "--password", PW]);
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Node 4's own store, read with the node stopped (a running node
    // would ask the cluster), has the accounts from the snapshot and the
    // one it followed the log for.
    cores.kill(i4);
    let (ok, out) = xmppd(&cores.cfgs[i4], &["user", "list"]);
    assert!(ok, "{out}");
    let listed: std::collections::BTreeSet<&str> = out.lines().map(str::trim).collect();
    let missing: Vec<&String> = early
        .iter()
        .filter(|u| !listed.contains(u.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in node 4's store: {missing:?}");
    assert!(listed.contains(after.as_str()), "{out}");
}

/// A member whose first start comes after the other two formed the
/// cluster (a slow pod, a node started by hand later) joins them: it has
/// never held data, so it is not taken for one that lost its volume.
/// Once it has held data, a start on an emptied volume is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_starts_after_the_others_formed_the_cluster_joins_them() {
    let mut cores = Cores::configure("localhost", "");
    for i in 0..2 {
        cores.procs[i] = Some(start(&cores.cfgs[i], "cluster listener (gRPC)").0);
    }
    // Nodes 1 and 2 are a majority of three: they elect leaders and
    // serve without node 3.
    for i in 0..2 {
        cores.wait_admin(i).await;
    }
    until(
        "nodes 1 and 2 lead every shard",
        Duration::from_secs(30),
        || {
            let (_, st) = cores.status(0);
            st.contains("meta leader:") && (0..16).all(|s| leader_in_status(&st, s).is_some())
        },
    )
    .await;
    cores.procs[2] = Some(start(&cores.cfgs[2], "cluster listener (gRPC)").0);
    cores.wait_admin(2).await;
    // Node 3 catches up and takes the lead of its shards.
    cores.wait_balanced(0).await;
    let p = cores.procs[2].as_mut().expect("node 3");
    assert!(p.0.try_wait().expect("wait").is_none(), "node 3 runs");

    // Node 3's data is recorded in the meta group (by node 3 and by the
    // meta leader, each within a publish round of 200 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    cores.kill(2);
    std::fs::remove_dir_all(cores.dir.path().join("core3")).expect("wipe node 3's data");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cores.cfgs[2])
        .arg("serve")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run xmppd");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("has no cluster data here"), "{text}");
}

/// Message Carbons (XEP-0280) across a cluster: alice's two sessions on
/// two edges, bob's shard led by another core node than hers. What bob
/// sends to one of alice's sessions, and what one of them sends to bob,
/// the other gets a copy of; after the leader of alice's shard is killed,
/// the new leader still knows which sessions have carbons on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carbons_reach_a_users_sessions_on_other_edges() {
    const CARBONS: &str = "urn:xmpp:carbons:2";
    let mut cores = Cores::start().await;
    cores.wait_balanced(0).await;
    // alice's shard is led by node 2, bob's by node 3.
    let alice = user_in_shard("alice", 1);
    let bob = user_in_shard("bob", 2);
    for u in [&alice, &bob] {
        let (ok, out) = xmppd(&cores.cfgs[0], &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    let (_edge_a, addr_a) = cores.edge(21, 0);
    let (_edge_b, addr_b) = cores.edge(22, 2);
    let mut phone = Client::online(addr_a, &alice, PW, "phone")
        .await
        .expect("phone");
    let mut desk = Client::online(addr_b, &alice, PW, "desk")
        .await
        .expect("desk");
    let mut b = Client::online(addr_a, &bob, PW, "b").await.expect("bob");
    for (c, id) in [(&mut phone, "e1"), (&mut desk, "e2")] {
        c.send(&format!(
            "<iq type='set' id='{id}'><enable xmlns='{CARBONS}'/></iq>"
        ))
        .await;
        let r = c
            .expect(|e| e.attr("id") == Some(id))
            .await
            .expect("enabled");
        assert_eq!(r.attr("type"), Some("result"));
    }
    let carbon = |e: &Element, way: &str| -> Option<String> {
        e.child(way, CARBONS)
            .and_then(|w| w.child("forwarded", "urn:xmpp:forward:0"))
            .and_then(|f| f.child("message", proto::ns::CLIENT))
            .and_then(body)
    };
    for round in ["before", "after"] {
        b.send(&format!(
            "<message to='{alice}/phone' type='chat'><body>in {round}</body></message>"
        ))
        .await;
        // A message whose sender's edge had no confirmation yet when
        // node 2 died is sent again (at least once): a second copy of a
        // "before" message may come first in the "after" round.
        let text = format!("in {round}");
        phone
            .expect(|e| e.name == "message" && body(e).as_deref() == Some(text.as_str()))
            .await
            .expect("the message");
        let c = desk
            .expect(|e| e.name == "message" && carbon(e, "received").as_deref() == Some(&text))
            .await
            .expect("a received carbon on the other edge");
        assert_eq!(c.attr("from"), Some(alice.as_str()));

        desk.send(&format!(
            "<message to='{bob}' type='chat'><body>out {round}</body></message>"
        ))
        .await;
        let text = format!("out {round}");
        b.expect(|e| e.name == "message" && body(e).as_deref() == Some(text.as_str()))
            .await
            .expect("bob's message");
        phone
            .expect(|e| e.name == "message" && carbon(e, "sent").as_deref() == Some(&text))
            .await
            .expect("a sent carbon on the other edge");

        if round == "before" {
            // Node 2, the leader of alice's shard, dies: her sessions
            // (carbons on) were replicated with the shard.
            cores.kill(1);
            until(
                "a new leader for alice's shard",
                Duration::from_secs(15),
                || leader_in_status(&cores.status(0).1, 1).is_some_and(|l| l != 2),
            )
            .await;
        }
    }
}
