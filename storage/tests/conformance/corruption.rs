//! Bad bytes on disk give `StorageError::Corrupt`, never a panic. The raw
//! keys below are written by hand on purpose: they pin the on-disk layout
//! documented in `src/keys.rs`, so an accidental format change fails here.

use rocksdb::{DB, Options};
use storage::StorageError;

use super::*;

const CFS: [&str; 11] = [
    "accounts",
    "rosters",
    "offline",
    "vcards",
    "pubsub",
    "private",
    "caps",
    "rooms",
    "raft_log",
    "raft_meta",
    "shard_data",
];

/// Writes raw `(cf, key, value)` records into a closed store at `path`.
pub fn poke(path: &Path, records: &[(&str, &[u8], &[u8])]) {
    let db = DB::open_cf(&Options::default(), path, CFS).expect("raw open");
    for (cf, k, v) in records {
        let cf = db.cf_handle(cf).expect("cf");
        db.put_cf(cf, k, v).expect("raw put");
    }
}

pub fn is_corrupt<T: std::fmt::Debug>(r: Result<T, StorageError>) -> bool {
    matches!(r, Err(StorageError::Corrupt { .. }))
}

#[test]
fn layout_is_what_keys_rs_documents() {
    let (d, s) = fresh();
    populate(&s, "al@x");
    drop(s);
    let db = DB::open_cf(&Options::default(), d.path(), CFS).expect("raw open");
    let get = |cf: &str, k: &[u8]| db.get_cf(db.cf_handle(cf).expect("cf"), k).expect("get");
    assert!(get("accounts", b"\x01x\x00al").is_some());
    // Schema 1 kept a global account count here; accounts are now
    // written by many shards, so there is none.
    assert_eq!(get("accounts", b"\x02"), None);
    assert_eq!(
        get("rosters", b"\x01al@x\x00"),
        Some(b"\x01\0\0\0\0\0\0\0\x02".to_vec())
    );
    assert!(get("rosters", b"\x02al@x\x00c1@z").is_some());
    assert!(get("offline", b"\x01al@x\x00").is_some());
    assert_eq!(
        get("offline", b"\x02al@x\x00\0\0\0\0\0\0\0\x02"),
        Some(b"\x01<message>2</message>".to_vec())
    );
    assert_eq!(
        get("vcards", b"\x01al@x\x00"),
        Some(b"\x01<vCard xmlns='vcard-temp'/>".to_vec())
    );
}

#[test]
fn corrupt_values_are_errors_not_panics() {
    let (d, s) = fresh();
    populate(&s, "al@x");
    drop(s);
    poke(
        d.path(),
        &[
            ("accounts", b"\x01x\x00al", b"\x01\x00\x00"),
            ("rosters", b"\x01al@x\x00", b"\x09\0\0\0\0\0\0\0\x02"),
            ("rosters", b"\x02al@x\x00c1@z", b"\x01\xff"),
            ("offline", b"\x01al@x\x00", b""),
            ("offline", b"\x02al@x\x00\0\0\0\0\0\0\0\x02", b"\x07junk"),
            ("vcards", b"\x01al@x\x00", b"\x00"),
        ],
    );
    let s = reopen(d.path());
    let u = jid("al@x");
    assert!(is_corrupt(s.accounts().get(&u)));
    // Counting accounts reads keys only.
    assert_eq!(s.accounts().count().expect("count"), 1);
    assert!(is_corrupt(s.rosters().version(&u)));
    assert!(is_corrupt(s.rosters().get_all(&u)));
    assert!(is_corrupt(s.rosters().get(&u, &jid("c1@z"))));
    assert!(is_corrupt(
        s.rosters()
            .put(&u, &item("d@z", None, &[], Subscription::None))
    ));
    assert!(is_corrupt(s.offline().count(&u)));
    assert!(is_corrupt(s.offline().push(&u, b"m")));
    assert!(is_corrupt(s.offline().list(&u)));
    assert!(is_corrupt(s.vcards().get(&u)));
    // What was not damaged still reads.
    assert!(s.accounts().exists(&u).expect("exists"));
}

#[test]
fn a_user_with_corrupt_records_can_still_be_deleted() {
    let (d, s) = fresh();
    populate(&s, "al@x");
    populate(&s, "al@xy");
    drop(s);
    poke(
        d.path(),
        &[
            ("accounts", b"\x01x\x00al", b"\xff"),
            ("rosters", b"\x01al@x\x00", b""),
            ("rosters", b"\x02al@x\x00c1@z", b"\x01\xff"),
            ("offline", b"\x01al@x\x00", b"\x02"),
            ("vcards", b"\x01al@x\x00", b""),
        ],
    );
    let s = reopen(d.path());
    assert!(s.accounts().delete(&jid("al@x")).expect("delete"));
    assert_empty(&s, "al@x");
    assert_populated(&s, "al@xy");
}

#[test]
fn corrupt_keys_are_errors_not_panics() {
    let (d, s) = fresh();
    populate(&s, "al@x");
    drop(s);
    poke(
        d.path(),
        &[
            // a contact that is not UTF-8, an offline key with a short seq,
            // an account key without its separator
            ("rosters", b"\x02al@x\x00\xff\xfe", b"\x01\x00\x00\0\0\0\0"),
            ("offline", b"\x02al@x\x00\x01", b"\x01m"),
            ("accounts", b"\x01broken", b"\x01"),
        ],
    );
    let s = reopen(d.path());
    let u = jid("al@x");
    assert!(is_corrupt(s.rosters().get_all(&u)));
    assert!(is_corrupt(s.offline().list(&u)));
    assert!(is_corrupt(s.accounts().list(None)));
    // Point reads of intact records are unaffected.
    assert!(s.rosters().get(&u, &jid("c1@z")).expect("get").is_some());
    assert_eq!(s.offline().count(&u).expect("count"), 2);
}

#[test]
fn a_newer_schema_is_refused() {
    let (d, s) = fresh();
    drop(s);
    let db = DB::open_cf(&Options::default(), d.path(), CFS).expect("raw open");
    db.put(b"\x01", b"\x01\0\0\0\0\0\0\0\x63").expect("raw put");
    drop(db);
    assert!(matches!(
        Store::open(d.path(), StoreOptions::default()),
        Err(StorageError::UnsupportedSchema {
            found: 99,
            supported: 1
        })
    ));
}

#[test]
fn unknown_column_families_do_not_stop_open() {
    let (d, s) = fresh();
    populate(&s, "al@x");
    drop(s);
    let mut opts = Options::default();
    opts.create_missing_column_families(true);
    let names = [
        "accounts",
        "rosters",
        "offline",
        "vcards",
        "pubsub",
        "private",
        "caps",
        "rooms",
        "raft_log",
        "raft_meta",
        "shard_data",
        "from_the_future",
    ];
    drop(DB::open_cf(&opts, d.path(), names).expect("raw open"));
    assert_populated(&reopen(d.path()), "al@x");
}
