//! A whole node in one value: store, core, edge, listeners and the admin
//! socket, started from a [`Config`] and stopped by a shutdown signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use router::{Core, CoreConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, LimitsConfig, Role};
use crate::core_link::CoreLink;
use crate::edge::{Edge, EdgeLimits, EdgeTls};
use crate::remote::RemoteCore;
use crate::stream::StreamSettings;

/// A running node.
pub struct Server {
    pub c2s_addr: Option<SocketAddr>,
    pub direct_tls_addr: Option<SocketAddr>,
    /// WebSocket listeners (RFC 7395): plain and with TLS.
    pub websocket_addr: Option<SocketAddr>,
    pub websocket_tls_addr: Option<SocketAddr>,
    /// Where the cluster's gRPC services listen (role `core`).
    pub cluster_addr: Option<SocketAddr>,
    /// Where `/metrics` and the health probes are served.
    pub http_addr: Option<SocketAddr>,
    /// Server-to-server listeners (`[s2s]`): STARTTLS and direct TLS.
    pub s2s_addr: Option<SocketAddr>,
    pub s2s_direct_tls_addr: Option<SocketAddr>,
    /// Federation, when `s2s.enabled`.
    pub s2s: Option<Arc<crate::s2s::S2s>>,
    /// Where external components connect (`[components]`).
    pub component_addr: Option<SocketAddr>,
    http: Arc<crate::http::HttpState>,
    http_stop: watch::Sender<bool>,
    http_task: Option<JoinHandle<()>>,
    pub admin_socket: PathBuf,
    /// The core of this process (roles `both` and `core`).
    pub core: Option<Core>,
    pub edge: Arc<Edge>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Federation's and components' stop signal and tasks (after the
    /// clients').
    fed_shutdown: watch::Sender<bool>,
    fed_tasks: Vec<JoinHandle<()>>,
    grpc: Option<JoinHandle<()>>,
    /// The core's services to edges, to drain them on stop.
    core_service: Option<router::service::CoreService>,
    /// The configuration in force (what a reload compares with).
    cfg: std::sync::Mutex<Config>,
    api: Option<Arc<crate::api::ApiState>>,
    domains: Vec<String>,
    /// The trace exporter (`[tracing]`), flushed last on stop.
    otel: Option<crate::otel::Tracing>,
}

/// What a configuration reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Applied now, as the log says them.
    pub applied: Vec<String>,
    /// Changed in the file, but in force only after a restart.
    pub restart: Vec<String>,
}

/// The TLS configurations of an edge, from the files `cfg` names (or the
/// generated certificate).
fn edge_tls(cfg: &Config, domains: &[String]) -> anyhow::Result<(EdgeTls, crate::tls::TlsSetup)> {
    let tls = crate::tls::load(&cfg.tls, domains, &cfg.data_dir)?;
    Ok((
        EdgeTls {
            starttls: tokio_rustls::TlsAcceptor::from(tls.starttls.clone()),
            direct: tokio_rustls::TlsAcceptor::from(tls.direct.clone()),
            end_point: tls.end_point.clone().map(Arc::from),
        },
        tls,
    ))
}

