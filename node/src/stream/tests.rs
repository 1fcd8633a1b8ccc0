//! The stream machine without sockets: events in, actions out.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use proto::error::StreamCondition;
use proto::sasl::StoredCredentials;
use proto::xml::{Limits, StreamEvent, StreamParser};

use super::{Action, Event, Machine, StreamSettings};
use proto::sasl::{ChannelBinding, TLS_EXPORTER, TLS_SERVER_END_POINT};

fn both_bindings() -> Vec<ChannelBinding> {
    vec![
        ChannelBinding {
            kind: TLS_EXPORTER,
            data: vec![1; 32],
        },
        ChannelBinding {
            kind: TLS_SERVER_END_POINT,
            data: vec![2; 32],
        },
    ]
}

fn settings() -> Arc<StreamSettings> {
    Arc::new(StreamSettings {
        sm: true,
        sm_location: None,
        domains: vec!["localhost".into()],
        require_tls: true,
        tls_available: true,
        registration: false,
        server_features: vec![],
        server_caps: String::new(),
    })
}

/// Parse client XML into machine events.
fn events(xml: &str) -> Vec<Event> {
    let mut p = StreamParser::new(Limits::default());
    p.feed(b"<stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    p.feed(xml.as_bytes());
    let mut out = Vec::new();
    while let Ok(Some(ev)) = p.next_event() {
        out.push(match ev {
            StreamEvent::Open(h) => Event::Header(h),
            StreamEvent::Element(e) => Event::Element(e),
            StreamEvent::Close => Event::PeerClosed,
        });
    }
    out
}

fn sent(actions: &[Action]) -> String {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(b) | Action::Reply(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect()
}

fn feed_all(m: &mut Machine, evs: Vec<Event>) -> Vec<Action> {
    evs.into_iter().flat_map(|e| m.on_event(e)).collect()
}

#[test]
fn plain_stream_offers_only_required_starttls() {
    let mut m = Machine::new(settings(), "id1".into());
    let out = feed_all(&mut m, events(""));
    let s = sent(&out);
    assert!(
        s.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"),
        "{s}"
    );
    assert!(!s.contains("mechanisms"), "{s}");
}

#[test]
fn starttls_proceeds_and_then_mechanisms_follow_the_channel_binding() {
    let mut m = Machine::new(settings(), "id1".into());
    feed_all(&mut m, events(""));
    let out = feed_all(
        &mut m,
        events("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .into_iter()
            .skip(1)
            .collect(),
    );
    assert!(sent(&out).contains("<proceed"));
    assert!(out.iter().any(|a| matches!(a, Action::StartTls)));
    // No binding at all (a certificate without an end-point hash on TLS
    // 1.2): no -PLUS.
    m.on_event(Event::TlsEstablished {
        channel_bindings: Vec::new(),
    });
    let s = sent(&feed_all(&mut m, events("")));
    assert!(
        s.contains("<mechanism>SCRAM-SHA-256</mechanism>")
            && s.contains("<mechanism>PLAIN</mechanism>"),
        "{s}"
    );
    assert!(!s.contains("PLUS"), "{s}");
    let mut m = Machine::new(settings(), "id2".into());
    m.on_event(Event::TlsEstablished {
        channel_bindings: both_bindings(),
    });
    let s = sent(&feed_all(&mut m, events("")));
    assert!(
        s.contains("SCRAM-SHA-256-PLUS")
            && s.contains("<channel-binding type='tls-exporter'/><channel-binding type='tls-server-end-point'/>"),
        "{s}"
    );
}

#[test]
fn unknown_host_gets_a_header_then_host_unknown() {
    let mut m = Machine::new(settings(), "id1".into());
    let mut p = StreamParser::new(Limits::default());
    p.feed(b"<stream:stream to='example.org' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    let Ok(Some(StreamEvent::Open(h))) = p.next_event() else {
        panic!("header")
    };
    let out = m.on_event(Event::Header(h));
    assert!(
        matches!(out.first(), Some(Action::Send(_))),
        "a header goes first"
    );
    assert!(matches!(
        out.last(),
        Some(Action::Fail(StreamCondition::HostUnknown, _))
    ));
    assert!(m.is_closed());
}

#[test]
fn plain_login_bind_and_route() {
    let mut m = Machine::new(settings(), "id1".into());
    m.on_event(Event::TlsEstablished {
        channel_bindings: Vec::new(),
    });
    feed_all(&mut m, events(""));
    let auth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        B64.encode("\0alice\0secret words")
    );
    let out = feed_all(&mut m, events(&auth).into_iter().skip(1).collect());
    let Some(Action::LookupCredentials(user)) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(user.as_str(), "alice@localhost");
    let creds = StoredCredentials::new("secret words", 64).expect("creds");
    let out = m.on_event(Event::Credentials(Some(creds)));
    assert!(sent(&out).contains("<success"));
    assert!(out.iter().any(|a| matches!(a, Action::ResetParser)));
    let s = sent(&feed_all(&mut m, events("")));
    assert!(
        s.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"),
        "{s}"
    );
    let out = feed_all(
        &mut m,
        events("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>Home</resource></bind></iq>")
            .into_iter()
            .skip(1)
            .collect(),
    );
    let Some(Action::Bind(jid)) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(jid.as_str(), "alice@localhost/Home");
    let out = m.on_event(Event::Bound(Ok(())));
    assert!(sent(&out).contains("<jid>alice@localhost/Home</jid>"));
    let out = feed_all(
        &mut m,
        events("<message to='bob@localhost'><body>hi</body></message>")
            .into_iter()
            .skip(1)
            .collect(),
    );
    let Some(Action::Route(st)) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(
        st.from.as_ref().map(|f| f.as_str()),
        Some("alice@localhost/Home")
    );
    assert!(
        String::from_utf8_lossy(&st.raw)
            .starts_with("<message from='alice@localhost/Home' to='bob@localhost'>")
    );
    let out = feed_all(
        &mut m,
        events("<message from='eve@localhost' to='bob@localhost'/>")
            .into_iter()
            .skip(1)
            .collect(),
    );
    assert!(matches!(
        out.last(),
        Some(Action::Fail(StreamCondition::InvalidFrom, _))
    ));
}

#[test]
fn three_failed_logins_close_the_stream() {
    let mut m = Machine::new(settings(), "id1".into());
    m.on_event(Event::TlsEstablished {
        channel_bindings: Vec::new(),
    });
    feed_all(&mut m, events(""));
    for i in 0..3 {
        let auth = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            B64.encode("\0a\0b")
        );
        feed_all(&mut m, events(&auth).into_iter().skip(1).collect());
        let out = m.on_event(Event::Credentials(None));
        assert!(sent(&out).contains("not-authorized"));
        assert_eq!(m.is_closed(), i == 2);
    }
}

/// Run one SCRAM exchange as `client` builds it; the final answer's
/// element name (`success` or `failure`) and whether the stream closed.
fn scram_exchange(
    m: &mut Machine,
    mech: &str,
    client: &mut proto::sasl::client::ScramClient,
    password: &str,
) -> String {
    let auth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
        B64.encode(client.first())
    );
    let out = feed_all(m, events(&auth).into_iter().skip(1).collect());
    if !out
        .iter()
        .any(|a| matches!(a, Action::LookupCredentials(_)))
    {
        return sent(&out);
    }
    let creds = StoredCredentials::new(password, 2).expect("creds");
    let out = m.on_event(Event::Credentials(Some(creds)));
    let s = sent(&out);
    let Some(b64) = s
        .strip_prefix("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>")
        .and_then(|r| r.strip_suffix("</challenge>"))
    else {
        return s;
    };
    let server_first = B64.decode(b64).expect("base64");
    let fin = client.finish(&server_first).expect("client final");
    let resp = format!(
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
        B64.encode(fin)
    );
    sent(&feed_all(m, events(&resp).into_iter().skip(1).collect()))
}

