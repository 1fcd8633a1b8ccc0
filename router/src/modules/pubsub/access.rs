//! Who may do what with a node (XEP-0060 §4.1 affiliations, §4.5 access
//! models): the requester's affiliation, the node's owners, whether the
//! requester may retrieve items or subscribe (`check_access`), and
//! whether it may see that the node exists at all (`visible`, for
//! discovery: XEP-0163 §6.2 and XEP-0060 §5.2 list only the nodes the
//! requester could retrieve from or subscribe to).

use proto::BareJid;
use proto::error::{StanzaCondition, StanzaError};
use storage::pubsub::Affiliation;

use super::config::AccessModel;
use super::{Node, Req, internal, perr};
use crate::modules::Ctx;

/// The requester's affiliation with a node. The PEP service's account owns
/// all its nodes.
pub(crate) fn affiliation(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    node: &str,
) -> Result<Option<Affiliation>, StanzaError> {
    if req.is_pep_owner() {
        return Ok(Some(Affiliation::Owner));
    }
    ctx.store()
        .pubsub()
        .affiliation_in(&ctx.writes, &req.service, node, &req.from_bare)
        .map_err(internal)
}

/// The owners of a node (for a PEP node, its account).
pub(crate) fn owners(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    node: &str,
) -> Result<Vec<BareJid>, StanzaError> {
    if req.pep {
        return Ok(vec![req.service.clone()]);
    }
    Ok(ctx
        .store()
        .pubsub()
        .affiliations(&req.service, node)
        .map_err(internal)?
        .into_iter()
        .filter(|(_, a)| *a == Affiliation::Owner)
        .map(|(j, _)| j)
        .collect())
}

/// Whether the requester may see a node's items and subscribe to it,
/// by the node's access model (XEP-0060 §4.5, §6.1.3, §6.5.3); `Ok` means
/// allowed. `subscribing` asks for the rules of a subscription request
/// (the authorize model lets it through, pending).
pub(crate) fn check_access(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    node: &Node,
    aff: Option<Affiliation>,
    subscribing: bool,
) -> Result<(), StanzaError> {
    use StanzaCondition as C;
    match aff {
        // Publish-only may publish and purge, not see (§4.1's table).
        Some(Affiliation::Outcast | Affiliation::PublishOnly) => {
            return Err(StanzaError::new(C::Forbidden));
        }
        Some(Affiliation::Owner | Affiliation::Publisher) => return Ok(()),
        _ => {}
    }
    match node.config.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence => {
            if contact_of_owner(ctx, req, &node.id, None)? {
                Ok(())
            } else {
                Err(perr(C::NotAuthorized, "presence-subscription-required"))
            }
        }
        AccessModel::Roster => {
            let groups = &node.config.roster_groups_allowed;
            if contact_of_owner(ctx, req, &node.id, Some(groups))? {
                Ok(())
            } else {
                Err(perr(C::NotAuthorized, "not-in-roster-group"))
            }
        }
        // A PEP node made authorize before that was refused (`pep.rs`):
        // closed, as no one can approve a subscription to it.
        AccessModel::Authorize if req.pep => {
            if aff == Some(Affiliation::Member) {
                Ok(())
            } else {
                Err(perr(C::NotAllowed, "closed-node"))
            }
        }
        AccessModel::Authorize => {
            if subscribing || aff == Some(Affiliation::Member) {
                return Ok(());
            }
            if is_subscribed(ctx, req, &node.id)? {
                Ok(())
            } else {
                Err(perr(C::NotAuthorized, "not-subscribed"))
            }
        }
        AccessModel::Whitelist => {
            if aff == Some(Affiliation::Member) {
                Ok(())
            } else {
                Err(perr(C::NotAllowed, "closed-node"))
            }
        }
    }
}

/// Whether an owner of the node has the requester in its roster with a
/// subscription from it (the requester sees the owner's presence), and,
/// with `groups`, in one of those groups.
fn contact_of_owner(
    ctx: &Ctx<'_>,
    req: &Req<'_>,
    node: &str,
    groups: Option<&Vec<String>>,
) -> Result<bool, StanzaError> {
    for owner in owners(ctx, req, node)? {
        if owner == req.from_bare {
            return Ok(true);
        }
        let item = ctx
            .store()
            .rosters()
            .get(&owner, &req.from_bare)
            .map_err(internal)?;
        if let Some(item) = item
            && item.state.sub.has_from()
            && groups.is_none_or(|g| item.groups.iter().any(|x| g.contains(x)))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the requester holds a confirmed subscription to the node,
/// under its full JID or its bare one (slixmpp and most clients
/// subscribe the bare JID, then ask from a full one).
pub(crate) fn is_subscribed(ctx: &Ctx<'_>, req: &Req<'_>, node: &str) -> Result<bool, StanzaError> {
    let store = ctx.store().pubsub();
    let bare = proto::Jid::Bare(req.from_bare.clone());
    for jid in [&req.from, &bare] {
        let subs = store
            .subscriptions_of_in(&ctx.writes, &req.service, node, jid)
            .map_err(internal)?;
        if subs
            .iter()
            .any(|s| s.state == storage::pubsub::SubscriptionState::Subscribed)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether discovery shows the node to the requester: only to those who
/// may retrieve its items (XEP-0163 §6.2: "only those nodes to which the
/// contact is allowed to subscribe or from which the contact is allowed
/// to retrieve items"; the same for a service's nodes, §5.2, so that a
/// whitelist or authorize node is not announced to everybody). The
/// owners, publishers and members of a node always see it.
pub(crate) fn visible(ctx: &Ctx<'_>, req: &Req<'_>, node: &Node) -> Result<bool, StanzaError> {
    let aff = affiliation(ctx, req, &node.id)?;
    match check_access(ctx, req, node, aff, false) {
        Ok(()) => Ok(true),
        Err(e) if e.condition == StanzaCondition::InternalServerError => Err(e),
        Err(_) => Ok(false),
    }
}
