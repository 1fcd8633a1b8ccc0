//! Where a remote domain's server is (RFC 6120 §3.2, XEP-0368): the
//! operator's override table first, then DNS SRV records
//! `_xmpps-server._tcp` (direct TLS) and `_xmpp-server._tcp` (STARTTLS),
//! then the domain itself on port 5269.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

/// The default server-to-server port (RFC 6120 §15.9).
pub const DEFAULT_PORT: u16 = 5269;

/// One place to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host to connect to (a name or an address literal).
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (XEP-0368) rather than STARTTLS.
    pub direct_tls: bool,
}

/// Why a domain's server could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The domain publishes that it offers no server-to-server service
    /// (an SRV target of ".", RFC 2782).
    #[error("{0} offers no server-to-server service")]
    NoService(String),
    #[error("{0}: {1}")]
    Dns(String, String),
}

pub struct Resolver {
    /// `s2s.hosts`: the operator's table.
    hosts: BTreeMap<String, Target>,
    dns: Option<TokioResolver>,
}

impl Resolver {
    /// `hosts` as `s2s.hosts` writes them (checked by the configuration);
    /// `nameservers` empty means the system's.
    pub fn new(hosts: &BTreeMap<String, String>, nameservers: &[String]) -> Resolver {
        let hosts = hosts
            .iter()
            .filter_map(|(d, t)| Some((d.clone(), parse_target(t)?)))
            .collect();
        let dns = if nameservers.is_empty() {
            TokioResolver::builder_tokio().and_then(|b| b.build())
        } else {
            let servers = nameservers
                .iter()
                .filter_map(|n| n.parse::<SocketAddr>().ok())
                .map(|a| {
                    let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                    for c in &mut ns.connections {
                        c.port = a.port();
                    }
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
            .build()
        };
        let dns = match dns {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver: only s2s.hosts can be reached");
                None
            }
        };
        Resolver { hosts, dns }
    }

    /// The places to try for `domain`, best first.
    pub async fn targets(&self, domain: &str) -> Result<Vec<Target>, ResolveError> {
        if let Some(t) = self.hosts.get(domain) {
            return Ok(vec![t.clone()]);
        }
        // An address literal is its own host (RFC 7622 §3.2).
        let literal = domain.trim_start_matches('[').trim_end_matches(']');
        if literal.parse::<IpAddr>().is_ok() {
            return Ok(vec![Target {
                host: literal.to_string(),
                port: DEFAULT_PORT,
                direct_tls: false,
            }]);
        }
        let Some(dns) = &self.dns else {
            return Err(ResolveError::Dns(
                domain.to_string(),
                "no DNS resolver".to_string(),
            ));
        };
        let mut records = Vec::new();
        let mut refused = false;
        for (prefix, direct_tls) in [("_xmpps-server._tcp.", true), ("_xmpp-server._tcp.", false)] {
            let name = format!("{prefix}{domain}.");
            let Ok(found) = dns.srv_lookup(name.as_str()).await else {
                continue;
            };
            for r in found.answers() {
                if let RData::SRV(srv) = &r.data {
                    let target = srv.target.to_ascii();
                    let target = target.trim_end_matches('.');
                    if target.is_empty() {
                        // RFC 2782: "." means no such service here.
                        refused = true;
                        continue;
                    }
                    records.push((
                        srv.priority,
                        srv.weight,
                        direct_tls,
                        target.to_string(),
                        srv.port,
                    ));
                }
            }
        }
        if records.is_empty() {
            if refused {
                return Err(ResolveError::NoService(domain.to_string()));
            }
            // RFC 6120 §3.2.2: no SRV record, the domain itself on 5269.
            return Ok(vec![Target {
                host: domain.to_string(),
                port: DEFAULT_PORT,
                direct_tls: false,
            }]);
        }
        Ok(order(records))
    }

    /// The addresses of `host` (a name, or an address literal).
    pub async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match &self.dns {
            Some(dns) => {
                let found = dns.lookup_ip(format!("{host}.")).await.map_err(|e| {
                    let why = if e.is_nx_domain() || e.is_no_records_found() {
                        "no address in DNS".to_string()
                    } else {
                        format!("DNS: {e}")
                    };
                    ResolveError::Dns(host.to_string(), why)
                })?;
                Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
            }
            None => tokio::net::lookup_host((host, port))
                .await
                .map(|a| a.collect())
                .map_err(|e| ResolveError::Dns(host.to_string(), e.to_string())),
        }
    }
}

/// `"host:port"` or `"tls://host:port"`.
fn parse_target(t: &str) -> Option<Target> {
    let (direct_tls, rest) = match t.strip_prefix("tls://") {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (host, port) = rest.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(Target {
        host: host.to_string(),
        port: port.parse().ok()?,
        direct_tls,
    })
}

/// RFC 2782 order: by priority, then within one priority by a weighted
/// random draw; at equal priority direct TLS first (XEP-0368 §3).
fn order(mut records: Vec<(u16, u16, bool, String, u16)>) -> Vec<Target> {
    records.sort_by_key(|r| (r.0, !r.2));
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while i < records.len() {
        let prio = (records[i].0, records[i].2);
        let mut group: Vec<_> = records[i..]
            .iter()
            .take_while(|r| (r.0, r.2) == prio)
            .cloned()
            .collect();
        i += group.len();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.1)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut n = rand::random_range(0..=total);
                group
                    .iter()
                    .position(|r| {
                        let w = u32::from(r.1);
                        if n <= w {
                            true
                        } else {
                            n -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            let r = group.remove(pick);
            out.push(Target {
                host: r.3,
                port: r.4,
                direct_tls: r.2,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_targets_parse() {
        assert_eq!(
            parse_target("tls://127.0.0.1:5270"),
            Some(Target {
                host: "127.0.0.1".into(),
                port: 5270,
                direct_tls: true
            })
        );
        assert_eq!(
            parse_target("[::1]:5269"),
            Some(Target {
                host: "::1".into(),
                port: 5269,
                direct_tls: false
            })
        );
        assert_eq!(parse_target("nohost"), None);
    }

    #[test]
    fn srv_order_is_by_priority_then_direct_tls() {
        let got = order(vec![
            (20, 0, false, "c".into(), 5269),
            (10, 0, false, "b".into(), 5269),
            (10, 0, true, "a".into(), 5270),
        ]);
        let hosts: Vec<_> = got.iter().map(|t| t.host.as_str()).collect();
        assert_eq!(hosts, ["a", "b", "c"]);
    }
}
