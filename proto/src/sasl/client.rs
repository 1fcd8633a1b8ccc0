//! A SCRAM client (RFC 5802 §5, RFC 7677, RFC 9266 for `tls-exporter`), for
//! integration tests and the load harness. Sans-IO like the server: it makes
//! client-first and client-final and checks server-final; the caller does
//! the base64 and the XML.
//!
//! ```
//! use proto::sasl::{ServerSession, Mechanism, Step, StoredCredentials};
//! use proto::sasl::client::ScramClient;
//!
//! let mut client = ScramClient::new(Mechanism::ScramSha256, "juliet", "r0m30", None)?;
//! let mut server = ServerSession::new(Mechanism::ScramSha256, Vec::new(), false);
//! assert!(matches!(server.step(&client.first()), Step::Lookup { .. }));
//! let Step::Challenge(server_first) = server.credentials(Some(StoredCredentials::new("r0m30", 64)?))
//! else { panic!() };
//! let Step::Success { additional: Some(server_final), .. } = server.step(&client.finish(&server_first)?)
//! else { panic!() };
//! client.verify(&server_final)?;
//! # Ok::<(), proto::sasl::SaslError>(())
//! ```

use super::credentials::prepare_password;
use super::crypto::{ScramHash, ct_eq, xor};
use super::message::{
    attr, b64_decode, b64_encode, encode_saslname, is_attr_val, is_nonce, random_nonce,
};
use super::{Mechanism, SaslError};

/// The channel-binding type the client binds to unless told otherwise.
const CB_TYPE: &str = super::TLS_EXPORTER;

/// Random bytes in the client's nonce.
const CLIENT_NONCE_BYTES: usize = 24;

/// The most iterations the client will compute, so that a hostile server
/// cannot make a load test spin.
pub const MAX_CLIENT_ITERATIONS: u32 = 1 << 20;

/// One SCRAM exchange on the client side.
pub struct ScramClient {
    mech: Mechanism,
    hash: ScramHash,
    username: String,
    authzid: Option<String>,
    /// The OpaqueString-prepared password.
    password: String,
    cb: Option<Vec<u8>>,
    cb_type: String,
    nonce: String,
    /// Set by [`ScramClient::finish`]: the ServerSignature to expect.
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// A client for `mech` (a SCRAM mechanism). `cb` is the connection's
    /// `tls-exporter` data: required for a -PLUS mechanism; with a plain
    /// SCRAM mechanism its presence makes the GS2 flag 'y' ("I could bind
    /// but you did not offer it"), its absence 'n'.
    pub fn new(
        mech: Mechanism,
        username: &str,
        password: &str,
        cb: Option<Vec<u8>>,
    ) -> Result<ScramClient, SaslError> {
        let hash = mech.scram_hash().ok_or(SaslError::NotScram(mech.name()))?;
        if mech.is_plus() && cb.is_none() {
            return Err(SaslError::ChannelBindingRequired(mech.name()));
        }
        Ok(ScramClient {
            mech,
            hash,
            username: username.to_owned(),
            authzid: None,
            password: prepare_password(password)?,
            cb,
            cb_type: CB_TYPE.to_owned(),
            nonce: random_nonce(CLIENT_NONCE_BYTES),
            server_signature: None,
        })
    }

    /// Binds to channel-binding type `kind` (its data is `cb`) instead of
    /// `tls-exporter`, e.g. `tls-server-end-point`, or `tls-unique` as older
    /// clients do.
    pub fn with_binding_type(mut self, kind: &str) -> ScramClient {
        self.cb_type = kind.to_owned();
        self
    }

    /// Asks to act as `authzid` (sent as "a=" in the GS2 header).
    pub fn with_authzid(mut self, authzid: &str) -> ScramClient {
        self.authzid = Some(authzid.to_owned());
        self
    }

    /// Uses a fixed client nonce instead of a random one, to reproduce a
    /// recorded exchange such as the RFC examples.
    pub fn with_nonce(mut self, nonce: &str) -> Result<ScramClient, SaslError> {
        if !is_nonce(nonce) {
            return Err(SaslError::InvalidNonce);
        }
        self.nonce = nonce.to_owned();
        Ok(self)
    }

    /// The GS2 header: channel-binding flag and authzid (RFC 5802 §7).
    fn gs2_header(&self) -> String {
        let flag = match (self.mech.is_plus(), &self.cb) {
            (true, _) => format!("p={}", self.cb_type),
            (false, Some(_)) => "y".to_owned(),
            (false, None) => "n".to_owned(),
        };
        let authzid = self
            .authzid
            .as_deref()
            .map(|a| format!("a={}", encode_saslname(a)))
            .unwrap_or_default();
        format!("{flag},{authzid},")
    }

    fn first_bare(&self) -> String {
        format!("n={},r={}", encode_saslname(&self.username), self.nonce)
    }

