//! Presence (RFC 6121 §4): initial presence with probes, broadcast to
//! contacts with a subscription from the user, directed presence,
//! unavailable presence when a session ends, and probe answers.
//! Subscription requests are in `subscription.rs`.

use bytes::Bytes;
use proto::roster::SubAction;
use proto::stanza::{Kind, Stanza};
use proto::{BareJid, FullJid, Jid, ns};

use super::pubsub::pep;
use super::{Ctx, caps, message, presence_of, subscription};
use crate::session::Outbound;

/// A presence from one of this shard's users' sessions.
pub(crate) fn outbound(ctx: &mut Ctx<'_>, from: &FullJid, s: Stanza) {
    let ptype = s.stype().to_string();
    match (&s.to, ptype.as_str()) {
        (None, "" | "unavailable") => broadcast(ctx, from, s),
        (Some(to), t) => {
            if let Some(action) = SubAction::parse(t) {
                subscription::outbound(ctx, from, to.bare(), action, s);
            } else if matches!(t, "" | "unavailable" | "error") {
                directed(ctx, from, to.clone(), s);
            }
            // A client may not probe (RFC 6121 §4.3); anything else is ignored.
        }
        _ => {}
    }
}

/// RFC 6121 §4.6: presence sent to one entity; remembered so that it gets
/// unavailable presence when the session goes offline.
fn directed(ctx: &mut Ctx<'_>, from: &FullJid, to: Jid, s: Stanza) {
    // With federation off, available presence to a domain this server
    // does not host (a room of a MUC service elsewhere, say) cannot be
    // delivered, and the sender is told rather than left waiting (RFC 6120
    // §10.4.3). Unavailable and error presence are not answered.
    if s.stype().is_empty() && !ctx.cfg().hosts(to.domain()) && !ctx.env.federation.enabled() {
        ctx.bounce(
            &s,
            proto::error::StanzaCondition::RemoteServerNotFound,
            Some("server-to-server is not enabled"),
        );
        return;
    }
    if s.stype().is_empty()
        && to.local().is_some()
        && ctx.cfg().is_muc_service(to.domain())
        && too_many_rooms(ctx, from, &to)
    {
        ctx.bounce(
            &s,
            proto::error::StanzaCondition::PolicyViolation,
            Some("in too many rooms already (muc.max_rooms_per_user)"),
        );
        return;
    }
    if let Some(sess) = ctx.st.session_mut(from) {
        let unavailable = s.stype() == "unavailable";
        sess.directed.retain(|j| j != &to);
        if !unavailable && s.stype() != "error" {
            sess.directed.push(to.clone());
        }
    }
    ctx.route(s);
}

/// Whether entering the room of `to` would put the account of `from` in
/// more rooms than `muc.max_rooms_per_user` (counted over its sessions;
/// a room it is in already does not count again).
fn too_many_rooms(ctx: &Ctx<'_>, from: &FullJid, to: &Jid) -> bool {
    let cfg = ctx.cfg();
    let mut rooms: Vec<&str> = ctx
        .st
        .sessions(&from.bare())
        .iter()
        .flat_map(|s| &s.directed)
        .filter(|j| j.local().is_some() && cfg.is_muc_service(j.domain()))
        .map(|j| j.bare_str())
        .collect();
    if rooms.contains(&to.bare_str()) {
        return false;
    }
    rooms.sort_unstable();
    rooms.dedup();
    rooms.len() >= cfg.muc.max_rooms_per_user
}

/// A room's unavailable or error presence for an occupant's own session
/// (it left, changed its nick, was kicked or banned, could not enter, the
/// room was destroyed): the session is not in the room as that occupant,
/// and owes it no unavailable presence. What is left of the session's
/// directed presence to rooms is the rooms it is in.
pub(crate) fn left_room(ctx: &mut Ctx<'_>, s: &Stanza, recipients: &[Jid]) {
    let Some(from) = &s.from else { return };
    for r in recipients {
        if let Jid::Full(full) = r
            && ctx
                .st
                .session(full)
                .is_some_and(|sess| sess.directed.contains(from))
            && let Some(sess) = ctx.st.session_mut(full)
        {
            sess.directed.retain(|j| j != from);
        }
    }
}

