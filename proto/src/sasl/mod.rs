//! SASL for the server side (RFC 6120 §6): SCRAM-SHA-1 and SCRAM-SHA-256
//! (RFC 5802, RFC 7677) with their -PLUS variants bound to `tls-exporter`
//! (RFC 9266), and PLAIN (RFC 4616). Sans-IO: the edge feeds client
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

/// The channel binding of the connection (RFC 5056): its type name, as in
/// the `p=` flag of the GS2 header, and its data. For TLS 1.3 that is
/// `tls-exporter` (RFC 9266 §2): 32 bytes exported with the label
/// "EXPORTER-Channel-Binding" and an empty context.
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
    /// `cb`: the channel binding of this connection if TLS 1.3 (`None`
    /// without TLS or when unusable). `plus_offered`: whether the server
    /// advertised any -PLUS mechanism on this stream (for the 'y' downgrade
    /// check of RFC 5802 §6).
    pub fn new(mech: Mechanism, cb: Option<ChannelBinding>, plus_offered: bool) -> ServerSession {
        let inner = match mech.scram_hash() {
            Some(hash) => Inner::Scram(Box::new(ScramServer::new(
                hash,
                mech.is_plus(),
                cb,
                plus_offered,
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
