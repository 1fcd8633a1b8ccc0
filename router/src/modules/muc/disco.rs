//! Discovery (XEP-0045 §6): the service's identity and features, its
//! public rooms, and each room's identity, features and `muc#roominfo`
//! form.

use proto::error::{StanzaCondition as C, StanzaError};
use proto::form::{Field, Form, FormKind};
use proto::stanza::Stanza;
use proto::{BareJid, Element, FullJid};

use super::{Affiliation, NS_MUC, load, room_features};
use crate::modules::Ctx;

/// Most rooms one disco#items answer lists.
const ROOMS_MAX: usize = 1000;

/// Most rooms of a service the list looks at: the list (and its RSM
/// count) covers these, in JID order.
const ROOMS_SCANNED: usize = 10_000;

/// An IQ to the service itself.
pub(crate) fn service_iq(ctx: &mut Ctx<'_>, s: &Stanza) {
    if !matches!(s.stype(), "get" | "set") {
        return;
    }
    let Some(service) = s.to.as_ref().map(|t| t.domain().to_string()) else {
        return;
    };
    let p = s
        .element(proto::ns::CLIENT)
        .ok()
        .and_then(|e| e.first_element().cloned());
    let Some(p) = p else {
        return ctx.bounce(s, C::BadRequest, None);
    };
    match (p.ns.as_str(), s.stype()) {
        (proto::ns::DISCO_INFO, "get") if p.attr("node").is_none() => {
            let mut q = Element::new("query", proto::ns::DISCO_INFO).with_child(
                Element::new("identity", proto::ns::DISCO_INFO)
                    .with_attr("category", "conference")
                    .with_attr("type", "text")
                    .with_attr("name", "Chatrooms"),
            );
            for f in [
                NS_MUC,
                proto::ns::DISCO_INFO,
                proto::ns::DISCO_ITEMS,
                super::NS_SID,
                super::NS_OCCUPANT_ID,
                proto::ns::PING,
                proto::ns::RSM,
            ] {
                q.push(Element::new("feature", proto::ns::DISCO_INFO).with_attr("var", f));
            }
            ctx.iq_result(s, Some(&q))
        }
        (proto::ns::DISCO_ITEMS, "get") if p.attr("node").is_none() => {
            match public_rooms(ctx, &service, &p) {
                Ok(q) => ctx.iq_result(s, Some(&q)),
                Err(e) => ctx.bounce_with(s, &e),
            }
        }
        (proto::ns::PING, "get") => ctx.iq_result(s, None),
        _ => ctx.bounce(s, C::ServiceUnavailable, None),
    }
}

/// The public rooms (§6.3): the persistent ones in the store and the
/// temporary ones this shard holds, unlocked, by name.
fn public_rooms(ctx: &Ctx<'_>, service: &str, p: &Element) -> Result<Element, StanzaError> {
    let rsm = crate::modules::pubsub::Rsm::parse(p)?;
    let stored = ctx
        .store()
        .rooms()
        .list(service, None, ROOMS_SCANNED)
        .map_err(|e| {
            tracing::error!(error = %e, "listing rooms failed");
            StanzaError::new(C::InternalServerError)
        })?;
    let mut rooms: Vec<(String, String)> = Vec::new();
    for (local, bytes) in stored {
        let Ok(jid) = BareJid::new(Some(&local), service) else {
            continue;
        };
        // What this shard holds is newer than the store.
        if let Some(r) = ctx.st.rooms.get(&jid) {
            if r.config.public && !r.locked {
                rooms.push((jid.to_string(), r.config.name.clone()));
            }
            continue;
        }
        if let Ok(r) = serde_json::from_slice::<super::Record>(&bytes)
            && r.config.public
        {
            rooms.push((jid.to_string(), r.config.name));
        }
    }
    for (jid, r) in &ctx.st.rooms {
        if jid.domain() == service
            && r.config.public
            && !r.locked
            && !rooms.iter().any(|(j, _)| j == jid.as_str())
        {
            rooms.push((jid.to_string(), r.config.name.clone()));
        }
    }
    rooms.sort();
    rooms.truncate(ROOMS_SCANNED);
    // XEP-0059 pages by room JID; without a <set/>, the first ones.
    let (page, index) = match &rsm {
        Some(r) => r.page(&rooms, |(j, _)| j.as_str(), ROOMS_MAX)?,
        None => (
            rooms.get(..ROOMS_MAX.min(rooms.len())).unwrap_or_default(),
            0,
        ),
    };
    let mut q = Element::new("query", proto::ns::DISCO_ITEMS);
    for (jid, name) in page.iter().cloned() {
        let mut item = Element::new("item", proto::ns::DISCO_ITEMS).with_attr("jid", jid.clone());
        let name = if name.is_empty() {
            jid.split('@').next().unwrap_or_default().to_string()
        } else {
            name
        };
        item.set_attr("name", name);
        q.push(item);
    }
    if rsm.is_some() {
        q.push(crate::modules::pubsub::rsm_answer(
            page.first().map(|(j, _)| j.as_str()),
            Some(index),
            page.last().map(|(j, _)| j.as_str()),
            rooms.len(),
        ));
    }
    Ok(q)
}

