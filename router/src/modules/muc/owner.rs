//! Owners, admins and moderators (XEP-0045 §10, §9, §8): the room's
//! configuration form (`muc#roomconfig`, which also unlocks a new room:
//! an empty submission makes it an instant room, §10.1.2), destroying a
//! room (§10.9), and the lists of affiliations and roles with their
//! changes (kick, voice, ban, members, moderators, admins, owners).

use proto::element::escape;
use proto::error::{StanzaCondition as C, StanzaError};
use proto::form::{Field, Form, FormKind, FormOption};
use proto::stanza::Stanza;
use proto::{BareJid, Element, FullJid, Jid};

use super::occupant::{leave, presence_of};
use super::{
    Affiliation, NS_ADMIN, NS_OWNER, NS_USER, PmPolicy, Role, Room, RoomConfig, load, made, save,
};
use crate::modules::Ctx;

const FORM_TYPE: &str = "http://jabber.org/protocol/muc#roomconfig";

/// An IQ to a room's bare JID.
pub(crate) fn room_iq(ctx: &mut Ctx<'_>, room_jid: &BareJid, from: &FullJid, s: &Stanza) {
    if !matches!(s.stype(), "get" | "set") {
        return;
    }
    let Ok(el) = s.element(proto::ns::CLIENT) else {
        return ctx.bounce(s, C::BadRequest, None);
    };
    let Some(p) = el.first_element().cloned() else {
        return ctx.bounce(s, C::BadRequest, None);
    };
    let result = match (p.ns.as_str(), s.stype()) {
        (proto::ns::DISCO_INFO, "get") => {
            super::disco::room_info(ctx, room_jid, from, p.attr("node"))
        }
        (proto::ns::DISCO_ITEMS, "get") => super::disco::room_items(ctx, room_jid, from),
        (NS_OWNER, "get") => config_form(ctx, room_jid, from),
        (NS_OWNER, "set") => owner_set(ctx, room_jid, from, &p),
        (NS_ADMIN, "get") => admin_get(ctx, room_jid, from, &p),
        (NS_ADMIN, "set") => admin_set(ctx, room_jid, from, &p),
        // A ping to the room itself (XEP-0199, which its disco#info lists).
        (proto::ns::PING, "get") => existing(ctx, room_jid, from).map(|_| None),
        _ => Err(StanzaError::new(C::ServiceUnavailable)),
    };
    match result {
        Ok(q) => ctx.iq_result(s, q.as_ref()),
        Err(e) => ctx.bounce_with(s, &e),
    }
    // A room read from the store to answer leaves memory again.
    super::leave_if_empty(ctx, room_jid);
}

fn err(c: C, text: &str) -> StanzaError {
    StanzaError::with_text(c, text)
}

/// The room, if it exists (a locked room is there for its owner only).
fn existing<'c>(
    ctx: &'c mut Ctx<'_>,
    room_jid: &BareJid,
    from: &FullJid,
) -> Result<&'c mut Room, StanzaError> {
    match load(ctx, room_jid)? {
        Some(r) if !r.locked || r.affiliation(from.bare_str()) == Affiliation::Owner => Ok(r),
        _ => Err(StanzaError::new(C::ItemNotFound)),
    }
}

fn jid_list(var: &str, jids: &[String]) -> Field {
    let mut f = Field::new(var, proto::form::FieldKind::JidMulti);
    f.values = jids.to_vec();
    f
}

/// The choices of `muc#roomconfig_maxusers`: the usual sizes, and the
/// room's own when it was set to another (any positive number is taken).
fn max_users_options(current: usize) -> Vec<FormOption> {
    let mut v: Vec<usize> = vec![10, 20, 30, 50, 100, 200, 500, 1000];
    if current > 0 && !v.contains(&current) {
        v.push(current);
        v.sort_unstable();
    }
    let mut o: Vec<FormOption> = v.iter().map(|n| FormOption::new(n.to_string())).collect();
    o.push(FormOption::new("none"));
    o
}

