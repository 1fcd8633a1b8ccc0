//! XEP-0060 Publish-Subscribe as a sharded core service, and PEP
//! (XEP-0163) on every account's bare JID.
//!
//! A node is (service, node id); every record of it lives in the shard of
//! its home (`storage::pubsub::home`): `service/node` for a node of a
//! service such as `pubsub.localhost`, the owner's bare JID for a PEP node,
//! so a user's PEP nodes live with the user. A request reaches the shard of
//! its sender (or, for a PEP node of another account, of that account)
//! first; the handler finds the node it names and, unless the node lives
//! there, hands the stanza on to the node's home ([`Ctx::route_home`]),
//! where it is handled again. Every change is planned into the shard's
//! writes, so the answer leaves only once the shard's Raft group has
//! committed it. Notifications leave the same way and fan out per shard
//! of their recipients (`Ctx::notify`), then per edge.
//!
//! Files: `config.rs` (node configuration), `sub_options.rs` (§6.3
//! subscription options), `owner.rs` (XEP-0060 §8), `publish.rs` (§7 and notifications),
//! `subscribe.rs` (§6, §5.6, §5.7, authorization), `items.rs` (§6.5 with
//! RSM), `manage.rs` (§8.8, §8.9), `disco.rs` (§5), `expiry.rs`
//! (`pubsub#item_expire`), `access.rs` (§4.1, §4.5), `pep.rs` (XEP-0163).
//!
//! A request is all or nothing: one refused halfway has its planned
//! writes and held notifications undone ([`Ctx::rollback`]).

mod access;
pub(crate) mod admin;
pub mod config;
mod disco;
mod expiry;
mod items;
mod manage;
mod owner;
pub(crate) mod pep;
mod publish;
mod sub_options;
mod subscribe;

use std::sync::Arc;

use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::Stanza;
use proto::{BareJid, Element, Jid, ns};
use storage::pubsub::NodeRecord;

use super::Ctx;
use super::context::Savepoint;
use super::handler::{IqHandler, Target, TargetKind};
use crate::config::CoreConfig;
use access::{affiliation, check_access, is_subscribed, owners};
use config::NodeConfig;
pub(crate) use disco::{items as disco_items, node_info as disco_node_info};
// XEP-0059 result set management, for other lists too (MUC rooms).
pub(crate) use items::{Rsm, rsm_answer};

/// The handlers of this module, for the registry.
pub(crate) fn handlers(_cfg: &CoreConfig) -> Vec<Arc<dyn IqHandler>> {
    vec![
        Arc::new(PubSub),
        Arc::new(PubSubOwner),
        Arc::new(disco::Info),
        Arc::new(disco::Items),
    ]
}

/// The features of XEP-0060 this implementation has (§10, the
/// `pubsub#...` registry), for disco#info.
pub(crate) const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-authorize",
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#config-node-max",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#instant-nodes",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#manage-subscriptions",
    "http://jabber.org/protocol/pubsub#member-affiliation",
    "http://jabber.org/protocol/pubsub#meta-data",
    "http://jabber.org/protocol/pubsub#modify-affiliations",
    "http://jabber.org/protocol/pubsub#outcast-affiliation",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-only-affiliation",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#publisher-affiliation",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-affiliations",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-default-sub",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    "http://jabber.org/protocol/pubsub#subscribe",
    "http://jabber.org/protocol/pubsub#subscription-notifications",
    "http://jabber.org/protocol/pubsub#subscription-options",
];

/// Features PEP adds on an account (XEP-0163 §4, XEP-0060 §10).
pub(crate) const PEP_FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#auto-subscribe",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#meta-data",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-default-sub",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#subscribe",
    "http://jabber.org/protocol/pubsub#subscription-options",
];

/// One request: the service asked, whether it is a PEP service, and who
/// asks.
pub(crate) struct Req<'s> {
    pub iq: &'s Stanza,
    pub service: BareJid,
    pub pep: bool,
    /// The requester's full JID and its bare JID.
    pub from: Jid,
    pub from_bare: BareJid,
}

