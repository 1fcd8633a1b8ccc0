//! Stream management (XEP-0198) in a cluster, with real processes: a
//! client whose edge is killed (SIGKILL, mid-stream) resumes its session
//! on another edge, and every message sent to it, before the kill, while
//! it was away and after, arrives exactly once and in order. What the
//! client had not acknowledged was kept at the user's shard in the core,
//! not in the dead edge's memory.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::Client;
use common::procs::*;
use proto::{Element, ns};

const PW: &str = "correct horse";
const SM: &str = "urn:xmpp:sm:3";

struct Cluster {
    dir: tempfile::TempDir,
    core_cfg: PathBuf,
    core_addr: SocketAddr,
    _core: Proc,
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
            _core: core,
        }
    }

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

async fn authenticated(addr: SocketAddr, local: &str) -> Client {
    let mut c = Client::connect(addr).await;
    c.open("localhost").await.expect("open");
    c.starttls().await.expect("starttls");
    c.open("localhost").await.expect("open");
    c.sasl("SCRAM-SHA-256", local, PW).await.expect("sasl");
    c.open("localhost").await.expect("open");
    c
}

fn body(e: &Element) -> Option<String> {
    e.child("body", ns::CLIENT).map(Element::text)
}

/// Bob's side: reads, counts every stanza (XEP-0198 counts them all),
/// answers the server's ack requests, and keeps the message bodies.
struct Reader {
    c: Client,
    count: u32,
    bodies: Vec<String>,
}

impl Reader {
    /// Read until `n` bodies in all, or the connection fails.
    async fn read_until(&mut self, n: usize) -> anyhow::Result<()> {
        while self.bodies.len() < n {
            let e = self.c.next_element().await?;
            if e.ns == SM && e.name == "r" {
                let a = format!("<a xmlns='{SM}' h='{}'/>", self.count);
                self.c.send(&a).await;
                continue;
            }
            if e.ns == ns::CLIENT {
                self.count = self.count.wrapping_add(1);
            }
            if let Some(b) = body(&e) {
                self.bodies.push(b);
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_edge_is_killed_resumes_on_another_with_nothing_lost() {
    let cluster = Cluster::start();
    cluster.add_user("alice@localhost");
    cluster.add_user("bob@localhost");
    let (_edge2, addr2) = cluster.edge(2);
    let (edge3, addr3) = cluster.edge(3);

    let mut alice = Client::online(addr2, "alice@localhost", PW, "a")
        .await
        .expect("alice on edge 2");
    let mut c = authenticated(addr3, "bob").await;
    c.bind(Some("phone")).await.expect("bind");
    c.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = c.expect(|e| e.ns == SM).await.expect("enabled");
    assert_eq!(enabled.name, "enabled", "{}", enabled.to_xml(SM));
    let id = enabled.attr("id").expect("id").to_string();
    let mut bob = Reader {
        c,
        count: 0,
        bodies: Vec::new(),
    };

    // Alice sends 600 numbered messages, a few at a time, while bob
    // reads; his edge is killed a third of the way in.
    const N: usize = 600;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            alice
                .send(&format!(
                    "<message to='bob@localhost/phone' type='chat'><body>m{i}</body></message>"
                ))
                .await;
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        alice
    });
    bob.read_until(N / 3).await.expect("bob reads on edge 3");
    signal(&edge3, "KILL");
    // Whatever was still on its way from the dead edge is lost to this
    // connection: read what is there until it breaks.
    let _ = tokio::time::timeout(Duration::from_secs(5), bob.read_until(N)).await;
    drop(edge3);
    let before = bob.bodies.len();
    eprintln!(
        "bob read {before} messages ({} stanzas) before his edge died",
        bob.count
    );
    assert!(before < N, "the kill came too late to test anything");

    // Bob reconnects through the other edge and resumes.
    let mut c = authenticated(addr2, "bob").await;
    c.send(&format!(
        "<resume xmlns='{SM}' previd='{id}' h='{}'/>",
        bob.count
    ))
    .await;
    let r = c.expect(|e| e.ns == SM).await.expect("resumed");
    assert_eq!(r.name, "resumed", "{}", r.to_xml(SM));
    bob.c = c;
    tokio::time::timeout(Duration::from_secs(60), bob.read_until(N))
        .await
        .expect("every message in time")
        .expect("bob reads on edge 2");
    let _alice = sender.await.expect("sender");
    // Exactly once, in order.
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(bob.bodies, want, "{before} read before the resumption");
}
