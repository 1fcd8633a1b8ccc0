//! Running `xmppd` processes for the cluster tests: start one on its
//! configuration and learn its address from its log, signal it, run the
//! command-line tools against it, read `xmppd cluster status`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_xmppd");

/// A process that is killed if the test ends early.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// A node's configuration file: `body` (tables) after the common part.
/// The stanza rate limit is off: the cluster tests' traffic generators
/// send as fast as the cluster takes it. Each process's HTTP listener
/// gets a port of its own from the OS (the default 9090 would clash).
pub fn config(dir: &Path, name: &str, body: &str) -> PathBuf {
    config_for(dir, name, "localhost", body)
}

/// [`config`] for another domain than `localhost`.
pub fn config_for(dir: &Path, name: &str, domain: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let http = "http = \"127.0.0.1:0\"\n";
    let body = if body.contains("http = ") {
        body.to_string()
    } else if body.contains("[listeners]\n") {
        body.replacen("[listeners]\n", &format!("[listeners]\n{http}"), 1)
    } else {
        format!("[listeners]\n{http}\n{body}")
    };
    let text = format!(
        "domains = [\"{domain}\"]\ndata_dir = \"{}\"\n\n[registration]\nenabled = true\nmin_password_len = 4\n\n[limits]\nstanza_rate_per_sec = 0\n\n{body}",
        dir.join(name).display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// Start `xmppd serve` and return it with the address in its first log
/// line that contains `announce`.
pub fn start(cfg: &Path, announce: &'static str) -> (Proc, SocketAddr) {
    start_in(None, cfg, announce)
}

/// The lines a process has logged so far.
pub type Log = Arc<Mutex<Vec<String>>>;

/// [`start`] at the log level of the configuration (no `RUST_LOG`),
/// keeping every line of the log.
pub fn start_logged(cfg: &Path, announce: &'static str) -> (Proc, SocketAddr, Log) {
    start_logged_env(cfg, announce, &[])
}

/// [`start_logged`] with `envs` set.
pub fn start_logged_env(
    cfg: &Path,
    announce: &'static str,
    envs: &[(&str, &str)],
) -> (Proc, SocketAddr, Log) {
    let log = Log::default();
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (p, addr) = spawn(cmd, cfg, announce, Some(log.clone()));
    (p, addr, log)
}

/// [`start`] with `envs` set, e.g. the `HOSTNAME` of a StatefulSet's pod.
pub fn start_env(cfg: &Path, announce: &'static str, envs: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(BIN);
    cmd.env(
        "RUST_LOG",
        std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    for (k, v) in envs {
        cmd.env(k, v);
    }
    spawn(cmd, cfg, announce, None)
}

/// [`xmppd`] with `envs` set.
pub fn xmppd_env(cfg: &Path, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(BIN);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .expect("run xmppd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// [`start`] in network namespace `netns` (`ip netns exec`), if given.
pub fn start_in(netns: Option<&str>, cfg: &Path, announce: &'static str) -> (Proc, SocketAddr) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.env(
        "RUST_LOG",
        std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    spawn(cmd, cfg, announce, None)
}

fn spawn(
    mut cmd: Command,
    cfg: &Path,
    announce: &'static str,
    keep: Option<Log>,
) -> (Proc, SocketAddr) {
    let mut child = cmd
        .arg("--config")
        .arg(cfg)
        .arg("serve")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn xmppd");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // CLUSTER_TEST_LOG=1 shows every node's log, prefixed with its name.
    let echo = std::env::var_os("CLUSTER_TEST_LOG")
        .is_some()
        .then(|| cfg.file_stem().map(|n| n.to_string_lossy().into_owned()))
        .flatten();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(name) = &echo {
                eprintln!("[{name}] {line}");
            }
            if let Some(k) = &keep
                && let Ok(mut k) = k.lock()
            {
                k.push(line.clone());
            }
            if !sent
                && line.contains(announce)
                && let Some(addr) = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|a| a.split_whitespace().next())
            {
                let _ = tx.send(addr.trim_matches('"').to_string());
                sent = true;
            }
        }
    });
    let child = Proc(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("xmppd announced its address");
    (child, addr.parse().expect("socket address"))
}

pub fn signal(p: &Proc, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(p.0.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

/// A loopback address with a port that was free a moment ago (the core
/// nodes must know each other's addresses before they start). The port
/// is drawn below the kernel's ephemeral range: a port the OS hands out
/// for `:0` is also handed to outgoing connections, and one of those
/// took a pod's port in the minutes between drawing it and starting
/// the pod.
pub fn free_addr() -> SocketAddr {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
        .max(11000);
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(10000..low);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().expect("addr");
        }
    }
    panic!("no free port below {low} on 127.0.0.1");
}

/// The status code of `GET path` on an HTTP listener (a probe), 0 if
/// it does not answer.
pub fn probe(addr: SocketAddr, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Run `xmppd` with a node's configuration; (success, stdout + stderr).
pub fn xmppd(cfg: &Path, args: &[&str]) -> (bool, String) {
    xmppd_env(cfg, args, &[])
}

/// The words of the `xmppd cluster status` shard-map row that covers
/// `shard` (rows are `FIRST[-LAST] leader ID replicas A,B,C`).
fn shard_row(status: &str, shard: usize) -> Option<Vec<&str>> {
    status
        .lines()
        .skip_while(|l| !l.starts_with("shards:"))
        .skip(1)
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let range = *words.first()?;
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
                None => {
                    let a = range.parse::<usize>().ok()?;
                    (a, a)
                }
            };
            (a..=b).contains(&shard).then_some(words)
        })
}

/// The word after `label` in `shard`'s row.
fn row_field<'a>(status: &'a str, shard: usize, label: &str) -> Option<&'a str> {
    let words = shard_row(status, shard)?;
    let at = words.iter().position(|w| *w == label)?;
    words.get(at + 1).copied()
}

/// The leader of `shard` in `xmppd cluster status` output, if it has one.
pub fn leader_in_status(status: &str, shard: usize) -> Option<u64> {
    row_field(status, shard, "leader")?.parse().ok()
}

/// The replicas of `shard` in `xmppd cluster status` output.
pub fn replicas_in_status(status: &str, shard: usize) -> Vec<u64> {
    row_field(status, shard, "replicas")
        .and_then(|r| r.split(',').map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

pub fn lists_user(cfg: &Path, jid: &str) -> bool {
    let (ok, out) = xmppd(cfg, &["user", "list"]);
    ok && out.lines().any(|l| l.trim() == jid)
}

pub async fn until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}
