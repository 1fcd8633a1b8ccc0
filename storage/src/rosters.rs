//! Rosters (RFC 6121 §2): per user the items keyed by contact bare JID, each
//! with its name, groups and full subscription state (RFC 6121 Appendix A),
//! and a version counter (XEP-0237 roster versioning) that every change
//! bumps in the same batch as the change itself. Beside the items, the
//! complete stanza of each pending inbound subscription request, which
//! the server delivers again as sent (RFC 6121 §3.1.3).

use std::sync::Arc;

use proto::BareJid;
use proto::roster::SubState;

use crate::batch::{Batch, Family};
use crate::db::Db;
use crate::keys::{self, CF_ROSTERS};
use crate::{StorageError, codec};

const VERSION: &str = "roster version";

/// One contact in a user's roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    pub jid: BareJid,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub state: SubState,
    /// Kept for the subscription state only (e.g. a pending inbound request
    /// from someone the user never added): not shown in the roster
    /// (RFC 6121 §3.1.3).
    pub hidden: bool,
}

/// The roster store; reach it through `Store::rosters`.
pub struct Rosters {
    db: Arc<Db>,
}

impl Rosters {
    pub(crate) fn new(db: Arc<Db>) -> Rosters {
        Rosters { db }
    }

    /// The roster version and all items sorted by JID, read from one
    /// snapshot so the version matches the items.
    pub fn get_all(&self, user: &BareJid) -> Result<(u64, Vec<RosterItem>), StorageError> {
        let range = keys::roster_items(user)?;
        let (version, items) =
            self.db
                .get_and_scan(CF_ROSTERS, &keys::roster_version(user)?, &range, |k, v| {
                    codec::decode_roster_item(keys::decode_roster_contact(&range, k)?, v)
                })?;
        Ok((decode_version(version)?, items))
    }

    pub fn get(
        &self,
        user: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StorageError> {
        match self
            .db
            .get(CF_ROSTERS, &keys::roster_item(user, contact)?)?
        {
            Some(v) => Ok(Some(codec::decode_roster_item(contact.clone(), &v)?)),
            None => Ok(None),
        }
    }

    /// [`Rosters::get`] as it will be once `pending` is written.
    pub fn get_in(
        &self,
        pending: &Batch,
        user: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StorageError> {
        let key = keys::roster_item(user, contact)?;
        match self.db.get_through(pending, Family::Rosters, &key)? {
            Some(v) => Ok(Some(codec::decode_roster_item(contact.clone(), &v)?)),
            None => Ok(None),
        }
    }

    /// Adds or replaces the item for `item.jid` and bumps the version;
    /// returns the new version.
    pub fn put(&self, user: &BareJid, item: &RosterItem) -> Result<u64, StorageError> {
        let _user = self.db.lock_user(user.as_str());
        let mut b = Batch::new();
        let v = self.put_in(&mut b, user, item)?;
        self.db.apply(&b)?;
        Ok(v)
    }

    /// Plans [`Rosters::put`] into `b`, for the only writer of `user`.
    pub fn put_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        item: &RosterItem,
    ) -> Result<u64, StorageError> {
        let key = keys::roster_item(user, &item.jid)?;
        let value = codec::encode_roster_item(item)?;
        let version_key = keys::roster_version(user)?;
        let version = self.bumped(b, &version_key)?;
        b.put(Family::Rosters, key, value);
        b.put(Family::Rosters, version_key, codec::encode_counter(version));
        Ok(version)
    }

    /// Removes the item for `contact` and bumps the version; returns the
    /// new version. Removing an absent item changes nothing and returns
    /// the current version.
    pub fn remove(&self, user: &BareJid, contact: &BareJid) -> Result<u64, StorageError> {
        let _user = self.db.lock_user(user.as_str());
        let mut b = Batch::new();
        let v = self.remove_in(&mut b, user, contact)?;
        self.db.apply(&b)?;
        Ok(v)
    }

    /// Plans [`Rosters::remove`] into `b`.
    pub fn remove_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        contact: &BareJid,
    ) -> Result<u64, StorageError> {
        let key = keys::roster_item(user, contact)?;
        let version_key = keys::roster_version(user)?;
        if !self.db.exists_through(b, Family::Rosters, &key)? {
            return decode_version(self.db.get_through(b, Family::Rosters, &version_key)?);
        }
        let version = self.bumped(b, &version_key)?;
        b.delete(Family::Rosters, key);
        b.put(Family::Rosters, version_key, codec::encode_counter(version));
        Ok(version)
    }

    /// The stanza of the pending subscription request from `contact`, as
    /// it will be once `pending` is written.
    pub fn request_in(
        &self,
        pending: &Batch,
        user: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let key = keys::sub_request(user, contact)?;
        self.db.get_through(pending, Family::Rosters, &key)
    }

    /// Plans keeping `stanza`, the subscription request from `contact`.
    pub fn put_request_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        contact: &BareJid,
        stanza: &[u8],
    ) -> Result<(), StorageError> {
        b.put(
            Family::Rosters,
            keys::sub_request(user, contact)?,
            stanza.to_vec(),
        );
        Ok(())
    }

    /// Plans forgetting the subscription request from `contact`.
    pub fn remove_request_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        contact: &BareJid,
    ) -> Result<(), StorageError> {
        b.delete(Family::Rosters, keys::sub_request(user, contact)?);
        Ok(())
    }

    /// The last unavailable presence the user sent with content (a status,
    /// say), kept to answer probes while no resource is available (RFC
    /// 6121 §4.3.2), as it will be once `pending` is written.
    pub fn last_unavailable_in(
        &self,
        pending: &Batch,
        user: &BareJid,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get_through(pending, Family::Rosters, &keys::last_unavailable(user)?)
    }

    /// Plans keeping `stanza` as the user's last unavailable presence, or
    /// (`None`) forgetting the one kept.
    pub fn set_last_unavailable_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        stanza: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let key = keys::last_unavailable(user)?;
        match stanza {
            Some(s) => b.put(Family::Rosters, key, s.to_vec()),
            None => b.delete(Family::Rosters, key),
        }
        Ok(())
    }

    /// The current version; 0 for a roster never written.
    pub fn version(&self, user: &BareJid) -> Result<u64, StorageError> {
        decode_version(self.db.get(CF_ROSTERS, &keys::roster_version(user)?)?)
    }

    /// The version after one more change (and those planned in `b`).
    fn bumped(&self, b: &Batch, version_key: &[u8]) -> Result<u64, StorageError> {
        let v = decode_version(self.db.get_through(b, Family::Rosters, version_key)?)?;
        v.checked_add(1)
            .ok_or(StorageError::corrupt(VERSION, "counter overflow"))
    }
}

fn decode_version(v: Option<Vec<u8>>) -> Result<u64, StorageError> {
    match v {
        Some(v) => codec::decode_counter(VERSION, &v),
        None => Ok(0),
    }
}
