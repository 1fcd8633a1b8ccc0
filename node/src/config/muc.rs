//! `[muc]`: the XEP-0045 Multi-User Chat service of each served domain
//! and its limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Problems;

/// `[muc]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MucConfig {
    /// Run a Multi-User Chat service for each domain. Default `true`.
    pub enabled: bool,
    /// The service's JID per domain, where it is not
    /// `conference.<domain>`: `{ "example.org" = "rooms.example.org" }`.
    /// Default empty.
    pub services: BTreeMap<String, String>,
    /// Most occupants of one room (owners and admins enter beyond it).
    /// 1 to 1000000, default 1000.
    pub max_occupants: usize,
    /// Most messages a room keeps for the history sent on entering,
    /// 0 to 1000, default 50.
    pub max_history: usize,
    /// Longest nickname in bytes, 1 to 1023, default 128.
    pub max_nick_bytes: usize,
    /// Most rooms one account may be in at once, over all its sessions
    /// (entering one more is refused with `policy-violation`), 1 to
    /// 100000, default 100.
    pub max_rooms_per_user: usize,
    /// Most JIDs with an affiliation (members, admins, owners, bans) in one
    /// room, 1 to 100000, default 2000: a list goes out in one answer.
    pub max_affiliations: usize,
}

impl Default for MucConfig {
    fn default() -> MucConfig {
        let core = router::config::MucConfig::default();
        MucConfig {
            enabled: core.enabled,
            services: BTreeMap::new(),
            max_occupants: core.max_occupants,
            max_history: core.max_history,
            max_nick_bytes: core.max_nick_bytes,
            max_rooms_per_user: core.max_rooms_per_user,
            max_affiliations: core.max_affiliations,
        }
    }
}

impl MucConfig {
    /// Check the values against each other and the served domains.
    pub(super) fn check(&self, domains: &[String], pubsub: &[String], p: &mut Problems) {
        super::check_service_names("muc.services", &self.services, domains, p, |s| {
            pubsub
                .iter()
                .any(|x| x == s)
                .then_some("is a PubSub service's name too")
        });
        if !(1..=1_000_000).contains(&self.max_occupants) {
            p.add(
                "muc.max_occupants",
                format!("is {}, must be 1 to 1000000", self.max_occupants),
            );
        }
        if self.max_history > 1000 {
            p.add(
                "muc.max_history",
                format!("is {}, must be 0 to 1000", self.max_history),
            );
        }
        if !(1..=100_000).contains(&self.max_rooms_per_user) {
            p.add(
                "muc.max_rooms_per_user",
                format!("is {}, must be 1 to 100000", self.max_rooms_per_user),
            );
        }
        if !(1..=100_000).contains(&self.max_affiliations) {
            p.add(
                "muc.max_affiliations",
                format!("is {}, must be 1 to 100000", self.max_affiliations),
            );
        }
        if !(1..=1023).contains(&self.max_nick_bytes) {
            p.add(
                "muc.max_nick_bytes",
                format!("is {}, must be 1 to 1023", self.max_nick_bytes),
            );
        }
    }

    /// The core's form of this section.
    pub fn to_core(&self) -> router::config::MucConfig {
        router::config::MucConfig {
            enabled: self.enabled,
            services: self
                .services
                .iter()
                .map(|(d, s)| (d.clone(), s.clone()))
                .collect(),
            max_occupants: self.max_occupants,
            max_history: self.max_history,
            max_nick_bytes: self.max_nick_bytes,
            max_rooms_per_user: self.max_rooms_per_user,
            max_affiliations: self.max_affiliations,
        }
    }
}
