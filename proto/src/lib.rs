//! The XMPP wire model, with no I/O: typed addresses (RFC 7622), the
//! incremental XML stream parser (RFC 6120 §4, §11), stanza envelopes that
//! keep their raw bytes, a small element tree for the payloads that a module
//! parses, stanza and stream error conditions (RFC 6120 §4.9, §8.3), the
//! roster subscription model (RFC 6121), typed data forms (XEP-0004), the
//! SASL mechanisms (RFC 5802, RFC 7677, RFC 4616, RFC 9266), and the
//! cluster's gRPC messages and services with their conversions (`cluster`,
//! from `cluster.proto`).
//!
//! This crate does no I/O and must not depend on RocksDB or any other crate
//! of ours; tonic (and through it tokio's types) comes in only for the
//! generated service stubs of `cluster`.

pub mod caps;
pub mod cluster;
pub mod element;
pub mod error;
pub mod form;
pub mod jid;
pub mod ns;
pub mod roster;
pub mod sasl;
pub mod stanza;
pub mod trail;
pub mod xml;

pub use element::Element;
pub use jid::{BareJid, FullJid, Jid, JidError};
