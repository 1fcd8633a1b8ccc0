//! SCRAM-SHA-256 (RFC 5802, RFC 7677; -PLUS with `tls-exporter`, RFC
//! 9266) for clients that keep each account's SaltedPassword between
//! logins, as RFC 5802 §5.1 allows and phone clients do: a reconnection
//! then costs a few HMACs instead of thousands of hash rounds. On this
//! two-core machine a storm of 10,000 reconnections spent most of its CPU
//! in the harness's PBKDF2; with the keys kept, what is measured is the
//! server. The first login of an account computes them (and keeps them).
//!
//! The hash and HMAC are the TLS library's own (ring, through rustls's
//! provider interface): the harness has no hash crate of its own. Only
//! SHA-256: rustls's suites bring no SHA-1; SCRAM-SHA-1 logins go through
//! `proto`'s client as before.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::crypto::hash::Hash;
use rustls::crypto::tls13::{Hkdf, OkmBlock};

/// SHA-256 and HMAC-SHA256 from the TLS library.
struct Sha256 {
    hash: &'static dyn Hash,
    hkdf: &'static dyn Hkdf,
}

impl Sha256 {
    fn get() -> anyhow::Result<Sha256> {
        let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
            .tls13()
            .context("a TLS 1.3 suite")?;
        Ok(Sha256 {
            hash: suite.common.hash_provider,
            hkdf: suite.hkdf_provider,
        })
    }

    fn hash(&self, data: &[u8]) -> Vec<u8> {
        self.hash.hash(data).as_ref().to_vec()
    }

    /// HMAC with a key of at most 64 bytes (the block size).
    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        self.hkdf
            .hmac_sign(&OkmBlock::new(key), data)
            .as_ref()
            .to_vec()
    }

    /// Hi() of RFC 5802 §2.2: PBKDF2 with HMAC, one block.
    fn salted_password(&self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut first = salt.to_vec();
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &first);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u);
            for (o, x) in out.iter_mut().zip(&u) {
                *o ^= x;
            }
        }
        out
    }
}

/// An account's keys are for one user, salt and iteration count.
type Account = (String, Vec<u8>, u32);

/// The SaltedPassword of each account.
#[derive(Default)]
pub struct Keys {
    salted: Mutex<HashMap<Account, Vec<u8>>>,
}

impl Keys {
    fn get(&self, k: &Account) -> Option<Vec<u8>> {
        self.salted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(k)
            .cloned()
    }

    fn put(&self, k: Account, v: Vec<u8>) {
        self.salted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, v);
    }
}

/// Whether an exchange of `password` can use [`Exchange`]: its prepared
/// form must fit an HMAC key of the library's interface.
pub fn usable(password: &str) -> bool {
    proto::sasl::credentials::prepare_password(password).is_ok_and(|p| p.len() <= 64)
}

/// One SCRAM-SHA-256(-PLUS) exchange.
pub struct Exchange {
    sha: Sha256,
    user: String,
    password: String,
    gs2: String,
    cb: Vec<u8>,
    nonce: String,
    server_signature: Option<Vec<u8>>,
    /// Whether the keys came from the cache (for the tests).
    reused: bool,
}

