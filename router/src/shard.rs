//! A user shard: one task owning the live sessions and presence of the users
//! that hash to it, applying every stanza for them in order.

use std::collections::{HashMap, HashSet};

use proto::stanza::{Kind, Stanza};
use proto::{BareJid, FullJid, Jid};
use tokio::sync::{mpsc, oneshot};

use crate::core::{BindError, Shared};
use crate::modules::{Ctx, iq, message, presence};
use crate::session::{EdgeLink, SessionSink};
use std::sync::Arc;

/// What a shard is asked to do.
pub(crate) enum ShardMsg {
    Bind {
        jid: FullJid,
        sink: SessionSink,
        reply: oneshot::Sender<Result<(), BindError>>,
    },
    Unbind {
        jid: FullJid,
        conn_id: u64,
    },
    /// A stanza from a client of this core, at its first hop, and what to
    /// tell its edge once it is processed.
    FromClient(Box<Stanza>, Option<crate::session::Confirm>),
    /// A stanza for a user of this shard (inbound processing).
    Inbound(Box<Stanza>),
    /// Run a planned change on the shard (an account change from outside
    /// a stanza): the closure plans writes into the context and answers
    /// through `Ctx::after_commit`.
    Exec(Box<dyn FnOnce(&mut Ctx<'_>) + Send>),
    /// Bound sessions: all, or those bound through one edge's link.
    Count {
        via: Option<Arc<EdgeLink>>,
        reply: oneshot::Sender<usize>,
    },
    /// A remote edge's stream ended: end the sessions bound through it.
    DropEdge {
        link: Arc<EdgeLink>,
        reply: oneshot::Sender<()>,
    },
    /// Process everything queued, then answer.
    Stop {
        reply: oneshot::Sender<()>,
    },
    /// A session of this user was bound at a core node that died.
    Lost {
        jid: FullJid,
        session: u64,
        /// Whether the shard has the session (replicated here, so it
        /// goes on).
        reply: oneshot::Sender<bool>,
    },
    /// This node no longer leads the shard: its sessions here end (their
    /// clients reconnect and bind at the new leader).
    Demoted,
    /// End the task (after the last `Stop`): it drops its share of the
    /// core, so the store can close.
    Exit,
}

/// One bound resource.
#[derive(Debug)]
pub(crate) struct Session {
    pub jid: FullJid,
    pub sink: SessionSink,
    /// Sent available presence and not since unavailable (RFC 6121 §4.2).
    pub available: bool,
    pub priority: i32,
    /// The last presence broadcast, `from` stamped, without `to`.
    pub presence: Option<Stanza>,
    /// Asked for the roster: gets roster pushes (RFC 6121 §2.1.6).
    pub interested: bool,
    /// Directed presence sent to entities outside the roster (RFC 6121 §4.6).
    pub directed: Vec<Jid>,
}

#[derive(Debug, Default)]
pub(crate) struct UserState {
    pub sessions: Vec<Session>,
}

#[derive(Debug, Default)]
pub(crate) struct ShardState {
    pub users: HashMap<BareJid, UserState>,
    /// In a cluster: sessions changed since the last commit (their
    /// records go into the shard's log, see `sessions.rs`).
    pub dirty: Option<HashSet<FullJid>>,
    /// In a cluster: the Raft term whose sessions are loaded here (this
    /// node leads the shard in it).
    pub term: Option<u64>,
}

impl ShardState {
    pub fn sessions(&self, user: &BareJid) -> &[Session] {
        self.users
            .get(user)
            .map(|u| u.sessions.as_slice())
            .unwrap_or(&[])
    }

    pub fn session_mut(&mut self, jid: &FullJid) -> Option<&mut Session> {
        self.changed(jid);
        self.users
            .get_mut(&jid.bare())?
            .sessions
            .iter_mut()
            .find(|s| &s.jid == jid)
    }

    /// Note that the session `jid` changed (a cluster replicates it).
    pub fn changed(&mut self, jid: &FullJid) {
        if let Some(d) = &mut self.dirty {
            d.insert(jid.clone());
        }
    }

    /// Forget a user and their sessions.
    pub fn remove_user(&mut self, user: &BareJid) -> Option<UserState> {
        let gone = self.users.remove(user)?;
        for s in &gone.sessions {
            self.changed(&s.jid);
        }
        Some(gone)
    }

    pub fn session(&self, jid: &FullJid) -> Option<&Session> {
        self.users
            .get(&jid.bare())?
            .sessions
            .iter()
            .find(|s| &s.jid == jid)
    }
}

/// The bare JID whose shard sees a client's stanza first: the sender's for
/// presence and for IQs to the account or server, the recipient's for
/// messages and IQs to others.
pub fn first_hop<'a>(s: &'a Stanza, from_bare: &'a str) -> &'a str {
    match (s.kind, &s.to) {
        (_, None) => from_bare,
        (Kind::Presence, Some(_)) => from_bare,
        (Kind::Iq, Some(to)) if to.local().is_none() => from_bare,
        (_, Some(to)) => to.bare_str(),
    }
}

/// Messages handled together and committed with one Raft entry, at most.
const GROUP: usize = 64;

/// A message stanza: its handling reads nothing that an earlier message of
/// the same group may have written, except through the pending batch
/// (offline queue counters), so consecutive ones can share one commit.
fn groupable(m: &ShardMsg) -> bool {
    match m {
        ShardMsg::FromClient(s, _) | ShardMsg::Inbound(s) => s.kind == Kind::Message,
        _ => false,
    }
}

pub(crate) async fn run(
    index: usize,
    shared: Arc<Shared>,
    mut edge: mpsc::Receiver<ShardMsg>,
    mut internal: mpsc::UnboundedReceiver<ShardMsg>,
) {
    let mut st = ShardState::default();
    if shared.clustered() {
        st.dirty = Some(HashSet::new());
    }
    let mut next: Option<ShardMsg> = None;
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => tokio::select! {
                biased;
                Some(m) = internal.recv() => m,
                Some(m) = edge.recv() => m,
                else => break,
            },
        };
        match msg {
            ShardMsg::Stop { reply } => {
                while let Ok(m) = internal.try_recv() {
                    step(&mut st, &shared, index, m, Vec::new()).await;
                }
                let _ = reply.send(());
                continue;
            }
            ShardMsg::Exit => break,
            _ => {}
        }
        // Group commit: messages waiting behind this one are handled with
        // it and their writes (offline storage) committed together.
        let mut more = Vec::new();
        if groupable(&msg) {
            while more.len() + 1 < GROUP {
                let m = match internal.try_recv() {
                    Ok(m) => m,
                    Err(_) => match edge.try_recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    },
                };
                if groupable(&m) {
                    more.push(m);
                } else {
                    next = Some(m);
                    break;
                }
            }
        }
        step(&mut st, &shared, index, msg, more).await;
    }
    tracing::debug!(shard = index, "shard stopped");
}

