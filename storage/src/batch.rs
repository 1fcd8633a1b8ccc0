//! [`Batch`]: the writes of one change, planned before they are made. Every
//! store can either write at once (`Rosters::put`, ...) or plan its writes
//! into a batch (`Rosters::put_in`, ...) that the caller commits later: in
//! the core, through the Raft group of the user's shard, so that every
//! replica applies the same writes (`raft::Op::Store`).
//!
//! Planning reads through the batch: a counter bumped twice in one batch
//! (two roster changes, two offline messages) sees its first bump.

use serde::{Deserialize, Serialize};

use crate::keys::{
    CF_ACCOUNTS, CF_CAPS, CF_OFFLINE, CF_PRIVATE, CF_PUBSUB, CF_ROOMS, CF_ROSTERS, CF_VCARDS,
};

/// The column families of user data that batches write. Every record in
/// them has an owner (`keys::owner`) that decides which shard's snapshots
/// carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    Accounts,
    Rosters,
    Offline,
    Vcards,
    /// XEP-0060 and PEP nodes, owned by their node's home.
    Pubsub,
    /// XEP-0049 private XML storage, owned by its user.
    Private,
    /// XEP-0115 capabilities learnt, owned by their hash's home.
    Caps,
    /// XEP-0045 rooms, owned by the room's bare JID.
    Rooms,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::Accounts,
        Family::Rosters,
        Family::Offline,
        Family::Vcards,
        Family::Pubsub,
        Family::Private,
        Family::Caps,
        Family::Rooms,
    ];

    pub(crate) fn cf(self) -> &'static str {
        match self {
            Family::Accounts => CF_ACCOUNTS,
            Family::Rosters => CF_ROSTERS,
            Family::Offline => CF_OFFLINE,
            Family::Vcards => CF_VCARDS,
            Family::Pubsub => CF_PUBSUB,
            Family::Private => CF_PRIVATE,
            Family::Caps => CF_CAPS,
            Family::Rooms => CF_ROOMS,
        }
    }

    /// A one-byte tag for snapshot records (0 is the Raft group's own data).
    pub(crate) fn tag(self) -> u8 {
        match self {
            Family::Accounts => 1,
            Family::Rosters => 2,
            Family::Offline => 3,
            Family::Vcards => 4,
            Family::Pubsub => 5,
            Family::Private => 6,
            Family::Caps => 7,
            Family::Rooms => 8,
        }
    }

    pub(crate) fn from_tag(t: u8) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.tag() == t)
    }
}

/// One write of a batch, with absolute keys of its column family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    Put {
        family: Family,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        family: Family,
        key: Vec<u8>,
    },
    /// Every key in `[start, end)`.
    DeleteRange {
        family: Family,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Writes applied together, atomically, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    writes: Vec<Write>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    pub fn into_writes(self) -> Vec<Write> {
        self.writes
    }

    /// Appends every write of `other`.
    pub fn extend(&mut self, other: Batch) {
        self.writes.extend(other.writes);
    }

    pub fn clear(&mut self) {
        self.writes.clear();
    }

    /// Drops every write after the first `len`: undoes what was planned
    /// since [`Batch::len`] was `len` (a refused request's writes).
    pub fn truncate(&mut self, len: usize) {
        self.writes.truncate(len);
    }

    pub(crate) fn put(&mut self, family: Family, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push(Write::Put { family, key, value });
    }

    pub(crate) fn delete(&mut self, family: Family, key: Vec<u8>) {
        self.writes.push(Write::Delete { family, key });
    }

    pub(crate) fn delete_range(&mut self, family: Family, start: Vec<u8>, end: Vec<u8>) {
        self.writes.push(Write::DeleteRange { family, start, end });
    }

    /// What this batch last wrote to `key`: `Some(Some(value))` after a
    /// put, `Some(None)` after a delete, `None` if it did not touch it.
    pub(crate) fn written(&self, family: Family, key: &[u8]) -> Option<Option<&[u8]>> {
        self.writes.iter().rev().find_map(|w| match w {
            Write::Put {
                family: f,
                key: k,
                value,
            } if *f == family && k == key => Some(Some(value.as_slice())),
            Write::Delete { family: f, key: k } if *f == family && k == key => Some(None),
            Write::DeleteRange {
                family: f,
                start,
                end,
            } if *f == family && key >= start.as_slice() && key < end.as_slice() => Some(None),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_to_a_key_wins() {
        let mut b = Batch::new();
        assert_eq!(b.written(Family::Rosters, b"k"), None);
        b.put(Family::Rosters, b"k".to_vec(), b"1".to_vec());
        b.put(Family::Rosters, b"k".to_vec(), b"2".to_vec());
        assert_eq!(b.written(Family::Rosters, b"k"), Some(Some(&b"2"[..])));
        assert_eq!(b.written(Family::Offline, b"k"), None);
        b.delete_range(Family::Rosters, b"a".to_vec(), b"z".to_vec());
        assert_eq!(b.written(Family::Rosters, b"k"), Some(None));
        b.put(Family::Rosters, b"k".to_vec(), b"3".to_vec());
        assert_eq!(b.written(Family::Rosters, b"k"), Some(Some(&b"3"[..])));
        b.delete(Family::Rosters, b"k".to_vec());
        assert_eq!(b.written(Family::Rosters, b"k"), Some(None));
        assert_eq!(b.len(), 5);
        // Truncating undoes the last writes: the put of 3 is back, then
        // the range delete.
        b.truncate(4);
        assert_eq!(b.written(Family::Rosters, b"k"), Some(Some(&b"3"[..])));
        b.truncate(3);
        assert_eq!(b.written(Family::Rosters, b"k"), Some(None));
        assert_eq!(b.len(), 3);
        for t in 1..=6 {
            assert_eq!(Family::from_tag(t).map(Family::tag), Some(t));
        }
        assert_eq!(Family::from_tag(0), None);
    }
}
