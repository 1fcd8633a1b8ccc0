//! TLS for client connections: the rustls server configurations of the
//! STARTTLS port (RFC 6120 §5) and the direct TLS port (XEP-0368, ALPN
//! `xmpp-client`), built from a PEM certificate and key or from a generated
//! self-signed certificate, with the certificate's RFC 5929
//! `tls-server-end-point` hash for SCRAM-*-PLUS (`channel_binding.rs`).
//!
//! Always the ring provider, TLS 1.3 always, TLS 1.2 when allowed, nothing
//! older. This module knows nothing of streams or sockets; the edge wraps
//! its connections with the configurations built here.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::TlsConfig;

/// XEP-0368 §3: the ALPN protocol of direct TLS client connections.
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

/// The server configurations of both client ports.
pub struct TlsSetup {
    /// For STARTTLS on the plain port; no ALPN.
    pub starttls: Arc<rustls::ServerConfig>,
    /// For the direct TLS port; ALPN `xmpp-client` (XEP-0368).
    pub direct: Arc<rustls::ServerConfig>,
    /// The certificate was generated here, so clients will not trust it.
    pub self_signed: bool,
    /// RFC 5929 `tls-server-end-point` of the certificate, when its
    /// signature algorithm defines one.
    pub end_point: Option<Vec<u8>>,
    /// The certificate chain and its key (server-to-server TLS builds
    /// its own configurations from them).
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

/// Why TLS cannot be set up; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert and tls.key must be given together")]
    Incomplete,
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {}: {message}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("certificate {} with key {} cannot be used: {source}", cert.display(), key.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "none of the domains can be named in a generated certificate (only ASCII names and IP addresses can); set tls.cert and tls.key"
    )]
    NoNames,
    #[error("tls configuration: {0}")]
    Rustls(#[source] rustls::Error),
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 always, TLS 1.2 when allowed.
static TLS13_AND_12: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

pub(crate) fn versions(allow_tls12: bool) -> &'static [&'static SupportedProtocolVersion] {
    if allow_tls12 {
        TLS13_AND_12
    } else {
        TLS13_ONLY
    }
}

/// Build both server configurations. `domains` are the normalised domains
/// served; without `cfg.cert`/`cfg.key` a self-signed certificate for them
/// is generated into (or reused from) `data_dir/tls/`.
pub fn load(cfg: &TlsConfig, domains: &[String], data_dir: &Path) -> Result<TlsSetup, TlsError> {
    let (cert, key, self_signed) = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
        (None, None) => {
            let dir = data_dir.join("tls");
            (dir.join("selfsigned.crt"), dir.join("selfsigned.key"), true)
        }
        _ => return Err(TlsError::Incomplete),
    };
    let (chain, private_key) = if self_signed {
        self_signed_pair(domains, &cert, &key)?
    } else {
        let pair = (read_chain(&cert)?, read_key(&key)?);
        warn_uncovered(&pair.0, domains, &cert);
        pair
    };
    let end_point = chain
        .first()
        .and_then(|c| crate::channel_binding::server_end_point(c));
    if end_point.is_none() {
        tracing::info!(cert = %cert.display(), "the certificate's signature algorithm defines no tls-server-end-point binding (RFC 5929), so SCRAM-*-PLUS is offered only with TLS 1.3's tls-exporter");
    }
    let starttls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(cfg.allow_tls12))
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), private_key.clone_key())
        .map_err(|source| TlsError::Unusable {
            cert: cert.clone(),
            key: key.clone(),
            source,
        })?;
    let mut direct = starttls.clone();
    direct.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    Ok(TlsSetup {
        starttls: Arc::new(starttls),
        direct: Arc::new(direct),
        self_signed,
        end_point,
        chain,
        key: Arc::new(private_key),
    })
}

/// FOR TESTS AND THE LOAD HARNESS ONLY: a client configuration that trusts
/// any certificate for any name (it still checks the handshake signatures,
/// so the connection is encrypted, but not authenticated). It offers TLS
/// 1.3 and 1.2 and ALPN `xmpp-client`.
pub fn client_config_insecure() -> Arc<rustls::ClientConfig> {
    Arc::new(insecure_client(versions(true)))
}

