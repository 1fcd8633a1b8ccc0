//! [`Core`]: the edge's one interface to the core tier. In one process the
//! calls become messages on the shard tasks' channels; in a cluster the same
//! messages travel over gRPC to the shard's leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proto::cluster::pb;
use proto::stanza::Stanza;
use proto::{BareJid, FullJid};
use tokio::sync::{mpsc, oneshot};

use crate::Store;
use crate::accounts::{AccountError, AccountOp, Accounts};
use crate::cluster::raft::Groups;
use crate::cluster::{Cluster, ShardGroup};
use crate::config::CoreConfig;
use crate::error::{BindError, CoreError};
use crate::modules::Env;
use crate::modules::registry::registry;
use crate::session::{Confirm, SessionSink};
use crate::shard::{self, ShardHandle, ShardMsg, Shared};

/// A bound session, as operators list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub jid: FullJid,
    /// The edge node whose connection holds it; `None` for a connection
    /// of the core's own process.
    pub edge: Option<u64>,
    /// It sent available presence (RFC 6121 §4.2).
    pub available: bool,
    pub priority: i32,
}

/// The disco features (XEP-0030) of a server with this configuration, for
/// the stream features of an edge that has no core in its process.
pub fn server_features(cfg: &CoreConfig) -> Result<Vec<&'static str>, CoreError> {
    Ok(registry(cfg)
        .map_err(CoreError::Registry)?
        .server_features())
}

/// The `<c/>` stream feature with the entity capabilities (XEP-0115 §6.3)
/// of a server with this configuration.
pub fn server_caps(cfg: &CoreConfig) -> Result<String, CoreError> {
    let features = server_features(cfg)?;
    Ok(crate::modules::disco::server_caps(&features))
}

/// The core, cheap to clone.
#[derive(Clone)]
pub struct Core {
    pub(crate) shared: Arc<Shared>,
}

/// A leader not acknowledged by a majority for this long (20 heartbeats)
/// has lost it, as far as readiness and metrics tell.
const QUORUM_LOST_MS: u64 = 2_000;

impl Core {
    /// Start the shards on the current tokio runtime: each shard's Raft
    /// group (created on first start, reloaded from the store after), then
    /// its task. Returns once every group has a leader. With no peers
    /// configured this node is the only member of every group.
    pub async fn start(cfg: CoreConfig, store: Store) -> Result<Core, CoreError> {
        let core = Core::start_with(cfg, store, &Groups::default()).await?;
        if let Err(e) = core.wait_for_leaders(Duration::from_secs(30)).await {
            // Its tasks let go of the store.
            core.shutdown().await;
            return Err(e);
        }
        Ok(core)
    }