/// disco#info of a room (§6.4).
pub(crate) fn room_info(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    from: &FullJid,
    node: Option<&str>,
) -> Result<Option<Element>, StanzaError> {
    if node.is_some() {
        // A room has no nodes.
        return Err(StanzaError::new(C::ItemNotFound));
    }
    let room = match load(ctx, room_jid)? {
        Some(r) if !r.locked || r.affiliation(from.bare_str()) == Affiliation::Owner => r,
        _ => return Err(StanzaError::new(C::ItemNotFound)),
    };
    let name = if room.config.name.is_empty() {
        room_jid.local().unwrap_or_default().to_string()
    } else {
        room.config.name.clone()
    };
    let mut q = Element::new("query", proto::ns::DISCO_INFO).with_child(
        Element::new("identity", proto::ns::DISCO_INFO)
            .with_attr("category", "conference")
            .with_attr("type", "text")
            .with_attr("name", name),
    );
    for f in room_features(room) {
        q.push(Element::new("feature", proto::ns::DISCO_INFO).with_attr("var", f));
    }
    let form = Form::new(FormKind::Result)
        .with_form_type("http://jabber.org/protocol/muc#roominfo")
        .with_field(Field::text_single(
            "muc#roominfo_description",
            room.config.description.clone(),
        ))
        .with_field(Field::text_single(
            "muc#roominfo_occupants",
            room.occupants.len().to_string(),
        ))
        .with_field(Field::text_single(
            "muc#roominfo_subject",
            room.subject
                .as_ref()
                .map(|s| s.text.clone())
                .unwrap_or_default(),
        ))
        .with_field(Field::boolean(
            "muc#roominfo_subjectmod",
            room.config.change_subject,
        ));
    q.push(form.to_element());
    Ok(Some(q))
}

/// disco#items of a room (§6.5): its occupants, to those in a
/// non-anonymous room's list, else none (the service may keep them
/// private).
pub(crate) fn room_items(
    ctx: &mut Ctx<'_>,
    room_jid: &BareJid,
    from: &FullJid,
) -> Result<Option<Element>, StanzaError> {
    let room = match load(ctx, room_jid)? {
        Some(r) if !r.locked => r,
        _ => return Err(StanzaError::new(C::ItemNotFound)),
    };
    let mut q = Element::new("query", proto::ns::DISCO_ITEMS);
    let inside = room.occupant_by_jid(from).is_some();
    if room.config.public && (inside || room.config.whois_anyone) {
        // Occupants whose presence the room does not broadcast stay out of
        // view here too.
        for o in room.occupants.iter().filter(|o| room.broadcasts(o.role)) {
            if let Ok(j) = room_jid.with_resource(&o.nick) {
                q.push(Element::new("item", proto::ns::DISCO_ITEMS).with_attr("jid", j.as_str()));
            }
        }
    }
    Ok(Some(q))
}
