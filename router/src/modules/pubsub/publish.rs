//! Publisher use cases (XEP-0060 §7): publish an item (with or without an
//! id, with publish-options as preconditions), retract one; and the event
//! notifications that changes of a node send to its subscribers (§7.1.2).

use bytes::Bytes;
use proto::error::{StanzaCondition, StanzaError};
use proto::form::{Form, FormError, FormKind};
use proto::stanza::{Kind, Stanza};
use proto::{BareJid, Element, Jid, ns};
use storage::pubsub::{Affiliation, SubscriptionState};

use super::config::{ConfigError, NodeConfig, PublishModel, multi_valued, same_value};
use super::owner::config_error;
use super::sub_options::SubOptions;
use super::{Handled, Node, Req, at_node_home, fresh_id, internal, now_ms, perr, pubsub_el};
use crate::modules::Ctx;

/// `<event xmlns='...#event'>child</event>`.
pub(crate) fn event(child: Element) -> Element {
    Element::new("event", ns::PUBSUB_EVENT).with_child(child)
}

/// The notification message of `ev` from `service`, without 'to' (each
/// recipient's connection writes its own in).
pub(crate) fn notification(service: &BareJid, cfg: &NodeConfig, ev: &Element) -> Stanza {
    let mut raw = format!(
        "<message from='{}' type='{}' id='{}'>",
        proto::element::escape(service.as_str()),
        cfg.notification_type.as_str(),
        fresh_id()
    );
    ev.write(&mut raw, ns::CLIENT);
    raw.push_str("</message>");
    let raw = Bytes::from(raw);
    let mut s = Stanza::parse(&raw).unwrap_or(Stanza {
        kind: Kind::Message,
        to: None,
        from: None,
        id: None,
        stype: None,
        attrs: Vec::new(),
        raw: raw.clone(),
        head_len: 0,
        empty: false,
        trail: Default::default(),
    });
    s.from = Some(Jid::Bare(service.clone()));
    s
}

/// Who gets a node's notifications: its subscribers that want them, and
/// for a PEP node the account's own resources (XEP-0163 §4.3) and its
/// subscribed contacts (`pep.rs`).
pub(crate) fn recipients(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    node: &Node,
) -> Result<Vec<Jid>, StanzaError> {
    let subs = ctx
        .store()
        .pubsub()
        .subscriptions(&req.service, &node.id)
        .map_err(internal)?;
    let mut out: Vec<Jid> = Vec::with_capacity(subs.len() + 1);
    for s in subs {
        if s.state == SubscriptionState::Subscribed && SubOptions::decode(&s.options).deliver {
            out.push(s.jid);
        }
    }
    if req.pep {
        super::pep::add_recipients(ctx, req, node, &mut out)?;
    }
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out.dedup_by(|a, b| a.as_str() == b.as_str());
    Ok(out)
}

/// Send `ev` about `node` to its recipients (or only to `only`), once the
/// shard commits what the request planned.
pub(crate) fn notify_subscribers(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &Node,
    ev: Element,
    only: Option<&Jid>,
) -> Result<(), StanzaError> {
    if !node.config.deliver_notifications {
        return Ok(());
    }
    let to = match only {
        Some(j) => vec![j.clone()],
        None => recipients(ctx, req, node)?,
    };
    let msg = notification(&req.service, &node.config, &ev);
    if req.pep && only.is_none() {
        // Contacts by presence, filtered by their capabilities (XEP-0163
        // §4); an explicit subscriber gets it as one already.
        let mut contacts = super::pep::contacts(ctx, &req.service, node)?;
        contacts.retain(|c| !to.iter().any(|t| t.as_str() == c.as_str()));
        let feature = super::pep::notify_feature(&node.id);
        ctx.notify_interested(
            msg.clone(),
            contacts,
            Some(crate::modules::caps::interest(&feature, false)),
        );
    }
    if !to.is_empty() {
        ctx.notify(msg, to);
    }
    Ok(())
}

/// The `<item/>` of an event: with its payload when the node delivers
/// payloads.
pub(crate) fn event_item(node: &Node, item: &storage::pubsub::Item) -> Element {
    let mut it = Element::new("item", ns::PUBSUB_EVENT).with_attr("id", &item.id);
    if let Some(p) = &item.publisher {
        it.set_attr("publisher", p.as_str());
    }
    if node.config.deliver_payloads
        && let Ok(payload) = Element::parse(&item.payload, "", &[])
    {
        it.push(payload);
    }
    it
}

/// §7.1: publish an item.
pub(super) fn publish(ctx: &mut Ctx<'_>, req: &Req<'_>, p: &Element, a: &Element) -> Handled {
    at_node_home(ctx, req, a, |ctx, id| publish_here(ctx, req, p, a, &id))
}

