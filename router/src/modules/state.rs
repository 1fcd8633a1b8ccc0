//! What a shard holds in memory for its users, as the modules see it: the
//! bound sessions of each user with their presence, priority, roster
//! interest and directed presence (RFC 6121 §4). The cluster replicates
//! the sessions that `changed` marks (`crate::replicated`).

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use proto::caps::Caps;
use proto::stanza::Stanza;
use proto::{BareJid, FullJid, Jid};

use crate::session::SessionSink;

/// One bound resource.
#[derive(Debug)]
pub struct Session {
    pub jid: FullJid,
    pub sink: SessionSink,
    /// Sent available presence and not since unavailable (RFC 6121 §4.2).
    pub available: bool,
    pub priority: i32,
    /// The last presence broadcast, `from` stamped, without `to`.
    pub presence: Option<Stanza>,
    /// Asked for the roster: gets roster pushes (RFC 6121 §2.1.6).
    pub interested: bool,
    /// Directed presence sent to entities outside the roster (RFC 6121 §4.6).
    pub directed: Vec<Jid>,
    /// The capabilities its presence announces (XEP-0115).
    pub caps: Option<Arc<Caps>>,
    /// What it was sent once only (PEP last items on presence, by sender
    /// and feature); not replicated.
    pub sent_once: Option<Box<HashSet<String>>>,
    /// Gets copies of its account's messages (XEP-0280 Message Carbons).
    pub carbons: bool,
}

#[derive(Debug, Default)]
pub struct UserState {
    pub sessions: Vec<Session>,
}

#[derive(Debug, Default)]
pub struct ShardState {
    pub users: HashMap<BareJid, UserState>,
    /// In a cluster: sessions changed since the last commit (their
    /// records go into the shard's log, see `crate::replicated`).
    pub dirty: Option<HashSet<FullJid>>,
    /// In a cluster: the Raft term whose sessions are loaded here (this
    /// node leads the shard in it).
    pub term: Option<u64>,
    /// The XEP-0045 rooms of this shard in use (`muc`).
    pub(crate) rooms: HashMap<BareJid, super::muc::Room>,
    /// In a cluster: rooms and occupants changed since the last commit
    /// (`muc::replica`).
    pub(crate) room_dirty: Option<super::muc::replica::Changes>,
    /// Sessions waiting for their client to resume them (XEP-0198).
    pub sm_detached: HashSet<FullJid>,
    /// External components (XEP-0114) whose domain this shard owns, and
    /// the connection each is on.
    pub components: HashMap<String, crate::session::SessionSink>,
}

impl ShardState {
    pub fn sessions(&self, user: &BareJid) -> &[Session] {
        self.sessions_of(user.as_str())
    }

    /// The sessions of the user whose bare JID is `bare`, without building
    /// the JID (the fan-out path).
    pub fn sessions_of(&self, bare: &str) -> &[Session] {
        self.users
            .get(bare)
            .map(|u| u.sessions.as_slice())
            .unwrap_or(&[])
    }

    pub fn session_mut(&mut self, jid: &FullJid) -> Option<&mut Session> {
        self.changed(jid);
        self.users
            .get_mut(jid.bare_str())?
            .sessions
            .iter_mut()
            .find(|s| &s.jid == jid)
    }

    /// A session to change in what the cluster does not replicate.
    pub fn session_unreplicated(&mut self, jid: &FullJid) -> Option<&mut Session> {
        self.users
            .get_mut(jid.bare_str())?
            .sessions
            .iter_mut()
            .find(|s| &s.jid == jid)
    }

    /// Note that the session `jid` changed (a cluster replicates it).
    pub fn changed(&mut self, jid: &FullJid) {
        if let Some(d) = &mut self.dirty {
            d.insert(jid.clone());
        }
    }

    /// Forget a user and their sessions.
    pub fn remove_user(&mut self, user: &BareJid) -> Option<UserState> {
        let gone = self.users.remove(user)?;
        for s in &gone.sessions {
            self.changed(&s.jid);
        }
        Some(gone)
    }

    pub fn session(&self, jid: &FullJid) -> Option<&Session> {
        self.users
            .get(jid.bare_str())?
            .sessions
            .iter()
            .find(|s| &s.jid == jid)
    }
}
