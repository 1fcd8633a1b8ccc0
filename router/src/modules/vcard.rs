//! XEP-0054 vcard-temp: a user stores one vCard; anyone may read it.

use proto::error::StanzaCondition;
use proto::stanza::Stanza;
use proto::{Element, Jid, ns};

use super::Ctx;
use super::handler::{IqHandler, Target, TargetKind};

pub(crate) struct VCard;

impl IqHandler for VCard {
    fn namespace(&self) -> &'static str {
        ns::VCARD
    }
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::OwnAccount, TargetKind::Account]
    }
    fn features(&self, t: TargetKind) -> &'static [&'static str] {
        // The server stores vCards (XEP-0054 §3), the account's own and
        // others' are served; a PubSub service has none.
        match t {
            TargetKind::PubSub => &[],
            _ => &[ns::VCARD],
        }
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
        let Some(from) = iq.from.as_ref() else { return };
        let owner = match t {
            Target::Account(b) => b.clone(),
            _ => from.bare(),
        };
        if iq.stype() == "get" {
            return match ctx.store().vcards().get(&owner) {
                Ok(Some(raw)) => match Element::parse(&raw, ns::CLIENT, &[]) {
                    Ok(v) => ctx.iq_result(iq, Some(&v)),
                    Err(_) => ctx.bounce(iq, StanzaCondition::InternalServerError, None),
                },
                Ok(None) => ctx.iq_result(iq, Some(&Element::new("vCard", ns::VCARD))),
                Err(_) => ctx.bounce(iq, StanzaCondition::InternalServerError, None),
            };
        }
        if matches!(t, Target::Account(_)) || !matches!(from, Jid::Full(_)) {
            return ctx.bounce(
                iq,
                StanzaCondition::Forbidden,
                Some("you can only set your own vCard"),
            );
        }
        if p.name != "vCard" {
            return ctx.bounce(iq, StanzaCondition::BadRequest, None);
        }
        let xml = p.to_xml(ns::CLIENT);
        // XEP-0054 sets no size; a server limit is a criterion of the server
        // the request does not meet, `not-acceptable` (RFC 6120 §8.3.3.12,
        // type modify: a smaller vCard, e.g. a smaller photo, is accepted).
        let max = ctx.cfg().max_vcard_bytes;
        if xml.len() > max {
            let text = format!("the vCard is larger than {max} bytes");
            return ctx.bounce(iq, StanzaCondition::NotAcceptable, Some(&text));
        }
        let stored = if p.children.is_empty() {
            None
        } else {
            Some(xml.as_bytes())
        };
        let sh = ctx.env;
        match sh.store.0.vcards().set_in(&mut ctx.writes, &owner, stored) {
            Ok(()) => ctx.iq_result(iq, None),
            Err(_) => ctx.bounce(iq, StanzaCondition::InternalServerError, None),
        }
    }
}
