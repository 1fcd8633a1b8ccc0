//! Stanzas between core nodes. A stanza can reach a core node that does
//! not lead its next shard: an edge's shard map was stale, or a shard of
//! this node routes to a user whose shard another node leads (a room's
//! message to its occupants, a PubSub notification to subscribers). The
//! node hands it to the leader over one stream per peer
//! (`Core.RelayAcked`), batched like an edge's forward stream.
//!
//! Relays are at least once. The peer acknowledges each batch once its
//! shards have handled its stanzas (or the next peer has acknowledged
//! those it relayed on); what it has not acknowledged when the stream fails is sent again to
//! the leader of its shard as this node then knows it: the same peer
//! once it is back, another node after an election, or this node's own
//! shards. A stanza not acknowledged within [`GIVE_UP`] is dropped and
//! logged. What a shard lets out for an edge's stanza, relayed or handed
//! to another shard of this node, is collected ([`collect`]), so that
//! the edge is told its stanza was processed only once all of it was
//! handled: should this node or the peer die before, the edge sends the
//! stanza again to the shard's new leader rather than lose what was
//! still queued.
//!
//! The queue to each peer is bounded; when it is full, stanzas are
//! dropped and counted in the log (the sender's edge gets no error: the
//! same as a lost connection). A peer of an earlier version, without
//! `RelayAcked`, is sent stanzas over `Core.Relay` without
//! acknowledgements.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use proto::cluster::pb::{self, core_client::CoreClient};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::{Channel, Endpoint};

/// Stanzas queued for one peer before further ones are dropped (and as
/// many again sent and not yet acknowledged).
const QUEUE: usize = 16_384;
/// Envelopes per batch.
const BATCH: usize = 256;
/// A relayed stanza is dropped after this many hops.
pub const MAX_HOPS: u32 = 4;
/// A stanza no peer has acknowledged for this long is dropped.
pub const GIVE_UP: Duration = Duration::from_secs(30);
/// The pause before a failed stream is opened again.
const RETRY: Duration = Duration::from_millis(200);
/// How long a peer may leave a stanza unacknowledged, or a call
/// unanswered, before the shard's leader is looked up again.
const ACK_PATIENCE: Duration = Duration::from_secs(3);

/// Where a stanza for a shard goes now.
pub enum Next {
    /// To the core node at this address, which leads the shard.
    Peer(String),
    /// To this node's own shards (which wait for an election's outcome
    /// or relay it on).
    Here,
}

/// What the relays ask of the node when a stream to a peer fails.
pub trait Reroute: Send + Sync {
    /// Where a stanza for shard `shard` goes now.
    fn next(&self, shard: u32) -> Next;
    /// Take stanzas at this node, in order, as if a peer had relayed
    /// them here; resolves to whether they were all handled.
    fn here(
        &self,
        envs: Vec<pb::Envelope>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;
}

/// A relayed stanza waiting for its peer's acknowledgement, and who
/// waits on it.
struct Item {
    env: pb::Envelope,
    receipt: Option<oneshot::Sender<()>>,
    since: Instant,
}

impl Item {
    /// A node has it: whoever waits on it goes on.
    fn taken(self) -> pb::Envelope {
        if let Some(r) = self.receipt {
            let _ = r.send(());
        }
        self.env
    }
}

#[derive(Default)]
struct Inner {
    queues: Mutex<HashMap<String, mpsc::Sender<Item>>>,
    reroute: OnceLock<Arc<dyn Reroute>>,
}

/// The relay queues of one core node, by peer address.
#[derive(Clone, Default)]
pub struct Relays(Arc<Inner>);

/// What a [`collect`] scope gathered: the relays made, and this node's
/// shards that were handed stanzas.
#[derive(Default)]
struct Collected {
    acks: Vec<oneshot::Receiver<()>>,
    shards: Vec<usize>,
}

tokio::task_local! {
    static COLLECTED: RefCell<Collected>;
}

/// What a [`collect`] scope handed on: the acknowledgements of its
/// relays, and the shards of this node that it handed stanzas to (whose
/// handling the caller waits for with a barrier of its own).
#[must_use]
pub struct Receipts {
    acks: Vec<oneshot::Receiver<()>>,
    shards: Vec<usize>,
}

impl Receipts {
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty() && self.shards.is_empty()
    }

