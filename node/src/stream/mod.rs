//! The client stream as a state machine without I/O (RFC 6120 §4–§7):
//! events in (stream header, top-level elements, TLS up, credentials found,
//! bind done), actions out (send bytes, start TLS, look up credentials,
//! bind, route a stanza, close). TCP and direct TLS are thin drivers over
//! it (`conn.rs`); tests drive it without sockets.
//!
//! One file per phase: `negotiate.rs` (header, features, STARTTLS),
//! `auth.rs` (SASL, in-band registration), `bind.rs` (resource binding),
//! `bound.rs` (stanzas of a bound session).

mod auth;
mod bind;
mod bound;
mod negotiate;
mod sm;

pub use sm::Resumed;

use std::sync::Arc;

use bytes::Bytes;
use proto::error::StreamCondition;
use proto::sasl::{ChannelBinding, StoredCredentials};
use proto::stanza::Stanza;
use proto::xml::{StreamHeader, TopElement, XmlError};
use proto::{BareJid, FullJid};
use router::BindError;

/// What the edge knows that every stream needs.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub domains: Vec<String>,
    /// SASL and bind only after TLS on the plain port.
    pub require_tls: bool,
    /// STARTTLS is offered (a TLS configuration exists).
    pub tls_available: bool,
    /// XEP-0077 registration before authentication.
    pub registration: bool,
    /// Server features for disco (used in stream features where relevant).
    pub server_features: Vec<&'static str>,
    /// The `<c/>` of the server's entity capabilities (XEP-0115 §6.3).
    pub server_caps: String,
    /// XEP-0198 stream management is offered.
    pub sm: bool,
    /// Where clients should resume (`host:port`), if configured.
    pub sm_location: Option<String>,
}

/// Input to the machine.
#[derive(Debug)]
pub enum Event {
    Header(StreamHeader),
    Element(TopElement),
    /// The peer closed its stream (`</stream:stream>`).
    PeerClosed,
    /// The parser refused the input.
    XmlError(XmlError),
    /// TLS is up (after STARTTLS, or from the start on the direct-TLS port);
    /// `channel_bindings` are the types this connection can bind to
    /// (`tls-server-end-point` always when the certificate allows it,
    /// `tls-exporter` with TLS 1.3).
    TlsEstablished {
        channel_bindings: Vec<ChannelBinding>,
    },
    /// Answer to [`Action::LookupCredentials`].
    Credentials(Option<StoredCredentials>),
    /// Answer to [`Action::Bind`].
    Bound(Result<(), BindError>),
    /// Answer to [`Action::Register`].
    Registered(Bytes),
    /// Answer to [`Action::LookupCredentials`] when the driver will not
    /// check this attempt now (the client's address failed too often):
    /// the exchange ends with `temporary-auth-failure`.
    AuthThrottled,
    /// Answer to [`Action::SmResume`].
    SmResumed(Resumed),
    /// Answer to [`Action::SmEnable`] when the core refused it.
    SmRefused,
}

/// How one SASL exchange ended, for the driver to log (it knows the
/// client's address) and to count failures with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    /// The name the client gave, exactly as sent: untrusted text, to be
    /// logged quoted and escaped (`?`). Empty if it gave none.
    pub username: String,
    /// The account it names, when the name is a valid localpart.
    pub account: Option<BareJid>,
    /// The mechanism, or what the client asked for when it is not one of
    /// ours (untrusted as well).
    pub mechanism: String,
    /// The SASL condition sent back (RFC 6120 §6.5); `None` on success.
    pub failure: Option<&'static str>,
    /// The credentials were checked: a failure is a wrong name or
    /// password (login throttling counts only those).
    pub checked: bool,
}