pub fn edge_limits(cfg: &Config) -> EdgeLimits {
    let l = &cfg.limits;
    EdgeLimits {
        parser: proto::xml::Limits {
            max_stanza_bytes: l.max_stanza_bytes,
            max_depth: l.max_depth,
            max_attrs: l.max_attrs,
        },
        read_rate: l.read_rate_bytes_per_sec,
        read_burst: l.read_burst_bytes,
        max_connections: l.max_connections,
        max_connections_per_ip: l.max_connections_per_ip,
        handshake_timeout: Duration::from_secs(l.handshake_timeout_secs),
        idle_timeout: Duration::from_secs(l.idle_timeout_secs),
        ping_timeout: Duration::from_secs(l.ping_timeout_secs),
        outbound_queue: l.outbound_queue,
        write_timeout: Duration::from_secs(l.write_timeout_secs),
        stanza_rate: l.stanza_rate_per_sec,
        stanza_burst: l.stanza_burst,
        registration_interval: Duration::from_secs(cfg.registration.min_interval_secs),
        registration_trusted: networks(&cfg.registration.trusted_networks),
        registration_allowed: networks(&cfg.registration.allowed_networks),
        login_free_failures: l.login_free_failures,
        login_delay: Duration::from_secs(l.login_delay_secs),
        login_max_delay: Duration::from_secs(l.login_max_delay_secs),
        login_forget: Duration::from_secs(l.login_forget_secs),
        csi_max_held: cfg.csi.max_held,
        csi_chat_states_urgent: cfg.csi.chat_states_urgent,
        sm_resume_timeout: Duration::from_secs(cfg.sm.resume_timeout_secs),
        sm_max_unacked: cfg.sm.max_unacked,
        sm_request_every: cfg.sm.request_every,
    }
}

/// The networks of a list that `Config::validate` has checked.
fn networks(list: &[String]) -> Vec<crate::throttle::Network> {
    list.iter()
        .filter_map(|n| crate::throttle::Network::parse(n).ok())
        .collect()
}

/// Normalised domains of the configuration.
fn domains(cfg: &Config) -> anyhow::Result<Vec<String>> {
    cfg.domains
        .iter()
        .map(|d| proto::jid::normalize_domain(d).map_err(|e| anyhow::anyhow!("domain {d}: {e}")))
        .collect()
}

