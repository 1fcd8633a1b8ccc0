//! External components (XEP-0114): every stanza to an address at a
//! component's domain goes, as it is, to the connection of that component.
//! The shard of the domain (the key every such stanza is routed by) holds
//! the connection.

use proto::error::StanzaCondition;
use proto::stanza::{Kind, Stanza};

use super::Ctx;
use crate::session::Outbound;

pub(crate) fn inbound(ctx: &mut Ctx<'_>, s: Stanza) {
    let Some(to) = &s.to else { return };
    let Some(sink) = ctx.st.components.get(to.domain()).cloned() else {
        if s.kind != Kind::Presence {
            ctx.bounce(
                &s,
                StanzaCondition::ServiceUnavailable,
                Some("the component is not connected"),
            );
        }
        return;
    };
    // Both addresses written out, and the content namespace left to the
    // component's stream (`jabber:component:accept`).
    let out = s.clone().renamespaced(proto::ns::CLIENT, None);
    let bytes = out.rewrite(out.from.as_ref(), out.to.as_ref());
    if !ctx.send(&sink, Outbound::Stanza(bytes)) && s.kind != Kind::Presence {
        ctx.bounce(
            &s,
            StanzaCondition::ServiceUnavailable,
            Some("the component is not connected"),
        );
    }
}
