//! The core tier: every JID-keyed piece of state has one home, the user
//! shard that `hash(bare JID) mod S` names. A shard is a task that owns its
//! users' live sessions and presence, and applies stanzas to their rosters,
//! offline queues and vCards (RFC 6121 §3, §4, §8; XEP-0160; XEP-0054).
//! Stanzas from a client are processed first at the sender's shard
//! (outbound: subscriptions, presence broadcast) and then at the
//! recipient's shard (inbound: delivery, offline storage), the same split
//! RFC 6121 draws between the user's server and the contact's server.
//!
//! The edge reaches the core only through [`Core`]: in one process the
//! shards are tasks behind channels; the cluster carries the same messages
//! over gRPC. This crate knows nothing of sockets and never parses a whole
//! stream: it receives envelopes with raw bytes.

pub mod accounts;
pub mod cluster;
pub mod config;
pub mod core;
pub mod error;
pub mod federation;
pub mod modules;
mod operator;
mod replicated;
pub mod service;
pub mod session;
pub mod shard;
mod time;
pub mod trace;

pub use accounts::{AccountError, Accounts};
pub use config::CoreConfig;
pub use core::{Core, SessionInfo, server_caps, server_features};
pub use error::{BindError, CoreError};
pub use session::{EdgeLink, Outbound, Received, ResumeRefused, SessionInbox, SessionSink, SmInfo};
pub use storage::StorageError;

/// Open the node's data store (the edge never names RocksDB itself).
pub fn open_store(
    dir: &std::path::Path,
    sync_writes: bool,
    offline_limit: usize,
) -> Result<Store, StorageError> {
    storage::Store::open(
        dir,
        storage::StoreOptions {
            sync_writes,
            offline_limit,
            ..storage::StoreOptions::default()
        },
    )
    .map(Store)
}

/// An opened data store, opaque to the edge.
#[derive(Clone)]
pub struct Store(pub(crate) storage::Store);

impl Store {
    /// The storage crate's handle, for tools and benchmarks that read or
    /// write the stores directly.
    pub fn storage(&self) -> &storage::Store {
        &self.0
    }

    /// Flush memtables and the WAL (graceful shutdown).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.0.flush()
    }
}
