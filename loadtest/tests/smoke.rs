//! Smoke runs of every scenario at a small scale against real servers:
//! the `xmppd` binary of this workspace (built beside `xmpp-loadtest` by
//! `cargo test --workspace`) and, for `muc` and `pubsub`, which xmppd does
//! not serve yet, Prosody started from `loadtest/servers/prosody.sh`.
//!
//! Each test runs the real harness binary and checks its JSON: what it
//! sent against what arrived, and that a server that dies midway makes the
//! harness report failures and exit non-zero instead of hanging.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const HARNESS: &str = env!("CARGO_BIN_EXE_xmpp-loadtest");

/// This crate's directory, read when the test runs: a compiler cache may
/// hand back a test binary built from a clone at another path.
fn manifest_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
}

fn xmppd_bin() -> PathBuf {
    let p = Path::new(HARNESS).with_file_name("xmppd");
    assert!(
        p.exists(),
        "{} is missing: build the workspace (cargo test --workspace) first",
        p.display()
    );
    p
}

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Xmppd {
    proc: Proc,
    addr: SocketAddr,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Xmppd {
    fn start() -> Xmppd {
        Self::start_with(
            "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = \"127.0.0.1:0\"\n",
            "client listener (STARTTLS)",
        )
    }

    /// A node with `extra` configuration; `addr` is the one in its first
    /// log line containing `announce`.
    fn start_with(extra: &str, announce: &'static str) -> Xmppd {
        Self::start_limited(extra, "", announce)
    }

    /// As `start_with`, with `limits` added to the `[limits]` table.
    fn start_limited(extra: &str, limits: &str, announce: &'static str) -> Xmppd {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("xmppd.toml");
        // Each process's HTTP listener on a port of its own (the default
        // 9090 would clash between the tests' processes).
        let http = "http = \"127.0.0.1:0\"\n";
        let extra = if extra.contains("[listeners]\n") {
            extra.replacen("[listeners]\n", &format!("[listeners]\n{http}"), 1)
        } else {
            format!("[listeners]\n{http}{extra}")
        };
        std::fs::write(
            &config,
            format!(
                "domains = [\"localhost\"]\ndata_dir = \"{}\"\n{extra}\
                 [limits]\nread_rate_bytes_per_sec = 0\nstanza_rate_per_sec = 0\nmax_connections_per_ip = 5000\n{limits}\
                 [registration]\nenabled = true\nmin_password_len = 4\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let mut child = Command::new(xmppd_bin())
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn xmppd");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains(announce)
                    && let Some(a) = line.split("addr=").nth(1)
                {
                    let a = a.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(a.trim_matches('"').to_string());
                }
            }
        });
        let proc = Proc(child);
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("xmppd announced its port")
            .parse()
            .expect("address");
        Xmppd {
            proc,
            addr,
            config,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    fn kill(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }
}

struct Run {
    code: i32,
    report: Value,
    took: Duration,
    out: String,
}

/// Run the harness with `args` plus `--json`; give up after `limit`.
fn harness(args: &[&str], limit: Duration) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let start = Instant::now();
    let mut child = Command::new(HARNESS)
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn harness");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut out = String::new();
            for s in [
                child
                    .stdout
                    .take()
                    .map(|o| Box::new(o) as Box<dyn std::io::Read>),
                child
                    .stderr
                    .take()
                    .map(|o| Box::new(o) as Box<dyn std::io::Read>),
            ]
            .into_iter()
            .flatten()
            {
                let mut s = s;
                let _ = s.read_to_string(&mut out);
            }
            let report = std::fs::read_to_string(&json)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            return Run {
                code: status.code().unwrap_or(-1),
                report,
                took: start.elapsed(),
                out,
            };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the harness did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn port(x: &Xmppd) -> String {
    x.addr.port().to_string()
}

fn num(r: &Value, path: &str) -> u64 {
    let mut v = r;
    for k in path.split('.') {
        v = &v[k];
    }
    v.as_u64()
        .or_else(|| v.as_f64().map(|f| f as u64))
        .unwrap_or_else(|| panic!("{path} missing in {r}"))
}

fn passed(run: &Run) {
    assert_eq!(run.code, 0, "the run failed:\n{}", run.out);
    assert_eq!(run.report["ok"], Value::Bool(true));
}

#[test]
fn connect_creates_accounts_by_command_and_holds_sessions() {
    let x = Xmppd::start();
    let create = format!(
        "{} --config {} user add {{user}}@{{domain}} --password {{password}}",
        xmppd_bin().display(),
        x.config.display()
    );
    let run = harness(
        &[
            "connect",
            "--port",
            &port(&x),
            "--create-command",
            &create,
            "--sessions",
            "20",
            "--login-rate",
            "100",
            "--duration",
            "1",
            "--server-pid",
            &x.pid().to_string(),
        ],
        Duration::from_secs(60),
    );
    passed(&run);
    let r = &run.report["result"];
    assert_eq!(num(r, "sessions"), 20);
    assert_eq!(num(r, "failed_logins"), 0);
    assert!(num(r, "server_bytes_per_session") > 0);
    assert!(run.report["cpu"]["server_seconds"].as_f64().is_some());
    assert!(
        !run.report["timeline"]
            .as_array()
            .expect("timeline")
            .is_empty()
    );
}

/// A ramp longer than the server's idle timeout: the sessions that are in
/// answer the server's pings while the others log in, so none is closed
/// (the first ~2,300 of a 100,000-session ramp were, 360 s in).
#[test]
fn sessions_waiting_for_a_long_ramp_answer_the_servers_pings() {
    let x = Xmppd::start_limited(
        "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n",
        "idle_timeout_secs = 1\nping_timeout_secs = 1\n",
        "client listener (STARTTLS)",
    );
    let run = harness(
        &[
            "connect",
            "--port",
            &port(&x),
            "--register",
            "--user-pattern",
            "slow{n}",
            "--sessions",
            "8",
            "--login-rate",
            "2",
            "--duration",
            "1",
        ],
        Duration::from_secs(60),
    );
    passed(&run);
    assert_eq!(num(&run.report["result"], "sessions_lost_during_hold"), 0);
}

#[test]
fn chat_counts_every_message_flat_out_and_paced() {
    let x = Xmppd::start();
    let p = port(&x);
    let run = harness(
        &[
            "chat",
            "--port",
            &p,
            "--register",
            "--pairs",
            "4",
            "--duration",
            "2",
        ],
        Duration::from_secs(60),
    );
    passed(&run);
    let r = &run.report["result"];
    assert!(num(r, "sent") > 100, "{r}");
    assert_eq!(num(r, "sent"), num(r, "delivered"));
    assert_eq!(num(r, "lost"), 0);
    assert!(num(r, "latency_us.p99") >= num(r, "latency_us.p50"));

    // 100 messages/s for 2 s: 200 messages, give or take the pacing's edges.
    let run = harness(
        &[
            "chat",
            "--port",
            &p,
            "--pairs",
            "4",
            "--rate",
            "100",
            "--duration",
            "2",
        ],
        Duration::from_secs(60),
    );
    passed(&run);
    let sent = num(&run.report["result"], "sent");
    assert!((180..=220).contains(&sent), "paced run sent {sent}");
    assert_eq!(sent, num(&run.report["result"], "delivered"));
}

#[test]
fn presence_churn_reaches_every_watcher() {
    let x = Xmppd::start();
    let run = harness(
        &[
            "presence",
            "--port",
            &port(&x),
            "--register",
            "--presence-users",
            "12",
            "--contacts",
            "3",
            "--churn-interval",
            "0.5",
            "--duration",
            "3",
        ],
        Duration::from_secs(90),
    );
    passed(&run);
    let r = &run.report["result"];
    assert_eq!(num(r, "users"), 12);
    assert!(num(r, "churn_presences_sent") >= 6, "{r}");
    assert_eq!(
        num(r, "expected_at_watchers"),
        num(r, "churn_presences_sent") * 2
    );
    assert_eq!(
        num(r, "received_at_watchers"),
        num(r, "expected_at_watchers")
    );
}

#[test]
fn mixed_runs_the_blend_from_a_scenario_file() {
    let x = Xmppd::start();
    let file = manifest_dir().join("scenarios/mixed.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let html = dir.path().join("report.html");
    // The file's scale, cut down on the command line; xmppd has no MUC or
    // PubSub service yet.
    let run = harness(
        &[
            "--scenario-file",
            file.to_str().expect("path"),
            "--port",
            &port(&x),
            "--register",
            "--duration",
            "3",
            "--sessions",
            "20",
            "--pairs",
            "5",
            "--rate",
            "100",
            "--presence-users",
            "11",
            "--contacts",
            "10",
            "--churn-interval",
            "1",
            "--rooms",
            "0",
            "--subscribers",
            "0",
            "--html",
            html.to_str().expect("path"),
        ],
        Duration::from_secs(90),
    );
    passed(&run);
    let r = &run.report["result"];
    assert_eq!(run.report["scenario"], "mixed");
    assert_eq!(num(r, "chat.sent"), num(r, "chat.delivered"));
    assert!(num(r, "chat.sent") >= 250, "{r}");
    assert_eq!(
        num(r, "presence.received_at_watchers"),
        num(r, "presence.expected_at_watchers")
    );
    assert_eq!(num(r, "idle.sessions"), 20);
    assert!(r.get("muc").is_none() && r.get("pubsub").is_none());
    let page = std::fs::read_to_string(&html).expect("html report");
    assert!(page.contains("<svg") && page.contains("chat.delivered"));
}

/// Every scenario runs over WebSocket and BOSH through the same client:
/// logins (in-band registration, SCRAM, PLAIN), chat and the idle
/// sessions of `connect`, over ws://, wss:// and BOSH.
#[test]
fn scenarios_run_over_websocket_plain_and_with_tls_and_bosh() {
    for (listener, transport, announce) in [
        (
            "websocket",
            "websocket",
            "client listener (WebSocket, RFC 7395)",
        ),
        (
            "websocket_tls",
            "wss",
            "client listener (WebSocket with TLS, RFC 7395)",
        ),
        // BOSH (XEP-0206) at /http-bind on the plain WebSocket listener.
        ("websocket", "bosh", "client listener (WebSocket, RFC 7395)"),
    ] {
        let x = Xmppd::start_with(
            &format!(
                "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n{listener} = \"127.0.0.1:0\"\n"
            ),
            announce,
        );
        let p = port(&x);
        let ws = ["--port", &p, "--transport", transport];
        let run = harness(
            &[
                &["chat", "--register", "--pairs", "3", "--duration", "2"],
                &ws[..],
            ]
            .concat(),
            Duration::from_secs(60),
        );
        passed(&run);
        assert_eq!(run.report["server"]["transport"], transport);
        let r = &run.report["result"];
        assert!(num(r, "sent") > 100, "{transport}: {r}");
        assert_eq!(num(r, "sent"), num(r, "delivered"), "{transport}");
        // Stream management over WebSocket: <r/> and <a/> are elements
        // like any other, one per message.
        let run = harness(
            &[
                &["chat", "--sm", "--pairs", "3", "--duration", "2"],
                &ws[..],
            ]
            .concat(),
            Duration::from_secs(60),
        );
        passed(&run);
        assert_eq!(num(&run.report, "sm.enabled"), 6, "{transport}");
        let r = &run.report["result"];
        assert!(num(r, "sent") > 1000, "{transport}: {r}");
        assert_eq!(num(r, "sent"), num(r, "delivered"), "{transport}");
        let run = harness(
            &[
                &[
                    "chat",
                    "--mechanism",
                    "PLAIN",
                    "--pairs",
                    "3",
                    "--duration",
                    "1",
                ],
                &ws[..],
            ]
            .concat(),
            Duration::from_secs(60),
        );
        passed(&run);
        let pid = x.pid().to_string();
        let run = harness(
            &[
                &[
                    "connect",
                    "--register",
                    "--sessions",
                    "20",
                    "--duration",
                    "1",
                    "--server-pid",
                    &pid,
                ],
                &ws[..],
            ]
            .concat(),
            Duration::from_secs(60),
        );
        passed(&run);
        assert_eq!(num(&run.report["result"], "sessions"), 20, "{transport}");
        assert_eq!(
            num(&run.report["result"], "sessions_lost_during_hold"),
            0,
            "{transport}"
        );
    }
}

#[test]
fn a_server_killed_midway_fails_the_run_without_hanging() {
    let mut x = Xmppd::start();
    let p = port(&x);
    // Accounts first, so that the killed run is only messaging.
    passed(&harness(
        &[
            "chat",
            "--port",
            &p,
            "--register",
            "--pairs",
            "3",
            "--duration",
            "0.5",
        ],
        Duration::from_secs(60),
    ));
    let killer = {
        let pid = x.pid();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        })
    };
    let run = harness(
        &["chat", "--port", &p, "--pairs", "3", "--duration", "30"],
        Duration::from_secs(60),
    );
    killer.join().expect("killer");
    x.kill();
    assert_eq!(run.code, 1, "{}", run.out);
    assert!(run.took < Duration::from_secs(25), "took {:?}", run.took);
    assert_eq!(run.report["ok"], Value::Bool(false));
    let causes = run.report["errors"].as_object().expect("errors");
    assert!(
        causes
            .keys()
            .any(|k| k.contains("lost") || k.contains("failed")),
        "{causes:?}"
    );
    assert!(run.out.contains("FAILED"), "{}", run.out);
}

#[test]
fn a_server_killed_during_the_hold_fails_connect() {
    let mut x = Xmppd::start();
    let pid = x.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    });
    let run = harness(
        &[
            "connect",
            "--port",
            &port(&x),
            "--register",
            "--sessions",
            "10",
            "--duration",
            "20",
        ],
        Duration::from_secs(60),
    );
    killer.join().expect("killer");
    x.kill();
    assert_eq!(run.code, 1, "{}", run.out);
    assert_eq!(num(&run.report["result"], "sessions_lost_during_hold"), 10);
}

