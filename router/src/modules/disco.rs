//! XEP-0030 Service Discovery for the server and for accounts; an
//! account's nodes and items are its PEP nodes (`pubsub/disco.rs`).

use proto::error::StanzaCondition;
use proto::stanza::Stanza;
use proto::{Element, ns};

use super::Ctx;
use super::handler::{IqHandler, Target, TargetKind};

pub(crate) struct DiscoInfo;
pub(crate) struct DiscoItems;

const ALL: &[TargetKind] = &[
    TargetKind::Server,
    TargetKind::OwnAccount,
    TargetKind::Account,
];

impl IqHandler for DiscoInfo {
    fn namespace(&self) -> &'static str {
        ns::DISCO_INFO
    }
    fn targets(&self) -> &'static [TargetKind] {
        ALL
    }
    fn features(&self, _t: TargetKind) -> &'static [&'static str] {
        &[ns::DISCO_INFO]
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
        if iq.stype() != "get" {
            return ctx.bounce(iq, StanzaCondition::BadRequest, None);
        }
        if let Target::Server = t {
            // Also under the node its capabilities name (XEP-0115 §6.2).
            let mut q = server_info(&ctx.env.registry.features(t.kind()));
            if let Some(node) = p.attr("node") {
                let ver = proto::caps::ver("sha-1", &q).unwrap_or_default();
                if node != format!("{CAPS_NODE}#{ver}") {
                    return ctx.bounce(iq, StanzaCondition::ItemNotFound, None);
                }
                q.set_attr("node", node);
            }
            return ctx.iq_result(iq, Some(&q));
        }
        // A node of the account is one of its PEP nodes (XEP-0163 §6,
        // XEP-0060 §5.3).
        if p.attr("node").is_some() {
            return super::pubsub::disco_node_info(ctx, iq, p, t);
        }
        let mut q = Element::new("query", ns::DISCO_INFO);
        match t {
            Target::Server => {}
            Target::OwnAccount | Target::Account(_) | Target::PubSub(_) => {
                q.push(
                    Element::new("identity", ns::DISCO_INFO)
                        .with_attr("category", "account")
                        .with_attr("type", "registered"),
                );
                // XEP-0163 §4: every account is a PEP service.
                q.push(
                    Element::new("identity", ns::DISCO_INFO)
                        .with_attr("category", "pubsub")
                        .with_attr("type", "pep"),
                );
            }
        }
        let features = ctx.env.registry.features(t.kind());
        for f in features {
            q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        ctx.iq_result(iq, Some(&q));
    }
}

/// The server's disco#info answer (XEP-0030 §3.1) with these features:
/// also what its entity capabilities hash (XEP-0115 §6.3).
pub(crate) fn server_info(features: &[&str]) -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO).with_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "server")
            .with_attr("type", "im")
            .with_attr("name", "xmppd"),
    );
    for f in features {
        q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", *f));
    }
    q
}

/// The software URI the server's capabilities name (XEP-0115 `node`).
pub(crate) const CAPS_NODE: &str = "https://github.com/xmppd/xmppd";

/// The `<c/>` stream feature announcing the server's capabilities
/// (XEP-0115 §6.3), hashed from its disco#info answer.
pub(crate) fn server_caps(features: &[&str]) -> String {
    let ver = proto::caps::ver("sha-1", &server_info(features)).unwrap_or_default();
    format!(
        "<c xmlns='{}' hash='sha-1' node='{CAPS_NODE}' ver='{}'/>",
        ns::CAPS,
        proto::element::escape(&ver)
    )
}

impl IqHandler for DiscoItems {
    fn namespace(&self) -> &'static str {
        ns::DISCO_ITEMS
    }
    fn targets(&self) -> &'static [TargetKind] {
        ALL
    }
    fn features(&self, _t: TargetKind) -> &'static [&'static str] {
        &[ns::DISCO_ITEMS]
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
        if iq.stype() != "get" {
            return ctx.bounce(iq, StanzaCondition::BadRequest, None);
        }
        // An account's items are its PEP nodes, those the requester may
        // see (XEP-0163 §6.2, XEP-0060 §5.2), and a node's its items.
        if matches!(t, Target::OwnAccount | Target::Account(_)) {
            return super::pubsub::disco_items(ctx, iq, p, t);
        }
        if p.attr("node").is_some() {
            return ctx.bounce(iq, StanzaCondition::ItemNotFound, None);
        }
        // The server's services: the PubSub service of the domain asked.
        let mut q = Element::new("query", ns::DISCO_ITEMS);
        if let Target::Server = t {
            let domain = iq.to.as_ref().map(|j| j.domain().to_string());
            let domain = domain.or_else(|| iq.from.as_ref().map(|j| j.domain().to_string()));
            if let Some(d) = domain
                && let Some(i) = ctx.cfg().domains.iter().position(|x| *x == d)
                && let Some(service) = ctx.cfg().pubsub_services().get(i)
            {
                q.push(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", service.clone())
                        .with_attr("name", "Publish-Subscribe"),
                );
            }
            if let Some(d) = iq.to.as_ref().map(|j| j.domain())
                && let Some(service) = ctx.cfg().muc_service(d)
            {
                q.push(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", service)
                        .with_attr("name", "Chatrooms"),
                );
            }
            // External components (XEP-0114) under the domain asked (all
            // of them on a server of one domain).
            if let Some(d) = iq.to.as_ref().map(|j| j.domain()) {
                let cfg = ctx.cfg();
                let suffix = format!(".{d}");
                for c in &cfg.components {
                    if c.ends_with(&suffix) || cfg.domains.len() == 1 {
                        q.push(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", c.clone()));
                    }
                }
            }
        }
        ctx.iq_result(iq, Some(&q));
    }
}
