//! The value codec: a small hand-written binary format, one per record kind,
//! each starting with a format version byte so a later build can read what
//! an earlier one wrote. Integers are big-endian, byte strings and strings
//! carry a u32 length. Decoding never panics and never trusts a length
//! before checking it against the bytes at hand: anything unexpected
//! (truncation, trailing bytes, unknown version or flag bits, bad UTF-8) is
//! `StorageError::Corrupt`. The PubSub records' formats are in
//! `codec/pubsub.rs`.

use proto::BareJid;
use proto::roster::{SubState, Subscription};
use proto::sasl::{ScramCredentials, StoredCredentials};

use crate::StorageError;
use crate::rosters::RosterItem;

mod pubsub;
pub(crate) use pubsub::*;

/// The first format version of every record kind.
const V1: u8 = 1;
/// The second format of the record kinds that have one (the PubSub node).
const V2: u8 = 2;

/// Appends to a value being encoded.
struct Writer {
    buf: Vec<u8>,
    record: &'static str,
    /// A byte string did not fit its u32 length.
    too_large: bool,
}

impl Writer {
    fn new(record: &'static str, capacity: usize) -> Writer {
        Writer::versioned(record, capacity, V1)
    }
    fn versioned(record: &'static str, capacity: usize, version: u8) -> Writer {
        let mut buf = Vec::with_capacity(capacity + 1);
        buf.push(version);
        Writer {
            buf,
            record,
            too_large: false,
        }
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Bytes without a length: only last in a value, bounded by its end.
    fn rest(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// A count or length that must fit a u32; `done` fails if one did not.
    fn len(&mut self, n: usize) {
        match u32::try_from(n) {
            Ok(n) => self.u32(n),
            Err(_) => self.too_large = true,
        }
    }
    /// A length-prefixed byte string.
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }
    fn done(self) -> Result<Vec<u8>, StorageError> {
        if self.too_large {
            return Err(StorageError::TooLarge(self.record));
        }
        Ok(self.buf)
    }
}

/// Reads a value being decoded; every method fails on truncation.
struct Reader<'a> {
    record: &'static str,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks the version byte and positions after it.
    fn new(record: &'static str, buf: &'a [u8]) -> Result<Reader<'a>, StorageError> {
        match buf.split_first() {
            Some((&V1, rest)) => Ok(Reader { record, buf: rest }),
            Some(_) => Err(StorageError::corrupt(record, "unknown format version")),
            None => Err(StorageError::corrupt(record, "empty value")),
        }
    }
    /// Checks that the version byte is one from V1 to `newest` and
    /// positions after it.
    fn versioned(
        record: &'static str,
        buf: &'a [u8],
        newest: u8,
    ) -> Result<(u8, Reader<'a>), StorageError> {
        match buf.split_first() {
            Some((&v, rest)) if (V1..=newest).contains(&v) => Ok((v, Reader { record, buf: rest })),
            Some(_) => Err(StorageError::corrupt(record, "unknown format version")),
            None => Err(StorageError::corrupt(record, "empty value")),
        }
    }
    fn err(&self, reason: &'static str) -> StorageError {
        StorageError::corrupt(self.record, reason)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, StorageError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, StorageError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], StorageError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, StorageError> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| self.err("string is not utf-8"))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    fn finish(self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

// ---- counters (roster version, account count, schema version) ----

pub(crate) fn encode_counter(v: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(9);
    buf.push(V1);
    buf.extend_from_slice(&v.to_be_bytes());
    buf
}

pub(crate) fn decode_counter(record: &'static str, b: &[u8]) -> Result<u64, StorageError> {
    let mut r = Reader::new(record, b)?;
    let v = r.u64()?;
    r.finish()?;
    Ok(v)
}

// ---- opaque bytes (offline stanzas, vCards) ----

/// No length prefix: the value's own length bounds the bytes.
pub(crate) fn encode_blob(b: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(b.len() + 1);
    buf.push(V1);
    buf.extend_from_slice(b);
    buf
}

pub(crate) fn decode_blob(record: &'static str, b: &[u8]) -> Result<Vec<u8>, StorageError> {
    let mut r = Reader::new(record, b)?;
    Ok(r.rest().to_vec())
}

// ---- credentials ----

const CREDENTIALS: &str = "credentials";

fn put_scram(w: &mut Writer, c: &ScramCredentials) {
    w.u32(c.iterations);
    w.bytes(&c.salt);
    w.bytes(&c.stored_key);
    w.bytes(&c.server_key);
}

fn get_scram(r: &mut Reader<'_>) -> Result<ScramCredentials, StorageError> {
    Ok(ScramCredentials {
        iterations: r.u32()?,
        salt: r.bytes()?.to_vec(),
        stored_key: r.bytes()?.to_vec(),
        server_key: r.bytes()?.to_vec(),
    })
}

pub(crate) fn encode_credentials(c: &StoredCredentials) -> Result<Vec<u8>, StorageError> {
    let mut w = Writer::new(CREDENTIALS, 128);
    put_scram(&mut w, &c.sha1);
    put_scram(&mut w, &c.sha256);
    w.done()
}

pub(crate) fn decode_credentials(b: &[u8]) -> Result<StoredCredentials, StorageError> {
    let mut r = Reader::new(CREDENTIALS, b)?;
    let sha1 = get_scram(&mut r)?;
    let sha256 = get_scram(&mut r)?;
    r.finish()?;
    Ok(StoredCredentials { sha1, sha256 })
}

// ---- roster items (the contact JID lives in the key) ----

const ROSTER_ITEM: &str = "roster item";
const SUB_MASK: u8 = 0b0000_0011;
const PENDING_OUT: u8 = 0b0000_0100;
const PENDING_IN: u8 = 0b0000_1000;
const APPROVED: u8 = 0b0001_0000;

/// Roster item flag: kept for its subscription state, not shown.
const HIDDEN: u8 = 0x80;

fn state_flags(s: &SubState) -> u8 {
    let sub = match s.sub {
        Subscription::None => 0,
        Subscription::To => 1,
        Subscription::From => 2,
        Subscription::Both => 3,
    };
    sub | if s.pending_out { PENDING_OUT } else { 0 }
        | if s.pending_in { PENDING_IN } else { 0 }
        | if s.approved { APPROVED } else { 0 }
}

fn flags_state(f: u8) -> Result<SubState, StorageError> {
    if f & !(SUB_MASK | PENDING_OUT | PENDING_IN | APPROVED) != 0 {
        return Err(StorageError::corrupt(ROSTER_ITEM, "unknown state bits"));
    }
    let sub = match f & SUB_MASK {
        0 => Subscription::None,
        1 => Subscription::To,
        2 => Subscription::From,
        _ => Subscription::Both,
    };
    Ok(SubState {
        sub,
        pending_out: f & PENDING_OUT != 0,
        pending_in: f & PENDING_IN != 0,
        approved: f & APPROVED != 0,
    })
}

pub(crate) fn encode_roster_item(item: &RosterItem) -> Result<Vec<u8>, StorageError> {
    let mut w = Writer::new(ROSTER_ITEM, 16);
    w.u8(state_flags(&item.state) | if item.hidden { HIDDEN } else { 0 });
    match &item.name {
        Some(n) => {
            w.u8(1);
            w.bytes(n.as_bytes());
        }
        None => w.u8(0),
    }
    w.len(item.groups.len());
    for g in &item.groups {
        w.bytes(g.as_bytes());
    }
    w.done()
}

pub(crate) fn decode_roster_item(jid: BareJid, b: &[u8]) -> Result<RosterItem, StorageError> {
    let mut r = Reader::new(ROSTER_ITEM, b)?;
    let flags = r.u8()?;
    let hidden = flags & HIDDEN != 0;
    let state = flags_state(flags & !HIDDEN)?;
    let name = match r.u8()? {
        0 => None,
        1 => Some(r.string()?),
        _ => return Err(r.err("bad name tag")),
    };
    let n = r.u32()?;
    // No capacity from the stored count: each group consumes at least its
    // four length bytes, so a lying count fails on truncation instead.
    let mut groups = Vec::new();
    for _ in 0..n {
        groups.push(r.string()?);
    }
    r.finish()?;
    Ok(RosterItem {
        jid,
        name,
        groups,
        state,
        hidden,
    })
}

// ---- offline queue meta ----

const OFFLINE_META: &str = "offline queue meta";

/// Per-user state of an offline queue: the next sequence number to hand
/// out and how many messages are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OfflineMeta {
    pub next_seq: u64,
    pub count: u64,
}

