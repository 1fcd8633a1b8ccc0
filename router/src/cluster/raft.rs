//! Raft groups of the core tier over gRPC (openraft 0.9). A core node runs
//! one [`openraft::Raft`] per group it holds a replica of (the meta group
//! and its shard groups), all persisted in the node's RocksDB through
//! `storage::raft`. Peers reach them through one gRPC service
//! (`cluster.proto`, service `Raft`) whose requests carry the group id and
//! openraft's message serialised with serde_json; [`RaftService`] hands
//! each to its group, and [`Network`] is the client side openraft calls.
//!
//! Errors on the wire: a transport failure is `Unreachable` (openraft
//! backs off and retries); an error of the remote Raft travels as its
//! serialised `RaftError` and becomes `RemoteError`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use proto::cluster::pb::{self, raft_client::RaftClient};
use serde::Serialize;
use serde::de::DeserializeOwned;
use storage::raft::ShardRaft;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// A Raft group of this node.
pub type Raft = openraft::Raft<ShardRaft>;

/// The groups this node runs, by group id.
#[derive(Clone, Default)]
pub struct Groups(Arc<RwLock<HashMap<u64, Raft>>>);

impl Groups {
    pub fn insert(&self, group: u64, raft: Raft) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group, raft);
    }

    pub fn remove(&self, group: u64) -> Option<Raft> {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group)
    }

    pub fn get(&self, group: u64) -> Option<Raft> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
    }
}

/// Timing of every group: heartbeats and elections in milliseconds; a
/// snapshot point every `snapshot_logs` entries, after which the log is
/// purged but for the last thousand entries (fewer when snapshot points
/// are closer), which a follower a little behind still gets as entries.
#[allow(clippy::result_large_err)] // openraft's own error type
pub fn config(
    heartbeat_ms: u64,
    snapshot_logs: u64,
) -> Result<Arc<openraft::Config>, openraft::ConfigError> {
    let c = openraft::Config {
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: heartbeat_ms * 3,
        election_timeout_max: heartbeat_ms * 6,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_logs),
        max_in_snapshot_log_to_keep: snapshot_logs.min(1000),
        ..Default::default()
    };
    Ok(Arc::new(c.validate()?))
}

/// The peer side of the `Raft` service: hands each request to its group.
#[derive(Clone)]
pub struct RaftService {
    groups: Groups,
    /// Until when each group holds its elections back (see `hold`).
    holds: Arc<std::sync::Mutex<HashMap<u64, tokio::time::Instant>>>,
}

impl RaftService {
    pub fn new(groups: Groups) -> RaftService {
        RaftService {
            groups,
            holds: Arc::default(),
        }
    }

    pub fn server(&self) -> pb::raft_server::RaftServer<RaftService> {
        pb::raft_server::RaftServer::new(self.clone())
    }

    fn group(&self, id: u64) -> Result<Raft, Status> {
        self.groups
            .get(id)
            .ok_or_else(|| Status::not_found(format!("no replica of group {id} here")))
    }
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(b)
        .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))
}

