//! Random and mutated client messages for every mechanism: the server
//! never panics, and a changed SCRAM final message never succeeds.

use super::tests::{cb, challenge, cheap_decoy, client, creds};
use super::*;

/// A tiny deterministic generator, so that a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Random bytes, or `base` with a few bytes flipped, cut or inserted.
    fn mutate(&mut self, base: &[u8]) -> Vec<u8> {
        const ALPHABET: &[u8] = b",=\0nyprcsmaiv2CD3+/\xff\xc3";
        if self.below(4) == 0 {
            let len = self.below(64);
            return (0..len).map(|_| self.next() as u8).collect();
        }
        let mut out = base.to_vec();
        for _ in 0..=self.below(3) {
            let at = self.below(out.len() + 1);
            match self.below(4) {
                0 => out.truncate(at),
                1 if at < out.len() => out[at] = self.next() as u8,
                2 => out.insert(at, ALPHABET[self.below(ALPHABET.len())]),
                _ if at < out.len() => {
                    out.remove(at);
                }
                _ => {}
            }
        }
        out
    }
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let stored = creds("pw");
    for mech in Mechanism::ALL {
        let cb_data = [5u8; 32];
        let mut c = client(
            client_mech(mech),
            "user",
            "pw",
            mech.is_plus().then_some(&cb_data[..]),
        );
        let first = if mech == Mechanism::Plain {
            b"authz\0user\0pw".to_vec()
        } else {
            c.first()
        };
        // A valid final message to mutate, from one honest exchange.
        let final_msg = if mech == Mechanism::Plain {
            Vec::new()
        } else {
            let mut s = ServerSession::new(mech, cb(&cb_data), true).with_server_nonce("SRV");
            assert!(matches!(s.step(&first), Step::Lookup { .. }), "{mech}");
            let f = c
                .finish(&challenge(s.credentials(Some(stored.clone()))))
                .expect("final");
            assert!(matches!(s.step(&f), Step::Success { .. }), "{mech}");
            f
        };
        for i in 0..1500 {
            let new =
                || ServerSession::new(mech, cb(&cb_data), i % 2 == 0).with_decoy(cheap_decoy());
            // Mutated first message, then whatever comes next.
            let mut s = new();
            if let Step::Lookup { .. } = s.step(&rng.mutate(&first)) {
                let known = (i % 3 != 0).then(|| stored.clone());
                if let Step::Challenge(_) = s.credentials(known) {
                    let _ = s.step(&rng.mutate(&final_msg));
                }
            }
            // Valid first message, mutated final message.
            if mech != Mechanism::Plain {
                let mut s = new().with_server_nonce("SRV");
                assert!(matches!(s.step(&first), Step::Lookup { .. }));
                challenge(s.credentials(Some(stored.clone())));
                let m = rng.mutate(&final_msg);
                let verdict = s.step(&m);
                if m != final_msg {
                    assert!(!matches!(verdict, Step::Success { .. }), "{mech}: {m:?}");
                }
            }
        }
    }
}

/// The mechanism to build a client for: PLAIN has none, any SCRAM will do.
fn client_mech(m: Mechanism) -> Mechanism {
    if m == Mechanism::Plain {
        Mechanism::ScramSha256
    } else {
        m
    }
}
