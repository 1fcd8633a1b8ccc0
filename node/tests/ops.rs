//! Operating a node: the HTTP listener's `/metrics` move with what clients
//! do, and its probes say when the node can serve (an edge only while it
//! reaches a core node). Real sockets and, for the edge, real processes.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::procs::*;
use common::{Client, TestServer};
use tokio::io::AsyncReadExt;

const PW: &str = "secret-pw";

/// One HTTP/1.1 GET over a plain socket: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the HTTP listener");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(from.parse().expect("ip"), 0))
        .expect("bind a loopback source");
    sock.connect(addr).await.expect("connect")
}

async fn get_async(addr: SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || get(addr, path))
        .await
        .expect("join")
}

/// The value of one series (`name` or `name{labels}`) in a scrape.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{series} not in the scrape:\n{text}"))
}

#[tokio::test]
async fn metrics_follow_what_clients_do() {
    let mut srv = TestServer::start().await;
    let http = srv
        .server
        .as_ref()
        .and_then(|s| s.http_addr)
        .expect("an HTTP listener");
    srv.add_user("alice@localhost", PW);
    srv.add_user("bob@localhost", PW);
    for probe in ["/livez", "/startupz", "/readyz"] {
        assert_eq!(
            get_async(http, probe).await,
            (200, "ok\n".into()),
            "{probe}"
        );
    }
    assert_eq!(get_async(http, "/nothing").await.0, 404);
    let (status, before) = get_async(http, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(value(&before, "xmppd_sessions"), 0.0);
    assert_eq!(
        value(&before, "xmppd_client_connections{listener=\"c2s\"}"),
        0.0
    );
    assert_eq!(value(&before, "xmppd_build_info{version=\"0.1.0\"}"), 1.0);
    assert_eq!(value(&before, "xmppd_shard_leader{shard=\"0\"}"), 1.0);
    assert!(value(&before, "xmppd_shard_term{shard=\"0\"}") >= 1.0);
    assert_eq!(
        value(&before, "xmppd_shard_apply_lag_entries{shard=\"0\"}"),
        0.0
    );
    assert!(value(&before, "process_resident_memory_bytes") > 1e6);
    assert!(value(&before, "process_open_fds") > 0.0);
    // Defined before the first failure, so that its rate is.
    assert_eq!(
        value(
            &before,
            "xmppd_login_failures_total{checked=\"true\",reason=\"not-authorized\"}"
        ),
        0.0
    );

    let mut alice = Client::online(srv.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut bob = Client::online(srv.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    for i in 0..5 {
        alice
            .send(&format!(
                "<message to='bob@localhost/b' type='chat' id='m{i}'><body>{i}</body></message>"
            ))
            .await;
    }
    for i in 0..5 {
        let id = format!("m{i}");
        bob.expect(|e| e.name == "message" && e.attr("id") == Some(id.as_str()))
            .await
            .expect("message");
    }
    // A wrong password: counted by its SASL condition.
    let mut mallory = Client::connect(srv.addr).await;
    mallory.open("localhost").await.expect("open");
    mallory.starttls().await.expect("starttls");
    mallory.open("localhost").await.expect("open");
    assert!(
        mallory
            .sasl("SCRAM-SHA-256", "alice", "wrong")
            .await
            .is_err()
    );

    // A roster change is a Raft commit of alice's shard, timed.
    alice
        .send("<iq type='set' id='ros1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>")
        .await;
    alice
        .expect(|e| e.attr("id") == Some("ros1"))
        .await
        .expect("roster set answered");
    let (_, during) = get_async(http, "/metrics").await;
    let commits: f64 = during
        .lines()
        .filter(|l| l.starts_with("xmppd_raft_commit_latency_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(commits >= 1.0, "{during}");
    assert!(
        during.contains("xmppd_raft_commit_latency_seconds_bucket{shard=\"0\",le=\"0.001\"}"),
        "{during}"
    );
    let moved = |series: &str| value(&during, series) - value(&before, series);
    assert_eq!(value(&during, "xmppd_sessions"), 2.0);
    assert_eq!(
        value(&during, "xmppd_client_connections{listener=\"c2s\"}"),
        3.0
    );
    assert_eq!(
        moved("xmppd_client_connections_accepted_total{listener=\"c2s\"}"),
        3.0
    );
    assert_eq!(moved("xmppd_logins_total"), 2.0);
    assert_eq!(
        value(
            &during,
            "xmppd_login_failures_total{checked=\"true\",reason=\"not-authorized\"}"
        ),
        1.0
    );
    assert_eq!(moved("xmppd_stanzas_received_total{kind=\"message\"}"), 5.0);
    // Two roster gets and the ping-free rest: at least the IQs sent.
    assert!(moved("xmppd_stanzas_received_total{kind=\"iq\"}") >= 2.0);
    assert!(moved("xmppd_stanzas_received_total{kind=\"presence\"}") >= 2.0);
    // Bob got the five messages, both got roster results and presence.
    assert!(moved("xmppd_stanzas_sent_total") >= 9.0);
    // Each stanza written because of a client's stanza (the messages,
    // the IQ results, presence) is timed from the read of its cause:
    // at least the five messages, at most what was written.
    let routed = moved("xmppd_routing_latency_seconds_count");
    assert!(routed >= 5.0, "{during}");
    assert!(routed <= moved("xmppd_stanzas_sent_total"), "{during}");
    assert_eq!(
        value(&during, "xmppd_routing_latency_seconds_bucket{le=\"+Inf\"}"),
        value(&during, "xmppd_routing_latency_seconds_count")
    );
    let mean = moved("xmppd_routing_latency_seconds_sum") / routed;
    assert!(mean > 0.0 && mean < 5.0, "mean routing latency {mean} s");
    assert!(moved("xmppd_client_received_bytes_total") > 0.0);
    assert!(moved("xmppd_client_sent_bytes_total") > 0.0);

    drop(alice);
    drop(bob);
    drop(mallory);
    let t = Instant::now();
    loop {
        let (_, after) = get_async(http, "/metrics").await;
        if value(&after, "xmppd_client_connections{listener=\"c2s\"}") == 0.0
            && value(&after, "xmppd_sessions") == 0.0
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "connections or sessions stay counted:\n{after}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    srv.stop().await;
}

/// Polls `path` until it answers `status`; the last body.
fn until(addr: SocketAddr, path: &str, status: u16) -> String {
    let t = Instant::now();
    loop {
        let (s, body) = get(addr, path);
        if s == status {
            return body;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{path} stays {s} ({body:?}), not {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A core node's configuration: its HTTP listener at `http`, its gRPC at
/// `listen`, and `cluster` (peers) added to its `[cluster]` table.
fn core_config(
    dir: &Path,
    name: &str,
    id: u64,
    http: SocketAddr,
    listen: &str,
    cluster: &str,
) -> PathBuf {
    config(
        dir,
        name,
        &format!(
            "[listeners]\nhttp = \"{http}\"\n\n[cluster]\nrole = \"core\"\nnode_id = {id}\nlisten = \"{listen}\"\nliveness_secs = 2\n{cluster}"
        ),
    )
}

/// An edge with node id `id` whose core node is at `core`; returns it
/// and its HTTP listener's address.
fn start_edge(dir: &Path, id: u64, core: impl std::fmt::Display) -> (Proc, SocketAddr) {
    let http = free_addr();
    let cfg = config(
        dir,
        "edge",
        &format!(
            "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\nhttp = \"{http}\"\n\n[cluster]\nrole = \"edge\"\nnode_id = {id}\ncore = \"{core}\"\nliveness_secs = 2\n"
        ),
    );
    (start(&cfg, "client listener (STARTTLS)").0, http)
}

#[test]
fn an_edge_is_ready_only_while_it_reaches_a_core_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core_http = free_addr();
    let core_cfg = core_config(dir.path(), "core", 1, core_http, "127.0.0.1:0", "");
    let (mut core, core_addr) = start(&core_cfg, "cluster listener (gRPC)");
    assert_eq!(until(core_http, "/readyz", 200), "ok\n");
    let (_edge, edge_http) = start_edge(dir.path(), 2, core_addr);
    assert_eq!(until(edge_http, "/readyz", 200), "ok\n");
    assert_eq!(get(edge_http, "/startupz"), (200, "ok\n".into()));
    // The edge's metrics hold no core state of their own.
    let (_, text) = get(edge_http, "/metrics");
    assert_eq!(value(&text, "xmppd_sessions"), 0.0);
    assert!(!text.contains("xmppd_shard_leader{"), "{text}");
    // Its gRPC stream to core node 1 is up; the core's store has figures.
    assert_eq!(value(&text, "xmppd_core_link_up{core=\"1\"}"), 1.0);
    let (_, core_text) = get(core_http, "/metrics");
    assert!(value(&core_text, "xmppd_rocksdb_memtable_bytes") > 0.0);
    assert_eq!(value(&core_text, "xmppd_rocksdb_write_stopped"), 0.0);

    core.kill().expect("kill -9 the core node");
    let _ = core.wait();
    assert_eq!(until(edge_http, "/readyz", 503), "no core node reachable\n");
    let (_, text) = get(edge_http, "/metrics");
    assert_eq!(value(&text, "xmppd_core_link_up{core=\"1\"}"), 0.0);
    // Alive all the same: a restart would not bring the core back.
    assert_eq!(get(edge_http, "/livez"), (200, "ok\n".into()));
}

/// An edge whose core node waits for a cluster that never forms is up
/// (its start-up is done) but not ready: no live node leads the shards.
#[test]
fn an_edge_is_not_ready_while_its_core_nodes_have_no_leaders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listen, core_http) = (free_addr(), free_addr());
    // Peers 2 and 3 never start: node 1 waits for its cluster's leaders.
    let peers = format!(
        "peers = [\"1={listen}\", \"2={}\", \"3={}\"]\n",
        free_addr(),
        free_addr()
    );
    let core_cfg = core_config(
        dir.path(),
        "core",
        1,
        core_http,
        &listen.to_string(),
        &peers,
    );
    let (_core, _) = start(&core_cfg, "cluster listener (gRPC)");
    assert_eq!(until(core_http, "/startupz", 503), "starting\n");
    assert_eq!(get(core_http, "/readyz"), (503, "starting\n".into()));
    let (_edge, edge_http) = start_edge(dir.path(), 4, listen);
    assert_eq!(until(edge_http, "/startupz", 200), "ok\n");
    let (status, why) = get(edge_http, "/readyz");
    assert_eq!(status, 503, "{why}");
    assert!(why.ends_with("has no live leader\n"), "{why}");
}

/// The HTTP listener serves a bounded number of connections and drops
/// one that is too slow to send its headers, so idle or slow clients
/// cannot hold the node's file descriptors.
#[tokio::test]
async fn slow_or_idle_http_clients_are_bounded() {
    let mut srv = TestServer::start().await;
    let http = srv
        .server
        .as_ref()
        .and_then(|s| s.http_addr)
        .expect("an HTTP listener");
    // Half a request, then nothing: closed after the header timeout.
    let slow = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(http).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        let t = Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        (t.elapsed(), buf)
    });
    // 63 more that send nothing, from other addresses (8 at most from
    // one), fill the listener's 64 places...
    let mut idle = Vec::new();
    for i in 0..63u8 {
        let from = format!("127.0.0.{}", 2 + i / 8);
        idle.push(connect_from(&from, http).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...so a probe waits in the listen queue until places free up.
    let probe = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        (get(http, "/livez"), t.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!probe.is_finished(), "a 65th connection was served at once");
    drop(idle);
    let ((status, body), waited) = probe.await.expect("join");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    // One address holds 8 at most: a 9th is closed at once, and the
    // probes from elsewhere are served.
    let mut hog = Vec::new();
    for _ in 0..8 {
        hog.push(connect_from("127.0.0.20", http).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ninth = connect_from("127.0.0.20", http).await;
    let mut b = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(2), ninth.read(&mut b)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a 9th connection from one address is closed: {closed:?}"
    );
    assert_eq!(get_async(http, "/livez").await, (200, "ok\n".into()));
    drop(hog);
    let (took, answer) = slow.await.expect("join");
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(20),
        "a client slow to send its headers was dropped after {took:?}"
    );
    // hyper answers 408 or just closes; either way nothing was served.
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    srv.stop().await;
}

/// A core node that loses its majority stops being ready, and its metrics
/// say which shards have no leader, instead of naming the dead one.
#[test]
fn a_core_node_without_a_majority_is_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let http: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let peers: Vec<String> = listen
        .iter()
        .enumerate()
        .map(|(i, a)| format!("\"{}={a}\"", i + 1))
        .collect();
    let mut procs: Vec<Proc> = (0..3)
        .map(|i| {
            let cfg = core_config(
                dir.path(),
                &format!("core{}", i + 1),
                i as u64 + 1,
                http[i],
                &listen[i].to_string(),
                &format!("peers = [{}]\n", peers.join(", ")),
            );
            start(&cfg, "cluster listener (gRPC)").0
        })
        .collect();
    for h in &http {
        assert_eq!(until(*h, "/readyz", 200), "ok\n");
    }
    for p in procs.iter_mut().skip(1) {
        p.kill().expect("kill -9");
        let _ = p.wait();
    }
    let why = until(http[0], "/readyz", 503);
    assert!(
        why.starts_with("shard ") && why.ends_with(" has no leader\n"),
        "{why}"
    );
    let (_, text) = get(http[0], "/metrics");
    assert!(
        text.lines()
            .any(|l| l.starts_with("xmppd_shard_leader{") && l.ends_with(" 0")),
        "no shard without a leader in\n{text}"
    );
    assert_eq!(get(http[0], "/livez"), (200, "ok\n".into()));
}
