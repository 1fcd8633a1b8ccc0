//! Keys of the `pubsub` column family: XEP-0060 nodes of a PubSub service
//! and the PEP nodes (XEP-0163) of a user, whose service is the user's bare
//! JID. Every key starts with its kind byte and the service's bare JID
//! followed by 0x00, so everything of one service is one prefix per kind,
//! and the node id follows its own 0x00 wherever a key has more after it.
//! Node ids, item ids, subscription ids and JIDs never contain NUL (we
//! refuse ids that do; JIDs are checked like everywhere else), so a
//! separator can never be mistaken for data and the prefix of node `a`
//! never reaches node `ab`. The layouts are in the table of `keys.rs`.

use std::borrow::Cow;

use proto::{BareJid, Jid};

use super::{KeyRange, SEP, checked, utf8};
use crate::StorageError;

/// Prefix bytes of the `pubsub` record kinds.
pub(crate) mod kind {
    pub const NODE: u8 = 0x01;
    pub const AFFILIATION: u8 = 0x02;
    pub const SUBSCRIPTION: u8 = 0x03;
    pub const ITEM_ID: u8 = 0x04;
    pub const ITEM: u8 = 0x05;
    pub const BY_SUBSCRIBER: u8 = 0x06;
    pub const BY_AFFILIATED: u8 = 0x07;
    pub const BY_CREATOR: u8 = 0x08;
    pub const SUB_COUNT: u8 = 0x09;
    /// Every kind, for dropping a whole service.
    pub const ALL: [u8; 9] = [
        NODE,
        AFFILIATION,
        SUBSCRIPTION,
        ITEM_ID,
        ITEM,
        BY_SUBSCRIBER,
        BY_AFFILIATED,
        BY_CREATOR,
        SUB_COUNT,
    ];
}

/// The longest node id, item id or subscription id, in bytes (the limit
/// RFC 7622 sets for each part of a JID, which is where a node id of a
/// service often ends up).
pub const MAX_ID_LEN: usize = 1023;

/// `id` as key bytes, if it is non-empty (unless `may_be_empty`), at most
/// [`MAX_ID_LEN`] bytes and free of NUL.
pub(crate) fn id<'a>(
    what: &'static str,
    id: &'a str,
    may_be_empty: bool,
) -> Result<&'a [u8], StorageError> {
    let reason = if id.is_empty() && !may_be_empty {
        "it is empty"
    } else if id.len() > MAX_ID_LEN {
        "it is longer than 1023 bytes"
    } else if id.as_bytes().contains(&SEP) {
        "it contains a NUL byte"
    } else {
        return Ok(id.as_bytes());
    };
    Err(StorageError::InvalidId { what, reason })
}

pub(crate) fn node_id(node: &str) -> Result<&[u8], StorageError> {
    id("pubsub node id", node, false)
}

pub(crate) fn item_id_bytes(item: &str) -> Result<&[u8], StorageError> {
    id("pubsub item id", item, false)
}

pub(crate) fn subid(subid: &str) -> Result<&[u8], StorageError> {
    id("pubsub subscription id", subid, true)
}

/// The sharding key of a node, see `pubsub::home`.
pub(crate) fn home<'a>(service: &'a str, node: &str) -> Cow<'a, str> {
    // A canonical bare JID has '@' exactly when it has a localpart: the
    // domainpart of a JID never contains one.
    if service.contains('@') {
        Cow::Borrowed(service)
    } else {
        Cow::Owned(format!("{service}/{node}"))
    }
}

/// `kind service 0x00 part 0x00 part ...` with room for `extra` bytes.
fn key(
    kind: u8,
    service: &BareJid,
    parts: &[&[u8]],
    extra: usize,
) -> Result<Vec<u8>, StorageError> {
    let s = checked(service.as_str())?;
    let len = 2 + s.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>() + extra;
    let mut k = Vec::with_capacity(len);
    k.push(kind);
    k.extend_from_slice(s);
    k.push(SEP);
    for p in parts {
        k.extend_from_slice(p);
        k.push(SEP);
    }
    Ok(k)
}

