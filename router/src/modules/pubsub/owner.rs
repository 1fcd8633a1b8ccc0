//! Owner use cases (XEP-0060 §8): create a node (instant or named, with a
//! configuration), get and submit its configuration, the default
//! configuration, delete (with redirect) and purge. Managing a node's
//! subscriptions and affiliations is `manage.rs`.

use proto::error::{StanzaCondition, StanzaError};
use proto::form::{Form, FormKind};
use proto::stanza::Stanza;
use proto::{Element, ns};
use storage::pubsub::{Affiliation, NodeRecord};

use super::config::{ConfigError, NodeConfig};
use super::publish::{event, notify_subscribers};
use super::{
    Handled, Node, Req, at_home, at_node_home, fresh_id, internal, node_of, now_ms, perr, pubsub_el,
};
use crate::modules::Ctx;

/// A refused configuration, as XEP-0060 §8.2.5.3 answers it.
pub(crate) fn config_error(e: ConfigError) -> StanzaError {
    match e {
        ConfigError::Form(f) => f.to_stanza_error(),
        ConfigError::Value { .. } => {
            StanzaError::with_text(StanzaCondition::NotAcceptable, e.to_string())
        }
    }
}

/// The configuration form inside `el` (`<configure><x/></configure>`).
fn form_in(el: &Element) -> Result<Option<Form>, StanzaError> {
    match super::one_form(el)? {
        Some(x) => Form::from_element(x)
            .map(Some)
            .map_err(|e| e.to_stanza_error()),
        None => Ok(None),
    }
}

/// §8.1: create a node, instant (the service names it) or named, with a
/// configuration. An instant node's id is chosen at the first hop, so that
/// the request can go to the id's home.
pub(super) fn create(ctx: &mut Ctx<'_>, req: &Req<'_>, p: &Element, a: &Element) -> Handled {
    let instant = a.attr("node").is_none() || a.attr("instant") == Some("1");
    let node = match a.attr("node") {
        Some(_) => match node_of(a) {
            Ok(n) => n,
            Err(e) => return e.into(),
        },
        None => {
            if req.pep {
                // XEP-0163 nodes are named by their payload's namespace.
                return perr(StanzaCondition::NotAcceptable, "nodeid-required").into();
            }
            let id = fresh_id();
            let home = storage::pubsub::home(&req.service, &id);
            if !ctx.is_home(&home) {
                return match instant_request(req.iq, &id) {
                    Some(s) => {
                        ctx.route_home(home, s);
                        Handled::Elsewhere
                    }
                    None => StanzaError::new(StanzaCondition::InternalServerError).into(),
                };
            }
            id
        }
    };
    if !at_home(ctx, req, &node) {
        return Handled::Elsewhere;
    }
    Handled::Here(create_here(ctx, req, p, &node, instant))
}

/// The request again, naming the instant node `id` (marked instant so
/// that the answer names it).
fn instant_request(iq: &Stanza, id: &str) -> Option<Stanza> {
    let mut el = iq.element(ns::CLIENT).ok()?;
    for c in el.children_mut() {
        if c.name == "pubsub" && c.ns == ns::PUBSUB {
            for a in c.children_mut() {
                if a.name == "create" {
                    a.set_attr("node", id);
                    a.set_attr("instant", "1");
                }
            }
        }
    }
    let raw = el.to_xml(ns::CLIENT);
    let mut s = Stanza::parse(raw.as_bytes()).ok()?;
    s.from = iq.from.clone();
    s.to = iq.to.clone();
    Some(s)
}

fn create_here(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    p: &Element,
    node: &str,
    instant: bool,
) -> super::Answer {
    use StanzaCondition as C;
    let cfg = &ctx.cfg().pubsub;
    if req.pep && !req.is_pep_owner() {
        return Err(StanzaError::new(C::Forbidden));
    }
    if !req.pep && !ctx.cfg().serves(req.from_bare.domain()) {
        return Err(StanzaError::with_text(
            C::Forbidden,
            "only accounts of this server create nodes",
        ));
    }
    let store = ctx.store().pubsub();
    if store
        .node_in(&ctx.writes, &req.service, node)
        .map_err(internal)?
        .is_some()
    {
        return Err(StanzaError::new(C::Conflict));
    }
    let made = store
        .nodes_created_by(&req.service, &req.from_bare)
        .map_err(internal)?;
    if made >= cfg.max_nodes_per_account {
        return Err(StanzaError::with_text(
            C::PolicyViolation,
            format!("at most {} nodes per account", cfg.max_nodes_per_account),
        ));
    }
    let mut config = if req.pep {
        super::pep::default_config(node)
    } else {
        NodeConfig::service_default(cfg.default_max_items)
    };
    if let Some(conf) = p.child("configure", ns::PUBSUB)
        && let Some(form) = form_in(conf)?
        && form.kind == FormKind::Submit
    {
        if form.form_type().is_some() {
            form.expect_form_type(ns::PUBSUB_NODE_CONFIG)
                .map_err(|e| e.to_stanza_error())?;
        }
        config
            .apply(&form, cfg.max_items_per_node)
            .map_err(config_error)?;
    }
    super::pep::supported(req, &config)?;
    put_new_node(ctx, req, node, config)?;
    let created = Element::new("create", ns::PUBSUB).with_attr("node", node);
    Ok(instant
        .then(|| pubsub_el(ns::PUBSUB, created.clone()))
        .or_else(|| Some(pubsub_el(ns::PUBSUB, created))))
}

