//! The on-disk format of Raft log entries: a format version byte, then the
//! entry in postcard (a compact, stable serde format). Entries carry the
//! raw bytes of the keys and values a command writes, and every replicated
//! stanza passes through the log, so the log format must not inflate them
//! (JSON writes a byte array as a list of decimal numbers, up to four
//! times the size). Small records (vote, committed, applied state, snapshot
//! meta) stay JSON in `raft_meta`: they are rare and readable in a dump.

use super::ShardRaft;

type Entry = openraft::Entry<ShardRaft>;

/// The format of entries this build writes.
const ENTRY_V1: u8 = 1;

/// Why bytes read from `raft_log` are not an entry.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryError {
    #[error("empty log entry")]
    Empty,
    #[error("log entry format {0} is unknown")]
    UnknownVersion(u8),
    #[error("log entry does not decode: {0}")]
    Decode(#[from] postcard::Error),
}

pub(crate) fn encode_entry(e: &Entry) -> Result<Vec<u8>, EntryError> {
    Ok(postcard::to_extend(e, vec![ENTRY_V1])?)
}

pub(crate) fn decode_entry(b: &[u8]) -> Result<Entry, EntryError> {
    match b.split_first() {
        None => Err(EntryError::Empty),
        Some((&ENTRY_V1, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&v, _)) => Err(EntryError::UnknownVersion(v)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership};

    use super::*;
    use crate::raft::{Command, Op};

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(7, 3), index)
    }

    #[test]
    fn every_payload_round_trips() {
        let nodes = BTreeMap::from([(1, BasicNode::new("a:1")), (2, BasicNode::new("b:2"))]);
        let membership = Membership::new(vec![[1u64, 2].into()], nodes);
        let entries = [
            Entry {
                log_id: log_id(1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(u64::MAX - 1),
                payload: EntryPayload::Normal(Command {
                    ops: vec![
                        Op::Put {
                            key: b"k\x00\xff".to_vec(),
                            value: vec![0xab; 300],
                        },
                        Op::Delete { key: Vec::new() },
                    ],
                }),
            },
            Entry {
                log_id: log_id(3),
                payload: EntryPayload::Membership(membership),
            },
        ];
        for e in entries {
            let bytes = encode_entry(&e).expect("encode");
            let back = decode_entry(&bytes).expect("decode");
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
        }
    }

    #[test]
    fn values_are_not_inflated() {
        let e = Entry {
            log_id: log_id(42),
            payload: EntryPayload::Normal(Command {
                ops: vec![Op::Put {
                    key: b"alice@example.com".to_vec(),
                    value: vec![0xee; 1000],
                }],
            }),
        };
        let n = encode_entry(&e).expect("encode").len();
        assert!(n < 1040, "{n} bytes for a 1017-byte command");
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let e = Entry {
            log_id: log_id(9),
            payload: EntryPayload::Normal(Command {
                ops: vec![Op::Put {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                }],
            }),
        };
        let bytes = encode_entry(&e).expect("encode");
        assert!(matches!(decode_entry(&[]), Err(EntryError::Empty)));
        assert!(matches!(
            decode_entry(&[9, 0, 0]),
            Err(EntryError::UnknownVersion(9))
        ));
        for cut in 1..bytes.len() {
            assert!(decode_entry(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A declared length far past the end must not allocate or panic.
        let mut huge = vec![ENTRY_V1];
        huge.extend_from_slice(&[0xff; 12]);
        assert!(decode_entry(&huge).is_err());
    }
}
