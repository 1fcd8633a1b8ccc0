//! An edge's connections to the core tier over gRPC (`cluster.proto`,
//! service `Core`). The edge learns the core nodes and the shard map (which
//! node leads each shard) from any core node's `Admin.Status`, keeps one
//! `Forward` stream to every core node, and sends each stanza up the stream
//! of the node that leads its first shard, in batches; deliveries come down
//! any stream and are handed to each session's queue by its id. A session
//! is bound at the leader of its user's shard (`Bind` is refused elsewhere
//! with the leader's address, and retried there a few times); unbind goes
//! to the node it was bound at. Credentials and registration are unary
//! calls to any node. The map is refreshed every `REFRESH` and after a
//! redirect; a stanza sent to a node that no longer leads its shard is
//! relayed by that node to the leader.
//!
//! The up queues are bounded: when a core falls behind, a connection task
//! waits to hand over its stanza, which stops it reading its socket (the
//! same back-pressure as the in-process shard queue). When the stream to a
//! core node ends, the sessions bound at that node are closed (their
//! clients reconnect and bind at the shard's new leader), and the edge
//! keeps trying to open a new stream, so that a restarted core is found
//! again without restarting the edge.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use proto::cluster::ClusterError;
use proto::cluster::envelope::{DeliveryAction, from_delivery, to_envelope};
use proto::cluster::pb::{self, admin_client::AdminClient, core_client::CoreClient};
use proto::error::StreamCondition;
use proto::sasl::StoredCredentials;
use proto::stanza::Stanza;
use proto::{BareJid, Element, FullJid};
use router::service::{EDGE_HEADER, EDGE_INSTANCE_HEADER};
use router::{BindError, Outbound, SessionSink};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::core_link::{RegisterOutcome, RouteError};

/// Envelopes waiting to go up to one core node before senders wait.
const UP_QUEUE: usize = 4096;
/// Envelopes per batch on the way up.
const BATCH: usize = 256;
/// How often the shard map is asked for again.
const REFRESH: Duration = Duration::from_millis(500);
/// Tries of a bind that is redirected or finds no leader.
const BIND_TRIES: u32 = 6;
/// Unconfirmed envelopes kept per core node; past it the oldest is
/// forgotten (and would not be sent again if the node were lost).
const MAX_UNCONFIRMED: usize = 65_536;
/// How long envelopes of a lost node wait for their shard's new leader.
const RESEND_PATIENCE: Duration = Duration::from_secs(15);
/// How often one envelope is sent on after a redirect (with pauses of
/// 50 ms doubling up to 2 s: about 9 s in all) before it is dropped.
const REDIRECTS: u32 = 9;

/// One core node as the edge sees it.
struct CoreConn {
    id: u64,
    channel: Channel,
    client: CoreClient<Channel>,
    /// The up queue of the current forward stream (replaced when the
    /// stream is opened again after the node was lost).
    up: Mutex<mpsc::Sender<pb::Envelope>>,
    /// The forward stream is open.
    alive: AtomicBool,
    /// The number of the next envelope sent to this node.
    next_seq: AtomicU64,
    /// Envelopes sent to this node and not yet confirmed processed, by
    /// number: sent again elsewhere if the node is lost.
    unconfirmed: Mutex<BTreeMap<u64, pb::Envelope>>,
}

/// Which node leads each shard, and where the nodes are.
#[derive(Default)]
struct ShardMap {
    leaders: Vec<Option<u64>>,
    addrs: HashMap<u64, String>,
    /// The first shard that, by the last status, has no leader among the
    /// core nodes the answering node sees alive (none: all are served).
    unserved: Option<u32>,
}

/// A session of this edge: its queue, its address and the core node it is
/// bound at.
struct Bound {
    sink: SessionSink,
    jid: FullJid,
    core: u64,
}

type Sessions = Arc<Mutex<HashMap<u64, Bound>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct RemoteCore {
    edge: u64,
    /// This process's random number, for an id drawn at random.
    instance: Option<u64>,
    /// A core node refused this edge's random id: another edge holds it.
    id_taken: tokio::sync::watch::Sender<bool>,
    ping: (Duration, Duration),
    cores: RwLock<HashMap<u64, Arc<CoreConn>>>,
    map: RwLock<ShardMap>,
    sessions: Sessions,
    /// The domains served (what is not one of them is a service or remote,
    /// reached through the sender's shard: `first_hop`).
    domains: Vec<String>,
    /// The last sessions with stream management that left this edge
    /// waiting for a resumption (deliveries still coming for them are
    /// kept at the core, not handed back).
    sm_gone: Mutex<std::collections::VecDeque<u64>>,
    /// This edge federates (`s2s.enabled`): the core nodes send it
    /// stanzas for other servers, which go to `s2s` once it is set.
    federates: bool,
    s2s: std::sync::OnceLock<Arc<crate::s2s::S2s>>,
    /// External components (XEP-0114) connected here, by connection id.
    components: Mutex<HashMap<u64, SessionSink>>,
}

/// How many of those are remembered.
const SM_GONE_KEPT: usize = 4096;