fn publish_here(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    p: &Element,
    a: &Element,
    id: &str,
) -> super::Answer {
    use StanzaCondition as C;
    let limits = ctx.cfg().pubsub.clone();
    let options = match p
        .child("publish-options", ns::PUBSUB)
        .map(super::one_form)
        .transpose()?
        .flatten()
    {
        Some(x) => {
            let f = Form::from_element(x).map_err(|e| e.to_stanza_error())?;
            if f.form_type().is_some() {
                f.expect_form_type(ns::PUBSUB_PUBLISH_OPTIONS)
                    .map_err(|e| e.to_stanza_error())?;
            }
            Some(f)
        }
        None => None,
    };
    // The node, or for the account's own PEP a new one configured by the
    // publish-options (XEP-0163 §3, XEP-0223).
    let mut node = match super::load(ctx, req, id) {
        Ok(n) => n,
        Err(e) if e.condition == C::ItemNotFound && req.is_pep_owner() => {
            let mut config = super::pep::default_config(id);
            if let Some(f) = &options {
                let as_config = Form {
                    kind: FormKind::Submit,
                    ..f.clone()
                };
                config
                    .apply(&as_config, limits.max_items_per_node)
                    .map_err(|e| match e {
                        // A malformed form is a bad request as anywhere.
                        ConfigError::Form(f) => f.to_stanza_error(),
                        value => perr_precondition(config_error(value)),
                    })?;
            }
            super::pep::supported(req, &config).map_err(perr_precondition)?;
            super::owner::put_new_node(ctx, req, id, config)?
        }
        Err(e) => return Err(e),
    };
    // Who may publish (§7.1.3.1), before the preconditions: one who may
    // not publish hears forbidden whatever it guessed of the node's
    // configuration, so the preconditions reveal nothing of it.
    let aff = super::affiliation(ctx, req, id)?;
    let allowed = match aff {
        Some(Affiliation::Owner | Affiliation::Publisher | Affiliation::PublishOnly) => true,
        Some(Affiliation::Outcast) => false,
        _ => match node.config.publish_model {
            PublishModel::Open => true,
            PublishModel::Subscribers => super::is_subscribed(ctx, req, id)?,
            PublishModel::Publishers => false,
        },
    };
    if !allowed {
        return Err(StanzaError::new(C::Forbidden));
    }
    // Preconditions (§7.1.5): every option named must have that value.
    if let Some(f) = &options {
        for (var, values) in f.submitted_values() {
            if values.len() > 1 && !multi_valued(var) {
                return Err(FormError::TooManyValues(var.to_string()).to_stanza_error());
            }
            let ok = node
                .config
                .value_of(var)
                .is_some_and(|have| same_value(var, values, &have));
            if !ok {
                return Err(StanzaError::with_text(
                    C::Conflict,
                    format!("the node's {var} differs from the precondition"),
                )
                .with_app("precondition-not-met", ns::PUBSUB_ERRORS));
            }
        }
    }
    // One item with at most one payload, as the node's event type wants
    // (§4.3, §7.1.3.6): persistent nodes and payload nodes take an item,
    // payload nodes a payload in it, and a transient notification-only
    // node none at all.
    let mut items = a.elements().filter(|e| e.name == "item");
    let item = items.next();
    if items.next().is_some() {
        return Err(StanzaError::with_text(
            C::BadRequest,
            "one item per publish",
        ));
    }
    let notification_only = !node.config.deliver_payloads;
    let item = match item {
        Some(_) if notification_only && !node.config.persist_items => {
            return Err(perr(C::BadRequest, "item-forbidden"));
        }
        Some(i) => i,
        None if notification_only && !node.config.persist_items => {
            // A transient notification: an empty <items/> (§1.2, §4.3).
            let ev = event(Element::new("items", ns::PUBSUB_EVENT).with_attr("node", id));
            notify_subscribers(ctx, req, &node, ev, None)?;
            return Ok(published(id, None));
        }
        None => return Err(perr(C::BadRequest, "item-required")),
    };
    let mut payloads = item.elements();
    let payload = payloads.next();
    if payloads.next().is_some() {
        return Err(perr(C::BadRequest, "invalid-payload"));
    }
    let payload = match payload {
        Some(p) => p.to_xml(""),
        None if !notification_only => {
            return Err(perr(C::BadRequest, "payload-required"));
        }
        // A persistent notification-only node: the item may be empty.
        None => String::new(),
    };
    if payload.len() > limits.max_item_bytes {
        return Err(StanzaError::with_text(
            C::NotAcceptable,
            format!("items carry at most {} bytes", limits.max_item_bytes),
        )
        .with_app("payload-too-big", ns::PUBSUB_ERRORS));
    }
    let item_id = match item.attr("id") {
        Some(i) if super::storable_id(i) => i.to_string(),
        Some(_) => {
            return Err(StanzaError::with_text(
                C::BadRequest,
                "the item id is empty or too long",
            ));
        }
        None => fresh_id(),
    };
    let publisher = Jid::Bare(req.from_bare.clone());
    let stored = storage::pubsub::Item {
        id: item_id.clone(),
        seq: 0,
        publisher: Some(publisher.clone()),
        published_ms: now_ms(),
        payload: payload.into_bytes(),
    };
    let store = ctx.store().pubsub();
    if node.config.persist_items {
        // Expired items neither stay nor count against max_items.
        super::expiry::sweep(ctx, req, &mut node)?;
        store
            .put_item_in(
                &mut ctx.writes,
                &req.service,
                id,
                &mut node.record,
                &item_id,
                Some(&publisher),
                &stored.payload,
                stored.published_ms,
            )
            .map_err(internal)?;
        store
            .trim_in(
                &mut ctx.writes,
                &req.service,
                id,
                &mut node.record,
                node.config.keep(limits.max_items_per_node),
            )
            .map_err(internal)?;
        store
            .put_node_in(&mut ctx.writes, &req.service, id, &node.record)
            .map_err(internal)?;
    }
    let ev = event(
        Element::new("items", ns::PUBSUB_EVENT)
            .with_attr("node", id)
            .with_child(event_item(&node, &stored)),
    );
    notify_subscribers(ctx, req, &node, ev, None)?;
    Ok(published(id, Some(&item_id)))
}

