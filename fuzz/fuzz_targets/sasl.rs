//! A whole SASL exchange driven by arbitrary client messages, for every
//! mechanism: it must never panic and must never succeed without the
//! password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::sasl::{ChannelBinding, Mechanism, ServerSession, Step, StoredCredentials};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let mechs = [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus, Mechanism::ScramSha256, Mechanism::ScramSha1, Mechanism::Plain];
    let mech = mechs[usize::from(sel) % mechs.len()];
    let cb = (sel & 0x80 != 0).then(|| ChannelBinding { kind: "tls-exporter", data: vec![1u8; 32] });
    let creds = StoredCredentials::new("pencil", 64).ok();
    let mut s = ServerSession::new(mech, cb, sel & 0x40 != 0);
    for msg in rest.split(|b| *b == 0xff).take(4) {
        let mut step = s.step(msg);
        if let Step::Lookup { .. } = step {
            step = s.credentials(creds.clone());
        }
        match step {
            Step::Success { .. } => {
                // Only PLAIN carrying the password itself may succeed.
                assert!(mech == Mechanism::Plain && msg.windows(6).any(|w| w == b"pencil"), "authenticated without the password");
                return;
            }
            Step::Failure(_) => return,
            _ => {}
        }
    }
});