/// Output of the machine, to be carried out in order.
#[derive(Debug)]
pub enum Action {
    Send(Bytes),
    /// Flush, then start TLS on the socket and restart the parser.
    StartTls,
    /// Restart the parser for a new stream on the same transport.
    ResetParser,
    LookupCredentials(BareJid),
    /// An authentication ended; comes before the `<success/>` or
    /// `<failure/>` is sent.
    AuthOutcome(AuthOutcome),
    /// XEP-0077 before authentication: the driver asks the core and answers
    /// with [`Event::Registered`]. Carries the IQ's type, id and payload.
    Register {
        iq_type: String,
        id: String,
        payload: proto::Element,
        domain: String,
    },
    Bind(FullJid),
    /// Hand a stanza (from stamped) to the core.
    Route(Stanza),
    /// Write a stream error and close.
    Fail(StreamCondition, Option<String>),
    /// Close our stream (after the peer closed theirs).
    Close,
    /// XEP-0352: the client says it is active (`true`) or inactive.
    ClientState(bool),
    /// A stanza the edge answers a bound client's stanza with (a ping's
    /// result, an error): written, or with stream management on, sent
    /// through the session at the core so that it is counted.
    Reply(Bytes),
    /// XEP-0198 §3: enable stream management at the core (the driver
    /// writes `<enabled/>` when the core says it counts from there);
    /// `max` is the resumption time the client asked for.
    SmEnable {
        resume: bool,
        max: Option<u32>,
    },
    /// XEP-0198 §5: resume the session `previd` of the authenticated user;
    /// answered with [`Event::SmResumed`].
    SmResume {
        previd: String,
        h: u32,
    },
    /// The client asks how many of its stanzas were handled (`<r/>`).
    SmRequested,
    /// The client handled this many stanzas in all (`<a h/>`).
    SmAcked(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the stream header.
    Header,
    /// Features sent, waiting for STARTTLS / SASL / bind.
    Negotiating,
    /// A SASL exchange is running.
    Sasl,
    /// Waiting for the core to confirm a bind.
    Binding,
    Bound,
    Closed,
}

/// One client stream.
pub struct Machine {
    settings: Arc<StreamSettings>,
    phase: Phase,
    tls: bool,
    channel_bindings: Vec<ChannelBinding>,
    /// The client asked, on this stream, for a -PLUS mechanism bound to a
    /// type we do not offer: it saw our offer, so its later 'y' flag is not
    /// a sign of a stripped list (see `auth.rs`).
    binding_mismatch: bool,
    /// Exchanges ended by such a request (bounded apart from failures).
    binding_refusals: u8,
    header_sent: bool,
    domain: String,
    stream_id: String,
    /// A header was answered on this connection already: the next one
    /// is a restart.
    restarted: bool,
    user: Option<BareJid>,
    jid: Option<FullJid>,
    sasl: Option<auth::SaslState>,
    sasl_failures: u8,
    pending_bind_id: Option<String>,
    /// Id of the last server-to-client ping (XEP-0199), if unanswered.
    pub(crate) ping_id: Option<String>,
    /// XEP-0198 is on (or being enabled) for this stream.
    sm_on: bool,
}

impl Machine {
    pub fn new(settings: Arc<StreamSettings>, stream_id: String) -> Machine {
        let domain = settings.domains.first().cloned().unwrap_or_default();
        Machine {
            settings,
            phase: Phase::Header,
            tls: false,
            channel_bindings: Vec::new(),
            binding_mismatch: false,
            binding_refusals: 0,
            header_sent: false,
            domain,
            stream_id,
            restarted: false,
            user: None,
            jid: None,
            sasl: None,
            sasl_failures: 0,
            pending_bind_id: None,
            ping_id: None,
            sm_on: false,
        }
    }

    /// The authenticated account.
    pub fn user(&self) -> Option<&BareJid> {
        self.user.as_ref()
    }

    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    /// The bound full JID.
    pub fn jid(&self) -> Option<&FullJid> {
        self.jid.as_ref()
    }

    pub fn is_bound(&self) -> bool {
        self.phase == Phase::Bound
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Feed one event; get the actions to carry out.
    pub fn on_event(&mut self, ev: Event) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Closed {
            return out;
        }
        match ev {
            Event::Header(h) => self.on_header(h, &mut out),
            Event::Element(e) => self.on_element(e, &mut out),
            Event::PeerClosed => {
                self.phase = Phase::Closed;
                out.push(Action::Close);
            }
            Event::XmlError(e) => self.fail(e.condition, Some(e.text), &mut out),
            Event::TlsEstablished { channel_bindings } => {
                self.tls = true;
                self.channel_bindings = channel_bindings;
                self.phase = Phase::Header;
                self.header_sent = false;
            }
            Event::Credentials(c) => self.on_credentials(c, &mut out),
            Event::Bound(r) => self.on_bound(r, &mut out),
            Event::Registered(reply) => out.push(Action::Send(reply)),
            Event::AuthThrottled => {
                if self.sasl.is_some() {
                    self.sasl_failed(proto::sasl::SaslFailure::TemporaryAuthFailure, &mut out);
                }
            }
            Event::SmResumed(r) => self.on_resumed(r, &mut out),
            Event::SmRefused => self.on_sm_refused(&mut out),
        }
        out
    }

    fn on_element(&mut self, e: TopElement, out: &mut Vec<Action>) {
        if e.ns == sm::NS_SM && matches!(self.phase, Phase::Negotiating | Phase::Bound) {
            if self.user.is_none() {
                // XEP-0198 §3: not before authentication.
                out.push(Action::Send(sm::failed("not-authorized", None)));
                return;
            }
            return self.sm_element(e, out);
        }
        match self.phase {
            Phase::Header => self.fail(StreamCondition::NotWellFormed, None, out),
            Phase::Negotiating | Phase::Sasl => self.negotiate(e, out),
            Phase::Binding => self.fail(
                StreamCondition::PolicyViolation,
                Some("wait for the bind result".into()),
                out,
            ),
            Phase::Bound => self.bound(e, out),
            Phase::Closed => {}
        }
    }

    /// The stream header we send (RFC 6120 §4.7).
    fn header_bytes(&self) -> String {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='{}' from='{}' version='1.0' xml:lang='en'>",
            self.stream_id,
            proto::element::escape(&self.domain)
        )
    }

    /// End the stream with an error; a header goes first if none was sent
    /// (RFC 6120 §4.9.1.2).
    pub fn fail(&mut self, cond: StreamCondition, text: Option<String>, out: &mut Vec<Action>) {
        if !self.header_sent {
            out.push(Action::Send(Bytes::from(self.header_bytes())));
            self.header_sent = true;
        }
        self.phase = Phase::Closed;
        out.push(Action::Fail(cond, text));
    }
}

#[cfg(test)]
mod tests;