impl Server {
    /// Open the store, start the core and bind the listeners, as the
    /// configured role asks: `both` runs everything in this process, `core`
    /// serves edges over gRPC and takes no clients, `edge` takes clients
    /// and forwards them to its core node.
    pub async fn start(cfg: Config) -> anyhow::Result<Server> {
        cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        // Entering a full room sends every occupant's presence and the
        // history at once: a queue shorter than that closes the newcomer.
        let entry = cfg.muc.max_occupants + cfg.muc.max_history + 8;
        if cfg.muc.enabled && cfg.limits.outbound_queue < entry {
            tracing::warn!(
                outbound_queue = cfg.limits.outbound_queue,
                needed = entry,
                "limits.outbound_queue is shorter than what entering a full room sends at once (muc.max_occupants + muc.max_history + 8): such an entry closes the client's stream as too slow"
            );
        }
        let domains = domains(&cfg)?;
        let role = cfg.cluster.role;
        let liveness = Duration::from_secs(cfg.cluster.liveness_secs);
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
        let (tx, rx) = watch::channel(false);
        // The HTTP listener stops last, so that /readyz says `stopping`
        // while the rest drains.
        let (http_tx, http_rx) = watch::channel(false);
        // Whatever fails below stops what was started before it.
        let mut stop_guard = StopOnError(Some(tx));
        let mut http_guard = StopOnError(Some(http_tx));
        let mut http_task = None;
        let mut tasks = Vec::new();
        // Federation and components stop after the clients: the
        // unavailable presence of the sessions that end goes out on them
        // first (see `stop`).
        let (fed_tx, fed_rx) = watch::channel(false);
        let mut fed_guard = StopOnError(Some(fed_tx));
        let mut fed_tasks = Vec::new();
        // The probes answer from the start: a core node may wait long for
        // its cluster's leaders.
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let http = crate::http::HttpState::new(metrics.clone());
        let mut http_addr = None;
        let api = match &cfg.admin.token_file {
            Some(f) => Some(crate::api::ApiState::new(
                crate::api::read_token(f).map_err(|e| anyhow::anyhow!("admin.token_file: {e}"))?,
            )),
            None => None,
        };
        if let Some(addr) = &cfg.listeners.http {
            let l = TcpListener::bind(addr).await.with_context(|| {
                format!("binding the HTTP listener {addr} (listeners.http; each process on a host needs its own, or false)")
            })?;
            http_addr = Some(l.local_addr()?);
            tracing::info!(addr = %l.local_addr()?, "HTTP listener (/metrics, /livez, /readyz, /startupz)");
            http_task = Some(tokio::spawn(crate::http::serve(
                l,
                http.clone(),
                api.clone(),
                http_rx,
            )));
        }
        let mut node_id = cfg
            .cluster
            .resolve_node_id()
            .map_err(|e| anyhow::anyhow!("cluster.node_id: {e}"))?;
        let peers = cfg.cluster.peers_checked().0;
        // The address the other core nodes know this one by.
        let advertised = cfg.cluster.advertised().or_else(|| {
            peers
                .iter()
                .find(|(id, _)| *id == node_id)
                .map(|(_, a)| a.clone())
        });
        let core_cfg = CoreConfig {
            domains: domains.clone(),
            shards: cfg.cluster.shards,
            registration: cfg.registration.enabled.into(),
            allow_password_change: cfg.registration.allow_password_change,
            min_password_len: cfg.registration.min_password_len,
            version: env!("CARGO_PKG_VERSION").to_string(),
            node_id,
            raft_addr: advertised
                .clone()
                .unwrap_or_else(|| cfg.cluster.listen.clone()),
            peers: peers.clone(),
            replication: cfg.cluster.replication,
            heartbeat_ms: 100,
            snapshot_logs: cfg.cluster.snapshot_logs,
            max_roster_items: cfg.limits.max_roster_items,
            max_vcard_bytes: cfg.limits.max_vcard_bytes,
            pubsub: router::config::PubsubConfig {
                max_item_bytes: cfg.item_limit(),
                ..cfg.pubsub.to_core()
            },
            muc: cfg.muc.to_core(),
            auto_join: cfg.cluster.auto_join,
            components: cfg.components.secrets.keys().cloned().collect(),
        };
        let server_features = router::server_features(&core_cfg)?;
        let server_caps = router::server_caps(&core_cfg)?;
        // The shards' Raft groups, served to the other core nodes.
        let groups = router::cluster::raft::Groups::default();
        let core = if role == Role::Edge {
            None
        } else {
            let store = router::open_store(
                &cfg.data_dir.join("db"),
                cfg.storage.sync_writes,
                cfg.offline.max_per_user,
            )
            .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?;
            let core = Core::start_with(core_cfg.clone(), store, &groups).await?;
            metrics.register(Box::new(core.commit_latency()));
            http.set_core(core.clone());
            Some(core)
        };
        let mut grpc = None;
        let mut core_service = None;
        let mut cluster_addr = None;
        if let (Role::Core, Some(core)) = (role, &core) {
            let addr = &cfg.cluster.listen;
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding cluster listener {addr}"))?;
            cluster_addr = Some(l.local_addr()?);
            tracing::info!(addr = %l.local_addr()?, "cluster listener (gRPC)");
            let advertised = advertised.clone().unwrap_or(l.local_addr()?.to_string());
            let svc = router::service::CoreService::new(core.clone(), node_id, advertised);
            core_service = Some(svc.clone());
            http.set_core_service(svc.clone());
            if let Some(api) = &api {
                api.set_core(core.clone(), svc.clone(), domains.clone());
            }
            let (ping, answer) = router::service::liveness(liveness);
            let mut stop = rx.clone();
            let raft_groups = groups.clone();
            grpc = Some(tokio::spawn(async move {
                let r = tonic::transport::Server::builder()
                    .http2_keepalive_interval(Some(ping))
                    .http2_keepalive_timeout(Some(answer))
                    .initial_connection_window_size(Some(router::service::CLUSTER_WINDOW_BYTES))
                    .add_service(svc.core_server())
                    .add_service(svc.admin_server())
                    .add_service(router::cluster::raft::RaftService::new(raft_groups).server())
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true)),
                        async move {
                            let _ = stop.wait_for(|s| *s).await;
                        },
                    )
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "cluster listener failed");
                }
            }));
        }
        if let (true, Some(core), Some(me)) = (cfg.cluster.auto_join, &core, &core_service) {
            let seeds: Vec<String> = peers
                .iter()
                .filter(|(id, _)| *id != node_id)
                .map(|(_, a)| a.clone())
                .collect();
            tasks.push(tokio::spawn(auto_join(
                core.clone(),
                me.address().to_string(),
                seeds,
                rx.clone(),
            )));
        }
        if let Some(core) = &core {
            // Peers reach this node's groups through the listener above.
            core.wait_for_leaders(Duration::from_secs(60)).await?;
        }
        let link = match (&core, &cfg.cluster.core) {
            (Some(c), _) => CoreLink::Local(c.clone()),
            (None, Some(addr)) => {
                // An id drawn at random that another running edge holds
                // is refused by the core: draw again.
                let auto = cfg.cluster.node_id == crate::config::NodeId::Auto;
                let mut draws = 1;
                loop {
                    let instance = auto.then(rand::random::<u64>);
                    match RemoteCore::connect(
                        node_id,
                        instance,
                        addr,
                        Duration::from_secs(30),
                        liveness,
                        domains.clone(),
                        cfg.s2s.enabled,
                    )
                    .await
                    {
                        Ok(r) => {
                            if auto {
                                tracing::info!(
                                    node_id,
                                    "edge id drawn (cluster.node_id = \"auto\")"
                                );
                            }
                            break CoreLink::Remote(r);
                        }
                        Err(e) if auto && draws < 16 && e.is::<crate::remote::IdTaken>() => {
                            tracing::info!(node_id, "edge id held by another edge: drawing again");
                            draws += 1;
                            node_id = cfg
                                .cluster
                                .resolve_node_id()
                                .map_err(|e| anyhow::anyhow!("cluster.node_id: {e}"))?;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            (None, None) => anyhow::bail!("an edge needs cluster.core"),
        };
        let settings = StreamSettings {
            domains: domains.clone(),
            require_tls: cfg.tls.require_starttls,
            tls_available: true,
            registration: cfg.registration.enabled,
            server_features,
            server_caps,
            sm: cfg.sm.enabled,
            sm_location: cfg.sm.location.clone(),
        };
        // A core node takes no clients: its edges do.
        let clients = role != Role::Core;
        let (edge_tls, identity) = if clients {
            let (e, id) = edge_tls(&cfg, &domains)?;
            (Some(e), Some(id))
        } else {
            (None, None)
        };
        // Traces start once this node's id is final (an edge may draw
        // again), before the client listeners open.
        let otel = crate::otel::start(&cfg.tracing, role, node_id, &metrics)?;
        let edge = Edge::new(
            link,
            node_id,
            settings,
            edge_tls,
            edge_limits(&cfg),
            rx.clone(),
            metrics,
        );
        if let (Role::Both, Some(core), Some(api)) = (role, &core, &api) {
            // A single node serves no Admin gRPC; its status comes from
            // the same code in-process.
            let svc = router::service::CoreService::new(
                core.clone(),
                node_id,
                cfg.cluster.listen.clone(),
            );
            api.set_core(core.clone(), svc, domains.clone());
        }
        // Federation (`[s2s]`): made before the admin socket, which lists
        // its streams; its listeners open with the client listeners.
        let s2s = if let (Some(identity), true) = (&identity, cfg.s2s.enabled) {
            let s2s_tls = crate::s2s::tls::S2sTls::new(&cfg.s2s, identity, cfg.tls.allow_tls12)?;
            let mut hosted = domains.clone();
            for d in &domains {
                hosted.extend(core_cfg.muc_service(d));
            }
            hosted.extend(core_cfg.pubsub_services());
            hosted.extend(core_cfg.components.iter().cloned());
            Some(crate::s2s::S2s::new(
                cfg.s2s.clone(),
                hosted,
                edge.core.clone(),
                s2s_tls,
                edge.limits().parser,
                edge.metrics.s2s.clone(),
                fed_rx.clone(),
            ))
        } else {
            None
        };
        let admin_socket = cfg.admin_socket_path();
        // Accounts live in the core: the user commands go to a core node.
        // The socket is there before the client listeners announce
        // themselves, so a command run as soon as they have finds it.
        if let Some(core) = &core {
            tasks.push(crate::admin::serve(
                &admin_socket,
                Some(core.clone()),
                domains.clone(),
                s2s.clone(),
                rx.clone(),
            )?);
        } else if let Some(t) =
            crate::admin::serve_edge(&admin_socket, domains.clone(), s2s.clone(), rx.clone()).await
        {
            // An edge answers `xmppd s2s status`, and tells the other
            // commands to go to a core node.
            tasks.push(t);
        }
        let mut c2s_addr = None;
        if let (true, Some(addr)) = (clients, &cfg.listeners.c2s) {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding c2s listener {addr}"))?;
            c2s_addr = Some(l.local_addr()?);
            tracing::info!(addr = %l.local_addr()?, "client listener (STARTTLS)");
            tasks.push(tokio::spawn(crate::listener::serve(
                l,
                edge.clone(),
                false,
                rx.clone(),
            )));
        }
        let mut direct_tls_addr = None;
        if let (true, Some(addr)) = (clients, &cfg.listeners.c2s_direct_tls) {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding direct TLS listener {addr}"))?;
            direct_tls_addr = Some(l.local_addr()?);
            tracing::info!(addr = %l.local_addr()?, "client listener (direct TLS, XEP-0368)");
            tasks.push(tokio::spawn(crate::listener::serve(
                l,
                edge.clone(),
                true,
                rx.clone(),
            )));
        }
        let ws_settings = Arc::new(crate::ws::WsSettings {
            origins: cfg.websocket.origins.clone(),
            public_url: cfg.websocket.public_url.clone(),
            see_other_uri: cfg.websocket.see_other_uri.clone(),
            domains: domains.clone(),
            bosh: cfg
                .bosh
                .enabled
                .then(|| crate::bosh::Hub::new(cfg.bosh.settings())),
        });
        let mut ws_addrs = [None, None];
        for (i, (addr, tls)) in [
            (&cfg.listeners.websocket, false),
            (&cfg.listeners.websocket_tls, true),
        ]
        .into_iter()
        .enumerate()
        {
            let (true, Some(addr)) = (clients, addr) else {
                continue;
            };
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding WebSocket listener {addr}"))?;
            ws_addrs[i] = Some(l.local_addr()?);
            tracing::info!(
                addr = %l.local_addr()?,
                path = crate::ws::PATH,
                "client listener (WebSocket{}, RFC 7395)",
                if tls { " with TLS" } else { "" }
            );
            if cfg.bosh.enabled {
                tracing::info!(
                    addr = %l.local_addr()?,
                    path = crate::bosh::PATH,
                    "client listener (BOSH{}, XEP-0124 and XEP-0206)",
                    if tls { " with TLS" } else { "" }
                );
            }
            tasks.push(tokio::spawn(crate::ws::serve(
                l,
                edge.clone(),
                tls,
                ws_settings.clone(),
                rx.clone(),
            )));
        }
        let [websocket_addr, websocket_tls_addr] = ws_addrs;
        let (mut s2s_addr, mut s2s_direct_tls_addr) = (None, None);
        if let (Some(api), Some(fed)) = (&api, &s2s) {
            api.set_s2s(fed.clone());
        }
        if let Some(fed) = &s2s {
            for (addr, direct) in [
                (Some(&cfg.s2s.listen), false),
                (cfg.s2s.direct_tls_listen.as_ref(), true),
            ] {
                let Some(addr) = addr else { continue };
                let l = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding server-to-server listener {addr}"))?;
                let bound = l.local_addr()?;
                tracing::info!(addr = %bound, "server-to-server listener{}", if direct { " (direct TLS, XEP-0368)" } else { "" });
                if direct {
                    s2s_direct_tls_addr = Some(bound);
                } else {
                    s2s_addr = Some(bound);
                }
                fed_tasks.push(tokio::spawn(crate::s2s::serve(
                    l,
                    fed.clone(),
                    direct,
                    fed_rx.clone(),
                )));
            }
            // Stanzas for other servers come from this process's core, or
            // from the core nodes over this edge's streams to them.
            match (&core, &edge.core) {
                (Some(c), _) => c
                    .federation()
                    .set(Some(Arc::new(crate::s2s::Outlet(fed.clone())))),
                (None, CoreLink::Remote(r)) => r.set_s2s(fed.clone()),
                (None, CoreLink::Local(_)) => {}
            }
        }
        let mut component_addr = None;
        if clients && !cfg.components.secrets.is_empty() {
            let addr = &cfg.components.listen;
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the component listener {addr}"))?;
            component_addr = Some(l.local_addr()?);
            tracing::info!(addr = %l.local_addr()?, "component listener (XEP-0114)");
            let c = Arc::new(crate::component::Components {
                secrets: cfg.components.secrets.clone(),
                core: edge.core.clone(),
                limits: edge.limits().parser,
                edge: edge.clone(),
            });
            fed_tasks.push(tokio::spawn(crate::component::serve(l, c, fed_rx.clone())));
        }
        http.set_started(edge.core.clone());
        Ok(Server {
            c2s_addr,
            direct_tls_addr,
            websocket_addr,
            websocket_tls_addr,
            cluster_addr,
            http_addr,
            s2s_addr,
            s2s_direct_tls_addr,
            s2s,
            component_addr,
            http,
            admin_socket,
            core,
            edge,
            shutdown: stop_guard.defuse(),
            fed_shutdown: fed_guard.defuse(),
            fed_tasks,
            http_stop: http_guard.defuse(),
            http_task,
            tasks,
            grpc,
            core_service,
            cfg: std::sync::Mutex::new(cfg),
            api,
            domains,
            otel,
        })
    }

    /// Apply what a running node can take from `new` (see
    /// [`crate::reload`]); `set_log` installs a new log filter. An invalid
    /// configuration, or certificates that cannot be read, change nothing.
    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.cfg.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reload(
        &self,
        new: Config,
        set_log: &dyn Fn(&str) -> Result<(), String>,
    ) -> anyhow::Result<Reloaded> {
        use crate::reload::{changed_keys, is_live};
        new.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let old = self.cfg.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let keys = changed_keys(&old, &new);
        let mut out = Reloaded::default();
        // Adding or removing the admin API changes the listener's routes.
        let token_switch = old.admin.token_file.is_some() != new.admin.token_file.is_some();
        for k in &keys {
            if !is_live(k) || (k == "admin.token_file" && token_switch) {
                out.restart.push(k.clone());
            }
        }
        // Everything that can fail first: then all of it is applied.
        let clients = self.c2s_addr.is_some() || self.direct_tls_addr.is_some();
        let (tls, identity) = if clients {
            let (e, id) = edge_tls(&new, &self.domains)?;
            (Some(e), Some(id))
        } else {
            (None, None)
        };
        // Federation presents the same certificate: read again with it.
        let s2s_tls = match (&self.s2s, &identity) {
            (Some(_), Some(identity)) => Some(crate::s2s::tls::S2sTls::new(
                &old.s2s,
                identity,
                new.tls.allow_tls12,
            )?),
            _ => None,
        };
        let token = match (&self.api, &new.admin.token_file) {
            (Some(_), Some(f)) => Some(
                crate::api::read_token(f).map_err(|e| anyhow::anyhow!("admin.token_file: {e}"))?,
            ),
            _ => None,
        };
        if keys.contains("log.level") {
            set_log(&new.log.level).map_err(|e| anyhow::anyhow!("log.level: {e}"))?;
            out.applied.push(format!("log.level = {:?}", new.log.level));
        }
        let mut effective = old.clone();
        effective.log = new.log.clone();
        effective.tls = new.tls.clone();
        effective.registration.enabled = new.registration.enabled;
        if keys.iter().any(|k| k.starts_with("shutdown.")) {
            effective.shutdown = new.shutdown.clone();
            out.applied
                .push("shutdown.* (at the next SIGTERM)".to_string());
        }
        // Not live: the login throttle's and the core's limits stay.
        let kept = &old.limits;
        effective.limits = LimitsConfig {
            max_roster_items: kept.max_roster_items,
            max_vcard_bytes: kept.max_vcard_bytes,
            login_free_failures: kept.login_free_failures,
            login_delay_secs: kept.login_delay_secs,
            login_max_delay_secs: kept.login_max_delay_secs,
            login_forget_secs: kept.login_forget_secs,
            ..new.limits.clone()
        };
        if tls.is_none() {
            for k in keys
                .iter()
                .filter(|k| is_live(k) && (k.starts_with("limits.") || k.starts_with("tls.")))
            {
                out.applied
                    .push(format!("{k} (this node has no client listeners)"));
            }
        }
        if let Some(tls) = tls {
            let mut settings = (*self.edge.settings()).clone();
            settings.require_tls = new.tls.require_starttls;
            settings.registration = new.registration.enabled;
            self.edge
                .reconfigure(Some(settings), Some(tls), Some(edge_limits(&effective)));
            out.applied
                .push("tls: certificate and key read again".to_string());
            if let (Some(fed), Some(t)) = (&self.s2s, s2s_tls) {
                fed.set_tls(t);
                out.applied
                    .push("tls: server-to-server streams use it from now on".to_string());
            }
            for k in keys
                .iter()
                .filter(|k| k.starts_with("limits.") && is_live(k))
            {
                out.applied.push(format!("{k} (new connections)"));
            }
            if keys.contains("tls.require_starttls") {
                out.applied.push("tls.require_starttls".to_string());
            }
        }
        if keys.contains("registration.enabled") {
            if let Some(core) = &self.core {
                core.config().registration.set(new.registration.enabled);
            }
            out.applied.push(format!(
                "registration.enabled = {}",
                new.registration.enabled
            ));
        }
        if let (Some(api), Some(t)) = (&self.api, token) {
            api.set_token(t);
            effective.admin = new.admin.clone();
            out.applied.push("admin token read again".to_string());
        }
        *self.cfg.lock().unwrap_or_else(|p| p.into_inner()) = effective;
        Ok(out)
    }

    /// Graceful stop: every stream gets `<system-shutdown/>`, the shards
    /// finish what they hold (offline messages are stored), the store is
    /// flushed.
    /// Resolves when this core node was removed from its cluster and has
    /// handed over its shards (`xmppd cluster remove-node`); never for a
    /// node that is not a core.
    pub async fn left(&self) {
        match &self.core {
            Some(core) => {
                let mut rx = core.left();
                if rx.wait_for(|l| *l).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Resolves when an operator asks the node to drain and stop
    /// (`POST /api/v1/drain`); never without the admin API.
    pub async fn drain_requested(&self) {
        match &self.api {
            Some(api) => {
                let mut rx = api.drain_requested();
                if rx.wait_for(|d| *d).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Whether this node takes client connections.
    pub fn has_clients(&self) -> bool {
        self.c2s_addr.is_some() || self.direct_tls_addr.is_some()
    }

    /// Drain (`[shutdown]`): not ready, no new connections, the open ones
    /// closed one by one over `shutdown.drain_secs`; resolves when the last
    /// is gone, or a little after the window (then `stop` ends the rest).
    pub async fn drain(&self) {
        let (window, redirect) = {
            let c = self.cfg.lock().unwrap_or_else(|p| p.into_inner());
            (
                Duration::from_secs(c.shutdown.drain_secs),
                c.shutdown
                    .see_other_host
                    .as_deref()
                    .map(crate::config::without_final_dot),
            )
        };
        self.http.set_stopping();
        tracing::info!(
            connections = self.edge.connections(),
            secs = window.as_secs(),
            "draining: no new connections; open streams close over the window"
        );
        self.edge.start_drain(window, redirect);
        let deadline = tokio::time::Instant::now() + window + Duration::from_secs(2);
        while self.edge.connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(left = self.edge.connections(), "draining done");
    }

    /// The `[shutdown]` drain time in force.
    pub fn drain_secs(&self) -> u64 {
        self.cfg
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shutdown
            .drain_secs
    }

    /// Resolves when a core node refused this edge's random id after the
    /// start (another edge drew it): the process must start again.
    pub async fn edge_id_taken(&self) {
        match &self.edge.core {
            CoreLink::Remote(r) => {
                let mut rx = r.id_taken();
                if rx.wait_for(|t| *t).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            CoreLink::Local(_) => std::future::pending().await,
        }
    }

    pub async fn stop(self) {
        self.http.set_stopping();
        // A core node with edges: first process what its shards hold and
        // let the deliveries it produced reach the edges, then close the
        // streams; what the edges sent after that is not confirmed, and
        // they send it to the shards' new leaders.
        if let (Some(svc), Some(core)) = (&self.core_service, &self.core) {
            core.shutdown().await;
            svc.flush(Duration::from_secs(2)).await;
        }
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // The clients are gone: what their ends sent to other servers
        // (unavailable presence) goes out before the streams close, for
        // at most a few seconds; the listener stays open meanwhile, for
        // the peers' dialback callbacks.
        if let Some(fed) = &self.s2s {
            let limit = tokio::time::Instant::now() + Duration::from_secs(5);
            tokio::time::sleep(Duration::from_millis(200)).await;
            while !fed.drained() && tokio::time::Instant::now() < limit {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let _ = self.fed_shutdown.send(true);
        for t in self.fed_tasks {
            let _ = t.await;
        }
        // Edges' forward streams last as long as the edges: give them a
        // moment to go, then stop serving.
        if let Some(g) = self.grpc {
            let abort = g.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), g)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let Some(core) = self.core {
            if self.core_service.is_none() {
                core.shutdown().await;
            }
            let _ = std::fs::remove_file(&self.admin_socket);
        }
        if let Some(t) = self.otel {
            // Sends the spans still pending (a blocking call).
            let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        }
        let _ = self.http_stop.send(true);
        if let Some(t) = self.http_task {
            let _ = t.await;
        }
    }
}

/// Sends the shutdown signal when dropped armed: a start that fails half
/// way stops the tasks it had started (the HTTP listener) instead of
/// leaving them bound.
struct StopOnError(Option<watch::Sender<bool>>);

impl StopOnError {
    fn defuse(&mut self) -> watch::Sender<bool> {
        match self.0.take() {
            Some(tx) => tx,
            None => watch::channel(false).0,
        }
    }
}

impl Drop for StopOnError {
    fn drop(&mut self) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(true);
        }
    }
}

/// `cluster.auto_join`: while this core node is not a member (a new pod
/// of a scaled-up StatefulSet, or a removed node started again), ask the
/// seeds in turn to add it at `addr`, every 2 s. Ends once it is a member:
/// a node removed while it runs is not added back.
async fn auto_join(
    core: Core,
    addr: String,
    seeds: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    use proto::cluster::pb;
    let me = core.config().node_id;
    loop {
        if core.members().contains_key(&me) && !core.is_left(me) {
            return;
        }
        for seed in &seeds {
            let Ok(mut admin) =
                pb::admin_client::AdminClient::connect(format!("http://{seed}")).await
            else {
                continue;
            };
            let req = pb::AddNodeRequest {
                id: me,
                address: addr.clone(),
            };
            match admin.add_node(req).await {
                Ok(r) => {
                    tracing::info!(node = me, via = %seed, members = ?r.into_inner().members, "joined the cluster (auto_join)");
                    return;
                }
                Err(e) => {
                    tracing::info!(node = me, via = %seed, error = %proto::cluster::ClusterError::from(e), "not added yet (auto_join)")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
