//! Messages in a room (XEP-0045 §7.4, §7.5, §7.8, §8.1): groupchat
//! messages reflected to every occupant with the room's stanza id
//! (XEP-0359), the subject, private messages between occupants, and
//! mediated invitations.

use proto::element::escape;
use proto::error::StanzaCondition as C;
use proto::stanza::{Kind, Stanza};
use proto::{BareJid, Element, FullJid, Jid};

use super::occupant::past;
use super::{
    Affiliation, NS_OCCUPANT_ID, NS_SID, NS_USER, PmPolicy, Role, Subject, load, made,
    occupant_jid, save,
};
use crate::modules::Ctx;

/// A message to the room's bare JID.
pub(crate) fn to_room(ctx: &mut Ctx<'_>, room_jid: &BareJid, from: &FullJid, s: &Stanza) {
    if s.is_error() {
        // An occupant's client bounced a message of the room: nothing to do.
        return;
    }
    let room = match load(ctx, room_jid) {
        Ok(Some(r)) if !r.locked => r,
        Ok(_) => return ctx.bounce(s, C::ItemNotFound, None),
        Err(e) => return ctx.bounce_with(s, &e),
    };
    let Ok(el) = s.element(proto::ns::CLIENT) else {
        return ctx.bounce(s, C::BadRequest, None);
    };
    if s.stype() != "groupchat" {
        if let Some(x) = el.child("x", NS_USER) {
            return invite(ctx, room_jid, from, s, x);
        }
        if let Some(x) = el.child("x", proto::ns::DATA_FORMS) {
            return voice(ctx, room_jid, from, s, x);
        }
        return ctx.bounce(
            s,
            C::BadRequest,
            Some("messages to a room are of type groupchat"),
        );
    }
    let Some(o) = room.occupant_by_jid(from).cloned() else {
        return ctx.bounce(s, C::NotAcceptable, Some("you are not in this room"));
    };
    if o.role < Role::Participant {
        return ctx.bounce(s, C::Forbidden, Some("visitors may not speak in this room"));
    }
    let body = el.child("body", proto::ns::CLIENT);
    let may_subject = o.role == Role::Moderator || room.config.change_subject;
    if el.child("subject", proto::ns::CLIENT).is_some() && !may_subject {
        // Also with a body: clients show any subject as a change.
        return ctx.bounce(
            s,
            C::Forbidden,
            Some("only moderators may change the subject"),
        );
    }
    if el
        .child("subject", proto::ns::CLIENT)
        .is_some_and(|x| x.text().len() > MAX_SUBJECT)
    {
        // Every entering occupant gets it.
        return ctx.bounce(
            s,
            C::NotAcceptable,
            Some("the subject is at most 4096 bytes"),
        );
    }
    if let (Some(subj), None) = (el.child("subject", proto::ns::CLIENT), body) {
        room.subject = Some(Subject {
            nick: o.nick.clone(),
            text: subj.text(),
        });
        if let Err(e) = save(ctx, room_jid) {
            return ctx.bounce_with(s, &e);
        }
    }
    // The message as every occupant gets it: from the sender's occupant
    // JID, with the room's stanza id (a stanza id claiming the room that
    // the sender put in is dropped, XEP-0359 §3.1).
    let Some(from_occupant) = occupant_jid(room_jid, &o.nick) else {
        return;
    };
    // Written straight into its bytes, not built as a tree and parsed
    // again: this runs for every message of every room.
    let attrs: Vec<(String, String)> = el
        .attrs
        .iter()
        .filter(|(k, _)| k != "to" && k != "from")
        .cloned()
        .collect();
    let mut inner = String::with_capacity(s.raw.len() + 160);
    for c in el.elements() {
        // What only the room may say: its stanza id, occupant ids, the
        // muc#user extension (status codes, items), and a delay in its
        // name (a backdated message).
        let ours =
            (c.ns == NS_SID && c.name == "stanza-id" && c.attr("by") == Some(room_jid.as_str()))
                || c.ns == NS_OCCUPANT_ID
                || c.ns == NS_USER
                || (c.ns == NS_DELAY
                    && c.attr("from")
                        .is_some_and(|f| f == room_jid.as_str() || f == room_jid.domain()));
        if !ours {
            c.write(&mut inner, proto::ns::CLIENT);
        }
    }
    inner.push_str(&format!(
        "<stanza-id xmlns='{NS_SID}' id='{}' by='{}'/><occupant-id xmlns='{NS_OCCUPANT_ID}' id='{}'/>",
        stanza_id(room_jid, from, s.id.as_deref(), &s.raw),
        escape(room_jid.as_str()),
        escape(&o.occupant_id)
    ));
    let out = Stanza::written(Kind::Message, Some(from_occupant), attrs, &inner);
    let Some(room) = ctx.st.rooms.get_mut(room_jid) else {
        return;
    };
    if body.is_some() && room.config.history_length > 0 {
        // `maxchars` counts the whole stanza's XML (§7.2.15).
        let chars = String::from_utf8_lossy(&out.raw).chars().count();
        room.history.push_back(past(out.raw.clone(), chars));
        while room.history.len() > room.config.history_length {
            room.history.pop_front();
        }
    }
    let everyone: Vec<Jid> = room
        .occupants
        .iter()
        .map(|o| Jid::Full(o.jid.clone()))
        .collect();
    ctx.notify(out, everyone);
}

