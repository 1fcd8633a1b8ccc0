//! The cluster machinery of the core tier: each shard's Raft group and the
//! meta group (`raft.rs`), who leads what and where a shard is served,
//! committing a shard's planned writes through its group ([`Cluster::commit`]),
//! spreading leaders over the nodes and handing them over, membership and
//! placement while the cluster runs (`membership.rs`), relays of stanzas
//! between core nodes (`relay.rs`) and the calls one core node makes on
//! another's `Admin` service (`admin_client.rs`).
//!
//! The XMPP modules never see this room: the shard (`crate::shard`) is the
//! seam that commits their planned writes here. Nothing here knows a
//! stanza's meaning, and nothing here depends on the shard or the modules.

pub(crate) mod admin_client;
pub(crate) mod membership;
pub mod raft;
pub(crate) mod relay;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;

use crate::Store;
use crate::config::CoreConfig;
use crate::error::CoreError;
use membership::placement;
use raft::{Groups, Network, ProposeError, Proposer, Raft};
use relay::Relays;

pub use relay::MAX_HOPS;

/// Call `demoted` each time this node stops leading `raft`'s group, until
/// it returns false (its shard is gone).
pub(crate) async fn watch_leadership(raft: Raft, me: u64, demoted: impl Fn() -> bool) {
    let mut rx = raft.metrics();
    let mut leading = rx.borrow().current_leader == Some(me);
    while rx.changed().await.is_ok() {
        let now = rx.borrow().current_leader == Some(me);
        if leading && !now && !demoted() {
            return;
        }
        leading = now;
    }
}