/// A configuration error from publish-options on auto-create: XEP-0060
/// §7.1.5 answers any refused option as a failed precondition.
fn perr_precondition(e: StanzaError) -> StanzaError {
    StanzaError {
        condition: StanzaCondition::Conflict,
        ..e
    }
    .with_app("precondition-not-met", ns::PUBSUB_ERRORS)
}

/// The answer to a publish: the item's id.
fn published(node: &str, item: Option<&str>) -> Option<Element> {
    let mut p = Element::new("publish", ns::PUBSUB).with_attr("node", node);
    if let Some(i) = item {
        p.push(Element::new("item", ns::PUBSUB).with_attr("id", i));
    }
    Some(pubsub_el(ns::PUBSUB, p))
}

/// §7.2: retract an item; subscribers hear of it when the request asks
/// (`notify`) or the node is configured so.
pub(super) fn retract(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element) -> Handled {
    use StanzaCondition as C;
    at_node_home(ctx, req, a, |ctx, id| {
        let mut node = super::load(ctx, req, &id)?;
        let Some(item_id) = a
            .elements()
            .find(|e| e.name == "item")
            .and_then(|e| e.attr("id"))
        else {
            return Err(perr(C::BadRequest, "item-required"));
        };
        // An outcast has no privilege left (§4.1), its own items included.
        let aff = super::affiliation(ctx, req, &id)?;
        if aff == Some(Affiliation::Outcast) {
            return Err(StanzaError::new(C::Forbidden));
        }
        let store = ctx.store().pubsub();
        let now = now_ms();
        // An id that cannot be stored names no item: not found.
        let item = if super::storable_id(item_id) {
            store
                .item_in(&ctx.writes, &req.service, &id, item_id)
                .map_err(internal)?
                .filter(|i| super::expiry::alive(&node.config, i, now))
        } else {
            None
        };
        // Permission first (§7.2.3.1): one who may not retract learns
        // nothing of whether the item exists. Owners and publishers may
        // retract any item, others their own.
        let own_item = item.as_ref().is_some_and(|i| {
            i.publisher
                .as_ref()
                .is_some_and(|p| p.bare() == req.from_bare)
        });
        let may = matches!(aff, Some(Affiliation::Owner | Affiliation::Publisher)) || own_item;
        if !may {
            return Err(StanzaError::new(C::Forbidden));
        }
        if item.is_none() {
            return Err(StanzaError::new(C::ItemNotFound));
        }
        store
            .retract_item_in(
                &mut ctx.writes,
                &req.service,
                &id,
                &mut node.record,
                item_id,
            )
            .map_err(internal)?;
        store
            .put_node_in(&mut ctx.writes, &req.service, &id, &node.record)
            .map_err(internal)?;
        let asked = matches!(a.attr("notify"), Some("1" | "true"));
        if asked || node.config.notify_retract {
            let ev = event(
                Element::new("items", ns::PUBSUB_EVENT)
                    .with_attr("node", &id)
                    .with_child(Element::new("retract", ns::PUBSUB_EVENT).with_attr("id", item_id)),
            );
            notify_subscribers(ctx, req, &node, ev, None)?;
        }
        Ok(None)
    })
}