fn insecure_client(versions: &[&'static SupportedProtocolVersion]) -> rustls::ClientConfig {
    let provider = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    cfg
}

/// Trusts every certificate chain; verifies signatures with the provider.
/// Test clients use it, and server-to-server TLS both ways, which judges
/// the chain after the handshake (`s2s::tls::S2sTls::check`), since a peer
/// without a valid certificate may still authenticate by dialback.
#[derive(Debug)]
pub(crate) struct AcceptAnyCert(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// As a server: asks for a client certificate (a peer server's), takes
/// any or none.
impl rustls::server::danger::ClientCertVerifier for AcceptAnyCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    const WHAT: &str = "certificate file";
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(WHAT, path, e))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            what: WHAT,
            path: path.to_path_buf(),
            message: "no PEM CERTIFICATE section found".to_string(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            what: "key file",
            path: path.to_path_buf(),
            message: "no PEM private key (PKCS#8, RSA or SEC1) found".to_string(),
        },
        e => pem_error("key file", path, e),
    })
}

fn pem_error(what: &'static str, path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::Io(source) => TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        },
        e => TlsError::Pem {
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    }
}

/// A domain as certificates name it: an IP address or an ASCII DNS name.
/// `None` for internationalised names, which certificates carry as
/// A-labels that this crate cannot compute.
fn cert_name(domain: &str) -> Option<(rcgen::SanType, ServerName<'static>)> {
    let literal = domain
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .unwrap_or(domain);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Some((rcgen::SanType::IpAddress(ip), ServerName::from(ip)));
    }
    let dns = rcgen::string::Ia5String::try_from(domain).ok()?;
    let name = ServerName::try_from(domain.to_string()).ok()?;
    Some((rcgen::SanType::DnsName(dns), name))
}

