//! RFC 6120 over real sockets: stream negotiation, STARTTLS, direct TLS,
//! every SASL mechanism, resource binding and its conflict rule, stream
//! errors for bad input, and the server's answers to IQs it serves.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Client, TestServer, header};
use proto::ns;

const PW: &str = "correct horse";

#[tokio::test]
async fn plain_port_requires_starttls_before_sasl() {
    let mut t = TestServer::start().await;
    let mut c = Client::connect(t.addr).await;
    let f = c.open("localhost").await.expect("features");
    let tls = f.child("starttls", ns::TLS).expect("starttls offered");
    assert!(
        tls.child("required", ns::TLS).is_some(),
        "starttls is required by default"
    );
    assert!(
        f.child("mechanisms", ns::SASL).is_none(),
        "no SASL before TLS"
    );
    // Trying anyway is refused with encryption-required.
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj11c2VyLHI9YWJj</auth>").await;
    let e = c.next_element().await.expect("failure");
    assert_eq!(e.name, "failure");
    assert_eq!(
        e.first_element().map(|c| c.name.as_str()),
        Some("encryption-required")
    );
    t.stop().await;
}

#[tokio::test]
async fn every_mechanism_authenticates_after_starttls() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mechs = [
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "PLAIN",
    ];
    for m in mechs {
        let mut c = Client::connect(t.addr).await;
        c.open("localhost").await.expect("features");
        c.starttls().await.expect("starttls");
        c.open("localhost").await.expect("features after tls");
        assert!(
            c.mechanisms().iter().any(|x| x == m),
            "{m} offered: {:?}",
            c.mechanisms()
        );
        let f = c.features.clone().expect("features");
        let cb = f
            .child("sasl-channel-binding", ns::SASL_CB)
            .expect("XEP-0440 advertised");
        assert_eq!(
            cb.first_element().and_then(|e| e.attr("type")),
            Some("tls-exporter")
        );
        c.sasl(m, "alice", PW)
            .await
            .unwrap_or_else(|e| panic!("{m}: {e}"));
        c.open("localhost").await.expect("features after sasl");
        let jid = c.bind(Some("r1")).await.expect("bind");
        assert_eq!(jid, "alice@localhost/r1");
    }
    t.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_fail_alike() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    for (user, pw) in [("alice", "wrong password"), ("nobody", PW)] {
        for m in ["SCRAM-SHA-256", "PLAIN"] {
            let mut c = Client::connect(t.addr).await;
            c.open("localhost").await.expect("features");
            c.starttls().await.expect("tls");
            c.open("localhost").await.expect("features");
            let err = c.sasl(m, user, pw).await.expect_err("must fail");
            assert!(
                err.to_string().contains("not-authorized"),
                "{m} {user}: {err}"
            );
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn scram_plus_with_a_foreign_channel_binding_fails() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::connect(t.addr).await;
    c.open("localhost").await.expect("features");
    c.starttls().await.expect("tls");
    c.open("localhost").await.expect("features");
    // A man in the middle would have a different TLS session.
    c.cb = Some(vec![7u8; 32]);
    let err = c
        .sasl("SCRAM-SHA-256-PLUS", "alice", PW)
        .await
        .expect_err("must fail");
    assert!(
        err.to_string().contains("not-authorized") || err.to_string().contains("failure"),
        "{err}"
    );
    t.stop().await;
}

#[tokio::test]
async fn direct_tls_port_logs_in() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::connect_direct_tls(t.tls_addr).await;
    let f = c.open("localhost").await.expect("features");
    assert!(
        f.child("starttls", ns::TLS).is_none(),
        "no STARTTLS inside TLS"
    );
    c.sasl("SCRAM-SHA-256-PLUS", "alice", PW)
        .await
        .expect("sasl");
    c.open("localhost").await.expect("features");
    let jid = c.bind(None).await.expect("bind with a generated resource");
    assert!(jid.starts_with("alice@localhost/"), "{jid}");
    assert!(jid.len() > "alice@localhost/".len());
    t.stop().await;
}

#[tokio::test]
async fn a_new_session_with_the_same_resource_replaces_the_old() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut first = Client::login(t.addr, "alice@localhost", PW, "desk")
        .await
        .expect("first");
    let mut second = Client::login(t.addr, "alice@localhost", PW, "desk")
        .await
        .expect("second");
    assert_eq!(first.stream_error().await.expect("conflict"), "conflict");
    // The new session works.
    second
        .send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let e = second
        .expect(|e| e.attr("id") == Some("p1"))
        .await
        .expect("pong");
    assert_eq!(e.attr("type"), Some("result"));
    t.stop().await;
}

