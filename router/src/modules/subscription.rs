//! Presence subscriptions (RFC 6121 §3): the server side of subscribe,
//! subscribed, unsubscribe and unsubscribed, for the user who sends them
//! (outbound) and the user who receives them (inbound), using the state
//! machine of RFC 6121 Appendix A in `proto::roster`.

use proto::error::StanzaCondition;
use proto::roster::{SubAction, SubState, Subscription};
use proto::stanza::Stanza;
use proto::{BareJid, FullJid, Jid};
use storage::RosterItem;

use super::{Ctx, presence, presence_of, roster};
use crate::session::Outbound;

fn load(ctx: &Ctx<'_>, user: &BareJid, contact: &BareJid) -> Option<RosterItem> {
    match ctx.store().rosters().get_in(&ctx.writes, user, contact) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(user = %user, error = %e, "roster read failed");
            None
        }
    }
}

fn new_item(contact: &BareJid) -> RosterItem {
    RosterItem {
        jid: contact.clone(),
        name: None,
        groups: Vec::new(),
        state: SubState::default(),
        hidden: true,
    }
}

/// The most of a subscription request's bytes kept for delivery at the
/// next login; a larger one (its extensions) is kept without children.
const MAX_STORED_REQUEST: usize = 16 * 1024;

/// Persist the new state and push it if the item is in the roster. A
/// request no longer pending is forgotten with it.
fn save(ctx: &mut Ctx<'_>, user: &BareJid, mut item: RosterItem, new: SubState, push: bool) {
    if item.state.pending_in
        && !new.pending_in
        && let Err(e) =
            ctx.env
                .store
                .0
                .rosters()
                .remove_request_in(&mut ctx.writes, user, &item.jid)
    {
        tracing::error!(user = %user, error = %e, "forgetting a subscription request failed");
    }
    item.state = new;
    let empty = new == SubState::default();
    let rosters = ctx.env.store.0.rosters();
    let result = if empty && item.hidden {
        rosters.remove_in(&mut ctx.writes, user, &item.jid)
    } else {
        rosters.put_in(&mut ctx.writes, user, &item)
    };
    match result {
        Ok(ver) => {
            if push && !item.hidden {
                roster::push(ctx, user, &item, ver, false);
            }
        }
        Err(e) => tracing::error!(user = %user, error = %e, "roster write failed"),
    }
}

/// An account goes: its contacts hear that every subscription between
/// them ended (`unsubscribe` where the account was subscribed or asking,
/// `unsubscribed` where the contact was, RFC 6121 §3.2, §3.3), so that no
/// roster elsewhere keeps a subscription, or a request, of an account that
/// no longer exists, which a new account of the same name would inherit.
pub(crate) fn cancel_all(ctx: &mut Ctx<'_>, user: &BareJid) {
    let items = match ctx.store().rosters().get_all(user) {
        Ok((_, items)) => items,
        Err(e) => {
            tracing::error!(user = %user, error = %e, "roster read failed");
            return;
        }
    };
    let me = Jid::Bare(user.clone());
    for item in items {
        let contact = Jid::Bare(item.jid.clone());
        let st = item.state;
        if st.sub.has_to() || st.pending_out {
            ctx.route(presence_of("unsubscribe", me.clone(), contact.clone()));
        }
        if st.sub.has_from() || st.pending_in || st.approved {
            ctx.route(presence_of("unsubscribed", me.clone(), contact));
        }
    }
}

