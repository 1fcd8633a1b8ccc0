//! Federation (RFC 6120 server-to-server, XEP-0220 dialback, XEP-0178
//! SASL EXTERNAL, XEP-0368 direct TLS): servers on their own loopback
//! addresses (127.0.6.x, port 5269) exchange stanzas for their users, and
//! misbehaving peers written by hand get the stream errors RFC 6120 names.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Client, TIMEOUT, TestServer};
use node::config::Config;
use proto::Element;
use proto::xml::{Limits, StreamEvent, StreamParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASS: &str = "secret123";
const SECRET: &str = "a dialback secret for the tests";

fn at(n: u8, port: u16) -> String {
    format!("127.0.6.{n}:{port}")
}

/// A federating server for `domain` on 127.0.6.`me`:5269, reaching
/// `peers` (domain, address) through `s2s.hosts`.
async fn fed_server(
    domain: &str,
    me: u8,
    peers: &[(&str, String)],
    f: impl FnOnce(&mut Config),
) -> TestServer {
    TestServer::start_with(|cfg| {
        cfg.domains = vec![domain.to_string()];
        cfg.s2s.enabled = true;
        cfg.s2s.listen = at(me, 5269);
        cfg.s2s.system_roots = false;
        cfg.s2s.connect_timeout_secs = 5;
        cfg.s2s.dialback_secret = Some(SECRET.to_string());
        for (d, a) in peers {
            cfg.s2s.hosts.insert((*d).to_string(), a.clone());
        }
        f(cfg);
    })
    .await
}

/// What `xmppd s2s status` prints: the lines the admin socket answers.
async fn status(s: &TestServer) -> Vec<String> {
    let path = &s.server.as_ref().expect("running").admin_socket;
    match node::admin::request(path, &node::admin::Request::S2s).await {
        Ok(Some(node::admin::Response::Ok { lines, .. })) => lines,
        other => panic!("the admin socket answered {other:?}"),
    }
}

fn is(e: &Element, name: &str, attr: &str, value: &str) -> bool {
    e.name == name && e.attr(attr) == Some(value)
}

fn error_condition(e: &Element) -> Option<String> {
    e.child("error", proto::ns::CLIENT).and_then(|err| {
        err.elements()
            .find(|c| c.ns == proto::ns::STANZAS_ERR && c.name != "text")
            .map(|c| c.name.clone())
    })
}

#[tokio::test]
async fn users_of_two_servers_chat_subscribe_and_query_each_other() -> anyhow::Result<()> {
    let a = fed_server(
        "a.test",
        1,
        &[("b.test", at(2, 5269)), ("c.test", at(3, 1))],
        |_| {},
    )
    .await;
    let b = fed_server("b.test", 2, &[("a.test", at(1, 5269))], |_| {}).await;
    a.add_user("alice@a.test", PASS);
    b.add_user("bob@b.test", PASS);
    let mut alice = Client::online(a.addr, "alice@a.test", PASS, "phone").await?;
    let mut bob = Client::online(b.addr, "bob@b.test", PASS, "laptop").await?;

    // Messages both ways, with the sender's full JID.
    alice
        .send("<message to='bob@b.test' type='chat' id='m1'><body>hello bob</body></message>")
        .await;
    let m = bob.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("from"), Some("alice@a.test/phone"));
    assert_eq!(
        m.child("body", proto::ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("hello bob")
    );
    bob.send(
        "<message to='alice@a.test/phone' type='chat' id='m2'><body>hi alice</body></message>",
    )
    .await;
    let m = alice.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("from"), Some("bob@b.test/laptop"));

    // Subscriptions both ways (RFC 6121 §3), then presence.
    alice
        .send("<presence to='bob@b.test' type='subscribe'/>")
        .await;
    bob.expect(|e| {
        is(e, "presence", "type", "subscribe") && e.attr("from") == Some("alice@a.test")
    })
    .await?;
    bob.send("<presence to='alice@a.test' type='subscribed'/>")
        .await;
    // Alice's roster says 'to', and bob's available presence follows.
    alice
        .expect(|e| {
            e.name == "iq"
                && e.child("query", proto::ns::ROSTER)
                    .and_then(|q| q.child("item", proto::ns::ROSTER))
                    .is_some_and(|i| i.attr("subscription") == Some("to"))
        })
        .await?;
    alice
        .expect(|e| {
            e.name == "presence"
                && e.attr("from") == Some("bob@b.test/laptop")
                && e.attr("type").is_none()
        })
        .await?;
    bob.send("<presence to='alice@a.test' type='subscribe'/>")
        .await;
    alice
        .expect(|e| is(e, "presence", "type", "subscribe") && e.attr("from") == Some("bob@b.test"))
        .await?;
    alice
        .send("<presence to='bob@b.test' type='subscribed'/>")
        .await;
    bob.expect(|e| {
        e.name == "iq"
            && e.child("query", proto::ns::ROSTER)
                .and_then(|q| q.child("item", proto::ns::ROSTER))
                .is_some_and(|i| i.attr("subscription") == Some("both"))
    })
    .await?;
    bob.expect(|e| {
        e.name == "presence"
            && e.attr("from") == Some("alice@a.test/phone")
            && e.attr("type").is_none()
    })
    .await?;

    // IQs: a ping to the other server, a vCard of its user.
    alice
        .send("<iq to='b.test' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = alice.expect(|e| is(e, "iq", "id", "p1")).await?;
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(r.attr("from"), Some("b.test"));
    alice
        .send("<iq to='bob@b.test' type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    let r = alice.expect(|e| is(e, "iq", "id", "v1")).await?;
    assert_eq!(
        r.attr("type"),
        Some("result"),
        "{}",
        r.to_xml(proto::ns::CLIENT)
    );
    // An IQ to a full JID reaches that resource, and its answer comes back.
    alice
        .send("<iq to='bob@b.test/laptop' type='get' id='t1'><time xmlns='urn:xmpp:time'/></iq>")
        .await;
    let q = bob.expect(|e| is(e, "iq", "id", "t1")).await?;
    assert_eq!(q.attr("from"), Some("alice@a.test/phone"));
    bob.send("<iq to='alice@a.test/phone' type='result' id='t1'/>")
        .await;
    let r = alice.expect(|e| is(e, "iq", "id", "t1")).await?;
    assert_eq!(r.attr("type"), Some("result"));

    // A server that does not answer: the sender is told.
    let t = Instant::now();
    alice
        .send("<message to='carol@c.test' type='chat' id='u1'><body>anyone?</body></message>")
        .await;
    let e = alice.expect(|e| is(e, "message", "id", "u1")).await?;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(e.attr("from"), Some("carol@c.test"));
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );
    assert!(t.elapsed() < Duration::from_secs(5));

    // Both servers list their streams, authenticated by dialback (the
    // certificates are self-signed).
    let sa = status(&a).await;
    assert!(
        sa.iter()
            .any(|l| l.starts_with("out a.test b.test established auth=dialback tls=yes")),
        "{sa:?}"
    );
    assert!(
        sa.iter()
            .any(|l| l.starts_with("in a.test b.test established auth=dialback tls=yes")),
        "{sa:?}"
    );
    Ok(())
}

/// A test certificate authority and certificates it issues.
struct Ca {
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "xmppd test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("ca").pem();
        Ca { key, params, pem }
    }

    /// A certificate for `domain`, written as `dir/domain.{crt,key}`.
    fn issue(
        &self,
        dir: &std::path::Path,
        domain: &str,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).expect("params");
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("issue");
        let (c, k) = (
            dir.join(format!("{domain}.crt")),
            dir.join(format!("{domain}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k)
    }
}

#[tokio::test]
async fn valid_certificates_authenticate_with_sasl_external() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem)?;
    let (ac, ak) = ca.issue(dir.path(), "a.test");
    let (bc, bk) = ca.issue(dir.path(), "b.test");
    let strict = |cert: std::path::PathBuf, key: std::path::PathBuf| {
        let ca_file = ca_file.clone();
        move |cfg: &mut Config| {
            cfg.tls.cert = Some(cert);
            cfg.tls.key = Some(key);
            cfg.s2s.ca_file = Some(ca_file);
            cfg.s2s.require_valid_certs = true;
        }
    };
    let a = fed_server("a.test", 11, &[("b.test", at(12, 5269))], strict(ac, ak)).await;
    let b = fed_server("b.test", 12, &[("a.test", at(11, 5269))], strict(bc, bk)).await;
    // A third server with a self-signed certificate may not federate
    // with the strict ones.
    let c = fed_server("c.test", 13, &[("a.test", at(11, 5269))], |_| {}).await;
    a.add_user("alice@a.test", PASS);
    b.add_user("bob@b.test", PASS);
    c.add_user("carol@c.test", PASS);
    let mut alice = Client::online(a.addr, "alice@a.test", PASS, "r").await?;
    let mut bob = Client::online(b.addr, "bob@b.test", PASS, "r").await?;
    let mut carol = Client::online(c.addr, "carol@c.test", PASS, "r").await?;

    alice
        .send("<message to='bob@b.test' type='chat'><body>signed</body></message>")
        .await;
    let m = bob.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("from"), Some("alice@a.test/r"));
    let sa = status(&a).await;
    assert!(
        sa.iter()
            .any(|l| l.starts_with("out a.test b.test established auth=certificate tls=yes")),
        "{sa:?}"
    );
    let sb = status(&b).await;
    assert!(
        sb.iter()
            .any(|l| l.starts_with("in b.test a.test established auth=certificate tls=yes")),
        "{sb:?}"
    );

    carol
        .send("<message to='alice@a.test' type='chat' id='c1'><body>let me in</body></message>")
        .await;
    let e = carol.expect(|e| is(e, "message", "id", "c1")).await?;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );
    // Nothing reached alice.
    alice
        .send("<iq type='get' id='ping'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let next = alice
        .expect(|e| e.name == "message" || is(e, "iq", "id", "ping"))
        .await?;
    assert_eq!(next.name, "iq");
    Ok(())
}

