//! Entity capabilities (XEP-0115) learnt from clients: per capability
//! hash (`<hash> <ver>`), the bytes of the disco#info `<query/>` that was
//! verified against it, kept opaque. Verification and parsing belong to
//! the module that owns the payload. A record is owned by its hash's home
//! (`caps::home`), so the whole cluster learns a hash once and every core
//! node can ask that one shard for it.

use std::sync::Arc;

use crate::batch::{Batch, Family};
use crate::db::Db;
use crate::keys;
use crate::{StorageError, codec};

const CAPS: &str = "capabilities";

/// The home (the owner, which decides the shard) of hash `key`.
pub fn home(key: &str) -> String {
    format!("caps {key}")
}

/// The capabilities store; reach it through `Store::caps`.
pub struct Caps {
    db: Arc<Db>,
}

impl Caps {
    pub(crate) fn new(db: Arc<Db>) -> Caps {
        Caps { db }
    }

    /// The verified disco#info of hash `key`, if learnt. Keys are
    /// non-empty, at most 1023 bytes, without NUL.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self.db.get(keys::CF_CAPS, &keys::caps(key)?)? {
            Some(v) => Ok(Some(codec::decode_blob(CAPS, &v)?)),
            None => Ok(None),
        }
    }

    /// Plans storing `query` as what hash `key` means.
    pub fn put_in(&self, b: &mut Batch, key: &str, query: &[u8]) -> Result<(), StorageError> {
        b.put(Family::Caps, keys::caps(key)?, codec::encode_blob(query));
        Ok(())
    }
}
