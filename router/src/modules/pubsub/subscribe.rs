//! Subscriber use cases (XEP-0060 §6): subscribe (with options, pending
//! under the authorize model), unsubscribe (subid rules), subscription
//! options; the requester's subscriptions and affiliations across the
//! service (§5.6, §5.7); and the owner's answer to an authorization
//! request (§8.6), which arrives as a message with a data form.

use proto::error::{StanzaCondition, StanzaError};
use proto::form::{Field, Form, FormKind};
use proto::stanza::Stanza;
use proto::{Element, Jid, ns};
use storage::pubsub::{Affiliation, Subscription, SubscriptionState};

use super::config::{AccessModel, SendLast};
use super::manage::{affiliation_name, state_name};
use super::owner::config_error;
use super::publish::{event, event_item, notification, notify_subscribers};
use super::sub_options::SubOptions;
use super::{Handled, Req, at_node_home, check_access, fresh_id, internal, perr, pubsub_el};
use crate::modules::Ctx;

/// The subscriber JID a request names: it must be the requester's own
/// (bare or full), §6.1.3.1.
fn subscriber(req: &Req<'_>, a: &Element) -> Result<Jid, StanzaError> {
    let jid = a
        .attr("jid")
        .and_then(|j| Jid::parse(j).ok())
        .ok_or_else(|| perr(StanzaCondition::BadRequest, "invalid-jid"))?;
    if jid.bare() != req.from_bare {
        return Err(perr(StanzaCondition::BadRequest, "invalid-jid"));
    }
    Ok(jid)
}

/// `<subscription/>` of an answer.
fn subscription_el(namespace: &str, node: &str, s: &Subscription) -> Element {
    Element::new("subscription", namespace)
        .with_attr("node", node)
        .with_attr("jid", s.jid.as_str())
        .with_attr("subid", &s.subid)
        .with_attr("subscription", state_name(s.state))
}

/// §6.1: subscribe.
pub(super) fn subscribe(ctx: &mut Ctx<'_>, req: &Req<'_>, p: &Element, a: &Element) -> Handled {
    use StanzaCondition as C;
    at_node_home(ctx, req, a, |ctx, id| {
        let jid = subscriber(req, a)?;
        let node = super::load(ctx, req, &id)?;
        if !node.config.subscribe {
            return Err(super::unsupported("subscribe"));
        }
        let aff = super::affiliation(ctx, req, &id)?;
        check_access(ctx, req, &node, aff, true)?;
        let store = ctx.store().pubsub();
        let existing = store
            .subscriptions_of_in(&ctx.writes, &req.service, &id, &jid)
            .map_err(internal)?;
        if existing
            .iter()
            .any(|s| s.state == SubscriptionState::Pending)
        {
            return Err(perr(C::NotAuthorized, "pending-subscription"));
        }
        if let Some(s) = existing.first() {
            // Already subscribed: the same subscription again.
            return Ok(Some(pubsub_el(
                ns::PUBSUB,
                subscription_el(ns::PUBSUB, &id, s),
            )));
        }
        let limit = ctx.cfg().pubsub.max_subscriptions_per_node;
        if store
            .subscription_count_in(&ctx.writes, &req.service, &id)
            .map_err(internal)?
            >= limit
        {
            return Err(perr(C::PolicyViolation, "too-many-subscriptions"));
        }
        let mut options = SubOptions::default();
        if let Some(x) = p
            .child("options", ns::PUBSUB)
            .map(super::one_form)
            .transpose()?
            .flatten()
        {
            let f = Form::from_element(x).map_err(|e| e.to_stanza_error())?;
            options
                .apply(&f)
                .map_err(|e| perr_invalid_options(config_error(e)))?;
        }
        let pending = node.config.access_model == AccessModel::Authorize
            && !matches!(
                aff,
                Some(Affiliation::Owner | Affiliation::Publisher | Affiliation::Member)
            );
        let sub = Subscription {
            jid: jid.clone(),
            subid: fresh_id(),
            state: if pending {
                SubscriptionState::Pending
            } else {
                SubscriptionState::Subscribed
            },
            options: options.encode(),
        };
        store
            .put_subscription_in(&mut ctx.writes, &req.service, &id, &sub)
            .map_err(internal)?;
        if pending {
            ask_owners(ctx, req, &id, &sub)?;
        } else if node.config.send_last_published_item != SendLast::Never && options.deliver {
            // Not to a subscription that asked for no notifications
            // (pubsub#deliver=0, §6.3).
            send_last(ctx, req, &node, &jid)?;
        }
        if node.config.notify_sub {
            tell_owners(ctx, req, &node, &sub)?;
        }
        Ok(Some(pubsub_el(
            ns::PUBSUB,
            subscription_el(ns::PUBSUB, &id, &sub),
        )))
    })
}

