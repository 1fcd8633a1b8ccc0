//! What the server stores for an account: SCRAM salted keys for each hash,
//! never the password (RFC 5802 §3: StoredKey and ServerKey), how they are
//! derived from a password prepared with the PRECIS OpaqueString profile
//! (RFC 8265 §4.2, which replaces SASLprep for XMPP), and a compact,
//! versioned binary encoding for storage.

use precis_core::profile::PrecisFastInvocation;
use precis_profiles::OpaqueString;

use super::SaslError;
use super::crypto::{ScramHash, ct_eq};

/// The iteration count for new credentials: the minimum RFC 7677 §4 asks
/// for, and what clients expect to compute quickly on a phone.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Bytes of random salt per hash for new credentials.
pub const SALT_LEN: usize = 16;

/// First byte of the [`StoredCredentials::to_bytes`] encoding.
const FORMAT_V1: u8 = 1;

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

/// Prepares and enforces a password with the PRECIS OpaqueString profile
/// (RFC 8265 §4.2): non-ASCII spaces become U+0020, the result is NFC, and
/// control characters or an empty password are rejected.
pub fn prepare_password(password: &str) -> Result<String, SaslError> {
    <OpaqueString as PrecisFastInvocation>::enforce(password)
        .map(|s| s.into_owned())
        .map_err(|_| SaslError::InvalidPassword)
}

impl ScramCredentials {
    /// Derives the verifier of one hash from a password (RFC 5802 §3):
    /// SaltedPassword = Hi(OpaqueString(password), salt, i), then StoredKey =
    /// H(HMAC(SaltedPassword, "Client Key")) and ServerKey =
    /// HMAC(SaltedPassword, "Server Key").
    pub fn derive(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredentials, SaslError> {
        if iterations == 0 {
            return Err(SaslError::InvalidIterations);
        }
        if salt.is_empty() {
            return Err(SaslError::InvalidSalt);
        }
        let prepared = prepare_password(password)?;
        let salted = hash.salted_password(prepared.as_bytes(), salt, iterations);
        Ok(ScramCredentials::from_salted_password(
            hash, &salted, salt, iterations,
        ))
    }

    /// The verifier for an already computed SaltedPassword.
    pub(crate) fn from_salted_password(
        hash: ScramHash,
        salted: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredentials {
        ScramCredentials {
            iterations,
            salt: salt.to_vec(),
            stored_key: hash.hash(&hash.client_key(salted)),
            server_key: hash.server_key(salted),
        }
    }

    /// Whether the keys have the size of `hash` and the salt and iteration
    /// count are usable.
    pub fn is_valid_for(&self, hash: ScramHash) -> bool {
        self.iterations > 0
            && !self.salt.is_empty()
            && self.stored_key.len() == hash.output_len()
            && self.server_key.len() == hash.output_len()
    }
}

impl StoredCredentials {
    /// Derives both verifiers from a password, each with its own random
    /// [`SALT_LEN`]-byte salt.
    pub fn new(password: &str, iterations: u32) -> Result<StoredCredentials, SaslError> {
        let salt1: [u8; SALT_LEN] = rand::random();
        let salt256: [u8; SALT_LEN] = rand::random();
        Ok(StoredCredentials {
            sha1: ScramCredentials::derive(ScramHash::Sha1, password, &salt1, iterations)?,
            sha256: ScramCredentials::derive(ScramHash::Sha256, password, &salt256, iterations)?,
        })
    }

    /// The verifier for `hash`.
    pub fn for_hash(&self, hash: ScramHash) -> &ScramCredentials {
        match hash {
            ScramHash::Sha1 => &self.sha1,
            ScramHash::Sha256 => &self.sha256,
        }
    }

    /// Checks a cleartext password (SASL PLAIN, RFC 4616) against the
    /// SHA-256 verifier: derives StoredKey with the stored salt and
    /// iteration count and compares it in constant time.
    pub fn verify_plain(&self, password: &str) -> bool {
        let c = &self.sha256;
        if !c.is_valid_for(ScramHash::Sha256) {
            return false;
        }
        match ScramCredentials::derive(ScramHash::Sha256, password, &c.salt, c.iterations) {
            Ok(d) => ct_eq(&d.stored_key, &c.stored_key),
            Err(_) => false,
        }
    }

    /// The storage encoding, version 1:
    ///
    /// ```text
    /// 0x01, then for SHA-1 and then SHA-256:
    ///   iterations  u32 big-endian
    ///   salt        u16 big-endian length, bytes
    ///   stored_key  u8 length, bytes
    ///   server_key  u8 length, bytes
    /// ```
    ///
    /// Fields longer than their length prefix allows are cut at that length;
    /// no credentials made by this module come near it, and keys that long
    /// are invalid anyway, which [`StoredCredentials::from_bytes`] reports.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.push(FORMAT_V1);
        for c in [&self.sha1, &self.sha256] {
            out.extend_from_slice(&c.iterations.to_be_bytes());
            let salt_len = u16::try_from(c.salt.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&salt_len.to_be_bytes());
            out.extend_from_slice(&c.salt[..usize::from(salt_len)]);
            for key in [&c.stored_key, &c.server_key] {
                let len = u8::try_from(key.len()).unwrap_or(u8::MAX);
                out.push(len);
                out.extend_from_slice(&key[..usize::from(len)]);
            }
        }
        out
    }

    /// Decodes [`StoredCredentials::to_bytes`]. Any bad input (unknown
    /// version, truncation, trailing bytes, key sizes that do not match the
    /// hash, an empty salt, zero iterations) is an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<StoredCredentials, SaslError> {
        let mut r = Reader(bytes);
        match r.take(1)? {
            [FORMAT_V1] => {}
            _ => return Err(SaslError::CorruptCredentials("unknown format version")),
        }
        let sha1 = r.scram(ScramHash::Sha1)?;
        let sha256 = r.scram(ScramHash::Sha256)?;
        if !r.0.is_empty() {
            return Err(SaslError::CorruptCredentials("trailing bytes"));
        }
        Ok(StoredCredentials { sha1, sha256 })
    }
}