fn tls_machine() -> Machine {
    let mut m = Machine::new(settings(), "id1".into());
    m.on_event(Event::TlsEstablished {
        channel_bindings: both_bindings(),
    });
    feed_all(&mut m, events(""));
    m
}

#[test]
fn a_tls_unique_client_falls_back_to_y_and_logs_in() {
    // slixmpp 1.8.3 (Debian 12): each -PLUS with p=tls-unique, then plain
    // SCRAM with the 'y' flag. Before, the fourth try closed the stream.
    use proto::sasl::Mechanism;
    use proto::sasl::client::ScramClient;
    let mut m = tls_machine();
    for (mech, name) in [
        (Mechanism::ScramSha256Plus, "SCRAM-SHA-256-PLUS"),
        (Mechanism::ScramSha1Plus, "SCRAM-SHA-1-PLUS"),
    ] {
        let mut c = ScramClient::new(mech, "alice", "pw", Some(vec![5; 12]))
            .expect("client")
            .with_binding_type("tls-unique");
        let s = scram_exchange(&mut m, name, &mut c, "pw");
        assert!(
            s.starts_with("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>channel binding tls-unique is not offered here"),
            "{s}"
        );
        assert!(!m.is_closed());
    }
    let mut c =
        ScramClient::new(Mechanism::ScramSha256, "alice", "pw", Some(vec![5; 12])).expect("client");
    assert!(c.first().starts_with(b"y,,"));
    let s = scram_exchange(&mut m, "SCRAM-SHA-256", &mut c, "pw");
    assert!(s.starts_with("<success"), "{s}");
}

