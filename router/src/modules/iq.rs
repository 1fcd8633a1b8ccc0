//! IQ dispatch (RFC 6120 §8.2.3, §10.3.3): requests to the server or to an
//! account are answered by the handler registered for the payload's
//! namespace, requests to a resource are delivered to it, and anything
//! unhandled gets `service-unavailable` (RFC 6120 §8.4).

use proto::error::StanzaCondition;
use proto::stanza::Stanza;
use proto::{FullJid, ns};

use super::Ctx;
use super::handler::Target;
use crate::session::Outbound;

pub(crate) fn handle(ctx: &mut Ctx<'_>, s: Stanza, target: Target) {
    if !matches!(s.stype(), "get" | "set") {
        // Results and errors for the server are consumed here (answers
        // to the capabilities questions of `caps.rs` among them).
        super::caps::on_answer(ctx, &s);
        return;
    }
    let el = match s.element(ns::CLIENT) {
        Ok(el) => el,
        Err(_) => return ctx.bounce(&s, StanzaCondition::BadRequest, None),
    };
    let payload = match proto::stanza::iq_payload(&el) {
        Ok(p) => p,
        Err(e) => return ctx.bounce_with(&s, &e),
    };
    let handler = ctx.env.registry.get(&payload.ns, target.kind()).cloned();
    match handler {
        Some(h) => h.handle(ctx, &s, payload, &target),
        None => ctx.bounce(&s, StanzaCondition::ServiceUnavailable, None),
    }
}

/// An IQ to a full JID: delivered if the resource is bound (RFC 6121 §8.5.3.1),
/// else get/set are answered with service-unavailable.
pub(crate) fn to_resource(ctx: &mut Ctx<'_>, full: &FullJid, s: Stanza) {
    if let Some(sess) = ctx.st.session(full) {
        ctx.send(&sess.sink, Outbound::Stanza(s.raw.clone()));
        return;
    }
    if matches!(s.stype(), "get" | "set") {
        ctx.bounce(&s, StanzaCondition::ServiceUnavailable, None);
    }
}
