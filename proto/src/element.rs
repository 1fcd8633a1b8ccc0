//! element
