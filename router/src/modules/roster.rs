//! Roster management (RFC 6121 §2): get with versioning (§2.6), set,
//! remove with subscription cancellation (§2.5.2), and pushes to the
//! resources that asked for the roster.

use bytes::Bytes;
use proto::error::StanzaCondition;
use proto::roster::{SubAction, SubState};
use proto::stanza::Stanza;
use proto::{BareJid, Element, Jid, ns};
use storage::RosterItem;

use super::handler::{IqHandler, Target, TargetKind};
use super::{Ctx, subscription};

const MAX_NAME: usize = 1023;
const MAX_GROUPS: usize = 100;

pub(crate) struct Roster;

/// The `<item/>` for one roster item.
pub(crate) fn item_element(item: &RosterItem, remove: bool) -> Element {
    let mut e = Element::new("item", ns::ROSTER).with_attr("jid", item.jid.as_str());
    if remove {
        e.set_attr("subscription", "remove");
        return e;
    }
    if let Some(n) = &item.name {
        e.set_attr("name", n.clone());
    }
    e.set_attr("subscription", item.state.sub.as_str());
    if item.state.pending_out {
        e.set_attr("ask", "subscribe");
    }
    if item.state.approved {
        e.set_attr("approved", "true");
    }
    for g in &item.groups {
        e.push(Element::new("group", ns::ROSTER).with_text(g.clone()));
    }
    e
}

/// Whether `user`'s roster can take one more item. Every stored item
/// counts, hidden ones too (a pending inbound request is stored like any
/// other item), so no one can grow a roster past the limit, its owner or
/// strangers sending subscription requests.
pub(crate) fn has_room(ctx: &Ctx<'_>, user: &BareJid) -> bool {
    match ctx.store().rosters().get_all(user) {
        Ok((_, items)) => items.len() < ctx.cfg().max_roster_items,
        Err(e) => {
            // The write that follows meets the same store and fails there.
            tracing::error!(user = %user, error = %e, "roster read failed");
            true
        }
    }
}

/// The text of the errors for a full roster.
pub(crate) fn full_text(ctx: &Ctx<'_>) -> String {
    format!(
        "the roster is full (at most {} items)",
        ctx.cfg().max_roster_items
    )
}

/// Push a changed item to every interested resource (RFC 6121 §2.1.6).
pub(crate) fn push(ctx: &Ctx<'_>, user: &BareJid, item: &RosterItem, ver: u64, remove: bool) {
    let query = Element::new("query", ns::ROSTER)
        .with_attr("ver", ver.to_string())
        .with_child(item_element(item, remove));
    for sess in ctx.st.sessions(user) {
        if !sess.interested {
            continue;
        }
        let mut s = format!(
            "<iq type='set' id='{}' to='{}'>",
            ctx.env.next_id(),
            proto::element::escape(sess.jid.as_str())
        );
        query.write(&mut s, ns::CLIENT);
        s.push_str("</iq>");
        ctx.send(&sess.sink, crate::Outbound::Stanza(Bytes::from(s)));
    }
}

impl IqHandler for Roster {
    fn namespace(&self) -> &'static str {
        ns::ROSTER
    }

    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::OwnAccount]
    }

    fn features(&self, t: TargetKind) -> &'static [&'static str] {
        match t {
            TargetKind::Server => &[ns::ROSTER_VER, ns::PRE_APPROVAL],
            _ => &[],
        }
    }

    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, payload: &Element, _t: &Target) {
        let Some(Jid::Full(from)) = iq.from.clone() else {
            return;
        };
        let user = from.bare();
        if iq.stype() == "get" {
            if let Some(sess) = ctx.st.session_mut(&from) {
                sess.interested = true;
            }
            let (ver, items) = match ctx.store().rosters().get_all(&user) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(user = %user, error = %e, "roster read failed");
                    return ctx.bounce(iq, StanzaCondition::InternalServerError, None);
                }
            };
            // §2.6.3: an unchanged roster is answered with an empty result.
            if payload.attr("ver") == Some(ver.to_string().as_str()) {
                return ctx.iq_result(iq, None);
            }
            let mut q = Element::new("query", ns::ROSTER).with_attr("ver", ver.to_string());
            for item in items.iter().filter(|i| !i.hidden) {
                q.push(item_element(item, false));
            }
            return ctx.iq_result(iq, Some(&q));
        }
        set(ctx, iq, &user, payload);
    }
}

