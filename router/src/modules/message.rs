//! Message delivery at the recipient's shard (RFC 6121 §8.5.2, §8.5.3) and
//! offline storage (XEP-0160) with delayed-delivery stamps (XEP-0203).

use bytes::Bytes;
use proto::error::StanzaCondition;
use proto::ns;
use proto::stanza::Stanza;
use proto::{BareJid, Jid};

use super::Ctx;
use crate::session::Outbound;

/// Deliver a message to a local, existing user.
pub(crate) fn inbound(ctx: &mut Ctx<'_>, user: &BareJid, s: Stanza) {
    // RFC 6121 §5.2.2: an unknown type is handled as 'normal'.
    let mtype = match s.stype() {
        t @ ("chat" | "groupchat" | "headline" | "error") => t,
        _ => "normal",
    };
    if let Some(Jid::Full(full)) = &s.to {
        if let Some(sess) = ctx.st.session(full) {
            ctx.send(&sess.sink, Outbound::Stanza(s.raw.clone()));
            // XEP-0280 §6: the other sessions with carbons get a copy.
            super::carbons::received(ctx, user, &s, &|x| &x.jid == full);
            return;
        }
        // §8.5.3.2.1: no such resource. Only 'chat' is handled as if sent
        // to the bare JID; 'normal' and 'groupchat' are answered with
        // service-unavailable, 'headline' and 'error' dropped (a headline
        // error would tell a stranger which resources are online).
        match mtype {
            "chat" => {}
            "normal" | "groupchat" => {
                return ctx.bounce(&s, StanzaCondition::ServiceUnavailable, None);
            }
            _ => return,
        }
    }
    match mtype {
        "error" => {}
        "groupchat" => ctx.bounce(&s, StanzaCondition::ServiceUnavailable, None),
        "headline" => {
            ctx.deliver_to(user, |x| x.available && x.priority >= 0, &s.raw);
        }
        _ => {
            // §8.5.2.1.1: the available resources with the highest non-negative priority.
            let best = ctx
                .st
                .sessions(user)
                .iter()
                .filter(|x| x.available && x.priority >= 0)
                .map(|x| x.priority)
                .max();
            let got = match best {
                Some(p) => {
                    let n = ctx.deliver_to(user, |x| x.available && x.priority == p, &s.raw);
                    if n == 0 {
                        store_offline(ctx, user, &s);
                    }
                    Some(p).filter(|_| n > 0)
                }
                None => {
                    store_offline(ctx, user, &s);
                    None
                }
            };
            // XEP-0280 §6: the sessions with carbons that did not get it
            // get a copy. Stored for later, it reaches a session that is
            // not available yet when it becomes so: no copy now.
            super::carbons::received(ctx, user, &s, &|x| match got {
                Some(p) => x.available && x.priority == p,
                None => !x.available,
            });
        }
    }
}

/// A message written without 'to' for many recipients of this shard (a
/// PubSub notification): each recipient's sessions get the same buffer
/// and their connections write their own JID in, so a fan-out to many
/// sessions of one edge crosses the wire once. The rules are those of
/// RFC 6121 §8.5 for the message's type: a headline goes to the available
/// resources with non-negative priority (none: dropped), a normal message
/// to the highest-priority ones or, with none available, to offline
/// storage; to a full JID, the resource if it is there.
pub(crate) fn fan_in(ctx: &mut Ctx<'_>, s: &Stanza, recipients: &[Jid], interest: Option<&str>) {
    if let Some(feature) = interest {
        return super::caps::fan_in(ctx, s, recipients, feature);
    }
    let headline = s.stype() == "headline";
    let out = Outbound::Addressed(s.raw.clone());
    for r in recipients {
        if !ctx.env.cfg.serves(r.domain()) {
            continue;
        }
        match r {
            Jid::Full(full) => {
                if let Some(sess) = ctx.st.session(full) {
                    ctx.send(&sess.sink, out.clone());
                }
            }
            Jid::Bare(user) => {
                let best = ctx
                    .st
                    .sessions(user)
                    .iter()
                    .filter(|x| x.available && x.priority >= 0)
                    .map(|x| x.priority)
                    .max();
                let mut n = 0;
                for x in ctx.st.sessions(user) {
                    let pick =
                        x.available && x.priority >= 0 && (headline || Some(x.priority) == best);
                    if pick && ctx.send(&x.sink, out.clone()) {
                        n += 1;
                    }
                }
                if n == 0 && !headline && ctx.env.accounts.exists(user).unwrap_or(false) {
                    let raw = proto::stanza::with_to(&s.raw, user.as_str());
                    if let Ok(addressed) = Stanza::parse(&raw) {
                        store_offline(ctx, user, &addressed);
                    }
                }
            }
        }
    }
}