/// Refused subscription options (§6.3.5): bad-request with invalid-options.
fn perr_invalid_options(e: StanzaError) -> StanzaError {
    StanzaError {
        condition: StanzaCondition::BadRequest,
        ..e
    }
    .with_app("invalid-options", ns::PUBSUB_ERRORS)
}

/// The last item of `node` to a new subscriber (§6.1.7).
pub(crate) fn send_last(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &super::Node,
    to: &Jid,
) -> Result<(), StanzaError> {
    let last = ctx
        .store()
        .pubsub()
        .last_item(&req.service, &node.id)
        .map_err(internal)?;
    // An expired item is not the last published one any more.
    if let Some(item) = last.filter(|i| super::expiry::alive(&node.config, i, super::now_ms())) {
        let ev = event(
            Element::new("items", ns::PUBSUB_EVENT)
                .with_attr("node", &node.id)
                .with_child(event_item(node, &item)),
        );
        notify_subscribers(ctx, req, node, ev, Some(to))?;
    }
    Ok(())
}

/// §8.6: ask each owner to approve a pending subscription, with a form in
/// a message.
fn ask_owners(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &str,
    sub: &Subscription,
) -> Result<(), StanzaError> {
    let form = Form::new(FormKind::Form)
        .with_form_type(ns::PUBSUB_SUBSCRIBE_AUTHORIZATION)
        .with_title("PubSub subscriber request")
        .with_instructions("Approve or deny the subscription request.")
        .with_field(Field::text_single("pubsub#node", node).with_label("Node"))
        .with_field(
            Field::jid_single("pubsub#subscriber_jid", sub.jid.clone()).with_label("Subscriber"),
        )
        .with_field(Field::hidden("pubsub#subid", &sub.subid))
        .with_field(Field::boolean("pubsub#allow", false).with_label("Allow this subscription?"));
    let owners: Vec<Jid> = super::owners(ctx, req, node)?
        .into_iter()
        .map(Jid::Bare)
        .collect();
    let mut raw = format!(
        "<message from='{}' id='{}'>",
        proto::element::escape(req.service.as_str()),
        fresh_id()
    );
    form.to_element().write(&mut raw, ns::CLIENT);
    raw.push_str("</message>");
    if let Ok(mut s) = Stanza::parse(raw.as_bytes()) {
        s.from = Some(Jid::Bare(req.service.clone()));
        // Normal type: kept offline for an owner who is away.
        ctx.notify(s, owners);
    }
    Ok(())
}

/// §8.8.4 / §6.1.4: tell a subscriber its subscription's new state.
pub(crate) fn tell_subscriber(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &str,
    jid: &Jid,
    state: &str,
    subid: Option<&str>,
) {
    let mut s = Element::new("subscription", ns::PUBSUB_EVENT)
        .with_attr("node", node)
        .with_attr("jid", jid.as_str())
        .with_attr("subscription", state);
    if let Some(id) = subid {
        s.set_attr("subid", id);
    }
    let cfg = super::config::NodeConfig::default();
    ctx.notify(
        notification(&req.service, &cfg, &event(s)),
        vec![jid.clone()],
    );
}

/// `pubsub#notify_sub`: the owners hear of a new subscription.
fn tell_owners(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &super::Node,
    sub: &Subscription,
) -> Result<(), StanzaError> {
    let owners: Vec<Jid> = super::owners(ctx, req, &node.id)?
        .into_iter()
        .map(Jid::Bare)
        .collect();
    let s = Element::new("subscription", ns::PUBSUB_EVENT)
        .with_attr("node", &node.id)
        .with_attr("jid", sub.jid.as_str())
        .with_attr("subscription", state_name(sub.state));
    ctx.notify(notification(&req.service, &node.config, &event(s)), owners);
    Ok(())
}