/// Spread the shards' leaders over the core nodes: a node takes over each
/// shard it should lead but does not (after a start, after it comes back
/// from a failure and has caught up, or after it joined), see
/// [`take_over`].
pub(crate) async fn balance(shared: std::sync::Weak<Cluster>) {
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
async fn take_over(sh: &Cluster, i: usize, r: &Raft, others: &[String]) {
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
    /// The leader this node's own Raft group follows now: none while it
    /// elects one (`leader` may still name the last one the meta group
    /// published, which routing tries).
    pub raft_leader: Option<u64>,
    /// This node leads the group but no majority of its voters has
    /// acknowledged it for a while (openraft's leader does not step down
    /// by itself): it cannot commit anything.
    pub quorum_lost: bool,
    /// The Raft term this node is in for the shard.
    pub term: u64,
    /// The last index of the shard's log on this node.
    pub last_log: Option<u64>,
}

/// This node's share of the cluster: its Raft groups and what it knows of
/// the other core nodes.
pub(crate) struct Cluster {
    pub cfg: CoreConfig,
    /// The number of shards.
    pub shard_count: usize,
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
    /// This node had been removed when it started, and joins again by
    /// itself (`auto_join`): it does not stop as removed until it was
    /// added back once.
    pub rejoining: std::sync::atomic::AtomicBool,
    /// How long each shard's Raft commits take at its leader (entry
    /// proposed to majority applied), for `/metrics`.
    pub commit_latency: prometheus::HistogramVec,
    /// Its series, one per shard, so that a commit needs no label lookup.
    commit_series: Vec<prometheus::Histogram>,
}

/// Bucket bounds of the commit latency, in seconds.
const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// The commit latency histogram and its per-shard series.
fn commit_histograms(n: usize) -> (prometheus::HistogramVec, Vec<prometheus::Histogram>) {
    let opts = prometheus::HistogramOpts::new(
        "xmppd_raft_commit_latency_seconds",
        "Time a shard's Raft commit takes at its leader on this node, from proposing the entry to applying it after a majority has it.",
    )
    .buckets(COMMIT_BUCKETS.to_vec());
    let vec = prometheus::HistogramVec::new(opts, &["shard"])
        .expect("constant name, help, label and increasing buckets");
    let series = (0..n)
        .map(|i| vec.with_label_values(&[&i.to_string()]))
        .collect();
    (vec, series)
}

impl Cluster {
    /// Open this node's groups (see [`open_groups`]).
    pub(crate) async fn open(
        cfg: CoreConfig,
        store: &Store,
        groups: &Groups,
    ) -> Result<Cluster, CoreError> {
        let n = cfg.shards.max(1);
        let Opened {
            meta,
            meta_state,
            rafts,
            shard_states,
        } = open_groups(&cfg, store, n, groups).await?;
        let rejoining = cfg.auto_join
            && matches!(
                meta_state.get(&membership::left_key(cfg.node_id)),
                Ok(Some(_))
            );
        let (commit_latency, commit_series) = commit_histograms(n);
        Ok(Cluster {
            rejoining: std::sync::atomic::AtomicBool::new(rejoining),
            commit_latency,
            commit_series,
            cfg,
            shard_count: n,
            rafts,
            meta,
            meta_state,
            membership: tokio::sync::Mutex::new(()),
            left: tokio::sync::watch::channel(false).0,
            shard_states,
            edge_links: std::sync::Mutex::new(HashMap::new()),
            proposer: Proposer::default(),
            relays: Relays::default(),
        })
    }

    /// Start the tasks that keep leaders spread and groups in step with
    /// the members (a cluster only).
    pub(crate) fn spawn_tasks(self: &Arc<Cluster>) {
        tokio::spawn(balance(Arc::downgrade(self)));
        tokio::spawn(membership::reconcile(Arc::downgrade(self)));
        tokio::spawn(membership::publish(Arc::downgrade(self)));
    }

    /// Whether other core nodes share the shards (then a shard is served
    /// by the node that leads its group).
    pub(crate) fn clustered(&self) -> bool {
        !self.cfg.peers.is_empty()
    }

    /// The leader of shard `i` as this node knows it, and its address.
    pub(crate) fn leader(&self, i: usize) -> (Option<u64>, Option<String>) {
        let v = self.shard_view(i);
        (v.leader, v.addr)
    }

    /// Wait (up to `COMMIT_PATIENCE`) until shard `i` has a leader.
    pub(crate) async fn wait_leader(&self, i: usize) {
        let deadline = tokio::time::Instant::now() + COMMIT_PATIENCE;
        while self.leader(i).0.is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where a stanza for shard `i` is processed: `None` here, or the
    /// address of the core node that leads it. A shard with no leader yet
    /// (an election) is processed here: its writes wait for the leader.
    pub(crate) fn elsewhere(&self, i: usize) -> Option<String> {
        if !self.clustered() {
            return None;
        }
        match self.leader(i) {
            (Some(l), Some(addr)) if l != self.cfg.node_id => Some(addr),
            _ => None,
        }
    }

    /// Commit planned writes through the Raft group of shard `index`:
    /// when this returns `Ok`, a majority of the group has them in its log
    /// and this replica has applied them. A replica that does not lead the
    /// group hands the command to the leader and waits until it has
    /// applied it itself; while there is no leader (an election) it
    /// retries, for at most `COMMIT_PATIENCE`.
    pub(crate) async fn commit(
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
                    let started = std::time::Instant::now();
                    let written = tokio::time::timeout(left, raft.client_write(cmd)).await;
                    if let Some(h) = self.commit_series.get(index) {
                        h.observe(started.elapsed().as_secs_f64());
                    }
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
    pub(crate) fn holds_replica(&self, i: usize) -> bool {
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
    pub(crate) fn edge_link(&self, edge: u64) -> Option<Arc<crate::session::EdgeLink>> {
        self.edge_links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&edge)
            .cloned()
    }

    /// The edge that carries stanzas for `domain` to its server: of the
    /// edges that federate, the one that ranks first for the domain
    /// (rendezvous hashing, so every core node picks the same one while
    /// they see the same edges, and losing an edge moves only its
    /// domains).
    pub(crate) fn federating_edge(
        &self,
        domain: Option<&str>,
    ) -> Option<Arc<crate::session::EdgeLink>> {
        let domain = domain?;
        let links = self.edge_links.lock().unwrap_or_else(|p| p.into_inner());
        links
            .values()
            .filter(|l| l.federates())
            .max_by_key(|l| rank(domain, l.edge))
            .cloned()
    }
}

/// FNV-1a over the domain and the edge id: a stable rank, the same on
/// every node and across restarts.
fn rank(domain: &str, edge: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in domain.bytes().chain(edge.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The Raft groups of one node: the meta group, a reading handle on its
/// state, and every shard's group.
pub(crate) struct Opened {
    pub meta: Raft,
    pub meta_state: storage::raft::StateMachine,
    pub rafts: Vec<Raft>,
    pub shard_states: Vec<storage::raft::StateMachine>,
}

/// What this node's peers say of the cluster they run.
#[derive(Debug, Default)]
struct Running {
    /// The members, from the first peer that answers with a meta leader.
    members: Vec<u64>,
    /// Whether any answering peer records this node as having held
    /// cluster data (`membership::data_key`).
    had_data: bool,
}

/// The cluster that this node's peers run, if any of them answers with
/// one (each asked for at most 2 s, all at once). `None`: no cluster yet,
/// or no peer answers (a first start, when they all start together).
async fn running_cluster(cfg: &CoreConfig) -> Option<Running> {
    use proto::cluster::pb;
    let me = cfg.node_id;
    let asks = cfg
        .peers
        .iter()
        .filter(|(id, _)| *id != me)
        .map(|(_, addr)| {
            let ask = async move {
                let mut admin = admin_client::admin_at(addr).await.ok()?;
                admin
                    .status(pb::StatusRequest { map_only: true })
                    .await
                    .ok()
                    .map(|r| r.into_inner())
            };
            async move {
                tokio::time::timeout(Duration::from_secs(2), ask)
                    .await
                    .ok()
                    .flatten()
            }
        });
    let mut running: Option<Running> = None;
    let mut had_data = false;
    for st in futures::future::join_all(asks).await.into_iter().flatten() {
        let core = |m: &&pb::Member| m.role == pb::Role::Core as i32;
        // Any peer that records this node as holding data says so, with
        // or without a meta leader (a peer that restarted has the marks
        // in its own applied state), whatever state it lists it in.
        had_data |= st
            .members
            .iter()
            .filter(core)
            .any(|m| m.id == me && m.holds_data);
        let members: Vec<u64> = st
            .members
            .iter()
            .filter(core)
            .filter(|m| m.state.is_empty())
            .map(|m| m.id)
            .collect();
        // A peer that waits for its cluster lists itself alone, as
        // "joining"; a running cluster has a meta leader.
        if st.meta_leader.is_some() && !members.is_empty() && running.is_none() {
            running = Some(Running {
                members,
                had_data: false,
            });
        }
    }
    if had_data {
        let r = running.get_or_insert_with(Running::default);
        r.had_data = true;
    }
    running
}

/// Open (or create) the meta group and the Raft group of every shard on
/// this node. The first voters are `cfg.peers`, or this node alone when
/// that is empty; on a first start the peer with the lowest id creates the
/// groups (a node that joins a running cluster lists a lower id, and waits
/// to be added).
pub(crate) async fn open_groups(
    cfg: &CoreConfig,
    store: &Store,
    n: usize,
    groups: &Groups,
) -> Result<Opened, CoreError> {
    let raft_err = |e: &dyn std::fmt::Display| CoreError::Raft(e.to_string());
    let rconf = raft::config(cfg.heartbeat_ms, cfg.snapshot_logs).map_err(|e| raft_err(&e))?;
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
    // Whether this node may create the groups: decided once the meta
    // group's log is open (below), before any shard group is.
    let found = std::sync::atomic::AtomicBool::new(false);
    let open = |group: u64, log, sm| {
        let rconf = rconf.clone();
        let voters = voters.clone();
        let found = &found;
        async move {
            let raft = Raft::new(me, rconf, Network::new(group), log, sm)
                .await
                .map_err(|e| raft_err(&e))?;
            groups.insert(group, raft.clone());
            if found.load(std::sync::atomic::Ordering::Relaxed)
                && !raft.is_initialized().await.map_err(|e| raft_err(&e))?
            {
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
    // A node with no cluster state yet: the founder creates the groups,
    // unless its peers already run a cluster. A peer that records this
    // node as having held data means it lost its data (an emptied
    // volume): as a voter with an empty log it could elect a leader that
    // lacks committed entries, so it refuses to start. A member that
    // never held any is a first start that came late (its peers formed
    // the cluster without it): it waits to hear from them.
    if meta.is_initialized().await.map_err(|e| raft_err(&e))? {
        // A restart: a shard group left uninitialized by a crash during
        // the first start is created as it was meant to be.
        found.store(founder, std::sync::atomic::Ordering::Relaxed);
    } else {
        let running = if cfg.peers.is_empty() {
            None
        } else {
            running_cluster(cfg).await
        };
        match running {
            Some(Running { had_data: true, .. }) => {
                return Err(CoreError::Membership(format!(
                    "node {me} held data of the cluster, as its peers record, but has no cluster data here (a lost or emptied volume?): take it out first with `xmppd cluster remove-node {me}` on another core node, then start it again to join as a new replica"
                )));
            }
            Some(Running { members, .. }) if members.contains(&me) => {
                tracing::info!(
                    ?members,
                    "the other members formed the cluster without this node: it joins them with no data yet"
                );
            }
            Some(_) => {}
            None if founder => {
                found.store(true, std::sync::atomic::Ordering::Relaxed);
                meta.initialize(voters.clone())
                    .await
                    .map_err(|e| raft_err(&e))?;
            }
            None => {}
        }
    }
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
