//! Discovery of a PubSub service (XEP-0060 §5): disco#info of the service
//! (identity pubsub/service and the features it has) and of each node
//! (identity pubsub/leaf and the meta-data form), disco#items of the
//! service (its nodes, with RSM) and of a node (its items).

use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::Stanza;
use proto::{Element, ns};

use super::config::meta_data;
use super::items::{Rsm, rsm_answer};
use super::{FEATURES, Req, at_home, check_access, internal, node_of, owners};
use crate::modules::Ctx;
use crate::modules::handler::{IqHandler, Target, TargetKind};

pub(crate) struct Info;
pub(crate) struct Items;

/// The most nodes one disco#items answer lists.
const NODES_MAX: usize = 1000;

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
        let Some(req) = Req::new(iq, t) else { return };
        if iq.stype() != "get" {
            return ctx.bounce(iq, StanzaCondition::BadRequest, None);
        }
        let Some(_) = p.attr("node") else {
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
            return ctx.iq_result(iq, Some(&q));
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
}

impl IqHandler for Items {
    fn namespace(&self) -> &'static str {
        ns::DISCO_ITEMS
    }
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::PubSub]
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
        let Some(req) = Req::new(iq, t) else { return };
        if iq.stype() != "get" {
            return ctx.bounce(iq, StanzaCondition::BadRequest, None);
        }
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
}

/// The service's nodes, a page at a time (XEP-0059).
pub(crate) fn node_list(ctx: &Ctx<'_>, req: &Req<'_>, p: &Element) -> Result<Element, StanzaError> {
    let rsm = Rsm::parse(p)?;
    let after = rsm.as_ref().and_then(|r| r.after.clone());
    let max = rsm
        .as_ref()
        .and_then(|r| r.max)
        .unwrap_or(NODES_MAX)
        .min(NODES_MAX);
    let nodes = ctx
        .store()
        .pubsub()
        .nodes(&req.service, after.as_deref(), max)
        .map_err(internal)?;
    let mut q = Element::new("query", ns::DISCO_ITEMS);
    for n in &nodes {
        q.push(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", req.service.as_str())
                .with_attr("node", n),
        );
    }
    if rsm.is_some() {
        q.push(rsm_answer(
            nodes.first().map(String::as_str),
            after.is_none().then_some(0),
            nodes.last().map(String::as_str),
            nodes.len(),
        ));
    }
    Ok(q)
}

/// A node's items as disco items (§5.5), for those allowed to see them.
fn item_list(ctx: &Ctx<'_>, req: &Req<'_>, id: &str) -> Result<Element, StanzaError> {
    let node = super::load(ctx, req, id)?;
    let aff = super::affiliation(ctx, req, id)?;
    check_access(ctx, req, &node, aff, false)?;
    let items = ctx
        .store()
        .pubsub()
        .items(&req.service, id, true, None, NODES_MAX)
        .map_err(internal)?;
    let mut q = Element::new("query", ns::DISCO_ITEMS).with_attr("node", id);
    for i in items {
        q.push(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", req.service.as_str())
                .with_attr("name", &i.id),
        );
    }
    Ok(q)
}
