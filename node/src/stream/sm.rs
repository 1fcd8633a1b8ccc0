//! Stream management (XEP-0198) in the stream machine: which of its
//! elements may come when, and what the driver does with them. The counts
//! themselves are the driver's (it writes and reads the stanzas), and what
//! the client has not acknowledged is kept at the user's shard.

use bytes::Bytes;
use proto::FullJid;
use proto::error::StreamCondition;
use proto::xml::TopElement;

use super::{Action, Machine, Phase};

pub(crate) const NS_SM: &str = "urn:xmpp:sm:3";

/// How a resumption the driver asked the core for ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    /// The session goes on: its full JID, the count of the client's
    /// stanzas the server handled (`<resumed h/>`), and whether it has
    /// Message Carbons (XEP-0280) on.
    Yes(FullJid, u32, bool),
    /// No such session, or it timed out (`item-not-found`).
    NotFound,
    /// The client claimed more stanzas than it was sent.
    TooHigh { handled: u32 },
    /// The core could not be asked.
    Unavailable,
}

/// `<failed/>` with a stanza error condition (XEP-0198 §3, §5), and the
/// count of the client's stanzas handled when there is one.
pub(crate) fn failed(condition: &str, h: Option<u32>) -> Bytes {
    let h = h.map(|h| format!(" h='{h}'")).unwrap_or_default();
    Bytes::from(format!(
        "<failed xmlns='{NS_SM}'{h}><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
    ))
}

/// An unsigned 32-bit attribute (XEP-0198 counts wrap at 2^32).
fn count(e: &proto::Element, name: &str) -> Option<u32> {
    e.attr(name)?.trim().parse().ok()
}

impl Machine {
    /// A stream management element, in any phase after authentication.
    pub(super) fn sm_element(&mut self, e: TopElement, out: &mut Vec<Action>) {
        if !self.settings.sm {
            return out.push(Action::Send(failed("feature-not-implemented", None)));
        }
        let Ok(el) = proto::Element::parse(&e.raw, NS_SM, &[]) else {
            return self.fail(StreamCondition::NotWellFormed, None, out);
        };
        match (e.name.as_str(), self.phase) {
            ("enable", Phase::Bound) => {
                if self.sm_on {
                    return out.push(Action::Send(failed("unexpected-request", None)));
                }
                let resume = matches!(el.attr("resume"), Some("true" | "1"));
                let max = count(&el, "max");
                self.sm_on = true;
                out.push(Action::SmEnable { resume, max });
            }
            // XEP-0198 §3: after binding, unless resuming.
            ("enable", _) => out.push(Action::Send(failed("unexpected-request", None))),
            ("resume", Phase::Negotiating) if self.jid.is_none() => {
                let previd = el.attr("previd").unwrap_or("");
                let h = count(&el, "h");
                match h {
                    Some(h) if !previd.is_empty() && previd.len() <= 256 => {
                        self.phase = Phase::Binding;
                        out.push(Action::SmResume {
                            previd: previd.to_string(),
                            h,
                        });
                    }
                    _ => out.push(Action::Send(failed("bad-request", None))),
                }
            }
            ("resume", _) => out.push(Action::Send(failed("unexpected-request", None))),
            ("r", Phase::Bound) if self.sm_on => out.push(Action::SmRequested),
            ("a", Phase::Bound) if self.sm_on => match count(&el, "h") {
                Some(h) => out.push(Action::SmAcked(h)),
                None => self.fail(
                    StreamCondition::InvalidXml,
                    Some("<a/> needs an h".into()),
                    out,
                ),
            },
            ("r" | "a", _) => out.push(Action::Send(failed("unexpected-request", None))),
            _ => self.fail(
                StreamCondition::UnsupportedStanzaType,
                Some(format!("{} in {NS_SM} is not supported", e.name)),
                out,
            ),
        }
    }

    /// The driver's answer to [`Action::SmResume`].
    pub(super) fn on_resumed(&mut self, r: Resumed, out: &mut Vec<Action>) {
        match r {
            Resumed::Yes(jid, ..) => {
                self.jid = Some(jid);
                self.phase = Phase::Bound;
                self.sm_on = true;
            }
            Resumed::NotFound => {
                self.phase = Phase::Negotiating;
                out.push(Action::Send(failed("item-not-found", None)));
            }
            Resumed::TooHigh { handled } => {
                // §5: an h the session cannot have seen; the failure says
                // how many of the client's stanzas the server handled.
                self.phase = Phase::Negotiating;
                out.push(Action::Send(failed("unexpected-request", Some(handled))));
            }
            Resumed::Unavailable => {
                self.phase = Phase::Negotiating;
                out.push(Action::Send(failed("service-unavailable", None)));
            }
        }
    }

    /// The driver could not enable stream management at the core.
    pub(super) fn on_sm_refused(&mut self, out: &mut Vec<Action>) {
        self.sm_on = false;
        out.push(Action::Send(failed("service-unavailable", None)));
    }

    /// Stream management is on for this stream.
    pub fn sm_enabled(&self) -> bool {
        self.sm_on
    }
}
