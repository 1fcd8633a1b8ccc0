//! One BOSH session's bookkeeping (XEP-0124 §7–§14), without I/O: the
//! requests taken in rid order (§14.2; one ahead of a gap waits for it,
//! within the window of `requests`), those held until there is something
//! to say or their `wait` is over (§7), the last responses kept for
//! retransmissions (§14.3), acknowledgements (§9), pauses (§10),
//! overactivity (§11, §12), the end of the session (§13, §17), and the
//! bytes going each way between the HTTP requests and the stream machine's
//! driver (`conn.rs`, through [`super::io::BoshIo`]).
//!
//! Every request gets its answer through the one-shot channel it came
//! with, sent under the session's lock in rid order.

use std::collections::{BTreeMap, VecDeque};
use std::task::Waker;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::body::{self, Request};

mod stream;

/// A response to one request.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn ok(body: Bytes) -> Reply {
        Reply {
            status: StatusCode::OK,
            body,
        }
    }
}

/// The terminal binding conditions a server sends (XEP-0124 §17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    BadRequest,
    HostUnknown,
    ImproperAddressing,
    ItemNotFound,
    OtherRequest,
    PolicyViolation,
    RemoteConnectionFailed,
    SystemShutdown,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::HostUnknown => "host-unknown",
            Condition::ImproperAddressing => "improper-addressing",
            Condition::ItemNotFound => "item-not-found",
            Condition::OtherRequest => "other-request",
            Condition::PolicyViolation => "policy-violation",
            Condition::RemoteConnectionFailed => "remote-connection-failed",
            Condition::SystemShutdown => "system-shutdown",
        }
    }

    /// The answer: a terminate body; to a client that gave no 'ver'
    /// (§17.1, a legacy client), the HTTP error that stood for the three
    /// conditions that had one.
    pub fn reply(self, legacy: bool) -> Reply {
        let status = match (legacy, self) {
            (true, Condition::BadRequest) => StatusCode::BAD_REQUEST,
            (true, Condition::PolicyViolation) => StatusCode::FORBIDDEN,
            (true, Condition::ItemNotFound) => StatusCode::NOT_FOUND,
            _ => StatusCode::OK,
        };
        Reply {
            status,
            body: body::terminate(Some(self.name())),
        }
    }
}

/// What the session agreed at its creation, and its bounds.
#[derive(Debug, Clone)]
pub(crate) struct Terms {
    pub wait: Duration,
    pub hold: usize,
    /// Simultaneous requests allowed, and the rid window (§11, §14.2).
    pub requests: u64,
    pub inactivity: Duration,
    /// Shortest interval between two empty polls (polling sessions, §12).
    pub polling: Duration,
    /// A polling session (hold or wait 0).
    pub polls: bool,
    /// Longest pause; zero: pauses are not offered.
    pub max_pause: Duration,
    /// The client asked for acknowledgements (§9).
    pub acks: bool,
    /// No 'ver' from the client (§17.1).
    pub legacy: bool,
    /// The session's domain (restart requests may leave out 'to').
    pub domain: String,
    /// Most client bytes waiting for the stream machine; past it the
    /// client sends faster than its session reads (policy-violation).
    pub max_inbound: usize,
    /// Most bytes for the client waiting for a request; past it the
    /// machine's writes wait (and time out for a client gone quiet).
    pub max_outbound: usize,
}

/// A request taken, waiting for its answer.
#[derive(Debug)]
struct Held {
    rid: u64,
    tx: oneshot::Sender<Reply>,
    arrived: Instant,
    empty: bool,
    /// A pause request: answered at once, without payloads (§10).
    pause: bool,
    /// Answer now: its wait is over.
    due: bool,
    /// Tell the client of a response it seems to have missed (§9.2):
    /// that response's rid and its age in ms.
    report: Option<(u64, u64)>,
}

/// A request ahead of a gap in the rids, until the gap fills.
#[derive(Debug)]
struct Ahead {
    req: Request,
    tx: oneshot::Sender<Reply>,
    arrived: Instant,
}

#[derive(Debug)]
struct Cached {
    rid: u64,
    body: Bytes,
    at: Instant,
}

/// What the stream machine's driver gets when it reads.
pub(crate) enum Read {
    /// Bytes were put in the buffer.
    Data,
    /// The stream's input is over.
    End,
    /// Nothing yet; when the session expires if nothing comes.
    Wait(Option<Instant>),
}