#[test]
fn muc_and_pubsub_run_against_xmppd() {
    let x = Xmppd::start();
    // xmppd has a MUC service: every groupchat message reaches every
    // occupant, none twice.
    let run = harness(
        &[
            "muc",
            "--port",
            &port(&x),
            "--register",
            "--occupants",
            "3",
            "--duration",
            "1",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, 0, "{}", run.out);
    let r = &run.report["result"];
    assert_eq!(
        r["service"].as_str(),
        Some("conference.localhost"),
        "{}",
        run.out
    );
    assert!(num(r, "delivered") > 0, "{}", run.out);
    assert_eq!(
        num(r, "delivered"),
        num(r, "expected_deliveries"),
        "{}",
        run.out
    );
    assert_eq!(num(r, "lost"), 0, "{}", run.out);
    assert_eq!(num(r, "duplicates"), 0, "{}", run.out);
    // xmppd has a PubSub service: every publish reaches every subscriber.
    let run = harness(
        &[
            "pubsub",
            "--port",
            &port(&x),
            "--register",
            "--subscribers",
            "3",
            "--duration",
            "2",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, 0, "{}", run.out);
    let r = &run.report["result"];
    assert!(num(r, "delivered") > 0, "{}", run.out);
    assert_eq!(num(r, "lost"), 0, "{}", run.out);
}

/// A Prosody of our own (loadtest/servers/prosody.sh) on a free loopback
/// port, with MUC and PubSub, stopped when dropped.
struct Prosody {
    pid: u32,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prosody {
    fn start() -> Prosody {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let script = manifest_dir().join("servers/prosody.sh");
        let w = dir.path().display().to_string();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -e; . '{script}'; \
                 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
                   -subj /CN=localhost -keyout '{w}/key.pem' -out '{w}/cert.pem' 2>/dev/null; \
                 prosody_config '{w}/p' {port} localhost '{w}/cert.pem' '{w}/key.pem'; \
                 prosody_start '{w}/p' > /dev/null; echo $PID",
                script = script.display()
            ))
            .stderr(Stdio::inherit())
            .output()
            .expect("run prosody.sh (is bash there?)");
        assert!(
            out.status.success(),
            "Prosody did not start: install it with scripts/setup.sh"
        );
        let pid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("prosody's pid");
        Prosody { pid, port, dir }
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let pattern = format!("prosody -F --config {}/p/", self.dir.path().display());
        for _ in 0..50 {
            let alive = Command::new("pgrep")
                .arg("-f")
                .arg(&pattern)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !alive {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(&pattern)
            .status();
    }
}

#[test]
fn muc_pubsub_and_the_whole_mix_against_prosody() {
    let p = Prosody::start();
    let port = p.port.to_string();
    let pid = p.pid.to_string();
    let common = [
        "--port",
        port.as_str(),
        "--register",
        "--mechanism",
        "SCRAM-SHA-1",
        "--server-pid",
        pid.as_str(),
    ];

    let mut args = vec![
        "muc",
        "--rooms",
        "2",
        "--occupants",
        "4",
        "--window",
        "4",
        "--duration",
        "2",
    ];
    args.extend(common);
    let run = harness(&args, Duration::from_secs(90));
    passed(&run);
    let r = &run.report["result"];
    assert!(num(r, "sent") > 10, "{r}");
    // Every occupant, the sender included, gets every message.
    assert_eq!(num(r, "expected_deliveries"), num(r, "sent") * 4);
    assert_eq!(num(r, "delivered"), num(r, "expected_deliveries"));
    assert!(num(r, "last_recipient_us.p50") >= num(r, "first_recipient_us.p50"));

    let mut args = vec![
        "pubsub",
        "--subscribers",
        "3",
        "--window",
        "4",
        "--duration",
        "2",
    ];
    args.extend(common);
    let run = harness(&args, Duration::from_secs(90));
    passed(&run);
    let r = &run.report["result"];
    assert!(num(r, "sent") > 10, "{r}");
    assert_eq!(num(r, "delivered"), num(r, "sent") * 3);

    let file = manifest_dir().join("scenarios/mixed.toml");
    let mut args = vec![
        "--scenario-file",
        file.to_str().expect("path"),
        "--duration",
        "3",
        "--sessions",
        "10",
        "--pairs",
        "3",
        "--rate",
        "60",
        "--presence-users",
        "6",
        "--contacts",
        "2",
        "--churn-interval",
        "1",
        "--rooms",
        "2",
        "--occupants",
        "3",
        "--muc-rate",
        "20",
        "--subscribers",
        "3",
        "--publish-rate",
        "10",
    ];
    args.extend(common);
    let run = harness(&args, Duration::from_secs(120));
    passed(&run);
    let r = &run.report["result"];
    for part in ["chat", "presence", "muc", "pubsub", "idle"] {
        assert!(r.get(part).is_some(), "{part} missing: {r}");
    }
    assert_eq!(num(r, "muc.delivered"), num(r, "muc.sent") * 3);
    assert_eq!(num(r, "pubsub.delivered"), num(r, "pubsub.sent") * 3);
}

/// `--also`: the two users of each pair log in through different edges of
/// a cluster (one core node, two edges), and every message crosses the
/// core; the harness counts them all.
#[test]
fn chat_across_the_edges_of_a_cluster() {
    let core = Xmppd::start_with(
        "[cluster]\nrole = \"core\"\nlisten = \"127.0.0.1:0\"\n",
        "cluster listener (gRPC)",
    );
    let edge = |id: u64| {
        Xmppd::start_with(
            &format!(
                "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n\
                 [cluster]\nrole = \"edge\"\nnode_id = {id}\ncore = \"{}\"\n",
                core.addr
            ),
            "client listener (STARTTLS)",
        )
    };
    let (e2, e3) = (edge(2), edge(3));
    let also = format!("127.0.0.1:{}", port(&e3));
    let run = harness(
        &[
            "chat",
            "--port",
            &port(&e2),
            "--also",
            &also,
            "--register",
            "--pairs",
            "5",
            "--window",
            "8",
            "--duration",
            "2",
        ],
        Duration::from_secs(60),
    );
    passed(&run);
    let r = &run.report;
    assert!(num(r, "result.sent") > 0, "{r}");
    assert_eq!(num(r, "result.delivered"), num(r, "result.sent"), "{r}");
    let addrs = r["server"]["address"].as_str().unwrap_or_default();
    assert!(
        addrs.contains(&port(&e2)) && addrs.contains(&port(&e3)),
        "both edges in the report: {addrs}"
    );
}

/// `--sm`: every session enables stream management (XEP-0198) and
/// answers the server's `<r/>`, or the server would close it past
/// `sm.max_unacked` (1000) stanzas unacknowledged: a chat flat out sends
/// each receiver thousands.
#[test]
fn chat_with_stream_management_answers_every_ack_request() {
    let x = Xmppd::start();
    let run = harness(
        &[
            "chat",
            "--port",
            &port(&x),
            "--register",
            "--sm",
            "--pairs",
            "3",
            "--duration",
            "2",
        ],
        Duration::from_secs(60),
    );
    passed(&run);
    let r = &run.report;
    assert_eq!(num(r, "sm.enabled"), 6, "{r}");
    assert!(num(r, "result.sent") > 3000, "{r}");
    assert_eq!(num(r, "result.sent"), num(r, "result.delivered"));
    // Without --sm the report has no `sm`.
    let run = harness(
        &[
            "chat",
            "--port",
            &port(&x),
            "--pairs",
            "3",
            "--duration",
            "1",
        ],
        Duration::from_secs(60),
    );
    passed(&run);
    assert!(run.report.get("sm").is_none(), "{}", run.report);
}

/// `resume` on a cluster of one core node and two edges: the receivers
/// (stream management on, on edge 1) lose their connections when edge 1
/// is killed, resume on edge 2, and get every numbered message the
/// senders (on edge 2) sent them, also those sent while they were away.
#[test]
fn receivers_resume_on_the_other_edge_when_theirs_is_killed() {
    let core = Xmppd::start_with(
        "[cluster]\nrole = \"core\"\nlisten = \"127.0.0.1:0\"\n",
        "cluster listener (gRPC)",
    );
    let edge = |id: u64| {
        Xmppd::start_with(
            &format!(
                "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n\
                 [cluster]\nrole = \"edge\"\nnode_id = {id}\ncore = \"{}\"\n",
                core.addr
            ),
            "client listener (STARTTLS)",
        )
    };
    let (mut e2, e3) = (edge(2), edge(3));
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let args: Vec<String> = [
        "resume",
        "--port",
        &port(&e2),
        "--also",
        &format!("127.0.0.1:{}", port(&e3)),
        "--register",
        "--cache-scram",
        "--senders",
        "2",
        "--receivers",
        "20",
        "--rate",
        "200",
        "--duration",
        "6",
        "--ready-file",
        ready.to_str().expect("path"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        harness(&args, Duration::from_secs(120))
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the receivers never got in");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Some messages first, then the kill, whose time the harness measures from.
    std::thread::sleep(Duration::from_secs(1));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let mut killed = ready.clone().into_os_string();
    killed.push(".killed");
    std::fs::write(&killed, format!("{now:.6}")).expect("kill time");
    e2.kill();
    let run = run.join().expect("harness thread");
    passed(&run);
    let r = &run.report["result"];
    assert_eq!(num(r, "receivers_dropped"), 20, "{r}");
    assert_eq!(num(r, "resumed"), 20, "{r}");
    assert_eq!(num(r, "not_resumed"), 0, "{r}");
    assert_eq!(num(r, "lost"), 0, "{r}");
    assert!(num(r, "sent") > 500, "{r}");
    assert_eq!(num(r, "delivered"), num(r, "sent"), "{r}");
    assert_eq!(r["measured_from"], "the kill", "{r}");
    assert!(r["all_resumed_after_seconds"].as_f64().is_some(), "{r}");
    assert_eq!(num(&run.report, "sm.resumed"), 20);
}
