//! The state machine of one Raft group: its data in the `shard_data` column
//! family, and its last applied log id and membership in `raft_meta`, both
//! written in one batch per `apply`, so a crash never leaves data and
//! applied index apart. Snapshots are the group's data range.
//!
//! A snapshot is made when it is sent, not when it is built. Openraft
//! builds one every few thousand entries only to purge the log, and uses
//! nothing of it but its meta; the data is already in RocksDB. Building
//! therefore records the applied log id and membership (cheap); only a
//! leader sending a snapshot to a follower that lags behind the purged log
//! reads the group's records, from one consistent RocksDB snapshot and
//! with the applied state of that read. Reading every record at each
//! build instead made a server with a million PubSub nodes spend most of
//! its CPU building snapshots, since the records a group owns in the user
//! data families can only be found by scanning all of them.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use super::keys::{self, CF_RAFT_META, CF_SHARD_DATA, Meta};
use super::{Applied, Op, RaftStorageError, ShardRaft, snapshot};
use crate::db::Db;

type Entry = openraft::Entry<ShardRaft>;
type Membership = StoredMembership<u64, openraft::BasicNode>;
type SnapMeta = SnapshotMeta<u64, openraft::BasicNode>;

/// What `raft_meta` keeps of the state machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId<u64>>,
    membership: Membership,
}

/// The state machine of one Raft group. Cheap to clone; a clone is also
/// its snapshot builder.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Db>,
    group: u64,
    /// The users whose data this group owns, if it owns any.
    owns: Option<super::Owns>,
    /// No snapshot was built or installed since the store opened: the next
    /// request for the current snapshot is openraft's, at start, for its
    /// meta only (`StorageHelper::get_initial_state`).
    starting: Arc<AtomicBool>,
}

