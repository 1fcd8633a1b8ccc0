//! Accounts: one record per registered bare JID holding its SCRAM
//! credentials (RFC 5802 StoredKey/ServerKey, never a password), plus a
//! stored account count kept in the same batches. Deleting an account
//! removes everything stored for that user, in every column family, in one
//! atomic batch.

use std::sync::Arc;

use proto::BareJid;
use proto::sasl::StoredCredentials;
use rocksdb::WriteBatch;

use crate::db::Db;
use crate::keys::{self, CF_ACCOUNTS, CF_OFFLINE, CF_ROSTERS, CF_VCARDS};
use crate::{StorageError, codec};

const COUNT: &str = "account count";

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
        let key = keys::account(user)?;
        let value = codec::encode_credentials(creds)?;
        let _user = self.db.lock_user(user.as_str());
        if self.db.exists(CF_ACCOUNTS, &key)? {
            return Ok(false);
        }
        let _count = self.db.lock_account_count();
        let count = self.count()?;
        let cf = self.db.cf(CF_ACCOUNTS)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, key, value);
        batch.put_cf(cf, keys::account_count(), codec::encode_counter(count + 1));
        self.db.write(batch)?;
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
        let key = keys::account(user)?;
        let value = codec::encode_credentials(creds)?;
        let _user = self.db.lock_user(user.as_str());
        if !self.db.exists(CF_ACCOUNTS, &key)? {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf(CF_ACCOUNTS)?, key, value);
        self.db.write(batch)?;
        Ok(true)
    }

    /// Removes the account and all of the user's data: roster items and
    /// version, offline queue and its counters, vCard. `false` if there was
    /// no such account (then nothing is touched).
    pub fn delete(&self, user: &BareJid) -> Result<bool, StorageError> {
        let key = keys::account(user)?;
        let roster = keys::roster_items(user)?;
        let offline = keys::offline_msgs(user)?;
        let _user = self.db.lock_user(user.as_str());
        if !self.db.exists(CF_ACCOUNTS, &key)? {
            return Ok(false);
        }
        let _count = self.db.lock_account_count();
        let count = self.count()?;
        let accounts = self.db.cf(CF_ACCOUNTS)?;
        let rosters = self.db.cf(CF_ROSTERS)?;
        let offline_cf = self.db.cf(CF_OFFLINE)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(accounts, key);
        batch.put_cf(
            accounts,
            keys::account_count(),
            codec::encode_counter(count.saturating_sub(1)),
        );
        batch.delete_cf(rosters, keys::roster_version(user)?);
        batch.delete_range_cf(rosters, roster.start, roster.end);
        batch.delete_cf(offline_cf, keys::offline_meta(user)?);
        batch.delete_range_cf(offline_cf, offline.start, offline.end);
        batch.delete_cf(self.db.cf(CF_VCARDS)?, keys::vcard(user)?);
        self.db.write(batch)?;
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

    /// Number of registered accounts, O(1).
    pub fn count(&self) -> Result<u64, StorageError> {
        match self.db.get(CF_ACCOUNTS, &keys::account_count())? {
            Some(v) => codec::decode_counter(COUNT, &v),
            None => Ok(0),
        }
    }
}
