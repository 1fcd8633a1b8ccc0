//! The core's shards commit their durable writes through their Raft
//! groups: on a real RocksDB in a temporary directory, a change appears in
//! the shard's log (its applied index moves) before it is acknowledged,
//! and everything committed is there after the core restarts on the same
//! store, where each single-member group elects its node again.

mod common;

use std::time::Duration;

use proto::BareJid;
use router::cluster::ShardGroup;
use router::{Core, CoreConfig};

fn applied(groups: &[ShardGroup]) -> u64 {
    groups.iter().map(|g| g.applied.unwrap_or(0)).sum()
}

/// The applied indexes once the groups are quiet (an election's blank
/// entry may still be applying right after the start).
async fn settled(core: &Core) -> u64 {
    let mut last = applied(&core.shard_groups());
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = applied(&core.shard_groups());
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_changes_go_through_the_shard_log_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = CoreConfig {
        shards: 4,
        ..CoreConfig::default()
    };
    let alice = BareJid::parse("alice@localhost").expect("jid");
    {
        let store = router::open_store(dir.path(), false, 100).expect("store");
        let core = Core::start(cfg.clone(), store).await.expect("start");
        let groups = core.shard_groups();
        assert_eq!(groups.len(), 4);
        for g in &groups {
            assert_eq!(g.leader, Some(1), "{g:?}");
            assert_eq!(g.replicas, vec![1], "{g:?}");
        }
        let before = settled(&core).await;
        core.add_account(&alice, "correct horse")
            .await
            .expect("add");
        assert_eq!(settled(&core).await, before + 1, "one log entry");
        assert!(core.accounts().exists(&alice).expect("exists"));
        // A second registration of the same name is refused and writes nothing.
        let again = core.add_account(&alice, "another password").await;
        assert!(
            matches!(again, Err(router::AccountError::Exists(_))),
            "{again:?}"
        );
        assert_eq!(settled(&core).await, before + 1);
        core.set_password(&alice, "battery staple")
            .await
            .expect("passwd");
        assert_eq!(settled(&core).await, before + 2);
        core.shutdown().await;
    }
    // Restart on the same store: the groups come back with their logs.
    let store = router::open_store(dir.path(), false, 100).expect("reopen");
    let core = tokio::time::timeout(Duration::from_secs(30), Core::start(cfg, store))
        .await
        .expect("restart in time")
        .expect("restart");
    let groups = core.shard_groups();
    assert!(groups.iter().all(|g| g.leader == Some(1)), "{groups:?}");
    let creds = core
        .accounts()
        .credentials(&alice)
        .expect("read")
        .expect("alice is still there");
    assert!(
        creds.verify_plain("battery staple"),
        "the new password was kept"
    );
    core.delete_account(&alice).await.expect("delete");
    assert!(!core.accounts().exists(&alice).expect("exists"));
    core.shutdown().await;
}

struct Node {
    id: u64,
    dir: std::path::PathBuf,
    addr: std::net::SocketAddr,
    core: Core,
    server: tokio::task::JoinHandle<()>,
    stop_server: tokio::sync::oneshot::Sender<()>,
}

fn cluster_cfg(id: u64, addr: std::net::SocketAddr, peers: &[(u64, String)]) -> CoreConfig {
    CoreConfig {
        shards: 4,
        node_id: id,
        raft_addr: addr.to_string(),
        peers: peers.to_vec(),
        heartbeat_ms: 50,
        ..CoreConfig::default()
    }
}

async fn open(dir: &std::path::Path) -> router::Store {
    // A stopped node's database closes when its last handle goes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match router::open_store(dir, false, 100) {
            Ok(s) => return s,
            Err(e) if std::time::Instant::now() > deadline => panic!("reopen: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Serve this node's Raft groups on `listener`, then start its core.
async fn boot(
    id: u64,
    dir: std::path::PathBuf,
    listener: tokio::net::TcpListener,
    peers: Vec<(u64, String)>,
) -> Node {
    let addr = listener.local_addr().expect("addr");
    let groups = router::cluster::raft::Groups::default();
    let store = open(&dir).await;
    let core = Core::start_with(cluster_cfg(id, addr, &peers), store, &groups)
        .await
        .expect("core start");
    // The Raft groups and the admin calls (account changes handed on to
    // a shard's leader), as a core node serves them.
    let raft = router::cluster::raft::RaftService::new(groups.clone());
    let admin = router::service::CoreService::new(core.clone(), id, addr.to_string());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(raft.server())
            .add_service(admin.admin_server())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stop_rx.await;
                },
            )
            .await;
    });
    core.wait_for_leaders(Duration::from_secs(30))
        .await
        .expect("leaders");
    Node {
        id,
        dir,
        addr,
        core,
        server,
        stop_server: stop_tx,
    }
}

