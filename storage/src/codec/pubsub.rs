//! Value formats of the `pubsub` records (keys in `keys/pubsub.rs`). Each
//! starts with the format version byte; what the key already says (node
//! id, subscriber, subscription id, sequence number) is not repeated. The
//! opaque bytes the router owns (node config, subscription options, item
//! payload) come last without a length, bounded by the value's end.
//!
//! ```text
//! node          V2 | creator: u32 len + bytes | created_ms: u64 | next_seq: u64 | item_count: u64 | low_seq: u64 | config...
//!               (V1, read still: the same without low_seq, which is then 1)
//! affiliation   V1 | code: u8 (1 owner, 2 publisher, 3 publish-only, 4 member, 5 outcast)
//! subscription  V1 | state: u8 (1 pending, 2 unconfigured, 3 subscribed) | options...
//! item id       V1 | seq: u64
//! item          V1 | id: u32 len + bytes | published_ms: u64 | publisher: u8 0, or 1 + u32 len + bytes | payload...
//! index entry   V1
//! ```

use proto::{BareJid, Jid};

use super::{Reader, V1, V2, Writer};
use crate::StorageError;
use crate::pubsub::{Affiliation, Item, NodeRecord, Subscription, SubscriptionState};

const NODE: &str = "pubsub node";
const AFFILIATION: &str = "pubsub affiliation";
const SUBSCRIPTION: &str = "pubsub subscription";
const ITEM: &str = "pubsub item";

pub(crate) fn encode_node(n: &NodeRecord) -> Result<Vec<u8>, StorageError> {
    let creator = n.creator.as_str().as_bytes();
    let mut w = Writer::versioned(NODE, 4 + creator.len() + 32 + n.config.len(), V2);
    w.bytes(creator);
    w.u64(n.created_ms);
    w.u64(n.next_seq);
    w.u64(n.item_count);
    w.u64(n.low_seq);
    w.rest(&n.config);
    w.done()
}

pub(crate) fn decode_node(b: &[u8]) -> Result<NodeRecord, StorageError> {
    let (version, mut r) = Reader::versioned(NODE, b, V2)?;
    let creator = r.string()?;
    let creator = BareJid::parse(&creator).map_err(|_| r.err("creator is not a bare jid"))?;
    let created_ms = r.u64()?;
    let next_seq = r.u64()?;
    let item_count = r.u64()?;
    let low_seq = if version >= V2 { r.u64()? } else { 1 };
    Ok(NodeRecord {
        creator,
        created_ms,
        next_seq,
        item_count,
        low_seq,
        config: r.rest().to_vec(),
    })
}

fn affiliation_code(a: Affiliation) -> u8 {
    match a {
        Affiliation::Owner => 1,
        Affiliation::Publisher => 2,
        Affiliation::PublishOnly => 3,
        Affiliation::Member => 4,
        Affiliation::Outcast => 5,
    }
}

pub(crate) fn encode_affiliation(a: Affiliation) -> Vec<u8> {
    vec![V1, affiliation_code(a)]
}

pub(crate) fn decode_affiliation(b: &[u8]) -> Result<Affiliation, StorageError> {
    let mut r = Reader::new(AFFILIATION, b)?;
    let a = match r.u8()? {
        1 => Affiliation::Owner,
        2 => Affiliation::Publisher,
        3 => Affiliation::PublishOnly,
        4 => Affiliation::Member,
        5 => Affiliation::Outcast,
        _ => return Err(r.err("unknown affiliation")),
    };
    r.finish()?;
    Ok(a)
}

pub(crate) fn encode_subscription(s: &Subscription) -> Vec<u8> {
    let state = match s.state {
        SubscriptionState::Pending => 1,
        SubscriptionState::Unconfigured => 2,
        SubscriptionState::Subscribed => 3,
    };
    let mut buf = Vec::with_capacity(2 + s.options.len());
    buf.push(V1);
    buf.push(state);
    buf.extend_from_slice(&s.options);
    buf
}

/// A subscription value, with the subscriber and subscription id its key
/// holds.
pub(crate) fn decode_subscription(
    jid: &str,
    subid: &str,
    b: &[u8],
) -> Result<Subscription, StorageError> {
    let mut r = Reader::new(SUBSCRIPTION, b)?;
    let state = match r.u8()? {
        1 => SubscriptionState::Pending,
        2 => SubscriptionState::Unconfigured,
        3 => SubscriptionState::Subscribed,
        _ => return Err(r.err("unknown state")),
    };
    let jid = Jid::parse(jid).map_err(|_| r.err("subscriber is not a jid"))?;
    Ok(Subscription {
        jid,
        subid: subid.to_owned(),
        state,
        options: r.rest().to_vec(),
    })
}

pub(crate) fn encode_item(
    id: &str,
    publisher: Option<&Jid>,
    published_ms: u64,
    payload: &[u8],
) -> Result<Vec<u8>, StorageError> {
    let p = publisher.map_or(0, |j| 4 + j.as_str().len());
    let mut w = Writer::new(ITEM, 4 + id.len() + 9 + p + payload.len());
    w.bytes(id.as_bytes());
    w.u64(published_ms);
    match publisher {
        Some(j) => {
            w.u8(1);
            w.bytes(j.as_str().as_bytes());
        }
        None => w.u8(0),
    }
    w.rest(payload);
    w.done()
}

