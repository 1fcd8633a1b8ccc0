//! A real browser client against the real binary: Converse.js in
//! headless Chromium (`tests/interop/conversejs/run.mjs`) logs Alice in
//! to an `xmppd serve` process, sees Bob in her roster and online, sends
//! him a message that Bob (xmpp.js over TCP) receives, and shows his
//! answer in her chat box. Over WebSocket (RFC 7395) now; over BOSH
//! (XEP-0124/0206) once it lands. `scripts/setup.sh` installs Chromium
//! and the npm packages.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::procs::{self, Log, Proc};

const ALICE_PW: &str = "alice secret";
const BOB_PW: &str = "bob secret";

/// The browser's transport and the URL Converse.js is given for it.
enum Transport {
    WebSocket,
    Bosh,
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Bosh => "bosh",
        }
    }

    /// Plain ws:// and http:// on loopback, as behind a TLS proxy: the
    /// test certificate is self-signed and a browser would refuse it.
    fn url(&self, http: SocketAddr) -> String {
        match self {
            Transport::WebSocket => format!("ws://{http}/xmpp-websocket"),
            Transport::Bosh => format!("http://{http}/http-bind"),
        }
    }
}

/// `xmppd serve` with a STARTTLS listener (for Bob) and the plain HTTP
/// listener that serves WebSocket, and BOSH next to it; the process, its
/// STARTTLS and HTTP addresses.
fn server(dir: &Path) -> (Proc, SocketAddr, SocketAddr) {
    let cfg = procs::config(
        dir,
        "xmppd",
        "[listeners]\nc2s = \"127.0.0.1:0\"\nc2s_direct_tls = \"127.0.0.1:0\"\nwebsocket = \"127.0.0.1:0\"\n",
    );
    // The STARTTLS listener is announced before the WebSocket one.
    let (p, http, log) = procs::start_logged(&cfg, "client listener (WebSocket");
    let c2s = announced(&log, "client listener (STARTTLS)");
    for (jid, pw) in [("alice@localhost", ALICE_PW), ("bob@localhost", BOB_PW)] {
        let (ok, out) = procs::xmppd(&cfg, &["user", "add", jid, "--password", pw]);
        assert!(ok, "user add {jid}: {out}");
    }
    (p, c2s, http)
}

/// The address in the log line that contains `what`.
fn announced(log: &Log, what: &str) -> SocketAddr {
    let lines = log.lock().expect("log");
    lines
        .iter()
        .find(|l| l.contains(what))
        .and_then(|l| l.split("addr=").nth(1)?.split_whitespace().next())
        .and_then(|a| a.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no {what} in the log:\n{}", lines.join("\n")))
}

fn conversejs_dir() -> PathBuf {
    // Read when the test runs: a compiler cache may hand back a binary
    // built from a clone at another path.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let js = Path::new(&dir).join("../tests/interop/conversejs");
    for need in [
        "node_modules/converse.js/dist",
        "node_modules/puppeteer-core",
    ] {
        assert!(
            js.join(need).exists(),
            "{need} is missing: run scripts/setup.sh (npm ci in {})",
            js.display()
        );
    }
    js
}

/// Run the browser scenario over `transport` against a new server.
/// `CONVERSEJS_SCREENSHOT=FILE.png` keeps a picture of the chat.
fn converse_chats(transport: Transport) {
    let js = conversejs_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, c2s, http) = server(dir.path());
    let mut cmd = std::process::Command::new("node");
    cmd.arg(js.join("run.mjs"))
        .args(["--transport", transport.name()])
        .args(["--url", &transport.url(http)])
        .args(["--tcp", &c2s.to_string()])
        .args(["--alice-password", ALICE_PW, "--bob-password", BOB_PW])
        .args(["--timeout", "60"]);
    if let Some(png) = std::env::var_os("CONVERSEJS_SCREENSHOT") {
        cmd.arg("--screenshot").arg(png);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("node runs (scripts/setup.sh installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("interop ok"),
        "Converse.js over {} failed:\n{stdout}\n{stderr}",
        transport.name()
    );
}

#[test]
fn converse_js_chats_over_websocket() {
    converse_chats(Transport::WebSocket);
}

#[test]
fn converse_js_chats_over_bosh() {
    converse_chats(Transport::Bosh);
}
