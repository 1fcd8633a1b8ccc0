//! Where each stanza goes in its shard, by kind and address (RFC 6120
//! §10, RFC 6121 §8.5): the sender's shard sees a client's stanza first
//! ([`first_hop`]), then the recipient's shard handles it inbound. Also
//! binding and ending a session here (RFC 6120 §7).

use proto::stanza::{Kind, Stanza};
use proto::{FullJid, Jid};

use super::handler::Target;
use super::state::Session;
use super::{Ctx, iq, message, presence};
use crate::error::BindError;
use crate::session::SessionSink;

/// The bare JID whose shard sees a client's stanza first: the sender's for
/// presence, for IQs to the account or server, and for anything to a
/// domain that is not one of `served` (a MUC or PubSub service, a remote
/// server); the recipient's for messages and IQs to a local user, but
/// the sender's for those of a session with Message Carbons on
/// (`Trail::via_sender`: its account's other sessions get a copy of its
/// messages, and its IQs keep their place among them, RFC 6120 §10.1).
///
/// A service gets a client's presence through the sender's shard (which
/// keeps its directed presence), so it must get the client's messages
/// and IQs through it too: a groupchat message sent right after entering
/// a room would otherwise overtake the entering presence (RFC 6120 §10.1
/// asks for the client's order).
pub fn first_hop<'a>(s: &'a Stanza, from_bare: &'a str, served: &[String]) -> &'a str {
    match (s.kind, &s.to) {
        (_, None) => from_bare,
        (Kind::Presence, Some(_)) => from_bare,
        (Kind::Iq, Some(to)) if to.local().is_none() => from_bare,
        (_, Some(to)) if !served.iter().any(|d| d == to.domain()) => from_bare,
        (Kind::Message | Kind::Iq, Some(_)) if s.trail.via_sender => from_bare,
        (_, Some(to)) => to.bare_str(),
    }
}

pub(crate) fn bind(ctx: &mut Ctx<'_>, jid: FullJid, sink: SessionSink) -> Result<(), BindError> {
    let bare = jid.bare();
    match ctx.env.accounts.exists(&bare) {
        Ok(true) => {}
        _ => return Err(BindError::NoSuchUser),
    }
    // RFC 6120 §7.7.2.2: the new session replaces the old one.
    if let Some(old) = ctx.st.session(&jid).map(|s| s.sink.clone()) {
        old.send(crate::Outbound::Close(
            proto::error::StreamCondition::Conflict,
            Some("replaced by a new session".into()),
        ));
        let conn = old.conn_id();
        unbind(ctx, &jid, conn);
    }
    let session = Session {
        jid,
        sink,
        available: false,
        priority: 0,
        presence: None,
        interested: false,
        directed: Vec::new(),
        caps: None,
        sent_once: None,
        carbons: false,
    };
    // Exactly as many slots as sessions: a Session is a few hundred bytes,
    // and most users have one (a Vec's first growth would reserve four).
    ctx.st.changed(&session.jid);
    let sessions = &mut ctx.st.users.entry(bare).or_default().sessions;
    sessions.reserve_exact(1);
    sessions.push(session);
    Ok(())
}

/// A session ended: if it was available, contacts get unavailable presence
/// (RFC 6121 §4.5.2, also when the connection just dropped).
pub(crate) fn unbind(ctx: &mut Ctx<'_>, jid: &FullJid, conn_id: u64) {
    let Some(unacked) = ctx
        .st
        .session(jid)
        .filter(|s| s.sink.conn_id() == conn_id)
        .map(|s| s.sink.take_unacked())
    else {
        return;
    };
    ctx.st.sm_detached.remove(jid);
    presence::went_offline(ctx, jid);
    ctx.st.changed(jid);
    let bare = jid.bare();
    if let Some(u) = ctx.st.users.get_mut(&bare) {
        u.sessions.retain(|s| &s.jid != jid);
        if u.sessions.is_empty() {
            ctx.st.users.remove(&bare);
        }
    }
    if !unacked.is_empty() {
        super::sm::undelivered(ctx, jid, unacked);
    }
}

