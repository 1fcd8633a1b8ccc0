//! The narrow context of the XMPP modules ([`Ctx`]): what a module may
//! read (its shard's sessions, configuration, stores, accounts, the
//! registry), the writes it plans (committed by the shard, which lets out
//! what waits on them), and how it sends (to a session, or a stanza on to
//! another shard). It knows nothing of Raft, relays or gRPC.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::{Kind, Stanza};
use proto::{BareJid, Jid};

use super::handler::Registry;
use super::state::{Session, ShardState};
use crate::Store;
use crate::accounts::Accounts;
use crate::config::CoreConfig;
use crate::session::{Outbound, SessionSink};

/// What a module sees while handling one stanza: the shard's state (its
/// users' sessions), the module environment ([`Env`]: configuration,
/// stores to read, accounts, the registry), and the writes planned so far.
/// No Raft group, no relay, no gRPC client: the shard commits the planned
/// writes and lets out the effects.
///
/// Durable writes are planned into `writes` (the stores' `*_in` calls),
/// never made directly: after the handler returns, the shard commits them
/// through its Raft group and only then lets out what the handler sent
/// after its first write (roster pushes, IQ results, routed stanzas). So
/// nothing acknowledges a change before it is committed, and if the commit
/// fails those effects are dropped.
pub(crate) struct Ctx<'a> {
    pub st: &'a mut ShardState,
    pub env: &'a Env,
    /// This shard's index.
    pub shard: usize,
    pub writes: storage::Batch,
    /// Effects in the order they were made, each with whether it waits
    /// for the commit (it came after the first planned write).
    held: RefCell<Vec<(Effect, bool)>>,
    /// The trail of the stanza being handled: what it sends carries it
    /// (when its cause was read, and the span it continues).
    pub trail: proto::trail::Trail,
}

/// What every module may use besides the shard's state: the core's
/// configuration, the stores (to read; writes are planned into
/// [`Ctx::writes`]), the accounts, and the registry of IQ handlers and
/// disco features.
pub(crate) struct Env {
    pub cfg: CoreConfig,
    pub store: Store,
    pub accounts: Accounts,
    pub registry: Registry,
    /// How many shards there are.
    pub shard_count: usize,
    /// Entity capabilities learnt from clients (XEP-0115).
    pub caps: super::caps::CapsCache,
    /// Where stanzas for remote domains go (server-to-server).
    pub federation: crate::federation::Federation,
    next_id: AtomicU64,
}

impl Env {
    pub fn new(cfg: CoreConfig, store: Store, accounts: Accounts, registry: Registry) -> Env {
        Env {
            shard_count: cfg.shards.max(1),
            caps: Default::default(),
            federation: Default::default(),
            cfg,
            store,
            accounts,
            registry,
            next_id: AtomicU64::new(1),
        }
    }

    /// A fresh id for server-generated stanzas.
    pub fn next_id(&self) -> String {
        format!("xmppd-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// A point in a handler's planned writes and held effects
/// ([`Ctx::savepoint`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Savepoint {
    writes: usize,
    held: usize,
}

/// Why the planned writes were not committed.
#[derive(Debug, Clone)]
pub(crate) struct CommitFailed(pub String);

impl std::fmt::Display for CommitFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Something a handler sent: a stanza routed on (let out once the
/// handler is done), or a delivery or callback after its first planned
/// write (let out on commit).
pub(crate) enum Effect {
    Deliver(SessionSink, Outbound, proto::trail::Trail),
    /// A stanza for the shard of its `to`, for inbound processing.
    Route(Stanza),
    /// A stanza for the shard of this key, for inbound processing there.
    RouteKey(String, Stanza),
    /// A stanza without 'to' for these recipients (a fan-out).
    Notify(Stanza, Vec<Jid>, Option<String>),
    Run(AfterCommit),
    /// The rooms of a MUC service on every core node, handed to the
    /// callback; the stanza it makes (an answer) is routed like
    /// [`Effect::Route`]. Runs apart from the shard, which goes on.
    ListRooms(String, RoomsAnswer),
}

/// What makes an answer of a service's rooms ([`Ctx::list_rooms`]).
pub(crate) type RoomsAnswer =
    Box<dyn FnOnce(Vec<proto::cluster::pb::RoomEntry>) -> Option<Stanza> + Send>;

/// A callback told whether the commit it waited on failed.
pub(crate) type AfterCommit = Box<dyn FnOnce(Option<&CommitFailed>) + Send>;

impl Effect {
    /// The commit failed: only callbacks hear of it.
    pub fn fail(self, e: &CommitFailed) {
        if let Effect::Run(f) = self {
            f(Some(e))
        }
    }
}

impl<'a> Ctx<'a> {
    pub fn new(st: &'a mut ShardState, env: &'a Env, shard: usize) -> Ctx<'a> {
        Ctx {
            st,
            env,
            shard,
            writes: storage::Batch::new(),
            held: RefCell::new(Vec::new()),
            trail: Default::default(),
        }
    }

    /// The planned writes and the effects waiting for them (or, without
    /// writes, for the handler to be done).
    pub fn into_pending(self) -> (storage::Batch, Vec<(Effect, bool)>) {
        (self.writes, self.held.into_inner())
    }
}

impl<'a> Ctx<'a> {
    /// The stores, to read (writes are planned into `writes`). The
    /// reference outlives the borrow of the context, so a handler may
    /// hold it while it plans writes.
    pub fn store(&self) -> &'a storage::Store {
        &self.env.store.0
    }

    /// The core's configuration.
    pub fn cfg(&self) -> &'a CoreConfig {
        &self.env.cfg
    }
}

