//! vCards (XEP-0054 vcard-temp): per user the raw bytes of the stored
//! `<vCard/>` element, kept opaque. Parsing and size limits belong to the
//! module that owns the payload, not to storage.

use std::sync::Arc;

use proto::BareJid;

use crate::batch::{Batch, Family};
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
        let mut b = Batch::new();
        self.set_in(&mut b, user, vcard)?;
        self.db.apply(&b)
    }

    /// Plans [`Vcards::set`] into `b`.
    pub fn set_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        vcard: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let key = keys::vcard(user)?;
        match vcard {
            Some(v) => b.put(Family::Vcards, key, codec::encode_blob(v)),
            None => b.delete(Family::Vcards, key),
        }
        Ok(())
    }
}