pub(crate) fn from_client(ctx: &mut Ctx<'_>, s: Stanza) {
    let Some(Jid::Full(from)) = s.from.clone() else {
        return;
    };
    // XEP-0280: the sender's shard copies what its sessions send: what
    // a session with carbons on sends (it comes here first), and what
    // any session sends to a service or another server (which always
    // does). A message from a session without carbons to a local user
    // goes to that user's shard and is not copied, even when that shard
    // is this one (the same rule wherever the accounts are).
    if s.kind == Kind::Message
        && ctx.is_home(from.bare_str())
        && (s.trail.via_sender
            || s.to
                .as_ref()
                .is_some_and(|t| t.local().is_none() || !ctx.cfg().serves(t.domain())))
    {
        super::carbons::sent(ctx, &from, &s);
    }
    // A message or IQ to a service or a remote domain came here first
    // (see `first_hop`): on to its own shard, behind what came before it.
    if s.kind != Kind::Presence
        && let Some(to) = &s.to
        && to.local().is_some()
        && !ctx.is_home(to.bare_str())
    {
        return ctx.route(s);
    }
    match s.kind {
        Kind::Presence => presence::outbound(ctx, &from, s),
        Kind::Message => {
            // A message with no 'to' is for the sender's own account (RFC 6120 §10.3.1).
            let s = match s.to {
                Some(_) => s,
                None => Stanza {
                    to: Some(Jid::Bare(from.bare())),
                    ..s
                },
            };
            inbound(ctx, s)
        }
        Kind::Iq => match &s.to {
            None => iq::handle(ctx, s, Target::OwnAccount),
            Some(Jid::Bare(b)) if b.as_str() == from.bare_str() => {
                iq::handle(ctx, s, Target::OwnAccount)
            }
            Some(to) if to.local().is_none() && to.resource().is_none() => {
                if ctx.cfg().serves(to.domain()) {
                    iq::handle(ctx, s, Target::Server)
                } else if ctx.cfg().is_pubsub_service(to.domain()) {
                    let service = to.bare();
                    iq::handle(ctx, s, Target::PubSub(service))
                } else if ctx.cfg().is_muc_service(to.domain()) {
                    super::muc::inbound(ctx, s)
                } else {
                    // Another server (or none: then the sender is told).
                    ctx.route(s)
                }
            }
            Some(_) => inbound(ctx, s),
        },
    }
}

/// A fan-out of `s` (without 'to') to recipients of this shard.
pub(crate) fn notify(ctx: &mut Ctx<'_>, s: &Stanza, recipients: &[Jid], interest: Option<&str>) {
    if s.kind == Kind::Presence
        && s.stype() == "unavailable"
        && s.from
            .as_ref()
            .is_some_and(|f| ctx.cfg().is_muc_service(f.domain()))
    {
        presence::left_room(ctx, s, recipients);
    }
    message::fan_in(ctx, s, recipients, interest);
}

/// Inbound processing at the recipient's shard (RFC 6121 §8.5).
pub(crate) fn inbound(ctx: &mut Ctx<'_>, s: Stanza) {
    let Some(to) = s.to.clone() else {
        return;
    };
    use proto::error::StanzaCondition as C;
    if ctx.cfg().is_component(to.domain()) {
        // XEP-0114: everything at a component's domain is the component's,
        // held by the shard of the domain.
        if !ctx.is_home(to.domain()) {
            return ctx.route(s);
        }
        return super::component::inbound(ctx, s);
    }
    if to.local().is_none() && ctx.cfg().is_pubsub_service(to.domain()) {
        // A PubSub service of this server (XEP-0060).
        let service = to.bare();
        match s.kind {
            Kind::Iq => iq::handle(ctx, s, Target::PubSub(service)),
            Kind::Message => super::pubsub::message(ctx, s),
            Kind::Presence => {}
        }
        return;
    }
    if ctx.cfg().is_muc_service(to.domain()) {
        // A room of a Multi-User Chat service of this server (XEP-0045).
        return super::muc::inbound(ctx, s);
    }
    if !ctx.cfg().serves(to.domain()) {
        // A remote domain: on to its server over server-to-server (or,
        // with federation off, its sender is told it cannot be reached).
        return ctx.route(s);
    }
    if to.local().is_none() {
        // Addressed to the server or one of its domains.
        if s.kind == Kind::Iq {
            iq::handle(ctx, s, Target::Server)
        }
        return;
    }
    let user = to.bare();
    let exists =
        !ctx.st.sessions(&user).is_empty() || ctx.env.accounts.exists(&user).unwrap_or(false);
    if !exists {
        // RFC 6121 §8.5.1: service-unavailable, but a headline is dropped
        // like everywhere else it cannot be delivered.
        match s.kind {
            Kind::Presence => presence::to_unknown_user(ctx, &s),
            Kind::Message if s.stype() == "headline" => {}
            _ => ctx.bounce(&s, C::ServiceUnavailable, None),
        }
        return;
    }
    match s.kind {
        Kind::Message => message::inbound(ctx, &user, s),
        Kind::Presence => presence::inbound(ctx, &user, s),
        Kind::Iq => match &to {
            Jid::Full(full) => iq::to_resource(ctx, full, s),
            Jid::Bare(_) => iq::handle(ctx, s, Target::Account(user)),
        },
    }
}
