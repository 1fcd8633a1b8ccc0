//! Cluster membership while it runs (`xmppd cluster add-node/remove-node`).
//!
//! The members of the cluster are the voters of the meta group (Raft group
//! [`proto::cluster::META_GROUP`]), each with its address in its
//! `BasicNode`. `cluster.peers` only founds the groups on a first start;
//! after that every node takes the members from the meta group.
//!
//! - Adding a node (at the meta leader): the node becomes a learner of the
//!   meta group, catches up, and is promoted to voter.
//! - Removing one: a `left/<id>` record is committed to the meta group's
//!   state, then the node is demoted to learner there (so it still hears
//!   that it was removed).
//! - Every node then brings each shard group it leads to the members
//!   ([`reconcile`]): new members are added as learners (they catch up from
//!   the log or a snapshot) and promoted; removed ones are demoted, and
//!   dropped from the group once they have seen that. A leader that is
//!   removed itself steps down when the change commits, and the remaining
//!   voters elect another.
//! - A removed node that sees itself out of every shard group says so on
//!   [`Shared::left`]; the server then stops the process.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use storage::raft::{Command, Op};

use super::Cluster;
use super::raft::Raft;
use crate::error::CoreError;

/// How often each node checks its shard groups against the members.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// How long a new replica may take to catch up before the change is
/// retried on a later round.
const CATCH_UP: Duration = Duration::from_secs(60);

/// The meta group's key holding the cluster's number of shards.
const SHARDS_KEY: &[u8] = b"config/shards";

/// The meta group's key marking node `id` as removed.
pub(crate) fn left_key(id: u64) -> Vec<u8> {
    format!("left/{id}").into_bytes()
}

/// The meta group's key recording that node `id` has held cluster data
/// (it applied the meta group's log as a voter). A node that starts with
/// no data while the running cluster has this key for it lost its volume;
/// one without it is a member whose first start came late.
pub(crate) fn data_key(id: u64) -> Vec<u8> {
    format!("data/{id}").into_bytes()
}

/// Whether `addr` is `host:port` with a port and a plausible host name
/// or IP address.
fn valid_addr(addr: &str) -> bool {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    port.parse::<u16>().is_ok_and(|p| p != 0)
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// That the core node at `addr` answers, as node `id`, within 3 s.
async fn check_node_answers(id: u64, addr: &str) -> Result<(), CoreError> {
    use proto::cluster::pb;
    let ask = async {
        let mut admin = super::admin_client::admin_at(addr)
            .await
            .map_err(|e| e.message().to_string())?;
        admin
            .status(pb::StatusRequest { map_only: true })
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.message().to_string())
    };
    let st = match tokio::time::timeout(Duration::from_secs(3), ask).await {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => {
            return Err(CoreError::Membership(format!(
                "node {id} does not answer at {addr} ({e}): start it first, with cluster.peers listing a member and itself"
            )));
        }
        Err(_) => {
            return Err(CoreError::Membership(format!(
                "node {id} does not answer at {addr} within 3 s: start it first"
            )));
        }
    };
    // A node lists itself, a member or not.
    let core = pb::Role::Core as i32;
    if !st.members.iter().any(|m| m.id == id && m.role == core) {
        let there: Vec<u64> = st
            .members
            .iter()
            .filter(|m| m.role == core)
            .map(|m| m.id)
            .collect();
        return Err(CoreError::Membership(format!(
            "the core node at {addr} is not node {id} (it knows nodes {there:?})"
        )));
    }
    Ok(())
}

/// A group's membership as its metrics show it.
struct View {
    leading: bool,
    /// A joint configuration: a change is in progress.
    joint: bool,
    voters: BTreeSet<u64>,
    learners: BTreeSet<u64>,
    /// Replicas whose log matches the leader's (leader only).
    caught_up: BTreeSet<u64>,
}

