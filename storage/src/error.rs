//! The one error type of the storage crate. RocksDB failures, corrupt bytes
//! found on disk and keys that cannot be encoded each have their own variant,
//! so callers can tell "the disk said no" from "the data is bad".

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB returned an error (I/O, corruption it detected itself, ...).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Creating the database directory failed.
    #[error("creating the database directory: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes read from disk did not decode as the record they should be.
    #[error("corrupt {record}: {reason}")]
    Corrupt {
        /// What was being decoded, e.g. "roster item".
        record: &'static str,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A JID that cannot be part of a key (it contains NUL, which would let
    /// one user's keys reach into another's).
    #[error("jid {0:?} cannot be stored: it contains a NUL byte")]
    InvalidJid(String),
    /// A PubSub node or item id, subscription id or private storage
    /// element name that cannot be part of a key: empty where one is
    /// required, longer than 1023 bytes, or containing NUL.
    #[error("{what} cannot be stored: {reason}")]
    InvalidId {
        /// What was refused, e.g. "pubsub node id".
        what: &'static str,
        /// Why, e.g. "contains a NUL byte".
        reason: &'static str,
    },
    /// A string or byte field longer than the format's u32 length.
    #[error("{0} too large to store")]
    TooLarge(&'static str),
    /// The database was written by a newer schema than this build knows.
    #[error("database schema version {found} is newer than the supported {supported}")]
    UnsupportedSchema { found: u32, supported: u32 },
    /// A Raft group id above `raft::MAX_GROUP`.
    #[error("raft group id {0} is out of range")]
    InvalidGroup(u64),
    /// A column family that `Store::open` creates was not there.
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
}

impl StorageError {
    pub(crate) fn corrupt(record: &'static str, reason: &'static str) -> StorageError {
        StorageError::Corrupt { record, reason }
    }
}