/// The one subscription of `jid` a request means (§6.2.3: with several, a
/// subid is required; an unknown one is invalid).
fn pick(existing: Vec<Subscription>, subid: Option<&str>) -> Result<Subscription, StanzaError> {
    use StanzaCondition as C;
    if existing.is_empty() {
        return Err(perr(C::UnexpectedRequest, "not-subscribed"));
    }
    match subid {
        Some(id) => existing
            .into_iter()
            .find(|s| s.subid == id)
            .ok_or_else(|| perr(C::NotAcceptable, "invalid-subid")),
        None if existing.len() > 1 => Err(perr(C::BadRequest, "subid-required")),
        None => existing
            .into_iter()
            .next()
            .ok_or_else(|| perr(C::UnexpectedRequest, "not-subscribed")),
    }
}

/// §6.2: unsubscribe.
pub(super) fn unsubscribe(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element) -> Handled {
    at_node_home(ctx, req, a, |ctx, id| {
        let jid = match subscriber(req, a) {
            Ok(j) => j,
            // §6.2.3.3: someone else's subscription.
            Err(_) => return Err(StanzaError::new(StanzaCondition::Forbidden)),
        };
        super::load(ctx, req, &id)?;
        let store = ctx.store().pubsub();
        let existing = store
            .subscriptions_of_in(&ctx.writes, &req.service, &id, &jid)
            .map_err(internal)?;
        let sub = pick(existing, a.attr("subid"))?;
        store
            .remove_subscription_in(&mut ctx.writes, &req.service, &id, &jid, &sub.subid)
            .map_err(internal)?;
        Ok(None)
    })
}

/// §6.3: get or set a subscription's options.
pub(super) fn options(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element, set: bool) -> Handled {
    at_node_home(ctx, req, a, |ctx, id| {
        let jid = match subscriber(req, a) {
            Ok(j) => j,
            Err(_) => return Err(StanzaError::new(StanzaCondition::Forbidden)),
        };
        super::load(ctx, req, &id)?;
        let store = ctx.store().pubsub();
        let existing = store
            .subscriptions_of_in(&ctx.writes, &req.service, &id, &jid)
            .map_err(internal)?;
        let mut sub = pick(existing, a.attr("subid"))?;
        let mut opts = SubOptions::decode(&sub.options);
        if !set {
            let o = Element::new("options", ns::PUBSUB)
                .with_attr("node", &id)
                .with_attr("jid", jid.as_str())
                .with_attr("subid", &sub.subid)
                .with_child(opts.to_form(FormKind::Form).to_element());
            return Ok(Some(pubsub_el(ns::PUBSUB, o)));
        }
        let Some(x) = super::one_form(a)? else {
            return Err(perr(StanzaCondition::BadRequest, "invalid-options"));
        };
        let f = Form::from_element(x).map_err(|e| e.to_stanza_error())?;
        opts.apply(&f)
            .map_err(|e| perr_invalid_options(config_error(e)))?;
        sub.options = opts.encode();
        if sub.state == SubscriptionState::Unconfigured {
            sub.state = SubscriptionState::Subscribed;
        }
        store
            .put_subscription_in(&mut ctx.writes, &req.service, &id, &sub)
            .map_err(internal)?;
        Ok(None)
    })
}

/// §6.4: the default subscription options, of the service or, with a
/// node, of that node (which must exist).
pub(super) fn default_options(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element) -> Handled {
    let form = |node: Option<&str>| {
        let mut d = Element::new("default", ns::PUBSUB);
        if let Some(n) = node {
            d = d.with_attr("node", n);
        }
        let d = d.with_child(SubOptions::default().to_form(FormKind::Form).to_element());
        Ok(Some(pubsub_el(ns::PUBSUB, d)))
    };
    if a.attr("node").is_none() {
        return Handled::Here(form(None));
    }
    at_node_home(ctx, req, a, |ctx, id| {
        super::load(ctx, req, &id)?;
        form(Some(&id))
    })
}

