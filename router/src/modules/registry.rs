//! The one place where the XMPP modules are registered: one line per XEP
//! with its specification. A duplicate registration is an error at
//! start-up (see `handler.rs`).

use std::sync::Arc;

use super::handler::{IqHandler, Registry};
use crate::config::CoreConfig;

/// The handlers of a core with this configuration.
pub(crate) fn registry(cfg: &CoreConfig) -> Result<Registry, String> {
    let modules: Vec<Arc<dyn IqHandler>> = vec![
        // XEP-0030 Service Discovery: https://xmpp.org/extensions/xep-0030.html
        Arc::new(super::disco::DiscoInfo),
        Arc::new(super::disco::DiscoItems),
        // XEP-0280 Message Carbons: https://xmpp.org/extensions/xep-0280.html
        Arc::new(super::carbons::Carbons),
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
            registration: cfg.registration.clone(),
            allow_password_change: cfg.allow_password_change,
        }),
    ];
    let mut modules = modules;
    // XEP-0049 Private XML Storage (and XEP-0048 bookmarks in step with XEP-0402):
    // https://xmpp.org/extensions/xep-0049.html
    modules.push(Arc::new(super::private::Private {
        max_bytes: cfg.max_vcard_bytes,
    }));
    // XEP-0060 Publish-Subscribe and XEP-0163 PEP: https://xmpp.org/extensions/xep-0060.html
    modules.extend(super::pubsub::handlers(cfg));
    Registry::build(modules)
}
