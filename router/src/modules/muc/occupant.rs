//! Occupants' presence (XEP-0045 §7.1 to §7.6, §7.14): entering a room
//! (creating it if it does not exist, §10.1), changing availability or
//! nickname, and leaving; and IQs to an occupant (XEP-0410 self-ping).

use proto::element::escape;
use proto::error::StanzaCondition as C;
use proto::stanza::Stanza;
use proto::{BareJid, Element, FullJid, Jid};

use super::{
    Affiliation, NS_MUC, NS_OCCUPANT_ID, NS_USER, Occupant, Past, Role, Room, load, made,
    occupant_id, occupant_jid,
};
use crate::modules::Ctx;

/// Presence to `room/nick` from `from`.
pub(crate) fn presence(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    nick: &str,
    from: &FullJid,
    s: &Stanza,
) {
    match s.stype() {
        "" => available(ctx, room_jid, nick, from, s),
        // An occupant whose client answers with an error has gone (§18.1
        // leaves it to the service; treating it as gone is the common way).
        "unavailable" => leave(ctx, room_jid, from, None, "", &content(s)),
        "error" => leave(ctx, room_jid, from, None, "", ""),
        // Subscriptions and probes to a room mean nothing.
        _ => {}
    }
}

fn available(ctx: &mut Ctx<'_>, room_jid: &BareJid, nick: &str, from: &FullJid, s: &Stanza) {
    let room = match load(ctx, room_jid) {
        Ok(r) => r,
        Err(e) => return ctx.bounce_with(s, &e),
    };
    let current = room.and_then(|r| r.occupant_by_jid(from).map(|o| o.nick.clone()));
    match current {
        Some(old) if old == nick => update(ctx, room_jid, from, s),
        Some(old) => change_nick(ctx, room_jid, &old, nick, from, s),
        None => enter(ctx, room_jid, nick, from, s),
    }
}

/// The children of a presence that an occupant's presence in the room
/// carries on (show, status, priority, caps and the like), without the
/// MUC extensions of the client's own.
fn content(s: &Stanza) -> String {
    let Ok(el) = s.element(proto::ns::CLIENT) else {
        return String::new();
    };
    let mut out = String::new();
    for c in el.elements() {
        if c.ns == NS_MUC || c.ns == NS_USER || c.ns == NS_OCCUPANT_ID {
            continue;
        }
        c.write(&mut out, proto::ns::CLIENT);
    }
    out
}

/// The presence of `o` in `room`, with its real JID if `show_jid`, the
/// status codes given and `extra` in the MUC element; unavailable when
/// `gone`.
pub(crate) fn presence_of(
    room_jid: &BareJid,
    room: &Room,
    o: &Occupant,
    gone: bool,
    show_jid: bool,
    codes: &[u16],
    extra: &str,
) -> Option<Stanza> {
    presence_with_item(room_jid, room, o, gone, show_jid, codes, "", extra, "")
}

/// [`presence_of`] with `item` inside the `<item/>` (the actor and
/// reason of a kick or ban, §8.2, §9.1).
#[allow(clippy::too_many_arguments)]
pub(crate) fn presence_with_item(
    room_jid: &BareJid,
    room: &Room,
    o: &Occupant,
    gone: bool,
    show_jid: bool,
    codes: &[u16],
    item: &str,
    extra: &str,
    exit: &str,
) -> Option<Stanza> {
    let from = occupant_jid(room_jid, &o.nick)?;
    let aff = room.affiliation(o.jid.bare_str());
    let role = if gone { Role::None } else { o.role };
    let mut x = format!(
        "<x xmlns='{NS_USER}'><item affiliation='{}' role='{}'",
        aff.name(),
        role.name()
    );
    if show_jid {
        x.push_str(&format!(" jid='{}'", escape(o.jid.as_str())));
    }
    if item.is_empty() {
        x.push_str("/>");
    } else {
        x.push('>');
        x.push_str(item);
        x.push_str("</item>");
    }
    for c in codes {
        x.push_str(&format!("<status code='{c}'/>"));
    }
    x.push_str(extra);
    x.push_str("</x>");
    // Gone: what its exit said (a status, §7.14), nothing of before.
    let body = if gone {
        exit.to_string()
    } else {
        o.presence.clone()
    };
    let inner = format!(
        "{body}{x}<occupant-id xmlns='{NS_OCCUPANT_ID}' id='{}'/>",
        escape(&o.occupant_id)
    );
    let attrs = if gone {
        vec![("type".to_string(), "unavailable".to_string())]
    } else {
        Vec::new()
    };
    // Written, not parsed again: entering a room of N sends N of these.
    Some(Stanza::written(
        proto::stanza::Kind::Presence,
        Some(from),
        attrs,
        &inner,
    ))
}