fn config_to_form(c: &RoomConfig, owners: &[String], admins: &[String]) -> Form {
    let pm = match c.allow_pm {
        PmPolicy::Anyone => "anyone",
        PmPolicy::Participants => "participants",
        PmPolicy::Moderators => "moderators",
        PmPolicy::None => "none",
    };
    let opts = |v: &[&str]| v.iter().map(|o| FormOption::new(*o)).collect::<Vec<_>>();
    Form::new(FormKind::Form)
        .with_form_type(FORM_TYPE)
        .with_title("Room configuration")
        .with_field(Field::text_single("muc#roomconfig_roomname", &c.name).with_label("Name"))
        .with_field(
            Field::text_single("muc#roomconfig_roomdesc", &c.description).with_label("Description"),
        )
        .with_field(
            Field::boolean("muc#roomconfig_persistentroom", c.persistent).with_label("Persistent"),
        )
        .with_field(
            Field::boolean("muc#roomconfig_publicroom", c.public)
                .with_label("Listed in the directory"),
        )
        .with_field(
            Field::boolean("muc#roomconfig_membersonly", c.members_only).with_label("Members only"),
        )
        .with_field(
            Field::boolean("muc#roomconfig_passwordprotectedroom", c.password.is_some())
                .with_label("Password protected"),
        )
        .with_field(
            Field::text_private(
                "muc#roomconfig_roomsecret",
                c.password.clone().unwrap_or_default(),
            )
            .with_label("Password"),
        )
        .with_field(
            Field::boolean("muc#roomconfig_moderatedroom", c.moderated).with_label("Moderated"),
        )
        .with_field(
            Field::list_single(
                "muc#roomconfig_maxusers",
                if c.max_users == 0 {
                    "none".to_string()
                } else {
                    c.max_users.to_string()
                },
                max_users_options(c.max_users),
            )
            .with_label("Most occupants"),
        )
        .with_field(
            Field::list_single(
                "muc#roomconfig_whois",
                if c.whois_anyone {
                    "anyone"
                } else {
                    "moderators"
                },
                opts(&["moderators", "anyone"]),
            )
            .with_label("Who may see real JIDs"),
        )
        .with_field(
            Field::boolean("muc#roomconfig_allowinvites", c.allow_invites)
                .with_label("Occupants may invite"),
        )
        .with_field(
            Field::list_single(
                "muc#roomconfig_allowpm",
                pm,
                opts(&["anyone", "participants", "moderators", "none"]),
            )
            .with_label("Who may send private messages"),
        )
        .with_field(
            Field::list_multi(
                "muc#roomconfig_presencebroadcast",
                [
                    (c.broadcast_moderator, "moderator"),
                    (c.broadcast_participant, "participant"),
                    (c.broadcast_visitor, "visitor"),
                ]
                .into_iter()
                .filter(|(on, _)| *on)
                .map(|(_, r)| r),
                opts(&["moderator", "participant", "visitor"]),
            )
            .with_label("Roles whose presence is broadcast"),
        )
        .with_field(
            Field::boolean("muc#roomconfig_changesubject", c.change_subject)
                .with_label("Occupants may change the subject"),
        )
        .with_field(
            Field::text_single("muc#maxhistoryfetch", c.history_length.to_string())
                .with_label("Messages of history sent on entering"),
        )
        .with_field(jid_list("muc#roomconfig_roomowners", owners).with_label("Owners"))
        .with_field(jid_list("muc#roomconfig_roomadmins", admins).with_label("Admins"))
}

/// Longest room name or description, in bytes: they go into every
/// listing of the room.
const MAX_TEXT_BYTES: usize = 1024;

fn short_text(var: &str, v: &str) -> Result<String, StanzaError> {
    if v.len() > MAX_TEXT_BYTES {
        return Err(err(
            C::NotAcceptable,
            &format!("{var}: at most {MAX_TEXT_BYTES} bytes"),
        ));
    }
    Ok(v.to_string())
}

/// The owner's configuration form (§10.2).
fn config_form(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    from: &FullJid,
) -> Result<Option<Element>, StanzaError> {
    let room = existing(ctx, room_jid, from)?;
    if room.affiliation(from.bare_str()) != Affiliation::Owner {
        return Err(err(C::Forbidden, "only owners configure the room"));
    }
    let list = |a: Affiliation| -> Vec<String> {
        room.affiliations
            .iter()
            .filter(|(_, x)| **x == a)
            .map(|(j, _)| j.clone())
            .collect()
    };
    let form = config_to_form(
        &room.config,
        &list(Affiliation::Owner),
        &list(Affiliation::Admin),
    );
    Ok(Some(
        Element::new("query", NS_OWNER).with_child(form.to_element()),
    ))
}

