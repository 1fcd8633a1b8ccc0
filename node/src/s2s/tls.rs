//! TLS between servers: both ends present the server's certificate, and
//! each checks the other's against the trusted authorities and the peer's
//! domain after the handshake (RFC 6120 §13.7.2, XEP-0178). A handshake
//! never fails for want of a valid certificate: a peer without one may
//! still authenticate by Server Dialback (XEP-0220), unless the operator
//! requires valid certificates.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::S2sConfig;
use crate::tls::{AcceptAnyCert, TlsSetup};

/// XEP-0368 §3: the ALPN protocol of direct TLS server connections.
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

pub struct S2sTls {
    /// Inbound, after STARTTLS: asks for (but does not require) the
    /// peer's certificate.
    pub starttls: tokio_rustls::TlsAcceptor,
    /// Inbound direct TLS (ALPN `xmpp-server`).
    pub direct: tokio_rustls::TlsAcceptor,
    /// Outbound: presents this server's certificate.
    pub client: tokio_rustls::TlsConnector,
    /// Outbound direct TLS (ALPN `xmpp-server`).
    pub client_direct: tokio_rustls::TlsConnector,
    /// Checks a peer's chain by name; none without trusted authorities.
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl S2sTls {
    pub fn new(cfg: &S2sConfig, identity: &TlsSetup, allow_tls12: bool) -> anyhow::Result<S2sTls> {
        let provider = crate::tls::provider();
        let mut roots = RootCertStore::empty();
        if cfg.system_roots {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::info!("no system certificate authorities found");
            }
        }
        if let Some(f) = &cfg.ca_file {
            let certs = CertificateDer::pem_file_iter(f)
                .and_then(|c| c.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("s2s.ca_file {}: {e}", f.display()))?;
            let (added, bad) = roots.add_parsable_certificates(certs);
            if added == 0 {
                anyhow::bail!(
                    "s2s.ca_file {}: no usable certificate ({bad} unusable)",
                    f.display()
                );
            }
        }
        let verifier = if roots.is_empty() {
            tracing::warn!(
                "no trusted certificate authorities for peers: every peer authenticates by dialback"
            );
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| anyhow::anyhow!("s2s certificate authorities: {e}"))?,
            )
        };
        let versions = crate::tls::versions(allow_tls12);
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?
            .with_client_cert_verifier(Arc::new(AcceptAnyCert(provider.clone())))
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
        let mut direct = server.clone();
        direct.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?;
        let mut client_direct = client.clone();
        client_direct.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
        Ok(S2sTls {
            starttls: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            direct: tokio_rustls::TlsAcceptor::from(Arc::new(direct)),
            client: tokio_rustls::TlsConnector::from(Arc::new(client)),
            client_direct: tokio_rustls::TlsConnector::from(Arc::new(client_direct)),
            verifier,
        })
    }

    /// Whether `chain` (leaf first) is valid for `domain`: issued by a
    /// trusted authority, in date, and naming the domain (RFC 6125
    /// DNS-ID). Err says why not.
    pub fn check(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
        domain: &str,
    ) -> Result<(), String> {
        let Some(v) = &self.verifier else {
            return Err("no certificate authorities are trusted".to_string());
        };
        let Some((leaf, rest)) = chain.and_then(|c| c.split_first()) else {
            return Err("no certificate presented".to_string());
        };
        let name = ServerName::try_from(domain.to_string())
            .map_err(|_| format!("{domain} cannot be named in a certificate"))?;
        v.verify_server_cert(leaf, rest, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
