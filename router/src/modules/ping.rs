//! XEP-0199 XMPP Ping, answered for the server and for the sender's own account.

use proto::stanza::Stanza;
use proto::{Element, ns};

use super::Ctx;
use super::handler::{IqHandler, Target, TargetKind};

pub(crate) struct Ping;

impl IqHandler for Ping {
    fn namespace(&self) -> &'static str {
        ns::PING
    }
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::Server, TargetKind::OwnAccount]
    }
    fn features(&self, t: TargetKind) -> &'static [&'static str] {
        // Answered for the server and the asker's own account; a ping to
        // another account's bare JID is not answered by the server.
        match t {
            TargetKind::Server | TargetKind::OwnAccount => &[ns::PING],
            _ => &[],
        }
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, _p: &Element, _t: &Target) {
        if iq.stype() == "get" {
            ctx.iq_result(iq, None);
        } else {
            ctx.bounce(iq, proto::error::StanzaCondition::BadRequest, None);
        }
    }
}