fn view(r: &Raft, me: u64) -> View {
    let m = r.metrics();
    let m = m.borrow();
    let mem = m.membership_config.membership();
    let last = m.last_log_index;
    View {
        leading: m.current_leader == Some(me) && m.state.is_leader(),
        joint: mem.get_joint_config().len() > 1,
        voters: mem.voter_ids().collect(),
        learners: mem.learner_ids().collect(),
        caught_up: m
            .replication
            .as_ref()
            .map(|rep| {
                rep.iter()
                    .filter(|(_, matched)| matched.map(|l| l.index) == last)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn raft_err(e: impl std::fmt::Display) -> CoreError {
    CoreError::Raft(e.to_string())
}

impl Cluster {
    /// The members of the cluster (the meta group's voters) and their
    /// addresses; empty while this node has not joined one.
    pub fn members(&self) -> BTreeMap<u64, String> {
        let m = self.meta.metrics();
        let m = m.borrow();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<u64> = mem.voter_ids().collect();
        mem.nodes()
            .filter(|(id, _)| voters.contains(id))
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// Nodes in the meta group that are not voters: joining (a learner
    /// catching up) or leaving (marked removed), with their addresses.
    pub fn transient_members(&self) -> Vec<(u64, String, bool)> {
        let m = self.meta.metrics();
        let m = m.borrow();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<u64> = mem.voter_ids().collect();
        mem.nodes()
            .filter(|(id, _)| !voters.contains(id))
            .map(|(id, n)| (*id, n.addr.clone(), self.is_left(*id)))
            .collect()
    }

    /// Whether node `id` was removed from the cluster.
    pub fn is_left(&self, id: u64) -> bool {
        matches!(self.meta_state.get(&left_key(id)), Ok(Some(_)))
    }

    /// Whether node `id` has held cluster data, as it recorded in the
    /// meta group ([`data_key`]).
    pub fn holds_data(&self, id: u64) -> bool {
        matches!(self.meta_state.get(&data_key(id)), Ok(Some(_)))
    }

    /// The meta leader, if known, and its address.
    fn meta_leader(&self) -> (Option<u64>, Option<String>) {
        let m = self.meta.metrics();
        let m = m.borrow();
        let leader = m.current_leader;
        let addr = leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| n.addr.clone())
        });
        (leader, addr)
    }

    fn ensure_meta_leader(&self) -> Result<(), CoreError> {
        if !self.clustered() {
            return Err(CoreError::Membership(
                "a single node (no cluster.peers) cannot take members".into(),
            ));
        }
        match self.meta_leader() {
            (Some(l), _) if l == self.cfg.node_id => Ok(()),
            (leader, addr) => Err(CoreError::NotLeader { leader, addr }),
        }
    }

    /// Add core node `id`, reachable at `addr`, to the cluster; the
    /// members after the change. Only at the meta leader (`NotLeader`
    /// names it otherwise). The shard groups follow within seconds.
    pub async fn add_node(&self, id: u64, addr: String) -> Result<Vec<u64>, CoreError> {
        // Node ids go into the top bits of session ids (16 bits), and an
        // address openraft cannot reach would leave the new replicas
        // unreachable and their shards without a majority.
        if !(1..=65_535).contains(&id) {
            return Err(CoreError::Membership(format!(
                "node id {id} is outside 1..65535"
            )));
        }
        if !valid_addr(&addr) {
            return Err(CoreError::Membership(format!(
                "{addr:?} is not a host:port address"
            )));
        }
        self.ensure_meta_leader()?;
        let _one_at_a_time = self.membership.lock().await;
        let members = self.members();
        // A node that is not running, or another node at that address,
        // must not become a replica: its shards would count a voter that
        // never votes (an address typo would cost a majority).
        if !members.contains_key(&id) {
            check_node_answers(id, &addr).await?;
        }
        match members.get(&id) {
            Some(a) if *a == addr => return Ok(members.into_keys().collect()),
            Some(a) => {
                return Err(CoreError::Membership(format!(
                    "node {id} is already a member, at {a}"
                )));
            }
            None => {}
        }
        if let Some((other, _)) = members.iter().find(|(_, a)| **a == addr) {
            return Err(CoreError::Membership(format!(
                "{addr} is the address of member {other}"
            )));
        }
        // A node that was removed before may come back, as a new replica
        // (it marks itself as holding data again once it does).
        self.meta
            .client_write(Command {
                ops: vec![
                    Op::Delete { key: left_key(id) },
                    Op::Delete { key: data_key(id) },
                ],
            })
            .await
            .map_err(raft_err)?;
        tokio::time::timeout(
            CATCH_UP,
            self.meta.add_learner(id, BasicNode::new(addr), true),
        )
        .await
        .map_err(|_| CoreError::Membership(format!("node {id} did not catch up in time")))?
        .map_err(raft_err)?;
        let mut voters: BTreeSet<u64> = members.into_keys().collect();
        voters.insert(id);
        self.meta
            .change_membership(voters.clone(), false)
            .await
            .map_err(raft_err)?;
        tracing::info!(node = id, members = ?voters, "node added to the cluster");
        Ok(voters.into_iter().collect())
    }

    /// Remove core node `id` from the cluster; the members after the
    /// change. Its shard replicas move to the others within seconds, and
    /// the node stops by itself once it is out of every shard group.
    pub async fn remove_node(&self, id: u64) -> Result<Vec<u64>, CoreError> {
        self.ensure_meta_leader()?;
        let _one_at_a_time = self.membership.lock().await;
        let mut voters: BTreeSet<u64> = self.members().into_keys().collect();
        if !voters.remove(&id) {
            return Err(CoreError::Membership(format!("node {id} is not a member")));
        }
        if voters.is_empty() {
            return Err(CoreError::Membership(
                "the last member cannot be removed".into(),
            ));
        }
        self.meta
            .client_write(Command {
                ops: vec![Op::Put {
                    key: left_key(id),
                    value: b"1".to_vec(),
                }],
            })
            .await
            .map_err(raft_err)?;
        // Kept as a learner: it goes on hearing the meta group, and so
        // learns that it was removed.
        self.meta
            .change_membership(voters.clone(), true)
            .await
            .map_err(raft_err)?;
        tracing::info!(node = id, members = ?voters, "node removed from the cluster");
        Ok(voters.into_iter().collect())
    }

    /// Bring the membership of group `r`, if this node leads it, one step
    /// closer to `want`: add missing members as learners and promote them,
    /// demote removed ones, then drop demoted ones that are caught up (they
    /// have seen their demotion). Errors are retried on the next round.
    async fn reconcile_group(&self, what: &str, r: &Raft, want: &BTreeMap<u64, String>) {
        let v = view(r, self.cfg.node_id);
        if !v.leading {
            return;
        }
        // A leader that is to go stays until another member has taken
        // over (`core::take_over` by the shard's preferred node); openraft
        // would keep it leading as a learner.
        let me = self.cfg.node_id;
        let mut target: BTreeSet<u64> = want.keys().copied().collect();
        target.insert(me);
        // A joint configuration left by a leader that changed while it
        // made a change is finished here (openraft leaves that to a new
        // call).
        if v.joint || v.voters != target {
            for (id, addr) in want {
                if v.voters.contains(id) || v.learners.contains(id) {
                    continue;
                }
                let added = tokio::time::timeout(
                    CATCH_UP,
                    r.add_learner(*id, BasicNode::new(addr.clone()), true),
                )
                .await;
                if !matches!(added, Ok(Ok(_))) {
                    tracing::warn!(
                        group = what,
                        node = id,
                        "adding a replica failed; retrying later"
                    );
                    return;
                }
            }
            match r.change_membership(target.clone(), true).await {
                Ok(_) => tracing::info!(group = what, replicas = ?target, "replicas changed"),
                Err(e) => tracing::warn!(group = what, error = %e, "changing replicas failed"),
            }
            return;
        }
        // Former members, demoted to learners: drop them once they have
        // the entry that demoted them. (A joining node is a member, and
        // only the meta group holds it as a learner before it is one.)
        let stale: BTreeSet<u64> = v
            .learners
            .iter()
            .filter(|id| !want.contains_key(id) && v.caught_up.contains(id))
            .copied()
            .collect();
        if !stale.is_empty() {
            match r
                .change_membership(ChangeMembers::RemoveNodes(stale.clone()), false)
                .await
            {
                Ok(_) => tracing::info!(group = what, removed = ?stale, "former replicas dropped"),
                Err(e) => tracing::warn!(group = what, error = %e, "dropping replicas failed"),
            }
        }
    }

    /// The meta leader drops removed nodes from the meta group once no
    /// shard group (as this node sees them) has them as a voter.
    async fn reconcile_meta(&self) {
        let _one_at_a_time = self.membership.lock().await;
        let v = view(&self.meta, self.cfg.node_id);
        if !v.leading {
            return;
        }
        if v.joint {
            // Left by a leader that changed during a change: go on to the
            // configuration it was going to.
            let last = self
                .meta
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_joint_config()
                .last()
                .cloned()
                .unwrap_or_default();
            if let Err(e) = self.meta.change_membership(last, true).await {
                tracing::warn!(error = %e, "finishing a membership change failed");
            }
            return;
        }
        let gone: BTreeSet<u64> = v
            .learners
            .iter()
            .filter(|id| self.is_left(**id))
            .filter(|id| {
                self.rafts.iter().all(|r| {
                    !r.metrics()
                        .borrow()
                        .membership_config
                        .membership()
                        .voter_ids()
                        .any(|x| x == **id)
                })
            })
            .copied()
            .collect();
        if gone.is_empty() {
            return;
        }
        match self
            .meta
            .change_membership(ChangeMembers::RemoveNodes(gone.clone()), false)
            .await
        {
            Ok(_) => tracing::info!(removed = ?gone, "removed nodes dropped from the meta group"),
            Err(e) => tracing::warn!(error = %e, "dropping removed nodes failed"),
        }
    }

    /// Whether this node was removed and no shard group has it as a
    /// voter any more (it leads nothing and holds nobody's only copy).
    fn has_left(&self) -> bool {
        let me = self.cfg.node_id;
        self.is_left(me)
            && !self.members().contains_key(&me)
            && self.rafts.iter().all(|r| {
                let m = r.metrics();
                let m = m.borrow();
                !m.state.is_leader()
                    && !m
                        .membership_config
                        .membership()
                        .voter_ids()
                        .any(|x| x == me)
            })
    }
}

/// Keep this node's shard groups in line with the cluster's members, and
/// say when this node has left (see the module's text).
pub(crate) async fn reconcile(shared: std::sync::Weak<Cluster>) {
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sh) = shared.upgrade() else { return };
        let members = sh.members();
        if members.is_empty() {
            continue;
        }
        let leaving = sh.is_left(sh.cfg.node_id);
        for (i, r) in sh.rafts.iter().enumerate() {
            if leaving {
                // A removed node wins no election: it hands over.
                r.runtime_config().elect(false);
            }
            let want: BTreeMap<u64, String> = placement(&members, i, sh.cfg.replication)
                .into_iter()
                .filter_map(|id| members.get(&id).map(|a| (id, a.clone())))
                .collect();
            sh.reconcile_group(&format!("shard {i}"), r, &want).await;
        }
        sh.reconcile_meta().await;
        let me = sh.cfg.node_id;
        if !sh.is_left(me) && sh.members().contains_key(&me) {
            sh.rejoining
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        if !*sh.left.borrow()
            && !sh.rejoining.load(std::sync::atomic::Ordering::Relaxed)
            && sh.has_left()
        {
            tracing::warn!("this node was removed from the cluster and holds no shard: stopping");
            let _ = sh.left.send(true);
        }
    }
}

/// The replicas of shard `i` among `members`: `rf` of them in turn from
/// the `i`-th by id (all of them when there are fewer), the first being
/// the node that should lead it. A member that joins or leaves moves
/// each shard's replica set by about one node.
pub(crate) fn placement(members: &BTreeMap<u64, String>, i: usize, rf: usize) -> Vec<u64> {
    let ids: Vec<u64> = members.keys().copied().collect();
    let n = ids.len();
    (0..rf.clamp(1, n.max(1)).min(n))
        .map(|k| ids[(i + k) % n])
        .collect()
}

/// A shard's leader and replicas as its leader last published them in
/// the meta group, for the nodes that hold no replica of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ShardInfo {
    pub leader: u64,
    pub term: u64,
    pub voters: Vec<u64>,
}

