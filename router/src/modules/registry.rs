//! The one place where IQ handlers are registered: one line per XEP, each
//! looked up by (namespace, target). A duplicate registration is an error
//! at start-up.

use std::collections::HashMap;
use std::sync::Arc;

use proto::Element;
use proto::stanza::Stanza;

use super::Ctx;
use super::iq::{Target, TargetKind};
use crate::config::CoreConfig;

/// A module that answers IQs of one namespace.
pub(crate) trait IqHandler: Send + Sync {
    /// The payload namespace it serves.
    fn namespace(&self) -> &'static str;
    /// Who it answers for.
    fn targets(&self) -> &'static [TargetKind];
    /// Features it adds to the disco#info (XEP-0030) of entities of kind
    /// `t`: the server, the asker's own account, or another account. Only
    /// what really works there.
    fn features(&self, t: TargetKind) -> &'static [&'static str] {
        let _ = t;
        &[]
    }
    /// Handle a get or set; the handler replies through `ctx`.
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, payload: &Element, target: &Target);
}

pub(crate) struct Registry {
    /// Namespace -> handler per target kind (indexed by `TargetKind::index`).
    handlers: HashMap<&'static str, [Option<Arc<dyn IqHandler>>; 3]>,
    /// The disco features per target kind (indexed by `TargetKind::index`).
    features: [Vec<&'static str>; 3],
}

impl Registry {
    pub fn new(cfg: &CoreConfig) -> Result<Registry, String> {
        let modules: Vec<Arc<dyn IqHandler>> = vec![
            // XEP-0030 Service Discovery: https://xmpp.org/extensions/xep-0030.html
            Arc::new(super::disco::DiscoInfo),
            Arc::new(super::disco::DiscoItems),
            // XEP-0199 XMPP Ping: https://xmpp.org/extensions/xep-0199.html
            Arc::new(super::ping::Ping),
            // XEP-0092 Software Version: https://xmpp.org/extensions/xep-0092.html
            Arc::new(super::version::Version {
                version: cfg.version.clone(),
            }),
            // RFC 6121 §2 Roster Management: https://www.rfc-editor.org/rfc/rfc6121#section-2
            Arc::new(super::roster::Roster),
            // XEP-0054 vcard-temp: https://xmpp.org/extensions/xep-0054.html
            Arc::new(super::vcard::VCard),
            // XEP-0077 In-Band Registration: https://xmpp.org/extensions/xep-0077.html
            Arc::new(super::register::Register {
                registration: cfg.registration,
                allow_password_change: cfg.allow_password_change,
            }),
        ];
        let mut reg = Registry {
            handlers: HashMap::new(),
            features: Default::default(),
        };
        for m in modules {
            for t in m.targets() {
                let slot = &mut reg.handlers.entry(m.namespace()).or_default()[t.index()];
                if slot.is_some() {
                    return Err(format!("two IQ handlers for {} at {:?}", m.namespace(), t));
                }
                *slot = Some(m.clone());
            }
            for t in TargetKind::ALL {
                for f in m.features(t) {
                    if !reg.features[t.index()].contains(f) {
                        reg.features[t.index()].push(f);
                    }
                }
            }
        }
        for f in &mut reg.features {
            f.sort_unstable();
        }
        Ok(reg)
    }

    pub fn get(&self, ns: &str, t: TargetKind) -> Option<&Arc<dyn IqHandler>> {
        self.handlers.get(ns)?[t.index()].as_ref()
    }

    /// The server's disco features (also for the edge's stream features).
    pub fn server_features(&self) -> Vec<&'static str> {
        self.features(TargetKind::Server)
    }

    /// The disco features of entities of kind `t`.
    pub fn features(&self, t: TargetKind) -> Vec<&'static str> {
        self.features[t.index()].clone()
    }
}