/// §5.6: the requester's subscriptions on the service (or one node).
pub(super) fn own_subscriptions(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element) -> Handled {
    let only = a.attr("node");
    let r = (|| {
        let subs = ctx
            .store()
            .pubsub()
            .subscriptions_by(&req.service, &Jid::Bare(req.from_bare.clone()))
            .map_err(internal)?;
        let mut list = Element::new("subscriptions", ns::PUBSUB);
        if let Some(n) = only {
            list.set_attr("node", n);
        }
        for (node, s) in subs {
            if only.is_none_or(|n| n == node) {
                list.push(subscription_el(ns::PUBSUB, &node, &s));
            }
        }
        Ok(Some(pubsub_el(ns::PUBSUB, list)))
    })();
    Handled::Here(r)
}

/// §5.7: the requester's affiliations on the service (or one node).
pub(super) fn own_affiliations(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element) -> Handled {
    let only = a.attr("node");
    let r = (|| {
        let store = ctx.store().pubsub();
        let mut affs: Vec<(String, Affiliation)> = if req.is_pep_owner() {
            store
                .nodes(&req.service, None, usize::MAX)
                .map_err(internal)?
                .into_iter()
                .map(|n| (n, Affiliation::Owner))
                .collect()
        } else {
            store
                .affiliations_of(&req.service, &req.from_bare)
                .map_err(internal)?
        };
        affs.retain(|(n, _)| only.is_none_or(|o| o == n));
        let mut list = Element::new("affiliations", ns::PUBSUB);
        if let Some(n) = only {
            list.set_attr("node", n);
        }
        for (node, aff) in affs {
            list.push(
                Element::new("affiliation", ns::PUBSUB)
                    .with_attr("node", node)
                    .with_attr("affiliation", affiliation_name(Some(aff))),
            );
        }
        Ok(Some(pubsub_el(ns::PUBSUB, list)))
    })();
    Handled::Here(r)
}

/// §8.6.1: an owner's answer to an authorization request, a submitted
/// form in a message to the service. Handled at the node's home.
pub(super) fn authorization_answer(ctx: &mut Ctx<'_>, s: Stanza) {
    let Some(from) = s.from.clone() else { return };
    let Some(Jid::Bare(service)) = s.to.clone().map(|t| Jid::Bare(t.bare())) else {
        return;
    };
    let Ok(el) = s.element(ns::CLIENT) else {
        return;
    };
    let Some(x) = el.child("x", ns::DATA_FORMS) else {
        return;
    };
    let Ok(form) = Form::from_element(x) else {
        return;
    };
    if form.form_type() != Some(ns::PUBSUB_SUBSCRIBE_AUTHORIZATION) || form.kind != FormKind::Submit
    {
        return;
    }
    let Some(node) = form.value("pubsub#node").map(str::to_string) else {
        return;
    };
    let home = storage::pubsub::home(&service, &node);
    if !ctx.is_home(&home) {
        ctx.route_home(home, s);
        return;
    }
    let allow = form.boolean("pubsub#allow").ok().flatten().unwrap_or(false);
    let Ok(Some(jid)) = form.jid("pubsub#subscriber_jid") else {
        return;
    };
    let subid = form.value("pubsub#subid").map(str::to_string);
    let req = Req {
        iq: &s,
        service: service.clone(),
        pep: false,
        from_bare: from.bare(),
        from,
    };
    let is_owner = matches!(
        super::affiliation(ctx, &req, &node),
        Ok(Some(Affiliation::Owner))
    );
    if !is_owner {
        return;
    }
    let store = ctx.store().pubsub();
    let Ok(existing) = store.subscriptions_of_in(&ctx.writes, &service, &node, &jid) else {
        return;
    };
    let Some(mut sub) = existing.into_iter().find(|x| {
        x.state == SubscriptionState::Pending && subid.as_ref().is_none_or(|i| *i == x.subid)
    }) else {
        return;
    };
    let result = if allow {
        sub.state = SubscriptionState::Subscribed;
        store.put_subscription_in(&mut ctx.writes, &service, &node, &sub)
    } else {
        store
            .remove_subscription_in(&mut ctx.writes, &service, &node, &jid, &sub.subid)
            .map(|_| ())
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "pubsub authorization not stored");
        return;
    }
    let state = if allow { "subscribed" } else { "none" };
    tell_subscriber(ctx, &req, &node, &jid, state, Some(&sub.subid));
}
