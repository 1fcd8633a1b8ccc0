//! Placeholder: replaced by the RFC 7622 implementation.
