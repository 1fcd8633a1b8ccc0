//! Stream management (XEP-0198) at the user's shard: the session's sink
//! keeps what its client has not acknowledged (`crate::session`), so the
//! session outlives its connection, and its edge, for a while. Here: the
//! requests of the edges (enable, acknowledgements, resumption, a lost
//! connection), the end of sessions no client resumed in time, and what
//! becomes of the stanzas their clients never acknowledged.

use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::error::StanzaCondition;
use proto::stanza::{Kind, Stanza};
use proto::{BareJid, FullJid, Jid};

use super::Ctx;
use crate::session::{Outbound, ResumeRefused, SessionSink};

/// Sessions of one account that may wait for a resumption at once.
pub const MAX_WAITING_PER_ACCOUNT: usize = 10;

/// The session `jid` bound through connection `conn_id`, if it still is.
fn sink_of(ctx: &Ctx<'_>, jid: &FullJid, conn_id: u64) -> Option<SessionSink> {
    ctx.st
        .session(jid)
        .map(|s| s.sink.clone())
        .filter(|s| s.conn_id() == conn_id)
}

/// Settings of one session's stream management, chosen by its edge.
#[derive(Debug, Clone)]
pub struct SmEnable {
    pub id: String,
    pub resume: bool,
    pub max_unacked: usize,
    /// How long the session waits for a resumption.
    pub timeout: Duration,
}

/// XEP-0198 §3. False if there is no such session (or it has it already).
pub(crate) fn enable(ctx: &mut Ctx<'_>, jid: &FullJid, conn_id: u64, e: SmEnable) -> bool {
    let Some(sink) = sink_of(ctx, jid, conn_id) else {
        return false;
    };
    sink.sm_enable(e.id, e.resume, e.max_unacked, e.timeout)
}

pub(crate) fn ack(ctx: &mut Ctx<'_>, jid: &FullJid, conn_id: u64, h: u32, handled: u32) {
    if let Some(sink) = sink_of(ctx, jid, conn_id) {
        sink.sm_ack(h, handled);
    }
}

/// The connection of a resumable session is gone: the session stays, its
/// presence too, while it waits for the client (XEP-0198 §5). Otherwise
/// it ends here.
pub(crate) fn detach(ctx: &mut Ctx<'_>, jid: &FullJid, conn_id: u64, handled: Option<u32>) {
    let Some(sink) = sink_of(ctx, jid, conn_id) else {
        return;
    };
    if sink.sm_detach(conn_id, handled) {
        ctx.st.sm_detached.insert(jid.clone());
        // A cluster replicates that it waits (see `replicated`).
        ctx.st.changed(jid);
        // One account keeps at most a few sessions waiting: beyond, the
        // one waiting longest ends (what it holds goes offline).
        let waiting: Vec<(Instant, FullJid, u64)> = ctx
            .st
            .sessions_of(jid.bare_str())
            .iter()
            .filter_map(|s| {
                let t = s.sink.sm_info()?.detached_at?;
                Some((t, s.jid.clone(), s.sink.conn_id()))
            })
            .collect();
        if waiting.len() > MAX_WAITING_PER_ACCOUNT
            && let Some((_, oldest, conn)) = waiting.into_iter().min_by_key(|w| w.0)
        {
            tracing::debug!(session = %oldest, "too many sessions of one account waiting; the oldest ends");
            super::dispatch::unbind(ctx, &oldest, conn);
        }
        tracing::debug!(session = %jid, "session waits for a resumption");
    } else {
        super::dispatch::unbind(ctx, jid, conn_id);
    }
}

/// XEP-0198 §5: the user's session with resumption id `previd` goes on
/// on `sink`'s connection. The session's full JID, the count of its
/// client's stanzas handled, and whether it has Message Carbons on (its
/// new connection routes by it).
pub(crate) fn resume(
    ctx: &mut Ctx<'_>,
    user: &BareJid,
    previd: &str,
    h: u32,
    sink: SessionSink,
) -> Result<(FullJid, u32, bool), ResumeRefused> {
    let Some(session) = ctx
        .st
        .sessions(user)
        .iter()
        .find(|s| s.sink.sm_info().is_some_and(|i| i.id == previd))
    else {
        return Err(ResumeRefused::NotFound);
    };
    let (jid, carbons) = (session.jid.clone(), session.carbons);
    let handled = session.sink.sm_resume(h, sink)?;
    ctx.st.sm_detached.remove(&jid);
    // Its connection changed: a cluster replicates the new one.
    ctx.st.changed(&jid);
    tracing::debug!(session = %jid, "session resumed");
    Ok((jid, handled, carbons))
}

