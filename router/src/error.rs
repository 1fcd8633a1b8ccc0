//! The core's errors: what a call of [`crate::Core`] can fail with, in one
//! place for the shards, the cluster machinery and the gRPC face.

use crate::accounts::AccountError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the core is shutting down")]
    ShuttingDown,
    #[error("{0} is not a component domain of this server")]
    NotComponent(String),
    #[error("account: {0}")]
    Account(#[from] AccountError),
    #[error("module registry: {0}")]
    Registry(String),
    #[error("raft: {0}")]
    Raft(String),
    /// The store or a module failed (logged where it happened).
    #[error("internal: {0}")]
    Internal(String),
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
