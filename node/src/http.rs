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
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::core_link::CoreLink;
use crate::metrics::{Metrics, ScrapeState};

/// What the endpoints read; filled in as the node starts.
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    started: AtomicBool,
    stopping: AtomicBool,
    core: OnceLock<router::Core>,
    link: OnceLock<CoreLink>,
    core_service: OnceLock<router::service::CoreService>,
}

impl HttpState {
    pub fn new(metrics: Arc<Metrics>) -> Arc<HttpState> {
        Arc::new(HttpState {
            metrics,
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            core: OnceLock::new(),
            link: OnceLock::new(),
            core_service: OnceLock::new(),
        })
    }

    /// The core of this process, once it runs.
    pub fn set_core(&self, core: router::Core) {
        let _ = self.core.set(core);
    }

    /// The core node's services to edges (their queues are metrics).
    pub fn set_core_service(&self, svc: router::service::CoreService) {
        let _ = self.core_service.set(svc);
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
            && let Some(g) = core
                .shard_groups()
                .iter()
                .find(|g| g.raft_leader.is_none() || g.quorum_lost)
        {
            return Some(format!("shard {} has no leader", g.shard));
        }
        if let Some(CoreLink::Remote(r)) = self.link.get() {
            if !r.connected() {
                return Some("no core node reachable".into());
            }
            if let Some(shard) = r.unserved_shard() {
                return Some(format!("shard {shard} has no live leader"));
            }
        }
        None
    }
}

/// HTTP connections served at once; more wait in the listen backlog, so
/// the listener cannot take the file descriptors the XMPP listeners need.
const MAX_CONNECTIONS: usize = 64;
/// HTTP connections from one address at once: a client holding many
/// cannot take the probes' places (the kubelet and Prometheus each need a
/// few); more are closed as they come.
const MAX_PER_IP: usize = 8;
/// Time a client gets to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection (a scraper reconnects).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Time requests in flight get to finish when the node stops.
const DRAIN: Duration = Duration::from_secs(2);

/// Serve until `shutdown` turns true: HTTP/1.1, at most `MAX_CONNECTIONS`
/// at once, each closed after `CONNECTION_LIFETIME` or when it is slower
/// than `HEADER_TIMEOUT` to send its headers.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    api: Option<Arc<crate::api::ApiState>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/startupz", get(startupz))
        .route("/readyz", get(readyz))
        .with_state(state);
    if let Some(api) = api {
        app = app.nest("/api/v1", crate::api::routes(api));
    }
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> =
        Arc::default();
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = async { drop(shutdown.wait_for(|s| *s).await) } => break,
        };
        let (tcp, ip) = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => (tcp, peer.ip()),
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { drop(shutdown.wait_for(|s| *s).await) } => break,
        };
        {
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(ip).or_insert(0);
            if *n >= MAX_PER_IP {
                // Closed at once; its permit goes back.
                continue;
            }
            *n += 1;
        }
        let service = TowerToHyperService::new(app.clone());
        let mut stop = shutdown.clone();
        let slot = IpSlot {
            map: per_ip.clone(),
            ip,
        };
        conns.spawn(async move {
            let _permit = permit;
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

/// One connection's place in the per-address count, given back on drop.
struct IpSlot {
    map: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

async fn metrics(State(st): State<Arc<HttpState>>) -> impl IntoResponse {
    let mut scrape = ScrapeState::default();
    if let Some(core) = st.core.get() {
        scrape.sessions = Some(core.session_count().await);
        scrape.shards = core.shard_groups();
        scrape.engine = Some(core.engine_stats());
        scrape.shard_queues = core.shard_queue_depths();
    }
    if let Some(svc) = st.core_service.get() {
        scrape.edge_queues = svc.edge_queue_depths();
    }
    if let Some(CoreLink::Remote(r)) = st.link.get() {
        scrape.core_links = r.links();
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
