//! SASL negotiation (RFC 6120 §6) over the mechanisms of `proto::sasl`,
//! and XEP-0077 registration before authentication.
//!
//! Channel binding: on TLS the -PLUS mechanisms are offered with the types
//! of the connection listed per XEP-0440 (`tls-server-end-point`, and
//! `tls-exporter` on TLS 1.3). Clients of an older generation (slixmpp
//! 1.8, and others that know only `tls-unique`, which TLS 1.3 does not
//! define and rustls does not expose) ask for a type we lack, fail, and
//! then try plain SCRAM with the 'y' flag. RFC 5802 §6 makes 'y' a
//! downgrade when the server offered -PLUS, and refusing it locked these
//! clients out entirely. So:
//! - a request for a type we did not offer ends that exchange without
//!   counting as a failed password (bounded apart, `MAX_BINDING_REFUSALS`);
//! - after such a request on this stream, 'y' is accepted: the client has
//!   shown it saw the -PLUS offer, so 'y' means "no type in common", not a
//!   stripped list; without one, 'y' is still refused;
//! - every SCRAM server-first carries the XEP-0474 hash of the mechanisms
//!   and types advertised, so a client that implements XEP-0474 (as the
//!   clients that speak tls-exporter do) detects a stripped or altered list
//!   itself, which also covers an attacker who fakes such a request on
//!   his leg of the connection.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use proto::error::{StanzaCondition, StanzaError, StreamCondition};
use proto::ns;
use proto::sasl::{Mechanism, SaslFailure, ServerSession, Step, StoredCredentials};
use proto::xml::TopElement;
use proto::{BareJid, Element};

use super::{Action, AuthOutcome, Machine, Phase};

/// Failed attempts allowed before the stream is closed (RFC 6120 §6.4.5).
const MAX_SASL_FAILURES: u8 = 3;

/// Exchanges ended because the client asked for a channel-binding type we
/// do not offer, allowed before the stream is closed (a client tries each
/// -PLUS mechanism it knows once; this only bounds a loop).
const MAX_BINDING_REFUSALS: u8 = 4;

pub(crate) struct SaslState {
    session: ServerSession,
    mechanism: Mechanism,
    /// The name the client gave, as sent.
    username: Option<String>,
    /// The account being looked up.
    user: Option<BareJid>,
}

impl std::fmt::Debug for SaslState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslState")
            .field("user", &self.user)
            .finish()
    }
}

impl Machine {
    /// The mechanisms offered on this stream, strongest first.
    pub(super) fn mechanisms(&self) -> Vec<Mechanism> {
        let mut m = Vec::new();
        if !self.channel_bindings.is_empty() {
            m.push(Mechanism::ScramSha256Plus);
            m.push(Mechanism::ScramSha1Plus);
        }
        m.push(Mechanism::ScramSha256);
        m.push(Mechanism::ScramSha1);
        if self.tls {
            // PLAIN only inside TLS.
            m.push(Mechanism::Plain);
        }
        m
    }

