//! The server side of SCRAM (RFC 5802 §5, §7; RFC 7677 for SHA-256) with
//! `tls-exporter` channel binding for the -PLUS variants (RFC 9266 §3):
//!
//! 1. client-first-message: GS2 header and username → [`Step::Lookup`];
//! 2. stored credentials → server-first-message (combined nonce, salt,
//!    iteration count) as a challenge;
//! 3. client-final-message: channel binding, nonce and proof checked →
//!    [`Step::Success`] carrying the server-final-message ("v=").
//!
//! An unknown user gets a [`Decoy`] salt and fails only at the proof.
//!
//! The server may bind to several channel-binding types at once (RFC 5929
//! `tls-server-end-point`, RFC 9266 `tls-exporter`): the client names one
//! with `p=`. A type the server does not have ends the exchange with
//! [`Step::BindingNotOffered`], which the caller tells apart from a wrong
//! password. With [`ScramServer::set_downgrade_hash`] the server-first
//! message carries the XEP-0474 `h` attribute.

use super::crypto::{ScramHash, ct_eq, xor};
use super::decoy::Decoy;
use super::message::{
    attr, b64_decode, b64_encode, decode_saslname, is_attr_val, is_cb_name, is_nonce, random_nonce,
};
use super::{
    ChannelBinding, MAX_MESSAGE_LEN, SaslFailure, ScramCredentials, Step, StoredCredentials,
};

/// Random bytes in the server's part of the nonce.
const SERVER_NONCE_BYTES: usize = 24;

/// The channel-binding flag of the GS2 header (RFC 5802 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
enum CbFlag {
    /// 'n': the client does not support channel binding.
    None,
    /// 'y': the client supports it but thinks the server does not.
    Unused,
    /// 'p=<type>': the client binds to our channel with this data.
    Bound(Vec<u8>),
}

/// Why client-first-message ends the exchange.
enum Refusal {
    Failure(SaslFailure),
    /// 'p=' names a channel-binding type this server does not have.
    Binding(String),
}

impl From<SaslFailure> for Refusal {
    fn from(f: SaslFailure) -> Refusal {
        Refusal::Failure(f)
    }
}

/// What the client-first-message told us.
#[derive(Debug)]
struct ClientFirst {
    /// The GS2 header exactly as sent, up to and including the second ','.
    gs2_header: String,
    cb_flag: CbFlag,
    authzid: Option<String>,
    username: String,
    /// client-first-message-bare, part of AuthMessage.
    bare: String,
    client_nonce: String,
}

enum State {
    /// Waiting for client-first; `asked` once an empty challenge went out.
    Start {
        asked: bool,
    },
    /// Waiting for [`ScramServer::credentials`].
    Lookup(ClientFirst),
    /// Waiting for client-final.
    Final {
        first: ClientFirst,
        server_first: String,
        nonce: String,
        creds: ScramCredentials,
        /// Made-up credentials: the proof can never be right.
        decoy: bool,
    },
    Done,
}

pub(crate) struct ScramServer {
    hash: ScramHash,
    plus: bool,
    cb: Vec<ChannelBinding>,
    refuse_y: bool,
    /// XEP-0474: the string whose hash goes into server-first as `h`.
    downgrade: Option<String>,
    decoy: Decoy,
    server_nonce: Option<String>,
    state: State,
    /// The proof was checked: a failure was a wrong name or password.
    checked: bool,
}

impl ScramServer {
    pub(crate) fn new(
        hash: ScramHash,
        plus: bool,
        cb: Vec<ChannelBinding>,
        refuse_y: bool,
    ) -> ScramServer {
        ScramServer {
            hash,
            plus,
            cb,
            refuse_y,
            downgrade: None,
            decoy: Decoy::process_default(),
            server_nonce: None,
            checked: false,
            state: State::Start { asked: false },
        }
    }

    pub(crate) fn set_decoy(&mut self, decoy: Decoy) {
        self.decoy = decoy;
    }

    pub(crate) fn checked(&self) -> bool {
        self.checked
    }

