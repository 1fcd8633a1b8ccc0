//! The cluster as Kubernetes runs it, with real processes started the way
//! the chart's StatefulSet and Deployment start them: core pods
//! `xmppd-core-N` with one configuration (`node_id = "ordinal"`, the
//! seeds as `peers`, `auto_join`), each on its own data directory (its
//! volume), and edges with `node_id = "auto"`. Scaling 3 -> 5 -> 3 needs
//! no command: new pods join by themselves, and pods scaled away leave in
//! their preStop hook (`xmppd cluster leave --if-scaled-down`), which asks
//! the Kubernetes API how many replicas the StatefulSet wants. That API is
//! played by a small HTTPS server in the test (no Kubernetes can run on
//! this machine); it checks the service account's token and the path.
//! No account or stored message is lost, and clients chat throughout.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::Client;
use common::procs::*;

const PW: &str = "correct horse";
const NS: &str = "chat";
const SA_TOKEN: &str = "service-account-token-of-xmppd-core";

/// The Kubernetes API as a core pod's preStop hook asks it: one
/// StatefulSet, `xmppd-core` in namespace `chat`, whose `spec.replicas`
/// the test sets.
struct KubeApi {
    port: u16,
    replicas: Arc<AtomicU64>,
    asked: Arc<AtomicUsize>,
    sa_dir: PathBuf,
}

impl KubeApi {
    fn start(dir: &Path) -> KubeApi {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let sa_dir = dir.join("serviceaccount");
        std::fs::create_dir_all(&sa_dir).expect("sa dir");
        std::fs::write(sa_dir.join("ca.crt"), cert.pem()).expect("ca");
        std::fs::write(sa_dir.join("token"), SA_TOKEN).expect("token");
        std::fs::write(sa_dir.join("namespace"), NS).expect("namespace");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server config");
        let tls = Arc::new(tls);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let replicas = Arc::new(AtomicU64::new(3));
        let asked = Arc::new(AtomicUsize::new(0));
        let (r, a) = (replicas.clone(), asked.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(mut tcp) = tcp else { continue };
                let Ok(mut conn) = rustls::ServerConnection::new(tls.clone()) else {
                    continue;
                };
                let mut s = rustls::Stream::new(&mut conn, &mut tcp);
                let mut head = Vec::new();
                {
                    let mut reader = BufReader::new(&mut s);
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => head.push(line.trim_end().to_string()),
                        }
                    }
                }
                a.fetch_add(1, Ordering::SeqCst);
                let authorised = head
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&format!("authorization: bearer {SA_TOKEN}")));
                let wanted =
                    format!("GET /apis/apps/v1/namespaces/{NS}/statefulsets/xmppd-core HTTP/1.1");
                let (status, body) = if !authorised {
                    ("401 Unauthorized", "{\"kind\":\"Status\"}".to_string())
                } else if head.first() != Some(&wanted) {
                    ("404 Not Found", "{\"kind\":\"Status\"}".to_string())
                } else {
                    (
                        "200 OK",
                        format!(
                            "{{\"kind\":\"StatefulSet\",\"metadata\":{{\"name\":\"xmppd-core\"}},\"spec\":{{\"replicas\":{}}}}}",
                            r.load(Ordering::SeqCst)
                        ),
                    )
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.flush();
                s.conn.send_close_notify();
                let _ = s.flush();
            }
        });
        KubeApi {
            port,
            replicas,
            asked,
            sa_dir,
        }
    }
}

/// The core pods: their processes (None while not running), data and
/// configuration (kept across restarts, as a PVC is), addresses.
struct Pods {
    dir: tempfile::TempDir,
    procs: Vec<Option<Proc>>,
    cfgs: Vec<PathBuf>,
    grpc: Vec<SocketAddr>,
    seeds: String,
}

