//! XEP-0030 Service Discovery for the server and for accounts.

use proto::error::StanzaCondition;
use proto::stanza::Stanza;
use proto::{Element, ns};

use super::Ctx;
use super::iq::{Target, TargetKind};
use super::registry::IqHandler;

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
        if p.attr("node").is_some() {
            return ctx.bounce(iq, StanzaCondition::ItemNotFound, None);
        }
        let mut q = Element::new("query", ns::DISCO_INFO);
        match t {
            Target::Server => q.push(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "server")
                    .with_attr("type", "im")
                    .with_attr("name", "xmppd"),
            ),
            Target::OwnAccount | Target::Account(_) => q.push(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "account")
                    .with_attr("type", "registered"),
            ),
        }
        let features = ctx.sh.registry.features(t.kind());
        for f in features {
            q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        ctx.iq_result(iq, Some(&q));
    }
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
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, _t: &Target) {
        if iq.stype() != "get" {
            return ctx.bounce(iq, StanzaCondition::BadRequest, None);
        }
        if p.attr("node").is_some() {
            return ctx.bounce(iq, StanzaCondition::ItemNotFound, None);
        }
        // No components or services yet: an empty list.
        ctx.iq_result(iq, Some(&Element::new("query", ns::DISCO_ITEMS)));
    }
}
