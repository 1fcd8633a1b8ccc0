//! A user shard: one task owning the live sessions and presence of the users
//! that hash to it, applying every stanza for them in order.
//!
//! The shard is the seam between the two rooms of this crate: it runs the
//! XMPP modules (`crate::modules`) on its state through their narrow
//! context, then commits what they planned through the cluster machinery
//! (`crate::cluster`) and lets out what waited on the commit.

use std::collections::HashSet;
use std::sync::Arc;

use proto::stanza::{Kind, Stanza};
use proto::{BareJid, FullJid};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{Cluster, relay, shard_of};
use crate::error::{BindError, CoreError};
use crate::modules::dispatch::{bind, from_client, inbound, notify, unbind};
use crate::modules::state::ShardState;
use crate::modules::{CommitFailed, Ctx, Effect, Env, presence};
use crate::session::{EdgeLink, SessionSink};
use crate::trace;
use proto::trail::Trail;

/// A shard's two queues: a bounded one for stanzas from edges (so a busy
/// shard slows its senders down) and an unbounded one for stanzas between
/// shards (which must never wait on each other).
#[derive(Clone)]
pub(crate) struct ShardHandle {
    pub edge: mpsc::Sender<ShardMsg>,
    pub internal: mpsc::UnboundedSender<ShardMsg>,
}

/// What the shards of a core node share: the modules' environment, the
/// cluster machinery, and each shard's queues.
pub(crate) struct Shared {
    pub env: Env,
    pub cluster: Arc<Cluster>,
    pub shards: Vec<ShardHandle>,
}

impl Shared {
    pub fn shard_index(&self, bare: &str) -> usize {
        shard_of(bare, self.shards.len())
    }

    /// Hand a stanza to the shard of `bare` for inbound processing, on
    /// this node or the one that leads the shard.
    pub fn send_internal(&self, bare: &str, msg: ShardMsg) {
        self.send_internal_hop(bare, msg, 0)
    }

    pub fn send_internal_hop(&self, bare: &str, msg: ShardMsg, hops: u32) {
        let i = self.shard_index(bare);
        if let Some(addr) = self.cluster.elsewhere(i)
            && let Some(mut env) = relay_envelope(&msg, i)
        {
            env.hops = hops + 1;
            self.cluster.relays.send(&addr, env);
            return;
        }
        if self.cluster.clustered() {
            relay::touched(i);
        }
        if self.shards[i].internal.send(msg).is_err() {
            tracing::debug!(to = bare, "shard stopped, stanza dropped");
        }
    }

    /// Run `f` once what `r`'s scope handed on was handled (relays
    /// acknowledged, this node's shards past a barrier): at once when it
    /// handed on nothing, never when some of it was dropped unhandled
    /// because this node stops (an edge then sends its stanza again to
    /// the shard's next leader).
    pub fn when_handled(&self, mut r: relay::Receipts, f: impl FnOnce() + Send + 'static) {
        self.barriers(&mut r);
        if r.is_empty() {
            return f();
        }
        tokio::spawn(async move {
            if r.wait().await {
                f();
            }
        });
    }

    /// Add to `r` a barrier behind what its scope handed to each of this
    /// node's shards: waiting on `r` then waits for their handling too.
    pub fn barriers(&self, r: &mut relay::Receipts) {
        for i in r.take_shards() {
            let (tx, rx) = oneshot::channel();
            // A shard that stopped drops the barrier: waiting on it says
            // its stanzas were not handled.
            let _ = self.shards[i].internal.send(ShardMsg::Barrier(tx));
            r.add(rx);
        }
    }

    /// Hand a stanza without 'to' to the shards of its recipients, one
    /// message per shard (a fan-out crosses between shards, and between
    /// core nodes, once per shard, not once per recipient).
    /// With an `interest`, bare-JID recipients get it only at resources
    /// whose capabilities list that feature.
    pub fn notify(
        &self,
        s: Stanza,
        recipients: Vec<proto::Jid>,
        interest: Option<String>,
        hops: u32,
    ) {
        let mut by_shard: std::collections::BTreeMap<usize, Vec<proto::Jid>> =
            std::collections::BTreeMap::new();
        for r in recipients {
            if !self.env.cfg.serves(r.domain()) {
                // A recipient at another server or a component gets its
                // own copy there.
                let one = s.restamped(s.from.clone(), Some(r));
                self.route(one);
                continue;
            }
            by_shard
                .entry(self.shard_index(r.bare_str()))
                .or_default()
                .push(r);
        }
        let s = Arc::new(s);
        for (_, to) in by_shard {
            let key = to[0].bare_str().to_string();
            self.send_internal_hop(
                &key,
                ShardMsg::Notify(s.clone(), to, interest.clone()),
                hops,
            );
        }
    }