/// An error with its causes, outermost first (`transport error: tcp
/// connect error: Connection refused`).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl RemoteCore {
    /// Reach the core tier through the node at `seed` (host:port),
    /// retrying for up to `patience` while it starts; learn the other core
    /// nodes and the shard map from it and open a forward stream to each.
    /// A core node that stops answering HTTP/2 pings for about `liveness`
    /// is taken as lost.
    pub async fn connect(
        edge: u64,
        instance: Option<u64>,
        seed: &str,
        patience: Duration,
        liveness: Duration,
        domains: Vec<String>,
        federates: bool,
    ) -> anyhow::Result<Arc<RemoteCore>> {
        let ping = router::service::liveness(liveness);
        let deadline = tokio::time::Instant::now() + patience;
        // While it waits, a warning every 10 s says why (the cause at the
        // bottom of the error: refused, no such host, ...).
        let mut next_warning = tokio::time::Instant::now() + Duration::from_secs(10);
        let channel = loop {
            match endpoint(seed, ping)?.connect().await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!("cannot reach the core node at {seed}: {}", error_chain(&e))
                }
                Err(e) => {
                    if tokio::time::Instant::now() >= next_warning {
                        tracing::warn!(
                            core = seed,
                            error = %error_chain(&e),
                            "the core node does not answer yet; trying again"
                        );
                        next_warning += Duration::from_secs(10);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
            }
        };
        let status = loop {
            match AdminClient::new(channel.clone())
                .status(pb::StatusRequest { map_only: true })
                .await
            {
                Ok(s) => break s.into_inner(),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!("the core node at {seed} gives no status: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let me = Arc::new(RemoteCore {
            domains,
            edge,
            instance,
            id_taken: tokio::sync::watch::channel(false).0,
            ping,
            cores: RwLock::new(HashMap::new()),
            map: RwLock::new(ShardMap::default()),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            sm_gone: Mutex::new(std::collections::VecDeque::new()),
            federates,
            s2s: std::sync::OnceLock::new(),
            components: Mutex::new(HashMap::new()),
        });
        me.apply_status(&status);
        let cores: Vec<u64> = status
            .members
            .iter()
            .filter(|m| m.role == pb::Role::Core as i32)
            .map(|m| m.id)
            .collect();
        if let [only] = cores[..] {
            // A single core node: the seed address is how this edge reaches
            // it (it may listen on an unspecified address).
            me.add_core(only, channel).await.map_err(|e| {
                if is_taken(&e) {
                    anyhow::anyhow!(IdTaken(edge))
                } else {
                    anyhow::anyhow!("opening the forward stream: {e}")
                }
            })?;
        } else {
            // Several: each at the address its peers know it by.
            me.connect_missing().await;
            if *me.id_taken.borrow() {
                anyhow::bail!(IdTaken(edge));
            }
            if me.conn(None).is_none() {
                anyhow::bail!("no core node listed by {seed} can be reached");
            }
        }
        tokio::spawn(refresh(Arc::downgrade(&me)));
        tracing::info!(edge, core = seed, "connected to the core");
        Ok(me)
    }

    fn apply_status(&self, st: &pb::ClusterStatus) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        // The members as the answering node knows them: nodes added since
        // are connected to, removed ones are not reconnected to.
        let cores: HashMap<u64, String> = st
            .members
            .iter()
            .filter(|m| {
                m.role == pb::Role::Core as i32 && !m.address.is_empty() && m.state.is_empty()
            })
            .map(|m| (m.id, m.address.clone()))
            .collect();
        if !cores.is_empty() {
            map.addrs = cores;
        }
        if !st.shards.is_empty() {
            map.leaders = vec![None; st.shards.len()];
            for s in &st.shards {
                if let Some(slot) = map.leaders.get_mut(s.shard as usize) {
                    *slot = s.leader;
                }
            }
        }
        // A core node waiting for its cluster lists no shards yet; one
        // whose peers died still names their last leaders, which it no
        // longer sees alive.
        let live = |id: u64| {
            st.members
                .iter()
                .any(|m| m.id == id && m.role == pb::Role::Core as i32 && m.healthy)
        };
        map.unserved = if st.shards.is_empty() {
            Some(0)
        } else {
            st.shards
                .iter()
                .find(|s| !s.leader.is_some_and(live))
                .map(|s| s.shard)
        };
    }

    /// A shard that, by the last status a core node gave, no live core
    /// node leads: this edge cannot serve its users.
    pub fn unserved_shard(&self) -> Option<u32> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).unserved
    }

    /// Open the forward stream to core node `id` over `channel`.
    async fn add_core(self: &Arc<Self>, id: u64, channel: Channel) -> Result<(), ClusterError> {
        let client = CoreClient::new(channel.clone());
        let (tx, down) = open_stream(&client, self.edge, self.instance, self.federates)
            .await
            .inspect_err(|e| {
                if is_taken(e) {
                    self.id_taken.send_replace(true);
                }
            })?;
        let conn = Arc::new(CoreConn {
            id,
            channel,
            client,
            up: Mutex::new(tx),
            alive: AtomicBool::new(true),
            next_seq: AtomicU64::new(1),
            unconfirmed: Mutex::new(BTreeMap::new()),
        });
        self.cores
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, conn.clone());
        tokio::spawn(link(
            conn,
            self.edge,
            down,
            self.sessions.clone(),
            Arc::downgrade(self),
        ));
        Ok(())
    }

    /// The core nodes this edge knows, and whether its forward stream to
    /// each is open now (a member it has no stream to is down).
    pub fn links(&self) -> Vec<(u64, bool)> {
        let members: Vec<u64> = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .addrs
            .keys()
            .copied()
            .collect();
        let cores = self.cores.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(u64, bool)> = members
            .iter()
            .map(|id| {
                let up = cores
                    .get(id)
                    .is_some_and(|c| c.alive.load(Ordering::Relaxed));
                (*id, up)
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Connect to the core nodes in the map that have no stream yet.
    async fn connect_missing(self: &Arc<Self>) {
        let missing: Vec<(u64, String)> = {
            let map = self.map.read().unwrap_or_else(|p| p.into_inner());
            let cores = self.cores.read().unwrap_or_else(|p| p.into_inner());
            map.addrs
                .iter()
                .filter(|(id, _)| !cores.contains_key(id))
                .map(|(id, a)| (*id, a.clone()))
                .collect()
        };
        for (id, addr) in missing {
            let Ok(ep) = endpoint(&addr, self.ping) else {
                continue;
            };
            match ep.connect().await {
                Ok(ch) => {
                    if let Err(e) = self.add_core(id, ch).await {
                        tracing::debug!(core = id, error = %e, "no forward stream yet");
                    } else {
                        tracing::info!(edge = self.edge, core = id, addr = %addr, "connected to a core node");
                    }
                }
                Err(e) => tracing::debug!(core = id, error = %e, "core node unreachable"),
            }
        }
    }

    /// The shard of `bare` and its leader, as last known.
    fn shard_of(&self, bare: &str) -> (u32, Option<u64>) {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let n = map.leaders.len().max(1);
        let shard = router::cluster::shard_of(bare, n);
        (shard as u32, map.leaders.get(shard).copied().flatten())
    }

    /// The live connection to `id`, or else to any live core node.
    fn conn(&self, id: Option<u64>) -> Option<Arc<CoreConn>> {
        let cores = self.cores.read().unwrap_or_else(|p| p.into_inner());
        id.and_then(|i| cores.get(&i))
            .filter(|c| c.alive.load(Ordering::Relaxed))
            .or_else(|| cores.values().find(|c| c.alive.load(Ordering::Relaxed)))
            .cloned()
    }

    /// Whether the link to at least one core node is up.
    pub fn connected(&self) -> bool {
        self.cores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|c| c.alive.load(Ordering::Relaxed))
    }

    /// Ask any live core node for the map again.
    async fn refresh_now(self: &Arc<Self>) {
        let conns: Vec<Arc<CoreConn>> = self
            .cores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|c| c.alive.load(Ordering::Relaxed))
            .cloned()
            .collect();
        for c in conns {
            let mut admin = AdminClient::new(c.channel.clone());
            if let Ok(st) = admin.status(pb::StatusRequest { map_only: true }).await {
                self.apply_status(&st.into_inner());
                break;
            }
        }
        self.connect_missing().await;
    }

    pub async fn bind(self: &Arc<Self>, jid: FullJid, sink: SessionSink) -> Result<(), BindError> {
        let session = sink.conn_id();
        let mut pause = Duration::from_millis(50);
        let mut last = BindError::ShuttingDown;
        for _ in 0..BIND_TRIES {
            let (shard, leader) = self.shard_of(jid.bare_str());
            let Some(conn) = self.conn(leader) else {
                tokio::time::sleep(pause).await;
                pause *= 2;
                self.refresh_now().await;
                continue;
            };
            // Deliveries may come before the reply: register first.
            lock(&self.sessions).insert(
                session,
                Bound {
                    sink: sink.clone(),
                    jid: jid.clone(),
                    core: conn.id,
                },
            );
            let req = pb::BindRequest {
                edge: self.edge,
                session,
                full_jid: jid.to_string(),
                component: false,
            };
            let r = conn.client.clone().bind(with_edge(self.edge, req)).await;
            match r {
                Ok(reply) => match pb::bind_reply::Result::try_from(reply.into_inner().result) {
                    Ok(pb::bind_reply::Result::Bound) => return Ok(()),
                    Ok(pb::bind_reply::Result::NoSuchUser) => {
                        lock(&self.sessions).remove(&session);
                        return Err(BindError::NoSuchUser);
                    }
                    _ => last = BindError::ShuttingDown,
                },
                Err(s) => match ClusterError::from(s) {
                    ClusterError::NotLeader { leader, address } => {
                        {
                            let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
                            if let Some(slot) = map.leaders.get_mut(shard as usize) {
                                *slot = leader;
                            }
                            if let (Some(l), Some(a)) = (leader, address.clone()) {
                                map.addrs.insert(l, a);
                            }
                        }
                        last = BindError::NotLeader {
                            leader,
                            addr: address,
                        };
                        self.connect_missing().await;
                    }
                    e => {
                        tracing::warn!(error = %e, "bind failed at the core");
                        last = BindError::ShuttingDown;
                    }
                },
            }
            lock(&self.sessions).remove(&session);
            tokio::time::sleep(pause).await;
            pause *= 2;
            self.refresh_now().await;
        }
        Err(last)
    }

    pub async fn unbind(self: &Arc<Self>, jid: FullJid, session: u64) {
        if lock(&self.sessions).remove(&session).is_none() {
            return;
        }
        // At the leader of the user's shard, which serves the session
        // (it may have moved since the bind).
        let (shard, _) = self.shard_of(jid.bare_str());
        for _ in 0..BIND_TRIES {
            let leader = self.live_leader(shard, None).await;
            let Some(conn) = self.conn(leader) else {
                return;
            };
            let req = pb::UnbindRequest {
                edge: self.edge,
                session,
                full_jid: jid.to_string(),
                lost: false,
                component: false,
            };
            match conn.client.clone().unbind(with_edge(self.edge, req)).await {
                Ok(_) => return,
                Err(s) => {
                    tracing::debug!(error = %ClusterError::from(s), "unbind failed at the core; trying again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.refresh_now().await;
                }
            }
        }
    }

    /// A stream management request (XEP-0198) to the leader of the shard
    /// of `bare`, tried a few times while the lead moves. `None` if no
    /// node answered.
    async fn sm_call(
        self: &Arc<Self>,
        bare: &str,
        session: u64,
        jid: String,
        what: pb::sm_request::What,
    ) -> Option<pb::SmReply> {
        let (shard, _) = self.shard_of(bare);
        for _ in 0..BIND_TRIES {
            let leader = self.live_leader(shard, None).await;
            let Some(conn) = self.conn(leader) else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.refresh_now().await;
                continue;
            };
            let req = pb::SmRequest {
                edge: self.edge,
                session,
                jid: jid.clone(),
                what: Some(what.clone()),
            };
            match conn.client.clone().sm(with_edge(self.edge, req)).await {
                Ok(r) => return Some(r.into_inner()),
                Err(s) => {
                    tracing::debug!(error = %ClusterError::from(s), "stream management request failed; trying again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.refresh_now().await;
                }
            }
        }
        None
    }

    pub async fn sm_enable(
        self: &Arc<Self>,
        jid: FullJid,
        session: u64,
        e: router::modules::sm::SmEnable,
    ) -> bool {
        let what = pb::sm_request::What::Enable(pb::SmEnable {
            id: e.id,
            resume: e.resume,
            max_unacked: e.max_unacked.min(u32::MAX as usize) as u32,
            timeout_secs: e.timeout.as_secs().min(u32::MAX.into()) as u32,
        });
        self.sm_call(jid.bare_str(), session, jid.to_string(), what)
            .await
            .is_some_and(|r| r.result == pb::sm_reply::Result::Ok as i32)
    }

    pub async fn sm_ack(self: &Arc<Self>, jid: FullJid, session: u64, h: u32, handled: u32) {
        let what = pb::sm_request::What::Ack(pb::SmAck { h, handled });
        self.sm_call(jid.bare_str(), session, jid.to_string(), what)
            .await;
    }

    pub async fn sm_echo(self: &Arc<Self>, jid: FullJid, session: u64, bytes: bytes::Bytes) {
        let what = pb::sm_request::What::Echo(bytes);
        self.sm_call(jid.bare_str(), session, jid.to_string(), what)
            .await;
    }

    /// The connection is gone: the session waits for a resumption (or
    /// ends, if not resumable).
    pub async fn sm_detach(self: &Arc<Self>, jid: FullJid, session: u64, handled: u32) {
        // What still comes for it is kept at the core for the resumption:
        // not handed back (noted before it leaves the map, so that no
        // delivery finds it in neither).
        {
            let mut g = lock(&self.sm_gone);
            if g.len() >= SM_GONE_KEPT {
                g.pop_front();
            }
            g.push_back(session);
        }
        if lock(&self.sessions).remove(&session).is_none() {
            return;
        }
        let what = pb::sm_request::What::Detach(handled);
        self.sm_call(jid.bare_str(), session, jid.to_string(), what)
            .await;
    }

    pub async fn sm_resume(
        self: &Arc<Self>,
        user: BareJid,
        previd: String,
        h: u32,
        sink: SessionSink,
    ) -> crate::stream::Resumed {
        use crate::stream::Resumed;
        let session = sink.conn_id();
        let (_, leader) = self.shard_of(user.as_str());
        // Deliveries (the replay) come before the reply: register first,
        // under the user's bare JID until the reply names the resource.
        let Ok(placeholder) = user.with_resource("resuming") else {
            return Resumed::Unavailable;
        };
        lock(&self.sessions).insert(
            session,
            Bound {
                sink,
                jid: placeholder,
                core: leader.unwrap_or(0),
            },
        );
        let what = pb::sm_request::What::Resume(pb::SmResume { previd, h });
        let reply = self
            .sm_call(user.as_str(), session, user.to_string(), what)
            .await;
        let result = match reply {
            Some(r) if r.result == pb::sm_reply::Result::Ok as i32 => {
                match FullJid::parse(&r.full_jid) {
                    Ok(jid) => {
                        if let Some(b) = lock(&self.sessions).get_mut(&session) {
                            b.jid = jid.clone();
                        }
                        return Resumed::Yes(jid, r.h, r.carbons);
                    }
                    Err(_) => Resumed::Unavailable,
                }
            }
            Some(r) if r.result == pb::sm_reply::Result::NotFound as i32 => Resumed::NotFound,
            Some(r) if r.result == pb::sm_reply::Result::TooHigh as i32 => {
                Resumed::TooHigh { handled: r.h }
            }
            _ => Resumed::Unavailable,
        };
        lock(&self.sessions).remove(&session);
        result
    }

    /// Messages that came for sessions already gone from this edge, back
    /// to the core as if sent to the bare JID (`undelivered`); those of
    /// sessions with stream management stay with the core's copy.
    fn hand_back(
        self: Arc<Self>,
        orphans: Vec<(u64, bytes::Bytes)>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            for (session, raw) in orphans {
                if lock(&self.sm_gone).contains(&session) {
                    continue;
                }
                if let Some(st) = crate::undelivered::returned(&raw, None) {
                    tracing::debug!(session, "a message for a gone session handed back");
                    if let Err(e) = self.route(st).await {
                        tracing::warn!(error = %e, "a message for a gone session could not be handed back");
                    }
                }
            }
        })
    }

    pub async fn route(self: &Arc<Self>, stanza: Stanza) -> Result<(), RouteError> {
        let Some(from) = &stanza.from else {
            return Ok(());
        };
        let target = router::shard::first_hop(&stanza, from.bare_str(), &self.domains);
        let (shard, _) = self.shard_of(target);
        let leader = self.live_leader(shard, None).await;
        self.send_envelope(to_envelope(shard, &stanza), leader)
            .await
    }

    /// A stanza from another server: inbound processing at the shard of
    /// its 'to'.
    pub async fn route_inbound(self: &Arc<Self>, stanza: Stanza) {
        let Some(to) = &stanza.to else { return };
        let (shard, _) = self.shard_of(to.bare_str());
        let leader = self.live_leader(shard, None).await;
        let mut env = to_envelope(shard, &stanza);
        env.inbound = true;
        if let Err(e) = self.send_envelope(env, leader).await {
            tracing::debug!(error = %e, "stanza from another server not handed to the core");
        }
    }

    /// The leader of `shard` if the edge has a live stream to it (and it
    /// is not `lost`). While it has none (the leader died and the shard
    /// elects another), ask for the map again until it names a live one,
    /// for at most `RESEND_PATIENCE`: the caller waits, which holds back
    /// its client (back-pressure) rather than hand the stanza to a node
    /// that would relay it to the dead one.
    async fn live_leader(self: &Arc<Self>, shard: u32, lost: Option<u64>) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + RESEND_PATIENCE;
        loop {
            let leader = {
                let map = self.map.read().unwrap_or_else(|p| p.into_inner());
                map.leaders.get(shard as usize).copied().flatten()
            };
            let live = leader
                .is_some_and(|l| Some(l) != lost && self.conn(Some(l)).is_some_and(|c| c.id == l));
            if live || tokio::time::Instant::now() >= deadline {
                return leader;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.refresh_now().await;
        }
    }

    /// Send `env` up the stream of `leader`, else of any live node (that
    /// node relays it), keeping it until the node confirms it.
    async fn send_envelope(
        &self,
        mut env: pb::Envelope,
        leader: Option<u64>,
    ) -> Result<(), RouteError> {
        for pick in [leader, None] {
            let Some(conn) = self.conn(pick) else { break };
            let seq = conn.next_seq.fetch_add(1, Ordering::Relaxed);
            env.seq = seq;
            {
                let mut u = lock(&conn.unconfirmed);
                if u.len() >= MAX_UNCONFIRMED {
                    u.pop_first();
                }
                u.insert(seq, env.clone());
            }
            let up = lock(&conn.up).clone();
            match up.send(env).await {
                Ok(()) => return Ok(()),
                Err(back) => {
                    env = back.0;
                    lock(&conn.unconfirmed).remove(&seq);
                    conn.alive.store(false, Ordering::Relaxed);
                }
            }
        }
        Err(RouteError::Unreachable("no core node is reachable".into()))
    }

    /// Tell the new leaders of their shards that these sessions, bound at
    /// core node `lost`, ended with it (their contacts get unavailable
    /// presence). Boxed for the same reason as `resend`.
    fn report_lost(
        self: Arc<Self>,
        lost: u64,
        sessions: Vec<(u64, FullJid)>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let (mut kept, mut ended) = (0usize, 0usize);
            for (session, jid) in sessions {
                let (shard, _) = self.shard_of(jid.bare_str());
                let mut at = None;
                // A few tries: the map may name a node that no longer leads.
                for _ in 0..BIND_TRIES {
                    let leader = self.live_leader(shard, Some(lost)).await;
                    let Some(conn) = self.conn(leader).filter(|c| c.id != lost) else {
                        break;
                    };
                    let req = pb::UnbindRequest {
                        edge: self.edge,
                        session,
                        full_jid: jid.to_string(),
                        lost: true,
                        component: false,
                    };
                    match conn.client.clone().unbind(with_edge(self.edge, req)).await {
                        Ok(r) => {
                            if r.into_inner().kept {
                                at = Some(conn.id);
                            }
                            break;
                        }
                        Err(s) => {
                            tracing::debug!(error = %ClusterError::from(s), "reporting a lost session failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            self.refresh_now().await;
                        }
                    }
                }
                match at {
                    // Replicated: the new leader serves it, the client's
                    // stream goes on.
                    Some(core) => {
                        if let Some(b) = lock(&self.sessions).get_mut(&session) {
                            b.core = core;
                        }
                        kept += 1;
                    }
                    None => {
                        close_session(&self.sessions, session, "the server lost a core node");
                        ended += 1;
                    }
                }
            }
            tracing::info!(core = lost, kept, ended, "sessions of a lost core node");
        })
    }

    /// Send again what a lost core node had not confirmed, each to its
    /// shard's new leader once the map names a live one.
    /// (Boxed: it reconnects, which starts links, which call it.)
    fn resend(
        self: Arc<Self>,
        lost: u64,
        envelopes: Vec<pb::Envelope>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move { self.resend_now(lost, envelopes).await })
    }

    async fn resend_now(self: &Arc<Self>, lost: u64, envelopes: Vec<pb::Envelope>) {
        if envelopes.is_empty() {
            return;
        }
        tracing::info!(
            core = lost,
            count = envelopes.len(),
            "sending unconfirmed stanzas again"
        );
        for env in envelopes {
            let leader = self.live_leader(env.shard, Some(lost)).await;
            if let Err(e) = self.send_envelope(env, leader).await {
                tracing::warn!(error = %e, "an unconfirmed stanza could not be sent again");
            }
        }
    }

    /// Envelopes a node answered with a redirect (it does not lead their
    /// shard): ask for the map again and send each to the leader, at
    /// most `REDIRECTS` times, waiting longer each time (while a shard's
    /// leadership is handed over, the map may name the old leader for a
    /// second or so).
    fn redirected(
        self: Arc<Self>,
        envelopes: Vec<pb::Envelope>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let hops = envelopes.iter().map(|e| e.hops).max().unwrap_or(0);
            let pause = Duration::from_millis(50u64 << hops.min(6)).min(Duration::from_secs(2));
            tokio::time::sleep(pause).await;
            self.refresh_now().await;
            for mut env in envelopes {
                env.hops += 1;
                if env.hops > REDIRECTS {
                    tracing::warn!(shard = env.shard, "stanza redirected too often; dropped");
                    continue;
                }
                let leader = self.live_leader(env.shard, None).await;
                if let Err(e) = self.send_envelope(env, leader).await {
                    tracing::warn!(error = %e, "a redirected stanza could not be sent");
                }
            }
        })
    }

    pub async fn credentials(
        self: &Arc<Self>,
        user: &BareJid,
    ) -> Result<Option<StoredCredentials>, String> {
        // At the leader of the user's shard; a few tries while the map
        // names a node that no longer leads it.
        let mut last = String::from("no core node is reachable");
        for _ in 0..BIND_TRIES {
            let (shard, _) = self.shard_of(user.as_str());
            let leader = self.live_leader(shard, None).await;
            let conn = self.conn(leader).ok_or("no core node is reachable")?;
            let req = pb::AccountRequest {
                bare_jid: user.to_string(),
            };
            match conn
                .client
                .clone()
                .credentials(with_edge(self.edge, req))
                .await
            {
                Ok(reply) => {
                    return reply
                        .into_inner()
                        .credentials
                        .map(|b| StoredCredentials::from_bytes(&b).map_err(|e| e.to_string()))
                        .transpose();
                }
                Err(s) => {
                    let e = ClusterError::from(s);
                    last = e.to_string();
                    if !e.is_retryable() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.refresh_now().await;
                }
            }
        }
        Err(last)
    }

    pub async fn register(
        &self,
        domain: &str,
        iq_type: &str,
        payload: &Element,
    ) -> Result<RegisterOutcome, String> {
        let conn = self.conn(None).ok_or("no core node is reachable")?;
        let req = pb::RegisterRequest {
            domain: domain.to_owned(),
            iq_type: iq_type.to_owned(),
            payload: payload.to_xml(proto::ns::CLIENT),
        };
        let reply = conn
            .client
            .clone()
            .register(with_edge(self.edge, req))
            .await
            .map_err(|s| ClusterError::from(s).to_string())?
            .into_inner();
        Ok(match reply.result {
            Some(pb::register_reply::Result::Form(f)) => RegisterOutcome::Form(f),
            Some(pb::register_reply::Result::Error(e)) => RegisterOutcome::Error(e),
            None => RegisterOutcome::Done,
        })
    }
}

