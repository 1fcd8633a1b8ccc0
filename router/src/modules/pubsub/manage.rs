//! An owner manages a node's subscriptions (XEP-0060 §8.8) and
//! affiliations (§8.9): the lists, and changes to them.
//!
//! A change request is all or nothing. Every entry is checked before any
//! is applied; if one is invalid, nothing is, and the answer (the error
//! §8.8.2.4 and §8.9.2.4 name: `not-acceptable`, or `bad-request` for an
//! entity named twice) carries every entry of the request with its
//! original, unaltered state. XEP-0060 lets a service apply the valid
//! entries and return only the invalid ones ("entries not returned are
//! treated as successful"); returning all of them unaltered says, in the
//! XEP's own terms, that none was applied.

use proto::error::{StanzaCondition, StanzaError};
use proto::{BareJid, Element, Jid, ns};
use storage::pubsub::{Affiliation, Subscription, SubscriptionState};

use super::owner::owned;
use super::sub_options::SubOptions;
use super::subscribe::tell_subscriber;
use super::{Handled, Node, Req, at_node_home_then, fresh_id, internal, owners, pubsub_el};
use crate::modules::Ctx;

/// The `subscription` attribute of a state.
pub(super) fn state_name(s: SubscriptionState) -> &'static str {
    match s {
        SubscriptionState::Pending => "pending",
        SubscriptionState::Unconfigured => "unconfigured",
        SubscriptionState::Subscribed => "subscribed",
    }
}

/// The `affiliation` attribute of an affiliation.
pub(super) fn affiliation_name(a: Option<Affiliation>) -> &'static str {
    match a {
        Some(Affiliation::Owner) => "owner",
        Some(Affiliation::Publisher) => "publisher",
        Some(Affiliation::PublishOnly) => "publish-only",
        Some(Affiliation::Member) => "member",
        Some(Affiliation::Outcast) => "outcast",
        None => "none",
    }
}

fn parse_affiliation(s: &str) -> Option<Option<Affiliation>> {
    Some(match s {
        "owner" => Some(Affiliation::Owner),
        "publisher" => Some(Affiliation::Publisher),
        "publish-only" => Some(Affiliation::PublishOnly),
        "member" => Some(Affiliation::Member),
        "outcast" => Some(Affiliation::Outcast),
        "none" => None,
        _ => return None,
    })
}

/// `<pubsub xmlns='...#owner'><name node='...'>entries</name></pubsub>`.
fn owner_list(name: &str, node: &str, entries: Vec<Element>) -> Element {
    let mut list = Element::new(name, ns::PUBSUB_OWNER).with_attr("node", node);
    for e in entries {
        list.push(e);
    }
    pubsub_el(ns::PUBSUB_OWNER, list)
}

/// One change of a subscriptions request: the subscriber, the subid it
/// names if any, and the new state (`None` removes).
struct SubChange {
    jid: Jid,
    subid: Option<String>,
    state: Option<SubscriptionState>,
}

/// §8.8: list or change a node's subscriptions.
pub(super) fn subscriptions(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element, set: bool) -> Handled {
    at_node_home_then(ctx, req, a, |ctx, _| {
        let node = match owned(ctx, req, a) {
            Ok(n) => n,
            Err(e) => return e.into(),
        };
        if !set {
            return list_subscriptions(ctx, req, &node).into();
        }
        let entries: Vec<&Element> = a.elements().filter(|e| e.name == "subscription").collect();
        let changes = match check_subscriptions(ctx, req, &node, &entries) {
            Ok(c) => c,
            Err(e) => return refuse_subscriptions(ctx, req, &node, &entries, e),
        };
        apply_subscriptions(ctx, req, &node, changes).into()
    })
}

fn list_subscriptions(ctx: &Ctx<'_>, req: &Req<'_>, node: &Node) -> super::Answer {
    let subs = ctx
        .store()
        .pubsub()
        .subscriptions(&req.service, &node.id)
        .map_err(internal)?;
    let entries = subs
        .iter()
        .map(|s| {
            Element::new("subscription", ns::PUBSUB_OWNER)
                .with_attr("jid", s.jid.as_str())
                .with_attr("subscription", state_name(s.state))
                .with_attr("subid", &s.subid)
        })
        .collect();
    Ok(Some(owner_list("subscriptions", &node.id, entries)))
}