    /// Send `s` on to the shard that handles stanzas to its 'to'
    /// (inbound processing): the recipient's, a component's domain's, or
    /// out to another server.
    pub fn route(&self, s: Stanza) {
        let Some(to) = &s.to else { return };
        let domain = to.domain();
        if self.env.cfg.is_component(domain) {
            let key = domain.to_string();
            return self.send_internal(&key, ShardMsg::Keyed(key.clone(), Box::new(s)));
        }
        if !self.env.cfg.hosts(domain) {
            return self.to_remote(s);
        }
        let bare = to.bare_str().to_string();
        self.send_internal(&bare, ShardMsg::Inbound(Box::new(s)));
    }

    /// Hand `s`, for a domain this server does not host, to the
    /// server-to-server streams; without them its sender gets
    /// `remote-server-not-found` (RFC 6120 §10.4.3). Errors are never
    /// answered with errors.
    pub fn to_remote(&self, s: Stanza) {
        let Err(s) = self.env.federation.send(s) else {
            return;
        };
        let s = *s;
        // A core node without edges of its own: through an edge that
        // federates, the same one for every stanza to that domain (so
        // that they keep their order).
        if let Some(link) = self
            .cluster
            .federating_edge(s.to.as_ref().map(|t| t.domain()))
            && link.remote(&s)
        {
            return;
        }
        if !crate::federation::answered_when_unreachable(&s) {
            return;
        }
        let err = proto::error::StanzaError::with_text(
            proto::error::StanzaCondition::RemoteServerNotFound,
            "server-to-server is not enabled",
        );
        if let Some(reply) = crate::modules::context::error_reply(&s, &err, None) {
            self.route(reply);
        }
    }

