//! Placeholder: replaced by the SASL mechanisms.
