//! A real XMPP client library against the server: two slixmpp clients log
//! in with SCRAM over STARTTLS, subscribe to each other, see each other's
//! presence, chat, and one gets a message stored while it was offline
//! (tests/interop/chat.py). `scripts/setup.sh` installs slixmpp.

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
