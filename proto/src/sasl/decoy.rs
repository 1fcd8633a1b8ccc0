//! Made-up credentials for accounts that do not exist, so that a SCRAM
//! exchange for an unknown user looks like one for a real user with a wrong
//! password (RFC 5802 §9 recommends not revealing whether a user exists).
//!
//! The salt must be stable for a given username, as a real account's is:
//! it is an HMAC of the normalised username under a secret. The default
//! secret is drawn once per process; a cluster should pass one secret to
//! every node ([`crate::sasl::ServerSession::with_decoy`]), or the salts
//! differ between nodes and across restarts, which a patient prober can
//! notice.

use std::sync::OnceLock;

use super::credentials::{DEFAULT_ITERATIONS, SALT_LEN, ScramCredentials};
use super::crypto::ScramHash;

/// The secret and iteration count behind made-up credentials.
#[derive(Clone)]
pub struct Decoy {
    secret: [u8; 32],
    iterations: u32,
}

impl Decoy {
    /// A decoy with a chosen secret; `iterations` should be what real
    /// accounts use (zero is taken as one).
    pub fn new(secret: [u8; 32], iterations: u32) -> Decoy {
        Decoy {
            secret,
            iterations: iterations.max(1),
        }
    }

    /// The default: a random secret drawn once per process, shared by every
    /// session of it (it holds no state, only immutable random bytes), and
    /// [`DEFAULT_ITERATIONS`].
    pub fn process_default() -> Decoy {
        static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
        Decoy::new(*SECRET.get_or_init(rand::random), DEFAULT_ITERATIONS)
    }

    /// Credentials for `username` that no password matches: a deterministic
    /// salt and random keys.
    pub(crate) fn credentials(&self, hash: ScramHash, username: &str) -> ScramCredentials {
        // Normalise the way the caller does, so that "User" and "user" get
        // the same salt, as they would for a real account.
        let name = crate::jid::normalize_local(username).unwrap_or_else(|_| username.to_owned());
        let mut msg = Vec::with_capacity(name.len() + 24);
        msg.extend_from_slice(b"xmppd decoy salt\0");
        msg.extend_from_slice(hash.name().as_bytes());
        msg.push(0);
        msg.extend_from_slice(name.as_bytes());
        let mut salt = ScramHash::Sha256.hmac(&self.secret, &msg);
        salt.truncate(SALT_LEN);
        let random_key = || {
            (0..hash.output_len())
                .map(|_| rand::random::<u8>())
                .collect()
        };
        ScramCredentials {
            iterations: self.iterations,
            salt,
            stored_key: random_key(),
            server_key: random_key(),
        }
    }
}

impl std::fmt::Debug for Decoy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoy")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salt_is_stable_per_normalised_user_and_hash() {
        let d = Decoy::new([7; 32], 4096);
        let a = d.credentials(ScramHash::Sha256, "nobody");
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_eq!(a.salt, d.credentials(ScramHash::Sha256, "nobody").salt);
        assert_eq!(a.salt, d.credentials(ScramHash::Sha256, "NoBody").salt);
        assert_ne!(a.salt, d.credentials(ScramHash::Sha1, "nobody").salt);
        assert_ne!(a.salt, d.credentials(ScramHash::Sha256, "somebody").salt);
        assert_ne!(
            a.salt,
            Decoy::new([8; 32], 4096)
                .credentials(ScramHash::Sha256, "nobody")
                .salt
        );
        assert!(a.is_valid_for(ScramHash::Sha256));
    }
}
