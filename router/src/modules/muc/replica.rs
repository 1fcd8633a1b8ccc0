//! Rooms and occupants replicated with their shard (a cluster only), as
//! sessions are (`crate::replicated`): the shard's leader writes a record
//! for each room whose state changed (configuration, affiliations,
//! subject, lock) and for each occupant that entered, changed or left,
//! into the shard's Raft log with the step's other writes. A node that
//! comes to lead the shard loads them: the rooms keep their occupants
//! when a core node dies or the shard moves, and temporary rooms keep
//! their owners. The history sent on entering is not replicated.
//!
//! Keys in the group's data: `m/<room>` and `o/<room>/<nick>` (a room's
//! JID has no '/', so the first one after the prefix ends it).

use std::collections::HashSet;

use proto::{BareJid, FullJid};
use serde::{Deserialize, Serialize};
use storage::raft::Op;

use super::{Occupant, Record, Role, Room};
use crate::modules::state::ShardState;

const ROOM: &[u8] = b"m/";
const OCCUPANT: &[u8] = b"o/";

#[derive(Serialize, Deserialize)]
struct RoomRec {
    record: Record,
    locked: bool,
    stored: bool,
}

#[derive(Serialize, Deserialize)]
struct OccupantRec {
    jid: String,
    role: String,
    presence: String,
    occupant_id: String,
}

/// What changed since the last commit: (room, nick), nick empty for the
/// room's own state.
pub(crate) type Changes = HashSet<(BareJid, String)>;

/// Note that `room`'s state (`nick` empty) or occupant `nick` changed.
pub(crate) fn mark(st: &mut ShardState, room: &BareJid, nick: &str) {
    if let Some(d) = &mut st.room_dirty {
        d.insert((room.clone(), nick.to_string()));
    }
}

fn room_key(room: &BareJid) -> Vec<u8> {
    [ROOM, room.as_str().as_bytes()].concat()
}

fn occupant_key(room: &BareJid, nick: &str) -> Vec<u8> {
    [OCCUPANT, room.as_str().as_bytes(), b"/", nick.as_bytes()].concat()
}

/// The log writes for the rooms and occupants changed since the last
/// call.
pub(crate) fn take_changes(st: &mut ShardState) -> Vec<Op> {
    let changed: Vec<(BareJid, String)> = match &mut st.room_dirty {
        Some(d) if !d.is_empty() => d.drain().collect(),
        _ => return Vec::new(),
    };
    changed
        .into_iter()
        .map(|(room, nick)| {
            let r = st.rooms.get(&room);
            if nick.is_empty() {
                match r {
                    Some(r) => Op::Put {
                        key: room_key(&room),
                        value: serde_json::to_vec(&RoomRec {
                            record: r.record(),
                            locked: r.locked,
                            stored: r.stored,
                        })
                        .unwrap_or_default(),
                    },
                    None => Op::Delete {
                        key: room_key(&room),
                    },
                }
            } else {
                match r.and_then(|r| r.occupant_exact(&nick)) {
                    Some(o) => Op::Put {
                        key: occupant_key(&room, &nick),
                        value: serde_json::to_vec(&OccupantRec {
                            jid: o.jid.to_string(),
                            role: o.role.name().to_string(),
                            presence: o.presence.clone(),
                            occupant_id: o.occupant_id.clone(),
                        })
                        .unwrap_or_default(),
                    },
                    None => Op::Delete {
                        key: occupant_key(&room, &nick),
                    },
                }
            }
        })
        .collect()
}

/// Load the rooms and occupants of the shard's replicated state (a node
/// that has just come to lead the shard). Occupants of a room with no
/// record of its own are dropped.
pub(crate) fn restore(st: &mut ShardState, records: &[(Vec<u8>, Vec<u8>)]) -> usize {
    st.rooms.clear();
    for (k, v) in records {
        let Some(rest) = k.strip_prefix(ROOM) else {
            continue;
        };
        let Ok(room) = BareJid::parse(&String::from_utf8_lossy(rest)) else {
            continue;
        };
        let Ok(r) = serde_json::from_slice::<RoomRec>(v) else {
            continue;
        };
        st.rooms
            .insert(room, Room::from_record(r.record, r.locked, r.stored));
    }
    let mut occupants = 0;
    for (k, v) in records {
        let Some(rest) = k.strip_prefix(OCCUPANT) else {
            continue;
        };
        let rest = String::from_utf8_lossy(rest);
        let Some((room, nick)) = rest.split_once('/') else {
            continue;
        };
        let Ok(room) = BareJid::parse(room) else {
            continue;
        };
        let Ok(o) = serde_json::from_slice::<OccupantRec>(v) else {
            continue;
        };
        let (Ok(jid), Some(role)) = (FullJid::parse(&o.jid), Role::parse(&o.role)) else {
            continue;
        };
        if let Some(r) = st.rooms.get_mut(&room) {
            r.occupants.push(Occupant {
                nick: nick.to_string(),
                nick_key: proto::jid::nickname_key(nick),
                jid,
                role,
                presence: o.presence,
                occupant_id: o.occupant_id,
            });
            occupants += 1;
        }
    }
    occupants
}
