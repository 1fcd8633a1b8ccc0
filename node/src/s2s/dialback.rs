//! Server Dialback keys (XEP-0220, generated as XEP-0185 recommends): an
//! HMAC-SHA256 over the receiving server, the originating server and the
//! stream id, keyed by the hex SHA-256 of a secret that every node of this
//! server shares, so that any of them can verify a key another issued.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The secret as XEP-0185 §3 uses it (hex of its SHA-256).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: &[u8]) -> Secret {
        Secret(hex(&Sha256::digest(secret)))
    }

    /// A secret drawn at random (a single node's, for its lifetime).
    pub fn random() -> Secret {
        let bytes: [u8; 32] = rand::random();
        Secret::new(&bytes)
    }

    /// The key for a stream `id` from `originating` to `receiving`.
    pub fn key(&self, receiving: &str, originating: &str, id: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.as_bytes()) else {
            // HMAC takes keys of any length.
            return String::new();
        };
        mac.update(receiving.as_bytes());
        mac.update(b" ");
        mac.update(originating.as_bytes());
        mac.update(b" ");
        mac.update(id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `key` is the key for that stream (in constant time).
    pub fn verify(&self, receiving: &str, originating: &str, id: &str, key: &str) -> bool {
        use subtle::ConstantTimeEq;
        let want = self.key(receiving, originating, id);
        !want.is_empty() && want.as_bytes().ct_eq(key.trim().as_bytes()).into()
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0185_example() {
        // XEP-0185 §3's worked example: secret "s3cr3tf0rd14lb4ck",
        // receiving xmpp.example.com, originating example.org, stream id
        // D60000229F.
        let s = Secret::new(b"s3cr3tf0rd14lb4ck");
        assert_eq!(
            s.0,
            "a7136eb1f46c9ef18c5e78c36ca257067c69b3d518285f0b18a96c33beae9acc"
        );
        let key = s.key("xmpp.example.com", "example.org", "D60000229F");
        assert_eq!(
            key,
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        );
        assert!(s.verify("xmpp.example.com", "example.org", "D60000229F", &key));
        assert!(!s.verify("xmpp.example.com", "example.net", "D60000229F", &key));
        assert!(!s.verify("xmpp.example.com", "example.org", "D60000229E", &key));
        assert!(!s.verify("xmpp.example.com", "example.org", "D60000229F", ""));
    }
}