impl Exchange {
    /// With `plus`, bound to the connection's `tls-exporter` data `cb`;
    /// without, `cb` present makes the flag 'y' (RFC 5802 §6).
    pub fn new(
        user: &str,
        password: &str,
        plus: bool,
        cb: Option<Vec<u8>>,
    ) -> anyhow::Result<Exchange> {
        let password = proto::sasl::credentials::prepare_password(password)
            .map_err(|e| anyhow::anyhow!("password: {e}"))?;
        if password.len() > 64 {
            bail!("a password over 64 bytes");
        }
        let gs2 = match (plus, &cb) {
            (true, Some(_)) => "p=tls-exporter,,",
            (true, None) => bail!("channel binding needs TLS 1.3"),
            (false, Some(_)) => "y,,",
            (false, None) => "n,,",
        };
        let mut raw = [0u8; 18];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut raw)
            .map_err(|_| anyhow::anyhow!("no random bytes"))?;
        Ok(Exchange {
            sha: Sha256::get()?,
            user: user.replace('=', "=3D").replace(',', "=2C"),
            password,
            gs2: gs2.to_string(),
            cb: if plus {
                cb.unwrap_or_default()
            } else {
                Vec::new()
            },
            nonce: B64.encode(raw),
            server_signature: None,
            reused: false,
        })
    }

    fn first_bare(&self) -> String {
        format!("n={},r={}", self.user, self.nonce)
    }

    /// client-first-message.
    pub fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2, self.first_bare()).into_bytes()
    }

    /// client-final-message for `server_first`, with the account's keys
    /// from `keys` (computed and kept there the first time).
    pub fn finish(&mut self, server_first: &[u8], keys: &Keys) -> anyhow::Result<Vec<u8>> {
        let msg = std::str::from_utf8(server_first).context("server-first is not UTF-8")?;
        let attr = |name: char| {
            msg.split(',')
                .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        };
        if let Some(e) = attr('e') {
            bail!("the server says {e}");
        }
        let nonce = attr('r').context("no nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            bail!("the server's nonce does not extend ours");
        }
        let salt = B64
            .decode(attr('s').context("no salt")?)
            .context("the salt")?;
        let iterations: u32 = attr('i')
            .and_then(|i| i.parse().ok())
            .filter(|i| (1..=proto::sasl::client::MAX_CLIENT_ITERATIONS).contains(i))
            .context("the iteration count")?;
        let key = (self.user.clone(), salt, iterations);
        let salted = match keys.get(&key) {
            Some(s) => {
                self.reused = true;
                s
            }
            None => {
                let s = self
                    .sha
                    .salted_password(self.password.as_bytes(), &key.1, iterations);
                keys.put(key, s.clone());
                s
            }
        };
        let mut cb_input = self.gs2.clone().into_bytes();
        cb_input.extend_from_slice(&self.cb);
        let without_proof = format!("c={},r={nonce}", B64.encode(&cb_input));
        let auth = format!("{},{msg},{without_proof}", self.first_bare());
        let client_key = self.sha.hmac(&salted, b"Client Key");
        let stored_key = self.sha.hash(&client_key);
        let signature = self.sha.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.sha.hmac(&salted, b"Server Key");
        self.server_signature = Some(self.sha.hmac(&server_key, auth.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Check server-final (the `<success/>` payload): the server knew the
    /// ServerKey.
    pub fn verify(&self, server_final: &[u8]) -> anyhow::Result<()> {
        let expected = self.server_signature.as_ref().context("out of order")?;
        let msg = std::str::from_utf8(server_final).context("server-final is not UTF-8")?;
        let first = msg.split(',').next().unwrap_or_default();
        if let Some(e) = first.strip_prefix("e=") {
            bail!("the server says {e}");
        }
        let v = first
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .context("no verifier")?;
        if &v != expected {
            bail!("the server's signature does not verify");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::sasl::{ChannelBinding, Mechanism, ServerSession, Step, StoredCredentials};

    /// A whole exchange against the server's own SCRAM; whether the client
    /// reused kept keys.
    fn exchange(
        keys: &Keys,
        password_given: &str,
        stored: &StoredCredentials,
        plus: bool,
    ) -> Result<bool, String> {
        let cb = vec![7u8; 32];
        let (mech, offered) = if plus {
            (
                Mechanism::ScramSha256Plus,
                vec![ChannelBinding {
                    kind: "tls-exporter",
                    data: cb.clone(),
                }],
            )
        } else {
            (Mechanism::ScramSha256, Vec::new())
        };
        let mut c = Exchange::new("ju,li=et", password_given, plus, plus.then_some(cb))
            .map_err(|e| e.to_string())?;
        let mut s = ServerSession::new(mech, offered, false);
        match s.step(&c.first()) {
            Step::Lookup { username } => assert_eq!(username, "ju,li=et"),
            _ => return Err("no lookup".into()),
        }
        let Step::Challenge(first) = s.credentials(Some(stored.clone())) else {
            return Err("no challenge".into());
        };
        let fin = c.finish(&first, keys).map_err(|e| e.to_string())?;
        match s.step(&fin) {
            Step::Success {
                additional: Some(last),
                ..
            } => {
                c.verify(&last).map_err(|e| e.to_string())?;
                Ok(c.reused)
            }
            _ => Err("refused".into()),
        }
    }

    #[test]
    fn the_servers_scram_takes_it_first_and_with_kept_keys() {
        let stored = StoredCredentials::new("r0m30 ünd", 4096).expect("credentials");
        let keys = Keys::default();
        for plus in [false, true] {
            let first = exchange(&keys, "r0m30 ünd", &stored, plus);
            let again = exchange(&keys, "r0m30 ünd", &stored, plus);
            // The keys are the same with or without channel binding.
            assert_eq!(first, Ok(plus), "plus {plus}: only the very first computes");
            assert_eq!(again, Ok(true), "plus {plus}: then reuses");
        }
        // A wrong password is refused, kept keys or not.
        assert!(exchange(&Keys::default(), "wrong", &stored, false).is_err());
    }

    #[test]
    fn hi_matches_rfc_7677s_example() {
        // RFC 7677 §3: user "user", password "pencil", 4096 rounds.
        let sha = Sha256::get().expect("sha");
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let salted = sha.salted_password(b"pencil", &salt, 4096);
        let client_key = sha.hmac(&salted, b"Client Key");
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = sha.hmac(&sha.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_key = sha.hmac(&salted, b"Server Key");
        assert_eq!(
            B64.encode(sha.hmac(&server_key, auth.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
