//! Every key this crate writes, with its codec, in one place: the on-disk
//! layout of the database. A key starts with a prefix byte naming the record
//! kind inside its column family; a user's bare JID is followed by a 0x00
//! separator (JIDs never contain NUL, and we refuse any that does), so a
//! prefix scan for `al@x` can never reach the keys of `al@xy`; integers are
//! big-endian so that keys sort by them.
//!
//! ```text
//! cf default   0x01                                    -> schema version
//! cf accounts  0x01 domain 0x00 local                  -> credentials
//! cf rosters   0x01 user 0x00                          -> roster version
//!              0x02 user 0x00 contact                  -> roster item
//!              0x03 user 0x00 contact                  -> pending subscription request (stanza bytes)
//!              0x04 user 0x00                          -> last unavailable presence with content (stanza bytes)
//! cf offline   0x01 user 0x00                          -> queue meta (next seq, count)
//!              0x02 user 0x00 seq:u64be                -> stanza bytes
//! cf vcards    0x01 user 0x00                          -> vCard bytes
//! cf private   0x01 user 0x00 name 0x00 ns             -> XEP-0049 element bytes
//! cf caps      0x01 hash-key                           -> XEP-0115 verified disco#info bytes
//! cf rooms     0x01 service 0x00 room-local            -> XEP-0045 room record (bytes of the MUC module)
//! cf pubsub    (S = service bare JID, N = node id, J = bare or full JID; see keys/pubsub.rs)
//!              0x01 S 0x00 N                           -> node record (creator, created, config, next seq, item count)
//!              0x02 S 0x00 N 0x00 J                    -> affiliation (J bare)
//!              0x03 S 0x00 N 0x00 J 0x00 subid         -> subscription (state, options)
//!              0x04 S 0x00 N 0x00 item-id              -> the item's seq
//!              0x05 S 0x00 N 0x00 seq:u64be            -> item (id, publisher, published, payload), in publication order
//!              0x06 S 0x00 bare 0x00 res 0x00 N 0x00 subid -> (index) subscription of a subscriber, res empty if bare
//!              0x07 S 0x00 J 0x00 N                    -> (index) affiliation of a JID, J bare
//!              0x08 S 0x00 creator 0x00 N              -> (index) node created by an account
//!              0x09 S 0x00 N                           -> how many subscriptions the node has (u64be)
//! cf raft_log, raft_meta, shard_data: keyed by Raft group, see raft/keys.rs
//! ```
//!
//! Every record of a user's family is owned by the user (the bare JID
//! before the first 0x00). Every `pubsub` record, index entries included,
//! is owned by its node's home (`pubsub::home`): the service for PEP (a
//! service with a localpart, so a user's PEP nodes live with the user),
//! else `service/node`, so each node of a service can live on its own
//! shard. Item bodies sit under their sequence number rather than their id
//! because retrieval (newest first, `max_items`, the last item sent on a
//! PEP `+notify`) is one range scan that way; lookups by id take one more
//! point read.
//!
//! A domain-only account (no localpart) has an empty local after the 0x00.

use proto::BareJid;

use crate::StorageError;

pub(crate) mod pubsub;

/// Column family names, in the order `Store::open` creates them.
pub(crate) const CF_ACCOUNTS: &str = "accounts";
pub(crate) const CF_ROSTERS: &str = "rosters";
pub(crate) const CF_OFFLINE: &str = "offline";
pub(crate) const CF_VCARDS: &str = "vcards";
pub(crate) const CF_PUBSUB: &str = "pubsub";
pub(crate) const CF_PRIVATE: &str = "private";
pub(crate) const CF_CAPS: &str = "caps";
pub(crate) const CF_ROOMS: &str = "rooms";
pub(crate) const COLUMN_FAMILIES: [&str; 11] = [
    CF_ACCOUNTS,
    CF_ROSTERS,
    CF_OFFLINE,
    CF_VCARDS,
    CF_PUBSUB,
    CF_PRIVATE,
    CF_CAPS,
    CF_ROOMS,
    crate::raft::keys::CF_RAFT_LOG,
    crate::raft::keys::CF_RAFT_META,
    crate::raft::keys::CF_SHARD_DATA,
];

