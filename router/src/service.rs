//! The core tier's gRPC face (`cluster.proto`, service `Core`): remote
//! edges forward their clients' stanzas here and receive, on the same
//! stream, the deliveries for their sessions. Bind, unbind, credentials and
//! registration are unary calls. A session of a remote edge is a
//! [`SessionSink::remote`] in its shard, so the shards process its stanzas
//! exactly as they do a local connection's.
//!
//! An edge is known by the id in the `x-xmppd-edge` header of its calls
//! (its node id); its session ids carry that id in their top bits
//! ([`edge_of`]). The forward stream is the edge's lease: when it ends (the
//! edge stopped, crashed, or stopped answering the HTTP/2 pings that the
//! server sends, see [`liveness`]), its sessions are removed and their
//! contacts get unavailable presence (RFC 6121 §4.5.2).
//!
//! With several core nodes (`CoreConfig::peers`) each shard is served by
//! the node that leads its Raft group: `bind` elsewhere is refused with
//! the leader's address, and stanzas that arrive at the wrong node are
//! relayed to the leader (`Relay`, `crate::relay`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{FutureExt, Stream, StreamExt};
use proto::cluster::ClusterError;
use proto::cluster::envelope::from_envelope;
use proto::cluster::pb;
use proto::{BareJid, FullJid};
use tonic::{Request, Response, Status, Streaming};

use crate::accounts::{AccountError, AccountOp};
use crate::cluster::admin_client::admin_at;
use crate::core::Core;
use crate::error::{BindError, CoreError};
use crate::session::{Confirm, EdgeLink, SessionSink};
pub use crate::session::{EDGE_SHIFT, edge_of};

/// The call header that names the calling edge.
pub const EDGE_HEADER: &str = "x-xmppd-edge";
/// Sent by an edge whose id was drawn at random (`node_id = "auto"`):
/// the process's own random number, so that another edge that drew the
/// same id is told apart from this one reconnecting.
pub const EDGE_INSTANCE_HEADER: &str = "x-xmppd-edge-instance";
/// Forward-stream metadata of an edge that federates (`s2s.enabled`):
/// stanzas for other servers may be sent to it.
pub const EDGE_S2S_HEADER: &str = "x-xmppd-edge-s2s";
/// The message of the `already_exists` status that refuses such an edge.
pub const EDGE_ID_TAKEN: &str = "edge id taken";

/// Deliveries queued for one edge before further ones are refused.
const EDGE_QUEUE: usize = 65_536;
/// Deliveries per batch on the way down.
const BATCH: usize = 256;

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The HTTP/2 connection window of every link between cluster nodes,
/// both ends. h2 closes a connection with ENHANCE_YOUR_CALM
/// (`too_many_data_frames`) when the small DATA frames it holds for a
/// reader that has not caught up exceed half this window; with the
/// default 64 KiB that was about a hundred stanzas. An edge whose clients
/// left in a crowd (5,000 sessions ended at once) lost its core link that
/// way again and again, and with it every session it held.
pub const CLUSTER_WINDOW_BYTES: u32 = 32 << 20;

/// HTTP/2 ping interval and answer timeout for a liveness bound of
/// `within`: a peer that stops answering is dropped after about `within`.
pub fn liveness(within: std::time::Duration) -> (std::time::Duration, std::time::Duration) {
    let interval = (within / 4).max(std::time::Duration::from_millis(100));
    (interval, within.saturating_sub(interval).max(interval))
}

/// A connected edge: its link and where it connects from.
struct EdgeEntry {
    link: Arc<EdgeLink>,
    from: String,
    /// The edge's instance, for an id it drew at random.
    instance: Option<u64>,
}

type Edges = Arc<Mutex<HashMap<u64, EdgeEntry>>>;

/// The `Core` and `Admin` services of one core node.
#[derive(Clone)]
pub struct CoreService {
    core: Core,
    node_id: u64,
    address: String,
    edges: Edges,
}

