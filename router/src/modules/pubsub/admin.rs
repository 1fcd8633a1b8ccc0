//! What operators do to PubSub nodes outside any stanza (the admin HTTP
//! API): see a service's nodes, delete one with everything in it. A
//! deletion runs on the node's shard, at its leader.

use proto::cluster::pb;
use proto::error::StanzaError;
use proto::{BareJid, Jid};

use super::{Req, internal};
use crate::modules::Ctx;

/// The node `id` of `service` as operators see it, from `store`; `None`
/// when it has no record (or one that does not decode).
pub(crate) fn entry(store: &storage::Store, service: &BareJid, id: &str) -> Option<pb::NodeEntry> {
    let rec = store
        .pubsub()
        .node_in(&storage::Batch::default(), service, id)
        .ok()??;
    Some(pb::NodeEntry {
        node: id.to_string(),
        creator: rec.creator.to_string(),
        items: rec.item_count,
        created_ms: rec.created_ms,
    })
}

/// Delete the node `id` of `service` as its owner would (XEP-0060 §8.4):
/// its subscribers are told when its configuration says so. `Ok(false)`
/// when there is no such node.
pub(crate) fn delete(ctx: &mut Ctx<'_>, service: &BareJid, id: &str) -> Result<bool, StanzaError> {
    let exists = ctx
        .store()
        .pubsub()
        .node_in(&ctx.writes, service, id)
        .map_err(internal)?
        .is_some();
    if !exists {
        return Ok(false);
    }
    // The request as the service itself makes it.
    let from = Jid::Bare(
        BareJid::domain_jid(service.domain())
            .map_err(|_| StanzaError::new(proto::error::StanzaCondition::InternalServerError))?,
    );
    let esc = proto::element::escape;
    let xml = format!(
        "<iq type='set' id='admin' from='{}' to='{}'/>",
        esc(from.as_str()),
        esc(service.as_str())
    );
    let iq = proto::stanza::Stanza::parse(xml.as_bytes())
        .map_err(|_| StanzaError::new(proto::error::StanzaCondition::InternalServerError))?;
    let req = Req {
        iq: &iq,
        service: service.clone(),
        pep: service.local().is_some(),
        from_bare: from.bare(),
        from,
    };
    let node = super::load(ctx, &req, id)?;
    super::owner::delete_node(ctx, &req, &node, None)?;
    tracing::info!(service = %service, node = id, "pubsub node deleted by an administrator");
    Ok(true)
}