/// dns.py (tests/interop/s2s) on `listen` with these arguments.
fn dns(listen: &str, args: &[&str]) -> common::procs::Proc {
    use std::io::BufRead;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/interop/s2s/dns.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .args(["--listen", listen, "--timeout", "120"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs dns.py");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("dns.py says it is ready");
    assert!(line.contains("ready"), "{line}");
    common::procs::Proc(child)
}

#[tokio::test]
async fn srv_records_lead_to_a_direct_tls_port() -> anyhow::Result<()> {
    // b.test publishes only _xmpps-server._tcp (XEP-0368) pointing at
    // its direct TLS port; a.test finds it through DNS.
    let _dns = dns(
        &at(20, 5353),
        &[
            "--srv",
            "_xmpps-server._tcp.b.test=0:0:5270:xmpp.b.test",
            "--a",
            "xmpp.b.test=127.0.6.22",
        ],
    );
    let a = fed_server("a.test", 21, &[], |cfg| {
        cfg.s2s.nameservers = vec![at(20, 5353)];
    })
    .await;
    let b = fed_server("b.test", 22, &[("a.test", at(21, 5269))], |cfg| {
        cfg.s2s.direct_tls_listen = Some(at(22, 5270));
    })
    .await;
    a.add_user("alice@a.test", PASS);
    b.add_user("bob@b.test", PASS);
    let mut alice = Client::online(a.addr, "alice@a.test", PASS, "r").await?;
    let mut bob = Client::online(b.addr, "bob@b.test", PASS, "r").await?;
    alice
        .send("<message to='bob@b.test' type='chat'><body>via SRV</body></message>")
        .await;
    let m = bob.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("from"), Some("alice@a.test/r"));
    let sa = status(&a).await;
    assert!(
        sa.iter()
            .any(|l| l.starts_with("out a.test b.test established")
                && l.contains("tls=yes")
                && l.contains(&format!("peer={}", at(22, 5270)))),
        "{sa:?}"
    );
    // A domain DNS knows nothing of: not found, at once.
    alice
        .send("<message to='x@unknown.test' id='u'><body>?</body></message>")
        .await;
    let e = alice.expect(|e| is(e, "message", "id", "u")).await?;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );
    Ok(())
}