fn priority_of(s: &Stanza) -> i32 {
    s.element(ns::CLIENT)
        .ok()
        .and_then(|e| e.child("priority", ns::CLIENT).map(|p| p.text()))
        .and_then(|t| t.trim().parse::<i32>().ok())
        .map(|p| p.clamp(-128, 127))
        .unwrap_or(0)
}

/// Presence to the server: broadcast (RFC 6121 §4.2, §4.4, §4.5).
fn broadcast(ctx: &mut Ctx<'_>, from: &FullJid, s: Stanza) {
    let available = s.stype() != "unavailable";
    let priority = if available { priority_of(&s) } else { 0 };
    let user = from.bare();
    let caps = if available {
        caps::on_presence(ctx, from, &s)
    } else {
        None
    };
    let (was_available, directed) = match ctx.st.session_mut(from) {
        Some(sess) => {
            let was = sess.available;
            sess.available = available;
            sess.priority = priority;
            sess.presence = if available { Some(s.clone()) } else { None };
            sess.caps = caps;
            if !available {
                // Newly available again later: last PEP items again.
                sess.sent_once = None;
            }
            let directed = if available {
                Vec::new()
            } else {
                std::mem::take(&mut sess.directed)
            };
            (was, directed)
        }
        None => return,
    };
    if !available && !was_available {
        return;
    }
    if !available {
        keep_last_unavailable(ctx, &user, from, &s);
    }
    let fromj = Jid::Full(from.clone());
    let roster = match ctx.store().rosters().get_all(&user) {
        Ok((_, items)) => items,
        Err(e) => {
            tracing::error!(user = %user, error = %e, "roster read failed");
            Vec::new()
        }
    };
    for item in roster.iter().filter(|i| i.state.sub.has_from()) {
        ctx.route(s.restamped(Some(fromj.clone()), Some(Jid::Bare(item.jid.clone()))));
    }
    for to in directed {
        if roster
            .iter()
            .any(|i| i.state.sub.has_from() && i.jid.as_str() == to.bare_str())
        {
            continue;
        }
        ctx.route(s.restamped(Some(fromj.clone()), Some(to)));
    }
    // The user's own available resources, this one included (§4.2.2).
    for sess in ctx.st.sessions(&user) {
        if sess.available || &sess.jid == from {
            let to = Jid::Full(sess.jid.clone());
            ctx.send(
                &sess.sink,
                Outbound::Stanza(s.rewrite(Some(&fromj), Some(&to))),
            );
        }
    }
    if available && !was_available {
        // Initial presence: probe the contacts we are subscribed to (§4.3),
        // collect the others' presence, re-send pending requests (§3.1.3),
        // deliver offline messages (XEP-0160).
        let me = Jid::Bare(user.clone());
        for item in roster.iter().filter(|i| i.state.sub.has_to()) {
            ctx.route(presence_of(
                "probe",
                me.clone(),
                Jid::Bare(item.jid.clone()),
            ));
        }
        for other in ctx.st.sessions(&user) {
            if other.available
                && &other.jid != from
                && let (Some(p), Some(me_sess)) = (&other.presence, ctx.st.session(from))
            {
                let to = Jid::Full(from.clone());
                let ofrom = Jid::Full(other.jid.clone());
                ctx.send(
                    &me_sess.sink,
                    Outbound::Stanza(p.rewrite(Some(&ofrom), Some(&to))),
                );
            }
        }
        if let Some(sess) = ctx.st.session(from) {
            for item in roster.iter().filter(|i| i.state.pending_in) {
                // The request as the contact sent it (RFC 6121 §3.1.3); a
                // bare one for a request kept before requests were stored.
                let stored = ctx
                    .store()
                    .rosters()
                    .request_in(&ctx.writes, &user, &item.jid)
                    .unwrap_or_else(|e| {
                        tracing::error!(user = %user, error = %e, "reading a subscription request failed");
                        None
                    });
                let raw = match stored {
                    Some(raw) => Bytes::from(raw),
                    None => Bytes::from(format!(
                        "<presence type='subscribe' from='{}' to='{}'/>",
                        proto::element::escape(item.jid.as_str()),
                        proto::element::escape(user.as_str())
                    )),
                };
                ctx.send(&sess.sink, Outbound::Stanza(raw));
            }
        }
        if priority >= 0 {
            message::flush_offline(ctx, from);
            // The last items of the account's own PEP nodes (XEP-0163
            // §4.3.4), where this resource's capabilities ask for them.
            pep::last_items_on_presence(ctx, &user, from);
        }
    }
}

