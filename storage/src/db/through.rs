//! Reads as they will be once a pending batch is written: the batch's
//! own puts, deletes and range deletes over the committed records. A
//! handler plans several writes before one commit and must see them (a
//! counter bumped twice, an item published then trimmed).

use rocksdb::ReadOptions;

use super::Db;
use crate::StorageError;
use crate::batch::{Batch, Family, Write};
use crate::keys::KeyRange;

impl Db {
    /// The value of `key` as it will be once `pending` is written.
    pub(crate) fn get_through(
        &self,
        pending: &Batch,
        family: Family,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match pending.written(family, key) {
            Some(v) => Ok(v.map(<[u8]>::to_vec)),
            None => self.get(family.cf(), key),
        }
    }

    /// Whether `key` will exist once `pending` is written.
    pub(crate) fn exists_through(
        &self,
        pending: &Batch,
        family: Family,
        key: &[u8],
    ) -> Result<bool, StorageError> {
        match pending.written(family, key) {
            Some(v) => Ok(v.is_some()),
            None => self.exists(family.cf(), key),
        }
    }

    /// Up to `limit` records of `range` as they will be once `pending` is
    /// written (its puts, deletes and range deletes over the committed
    /// records), in key order or from the last key down.
    pub(crate) fn scan_through(
        &self,
        pending: &Batch,
        family: Family,
        range: &KeyRange,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<crate::raft::Record>, StorageError> {
        let overlay = Overlay::new(pending, family, range);
        let mut planned: Vec<(&[u8], &[u8])> = overlay
            .entries
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        if reverse {
            planned.reverse();
        }
        let mut planned = planned.into_iter().peekable();
        let mut out = Vec::new();
        if !overlay.clears(range) {
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(range.start.clone());
            ro.set_iterate_upper_bound(range.end.clone());
            let mut it = self.db.raw_iterator_cf_opt(self.cf(family.cf())?, ro);
            if reverse {
                it.seek_to_last();
            } else {
                it.seek_to_first();
            }
            while out.len() < limit {
                let (Some(k), Some(v)) = (it.key(), it.value()) else {
                    break;
                };
                // Planned records that come first in this direction.
                while out.len() < limit {
                    match planned.peek() {
                        Some(&(pk, pv)) if (pk < k) != reverse => {
                            out.push((pk.to_vec(), pv.to_vec()));
                            planned.next();
                        }
                        _ => break,
                    }
                }
                if out.len() < limit && !overlay.hides(k) {
                    out.push((k.to_vec(), v.to_vec()));
                }
                if reverse {
                    it.prev();
                } else {
                    it.next();
                }
            }
            it.status()?;
        }
        out.extend(
            planned
                .take(limit.saturating_sub(out.len()))
                .map(|(k, v)| (k.to_vec(), v.to_vec())),
        );
        Ok(out)
    }
}

/// What a pending batch does to one key range of one family: the last
/// write to each key it touches (`None`: deleted), and the parts of the
/// range it deletes wholesale.
struct Overlay<'b> {
    entries: std::collections::BTreeMap<&'b [u8], Option<&'b [u8]>>,
    cleared: Vec<(&'b [u8], &'b [u8])>,
}

