//! A bound session's stanzas (RFC 6120 §8): checked, stamped with the
//! session's full JID and handed to the core. Pings to the server and the
//! legacy session request are answered here at the edge.

use bytes::Bytes;
use proto::Jid;
use proto::error::{StanzaCondition, StanzaError, StreamCondition};
use proto::ns;
use proto::stanza::{EnvelopeError, Kind, Stanza};
use proto::xml::TopElement;

use super::{Action, Machine};

/// Client state indication (XEP-0352).
pub(crate) const NS_CSI: &str = "urn:xmpp:csi:0";

impl Machine {
    pub(super) fn bound(&mut self, e: TopElement, out: &mut Vec<Action>) {
        // XEP-0352 §4: the client's state, for the driver to act on.
        if e.ns == NS_CSI && matches!(e.name.as_str(), "active" | "inactive") {
            out.push(Action::ClientState(e.name == "active"));
            return;
        }
        if e.ns != ns::CLIENT {
            return self.fail(
                StreamCondition::UnsupportedStanzaType,
                Some(format!("{} in {} is not supported", e.name, e.ns)),
                out,
            );
        }
        let Some(full) = self.jid.clone() else { return };
        let fromj = Jid::Full(full.clone());
        let mut st = match Stanza::from_top(e) {
            Ok(s) => s,
            Err(EnvelopeError::NotAStanza) => {
                return self.fail(StreamCondition::UnsupportedStanzaType, None, out);
            }
            Err(EnvelopeError::Bad { error, stanza }) => {
                // The 'to' could not be read: the server answers.
                let mut s = *stanza;
                s.from = Some(fromj.clone());
                let server = server_jid(&self.domain, &fromj);
                out.push(Action::Reply(s.error_reply(&error, Some(&server))));
                return;
            }
        };
        // RFC 6120 §8.1.2.1: a 'from' must be the session's full or bare JID.
        if let Some(f) = &st.from
            && f.as_str() != full.as_str()
            && f.as_str() != full.bare_str()
        {
            return self.fail(StreamCondition::InvalidFrom, None, out);
        }
        st.from = Some(fromj.clone());
        if st.kind == Kind::Iq {
            if !matches!(st.stype(), "get" | "set" | "result" | "error") || st.id.is_none() {
                let err = StanzaError::with_text(
                    StanzaCondition::BadRequest,
                    "an iq needs an id and a type",
                );
                out.push(Action::Reply(st.error_reply(&err, None)));
                return;
            }
            if matches!(st.stype(), "get" | "set") {
                let payload = st
                    .element(ns::CLIENT)
                    .map_err(|_| StanzaError::new(StanzaCondition::BadRequest))
                    .and_then(|el| {
                        proto::stanza::iq_payload(&el).map(|p| (p.name.clone(), p.ns.clone()))
                    });
                match payload {
                    Err(err) => {
                        out.push(Action::Reply(st.error_reply(&err, None)));
                        return;
                    }
                    Ok((name, pns)) => {
                        if self.answer_locally(&st, &name, &pns, out) {
                            return;
                        }
                    }
                }
            } else if self.answer_ping(&st) {
                return;
            }
        }
        if st.kind == Kind::Presence
            && !matches!(
                st.stype(),
                "" | "unavailable"
                    | "subscribe"
                    | "subscribed"
                    | "unsubscribe"
                    | "unsubscribed"
                    | "probe"
                    | "error"
            )
        {
            let err = StanzaError::with_text(StanzaCondition::BadRequest, "unknown presence type");
            out.push(Action::Reply(st.error_reply(&err, None)));
            return;
        }
        let to = st.to.clone();
        out.push(Action::Route(st.restamped(Some(fromj), to)));
    }

    /// Whether `st` is addressed to this stream's server domain (or to
    /// nobody, which means the account and, for these, the server).
    fn to_server(&self, st: &Stanza) -> bool {
        match &st.to {
            None => true,
            Some(t) => t.local().is_none() && t.resource().is_none() && t.domain() == self.domain,
        }
    }

    /// The client's answer to our own ping (XEP-0199 §4.2), taken here.
    fn answer_ping(&mut self, st: &Stanza) -> bool {
        if !self.to_server(st) || !matches!(st.stype(), "result" | "error") {
            return false;
        }
        if st.id.is_some() && st.id == self.ping_id {
            self.ping_id = None;
            return true;
        }
        false
    }

    /// Gets and sets the edge answers alone: XEP-0199 pings to the server
    /// and the RFC 3921 session request. `name`/`pns` are the one payload
    /// child, already checked.
    fn answer_locally(
        &mut self,
        st: &Stanza,
        name: &str,
        pns: &str,
        out: &mut Vec<Action>,
    ) -> bool {
        if !self.to_server(st) {
            return false;
        }
        let local = matches!(
            (st.stype(), name, pns),
            ("get", "ping", ns::PING) | ("set", "session", ns::SESSION)
        );
        if local {
            out.push(Action::Reply(result(st)));
        }
        local
    }
}

/// An empty IQ result: from the IQ's `to`, or with no 'from' when it had
/// none (answered on behalf of the account, RFC 6120 §10.3.3).
fn result(st: &Stanza) -> Bytes {
    let mut s = String::from("<iq type='result' id='");
    s.push_str(&proto::element::escape(st.id.as_deref().unwrap_or("")));
    s.push('\'');
    if let Some(to) = &st.to {
        s.push_str(" from='");
        s.push_str(&proto::element::escape(to.as_str()));
        s.push('\'');
    }
    s.push_str("/>");
    Bytes::from(s)
}

fn server_jid(domain: &str, fallback: &Jid) -> Jid {
    proto::BareJid::domain_jid(domain)
        .map(Jid::Bare)
        .unwrap_or_else(|_| fallback.clone())
}