const SEP: u8 = 0x00;

/// Prefix bytes per record kind, unique within their column family.
mod kind {
    pub const SCHEMA: u8 = 0x01;
    pub const ACCOUNT: u8 = 0x01;
    /// 0x02 held a global account count in schema 1; no longer written.
    pub const ROSTER_VERSION: u8 = 0x01;
    pub const ROSTER_ITEM: u8 = 0x02;
    pub const SUB_REQUEST: u8 = 0x03;
    pub const LAST_UNAVAILABLE: u8 = 0x04;
    pub const OFFLINE_META: u8 = 0x01;
    pub const OFFLINE_MSG: u8 = 0x02;
    pub const VCARD: u8 = 0x01;
    pub const PRIVATE: u8 = 0x01;
    pub const CAPS: u8 = 0x01;
    pub const ROOM: u8 = 0x01;
}

/// A half-open key range `[start, end)`, for scans and range deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    /// All keys that begin with `prefix`. The prefix must contain a byte
    /// below 0xFF (ours always end with a kind byte or the 0x00 separator).
    fn prefixed(prefix: Vec<u8>) -> KeyRange {
        let mut end = prefix.clone();
        while let Some(last) = end.pop() {
            if last < 0xFF {
                end.push(last + 1);
                break;
            }
        }
        KeyRange { start: prefix, end }
    }
}

fn checked(jid: &str) -> Result<&[u8], StorageError> {
    if jid.as_bytes().contains(&SEP) {
        return Err(StorageError::InvalidJid(jid.to_string()));
    }
    Ok(jid.as_bytes())
}

/// `kind user 0x00`
fn user_key(kind: u8, user: &BareJid, extra: usize) -> Result<Vec<u8>, StorageError> {
    let u = checked(user.as_str())?;
    let mut k = Vec::with_capacity(2 + u.len() + extra);
    k.push(kind);
    k.extend_from_slice(u);
    k.push(SEP);
    Ok(k)
}

fn utf8<'a>(record: &'static str, b: &'a [u8]) -> Result<&'a str, StorageError> {
    std::str::from_utf8(b).map_err(|_| StorageError::corrupt(record, "key is not utf-8"))
}

// ---- default cf ----

pub(crate) fn schema() -> Vec<u8> {
    vec![kind::SCHEMA]
}

// ---- accounts ----

/// `0x01 domain 0x00 local`: accounts sort by domain, so one domain is a
/// prefix scan.
pub(crate) fn account(user: &BareJid) -> Result<Vec<u8>, StorageError> {
    let d = checked(user.domain())?;
    let l = checked(user.local().unwrap_or(""))?;
    let mut k = Vec::with_capacity(2 + d.len() + l.len());
    k.push(kind::ACCOUNT);
    k.extend_from_slice(d);
    k.push(SEP);
    k.extend_from_slice(l);
    Ok(k)
}

/// Every account, or those of one (canonical) domain.
pub(crate) fn accounts(domain: Option<&str>) -> Result<KeyRange, StorageError> {
    let mut p = vec![kind::ACCOUNT];
    if let Some(d) = domain {
        p.extend_from_slice(checked(d)?);
        p.push(SEP);
    }
    Ok(KeyRange::prefixed(p))
}

pub(crate) fn decode_account(key: &[u8]) -> Result<BareJid, StorageError> {
    const R: &str = "account key";
    let rest = match key.split_first() {
        Some((&kind::ACCOUNT, rest)) => rest,
        _ => return Err(StorageError::corrupt(R, "wrong kind byte")),
    };
    let i = rest
        .iter()
        .position(|&b| b == SEP)
        .ok_or(StorageError::corrupt(R, "no separator"))?;
    let domain = utf8(R, &rest[..i])?;
    let local = utf8(R, &rest[i + 1..])?;
    let local = (!local.is_empty()).then_some(local);
    BareJid::new(local, domain).map_err(|_| StorageError::corrupt(R, "not a valid jid"))
}

