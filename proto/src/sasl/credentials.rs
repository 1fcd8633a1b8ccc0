//! What the server stores for an account: SCRAM salted keys for each hash,
//! never the password (RFC 5802 §3: StoredKey and ServerKey).

/// The SCRAM verifier for one hash function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub iterations: u32,
    pub salt: Vec<u8>,
    /// H(ClientKey)
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key")
    pub server_key: Vec<u8>,
}

/// An account's credentials: one verifier per supported hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    pub sha1: ScramCredentials,
    pub sha256: ScramCredentials,
}