impl Pods {
    fn new(max: usize) -> Pods {
        let dir = tempfile::tempdir().expect("tempdir");
        let grpc: Vec<SocketAddr> = (0..max).map(|_| free_addr()).collect();
        // The chart lists the first three ordinals as seeds.
        let seeds = (0..3)
            .map(|i| format!("\"{}={}\"", i + 1, grpc[i]))
            .collect::<Vec<_>>()
            .join(", ");
        let mut pods = Pods {
            dir,
            procs: Vec::new(),
            cfgs: Vec::new(),
            grpc,
            seeds,
        };
        for i in 0..max {
            // One configuration for every pod but the addresses, which
            // are one DNS name per pod under Kubernetes and one port per
            // process here.
            let cfg = config(
                pods.dir.path(),
                &format!("xmppd-core-{i}"),
                &format!(
                    "[cluster]\nrole = \"core\"\nnode_id = \"ordinal\"\nlisten = \"{a}\"\nadvertise = \"{a}\"\nauto_join = true\nliveness_secs = 2\npeers = [{}]\n",
                    pods.seeds,
                    a = pods.grpc[i]
                ),
            );
            pods.cfgs.push(cfg);
            pods.procs.push(None);
        }
        pods
    }

    fn host(i: usize) -> String {
        format!("xmppd-core-{i}")
    }

    fn env(i: usize, api: &KubeApi) -> Vec<(&'static str, String)> {
        vec![
            ("HOSTNAME", Pods::host(i)),
            ("POD_NAME", Pods::host(i)),
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".into()),
            ("KUBERNETES_SERVICE_PORT", api.port.to_string()),
            ("XMPPD_K8S_SA_DIR", api.sa_dir.display().to_string()),
        ]
    }

    /// Start pod `i` as the StatefulSet controller would.
    fn start(&mut self, i: usize, api: &KubeApi) {
        let env = Pods::env(i, api);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (p, _) = start_env(&self.cfgs[i], "cluster listener (gRPC)", &env);
        self.procs[i] = Some(p);
    }

    /// What the kubelet does to a pod that goes: the preStop hook, then
    /// SIGTERM, and the process's exit status.
    fn terminate(&mut self, i: usize, api: &KubeApi) -> (String, bool) {
        let env = Pods::env(i, api);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (ok, hook) = xmppd_env(
            &self.cfgs[i],
            &["cluster", "leave", "--if-scaled-down", "--wait", "120"],
            &env,
        );
        assert!(ok, "the preStop hook of pod {i} failed: {hook}");
        let mut p = self.procs[i].take().expect("running");
        if p.0.try_wait().ok().flatten().is_none() {
            signal(&p, "TERM");
        }
        let status = p.0.wait().expect("wait");
        (hook, status.success())
    }

    /// `xmppd` run in pod `i` (`kubectl exec`: the pod's host name).
    fn exec(&self, i: usize, args: &[&str]) -> (bool, String) {
        xmppd_env(&self.cfgs[i], args, &[("HOSTNAME", &Pods::host(i))])
    }

    fn status(&self, via: usize) -> String {
        let (ok, st) = self.exec(via, &["cluster", "status"]);
        if ok { st } else { String::new() }
    }

    /// The ids of the healthy members in `xmppd cluster status` (core
    /// rows whose health is `ok`: not down, joining or leaving).
    fn members(st: &str) -> Vec<u64> {
        st.lines()
            .skip(2)
            .take_while(|l| !l.starts_with("meta leader") && !l.starts_with("shards"))
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.get(1) == Some(&"core") && w.get(3) == Some(&"ok"))
                    .then(|| w[0].parse().ok())
                    .flatten()
            })
            .collect()
    }

    /// The members are exactly `members`, all healthy, and every shard
    /// sits where the cluster places it among them: shard s on the
    /// members s, s+1, s+2 (in id order, wrapping), led by the first.
    fn settled(st: &str, members: &[u64]) -> bool {
        let n = members.len();
        Pods::members(st) == members
            && (0..16).all(|s| {
                let mut want: Vec<u64> = (0..n.min(3)).map(|k| members[(s + k) % n]).collect();
                want.sort_unstable();
                leader_in_status(st, s) == Some(members[s % n]) && replicas_in_status(st, s) == want
            })
    }
}

