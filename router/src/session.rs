//! How the core reaches a bound session on the edge: a bounded queue per
//! session, written by the shards without waiting and read by the
//! session's connection task.
//!
//! The queue allocates nothing until it holds something: an idle session
//! costs a few dozen bytes here, where a tokio mpsc channel allocates its
//! first block of 32 slots (about 1.5 KB) up front, for every session.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use proto::error::StreamCondition;
use proto::trail::Trail;
use tokio::sync::Notify;

/// What the core sends down to a session.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Write these stanza bytes to the client.
    Stanza(Bytes),
    /// Stanza bytes without 'to': the connection writes its own full JID
    /// in (`proto::stanza::with_to`), so that one buffer serves a fan-out
    /// to many sessions.
    Addressed(Bytes),
    /// End the stream with this error (e.g. `<conflict/>` when a new session
    /// took the resource).
    Close(StreamCondition, Option<String>),
    /// Stream management (XEP-0198) counts from here: what comes after
    /// this is what the core keeps until the client acknowledges it. The
    /// connection says `<enabled/>` or `<resumed/>` to its client here.
    SmStart,
}

#[derive(Debug)]
struct State {
    items: VecDeque<(Outbound, Trail)>,
    /// A send found the queue full: the session must be closed.
    overflowed: bool,
    /// The connection task is gone.
    receiver_gone: bool,
    /// Live `SessionSink`s.
    senders: usize,
    /// Bytes of the stanzas queued.
    bytes: usize,
}

#[derive(Debug)]
struct Queue {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
    /// Past this many bytes queued, as past `capacity` items.
    max_bytes: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The core's handle on one bound session. Sends never wait: a session
/// whose queue is full is told to close (a slow reader must not make the
/// server buffer without bound).
///
/// Clones share one state, so that a session's stream management
/// (XEP-0198: the stanzas its client has not acknowledged, kept here at
/// the core) sees every stanza sent to it, through any clone, and a
/// resumption on another connection moves every clone to it at once.
#[derive(Debug, Clone)]
pub struct SessionSink {
    inner: Arc<Mutex<SinkState>>,
}

#[derive(Debug)]
struct SinkState {
    conn_id: u64,
    target: Target,
    sm: Option<Box<SmBuffer>>,
}

impl Drop for SinkState {
    fn drop(&mut self) {
        self.target.release();
    }
}

#[derive(Debug)]
enum Target {
    /// A connection task of this process.
    Local(Arc<Queue>),
    /// A session on a remote edge, reached through that edge's stream.
    Remote(Arc<EdgeLink>),
    /// No connection: a session waiting for its client to resume it
    /// (XEP-0198), or a sink whose connection was handed on.
    Detached,
}

impl Target {
    /// This sink no longer sends to its connection task.
    fn release(&mut self) {
        if let Target::Local(q) = std::mem::replace(self, Target::Detached) {
            let last = {
                let mut st = q.lock();
                st.senders -= 1;
                st.senders == 0
            };
            if last {
                q.notify.notify_one();
            }
        }
    }

    fn send(&self, conn_id: u64, out: Outbound, trail: Trail) -> bool {
        match self {
            Target::Local(q) => SessionSink::send_local(q, out, trail),
            Target::Remote(link) => link.deliver(conn_id, out, &trail),
            Target::Detached => false,
        }
    }
}

/// Stream management (XEP-0198) of one session, at the core: every stanza
/// sent to the session since it enabled it, until its client acknowledges
/// it. The edge writes nothing else that the client counts, so the count
/// here is the client's, and a client whose connection (or whole edge)
/// died resumes on any edge from here.
#[derive(Debug)]
struct SmBuffer {
    /// The resumption id the client was given (random, unguessable).
    id: String,
    /// Whether the session may be resumed (the client asked for it).
    resume: bool,
    /// How many stanzas (mod 2^32) the client acknowledged: the count of
    /// the stanza before `unacked[0]`.
    acked: u32,
    unacked: VecDeque<Outbound>,
    /// Their bytes.
    bytes: usize,
    /// The client's stanzas the edge last said it handled.
    handled: u32,
    /// Past this many unacknowledged stanzas the client is told to close.
    max_unacked: usize,
    /// The client was told to close for not acknowledging.
    told: bool,
    /// Since when the session waits for a resumption (no connection).
    detached_at: Option<std::time::Instant>,
    /// How long it may wait.
    timeout: std::time::Duration,
}

/// Bytes of unacknowledged stanzas one session may hold (besides their
/// count, `max_unacked`): past it, as past the count.
pub const MAX_UNACKED_BYTES: usize = 4 << 20;

fn out_len(o: &Outbound) -> usize {
    match o {
        Outbound::Stanza(b) | Outbound::Addressed(b) => b.len(),
        _ => 0,
    }
}

/// Why a resumption failed (XEP-0198 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefused {
    /// No such resumable session (or it timed out).
    NotFound,
    /// The client says it handled more than it was sent (or fewer than
    /// it acknowledged before); `handled` is the count of the client's
    /// stanzas the server handled (what `<failed h/>` says, §5).
    TooHigh { handled: u32 },
}

