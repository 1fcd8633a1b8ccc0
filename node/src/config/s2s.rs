//! `[s2s]`: federation with other servers (RFC 6120 server-to-server
//! streams, XEP-0220 Server Dialback, XEP-0178 SASL EXTERNAL with
//! certificates, XEP-0368 direct TLS).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problems;

/// `[s2s]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S2sConfig {
    /// Federate: accept streams from other servers and open streams to
    /// them for stanzas to their domains. Default `false` (a stanza to
    /// another domain gets `remote-server-not-found`).
    pub enabled: bool,
    /// Where other servers connect, STARTTLS (RFC 6120 §5). Default
    /// `"0.0.0.0:5269"`.
    pub listen: String,
    /// Where other servers connect with TLS from the first byte
    /// (XEP-0368, ALPN `xmpp-server`; publish it as an
    /// `_xmpps-server._tcp` SRV record). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_tls_listen: Option<String>,
    /// The secret dialback keys are made from (XEP-0185). Every node of
    /// a cluster needs the same one. Default: none, which means a random
    /// one drawn at start-up (fine for a single node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialback_secret: Option<String>,
    /// Refuse peers that do not encrypt their stream (STARTTLS or direct
    /// TLS), and open no unencrypted stream. Default `true`.
    pub require_encryption: bool,
    /// Accept only peers whose certificate is valid for their domain
    /// (SASL EXTERNAL, XEP-0178), and connect only to such peers; with
    /// `false` (default) a peer without one is authenticated by Server
    /// Dialback (XEP-0220) instead.
    pub require_valid_certs: bool,
    /// PEM file of certificate authorities trusted for peers'
    /// certificates, besides the system's. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Also trust the system's certificate authorities. Default `true`.
    pub system_roots: bool,
    /// Only these remote domains may federate (empty: any). Default empty.
    pub allow: Vec<String>,
    /// These remote domains may not federate. Default empty.
    pub deny: Vec<String>,
    /// Where a remote domain's server is, instead of DNS:
    /// `{ "example.net" = "10.0.0.5:5269" }`, or `"tls://10.0.0.5:5270"`
    /// for direct TLS. For tests and private federation. Default empty.
    pub hosts: BTreeMap<String, String>,
    /// DNS servers to ask (`"10.0.0.2:53"`) instead of the system's
    /// (`/etc/resolv.conf`). Default: the system's.
    pub nameservers: Vec<String>,
    /// Seconds to connect, secure and authenticate a stream to a remote
    /// server; its waiting stanzas are then answered with
    /// `remote-server-timeout`. 1 to 300, default 30.
    pub connect_timeout_secs: u64,
    /// Stanzas waiting for one remote domain's stream; past this many
    /// they are answered with `remote-server-timeout`. 1 to 1000000,
    /// default 10000.
    pub max_queued: usize,
    /// A stream with no traffic for this long is closed (it opens again
    /// when needed). 10 to 86400, default 600.
    pub idle_timeout_secs: u64,
    /// Most server-to-server streams each way: inbound, and outbound
    /// (dialback verifications included). Default 1000.
    pub max_streams: usize,
    /// Most inbound streams from one IP address. Default 50.
    pub max_streams_per_ip: usize,
    /// Stanzas per second one inbound stream may send (beyond a burst of
    /// this many); 0 = unlimited. Default 0.
    pub stanza_rate_per_sec: u32,
}

impl Default for S2sConfig {
    fn default() -> S2sConfig {
        S2sConfig {
            enabled: false,
            listen: "0.0.0.0:5269".to_string(),
            direct_tls_listen: None,
            dialback_secret: None,
            require_encryption: true,
            require_valid_certs: false,
            ca_file: None,
            system_roots: true,
            allow: Vec::new(),
            deny: Vec::new(),
            hosts: BTreeMap::new(),
            nameservers: Vec::new(),
            connect_timeout_secs: 30,
            max_queued: 10_000,
            idle_timeout_secs: 600,
            max_streams: 1000,
            max_streams_per_ip: 50,
            stanza_rate_per_sec: 0,
        }
    }
}

