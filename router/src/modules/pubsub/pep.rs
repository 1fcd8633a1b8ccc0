//! PEP (XEP-0163): a PubSub service on every account's bare JID. Its nodes
//! live with the account (their home is its bare JID), are created on the
//! owner's first publish with presence access by default, and notify the
//! account's own resources besides the node's subscribers.
//!
//! Also the calls other modules make on an account's own PEP nodes (the
//! bookmarks of XEP-0402 kept in step with XEP-0048 private storage).

use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::Stanza;
use proto::{Element, Jid, ns};
use storage::pubsub::Item;

use super::config::NodeConfig;
use super::publish::{event, event_item, notify_subscribers};
use super::{Node, Req, internal, now_ms};
use crate::modules::Ctx;

/// Add the PEP-specific recipients of a node's notifications: the owning
/// account (each of its available resources gets them, XEP-0163 §4.3).
pub(crate) fn add_recipients(
    _ctx: &Ctx<'_>,
    req: &Req<'_>,
    _node: &Node,
    out: &mut Vec<Jid>,
) -> Result<(), StanzaError> {
    out.push(Jid::Bare(req.service.clone()));
    Ok(())
}

impl<'s> Req<'s> {
    /// A request of the account that sent `iq` on its own PEP service.
    pub(crate) fn pep_owner(iq: &'s Stanza) -> Option<Req<'s>> {
        let from = iq.from.clone()?;
        let from_bare = from.bare();
        Some(Req {
            iq,
            service: from_bare.clone(),
            pep: true,
            from,
            from_bare,
        })
    }
}

/// The account's node `node`, created with `config` if it does not exist.
fn own_node(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &str,
    config: impl FnOnce() -> NodeConfig,
) -> Result<Node, StanzaError> {
    match super::load(ctx, req, node) {
        Ok(n) => Ok(n),
        Err(e) if e.condition == StanzaCondition::ItemNotFound => {
            super::owner::put_new_node(ctx, req, node, config())
        }
        Err(e) => Err(e),
    }
}

/// Publish `payload` as item `id` of the account's own node `node` (made
/// with `config` if needed), notifying as a publish does.
pub(crate) fn owner_publish(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &str,
    id: &str,
    payload: &Element,
    config: impl FnOnce() -> NodeConfig,
) -> Result<(), StanzaError> {
    let mut n = own_node(ctx, req, node, config)?;
    let cap = ctx.cfg().pubsub.max_items_per_node;
    let publisher = Jid::Bare(req.from_bare.clone());
    let raw = payload.to_xml("");
    let store = ctx.store().pubsub();
    let now = now_ms();
    let w = store
        .put_item_in(
            &mut ctx.writes,
            &req.service,
            node,
            &mut n.record,
            id,
            Some(&publisher),
            raw.as_bytes(),
            now,
        )
        .map_err(internal)?;
    store
        .trim_in(
            &mut ctx.writes,
            &req.service,
            node,
            &mut n.record,
            n.config.keep(cap),
        )
        .map_err(internal)?;
    store
        .put_node_in(&mut ctx.writes, &req.service, node, &n.record)
        .map_err(internal)?;
    let item = Item {
        id: id.to_string(),
        seq: w.seq,
        publisher: Some(publisher),
        published_ms: now,
        payload: raw.into_bytes(),
    };
    let ev = event(
        Element::new("items", ns::PUBSUB_EVENT)
            .with_attr("node", node)
            .with_child(event_item(&n, &item)),
    );
    notify_subscribers(ctx, req, &n, ev, None)
}

/// Retract item `id` of the account's own node `node`, if it is there.
pub(crate) fn owner_retract(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &str,
    id: &str,
) -> Result<(), StanzaError> {
    let mut n = match super::load(ctx, req, node) {
        Ok(n) => n,
        Err(e) if e.condition == StanzaCondition::ItemNotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let store = ctx.store().pubsub();
    let gone = store
        .retract_item_in(&mut ctx.writes, &req.service, node, &mut n.record, id)
        .map_err(internal)?;
    if !gone {
        return Ok(());
    }
    store
        .put_node_in(&mut ctx.writes, &req.service, node, &n.record)
        .map_err(internal)?;
    if n.config.notify_retract {
        let ev = event(
            Element::new("items", ns::PUBSUB_EVENT)
                .with_attr("node", node)
                .with_child(Element::new("retract", ns::PUBSUB_EVENT).with_attr("id", id)),
        );
        notify_subscribers(ctx, req, &n, ev, None)?;
    }
    Ok(())
}

/// The items of the account's own node `node` (none if it does not
/// exist), newest first.
pub(crate) fn owner_items(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    node: &str,
) -> Result<Vec<Item>, StanzaError> {
    let cap = ctx.cfg().pubsub.max_items_per_node as usize;
    ctx.store()
        .pubsub()
        .items(&req.service, node, true, None, cap)
        .map_err(internal)
}
