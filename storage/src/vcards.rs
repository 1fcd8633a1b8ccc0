//! vCards (XEP-0054 vcard-temp): per user the raw bytes of the stored
//! `<vCard/>` element, kept opaque. Parsing and size limits belong to the
//! module that owns the payload, not to storage.

use std::sync::Arc;

use proto::BareJid;
use rocksdb::WriteBatch;

use crate::db::Db;
use crate::keys::{self, CF_VCARDS};
use crate::{StorageError, codec};

const VCARD: &str = "vcard";

/// The vCard store; reach it through `Store::vcards`.
pub struct Vcards {
    db: Arc<Db>,
}

impl Vcards {
    pub(crate) fn new(db: Arc<Db>) -> Vcards {
        Vcards { db }
    }

    /// The stored `<vCard/>` bytes of `user`, if any.
    pub fn get(&self, user: &BareJid) -> Result<Option<Vec<u8>>, StorageError> {
        match self.db.get(CF_VCARDS, &keys::vcard(user)?)? {
            Some(v) => Ok(Some(codec::decode_blob(VCARD, &v)?)),
            None => Ok(None),
        }
    }

    /// Stores the vCard, or removes it with `None`.
    pub fn set(&self, user: &BareJid, vcard: Option<&[u8]>) -> Result<(), StorageError> {
        let key = keys::vcard(user)?;
        let cf = self.db.cf(CF_VCARDS)?;
        let mut batch = WriteBatch::default();
        match vcard {
            Some(v) => batch.put_cf(cf, key, codec::encode_blob(v)),
            None => batch.delete_cf(cf, key),
        }
        self.db.write(batch)
    }
}
