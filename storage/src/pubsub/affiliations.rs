//! Affiliations (XEP-0060 §4.1): one per (node, bare JID), with an index
//! by JID so that a JID's affiliations across a service (§5.7) are one
//! prefix scan. Both records hold the affiliation and are written
//! together.

use proto::BareJid;

use super::{Affiliation, Pubsub};
use crate::batch::{Batch, Family};
use crate::keys::CF_PUBSUB;
use crate::keys::pubsub as keys;
use crate::{StorageError, codec};

const KEY: &str = "pubsub affiliation key";

impl Pubsub {
    /// `jid`'s affiliation with the node, as it will be once `pending` is
    /// written.
    pub fn affiliation_in(
        &self,
        pending: &Batch,
        service: &BareJid,
        node: &str,
        jid: &BareJid,
    ) -> Result<Option<Affiliation>, StorageError> {
        match self.get_through(pending, &keys::affiliation(service, node, jid)?)? {
            Some(v) => Ok(Some(codec::decode_affiliation(&v)?)),
            None => Ok(None),
        }
    }

    /// Plans setting `jid`'s affiliation, or (`None`) removing it.
    pub fn set_affiliation_in(
        &self,
        b: &mut Batch,
        service: &BareJid,
        node: &str,
        jid: &BareJid,
        affiliation: Option<Affiliation>,
    ) -> Result<(), StorageError> {
        let key = keys::affiliation(service, node, jid)?;
        let index = keys::by_affiliated(service, jid.as_str(), node)?;
        match affiliation {
            Some(a) => {
                b.put(Family::Pubsub, key, codec::encode_affiliation(a));
                b.put(Family::Pubsub, index, codec::encode_affiliation(a));
            }
            None => {
                b.delete(Family::Pubsub, key);
                b.delete(Family::Pubsub, index);
            }
        }
        Ok(())
    }

    /// Every committed affiliation with the node, sorted by JID.
    pub fn affiliations(
        &self,
        service: &BareJid,
        node: &str,
    ) -> Result<Vec<(BareJid, Affiliation)>, StorageError> {
        let range = keys::affiliations(service, node)?;
        self.db
            .scan_dir(CF_PUBSUB, &range, false, usize::MAX, |k, v| {
                let jid = keys::decode_tail(KEY, &range, k)?;
                let jid = BareJid::parse(jid)
                    .map_err(|_| StorageError::corrupt(KEY, "not a bare jid"))?;
                Ok((jid, codec::decode_affiliation(v)?))
            })
    }

    /// `jid`'s committed affiliations across `service`'s nodes (XEP-0060
    /// §5.7), sorted by node id.
    pub fn affiliations_of(
        &self,
        service: &BareJid,
        jid: &BareJid,
    ) -> Result<Vec<(String, Affiliation)>, StorageError> {
        let range = keys::by_affiliated_range(service, jid)?;
        self.db
            .scan_dir(CF_PUBSUB, &range, false, usize::MAX, |k, v| {
                let node = keys::decode_tail("pubsub affiliation index key", &range, k)?;
                Ok((node.to_owned(), codec::decode_affiliation(v)?))
            })
    }
}
