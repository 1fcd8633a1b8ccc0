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

const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// An IQ and its answer, which must be a result.
async fn iq_ok(c: &mut Client, id: &str, to: &str, payload: &str) {
    c.send(&format!(
        "<iq type='set' id='{id}' to='{to}'>{payload}</iq>"
    ))
    .await;
    let e = c
        .expect(|e| e.name == "iq" && e.attr("id") == Some(id))
        .await
        .expect("answer");
    assert_eq!(
        e.attr("type"),
        Some("result"),
        "{id}: {}",
        e.to_xml(proto::ns::CLIENT)
    );
}

/// `c` enters `room` as `nick` (and creates it when it is new: an
/// instant room, persistent if asked).
async fn enter_room(c: &mut Client, room: &str, nick: &str, create: Option<bool>) {
    c.send(&format!(
        "<presence to='{room}/{nick}'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    let me = format!("{room}/{nick}");
    c.expect(|e| e.name == "presence" && e.attr("from") == Some(me.as_str()))
        .await
        .expect("own presence");
    if let Some(persistent) = create {
        let form = format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_persistentroom'><value>{}</value></field></x>",
            u8::from(persistent)
        );
        iq_ok(
            c,
            &format!("cfg-{nick}"),
            room,
            &format!("<query xmlns='{MUC}#owner'>{form}</query>"),
        )
        .await;
    }
}

/// Rooms and PubSub nodes as an operator sees and removes them: listed
/// with their occupants and items, in pages, destroyed and deleted with
/// the occupants and subscribers told, bad parameters refused.
#[tokio::test]
async fn rooms_and_nodes_through_the_admin_api() {
    let tokens = tempfile::tempdir().expect("tempdir");
    let tf = token_file(tokens.path());
    let srv = TestServer::start_with(|c| c.admin.token_file = Some(tf)).await;
    let http = srv
        .server
        .as_ref()
        .and_then(|s| s.http_addr)
        .expect("an HTTP listener");
    for u in ["alice", "bob"] {
        let (status, v) = api_async(
            http,
            "POST",
            "/api/v1/users".into(),
            Some(json!({"jid": format!("{u}@localhost"), "password": PW})),
        )
        .await;
        assert_eq!(status, 201, "{v}");
    }
    let mut alice = Client::online(srv.addr, "alice@localhost", PW, "r")
        .await
        .expect("alice");
    let mut bob = Client::online(srv.addr, "bob@localhost", PW, "r")
        .await
        .expect("bob");

    // No rooms yet.
    let (status, v) = api_async(http, "GET", "/api/v1/rooms".into(), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"rooms": [], "next": null}));

    // A temporary room with two occupants, a persistent one left empty
    // (only the store has it), and one still locked (being created).
    enter_room(&mut alice, "tea@conference.localhost", "alice", Some(false)).await;
    enter_room(&mut bob, "tea@conference.localhost", "bob", None).await;
    enter_room(
        &mut alice,
        "archive@conference.localhost",
        "alice",
        Some(true),
    )
    .await;
    alice
        .send("<presence type='unavailable' to='archive@conference.localhost/alice'/>")
        .await;
    enter_room(&mut alice, "new@conference.localhost", "alice", None).await;
    let room = |jid: &str, persistent: bool, locked: bool, occupants: u32| {
        json!({"jid": jid, "name": "", "persistent": persistent, "public": true,
            "members_only": false, "password_protected": false, "locked": locked,
            "occupants": occupants})
    };
    let all = json!([
        room("archive@conference.localhost", true, false, 0),
        room("new@conference.localhost", false, true, 1),
        room("tea@conference.localhost", false, false, 2),
    ]);
    let mut v = Value::Null;
    for _ in 0..50 {
        v = api_async(
            http,
            "GET",
            "/api/v1/rooms?service=conference.localhost".into(),
            None,
        )
        .await
        .1;
        if v["rooms"] == all {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(v, json!({"rooms": all, "next": null}));
    // In pages of two: the next page starts after the last room.
    let (_, p1) = api_async(http, "GET", "/api/v1/rooms?limit=2".into(), None).await;
    assert_eq!(p1["rooms"], json!([all[0], all[1]]));
    assert_eq!(p1["next"], "new@conference.localhost");
    let (_, p2) = api_async(
        http,
        "GET",
        "/api/v1/rooms?limit=2&after=new%40conference.localhost".into(),
        None,
    )
    .await;
    assert_eq!(p2, json!({"rooms": [all[2]], "next": null}));
    for bad in [
        "/api/v1/rooms?service=pubsub.localhost",
        "/api/v1/rooms?service=conference.elsewhere.example",
        "/api/v1/rooms?service=tea%40conference.localhost",
        "/api/v1/rooms?after=tea%40pubsub.localhost",
        "/api/v1/rooms?limit=0",
        "/api/v1/rooms?owner=alice",
    ] {
        let (status, v) = api_async(http, "GET", bad.into(), None).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"].is_string(), "{bad}: {v}");
    }

    // Destroying the room with occupants: each is told, with the reason
    // and the alternate venue; then it is gone.
    let (status, v) = api_async(
        http,
        "DELETE",
        "/api/v1/rooms/tea%40conference.localhost?reason=closing%20time&alternate=archive%40conference.localhost"
            .into(),
        None,
    )
    .await;
    assert_eq!(status, 204, "{v}");
    for c in [&mut alice, &mut bob] {
        let p = c
            .expect(|e| {
                e.name == "presence"
                    && e.attr("type") == Some("unavailable")
                    && e.attr("from").is_some_and(|f| f.starts_with("tea@"))
            })
            .await
            .expect("told of the destruction");
        let d = p
            .child("x", MUC_USER)
            .and_then(|x| x.child("destroy", MUC_USER))
            .expect("<destroy/>");
        assert_eq!(d.attr("jid"), Some("archive@conference.localhost"));
        assert_eq!(
            d.child("reason", MUC_USER).map(|r| r.text()),
            Some("closing time".to_string())
        );
    }
    let (status, _) = api_async(
        http,
        "DELETE",
        "/api/v1/rooms/tea%40conference.localhost".into(),
        None,
    )
    .await;
    assert_eq!(status, 404);
    // The persistent one is deleted from the store as well.
    let (status, _) = api_async(
        http,
        "DELETE",
        "/api/v1/rooms/archive%40conference.localhost".into(),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, v) = api_async(http, "GET", "/api/v1/rooms".into(), None).await;
    assert_eq!(v["rooms"], json!([all[1]]), "{v}");
    for bad in [
        "/api/v1/rooms/conference.localhost",
        "/api/v1/rooms/tea%40pubsub.localhost",
        "/api/v1/rooms/tea%40conference.localhost%2Fnick",
        "/api/v1/rooms/new%40conference.localhost?alternate=%40%40",
        "/api/v1/rooms/new%40conference.localhost?alternate=tea%40conference.localhost%2Fnick",
        "/api/v1/rooms/new%40conference.localhost?reason=a%01b",
        "/api/v1/rooms/new%40conference.localhost?reason=%EF%BF%BE",
    ] {
        let (status, v) = api_async(http, "DELETE", bad.into(), None).await;
        assert_eq!(status, 400, "{bad}: {v}");
    }

    // PubSub: a node with a slash in its id, two items, bob subscribed;
    // and a PEP node of alice's.
    iq_ok(
        &mut alice,
        "create",
        "pubsub.localhost",
        &format!("<pubsub xmlns='{PUBSUB}'><create node='sensors/temp'/></pubsub>"),
    )
    .await;
    for i in 1..=2 {
        iq_ok(
            &mut alice,
            &format!("pub{i}"),
            "pubsub.localhost",
            &format!(
                "<pubsub xmlns='{PUBSUB}'><publish node='sensors/temp'><item id='i{i}'><t xmlns='urn:example:t'>{i}</t></item></publish></pubsub>"
            ),
        )
        .await;
    }
    iq_ok(
        &mut bob,
        "sub",
        "pubsub.localhost",
        &format!(
            "<pubsub xmlns='{PUBSUB}'><subscribe node='sensors/temp' jid='bob@localhost'/></pubsub>"
        ),
    )
    .await;
    iq_ok(
        &mut alice,
        "pep",
        "alice@localhost",
        &format!(
            "<pubsub xmlns='{PUBSUB}'><publish node='urn:example:mood'><item id='current'><m xmlns='urn:example:mood'/></item></publish></pubsub>"
        ),
    )
    .await;
    let (status, v) = api_async(http, "GET", "/api/v1/pubsub/nodes".into(), None).await;
    assert_eq!(status, 200, "{v}");
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{v}");
    assert_eq!(nodes[0]["node"], "sensors/temp");
    assert_eq!(nodes[0]["creator"], "alice@localhost");
    assert_eq!(nodes[0]["items"], 2);
    assert!(
        nodes[0]["created_ms"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000_000),
        "{v}"
    );
    let (_, v) = api_async(
        http,
        "GET",
        "/api/v1/pubsub/nodes?service=alice%40localhost".into(),
        None,
    )
    .await;
    assert_eq!(v["nodes"][0]["node"], "urn:example:mood", "{v}");
    assert_eq!(v["nodes"][0]["items"], 1, "{v}");
    for bad in [
        "/api/v1/pubsub/nodes?service=conference.localhost",
        "/api/v1/pubsub/nodes?service=alice%40elsewhere.example",
        "/api/v1/pubsub/nodes?service=%40%40",
        "/api/v1/pubsub/nodes?after=",
    ] {
        let (status, v) = api_async(http, "GET", bad.into(), None).await;
        assert_eq!(status, 400, "{bad}: {v}");
    }
    // Deleted: the subscriber is told, and it is gone.
    let (status, v) = api_async(
        http,
        "DELETE",
        "/api/v1/pubsub/nodes/sensors%2Ftemp?service=pubsub.localhost".into(),
        None,
    )
    .await;
    assert_eq!(status, 204, "{v}");
    let m = bob
        .expect(|e| {
            e.name == "message"
                && e.child("event", EVENT)
                    .and_then(|ev| ev.child("delete", EVENT))
                    .is_some()
        })
        .await
        .expect("told of the deletion");
    assert_eq!(m.attr("from"), Some("pubsub.localhost"));
    let (status, _) = api_async(
        http,
        "DELETE",
        "/api/v1/pubsub/nodes/sensors%2Ftemp".into(),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, v) = api_async(http, "GET", "/api/v1/pubsub/nodes".into(), None).await;
    assert_eq!(v, json!({"nodes": [], "next": null}));
    // Alice's own service sees the same: the node is gone for clients.
    alice
        .send(&format!(
            "<iq type='get' id='items' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><items node='sensors/temp'/></pubsub></iq>"
        ))
        .await;
    let e = alice
        .expect(|e| e.name == "iq" && e.attr("id") == Some("items"))
        .await
        .expect("answer");
    assert_eq!(e.attr("type"), Some("error"));
    let (status, _) = api_async(
        http,
        "DELETE",
        "/api/v1/pubsub/nodes/urn%3Aexample%3Amood?service=alice%40localhost".into(),
        None,
    )
    .await;
    assert_eq!(status, 204);
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

    // Rooms and a PubSub node in shards each core node leads: core node 1
    // lists them all and removes those core node 2 leads.
    let in_shard_of = |n: u64, f: &dyn Fn(usize) -> String| {
        (0..1000)
            .map(f)
            .find(|k| leader_in_status(&status, router::cluster::shard_of(k, 16)) == Some(n))
            .expect("a key in that node's shards")
    };
    let room1 = in_shard_of(1, &|i| format!("room{i}@conference.localhost"));
    let room2 = in_shard_of(2, &|i| format!("room{i}@conference.localhost"));
    let service = proto::BareJid::parse("pubsub.localhost").expect("jid");
    let node2 = in_shard_of(2, &|i| storage::pubsub::home(&service, &format!("n{i}")))
        .rsplit('/')
        .next()
        .expect("node id")
        .to_string();
    rt.block_on(async {
        enter_room(&mut clients[1], &room1, "owner", Some(false)).await;
        enter_room(&mut clients[1], &room2, "owner", Some(false)).await;
        enter_room(&mut clients[3], &room2, "guest", None).await;
        iq_ok(
            &mut clients[1],
            "create",
            "pubsub.localhost",
            &format!("<pubsub xmlns='{PUBSUB}'><create node='{node2}'/></pubsub>"),
        )
        .await;
    });
    let mut expected = vec![(room1.clone(), 1), (room2.clone(), 2)];
    expected.sort_by_key(|(r, _)| r.split('@').next().map(str::to_string));
    let mut rooms = Value::Null;
    for _ in 0..50 {
        rooms = api(http1, "GET", "/api/v1/rooms", None).1;
        let got: Vec<(String, u64)> = rooms["rooms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        (
                            r["jid"].as_str().unwrap_or("").to_string(),
                            r["occupants"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if got == expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let got: Vec<&str> = rooms["rooms"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["jid"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(got.len(), 2, "{rooms}");
    let (status2, v) = api(
        http1,
        "DELETE",
        &format!("/api/v1/rooms/{}?reason=moved", room2.replace('@', "%40")),
        None,
    );
    assert_eq!(status2, 204, "{v}");
    rt.block_on(async {
        for i in [1, 3] {
            let p = clients[i]
                .expect(|e| {
                    e.name == "presence"
                        && e.attr("type") == Some("unavailable")
                        && e.attr("from")
                            .is_some_and(|f| f.starts_with(room2.as_str()))
                })
                .await
                .expect("told of the destruction");
            assert!(
                p.child("x", MUC_USER)
                    .and_then(|x| x.child("destroy", MUC_USER))
                    .is_some()
            );
        }
    });
    let (_, v) = api(http1, "GET", "/api/v1/rooms", None);
    assert_eq!(v["rooms"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["rooms"][0]["jid"], room1.as_str(), "{v}");
    // The command line on core node 2 sees the room core node 1 leads,
    // and destroys it there.
    let (ok, out) = xmppd(&cores[1].1, &["room", "list"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        format!("{room1} occupants=1 temporary public name=\"\""),
        "{out}"
    );
    let (ok, out) = xmppd(
        &cores[1].1,
        &["room", "destroy", &room1, "--reason", "done"],
    );
    assert!(ok, "{out}");
    rt.block_on(async {
        let p = clients[1]
            .expect(|e| {
                e.name == "presence"
                    && e.attr("type") == Some("unavailable")
                    && e.attr("from")
                        .is_some_and(|f| f.starts_with(room1.as_str()))
            })
            .await
            .expect("told of the destruction");
        let reason = p
            .child("x", MUC_USER)
            .and_then(|x| x.child("destroy", MUC_USER))
            .and_then(|d| d.child("reason", MUC_USER))
            .map(|r| r.text());
        assert_eq!(reason.as_deref(), Some("done"));
    });
    let (ok, out) = xmppd(&cores[1].1, &["room", "list"]);
    assert!(ok && out.trim().is_empty(), "{out}");
    for bad in [
        vec!["room", "destroy", &room1],
        vec!["room", "destroy", "tea@pubsub.localhost"],
        vec!["room", "list", "--service", "localhost"],
        vec!["pubsub", "list", "--service", "nobody@elsewhere.example"],
    ] {
        let (ok, out) = xmppd(&cores[1].1, &bad);
        assert!(!ok, "{bad:?}: {out}");
    }
    let (ok, out) = xmppd(&cores[1].1, &["pubsub", "list"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        format!("{node2:?} items=0 creator={}", users[1]),
        "{out}"
    );
    let (_, v) = api(http1, "GET", "/api/v1/pubsub/nodes", None);
    assert_eq!(v["nodes"][0]["node"], node2.as_str(), "{v}");
    let (status2, v) = api(
        http1,
        "DELETE",
        &format!("/api/v1/pubsub/nodes/{node2}"),
        None,
    );
    assert_eq!(status2, 204, "{v}");
    let (_, v) = api(http1, "GET", "/api/v1/pubsub/nodes", None);
    assert_eq!(v, json!({"nodes": [], "next": null}));

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
            "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = false\nhttp = \"{http}\"\n\n[admin]\ntoken_file = \"{}\"\n\n[s2s]\nenabled = true\nlisten = \"127.0.0.1:0\"\n",
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
    assert!(text.contains("Tested: 14"), "{text}");
}