/// Every entry valid, as changes; or the error to refuse them all with.
/// An entry without a `subscription` attribute changes nothing (§8.8.2).
fn check_subscriptions(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    node: &Node,
    entries: &[&Element],
) -> Result<Vec<SubChange>, StanzaError> {
    let invalid = |why: &str| StanzaError::with_text(StanzaCondition::NotAcceptable, why);
    let mut changes: Vec<SubChange> = Vec::with_capacity(entries.len());
    for e in entries {
        let jid = e
            .attr("jid")
            .and_then(|j| Jid::parse(j).ok())
            .ok_or_else(|| invalid("a subscription names no valid jid"))?;
        let state = match e.attr("subscription") {
            None => continue,
            Some("none") => None,
            Some("subscribed") => Some(SubscriptionState::Subscribed),
            Some("pending") => Some(SubscriptionState::Pending),
            Some(_) => return Err(invalid("subscription must be subscribed, pending or none")),
        };
        let subid = e.attr("subid").map(str::to_string);
        if let Some(id) = &subid {
            let existing = ctx
                .store()
                .pubsub()
                .subscriptions_of_in(&ctx.writes, &req.service, &node.id, &jid)
                .map_err(internal)?;
            if !existing.iter().any(|s| s.subid == *id) {
                return Err(invalid("no such subscription id"));
            }
        }
        // One entry per subscription (§8.8.2.4: distinct subids).
        if changes
            .iter()
            .any(|c| c.jid.as_str() == jid.as_str() && c.subid == subid)
        {
            return Err(invalid("a subscription is named twice"));
        }
        changes.push(SubChange { jid, subid, state });
    }
    Ok(changes)
}

/// Refuse a subscriptions request with `e`, returning each entry with the
/// subscription state it still has.
fn refuse_subscriptions(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    node: &Node,
    entries: &[&Element],
    e: StanzaError,
) -> Handled {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let raw = entry.attr("jid").unwrap_or_default();
        let subid = entry.attr("subid");
        let current = match Jid::parse(raw) {
            Ok(jid) => match ctx.store().pubsub().subscriptions_of_in(
                &ctx.writes,
                &req.service,
                &node.id,
                &jid,
            ) {
                Ok(subs) => subs
                    .into_iter()
                    .find(|s| subid.is_none_or(|id| id == s.subid))
                    .map(|s| state_name(s.state)),
                Err(e) => return internal(e).into(),
            },
            Err(_) => None,
        };
        let mut el = Element::new("subscription", ns::PUBSUB_OWNER)
            .with_attr("jid", raw)
            .with_attr("subscription", current.unwrap_or("none"));
        if let Some(id) = subid {
            el.set_attr("subid", id);
        }
        out.push(el);
    }
    Handled::Refused(e, owner_list("subscriptions", &node.id, out))
}

fn apply_subscriptions(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &Node,
    changes: Vec<SubChange>,
) -> super::Answer {
    let store = ctx.store().pubsub();
    for c in changes {
        let existing: Vec<Subscription> = store
            .subscriptions_of_in(&ctx.writes, &req.service, &node.id, &c.jid)
            .map_err(internal)?
            .into_iter()
            .filter(|s| c.subid.as_ref().is_none_or(|id| *id == s.subid))
            .collect();
        match c.state {
            None => {
                for s in &existing {
                    store
                        .remove_subscription_in(
                            &mut ctx.writes,
                            &req.service,
                            &node.id,
                            &c.jid,
                            &s.subid,
                        )
                        .map_err(internal)?;
                }
                tell_subscriber(ctx, req, &node.id, &c.jid, "none", c.subid.as_deref());
            }
            Some(state) => {
                let sub = match existing.into_iter().next() {
                    Some(s) => Subscription { state, ..s },
                    None => Subscription {
                        jid: c.jid.clone(),
                        subid: fresh_id(),
                        state,
                        options: SubOptions::default().encode(),
                    },
                };
                store
                    .put_subscription_in(&mut ctx.writes, &req.service, &node.id, &sub)
                    .map_err(internal)?;
                tell_subscriber(
                    ctx,
                    req,
                    &node.id,
                    &c.jid,
                    state_name(state),
                    Some(&sub.subid),
                );
            }
        }
    }
    Ok(None)
}

/// §8.9: list or change a node's affiliations. An outcast loses its
/// subscriptions; the last owner cannot be removed.
pub(super) fn affiliations(ctx: &mut Ctx<'_>, req: &Req<'_>, a: &Element, set: bool) -> Handled {
    at_node_home_then(ctx, req, a, |ctx, _| {
        let node = match owned(ctx, req, a) {
            Ok(n) => n,
            Err(e) => return e.into(),
        };
        if !set {
            return list_affiliations(ctx, req, &node).into();
        }
        let entries: Vec<&Element> = a.elements().filter(|e| e.name == "affiliation").collect();
        let changes = match check_affiliations(ctx, req, &node, &entries) {
            Ok(c) => c,
            Err(e) => return refuse_affiliations(ctx, req, &node, &entries, e),
        };
        apply_affiliations(ctx, req, &node, changes).into()
    })
}

