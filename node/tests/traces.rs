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
use common::procs::{Proc, config, start_env, xmppd};
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
    attrs: Vec<(String, String)>,
}

impl Got {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
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
            assert_eq!(get("service.name"), "xmppd");
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Got {
                        role: get("xmppd.role"),
                        pid: get("process.pid").parse().unwrap_or(0),
                        name: s.name,
                        trace: s.trace_id,
                        id: s.span_id,
                        parent: s.parent_span_id,
                        attrs: s
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text(a)))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    async fn start() -> (Collector, SocketAddr) {
        let c = Collector::default();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
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
    // Every span of it is in one trace, whose root has no parent.
    let spans = collector.spans();
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
        let (node, addr) = start_env(&cfg, "client listener (STARTTLS)", FAST_EXPORT);
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
            assert!(collector.spans().iter().all(|s| s.role == "single"));
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
