//! One server-to-server XML stream over TCP, TLS from either side: reads
//! top-level events through the stream parser, writes bytes, upgrades to
//! TLS (STARTTLS) and restarts.

use std::io;

use crate::io::Io;
use proto::error::StreamCondition;
use proto::xml::{Limits, StreamEvent, StreamParser, XmlError};
use proto::{Element, ns};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The dialback namespace (XEP-0220), declared on our stream headers as
/// `db`.
pub const DIALBACK: &str = "jabber:server:dialback";
/// XEP-0220 §2.4: the stream feature offering dialback.
pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";

/// Why a stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer broke XML or a limit: answer with this stream error.
    #[error("{0}")]
    Xml(#[from] XmlError),
    /// The peer closed its stream (`</stream:stream>`).
    #[error("the peer closed the stream")]
    Closed,
    /// The connection ended without the stream being closed.
    #[error("the connection was lost")]
    Eof,
    /// The peer sent a stream error.
    #[error("the peer sent a stream error: {0}")]
    PeerError(String),
    /// The peer did something the protocol does not allow here: we
    /// answer with this stream error.
    #[error("{0:?}: {1}")]
    Protocol(StreamCondition, String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

pub(crate) struct XmlStream {
    pub io: Io,
    pub parser: StreamParser,
    /// Bytes read so far (for the read-rate limit and status).
    pub read: u64,
}

const CHUNK: usize = 16 * 1024;
/// How long one write may wait for a peer to read.
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl XmlStream {
    pub fn new(io: Io, limits: Limits) -> XmlStream {
        XmlStream {
            io,
            parser: StreamParser::new(limits),
            read: 0,
        }
    }

    /// The next top-level event; a stream error from the peer and the end
    /// of the stream are failures.
    pub async fn next(&mut self) -> Result<StreamEvent, Failure> {
        let mut buf = [0u8; CHUNK];
        loop {
            if let Some(ev) = self.parser.next_event()? {
                if let StreamEvent::Element(e) = &ev
                    && e.name == "error"
                    && e.ns == ns::STREAM
                {
                    let what = Element::parse(&e.raw, ns::STREAM, self.parser.stream_prefixes())
                        .ok()
                        .and_then(|el| {
                            el.elements()
                                .find(|c| c.ns == ns::STREAMS_ERR && c.name != "text")
                                .map(|c| c.name.clone())
                        })
                        .unwrap_or_else(|| "undefined-condition".to_string());
                    return Err(Failure::PeerError(what));
                }
                if ev == StreamEvent::Close {
                    return Err(Failure::Closed);
                }
                return Ok(ev);
            }
            let n = self.io.read(&mut buf).await?;
            if n == 0 {
                return Err(Failure::Eof);
            }
            self.read += n as u64;
            self.parser.feed(&buf[..n]);
        }
    }

    /// The next top-level element (a new stream header here is an error).
    pub async fn element(&mut self) -> Result<proto::xml::TopElement, Failure> {
        match self.next().await? {
            StreamEvent::Element(e) => Ok(e),
            _ => Err(Failure::Protocol(
                StreamCondition::InvalidXml,
                "a second stream header".to_string(),
            )),
        }
    }

    /// The whole element `e`, parsed.
    pub fn tree(&self, e: &proto::xml::TopElement) -> Result<Element, Failure> {
        Element::parse(
            &e.raw,
            self.parser.default_ns(),
            self.parser.stream_prefixes(),
        )
        .map_err(|err| Failure::Protocol(StreamCondition::NotWellFormed, err.to_string()))
    }

    /// Write `bytes`; a peer that does not read them within
    /// [`WRITE_TIMEOUT`] is given up (its stream holds nothing else).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        tokio::time::timeout(WRITE_TIMEOUT, async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        })
        .await
        .map_err(|_| Failure::Timeout("the peer does not read"))??;
        Ok(())
    }

    /// End the stream with an error (RFC 6120 §4.9) and close.
    pub async fn fail(&mut self, cond: StreamCondition, text: Option<&str>) {
        let bytes = cond.to_bytes(text);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let _ = self.io.write_all(&bytes).await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    /// Close the stream cleanly.
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let _ = self.io.write_all(b"</stream:stream>").await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_) | Io::TlsOut(_))
    }

    /// The certificate chain the peer presented in TLS.
    pub fn peer_certs(&self) -> Option<Vec<CertificateDer<'static>>> {
        let certs = match &self.io {
            Io::Tls(t) => t.get_ref().1.peer_certificates(),
            Io::TlsOut(t) => t.get_ref().1.peer_certificates(),
            _ => None,
        }?;
        Some(certs.iter().map(|c| c.clone().into_owned()).collect())
    }

    /// STARTTLS as the receiving server: the stream starts again inside.
    pub async fn accept_tls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> Result<(), Failure> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Upgrading) else {
            return Err(Failure::Protocol(
                StreamCondition::PolicyViolation,
                "TLS twice".to_string(),
            ));
        };
        let tls = acceptor.accept(tcp).await?;
        self.io = Io::Tls(Box::new(tls));
        self.parser.reset();
        Ok(())
    }

    /// STARTTLS as the initiating server, naming `domain` (SNI).
    pub async fn connect_tls(
        &mut self,
        connector: &tokio_rustls::TlsConnector,
        domain: &str,
    ) -> Result<(), Failure> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Upgrading) else {
            return Err(Failure::Protocol(
                StreamCondition::PolicyViolation,
                "TLS twice".to_string(),
            ));
        };
        let name = server_name(domain)?;
        let tls = connector.connect(name, tcp).await?;
        self.io = Io::TlsOut(Box::new(tls));
        self.parser.reset();
        Ok(())
    }
}

/// The TLS server name of `domain`.
pub fn server_name(domain: &str) -> Result<rustls_pki_types::ServerName<'static>, Failure> {
    rustls_pki_types::ServerName::try_from(domain.to_string()).map_err(|_| {
        Failure::Protocol(
            StreamCondition::HostUnknown,
            format!("{domain} cannot be named in TLS"),
        )
    })
}

/// Our stream header (RFC 6120 §4.7), declaring the dialback prefix.
pub fn header(from: &str, to: Option<&str>, id: Option<&str>) -> String {
    use proto::element::escape;
    let mut s = String::from(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'",
    );
    s.push_str(&format!(" from='{}'", escape(from)));
    if let Some(to) = to {
        s.push_str(&format!(" to='{}'", escape(to)));
    }
    if let Some(id) = id {
        s.push_str(&format!(" id='{}'", escape(id)));
    }
    s.push_str(" version='1.0'>");
    s
}

/// Resolves once `shutdown` turns true (never, if its sender is gone
/// without it).
pub async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Whether a stream header says XMPP 1.0 or later (RFC 6120 §4.7.5).
pub fn speaks_xmpp_1(hdr: &proto::xml::StreamHeader) -> bool {
    hdr.version
        .as_deref()
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        .is_some_and(|major| major >= 1)
}
