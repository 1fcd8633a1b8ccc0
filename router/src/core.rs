//! [`Core`]: the edge's one interface to the core tier. In one process the
//! calls become messages on the shard tasks' channels; in a cluster the same
//! messages travel over gRPC to the shard's leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::stanza::Stanza;
use proto::{BareJid, FullJid};
use tokio::sync::{mpsc, oneshot};

use crate::Store;
use crate::accounts::{AccountError, Accounts};
use crate::config::CoreConfig;
use crate::modules::registry::Registry;
use crate::session::SessionSink;
use crate::shard::{self, ShardMsg};

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the core is shutting down")]
    ShuttingDown,
    #[error("account: {0}")]
    Account(#[from] AccountError),
    #[error("module registry: {0}")]
    Registry(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("no such account")]
    NoSuchUser,
    #[error("the core is shutting down")]
    ShuttingDown,
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
    pub registry: Registry,
    next_id: AtomicU64,
}

impl Shared {
    pub fn shard_index(&self, bare: &str) -> usize {
        shard_of(bare, self.shards.len())
    }

    /// Hand a stanza to the shard of `bare` for inbound processing.
    pub fn send_internal(&self, bare: &str, msg: ShardMsg) {
        let i = self.shard_index(bare);
        if self.shards[i].internal.send(msg).is_err() {
            tracing::debug!(to = bare, "shard stopped, stanza dropped");
        }
    }

    /// A fresh id for server-generated stanzas.
    pub fn next_id(&self) -> String {
        format!("xmppd-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
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
    /// Start the shard tasks on the current tokio runtime.
    pub fn start(cfg: CoreConfig, store: Store) -> Result<Core, CoreError> {
        let registry = Registry::new(&cfg).map_err(CoreError::Registry)?;
        let n = cfg.shards.max(1);
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
            next_id: AtomicU64::new(1),
        });
        for (i, (erx, irx)) in receivers.into_iter().enumerate() {
            tokio::spawn(shard::run(i, shared.clone(), erx, irx));
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

    /// Bind a resource (RFC 6120 §7). An existing session with the same full
    /// JID is replaced: it gets a `<conflict/>` stream error.
    pub async fn bind(&self, jid: FullJid, sink: SessionSink) -> Result<(), BindError> {
        let (reply, rx) = oneshot::channel();
        let msg = ShardMsg::Bind {
            jid: jid.clone(),
            sink,
            reply,
        };
        self.shard(jid.bare_str())
            .edge
            .send(msg)
            .await
            .map_err(|_| BindError::ShuttingDown)?;
        rx.await.map_err(|_| BindError::ShuttingDown)?
    }

    /// The session ended (cleanly or not): contacts see it go unavailable.
    pub async fn unbind(&self, jid: FullJid, conn_id: u64) {
        let h = self.shard(jid.bare_str()).clone();
        let _ = h.edge.send(ShardMsg::Unbind { jid, conn_id }).await;
    }

    /// Route a stanza from a bound session; `from` is already stamped with
    /// the session's full JID. Waits while the shard's queue is full.
    pub async fn route(&self, stanza: Stanza) -> Result<(), CoreError> {
        let Some(from) = &stanza.from else {
            return Ok(());
        };
        let target = shard::first_hop(&stanza, from.bare_str());
        let h = self.shard(target).clone();
        h.edge
            .send(ShardMsg::FromClient(Box::new(stanza)))
            .await
            .map_err(|_| CoreError::ShuttingDown)
    }

    /// Delete an account: its sessions are closed, then its data removed.
    pub async fn delete_account(&self, user: &BareJid) -> Result<(), CoreError> {
        let (reply, rx) = oneshot::channel();
        let msg = ShardMsg::Kick {
            user: user.clone(),
            reply,
        };
        self.shard(user.as_str())
            .edge
            .send(msg)
            .await
            .map_err(|_| CoreError::ShuttingDown)?;
        let _ = rx.await;
        self.shared.accounts.delete(user)?;
        Ok(())
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
