//! Draining on SIGTERM (`[shutdown] drain_secs`): the node is not ready
//! at once, takes no new connection, closes its clients' streams a few at
//! a time over the window with `<see-other-host/>` (or
//! `<system-shutdown/>`), and exits as soon as the last one is gone; a
//! second SIGTERM stops it at once.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Client;
use common::procs::*;

const PW: &str = "secret-pw";
const TOKEN: &str = "drain-token-0123456789";

fn readyz(addr: SocketAddr) -> u16 {
    probe(addr, "/readyz")
}

/// The node's exit status, if it exits within 10 s.
async fn exit_within_10s(node: &mut Proc) -> Option<std::process::ExitStatus> {
    for _ in 0..100 {
        if let Ok(Some(st)) = node.0.try_wait() {
            return Some(st);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A node whose `[shutdown]` table is `shutdown`, with `n` clients
/// online: (node, c2s, http, clients).
async fn node_with_clients(
    dir: &std::path::Path,
    shutdown: &str,
    n: usize,
) -> (Proc, SocketAddr, SocketAddr, Vec<Client>) {
    let (c2s, http) = (free_addr(), free_addr());
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).expect("token");
    let cfg = config(
        dir,
        "node",
        &format!(
            "[listeners]\nc2s = \"{c2s}\"\nc2s_direct_tls = false\nhttp = \"{http}\"\n\n[admin]\ntoken_file = \"{}\"\n\n[shutdown]\n{shutdown}\n",
            dir.join("token").display()
        ),
    );
    let (node, _) = start(&cfg, "client listener (STARTTLS)");
    let mut clients = Vec::new();
    for i in 0..n {
        let jid = format!("user{i}@localhost");
        let (ok, out) = xmppd(&cfg, &["user", "add", &jid, "--password", PW]);
        assert!(ok, "{out}");
        clients.push(Client::online(c2s, &jid, PW, "r").await.expect("online"));
    }
    (node, c2s, http, clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_clients_to_another_host_a_few_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut node, c2s, http, clients) = node_with_clients(
        dir.path(),
        "drain_secs = 3\nsee_other_host = \"xmpp.example.org:5222\"",
        8,
    )
    .await;
    assert_eq!(
        tokio::task::spawn_blocking(move || readyz(http))
            .await
            .expect("join"),
        200
    );
    let t0 = Instant::now();
    signal(&node, "TERM");
    // Not ready, and no new connection, at once.
    let mut unready = false;
    for _ in 0..20 {
        if tokio::task::spawn_blocking(move || readyz(http))
            .await
            .expect("join")
            == 503
        {
            unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(unready, "/readyz turns 503 when draining starts");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = match tokio::net::TcpStream::connect(c2s).await {
        Err(_) => true,
        Ok(mut s) => {
            use tokio::io::AsyncReadExt;
            let mut b = [0u8; 1];
            matches!(
                tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        }
    };
    assert!(refused, "a draining node takes no new connection");

    // Each stream is sent elsewhere, not all at the same moment.
    let mut tasks = Vec::new();
    for mut c in clients {
        tasks.push(tokio::spawn(async move {
            loop {
                let e = c.next_element().await.expect("the stream error");
                if e.name == "error" && e.ns == proto::ns::STREAM {
                    let redirect = e
                        .elements()
                        .find(|x| x.name == "see-other-host")
                        .map(|x| x.text());
                    return (redirect, t0.elapsed());
                }
            }
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        let (redirect, at) = t.await.expect("join");
        assert_eq!(redirect.as_deref(), Some("xmpp.example.org:5222"));
        times.push(at);
    }
    times.sort();
    let (first, last) = (times[0], times[times.len() - 1]);
    assert!(last < Duration::from_secs(5), "{times:?}");
    assert!(
        last - first > Duration::from_millis(300),
        "spread over the window: {times:?}"
    );
    // The node exits once the last stream is gone.
    let st = exit_within_10s(&mut node)
        .await
        .expect("the node exits after draining");
    assert!(st.success(), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_the_drain_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut node, _, _, mut clients) = node_with_clients(dir.path(), "drain_secs = 600", 3).await;
    signal(&node, "TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    signal(&node, "TERM");
    for c in &mut clients {
        let cond = c.stream_error().await.expect("stream error");
        assert!(cond == "system-shutdown", "drained or shut down: {cond}");
    }
    let st = exit_within_10s(&mut node)
        .await
        .expect("stopped within 10 s of the second SIGTERM");
    assert!(st.success(), "{st}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

/// `POST /api/v1/drain` drains as SIGTERM does, then the node stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_drains_a_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut node, _, http, mut clients) = node_with_clients(dir.path(), "drain_secs = 2", 3).await;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(http).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            s,
            "POST /api/v1/drain HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .expect("join");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(answer.ends_with("{\"draining\":true}"), "{answer}");
    for c in &mut clients {
        let cond = c.stream_error().await.expect("stream error");
        assert_eq!(cond, "system-shutdown");
    }
    let st = exit_within_10s(&mut node)
        .await
        .expect("the node stops once drained");
    assert!(st.success(), "{st}");
}