    /// Let out an effect of a handler whose writes (if any) committed.
    pub fn release(self: &Arc<Self>, e: Effect) {
        match e {
            Effect::Deliver(sink, out, trail) => {
                sink.send_with(out, trail);
            }
            Effect::Route(s) => self.route(s),
            Effect::RouteKey(key, s) => {
                self.send_internal(&key, ShardMsg::Keyed(key.clone(), Box::new(s)));
            }
            Effect::Notify(s, recipients, interest) => self.notify(s, recipients, interest, 0),
            Effect::Run(f) => f(None),
            Effect::ListRooms(service, answer) => {
                let core = crate::core::Core {
                    shared: self.clone(),
                };
                tokio::spawn(async move {
                    let rooms = core
                        .list_rooms(&service, None, crate::operator::ROOMS_LISTED)
                        .await
                        .unwrap_or_default();
                    if let Some(s) = answer(rooms) {
                        core.shared.release(Effect::Route(s));
                    }
                });
            }
        }
    }
}

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
    /// A stanza for the shard of `key` rather than of its `to` (a PubSub
    /// node's home), for inbound processing there.
    Keyed(String, Box<Stanza>),
    /// A stanza without 'to' for these recipients, all of this shard,
    /// delivered by the rules of its type (a PubSub notification), with
    /// the feature a resource's capabilities must list, if any.
    /// Shared between the shards of one fan-out, not copied per shard.
    Notify(Arc<Stanza>, Vec<proto::Jid>, Option<String>),
    /// Run a planned change on the shard (an account change from outside
    /// a stanza): the closure plans writes into the context and answers
    /// through `Ctx::after_commit`.
    Exec(Box<dyn FnOnce(&mut Ctx<'_>) + Send>),
    /// Bound sessions: all, or those bound through one edge's link.
    Count {
        via: Option<Arc<EdgeLink>>,
        reply: oneshot::Sender<usize>,
    },
    /// The sessions bound here (of one user, or all), for operators.
    Sessions {
        user: Option<BareJid>,
        reply: oneshot::Sender<Vec<crate::SessionInfo>>,
    },
    /// End one session's stream (an operator's kick); answers whether
    /// the session was bound here.
    Kick {
        jid: FullJid,
        reply: oneshot::Sender<bool>,
    },
    /// A remote edge's stream ended: end the sessions bound through it.
    DropEdge {
        link: Arc<EdgeLink>,
        reply: oneshot::Sender<()>,
    },
    /// Answered once what was queued before it was handled (its effects
    /// let out).
    Barrier(oneshot::Sender<()>),
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
    /// End the sessions that waited too long for a resumption (XEP-0198).
    /// Handled apart from stanzas, and only where the shard's sessions
    /// are served: it must not make a node that just came to lead the
    /// shard load its sessions before the edges have found it.
    SmSweep,
}

pub use crate::modules::dispatch::first_hop;

/// Messages handled together and committed with one Raft entry, at most.
const GROUP: usize = 64;

/// A message stanza: its handling reads nothing that an earlier message of
/// the same group may have written, except through the pending batch
/// (offline queue counters), so consecutive ones can share one commit.
fn groupable(m: &ShardMsg) -> bool {
    match m {
        ShardMsg::FromClient(s, _) | ShardMsg::Inbound(s) | ShardMsg::Keyed(_, s) => {
            s.kind == Kind::Message
        }
        ShardMsg::Notify(s, ..) => s.kind == Kind::Message,
        _ => false,
    }
}

/// The envelope that carries a stanza message of shard `index` to another
/// core node (`None` for other messages).
fn relay_envelope(msg: &ShardMsg, index: usize) -> Option<proto::cluster::pb::Envelope> {
    use proto::cluster::envelope::to_envelope;
    let mut env = match msg {
        ShardMsg::FromClient(s, _) => return Some(to_envelope(index as u32, s)),
        ShardMsg::Inbound(s) => to_envelope(index as u32, s),
        ShardMsg::Keyed(key, s) => {
            let mut e = to_envelope(index as u32, s);
            e.route_key = Some(key.clone());
            e
        }
        ShardMsg::Notify(s, to, interest) => {
            let mut e = to_envelope(index as u32, s);
            e.recipients = to.iter().map(|j| j.as_str().to_owned()).collect();
            e.interest = interest.clone();
            e
        }
        _ => return None,
    };
    env.inbound = true;
    Some(env)
}

impl ShardMsg {
    /// The stanza it carries, if it is a stanza message.
    fn stanza(&self) -> Option<&Stanza> {
        match self {
            ShardMsg::FromClient(s, _) | ShardMsg::Inbound(s) | ShardMsg::Keyed(_, s) => Some(s),
            ShardMsg::Notify(s, ..) => Some(s),
            _ => None,
        }
    }

    /// A copy of a stanza message, to hand it on should its commit fail.
    fn stanza_copy(&self) -> Option<ShardMsg> {
        match self {
            ShardMsg::FromClient(s, None) => Some(ShardMsg::FromClient(s.clone(), None)),
            ShardMsg::Inbound(s) => Some(ShardMsg::Inbound(s.clone())),
            ShardMsg::Keyed(k, s) => Some(ShardMsg::Keyed(k.clone(), s.clone())),
            ShardMsg::Notify(s, to, i) => Some(ShardMsg::Notify(s.clone(), to.clone(), i.clone())),
            _ => None,
        }
    }
}

pub(crate) async fn run(
    index: usize,
    shared: Arc<Shared>,
    mut edge: mpsc::Receiver<ShardMsg>,
    mut internal: mpsc::UnboundedReceiver<ShardMsg>,
) {
    let mut st = ShardState::default();
    if shared.cluster.clustered() {
        st.dirty = Some(HashSet::new());
        st.room_dirty = Some(HashSet::new());
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
                // Sessions with stream management end before the store
                // closes: what their clients did not acknowledge goes to
                // offline storage (routed to this same shard, handled by
                // the loop below).
                let served = !shared.cluster.clustered()
                    || crate::replicated::serves(&st, &shared.cluster, index);
                if served {
                    let clustered = shared.cluster.clustered();
                    let end = ShardMsg::Exec(Box::new(move |ctx| {
                        crate::modules::sm::end_all(ctx, clustered)
                    }));
                    step(&mut st, &shared, index, end, Vec::new()).await;
                }
                while let Ok(m) = internal.try_recv() {
                    step(&mut st, &shared, index, m, Vec::new()).await;
                }
                let _ = reply.send(());
                continue;
            }
            ShardMsg::Exit => break,
            ShardMsg::Barrier(tx) => {
                let _ = tx.send(());
                continue;
            }
            ShardMsg::SmSweep => {
                let served = !shared.cluster.clustered()
                    || crate::replicated::serves(&st, &shared.cluster, index);
                if !st.sm_detached.is_empty() && served {
                    let now = std::time::Instant::now();
                    let sweep =
                        ShardMsg::Exec(Box::new(move |ctx| crate::modules::sm::sweep(ctx, now)));
                    step(&mut st, &shared, index, sweep, Vec::new()).await;
                }
                continue;
            }
            _ => {}
        }
        // Group commit: messages waiting behind this one are handled with
        // it and their writes (offline storage) committed together.
        let mut more = Vec::new();
        // Barriers met among the group's messages are answered after it:
        // what came before them is handled then (they do not end the
        // group, which would cost a fan-out its group commits).
        let mut barriers = Vec::new();
        if groupable(&msg) {
            while more.len() + 1 < GROUP {
                let m = match internal.try_recv() {
                    Ok(m) => m,
                    Err(_) => match edge.try_recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    },
                };
                match m {
                    ShardMsg::Barrier(tx) => barriers.push(tx),
                    m if groupable(&m) => more.push(m),
                    m => {
                        next = Some(m);
                        break;
                    }
                }
            }
        }
        step(&mut st, &shared, index, msg, more).await;
        for tx in barriers {
            let _ = tx.send(());
        }
    }
    tracing::debug!(shard = index, "shard stopped");
}