/// The session's state, behind its lock.
#[derive(Debug)]
pub(crate) struct State {
    terms: Terms,
    /// The creation request's rid and the attributes its response
    /// carries, until it is sent.
    creation: Option<(u64, Vec<(&'static str, String)>)>,
    /// The highest rid taken in order.
    last: u64,
    ahead: BTreeMap<u64, Ahead>,
    held: VecDeque<Held>,
    cache: VecDeque<Cached>,
    /// The highest rid answered.
    answered: u64,
    last_answer: Instant,
    /// The inactivity allowed until the next request (§10).
    pause: Option<Duration>,
    /// When the last empty request came, if its answer was empty too
    /// (polling sessions, §12).
    empty_poll: Option<Instant>,
    /// For the machine: bytes not read yet.
    inbound: Vec<u8>,
    taken: usize,
    /// The client's stream ended (`</stream:stream>` is in `inbound`) or
    /// the session is over: reads end once `inbound` is read.
    in_end: bool,
    reader: Option<Waker>,
    /// SASL succeeded: the client restarts the stream next (XEP-0206 §5).
    restart_expected: bool,
    /// From the machine: bytes of a unit not complete yet.
    partial: Vec<u8>,
    /// Payloads for the client's next response.
    payloads: Vec<u8>,
    writer: Option<Waker>,
    /// The stream ended while no request was waiting: the body the next
    /// one gets.
    terminal: Option<Bytes>,
    /// Over: every request answered, nothing more is taken.
    pub gone: bool,
}

/// XEP-0206 §3: the stream header the client would have sent.
pub(crate) fn stream_header(
    to: &str,
    lang: Option<&str>,
    version: &str,
    from: Option<&str>,
) -> Vec<u8> {
    use proto::element::escape;
    let mut h = format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='{}'",
        escape(to),
        escape(version)
    );
    if let Some(l) = lang {
        h.push_str(&format!(" xml:lang='{}'", escape(l)));
    }
    if let Some(f) = from {
        h.push_str(&format!(" from='{}'", escape(f)));
    }
    h.push('>');
    h.into_bytes()
}

impl State {
    /// A session created by request `rid`, whose stream starts with
    /// `header` (and the creation request's payloads, if any).
    pub fn new(
        terms: Terms,
        rid: u64,
        creation: Vec<(&'static str, String)>,
        mut header: Vec<u8>,
        req: Request,
        tx: oneshot::Sender<Reply>,
        now: Instant,
    ) -> State {
        header.extend_from_slice(&req.payload);
        let mut st = State {
            creation: Some((rid, creation)),
            last: rid,
            ahead: BTreeMap::new(),
            held: VecDeque::new(),
            cache: VecDeque::new(),
            answered: 0,
            last_answer: now,
            pause: None,
            empty_poll: None,
            inbound: header,
            taken: 0,
            in_end: false,
            reader: None,
            restart_expected: false,
            partial: Vec::new(),
            payloads: Vec::new(),
            writer: None,
            terminal: None,
            gone: false,
            terms,
        };
        st.held.push_back(Held {
            rid,
            tx,
            arrived: now,
            empty: req.is_empty(),
            pause: false,
            due: false,
            report: None,
        });
        st
    }

    pub fn terms(&self) -> &Terms {
        &self.terms
    }

    /// A request of this session (it named its sid).
    pub fn request(&mut self, req: Request, tx: oneshot::Sender<Reply>, now: Instant) {
        if self.gone {
            let _ = tx.send(Condition::ItemNotFound.reply(self.terms.legacy));
            return;
        }
        // The stream ended with nobody to tell: this request is told.
        if let Some(t) = self.terminal.take() {
            let _ = tx.send(Reply::ok(t));
            self.end();
            return;
        }
        let Some(rid) = req.attr("rid").and_then(parse_rid) else {
            return self.kill(Condition::BadRequest, Some(tx));
        };
        // Multiple streams (§16) are not offered: any 'stream' is unknown.
        if req.attr("stream").is_some() {
            return self.kill(Condition::ItemNotFound, Some(tx));
        }
        if rid <= self.last {
            // A retransmission (§14.3): the response again, or the
            // request's place taken over if it is still waiting.
            if let Some(c) = self.cache.iter().find(|c| c.rid == rid) {
                let _ = tx.send(Reply::ok(c.body.clone()));
                return;
            }
            if let Some(h) = self.held.iter_mut().find(|h| h.rid == rid) {
                let old = std::mem::replace(&mut h.tx, tx);
                let _ = old.send(recoverable());
                return;
            }
            return self.kill(Condition::ItemNotFound, Some(tx));
        }
        if let Some(a) = self.ahead.get_mut(&rid) {
            let old = std::mem::replace(&mut a.tx, tx);
            let _ = old.send(recoverable());
            return;
        }
        // A pause or the end may come as one request more (§11).
        let extra = req.is_terminate() || req.attr("pause").is_some();
        let window = self.terms.requests + u64::from(extra);
        if rid - self.last > window {
            return self.kill(Condition::ItemNotFound, Some(tx));
        }
        // Too many requests unanswered at once (§11).
        let waiting = (self.held.len() + self.ahead.len()) as u64;
        if !extra && waiting + 1 > self.terms.requests {
            return self.kill(Condition::PolicyViolation, Some(tx));
        }
        // Polling too often (§12).
        if self.terms.polls
            && !extra
            && req.is_empty()
            && rid == self.last + 1
            && self
                .empty_poll
                .is_some_and(|t| now.duration_since(t) < self.terms.polling)
        {
            return self.kill(Condition::PolicyViolation, Some(tx));
        }
        if rid != self.last + 1 {
            self.ahead.insert(
                rid,
                Ahead {
                    req,
                    tx,
                    arrived: now,
                },
            );
            return;
        }
        self.take(rid, req, tx, now, now);
        while !self.gone
            && let Some(a) = self.ahead.remove(&(self.last + 1))
        {
            self.take(self.last + 1, a.req, a.tx, a.arrived, now);
        }
        self.dispatch(now);
    }

    /// Take request `rid`, the next in order.
    fn take(
        &mut self,
        rid: u64,
        req: Request,
        tx: oneshot::Sender<Reply>,
        arrived: Instant,
        now: Instant,
    ) {
        self.last = rid;
        let pause = req
            .attr("pause")
            .filter(|_| !self.terms.max_pause.is_zero())
            .and_then(|p| p.trim().parse::<u64>().ok())
            .map(|p| Duration::from_secs(p).min(self.terms.max_pause));
        self.pause = pause;
        let mut report = None;
        if self.terms.acks
            && let Some(a) = req.attr("ack").and_then(parse_rid)
        {
            // §14.3: acknowledged responses need not be kept.
            self.cache.retain(|c| c.rid > a);
            // §9.2: a response the client has not seen, sent a while ago.
            if a < self.answered
                && let Some(c) = self.cache.iter().find(|c| c.rid == a + 1)
                && now.duration_since(c.at) >= Duration::from_secs(1)
            {
                report = Some((c.rid, now.duration_since(c.at).as_millis() as u64));
            }
        }
        if self.inbound.len() - self.taken + req.payload.len() > self.terms.max_inbound {
            return self.kill(Condition::PolicyViolation, Some(tx));
        }
        let mut held = Held {
            rid,
            tx,
            arrived,
            empty: req.is_empty(),
            pause: pause.is_some(),
            due: false,
            report,
        };
        if self.in_end {
            // The client's stream is over; nothing more goes to it.
        } else if req.flag("xmpp:restart") {
            // XEP-0206 §5: a new stream, after SASL only; a payload in the
            // restart request is ignored.
            if !self.restart_expected {
                return self.kill(Condition::BadRequest, Some(held.tx));
            }
            self.restart_expected = false;
            let to = req.attr("to").unwrap_or(&self.terms.domain).to_string();
            let version = req.attr("xmpp:version").unwrap_or("1.0").to_string();
            let header = stream_header(&to, req.attr("xml:lang"), &version, req.attr("from"));
            self.give(&header);
        } else {
            self.give(&req.payload);
            if req.is_terminate() {
                // §13: the payloads go to the server, then the stream
                // ends; the oldest request is told.
                self.give(b"</stream:stream>");
                self.in_end = true;
                self.terminal = Some(body::terminate(None));
                held.empty = false;
            }
        }
        self.held.push_back(held);
    }

    /// The wait of request `rid` is over.
    pub fn expire(&mut self, rid: u64, now: Instant) {
        if let Some(a) = self.ahead.remove(&rid) {
            // Its gap did not fill: the client sends again what it has no
            // answer for (§17.3).
            let _ = a.tx.send(recoverable());
            return;
        }
        for h in self.held.iter_mut().filter(|h| h.rid <= rid) {
            h.due = true;
        }
        self.dispatch(now);
    }

    /// Answer what can be answered, oldest first.
    pub fn dispatch(&mut self, now: Instant) {
        if self.gone {
            return;
        }
        if let Some(t) = self.terminal.take() {
            // §13: the oldest request gets the end, the others empty
            // bodies.
            let Some(first) = self.held.pop_front() else {
                self.terminal = Some(t);
                return;
            };
            let _ = first.tx.send(Reply::ok(t));
            self.end();
            return;
        }
        while let Some(front) = self.held.front() {
            let urgent = self.held.len() > self.terms.hold
                || self.held.iter().any(|h| h.pause || h.report.is_some());
            let with_payloads = if front.tx.is_closed() || front.pause {
                // Nobody waits for it (the HTTP connection went), or a
                // pause, whose answer carries no payloads.
                false
            } else if !self.payloads.is_empty() {
                true
            } else if front.due || urgent {
                false
            } else {
                break;
            };
            let Some(h) = self.held.pop_front() else {
                break;
            };
            self.answer(h, with_payloads, now);
        }
        if self.held.is_empty()
            && let Some(w) = self.reader.take()
        {
            // The inactivity timer starts.
            w.wake();
        }
    }

    fn answer(&mut self, h: Held, with_payloads: bool, now: Instant) {
        let mut attrs = Vec::new();
        match self.creation.take() {
            Some((rid, a)) if rid == h.rid => attrs = a,
            other => {
                self.creation = other;
                // §9.1: the highest rid received in order, when it is not
                // this one's.
                if self.terms.acks && self.last != h.rid {
                    attrs.push(("ack", self.last.to_string()));
                }
            }
        }
        if let Some((r, ms)) = h.report {
            attrs.push(("report", r.to_string()));
            attrs.push(("time", ms.to_string()));
        }
        let payload = if with_payloads {
            if let Some(w) = self.writer.take() {
                w.wake();
            }
            std::mem::take(&mut self.payloads)
        } else {
            Vec::new()
        };
        self.empty_poll = (h.empty && payload.is_empty()).then_some(h.arrived);
        let body = body::response(&attrs, &payload);
        if !h.pause {
            self.cache.push_back(Cached {
                rid: h.rid,
                body: body.clone(),
                at: now,
            });
            while self.cache.len() as u64 > self.terms.requests {
                self.cache.pop_front();
            }
        }
        self.answered = self.answered.max(h.rid);
        self.last_answer = now;
        let _ = h.tx.send(Reply::ok(body));
    }

    /// End the session for a binding error: the request that caused it
    /// gets the condition, every other waiting one `other-request`.
    pub fn kill(&mut self, cond: Condition, tx: Option<oneshot::Sender<Reply>>) {
        if let Some(tx) = tx {
            let _ = tx.send(cond.reply(self.terms.legacy));
        }
        for h in std::mem::take(&mut self.held) {
            let _ = h.tx.send(Condition::OtherRequest.reply(false));
        }
        for (_, a) in std::mem::take(&mut self.ahead) {
            let _ = a.tx.send(Condition::OtherRequest.reply(false));
        }
        self.end();
    }

    /// The session is over: waiting requests get empty bodies, the
    /// machine's input ends, its writes are dropped.
    fn end(&mut self) {
        for h in std::mem::take(&mut self.held) {
            let _ = h.tx.send(Reply::ok(body::response(&[], b"")));
        }
        for (_, a) in std::mem::take(&mut self.ahead) {
            let _ = a.tx.send(Reply::ok(body::response(&[], b"")));
        }
        self.gone = true;
        self.in_end = true;
        self.terminal = None;
        self.payloads = Vec::new();
        self.partial = Vec::new();
        self.cache.clear();
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

/// A recoverable binding error (§17.3): the client sends again the
/// requests it has no answer for.
fn recoverable() -> Reply {
    Reply::ok(body::response(&[("type", "error".to_string())], b""))
}

/// A rid: a positive integer of at most 2^53 - 1 (§14.1).
pub(crate) fn parse_rid(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|&r| r < (1 << 53))
}
