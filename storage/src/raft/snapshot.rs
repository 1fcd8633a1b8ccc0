//! The bytes of a group snapshot, as sent to other nodes: a format version
//! byte, then the group's data records as a sequence of
//! `u32 key length | key | u32 value length | value`, big-endian lengths.
//! Each key starts with a tag byte: 0 for the group's own `shard_data`
//! records (key relative to the group), or a `Family` tag for user data
//! the group owns (absolute key in that family's column family). Decoding checks every length, so a truncated
//! or corrupt snapshot is an error, never a panic or a partial install.
//!
//! The current snapshot kept in `raft_meta` is one value, so that its meta
//! and data can never come from two different builds:
//! `u32 meta length | meta (JSON) | snapshot bytes`.

/// The snapshot format this build writes.
const SNAPSHOT_V2: u8 = 2;

/// Encode records (in key order) into snapshot bytes.
pub(crate) fn encode<'a>(records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = vec![SNAPSHOT_V2];
    for (k, v) in records {
        for part in [k, v] {
            // Keys and values come from RocksDB records, far below 4 GiB.
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// Takes one `u32 length | bytes` part off the front of `b`.
fn part<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
    let Some((len, rest)) = b.split_first_chunk::<4>() else {
        return Err("truncated length");
    };
    let n = u32::from_be_bytes(*len) as usize;
    if rest.len() < n {
        return Err("truncated record");
    }
    let (p, tail) = rest.split_at(n);
    *b = tail;
    Ok(p)
}

/// Decode snapshot bytes into records.
pub(crate) fn decode(b: &[u8]) -> Result<Vec<super::Record>, &'static str> {
    let mut b = match b.split_first() {
        Some((&SNAPSHOT_V2, rest)) => rest,
        Some(_) => return Err("unknown format version"),
        None => return Err("empty"),
    };
    let mut out = Vec::new();
    while !b.is_empty() {
        let k = part(&mut b)?;
        let v = part(&mut b)?;
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}

/// The stored form of the current snapshot: its meta and its bytes.
pub(crate) fn frame(meta: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + meta.len() + data.len());
    // Snapshot meta is a few hundred bytes of JSON.
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(data);
    out
}

/// Splits a stored snapshot into its meta and its bytes.
pub(crate) fn unframe(mut b: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let meta = part(&mut b)?;
    Ok((meta, b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn records_round_trip_and_truncation_is_an_error() {
        let recs: Vec<(&[u8], &[u8])> = vec![(b"a", b"1"), (b"", b""), (b"key\x00\xff", b"value")];
        let bytes = super::encode(recs.iter().copied());
        let back = super::decode(&bytes).expect("decodes");
        let back: Vec<(&[u8], &[u8])> = back.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(back, recs);
        for cut in 1..bytes.len() {
            let r = super::decode(&bytes[..cut]);
            // Every prefix either ends between records or is an error.
            if let Ok(v) = r {
                assert!(v.len() < recs.len());
            }
        }
        assert!(super::decode(&[]).is_err());
        assert!(super::decode(&[1]).is_err(), "unknown version");
        assert!(super::decode(&[2, 0, 0, 0, 9, 1]).is_err());
        assert_eq!(super::decode(&[2]), Ok(Vec::new()));
    }

    #[test]
    fn stored_snapshot_frames_round_trip() {
        let framed = super::frame(b"{\"m\":1}", b"\x01data");
        assert_eq!(
            super::unframe(&framed),
            Ok((&b"{\"m\":1}"[..], &b"\x01data"[..]))
        );
        assert!(super::unframe(&framed[..6]).is_err());
        assert!(super::unframe(&[0, 0]).is_err());
    }
}
