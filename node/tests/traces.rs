//! OpenTelemetry traces, as an operator with a collector sees them: the
//! nodes export over OTLP/gRPC to a collector, here a small one in the
//! test (a real gRPC server for the OTLP trace service, on loopback). A
//! message read by one edge process, handled by a core process and
//! written by another edge process is one trace whose spans chain from
//! the edge's read to the other edge's write; a message stored offline
//! has a span for its Raft commit; a sample ratio of 0 exports nothing.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Client;
use common::procs::{Proc, config, free_addr, start_env, start_logged_env, xmppd};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

const PW: &str = "pencil-9";

/// One span as the collector received it, with its process.
#[derive(Debug, Clone)]
struct Got {
    role: String,
    pid: i64,
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    /// OTLP span flags: 0x100 says whether the parent is remote is
    /// known, 0x200 that it is.
    flags: u32,
    attrs: Vec<(String, String)>,
    /// The resource's attributes: the process the span comes from.
    resource: Vec<(String, String)>,
}

impl Got {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    fn res(&self, k: &str) -> Option<&str> {
        self.resource
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

fn text(v: &KeyValue) -> String {
    match v.value.as_ref().and_then(|a| a.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Got>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self.spans.lock().expect("lock");
        for rs in req.into_inner().resource_spans {
            let res: Vec<(String, String)> = rs
                .resource
                .map(|r| {
                    r.attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(a)))
                        .collect()
                })
                .unwrap_or_default();
            let get = |k: &str| {
                res.iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Got {
                        role: get("xmppd.role"),
                        pid: get("process.pid").parse().unwrap_or(0),
                        name: s.name,
                        trace: s.trace_id,
                        id: s.span_id,
                        parent: s.parent_span_id,
                        flags: s.flags,
                        attrs: s
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text(a)))
                            .collect(),
                        resource: res.clone(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    async fn start() -> (Collector, SocketAddr) {
        Collector::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    async fn start_on(addr: SocketAddr) -> (Collector, SocketAddr) {
        let c = Collector::default();
        let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let svc = TraceServiceServer::new(c.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l))
                .await;
        });
        (c, addr)
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().expect("lock").clone()
    }
}

/// Spans are sent in batches every 100 ms rather than every 5 s.
const FAST_EXPORT: &[(&str, &str)] = &[("OTEL_BSP_SCHEDULE_DELAY", "100")];

fn tracing_table(collector: SocketAddr, ratio: &str) -> String {
    format!("\n[tracing]\notlp_endpoint = \"http://{collector}\"\nsample_ratio = {ratio}\n")
}

fn add_users(cfg: &Path, dir: &Path, sock: &str, users: &[&str]) {
    let sock = dir.join(sock).join("admin.sock");
    let t = Instant::now();
    while !sock.exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "no admin socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    for u in users {
        let (ok, out) = xmppd(cfg, &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
}

/// Wait until `f` finds what it looks for in the spans collected.
async fn until<T>(c: &Collector, what: &str, f: impl Fn(&[Got]) -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(x) = f(&c.spans()) {
            return x;
        }
        if t.elapsed() > Duration::from_secs(30) {
            let names: Vec<String> = c
                .spans()
                .iter()
                .map(|s| format!("{}:{}:{}", s.role, s.pid, s.name))
                .collect();
            panic!("{what}: not found in {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The chain of spans from `last` up to its trace's root.
fn chain<'a>(spans: &'a [Got], last: &'a Got) -> Vec<&'a Got> {
    let mut out = vec![last];
    let mut at = last;
    while !at.parent.is_empty() {
        let Some(p) = spans
            .iter()
            .find(|s| s.trace == at.trace && s.id == at.parent)
        else {
            break;
        };
        out.push(p);
        at = p;
    }
    out.reverse();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_between_two_edges_is_one_trace_across_three_processes() {
    let (collector, otlp) = Collector::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core_cfg = config(
        dir.path(),
        "core",
        &format!(
            "[cluster]\nrole = \"core\"\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nliveness_secs = 2\n{}",
            tracing_table(otlp, "1.0")
        ),
    );
    let (core, core_addr): (Proc, SocketAddr) =
        start_env(&core_cfg, "cluster listener (gRPC)", FAST_EXPORT);
    add_users(
        &core_cfg,
        dir.path(),
        "core",
        &["alice@localhost", "bob@localhost", "carol@localhost"],
    );
    let edge = |id: u64| {
        let cfg = config(
            dir.path(),
            &format!("edge{id}"),
            &format!(
                "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n\n[cluster]\nrole = \"edge\"\nnode_id = {id}\ncore = \"{core_addr}\"\nliveness_secs = 2\n{}",
                tracing_table(otlp, "1.0")
            ),
        );
        start_env(&cfg, "client listener (STARTTLS)", FAST_EXPORT)
    };
    let (edge_a, addr_a) = edge(11);
    let (edge_b, addr_b) = edge(12);
    let pid = |p: &Proc| i64::from(p.id());
    let (core_pid, a_pid, b_pid) = (pid(&core), pid(&edge_a), pid(&edge_b));

    let mut alice = Client::online(addr_a, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut bob = Client::online(addr_b, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    alice
        .send("<message to='bob@localhost/b' type='chat' id='traced-1'><body>hi</body></message>")
        .await;
    bob.expect(|e| e.attr("id") == Some("traced-1"))
        .await
        .expect("bob gets the message");

    // The write on bob's edge of the stanza that alice's edge read: its
    // chain of parents goes back to the read, through the core.
    let names = until(&collector, "the message's trace", |spans| {
        spans
            .iter()
            .filter(|s| s.name == "stanza write" && s.pid == b_pid)
            .map(|w| chain(spans, w))
            .find(|c| {
                c[0].name == "stanza receive"
                    && c[0].attr("xmpp.stanza.kind") == Some("message")
                    && c[0].attr("xmpp.stanza.type") == Some("chat")
            })
            .map(|c| {
                c.iter()
                    .map(|s| (s.name.clone(), s.role.clone(), s.pid))
                    .collect::<Vec<_>>()
            })
    })
    .await;
    let want = vec![
        ("stanza receive".to_string(), "edge".to_string(), a_pid),
        ("core forward".into(), "core".into(), core_pid),
        ("shard handle".into(), "core".into(), core_pid),
        ("stanza write".into(), "edge".into(), b_pid),
    ];
    assert_eq!(names, want);
    // A span whose parent was recorded in another process says so; one
    // whose parent is in the same process does not.
    let spans = collector.spans();
    let remote = |name: &str, pid: i64| {
        let s = spans
            .iter()
            .find(|s| s.name == name && s.pid == pid && !s.parent.is_empty())
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(s.flags & 0x100, 0x100, "{name}: flags {:#x}", s.flags);
        s.flags & 0x200 != 0
    };
    assert!(remote("core forward", core_pid));
    assert!(!remote("shard handle", core_pid));
    assert!(remote("stanza write", b_pid));
    // Every span of it is in one trace, whose root has no parent.
    let spans = collector.spans();
    // Each process is told apart by its resource: service.instance.id
    // is the host name with the node id.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    for (p, node) in [(core_pid, 1), (a_pid, 11), (b_pid, 12)] {
        let s = spans.iter().find(|s| s.pid == p).expect("a span of each");
        assert_eq!(s.res("service.name"), Some("xmppd"));
        assert_eq!(s.res("xmppd.node_id"), Some(node.to_string().as_str()));
        let instance = s.res("service.instance.id").expect("instance id");
        assert!(instance.ends_with(&format!("/{node}")), "{instance}");
        let host_name = s.res("host.name").expect("host.name");
        if std::env::var("HOSTNAME").is_err() {
            assert_eq!(host_name, host.trim());
        }
        assert_eq!(s.res("service.version"), Some(env!("CARGO_PKG_VERSION")));
    }
    let root = spans
        .iter()
        .find(|s| s.name == "stanza receive" && s.attr("xmpp.stanza.kind") == Some("message"))
        .expect("root");
    assert!(root.parent.is_empty());
    assert_eq!(root.trace.len(), 16);
    // No span names an address (JIDs are personal data).
    for s in &spans {
        for (k, v) in &s.attrs {
            assert!(!v.contains("@localhost"), "{} has {k}={v}", s.name);
        }
    }

    // A message for carol, who is offline, is stored: committed through
    // the shard's Raft group, and the trace shows the commit.
    alice
        .send(
            "<message to='carol@localhost' type='chat' id='traced-2'><body>later</body></message>",
        )
        .await;
    let commit = until(&collector, "a Raft commit span", |spans| {
        spans
            .iter()
            .filter(|s| s.name == "raft commit")
            .map(|c| chain(spans, c))
            .find(|c| {
                c[0].name == "stanza receive"
                    && c[0].pid == a_pid
                    && c[0].attr("xmpp.stanza.kind") == Some("message")
                    && c[0].trace != root.trace
            })
            .map(|c| c.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
    })
    .await;
    assert_eq!(
        commit,
        [
            "stanza receive",
            "core forward",
            "shard handle",
            "raft commit"
        ]
    );
    drop((edge_a, edge_b, core));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_traces_what_its_ratio_keeps() {
    for ratio in ["1.0", "0.0"] {
        let (collector, otlp) = Collector::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(
            dir.path(),
            "single",
            &format!(
                "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n{}",
                tracing_table(otlp, ratio)
            ),
        );
        let mut envs = FAST_EXPORT.to_vec();
        // The operator's resource attributes win over the node's own.
        envs.push((
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.instance.id=pod-x,deployment.environment.name=test",
        ));
        let (node, addr) = start_env(&cfg, "client listener (STARTTLS)", &envs);
        add_users(
            &cfg,
            dir.path(),
            "single",
            &["dave@localhost", "erin@localhost"],
        );
        let mut dave = Client::online(addr, "dave@localhost", PW, "d")
            .await
            .expect("dave");
        let mut erin = Client::online(addr, "erin@localhost", PW, "e")
            .await
            .expect("erin");
        dave.send("<message to='erin@localhost/e' type='chat' id='s1'><body>x</body></message>")
            .await;
        erin.expect(|e| e.attr("id") == Some("s1"))
            .await
            .expect("erin gets it");
        if ratio == "1.0" {
            let names = until(&collector, "the single node's trace", |spans| {
                spans
                    .iter()
                    .filter(|s| s.name == "stanza write")
                    .map(|w| chain(spans, w))
                    .find(|c| {
                        c[0].attr("xmpp.stanza.kind") == Some("message")
                            && c[0].name == "stanza receive"
                    })
                    .map(|c| c.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            })
            .await;
            assert_eq!(names, ["stanza receive", "shard handle", "stanza write"]);
            for s in collector.spans() {
                assert_eq!(s.role, "single");
                assert_eq!(s.res("service.instance.id"), Some("pod-x"));
                assert_eq!(s.res("deployment.environment.name"), Some("test"));
                assert_eq!(s.res("service.name"), Some("xmppd"));
            }
        } else {
            // Several export periods pass with nothing to send.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(
                collector.spans().is_empty(),
                "sample_ratio 0 exported {:?}",
                collector.spans()
            );
        }
        drop(node);
    }
}

/// A counter's value in a node's `/metrics`.
fn metric(http: SocketAddr, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// While the collector is down, spans are lost, and the operator learns
/// it from a counter and one warning (not one per batch); once it is up,
/// spans arrive and the log says exports work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_to_a_collector_that_is_down_are_counted_and_logged_once() {
    let otlp = free_addr();
    let http = free_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "single",
        &format!(
            "[listeners]\nhttp = \"{http}\"\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n{}",
            tracing_table(otlp, "1.0")
        ),
    );
    let (node, addr, log) = start_logged_env(&cfg, "client listener (STARTTLS)", FAST_EXPORT);
    add_users(
        &cfg,
        dir.path(),
        "single",
        &["frank@localhost", "grace@localhost"],
    );
    let mut frank = Client::online(addr, "frank@localhost", PW, "f")
        .await
        .expect("frank");
    let mut grace = Client::online(addr, "grace@localhost", PW, "g")
        .await
        .expect("grace");
    let warned = |what: &str| {
        log.lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains(what))
            .count()
    };
    let failed = "trace export to the OTLP collector failed";
    // Messages over several export periods, each export failing.
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(2)
        || metric(http, "xmppd_trace_export_failures_total") < 3.0
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "exports did not fail"
        );
        n += 1;
        let id = format!("down-{n}");
        frank
            .send(&format!(
                "<message to='grace@localhost/g' type='chat' id='{id}'><body>x</body></message>"
            ))
            .await;
        grace
            .expect(|e| e.attr("id") == Some(id.as_str()))
            .await
            .expect("grace gets it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric(http, "xmppd_trace_spans_lost_total") >= 3.0);
    assert_eq!(warned(failed), 1, "one warning a minute at most");
    assert!(
        log.lock()
            .expect("log")
            .iter()
            .all(|l| !l.contains("ERROR")),
        "no error lines from the SDK"
    );

    // The collector comes up at the address: spans arrive, and the log
    // says so.
    let (collector, _) = Collector::start_on(otlp).await;
    let t = Instant::now();
    while collector.spans().is_empty() || warned("trace export works again") == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "exports did not resume"
        );
        frank
            .send("<message to='grace@localhost/g' type='chat' id='up'><body>x</body></message>")
            .await;
        grace
            .expect(|e| e.attr("id") == Some("up"))
            .await
            .expect("grace gets it");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(warned(failed), 1);
    drop(node);
}

/// A collector that takes connections and never answers holds each
/// export for its timeout: the queue fills, and what does not fit is
/// dropped, counted, and warned about once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_beyond_a_full_export_queue_are_counted() {
    let hang = std::net::TcpListener::bind(free_addr()).expect("bind");
    let otlp = hang.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hang.incoming().flatten() {
            held.push(c);
        }
    });
    let http = free_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "single",
        &format!(
            "[listeners]\nhttp = \"{http}\"\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n{}",
            tracing_table(otlp, "1.0")
        ),
    );
    let envs = [
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
    ];
    let (node, addr, log) = start_logged_env(&cfg, "client listener (STARTTLS)", &envs);
    add_users(
        &cfg,
        dir.path(),
        "single",
        &["hank@localhost", "ivy@localhost"],
    );
    let mut hank = Client::online(addr, "hank@localhost", PW, "h")
        .await
        .expect("hank");
    let mut ivy = Client::online(addr, "ivy@localhost", PW, "i")
        .await
        .expect("ivy");
    for n in 0..20 {
        let id = format!("q{n}");
        hank.send(&format!(
            "<message to='ivy@localhost/i' type='chat' id='{id}'><body>x</body></message>"
        ))
        .await;
        ivy.expect(|e| e.attr("id") == Some(id.as_str()))
            .await
            .expect("ivy gets it, however the traces fare");
    }
    let t = Instant::now();
    while metric(http, "xmppd_trace_spans_dropped_total") < 1.0 {
        assert!(t.elapsed() < Duration::from_secs(30), "nothing dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warnings = log
        .lock()
        .expect("log")
        .iter()
        .filter(|l| l.contains("trace spans dropped: the export queue is full"))
        .count();
    assert_eq!(warnings, 1);
    drop(node);
}
