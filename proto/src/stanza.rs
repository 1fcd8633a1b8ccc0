//! stanza
