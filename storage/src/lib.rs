//! Persistence for one node: a single RocksDB database with a column family
//! per aggregate and one store type per aggregate: `Accounts` (SCRAM
//! credentials, RFC 5802), `Rosters` (RFC 6121 items and XEP-0237 versions),
//! `Offline` (XEP-0160 queues), `Vcards` (XEP-0054), `Private` (XEP-0049)
//! `Pubsub` (XEP-0060 nodes and XEP-0163 PEP), `Caps` (XEP-0115
//! capabilities learnt from clients) and `Rooms` (XEP-0045), plus the Raft log
//! and state machine of every Raft group on the node (`raft`, openraft). Keys and their
//! layout live in `keys.rs`, value formats in `codec.rs`.
//!
//! The API is synchronous and every call is short; async callers run it
//! from their tasks. Every write is one atomic `WriteBatch` through the WAL
//! (fsynced per write when `StoreOptions::sync_writes` is set). Per-user
//! counters (roster version, offline sequence and count) live in the
//! database and are updated in the same batch as the data they count.
//!
//! This crate knows nothing of routing, sockets or tokio; it depends on
//! `proto` for the types it stores and on openraft for its storage traits.

mod accounts;
mod batch;
pub mod caps;
mod codec;
mod db;
pub use db::EngineStats;
mod error;
mod keys;
mod offline;
mod private;
pub mod pubsub;
pub mod raft;
mod rooms;
mod rosters;
mod vcards;

use std::path::Path;
use std::sync::Arc;

pub use accounts::Accounts;
pub use batch::{Batch, Family, Write};
pub use caps::Caps;
pub use error::StorageError;
pub use offline::{Offline, OfflineFull};
pub use private::Private;
pub use pubsub::{
    Affiliation, Item, ItemWrite, NodeRecord, Pubsub, Subscription, SubscriptionState,
};
pub use rooms::Rooms;
pub use rosters::{RosterItem, Rosters};
pub use vcards::Vcards;

/// How to open a `Store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// fsync the WAL on every write (durable against power loss, not just
    /// process crashes). Default false.
    pub sync_writes: bool,
    /// The most offline messages kept per user (XEP-0160). Default 1000.
    pub offline_limit: usize,
    /// The write-ahead log's size past which the column families that
    /// still need its oldest file are flushed, so that the file can go.
    /// Default 256 MiB.
    pub max_wal_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            sync_writes: false,
            offline_limit: 1000,
            max_wal_bytes: 256 << 20,
        }
    }
}

struct Stores {
    db: Arc<db::Db>,
    accounts: Accounts,
    rosters: Rosters,
    offline: Offline,
    vcards: Vcards,
    private: Private,
    pubsub: Pubsub,
    caps: Caps,
    rooms: Rooms,
}

/// The node's database. Cheap to clone (one `Arc`), `Send + Sync`; the
/// database closes when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Stores>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("options", self.options())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database at `path`, creating the directory, the database
    /// and its column families if missing. Fails if another `Store` (in
    /// this or another process) has it open.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store, StorageError> {
        let db = Arc::new(db::Db::open(path, opts)?);
        Ok(Store {
            inner: Arc::new(Stores {
                accounts: Accounts::new(db.clone()),
                rosters: Rosters::new(db.clone()),
                offline: Offline::new(db.clone()),
                vcards: Vcards::new(db.clone()),
                private: Private::new(db.clone()),
                pubsub: Pubsub::new(db.clone()),
                caps: Caps::new(db.clone()),
                rooms: Rooms::new(db.clone()),
                db,
            }),
        })
    }

    /// RocksDB's figures for metrics (read now, cheap).
    pub fn engine_stats(&self) -> EngineStats {
        self.inner.db.engine_stats()
    }

    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    pub fn rosters(&self) -> &Rosters {
        &self.inner.rosters
    }

    pub fn offline(&self) -> &Offline {
        &self.inner.offline
    }

    pub fn vcards(&self) -> &Vcards {
        &self.inner.vcards
    }

    pub fn private(&self) -> &Private {
        &self.inner.private
    }

    pub fn pubsub(&self) -> &Pubsub {
        &self.inner.pubsub
    }

    pub fn caps(&self) -> &Caps {
        &self.inner.caps
    }

    pub fn rooms(&self) -> &Rooms {
        &self.inner.rooms
    }

    /// Writes a planned batch at once, atomically, outside any Raft group:
    /// for tools, tests and a caller that is the only writer of what the
    /// batch touches. The core commits batches through the owning shard's
    /// Raft group instead (`raft::Command::from_batch`).
    pub fn apply(&self, b: &Batch) -> Result<(), StorageError> {
        self.inner.db.apply(b)
    }

    pub(crate) fn db(&self) -> Arc<db::Db> {
        self.inner.db.clone()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.db.opts
    }

    /// Syncs the WAL and flushes all memtables (graceful shutdown).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.db.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Store>();
    }
}
