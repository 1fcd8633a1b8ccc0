//! Where stanzas for other servers leave the core (RFC 6120 §10.4.2:
//! a remote domain is reached over a server-to-server stream), and how
//! stanzas that came from them go in.
//!
//! The core knows nothing of sockets: the edge that holds the
//! server-to-server streams gives the core an [`Outlet`], and the shards
//! hand each stanza for a domain that this server does not host to it, in
//! the order they produce them. Without an outlet (federation off) such a
//! stanza is answered with `remote-server-not-found`.

use std::sync::{Arc, RwLock};

use proto::stanza::{Kind, Stanza};

/// What takes stanzas for remote domains (the edge's server-to-server
/// streams). `send` must not block: it queues.
pub trait Outlet: Send + Sync {
    /// Hand `s` on to the server of its 'to' domain. `s` has 'from' and
    /// 'to' set, and its 'from' domain is one this server hosts.
    fn send(&self, s: Stanza);
}

/// The core's handle on the outlet, set once the edge has started.
#[derive(Clone, Default)]
pub struct Federation {
    outlet: Arc<RwLock<Option<Arc<dyn Outlet>>>>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl Federation {
    /// Send stanzas for remote domains to `outlet` (or, with `None`,
    /// answer them with `remote-server-not-found` again).
    pub fn set(&self, outlet: Option<Arc<dyn Outlet>>) {
        *self.outlet.write().unwrap_or_else(|p| p.into_inner()) = outlet;
    }

    /// Whether remote domains can be reached.
    pub fn enabled(&self) -> bool {
        self.outlet
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Hand `s` to the outlet; gives it back when there is none.
    pub(crate) fn send(&self, s: Stanza) -> Result<(), Box<Stanza>> {
        let outlet = self
            .outlet
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match outlet {
            Some(o) => {
                o.send(s);
                Ok(())
            }
            None => Err(Box::new(s)),
        }
    }
}

/// Whether a stanza that cannot reach its server is answered with an
/// error (RFC 6120 §10.4.3): never an error or an IQ result, and of
/// presence only available presence and a subscription request (so that
/// the roster's pending request ends); probes, subscription answers and
/// unavailable presence are dropped.
pub fn answered_when_unreachable(s: &Stanza) -> bool {
    match s.kind {
        _ if s.is_error() => false,
        Kind::Iq => s.stype() != "result",
        Kind::Presence => matches!(s.stype(), "" | "subscribe"),
        Kind::Message => true,
    }
}
