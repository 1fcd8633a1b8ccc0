//! `[pubsub]`: the XEP-0060 PubSub services (one per served domain) and
//! the limits of PubSub and PEP (XEP-0163) nodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Problems;

/// `[pubsub]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubsubConfig {
    /// Run a PubSub service for each domain. PEP on accounts is always on.
    /// Default `true`.
    pub enabled: bool,
    /// The service's JID per domain, where it is not `pubsub.<domain>`:
    /// `{ "example.org" = "news.example.org" }`. Default empty.
    pub services: BTreeMap<String, String>,
    /// Largest item payload, in bytes of XML. Default 262144.
    pub max_item_bytes: usize,
    /// Most items a node keeps; `max_items = "max"` means this many.
    /// Default 10000.
    pub max_items_per_node: u64,
    /// Items a new service node keeps unless configured. Default 10.
    pub default_max_items: u64,
    /// Most nodes one account may create on a service. Default 1000.
    pub max_nodes_per_account: usize,
    /// Most subscriptions to one node. Default 1000000.
    pub max_subscriptions_per_node: usize,
}

impl Default for PubsubConfig {
    fn default() -> PubsubConfig {
        PubsubConfig {
            enabled: true,
            services: BTreeMap::new(),
            max_item_bytes: 192 * 1024,
            max_items_per_node: 10_000,
            default_max_items: 10,
            max_nodes_per_account: 1_000,
            max_subscriptions_per_node: 1_000_000,
        }
    }
}

impl PubsubConfig {
    /// Check the values against each other and the served domains.
    pub(super) fn check(&self, domains: &[String], p: &mut Problems) {
        super::check_service_names("pubsub.services", &self.services, domains, p, |_| None);
        if self.max_item_bytes == 0 {
            p.add("pubsub.max_item_bytes", "must be at least 1");
        }
        if self.max_items_per_node == 0 {
            p.add("pubsub.max_items_per_node", "must be at least 1");
        }
        if self.default_max_items > self.max_items_per_node {
            p.add(
                "pubsub.default_max_items",
                "must not be above max_items_per_node",
            );
        }
    }

    /// The core's form of this section.
    pub fn to_core(&self) -> router::config::PubsubConfig {
        router::config::PubsubConfig {
            enabled: self.enabled,
            services: self
                .services
                .iter()
                .map(|(d, s)| (d.clone(), s.clone()))
                .collect(),
            max_item_bytes: self.max_item_bytes,
            max_items_per_node: self.max_items_per_node,
            max_nodes_per_account: self.max_nodes_per_account,
            max_subscriptions_per_node: self.max_subscriptions_per_node,
            default_max_items: self.default_max_items,
        }
    }
}
