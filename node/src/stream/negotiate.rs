//! Stream header, stream features and STARTTLS (RFC 6120 §4.3, §4.7, §5).

use bytes::Bytes;
use proto::error::StreamCondition;
use proto::ns;
use proto::xml::{StreamHeader, TopElement};

use super::{Action, Machine, Phase};

impl Machine {
    pub(super) fn on_header(&mut self, h: StreamHeader, out: &mut Vec<Action>) {
        if self.phase != Phase::Header {
            return self.fail(
                StreamCondition::NotWellFormed,
                Some("unexpected stream header".into()),
                out,
            );
        }
        // RFC 6120 §4.7.1: 'to' names the domain; unknown -> host-unknown.
        if let Some(to) = &h.to {
            match proto::jid::normalize_domain(to) {
                // Once authenticated, a restarted stream stays with the
                // account's domain (the session is bound there).
                Ok(d) if self.user.as_ref().is_some_and(|u| u.domain() != d) => {
                    return self.fail(
                        StreamCondition::HostUnknown,
                        Some("the stream was authenticated for another domain".into()),
                        out,
                    );
                }
                Ok(d) if self.settings.domains.contains(&d) => self.domain = d,
                _ => {
                    return self.fail(
                        StreamCondition::HostUnknown,
                        Some(format!("this server does not serve {to:?}")),
                        out,
                    );
                }
            }
        }
        if h.default_ns.as_deref() != Some(ns::CLIENT) {
            return self.fail(
                StreamCondition::InvalidNamespace,
                Some("the content namespace must be jabber:client".into()),
                out,
            );
        }
        // RFC 6120 §4.7.5: a major version other than 1 is unsupported.
        let major = h
            .version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major != Some(1) {
            return self.fail(
                StreamCondition::UnsupportedVersion,
                Some("version 1.0 is required".into()),
                out,
            );
        }
        // A restarted stream (after TLS or SASL) gets a new id (RFC 6120
        // §4.7.3: unique per stream).
        if self.restarted {
            self.stream_id = format!("{:016x}", rand::random::<u64>());
        }
        self.restarted = true;
        let mut s = self.header_bytes();
        self.header_sent = true;
        s.push_str(&self.features());
        out.push(Action::Send(Bytes::from(s)));
        self.phase = Phase::Negotiating;
    }

    /// Stream features for the current state (RFC 6120 §4.3.2).
    fn features(&self) -> String {
        let mut f = String::from("<stream:features>");
        if self.user.is_some() {
            // After SASL: bind (RFC 6120 §7), and the legacy session as optional (RFC 6121 §A? — RFC 3921 compatibility).
            f.push_str("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>");
            f.push_str(
                "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>",
            );
            f.push_str("<ver xmlns='urn:xmpp:features:rosterver'/>");
            f.push_str("<sub xmlns='urn:xmpp:features:pre-approval'/>");
            // XEP-0352 §2.
            f.push_str("<csi xmlns='urn:xmpp:csi:0'/>");
            // XEP-0198 §2.
            if self.settings.sm {
                f.push_str("<sm xmlns='urn:xmpp:sm:3'/>");
            }
        } else if !self.tls && self.settings.tls_available && self.settings.require_tls {
            f.push_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>");
        } else {
            if !self.tls && self.settings.tls_available {
                f.push_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            }
            f.push_str("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
            for m in self.mechanisms() {
                f.push_str("<mechanism>");
                f.push_str(m.name());
                f.push_str("</mechanism>");
            }
            f.push_str("</mechanisms>");
            if !self.channel_bindings.is_empty() {
                // XEP-0440: the channel-binding types of this connection.
                f.push_str("<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>");
                for t in self.binding_types() {
                    f.push_str("<channel-binding type='");
                    f.push_str(t);
                    f.push_str("'/>");
                }
                f.push_str("</sasl-channel-binding>");
            }
            if self.settings.registration {
                f.push_str("<register xmlns='http://jabber.org/features/iq-register'/>");
            }
        }
        // The server's entity capabilities (XEP-0115 §6.3), in every set.
        f.push_str(&self.settings.server_caps);
        f.push_str("</stream:features>");
        f
    }

    pub(super) fn negotiate(&mut self, e: TopElement, out: &mut Vec<Action>) {
        match (e.ns.as_str(), e.name.as_str()) {
            // XEP-0352: offered with the features after authentication, so
            // taken from then on, bound or not.
            (super::bound::NS_CSI, "active" | "inactive") if self.user.is_some() => {
                out.push(Action::ClientState(e.name == "active"))
            }
            (ns::TLS, "starttls") => self.starttls(out),
            (ns::SASL, _) if self.user.is_none() => self.sasl_element(e, out),
            (ns::CLIENT, "iq") if self.user.is_some() => self.bind_iq(e, out),
            (ns::CLIENT, "iq") => self.pre_auth_iq(e, out),
            (ns::CLIENT, _) => self.fail(
                StreamCondition::NotAuthorized,
                Some("authenticate first".into()),
                out,
            ),
            _ => self.fail(StreamCondition::UnsupportedStanzaType, None, out),
        }
    }

    fn starttls(&mut self, out: &mut Vec<Action>) {
        if self.tls || !self.settings.tls_available || self.user.is_some() {
            // RFC 6120 §5.4.2.2: failure, then close.
            // The stream's end follows from Action::Close (once).
            out.push(Action::Send(Bytes::from_static(
                b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            )));
            self.phase = Phase::Closed;
            out.push(Action::Close);
            return;
        }
        out.push(Action::Send(Bytes::from_static(
            b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        )));
        out.push(Action::StartTls);
    }

    /// Whether SASL may start on this stream.
    pub(super) fn sasl_allowed(&self) -> bool {
        self.tls || !(self.settings.require_tls && self.settings.tls_available)
    }
}