#[test]
fn y_without_a_plus_attempt_is_still_a_downgrade() {
    use proto::sasl::Mechanism;
    use proto::sasl::client::ScramClient;
    let mut m = tls_machine();
    let mut c =
        ScramClient::new(Mechanism::ScramSha256, "alice", "pw", Some(vec![5; 12])).expect("client");
    let s = scram_exchange(&mut m, "SCRAM-SHA-256", &mut c, "pw");
    assert!(s.contains("<not-authorized/>"), "{s}");
}

#[test]
fn binding_refusals_do_not_use_up_password_attempts_but_are_bounded() {
    use proto::sasl::Mechanism;
    use proto::sasl::client::ScramClient;
    let mut m = tls_machine();
    // Two wrong passwords leave one try.
    for _ in 0..2 {
        let mut c = ScramClient::new(Mechanism::ScramSha256, "alice", "wrong", None).expect("c");
        let s = scram_exchange(&mut m, "SCRAM-SHA-256", &mut c, "pw");
        assert!(s.contains("<not-authorized/>"), "{s}");
    }
    // Requests for another binding type do not count against it ...
    for i in 0..3 {
        let mut c = ScramClient::new(Mechanism::ScramSha256Plus, "alice", "pw", Some(vec![5; 12]))
            .expect("c")
            .with_binding_type("tls-unique");
        scram_exchange(&mut m, "SCRAM-SHA-256-PLUS", &mut c, "pw");
        assert!(!m.is_closed(), "refusal {i}");
    }
    let mut c = ScramClient::new(Mechanism::ScramSha256Plus, "alice", "pw", Some(vec![2; 32]))
        .expect("c")
        .with_binding_type(TLS_SERVER_END_POINT);
    assert!(scram_exchange(&mut m, "SCRAM-SHA-256-PLUS", &mut c, "pw").starts_with("<success"));

    // ... but a client that loops on them is stopped.
    let mut m = tls_machine();
    let mut last = String::new();
    for _ in 0..4 {
        let mut c = ScramClient::new(Mechanism::ScramSha1Plus, "alice", "pw", Some(vec![5; 12]))
            .expect("c")
            .with_binding_type("tls-unique");
        last = scram_exchange(&mut m, "SCRAM-SHA-1-PLUS", &mut c, "pw");
    }
    assert!(m.is_closed(), "{last}");
}

