//! The admin HTTP API (`/api/v1`, docs/openapi.json) as an operator's
//! tools use it: accounts made, changed, paged and deleted, sessions
//! listed and ended while real clients are online, the cluster's status,
//! all behind the bearer token; across a cluster of real processes, where
//! a session is ended at whichever core node leads its shard; and the
//! contract checked against the OpenAPI document by schemathesis.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::procs::*;
use common::{Client, TestServer};
use serde_json::{Value, json};

const PW: &str = "secret-pw";
const TOKEN: &str = "t0ken-for-the-admin-api-tests";

/// One HTTP/1.1 request over a plain socket: (status, headers, body).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the HTTP listener");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    if body.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!(
        "Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    ));
    s.write_all(req.as_bytes()).expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// An authorised call whose answer is JSON (or empty): (status, JSON).
fn api(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, head, text) = call(addr, method, path, Some(TOKEN), body.as_ref());
    if text.is_empty() {
        return (status, Value::Null);
    }
    assert!(
        head.contains("content-type: application/json"),
        "{method} {path}: {head}"
    );
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
    (status, v)
}

async fn api_async(
    addr: SocketAddr,
    method: &'static str,
    path: String,
    body: Option<Value>,
) -> (u16, Value) {
    tokio::task::spawn_blocking(move || api(addr, method, &path, body))
        .await
        .expect("join")
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    let f = dir.join("admin-token");
    std::fs::write(&f, format!("{TOKEN}\n")).expect("token file");
    f
}