/// Send `o`'s presence to every occupant but `o` itself (moderators, or
/// all in a non-anonymous room, see its real JID), and to `o` its own with
/// status 110 and `self_codes`.
#[allow(clippy::too_many_arguments)]
fn broadcast(
    ctx: &Ctx<'_>,
    room_jid: &BareJid,
    room: &Room,
    o: &Occupant,
    gone: bool,
    codes: &[u16],
    self_codes: &[u16],
    item: &str,
    exit: &str,
) {
    let (mut seeing, mut blind) = (Vec::new(), Vec::new());
    let others = if room.broadcasts(o.role) {
        &room.occupants[..]
    } else {
        &[]
    };
    for other in others {
        if other.jid == o.jid {
            continue;
        }
        if room.shows_jids_to(other.role) {
            seeing.push(Jid::Full(other.jid.clone()));
        } else {
            blind.push(Jid::Full(other.jid.clone()));
        }
    }
    for (list, show) in [(seeing, true), (blind, false)] {
        if !list.is_empty()
            && let Some(p) =
                presence_with_item(room_jid, room, o, gone, show, codes, item, "", exit)
        {
            ctx.notify(p, list);
        }
    }
    let mut own: Vec<u16> = codes.to_vec();
    own.push(110);
    own.extend_from_slice(self_codes);
    own.sort_unstable();
    own.dedup();
    if let Some(p) = presence_with_item(room_jid, room, o, gone, true, &own, item, "", exit) {
        ctx.notify(p, vec![Jid::Full(o.jid.clone())]);
    }
}