impl S2sConfig {
    /// Check the values.
    /// `services`: the MUC, PubSub and component domains of this server.
    pub(super) fn check(&self, domains: &[String], services: &[String], p: &mut Problems) {
        if !self.enabled {
            return;
        }
        if let Some(s) = &self.dialback_secret
            && s.len() < 16
        {
            p.add("s2s.dialback_secret", "must be at least 16 characters");
        }
        if !(1..=300).contains(&self.connect_timeout_secs) {
            p.add("s2s.connect_timeout_secs", "must be 1 to 300");
        }
        if !(1..=1_000_000).contains(&self.max_queued) {
            p.add("s2s.max_queued", "must be 1 to 1000000");
        }
        if !(10..=86_400).contains(&self.idle_timeout_secs) {
            p.add("s2s.idle_timeout_secs", "must be 10 to 86400");
        }
        if self.max_streams == 0 {
            p.add("s2s.max_streams", "must be at least 1");
        }
        if self.max_streams_per_ip == 0 {
            p.add("s2s.max_streams_per_ip", "must be at least 1");
        }
        // A denied domain covers its subdomains: an allowed domain at or
        // under one is never allowed.
        for a in &self.allow {
            if let Some(d) = self.deny.iter().find(|d| crate::s2s::at_or_under(a, d)) {
                p.add(
                    "s2s.deny",
                    format!("{d:?} denies {a:?}, which s2s.allow lists"),
                );
            }
        }
        if let Some(f) = &self.ca_file {
            use rustls_pki_types::pem::PemObject;
            match rustls_pki_types::CertificateDer::pem_file_iter(f)
                .and_then(|c| c.collect::<Result<Vec<_>, _>>())
            {
                Ok(certs) if !certs.is_empty() => {}
                Ok(_) => p.add(
                    "s2s.ca_file",
                    format!("{}: no PEM certificate in it", f.display()),
                ),
                Err(e) => p.add("s2s.ca_file", format!("{}: {e}", f.display())),
            }
        }
        for (field, list) in [("s2s.allow", &self.allow), ("s2s.deny", &self.deny)] {
            for (i, d) in list.iter().enumerate() {
                if proto::BareJid::domain_jid(d)
                    .map(|j| j.as_str() != d)
                    .unwrap_or(true)
                {
                    p.add(
                        &format!("{field}[{i}]"),
                        format!("{d:?} is not a domain in canonical form"),
                    );
                }
            }
        }
        for (d, target) in &self.hosts {
            let field = format!("s2s.hosts.{d:?}");
            if proto::BareJid::domain_jid(d)
                .map(|j| j.as_str() != d)
                .unwrap_or(true)
            {
                p.add(&field, "the key is not a domain in canonical form");
            }
            if domains.iter().chain(services).any(|x| x == d) {
                p.add(&field, "is a domain (or service) this server serves itself");
            }
            let addr = target.strip_prefix("tls://").unwrap_or(target);
            if let Err(why) = super::check_host_port(addr) {
                p.add(
                    &field,
                    format!("{target:?}: {why} (\"host:port\" or \"tls://host:port\")"),
                );
            }
        }
        for (i, n) in self.nameservers.iter().enumerate() {
            if n.parse::<std::net::SocketAddr>().is_err() {
                p.add(
                    &format!("s2s.nameservers[{i}]"),
                    format!("{n:?} is not an IP address and port (\"10.0.0.2:53\")"),
                );
            }
        }
        if self.require_valid_certs && !self.require_encryption {
            p.add(
                "s2s.require_valid_certs",
                "needs s2s.require_encryption (certificates are checked in TLS)",
            );
        }
    }
}

