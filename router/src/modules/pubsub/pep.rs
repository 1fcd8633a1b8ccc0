//! PEP (XEP-0163): a PubSub service on every account's bare JID. Its nodes
//! live with the account (their home is its bare JID), are created on the
//! owner's first publish with presence access by default, and notify the
//! account's own resources besides the node's subscribers.
//!
//! Also the calls other modules make on an account's own PEP nodes (the
//! bookmarks of XEP-0402 kept in step with XEP-0048 private storage).

use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::Stanza;
use proto::{BareJid, Element, FullJid, Jid, ns};
use storage::RosterItem;
use storage::pubsub::Item;

use super::config::{AccessModel, NodeConfig, SendLast};
use super::expiry::alive;
use super::publish::{event, event_item, notification, notify_subscribers};
use super::{Node, Req, internal, now_ms};
use crate::modules::{Ctx, caps};

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

/// The configuration a PEP node gets when it is created without one: the
/// PEP defaults (presence access), except for the nodes that hold an
/// account's private data, which are whitelist (only the owner) whoever
/// creates them and however: XEP-0402 bookmarks (§3, whose room
/// passwords a contact must never read, even when a client publishes
/// without the publish-options it should send) and XEP-0048 bookmarks
/// kept in PEP.
pub(crate) fn default_config(id: &str) -> NodeConfig {
    match id {
        ns::BOOKMARKS2 => bookmarks_config(),
        ns::BOOKMARKS => NodeConfig {
            access_model: AccessModel::Whitelist,
            persist_items: true,
            ..NodeConfig::pep_default()
        },
        _ => NodeConfig::pep_default(),
    }
}

/// The bookmarks node's configuration (XEP-0402 §3).
pub(crate) fn bookmarks_config() -> NodeConfig {
    NodeConfig {
        access_model: AccessModel::Whitelist,
        persist_items: true,
        max_items: None,
        send_last_published_item: SendLast::Never,
        ..NodeConfig::pep_default()
    }
}