impl<'b> Overlay<'b> {
    fn new(pending: &'b Batch, family: Family, range: &'b KeyRange) -> Overlay<'b> {
        use std::ops::Bound;
        let mut o = Overlay {
            entries: std::collections::BTreeMap::new(),
            cleared: Vec::new(),
        };
        let inside = |k: &[u8]| k >= range.start.as_slice() && k < range.end.as_slice();
        for w in pending.writes() {
            match w {
                Write::Put {
                    family: f,
                    key,
                    value,
                } if *f == family && inside(key) => {
                    o.entries.insert(key, Some(value));
                }
                Write::Delete { family: f, key } if *f == family && inside(key) => {
                    o.entries.insert(key, None);
                }
                Write::DeleteRange {
                    family: f,
                    start,
                    end,
                } if *f == family => {
                    let s = start.as_slice().max(range.start.as_slice());
                    let e = end.as_slice().min(range.end.as_slice());
                    if s < e {
                        for (_, v) in o
                            .entries
                            .range_mut::<[u8], _>((Bound::Included(s), Bound::Excluded(e)))
                        {
                            *v = None;
                        }
                        o.cleared.push((s, e));
                    }
                }
                _ => {}
            }
        }
        o
    }

    /// Whether a committed record under `key` is overwritten or deleted.
    fn hides(&self, key: &[u8]) -> bool {
        self.entries.contains_key(key) || self.cleared.iter().any(|&(s, e)| s <= key && key < e)
    }

    /// Whether every committed record of `range` is deleted.
    fn clears(&self, range: &KeyRange) -> bool {
        self.cleared
            .iter()
            .any(|&(s, e)| s <= range.start.as_slice() && range.end.as_slice() <= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    fn range(a: &[u8], b: &[u8]) -> KeyRange {
        KeyRange {
            start: a.to_vec(),
            end: b.to_vec(),
        }
    }

    fn keys_of(records: &[crate::raft::Record]) -> Vec<&[u8]> {
        records.iter().map(|(k, _)| k.as_slice()).collect()
    }

    #[test]
    fn scan_through_merges_planned_writes_over_committed_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), StoreOptions::default()).expect("open");
        let f = Family::Rosters;
        let mut committed = Batch::new();
        for k in [&b"a"[..], b"c", b"e", b"g", b"i", b"z"] {
            committed.put(f, k.to_vec(), k.to_vec());
        }
        db.apply(&committed).expect("apply");
        let r = range(b"b", b"y");

        let mut p = Batch::new();
        p.put(f, b"d".to_vec(), b"new".to_vec());
        p.put(f, b"e".to_vec(), b"E".to_vec());
        p.delete(f, b"c".to_vec());
        p.put(f, b"h".to_vec(), b"h".to_vec());
        p.delete_range(f, b"g".to_vec(), b"i".to_vec()); // g and the planned h
        p.put(f, b"a".to_vec(), b"outside".to_vec());
        p.put(f, b"x".to_vec(), b"x".to_vec());
        p.put(Family::Offline, b"f".to_vec(), b"other family".to_vec());

        let all = db.scan_through(&p, f, &r, false, usize::MAX).expect("scan");
        assert_eq!(keys_of(&all), [&b"d"[..], b"e", b"i", b"x"]);
        assert_eq!(all[1].1, b"E");
        let back = db.scan_through(&p, f, &r, true, usize::MAX).expect("scan");
        assert_eq!(keys_of(&back), [&b"x"[..], b"i", b"e", b"d"]);
        for n in 0..5 {
            let fw = db.scan_through(&p, f, &r, false, n).expect("scan");
            assert_eq!(fw, all[..n.min(4)]);
            let bw = db.scan_through(&p, f, &r, true, n).expect("scan");
            assert_eq!(bw, back[..n.min(4)]);
        }
        // A range delete over the whole range, then a put.
        let mut p = Batch::new();
        p.delete_range(f, b"a".to_vec(), b"zz".to_vec());
        p.put(f, b"c".to_vec(), b"again".to_vec());
        let all = db.scan_through(&p, f, &r, false, usize::MAX).expect("scan");
        assert_eq!(all, vec![(b"c".to_vec(), b"again".to_vec())]);
        // Nothing planned: the committed records.
        let all = db
            .scan_through(&Batch::new(), f, &r, false, usize::MAX)
            .expect("scan");
        assert_eq!(keys_of(&all), [&b"c"[..], b"e", b"g", b"i"]);
        assert_eq!(db.count(f.cf(), &r).expect("count"), 4);
        let top = db.scan_dir(f.cf(), &r, true, 2, |k, _| Ok(k.to_vec()));
        assert_eq!(top.expect("scan"), [b"i".to_vec(), b"g".to_vec()]);
    }
}