/// Handle `first` and then `more`; if they planned writes, commit them
/// through the shard's Raft group (one entry) before letting out what
/// waits on them. The shard takes its next message only after the
/// commit, so every handler reads the effects of all earlier ones.
async fn step(
    st: &mut ShardState,
    shared: &Shared,
    index: usize,
    first: ShardMsg,
    more: Vec<ShardMsg>,
) {
    // Writes are planned at the shard's leader, whose state is the one
    // they were planned from (account changes are handed on to it); a
    // planned change run here while the lead moves is still handed to the
    // new leader's log rather than lost.
    let forward = matches!(first, ShardMsg::Exec(_));
    // Each confirmation, and whether its stanza came after the first
    // write (its effects wait for the commit).
    let mut confirms = Vec::new();
    // Stanzas whose effects wait for the commit, to hand on to the new
    // leader should this node lose the lead before the commit.
    let mut again: Vec<ShardMsg> = Vec::new();
    // A node that has just come to lead the shard serves its replicated
    // sessions first.
    let orphans = if shared.clustered() {
        crate::sessions::ensure_loaded(st, shared, index).await
    } else {
        Vec::new()
    };
    let mut ctx = Ctx::new(st, shared);
    for (jid, session) in orphans {
        unbind(&mut ctx, &jid, session);
    }
    for mut msg in std::iter::once(first).chain(more) {
        let confirm = match &mut msg {
            ShardMsg::FromClient(_, c) => c.take(),
            _ => None,
        };
        // In a cluster, a stanza is processed by the shard's leader: one
        // that reached this node after its leadership moved is handed on,
        // and one that arrives during an election waits for its outcome.
        let stanza = matches!(msg, ShardMsg::FromClient(..) | ShardMsg::Inbound(_));
        if stanza && shared.clustered() {
            shared.wait_leader(index).await;
            if let Some(addr) = shared.elsewhere(index) {
                let (s, inbound) = match &msg {
                    ShardMsg::FromClient(s, _) => (s, false),
                    ShardMsg::Inbound(s) => (s, true),
                    _ => unreachable_msg(),
                };
                match confirm {
                    // The edge sends it to the leader itself.
                    Some(c) => c.redirect(),
                    None => {
                        let mut env = proto::cluster::envelope::to_envelope(index as u32, s);
                        env.inbound = inbound;
                        env.hops = 1;
                        shared.relays.send(&addr, env);
                    }
                }
                continue;
            }
        }
        // A copy, in case the commit fails because the lead moved (an
        // edge's stanza is sent again by its edge instead).
        let copy = match &msg {
            _ if !shared.clustered() => None,
            ShardMsg::FromClient(s, None) if confirm.is_none() => {
                Some(ShardMsg::FromClient(s.clone(), None))
            }
            ShardMsg::Inbound(s) => Some(ShardMsg::Inbound(s.clone())),
            _ => None,
        };
        handle(&mut ctx, msg);
        let waits = !ctx.writes.is_empty();
        if let Some(c) = confirm {
            confirms.push((c, waits));
        }
        if let (true, Some(m)) = (waits, copy) {
            again.push(m);
        }
    }
    // Sessions' changes go into the same entry; nothing waits on them.
    let session_ops = crate::sessions::take_changes(ctx.st);
    let (writes, held) = ctx.into_pending();
    let mut moved = false;
    if !writes.is_empty() || !session_ops.is_empty() {
        match shared.commit(index, writes, forward, session_ops).await {
            Ok(()) => {
                for e in held {
                    e.release(shared);
                }
            }
            Err(e) => {
                for h in held {
                    h.fail(&e);
                }
                // Not committed because this node stopped leading the
                // shard: the stanzas go to the new leader (at least once;
                // one whose entry the new leader still commits is stored
                // twice, never lost).
                moved = shared.clustered()
                    && (matches!(e, crate::core::CoreError::NotLeader { .. })
                        || shared.leader(index).0 != Some(shared.cfg.node_id));
                if moved {
                    tracing::info!(shard = index, error = %e, stanzas = again.len() + confirms.iter().filter(|c| c.1).count(), "commit failed as the lead moved; the stanzas go to the new leader");
                    for m in again {
                        let _ = shared.shards[index].internal.send(m);
                    }
                } else {
                    tracing::warn!(shard = index, error = %e, "commit failed: the change is not made and its replies are dropped");
                }
            }
        }
    }
    for (c, waited) in confirms {
        if moved && waited {
            c.redirect();
        } else {
            c.done();
        }
    }
}