#[tokio::test]
async fn denied_domains_and_unanswering_servers_bounce() -> anyhow::Result<()> {
    // A server that accepts connections and never says anything.
    let hole = TcpListener::bind(at(33, 5269)).await?;
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hole.accept().await {
            conns.push(c);
        }
    });
    let a = fed_server(
        "a.test",
        31,
        &[("b.test", at(32, 5269)), ("hole.test", at(33, 5269))],
        |cfg| {
            cfg.s2s.deny = vec!["b.test".into()];
            cfg.s2s.connect_timeout_secs = 2;
            cfg.s2s.max_queued = 2;
        },
    )
    .await;
    let b = fed_server("b.test", 32, &[("a.test", at(31, 5269))], |_| {}).await;
    a.add_user("alice@a.test", PASS);
    b.add_user("bob@b.test", PASS);
    let mut alice = Client::online(a.addr, "alice@a.test", PASS, "r").await?;
    let mut bob = Client::online(b.addr, "bob@b.test", PASS, "r").await?;

    alice
        .send("<message to='bob@b.test' id='d1'><body>denied</body></message>")
        .await;
    let e = alice.expect(|e| is(e, "message", "id", "d1")).await?;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );
    // b.test's stream to a.test is refused too.
    bob.send("<message to='alice@a.test' id='d2'><body>denied</body></message>")
        .await;
    let e = bob.expect(|e| is(e, "message", "id", "d2")).await?;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );

    // Two stanzas may wait for hole.test; the third is refused at once,
    // the two others after connect_timeout_secs.
    let t = Instant::now();
    for i in 1..=3 {
        alice
            .send(&format!(
                "<message to='x@hole.test' id='h{i}'><body>{i}</body></message>"
            ))
            .await;
    }
    let e = alice.expect(|e| is(e, "message", "id", "h3")).await?;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-timeout")
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    for id in ["h1", "h2"] {
        let e = alice.expect(|e| is(e, "message", "id", id)).await?;
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("remote-server-timeout")
        );
    }
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    held.abort();
    Ok(())
}