impl<'s> Req<'s> {
    fn new(iq: &'s Stanza, target: &Target) -> Option<Req<'s>> {
        let from = iq.from.clone()?;
        let from_bare = from.bare();
        let (service, pep) = match target {
            Target::PubSub(s) => (s.clone(), false),
            Target::OwnAccount => (from_bare.clone(), true),
            Target::Account(b) => (b.clone(), true),
            Target::Server => return None,
        };
        Some(Req {
            iq,
            service,
            pep,
            from,
            from_bare,
        })
    }

    /// Whether the requester is the PEP service's own account.
    fn is_pep_owner(&self) -> bool {
        self.pep && self.from_bare == self.service
    }
}

/// A PubSub error: a stanza condition with XEP-0060's application
/// condition (`pubsub#errors`).
pub(crate) fn perr(cond: StanzaCondition, app: &str) -> StanzaError {
    StanzaError::new(cond).with_app(app, ns::PUBSUB_ERRORS)
}

/// XEP-0060's `<unsupported feature='...'/>` with feature-not-implemented.
pub(crate) fn unsupported(feature: &str) -> StanzaError {
    StanzaError::new(StanzaCondition::FeatureNotImplemented)
        .with_app("unsupported", ns::PUBSUB_ERRORS)
        .with_app_attr("feature", feature)
}

/// `Ok` or the error to answer with.
pub(crate) type Answer = Result<Option<Element>, StanzaError>;

/// Answer `iq` with how it was handled. A refused request changes
/// nothing: what it planned since `sp` (a node auto-created on the way,
/// the entries of a list before the bad one) and the notifications it
/// held are undone, so every request is all or nothing.
fn reply(ctx: &mut Ctx<'_>, iq: &Stanza, sp: Savepoint, r: Handled) {
    match r {
        Handled::Here(Ok(payload)) => ctx.iq_result(iq, payload.as_ref()),
        Handled::Here(Err(e)) => {
            ctx.rollback(sp);
            ctx.bounce_with(iq, &e);
        }
        Handled::Refused(e, payload) => {
            ctx.rollback(sp);
            ctx.bounce_with_payload(iq, &e, Some(&payload));
        }
        Handled::Elsewhere => {}
    }
}

/// Whether `id` can be the key of a stored node or item: non-empty, at
/// most `MAX_ID_LEN` bytes, no NUL. An id that cannot names nothing, so a
/// lookup by it is answered as for a missing one without asking the
/// store (which refuses it as an error).
pub(crate) fn storable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= storage::pubsub::MAX_ID_LEN && !id.contains('\0')
}

/// The one data form in `el`, if any: two forms where one is expected
/// are as ambiguous as two FORM_TYPE values, a bad request.
pub(crate) fn one_form(el: &Element) -> Result<Option<&Element>, StanzaError> {
    let mut forms = el
        .elements()
        .filter(|c| c.name == "x" && c.ns == ns::DATA_FORMS);
    match (forms.next(), forms.next()) {
        (_, Some(_)) => Err(StanzaError::with_text(
            StanzaCondition::BadRequest,
            "one data form is expected here, not several",
        )),
        (first, None) => Ok(first),
    }
}

/// The node a request names, validated.
pub(crate) fn node_of(el: &Element) -> Result<String, StanzaError> {
    match el.attr("node") {
        Some(n) if storable_id(n) => Ok(n.to_string()),
        Some(_) => Err(StanzaError::with_text(
            StanzaCondition::BadRequest,
            "the node id is empty or too long",
        )),
        None => Err(perr(StanzaCondition::BadRequest, "nodeid-required")),
    }
}

/// Handle the request here if node `node` of `service` lives in this
/// shard; otherwise hand it on to the node's home and return `false`.
fn at_home(ctx: &Ctx<'_>, req: &Req<'_>, node: &str) -> bool {
    let home = storage::pubsub::home(&req.service, node);
    if ctx.is_home(&home) {
        return true;
    }
    ctx.route_home(home, req.iq.clone());
    false
}