/// The owners and admins a configuration form sets, if it sets them.
type Lists = (Option<Vec<String>>, Option<Vec<String>>);

/// Apply a submitted configuration to `c`; the lists of owners and
/// admins, if given, come back.
fn apply(c: &mut RoomConfig, form: &Form, max_history: usize) -> Result<Lists, StanzaError> {
    let fe = |e: proto::form::FormError| e.to_stanza_error();
    let mut owners = None;
    let mut admins = None;
    let mut protected = c.password.is_some();
    let mut secret = c.password.clone();
    for (var, values) in form.submitted_values() {
        let first = values.first().map(String::as_str).unwrap_or("");
        let boolean =
            || -> Result<bool, StanzaError> { Ok(form.boolean(var).map_err(fe)?.unwrap_or(false)) };
        match var {
            "FORM_TYPE" => {}
            "muc#roomconfig_roomname" => c.name = short_text(var, first)?,
            "muc#roomconfig_roomdesc" => c.description = short_text(var, first)?,
            "muc#roomconfig_persistentroom" => c.persistent = boolean()?,
            "muc#roomconfig_publicroom" => c.public = boolean()?,
            "muc#roomconfig_membersonly" => c.members_only = boolean()?,
            "muc#roomconfig_passwordprotectedroom" => protected = boolean()?,
            "muc#roomconfig_roomsecret" => {
                secret = (!first.is_empty()).then(|| first.to_string());
            }
            "muc#roomconfig_moderatedroom" => c.moderated = boolean()?,
            "muc#roomconfig_maxusers" => {
                c.max_users = match first {
                    "" | "none" => 0,
                    n => n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        err(
                            C::NotAcceptable,
                            "muc#roomconfig_maxusers: a number or none",
                        )
                    })?,
                }
            }
            "muc#roomconfig_whois" => {
                c.whois_anyone = match first {
                    "anyone" => true,
                    "moderators" => false,
                    _ => {
                        return Err(err(
                            C::NotAcceptable,
                            "muc#roomconfig_whois: moderators or anyone",
                        ));
                    }
                }
            }
            "muc#roomconfig_allowinvites" => c.allow_invites = boolean()?,
            "muc#roomconfig_allowpm" | "muc#roomconfig_whocanpm" => {
                c.allow_pm = match first {
                    "anyone" => PmPolicy::Anyone,
                    "participants" => PmPolicy::Participants,
                    "moderators" => PmPolicy::Moderators,
                    "none" => PmPolicy::None,
                    _ => {
                        return Err(err(
                            C::NotAcceptable,
                            "muc#roomconfig_allowpm: anyone, participants, moderators or none",
                        ));
                    }
                }
            }
            "muc#roomconfig_presencebroadcast" => {
                let roles = form
                    .list_multi(var, &["moderator", "participant", "visitor"])
                    .map_err(fe)?;
                let has = |r: &str| roles.iter().any(|v| v == r);
                c.broadcast_moderator = has("moderator");
                c.broadcast_participant = has("participant");
                c.broadcast_visitor = has("visitor");
            }
            "muc#roomconfig_changesubject" => c.change_subject = boolean()?,
            "muc#maxhistoryfetch" | "muc#roomconfig_historylength" => {
                c.history_length = first
                    .parse::<usize>()
                    .map_err(|_| err(C::NotAcceptable, "muc#maxhistoryfetch: a number"))?
                    .min(max_history);
            }
            "muc#roomconfig_roomowners" => owners = Some(jids(values)?),
            "muc#roomconfig_roomadmins" => admins = Some(jids(values)?),
            other => {
                return Err(err(C::NotAcceptable, &format!("unknown field {other}")));
            }
        }
    }
    c.password = match (protected, secret) {
        (true, Some(p)) => Some(p),
        (true, None) => {
            return Err(err(
                C::NotAcceptable,
                "a password-protected room needs muc#roomconfig_roomsecret",
            ));
        }
        (false, _) => None,
    };
    Ok((owners, admins))
}

