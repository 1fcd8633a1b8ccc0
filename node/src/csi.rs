//! Client state indication (XEP-0352): while a client says it is
//! inactive (a phone with its screen off), its connection holds back what
//! can wait: presence (only the latest of each contact's resource is
//! kept), and messages without a body (PubSub events, receipts, chat
//! states unless `csi.chat_states_urgent`). What the user would want to
//! see now (a message with a body, an IQ, a subscription request, an
//! error) is written at once, after everything held, in order, so the
//! client never sees a conversation out of order; so is everything when
//! the client becomes active again or too much is held. The saving is
//! in bytes not sent (superseded presence) and in wake-ups of the radio
//! (many writes become one).

use bytes::Bytes;

use crate::scan::{attr, find, start_tag};

/// What an inactive client's connection does with a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Written now, after what is held.
    Urgent,
    /// Held until something urgent, `<active/>`, or the bound.
    Hold,
    /// Held, replacing what is held with the same key: the available or
    /// unavailable presence of one full JID (its `from`).
    Replace(String),
}

/// The class of a stanza as it will be written (`raw`, complete).
pub fn classify(raw: &[u8], chat_states_urgent: bool) -> Class {
    let head = &raw[..start_tag(raw).unwrap_or(raw.len())];
    if head.starts_with(b"<presence") {
        return match attr(head, b"type") {
            None | Some(b"unavailable") => match attr(head, b"from") {
                Some(f) => Class::Replace(String::from_utf8_lossy(f).into_owned()),
                None => Class::Hold,
            },
            // A subscription request waits for the user's answer.
            Some(b"subscribe") | Some(b"error") => Class::Urgent,
            Some(_) => Class::Hold,
        };
    }
    if head.starts_with(b"<message") {
        if attr(head, b"type") == Some(b"error") || contains(raw, b"<body") {
            return Class::Urgent;
        }
        if chat_states_urgent && contains(raw, b"http://jabber.org/protocol/chatstates") {
            return Class::Urgent;
        }
        return Class::Hold;
    }
    // IQs (someone waits for the answer) and anything else.
    Class::Urgent
}

/// What an inactive connection holds, in the order it came.
#[derive(Debug, Default)]
pub struct Held {
    items: Vec<(Option<String>, Bytes)>,
    bytes: usize,
    /// Presence superseded before it was written (never sent).
    pub superseded: u64,
}

impl Held {
    /// Hold `b` of class `c` (not urgent).
    pub fn push(&mut self, c: Class, b: Bytes) {
        let key = match c {
            Class::Replace(k) => {
                if let Some(i) = self
                    .items
                    .iter()
                    .position(|(x, _)| x.as_deref() == Some(k.as_str()))
                {
                    let (_, old) = self.items.remove(i);
                    self.bytes -= old.len();
                    self.superseded += 1;
                }
                Some(k)
            }
            _ => None,
        };
        self.bytes += b.len();
        self.items.push((key, b));
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Everything held, in order, as one buffer (then empty).
    /// Everything held, each stanza on its own, oldest first.
    pub fn take_each(&mut self) -> Vec<Bytes> {
        self.bytes = 0;
        self.items.drain(..).map(|(_, b)| b).collect()
    }

    pub fn take(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes);
        for (_, b) in self.items.drain(..) {
            out.extend_from_slice(&b);
        }
        self.bytes = 0;
        out
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_waits_and_what_does_not() {
        let c = |s: &str| classify(s.as_bytes(), false);
        assert_eq!(
            c("<presence from='a@b/c' to='me@x/y'><show>away</show></presence>"),
            Class::Replace("a@b/c".into())
        );
        assert_eq!(
            c("<presence type=\"unavailable\" from=\"a@b/c\"/>"),
            Class::Replace("a@b/c".into())
        );
        assert_eq!(c("<presence from='a@b' type='subscribe'/>"), Class::Urgent);
        assert_eq!(c("<presence from='a@b' type='subscribed'/>"), Class::Hold);
        assert_eq!(
            c("<message from='a@b/c'><body>hi</body></message>"),
            Class::Urgent
        );
        assert_eq!(c("<message type='error' from='a@b/c'/>"), Class::Urgent);
        let state = "<message from='a@b/c'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>";
        assert_eq!(c(state), Class::Hold);
        assert_eq!(classify(state.as_bytes(), true), Class::Urgent);
        assert_eq!(
            c(
                "<message from='pubsub.x'><event xmlns='http://jabber.org/protocol/pubsub#event'/></message>"
            ),
            Class::Hold
        );
        assert_eq!(
            c("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"),
            Class::Urgent
        );
        // A quoted '>' or a "type" inside another value is no trap.
        assert_eq!(
            c("<presence from='a@b/x>y' xml:lang='type=x'/>"),
            Class::Replace("a@b/x>y".into())
        );
    }

    #[test]
    fn held_presence_keeps_the_latest_per_resource_in_order() {
        let mut h = Held::default();
        for (from, n) in [("a@b/1", 1), ("c@d/2", 2), ("a@b/1", 3)] {
            h.push(
                Class::Replace(from.into()),
                Bytes::from(format!("<presence from='{from}' id='{n}'/>")),
            );
        }
        h.push(Class::Hold, Bytes::from_static(b"<message id='4'/>"));
        assert_eq!(h.len(), 3);
        assert_eq!(h.superseded, 1);
        let out = String::from_utf8(h.take()).expect("utf-8");
        assert_eq!(
            out,
            "<presence from='c@d/2' id='2'/><presence from='a@b/1' id='3'/><message id='4'/>"
        );
        assert!(h.is_empty() && h.bytes() == 0);
    }
}
