//! [`Core`]: the edge's one interface to the core tier. In one process the
//! calls become messages on the shard tasks' channels; in a cluster the same
//! messages travel over gRPC to the shard's leader.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::BasicNode;

use proto::stanza::Stanza;
use proto::{BareJid, FullJid};
use tokio::sync::{mpsc, oneshot};

use crate::Store;
use crate::accounts::{AccountError, Accounts};
use crate::config::CoreConfig;
use crate::membership::placement;
use crate::modules::registry::Registry;
use crate::raft::{Groups, Network, ProposeError, Proposer, Raft};
use crate::relay::Relays;
use crate::session::{Confirm, SessionSink};
use crate::shard::{self, ShardMsg};

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the core is shutting down")]
    ShuttingDown,
    #[error("account: {0}")]
    Account(#[from] AccountError),
    #[error("module registry: {0}")]
    Registry(String),
    #[error("raft: {0}")]
    Raft(String),
    /// A membership change that cannot be made as asked.
    #[error("membership: {0}")]
    Membership(String),
    /// This node does not lead the shard; `leader` does, if known.
    #[error("not the shard's leader (leader: {leader:?} at {addr:?})")]
    NotLeader {
        leader: Option<u64>,
        addr: Option<String>,
    },
}

/// An account change, as the leader of the user's shard makes it.
#[derive(Debug, Clone)]
pub enum AccountOp {
    Add(proto::sasl::StoredCredentials),
    SetCredentials(proto::sasl::StoredCredentials),
    Delete,
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("no such account")]
    NoSuchUser,
    /// Another core node leads the user's shard.
    #[error("not the shard's leader (leader: {leader:?} at {addr:?})")]
    NotLeader {
        leader: Option<u64>,
        addr: Option<String>,
    },
    #[error("the core is shutting down")]
    ShuttingDown,
}

/// Tell shard task `tx` when this node stops leading its group.
async fn watch_leadership(raft: Raft, me: u64, tx: mpsc::UnboundedSender<ShardMsg>) {
    let mut rx = raft.metrics();
    let mut leading = rx.borrow().current_leader == Some(me);
    while rx.changed().await.is_ok() {
        let now = rx.borrow().current_leader == Some(me);
        if leading && !now && tx.send(ShardMsg::Demoted).is_err() {
            return;
        }
        leading = now;
    }
}

/// Spread the shards' leaders over the core nodes: a node takes over each
/// shard it should lead but does not (after a start, after it comes back
/// from a failure and has caught up, or after it joined), see
/// [`take_over`].
async fn balance(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(BALANCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sh) = shared.upgrade() else { return };
        let me = sh.cfg.node_id;
        let members = sh.members();
        for (i, r) in sh.rafts.iter().enumerate() {
            let first = placement(&members, i, sh.cfg.replication).first().copied();
            if first != Some(me) {
                continue;
            }
            let (leader, ready, others) = {
                let m = r.metrics();
                let m = m.borrow();
                let mem = m.membership_config.membership();
                let voter = mem.voter_ids().any(|v| v == me);
                let joint = mem.get_joint_config().len() > 1;
                let others: Vec<String> = mem
                    .nodes()
                    .filter(|(id, _)| **id != me)
                    .map(|(_, n)| n.addr.clone())
                    .collect();
                (
                    m.current_leader,
                    voter && !joint && m.last_applied.map(|l| l.index) >= m.last_log_index,
                    others,
                )
            };
            if leader.is_some() && leader != Some(me) && ready {
                take_over(&sh, i, r, &others).await;
            }
        }
    }
}

/// Hand-over of shard `i`'s leadership to this node, which is caught up.
/// openraft 0.9 has no leadership transfer, and a follower refuses votes
/// while its leader's lease runs; with more than three voters the leader's
/// vote alone is not enough. So the other replicas first hold their own
/// elections back for a while (`Raft.Hold`); this node's first election
/// makes the old leader step down (its own lease is long over), and one of
/// the next ones, once the followers' leases have run out, wins.
async fn take_over(sh: &Shared, i: usize, r: &Raft, others: &[String]) {
    let me = sh.cfg.node_id;
    let group = proto::cluster::shard_group(i as u32);
    tracing::debug!(shard = i, "taking over the lead of this shard");
    let hold = HAND_OVER + Duration::from_millis(sh.cfg.heartbeat_ms * 6);
    for addr in others {
        if let Err(e) = sh.proposer.hold(addr, group, hold).await {
            tracing::debug!(shard = i, peer = %addr, error = %e, "a replica did not hold its elections");
        }
    }
    let deadline = tokio::time::Instant::now() + HAND_OVER;
    let step = Duration::from_millis(sh.cfg.heartbeat_ms * 4);
    while tokio::time::Instant::now() < deadline {
        if r.trigger().elect().await.is_err() {
            return;
        }
        let won = r
            .wait(Some(step))
            .metrics(|m| m.current_leader == Some(me), "this node leads")
            .await
            .is_ok();
        if won {
            tracing::info!(shard = i, "took over the lead of this shard");
            return;
        }
    }
}