    /// client-first-message: the initial response of `<auth/>`.
    pub fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header(), self.first_bare()).into_bytes()
    }

    /// Reads server-first-message and returns client-final-message with the
    /// proof; remembers the ServerSignature for [`ScramClient::verify`].
    pub fn finish(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        use SaslError::MalformedServerMessage as Bad;
        let msg = std::str::from_utf8(server_first).map_err(|_| Bad("not UTF-8"))?;
        if let Some(e) = attr(msg, 'e') {
            return Err(SaslError::ServerError(e.to_owned()));
        }
        let mut parts = msg.split(',');
        let nonce = parts.next().and_then(|p| attr(p, 'r'));
        let nonce = nonce.ok_or(Bad("no nonce (or a mandatory extension)"))?;
        if !is_nonce(nonce) {
            return Err(Bad("invalid nonce"));
        }
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(SaslError::NonceMismatch);
        }
        let salt = parts.next().and_then(|p| attr(p, 's')).and_then(b64_decode);
        let salt = salt.filter(|s| !s.is_empty()).ok_or(Bad("invalid salt"))?;
        let iterations = parts.next().and_then(|p| attr(p, 'i'));
        let iterations = iterations
            .and_then(|i| i.parse::<u32>().ok())
            .filter(|i| (1..=MAX_CLIENT_ITERATIONS).contains(i))
            .ok_or(Bad("invalid iteration count"))?;
        if !parts.all(is_attr_val) {
            return Err(Bad("invalid extension"));
        }

        let hash = self.hash;
        let mut cb_input = self.gs2_header().into_bytes();
        if self.mech.is_plus() {
            cb_input.extend_from_slice(self.cb.as_deref().unwrap_or_default());
        }
        let without_proof = format!("c={},r={nonce}", b64_encode(&cb_input));
        let auth_message = format!("{},{msg},{without_proof}", self.first_bare());

        let salted = hash.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = hash.client_key(&salted);
        let stored_key = hash.hash(&client_key);
        let client_signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_key = hash.server_key(&salted);
        self.server_signature = Some(hash.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", b64_encode(&proof)).into_bytes())
    }

    /// Checks server-final-message (the `<success/>` payload): the server
    /// proves it knew the ServerKey.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), SaslError> {
        use SaslError::MalformedServerMessage as Bad;
        let expected = self
            .server_signature
            .as_deref()
            .ok_or(SaslError::OutOfOrder)?;
        let msg = std::str::from_utf8(server_final).map_err(|_| Bad("not UTF-8"))?;
        let first = msg.split(',').next().unwrap_or_default();
        if let Some(e) = attr(first, 'e') {
            return Err(SaslError::ServerError(e.to_owned()));
        }
        let v = attr(first, 'v').and_then(b64_decode);
        let v = v.ok_or(Bad("no verifier"))?;
        if ct_eq(&v, expected) {
            Ok(())
        } else {
            Err(SaslError::ServerSignatureMismatch)
        }
    }
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("mech", &self.mech)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_plain_and_plus_without_cb() {
        assert!(matches!(
            ScramClient::new(Mechanism::Plain, "u", "p", None),
            Err(SaslError::NotScram("PLAIN"))
        ));
        assert!(matches!(
            ScramClient::new(Mechanism::ScramSha1Plus, "u", "p", None),
            Err(SaslError::ChannelBindingRequired(_))
        ));
        assert!(matches!(
            ScramClient::new(Mechanism::ScramSha1, "u", "", None),
            Err(SaslError::InvalidPassword)
        ));
    }

    #[test]
    fn gs2_flags_and_escaping() {
        let c = ScramClient::new(Mechanism::ScramSha256, "a,b=c", "p", None).expect("client");
        let c = c.with_nonce("abc").expect("nonce").with_authzid("x=y");
        assert_eq!(c.first(), b"n,a=x=3Dy,n=a=2Cb=3Dc,r=abc");
        let c = ScramClient::new(Mechanism::ScramSha1, "u", "p", Some(vec![1])).expect("client");
        assert!(c.first().starts_with(b"y,,n=u,r="));
        let c =
            ScramClient::new(Mechanism::ScramSha1Plus, "u", "p", Some(vec![1])).expect("client");
        assert!(c.first().starts_with(b"p=tls-exporter,,n=u,r="));
        assert!(c.with_nonce("a,b").is_err());
    }

    #[test]
    fn finish_rejects_bad_server_first() {
        let new = || {
            ScramClient::new(Mechanism::ScramSha256, "user", "pencil", None)
                .and_then(|c| c.with_nonce("abc"))
                .expect("client")
        };
        for bad in [
            &b"r=abc,s=QSXCR+Q6sek8bf92,i=4096"[..], // no server part
            b"r=xyzdef,s=QSXCR+Q6sek8bf92,i=4096",   // not our nonce
            b"m=x,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096",
            b"r=abcdef,s=!!,i=4096",
            b"r=abcdef,s=QSXCR+Q6sek8bf92,i=0",
            b"r=abcdef,s=QSXCR+Q6sek8bf92,i=99999999999",
            b"r=abcdef,s=QSXCR+Q6sek8bf92",
            b"e=other-error",
            b"\xff",
        ] {
            assert!(
                new().finish(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(new().verify(b"v=AAAA"), Err(SaslError::OutOfOrder));
    }
}