/// Whether the leaf certificate of `chain` names `name`.
fn covers(chain: &[CertificateDer<'_>], name: &ServerName<'_>) -> bool {
    let Some(leaf) = chain.first() else {
        return false;
    };
    ParsedCertificate::try_from(leaf)
        .and_then(|cert| rustls::client::verify_server_name(&cert, name))
        .is_ok()
}

fn warn_uncovered(chain: &[CertificateDer<'_>], domains: &[String], cert: &Path) {
    for domain in domains {
        let Some((_, name)) = cert_name(domain) else {
            continue;
        };
        if !covers(chain, &name) {
            tracing::warn!(
                domain = %domain,
                cert = %cert.display(),
                "the certificate does not name this domain, clients will refuse it"
            );
        }
    }
}

/// The self-signed certificate stored at `cert`/`key` if it is usable and
/// names every domain, else a new one written there.
fn self_signed_pair(
    domains: &[String],
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let mut names = Vec::new();
    for domain in domains {
        match cert_name(domain) {
            Some(name) => names.push(name),
            None => tracing::warn!(
                domain = %domain,
                "an internationalised domain cannot be named in the generated certificate"
            ),
        }
    }
    if names.is_empty() {
        return Err(TlsError::NoNames);
    }
    let stored = if cert.exists() || key.exists() {
        match stored_pair(cert, key) {
            Ok(pair) if names.iter().all(|(_, n)| covers(&pair.0, n)) => Some(pair),
            Ok(_) => {
                tracing::info!(cert = %cert.display(), "the domains changed, generating a new self-signed certificate");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "stored self-signed certificate unusable, generating a new one");
                None
            }
        }
    } else {
        None
    };
    let pair = match stored {
        Some(pair) => pair,
        None => generate(&names, cert, key)?,
    };
    tracing::warn!(
        cert = %cert.display(),
        domains = ?domains,
        "using a SELF-SIGNED certificate, fit for development only: clients will not trust it; \
         for production set tls.cert and tls.key to a PEM certificate chain and private key \
         issued for these domains (for example by Let's Encrypt)"
    );
    Ok(pair)
}

fn stored_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = read_chain(cert)?;
    let private_key = read_key(key)?;
    rustls::sign::CertifiedKey::from_der(chain.clone(), private_key.clone_key(), &provider())
        .map_err(|source| TlsError::Unusable {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    Ok((chain, private_key))
}

fn generate(
    names: &[(rcgen::SanType, ServerName<'static>)],
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = names.iter().map(|(san, _)| san.clone()).collect();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "xmppd self-signed");
    if let Some((_, name)) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.to_str().as_ref());
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    // The key first: a certificate on disk always has its key beside it.
    write_atomically(key_path, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(cert_path, cert.pem().as_bytes(), 0o644)?;
    let key = PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    Ok((vec![cert.der().clone()], key))
}

/// Write through a temporary file and rename, so a crash leaves either the
/// old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = opts.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel_binding::{exporter_client, server_bindings};
    use rustls::ProtocolVersion;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    fn domains(names: &[&str]) -> Vec<String> {
        names.iter().map(|d| d.to_string()).collect()
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).expect("read")
    }

    #[test]
    fn self_signed_is_generated_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let doms = domains(&["localhost", "127.0.0.1", "[::1]", "chat.example"]);
        let setup = load(&TlsConfig::default(), &doms, dir.path()).expect("generate");
        assert!(setup.self_signed);
        assert!(setup.starttls.alpn_protocols.is_empty());
        assert_eq!(setup.direct.alpn_protocols, [ALPN_XMPP_CLIENT.to_vec()]);
        let crt = dir.path().join("tls/selfsigned.crt");
        let key = dir.path().join("tls/selfsigned.key");
        let (crt1, key1) = (read(&crt), read(&key));
        let chain = read_chain(&crt).expect("chain");
        for d in &doms {
            let (_, name) = cert_name(d).expect("name");
            assert!(covers(&chain, &name), "{d}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "key readable by others");
        }

        load(&TlsConfig::default(), &doms, dir.path()).expect("reuse");
        assert_eq!(read(&crt), crt1);
        assert_eq!(read(&key), key1);
        // Fewer domains: still covered, still reused.
        load(&TlsConfig::default(), &doms[..1], dir.path()).expect("subset");
        assert_eq!(read(&crt), crt1);
    }

    #[test]
    fn self_signed_is_replaced_when_domains_grow_or_files_break() {
        let dir = tempfile::tempdir().expect("tempdir");
        let crt = dir.path().join("tls/selfsigned.crt");
        load(&TlsConfig::default(), &domains(&["a.example"]), dir.path()).expect("first");
        let first = read(&crt);
        let both = domains(&["a.example", "b.example"]);
        load(&TlsConfig::default(), &both, dir.path()).expect("grown");
        let second = read(&crt);
        assert_ne!(first, second);
        std::fs::write(&crt, "garbage").expect("write");
        load(&TlsConfig::default(), &both, dir.path()).expect("repaired");
        assert!(read_chain(&crt).is_ok());
    }

    #[test]
    fn internationalised_only_domains_cannot_be_self_signed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = load(
            &TlsConfig::default(),
            &domains(&["bücher.example"]),
            dir.path(),
        );
        assert!(matches!(e, Err(TlsError::NoNames)));
    }

    #[test]
    fn loads_cert_and_key_files() {
        let gen_dir = tempfile::tempdir().expect("tempdir");
        let doms = domains(&["chat.example"]);
        load(&TlsConfig::default(), &doms, gen_dir.path()).expect("generate");
        let files = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (
            files.path().join("fullchain.pem"),
            files.path().join("privkey.pem"),
        );
        std::fs::copy(gen_dir.path().join("tls/selfsigned.crt"), &cert).expect("copy");
        std::fs::copy(gen_dir.path().join("tls/selfsigned.key"), &key).expect("copy");
        let cfg = TlsConfig {
            cert: Some(cert),
            key: Some(key),
            allow_tls12: false,
            ..TlsConfig::default()
        };
        let data = tempfile::tempdir().expect("tempdir");
        let setup = load(&cfg, &doms, data.path()).expect("load");
        assert!(!setup.self_signed);
        assert!(!data.path().join("tls").exists(), "nothing generated");
    }

    #[test]
    fn missing_garbage_and_mismatched_files_are_errors_naming_them() {
        let gen_dir = tempfile::tempdir().expect("tempdir");
        load(
            &TlsConfig::default(),
            &domains(&["a.example"]),
            gen_dir.path(),
        )
        .expect("gen");
        let good_crt = gen_dir.path().join("tls/selfsigned.crt");
        let good_key = gen_dir.path().join("tls/selfsigned.key");
        let other = tempfile::tempdir().expect("tempdir");
        load(
            &TlsConfig::default(),
            &domains(&["a.example"]),
            other.path(),
        )
        .expect("gen");
        let other_key = other.path().join("tls/selfsigned.key");
        let files = tempfile::tempdir().expect("tempdir");
        let garbage = files.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all\n").expect("write");
        let broken = files.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").expect("write");
        let missing = files.path().join("missing.pem");

        let try_load = |cert: &Path, key: &Path| {
            let cfg = TlsConfig {
                cert: Some(cert.to_path_buf()),
                key: Some(key.to_path_buf()),
                ..TlsConfig::default()
            };
            let data = tempfile::tempdir().expect("tempdir");
            match load(&cfg, &domains(&["a.example"]), data.path()) {
                Ok(_) => panic!("{} / {} loaded", cert.display(), key.display()),
                Err(e) => e,
            }
        };
        let e = try_load(&missing, &good_key);
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = try_load(&good_crt, &missing);
        assert!(e.to_string().contains("key file") && e.to_string().contains("missing.pem"));
        let e = try_load(&garbage, &good_key);
        assert!(matches!(e, TlsError::Pem { .. }), "{e}");
        assert!(e.to_string().contains("garbage.pem"), "{e}");
        let e = try_load(&good_crt, &garbage);
        assert!(e.to_string().contains("private key"), "{e}");
        let e = try_load(&broken, &good_key);
        assert!(e.to_string().contains("broken.pem"), "{e}");
        let e = try_load(&good_crt, &other_key);
        assert!(matches!(e, TlsError::Unusable { .. }), "{e}");
        assert!(e.to_string().contains("selfsigned.key"), "{e}");

        let only_cert = TlsConfig {
            cert: Some(good_crt),
            ..TlsConfig::default()
        };
        let e = load(&only_cert, &domains(&["a.example"]), files.path());
        assert!(matches!(e, Err(TlsError::Incomplete)));
    }

    /// Handshake over an in-memory pipe; returns the server and client
    /// connection states, or the handshake error.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> io::Result<(
        tokio_rustls::server::TlsStream<tokio::io::DuplexStream>,
        tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
    )> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from("localhost").expect("name");
        let (s, c) = tokio::join!(
            TlsAcceptor::from(server).accept(a),
            TlsConnector::from(client).connect(name, b)
        );
        Ok((s?, c?))
    }

    #[tokio::test]
    async fn direct_tls_negotiates_alpn_and_channel_binding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let setup = load(&TlsConfig::default(), &domains(&["localhost"]), dir.path()).expect("tls");
        let (s, c) = handshake(setup.direct.clone(), client_config_insecure())
            .await
            .expect("handshake");
        let (server, client) = (s.get_ref().1, c.get_ref().1);
        assert_eq!(server.alpn_protocol(), Some(ALPN_XMPP_CLIENT));
        assert_eq!(client.alpn_protocol(), Some(ALPN_XMPP_CLIENT));
        let bindings = server_bindings(server, setup.end_point.as_deref());
        let kinds: Vec<&str> = bindings.iter().map(|b| b.kind).collect();
        assert_eq!(kinds, ["tls-exporter", "tls-server-end-point"]);
        let cb = bindings[0].data.clone();
        assert_eq!(cb.len(), 32);
        assert_eq!(exporter_client(client), Some(cb.clone()));
        // The end point is the hash of the certificate the client received.
        let leaf = client.peer_certificates().expect("certificate")[0].clone();
        assert_eq!(
            crate::channel_binding::server_end_point(&leaf),
            Some(bindings[1].data.clone())
        );
        let raw = client
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .expect("export");
        assert_eq!(raw.to_vec(), cb);

        // Another connection, another binding.
        let (s2, _c2) = handshake(setup.starttls.clone(), client_config_insecure())
            .await
            .expect("handshake");
        assert_eq!(s2.get_ref().1.alpn_protocol(), None);
        assert_ne!(server_bindings(s2.get_ref().1, None)[0].data, cb);
    }

    #[tokio::test]
    async fn tls12_is_optional_and_binds_only_to_the_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let doms = domains(&["localhost"]);
        let tls12_client = Arc::new(insecure_client(&[&rustls::version::TLS12]));

        let setup = load(&TlsConfig::default(), &doms, dir.path()).expect("tls");
        let (s, _c) = handshake(setup.starttls.clone(), tls12_client.clone())
            .await
            .expect("TLS 1.2 allowed by default");
        assert_eq!(
            s.get_ref().1.protocol_version(),
            Some(ProtocolVersion::TLSv1_2)
        );
        let kinds: Vec<&str> = server_bindings(s.get_ref().1, setup.end_point.as_deref())
            .iter()
            .map(|b| b.kind)
            .collect();
        assert_eq!(kinds, ["tls-server-end-point"]);

        let strict = TlsConfig {
            allow_tls12: false,
            ..TlsConfig::default()
        };
        let setup = load(&strict, &doms, dir.path()).expect("tls");
        assert!(
            handshake(setup.starttls.clone(), tls12_client)
                .await
                .is_err()
        );
        let (s, _c) = handshake(setup.starttls.clone(), client_config_insecure())
            .await
            .expect("TLS 1.3");
        assert_eq!(
            s.get_ref().1.protocol_version(),
            Some(ProtocolVersion::TLSv1_3)
        );
    }
}
