//! Operating a node: the HTTP listener's `/metrics` move with what clients
//! do, and its probes say when the node can serve (an edge only while it
//! reaches a core node). Real sockets and, for the edge, real processes.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::procs::*;
use common::{Client, TestServer};

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

    let (_, during) = get_async(http, "/metrics").await;
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
            "xmppd_login_failures_total{reason=\"not-authorized\"}"
        ),
        1.0
    );
    assert_eq!(moved("xmppd_stanzas_received_total{kind=\"message\"}"), 5.0);
    // Two roster gets and the ping-free rest: at least the IQs sent.
    assert!(moved("xmppd_stanzas_received_total{kind=\"iq\"}") >= 2.0);
    assert!(moved("xmppd_stanzas_received_total{kind=\"presence\"}") >= 2.0);
    // Bob got the five messages, both got roster results and presence.
    assert!(moved("xmppd_stanzas_sent_total") >= 9.0);
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

#[test]
fn an_edge_is_ready_only_while_it_reaches_a_core_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core_http = free_addr();
    let core_cfg = config(
        dir.path(),
        "core",
        &format!(
            "[listeners]\nhttp = \"{core_http}\"\n\n[cluster]\nrole = \"core\"\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nliveness_secs = 2\n"
        ),
    );
    let (mut core, core_addr) = start(&core_cfg, "cluster listener (gRPC)");
    assert_eq!(until(core_http, "/readyz", 200), "ok\n");
    let edge_http = free_addr();
    let edge_cfg = config(
        dir.path(),
        "edge",
        &format!(
            "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\nhttp = \"{edge_http}\"\n\n[cluster]\nrole = \"edge\"\nnode_id = 2\ncore = \"{core_addr}\"\nliveness_secs = 2\n"
        ),
    );
    let (_edge, _) = start(&edge_cfg, "client listener (STARTTLS)");
    assert_eq!(until(edge_http, "/readyz", 200), "ok\n");
    assert_eq!(get(edge_http, "/startupz"), (200, "ok\n".into()));
    // The edge's metrics hold no core state of their own.
    let (_, text) = get(edge_http, "/metrics");
    assert_eq!(value(&text, "xmppd_sessions"), 0.0);
    assert!(!text.contains("xmppd_shard_leader{"), "{text}");

    core.kill().expect("kill -9 the core node");
    let _ = core.wait();
    assert_eq!(until(edge_http, "/readyz", 503), "no core node reachable\n");
    // Alive all the same: a restart would not bring the core back.
    assert_eq!(get(edge_http, "/livez"), (200, "ok\n".into()));
}
