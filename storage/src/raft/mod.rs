//! Raft persistence for openraft 0.9 (storage-v2) on the node's one RocksDB:
//! a log store ([`LogStore`]) and a state machine ([`StateMachine`]) per
//! Raft group, for the meta group and every shard group of this node.
//! Groups share the database and are told apart by a big-endian group id in
//! front of every key (`keys.rs`), so one group's state is a key range: its
//! snapshot is a range scan and installing one is a range replace.
//!
//! The replicated command ([`Command`]) is a deterministic batch of key
//! writes in the group's range of the `shard_data` column family, applied
//! atomically with the new last-applied log id; the router decides what a
//! stanza writes and Raft makes every replica write the same.
//!
//! Log appends are one `WriteBatch` through the WAL, fsynced when the store
//! is opened with `sync` (durable data: rosters, offline queues) and not
//! otherwise (volatile data: sessions and presence), as DESIGN.md asks.
//! Entries are encoded compactly with postcard (`codec.rs`); votes,
//! committed ids, applied state and snapshot meta with serde_json; snapshot
//! data with a length-prefixed binary format (`snapshot.rs`).

// openraft's StorageError is the error type of its storage traits; the
// helpers here return it too.
#![allow(clippy::result_large_err)]

mod codec;
pub(crate) mod keys;
mod log;
mod snapshot;
mod state;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub use keys::MAX_GROUP;
pub use log::LogStore;
pub use state::StateMachine;

/// One key write of a command: `Put` and `Delete` in the group's own
/// range of `shard_data` (keys relative to the group), `Store` in the user
/// data the group owns (a write planned by a store, see `Batch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
    Store(crate::Write),
}

impl Command {
    /// The command that makes the writes of `b`.
    pub fn from_batch(b: crate::Batch) -> Command {
        Command {
            ops: b.into_writes().into_iter().map(Op::Store).collect(),
        }
    }
}

/// Which users' data a group owns, by bare JID: its snapshots carry their
/// records and installing one replaces them.
pub type Owns = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What a group replicates: key writes applied together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub ops: Vec<Op>,
}

/// What applying an entry answers: the index it was applied at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub index: u64,
}

openraft::declare_raft_types!(
    /// The Raft types of xmppd's groups.
    pub ShardRaft:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<ShardRaft>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A key and its value.
pub type Record = (Vec<u8>, Vec<u8>);

/// openraft's storage error for this config.
pub type RaftStorageError = openraft::StorageError<u64>;

impl crate::Store {
    /// The log store and state machine of Raft group `group` (at most
    /// [`MAX_GROUP`]). `sync`: fsync every log append (for groups whose data
    /// must survive a power cut). Opening a group twice gives two handles
    /// on the same records; openraft expects one of each per group.
    pub fn raft_group(
        &self,
        group: u64,
        sync: bool,
    ) -> Result<(LogStore, StateMachine), crate::StorageError> {
        self.open_group(group, sync, None)
    }

    /// As [`Store::raft_group`](crate::Store::raft_group), for a group that
    /// also owns user data: the records in the user data column families
    /// whose user `owns` accepts (a shard's users).
    pub fn raft_group_owning(
        &self,
        group: u64,
        sync: bool,
        owns: Owns,
    ) -> Result<(LogStore, StateMachine), crate::StorageError> {
        self.open_group(group, sync, Some(owns))
    }

    fn open_group(
        &self,
        group: u64,
        sync: bool,
        owns: Option<Owns>,
    ) -> Result<(LogStore, StateMachine), crate::StorageError> {
        if group > MAX_GROUP {
            return Err(crate::StorageError::InvalidGroup(group));
        }
        let db = self.db();
        Ok((
            LogStore::new(db.clone(), group, sync),
            StateMachine::new(db, group, owns),
        ))
    }
}