/// `n` messages from `from` reach `to` (on another edge).
async fn chat(from: &mut Client, to: &mut Client, to_jid: &str, tag: &str, n: usize) {
    for i in 0..n {
        from.send(&format!(
            "<message to='{to_jid}/phone' type='chat' id='{tag}{i}'><body>{tag} {i}</body></message>"
        ))
        .await;
    }
    for i in 0..n {
        let id = format!("{tag}{i}");
        to.expect(|e| e.name == "message" && e.attr("id") == Some(id.as_str()))
            .await
            .unwrap_or_else(|e| panic!("{tag}: message {i} not delivered: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_scaled_3_to_5_to_3_keeps_every_account_and_message() {
    let mut pods = Pods::new(5);
    let api = KubeApi::start(pods.dir.path());
    for i in 0..3 {
        pods.start(i, &api);
    }
    until(
        "three seeds form the cluster",
        Duration::from_secs(60),
        || Pods::settled(&pods.status(0), &[1, 2, 3]),
    )
    .await;

    // Accounts, and messages stored for one who is offline.
    let users: Vec<String> = (0..24).map(|i| format!("user{i}@localhost")).collect();
    for u in &users {
        let (ok, out) = pods.exec(0, &["user", "add", u, "--password", PW]);
        assert!(ok, "{out}");
    }
    // Two edges of a Deployment: ids drawn at random.
    let edge_cfg = |name: &str| {
        config(
            pods.dir.path(),
            name,
            &format!(
                "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n\n[cluster]\nrole = \"edge\"\nnode_id = \"auto\"\ncore = \"{}\"\nliveness_secs = 2\n",
                pods.grpc[0]
            ),
        )
    };
    let (_edge_a, addr_a) = start(&edge_cfg("edge-a"), "client listener (STARTTLS)");
    let (_edge_b, addr_b) = start(&edge_cfg("edge-b"), "client listener (STARTTLS)");
    let mut alice = Client::online(addr_a, "user0@localhost", PW, "phone")
        .await
        .expect("user0");
    let mut bob = Client::online(addr_b, "user1@localhost", PW, "phone")
        .await
        .expect("user1");
    chat(&mut alice, &mut bob, "user1@localhost", "before", 5).await;
    for i in 0..10 {
        alice
            .send(&format!(
                "<message to='user2@localhost' type='chat' id='off{i}'><body>stored {i}</body></message>"
            ))
            .await;
    }
    let edges = pods.status(0);
    let edge_ids: Vec<&str> = edges
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("edge"))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(edge_ids.len(), 2, "{edges}");
    assert_ne!(edge_ids[0], edge_ids[1], "{edges}");

    // Scale up to 5: the new pods join by themselves.
    api.replicas.store(5, Ordering::SeqCst);
    pods.start(3, &api);
    pods.start(4, &api);
    let took = until(
        "pods 3 and 4 join, and the shards spread over five nodes",
        Duration::from_secs(120),
        || Pods::settled(&pods.status(0), &[1, 2, 3, 4, 5]),
    )
    .await;
    eprintln!("scaled to 5 in {took:?}");
    chat(&mut alice, &mut bob, "user1@localhost", "at5", 5).await;

    // A restart of pod 4 while the StatefulSet still wants 5 (a rolling
    // update): its hook leaves it a member, and it comes back on its data.
    let asked = api.asked.load(Ordering::SeqCst);
    let (hook, _) = pods.terminate(4, &api);
    assert!(hook.contains("stays a member"), "{hook}");
    assert!(
        api.asked.load(Ordering::SeqCst) > asked,
        "the hook asked the API"
    );
    pods.start(4, &api);
    until("pod 4 is back as node 5", Duration::from_secs(60), || {
        Pods::settled(&pods.status(0), &[1, 2, 3, 4, 5])
    })
    .await;

    // Scale down to 3: pods 4 then 3 go, each leaving in its hook.
    api.replicas.store(3, Ordering::SeqCst);
    for (i, left) in [(4, vec![1, 2, 3, 4]), (3, vec![1, 2, 3])] {
        let (hook, clean) = pods.terminate(i, &api);
        assert!(
            hook.contains("leaves") && hook.contains("has left"),
            "{hook}"
        );
        eprintln!("pod {i} preStop: {}", hook.trim());
        assert!(clean, "pod {i} stops cleanly");
        until(
            &format!("pod {i} gone, shards on {left:?}"),
            Duration::from_secs(60),
            || Pods::settled(&pods.status(0), &left),
        )
        .await;
        chat(
            &mut alice,
            &mut bob,
            "user1@localhost",
            &format!("down{i}"),
            5,
        )
        .await;
    }

    // Every account is there, and the stored messages come at login.
    let (ok, list) = pods.exec(1, &["user", "list"]);
    assert!(ok, "{list}");
    for u in &users {
        assert!(list.lines().any(|l| l.trim() == u), "{u} lost:\n{list}");
    }
    let mut carol = Client::login(addr_b, "user2@localhost", PW, "phone")
        .await
        .expect("user2");
    carol.send("<presence/>").await;
    for i in 0..10 {
        let id = format!("off{i}");
        carol
            .expect(|e| e.name == "message" && e.attr("id") == Some(id.as_str()))
            .await
            .unwrap_or_else(|e| panic!("stored message {i} lost: {e}"));
    }

    // Scaled to 4 again: pod 3 comes back on its old volume, and joins
    // again by itself though it had been removed.
    api.replicas.store(4, Ordering::SeqCst);
    pods.start(3, &api);
    until(
        "pod 3 rejoins on its old data",
        Duration::from_secs(120),
        || Pods::settled(&pods.status(0), &[1, 2, 3, 4]),
    )
    .await;
    chat(&mut alice, &mut bob, "user1@localhost", "again", 5).await;

    // A member whose volume comes back empty refuses to start: with an
    // empty log it could vote a leader that lacks committed entries.
    let (hook, _) = pods.terminate(1, &api);
    assert!(hook.contains("stays a member"), "{hook}");
    std::fs::remove_dir_all(pods.dir.path().join("xmppd-core-1")).expect("wipe the volume");
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&pods.cfgs[1])
        .arg("serve")
        .env("HOSTNAME", Pods::host(1))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run xmppd");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("has no cluster data here"), "{text}");
}

/// Two edges that drew the same id: the core node refuses the second
/// while the first's stream runs (the second draws again), lets the first
/// reconnect as itself, and leaves edges with configured ids as they were
/// (a restarted edge replaces its old stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drawn_edge_id_that_a_running_edge_holds_is_refused() {
    use proto::cluster::pb;
    use router::service::{EDGE_HEADER, EDGE_INSTANCE_HEADER};
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "core",
        "[cluster]\nrole = \"core\"\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nliveness_secs = 2\n",
    );
    let (_core, addr) = start(&cfg, "cluster listener (gRPC)");
    // A forward stream that sends nothing and ends when its handle (the
    // sender kept with it) is dropped, as an edge's does when it stops.
    let open = |edge: u64, instance: Option<u64>| async move {
        use futures::StreamExt;
        let mut client = pb::core_client::CoreClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let body = futures::stream::once(async move {
            let _ = stopped.await;
        })
        .filter_map(|_| async { None::<pb::EnvelopeBatch> });
        let mut req = tonic::Request::new(body);
        req.metadata_mut()
            .insert(EDGE_HEADER, tonic::metadata::MetadataValue::from(edge));
        if let Some(i) = instance {
            req.metadata_mut().insert(
                EDGE_INSTANCE_HEADER,
                tonic::metadata::MetadataValue::from(i),
            );
        }
        client.forward(req).await.map(|r| (r.into_inner(), stop))
    };
    let first = open(5000, Some(11)).await.expect("the first edge");
    let refused = open(5000, Some(22))
        .await
        .expect_err("a second edge on the same id");
    assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
    let again = open(5000, Some(11))
        .await
        .expect("the first edge reconnecting");
    // Configured ids: a restarted edge takes its id over, as before.
    let fixed = open(6000, None)
        .await
        .expect("an edge with a configured id");
    let restarted = open(6000, None).await.expect("the same edge restarted");
    let clash = open(6000, Some(33))
        .await
        .expect_err("a drawn id that a configured edge holds");
    assert_eq!(clash.code(), tonic::Code::AlreadyExists);
    // Once the holder's stream is gone (found out by the liveness pings
    // at the latest), the id is free.
    drop((first, again, fixed, restarted));
    let mut freed = false;
    for _ in 0..200 {
        match open(5000, Some(22)).await {
            Ok(_) => {
                freed = true;
                break;
            }
            Err(e) => assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "the id is free once its edge is gone");
}
