//! SASL for the server side (RFC 6120 §6): SCRAM-SHA-1 and SCRAM-SHA-256
//! (RFC 5802, RFC 7677) with their -PLUS variants bound to `tls-exporter`
//! (RFC 9266), and PLAIN (RFC 4616). Sans-IO: the edge feeds client
//! messages in and gets challenges, a credential lookup or a verdict out.
//!
//! SKELETON: only the stored credential type exists so far.

pub mod credentials;

pub use credentials::{ScramCredentials, StoredCredentials};
