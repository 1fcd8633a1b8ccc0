//! The edge tier and the `xmppd` binary: client listeners (STARTTLS on the
//! plain port, XEP-0368 direct TLS, WebSocket, BOSH), the client stream state machine
//! (RFC 6120 §4–§8) and its socket driver, TLS (rustls), configuration, the
//! admin socket and the command line. The edge reaches state only through
//! `router::Core`; it never opens RocksDB itself.

pub mod admin;
pub mod api;
pub mod bosh;
pub mod channel_binding;
pub mod cli;
pub mod component;
pub mod config;
mod conn;
pub mod core_link;
pub mod csi;
pub mod edge;
pub mod http;
mod io;
pub mod kube;
pub mod listener;
pub mod metrics;
pub mod otel;
pub mod reload;
pub mod remote;
pub mod s2s;
mod scan;
pub mod server;
pub mod services;
pub mod stream;
pub mod throttle;
pub mod tls;
mod undelivered;
pub mod ws;