fn endpoint(addr: &str, (ping, answer): (Duration, Duration)) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .initial_connection_window_size(router::service::CLUSTER_WINDOW_BYTES)
        .http2_keep_alive_interval(ping)
        .keep_alive_timeout(answer)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true))
}

/// End the client stream of `session`, whose core node is gone.
fn close_session(sessions: &Sessions, session: u64, why: &str) {
    if let Some(b) = lock(sessions).remove(&session) {
        b.sink.send(Outbound::Close(
            StreamCondition::InternalServerError,
            Some(why.to_string()),
        ));
    }
}

/// Refresh the shard map every `REFRESH` while the edge runs.
async fn refresh(me: std::sync::Weak<RemoteCore>) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(me) = me.upgrade() else { return };
        me.refresh_now().await;
    }
}

/// A core node refused this edge's id, drawn at random: another running
/// edge holds it.
#[derive(Debug, thiserror::Error)]
#[error("edge id {0} is held by another running edge")]
pub struct IdTaken(pub u64);

fn is_taken(e: &ClusterError) -> bool {
    matches!(e, ClusterError::BadRequest(m) if m == router::service::EDGE_ID_TAKEN)
}

impl RemoteCore {
    /// Where stanzas for other servers go (this edge's federation).
    pub fn set_s2s(&self, s2s: Arc<crate::s2s::S2s>) {
        let _ = self.s2s.set(s2s);
    }