    /// [`Core::start`] for a node with peers: the shard groups are added
    /// to `groups` for the caller to serve to the other core nodes
    /// (`raft::RaftService`); then [`Core::wait_for_leaders`].
    pub async fn start_with(
        cfg: CoreConfig,
        store: Store,
        groups: &Groups,
    ) -> Result<Core, CoreError> {
        let registry = registry(&cfg).map_err(CoreError::Registry)?;
        let cluster = Arc::new(Cluster::open(cfg.clone(), &store, groups).await?);
        let n = cluster.shard_count;
        let mut handles = Vec::with_capacity(n);
        let mut receivers = Vec::with_capacity(n);
        for _ in 0..n {
            let (etx, erx) = mpsc::channel(4096);
            let (itx, irx) = mpsc::unbounded_channel();
            handles.push(ShardHandle {
                edge: etx,
                internal: itx,
            });
            receivers.push((erx, irx));
        }
        let accounts = Accounts::new(store.clone(), cfg.domains.clone(), cfg.min_password_len);
        let shared = Arc::new(Shared {
            env: Env::new(cfg, store, accounts, registry),
            cluster,
            shards: handles,
        });
        for (i, (erx, irx)) in receivers.into_iter().enumerate() {
            tokio::spawn(shard::run(i, shared.clone(), erx, irx));
        }
        // Sessions that waited for a resumption (XEP-0198) too long end.
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                for h in &shared.shards {
                    if h.internal.send(ShardMsg::SmSweep).is_err() {
                        return;
                    }
                }
            }
        });
        let cluster = &shared.cluster;
        cluster
            .relays
            .set_reroute(Arc::new(Rerouter(Arc::downgrade(&shared))));
        if cluster.clustered() {
            for (i, r) in cluster.rafts.iter().enumerate() {
                let tx = shared.shards[i].internal.clone();
                tokio::spawn(crate::cluster::watch_leadership(
                    r.clone(),
                    cluster.cfg.node_id,
                    move || tx.send(ShardMsg::Demoted).is_ok(),
                ));
            }
            cluster.spawn_tasks();
        }
        Ok(Core { shared })
    }

    /// The shards' commit latency histogram, to register with a
    /// Prometheus registry.
    pub fn commit_latency(&self) -> prometheus::HistogramVec {
        self.shared.cluster.commit_latency.clone()
    }

    /// Messages waiting in each shard's queue from the edges (metrics).
    pub fn shard_queue_depths(&self) -> Vec<usize> {
        self.shared
            .shards
            .iter()
            .map(|h| h.edge.max_capacity() - h.edge.capacity())
            .collect()
    }

    /// RocksDB's figures (metrics).
    pub fn engine_stats(&self) -> storage::EngineStats {
        self.shared.env.store.0.engine_stats()
    }

    pub fn config(&self) -> &CoreConfig {
        &self.shared.env.cfg
    }

    pub fn accounts(&self) -> &Accounts {
        &self.shared.env.accounts
    }

    /// The disco features of the server, for the edge's stream features.
    pub fn server_features(&self) -> Vec<&'static str> {
        self.shared.env.registry.server_features()
    }

    fn shard(&self, bare: &str) -> &ShardHandle {
        &self.shared.shards[self.shared.shard_index(bare)]
    }

    /// The shard of `bare`, when this node serves it (in a cluster, after
    /// waiting out an election); `NotLeader` naming the node that does.
    async fn served_here(&self, bare: &str) -> Result<usize, BindError> {
        let i = self.shared.shard_index(bare);
        if self.shared.cluster.clustered() {
            self.shared.cluster.wait_leader(i).await;
        }
        if self.shared.cluster.elsewhere(i).is_some() {
            let (leader, addr) = self.shared.cluster.leader(i);
            return Err(BindError::NotLeader { leader, addr });
        }
        Ok(i)
    }

    /// Bind a resource (RFC 6120 §7). An existing session with the same full
    /// JID is replaced: it gets a `<conflict/>` stream error.
    pub async fn bind(&self, jid: FullJid, sink: SessionSink) -> Result<(), BindError> {
        let i = self.served_here(jid.bare_str()).await?;
        let (reply, rx) = oneshot::channel();
        let msg = ShardMsg::Bind { jid, sink, reply };
        self.shared.shards[i]
            .edge
            .send(msg)
            .await
            .map_err(|_| BindError::ShuttingDown)?;
        rx.await.map_err(|_| BindError::ShuttingDown)?
    }

    /// The session ended (cleanly or not): contacts see it go unavailable.
    /// In a cluster, `NotLeader` when another node leads the user's shard
    /// (the session is served there).
    pub async fn unbind(&self, jid: FullJid, conn_id: u64) -> Result<(), BindError> {
        let i = self.served_here(jid.bare_str()).await?;
        self.shared.shards[i]
            .edge
            .send(ShardMsg::Unbind { jid, conn_id })
            .await
            .map_err(|_| BindError::ShuttingDown)
    }

    /// Run `f` on shard `i` and wait for its answer.
    async fn on_shard<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce(&mut crate::modules::Ctx<'_>) -> T + Send + 'static,
    ) -> Result<T, BindError> {
        let (tx, rx) = oneshot::channel();
        let msg = ShardMsg::Exec(Box::new(move |ctx| {
            let _ = tx.send(f(ctx));
        }));
        self.shared.shards[i]
            .edge
            .send(msg)
            .await
            .map_err(|_| BindError::ShuttingDown)?;
        rx.await.map_err(|_| BindError::ShuttingDown)
    }

    /// XEP-0198 §3: stream management for the session `jid` bound
    /// through connection `conn_id`. False if there is no such session
    /// or it has it already.
    pub async fn sm_enable(
        &self,
        jid: FullJid,
        conn_id: u64,
        e: crate::modules::sm::SmEnable,
    ) -> Result<bool, BindError> {
        let i = self.served_here(jid.bare_str()).await?;
        self.on_shard(i, move |ctx| {
            crate::modules::sm::enable(ctx, &jid, conn_id, e)
        })
        .await
    }

    /// The client acknowledged `h` stanzas; the edge handled `handled` of
    /// its stanzas.
    pub async fn sm_ack(
        &self,
        jid: FullJid,
        conn_id: u64,
        h: u32,
        handled: u32,
    ) -> Result<(), BindError> {
        let i = self.served_here(jid.bare_str()).await?;
        self.on_shard(i, move |ctx| {
            crate::modules::sm::ack(ctx, &jid, conn_id, h, handled)
        })
        .await
    }

    /// The connection of a session is gone: a resumable one waits for
    /// its client (XEP-0198 §5), any other ends.
    pub async fn sm_detach(
        &self,
        jid: FullJid,
        conn_id: u64,
        handled: u32,
    ) -> Result<(), BindError> {
        let i = self.served_here(jid.bare_str()).await?;
        self.on_shard(i, move |ctx| {
            crate::modules::sm::detach(ctx, &jid, conn_id, Some(handled))
        })
        .await
    }

    /// XEP-0198 §5: resume `user`'s session `previd` on `sink`'s
    /// connection, its client having handled `h` stanzas. The session's
    /// full JID, the count of the client's stanzas handled, and whether
    /// it has Message Carbons on.
    pub async fn sm_resume(
        &self,
        user: BareJid,
        previd: String,
        h: u32,
        sink: SessionSink,
    ) -> Result<Result<(FullJid, u32, bool), crate::session::ResumeRefused>, BindError> {
        let i = self.served_here(user.as_str()).await?;
        self.on_shard(i, move |ctx| {
            crate::modules::sm::resume(ctx, &user, &previd, h, sink)
        })
        .await
    }

    /// Bytes the edge answered a session's client with itself, sent
    /// through the session so that stream management counts them.
    pub async fn sm_echo(
        &self,
        jid: FullJid,
        conn_id: u64,
        bytes: bytes::Bytes,
    ) -> Result<(), BindError> {
        let i = self.served_here(jid.bare_str()).await?;
        self.on_shard(i, move |ctx| {
            crate::modules::sm::echo(ctx, &jid, conn_id, bytes)
        })
        .await
    }

    /// A session bound at a core node that died, if this node leads the
    /// user's shard: `true` when the shard has it (it was replicated, and
    /// goes on); otherwise the contacts hear that the resource is
    /// unavailable. `NotLeader` if another node leads it.
    pub async fn session_lost(&self, jid: FullJid, session: u64) -> Result<bool, BindError> {
        let i = self.served_here(jid.bare_str()).await?;
        let (reply, rx) = oneshot::channel();
        self.shared.shards[i]
            .edge
            .send(ShardMsg::Lost {
                jid,
                session,
                reply,
            })
            .await
            .map_err(|_| BindError::ShuttingDown)?;
        rx.await.map_err(|_| BindError::ShuttingDown)
    }

    /// Edge `edge` opened its stream to this node (`link`).
    pub fn edge_up(&self, edge: u64, link: Arc<crate::session::EdgeLink>) {
        self.shared
            .cluster
            .edge_links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(edge, link);
    }

    /// Edge `edge`'s stream `link` ended.
    pub fn edge_down(&self, edge: u64, link: &Arc<crate::session::EdgeLink>) {
        let mut m = self
            .shared
            .cluster
            .edge_links
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if m.get(&edge).is_some_and(|l| Arc::ptr_eq(l, link)) {
            m.remove(&edge);
        }
    }

    /// Where stanzas for remote domains go (the edge sets the outlet of
    /// its server-to-server streams here).
    pub fn federation(&self) -> &crate::federation::Federation {
        &self.shared.env.federation
    }

    /// Whether `domain` is this server's (served, or one of its services).
    pub fn hosts(&self, domain: &str) -> bool {
        self.shared.env.cfg.hosts(domain)
    }

    /// A stanza from another server (its 'from' checked by the
    /// server-to-server stream), or an error for one of this server's
    /// users answering what could not be sent there: inbound processing
    /// at the shard of its 'to' (RFC 6121 §8.5).
    pub fn route_inbound(&self, stanza: Stanza) {
        self.shared.route(stanza);
    }

    /// Stanzas for other servers, sent (again) through the federation.
    pub fn to_remote(&self, stanzas: Vec<Stanza>) {
        for s in stanzas {
            self.shared.to_remote(s);
        }
    }

    /// [`Core::route_inbound`] for a stream that can wait: through the
    /// shard's bounded queue, so that a peer server or component that
    /// sends faster than the shard handles is slowed down (its socket is
    /// read no faster) rather than queued for without bound.
    pub async fn route_inbound_wait(&self, stanza: Stanza) -> Result<(), CoreError> {
        let Some(to) = &stanza.to else { return Ok(()) };
        let cfg = &self.shared.env.cfg;
        let domain = to.domain();
        let (key, keyed) = if cfg.is_component(domain) {
            (domain.to_string(), true)
        } else if cfg.hosts(domain) {
            (to.bare_str().to_string(), false)
        } else {
            self.shared.to_remote(stanza);
            return Ok(());
        };
        let i = self.shared.shard_index(&key);
        if self.shared.cluster.clustered() {
            self.shared.cluster.wait_leader(i).await;
        }
        if self.shared.cluster.elsewhere(i).is_some() {
            self.shared.route(stanza);
            return Ok(());
        }
        let msg = if keyed {
            ShardMsg::Keyed(key, Box::new(stanza))
        } else {
            ShardMsg::Inbound(Box::new(stanza))
        };
        self.shared.shards[i]
            .edge
            .send(msg)
            .await
            .map_err(|_| CoreError::ShuttingDown)
    }

    /// An external component (XEP-0114) for `domain` is connected; `sink`
    /// reaches it. A component already connected for it is told to close
    /// (`<conflict/>`, RFC 6120 §4.9.3.3).
    pub async fn bind_component(&self, domain: String, sink: SessionSink) -> Result<(), CoreError> {
        if !self.shared.env.cfg.is_component(&domain) {
            return Err(CoreError::NotComponent(domain));
        }
        self.component_served_here(&domain).await?;
        let key = domain.clone();
        self.exec(
            &key,
            Box::new(move |ctx| {
                let conn = sink.conn_id();
                if let Some(old) = ctx.st.components.insert(domain, sink)
                    && old.conn_id() != conn
                {
                    old.send(crate::Outbound::Close(
                        proto::error::StreamCondition::Conflict,
                        Some("replaced by a new connection of the component".into()),
                    ));
                }
            }),
        )
        .await
    }

    /// In a cluster, `NotLeader` unless this node leads the shard of
    /// the component's domain (which holds its connection).
    async fn component_served_here(&self, domain: &str) -> Result<(), CoreError> {
        match self.served_here(domain).await {
            Ok(_) => Ok(()),
            Err(BindError::NotLeader { leader, addr }) => {
                Err(CoreError::NotLeader { leader, addr })
            }
            Err(_) => Err(CoreError::ShuttingDown),
        }
    }

    /// The component's connection `conn_id` ended.
    pub async fn unbind_component(&self, domain: String, conn_id: u64) -> Result<(), CoreError> {
        self.component_served_here(&domain).await?;
        let key = domain.clone();
        self.exec(
            &key,
            Box::new(move |ctx| {
                if ctx
                    .st
                    .components
                    .get(&domain)
                    .is_some_and(|s| s.conn_id() == conn_id)
                {
                    ctx.st.components.remove(&domain);
                }
            }),
        )
        .await
    }

    /// Route a stanza from a bound session; `from` is already stamped with
    /// the session's full JID. Waits while the shard's queue is full.
    pub async fn route(&self, stanza: Stanza) -> Result<(), CoreError> {
        self.route_hop(stanza, None, 0).await
    }

    /// [`Core::route`] for a remote edge's envelope: `confirm` is told
    /// once the shard has processed it (or it was handed to the node that
    /// leads the shard).
    pub async fn route_confirmed(
        &self,
        stanza: Stanza,
        confirm: Option<Confirm>,
    ) -> Result<(), CoreError> {
        self.route_hop(stanza, confirm, 0).await
    }

    async fn route_hop(
        &self,
        stanza: Stanza,
        confirm: Option<Confirm>,
        hops: u32,
    ) -> Result<(), CoreError> {
        let Some(from) = &stanza.from else {
            if let Some(c) = confirm {
                c.done();
            }
            return Ok(());
        };
        let target = shard::first_hop(&stanza, from.bare_str(), &self.shared.env.cfg.domains);
        let i = self.shared.shard_index(target);
        if self.shared.cluster.clustered() {
            // During an election, wait for its outcome rather than serve
            // the shard from a replica that may not win it.
            self.shared.cluster.wait_leader(i).await;
        }
        if let Some(addr) = self.shared.cluster.elsewhere(i) {
            // An edge that waits for an answer sends it to the leader
            // itself (and keeps it until the leader has processed it);
            // otherwise the leader gets it from here.
            match confirm {
                Some(c) => c.redirect(),
                None => {
                    let mut env = proto::cluster::envelope::to_envelope(i as u32, &stanza);
                    env.hops = hops;
                    self.shared.cluster.relays.send(&addr, env);
                }
            }
            return Ok(());
        }
        let h = self.shared.shards[i].clone();
        if hops > 0 && self.shared.cluster.clustered() {
            // Relayed from another core node, which waits for its handling:
            // through the queue that a barrier can follow.
            crate::cluster::relay::touched(i);
            return h
                .internal
                .send(ShardMsg::FromClient(Box::new(stanza), confirm))
                .map_err(|_| CoreError::ShuttingDown);
        }
        h.edge
            .send(ShardMsg::FromClient(Box::new(stanza), confirm))
            .await
            .map_err(|_| CoreError::ShuttingDown)
    }

    /// Run `f` once what `r`'s scope handed on was handled
    /// ([`Shared::when_handled`]).
    pub(crate) fn when_handled(
        &self,
        r: crate::cluster::relay::Receipts,
        f: impl FnOnce() + Send + 'static,
    ) {
        self.shared.when_handled(r, f);
    }

    /// Take relayed envelopes in order (handled here or relayed on):
    /// whether this node took them all (false: it is stopping), and what
    /// waiting for their handling waits on, barriers included.
    pub(crate) async fn take_relayed(
        &self,
        envs: Vec<pb::Envelope>,
    ) -> (bool, crate::cluster::relay::Receipts) {
        let (ok, mut r) = crate::cluster::relay::collect_async(async {
            for e in envs {
                if self.relayed_envelope(e).await.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
        self.shared.barriers(&mut r);
        (ok, r)
    }

    /// An envelope another core node relayed here, or one of this node's
    /// relays that it takes back (its stream failed and this node now
    /// leads the shard). A bad envelope is dropped and logged.
    pub(crate) async fn relayed_envelope(&self, e: pb::Envelope) -> Result<(), CoreError> {
        let (inbound, hops) = (e.inbound, e.hops);
        let key = e.route_key.clone();
        let interest = e.interest.clone();
        let recipients: Vec<proto::Jid> = e
            .recipients
            .iter()
            .filter_map(|j| proto::Jid::parse(j).ok())
            .collect();
        match proto::cluster::envelope::from_envelope(e) {
            Ok((_, mut st)) => {
                let _span = crate::trace::hop(&mut st, "core relay", 0);
                self.relayed(st, inbound, hops, key, recipients, interest)
                    .await
            }
            Err(e) => {
                tracing::warn!(error = %e, "bad relayed envelope dropped");
                Ok(())
            }
        }
    }

    /// A stanza another core node relayed here (`Core.Relay`): processed
    /// here if this node leads its shard, relayed on otherwise.
    pub async fn relayed(
        &self,
        stanza: Stanza,
        inbound: bool,
        hops: u32,
        route_key: Option<String>,
        recipients: Vec<proto::Jid>,
        interest: Option<String>,
    ) -> Result<(), CoreError> {
        if !recipients.is_empty() {
            self.shared.notify(stanza, recipients, interest, hops);
            return Ok(());
        }
        if let Some(key) = route_key {
            self.shared.send_internal_hop(
                &key,
                ShardMsg::Keyed(key.clone(), Box::new(stanza)),
                hops,
            );
            return Ok(());
        }
        if inbound {
            let Some(to) = &stanza.to else { return Ok(()) };
            let bare = to.bare_str().to_string();
            self.shared
                .send_internal_hop(&bare, ShardMsg::Inbound(Box::new(stanza)), hops);
            return Ok(());
        }
        self.route_hop(stanza, None, hops + 1).await
    }

    /// Run `f` on the shard of `bare` and wait for it to be handled.
    pub(crate) async fn exec(
        &self,
        bare: &str,
        f: Box<dyn FnOnce(&mut crate::modules::Ctx<'_>) + Send>,
    ) -> Result<(), CoreError> {
        self.shard(bare)
            .edge
            .send(ShardMsg::Exec(f))
            .await
            .map_err(|_| CoreError::ShuttingDown)
    }

    /// Register an account, committed through the user's shard.
    pub async fn add_account(&self, user: &BareJid, password: &str) -> Result<(), AccountError> {
        // SCRAM derivation is slow on purpose: do it here, not in the shard.
        let creds = self.shared.env.accounts.prepare(user, password)?;
        self.account_op(user, AccountOp::Add(creds), 0).await
    }

    /// Change an account's password, committed through the user's shard.
    pub async fn set_password(&self, user: &BareJid, password: &str) -> Result<(), AccountError> {
        let creds = self.shared.env.accounts.prepare(user, password)?;
        self.account_op(user, AccountOp::SetCredentials(creds), 0)
            .await
    }

    /// Delete an account: its data is removed through the user's shard,
    /// and once that is committed its sessions are closed.
    pub async fn delete_account(&self, user: &BareJid) -> Result<(), CoreError> {
        Ok(self.account_op(user, AccountOp::Delete, 0).await?)
    }

    /// Make an account change at the leader of the user's shard: here,
    /// or handed on to the node that leads it (`hops` times already).
    pub async fn account_op(
        &self,
        user: &BareJid,
        op: AccountOp,
        hops: u32,
    ) -> Result<(), AccountError> {
        let i = self.shared.shard_index(user.as_str());
        let mut tries = 0;
        loop {
            if self.shared.cluster.clustered() {
                self.shared.cluster.wait_leader(i).await;
                if let Some(addr) = self.shared.cluster.elsewhere(i) {
                    if hops >= crate::cluster::MAX_HOPS {
                        return Err(AccountError::NotCommitted(
                            "the shard's leader moved too often".into(),
                        ));
                    }
                    return crate::cluster::admin_client::forward_account(
                        &addr,
                        user,
                        &op,
                        hops + 1,
                    )
                    .await;
                }
            }
            let result = self.account_change_here(user, op.clone()).await;
            tries += 1;
            // Not committed, typically because the lead moved meanwhile (a
            // hand-over; this node's view of the leader may lag): again, at
            // whichever node leads now. The entry may have been committed
            // all the same: an account found with these very credentials,
            // or gone when it was to be deleted, was this change.
            match (&result, &op) {
                (Err(AccountError::NotCommitted(_)), _)
                    if self.shared.cluster.clustered() && tries < 4 =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                (Err(AccountError::Exists(_)), AccountOp::Add(creds)) if tries > 1 => {
                    return match self.shared.env.accounts.credentials(user) {
                        Ok(Some(c)) if c == *creds => Ok(()),
                        _ => result,
                    };
                }
                (Err(AccountError::NoSuchUser(_)), AccountOp::Delete) if tries > 1 => {
                    return Ok(());
                }
                _ => return result,
            }
        }
    }

    /// [`Core::account_op`] at this node, the shard's leader.
    async fn account_change_here(&self, user: &BareJid, op: AccountOp) -> Result<(), AccountError> {
        let u = user.clone();
        match op {
            AccountOp::Add(creds) => {
                self.account_change(user, move |ctx| {
                    let sh = ctx.env;
                    sh.accounts.plan_add(&mut ctx.writes, &u, &creds)
                })
                .await
            }
            AccountOp::SetCredentials(creds) => {
                self.account_change(user, move |ctx| {
                    let sh = ctx.env;
                    sh.accounts
                        .plan_set_credentials(&mut ctx.writes, &u, &creds)
                })
                .await
            }
            AccountOp::Delete => {
                self.account_change(user, move |ctx| {
                    let sh = ctx.env;
                    sh.accounts.plan_delete(&mut ctx.writes, &u)?;
                    // Contacts forget the account's subscriptions (sent once
                    // the deletion is committed).
                    crate::modules::subscription::cancel_all(ctx, &u);
                    if let Some(gone) = ctx.st.remove_user(&u) {
                        for s in gone.sessions {
                            ctx.send(
                                &s.sink,
                                crate::Outbound::Close(
                                    proto::error::StreamCondition::NotAuthorized,
                                    Some("account deleted".into()),
                                ),
                            );
                        }
                    }
                    Ok(())
                })
                .await
            }
        }
    }

    /// In a cluster, the leader of the shard of `bare` (and its address)
    /// when that is another node.
    pub fn led_elsewhere(&self, bare: &str) -> Option<(Option<u64>, Option<String>)> {
        let i = self.shared.shard_index(bare);
        self.shared.cluster.elsewhere(i)?;
        Some(self.shared.cluster.leader(i))
    }

    /// The accounts (of `domain`, or all), across the cluster: each core
    /// node lists those in the shards it leads; for a shard whose leader
    /// does not answer, this node's replica (if it has one) stands in.
    pub async fn list_users(&self, domain: Option<&str>) -> Result<Vec<BareJid>, AccountError> {
        let sh = &self.shared;
        if !sh.cluster.clustered() {
            return sh.env.accounts.list(domain);
        }
        let me = sh.env.cfg.node_id;
        let mut answered = std::collections::BTreeSet::from([me]);
        let mut all = Vec::new();
        for (id, addr) in sh.cluster.members() {
            if id == me {
                continue;
            }
            match crate::cluster::admin_client::list_users_at(&addr, domain).await {
                Ok(users) => {
                    answered.insert(id);
                    all.extend(users);
                }
                Err(e) => tracing::debug!(node = id, error = %e, "a member did not list its users"),
            }
        }
        let here: Vec<bool> = (0..sh.shards.len())
            .map(|i| match sh.cluster.leader(i).0 {
                Some(l) if answered.contains(&l) => l == me,
                _ => sh.cluster.holds_replica(i),
            })
            .collect();
        all.extend(self.users_where(domain, &here)?);
        all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        all.dedup_by(|a, b| a.as_str() == b.as_str());
        Ok(all)
    }

    /// The accounts in the shards this node leads.
    pub fn led_users(&self, domain: Option<&str>) -> Result<Vec<BareJid>, AccountError> {
        let me = self.shared.env.cfg.node_id;
        let led: Vec<bool> = (0..self.shared.shards.len())
            .map(|i| self.shared.cluster.leader(i).0 == Some(me))
            .collect();
        self.users_where(domain, &led)
    }

    /// The accounts in this node's store of the shards marked in `shards`.
    fn users_where(
        &self,
        domain: Option<&str>,
        shards: &[bool],
    ) -> Result<Vec<BareJid>, AccountError> {
        Ok(self
            .shared
            .env
            .accounts
            .list(domain)?
            .into_iter()
            .filter(|u| shards[self.shared.shard_index(u.as_str())])
            .collect())
    }

    /// Run `plan` on the shard of `user` and wait until what it planned is
    /// committed (or for its error).
    async fn account_change(
        &self,
        user: &BareJid,
        plan: impl FnOnce(&mut crate::modules::Ctx<'_>) -> Result<(), AccountError> + Send + 'static,
    ) -> Result<(), AccountError> {
        let (tx, rx) = oneshot::channel();
        let f = Box::new(move |ctx: &mut crate::modules::Ctx<'_>| match plan(ctx) {
            Ok(()) => ctx.after_commit(move |err| {
                let _ = tx.send(match err {
                    None => Ok(()),
                    Some(e) => Err(AccountError::NotCommitted(e.to_string())),
                });
            }),
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        });
        self.exec(user.as_str(), f)
            .await
            .map_err(|e| AccountError::NotCommitted(e.to_string()))?;
        rx.await
            .map_err(|_| AccountError::NotCommitted("the shard did not commit it".into()))?
    }

    /// The sessions bound at the shards this node leads (all shards of a
    /// single node), of one user or all, sorted by JID.
    pub async fn led_sessions(&self, user: Option<&BareJid>) -> Vec<SessionInfo> {
        let sh = &self.shared;
        let me = sh.env.cfg.node_id;
        let mut out = Vec::new();
        for (i, h) in sh.shards.iter().enumerate() {
            if user.is_some_and(|u| sh.shard_index(u.as_str()) != i) {
                continue;
            }
            if sh.cluster.clustered() && sh.cluster.leader(i).0 != Some(me) {
                continue;
            }
            let (reply, rx) = oneshot::channel();
            let msg = ShardMsg::Sessions {
                user: user.cloned(),
                reply,
            };
            if h.edge.send(msg).await.is_ok() {
                out.extend(rx.await.unwrap_or_default());
            }
        }
        out.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
        out
    }

    /// The sessions bound in the whole cluster (of one user or all),
    /// sorted by JID: each core node lists those of the shards it leads.
    /// A node that does not answer leaves its sessions out; the error
    /// says so when that is every other node.
    pub async fn list_sessions(&self, user: Option<&BareJid>) -> Vec<SessionInfo> {
        let sh = &self.shared;
        let mut all = self.led_sessions(user).await;
        if sh.cluster.clustered() {
            let me = sh.env.cfg.node_id;
            for (id, addr) in sh.cluster.members() {
                if id == me {
                    continue;
                }
                match crate::cluster::admin_client::list_sessions_at(&addr, user).await {
                    Ok(list) => all.extend(list),
                    Err(e) => {
                        tracing::debug!(node = id, error = %e, "a member did not list its sessions")
                    }
                }
            }
            all.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
            all.dedup_by(|a, b| a.jid == b.jid);
        }
        all
    }

    /// End the stream of the session `jid` with `<policy-violation/>`,
    /// at the leader of its user's shard (handed on there `hops` times
    /// already). `Ok(false)` when no such session is bound.
    pub async fn kick(&self, jid: &FullJid, hops: u32) -> Result<bool, CoreError> {
        let i = self.shared.shard_index(jid.bare_str());
        if self.shared.cluster.clustered() {
            self.shared.cluster.wait_leader(i).await;
            if let Some(addr) = self.shared.cluster.elsewhere(i) {
                if hops >= crate::cluster::MAX_HOPS {
                    return Err(CoreError::NotLeader {
                        leader: None,
                        addr: None,
                    });
                }
                return crate::cluster::admin_client::kick_at(&addr, jid, hops + 1).await;
            }
        }
        let (reply, rx) = oneshot::channel();
        let msg = ShardMsg::Kick {
            jid: jid.clone(),
            reply,
        };
        self.shared.shards[i]
            .edge
            .send(msg)
            .await
            .map_err(|_| CoreError::ShuttingDown)?;
        rx.await.map_err(|_| CoreError::ShuttingDown)
    }

    /// End every session bound through `link` (its edge is gone): each
    /// shard unbinds them, and contacts see them go unavailable.
    pub async fn drop_edge_sessions(&self, link: Arc<crate::session::EdgeLink>) {
        for h in &self.shared.shards {
            let (reply, rx) = oneshot::channel();
            let msg = ShardMsg::DropEdge {
                link: link.clone(),
                reply,
            };
            if h.edge.send(msg).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Number of bound sessions in all shards (for metrics and tests).
    pub async fn session_count(&self) -> usize {
        self.count(None).await
    }

    /// Number of sessions bound through one remote edge's link.
    pub async fn session_count_via(&self, link: &Arc<crate::session::EdgeLink>) -> usize {
        self.count(Some(link.clone())).await
    }

    async fn count(&self, via: Option<Arc<crate::session::EdgeLink>>) -> usize {
        let mut total = 0;
        for h in &self.shared.shards {
            let (reply, rx) = oneshot::channel();
            let msg = ShardMsg::Count {
                via: via.clone(),
                reply,
            };
            if h.edge.send(msg).await.is_ok() {
                total += rx.await.unwrap_or(0);
            }
        }
        total
    }

    /// Wait until every shard group has a leader (this node or a peer).
    /// A node that is not in a cluster yet (it joins a running one) first
    /// waits, without a limit, to be added (`xmppd cluster add-node`).
    pub async fn wait_for_leaders(&self, limit: Duration) -> Result<(), CoreError> {
        let meta = &self.shared.cluster.meta;
        if !meta
            .is_initialized()
            .await
            .map_err(|e| CoreError::Raft(e.to_string()))?
        {
            tracing::info!(
                node = self.shared.env.cfg.node_id,
                "waiting for the cluster's groups: the lowest id in cluster.peers creates them; a node joining a running cluster waits for xmppd cluster add-node"
            );
            meta.wait(None)
                .metrics(
                    |m| m.membership_config.membership().nodes().next().is_some(),
                    "added to a cluster",
                )
                .await
                .map_err(|e| CoreError::Raft(e.to_string()))?;
        }
        meta.wait(Some(limit))
            .metrics(
                |m| m.current_leader.is_some(),
                "the meta group has a leader",
            )
            .await
            .map_err(|e| CoreError::Raft(e.to_string()))?;
        self.shared.cluster.check_shard_count().await?;
        let deadline = tokio::time::Instant::now() + limit;
        for i in 0..self.shared.cluster.rafts.len() {
            while self.shared.cluster.leader(i).0.is_none() {
                if tokio::time::Instant::now() >= deadline {
                    return Err(CoreError::Raft(format!("shard {i} has no leader")));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Commit planned writes through the Raft group of shard `shard`
    /// (for tools and benchmarks; handlers commit through their shard).
    pub async fn commit(&self, shard: usize, writes: storage::Batch) -> Result<(), CoreError> {
        self.shared
            .cluster
            .commit(shard, writes, true, Vec::new())
            .await
    }

    /// Each shard's Raft group as this node sees it: leader, voters and
    /// the last log index applied here.
    pub fn shard_groups(&self) -> Vec<ShardGroup> {
        self.shared
            .cluster
            .rafts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let v = self.shared.cluster.shard_view(i);
                let m = r.metrics();
                let m = m.borrow();
                let several = v.voters.len() > 1;
                ShardGroup {
                    shard: i as u32,
                    leader: v.leader,
                    replicas: v.voters,
                    applied: m.last_applied.map(|l| l.index),
                    raft_leader: m.current_leader,
                    quorum_lost: m.current_leader == Some(m.id)
                        && several
                        && m.millis_since_quorum_ack
                            .is_some_and(|ms| ms > QUORUM_LOST_MS),
                    term: m.current_term,
                    last_log: m.last_log_index,
                }
            })
            .collect()
    }

    /// Whether this node sees core node `id` alive: leading a shard, or
    /// caught up in a shard this node leads.
    pub fn peer_seen(&self, id: u64) -> bool {
        let sh = &self.shared;
        std::iter::once(&sh.cluster.meta)
            .chain(&sh.cluster.rafts)
            .any(|r| {
                let m = r.metrics();
                let m = m.borrow();
                if m.current_leader == Some(id) {
                    return true;
                }
                m.replication.as_ref().is_some_and(|rep| {
                    rep.get(&id)
                        .is_some_and(|matched| matched.map(|l| l.index) == m.last_log_index)
                })
            })
    }

    /// The members of the cluster (id, address), from the meta group.
    pub fn members(&self) -> BTreeMap<u64, String> {
        self.shared.cluster.members()
    }

    /// Nodes joining or leaving: (id, address, leaving).
    pub fn transient_members(&self) -> Vec<(u64, String, bool)> {
        self.shared.cluster.transient_members()
    }

    /// Whether node `id` was removed from the cluster.
    pub fn is_left(&self, id: u64) -> bool {
        self.shared.cluster.is_left(id)
    }

    /// Whether node `id` has held cluster data (see `membership::data_key`).
    pub fn holds_data(&self, id: u64) -> bool {
        self.shared.cluster.holds_data(id)
    }

    /// The meta group's leader, as this node knows it.
    pub fn meta_leader(&self) -> Option<u64> {
        self.shared.cluster.meta.metrics().borrow().current_leader
    }

    /// Add a core node to the cluster (at the meta leader; `NotLeader`
    /// otherwise); the members after the change.
    pub async fn add_node(&self, id: u64, addr: String) -> Result<Vec<u64>, CoreError> {
        self.shared.cluster.add_node(id, addr).await
    }

    /// Remove a core node from the cluster (at the meta leader).
    pub async fn remove_node(&self, id: u64) -> Result<Vec<u64>, CoreError> {
        self.shared.cluster.remove_node(id).await
    }

    /// Becomes true when this node was removed from the cluster and has
    /// handed over its shards: the process may stop.
    pub fn left(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.cluster.left.subscribe()
    }

    /// How many shards this core runs.
    pub fn shard_count(&self) -> usize {
        self.shared.shards.len()
    }

    /// Stop every shard after it has processed what it holds, then flush the
    /// store to disk.
    pub async fn shutdown(&self) {
        // Each round lets every shard finish what it holds; stanzas between
        // shards take at most three hops (outbound, inbound, reply).
        for _round in 0..3 {
            for h in &self.shared.shards {
                let (reply, rx) = oneshot::channel();
                if h.edge.send(ShardMsg::Stop { reply }).await.is_ok() {
                    let _ = rx.await;
                }
            }
        }
        for h in &self.shared.shards {
            let _ = h.edge.send(ShardMsg::Exit).await;
        }
        for r in std::iter::once(&self.shared.cluster.meta).chain(&self.shared.cluster.rafts) {
            if let Err(e) = r.shutdown().await {
                tracing::warn!(error = %e, "stopping a raft group failed");
            }
        }
        if let Err(e) = self.shared.env.store.flush() {
            tracing::error!(error = %e, "flushing the store at shutdown failed");
        }
    }
}

/// How the relays find a shard's leader again after a stream to a peer
/// failed, and take back what this node now leads.
struct Rerouter(std::sync::Weak<Shared>);

impl crate::cluster::relay::Reroute for Rerouter {
    fn next(&self, shard: u32) -> crate::cluster::relay::Next {
        use crate::cluster::relay::Next;
        let Some(shared) = self.0.upgrade() else {
            return Next::Here;
        };
        if shard as usize >= shared.shards.len() {
            return Next::Here;
        }
        match shared.cluster.elsewhere(shard as usize) {
            Some(addr) => Next::Peer(addr),
            None => Next::Here,
        }
    }

    fn here(
        &self,
        envs: Vec<pb::Envelope>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> {
        let shared = self.0.upgrade();
        Box::pin(async move {
            let Some(shared) = shared else { return false };
            let core = Core { shared };
            let (ok, r) = core.take_relayed(envs).await;
            ok && r.wait().await
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shard_function_is_stable_and_in_range() {
        assert_eq!(
            crate::cluster::shard_of("alice@localhost", 16),
            crate::cluster::shard_of("alice@localhost", 16)
        );
        for i in 0..1000 {
            assert!(crate::cluster::shard_of(&format!("u{i}@x"), 7) < 7);
        }
    }
}