fn jids(values: &[String]) -> Result<Vec<String>, StanzaError> {
    values
        .iter()
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            BareJid::parse(v.trim())
                .map(|j| j.to_string())
                .map_err(|_| err(C::JidMalformed, &format!("{v:?} is not a bare JID")))
        })
        .collect()
}

/// A `muc#owner` set: a configuration form (submit or cancel, §10.1.2,
/// §10.2) or `<destroy/>` (§10.9).
fn owner_set(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    from: &FullJid,
    p: &Element,
) -> Result<Option<Element>, StanzaError> {
    let max_history = ctx.cfg().muc.max_history;
    let (max_occupants, max_affiliations) =
        (ctx.cfg().muc.max_occupants, ctx.cfg().muc.max_affiliations);
    let room = existing(ctx, room_jid, from)?;
    if room.affiliation(from.bare_str()) != Affiliation::Owner {
        return Err(err(C::Forbidden, "only owners configure the room"));
    }
    if let Some(d) = p.child("destroy", NS_OWNER) {
        destroy(ctx, room_jid, d)?;
        return Ok(None);
    }
    let Some(x) = p.child("x", proto::ns::DATA_FORMS) else {
        return Err(err(
            C::BadRequest,
            "a configuration form or destroy is expected",
        ));
    };
    let form = Form::from_element(x).map_err(|e| e.to_stanza_error())?;
    match form.kind {
        FormKind::Cancel => {
            // Cancelling the first configuration of a new room destroys
            // it (§10.1.3); later, it changes nothing.
            if room.locked {
                let jids: Vec<FullJid> = room.occupants.iter().map(|o| o.jid.clone()).collect();
                for j in jids {
                    leave(ctx, room_jid, &j, Some(&[]), "", "");
                }
                ctx.st.rooms.remove(room_jid);
                super::replica::mark(ctx.st, room_jid, "");
            }
            return Ok(None);
        }
        FormKind::Submit => {}
        _ => return Err(err(C::BadRequest, "submit or cancel the form")),
    }
    if let Some(t) = form.form_type()
        && t != FORM_TYPE
    {
        return Err(err(C::BadRequest, "the FORM_TYPE is muc#roomconfig"));
    }
    let mut config = room.config.clone();
    let (owners, admins) = apply(&mut config, &form, max_history)?;
    if config.max_users > max_occupants {
        return Err(err(
            C::NotAcceptable,
            "muc#roomconfig_maxusers is above the service's limit",
        ));
    }
    if owners.as_ref().map_or(0, Vec::len) + admins.as_ref().map_or(0, Vec::len) > max_affiliations
    {
        return Err(err(C::ResourceConstraint, "too many affiliations"));
    }
    // The affiliation changes the lists make, checked before anything
    // changes: a refused submission leaves the room as it was, locked
    // too (§10.1.2).
    let mut changes: Vec<(String, Affiliation)> = Vec::new();
    if let Some(owners) = &owners {
        if owners.is_empty() {
            return Err(err(C::Conflict, "a room keeps at least one owner"));
        }
        for (j, a) in &room.affiliations {
            if *a == Affiliation::Owner && !owners.contains(j) {
                changes.push((j.clone(), Affiliation::None));
            }
        }
        for o in owners {
            changes.push((o.clone(), Affiliation::Owner));
        }
    }
    if let Some(admins) = &admins {
        for (j, a) in &room.affiliations {
            if *a == Affiliation::Admin && !admins.contains(j) {
                changes.push((j.clone(), Affiliation::None));
            }
        }
        for a in admins {
            if owners.as_ref().is_some_and(|o| o.contains(a)) {
                return Err(err(
                    C::Conflict,
                    &format!("{a} is listed as owner and admin"),
                ));
            }
            changes.push((a.clone(), Affiliation::Admin));
        }
    }
    // The last change for a JID wins (an owner dropped and listed again).
    let mut last: std::collections::BTreeMap<String, Affiliation> = Default::default();
    for (j, a) in changes {
        last.insert(j, a);
    }
    // A room keeps an owner, whichever list took the last one away.
    let owners_after = room
        .affiliations
        .iter()
        .filter(|(j, a)| **a == Affiliation::Owner && !last.contains_key(*j))
        .count()
        + last.values().filter(|a| **a == Affiliation::Owner).count();
    if owners_after == 0 {
        return Err(err(C::Conflict, "a room keeps at least one owner"));
    }
    let before = room.config.clone();
    room.config = config;
    room.locked = false;
    let needed: Vec<(String, Affiliation)> = last
        .into_iter()
        .filter(|(j, a)| room.affiliation(j) != *a)
        .collect();
    for (j, a) in needed {
        set_affiliation(ctx, room_jid, &j, a, "");
    }
    // Made members-only: who is not a member leaves (status 322, §10.2).
    if config_became_members_only(&before, ctx, room_jid) {
        let out: Vec<FullJid> = ctx
            .st
            .rooms
            .get(room_jid)
            .map(|r| {
                r.occupants
                    .iter()
                    .filter(|o| r.affiliation(o.jid.bare_str()) < Affiliation::Member)
                    .map(|o| o.jid.clone())
                    .collect()
            })
            .unwrap_or_default();
        for j in out {
            leave(ctx, room_jid, &j, Some(&[322]), "", "");
        }
    }
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return Ok(None);
    };
    let changed = room.config != before;
    let whois_changed = room.config.whois_anyone != before.whois_anyone;
    save(ctx, room_jid)?;
    rebroadcast(ctx, room_jid, &before);
    // Occupants hear of a change of configuration (status 104, §10.2.1),
    // and of the room becoming non-anonymous (172) or semi-anonymous (173).
    if changed && let Some(room) = ctx.st.rooms.get(room_jid) {
        let mut codes = vec![104];
        if whois_changed {
            codes.push(if room.config.whois_anyone { 172 } else { 173 });
        }
        let x: String = codes
            .iter()
            .map(|c| format!("<status code='{c}'/>"))
            .collect();
        let xml = format!(
            "<message xmlns='jabber:client' from='{}' type='groupchat' id='{}'><x xmlns='{NS_USER}'>{x}</x></message>",
            escape(room_jid.as_str()),
            ctx.env.next_id()
        );
        let everyone: Vec<Jid> = room
            .occupants
            .iter()
            .map(|o| Jid::Full(o.jid.clone()))
            .collect();
        if let Some(m) = made(&xml) {
            ctx.notify(m, everyone);
        }
    }
    // A temporary room nobody is in has no reason to be.
    super::leave_if_empty(ctx, room_jid);
    Ok(None)
}

