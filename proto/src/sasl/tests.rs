//! Exchanges driven end to end: the RFC examples, channel binding, the
//! downgrade check, unknown users, PLAIN, and random input.

use super::client::ScramClient;
use super::message::b64_decode;
use super::*;

const RFC5802_SALT: &str = "QSXCR+Q6sek8bf92";
const RFC7677_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

/// Credentials with the RFC salts for "pencil" (4096 iterations).
fn rfc_creds() -> StoredCredentials {
    let salt = |s| b64_decode(s).expect("rfc salt");
    StoredCredentials {
        sha1: ScramCredentials::derive(ScramHash::Sha1, "pencil", &salt(RFC5802_SALT), 4096)
            .expect("derive"),
        sha256: ScramCredentials::derive(ScramHash::Sha256, "pencil", &salt(RFC7677_SALT), 4096)
            .expect("derive"),
    }
}

/// Cheap credentials for tests that do not compare against the RFC.
pub(super) fn creds(password: &str) -> StoredCredentials {
    StoredCredentials::new(password, 2).expect("credentials")
}

pub(super) fn cheap_decoy() -> Decoy {
    Decoy::new([42; 32], 2)
}

pub(super) fn cb(data: &[u8]) -> Vec<ChannelBinding> {
    vec![ChannelBinding {
        kind: TLS_EXPORTER,
        data: data.to_vec(),
    }]
}