/// `key(...)` followed by `last` with no separator after it.
fn key_ending(
    kind: u8,
    service: &BareJid,
    parts: &[&[u8]],
    last: &[u8],
) -> Result<Vec<u8>, StorageError> {
    let mut k = key(kind, service, parts, last.len())?;
    k.extend_from_slice(last);
    Ok(k)
}

/// Everything of `kind` on `service`.
pub(crate) fn service_range(kind: u8, service: &BareJid) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(key(kind, service, &[], 0)?))
}

// ---- nodes ----

/// `0x01 service 0x00 node`
pub(crate) fn node(service: &BareJid, node: &str) -> Result<Vec<u8>, StorageError> {
    key_ending(kind::NODE, service, &[], node_id(node)?)
}

/// The nodes of `service` sorting after `after` (all if `None`).
pub(crate) fn nodes(service: &BareJid, after: Option<&str>) -> Result<KeyRange, StorageError> {
    let mut r = service_range(kind::NODE, service)?;
    if let Some(a) = after {
        // The first key after `... after` itself: no node id contains
        // NUL, so none sorts between the two.
        r.start.extend_from_slice(a.as_bytes());
        r.start.push(SEP);
    }
    Ok(r)
}

/// The node id of a key found in the range of `service`'s nodes.
pub(crate) fn decode_node_id(service_len: usize, key: &[u8]) -> Result<String, StorageError> {
    const R: &str = "pubsub node key";
    let rest = key
        .get(2 + service_len..)
        .ok_or(StorageError::corrupt(R, "shorter than its service"))?;
    Ok(utf8(R, rest)?.to_owned())
}

// ---- affiliations ----

/// `0x02 service 0x00 node 0x00 jid`
pub(crate) fn affiliation(
    service: &BareJid,
    node: &str,
    jid: &BareJid,
) -> Result<Vec<u8>, StorageError> {
    key_ending(
        kind::AFFILIATION,
        service,
        &[node_id(node)?],
        checked(jid.as_str())?,
    )
}

pub(crate) fn affiliations(service: &BareJid, node: &str) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(key(
        kind::AFFILIATION,
        service,
        &[node_id(node)?],
        0,
    )?))
}

/// `0x07 service 0x00 jid 0x00 node`: the nodes of `service` where `jid`
/// has an affiliation (XEP-0060 §5.7).
pub(crate) fn by_affiliated(
    service: &BareJid,
    jid: &str,
    node: &str,
) -> Result<Vec<u8>, StorageError> {
    key_ending(
        kind::BY_AFFILIATED,
        service,
        &[checked(jid)?],
        node_id(node)?,
    )
}

pub(crate) fn by_affiliated_range(
    service: &BareJid,
    jid: &BareJid,
) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(key(
        kind::BY_AFFILIATED,
        service,
        &[checked(jid.as_str())?],
        0,
    )?))
}

// ---- subscriptions ----

/// `0x03 service 0x00 node 0x00 jid 0x00 subid`
pub(crate) fn subscription(
    service: &BareJid,
    node: &str,
    jid: &Jid,
    sub: &str,
) -> Result<Vec<u8>, StorageError> {
    key_ending(
        kind::SUBSCRIPTION,
        service,
        &[node_id(node)?, checked(jid.as_str())?],
        subid(sub)?,
    )
}

pub(crate) fn subscriptions(service: &BareJid, node: &str) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(key(
        kind::SUBSCRIPTION,
        service,
        &[node_id(node)?],
        0,
    )?))
}

/// `0x09 service 0x00 node`: how many subscriptions the node has.
pub(crate) fn subscription_count(service: &BareJid, node: &str) -> Result<Vec<u8>, StorageError> {
    key_ending(kind::SUB_COUNT, service, &[], node_id(node)?)
}

/// The subscriptions of exactly `jid` to one node.
pub(crate) fn subscriptions_of(
    service: &BareJid,
    node: &str,
    jid: &Jid,
) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(key(
        kind::SUBSCRIPTION,
        service,
        &[node_id(node)?, checked(jid.as_str())?],
        0,
    )?))
}

