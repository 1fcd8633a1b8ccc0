//! What an IQ handler is ([`IqHandler`]), whom an IQ is for ([`Target`]),
//! and the table of handlers and disco features built from the list in
//! `registry.rs` ([`Registry`]): looked up by (namespace, target), a
//! duplicate registration is an error at start-up.

use std::collections::HashMap;
use std::sync::Arc;

use proto::BareJid;
use proto::Element;
use proto::stanza::Stanza;

use super::Ctx;

/// Who an IQ is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A domain served here.
    Server,
    /// The sender's own account (no 'to', or its bare JID).
    OwnAccount,
    /// Another local account, by bare JID.
    Account(BareJid),
    /// A PubSub service of this server (XEP-0060), by its JID.
    PubSub(BareJid),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TargetKind {
    Server,
    OwnAccount,
    Account,
    PubSub,
}

impl TargetKind {
    pub const ALL: [TargetKind; 4] = [
        TargetKind::Server,
        TargetKind::OwnAccount,
        TargetKind::Account,
        TargetKind::PubSub,
    ];

    pub fn index(self) -> usize {
        match self {
            TargetKind::Server => 0,
            TargetKind::OwnAccount => 1,
            TargetKind::Account => 2,
            TargetKind::PubSub => 3,
        }
    }
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Server => TargetKind::Server,
            Target::OwnAccount => TargetKind::OwnAccount,
            Target::Account(_) => TargetKind::Account,
            Target::PubSub(_) => TargetKind::PubSub,
        }
    }
}

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
    handlers: HashMap<&'static str, [Option<Arc<dyn IqHandler>>; 4]>,
    /// The disco features per target kind (indexed by `TargetKind::index`).
    features: [Vec<&'static str>; 4],
}

impl Registry {
    /// The table of `modules`; an error if two serve one namespace for
    /// one kind of target.
    pub fn build(modules: Vec<Arc<dyn IqHandler>>) -> Result<Registry, String> {
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
