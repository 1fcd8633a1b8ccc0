//! Configuration reload (SIGHUP): which keys a running node can take on,
//! and which need a restart.
//!
//! Applied live: `log.level`; the client connections' `limits.*`
//! (connections opened after the reload take the new limits, open ones
//! keep theirs; not the login throttle's, nor the core's roster and vCard
//! sizes); `tls.*` (the certificate and key files are read again on
//! every reload, so a renewed certificate at the same path is taken too);
//! `registration.enabled`; the admin API's token (its file is read again);
//! `shutdown.*` (read when SIGTERM comes).
//! Everything else is reported as needing a restart, and left as it was.

use std::collections::BTreeSet;

use crate::config::Config;

/// The dotted keys whose values differ between `old` and `new`.
pub fn changed_keys(old: &Config, new: &Config) -> BTreeSet<String> {
    let (Ok(a), Ok(b)) = (toml::Value::try_from(old), toml::Value::try_from(new)) else {
        return BTreeSet::from(["(the whole configuration)".to_string()]);
    };
    let mut out = BTreeSet::new();
    diff("", &a, &b, &mut out);
    out
}

fn diff(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut BTreeSet<String>) {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => diff(&path, v, w, out),
                    _ => {
                        out.insert(path);
                    }
                }
            }
        }
        _ if a != b => {
            out.insert(prefix.to_string());
        }
        _ => {}
    }
}

/// Whether a running node applies a change of `key`.
pub fn is_live(key: &str) -> bool {
    key == "log.level"
        || key == "registration.enabled"
        || key == "admin.token_file"
        || key.starts_with("tls.")
        || key.starts_with("shutdown.")
        || (key.starts_with("limits.")
            && !key.starts_with("limits.login_")
            // Kept by the core's modules from their start.
            && key != "limits.max_roster_items"
            && key != "limits.max_vcard_bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_named_and_sorted_into_live_and_restart() {
        let old = Config::default();
        let mut new = Config::default();
        new.log.level = "debug".into();
        new.limits.max_connections_per_ip = 7;
        new.limits.login_delay_secs = 9;
        new.limits.max_vcard_bytes = 1024;
        new.registration.enabled = true;
        new.domains.push("example.org".into());
        new.listeners.http = None;
        new.tls.cert = Some("/etc/xmppd/cert.pem".into());
        let keys = changed_keys(&old, &new);
        let listed: Vec<&str> = keys.iter().map(String::as_str).collect();
        assert_eq!(
            listed,
            [
                "domains",
                "limits.login_delay_secs",
                "limits.max_connections_per_ip",
                "limits.max_vcard_bytes",
                "listeners.http",
                "log.level",
                "registration.enabled",
                "tls.cert",
            ]
        );
        let live: Vec<&str> = listed.iter().copied().filter(|k| is_live(k)).collect();
        assert_eq!(
            live,
            [
                "limits.max_connections_per_ip",
                "log.level",
                "registration.enabled",
                "tls.cert"
            ]
        );
        assert!(changed_keys(&old, &old).is_empty());
    }
}