/// The room's stanza id (XEP-0359) of a message: random when the
/// message has no id of its own; else derived from the room, the sender's
/// full JID, that id and the whole message as sent, so that a message its
/// sender's edge sent again after a core node died (it had no
/// confirmation) carries the same stanza id both times and clients and
/// archives see one message, while two messages that differ in anything
/// (a client that numbers its ids from 1 each session) get two.
fn stanza_id(room: &BareJid, from: &FullJid, id: Option<&str>, raw: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        let a: u128 = rand::random();
        return format!("{a:032x}");
    };
    let half = |salt: &str| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, room.as_str(), from.as_str(), id, raw).hash(&mut h);
        h.finish()
    };
    format!(
        "{:016x}{:016x}",
        half("xmppd stanza id a"),
        half("xmppd stanza id b")
    )
}

/// A private message to `room/nick` (§7.5).
pub(crate) fn private(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    nick: &str,
    from: &FullJid,
    s: &Stanza,
) {
    if s.is_error() {
        return;
    }
    let room = match load(ctx, room_jid) {
        Ok(Some(r)) => r,
        Ok(None) => return ctx.bounce(s, C::ItemNotFound, None),
        Err(e) => return ctx.bounce_with(s, &e),
    };
    if s.stype() == "groupchat" {
        return ctx.bounce(
            s,
            C::BadRequest,
            Some("a groupchat message goes to the room"),
        );
    }
    let Some(me) = room.occupant_by_jid(from).cloned() else {
        return ctx.bounce(s, C::NotAcceptable, Some("you are not in this room"));
    };
    if !may_private(room.config.allow_pm, me.role) {
        return ctx.bounce(
            s,
            C::Forbidden,
            Some("private messages are not allowed here"),
        );
    }
    let Some(target) = room.occupant(nick).map(|o| o.jid.clone()) else {
        return ctx.bounce(s, C::ItemNotFound, Some("no such occupant"));
    };
    let Some(from_occupant) = occupant_jid(room_jid, &me.nick) else {
        return;
    };
    let Ok(mut el) = s.element(proto::ns::CLIENT) else {
        return ctx.bounce(s, C::BadRequest, None);
    };
    el.remove_attr("to");
    el.set_attr("from", from_occupant.as_str());
    // The room's occupant id of the sender, never the sender's own
    // (XEP-0421 §4).
    el.children
        .retain(|c| !matches!(c, proto::element::Node::Element(e) if e.ns == NS_OCCUPANT_ID));
    if el.child("x", NS_USER).is_none() {
        el.push(Element::new("x", NS_USER));
    }
    el.push(Element::new("occupant-id", NS_OCCUPANT_ID).with_attr("id", me.occupant_id.clone()));
    if let Some(out) = made(&el.to_xml(proto::ns::CLIENT)) {
        ctx.notify(out, vec![Jid::Full(target)]);
    }
}