fn list_affiliations(ctx: &Ctx<'_>, req: &Req<'_>, node: &Node) -> super::Answer {
    let mut listed = ctx
        .store()
        .pubsub()
        .affiliations(&req.service, &node.id)
        .map_err(internal)?;
    if req.pep {
        listed.retain(|(j, _)| *j != req.service);
        listed.insert(0, (req.service.clone(), Affiliation::Owner));
    }
    let entries = listed
        .into_iter()
        .map(|(jid, aff)| {
            Element::new("affiliation", ns::PUBSUB_OWNER)
                .with_attr("jid", jid.as_str())
                .with_attr("affiliation", affiliation_name(Some(aff)))
        })
        .collect();
    Ok(Some(owner_list("affiliations", &node.id, entries)))
}

/// Every entry valid, as changes; or the error to refuse them all with.
/// An entry without an `affiliation` attribute changes nothing (§8.9.2).
fn check_affiliations(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    node: &Node,
    entries: &[&Element],
) -> Result<Vec<(BareJid, Option<Affiliation>)>, StanzaError> {
    use StanzaCondition as C;
    let mut changes: Vec<(BareJid, Option<Affiliation>)> = Vec::with_capacity(entries.len());
    let mut named: Vec<BareJid> = Vec::with_capacity(entries.len());
    for e in entries {
        let jid = e
            .attr("jid")
            .and_then(|j| BareJid::parse(j).ok())
            .ok_or_else(|| {
                StanzaError::with_text(C::NotAcceptable, "an affiliation names no valid jid")
            })?;
        // §8.9.2.4: the same entity twice is a bad request.
        if named.contains(&jid) {
            return Err(StanzaError::with_text(
                C::BadRequest,
                "an entity is named twice",
            ));
        }
        named.push(jid.clone());
        let Some(value) = e.attr("affiliation") else {
            continue;
        };
        let aff = parse_affiliation(value)
            .ok_or_else(|| StanzaError::with_text(C::NotAcceptable, "unknown affiliation"))?;
        if req.pep && jid == req.service {
            return Err(StanzaError::with_text(
                C::NotAcceptable,
                "the account owns its PEP nodes",
            ));
        }
        changes.push((jid, aff));
    }
    if !req.pep {
        let mut left: Vec<BareJid> = owners(ctx, req, &node.id)?;
        for (jid, aff) in &changes {
            left.retain(|o| o != jid);
            if *aff == Some(Affiliation::Owner) {
                left.push(jid.clone());
            }
        }
        if left.is_empty() {
            return Err(StanzaError::with_text(
                C::NotAcceptable,
                "a node keeps at least one owner",
            ));
        }
    }
    Ok(changes)
}

/// Refuse an affiliations request with `e`, returning each entry with the
/// affiliation it still has.
fn refuse_affiliations(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    node: &Node,
    entries: &[&Element],
    e: StanzaError,
) -> Handled {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let raw = entry.attr("jid").unwrap_or_default();
        let current = match BareJid::parse(raw) {
            Ok(jid) if req.pep && jid == req.service => Some(Affiliation::Owner),
            Ok(jid) => {
                match ctx
                    .store()
                    .pubsub()
                    .affiliation_in(&ctx.writes, &req.service, &node.id, &jid)
                {
                    Ok(a) => a,
                    Err(e) => return internal(e).into(),
                }
            }
            Err(_) => None,
        };
        out.push(
            Element::new("affiliation", ns::PUBSUB_OWNER)
                .with_attr("jid", raw)
                .with_attr("affiliation", affiliation_name(current)),
        );
    }
    Handled::Refused(e, owner_list("affiliations", &node.id, out))
}

fn apply_affiliations(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    node: &Node,
    changes: Vec<(BareJid, Option<Affiliation>)>,
) -> super::Answer {
    let store = ctx.store().pubsub();
    for (jid, aff) in changes {
        store
            .set_affiliation_in(&mut ctx.writes, &req.service, &node.id, &jid, aff)
            .map_err(internal)?;
        if aff == Some(Affiliation::Outcast) {
            for (n, s) in store
                .subscriptions_by(&req.service, &Jid::Bare(jid.clone()))
                .map_err(internal)?
            {
                if n == node.id {
                    store
                        .remove_subscription_in(
                            &mut ctx.writes,
                            &req.service,
                            &node.id,
                            &s.jid,
                            &s.subid,
                        )
                        .map_err(internal)?;
                }
            }
        }
    }
    Ok(None)
}
