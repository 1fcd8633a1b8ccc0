//! Multi-User Chat (XEP-0045) as a sharded core service: a room lives in
//! the shard of its bare JID (`room@conference.<domain>`). Everything for
//! a room reaches that shard: presence to `room/nick` (entering, changing
//! nick or availability, leaving), messages to the room (`groupchat`) or
//! to an occupant (private messages), and IQs to the room (discovery,
//! owner and admin requests) or to an occupant (self-ping, XEP-0410).
//!
//! What outlives the occupants (configuration, affiliations, subject) is
//! a record in the `rooms` store for a persistent room, planned into the
//! shard's writes and committed through its Raft group before the answer
//! leaves. Occupants and the history sent on entering are held in memory
//! at the shard's leader. Broadcasts go out as one fan-out per room
//! (`Ctx::notify`): per shard of the occupants, then per edge.
//!
//! An occupant's entering presence is directed presence of its session
//! (RFC 6121 §4.6), so when the session ends, for whatever reason, its
//! shard sends the room unavailable presence and the occupant leaves.
//!
//! Files: `occupant.rs` (§7.1 to §7.6, §7.14: presence), `chat.rs` (§7.4,
//! §7.5, §7.8, §8.1: messages), `owner.rs` (§10: creation, configuration,
//! destruction; §9, §8: affiliations and roles), `disco.rs` (§6).

pub(crate) mod admin;
mod chat;
mod disco;
mod occupant;
mod owner;
pub(crate) mod replica;

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::{Kind, Stanza};
use proto::{BareJid, Element, FullJid, Jid};
use serde::{Deserialize, Serialize};

use super::Ctx;

pub(crate) const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub(crate) const NS_USER: &str = "http://jabber.org/protocol/muc#user";
pub(crate) const NS_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub(crate) const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub(crate) const NS_SID: &str = "urn:xmpp:sid:0";
pub(crate) const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
pub(crate) const NS_STABLE_ID: &str = "http://jabber.org/protocol/muc#stable_id";

/// A JID's standing in a room (§5.2), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn name(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// An occupant's role in the room now (§5.1), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// Who may send private messages to occupants (`muc#roomconfig_allowpm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PmPolicy {
    Anyone,
    Participants,
    Moderators,
    None,
}

/// A room's configuration (§10.2, the `muc#roomconfig` form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub password: Option<String>,
    pub moderated: bool,
    /// Most occupants; 0: the service's limit.
    pub max_users: usize,
    /// Real JIDs shown to every occupant (non-anonymous), not only to
    /// moderators (semi-anonymous).
    pub whois_anyone: bool,
    pub allow_invites: bool,
    pub allow_pm: PmPolicy,
    pub change_subject: bool,
    /// Messages kept for the history on entering.
    pub history_length: usize,
    /// The roles whose presence every occupant gets
    /// (`muc#roomconfig_presencebroadcast`); an occupant of another role
    /// gets its own presence only, and is not announced to the others (a
    /// large room of listeners).
    pub broadcast_moderator: bool,
    pub broadcast_participant: bool,
    pub broadcast_visitor: bool,
}

impl Default for RoomConfig {
    fn default() -> RoomConfig {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            password: None,
            moderated: false,
            max_users: 0,
            whois_anyone: false,
            allow_invites: false,
            allow_pm: PmPolicy::Anyone,
            change_subject: false,
            history_length: 20,
            broadcast_moderator: true,
            broadcast_participant: true,
            broadcast_visitor: true,
        }
    }
}

/// The subject and who set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Subject {
    pub nick: String,
    pub text: String,
}

/// What a persistent room keeps in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    config: RoomConfig,
    affiliations: BTreeMap<String, Affiliation>,
    subject: Option<Subject>,
    /// The room's key for occupant ids (XEP-0421), random at creation;
    /// empty in records written before it existed.
    #[serde(default)]
    secret: String,
}

/// One occupant (§5): its nick, the session in the room, its role and
/// its last presence's content.
#[derive(Debug, Clone)]
pub(crate) struct Occupant {
    pub nick: String,
    /// The nick as nicks compare (RFC 8266 §2.4), see
    /// [`proto::jid::nickname_key`].
    pub nick_key: String,
    pub jid: FullJid,
    pub role: Role,
    /// The children of its last available presence (show, status,
    /// priority, caps), as XML, without the MUC extension.
    pub presence: String,
    /// Stable for its bare JID in this room (XEP-0421).
    pub occupant_id: String,
}

/// A message of the room's history.
#[derive(Debug, Clone)]
pub(crate) struct Past {
    /// The message as broadcast (from `room/nick`, no 'to').
    pub raw: Bytes,
    pub at_secs: u64,
    pub stamp: String,
    pub chars: usize,
}