/// Whether an occupant in `role` may send private messages (and IQs) to
/// others under `policy`.
pub(crate) fn may_private(policy: PmPolicy, role: Role) -> bool {
    match policy {
        PmPolicy::Anyone => true,
        PmPolicy::Participants => role >= Role::Participant,
        PmPolicy::Moderators => role == Role::Moderator,
        PmPolicy::None => false,
    }
}

/// Most invitations in one message.
const MAX_INVITES: usize = 20;

/// Most invitations a room remembers (for their declines); past it, it
/// forgets them all.
const MAX_INVITED: usize = 1000;

/// A mediated invitation (§7.8.2) or its decline (§7.8.3).
fn invite(ctx: &mut Ctx<'_>, room_jid: &BareJid, from: &FullJid, s: &Stanza, x: &Element) {
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    if let Some(decline) = x.child("decline", NS_USER) {
        // Passed on to the one who invited the decliner (§7.8.3), and
        // only to one who did: the room is no relay for anyone's text.
        let Some(inviter) = room.invited.get(from.bare_str()).cloned() else {
            return ctx.bounce(
                s,
                C::NotAcceptable,
                Some("you have no invitation to decline"),
            );
        };
        let reason = super::child_text(decline, "reason", NS_USER).unwrap_or_default();
        let xml = format!(
            "<message xmlns='jabber:client' from='{}'><x xmlns='{NS_USER}'><decline from='{}'><reason>{}</reason></decline></x></message>",
            escape(room_jid.as_str()),
            escape(from.bare_str()),
            escape(&reason)
        );
        if let Some(room) = ctx.st.rooms.get_mut(room_jid) {
            room.invited.remove(from.bare_str());
        }
        if let Some(m) = made(&xml) {
            ctx.notify(m, vec![Jid::Full(inviter)]);
        }
        return;
    }
    let invites: Vec<&Element> = x
        .elements()
        .filter(|c| c.name == "invite" && c.ns == NS_USER)
        .collect();
    if invites.is_empty() {
        return ctx.bounce(s, C::BadRequest, None);
    }
    if invites.len() > MAX_INVITES {
        return ctx.bounce(
            s,
            C::NotAcceptable,
            Some("at most 20 invitations in one message"),
        );
    }
    let Some(me) = room.occupant_by_jid(from) else {
        return ctx.bounce(s, C::NotAcceptable, Some("you are not in this room"));
    };
    // `muc#roomconfig_allowinvites` (§10.2): whether occupants below
    // admin may invite, in open rooms as in members-only ones.
    let aff = room.affiliation(from.bare_str());
    let may = aff >= Affiliation::Admin || room.config.allow_invites;
    if !may || me.role < Role::Participant {
        return ctx.bounce(s, C::Forbidden, Some("you may not invite to this room"));
    }
    let password = room.config.password.clone();
    let members_only = room.config.members_only;
    let mut invitees = Vec::new();
    for inv in invites {
        let Some(to) = inv.attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return ctx.bounce(
                s,
                C::JidMalformed,
                Some("an invite names its invitee in 'to'"),
            );
        };
        let reason = super::child_text(inv, "reason", NS_USER).unwrap_or_default();
        // One invitation per invitee, however often the message names it.
        if !invitees
            .iter()
            .any(|(j, _): &(Jid, String)| j.bare_str() == to.bare_str())
        {
            invitees.push((to, reason));
        }
    }
    let mut changed = false;
    let max_affiliations = ctx.cfg().muc.max_affiliations;
    for (to, reason) in invitees {
        // In a members-only room the invitee becomes a member (§7.8.2),
        // while the room's lists have room.
        if members_only
            && let Some(room) = ctx.st.rooms.get_mut(room_jid)
            && room.affiliation(to.bare_str()) < Affiliation::Member
            && room.affiliation(to.bare_str()) != Affiliation::Outcast
        {
            if room.affiliations.len() >= max_affiliations {
                ctx.bounce(
                    s,
                    C::ResourceConstraint,
                    Some("this room has as many members as it may keep"),
                );
                break;
            }
            room.affiliations
                .insert(to.bare_str().to_string(), Affiliation::Member);
            changed = true;
        }
        let mut xml = format!(
            "<message xmlns='jabber:client' from='{}'><x xmlns='{NS_USER}'><invite from='{}'><reason>{}</reason></invite>",
            escape(room_jid.as_str()),
            escape(from.as_str()),
            escape(&reason)
        );
        if let Some(p) = &password {
            xml.push_str(&format!("<password>{}</password>", escape(p)));
        }
        xml.push_str(&format!(
            "</x><x xmlns='jabber:x:conference' jid='{}'/></message>",
            escape(room_jid.as_str())
        ));
        if let Some(room) = ctx.st.rooms.get_mut(room_jid) {
            if room.invited.len() >= MAX_INVITED {
                room.invited.clear();
            }
            room.invited.insert(to.bare_str().to_string(), from.clone());
        }
        if let Some(m) = made(&xml) {
            ctx.notify(m, vec![to]);
        }
    }
    if changed && let Err(e) = save(ctx, room_jid) {
        ctx.bounce_with(s, &e);
    }
}