/// Refuse a configuration a PEP node cannot have: the authorize access
/// model. XEP-0163 §5 asks a PEP service for the presence, open, roster
/// and whitelist models only, the account does not advertise
/// `pubsub#access-authorize`, and its owner could not answer the
/// authorization requests of §8.6 (they would go to the account's own
/// JID, which is the service). XEP-0060 §8.1.2 names the error.
pub(crate) fn supported(req: &Req<'_>, config: &NodeConfig) -> Result<(), StanzaError> {
    if req.pep && config.access_model == AccessModel::Authorize {
        return Err(StanzaError::with_text(
            StanzaCondition::NotAcceptable,
            "PEP nodes have no authorize access model",
        )
        .with_app("unsupported-access-model", ns::PUBSUB_ERRORS));
    }
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

/// Have the account's own node `node`, if it exists, keep as many items
/// as the service allows (`pubsub#max_items` = max) and only for the
/// account (`pubsub#access_model` = whitelist), planned with the
/// request's other writes; returns how many items that is. A node made
/// by a publish without publish-options keeps one item and is open to
/// contacts (the PEP defaults), where XEP-0402 §3 wants every bookmark
/// kept, and private: they carry room passwords.
pub(crate) fn owner_keep_max(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &str,
) -> Result<u64, StanzaError> {
    let cap = ctx.cfg().pubsub.max_items_per_node;
    let mut n = match super::load(ctx, req, node) {
        Ok(n) => n,
        Err(e) if e.condition == StanzaCondition::ItemNotFound => return Ok(cap),
        Err(e) => return Err(e),
    };
    if n.config.max_items.is_some() || n.config.access_model != AccessModel::Whitelist {
        n.config.max_items = None;
        n.config.access_model = AccessModel::Whitelist;
        n.record.config = n.config.encode();
        ctx.store()
            .pubsub()
            .put_node_in(&mut ctx.writes, &req.service, node, &n.record)
            .map_err(internal)?;
    }
    Ok(cap)
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
    let Some(record) = ctx
        .store()
        .pubsub()
        .node_in(&ctx.writes, &req.service, node)
        .map_err(internal)?
    else {
        return Ok(Vec::new());
    };
    let config = NodeConfig::decode(&record.config);
    let now = now_ms();
    let mut items = ctx
        .store()
        .pubsub()
        .items(&req.service, node, true, None, cap)
        .map_err(internal)?;
    items.retain(|i| alive(&config, i, now));
    Ok(items)
}

/// Nodes of one account looked at for last items on presence, at most.
const MAX_NODES_ON_PRESENCE: usize = 256;

/// Whether the node's access model lets a contact with roster item
/// `item` (of the owner's roster) have its items by presence.
fn contact_allowed(node: &NodeConfig, item: &RosterItem) -> bool {
    if !item.state.sub.has_from() {
        return false;
    }
    match node.access_model {
        AccessModel::Open | AccessModel::Presence => true,
        AccessModel::Roster => item
            .groups
            .iter()
            .any(|g| node.roster_groups_allowed.contains(g)),
        // Members and approved subscribers are subscribers proper.
        AccessModel::Authorize | AccessModel::Whitelist => false,
    }
}

/// The contacts that get a PEP node's notifications through their
/// presence subscription (XEP-0163 §4.1, auto-subscribe), each at the
/// resources whose capabilities ask for `node+notify` (§4.2): the
/// account's roster entries with a subscription from the account that the
/// node's access model lets in.
pub(crate) fn contacts(
    ctx: &Ctx<'_>,
    owner: &BareJid,
    node: &Node,
) -> Result<Vec<Jid>, StanzaError> {
    if matches!(
        node.config.access_model,
        AccessModel::Authorize | AccessModel::Whitelist
    ) {
        return Ok(Vec::new());
    }
    let (_, items) = ctx.store().rosters().get_all(owner).map_err(internal)?;
    Ok(items
        .into_iter()
        .filter(|i| contact_allowed(&node.config, i) && &i.jid != owner)
        .map(|i| Jid::Bare(i.jid))
        .collect())
}

/// The feature a resource lists to get a node's notifications.
pub(crate) fn notify_feature(node: &str) -> String {
    format!("{node}+notify")
}

/// `to` became available (or its presence reached `owner` for the first
/// time): the last item of each of `owner`'s PEP nodes that `to` may see
/// and its capabilities ask for, once per resource (XEP-0163 §4.3.4).
/// `to` is the owner's own resource or a contact's.
pub(crate) fn last_items_on_presence(ctx: &mut Ctx<'_>, owner: &BareJid, to: &FullJid) {
    if let Err(e) = send_last_items(ctx, owner, to) {
        tracing::debug!(owner = %owner, error = ?e.condition, "last PEP items on presence not sent");
    }
}

fn send_last_items(ctx: &mut Ctx<'_>, owner: &BareJid, to: &FullJid) -> Result<(), StanzaError> {
    let contact = to.bare();
    let item = if &contact == owner {
        None
    } else {
        match ctx
            .store()
            .rosters()
            .get(owner, &contact)
            .map_err(internal)?
        {
            Some(i) if i.state.sub.has_from() => Some(i),
            _ => return Ok(()),
        }
    };
    let store = ctx.store().pubsub();
    let ids = store
        .nodes(owner, None, MAX_NODES_ON_PRESENCE)
        .map_err(internal)?;
    for id in ids {
        let Some(record) = store.node_in(&ctx.writes, owner, &id).map_err(internal)? else {
            continue;
        };
        let config = NodeConfig::decode(&record.config);
        if config.send_last_published_item != SendLast::OnSubAndPresence
            || !config.deliver_notifications
            || item.as_ref().is_some_and(|i| !contact_allowed(&config, i))
        {
            continue;
        }
        let Some(last) = store
            .last_item(owner, &id)
            .map_err(internal)?
            .filter(|i| alive(&config, i, now_ms()))
        else {
            continue;
        };
        let node = Node {
            id: id.clone(),
            record,
            config,
        };
        let ev = event(
            Element::new("items", ns::PUBSUB_EVENT)
                .with_attr("node", &id)
                .with_child(event_item(&node, &last)),
        );
        ctx.notify_interested(
            notification(owner, &node.config, &ev),
            vec![Jid::Full(to.clone())],
            Some(caps::interest(&notify_feature(&id), true)),
        );
    }
    Ok(())
}