fn sm_read(e: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn sm_write(e: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt snapshot: {0}")]
struct CorruptSnapshot(&'static str);

impl StateMachine {
    pub(crate) fn new(db: Arc<Db>, group: u64, owns: Option<super::Owns>) -> StateMachine {
        StateMachine {
            db,
            group,
            owns,
            starting: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The group this state machine belongs to.
    pub fn group(&self) -> u64 {
        self.group
    }

    /// The value of `key` in the group's data, as applied so far.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, crate::StorageError> {
        self.db.get(CF_SHARD_DATA, &keys::data(self.group, key))
    }

    /// Every record of the group's data, keys relative to the group.
    pub fn records(&self) -> Result<Vec<super::Record>, crate::StorageError> {
        let group = self.group;
        self.db
            .scan(CF_SHARD_DATA, &keys::group_range(group), |k, v| {
                record(group, k, v)
            })
    }

    fn applied(&self) -> Result<AppliedState, RaftStorageError> {
        match self
            .db
            .get(CF_RAFT_META, &keys::meta(self.group, Meta::Applied))
            .map_err(sm_read)?
        {
            Some(v) => serde_json::from_slice(&v).map_err(sm_read),
            None => Ok(AppliedState::default()),
        }
    }

    fn put_applied(&self, b: &mut WriteBatch, st: &AppliedState) -> Result<(), RaftStorageError> {
        let v = serde_json::to_vec(st).map_err(sm_write)?;
        b.put_cf(
            self.db.cf(CF_RAFT_META).map_err(sm_write)?,
            keys::meta(self.group, Meta::Applied),
            v,
        );
        Ok(())
    }

    fn put_snapshot(
        &self,
        b: &mut WriteBatch,
        meta: &SnapMeta,
        data: &[u8],
    ) -> Result<(), RaftStorageError> {
        let m = serde_json::to_vec(meta).map_err(sm_write)?;
        b.put_cf(
            self.db.cf(CF_RAFT_META).map_err(sm_write)?,
            keys::meta(self.group, Meta::Snapshot),
            snapshot::frame(&m, data),
        );
        Ok(())
    }
}

/// A `shard_data` record of `group` with its key made relative.
fn record(group: u64, k: &[u8], v: &[u8]) -> Result<super::Record, crate::StorageError> {
    match keys::data_suffix(group, k) {
        Some(k) => Ok((k.to_vec(), v.to_vec())),
        None => Err(crate::StorageError::corrupt(
            "shard data key",
            "not a key of this group",
        )),
    }
}

impl StateMachine {
    /// The group's records and applied state from one consistent read: the
    /// snapshot that is sent to a follower.
    fn read_snapshot(&self) -> Result<Snapshot<ShardRaft>, RaftStorageError> {
        // Apply may run while the records are read.
        let group = self.group;
        let (applied, records, owned) = self
            .db
            .read_group(
                CF_RAFT_META,
                &keys::meta(group, Meta::Applied),
                CF_SHARD_DATA,
                &keys::group_range(group),
                self.owns.as_ref(),
            )
            .map_err(sm_read)?;
        let mut tagged = Vec::with_capacity(records.len() + owned.len());
        for (k, v) in records {
            let Some(rel) = keys::data_suffix(group, &k) else {
                return Err(sm_read(crate::StorageError::corrupt(
                    "shard data key",
                    "not a key of this group",
                )));
            };
            let mut t = Vec::with_capacity(1 + rel.len());
            t.push(0);
            t.extend_from_slice(rel);
            tagged.push((t, v));
        }
        for (family, (k, v)) in owned {
            let mut t = Vec::with_capacity(1 + k.len());
            t.push(family.tag());
            t.extend_from_slice(&k);
            tagged.push((t, v));
        }
        let applied: AppliedState = match applied {
            Some(v) => serde_json::from_slice(&v).map_err(sm_read)?,
            None => AppliedState::default(),
        };
        let data = snapshot::encode(tagged.iter().map(|(k, v)| (&k[..], &v[..])));
        Ok(Snapshot {
            meta: self.snapshot_meta(&applied),
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    fn snapshot_meta(&self, applied: &AppliedState) -> SnapMeta {
        let id = match applied.last_applied {
            Some(l) => format!("{}-{}-{}", self.group, l.leader_id.term, l.index),
            None => format!("{}-empty", self.group),
        };
        SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id: id,
        }
    }
}

impl RaftSnapshotBuilder<ShardRaft> for StateMachine {
    /// Records a snapshot point: the applied log id and membership, up to
    /// which openraft may purge the log. The answer carries no records
    /// (openraft uses only the meta of a built snapshot); the current
    /// snapshot, read when it is sent, does.
    async fn build_snapshot(&mut self) -> Result<Snapshot<ShardRaft>, RaftStorageError> {
        let applied = self.applied()?;
        let meta = self.snapshot_meta(&applied);
        let mut b = WriteBatch::default();
        self.put_snapshot(&mut b, &meta, &[])?;
        self.db.write_sync(b, false).map_err(sm_write)?;
        self.starting.store(false, Ordering::Relaxed);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

impl RaftStateMachine<ShardRaft> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, Membership), RaftStorageError> {
        let st = self.applied()?;
        Ok((st.last_applied, st.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut st = self.applied()?;
        let cf = self.db.cf(CF_SHARD_DATA).map_err(sm_write)?;
        let mut b = WriteBatch::default();
        let mut out = Vec::new();
        for e in entries {
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(cmd) => {
                    for op in cmd.ops {
                        match op {
                            Op::Put { key, value } => {
                                b.put_cf(cf, keys::data(self.group, &key), value)
                            }
                            Op::Delete { key } => b.delete_cf(cf, keys::data(self.group, &key)),
                            Op::Store(w) => self.db.add_write(&w, &mut b).map_err(sm_write)?,
                        }
                    }
                }
                EntryPayload::Membership(m) => {
                    st.membership = StoredMembership::new(Some(e.log_id), m);
                }
            }
            st.last_applied = Some(e.log_id);
            out.push(Applied {
                index: e.log_id.index,
            });
        }
        self.put_applied(&mut b, &st)?;
        self.db.write_sync(b, false).map_err(sm_write)?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let data = snapshot.into_inner();
        let records = snapshot::decode(&data).map_err(|e| {
            RaftStorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::new(&CorruptSnapshot(e)),
            ))
        })?;
        // Replace the group's data, applied state and current snapshot in
        // one batch.
        let cf = self.db.cf(CF_SHARD_DATA).map_err(sm_write)?;
        let range = keys::group_range(self.group);
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf, &range.start, &range.end);
        if let Some(owns) = &self.owns {
            self.db.delete_owned(owns, &mut b).map_err(sm_write)?;
        }
        for (k, v) in &records {
            let bad = || {
                RaftStorageError::from(StorageIOError::read_snapshot(
                    Some(meta.signature()),
                    AnyError::new(&CorruptSnapshot("record of an unknown family")),
                ))
            };
            match k.split_first() {
                Some((0, rel)) => b.put_cf(cf, keys::data(self.group, rel), v),
                Some((&t, abs)) => {
                    let family = crate::Family::from_tag(t).ok_or_else(bad)?;
                    b.put_cf(self.db.cf(family.cf()).map_err(sm_write)?, abs, v);
                }
                None => return Err(bad()),
            }
        }
        self.put_applied(
            &mut b,
            &AppliedState {
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            },
        )?;
        self.put_snapshot(&mut b, meta, &[])?;
        self.db.write_sync(b, true).map_err(sm_write)?;
        self.starting.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// The snapshot to send: none before one was built or installed; at
    /// start (openraft reads only the meta then) the stored meta alone;
    /// else the group's records as applied now, with that applied state.
    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<ShardRaft>>, RaftStorageError> {
        let Some(v) = self
            .db
            .get(CF_RAFT_META, &keys::meta(self.group, Meta::Snapshot))
            .map_err(sm_read)?
        else {
            return Ok(None);
        };
        if self.starting.swap(false, Ordering::Relaxed) {
            let (meta, _) = snapshot::unframe(&v).map_err(|e| sm_read(CorruptSnapshot(e)))?;
            let meta: SnapMeta = serde_json::from_slice(meta).map_err(sm_read)?;
            return Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(Vec::new())),
            }));
        }
        self.read_snapshot().map(Some)
    }
}