#[tokio::test]
async fn accounts_and_sessions_through_the_admin_api() {
    let tokens = tempfile::tempdir().expect("tempdir");
    let tf = token_file(tokens.path());
    let mut srv = TestServer::start_with(|c| c.admin.token_file = Some(tf)).await;
    let http = srv
        .server
        .as_ref()
        .and_then(|s| s.http_addr)
        .expect("an HTTP listener");

    // No token, a wrong one, another scheme: 401 with a challenge, and
    // nothing is made.
    for token in [None, Some("t0ken-for-the-admin-api-testS"), Some("")] {
        let body = json!({"jid": "mallory@localhost", "password": PW});
        let (status, head, text) = tokio::task::spawn_blocking(move || {
            call(http, "POST", "/api/v1/users", token, Some(&body))
        })
        .await
        .expect("join");
        assert_eq!(status, 401, "{text}");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
    }
    // The document is served without a token, as kept in the repository.
    let (status, _, doc) =
        tokio::task::spawn_blocking(move || call(http, "GET", "/api/v1/openapi.json", None, None))
            .await
            .expect("join");
    assert_eq!(status, 200);
    assert_eq!(doc, include_str!("../../docs/openapi.json"));

    // Accounts: made in normalised form, refused when they exist or are
    // not accounts of this server.
    for name in ["Carol", "alice", "bob", "dave", "erin"] {
        let (status, v) = api_async(
            http,
            "POST",
            "/api/v1/users".into(),
            Some(json!({"jid": format!("{name}@LOCALHOST"), "password": PW})),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["jid"], format!("{}@localhost", name.to_lowercase()));
    }
    let (status, _) = api_async(
        http,
        "POST",
        "/api/v1/users".into(),
        Some(json!({"jid": "alice@localhost", "password": "other"})),
    )
    .await;
    assert_eq!(status, 409);
    for bad in [
        json!({"jid": "zed@elsewhere.example", "password": PW}),
        json!({"jid": "zed@localhost/res", "password": PW}),
        json!({"jid": "zed@localhost\ndel alice@localhost", "password": PW}),
        json!({"jid": "zed@localhost", "password": PW, "admin": true}),
        json!({"jid": "zed@localhost"}),
        json!(["zed@localhost", PW]),
    ] {
        let (status, v) = api_async(http, "POST", "/api/v1/users".into(), Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} -> {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    // Pages of two, in order, each continuing after the last.
    let mut seen = Vec::new();
    let mut path = "/api/v1/users?limit=2".to_string();
    loop {
        let (status, v) = api_async(http, "GET", path.clone(), None).await;
        assert_eq!(status, 200, "{v}");
        let users = v["users"].as_array().expect("users");
        assert!(users.len() <= 2);
        seen.extend(users.iter().map(|u| u.as_str().expect("jid").to_string()));
        match v["next"].as_str() {
            Some(next) => path = format!("/api/v1/users?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "alice@localhost",
            "bob@localhost",
            "carol@localhost",
            "dave@localhost",
            "erin@localhost"
        ]
    );
    // `after` is compared in normalised form.
    let (_, v) = api_async(
        http,
        "GET",
        "/api/v1/users?limit=2&after=BOB@LOCALHOST".into(),
        None,
    )
    .await;
    assert_eq!(
        v["users"],
        json!(["carol@localhost", "dave@localhost"]),
        "{v}"
    );
    for bad in ["limit=0", "limit=5000", "limit=x", "lmit=2", "domain=a%40b"] {
        let (status, v) = api_async(http, "GET", format!("/api/v1/users?{bad}"), None).await;
        assert_eq!(status, 400, "{bad}: {v}");
    }

    // A new password is the one that logs in.
    let (status, _) = api_async(
        http,
        "PUT",
        "/api/v1/users/carol%40localhost/password".into(),
        Some(json!({"password": "carol's new one"})),
    )
    .await;
    assert_eq!(status, 204);
    assert!(
        Client::login(srv.addr, "carol@localhost", PW, "x")
            .await
            .is_err()
    );
    let mut carol = Client::online(srv.addr, "carol@localhost", "carol's new one", "laptop")
        .await
        .expect("carol logs in with her new password");
    let mut alice = Client::online(srv.addr, "alice@localhost", PW, "phone")
        .await
        .expect("alice");
    alice
        .send("<presence><priority>7</priority></presence>")
        .await;
    let (status, _) = api_async(
        http,
        "PUT",
        "/api/v1/users/nobody%40localhost/password".into(),
        Some(json!({"password": "whatever"})),
    )
    .await;
    assert_eq!(status, 404);

    // Sessions: listed with what they announced, then one ended.
    let mut listed = Value::Null;
    for _ in 0..50 {
        let (status, v) = api_async(http, "GET", "/api/v1/sessions".into(), None).await;
        assert_eq!(status, 200);
        if v["sessions"][0]["priority"] == 7 {
            listed = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        listed,
        json!({"sessions": [
            {"jid": "alice@localhost/phone", "available": true, "priority": 7},
            {"jid": "carol@localhost/laptop", "available": true, "priority": 0},
        ], "next": null})
    );
    let (_, only) = api_async(
        http,
        "GET",
        "/api/v1/sessions?user=carol%40localhost".into(),
        None,
    )
    .await;
    assert_eq!(only["sessions"].as_array().map(Vec::len), Some(1));
    let (status, _) = api_async(
        http,
        "DELETE",
        "/api/v1/sessions/carol%40localhost%2Fphone".into(),
        None,
    )
    .await;
    assert_eq!(status, 404, "no such resource");
    let (status, _) = api_async(
        http,
        "DELETE",
        "/api/v1/sessions/carol%40localhost%2Flaptop".into(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        carol.stream_error().await.expect("carol's stream ends"),
        "policy-violation"
    );
    let mut gone = false;
    for _ in 0..50 {
        let (_, v) = api_async(http, "GET", "/api/v1/sessions".into(), None).await;
        if v["sessions"].as_array().map(Vec::len) == Some(1) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "carol's session is unbound");

    // Deleting an account ends its sessions too.
    let (status, _) = api_async(
        http,
        "DELETE",
        "/api/v1/users/alice%40localhost".into(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        alice.stream_error().await.expect("alice's stream ends"),
        "not-authorized"
    );
    let (status, _) = api_async(
        http,
        "DELETE",
        "/api/v1/users/alice%40localhost".into(),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // A single node's status; it takes no members.
    let (status, v) = api_async(http, "GET", "/api/v1/cluster".into(), None).await;
    assert_eq!(status, 200);
    assert_eq!(v["meta_leader"], 1);
    assert_eq!(v["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["shards"].as_array().map(Vec::len), Some(16));
    assert!(
        v["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .all(|s| s["leader"] == 1)
    );
    let (status, v) = api_async(
        http,
        "POST",
        "/api/v1/cluster/nodes".into(),
        Some(json!({"id": 2, "address": "127.0.0.1:7002"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // Every answer under /api/v1 is JSON, unknown calls and methods too;
    // parameters a call does not take are refused.
    for (method, path, want) in [
        ("GET", "/api/v1/nothing", 404),
        ("GET", "/api/v1/users/", 404),
        ("PATCH", "/api/v1/users", 405),
        ("GET", "/api/v1/cluster?verbose=1", 400),
        ("DELETE", "/api/v1/users/bob%40localhost?force=1", 400),
    ] {
        let (status, v) = api_async(http, method, path.into(), None).await;
        assert_eq!(status, want, "{method} {path}: {v}");
        assert!(v["error"].is_string(), "{method} {path}: {v}");
    }
    // A body announced too long is refused before it is waited for.
    let refused = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(http).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            s,
            "POST /api/v1/users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{{}}"
        )
        .expect("request");
        let mut out = vec![0u8; 512];
        let n = s.read(&mut out).unwrap_or(0);
        String::from_utf8_lossy(&out[..n]).to_string()
    })
    .await
    .expect("join");
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    let long = "x".repeat(1025);
    let (status, v) = api_async(
        http,
        "POST",
        "/api/v1/users".into(),
        Some(json!({"jid": "zed@localhost", "password": long})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    srv.stop().await;
}

#[test]
fn sessions_are_listed_and_ended_across_a_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = token_file(dir.path());
    let (a1, a2) = (free_addr(), free_addr());
    let peers = format!("peers = [\"1={a1}\", \"2={a2}\"]\nreplication = 2\n");
    let http1 = free_addr();
    let cores: Vec<(Proc, std::path::PathBuf)> = [(1, a1, http1), (2, a2, free_addr())]
        .into_iter()
        .map(|(id, addr, http)| {
            let cfg = config(
                dir.path(),
                &format!("core{id}"),
                &format!(
                    "[listeners]\nhttp = \"{http}\"\n\n[admin]\ntoken_file = \"{}\"\n\n[cluster]\nrole = \"core\"\nnode_id = {id}\nlisten = \"{addr}\"\n{peers}",
                    tf.display()
                ),
            );
            (start(&cfg, "cluster listener (gRPC)").0, cfg)
        })
        .collect();
    let edge_cfg = config(
        dir.path(),
        "edge",
        &format!(
            "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\n\n[cluster]\nrole = \"edge\"\nnode_id = 9\ncore = \"{a1}\"\n"
        ),
    );
    let (_edge, edge) = start(&edge_cfg, "client listener (STARTTLS)");
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    // Users in shards led by either core node.
    let status = {
        let mut out = String::new();
        for _ in 0..100 {
            let (ok, s) = xmppd(&cores[0].1, &["cluster", "status"]);
            // Each node leads its share once the groups have settled.
            let leads = |n| (0..16).any(|i| leader_in_status(&s, i) == Some(n));
            if ok && (0..16).all(|i| leader_in_status(&s, i).is_some()) && leads(1) && leads(2) {
                out = s;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        out
    };
    let led_by = |n: u64| {
        (0..1000)
            .map(|i| format!("user{i}@localhost"))
            .filter(|u| leader_in_status(&status, router::cluster::shard_of(u, 16)) == Some(n))
            .take(2)
            .collect::<Vec<_>>()
    };
    assert!(!status.is_empty(), "both core nodes lead shards");
    let users: Vec<String> = led_by(1).into_iter().chain(led_by(2)).collect();
    assert_eq!(users.len(), 4, "{users:?}");
    for u in &users {
        let (status, v) = api(
            http1,
            "POST",
            "/api/v1/users",
            Some(json!({"jid": u, "password": PW})),
        );
        assert_eq!(status, 201, "{u}: {v}");
    }
    let mut clients: Vec<Client> = rt.block_on(async {
        let mut v = Vec::new();
        for u in &users {
            v.push(Client::online(edge, u, PW, "r").await.expect("online"));
        }
        v
    });

    // Core node 1 lists the sessions of both, each through edge 9.
    let mut expected: Vec<Value> = users
        .iter()
        .map(|u| json!({"jid": format!("{u}/r"), "edge": 9, "available": true, "priority": 0}))
        .collect();
    expected.sort_by_key(|v| v["jid"].as_str().map(str::to_string));
    let mut last = Value::Null;
    for _ in 0..50 {
        last = api(http1, "GET", "/api/v1/sessions", None).1;
        if last["sessions"] == Value::Array(expected.clone()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(last["sessions"], Value::Array(expected), "{last}");

    // A session whose shard core node 2 leads is ended from core node 1.
    let target = &users[2];
    let (status, v) = api(
        http1,
        "DELETE",
        &format!("/api/v1/sessions/{}%2Fr", target.replace('@', "%40")),
        None,
    );
    assert_eq!(status, 204, "{v}");
    let cond = rt
        .block_on(clients[2].stream_error())
        .expect("the stream ends");
    assert_eq!(cond, "policy-violation");
    // The command line sees the rest, through core node 2's admin socket.
    let mut listed = String::new();
    for _ in 0..50 {
        let (ok, out) = xmppd(&cores[1].1, &["session", "list"]);
        assert!(ok, "{out}");
        listed = out;
        if listed.lines().count() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(!listed.contains(target.as_str()), "{listed}");
    assert!(
        listed
            .lines()
            .all(|l| l.ends_with(" available priority=0 edge=9")),
        "{listed}"
    );
    let (ok, out) = xmppd(
        &cores[1].1,
        &["session", "kick", &format!("{}/r", users[0])],
    );
    assert!(ok, "{out}");
    let cond = rt
        .block_on(clients[0].stream_error())
        .expect("the stream ends");
    assert_eq!(cond, "policy-violation");
    let (ok, out) = xmppd(&cores[1].1, &["session", "kick", "user0@localhost"]);
    assert!(!ok && out.contains("not a full JID"), "{out}");
    // A core node that does not run is not made a member (it would be a
    // replica that never votes).
    let nowhere = free_addr();
    let (status, v) = api(
        http1,
        "POST",
        "/api/v1/cluster/nodes",
        Some(json!({"id": 7, "address": nowhere.to_string()})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not answer")),
        "{v}"
    );
    let (_, st) = api(http1, "GET", "/api/v1/cluster", None);
    let ids: Vec<u64> = st["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"] == "core")
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, [1, 2], "{st}");
    drop(clients);
}

/// schemathesis (PyPI) generates requests from docs/openapi.json, valid
/// and invalid, with and without the token, and checks every answer
/// against the document: status codes, content types, headers, bodies,
/// no server errors, auth enforced, invalid input refused.
#[test]
fn the_api_keeps_its_openapi_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = token_file(dir.path());
    let http = free_addr();
    let cfg = config(
        dir.path(),
        "node",
        &format!(
            "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\nhttp = \"{http}\"\n\n[admin]\ntoken_file = \"{}\"\n",
            tf.display()
        ),
    );
    let (_node, _) = start(&cfg, "client listener (STARTTLS)");
    let conf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/api/schemathesis.toml"
    );
    let out = std::process::Command::new("schemathesis")
        .args(["--config-file", conf, "run"])
        .arg(format!("http://{http}/api/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "all",
            "--workers",
            "1",
            "--max-examples",
            "40",
            "--seed",
            "7",
            // Draining stops the node under test: tests/drain.rs has it.
            "--exclude-operation-id",
            "drain",
        ])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // It keeps a cache of what it found in the working directory.
        .current_dir(dir.path())
        .output()
        .expect("run schemathesis (scripts/setup.sh installs it from PyPI)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Tested: 9"), "{text}");
}