/// The user sends a subscription stanza to a contact.
pub(crate) fn outbound(
    ctx: &mut Ctx<'_>,
    from: &FullJid,
    contact: BareJid,
    action: SubAction,
    s: Stanza,
) {
    let user = from.bare();
    if contact == user {
        return;
    }
    let existing = load(ctx, &user, &contact);
    let mut item = existing.clone().unwrap_or_else(|| new_item(&contact));
    let old = item.state;
    let t = old.outbound(action);
    // Asking for or granting a subscription puts the contact in the roster.
    let becomes_visible = item.hidden
        && (t.new.pending_out
            || t.new.sub != Subscription::None
            || (action == SubAction::Subscribed && t.new.approved));
    if becomes_visible {
        item.hidden = false;
    }
    let creates = existing.is_none() && (t.new != old || becomes_visible);
    if creates && !roster::has_room(ctx, &user) {
        // The user's own roster is full: as for a roster set (RFC 6121
        // §2.3.3), the action is not allowed; nothing goes to the contact.
        let text = roster::full_text(ctx);
        return ctx.bounce(&s, StanzaCondition::NotAllowed, Some(&text));
    }
    if t.new != old || becomes_visible {
        save(ctx, &user, item, t.new, t.push || becomes_visible);
    }
    if t.forward {
        // Subscription stanzas are stamped with the bare JID (RFC 6121 §3.1.2).
        let me = Jid::Bare(user.clone());
        let to = Jid::Bare(contact.clone());
        ctx.route(s.restamped(Some(me), Some(to)));
    }
    let contact_j = Jid::Bare(contact);
    if !old.sub.has_from() && t.new.sub.has_from() {
        // §3.1.5: the contact now gets the user's presence.
        presence::send_current(ctx, &user, &contact_j, false);
    }
    if old.sub.has_from() && !t.new.sub.has_from() {
        // §3.2.1: the contact no longer gets it.
        presence::send_current(ctx, &user, &contact_j, true);
    }
}

/// A subscription stanza from a contact reaches the user's shard.
pub(crate) fn inbound(
    ctx: &mut Ctx<'_>,
    user: &BareJid,
    contact: BareJid,
    action: SubAction,
    s: Stanza,
) {
    if &contact == user {
        return;
    }
    let existing = load(ctx, user, &contact);
    let creates = existing.is_none();
    let item = existing.unwrap_or_else(|| new_item(&contact));
    let old = item.state;
    let t = old.inbound(action);
    if creates && t.new != old && !roster::has_room(ctx, user) {
        // The recipient's roster has no room to keep the request: the
        // recipient lacks the resources to serve it, `resource-constraint`
        // (RFC 6120 §8.3.3.18, type wait: room may be made later).
        let text = roster::full_text(ctx);
        return ctx.bounce(&s, StanzaCondition::ResourceConstraint, Some(&text));
    }
    if t.new != old {
        save(ctx, user, item, t.new, t.push);
    }
    let me = Jid::Bare(user.clone());
    let contact_j = Jid::Bare(contact.clone());
    if action == SubAction::Subscribe && t.new.pending_in {
        // RFC 6121 §3.1.3: the complete request, delivered as sent at the
        // user's next login (XEP-0379 pre-auth tokens ride in it).
        let mut raw = s.rewrite(Some(&contact_j), Some(&me));
        if raw.len() > MAX_STORED_REQUEST {
            raw = presence_of("subscribe", contact_j.clone(), me.clone()).raw;
        }
        let rosters = ctx.env.store.0.rosters();
        if let Err(e) = rosters.put_request_in(&mut ctx.writes, user, &contact, &raw) {
            tracing::error!(user = %user, error = %e, "keeping a subscription request failed");
        }
    }
    if t.forward {
        let raw = s.rewrite(Some(&contact_j), Some(&me));
        for sess in ctx.st.sessions(user) {
            if sess.available {
                ctx.send(&sess.sink, Outbound::Stanza(raw.clone()));
            }
        }
    }
    if t.auto_reply_subscribed {
        ctx.route(presence_of("subscribed", me.clone(), contact_j.clone()));
        if !old.sub.has_from() && t.new.sub.has_from() {
            presence::send_current(ctx, user, &contact_j, false);
        }
    }
    if t.auto_reply_unsubscribed {
        // RFC 6121 A.3.2 note 1: confirm the cancellation.
        ctx.route(presence_of("unsubscribed", me.clone(), contact_j.clone()));
    }
    if action == SubAction::Unsubscribe && old.sub.has_from() && !t.new.sub.has_from() {
        // §3.3.3: the contact stops getting the user's presence.
        presence::send_current(ctx, user, &contact_j, true);
    }
}
