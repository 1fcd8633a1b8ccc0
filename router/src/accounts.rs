//! Accounts: creation, password changes and removal, with credentials kept
//! as SCRAM verifiers only (RFC 5802 §3), passwords prepared with PRECIS
//! OpaqueString (RFC 8265 §4).
//!
//! A running core changes accounts through the user's shard, which commits
//! the planned writes (`plan_*`) through its Raft group
//! (`Core::add_account`, ...). The direct `add`, `set_password` and
//! `delete` write the local store at once: they are for `xmppd user ...`
//! on a single node that is not running.

use proto::BareJid;
use proto::sasl::{StoredCredentials, credentials::DEFAULT_ITERATIONS};

use crate::Store;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account {0} already exists")]
    Exists(String),
    #[error("no such account {0}")]
    NoSuchUser(String),
    #[error("{0}")]
    BadPassword(String),
    #[error("{0} is not a user address (localpart@domain)")]
    NotAUser(String),
    #[error("domain {0} is not served here")]
    UnknownDomain(String),
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("the change was not committed: {0}")]
    NotCommitted(String),
}

/// The account operations; cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    domains: Vec<String>,
    min_password_len: usize,
}

impl Accounts {
    pub fn new(store: Store, domains: Vec<String>, min_password_len: usize) -> Accounts {
        Accounts {
            store,
            domains,
            min_password_len,
        }
    }

    fn check_user(&self, user: &BareJid) -> Result<(), AccountError> {
        if user.local().is_none() {
            return Err(AccountError::NotAUser(user.to_string()));
        }
        if !self.domains.iter().any(|d| d == user.domain()) {
            return Err(AccountError::UnknownDomain(user.domain().to_string()));
        }
        Ok(())
    }

    fn credentials_for(&self, password: &str) -> Result<StoredCredentials, AccountError> {
        if password.chars().count() < self.min_password_len {
            return Err(AccountError::BadPassword(format!(
                "password shorter than {} characters",
                self.min_password_len
            )));
        }
        StoredCredentials::new(password, DEFAULT_ITERATIONS)
            .map_err(|e| AccountError::BadPassword(e.to_string()))
    }

    pub fn add(&self, user: &BareJid, password: &str) -> Result<(), AccountError> {
        self.check_user(user)?;
        let creds = self.credentials_for(password)?;
        if self.store.0.accounts().create(user, &creds)? {
            Ok(())
        } else {
            Err(AccountError::Exists(user.to_string()))
        }
    }

    pub fn set_password(&self, user: &BareJid, password: &str) -> Result<(), AccountError> {
        let creds = self.credentials_for(password)?;
        if self.store.0.accounts().set_credentials(user, &creds)? {
            Ok(())
        } else {
            Err(AccountError::NoSuchUser(user.to_string()))
        }
    }

    /// Remove the account's stored data. Live sessions are ended by
    /// [`crate::Core::delete_account`], which calls this.
    pub fn delete(&self, user: &BareJid) -> Result<(), AccountError> {
        if self.store.0.accounts().delete(user)? {
            Ok(())
        } else {
            Err(AccountError::NoSuchUser(user.to_string()))
        }
    }

    /// Checks `user` and derives the stored credentials for `password`
    /// (slow on purpose: SCRAM's iterated hash).
    pub fn prepare(
        &self,
        user: &BareJid,
        password: &str,
    ) -> Result<StoredCredentials, AccountError> {
        self.check_user(user)?;
        self.credentials_for(password)
    }

    /// Plans the creation of `user` into `b` (the shard of `user` commits it).
    pub fn plan_add(
        &self,
        b: &mut storage::Batch,
        user: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), AccountError> {
        if self.store.0.accounts().create_in(b, user, creds)? {
            Ok(())
        } else {
            Err(AccountError::Exists(user.to_string()))
        }
    }

    /// Plans [`Accounts::set_password`] into `b`.
    pub fn plan_set_password(
        &self,
        b: &mut storage::Batch,
        user: &BareJid,
        password: &str,
    ) -> Result<(), AccountError> {
        let creds = self.credentials_for(password)?;
        self.plan_set_credentials(b, user, &creds)
    }

    /// Plans replacing the credentials of `user` into `b`.
    pub fn plan_set_credentials(
        &self,
        b: &mut storage::Batch,
        user: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), AccountError> {
        if self.store.0.accounts().set_credentials_in(b, user, creds)? {
            Ok(())
        } else {
            Err(AccountError::NoSuchUser(user.to_string()))
        }
    }

    /// Plans [`Accounts::delete`] into `b`.
    pub fn plan_delete(&self, b: &mut storage::Batch, user: &BareJid) -> Result<(), AccountError> {
        if self.store.0.accounts().delete_in(b, user)? {
            Ok(())
        } else {
            Err(AccountError::NoSuchUser(user.to_string()))
        }
    }

    pub fn list(&self, domain: Option<&str>) -> Result<Vec<BareJid>, AccountError> {
        Ok(self.store.0.accounts().list(domain)?)
    }

    pub fn exists(&self, user: &BareJid) -> Result<bool, AccountError> {
        Ok(self.store.0.accounts().exists(user)?)
    }

    pub fn credentials(&self, user: &BareJid) -> Result<Option<StoredCredentials>, AccountError> {
        Ok(self.store.0.accounts().get(user)?)
    }

    pub fn count(&self) -> Result<u64, AccountError> {
        Ok(self.store.0.accounts().count()?)
    }
}

/// An account change, as the leader of the user's shard makes it.
#[derive(Debug, Clone)]
pub enum AccountOp {
    Add(proto::sasl::StoredCredentials),
    SetCredentials(proto::sasl::StoredCredentials),
    Delete,
}
