//! The XMPP wire model, with no I/O: typed addresses (RFC 7622), the
//! incremental XML stream parser (RFC 6120 §4, §11), stanza envelopes that
//! keep their raw bytes, a small element tree for the payloads that a module
//! parses, stanza and stream error conditions (RFC 6120 §4.9, §8.3), the
//! roster subscription model (RFC 6121) and the SASL mechanisms (RFC 5802,
//! RFC 7677, RFC 4616, RFC 9266).
//!
//! This crate must not depend on tokio, RocksDB or any other crate of ours.

pub mod element;
pub mod error;
pub mod jid;
pub mod ns;
pub mod roster;
pub mod sasl;
pub mod stanza;
pub mod xml;

pub use element::Element;
pub use jid::{BareJid, FullJid, Jid, JidError};
