//! A real XMPP client library against the server: two slixmpp clients log
//! in with SCRAM over STARTTLS, subscribe to each other, see each other's
//! presence, chat, and one gets a message stored while it was offline
//! (tests/interop/chat.py); their MUC, PubSub and login scenarios, and
//! xmpp.js as a second library. `scripts/setup.sh` installs both.

mod common;

use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_clients_chat_subscribe_and_get_offline_messages() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", "alice secret");
    t.add_user("bob@localhost", "bob secret");
    // Read when the test runs: a compiler cache may hand back a binary built
    // from a clone at another path.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/../tests/interop/chat.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg("127.0.0.1")
        .arg(t.addr.port().to_string())
        .arg("localhost")
        .arg("alice secret")
        .arg("bob secret")
        .output()
        .await
        .expect("python3 runs (scripts/setup.sh installs slixmpp)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "slixmpp scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("interop ok"));
    t.stop().await;
}

/// The interpreters to try: Debian's, with its packaged slixmpp (1.8.3 on
/// Debian 12, which binds to `tls-unique`), and the one on PATH with the
/// current slixmpp from PyPI.
const PYTHONS: [(&str, Option<&str>); 2] = [("/usr/bin/python3", Some("1.8.3")), ("python3", None)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_and_new_slixmpp_log_in_over_starttls_and_direct_tls_with_tls_1_2_and_1_3() {
    // Debian 12's slixmpp asked for SCRAM-*-PLUS with p=tls-unique, was
    // refused, fell back to plain SCRAM with the 'y' flag, was refused as a
    // downgrade, and the stream closed before it reached PLAIN: not one
    // login. Each combination must now log in with SCRAM.
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", "alice secret");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/../tests/interop/login.py");
    let mut failures = Vec::new();
    for (python, version) in PYTHONS {
        for (transport, port) in [("starttls", t.addr.port()), ("direct", t.tls_addr.port())] {
            for tls in ["1.2", "1.3"] {
                let out = tokio::process::Command::new(python)
                    .arg(&script)
                    .args(["127.0.0.1", &port.to_string(), "alice@localhost/r"])
                    .args(["alice secret", transport, tls])
                    .output()
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{python} runs (scripts/setup.sh installs it): {e}")
                    });
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                let case = format!("{python} {transport} TLS {tls}");
                println!("{case}: {}", stdout.trim());
                let want_tls = format!("tls=TLSv{tls}");
                let ok = out.status.success()
                    && stdout.contains("login ok")
                    && stdout.contains(&want_tls)
                    && stdout.contains("mech=SCRAM-")
                    && version.is_none_or(|v| stdout.contains(&format!("slixmpp={v} ")));
                if !ok {
                    failures.push(format!(
                        "{case}:\n{stdout}\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    t.stop().await;
}

/// A script of `tests/interop/` (`path` under it) run by `program`
/// against a fresh server with alice and bob, as
/// `program SCRIPT 127.0.0.1 PORT localhost ALICE_PW BOB_PW`: it must exit
/// 0 and print `interop ok`.
async fn alice_and_bob(program: &str, path: &str, what: &str) {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", "alice secret");
    t.add_user("bob@localhost", "bob secret");
    // Read when the test runs: a compiler cache may hand back a binary built
    // from a clone at another path.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new(program)
        .arg(format!("{dir}/../tests/interop/{path}"))
        .args(["127.0.0.1", &t.addr.port().to_string(), "localhost"])
        .args(["alice secret", "bob secret"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} runs (scripts/setup.sh installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{program}: {stdout}");
    assert!(
        out.status.success() && stdout.contains("interop ok"),
        "{what} scenario failed with {program}:\n{stdout}\n{stderr}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_pubsub_pep_and_private_storage_plugins_work() {
    // Both slixmpps: Debian's computes its capabilities hash and answers
    // the server's question as the current one does.
    for (python, _) in PYTHONS {
        alice_and_bob(python, "pubsub.py", "slixmpp pubsub").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_muc_plugin_creates_configures_chats_kicks_and_destroys() {
    // XEP-0045 through slixmpp's xep_0045 plugin, Debian's and PyPI's.
    for (python, _) in PYTHONS {
        alice_and_bob(python, "muc.py", "slixmpp MUC").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_stream_management_resumes_after_the_connection_is_cut() {
    // XEP-0198 through slixmpp's xep_0198 plugin over TCP, Debian's and
    // PyPI's: the TCP connection is cut under bob, alice goes on
    // sending, bob's client resumes and gets every message once, in
    // order. (Debian's 1.8.3 logs "Inconsistent sequence numbers": it
    // counts its own stanzas from <enabled/> rather than from <enable/>
    // as XEP-0198 §4 says, and takes the server's count.)
    for (python, _) in PYTHONS {
        alice_and_bob(python, "sm.py", "slixmpp stream management").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_carbons_plugin_gets_received_and_sent_copies() {
    // XEP-0280 through slixmpp's xep_0280 plugin, Debian's and PyPI's.
    for (python, _) in PYTHONS {
        alice_and_bob(python, "carbons.py", "slixmpp carbons").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_js_logs_in_and_uses_pubsub_and_pep() {
    // A second client library (xmpp.js, @xmpp/client from npm; scripts/setup.sh
    // installs it under tests/interop/xmppjs).
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let js = format!("{dir}/../tests/interop/xmppjs");
    assert!(
        std::path::Path::new(&format!("{js}/node_modules/@xmpp/client")).exists(),
        "xmpp.js is not installed: run scripts/setup.sh (npm ci in {js})"
    );
    alice_and_bob("node", "xmppjs/pubsub.mjs", "xmpp.js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_js_creates_a_room_chats_and_destroys_it() {
    // XEP-0045 with the second library: xmpp.js, stanzas as a client
    // without a MUC plugin writes them (tests/interop/xmppjs/muc.mjs).
    alice_and_bob("node", "xmppjs/muc.mjs", "xmpp.js MUC").await;
}

/// An external component (XEP-0114) with slixmpp's ComponentXMPP, on the
/// packaged and the current slixmpp (tests/interop/component.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_component_connects_serves_its_domain_and_messages_users() {
    let mut t = TestServer::start_with(|cfg| {
        cfg.components.listen = "127.0.0.1:0".into();
        cfg.components
            .secrets
            .insert("echo.localhost".into(), "component secret".into());
    })
    .await;
    t.add_user("alice@localhost", "alice secret");
    let cport = t
        .server
        .as_ref()
        .and_then(|s| s.component_addr)
        .expect("component listener")
        .port();
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/../tests/interop/component.py");
    for (python, _) in PYTHONS {
        let out = tokio::process::Command::new(python)
            .arg(&script)
            .args(["127.0.0.1", &t.addr.port().to_string(), &cport.to_string()])
            .args(["localhost", "alice", "alice secret"])
            .args(["echo.localhost", "component secret"])
            .output()
            .await
            .unwrap_or_else(|e| panic!("{python} runs (scripts/setup.sh installs it): {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{python}:\n{stdout}");
        assert!(
            out.status.success() && stdout.contains("component ok"),
            "{python}: component scenario failed:\n{stdout}\n{stderr}"
        );
    }
    t.stop().await;
}