/// Bytes the edge answered the client with itself (a ping's result, an
/// error), sent through the session so that they are counted and kept
/// like every other stanza.
pub(crate) fn echo(ctx: &mut Ctx<'_>, jid: &FullJid, conn_id: u64, bytes: Bytes) {
    if let Some(sink) = sink_of(ctx, jid, conn_id) {
        ctx.send(&sink, Outbound::Stanza(bytes));
    }
}

/// End the sessions that waited for a resumption longer than they may.
pub(crate) fn sweep(ctx: &mut Ctx<'_>, now: Instant) {
    if ctx.st.sm_detached.is_empty() {
        return;
    }
    let expired: Vec<(FullJid, u64)> = ctx
        .st
        .sm_detached
        .iter()
        .filter_map(|jid| {
            let s = ctx.st.session(jid)?;
            let info = s.sink.sm_info()?;
            let waited = info.detached_at.is_some_and(|t| now >= t + info.timeout);
            // A session nobody reads must not keep stanzas without bound.
            let full =
                info.unacked > info.max_unacked || info.bytes > crate::session::MAX_UNACKED_BYTES;
            (waited || full).then(|| (jid.clone(), s.sink.conn_id()))
        })
        .collect();
    // Sessions gone otherwise.
    ctx.st
        .sm_detached
        .retain(|j| ctx.st.users.contains_key(j.bare_str()));
    for (jid, conn) in expired {
        tracing::debug!(session = %jid, "no resumption came; the session ends");
        super::dispatch::unbind(ctx, &jid, conn);
    }
}

/// The node stops (or hands the shard on): the sessions that wait for a
/// resumption end now, their unacknowledged messages going to offline
/// storage, as no resumption can find them afterwards (they live in this
/// process only). Without a cluster, every session with stream
/// management ends so (its connection is closing with the server).
pub(crate) fn end_all(ctx: &mut Ctx<'_>, clustered: bool) {
    let ending: Vec<(FullJid, u64)> = ctx
        .st
        .users
        .values()
        .flat_map(|u| &u.sessions)
        .filter(|s| {
            s.sink
                .sm_info()
                .is_some_and(|i| i.detached_at.is_some() || !clustered)
        })
        .map(|s| (s.jid.clone(), s.sink.conn_id()))
        .collect();
    if !ending.is_empty() {
        tracing::info!(
            sessions = ending.len(),
            "sessions with stream management end with the node"
        );
    }
    for (jid, conn) in ending {
        super::dispatch::unbind(ctx, &jid, conn);
    }
}

/// A session with stream management ended for good: what its client did
/// not acknowledge is handled as if never delivered (XEP-0198 §4, RFC
/// 6121 §8.5.3.2.1): a message goes to the user's other resources or to
/// offline storage, a groupchat message and an IQ request are answered
/// with an error, presence and the rest are let go. Called after the
/// session is removed.
pub(crate) fn undelivered(ctx: &mut Ctx<'_>, jid: &FullJid, unacked: Vec<Outbound>) {
    let bare = Jid::Bare(jid.bare());
    for out in unacked {
        let raw = match out {
            Outbound::Stanza(b) | Outbound::Addressed(b) => b,
            _ => continue,
        };
        let Ok(s) = Stanza::parse(&raw) else { continue };
        match s.kind {
            Kind::Message => {
                // RFC 6121 §8.5.3.2.1: groupchat to a resource that is
                // gone is answered (a room learns its occupant left);
                // a headline or an error is dropped.
                if s.stype() == "groupchat" {
                    let s = s.restamped(s.from.clone(), Some(Jid::Full(jid.clone())));
                    ctx.bounce(&s, StanzaCondition::ServiceUnavailable, None);
                    continue;
                }
                if matches!(s.stype(), "headline" | "error") {
                    continue;
                }
                // From the account's own bare JID: a copy made for this
                // session alone (XEP-0280 carbons), not a message to it.
                if s.from
                    .as_ref()
                    .is_some_and(|f| f.as_str() == jid.bare_str())
                {
                    continue;
                }
                let from = s.from.clone();
                ctx.route(s.restamped(from, Some(bare.clone())));
            }
            Kind::Iq if matches!(s.stype(), "get" | "set") => {
                let s = s.restamped(s.from.clone(), Some(Jid::Full(jid.clone())));
                ctx.bounce(
                    &s,
                    StanzaCondition::ServiceUnavailable,
                    Some("the session ended before the client took this"),
                );
            }
            _ => {}
        }
    }
}