/// How long a hand-over of a shard's leadership may take.
const HAND_OVER: Duration = Duration::from_secs(3);

/// How often a core node checks that it leads the shards it should.
const BALANCE_EVERY: Duration = Duration::from_secs(2);

/// How long a commit waits for its shard group to have a leader.
const COMMIT_PATIENCE: Duration = Duration::from_secs(10);

/// One shard's Raft group, for status and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardGroup {
    pub shard: u32,
    pub leader: Option<u64>,
    pub replicas: Vec<u64>,
    /// The last log index applied on this node.
    pub applied: Option<u64>,
}

/// A shard's two queues: a bounded one for stanzas from edges (so a busy
/// shard slows its senders down) and an unbounded one for stanzas between
/// shards (which must never wait on each other).
#[derive(Clone)]
pub(crate) struct ShardHandle {
    pub edge: mpsc::Sender<ShardMsg>,
    pub internal: mpsc::UnboundedSender<ShardMsg>,
}

pub(crate) struct Shared {
    pub cfg: CoreConfig,
    pub store: Store,
    pub accounts: Accounts,
    pub shards: Vec<ShardHandle>,
    /// The Raft group of each shard, by shard index.
    pub rafts: Vec<Raft>,
    /// The meta group: its voters are the cluster's members.
    pub meta: Raft,
    /// A reading handle on the meta group's state (removed nodes).
    pub meta_state: storage::raft::StateMachine,
    /// Membership changes are made one at a time.
    pub membership: tokio::sync::Mutex<()>,
    /// Set when this node was removed from the cluster and may stop.
    pub left: tokio::sync::watch::Sender<bool>,
    /// Reading handles on the shard groups' states (replicated sessions).
    pub shard_states: Vec<storage::raft::StateMachine>,
    /// The streams of the edges connected to this node, by edge id.
    pub edge_links: std::sync::Mutex<HashMap<u64, Arc<crate::session::EdgeLink>>>,
    /// Where a replica sends commands for groups it does not lead.
    pub proposer: Proposer,
    /// Where stanzas for shards led by other core nodes go.
    pub relays: Relays,
    pub registry: Registry,
    next_id: AtomicU64,
}

impl Shared {
    pub fn shard_index(&self, bare: &str) -> usize {
        shard_of(bare, self.shards.len())
    }

    /// Whether other core nodes share the shards (then a shard is served
    /// by the node that leads its group).
    pub fn clustered(&self) -> bool {
        !self.cfg.peers.is_empty()
    }

    /// The leader of shard `i` as this node knows it, and its address.
    pub fn leader(&self, i: usize) -> (Option<u64>, Option<String>) {
        let v = self.shard_view(i);
        (v.leader, v.addr)
    }

