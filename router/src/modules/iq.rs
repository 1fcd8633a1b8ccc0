//! IQ dispatch (RFC 6120 §8.2.3, §10.3.3): requests to the server or to an
//! account are answered by the handler registered for the payload's
//! namespace, requests to a resource are delivered to it, and anything
//! unhandled gets `service-unavailable` (RFC 6120 §8.4).

use proto::error::StanzaCondition;
use proto::stanza::Stanza;
use proto::{BareJid, FullJid, ns};

use super::Ctx;
use crate::session::Outbound;

/// Who an IQ is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A domain served here.
    Server,
    /// The sender's own account (no 'to', or its bare JID).
    OwnAccount,
    /// Another local account, by bare JID.
    Account(BareJid),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TargetKind {
    Server,
    OwnAccount,
    Account,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [
        TargetKind::Server,
        TargetKind::OwnAccount,
        TargetKind::Account,
    ];

    pub fn index(self) -> usize {
        match self {
            TargetKind::Server => 0,
            TargetKind::OwnAccount => 1,
            TargetKind::Account => 2,
        }
    }
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Server => TargetKind::Server,
            Target::OwnAccount => TargetKind::OwnAccount,
            Target::Account(_) => TargetKind::Account,
        }
    }
}

pub(crate) fn handle(ctx: &mut Ctx<'_>, s: Stanza, target: Target) {
    if !matches!(s.stype(), "get" | "set") {
        // Results and errors for the server are consumed here.
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
    let handler = ctx.sh.registry.get(&payload.ns, target.kind()).cloned();
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