    /// An external component (XEP-0114) for `domain` connected here: at
    /// the leader of the domain's shard.
    pub async fn bind_component(
        self: &Arc<Self>,
        domain: String,
        sink: SessionSink,
    ) -> Result<(), String> {
        let session = sink.conn_id();
        lock(&self.components).insert(session, sink);
        let mut last = String::from("no core node leads the component's shard");
        for _ in 0..BIND_TRIES {
            let (shard, _) = self.shard_of(&domain);
            let leader = self.live_leader(shard, None).await;
            let Some(conn) = self.conn(leader) else {
                self.refresh_now().await;
                continue;
            };
            let req = pb::BindRequest {
                edge: self.edge,
                session,
                full_jid: domain.clone(),
                component: true,
            };
            match conn.client.clone().bind(with_edge(self.edge, req)).await {
                Ok(_) => return Ok(()),
                Err(s) => {
                    last = ClusterError::from(s).to_string();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.refresh_now().await;
                }
            }
        }
        lock(&self.components).remove(&session);
        Err(last)
    }

    /// The component's connection `session` ended.
    pub async fn unbind_component(self: &Arc<Self>, domain: String, session: u64) {
        if lock(&self.components).remove(&session).is_none() {
            return;
        }
        let (shard, _) = self.shard_of(&domain);
        let leader = self.live_leader(shard, None).await;
        if let Some(conn) = self.conn(leader) {
            let req = pb::UnbindRequest {
                edge: self.edge,
                session,
                full_jid: domain,
                lost: false,
                component: true,
            };
            if let Err(s) = conn.client.clone().unbind(with_edge(self.edge, req)).await {
                tracing::debug!(error = %ClusterError::from(s), "component not unbound at the core");
            }
        }
    }

