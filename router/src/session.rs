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
}

#[derive(Debug)]
struct Queue {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The core's handle on one bound session. Sends never wait: a session
/// whose queue is full is told to close (a slow reader must not make the
/// server buffer without bound).
#[derive(Debug)]
pub struct SessionSink {
    pub conn_id: u64,
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// A connection task of this process.
    Local(Arc<Queue>),
    /// A session on a remote edge, reached through that edge's stream.
    Remote(Arc<EdgeLink>),
}

/// The core's link to one remote edge: a bounded queue of deliveries that
/// the edge's `Forward` stream carries down. A full queue refuses the
/// delivery (the edge reads too slowly), as a full session queue does.
#[derive(Debug)]
pub struct EdgeLink {
    pub edge: u64,
    tx: tokio::sync::mpsc::Sender<proto::cluster::pb::Delivery>,
}

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
        (Arc::new(EdgeLink { edge, tx }), rx)
    }

    fn deliver(&self, session: u64, out: Outbound, trail: &Trail) -> bool {
        use proto::cluster::envelope::{DeliveryAction, to_delivery};
        let action = match out {
            Outbound::Stanza(b) => DeliveryAction::Stanza(b),
            Outbound::Addressed(b) => DeliveryAction::Addressed(b),
            Outbound::Close(c, t) => DeliveryAction::Close(c, t),
        };
        self.tx
            .try_send(to_delivery(vec![session], action, trail))
            .is_ok()
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
    /// A sink and the receiving half for the connection task.
    pub fn channel(conn_id: u64, capacity: usize) -> (SessionSink, SessionInbox) {
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                overflowed: false,
                receiver_gone: false,
                senders: 1,
            }),
            notify: Notify::new(),
            capacity: capacity.max(1),
        });
        (
            SessionSink {
                conn_id,
                target: Target::Local(queue.clone()),
            },
            SessionInbox { queue },
        )
    }

    /// A sink for session `conn_id` of a remote edge.
    pub fn remote(conn_id: u64, link: Arc<EdgeLink>) -> SessionSink {
        SessionSink {
            conn_id,
            target: Target::Remote(link),
        }
    }

    /// Queue bytes for the client; false if the session is gone or overflowed.
    pub fn send(&self, out: Outbound) -> bool {
        self.send_with(out, Trail::default())
    }

    /// As `send`, with the trail of what caused it (when its cause was
    /// read, and its trace).
    pub fn send_with(&self, out: Outbound, trail: Trail) -> bool {
        match &self.target {
            Target::Local(q) => Self::send_local(q, out, trail),
            Target::Remote(link) => link.deliver(self.conn_id, out, &trail),
        }
    }

    fn send_local(queue: &Arc<Queue>, out: Outbound, trail: Trail) -> bool {
        let was_empty = {
            let mut st = queue.lock();
            if st.receiver_gone || st.overflowed {
                return false;
            }
            if st.items.len() >= queue.capacity {
                st.overflowed = true;
                st.items.clear();
                drop(st);
                queue.notify.notify_one();
                return false;
            }
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
    /// connection of this process.
    pub fn edge(&self) -> Option<u64> {
        match &self.target {
            Target::Local(_) => None,
            Target::Remote(link) => Some(link.edge),
        }
    }

    /// Whether this sink reaches its session through `link`.
    pub fn is_via(&self, link: &Arc<EdgeLink>) -> bool {
        matches!(&self.target, Target::Remote(l) if Arc::ptr_eq(l, link))
    }

    pub fn is_closed(&self) -> bool {
        match &self.target {
            Target::Local(q) => q.lock().receiver_gone,
            Target::Remote(link) => link.is_closed(),
        }
    }
}

impl Clone for SessionSink {
    fn clone(&self) -> SessionSink {
        let target = match &self.target {
            Target::Local(q) => {
                q.lock().senders += 1;
                Target::Local(q.clone())
            }
            Target::Remote(link) => Target::Remote(link.clone()),
        };
        SessionSink {
            conn_id: self.conn_id,
            target,
        }
    }
}

impl Drop for SessionSink {
    fn drop(&mut self) {
        let Target::Local(q) = &self.target else {
            return;
        };
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

    #[tokio::test]
    async fn sends_to_a_gone_session_fail() {
        let (sink, inbox) = SessionSink::channel(1, 2);
        assert!(!sink.is_closed());
        drop(inbox);
        assert!(sink.is_closed());
        assert!(!sink.send(stanza("x")));
    }
}