/// The subscriber and subscription id of a subscription key of `range`
/// (one node's subscriptions), and the subscriber's string as stored.
pub(crate) fn decode_subscription<'k>(
    range: &KeyRange,
    key: &'k [u8],
) -> Result<(&'k str, &'k str), StorageError> {
    const R: &str = "pubsub subscription key";
    let rest = key
        .strip_prefix(range.start.as_slice())
        .ok_or(StorageError::corrupt(R, "outside its node's range"))?;
    let i = rest
        .iter()
        .position(|&b| b == SEP)
        .ok_or(StorageError::corrupt(R, "no separator after the jid"))?;
    Ok((utf8(R, &rest[..i])?, utf8(R, &rest[i + 1..])?))
}

/// `0x06 service 0x00 bare 0x00 resource 0x00 node 0x00 subid`, the
/// resource empty for a bare subscriber: the subscriptions of one
/// subscriber across a service (XEP-0060 §5.6), a bare JID's with those of
/// its full JIDs.
pub(crate) fn by_subscriber(
    service: &BareJid,
    jid: &Jid,
    node: &str,
    sub: &str,
) -> Result<Vec<u8>, StorageError> {
    by_subscriber_parts(
        service,
        jid.bare_str(),
        jid.resource().unwrap_or(""),
        node,
        sub,
    )
}

fn by_subscriber_parts(
    service: &BareJid,
    bare: &str,
    resource: &str,
    node: &str,
    sub: &str,
) -> Result<Vec<u8>, StorageError> {
    key_ending(
        kind::BY_SUBSCRIBER,
        service,
        &[checked(bare)?, checked(resource)?, node_id(node)?],
        subid(sub)?,
    )
}

/// The subscriptions of `jid` on `service`: of the full JID only, or of
/// the bare JID and all its full JIDs.
pub(crate) fn by_subscriber_range(service: &BareJid, jid: &Jid) -> Result<KeyRange, StorageError> {
    let bare = checked(jid.bare_str())?;
    let k = match jid.resource() {
        Some(r) => key(kind::BY_SUBSCRIBER, service, &[bare, checked(r)?], 0)?,
        None => key(kind::BY_SUBSCRIBER, service, &[bare], 0)?,
    };
    Ok(KeyRange::prefixed(k))
}

/// One entry of the subscriber index, taken apart.
pub(crate) struct BySubscriber<'k> {
    pub bare: &'k str,
    pub resource: &'k str,
    pub node: &'k str,
    pub subid: &'k str,
}

impl BySubscriber<'_> {
    /// The subscriber's JID string, as in the subscription's own key.
    pub fn jid(&self) -> Cow<'_, str> {
        if self.resource.is_empty() {
            Cow::Borrowed(self.bare)
        } else {
            Cow::Owned(format!("{}/{}", self.bare, self.resource))
        }
    }
}

pub(crate) fn decode_by_subscriber<'k>(
    service: &BareJid,
    key: &'k [u8],
) -> Result<BySubscriber<'k>, StorageError> {
    const R: &str = "pubsub subscriber index key";
    let rest = key
        .get(2 + service.as_str().len()..)
        .ok_or(StorageError::corrupt(R, "shorter than its service"))?;
    let mut parts = rest.splitn(4, |&b| b == SEP);
    let mut next = || {
        parts
            .next()
            .ok_or(StorageError::corrupt(R, "missing separator"))
            .and_then(|p| utf8(R, p))
    };
    Ok(BySubscriber {
        bare: next()?,
        resource: next()?,
        node: next()?,
        subid: next()?,
    })
}

/// The subscriber index entry of a subscription whose subscriber string
/// (`jid`, canonical, as in its key) was found by a scan.
pub(crate) fn by_subscriber_of(
    service: &BareJid,
    jid: &str,
    node: &str,
    sub: &str,
) -> Result<Vec<u8>, StorageError> {
    // The bare part of a canonical JID never contains '/': the first one
    // starts the resource (RFC 7622 §3.2).
    let (bare, resource) = jid.split_once('/').unwrap_or((jid, ""));
    by_subscriber_parts(service, bare, resource, node, sub)
}

