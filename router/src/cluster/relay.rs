//! Stanzas between core nodes. A stanza can reach a core node that does
//! not lead its next shard: an edge's shard map was stale, or a shard of
//! this node routes to a user whose shard another node leads. The node
//! hands it to the leader over one client stream per peer (`Core.Relay`),
//! batched like an edge's forward stream. The queue to each peer is
//! bounded; when it is full, or the peer cannot be reached, stanzas are
//! dropped and counted in the log (the sender's edge gets no error: the
//! same as a lost connection).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::cluster::pb::{self, core_client::CoreClient};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

/// Stanzas queued for one peer before further ones are dropped.
const QUEUE: usize = 16_384;
/// Envelopes per batch.
const BATCH: usize = 256;
/// A relayed stanza is dropped after this many hops.
pub const MAX_HOPS: u32 = 4;

/// The relay queues of one core node, by peer address.
#[derive(Clone, Default)]
pub struct Relays(Arc<Mutex<HashMap<String, mpsc::Sender<pb::Envelope>>>>);

impl Relays {
    /// Queue `env` for the core node at `addr`.
    pub fn send(&self, addr: &str, env: pb::Envelope) {
        if env.hops > MAX_HOPS {
            tracing::warn!(to = addr, "stanza relayed too often; dropped");
            return;
        }
        let tx = {
            let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(addr.to_string())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    tokio::spawn(run(addr.to_string(), rx));
                    tx
                })
                .clone()
        };
        if tx.try_send(env).is_err() {
            tracing::warn!(to = addr, "relay queue full or closed; stanza dropped");
        }
    }
}

/// Keep a `Relay` stream open to `addr` and feed it the queue.
async fn run(addr: String, rx: mpsc::Receiver<pb::Envelope>) {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(1))
            .initial_connection_window_size(crate::service::CLUSTER_WINDOW_BYTES)
            .tcp_nodelay(true),
        Err(e) => {
            tracing::error!(to = %addr, error = %e, "bad peer address; relaying to it is off");
            return;
        }
    };
    let mut client = CoreClient::new(endpoint.connect_lazy());
    loop {
        let queue = rx.clone();
        let batches = futures::stream::unfold(queue, |q| async move {
            let mut rx = q.lock().await;
            let first = rx.recv().await?;
            let mut envelopes = vec![first];
            while envelopes.len() < BATCH {
                match rx.try_recv() {
                    Ok(e) => envelopes.push(e),
                    Err(_) => break,
                }
            }
            drop(rx);
            Some((pb::EnvelopeBatch { envelopes }, q))
        });
        match client.relay(batches).await {
            // The queue's senders are gone: this node is stopping.
            Ok(_) => return,
            Err(s) => {
                tracing::debug!(to = %addr, error = %s, "relay stream ended; reopening");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