/// The reply for an openraft result: its response, or its error.
fn reply<T: Serialize, E: Serialize>(r: Result<T, E>) -> Result<Response<pb::RaftReply>, Status> {
    let result = match r {
        Ok(v) => pb::raft_reply::Result::Payload(
            serde_json::to_vec(&v)
                .map_err(|e| Status::internal(e.to_string()))?
                .into(),
        ),
        Err(e) => pb::raft_reply::Result::Error(
            serde_json::to_vec(&e)
                .map_err(|e| Status::internal(e.to_string()))?
                .into(),
        ),
    };
    Ok(Response::new(pb::RaftReply {
        result: Some(result),
    }))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let r = req.into_inner();
        let raft = self.group(r.group)?;
        let msg: AppendEntriesRequest<ShardRaft> = decode(&r.payload)?;
        reply(raft.append_entries(msg).await)
    }

    async fn vote(&self, req: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        let r = req.into_inner();
        let raft = self.group(r.group)?;
        let msg: VoteRequest<u64> = decode(&r.payload)?;
        reply(raft.vote(msg).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let r = req.into_inner();
        let raft = self.group(r.group)?;
        let msg: InstallSnapshotRequest<ShardRaft> = decode(&r.payload)?;
        reply(raft.install_snapshot(msg).await)
    }

    async fn propose(
        &self,
        req: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let r = req.into_inner();
        let raft = self.group(r.group)?;
        let cmd: storage::raft::Command = decode(&r.payload)?;
        reply(raft.client_write(cmd).await.map(|w| w.log_id))
    }

    async fn hold(&self, req: Request<pb::HoldRequest>) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        let raft = self.group(r.group)?;
        let until = tokio::time::Instant::now() + Duration::from_millis(r.millis.min(MAX_HOLD_MS));
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r.group, until);
        raft.runtime_config().elect(false);
        let holds = self.holds.clone();
        let group = r.group;
        tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            let mut h = holds.lock().unwrap_or_else(|p| p.into_inner());
            // A later hold of the same group ends later.
            if h.get(&group)
                .is_some_and(|u| *u <= tokio::time::Instant::now())
            {
                h.remove(&group);
                raft.runtime_config().elect(true);
            }
        });
        Ok(Response::new(pb::Empty {}))
    }
}

/// The longest a peer holds its elections back for a hand-over.
const MAX_HOLD_MS: u64 = 10_000;

/// Clients of peers' `Raft` services by address, for proposals that a
/// replica sends to its group's leader.
#[derive(Clone, Default)]
pub struct Proposer(Arc<RwLock<HashMap<String, RaftClient<Channel>>>>);

/// Why a proposal through the leader failed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The node asked is not the leader either (an election is going on).
    #[error("{leader:?} is not the leader any more")]
    NotLeader {
        leader: Option<u64>,
        addr: Option<String>,
    },
    #[error("{0}")]
    Failed(String),
}

impl Proposer {
    fn client(&self, addr: &str) -> Result<RaftClient<Channel>, ProposeError> {
        if let Some(c) = self.0.read().unwrap_or_else(|p| p.into_inner()).get(addr) {
            return Ok(c.clone());
        }
        let c = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| ProposeError::Failed(e.to_string()))?
            .connect_timeout(Duration::from_secs(1))
            .initial_connection_window_size(crate::service::CLUSTER_WINDOW_BYTES)
            .tcp_nodelay(true)
            .connect_lazy();
        let c = RaftClient::new(c);
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Ask the peer at `addr` to call no election in `group` for `hold`.
    pub async fn hold(&self, addr: &str, group: u64, hold: Duration) -> Result<(), ProposeError> {
        let mut client = self.client(addr)?;
        let mut req = Request::new(pb::HoldRequest {
            group,
            millis: hold.as_millis() as u64,
        });
        req.set_timeout(Duration::from_secs(1));
        client
            .hold(req)
            .await
            .map(|_| ())
            .map_err(|s| ProposeError::Failed(s.to_string()))
    }

    /// Have the leader at `addr` commit `cmd` to `group`'s log; the log
    /// index it was committed at.
    pub async fn propose(
        &self,
        addr: &str,
        group: u64,
        cmd: &storage::raft::Command,
        timeout: Duration,
    ) -> Result<u64, ProposeError> {
        use openraft::error::ClientWriteError;
        let mut client = self.client(addr)?;
        let payload = serde_json::to_vec(cmd).map_err(|e| ProposeError::Failed(e.to_string()))?;
        let mut req = Request::new(pb::RaftRequest {
            group,
            payload: payload.into(),
        });
        req.set_timeout(timeout);
        let reply = client
            .propose(req)
            .await
            .map_err(|s| ProposeError::Failed(s.to_string()))?
            .into_inner();
        match reply.result {
            Some(pb::raft_reply::Result::Payload(p)) => {
                let id: openraft::LogId<u64> =
                    serde_json::from_slice(&p).map_err(|e| ProposeError::Failed(e.to_string()))?;
                Ok(id.index)
            }
            Some(pb::raft_reply::Result::Error(b)) => {
                let e: RaftError<u64, ClientWriteError<u64, BasicNode>> =
                    serde_json::from_slice(&b).map_err(|e| ProposeError::Failed(e.to_string()))?;
                match e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                        Err(ProposeError::NotLeader {
                            leader: f.leader_id,
                            addr: f.leader_node.map(|n| n.addr),
                        })
                    }
                    other => Err(ProposeError::Failed(other.to_string())),
                }
            }
            None => Err(ProposeError::Failed("empty reply".into())),
        }
    }
}