/// An item value, with the sequence number its key holds.
pub(crate) fn decode_item(seq: u64, b: &[u8]) -> Result<Item, StorageError> {
    let mut r = Reader::new(ITEM, b)?;
    let id = r.string()?;
    let published_ms = r.u64()?;
    let publisher = match r.u8()? {
        0 => None,
        1 => {
            let s = r.string()?;
            Some(Jid::parse(&s).map_err(|_| r.err("publisher is not a jid"))?)
        }
        _ => return Err(r.err("bad publisher tag")),
    };
    Ok(Item {
        id,
        seq,
        publisher,
        published_ms,
        payload: r.rest().to_vec(),
    })
}

/// The id of an item value without decoding the rest (trimming and
/// deleting need only that).
pub(crate) fn decode_item_id(b: &[u8]) -> Result<String, StorageError> {
    Reader::new(ITEM, b)?.string()
}

/// The value of an index entry: the key says it all.
pub(crate) fn encode_marker() -> Vec<u8> {
    vec![V1]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every strict prefix of `enc` that ends inside the fixed part
    /// (before the opaque tail of `tail` bytes) fails cleanly.
    fn truncations_fail<T: std::fmt::Debug>(
        enc: &[u8],
        tail: usize,
        dec: impl Fn(&[u8]) -> Result<T, StorageError>,
    ) {
        for i in 0..enc.len() - tail {
            assert!(
                matches!(dec(&enc[..i]), Err(StorageError::Corrupt { .. })),
                "prefix {i}: {:?}",
                dec(&enc[..i])
            );
        }
    }

    fn node() -> NodeRecord {
        NodeRecord {
            creator: BareJid::parse("al@x").expect("jid"),
            created_ms: 1_700_000_000_000,
            config: br#"{"max_items":10}"#.to_vec(),
            next_seq: 42,
            item_count: 7,
            low_seq: 30,
        }
    }

    #[test]
    fn node_round_trip_and_truncation() {
        let enc = encode_node(&node()).expect("encode");
        assert_eq!(decode_node(&enc).expect("decode"), node());
        truncations_fail(&enc, node().config.len(), decode_node);
        let empty = NodeRecord {
            config: Vec::new(),
            ..node()
        };
        let enc = encode_node(&empty).expect("encode");
        assert_eq!(decode_node(&enc).expect("decode"), empty);
        let mut bad = encode_node(&node()).expect("encode");
        bad[5] = b'@'; // creator "@l@x"
        assert!(decode_node(&bad).is_err());
        bad[0] = 3;
        assert!(decode_node(&bad).is_err());
    }

    #[test]
    fn node_of_the_first_format_reads_with_every_item_above_one() {
        let v2 = encode_node(&node()).expect("encode");
        // V1: the same fields without low_seq (8 bytes after item_count).
        let creator_end = 1 + 4 + "al@x".len();
        let fixed_end = creator_end + 24;
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&v2[1..fixed_end]);
        v1.extend_from_slice(&v2[fixed_end + 8..]);
        assert_eq!(
            decode_node(&v1).expect("decode"),
            NodeRecord {
                low_seq: 1,
                ..node()
            }
        );
    }

    #[test]
    fn affiliation_round_trip_and_unknown_codes() {
        for a in [
            Affiliation::Owner,
            Affiliation::Publisher,
            Affiliation::PublishOnly,
            Affiliation::Member,
            Affiliation::Outcast,
        ] {
            assert_eq!(
                decode_affiliation(&encode_affiliation(a)).expect("decode"),
                a
            );
        }
        for b in [&[][..], &[V1], &[V1, 0], &[V1, 6], &[V1, 1, 0], &[2, 1]] {
            assert!(decode_affiliation(b).is_err(), "{b:?}");
        }
    }

    #[test]
    fn subscription_round_trip_and_bad_input() {
        let s = Subscription {
            jid: Jid::parse("bo@y/phone").expect("jid"),
            subid: "abc".into(),
            state: SubscriptionState::Unconfigured,
            options: b"{}".to_vec(),
        };
        let enc = encode_subscription(&s);
        assert_eq!(
            decode_subscription("bo@y/phone", "abc", &enc).expect("decode"),
            s
        );
        truncations_fail(&enc, 2, |b| decode_subscription("bo@y/phone", "abc", b));
        assert!(decode_subscription("bo@y", "", &[V1, 9]).is_err());
        assert!(decode_subscription("@bad", "", &enc).is_err());
    }

    #[test]
    fn item_round_trip_and_truncation() {
        let publisher = Jid::parse("al@x/desk").expect("jid");
        for p in [Some(&publisher), None] {
            let enc = encode_item("it-1", p, 99, b"<entry/>").expect("encode");
            let item = decode_item(5, &enc).expect("decode");
            assert_eq!(
                item,
                Item {
                    id: "it-1".into(),
                    seq: 5,
                    publisher: p.cloned(),
                    published_ms: 99,
                    payload: b"<entry/>".to_vec(),
                }
            );
            assert_eq!(decode_item_id(&enc).expect("id"), "it-1");
            truncations_fail(&enc, 8, |b| decode_item(5, b));
        }
        let mut bad = encode_item("i", None, 1, b"").expect("encode");
        bad[14] = 7; // the publisher tag
        assert!(decode_item(1, &bad).is_err());
        // A declared id length far past the value's end.
        assert!(decode_item(1, &[V1, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