/// The core's link to one remote edge: a bounded queue of deliveries that
/// the edge's `Forward` stream carries down. A full queue refuses the
/// delivery (the edge reads too slowly), as a full session queue does.
#[derive(Debug)]
pub struct EdgeLink {
    pub edge: u64,
    tx: tokio::sync::mpsc::Sender<proto::cluster::pb::Delivery>,
    /// The edge federates: it takes stanzas for other servers.
    s2s: std::sync::atomic::AtomicBool,
    /// Stanzas for other servers sent to the edge and not yet written
    /// by it, by number.
    remote: Mutex<RemoteSent>,
}

#[derive(Debug, Default)]
struct RemoteSent {
    next: u64,
    unconfirmed: std::collections::BTreeMap<u64, proto::stanza::Stanza>,
}

/// Stanzas for other servers one edge may hold unconfirmed; past it they
/// are sent without being kept (a lost edge then loses them).
const MAX_REMOTE_KEPT: usize = 100_000;

impl EdgeLink {
    /// A link and the receiving end that feeds the edge's stream.
    pub fn new(
        edge: u64,
        capacity: usize,
    ) -> (
        Arc<EdgeLink>,
        tokio::sync::mpsc::Receiver<proto::cluster::pb::Delivery>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        (
            Arc::new(EdgeLink {
                edge,
                tx,
                s2s: Default::default(),
                remote: Default::default(),
            }),
            rx,
        )
    }

    fn deliver(&self, session: u64, out: Outbound, trail: &Trail) -> bool {
        use proto::cluster::envelope::{DeliveryAction, to_delivery};
        let action = match out {
            Outbound::Stanza(b) => DeliveryAction::Stanza(b),
            Outbound::Addressed(b) => DeliveryAction::Addressed(b),
            Outbound::Close(c, t) => DeliveryAction::Close(c, t),
            Outbound::SmStart => DeliveryAction::SmStart,
        };
        self.tx
            .try_send(to_delivery(vec![session], action, trail))
            .is_ok()
    }

    /// Mark the edge as one that federates.
    pub fn set_s2s(&self, on: bool) {
        self.s2s.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn federates(&self) -> bool {
        self.s2s.load(std::sync::atomic::Ordering::Relaxed) && !self.tx.is_closed()
    }

    /// Hand the edge a stanza for another server, kept until the edge
    /// confirms it; false if its queue is full or gone.
    pub fn remote(&self, s: &proto::stanza::Stanza) -> bool {
        use proto::cluster::envelope::{DeliveryAction, to_delivery};
        let bytes = s.rewrite(s.from.as_ref(), s.to.as_ref());
        let seq = {
            let mut r = self.remote.lock().unwrap_or_else(|p| p.into_inner());
            r.next += 1;
            let seq = r.next;
            if r.unconfirmed.len() < MAX_REMOTE_KEPT {
                r.unconfirmed.insert(seq, s.clone());
            }
            seq
        };
        let sent = self
            .tx
            .try_send(to_delivery(
                Vec::new(),
                DeliveryAction::Remote(bytes, seq),
                &s.trail,
            ))
            .is_ok();
        if !sent {
            self.remote_done(seq);
        }
        sent
    }

    /// The edge wrote (or answered) stanza `seq` for another server.
    pub fn remote_done(&self, seq: u64) {
        self.remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unconfirmed
            .remove(&seq);
    }

    /// What the edge never confirmed (it is gone), oldest first.
    pub fn take_unconfirmed(&self) -> Vec<proto::stanza::Stanza> {
        let mut r = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut r.unconfirmed).into_values().collect()
    }