const NS_REQUEST: &str = "http://jabber.org/protocol/muc#request";

const NS_DELAY: &str = "urn:xmpp:delay";

/// Longest subject, in bytes.
const MAX_SUBJECT: usize = 4096;

/// A voice request (§7.13) from a visitor, passed to the moderators as a
/// form to approve; or a moderator's approval (§8.6), which gives the
/// occupant voice.
fn voice(ctx: &mut Ctx<'_>, room_jid: &BareJid, from: &FullJid, s: &Stanza, x: &Element) {
    use proto::form::{Field, Form, FormKind};
    let Ok(form) = Form::from_element(x) else {
        return ctx.bounce(s, C::BadRequest, Some("not a data form"));
    };
    if form.form_type() != Some(NS_REQUEST) || form.kind != FormKind::Submit {
        return ctx.bounce(s, C::BadRequest, Some("not a muc#request form"));
    }
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    let Some(me) = room.occupant_by_jid(from).cloned() else {
        return ctx.bounce(s, C::NotAcceptable, Some("you are not in this room"));
    };
    if me.role == Role::Moderator {
        // An approval: the form names the occupant by nick.
        let allow = form
            .boolean("muc#request_allow")
            .ok()
            .flatten()
            .unwrap_or(false);
        let Some(nick) = form.value("muc#roomnick").map(str::to_string) else {
            return ctx.bounce(s, C::BadRequest, Some("muc#roomnick is missing"));
        };
        if !allow {
            return;
        }
        let Some(o) = room.occupant(&nick) else {
            return ctx.bounce(s, C::ItemNotFound, Some("no such occupant"));
        };
        if o.role != Role::Visitor {
            return;
        }
        let jid = o.jid.clone();
        super::owner::set_role(ctx, room_jid, &jid, Role::Participant);
        return;
    }
    if me.role != Role::Visitor {
        // Who has voice has nothing to ask for.
        return;
    }
    let request = Form::new(FormKind::Form)
        .with_form_type(NS_REQUEST)
        .with_title("Voice request")
        .with_instructions("To give this occupant voice, set muc#request_allow to true and submit.")
        .with_field(Field::text_single("muc#role", "participant").with_label("Requested role"))
        .with_field(Field::jid_single("muc#jid", Jid::Full(me.jid.clone())).with_label("User ID"))
        .with_field(Field::text_single("muc#roomnick", me.nick.clone()).with_label("Room nickname"))
        .with_field(
            Field::boolean("muc#request_allow", false).with_label("Grant voice to this person?"),
        );
    let mut m = Element::new("message", proto::ns::CLIENT);
    m.set_attr("from", room_jid.as_str());
    m.set_attr("id", ctx.env.next_id());
    m.push(request.to_element());
    let moderators: Vec<Jid> = room
        .occupants
        .iter()
        .filter(|o| o.role == Role::Moderator)
        .map(|o| Jid::Full(o.jid.clone()))
        .collect();
    if let Some(out) = made(&m.to_xml(proto::ns::CLIENT)) {
        ctx.notify(out, moderators);
    }
}