/// Handle `first` and then `more`; if they planned writes, commit them
/// through the shard's Raft group (one entry) before letting out what
/// waits on them. The shard takes its next message only after the
/// commit, so every handler reads the effects of all earlier ones.
async fn step(
    st: &mut ShardState,
    shared: &Arc<Shared>,
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
    // The spans of sampled stanzas whose effects wait for the commit.
    let mut traced: Vec<trace::Span> = Vec::new();
    // A node that has just come to lead the shard serves its replicated
    // sessions first.
    let orphans = if shared.cluster.clustered() {
        crate::replicated::ensure_loaded(st, &shared.cluster, index).await
    } else {
        Vec::new()
    };
    // Stanzas are processed only where the shard's sessions are: at the
    // node that leads the group in Raft, with the sessions of that term
    // loaded. During an election the shard map may still name this node
    // while its sessions are not loaded; a message processed then found
    // its recipient offline and was stored though the recipient was
    // online (the rolling-restart test found it there).
    let served =
        !shared.cluster.clustered() || crate::replicated::serves(st, &shared.cluster, index);
    let mut ctx = Ctx::new(st, &shared.env, index);
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
        let stanza = msg.stanza().is_some();
        if stanza && shared.cluster.clustered() {
            shared.cluster.wait_leader(index).await;
            let elsewhere = shared.cluster.elsewhere(index);
            if elsewhere.is_some() || !served {
                match (confirm, elsewhere) {
                    // The edge sends it to the leader itself.
                    (Some(c), _) => c.redirect(),
                    (None, Some(addr)) => {
                        if let Some(mut env) = relay_envelope(&msg, index) {
                            env.hops = 1;
                            shared.cluster.relays.send(&addr, env);
                        }
                    }
                    // No leader with loaded sessions yet: again shortly.
                    (None, None) => {
                        let tx = shared.shards[index].internal.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            let _ = tx.send(msg);
                        });
                    }
                }
                continue;
            }
        }
        // A copy, in case the commit fails because the lead moved (an
        // edge's stanza is sent again by its edge instead).
        let copy = if shared.cluster.clustered() && confirm.is_none() {
            msg.stanza_copy()
        } else {
            None
        };
        // What the handler sends carries the stanza's trail, continued
        // by the handling's span when its trace is sampled.
        let span = msg.stanza().and_then(|s| {
            trace::child(
                &s.trail,
                "shard handle",
                trace::Kind::Internal,
                None,
                || {
                    vec![
                        trace::Attr::new("xmpp.shard", index as i64),
                        trace::Attr::new("xmpp.stanza.kind", s.kind.name()),
                    ]
                },
            )
        });
        ctx.trail = match (&span, msg.stanza()) {
            (Some(sp), Some(s)) => sp.continue_trail(&s.trail),
            (None, Some(s)) => s.trail.clone(),
            _ => Trail::default(),
        };
        handle(&mut ctx, msg);
        let waits = !ctx.writes.is_empty();
        // A span whose stanza's effects wait for the commit ends after it.
        if let (Some(sp), true) = (span, waits) {
            traced.push(sp);
        }
        if let Some(c) = confirm {
            confirms.push((c, waits));
        }
        if let (true, Some(m)) = (waits, copy) {
            again.push(m);
        }
    }
    // Sessions' changes go into the same entry; nothing waits on them.
    let session_ops = crate::replicated::take_changes(ctx.st);
    let (writes, held) = ctx.into_pending();
    let mut moved = false;
    let commit_start = (!traced.is_empty()).then(std::time::SystemTime::now);
    // What the effects relay to other core nodes: the edges hear that
    // their stanzas were processed once the peers have it.
    let mut receipts = None;
    if writes.is_empty() && session_ops.is_empty() {
        receipts = Some(relay::collect(|| {
            for (e, _) in held {
                shared.release(e);
            }
        }));
    } else {
        let entries = writes.len() as i64;
        let committed = shared
            .cluster
            .commit(index, writes, forward, session_ops)
            .await;
        // Each traced stanza whose effects waited gets a span for the
        // commit (one Raft entry for the group).
        for sp in &traced {
            let t = sp.continue_trail(&Trail::default());
            if let Some(mut c) = trace::child(
                &t,
                "raft commit",
                trace::Kind::Internal,
                commit_start,
                || {
                    vec![
                        trace::Attr::new("xmpp.shard", index as i64),
                        trace::Attr::new("raft.writes", entries),
                    ]
                },
            ) && let Err(e) = &committed
            {
                c.error(e.to_string());
            }
        }
        match committed {
            Ok(()) => {
                receipts = Some(relay::collect(|| {
                    for (e, _) in held {
                        shared.release(e);
                    }
                }));
            }
            Err(e) => {
                let failed = CommitFailed(e.to_string());
                for (h, waits) in held {
                    if waits {
                        h.fail(&failed);
                    } else {
                        shared.release(h);
                    }
                }
                // Not committed because this node stopped leading the
                // shard: the stanzas go to the new leader (at least once;
                // one whose entry the new leader still commits is stored
                // twice, never lost).
                let me = shared.cluster.cfg.node_id;
                moved = shared.cluster.clustered()
                    && (matches!(e, CoreError::NotLeader { .. })
                        || shared.cluster.leader(index).0 != Some(me));
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
    let confirms: Vec<_> = confirms
        .into_iter()
        .filter_map(|(c, waited)| {
            if moved && waited {
                c.redirect();
                None
            } else {
                Some(c)
            }
        })
        .collect();
    if confirms.is_empty() {
        return;
    }
    let done = move || {
        for c in confirms {
            c.done();
        }
    };
    match receipts {
        Some(r) => shared.when_handled(r, done),
        None => done(),
    }
}

fn handle(ctx: &mut Ctx<'_>, msg: ShardMsg) {
    match msg {
        ShardMsg::Bind { jid, sink, reply } => {
            let _ = reply.send(bind(ctx, jid, sink));
        }
        ShardMsg::Unbind { jid, conn_id } => unbind(ctx, &jid, conn_id),
        ShardMsg::Barrier(tx) => {
            let _ = tx.send(());
        }
        ShardMsg::FromClient(s, _) => from_client(ctx, *s),
        ShardMsg::Inbound(s) | ShardMsg::Keyed(_, s) => inbound(ctx, *s),
        ShardMsg::Notify(s, to, interest) => notify(ctx, &s, &to, interest.as_deref()),
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
        ShardMsg::Sessions { user, reply } => {
            let info = |s: &crate::modules::state::Session| crate::SessionInfo {
                jid: s.jid.clone(),
                edge: s.sink.edge(),
                available: s.available,
                priority: s.priority,
            };
            let list = match &user {
                Some(u) => ctx.st.sessions(u).iter().map(info).collect(),
                None => ctx
                    .st
                    .users
                    .values()
                    .flat_map(|u| &u.sessions)
                    .map(info)
                    .collect(),
            };
            let _ = reply.send(list);
        }
        ShardMsg::Kick { jid, reply } => {
            let sink = ctx.st.session(&jid).map(|s| s.sink.clone());
            if let Some(sink) = &sink {
                ctx.send(
                    sink,
                    crate::Outbound::Close(
                        proto::error::StreamCondition::PolicyViolation,
                        Some("session ended by an administrator".into()),
                    ),
                );
                tracing::info!(session = %jid, "session ended by an administrator");
            }
            let _ = reply.send(sink.is_some());
        }
        ShardMsg::DropEdge { link, reply } => {
            let gone: Vec<(FullJid, u64)> = ctx
                .st
                .users
                .values()
                .flat_map(|u| &u.sessions)
                .filter(|s| s.sink.is_via(&link))
                .map(|s| (s.jid.clone(), s.sink.conn_id()))
                .collect();
            // A resumable session waits for its client, which may resume
            // it on another edge (XEP-0198); the others end.
            for (jid, conn) in gone {
                crate::modules::sm::detach(ctx, &jid, conn, None);
            }
            let _ = reply.send(());
        }
        ShardMsg::Stop { reply } => {
            let _ = reply.send(());
        }
        ShardMsg::Exit | ShardMsg::SmSweep => {}
        ShardMsg::Lost {
            jid,
            session,
            reply,
        } => {
            let kept = ctx
                .st
                .session(&jid)
                .is_some_and(|s| s.sink.conn_id() == session);
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
            ctx.st.sm_detached.clear();
            ctx.st.term = None;
            if let Some(d) = &mut ctx.st.dirty {
                d.clear();
            }
        }
    }
}