    /// The channel-binding types of this connection (XEP-0440).
    pub(super) fn binding_types(&self) -> Vec<&'static str> {
        self.channel_bindings.iter().map(|c| c.kind).collect()
    }

    pub(super) fn sasl_element(&mut self, e: TopElement, out: &mut Vec<Action>) {
        match e.name.as_str() {
            "auth" => self.sasl_auth(e, out),
            "response" => self.sasl_response(e, out),
            "abort" => self.sasl_failed(SaslFailure::Aborted, out),
            _ => self.fail(StreamCondition::UnsupportedStanzaType, None, out),
        }
    }

    fn sasl_auth(&mut self, e: TopElement, out: &mut Vec<Action>) {
        if self.sasl.is_some() {
            return self.fail(
                StreamCondition::PolicyViolation,
                Some("a SASL exchange is already running".into()),
                out,
            );
        }
        let asked = e.attr("mechanism").unwrap_or_default().to_string();
        if !self.sasl_allowed() {
            return self.sasl_refused(asked, SaslFailure::EncryptionRequired, out);
        }
        let offered = self.mechanisms();
        let Some(mech) = Mechanism::parse(&asked).filter(|m| offered.contains(m)) else {
            return self.sasl_refused(asked, SaslFailure::InvalidMechanism, out);
        };
        let Some(input) = decode_payload(&e) else {
            return self.sasl_refused(asked, SaslFailure::IncorrectEncoding, out);
        };
        let plus_offered = offered.iter().any(|m| m.is_plus());
        let names: Vec<&str> = offered.iter().map(|m| m.name()).collect();
        let types = self.binding_types();
        let advertised = (!types.is_empty()).then_some(types.as_slice());
        let mut session = ServerSession::new(
            mech,
            self.channel_bindings.clone(),
            plus_offered && !self.binding_mismatch,
        )
        .with_downgrade_hash(proto::sasl::downgrade_string(&names, advertised));
        let step = session.step(&input);
        self.sasl = Some(SaslState {
            session,
            mechanism: mech,
            username: None,
            user: None,
        });
        self.phase = Phase::Sasl;
        self.sasl_step(step, out);
    }

    fn sasl_response(&mut self, e: TopElement, out: &mut Vec<Action>) {
        let Some(input) = decode_payload(&e) else {
            return self.sasl_failed(SaslFailure::IncorrectEncoding, out);
        };
        let Some(state) = self.sasl.as_mut() else {
            return self.fail(
                StreamCondition::PolicyViolation,
                Some("no SASL exchange is running".into()),
                out,
            );
        };
        let step = state.session.step(&input);
        self.sasl_step(step, out);
    }

    pub(super) fn on_credentials(&mut self, c: Option<StoredCredentials>, out: &mut Vec<Action>) {
        let Some(state) = self.sasl.as_mut() else {
            return;
        };
        let step = state.session.credentials(c);
        self.sasl_step(step, out);
    }

    fn sasl_step(&mut self, step: Step, out: &mut Vec<Action>) {
        match step {
            Step::Challenge(data) => {
                out.push(Action::Send(Bytes::from(format!(
                    "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</challenge>",
                    B64.encode(data)
                ))));
            }
            Step::Lookup { username } => {
                let user = proto::jid::normalize_local(&username)
                    .ok()
                    .and_then(|u| BareJid::new(Some(&u), &self.domain).ok());
                if let Some(s) = self.sasl.as_mut() {
                    s.username = Some(username);
                    s.user = user.clone();
                }
                match user {
                    Some(u) => {
                        out.push(Action::LookupCredentials(u));
                    }
                    None => {
                        // Not a possible account: continue without credentials so
                        // the failure looks like any other.
                        if let Some(s) = self.sasl.as_mut() {
                            let step = s.session.credentials(None);
                            self.sasl_step(step, out);
                        }
                    }
                }
            }
            Step::Success {
                authzid,
                additional,
                ..
            } => {
                let Some(user) = self.sasl.as_ref().and_then(|s| s.user.clone()) else {
                    return self.sasl_failed(SaslFailure::NotAuthorized, out);
                };
                if let Some(a) = authzid.filter(|a| !a.is_empty())
                    && BareJid::parse(&a).ok().as_ref() != Some(&user)
                {
                    return self.sasl_failed(SaslFailure::InvalidAuthzid, out);
                }
                if let Some(s) = self.sasl.take() {
                    out.push(Action::AuthOutcome(outcome(&s, None)));
                }
                let body = additional.map(|a| B64.encode(a)).unwrap_or_default();
                out.push(Action::Send(Bytes::from(format!(
                    "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{body}</success>"
                ))));
                self.user = Some(user);
                // RFC 6120 §6.4.6: the client opens a new stream.
                self.phase = Phase::Header;
                self.header_sent = false;
                out.push(Action::ResetParser);
            }
            Step::Failure(f) => self.sasl_failed(f, out),
            Step::BindingNotOffered { requested } => {
                // Logged, but not a failed password: the outcome says the
                // credentials were not checked, so it is not counted.
                if let Some(s) = self.sasl.take() {
                    out.push(Action::AuthOutcome(outcome(&s, Some("not-authorized"))));
                }
                self.binding_mismatch = true;
                self.binding_refusals += 1;
                self.phase = Phase::Negotiating;
                let offered = self.binding_types().join(" ");
                let text = format!(
                    "channel binding {} is not offered here; offered: {offered}",
                    safe_token(&requested)
                );
                out.push(Action::Send(Bytes::from(format!(
                    "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>{}</text></failure>",
                    proto::element::escape(&text)
                ))));
                if self.binding_refusals >= MAX_BINDING_REFUSALS {
                    self.fail(
                        StreamCondition::PolicyViolation,
                        Some("too many authentication attempts".into()),
                        out,
                    );
                }
            }
        }
    }

    /// An `<auth/>` refused before an exchange started.
    fn sasl_refused(&mut self, asked: String, f: SaslFailure, out: &mut Vec<Action>) {
        out.push(Action::AuthOutcome(AuthOutcome {
            username: String::new(),
            account: None,
            mechanism: asked,
            failure: Some(f.condition()),
            checked: false,
        }));
        self.sasl_failed(f, out);
    }

    /// End the running exchange (if any) with `f`; the stream goes on
    /// unless that was one failure too many.
    pub(super) fn sasl_failed(&mut self, f: SaslFailure, out: &mut Vec<Action>) {
        if let Some(s) = self.sasl.take() {
            out.push(Action::AuthOutcome(outcome(&s, Some(f.condition()))));
        }
        self.phase = Phase::Negotiating;
        out.push(Action::Send(Bytes::from(format!(
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{}/></failure>",
            f.condition()
        ))));
        if f != SaslFailure::Aborted {
            self.sasl_failures += 1;
        }
        if self.sasl_failures >= MAX_SASL_FAILURES {
            self.fail(
                StreamCondition::PolicyViolation,
                Some("too many failed authentication attempts".into()),
                out,
            );
        }
    }

    /// An IQ before authentication: only XEP-0077 registration is allowed.
    pub(super) fn pre_auth_iq(&mut self, e: TopElement, out: &mut Vec<Action>) {
        let el = match Element::parse(&e.raw, ns::CLIENT, &[]) {
            Ok(el) => el,
            Err(_) => return self.fail(StreamCondition::NotWellFormed, None, out),
        };
        let id = el.attr("id").unwrap_or("").to_string();
        let iq_type = el.attr("type").unwrap_or("").to_string();
        let reply = |err: StanzaError| {
            Action::Send(Bytes::from(format!(
                "<iq type='error' id='{}'>{}</iq>",
                proto::element::escape(&id),
                err.to_xml()
            )))
        };
        // Results and errors are never answered (RFC 6120 §8.2.3).
        if !matches!(iq_type.as_str(), "get" | "set") {
            if !matches!(iq_type.as_str(), "result" | "error") {
                out.push(reply(StanzaError::with_text(
                    StanzaCondition::BadRequest,
                    "an iq needs an id and a type",
                )));
            }
            return;
        }
        // The same one-payload rule as after authentication.
        let payload = match proto::stanza::iq_payload(&el) {
            Ok(p) => p.clone(),
            Err(err) => return out.push(reply(err)),
        };
        // Registration is with this server only: no other address.
        let to_server = el.attr("to").is_none_or(|t| {
            proto::jid::normalize_domain(t).ok().as_deref() == Some(self.domain.as_str())
        });
        if payload.ns == ns::REGISTER && self.sasl_allowed() && to_server {
            out.push(Action::Register {
                iq_type,
                id,
                payload,
                domain: self.domain.clone(),
            });
            return;
        }
        out.push(reply(StanzaError::with_text(
            StanzaCondition::NotAuthorized,
            "authenticate first",
        )));
    }
}

/// A client-chosen name shown back to it: printable ASCII, at most 40
/// characters, anything else replaced.
fn safe_token(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

fn outcome(s: &SaslState, failure: Option<&'static str>) -> AuthOutcome {
    AuthOutcome {
        username: s.username.clone().unwrap_or_default(),
        account: s.user.clone(),
        mechanism: s.mechanism.name().to_string(),
        failure,
        checked: s.session.checked_credentials(),
    }
}

/// The base64 body of `<auth/>` or `<response/>`; "=" means empty (RFC 6120 §6.4.2).
fn decode_payload(e: &TopElement) -> Option<Vec<u8>> {
    let el = Element::parse(&e.raw, ns::SASL, &[]).ok()?;
    let text: String = el.text().chars().filter(|c| !c.is_whitespace()).collect();
    if text.is_empty() || text == "=" {
        return Some(Vec::new());
    }
    B64.decode(text.as_bytes()).ok()
}