    /// Tell the edge that its envelope `seq` was processed. After the
    /// deliveries it caused, on the same queue.
    pub fn processed(&self, seq: u64) {
        self.answer(proto::cluster::envelope::DeliveryAction::Processed(seq));
    }

    /// Tell the edge that its envelope `seq` was not processed here (this
    /// node does not lead its shard): it sends it to the leader.
    pub fn redirect(&self, seq: u64) {
        self.answer(proto::cluster::envelope::DeliveryAction::Redirect(seq));
    }

    fn answer(&self, a: proto::cluster::envelope::DeliveryAction) {
        if self
            .tx
            .try_send(proto::cluster::envelope::to_delivery(
                Vec::new(),
                a,
                &Trail::default(),
            ))
            .is_err()
        {
            tracing::debug!(
                edge = self.edge,
                "answer to an envelope dropped (queue full)"
            );
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Deliveries waiting in the queue to the edge.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Nothing waits in the queue to the edge.
    pub fn is_empty(&self) -> bool {
        self.tx.is_closed() || self.tx.capacity() == self.tx.max_capacity()
    }
}

/// An edge's envelope to confirm once processed (see `EdgeLink::processed`).
pub struct Confirm {
    pub link: Arc<EdgeLink>,
    pub seq: u64,
}

impl Confirm {
    pub fn done(self) {
        self.link.processed(self.seq);
    }

    /// Not processed here: the edge sends it to the shard's leader.
    pub fn redirect(self) {
        self.link.redirect(self.seq);
    }
}

/// What the connection task gets from its queue.
#[derive(Debug)]
pub enum Received {
    /// What to do, and the trail of what caused it.
    Item(Outbound, Trail),
    /// The queue overflowed: close the stream (RFC 6120 §4.9.3.12
    /// policy-violation is what the edge sends).
    Overflowed,
    /// Every sink is gone.
    Closed,
}

impl SessionSink {
    fn with(conn_id: u64, target: Target) -> SessionSink {
        SessionSink {
            inner: Arc::new(Mutex::new(SinkState {
                conn_id,
                target,
                sm: None,
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, SinkState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A sink and the receiving half for the connection task.
    pub fn channel(conn_id: u64, capacity: usize) -> (SessionSink, SessionInbox) {
        SessionSink::channel_bounded(conn_id, capacity, usize::MAX)
    }

    /// [`SessionSink::channel`] that also overflows past `max_bytes` of
    /// queued stanzas (a component's connection, whose stanzas may be
    /// large and many).
    pub fn channel_bounded(
        conn_id: u64,
        capacity: usize,
        max_bytes: usize,
    ) -> (SessionSink, SessionInbox) {
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                overflowed: false,
                receiver_gone: false,
                senders: 1,
                bytes: 0,
            }),
            notify: Notify::new(),
            capacity: capacity.max(1),
            max_bytes,
        });
        (
            SessionSink::with(conn_id, Target::Local(queue.clone())),
            SessionInbox { queue },
        )
    }

    /// A sink for session `conn_id` of a remote edge.
    pub fn remote(conn_id: u64, link: Arc<EdgeLink>) -> SessionSink {
        SessionSink::with(conn_id, Target::Remote(link))
    }

    /// The connection (session id) the sink sends to now.
    pub fn conn_id(&self) -> u64 {
        self.state().conn_id
    }

    /// Queue bytes for the client; false if the session is gone or overflowed.
    pub fn send(&self, out: Outbound) -> bool {
        self.send_with(out, Trail::default())
    }

    /// As `send`, with the trail of what caused it (when its cause was
    /// read, and its trace).
    pub fn send_with(&self, out: Outbound, trail: Trail) -> bool {
        let mut st = self.state();
        let conn_id = st.conn_id;
        let SinkState { target, sm, .. } = &mut *st;
        if let Some(sm) = sm
            && matches!(out, Outbound::Stanza(_) | Outbound::Addressed(_))
        {
            sm.bytes += out_len(&out);
            sm.unacked.push_back(out.clone());
            if sm.detached_at.is_some() {
                // Kept for the resumption (or, if none comes, handled as
                // undelivered when the session ends).
                return true;
            }
            if (sm.unacked.len() > sm.max_unacked || sm.bytes > MAX_UNACKED_BYTES) && !sm.told {
                sm.told = true;
                target.send(conn_id, out, trail.clone());
                let text = "too many stanzas unacknowledged (XEP-0198)";
                target.send(
                    conn_id,
                    Outbound::Close(StreamCondition::PolicyViolation, Some(text.into())),
                    trail,
                );
                return true;
            }
            // Kept: whether or not the connection took it (an edge that
            // just died), the buffer hands it on, to a resumption or, at
            // the session's end, as undelivered. Reporting it refused
            // would have it stored offline as well (a duplicate).
            target.send(conn_id, out, trail);
            return true;
        }
        target.send(conn_id, out, trail)
    }

    fn send_local(queue: &Arc<Queue>, out: Outbound, trail: Trail) -> bool {
        let was_empty = {
            let mut st = queue.lock();
            if st.receiver_gone || st.overflowed {
                return false;
            }
            let len = out_len(&out);
            if st.items.len() >= queue.capacity || st.bytes.saturating_add(len) > queue.max_bytes {
                st.overflowed = true;
                st.items.clear();
                st.bytes = 0;
                drop(st);
                queue.notify.notify_one();
                return false;
            }
            st.bytes += len;
            st.items.push_back((out, trail));
            st.items.len() == 1
        };
        // The reader drains everything it finds, so only the first item
        // after it emptied the queue needs to wake it.
        if was_empty {
            queue.notify.notify_one();
        }
        true
    }

    /// The remote edge the session is bound through; `None` for a
    /// connection of this process (or none).
    pub fn edge(&self) -> Option<u64> {
        match &self.state().target {
            Target::Remote(link) => Some(link.edge),
            _ => None,
        }
    }

    /// Whether this sink reaches its session through `link`.
    pub fn is_via(&self, link: &Arc<EdgeLink>) -> bool {
        matches!(&self.state().target, Target::Remote(l) if Arc::ptr_eq(l, link))
    }

    pub fn is_closed(&self) -> bool {
        match &self.state().target {
            Target::Local(q) => q.lock().receiver_gone,
            Target::Remote(link) => link.is_closed(),
            Target::Detached => true,
        }
    }

    /// XEP-0198 §3: count and keep what is sent from now on. The marker
    /// [`Outbound::SmStart`] goes to the connection first: it tells the
    /// client `<enabled/>` there, so that the client counts from the same
    /// stanza as this buffer. False if already enabled.
    pub fn sm_enable(
        &self,
        id: String,
        resume: bool,
        max_unacked: usize,
        timeout: std::time::Duration,
    ) -> bool {
        let mut st = self.state();
        if st.sm.is_some() {
            return false;
        }
        st.sm = Some(Box::new(SmBuffer {
            id,
            resume,
            acked: 0,
            unacked: VecDeque::new(),
            bytes: 0,
            handled: 0,
            max_unacked: max_unacked.max(1),
            told: false,
            detached_at: None,
            timeout,
        }));
        let conn_id = st.conn_id;
        st.target.send(conn_id, Outbound::SmStart, Trail::default());
        true
    }

    /// The client acknowledged `h` stanzas in all, and the edge handled
    /// `handled` of the client's: what is acknowledged is let go.
    pub fn sm_ack(&self, h: u32, handled: u32) {
        let mut st = self.state();
        let Some(sm) = st.sm.as_mut() else { return };
        let n = h.wrapping_sub(sm.acked) as usize;
        // The edge checked h against what it wrote; more than is kept
        // here cannot be (an old ack after a resumption): ignored.
        if n <= sm.unacked.len() {
            let freed: usize = sm.unacked.drain(..n).map(|o| out_len(&o)).sum();
            sm.bytes -= freed;
            sm.acked = h;
        }
        sm.handled = handled;
        if sm.unacked.len() <= sm.max_unacked {
            sm.told = false;
        }
    }

    /// The session's stream management: its resumption id, since when it
    /// waits for a resumption, and what it holds unacknowledged.
    pub fn sm_info(&self) -> Option<SmInfo> {
        let st = self.state();
        st.sm.as_ref().map(|sm| SmInfo {
            id: sm.id.clone(),
            detached_at: sm.detached_at,
            unacked: sm.unacked.len(),
            max_unacked: sm.max_unacked,
            bytes: sm.bytes,
            timeout: sm.timeout,
        })
    }

    /// The connection `conn_id` is gone; the session waits for a
    /// resumption. False if the sink is with another connection now, or
    /// not resumable.
    pub fn sm_detach(&self, conn_id: u64, handled: Option<u32>) -> bool {
        let mut st = self.state();
        if st.conn_id != conn_id || !st.sm.as_ref().is_some_and(|sm| sm.resume) {
            return false;
        }
        st.target.release();
        if let Some(sm) = st.sm.as_mut() {
            if let Some(h) = handled {
                sm.handled = h;
            }
            sm.detached_at.get_or_insert_with(std::time::Instant::now);
        }
        true
    }

    /// XEP-0198 §5: the client handled `h` stanzas; the session goes on
    /// on `new`'s connection (the old one, if any, is told to close).
    /// The marker, then every stanza not acknowledged, go to it first.
    /// Returns the count of the client's stanzas handled.
    pub fn sm_resume(&self, h: u32, new: SessionSink) -> Result<u32, ResumeRefused> {
        let (new_conn, new_target) = {
            let mut n = new.state();
            let t = std::mem::replace(&mut n.target, Target::Detached);
            (n.conn_id, t)
        };
        let mut st = self.state();
        let conn_id = st.conn_id;
        let SinkState { target, sm, .. } = &mut *st;
        let Some(sm) = sm.as_mut().filter(|sm| sm.resume) else {
            return Err(ResumeRefused::NotFound);
        };
        let n = h.wrapping_sub(sm.acked) as usize;
        // An h behind what was acknowledged already (wrapping makes it
        // huge) is an error too: the stanzas it asks for are gone.
        if n > sm.unacked.len() {
            return Err(ResumeRefused::TooHigh {
                handled: sm.handled,
            });
        }
        let freed: usize = sm.unacked.drain(..n).map(|o| out_len(&o)).sum();
        sm.bytes -= freed;
        sm.acked = h;
        sm.told = false;
        sm.detached_at = None;
        let handled = sm.handled;
        let replay: Vec<Outbound> = sm.unacked.iter().cloned().collect();
        target.send(
            conn_id,
            Outbound::Close(
                StreamCondition::Conflict,
                Some("the session was resumed on another connection".into()),
            ),
            Trail::default(),
        );
        target.release();
        *target = new_target;
        st.conn_id = new_conn;
        st.target
            .send(new_conn, Outbound::SmStart, Trail::default());
        for out in replay {
            st.target.send(new_conn, out, Trail::default());
        }
        Ok(handled)
    }

    /// The session ends for good: what its client did not acknowledge,
    /// to be handled as undelivered (RFC 6120 §10, XEP-0198 §4).
    pub fn take_unacked(&self) -> Vec<Outbound> {
        let mut st = self.state();
        match st.sm.as_mut() {
            Some(sm) => {
                sm.bytes = 0;
                sm.unacked.drain(..).collect()
            }
            None => Vec::new(),
        }
    }
}

/// A session's stream management as [`SessionSink::sm_info`] tells it.
#[derive(Debug, Clone)]
pub struct SmInfo {
    pub id: String,
    pub detached_at: Option<std::time::Instant>,
    pub unacked: usize,
    pub max_unacked: usize,
    /// Bytes of the unacknowledged stanzas.
    pub bytes: usize,
    pub timeout: std::time::Duration,
}

/// The connection task's end.
#[derive(Debug)]
pub struct SessionInbox {
    queue: Arc<Queue>,
}

impl SessionInbox {
    /// The next thing to do for the session. Overflow comes first: what
    /// is still queued is dropped with the stream.
    pub async fn recv(&mut self) -> Received {
        loop {
            // Created before looking, so that a send in between is not
            // missed (`notify_one` leaves a permit when nobody waits).
            let notified = self.queue.notify.notified();
            if let Some(r) = self.try_next() {
                return r;
            }
            notified.await;
        }
    }

    /// An item already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<(Outbound, Trail)> {
        match self.try_next() {
            Some(Received::Item(o, t)) => Some((o, t)),
            _ => None,
        }
    }

    /// How many items are queued now.
    pub fn queued(&self) -> usize {
        self.queue.lock().items.len()
    }

    fn try_next(&self) -> Option<Received> {
        let mut st = self.queue.lock();
        if st.overflowed {
            return Some(Received::Overflowed);
        }
        if let Some((o, t)) = st.items.pop_front() {
            st.bytes = st.bytes.saturating_sub(out_len(&o));
            return Some(Received::Item(o, t));
        }
        if st.senders == 0 {
            return Some(Received::Closed);
        }
        // Drained: an idle session keeps no buffer (one allocation per
        // burst is cheap next to holding it for hours).
        if st.items.capacity() > 0 {
            st.items = VecDeque::new();
        }
        None
    }
}

impl Drop for SessionInbox {
    fn drop(&mut self) {
        let mut st = self.queue.lock();
        st.receiver_gone = true;
        st.items = VecDeque::new();
    }
}

/// Session ids of edge `e` are `e << EDGE_SHIFT | n`.
pub const EDGE_SHIFT: u32 = 40;

/// The edge a session id belongs to.
pub fn edge_of(session: u64) -> u64 {
    session >> EDGE_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(s: &'static str) -> Outbound {
        Outbound::Stanza(Bytes::from_static(s.as_bytes()))
    }

    fn text(r: Received) -> String {
        match r {
            Received::Item(Outbound::Stanza(b), _) => String::from_utf8_lossy(&b).into_owned(),
            other => format!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn items_arrive_in_order_and_the_end_is_seen() {
        let (sink, mut inbox) = SessionSink::channel(1, 8);
        let other = sink.clone();
        assert!(sink.send(stanza("a")));
        let trail = Trail {
            received_us: 7,
            span: None,
            via_sender: false,
        };
        assert!(other.send_with(stanza("b"), trail.clone()));
        assert_eq!(text(inbox.recv().await), "a");
        assert!(
            matches!(inbox.try_recv(), Some((Outbound::Stanza(b), t)) if &b[..] == b"b" && t == trail)
        );
        assert!(inbox.try_recv().is_none());
        drop(sink);
        let waiter = tokio::spawn(async move { inbox.recv().await });
        tokio::task::yield_now().await;
        drop(other);
        assert!(matches!(waiter.await.expect("task"), Received::Closed));
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_a_send() {
        let (sink, mut inbox) = SessionSink::channel(1, 8);
        let waiter = tokio::spawn(async move { text(inbox.recv().await) });
        tokio::task::yield_now().await;
        assert!(sink.send(stanza("late")));
        assert_eq!(waiter.await.expect("task"), "late");
    }

    #[tokio::test]
    async fn a_full_queue_overflows_and_takes_no_more() {
        let (sink, mut inbox) = SessionSink::channel(1, 2);
        assert!(sink.send(stanza("1")));
        assert!(sink.send(stanza("2")));
        assert!(!sink.send(stanza("3")));
        assert!(!sink.send(stanza("4")));
        assert!(matches!(inbox.recv().await, Received::Overflowed));
        assert!(inbox.try_recv().is_none());
    }

    #[test]
    fn a_stanza_kept_for_stream_management_counts_as_delivered() {
        // The connection is gone (an edge that just died) but the session
        // keeps what it is sent for a resumption: the send is taken, not
        // refused (a refusal would also store it offline: a duplicate).
        let (sink, inbox) = SessionSink::channel(1, 8);
        assert!(sink.sm_enable("id".into(), true, 10, std::time::Duration::from_secs(60)));
        drop(inbox);
        assert!(sink.send(stanza("kept")));
        let kept = sink.take_unacked();
        assert!(matches!(kept.as_slice(), [Outbound::Stanza(b)] if &b[..] == b"kept"));
    }

    #[tokio::test]
    async fn sends_to_a_gone_session_fail() {
        let (sink, inbox) = SessionSink::channel(1, 2);
        assert!(!sink.is_closed());
        drop(inbox);
        assert!(sink.is_closed());
        assert!(!sink.send(stanza("x")));
    }
}