fn config_became_members_only(before: &RoomConfig, ctx: &Ctx<'_>, room_jid: &BareJid) -> bool {
    !before.members_only
        && ctx
            .st
            .rooms
            .get(room_jid)
            .is_some_and(|r| r.config.members_only)
}

/// Give `bare` affiliation `a` (§9, §10): the list changes, and each of its
/// occupants gets the role that goes with it (everyone hears the new
/// presence), or leaves when banned (301) or, in a members-only room, no
/// longer a member (321).
/// `item` goes into the removed occupants' `<item/>` (actor, reason).
pub(crate) fn set_affiliation(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    bare: &str,
    a: Affiliation,
    item: &str,
) {
    let Some(room) = ctx.st.rooms.get_mut(room_jid) else {
        return;
    };
    if a == Affiliation::None {
        room.affiliations.remove(bare);
    } else {
        room.affiliations.insert(bare.to_string(), a);
    }
    super::replica::mark(ctx.st, room_jid, "");
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    let present: Vec<FullJid> = room
        .occupants
        .iter()
        .filter(|o| o.jid.bare_str() == bare)
        .map(|o| o.jid.clone())
        .collect();
    let members_only = room.config.members_only;
    for j in present {
        if a == Affiliation::Outcast {
            leave(ctx, room_jid, &j, Some(&[301]), item, "");
        } else if members_only && a < Affiliation::Member {
            leave(ctx, room_jid, &j, Some(&[321]), item, "");
        } else {
            let Some(role) = ctx.st.rooms.get(room_jid).map(|r| r.default_role(a)) else {
                continue;
            };
            set_role(ctx, room_jid, &j, role);
        }
    }
}