    /// Stanzas a core node sent for other servers: onto this edge's
    /// server-to-server streams, in the order they came; the core node is
    /// told of each once it is written (it keeps them until then).
    fn to_other_servers(&self, conn: &CoreConn, stanzas: Vec<(bytes::Bytes, u64)>) {
        let Some(s2s) = self.s2s.get() else {
            tracing::warn!(
                n = stanzas.len(),
                "stanzas for other servers, but federation is not started here"
            );
            return;
        };
        for (raw, seq) in stanzas {
            let up = lock(&conn.up).clone();
            let receipt = crate::s2s::Receipt::new(move || {
                let done = pb::Envelope {
                    remote_done: seq,
                    ..Default::default()
                };
                if up.try_send(done).is_err() {
                    tracing::debug!(seq, "confirmation of a stanza for another server dropped");
                }
            });
            match Stanza::parse(&raw) {
                Ok(s) => s2s.queue_with(s, Some(receipt)),
                Err(e) => {
                    receipt.done();
                    tracing::warn!(error = ?e, "a stanza for another server did not parse");
                }
            }
        }
    }

    /// Turns true when a core node refuses this edge's random id after
    /// the start (another edge drew it meanwhile): the edge must stop and
    /// start again with another.
    pub fn id_taken(&self) -> tokio::sync::watch::Receiver<bool> {
        self.id_taken.subscribe()
    }
}