/// The most of an unavailable presence's bytes kept for probes.
const MAX_KEPT_UNAVAILABLE: usize = 4096;

/// When the user's last available resource goes: keep its unavailable
/// presence if it says something (a status), to answer probes with it
/// (RFC 6121 §4.3.2); forget an older one otherwise.
fn keep_last_unavailable(ctx: &mut Ctx<'_>, user: &BareJid, from: &FullJid, s: &Stanza) {
    if ctx.st.sessions(user).iter().any(|x| x.available) {
        return;
    }
    let rosters = ctx.env.store.0.rosters();
    let says_something = !s.empty
        && s.element(ns::CLIENT)
            .is_ok_and(|e| e.elements().next().is_some());
    let keep = says_something && s.raw.len() <= MAX_KEPT_UNAVAILABLE;
    let result = if keep {
        let raw = s.rewrite(Some(&Jid::Full(from.clone())), None);
        rosters.set_last_unavailable_in(&mut ctx.writes, user, Some(&raw))
    } else {
        // A write only when there is something to forget.
        match rosters.last_unavailable_in(&ctx.writes, user) {
            Ok(Some(_)) => rosters.set_last_unavailable_in(&mut ctx.writes, user, None),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        }
    };
    if let Err(e) = result {
        tracing::error!(user = %user, error = %e, "keeping the last unavailable presence failed");
    }
}

/// The session is going away: broadcast unavailable if it was available.
pub(crate) fn went_offline(ctx: &mut Ctx<'_>, jid: &FullJid) {
    let Some(sess) = ctx.st.session(jid) else {
        return;
    };
    if !sess.available && sess.directed.is_empty() {
        return;
    }
    let raw = Bytes::from(format!(
        "<presence type='unavailable' from='{}'/>",
        proto::element::escape(jid.as_str())
    ));
    let fromj = Jid::Full(jid.clone());
    let s = Stanza {
        kind: Kind::Presence,
        to: None,
        from: Some(fromj),
        id: None,
        stype: Some("unavailable".into()),
        attrs: vec![("type".into(), "unavailable".into())],
        raw,
        head_len: 0,
        empty: true,
        trail: Default::default(),
    };
    if sess.available {
        broadcast(ctx, jid, s);
    } else if let Some(sess) = ctx.st.session_mut(jid) {
        let directed = std::mem::take(&mut sess.directed);
        for to in directed {
            ctx.route(s.restamped(s.from.clone(), Some(to)));
        }
    }
}

/// A session of `jid` ended at a core node that died, so its state is gone
/// with it: unless the resource is bound here again, the user's contacts
/// with a subscription to its presence get unavailable presence from it
/// (RFC 6121 §4.5.2). Directed presence it had sent is not known here.
pub(crate) fn lost_elsewhere(ctx: &mut Ctx<'_>, jid: &FullJid) {
    if ctx.st.session(jid).is_some() {
        return;
    }
    let user = jid.bare();
    let roster = match ctx.store().rosters().get_all(&user) {
        Ok((_, items)) => items,
        Err(e) => {
            tracing::error!(user = %user, error = %e, "roster read failed");
            return;
        }
    };
    for item in roster.iter().filter(|i| i.state.sub.has_from()) {
        ctx.route(super::presence_of(
            "unavailable",
            Jid::Full(jid.clone()),
            Jid::Bare(item.jid.clone()),
        ));
    }
}

/// Presence for an existing local user (inbound, RFC 6121 §4 and §8.5).
pub(crate) fn inbound(ctx: &mut Ctx<'_>, user: &BareJid, s: Stanza) {
    let t = s.stype().to_string();
    if let Some(action) = SubAction::parse(&t) {
        let Some(from) = s.from.as_ref().map(Jid::bare) else {
            return;
        };
        subscription::inbound(ctx, user, from, action, s);
        return;
    }
    match t.as_str() {
        "probe" => answer_probe(ctx, user, s),
        "" | "unavailable" | "error" => {
            if t == "error"
                && let Some(to) = &s.to
                && s.from
                    .as_ref()
                    .is_some_and(|f| ctx.cfg().is_muc_service(f.domain()))
            {
                left_room(ctx, &s, std::slice::from_ref(to));
            }
            if t.is_empty()
                && let Some(Jid::Full(contact)) = &s.from
                && has_caps(&s)
            {
                // A contact's resource is available: the last items of
                // this account's PEP nodes it may see and asks for
                // (XEP-0163 §4.3.4; once per resource, see `caps.rs`).
                pep::last_items_on_presence(ctx, user, contact);
            }
            deliver_presence(ctx, user, &s);
        }
        _ => {}
    }
}

