//! XEP-0092 Software Version of the server.

use proto::stanza::Stanza;
use proto::{Element, ns};

use super::Ctx;
use super::iq::{Target, TargetKind};
use super::registry::IqHandler;

pub(crate) struct Version {
    pub version: String,
}

impl IqHandler for Version {
    fn namespace(&self) -> &'static str {
        ns::VERSION
    }
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::Server]
    }
    fn features(&self, t: TargetKind) -> &'static [&'static str] {
        match t {
            TargetKind::Server => &[ns::VERSION],
            _ => &[],
        }
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, _p: &Element, _t: &Target) {
        if iq.stype() != "get" {
            return ctx.bounce(iq, proto::error::StanzaCondition::BadRequest, None);
        }
        let q = Element::new("query", ns::VERSION)
            .with_child(Element::new("name", ns::VERSION).with_text("xmppd"))
            .with_child(Element::new("version", ns::VERSION).with_text(self.version.clone()));
        ctx.iq_result(iq, Some(&q));
    }
}
