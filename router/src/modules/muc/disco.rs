//! Discovery (XEP-0045 §6): the service's identity and features, its
//! public rooms, and each room's identity, features and `muc#roominfo`
//! form.

use proto::error::{StanzaCondition as C, StanzaError};
use proto::form::{Field, Form, FormKind};
use proto::stanza::Stanza;
use proto::{BareJid, Element, FullJid};

use super::{Affiliation, NS_MUC, load, room_features};
use crate::modules::Ctx;
use crate::modules::context::{error_reply, result_reply};

/// Most rooms one disco#items answer lists.
const ROOMS_MAX: usize = 1000;

/// Most bytes of items in one answer (names escaped at worst).
const PAGE_BYTES: usize = 64 * 1024;

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
                super::NS_STABLE_ID,
                proto::ns::PING,
                proto::ns::RSM,
            ] {
                q.push(Element::new("feature", proto::ns::DISCO_INFO).with_attr("var", f));
            }
            ctx.iq_result(s, Some(&q))
        }
        (proto::ns::DISCO_ITEMS, "get") if p.attr("node").is_none() => {
            let rsm = match crate::modules::pubsub::Rsm::parse(&p) {
                Ok(r) => r,
                Err(e) => return ctx.bounce_with(s, &e),
            };
            // Rooms live in the shards of their JIDs, on every core node:
            // the list is gathered from all of them, and the answer sent
            // when it is.
            let request = s.clone();
            ctx.list_rooms(
                &service,
                Box::new(move |rooms| match public_rooms(rooms, rsm.as_ref()) {
                    Ok(q) => result_reply(&request, Some(&q)),
                    Err(e) => error_reply(&request, &e, None),
                }),
            );
        }
        (proto::ns::PING, "get") => ctx.iq_result(s, None),
        _ => ctx.bounce(s, C::ServiceUnavailable, None),
    }
}

/// The public rooms (§6.3) among `rooms` (a service's, from every core
/// node, in the order of their local parts): those listed in the
/// directory and not locked, in XEP-0059 pages, a page no larger than
/// [`PAGE_BYTES`].
fn public_rooms(
    rooms: Vec<proto::cluster::pb::RoomEntry>,
    rsm: Option<&crate::modules::pubsub::Rsm>,
) -> Result<Element, StanzaError> {
    let rooms: Vec<(String, String)> = rooms
        .into_iter()
        .filter(|r| r.public && !r.locked)
        .map(|r| (r.jid, r.name))
        .collect();
    // Without a <set/>, the first ones.
    let (page, index) = match rsm {
        Some(r) => r.page(&rooms, |(j, _)| j.as_str(), ROOMS_MAX)?,
        None => (
            rooms.get(..ROOMS_MAX.min(rooms.len())).unwrap_or_default(),
            0,
        ),
    };
    // Names are up to 1024 bytes: a page stops before it grows past
    // what one stanza should carry (the next page starts after it).
    let mut size = 0;
    let fits = page
        .iter()
        .take_while(|(j, n)| {
            size += j.len() + n.len() * 6 + 64;
            size <= PAGE_BYTES
        })
        .count()
        .max(1)
        .min(page.len());
    let page = &page[..fits];
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
