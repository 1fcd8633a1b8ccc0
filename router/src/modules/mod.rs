//! The core-side XMPP modules. Stanza handling is split by kind
//! (`message`, `presence` with `subscription`, `iq`), and IQ payloads are
//! served by the handlers listed in `registry.rs`, one per XEP.

pub mod disco;
pub mod iq;
pub mod message;
pub mod ping;
pub mod presence;
pub mod register;
pub mod registry;
pub mod roster;
pub mod subscription;
pub mod vcard;
pub mod version;

use bytes::Bytes;
use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::{Kind, Stanza};
use proto::{BareJid, Jid};

use crate::core::{CoreError, Shared};
use std::cell::RefCell;

use crate::session::{Outbound, SessionSink};
use crate::shard::{ShardMsg, ShardState};

/// What a module sees while handling one stanza: the shard's state, the
/// core's shared parts, and the writes planned so far.
///
/// Durable writes are planned into `writes` (the stores' `*_in` calls),
/// never made directly: after the handler returns, the shard commits them
/// through its Raft group and only then lets out what the handler sent
/// after its first write (roster pushes, IQ results, routed stanzas). So
/// nothing acknowledges a change before it is committed, and if the commit
/// fails those effects are dropped.
pub(crate) struct Ctx<'a> {
    pub st: &'a mut ShardState,
    pub sh: &'a Shared,
    pub writes: storage::Batch,
    held: RefCell<Vec<Effect>>,
}

/// Something a handler sent after planning a write: let out on commit.
pub(crate) enum Effect {
    Deliver(SessionSink, Outbound),
    Route(String, ShardMsg),
    Run(AfterCommit),
}

/// A callback told whether the commit it waited on failed.
pub(crate) type AfterCommit = Box<dyn FnOnce(Option<&CoreError>) + Send>;

impl Effect {
    /// The commit succeeded: let it out.
    pub fn release(self, sh: &Shared) {
        match self {
            Effect::Deliver(sink, out) => {
                sink.send(out);
            }
            Effect::Route(bare, msg) => sh.send_internal(&bare, msg),
            Effect::Run(f) => f(None),
        }
    }

    /// The commit failed: only callbacks hear of it.
    pub fn fail(self, e: &CoreError) {
        if let Effect::Run(f) = self {
            f(Some(e))
        }
    }
}

impl<'a> Ctx<'a> {
    pub fn new(st: &'a mut ShardState, sh: &'a Shared) -> Ctx<'a> {
        Ctx {
            st,
            sh,
            writes: storage::Batch::new(),
            held: RefCell::new(Vec::new()),
        }
    }

    /// The planned writes and the effects waiting for their commit.
    pub fn into_pending(self) -> (storage::Batch, Vec<Effect>) {
        (self.writes, self.held.into_inner())
    }
}

impl Ctx<'_> {
    pub fn store(&self) -> &storage::Store {
        &self.sh.store.0
    }

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
                .push(Effect::Deliver(sink.clone(), out));
            true
        } else {
            sink.send(out)
        }
    }

    /// Run `f` once the planned writes are committed (at once if none
    /// are), with the error if the commit failed.
    pub fn after_commit(&self, f: impl FnOnce(Option<&CoreError>) + Send + 'static) {
        if self.holding() {
            self.held.borrow_mut().push(Effect::Run(Box::new(f)));
        } else {
            f(None)
        }
    }

    /// Send a stanza on to the shard of its `to` for inbound processing.
    pub fn route(&self, s: Stanza) {
        let Some(to) = &s.to else { return };
        let bare = to.bare_str().to_string();
        let msg = ShardMsg::Inbound(Box::new(s));
        if self.holding() {
            self.held.borrow_mut().push(Effect::Route(bare, msg));
        } else {
            self.sh.send_internal(&bare, msg);
        }
    }

    /// Deliver bytes to every listed session of a user of this shard.
    pub fn deliver_to(
        &self,
        user: &BareJid,
        pick: impl Fn(&crate::shard::Session) -> bool,
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
        if s.is_error() || (s.kind == Kind::Iq && s.stype() == "result") {
            return;
        }
        let Some(from) = s.from.clone() else { return };
        let server = self.server_jid(from.domain());
        // Without a 'to' the stanza was for the sender's own account: the
        // reply carries no 'from' (RFC 6120 §8.1.2.1, §10.3.3).
        let raw = s.error_reply(err, None);
        let reply_from = s.to.clone().unwrap_or(server);
        self.route(synth(
            s.kind,
            reply_from,
            from,
            s.id.clone(),
            Some("error"),
            raw,
        ));
    }

    /// Answer an IQ with a result.
    pub fn iq_result(&self, s: &Stanza, payload: Option<&proto::Element>) {
        let Some(from) = s.from.clone() else { return };
        let me = s.to.clone().unwrap_or_else(|| Jid::Bare(from.bare()));
        // Results to the account's own requests carry no 'from' (RFC 6120 §10.3.3 lets
        // the server omit it); results from others name the entity asked.
        let reply_from = if s.to.is_none() { None } else { Some(&me) };
        let raw =
            proto::stanza::iq_result(s.id.as_deref().unwrap_or(""), reply_from, &from, payload);
        self.route(synth(Kind::Iq, me, from, s.id.clone(), Some("result"), raw));
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
    }
}
