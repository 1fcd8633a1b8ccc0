//! Keys of the Raft column families. Every key starts with the group id,
//! big-endian, so that a group's records sort together and form a range.
//!
//! - `raft_log`:   group (8) | log index (8)  → entry (`codec.rs`)
//! - `raft_meta`:  group (8) | kind (1)       → vote, committed, last purged,
//!   applied state (JSON), current snapshot (`snapshot.rs`)
//! - `shard_data`: group (8) | key            → value written by a command
//!
//! Group ids run from 0 to [`MAX_GROUP`]: `u64::MAX` is refused, because
//! keys of arbitrary length after its prefix have no finite upper bound for
//! a range delete.

use crate::keys::KeyRange;

pub(crate) const CF_RAFT_LOG: &str = "raft_log";
pub(crate) const CF_RAFT_META: &str = "raft_meta";
pub(crate) const CF_SHARD_DATA: &str = "shard_data";

/// The kinds of `raft_meta` records.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub(crate) enum Meta {
    Vote = 1,
    Committed = 2,
    LastPurged = 3,
    Applied = 4,
    Snapshot = 5,
}

/// The largest group id; see the module documentation.
pub const MAX_GROUP: u64 = u64::MAX - 1;

pub(crate) fn log(group: u64, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The log index in a `raft_log` key of `group`, if it is one.
pub(crate) fn log_index(group: u64, key: &[u8]) -> Option<u64> {
    if key.len() != 16 || key[..8] != group.to_be_bytes() {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[8..]);
    Some(u64::from_be_bytes(b))
}

pub(crate) fn meta(group: u64, kind: Meta) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = kind as u8;
    k
}

pub(crate) fn data(group: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The key of a `shard_data` record of `group` relative to the group, if
/// `key` is one (a shorter key is corrupt, not a reason to panic).
pub(crate) fn data_suffix(group: u64, key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(&group.to_be_bytes())
}

/// The range of `group`'s keys in a column family. `group` is at most
/// [`MAX_GROUP`] (`Store::raft_group` checks), so `group + 1` exists.
pub(crate) fn group_range(group: u64) -> KeyRange {
    KeyRange {
        start: group.to_be_bytes().to_vec(),
        end: group.saturating_add(1).to_be_bytes().to_vec(),
    }
}

/// `group`'s log keys with indexes in `[from, to)`.
pub(crate) fn log_range(group: u64, from: u64, to: u64) -> KeyRange {
    KeyRange {
        start: log(group, from).to_vec(),
        end: log(group, to).to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_group_then_index() {
        assert!(log(1, u64::MAX) < log(2, 0));
        assert!(log(1, 9) < log(1, 10));
        assert_eq!(log_index(7, &log(7, 42)), Some(42));
        assert_eq!(log_index(8, &log(7, 42)), None);
        assert_eq!(log_index(7, b"short"), None);
    }

    #[test]
    fn a_group_range_holds_exactly_its_keys() {
        let r = group_range(5);
        for k in [
            data(5, b""),
            data(5, b"\xff\xff"),
            log(5, u64::MAX).to_vec(),
        ] {
            assert!(k >= r.start && k < r.end);
        }
        for k in [data(4, b"\xff"), data(6, b"")] {
            assert!(!(k >= r.start && k < r.end));
        }
        let last = group_range(MAX_GROUP);
        assert!(data(MAX_GROUP, &[0xff; 100]) < last.end);
        assert_eq!(data_suffix(5, &data(5, b"key")), Some(&b"key"[..]));
        assert_eq!(data_suffix(5, &data(6, b"key")), None);
        assert_eq!(data_suffix(5, &[0, 0, 0]), None);
    }
}
