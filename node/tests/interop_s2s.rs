//! Federation with the servers people run: xmppd and Debian's Prosody
//! 0.12 and ejabberd 23.01 (started as the current user on loopback by
//! tests/interop/s2s/run.sh), with slixmpp clients on each side checking
//! subscriptions both ways, presence, messages, pings, disco and the
//! error for an unknown domain (fed.py). Each pair is run twice: with
//! certificates from a test CA that everyone trusts (SASL EXTERNAL,
//! XEP-0178) and with nobody trusting it (Server Dialback, XEP-0220).
//! `scripts/setup.sh` installs Prosody, ejabberd and lua-unbound.

mod common;

use common::TestServer;

const PASS: &str = "fed-secret-1";

fn script(name: &str) -> String {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    format!("{dir}/../tests/interop/s2s/{name}")
}

/// xmppd for xmppd.test on `ip`, finding its peers through dns.py at
/// `dns`; trusting the test CA in `certs` when `trust`.
async fn xmppd(ip: &str, dns: &str, certs: &std::path::Path, trust: bool) -> TestServer {
    let t = TestServer::start_with(|cfg| {
        cfg.domains = vec!["xmppd.test".into()];
        cfg.listeners.c2s = Some(format!("{ip}:0"));
        cfg.tls.cert = Some(certs.join("xmppd.test.pem"));
        cfg.tls.key = Some(certs.join("xmppd.test.key"));
        cfg.s2s.enabled = true;
        cfg.s2s.listen = format!("{ip}:5269");
        cfg.s2s.system_roots = false;
        cfg.s2s.ca_file = trust.then(|| certs.join("ca.pem"));
        cfg.s2s.nameservers = vec![dns.to_string()];
        cfg.s2s.connect_timeout_secs = 10;
    })
    .await;
    t.add_user("alice@xmppd.test", PASS);
    t.add_user("bob@xmppd.test", PASS);
    t
}

/// How many streams of `direction` were authenticated by `method`.
fn authenticated(t: &TestServer, direction: &str, method: &str) -> u64 {
    t.server
        .as_ref()
        .expect("running")
        .edge
        .metrics
        .s2s
        .auth
        .with_label_values(&[direction, method, "ok"])
        .get()
}

async fn federate(peer: &str, auth: &str, python: &str, n: u8) {
    let certs = tempfile::tempdir().expect("tempdir");
    let made = std::process::Command::new("bash")
        .arg(script("certs.sh"))
        .arg(certs.path())
        .args(["xmppd.test", "prosody.test", "ejabberd.test"])
        .output()
        .expect("bash runs certs.sh");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let ip = format!("127.0.8.{n}");
    let dns = format!("127.0.8.{}:45053", n + 1);
    let peer_ip = format!("127.0.8.{}", n + 2);
    let external = auth == "external";
    let mut t = xmppd(&ip, &dns, certs.path(), external).await;
    let c2s = t.addr.port();
    let out = tokio::process::Command::new("bash")
        .arg(script("run.sh"))
        .args(["--certs", &certs.path().display().to_string()])
        .args(["--auth", auth, "--dns", &dns, "--addr-a", &peer_ip])
        .args(["--python", python, "--timeout", "100"])
        .arg(peer)
        .arg(format!("external:{ip}:{c2s}:xmppd.test:5269"))
        .output()
        .await
        .expect("bash runs run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{peer} {auth} {python}:\n{stdout}");
    assert!(
        out.status.success() && stdout.contains("0 failed"),
        "{peer} with {auth} ({python}) failed:\n{stdout}\n{stderr}"
    );
    // Both directions were authenticated the way asked.
    let method = if external { "certificate" } else { "dialback" };
    assert!(
        authenticated(&t, "in", method) > 0 && authenticated(&t, "out", method) > 0,
        "{peer} {auth}: streams were not authenticated by {method} both ways"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_federates_by_certificate_and_by_dialback() {
    federate("prosody", "external", "python3", 10).await;
    federate("prosody", "dialback", "/usr/bin/python3", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_federates_by_certificate_and_by_dialback() {
    federate("ejabberd", "external", "/usr/bin/python3", 30).await;
    federate("ejabberd", "dialback", "python3", 40).await;
}
