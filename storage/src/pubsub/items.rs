//! Items of a node (XEP-0060 §7.1 publish, §7.2 retract, §8.5 purge, §6.5
//! retrieval): the item body under (node, seq) in publication order, and
//! (node, item id) -> seq to find it by id. Publishing an id again
//! replaces the item and moves it to newest.

use proto::{BareJid, Jid};

use super::{Item, ItemWrite, NODE, NodeRecord, Pubsub};
use crate::batch::{Batch, Family};
use crate::keys::CF_PUBSUB;
use crate::keys::pubsub as keys;
use crate::{StorageError, codec};

const ITEM_ID: &str = "pubsub item id";

impl Pubsub {
    /// The sequence number of item `id`, as it will be once `pending` is
    /// written.
    fn item_seq(&self, pending: &Batch, key: &[u8]) -> Result<Option<u64>, StorageError> {
        match self.get_through(pending, key)? {
            Some(v) => Ok(Some(codec::decode_counter(ITEM_ID, &v)?)),
            None => Ok(None),
        }
    }

    /// Item `id` of the node, as it will be once `pending` is written.
    pub fn item_in(
        &self,
        pending: &Batch,
        service: &BareJid,
        node: &str,
        id: &str,
    ) -> Result<Option<Item>, StorageError> {
        let Some(seq) = self.item_seq(pending, &keys::item_id(service, node, id)?)? else {
            return Ok(None);
        };
        match self.get_through(pending, &keys::item(service, node, seq)?)? {
            Some(v) => Ok(Some(codec::decode_item(seq, &v)?)),
            None => Err(StorageError::corrupt(ITEM_ID, "names a missing item")),
        }
    }

    /// Plans publishing an item: a new id adds one, an existing id is
    /// replaced (one copy, now the newest). Moves `rec.next_seq` and
    /// `rec.item_count`; write `rec` back with `put_node_in` in the same
    /// batch, and pass the record read through that batch (`node_in`) so
    /// that two publishes in one batch get two sequence numbers. Item ids
    /// follow the rules of node ids.
    #[allow(clippy::too_many_arguments)]
    pub fn put_item_in(
        &self,
        b: &mut Batch,
        service: &BareJid,
        node: &str,
        rec: &mut NodeRecord,
        id: &str,
        publisher: Option<&Jid>,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<ItemWrite, StorageError> {
        let id_key = keys::item_id(service, node, id)?;
        let value = codec::encode_item(id, publisher, now_ms, payload)?;
        let old = self.item_seq(b, &id_key)?;
        let seq = rec.next_seq;
        let next = seq
            .checked_add(1)
            .ok_or(StorageError::corrupt(NODE, "sequence overflow"))?;
        if let Some(old) = old {
            b.delete(Family::Pubsub, keys::item(service, node, old)?);
        } else {
            rec.item_count = rec.item_count.saturating_add(1);
        }
        b.put(Family::Pubsub, id_key, codec::encode_counter(seq));
        b.put(Family::Pubsub, keys::item(service, node, seq)?, value);
        rec.next_seq = next;
        Ok(ItemWrite {
            replaced: old.is_some(),
            seq,
        })
    }

    /// Plans retracting item `id`; `false` if there is no such item.
    pub fn retract_item_in(
        &self,
        b: &mut Batch,
        service: &BareJid,
        node: &str,
        rec: &mut NodeRecord,
        id: &str,
    ) -> Result<bool, StorageError> {
        let id_key = keys::item_id(service, node, id)?;
        let Some(seq) = self.item_seq(b, &id_key)? else {
            return Ok(false);
        };
        b.delete(Family::Pubsub, id_key);
        b.delete(Family::Pubsub, keys::item(service, node, seq)?);
        rec.item_count = rec.item_count.saturating_sub(1);
        Ok(true)
    }

    /// Plans removing the oldest items beyond the newest `keep` (the
    /// node's `max_items`, counted by `rec.item_count`), those published in
    /// `b` included; returns the removed ids, oldest first.
    pub fn trim_in(
        &self,
        b: &mut Batch,
        service: &BareJid,
        node: &str,
        rec: &mut NodeRecord,
        keep: u64,
    ) -> Result<Vec<String>, StorageError> {
        let excess = rec.item_count.saturating_sub(keep);
        if excess == 0 {
            return Ok(Vec::new());
        }
        // From the lowest seq that may be live: below it lie only the
        // deletions of earlier trims, which a scan would have to step over.
        let range = keys::items_past(service, node, rec.low_seq.checked_sub(1), false)?;
        let limit = usize::try_from(excess).unwrap_or(usize::MAX);
        let oldest = self
            .db
            .scan_through(b, Family::Pubsub, &range, false, limit)?;
        let mut ids = Vec::with_capacity(oldest.len());
        let prefix = keys::items(service, node)?.start;
        for (k, v) in oldest {
            let seq = keys::decode_item_seq(&prefix, &k)?;
            rec.low_seq = rec.low_seq.max(seq.saturating_add(1));
            let id = codec::decode_item_id(&v)?;
            b.delete(Family::Pubsub, keys::item_id(service, node, &id)?);
            b.delete(Family::Pubsub, k);
            ids.push(id);
        }
        rec.item_count = rec.item_count.saturating_sub(ids.len() as u64);
        Ok(ids)
    }

    /// Plans removing every item of the node (XEP-0060 §8.5); sequence
    /// numbers carry on.
    pub fn purge_in(
        &self,
        b: &mut Batch,
        service: &BareJid,
        node: &str,
        rec: &mut NodeRecord,
    ) -> Result<(), StorageError> {
        for r in [keys::item_ids(service, node)?, keys::items(service, node)?] {
            b.delete_range(Family::Pubsub, r.start, r.end);
        }
        rec.item_count = 0;
        rec.low_seq = rec.next_seq;
        Ok(())
    }

    /// Up to `limit` committed items, newest or oldest first, those past
    /// `after_seq` in that direction only (older than it when newest
    /// first): `max_items` is `limit`, RSM paging passes the last seen
    /// item's `seq`.
    pub fn items(
        &self,
        service: &BareJid,
        node: &str,
        newest_first: bool,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Item>, StorageError> {
        let prefix = keys::items(service, node)?.start;
        let range = keys::items_past(service, node, after_seq, newest_first)?;
        self.db
            .scan_dir(CF_PUBSUB, &range, newest_first, limit, |k, v| {
                codec::decode_item(keys::decode_item_seq(&prefix, k)?, v)
            })
    }

    /// The newest committed item (sent on a new subscription or a PEP
    /// `+notify`).
    pub fn last_item(&self, service: &BareJid, node: &str) -> Result<Option<Item>, StorageError> {
        Ok(self.items(service, node, true, None, 1)?.pop())
    }
}
