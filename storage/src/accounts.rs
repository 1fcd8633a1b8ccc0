//! Accounts: one record per registered bare JID holding its SCRAM
//! credentials (RFC 5802 StoredKey/ServerKey, never a password). Deleting an account
//! removes everything stored for that user, in every column family, in one
//! atomic batch: with it go the user's private storage and PEP service
//! (every node on the user's bare JID, with the subscriptions and
//! affiliations others hold there). What the user holds on other services
//! (subscriptions, affiliations, nodes created on a PubSub domain or on
//! another user's PEP) belongs to those nodes' homes, on other shards, and
//! stays until those services clean it up.

use std::sync::Arc;

use proto::BareJid;
use proto::sasl::StoredCredentials;

use crate::batch::{Batch, Family};
use crate::db::Db;
use crate::keys::{self, CF_ACCOUNTS};
use crate::{StorageError, codec};

/// The accounts store; reach it through `Store::accounts`.
pub struct Accounts {
    db: Arc<Db>,
}

impl Accounts {
    pub(crate) fn new(db: Arc<Db>) -> Accounts {
        Accounts { db }
    }

    /// Registers `user`; `false` (and no change) if it already existed.
    pub fn create(&self, user: &BareJid, creds: &StoredCredentials) -> Result<bool, StorageError> {
        let _user = self.db.lock_user(user.as_str());
        let mut b = Batch::new();
        let created = self.create_in(&mut b, user, creds)?;
        self.db.apply(&b)?;
        Ok(created)
    }

    /// Plans [`Accounts::create`] into `b`, for a caller that is the only
    /// writer of `user`'s records.
    pub fn create_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<bool, StorageError> {
        let key = keys::account(user)?;
        let value = codec::encode_credentials(creds)?;
        if self.db.exists_through(b, Family::Accounts, &key)? {
            return Ok(false);
        }
        b.put(Family::Accounts, key, value);
        Ok(true)
    }

    /// The credentials of `user`, if registered.
    pub fn get(&self, user: &BareJid) -> Result<Option<StoredCredentials>, StorageError> {
        match self.db.get(CF_ACCOUNTS, &keys::account(user)?)? {
            Some(v) => Ok(Some(codec::decode_credentials(&v)?)),
            None => Ok(None),
        }
    }

    pub fn exists(&self, user: &BareJid) -> Result<bool, StorageError> {
        self.db.exists(CF_ACCOUNTS, &keys::account(user)?)
    }

    /// Replaces the credentials (password change); `false` if there is no
    /// such account.
    pub fn set_credentials(
        &self,
        user: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<bool, StorageError> {
        let _user = self.db.lock_user(user.as_str());
        let mut b = Batch::new();
        let changed = self.set_credentials_in(&mut b, user, creds)?;
        self.db.apply(&b)?;
        Ok(changed)
    }

    /// Plans [`Accounts::set_credentials`] into `b`.
    pub fn set_credentials_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<bool, StorageError> {
        let key = keys::account(user)?;
        let value = codec::encode_credentials(creds)?;
        if !self.db.exists_through(b, Family::Accounts, &key)? {
            return Ok(false);
        }
        b.put(Family::Accounts, key, value);
        Ok(true)
    }

    /// Removes the account and all of the user's data: roster items and
    /// version, offline queue and its counters, vCard, private storage and
    /// (for a user with a localpart) PEP service. `false` if there was no
    /// such account (then nothing is touched).
    pub fn delete(&self, user: &BareJid) -> Result<bool, StorageError> {
        let _user = self.db.lock_user(user.as_str());
        let mut b = Batch::new();
        let deleted = self.delete_in(&mut b, user)?;
        self.db.apply(&b)?;
        Ok(deleted)
    }

    /// Plans [`Accounts::delete`] into `b`.
    pub fn delete_in(&self, b: &mut Batch, user: &BareJid) -> Result<bool, StorageError> {
        let key = keys::account(user)?;
        if !self.db.exists_through(b, Family::Accounts, &key)? {
            return Ok(false);
        }
        let roster = keys::roster_items(user)?;
        let requests = keys::sub_requests(user)?;
        let offline = keys::offline_msgs(user)?;
        b.delete(Family::Accounts, key);
        b.delete(Family::Rosters, keys::roster_version(user)?);
        b.delete_range(Family::Rosters, roster.start, roster.end);
        b.delete_range(Family::Rosters, requests.start, requests.end);
        b.delete(Family::Rosters, keys::last_unavailable(user)?);
        b.delete(Family::Offline, keys::offline_meta(user)?);
        b.delete_range(Family::Offline, offline.start, offline.end);
        b.delete(Family::Vcards, keys::vcard(user)?);
        crate::private::plan_delete_user(b, user)?;
        // A domain-only account's bare JID is a PubSub service domain, not
        // a PEP service: its nodes are not the account's.
        if user.local().is_some() {
            crate::pubsub::plan_delete_service(b, user)?;
        }
        Ok(true)
    }

    /// Registered accounts, all or of one domain, sorted by JID.
    pub fn list(&self, domain: Option<&str>) -> Result<Vec<BareJid>, StorageError> {
        // Normalise the domain the way a JID's is; one that is not a valid
        // domain has no accounts.
        let domain = match domain.map(BareJid::domain_jid) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(_)) => return Ok(Vec::new()),
        };
        let range = keys::accounts(domain.as_ref().map(BareJid::as_str))?;
        let mut all = self
            .db
            .scan(CF_ACCOUNTS, &range, |k, _| keys::decode_account(k))?;
        all.sort();
        Ok(all)
    }

    /// Number of registered accounts (a scan of the account keys: there
    /// is no global counter, because accounts are written by many shards).
    pub fn count(&self) -> Result<u64, StorageError> {
        let all = self
            .db
            .scan(CF_ACCOUNTS, &keys::accounts(None)?, |_, _| Ok(()))?;
        Ok(all.len() as u64)
    }
}