/// Run `f` with the node id that `a` names, at that node's home: here,
/// or hand the request on and answer nothing here.
pub(crate) fn at_node_home(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    a: &Element,
    f: impl FnOnce(&mut Ctx<'_>, String) -> Answer,
) -> Handled {
    at_node_home_then(ctx, req, a, |ctx, id| Handled::Here(f(ctx, id)))
}

/// As [`at_node_home`], for a handler that says itself how it handled
/// the request (it may refuse with a payload).
pub(crate) fn at_node_home_then(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    a: &Element,
    f: impl FnOnce(&mut Ctx<'_>, String) -> Handled,
) -> Handled {
    let id = match node_of(a) {
        Ok(id) => id,
        Err(e) => return e.into(),
    };
    if !at_home(ctx, req, &id) {
        return Handled::Elsewhere;
    }
    f(ctx, id)
}

/// A node as a handler works on it: its record and configuration.
pub(crate) struct Node {
    pub id: String,
    pub record: NodeRecord,
    pub config: NodeConfig,
}

/// The node `id` of the request's service, or `item-not-found`.
fn load(ctx: &Ctx<'_>, req: &Req<'_>, id: &str) -> Result<Node, StanzaError> {
    let rec = ctx
        .store()
        .pubsub()
        .node_in(&ctx.writes, &req.service, id)
        .map_err(internal)?;
    let Some(record) = rec else {
        return Err(StanzaError::new(StanzaCondition::ItemNotFound));
    };
    let config = NodeConfig::decode(&record.config);
    Ok(Node {
        id: id.to_string(),
        record,
        config,
    })
}

/// A storage failure, as the requester sees it. An id the store refuses
/// to key on came from the request (handlers check the ids they look up,
/// `storable_id`; this is the net under them): a bad request, not a fault
/// of the server.
pub(crate) fn internal(e: storage::StorageError) -> StanzaError {
    if let storage::StorageError::InvalidId { .. } = e {
        tracing::debug!(error = %e, "pubsub request names an id that cannot be stored");
        return StanzaError::with_text(StanzaCondition::BadRequest, e.to_string());
    }
    tracing::error!(error = %e, "pubsub store failed");
    StanzaError::new(StanzaCondition::InternalServerError)
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh id for an item or an instant node: unique without coordination.
pub(crate) fn fresh_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// `<pubsub xmlns=ns/>` with one child.
fn pubsub_el(namespace: &str, child: Element) -> Element {
    Element::new("pubsub", namespace).with_child(child)
}

/// The `pubsub` namespace: entity and subscriber use cases (§5–§7) and
/// node creation.
pub(crate) struct PubSub;

/// The `pubsub#owner` namespace: owner use cases (§8).
pub(crate) struct PubSubOwner;

const TARGETS: &[TargetKind] = &[
    TargetKind::PubSub,
    TargetKind::OwnAccount,
    TargetKind::Account,
];

/// The request's action element: the first child that is not an option
/// carrier (`configure` after `create`, `options` after `subscribe`,
/// `publish-options` after `publish`).
/// Whether `p` asks for more than one thing: XEP-0060's schema allows one
/// request in `<pubsub/>` (with its `configure`, `options` or
/// `publish-options`, each once); other namespaces (RSM) may join it.
fn several_requests(p: &Element) -> bool {
    let mine = || p.elements().filter(|e| e.ns == p.ns);
    let aux = ["publish-options", "configure", "options"];
    let requests = mine().filter(|e| !aux.contains(&e.name.as_str())).count();
    requests > 1
        || aux
            .iter()
            .any(|a| mine().filter(|e| e.name == *a).count() > 1)
}

fn action(p: &Element) -> Option<&Element> {
    p.elements()
        .find(|e| !matches!(e.name.as_str(), "publish-options" | "configure" | "options"))
        .or_else(|| p.elements().next())
}

impl IqHandler for PubSub {
    fn namespace(&self) -> &'static str {
        ns::PUBSUB
    }
    fn targets(&self) -> &'static [TargetKind] {
        TARGETS
    }
    fn features(&self, t: TargetKind) -> &'static [&'static str] {
        match t {
            TargetKind::PubSub => FEATURES,
            // XEP-0163 §4: an account advertises PEP by an identity and
            // these features on its bare JID.
            TargetKind::OwnAccount | TargetKind::Account => PEP_FEATURES,
            TargetKind::Server => &[],
        }
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
        let Some(req) = Req::new(iq, t) else {
            return ctx.bounce(iq, StanzaCondition::ServiceUnavailable, None);
        };
        let Some(a) = action(p) else {
            return ctx.bounce(iq, StanzaCondition::BadRequest, None);
        };
        if several_requests(p) {
            return ctx.bounce(
                iq,
                StanzaCondition::BadRequest,
                Some("one request at a time"),
            );
        }
        let set = iq.stype() == "set";
        let sp = ctx.savepoint();
        let r = match (set, a.name.as_str()) {
            (true, "create") => owner::create(ctx, &req, p, a),
            (true, "publish") => publish::publish(ctx, &req, p, a),
            (true, "retract") => publish::retract(ctx, &req, a),
            (true, "subscribe") => subscribe::subscribe(ctx, &req, p, a),
            (true, "unsubscribe") => subscribe::unsubscribe(ctx, &req, a),
            (_, "options") => subscribe::options(ctx, &req, a, set),
            (false, "items") => items::retrieve(ctx, &req, p, a),
            (false, "subscriptions") => subscribe::own_subscriptions(ctx, &req, a),
            (false, "affiliations") => subscribe::own_affiliations(ctx, &req, a),
            // §6.4: in this namespace, the default subscription options
            // (the node configuration's default is the owner's, §8.3).
            (false, "default") => subscribe::default_options(ctx, &req, a),
            _ => not_a_request(a, set).into(),
        };
        reply(ctx, iq, sp, r);
    }
}