/// Whether a message is worth keeping for later: it carries something other
/// than chat states (XEP-0085) or receipts-only noise.
fn worth_storing(s: &Stanza) -> bool {
    let Ok(el) = s.element(ns::CLIENT) else {
        return false;
    };
    el.elements()
        .any(|c| c.ns != "http://jabber.org/protocol/chatstates")
}

fn store_offline(ctx: &mut Ctx<'_>, user: &BareJid, s: &Stanza) {
    if !worth_storing(s) {
        return;
    }
    let stamped = with_delay(&s.raw, user.domain());
    let sh = ctx.env;
    match sh
        .store
        .0
        .offline()
        .push_in(&mut ctx.writes, user, &stamped)
    {
        Ok(Ok(_)) => {}
        Ok(Err(_full)) => ctx.bounce(
            s,
            StanzaCondition::ServiceUnavailable,
            Some("the recipient's offline storage is full"),
        ),
        Err(e) => {
            tracing::error!(user = %user, error = %e, "offline store failed");
            ctx.bounce(s, StanzaCondition::InternalServerError, None);
        }
    }
}

/// Insert `<delay/>` (XEP-0203) before the closing tag.
fn with_delay(raw: &[u8], domain: &str) -> Bytes {
    let delay = format!(
        "<delay xmlns='{}' from='{}' stamp='{}'>Offline Storage</delay>",
        ns::DELAY,
        proto::element::escape(domain),
        crate::time::now_stamp()
    );
    let close = raw.iter().rposition(|&b| b == b'<').unwrap_or(raw.len());
    let mut out = Vec::with_capacity(raw.len() + delay.len());
    out.extend_from_slice(&raw[..close]);
    out.extend_from_slice(delay.as_bytes());
    out.extend_from_slice(&raw[close..]);
    Bytes::from(out)
}

/// Send stored messages to a resource that just became available with a
/// non-negative priority (XEP-0160 §5), then drop them from storage.
pub(crate) fn flush_offline(ctx: &mut Ctx<'_>, full: &proto::FullJid) {
    let user = full.bare();
    let items = match ctx.store().offline().list(&user) {
        Ok(items) => items,
        Err(e) => {
            tracing::error!(user = %user, error = %e, "reading offline messages failed");
            return;
        }
    };
    let Some(last) = items.last().map(|(seq, _)| *seq) else {
        return;
    };
    let Some(sess) = ctx.st.session(full) else {
        return;
    };
    let mut delivered_all = true;
    let mut through = None;
    for (seq, raw) in items {
        if ctx.send(&sess.sink, Outbound::Stanza(Bytes::from(raw))) {
            through = Some(seq);
        } else {
            delivered_all = false;
            break;
        }
    }
    let upto = if delivered_all { Some(last) } else { through };
    if let Some(seq) = upto
        && let Err(e) = ctx
            .env
            .store
            .0
            .offline()
            .remove_through_in(&mut ctx.writes, &user, seq)
    {
        tracing::error!(user = %user, error = %e, "removing delivered offline messages failed");
    }
}

/// The body of a message, for this module's tests.
#[cfg(test)]
fn body_of(raw: &[u8]) -> Option<String> {
    let el = proto::Element::parse(raw, ns::CLIENT, &[]).ok()?;
    el.child("body", ns::CLIENT).map(proto::Element::text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn delay_goes_before_the_closing_tag() {
        let out = super::with_delay(b"<message to='a@b'><body>x</body></message>", "b");
        let s = std::str::from_utf8(&out).expect("utf8");
        assert!(s.starts_with(
            "<message to='a@b'><body>x</body><delay xmlns='urn:xmpp:delay' from='b' stamp='"
        ));
        assert!(s.ends_with("</delay></message>"));
        assert_eq!(super::body_of(&out).as_deref(), Some("x"));
    }
}
