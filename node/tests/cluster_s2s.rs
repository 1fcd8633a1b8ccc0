//! Federation in a cluster: three core nodes and two edges (real
//! processes) that both federate, and another server (b.test) that finds
//! the cluster's domain through SRV records naming both edges. Stanzas
//! for b.test leave through one edge; once that edge is SIGKILLed they
//! leave through the other, and b.test reaches the cluster through the
//! remaining edge.

mod common;

use std::time::Duration;

use common::cores::Cores;
use common::procs::{Proc, signal};
use common::{Client, TestServer};
use proto::Element;

const PASS: &str = "secret123";
const SECRET: &str = "a dialback secret the edges share";

fn s2s_table(n: u8) -> String {
    format!(
        "[s2s]\nenabled = true\nlisten = \"127.0.7.{n}:5269\"\ndialback_secret = \"{SECRET}\"\nsystem_roots = false\nconnect_timeout_secs = 5\n[s2s.hosts]\n\"b.test\" = \"127.0.7.9:5269\"\n"
    )
}

fn dns() -> Proc {
    use std::io::BufRead;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/interop/s2s/dns.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .args(["--listen", "127.0.7.20:5353", "--timeout", "180"])
        .args(["--srv", "_xmpp-server._tcp.a.test=0:0:5269:e1.cluster.test"])
        .args([
            "--srv",
            "_xmpp-server._tcp.a.test=10:0:5269:e2.cluster.test",
        ])
        .args(["--a", "e1.cluster.test=127.0.7.1"])
        .args(["--a", "e2.cluster.test=127.0.7.2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs dns.py");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("dns.py is ready");
    assert!(line.contains("ready"), "{line}");
    Proc(child)
}

fn body_of(e: &Element) -> Option<String> {
    e.child("body", proto::ns::CLIENT).map(Element::text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_federates_through_its_edges_and_survives_losing_one() -> anyhow::Result<()> {
    let _dns = dns();
    let cores = Cores::start_for("a.test", "").await;
    let (e1, c2s1, http1) = cores.edge_with(11, 0, &s2s_table(1));
    let (e2, c2s2, http2) = cores.edge_with(12, 1, &s2s_table(2));
    let b = TestServer::start_with(|cfg| {
        cfg.domains = vec!["b.test".into()];
        cfg.s2s.enabled = true;
        cfg.s2s.listen = "127.0.7.9:5269".into();
        cfg.s2s.system_roots = false;
        cfg.s2s.connect_timeout_secs = 5;
        cfg.s2s.nameservers = vec!["127.0.7.20:5353".into()];
    })
    .await;
    b.add_user("bob@b.test", PASS);
    let (ok, out) = common::procs::xmppd(
        &cores.cfgs[0],
        &["user", "add", "alice@a.test", "--password", PASS],
    );
    assert!(ok, "{out}");

    // Alice on both edges, bob at b.test.
    let mut alice1 = Client::online(c2s1, "alice@a.test", PASS, "one").await?;
    let mut alice2 = Client::online(c2s2, "alice@a.test", PASS, "two").await?;
    let mut bob = Client::online(b.addr, "bob@b.test", PASS, "r").await?;

    for i in 0..5 {
        alice2
            .send(&format!(
                "<message to='bob@b.test' type='chat' id='a{i}'><body>out {i}</body></message>"
            ))
            .await;
    }
    for i in 0..5 {
        let m = bob.expect(|e| e.name == "message").await?;
        assert_eq!(body_of(&m), Some(format!("out {i}")), "in order");
        assert_eq!(m.attr("from"), Some("alice@a.test/two"));
    }
    bob.send("<message to='alice@a.test/two' type='chat' id='b1'><body>back</body></message>")
        .await;
    let m = alice2.expect(|e| e.name == "message").await?;
    assert_eq!(body_of(&m).as_deref(), Some("back"));

    // The edge that carries the stream to b.test dies while alice, on the
    // other one, sends: every message arrives all the same (the core
    // nodes keep them until an edge has written them).
    let carrier = if sent_out(http1) > 0 { 1 } else { 2 };
    assert!(sent_out(if carrier == 1 { http1 } else { http2 }) >= 5);
    // `xmppd s2s status` with the carrying edge's configuration lists its
    // stream to b.test (an edge's admin socket answers it); the user
    // commands are the core's.
    let edge_cfg = cores.dir.path().join(format!("edge1{carrier}.toml"));
    let (ok, out) = common::procs::xmppd(&edge_cfg, &["s2s", "status"]);
    assert!(ok && out.contains("b.test"), "{out}");
    let (ok, out) = common::procs::xmppd(&edge_cfg, &["user", "list"]);
    assert!(!ok && out.contains("edge"), "{out}");
    let (sender, mut victim, survivor_http) = if carrier == 1 {
        (&mut alice2, e1, http2)
    } else {
        (&mut alice1, e2, http1)
    };
    for i in 0..30 {
        sender
            .send(&format!(
                "<message to='bob@b.test' type='chat' id='k{i}'><body>during {i}</body></message>"
            ))
            .await;
        if i == 10 {
            signal(&victim, "KILL");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = victim.0.wait();
    let mut got = std::collections::BTreeSet::new();
    while got.len() < 30 {
        let m = bob.expect(|e| e.name == "message").await?;
        if let Some(b) = body_of(&m).and_then(|b| b.strip_prefix("during ").map(str::to_string)) {
            got.insert(b.parse::<u32>()?);
        }
    }
    assert_eq!(got.len(), 30);
    assert!(
        sent_out(survivor_http) > 0,
        "the other edge carries them now"
    );

    // And b.test still reaches the cluster (through whichever edge is up).
    bob.send("<message to='alice@a.test' type='chat' id='b2'><body>back again</body></message>")
        .await;
    let m = sender
        .expect(|e| e.name == "message" && body_of(e).as_deref() == Some("back again"))
        .await?;
    assert_eq!(m.attr("from"), Some("bob@b.test/r"));
    Ok(())
}

/// Stanzas an edge sent to other servers, from its metrics.
fn sent_out(http: std::net::SocketAddr) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(http) else {
        return 0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .find(|l| l.starts_with("xmppd_s2s_stanzas_total{direction=\"out\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_on_one_edge_serves_users_of_another() -> anyhow::Result<()> {
    // Every node has the [components] table: the core nodes route by its
    // domains, the edges take the components' connections.
    let cores = Cores::start_for(
        "a.test",
        "[components.secrets]\n\"gw.a.test\" = \"component secret\"\n",
    )
    .await;
    let comp = |n: u8| {
        format!(
            "[components]\nlisten = \"127.0.7.{n}:5347\"\n[components.secrets]\n\"gw.a.test\" = \"component secret\"\n"
        )
    };
    let (_e1, _, _) = cores.edge_with(31, 0, &comp(31));
    let (_e2, c2s2, _) = cores.edge_with(32, 1, &comp(32));
    let (ok, out) = common::procs::xmppd(
        &cores.cfgs[0],
        &["user", "add", "alice@a.test", "--password", PASS],
    );
    assert!(ok, "{out}");
    let mut gw =
        common::component("127.0.7.31:5347".parse()?, "gw.a.test", "component secret").await?;
    let mut alice = Client::online(c2s2, "alice@a.test", PASS, "r").await?;
    alice
        .send("<message to='bot@gw.a.test' type='chat' id='g1'><body>hi gateway</body></message>")
        .await;
    let m = gw.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("from"), Some("alice@a.test/r"));
    gw.send("<message from='bot@gw.a.test' to='alice@a.test/r' type='chat'><body>hi alice</body></message>")
        .await;
    let m = alice.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("from"), Some("bot@gw.a.test"));
    assert_eq!(body_of(&m).as_deref(), Some("hi alice"));
    Ok(())
}