impl IqHandler for PubSubOwner {
    fn namespace(&self) -> &'static str {
        ns::PUBSUB_OWNER
    }
    fn targets(&self) -> &'static [TargetKind] {
        TARGETS
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
        let Some(req) = Req::new(iq, t) else {
            return ctx.bounce(iq, StanzaCondition::ServiceUnavailable, None);
        };
        let Some(a) = p.elements().next() else {
            return ctx.bounce(iq, StanzaCondition::BadRequest, None);
        };
        if p.elements().filter(|e| e.ns == p.ns).count() > 1 {
            return ctx.bounce(
                iq,
                StanzaCondition::BadRequest,
                Some("one request at a time"),
            );
        }
        let set = iq.stype() == "set";
        let sp = ctx.savepoint();
        let r = match (set, a.name.as_str()) {
            (_, "configure") => owner::configure(ctx, &req, a, set),
            (false, "default") => owner::default_config(ctx, &req, ns::PUBSUB_OWNER),
            (true, "delete") => owner::delete(ctx, &req, a),
            (true, "purge") => owner::purge(ctx, &req, a),
            (_, "subscriptions") => manage::subscriptions(ctx, &req, a, set),
            (_, "affiliations") => manage::affiliations(ctx, &req, a, set),
            _ => not_a_request(a, set).into(),
        };
        reply(ctx, iq, sp, r);
    }
}

/// The answer to a child of `<pubsub/>` that is no request of its
/// namespace with this IQ type (a `<frob/>`, a get of `<publish/>`):
/// bad-request, as it does not conform to the namespace's schema (RFC 6120
/// §8.3.3.1). Not a bare feature-not-implemented: XEP-0060 answers that
/// condition only with an `<unsupported feature='...'/>` naming one of its
/// §10 features (§7.1.3, §6.1.3, ...), and each feature these requests
/// stand for is implemented.
fn not_a_request(a: &Element, set: bool) -> StanzaError {
    let kind = if set { "set" } else { "get" };
    StanzaError::with_text(
        StanzaCondition::BadRequest,
        format!("<{}/> is no pubsub {kind} request", a.name),
    )
}

/// Where a request was handled.
pub(crate) enum Handled {
    /// Here, with this answer.
    Here(Answer),
    /// Here, refused with this error, which carries this payload (the
    /// refused entries of a list, XEP-0060 §8.8.2.4, §8.9.2.4).
    Refused(StanzaError, Element),
    /// Handed on to the node's home shard, which answers.
    Elsewhere,
}

impl From<Answer> for Handled {
    fn from(a: Answer) -> Handled {
        Handled::Here(a)
    }
}

impl From<StanzaError> for Handled {
    fn from(e: StanzaError) -> Handled {
        Handled::Here(Err(e))
    }
}

/// A message to a PubSub service: the owner's answer to a subscription
/// authorization request (XEP-0060 §8.6).
pub(crate) fn message(ctx: &mut Ctx<'_>, s: Stanza) {
    subscribe::authorization_answer(ctx, s);
}
