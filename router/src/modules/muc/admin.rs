//! What operators do to rooms outside any stanza (the admin HTTP API):
//! see a service's rooms with their occupants, destroy a room. Each runs
//! on the room's shard, at its leader.

use proto::cluster::pb;
use proto::error::StanzaError;
use proto::{BareJid, Jid};

use super::{Record, Room, RoomConfig, load};
use crate::modules::Ctx;

/// A room as operators see it.
fn entry(jid: &BareJid, config: &RoomConfig, locked: bool, occupants: usize) -> pb::RoomEntry {
    pb::RoomEntry {
        jid: jid.to_string(),
        name: config.name.clone(),
        persistent: config.persistent,
        public: config.public,
        members_only: config.members_only,
        password_protected: config.password.is_some(),
        locked,
        occupants: u32::try_from(occupants).unwrap_or(u32::MAX),
    }
}

fn live(jid: &BareJid, r: &Room) -> pb::RoomEntry {
    entry(jid, &r.config, r.locked, r.occupants.len())
}

/// A stored room that no shard holds in memory: no occupants. `None`
/// for a record that does not decode.
pub(crate) fn stored(jid: &BareJid, bytes: &[u8]) -> Option<pb::RoomEntry> {
    let r: Record = serde_json::from_slice(bytes).ok()?;
    Some(entry(jid, &r.config, false, 0))
}

/// The rooms of `service` this shard holds in memory (temporary ones, and
/// persistent ones with occupants or history), those whose local part
/// sorts after `after` only.
pub(crate) fn in_memory(ctx: &Ctx<'_>, service: &str, after: Option<&str>) -> Vec<pb::RoomEntry> {
    ctx.st
        .rooms
        .iter()
        .filter(|(j, _)| j.domain() == service && after.is_none_or(|a| local(j) > a))
        .map(|(j, r)| live(j, r))
        .collect()
}

/// A room JID's local part ("" for none).
pub(crate) fn local(jid: &BareJid) -> &str {
    jid.local().unwrap_or("")
}

/// Destroy `room` as its owner would (§10.9), with an optional reason
/// and alternate venue for its occupants. `Ok(false)` when there is no
/// such room.
pub(crate) fn destroy(
    ctx: &mut Ctx<'_>,
    room: &BareJid,
    reason: Option<&str>,
    alternate: Option<&Jid>,
) -> Result<bool, StanzaError> {
    if load(ctx, room)?.is_none() {
        return Ok(false);
    }
    super::owner::destroy_room(ctx, room, alternate, reason, None)?;
    tracing::info!(room = %room, "room destroyed by an administrator");
    Ok(true)
}