    /// The shards of this node that were handed stanzas.
    pub fn take_shards(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.shards)
    }

    /// Wait on `rx` too.
    pub fn add(&mut self, rx: oneshot::Receiver<()>) {
        self.acks.push(rx);
    }

    /// Wait until every stanza was acknowledged by a peer, handled
    /// here, or given up (each logged): true. False when one was dropped
    /// unhandled because this node is stopping (a shard's task or a
    /// relay queue ended): the caller then confirms nothing, and the
    /// edge sends its stanza again to the shard's next leader.
    pub async fn wait(self) -> bool {
        let mut all = true;
        for r in self.acks {
            all &= r.await.is_ok();
        }
        all
    }
}

impl From<Collected> for Receipts {
    fn from(c: Collected) -> Receipts {
        Receipts {
            acks: c.acks,
            shards: c.shards,
        }
    }
}

/// Run `f`; the stanzas it relays or hands to this node's shards are
/// accounted for in the receipts.
pub fn collect(f: impl FnOnce()) -> Receipts {
    COLLECTED.sync_scope(RefCell::new(Collected::default()), || {
        f();
        COLLECTED.with(|c| c.take()).into()
    })
}

/// [`collect`] for a future.
pub async fn collect_async<T>(f: impl std::future::Future<Output = T>) -> (T, Receipts) {
    COLLECTED
        .scope(RefCell::new(Collected::default()), async move {
            let t = f.await;
            (t, COLLECTED.with(|c| c.take()).into())
        })
        .await
}

/// Note, within a [`collect`] scope, that this node's shard `i` was
/// handed a stanza.
pub fn touched(i: usize) {
    let _ = COLLECTED.try_with(|c| {
        let mut c = c.borrow_mut();
        if !c.shards.contains(&i) {
            c.shards.push(i);
        }
    });
}

impl Relays {
    /// Tell the relays how to find a shard's leader again.
    pub fn set_reroute(&self, r: Arc<dyn Reroute>) {
        let _ = self.0.reroute.set(r);
    }

    /// Queue `env` for the core node at `addr`.
    pub fn send(&self, addr: &str, env: pb::Envelope) {
        let receipt = COLLECTED
            .try_with(|c| {
                let (tx, rx) = oneshot::channel();
                c.borrow_mut().acks.push(rx);
                tx
            })
            .ok();
        self.enqueue(
            addr,
            Item {
                env,
                receipt,
                since: Instant::now(),
            },
        );
    }

    /// Queue `item` for `addr`. A stanza dropped here (too many hops, a
    /// full queue) is logged and counts as taken: waiting on it could
    /// never end.
    fn enqueue(&self, addr: &str, item: Item) {
        if item.env.hops > MAX_HOPS {
            tracing::warn!(to = addr, "stanza relayed too often; dropped");
            item.taken();
            return;
        }
        let tx = {
            let mut m = self.0.queues.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(addr.to_string())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    tokio::spawn(run(addr.to_string(), rx, Arc::downgrade(&self.0)));
                    tx
                })
                .clone()
        };
        if let Err(e) = tx.try_send(item) {
            tracing::warn!(to = addr, "relay queue full or closed; stanza dropped");
            let (mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item)) =
                e;
            item.taken();
        }
    }
}

/// How one call to a peer ended.
enum Ended {
    /// This node is stopping (the queue's senders are gone).
    Stopping,
    /// The peer does not know `RelayAcked`.
    Unimplemented,
    /// The call failed or the peer could not be reached.
    Failed,
}

