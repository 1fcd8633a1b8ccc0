//! The connection driver's share of the abuse controls (issue 11 item 6
//! and the login log): logging each authentication with the client's
//! address and feeding the login throttle, the registration gate, and
//! answering stanzas over the session's rate. The state they consult is
//! on the `Edge` (`throttle.rs`); the session's own budget is on `Conn`.

use std::time::Duration;

use proto::error::StreamCondition;

use super::Conn;
use crate::stream::AuthOutcome;
use crate::throttle::RegistrationRefused;

impl Conn {
    /// Log how an authentication ended and count failures. The lines are
    /// documented (README, "Logins in the log") for tools such as fail2ban:
    /// the address comes first, the name the client sent last and quoted
    /// with escapes, so no name can forge a field or a line.
    pub(super) async fn auth_outcome(&mut self, o: AuthOutcome) {
        let (ip, port) = (self.peer.ip(), self.peer.port());
        match o.failure {
            None => {
                self.edge.metrics.logins.inc();
                let user = o.account.as_ref().map_or("", |a| a.as_str());
                tracing::info!(target: "xmppd::auth", ip = %ip, port, mechanism = ?o.mechanism, user = ?user, "authentication succeeded");
                if let Some(a) = &o.account {
                    self.edge.logins.succeeded(a.as_str());
                }
            }
            Some(reason) if reason == "aborted" => {
                self.edge.metrics.login_failed(reason, o.checked);
                tracing::debug!(ip = %ip, port, mechanism = ?o.mechanism, user = ?o.username, "authentication aborted by the client");
            }
            Some(reason) => {
                self.edge.metrics.login_failed(reason, o.checked);
                tracing::info!(target: "xmppd::auth", ip = %ip, port, mechanism = ?o.mechanism, reason, user = ?o.username, "authentication failed");
                // Only a wrong name or password counts: protocol mistakes
                // (no TLS yet, an unknown mechanism, bad base64) guess
                // nothing, and a refusal while the address waits is not
                // counted again, or a client retrying early stays out.
                if reason == "not-authorized" && o.checked {
                    let account = o.account.as_ref().map(|a| a.as_str());
                    let now = std::time::Instant::now();
                    let hold = self.edge.logins.failed(ip, account, now);
                    if !hold.is_zero() {
                        self.pause(hold).await;
                    }
                }
            }
        }
    }

    /// Wait `d`, unless the server shuts down first.
    pub(super) async fn pause(&mut self, d: Duration) {
        let mut shutdown = self.edge.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = shutdown.changed() => {
                let text = "the server is shutting down";
                self.fail(StreamCondition::SystemShutdown, Some(text.into())).await;
            }
        }
    }

    /// May this client register an account in-band now
    /// (`registration.min_interval_secs` and the networks)?
    pub(super) fn admit_registration(
        &self,
    ) -> Result<crate::throttle::Admitted, proto::error::StanzaError> {
        use proto::error::{ErrorType, StanzaCondition, StanzaError};
        let refused = match self
            .edge
            .registrations
            .admit(self.peer.ip(), std::time::Instant::now())
        {
            Ok(a) => return Ok(a),
            Err(r) => r,
        };
        tracing::info!(ip = %self.peer.ip(), port = self.peer.port(), reason = ?refused, "in-band registration refused");
        Err(match refused {
            // Not open to this network at all, whenever asked.
            RegistrationRefused::NotFromHere => StanzaError::with_text(
                StanzaCondition::NotAllowed,
                "in-band registration is not open to your network",
            ),
            // A local policy the client meets by waiting (RFC 6120
            // §8.3.3.14 allows type wait for policy-violation).
            RegistrationRefused::TooSoon(wait) => {
                let mut e = StanzaError::with_text(
                    StanzaCondition::PolicyViolation,
                    format!(
                        "an account was registered from your address recently; try again in {} s",
                        wait.as_secs().max(1)
                    ),
                );
                e.kind = ErrorType::Wait;
                e
            }
        })
    }

    /// A stanza over the session's rate: not routed, and, unless it is an
    /// error or a result (which are never answered), answered with
    /// `resource-constraint` (RFC 6120 §8.3.3.18, type wait): the server
    /// will take it again once the client slows down.
    pub(super) async fn refuse_stanza(&mut self, st: &proto::stanza::Stanza) {
        use proto::error::{StanzaCondition, StanzaError};
        if st.is_error() || (st.kind == proto::stanza::Kind::Iq && st.stype() == "result") {
            return;
        }
        let err = StanzaError::with_text(
            StanzaCondition::ResourceConstraint,
            "too many stanzas: slow down",
        );
        let reply = st.error_reply(&err, None);
        self.reply(reply).await;
    }
}
