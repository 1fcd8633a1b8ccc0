//! Item expiry (`pubsub#item_expire`, XEP-0060 §16.4.3): an item older
//! than its node's expiry is gone everywhere. It is not retrieved, not
//! listed in disco#items, not counted, not sent as the last item, and
//! does not count against `max_items`.
//!
//! Expiry is lazy. Every read skips expired items ([`alive`]), and the
//! handlers that read items at the node's home plan the deletion of the
//! expired ones they find ([`sweep`]). Items are kept in publication
//! order, so the expired items of a node are its oldest.

use storage::pubsub::Item;

use super::config::NodeConfig;
use super::{Node, Req, internal, now_ms};
use crate::modules::Ctx;
use proto::error::StanzaError;

/// Items read at a time while sweeping.
const SWEEP_BATCH: usize = 100;

/// Whether `item` of a node configured so has not expired at `now` (ms).
pub(crate) fn alive(config: &NodeConfig, item: &Item, now: u64) -> bool {
    let expire_ms = config.item_expire.saturating_mul(1000);
    expire_ms == 0 || item.published_ms.saturating_add(expire_ms) > now
}

/// Plan deleting the node's expired items, oldest first until the first
/// live one, and write the node's record back with its count and lowest
/// sequence number moved past them. Only at the node's home.
pub(crate) fn sweep(ctx: &mut Ctx<'_>, req: &Req<'_>, node: &mut Node) -> Result<(), StanzaError> {
    if node.config.item_expire == 0 {
        return Ok(());
    }
    let now = now_ms();
    let store = ctx.store().pubsub();
    let mut after = node.record.low_seq.checked_sub(1);
    let mut swept = false;
    'scan: loop {
        let oldest = store
            .items(&req.service, &node.id, false, after, SWEEP_BATCH)
            .map_err(internal)?;
        let full = oldest.len() == SWEEP_BATCH;
        for item in oldest {
            if alive(&node.config, &item, now) {
                break 'scan;
            }
            after = Some(item.seq);
            // Only this copy: the id may have been published again in
            // what this shard plans (a newer item under the same id).
            let same = store
                .item_in(&ctx.writes, &req.service, &node.id, &item.id)
                .map_err(internal)?
                .is_some_and(|i| i.seq == item.seq);
            if same {
                store
                    .retract_item_in(
                        &mut ctx.writes,
                        &req.service,
                        &node.id,
                        &mut node.record,
                        &item.id,
                    )
                    .map_err(internal)?;
            }
            node.record.low_seq = node.record.low_seq.max(item.seq.saturating_add(1));
            swept = true;
        }
        if !full {
            break;
        }
    }
    if swept {
        store
            .put_node_in(&mut ctx.writes, &req.service, &node.id, &node.record)
            .map_err(internal)?;
    }
    Ok(())
}