/// Keep a stream open to `addr` and feed it the queue; on failure, send
/// what it did not acknowledge to where its shard is led now.
async fn run(addr: String, mut rx: mpsc::Receiver<Item>, relays: Weak<Inner>) {
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(1))
            // A connection whose peer vanished (no reset) fails within
            // seconds rather than at TCP's retransmission timeout.
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(4))
            .keep_alive_while_idle(true)
            .initial_connection_window_size(crate::service::CLUSTER_WINDOW_BYTES)
            .tcp_nodelay(true),
        Err(e) => {
            tracing::error!(to = %addr, error = %e, "bad peer address; relaying to it is off");
            return;
        }
    };
    let mut client = CoreClient::new(endpoint.connect_lazy());
    let mut pending: VecDeque<Item> = VecDeque::new();
    let mut legacy = false;
    loop {
        let ended = if legacy {
            call_legacy(&mut client, &mut rx, &mut pending).await
        } else {
            let reroute = relays.upgrade().and_then(|i| i.reroute.get().cloned());
            call(&mut client, &mut rx, &mut pending, &addr, reroute).await
        };
        match ended {
            Ended::Stopping => return,
            Ended::Unimplemented => {
                tracing::info!(to = %addr, "peer without acknowledged relays; relaying without them");
                legacy = true;
                continue;
            }
            // A peer restarted at a later version gets acknowledged
            // relays again.
            Ended::Failed => legacy = false,
        }
        tokio::time::sleep(RETRY).await;
        let Some(inner) = relays.upgrade() else {
            return;
        };
        let Some(reroute) = inner.reroute.get().cloned() else {
            continue;
        };
        let relays = Relays(inner);
        // What waits in the queue goes where its shard is led now too.
        while pending.len() < QUEUE {
            match rx.try_recv() {
                Ok(i) => pending.push_back(i),
                Err(_) => break,
            }
        }
        let mut dropped = 0usize;
        let mut keep = VecDeque::with_capacity(pending.len());
        let mut here = Vec::new();
        for item in pending.drain(..) {
            if item.since.elapsed() > GIVE_UP {
                dropped += 1;
                item.taken();
                continue;
            }
            match reroute.next(item.env.shard) {
                Next::Peer(a) if a == addr => keep.push_back(item),
                Next::Peer(a) => relays.enqueue(&a, item),
                Next::Here => here.push(item),
            }
        }
        pending = keep;
        if !here.is_empty() {
            // Handled here in their order; their waiters go on once
            // this node's shards have handled them.
            let handled = reroute.here(here.iter().map(|i| i.env.clone()).collect());
            tokio::spawn(async move {
                if handled.await {
                    for i in here {
                        i.taken();
                    }
                }
            });
        }
        if dropped > 0 {
            tracing::warn!(to = %addr, dropped, "relayed stanzas unacknowledged for too long; dropped");
        }
    }
}