/// Why `nick` may not be a nickname here: it must be in the form the
/// PRECIS Nickname profile gives it (RFC 8266, as XEP-0045 §7.2.2 asks)
/// and within the service's length limit.
fn nick_problem(ctx: &Ctx<'_>, nick: &str) -> Option<&'static str> {
    if nick.len() > ctx.cfg().muc.max_nick_bytes {
        return Some("the nickname is too long");
    }
    match proto::jid::nickname(nick) {
        Ok(n) if n == nick => None,
        Ok(_) => Some("the nickname is not in its RFC 8266 form (spaces, width or composition)"),
        Err(_) => Some("the nickname is not a valid nickname (RFC 8266)"),
    }
}

/// Whether another occupant than `except` has a nickname that is the same
/// as `nick` (RFC 8266 comparison: case-insensitive).
fn nick_taken(room: &Room, nick: &str, except: Option<&FullJid>) -> bool {
    let key = proto::jid::nickname_key(nick);
    room.occupants
        .iter()
        .any(|o| Some(&o.jid) != except && o.nick_key == key)
}

/// Entering (§7.2), creating the room if it does not exist (§10.1).
fn enter(ctx: &mut Ctx<'_>, room_jid: &BareJid, nick: &str, from: &FullJid, s: &Stanza) {
    if let Some(why) = nick_problem(ctx, nick) {
        return ctx.bounce(s, C::JidMalformed, Some(why));
    }
    let x = s
        .element(proto::ns::CLIENT)
        .ok()
        .and_then(|e| e.child("x", NS_MUC).cloned());
    let bare = from.bare();
    let mut created = false;
    if !ctx.st.rooms.contains_key(room_jid) {
        // Rooms are created by this server's own users.
        if !ctx.cfg().serves(from.domain()) {
            return ctx.bounce(s, C::NotAllowed, Some("only local users create rooms"));
        }
        // A client that enters without the MUC extension (the old
        // groupchat protocol, §7.1) cannot configure the room: it gets an
        // instant room at once.
        let mut room = Room::created(x.is_some());
        room.config.history_length = room.config.history_length.min(ctx.cfg().muc.max_history);
        room.affiliations
            .insert(bare.to_string(), Affiliation::Owner);
        ctx.st.rooms.insert(room_jid.clone(), room);
        super::replica::mark(ctx.st, room_jid, "");
        created = true;
    }
    let max_service = ctx.cfg().muc.max_occupants;
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    let aff = room.affiliation(bare.as_str());
    let refusal = if room.locked && aff != Affiliation::Owner {
        // §10.1.1: until its owner configures it, the room is not there.
        Some((
            C::ItemNotFound,
            "the room is locked until its owner configures it",
        ))
    } else if aff == Affiliation::Outcast {
        Some((C::Forbidden, "you are banned from this room"))
    } else if room.config.members_only && aff < Affiliation::Member {
        Some((C::RegistrationRequired, "this room is for members only"))
    } else if room.config.password.is_some()
        && aff < Affiliation::Owner
        && x.as_ref()
            .and_then(|x| super::child_text(x, "password", NS_MUC))
            != room.config.password
    {
        Some((
            C::NotAuthorized,
            "a password is required to enter this room",
        ))
    } else if nick_taken(room, nick, None) {
        Some((C::Conflict, "that nickname is in use"))
    } else if aff < Affiliation::Admin && {
        let max = match room.config.max_users {
            0 => max_service,
            n => n.min(max_service),
        };
        room.occupants.len() >= max
    } {
        Some((C::ServiceUnavailable, "the room is full"))
    } else {
        None
    };
    if let Some((cond, text)) = refusal {
        return ctx.bounce(s, cond, Some(text));
    }
    let o = Occupant {
        nick: nick.to_string(),
        nick_key: proto::jid::nickname_key(nick),
        jid: from.clone(),
        role: room.default_role(aff),
        presence: content(s),
        occupant_id: occupant_id(room_jid, &room.secret, bare.as_str()),
    };
    // The occupants there already, to the newcomer (§7.2.3).
    let me = Jid::Full(from.clone());
    for other in room.occupants.iter().filter(|o| room.broadcasts(o.role)) {
        if let Some(p) = presence_of(
            room_jid,
            room,
            other,
            false,
            room.shows_jids_to(o.role),
            &[],
            "",
        ) {
            ctx.notify(p, vec![me.clone()]);
        }
    }
    let Some(room) = ctx.st.rooms.get_mut(room_jid) else {
        return;
    };
    room.occupants.push(o.clone());
    let mut codes = Vec::new();
    if room.config.whois_anyone {
        codes.push(100);
    }
    super::replica::mark(ctx.st, room_jid, nick);
    if created {
        codes.push(201);
    }
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    broadcast(ctx, room_jid, room, &o, false, &[], &codes, "", "");
    if !created {
        history(ctx, room_jid, room, &me, x.as_ref());
    }
    subject(ctx, room_jid, room, &me);
}

/// The history on entering (§7.2.14), as the `<history/>` of the
/// entering presence limits it: `maxstanzas`, `maxchars`, `seconds`,
/// `since`.
fn history(ctx: &Ctx<'_>, room_jid: &BareJid, room: &Room, to: &Jid, x: Option<&Element>) {
    let h = x.and_then(|x| x.child("history", NS_MUC));
    let num = |k: &str| {
        h.and_then(|h| h.attr(k))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let max_stanzas = num("maxstanzas").unwrap_or(u64::MAX);
    let max_chars = num("maxchars").unwrap_or(u64::MAX);
    let now = now_secs();
    let oldest = match (num("seconds"), h.and_then(|h| h.attr("since"))) {
        (Some(secs), _) => now.saturating_sub(secs),
        (None, Some(since)) => crate::time::parse_stamp(since).unwrap_or(0),
        _ => 0,
    };
    let mut picked: Vec<&Past> = Vec::new();
    let mut chars = 0u64;
    for p in room.history.iter().rev() {
        if picked.len() as u64 >= max_stanzas || p.at_secs < oldest {
            break;
        }
        chars += p.chars as u64;
        if chars > max_chars {
            break;
        }
        picked.push(p);
    }
    for p in picked.into_iter().rev() {
        let delayed = with_delay(&p.raw, room_jid.as_str(), &p.stamp);
        if let Some(s) = made(&delayed) {
            ctx.notify(s, vec![to.clone()]);
        }
    }
}

/// `raw` with a XEP-0203 delay before its end tag.
fn with_delay(raw: &[u8], from: &str, stamp: &str) -> String {
    let text = String::from_utf8_lossy(raw);
    let close = text.rfind('<').unwrap_or(text.len());
    format!(
        "{}<delay xmlns='urn:xmpp:delay' from='{}' stamp='{}'/>{}",
        &text[..close],
        escape(from),
        escape(stamp),
        &text[close..]
    )
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The subject, to one who entered (§7.2.15): always sent, empty if none.
fn subject(ctx: &Ctx<'_>, room_jid: &BareJid, room: &Room, to: &Jid) {
    let (from, text) = match &room.subject {
        Some(s) => (
            occupant_jid(room_jid, &s.nick).unwrap_or(Jid::Bare(room_jid.clone())),
            s.text.clone(),
        ),
        None => (Jid::Bare(room_jid.clone()), String::new()),
    };
    let xml = format!(
        "<message xmlns='jabber:client' from='{}' type='groupchat' id='{}'><subject>{}</subject></message>",
        escape(from.as_str()),
        ctx.env.next_id(),
        escape(&text)
    );
    if let Some(s) = made(&xml) {
        ctx.notify(s, vec![to.clone()]);
    }
}

/// A new presence of an occupant (§7.7): to everyone.
fn update(ctx: &mut Ctx<'_>, room_jid: &BareJid, from: &FullJid, s: &Stanza) {
    let Some(room) = ctx.st.rooms.get_mut(room_jid) else {
        return;
    };
    let Some(o) = room.occupants.iter_mut().find(|o| &o.jid == from) else {
        return;
    };
    o.presence = content(s);
    let o = o.clone();
    super::replica::mark(ctx.st, room_jid, &o.nick);
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    broadcast(ctx, room_jid, room, &o, false, &[], &[], "", "");
}

/// A new nickname (§7.6): unavailable from the old one with status 303
/// and the new nick, then available from the new one.
fn change_nick(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    old: &str,
    nick: &str,
    from: &FullJid,
    s: &Stanza,
) {
    if let Some(why) = nick_problem(ctx, nick) {
        return ctx.bounce(s, C::JidMalformed, Some(why));
    }
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    if nick_taken(room, nick, Some(from)) {
        return ctx.bounce(s, C::Conflict, Some("that nickname is in use"));
    }
    let Some(before) = room.occupant_exact(old).cloned() else {
        return;
    };
    send_nick_gone(ctx, room_jid, room, &before, nick);
    let Some(room) = ctx.st.rooms.get_mut(room_jid) else {
        return;
    };
    let Some(o) = room.occupants.iter_mut().find(|o| &o.jid == from) else {
        return;
    };
    o.nick = nick.to_string();
    o.nick_key = proto::jid::nickname_key(nick);
    o.presence = content(s);
    let o = o.clone();
    super::replica::mark(ctx.st, room_jid, old);
    super::replica::mark(ctx.st, room_jid, nick);
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    broadcast(ctx, room_jid, room, &o, false, &[], &[], "", "");
}

/// The unavailable presence of a nick change (§7.6.3): status 303 and
/// the new nick in the item.
fn send_nick_gone(ctx: &Ctx<'_>, room_jid: &BareJid, room: &Room, o: &Occupant, new: &str) {
    let Some(from) = occupant_jid(room_jid, &o.nick) else {
        return;
    };
    let aff = room.affiliation(o.jid.bare_str());
    let heard = room.broadcasts(o.role);
    for other in room.occupants.iter().filter(|x| heard || x.jid == o.jid) {
        let own = other.jid == o.jid;
        let show = own || room.shows_jids_to(other.role);
        let mut x = format!(
            "<x xmlns='{NS_USER}'><item affiliation='{}' role='{}' nick='{}'",
            aff.name(),
            o.role.name(),
            escape(new)
        );
        if show {
            x.push_str(&format!(" jid='{}'", escape(o.jid.as_str())));
        }
        x.push_str("/><status code='303'/>");
        if own {
            x.push_str("<status code='110'/>");
        }
        x.push_str("</x>");
        let xml = format!(
            "<presence xmlns='jabber:client' from='{}' type='unavailable'>{x}<occupant-id xmlns='{NS_OCCUPANT_ID}' id='{}'/></presence>",
            escape(from.as_str()),
            o.occupant_id
        );
        if let Some(p) = made(&xml) {
            ctx.notify(p, vec![Jid::Full(other.jid.clone())]);
        }
    }
}

/// An occupant leaves (§7.14), or is removed with `codes` (kick 307, ban
/// 301, affiliation change 321, members-only 322, shutdown 332) and
/// `item` in its `<item/>` (who removed it and why, §8.2, §9.1); `exit`
/// is what its own unavailable presence said (a status, §7.14).
pub(crate) fn leave(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    from: &FullJid,
    codes: Option<&[u16]>,
    item: &str,
    exit: &str,
) {
    let Some(room) = ctx.st.rooms.get_mut(room_jid) else {
        return;
    };
    let Some(i) = room.occupants.iter().position(|o| &o.jid == from) else {
        return;
    };
    let o = room.occupants.remove(i);
    super::replica::mark(ctx.st, room_jid, &o.nick);
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    // The others hear of it, and the one who left too (with 110).
    broadcast(
        ctx,
        room_jid,
        room,
        &o,
        true,
        codes.unwrap_or(&[]),
        &[],
        item,
        exit,
    );
    super::leave_if_empty(ctx, room_jid);
}

/// An IQ to an occupant (§7.5 of XEP-0045 lets occupants query each
/// other through the room): a self-ping (XEP-0410) is answered by the
/// room; another get or set is passed on to the occupant's session (a
/// vCard request to its account, XEP-0054), from the asker's occupant
/// JID, and the answer comes back the same way.
pub(crate) fn iq_to_occupant(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    nick: &str,
    from: &Jid,
    s: &Stanza,
) {
    // An id for a request passed on (taken before the room is borrowed).
    let fresh = ctx.env.next_id();
    let room = match load(ctx, room_jid) {
        Ok(Some(r)) => r,
        Ok(None) => return ctx.bounce(s, C::ItemNotFound, None),
        Err(e) => return ctx.bounce_with(s, &e),
    };
    let answer = matches!(s.stype(), "result" | "error");
    // Who asks (or answers): an occupant; an answer may come from the
    // account of one (a vCard answered by the server for it).
    let me = match from {
        Jid::Full(f) => room.occupant_by_jid(f),
        Jid::Bare(b) if answer => room
            .occupants
            .iter()
            .find(|o| o.jid.bare_str() == b.as_str()),
        Jid::Bare(_) => None,
    }
    .map(|o| o.nick.clone());
    let payload = s
        .element(proto::ns::CLIENT)
        .ok()
        .and_then(|e| e.first_element().cloned());
    let ping = payload
        .as_ref()
        .is_some_and(|p| p.name == "ping" && p.ns == proto::ns::PING);
    let Some(me) = me else {
        if !answer {
            // XEP-0410 §3.2: a self-ping from one not in the room (any
            // more); §6.6: any other query of an occupant from outside.
            let (c, text) = if ping {
                (C::NotAcceptable, "you are not in this room")
            } else {
                (C::BadRequest, "only occupants query occupants")
            };
            ctx.bounce(s, c, Some(text));
        }
        return;
    };
    if !answer && room.occupant(nick).is_some_and(|o| o.nick == me) && ping {
        return ctx.iq_result(s, None);
    }
    let Some(target) = room.occupant(nick).cloned() else {
        if !answer {
            ctx.bounce(s, C::ItemNotFound, None);
        }
        return;
    };
    let id = s.id.clone().unwrap_or_default();
    let answerer = from.bare_str().to_string();
    // The id the IQ goes on with: a request gets one of the room's (two
    // askers may use the same id with one occupant), an answer its
    // asker's again.
    let out_id;
    if answer {
        // Only the answer to an IQ the room passed on goes back, and only
        // to the occupant that asked (`room/nick` is the asker).
        match room.asked.remove(&(answerer, id)) {
            Some((asker, original)) if asker == target.nick => out_id = original,
            _ => return,
        }
    } else {
        let vcard = payload.as_ref().is_some_and(|p| p.ns == proto::ns::VCARD);
        let asker = room.occupant_exact(&me).map_or(Role::None, |o| o.role);
        // The room's rule for private messages covers IQs between
        // occupants too, but for vCards (avatars, XEP-0153, which every
        // client fetches of the others).
        if !vcard && !super::chat::may_private(room.config.allow_pm, asker) {
            return ctx.bounce(
                s,
                C::Forbidden,
                Some("private exchanges are not allowed here"),
            );
        }
        if room.asked.len() >= MAX_ASKED {
            room.asked.clear();
        }
        out_id = fresh;
        room.asked.insert(
            (target.jid.bare_str().to_string(), out_id.clone()),
            (me.clone(), id),
        );
    }
    let vcard = payload.as_ref().is_some_and(|p| p.ns == proto::ns::VCARD);
    let to = if vcard && !answer {
        Jid::Bare(target.jid.bare())
    } else {
        Jid::Full(target.jid.clone())
    };
    let (Some(from_occupant), Ok(mut el)) =
        (occupant_jid(room_jid, &me), s.element(proto::ns::CLIENT))
    else {
        return;
    };
    el.set_attr("from", from_occupant.as_str());
    el.set_attr("to", to.as_str());
    el.set_attr("id", out_id);
    if let Some(out) = made(&el.to_xml(proto::ns::CLIENT)) {
        ctx.route(out);
    }
}

/// Most IQs between occupants a room waits for answers to; past it, it
/// forgets them all (their answers are dropped).
const MAX_ASKED: usize = 1000;

/// `Past` of a message as broadcast.
pub(crate) fn past(raw: bytes::Bytes, chars: usize) -> Past {
    Past {
        raw,
        at_secs: now_secs(),
        stamp: crate::time::now_stamp(),
        chars,
    }
}