async fn stop(n: Node) -> (u64, std::path::PathBuf, std::net::SocketAddr) {
    // A graceful stop closes the connections, whose tasks hold the core
    // (and so the store) otherwise.
    let _ = n.stop_server.send(());
    let mut server = n.server;
    if tokio::time::timeout(Duration::from_secs(5), &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
    n.core.shutdown().await;
    (n.id, n.dir, n.addr)
}

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: not within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leader_of(nodes: &[Node], shard: usize) -> Option<u64> {
    let seen: Vec<Option<u64>> = nodes
        .iter()
        .map(|n| n.core.shard_groups()[shard].leader)
        .collect();
    let l = seen[0]?;
    (seen.iter().all(|x| *x == Some(l)) && nodes.iter().any(|n| n.id == l)).then_some(l)
}

/// Three core nodes, each with its own RocksDB and Raft gRPC server on a
/// loopback port, replicate every shard: an account change asked of a
/// follower is made by the shard's leader and reaches the other two
/// stores, the shard survives its leader's stop (a new leader
/// with the data accepts writes), and the stopped node catches up when it
/// comes back on its database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_core_nodes_replicate_shard_data_and_survive_a_leader_stop() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(
            tokio::net::TcpListener::bind(common::stable_addr())
                .await
                .expect("bind"),
        );
    }
    let peers: Vec<(u64, String)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().expect("addr").to_string()))
        .collect();
    let boots = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| boot(i as u64 + 1, dirs[i].path().to_path_buf(), l, peers.clone()));
    let mut nodes = futures::future::join_all(boots).await;
    for n in &nodes {
        let gs = n.core.shard_groups();
        assert!(gs.iter().all(|g| g.replicas == vec![1, 2, 3]), "{gs:?}");
    }

    let alice = BareJid::parse("alice@localhost").expect("jid");
    let shard = router::cluster::shard_of(alice.as_str(), 4);
    eventually("one leader for alice's shard", || {
        leader_of(&nodes, shard).is_some()
    })
    .await;
    let leader = leader_of(&nodes, shard).expect("leader");
    let li = nodes
        .iter()
        .position(|n| n.id == leader)
        .expect("leader node");

    // A follower hands the change to the leader, which makes it.
    let fi = (li + 1) % 3;
    nodes[fi]
        .core
        .add_account(&alice, "correct horse")
        .await
        .expect("a follower's change goes through the leader");
    assert!(nodes[li].core.accounts().exists(&alice).expect("read"));
    let again = nodes[li].core.add_account(&alice, "correct horse").await;
    assert!(
        matches!(again, Err(router::AccountError::Exists(_))),
        "{again:?}"
    );
    for n in &nodes {
        let core = n.core.clone();
        let a = alice.clone();
        eventually("alice replicated to every store", move || {
            core.accounts().exists(&a).unwrap_or(false)
        })
        .await;
    }

    // Stop the leader: the other two elect a new one that has alice.
    let gone = stop(nodes.remove(li)).await;
    eventually("a new leader for alice's shard", || {
        leader_of(&nodes, shard).is_some_and(|l| l != gone.0)
    })
    .await;
    let nl = leader_of(&nodes, shard).expect("new leader");
    let ni = nodes.iter().position(|n| n.id == nl).expect("node");
    assert!(nodes[ni].core.accounts().exists(&alice).expect("read"));
    nodes[ni]
        .core
        .set_password(&alice, "battery staple")
        .await
        .expect("the new leader commits");

    // The stopped node comes back on its database and catches up.
    let listener = tokio::net::TcpListener::bind(gone.2).await.expect("rebind");
    let back = boot(gone.0, gone.1, listener, peers.clone()).await;
    let core = back.core.clone();
    let a = alice.clone();
    eventually("the restarted node has the new password", move || {
        core.accounts()
            .credentials(&a)
            .ok()
            .flatten()
            .is_some_and(|c| c.verify_plain("battery staple"))
    })
    .await;
    nodes.push(back);
    for n in nodes {
        stop(n).await;
    }
}

/// The number of shards is recorded when a node first starts: started
/// again with another number on the same data, it refuses to run (its
/// users' data would be looked for in the wrong shards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_another_number_of_shards_on_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with = |shards| CoreConfig {
        shards,
        ..CoreConfig::default()
    };
    {
        let store = open(dir.path()).await;
        let core = Core::start(with(4), store).await.expect("first start");
        core.shutdown().await;
    }
    let store = open(dir.path()).await;
    let err = match Core::start(with(8), store).await {
        Ok(_) => panic!("started with 8 shards on data made with 4"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("4 shards") && err.contains("cluster.shards"),
        "{err}"
    );
    let store = open(dir.path()).await;
    Core::start(with(4), store)
        .await
        .expect("the recorded number still starts")
        .shutdown()
        .await;
}