/// One `RelayAcked` call: send `pending` (sent before, not acknowledged),
/// then what comes on the queue, and drop each item (answering its
/// receipt) once the peer has taken it.
///
/// A peer that leaves the oldest stanza unacknowledged for
/// [`ACK_PATIENCE`] while another node now leads that stanza's shard (it
/// hangs, or is cut off from this node and lost the lead) is given up:
/// the call ends and its stanzas go to the new leader.
async fn call(
    client: &mut CoreClient<Channel>,
    rx: &mut mpsc::Receiver<Item>,
    pending: &mut VecDeque<Item>,
    addr: &str,
    reroute: Option<Arc<dyn Reroute>>,
) -> Ended {
    let (out, out_rx) = mpsc::channel::<pb::EnvelopeBatch>(4);
    let up = futures::stream::unfold(
        out_rx,
        |mut r| async move { r.recv().await.map(|b| (b, r)) },
    );
    let mut acks = match tokio::time::timeout(ACK_PATIENCE, client.relay_acked(up)).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => return Ended::Unimplemented,
        Ok(Err(s)) => {
            tracing::debug!(error = %s, "relay call failed; again shortly");
            return Ended::Failed;
        }
        Err(_) => {
            tracing::debug!(to = addr, "relay call unanswered; again shortly");
            return Ended::Failed;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Of `pending`, how many went out on this call; how many the peer took.
    let mut sent = 0usize;
    let mut taken = 0u64;
    let mut closed = false;
    loop {
        if closed && pending.is_empty() {
            return Ended::Stopping;
        }
        let unsent = sent < pending.len();
        tokio::select! {
            biased;
            a = acks.message() => match a {
                Ok(Some(a)) => {
                    let n = (a.taken.saturating_sub(taken) as usize).min(sent);
                    taken = a.taken;
                    for i in pending.drain(..n) {
                        i.taken();
                    }
                    sent -= n;
                }
                Ok(None) => return Ended::Failed,
                Err(s) => {
                    tracing::debug!(error = %s, "relay stream ended; reopening");
                    return Ended::Failed;
                }
            },
            permit = out.reserve(), if unsent => {
                let Ok(permit) = permit else { return Ended::Failed };
                let end = (sent + BATCH).min(pending.len());
                let envelopes = pending.range(sent..end).map(|i| i.env.clone()).collect();
                permit.send(pb::EnvelopeBatch { envelopes });
                sent = end;
            }
            _ = tick.tick() => {
                let stuck = pending.front().filter(|i| i.since.elapsed() > ACK_PATIENCE);
                if let (Some(i), Some(r)) = (stuck, &reroute)
                    && !matches!(r.next(i.env.shard), Next::Peer(a) if a == addr)
                {
                    tracing::info!(to = addr, pending = pending.len(), "relay peer unanswering and no longer the leader; its stanzas go to the new one");
                    return Ended::Failed;
                }
            }
            item = rx.recv(), if !closed && pending.len() < QUEUE => match item {
                Some(i) => {
                    pending.push_back(i);
                    while pending.len() < QUEUE {
                        match rx.try_recv() {
                            Ok(i) => pending.push_back(i),
                            Err(_) => break,
                        }
                    }
                }
                None => closed = true,
            },
        }
    }
}

/// A `Relay` call to a peer of an earlier version: stanzas are taken as
/// delivered once written to the call.
async fn call_legacy(
    client: &mut CoreClient<Channel>,
    rx: &mut mpsc::Receiver<Item>,
    pending: &mut VecDeque<Item>,
) -> Ended {
    let (out, out_rx) = mpsc::channel::<pb::EnvelopeBatch>(4);
    let up = futures::stream::unfold(
        out_rx,
        |mut r| async move { r.recv().await.map(|b| (b, r)) },
    );
    let mut client = client.clone();
    let call = tokio::spawn(async move { client.relay(up).await });
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(i) => pending.push_back(i),
                None => {
                    drop(out);
                    let _ = call.await;
                    return Ended::Stopping;
                }
            }
            while pending.len() < BATCH {
                match rx.try_recv() {
                    Ok(i) => pending.push_back(i),
                    Err(_) => break,
                }
            }
        }
        let envelopes = pending.iter().map(|i| i.env.clone()).collect();
        if out.send(pb::EnvelopeBatch { envelopes }).await.is_err() {
            return match call.await {
                Ok(Err(s)) => {
                    tracing::debug!(error = %s, "relay stream ended; reopening");
                    Ended::Failed
                }
                _ => Ended::Failed,
            };
        }
        for i in pending.drain(..) {
            i.taken();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The relays against hand-written peers over real sockets: a peer of
    //! an earlier version (no `RelayAcked`), one that takes stanzas and
    //! never acknowledges them, one that acknowledges, and none at all.
    use super::*;
    use futures::{Stream, StreamExt};
    use proto::cluster::pb::core_server::{Core, CoreServer};
    use std::pin::Pin;
    use tonic::{Request, Response, Status, Streaming};

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// Serves only `Relay`.
        Legacy,
        /// Acknowledges each batch.
        Acks,
        /// Takes batches and never acknowledges them; ends the call with
        /// an error when told to.
        Silent,
    }

    #[derive(Clone)]
    struct Peer {
        mode: Mode,
        got: Arc<Mutex<Vec<String>>>,
        fail: Arc<tokio::sync::Notify>,
    }

    type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

    fn no<T>() -> Result<T, Status> {
        Err(Status::unimplemented("not in this peer"))
    }

    impl Peer {
        async fn take(&self, batch: Result<pb::EnvelopeBatch, Status>) -> bool {
            let Ok(batch) = batch else { return false };
            let mut got = self.got.lock().expect("lock");
            got.extend(
                batch
                    .envelopes
                    .into_iter()
                    .map(|e| e.to.unwrap_or_default()),
            );
            true
        }
    }

    #[tonic::async_trait]
    impl Core for Peer {
        type ForwardStream = Out<pb::DeliveryBatch>;
        type RelayAckedStream = Out<pb::RelayAck>;

        async fn forward(
            &self,
            _: Request<Streaming<pb::EnvelopeBatch>>,
        ) -> Result<Response<Self::ForwardStream>, Status> {
            no()
        }
        async fn bind(
            &self,
            _: Request<pb::BindRequest>,
        ) -> Result<Response<pb::BindReply>, Status> {
            no()
        }
        async fn unbind(
            &self,
            _: Request<pb::UnbindRequest>,
        ) -> Result<Response<pb::UnbindReply>, Status> {
            no()
        }
        async fn credentials(
            &self,
            _: Request<pb::AccountRequest>,
        ) -> Result<Response<pb::CredentialsReply>, Status> {
            no()
        }
        async fn register(
            &self,
            _: Request<pb::RegisterRequest>,
        ) -> Result<Response<pb::RegisterReply>, Status> {
            no()
        }
        async fn sm(&self, _: Request<pb::SmRequest>) -> Result<Response<pb::SmReply>, Status> {
            no()
        }

        async fn relay(
            &self,
            req: Request<Streaming<pb::EnvelopeBatch>>,
        ) -> Result<Response<pb::Empty>, Status> {
            let mut up = req.into_inner();
            while let Some(b) = up.next().await {
                self.take(b).await;
            }
            Ok(Response::new(pb::Empty {}))
        }

        async fn relay_acked(
            &self,
            req: Request<Streaming<pb::EnvelopeBatch>>,
        ) -> Result<Response<Self::RelayAckedStream>, Status> {
            if self.mode == Mode::Legacy {
                return no();
            }
            let mut up = req.into_inner();
            let (tx, rx) = mpsc::channel(16);
            let me = self.clone();
            tokio::spawn(async move {
                let mut taken = 0u64;
                loop {
                    tokio::select! {
                        b = up.next() => {
                            let Some(b) = b else { return };
                            let n = b.as_ref().map(|b| b.envelopes.len() as u64).unwrap_or(0);
                            if !me.take(b).await {
                                return;
                            }
                            taken += n;
                            if me.mode == Mode::Acks
                                && tx.send(Ok(pb::RelayAck { taken })).await.is_err()
                            {
                                return;
                            }
                        }
                        _ = me.fail.notified() => {
                            let _ = tx.send(Err(Status::unavailable("going away"))).await;
                            return;
                        }
                    }
                }
            });
            let down =
                futures::stream::unfold(
                    rx,
                    |mut rx| async move { rx.recv().await.map(|a| (a, rx)) },
                );
            Ok(Response::new(Box::pin(down)))
        }
    }

    async fn serve(mode: Mode) -> (Peer, String) {
        let peer = Peer {
            mode,
            got: Arc::default(),
            fail: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let svc = CoreServer::new(peer.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (peer, addr)
    }

    fn envelope(i: usize) -> pb::Envelope {
        pb::Envelope {
            shard: 3,
            to: Some(format!("m{i}@example.test")),
            ..Default::default()
        }
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where shard 3 is led: a peer, or (None) this node.
    #[derive(Default)]
    struct Route {
        target: Mutex<Option<String>>,
        here: Mutex<Vec<String>>,
    }

    impl Reroute for Route {
        fn next(&self, shard: u32) -> Next {
            assert_eq!(shard, 3);
            match self.target.lock().expect("lock").clone() {
                Some(a) => Next::Peer(a),
                None => Next::Here,
            }
        }
        fn here(
            &self,
            envs: Vec<pb::Envelope>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> {
            let mut here = self.here.lock().expect("lock");
            here.extend(envs.into_iter().map(|e| e.to.unwrap_or_default()));
            Box::pin(async { true })
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}@example.test")).collect()
    }

    #[tokio::test]
    async fn a_peer_of_an_earlier_version_gets_relays_without_acknowledgements() {
        let (peer, addr) = serve(Mode::Legacy).await;
        let relays = Relays::default();
        let r = collect(|| {
            for i in 0..10 {
                relays.send(&addr, envelope(i));
            }
        });
        until("the legacy peer's stanzas", || {
            peer.got.lock().expect("lock").len() == 10
        })
        .await;
        let handled = tokio::time::timeout(Duration::from_secs(10), r.wait())
            .await
            .expect("written stanzas count as taken");
        assert!(handled);
        assert_eq!(*peer.got.lock().expect("lock"), names(10));
    }

    /// A silent peer `a` that leads shard 3 has taken `n` relayed
    /// stanzas, and a peer `b` that acknowledges waits; the stanzas'
    /// receipts are being waited on.
    struct Handover {
        silent: Peer,
        acks: Peer,
        b: String,
        route: Arc<Route>,
        waiting: tokio::task::JoinHandle<bool>,
        _relays: Relays,
    }

    async fn handover(n: usize) -> Handover {
        let (silent, a) = serve(Mode::Silent).await;
        let (acks, b) = serve(Mode::Acks).await;
        let route = Arc::new(Route::default());
        *route.target.lock().expect("lock") = Some(a.clone());
        let relays = Relays::default();
        relays.set_reroute(route.clone());
        let r = collect(|| {
            for i in 0..n {
                relays.send(&a, envelope(i));
            }
        });
        until("the silent peer's stanzas", || {
            silent.got.lock().expect("lock").len() == n
        })
        .await;
        Handover {
            silent,
            acks,
            b,
            route,
            waiting: tokio::spawn(r.wait()),
            _relays: relays,
        }
    }

    impl Handover {
        /// The receipts resolve once `b` acknowledged every stanza.
        async fn done_at_b(self, n: usize) {
            let handled = tokio::time::timeout(Duration::from_secs(10), self.waiting)
                .await
                .expect("acknowledged by the new leader")
                .expect("waiter");
            assert!(handled);
            assert_eq!(*self.acks.got.lock().expect("lock"), names(n));
        }
    }

    #[tokio::test]
    async fn unacknowledged_relays_go_to_the_shards_new_leader_when_the_stream_fails() {
        let h = handover(20).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!h.waiting.is_finished(), "nothing was acknowledged");
        // The shard's lead moves to b, and a's stream fails.
        *h.route.target.lock().expect("lock") = Some(h.b.clone());
        h.silent.fail.notify_waiters();
        h.done_at_b(20).await;
    }

    #[tokio::test]
    async fn a_peer_that_stops_answering_and_loses_the_lead_is_given_up() {
        let h = handover(8).await;
        // Still the leader: waited for, however long it takes.
        tokio::time::sleep(ACK_PATIENCE + Duration::from_secs(1)).await;
        assert!(!h.waiting.is_finished());
        assert!(h.acks.got.lock().expect("lock").is_empty());
        // The lead moves while the stream stays open and silent.
        *h.route.target.lock().expect("lock") = Some(h.b.clone());
        h.done_at_b(8).await;
    }

    #[tokio::test]
    async fn relays_queued_for_an_unreachable_peer_come_back_when_this_node_leads() {
        // A port nobody listens on.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("address").to_string()
        };
        let route = Arc::new(Route::default());
        *route.target.lock().expect("lock") = Some(dead.clone());
        let relays = Relays::default();
        relays.set_reroute(route.clone());
        let r = collect(|| {
            for i in 0..5 {
                relays.send(&dead, envelope(i));
            }
        });
        let waiting = tokio::spawn(r.wait());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(route.here.lock().expect("lock").is_empty());
        assert!(!waiting.is_finished());
        // This node now leads shard 3.
        *route.target.lock().expect("lock") = None;
        let handled = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("taken here")
            .expect("waiter");
        assert!(handled);
        assert_eq!(*route.here.lock().expect("lock"), names(5));
    }
}
