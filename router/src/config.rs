//! What the core needs to know from the node's configuration.

/// Core settings; the node fills them from its TOML config.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Domains served (normalised).
    pub domains: Vec<String>,
    /// Number of user shards (tasks) in this process.
    pub shards: usize,
    /// XEP-0077: allow in-band registration of new accounts.
    pub registration: bool,
    /// XEP-0077: allow authenticated users to change their password.
    pub allow_password_change: bool,
    pub min_password_len: usize,
    /// Server software name and version for XEP-0092.
    pub version: String,
    /// This node's id in the shards' Raft groups.
    pub node_id: u64,
    /// The address other core nodes reach this node's Raft service at.
    pub raft_addr: String,
    /// The core nodes (id, Raft address) that found the cluster, this one
    /// included; empty for a single node.
    pub peers: Vec<(u64, String)>,
    /// Replicas per shard (all members when there are fewer).
    pub replication: usize,
    /// Raft heartbeat interval in milliseconds (elections time out after
    /// three to six of them).
    pub heartbeat_ms: u64,
    /// Items a user's roster may hold, hidden ones (pending inbound
    /// requests) included: they take storage too.
    pub max_roster_items: usize,
    /// Largest vCard (XEP-0054) a user may store, in bytes of XML.
    pub max_vcard_bytes: usize,
}

impl Default for CoreConfig {
    fn default() -> CoreConfig {
        CoreConfig {
            domains: vec!["localhost".to_string()],
            shards: 16,
            registration: false,
            allow_password_change: true,
            min_password_len: 8,
            version: env!("CARGO_PKG_VERSION").to_string(),
            node_id: 1,
            raft_addr: String::new(),
            peers: Vec::new(),
            replication: 3,
            heartbeat_ms: 100,
            max_roster_items: 5000,
            max_vcard_bytes: 128 * 1024,
        }
    }
}

impl CoreConfig {
    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }
}