/// Destroy the room (§10.9): every occupant gets unavailable presence with
/// the destroy element (an alternate venue and reason), and the record is
/// deleted.
fn destroy(ctx: &mut Ctx<'_>, room_jid: &BareJid, d: &Element) -> Result<(), StanzaError> {
    let alternate = match d.attr("jid") {
        Some(j) => Some(
            BareJid::parse(j)
                .ok()
                .filter(|j| j.local().is_some())
                .map(Jid::Bare)
                .ok_or_else(|| {
                    err(
                        C::JidMalformed,
                        "the alternate venue is a room's JID (room@service)",
                    )
                })?,
        ),
        None => None,
    };
    let reason = super::child_text(d, "reason", NS_OWNER);
    let password = super::child_text(d, "password", NS_OWNER);
    destroy_room(
        ctx,
        room_jid,
        alternate.as_ref(),
        reason.as_deref(),
        password.as_deref(),
    )
}

/// Destroy a room (§10.9): every occupant gets unavailable presence with
/// the `<destroy/>` (alternate venue, reason, its password), the record
/// is deleted, the room leaves memory. Nothing happens to a room not in
/// memory (load it first).
pub(crate) fn destroy_room(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    alternate: Option<&Jid>,
    reason: Option<&str>,
    password: Option<&str>,
) -> Result<(), StanzaError> {
    let mut inner = String::from("<destroy");
    if let Some(alt) = alternate {
        inner.push_str(&format!(" jid='{}'", escape(alt.as_str())));
    }
    inner.push('>');
    if let Some(r) = reason {
        inner.push_str(&format!("<reason>{}</reason>", escape(r)));
    }
    if let Some(pw) = password {
        inner.push_str(&format!("<password>{}</password>", escape(pw)));
    }
    inner.push_str("</destroy>");
    let Some(room) = ctx.st.rooms.get_mut(room_jid) else {
        return Ok(());
    };
    room.config.persistent = false;
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return Ok(());
    };
    for o in &room.occupants {
        if let Some(p) = presence_of(room_jid, room, o, true, true, &[110], &inner) {
            ctx.notify(p, vec![Jid::Full(o.jid.clone())]);
        }
    }
    save(ctx, room_jid)?;
    let nicks: Vec<String> = ctx
        .st
        .rooms
        .remove(room_jid)
        .map(|r| r.occupants.into_iter().map(|o| o.nick).collect())
        .unwrap_or_default();
    for n in nicks {
        super::replica::mark(ctx.st, room_jid, &n);
    }
    Ok(())
}

/// The items of a `muc#admin` query.
fn items(p: &Element) -> Vec<&Element> {
    p.elements()
        .filter(|c| c.name == "item" && c.ns == NS_ADMIN)
        .collect()
}

/// A list by affiliation or role (§9.5, §8.5, §10.5, ...).
fn admin_get(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    from: &FullJid,
    p: &Element,
) -> Result<Option<Element>, StanzaError> {
    let room = existing(ctx, room_jid, from)?;
    let me = room.affiliation(from.bare_str());
    let my_role = room.occupant_by_jid(from).map_or(Role::None, |o| o.role);
    let Some(item) = items(p).into_iter().next() else {
        return Err(err(C::BadRequest, "an item names the list"));
    };
    let mut q = Element::new("query", NS_ADMIN);
    if let Some(a) = item.attr("affiliation") {
        let a = Affiliation::parse(a).ok_or_else(|| err(C::BadRequest, "unknown affiliation"))?;
        if me < Affiliation::Admin
            && !(a == Affiliation::Member && room.config.members_only && me == Affiliation::Member)
        {
            return Err(err(C::Forbidden, "only admins and owners see this list"));
        }
        for (j, x) in &room.affiliations {
            if *x == a {
                q.push(
                    Element::new("item", NS_ADMIN)
                        .with_attr("affiliation", a.name())
                        .with_attr("jid", j.clone()),
                );
            }
        }
    } else if let Some(r) = item.attr("role") {
        let r = Role::parse(r).ok_or_else(|| err(C::BadRequest, "unknown role"))?;
        if my_role != Role::Moderator {
            return Err(err(C::Forbidden, "only moderators see this list"));
        }
        for o in room.occupants.iter().filter(|o| o.role == r) {
            q.push(
                Element::new("item", NS_ADMIN)
                    .with_attr("role", r.name())
                    .with_attr("nick", o.nick.clone())
                    .with_attr("jid", o.jid.as_str())
                    .with_attr("affiliation", room.affiliation(o.jid.bare_str()).name()),
            );
        }
    } else {
        return Err(err(
            C::BadRequest,
            "the item names an affiliation or a role",
        ));
    }
    Ok(Some(q))
}

