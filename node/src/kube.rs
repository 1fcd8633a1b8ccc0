//! The one question a core pod asks the Kubernetes API: how many
//! replicas its StatefulSet wants now (`xmppd cluster leave
//! --if-scaled-down`, the preStop hook). A pod whose ordinal is past that
//! number is being scaled away, and leaves the cluster before it stops; a
//! pod that is only restarted (a rolling update, a node drained) stays.
//!
//! It uses what Kubernetes gives every pod: `KUBERNETES_SERVICE_HOST` and
//! `_PORT`, and the service account's token, CA certificate and namespace
//! under `/var/run/secrets/kubernetes.io/serviceaccount` (or
//! `XMPPD_K8S_SA_DIR`). The account needs `get` on `statefulsets`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// Where a pod finds its service account.
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Longest answer read from the API server.
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

/// This pod: its StatefulSet, ordinal and namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub statefulset: String,
    pub ordinal: u64,
    pub namespace: String,
}

fn sa_dir() -> PathBuf {
    std::env::var_os("XMPPD_K8S_SA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SA_DIR))
}

/// This pod, from `POD_NAME` (or the host name) and `POD_NAMESPACE` (or
/// the service account's namespace).
pub fn this_pod() -> anyhow::Result<Pod> {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        bail!("KUBERNETES_SERVICE_HOST is not set: not in a Kubernetes pod");
    }
    let name = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(crate::config::host_name)
        .context("no POD_NAME and no host name")?;
    let ordinal = crate::config::ordinal_of(&name)
        .with_context(|| format!("{name:?} is not a StatefulSet's pod (NAME-N)"))?;
    let statefulset = name
        .rsplit_once('-')
        .map(|(s, _)| s.to_string())
        .unwrap_or_default();
    let namespace = match std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
    {
        Some(n) => n,
        None => std::fs::read_to_string(sa_dir().join("namespace"))
            .context("no POD_NAMESPACE, and no service account namespace")?
            .trim()
            .to_string(),
    };
    if !valid_name(&statefulset) || !valid_name(&namespace) {
        bail!("{statefulset:?} in {namespace:?} is not a Kubernetes object name");
    }
    Ok(Pod {
        statefulset,
        ordinal,
        namespace,
    })
}

/// A DNS-1123 label: what StatefulSet and namespace names are, and so
/// safe inside the request path.
fn valid_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.len() <= 253
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// The replicas `pod`'s StatefulSet wants (`spec.replicas`); `None` when
/// the StatefulSet is gone (an uninstall).
pub fn desired_replicas(pod: &Pod) -> anyhow::Result<Option<u64>> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST")
        .context("KUBERNETES_SERVICE_HOST is not set: not in a Kubernetes pod")?;
    let port: u16 = std::env::var("KUBERNETES_SERVICE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(443);
    let dir = sa_dir();
    let token = std::fs::read_to_string(dir.join("token"))
        .with_context(|| format!("reading {}", dir.join("token").display()))?;
    let token = token.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the service account token is not a bearer token");
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.crt"))
        .with_context(|| format!("reading {}", dir.join("ca.crt").display()))?
    {
        roots.add(c.context("a certificate in ca.crt")?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .context("KUBERNETES_SERVICE_HOST")?;
    let mut conn = rustls::ClientConnection::new(Arc::new(tls), server)?;
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut tcp = std::net::TcpStream::connect(&addr)
        .with_context(|| format!("connecting to the Kubernetes API at {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    let path = format!(
        "/apis/apps/v1/namespaces/{}/statefulsets/{}",
        pod.namespace, pod.statefulset
    );
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    // A peer that closes without close_notify still gave its answer.
    match stream.take(MAX_ANSWER).read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e).context("reading the Kubernetes API's answer"),
    }
    parse_answer(&answer)
}

/// `spec.replicas` from an HTTP/1.1 answer with a StatefulSet; `None`
/// for 404.
fn parse_answer(answer: &[u8]) -> anyhow::Result<Option<u64>> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the Kubernetes API's answer has no headers")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the Kubernetes API's answer has no status")?;
    if status == 404 {
        return Ok(None);
    }
    if status != 200 {
        let first = body.lines().next().unwrap_or("");
        bail!(
            "the Kubernetes API answered {status}: {}",
            first.chars().take(200).collect::<String>()
        );
    }
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    let v: serde_json::Value =
        serde_json::from_str(&body).context("the Kubernetes API's answer is not JSON")?;
    if v["kind"] != "StatefulSet" {
        bail!("the Kubernetes API's answer is not a StatefulSet");
    }
    // spec.replicas defaults to 1 when it is not set.
    Ok(Some(v["spec"]["replicas"].as_u64().unwrap_or(1)))
}

/// The body of a chunked transfer.
fn dechunk(mut s: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("a truncated chunk")?;
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("a bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..n).context("a truncated chunk")?;
        out.push_str(chunk);
        s = rest
            .get(n..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .context("a truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_give_the_replicas_or_none() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"kind\":\"StatefulSet\",\"spec\":{\"replicas\":3}}";
        assert_eq!(parse_answer(ok).ok().flatten(), Some(3));
        let body = "{\"kind\":\"StatefulSet\",\"spec\":{\"replicas\":5}}";
        let mut chunked = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        for part in [&body[..10], &body[10..31], &body[31..]] {
            chunked.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
        }
        chunked.push_str("0\r\n\r\n");
        assert_eq!(parse_answer(chunked.as_bytes()).ok().flatten(), Some(5));
        let unset = b"HTTP/1.1 200 OK\r\n\r\n{\"kind\":\"StatefulSet\",\"spec\":{}}";
        assert_eq!(parse_answer(unset).ok().flatten(), Some(1));
        assert!(matches!(
            parse_answer(b"HTTP/1.1 404 Not Found\r\n\r\n{}"),
            Ok(None)
        ));
        for bad in [
            &b"HTTP/1.1 403 Forbidden\r\n\r\n{\"message\":\"no\"}"[..],
            b"HTTP/1.1 200 OK\r\n\r\n{\"kind\":\"Pod\"}",
            b"HTTP/1.1 200 OK\r\n\r\nnot json",
            b"garbage",
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn names_are_checked_before_they_reach_a_path() {
        assert!(valid_name("xmppd-core"));
        assert!(!valid_name("../../secrets"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        assert!(!valid_name(".."));
    }
}