    /// Wait (up to `COMMIT_PATIENCE`) until shard `i` has a leader.
    pub async fn wait_leader(&self, i: usize) {
        let deadline = tokio::time::Instant::now() + COMMIT_PATIENCE;
        while self.leader(i).0.is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where a stanza for shard `i` is processed: `None` here, or the
    /// address of the core node that leads it. A shard with no leader yet
    /// (an election) is processed here: its writes wait for the leader.
    pub fn elsewhere(&self, i: usize) -> Option<String> {
        if !self.clustered() {
            return None;
        }
        match self.leader(i) {
            (Some(l), Some(addr)) if l != self.cfg.node_id => Some(addr),
            _ => None,
        }
    }

    /// Hand a stanza to the shard of `bare` for inbound processing, on
    /// this node or the one that leads the shard.
    pub fn send_internal(&self, bare: &str, msg: ShardMsg) {
        self.send_internal_hop(bare, msg, 0)
    }

    fn send_internal_hop(&self, bare: &str, msg: ShardMsg, hops: u32) {
        let i = self.shard_index(bare);
        if let (Some(addr), ShardMsg::Inbound(s)) = (self.elsewhere(i), &msg) {
            let mut env = proto::cluster::envelope::to_envelope(i as u32, s);
            env.inbound = true;
            env.hops = hops + 1;
            self.relays.send(&addr, env);
            return;
        }
        if self.shards[i].internal.send(msg).is_err() {
            tracing::debug!(to = bare, "shard stopped, stanza dropped");
        }
    }

    /// Commit planned writes through the Raft group of shard `index`:
    /// when this returns `Ok`, a majority of the group has them in its log
    /// and this replica has applied them. A replica that does not lead the
    /// group hands the command to the leader and waits until it has
    /// applied it itself; while there is no leader (an election) it
    /// retries, for at most `COMMIT_PATIENCE`.
    pub async fn commit(
        &self,
        index: usize,
        writes: storage::Batch,
        forward: bool,
        group_ops: Vec<storage::raft::Op>,
    ) -> Result<(), CoreError> {
        use openraft::error::{ClientWriteError, RaftError};
        let raft = self.rafts.get(index).ok_or(CoreError::ShuttingDown)?;
        let mut cmd = storage::raft::Command::from_batch(writes);
        cmd.ops.extend(group_ops);
        let me = self.cfg.node_id;
        let group = proto::cluster::shard_group(index as u32);
        let deadline = tokio::time::Instant::now() + COMMIT_PATIENCE;
        let mut pause = Duration::from_millis(20);
        let mut last = CoreError::Raft("no leader".into());
        loop {
            let (leader, addr) = self.leader(index);
            match (leader, addr) {
                (Some(l), _) if l == me => {
                    // A leader cut off from its majority commits nothing
                    // (openraft keeps it leading until it hears of a newer
                    // term): give up rather than hold the shard forever.
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let written = tokio::time::timeout(left, raft.client_write(cmd)).await;
                    let Ok(written) = written else {
                        return Err(CoreError::Raft(format!(
                            "not committed within {COMMIT_PATIENCE:?}: no majority"
                        )));
                    };
                    return match written {
                        Ok(_) => Ok(()),
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                            Err(CoreError::NotLeader {
                                leader: f.leader_id,
                                addr: f.leader_node.map(|n| n.addr),
                            })
                        }
                        Err(e) => Err(CoreError::Raft(e.to_string())),
                    };
                }
                (Some(l), addr) if !forward => {
                    return Err(CoreError::NotLeader {
                        leader: Some(l),
                        addr,
                    });
                }
                (Some(l), Some(addr)) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match self.proposer.propose(&addr, group, &cmd, left).await {
                        // A node with no replica of the shard has nothing
                        // to wait for.
                        Ok(_) if !self.holds_replica(index) => return Ok(()),
                        Ok(at) => {
                            return raft
                                .wait(Some(left.max(Duration::from_millis(100))))
                                .applied_index_at_least(Some(at), "a forwarded write applied here")
                                .await
                                .map(|_| ())
                                .map_err(|e| CoreError::Raft(e.to_string()));
                        }
                        Err(ProposeError::NotLeader { leader, addr }) => {
                            last = CoreError::NotLeader { leader, addr };
                        }
                        Err(ProposeError::Failed(e)) => {
                            last = CoreError::Raft(format!("proposing to leader {l}: {e}"));
                        }
                    }
                }
                _ => {}
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(last);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Whether this node is a voter of shard `i`'s group.
    pub fn holds_replica(&self, i: usize) -> bool {
        let me = self.cfg.node_id;
        self.rafts.get(i).is_some_and(|r| {
            r.metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == me)
        })
    }

    /// The stream of edge `edge` to this node, if it has one.
    pub fn edge_link(&self, edge: u64) -> Option<Arc<crate::session::EdgeLink>> {
        self.edge_links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&edge)
            .cloned()
    }

