//! Discovery of a PubSub service (XEP-0060 §5) and of an account's PEP
//! nodes (XEP-0163 §6): disco#info of the service (identity
//! pubsub/service and the features it has) and of each node (identity
//! pubsub/leaf and the meta-data form, §5.3, §5.4), disco#items of the
//! service or account (its nodes, §5.2, with RSM) and of a node (its
//! items, §5.5).
//!
//! A node the requester may not retrieve from is neither listed nor
//! described (`access::visible`): XEP-0163 §6.2 asks so for PEP, and a
//! whitelist or authorize node of a service is not announced either.

use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::Stanza;
use proto::{Element, ns};

use super::access::visible;
use super::config::{NodeConfig, meta_data};
use super::expiry::{alive, sweep};
use super::items::{Rsm, rsm_answer};
use super::{FEATURES, Node, Req, at_home, internal, node_of, now_ms, owners};
use crate::modules::Ctx;
use crate::modules::handler::{IqHandler, Target, TargetKind};

pub(crate) struct Info;
pub(crate) struct Items;

/// The most nodes or items one disco#items answer lists.
const NODES_MAX: usize = 1000;

/// The most nodes of one service a node list looks at: the list (and its
/// RSM count) covers these, in node id order.
const NODES_SCANNED: usize = 10_000;

impl IqHandler for Info {
    fn namespace(&self) -> &'static str {
        ns::DISCO_INFO
    }
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::PubSub]
    }
    fn features(&self, t: TargetKind) -> &'static [&'static str] {
        match t {
            TargetKind::PubSub => &[ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PUBSUB, ns::RSM],
            _ => &[],
        }
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
        if iq.stype() != "get" {
            return ctx.bounce(iq, StanzaCondition::BadRequest, None);
        }
        if p.attr("node").is_some() {
            return node_info(ctx, iq, p, t);
        }
        let mut q = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "pubsub")
                .with_attr("type", "service")
                .with_attr("name", "Publish-Subscribe"),
        );
        let mut features: Vec<&str> = ctx.env.registry.features(TargetKind::PubSub);
        features.extend(FEATURES.iter().copied());
        features.sort_unstable();
        features.dedup();
        for f in features {
            q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        ctx.iq_result(iq, Some(&q))
    }
}

/// disco#info of one node of a service or of an account's PEP (§5.3,
/// §5.4): its identity and meta-data, for those who may see it.
pub(crate) fn node_info(ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
    let Some(req) = Req::new(iq, t) else {
        return ctx.bounce(iq, StanzaCondition::ServiceUnavailable, None);
    };
    let id = match node_of(p) {
        Ok(id) => id,
        Err(e) => return ctx.bounce_with(iq, &e),
    };
    if !at_home(ctx, &req, &id) {
        return;
    }
    let r = (|| {
        let n = super::load(ctx, &req, &id)?;
        if !visible(ctx, &req, &n)? {
            return Err(StanzaError::new(StanzaCondition::ItemNotFound));
        }
        let subscribers = ctx
            .store()
            .pubsub()
            .subscription_count(&req.service, &id)
            .map_err(internal)?;
        let created = crate::time::stamp(
            n.record.created_ms / 1000,
            (n.record.created_ms % 1000) as u32,
        );
        let form = meta_data(&n.config, &owners(ctx, &req, &id)?, &created, subscribers);
        let mut q = Element::new("query", ns::DISCO_INFO)
            .with_attr("node", &id)
            .with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "pubsub")
                    .with_attr("type", "leaf"),
            );
        q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::PUBSUB));
        q.push(form.to_element());
        Ok::<_, StanzaError>(q)
    })();
    match r {
        Ok(q) => ctx.iq_result(iq, Some(&q)),
        Err(e) => ctx.bounce_with(iq, &e),
    }
}

impl IqHandler for Items {
    fn namespace(&self) -> &'static str {
        ns::DISCO_ITEMS
    }
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::PubSub]
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
        if iq.stype() != "get" {
            return ctx.bounce(iq, StanzaCondition::BadRequest, None);
        }
        items(ctx, iq, p, t);
    }
}

/// disco#items of a service or an account (its nodes) or of one of its
/// nodes (the node's items).
pub(crate) fn items(ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
    let Some(req) = Req::new(iq, t) else {
        return ctx.bounce(iq, StanzaCondition::ServiceUnavailable, None);
    };
    let r = match p.attr("node") {
        None => node_list(ctx, &req, p),
        Some(_) => {
            let id = match node_of(p) {
                Ok(id) => id,
                Err(e) => return ctx.bounce_with(iq, &e),
            };
            if !at_home(ctx, &req, &id) {
                return;
            }
            item_list(ctx, &req, &id)
        }
    };
    match r {
        Ok(q) => ctx.iq_result(iq, Some(&q)),
        Err(e) => ctx.bounce_with(iq, &e),
    }
}

/// The nodes of the service the requester may see, a page at a time
/// (XEP-0059): `<count/>` is how many there are in all.
fn node_list(ctx: &Ctx<'_>, req: &Req<'_>, p: &Element) -> Result<Element, StanzaError> {
    let rsm = Rsm::parse(p)?;
    let store = ctx.store().pubsub();
    let ids = store
        .nodes(&req.service, None, NODES_SCANNED)
        .map_err(internal)?;
    let mut shown: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        // The account sees all its PEP nodes without reading them.
        if req.is_pep_owner() {
            shown.push(id);
            continue;
        }
        let Some(record) = store
            .node_in(&ctx.writes, &req.service, &id)
            .map_err(internal)?
        else {
            continue;
        };
        let node = Node {
            config: NodeConfig::decode(&record.config),
            id,
            record,
        };
        if visible(ctx, req, &node)? {
            shown.push(node.id);
        }
    }
    let (page, index) = match &rsm {
        Some(r) => r.page(&shown, String::as_str, NODES_MAX)?,
        None => (
            shown.get(..NODES_MAX.min(shown.len())).unwrap_or_default(),
            0,
        ),
    };
    let mut q = Element::new("query", ns::DISCO_ITEMS);
    for n in page {
        q.push(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", req.service.as_str())
                .with_attr("node", n),
        );
    }
    if rsm.is_some() {
        q.push(rsm_answer(
            page.first().map(String::as_str),
            Some(index),
            page.last().map(String::as_str),
            shown.len(),
        ));
    }
    Ok(q)
}

/// A node's items as disco items (§5.5), for those allowed to see them.
/// To others the node does not exist: item-not-found, as for a missing
/// node and as disco#info answers (XEP-0163 §6.2), not the access
/// model's refusal, which would reveal the node.
fn item_list(ctx: &mut Ctx<'_>, req: &Req<'_>, id: &str) -> Result<Element, StanzaError> {
    let mut node = super::load(ctx, req, id)?;
    if !visible(ctx, req, &node)? {
        return Err(StanzaError::new(StanzaCondition::ItemNotFound));
    }
    sweep(ctx, req, &mut node)?;
    let items = ctx
        .store()
        .pubsub()
        .items(&req.service, id, true, None, NODES_MAX)
        .map_err(internal)?;
    let now = now_ms();
    let mut q = Element::new("query", ns::DISCO_ITEMS).with_attr("node", id);
    for i in items.iter().filter(|i| alive(&node.config, i, now)) {
        q.push(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", req.service.as_str())
                .with_attr("name", &i.id),
        );
    }
    Ok(q)
}
