//! Subscriptions (XEP-0060 §4.2, §6.1): per (node, subscriber, subid) the
//! state and options, scanned per node on every publish, with an index by
//! subscriber (bare JID, then resource) so that a subscriber's
//! subscriptions across a service (§5.6) are one prefix scan. The index
//! entry is written and deleted with its subscription.

use proto::{BareJid, Jid};

use super::{Pubsub, Subscription};
use crate::batch::{Batch, Family};
use crate::keys::CF_PUBSUB;
use crate::keys::pubsub as keys;
use crate::{StorageError, codec};

impl Pubsub {
    /// Every committed subscription to the node, by subscriber and subid:
    /// the fan-out path, one prefix scan and nothing copied beyond the
    /// results.
    pub fn subscriptions(
        &self,
        service: &BareJid,
        node: &str,
    ) -> Result<Vec<Subscription>, StorageError> {
        let range = keys::subscriptions(service, node)?;
        self.db
            .scan_dir(CF_PUBSUB, &range, false, usize::MAX, |k, v| {
                let (jid, subid) = keys::decode_subscription(&range, k)?;
                codec::decode_subscription(jid, subid, v)
            })
    }

    /// The subscriptions of exactly `jid` (a bare JID's do not include
    /// its full JIDs') to the node, as they will be once `pending` is
    /// written: the committed ones with the puts and removals planned in
    /// `pending` over them. Sorted by subid.
    pub fn subscriptions_of_in(
        &self,
        pending: &Batch,
        service: &BareJid,
        node: &str,
        jid: &Jid,
    ) -> Result<Vec<Subscription>, StorageError> {
        let range = keys::subscriptions_of(service, node, jid)?;
        let found = self
            .db
            .scan_through(pending, Family::Pubsub, &range, false, usize::MAX)?;
        found
            .iter()
            .map(|(k, v)| {
                let subid = keys::decode_tail("pubsub subscription key", &range, k)?;
                codec::decode_subscription(jid.as_str(), subid, v)
            })
            .collect()
    }

    /// Plans adding or replacing the subscription (`sub.jid`, `sub.subid`)
    /// with its index entry. Subscription ids may be empty, are at most
    /// `MAX_ID_LEN` bytes and contain no NUL.
    pub fn put_subscription_in(
        &self,
        b: &mut Batch,
        service: &BareJid,
        node: &str,
        sub: &Subscription,
    ) -> Result<(), StorageError> {
        let key = keys::subscription(service, node, &sub.jid, &sub.subid)?;
        let index = keys::by_subscriber(service, &sub.jid, node, &sub.subid)?;
        if !self.db.exists_through(b, Family::Pubsub, &key)? {
            let n = self.subscription_count_in(b, service, node)?;
            self.set_count(b, service, node, n as u64 + 1)?;
        }
        b.put(Family::Pubsub, key, codec::encode_subscription(sub));
        b.put(Family::Pubsub, index, codec::encode_marker());
        Ok(())
    }

    /// Plans removing one subscription and its index entry; `false` (and
    /// nothing planned) if there is none, counting what `b` plans.
    pub fn remove_subscription_in(
        &self,
        b: &mut Batch,
        service: &BareJid,
        node: &str,
        jid: &Jid,
        subid: &str,
    ) -> Result<bool, StorageError> {
        let key = keys::subscription(service, node, jid, subid)?;
        if !self.db.exists_through(b, Family::Pubsub, &key)? {
            return Ok(false);
        }
        let n = self.subscription_count_in(b, service, node)?;
        self.set_count(b, service, node, n.saturating_sub(1) as u64)?;
        b.delete(Family::Pubsub, key);
        b.delete(
            Family::Pubsub,
            keys::by_subscriber(service, jid, node, subid)?,
        );
        Ok(true)
    }

    /// The committed subscriptions of `jid` across `service`'s nodes
    /// (XEP-0060 §5.6), with their node ids: a full JID's own, or a bare
    /// JID's together with those of all its full JIDs. Sorted by resource
    /// (the bare JID's first), then node, then subid.
    pub fn subscriptions_by(
        &self,
        service: &BareJid,
        jid: &Jid,
    ) -> Result<Vec<(String, Subscription)>, StorageError> {
        const R: &str = "pubsub subscriber index";
        let range = keys::by_subscriber_range(service, jid)?;
        self.db.scan_lookup(
            CF_PUBSUB,
            &range,
            |k| keys::subscription_of_entry(service, &keys::decode_by_subscriber(service, k)?),
            |k, v| {
                let e = keys::decode_by_subscriber(service, k)?;
                let v = v.ok_or(StorageError::corrupt(R, "names a missing subscription"))?;
                let sub = codec::decode_subscription(&e.jid(), e.subid, v)?;
                Ok((e.node.to_owned(), sub))
            },
        )
    }

    /// How many subscriptions the node has, counting what `b` plans: one
    /// point read of the node's counter, kept by every subscription put or
    /// removed. A node from before the counter (or without one yet) is
    /// counted by a scan, once: the next change writes the counter.
    /// Counting by scan at every subscribe made 100,000 subscriptions to
    /// one node quadratic.
    pub fn subscription_count_in(
        &self,
        b: &Batch,
        service: &BareJid,
        node: &str,
    ) -> Result<usize, StorageError> {
        let key = keys::subscription_count(service, node)?;
        if let Some(v) = self.get_through(b, &key)? {
            let bytes: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| StorageError::corrupt("pubsub subscription count", "not 8 bytes"))?;
            return Ok(u64::from_be_bytes(bytes) as usize);
        }
        Ok(self
            .scan_through(b, &keys::subscriptions(service, node)?)?
            .len())
    }

    /// How many committed subscriptions the node has.
    pub fn subscription_count(&self, service: &BareJid, node: &str) -> Result<usize, StorageError> {
        self.subscription_count_in(&Batch::new(), service, node)
    }

    fn set_count(
        &self,
        b: &mut Batch,
        service: &BareJid,
        node: &str,
        n: u64,
    ) -> Result<(), StorageError> {
        b.put(
            Family::Pubsub,
            keys::subscription_count(service, node)?,
            n.to_be_bytes().to_vec(),
        );
        Ok(())
    }
}