/// A hand-written peer server: a raw stream to `addr` as `from`.
async fn peer(addr: SocketAddr, from: &str, to: &str) -> anyhow::Result<Client> {
    let mut c = Client::connect(addr).await;
    c.send(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='{from}' to='{to}' version='1.0'>"
    ))
    .await;
    match c.next().await? {
        StreamEvent::Open(h) => c.stream_id = h.id.unwrap_or_default(),
        other => anyhow::bail!("expected a header, got {other:?}"),
    }
    let f = c.next_element().await?;
    anyhow::ensure!(f.name == "features", "no features: {}", f.name);
    c.features = Some(f);
    Ok(c)
}

/// A hand-written peer of good.test whose dialback key good.test's
/// authority vouches for (`authority(.., "good.test", "valid")`).
async fn vouched(addr: SocketAddr) -> anyhow::Result<Client> {
    let mut c = peer(addr, "good.test", "a.test").await?;
    c.send("<db:result from='good.test' to='a.test'>anykey</db:result>")
        .await;
    c.expect(|e| e.name == "result").await?;
    Ok(c)
}

/// An authoritative server for `domain` that answers every dialback
/// verification with `verdict`; it counts the requests.
async fn authority(
    listen: String,
    domain: &'static str,
    verdict: &'static str,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let l = TcpListener::bind(&listen).await.expect("bind");
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let counter = counter.clone();
            tokio::spawn(answer_verify(tcp, domain, verdict, counter));
        }
    });
    (task, asked)
}