/// Links cut on purpose, for partition tests of the in-process harness: a
/// call from node `a` to node `b` fails as unreachable while `(a, b)` is
/// in the set. Empty (and unused) in a real deployment.
#[derive(Clone, Default)]
pub struct Faults(Arc<RwLock<std::collections::HashSet<(u64, u64)>>>);

impl Faults {
    /// Cut `node` off from `others`, both ways.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        let mut s = self.0.write().unwrap_or_else(|p| p.into_inner());
        for o in others {
            s.insert((node, *o));
            s.insert((*o, node));
        }
    }

    /// Restore every link.
    pub fn heal(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn cut(&self, from: u64, to: u64) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(from, to))
    }
}

/// openraft's network for one group: a client per peer, at the address in
/// its `BasicNode`.
#[derive(Clone)]
pub struct Network {
    group: u64,
    from: u64,
    faults: Faults,
}

impl Network {
    pub fn new(group: u64) -> Network {
        Network {
            group,
            from: 0,
            faults: Faults::default(),
        }
    }

    /// The same network as node `from`, whose links `faults` may cut.
    pub fn with_faults(group: u64, from: u64, faults: Faults) -> Network {
        Network {
            group,
            from,
            faults,
        }
    }
}

impl RaftNetworkFactory<ShardRaft> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        // Lazy: the first call connects, and a failed connection is an
        // `Unreachable` that openraft retries.
        let client = Endpoint::from_shared(format!("http://{}", node.addr))
            .map(|e| {
                RaftClient::new(
                    e.connect_timeout(Duration::from_secs(1))
                        .initial_connection_window_size(crate::service::CLUSTER_WINDOW_BYTES)
                        .tcp_nodelay(true)
                        .connect_lazy(),
                )
            })
            .map_err(|e| e.to_string());
        Peer {
            group: self.group,
            from: self.from,
            target,
            client,
            faults: self.faults.clone(),
        }
    }
}

/// One peer of one group.
pub struct Peer {
    group: u64,
    from: u64,
    target: u64,
    client: Result<RaftClient<Channel>, String>,
    faults: Faults,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WireError(String);

type RpcErr<E> = RPCError<u64, BasicNode, RaftError<u64, E>>;

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Kind,
        msg: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if self.faults.cut(self.from, self.target) {
            return Err(RPCError::Unreachable(Unreachable::new(&WireError(
                "link cut (partition test)".into(),
            ))));
        }
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&WireError(
                    e.clone(),
                ))));
            }
        };
        let payload =
            serde_json::to_vec(msg).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut req = Request::new(pb::RaftRequest {
            group: self.group,
            payload: payload.into(),
        });
        req.set_timeout(timeout);
        let r = match kind {
            Kind::Append => client.append_entries(req).await,
            Kind::Vote => client.vote(req).await,
            Kind::Snapshot => client.install_snapshot(req).await,
        };
        let reply = r
            .map_err(|s| RPCError::Unreachable(Unreachable::new(&WireError(s.to_string()))))?
            .into_inner();
        match reply.result {
            Some(pb::raft_reply::Result::Payload(p)) => {
                serde_json::from_slice(&p).map_err(|e| RPCError::Network(NetworkError::new(&e)))
            }
            Some(pb::raft_reply::Result::Error(b)) => {
                let e: RaftError<u64, E> = serde_json::from_slice(&b)
                    .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            None => Err(RPCError::Network(NetworkError::new(&WireError(
                "empty raft reply".into(),
            )))),
        }
    }
}

enum Kind {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<ShardRaft> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ShardRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr<openraft::error::Infallible>> {
        self.call(Kind::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<ShardRaft>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        self.call(Kind::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr<openraft::error::Infallible>> {
        self.call(Kind::Vote, &rpc, option.hard_ttl()).await
    }
}
