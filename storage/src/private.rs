//! Private XML storage (XEP-0049): per user, the bytes of each stored
//! element under its (element name, namespace), kept opaque: parsing and
//! size limits belong to the module that owns the payload. In a column
//! family of its own, `private`, because it is an aggregate of its own
//! (its own size and access pattern, deleted with the account by one range
//! delete); every record is owned by its user. Bookmarks (XEP-0048) and
//! other users of XEP-0049 live here.

use std::sync::Arc;

use proto::BareJid;

use crate::batch::{Batch, Family};
use crate::db::Db;
use crate::keys;
use crate::{StorageError, codec};

const PRIVATE: &str = "private xml";

/// The private storage store; reach it through `Store::private`.
pub struct Private {
    db: Arc<Db>,
}

impl Private {
    pub(crate) fn new(db: Arc<Db>) -> Private {
        Private { db }
    }

    /// The stored element `name` in namespace `ns`, as it will be once
    /// `pending` is written. Names are non-empty; names and namespaces
    /// are at most 1023 bytes and contain no NUL.
    pub fn get_in(
        &self,
        pending: &Batch,
        user: &BareJid,
        name: &str,
        ns: &str,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let key = keys::private(user, name, ns)?;
        match self.db.get_through(pending, Family::Private, &key)? {
            Some(v) => Ok(Some(codec::decode_blob(PRIVATE, &v)?)),
            None => Ok(None),
        }
    }

    /// Plans storing `xml` as the element (`name`, `ns`), replacing what
    /// was there.
    pub fn put_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        name: &str,
        ns: &str,
        xml: &[u8],
    ) -> Result<(), StorageError> {
        b.put(
            Family::Private,
            keys::private(user, name, ns)?,
            codec::encode_blob(xml),
        );
        Ok(())
    }

    /// Plans removing the element (`name`, `ns`).
    pub fn delete_in(
        &self,
        b: &mut Batch,
        user: &BareJid,
        name: &str,
        ns: &str,
    ) -> Result<(), StorageError> {
        b.delete(Family::Private, keys::private(user, name, ns)?);
        Ok(())
    }
}

/// Plans removing everything `user` stored (with the account).
pub(crate) fn plan_delete_user(b: &mut Batch, user: &BareJid) -> Result<(), StorageError> {
    let r = keys::private_all(user)?;
    b.delete_range(Family::Private, r.start, r.end);
    Ok(())
}