async fn answer_verify(
    mut tcp: TcpStream,
    domain: &str,
    verdict: &str,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut parser = StreamParser::new(Limits::default());
    let mut buf = [0u8; 4096];
    loop {
        let ev = loop {
            match parser.next_event() {
                Ok(Some(ev)) => break ev,
                Ok(None) => {}
                Err(_) => return,
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => parser.feed(&buf[..n]),
            }
        };
        match ev {
            StreamEvent::Open(_) => {
                let hello = format!(
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='{domain}' id='auth1' version='1.0'><stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>"
                );
                if tcp.write_all(hello.as_bytes()).await.is_err() {
                    return;
                }
            }
            StreamEvent::Element(e) if e.name == "verify" => {
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = format!(
                    "<db:verify from='{}' to='{}' id='{}' type='{verdict}'/>",
                    e.attr("to").unwrap_or(""),
                    e.attr("from").unwrap_or(""),
                    e.attr("id").unwrap_or("")
                );
                if tcp.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            StreamEvent::Element(_) => {}
            StreamEvent::Close => return,
        }
    }
}

#[tokio::test]
async fn misbehaving_peers_get_stream_errors_and_others_go_on() -> anyhow::Result<()> {
    // The server under test takes plain streams, so that the hand-written
    // peers need no TLS; evil.test and good.test answer its dialback
    // callbacks (invalid and valid).
    let (_evil, evil_asked) = authority(at(42, 5269), "evil.test", "invalid").await;
    let (_good, good_asked) = authority(at(43, 5269), "good.test", "valid").await;
    // A domain whose server takes connections and never answers.
    let hole = TcpListener::bind(at(44, 5269)).await?;
    let _held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hole.accept().await {
            conns.push(c);
        }
    });
    let a = fed_server(
        "a.test",
        41,
        &[
            ("evil.test", at(42, 5269)),
            ("good.test", at(43, 5269)),
            ("hole.test", at(44, 5269)),
        ],
        |cfg| {
            cfg.s2s.require_encryption = false;
            cfg.s2s.connect_timeout_secs = 2;
        },
    )
    .await;
    a.add_user("alice@a.test", PASS);
    let mut alice = Client::online(a.addr, "alice@a.test", PASS, "r").await?;
    let s2s: SocketAddr = at(41, 5269).parse()?;

    // A half-open stream: nothing sent, closed after connect_timeout_secs.
    let mut silent = Client::connect(s2s).await;

    // A header for a domain this server does not host.
    let mut c = Client::connect(s2s).await;
    c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='good.test' to='nothere.test' version='1.0'>").await;
    assert_eq!(c.stream_error().await?, "host-unknown");

    // A client namespace.
    let mut c = Client::connect(s2s).await;
    c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='good.test' to='a.test' version='1.0'>").await;
    assert_eq!(c.stream_error().await?, "invalid-namespace");

    // Stanzas before authentication.
    let mut c = peer(s2s, "good.test", "a.test").await?;
    let f = c.features.clone().expect("features");
    assert!(
        f.child("dialback", "urn:xmpp:features:dialback").is_some(),
        "{}",
        f.to_xml(proto::ns::SERVER)
    );
    assert!(f.child("starttls", proto::ns::TLS).is_some());
    c.send("<message from='mallory@good.test' to='alice@a.test'><body>early</body></message>")
        .await;
    assert_eq!(c.stream_error().await?, "not-authorized");

    // A dialback key its domain's server does not vouch for.
    let mut c = peer(s2s, "evil.test", "a.test").await?;
    c.send("<db:result from='evil.test' to='a.test'>0123456789</db:result>")
        .await;
    let r = c.expect(|e| e.name == "result").await?;
    assert_eq!(r.attr("type"), Some("invalid"));
    assert_eq!(evil_asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    c.send("<message from='mallory@evil.test' to='alice@a.test'><body>let me in</body></message>")
        .await;
    assert_eq!(c.stream_error().await?, "not-authorized");

    // A callback that cannot be made is an error, not a verdict
    // (XEP-0220 §2.4).
    let mut c = peer(s2s, "hole.test", "a.test").await?;
    c.send("<db:result from='hole.test' to='a.test'>0123456789</db:result>")
        .await;
    let r = c.expect(|e| e.name == "result").await?;
    assert_eq!(r.attr("type"), Some("error"));
    assert!(
        r.to_xml(proto::ns::SERVER)
            .contains("remote-server-timeout")
    );

    // A vouched-for peer: its stanzas go through, until it sends one from
    // a domain it did not authenticate.
    let mut c = peer(s2s, "good.test", "a.test").await?;
    c.send("<db:result from='good.test' to='a.test'>anykey</db:result>")
        .await;
    let r = c.expect(|e| e.name == "result").await?;
    assert_eq!(r.attr("type"), Some("valid"));
    assert_eq!(good_asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    c.send("<presence from='gina@good.test/x' to='alice@a.test'/>")
        .await;
    c.send("<message from='gina@good.test/x' to='alice@a.test' type='chat'><body>from good</body></message>").await;
    let m = alice.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("from"), Some("gina@good.test/x"));
    assert_eq!(
        m.child("body", proto::ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("from good")
    );
    // A second pair on the same stream (XEP-0220 §2.5): good.test to
    // this server's MUC service.
    c.send("<db:result from='good.test' to='conference.a.test'>anykey</db:result>")
        .await;
    let r = c
        .expect(|e| e.name == "result" && e.attr("from") == Some("conference.a.test"))
        .await?;
    assert_eq!(r.attr("type"), Some("valid"));
    c.send("<iq from='gina@good.test/x' to='conference.a.test' type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    c.send("<message from='mallory@evil.test' to='alice@a.test'><body>spoofed</body></message>")
        .await;
    assert_eq!(c.stream_error().await?, "invalid-from");
    // Without that second pair, a stanza to the service is refused.
    let mut c = vouched(s2s).await?;
    c.send("<iq from='gina@good.test/x' to='pubsub.a.test' type='get' id='d2'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert_eq!(c.stream_error().await?, "host-unknown");

    // A second vouched-for stream sends available presence and is then
    // cut: the user that had it gets unavailable from the server (RFC
    // 6121 §4.5.2 as for a lost client), without the peer saying so.
    let mut c = vouched(s2s).await?;
    // Alice does not subscribe to gina: directed presence still arrives.
    c.send("<presence from='gina@good.test/y' to='alice@a.test/r'/>")
        .await;
    alice
        .expect(|e| {
            e.name == "presence"
                && e.attr("from") == Some("gina@good.test/y")
                && e.attr("type").is_none()
        })
        .await?;
    drop(c);
    let p = alice
        .expect(|e| e.name == "presence" && e.attr("from") == Some("gina@good.test/y"))
        .await?;
    assert_eq!(p.attr("type"), Some("unavailable"));

    // As the authoritative server: a key this server gave verifies, any
    // other does not (XEP-0220 §2.2).
    let secret = node::s2s::dialback::Secret::new(SECRET.as_bytes());
    let mut c = peer(s2s, "good.test", "a.test").await?;
    let good = secret.key("good.test", "a.test", "S1");
    c.send(&format!(
        "<db:verify from='good.test' to='a.test' id='S1'>{good}</db:verify>"
    ))
    .await;
    let v = c.expect(|e| e.name == "verify").await?;
    assert_eq!(v.attr("type"), Some("valid"));
    assert_eq!(v.attr("id"), Some("S1"));
    c.send(&format!(
        "<db:verify from='good.test' to='a.test' id='S2'>{good}</db:verify>"
    ))
    .await;
    let v = c.expect(|e| e.name == "verify").await?;
    assert_eq!(v.attr("type"), Some("invalid"));

    // Garbage.
    let mut c = peer(s2s, "good.test", "a.test").await?;
    c.send("<message><body></message>").await;
    assert_eq!(c.stream_error().await?, "not-well-formed");

    // A stanza whose address is not a JID spoils that stanza only: the
    // stream goes on. A peer that closes its stream cleanly says nothing
    // of its users' presence: no unavailable is made up for them.
    let mut c = vouched(s2s).await?;
    c.send("<presence from='gina@good.test/z' to='alice@a.test/r'/>")
        .await;
    alice
        .expect(|e| e.name == "presence" && e.attr("from") == Some("gina@good.test/z"))
        .await?;
    c.send("<message from='gina@good.test/z' to='a b@a.test'><body>bad address</body></message>")
        .await;
    c.send("<message from='gina@good.test/z' to='alice@a.test/r' type='chat' id='after'><body>still here</body></message>").await;
    let m = alice.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("id"), Some("after"));
    c.send("</stream:stream>").await;
    let _ = c.next().await;
    alice
        .send("<iq type='get' id='clean'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let next = alice
        .expect(|e| e.name == "presence" || is(e, "iq", "id", "clean"))
        .await?;
    assert_eq!(
        next.name,
        "iq",
        "no unavailable after a clean close: {}",
        next.to_xml(proto::ns::CLIENT)
    );

    // A peer that never authenticates cannot hold its stream open by
    // talking: it is closed 2 x connect_timeout_secs after it opened.
    let mut c = peer(s2s, "good.test", "a.test").await?;
    let opened = Instant::now();
    let talker = tokio::spawn(async move {
        let good = secret.key("good.test", "a.test", "S9");
        loop {
            c.send(&format!(
                "<db:verify from='good.test' to='a.test' id='S9'>{good}</db:verify>"
            ))
            .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            if c.expect(|e| e.name == "verify" || e.name == "error")
                .await
                .map(|e| e.name == "error")
                .unwrap_or(true)
            {
                return opened.elapsed();
            }
        }
    });
    let held = tokio::time::timeout(Duration::from_secs(15), talker).await??;
    assert!(held < Duration::from_secs(8), "held {held:?}");

    // The silent one was timed out, and alice's session never noticed.
    assert_eq!(
        tokio::time::timeout(TIMEOUT, silent.stream_error()).await??,
        "connection-timeout"
    );
    alice
        .send("<iq type='get' id='still'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice.expect(|e| is(e, "iq", "id", "still")).await?;
    Ok(())
}

const MUC: &str = "http://jabber.org/protocol/muc";

async fn join(c: &mut Client, room: &str, nick: &str) -> anyhow::Result<Element> {
    c.send(&format!(
        "<presence to='{room}/{nick}'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    let me = format!("{room}/{nick}");
    c.expect(|e| e.name == "presence" && e.attr("from") == Some(me.as_str()))
        .await
}

#[tokio::test]
async fn rooms_take_occupants_from_other_servers() -> anyhow::Result<()> {
    // Each server's MUC service is reached through its own streams
    // (conference.a.test is a domain pair of its own).
    let a = fed_server(
        "a.test",
        51,
        &[
            ("b.test", at(52, 5269)),
            ("conference.b.test", at(52, 5269)),
        ],
        |_| {},
    )
    .await;
    let b = fed_server(
        "b.test",
        52,
        &[
            ("a.test", at(51, 5269)),
            ("conference.a.test", at(51, 5269)),
        ],
        |_| {},
    )
    .await;
    a.add_user("alice@a.test", PASS);
    b.add_user("bob@b.test", PASS);
    let mut alice = Client::online(a.addr, "alice@a.test", PASS, "r").await?;
    let mut bob = Client::online(b.addr, "bob@b.test", PASS, "r").await?;

    // Alice's room on a.test; bob enters from b.test.
    let room = "lobby@conference.a.test";
    join(&mut alice, room, "alice").await?;
    alice
        .send(&format!(
            "<iq type='set' id='cfg' to='{room}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        .await;
    alice.expect(|e| is(e, "iq", "id", "cfg")).await?;
    let p = join(&mut bob, room, "bob").await?;
    assert_ne!(
        p.attr("type"),
        Some("error"),
        "{}",
        p.to_xml(proto::ns::CLIENT)
    );
    alice
        .expect(|e| e.name == "presence" && e.attr("from") == Some("lobby@conference.a.test/bob"))
        .await?;
    bob.send(&format!(
        "<message to='{room}' type='groupchat'><body>hello room</body></message>"
    ))
    .await;
    for c in [&mut alice, &mut bob] {
        let m = c
            .expect(|e| {
                is(e, "message", "type", "groupchat")
                    && e.child("body", proto::ns::CLIENT).is_some()
            })
            .await?;
        assert_eq!(m.attr("from"), Some("lobby@conference.a.test/bob"));
    }

    // And the other way: alice enters a room of b.test's service.
    let there = "den@conference.b.test";
    join(&mut bob, there, "bob").await?;
    bob.send(&format!(
        "<iq type='set' id='cfg2' to='{there}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
    ))
    .await;
    bob.expect(|e| is(e, "iq", "id", "cfg2")).await?;
    let p = join(&mut alice, there, "alice").await?;
    assert_ne!(
        p.attr("type"),
        Some("error"),
        "{}",
        p.to_xml(proto::ns::CLIENT)
    );
    alice
        .send(&format!(
            "<message to='{there}' type='groupchat'><body>from afar</body></message>"
        ))
        .await;
    let m = bob
        .expect(|e| {
            is(e, "message", "type", "groupchat")
                && e.attr("from") == Some("den@conference.b.test/alice")
        })
        .await?;
    assert_eq!(
        m.child("body", proto::ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("from afar")
    );
    // Leaving goes across too.
    alice
        .send(&format!(
            "<presence to='{there}/alice' type='unavailable'/>"
        ))
        .await;
    bob.expect(|e| {
        e.name == "presence"
            && e.attr("from") == Some("den@conference.b.test/alice")
            && e.attr("type") == Some("unavailable")
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_remote_user_subscribes_to_a_pubsub_node_and_gets_its_items() -> anyhow::Result<()> {
    const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
    let a = fed_server("a.test", 61, &[("b.test", at(62, 5269))], |_| {}).await;
    let b = fed_server(
        "b.test",
        62,
        &[("a.test", at(61, 5269)), ("pubsub.a.test", at(61, 5269))],
        |_| {},
    )
    .await;
    a.add_user("alice@a.test", PASS);
    b.add_user("bob@b.test", PASS);
    let mut alice = Client::online(a.addr, "alice@a.test", PASS, "r").await?;
    let mut bob = Client::online(b.addr, "bob@b.test", PASS, "r").await?;
    alice
        .send(&format!(
            "<iq type='set' id='c1' to='pubsub.a.test'><pubsub xmlns='{PUBSUB}'><create node='news'/></pubsub></iq>"
        ))
        .await;
    let r = alice.expect(|e| is(e, "iq", "id", "c1")).await?;
    assert_eq!(
        r.attr("type"),
        Some("result"),
        "{}",
        r.to_xml(proto::ns::CLIENT)
    );
    bob.send(&format!(
        "<iq type='set' id='s1' to='pubsub.a.test'><pubsub xmlns='{PUBSUB}'><subscribe node='news' jid='bob@b.test'/></pubsub></iq>"
    ))
    .await;
    let r = bob.expect(|e| is(e, "iq", "id", "s1")).await?;
    assert_eq!(
        r.attr("type"),
        Some("result"),
        "{}",
        r.to_xml(proto::ns::CLIENT)
    );
    alice
        .send(&format!(
            "<iq type='set' id='p1' to='pubsub.a.test'><pubsub xmlns='{PUBSUB}'><publish node='news'><item id='i1'><entry xmlns='urn:example'>federated news</entry></item></publish></pubsub></iq>"
        ))
        .await;
    alice.expect(|e| is(e, "iq", "id", "p1")).await?;
    let m = bob.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("from"), Some("pubsub.a.test"));
    assert!(
        m.to_xml(proto::ns::CLIENT).contains("federated news"),
        "{}",
        m.to_xml(proto::ns::CLIENT)
    );
    Ok(())
}

#[tokio::test]
async fn a_reloaded_certificate_is_used_for_new_streams() -> anyhow::Result<()> {
    // a.test starts with a self-signed certificate, which strict b.test
    // refuses; after a reload with one from the CA b.test takes it.
    let dir = tempfile::tempdir()?;
    let ca = Ca::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem)?;
    let (ac, ak) = ca.issue(dir.path(), "a.test");
    let (bc, bk) = ca.issue(dir.path(), "b.test");
    let a = fed_server("a.test", 71, &[("b.test", at(72, 5269))], |_| {}).await;
    let cf = ca_file.clone();
    let b = fed_server("b.test", 72, &[("a.test", at(71, 5269))], move |cfg| {
        cfg.tls.cert = Some(bc);
        cfg.tls.key = Some(bk);
        cfg.s2s.ca_file = Some(cf);
        cfg.s2s.require_valid_certs = true;
    })
    .await;
    a.add_user("alice@a.test", PASS);
    b.add_user("bob@b.test", PASS);
    let mut alice = Client::online(a.addr, "alice@a.test", PASS, "r").await?;
    let mut bob = Client::online(b.addr, "bob@b.test", PASS, "r").await?;
    alice
        .send("<message to='bob@b.test' id='x1'><body>refused</body></message>")
        .await;
    let e = alice.expect(|e| is(e, "message", "id", "x1")).await?;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );

    let server = a.server.as_ref().expect("running");
    let mut cfg = server.config();
    cfg.tls.cert = Some(ac);
    cfg.tls.key = Some(ak);
    let done = server.reload(cfg, &|_| Ok(()))?;
    assert!(
        done.applied.iter().any(|l| l.contains("server-to-server")),
        "{:?}",
        done.applied
    );
    alice
        .send("<message to='bob@b.test' id='x2'><body>accepted</body></message>")
        .await;
    let m = bob.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("id"), Some("x2"));
    Ok(())
}

#[tokio::test]
async fn limits_pace_and_bound_peers_without_losing_stanzas() -> anyhow::Result<()> {
    let (_good, _) = authority(at(83, 5269), "good.test", "valid").await;
    let a = fed_server(
        "a.test",
        81,
        &[("good.test", at(83, 5269)), ("nxdomain.test", at(84, 1))],
        |cfg| {
            cfg.s2s.require_encryption = false;
            cfg.s2s.stanza_rate_per_sec = 20;
            cfg.s2s.max_streams_per_ip = 2;
        },
    )
    .await;
    a.add_user("alice@a.test", PASS);
    let mut alice = Client::online(a.addr, "alice@a.test", PASS, "r").await?;
    let s2s: SocketAddr = at(81, 5269).parse()?;

    // 40 stanzas at once at 20 a second: all arrive, paced.
    let mut c = vouched(s2s).await?;
    let t = Instant::now();
    let mut burst = String::new();
    for i in 0..40 {
        burst.push_str(&format!("<message from='gina@good.test/x' to='alice@a.test' type='chat' id='r{i}'><body>{i}</body></message>"));
    }
    c.send(&burst).await;
    for i in 0..40 {
        let m = alice.expect(|e| e.name == "message").await?;
        assert_eq!(m.attr("id"), Some(format!("r{i}").as_str()));
    }
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    // Two streams from one address at most: the third is told why.
    let _second = peer(s2s, "good.test", "a.test").await?;
    let mut third = Client::connect(s2s).await;
    assert_eq!(third.stream_error().await?, "policy-violation");

    // A subscription request to a server that cannot be reached is
    // answered, so that the roster's pending request can end.
    alice
        .send("<presence to='nobody@nxdomain.test' type='subscribe'/>")
        .await;
    let p = alice
        .expect(|e| e.name == "presence" && e.attr("from") == Some("nobody@nxdomain.test"))
        .await?;
    assert_eq!(p.attr("type"), Some("error"));
    assert_eq!(
        error_condition(&p).as_deref(),
        Some("remote-server-not-found")
    );
    Ok(())
}

#[tokio::test]
async fn a_stopping_server_tells_remote_contacts_its_users_left() -> anyhow::Result<()> {
    let mut a = fed_server("a.test", 91, &[("b.test", at(92, 5269))], |_| {}).await;
    let b = fed_server("b.test", 92, &[("a.test", at(91, 5269))], |_| {}).await;
    a.add_user("alice@a.test", PASS);
    b.add_user("bob@b.test", PASS);
    let mut alice = Client::online(a.addr, "alice@a.test", PASS, "r").await?;
    let mut bob = Client::online(b.addr, "bob@b.test", PASS, "r").await?;
    bob.send("<presence to='alice@a.test' type='subscribe'/>")
        .await;
    alice
        .expect(|e| is(e, "presence", "type", "subscribe"))
        .await?;
    alice
        .send("<presence to='bob@b.test' type='subscribed'/>")
        .await;
    bob.expect(|e| {
        e.name == "presence" && e.attr("from") == Some("alice@a.test/r") && e.attr("type").is_none()
    })
    .await?;
    // SIGTERM's path: the sessions end first, their unavailable presence
    // crosses before the streams close.
    a.stop().await;
    let p = bob
        .expect(|e| e.name == "presence" && e.attr("from") == Some("alice@a.test/r"))
        .await?;
    assert_eq!(p.attr("type"), Some("unavailable"));
    Ok(())
}