/// Who owns the record `key` in `family`'s column family, for telling
/// which shard carries it: a user's bare JID, or a PubSub node's home
/// (`pubsub::home`); `None` for records of no one.
pub(crate) fn owner(family: crate::Family, key: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    let (&k, rest) = key.split_first()?;
    match family {
        crate::Family::Accounts => {
            if k != kind::ACCOUNT {
                return None;
            }
            let i = rest.iter().position(|&b| b == SEP)?;
            let domain = std::str::from_utf8(&rest[..i]).ok()?;
            let local = std::str::from_utf8(&rest[i + 1..]).ok()?;
            Some(if local.is_empty() {
                Cow::Borrowed(domain)
            } else {
                Cow::Owned(format!("{local}@{domain}"))
            })
        }
        crate::Family::Rosters
        | crate::Family::Offline
        | crate::Family::Vcards
        | crate::Family::Private => {
            let i = rest.iter().position(|&b| b == SEP)?;
            std::str::from_utf8(&rest[..i]).ok().map(Cow::Borrowed)
        }
        crate::Family::Pubsub => pubsub::owner(key),
        crate::Family::Caps => {
            if k != kind::CAPS {
                return None;
            }
            let key = std::str::from_utf8(rest).ok()?;
            Some(Cow::Owned(crate::caps::home(key)))
        }
        crate::Family::Rooms => {
            if k != kind::ROOM {
                return None;
            }
            let i = rest.iter().position(|&b| b == SEP)?;
            let service = std::str::from_utf8(&rest[..i]).ok()?;
            let local = std::str::from_utf8(&rest[i + 1..]).ok()?;
            Some(Cow::Owned(format!("{local}@{service}")))
        }
    }
}

// ---- rosters ----

pub(crate) fn roster_version(user: &BareJid) -> Result<Vec<u8>, StorageError> {
    user_key(kind::ROSTER_VERSION, user, 0)
}

pub(crate) fn roster_item(user: &BareJid, contact: &BareJid) -> Result<Vec<u8>, StorageError> {
    let c = checked(contact.as_str())?;
    let mut k = user_key(kind::ROSTER_ITEM, user, c.len())?;
    k.extend_from_slice(c);
    Ok(k)
}

pub(crate) fn roster_items(user: &BareJid) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(user_key(kind::ROSTER_ITEM, user, 0)?))
}

pub(crate) fn sub_request(user: &BareJid, contact: &BareJid) -> Result<Vec<u8>, StorageError> {
    let c = checked(contact.as_str())?;
    let mut k = user_key(kind::SUB_REQUEST, user, c.len())?;
    k.extend_from_slice(c);
    Ok(k)
}

pub(crate) fn last_unavailable(user: &BareJid) -> Result<Vec<u8>, StorageError> {
    user_key(kind::LAST_UNAVAILABLE, user, 0)
}

pub(crate) fn sub_requests(user: &BareJid) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(user_key(kind::SUB_REQUEST, user, 0)?))
}

/// The contact of a roster item key found by a scan of `range`.
pub(crate) fn decode_roster_contact(range: &KeyRange, key: &[u8]) -> Result<BareJid, StorageError> {
    const R: &str = "roster item key";
    let rest = key
        .strip_prefix(range.start.as_slice())
        .ok_or(StorageError::corrupt(R, "outside its user's range"))?;
    BareJid::parse(utf8(R, rest)?).map_err(|_| StorageError::corrupt(R, "not a valid jid"))
}

// ---- offline ----

pub(crate) fn offline_meta(user: &BareJid) -> Result<Vec<u8>, StorageError> {
    user_key(kind::OFFLINE_META, user, 0)
}

pub(crate) fn offline_msg(user: &BareJid, seq: u64) -> Result<Vec<u8>, StorageError> {
    let mut k = user_key(kind::OFFLINE_MSG, user, 8)?;
    k.extend_from_slice(&seq.to_be_bytes());
    Ok(k)
}

pub(crate) fn offline_msgs(user: &BareJid) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(user_key(kind::OFFLINE_MSG, user, 0)?))
}