async fn error_for(t: &TestServer, input: &str) -> String {
    let mut c = Client::connect(t.addr).await;
    c.send(input).await;
    c.stream_error()
        .await
        .unwrap_or_else(|e| format!("no stream error: {e}"))
}

#[tokio::test]
async fn bad_streams_get_the_stream_error_rfc_6120_names() {
    let mut t = TestServer::start().await;
    assert_eq!(error_for(&t, &header("example.org")).await, "host-unknown");
    assert_eq!(
        error_for(&t, "<stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='urn:wrong'>").await,
        "invalid-namespace"
    );
    assert_eq!(
        error_for(&t, "<stream:stream to='localhost' version='2.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>").await,
        "unsupported-version"
    );
    assert_eq!(
        error_for(&t, &format!("{}<a></b>", header("localhost"))).await,
        "not-well-formed"
    );
    assert_eq!(
        error_for(&t, &format!("{}<!-- hi -->", header("localhost"))).await,
        "restricted-xml"
    );
    assert_eq!(
        error_for(&t, &format!("{}<!DOCTYPE x>", header("localhost"))).await,
        "restricted-xml"
    );
    assert_eq!(
        error_for(&t, &format!("{}<?pi x?>", header("localhost"))).await,
        "restricted-xml"
    );
    assert_eq!(
        error_for(
            &t,
            &format!("{}<message>&ent;</message>", header("localhost"))
        )
        .await,
        "restricted-xml"
    );
    t.stop().await;
}

#[tokio::test]
async fn oversized_stanza_is_a_policy_violation() {
    let mut t = TestServer::start_with(|c| c.limits.max_stanza_bytes = 10_000).await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::login(t.addr, "alice@localhost", PW, "r")
        .await
        .expect("login");
    let body = "x".repeat(20_000);
    let _ = c
        .send_bytes(
            format!("<message to='alice@localhost'><body>{body}</body></message>").as_bytes(),
        )
        .await;
    assert_eq!(c.stream_error().await.expect("error"), "policy-violation");
    t.stop().await;
}

#[tokio::test]
async fn deep_nesting_is_a_policy_violation() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::login(t.addr, "alice@localhost", PW, "r")
        .await
        .expect("login");
    let _ = c
        .send_bytes(format!("<message>{}", "<a>".repeat(100)).as_bytes())
        .await;
    assert_eq!(c.stream_error().await.expect("error"), "policy-violation");
    t.stop().await;
}

#[tokio::test]
async fn stanzas_before_authentication_are_not_authorized() {
    let mut t = TestServer::start().await;
    let mut c = Client::connect(t.addr).await;
    c.open("localhost").await.expect("features");
    c.send("<message to='a@localhost'><body>x</body></message>")
        .await;
    assert_eq!(c.stream_error().await.expect("error"), "not-authorized");
    t.stop().await;
}

#[tokio::test]
async fn a_forged_from_is_invalid_from() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::login(t.addr, "alice@localhost", PW, "r")
        .await
        .expect("login");
    c.send("<message from='bob@localhost/x' to='alice@localhost'><body>x</body></message>")
        .await;
    assert_eq!(c.stream_error().await.expect("error"), "invalid-from");
    t.stop().await;
}

#[tokio::test]
async fn unknown_first_level_element_is_unsupported_stanza_type() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::login(t.addr, "alice@localhost", PW, "r")
        .await
        .expect("login");
    c.send("<enable xmlns='urn:example:unknown'/>").await;
    assert_eq!(
        c.stream_error().await.expect("error"),
        "unsupported-stanza-type"
    );
    t.stop().await;
}

#[tokio::test]
async fn the_closing_handshake_closes_both_streams() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::login(t.addr, "alice@localhost", PW, "r")
        .await
        .expect("login");
    c.send("</stream:stream>").await;
    match c.next().await {
        Ok(proto::xml::StreamEvent::Close) => {}
        other => panic!("expected the server's </stream:stream>, got {other:?}"),
    }
    t.stop().await;
}