impl CoreService {
    /// The services of core node `node_id`, reachable at `address`.
    pub fn new(core: Core, node_id: u64, address: String) -> CoreService {
        CoreService {
            core,
            node_id,
            address,
            edges: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Each connected edge and the deliveries waiting in its queue.
    pub fn edge_queue_depths(&self) -> Vec<(u64, usize)> {
        let m = self.edges.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(u64, usize)> = m.iter().map(|(id, e)| (*id, e.link.depth())).collect();
        v.sort_unstable();
        v
    }

    /// The address the other nodes know this one by.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The tonic service for edges.
    pub fn core_server(&self) -> pb::core_server::CoreServer<CoreService> {
        pb::core_server::CoreServer::new(self.clone())
    }

    /// The tonic service for operators.
    pub fn admin_server(&self) -> pb::admin_server::AdminServer<CoreService> {
        pb::admin_server::AdminServer::new(self.clone())
    }

    /// Wait (up to `limit`) until every edge's delivery queue is empty.
    pub async fn flush(&self, limit: std::time::Duration) {
        let links: Vec<Arc<EdgeLink>> = self
            .edges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|e| e.link.clone())
            .collect();
        let deadline = tokio::time::Instant::now() + limit;
        while links.iter().any(|l| !l.is_empty()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    fn link(&self, edge: u64) -> Option<Arc<EdgeLink>> {
        self.edges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&edge)
            .map(|e| e.link.clone())
    }
}

fn edge_id<T>(req: &Request<T>) -> Result<u64, Status> {
    req.metadata()
        .get(EDGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .filter(|e| *e > 0)
        .ok_or_else(|| ClusterError::BadRequest(format!("no valid {EDGE_HEADER} header")).into())
}

fn full_jid(s: &str) -> Result<FullJid, Status> {
    match proto::Jid::parse(s) {
        Ok(proto::Jid::Full(f)) => Ok(f),
        _ => Err(ClusterError::BadRequest(format!("not a full JID: {s:?}")).into()),
    }
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    ClusterError::Unavailable(e.to_string()).into()
}

#[tonic::async_trait]
impl pb::core_server::Core for CoreService {
    type ForwardStream = Out<pb::DeliveryBatch>;

    async fn forward(
        &self,
        req: Request<Streaming<pb::EnvelopeBatch>>,
    ) -> Result<Response<Self::ForwardStream>, Status> {
        let edge = edge_id(&req)?;
        let instance: Option<u64> = req
            .metadata()
            .get(EDGE_INSTANCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let from = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let (link, rx) = EdgeLink::new(edge, EDGE_QUEUE);
        link.set_s2s(req.metadata().get(EDGE_S2S_HEADER).is_some());
        let old = {
            let mut edges = self.edges.lock().unwrap_or_else(|p| p.into_inner());
            // An edge that drew its id at random may have drawn one that a
            // running edge holds: it is refused and draws again. (The same
            // instance reconnecting replaces its old stream, as does any
            // edge with a configured id.)
            if let (Some(mine), Some(held)) = (instance, edges.get(&edge))
                && held.instance != Some(mine)
                && !held.link.is_closed()
            {
                tracing::warn!(
                    edge,
                    "an edge drew an id another running edge holds: refused"
                );
                return Err(Status::already_exists(EDGE_ID_TAKEN));
            }
            edges.insert(
                edge,
                EdgeEntry {
                    link: link.clone(),
                    from,
                    instance,
                },
            )
        };
        if old.is_some() {
            tracing::info!(edge, "edge reconnected; its old stream is replaced");
        }
        self.core.edge_up(edge, link.clone());
        tracing::info!(edge, "edge connected");
        let mut up = req.into_inner();
        let core = self.core.clone();
        let edges = self.edges.clone();
        tokio::spawn(async move {
            'stream: while let Some(batch) = up.next().await {
                let Ok(batch) = batch else { break };
                for e in batch.envelopes {
                    if e.remote_done != 0 {
                        link.remote_done(e.remote_done);
                        continue;
                    }
                    let (seq, inbound) = (e.seq, e.inbound);
                    match from_envelope(e) {
                        // From another server: its stream checked 'from'.
                        Ok((_, st)) if inbound => {
                            // Confirmed once a core node that leads
                            // its shard has it (the edge keeps it until
                            // then, and sends it again should this node
                            // die first).
                            let receipts =
                                crate::cluster::relay::collect(|| core.route_inbound(st));
                            if seq != 0 {
                                let c = Confirm {
                                    link: link.clone(),
                                    seq,
                                };
                                core.when_handled(receipts, move || c.done());
                            }
                        }
                        // `from` was stamped by the edge from the session.
                        Ok((_, mut st)) => {
                            let confirm = (seq != 0).then(|| Confirm {
                                link: link.clone(),
                                seq,
                            });
                            // Ends once the stanza is queued at its shard.
                            let _span = crate::trace::hop(&mut st, "core forward", edge);
                            if core.route_confirmed(st, confirm).await.is_err() {
                                break 'stream;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(edge, error = %e, "bad envelope dropped");
                            if seq != 0 {
                                link.processed(seq);
                            }
                        }
                    }
                }
            }
            // The edge is gone (or replaced): its sessions end.
            {
                let mut m = edges.lock().unwrap_or_else(|p| p.into_inner());
                if m.get(&edge).is_some_and(|e| Arc::ptr_eq(&e.link, &link)) {
                    m.remove(&edge);
                }
            }
            tracing::info!(edge, "edge stream ended; removing its sessions");
            core.edge_down(edge, &link);
            // What it had not yet written to other servers goes through
            // another edge (it may have written some: they may arrive twice).
            let unsent = link.take_unconfirmed();
            if !unsent.is_empty() {
                tracing::info!(
                    edge,
                    n = unsent.len(),
                    "stanzas for other servers sent again through another edge"
                );
                core.to_remote(unsent);
            }
            core.drop_edge_sessions(link).await;
        });
        let down = futures::stream::unfold(rx, |mut rx| async move {
            let first = rx.recv().await?;
            let mut deliveries = vec![first];
            while deliveries.len() < BATCH {
                match rx.try_recv() {
                    Ok(d) => push_merged(&mut deliveries, d),
                    Err(_) => break,
                }
            }
            Some((Ok(pb::DeliveryBatch { deliveries }), rx))
        });
        Ok(Response::new(Box::pin(down)))
    }

    async fn bind(&self, req: Request<pb::BindRequest>) -> Result<Response<pb::BindReply>, Status> {
        let edge = edge_id(&req)?;
        let r = req.into_inner();
        if edge_of(r.session) != edge {
            return Err(ClusterError::BadRequest("session id of another edge".into()).into());
        }
        if r.component {
            let link = self
                .link(edge)
                .ok_or_else(|| unavailable("the edge has no forward stream"))?;
            return match self
                .core
                .bind_component(r.full_jid, SessionSink::remote(r.session, link))
                .await
            {
                Ok(()) => Ok(Response::new(pb::BindReply {
                    result: pb::bind_reply::Result::Bound as i32,
                })),
                Err(CoreError::NotLeader { leader, addr }) => Err(ClusterError::NotLeader {
                    leader,
                    address: addr,
                }
                .into()),
                Err(e) => Err(ClusterError::BadRequest(e.to_string()).into()),
            };
        }
        let jid = full_jid(&r.full_jid)?;
        let link = self
            .link(edge)
            .ok_or_else(|| unavailable("the edge has no forward stream"))?;
        let result = match self
            .core
            .bind(jid, SessionSink::remote(r.session, link))
            .await
        {
            Ok(()) => pb::bind_reply::Result::Bound,
            Err(BindError::NoSuchUser) => pb::bind_reply::Result::NoSuchUser,
            Err(BindError::ShuttingDown) => return Err(unavailable("the core is stopping")),
            Err(BindError::NotLeader { leader, addr }) => {
                return Err(ClusterError::NotLeader {
                    leader,
                    address: addr,
                }
                .into());
            }
        };
        Ok(Response::new(pb::BindReply {
            result: result as i32,
        }))
    }

    async fn unbind(
        &self,
        req: Request<pb::UnbindRequest>,
    ) -> Result<Response<pb::UnbindReply>, Status> {
        let r = req.into_inner();
        if r.component {
            return match self.core.unbind_component(r.full_jid, r.session).await {
                Ok(()) => Ok(Response::new(pb::UnbindReply { kept: false })),
                Err(CoreError::NotLeader { leader, addr }) => Err(ClusterError::NotLeader {
                    leader,
                    address: addr,
                }
                .into()),
                Err(_) => Err(unavailable("the core is stopping")),
            };
        }
        let jid = full_jid(&r.full_jid)?;
        let result = if r.lost {
            self.core.session_lost(jid, r.session).await
        } else {
            self.core.unbind(jid, r.session).await.map(|()| false)
        };
        match result {
            Ok(kept) => Ok(Response::new(pb::UnbindReply { kept })),
            Err(BindError::NotLeader { leader, addr }) => Err(ClusterError::NotLeader {
                leader,
                address: addr,
            }
            .into()),
            Err(_) => Err(unavailable("the core is stopping")),
        }
    }

    async fn sm(&self, req: Request<pb::SmRequest>) -> Result<Response<pb::SmReply>, Status> {
        use pb::sm_request::What;
        let edge = edge_id(&req)?;
        let r = req.into_inner();
        if edge_of(r.session) != edge {
            return Err(ClusterError::BadRequest("session id of another edge".into()).into());
        }
        let ok = |full_jid: String, h: u32| pb::SmReply {
            result: pb::sm_reply::Result::Ok as i32,
            full_jid,
            h,
            carbons: false,
        };
        let result = match r.what {
            Some(What::Enable(e)) => {
                let jid = full_jid(&r.jid)?;
                let e = crate::modules::sm::SmEnable {
                    id: e.id,
                    resume: e.resume,
                    max_unacked: e.max_unacked as usize,
                    timeout: std::time::Duration::from_secs(e.timeout_secs.into()),
                };
                self.core
                    .sm_enable(jid, r.session, e)
                    .await
                    .map(|done| match done {
                        true => ok(String::new(), 0),
                        false => pb::SmReply {
                            result: pb::sm_reply::Result::NotFound as i32,
                            ..Default::default()
                        },
                    })
            }
            Some(What::Ack(a)) => {
                let jid = full_jid(&r.jid)?;
                self.core
                    .sm_ack(jid, r.session, a.h, a.handled)
                    .await
                    .map(|()| ok(String::new(), 0))
            }
            Some(What::Detach(handled)) => {
                let jid = full_jid(&r.jid)?;
                self.core
                    .sm_detach(jid, r.session, handled)
                    .await
                    .map(|()| ok(String::new(), 0))
            }
            Some(What::Echo(bytes)) => {
                let jid = full_jid(&r.jid)?;
                self.core
                    .sm_echo(jid, r.session, bytes)
                    .await
                    .map(|()| ok(String::new(), 0))
            }
            Some(What::Resume(res)) => {
                let user = BareJid::parse(&r.jid)
                    .map_err(|e| Status::from(ClusterError::BadRequest(e.to_string())))?;
                let link = self
                    .link(edge)
                    .ok_or_else(|| unavailable("the edge has no forward stream"))?;
                let sink = SessionSink::remote(r.session, link);
                self.core
                    .sm_resume(user, res.previd, res.h, sink)
                    .await
                    .map(|r| match r {
                        Ok((jid, handled, carbons)) => pb::SmReply {
                            carbons,
                            ..ok(jid.to_string(), handled)
                        },
                        Err(crate::session::ResumeRefused::NotFound) => pb::SmReply {
                            result: pb::sm_reply::Result::NotFound as i32,
                            ..Default::default()
                        },
                        Err(crate::session::ResumeRefused::TooHigh { handled }) => pb::SmReply {
                            result: pb::sm_reply::Result::TooHigh as i32,
                            full_jid: String::new(),
                            h: handled,
                            carbons: false,
                        },
                    })
            }
            None => return Err(ClusterError::BadRequest("an empty request".into()).into()),
        };
        match result {
            Ok(reply) => Ok(Response::new(reply)),
            Err(BindError::NotLeader { leader, addr }) => Err(ClusterError::NotLeader {
                leader,
                address: addr,
            }
            .into()),
            Err(_) => Err(unavailable("the core is stopping")),
        }
    }

    async fn credentials(
        &self,
        req: Request<pb::AccountRequest>,
    ) -> Result<Response<pb::CredentialsReply>, Status> {
        let r = req.into_inner();
        let user = BareJid::parse(&r.bare_jid)
            .map_err(|e| Status::from(ClusterError::BadRequest(e.to_string())))?;
        // Read where the account's changes are made: a replica may not
        // have applied a registration made a moment ago.
        if let Some((leader, address)) = self.core.led_elsewhere(user.as_str()) {
            return Err(ClusterError::NotLeader { leader, address }.into());
        }
        let creds = self
            .core
            .accounts()
            .credentials(&user)
            .map_err(|e| Status::from(ClusterError::Internal(e.to_string())))?;
        Ok(Response::new(pb::CredentialsReply {
            credentials: creds.map(|c| c.to_bytes().into()),
        }))
    }

    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        let r = req.into_inner();
        let payload = proto::Element::parse(r.payload.as_bytes(), proto::ns::CLIENT, &[])
            .map_err(|e| Status::from(ClusterError::BadRequest(e.to_string())))?;
        let reply = match crate::modules::register::unauthenticated(
            &self.core,
            self.core.config().registration.get(),
            &r.domain,
            &r.iq_type,
            &payload,
        )
        .await
        {
            Ok(Some(form)) => pb::RegisterReply {
                result: Some(pb::register_reply::Result::Form(
                    form.to_xml(proto::ns::CLIENT),
                )),
                empty: false,
            },
            Ok(None) => pb::RegisterReply {
                result: None,
                empty: true,
            },
            Err(e) => pb::RegisterReply {
                result: Some(pb::register_reply::Result::Error(e.to_xml())),
                empty: false,
            },
        };
        Ok(Response::new(reply))
    }

    async fn relay(
        &self,
        req: Request<Streaming<pb::EnvelopeBatch>>,
    ) -> Result<Response<pb::Empty>, Status> {
        let mut up = req.into_inner();
        while let Some(batch) = up.next().await {
            for e in batch?.envelopes {
                if self.core.relayed_envelope(e).await.is_err() {
                    return Err(unavailable("the core is stopping"));
                }
            }
        }
        Ok(Response::new(pb::Empty {}))
    }

    type RelayAckedStream = Out<pb::RelayAck>;

    /// `Relay` with an acknowledgement of each batch once its stanzas
    /// are taken (queued at this node's shards or relayed on).
    async fn relay_acked(
        &self,
        req: Request<Streaming<pb::EnvelopeBatch>>,
    ) -> Result<Response<Self::RelayAckedStream>, Status> {
        let mut up = req.into_inner();
        let core = self.core.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        // Each batch is acknowledged, in order, once its stanzas were
        // handled by this node's shards or taken by the next node.
        let (done, mut waiting) =
            tokio::sync::mpsc::channel::<(u64, crate::cluster::relay::Receipts)>(64);
        let acks = tx.clone();
        tokio::spawn(async move {
            while let Some((mut taken, r)) = waiting.recv().await {
                // Dropped unhandled: this node is stopping; the sender
                // sends the batch again to the shards' next leaders.
                let mut handled = r.wait().await;
                // The batches handled meanwhile go in the same answer.
                while handled && let Ok((t, r)) = waiting.try_recv() {
                    handled = r.wait().await;
                    taken = t;
                }
                if !handled {
                    let _ = acks.send(Err(unavailable("the core is stopping"))).await;
                    return;
                }
                if acks.send(Ok(pb::RelayAck { taken })).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            let mut taken = 0u64;
            while let Some(batch) = up.next().await {
                let Ok(batch) = batch else { return };
                // The batches already arrived are handled together: one
                // barrier per shard for all of them.
                let mut envelopes = batch.envelopes;
                while envelopes.len() < 4096
                    && let Some(Some(Ok(more))) = up.next().now_or_never()
                {
                    envelopes.extend(more.envelopes);
                }
                let n = envelopes.len() as u64;
                let (ok, r) = core.take_relayed(envelopes).await;
                if !ok {
                    let _ = tx.send(Err(unavailable("the core is stopping"))).await;
                    return;
                }
                taken += n;
                if done.send((taken, r)).await.is_err() {
                    return;
                }
            }
        });
        let down =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) });
        Ok(Response::new(Box::pin(down)))
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for CoreService {
    /// This core node, the edges connected to it, and the shard map as
    /// the shards' Raft groups report it.
    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        let map_only = req.into_inner().map_only;
        let groups = self.core.shard_groups();
        let member = |id: u64, address: String, healthy: bool, state: &str| pb::Member {
            id,
            role: pb::Role::Core as i32,
            address,
            healthy,
            sessions: 0,
            state: state.to_string(),
            holds_data: self.core.holds_data(id),
        };
        // The members as the meta group has them (this node alone, with
        // its own address, when it is a single node). Another node is
        // healthy when this node sees it lead a group, or, leading one
        // itself, sees it caught up.
        let current = self.core.members();
        let mut cores = current.clone();
        // This node is listed even when it is not a member (yet, or any
        // more).
        cores
            .entry(self.node_id)
            .or_insert_with(|| self.address.clone());
        let mut members: Vec<pb::Member> = Vec::new();
        for (id, addr) in cores {
            let healthy = id == self.node_id || self.core.peer_seen(id);
            let state = match (current.contains_key(&id), self.core.is_left(id)) {
                (true, _) => "",
                (false, true) => "leaving",
                (false, false) => "joining",
            };
            members.push(member(id, addr, healthy, state));
        }
        for (id, addr, leaving) in self.core.transient_members() {
            if members.iter().any(|m| m.id == id) {
                continue;
            }
            let healthy = id == self.node_id || self.core.peer_seen(id);
            let state = if leaving { "leaving" } else { "joining" };
            members.push(member(id, addr, healthy, state));
        }
        let edges: Vec<(u64, Arc<EdgeLink>, String)> = {
            let m = self.edges.lock().unwrap_or_else(|p| p.into_inner());
            m.iter()
                .map(|(id, e)| (*id, e.link.clone(), e.from.clone()))
                .collect()
        };
        for (id, link, from) in edges {
            members.push(pb::Member {
                id,
                role: pb::Role::Edge as i32,
                address: from,
                healthy: !link.is_closed(),
                sessions: if map_only {
                    0
                } else {
                    self.core.session_count_via(&link).await as u64
                },
                state: String::new(),
                holds_data: false,
            });
        }
        members.sort_by_key(|m| (m.role, m.id));
        let shards = groups
            .into_iter()
            .map(|g| pb::ShardPlacement {
                shard: g.shard,
                leader: g.leader,
                replicas: g.replicas,
                applied: g.applied,
            })
            .collect();
        Ok(Response::new(pb::ClusterStatus {
            members,
            shards,
            meta_leader: self.core.meta_leader(),
        }))
    }

    async fn add_node(
        &self,
        req: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::MembersReply>, Status> {
        let r = req.into_inner();
        if self
            .edges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&r.id)
        {
            return Err(ClusterError::BadRequest(format!(
                "node id {} is an edge's: every node needs its own",
                r.id
            ))
            .into());
        }
        match self.core.add_node(r.id, r.address.clone()).await {
            Err(CoreError::NotLeader {
                addr: Some(leader), ..
            }) => {
                let mut admin = admin_at(&leader).await?;
                admin.add_node(r).await
            }
            other => other
                .map(|members| Response::new(pb::MembersReply { members }))
                .map_err(membership_status),
        }
    }

    async fn account(
        &self,
        req: Request<pb::AccountChange>,
    ) -> Result<Response<pb::AccountReply>, Status> {
        use pb::account_change::Kind;
        let r = req.into_inner();
        let user = BareJid::parse(&r.bare_jid)
            .map_err(|e| Status::from(ClusterError::BadRequest(e.to_string())))?;
        let creds = || {
            proto::sasl::StoredCredentials::from_bytes(&r.credentials)
                .map_err(|e| Status::from(ClusterError::BadRequest(e.to_string())))
        };
        let op = match Kind::try_from(r.kind) {
            Ok(Kind::Add) => AccountOp::Add(creds()?),
            Ok(Kind::SetCredentials) => AccountOp::SetCredentials(creds()?),
            Ok(Kind::Delete) => AccountOp::Delete,
            Err(_) => return Err(ClusterError::BadRequest("unknown account change".into()).into()),
        };
        let result = self.core.account_op(&user, op, r.hops).await;
        Ok(Response::new(account_reply(result)))
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::UserList>, Status> {
        let r = req.into_inner();
        let users = self
            .core
            .led_users(r.domain.as_deref())
            .map_err(|e| Status::from(ClusterError::Internal(e.to_string())))?;
        Ok(Response::new(pb::UserList {
            bare_jids: users.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::SessionList>, Status> {
        let r = req.into_inner();
        let user = match r.bare_jid.as_deref().map(proto::BareJid::parse) {
            None => None,
            Some(Ok(u)) => Some(u),
            Some(Err(e)) => return Err(Status::invalid_argument(e.to_string())),
        };
        let sessions = self
            .core
            .led_sessions(user.as_ref())
            .await
            .into_iter()
            .map(|s| pb::SessionEntry {
                full_jid: s.jid.to_string(),
                edge: s.edge,
                available: s.available,
                priority: s.priority,
            })
            .collect();
        Ok(Response::new(pb::SessionList { sessions }))
    }

    async fn kick(&self, req: Request<pb::KickRequest>) -> Result<Response<pb::KickReply>, Status> {
        let r = req.into_inner();
        let jid = proto::FullJid::parse(&r.full_jid)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let found = self
            .core
            .kick(&jid, r.hops)
            .await
            .map_err(|e| Status::from(ClusterError::Internal(e.to_string())))?;
        Ok(Response::new(pb::KickReply { found }))
    }

    async fn list_rooms(
        &self,
        req: Request<pb::ListRoomsRequest>,
    ) -> Result<Response<pb::RoomList>, Status> {
        let r = req.into_inner();
        proto::BareJid::domain_jid(&r.service)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let rooms = self
            .core
            .led_rooms(&r.service, r.after.as_deref(), page_limit(r.limit))
            .await
            .map_err(|e| Status::from(ClusterError::Internal(e.to_string())))?;
        Ok(Response::new(pb::RoomList { rooms }))
    }

    async fn destroy_room(
        &self,
        req: Request<pb::DestroyRoomRequest>,
    ) -> Result<Response<pb::FoundReply>, Status> {
        let r = req.into_inner();
        let room =
            proto::BareJid::parse(&r.room).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let alternate = match r.alternate.as_deref().map(proto::Jid::parse) {
            None => None,
            Some(Ok(j)) => Some(j),
            Some(Err(e)) => return Err(Status::invalid_argument(e.to_string())),
        };
        let found = self
            .core
            .destroy_room(&room, r.reason, alternate, r.hops)
            .await
            .map_err(|e| Status::from(ClusterError::Internal(e.to_string())))?;
        Ok(Response::new(pb::FoundReply { found }))
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::NodeList>, Status> {
        let r = req.into_inner();
        let service = proto::BareJid::parse(&r.service)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let nodes = self
            .core
            .led_nodes(&service, r.after.as_deref(), page_limit(r.limit))
            .map_err(|e| Status::from(ClusterError::Internal(e.to_string())))?;
        Ok(Response::new(pb::NodeList { nodes }))
    }

    async fn delete_node(
        &self,
        req: Request<pb::DeleteNodeRequest>,
    ) -> Result<Response<pb::FoundReply>, Status> {
        let r = req.into_inner();
        let service = proto::BareJid::parse(&r.service)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let found = self
            .core
            .delete_node(&service, &r.node, r.hops)
            .await
            .map_err(|e| Status::from(ClusterError::Internal(e.to_string())))?;
        Ok(Response::new(pb::FoundReply { found }))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembersReply>, Status> {
        let r = req.into_inner();
        match self.core.remove_node(r.id).await {
            Err(CoreError::NotLeader {
                addr: Some(leader), ..
            }) => {
                let mut admin = admin_at(&leader).await?;
                admin.remove_node(r).await
            }
            other => other
                .map(|members| Response::new(pb::MembersReply { members }))
                .map_err(membership_status),
        }
    }
}

/// A page size asked by a peer: 1 to 1000.
fn page_limit(limit: u32) -> usize {
    usize::try_from(limit).unwrap_or(1000).clamp(1, 1000)
}

/// An account change's outcome on the wire.
fn account_reply(r: Result<(), AccountError>) -> pb::AccountReply {
    use pb::account_reply::Failure;
    let (failure, message) = match r {
        Ok(()) => (Failure::None, String::new()),
        Err(e) => {
            let kind = match &e {
                AccountError::Exists(_) => Failure::Exists,
                AccountError::NoSuchUser(_) => Failure::NoSuchUser,
                AccountError::BadPassword(m) => return reply_of(Failure::BadPassword, m.clone()),
                AccountError::NotAUser(_) => Failure::NotAUser,
                AccountError::UnknownDomain(_) => Failure::UnknownDomain,
                AccountError::Storage(_) | AccountError::NotCommitted(_) => Failure::NotCommitted,
            };
            (kind, e.to_string())
        }
    };
    reply_of(failure, message)
}

fn reply_of(failure: pb::account_reply::Failure, message: String) -> pb::AccountReply {
    pb::AccountReply {
        failure: failure as i32,
        message,
    }
}

/// A failed membership change as the operator's tool gets it.
fn membership_status(e: CoreError) -> Status {
    match e {
        CoreError::Membership(m) => ClusterError::BadRequest(m).into(),
        CoreError::NotLeader { leader, addr } => ClusterError::NotLeader {
            leader,
            address: addr,
        }
        .into(),
        other => ClusterError::Unavailable(other.to_string()).into(),
    }
}

/// Append `d`, or add its sessions to the last delivery when both carry
/// the same bytes (the same buffer: a broadcast's sends share one): a
/// fan-out to many sessions of one edge crosses the wire once. Only the
/// last delivery is merged into, so no session sees its stanzas reordered.
fn push_merged(deliveries: &mut Vec<pb::Delivery>, d: pb::Delivery) {
    use pb::delivery::What;
    if let (Some(last), Some(What::Stanza(b))) = (deliveries.last_mut(), &d.what)
        && let Some(What::Stanza(a)) = &last.what
        && a.as_ptr() == b.as_ptr()
        && a.len() == b.len()
    {
        last.sessions.extend_from_slice(&d.sessions);
        return;
    }
    deliveries.push(d);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proto::cluster::envelope::{DeliveryAction, to_delivery};

    fn stanza(sessions: &[u64], b: &Bytes) -> pb::Delivery {
        to_delivery(
            sessions.to_vec(),
            DeliveryAction::Stanza(b.clone()),
            &Default::default(),
        )
    }

    #[test]
    fn a_broadcast_to_one_edge_travels_once_and_order_is_kept() {
        let presence = Bytes::from_static(b"<presence from='a@x/r'/>");
        let message = Bytes::from(b"<message/>".to_vec());
        let same_text = Bytes::from(b"<presence from='a@x/r'/>".to_vec());
        let mut out = Vec::new();
        for d in [
            stanza(&[1], &presence),
            stanza(&[2], &presence),
            stanza(&[3, 4], &presence),
            stanza(&[2], &message),
            // The same bytes again, but after a message to session 2:
            // merging it into the first delivery would reorder session 2.
            stanza(&[2], &presence),
            // Equal text in another buffer is another stanza.
            stanza(&[5], &same_text),
        ] {
            push_merged(&mut out, d);
        }
        let got: Vec<(Vec<u64>, Vec<u8>)> = out
            .into_iter()
            .map(|d| match d.what {
                Some(pb::delivery::What::Stanza(b)) => (d.sessions, b.to_vec()),
                _ => panic!("a stanza"),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![1, 2, 3, 4], presence.to_vec()),
                (vec![2], message.to_vec()),
                (vec![2], presence.to_vec()),
                (vec![5], same_text.to_vec()),
            ]
        );
    }

    #[test]
    fn session_ids_name_their_edge() {
        for edge in [1u64, 2, 65_535] {
            assert_eq!(edge_of((edge << EDGE_SHIFT) + 1), edge);
            assert_eq!(edge_of((edge << EDGE_SHIFT) + (1 << EDGE_SHIFT) - 1), edge);
        }
    }

    #[test]
    fn liveness_splits_into_ping_interval_and_timeout() {
        use std::time::Duration;
        let (i, t) = liveness(Duration::from_secs(4));
        assert_eq!((i, t), (Duration::from_secs(1), Duration::from_secs(3)));
        let (i, t) = liveness(Duration::from_millis(100));
        assert!(i >= Duration::from_millis(100) && t >= i);
    }
}