/// A room as its shard holds it.
#[derive(Debug, Default)]
pub(crate) struct Room {
    pub config: RoomConfig,
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subject: Option<Subject>,
    /// Created and not yet configured by its owner (§10.1.1): nobody else
    /// may enter.
    pub locked: bool,
    /// Its record is in the store.
    pub stored: bool,
    pub occupants: Vec<Occupant>,
    pub history: VecDeque<Past>,
    /// Invitees (bare JIDs) and who invited them, for their declines.
    pub invited: std::collections::HashMap<String, FullJid>,
    /// The key of its occupant ids (XEP-0421), see [`occupant_id`].
    pub secret: String,
    /// IQs passed on from one occupant to another and not answered yet:
    /// (the asked one's bare JID, the id the room gave the IQ) to the
    /// asker's nick and the IQ's own id. Only an answer to one of them is
    /// passed back.
    pub asked: std::collections::HashMap<(String, String), (String, String)>,
}

impl Room {
    /// A room created now, with a fresh key for its occupant ids.
    pub fn created(locked: bool) -> Room {
        let key: u128 = rand::random();
        Room {
            locked,
            secret: format!("{key:032x}"),
            ..Room::default()
        }
    }

    pub fn affiliation(&self, bare: &str) -> Affiliation {
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    /// The occupant whose nick compares equal to `nick` (RFC 8266:
    /// `room/CAROL` reaches Carol).
    pub fn occupant(&self, nick: &str) -> Option<&Occupant> {
        let key = proto::jid::nickname_key(nick);
        self.occupants.iter().find(|o| o.nick_key == key)
    }

    /// The occupant whose nick is exactly `nick`.
    pub fn occupant_exact(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick == nick)
    }

    pub fn occupant_by_jid(&self, jid: &FullJid) -> Option<&Occupant> {
        self.occupants.iter().find(|o| &o.jid == jid)
    }

    /// The role an entering occupant gets (§5.1.2).
    pub fn default_role(&self, a: Affiliation) -> Role {
        match a {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            _ if self.config.moderated => Role::Visitor,
            _ => Role::Participant,
        }
    }

    /// Whether the presence of an occupant in `role` goes to the others.
    pub fn broadcasts(&self, role: Role) -> bool {
        match role {
            Role::Moderator => self.config.broadcast_moderator,
            Role::Participant => self.config.broadcast_participant,
            Role::Visitor => self.config.broadcast_visitor,
            Role::None => false,
        }
    }

    /// Whether `viewer` sees occupants' real JIDs.
    pub fn shows_jids_to(&self, viewer: Role) -> bool {
        self.config.whois_anyone || viewer == Role::Moderator
    }

    /// A room as `r` describes it, with no occupants yet.
    pub(crate) fn from_record(r: Record, locked: bool, stored: bool) -> Room {
        Room {
            config: r.config,
            affiliations: r.affiliations,
            subject: r.subject,
            secret: r.secret,
            locked,
            stored,
            ..Room::default()
        }
    }

    pub(crate) fn record(&self) -> Record {
        Record {
            config: self.config.clone(),
            affiliations: self.affiliations.clone(),
            subject: self.subject.clone(),
            secret: self.secret.clone(),
        }
    }
}

/// A stanza for a MUC service of this server (`to` on its domain).
pub(crate) fn inbound(ctx: &mut Ctx<'_>, s: Stanza) {
    let Some(to) = s.to.clone() else { return };
    // An answer to an IQ passed on to an occupant may come from its
    // account's bare JID (a vCard).
    if let (Kind::Iq, Some(nick), Some(from)) = (s.kind, to.resource(), &s.from)
        && matches!(s.stype(), "result" | "error")
    {
        return occupant::iq_to_occupant(ctx, &to.bare(), nick, from, &s);
    }
    let Some(Jid::Full(from)) = s.from.clone() else {
        // Only clients' stanzas (from a full JID) reach a room.
        return;
    };
    if to.local().is_none() {
        return match s.kind {
            Kind::Iq => disco::service_iq(ctx, &s),
            Kind::Message => ctx.bounce(&s, StanzaCondition::ServiceUnavailable, None),
            Kind::Presence => {}
        };
    }
    let room = to.bare();
    match (s.kind, to.resource()) {
        (Kind::Presence, Some(nick)) => occupant::presence(ctx, &room, nick, &from, &s),
        // Presence to the bare room JID is not how one enters (§7.2.1).
        (Kind::Presence, None) => {
            if s.stype().is_empty() {
                ctx.bounce(
                    &s,
                    StanzaCondition::JidMalformed,
                    Some("enter a room with a nickname: room@service/nick"),
                )
            }
        }
        (Kind::Message, None) => chat::to_room(ctx, &room, &from, &s),
        (Kind::Message, Some(nick)) => chat::private(ctx, &room, nick, &from, &s),
        (Kind::Iq, None) => owner::room_iq(ctx, &room, &from, &s),
        (Kind::Iq, Some(nick)) => {
            occupant::iq_to_occupant(ctx, &room, nick, &Jid::Full(from.clone()), &s)
        }
    }
}

