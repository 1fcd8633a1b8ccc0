//! An edge's connection to a core node over gRPC (`cluster.proto`, service
//! `Core`). Stanzas of the edge's sessions go up one `Forward` stream in
//! batches; deliveries for those sessions come down the same stream and are
//! handed to each session's queue by its id. Bind, unbind, credentials and
//! registration are unary calls, each carrying the edge's id.
//!
//! The up queue is bounded: when the core falls behind, a connection task
//! waits to hand over its stanza, which stops it reading its socket (the
//! same back-pressure as the in-process shard queue). When the stream to
//! the core ends, every session of this edge is closed (its clients
//! reconnect, and the core has removed the sessions on its side), and the
//! edge keeps trying to open a new stream, so that a restarted core is
//! found again without restarting the edge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use proto::cluster::envelope::{DeliveryAction, from_delivery, to_envelope};
use proto::cluster::pb::{self, core_client::CoreClient};
use proto::cluster::ClusterError;
use proto::error::StreamCondition;
use proto::sasl::StoredCredentials;
use proto::stanza::Stanza;
use proto::{BareJid, Element, FullJid};
use router::cluster::EDGE_HEADER;
use router::{BindError, Outbound, SessionSink};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::core_link::{RegisterOutcome, RouteError};

/// Envelopes waiting to go up before senders wait.
const UP_QUEUE: usize = 4096;
/// Envelopes per batch on the way up.
const BATCH: usize = 256;

pub struct RemoteCore {
    edge: u64,
    client: CoreClient<Channel>,
    /// The up queue of the current forward stream (replaced when the
    /// stream is opened again after the core was lost).
    up: Arc<Mutex<mpsc::Sender<pb::Envelope>>>,
    /// The sessions of this edge, by id, for deliveries.
    sessions: Arc<Mutex<HashMap<u64, SessionSink>>>,
}

type Sessions = Arc<Mutex<HashMap<u64, SessionSink>>>;