/// `[components]`: external components (XEP-0114), such as gateways and
/// bridges, that connect with a shared secret and then serve every
/// address at their domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentsConfig {
    /// Where components connect (plain TCP: keep it on a private
    /// network or loopback). Opened only when `secrets` names one.
    /// Default `"127.0.0.1:5347"`.
    pub listen: String,
    /// Each component's domain and its shared secret:
    /// `{ "irc.example.com" = "a long secret" }`. Default empty.
    pub secrets: BTreeMap<String, String>,
}

impl Default for ComponentsConfig {
    fn default() -> ComponentsConfig {
        ComponentsConfig {
            listen: "127.0.0.1:5347".to_string(),
            secrets: BTreeMap::new(),
        }
    }
}

impl ComponentsConfig {
    pub(super) fn check(&self, domains: &[String], services: &[String], p: &mut Problems) {
        if self.secrets.is_empty() {
            return;
        }
        for (d, secret) in &self.secrets {
            let field = format!("components.secrets.{d:?}");
            if proto::BareJid::domain_jid(d)
                .map(|j| j.as_str() != d)
                .unwrap_or(true)
            {
                p.add(&field, "the key is not a domain in canonical form");
            }
            if domains.iter().chain(services).any(|x| x == d) {
                p.add(&field, "is a domain (or service) this server serves itself");
            }
            if secret.len() < 8 {
                p.add(&field, "the secret must be at least 8 characters");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// The problems `from_toml` (which validates) finds.
    fn problems(toml: &str) -> Vec<String> {
        match Config::from_toml(toml) {
            Ok(_) => Vec::new(),
            // Without the "line N: " the Display adds.
            Err(e) => e
                .problems()
                .iter()
                .map(|p| {
                    let t = p.to_string();
                    match t.split_once(": ") {
                        Some((l, rest)) if l.starts_with("line ") => rest.to_string(),
                        _ => t,
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn federation_settings_are_checked() {
        assert!(problems("[s2s]\nenabled = true\n").is_empty());
        let p = problems(
            "domains = [\"example.com\"]\n[s2s]\nenabled = true\nlisten = \"nowhere\"\ndialback_secret = \"short\"\nallow = [\"Example.NET\"]\nnameservers = [\"dns.example\"]\nrequire_encryption = false\nrequire_valid_certs = true\n[s2s.hosts]\n\"example.com\" = \"10.0.0.1:5269\"\n\"example.org\" = \"tls://no port\"\n",
        );
        for field in [
            "s2s.listen",
            "s2s.dialback_secret",
            "s2s.allow[0]",
            "s2s.nameservers[0]",
            "s2s.require_valid_certs",
            "s2s.hosts.\"example.com\"",
            "s2s.hosts.\"example.org\"",
        ] {
            assert!(
                p.iter().any(|x| x.starts_with(&format!("{field}: "))),
                "{field} in {p:#?}"
            );
        }
        // Off, nothing of it is checked.
        assert!(problems("[s2s]\nlisten = \"nowhere\"\n").is_empty());
        // Own services, a domain both allowed and denied, a CA file that
        // is not one.
        let p = problems(
            "[s2s]\nenabled = true\nallow = [\"sub.x.example\"]\ndeny = [\"x.example\"]\nca_file = \"/dev/null\"\n[s2s.hosts]\n\"conference.localhost\" = \"10.0.0.1:5269\"\n",
        );
        assert_eq!(p.len(), 3, "{p:#?}");
    }

    #[test]
    fn component_domains_are_checked() {
        assert!(problems("[components.secrets]\n\"gw.localhost\" = \"long enough\"\n").is_empty());
        let p = problems(
            "[components]\nlisten = \"x\"\n[components.secrets]\n\"localhost\" = \"long enough\"\n\"conference.localhost\" = \"long enough\"\n\"gw.localhost\" = \"short\"\n",
        );
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(p.iter().any(|x| x.starts_with("components.listen: ")));
        assert!(
            p.iter()
                .any(|x| x.starts_with("components.secrets.\"localhost\": "))
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("components.secrets.\"conference.localhost\": "))
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("components.secrets.\"gw.localhost\": "))
        );
    }
}