/// The messages of `user` with a sequence number up to `seq` included.
pub(crate) fn offline_msgs_through(user: &BareJid, seq: u64) -> Result<KeyRange, StorageError> {
    let mut r = offline_msgs(user)?;
    if let Some(next) = seq.checked_add(1) {
        r.end = offline_msg(user, next)?;
    }
    Ok(r)
}

pub(crate) fn decode_offline_seq(range: &KeyRange, key: &[u8]) -> Result<u64, StorageError> {
    const R: &str = "offline message key";
    let rest = key
        .strip_prefix(range.start.as_slice())
        .ok_or(StorageError::corrupt(R, "outside its user's range"))?;
    let b: [u8; 8] = rest
        .try_into()
        .map_err(|_| StorageError::corrupt(R, "sequence is not 8 bytes"))?;
    Ok(u64::from_be_bytes(b))
}

// ---- vcards ----

pub(crate) fn vcard(user: &BareJid) -> Result<Vec<u8>, StorageError> {
    user_key(kind::VCARD, user, 0)
}

// ---- private XML storage ----

/// `0x01 user 0x00 name 0x00 ns`
pub(crate) fn private(user: &BareJid, name: &str, ns: &str) -> Result<Vec<u8>, StorageError> {
    let name = pubsub::id("private storage element name", name, false)?;
    let ns = pubsub::id("private storage namespace", ns, true)?;
    let mut k = user_key(kind::PRIVATE, user, name.len() + 1 + ns.len())?;
    k.extend_from_slice(name);
    k.push(SEP);
    k.extend_from_slice(ns);
    Ok(k)
}

/// Everything `user` keeps in private storage.
pub(crate) fn private_all(user: &BareJid) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(user_key(kind::PRIVATE, user, 0)?))
}

// ---- caps ----

/// `0x01 key`: the whole rest is the hash key.
pub(crate) fn caps(key: &str) -> Result<Vec<u8>, StorageError> {
    let key = pubsub::id("capabilities hash", key, false)?;
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(kind::CAPS);
    k.extend_from_slice(key);
    Ok(k)
}

// ---- rooms ----

/// `0x01 service 0x00 local` of room `room` (a bare JID with a localpart).
pub(crate) fn room(room: &BareJid) -> Result<Vec<u8>, StorageError> {
    let local = room
        .local()
        .ok_or_else(|| StorageError::InvalidJid(room.to_string()))?;
    let mut k = rooms_of(room.domain())?;
    k.extend_from_slice(checked(local)?);
    Ok(k)
}

/// `0x01 service 0x00`: the prefix of every room of `service`.
fn rooms_of(service: &str) -> Result<Vec<u8>, StorageError> {
    let d = checked(service)?;
    let mut k = Vec::with_capacity(2 + d.len() + 32);
    k.push(kind::ROOM);
    k.extend_from_slice(d);
    k.push(SEP);
    Ok(k)
}

/// The rooms of `service` after room local part `after` (or all).
pub(crate) fn rooms_after(service: &str, after: Option<&str>) -> Result<KeyRange, StorageError> {
    let prefix = rooms_of(service)?;
    let mut r = KeyRange::prefixed(prefix.clone());
    if let Some(a) = after {
        let mut start = prefix;
        start.extend_from_slice(checked(a)?);
        // Just after `a` itself.
        start.push(0x00);
        r.start = start;
    }
    Ok(r)
}

