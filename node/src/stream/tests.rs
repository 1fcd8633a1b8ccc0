//! The stream machine without sockets: events in, actions out.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use proto::error::StreamCondition;
use proto::sasl::StoredCredentials;
use proto::xml::{Limits, StreamEvent, StreamParser};

use super::{Action, Event, Machine, StreamSettings};

fn settings() -> Arc<StreamSettings> {
    Arc::new(StreamSettings {
        domains: vec!["localhost".into()],
        require_tls: true,
        tls_available: true,
        registration: false,
        server_features: vec![],
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
            Action::Send(b) => Some(String::from_utf8_lossy(b).into_owned()),
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
    // TLS 1.2: no channel binding, no -PLUS.
    m.on_event(Event::TlsEstablished {
        channel_binding: None,
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
        channel_binding: Some(vec![1; 32]),
    });
    let s = sent(&feed_all(&mut m, events("")));
    assert!(
        s.contains("SCRAM-SHA-256-PLUS") && s.contains("tls-exporter"),
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
        channel_binding: None,
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
        channel_binding: None,
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
