//! A network partition of one core node, with real processes in network
//! namespaces: three `xmppd` core nodes, each in its own namespace,
//! joined by veth pairs to a bridge. Cutting one node's link (the host
//! side of its veth) isolates it both ways. The minority node commits
//! nothing (an account change asked of it fails, and never appears), the
//! majority elects new leaders for its shards and takes writes, and once
//! the link is back the node catches up, drops what it had not committed
//! and takes its shards back.
//!
//! Needs root (to make namespaces); without it the test says so and
//! passes without running.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::procs::*;

const PW: &str = "correct horse";

/// Run `ip` with `args`; whether it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ip_ok(args: &[&str]) {
    assert!(ip(args), "ip {}", args.join(" "));
}

/// Three namespaces on a bridge, removed when dropped.
struct Net {
    tag: String,
    subnet: String,
}

impl Net {
    /// `None` when namespaces cannot be made here (not root).
    fn make() -> Option<Net> {
        let pid = std::process::id();
        let tag = format!("xp{pid}");
        let net = Net {
            subnet: format!("10.213.{}", pid % 200 + 20),
            tag,
        };
        if !ip(&["netns", "add", &net.ns(1)]) {
            return None;
        }
        let br = net.bridge();
        ip_ok(&["link", "add", &br, "type", "bridge"]);
        ip_ok(&["addr", "add", &format!("{}.254/24", net.subnet), "dev", &br]);
        ip_ok(&["link", "set", &br, "up"]);
        for i in 1..=3 {
            let (ns, host, inner) = (net.ns(i), net.host(i), format!("{}c{i}", net.tag));
            if i > 1 {
                ip_ok(&["netns", "add", &ns]);
            }
            ip_ok(&["link", "add", &host, "type", "veth", "peer", "name", &inner]);
            ip_ok(&["link", "set", &inner, "netns", &ns]);
            ip_ok(&["link", "set", &host, "master", &br]);
            ip_ok(&["link", "set", &host, "up"]);
            let addr = format!("{}/24", net.addr(i));
            ip_ok(&[
                "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inner,
            ]);
            ip_ok(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"]);
            ip_ok(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        Some(net)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    fn host(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    fn bridge(&self) -> String {
        format!("{}b", self.tag)
    }

    fn addr(&self, i: usize) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// Cut node `i` off (`false`) or connect it again (`true`).
    fn link(&self, i: usize, up: bool) {
        ip_ok(&["link", "set", &self.host(i), if up { "up" } else { "down" }]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=3 {
            let _ = ip(&["link", "del", &self.host(i)]);
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

fn status(cfg: &Path, addr: &str) -> String {
    xmppd(cfg, &["cluster", "status", "--core", addr]).1
}

fn user_in_shard(prefix: &str, shard: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}@localhost"))
        .find(|j| router::cluster::shard_of(j, 16) == shard)
        .expect("a name in the shard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_core_node_commits_nothing_and_catches_up_when_healed() {
    let Some(net) = Net::make() else {
        eprintln!("SKIPPED: network namespaces need root here");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let peers: Vec<String> = (1..=3)
        .map(|i| format!("\"{i}={}:7000\"", net.addr(i)))
        .collect();
    let cfgs: Vec<PathBuf> = (1..=3)
        .map(|i| {
            config(
                dir.path(),
                &format!("core{i}"),
                &format!(
                    "[cluster]\nrole = \"core\"\nnode_id = {i}\nlisten = \"{}:7000\"\nliveness_secs = 2\npeers = [{}]\n",
                    net.addr(i),
                    peers.join(", ")
                ),
            )
        })
        .collect();
    let addrs: Vec<String> = (1..=3).map(|i| format!("{}:7000", net.addr(i))).collect();
    let mut procs: Vec<Option<Proc>> = (1..=3)
        .map(|i| Some(start_in(Some(&net.ns(i)), &cfgs[i - 1], "cluster listener (gRPC)").0))
        .collect();
    let balanced = |st: &str| (0..16).all(|s| leader_in_status(st, s) == Some(s as u64 % 3 + 1));
    until(
        "leaders spread over the nodes",
        Duration::from_secs(60),
        || balanced(&status(&cfgs[0], &addrs[0])),
    )
    .await;
    for i in 0..3 {
        let sock = dir.path().join(format!("core{}", i + 1)).join("admin.sock");
        until("the admin socket", Duration::from_secs(30), || {
            sock.exists()
        })
        .await;
    }

    // Cut node 3 off. It leads shard 2, among others.
    net.link(3, false);
    let started = std::time::Instant::now();
    // The majority elects new leaders for node 3's shards.
    let took = until(
        "the majority leads every shard",
        Duration::from_secs(30),
        || {
            let st = status(&cfgs[0], &addrs[0]);
            (0..16).all(|s| leader_in_status(&st, s).is_some_and(|l| l != 3))
        },
    )
    .await;
    eprintln!("node 3 cut off: the majority led its shards after {took:?}");

    // The minority commits nothing: an account in a shard node 3 still
    // believes it leads is refused (after the commit patience).
    let carol = user_in_shard("carol", 2);
    let (ok, out) = xmppd(&cfgs[2], &["user", "add", &carol, "--password", PW]);
    assert!(!ok, "the cut-off node took a write: {out}");
    eprintln!(
        "minority write refused after {:?}: {}",
        started.elapsed(),
        out.trim()
    );
    // The majority takes writes for the same shard.
    let dave = user_in_shard("dave", 2);
    let (ok, out) = xmppd(&cfgs[0], &["user", "add", &dave, "--password", PW]);
    assert!(ok, "the majority takes writes: {out}");

    // Heal: node 3 catches up, drops its uncommitted entry and leads its
    // shards again.
    net.link(3, true);
    let took = until(
        "node 3 leads its shards again",
        Duration::from_secs(60),
        || balanced(&status(&cfgs[0], &addrs[0])),
    )
    .await;
    eprintln!("healed: balanced again after {took:?}");
    let (ok, list) = xmppd(&cfgs[0], &["user", "list"]);
    assert!(ok, "{list}");
    assert!(list.lines().any(|l| l.trim() == dave), "{list}");
    assert!(!list.lines().any(|l| l.trim() == carol), "{list}");

    // Node 3's own replica, read from its store once it is stopped.
    {
        let p = procs[2].take().expect("node 3");
        signal(&p, "TERM");
        let mut p = p;
        let status = p.0.wait().expect("wait");
        assert!(status.success(), "node 3 stops cleanly: {status}");
    }
    let (ok, list) = xmppd(&cfgs[2], &["user", "list"]);
    assert!(ok, "{list}");
    assert!(
        list.lines().any(|l| l.trim() == dave),
        "node 3 caught up: {list}"
    );
    assert!(
        !list.lines().any(|l| l.trim() == carol),
        "node 3 dropped what it had not committed: {list}"
    );
    drop(procs);
}