/// Changes of roles (by nick) and affiliations (by JID): all or none.
fn admin_set(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    from: &FullJid,
    p: &Element,
) -> Result<Option<Element>, StanzaError> {
    let max_affiliations = ctx.cfg().muc.max_affiliations;
    let room = existing(ctx, room_jid, from)?;
    let me = room.affiliation(from.bare_str());
    let my_role = room.occupant_by_jid(from).map_or(Role::None, |o| o.role);
    let list = items(p);
    if list.is_empty() {
        return Err(err(C::BadRequest, "no item to change"));
    }
    // Checked all first: a change refused leaves all unchanged.
    enum Change {
        Role(FullJid, Role, String),
        Aff(String, Affiliation, String),
    }
    // Who made a change, as the removed occupant learns it (§8.2, §9.1):
    // the actor's nick when it is in the room.
    let actor = room
        .occupant_by_jid(from)
        .map(|o| format!("<actor nick='{}'/>", escape(&o.nick)))
        .unwrap_or_default();
    let mut changes = Vec::new();
    for it in list {
        let item = match super::child_text(it, "reason", NS_ADMIN) {
            Some(r) => format!("{actor}<reason>{}</reason>", escape(&r)),
            None => actor.clone(),
        };
        if let Some(r) = it.attr("role") {
            let r = Role::parse(r).ok_or_else(|| err(C::BadRequest, "unknown role"))?;
            let nick = it
                .attr("nick")
                .ok_or_else(|| err(C::BadRequest, "a role change names a nick"))?;
            let target = room
                .occupant(nick)
                .ok_or_else(|| err(C::ItemNotFound, "no such occupant"))?;
            let theirs = room.affiliation(target.jid.bare_str());
            // §8: moderators change the roles of those below admins;
            // moderator grants and revokes are for admins (§9.6, §9.7).
            if my_role != Role::Moderator {
                return Err(err(C::Forbidden, "only moderators change roles"));
            }
            // §8.4: nobody takes an admin's or owner's voice.
            let allowed = my_role == Role::Moderator
                && (theirs < Affiliation::Admin
                    || me == Affiliation::Owner && theirs < Affiliation::Owner)
                && (r != Role::Moderator && target.role != Role::Moderator
                    || me >= Affiliation::Admin)
                && !(r == Role::Visitor && theirs >= Affiliation::Admin);
            if !allowed {
                return Err(err(
                    C::NotAllowed,
                    "you may not change this occupant's role",
                ));
            }
            changes.push(Change::Role(target.jid.clone(), r, item));
        } else if let Some(a) = it.attr("affiliation") {
            let a =
                Affiliation::parse(a).ok_or_else(|| err(C::BadRequest, "unknown affiliation"))?;
            // By JID, or by the nick of an occupant (§9.1 allows either).
            let jid = match (it.attr("jid"), it.attr("nick")) {
                (Some(j), _) => Jid::parse(j)
                    .map_err(|_| err(C::JidMalformed, "not a JID"))?
                    .bare()
                    .to_string(),
                (None, Some(n)) => room
                    .occupant(n)
                    .ok_or_else(|| err(C::ItemNotFound, "no such occupant"))?
                    .jid
                    .bare_str()
                    .to_string(),
                (None, None) => {
                    return Err(err(
                        C::BadRequest,
                        "an affiliation change names a jid or nick",
                    ));
                }
            };
            let theirs = room.affiliation(&jid);
            // §9: admins grant and revoke membership and bans for those
            // below admins; §10: owners do everything.
            match me {
                Affiliation::Owner => {}
                // §9.1: an admin may not touch an admin's or owner's
                // affiliation (not-allowed), nor make one.
                Affiliation::Admin if theirs < Affiliation::Admin && a < Affiliation::Admin => {}
                Affiliation::Admin => {
                    return Err(err(
                        C::NotAllowed,
                        "admins change the affiliations of those below admin only",
                    ));
                }
                _ => return Err(err(C::Forbidden, "you may not change this affiliation")),
            }
            changes.push(Change::Aff(jid, a, item));
        } else {
            return Err(err(C::BadRequest, "an item has a role or an affiliation"));
        }
    }
    // A room keeps an owner (§10.6).
    let owners_left = {
        let mut owners: Vec<&String> = room
            .affiliations
            .iter()
            .filter(|(_, a)| **a == Affiliation::Owner)
            .map(|(j, _)| j)
            .collect();
        for c in &changes {
            if let Change::Aff(j, a, _) = c {
                owners.retain(|o| *o != j);
                if *a == Affiliation::Owner {
                    owners.push(j);
                }
            }
        }
        !owners.is_empty()
    };
    if !owners_left {
        return Err(err(C::Conflict, "a room keeps at least one owner"));
    }
    // The lists stay small enough to go out in one answer.
    let added = changes
        .iter()
        .filter(|c| {
            matches!(c, Change::Aff(j, a, _)
                if *a != Affiliation::None && !room.affiliations.contains_key(j))
        })
        .count();
    if room.affiliations.len() + added > max_affiliations {
        return Err(err(
            C::ResourceConstraint,
            "this room has as many affiliations as it may keep",
        ));
    }
    let mut durable = false;
    for c in changes {
        match c {
            Change::Role(jid, Role::None, item) => {
                // A kick (§8.2): status 307.
                leave(ctx, room_jid, &jid, Some(&[307]), &item, "");
            }
            Change::Role(jid, r, _) => set_role(ctx, room_jid, &jid, r),
            Change::Aff(bare, a, item) => {
                durable = true;
                set_affiliation(ctx, room_jid, &bare, a, &item);
            }
        }
    }
    if durable {
        save(ctx, room_jid)?;
    }
    Ok(None)
}

