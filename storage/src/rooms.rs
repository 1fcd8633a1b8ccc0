//! Multi-User Chat rooms (XEP-0045): one record per room that outlives
//! its occupants (a persistent room, or one that has an owner's
//! configuration), kept opaque: the MUC module owns its encoding. A record
//! is owned by the room's bare JID, so it lives in the room's shard and is
//! committed through that shard's Raft group.

use std::sync::Arc;

use proto::BareJid;

use crate::batch::{Batch, Family};
use crate::db::Db;
use crate::keys;
use crate::{StorageError, codec};

const ROOM: &str = "room";

/// The rooms store; reach it through `Store::rooms`.
pub struct Rooms {
    db: Arc<Db>,
}

impl Rooms {
    pub(crate) fn new(db: Arc<Db>) -> Rooms {
        Rooms { db }
    }

    /// The record of `room`, if stored.
    pub fn get(&self, room: &BareJid) -> Result<Option<Vec<u8>>, StorageError> {
        match self.db.get(keys::CF_ROOMS, &keys::room(room)?)? {
            Some(v) => Ok(Some(codec::decode_blob(ROOM, &v)?)),
            None => Ok(None),
        }
    }

    /// Plans storing `record` as `room`'s.
    pub fn put_in(&self, b: &mut Batch, room: &BareJid, record: &[u8]) -> Result<(), StorageError> {
        b.put(Family::Rooms, keys::room(room)?, codec::encode_blob(record));
        Ok(())
    }

    /// Plans deleting `room`'s record.
    pub fn delete_in(&self, b: &mut Batch, room: &BareJid) -> Result<(), StorageError> {
        b.delete(Family::Rooms, keys::room(room)?);
        Ok(())
    }

    /// Up to `limit` rooms of `service` (local part and record) in byte
    /// order of their local parts, those after `after` only.
    pub fn list(
        &self,
        service: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let range = keys::rooms_after(service, after)?;
        self.db
            .scan_dir(keys::CF_ROOMS, &range, false, limit, |k, v| {
                Ok((
                    keys::decode_room_local(service.len(), k)?,
                    codec::decode_blob(ROOM, v)?,
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).expect("jid")
    }

    #[test]
    fn rooms_round_trip_and_list_by_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        let r = store.rooms();
        let mut b = Batch::new();
        for name in ["tea", "coffee", "tea2"] {
            r.put_in(
                &mut b,
                &jid(&format!("{name}@conference.a")),
                name.as_bytes(),
            )
            .expect("put");
        }
        r.put_in(&mut b, &jid("other@conference.ab"), b"x")
            .expect("put");
        store.apply(&b).expect("apply");
        assert_eq!(
            r.get(&jid("tea@conference.a")).expect("get"),
            Some(b"tea".to_vec())
        );
        let all: Vec<String> = r
            .list("conference.a", None, 10)
            .expect("list")
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(all, ["coffee", "tea", "tea2"]);
        let after: Vec<String> = r
            .list("conference.a", Some("tea"), 10)
            .expect("list")
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(after, ["tea2"]);
        let mut b = Batch::new();
        r.delete_in(&mut b, &jid("tea@conference.a"))
            .expect("delete");
        store.apply(&b).expect("apply");
        assert_eq!(r.get(&jid("tea@conference.a")).expect("get"), None);
    }
}