// ---- items ----

/// `0x04 service 0x00 node 0x00 item-id` -> the item's sequence number.
pub(crate) fn item_id(service: &BareJid, node: &str, item: &str) -> Result<Vec<u8>, StorageError> {
    key_ending(
        kind::ITEM_ID,
        service,
        &[node_id(node)?],
        item_id_bytes(item)?,
    )
}

pub(crate) fn item_ids(service: &BareJid, node: &str) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(key(
        kind::ITEM_ID,
        service,
        &[node_id(node)?],
        0,
    )?))
}

/// `0x05 service 0x00 node 0x00 seq:u64be` -> the item, in publication
/// order.
pub(crate) fn item(service: &BareJid, node: &str, seq: u64) -> Result<Vec<u8>, StorageError> {
    key_ending(kind::ITEM, service, &[node_id(node)?], &seq.to_be_bytes())
}

pub(crate) fn items(service: &BareJid, node: &str) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(key(
        kind::ITEM,
        service,
        &[node_id(node)?],
        8,
    )?))
}

/// The items of a node published after `seq` (`newest_first: false`) or
/// before it (`true`); all of them without `seq`.
pub(crate) fn items_past(
    service: &BareJid,
    node: &str,
    seq: Option<u64>,
    newest_first: bool,
) -> Result<KeyRange, StorageError> {
    let mut r = items(service, node)?;
    match (seq, newest_first) {
        (None, _) => {}
        (Some(s), true) => r.end = item(service, node, s)?,
        (Some(s), false) => match s.checked_add(1) {
            Some(n) => r.start = item(service, node, n)?,
            None => r.start = r.end.clone(),
        },
    }
    Ok(r)
}

pub(crate) fn decode_item_seq(range_prefix: &[u8], key: &[u8]) -> Result<u64, StorageError> {
    const R: &str = "pubsub item key";
    let rest = key
        .strip_prefix(range_prefix)
        .ok_or(StorageError::corrupt(R, "outside its node's range"))?;
    let b: [u8; 8] = rest
        .try_into()
        .map_err(|_| StorageError::corrupt(R, "sequence is not 8 bytes"))?;
    Ok(u64::from_be_bytes(b))
}

// ---- nodes by creator ----

/// `0x08 service 0x00 creator 0x00 node`: the nodes one account created
/// (a quota on nodes per account).
pub(crate) fn by_creator(
    service: &BareJid,
    creator: &BareJid,
    node: &str,
) -> Result<Vec<u8>, StorageError> {
    key_ending(
        kind::BY_CREATOR,
        service,
        &[checked(creator.as_str())?],
        node_id(node)?,
    )
}

pub(crate) fn by_creator_range(
    service: &BareJid,
    creator: &BareJid,
) -> Result<KeyRange, StorageError> {
    Ok(KeyRange::prefixed(key(
        kind::BY_CREATOR,
        service,
        &[checked(creator.as_str())?],
        0,
    )?))
}

/// The node id at the end of a `0x07` or `0x08` index key of `service`.
pub(crate) fn decode_index_node<'k>(
    service: &BareJid,
    key: &'k [u8],
) -> Result<&'k str, StorageError> {
    const R: &str = "pubsub index key";
    let rest = key
        .get(2 + service.as_str().len()..)
        .ok_or(StorageError::corrupt(R, "shorter than its service"))?;
    let i = rest
        .iter()
        .position(|&b| b == SEP)
        .ok_or(StorageError::corrupt(R, "no separator before the node"))?;
    utf8(R, &rest[i + 1..])
}

/// What follows the prefix `range` was built from in a key found by
/// scanning it: the last field of the key (a JID, node id or subscription
/// id).
pub(crate) fn decode_tail<'k>(
    record: &'static str,
    range: &KeyRange,
    key: &'k [u8],
) -> Result<&'k str, StorageError> {
    let rest = key
        .strip_prefix(range.start.as_slice())
        .ok_or(StorageError::corrupt(record, "outside the range scanned"))?;
    utf8(record, rest)
}

