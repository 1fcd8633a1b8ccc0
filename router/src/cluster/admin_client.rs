//! Calls one core node makes on another's `Admin` service: an account
//! change handed to the leader of the user's shard, and the users of the
//! shards another node leads.

use std::collections::HashMap;
use std::sync::Mutex;

use proto::BareJid;
use proto::cluster::{ClusterError, pb};
use tonic::Status;

use crate::accounts::{AccountError, AccountOp};

/// Hand an account change on to the core node at `addr` (the leader of
/// the user's shard).
pub(crate) async fn forward_account(
    addr: &str,
    user: &BareJid,
    op: &AccountOp,
    hops: u32,
) -> Result<(), AccountError> {
    use pb::account_change::Kind;
    use pb::account_reply::Failure;
    let not_committed = |s: Status| AccountError::NotCommitted(ClusterError::from(s).to_string());
    let mut admin = admin_at(addr).await.map_err(not_committed)?;
    let (kind, credentials) = match op {
        AccountOp::Add(c) => (Kind::Add, c.to_bytes()),
        AccountOp::SetCredentials(c) => (Kind::SetCredentials, c.to_bytes()),
        AccountOp::Delete => (Kind::Delete, Vec::new()),
    };
    let r = admin
        .account(pb::AccountChange {
            kind: kind as i32,
            bare_jid: user.to_string(),
            credentials: credentials.into(),
            hops,
        })
        .await
        .map_err(not_committed)?
        .into_inner();
    let u = user.to_string();
    match Failure::try_from(r.failure).unwrap_or(Failure::NotCommitted) {
        Failure::None => Ok(()),
        Failure::Exists => Err(AccountError::Exists(u)),
        Failure::NoSuchUser => Err(AccountError::NoSuchUser(u)),
        Failure::BadPassword => Err(AccountError::BadPassword(r.message)),
        Failure::NotAUser => Err(AccountError::NotAUser(u)),
        Failure::UnknownDomain => Err(AccountError::UnknownDomain(user.domain().to_string())),
        Failure::NotCommitted => Err(AccountError::NotCommitted(r.message)),
    }
}

/// The accounts in the shards that the core node at `addr` leads.
pub(crate) async fn list_users_at(
    addr: &str,
    domain: Option<&str>,
) -> Result<Vec<BareJid>, AccountError> {
    let failed = |s: Status| AccountError::NotCommitted(ClusterError::from(s).to_string());
    let mut admin = admin_at(addr).await.map_err(failed)?;
    let list = admin
        .list_users(pb::ListUsersRequest {
            domain: domain.map(str::to_string),
        })
        .await
        .map_err(failed)?
        .into_inner();
    Ok(list
        .bare_jids
        .iter()
        .filter_map(|j| BareJid::parse(j).ok())
        .collect())
}

/// The sessions bound at the shards that the core node at `addr` leads.
pub(crate) async fn list_sessions_at(
    addr: &str,
    user: Option<&BareJid>,
) -> Result<Vec<crate::SessionInfo>, ClusterError> {
    let mut admin = admin_at(addr).await?;
    let list = admin
        .list_sessions(pb::ListSessionsRequest {
            bare_jid: user.map(ToString::to_string),
        })
        .await?
        .into_inner();
    Ok(list
        .sessions
        .into_iter()
        .filter_map(|s| {
            Some(crate::SessionInfo {
                jid: proto::FullJid::parse(&s.full_jid).ok()?,
                edge: s.edge,
                available: s.available,
                priority: s.priority,
            })
        })
        .collect())
}

/// Hand a kick on to the core node at `addr` (the leader of the user's
/// shard).
pub(crate) async fn kick_at(
    addr: &str,
    jid: &proto::FullJid,
    hops: u32,
) -> Result<bool, crate::CoreError> {
    let failed = |s: Status| crate::CoreError::Raft(ClusterError::from(s).to_string());
    let mut admin = admin_at(addr).await.map_err(failed)?;
    let r = admin
        .kick(pb::KickRequest {
            full_jid: jid.to_string(),
            hops,
        })
        .await
        .map_err(failed)?
        .into_inner();
    Ok(r.found)
}

/// The `Admin` service of the core node at `addr` (a shard's leader or
/// the meta leader, for a change that reached another node).
///
/// One channel per address for the life of the process (HTTP/2 carries
/// many calls at once): a burst of registrations handed on to a shard's
/// leader must not open a connection each.
pub(crate) async fn admin_at(
    addr: &str,
) -> Result<pb::admin_client::AdminClient<tonic::transport::Channel>, Status> {
    static CHANNELS: std::sync::OnceLock<Mutex<HashMap<String, tonic::transport::Channel>>> =
        std::sync::OnceLock::new();
    let channels = CHANNELS.get_or_init(Default::default);
    if let Some(ch) = channels.lock().unwrap_or_else(|p| p.into_inner()).get(addr) {
        return Ok(pb::admin_client::AdminClient::new(ch.clone()));
    }
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Status::from(ClusterError::Internal(e.to_string())))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect_lazy();
    channels
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(addr.to_string(), ch.clone());
    Ok(pb::admin_client::AdminClient::new(ch))
}

/// The rooms of `service` in the shards the core node at `addr` leads.
pub(crate) async fn list_rooms_at(
    addr: &str,
    service: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<pb::RoomEntry>, ClusterError> {
    let mut admin = admin_at(addr).await?;
    let r = admin
        .list_rooms(pb::ListRoomsRequest {
            service: service.to_string(),
            after: after.map(str::to_string),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        })
        .await?
        .into_inner();
    Ok(r.rooms)
}

/// Hand a room's destruction on to the core node at `addr` (the leader
/// of the room's shard).
pub(crate) async fn destroy_room_at(
    addr: &str,
    room: &BareJid,
    reason: Option<String>,
    alternate: Option<proto::Jid>,
    hops: u32,
) -> Result<bool, crate::CoreError> {
    let failed = |s: Status| crate::CoreError::Raft(ClusterError::from(s).to_string());
    let mut admin = admin_at(addr).await.map_err(failed)?;
    let r = admin
        .destroy_room(pb::DestroyRoomRequest {
            room: room.to_string(),
            reason,
            alternate: alternate.map(|j| j.to_string()),
            hops,
        })
        .await
        .map_err(failed)?
        .into_inner();
    Ok(r.found)
}

/// The nodes of `service` in the shards the core node at `addr` leads.
pub(crate) async fn list_nodes_at(
    addr: &str,
    service: &BareJid,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<pb::NodeEntry>, ClusterError> {
    let mut admin = admin_at(addr).await?;
    let r = admin
        .list_nodes(pb::ListNodesRequest {
            service: service.to_string(),
            after: after.map(str::to_string),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        })
        .await?
        .into_inner();
    Ok(r.nodes)
}

/// Hand a node's deletion on to the core node at `addr` (the leader of
/// the node's shard).
pub(crate) async fn delete_node_at(
    addr: &str,
    service: &BareJid,
    node: &str,
    hops: u32,
) -> Result<bool, crate::CoreError> {
    let failed = |s: Status| crate::CoreError::Raft(ClusterError::from(s).to_string());
    let mut admin = admin_at(addr).await.map_err(failed)?;
    let r = admin
        .delete_node(pb::DeleteNodeRequest {
            service: service.to_string(),
            node: node.to_string(),
            hops,
        })
        .await
        .map_err(failed)?
        .into_inner();
    Ok(r.found)
}
