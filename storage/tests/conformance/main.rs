//! Conformance suite for the storage crate, run against a real RocksDB in a
//! temporary directory: one module per store, plus durability (reopen,
//! crash-style recovery), corruption handling and concurrency.

mod accounts;
mod caps;
mod concurrency;
mod corruption;
mod durability;
mod isolation;
mod offline;
mod private;
mod pubsub;
mod rosters;
mod vcards;

use std::path::Path;

use proto::BareJid;
use proto::roster::{SubState, Subscription};
use proto::sasl::{ScramCredentials, StoredCredentials};
use storage::{RosterItem, Store, StoreOptions};
use tempfile::TempDir;

/// Every record of column family `cf` of the closed store at `path`.
pub fn raw_records(path: &Path, cf: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).expect("list");
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, names).expect("raw open");
    db.iterator_cf(db.cf_handle(cf).expect("cf"), rocksdb::IteratorMode::Start)
        .map(|kv| {
            let (k, v) = kv.expect("raw read");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// A store in a fresh temporary directory; keep the `TempDir` alive.
pub fn fresh() -> (TempDir, Store) {
    fresh_with(StoreOptions::default())
}

pub fn fresh_with(opts: StoreOptions) -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts).expect("open");
    (dir, store)
}

pub fn reopen(path: &Path) -> Store {
    Store::open(path, StoreOptions::default()).expect("reopen")
}

pub fn jid(s: &str) -> BareJid {
    BareJid::parse(s).expect("test jid")
}

pub fn creds(seed: u8) -> StoredCredentials {
    let scram = |n: u8| ScramCredentials {
        iterations: 4096,
        salt: vec![n; 16],
        stored_key: vec![n.wrapping_add(1); 20],
        server_key: vec![n.wrapping_add(2); 20],
    };
    StoredCredentials {
        sha1: scram(seed),
        sha256: scram(seed.wrapping_add(100)),
    }
}

pub fn item(contact: &str, name: Option<&str>, groups: &[&str], sub: Subscription) -> RosterItem {
    RosterItem {
        jid: jid(contact),
        name: name.map(str::to_owned),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        state: SubState {
            sub,
            pending_out: false,
            pending_in: false,
            approved: false,
        },
        hidden: false,
    }
}

/// Gives `user` an account, two roster items, two offline messages and a
/// vCard.
pub fn populate(store: &Store, user: &str) {
    let u = jid(user);
    assert!(store.accounts().create(&u, &creds(1)).expect("create"));
    store
        .rosters()
        .put(&u, &item("c1@z", Some("C1"), &["g"], Subscription::Both))
        .expect("put");
    store
        .rosters()
        .put(&u, &item("c2@z", None, &[], Subscription::To))
        .expect("put");
    store
        .offline()
        .push(&u, b"<message>1</message>")
        .expect("push")
        .expect("room");
    store
        .offline()
        .push(&u, b"<message>2</message>")
        .expect("push")
        .expect("room");
    store
        .vcards()
        .set(&u, Some(b"<vCard xmlns='vcard-temp'/>"))
        .expect("vcard");
}

/// Checks that `user` has exactly what `populate` gave it.
pub fn assert_populated(store: &Store, user: &str) {
    let u = jid(user);
    assert_eq!(
        store.accounts().get(&u).expect("get"),
        Some(creds(1)),
        "{user} account"
    );
    let (v, items) = store.rosters().get_all(&u).expect("roster");
    assert_eq!(v, 2, "{user} roster version");
    assert_eq!(items.len(), 2, "{user} roster items");
    assert_eq!(
        store.offline().count(&u).expect("count"),
        2,
        "{user} offline count"
    );
    assert_eq!(
        store.offline().list(&u).expect("list").len(),
        2,
        "{user} offline list"
    );
    assert!(
        store.vcards().get(&u).expect("vcard").is_some(),
        "{user} vcard"
    );
}

/// Checks that nothing at all is stored for `user`.
pub fn assert_empty(store: &Store, user: &str) {
    let u = jid(user);
    assert!(
        !store.accounts().exists(&u).expect("exists"),
        "{user} account"
    );
    assert_eq!(
        store.rosters().get_all(&u).expect("roster"),
        (0, vec![]),
        "{user} roster"
    );
    assert_eq!(
        store.rosters().version(&u).expect("version"),
        0,
        "{user} roster version"
    );
    assert_eq!(
        store.offline().count(&u).expect("count"),
        0,
        "{user} offline count"
    );
    assert!(
        store.offline().list(&u).expect("list").is_empty(),
        "{user} offline list"
    );
    assert_eq!(store.vcards().get(&u).expect("vcard"), None, "{user} vcard");
}