    /// A fresh id for server-generated stanzas.
    pub fn next_id(&self) -> String {
        format!("xmppd-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// The Raft groups of one node: the meta group, a reading handle on its
/// state, and every shard's group.
struct Opened {
    meta: Raft,
    meta_state: storage::raft::StateMachine,
    rafts: Vec<Raft>,
    shard_states: Vec<storage::raft::StateMachine>,
}

/// Open (or create) the meta group and the Raft group of every shard on
/// this node. The first voters are `cfg.peers`, or this node alone when
/// that is empty; on a first start the peer with the lowest id creates the
/// groups (a node that joins a running cluster lists a lower id, and waits
/// to be added).
async fn open_groups(
    cfg: &CoreConfig,
    store: &Store,
    n: usize,
    groups: &Groups,
) -> Result<Opened, CoreError> {
    let raft_err = |e: &dyn std::fmt::Display| CoreError::Raft(e.to_string());
    let rconf = crate::raft::config(cfg.heartbeat_ms).map_err(|e| raft_err(&e))?;
    let sync = store.0.options().sync_writes;
    let me = cfg.node_id;
    let voters: BTreeMap<u64, BasicNode> = if cfg.peers.is_empty() {
        BTreeMap::from([(me, BasicNode::new(cfg.raft_addr.clone()))])
    } else {
        cfg.peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
            .collect()
    };
    let founder = voters.keys().next().copied() == Some(me);
    let open = |group: u64, log, sm| {
        let rconf = rconf.clone();
        let voters = voters.clone();
        async move {
            let raft = Raft::new(me, rconf, Network::new(group), log, sm)
                .await
                .map_err(|e| raft_err(&e))?;
            groups.insert(group, raft.clone());
            if founder && !raft.is_initialized().await.map_err(|e| raft_err(&e))? {
                raft.initialize(voters).await.map_err(|e| raft_err(&e))?;
            }
            Ok::<Raft, CoreError>(raft)
        }
    };
    let meta_group = proto::cluster::META_GROUP;
    let (log, sm) = store
        .0
        .raft_group(meta_group, sync)
        .map_err(|e| raft_err(&e))?;
    let meta_state = sm.clone();
    let meta = open(meta_group, log, sm).await?;
    let mut rafts = Vec::with_capacity(n);
    let mut shard_states = Vec::with_capacity(n);
    for i in 0..n {
        let group = proto::cluster::shard_group(i as u32);
        let owns: storage::raft::Owns = Arc::new(move |bare: &str| shard_of(bare, n) == i);
        let (log, sm) = store
            .0
            .raft_group_owning(group, sync, owns)
            .map_err(|e| raft_err(&e))?;
        shard_states.push(sm.clone());
        rafts.push(open(group, log, sm).await?);
    }
    Ok(Opened {
        meta,
        meta_state,
        rafts,
        shard_states,
    })
}

/// Stable shard function: FNV-1a over the canonical bare JID. Stable across
/// processes and versions, because the cluster places data by it.
pub fn shard_of(bare: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bare.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// The disco features (XEP-0030) of a server with this configuration, for
/// the stream features of an edge that has no core in its process.
pub fn server_features(cfg: &CoreConfig) -> Result<Vec<&'static str>, CoreError> {
    Ok(Registry::new(cfg)
        .map_err(CoreError::Registry)?
        .server_features())
}

/// The core, cheap to clone.
#[derive(Clone)]
pub struct Core {
    shared: Arc<Shared>,
}

impl Core {
    /// Start the shards on the current tokio runtime: each shard's Raft
    /// group (created on first start, reloaded from the store after), then
    /// its task. Returns once every group has a leader. With no peers
    /// configured this node is the only member of every group.
    pub async fn start(cfg: CoreConfig, store: Store) -> Result<Core, CoreError> {
        let core = Core::start_with(cfg, store, &Groups::default()).await?;
        if let Err(e) = core.wait_for_leaders(Duration::from_secs(30)).await {
            // Its tasks let go of the store.
            core.shutdown().await;
            return Err(e);
        }
        Ok(core)
    }

    /// [`Core::start`] for a node with peers: the shard groups are added
    /// to `groups` for the caller to serve to the other core nodes
    /// (`raft::RaftService`); then [`Core::wait_for_leaders`].
    pub async fn start_with(
        cfg: CoreConfig,
        store: Store,
        groups: &Groups,
    ) -> Result<Core, CoreError> {
        let registry = Registry::new(&cfg).map_err(CoreError::Registry)?;
        let n = cfg.shards.max(1);
        let Opened {
            meta,
            meta_state,
            rafts,
            shard_states,
        } = open_groups(&cfg, &store, n, groups).await?;
        let mut handles = Vec::with_capacity(n);
        let mut receivers = Vec::with_capacity(n);
        for _ in 0..n {
            let (etx, erx) = mpsc::channel(4096);
            let (itx, irx) = mpsc::unbounded_channel();
            handles.push(ShardHandle {
                edge: etx,
                internal: itx,
            });
            receivers.push((erx, irx));
        }
        let accounts = Accounts::new(store.clone(), cfg.domains.clone(), cfg.min_password_len);
        let shared = Arc::new(Shared {
            registry,
            cfg,
            store,
            accounts,
            shards: handles,
            rafts,
            meta,
            meta_state,
            membership: tokio::sync::Mutex::new(()),
            left: tokio::sync::watch::channel(false).0,
            shard_states,
            edge_links: std::sync::Mutex::new(HashMap::new()),
            proposer: Proposer::default(),
            relays: Relays::default(),
            next_id: AtomicU64::new(1),
        });
        for (i, (erx, irx)) in receivers.into_iter().enumerate() {
            tokio::spawn(shard::run(i, shared.clone(), erx, irx));
        }
        if shared.clustered() {
            for (i, r) in shared.rafts.iter().enumerate() {
                tokio::spawn(watch_leadership(
                    r.clone(),
                    shared.cfg.node_id,
                    shared.shards[i].internal.clone(),
                ));
            }
            tokio::spawn(balance(Arc::downgrade(&shared)));
            tokio::spawn(crate::membership::reconcile(Arc::downgrade(&shared)));
            tokio::spawn(crate::membership::publish(Arc::downgrade(&shared)));
        }
        Ok(Core { shared })
    }

    pub fn config(&self) -> &CoreConfig {
        &self.shared.cfg
    }

    pub fn accounts(&self) -> &Accounts {
        &self.shared.accounts
    }

    /// The disco features of the server, for the edge's stream features.
    pub fn server_features(&self) -> Vec<&'static str> {
        self.shared.registry.server_features()
    }

    fn shard(&self, bare: &str) -> &ShardHandle {
        &self.shared.shards[self.shared.shard_index(bare)]
    }

    /// The shard of `bare`, when this node serves it (in a cluster, after
    /// waiting out an election); `NotLeader` naming the node that does.
    async fn served_here(&self, bare: &str) -> Result<usize, BindError> {
        let i = self.shared.shard_index(bare);
        if self.shared.clustered() {
            self.shared.wait_leader(i).await;
        }
        if self.shared.elsewhere(i).is_some() {
            let (leader, addr) = self.shared.leader(i);
            return Err(BindError::NotLeader { leader, addr });
        }
        Ok(i)
    }

    /// Bind a resource (RFC 6120 §7). An existing session with the same full
    /// JID is replaced: it gets a `<conflict/>` stream error.
    pub async fn bind(&self, jid: FullJid, sink: SessionSink) -> Result<(), BindError> {
        let i = self.served_here(jid.bare_str()).await?;
        let (reply, rx) = oneshot::channel();
        let msg = ShardMsg::Bind { jid, sink, reply };
        self.shared.shards[i]
            .edge
            .send(msg)
            .await
            .map_err(|_| BindError::ShuttingDown)?;
        rx.await.map_err(|_| BindError::ShuttingDown)?
    }

    /// The session ended (cleanly or not): contacts see it go unavailable.
    /// In a cluster, `NotLeader` when another node leads the user's shard
    /// (the session is served there).
    pub async fn unbind(&self, jid: FullJid, conn_id: u64) -> Result<(), BindError> {
        let i = self.served_here(jid.bare_str()).await?;
        self.shared.shards[i]
            .edge
            .send(ShardMsg::Unbind { jid, conn_id })
            .await
            .map_err(|_| BindError::ShuttingDown)
    }

    /// A session bound at a core node that died, if this node leads the
    /// user's shard: `true` when the shard has it (it was replicated, and
    /// goes on); otherwise the contacts hear that the resource is
    /// unavailable. `NotLeader` if another node leads it.
    pub async fn session_lost(&self, jid: FullJid, session: u64) -> Result<bool, BindError> {
        let i = self.served_here(jid.bare_str()).await?;
        let (reply, rx) = oneshot::channel();
        self.shared.shards[i]
            .edge
            .send(ShardMsg::Lost {
                jid,
                session,
                reply,
            })
            .await
            .map_err(|_| BindError::ShuttingDown)?;
        rx.await.map_err(|_| BindError::ShuttingDown)
    }

    /// Edge `edge` opened its stream to this node (`link`).
    pub fn edge_up(&self, edge: u64, link: Arc<crate::session::EdgeLink>) {
        self.shared
            .edge_links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(edge, link);
    }

    /// Edge `edge`'s stream `link` ended.
    pub fn edge_down(&self, edge: u64, link: &Arc<crate::session::EdgeLink>) {
        let mut m = self
            .shared
            .edge_links
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if m.get(&edge).is_some_and(|l| Arc::ptr_eq(l, link)) {
            m.remove(&edge);
        }
    }

    /// Route a stanza from a bound session; `from` is already stamped with
    /// the session's full JID. Waits while the shard's queue is full.
    pub async fn route(&self, stanza: Stanza) -> Result<(), CoreError> {
        self.route_hop(stanza, None, 0).await
    }

    /// [`Core::route`] for a remote edge's envelope: `confirm` is told
    /// once the shard has processed it (or it was handed to the node that
    /// leads the shard).
    pub async fn route_confirmed(
        &self,
        stanza: Stanza,
        confirm: Option<Confirm>,
    ) -> Result<(), CoreError> {
        self.route_hop(stanza, confirm, 0).await
    }

    async fn route_hop(
        &self,
        stanza: Stanza,
        confirm: Option<Confirm>,
        hops: u32,
    ) -> Result<(), CoreError> {
        let Some(from) = &stanza.from else {
            if let Some(c) = confirm {
                c.done();
            }
            return Ok(());
        };
        let target = shard::first_hop(&stanza, from.bare_str());
        let i = self.shared.shard_index(target);
        if self.shared.clustered() {
            // During an election, wait for its outcome rather than serve
            // the shard from a replica that may not win it.
            self.shared.wait_leader(i).await;
        }
        if let Some(addr) = self.shared.elsewhere(i) {
            // An edge that waits for an answer sends it to the leader
            // itself (and keeps it until the leader has processed it);
            // otherwise the leader gets it from here.
            match confirm {
                Some(c) => c.redirect(),
                None => {
                    let mut env = proto::cluster::envelope::to_envelope(i as u32, &stanza);
                    env.hops = hops;
                    self.shared.relays.send(&addr, env);
                }
            }
            return Ok(());
        }
        let h = self.shared.shards[i].clone();
        h.edge
            .send(ShardMsg::FromClient(Box::new(stanza), confirm))
            .await
            .map_err(|_| CoreError::ShuttingDown)
    }

    /// A stanza another core node relayed here (`Core.Relay`): processed
    /// here if this node leads its shard, relayed on otherwise.
    pub async fn relayed(&self, stanza: Stanza, inbound: bool, hops: u32) -> Result<(), CoreError> {
        if inbound {
            let Some(to) = &stanza.to else { return Ok(()) };
            let bare = to.bare_str().to_string();
            self.shared
                .send_internal_hop(&bare, ShardMsg::Inbound(Box::new(stanza)), hops);
            return Ok(());
        }
        self.route_hop(stanza, None, hops + 1).await
    }

    /// Run `f` on the shard of `bare` and wait for it to be handled.
    async fn exec(
        &self,
        bare: &str,
        f: Box<dyn FnOnce(&mut crate::modules::Ctx<'_>) + Send>,
    ) -> Result<(), CoreError> {
        self.shard(bare)
            .edge
            .send(ShardMsg::Exec(f))
            .await
            .map_err(|_| CoreError::ShuttingDown)
    }

    /// Register an account, committed through the user's shard.
    pub async fn add_account(&self, user: &BareJid, password: &str) -> Result<(), AccountError> {
        // SCRAM derivation is slow on purpose: do it here, not in the shard.
        let creds = self.shared.accounts.prepare(user, password)?;
        self.account_op(user, AccountOp::Add(creds), 0).await
    }

    /// Change an account's password, committed through the user's shard.
    pub async fn set_password(&self, user: &BareJid, password: &str) -> Result<(), AccountError> {
        let creds = self.shared.accounts.prepare(user, password)?;
        self.account_op(user, AccountOp::SetCredentials(creds), 0)
            .await
    }

    /// Delete an account: its data is removed through the user's shard,
    /// and once that is committed its sessions are closed.
    pub async fn delete_account(&self, user: &BareJid) -> Result<(), CoreError> {
        Ok(self.account_op(user, AccountOp::Delete, 0).await?)
    }

    /// Make an account change at the leader of the user's shard: here,
    /// or handed on to the node that leads it (`hops` times already).
    pub async fn account_op(
        &self,
        user: &BareJid,
        op: AccountOp,
        hops: u32,
    ) -> Result<(), AccountError> {
        let i = self.shared.shard_index(user.as_str());
        let mut tries = 0;
        loop {
            if self.shared.clustered() {
                self.shared.wait_leader(i).await;
                if let Some(addr) = self.shared.elsewhere(i) {
                    if hops >= crate::relay::MAX_HOPS {
                        return Err(AccountError::NotCommitted(
                            "the shard's leader moved too often".into(),
                        ));
                    }
                    return crate::cluster::forward_account(&addr, user, &op, hops + 1).await;
                }
            }
            let result = self.account_change_here(user, op.clone()).await;
            tries += 1;
            // Not committed, typically because the lead moved meanwhile (a
            // hand-over; this node's view of the leader may lag): again, at
            // whichever node leads now. The entry may have been committed
            // all the same: an account found with these very credentials,
            // or gone when it was to be deleted, was this change.
            match (&result, &op) {
                (Err(AccountError::NotCommitted(_)), _) if self.shared.clustered() && tries < 4 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                (Err(AccountError::Exists(_)), AccountOp::Add(creds)) if tries > 1 => {
                    return match self.shared.accounts.credentials(user) {
                        Ok(Some(c)) if c == *creds => Ok(()),
                        _ => result,
                    };
                }
                (Err(AccountError::NoSuchUser(_)), AccountOp::Delete) if tries > 1 => {
                    return Ok(());
                }
                _ => return result,
            }
        }
    }

    /// [`Core::account_op`] at this node, the shard's leader.
    async fn account_change_here(&self, user: &BareJid, op: AccountOp) -> Result<(), AccountError> {
        let u = user.clone();
        match op {
            AccountOp::Add(creds) => {
                self.account_change(user, move |ctx| {
                    let sh = ctx.sh;
                    sh.accounts.plan_add(&mut ctx.writes, &u, &creds)
                })
                .await
            }
            AccountOp::SetCredentials(creds) => {
                self.account_change(user, move |ctx| {
                    let sh = ctx.sh;
                    sh.accounts
                        .plan_set_credentials(&mut ctx.writes, &u, &creds)
                })
                .await
            }
            AccountOp::Delete => {
                self.account_change(user, move |ctx| {
                    let sh = ctx.sh;
                    sh.accounts.plan_delete(&mut ctx.writes, &u)?;
                    if let Some(gone) = ctx.st.remove_user(&u) {
                        for s in gone.sessions {
                            ctx.send(
                                &s.sink,
                                crate::Outbound::Close(
                                    proto::error::StreamCondition::NotAuthorized,
                                    Some("account deleted".into()),
                                ),
                            );
                        }
                    }
                    Ok(())
                })
                .await
            }
        }
    }

    /// In a cluster, the leader of the shard of `bare` (and its address)
    /// when that is another node.
    pub fn led_elsewhere(&self, bare: &str) -> Option<(Option<u64>, Option<String>)> {
        let i = self.shared.shard_index(bare);
        self.shared.elsewhere(i)?;
        Some(self.shared.leader(i))
    }

    /// The accounts (of `domain`, or all), across the cluster: each core
    /// node lists those in the shards it leads; for a shard whose leader
    /// does not answer, this node's replica (if it has one) stands in.
    pub async fn list_users(&self, domain: Option<&str>) -> Result<Vec<BareJid>, AccountError> {
        let sh = &self.shared;
        if !sh.clustered() {
            return sh.accounts.list(domain);
        }
        let me = sh.cfg.node_id;
        let mut answered = std::collections::BTreeSet::from([me]);
        let mut all = Vec::new();
        for (id, addr) in sh.members() {
            if id == me {
                continue;
            }
            match crate::cluster::list_users_at(&addr, domain).await {
                Ok(users) => {
                    answered.insert(id);
                    all.extend(users);
                }
                Err(e) => tracing::debug!(node = id, error = %e, "a member did not list its users"),
            }
        }
        let here: Vec<bool> = (0..sh.shards.len())
            .map(|i| match sh.leader(i).0 {
                Some(l) if answered.contains(&l) => l == me,
                _ => sh.holds_replica(i),
            })
            .collect();
        all.extend(self.users_where(domain, &here)?);
        all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        all.dedup_by(|a, b| a.as_str() == b.as_str());
        Ok(all)
    }

    /// The accounts in the shards this node leads.
    pub fn led_users(&self, domain: Option<&str>) -> Result<Vec<BareJid>, AccountError> {
        let me = self.shared.cfg.node_id;
        let led: Vec<bool> = (0..self.shared.shards.len())
            .map(|i| self.shared.leader(i).0 == Some(me))
            .collect();
        self.users_where(domain, &led)
    }

    /// The accounts in this node's store of the shards marked in `shards`.
    fn users_where(
        &self,
        domain: Option<&str>,
        shards: &[bool],
    ) -> Result<Vec<BareJid>, AccountError> {
        Ok(self
            .shared
            .accounts
            .list(domain)?
            .into_iter()
            .filter(|u| shards[self.shared.shard_index(u.as_str())])
            .collect())
    }

    /// Run `plan` on the shard of `user` and wait until what it planned is
    /// committed (or for its error).
    async fn account_change(
        &self,
        user: &BareJid,
        plan: impl FnOnce(&mut crate::modules::Ctx<'_>) -> Result<(), AccountError> + Send + 'static,
    ) -> Result<(), AccountError> {
        let (tx, rx) = oneshot::channel();
        let f = Box::new(move |ctx: &mut crate::modules::Ctx<'_>| match plan(ctx) {
            Ok(()) => ctx.after_commit(move |err| {
                let _ = tx.send(match err {
                    None => Ok(()),
                    Some(e) => Err(AccountError::NotCommitted(e.to_string())),
                });
            }),
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        });
        self.exec(user.as_str(), f)
            .await
            .map_err(|e| AccountError::NotCommitted(e.to_string()))?;
        rx.await
            .map_err(|_| AccountError::NotCommitted("the shard did not commit it".into()))?
    }

    /// End every session bound through `link` (its edge is gone): each
    /// shard unbinds them, and contacts see them go unavailable.
    pub async fn drop_edge_sessions(&self, link: Arc<crate::session::EdgeLink>) {
        for h in &self.shared.shards {
            let (reply, rx) = oneshot::channel();
            let msg = ShardMsg::DropEdge {
                link: link.clone(),
                reply,
            };
            if h.edge.send(msg).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Number of bound sessions in all shards (for metrics and tests).
    pub async fn session_count(&self) -> usize {
        self.count(None).await
    }

    /// Number of sessions bound through one remote edge's link.
    pub async fn session_count_via(&self, link: &Arc<crate::session::EdgeLink>) -> usize {
        self.count(Some(link.clone())).await
    }

    async fn count(&self, via: Option<Arc<crate::session::EdgeLink>>) -> usize {
        let mut total = 0;
        for h in &self.shared.shards {
            let (reply, rx) = oneshot::channel();
            let msg = ShardMsg::Count {
                via: via.clone(),
                reply,
            };
            if h.edge.send(msg).await.is_ok() {
                total += rx.await.unwrap_or(0);
            }
        }
        total
    }

    /// Wait until every shard group has a leader (this node or a peer).
    /// A node that is not in a cluster yet (it joins a running one) first
    /// waits, without a limit, to be added (`xmppd cluster add-node`).
    pub async fn wait_for_leaders(&self, limit: Duration) -> Result<(), CoreError> {
        let meta = &self.shared.meta;
        if !meta
            .is_initialized()
            .await
            .map_err(|e| CoreError::Raft(e.to_string()))?
        {
            tracing::info!(
                node = self.shared.cfg.node_id,
                "waiting for the cluster's groups: the lowest id in cluster.peers creates them; a node joining a running cluster waits for xmppd cluster add-node"
            );
            meta.wait(None)
                .metrics(
                    |m| m.membership_config.membership().nodes().next().is_some(),
                    "added to a cluster",
                )
                .await
                .map_err(|e| CoreError::Raft(e.to_string()))?;
        }
        meta.wait(Some(limit))
            .metrics(
                |m| m.current_leader.is_some(),
                "the meta group has a leader",
            )
            .await
            .map_err(|e| CoreError::Raft(e.to_string()))?;
        self.shared.check_shard_count().await?;
        let deadline = tokio::time::Instant::now() + limit;
        for i in 0..self.shared.rafts.len() {
            while self.shared.leader(i).0.is_none() {
                if tokio::time::Instant::now() >= deadline {
                    return Err(CoreError::Raft(format!("shard {i} has no leader")));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Commit planned writes through the Raft group of shard `shard`
    /// (for tools and benchmarks; handlers commit through their shard).
    pub async fn commit(&self, shard: usize, writes: storage::Batch) -> Result<(), CoreError> {
        self.shared.commit(shard, writes, true, Vec::new()).await
    }

    /// Each shard's Raft group as this node sees it: leader, voters and
    /// the last log index applied here.
    pub fn shard_groups(&self) -> Vec<ShardGroup> {
        self.shared
            .rafts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let v = self.shared.shard_view(i);
                ShardGroup {
                    shard: i as u32,
                    leader: v.leader,
                    replicas: v.voters,
                    applied: r.metrics().borrow().last_applied.map(|l| l.index),
                }
            })
            .collect()
    }

    /// Whether this node sees core node `id` alive: leading a shard, or
    /// caught up in a shard this node leads.
    pub fn peer_seen(&self, id: u64) -> bool {
        let sh = &self.shared;
        std::iter::once(&sh.meta).chain(&sh.rafts).any(|r| {
            let m = r.metrics();
            let m = m.borrow();
            if m.current_leader == Some(id) {
                return true;
            }
            m.replication.as_ref().is_some_and(|rep| {
                rep.get(&id)
                    .is_some_and(|matched| matched.map(|l| l.index) == m.last_log_index)
            })
        })
    }

    /// The members of the cluster (id, address), from the meta group.
    pub fn members(&self) -> BTreeMap<u64, String> {
        self.shared.members()
    }

    /// Nodes joining or leaving: (id, address, leaving).
    pub fn transient_members(&self) -> Vec<(u64, String, bool)> {
        self.shared.transient_members()
    }

    /// Whether node `id` was removed from the cluster.
    pub fn is_left(&self, id: u64) -> bool {
        self.shared.is_left(id)
    }

    /// The meta group's leader, as this node knows it.
    pub fn meta_leader(&self) -> Option<u64> {
        self.shared.meta.metrics().borrow().current_leader
    }

    /// Add a core node to the cluster (at the meta leader; `NotLeader`
    /// otherwise); the members after the change.
    pub async fn add_node(&self, id: u64, addr: String) -> Result<Vec<u64>, CoreError> {
        self.shared.add_node(id, addr).await
    }

    /// Remove a core node from the cluster (at the meta leader).
    pub async fn remove_node(&self, id: u64) -> Result<Vec<u64>, CoreError> {
        self.shared.remove_node(id).await
    }

    /// Becomes true when this node was removed from the cluster and has
    /// handed over its shards: the process may stop.
    pub fn left(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.left.subscribe()
    }

    /// How many shards this core runs.
    pub fn shard_count(&self) -> usize {
        self.shared.shards.len()
    }

    /// Stop every shard after it has processed what it holds, then flush the
    /// store to disk.
    pub async fn shutdown(&self) {
        // Each round lets every shard finish what it holds; stanzas between
        // shards take at most three hops (outbound, inbound, reply).
        for _round in 0..3 {
            for h in &self.shared.shards {
                let (reply, rx) = oneshot::channel();
                if h.edge.send(ShardMsg::Stop { reply }).await.is_ok() {
                    let _ = rx.await;
                }
            }
        }
        for h in &self.shared.shards {
            let _ = h.edge.send(ShardMsg::Exit).await;
        }
        for r in std::iter::once(&self.shared.meta).chain(&self.shared.rafts) {
            if let Err(e) = r.shutdown().await {
                tracing::warn!(error = %e, "stopping a raft group failed");
            }
        }
        if let Err(e) = self.shared.store.flush() {
            tracing::error!(error = %e, "flushing the store at shutdown failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shard_function_is_stable_and_in_range() {
        assert_eq!(
            super::shard_of("alice@localhost", 16),
            super::shard_of("alice@localhost", 16)
        );
        for i in 0..1000 {
            assert!(super::shard_of(&format!("u{i}@x"), 7) < 7);
        }
    }
}
