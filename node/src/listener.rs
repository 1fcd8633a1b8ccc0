//! Accept loops. A listener is handed an already-bound socket and a
//! shutdown signal, so tests bind port 0 and stopping is the same code in
//! tests and production.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::edge::Edge;

/// How long connections get to close after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// Accept client connections until shutdown; then wait for them to end.
/// `direct_tls`: XEP-0368 TLS from the first byte.
pub async fn serve(
    listener: TcpListener,
    edge: Arc<Edge>,
    direct_tls: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut drain = edge.drain_signal();
    let mut draining = false;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    match edge.admit(peer.ip()) {
                        Some(slot) => {
                            conns.spawn(crate::conn::run(edge.clone(), tcp, peer, direct_tls, slot));
                        }
                        None => {
                            edge.metrics.refused.inc();
                            tracing::warn!(%peer, "connection refused: connection limit reached");
                            if !direct_tls {
                                tokio::spawn(refuse(tcp));
                            }
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
            // Draining: no more connections; those open close in turn.
            _ = drain.changed() => {
                draining = true;
                break;
            }
        }
    }
    drop(listener);
    if draining {
        loop {
            tokio::select! {
                r = conns.join_next() => if r.is_none() { break },
                _ = shutdown.changed() => break,
            }
        }
    }
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

/// Tell a refused client why (RFC 6120 §4.9.3.17 policy-violation).
async fn refuse(mut tcp: tokio::net::TcpStream) {
    let msg = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too many connections</text></stream:error></stream:stream>";
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(msg.as_bytes())).await;
}