/// A cursor over the encoded credentials.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SaslError> {
        if self.0.len() < n {
            return Err(SaslError::CorruptCredentials("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SaslError> {
        self.take(N)?
            .try_into()
            .map_err(|_| SaslError::CorruptCredentials("truncated"))
    }

    fn scram(&mut self, hash: ScramHash) -> Result<ScramCredentials, SaslError> {
        let iterations = u32::from_be_bytes(self.array()?);
        let salt_len = u16::from_be_bytes(self.array()?);
        let salt = self.take(usize::from(salt_len))?;
        let [stored_len] = self.array()?;
        let stored_key = self.take(usize::from(stored_len))?;
        let [server_len] = self.array()?;
        let server_key = self.take(usize::from(server_len))?;
        let c = ScramCredentials {
            iterations,
            salt: salt.to_vec(),
            stored_key: stored_key.to_vec(),
            server_key: server_key.to_vec(),
        };
        if !c.is_valid_for(hash) {
            return Err(SaslError::CorruptCredentials("invalid verifier"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredCredentials {
        StoredCredentials::new("pencil", 64).expect("valid password")
    }

    #[test]
    fn new_uses_separate_random_salts() {
        let c = sample();
        assert_eq!(c.sha1.salt.len(), SALT_LEN);
        assert_ne!(c.sha1.salt, c.sha256.salt);
        assert_ne!(sample().sha256.salt, c.sha256.salt);
        assert!(c.sha1.is_valid_for(ScramHash::Sha1));
        assert!(c.sha256.is_valid_for(ScramHash::Sha256));
    }

    #[test]
    fn new_rejects_bad_input() {
        assert_eq!(
            StoredCredentials::new("", 64),
            Err(SaslError::InvalidPassword)
        );
        assert_eq!(
            StoredCredentials::new("a\u{7}b", 64),
            Err(SaslError::InvalidPassword)
        );
        assert_eq!(
            StoredCredentials::new("pencil", 0),
            Err(SaslError::InvalidIterations)
        );
    }

    #[test]
    fn verify_plain_accepts_only_the_password() {
        let c = sample();
        assert!(c.verify_plain("pencil"));
        assert!(!c.verify_plain("pencil "));
        assert!(!c.verify_plain("Pencil"));
        assert!(!c.verify_plain(""));
    }

    #[test]
    fn verify_plain_applies_opaque_string() {
        // U+00A0 NO-BREAK SPACE maps to U+0020; "e" + U+0301 composes to "é".
        let c = StoredCredentials::new("correct horse é", 16).expect("valid password");
        assert!(c.verify_plain("correct\u{a0}horse e\u{301}"));
    }

    #[test]
    fn bytes_roundtrip() {
        let c = sample();
        let b = c.to_bytes();
        assert_eq!(b[0], FORMAT_V1);
        assert_eq!(
            b.len(),
            1 + (4 + 2 + 16 + 1 + 20 + 1 + 20) + (4 + 2 + 16 + 1 + 32 + 1 + 32)
        );
        assert_eq!(StoredCredentials::from_bytes(&b), Ok(c));
    }

    #[test]
    fn bytes_corrupt_input_is_an_error() {
        let b = sample().to_bytes();
        assert!(StoredCredentials::from_bytes(&[]).is_err());
        for n in 0..b.len() {
            assert!(
                StoredCredentials::from_bytes(&b[..n]).is_err(),
                "truncated at {n}"
            );
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(StoredCredentials::from_bytes(&longer).is_err());
        let mut version = b.clone();
        version[0] = 2;
        assert!(StoredCredentials::from_bytes(&version).is_err());
        let mut zero_iter = b.clone();
        zero_iter[1..5].copy_from_slice(&[0, 0, 0, 0]);
        assert!(StoredCredentials::from_bytes(&zero_iter).is_err());
        // Every single-byte change either fails or decodes to other values.
        for i in 0..b.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut m = b.clone();
                m[i] ^= x;
                if let Ok(d) = StoredCredentials::from_bytes(&m) {
                    assert_ne!(d.to_bytes(), b);
                }
            }
        }
    }

    #[test]
    fn bytes_of_invalid_credentials_do_not_decode() {
        let mut c = sample();
        c.sha1.stored_key = vec![7; 300];
        assert!(StoredCredentials::from_bytes(&c.to_bytes()).is_err());
        c = sample();
        c.sha256.salt.clear();
        assert!(StoredCredentials::from_bytes(&c.to_bytes()).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        for n in 0..2000usize {
            let len = n % 200;
            let b: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
            let _ = StoredCredentials::from_bytes(&b);
        }
    }
}
