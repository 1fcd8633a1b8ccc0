//! The edge's one handle on the core tier. In the single-node server (role
//! `both`) it calls the in-process [`Core`]; on an edge node it calls a core
//! node over gRPC ([`RemoteCore`]). The connection code is the same for both:
//! only the transport differs (docs/cluster.md, "one code path").

use std::sync::Arc;

use bytes::Bytes;

use proto::sasl::StoredCredentials;
use proto::stanza::Stanza;
use proto::{BareJid, Element, FullJid};
use router::modules::sm::SmEnable;
use router::{BindError, Core, SessionSink};

use crate::remote::RemoteCore;

/// What an in-band registration request (XEP-0077) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// A result IQ with this payload (the form, for a get).
    Form(String),
    /// An empty result IQ.
    Done,
    /// An error IQ with this `<error/>` element.
    Error(String),
}

/// Why a stanza could not be handed to the core.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("the core is shutting down")]
    ShuttingDown,
    #[error("the core cannot be reached: {0}")]
    Unreachable(String),
}

#[derive(Clone)]
pub enum CoreLink {
    Local(Core),
    Remote(Arc<RemoteCore>),
}

impl CoreLink {
    /// Bind a resource (RFC 6120 §7); `sink` reaches the connection.
    pub async fn bind(&self, jid: FullJid, sink: SessionSink) -> Result<(), BindError> {
        match self {
            CoreLink::Local(c) => c.bind(jid, sink).await,
            CoreLink::Remote(r) => r.bind(jid, sink).await,
        }
    }

    /// The session ended: contacts see it go unavailable.
    pub async fn unbind(&self, jid: FullJid, conn_id: u64) {
        match self {
            CoreLink::Local(c) => {
                let _ = c.unbind(jid, conn_id).await;
            }
            CoreLink::Remote(r) => r.unbind(jid, conn_id).await,
        }
    }

    /// Route a stanza of a bound session (`from` stamped). Waits while the
    /// core's queue is full (back-pressure on the client's socket).
    pub async fn route(&self, stanza: Stanza) -> Result<(), RouteError> {
        match self {
            CoreLink::Local(c) => c.route(stanza).await.map_err(|_| RouteError::ShuttingDown),
            CoreLink::Remote(r) => r.route(stanza).await,
        }
    }

    /// A stanza from another server (its stream checked 'from'), or an
    /// error answering what could not be sent there: inbound processing
    /// at the recipient's shard. Not waited for.
    pub fn route_inbound(&self, stanza: Stanza) {
        match self {
            CoreLink::Local(c) => c.route_inbound(stanza),
            CoreLink::Remote(r) => {
                let r = r.clone();
                tokio::spawn(async move { r.route_inbound(stanza).await });
            }
        }
    }

    /// An external component (XEP-0114) for `domain` connected here.
    pub async fn bind_component(&self, domain: String, sink: SessionSink) -> Result<(), String> {
        match self {
            CoreLink::Local(c) => c
                .bind_component(domain, sink)
                .await
                .map_err(|e| e.to_string()),
            CoreLink::Remote(r) => r.bind_component(domain, sink).await,
        }
    }

    /// The component's connection `conn_id` ended.
    pub async fn unbind_component(&self, domain: String, conn_id: u64) -> Result<(), String> {
        match self {
            CoreLink::Local(c) => c
                .unbind_component(domain, conn_id)
                .await
                .map_err(|e| e.to_string()),
            CoreLink::Remote(r) => {
                r.unbind_component(domain, conn_id).await;
                Ok(())
            }
        }
    }

    /// [`CoreLink::route_inbound`], waiting while the core's queue is full
    /// (back-pressure on the peer's socket).
    pub async fn route_inbound_wait(&self, stanza: Stanza) {
        match self {
            CoreLink::Local(c) => {
                let _ = c.route_inbound_wait(stanza).await;
            }
            CoreLink::Remote(r) => r.route_inbound(stanza).await,
        }
    }

    /// XEP-0198 §3: stream management for a bound session; false if the
    /// core has no such session (or it has it already).
    pub async fn sm_enable(&self, jid: FullJid, conn_id: u64, e: SmEnable) -> bool {
        match self {
            CoreLink::Local(c) => c.sm_enable(jid, conn_id, e).await.unwrap_or(false),
            CoreLink::Remote(r) => r.sm_enable(jid, conn_id, e).await,
        }
    }