fn set(ctx: &mut Ctx<'_>, iq: &Stanza, user: &BareJid, payload: &Element) {
    let mut items = payload
        .elements()
        .filter(|e| e.name == "item" && e.ns == ns::ROSTER);
    let (Some(el), None) = (items.next(), items.next()) else {
        return ctx.bounce(
            iq,
            StanzaCondition::BadRequest,
            Some("a roster set carries exactly one item"),
        );
    };
    let Some(contact) = el.attr("jid").and_then(|j| Jid::parse(j).ok()) else {
        return ctx.bounce(
            iq,
            StanzaCondition::BadRequest,
            Some("the item's jid is missing or invalid"),
        );
    };
    let Jid::Bare(contact) = contact else {
        return ctx.bounce(
            iq,
            StanzaCondition::BadRequest,
            Some("roster items are bare JIDs"),
        );
    };
    if &contact == user {
        return ctx.bounce(
            iq,
            StanzaCondition::NotAllowed,
            Some("you cannot add yourself"),
        );
    }
    let existing = match ctx.store().rosters().get(user, &contact) {
        Ok(v) => v,
        Err(_) => return ctx.bounce(iq, StanzaCondition::InternalServerError, None),
    };
    if el.attr("subscription") == Some("remove") {
        let Some(item) = existing.filter(|i| !i.hidden) else {
            return ctx.bounce(iq, StanzaCondition::ItemNotFound, None);
        };
        return remove(ctx, iq, user, item);
    }
    let name = el
        .attr("name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    if name.as_ref().is_some_and(|n| n.len() > MAX_NAME) {
        return ctx.bounce(iq, StanzaCondition::NotAcceptable, Some("name too long"));
    }
    let mut groups: Vec<String> = Vec::new();
    for g in el
        .elements()
        .filter(|e| e.name == "group" && e.ns == ns::ROSTER)
    {
        let text = g.text();
        if text.is_empty() || text.len() > MAX_NAME {
            return ctx.bounce(
                iq,
                StanzaCondition::NotAcceptable,
                Some("empty or too long group name"),
            );
        }
        if groups.contains(&text) {
            return ctx.bounce(iq, StanzaCondition::BadRequest, Some("duplicate group"));
        }
        groups.push(text);
    }
    if groups.len() > MAX_GROUPS {
        return ctx.bounce(iq, StanzaCondition::NotAcceptable, Some("too many groups"));
    }
    // A server-configured maximum roster size is a policy that refuses the
    // action whatever the client retries, which is `not-allowed` (RFC 6120
    // §8.3.3.10, type cancel) among the roster set's error cases of
    // RFC 6121 §2.3.3; `resource-constraint` would say "wait and retry".
    if existing.is_none() && !has_room(ctx, user) {
        let text = full_text(ctx);
        return ctx.bounce(iq, StanzaCondition::NotAllowed, Some(&text));
    }
    // §2.1.2: the client cannot set subscription or ask; they are kept.
    let state = existing.as_ref().map(|i| i.state).unwrap_or_default();
    let item = RosterItem {
        jid: contact,
        name,
        groups,
        state,
        hidden: false,
    };
    let sh = ctx.env;
    match sh.store.0.rosters().put_in(&mut ctx.writes, user, &item) {
        Ok(ver) => {
            push(ctx, user, &item, ver, false);
            ctx.iq_result(iq, None);
        }
        Err(e) => {
            tracing::error!(user = %user, error = %e, "roster write failed");
            ctx.bounce(iq, StanzaCondition::InternalServerError, None);
        }
    }
}

/// §2.5.2: removing an item cancels the subscriptions both ways first.
fn remove(ctx: &mut Ctx<'_>, iq: &Stanza, user: &BareJid, item: RosterItem) {
    let Some(Jid::Full(from)) = iq.from.clone() else {
        return;
    };
    let st: SubState = item.state;
    let mut actions = Vec::new();
    if st.sub.has_to() || st.pending_out {
        actions.push(SubAction::Unsubscribe);
    }
    if st.sub.has_from() || st.pending_in || st.approved {
        actions.push(SubAction::Unsubscribed);
    }
    for a in actions {
        let s = super::presence_of(
            a.as_str(),
            Jid::Full(from.clone()),
            Jid::Bare(item.jid.clone()),
        );
        subscription::outbound(ctx, &from, item.jid.clone(), a, s);
    }
    let sh = ctx.env;
    match sh
        .store
        .0
        .rosters()
        .remove_in(&mut ctx.writes, user, &item.jid)
    {
        Ok(ver) => {
            push(ctx, user, &item, ver, true);
            ctx.iq_result(iq, None);
        }
        Err(e) => {
            tracing::error!(user = %user, error = %e, "roster remove failed");
            ctx.bounce(iq, StanzaCondition::InternalServerError, None);
        }
    }
}