/// `step` only matches stanza messages there.
fn unreachable_msg() -> ! {
    unreachable!("only stanza messages are handed on")
}

fn handle(ctx: &mut Ctx<'_>, msg: ShardMsg) {
    match msg {
        ShardMsg::Bind { jid, sink, reply } => {
            let _ = reply.send(bind(ctx, jid, sink));
        }
        ShardMsg::Unbind { jid, conn_id } => unbind(ctx, &jid, conn_id),
        ShardMsg::FromClient(s, _) => from_client(ctx, *s),
        ShardMsg::Inbound(s) => inbound(ctx, *s),
        ShardMsg::Exec(f) => f(ctx),
        ShardMsg::Count { via, reply } => {
            let n = ctx
                .st
                .users
                .values()
                .flat_map(|u| &u.sessions)
                .filter(|s| via.as_ref().is_none_or(|l| s.sink.is_via(l)))
                .count();
            let _ = reply.send(n);
        }
        ShardMsg::DropEdge { link, reply } => {
            let gone: Vec<(FullJid, u64)> = ctx
                .st
                .users
                .values()
                .flat_map(|u| &u.sessions)
                .filter(|s| s.sink.is_via(&link))
                .map(|s| (s.jid.clone(), s.sink.conn_id))
                .collect();
            for (jid, conn) in gone {
                unbind(ctx, &jid, conn);
            }
            let _ = reply.send(());
        }
        ShardMsg::Stop { reply } => {
            let _ = reply.send(());
        }
        ShardMsg::Exit => {}
        ShardMsg::Lost {
            jid,
            session,
            reply,
        } => {
            let kept = ctx
                .st
                .session(&jid)
                .is_some_and(|s| s.sink.conn_id == session);
            if !kept {
                presence::lost_elsewhere(ctx, &jid);
            }
            let _ = reply.send(kept);
        }
        ShardMsg::Demoted => {
            // The shard's new leader has the sessions from the log (they
            // are replicated) and serves them from now on; the clients'
            // streams go on.
            let n: usize = ctx.st.users.values().map(|u| u.sessions.len()).sum();
            if n > 0 {
                tracing::info!(
                    sessions = n,
                    "shard led elsewhere now; its new leader serves its sessions"
                );
            }
            ctx.st.users.clear();
            ctx.st.term = None;
            if let Some(d) = &mut ctx.st.dirty {
                d.clear();
            }
        }
    }
}