/// The room `jid`, from this shard's memory or else the store.
pub(crate) fn load<'c>(
    ctx: &'c mut Ctx<'_>,
    jid: &BareJid,
) -> Result<Option<&'c mut Room>, StanzaError> {
    if !ctx.st.rooms.contains_key(jid) {
        let stored = ctx.store().rooms().get(jid).map_err(|e| {
            tracing::error!(room = %jid, error = %e, "reading a room failed");
            StanzaError::new(StanzaCondition::InternalServerError)
        })?;
        let Some(bytes) = stored else {
            return Ok(None);
        };
        let Ok(r) = serde_json::from_slice::<Record>(&bytes) else {
            tracing::error!(room = %jid, "a room's record does not decode");
            return Err(StanzaError::new(StanzaCondition::InternalServerError));
        };
        ctx.st
            .rooms
            .insert(jid.clone(), Room::from_record(r, false, true));
    }
    Ok(ctx.st.rooms.get_mut(jid))
}

/// Plan keeping the room's durable state: stored when persistent, its
/// record deleted when it no longer is.
pub(crate) fn save(ctx: &mut Ctx<'_>, jid: &BareJid) -> Result<(), StanzaError> {
    replica::mark(ctx.st, jid, "");
    let Some(room) = ctx.st.rooms.get_mut(jid) else {
        return Ok(());
    };
    let store = ctx.env.store.0.rooms();
    let r = if room.config.persistent {
        room.stored = true;
        let bytes = serde_json::to_vec(&room.record()).unwrap_or_default();
        store.put_in(&mut ctx.writes, jid, &bytes)
    } else if room.stored {
        room.stored = false;
        store.delete_in(&mut ctx.writes, jid)
    } else {
        Ok(())
    };
    r.map_err(|e| {
        tracing::error!(room = %jid, error = %e, "planning a room's write failed");
        StanzaError::new(StanzaCondition::InternalServerError)
    })
}

/// Forget a room that has no occupants left: a temporary room is gone
/// (§10.1), a persistent one leaves memory (the store keeps it) unless it
/// has history to give the next to enter.
pub(crate) fn leave_if_empty(ctx: &mut Ctx<'_>, jid: &BareJid) {
    if ctx
        .st
        .rooms
        .get(jid)
        .is_some_and(|r| r.occupants.is_empty() && (!r.config.persistent || r.history.is_empty()))
    {
        ctx.st.rooms.remove(jid);
        replica::mark(ctx.st, jid, "");
    }
}

/// `room/nick` as a JID.
pub(crate) fn occupant_jid(room: &BareJid, nick: &str) -> Option<Jid> {
    room.with_resource(nick).ok().map(Jid::Full)
}

/// A stanza built here, parsed into its envelope.
pub(crate) fn made(xml: &str) -> Option<Stanza> {
    Stanza::parse(xml.as_bytes()).ok()
}

/// The occupant id of `bare` in a room (XEP-0421): a keyed hash
/// (HMAC-SHA-256 under the room's random `secret`, replicated and stored
/// with the room) of the bare JID, so the same account has the same id in
/// the room across sessions and restarts, while nobody can test a guessed
/// JID against it or match ids across rooms. A room stored before rooms
/// had keys has an empty one and keeps its ids from an unkeyed hash of
/// the room and the JID.
pub(crate) fn occupant_id(room: &BareJid, secret: &str, bare: &str) -> String {
    use hmac::{Hmac, Mac};
    if secret.is_empty() {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (room.as_str(), bare, "xmppd occupant id").hash(&mut h);
        return format!("{:016x}", h.finish());
    }
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(bare.as_bytes());
    let out = mac.finalize().into_bytes();
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&out[..18])
}

/// Element text of the first child `name` in `ns` of `el`.
pub(crate) fn child_text(el: &Element, name: &str, ns: &str) -> Option<String> {
    el.child(name, ns).map(Element::text)
}

/// The services' features (§6.1) and of each room kind.
pub(crate) fn room_features(room: &Room) -> Vec<&'static str> {
    let c = &room.config;
    let mut f = vec![
        NS_MUC,
        proto::ns::DISCO_INFO,
        proto::ns::DISCO_ITEMS,
        NS_SID,
        NS_OCCUPANT_ID,
        "urn:xmpp:ping",
        // XEP-0410 §3.2: the room answers a self-ping itself.
        "http://jabber.org/protocol/muc#self-ping-optimization",
        "http://jabber.org/protocol/muc#request",
        // §7.4: a message comes back to its sender with its own id.
        NS_STABLE_ID,
        if c.persistent {
            "muc_persistent"
        } else {
            "muc_temporary"
        },
        if c.members_only {
            "muc_membersonly"
        } else {
            "muc_open"
        },
        if c.password.is_some() {
            "muc_passwordprotected"
        } else {
            "muc_unsecured"
        },
        if c.moderated {
            "muc_moderated"
        } else {
            "muc_unmoderated"
        },
        if c.whois_anyone {
            "muc_nonanonymous"
        } else {
            "muc_semianonymous"
        },
        if c.public { "muc_public" } else { "muc_hidden" },
    ];
    f.sort_unstable();
    f
}