impl Ctx<'_> {
    /// Whether effects now wait for the commit of planned writes.
    fn holding(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Send to one session (at once, or on commit if writes are planned).
    /// `false` if the session is gone.
    pub fn send(&self, sink: &SessionSink, out: Outbound) -> bool {
        if self.holding() {
            self.held
                .borrow_mut()
                .push((Effect::Deliver(sink.clone(), out, self.trail.clone()), true));
            true
        } else {
            sink.send_with(out, self.trail.clone())
        }
    }

    /// Run `f` once the planned writes are committed (at once if none
    /// are), with the error if the commit failed.
    pub fn after_commit(&self, f: impl FnOnce(Option<&CommitFailed>) + Send + 'static) {
        if self.holding() {
            self.held
                .borrow_mut()
                .push((Effect::Run(Box::new(f)), true));
        } else {
            f(None)
        }
    }

    /// Where the planned writes and held effects stand now, to undo what
    /// comes after with [`Ctx::rollback`].
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            writes: self.writes.len(),
            held: self.held.borrow().len(),
        }
    }

    /// Undo the writes planned and the effects held since `sp`: a request
    /// refused halfway changes nothing (all or nothing). Sends made at
    /// once because nothing was planned yet (`send`, `after_commit`) are
    /// out already; every routed stanza and notification is held, so it
    /// is undone too.
    pub fn rollback(&mut self, sp: Savepoint) {
        self.writes.truncate(sp.writes);
        self.held.get_mut().truncate(sp.held);
    }

    /// Whether records keyed by `key` (a bare JID, a PubSub node's home)
    /// live in this shard.
    pub fn is_home(&self, key: &str) -> bool {
        crate::cluster::shard_of(key, self.env.shard_count) == self.shard
    }

    /// Send a stanza to the shard of `key` (once the handler is done, and
    /// after the commit of planned writes), for inbound processing there.
    pub fn route_home(&self, key: String, s: Stanza) {
        let s = self.stamped(s);
        let waits = self.holding();
        self.held
            .borrow_mut()
            .push((Effect::RouteKey(key, s), waits));
    }

    /// Deliver `s`, a stanza without 'to', to each of `recipients` by the
    /// rules of its type, at their shards (after the commit of planned
    /// writes).
    pub fn notify(&self, s: Stanza, recipients: Vec<Jid>) {
        self.notify_interested(s, recipients, None);
    }

    /// As `notify`, but a bare-JID recipient gets it only at resources
    /// whose entity capabilities (XEP-0115) list feature `interest`.
    pub fn notify_interested(&self, s: Stanza, recipients: Vec<Jid>, interest: Option<String>) {
        if recipients.is_empty() {
            return;
        }
        let s = self.stamped(s);
        let waits = self.holding();
        self.held
            .borrow_mut()
            .push((Effect::Notify(s, recipients, interest), waits));
    }

    /// Gather the rooms of the MUC service `service` from every core node
    /// (those this shard does not hold too) and route the stanza `answer`
    /// makes of them; the shard does not wait for it.
    pub fn list_rooms(&self, service: &str, answer: RoomsAnswer) {
        self.held
            .borrow_mut()
            .push((Effect::ListRooms(service.to_string(), answer), false));
    }

    /// Send a stanza on to the shard of its `to` for inbound processing
    /// (once the handler is done, and after the commit of planned writes).
    pub fn route(&self, s: Stanza) {
        if s.to.is_some() {
            let s = self.stamped(s);
            let waits = self.holding();
            self.held.borrow_mut().push((Effect::Route(s), waits));
        }
    }

    /// `s` with the trail of the stanza being handled (what a handler
    /// sends on is caused by it; the span it continues is the handling's).
    fn stamped(&self, mut s: Stanza) -> Stanza {
        if !self.trail.is_empty() {
            s.trail = self.trail.clone();
            s.trail.via_sender = false;
        }
        s
    }

    /// Deliver bytes to every listed session of a user of this shard.
    pub fn deliver_to(
        &self,
        user: &BareJid,
        pick: impl Fn(&Session) -> bool,
        bytes: &Bytes,
    ) -> usize {
        let mut n = 0;
        for s in self.st.sessions(user) {
            if pick(s) && self.send(&s.sink, Outbound::Stanza(bytes.clone())) {
                n += 1;
            }
        }
        n
    }

    /// Return an error to the sender of `s` (RFC 6120 §8.3.1). Errors and
    /// IQ results are never answered with errors.
    pub fn bounce(&self, s: &Stanza, cond: StanzaCondition, text: Option<&str>) {
        let err = match text {
            Some(t) => StanzaError::with_text(cond, t),
            None => StanzaError::new(cond),
        };
        self.bounce_with(s, &err);
    }

    pub fn bounce_with(&self, s: &Stanza, err: &StanzaError) {
        self.bounce_with_payload(s, err, None);
    }

    /// As `bounce_with`, the error carrying `payload` (RFC 6120 §8.3.1).
    pub fn bounce_with_payload(
        &self,
        s: &Stanza,
        err: &StanzaError,
        payload: Option<&proto::Element>,
    ) {
        if let Some(e) = error_reply(s, err, payload) {
            self.route(e);
        }
    }

    /// Answer an IQ with a result.
    pub fn iq_result(&self, s: &Stanza, payload: Option<&proto::Element>) {
        if let Some(r) = result_reply(s, payload) {
            self.route(r);
        }
    }

    pub fn server_jid(&self, domain: &str) -> Jid {
        match BareJid::domain_jid(domain) {
            Ok(b) => Jid::Bare(b),
            Err(_) => {
                Jid::Bare(BareJid::domain_jid("localhost").unwrap_or_else(|_| unreachable_domain()))
            }
        }
    }
}

