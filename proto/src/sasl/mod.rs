//! SASL for the server side (RFC 6120 §6): SCRAM-SHA-1 and SCRAM-SHA-256
//! (RFC 5802, RFC 7677) with their -PLUS variants bound to `tls-exporter`
//! (RFC 9266) or `tls-server-end-point` (RFC 5929), the XEP-0474 downgrade
//! hash, and PLAIN (RFC 4616). Sans-IO: the edge feeds client
//! messages in ([`ServerSession::step`]) and gets a challenge, a credential
//! lookup ([`Step::Lookup`], answered with [`ServerSession::credentials`]) or
//! a verdict out. Base64 and the XML around the messages (RFC 6120 §6.4)
//! belong to the caller, as does the choice of which mechanisms to offer
//! and the XEP-0440 advertisement of the channel-binding types.
//!
//! Also here: the stored verifiers and their encoding ([`credentials`]) and
//! a SCRAM client ([`client`]) for tests and the load harness.
//!
//! This module depends on nothing outside `proto` but hash crates and PRECIS.

pub mod client;
pub mod credentials;
mod crypto;
mod decoy;
mod message;
mod plain;
mod scram;

#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod tests;

pub use credentials::{DEFAULT_ITERATIONS, ScramCredentials, StoredCredentials};
pub use crypto::ScramHash;
pub use decoy::Decoy;

use plain::PlainServer;
use scram::ScramServer;

/// The mechanisms we implement, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    /// Every mechanism, strongest first.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The registered SASL name, as sent in `<mechanism/>`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism of a registered name. Names are matched exactly: SASL
    /// mechanism names are upper case (RFC 4422 §3.1).
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether this is a channel-binding (-PLUS) variant (RFC 5802 §4).
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus)
    }

    /// The hash of a SCRAM mechanism; `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha256Plus | Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            Mechanism::ScramSha1Plus | Mechanism::ScramSha1 => Some(ScramHash::Sha1),
            Mechanism::Plain => None,
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A channel binding of the connection (RFC 5056): its type name, as in
/// the `p=` flag of the GS2 header, and its data. For TLS 1.3 one is
/// `tls-exporter` (RFC 9266 §2): 32 bytes exported with the label
/// "EXPORTER-Channel-Binding" and an empty context; on any TLS version
/// another is `tls-server-end-point` (RFC 5929 §4): the hash of the
/// server's certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelBinding {
    pub kind: &'static str,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBinding")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge (raw bytes; the caller base64-encodes).
    Challenge(Vec<u8>),
    /// Look up this username (decoded from the SCRAM saslname or the PLAIN
    /// authcid, not yet normalised: the caller normalises it as a JID
    /// localpart), then call [`ServerSession::credentials`].
    Lookup { username: String },
    /// Authenticated. `authzid` as the client gave it (the caller checks that
    /// it is absent or the user's bare JID, RFC 6120 §6.4.6). `additional`:
    /// the server-final-message to send in `<success/>` (SCRAM) or `None`
    /// (PLAIN).
    Success {
        username: String,
        authzid: Option<String>,
        additional: Option<Vec<u8>>,
    },
    /// The exchange failed; send `<failure/>` with this condition.
    Failure(SaslFailure),
    /// The client asked to bind to a channel-binding type this server did
    /// not offer (RFC 5802 §6: the exchange fails). Not a wrong password:
    /// typically an older client that knows only `tls-unique`, which TLS
    /// 1.3 does not define and rustls does not expose. The caller sends a
    /// `<failure/>` (`not-authorized`) and lets the client try again.
    BindingNotOffered { requested: String },
}

/// The channel-binding type names this module knows.
pub const TLS_EXPORTER: &str = "tls-exporter";
pub const TLS_SERVER_END_POINT: &str = "tls-server-end-point";

/// XEP-0474 §4.1: the advertised mechanism names, sorted by octet and
/// joined with U+001E, then, if channel-binding types were advertised
/// (XEP-0440), U+001F and the types sorted and joined the same way. Its
/// hash goes into server-first as `h`, so a client that implements
/// XEP-0474 detects a list stripped on the way.
pub fn downgrade_string(mechanisms: &[&str], cb_types: Option<&[&str]>) -> String {
    let joined = |items: &[&str]| {
        let mut v: Vec<&str> = items.to_vec();
        v.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        v.join("\u{1e}")
    };
    let mut s = joined(mechanisms);
    if let Some(t) = cb_types {
        s.push('\u{1f}');
        s.push_str(&joined(t));
    }
    s
}

/// The SASL error conditions of RFC 6120 §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslFailure {
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
}

