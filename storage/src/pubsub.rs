//! PubSub (XEP-0060) and PEP (XEP-0163) records in the `pubsub` column
//! family: nodes, affiliations, subscriptions and items, with reverse
//! indexes for the subscriptions of one subscriber (XEP-0060 §5.6), the
//! affiliations of one JID (§5.7) and the nodes one account created (a
//! quota), each a prefix scan. A node is (service, node id): the service
//! is a PubSub domain (`pubsub.example`) or, for PEP, a user's bare JID.
//!
//! Every record of a node, index entries included, is owned by the node's
//! [`home`]: a user's PEP nodes live on the user's shard, a service's
//! nodes each on the shard of `service/node`. So a change to one node is
//! one batch for one Raft group, and a query across a service's nodes
//! (`nodes`, `subscriptions_by`, `affiliations_of`, `nodes_created_by`)
//! sees only the nodes whose shards this node carries: complete for PEP
//! and in a single-shard deployment, per shard otherwise.
//!
//! Writes are planned into a [`Batch`] (`*_in`). Point reads that a
//! handler needs consistent with its own planned writes read through the
//! batch (`node_in`, `affiliation_in`, `subscriptions_of_in`, `item_in`);
//! the planning writes themselves (replacing, retracting and trimming
//! items, deleting a node) read through it too. The other scans read the
//! committed state only: the router handles one IQ per commit, so what an
//! earlier IQ planned is committed before the next one reads.
//!
//! The node record's `next_seq` and `item_count` are kept by the item
//! writes in the `&mut NodeRecord` the caller passes; the caller writes the
//! record back with [`Pubsub::put_node_in`] in the same batch. Node
//! configuration, subscription options and item payloads are opaque bytes
//! (the router stores JSON and XML).

mod affiliations;
mod items;
mod subscriptions;

use std::sync::Arc;

use proto::{BareJid, Jid};

use crate::batch::{Batch, Family};
use crate::db::Db;
use crate::keys::pubsub as keys;
use crate::keys::{CF_PUBSUB, KeyRange};
use crate::{StorageError, codec};

pub use crate::keys::pubsub::MAX_ID_LEN;

/// A node's own record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The account that created the node; fixed for the node's life.
    pub creator: BareJid,
    pub created_ms: u64,
    /// The node configuration (XEP-0060 §8.2), opaque here.
    pub config: Vec<u8>,
    /// The sequence number the next published item gets.
    pub next_seq: u64,
    /// How many items the node holds.
    pub item_count: u64,
    /// No item has a lower sequence number: the items below were trimmed
    /// or purged. Scans start here rather than at the node's first key,
    /// so that they do not walk over the deletions of a node that has
    /// published and trimmed for a long time.
    pub low_seq: u64,
}

impl NodeRecord {
    /// A new node without items; its first item gets sequence number 1.
    pub fn new(creator: BareJid, created_ms: u64, config: Vec<u8>) -> NodeRecord {
        NodeRecord {
            creator,
            created_ms,
            config,
            next_seq: 1,
            item_count: 0,
            low_seq: 1,
        }
    }
}

/// An affiliation with a node (XEP-0060 §4.1); having none is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Affiliation {
    Owner,
    Publisher,
    PublishOnly,
    Member,
    Outcast,
}

/// The state of a subscription (XEP-0060 §4.2); `None` is no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionState {
    Pending,
    Unconfigured,
    Subscribed,
}

/// One subscription to a node. A JID may hold several, told apart by
/// `subid` (empty when the service assigns none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The subscriber, bare or full.
    pub jid: Jid,
    pub subid: String,
    pub state: SubscriptionState,
    /// Subscription options (XEP-0060 §6.3), opaque here.
    pub options: Vec<u8>,
}

/// A published item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    /// Its place in publication order: higher is newer. A replaced item
    /// gets a new one.
    pub seq: u64,
    pub publisher: Option<Jid>,
    pub published_ms: u64,
    /// The item's payload XML, opaque here.
    pub payload: Vec<u8>,
}

/// What [`Pubsub::put_item_in`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemWrite {
    /// An item with that id existed and was replaced.
    pub replaced: bool,
    /// The item's sequence number.
    pub seq: u64,
}

/// The sharding key that owns every record of the node: for PEP (a
/// service with a localpart) the service's bare JID, so that a user's PEP
/// nodes live with the user; else `service/node`.
pub fn home(service: &BareJid, node: &str) -> String {
    keys::home(service.as_str(), node).into_owned()
}

/// The PubSub store; reach it through `Store::pubsub`.
pub struct Pubsub {
    db: Arc<Db>,
}

const NODE: &str = "pubsub node";

impl Pubsub {
    pub(crate) fn new(db: Arc<Db>) -> Pubsub {
        Pubsub { db }
    }

    fn get_through(&self, pending: &Batch, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db.get_through(pending, Family::Pubsub, key)
    }

    /// Every record of `range` as it will be once `pending` is written.
    fn scan_through(
        &self,
        pending: &Batch,
        range: &KeyRange,
    ) -> Result<Vec<crate::raft::Record>, StorageError> {
        self.db
            .scan_through(pending, Family::Pubsub, range, false, usize::MAX)
    }