    /// The client acknowledged `h` stanzas; the edge handled `handled`.
    /// Not waited for.
    pub fn sm_ack(&self, jid: FullJid, conn_id: u64, h: u32, handled: u32) {
        match self {
            CoreLink::Local(c) => {
                let c = c.clone();
                tokio::spawn(async move {
                    let _ = c.sm_ack(jid, conn_id, h, handled).await;
                });
            }
            CoreLink::Remote(r) => {
                let r = r.clone();
                tokio::spawn(async move { r.sm_ack(jid, conn_id, h, handled).await });
            }
        }
    }

    /// As [`CoreLink::sm_ack`], waited for: the last acknowledgement goes
    /// in before the session ends or waits (else its end would hand on
    /// as undelivered what the client had acknowledged).
    pub async fn sm_ack_now(&self, jid: FullJid, conn_id: u64, h: u32, handled: u32) {
        match self {
            CoreLink::Local(c) => {
                let _ = c.sm_ack(jid, conn_id, h, handled).await;
            }
            CoreLink::Remote(r) => r.sm_ack(jid, conn_id, h, handled).await,
        }
    }

    /// The connection of a session with stream management is gone: a
    /// resumable session waits for its client, any other ends.
    pub async fn sm_detach(&self, jid: FullJid, conn_id: u64, handled: u32) {
        match self {
            CoreLink::Local(c) => {
                let _ = c.sm_detach(jid, conn_id, handled).await;
            }
            CoreLink::Remote(r) => r.sm_detach(jid, conn_id, handled).await,
        }
    }

    /// XEP-0198 §5: resume `user`'s session `previd` on this connection.
    pub async fn sm_resume(
        &self,
        user: BareJid,
        previd: String,
        h: u32,
        sink: SessionSink,
    ) -> crate::stream::Resumed {
        use crate::stream::Resumed;
        match self {
            CoreLink::Local(c) => match c.sm_resume(user, previd, h, sink).await {
                Ok(Ok((jid, handled, carbons))) => Resumed::Yes(jid, handled, carbons),
                Ok(Err(router::ResumeRefused::NotFound)) => Resumed::NotFound,
                Ok(Err(router::ResumeRefused::TooHigh { handled })) => Resumed::TooHigh { handled },
                Err(_) => Resumed::Unavailable,
            },
            CoreLink::Remote(r) => r.sm_resume(user, previd, h, sink).await,
        }
    }

    /// Bytes the edge answered a session's client with, sent through the
    /// session at the core so that stream management counts them.
    pub async fn sm_echo(&self, jid: FullJid, conn_id: u64, bytes: Bytes) {
        match self {
            CoreLink::Local(c) => {
                let _ = c.sm_echo(jid, conn_id, bytes).await;
            }
            CoreLink::Remote(r) => r.sm_echo(jid, conn_id, bytes).await,
        }
    }

    /// The stored credentials of an account, for SASL.
    pub async fn credentials(&self, user: &BareJid) -> Result<Option<StoredCredentials>, String> {
        match self {
            CoreLink::Local(c) => c.accounts().credentials(user).map_err(|e| e.to_string()),
            CoreLink::Remote(r) => r.credentials(user).await,
        }
    }

    /// XEP-0077 registration before authentication.
    pub async fn register(
        &self,
        domain: &str,
        iq_type: &str,
        payload: &Element,
    ) -> Result<RegisterOutcome, String> {
        match self {
            CoreLink::Local(c) => Ok(
                match router::modules::register::unauthenticated(
                    c,
                    c.config().registration.get(),
                    domain,
                    iq_type,
                    payload,
                )
                .await
                {
                    Ok(Some(form)) => RegisterOutcome::Form(form.to_xml(proto::ns::CLIENT)),
                    Ok(None) => RegisterOutcome::Done,
                    Err(e) => RegisterOutcome::Error(e.to_xml()),
                },
            ),
            CoreLink::Remote(r) => r.register(domain, iq_type, payload).await,
        }
    }
}
