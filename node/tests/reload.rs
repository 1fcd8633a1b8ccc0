//! SIGHUP reloads the configuration file of a running `xmppd`: the log
//! level, limits, TLS certificates (a renewed certificate at the same
//! path), the registration switch and the admin token change without a
//! restart; other changes are named as needing one; a broken file changes
//! nothing.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::Client;
use common::procs::*;

const PW: &str = "secret-pw";

/// A certificate and key for `localhost`, written to `dir`; the DER of
/// the certificate.
fn write_cert(dir: &Path) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key");
    cert.der().to_vec()
}

/// The certificate a new direct-TLS connection is shown.
async fn served_cert(addr: SocketAddr) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(node::tls::client_config_insecure())
        .connect(name, tcp)
        .await
        .expect("tls");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

/// One GET with a bearer token: the status.
fn get_status(addr: SocketAddr, path: &str, token: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Whether a new connection is offered in-band registration.
async fn offers_registration(addr: SocketAddr) -> bool {
    let mut c = Client::connect(addr).await;
    c.open("localhost").await.expect("open");
    c.starttls().await.expect("starttls");
    let features = c.open("localhost").await.expect("open");
    features
        .elements()
        .any(|e| e.name == "register" && e.ns == "http://jabber.org/features/iq-register")
}

fn body(
    dir: &Path,
    c2s: SocketAddr,
    tls_port: SocketAddr,
    http: SocketAddr,
    extra: &str,
) -> String {
    format!(
        "[listeners]\nc2s = \"{c2s}\"\nc2s_direct_tls = \"{tls_port}\"\nhttp = \"{http}\"\n\n[tls]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\n\n[admin]\ntoken_file = \"{d}/token\"\n\n{extra}",
        d = dir.display()
    )
}

fn lines_since(log: &Log, from: usize) -> Vec<String> {
    log.lock().map(|l| l[from..].to_vec()).unwrap_or_default()
}

async fn wait_line(log: &Log, from: usize, what: &str) -> String {
    for _ in 0..100 {
        if let Some(l) = lines_since(log, from)
            .into_iter()
            .find(|l| l.contains(what))
        {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no log line with {what:?}: {:#?}", lines_since(log, from));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_what_can_change_and_names_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first_cert = write_cert(dir.path());
    std::fs::write(dir.path().join("token"), "first-token-0123456789\n").expect("token");
    let (c2s, tls_port, http) = (free_addr(), free_addr(), free_addr());
    let cfg = config(
        dir.path(),
        "node",
        &body(dir.path(), c2s, tls_port, http, "[log]\nlevel = \"info\"\n"),
    );
    // Registration is on in the tests' common part: turned off here.
    let text = std::fs::read_to_string(&cfg)
        .expect("config")
        .replace(
            "[registration]\nenabled = true",
            "[registration]\nenabled = false",
        )
        .replace("[limits]\n", "[limits]\nmax_connections_per_ip = 100\n");
    std::fs::write(&cfg, &text).expect("config");
    let (node, _, log) = start_logged(&cfg, "client listener (STARTTLS)");
    let (ok, out) = xmppd(&cfg, &["user", "add", "alice@localhost", "--password", PW]);
    assert!(ok, "{out}");

    assert_eq!(served_cert(tls_port).await, first_cert);
    assert!(!offers_registration(c2s).await);
    assert_eq!(
        tokio::task::spawn_blocking(move || get_status(
            http,
            "/api/v1/users",
            "first-token-0123456789"
        ))
        .await
        .expect("join"),
        200
    );
    Client::login(c2s, "alice@localhost", PW, "before")
        .await
        .expect("login");
    wait_line(&log, 0, "authentication succeeded").await;

    // A renewed certificate at the same path, a new token, and a new file.
    let second_cert = write_cert(dir.path());
    std::fs::write(dir.path().join("token"), "second-token-0123456789\n").expect("token");
    let new_text = text
        .replace("level = \"info\"", "level = \"warn\"")
        .replace(
            "max_connections_per_ip = 100",
            "max_connections_per_ip = 2\nmax_vcard_bytes = 1024",
        )
        .replace(
            "[registration]\nenabled = false",
            "[registration]\nenabled = true",
        )
        .replace("[offline]\n", "[offline]\nmax_per_user = 5\n");
    let new_text = if new_text.contains("max_per_user") {
        new_text
    } else {
        format!("{new_text}\n[offline]\nmax_per_user = 5\n")
    };
    std::fs::write(&cfg, &new_text).expect("config");
    let mark = lines_since(&log, 0).len();
    signal(&node, "HUP");
    wait_line(&log, mark, "in force after a restart").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warned: Vec<String> = lines_since(&log, mark)
        .into_iter()
        .filter(|l| l.contains("in force after a restart"))
        .collect();
    // The core keeps its vCard limit from its start: a restart, not a
    // reload, changes it.
    for key in ["offline.max_per_user", "limits.max_vcard_bytes"] {
        assert!(warned.iter().any(|l| l.contains(key)), "{key}: {warned:#?}");
    }

    assert_eq!(
        served_cert(tls_port).await,
        second_cert,
        "the renewed certificate"
    );
    assert!(offers_registration(c2s).await, "registration is on");
    let statuses = tokio::task::spawn_blocking(move || {
        (
            get_status(http, "/api/v1/users", "first-token-0123456789"),
            get_status(http, "/api/v1/users", "second-token-0123456789"),
        )
    })
    .await
    .expect("join");
    assert_eq!(statuses, (401, 200), "the new token, and only it");
    // At most 2 connections from one address now (the probes above are
    // closed; one more held open here, the third refused).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(c2s).await;
        c.open("localhost").await.expect("admitted");
        held.push(c);
    }
    let mut third = Client::connect(c2s).await;
    assert!(
        third.open("localhost").await.is_err(),
        "a third connection from one address is refused"
    );
    drop(held);
    // The log level is warn: a login is no longer logged at info.
    let mark = lines_since(&log, 0).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Client::login(c2s, "alice@localhost", PW, "after")
        .await
        .expect("login after the reload");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = lines_since(&log, mark);
    assert!(
        !after.iter().any(|l| l.contains("authentication succeeded")),
        "{after:#?}"
    );

    // A broken file changes nothing.
    std::fs::write(&cfg, "[limits\nmax_depth = ").expect("config");
    let mark = lines_since(&log, 0).len();
    signal(&node, "HUP");
    let line = wait_line(&log, mark, "nothing changed").await;
    assert!(line.contains("ERROR"), "{line}");
    assert!(offers_registration(c2s).await, "still as reloaded before");
}
