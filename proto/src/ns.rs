//! ns
