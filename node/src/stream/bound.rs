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

impl Machine {
    pub(super) fn bound(&mut self, e: TopElement, out: &mut Vec<Action>) {
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
                let mut s = *stanza;
                s.from = Some(fromj.clone());
                out.push(Action::Send(
                    s.error_reply(&error, &server_jid(&self.domain, &fromj)),
                ));
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
                out.push(Action::Send(
                    st.error_reply(&err, &server_jid(&self.domain, &fromj)),
                ));
                return;
            }
            if self.answer_locally(&st, out) {
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
            out.push(Action::Send(
                st.error_reply(&err, &server_jid(&self.domain, &fromj)),
            ));
            return;
        }
        let to = st.to.clone();
        out.push(Action::Route(st.restamped(Some(fromj), to)));
    }

    /// Stanzas the edge answers alone: XEP-0199 pings to the server, the
    /// RFC 3921 session request, and the answer to our own ping.
    fn answer_locally(&mut self, st: &Stanza, out: &mut Vec<Action>) -> bool {
        let to_server = match &st.to {
            None => true,
            Some(t) => t.local().is_none() && t.resource().is_none() && t.domain() == self.domain,
        };
        if !to_server {
            return false;
        }
        if matches!(st.stype(), "result" | "error") {
            if st.id.is_some() && st.id == self.ping_id {
                self.ping_id = None;
                return true;
            }
            return false;
        }
        let Ok(el) = st.element(ns::CLIENT) else {
            return false;
        };
        let Some(child) = el.first_element() else {
            return false;
        };
        let local = matches!(
            (st.stype(), child.name.as_str(), child.ns.as_str()),
            ("get", "ping", ns::PING) | ("set", "session", ns::SESSION)
        );
        if local {
            out.push(Action::Send(result(st, &self.domain)));
        }
        local
    }
}

fn result(st: &Stanza, domain: &str) -> Bytes {
    let mut s = String::from("<iq type='result' id='");
    s.push_str(&proto::element::escape(st.id.as_deref().unwrap_or("")));
    s.push_str("' from='");
    s.push_str(&proto::element::escape(domain));
    s.push_str("'/>");
    Bytes::from(s)
}

fn server_jid(domain: &str, fallback: &Jid) -> Jid {
    proto::BareJid::domain_jid(domain)
        .map(Jid::Bare)
        .unwrap_or_else(|_| fallback.clone())
}
