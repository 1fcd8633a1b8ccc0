//! Three core nodes in one test process, each with its own RocksDB in a
//! temporary directory and its own gRPC server on a loopback port chosen by
//! the OS, replicating one Raft group: a write reaches every replica; when
//! the leader stops, the other two elect a new one within seconds and keep
//! accepting writes; the stopped node, restarted on its database, catches
//! up on what it missed.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use router::cluster::raft::{Faults, Groups, Network, Raft, RaftService, config};
use storage::raft::{Command, Op};
use storage::{Store, StoreOptions};
use tokio::task::JoinHandle;

const GROUP: u64 = 1;

struct Node {
    id: u64,
    addr: SocketAddr,
    dir: PathBuf,
    store: Store,
    raft: Raft,
    server: JoinHandle<()>,
}

async fn open(dir: &Path) -> Store {
    // A stopped node's database closes when its last handle goes; wait
    // for that rather than for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir, StoreOptions::default()) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("reopen: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn start(id: u64, dir: PathBuf, addr: SocketAddr) -> Node {
    start_with(id, dir, addr, Faults::default()).await
}

async fn start_with(id: u64, dir: PathBuf, addr: SocketAddr, faults: Faults) -> Node {
    let store = open(&dir).await;
    let (log, sm) = store.raft_group(GROUP, true).expect("group");
    let net = Network::with_faults(GROUP, id, faults);
    let raft = Raft::new(id, config(50, 5000).expect("config"), net, log, sm)
        .await
        .expect("raft");
    let groups = Groups::default();
    groups.insert(GROUP, raft.clone());
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(RaftService::new(groups).server())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    Node {
        id,
        addr,
        dir,
        store,
        raft,
        server,
    }
}

async fn stop(n: Node) -> (u64, PathBuf, SocketAddr) {
    n.server.abort();
    let _ = n.server.await;
    n.raft.shutdown().await.expect("shutdown");
    (n.id, n.dir, n.addr)
}

fn value(store: &Store, key: &str) -> Option<String> {
    let (_, sm) = store.raft_group(GROUP, false).expect("group");
    sm.get(key.as_bytes())
        .expect("read")
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

async fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn leader_of(nodes: &[Node]) -> Option<u64> {
    let leaders: Vec<u64> = nodes
        .iter()
        .filter_map(|n| {
            let m = n.raft.metrics().borrow().clone();
            (m.current_leader == Some(n.id)).then_some(n.id)
        })
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

fn put(key: &str, value: &str) -> Command {
    Command {
        ops: vec![Op::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_survives_losing_its_leader_and_the_lost_node_catches_up() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let any = common::stable_addr();
        nodes.push(start(i as u64 + 1, d.path().to_path_buf(), any).await);
    }
    let members: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .map(|n| (n.id, BasicNode::new(n.addr.to_string())))
        .collect();
    nodes[0].raft.initialize(members).await.expect("initialize");
    wait_until("a leader", Duration::from_secs(10), || {
        leader_of(&nodes).is_some()
    })
    .await;

    // A write through the leader reaches every replica.
    let leader = leader_of(&nodes).expect("leader");
    let l = nodes.iter().find(|n| n.id == leader).expect("leader node");
    l.raft
        .client_write(put("alice", "roster v1"))
        .await
        .expect("write");
    for n in &nodes {
        let s = n.store.clone();
        wait_until("replicated", Duration::from_secs(10), || {
            value(&s, "alice").as_deref() == Some("roster v1")
        })
        .await;
    }

    // The leader stops: the other two elect a new one.
    let i = nodes.iter().position(|n| n.id == leader).expect("index");
    let stopped = stop(nodes.remove(i)).await;
    let failover = wait_until("a new leader", Duration::from_secs(10), || {
        leader_of(&nodes).is_some_and(|l| l != leader)
    })
    .await;
    eprintln!("fail-over took {failover:?}");
    let new_leader = leader_of(&nodes).expect("new leader");
    let l = nodes.iter().find(|n| n.id == new_leader).expect("node");
    for i in 0..20 {
        l.raft
            .client_write(put(&format!("k{i}"), "after fail-over"))
            .await
            .expect("write after fail-over");
    }
    for n in &nodes {
        let s = n.store.clone();
        wait_until("replicated", Duration::from_secs(10), || {
            value(&s, "k19").is_some()
        })
        .await;
    }

    // The stopped node comes back on its own database and address and
    // catches up on the 20 writes it missed.
    let (id, dir, addr) = stopped;
    let back = start(id, dir, addr).await;
    let s = back.store.clone();
    wait_until("caught up", Duration::from_secs(15), || {
        (0..20).all(|i| value(&s, &format!("k{i}")).is_some())
            && value(&s, "alice").as_deref() == Some("roster v1")
    })
    .await;
    nodes.push(back);
    for n in nodes {
        stop(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_taking_writes_the_majority_goes_on_and_healing_converges() {
    let faults = Faults::default();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let any = common::stable_addr();
        nodes.push(start_with(i as u64 + 1, d.path().to_path_buf(), any, faults.clone()).await);
    }
    let members: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .map(|n| (n.id, BasicNode::new(n.addr.to_string())))
        .collect();
    nodes[0].raft.initialize(members).await.expect("initialize");
    wait_until("a leader", Duration::from_secs(10), || {
        leader_of(&nodes).is_some()
    })
    .await;
    let old = leader_of(&nodes).expect("leader");
    let others: Vec<u64> = nodes.iter().map(|n| n.id).filter(|i| *i != old).collect();
    let old_node = nodes.iter().find(|n| n.id == old).expect("node");
    old_node
        .raft
        .client_write(put("before", "1"))
        .await
        .expect("write before the partition");

    // Cut the leader off: it is a minority of one.
    faults.isolate(old, &others);
    // Its writes cannot commit: they neither succeed nor hang forever.
    let w = tokio::time::timeout(
        Duration::from_secs(2),
        old_node.raft.client_write(put("minority", "lost")),
    )
    .await;
    assert!(
        !matches!(w, Ok(Ok(_))),
        "a write on the minority side must not be acknowledged"
    );
    // The majority elects a leader of its own and takes writes.
    let majority: Vec<&Node> = nodes.iter().filter(|n| n.id != old).collect();
    wait_until("a majority leader", Duration::from_secs(10), || {
        majority.iter().any(|n| {
            let m = n.raft.metrics().borrow().clone();
            m.current_leader == Some(n.id)
        })
    })
    .await;
    let new = majority
        .iter()
        .find(|n| n.raft.metrics().borrow().current_leader == Some(n.id))
        .expect("majority leader");
    new.raft
        .client_write(put("majority", "kept"))
        .await
        .expect("majority write");

    // Heal: everyone converges on the majority's log; the minority's
    // unacknowledged write is gone everywhere.
    faults.heal();
    for n in &nodes {
        let s = n.store.clone();
        wait_until("converged", Duration::from_secs(15), || {
            value(&s, "majority").as_deref() == Some("kept")
                && value(&s, "before").as_deref() == Some("1")
        })
        .await;
        assert_eq!(value(&n.store, "minority"), None, "node {}", n.id);
    }
    wait_until("one leader", Duration::from_secs(10), || {
        leader_of(&nodes).is_some()
    })
    .await;
    for n in nodes {
        stop(n).await;
    }
}
