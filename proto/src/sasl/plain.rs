//! The server side of PLAIN (RFC 4616 §2): one message,
//! `[authzid] NUL authcid NUL passwd`, checked against the SCRAM-SHA-256
//! verifier ([`StoredCredentials::verify_plain`]). The caller offers PLAIN
//! only inside TLS (RFC 6120 §6.4.1 and §13.8).

use super::crypto::ScramHash;
use super::decoy::Decoy;
use super::{MAX_MESSAGE_LEN, SaslFailure, Step, StoredCredentials};

/// The longest authzid, authcid or password we accept, in bytes. RFC 4616
/// §2 requires at least 255; JID localparts go up to 1023.
const MAX_FIELD_LEN: usize = 1024;

enum State {
    Start {
        asked: bool,
    },
    Lookup {
        authzid: Option<String>,
        username: String,
        password: String,
    },
    Done,
}

pub(crate) struct PlainServer {
    decoy: Decoy,
    checked: bool,
    state: State,
}

impl PlainServer {
    pub(crate) fn new() -> PlainServer {
        PlainServer {
            decoy: Decoy::process_default(),
            checked: false,
            state: State::Start { asked: false },
        }
    }

    /// Whether the password was checked (a failure then was a wrong name
    /// or password, not a protocol mistake).
    pub(crate) fn checked(&self) -> bool {
        self.checked
    }

    pub(crate) fn set_decoy(&mut self, decoy: Decoy) {
        self.decoy = decoy;
    }

    pub(crate) fn abort(&mut self) {
        self.state = State::Done;
    }

    pub(crate) fn step(&mut self, input: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start { asked: false } if input.is_empty() => {
                self.state = State::Start { asked: true };
                Step::Challenge(Vec::new())
            }
            State::Start { .. } => match parse(input) {
                Some((authzid, username, password)) => {
                    self.state = State::Lookup {
                        authzid,
                        username: username.clone(),
                        password,
                    };
                    Step::Lookup { username }
                }
                None => Step::Failure(SaslFailure::MalformedRequest),
            },
            State::Lookup { .. } | State::Done => Step::Failure(SaslFailure::MalformedRequest),
        }
    }

    pub(crate) fn credentials(&mut self, stored: Option<StoredCredentials>) -> Step {
        self.checked = true;
        let State::Lookup {
            authzid,
            username,
            password,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Step::Failure(SaslFailure::MalformedRequest);
        };
        match stored {
            Some(c) if c.verify_plain(&password) => Step::Success {
                username,
                authzid,
                additional: None,
            },
            Some(_) => Step::Failure(SaslFailure::NotAuthorized),
            None => {
                // Spend the same key derivation as for a real account, so the
                // answer's timing does not tell that the account is missing.
                let fake = StoredCredentials {
                    sha1: self.decoy.credentials(ScramHash::Sha1, &username),
                    sha256: self.decoy.credentials(ScramHash::Sha256, &username),
                };
                let _ = fake.verify_plain(&password);
                Step::Failure(SaslFailure::NotAuthorized)
            }
        }
    }
}

/// `(authzid, authcid, passwd)`, or `None` if malformed: not UTF-8, not
/// exactly three NUL-separated fields, an empty authcid or password, or a
/// field over [`MAX_FIELD_LEN`].
fn parse(input: &[u8]) -> Option<(Option<String>, String, String)> {
    if input.len() > MAX_MESSAGE_LEN {
        return None;
    }
    let msg = std::str::from_utf8(input).ok()?;
    let mut fields = msg.split('\0');
    let authzid = fields.next()?;
    let authcid = fields.next()?;
    let passwd = fields.next()?;
    if fields.next().is_some()
        || authcid.is_empty()
        || passwd.is_empty()
        || [authzid, authcid, passwd]
            .iter()
            .any(|f| f.len() > MAX_FIELD_LEN)
    {
        return None;
    }
    let authzid = (!authzid.is_empty()).then(|| authzid.to_owned());
    Some((authzid, authcid.to_owned(), passwd.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::super::{Decoy, Mechanism, ServerSession};
    use super::*;

    fn creds(password: &str) -> StoredCredentials {
        StoredCredentials::new(password, 2).expect("credentials")
    }

    fn cheap_decoy() -> Decoy {
        Decoy::new([42; 32], 2)
    }

    #[test]
    fn plain_good_and_bad() {
        let run = |msg: &[u8], stored: Option<StoredCredentials>| {
            let mut s =
                ServerSession::new(Mechanism::Plain, Vec::new(), false).with_decoy(cheap_decoy());
            match s.step(msg) {
                Step::Lookup { username } => {
                    assert_eq!(username, "juliet");
                    s.credentials(stored)
                }
                other => other,
            }
        };
        let ok = Step::Success {
            username: "juliet".into(),
            authzid: None,
            additional: None,
        };
        assert_eq!(run(b"\0juliet\0r0m30", Some(creds("r0m30"))), ok);
        assert_eq!(
            run(b"juliet@example.com\0juliet\0r0m30", Some(creds("r0m30"))),
            Step::Success {
                username: "juliet".into(),
                authzid: Some("juliet@example.com".into()),
                additional: None,
            }
        );
        let not_authorized = Step::Failure(SaslFailure::NotAuthorized);
        assert_eq!(
            run(b"\0juliet\0wrong", Some(creds("r0m30"))),
            not_authorized
        );
        assert_eq!(run(b"\0juliet\0r0m30", None), not_authorized);
        assert_eq!(run(b"\0juliet\0\x07", Some(creds("r0m30"))), not_authorized);
        let malformed = Step::Failure(SaslFailure::MalformedRequest);
        for bad in [
            &b"juliet"[..],
            b"\0juliet",
            b"\0\0r0m30",
            b"\0juliet\0",
            b"\0juliet\0r0m30\0",
            b"\0juliet\0\xff",
        ] {
            assert_eq!(
                run(bad, Some(creds("r0m30"))),
                malformed,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long = b"\0juliet\0".to_vec();
        long.resize(2000, b'x');
        assert_eq!(run(&long, Some(creds("r0m30"))), malformed);
    }
}
