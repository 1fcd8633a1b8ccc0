//! How the core reaches a bound session on the edge.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use proto::error::StreamCondition;
use tokio::sync::{Notify, mpsc};

/// What the core sends down to a session.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Write these stanza bytes to the client.
    Stanza(Bytes),
    /// End the stream with this error (e.g. `<conflict/>` when a new session
    /// took the resource).
    Close(StreamCondition, Option<String>),
}

/// The core's handle on one bound session. Sends never wait: a session
/// whose queue is full is told to close (a slow reader must not make the
/// server buffer without bound).
#[derive(Debug, Clone)]
pub struct SessionSink {
    pub conn_id: u64,
    tx: mpsc::Sender<Outbound>,
    overflow: Arc<(AtomicBool, Notify)>,
}

impl SessionSink {
    /// A sink and the receiving half for the connection task.
    pub fn channel(conn_id: u64, capacity: usize) -> (SessionSink, SessionInbox) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new((AtomicBool::new(false), Notify::new()));
        (
            SessionSink {
                conn_id,
                tx,
                overflow: overflow.clone(),
            },
            SessionInbox {
                rx,
                overflow: OverflowSignal(overflow),
            },
        )
    }

    /// Queue bytes for the client; false if the session is gone or overflowed.
    pub fn send(&self, out: Outbound) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.0.store(true, Ordering::Relaxed);
                self.overflow.1.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The connection task's end.
#[derive(Debug)]
pub struct SessionInbox {
    pub rx: mpsc::Receiver<Outbound>,
    pub overflow: OverflowSignal,
}

/// Set when the core found a session's queue full.
#[derive(Debug, Clone)]
pub struct OverflowSignal(Arc<(AtomicBool, Notify)>);

impl OverflowSignal {
    /// Resolves once the queue has overflowed.
    pub async fn wait(&self) {
        let overflow = &self.0;
        loop {
            if overflow.0.load(Ordering::Relaxed) {
                return;
            }
            overflow.1.notified().await;
        }
    }
}
