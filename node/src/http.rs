//! The operators' HTTP listener (`listeners.http`, default
//! 127.0.0.1:9090): `/metrics` in the Prometheus text format and the
//! probes Kubernetes asks, `/livez` (the process answers), `/startupz`
//! (start-up is over: the store is open, the shards have leaders, the
//! client listeners are bound) and `/readyz` (it can serve now: started,
//! not stopping, every shard of its core with a leader, an edge's link to
//! a core node up). It is bound first, so that the probes answer while a
//! core node waits for its cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::core_link::CoreLink;
use crate::metrics::{Metrics, ScrapeState};

/// What the endpoints read; filled in as the node starts.
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    started: AtomicBool,
    stopping: AtomicBool,
    core: OnceLock<router::Core>,
    link: OnceLock<CoreLink>,
}

impl HttpState {
    pub fn new(metrics: Arc<Metrics>) -> Arc<HttpState> {
        Arc::new(HttpState {
            metrics,
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            core: OnceLock::new(),
            link: OnceLock::new(),
        })
    }

    /// The core of this process, once it runs.
    pub fn set_core(&self, core: router::Core) {
        let _ = self.core.set(core);
    }

    /// Start-up is over; `link` is how the edge reaches its core.
    pub fn set_started(&self, link: CoreLink) {
        let _ = self.link.set(link);
        self.started.store(true, Ordering::Release);
    }

    /// The node is stopping: not ready any more.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Why the node cannot serve now, if it cannot.
    fn not_ready(&self) -> Option<String> {
        if !self.started.load(Ordering::Acquire) {
            return Some("starting".into());
        }
        if self.stopping.load(Ordering::Acquire) {
            return Some("stopping".into());
        }
        if let Some(core) = self.core.get()
            && let Some(g) = core.shard_groups().iter().find(|g| g.leader.is_none())
        {
            return Some(format!("shard {} has no leader", g.shard));
        }
        if let Some(CoreLink::Remote(r)) = self.link.get()
            && !r.connected()
        {
            return Some("no core node reachable".into());
        }
        None
    }
}

/// Serve until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/startupz", get(startupz))
        .route("/readyz", get(readyz))
        .with_state(state);
    let mut stop = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    });
    // A scrape or probe in flight gets a moment to finish; a client that
    // holds a connection open without finishing its request does not hold
    // up the node's stop.
    let cut = async move {
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    tokio::select! {
        r = server => {
            if let Err(e) = r {
                tracing::error!(error = %e, "the HTTP listener failed");
            }
        }
        _ = cut => tracing::debug!("HTTP connections left open at stop"),
    }
}

async fn metrics(State(st): State<Arc<HttpState>>) -> impl IntoResponse {
    let mut scrape = ScrapeState::default();
    if let Some(core) = st.core.get() {
        scrape.sessions = Some(core.session_count().await);
        scrape.shards = core.shard_groups();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&scrape),
    )
}

async fn startupz(State(st): State<Arc<HttpState>>) -> impl IntoResponse {
    if st.started.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_string())
    }
}

async fn readyz(State(st): State<Arc<HttpState>>) -> impl IntoResponse {
    match st.not_ready() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}