/// A request that names this edge.
fn with_edge<T>(edge: u64, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert(EDGE_HEADER, tonic::metadata::MetadataValue::from(edge));
    req
}

/// Open a forward stream: the sender of its up queue and the stream of
/// deliveries.
async fn open_stream(
    client: &CoreClient<Channel>,
    edge: u64,
    instance: Option<u64>,
    federates: bool,
) -> Result<
    (
        mpsc::Sender<pb::Envelope>,
        tonic::Streaming<pb::DeliveryBatch>,
    ),
    ClusterError,
> {
    let (up, rx) = mpsc::channel::<pb::Envelope>(UP_QUEUE);
    let batches = futures::stream::unfold(rx, |mut rx| async move {
        let first = rx.recv().await?;
        let mut envelopes = vec![first];
        while envelopes.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => envelopes.push(e),
                Err(_) => break,
            }
        }
        Some((pb::EnvelopeBatch { envelopes }, rx))
    });
    let mut req = with_edge(edge, batches);
    if let Some(i) = instance {
        req.metadata_mut().insert(
            EDGE_INSTANCE_HEADER,
            tonic::metadata::MetadataValue::from(i),
        );
    }
    if federates {
        req.metadata_mut().insert(
            router::service::EDGE_S2S_HEADER,
            tonic::metadata::MetadataValue::from_static("1"),
        );
    }
    let down = client
        .clone()
        .forward(req)
        .await
        .map_err(|s| {
            if s.code() == tonic::Code::AlreadyExists {
                ClusterError::BadRequest(router::service::EDGE_ID_TAKEN.into())
            } else {
                ClusterError::from(s)
            }
        })?
        .into_inner();
    Ok((up, down))
}