/// The error answering `s` (RFC 6120 §8.3.1), carrying `payload`; none
/// for an error or an IQ result, which are never answered.
pub(crate) fn error_reply(
    s: &Stanza,
    err: &StanzaError,
    payload: Option<&proto::Element>,
) -> Option<Stanza> {
    if s.is_error() || (s.kind == Kind::Iq && s.stype() == "result") {
        return None;
    }
    let from = s.from.clone()?;
    let server = match BareJid::domain_jid(from.domain()) {
        Ok(b) => Jid::Bare(b),
        Err(_) => Jid::Bare(unreachable_domain()),
    };
    // Without a 'to' the stanza was for the sender's own account: the
    // reply carries no 'from' (RFC 6120 §8.1.2.1, §10.3.3).
    let raw = s.error_reply_with(err, None, payload);
    let reply_from = s.to.clone().unwrap_or(server);
    Some(synth(
        s.kind,
        reply_from,
        from,
        s.id.clone(),
        Some("error"),
        raw,
    ))
}

/// The result answering the IQ `s`.
pub(crate) fn result_reply(s: &Stanza, payload: Option<&proto::Element>) -> Option<Stanza> {
    let from = s.from.clone()?;
    let me = s.to.clone().unwrap_or_else(|| Jid::Bare(from.bare()));
    // Results to the account's own requests carry no 'from' (RFC 6120
    // §10.3.3 lets the server omit it); results from others name the
    // entity asked.
    let reply_from = if s.to.is_none() { None } else { Some(&me) };
    let raw = proto::stanza::iq_result(s.id.as_deref().unwrap_or(""), reply_from, &from, payload);
    Some(synth(Kind::Iq, me, from, s.id.clone(), Some("result"), raw))
}

fn unreachable_domain() -> BareJid {
    // "localhost" is always a valid domainpart; kept out of line for clarity.
    match BareJid::domain_jid("invalid") {
        Ok(b) => b,
        Err(_) => std::process::abort(),
    }
}

/// A presence without children (`probe`, `unavailable`, `subscribed`, ...)
/// from `from` to `to`, ready to route.
pub(crate) fn presence_of(ptype: &str, from: Jid, to: Jid) -> Stanza {
    let raw = Bytes::from(format!(
        "<presence type='{}' from='{}' to='{}'/>",
        ptype,
        proto::element::escape(from.as_str()),
        proto::element::escape(to.as_str())
    ));
    Stanza {
        kind: Kind::Presence,
        head_len: raw.len(),
        to: Some(to),
        from: Some(from),
        id: None,
        stype: Some(ptype.to_string()),
        attrs: vec![("type".to_string(), ptype.to_string())],
        raw,
        empty: true,
        trail: Default::default(),
    }
}

/// A stanza made by the server, ready to route.
pub(crate) fn synth(
    kind: Kind,
    from: Jid,
    to: Jid,
    id: Option<String>,
    stype: Option<&str>,
    raw: Bytes,
) -> Stanza {
    if let Ok(mut s) = Stanza::parse(&raw) {
        s.from = Some(from);
        s.to = Some(to);
        return s;
    }
    Stanza {
        kind,
        to: Some(to),
        from: Some(from),
        id,
        stype: stype.map(str::to_string),
        attrs: Vec::new(),
        raw,
        head_len: 0,
        empty: false,
        trail: Default::default(),
    }
}