fn shard_key(i: usize) -> Vec<u8> {
    format!("shard/{i}").into_bytes()
}

/// Where shard `i` is served, as this node knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardView {
    pub leader: Option<u64>,
    pub addr: Option<String>,
    pub voters: Vec<u64>,
}

/// How often a leader checks that the meta group has its shards right.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);

impl Cluster {
    /// Shard `i`'s entry in the meta group.
    pub(crate) fn shard_info(&self, i: usize) -> Option<ShardInfo> {
        let v = self.meta_state.get(&shard_key(i)).ok().flatten()?;
        serde_json::from_slice(&v).ok()
    }

    /// The address of node `id`, from the meta group or shard `i`'s group.
    fn node_addr(&self, id: u64, r: Option<&Raft>) -> Option<String> {
        for g in std::iter::once(&self.meta).chain(r) {
            if let Some(n) = g
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&id)
            {
                return Some(n.addr.clone());
            }
        }
        None
    }

    /// Where shard `i` is served: this node's own view when it holds a
    /// replica (it hears from the leader first), else what the leader
    /// published in the meta group (or whichever is newer).
    pub(crate) fn shard_view(&self, i: usize) -> ShardView {
        let me = self.cfg.node_id;
        let Some(r) = self.rafts.get(i) else {
            return ShardView::default();
        };
        let (local, term, member) = {
            let m = r.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            let leader = m.current_leader;
            let addr = leader.and_then(|l| mem.get_node(&l).map(|n| n.addr.clone()));
            (
                ShardView {
                    leader,
                    addr,
                    voters: mem.voter_ids().collect(),
                },
                m.current_term,
                mem.nodes().any(|(id, _)| *id == me),
            )
        };
        if local.leader == Some(me) || !self.clustered() {
            return local;
        }
        match self.shard_info(i) {
            Some(info) if !member || local.leader.is_none() || info.term > term => ShardView {
                leader: Some(info.leader),
                addr: self.node_addr(info.leader, Some(r)),
                voters: info.voters,
            },
            _ => local,
        }
    }

    /// Check this node's number of shards against the cluster's, which
    /// the first node to get here records in the meta group.
    pub(crate) async fn check_shard_count(&self) -> Result<(), CoreError> {
        let mine = self.shard_count as u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.meta_state.get(SHARDS_KEY).map_err(raft_err)? {
                let theirs: u64 = String::from_utf8_lossy(&v).parse().unwrap_or(0);
                return if theirs == mine {
                    Ok(())
                } else {
                    Err(CoreError::Membership(format!(
                        "the cluster has {theirs} shards and this node is configured with {mine} (cluster.shards)"
                    )))
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CoreError::Raft(
                    "the number of shards could not be recorded".into(),
                ));
            }
            if let Err(e) = self
                .meta_write(vec![Op::Put {
                    key: SHARDS_KEY.to_vec(),
                    value: mine.to_string().into_bytes(),
                }])
                .await
            {
                tracing::debug!(error = %e, "recording the number of shards failed; retrying");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Commit `ops` to the meta group, at its leader.
    async fn meta_write(&self, ops: Vec<Op>) -> Result<(), CoreError> {
        let cmd = Command { ops };
        match self.meta_leader() {
            (Some(l), _) if l == self.cfg.node_id => {
                self.meta.client_write(cmd).await.map_err(raft_err)?;
            }
            (Some(_), Some(addr)) => {
                self.proposer
                    .propose(
                        &addr,
                        proto::cluster::META_GROUP,
                        &cmd,
                        Duration::from_secs(2),
                    )
                    .await
                    .map_err(raft_err)?;
            }
            _ => return Err(CoreError::Raft("the meta group has no leader".into())),
        }
        Ok(())
    }
}

/// Keep the meta group's shard map right for the shards this node leads:
/// the other nodes route by it to shards they hold no replica of.
pub(crate) async fn publish(shared: std::sync::Weak<Cluster>) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sh) = shared.upgrade() else { return };
        let me = sh.cfg.node_id;
        let mut ops = Vec::new();
        for (i, r) in sh.rafts.iter().enumerate() {
            let info = {
                let m = r.metrics();
                let m = m.borrow();
                if !m.state.is_leader() {
                    continue;
                }
                ShardInfo {
                    leader: me,
                    term: m.current_term,
                    voters: m.membership_config.membership().voter_ids().collect(),
                }
            };
            if sh.shard_info(i).as_ref() != Some(&info)
                && let Ok(value) = serde_json::to_vec(&info)
            {
                ops.push(Op::Put {
                    key: shard_key(i),
                    value,
                });
            }
        }
        // A voter holds cluster data once it has applied the meta group's
        // log (this node, of itself) or acknowledged its entries (any
        // voter, as its leader sees it): recorded once, so that a later
        // start with an emptied volume is refused (`open_groups`).
        let holding: Vec<u64> = {
            let m = sh.meta.metrics();
            let m = m.borrow();
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            voters
                .into_iter()
                .filter(|v| {
                    let acked = m
                        .replication
                        .as_ref()
                        .is_some_and(|r| r.get(v).is_some_and(|l| l.is_some()));
                    (*v == me && m.last_applied.is_some()) || acked
                })
                .collect()
        };
        for v in holding {
            if !sh.is_left(v) && !sh.holds_data(v) {
                ops.push(Op::Put {
                    key: data_key(v),
                    value: b"1".to_vec(),
                });
            }
        }
        if !ops.is_empty()
            && let Err(e) = sh.meta_write(ops).await
        {
            tracing::debug!(error = %e, "writing the shard map or data marks failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_nobody_can_reach_was_added() {
        for good in [
            "127.0.0.1:7001",
            "[::1]:7001",
            "core-2.cluster.local:7001",
            "core2:1",
        ] {
            assert!(valid_addr(good), "{good}");
        }
        for bad in [
            "not an address",
            "127.0.0.1",
            "host:0",
            "host:70000",
            ":7001",
            "a b:1",
        ] {
            assert!(!valid_addr(bad), "{bad}");
        }
    }

    fn members(ids: &[u64]) -> BTreeMap<u64, String> {
        ids.iter()
            .map(|i| (*i, format!("127.0.0.1:{}", 7000 + i)))
            .collect()
    }

    #[test]
    fn placement_takes_replicas_in_turn_and_moves_little() {
        let three = members(&[1, 2, 3]);
        // No more replicas than members; the first leads.
        assert_eq!(placement(&three, 0, 3), vec![1, 2, 3]);
        assert_eq!(placement(&three, 4, 3), vec![2, 3, 1]);
        assert_eq!(placement(&three, 5, 5), vec![3, 1, 2]);
        assert_eq!(placement(&three, 1, 1), vec![2]);
        assert!(placement(&members(&[]), 0, 3).is_empty());
        // Four members, three replicas: each node holds 12 of 16 shards
        // and leads 4.
        let four = members(&[1, 2, 3, 4]);
        for id in 1..=4u64 {
            let held = (0..16)
                .filter(|s| placement(&four, *s, 3).contains(&id))
                .count();
            let led = (0..16).filter(|s| placement(&four, *s, 3)[0] == id).count();
            assert_eq!((held, led), (12, 4), "node {id}");
        }
        // Going from three to four members changes each shard's replica
        // set by at most one node.
        for s in 0..16 {
            let before: BTreeSet<u64> = placement(&three, s, 3).into_iter().collect();
            let after: BTreeSet<u64> = placement(&four, s, 3).into_iter().collect();
            assert!(before.difference(&after).count() <= 1, "shard {s}");
        }
    }
}