#[test]
fn server_first_carries_the_xep_0474_hash_of_what_was_advertised() {
    use proto::sasl::Mechanism;
    use proto::sasl::client::ScramClient;
    let mut m = tls_machine();
    let c = ScramClient::new(Mechanism::ScramSha256, "alice", "pw", None).expect("c");
    let auth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>",
        B64.encode(c.first())
    );
    feed_all(&mut m, events(&auth).into_iter().skip(1).collect());
    let out = m.on_event(Event::Credentials(Some(
        StoredCredentials::new("pw", 2).expect("c"),
    )));
    let s = sent(&out);
    let b64 = s
        .trim_start_matches("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>")
        .trim_end_matches("</challenge>");
    let first = String::from_utf8(B64.decode(b64).expect("b64")).expect("utf8");
    let expected = proto::sasl::downgrade_string(
        &[
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN",
        ],
        Some(&["tls-exporter", "tls-server-end-point"]),
    );
    use sha2::Digest;
    let h = B64.encode(sha2::Sha256::digest(expected.as_bytes()));
    assert!(first.ends_with(&format!(",h={h}")), "{first}");
}

/// The driver logs every login with the client's address: the machine
/// tells it how each one ended, before the answer goes out.
#[test]
fn logins_were_not_reported_to_the_driver() {
    let mut m = Machine::new(settings(), "id1".into());
    m.on_event(Event::TlsEstablished {
        channel_bindings: Vec::new(),
    });
    feed_all(&mut m, events(""));
    let plain = |user: &str, pw: &str| {
        let auth = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            B64.encode(format!("\0{user}\0{pw}"))
        );
        events(&auth).into_iter().skip(1).collect::<Vec<_>>()
    };
    let outcome_then_send = |out: &[Action]| {
        let at = out
            .iter()
            .position(|a| matches!(a, Action::AuthOutcome(_)))
            .expect("an outcome");
        assert!(matches!(out.get(at + 1), Some(Action::Send(_))), "{out:?}");
        match &out[at] {
            Action::AuthOutcome(o) => o.clone(),
            _ => unreachable!(),
        }
    };
    // A name that is no localpart: never looked up, still reported as sent.
    let out = feed_all(&mut m, plain("a\nb", "x"));
    let o = outcome_then_send(&out);
    assert_eq!(o.username, "a\nb");
    assert_eq!(o.account, None);
    assert_eq!(o.mechanism, "PLAIN");
    assert_eq!(o.failure, Some("not-authorized"));
    // Refused before an exchange starts.
    let out = feed_all(
        &mut m,
        events("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-EVIL'/>")
            .into_iter()
            .skip(1)
            .collect(),
    );
    let o = outcome_then_send(&out);
    assert_eq!(
        (o.mechanism.as_str(), o.failure),
        ("X-EVIL", Some("invalid-mechanism"))
    );
    // The driver may refuse to check an attempt.
    feed_all(&mut m, plain("Alice", "secret words"));
    let out = m.on_event(Event::AuthThrottled);
    let o = outcome_then_send(&out);
    assert_eq!(o.failure, Some("temporary-auth-failure"));
    assert_eq!(
        o.account.map(|a| a.to_string()).as_deref(),
        Some("alice@localhost")
    );
    // A success names the account.
    let mut m = Machine::new(settings(), "id2".into());
    m.on_event(Event::TlsEstablished {
        channel_bindings: Vec::new(),
    });
    feed_all(&mut m, events(""));
    feed_all(&mut m, plain("Alice", "secret words"));
    let creds = StoredCredentials::new("secret words", 64).expect("creds");
    let out = m.on_event(Event::Credentials(Some(creds)));
    let o = outcome_then_send(&out);
    assert_eq!(o.failure, None);
    assert_eq!(o.username, "Alice");
    assert_eq!(
        o.account.map(|a| a.to_string()).as_deref(),
        Some("alice@localhost")
    );
}
