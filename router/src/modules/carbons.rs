//! XEP-0280 Message Carbons: a session that enables them gets a copy of
//! the messages its account's other sessions send and receive, so that
//! every device of a user shows both sides of a conversation.
//!
//! Received copies are made where the message is delivered (the
//! recipient's shard). Sent copies are made at the sender's shard, which
//! sees first every message for a service or another server; a message
//! for another local user goes first to the sender's shard when the
//! sending session has carbons on itself (its connection marks its
//! messages and IQs, `Trail::via_sender`), and otherwise straight to the
//! recipient's shard, uncopied (see `dispatch::from_client`).

use bytes::Bytes;
use proto::stanza::{Kind, Stanza};
use proto::{BareJid, Element, FullJid, Jid, ns};

use super::Ctx;
use super::handler::{IqHandler, Target, TargetKind};
use super::state::Session;
use crate::session::Outbound;

/// The Carbons namespace, version 2.
pub const NS: &str = "urn:xmpp:carbons:2";
/// XEP-0297 Stanza Forwarding.
const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0334 Message Processing Hints.
const NS_HINTS: &str = "urn:xmpp:hints";

/// `<enable/>` and `<disable/>` (XEP-0280 §4, §5), to the server or the
/// account itself.
pub(crate) struct Carbons;

impl IqHandler for Carbons {
    fn namespace(&self) -> &'static str {
        NS
    }
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::Server, TargetKind::OwnAccount]
    }
    fn features(&self, t: TargetKind) -> &'static [&'static str] {
        // Clients look for it in the server's disco#info (§3).
        match t {
            TargetKind::Server => &[NS],
            _ => &[],
        }
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, _t: &Target) {
        use proto::error::StanzaCondition as C;
        let on = match (iq.stype(), p.name.as_str()) {
            ("set", "enable") => true,
            ("set", "disable") => false,
            _ => return ctx.bounce(iq, C::BadRequest, None),
        };
        let Some(Jid::Full(from)) = &iq.from else {
            return ctx.bounce(iq, C::NotAllowed, None);
        };
        match ctx.st.session_mut(from) {
            Some(s) => {
                // Enabling twice is not an error (§8.1).
                if s.carbons != on {
                    s.carbons = on;
                    ctx.st.changed(from);
                }
                ctx.iq_result(iq, None);
            }
            // Not a session of this server (§4.1).
            None => ctx.bounce(iq, C::NotAllowed, None),
        }
    }
}

/// Which way a message went for the account whose copies are made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Sent,
    Received,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Sent => "sent",
            Way::Received => "received",
        }
    }
}

/// Whether `user` has a session with carbons on that `skip` does not rule
/// out (checked before anything is parsed: most accounts have none).
fn wanted(ctx: &Ctx<'_>, user: &BareJid, skip: &dyn Fn(&Session) -> bool) -> bool {
    ctx.st.sessions(user).iter().any(|s| s.carbons && !skip(s))
}

/// Whether a message is one for instant messaging that is copied (§6):
/// of type chat, or normal with a body; not an error, headline or
/// groupchat; not marked private (§7) or no-copy (XEP-0334); not itself
/// a carbon; and, received, not from a chat room (its service copies to
/// every joined client itself).
fn eligible(ctx: &Ctx<'_>, s: &Stanza, el: &Element, way: Way) -> bool {
    // RFC 6121 §5.2.2: an unknown type is handled as 'normal'.
    let normal = match s.stype() {
        "chat" => false,
        "groupchat" | "headline" | "error" => return false,
        _ => true,
    };
    if normal && el.child("body", ns::CLIENT).is_none() {
        return false;
    }
    if el.elements().any(|c| {
        (c.ns == NS && matches!(c.name.as_str(), "private" | "sent" | "received"))
            || (c.ns == NS_HINTS && c.name == "no-copy")
    }) {
        return false;
    }
    if way == Way::Received {
        let from_room = s
            .from
            .as_ref()
            .is_some_and(|f| ctx.cfg().is_muc_service(f.domain()));
        if from_room || el.child("x", super::muc::NS_USER).is_some() {
            return false;
        }
    }
    true
}

/// The message as forwarded (XEP-0297): in `jabber:client`, whatever
/// stream it came on, with its addresses.
fn forwarded(s: &Stanza) -> Bytes {
    if s.declares_ns(ns::CLIENT) {
        return s.raw.clone();
    }
    let mut attrs: Vec<(String, String)> = s
        .attrs
        .iter()
        .filter(|(k, _)| k != "xmlns")
        .cloned()
        .collect();
    attrs.push(("xmlns".into(), ns::CLIENT.into()));
    let q = Stanza { attrs, ..s.clone() };
    q.rewrite(s.from.as_ref(), s.to.as_ref())
}

/// The copy of `s` for `user`'s sessions, without 'to' (each connection
/// writes its own JID in, so that one buffer serves every copy).
fn wrapped(user: &BareJid, s: &Stanza, way: Way) -> Bytes {
    let inner = forwarded(s);
    let ty = match s.stype() {
        "" => String::new(),
        t => format!(" type='{}'", proto::element::escape(t)),
    };
    let head = format!(
        "<message from='{}'{ty}><{} xmlns='{NS}'><forwarded xmlns='{NS_FORWARD}'>",
        proto::element::escape(user.as_str()),
        way.name()
    );
    let tail = format!("</forwarded></{}></message>", way.name());
    let mut out = Vec::with_capacity(head.len() + inner.len() + tail.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&inner);
    out.extend_from_slice(tail.as_bytes());
    Bytes::from(out)
}

/// Copy `s` to the carbons sessions of `user` that `skip` does not rule
/// out; how many got one.
fn copy(
    ctx: &Ctx<'_>,
    user: &BareJid,
    s: &Stanza,
    way: Way,
    skip: &dyn Fn(&Session) -> bool,
) -> usize {
    if !wanted(ctx, user, skip) {
        return 0;
    }
    let Ok(el) = s.element(ns::CLIENT) else {
        return 0;
    };
    if !eligible(ctx, s, &el, way) {
        return 0;
    }
    let out = Outbound::Addressed(wrapped(user, s, way));
    let mut n = 0;
    for x in ctx.st.sessions(user) {
        if x.carbons && !skip(x) && ctx.send(&x.sink, out.clone()) {
            n += 1;
        }
    }
    n
}

/// §6: `s`, delivered to `user` by RFC 6121's rules, is copied to the
/// carbons sessions that did not get it (`got`), but for its sender (a
/// message between two sessions of one account).
pub(crate) fn received(ctx: &Ctx<'_>, user: &BareJid, s: &Stanza, got: &dyn Fn(&Session) -> bool) {
    if s.kind != Kind::Message {
        return;
    }
    let sender = s.from.as_ref().and_then(|f| match f {
        Jid::Full(f) => Some(f),
        Jid::Bare(_) => None,
    });
    copy(ctx, user, s, Way::Received, &|x| {
        got(x) || sender.is_some_and(|f| &x.jid == f)
    });
}

/// §7: `s`, sent by `from`, is copied to the account's other carbons
/// sessions. Messages to the account itself are not (they are received
/// by its sessions, and copied as such).
pub(crate) fn sent(ctx: &Ctx<'_>, from: &FullJid, s: &Stanza) {
    if s.kind != Kind::Message
        || s.to
            .as_ref()
            .is_none_or(|t| t.bare_str() == from.bare_str())
    {
        return;
    }
    let user = from.bare();
    copy(ctx, &user, s, Way::Sent, &|x| &x.jid == from);
}
