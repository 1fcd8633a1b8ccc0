//! The Raft log of one group: entries, vote, committed log id and the last
//! purged log id, in the `raft_log` and `raft_meta` column families.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogId, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use rocksdb::WriteBatch;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys::{self, CF_RAFT_LOG, CF_RAFT_META, Meta};
use super::{RaftStorageError, ShardRaft, codec};
use crate::db::Db;

type Entry = openraft::Entry<ShardRaft>;

/// The log store of one Raft group. Cheap to clone; a clone is also its
/// log reader.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    group: u64,
    sync: bool,
}

fn io_read(e: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn io_write(e: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl LogStore {
    pub(crate) fn new(db: Arc<Db>, group: u64, sync: bool) -> LogStore {
        LogStore { db, group, sync }
    }

    /// The group this log belongs to.
    pub fn group(&self) -> u64 {
        self.group
    }

    fn read_meta<T: DeserializeOwned>(&self, kind: Meta) -> Result<Option<T>, RaftStorageError> {
        match self
            .db
            .get(CF_RAFT_META, &keys::meta(self.group, kind))
            .map_err(io_read)?
        {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(io_read),
            None => Ok(None),
        }
    }

    fn write_meta<T: Serialize>(
        &self,
        kind: Meta,
        value: &T,
        sync: bool,
    ) -> Result<(), RaftStorageError> {
        let v = serde_json::to_vec(value).map_err(io_write)?;
        let mut b = WriteBatch::default();
        b.put_cf(
            self.db.cf(CF_RAFT_META).map_err(io_write)?,
            keys::meta(self.group, kind),
            v,
        );
        self.db.write_sync(b, sync).map_err(io_write)
    }

    fn last_entry(&self) -> Result<Option<Entry>, RaftStorageError> {
        let range = keys::log_range(self.group, 0, u64::MAX);
        match self.db.last_in(CF_RAFT_LOG, &range).map_err(io_read)? {
            Some((_, v)) => codec::decode_entry(&v).map(Some).map_err(io_read),
            None => Ok(None),
        }
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(i) => i.saturating_add(1),
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

impl RaftLogReader<ShardRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let (from, to) = bounds(&range);
        if from >= to {
            return Ok(Vec::new());
        }
        let group = self.group;
        let decoded = self
            .db
            .scan(CF_RAFT_LOG, &keys::log_range(group, from, to), |k, v| {
                if keys::log_index(group, k).is_none() {
                    return Err(crate::StorageError::corrupt(
                        "raft log key",
                        "not a key of this group",
                    ));
                }
                Ok(codec::decode_entry(v))
            })
            .map_err(io_read)?;
        decoded.into_iter().map(|e| e.map_err(io_read)).collect()
    }
}

impl RaftLogStorage<ShardRaft> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<ShardRaft>, RaftStorageError> {
        let last_purged: Option<LogId<u64>> = self.read_meta(Meta::LastPurged)?;
        let last = self.last_entry()?.map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), RaftStorageError> {
        // A vote must survive a crash, or a node could vote twice in a term.
        self.write_meta(Meta::Vote, vote, true)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, RaftStorageError> {
        self.read_meta(Meta::Vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), RaftStorageError> {
        self.write_meta(Meta::Committed, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, RaftStorageError> {
        Ok(self
            .read_meta::<Option<LogId<u64>>>(Meta::Committed)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<ShardRaft>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.db.cf(CF_RAFT_LOG).map_err(io_write)?;
        let mut b = WriteBatch::default();
        for e in entries {
            let v = codec::encode_entry(&e).map_err(io_write)?;
            b.put_cf(cf, keys::log(self.group, e.log_id.index), v);
        }
        // Written (and fsynced when asked) before openraft hears of it.
        let r = self.db.write_sync(b, self.sync);
        match r {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_write(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        // Remove the entries from `log_id` on (a leader overwrote them).
        let cf = self.db.cf(CF_RAFT_LOG).map_err(io_write)?;
        let r = keys::log_range(self.group, log_id.index, u64::MAX);
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf, &r.start, &r.end);
        b.delete_cf(cf, keys::log(self.group, u64::MAX));
        self.db.write_sync(b, self.sync).map_err(io_write)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        // Record the purge point first: entries up to it may then go.
        self.write_meta(Meta::LastPurged, &log_id, self.sync)?;
        let cf = self.db.cf(CF_RAFT_LOG).map_err(io_write)?;
        let r = keys::log_range(self.group, 0, log_id.index.saturating_add(1));
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf, &r.start, &r.end);
        self.db.write_sync(b, false).map_err(io_write)
    }
}