fn bind(ctx: &mut Ctx<'_>, jid: FullJid, sink: SessionSink) -> Result<(), BindError> {
    let bare = jid.bare();
    match ctx.sh.accounts.exists(&bare) {
        Ok(true) => {}
        _ => return Err(BindError::NoSuchUser),
    }
    // RFC 6120 §7.7.2.2: the new session replaces the old one.
    if let Some(old) = ctx.st.session(&jid).map(|s| s.sink.clone()) {
        old.send(crate::Outbound::Close(
            proto::error::StreamCondition::Conflict,
            Some("replaced by a new session".into()),
        ));
        let conn = old.conn_id;
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
fn unbind(ctx: &mut Ctx<'_>, jid: &FullJid, conn_id: u64) {
    let matches = ctx
        .st
        .session(jid)
        .is_some_and(|s| s.sink.conn_id == conn_id);
    if !matches {
        return;
    }
    presence::went_offline(ctx, jid);
    ctx.st.changed(jid);
    let bare = jid.bare();
    if let Some(u) = ctx.st.users.get_mut(&bare) {
        u.sessions.retain(|s| &s.jid != jid);
        if u.sessions.is_empty() {
            ctx.st.users.remove(&bare);
        }
    }
}

fn from_client(ctx: &mut Ctx<'_>, s: Stanza) {
    let Some(Jid::Full(from)) = s.from.clone() else {
        return;
    };
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
            None => iq::handle(ctx, s, iq::Target::OwnAccount),
            Some(Jid::Bare(b)) if b.as_str() == from.bare_str() => {
                iq::handle(ctx, s, iq::Target::OwnAccount)
            }
            Some(to) if to.local().is_none() && to.resource().is_none() => {
                if ctx.sh.cfg.serves(to.domain()) {
                    iq::handle(ctx, s, iq::Target::Server)
                } else {
                    ctx.bounce(
                        &s,
                        proto::error::StanzaCondition::RemoteServerNotFound,
                        None,
                    )
                }
            }
            Some(_) => inbound(ctx, s),
        },
    }
}

/// Inbound processing at the recipient's shard (RFC 6121 §8.5).
pub(crate) fn inbound(ctx: &mut Ctx<'_>, s: Stanza) {
    let Some(to) = s.to.clone() else {
        return;
    };
    use proto::error::StanzaCondition as C;
    if !ctx.sh.cfg.serves(to.domain()) {
        // No server-to-server yet: a remote domain cannot be reached.
        if s.kind != Kind::Presence {
            ctx.bounce(
                &s,
                C::RemoteServerNotFound,
                Some("server-to-server is not enabled"),
            );
        }
        return;
    }
    if to.local().is_none() {
        // Addressed to the server or one of its domains.
        if s.kind == Kind::Iq {
            iq::handle(ctx, s, iq::Target::Server)
        }
        return;
    }
    let user = to.bare();
    let exists =
        !ctx.st.sessions(&user).is_empty() || ctx.sh.accounts.exists(&user).unwrap_or(false);
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
            Jid::Bare(_) => iq::handle(ctx, s, iq::Target::Account(user)),
        },
    }
}
