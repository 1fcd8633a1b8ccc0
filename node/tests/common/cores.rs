//! Three core nodes of a cluster as real processes, each a Raft member of
//! every shard, with edges on demand: start, kill, restart, wait for the
//! shard leaders to spread, and names of users in a given shard.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::procs::*;

pub struct Cores {
    pub dir: tempfile::TempDir,
    pub cfgs: Vec<PathBuf>,
    pub addrs: Vec<SocketAddr>,
    /// Each node's HTTP listener (metrics and probes).
    pub http: Vec<SocketAddr>,
    pub procs: Vec<Option<Proc>>,
    /// The domain served.
    pub domain: String,
}

impl Cores {
    pub async fn start() -> Cores {
        Cores::start_with("").await
    }

    /// Three core nodes with `extra` added to their `[cluster]` section.
    pub async fn start_with(extra: &str) -> Cores {
        Cores::start_for("localhost", extra).await
    }

    /// [`Cores::start_with`] serving `domain`.
    pub async fn start_for(domain: &str, extra: &str) -> Cores {
        let mut cores = Cores::configure(domain, extra);
        for i in 0..3 {
            cores.procs[i] = Some(start(&cores.cfgs[i], "cluster listener (gRPC)").0);
        }
        for i in 0..3 {
            cores.wait_admin(i).await;
        }
        cores
    }

    /// Three core nodes configured, none started.
    pub fn configure(domain: &str, extra: &str) -> Cores {
        let dir = tempfile::tempdir().expect("tempdir");
        let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
        let http: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
        let peers: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("\"{}={a}\"", i + 1))
            .collect();
        let cfgs: Vec<PathBuf> = (0..3)
            .map(|i| {
                config_for(
                    dir.path(),
                    &format!("core{}", i + 1),
                    domain,
                    &format!(
                        "[listeners]\nhttp = \"{}\"\n\n[cluster]\nrole = \"core\"\nnode_id = {}\nlisten = \"{}\"\nliveness_secs = 2\npeers = [{}]\n{extra}",
                        http[i],
                        i + 1,
                        addrs[i],
                        peers.join(", ")
                    ),
                )
            })
            .collect();
        Cores {
            dir,
            cfgs,
            addrs,
            http,
            procs: vec![None, None, None],
            domain: domain.to_string(),
        }
    }

    /// Node `i` (0-based) serves its admin socket (after its shards have
    /// leaders).
    pub async fn wait_admin(&self, i: usize) {
        let sock = self
            .dir
            .path()
            .join(format!("core{}", i + 1))
            .join("admin.sock");
        until("the admin socket", Duration::from_secs(30), || {
            sock.exists()
        })
        .await;
    }

    pub fn status(&self, i: usize) -> (bool, String) {
        xmppd(
            &self.cfgs[i],
            &["cluster", "status", "--core", &self.addrs[i].to_string()],
        )
    }

    /// Wait until node `i` reports every shard `s` led by node `s % 3 + 1`
    /// (the leaders spread over the nodes).
    pub async fn wait_balanced(&self, i: usize) {
        until(
            "leaders spread over the core nodes",
            Duration::from_secs(30),
            || {
                let (_, st) = self.status(i);
                (0..16).all(|s| leader_in_status(&st, s) == Some(s as u64 % 3 + 1))
            },
        )
        .await;
    }

    pub fn kill(&mut self, i: usize) {
        let p = self.procs[i].take().expect("running");
        signal(&p, "KILL");
        drop(p);
        self.remove_admin_socket(i);
    }

    /// Stop node `i` with SIGTERM and check that it exits cleanly.
    pub fn terminate(&mut self, i: usize) {
        let p = self.term(i);
        self.reap(i, p);
    }

    /// Send node `i` SIGTERM without waiting: the caller checks with
    /// [`Cores::reap`] that it stopped cleanly.
    pub fn term(&mut self, i: usize) -> Proc {
        let p = self.procs[i].take().expect("running");
        signal(&p, "TERM");
        p
    }

    /// Wait for node `i`, sent SIGTERM by [`Cores::term`], to exit cleanly.
    pub fn reap(&mut self, i: usize, mut p: Proc) {
        let status = p.0.wait().expect("wait");
        assert!(
            status.success(),
            "core node {} stops cleanly: {status}",
            i + 1
        );
        self.remove_admin_socket(i);
    }

    /// The socket a stopped node left behind (a restart waits for the
    /// new one).
    fn remove_admin_socket(&self, i: usize) {
        let _ = std::fs::remove_file(
            self.dir
                .path()
                .join(format!("core{}", i + 1))
                .join("admin.sock"),
        );
    }

    pub async fn restart(&mut self, i: usize) {
        self.procs[i] = Some(start(&self.cfgs[i], "cluster listener (gRPC)").0);
        self.wait_admin(i).await;
    }

    /// Start core node `id`, which lists node 1 and itself as peers and so
    /// waits to be added to the running cluster; its index here.
    pub async fn start_joining(&mut self, id: u64) -> usize {
        let addr = free_addr();
        let cfg = config(
            self.dir.path(),
            &format!("core{id}"),
            &format!(
                "[cluster]\nrole = \"core\"\nnode_id = {id}\nlisten = \"{addr}\"\nliveness_secs = 2\npeers = [\"1={}\", \"{id}={addr}\"]\n",
                self.addrs[0]
            ),
        );
        let p = start(&cfg, "cluster listener (gRPC)").0;
        self.cfgs.push(cfg);
        self.addrs.push(addr);
        // Its HTTP listener's port was the OS's choice, not known here.
        self.http.push(SocketAddr::from(([0, 0, 0, 0], 0)));
        self.procs.push(Some(p));
        self.cfgs.len() - 1
    }

    /// Add the joining node `i` (id `id`) with `xmppd cluster add-node`,
    /// asked through core node `via` (0-based), and wait until it serves
    /// its admin socket; the command's output.
    pub async fn add_node(&self, i: usize, id: u64, via: usize) -> String {
        let (ok, out) = xmppd(
            &self.cfgs[via],
            &[
                "cluster",
                "add-node",
                &id.to_string(),
                &self.addrs[i].to_string(),
                "--core",
                &self.addrs[via].to_string(),
            ],
        );
        assert!(ok, "{out}");
        self.wait_admin(i).await;
        out
    }

    /// An edge whose seed is core node `seed` (0-based); its STARTTLS address.
    pub fn edge(&self, id: u64, seed: usize) -> (Proc, SocketAddr) {
        let (p, addr, _) = self.edge_with(id, seed, "");
        (p, addr)
    }

    /// An edge as [`Cores::edge`], with `extra` tables in its
    /// configuration; its STARTTLS address and its HTTP listener's.
    pub fn edge_with(&self, id: u64, seed: usize, extra: &str) -> (Proc, SocketAddr, SocketAddr) {
        let http = free_addr();
        let cfg = config_for(
            self.dir.path(),
            &format!("edge{id}"),
            &self.domain,
            &format!(
                "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\nhttp = \"{http}\"\n\n[cluster]\nrole = \"edge\"\nnode_id = {id}\ncore = \"{}\"\nliveness_secs = 2\n{extra}",
                self.addrs[seed]
            ),
        );
        let (p, addr) = start(&cfg, "client listener (STARTTLS)");
        (p, addr, http)
    }
}

/// A user name whose shard (of 16) is `shard`.
pub fn user_in_shard(prefix: &str, shard: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}@localhost"))
        .find(|j| router::cluster::shard_of(j, 16) == shard)
        .expect("a name in the shard")
}
