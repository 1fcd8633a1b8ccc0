//! What the core needs to know from the node's configuration.

/// An on/off setting that can change while the node runs (the node's
/// configuration reloaded on SIGHUP); clones share it.
#[derive(Debug, Clone, Default)]
pub struct Switch(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Switch {
    pub fn new(on: bool) -> Switch {
        Switch(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(on)))
    }

    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set(&self, on: bool) {
        self.0.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

impl From<bool> for Switch {
    fn from(on: bool) -> Switch {
        Switch::new(on)
    }
}

/// Core settings; the node fills them from its TOML config.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Domains served (normalised).
    pub domains: Vec<String>,
    /// Number of user shards (tasks) in this process.
    pub shards: usize,
    /// XEP-0077: allow in-band registration of new accounts.
    pub registration: Switch,
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
    /// Raft log entries of a shard between two snapshot points; the log
    /// up to a point (less the last thousand entries) is then purged.
    pub snapshot_logs: u64,
    /// Items a user's roster may hold, hidden ones (pending inbound
    /// requests) included: they take storage too.
    pub max_roster_items: usize,
    /// Largest vCard (XEP-0054) a user may store, in bytes of XML.
    pub max_vcard_bytes: usize,
    /// XEP-0060 PubSub services and PEP (XEP-0163).
    pub pubsub: PubsubConfig,
    /// Multi-User Chat (XEP-0045).
    pub muc: MucConfig,
    /// A removed node started again asks to be added back (the node's
    /// process does the asking): it does not stop as removed meanwhile.
    pub auto_join: bool,
    /// Domains of external components (XEP-0114): every stanza to an
    /// address at one of them goes to the component connected for it.
    pub components: Vec<String>,
}

/// `[muc]` as the core uses it.
#[derive(Debug, Clone)]
pub struct MucConfig {
    pub enabled: bool,
    /// (domain, service) where the service is not `conference.<domain>`.
    pub services: Vec<(String, String)>,
    /// Most occupants of one room (owners and admins may enter beyond).
    pub max_occupants: usize,
    /// Most messages a room keeps for the history sent on entering.
    pub max_history: usize,
    /// Longest nickname, in bytes.
    pub max_nick_bytes: usize,
    /// Most rooms one account is in at once (over all its sessions).
    pub max_rooms_per_user: usize,
    /// Most JIDs with an affiliation (members, admins, owners, bans) in
    /// one room: its lists go out in one answer.
    pub max_affiliations: usize,
}

impl Default for MucConfig {
    fn default() -> MucConfig {
        MucConfig {
            enabled: true,
            services: Vec::new(),
            max_occupants: 1000,
            max_history: 50,
            max_nick_bytes: 128,
            max_rooms_per_user: 100,
            max_affiliations: 2000,
        }
    }
}

/// The PubSub services (one per served domain) and PEP.
#[derive(Debug, Clone)]
pub struct PubsubConfig {
    /// Whether `pubsub.<domain>` services exist (PEP is always on).
    pub enabled: bool,
    /// Served domain -> the service's JID (default `pubsub.<domain>`).
    pub services: Vec<(String, String)>,
    /// Largest item payload, in bytes of XML.
    pub max_item_bytes: usize,
    /// Most items a node keeps (`max_items` may not ask for more; "max"
    /// means this many).
    pub max_items_per_node: u64,
    /// Most nodes one account may create on a service.
    pub max_nodes_per_account: usize,
    /// Most subscriptions to one node.
    pub max_subscriptions_per_node: usize,
    /// Items a new node keeps unless configured otherwise.
    pub default_max_items: u64,
}

impl Default for PubsubConfig {
    fn default() -> PubsubConfig {
        PubsubConfig {
            enabled: true,
            services: Vec::new(),
            max_item_bytes: 192 * 1024,
            max_items_per_node: 10_000,
            max_nodes_per_account: 1_000,
            max_subscriptions_per_node: 1_000_000,
            default_max_items: 10,
        }
    }
}

impl Default for CoreConfig {
    fn default() -> CoreConfig {
        CoreConfig {
            domains: vec!["localhost".to_string()],
            shards: 16,
            registration: Switch::new(false),
            allow_password_change: true,
            min_password_len: 8,
            version: env!("CARGO_PKG_VERSION").to_string(),
            node_id: 1,
            raft_addr: String::new(),
            peers: Vec::new(),
            replication: 3,
            heartbeat_ms: 100,
            snapshot_logs: 5000,
            max_roster_items: 5000,
            max_vcard_bytes: 128 * 1024,
            pubsub: PubsubConfig::default(),
            muc: MucConfig::default(),
            auto_join: false,
            components: Vec::new(),
        }
    }
}

impl CoreConfig {
    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }

    /// Whether `domain` is this server's: a served domain or one of its
    /// services (MUC, PubSub). Any other is a remote server's.
    pub fn hosts(&self, domain: &str) -> bool {
        self.serves(domain)
            || self.is_muc_service(domain)
            || self.is_pubsub_service(domain)
            || self.is_component(domain)
    }

    /// Whether `domain` is an external component's (XEP-0114).
    pub fn is_component(&self, domain: &str) -> bool {
        self.components.iter().any(|d| d == domain)
    }

    /// The PubSub service JID of each served domain.
    pub fn pubsub_services(&self) -> Vec<String> {
        if !self.pubsub.enabled {
            return Vec::new();
        }
        self.domains
            .iter()
            .map(|d| {
                self.pubsub
                    .services
                    .iter()
                    .find(|(dom, _)| dom == d)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| format!("pubsub.{d}"))
            })
            .collect()
    }

    /// Whether `domain` is one of this server's PubSub services (on every
    /// stanza's path: no allocation).
    pub fn is_pubsub_service(&self, domain: &str) -> bool {
        self.pubsub.enabled && self.names_service(&self.pubsub.services, "pubsub.", domain)
    }

    /// The MUC service of served domain `domain`, if MUC is on.
    pub fn muc_service(&self, domain: &str) -> Option<String> {
        if !self.muc.enabled || !self.serves(domain) {
            return None;
        }
        Some(
            self.muc
                .services
                .iter()
                .find(|(d, _)| d == domain)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| format!("conference.{domain}")),
        )
    }

    /// Whether `domain` is one of this server's MUC services (on every
    /// stanza's path: no allocation).
    pub fn is_muc_service(&self, domain: &str) -> bool {
        self.muc.enabled && self.names_service(&self.muc.services, "conference.", domain)
    }

    /// Whether `domain` is the service of a served domain, as `services`
    /// names it or else as `prefix` + the domain.
    fn names_service(&self, services: &[(String, String)], prefix: &str, domain: &str) -> bool {
        self.domains
            .iter()
            .any(|d| match services.iter().find(|(served, _)| served == d) {
                Some((_, s)) => s == domain,
                None => domain.strip_prefix(prefix) == Some(d.as_str()),
            })
    }
}