/// Whether a presence carries entity capabilities (XEP-0115), cheaply.
fn has_caps(s: &Stanza) -> bool {
    let needle = ns::CAPS.as_bytes();
    s.raw.windows(needle.len()).any(|w| w == needle)
}

/// Presence (available, unavailable or error) to an account: to the
/// addressed resource, or to every available one.
fn deliver_presence(ctx: &mut Ctx<'_>, user: &BareJid, s: &Stanza) {
    match &s.to {
        Some(Jid::Full(full)) => {
            if let Some(sess) = ctx.st.session(full) {
                ctx.send(&sess.sink, Outbound::Stanza(s.raw.clone()));
            }
        }
        // To the bare JID: every available resource, errors too (the
        // answer to a subscription request, which carries the bare JID,
        // comes back this way).
        _ => {
            ctx.deliver_to(user, |x| x.available, &s.raw);
        }
    }
}

/// RFC 6121 §4.3.2: answer a probe with the presence of each available
/// resource if the prober is subscribed, with unavailable if none is, and
/// with unsubscribed if the prober has no subscription.
fn answer_probe(ctx: &mut Ctx<'_>, user: &BareJid, s: Stanza) {
    let Some(prober) = s.from.clone() else { return };
    let subscribed = match ctx.store().rosters().get(user, &prober.bare()) {
        Ok(Some(item)) => item.state.sub.has_from(),
        _ => false,
    };
    let me = Jid::Bare(user.clone());
    if !subscribed {
        ctx.route(presence_of("unsubscribed", me, prober));
        return;
    }
    let mut sent = false;
    let mut out = Vec::new();
    for sess in ctx.st.sessions(user) {
        if let (true, Some(p)) = (sess.available, &sess.presence) {
            let from = Jid::Full(sess.jid.clone());
            out.push(p.restamped(Some(from), Some(prober.clone())));
            sent = true;
        }
    }
    for st in out {
        ctx.route(st);
    }
    if !sent {
        // The last unavailable presence as the user sent it, if it said
        // something; else a bare one.
        let kept = ctx
            .store()
            .rosters()
            .last_unavailable_in(&ctx.writes, user)
            .ok()
            .flatten()
            .and_then(|raw| Stanza::parse(&raw).ok());
        match kept {
            Some(k) => {
                let from = k.from.clone().unwrap_or(me);
                ctx.route(k.restamped(Some(from), Some(prober)));
            }
            None => ctx.route(presence_of("unavailable", me, prober)),
        }
    }
}

/// Presence for a local address with no account: subscription requests and
/// probes are answered with unsubscribed (RFC 6121 §3.1.3, §4.3.2).
pub(crate) fn to_unknown_user(ctx: &mut Ctx<'_>, s: &Stanza) {
    if !matches!(s.stype(), "subscribe" | "probe") {
        return;
    }
    let (Some(to), Some(from)) = (s.to.clone(), s.from.clone()) else {
        return;
    };
    ctx.route(presence_of(
        "unsubscribed",
        Jid::Bare(to.bare()),
        Jid::Bare(from.bare()),
    ));
}

/// Send the presence of each available resource of `user` to `to`
/// (after a new subscription from it, RFC 6121 §3.1.5), or unavailable.
pub(crate) fn send_current(ctx: &mut Ctx<'_>, user: &BareJid, to: &Jid, unavailable: bool) {
    let mut out = Vec::new();
    for sess in ctx.st.sessions(user) {
        if !sess.available {
            continue;
        }
        let from = Jid::Full(sess.jid.clone());
        if unavailable {
            out.push(presence_of("unavailable", from, to.clone()));
        } else if let Some(p) = &sess.presence {
            out.push(p.restamped(Some(from), Some(to.clone())));
        }
    }
    for s in out {
        ctx.route(s);
    }
}