    /// The node's record as it will be once `pending` is written.
    pub fn node_in(
        &self,
        pending: &Batch,
        service: &BareJid,
        node: &str,
    ) -> Result<Option<NodeRecord>, StorageError> {
        match self.get_through(pending, &keys::node(service, node)?)? {
            Some(v) => Ok(Some(codec::decode_node(&v)?)),
            None => Ok(None),
        }
    }

    /// Plans creating or updating the node's record (after item writes,
    /// with the counters they moved). Refuses node ids that are empty,
    /// longer than [`MAX_ID_LEN`] bytes or contain NUL.
    pub fn put_node_in(
        &self,
        b: &mut Batch,
        service: &BareJid,
        node: &str,
        rec: &NodeRecord,
    ) -> Result<(), StorageError> {
        let key = keys::node(service, node)?;
        let value = codec::encode_node(rec)?;
        let old = match self.get_through(b, &key)? {
            Some(v) => Some(codec::decode_node(&v)?.creator),
            None => None,
        };
        if old.as_ref() != Some(&rec.creator) {
            if let Some(old) = old {
                b.delete(Family::Pubsub, keys::by_creator(service, &old, node)?);
            }
            b.put(
                Family::Pubsub,
                keys::by_creator(service, &rec.creator, node)?,
                codec::encode_marker(),
            );
        }
        b.put(Family::Pubsub, key, value);
        Ok(())
    }

    /// Plans deleting the node with all its affiliations, subscriptions,
    /// items and index entries, those planned in `b` included. `false` if
    /// there was no node record (whatever else of the node there was is
    /// deleted all the same). A node whose record is corrupt can still be
    /// deleted.
    pub fn delete_node_in(
        &self,
        b: &mut Batch,
        service: &BareJid,
        node: &str,
    ) -> Result<bool, StorageError> {
        let key = keys::node(service, node)?;
        let existed = match self.get_through(b, &key)? {
            Some(v) => {
                match codec::decode_node(&v) {
                    Ok(rec) => b.delete(
                        Family::Pubsub,
                        keys::by_creator(service, &rec.creator, node)?,
                    ),
                    // The creator is unknown: find the node's entry among
                    // the service's.
                    Err(_) => {
                        let range = keys::service_range(keys::kind::BY_CREATOR, service)?;
                        for (k, _) in self.scan_through(b, &range)? {
                            if keys::decode_index_node(service, &k).is_ok_and(|n| n == node) {
                                b.delete(Family::Pubsub, k);
                            }
                        }
                    }
                }
                true
            }
            None => false,
        };
        // Index entries live under other prefixes: one delete each. A key
        // that does not decode has no index entry we could name.
        let subs = keys::subscriptions(service, node)?;
        for (k, _) in self.scan_through(b, &subs)? {
            if let Ok((jid, subid)) = keys::decode_subscription(&subs, &k) {
                let index = keys::by_subscriber_of(service, jid, node, subid)?;
                b.delete(Family::Pubsub, index);
            }
        }
        let affs = keys::affiliations(service, node)?;
        for (k, _) in self.scan_through(b, &affs)? {
            if let Ok(jid) = keys::decode_tail("pubsub affiliation key", &affs, &k) {
                let index = keys::by_affiliated(service, jid, node)?;
                b.delete(Family::Pubsub, index);
            }
        }
        for r in [
            subs,
            affs,
            keys::item_ids(service, node)?,
            keys::items(service, node)?,
        ] {
            b.delete_range(Family::Pubsub, r.start, r.end);
        }
        b.delete(Family::Pubsub, keys::subscription_count(service, node)?);
        b.delete(Family::Pubsub, key);
        Ok(existed)
    }

    /// Up to `limit` node ids of `service` in byte order, those after
    /// `after` only (disco#items with RSM, XEP-0059).
    pub fn nodes(
        &self,
        service: &BareJid,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let range = keys::nodes(service, after)?;
        let len = service.as_str().len();
        self.db.scan_dir(CF_PUBSUB, &range, false, limit, |k, _| {
            keys::decode_node_id(len, k)
        })
    }

    /// How many nodes of `service` `creator` created (and are not
    /// deleted).
    pub fn nodes_created_by(
        &self,
        service: &BareJid,
        creator: &BareJid,
    ) -> Result<usize, StorageError> {
        self.db
            .count(CF_PUBSUB, &keys::by_creator_range(service, creator)?)
    }

    /// Plans deleting everything of `service`: every node with everything
    /// in it, and the index entries under the service. For a PEP service
    /// (a user's bare JID) that is all one shard's; a domain service's
    /// nodes each live on their own node's shard, so there delete node by
    /// node through each node's group unless the deployment has one shard.
    /// What `service`'s users hold on *other* services (subscriptions,
    /// affiliations, nodes they created) is those services' and stays.
    pub fn delete_service_in(&self, b: &mut Batch, service: &BareJid) -> Result<(), StorageError> {
        plan_delete_service(b, service)
    }
}

/// [`Pubsub::delete_service_in`] without a store: every kind's prefix of
/// the service, as range deletes.
pub(crate) fn plan_delete_service(b: &mut Batch, service: &BareJid) -> Result<(), StorageError> {
    for kind in keys::kind::ALL {
        let r = keys::service_range(kind, service)?;
        b.delete_range(Family::Pubsub, r.start, r.end);
    }
    Ok(())
}