#[tokio::test]
async fn whitespace_keepalives_are_accepted() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::login(t.addr, "alice@localhost", PW, "r")
        .await
        .expect("login");
    for _ in 0..5 {
        c.send(" \n ").await;
    }
    c.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let e = c.expect(|e| e.attr("id") == Some("p")).await.expect("pong");
    assert_eq!(e.attr("type"), Some("result"));
    t.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_pinged_and_dropped_when_it_does_not_answer() {
    let mut t = TestServer::start_with(|c| {
        c.limits.idle_timeout_secs = 1;
        c.limits.ping_timeout_secs = 1;
    })
    .await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::login(t.addr, "alice@localhost", PW, "r")
        .await
        .expect("login");
    let ping = c.expect(|e| e.name == "iq").await.expect("server ping");
    assert!(
        ping.child("ping", ns::PING).is_some(),
        "{}",
        ping.to_xml(ns::CLIENT)
    );
    assert_eq!(
        c.stream_error().await.expect("timeout"),
        "connection-timeout"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_client_that_answers_pings_stays() {
    let mut t = TestServer::start_with(|c| {
        c.limits.idle_timeout_secs = 1;
        c.limits.ping_timeout_secs = 2;
    })
    .await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::login(t.addr, "alice@localhost", PW, "r")
        .await
        .expect("login");
    for _ in 0..2 {
        let ping = c
            .expect(|e| e.name == "iq" && e.child("ping", ns::PING).is_some())
            .await
            .expect("ping");
        let id = ping.attr("id").unwrap_or_default().to_string();
        c.send(&format!("<iq type='result' id='{id}' to='localhost'/>"))
            .await;
    }
    c.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    c.expect(|e| e.attr("id") == Some("p"))
        .await
        .expect("still connected");
    t.stop().await;
}

#[tokio::test]
async fn connections_per_ip_are_limited() {
    let mut t = TestServer::start_with(|c| c.limits.max_connections_per_ip = 3).await;
    let mut keep = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(t.addr).await;
        c.open("localhost").await.expect("admitted");
        keep.push(c);
    }
    let mut c = Client::connect(t.addr).await;
    assert_eq!(c.stream_error().await.expect("refused"), "policy-violation");
    t.stop().await;
}

#[tokio::test]
async fn graceful_stop_sends_system_shutdown() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::login(t.addr, "alice@localhost", PW, "r")
        .await
        .expect("login");
    let stopper = tokio::spawn(async move {
        t.stop().await;
        t
    });
    assert_eq!(c.stream_error().await.expect("shutdown"), "system-shutdown");
    let _ = stopper.await;
}

#[tokio::test]
async fn whitespace_after_auth_or_starttls_does_not_break_the_restarted_stream() {
    // go-sendxmpp (go-xmpp) writes "</auth>\n": the newline stayed in the
    // parser across the reset after <success/>, and the client's next
    // "<?xml version='1.0'?>" was refused as restricted-xml. Whitespace
    // between streams is legal (RFC 6120 §11.7, §4.3.3), after STARTTLS too.
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    for direct in [false, true] {
        let mut c = if direct {
            Client::connect_direct_tls(t.tls_addr).await
        } else {
            let mut c = Client::connect(t.addr).await;
            c.open("localhost").await.expect("features");
            c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n")
                .await;
            // The client's own helper reads <proceed/> and wraps TLS; the
            // newline went before TLS started.
            c.starttls_after_request().await.expect("tls");
            c
        };
        // A newline and spaces before the restarted stream's declaration.
        c.send_bytes(b"\n  \r\n").await.expect("write");
        c.open("localhost").await.expect("features after tls");
        let auth = B64.encode(format!("\0alice\0{PW}"));
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>\n"
        ))
        .await;
        let e = c.next_element().await.expect("success");
        assert_eq!(e.name, "success", "direct={direct}");
        c.send("\n").await;
        c.open("localhost").await.expect("features after sasl");
        let jid = c.bind(Some("go")).await.expect("bind");
        assert_eq!(jid, "alice@localhost/go");
    }
    t.stop().await;
}

#[tokio::test]
async fn a_pretty_printed_resource_was_refused() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    let mut c = Client::connect(t.addr).await;
    c.open("localhost").await.expect("features");
    c.starttls().await.expect("tls");
    c.open("localhost").await.expect("features");
    c.sasl("SCRAM-SHA-256", "alice", PW).await.expect("sasl");
    c.open("localhost").await.expect("features");
    let jid = c.bind(Some("\n    laptop\n  ")).await.expect("bind");
    assert_eq!(jid, "alice@localhost/laptop");
    t.stop().await;
}

#[tokio::test]
async fn a_restarted_stream_could_change_domain() {
    let mut t = TestServer::start_with(|cfg| {
        cfg.domains = vec!["localhost".into(), "example.test".into()];
    })
    .await;
    t.add_user("bob@example.test", PW);
    let mut c = Client::connect(t.addr).await;
    c.open("example.test").await.expect("features");
    c.starttls().await.expect("tls");
    c.open("example.test").await.expect("features");
    c.sasl("SCRAM-SHA-256", "bob", PW).await.expect("sasl");
    // After SASL the stream restarts for another domain: refused.
    c.restart();
    c.send(&header("localhost")).await;
    assert_eq!(c.stream_error().await.expect("error"), "host-unknown");
    t.stop().await;
}