/// The edge's link to one core node for the life of the process: deliver
/// until the stream ends (which closes the sessions bound at that node:
/// it has dropped them), then open a new stream, backing off up to 5 s
/// between tries, so that a restarted node is found again without
/// restarting the edge.
async fn link(
    conn: Arc<CoreConn>,
    edge: u64,
    mut down: tonic::Streaming<pb::DeliveryBatch>,
    sessions: Sessions,
    cluster: std::sync::Weak<RemoteCore>,
) {
    loop {
        let gone = dispatch(&conn, down, sessions.clone(), &cluster).await;
        let pending: Vec<pb::Envelope> = std::mem::take(&mut *lock(&conn.unconfirmed))
            .into_values()
            .collect();
        if let Some(c) = cluster.upgrade() {
            let id = conn.id;
            tokio::spawn(c.clone().resend(id, pending));
            if c.map.read().unwrap_or_else(|p| p.into_inner()).addrs.len() > 1 {
                tokio::spawn(c.report_lost(id, gone));
            } else {
                // The only core node: its sessions end with it.
                for (session, _) in gone {
                    close_session(&sessions, session, "the server lost its core node");
                }
            }
        } else {
            for (session, _) in gone {
                close_session(&sessions, session, "the server lost its core node");
            }
        }
        let mut backoff = Duration::from_millis(100);
        down = loop {
            tokio::time::sleep(backoff).await;
            // A core node removed from the cluster is not waited for.
            if let Some(c) = cluster.upgrade() {
                let member = c
                    .map
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .addrs
                    .contains_key(&conn.id);
                if !member {
                    let mut cores = c.cores.write().unwrap_or_else(|p| p.into_inner());
                    if cores.get(&conn.id).is_some_and(|k| Arc::ptr_eq(k, &conn)) {
                        cores.remove(&conn.id);
                    }
                    tracing::info!(edge, core = conn.id, "core node left the cluster");
                    return;
                }
            }
            let instance = cluster.upgrade().and_then(|c| c.instance);
            let federates = cluster.upgrade().is_some_and(|c| c.federates);
            match open_stream(&conn.client, edge, instance, federates).await {
                Ok((tx, d)) => {
                    *lock(&conn.up) = tx;
                    conn.alive.store(true, Ordering::Relaxed);
                    tracing::info!(edge, core = conn.id, "connected to the core node again");
                    break d;
                }
                Err(e) if is_taken(&e) => {
                    tracing::error!(edge, core = conn.id, "{}", IdTaken(edge));
                    if let Some(c) = cluster.upgrade() {
                        c.id_taken.send_replace(true);
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(core = conn.id, error = %e, "the core node is still unreachable");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
    }
}

/// Hand each delivery to its sessions' queues until the stream ends, then
/// close the sessions bound at that node; returns them.
async fn dispatch(
    conn: &CoreConn,
    mut down: tonic::Streaming<pb::DeliveryBatch>,
    sessions: Sessions,
    cluster: &std::sync::Weak<RemoteCore>,
) -> Vec<(u64, FullJid)> {
    let why = loop {
        match down.next().await {
            Some(Ok(batch)) => {
                let mut redirected = Vec::new();
                let mut orphans: Vec<(u64, bytes::Bytes)> = Vec::new();
                let mut remote: Vec<(bytes::Bytes, u64)> = Vec::new();
                let m = lock(&sessions);
                for d in batch.deliveries {
                    let (ids, action, trail) = match from_delivery(d) {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "bad delivery dropped");
                            continue;
                        }
                    };
                    let out = match action {
                        DeliveryAction::Stanza(b) => Outbound::Stanza(b),
                        DeliveryAction::Addressed(b) => Outbound::Addressed(b),
                        DeliveryAction::Close(c, t) => Outbound::Close(c, t),
                        DeliveryAction::SmStart => Outbound::SmStart,
                        DeliveryAction::Remote(b, seq) => {
                            remote.push((b, seq));
                            continue;
                        }
                        DeliveryAction::Processed(seq) => {
                            lock(&conn.unconfirmed).remove(&seq);
                            continue;
                        }
                        DeliveryAction::Redirect(seq) => {
                            if let Some(env) = lock(&conn.unconfirmed).remove(&seq) {
                                redirected.push(env);
                            }
                            continue;
                        }
                    };
                    for id in ids {
                        match m.get(&id) {
                            Some(b) => {
                                b.sink.send_with(out.clone(), trail.clone());
                            }
                            // A component's connection (XEP-0114).
                            None if let Some(sink) = cluster
                                .upgrade()
                                .and_then(|c| lock(&c.components).get(&id).cloned()) =>
                            {
                                sink.send_with(out.clone(), trail.clone());
                            }
                            // The session ended here before this came: a
                            // message goes back (`undelivered`).
                            None => {
                                if let Outbound::Stanza(raw) = &out {
                                    orphans.push((id, raw.clone()));
                                }
                            }
                        }
                    }
                }
                drop(m);
                if !remote.is_empty()
                    && let Some(c) = cluster.upgrade()
                {
                    c.to_other_servers(conn, remote);
                }
                if !orphans.is_empty()
                    && let Some(c) = cluster.upgrade()
                {
                    tokio::spawn(c.hand_back(orphans));
                }
                if !redirected.is_empty()
                    && let Some(c) = cluster.upgrade()
                {
                    tokio::spawn(c.redirected(redirected));
                }
            }
            Some(Err(s)) => break ClusterError::from(s).to_string(),
            None => break "the core node closed the stream".to_string(),
        }
    };
    conn.alive.store(false, Ordering::Relaxed);
    tracing::error!(core = conn.id, reason = %why, "lost a core node");
    // The sessions bound there: the shards' new leaders have them if they
    // were replicated (see `report_lost`).
    lock(&sessions)
        .iter()
        .filter(|(_, b)| b.core == conn.id)
        .map(|(id, b)| (*id, b.jid.clone()))
        .collect()
}