    /// XEP-0474 §4.1: `s` is the advertised mechanisms and channel-binding
    /// types, joined as that section says ([`super::downgrade_string`]).
    pub(crate) fn set_downgrade_hash(&mut self, s: String) {
        self.downgrade = Some(s);
    }

    #[cfg(test)]
    pub(crate) fn set_server_nonce(&mut self, nonce: &str) {
        self.server_nonce = Some(nonce.to_owned());
    }

    pub(crate) fn abort(&mut self) {
        self.state = State::Done;
    }

    pub(crate) fn step(&mut self, input: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start { asked: false } if input.is_empty() => {
                self.state = State::Start { asked: true };
                Step::Challenge(Vec::new())
            }
            State::Start { .. } => match self.client_first(input) {
                Ok(first) => {
                    let username = first.username.clone();
                    self.state = State::Lookup(first);
                    Step::Lookup { username }
                }
                Err(Refusal::Failure(f)) => Step::Failure(f),
                Err(Refusal::Binding(requested)) => Step::BindingNotOffered { requested },
            },
            State::Final {
                first,
                server_first,
                nonce,
                creds,
                decoy,
            } => {
                let (step, checked) =
                    self.client_final(input, first, &server_first, &nonce, &creds, decoy);
                self.checked = checked;
                step
            }
            State::Lookup(_) | State::Done => Step::Failure(SaslFailure::MalformedRequest),
        }
    }

    pub(crate) fn credentials(&mut self, stored: Option<StoredCredentials>) -> Step {
        let State::Lookup(first) = std::mem::replace(&mut self.state, State::Done) else {
            return Step::Failure(SaslFailure::MalformedRequest);
        };
        let (creds, decoy) = match stored {
            Some(s) => {
                let c = s.for_hash(self.hash).clone();
                if !c.is_valid_for(self.hash) {
                    // Damaged record: a server problem, not the client's.
                    return Step::Failure(SaslFailure::TemporaryAuthFailure);
                }
                (c, false)
            }
            None => (self.decoy.credentials(self.hash, &first.username), true),
        };
        let server_part = self
            .server_nonce
            .clone()
            .unwrap_or_else(|| random_nonce(SERVER_NONCE_BYTES));
        let nonce = format!("{}{}", first.client_nonce, server_part);
        let mut server_first = format!(
            "r={nonce},s={},i={}",
            b64_encode(&creds.salt),
            creds.iterations
        );
        if let Some(s) = &self.downgrade {
            server_first.push_str(",h=");
            server_first.push_str(&b64_encode(&self.hash.hash(s.as_bytes())));
        }
        let challenge = server_first.clone().into_bytes();
        self.state = State::Final {
            first,
            server_first,
            nonce,
            creds,
            decoy,
        };
        Step::Challenge(challenge)
    }

    /// Parses client-first-message (RFC 5802 §7) and applies the
    /// channel-binding rules of §6 and RFC 9266 §3.
    fn client_first(&self, input: &[u8]) -> Result<ClientFirst, Refusal> {
        use SaslFailure::{MalformedRequest, NotAuthorized};
        if input.len() > MAX_MESSAGE_LEN {
            return Err(MalformedRequest.into());
        }
        let msg = std::str::from_utf8(input).map_err(|_| MalformedRequest)?;
        let (flag, rest) = msg.split_once(',').ok_or(MalformedRequest)?;
        let (authz, bare) = rest.split_once(',').ok_or(MalformedRequest)?;
        let gs2_header = &msg[..msg.len() - bare.len()];

        let cb_flag = match flag {
            "n" => CbFlag::None,
            "y" => CbFlag::Unused,
            _ => {
                let name = attr(flag, 'p')
                    .filter(|n| is_cb_name(n))
                    .ok_or(MalformedRequest)?;
                if !self.plus {
                    // 'p' with a mechanism that has no channel binding.
                    return Err(MalformedRequest.into());
                }
                match self.cb.iter().find(|cb| cb.kind == name) {
                    Some(cb) => CbFlag::Bound(cb.data.clone()),
                    // RFC 5802 §6: a type we do not have fails the exchange.
                    None => return Err(Refusal::Binding(name.to_owned())),
                }
            }
        };
        if self.plus && !matches!(cb_flag, CbFlag::Bound(_)) {
            return Err(MalformedRequest.into());
        }
        if cb_flag == CbFlag::Unused && self.refuse_y {
            // The client would have bound had it seen our -PLUS offer: an
            // attacker removed it (RFC 5802 §6, downgrade protection).
            return Err(NotAuthorized.into());
        }

        let authzid = match authz {
            "" => None,
            a => Some(
                attr(a, 'a')
                    .and_then(decode_saslname)
                    .ok_or(MalformedRequest)?,
            ),
        };

        let mut parts = bare.split(',');
        let username = parts
            .next()
            .and_then(|p| attr(p, 'n'))
            .and_then(decode_saslname)
            .ok_or(MalformedRequest)?;
        let client_nonce = parts
            .next()
            .and_then(|p| attr(p, 'r'))
            .filter(|r| is_nonce(r))
            .ok_or(MalformedRequest)?;
        // Optional extensions may follow; a mandatory one ('m=', RFC 5802
        // §5.1) we do not know must fail the exchange.
        for ext in parts {
            if !is_attr_val(ext) || attr(ext, 'm').is_some() {
                return Err(MalformedRequest.into());
            }
        }
        Ok(ClientFirst {
            gs2_header: gs2_header.to_owned(),
            cb_flag,
            authzid,
            username,
            bare: bare.to_owned(),
            client_nonce: client_nonce.to_owned(),
        })
    }

    /// Checks client-final-message (RFC 5802 §5.1, §7): channel binding,
    /// nonce, then the proof.
    fn client_final(
        &self,
        input: &[u8],
        first: ClientFirst,
        server_first: &str,
        nonce: &str,
        creds: &ScramCredentials,
        decoy: bool,
    ) -> (Step, bool) {
        use SaslFailure::{MalformedRequest, NotAuthorized};
        let hash = self.hash;
        let parsed = parse_client_final(input, hash);
        let Some((without_proof, cb_input, client_nonce, proof)) = parsed else {
            return (Step::Failure(MalformedRequest), false);
        };

        // c= is base64(gs2-header [cbind-data]) (RFC 5802 §7).
        let mut expected_cb = first.gs2_header.clone().into_bytes();
        if let CbFlag::Bound(data) = &first.cb_flag {
            expected_cb.extend_from_slice(data);
        }
        if !ct_eq(&cb_input, &expected_cb) || client_nonce != nonce {
            return (Step::Failure(NotAuthorized), false);
        }

        // AuthMessage = client-first-bare "," server-first "," client-final-without-proof
        let auth_message = format!("{},{server_first},{without_proof}", first.bare);
        let client_signature = hash.hmac(&creds.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        let proof_ok = ct_eq(&hash.hash(&client_key), &creds.stored_key);
        if !proof_ok || decoy {
            return (Step::Failure(NotAuthorized), true);
        }
        let server_signature = hash.hmac(&creds.server_key, auth_message.as_bytes());
        let success = Step::Success {
            username: first.username,
            authzid: first.authzid,
            additional: Some(format!("v={}", b64_encode(&server_signature)).into_bytes()),
        };
        (success, true)
    }
}

/// Splits client-final-message into client-final-message-without-proof, the
/// decoded channel-binding input, the nonce and the decoded proof (of the
/// hash's size). `None` when malformed.
fn parse_client_final(input: &[u8], hash: ScramHash) -> Option<(&str, Vec<u8>, &str, Vec<u8>)> {
    if input.len() > MAX_MESSAGE_LEN {
        return None;
    }
    let msg = std::str::from_utf8(input).ok()?;
    // The proof is the last attribute.
    let (without_proof, proof) = msg.rsplit_once(",p=")?;
    let proof = b64_decode(proof).filter(|p| p.len() == hash.output_len())?;
    let mut parts = without_proof.split(',');
    let cb_input = parts
        .next()
        .and_then(|p| attr(p, 'c'))
        .and_then(b64_decode)?;
    let nonce = parts.next().and_then(|p| attr(p, 'r'))?;
    if !parts.all(is_attr_val) {
        return None;
    }
    Some((without_proof, cb_input, nonce, proof))
}