pub(crate) fn encode_offline_meta(m: &OfflineMeta) -> Vec<u8> {
    let mut buf = Vec::with_capacity(17);
    buf.push(V1);
    buf.extend_from_slice(&m.next_seq.to_be_bytes());
    buf.extend_from_slice(&m.count.to_be_bytes());
    buf
}

pub(crate) fn decode_offline_meta(b: &[u8]) -> Result<OfflineMeta, StorageError> {
    let mut r = Reader::new(OFFLINE_META, b)?;
    let m = OfflineMeta {
        next_seq: r.u64()?,
        count: r.u64()?,
    };
    r.finish()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scram(n: u8) -> ScramCredentials {
        ScramCredentials {
            iterations: 4096 + n as u32,
            salt: vec![n; 16],
            stored_key: vec![n + 1; 20],
            server_key: vec![n + 2; 32],
        }
    }

    fn creds() -> StoredCredentials {
        StoredCredentials {
            sha1: scram(1),
            sha256: scram(7),
        }
    }

    fn item() -> RosterItem {
        RosterItem {
            jid: BareJid::parse("b@y").expect("jid"),
            name: Some("Bé".into()),
            groups: vec!["friends".into(), String::new(), "wörk".into()],
            state: SubState {
                sub: Subscription::From,
                pending_out: true,
                pending_in: false,
                approved: true,
            },
            hidden: true,
        }
    }

    /// Every strict prefix of a valid encoding, and the encoding with a
    /// byte appended, must fail cleanly.
    fn truncations_fail<T>(enc: &[u8], dec: impl Fn(&[u8]) -> Result<T, StorageError>) {
        for i in 0..enc.len() {
            assert!(
                matches!(dec(&enc[..i]), Err(StorageError::Corrupt { .. })),
                "prefix {i}"
            );
        }
        let mut long = enc.to_vec();
        long.push(0);
        assert!(matches!(dec(&long), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn credentials_round_trip_and_truncation() {
        let enc = encode_credentials(&creds()).expect("encode");
        assert_eq!(decode_credentials(&enc).expect("decode"), creds());
        truncations_fail(&enc, decode_credentials);
    }

    #[test]
    fn roster_item_round_trip_all_states() {
        for f in 0u8..32 {
            let mut it = item();
            it.state = flags_state(f).expect("valid flags");
            if f % 2 == 0 {
                it.name = None;
                it.groups.clear();
            }
            let enc = encode_roster_item(&it).expect("encode");
            assert_eq!(
                decode_roster_item(it.jid.clone(), &enc).expect("decode"),
                it
            );
        }
        let enc = encode_roster_item(&item()).expect("encode");
        truncations_fail(&enc, |b| decode_roster_item(item().jid, b));
    }

    #[test]
    fn roster_item_rejects_bad_bits_and_tags() {
        let mut enc = encode_roster_item(&item()).expect("encode");
        enc[1] |= 0x40;
        assert!(decode_roster_item(item().jid, &enc).is_err());
        // 0x80 is the hidden flag and round-trips.
        let visible = RosterItem {
            hidden: false,
            ..item()
        };
        let enc = encode_roster_item(&visible).expect("encode");
        assert_eq!(
            decode_roster_item(item().jid, &enc).expect("decode"),
            visible
        );
        let mut enc = encode_roster_item(&item()).expect("encode");
        enc[2] = 9;
        assert!(decode_roster_item(item().jid, &enc).is_err());
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate_or_panic() {
        // version, flags, no name, u32::MAX groups and nothing after.
        let b = [V1, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(decode_roster_item(item().jid, &b).is_err());
        let b = [V1, 0, 0, 0x10, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(decode_credentials(&b).is_err());
    }

    #[test]
    fn counters_meta_blobs() {
        assert_eq!(
            decode_counter("c", &encode_counter(u64::MAX)).expect("decode"),
            u64::MAX
        );
        truncations_fail(&encode_counter(5), |b| decode_counter("c", b));
        let m = OfflineMeta {
            next_seq: 9,
            count: 3,
        };
        assert_eq!(
            decode_offline_meta(&encode_offline_meta(&m)).expect("decode"),
            m
        );
        truncations_fail(&encode_offline_meta(&m), decode_offline_meta);
        assert_eq!(
            decode_blob("b", &encode_blob(b"<x/>")).expect("decode"),
            b"<x/>"
        );
        assert_eq!(decode_blob("b", &encode_blob(b"")).expect("decode"), b"");
        assert!(decode_blob("b", b"").is_err());
        assert!(decode_blob("b", b"\x02abc").is_err());
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut enc = encode_credentials(&creds()).expect("encode");
        enc[0] = 2;
        assert!(matches!(
            decode_credentials(&enc),
            Err(StorageError::Corrupt { .. })
        ));
    }
}
