//! MUC rooms and PubSub nodes for operators (the admin HTTP API, through
//! the `Admin` gRPC service between core nodes): a list gathers what each
//! core node finds in the shards it leads; a destroy or delete runs at the
//! leader of the room's or node's shard, handed on there, and answers once
//! it is committed.

use std::collections::BTreeMap;

use proto::cluster::pb;
use proto::error::StanzaError;
use proto::{BareJid, Jid};
use tokio::sync::oneshot;

use crate::cluster::admin_client;
use crate::core::Core;
use crate::error::CoreError;
use crate::modules::{Ctx, muc, pubsub};
use crate::shard::ShardMsg;

/// Store records read per step of a scan.
const SCAN: usize = 1000;

/// Most rooms of a service the public list (disco#items of the service)
/// covers, in the order of their local parts.
pub(crate) const ROOMS_LISTED: usize = 10_000;

impl Core {
    /// Up to `limit` rooms of the MUC service `service` across the
    /// cluster, in the order of their local parts, those after `after` (a
    /// local part) only. A core node that does not answer leaves its
    /// shards' rooms out.
    pub async fn list_rooms(
        &self,
        service: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<pb::RoomEntry>, CoreError> {
        let mut all = self.led_rooms(service, after, limit).await?;
        for (id, addr) in self.other_members() {
            match admin_client::list_rooms_at(&addr, service, after, limit).await {
                Ok(list) => all.extend(list),
                Err(e) => tracing::debug!(node = id, error = %e, "a member did not list its rooms"),
            }
        }
        let local = |r: &pb::RoomEntry| r.jid.split('@').next().unwrap_or("").to_string();
        all.sort_by_key(local);
        all.dedup_by(|a, b| a.jid == b.jid);
        all.truncate(limit);
        Ok(all)
    }

    /// [`Core::list_rooms`] over the shards this node leads: the rooms
    /// they hold in memory (with their occupants), and the persistent
    /// rooms of the store that they do not.
    pub async fn led_rooms(
        &self,
        service: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<pb::RoomEntry>, CoreError> {
        let led = self.led_shards();
        let mut rooms: BTreeMap<String, pb::RoomEntry> = BTreeMap::new();
        for (i, _) in led.iter().enumerate().filter(|(_, l)| **l) {
            let (tx, rx) = oneshot::channel();
            let (svc, after) = (service.to_string(), after.map(str::to_string));
            let f = Box::new(move |ctx: &mut Ctx<'_>| {
                let _ = tx.send(muc::admin::in_memory(ctx, &svc, after.as_deref()));
            });
            self.shared.shards[i]
                .edge
                .send(ShardMsg::Exec(f))
                .await
                .map_err(|_| CoreError::ShuttingDown)?;
            for r in rx.await.unwrap_or_default() {
                let local = r.jid.split('@').next().unwrap_or("").to_string();
                rooms.insert(local, r);
            }
        }
        // The store is in order: `limit` rooms from it are enough.
        let store = self.shared.env.store.0.rooms();
        let mut cursor = after.map(str::to_string);
        let mut taken = 0;
        loop {
            let batch = store
                .list(service, cursor.as_deref(), SCAN)
                .map_err(|e| CoreError::Internal(e.to_string()))?;
            let n = batch.len();
            for (local, bytes) in batch {
                cursor = Some(local.clone());
                let Ok(jid) = BareJid::new(Some(&local), service) else {
                    continue;
                };
                if !led[self.shared.shard_index(jid.as_str())] || rooms.contains_key(&local) {
                    continue;
                }
                if let Some(e) = muc::admin::stored(&jid, &bytes) {
                    rooms.insert(local, e);
                    taken += 1;
                }
            }
            if n < SCAN || taken >= limit {
                break;
            }
        }
        Ok(rooms.into_values().take(limit).collect())
    }

    /// Destroy the room `room` (its occupants told, with `reason` and the
    /// `alternate` venue), at the leader of its shard (handed on there
    /// `hops` times already). `Ok(false)`: no such room.
    pub async fn destroy_room(
        &self,
        room: &BareJid,
        reason: Option<String>,
        alternate: Option<Jid>,
        hops: u32,
    ) -> Result<bool, CoreError> {
        if let Some(addr) = self.leader_elsewhere(room.as_str(), hops).await? {
            return admin_client::destroy_room_at(&addr, room, reason, alternate, hops + 1).await;
        }
        let r = room.clone();
        self.planned(room.as_str(), move |ctx| {
            muc::admin::destroy(ctx, &r, reason.as_deref(), alternate.as_ref())
        })
        .await
    }

    /// Up to `limit` nodes of the PubSub service `service` (a domain, or
    /// an account for PEP) across the cluster, in the order of their ids,
    /// those after `after` only.
    pub async fn list_nodes(
        &self,
        service: &BareJid,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<pb::NodeEntry>, CoreError> {
        let mut all = self.led_nodes(service, after, limit)?;
        for (id, addr) in self.other_members() {
            match admin_client::list_nodes_at(&addr, service, after, limit).await {
                Ok(list) => all.extend(list),
                Err(e) => tracing::debug!(node = id, error = %e, "a member did not list its nodes"),
            }
        }
        all.sort_by(|a, b| a.node.cmp(&b.node));
        all.dedup_by(|a, b| a.node == b.node);
        all.truncate(limit);
        Ok(all)
    }

    /// [`Core::list_nodes`] over the shards this node leads.
    pub fn led_nodes(
        &self,
        service: &BareJid,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<pb::NodeEntry>, CoreError> {
        let led = self.led_shards();
        let store = &self.shared.env.store.0;
        let mut out = Vec::new();
        let mut cursor = after.map(str::to_string);
        loop {
            let ids = store
                .pubsub()
                .nodes(service, cursor.as_deref(), SCAN)
                .map_err(|e| CoreError::Internal(e.to_string()))?;
            let n = ids.len();
            for id in ids {
                let home = storage::pubsub::home(service, &id);
                if led[self.shared.shard_index(&home)]
                    && let Some(e) = pubsub::admin::entry(store, service, &id)
                {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                cursor = Some(id);
            }
            if n < SCAN {
                return Ok(out);
            }
        }
    }

    /// Delete the node `node` of `service` with everything in it, at the
    /// leader of its shard (handed on there `hops` times already).
    /// `Ok(false)`: no such node.
    pub async fn delete_node(
        &self,
        service: &BareJid,
        node: &str,
        hops: u32,
    ) -> Result<bool, CoreError> {
        let home = storage::pubsub::home(service, node);
        if let Some(addr) = self.leader_elsewhere(&home, hops).await? {
            return admin_client::delete_node_at(&addr, service, node, hops + 1).await;
        }
        let (svc, id) = (service.clone(), node.to_string());
        self.planned(&home, move |ctx| pubsub::admin::delete(ctx, &svc, &id))
            .await
    }

    /// Which shards this node leads (all of them on a single node).
    fn led_shards(&self) -> Vec<bool> {
        let sh = &self.shared;
        let me = sh.env.cfg.node_id;
        (0..sh.shards.len())
            .map(|i| !sh.cluster.clustered() || sh.cluster.leader(i).0 == Some(me))
            .collect()
    }

    /// The other core nodes of the cluster (none on a single node).
    fn other_members(&self) -> Vec<(u64, String)> {
        let sh = &self.shared;
        if !sh.cluster.clustered() {
            return Vec::new();
        }
        let me = sh.env.cfg.node_id;
        sh.cluster
            .members()
            .into_iter()
            .filter(|(id, _)| *id != me)
            .collect()
    }

    /// The address of the node leading the shard of `key` when that is
    /// another node (after waiting out an election); an error once a
    /// request was handed on too often.
    async fn leader_elsewhere(&self, key: &str, hops: u32) -> Result<Option<String>, CoreError> {
        let i = self.shared.shard_index(key);
        if !self.shared.cluster.clustered() {
            return Ok(None);
        }
        self.shared.cluster.wait_leader(i).await;
        match self.shared.cluster.elsewhere(i) {
            Some(_) if hops >= crate::cluster::MAX_HOPS => Err(CoreError::NotLeader {
                leader: None,
                addr: None,
            }),
            other => Ok(other),
        }
    }

    /// Run `plan` on the shard of `key` and answer once what it planned is
    /// committed.
    async fn planned(
        &self,
        key: &str,
        plan: impl FnOnce(&mut Ctx<'_>) -> Result<bool, StanzaError> + Send + 'static,
    ) -> Result<bool, CoreError> {
        let (tx, rx) = oneshot::channel();
        let f = Box::new(move |ctx: &mut Ctx<'_>| match plan(ctx) {
            Ok(found) => ctx.after_commit(move |err| {
                let _ = tx.send(match err {
                    None => Ok(found),
                    Some(e) => Err(CoreError::Raft(e.to_string())),
                });
            }),
            Err(e) => {
                let why = e
                    .text
                    .clone()
                    .unwrap_or_else(|| format!("{:?}", e.condition));
                let _ = tx.send(Err(CoreError::Internal(why)));
            }
        });
        self.exec(key, f).await?;
        rx.await
            .map_err(|_| CoreError::Raft("the shard did not commit it".into()))?
    }
}