/// Give the occupant `jid` role `role` (it stays in the room), and tell
/// everyone (§8.4).
pub(crate) fn set_role(ctx: &mut Ctx<'_>, room_jid: &BareJid, jid: &FullJid, role: Role) {
    let Some(room) = ctx.st.rooms.get_mut(room_jid) else {
        return;
    };
    let Some(o) = room.occupants.iter_mut().find(|o| &o.jid == jid) else {
        return;
    };
    o.role = role;
    let nick = o.nick.clone();
    super::replica::mark(ctx.st, room_jid, &nick);
    announce(ctx, room_jid, jid);
}

/// Everyone hears an occupant's new role or affiliation (§8.4, §9.3).
fn announce(ctx: &Ctx<'_>, room_jid: &BareJid, jid: &FullJid) {
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    let Some(o) = room.occupants.iter().find(|o| &o.jid == jid) else {
        return;
    };
    // The others hear of it only if the new role's presence is broadcast;
    // if it is not, the occupant goes from their view.
    let heard = room.broadcasts(o.role);
    for other in &room.occupants {
        let own = other.jid == o.jid;
        let show = own || room.shows_jids_to(other.role);
        let codes: &[u16] = if own { &[110] } else { &[] };
        if let Some(p) = presence_of(room_jid, room, o, !own && !heard, show, codes, "") {
            ctx.notify(p, vec![Jid::Full(other.jid.clone())]);
        }
    }
}

/// After the roles whose presence is broadcast changed from `before`:
/// each occupant of a role no longer broadcast goes from the others'
/// view (unavailable), each of a role broadcast now comes into it.
fn rebroadcast(ctx: &Ctx<'_>, room_jid: &BareJid, before: &RoomConfig) {
    let Some(room) = ctx.st.rooms.get(room_jid) else {
        return;
    };
    let was = |r: Role| match r {
        Role::Moderator => before.broadcast_moderator,
        Role::Participant => before.broadcast_participant,
        Role::Visitor => before.broadcast_visitor,
        Role::None => false,
    };
    for o in &room.occupants {
        let now = room.broadcasts(o.role);
        if now == was(o.role) {
            continue;
        }
        for other in room.occupants.iter().filter(|x| x.jid != o.jid) {
            let show = room.shows_jids_to(other.role);
            if let Some(p) = presence_of(room_jid, room, o, !now, show, &[], "") {
                ctx.notify(p, vec![Jid::Full(other.jid.clone())]);
            }
        }
    }
}