fn lock(m: &Sessions) -> std::sync::MutexGuard<'_, HashMap<u64, SessionSink>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RemoteCore {
    /// Connect to the core node at `addr` (host:port), retrying for up to
    /// `patience` while it starts, and open the forward stream. A core that
    /// stops answering HTTP/2 pings for about `liveness` is taken as lost.
    pub async fn connect(
        edge: u64,
        addr: &str,
        patience: Duration,
        liveness: Duration,
    ) -> anyhow::Result<Arc<RemoteCore>> {
        let (ping, answer) = router::cluster::liveness(liveness);
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .http2_keep_alive_interval(ping)
            .keep_alive_timeout(answer)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let deadline = tokio::time::Instant::now() + patience;
        let channel = loop {
            match endpoint.connect().await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!("cannot reach the core node at {addr}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let client = CoreClient::new(channel);
        let (tx, down) = open_stream(&client, edge)
            .await
            .map_err(|e| anyhow::anyhow!("opening the forward stream: {e}"))?;
        let up = Arc::new(Mutex::new(tx));
        let sessions: Sessions = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(link(
            client.clone(),
            edge,
            down,
            up.clone(),
            sessions.clone(),
        ));
        tracing::info!(edge, core = addr, "connected to the core");
        Ok(Arc::new(RemoteCore {
            edge,
            client,
            up,
            sessions,
        }))
    }

    pub async fn bind(&self, jid: FullJid, sink: SessionSink) -> Result<(), BindError> {
        let session = sink.conn_id;
        lock(&self.sessions).insert(session, sink);
        let req = pb::BindRequest {
            edge: self.edge,
            session,
            full_jid: jid.to_string(),
        };
        let r = self.client.clone().bind(with_edge(self.edge, req)).await;
        let result = match r {
            Ok(reply) => match pb::bind_reply::Result::try_from(reply.into_inner().result) {
                Ok(pb::bind_reply::Result::Bound) => Ok(()),
                Ok(pb::bind_reply::Result::NoSuchUser) => Err(BindError::NoSuchUser),
                _ => Err(BindError::ShuttingDown),
            },
            Err(s) => {
                tracing::warn!(error = %ClusterError::from(s), "bind failed at the core");
                Err(BindError::ShuttingDown)
            }
        };
        if result.is_err() {
            lock(&self.sessions).remove(&session);
        }
        result
    }

    pub async fn unbind(&self, jid: FullJid, session: u64) {
        lock(&self.sessions).remove(&session);
        let req = pb::UnbindRequest {
            edge: self.edge,
            session,
            full_jid: jid.to_string(),
        };
        if let Err(s) = self.client.clone().unbind(with_edge(self.edge, req)).await {
            tracing::debug!(error = %ClusterError::from(s), "unbind failed at the core");
        }
    }

    pub async fn route(&self, stanza: Stanza) -> Result<(), RouteError> {
        // One core node holds every shard for now: shard 0.
        let up = self.up.lock().unwrap_or_else(|p| p.into_inner()).clone();
        up.send(to_envelope(0, &stanza))
            .await
            .map_err(|_| RouteError::Unreachable("the forward stream ended".into()))
    }

    pub async fn credentials(&self, user: &BareJid) -> Result<Option<StoredCredentials>, String> {
        let req = pb::AccountRequest {
            bare_jid: user.to_string(),
        };
        let reply = self
            .client
            .clone()
            .credentials(with_edge(self.edge, req))
            .await
            .map_err(|s| ClusterError::from(s).to_string())?
            .into_inner();
        reply
            .credentials
            .map(|b| StoredCredentials::from_bytes(&b).map_err(|e| e.to_string()))
            .transpose()
    }

    pub async fn register(
        &self,
        domain: &str,
        iq_type: &str,
        payload: &Element,
    ) -> Result<RegisterOutcome, String> {
        let req = pb::RegisterRequest {
            domain: domain.to_owned(),
            iq_type: iq_type.to_owned(),
            payload: payload.to_xml(proto::ns::CLIENT),
        };
        let reply = self
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
) -> Result<(mpsc::Sender<pb::Envelope>, tonic::Streaming<pb::DeliveryBatch>), ClusterError> {
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
    let down = client
        .clone()
        .forward(with_edge(edge, batches))
        .await
        .map_err(ClusterError::from)?
        .into_inner();
    Ok((up, down))
}

/// The edge's link to its core for the life of the process: deliver until
/// the stream ends (which closes every session of the edge: the core has
/// dropped them), then open a new stream, backing off up to 5 s between
/// tries, so that a restarted core is found again without restarting the
/// edge.
async fn link(
    client: CoreClient<Channel>,
    edge: u64,
    mut down: tonic::Streaming<pb::DeliveryBatch>,
    up: Arc<Mutex<mpsc::Sender<pb::Envelope>>>,
    sessions: Sessions,
) {
    loop {
        dispatch(down, sessions.clone()).await;
        let mut backoff = Duration::from_millis(100);
        down = loop {
            tokio::time::sleep(backoff).await;
            match open_stream(&client, edge).await {
                Ok((tx, d)) => {
                    *up.lock().unwrap_or_else(|p| p.into_inner()) = tx;
                    tracing::info!(edge, "connected to the core again");
                    break d;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the core is still unreachable");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
    }
}

/// Hand each delivery to its sessions' queues until the stream ends, then
/// close every session of the edge.
async fn dispatch(mut down: tonic::Streaming<pb::DeliveryBatch>, sessions: Sessions) {
    let why = loop {
        match down.next().await {
            Some(Ok(batch)) => {
                let m = lock(&sessions);
                for d in batch.deliveries {
                    let (ids, action) = match from_delivery(d) {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "bad delivery dropped");
                            continue;
                        }
                    };
                    let out = match action {
                        DeliveryAction::Stanza(b) => Outbound::Stanza(b),
                        DeliveryAction::Close(c, t) => Outbound::Close(c, t),
                    };
                    for id in ids {
                        if let Some(sink) = m.get(&id) {
                            sink.send(out.clone());
                        }
                    }
                }
            }
            Some(Err(s)) => break ClusterError::from(s).to_string(),
            None => break "the core closed the stream".to_string(),
        }
    };
    tracing::error!(reason = %why, "lost the core; closing this edge's sessions");
    let all: Vec<SessionSink> = lock(&sessions).drain().map(|(_, s)| s).collect();
    for s in all {
        s.send(Outbound::Close(
            StreamCondition::InternalServerError,
            Some("the server lost its core node".into()),
        ));
    }
}
