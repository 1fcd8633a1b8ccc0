//! Offline message storage (XEP-0160): per user a FIFO of raw stanza bytes
//! under increasing sequence numbers, with a stored meta record (next
//! sequence number, message count) updated in the same batch as every push
//! and removal, so `count` is one point read and the limit check is exact.
//! Sequence numbers start at 1 and are never reused for a user, even after
//! the queue empties (only deleting the account resets them).

use std::fmt;
use std::sync::Arc;

use proto::BareJid;

use crate::StorageError;
use crate::batch::{Batch, Family};
use crate::codec::{self, OfflineMeta};
use crate::db::Db;
use crate::keys::{self, CF_OFFLINE};

const MESSAGE: &str = "offline message";

/// The user's queue holds `limit` messages already; the caller should
/// bounce the stanza (RFC 6121 §8.5.2: `service-unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfflineFull {
    pub limit: usize,
}

impl fmt::Display for OfflineFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offline queue full ({} messages)", self.limit)
    }
}

impl std::error::Error for OfflineFull {}

/// The offline store; reach it through `Store::offline`.
pub struct Offline {
    db: Arc<Db>,
}

impl Offline {
    pub(crate) fn new(db: Arc<Db>) -> Offline {
        Offline { db }
    }

    fn meta(&self, pending: &Batch, key: &[u8]) -> Result<OfflineMeta, StorageError> {
        match self.db.get_through(pending, Family::Offline, key)? {
            Some(v) => codec::decode_offline_meta(&v),
            None => Ok(OfflineMeta {
                next_seq: 1,
                count: 0,
            }),
        }
    }

    /// Appends a stanza; returns its sequence number, or `OfflineFull` when
    /// the queue already holds `offline_limit` messages.
    pub fn push(
        &self,
        user: &BareJid,
        stanza: &[u8],
    ) -> Result<Result<u64, OfflineFull>, StorageError> {
        let _user = self.db.lock_user(user.as_str());
        let mut b = Batch::new();
        let r = self.push_in(&mut b, user, stanza)?;
        self.db.apply(&b)?;
        Ok(r)
    }

    /// Plans [`Offline::push`] into `b`, for the only writer of `user`.
    pub fn push_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        stanza: &[u8],
    ) -> Result<Result<u64, OfflineFull>, StorageError> {
        let meta_key = keys::offline_meta(user)?;
        let limit = self.db.opts.offline_limit;
        let meta = self.meta(b, &meta_key)?;
        if meta.count >= limit as u64 {
            return Ok(Err(OfflineFull { limit }));
        }
        let seq = meta.next_seq;
        let next = OfflineMeta {
            next_seq: seq.checked_add(1).ok_or(StorageError::corrupt(
                "offline queue meta",
                "sequence overflow",
            ))?,
            count: meta.count + 1,
        };
        b.put(
            Family::Offline,
            keys::offline_msg(user, seq)?,
            codec::encode_blob(stanza),
        );
        b.put(Family::Offline, meta_key, codec::encode_offline_meta(&next));
        Ok(Ok(seq))
    }

    /// Number of stored messages, O(1).
    pub fn count(&self, user: &BareJid) -> Result<usize, StorageError> {
        let count = self.meta(&Batch::new(), &keys::offline_meta(user)?)?.count;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// All stored messages with their sequence numbers, oldest first.
    pub fn list(&self, user: &BareJid) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let range = keys::offline_msgs(user)?;
        self.db.scan(CF_OFFLINE, &range, |k, v| {
            Ok((
                keys::decode_offline_seq(&range, k)?,
                codec::decode_blob(MESSAGE, v)?,
            ))
        })
    }

    /// Deletes every message with a sequence number up to `seq` included
    /// (after they were delivered).
    pub fn remove_through(&self, user: &BareJid, seq: u64) -> Result<(), StorageError> {
        let _user = self.db.lock_user(user.as_str());
        let mut b = Batch::new();
        self.remove_through_in(&mut b, user, seq)?;
        self.db.apply(&b)
    }

    /// Plans [`Offline::remove_through`] into `b`. Messages pushed in `b`
    /// itself are not removed.
    pub fn remove_through_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        seq: u64,
    ) -> Result<(), StorageError> {
        let meta_key = keys::offline_meta(user)?;
        let range = keys::offline_msgs_through(user, seq)?;
        let doomed = self.db.scan(CF_OFFLINE, &range, |k, _| Ok(k.to_vec()))?;
        if doomed.is_empty() {
            return Ok(());
        }
        let mut meta = self.meta(b, &meta_key)?;
        meta.count = meta
            .count
            .checked_sub(doomed.len() as u64)
            .ok_or(StorageError::corrupt(
                "offline queue meta",
                "count below stored messages",
            ))?;
        for k in doomed {
            b.delete(Family::Offline, k);
        }
        b.put(Family::Offline, meta_key, codec::encode_offline_meta(&meta));
        Ok(())
    }
}