/// Plan a new node owned by the requester.
pub(super) fn put_new_node(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &str,
    config: NodeConfig,
) -> Result<Node, StanzaError> {
    let record = NodeRecord::new(req.from_bare.clone(), now_ms(), config.encode());
    let store = ctx.store().pubsub();
    store
        .put_node_in(&mut ctx.writes, &req.service, node, &record)
        .map_err(internal)?;
    if !req.pep {
        store
            .set_affiliation_in(
                &mut ctx.writes,
                &req.service,
                node,
                &req.from_bare,
                Some(Affiliation::Owner),
            )
            .map_err(internal)?;
    }
    Ok(Node {
        id: node.to_string(),
        record,
        config,
    })
}

/// Load node `a@node` for an owner request: it must exist and the
/// requester own it.
pub(super) fn owned(ctx: &Ctx<'_>, req: &Req<'_>, a: &Element) -> Result<Node, StanzaError> {
    let id = node_of(a)?;
    let node = super::load(ctx, req, &id)?;
    match super::affiliation(ctx, req, &id)? {
        Some(Affiliation::Owner) => Ok(node),
        _ => Err(StanzaError::new(StanzaCondition::Forbidden)),
    }
}

/// §8.2: get or submit a node's configuration.
pub(super) fn configure(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element, set: bool) -> Handled {
    at_node_home(ctx, req, a, |ctx, _| {
        let mut node = owned(ctx, req, a)?;
        if !set {
            let form = node.config.to_form(FormKind::Form, req.pep).to_element();
            let conf = Element::new("configure", ns::PUBSUB_OWNER)
                .with_attr("node", &node.id)
                .with_child(form);
            return Ok(Some(pubsub_el(ns::PUBSUB_OWNER, conf)));
        }
        let Some(form) = form_in(a)? else {
            return Err(StanzaError::with_text(
                StanzaCondition::BadRequest,
                "a configuration form is missing",
            ));
        };
        match form.kind {
            FormKind::Cancel => return Ok(None),
            FormKind::Submit => {}
            _ => {
                return Err(StanzaError::with_text(
                    StanzaCondition::BadRequest,
                    "submit or cancel the form",
                ));
            }
        }
        if form.form_type().is_some() {
            form.expect_form_type(ns::PUBSUB_NODE_CONFIG)
                .map_err(|e| e.to_stanza_error())?;
        }
        // What expired under the old item_expire stays gone (§16.4.3):
        // its deletion is planned with the new configuration, so that
        // lifting or raising the expiry does not bring it back.
        super::expiry::sweep(ctx, req, &mut node)?;
        let cap = ctx.cfg().pubsub.max_items_per_node;
        node.config.apply(&form, cap).map_err(config_error)?;
        super::pep::supported(req, &node.config)?;
        node.record.config = node.config.encode();
        let store = ctx.store().pubsub();
        // Fewer items kept now: the oldest go.
        store
            .trim_in(
                &mut ctx.writes,
                &req.service,
                &node.id,
                &mut node.record,
                node.config.keep(cap),
            )
            .map_err(internal)?;
        store
            .put_node_in(&mut ctx.writes, &req.service, &node.id, &node.record)
            .map_err(internal)?;
        if node.config.notify_config {
            let mut c = Element::new("configuration", ns::PUBSUB_EVENT).with_attr("node", &node.id);
            if node.config.deliver_payloads {
                c.push(node.config.to_form(FormKind::Result, req.pep).to_element());
            }
            notify_subscribers(ctx, req, &node, event(c), None)?;
        }
        Ok(None)
    })
}

/// §8.3: the default configuration of new nodes.
pub(super) fn default_config(ctx: &mut Ctx<'_>, req: &Req<'_>, namespace: &str) -> Handled {
    let config = if req.pep {
        NodeConfig::pep_default()
    } else {
        NodeConfig::service_default(ctx.cfg().pubsub.default_max_items)
    };
    let d = Element::new("default", namespace)
        .with_child(config.to_form(FormKind::Form, req.pep).to_element());
    Handled::Here(Ok(Some(pubsub_el(namespace, d))))
}

/// §8.4: delete a node; subscribers hear of it, with the redirect if any.
pub(super) fn delete(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element) -> Handled {
    at_node_home(ctx, req, a, |ctx, _| {
        let node = owned(ctx, req, a)?;
        let redirect = a
            .child("redirect", ns::PUBSUB_OWNER)
            .and_then(|r| r.attr("uri"));
        delete_node(ctx, req, &node, redirect)?;
        Ok(None)
    })
}

/// Plan deleting `node` with everything in it, its subscribers told
/// (with `redirect`) when its configuration says so.
pub(super) fn delete_node(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &Node,
    redirect: Option<&str>,
) -> Result<(), StanzaError> {
    if node.config.notify_delete {
        let mut d = Element::new("delete", ns::PUBSUB_EVENT).with_attr("node", &node.id);
        if let Some(uri) = redirect {
            d.push(Element::new("redirect", ns::PUBSUB_EVENT).with_attr("uri", uri));
        }
        notify_subscribers(ctx, req, node, event(d), None)?;
    }
    ctx.store()
        .pubsub()
        .delete_node_in(&mut ctx.writes, &req.service, &node.id)
        .map_err(internal)?;
    Ok(())
}

/// §8.5: remove every item of a node.
pub(super) fn purge(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element) -> Handled {
    at_node_home(ctx, req, a, |ctx, _| {
        let mut node = owned(ctx, req, a)?;
        let store = ctx.store().pubsub();
        store
            .purge_in(&mut ctx.writes, &req.service, &node.id, &mut node.record)
            .map_err(internal)?;
        store
            .put_node_in(&mut ctx.writes, &req.service, &node.id, &node.record)
            .map_err(internal)?;
        if node.config.notify_retract {
            let p = Element::new("purge", ns::PUBSUB_EVENT).with_attr("node", &node.id);
            notify_subscribers(ctx, req, &node, event(p), None)?;
        }
        Ok(None)
    })
}