/// The subscription key of a subscriber index entry.
pub(crate) fn subscription_of_entry(
    service: &BareJid,
    e: &BySubscriber<'_>,
) -> Result<Vec<u8>, StorageError> {
    key_ending(
        kind::SUBSCRIPTION,
        service,
        &[node_id(e.node)?, checked(&e.jid())?],
        subid(e.subid)?,
    )
}

// ---- ownership ----

/// The `home` of the node a `pubsub` record belongs to: the field after
/// the service that holds the node id, per kind.
pub(crate) fn owner(key: &[u8]) -> Option<Cow<'_, str>> {
    let (&k, rest) = key.split_first()?;
    let node_field = match k {
        kind::NODE
        | kind::AFFILIATION
        | kind::SUBSCRIPTION
        | kind::ITEM_ID
        | kind::ITEM
        | kind::SUB_COUNT => 0,
        kind::BY_AFFILIATED | kind::BY_CREATOR => 1,
        kind::BY_SUBSCRIBER => 2,
        _ => return None,
    };
    let i = rest.iter().position(|&b| b == SEP)?;
    let service = std::str::from_utf8(&rest[..i]).ok()?;
    if service.contains('@') {
        return Some(Cow::Borrowed(service));
    }
    // The node id is a whole field: up to the next separator, or the end
    // of the key for the kinds where it comes last.
    let mut fields = rest[i + 1..].split(|&b| b == SEP);
    let node = fields.nth(node_field)?;
    let node = std::str::from_utf8(node).ok()?;
    if node.is_empty() {
        return None;
    }
    Some(home(service, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Family;

    fn bare(s: &str) -> BareJid {
        BareJid::parse(s).expect("test jid")
    }

    fn full(s: &str) -> Jid {
        Jid::parse(s).expect("test jid")
    }

    #[test]
    fn layout_is_pinned() {
        let s = bare("ps.x");
        assert_eq!(node(&s, "n").expect("k"), b"\x01ps.x\x00n");
        assert_eq!(
            affiliation(&s, "n", &bare("a@y")).expect("k"),
            b"\x02ps.x\x00n\x00a@y"
        );
        assert_eq!(
            subscription(&s, "n", &full("a@y/r"), "7").expect("k"),
            b"\x03ps.x\x00n\x00a@y/r\x007"
        );
        assert_eq!(item_id(&s, "n", "i").expect("k"), b"\x04ps.x\x00n\x00i");
        assert_eq!(
            item(&s, "n", 258).expect("k"),
            b"\x05ps.x\x00n\x00\0\0\0\0\0\0\x01\x02"
        );
        assert_eq!(
            by_subscriber(&s, &full("a@y/r"), "n", "7").expect("k"),
            b"\x06ps.x\x00a@y\x00r\x00n\x007"
        );
        assert_eq!(
            by_subscriber(&s, &full("a@y"), "n", "").expect("k"),
            b"\x06ps.x\x00a@y\x00\x00n\x00"
        );
        assert_eq!(
            by_affiliated(&s, "a@y", "n").expect("k"),
            b"\x07ps.x\x00a@y\x00n"
        );
        assert_eq!(
            by_creator(&s, &bare("a@y"), "n").expect("k"),
            b"\x08ps.x\x00a@y\x00n"
        );
    }

    /// Every kind of record, for a node `n` of `service`.
    fn every_key(service: &BareJid, n: &str) -> Vec<Vec<u8>> {
        let j = bare("a@y");
        let f = full("a@y/r");
        vec![
            node(service, n).expect("k"),
            affiliation(service, n, &j).expect("k"),
            subscription(service, n, &f, "s").expect("k"),
            subscription(service, n, &f, "").expect("k"),
            item_id(service, n, "i").expect("k"),
            item(service, n, 0).expect("k"),
            item(service, n, u64::MAX).expect("k"),
            by_subscriber(service, &f, n, "s").expect("k"),
            by_subscriber(service, &Jid::Bare(j.clone()), n, "").expect("k"),
            by_affiliated(service, j.as_str(), n).expect("k"),
            by_creator(service, &j, n).expect("k"),
            subscription_count(service, n).expect("k"),
        ]
    }

    #[test]
    fn every_record_is_owned_by_its_nodes_home() {
        for (service, n, home) in [
            ("ps.x", "n", "ps.x/n"),
            ("ps.x", "a/b c/é", "ps.x/a/b c/é"),
            ("al@x", "urn:xmpp:microblog:0", "al@x"),
            ("al@x", "n", "al@x"),
        ] {
            let service = bare(service);
            for k in every_key(&service, n) {
                assert_eq!(
                    crate::keys::owner(Family::Pubsub, &k).as_deref(),
                    Some(home),
                    "{k:?}"
                );
            }
            assert_eq!(crate::pubsub::home(&service, n), home);
        }
        let long = "n".repeat(MAX_ID_LEN);
        for k in every_key(&bare("ps.x"), &long) {
            assert_eq!(
                crate::keys::owner(Family::Pubsub, &k),
                Some(Cow::Owned(format!("ps.x/{long}")))
            );
        }
        for junk in [
            &b""[..],
            b"\x0aps.x\x00n",
            b"\x01ps.x",
            b"\x01ps.x\x00",
            b"\x02\xff\x00n",
        ] {
            assert_eq!(crate::keys::owner(Family::Pubsub, junk), None, "{junk:?}");
        }
    }

    #[test]
    fn ids_are_checked() {
        let s = bare("ps.x");
        for bad in ["", "a\0b"] {
            assert!(matches!(node(&s, bad), Err(StorageError::InvalidId { .. })));
            assert!(item_id(&s, "n", bad).is_err());
        }
        let long = "é".repeat(512);
        assert!(node(&s, &long).is_err());
        assert!(node(&s, &long[..MAX_ID_LEN - 1]).is_ok());
        assert!(subscription(&s, "n", &full("a@y"), "").is_ok());
        assert!(subscription(&s, "n", &full("a@y"), "a\0").is_err());
    }

    #[test]
    fn prefixes_do_not_bleed_into_longer_names() {
        let a = subscriptions(&bare("ps.x"), "a").expect("r");
        let ab = subscription(&bare("ps.x"), "ab", &full("u@y"), "").expect("k");
        assert!(!(a.start <= ab && ab < a.end));
        let al = service_range(kind::NODE, &bare("al@x")).expect("r");
        let alxy = node(&bare("al@xy"), "n").expect("k");
        assert!(!(al.start <= alxy && alxy < al.end));
        // A bare subscriber's range holds its full JIDs', a full JID's
        // only its own.
        let s = bare("ps.x");
        let bare_range = by_subscriber_range(&s, &full("u@y")).expect("r");
        let phone = by_subscriber_range(&s, &full("u@y/phone")).expect("r");
        let k = by_subscriber(&s, &full("u@y/phone2"), "n", "").expect("k");
        assert!(bare_range.start <= k && k < bare_range.end);
        assert!(!(phone.start <= k && k < phone.end));
        let e = decode_by_subscriber(&s, &k).expect("decode");
        assert_eq!(
            (e.bare, e.resource, e.node, e.subid, e.jid().as_ref()),
            ("u@y", "phone2", "n", "", "u@y/phone2")
        );
    }

    #[test]
    fn item_ranges_past_a_sequence_number() {
        let s = bare("ps.x");
        let older = items_past(&s, "n", Some(5), true).expect("r");
        assert!(item(&s, "n", 4).expect("k") < older.end);
        assert!(item(&s, "n", 5).expect("k") >= older.end);
        let newer = items_past(&s, "n", Some(5), false).expect("r");
        assert!(item(&s, "n", 6).expect("k") >= newer.start);
        assert!(item(&s, "n", 5).expect("k") < newer.start);
        let none = items_past(&s, "n", Some(u64::MAX), false).expect("r");
        assert_eq!(none.start, none.end);
    }
}