pub(super) fn challenge(step: Step) -> Vec<u8> {
    match step {
        Step::Challenge(c) => c,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

/// Replays one RFC example against the server.
fn replay(mech: Mechanism, snonce: &str, msgs: [&str; 4]) {
    let [client_first, server_first, client_final, server_final] = msgs;
    let mut s = ServerSession::new(mech, Vec::new(), false).with_server_nonce(snonce);
    assert_eq!(
        s.step(client_first.as_bytes()),
        Step::Lookup {
            username: "user".into()
        }
    );
    assert_eq!(
        challenge(s.credentials(Some(rfc_creds()))),
        server_first.as_bytes()
    );
    assert_eq!(
        s.step(client_final.as_bytes()),
        Step::Success {
            username: "user".into(),
            authzid: None,
            additional: Some(server_final.as_bytes().to_vec()),
        }
    );
    assert_eq!(s.step(b""), Step::Failure(SaslFailure::MalformedRequest));

    // The client reproduces the same messages.
    let cnonce = client_first.rsplit_once("r=").expect("nonce").1;
    let mut c = ScramClient::new(mech, "user", "pencil", None)
        .and_then(|c| c.with_nonce(cnonce))
        .expect("client");
    assert_eq!(c.first(), client_first.as_bytes());
    assert_eq!(
        c.finish(server_first.as_bytes()).expect("finish"),
        client_final.as_bytes()
    );
    assert_eq!(c.verify(server_final.as_bytes()), Ok(()));
    assert_eq!(c.verify(b"v=AAAA"), Err(SaslError::ServerSignatureMismatch));
}

#[test]
fn rfc7677_scram_sha256_example() {
    replay(
        Mechanism::ScramSha256,
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        [
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ],
    );
}

#[test]
fn rfc5802_scram_sha1_example() {
    replay(
        Mechanism::ScramSha1,
        "3rfcNHYJY1ZVvWVs7j",
        [
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ],
    );
}

/// Runs a whole exchange between [`ScramClient`] and the server; returns the
/// server's verdict on client-final (or the earlier failure).
fn exchange(
    server: &mut ServerSession,
    client: &mut ScramClient,
    stored: Option<StoredCredentials>,
) -> Step {
    match server.step(&client.first()) {
        Step::Lookup { .. } => {}
        other => return other,
    }
    let server_first = challenge(server.credentials(stored));
    let client_final = client.finish(&server_first).expect("client final");
    let verdict = server.step(&client_final);
    if let Step::Success {
        additional: Some(v),
        ..
    } = &verdict
    {
        assert_eq!(client.verify(v), Ok(()));
    }
    verdict
}

pub(super) fn client(
    mech: Mechanism,
    user: &str,
    password: &str,
    cb_data: Option<&[u8]>,
) -> ScramClient {
    ScramClient::new(mech, user, password, cb_data.map(<[u8]>::to_vec)).expect("client")
}

#[test]
fn plus_with_matching_channel_binding_succeeds() {
    for mech in [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus] {
        let mut s = ServerSession::new(mech, cb(&[9; 32]), true);
        let mut c = client(mech, "juliet", "r0m30", Some(&[9; 32]));
        let step = exchange(&mut s, &mut c, Some(creds("r0m30")));
        assert!(
            matches!(step, Step::Success { ref username, .. } if username == "juliet"),
            "{mech}: {step:?}"
        );
    }
}

#[test]
fn plus_with_other_channel_binding_fails() {
    for mech in [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus] {
        let mut s = ServerSession::new(mech, cb(&[9; 32]), true);
        let mut c = client(mech, "juliet", "r0m30", Some(&[8; 32]));
        let step = exchange(&mut s, &mut c, Some(creds("r0m30")));
        assert_eq!(step, Step::Failure(SaslFailure::NotAuthorized), "{mech}");
    }
}

#[test]
fn plus_channel_binding_rules() {
    use SaslFailure::MalformedRequest;
    let first = |mech, cb_: Vec<ChannelBinding>, msg: &str| {
        ServerSession::new(mech, cb_, true).step(msg.as_bytes())
    };
    let plus = Mechanism::ScramSha256Plus;
    // Another binding type, or no binding on this connection: not a
    // failure of the credentials (the caller does not count it).
    assert_eq!(
        first(plus, cb(&[1]), "p=tls-unique,,n=u,r=x"),
        Step::BindingNotOffered {
            requested: "tls-unique".into()
        }
    );
    assert_eq!(
        first(plus, Vec::new(), "p=tls-exporter,,n=u,r=x"),
        Step::BindingNotOffered {
            requested: "tls-exporter".into()
        }
    );
    // -PLUS without 'p', and 'p' without -PLUS.
    assert_eq!(
        first(plus, cb(&[1]), "n,,n=u,r=x"),
        Step::Failure(MalformedRequest)
    );
    assert_eq!(
        first(plus, cb(&[1]), "y,,n=u,r=x"),
        Step::Failure(MalformedRequest)
    );
    assert_eq!(
        first(Mechanism::ScramSha256, cb(&[1]), "p=tls-exporter,,n=u,r=x"),
        Step::Failure(MalformedRequest)
    );
    assert_eq!(
        first(plus, cb(&[1]), "p=,,n=u,r=x"),
        Step::Failure(MalformedRequest)
    );
    assert!(matches!(
        first(plus, cb(&[1]), "p=tls-exporter,,n=u,r=x"),
        Step::Lookup { .. }
    ));
}

#[test]
fn y_flag_is_a_downgrade_when_plus_was_offered() {
    let mech = Mechanism::ScramSha256;
    let mut s = ServerSession::new(mech, cb(&[9; 32]), true);
    let mut c = client(mech, "juliet", "r0m30", Some(&[9; 32]));
    assert_eq!(
        exchange(&mut s, &mut c, Some(creds("r0m30"))),
        Step::Failure(SaslFailure::NotAuthorized)
    );

    // Without a -PLUS offer, 'y' is fine and c= carries "y,,".
    let mut s = ServerSession::new(mech, Vec::new(), false);
    let mut c = client(mech, "juliet", "r0m30", Some(&[9; 32]));
    assert!(matches!(
        exchange(&mut s, &mut c, Some(creds("r0m30"))),
        Step::Success { .. }
    ));
}

#[test]
fn wrong_password_is_not_authorized() {
    for mech in [Mechanism::ScramSha256, Mechanism::ScramSha1] {
        let mut s = ServerSession::new(mech, Vec::new(), false);
        let mut c = client(mech, "juliet", "wrong", None);
        assert_eq!(
            exchange(&mut s, &mut c, Some(creds("r0m30"))),
            Step::Failure(SaslFailure::NotAuthorized)
        );
    }
}

#[test]
fn unknown_user_gets_a_stable_decoy_salt_and_fails_at_the_proof() {
    let run = |user: &str| {
        let mut s =
            ServerSession::new(Mechanism::ScramSha256, Vec::new(), false).with_decoy(cheap_decoy());
        let mut c = client(Mechanism::ScramSha256, user, "pw", None);
        assert!(matches!(s.step(&c.first()), Step::Lookup { .. }));
        let server_first = challenge(s.credentials(None));
        let text = String::from_utf8(server_first.clone()).expect("utf8");
        let salt_and_iter = text.split_once(",s=").expect("salt").1.to_owned();
        let verdict = s.step(&c.finish(&server_first).expect("final"));
        assert_eq!(verdict, Step::Failure(SaslFailure::NotAuthorized));
        salt_and_iter
    };
    let a = run("nobody");
    assert!(a.ends_with(",i=2"), "{a}");
    assert_eq!(a, run("nobody"));
    assert_eq!(a, run("NOBODY"));
    assert_ne!(a, run("somebody"));

    // The default decoy uses the default iteration count.
    let mut s = ServerSession::new(Mechanism::ScramSha1, Vec::new(), false);
    assert!(matches!(s.step(b"n,,n=ghost,r=abc"), Step::Lookup { .. }));
    let text = String::from_utf8(challenge(s.credentials(None))).expect("utf8");
    assert!(
        text.ends_with(&format!(",i={DEFAULT_ITERATIONS}")),
        "{text}"
    );
}

#[test]
fn authzid_and_saslname_escapes() {
    let mut s = ServerSession::new(Mechanism::ScramSha256, Vec::new(), false);
    let mut c =
        client(Mechanism::ScramSha256, "ro,meo=", "pw", None).with_authzid("ro,meo=@example.com");
    match exchange(&mut s, &mut c, Some(creds("pw"))) {
        Step::Success {
            username,
            authzid,
            additional,
        } => {
            assert_eq!(username, "ro,meo=");
            assert_eq!(authzid.as_deref(), Some("ro,meo=@example.com"));
            assert!(additional.is_some_and(|v| v.starts_with(b"v=")));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_client_first() {
    use SaslFailure::MalformedRequest;
    for bad in [
        &b"n"[..],
        b"n,",
        b"n,,",
        b"x,,n=u,r=abc",
        b"n,b=x,n=u,r=abc",
        b"n,a=,n=u,r=abc",
        b"n,,n=,r=abc",
        b"n,,n=u=41,r=abc",
        b"n,,n=u=2,r=abc",
        b"n,,n=u",
        b"n,,n=u,r=",
        b"n,,n=u,r=a b",
        b"n,,r=abc,n=u",
        b"n,,m=ext,n=u,r=abc",
        b"n,,n=u,r=abc,m=ext",
        b"n,,n=u,r=abc,junk",
        b"n,,n=u\0x,r=abc",
        b"n,,n=\xff\xfe,r=abc",
        b"\xff",
    ] {
        let mut s = ServerSession::new(Mechanism::ScramSha256, Vec::new(), false);
        assert_eq!(
            s.step(bad),
            Step::Failure(MalformedRequest),
            "{}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(s.step(b"n,,n=u,r=abc"), Step::Failure(MalformedRequest));
    }
    let mut s = ServerSession::new(Mechanism::ScramSha256, Vec::new(), false);
    let mut long = b"n,,n=u,r=".to_vec();
    long.resize(MAX_MESSAGE_LEN + 1, b'a');
    assert_eq!(s.step(&long), Step::Failure(MalformedRequest));
    // Optional extensions are skipped.
    let mut s = ServerSession::new(Mechanism::ScramSha256, Vec::new(), false);
    assert!(matches!(s.step(b"n,,n=u,r=abc,x=1"), Step::Lookup { .. }));
}

#[test]
fn malformed_or_wrong_client_final() {
    use SaslFailure::{MalformedRequest, NotAuthorized};
    let proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let nonce = "r=abcSRV";
    let cases = [
        (format!("c=biws,{nonce}"), MalformedRequest),
        (format!("c=biws,{nonce},p=AAAA"), MalformedRequest),
        (format!("c=biws,{nonce},p=!!"), MalformedRequest),
        (format!("c=!!,{nonce},{proof}"), MalformedRequest),
        (format!("{nonce},c=biws,{proof}"), MalformedRequest),
        (format!("c=biws,{proof}"), MalformedRequest),
        (format!("c=biws,{nonce},junk,{proof}"), MalformedRequest),
        (format!("c=eSws,{nonce},{proof}"), NotAuthorized),
        (format!("c=biws,r=abcOTHER,{proof}"), NotAuthorized),
        (format!("c=biws,{nonce},{proof}"), NotAuthorized),
        (format!("c=biws,{nonce},x=ext,{proof}"), NotAuthorized),
    ];
    for (msg, expect) in cases {
        let mut s =
            ServerSession::new(Mechanism::ScramSha256, Vec::new(), false).with_server_nonce("SRV");
        assert!(matches!(s.step(b"n,,n=u,r=abc"), Step::Lookup { .. }));
        challenge(s.credentials(Some(creds("pw"))));
        assert_eq!(s.step(msg.as_bytes()), Step::Failure(expect), "{msg}");
        assert_eq!(s.step(msg.as_bytes()), Step::Failure(MalformedRequest));
    }
}

#[test]
fn empty_initial_response_gets_an_empty_challenge_once() {
    for mech in Mechanism::ALL {
        let mut s = ServerSession::new(mech, cb(&[1]), true);
        assert_eq!(s.step(b""), Step::Challenge(Vec::new()), "{mech}");
        assert_eq!(
            s.step(b""),
            Step::Failure(SaslFailure::MalformedRequest),
            "{mech}"
        );
    }
    let mut s = ServerSession::new(Mechanism::ScramSha1, Vec::new(), false);
    let mut c = client(Mechanism::ScramSha1, "u", "pw", None);
    assert_eq!(s.step(b""), Step::Challenge(Vec::new()));
    assert!(matches!(
        exchange(&mut s, &mut c, Some(creds("pw"))),
        Step::Success { .. }
    ));
}

#[test]
fn calls_out_of_order_fail() {
    use SaslFailure::MalformedRequest;
    for mech in Mechanism::ALL {
        let mut s = ServerSession::new(mech, cb(&[1]), true);
        assert_eq!(
            s.credentials(None),
            Step::Failure(MalformedRequest),
            "{mech}"
        );
        let mut s = ServerSession::new(mech, cb(&[1]), true);
        let first: &[u8] = if mech == Mechanism::Plain {
            b"\0u\0pw"
        } else if mech.is_plus() {
            b"p=tls-exporter,,n=u,r=abc"
        } else {
            b"n,,n=u,r=abc"
        };
        assert!(matches!(s.step(first), Step::Lookup { .. }), "{mech}");
        assert_eq!(s.step(first), Step::Failure(MalformedRequest), "{mech}");
        assert_eq!(
            s.credentials(None),
            Step::Failure(MalformedRequest),
            "{mech}"
        );
        let mut s = ServerSession::new(mech, cb(&[1]), true);
        assert_eq!(s.abort(), Step::Failure(SaslFailure::Aborted));
        assert_eq!(s.step(first), Step::Failure(MalformedRequest), "{mech}");
    }
}

#[test]
fn damaged_stored_credentials_are_a_temporary_failure() {
    let mut stored = creds("pw");
    stored.sha256.stored_key.truncate(3);
    let mut s = ServerSession::new(Mechanism::ScramSha256, Vec::new(), false);
    assert!(matches!(s.step(b"n,,n=u,r=abc"), Step::Lookup { .. }));
    assert_eq!(
        s.credentials(Some(stored)),
        Step::Failure(SaslFailure::TemporaryAuthFailure)
    );
}

#[test]
fn mechanism_names() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::parse(m.name()), Some(m));
        assert_eq!(m.is_plus(), m.name().ends_with("-PLUS"));
        assert_eq!(m.scram_hash().is_some(), m.name().starts_with("SCRAM-"));
    }
    assert_eq!(Mechanism::parse("scram-sha-1"), None);
    assert_eq!(Mechanism::parse("DIGEST-MD5"), None);
    assert_eq!(Mechanism::ScramSha256Plus.to_string(), "SCRAM-SHA-256-PLUS");
}

#[test]
fn failure_conditions_are_rfc6120_names() {
    use SaslFailure::*;
    let all = [
        Aborted,
        AccountDisabled,
        CredentialsExpired,
        EncryptionRequired,
        IncorrectEncoding,
        InvalidAuthzid,
        InvalidMechanism,
        MalformedRequest,
        MechanismTooWeak,
        NotAuthorized,
        TemporaryAuthFailure,
    ];
    let names: Vec<_> = all.iter().map(|f| f.condition()).collect();
    assert_eq!(names[0], "aborted");
    assert_eq!(names[9], "not-authorized");
    assert_eq!(names[10], "temporary-auth-failure");
    assert!(
        names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
    );
}

#[test]
fn the_client_picks_one_of_several_bindings_by_name() {
    let both = vec![
        ChannelBinding {
            kind: TLS_EXPORTER,
            data: vec![9; 32],
        },
        ChannelBinding {
            kind: TLS_SERVER_END_POINT,
            data: vec![7; 32],
        },
    ];
    for mech in [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus] {
        for (kind, data) in [(TLS_EXPORTER, [9u8; 32]), (TLS_SERVER_END_POINT, [7u8; 32])] {
            let mut s = ServerSession::new(mech, both.clone(), true);
            let mut c = client(mech, "juliet", "r0m30", Some(&data)).with_binding_type(kind);
            let step = exchange(&mut s, &mut c, Some(creds("r0m30")));
            assert!(
                matches!(step, Step::Success { .. }),
                "{mech} {kind}: {step:?}"
            );
        }
        // The data of the other type under this type's name fails.
        let mut s = ServerSession::new(mech, both.clone(), true);
        let mut c =
            client(mech, "juliet", "r0m30", Some(&[9; 32])).with_binding_type(TLS_SERVER_END_POINT);
        let step = exchange(&mut s, &mut c, Some(creds("r0m30")));
        assert_eq!(step, Step::Failure(SaslFailure::NotAuthorized), "{mech}");
    }
}

#[test]
fn downgrade_string_follows_xep_0474() {
    // XEP-0474 §4.3's example: SHA-1 over the sorted lists.
    let s = downgrade_string(
        &["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"],
        Some(&["tls-server-end-point", "tls-exporter"]),
    );
    assert_eq!(
        s,
        "SCRAM-SHA-1\u{1e}SCRAM-SHA-1-PLUS\u{1f}tls-exporter\u{1e}tls-server-end-point"
    );
    assert_eq!(
        super::message::b64_encode(&ScramHash::Sha1.hash(s.as_bytes())),
        "G6k/rBLDqgOhRRaCuuatSDFkJ08="
    );
    assert_eq!(
        downgrade_string(&["PLAIN", "SCRAM-SHA-1"], None),
        "PLAIN\u{1e}SCRAM-SHA-1"
    );
}

#[test]
fn server_first_carries_the_downgrade_hash_and_the_client_still_logs_in() {
    let mech = Mechanism::ScramSha256;
    let s_ = downgrade_string(&["SCRAM-SHA-256", "PLAIN"], None);
    let mut s = ServerSession::new(mech, Vec::new(), false).with_downgrade_hash(s_.clone());
    let mut c = client(mech, "juliet", "r0m30", None);
    assert!(matches!(s.step(&c.first()), Step::Lookup { .. }));
    let first = challenge(s.credentials(Some(creds("r0m30"))));
    let text = String::from_utf8(first.clone()).expect("utf8");
    let h = super::message::b64_encode(&ScramHash::Sha256.hash(s_.as_bytes()));
    assert!(text.ends_with(&format!(",h={h}")), "{text}");
    let fin = c.finish(&first).expect("client accepts the extension");
    let Step::Success {
        additional: Some(v),
        ..
    } = s.step(&fin)
    else {
        panic!("success")
    };
    c.verify(&v).expect("server signature");
}
