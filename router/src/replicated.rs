//! Replicated sessions (a cluster only), and with them the XEP-0045
//! rooms and occupants of the shard (`modules::muc::replica`). A shard's leader writes a record
//! for each session it changed (bound, presence, roster interest,
//! directed presence; removed when it ends) into the shard's Raft log with
//! the step's other writes, under `s/<full JID>` in the group's own data.
//! A node that becomes the shard's leader loads them once it has applied
//! its predecessor's log, and serves the sessions through the edges'
//! streams to it: clients keep their streams when a core node dies or a
//! shard's lead moves, and contacts see no change.
//!
//! What a session's record does not hold: the stanzas queued for it at
//! the old leader when it died (the edge's resend covers those it had not
//! had confirmed). A session whose record was not committed yet is
//! unknown to the new leader: the edge's report of the lost session then
//! gets `kept = false`, and the edge ends that client's stream.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use proto::FullJid;
use proto::Jid;
use serde::{Deserialize, Serialize};
use storage::raft::Op;

use crate::cluster::Cluster;
use crate::modules::state::{Session, ShardState};
use crate::session::{EdgeLink, SessionSink, edge_of};

const PREFIX: &[u8] = b"s/";

#[derive(Serialize, Deserialize)]
struct Record {
    session: u64,
    available: bool,
    priority: i32,
    /// The last broadcast presence, as a prost-encoded envelope.
    presence: Option<Vec<u8>>,
    interested: bool,
    directed: Vec<String>,
    /// The session waited for its client to resume it (XEP-0198): its
    /// unacknowledged stanzas were in the old leader's memory only, so at
    /// a new leader it ends (rather than live on without a connection).
    #[serde(default)]
    detached: bool,
    /// XEP-0280 Message Carbons on.
    #[serde(default)]
    carbons: bool,
}

fn key(jid: &FullJid) -> Vec<u8> {
    [PREFIX, jid.to_string().as_bytes()].concat()
}

fn encode(s: &Session) -> Vec<u8> {
    let r = Record {
        session: s.sink.conn_id(),
        available: s.available,
        priority: s.priority,
        presence: s
            .presence
            .as_ref()
            .map(|p| proto::cluster::envelope::to_envelope(0, p).encode_to_vec()),
        interested: s.interested,
        directed: s.directed.iter().map(ToString::to_string).collect(),
        detached: s.sink.sm_info().is_some_and(|i| i.detached_at.is_some()),
        carbons: s.carbons,
    };
    serde_json::to_vec(&r).unwrap_or_default()
}

/// The log writes for the sessions changed since the last call.
pub(crate) fn take_changes(st: &mut ShardState) -> Vec<Op> {
    let mut ops = crate::modules::muc::replica::take_changes(st);
    let jids: Vec<FullJid> = match &mut st.dirty {
        Some(d) if !d.is_empty() => d.drain().collect(),
        _ => return ops,
    };
    ops.extend(jids.into_iter().map(|j| match st.session(&j) {
        Some(s) => Op::Put {
            key: key(&j),
            value: encode(s),
        },
        None => Op::Delete { key: key(&j) },
    }));
    ops
}

/// How long a new leader waits to have applied its predecessor's log.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Whether this node serves shard `index` now: it leads the group in Raft
/// and has loaded the sessions of that term.
pub(crate) fn serves(st: &ShardState, sh: &Cluster, index: usize) -> bool {
    let Some(raft) = sh.rafts.get(index) else {
        return false;
    };
    let m = raft.metrics();
    let m = m.borrow();
    m.current_leader == Some(sh.cfg.node_id) && st.term == Some(m.current_term)
}

/// If this node leads shard `index` in a term whose sessions are not
/// loaded yet, load them from the shard's replicated state. Returns the
/// sessions whose edge has no stream to this node (they are to end).
pub(crate) async fn ensure_loaded(
    st: &mut ShardState,
    sh: &Cluster,
    index: usize,
) -> Vec<(FullJid, u64)> {
    let me = sh.cfg.node_id;
    let Some(raft) = sh.rafts.get(index) else {
        return Vec::new();
    };
    let term = {
        let m = raft.metrics();
        let m = m.borrow();
        if m.current_leader != Some(me) {
            return Vec::new();
        }
        m.current_term
    };
    if st.term == Some(term) {
        return Vec::new();
    }
    // The leader's first entry of its term applied means every earlier
    // entry is applied too.
    let applied = raft
        .wait(Some(CATCH_UP))
        .metrics(
            |m| m.last_applied.is_some_and(|l| l.leader_id.term >= term),
            "the new leader applied its predecessor's log",
        )
        .await;
    if applied.is_err() {
        tracing::warn!(
            shard = index,
            "sessions not loaded: the log is not applied yet"
        );
        return Vec::new();
    }
    st.users.clear();
    if let Some(d) = &mut st.dirty {
        d.clear();
    }
    if let Some(d) = &mut st.room_dirty {
        d.clear();
    }
    st.term = Some(term);
    let Some(state) = sh.shard_states.get(index) else {
        return Vec::new();
    };
    let records = match state.records() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(shard = index, error = %e, "reading the shard's sessions failed");
            return Vec::new();
        }
    };
    let mut orphans = Vec::new();
    let mut loaded = 0usize;
    // The rooms and their occupants (XEP-0045), replicated the same way.
    let occupants = crate::modules::muc::replica::restore(st, &records);
    for (k, v) in records {
        let Some(rest) = k.strip_prefix(PREFIX) else {
            continue;
        };
        let Ok(Jid::Full(jid)) = Jid::parse(&String::from_utf8_lossy(rest)) else {
            continue;
        };
        let Ok(r) = serde_json::from_slice::<Record>(&v) else {
            continue;
        };
        let link = sh.edge_link(edge_of(r.session));
        let live = link.is_some();
        // A session of an edge that has no stream here is ended at once
        // (its contacts hear it); until then it needs a link, a dead one.
        let link: Arc<EdgeLink> = link.unwrap_or_else(|| EdgeLink::new(edge_of(r.session), 1).0);
        let presence = r.presence.and_then(|b| {
            proto::cluster::pb::Envelope::decode(b.as_slice())
                .ok()
                .and_then(|e| proto::cluster::envelope::from_envelope(e).ok())
                .map(|(_, s)| s)
        });
        let caps = presence
            .as_ref()
            .and_then(|p| p.element(proto::ns::CLIENT).ok())
            .and_then(|el| proto::caps::Caps::of_presence(&el))
            .map(Arc::new);
        let session = Session {
            caps,
            carbons: r.carbons,
            sent_once: None,
            jid: jid.clone(),
            sink: SessionSink::remote(r.session, link),
            available: r.available,
            priority: r.priority,
            presence,
            interested: r.interested,
            directed: r
                .directed
                .iter()
                .filter_map(|d| Jid::parse(d).ok())
                .collect(),
        };
        st.users
            .entry(jid.bare())
            .or_default()
            .sessions
            .push(session);
        loaded += 1;
        if !live || r.detached {
            orphans.push((jid, r.session));
        }
    }
    if loaded > 0 || occupants > 0 {
        tracing::info!(
            shard = index,
            sessions = loaded,
            occupants,
            "leading the shard: its sessions are served here now"
        );
    }
    orphans
}