impl SaslFailure {
    /// The element name of the condition inside `<failure/>`.
    pub fn condition(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// Errors outside the exchange itself: deriving and decoding credentials,
/// and the client side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("password is not a valid PRECIS OpaqueString")]
    InvalidPassword,
    #[error("iteration count must be at least 1")]
    InvalidIterations,
    #[error("salt must not be empty")]
    InvalidSalt,
    #[error("corrupt stored credentials: {0}")]
    CorruptCredentials(&'static str),
    #[error("{0} is not a SCRAM mechanism")]
    NotScram(&'static str),
    #[error("{0} needs channel binding data")]
    ChannelBindingRequired(&'static str),
    #[error("invalid client nonce")]
    InvalidNonce,
    #[error("malformed server message: {0}")]
    MalformedServerMessage(&'static str),
    #[error("server nonce does not extend the client nonce")]
    NonceMismatch,
    #[error("server signature does not match")]
    ServerSignatureMismatch,
    #[error("server error: {0}")]
    ServerError(String),
    #[error("called out of order")]
    OutOfOrder,
}

/// One authentication exchange on the server side.
pub struct ServerSession {
    inner: Inner,
}

enum Inner {
    Scram(Box<ScramServer>),
    Plain(PlainServer),
}

impl ServerSession {
    /// `cb`: the channel bindings of this connection, one per type offered
    /// (none without TLS). `refuse_y`: whether a client's 'y' flag ("I can
    /// bind but you offer no -PLUS") is taken as a downgrade attack (RFC
    /// 5802 §6): the caller says so when it advertised -PLUS and the client
    /// has not shown on this stream that it saw the offer.
    pub fn new(mech: Mechanism, cb: Vec<ChannelBinding>, refuse_y: bool) -> ServerSession {
        let inner = match mech.scram_hash() {
            Some(hash) => Inner::Scram(Box::new(ScramServer::new(
                hash,
                mech.is_plus(),
                cb,
                refuse_y,
            ))),
            None => Inner::Plain(PlainServer::new()),
        };
        ServerSession { inner }
    }

    /// Replaces the per-process [`Decoy`] used for unknown accounts, e.g.
    /// with one whose secret is shared by every node of a cluster and
    /// survives restarts, and whose iteration count matches the accounts'.
    pub fn with_decoy(mut self, decoy: Decoy) -> ServerSession {
        match &mut self.inner {
            Inner::Scram(s) => s.set_decoy(decoy),
            Inner::Plain(p) => p.set_decoy(decoy),
        }
        self
    }

    /// XEP-0474: put the hash of [`downgrade_string`] of what was
    /// advertised into server-first (SCRAM only).
    pub fn with_downgrade_hash(mut self, s: String) -> ServerSession {
        if let Inner::Scram(sc) = &mut self.inner {
            sc.set_downgrade_hash(s);
        }
        self
    }

    /// Feed the client's message (already base64-decoded; for `<auth/>` the
    /// initial response, possibly empty, in which case an empty challenge
    /// asks for it, RFC 6120 §6.4.2).
    pub fn step(&mut self, input: &[u8]) -> Step {
        match &mut self.inner {
            Inner::Scram(s) => s.step(input),
            Inner::Plain(p) => p.step(input),
        }
    }

    /// Answer a [`Step::Lookup`]: the stored credentials of that username, or
    /// `None` if there is no such account.
    pub fn credentials(&mut self, creds: Option<StoredCredentials>) -> Step {
        match &mut self.inner {
            Inner::Scram(s) => s.credentials(creds),
            Inner::Plain(p) => p.credentials(creds),
        }
    }

    /// Whether the exchange got as far as checking the credentials: a
    /// failure then means a wrong name or password, which login throttling
    /// counts; before that (a refused channel binding or downgrade, a
    /// malformed message) it was a protocol matter.
    pub fn checked_credentials(&self) -> bool {
        match &self.inner {
            Inner::Scram(s) => s.checked(),
            Inner::Plain(p) => p.checked(),
        }
    }

    /// The client sent `<abort/>` (RFC 6120 §6.4.4): the exchange ends.
    pub fn abort(&mut self) -> Step {
        match &mut self.inner {
            Inner::Scram(s) => s.abort(),
            Inner::Plain(p) => p.abort(),
        }
        Step::Failure(SaslFailure::Aborted)
    }

    /// Fixes the server nonce part, to replay the RFC test vectors.
    #[cfg(test)]
    pub(crate) fn with_server_nonce(mut self, nonce: &str) -> ServerSession {
        if let Inner::Scram(s) = &mut self.inner {
            s.set_server_nonce(nonce);
        }
        self
    }
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::Scram(_) => "scram",
            Inner::Plain(_) => "plain",
        };
        f.debug_struct("ServerSession")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// SCRAM and PLAIN messages are small; anything bigger is refused before
/// parsing.
pub(crate) const MAX_MESSAGE_LEN: usize = 8 * 1024;
