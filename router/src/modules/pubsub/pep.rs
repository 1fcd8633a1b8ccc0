//! PEP (XEP-0163): a PubSub service on every account's bare JID. Its nodes
//! live with the account (their home is its bare JID), are created on the
//! owner's first publish with presence access by default, and notify the
//! account's own resources besides the node's subscribers.

use proto::Jid;
use proto::error::StanzaError;

use super::{Node, Req};
use crate::modules::Ctx;

/// Add the PEP-specific recipients of a node's notifications: the owning
/// account (each of its available resources gets them, XEP-0163 §4.3).
pub(crate) fn add_recipients(
    _ctx: &Ctx<'_>,
    req: &Req<'_>,
    _node: &Node,
    out: &mut Vec<Jid>,
) -> Result<(), StanzaError> {
    out.push(Jid::Bare(req.service.clone()));
    Ok(())
}