/// The room local part of a key from [`rooms_after`]'s range.
pub(crate) fn decode_room_local(service_len: usize, key: &[u8]) -> Result<String, StorageError> {
    let local = key
        .get(2 + service_len..)
        .ok_or(StorageError::corrupt("room", "short key"))?;
    utf8("room", local).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).expect("test jid")
    }

    #[test]
    fn layout_is_pinned() {
        assert_eq!(account(&jid("al@x")).expect("key"), b"\x01x\x00al");
        assert_eq!(roster_version(&jid("al@x")).expect("key"), b"\x01al@x\x00");
        assert_eq!(
            roster_item(&jid("al@x"), &jid("b@y")).expect("key"),
            b"\x02al@x\x00b@y"
        );
        assert_eq!(
            offline_msg(&jid("al@x"), 258).expect("key"),
            b"\x02al@x\x00\x00\x00\x00\x00\x00\x00\x01\x02"
        );
        assert_eq!(vcard(&jid("al@x")).expect("key"), b"\x01al@x\x00");
        assert_eq!(
            private(&jid("al@x"), "q", "u:n").expect("key"),
            b"\x01al@x\x00q\x00u:n"
        );
        assert!(private(&jid("al@x"), "", "u:n").is_err());
        assert!(private(&jid("al@x"), "q\0", "u:n").is_err());
    }

    #[test]
    fn every_user_record_names_its_owner() {
        use crate::Family as F;
        let u = jid("al@x");
        let own = |f, k: Vec<u8>| owner(f, &k).map(|c| c.into_owned());
        assert_eq!(
            own(F::Accounts, account(&u).expect("k")),
            Some("al@x".into())
        );
        assert_eq!(
            own(F::Accounts, account(&jid("x")).expect("k")),
            Some("x".into())
        );
        assert_eq!(own(F::Accounts, vec![0x02]), None);
        let ri = roster_item(&u, &jid("b@y")).expect("k");
        assert_eq!(own(F::Rosters, ri), Some("al@x".into()));
        assert_eq!(
            own(F::Rosters, roster_version(&u).expect("k")),
            Some("al@x".into())
        );
        assert_eq!(
            own(F::Offline, offline_msg(&u, 7).expect("k")),
            Some("al@x".into())
        );
        assert_eq!(own(F::Vcards, vcard(&u).expect("k")), Some("al@x".into()));
        assert_eq!(
            own(
                F::Private,
                private(&u, "storage", "storage:bookmarks").expect("k")
            ),
            Some("al@x".into())
        );
        assert_eq!(
            own(F::Caps, caps("sha-1 q0/x=").expect("k")),
            Some(crate::caps::home("sha-1 q0/x="))
        );
        assert!(caps("").is_err() && caps("a\0b").is_err());
        assert_eq!(
            own(F::Rooms, room(&jid("tea@conference.x")).expect("k")),
            Some("tea@conference.x".to_string())
        );
        assert!(room(&jid("conference.x")).is_err());
        assert_eq!(own(F::Vcards, Vec::new()), None);
        assert_eq!(own(F::Rosters, b"\x01no-separator".to_vec()), None);
    }

    #[test]
    fn user_ranges_do_not_bleed_into_longer_jids() {
        let short = roster_items(&jid("al@x")).expect("range");
        let long = roster_item(&jid("al@xy"), &jid("b@y")).expect("key");
        assert!(!(short.start <= long && long < short.end));
        let own = roster_item(&jid("al@x"), &jid("b@y")).expect("key");
        assert!(short.start <= own && own < short.end);
    }

    #[test]
    fn offline_through_bounds() {
        let u = jid("al@x");
        let r = offline_msgs_through(&u, 5).expect("range");
        assert!(offline_msg(&u, 5).expect("key") < r.end);
        assert!(offline_msg(&u, 6).expect("key") >= r.end);
        let all = offline_msgs_through(&u, u64::MAX).expect("range");
        assert!(offline_msg(&u, u64::MAX).expect("key") < all.end);
        assert_eq!(
            decode_offline_seq(&r, &offline_msg(&u, 42).expect("key")).expect("seq"),
            42
        );
    }

    #[test]
    fn account_keys_round_trip() {
        for s in ["al@x", "x", "a.b@sub.example"] {
            let j = jid(s);
            assert_eq!(
                decode_account(&account(&j).expect("key")).expect("decode"),
                j
            );
        }
        assert!(decode_account(b"\x01nosep").is_err());
        assert!(decode_account(b"\x07x\x00a").is_err());
        assert!(decode_account(b"").is_err());
    }

    #[test]
    fn nul_in_jid_is_refused() {
        // Once PRECIS rejects NUL in proto this JID cannot even be built.
        if let Ok(j) = BareJid::parse("a\0b@x") {
            assert!(matches!(
                roster_version(&j),
                Err(StorageError::InvalidJid(_))
            ));
            assert!(matches!(account(&j), Err(StorageError::InvalidJid(_))));
        }
    }
}
