//! Messages that reached the edge for a session that was gone before it
//! could write them (its connection closed, the edge drains): handed back
//! to the core as if sent to the user's bare JID, so that the account's
//! other resources or its offline storage get them (RFC 6121 §8.5.3.2.1)
//! rather than nobody. Sessions with stream management need none of this:
//! the core kept what their clients did not acknowledge.

use proto::Jid;
use proto::stanza::{Kind, Stanza};

/// The stanza to route again for `raw`, written for `session` (or for
/// the JID in its 'to'): a message worth a second try, addressed to the
/// bare JID. None for anything else (presence is current state, an IQ's
/// sender gets its answer or times out, a groupchat message is in the
/// room's history, a headline or error is not worth keeping).
pub(crate) fn returned(raw: &[u8], session: Option<&proto::FullJid>) -> Option<Stanza> {
    let s = Stanza::parse(raw).ok()?;
    if s.kind != Kind::Message || matches!(s.stype(), "groupchat" | "headline" | "error") {
        return None;
    }
    // Only from a client's full JID: what the core routes again as a
    // client's message.
    if !matches!(s.from, Some(Jid::Full(_))) {
        return None;
    }
    let bare = match (&s.to, session) {
        (Some(to), _) => to.bare(),
        (None, Some(j)) => j.bare(),
        (None, None) => return None,
    };
    let from = s.from.clone();
    Some(s.restamped(from, Some(Jid::Bare(bare))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_clients_message_worth_a_second_try_goes_back() {
        let again = returned(
            b"<message from='a@x/1' to='b@x/phone' type='chat'><body>hi</body></message>",
            None,
        )
        .expect("a chat message");
        assert_eq!(again.to.as_ref().map(|j| j.as_str()), Some("b@x"));
        assert_eq!(again.from.as_ref().map(|j| j.as_str()), Some("a@x/1"));
        assert!(String::from_utf8_lossy(&again.raw).contains("<body>hi</body>"));
        let session = proto::FullJid::parse("b@x/phone").expect("jid");
        let addressed = returned(
            b"<message from='a@x/1'><body>no to</body></message>",
            Some(&session),
        )
        .expect("a normal message");
        assert_eq!(addressed.to.as_ref().map(|j| j.as_str()), Some("b@x"));
        for raw in [
            &b"<message from='r@muc.x/n' to='b@x/p' type='groupchat'><body>g</body></message>"[..],
            b"<message from='a@x/1' to='b@x/p' type='headline'><body>h</body></message>",
            b"<message from='a@x/1' to='b@x/p' type='error'/>",
            b"<presence from='a@x/1' to='b@x/p'/>",
            b"<iq from='a@x/1' to='b@x/p' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
            b"<message from='x' to='b@x/p'><body>from the server</body></message>",
            b"not xml",
        ] {
            assert!(
                returned(raw, Some(&session)).is_none(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
